/* volume_render.c - a volume's slices as the RGB images a vision-language
 * model reads, after MedGemma 1.5's CT recipe (docs/VOLUME.md, "Slices for
 * the model"):
 *
 *  - orientation: slices are cut across the volume's third voxel axis and
 *    shown the way a radiologist views them (patient's right on the left,
 *    anterior or head at the top), and ordered from inferior to superior
 *    (axial), right to left (sagittal) or anterior to posterior (coronal),
 *    whatever the voxel order of the source (a DICOM series and its NIfTI
 *    conversion give the same slices); MG_SLICES_AS_STORED keeps the voxel
 *    order instead;
 *  - selection: all slices when there are at most max_slices, else slice
 *    round(i / max * (n - 1)) for i = 1..max (round half to even);
 *  - values (MG_SLICE_WINDOW_AUTO: CT when the modality is CT, or when
 *    there is no modality and the minimum is at most -500, as only CT in
 *    Hounsfield units has): CT through three windows into R, G, B (-1024..1024,
 *    -135..215, 0..80 HU), each clipped, scaled to 0..255 in float32 and
 *    rounded half to even; other modalities min-max over the whole volume
 *    into grey (double, rounded half to even; a constant volume is 255).
 *    Non-finite voxels become 0. */
#include "io/volume.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/image.h"

/* One axis of the display: which voxel axis, and whether it runs backwards. */
typedef struct vaxis { int axis, flip; } vaxis;

/* The patient direction (0 = x, 1 = y, 2 = z; LPS+) a voxel axis points to
 * most, and its sign. */
static int dominant(const double *a, int col, int *sign) {
    double x = a[col], y = a[4 + col], z = a[8 + col];
    double ax = fabs(x), ay = fabs(y), az = fabs(z);
    if (ax >= ay && ax >= az) return *sign = x < 0 ? -1 : 1, 0;
    if (ay >= az) return *sign = y < 0 ? -1 : 1, 1;
    return *sign = z < 0 ? -1 : 1, 2;
}

/* Display axes: columns (left to right), rows (top to bottom), slices. */
static void display_axes(const mg_volume *v, uint32_t flags, vaxis out[3]) {
    if (flags & MG_SLICES_AS_STORED) {
        for (int i = 0; i < 3; i++) out[i].axis = i, out[i].flip = 0;
        return;
    }
    int s0, s1, s2;
    int d0 = dominant(v->affine, 0, &s0), d1 = dominant(v->affine, 1, &s1);
    (void)dominant(v->affine, 2, &s2);
    /* The horizontal axis is the in-plane one pointing most along x
     * (left-right), else along y (sagittal slices: anterior-posterior). */
    int h = (d1 < d0) ? 1 : 0;
    int vv = 1 - h;
    int dh = h ? d1 : d0, sh = h ? s1 : s0;
    int dv = h ? d0 : d1, sv = h ? s0 : s1;
    /* Columns run towards the patient's left (x+) or posterior (y+); rows
     * towards posterior (y+) or down to the feet (z-). */
    out[0].axis = h;
    out[0].flip = dh == 2 ? sh > 0 : sh < 0;
    out[1].axis = vv;
    out[1].flip = dv == 2 ? sv > 0 : sv < 0;
    out[2].axis = 2;
    out[2].flip = s2 < 0;
}

static uint32_t axis_len(const mg_volume *v, int a) {
    return a == 0 ? v->nx : a == 1 ? v->ny : v->nz;
}

static ptrdiff_t axis_stride(const mg_volume *v, int a) {
    return a == 0 ? 1 : a == 1 ? (ptrdiff_t)v->nx : (ptrdiff_t)v->nx * v->ny;
}

uint32_t mg__slices_pick(uint32_t nz, uint32_t max, uint32_t b) {
    if (!max || nz <= max) return b;
    /* Python's int(round(i / max * (n - 1))) for i = b + 1: the same
     * double operations, rounded half to even. */
    double x = (double)(b + 1) / (double)max * (double)(nz - 1);
    return (uint32_t)nearbyint(x);
}

uint32_t mg__slices_select(uint32_t nz, uint32_t max, uint32_t *idx) {
    uint32_t n = (!max || nz <= max) ? nz : max;
    for (uint32_t i = 0; i < n; i++) idx[i] = mg__slices_pick(nz, max, i);
    return n;
}

int32_t mg__slices_window(const mg_volume *v, int32_t window) {
    if (window != MG_SLICE_WINDOW_AUTO) return window;
    if (v->modality[0])
        return strcmp(v->modality, "CT") == 0 ? MG_SLICE_WINDOW_CT : MG_SLICE_WINDOW_MINMAX;
    /* No modality (NIfTI, the caller's voxels): only CT in Hounsfield
     * units goes far below zero (air is -1000). */
    return v->vmin <= -500.0 ? MG_SLICE_WINDOW_CT : MG_SLICE_WINDOW_MINMAX;
}

void mg__slices_size(const mg_volume *v, uint32_t flags, uint32_t *w, uint32_t *h,
                     uint32_t *n) {
    vaxis ax[3];
    display_axes(v, flags, ax);
    *w = axis_len(v, ax[0].axis);
    *h = axis_len(v, ax[1].axis);
    *n = axis_len(v, ax[2].axis);
}

static uint8_t ct_level(float x, float lo, float hi) {
    if (!isfinite(x)) return 0;
    float t = x < lo ? lo : x > hi ? hi : x;
    t -= lo;
    t /= (hi - lo);
    t *= 255.0f;
    return (uint8_t)nearbyintf(t);
}

uint32_t mg__slices_display_index(const mg_volume *v, uint32_t flags, uint32_t s) {
    vaxis ax[3];
    display_axes(v, flags, ax);
    uint32_t n = axis_len(v, ax[2].axis);
    return ax[2].flip ? n - 1 - s : s;
}

void mg__slices_render(const mg_volume *v, uint32_t flags, int32_t window, uint32_t s,
                       uint8_t *rgb) {
    vaxis ax[3];
    display_axes(v, flags, ax);
    const uint32_t W = axis_len(v, ax[0].axis), H = axis_len(v, ax[1].axis);
    const uint32_t N = axis_len(v, ax[2].axis);
    const ptrdiff_t sc = axis_stride(v, ax[0].axis), sr = axis_stride(v, ax[1].axis);
    const ptrdiff_t ss = axis_stride(v, ax[2].axis);
    uint32_t k = ax[2].flip ? N - 1 - s : s;
    const float *base = v->voxels + (ptrdiff_t)k * ss;
    window = mg__slices_window(v, window);
    const double lo = v->vmin, delta = v->vmax - v->vmin;
    for (uint32_t r = 0; r < H; r++) {
        uint32_t rr = ax[1].flip ? H - 1 - r : r;
        const float *row = base + (ptrdiff_t)rr * sr;
        uint8_t *o = rgb + (size_t)r * W * 3;
        for (uint32_t c = 0; c < W; c++) {
            uint32_t cc = ax[0].flip ? W - 1 - c : c;
            float x = row[(ptrdiff_t)cc * sc];
            if (window == MG_SLICE_WINDOW_CT) {
                o[3 * c + 0] = ct_level(x, -1024.0f, 1024.0f);
                o[3 * c + 1] = ct_level(x, -135.0f, 215.0f);
                o[3 * c + 2] = ct_level(x, 0.0f, 80.0f);
            } else {
                uint8_t g;
                if (!isfinite(x)) g = 0;
                else if (!(delta > 0)) g = 255;
                else g = (uint8_t)nearbyint(((double)x - lo) / delta * 255.0);
                o[3 * c + 0] = o[3 * c + 1] = o[3 * c + 2] = g;
            }
        }
    }
}

mg_status mg__slice_params_get(mg_slice_params *dst, const mg_slice_params *src,
                               char *err, size_t errlen) {
    mg_slice_params d = MG_SLICE_PARAMS_INIT;
    *dst = d;
    if (!src) return MG_OK;
    if (src->struct_size < sizeof(uint32_t) || src->struct_size > 65536)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "mg_slice_params.struct_size is invalid");
    if (src->struct_size > sizeof *dst && mg__opts_newer_byte(src, src->struct_size, sizeof *dst))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "mg_slice_params sets fields this version (%s) does not know",
                       MG_VERSION_STRING);
    size_t n = src->struct_size < sizeof *dst ? src->struct_size : sizeof *dst;
    memcpy(dst, src, n);
    dst->struct_size = sizeof *dst;
    if (!dst->max_slices) dst->max_slices = d.max_slices;
    if (dst->max_slices > MG_MAX_SLICES)
        return mg__err(err, errlen, MG_E_LIMIT, "max_slices %u is above the limit of %u",
                       (unsigned)dst->max_slices, (unsigned)MG_MAX_SLICES);
    if (dst->window < MG_SLICE_WINDOW_AUTO || dst->window > MG_SLICE_WINDOW_MINMAX)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown window %d", (int)dst->window);
    if (dst->flags & ~(uint32_t)MG_SLICES_AS_STORED)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown mg_slice_params flags 0x%x",
                       (unsigned)dst->flags);
    return MG_OK;
}

MG_API void mg_slice_params_init(mg_slice_params *params) {
    if (!params) return;
    mg_slice_params d = MG_SLICE_PARAMS_INIT;
    *params = d;
}

MG_API mg_status mg_volume_slices(mg_image **out, size_t cap, size_t *n_out,
                                  uint32_t *z_index, const mg_volume *volume,
                                  const mg_slice_params *params, char *err,
                                  size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!mg__volume_ok(volume))
        return mg__err(err, errlen, MG_E_MISUSE, "not a valid volume handle");
    mg_slice_params p;
    mg_status st = mg__slice_params_get(&p, params, err, errlen);
    if (st) return st;
    uint32_t w, h, nz;
    mg__slices_size(volume, p.flags, &w, &h, &nz);
    uint32_t n = nz < p.max_slices ? nz : p.max_slices;
    if (n_out) *n_out = n;
    if (!out && !z_index) return MG_OK;
    if (cap < n)
        return mg__err(err, errlen, MG_E_BUFFER_TOO_SMALL,
                       "%u slices do not fit in %zu entries", (unsigned)n, cap);
    uint32_t *idx = mg__calloc(nz ? nz : 1, sizeof *idx);
    if (!idx) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    mg__slices_select(nz, p.max_slices, idx);
    if (z_index)
        for (uint32_t i = 0; i < n; i++)
            z_index[i] = mg__slices_display_index(volume, p.flags, idx[i]);
    if (out) {
        mg_image_params ip;
        mg__image_params_resolve(&ip, NULL);
        for (uint32_t i = 0; i < n; i++) out[i] = NULL;
        for (uint32_t i = 0; i < n && st == MG_OK; i++) {
            st = mg__image_alloc(&out[i], w, h, MG_PIXEL_RGB8, MG_IMAGE_SRC_PIXELS, 8, &ip,
                                 err, errlen);
            if (st == MG_OK) {
                mg__slices_render(volume, p.flags, p.window, idx[i], out[i]->pixels);
                snprintf(out[i]->modality, sizeof out[i]->modality, "%s", volume->modality);
                snprintf(out[i]->series_uid, sizeof out[i]->series_uid, "%s",
                         volume->series_uid);
            }
        }
        if (st != MG_OK)
            for (uint32_t i = 0; i < n; i++) {
                mg_image_free(out[i]);
                out[i] = NULL;
            }
    }
    mg__free(idx);
    return st;
}
