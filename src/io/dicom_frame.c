/* dicom_frame.c - one frame of DICOM Pixel Data to stored values: the
 * native layouts, and encapsulated frames (finding a frame's fragments,
 * then the codec of the transfer syntax: JPEG baseline/extended through
 * libjpeg, lossless JPEG with our own decoder, JPEG-LS through CharLS,
 * JPEG 2000 through OpenJPEG, RLE with our own). The image reader
 * (dicom_image.c) and, later, the volume reader share these functions.
 * docs/DICOM.md states the rules. */
#include "io/dicom.h"
#include "io/jpeg_lossless.h"

#include <string.h>

static uint16_t rd16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* Raw container sample -> stored value: High Bit / Bits Stored, sign. */
static int64_t stored(uint64_t u, const mg__dcm_info *in) {
    uint32_t shift = in->high_bit + 1 - in->bits_stored;
    uint64_t mask = in->bits_stored >= 64 ? ~(uint64_t)0
                                          : (((uint64_t)1 << in->bits_stored) - 1);
    u = (u >> shift) & mask;
    if (in->pixel_rep && (u >> (in->bits_stored - 1)) & 1)
        return (int64_t)u - ((int64_t)1 << in->bits_stored);
    return (int64_t)u;
}

/* A sample a codec decoded with `prec` bits (negative when the codestream
 * is signed) -> stored value. A sample as wide as Bits Allocated is a
 * container word, read as native data is; a narrower one holds the stored
 * value's low Bits Stored bits (two's complement when Pixel Representation
 * is 1), whatever the codestream's own signedness. */
static int64_t codec_stored(int64_t v, uint32_t prec, const mg__dcm_info *in) {
    if (prec >= in->bits_alloc) {
        uint64_t m = in->bits_alloc >= 64 ? ~(uint64_t)0
                                          : (((uint64_t)1 << in->bits_alloc) - 1);
        return stored((uint64_t)v & m, in);
    }
    uint64_t u = (uint64_t)v & (((uint64_t)1 << in->bits_stored) - 1);
    if (in->pixel_rep && (u >> (in->bits_stored - 1)) & 1)
        return (int64_t)u - ((int64_t)1 << in->bits_stored);
    return (int64_t)u;
}

/* Whether an encapsulated fragment starts a new frame of syntax ts (used
 * only when there is neither a Basic Offset Table nor one fragment per
 * frame). */
static int starts_frame(int32_t ts, const unsigned char *f, size_t n) {
    switch (ts) {
    case MG__TS_JPEG_BASELINE: case MG__TS_JPEG_EXTENDED:
    case MG__TS_JPEG_LOSSLESS: case MG__TS_JPEG_LS:
        return n >= 3 && f[0] == 0xFF && f[1] == 0xD8 && f[2] == 0xFF;
    case MG__TS_JPEG2000:
        return (n >= 4 && f[0] == 0xFF && f[1] == 0x4F && f[2] == 0xFF &&
                f[3] == 0x51) ||
               (n >= 8 && memcmp(f + 4, "jP  ", 4) == 0 && f[3] == 12 &&
                f[0] == 0 && f[1] == 0 && f[2] == 0);
    default:
        return 0;
    }
}

/* Fragments [first, first+count) of the encapsulated Pixel Data that make
 * up frame `frame` (fragment indices into ds->frag, 1-based: 0 is the Basic
 * Offset Table). */
static mg_status frame_span(const mg__dcm_dataset *ds, uint32_t nfr,
                            uint32_t frame, size_t *first, size_t *count,
                            char *err, size_t errlen) {
    size_t nf = ds->n_frag ? ds->n_frag - 1 : 0;
    if (nf == 0)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: encapsulated Pixel Data has no fragments");
    const mg__dcm_frag *bot = &ds->frag[0];
    if (bot->len >= 4 && bot->len % 4 == 0 && bot->len / 4 == nfr) {
        /* Offsets from the first fragment's item tag to each frame's. */
        size_t base = ds->frag[1].off - 8;
        uint32_t want = rd32(ds->data + bot->off + 4 * (size_t)frame);
        uint32_t next = frame + 1 < nfr
                            ? rd32(ds->data + bot->off + 4 * (size_t)frame + 4)
                            : UINT32_MAX;
        size_t a = 0, b = 0;
        for (size_t i = 1; i <= nf; i++) {
            size_t rel = ds->frag[i].off - 8 - base;
            if (rel == want) a = i;
            if (a && rel < next) b = i;
        }
        if (!a || next <= want)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: Basic Offset Table entry %u (%u) does not "
                           "point at a fragment", (unsigned)frame,
                           (unsigned)want);
        *first = a;
        *count = b - a + 1;
        return MG_OK;
    }
    if (nf == nfr) {
        *first = frame + 1;
        *count = 1;
        return MG_OK;
    }
    if (nfr == 1) {
        *first = 1;
        *count = nf;
        return MG_OK;
    }
    /* No table: a frame starts with its codestream's first marker. */
    uint32_t k = 0;
    size_t a = 0, b = 0;
    for (size_t i = 1; i <= nf; i++) {
        if (starts_frame(ds->ts, ds->data + ds->frag[i].off, ds->frag[i].len)) {
            if (k == frame + 1) break;
            if (k == frame) a = i;
            k++;
        }
        if (a) b = i;
    }
    if (a && k >= frame + 1) {
        *first = a;
        *count = b - a + 1;
        return MG_OK;
    }
    return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                   "DICOM: cannot tell which of %zu fragments hold frame %u of "
                   "%u (no usable Basic Offset Table)", nf, (unsigned)frame,
                   (unsigned)nfr);
}

mg_status mg__dcm_frame_bytes(const unsigned char **bytes, size_t *len,
                              unsigned char **owned,
                              const mg__dcm_dataset *ds, uint32_t n_frames,
                              uint32_t frame, char *err, size_t errlen) {
    size_t first = 0, count = 0, n = 0;
    mg_status st;
    *bytes = NULL;
    *len = 0;
    *owned = NULL;
    if ((st = frame_span(ds, n_frames, frame, &first, &count, err, errlen)))
        return st;
    for (size_t i = first; i < first + count; i++) n += ds->frag[i].len;
    if (count == 1) {
        *bytes = ds->data + ds->frag[first].off;
        *len = n;
        return MG_OK;
    }
    unsigned char *joined = mg__malloc(n ? n : 1);
    if (!joined) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = first; i < first + count; i++) {
        memcpy(joined + o, ds->data + ds->frag[i].off, ds->frag[i].len);
        o += ds->frag[i].len;
    }
    *bytes = joined;
    *len = n;
    *owned = joined;
    return MG_OK;
}

mg_status mg__dcm_decode_frame(int64_t *out, int *ybr,
                               const unsigned char *src, size_t len,
                               int32_t ts, const char *ts_name,
                               const mg__dcm_info *in, const mg_image_params *p,
                               char *err, size_t errlen) {
    const size_t npx = (size_t)in->rows * in->cols, n = npx * in->spp;
    /* Memory the codec may use besides `out` (8 bytes per sample). */
    const uint64_t budget = p->max_memory > (uint64_t)n * 8
                                ? p->max_memory - (uint64_t)n * 8 : 0;
    const uint32_t max_prec = in->bits_alloc < 16 ? in->bits_alloc : 16;
    uint32_t prec = 0;
    mg_status st;
    *ybr = strncmp(in->photometric, "YBR_FULL", 8) == 0;

    switch (ts) {
    case MG__TS_RLE: {
        uint32_t bytes = in->bits_alloc / 8;
        if ((uint64_t)n * bytes > budget)
            return mg__err(err, errlen, MG_E_LIMIT,
                           "DICOM RLE: decoding needs more memory than the "
                           "%llu bytes allowed",
                           (unsigned long long)p->max_memory);
        void *buf = mg__malloc(n * bytes);
        if (!buf) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        st = mg__dcm_rle_decode(buf, src, len, in->rows, in->cols, in->spp,
                                bytes, err, errlen);
        if (!st) {
            for (size_t i = 0; i < n; i++) {
                uint64_t u;
                if (bytes == 1) u = ((const uint8_t *)buf)[i];
                else if (bytes == 2) u = ((const uint16_t *)buf)[i];
                else u = ((const uint32_t *)buf)[i];
                out[i] = stored(u, in);
            }
        }
        mg__free(buf);
        return st;
    }
    case MG__TS_JPEG_BASELINE: case MG__TS_JPEG_EXTENDED: {
        unsigned char *buf = mg__malloc(n);
        int precision = 0;
        if (!buf) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        st = mg__jpeg_decode_into(buf, in->cols, in->rows, in->spp,
                                  strcmp(in->photometric, "RGB") == 0, src, len,
                                  p, &precision, err, errlen);
        if (st == MG_E_UNSUPPORTED && precision > 8)
            st = mg__err(err, errlen, st,
                         "DICOM: %d-bit JPEG (%s) is not supported: the "
                         "libjpeg-turbo API this library uses decodes 8-bit "
                         "samples only", precision, ts_name);
        if (!st) {
            for (size_t i = 0; i < n; i++) out[i] = buf[i];
            *ybr = 0; /* libjpeg converted YCbCr to RGB */
        }
        mg__free(buf);
        return st;
    }
    case MG__TS_JPEG_LOSSLESS: {
        int precision = 0;
        if ((uint64_t)n * 2 > budget)
            return mg__err(err, errlen, MG_E_LIMIT,
                           "lossless JPEG: decoding needs more memory than "
                           "the %llu bytes allowed",
                           (unsigned long long)p->max_memory);
        uint16_t *buf = mg__malloc(n * 2);
        if (!buf) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        st = mg__jpegll_decode(buf, in->cols, in->rows, in->spp, src, len,
                               &precision, err, errlen);
        if (!st && (uint32_t)precision > max_prec)
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "lossless JPEG: %d-bit samples do not fit Bits "
                         "Allocated %u", precision, (unsigned)in->bits_alloc);
        if (!st)
            for (size_t i = 0; i < n; i++)
                out[i] = codec_stored(buf[i], (uint32_t)precision, in);
        mg__free(buf);
        return st;
    }
    case MG__TS_JPEG_LS:
        if ((st = mg__dcm_jls_decode(out, &prec, src, len, in->rows, in->cols,
                                     in->spp, max_prec, budget, err, errlen)))
            return st;
        break;
    case MG__TS_JPEG2000: {
        int sgnd = 0;
        if ((st = mg__dcm_j2k_decode(out, &prec, &sgnd, src, len, in->rows,
                                     in->cols, in->spp, max_prec, budget, err,
                                     errlen)))
            return st;
        /* YBR_RCT / YBR_ICT: OpenJPEG undid the component transform. */
        break;
    }
    default:
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: transfer syntax %s has no frame decoder",
                       ts_name);
    }
    for (size_t i = 0; i < n; i++) out[i] = codec_stored(out[i], prec, in);
    return MG_OK;
}

/* Samples of frame `frame` from native (uncompressed) Pixel Data. */
static mg_status native_samples(int64_t *out, const mg__dcm_dataset *ds,
                                const mg__dcm_info *in, uint32_t frame,
                                char *err, size_t errlen) {
    const mg__dcm_elem *pe = &ds->el[ds->pixel_el];
    const unsigned char *d = ds->data + pe->off;
    const size_t npx = (size_t)in->rows * in->cols;
    int is422 = strcmp(in->photometric, "YBR_FULL_422") == 0;
    uint64_t per_px = is422 ? 2 : in->spp; /* samples per pixel stored */
    uint64_t frame_bits, total_bits;
    if (mg__mul_u64((uint64_t)npx * per_px, in->bits_alloc, &frame_bits) ||
        mg__mul_u64(frame_bits, in->n_frames, &total_bits) ||
        (total_bits + 7) / 8 > pe->len)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: Pixel Data has %u bytes; %u frame(s) of %ux%u "
                       "with %u x %u-bit samples need more",
                       (unsigned)pe->len, (unsigned)in->n_frames,
                       (unsigned)in->cols, (unsigned)in->rows,
                       (unsigned)per_px, (unsigned)in->bits_alloc);
    uint64_t bit0 = frame_bits * frame;
    size_t n = (size_t)(npx * per_px);
    if (in->bits_alloc == 1) {
        for (size_t i = 0; i < n; i++) {
            uint64_t b = bit0 + i;
            out[i] = (d[b >> 3] >> (b & 7)) & 1;
        }
        return MG_OK;
    }
    const unsigned char *f = d + bit0 / 8;
    uint32_t bytes = in->bits_alloc / 8;
    if (is422) {
        /* Y0 Y1 Cb Cr per horizontal pair (8-bit only, checked). */
        for (uint32_t y = 0; y < in->rows; y++) {
            const unsigned char *r = f + (size_t)y * in->cols * 2;
            int64_t *o = out + (size_t)y * in->cols * 3;
            for (uint32_t x = 0; x + 1 < in->cols + 1u; x += 2) {
                const unsigned char *q = r + (size_t)x * 2;
                o[3 * x] = q[0];
                o[3 * x + 1] = q[2];
                o[3 * x + 2] = q[3];
                if (x + 1 < in->cols) {
                    o[3 * x + 3] = q[1];
                    o[3 * x + 4] = q[2];
                    o[3 * x + 5] = q[3];
                }
            }
        }
        return MG_OK;
    }
    for (size_t i = 0; i < n; i++) {
        size_t src = i;
        if (in->spp > 1 && in->planar == 1) /* RRR...GGG...BBB */
            src = (i % in->spp) * npx + i / in->spp;
        const unsigned char *q = f + src * bytes;
        uint64_t u = bytes == 1 ? q[0] : bytes == 2 ? rd16(q) : rd32(q);
        out[i] = stored(u, in);
    }
    return MG_OK;
}

mg_status mg__dcm_frame_samples(int64_t *out, int *ybr,
                                const mg__dcm_dataset *ds,
                                const mg__dcm_info *in, uint32_t frame,
                                const mg_image_params *p, char *err,
                                size_t errlen) {
    if (ds->pixel_el < 0)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: no Pixel Data element");
    if (ds->el[ds->pixel_el].len != MG__DCM_UNDEF) {
        *ybr = strncmp(in->photometric, "YBR_FULL", 8) == 0;
        return native_samples(out, ds, in, frame, err, errlen);
    }
    const unsigned char *src;
    unsigned char *owned;
    size_t len;
    mg_status st = mg__dcm_frame_bytes(&src, &len, &owned, ds, in->n_frames,
                                       frame, err, errlen);
    if (st) return st;
    st = mg__dcm_decode_frame(out, ybr, src, len, ds->ts, ds->ts_name, in, p,
                              err, errlen);
    mg__free(owned);
    return st;
}
