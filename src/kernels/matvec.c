/* matvec.c - decode matrix-vector product: scalar references, the scalar
 * row kernels, SIMD dispatch and the split of rows over the pool.
 *
 * f32/f16/bf16 rows are dotted with x in f32 (FMA in the SIMD kernels).
 * q8_0/q4_0 rows use integer dot products: x is quantized once per call (per
 * column chunk) to 8 bits per 32-element block, into a buffer on the
 * caller's stack, and each block contributes d_w * d_x * sum(w_q * x_q). */
#include "kernels/kernels.h"

#if defined(MG_X86_AVX512)
#include <cpuid.h>
#endif
#include <math.h>
#include <pthread.h>
#include <string.h>

/* ---- references --------------------------------------------------------- */

/* Element c of row r, dequantized. */
static float ref_elem(int32_t dtype, const void *W, uint64_t cols, uint64_t r,
                      uint64_t c) {
    switch (dtype) {
    case MG_DTYPE_F32: return ((const float *)W)[r * cols + c];
    case MG_DTYPE_F16: return mg__f16_to_f32(((const uint16_t *)W)[r * cols + c]);
    case MG_DTYPE_BF16:
        return mg__bf16_to_f32(((const uint16_t *)W)[r * cols + c]);
    case MG_DTYPE_Q8_0: {
        const mg__block_q8_0 *b =
            (const mg__block_q8_0 *)W + r * (cols / MG__QK) + c / MG__QK;
        return mg__f16_to_f32(b->d) * (float)b->qs[c % MG__QK];
    }
    case MG_DTYPE_Q4_0: {
        const mg__block_q4_0 *b =
            (const mg__block_q4_0 *)W + r * (cols / MG__QK) + c / MG__QK;
        unsigned j = (unsigned)(c % MG__QK);
        int nib = j < 16 ? (b->qs[j] & 0x0f) : (b->qs[j - 16] >> 4);
        return mg__f16_to_f32(b->d) * (float)(nib - 8);
    }
    case MG__DTYPE_Q4_0X16: return mg__q4x16_elem(W, cols, r, c);
    default: return 0.0f;
    }
}

void mg__matvec_ref(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                    const float *x, float *y) {
    if (dtype == MG__DTYPE_Q4_0X16 && !mg__q4x16_fits(rows, cols)) return;
    for (uint64_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (uint64_t c = 0; c < cols; c++)
            s += (double)ref_elem(dtype, W, cols, r, c) * (double)x[c];
        y[r] = (float)s;
    }
}

void mg__matmul_ref(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                    const float *X, uint64_t n, float *Y) {
    for (uint64_t t = 0; t < n; t++)
        mg__matvec_ref(dtype, W, rows, cols, X + t * cols, Y + t * rows);
}

/* ---- activation quantization (scalar) ------------------------------------ */

void mg__quantize_x8(const float *x, uint64_t n, int8_t *q, float *d,
                     int32_t *s8) {
    for (uint64_t b = 0; b < n / MG__QK; b++) {
        const float *xb = x + b * MG__QK;
        float amax = 0.0f;
        for (int j = 0; j < MG__QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float db = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < MG__QK; j++) {
            float v = nearbyintf(xb[j] * id); /* ties to even, as cvtps */
            if (!(v == v)) v = 0.0f;
            v = fminf(fmaxf(v, -127.0f), 127.0f);
            q[b * MG__QK + j] = (int8_t)v;
            s += (int32_t)v;
        }
        d[b] = db;
        s8[b] = 8 * s;
    }
}

/* ---- scalar row kernels -------------------------------------------------- */

static void rows_f32(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                     const void *xv, float *y, int acc) {
    const float *x = xv;
    for (uint64_t r = 0; r < nrows; r++) {
        const float *w = (const float *)((const char *)W + r * rb);
        float s[4] = {0, 0, 0, 0};
        uint64_t c = 0;
        for (; c + 4 <= cols; c += 4)
            for (int k = 0; k < 4; k++) s[k] += w[c + k] * x[c + k];
        for (; c < cols; c++) s[0] += w[c] * x[c];
        float t = (s[0] + s[1]) + (s[2] + s[3]);
        y[r] = acc ? y[r] + t : t;
    }
}

static void rows_f16(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                     const void *xv, float *y, int acc) {
    const float *x = xv;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint16_t *w = (const uint16_t *)((const char *)W + r * rb);
        float s[4] = {0, 0, 0, 0};
        uint64_t c = 0;
        for (; c + 4 <= cols; c += 4)
            for (int k = 0; k < 4; k++) s[k] += mg__f16_to_f32(w[c + k]) * x[c + k];
        for (; c < cols; c++) s[0] += mg__f16_to_f32(w[c]) * x[c];
        float t = (s[0] + s[1]) + (s[2] + s[3]);
        y[r] = acc ? y[r] + t : t;
    }
}

static void rows_bf16(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    const float *x = xv;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint16_t *w = (const uint16_t *)((const char *)W + r * rb);
        float s[4] = {0, 0, 0, 0};
        uint64_t c = 0;
        for (; c + 4 <= cols; c += 4)
            for (int k = 0; k < 4; k++) s[k] += mg__bf16_to_f32(w[c + k]) * x[c + k];
        for (; c < cols; c++) s[0] += mg__bf16_to_f32(w[c]) * x[c];
        float t = (s[0] + s[1]) + (s[2] + s[3]);
        y[r] = acc ? y[r] + t : t;
    }
}

static void rows_q8_0(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    const mg__xq8 *xq = xv;
    uint64_t nb = cols / MG__QK;
    for (uint64_t r = 0; r < nrows; r++) {
        const mg__block_q8_0 *b =
            (const mg__block_q8_0 *)((const char *)W + r * rb);
        float s = 0.0f;
        for (uint64_t i = 0; i < nb; i++) {
            const int8_t *xqb = xq->q + i * MG__QK;
            int32_t d = 0;
            for (int j = 0; j < MG__QK; j++) d += (int32_t)b[i].qs[j] * xqb[j];
            s += mg__f16_to_f32(b[i].d) * xq->d[i] * (float)d;
        }
        y[r] = acc ? y[r] + s : s;
    }
}

static void rows_q4_0(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    const mg__xq8 *xq = xv;
    uint64_t nb = cols / MG__QK;
    for (uint64_t r = 0; r < nrows; r++) {
        const mg__block_q4_0 *b =
            (const mg__block_q4_0 *)((const char *)W + r * rb);
        float s = 0.0f;
        for (uint64_t i = 0; i < nb; i++) {
            const int8_t *xqb = xq->q + i * MG__QK;
            int32_t d = 0;
            for (int j = 0; j < MG__QK / 2; j++)
                d += (int32_t)(b[i].qs[j] & 0x0f) * xqb[j] +
                     (int32_t)(b[i].qs[j] >> 4) * xqb[j + MG__QK / 2];
            d -= xq->s8[i];
            s += mg__f16_to_f32(b[i].d) * xq->d[i] * (float)d;
        }
        y[r] = acc ? y[r] + s : s;
    }
}

static const mg__rows_fn rows_scalar[5] = {rows_f32, rows_f16, rows_bf16,
                                           rows_q8_0, rows_q4_0};

/* ---- CPU facts, read once ------------------------------------------------- */

static int32_t g_cpu_level;
static int g_cpu_vnni, g_cpu_vbmi, g_cpu_bf16;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

static void cpu_init(void) {
    g_cpu_level = mg__cpu_simd_level();
#if defined(MG_X86_AVX512)
    if (g_cpu_level >= MG_SIMD_AVX512 && __get_cpuid_max(0, NULL) >= 7) {
        unsigned a, b, c, d;
        __cpuid_count(7, 0, a, b, c, d);
        g_cpu_vnni = (c >> 11) & 1; /* AVX512_VNNI */
        g_cpu_vbmi = (c >> 1) & 1;  /* AVX512_VBMI */
        if (a >= 1) {               /* leaf 7 has sub-leaf 1 */
            __cpuid_count(7, 1, a, b, c, d);
            g_cpu_bf16 = (a >> 5) & 1; /* AVX512_BF16 */
        }
    }
#endif
}

static int32_t clamp_level(int32_t level) {
    pthread_once(&g_cpu_once, cpu_init);
    if (level > g_cpu_level) level = g_cpu_level;
    return level < MG_SIMD_SCALAR ? MG_SIMD_SCALAR : level;
}

int32_t mg__kernel_level(int32_t level) { return clamp_level(level); }

int mg__cpu_vnni(void) {
    pthread_once(&g_cpu_once, cpu_init);
    return g_cpu_vnni;
}

int mg__cpu_bf16(void) {
    pthread_once(&g_cpu_once, cpu_init);
    return g_cpu_bf16;
}

int mg__cpu_vbmi(void) {
    pthread_once(&g_cpu_once, cpu_init);
    return g_cpu_vbmi;
}

static mg__rows_fn pick_rows(int32_t level, int32_t dtype) {
#if defined(MG_X86_AVX512)
    if (level >= MG_SIMD_AVX512) {
        if (g_cpu_vnni && g_cpu_vbmi && mg__rows_avx512vbmi[dtype])
            return mg__rows_avx512vbmi[dtype];
        if (g_cpu_vnni && mg__rows_avx512vnni[dtype]) return mg__rows_avx512vnni[dtype];
        return mg__rows_avx512[dtype];
    }
#endif
#if defined(MG_X86_AVX2)
    if (level >= MG_SIMD_AVX2) return mg__rows_avx2[dtype];
#endif
    (void)level;
    return rows_scalar[dtype];
}

static void quantize_x8_level(int32_t level, const float *x, uint64_t n,
                              int8_t *q, float *d, int32_t *s8) {
#if defined(MG_X86_AVX512)
    if (level >= MG_SIMD_AVX512) {
        mg__quantize_x8_avx512(x, n, q, d, s8);
        return;
    }
#endif
#if defined(MG_X86_AVX2)
    if (level >= MG_SIMD_AVX2) {
        mg__quantize_x8_avx2(x, n, q, d, s8);
        return;
    }
#endif
    (void)level;
    mg__quantize_x8(x, n, q, d, s8);
}

/* The q4x16 row kernel: AVX512-VNNI where there is one. */
static mg__rows_fn pick_q4x16(int32_t level) {
#if defined(MG_X86_AVX512)
    if (level >= MG_SIMD_AVX512 && mg__cpu_vnni()) return mg__rows_q4x16_vnni;
#endif
    (void)level;
    return mg__rows_q4x16_scalar;
}

/* ---- dispatch and pool split -------------------------------------------- */

/* Column chunk of x quantized at a time on the stack (about 19 KiB): wide
 * enough for MedGemma 4B's FFN down projection (10240 columns) in one pass.
 * A narrower chunk reads such rows in pieces, which measured three times
 * slower from DRAM (bench/matvec, 2560x10240). */
#define XCHUNK 16384u
/* Below this many weight bytes a matvec runs on the caller's thread only. */
#define MIN_SPLIT_BYTES (64u * 1024u)

/* The most vectors mg__matvec_multi takes at once. */
#define MV_MAX_VECS 8u
/* Rows a multi-vector task works through for all vectors before moving on
 * (then read from L2 for every vector but the first): about 128 KiB. */
#define MV_BLOCK_BYTES (128u * 1024u)

typedef struct {
    mg__rows_fn fn;
    const char *W;
    size_t row_bytes;
    uint64_t rows, cols;
    const void *xv;
    float *y;
    int acc;
    uint32_t gran; /* row ranges start at multiples of this */
    /* several vectors (nv > 1): xvs[v] and ys[v] instead of xv and y */
    uint32_t nv;
    const void *xvs[MV_MAX_VECS];
    float *ys[MV_MAX_VECS];
} mv_job;

static void mv_rows(const mv_job *j, uint64_t r0, uint64_t r1) {
    if (j->nv <= 1) {
        j->fn(j->W + r0 * j->row_bytes, j->row_bytes, r1 - r0, j->cols, j->xv, j->y + r0,
              j->acc);
        return;
    }
    /* Blocks of rows, each for every vector: each row is computed by the
     * same kernel call as a single-vector product would make. */
    uint64_t blk = MV_BLOCK_BYTES / j->row_bytes;
    blk = blk < j->gran ? j->gran : blk / j->gran * j->gran;
    for (uint64_t a = r0; a < r1; a += blk) {
        uint64_t b = a + blk < r1 ? a + blk : r1;
        for (uint32_t v = 0; v < j->nv; v++)
            j->fn(j->W + a * j->row_bytes, j->row_bytes, b - a, j->cols, j->xvs[v],
                  j->ys[v] + a, j->acc);
    }
}

static void mv_task(void *arg, uint32_t i, uint32_t n) {
    const mv_job *j = arg;
    /* Contiguous row ranges, boundaries on multiples of gran rows. */
    uint64_t q = (j->rows + j->gran - 1) / j->gran;
    uint64_t r0 = q * i / n * j->gran, r1 = q * (i + 1) / n * j->gran;
    if (r1 > j->rows) r1 = j->rows;
    if (r0 >= r1) return;
    mv_rows(j, r0, r1);
}

static void run_job(mv_job *j, mg__pool *pool) {
    uint32_t nt = mg__pool_size(pool);
    uint64_t bytes = j->rows * (uint64_t)j->row_bytes;
    if (nt <= 1 || j->rows < 8 || bytes < MIN_SPLIT_BYTES) {
        mv_rows(j, 0, j->rows);
        return;
    }
    /* Several tasks per thread, taken from the pool's shared counter, so a
     * thread that falls behind (another process, a page fault) does not
     * leave the others waiting at the end. */
    uint64_t tasks = (uint64_t)nt * 8;
    if (tasks > j->rows / j->gran) tasks = j->rows / j->gran;
    mg__pool_run(pool, mv_task, j, (uint32_t)tasks);
}

void mg__matvec_level(int32_t level, int32_t dtype, const void *W,
                      uint64_t rows, uint64_t cols, const float *x, float *y,
                      mg__pool *pool) {
    int ok;
    const int x16 = dtype == MG__DTYPE_Q4_0X16;
    uint64_t row_bytes = mg__dtype_bytes(x16 ? MG_DTYPE_Q4_0 : dtype, cols, &ok);
    if (!ok || !W || !x || !y || rows == 0) return;
    if (cols == 0) {
        memset(y, 0, (size_t)rows * sizeof(float));
        return;
    }
    level = clamp_level(level);
    if (x16) {
        /* Interleaved q4_0: whole rows at once (cols <= the chunk). */
        if (!mg__q4x16_fits(rows, cols)) return;
        int8_t xq[MG__Q4X16_MAX_COLS] __attribute__((aligned(64)));
        float xd[MG__Q4X16_MAX_COLS / MG__QK];
        int32_t xs[MG__Q4X16_MAX_COLS / MG__QK];
        quantize_x8_level(level, x, cols, xq, xd, xs);
        mg__xq8 xq8 = {xq, xd, xs};
        mv_job j = {pick_q4x16(level), W, (size_t)row_bytes, rows, cols, &xq8, y, 0, 16, 0, {0}, {0}};
        run_job(&j, pool);
        return;
    }
    mv_job j = {pick_rows(level, dtype), W, (size_t)row_bytes, rows, cols, x,
                y, 0, 4, 0, {0}, {0}};
    if (dtype != MG_DTYPE_Q8_0 && dtype != MG_DTYPE_Q4_0) {
        run_job(&j, pool);
        return;
    }
    /* Quantized rows: x to 8 bits, a column chunk at a time. */
    int8_t xq[XCHUNK] __attribute__((aligned(64)));
    float xd[XCHUNK / MG__QK];
    int32_t xs[XCHUNK / MG__QK];
    uint64_t nb = cols / MG__QK, per = XCHUNK / MG__QK;
    uint64_t nchunks = (nb + per - 1) / per, bpc = (nb + nchunks - 1) / nchunks;
    uint32_t bb = mg__dtype_block_bytes(dtype);
    for (uint64_t b0 = 0; b0 < nb; b0 += bpc) {
        uint64_t cb = nb - b0 < bpc ? nb - b0 : bpc;
        quantize_x8_level(level, x + b0 * MG__QK, cb * MG__QK, xq, xd, xs);
        mg__xq8 xq8 = {xq, xd, xs};
        j.W = (const char *)W + b0 * bb;
        j.cols = cb * MG__QK;
        j.xv = &xq8;
        j.acc = b0 > 0;
        run_job(&j, pool);
    }
}

size_t mg__matvec_multi_scratch(uint64_t n) {
    uint64_t per = (uint64_t)XCHUNK + (XCHUNK / MG__QK) * (sizeof(float) + sizeof(int32_t));
    return (size_t)((n < MV_MAX_VECS ? n : MV_MAX_VECS) * ((per + 63) & ~(uint64_t)63));
}

void mg__matvec_multi_level(int32_t level, int32_t dtype, const void *W, uint64_t rows,
                            uint64_t cols, const float *X, uint64_t n, float *Y,
                            void *scratch, mg__pool *pool) {
    int ok;
    const int x16 = dtype == MG__DTYPE_Q4_0X16;
    uint64_t row_bytes = mg__dtype_bytes(x16 ? MG_DTYPE_Q4_0 : dtype, cols, &ok);
    if (n > MV_MAX_VECS || n <= 1) { /* one vector at a time */
        for (uint64_t v = 0; v < n; v++)
            mg__matvec_level(level, dtype, W, rows, cols, X + v * cols, Y + v * rows, pool);
        return;
    }
    if (!ok || !W || !X || !Y || !scratch || rows == 0) return;
    if (cols == 0) {
        memset(Y, 0, (size_t)(n * rows) * sizeof(float));
        return;
    }
    level = clamp_level(level);
    const int quant = x16 || dtype == MG_DTYPE_Q8_0 || dtype == MG_DTYPE_Q4_0;
    if (x16 && !mg__q4x16_fits(rows, cols)) return;
    mv_job j = {x16 ? pick_q4x16(level) : pick_rows(level, dtype),
                W, (size_t)row_bytes, rows, cols, NULL, NULL, 0, x16 ? 16 : 4, (uint32_t)n,
                {0}, {0}};
    for (uint64_t v = 0; v < n; v++) j.ys[v] = Y + v * rows;
    if (!quant) {
        for (uint64_t v = 0; v < n; v++) j.xvs[v] = X + v * cols;
        run_job(&j, pool);
        return;
    }
    /* Each vector quantized as mg__matvec_level quantizes it: the same
     * column chunks (one for q4x16), the same 8-bit blocks. */
    const size_t per = mg__matvec_multi_scratch(1);
    mg__xq8 xq8[MV_MAX_VECS];
    uint64_t nb = cols / MG__QK, pc = XCHUNK / MG__QK;
    uint64_t nchunks = x16 ? 1 : (nb + pc - 1) / pc, bpc = (nb + nchunks - 1) / nchunks;
    uint32_t bb = x16 ? 0 : mg__dtype_block_bytes(dtype);
    for (uint64_t b0 = 0; b0 < nb; b0 += bpc) {
        uint64_t cb = nb - b0 < bpc ? nb - b0 : bpc;
        for (uint64_t v = 0; v < n; v++) {
            char *sc = (char *)scratch + v * per;
            int8_t *q = (int8_t *)sc;
            float *d = (float *)(sc + XCHUNK);
            int32_t *s8 = (int32_t *)(sc + XCHUNK + (XCHUNK / MG__QK) * sizeof(float));
            quantize_x8_level(level, X + v * cols + b0 * MG__QK, cb * MG__QK, q, d, s8);
            xq8[v] = (mg__xq8){q, d, s8};
            j.xvs[v] = &xq8[v];
        }
        j.W = (const char *)W + b0 * bb;
        j.cols = cb * MG__QK;
        j.acc = b0 > 0;
        run_job(&j, pool);
    }
}

void mg__matvec(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                const float *x, float *y, mg__pool *pool) {
    mg__matvec_level(mg_simd_level(), dtype, W, rows, cols, x, y, pool);
}

void mg__dequant_row(int32_t dtype, float *dst, const void *src, uint64_t n) {
    mg__dequant_row_level(mg_simd_level(), dtype, dst, src, n);
}

void mg__dequant_row_level(int32_t level, int32_t dtype, float *dst,
                           const void *src, uint64_t n) {
    level = clamp_level(level);
#if defined(MG_X86_AVX512)
    if (level >= MG_SIMD_AVX512) {
        mg__dequant_row_avx512(dtype, dst, src, n);
        return;
    }
#endif
#if defined(MG_X86_AVX2)
    if (level >= MG_SIMD_AVX2) {
        mg__dequant_row_avx2(dtype, dst, src, n);
        return;
    }
#endif
    mg__dequantize_ref_row(dtype, dst, src, n);
}
