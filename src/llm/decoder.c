/* decoder.c - Gemma 3 text decoder forward pass with a KV cache (see
 * decoder.h for the semantics, the cache layout and the API). */
#include "llm/decoder.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/vec.h"

typedef struct mg__dmat {
    const void *w;
    int32_t dt;
} mg__dmat;

typedef struct mg__dlayer {
    mg__dmat q, k, v, o, gate, up, down;
    const float *attn_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
    const float *q_norm, *k_norm;
    uint32_t global;
} mg__dlayer;

struct mg__decoder {
    mg__dconfig c;
    mg__dmat embd;
    size_t embd_row_bytes;
    float embd_scale;
    const float *out_norm;
    mg__dlayer *layers;
    size_t mm_scratch;   /* bytes of mg__matmul scratch the biggest needs */
};

struct mg__dstate {
    const mg__decoder *d;
    uint32_t n_ctx, max_batch, pos, ring, cap_max;
    uint32_t hi;                 /* positions below hi may have been written
                                    since the last reset (a stopped forward
                                    writes past pos) */
    mg__dstate_hook hook;        /* after each layer; may be NULL */
    void *hook_user;
    int exact;                   /* batches computed as single tokens are */
    mg__dattn attn;              /* which attention path a batch takes */
    void *mvm_scratch;           /* mg__matvec_multi scratch (exact mode) */
    uint32_t n_workers;          /* pool threads the tile scratch is for */
    int kv_bf16;                 /* keys and values stored as bf16 */
    void **kc, **vc;             /* per layer: [kv_head][cap][head_dim] */
    uint32_t *cap;               /* per layer: slots */
    void *kv_mem;
    float *work;                 /* n_workers x work_floats: attention tiles */
    uint64_t work_floats;
    float *part;                 /* grouped decode: per task partial outputs */
    uint64_t part_floats;        /* per task */
    float *x, *xn, *q, *k, *v, *att, *tmp, *gate, *up;
    float *cos_l, *sin_l, *cos_g, *sin_g; /* [max_batch][head_dim/2] */
    float *scores;               /* [n_heads][cap_max] */
    float *mm_scratch;
    int32_t *blk, *bfirst, *blast;
};

/* ======================================================= config reading */

/* Checked reads (io/mgm_get.c) with the decoder's name in the messages. */
#define WHAT "text decoder"

static mg_status get_u32(const mg__mgm *f, const char *key, int required,
                         uint32_t def, uint32_t lo, uint32_t hi, uint32_t *out,
                         char *err, size_t errlen) {
    return mg__mgm_get_u32(f, WHAT, key, required, def, lo, hi, out, err, errlen);
}

/* A float key (an INT value is accepted); lo < v <= hi, or v == 0 when
 * zero_ok. */
static mg_status get_f64(const mg__mgm *f, const char *key, int required,
                         double def, double lo, double hi, int zero_ok,
                         double *out, char *err, size_t errlen) {
    return mg__mgm_get_f64(f, WHAT, key, required, def, lo, hi, zero_ok, out, err, errlen);
}

static mg_status read_config(const mg__mgm *f, mg__dconfig *c, char *err,
                             size_t errlen) {
    mg_status st;
#define U(key, req, def, lo, hi, field) \
    if ((st = get_u32(f, key, req, def, lo, hi, &c->field, err, errlen))) return st
#define F(key, req, def, lo, hi, z, field) \
    if ((st = get_f64(f, key, req, def, lo, hi, z, &c->field, err, errlen))) return st
    U("text.vocab_size", 1, 0, 1, MG__DEC_MAX_VOCAB, vocab);
    U("text.hidden_size", 1, 0, 1, MG__DEC_MAX_HIDDEN, hidden);
    U("text.n_layers", 1, 0, 1, MG__DEC_MAX_LAYERS, n_layers);
    U("text.n_heads", 1, 0, 1, MG__DEC_MAX_HEADS, n_heads);
    U("text.n_kv_heads", 1, 0, 1, MG__DEC_MAX_HEADS, n_kv_heads);
    U("text.head_dim", 1, 0, 2, MG__DEC_MAX_HEADDIM, head_dim);
    U("text.ffn_size", 1, 0, 1, MG__DEC_MAX_FFN, ffn);
    U("text.context_length", 1, 0, 1, MG__DEC_MAX_CTX, context_length);
    U("text.sliding_window", 1, 0, 1, INT32_MAX, sliding_window);
    U("text.sliding_window_pattern", 1, 0, 1, INT32_MAX, pattern);
    F("text.rms_norm_eps", 1, 0, 0.0, 1.0, 0, rms_norm_eps);
    F("text.query_pre_attn_scalar", 0, (double)c->head_dim, 0.0, 1e12, 0,
      query_pre_attn_scalar);
    F("text.rope_theta_local", 0, 10000.0, 1.0, 1e30, 0, rope_theta_local);
    F("text.rope_theta_global", 0, 1e6, 1.0, 1e30, 0, rope_theta_global);
    F("text.rope_scaling_factor", 0, 1.0, 0.0, 1e12, 0, rope_scaling_factor);
    F("text.attn_logit_softcap", 0, 0.0, 0.0, 1e12, 1, attn_softcap);
    F("text.final_logit_softcap", 0, 0.0, 0.0, 1e12, 1, final_softcap);
#undef U
#undef F
    if (c->head_dim % 2)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "text decoder: head_dim %u is odd (RoPE pairs halves)",
                       c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "text decoder: n_heads %u is not a multiple of "
                       "n_kv_heads %u", c->n_heads, c->n_kv_heads);
    if ((uint64_t)c->n_heads * c->head_dim > MG__DEC_MAX_FFN)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "text decoder: n_heads * head_dim = %llu is too large",
                       (unsigned long long)c->n_heads * c->head_dim);
    return MG_OK;
}

/* ======================================================= tensor checks */

/* A matrix stored as dims = [in, out] in any supported dtype. */
static mg_status get_mat(const mg__mgm *f, const char *name, uint64_t in,
                         uint64_t out, mg__dmat *m, size_t *scratch, char *err,
                         size_t errlen) {
    const mg__tensor *t;
    mg_status st = mg__mgm_get_matrix(f, WHAT, name, in, out, &t, scratch, err, errlen);
    if (st != MG_OK) return st;
    /* q4_0 rows interleaved 16 at a time where the CPU decodes them faster so */
    if (mg__mgm_repack_q4x16(f, t, out, in) < 0)
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    m->w = t->data;
    m->dt = t->dtype;
    return MG_OK;
}

static mg_status get_vec(const mg__mgm *f, const char *name, uint64_t n,
                         const float **out, char *err, size_t errlen) {
    return mg__mgm_get_vector(f, WHAT, name, n, out, err, errlen);
}

/* ======================================================= build / free */

mg_status mg__decoder_build(mg__decoder **out, const mg__mgm *f, char *err,
                            size_t errlen) {
    if (!out || !f)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "text decoder: NULL argument");
    *out = NULL;
    mg__decoder *d = mg__calloc(1, sizeof *d);
    if (!d) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    mg__dconfig *c = &d->c;
    mg_status st = read_config(f, c, err, errlen);
    if (st) goto fail;
    d->layers = mg__calloc(c->n_layers, sizeof *d->layers);
    if (!d->layers) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t H = c->hidden, Q = (uint64_t)c->n_heads * c->head_dim;
    uint64_t KV = (uint64_t)c->n_kv_heads * c->head_dim, FF = c->ffn;
    size_t scratch = 0;
    if ((st = get_mat(f, "text.token_embd", H, c->vocab, &d->embd, &scratch,
                      err, errlen)))
        goto fail;
    int ok;
    d->embd_row_bytes = (size_t)mg__dtype_bytes(
        d->embd.dt == MG__DTYPE_Q4_0X16 ? MG_DTYPE_Q4_0 : d->embd.dt, H, &ok);
    if ((st = get_vec(f, "text.output_norm", H, &d->out_norm, err, errlen)))
        goto fail;
    /* HF multiplies by sqrt(hidden) cast to the embedding's dtype. */
    float sc = (float)sqrt((double)H);
    if (d->embd.dt == MG_DTYPE_BF16) sc = mg__bf16_to_f32(mg__f32_to_bf16(sc));
    else if (d->embd.dt == MG_DTYPE_F16) sc = mg__f16_to_f32(mg__f32_to_f16(sc));
    d->embd_scale = sc;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        mg__dlayer *L = &d->layers[l];
        char nm[96];
        L->global = (l + 1) % c->pattern == 0;
#define M(suffix, field, in, outn) \
    snprintf(nm, sizeof nm, "text.blk.%u." suffix, l); \
    if ((st = get_mat(f, nm, in, outn, &L->field, &scratch, err, errlen))) goto fail
#define N(suffix, field, n) \
    snprintf(nm, sizeof nm, "text.blk.%u." suffix, l); \
    if ((st = get_vec(f, nm, n, &L->field, err, errlen))) goto fail
        N("attn_norm", attn_norm, H);
        M("attn_q", q, H, Q);
        M("attn_k", k, H, KV);
        M("attn_v", v, H, KV);
        N("attn_q_norm", q_norm, c->head_dim);
        N("attn_k_norm", k_norm, c->head_dim);
        M("attn_output", o, Q, H);
        N("post_attn_norm", post_attn_norm, H);
        N("ffn_norm", ffn_norm, H);
        M("ffn_gate", gate, H, FF);
        M("ffn_up", up, H, FF);
        M("ffn_down", down, FF, H);
        N("post_ffn_norm", post_ffn_norm, H);
#undef M
#undef N
    }
    d->mm_scratch = scratch;
    *out = d;
    return MG_OK;
fail:
    mg__decoder_free(d);
    return st;
}

void mg__decoder_free(mg__decoder *d) {
    if (!d) return;
    mg__free(d->layers);
    mg__free(d);
}

const mg__dconfig *mg__decoder_config(const mg__decoder *d) {
    return d ? &d->c : NULL;
}

/* ======================================================= state */

/* Slots of a layer's cache. */
static uint32_t layer_cap(const mg__decoder *d, uint32_t l, uint32_t n_ctx,
                          uint32_t max_batch) {
    if (d->layers[l].global) return n_ctx;
    uint64_t r = (uint64_t)d->c.sliding_window + max_batch;
    return r < n_ctx ? (uint32_t)r : n_ctx;
}

/* The tiled attention (attn_tiles): blocks of up to ATT_QB queries of
 * every head of a KV group against chunks of up to ATT_KB keys. Batches
 * below the state's attn.tile_min tokens (decode) take the per-query
 * paths instead. */
#define ATT_QB 64
#define ATT_KB 64
/* Grouped decode (attn_group): batches of up to DEC_ROWS tokens, keys in
 * pieces of DEC_PIECE, at most DEC_SPLIT key ranges per KV head. */
#define DEC_ROWS 7
#define DEC_PIECE 256
#define DEC_SPLIT 16

typedef struct sizes {
    uint64_t kv;        /* bytes of all caches */
    uint64_t work;      /* floats of tile scratch per worker */
    uint64_t part;      /* floats of grouped-decode scratch per task */
    uint64_t cap_max;
    uint64_t batch_h, batch_q, batch_kv, batch_f, rope, scores;
    uint64_t total;     /* bytes */
} sizes;

static mg_status state_sizes(const mg__decoder *d, uint32_t n_ctx,
                             uint32_t max_batch, const mg__dstate_opts *o,
                             sizes *z) {
    if (!d || !n_ctx || !max_batch || n_ctx > d->c.context_length ||
        max_batch > n_ctx || (o && (o->n_workers > MG__DEC_MAX_WORKERS ||
                                    o->flags & ~(uint32_t)MG__DSTATE_KV_BF16)))
        return MG_E_INVALID_ARG;
    const mg__dconfig *c = &d->c;
    const uint64_t esz = o && (o->flags & MG__DSTATE_KV_BF16) ? 2 : 4;
    const uint64_t nw = o && o->n_workers ? o->n_workers : 1;
    const uint64_t kvd = (uint64_t)c->n_kv_heads * c->head_dim; /* values per token */
    uint64_t t, acc = 0;
    memset(z, 0, sizeof *z);
    int of = 0;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        uint32_t cap = layer_cap(d, l, n_ctx, max_batch);
        if (cap > z->cap_max) z->cap_max = cap;
        of |= mg__mul_u64(kvd * esz, cap, &t) || mg__mul_u64(t, 2, &t) ||
              mg__add_u64(z->kv, t, &z->kv);
    }
    uint64_t B = max_batch;
    of |= mg__mul_u64(B, c->hidden, &z->batch_h);
    of |= mg__mul_u64(B, (uint64_t)c->n_heads * c->head_dim, &z->batch_q);
    of |= mg__mul_u64(B, kvd, &z->batch_kv);
    of |= mg__mul_u64(B, c->ffn, &z->batch_f);
    of |= mg__mul_u64(B, c->head_dim / 2, &z->rope);
    of |= mg__mul_u64(z->cap_max, c->n_heads, &z->scores);
    /* per worker: the queries of a block of every head of a group
     * transposed, the score tile, m, l and alpha, and (bf16 cache) a key
     * and a value chunk in f32 */
    {
        const uint64_t G = c->n_heads / c->n_kv_heads, hd = c->head_dim;
        z->work = G * hd * ATT_QB + (uint64_t)ATT_KB * ATT_QB + 3 * G * ATT_QB +
                  (esz == 2 ? 2 * (uint64_t)ATT_KB * hd : 0);
    }
    uint64_t work_all, part_all;
    of |= mg__mul_u64(z->work, nw, &work_all);
    /* grouped decode, per task (KV head x key range): for each of up to
     * DEC_ROWS x G rows the partial output, max and sum, and a piece of
     * scores */
    {
        const uint64_t rows = (uint64_t)DEC_ROWS * (c->n_heads / c->n_kv_heads);
        z->part = rows * ((uint64_t)c->head_dim + 2 + DEC_PIECE);
    }
    of |= mg__mul_u64(z->part, (uint64_t)c->n_kv_heads * DEC_SPLIT, &part_all);
    /* floats: x, xn, tmp (H) + q, att (Q) + k, v (KV) + gate, up (F) +
     * 4 rope tables + scores + tiles; then the cache, matmul scratch and 3
     * int arrays. */
    uint64_t parts[] = {z->batch_h, z->batch_h, z->batch_h, z->batch_q,
                        z->batch_q, z->batch_kv, z->batch_kv, z->batch_f,
                        z->batch_f, z->rope, z->rope, z->rope, z->rope,
                        z->scores, work_all, part_all};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        of |= mg__add_u64(acc, parts[i], &acc);
    of |= mg__mul_u64(acc, sizeof(float), &acc);
    of |= mg__add_u64(acc, z->kv, &acc);
    of |= mg__add_u64(acc, d->mm_scratch, &acc);
    of |= mg__add_u64(acc, mg__matvec_multi_scratch(B), &acc);
    of |= mg__add_u64(acc, 3 * B * sizeof(int32_t), &acc);
    if (of || acc > SIZE_MAX / 2) return MG_E_LIMIT;
    z->total = acc;
    return MG_OK;
}

mg_status mg__dstate_bytes(const mg__decoder *d, uint32_t n_ctx,
                           uint32_t max_batch, const mg__dstate_opts *o,
                           uint64_t *bytes) {
    sizes z;
    mg_status st = state_sizes(d, n_ctx, max_batch, o, &z);
    if (bytes) *bytes = st ? 0 : z.total;
    return st;
}

static float *falloc(uint64_t n, int *fail) {
    if (!n) return NULL;
    float *p = mg__aligned_alloc(64, (size_t)n * sizeof(float));
    if (!p) *fail = 1;
    return p;
}

mg_status mg__dstate_new(mg__dstate **out, const mg__decoder *d,
                         uint32_t n_ctx, uint32_t max_batch,
                         const mg__dstate_opts *o) {
    if (!out) return MG_E_INVALID_ARG;
    *out = NULL;
    sizes z;
    mg_status st = state_sizes(d, n_ctx, max_batch, o, &z);
    if (st) return st;
    const mg__dconfig *c = &d->c;
    mg__dstate *s = mg__calloc(1, sizeof *s);
    if (!s) return MG_E_NOMEM;
    s->d = d;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    s->cap_max = (uint32_t)z.cap_max;
    s->n_workers = o && o->n_workers ? o->n_workers : 1;
    s->kv_bf16 = o && (o->flags & MG__DSTATE_KV_BF16);
    mg__dstate_set_attn(s, NULL);
    s->work_floats = z.work;
    s->part_floats = z.part;
    int fail = 0;
    s->kc = mg__calloc(c->n_layers, sizeof *s->kc);
    s->vc = mg__calloc(c->n_layers, sizeof *s->vc);
    s->cap = mg__calloc(c->n_layers, sizeof *s->cap);
    s->blk = mg__calloc(max_batch, sizeof *s->blk);
    s->bfirst = mg__calloc(max_batch, sizeof *s->bfirst);
    s->blast = mg__calloc(max_batch, sizeof *s->blast);
    if (!s->kc || !s->vc || !s->cap || !s->blk || !s->bfirst || !s->blast)
        fail = 1;
    if (!(s->kv_mem = mg__aligned_alloc(64, (size_t)z.kv))) fail = 1;
    s->work = falloc(z.work * s->n_workers, &fail);
    s->part = falloc(z.part * c->n_kv_heads * DEC_SPLIT, &fail);
    s->x = falloc(z.batch_h, &fail);
    s->xn = falloc(z.batch_h, &fail);
    s->tmp = falloc(z.batch_h, &fail);
    s->q = falloc(z.batch_q, &fail);
    s->att = falloc(z.batch_q, &fail);
    s->k = falloc(z.batch_kv, &fail);
    s->v = falloc(z.batch_kv, &fail);
    s->gate = falloc(z.batch_f, &fail);
    s->up = falloc(z.batch_f, &fail);
    s->cos_l = falloc(z.rope, &fail);
    s->sin_l = falloc(z.rope, &fail);
    s->cos_g = falloc(z.rope, &fail);
    s->sin_g = falloc(z.rope, &fail);
    s->scores = falloc(z.scores, &fail);
    if (d->mm_scratch) s->mm_scratch = falloc(d->mm_scratch / sizeof(float), &fail);
    if (max_batch > 1 && !(s->mvm_scratch = mg__aligned_alloc(64, mg__matvec_multi_scratch(max_batch))))
        fail = 1;
    if (fail) {
        mg__dstate_free(s);
        return MG_E_NOMEM;
    }
    uint64_t kvd = (uint64_t)c->n_kv_heads * c->head_dim * (s->kv_bf16 ? 2 : 4), off = 0;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        s->cap[l] = layer_cap(d, l, n_ctx, max_batch);
        s->kc[l] = (char *)s->kv_mem + off;
        off += kvd * s->cap[l];
        s->vc[l] = (char *)s->kv_mem + off;
        off += kvd * s->cap[l];
    }
    *out = s;
    return MG_OK;
}

void mg__dstate_free(mg__dstate *s) {
    if (!s) return;
    void *bufs[] = {s->kv_mem, s->work, s->part, s->x, s->xn, s->tmp, s->q, s->att, s->k,
                     s->v, s->gate, s->up, s->cos_l, s->sin_l, s->cos_g,
                     s->sin_g, s->scores, s->mm_scratch, s->mvm_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        mg__aligned_free(bufs[i]);
    mg__free(s->kc);
    mg__free(s->vc);
    mg__free(s->cap);
    mg__free(s->blk);
    mg__free(s->bfirst);
    mg__free(s->blast);
    mg__free(s);
}

void mg__dstate_reset(mg__dstate *s) {
    if (s) s->pos = s->hi = 0;
}

mg_status mg__dstate_set_exact(mg__dstate *s, int on) {
    if (!s) return MG_E_INVALID_ARG;
    const mg__dconfig *c = &s->d->c;
    /* the per-row attention outputs are gathered in the FFN buffer */
    if (on && (!s->mvm_scratch || (uint64_t)c->ffn < (uint64_t)c->n_heads * c->head_dim))
        return MG_E_UNSUPPORTED;
    s->exact = on != 0;
    return MG_OK;
}

void mg__dstate_set_hook(mg__dstate *s, mg__dstate_hook fn, void *user) {
    if (!s) return;
    s->hook = fn;
    s->hook_user = user;
}

void mg__dstate_set_attn(mg__dstate *s, const mg__dattn *a) {
    static const mg__dattn def = MG__DATTN_DEFAULT;
    if (s) s->attn = a ? *a : def;
}

uint32_t mg__dstate_pos(const mg__dstate *s) { return s ? s->pos : 0; }

mg_status mg__dstate_rewind(mg__dstate *s, uint32_t pos) {
    if (!s || pos > s->pos) return MG_E_INVALID_ARG;
    /* A sliding layer's ring (cap = window + max_batch slots, when that is
     * below n_ctx) lost the slot of position q once position q + cap was
     * written: the window before pos is intact while at most cap - window
     * positions were written since. */
    const uint64_t W = s->d->c.sliding_window;
    const uint32_t top = s->hi > s->pos ? s->hi : s->pos;
    for (uint32_t l = 0; l < s->d->c.n_layers; l++)
        if (s->cap[l] < s->n_ctx && (uint64_t)(top - pos) + W > s->cap[l])
            return MG_E_INVALID_ARG;
    s->pos = pos;
    return MG_OK;
}

/* ======================================================= forward pieces */


/* y = W x (n == 1, matvec) or Y = X W^T (n > 1, matmul; exact: the decode
 * kernels for every row). */
static void linear(const mg__dstate *s, int exact, const mg__dmat *m, uint64_t rows,
                   uint64_t cols, const float *X, uint32_t n, float *Y,
                   mg__pool *pool) {
    if (n == 1) mg__matvec(m->dt, m->w, rows, cols, X, Y, pool);
    else if (exact)
        mg__matvec_multi_level(mg_simd_level(), m->dt, m->w, rows, cols, X, n, Y,
                               s->mvm_scratch, pool);
    else mg__matmul(m->dt, m->w, rows, cols, X, n, Y, s->mm_scratch, pool);
}

/* Rotate-half RoPE from precomputed cos/sin of head_dim/2 angles. */
static void rope_apply(float *x, const float *cs, const float *sn,
                       uint32_t half) {
    for (uint32_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cs[i] - b * sn[i];
        x[i + half] = b * cs[i] + a * sn[i];
    }
}

/* cos/sin for the n rows of a forward: row t at position s->pos + t, or at
 * rs[t]->pos when rows come from several states (rs not NULL). */
static void rope_tables(mg__dstate *s, mg__dstate *const *rs, uint32_t n) {
    const mg__dconfig *c = &s->d->c;
    uint32_t half = c->head_dim / 2;
    for (uint32_t i = 0; i < half; i++) {
        double e = -2.0 * (double)i / (double)c->head_dim;
        double fl = pow(c->rope_theta_local, e);
        double fg = pow(c->rope_theta_global, e) / c->rope_scaling_factor;
        for (uint32_t t = 0; t < n; t++) {
            double p = (double)(rs ? rs[t]->pos : s->pos + t);
            size_t j = (size_t)t * half + i;
            s->cos_l[j] = (float)cos(p * fl);
            s->sin_l[j] = (float)sin(p * fl);
            s->cos_g[j] = (float)cos(p * fg);
            s->sin_g[j] = (float)sin(p * fg);
        }
    }
}

typedef struct attn_job {
    mg__dstate *s;
    const mg__vec_fns *v;
    uint32_t layer, n, pos0;
    uint32_t n_tb, nsub;        /* tiles: query blocks, head subsets per group */
    uint32_t hd, qd, G, cap;    /* head size, query row, heads per KV head, slots */
    uint32_t n_split;           /* grouped decode: key ranges per KV head */
    uint64_t klo, khi;          /* grouped decode: keys any query may see */
    int global;
    float scale, acap;          /* score scale, soft-cap (0 = none) */
} attn_job;

/* Query token t's visible keys: [wlo, p] and, for a token of block b > 0,
 * the block's tokens of this batch; lo/hi bound both. */
typedef struct qvis {
    uint64_t p, wlo, lo, hi;
    int32_t b;
} qvis;

static qvis query_vis(const attn_job *j, uint32_t t, int global) {
    const mg__dstate *s = j->s;
    const uint64_t W = s->d->c.sliding_window;
    qvis q;
    q.p = (uint64_t)j->pos0 + t;
    q.b = s->blk[t];
    q.wlo = (global || q.p + 1 <= W) ? 0 : q.p + 1 - W;
    q.lo = q.wlo;
    q.hi = q.p;
    if (q.b > 0) {
        uint64_t f0 = (uint64_t)j->pos0 + (uint32_t)s->bfirst[t];
        uint64_t f1 = (uint64_t)j->pos0 + (uint32_t)s->blast[t];
        if (f0 < q.lo) q.lo = f0;
        if (f1 > q.hi) q.hi = f1;
    }
    return q;
}

static int key_visible(const attn_job *j, const qvis *q, uint64_t k) {
    if (k <= q->p && k >= q->wlo) return 1;
    return q->b > 0 && k >= j->pos0 && k < (uint64_t)j->pos0 + j->n &&
           j->s->blk[k - j->pos0] == q->b;
}

/* Per query (decode): one query head over the whole batch, two passes over
 * the scores. */
static void attn_rows(void *arg, uint32_t h, uint32_t n_tasks) {
    const attn_job *j = arg;
    mg__dstate *s = j->s;
    const mg__vec_fns *v = j->v;
    const uint32_t hd = j->hd, qd = j->qd, cap = j->cap, kvh = h / j->G;
    const int global = j->global;
    const size_t base = (size_t)kvh * cap * hd;
    const float *K = (const float *)s->kc[j->layer] + base, *V = (const float *)s->vc[j->layer] + base;
    const uint16_t *Kb = (const uint16_t *)s->kc[j->layer] + base;
    const uint16_t *Vb = (const uint16_t *)s->vc[j->layer] + base;
    float *sc = s->scores + (size_t)h * s->cap_max;
    const float scale = j->scale, acap = j->acap;
    (void)n_tasks;
    for (uint32_t t = 0; t < j->n; t++) {
        const qvis q = query_vis(j, t, global);
        const float *qv = s->q + (size_t)t * qd + (size_t)h * hd;
        float *o = s->att + (size_t)t * qd + (size_t)h * hd;
        float mx = -INFINITY;
        for (uint64_t k = q.lo; k <= q.hi; k++) {
            float x = -INFINITY;
            if (key_visible(j, &q, k)) {
                size_t at = (size_t)(k % cap) * hd;
                x = (s->kv_bf16 ? v->dot_bf16(qv, Kb + at, hd) : v->dot(qv, K + at, hd)) * scale;
                if (acap > 0) x = acap * tanhf(x / acap);
                if (x > mx) mx = x;
            }
            sc[k - q.lo] = x;
        }
        float sum = 0;
        memset(o, 0, hd * sizeof *o);
        for (uint64_t k = q.lo; k <= q.hi; k++) {
            if (sc[k - q.lo] == -INFINITY) continue;
            float w = expf(sc[k - q.lo] - mx);
            size_t at = (size_t)(k % cap) * hd;
            sum += w;
            if (s->kv_bf16) v->axpy_bf16(o, w, Vb + at, hd);
            else v->axpy(o, w, V + at, hd);
        }
        float inv = 1.0f / sum; /* sum >= 1: the key at p itself is visible */
        for (uint32_t i = 0; i < hd; i++) o[i] *= inv;
    }
}

/* Tiled (prefill): task = (query block, KV head, subset of its query
 * heads), the largest blocks (the last tokens see the most keys) first. */
static void attn_tiles(void *arg, uint32_t task, uint32_t n_tasks) {
    const attn_job *j = arg;
    mg__dstate *s = j->s;
    const mg__vec_fns *v = j->v;
    const uint32_t hd = j->hd, qd = j->qd, G = j->G, nh = G / j->nsub;
    const uint32_t per_tb = s->d->c.n_kv_heads * j->nsub;
    const uint32_t tb = j->n_tb - 1 - task / per_tb;
    const uint32_t kvh = (task % per_tb) / j->nsub;
    const uint32_t h0 = kvh * G + (task % j->nsub) * nh;
    const uint32_t t0 = tb * ATT_QB, nq = j->n - t0 < ATT_QB ? j->n - t0 : ATT_QB;
    const uint32_t ldq = (nq + 15) & ~15u, cap = j->cap;
    const int global = j->global;
    const float scale = j->scale, acap = j->acap;
    const size_t kbase = (size_t)kvh * cap * hd;
    (void)n_tasks;

    float *w = s->work + (size_t)mg__pool_worker() * s->work_floats;
    float *QT = w;                                   /* nh x hd x ldq */
    float *ST = QT + (size_t)G * hd * ATT_QB;        /* ATT_KB x ldq   */
    float *M = ST + (size_t)ATT_KB * ATT_QB;         /* nh x ldq each  */
    float *L = M + (size_t)G * ATT_QB, *A = L + (size_t)G * ATT_QB;
    float *Kf = A + (size_t)G * ATT_QB, *Vf = Kf + (size_t)ATT_KB * hd; /* bf16 cache */

    qvis qv[ATT_QB];
    uint64_t klo = UINT64_MAX, khi = 0;
    for (uint32_t i = 0; i < nq; i++) {
        qv[i] = query_vis(j, t0 + i, global);
        if (qv[i].lo < klo) klo = qv[i].lo;
        if (qv[i].hi > khi) khi = qv[i].hi;
    }
    for (uint32_t hh = 0; hh < nh; hh++) {
        const float *q = s->q + (size_t)t0 * qd + (size_t)(h0 + hh) * hd;
        float *qt = QT + (size_t)hh * hd * ldq;
        for (uint32_t d = 0; d < hd; d++) {
            for (uint32_t i = 0; i < nq; i++) qt[(size_t)d * ldq + i] = q[(size_t)i * qd + d];
            for (uint32_t i = nq; i < ldq; i++) qt[(size_t)d * ldq + i] = 0.0f;
        }
        for (uint32_t i = 0; i < nq; i++) {
            M[hh * ldq + i] = -INFINITY;
            L[hh * ldq + i] = 0.0f;
            memset(s->att + (size_t)(t0 + i) * qd + (size_t)(h0 + hh) * hd, 0, hd * sizeof(float));
        }
    }
    uint8_t cls[ATT_QB]; /* per query for the chunk: 0 none, 1 all, 2 some */
    for (uint64_t k0 = klo; k0 <= khi;) {
        const uint32_t slot = (uint32_t)(k0 % cap);
        uint64_t nk64 = khi + 1 - k0;
        if (nk64 > ATT_KB) nk64 = ATT_KB;
        if (nk64 > cap - slot) nk64 = cap - slot; /* the ring wraps here */
        const uint32_t nk = (uint32_t)nk64;
        const uint64_t k1 = k0 + nk - 1;
        int any = 0;
        for (uint32_t i = 0; i < nq; i++) {
            const qvis *q = &qv[i];
            if (k1 < q->lo || k0 > q->hi) cls[i] = 0;
            else if (k0 >= q->wlo && k1 <= q->p) cls[i] = 1;
            else cls[i] = 2;
            any |= cls[i];
        }
        if (any) {
            const float *Kc, *Vc;
            if (s->kv_bf16) {
                v->bf16_f32(Kf, (const uint16_t *)s->kc[j->layer] + kbase + (size_t)slot * hd,
                            (uint64_t)nk * hd);
                v->bf16_f32(Vf, (const uint16_t *)s->vc[j->layer] + kbase + (size_t)slot * hd,
                            (uint64_t)nk * hd);
                Kc = Kf;
                Vc = Vf;
            } else {
                Kc = (const float *)s->kc[j->layer] + kbase + (size_t)slot * hd;
                Vc = (const float *)s->vc[j->layer] + kbase + (size_t)slot * hd;
            }
            for (uint32_t hh = 0; hh < nh; hh++) {
                v->qk(Kc, nk, hd, QT + (size_t)hh * hd * ldq, ldq, scale, ST);
                if (acap > 0)
                    for (size_t e = 0; e < (size_t)nk * ldq; e++) ST[e] = acap * tanhf(ST[e] / acap);
                for (uint32_t i = 0; i < nq; i++) {
                    if (cls[i] == 1) continue;
                    for (uint32_t jj = 0; jj < nk; jj++)
                        if (!cls[i] || !key_visible(j, &qv[i], k0 + jj)) ST[(size_t)jj * ldq + i] = -INFINITY;
                }
                float *m = M + hh * ldq, *l = L + hh * ldq, *a = A + hh * ldq;
                v->softmax(ST, ldq, nk, nq, m, l, a);
                v->pv(ST, ldq, nk, nq, Vc, hd, a, s->att + (size_t)t0 * qd + (size_t)(h0 + hh) * hd, qd);
            }
        }
        k0 += nk;
    }
    for (uint32_t hh = 0; hh < nh; hh++)
        for (uint32_t i = 0; i < nq; i++) {
            float *o = s->att + (size_t)(t0 + i) * qd + (size_t)(h0 + hh) * hd;
            float inv = 1.0f / L[hh * ldq + i]; /* >= 1: the key at p is visible */
            for (uint32_t d = 0; d < hd; d++) o[d] *= inv;
        }
}

/* Grouped decode: task = (KV head, key range). Every query row (token t,
 * head h of the group) gets a partial output over the task's keys: max m,
 * sum l and sum of exp(score - m) V, merged by attn_merge. Each key and
 * value row is read once for all heads of its group, and a long context
 * is split over the pool even when there are few KV heads. */
static void attn_group(void *arg, uint32_t task, uint32_t n_tasks) {
    const attn_job *j = arg;
    mg__dstate *s = j->s;
    const mg__vec_fns *v = j->v;
    const uint32_t hd = j->hd, qd = j->qd, G = j->G, cap = j->cap;
    const uint32_t kvh = task / j->n_split, part = task % j->n_split, rows = j->n * G;
    const uint64_t span = j->khi - j->klo + 1;
    const uint64_t a = j->klo + span * part / j->n_split;
    const uint64_t b = j->klo + span * (part + 1) / j->n_split; /* exclusive */
    const size_t base = (size_t)kvh * cap * hd;
    const float *K = (const float *)s->kc[j->layer] + base, *V = (const float *)s->vc[j->layer] + base;
    const uint16_t *Kb = (const uint16_t *)s->kc[j->layer] + base;
    const uint16_t *Vb = (const uint16_t *)s->vc[j->layer] + base;
    float *O = s->part + (size_t)task * s->part_floats; /* rows x hd */
    float *M = O + (size_t)rows * hd, *L = M + rows, *sc = L + rows; /* sc: rows x DEC_PIECE */
    qvis qv[DEC_ROWS];
    (void)n_tasks;
    for (uint32_t t = 0; t < j->n; t++) qv[t] = query_vis(j, t, j->global);
    memset(O, 0, (size_t)rows * hd * sizeof *O);
    for (uint32_t r = 0; r < rows; r++) {
        M[r] = -INFINITY;
        L[r] = 0.0f;
    }
    for (uint64_t k0 = a; k0 < b; k0 += DEC_PIECE) {
        const uint32_t len = (uint32_t)(b - k0 < DEC_PIECE ? b - k0 : DEC_PIECE);
        for (uint32_t i = 0; i < len; i++) {
            const uint64_t k = k0 + i;
            const size_t at = (size_t)(k % cap) * hd;
            for (uint32_t t = 0; t < j->n; t++) {
                const int vis = key_visible(j, &qv[t], k);
                for (uint32_t hh = 0; hh < G; hh++) {
                    float x = -INFINITY;
                    if (vis) {
                        const float *q = s->q + (size_t)t * qd + (size_t)(kvh * G + hh) * hd;
                        x = (s->kv_bf16 ? v->dot_bf16(q, Kb + at, hd) : v->dot(q, K + at, hd)) *
                            j->scale;
                        if (j->acap > 0) x = j->acap * tanhf(x / j->acap);
                    }
                    sc[(size_t)(t * G + hh) * DEC_PIECE + i] = x;
                }
            }
        }
        for (uint32_t r = 0; r < rows; r++) {
            float *w = sc + (size_t)r * DEC_PIECE, *o = O + (size_t)r * hd;
            const float mx = v->max(w, len);
            if (mx == -INFINITY) continue;
            if (mx > M[r]) { /* rescale what was summed under the old max */
                const float al = M[r] == -INFINITY ? 0.0f : expf(M[r] - mx);
                for (uint32_t d = 0; d < hd; d++) o[d] *= al;
                L[r] *= al;
                M[r] = mx;
            }
            L[r] += v->expsum(w, M[r], len);
            for (uint32_t i = 0; i < len; i++) {
                if (w[i] == 0.0f) continue;
                const size_t at = (size_t)((k0 + i) % cap) * hd;
                if (s->kv_bf16) v->axpy_bf16(o, w[i], Vb + at, hd);
                else v->axpy(o, w[i], V + at, hd);
            }
        }
    }
}

/* The partial outputs of a grouped decode merged into the attention rows. */
static void attn_merge(const attn_job *j) {
    const mg__dstate *s = j->s;
    const uint32_t hd = j->hd, G = j->G, rows = j->n * G;
    for (uint32_t kvh = 0; kvh < s->d->c.n_kv_heads; kvh++)
        for (uint32_t r = 0; r < rows; r++) {
            const uint32_t t = r / G, h = kvh * G + r % G;
            float *out = s->att + (size_t)t * j->qd + (size_t)h * hd, mx = -INFINITY, sum = 0;
            for (uint32_t p = 0; p < j->n_split; p++) {
                const float *O = s->part + (size_t)(kvh * j->n_split + p) * s->part_floats;
                const float m = O[(size_t)rows * hd + r];
                if (m > mx) mx = m;
            }
            memset(out, 0, hd * sizeof *out);
            for (uint32_t p = 0; p < j->n_split; p++) {
                const float *O = s->part + (size_t)(kvh * j->n_split + p) * s->part_floats;
                const float m = O[(size_t)rows * hd + r];
                if (m == -INFINITY) continue;
                const float w = expf(m - mx);
                sum += w * O[(size_t)rows * hd + rows + r];
                j->v->axpy(out, w, O + (size_t)r * hd, hd);
            }
            const float inv = 1.0f / sum; /* > 0: the key at p itself is visible */
            for (uint32_t d = 0; d < hd; d++) out[d] *= inv;
        }
}

static void attention(mg__dstate *s, uint32_t layer, uint32_t n, uint32_t pos0, mg__pool *pool);

/* Exact mode: each query row through the single-token path, as if fed
 * alone (rows of text only), against its own state's cache (rs[t], or s
 * itself at pos0 + t when rs is NULL); queries in s->q, outputs gathered in
 * s->gate, then in s->att. */
static void attention_exact(mg__dstate *s, mg__dstate *const *rs, uint32_t layer, uint32_t n,
                            uint32_t pos0, mg__pool *pool) {
    const mg__dconfig *c = &s->d->c;
    const size_t Q = (size_t)c->n_heads * c->head_dim;
    for (uint32_t t = 0; t < n; t++) {
        mg__dstate *r = rs ? rs[t] : s;
        float *q0 = r->q, *a0 = r->att;
        int32_t b0 = r->blk[0];
        r->q = s->q + t * Q;
        r->att = s->gate + t * Q;
        r->blk[0] = 0;
        attention(r, layer, 1, rs ? r->pos : pos0 + t, pool);
        r->q = q0;
        r->att = a0;
        r->blk[0] = b0;
    }
    memcpy(s->att, s->gate, (size_t)n * Q * sizeof *s->att);
}

static void attention(mg__dstate *s, uint32_t layer, uint32_t n, uint32_t pos0, mg__pool *pool) {
    const mg__dconfig *c = &s->d->c;
    const uint32_t G = c->n_heads / c->n_kv_heads;
    attn_job aj = {s, mg__vec(), layer, n, pos0, 0, 1, c->head_dim, c->n_heads * c->head_dim, G,
                   s->cap[layer], 0, 0, 0, (int)s->d->layers[layer].global,
                   (float)(1.0 / sqrt(c->query_pre_attn_scalar)), (float)c->attn_softcap};
    const mg__dattn *path = &s->attn;
    if (n < path->tile_min && n <= DEC_ROWS && path->grouped) {
        /* the keys any query sees, split in ranges of at least 128 */
        aj.klo = UINT64_MAX;
        for (uint32_t t = 0; t < n; t++) {
            qvis q = query_vis(&aj, t, aj.global);
            if (q.lo < aj.klo) aj.klo = q.lo;
            if (q.hi > aj.khi) aj.khi = q.hi;
        }
        const uint64_t span = aj.khi - aj.klo + 1;
        uint32_t want = (2 * mg__pool_size(pool) + c->n_kv_heads - 1) / c->n_kv_heads;
        if (want > DEC_SPLIT) want = DEC_SPLIT;
        if (want > span / 128) want = (uint32_t)(span / 128);
        if (path->splits) want = path->splits < span ? path->splits : (uint32_t)span;
        if (want > DEC_SPLIT) want = DEC_SPLIT;
        aj.n_split = want ? want : 1;
        mg__pool_run(pool, attn_group, &aj, c->n_kv_heads * aj.n_split);
        attn_merge(&aj);
        return;
    }
    if (n < path->tile_min) {
        mg__pool_run(pool, attn_rows, &aj, c->n_heads);
        return;
    }
    /* Split a group's heads while there are too few tasks for the pool. */
    const uint32_t want = 2 * mg__pool_size(pool);
    aj.n_tb = (n + ATT_QB - 1) / ATT_QB;
    while (aj.n_tb * c->n_kv_heads * aj.nsub < want && G % (2 * aj.nsub) == 0) aj.nsub *= 2;
    mg__pool_run(pool, attn_tiles, &aj, aj.n_tb * c->n_kv_heads * aj.nsub);
}

/* gate = gelu_tanh(gate) * up over the pool, in chunks of whole vectors. */
typedef struct geglu_job { float *gate; const float *up; uint64_t n; } geglu_job;

static void geglu_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const geglu_job *j = arg;
    uint64_t per = (j->n / n_tasks + 15) & ~(uint64_t)15;
    uint64_t a = (uint64_t)i * per, b = a + per < j->n ? a + per : j->n;
    if (a >= b) return;
    mg__gelu_tanh(j->gate + a, j->gate + a, b - a);
    for (uint64_t k = a; k < b; k++) j->gate[k] *= j->up[k];
}

/* ======================================================= forward */

/* The forward pass. rs NULL: n tokens of s's sequence. rs not NULL: one
 * token for each of the n states rs[t] (exact, text only), s lending only
 * its batch buffers. Arguments are checked by the callers. */
static mg_status forward(mg__dstate *s, mg__dstate *const *rs, const int32_t *tokens,
                         const float *const *embeds, const int32_t *block_ids, uint32_t n,
                         float *logits, int all_logits, mg__pool *pool) {
    const mg__decoder *d = s->d;
    const mg__dconfig *c = &d->c;
    const int exact = rs || s->exact;
    const uint32_t H = c->hidden, hd = c->head_dim, half = hd / 2;
    const uint32_t Q = c->n_heads * hd, KV = c->n_kv_heads * hd, FF = c->ffn;
    const float eps = (float)c->rms_norm_eps;
    const uint32_t pos0 = s->pos;

    /* Block ids and the first/last batch index of each token's block. */
    for (uint32_t t = 0; t < n; t++) {
        s->blk[t] = block_ids ? block_ids[t] : 0;
        s->bfirst[t] = s->blast[t] = (int32_t)t;
    }
    for (uint32_t t = 0; block_ids && t < n; t++) {
        if (s->blk[t] == 0 || s->bfirst[t] != (int32_t)t) continue;
        uint32_t last = t;
        for (uint32_t u = t + 1; u < n; u++)
            if (s->blk[u] == s->blk[t]) last = u;
        for (uint32_t u = t; u <= last; u++)
            if (s->blk[u] == s->blk[t]) {
                s->bfirst[u] = (int32_t)t;
                s->blast[u] = (int32_t)last;
            }
    }

    /* Embeddings. */
    for (uint32_t t = 0; t < n; t++) {
        float *x = s->x + (size_t)t * H;
        if (embeds && embeds[t]) {
            memcpy(x, embeds[t], (size_t)H * sizeof *x);
            continue;
        }
        if (d->embd.dt == MG__DTYPE_Q4_0X16) {
            mg__q4x16_dequant_rows(x, d->embd.w, H, tokens[t], 1);
        } else {
            const char *row = (const char *)d->embd.w +
                              (size_t)tokens[t] * d->embd_row_bytes;
            mg__dequantize(d->embd.dt, x, row, H);
        }
        for (uint32_t i = 0; i < H; i++) x[i] *= d->embd_scale;
    }
    rope_tables(s, rs, n);
    if (!rs && pos0 + n > s->hi) s->hi = pos0 + n;
    for (uint32_t t = 0; rs && t < n; t++)
        if (rs[t]->pos + 1 > rs[t]->hi) rs[t]->hi = rs[t]->pos + 1;

    for (uint32_t l = 0; l < c->n_layers; l++) {
        if (l && s->hook && s->hook(s->hook_user, l, c->n_layers, n))
            return MG_E_INTERRUPTED; /* pos unchanged: the rows written are past it */
        const mg__dlayer *L = &d->layers[l];
        for (uint32_t t = 0; t < n; t++)
            mg__rmsnorm(s->xn + (size_t)t * H, s->x + (size_t)t * H,
                        L->attn_norm, H, eps, 1);
        linear(s, exact, &L->q, Q, H, s->xn, n, s->q, pool);
        linear(s, exact, &L->k, KV, H, s->xn, n, s->k, pool);
        linear(s, exact, &L->v, KV, H, s->xn, n, s->v, pool);
        const float *cs = L->global ? s->cos_g : s->cos_l;
        const float *sn = L->global ? s->sin_g : s->sin_l;
        for (uint32_t t = 0; t < n; t++) {
            const float *ct = cs + (size_t)t * half, *st = sn + (size_t)t * half;
            for (uint32_t h = 0; h < c->n_heads; h++) {
                float *qh = s->q + (size_t)t * Q + (size_t)h * hd;
                mg__rmsnorm(qh, qh, L->q_norm, hd, eps, 1);
                rope_apply(qh, ct, st, half);
            }
            /* the row's keys and values go to its own state's cache */
            mg__dstate *r = rs ? rs[t] : s;
            const uint32_t cap = r->cap[l];
            const uint64_t pt = rs ? r->pos : pos0 + (uint64_t)t;
            uint32_t slot = (uint32_t)(pt % cap);
            for (uint32_t h = 0; h < c->n_kv_heads; h++) {
                float *kh = s->k + (size_t)t * KV + (size_t)h * hd;
                mg__rmsnorm(kh, kh, L->k_norm, hd, eps, 1);
                rope_apply(kh, ct, st, half);
                size_t dst = ((size_t)h * cap + slot) * hd;
                const float *vh = s->v + (size_t)t * KV + (size_t)h * hd;
                /* f32 as it is, or rounded to bf16 (nearest even) */
                const int32_t kdt = r->kv_bf16 ? MG_DTYPE_BF16 : MG_DTYPE_F32;
                const size_t at = dst * (r->kv_bf16 ? 2 : 4);
                mg__quantize(kdt, (char *)r->kc[l] + at, kh, hd);
                mg__quantize(kdt, (char *)r->vc[l] + at, vh, hd);
            }
        }
        if (rs || (s->exact && n > 1)) attention_exact(s, rs, l, n, pos0, pool);
        else attention(s, l, n, pos0, pool);
        linear(s, exact, &L->o, H, Q, s->att, n, s->tmp, pool);
        for (uint32_t t = 0; t < n; t++) {
            float *y = s->tmp + (size_t)t * H, *x = s->x + (size_t)t * H;
            mg__rmsnorm(y, y, L->post_attn_norm, H, eps, 1);
            for (uint32_t i = 0; i < H; i++) x[i] += y[i];
            mg__rmsnorm(s->xn + (size_t)t * H, x, L->ffn_norm, H, eps, 1);
        }
        linear(s, exact, &L->gate, FF, H, s->xn, n, s->gate, pool);
        linear(s, exact, &L->up, FF, H, s->xn, n, s->up, pool);
        geglu_job gj = {s->gate, s->up, (uint64_t)n * FF};
        mg__pool_run(pool, geglu_task, &gj, mg__pool_size(pool));
        linear(s, exact, &L->down, H, FF, s->gate, n, s->tmp, pool);
        for (uint32_t t = 0; t < n; t++) {
            float *y = s->tmp + (size_t)t * H, *x = s->x + (size_t)t * H;
            mg__rmsnorm(y, y, L->post_ffn_norm, H, eps, 1);
            for (uint32_t i = 0; i < H; i++) x[i] += y[i];
        }
    }

    if (s->hook && s->hook(s->hook_user, c->n_layers, c->n_layers, n)) return MG_E_INTERRUPTED;
    /* Final norm and the tied output projection. */
    uint32_t first = all_logits ? 0 : n - 1, rows = n - first;
    for (uint32_t t = first; t < n; t++)
        mg__rmsnorm(s->xn + (size_t)(t - first) * H, s->x + (size_t)t * H,
                    d->out_norm, H, eps, 1);
    /* A batch keeps to the matmul path even for its last row alone, so a
     * prefill's logits do not depend on 8-bit activation rounding. */
    if (n > 1 && exact)
        mg__matvec_multi_level(mg_simd_level(), d->embd.dt, d->embd.w, c->vocab, H, s->xn,
                               rows, logits, s->mvm_scratch, pool);
    else if (n > 1)
        mg__matmul(d->embd.dt, d->embd.w, c->vocab, H, s->xn, rows, logits,
                   s->mm_scratch, pool);
    else
        mg__matvec(d->embd.dt, d->embd.w, c->vocab, H, s->xn, logits, pool);
    if (c->final_softcap > 0) {
        float cap = (float)c->final_softcap;
        for (size_t i = 0; i < (size_t)rows * c->vocab; i++)
            logits[i] = cap * tanhf(logits[i] / cap);
    }
    if (rs)
        for (uint32_t t = 0; t < n; t++) rs[t]->pos++;
    else
        s->pos = pos0 + n;
    return MG_OK;
}

mg_status mg__decoder_forward(mg__dstate *s, const int32_t *tokens,
                              const float *const *embeds,
                              const int32_t *block_ids, uint32_t n,
                              float *logits, int all_logits, mg__pool *pool) {
    if (!s || !logits || n == 0 || n > s->max_batch ||
        mg__pool_size(pool) > s->n_workers)
        return MG_E_INVALID_ARG;
    const mg__dconfig *c = &s->d->c;
    for (uint32_t t = 0; t < n; t++) {
        if (embeds && embeds[t]) continue;
        if (!tokens || tokens[t] < 0 || (uint32_t)tokens[t] >= c->vocab)
            return MG_E_INVALID_ARG;
    }
    for (uint32_t t = 0; block_ids && t < n; t++)
        if (block_ids[t] < 0) return MG_E_INVALID_ARG;
    if ((uint64_t)s->pos + n > s->n_ctx) return MG_E_CONTEXT_FULL;
    return forward(s, NULL, tokens, embeds, block_ids, n, logits, all_logits, pool);
}

mg_status mg__decoder_forward_rows(mg__dstate *s, mg__dstate *const *rs, const int32_t *tokens,
                                   uint32_t n, float *logits, mg__pool *pool) {
    if (!s || !rs || !tokens || !logits || n == 0 || n > s->max_batch || !s->mvm_scratch ||
        mg__pool_size(pool) > s->n_workers)
        return MG_E_INVALID_ARG;
    const mg__dconfig *c = &s->d->c;
    if ((uint64_t)c->ffn < (uint64_t)c->n_heads * c->head_dim) return MG_E_UNSUPPORTED;
    for (uint32_t t = 0; t < n; t++) {
        const mg__dstate *r = rs[t];
        if (!r || r == s || r->d != s->d || mg__pool_size(pool) > r->n_workers ||
            tokens[t] < 0 || (uint32_t)tokens[t] >= c->vocab)
            return MG_E_INVALID_ARG;
        for (uint32_t u = 0; u < t; u++)
            if (rs[u] == r) return MG_E_INVALID_ARG;
        if (r->pos >= r->n_ctx) return MG_E_CONTEXT_FULL;
    }
    return forward(s, rs, tokens, NULL, NULL, n, logits, 1, pool);
}
