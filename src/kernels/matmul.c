/* matmul.c - prefill matrix product Y = X W^T.
 * q8_0/q4_0 weights on a CPU with AVX512-VNNI: integer products
 * (matmul_avx512.c) with X quantized into the caller's scratch, weight
 * panels split over the pool. bf16 weights on a CPU with AVX512_BF16: the
 * same with X rounded to bf16 and vdpbf16ps (f32 sums). Otherwise through
 * cblas_sgemm: f32 weights go straight to it; other dtypes are dequantized
 * a tile of rows at a time into the caller's scratch (SIMD row
 * dequantization) and each tile is one sgemm call writing a column block
 * of Y. The two AVX-512 paths exist in x86-64 builds only (MG_X86_AVX512). */
#include "kernels/kernels.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* Rows per dequantized tile: about 8 MiB of f32, between 64 and 1024 rows,
 * a multiple of 16. Big tiles matter: sgemm repacks X for every call, so
 * few wide calls beat many narrow ones (measured: 256-row tiles ran at 0.8x
 * of f32 sgemm, 816-row tiles at 0.9-1.2x; see docs/PERFORMANCE.md). */
static uint64_t tile_rows(uint64_t cols) {
    uint64_t t = cols ? (2u << 20) / cols : 256;
    t &= ~(uint64_t)15;
    if (t < 64) t = 64;
    if (t > 1024) t = 1024;
    return t;
}

size_t mg__matmul_scratch_size(int32_t dtype, uint64_t cols) {
    uint64_t bytes;
    if (dtype == MG__DTYPE_Q4_0X16) dtype = MG_DTYPE_Q4_0;
    if (dtype == MG_DTYPE_F32 || !mg__dtype_block_elems(dtype)) return 0;
    if (mg__mul_u64(tile_rows(cols), cols, &bytes) ||
        mg__mul_u64(bytes, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return 0;
    return (size_t)bytes;
}

/* Rows of up to 2^26 columns: the repack's gathers address 16 rows with
 * 32-bit offsets. */
static int q8_path(int32_t level, int32_t dtype, uint64_t cols) {
#if !defined(MG_X86_AVX512)
    (void)level, (void)dtype, (void)cols;
    return 0;
#else
    return (dtype == MG_DTYPE_Q8_0 || dtype == MG_DTYPE_Q4_0 || dtype == MG__DTYPE_Q4_0X16) &&
           cols <= (1u << 26) &&
           mg__kernel_level(level) >= MG_SIMD_AVX512 && mg__cpu_vnni();
#endif
}

static int bf16_path(int32_t level, int32_t dtype, uint64_t cols) {
#if !defined(MG_X86_AVX512)
    (void)level, (void)dtype, (void)cols;
    return 0;
#else
    return dtype == MG_DTYPE_BF16 && cols % 2 == 0 &&
           mg__kernel_level(level) >= MG_SIMD_AVX512 && mg__cpu_bf16();
#endif
}

int mg__matmul_pooled(int32_t dtype, uint64_t cols) {
    return q8_path(mg_simd_level(), dtype, cols) || bf16_path(mg_simd_level(), dtype, cols);
}

/* The packed bf16 product in plain C (builds and CPUs without AVX512_BF16,
 * valgrind), in the order the tiles add. */
static uint16_t packed_at(const uint32_t *Wp, uint64_t cols, uint64_t r, uint64_t c) {
    uint64_t p = r / MG__GEMM_PR, g = r % MG__GEMM_PR / 16, j = r % 16;
    uint32_t w = Wp[((p * (cols / 2) + c / 2) * 2 + g) * 16 + j];
    return (uint16_t)(c % 2 ? w >> 16 : w & 0xffff);
}

static void gemm_packed_plain(const uint32_t *Wp, uint64_t rows, uint64_t cols,
                              const uint16_t *xb, uint64_t ldx, uint64_t n, float *Y,
                              uint64_t ldy) {
    for (uint64_t t = 0; t < n; t++)
        for (uint64_t r = 0; r < rows; r++) {
            float s = 0.0f;
            for (uint64_t c = 0; c < cols; c++)
                s += mg__bf16_to_f32(packed_at(Wp, cols, r, c)) *
                     mg__bf16_to_f32(xb[t * ldx + c]);
            Y[t * ldy + r] = s;
        }
}

#if defined(MG_X86_AVX512)
/* ---- the integer path (AVX512-VNNI) --------------------------------------- */

typedef struct {
    mg__q8_gemm g;
    const float *X;
    uint64_t panels;
} q8_job;

static void q8_quant_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const q8_job *j = arg;
    uint64_t nb = j->g.cols / MG__QK;
    uint64_t t0 = j->g.n * i / n_tasks, t1 = j->g.n * (i + 1) / n_tasks;
    for (uint64_t t = t0; t < t1; t++)
        mg__quantize_x8_avx512(j->X + t * j->g.cols, j->g.cols,
                               (int8_t *)j->g.xq + t * j->g.cols,
                               (float *)j->g.xd + t * nb, (int32_t *)j->g.xs + t * nb);
    /* The kernel starts each block's sums at minus the weight offset times
     * the block's activation sum: s8 (8 * sum q) times offset / 8, which is
     * 16 for q8_0 (w + 128) and 1 for q4_0 (w + 8). */
    int32_t off8 = j->g.dtype == MG_DTYPE_Q8_0 ? 16 : 1; /* q4_0 in either layout: 1 */
    int32_t *xs = (int32_t *)j->g.xs;
    for (uint64_t k = t0 * nb; k < t1 * nb; k++) xs[k] = -xs[k] * off8;
}

static void q8_gemm_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const q8_job *j = arg;
    uint64_t p0 = j->panels * i / n_tasks, p1 = j->panels * (i + 1) / n_tasks;
    if (p0 < p1) mg__matmul_q8_panels_vnni(&j->g, p0, p1);
}

/* X rows quantized per pass: what the scratch holds (xq, then xd and xs),
 * at least 64 rows since the scratch holds 64 rows of f32. */
static void matmul_q8(int32_t dtype, const void *W, uint64_t row_bytes,
                      uint64_t rows, uint64_t cols, const float *X, uint64_t n,
                      float *Y, float *scratch, mg__pool *pool) {
    uint64_t nb = cols / MG__QK;
    uint64_t per_row = cols + nb * (sizeof(float) + sizeof(int32_t));
    uint64_t mc = mg__matmul_scratch_size(dtype, cols) / per_row;
    if (mc == 0) mc = 1; /* not reached: the scratch holds 64 rows of f32 */
    uint32_t nt = mg__pool_size(pool);
    q8_job j;
    j.g.dtype = dtype;
    j.g.W = W;
    j.g.row_bytes = (size_t)row_bytes;
    j.g.rows = rows;
    j.g.cols = cols;
    j.g.ldy = rows;
    j.panels = (rows + MG__GEMM_PR - 1) / MG__GEMM_PR;
    for (uint64_t t0 = 0; t0 < n; t0 += mc) {
        uint64_t m = n - t0 < mc ? n - t0 : mc;
        j.g.n = m;
        j.g.xq = (const int8_t *)scratch;
        j.g.xd = (const float *)((char *)scratch + m * cols);
        j.g.xs = (const int32_t *)(j.g.xd + m * nb);
        j.g.Y = Y + t0 * rows;
        j.X = X + t0 * cols;
        uint32_t qt = m < nt ? (uint32_t)m : nt;
        mg__pool_run(qt > 1 ? pool : NULL, q8_quant_task, &j, qt);
        /* Several panels' worth of tasks per thread: the pool hands them to
         * whichever thread is free. */
        uint64_t tasks = (uint64_t)nt * 4;
        if (tasks > j.panels) tasks = j.panels;
        mg__pool_run(tasks > 1 ? pool : NULL, q8_gemm_task, &j, (uint32_t)tasks);
    }
}

/* ---- the bf16 path (AVX512_BF16) ------------------------------------------ */

typedef struct {
    mg__bf16_gemm g;
    const float *X;
    uint64_t ldx, panels, pparts, mparts;
    float scale;
} bf16_job;

static void bf16_conv_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const bf16_job *j = arg;
    uint64_t t0 = j->g.n * i / n_tasks, t1 = j->g.n * (i + 1) / n_tasks;
    for (uint64_t t = t0; t < t1; t++)
        mg__f32_to_bf16_avx512((uint16_t *)j->g.xb + t * j->g.cols, j->X + t * j->ldx,
                               j->g.cols, j->scale);
}

/* Task i: panel part i / mparts, X row part i % mparts. */
static void bf16_gemm_task(void *arg, uint32_t i, uint32_t n_tasks) {
    const bf16_job *j = arg;
    (void)n_tasks;
    uint64_t pi = i / j->mparts, mi = i % j->mparts;
    uint64_t p0 = j->panels * pi / j->pparts, p1 = j->panels * (pi + 1) / j->pparts;
    uint64_t t0 = j->g.n * mi / j->mparts, t1 = j->g.n * (mi + 1) / j->mparts;
    if (p0 >= p1 || t0 >= t1) return;
    mg__bf16_gemm g = j->g;
    g.n = t1 - t0;
    g.xb += t0 * (g.ldx ? g.ldx : g.cols);
    g.Y += t0 * g.ldy;
    mg__matmul_bf16_panels(&g, p0, p1);
}

/* The products of j->g over the pool: several tasks per thread, over
 * panels, and also over rows of X where there are few panels (attention's
 * 72-row products: 3 panels). */
static void bf16_run(bf16_job *j, mg__pool *pool) {
    uint32_t nt = mg__pool_size(pool);
    uint64_t n = j->g.n;
    j->panels = (j->g.rows + MG__GEMM_PR - 1) / MG__GEMM_PR;
    uint64_t want = (uint64_t)nt * 4;
    j->pparts = j->panels < want ? j->panels : want;
    j->mparts = (want + j->pparts - 1) / j->pparts;
    if (j->mparts > (n + 7) / 8) j->mparts = (n + 7) / 8; /* >= 8 rows per part */
    uint64_t tasks = j->pparts * j->mparts;
    mg__pool_run(tasks > 1 ? pool : NULL, bf16_gemm_task, j, (uint32_t)tasks);
}

static void bf16_job_init(bf16_job *j, uint64_t rows, uint64_t cols, const uint16_t *xb,
                          uint64_t n, float *Y, uint64_t ldy) {
    memset(j, 0, sizeof *j);
    j->g.xb = xb;
    j->g.rows = rows;
    j->g.cols = cols;
    j->g.n = n;
    j->g.ldy = ldy;
    j->g.Y = Y;
}

/* X (j->X, rows j->ldx apart, times j->scale) rounded into j->g.xb on the
 * pool, then the product. */
static void bf16_convert_run(bf16_job *j, mg__pool *pool) {
    uint32_t nt = mg__pool_size(pool);
    uint32_t qt = j->g.n < nt ? (uint32_t)j->g.n : nt;
    mg__pool_run(qt > 1 ? pool : NULL, bf16_conv_task, j, qt);
    bf16_run(j, pool);
}

void mg__gemm_bf16(const uint16_t *W, uint64_t rows, uint64_t cols, const float *X,
                   uint64_t ldx, float scale, uint64_t n, float *Y, uint64_t ldy,
                   uint16_t *xb, mg__pool *pool) {
    if (!W || !X || !Y || !xb || !n || !rows || !cols || cols % 2) return;
    bf16_job j;
    bf16_job_init(&j, rows, cols, xb, n, Y, ldy);
    j.g.W = W;
    j.X = X;
    j.ldx = ldx;
    j.scale = scale;
    bf16_convert_run(&j, pool);
}

void mg__gemm_bf16_packed(const uint32_t *Wp, uint64_t rows, uint64_t cols,
                          const uint16_t *xb, uint64_t ldx, uint64_t n, float *Y,
                          uint64_t ldy, mg__pool *pool) {
    if (!Wp || !Y || !xb || !n || !rows || !cols || cols % 2) return;
    if (!bf16_path(mg_simd_level(), MG_DTYPE_BF16, cols)) {
        gemm_packed_plain(Wp, rows, cols, xb, ldx, n, Y, ldy);
        return;
    }
    bf16_job j;
    bf16_job_init(&j, rows, cols, xb, n, Y, ldy);
    j.g.Wp = Wp;
    j.g.ldx = ldx;
    bf16_run(&j, pool);
}


/* X in blocks of rows that the scratch holds in bf16, each block one
 * conversion and one product over the pool. */
static void matmul_bf16(const void *W, uint64_t rows, uint64_t cols, const float *X,
                        uint64_t n, float *Y, float *scratch, mg__pool *pool,
                        const float *bias, int acc, int act) {
    uint64_t mc = mg__matmul_scratch_size(MG_DTYPE_BF16, cols) / (cols * sizeof(uint16_t));
    if (mc == 0) mc = 1; /* not reached: the scratch holds 64 rows of f32 */
    for (uint64_t t0 = 0; t0 < n; t0 += mc) {
        uint64_t m = n - t0 < mc ? n - t0 : mc;
        bf16_job j;
        bf16_job_init(&j, rows, cols, (uint16_t *)scratch, m, Y + t0 * rows, rows);
        j.g.W = W;
        j.g.bias = bias;
        j.g.acc = acc;
        j.g.act = act;
        j.X = X + t0 * cols;
        j.ldx = cols;
        j.scale = 1.0f;
        bf16_convert_run(&j, pool);
    }
}
#else
/* Without the AVX-512 kernels mg__matmul_pooled is 0 and nothing calls
 * these; they compute the same sums, plainly, all the same. */
void mg__gemm_bf16_packed(const uint32_t *Wp, uint64_t rows, uint64_t cols,
                          const uint16_t *xb, uint64_t ldx, uint64_t n, float *Y,
                          uint64_t ldy, mg__pool *pool) {
    (void)pool;
    if (!Wp || !Y || !xb || !n || !rows || !cols || cols % 2) return;
    gemm_packed_plain(Wp, rows, cols, xb, ldx, n, Y, ldy);
}

void mg__gemm_bf16(const uint16_t *W, uint64_t rows, uint64_t cols, const float *X,
                   uint64_t ldx, float scale, uint64_t n, float *Y, uint64_t ldy,
                   uint16_t *xb, mg__pool *pool) {
    (void)pool;
    if (!W || !X || !Y || !xb || !n || !rows || !cols || cols % 2) return;
    for (uint64_t t = 0; t < n; t++)
        for (uint64_t c = 0; c < cols; c++)
            xb[t * cols + c] = mg__f32_to_bf16(scale * X[t * ldx + c]);
    for (uint64_t t = 0; t < n; t++)
        for (uint64_t r = 0; r < rows; r++) {
            float s = 0.0f;
            for (uint64_t c = 0; c < cols; c++)
                s += mg__bf16_to_f32(W[r * cols + c]) * mg__bf16_to_f32(xb[t * cols + c]);
            Y[t * ldy + r] = s;
        }
}
#endif

uint64_t mg__bf16_packed_words(uint64_t rows, uint64_t cols) {
    return (rows + MG__GEMM_PR - 1) / MG__GEMM_PR * MG__GEMM_PR * (cols / 2);
}

void mg__bf16_pack(uint32_t *dst, const float *src, uint64_t rs, uint64_t cs,
                   uint64_t rows, uint64_t cols, float scale) {
    if (!dst || !src || !rows || !cols || cols % 2) return;
#if defined(MG_X86_AVX512)
    if (rs < (1u << 27) && mg__cpu_bf16()) {
        mg__bf16_pack_avx512(dst, src, rs, cs, rows, cols, scale);
        return;
    }
#endif
    uint64_t panels = (rows + MG__GEMM_PR - 1) / MG__GEMM_PR;
    for (uint64_t r = 0; r < panels * MG__GEMM_PR; r++)
        for (uint64_t q = 0; q < cols / 2; q++) {
            uint32_t w = 0;
            if (r < rows)
                w = mg__f32_to_bf16(scale * src[r * rs + 2 * q * cs]) |
                    (uint32_t)mg__f32_to_bf16(scale * src[r * rs + (2 * q + 1) * cs]) << 16;
            uint64_t p = r / MG__GEMM_PR, g = r % MG__GEMM_PR / 16, j = r % 16;
            dst[((p * (cols / 2) + q) * 2 + g) * 16 + j] = w;
        }
}

void mg__matmul_level(int32_t level, int32_t dtype, const void *W,
                      uint64_t rows, uint64_t cols, const float *X, uint64_t n,
                      float *Y, float *scratch, mg__pool *pool) {
    int ok;
    const int x16 = dtype == MG__DTYPE_Q4_0X16;
    uint64_t row_bytes = mg__dtype_bytes(x16 ? MG_DTYPE_Q4_0 : dtype, cols, &ok);
    if (!ok || !W || !X || !Y || n == 0 || rows == 0) return;
    if (x16 && !mg__q4x16_fits(rows, cols)) return;
    if (cols == 0) {
        memset(Y, 0, (size_t)(n * rows) * sizeof(float));
        return;
    }
#if defined(MG_X86_AVX512)
    if (scratch && q8_path(level, dtype, cols)) {
        /* One row: the matvec computes the same sums without the repack. */
        if (n == 1) {
            mg__matvec_level(level, dtype, W, rows, cols, X, Y, pool);
            return;
        }
        matmul_q8(dtype, W, row_bytes, rows, cols, X, n, Y, scratch, pool);
        return;
    }
    if (scratch && bf16_path(level, dtype, cols)) {
        /* One row: the matvec, in f32, reads the weights once. */
        if (n == 1) {
            mg__matvec_level(level, dtype, W, rows, cols, X, Y, pool);
            return;
        }
        matmul_bf16(W, rows, cols, X, n, Y, scratch, pool, NULL, 0, MG__ACT_NONE);
        return;
    }
#endif
    /* sgemm takes int dimensions. */
    if (rows > INT_MAX || cols > INT_MAX || n > INT_MAX) return;
    if (dtype == MG_DTYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows,
                    (int)cols, 1.0f, X, (int)cols, (const float *)W, (int)cols,
                    0.0f, Y, (int)rows);
        return;
    }
    if (!scratch) return;
    uint64_t tr = tile_rows(cols);
    for (uint64_t r0 = 0; r0 < rows; r0 += tr) {
        uint64_t nr = rows - r0 < tr ? rows - r0 : tr;
        if (x16) /* rows of 16-row groups: tr and r0 are multiples of 16 */
            mg__q4x16_dequant_rows(scratch, W, cols, r0, nr);
        else
            mg__dequant_row_level(mg__kernel_level(level), dtype, scratch,
                                  (const char *)W + r0 * row_bytes, nr * cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nr,
                    (int)cols, 1.0f, X, (int)cols, scratch, (int)cols, 0.0f,
                    Y + r0, (int)rows);
    }
}


int mg__matmul_fused(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                     const float *X, uint64_t n, float *Y, float *scratch, mg__pool *pool,
                     const float *bias, int acc, int act) {
#if defined(MG_X86_AVX512)
    if (!W || !X || !Y || !scratch || n < 2 || !rows || !cols || (acc && act != MG__ACT_NONE) ||
        !bf16_path(mg_simd_level(), dtype, cols))
        return 0;
    matmul_bf16(W, rows, cols, X, n, Y, scratch, pool, bias, acc, act);
    return 1;
#else
    (void)dtype, (void)W, (void)rows, (void)cols, (void)X, (void)n, (void)Y, (void)scratch;
    (void)pool, (void)bias, (void)acc, (void)act;
    return 0;
#endif
}

void mg__matmul(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                const float *X, uint64_t n, float *Y, float *scratch,
                mg__pool *pool) {
    mg__matmul_level(mg_simd_level(), dtype, W, rows, cols, X, n, Y, scratch,
                     pool);
}
