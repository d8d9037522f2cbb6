/* dicom_j2k.c - JPEG 2000 frames (DICOM 1.2.840.10008.1.2.4.90 / .91)
 * through OpenJPEG, decoded from memory.
 *
 * A frame is a J2K codestream (SOC SIZ ...) or, from some writers, a JP2
 * file wrapping one. Before OpenJPEG sees the data we read the SIZ marker
 * segment ourselves: the size, component count, subsampling and precision
 * must agree with the DICOM header, and the memory the decode will need
 * (OpenJPEG's image, its tile buffers, per-tile bookkeeping) must fit the
 * caller's budget; a few bytes declaring 65535 tiles or a huge canvas are
 * refused before anything is allocated for them. OpenJPEG's messages go to
 * the error buffer (never to stdout/stderr), strict mode makes truncated
 * codestreams errors, decoding runs on the calling thread only, always at
 * full resolution. OpenJPEG applies the inverse multiple-component
 * transform (YBR_RCT / YBR_ICT) itself, so three components come back as
 * RGB. */
#include "io/dicom.h"

#include <string.h>

#include <openjpeg.h>

/* OpenJPEG's bookkeeping per tile (tile and component coding parameters),
 * an upper estimate for 2.5, added to the budget check. */
#define MG__J2K_TILE_BYTES 8192u
#define MG__J2K_TILE_COMP_BYTES 2048u

typedef struct memstream {
    const unsigned char *d;
    uint64_t n, pos;       /* pos may pass n after a skip, as with a file */
} memstream;

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T want, void *user) {
    memstream *m = user;
    if (m->pos >= m->n) return (OPJ_SIZE_T)-1; /* end of stream */
    uint64_t k = m->n - m->pos;
    if (k > want) k = want;
    memcpy(buf, m->d + m->pos, (size_t)k);
    m->pos += k;
    return (OPJ_SIZE_T)k;
}

static OPJ_OFF_T ms_skip(OPJ_OFF_T k, void *user) {
    memstream *m = user;
    if (k < 0) {
        if ((uint64_t)-(k + 1) >= m->pos) return -1;
        m->pos -= (uint64_t)-(k + 1) + 1;
        return k;
    }
    if ((uint64_t)k > UINT64_MAX / 2 - m->pos) return -1;
    m->pos += (uint64_t)k;
    return k;
}

static OPJ_BOOL ms_seek(OPJ_OFF_T k, void *user) {
    memstream *m = user;
    if (k < 0 || (uint64_t)k > m->n) return OPJ_FALSE;
    m->pos = (uint64_t)k;
    return OPJ_TRUE;
}

typedef struct msgs {
    char first_error[200];
    char last_warning[200];
} msgs;

static void keep(char *dst, size_t n, const char *msg) {
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r')) len--;
    if (len >= n) len = n - 1;
    memcpy(dst, msg, len);
    dst[len] = '\0';
}

static void on_error(const char *msg, void *user) {
    msgs *m = user;
    if (!m->first_error[0]) keep(m->first_error, sizeof m->first_error, msg);
}

static void on_warning(const char *msg, void *user) {
    msgs *m = user;
    keep(m->last_warning, sizeof m->last_warning, msg);
}

static void on_info(const char *msg, void *user) {
    (void)msg;
    (void)user;
}

static uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The codestream inside a JP2 file: the contents of its top-level jp2c box. */
static int jp2_codestream(const unsigned char *d, size_t n, size_t *off) {
    size_t pos = 0;
    while (n - pos >= 8) {
        uint64_t len = be32(d + pos), head = 8;
        if (len == 1) {
            if (n - pos < 16) return 0;
            len = (uint64_t)be32(d + pos + 8) << 32 | be32(d + pos + 12);
            head = 16;
        } else if (len == 0) {
            len = n - pos; /* the last box runs to the end */
        }
        if (len < head || len > n - pos) return 0;
        if (memcmp(d + pos + 4, "jp2c", 4) == 0) {
            *off = pos + (size_t)head;
            return 1;
        }
        pos += (size_t)len;
    }
    return 0;
}

static const unsigned char jp2_signature[12] = {0, 0, 0, 12, 'j', 'P', ' ', ' ',
                                                 0x0D, 0x0A, 0x87, 0x0A};

/* Checks the SIZ segment at cs[0..n) (a codestream) against the DICOM
 * header; *tiles receives the tile count. */
static mg_status check_siz(const unsigned char *cs, size_t n, uint32_t rows,
                           uint32_t cols, uint32_t spp, uint32_t max_prec,
                           uint64_t *tiles, char *err, size_t errlen) {
    if (n < 4 || be16(cs) != 0xFF4F || be16(cs + 2) != 0xFF51)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "JPEG 2000: the frame does not start with SOC and SIZ "
                       "markers");
    if (n < 6 + 38) goto short_siz;
    const unsigned char *s = cs + 4;
    uint32_t lsiz = be16(s), xsiz = be32(s + 4), ysiz = be32(s + 8),
             xo = be32(s + 12), yo = be32(s + 16), xt = be32(s + 20),
             yt = be32(s + 24), xto = be32(s + 28), yto = be32(s + 32),
             csiz = be16(s + 36);
    if (lsiz != 38 + 3 * csiz || n - 4 < lsiz) goto short_siz;
    if (xsiz <= xo || ysiz <= yo || xt == 0 || yt == 0 || xto > xo ||
        yto > yo || (uint64_t)xto + xt <= xo || (uint64_t)yto + yt <= yo)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "JPEG 2000: SIZ gives an empty image or an invalid "
                       "tile grid");
    if (xsiz - xo != cols || ysiz - yo != rows || csiz != spp)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "JPEG 2000: frame is %ux%u with %u components; the "
                       "DICOM header says %ux%u with %u",
                       (unsigned)(xsiz - xo), (unsigned)(ysiz - yo),
                       (unsigned)csiz, (unsigned)cols, (unsigned)rows,
                       (unsigned)spp);
    for (uint32_t c = 0; c < csiz; c++) {
        const unsigned char *q = s + 38 + 3 * c;
        uint32_t prec = (q[0] & 0x7F) + 1u;
        if (q[1] != 1 || q[2] != 1)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "JPEG 2000: component %u is subsampled %ux%u",
                           (unsigned)c, (unsigned)q[1], (unsigned)q[2]);
        if (prec > max_prec)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "JPEG 2000: component %u has %u-bit samples; the "
                           "DICOM header allows %u", (unsigned)c,
                           (unsigned)prec, (unsigned)max_prec);
    }
    *tiles = (((uint64_t)xsiz - xto + xt - 1) / xt) *
             (((uint64_t)ysiz - yto + yt - 1) / yt);
    return MG_OK;
short_siz:
    return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                   "JPEG 2000: SIZ marker segment is truncated or has the "
                   "wrong length");
}

mg_status mg__dcm_j2k_decode(int64_t *out, uint32_t *prec, int *sgnd,
                             const unsigned char *src, size_t n, uint32_t rows,
                             uint32_t cols, uint32_t spp, uint32_t max_prec,
                             uint64_t budget, char *err, size_t errlen) {
    OPJ_CODEC_FORMAT fmt = OPJ_CODEC_J2K;
    size_t cs_off = 0;
    uint64_t tiles = 0, need;
    mg_status st;
    if (max_prec > 16) max_prec = 16;
    if (n >= 12 && memcmp(src, jp2_signature, 12) == 0) {
        fmt = OPJ_CODEC_JP2;
        if (!jp2_codestream(src, n, &cs_off))
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "JPEG 2000: JP2 file without a readable "
                           "codestream (jp2c) box");
    }
    if ((st = check_siz(src + cs_off, n - cs_off, rows, cols, spp, max_prec,
                        &tiles, err, errlen)))
        return st;
    /* OpenJPEG's image and tile buffers (32-bit samples each), the
     * compressed data it copies, and its per-tile bookkeeping. */
    uint64_t samples = (uint64_t)rows * cols * spp;
    if (mg__mul_u64(samples, 8, &need) || mg__add_u64(need, n, &need) ||
        tiles > UINT64_MAX / (MG__J2K_TILE_BYTES + MG__J2K_TILE_COMP_BYTES * spp) ||
        mg__add_u64(need, tiles * (MG__J2K_TILE_BYTES + MG__J2K_TILE_COMP_BYTES * spp),
                    &need) ||
        need > budget)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "JPEG 2000: decoding a %ux%u frame of %llu tiles needs "
                       "about %llu bytes; %llu are allowed", (unsigned)cols,
                       (unsigned)rows, (unsigned long long)tiles,
                       (unsigned long long)need, (unsigned long long)budget);

    msgs m;
    memset(&m, 0, sizeof m);
    memstream ms = {src, n, 0};
    opj_image_t *img = NULL;
    opj_stream_t *stream = NULL;
    opj_codec_t *codec = opj_create_decompress(fmt);
    opj_dparameters_t prm;
    const char *stage = "setting up the decoder";
    st = MG_E_IMAGE_FORMAT;
    if (!codec) {
        st = MG_E_NOMEM;
        goto fail;
    }
    opj_set_info_handler(codec, on_info, &m);
    opj_set_warning_handler(codec, on_warning, &m);
    opj_set_error_handler(codec, on_error, &m);
    opj_set_default_decoder_parameters(&prm);
    prm.cp_reduce = 0; /* full resolution */
    prm.cp_layer = 0;  /* every quality layer */
    if (!opj_setup_decoder(codec, &prm) ||
        !opj_decoder_set_strict_mode(codec, OPJ_TRUE)) {
        st = MG_E_INTERNAL;
        goto fail;
    }
    /* The calling thread only (OPJ_NUM_THREADS in the environment would
     * otherwise start a pool); harmless if the build has no threads. */
    (void)opj_codec_set_threads(codec, 0);
    stream = opj_stream_create(n < ((size_t)1 << 16) ? n : ((size_t)1 << 16),
                               OPJ_TRUE);
    if (!stream) {
        st = MG_E_NOMEM;
        goto fail;
    }
    opj_stream_set_user_data(stream, &ms, NULL);
    opj_stream_set_user_data_length(stream, n);
    opj_stream_set_read_function(stream, ms_read);
    opj_stream_set_skip_function(stream, ms_skip);
    opj_stream_set_seek_function(stream, ms_seek);

    stage = "reading the header";
    if (!opj_read_header(stream, codec, &img) || !img) goto fail;
    stage = "decoding";
    if (!opj_decode(codec, stream, img)) goto fail;
    stage = "finishing";
    if (!opj_end_decompress(codec, stream)) goto fail;

    /* What came back must be exactly the frame the header describes (a JP2
     * palette or channel definition could change it). */
    if (img->numcomps != spp) {
        mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                "JPEG 2000: decoded %u components; the DICOM header says %u",
                (unsigned)img->numcomps, (unsigned)spp);
        goto out;
    }
    for (uint32_t c = 0; c < spp; c++) {
        const opj_image_comp_t *k = &img->comps[c];
        if (!k->data || k->w != cols || k->h != rows || k->dx != 1 ||
            k->dy != 1 || k->factor != 0 || k->prec < 1 ||
            k->prec > max_prec || k->prec != img->comps[0].prec ||
            k->sgnd != img->comps[0].sgnd) {
            mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                    "JPEG 2000: decoded component %u is %ux%u, %u-bit%s; "
                    "expected %ux%u, at most %u-bit, like component 0",
                    (unsigned)c, (unsigned)k->w, (unsigned)k->h,
                    (unsigned)k->prec, k->sgnd ? " signed" : "",
                    (unsigned)cols, (unsigned)rows, (unsigned)max_prec);
            goto out;
        }
    }
    size_t npx = (size_t)rows * cols;
    for (uint32_t c = 0; c < spp; c++) {
        const OPJ_INT32 *d = img->comps[c].data;
        int64_t *o = out + c;
        for (size_t i = 0; i < npx; i++, o += spp) *o = d[i];
    }
    *prec = img->comps[0].prec;
    *sgnd = img->comps[0].sgnd != 0;
    st = MG_OK;
    goto out;

fail:
    if (m.first_error[0])
        mg__err(err, errlen, st, "JPEG 2000: %s", m.first_error);
    else if (st == MG_E_NOMEM)
        mg__err(err, errlen, st, "JPEG 2000: out of memory");
    else
        mg__err(err, errlen, st, "JPEG 2000: OpenJPEG failed %s%s%s", stage,
                m.last_warning[0] ? ": " : "", m.last_warning);
out:
    if (img) opj_image_destroy(img);
    if (stream) opj_stream_destroy(stream);
    if (codec) opj_destroy_codec(codec);
    return st;
}
