/* volume3d.c - the built-in volume encoder: MedGemma 1.5's recipe for CT
 * (and MR) behind the encoder vtable.
 *
 * A volume is read as one block per slice it gives the model: the slices
 * are selected, turned and windowed into RGB by io/volume_render.c
 * (mg_volume_slices shows the same images), each goes through the model's
 * 2D image encoder (its own image2d instance over the same tensors, so
 * the weights are shared, not copied) into n_tokens tokens, and block i is
 * followed in the prompt by the text "SLICE i" (1-based), as MedGemma 1.5
 * was evaluated on volumes. Such a model is thus one whose file holds the
 * vision tensors: the volume encoder bids wherever image2d does.
 *
 * State: the image2d state and the RGB slice buffer are allocated on the
 * first volume a context encodes (contexts that never see a volume pay
 * nothing), and the slice buffer grows for a larger slice. */
#include "encoders/encoder.h"

#include <stdio.h>
#include <string.h>

#include "io/image.h"
#include "io/volume.h"

typedef struct volume3d {
    void *image;                 /* the image2d impl */
    mg__enc_geometry geo;        /* image2d's */
} volume3d;

typedef struct vstate {
    const volume3d *e;
    uint32_t n_threads;
    void *image;                 /* image2d state, on first use */
    uint8_t *rgb;                /* slice pixels */
    size_t rgb_cap;
    mg_image slice;              /* wraps rgb for image2d */
} vstate;

static int32_t probe(const mg__mgm *f) {
    int32_t b = mg__encoder_image2d.probe(f);
    return b > 0 ? b : 0;
}

static void destroy(void *impl) {
    volume3d *e = impl;
    if (!e) return;
    mg__encoder_image2d.destroy(e->image);
    mg__free(e);
}

static mg_status build(void **out, const mg__mgm *f, uint32_t text_hidden, char *err,
                       size_t errlen) {
    *out = NULL;
    volume3d *e = mg__calloc(1, sizeof *e);
    if (!e) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    mg_status st = mg__encoder_image2d.build(&e->image, f, text_hidden, err, errlen);
    if (st != MG_OK) {
        mg__free(e);
        return st;
    }
    mg__encoder_image2d.geometry(e->image, &e->geo);
    *out = e;
    return MG_OK;
}

static void geometry(const void *impl, mg__enc_geometry *g) {
    const volume3d *e = impl;
    *g = e->geo;
    g->state_bytes = 0; /* allocated on the first volume (see above) */
}

static int32_t bid(const void *impl, const mg__enc_input *in) {
    (void)impl;
    return in && in->kind == MG__INPUT_VOLUME && mg__volume_ok(in->volume) ? 100 : 0;
}

static uint32_t n_blocks(const void *impl, const mg__enc_input *in) {
    if (bid(impl, in) <= 0) return 0;
    uint32_t w, h, n;
    mg__slices_size(in->volume, in->slices.flags, &w, &h, &n);
    return n < in->slices.max_slices ? n : in->slices.max_slices;
}

static void block_label(const void *impl, const mg__enc_input *in, uint32_t b, char *buf,
                        size_t cap) {
    (void)impl, (void)in;
    snprintf(buf, cap, "SLICE %u", (unsigned)b + 1);
}

static void state_free(void *p) {
    vstate *s = p;
    if (!s) return;
    mg__encoder_image2d.state_free(s->image);
    mg__aligned_free(s->rgb);
    mg__free(s);
}

static mg_status state_new(void **out, const void *impl, uint32_t n_threads) {
    vstate *s = mg__calloc(1, sizeof *s);
    *out = s;
    if (!s) return MG_E_NOMEM;
    s->e = impl;
    s->n_threads = n_threads ? n_threads : 1;
    return MG_OK;
}

static mg_status encode(void *state, const mg__enc_input *in, float *out, mg__pool *pool,
                        const mg__enc_ctl *ctl, char *err, size_t errlen) {
    vstate *s = state;
    if (!s || !out || bid(s->e, in) <= 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "volume encoder: bad input");
    const mg_volume *v = in->volume;
    uint32_t w, h, nz, idx;
    mg__slices_size(v, in->slices.flags, &w, &h, &nz);
    uint32_t nb = n_blocks(s->e, in);
    if (in->block >= nb)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "volume encoder: slice %u of %u",
                       (unsigned)in->block + 1, (unsigned)nb);
    idx = mg__slices_pick(nz, in->slices.max_slices, in->block);
    if (w > MG__VOL_MAX_SIDE || h > MG__VOL_MAX_SIDE)
        return mg__err(err, errlen, MG_E_LIMIT, "volume slices of %ux%u voxels (limit %u a side)",
                       (unsigned)w, (unsigned)h, (unsigned)MG__VOL_MAX_SIDE);
    if (!s->image) {
        mg_status st = mg__encoder_image2d.state_new(&s->image, s->e->image, s->n_threads);
        if (st != MG_OK)
            return mg__err(err, errlen, st, "out of memory for the image encoder's buffers");
    }
    size_t need = (size_t)w * h * 3;
    if (need > s->rgb_cap) {
        mg__aligned_free(s->rgb);
        s->rgb_cap = 0;
        if (!(s->rgb = mg__aligned_alloc(MG__IMAGE_ALIGN, need)))
            return mg__err(err, errlen, MG_E_NOMEM, "out of memory for a %ux%u slice",
                           (unsigned)w, (unsigned)h);
        s->rgb_cap = need;
    }
    mg__slices_render(v, in->slices.flags, in->slices.window, idx, s->rgb);
    return mg__image2d_encode_rgb(s->image, &s->slice, s->rgb, w, h, out, pool, ctl, err,
                                  errlen);
}

const mg__encoder_vtable mg__encoder_volume3d = {
    MG__ENCODER_ABI, sizeof(mg__encoder_vtable), "volume3d", MG__INPUT_VOLUME,
    probe, build, destroy, geometry, bid, n_blocks, block_label, state_new, state_free,
    encode,
};
