/* preprocess.c - RGB conversion and Pillow-exact bilinear resizing (see
 * preprocess.h for the semantics). */
#include "encoders/preprocess.h"

#include <math.h>
#include <string.h>

#include "io/image.h"

#define PRECISION_BITS (32 - 8 - 2)

/* Taps per output sample of the bilinear filter (support 1) for a scale. */
static uint64_t ksize_for(uint32_t in, uint32_t out) {
    double scale = (double)in / (double)out;
    double fs = scale < 1.0 ? 1.0 : scale;
    return (uint64_t)ceil(fs) * 2 + 1;
}

static int scratch_layout(uint32_t in_w, uint32_t in_h, uint32_t out_w,
                          uint32_t out_h, uint64_t off[5], uint64_t *total) {
    if (!in_w || !in_h || !out_w || !out_h) return -1;
    uint64_t kx = ksize_for(in_w, out_w), ky = ksize_for(in_h, out_h), t, acc = 0;
    uint64_t parts[5];
    int of = 0;
    of |= mg__mul_u64((uint64_t)out_w, kx * 4, &parts[0]);   /* kk x */
    of |= mg__mul_u64((uint64_t)out_h, ky * 4, &parts[1]);   /* kk y */
    parts[2] = ((uint64_t)out_w + out_h) * 2 * 4;            /* bounds */
    parts[3] = (kx > ky ? kx : ky) * 8;                      /* double temp */
    of |= mg__mul_u64((uint64_t)out_w * 3, ky, &parts[4]);  /* row ring */
    for (int i = 0; i < 5; i++) {
        off[i] = acc;
        of |= mg__add_u64(parts[i], 15, &t);
        of |= mg__add_u64(acc, t & ~(uint64_t)15, &acc);
    }
    if (of) return -1;
    *total = acc;
    return 0;
}

uint64_t mg__resize_scratch_bytes(uint32_t in_w, uint32_t in_h, uint32_t out_w,
                                  uint32_t out_h) {
    uint64_t off[5], total;
    return scratch_layout(in_w, in_h, out_w, out_h, off, &total) ? 0 : total;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear
 * filter over the box [0, in). bounds: (first tap, taps) per output. */
static void coeffs(uint32_t in, uint32_t out, uint64_t ksize, int32_t *kk,
                   int32_t *bounds, double *tmp) {
    double scale = (double)in / (double)out;
    double fs = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * fs, ss = 1.0 / fs;
    for (uint32_t xx = 0; xx < out; xx++) {
        double center = ((double)xx + 0.5) * scale, ww = 0.0;
        int64_t xmin = (int64_t)(center - support + 0.5);
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > (int64_t)in) xmax = in;
        xmax -= xmin;
        if (xmax > (int64_t)ksize) xmax = (int64_t)ksize; /* cannot happen */
        for (int64_t x = 0; x < xmax; x++) {
            double t = fabs(((double)(x + xmin) - center + 0.5) * ss);
            double w = t < 1.0 ? 1.0 - t : 0.0;
            tmp[x] = w;
            ww += w;
        }
        int32_t *k = kk + (uint64_t)xx * ksize;
        for (int64_t x = 0; x < (int64_t)ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? tmp[x] / ww : tmp[x]) : 0.0;
            double f = v * (double)(1 << PRECISION_BITS);
            k[x] = (int32_t)(v < 0 ? -0.5 + f : 0.5 + f);
        }
        bounds[2 * xx] = (int32_t)xmin;
        bounds[2 * xx + 1] = (int32_t)xmax;
    }
}

static inline uint8_t clip8(int64_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One source row, converted to 8-bit samples on the fly, resized
 * horizontally into dst (out_w * ch bytes). */
static void hpass_row(uint8_t *dst, const mg_image *img, uint32_t y, uint32_t ch,
                      uint32_t out_w, const int32_t *kk, const int32_t *bx,
                      uint64_t kx, uint32_t maxv) {
    const int wide = mg__pixel_bytes(img->format) == 2;
    const size_t rs = (size_t)img->width * ch;
    const uint8_t *r8 = (const uint8_t *)img->pixels + (wide ? 0 : (size_t)y * rs);
    const uint16_t *r16 = (const uint16_t *)img->pixels + (wide ? (size_t)y * rs : 0);
    for (uint32_t xx = 0; xx < out_w; xx++) {
        const int32_t *k = kk + (uint64_t)xx * kx;
        int32_t x0 = bx[2 * xx], n = bx[2 * xx + 1];
        for (uint32_t c = 0; c < ch; c++) {
            int64_t ss = (int64_t)1 << (PRECISION_BITS - 1);
            for (int32_t x = 0; x < n; x++) {
                size_t i = (size_t)(x0 + x) * ch + c;
                uint32_t v;
                if (wide) {
                    uint32_t s = r16[i] > maxv ? maxv : r16[i];
                    v = (s * 255u + maxv / 2) / maxv;
                } else {
                    v = r8[i];
                }
                ss += (int64_t)v * k[x];
            }
            dst[(size_t)xx * ch + c] = clip8(ss);
        }
    }
}

mg_status mg__resize_rgb8(uint8_t *out, uint32_t out_w, uint32_t out_h,
                          const mg_image *img, void *scratch,
                          size_t scratch_bytes, char *err, size_t errlen) {
    if (!out || !mg__image_ok(img) || !img->pixels || !img->width || !img->height)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "resize: bad image");
    uint32_t ch = mg__pixel_channels(img->format);
    if (!ch || !mg__pixel_bytes(img->format))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "resize: unknown pixel format %d",
                       (int)img->format);
    uint64_t off[5], total;
    if (scratch_layout(img->width, img->height, out_w, out_h, off, &total))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "resize: bad sizes");
    if (!scratch || total > scratch_bytes)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "resize: a %ux%u image needs %llu bytes of scratch, the context "
                       "has %zu (the image is too large for this context)",
                       img->width, img->height, (unsigned long long)total, scratch_bytes);
    uint32_t maxv = 65535;
    if (mg__pixel_bytes(img->format) == 2 && img->bits_stored >= 1 && img->bits_stored < 16)
        maxv = (1u << img->bits_stored) - 1;
    uint64_t kx = ksize_for(img->width, out_w), ky = ksize_for(img->height, out_h);
    char *s = scratch;
    int32_t *kkx = (int32_t *)(s + off[0]), *kky = (int32_t *)(s + off[1]);
    int32_t *bx = (int32_t *)(s + off[2]), *by = bx + 2 * (size_t)out_w;
    double *tmp = (double *)(s + off[3]);
    uint8_t *ring = (uint8_t *)(s + off[4]);
    coeffs(img->width, out_w, kx, kkx, bx, tmp);
    coeffs(img->height, out_h, ky, kky, by, tmp);
    const size_t rowb = (size_t)out_w * ch;
    int64_t next = 0; /* next source row to resize horizontally */
    for (uint32_t yy = 0; yy < out_h; yy++) {
        int32_t y0 = by[2 * yy], n = by[2 * yy + 1];
        for (; next < (int64_t)y0 + n; next++) {
            if (next < y0) continue; /* rows no output needs */
            hpass_row(ring + (size_t)((uint64_t)next % ky) * rowb, img, (uint32_t)next, ch,
                      out_w, kkx, bx, kx, maxv);
        }
        const int32_t *k = kky + (uint64_t)yy * ky;
        uint8_t *o = out + (size_t)yy * out_w * 3;
        for (uint32_t xx = 0; xx < out_w; xx++) {
            for (uint32_t c = 0; c < ch; c++) {
                int64_t ss = (int64_t)1 << (PRECISION_BITS - 1);
                for (int32_t y = 0; y < n; y++) {
                    const uint8_t *r = ring + (size_t)((uint64_t)(y0 + y) % ky) * rowb;
                    ss += (int64_t)r[(size_t)xx * ch + c] * k[y];
                }
                uint8_t v = clip8(ss);
                if (ch == 1) {
                    o[3 * (size_t)xx] = o[3 * (size_t)xx + 1] = o[3 * (size_t)xx + 2] = v;
                } else {
                    o[3 * (size_t)xx + c] = v;
                }
            }
        }
    }
    return MG_OK;
}

void mg__normalize_lut(float lut[3][256], double rescale, const double mean[3],
                       const double stdv[3]) {
    for (int c = 0; c < 3; c++) {
        float m = (float)mean[c], sd = (float)stdv[c];
        for (int v = 0; v < 256; v++) {
            float r = (float)((double)v * rescale);
            lut[c][v] = (r - m) / sd;
        }
    }
}
