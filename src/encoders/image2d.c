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
 * Speed: the layers run on kernels/layers.h (dense products of any dtype,
 * row kernels, attention in query blocks, on bf16 tiles for bf16 models on
 * CPUs with AVX512_BF16) over the context's pool. */
#include "encoders/encoder.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "encoders/preprocess.h"
#include "io/image.h"
#include "kernels/kernels.h"
#include "kernels/layers.h"

#define MG__VIS_MAX_SIZE 8192u
#define MG__VIS_MAX_WIDTH (1u << 16)
#define MG__VIS_MAX_LAYERS 1024u
#define MG__VIS_MAX_FFN (1u << 20)
#define MG__VIS_MAX_PATCHES (1u << 16)
#define MG__VIS_MAX_INPUT 65535u /* largest input side the scratch covers */

typedef mg__dense vmat;

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
    mg__mha att;           /* attention's shape; bf16 products for bf16 weights (AVX512_BF16) */
} image2d;

typedef struct istate {
    const image2d *e;
    uint32_t n_threads;
    float *patches, *x, *xn, *q, *k, *v, *h, *pooled;
    float *att;            /* attention's scratch (mg__mha_scratch_bytes) */
    mg__dense_ws ws;       /* mg__matmul scratch: n_threads x mm_scratch */
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
    e->att.n = e->N;
    e->att.heads = e->NH;
    e->att.hd = e->hd;
    int32_t qdt = e->L > 0 ? e->layers[0].q.dt : MG_DTYPE_F32;
    e->att.bf16 = (qdt == MG_DTYPE_BF16 || qdt == MG_DTYPE_Q8_0 || qdt == MG_DTYPE_Q4_0) &&
                  mg__mha_bf16_ok(e->N, e->hd);
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
    float *f[] = {s->patches, s->x, s->xn, s->q, s->k, s->v, s->h, s->pooled, s->att,
                  s->ws.mm};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) mg__aligned_free(f[i]);
    mg__aligned_free(s->rgb);
    mg__aligned_free(s->resize);
    mg__free(s);
}

/* Sizes in floats (bytes for the last two) of every buffer. */
static int state_sizes(const image2d *e, uint32_t nt, uint64_t z[10], uint64_t *total) {
    const uint64_t N = e->N, D = e->D;
    int of = 0;
    uint64_t nd = N * D, acc = 0, t;
    z[0] = N * 3ull * e->P * e->P;                      /* patches */
    z[1] = z[2] = z[3] = z[4] = z[5] = nd;              /* x xn q k v */
    of |= mg__mul_u64(N, e->F, &z[6]);                  /* h */
    z[7] = (uint64_t)e->T * (D > e->text_hidden ? D : e->text_hidden) * 2; /* pooled + proj */
    uint64_t ab = 0;
    of |= mg__mha_scratch_bytes(&e->att, nt, &ab) != 0;
    z[8] = (ab + 3) / 4;                                /* attention */
    of |= mg__mul_u64((uint64_t)nt, mg__dense_stride(e->mm_scratch), &z[9]); /* mm */
    for (int i = 0; i < 10; i++) of |= mg__mul_u64(z[i], 4, &t) || mg__add_u64(acc, t, &acc);
    of |= mg__add_u64(acc, 3ull * e->S * e->S, &acc);
    of |= mg__add_u64(acc, e->resize_bytes, &acc);
    if (of || acc > SIZE_MAX / 2) return -1;
    *total = acc;
    return 0;
}

static void geometry(const void *impl, mg__enc_geometry *g) {
    const image2d *e = impl;
    uint64_t z[10], total = 0;
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
    uint64_t z[10], total;
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
    s->att = falloc(z[8], &fail);
    s->ws.mm = falloc(z[9], &fail);
    s->ws.stride = mg__dense_stride(e->mm_scratch);
    s->ws.n_threads = n_threads;
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

static void linear(istate *s, const vmat *m, const float *X, uint32_t n,
                   const float *bias, float *Y, mg__pool *pool) {
    mg__dense_rows_ex(m, X, n, bias, 0, MG__ACT_NONE, Y, NULL, &s->ws, pool);
}

static void attention(istate *s, float *out, mg__pool *pool) {
    mg__mha_run(&s->e->att, s->q, s->k, s->v, out, s->att, s->n_threads, pool);
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
    const uint32_t N = e->N, D = e->D;
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
        mg__rows_op(pool, MG__ROWS_LN, s->xn, s->x, y->ln1, y->ln1_b, N, D, e->eps);
        linear(s, &y->q, s->xn, N, y->q_b, s->q, pool);
        linear(s, &y->k, s->xn, N, y->k_b, s->k, pool);
        linear(s, &y->v, s->xn, N, y->v_b, s->v, pool);
        STOP(3 * l + 1);
        attention(s, s->xn, pool);                       /* xn = attention out */
        /* x += out_proj(xn), q the scratch where it is not one pass */
        mg__dense_rows_ex(&y->o, s->xn, N, y->o_b, 1, MG__ACT_NONE, s->x, s->q, &s->ws, pool);
        STOP(3 * l + 2);
        mg__rows_op(pool, MG__ROWS_LN, s->xn, s->x, y->ln2, y->ln2_b, N, D, e->eps);
        mg__dense_rows_ex(&y->up, s->xn, N, y->up_b, 0, MG__ACT_GELU, s->h, NULL, &s->ws, pool);
        mg__dense_rows_ex(&y->down, s->h, N, y->down_b, 1, MG__ACT_NONE, s->x, s->q, &s->ws,
                          pool);
    }
    mg__rows_op(pool, MG__ROWS_LN, s->x, s->x, e->post_ln, e->post_ln_b, N, D, e->eps);
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
