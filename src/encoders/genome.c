/* genome.c - the built-in genomics encoder (input kind GENOME):
 * Med-Gemini-Polygenic's score image. Named polygenic scores (traits x
 * p-value thresholds) are standardized against a reference distribution
 * stored in the model, laid out as an image (each trait a square of
 * cell x cell pixels on a grid, one channel per threshold) and read by the
 * model's image encoder (its own image2d instance over the same tensors).
 * docs/POLYGENIC.md states the layout; the metadata:
 *
 *   genome.traits          string[T]      trait names, in grid order
 *   genome.thresholds      string[C]      1..3 threshold names (channels)
 *   genome.reference_mean  float[T*C]     mean of score (t, c) at [t*C + c]
 *   genome.reference_std   float[T*C]     its standard deviation (> 0)
 *   genome.grid            int[2]         rows, columns of trait squares
 *   genome.cell            int            pixels a side of a square
 *   genome.z_scale         float          grey levels per standard
 *                                         deviation (default 32)
 *
 * A score is named "<trait>_<threshold>". Pixel (channel c) of trait t's
 * square: 128 + z_scale * (score - mean) / std, rounded half to even and
 * clipped to 0..255; a score not given (or NaN) is 128, the reference
 * mean; squares without a trait and channels past C are 0. The image is
 * rows * cell by columns * cell pixels and must be the image encoder's
 * input size, so preprocessing leaves it as it is. */
#include "encoders/encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"

#define WHAT "genomics encoder"
#define MG__GENOME_MAX_TRAITS 65536u

typedef struct gname { const char *name; uint32_t index; } gname;

typedef struct genome {
    void *image;               /* the image2d impl */
    mg__enc_geometry geo;
    uint32_t T, C, rows, cols, cell, S;
    double z_scale;
    const double *mean, *std;  /* T*C, from the file */
    char *names;               /* "<trait>_<threshold>" strings */
    gname *index;              /* T*C, sorted by name */
} genome;

typedef struct gstate {
    const genome *e;
    void *image;               /* image2d state */
    uint8_t *rgb;              /* S * S * 3 */
    double *val;               /* T*C scores */
    uint8_t *seen;             /* T*C: given */
    mg_image img;
} gstate;

static const mg__meta *arr(const mg__mgm *f, const char *key, int32_t et) {
    const mg__meta *m = mg__mgm_meta(f, key);
    if (!m || m->type != MG_META_ARRAY) return NULL;
    if (m->elem_type != et && !(et == MG_META_FLOAT && m->elem_type == MG_META_INT)) return NULL;
    return m;
}

static int32_t probe(const mg__mgm *f) {
    if (!mg__mgm_meta(f, "genome.traits")) return 0;
    return mg__encoder_image2d.probe(f) > 0 ? 100 : 0;
}

static void destroy(void *impl) {
    genome *e = impl;
    if (!e) return;
    mg__encoder_image2d.destroy(e->image);
    mg__free(e->names);
    mg__free(e->index);
    mg__free((void *)e->mean);
    mg__free(e);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const gname *)a)->name, ((const gname *)b)->name);
}

static double num(const mg__meta *m, uint64_t i) {
    return m->elem_type == MG_META_FLOAT ? m->v.af[i] : (double)m->v.ai[i];
}

static mg_status build(void **out, const mg__mgm *f, uint32_t text_hidden, char *err,
                       size_t errlen) {
    *out = NULL;
    genome *e = mg__calloc(1, sizeof *e);
    if (!e) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    mg_status st = MG_OK;
    const mg__meta *tr = arr(f, "genome.traits", MG_META_STRING);
    const mg__meta *th = arr(f, "genome.thresholds", MG_META_STRING);
    const mg__meta *mu = arr(f, "genome.reference_mean", MG_META_FLOAT);
    const mg__meta *sd = arr(f, "genome.reference_std", MG_META_FLOAT);
    const mg__meta *gr = arr(f, "genome.grid", MG_META_INT);
    if (!tr || !th || !mu || !sd || !gr) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     WHAT ": genome.%s is missing or not an array of the right type",
                     !tr ? "traits" : !th ? "thresholds" : !mu ? "reference_mean"
                     : !sd ? "reference_std" : "grid");
        goto fail;
    }
    if (tr->n == 0 || tr->n > MG__GENOME_MAX_TRAITS || th->n == 0 || th->n > 3) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     WHAT ": %llu traits and %llu thresholds (1..%u and 1..3)",
                     (unsigned long long)tr->n, (unsigned long long)th->n,
                     MG__GENOME_MAX_TRAITS);
        goto fail;
    }
    e->T = (uint32_t)tr->n;
    e->C = (uint32_t)th->n;
    const uint64_t TC = (uint64_t)e->T * e->C;
    if (mu->n != TC || sd->n != TC) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     WHAT ": genome.reference_mean and _std need %llu values (traits x "
                     "thresholds), not %llu and %llu", (unsigned long long)TC,
                     (unsigned long long)mu->n, (unsigned long long)sd->n);
        goto fail;
    }
    if (gr->n != 2 || gr->v.ai[0] < 1 || gr->v.ai[1] < 1 || gr->v.ai[0] > 65536 ||
        gr->v.ai[1] > 65536 || (uint64_t)gr->v.ai[0] * (uint64_t)gr->v.ai[1] < e->T) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     WHAT ": genome.grid must be 2 positive sizes holding the %u traits", e->T);
        goto fail;
    }
    e->rows = (uint32_t)gr->v.ai[0];
    e->cols = (uint32_t)gr->v.ai[1];
    if ((st = mg__mgm_get_u32(f, WHAT, "genome.cell", 1, 0, 1, 4096, &e->cell, err, errlen)) ||
        (st = mg__mgm_get_f64(f, WHAT, "genome.z_scale", 0, 32.0, 0.0, 1e6, 0, &e->z_scale, err,
                              errlen)))
        goto fail;
    double *ms = mg__malloc(2 * TC * sizeof *ms);
    if (!ms) { st = mg__err(err, errlen, MG_E_NOMEM, "out of memory"); goto fail; }
    e->mean = ms;
    e->std = ms + TC;
    for (uint64_t i = 0; i < TC; i++) {
        ms[i] = num(mu, i);
        ms[TC + i] = num(sd, i);
        if (!isfinite(ms[i]) || !isfinite(ms[TC + i]) || !(ms[TC + i] > 0)) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         WHAT ": reference mean %g / std %g of score %llu is not usable",
                         ms[i], ms[TC + i], (unsigned long long)i);
            goto fail;
        }
    }
    /* Names "<trait>_<threshold>", sorted for look-ups; duplicates refused. */
    size_t bytes = 0;
    for (uint32_t t = 0; t < e->T; t++)
        for (uint32_t c = 0; c < e->C; c++)
            bytes += strlen(tr->v.as[t]) + strlen(th->v.as[c]) + 2;
    e->names = mg__malloc(bytes ? bytes : 1);
    e->index = mg__calloc(TC, sizeof *e->index);
    if (!e->names || !e->index) { st = mg__err(err, errlen, MG_E_NOMEM, "out of memory"); goto fail; }
    char *p = e->names;
    for (uint32_t t = 0; t < e->T; t++)
        for (uint32_t c = 0; c < e->C; c++) {
            size_t n = (size_t)sprintf(p, "%s_%s", tr->v.as[t], th->v.as[c]);
            e->index[(size_t)t * e->C + c].name = p;
            e->index[(size_t)t * e->C + c].index = t * e->C + c;
            p += n + 1;
        }
    qsort(e->index, TC, sizeof *e->index, by_name);
    for (uint64_t i = 1; i < TC; i++)
        if (!strcmp(e->index[i - 1].name, e->index[i].name)) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT, WHAT ": score name '%s' twice",
                         e->index[i].name);
            goto fail;
        }
    if ((st = mg__encoder_image2d.build(&e->image, f, text_hidden, err, errlen))) goto fail;
    mg__encoder_image2d.geometry(e->image, &e->geo);
    uint32_t S = 0;
    if ((st = mg__mgm_get_u32(f, WHAT, "image.size", 0, 0, 0, UINT32_MAX, &S, err, errlen)))
        goto fail;
    if (!S) (void)mg__mgm_get_u32(f, WHAT, "vision.image_size", 0, 0, 0, UINT32_MAX, &S, err,
                                  errlen);
    if ((uint64_t)e->rows * e->cell != S || (uint64_t)e->cols * e->cell != S) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     WHAT ": the score image (%u x %u squares of %u px) is not the image "
                     "encoder's %u px", e->rows, e->cols, e->cell, S);
        goto fail;
    }
    e->S = S;
    *out = e;
    return MG_OK;
fail:
    destroy(e);
    return st;
}

static void geometry(const void *impl, mg__enc_geometry *g) {
    const genome *e = impl;
    *g = e->geo;
    g->state_bytes += (uint64_t)e->S * e->S * 3 + (uint64_t)e->T * e->C * 9;
}

static int32_t bid(const void *impl, const mg__enc_input *in) {
    (void)impl;
    return in && in->kind == MG__INPUT_GENOME && in->data &&
                   in->size == sizeof(mg__genome_input) ? 100 : 0;
}

static uint32_t n_blocks(const void *impl, const mg__enc_input *in) {
    return bid(impl, in) > 0 ? 1 : 0;
}

static void state_free(void *p) {
    gstate *s = p;
    if (!s) return;
    mg__encoder_image2d.state_free(s->image);
    mg__aligned_free(s->rgb);
    mg__free(s->val);
    mg__free(s->seen);
    mg__free(s);
}

static mg_status state_new(void **out, const void *impl, uint32_t n_threads) {
    const genome *e = impl;
    gstate *s = mg__calloc(1, sizeof *s);
    *out = s;
    if (!s) return MG_E_NOMEM;
    s->e = e;
    s->rgb = mg__aligned_alloc(MG__IMAGE_ALIGN, (size_t)e->S * e->S * 3);
    s->seen = mg__calloc((size_t)e->T * e->C, 1);
    s->val = mg__calloc((size_t)e->T * e->C, sizeof *s->val);
    if (!s->rgb || !s->seen || !s->val) return MG_E_NOMEM;
    return mg__encoder_image2d.state_new(&s->image, e->image, n_threads);
}

/* Index of score name in the model, or -1. */
static long find(const genome *e, const char *name) {
    size_t lo = 0, hi = (size_t)e->T * e->C;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, e->index[mid].name);
        if (!c) return (long)e->index[mid].index;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return -1;
}

mg_status mg__genome_render(const void *impl, const mg__genome_input *g, uint8_t *rgb,
                            double *val, uint8_t *seen, char *err, size_t errlen) {
    const genome *e = impl;
    const size_t TC = (size_t)e->T * e->C;
    memset(seen, 0, TC);
    size_t matched = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (!g->names[i])
            return mg__err(err, errlen, MG_E_INVALID_ARG, "score name %zu is NULL", i);
        long k = find(e, g->names[i]);
        if (k < 0) continue; /* a score the model does not read */
        if (seen[k])
            return mg__err(err, errlen, MG_E_INVALID_ARG, "score '%s' is given twice",
                           g->names[i]);
        seen[k] = 1;
        val[k] = g->scores[i];
        matched++;
    }
    if (!matched)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "none of the %zu scores is one the model reads (names like '%s')", g->n,
                       e->names);
    memset(rgb, 0, (size_t)e->S * e->S * 3);
    for (uint32_t t = 0; t < e->T; t++) {
        uint8_t px[3] = {0, 0, 0};
        for (uint32_t c = 0; c < e->C; c++) {
            size_t k = (size_t)t * e->C + c;
            double x = 128.0;
            if (seen[k] && isfinite(val[k]))
                x = nearbyint(128.0 + e->z_scale * (val[k] - e->mean[k]) / e->std[k]);
            px[c] = (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x);
        }
        uint32_t r0 = (t / e->cols) * e->cell, c0 = (t % e->cols) * e->cell;
        for (uint32_t y = 0; y < e->cell; y++) {
            uint8_t *row = rgb + ((size_t)(r0 + y) * e->S + c0) * 3;
            for (uint32_t x = 0; x < e->cell; x++) memcpy(row + 3 * x, px, 3);
        }
    }
    return MG_OK;
}

static mg_status encode(void *state, const mg__enc_input *in, float *out, mg__pool *pool,
                        const mg__enc_ctl *ctl, char *err, size_t errlen) {
    gstate *s = state;
    if (!s || !out || bid(s->e, in) <= 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG, WHAT ": bad input");
    const genome *e = s->e;
    mg_status st = mg__genome_render(e, in->data, s->rgb, s->val, s->seen, err, errlen);
    if (st) return st;
    return mg__image2d_encode_rgb(s->image, &s->img, s->rgb, e->S, e->S, out, pool, ctl,
                                  err, errlen);
}

void mg__genome_size(const void *impl, uint32_t *side, size_t *n_scores) {
    const genome *e = impl;
    *side = e->S;
    *n_scores = (size_t)e->T * e->C;
}

const mg__encoder_vtable mg__encoder_genome = {
    MG__ENCODER_ABI, sizeof(mg__encoder_vtable), "genome", MG__INPUT_GENOME,
    probe, build, destroy, geometry, bid, n_blocks, mg__enc_no_label, state_new, state_free,
    encode,
};
