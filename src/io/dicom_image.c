/* dicom_image.c - DICOM pixel data to an mg_image: the header checks, the
 * frame's stored values (dicom_frame.c), the modality rescale, VOI
 * windowing, MONOCHROME1 inversion and YBR to RGB. docs/DICOM.md states the
 * rules this file implements. */
#include "io/dicom.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static uint8_t clamp8(double x) {
    if (!(x > 0)) return 0;
    if (x >= 255) return 255;
    return (uint8_t)floor(x + 0.5);
}

/* PS3.3 C.11.2.1.2.1, the LINEAR function, to 0..255, written as
 * (x - lower) * 255/(w-1) with lower = c - 0.5 - (w-1)/2 (the same value;
 * this form is exact for integer x at integer grey levels), inverted for
 * MONOCHROME1, then truncated to an integer as dcmtk does, so that both
 * agree exactly on integer modality values. */
static uint8_t window8(double x, double c, double w, int invert) {
    double lower = c - 0.5 - (w - 1) / 2, y;
    if (x <= lower) y = 0;
    else if (x > c - 0.5 + (w - 1) / 2 || w <= 1) y = 255;
    else y = (x - lower) * (255.0 / (w - 1));
    if (invert) y = 255 - y;
    if (!(y > 0)) return 0;
    return y >= 255 ? 255 : (uint8_t)y;
}

static double round_half_up(double x) { return floor(x + 0.5); }

static void copy_text(mg_image *img, const mg__dcm_dataset *ds,
                      const mg__dcm_info *in) {
    snprintf(img->photometric, sizeof img->photometric, "%s", in->photometric);
    snprintf(img->ts_name, sizeof img->ts_name, "%s", ds->ts_name);
    snprintf(img->ts_uid, sizeof img->ts_uid, "%s", ds->ts_uid);
    snprintf(img->modality, sizeof img->modality, "%s", in->modality);
    snprintf(img->sop_class_uid, sizeof img->sop_class_uid, "%s",
             in->sop_class_uid);
    snprintf(img->series_uid, sizeof img->series_uid, "%s", in->series_uid);
}

static mg_status check_image(const mg__dcm_dataset *ds, const mg__dcm_info *in,
                             const mg_image_params *p, int *color,
                             char *err, size_t errlen) {
    const char *ph = in->photometric;
    int mono = strcmp(ph, "MONOCHROME1") == 0 || strcmp(ph, "MONOCHROME2") == 0;
    int rgb = strcmp(ph, "RGB") == 0;
    int ybr = strcmp(ph, "YBR_FULL") == 0 || strcmp(ph, "YBR_FULL_422") == 0;
    /* JPEG 2000's component transforms: the codec returns RGB. */
    int rct = strcmp(ph, "YBR_RCT") == 0 || strcmp(ph, "YBR_ICT") == 0;
    if (in->rows == 0 || in->cols == 0)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: image is %ux%u (empty)", (unsigned)in->cols,
                       (unsigned)in->rows);
    if (rct && ds->ts != MG__TS_JPEG2000)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: Photometric Interpretation %s is only valid "
                       "for JPEG 2000, not %s", ph, ds->ts_name);
    if (!mono && !rgb && !ybr && !rct)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: Photometric Interpretation '%s' is not "
                       "supported", ph);
    if ((mono && in->spp != 1) || (!mono && in->spp != 3))
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: Samples per Pixel is %u for %s",
                       (unsigned)in->spp, ph);
    if (in->bits_alloc != 1 && in->bits_alloc != 8 && in->bits_alloc != 16 &&
        in->bits_alloc != 32)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: Bits Allocated %u is not supported (1, 8, 16, "
                       "32)", (unsigned)in->bits_alloc);
    if (in->bits_stored < 1 || in->bits_stored > in->bits_alloc ||
        in->high_bit >= in->bits_alloc ||
        in->high_bit + 1 < in->bits_stored)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: Bits Stored %u / High Bit %u do not fit Bits "
                       "Allocated %u", (unsigned)in->bits_stored,
                       (unsigned)in->high_bit, (unsigned)in->bits_alloc);
    if (in->pixel_rep > 1 || in->planar > 1)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: Pixel Representation %u / Planar "
                       "Configuration %u out of range",
                       (unsigned)in->pixel_rep, (unsigned)in->planar);
    if (in->bits_alloc == 1 && (!mono || ds->pixel_el < 0 ||
                                ds->el[ds->pixel_el].len == MG__DCM_UNDEF))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: 1-bit pixels are supported for native "
                       "monochrome data only");
    if (strcmp(ph, "YBR_FULL_422") == 0 && in->cols % 2 &&
        ds->pixel_el >= 0 && ds->el[ds->pixel_el].len != MG__DCM_UNDEF)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: uncompressed YBR_FULL_422 with an odd width "
                       "(%u) is not supported", (unsigned)in->cols);
    if (ybr && in->bits_alloc != 8)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: %s with %u-bit samples is not supported", ph,
                       (unsigned)in->bits_alloc);
    if (!mono && in->bits_alloc == 32 && p->window == MG_WINDOW_NONE)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: 32-bit colour samples do not fit RGB16; use a "
                       "windowed mode");
    if (p->frame >= in->n_frames)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "DICOM: frame %u requested; the file has %u frame%s "
                       "(0..%u)", (unsigned)p->frame, (unsigned)in->n_frames,
                       in->n_frames == 1 ? "" : "s",
                       (unsigned)(in->n_frames - 1));
    *color = !mono;
    return MG_OK;
}

mg_status mg__dcm_check_pixels(const mg__dcm_dataset *ds,
                               const mg__dcm_info *in, const mg_image_params *p,
                               int *color, char *err, size_t errlen) {
    mg_status st;
    if (ds->pixel_el < 0)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: no Pixel Data element");
    int encaps = ds->el[ds->pixel_el].len == MG__DCM_UNDEF;
    switch (ds->ts) {
    case MG__TS_IMPLICIT_LE: case MG__TS_EXPLICIT_LE: case MG__TS_DEFLATED_LE:
        if (encaps)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: encapsulated Pixel Data under the native "
                           "transfer syntax %s", ds->ts_name);
        break;
    case MG__TS_JPEG_BASELINE: case MG__TS_JPEG_EXTENDED: case MG__TS_RLE:
    case MG__TS_JPEG_LOSSLESS: case MG__TS_JPEG_LS: case MG__TS_JPEG2000:
        if (!encaps)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: Pixel Data is not encapsulated under %s",
                           ds->ts_name);
        break;
    default:
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: transfer syntax %s (%s) is not supported: no "
                       "decoder for it in this build", ds->ts_name,
                       ds->ts_uid);
    }
    if ((st = check_image(ds, in, p, color, err, errlen))) return st;
    if (ds->ts == MG__TS_RLE && in->bits_alloc == 1)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: 1-bit RLE is not supported");
    return MG_OK;
}

static mg_status decode(mg_image **out, const mg__dcm_dataset *ds,
                        const mg_image_params *p, char *err, size_t errlen) {
    mg__dcm_info in;
    mg_status st;
    int color = 0;
    struct {
        size_t npx;      /* rows * cols */
        int64_t *v;      /* npx * spp stored values, interleaved */
        int ybr;         /* samples are YCbCr (full range) */
    } j;

    if ((st = mg__dcm_read_info(&in, ds, p->frame, err, errlen))) return st;
    if ((st = mg__dcm_check_pixels(ds, &in, p, &color, err, errlen)))
        return st;

    /* Output format and limits before anything image-sized is allocated;
     * the working samples (8 bytes each) are held to max_memory too. */
    int raw = p->window == MG_WINDOW_NONE;
    int32_t fmt = color ? (raw && in.bits_alloc > 8 ? MG_PIXEL_RGB16
                                                    : MG_PIXEL_RGB8)
                        : (raw ? MG_PIXEL_GRAY16 : MG_PIXEL_GRAY8);
    size_t bytes;
    uint64_t work;
    if ((st = mg__image_check_limits(&bytes, in.cols, in.rows, fmt, p, err,
                                     errlen)))
        return st;
    if (mg__mul_u64((uint64_t)in.rows * in.cols, (uint64_t)in.spp * 8, &work) ||
        work > p->max_memory || work > SIZE_MAX)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "DICOM: decoding %ux%u x %u samples needs more than "
                       "the %llu bytes allowed", (unsigned)in.cols,
                       (unsigned)in.rows, (unsigned)in.spp,
                       (unsigned long long)p->max_memory);

    memset(&j, 0, sizeof j);
    j.npx = (size_t)in.rows * in.cols;
    j.v = mg__malloc((size_t)work);
    if (!j.v) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    st = mg__dcm_frame_samples(j.v, &j.ybr, ds, &in, p->frame, p, err, errlen);
    if (st) {
        mg__free(j.v);
        return st;
    }

    mg_image *img = NULL;
    const size_t n = j.npx;
    if (color) {
        if ((st = mg__image_alloc(&img, in.cols, in.rows, fmt,
                                  MG_IMAGE_SRC_DICOM, in.bits_stored, p, err,
                                  errlen)))
            goto done;
        uint32_t down = (!raw && in.bits_stored > 8) ? in.bits_stored - 8 : 0;
        for (size_t i = 0; i < n; i++) {
            int64_t *s = j.v + 3 * i;
            int64_t r = s[0], g = s[1], b = s[2];
            if (j.ybr) { /* PS3.3 C.7.6.3.1.2, YBR_FULL */
                double yy = (double)s[0], cb = (double)s[1] - 128,
                       cr = (double)s[2] - 128;
                r = clamp8(yy + 1.402 * cr);
                g = clamp8(yy - 0.344136 * cb - 0.714136 * cr);
                b = clamp8(yy + 1.772 * cb);
            }
            if (fmt == MG_PIXEL_RGB16) {
                uint16_t *o = (uint16_t *)img->pixels + 3 * i;
                o[0] = (uint16_t)r; o[1] = (uint16_t)g; o[2] = (uint16_t)b;
            } else {
                uint8_t *o = (uint8_t *)img->pixels + 3 * i;
                o[0] = (uint8_t)((uint64_t)r >> down);
                o[1] = (uint8_t)((uint64_t)g >> down);
                o[2] = (uint8_t)((uint64_t)b >> down);
            }
        }
        img->window = MG_WINDOW_NONE;
    } else if (raw) {
        /* Header range of the modality values; else the frame's. */
        double smin = in.pixel_rep ? -ldexp(1, (int)in.bits_stored - 1) : 0;
        double smax = in.pixel_rep ? ldexp(1, (int)in.bits_stored - 1) - 1
                                   : ldexp(1, (int)in.bits_stored) - 1;
        double a = round_half_up(smin * in.slope + in.intercept);
        double b = round_half_up(smax * in.slope + in.intercept);
        double lo = a < b ? a : b, hi = a < b ? b : a;
        double off = 0;
        if (lo >= 0 && hi <= 65535) off = 0;
        else if (hi - lo <= 65535) off = lo;
        else {
            double fmin = INFINITY, fmax = -INFINITY;
            for (size_t i = 0; i < n; i++) {
                double m = round_half_up((double)j.v[i] * in.slope + in.intercept);
                if (m < fmin) fmin = m;
                if (m > fmax) fmax = m;
            }
            if (fmin >= 0 && fmax <= 65535) off = 0;
            else if (fmax - fmin <= 65535) off = fmin;
            else {
                st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                             "DICOM: modality values span %.0f..%.0f, more "
                             "than 16 bits; use a windowed mode", fmin, fmax);
                goto done;
            }
            lo = fmin;
            hi = fmax;
        }
        if (off < -2147483648.0 || off > 2147483647.0 - 65535) {
            st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                         "DICOM: modality values from %.17g do not fit a "
                         "32-bit raw offset; use a windowed mode", off);
            goto done;
        }
        if (off == 0 && hi <= 255) fmt = MG_PIXEL_GRAY8;
        if ((st = mg__image_alloc(&img, in.cols, in.rows, fmt,
                                  MG_IMAGE_SRC_DICOM, in.bits_stored, p, err,
                                  errlen)))
            goto done;
        for (size_t i = 0; i < n; i++) {
            double m = round_half_up((double)j.v[i] * in.slope + in.intercept) - off;
            if (m < 0) m = 0; /* cannot happen: inside the range */
            if (fmt == MG_PIXEL_GRAY8)
                ((uint8_t *)img->pixels)[i] = (uint8_t)(m > 255 ? 255 : m);
            else
                ((uint16_t *)img->pixels)[i] = (uint16_t)(m > 65535 ? 65535 : m);
        }
        img->raw_offset = (int32_t)off;
        img->window = MG_WINDOW_NONE;
    } else {
        double c = 0, w = 0;
        int32_t mode = p->window;
        if (mode == MG_WINDOW_EXPLICIT) {
            c = p->window_center;
            w = p->window_width;
        } else if (mode == MG_WINDOW_FILE && in.has_window) {
            c = in.window_center;
            w = in.window_width;
        } else {
            double mn = INFINITY, mx = -INFINITY;
            for (size_t i = 0; i < n; i++) {
                double m = (double)j.v[i] * in.slope + in.intercept;
                if (m < mn) mn = m;
                if (m > mx) mx = m;
            }
            /* min maps to 0 and max to 255 under the linear function. */
            w = mx - mn + 1;
            c = mn + (mx - mn) / 2 + 0.5;
            mode = MG_WINDOW_AUTO;
        }
        if ((st = mg__image_alloc(&img, in.cols, in.rows, fmt,
                                  MG_IMAGE_SRC_DICOM, in.bits_stored, p, err,
                                  errlen)))
            goto done;
        int inv = strcmp(in.photometric, "MONOCHROME1") == 0;
        uint8_t *o = img->pixels;
        for (size_t i = 0; i < n; i++) {
            o[i] = window8((double)j.v[i] * in.slope + in.intercept, c, w, inv);
        }
        img->window = mode;
        img->window_center = c;
        img->window_width = w;
    }
    img->n_frames = in.n_frames;
    img->frame = p->frame;
    img->bits_allocated = in.bits_alloc;
    img->pixel_signed = (int32_t)in.pixel_rep;
    img->slope = color ? 1 : in.slope;
    img->intercept = color ? 0 : in.intercept;
    copy_text(img, ds, &in);
    *out = img;
    img = NULL;
done:
    mg_image_free(img);
    mg__free(j.v);
    return st;
}

mg_status mg__image_decode_dicom(mg_image **out, const unsigned char *data,
                                 size_t size, const mg_image_params *p,
                                 char *err, size_t errlen) {
    mg__dcm_dataset ds;
    mg_status st;
    *out = NULL;
    if ((st = mg__dcm_parse(&ds, data, size, p, err, errlen))) return st;
    st = decode(out, &ds, p, err, errlen);
    mg__dcm_free(&ds);
    return st;
}
