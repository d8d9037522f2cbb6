/* image2d.c - the built-in 2D image encoder: a SigLIP vision transformer
 * followed by Gemma 3's multimodal projector, behind the encoder vtable.
 *
 * Semantics (Hugging Face SiglipVisionTransformer + Gemma3MultiModalProjector,
 * checked against tests/ref/vision_ref.py by tests/check_vision.c):
 *  - preprocessing: preprocess.h (RGB, PIL bilinear to image.size,
 *    rescale, normalize);
 *  - patch embedding: a stride-P convolution, computed as one GEMM over the
 *    unfolded patches (row n = patch (py, px) in row-major order, column
 *    c*P*P + ky*P + kx, as PyTorch's conv weight is laid out) plus bias, plus
 *    the learned position embedding row n;
 *  - per layer (pre-LN): x += out_proj(MHA(LN1(x))); x += fc2(gelu_tanh(
 *    fc1(LN2(x)))); MHA over all patches, no mask, scores * head_dim^-0.5;
 *  - post LayerNorm;
 *  - projector: the G x G patch grid average-pooled in k x k windows (k =
 *    G / sqrt(tokens_per_image)) to tokens in row-major order, RMSNorm
 *    x * (1 + w) with vision.layer_norm_eps (as HF builds mm_soft_emb_norm),
 *    then x @ mm.input_proj to the text width.
 *
 * Speed: every matrix product is an sgemm (mg__matmul for weights of any
 * dtype, except q8_0/q4_0 weights on AVX512-VNNI and bf16 weights on
 * AVX512_BF16, which mg__matmul multiplies itself on the pool; attention QK^T and PV per head as cblas_sgemm over blocks of 64 or
 * 256 queries, so the score memory is a block x n_patches, not n_patches^2
 * x heads; the softmax normalization is applied to the hd-wide output rows
 * after PV). When OpenBLAS runs single-threaded and the context has several
 * threads, the GEMMs are split over the pool by tokens (weights) or by
 * (head, query block) (attention); otherwise each GEMM uses OpenBLAS's own
 * threads and the row kernels (LayerNorm, GELU, softmax) run on the pool. */
#include "encoders/encoder.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "encoders/preprocess.h"
#include "io/image.h"
#include "kernels/kernels.h"

#define MG__ATT_QBLOCK_POOL 64u  /* queries per block, parallel items */
#define MG__ATT_QBLOCK_BLAS 256u /* queries per block, threaded OpenBLAS */
#define MG__VIS_MAX_SIZE 8192u
#define MG__VIS_MAX_WIDTH (1u << 16)
#define MG__VIS_MAX_LAYERS 1024u
#define MG__VIS_MAX_FFN (1u << 20)
#define MG__VIS_MAX_PATCHES (1u << 16)
#define MG__VIS_MAX_INPUT 65535u /* largest input side the scratch covers */

typedef struct vmat {
    const void *w;
    int32_t dt;
    uint64_t in, out;
} vmat;

typedef struct vlayer {
    const float *ln1, *ln1_b, *ln2, *ln2_b;
    vmat q, k, v, o, up, down;
    const float *q_b, *k_b, *v_b, *o_b, *up_b, *down_b;
} vlayer;

typedef struct image2d {
    uint32_t S, P, G, N, D, F, NH, hd, L, T, tside, pool_k, text_hidden;
    float eps;
    vmat patch, pos, proj;
    const float *patch_b, *post_ln, *post_ln_b, *soft_norm;
    vlayer *layers;
    float lut[3][256];
    size_t mm_scratch;     /* mg__matmul scratch of the widest weight */
    uint64_t resize_bytes; /* resize scratch for inputs up to MAX_INPUT */
    int att_bf16;          /* attention products in bf16 (bf16 weights, AVX512_BF16) */
} image2d;

typedef struct istate {
    const image2d *e;
    uint32_t n_threads;
    float *patches, *x, *xn, *q, *k, *v, *h, *pooled;
    float *scores;         /* max(n_threads x 64, 256) x N */
    float *inv;            /* n_threads x 256: 1 / softmax sums */
    float *mm;             /* n_threads x mm_scratch */
    uint16_t *kb, *vt;     /* att_bf16: per head K (N x hd) and V^T (hd x N) */
    uint16_t *xb;          /* att_bf16: bf16 inputs, as many rows as scores */
    float *bfa;            /* the allocation holding kb, vt, xb */
    uint8_t *rgb;          /* S x S x 3 */
    void *resize;
    uint64_t bytes;
} istate;

/* ================================================================ config */

/* Checked reads (io/mgm_get.c) with this encoder's name in the messages. */
#define WHAT "image encoder"

static mg_status meta_u32(const mg__mgm *f, const char *key, int required,
                          uint32_t def, uint32_t lo, uint32_t hi, uint32_t *out,
                          char *err, size_t errlen) {
    return mg__mgm_get_u32(f, WHAT, key, required, def, lo, hi, out, err, errlen);
}

static mg_status meta_f64(const mg__mgm *f, const char *key, double def,
                          double lo, double hi, double *out, char *err,
                          size_t errlen) {
    return mg__mgm_get_f64(f, WHAT, key, 0, def, lo, hi, 0, out, err, errlen);
}

/* A float array of 3 (image.mean / image.std); default 0.5 each. */
static mg_status meta_f3(const mg__mgm *f, const char *key, double out[3],
                         int positive, char *err, size_t errlen) {
    const mg__meta *m = mg__mgm_meta(f, key);
    if (!m) {
        out[0] = out[1] = out[2] = 0.5;
        return MG_OK;
    }
    if (m->type != MG_META_ARRAY || m->n != 3 ||
        (m->elem_type != MG_META_FLOAT && m->elem_type != MG_META_INT))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "image encoder: %s must be an array of 3 numbers", key);
    for (int i = 0; i < 3; i++) {
        double v = m->elem_type == MG_META_FLOAT ? m->v.af[i] : (double)m->v.ai[i];
        if (!isfinite(v) || (positive && !(v > 0)) || fabs(v) > 1e6)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "image encoder: %s[%d] = %g is out of range", key, i, v);
        out[i] = v;
    }
    return MG_OK;
}

/* ================================================================ tensors */

static mg_status get_mat(const mg__mgm *f, const char *name, uint64_t in,
                         uint64_t out, vmat *m, size_t *scratch, char *err,
                         size_t errlen) {
    const mg__tensor *t;
    mg_status st = mg__mgm_get_matrix(f, WHAT, name, in, out, &t, scratch, err, errlen);
    if (st != MG_OK) return st;
    m->w = t->data;
    m->dt = t->dtype;
    m->in = in;
    m->out = out;
    return MG_OK;
}

static mg_status get_vec(const mg__mgm *f, const char *name, uint64_t n,
                         const float **out, char *err, size_t errlen) {
    return mg__mgm_get_vector(f, WHAT, name, n, out, err, errlen);
}

/* ================================================================ vtable */

static int32_t probe(const mg__mgm *f) {
    /* The SigLIP + projector layout: its key and its first tensor. */
    if (!mg__mgm_meta(f, "vision.n_layers") || !mg__mgm_tensor(f, "vision.patch_embd"))
        return 0;
    return 100;
}

static void destroy(void *impl) {
    image2d *e = impl;
    if (!e) return;
    mg__free(e->layers);
    mg__free(e);
}

static mg_status build(void **out, const mg__mgm *f, uint32_t text_hidden,
                       char *err, size_t errlen) {
    *out = NULL;
    image2d *e = mg__calloc(1, sizeof *e);
    if (!e) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    mg_status st;
    double eps, rescale, mean[3], stdv[3];
#define U(key, req, def, lo, hi, dst) \
    if ((st = meta_u32(f, key, req, def, lo, hi, &e->dst, err, errlen))) goto fail
    U("vision.image_size", 1, 0, 1, MG__VIS_MAX_SIZE, S);
    U("vision.patch_size", 1, 0, 1, MG__VIS_MAX_SIZE, P);
    U("vision.n_layers", 1, 0, 1, MG__VIS_MAX_LAYERS, L);
    U("vision.hidden_size", 1, 0, 1, MG__VIS_MAX_WIDTH, D);
    U("vision.ffn_size", 1, 0, 1, MG__VIS_MAX_FFN, F);
    U("vision.n_heads", 1, 0, 1, MG__VIS_MAX_WIDTH, NH);
    U("vision.tokens_per_image", 1, 0, 1, MG__VIS_MAX_PATCHES, T);
#undef U
    uint32_t isize;
    if ((st = meta_u32(f, "image.size", 0, e->S, 1, MG__VIS_MAX_SIZE, &isize, err, errlen)))
        goto fail;
    if ((st = meta_f64(f, "vision.layer_norm_eps", 1e-6, 0.0, 1.0, &eps, err, errlen)) ||
        (st = meta_f64(f, "image.rescale", 1.0 / 255.0, 0.0, 1e6, &rescale, err, errlen)) ||
        (st = meta_f3(f, "image.mean", mean, 0, err, errlen)) ||
        (st = meta_f3(f, "image.std", stdv, 1, err, errlen)))
        goto fail;
    const mg__meta *rs = mg__mgm_meta(f, "image.resample");
    if (rs && (rs->type != MG_META_STRING || strcmp(rs->v.s, "bilinear"))) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "image encoder: image.resample must be \"bilinear\"");
        goto fail;
    }
    e->eps = (float)eps;
    if (isize != e->S || e->S % e->P) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "image encoder: image.size %u and vision.image_size %u must be equal "
                     "and a multiple of vision.patch_size %u", isize, e->S, e->P);
        goto fail;
    }
    e->G = e->S / e->P;
    if ((uint64_t)e->G * e->G > MG__VIS_MAX_PATCHES) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "image encoder: %u x %u patches is too many", e->G, e->G);
        goto fail;
    }
    e->N = e->G * e->G;
    e->tside = (uint32_t)llround(sqrt((double)e->T));
    if (e->tside * e->tside != e->T || e->G % e->tside) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "image encoder: tokens_per_image %u is not a square dividing the "
                     "%u x %u patch grid", e->T, e->G, e->G);
        goto fail;
    }
    e->pool_k = e->G / e->tside;
    if (e->D % e->NH) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "image encoder: hidden_size %u is not a multiple of n_heads %u", e->D,
                     e->NH);
        goto fail;
    }
    e->hd = e->D / e->NH;
    if (text_hidden == 0) {
        const mg__tensor *t = mg__mgm_tensor(f, "mm.input_proj");
        text_hidden = t && t->n_dims >= 2 && t->dims[1] <= MG__VIS_MAX_WIDTH ? (uint32_t)t->dims[1] : 0;
        if (!text_hidden) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "image encoder: tensor mm.input_proj is missing or malformed");
            goto fail;
        }
    }
    e->text_hidden = text_hidden;
    e->layers = mg__calloc(e->L, sizeof *e->layers);
    if (!e->layers) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto fail;
    }
    size_t sc = 0;
    const uint64_t D = e->D, F = e->F;
    if ((st = get_mat(f, "vision.patch_embd", 3ull * e->P * e->P, D, &e->patch, &sc, err, errlen)) ||
        (st = get_vec(f, "vision.patch_embd_bias", D, &e->patch_b, err, errlen)) ||
        (st = get_mat(f, "vision.pos_embd", D, e->N, &e->pos, NULL, err, errlen)) ||
        (st = get_vec(f, "vision.post_ln", D, &e->post_ln, err, errlen)) ||
        (st = get_vec(f, "vision.post_ln_bias", D, &e->post_ln_b, err, errlen)) ||
        (st = get_vec(f, "mm.soft_emb_norm", D, &e->soft_norm, err, errlen)) ||
        (st = get_mat(f, "mm.input_proj", D, e->text_hidden, &e->proj, &sc, err, errlen)))
        goto fail;
    for (uint32_t l = 0; l < e->L; l++) {
        vlayer *y = &e->layers[l];
        char nm[96];
#define M(sfx, fld, in, outn) \
    snprintf(nm, sizeof nm, "vision.blk.%u." sfx, l); \
    if ((st = get_mat(f, nm, in, outn, &y->fld, &sc, err, errlen))) goto fail
#define V(sfx, fld, n) \
    snprintf(nm, sizeof nm, "vision.blk.%u." sfx, l); \
    if ((st = get_vec(f, nm, n, &y->fld, err, errlen))) goto fail
        V("ln1", ln1, D);
        V("ln1_bias", ln1_b, D);
        M("attn_q", q, D, D);
        V("attn_q_bias", q_b, D);
        M("attn_k", k, D, D);
        V("attn_k_bias", k_b, D);
        M("attn_v", v, D, D);
        V("attn_v_bias", v_b, D);
        M("attn_output", o, D, D);
        V("attn_output_bias", o_b, D);
        V("ln2", ln2, D);
        V("ln2_bias", ln2_b, D);
        M("ffn_up", up, D, F);
        V("ffn_up_bias", up_b, F);
        M("ffn_down", down, F, D);
        V("ffn_down_bias", down_b, D);
#undef M
#undef V
    }
    e->mm_scratch = sc;
    /* A bf16 model on a CPU with AVX512_BF16 also runs attention's two
     * products on bf16 tiles (q, k, v and the softmax numerators rounded to
     * bf16, f32 sums), as bf16 inference does. */
    e->att_bf16 = e->L > 0 && e->layers[0].q.dt == MG_DTYPE_BF16 &&
                  mg__matmul_pooled(MG_DTYPE_BF16, e->hd) && e->N % 2 == 0;
    e->resize_bytes = mg__resize_scratch_bytes(MG__VIS_MAX_INPUT, MG__VIS_MAX_INPUT, e->S, e->S);
    mg__normalize_lut(e->lut, rescale, mean, stdv);
    *out = e;
    return MG_OK;
fail:
    destroy(e);
    return st;
}

static void geometry(const void *impl, mg__enc_geometry *g);

static int32_t bid(const void *impl, const mg__enc_input *in) {
    (void)impl;
    if (!in || in->kind != MG__INPUT_IMAGE || !mg__image_ok(in->image)) return 0;
    return mg__pixel_channels(in->image->format) ? 100 : 0;
}

static uint32_t n_blocks(const void *impl, const mg__enc_input *in) {
    return bid(impl, in) > 0 ? 1 : 0;
}

void mg__enc_no_label(const void *impl, const mg__enc_input *in, uint32_t b, char *buf,
                      size_t cap) {
    (void)impl, (void)in, (void)b;
    if (cap) buf[0] = '\0';
}

/* ================================================================ state */

static void state_free(void *p) {
    istate *s = p;
    if (!s) return;
    float *f[] = {s->patches, s->x, s->xn, s->q, s->k, s->v, s->h, s->pooled, s->scores, s->mm,
                  s->bfa};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) mg__aligned_free(f[i]);
    mg__aligned_free(s->rgb);
    mg__aligned_free(s->resize);
    mg__free(s);
}

/* Sizes in floats (bytes for the last two) of every buffer. */
static int state_sizes(const image2d *e, uint32_t nt, uint64_t z[11], uint64_t *total) {
    const uint64_t N = e->N, D = e->D;
    int of = 0;
    uint64_t nd = N * D, acc = 0, t;
    z[0] = N * 3ull * e->P * e->P;                      /* patches */
    z[1] = z[2] = z[3] = z[4] = z[5] = nd;              /* x xn q k v */
    of |= mg__mul_u64(N, e->F, &z[6]);                  /* h */
    z[7] = (uint64_t)e->T * (D > e->text_hidden ? D : e->text_hidden) * 2; /* pooled + proj */
    uint64_t qrows = (uint64_t)nt * MG__ATT_QBLOCK_POOL;
    if (qrows < MG__ATT_QBLOCK_BLAS) qrows = MG__ATT_QBLOCK_BLAS;
    of |= mg__mul_u64(qrows, N, &z[8]);                 /* scores */
    of |= mg__add_u64(z[8], (uint64_t)nt * MG__ATT_QBLOCK_BLAS, &z[8]); /* + inv */
    of |= mg__mul_u64((uint64_t)nt, (e->mm_scratch + 63) / 4, &z[9]); /* mm */
    z[10] = 0; /* kb + vt (N x D uint16 each) + xb (qrows x N uint16) */
    if (e->att_bf16) {
        uint64_t xbn;
        of |= mg__mul_u64(qrows, N, &xbn);
        of |= mg__add_u64(nd, (xbn + 1) / 2, &z[10]);
    }
    for (int i = 0; i < 11; i++) of |= mg__mul_u64(z[i], 4, &t) || mg__add_u64(acc, t, &acc);
    of |= mg__add_u64(acc, 3ull * e->S * e->S, &acc);
    of |= mg__add_u64(acc, e->resize_bytes, &acc);
    if (of || acc > SIZE_MAX / 2) return -1;
    *total = acc;
    return 0;
}

static void geometry(const void *impl, mg__enc_geometry *g) {
    const image2d *e = impl;
    uint64_t z[11], total = 0;
    g->n_tokens = e->T;
    g->width = e->text_hidden;
    g->state_bytes = state_sizes(e, 1, z, &total) ? UINT64_MAX : total;
}

static float *falloc(uint64_t n, int *fail) {
    float *p = n ? mg__aligned_alloc(64, (size_t)n * sizeof(float)) : NULL;
    if (n && !p) *fail = 1;
    return p;
}

static mg_status state_new(void **out, const void *impl, uint32_t n_threads) {
    const image2d *e = impl;
    *out = NULL;
    if (!n_threads) n_threads = 1;
    uint64_t z[11], total;
    if (state_sizes(e, n_threads, z, &total)) return MG_E_LIMIT;
    istate *s = mg__calloc(1, sizeof *s);
    if (!s) return MG_E_NOMEM;
    s->e = e;
    s->n_threads = n_threads;
    s->bytes = total;
    int fail = 0;
    s->patches = falloc(z[0], &fail);
    s->x = falloc(z[1], &fail);
    s->xn = falloc(z[2], &fail);
    s->q = falloc(z[3], &fail);
    s->k = falloc(z[4], &fail);
    s->v = falloc(z[5], &fail);
    s->h = falloc(z[6], &fail);
    s->pooled = falloc(z[7], &fail);
    s->scores = falloc(z[8], &fail);
    if (s->scores) {
        uint64_t qrows = (uint64_t)n_threads * MG__ATT_QBLOCK_POOL;
        if (qrows < MG__ATT_QBLOCK_BLAS) qrows = MG__ATT_QBLOCK_BLAS;
        s->inv = s->scores + qrows * e->N;
    }
    s->mm = falloc(z[9], &fail);
    s->bfa = falloc(z[10], &fail);
    if (s->bfa) {
        s->kb = (uint16_t *)s->bfa;
        s->vt = s->kb + (size_t)e->N * e->D;
        s->xb = s->vt + (size_t)e->N * e->D;
    }
    s->rgb = mg__aligned_alloc(64, 3ull * e->S * e->S);
    s->resize = mg__aligned_alloc(64, (size_t)e->resize_bytes);
    if (fail || !s->rgb || !s->resize) {
        state_free(s);
        return MG_E_NOMEM;
    }
    *out = s;
    return MG_OK;
}

/* ================================================================ forward */

static size_t mm_stride(const image2d *e) { return (e->mm_scratch + 63) / 4; }

static int blas_threaded(void) { return openblas_get_num_threads() > 1; }

enum { ROW_LN, ROW_GELU, ROW_ADD, ROW_BIAS };
static void rows(mg__pool *pool, uint32_t op, float *y, const float *x,
                 const float *w, const float *b, uint32_t n, uint32_t width,
                 float eps);

/* Y[n x m.out] = X[n x m.in] W^T + bias, split over the pool by tokens when
 * OpenBLAS is single-threaded and mg__matmul does not use the pool itself;
 * otherwise one product (OpenBLAS's threads or the pool) and the bias added
 * on the pool. */
typedef struct lin_job {
    istate *s;
    const vmat *m;
    const float *X, *bias;
    float *Y;
    uint32_t n, parts;
    mg__pool *mpool; /* the pool for mg__matmul itself (one part only) */
} lin_job;

static void lin_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const lin_job *j = arg;
    (void)n_tasks;
    uint32_t per = (j->n + j->parts - 1) / j->parts;
    uint32_t a = i * per, b = a + per < j->n ? a + per : j->n;
    if (a >= b) return;
    const vmat *m = j->m;
    float *Y = j->Y + (size_t)a * m->out;
    mg__matmul(m->dt, m->w, m->out, m->in, j->X + (size_t)a * m->in, b - a, Y,
               j->s->mm + (size_t)i * mm_stride(j->s->e), j->mpool);
    if (j->bias)
        for (uint32_t t = a; t < b; t++) {
            float *y = j->Y + (size_t)t * m->out;
            for (uint64_t r = 0; r < m->out; r++) y[r] += j->bias[r];
        }
}

static void linear(istate *s, const vmat *m, const float *X, uint32_t n,
                   const float *bias, float *Y, mg__pool *pool) {
    uint32_t np = mg__pool_size(pool);
    if (np > s->n_threads) np = s->n_threads;
    if (np > 1 && !blas_threaded() && !mg__matmul_pooled(m->dt, m->in)) {
        lin_job j = {s, m, X, bias, Y, n, np, NULL};
        mg__pool_run(pool, lin_task, &j, np);
    } else {
        lin_job j = {s, m, X, NULL, Y, n, 1, pool};
        lin_task(&j, 0, 1);
        if (bias) rows(pool, ROW_BIAS, Y, NULL, bias, NULL, n, (uint32_t)m->out, 0);
    }
}

/* Row kernels over the pool: LayerNorm, GELU, residual adds. */
typedef struct rows_job {
    float *y;
    const float *x, *w, *b;
    uint32_t n, width, op;
    float eps;
} rows_job;

static void rows_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const rows_job *j = arg;
    uint32_t per = (j->n + n_tasks - 1) / n_tasks;
    uint32_t a = i * per, b = a + per < j->n ? a + per : j->n;
    for (uint32_t t = a; t < b; t++) {
        float *y = j->y + (size_t)t * j->width;
        if (j->op == ROW_BIAS) { /* y += w, the same vector on every row */
            for (uint32_t c = 0; c < j->width; c++) y[c] += j->w[c];
            continue;
        }
        const float *x = j->x + (size_t)t * j->width;
        if (j->op == ROW_LN) mg__layernorm(y, x, j->w, j->b, j->width, j->eps);
        else if (j->op == ROW_GELU) mg__gelu_tanh(y, x, j->width);
        else
            for (uint32_t c = 0; c < j->width; c++) y[c] += x[c];
    }
}

static void rows(mg__pool *pool, uint32_t op, float *y, const float *x,
                 const float *w, const float *b, uint32_t n, uint32_t width,
                 float eps) {
    rows_job j = {y, x, w, b, n, width, op, eps};
    mg__pool_run(pool, rows_task, &j, mg__pool_size(pool));
}

/* Attention: work item = (head, query block of qb queries). Scores are
 * left unnormalized (exp(s - max)); the output rows are scaled by 1 / sum
 * after the PV product (hd values per row instead of N). */
typedef struct att_job {
    istate *s;
    float *out;          /* N x D */
    uint32_t qb, nqb, n_items, parts;
} att_job;

typedef struct smax_job { float *sc, *inv; uint32_t rows, N; } smax_job;

static void smax_rows(float *sc, float *inv, uint32_t a, uint32_t b, uint32_t N) {
    for (uint32_t r = a; r < b; r++) {
        float *row = sc + (size_t)r * N;
        inv[r] = 1.0f / mg__expsum_f32(row, mg__max_f32(row, N), N);
    }
}

static void smax_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const smax_job *j = arg;
    uint32_t per = (j->rows + n_tasks - 1) / n_tasks;
    uint32_t a = i * per, b = a + per < j->rows ? a + per : j->rows;
    if (a < b) smax_rows(j->sc, j->inv, a, b, j->N);
}

/* sc: qb x N scores, inv: qb floats; pool: softmax rows on the pool (NULL:
 * inline). */
static void att_item(istate *s, float *out, uint32_t item, uint32_t qb, uint32_t nqb,
                     float *sc, float *inv, uint16_t *xb, mg__pool *pool) {
    const image2d *e = s->e;
    const uint32_t N = e->N, D = e->D, hd = e->hd;
    uint32_t h = item / nqb, q0 = (item % nqb) * qb;
    uint32_t nq = N - q0 < qb ? N - q0 : qb;
    const float scale = 1.0f / sqrtf((float)hd);
    /* bf16 tiles: S = bf16(scale q) bf16(k)^T, O = bf16(P) bf16(v); else sgemm. */
    if (e->att_bf16)
        mg__gemm_bf16(s->kb + (size_t)h * N * hd, N, hd, s->q + (size_t)q0 * D + (size_t)h * hd,
                      D, scale, nq, sc, N, xb, pool);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)N, (int)hd, scale,
                    s->q + (size_t)q0 * D + (size_t)h * hd, (int)D, s->k + (size_t)h * hd,
                    (int)D, 0.0f, sc, (int)N);
    if (pool) {
        smax_job sj = {sc, inv, nq, N};
        mg__pool_run(pool, smax_task, &sj, mg__pool_size(pool));
    } else {
        smax_rows(sc, inv, 0, nq, N);
    }
    float *o = out + (size_t)q0 * D + (size_t)h * hd;
    if (e->att_bf16)
        mg__gemm_bf16(s->vt + (size_t)h * hd * N, hd, N, sc, N, 1.0f, nq, o, D, xb, pool);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)hd, (int)N, 1.0f,
                    sc, (int)N, s->v + (size_t)h * hd, (int)D, 0.0f, o, (int)D);
    for (uint32_t r = 0; r < nq; r++)
        for (uint32_t c = 0; c < hd; c++) o[(size_t)r * D + c] *= inv[r];
}

static void att_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const att_job *j = arg;
    (void)n_tasks;
    float *sc = j->s->scores + (size_t)i * MG__ATT_QBLOCK_POOL * j->s->e->N;
    float *inv = j->s->inv + (size_t)i * MG__ATT_QBLOCK_BLAS;
    uint16_t *xb = j->s->xb ? j->s->xb + (size_t)i * MG__ATT_QBLOCK_POOL * j->s->e->N : NULL;
    for (uint32_t it = i; it < j->n_items; it += j->parts)
        att_item(j->s, j->out, it, j->qb, j->nqb, sc, inv, xb, NULL);
}

/* Two schedules: with single-threaded OpenBLAS, items run in parallel on
 * the pool with 64-query blocks (64 x N floats = 1 MiB of scores at
 * N = 4096, resident in L2); with multi-threaded OpenBLAS, items run one
 * after the other with 256-query blocks (bigger GEMMs that split well over
 * OpenBLAS's threads) and the softmax rows go to the pool. */
/* att_bf16: K and V^T of every head as bf16, from k and v (N x D). */
typedef struct kv_job { istate *s; } kv_job;

static void kv_task(void *arg, uint32_t i, uint32_t n_tasks) {
    istate *s = ((const kv_job *)arg)->s;
    const image2d *e = s->e;
    const uint32_t N = e->N, D = e->D, hd = e->hd;
    for (uint32_t h = i; h < e->NH; h += n_tasks) {
        uint16_t *kb = s->kb + (size_t)h * N * hd, *vt = s->vt + (size_t)h * hd * N;
        for (uint32_t n = 0; n < N; n++) {
            const float *k = s->k + (size_t)n * D + (size_t)h * hd;
            const float *v = s->v + (size_t)n * D + (size_t)h * hd;
#if defined(MG_X86_AVX512) /* att_bf16: AVX512_BF16 */
            mg__f32_to_bf16_avx512(kb + (size_t)n * hd, k, hd, 1.0f);
#else
            for (uint32_t c = 0; c < hd; c++) kb[(size_t)n * hd + c] = mg__f32_to_bf16(k[c]);
#endif
            for (uint32_t c = 0; c < hd; c++) vt[(size_t)c * N + n] = mg__f32_to_bf16(v[c]);
        }
    }
}

static void attention(istate *s, float *out, mg__pool *pool) {
    const image2d *e = s->e;
    uint32_t np = mg__pool_size(pool);
    if (np > s->n_threads) np = s->n_threads;
    if (e->att_bf16) {
        kv_job kj = {s};
        uint32_t nt = np < e->NH ? np : e->NH;
        mg__pool_run(nt > 1 ? pool : NULL, kv_task, &kj, nt);
    }
    int bt = blas_threaded(), par = np > 1 && !bt;
    uint32_t qb = bt ? MG__ATT_QBLOCK_BLAS : MG__ATT_QBLOCK_POOL;
    uint32_t nqb = (e->N + qb - 1) / qb, n_items = nqb * e->NH;
    if (par) {
        att_job j = {s, out, qb, nqb, n_items, np};
        mg__pool_run(pool, att_task, &j, np);
    } else {
        for (uint32_t it = 0; it < n_items; it++)
            att_item(s, out, it, qb, nqb, s->scores, s->inv, s->xb, np > 1 ? pool : NULL);
    }
}

/* Unfolds the preprocessed RGB8 image into normalized patch rows. */
static void unfold(istate *s) {
    const image2d *e = s->e;
    const uint32_t P = e->P, S = e->S, G = e->G, PP = P * P;
    for (uint32_t py = 0; py < G; py++)
        for (uint32_t px = 0; px < G; px++) {
            float *row = s->patches + ((size_t)py * G + px) * 3 * PP;
            for (uint32_t ky = 0; ky < P; ky++) {
                const uint8_t *src = s->rgb + ((size_t)(py * P + ky) * S + (size_t)px * P) * 3;
                for (uint32_t kx = 0; kx < P; kx++)
                    for (uint32_t c = 0; c < 3; c++)
                        row[c * PP + ky * P + kx] = e->lut[c][src[kx * 3 + c]];
            }
        }
}

static mg_status encode(void *state, const mg__enc_input *in, float *out,
                        mg__pool *pool, const mg__enc_ctl *ctl, char *err,
                        size_t errlen) {
    istate *s = state;
    if (!s || !out || bid(s->e, in) <= 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "image encoder: bad input");
    const image2d *e = s->e;
    const uint32_t N = e->N, D = e->D, F = e->F;
    /* steps: per layer the q/k/v projections, attention with its output
     * projection, and the MLP (each ~0.2-0.4 s for SigLIP at 896 px on two
     * cores); then the projector */
    const uint32_t n_steps = 3 * e->L + 1;
#define STOP(done) if (mg__enc_stop(ctl, (done), n_steps)) \
        return mg__err(err, errlen, MG_E_INTERRUPTED, "image encoding was interrupted")
    mg_status st = mg__resize_rgb8(s->rgb, e->S, e->S, in->image, s->resize,
                                   (size_t)e->resize_bytes, err, errlen);
    if (st != MG_OK) return st;
    unfold(s);
    linear(s, &e->patch, s->patches, N, e->patch_b, s->x, pool);
    {
        int ok;
        size_t rb = (size_t)mg__dtype_bytes(e->pos.dt, D, &ok);
        for (uint32_t n = 0; n < N; n++) {
            float *tmp = s->xn;
            mg__dequantize(e->pos.dt, tmp, (const char *)e->pos.w + (size_t)n * rb, D);
            float *x = s->x + (size_t)n * D;
            for (uint32_t c = 0; c < D; c++) x[c] += tmp[c];
        }
    }
    for (uint32_t l = 0; l < e->L; l++) {
        STOP(3 * l);
        const vlayer *y = &e->layers[l];
        rows(pool, ROW_LN, s->xn, s->x, y->ln1, y->ln1_b, N, D, e->eps);
        linear(s, &y->q, s->xn, N, y->q_b, s->q, pool);
        linear(s, &y->k, s->xn, N, y->k_b, s->k, pool);
        linear(s, &y->v, s->xn, N, y->v_b, s->v, pool);
        STOP(3 * l + 1);
        attention(s, s->xn, pool);                       /* xn = attention out */
        linear(s, &y->o, s->xn, N, y->o_b, s->q, pool);  /* q = out proj */
        rows(pool, ROW_ADD, s->x, s->q, NULL, NULL, N, D, 0);
        STOP(3 * l + 2);
        rows(pool, ROW_LN, s->xn, s->x, y->ln2, y->ln2_b, N, D, e->eps);
        linear(s, &y->up, s->xn, N, y->up_b, s->h, pool);
        rows(pool, ROW_GELU, s->h, s->h, NULL, NULL, N, F, 0);
        linear(s, &y->down, s->h, N, y->down_b, s->q, pool);
        rows(pool, ROW_ADD, s->x, s->q, NULL, NULL, N, D, 0);
    }
    rows(pool, ROW_LN, s->x, s->x, e->post_ln, e->post_ln_b, N, D, e->eps);
    /* Projector: k x k average pooling, RMSNorm (1 + w), projection. */
    const uint32_t k = e->pool_k, ts = e->tside, G = e->G;
    const float inv = 1.0f / (float)(k * k);
    float *pooled = s->pooled;
    for (uint32_t ty = 0; ty < ts; ty++)
        for (uint32_t tx = 0; tx < ts; tx++) {
            float *p = pooled + ((size_t)ty * ts + tx) * D;
            memset(p, 0, (size_t)D * sizeof *p);
            for (uint32_t dy = 0; dy < k; dy++)
                for (uint32_t dx = 0; dx < k; dx++) {
                    const float *x = s->x + ((size_t)(ty * k + dy) * G + tx * k + dx) * D;
                    for (uint32_t c = 0; c < D; c++) p[c] += x[c];
                }
            for (uint32_t c = 0; c < D; c++) p[c] *= inv;
            mg__rmsnorm(p, p, e->soft_norm, D, e->eps, 1);
        }
    STOP(3 * e->L);
#undef STOP
    linear(s, &e->proj, pooled, e->T, NULL, out, pool);
    return MG_OK;
}

const mg__encoder_vtable mg__encoder_image2d = {
    MG__ENCODER_ABI, sizeof(mg__encoder_vtable), "image2d", MG__INPUT_IMAGE,
    probe, build, destroy, geometry, bid, n_blocks, mg__enc_no_label, state_new, state_free,
    encode,
};

mg_status mg__image2d_encode_rgb(void *state, mg_image *wrap, uint8_t *rgb, uint32_t w,
                                 uint32_t h, float *out, mg__pool *pool,
                                 const mg__enc_ctl *ctl, char *err, size_t errlen) {
    memset(wrap, 0, sizeof *wrap);
    wrap->tag = MG__TAG_IMAGE;
    wrap->width = w;
    wrap->height = h;
    wrap->format = MG_PIXEL_RGB8;
    wrap->source = MG_IMAGE_SRC_PIXELS;
    wrap->bits_stored = 8;
    wrap->size = (size_t)w * h * 3;
    wrap->n_frames = 1;
    wrap->slope = 1.0;
    wrap->pixels = rgb;
    mg__enc_input im;
    memset(&im, 0, sizeof im);
    im.kind = MG__INPUT_IMAGE;
    im.image = wrap;
    return encode(state, &im, out, pool, ctl, err, errlen);
}
