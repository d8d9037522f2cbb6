/* dicom_rle.c - RLE Lossless (DICOM PS3.5 Annex G).
 *
 * A frame is one fragment: a 64-byte header (segment count, then 15
 * little-endian segment offsets from the start of the fragment) and the
 * segments, each a PackBits stream of one byte plane: for every sample the
 * most significant byte comes first (segment s*bytes + 0), the least last.
 * The header is untrusted: offsets must lie inside the fragment and
 * increase; a segment that decodes to fewer bytes than a plane is an error;
 * runs past the end of a plane are clipped (some encoders pad). */
#include "io/dicom.h"

#include <string.h>

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* Decodes one PackBits segment src[0..n) into plane positions
 * out[k*stride] for k < count. Returns the number of bytes written. */
static size_t unpack(unsigned char *out, size_t stride, size_t count,
                     const unsigned char *src, size_t n) {
    size_t i = 0, k = 0;
    while (k < count && i < n) {
        int c = (signed char)src[i++];
        if (c >= 0) {
            size_t m = (size_t)c + 1;
            if (m > n - i) m = n - i; /* literal cut by the segment end */
            for (size_t j = 0; j < m && k < count; j++, k++)
                out[k * stride] = src[i + j];
            i += m;
        } else if (c != -128) {
            if (i >= n) break;
            size_t m = (size_t)(1 - c);
            unsigned char b = src[i++];
            for (size_t j = 0; j < m && k < count; j++, k++)
                out[k * stride] = b;
        }
    }
    return k;
}

mg_status mg__dcm_rle_decode(void *out, const unsigned char *src, size_t n,
                             uint32_t rows, uint32_t cols, uint32_t spp,
                             uint32_t bytes, char *err, size_t errlen) {
    uint32_t off[16];
    if (n < 64)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM RLE: frame of %zu bytes is shorter than the "
                       "64-byte header", n);
    uint32_t nseg = rd32(src);
    uint64_t want = (uint64_t)spp * bytes;
    if (nseg == 0 || nseg > 15 || nseg != want)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM RLE: header has %u segments; %u samples of %u "
                       "bytes need %llu", (unsigned)nseg, (unsigned)spp,
                       (unsigned)bytes, (unsigned long long)want);
    for (uint32_t s = 0; s < nseg; s++) off[s] = rd32(src + 4 + 4 * s);
    off[nseg] = (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n);
    for (uint32_t s = 0; s < nseg; s++) {
        if (off[s] < 64 || off[s] > n || off[s] > off[s + 1])
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM RLE: segment %u offset %u is outside the "
                           "frame (%zu bytes) or out of order", (unsigned)s,
                           (unsigned)off[s], n);
    }
    size_t pixels = (size_t)rows * cols;
    size_t sample_stride = (size_t)spp * bytes;
    unsigned char *o = out;
    for (uint32_t s = 0; s < nseg; s++) {
        uint32_t sample = s / bytes, byte_msb = s % bytes;
        /* Native little endian: the most significant byte is the last. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        uint32_t byte_pos = byte_msb;
#else
        uint32_t byte_pos = bytes - 1 - byte_msb;
#endif
        unsigned char *plane = o + (size_t)sample * bytes + byte_pos;
        size_t got = unpack(plane, sample_stride, pixels, src + off[s],
                            (size_t)(off[s + 1] - off[s]));
        if (got < pixels)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM RLE: segment %u decodes to %zu bytes; the "
                           "plane has %zu", (unsigned)s, got, pixels);
    }
    return MG_OK;
}
