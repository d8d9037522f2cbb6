/* dicom_jls.c - JPEG-LS frames (DICOM 1.2.840.10008.1.2.4.80 lossless and
 * .81 near-lossless) through CharLS's C API.
 *
 * The frame header must describe exactly the DICOM image (size, component
 * count, 2..16-bit samples within Bits Allocated) before any pixel memory
 * is set aside; CharLS writes 8-bit samples as bytes and wider ones as
 * native-endian 16-bit words, component planes one after another when the
 * scan is not interleaved (interleave mode none) and pixel by pixel
 * otherwise. CharLS neither prints nor throws through its C API: every
 * failure is a status code, whose text goes to the error buffer.
 *
 * Two guards against CharLS 2.4 (Debian 12) looping forever on hostile
 * input: it is handed a copy of the frame that ends in an EOI marker, so
 * that its bit reader always meets a marker (and fails) instead of running
 * off the end of the data while it counts zero bits (a truncated frame
 * otherwise hangs it); and streams whose preset coding parameters raise
 * RESET above 4096 are refused, which keeps the context statistics far
 * from the overflow that stalls its Golomb parameter search. */
#include "io/dicom.h"

#include <string.h>

#include <charls/charls.h>

static mg_status jls_fail(charls_jpegls_errc e, const char *stage, char *err,
                          size_t errlen) {
    mg_status st = MG_E_IMAGE_FORMAT;
    if (e == CHARLS_JPEGLS_ERRC_NOT_ENOUGH_MEMORY) st = MG_E_NOMEM;
    const char *why = charls_get_error_message(e);
    return mg__err(err, errlen, st, "JPEG-LS: %s: %s", stage,
                   why ? why : "unknown error");
}

mg_status mg__dcm_jls_decode(int64_t *out, uint32_t *prec,
                             const unsigned char *src, size_t n, uint32_t rows,
                             uint32_t cols, uint32_t spp, uint32_t max_prec,
                             uint64_t budget, char *err, size_t errlen) {
    charls_jpegls_decoder *dec = NULL;
    charls_frame_info fi;
    charls_jpegls_pc_parameters pc;
    charls_interleave_mode mode = CHARLS_INTERLEAVE_MODE_NONE;
    charls_jpegls_errc e;
    unsigned char *buf = NULL, *in = NULL;
    mg_status st = MG_OK;
    size_t size = 0;
    if (n > budget || budget - n < 2)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "JPEG-LS: a %zu-byte frame exceeds the %llu bytes "
                       "allowed", n, (unsigned long long)budget);
    budget -= n + 2;
    in = mg__malloc(n + 2);
    dec = charls_jpegls_decoder_create();
    if (!in || !dec) {
        st = mg__err(err, errlen, MG_E_NOMEM, "JPEG-LS: out of memory");
        goto done;
    }
    memcpy(in, src, n);
    in[n] = 0xFF; /* EOI: see the guards above */
    in[n + 1] = 0xD9;
    if ((e = charls_jpegls_decoder_set_source_buffer(dec, in, n + 2))) {
        st = jls_fail(e, "reading the stream", err, errlen);
        goto done;
    }
    if ((e = charls_jpegls_decoder_read_header(dec)) ||
        (e = charls_jpegls_decoder_get_frame_info(dec, &fi)) ||
        (e = charls_jpegls_decoder_get_interleave_mode(dec, &mode)) ||
        (e = charls_jpegls_decoder_get_preset_coding_parameters(dec, 0, &pc))) {
        st = jls_fail(e, "reading the header", err, errlen);
        goto done;
    }
    if (pc.reset_value > 4096) {
        st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                     "JPEG-LS: RESET %d in the preset coding parameters is "
                     "above the 4096 this library accepts", (int)pc.reset_value);
        goto done;
    }
    if (fi.width != cols || fi.height != rows ||
        fi.component_count != (int32_t)spp) {
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                     "JPEG-LS: frame is %ux%u with %d components; the DICOM "
                     "header says %ux%u with %u", (unsigned)fi.width,
                     (unsigned)fi.height, (int)fi.component_count,
                     (unsigned)cols, (unsigned)rows, (unsigned)spp);
        goto done;
    }
    if (fi.bits_per_sample < 2 || fi.bits_per_sample > 16 ||
        (uint32_t)fi.bits_per_sample > max_prec) {
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                     "JPEG-LS: %d-bit samples; the DICOM header allows 2..%u",
                     (int)fi.bits_per_sample, (unsigned)max_prec);
        goto done;
    }
    uint32_t bps = fi.bits_per_sample > 8 ? 2 : 1;
    size_t npx = (size_t)rows * cols;
    uint64_t want = (uint64_t)npx * spp * bps;
    if ((e = charls_jpegls_decoder_get_destination_size(dec, 0, &size))) {
        st = jls_fail(e, "sizing the output", err, errlen);
        goto done;
    }
    if (size != want) {
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                     "JPEG-LS: decoder wants %zu bytes for a %ux%u frame of "
                     "%u %u-byte samples", size, (unsigned)cols,
                     (unsigned)rows, (unsigned)spp, (unsigned)bps);
        goto done;
    }
    if (want > budget) {
        st = mg__err(err, errlen, MG_E_LIMIT,
                     "JPEG-LS: decoding needs %llu bytes; %llu are allowed",
                     (unsigned long long)want, (unsigned long long)budget);
        goto done;
    }
    buf = mg__malloc(size ? size : 1);
    if (!buf) {
        st = mg__err(err, errlen, MG_E_NOMEM, "JPEG-LS: out of memory");
        goto done;
    }
    if ((e = charls_jpegls_decoder_decode_to_buffer(dec, buf, size, 0))) {
        st = jls_fail(e, "decoding", err, errlen);
        goto done;
    }
    int planar = mode == CHARLS_INTERLEAVE_MODE_NONE && spp > 1;
    for (uint32_t c = 0; c < spp; c++) {
        for (size_t i = 0; i < npx; i++) {
            size_t at = planar ? (size_t)c * npx + i : i * spp + c;
            uint16_t v;
            if (bps == 1) v = buf[at];
            else memcpy(&v, buf + 2 * at, 2);
            out[i * spp + c] = v;
        }
    }
    *prec = (uint32_t)fi.bits_per_sample;
done:
    mg__free(buf);
    mg__free(in);
    if (dec) charls_jpegls_decoder_destroy(dec);
    return st;
}
