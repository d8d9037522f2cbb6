/* layers.c - transformer layers over rows of tokens (layers.h): dense
 * products, row kernels and unmasked multi-head attention on a pool.
 *
 * Two schedules, chosen by whether OpenBLAS runs its own threads: with
 * OpenBLAS single-threaded, dense products are split over the pool by
 * tokens and attention's (head, query block) items run in parallel on the
 * pool with 64-query blocks (64 x n floats of scores, 1 MiB at n = 4096,
 * about one core's L2); with OpenBLAS multi-threaded, each product is one
 * call on OpenBLAS's threads (or the pool, for the dtypes mg__matmul splits
 * itself), attention blocks of 256 queries run one after the other and the
 * softmax rows go to the pool. */
#include "kernels/layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define QBLOCK_POOL 32u  /* queries per block, items in parallel on the pool */
#define QBLOCK_BLAS 256u /* queries per block, threaded OpenBLAS */

static int blas_threaded(void) { return openblas_get_num_threads() > 1; }

/* ================================================================ dense */

size_t mg__dense_stride(size_t scratch_bytes) { return (scratch_bytes + 63) / 4; }

typedef struct dense_job {
    const mg__dense *m;
    const mg__dense_ws *ws;
    const float *X, *bias;
    float *Y;
    uint32_t n, parts;
    mg__pool *mpool; /* the pool for mg__matmul itself (one part only) */
} dense_job;

static void dense_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const dense_job *j = arg;
    (void)n_tasks;
    uint32_t per = (j->n + j->parts - 1) / j->parts;
    uint32_t a = i * per, b = a + per < j->n ? a + per : j->n;
    if (a >= b) return;
    const mg__dense *m = j->m;
    float *Y = j->Y + (size_t)a * m->out;
    mg__matmul(m->dt, m->w, m->out, m->in, j->X + (size_t)a * m->in, b - a, Y,
               j->ws->mm + (size_t)i * j->ws->stride, j->mpool);
    if (j->bias)
        for (uint32_t t = a; t < b; t++) {
            float *y = j->Y + (size_t)t * m->out;
            for (uint64_t r = 0; r < m->out; r++) y[r] += j->bias[r];
        }
}

void mg__dense_rows(const mg__dense *m, const float *X, uint32_t n, const float *bias,
                    float *Y, const mg__dense_ws *ws, mg__pool *pool) {
    uint32_t np = mg__pool_size(pool);
    if (np > ws->n_threads) np = ws->n_threads;
    if (np > 1 && !blas_threaded() && !mg__matmul_pooled(m->dt, m->in)) {
        dense_job j = {m, ws, X, bias, Y, n, np, NULL};
        mg__pool_run(pool, dense_task, &j, np);
    } else {
        dense_job j = {m, ws, X, NULL, Y, n, 1, pool};
        dense_task(&j, 0, 1);
        if (bias) mg__rows_op(pool, MG__ROWS_BIAS, Y, NULL, bias, NULL, n, (uint32_t)m->out, 0);
    }
}

void mg__dense_rows_ex(const mg__dense *m, const float *X, uint32_t n, const float *bias,
                       int acc, int act, float *Y, float *tmp, const mg__dense_ws *ws,
                       mg__pool *pool) {
    if (mg__matmul_fused(m->dt, m->w, m->out, m->in, X, n, Y, ws->mm, pool, bias, acc, act))
        return;
    mg__dense_rows(m, X, n, bias, acc ? tmp : Y, ws, pool);
    if (acc) mg__rows_op(pool, MG__ROWS_ADD, Y, tmp, NULL, NULL, n, (uint32_t)m->out, 0);
    if (act == MG__ACT_GELU)
        mg__rows_op(pool, MG__ROWS_GELU, Y, Y, NULL, NULL, n, (uint32_t)m->out, 0);
}

/* ================================================================ rows */

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
        if (j->op == MG__ROWS_BIAS) {
            for (uint32_t c = 0; c < j->width; c++) y[c] += j->w[c];
            continue;
        }
        const float *x = j->x + (size_t)t * j->width;
        if (j->op == MG__ROWS_LN) mg__layernorm(y, x, j->w, j->b, j->width, j->eps);
        else if (j->op == MG__ROWS_GELU) mg__gelu_tanh(y, x, j->width);
        else
            for (uint32_t c = 0; c < j->width; c++) y[c] += x[c];
    }
}

void mg__rows_op(mg__pool *pool, uint32_t op, float *y, const float *x, const float *w,
                 const float *b, uint32_t n, uint32_t width, float eps) {
    rows_job j = {y, x, w, b, n, width, op, eps};
    mg__pool_run(pool, rows_task, &j, mg__pool_size(pool));
}

/* ================================================================ attention */

/* The scratch, carved from one block (every part 64-byte aligned):
 *   scores  qrows x ls f32, then inv: n_threads x QBLOCK_BLAS f32
 *   bf16 only: kp (heads x packed k), vp (heads x packed v^T), and
 *   xb qrows x xw bf16 (a block's q, then its softmax numerators).
 * qrows = max(n_threads x QBLOCK_POOL, QBLOCK_BLAS). Rows of scores and
 * numerators are 64 bytes longer than n values, so that a micro tile's 8
 * rows do not all fall in one L1 set when n is a power of two. */
typedef struct mha_parts {
    uint64_t qrows, ls, xw, kw, vw; /* rows; row strides; packed words per head */
    uint64_t off[4], total;       /* scores+inv, kp, vp, xb */
} mha_parts;

static uint64_t up64(uint64_t b) { return (b + 63) & ~(uint64_t)63; }

static int mha_parts_of(const mg__mha *a, uint32_t nt, mha_parts *p) {
    memset(p, 0, sizeof *p);
    if (!nt) nt = 1;
    p->qrows = (uint64_t)nt * QBLOCK_POOL;
    if (p->qrows < QBLOCK_BLAS) p->qrows = QBLOCK_BLAS;
    p->ls = ((uint64_t)a->n + 15) / 16 * 16 + 16;
    p->xw = ((uint64_t)a->n + 31) / 32 * 32 + 32;
    if (p->xw < a->hd) p->xw = a->hd;
    int of = 0;
    uint64_t sz[4] = {0, 0, 0, 0}, t;
    of |= mg__mul_u64(p->qrows, p->ls, &t);
    of |= mg__add_u64(t, (uint64_t)nt * QBLOCK_BLAS, &t);
    of |= mg__mul_u64(t, 4, &sz[0]);
    if (a->bf16) {
        p->kw = mg__bf16_packed_words(a->n, a->hd);
        p->vw = mg__bf16_packed_words(a->hd, a->n);
        of |= mg__mul_u64(p->kw, (uint64_t)a->heads * 4, &sz[1]);
        of |= mg__mul_u64(p->vw, (uint64_t)a->heads * 4, &sz[2]);
        of |= mg__mul_u64(p->qrows, p->xw * 2, &sz[3]);
    }
    uint64_t acc = 0;
    for (int i = 0; i < 4; i++) {
        p->off[i] = acc;
        of |= sz[i] > UINT64_MAX - 64 || mg__add_u64(acc, up64(sz[i]), &acc);
    }
    p->total = acc;
    return of || acc > SIZE_MAX / 2 ? -1 : 0;
}

int mg__mha_bf16_ok(uint32_t n, uint32_t hd) {
    return n % 2 == 0 && hd % 2 == 0 && mg__matmul_pooled(MG_DTYPE_BF16, hd);
}

int mg__mha_scratch_bytes(const mg__mha *a, uint32_t n_threads, uint64_t *bytes) {
    mha_parts p;
    if (mha_parts_of(a, n_threads, &p)) return -1;
    *bytes = p.total;
    return 0;
}

typedef struct mha_job {
    const mg__mha *a;
    const float *q, *k, *v;
    float *out, *scores, *inv;
    uint32_t *kp, *vp;
    uint16_t *xb;
    uint64_t kw, vw, ls, xw;
    uint32_t qb, nqb, n_items, parts;
} mha_job;

static void to_bf16(uint16_t *dst, const float *src, uint64_t n, float scale) {
#if defined(MG_X86_AVX512) /* reached only where mg__mha_bf16_ok: AVX512_BF16 */
    mg__f32_to_bf16_avx512(dst, src, n, scale);
#else
    for (uint64_t i = 0; i < n; i++) dst[i] = mg__f32_to_bf16(scale * src[i]);
#endif
}

/* Packs k and v^T of heads i, i + n_tasks, ... */
static void pack_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const mha_job *j = arg;
    const mg__mha *a = j->a;
    const uint64_t D = (uint64_t)a->heads * a->hd;
    for (uint32_t h = i; h < a->heads; h += n_tasks) {
        mg__bf16_pack(j->kp + h * j->kw, j->k + (size_t)h * a->hd, D, 1, a->n, a->hd, 1.0f);
        mg__bf16_pack(j->vp + h * j->vw, j->v + (size_t)h * a->hd, 1, D, a->hd, a->n, 1.0f);
    }
}

/* Softmax numerators of rows [r0, r1) of sc (rows ls apart) in place,
 * inv[r] = 1 / sum; with xb, the numerators also rounded to bf16 there
 * (rows xw apart). */
typedef struct smax_job {
    float *sc, *inv;
    uint16_t *xb;
    uint64_t ls, xw;
    uint32_t rows, n;
} smax_job;

static void smax_rows(const smax_job *j, uint32_t r0, uint32_t r1) {
    for (uint32_t r = r0; r < r1; r++) {
        float *row = j->sc + (size_t)r * j->ls;
        j->inv[r] = 1.0f / mg__expsum_f32(row, mg__max_f32(row, j->n), j->n);
        if (j->xb) to_bf16(j->xb + (size_t)r * j->xw, row, j->n, 1.0f);
    }
}

static void smax_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const smax_job *j = arg;
    uint32_t per = (j->rows + n_tasks - 1) / n_tasks;
    uint32_t a = i * per, b = a + per < j->rows ? a + per : j->rows;
    if (a < b) smax_rows(j, a, b);
}

/* One (head, query block) item with its own sc / inv / xb; pool: the
 * products and softmax rows on the pool (NULL: inline). */
static void mha_item(const mha_job *j, uint32_t item, float *sc, float *inv, uint16_t *xb,
                     mg__pool *pool) {
    const mg__mha *a = j->a;
    const uint32_t N = a->n, hd = a->hd, D = a->heads * a->hd;
    uint32_t h = item / j->nqb, q0 = (item % j->nqb) * j->qb;
    uint32_t nq = N - q0 < j->qb ? N - q0 : j->qb;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *q = j->q + (size_t)q0 * D + (size_t)h * hd;
    float *o = j->out + (size_t)q0 * D + (size_t)h * hd;
    smax_job sj = {sc, inv, a->bf16 ? xb : NULL, j->ls, j->xw, nq, N};
    if (a->bf16) { /* S = bf16(scale q) bf16(k)^T; O = bf16(P) bf16(v) */
        for (uint32_t r = 0; r < nq; r++) to_bf16(xb + (size_t)r * hd, q + (size_t)r * D, hd, scale);
        mg__gemm_bf16_packed(j->kp + h * j->kw, N, hd, xb, hd, nq, sc, j->ls, pool);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)N, (int)hd, scale,
                    q, (int)D, j->k + (size_t)h * hd, (int)D, 0.0f, sc, (int)j->ls);
    }
    if (pool) mg__pool_run(pool, smax_task, &sj, mg__pool_size(pool));
    else smax_rows(&sj, 0, nq);
    if (a->bf16)
        mg__gemm_bf16_packed(j->vp + h * j->vw, hd, N, xb, j->xw, nq, o, D, pool);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)hd, (int)N, 1.0f,
                    sc, (int)j->ls, j->v + (size_t)h * hd, (int)D, 0.0f, o, (int)D);
    for (uint32_t r = 0; r < nq; r++)
        for (uint32_t c = 0; c < hd; c++) o[(size_t)r * D + c] *= inv[r];
}

static void mha_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const mha_job *j = arg;
    (void)n_tasks;
    float *sc = j->scores + (size_t)i * QBLOCK_POOL * j->ls;
    float *inv = j->inv + (size_t)i * QBLOCK_BLAS;
    uint16_t *xb = j->xb ? j->xb + (size_t)i * QBLOCK_POOL * j->xw : NULL;
    for (uint32_t it = i; it < j->n_items; it += j->parts) mha_item(j, it, sc, inv, xb, NULL);
}

void mg__mha_run(const mg__mha *a, const float *q, const float *k, const float *v,
                 float *out, void *scratch, uint32_t n_threads, mg__pool *pool) {
    mha_parts p;
    if (!a->n || !a->heads || !a->hd || mha_parts_of(a, n_threads, &p)) return;
    uint32_t np = mg__pool_size(pool);
    if (np > n_threads) np = n_threads;
    char *base = scratch;
    mha_job j;
    memset(&j, 0, sizeof j);
    j.a = a;
    j.q = q;
    j.k = k;
    j.v = v;
    j.out = out;
    j.scores = (float *)(base + p.off[0]);
    j.inv = j.scores + p.qrows * p.ls;
    j.ls = p.ls;
    j.xw = p.xw;
    if (a->bf16) {
        j.kp = (uint32_t *)(base + p.off[1]);
        j.vp = (uint32_t *)(base + p.off[2]);
        j.xb = (uint16_t *)(base + p.off[3]);
        j.kw = p.kw;
        j.vw = p.vw;
        uint32_t nt = np < a->heads ? np : a->heads;
        mg__pool_run(nt > 1 ? pool : NULL, pack_task, &j, nt);
    }
    int bt = blas_threaded(), par = np > 1 && !bt;
    j.qb = bt ? QBLOCK_BLAS : QBLOCK_POOL;
    j.nqb = (a->n + j.qb - 1) / j.qb;
    j.n_items = j.nqb * a->heads;
    if (par) {
        j.parts = np;
        mg__pool_run(pool, mha_task, &j, np);
    } else {
        for (uint32_t it = 0; it < j.n_items; it++)
            mha_item(&j, it, j.scores, j.inv, j.xb, np > 1 ? pool : NULL);
    }
}
