/* kernels.h - numeric kernels with scalar references and SIMD variants.
 *
 * Conventions: a weight matrix W has `rows` rows of `cols` elements each,
 * stored row-major in its dtype's layout (see docs/FORMAT.md); rows are
 * independent, so a q8_0/q4_0 row is cols/32 blocks. Activations are f32.
 * matvec: y[r] = sum_c W[r][c] * x[c]            (decode, one token)
 * matmul: Y[t][r] = sum_c W[r][c] * X[t][c]      (prefill, n tokens) = X W^T
 * The _ref functions are plain scalar C, the definition the others are
 * tested against. Nothing here allocates except mg__matmul's scratch, which
 * the caller passes in (mg__matmul_scratch_size tells how much). */
#ifndef MG_KERNELS_H
#define MG_KERNELS_H

#include "core/core.h"
#include "core/pool.h"

#define MG__QK 32 /* elements per q8_0/q4_0 block */

typedef struct { uint16_t d; int8_t qs[MG__QK]; } mg__block_q8_0;       /* 34 B */
typedef struct { uint16_t d; uint8_t qs[MG__QK / 2]; } mg__block_q4_0;  /* 18 B */

/* ---- dtype facts --------------------------------------------------------- */
/* Elements per block (1 for float types, 32 for q8_0/q4_0); 0 if unknown. */
uint32_t mg__dtype_block_elems(int32_t dtype);
/* Bytes per block (4, 2, 2, 34, 18); 0 if unknown. */
uint32_t mg__dtype_block_bytes(int32_t dtype);
/* Bytes of n elements; 0 with *ok = 0 if n is not a whole number of blocks,
 * the dtype is unknown, or the size overflows. */
uint64_t mg__dtype_bytes(int32_t dtype, uint64_t n, int *ok);

/* ---- scalar conversions ------------------------------------------------ */
float mg__f16_to_f32(uint16_t h);
uint16_t mg__f32_to_f16(float f);   /* round to nearest even, inf/nan kept */
float mg__bf16_to_f32(uint16_t h);
uint16_t mg__f32_to_bf16(float f);  /* round to nearest even, nan kept     */

/* Converts n f32 values into dtype layout at dst (n a multiple of 32 for
 * q8_0/q4_0, GGML-compatible rounding). Returns 0, or -1 for a bad dtype/n. */
int mg__quantize(int32_t dtype, void *dst, const float *src, uint64_t n);
/* Converts n elements of dtype at src into f32. Returns 0 or -1. */
int mg__dequantize(int32_t dtype, float *dst, const void *src, uint64_t n);

/* ---- matrix kernels ---------------------------------------------------- */
/* Scalar references. */
void mg__matvec_ref(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                    const float *x, float *y);
void mg__matmul_ref(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                    const float *X, uint64_t n, float *Y);

/* Dispatched decode matvec: splits rows over the pool (NULL = caller's thread
 * only) and uses the process's SIMD level. */
void mg__matvec(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                const float *x, float *y, mg__pool *pool);
/* Same at an explicit SIMD level (tests and benchmarks); a level the CPU
 * lacks falls back to the best one below it. */
void mg__matvec_level(int32_t level, int32_t dtype, const void *W,
                      uint64_t rows, uint64_t cols, const float *x, float *y,
                      mg__pool *pool);

/* n vectors (rows of X, n x cols) through the decode kernels at once: Y[v]
 * (n x rows) is bit for bit what mg__matvec_level gives for X[v] at the same
 * level (each row is computed by the same kernel call on the same 8-bit
 * vector), while each block of weight rows is read from memory once for all
 * n vectors (then from cache). scratch: mg__matvec_multi_scratch(n) bytes,
 * 64-byte aligned. n > 8 runs the vectors one by one. */
size_t mg__matvec_multi_scratch(uint64_t n);
void mg__matvec_multi_level(int32_t level, int32_t dtype, const void *W, uint64_t rows,
                            uint64_t cols, const float *X, uint64_t n, float *Y,
                            void *scratch, mg__pool *pool);

/* Prefill matmul: f32 W goes straight to cblas_sgemm; other dtypes are
 * dequantized a tile of rows at a time into `scratch` and multiplied with
 * cblas_sgemm. scratch must hold mg__matmul_scratch_size(dtype, cols) bytes
 * (0 for f32; scratch may then be NULL). */
size_t mg__matmul_scratch_size(int32_t dtype, uint64_t cols);
void mg__matmul(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                const float *X, uint64_t n, float *Y, float *scratch,
                mg__pool *pool);
/* Same at an explicit SIMD level (tests, benchmarks). On AVX-512 with VNNI,
 * q8_0/q4_0 weights take the integer path: X quantized into the scratch as
 * the matvec quantizes its vector, panels of weight rows split over the
 * pool (NULL = caller's thread only), so each Y[t] equals what
 * mg__matvec_level(MG_SIMD_SCALAR, ...) gives for X[t] up to float
 * summation order. On AVX-512 with AVX512_BF16, bf16 weights (cols even,
 * n > 1) likewise, with X rounded to bf16 (mg__f32_to_bf16) and f32 sums.
 * Elsewhere, and for other dtypes, dequantization and sgemm as above
 * (OpenBLAS's threads; the pool is not used). A single row (n == 1) on
 * either path goes to mg__matvec_level. */
void mg__matmul_level(int32_t level, int32_t dtype, const void *W,
                      uint64_t rows, uint64_t cols, const float *X, uint64_t n,
                      float *Y, float *scratch, mg__pool *pool);
/* Whether mg__matmul splits weights of this dtype and width over the pool
 * itself at the process's SIMD level (callers then give it the pool rather
 * than splitting tokens). */
int mg__matmul_pooled(int32_t dtype, uint64_t cols);
/* The product with its epilogue in the same pass over Y, where the
 * products' tiles can do it (bf16 weights on AVX512_BF16, n >= 2):
 * Y = act(X W^T + bias), or with acc Y += X W^T + bias (act must then be
 * MG__ACT_NONE); bias may be NULL. Returns 1 when done, 0 (Y untouched)
 * where the caller must do it in steps: mg__matmul, then the bias, the
 * sum and the activation. */
enum { MG__ACT_NONE, MG__ACT_GELU };
int mg__matmul_fused(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                     const float *X, uint64_t n, float *Y, float *scratch, mg__pool *pool,
                     const float *bias, int acc, int act);

/* The bf16 product with its inputs spelled out, for callers that hold bf16
 * matrices of their own (attention): Y[t][r] (row stride ldy) = sum_c
 * W[r][c] * bf16(scale * X[t][c]) for t < n, r < rows, with X's rows ldx
 * floats apart and W row-major bf16 (cols even). xb: scratch of n * cols
 * uint16. Panels split over the pool (NULL = caller's thread). Only where
 * mg__matmul_pooled(MG_DTYPE_BF16, cols) says so (AVX512_BF16). */
void mg__gemm_bf16(const uint16_t *W, uint64_t rows, uint64_t cols, const float *X,
                   uint64_t ldx, float scale, uint64_t n, float *Y, uint64_t ldy,
                   uint16_t *xb, mg__pool *pool);

/* A bf16 matrix packed once for many products (attention's K and V^T,
 * which every block of queries multiplies): rows x cols values, element
 * (r, c) at src[r * rs + c * cs], times scale, rounded to bf16 as
 * mg__f32_to_bf16 rounds, in the panel layout the bf16 product reads:
 * 32-bit word ((p * cols / 2 + q) * 2 + g) * 16 + j holds rows r = 32 p +
 * 16 g + j's columns 2q (low half) and 2q + 1 (high half); rows past the
 * last are 0. cols even, rs * 15 < 2^31; dst 64-byte aligned, of
 * mg__bf16_packed_words(rows, cols) words. */
uint64_t mg__bf16_packed_words(uint64_t rows, uint64_t cols);
void mg__bf16_pack(uint32_t *dst, const float *src, uint64_t rs, uint64_t cs,
                   uint64_t rows, uint64_t cols, float scale);
/* mg__gemm_bf16 with W packed and X already bf16 (xb: n rows of cols, ldx
 * apart): Y[t][r] (row stride ldy) = sum_c W[r][c] * xb[t][c]. The same
 * sums, bit for bit, as mg__gemm_bf16 on the unpacked W and the same X. */
void mg__gemm_bf16_packed(const uint32_t *Wp, uint64_t rows, uint64_t cols,
                          const uint16_t *xb, uint64_t ldx, uint64_t n, float *Y,
                          uint64_t ldy, mg__pool *pool);

/* ---- q4_0 in the decode layout: 16 rows interleaved (q4x16.c) ------------ */
/* MG__DTYPE_Q4_0X16 is internal (never in a file): the q4_0 bytes of a
 * matrix whose rows come in groups of 16, reordered so that one 64-byte
 * vector holds the same four quant bytes of 16 rows. A group keeps its 16
 * rows' bytes (16 * row_bytes; row 16 g still starts at 16 g * row_bytes);
 * inside it, per pair of blocks 2p, 2p+1 (576 bytes at 576 p): block 2p's
 * quants as four 64-byte vectors (vector k, 32-bit lane i: bytes 4k..4k+3
 * of row i's block), block 2p+1's the same, then block 2p's 16 f16 scales
 * in row order and block 2p+1's. The dtype functions above do not know it
 * (a file cannot name it): sizes are q4_0's.
 * Matrices need rows % 16 == 0, cols % 64 == 0 and cols <=
 * MG__Q4X16_MAX_COLS (x is then quantized in one piece). mg__matvec,
 * mg__matmul and the references take it like any dtype. */
#define MG__DTYPE_Q4_0X16 64
#define MG__Q4X16_MAX_COLS 16384u
/* Offsets inside a group: the pair of blocks b / 2 starts at PAIR * (b / 2);
 * block b's quants at + QUANTS * (b % 2), its scales at + SCALES0 +
 * SCALES * (b % 2). */
#define MG__Q4X16_PAIR 576u   /* 2 blocks x 16 rows x 18 bytes */
#define MG__Q4X16_QUANTS 256u /* 4 vectors of 16 rows x 4 bytes */
#define MG__Q4X16_SCALES0 512u
#define MG__Q4X16_SCALES 32u  /* 16 f16 scales */
static inline const uint8_t *mg__q4x16_quants(const uint8_t *group, uint64_t b) {
    return group + (b / 2) * MG__Q4X16_PAIR + (b % 2) * MG__Q4X16_QUANTS;
}
static inline const uint8_t *mg__q4x16_scales(const uint8_t *group, uint64_t b) {
    return group + (b / 2) * MG__Q4X16_PAIR + MG__Q4X16_SCALES0 + (b % 2) * MG__Q4X16_SCALES;
}
int mg__q4x16_fits(uint64_t rows, uint64_t cols);
/* One group: 16 q4_0 rows of cols at src (contiguous) into dst (no overlap). */
void mg__q4x16_pack_group(void *dst, const void *src, uint64_t cols);
/* A whole q4_0 matrix rearranged in place; 0, or -1 (shape, memory). */
int mg__q4x16_pack(void *W, uint64_t rows, uint64_t cols);
/* Element (r, c) and rows r0..r0+nr-1 (into dst, nr x cols), dequantized. */
float mg__q4x16_elem(const void *W, uint64_t cols, uint64_t r, uint64_t c);
void mg__q4x16_dequant_rows(float *dst, const void *W, uint64_t cols, uint64_t r0,
                            uint64_t nr);

/* ---- elementwise / row kernels (f32) ------------------------------------ */
/* y = x / sqrt(mean(x^2) + eps) * (add_one ? 1 + w : w); y may equal x. */
void mg__rmsnorm(float *y, const float *x, const float *w, uint64_t n,
                 float eps, int add_one);
void mg__rmsnorm_ref(float *y, const float *x, const float *w, uint64_t n,
                     float eps, int add_one);
/* y = (x - mean) / sqrt(var + eps) * w + b; w/b may be NULL (1 and 0). */
void mg__layernorm(float *y, const float *x, const float *w, const float *b,
                   uint64_t n, float eps);
void mg__layernorm_ref(float *y, const float *x, const float *w,
                       const float *b, uint64_t n, float eps);
/* In place, numerically stable (max subtracted). */
void mg__softmax(float *x, uint64_t n);
void mg__softmax_ref(float *x, uint64_t n);
/* GELU, tanh approximation: 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))). */
void mg__gelu_tanh(float *y, const float *x, uint64_t n);
void mg__gelu_tanh_ref(float *y, const float *x, uint64_t n);
/* Dot product and y += a*x, SIMD-dispatched (attention's inner loops). */
float mg__dot_f32(const float *a, const float *b, uint64_t n);
void mg__axpy_f32(float *y, float a, const float *x, uint64_t n);
/* x[i] = exp(x[i] - m) in place, returns the sum (a softmax numerator;
 * SIMD exp with relative error < 3e-7 for arguments in [-87, 87]). */
float mg__expsum_f32(float *x, float m, uint64_t n);
/* max of x[0..n) (-inf for n = 0), SIMD-dispatched; input without NaN. */
float mg__max_f32(const float *x, uint64_t n);
/* The vector kernels of one SIMD level (tests; capped at the CPU's). */
struct mg__vec_fns;
const struct mg__vec_fns *mg__vec_for(int32_t level);
/* ... and those of the process's level (MG_SIMD, the CPU). */
const struct mg__vec_fns *mg__vec(void);

/* Rotary embedding on one head vector of head_dim (even) values, in place,
 * "rotate half" pairing (i, i + head_dim/2) as in Gemma/Llama HF code:
 * theta_i = pos / scale * base^(-2i/head_dim). */
void mg__rope(float *x, uint64_t head_dim, double pos, double base,
              double scale);
void mg__rope_ref(float *x, uint64_t head_dim, double pos, double base,
                  double scale);

/* ---- internal to kernels/: per-SIMD-level pieces ------------------------ */
/* Everything below is shared between the kernels/ sources only (the _avx2.c and
 * _avx512.c files are compiled with ISA flags and called only after a
 * run-time check). */

/* Scalar f32 dequantization of n elements (n whole blocks), no checks. */
void mg__dequantize_ref_row(int32_t dtype, float *dst, const void *src,
                            uint64_t n);
/* Same at the process's SIMD level (what mg__dequantize and mg__matmul use). */
void mg__dequant_row(int32_t dtype, float *dst, const void *src, uint64_t n);
void mg__dequant_row_level(int32_t level, int32_t dtype, float *dst,
                           const void *src, uint64_t n);
void mg__dequant_row_avx2(int32_t dtype, float *dst, const void *src,
                          uint64_t n);
void mg__dequant_row_avx512(int32_t dtype, float *dst, const void *src,
                            uint64_t n);

/* The activation vector quantized to 8 bits per 32-element block for the
 * integer dot products of the q8_0/q4_0 matvec: x[j] ~= d[b] * q[j] with
 * d[b] = amax_b / 127 (f32, not rounded to f16), q = round-to-nearest-even
 * of x / d[b]; s8[b] = 8 * sum of the block's q (the q4_0 offset term). */
typedef struct {
    const int8_t *q;
    const float *d;
    const int32_t *s8;
} mg__xq8;
void mg__quantize_x8(const float *x, uint64_t n, int8_t *q, float *d,
                     int32_t *s8); /* scalar; n a multiple of 32 */
void mg__quantize_x8_avx2(const float *x, uint64_t n, int8_t *q, float *d,
                          int32_t *s8);
void mg__quantize_x8_avx512(const float *x, uint64_t n, int8_t *q, float *d,
                            int32_t *s8);

/* Row kernel: y[r] (+)= dot(row r, x) for r in [0, nrows), rows starting at
 * W and row_bytes apart, `cols` elements each (for q8_0/q4_0 the first
 * cols/32 blocks of each row). xv is a const float * for f32/f16/bf16 and
 * a const mg__xq8 * for q8_0/q4_0. accumulate: add into y instead of
 * storing. */
typedef void (*mg__rows_fn)(const void *W, size_t row_bytes, uint64_t nrows,
                            uint64_t cols, const void *xv, float *y,
                            int accumulate);
/* Tables indexed by dtype (MG_DTYPE_F32..MG_DTYPE_Q4_0). */
extern const mg__rows_fn mg__rows_avx2[5];
extern const mg__rows_fn mg__rows_avx512[5];
/* AVX-512 VNNI variants for q8_0/q4_0 (index 3, 4; others NULL). */
extern const mg__rows_fn mg__rows_avx512vnni[5];
/* AVX512-VBMI + VNNI variants (q4_0 only: index 4; others NULL); the caller
 * checks both CPUID bits. */
extern const mg__rows_fn mg__rows_avx512vbmi[5];

/* The q4x16 row kernels (nrows a multiple of 16, rows at W with row_bytes
 * of q4_0; xv a const mg__xq8 *): scalar (q4x16.c) and AVX512-VNNI. */
void mg__rows_q4x16_scalar(const void *W, size_t row_bytes, uint64_t nrows,
                           uint64_t cols, const void *xv, float *y, int accumulate);
void mg__rows_q4x16_vnni(const void *W, size_t row_bytes, uint64_t nrows,
                         uint64_t cols, const void *xv, float *y, int accumulate);

/* The process's SIMD level capped by the CPU's (and >= scalar), and whether
 * the CPU has AVX512_VNNI. */
int32_t mg__kernel_level(int32_t level);
int mg__cpu_vnni(void);
int mg__cpu_bf16(void); /* AVX512_BF16 (vdpbf16ps) */
int mg__cpu_vbmi(void); /* AVX512_VBMI (vpermb, vpmultishiftqb) */

/* The integer prefill product (matmul_avx512.c): X already quantized (xq:
 * n rows of cols bytes; xd, xs: n rows of cols/32 scales and offset
 * terms, the scales as mg__quantize_x8 writes them and xs its s8 sums times
 * -16 for q8_0, -1 for q4_0), Y[t][r] for panels p0..p1-1 of
 * MG__GEMM_PR weight rows each. */
#define MG__GEMM_PR 32
typedef struct {
    int32_t dtype;
    const char *W;
    size_t row_bytes;
    uint64_t rows, cols, n, ldy;
    const int8_t *xq;
    const float *xd;
    const int32_t *xs;
    float *Y;
} mg__q8_gemm;
void mg__matmul_q8_panels_vnni(const mg__q8_gemm *g, uint64_t p0, uint64_t p1);

/* The bf16 prefill product (matmul_avx512.c, AVX512_BF16): bf16 weights
 * (cols even) times X already rounded to bf16 (xb: n rows of cols values,
 * as mg__f32_to_bf16 rounds them), Y[t][r] for panels p0..p1-1. */
typedef struct {
    const uint16_t *W, *xb;
    const uint32_t *Wp; /* non-NULL: W prepacked by mg__bf16_pack (W unused) */
    uint64_t rows, cols, n, ldy;
    uint64_t ldx;       /* xb's row stride; 0: cols */
    float *Y;
    const float *bias;  /* non-NULL: added to every row (rows values) */
    int acc;            /* Y += the product (and bias) instead of Y = */
    int act;            /* MG__ACT_GELU: Y = gelu_tanh(...) at the end */
} mg__bf16_gemm;
void mg__matmul_bf16_panels(const mg__bf16_gemm *g, uint64_t p0, uint64_t p1);
void mg__bf16_pack_avx512(uint32_t *dst, const float *src, uint64_t rs, uint64_t cs,
                          uint64_t rows, uint64_t cols, float scale);
/* n values f32 times scale -> bf16, round to nearest even (AVX-512 BF16). */
void mg__f32_to_bf16_avx512(uint16_t *dst, const float *src, uint64_t n, float scale);

#endif /* MG_KERNELS_H */
