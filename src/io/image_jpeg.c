/* image_jpeg.c - JPEG decoding through the libjpeg API (libjpeg-turbo).
 *
 * libjpeg reports fatal errors through error_exit, which must not return;
 * we longjmp back to decode() and unwind there. Every piece of state that
 * changes after setjmp lives in a struct reached through a pointer that is
 * itself never modified, so nothing is left indeterminate by the longjmp
 * (C11 7.13.2.1p3) and no `volatile` locals are needed.
 *
 * Defences, beyond libjpeg's own checks:
 *  - dimensions and the decoded size are checked against the caller's limits
 *    after jpeg_read_header, before jpeg_start_decompress allocates anything
 *    proportional to the image;
 *  - multi-scan (progressive) images need a whole-image coefficient buffer:
 *    its size is checked against max_memory in advance, and libjpeg's own
 *    memory manager is capped at max_memory too (it then fails instead of
 *    asking for a backing store);
 *  - the number of scans is capped (a tiny progressive file can otherwise
 *    demand thousands of passes over a large image);
 *  - warnings about corrupt or truncated data are errors: a viewer must not
 *    be handed silently repaired pixels.
 */
#include "core/core.h"
#include "io/image.h"
#include "io/dicom.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

/* Typical encoders write about 10 scans; libjpeg-turbo's own tools suggest a
 * limit for untrusted input. */
#define MG__JPEG_MAX_SCANS 100

typedef struct jpeg_state {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    int created;                 /* jpeg_create_decompress succeeded */
    mg_status status;            /* set before each longjmp */
    char msg[JMSG_LENGTH_MAX];
    const unsigned char *data;
    size_t size;
    const mg_image_params *p;
    char *err;
    size_t errlen;
    mg_image *img;               /* owned until handed to the caller */
    /* DICOM frames: decode into dst (want_w x want_h x want_c) instead. */
    unsigned char *dst;
    uint32_t want_w, want_h, want_c;
    int rgb_as_is;
    int precision;
} jpeg_state;

int mg__image_is_jpeg(const unsigned char *d, size_t n) {
    return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF;
}

static void jpeg_fail(jpeg_state *st, mg_status status) {
    st->status = status;
    longjmp(st->jb, 1);
}

static void on_error_exit(j_common_ptr cinfo) {
    jpeg_state *st = cinfo->client_data;
    mg_status status;
    if (cinfo->err->msg_code == JERR_BAD_PRECISION)
        st->precision = cinfo->err->msg_parm.i[0];
    if (cinfo->err->msg_code == JERR_BAD_PRECISION)
        snprintf(st->msg, sizeof st->msg,
                 "%d-bit JPEG is not supported (only 8-bit samples)",
                 cinfo->err->msg_parm.i[0]);
    else
        (*cinfo->err->format_message)(cinfo, st->msg);
    switch (cinfo->err->msg_code) {
    case JERR_OUT_OF_MEMORY:
        status = MG_E_NOMEM;
        break;
    case JERR_NO_BACKING_STORE: /* the coefficient buffer exceeded the cap */
    case JERR_IMAGE_TOO_BIG:
    case JERR_WIDTH_OVERFLOW:
        status = MG_E_LIMIT;
        break;
    case JERR_BAD_PRECISION:    /* 12-bit (or 16-bit lossless) data */
    case JERR_SOF_UNSUPPORTED:  /* lossless, hierarchical */
    case JERR_NOT_COMPILED:
        status = MG_E_UNSUPPORTED;
        break;
    default:
        status = MG_E_IMAGE_FORMAT;
        break;
    }
    jpeg_fail(st, status);
}

/* Warnings (level -1) about the data abort the decode; trace messages
 * (level >= 0) are dropped. Nothing is ever printed. */
static void on_emit_message(j_common_ptr cinfo, int msg_level) {
    jpeg_state *st = cinfo->client_data;
    if (msg_level >= 0) return;
    switch (cinfo->err->msg_code) {
    case JWRN_ADOBE_XFORM: /* metadata we do not rely on */
    case JWRN_JFIF_MAJOR:
    case JWRN_BOGUS_ICC:
        cinfo->err->num_warnings++;
        return;
    default:
        break;
    }
    (*cinfo->err->format_message)(cinfo, st->msg);
    jpeg_fail(st, MG_E_IMAGE_FORMAT);
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void on_progress(j_common_ptr cinfo) {
    jpeg_state *st = cinfo->client_data;
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MG__JPEG_MAX_SCANS) {
        snprintf(st->msg, sizeof st->msg, "more than %d scans",
                 MG__JPEG_MAX_SCANS);
        jpeg_fail(st, MG_E_LIMIT);
    }
}

/* Bytes of the whole-image coefficient buffer a multi-scan image needs. */
static int coef_bytes(const struct jpeg_decompress_struct *c, uint64_t *out) {
    uint64_t total = 0;
    for (int i = 0; i < c->num_components; i++) {
        const jpeg_component_info *comp = &c->comp_info[i];
        uint64_t w = comp->width_in_blocks, h = comp->height_in_blocks, n;
        if (comp->h_samp_factor > 0)
            w = (w + (uint64_t)comp->h_samp_factor - 1) /
                (uint64_t)comp->h_samp_factor * (uint64_t)comp->h_samp_factor;
        if (comp->v_samp_factor > 0)
            h = (h + (uint64_t)comp->v_samp_factor - 1) /
                (uint64_t)comp->v_samp_factor * (uint64_t)comp->v_samp_factor;
        if (mg__mul_u64(w, h, &n) || mg__mul_u64(n, sizeof(JBLOCK), &n) ||
            mg__add_u64(total, n, &total))
            return 1;
    }
    *out = total;
    return 0;
}

/* Runs the whole decode; returns MG_OK or a status with st->msg or st->err
 * filled in. All mutable state is in *st. */
static mg_status decode(jpeg_state *const st) {
    struct jpeg_decompress_struct *c = &st->cinfo;
    mg_status s;
    int32_t format;

    if (setjmp(st->jb)) return st->status;

    c->err = jpeg_std_error(&st->jerr);
    st->jerr.error_exit = on_error_exit;
    st->jerr.emit_message = on_emit_message;
    st->jerr.output_message = on_output_message;
    c->client_data = st; /* kept by jpeg_create_decompress */
    jpeg_create_decompress(c);
    st->created = 1;
    st->progress.progress_monitor = on_progress;
    c->progress = &st->progress;
    c->mem->max_memory_to_use =
        st->p->max_memory > (uint64_t)LONG_MAX ? LONG_MAX
                                               : (long)st->p->max_memory;

    jpeg_mem_src(c, st->data, (unsigned long)st->size);
    jpeg_read_header(c, TRUE); /* an image is required: errors otherwise */
    st->precision = c->data_precision;

    if (c->data_precision != 8) {
        snprintf(st->msg, sizeof st->msg, "%d-bit JPEG is not supported",
                 c->data_precision);
        return MG_E_UNSUPPORTED;
    }
    switch (c->jpeg_color_space) {
    case JCS_GRAYSCALE:
        c->out_color_space = JCS_GRAYSCALE;
        format = MG_PIXEL_GRAY8;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        /* DICOM RGB without an Adobe marker: components are R, G, B
         * already (PS3.5 8.2.1); libjpeg would otherwise guess YCbCr. */
        if (st->dst && st->rgb_as_is && !c->saw_Adobe_marker)
            c->jpeg_color_space = JCS_RGB;
        c->out_color_space = JCS_RGB;
        format = MG_PIXEL_RGB8;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        snprintf(st->msg, sizeof st->msg,
                 "CMYK/YCCK JPEG is not supported (convert to RGB)");
        return MG_E_UNSUPPORTED;
    default:
        snprintf(st->msg, sizeof st->msg,
                 "JPEG colour space with %d components is not supported",
                 c->num_components);
        return MG_E_UNSUPPORTED;
    }

    if (st->dst && (c->image_width != st->want_w ||
                    c->image_height != st->want_h ||
                    mg__pixel_channels(format) != st->want_c)) {
        snprintf(st->msg, sizeof st->msg,
                 "frame is %ux%u with %d components; the DICOM header says "
                 "%ux%u with %u", (unsigned)c->image_width,
                 (unsigned)c->image_height, c->num_components,
                 (unsigned)st->want_w, (unsigned)st->want_h,
                 (unsigned)st->want_c);
        return MG_E_IMAGE_FORMAT;
    }
    /* Limits, from the header alone, before anything image-sized exists. */
    size_t bytes;
    if ((s = mg__image_check_limits(&bytes, c->image_width, c->image_height,
                                    format, st->p, st->err, st->errlen))) {
        st->msg[0] = '\0';
        return s;
    }
    if (jpeg_has_multiple_scans(c)) {
        uint64_t coef;
        if (coef_bytes(c, &coef) || coef > st->p->max_memory) {
            snprintf(st->msg, sizeof st->msg,
                     "a progressive %ux%u image needs more than the %llu "
                     "bytes of working memory allowed",
                     (unsigned)c->image_width, (unsigned)c->image_height,
                     (unsigned long long)st->p->max_memory);
            return MG_E_LIMIT;
        }
    }

    if (!st->dst &&
        (s = mg__image_alloc(&st->img, c->image_width, c->image_height, format,
                             MG_IMAGE_SRC_JPEG, 8, st->p, st->err,
                             st->errlen))) {
        st->msg[0] = '\0';
        return s;
    }

    jpeg_start_decompress(c);
    uint32_t ch = mg__pixel_channels(format);
    if (c->output_width != c->image_width ||
        c->output_height != c->image_height ||
        c->output_components != (int)ch) {
        snprintf(st->msg, sizeof st->msg,
                 "libjpeg produced %ux%ux%d, expected %ux%ux%u",
                 (unsigned)c->output_width, (unsigned)c->output_height,
                 c->output_components, (unsigned)c->image_width,
                 (unsigned)c->image_height, (unsigned)ch);
        return MG_E_INTERNAL;
    }
    size_t row = (size_t)c->image_width * ch;
    unsigned char *px = st->dst ? st->dst : st->img->pixels;
    while (c->output_scanline < c->output_height) {
        JSAMPROW rows[16];
        JDIMENSION first = c->output_scanline;
        JDIMENSION n = c->output_height - first;
        if (n > 16) n = 16;
        for (JDIMENSION i = 0; i < n; i++)
            rows[i] = px + (size_t)(first + i) * row;
        if (jpeg_read_scanlines(c, rows, n) == 0) {
            /* Cannot happen with a memory source: it never suspends. */
            snprintf(st->msg, sizeof st->msg, "decoder made no progress");
            return MG_E_INTERNAL;
        }
    }
    /* Reads through EOI, so a truncated tail or garbage there is caught. */
    jpeg_finish_decompress(c);
    return MG_OK;
}

mg_status mg__image_decode_jpeg(mg_image **out, const unsigned char *data,
                                size_t size, const mg_image_params *p,
                                char *err, size_t errlen) {
    jpeg_state st;
    mg_status s;

    *out = NULL;
    if (size > ULONG_MAX)
        return mg__err(err, errlen, MG_E_LIMIT, "JPEG data too large");
    memset(&st, 0, sizeof st);
    st.data = data;
    st.size = size;
    st.p = p;
    st.err = err;
    st.errlen = errlen;

    s = decode(&st);

    if (st.created) jpeg_destroy_decompress(&st.cinfo);
    if (s != MG_OK) {
        mg_image_free(st.img);
        /* Messages from libjpeg or decode(); limit messages are already in
         * err (st.msg is then empty). */
        if (st.msg[0]) mg__err(err, errlen, s, "JPEG: %s", st.msg);
        return s;
    }
    *out = st.img;
    return MG_OK;
}

mg_status mg__jpeg_decode_into(unsigned char *dst, uint32_t w, uint32_t h,
                               uint32_t comps, int rgb_as_is,
                               const unsigned char *data, size_t size,
                               const mg_image_params *p, int *precision,
                               char *err, size_t errlen) {
    jpeg_state st;
    mg_status s;

    if (size > ULONG_MAX)
        return mg__err(err, errlen, MG_E_LIMIT, "JPEG data too large");
    memset(&st, 0, sizeof st);
    st.data = data;
    st.size = size;
    st.p = p;
    st.err = err;
    st.errlen = errlen;
    st.dst = dst;
    st.want_w = w;
    st.want_h = h;
    st.want_c = comps;
    st.rgb_as_is = rgb_as_is;

    s = decode(&st);
    if (precision) *precision = st.precision;
    if (st.created) jpeg_destroy_decompress(&st.cinfo);
    if (s != MG_OK && st.msg[0]) mg__err(err, errlen, s, "JPEG: %s", st.msg);
    return s;
}
