/* layers.h - transformer layers over rows of tokens, for encoders: dense
 * products with a bias, row kernels (LayerNorm, GELU, residual adds) and
 * full (unmasked) multi-head attention, each spread over a pool.
 *
 * Activations are row-major f32, one row per token. Nothing here
 * allocates: callers size the scratch with the _bytes functions and pass
 * it in, so an encoder's state holds everything a forward pass touches. */
#ifndef MG_KERNELS_LAYERS_H
#define MG_KERNELS_LAYERS_H

#include "kernels/kernels.h"

/* A weight matrix of out rows x in columns in any dtype mg__matmul takes. */
typedef struct mg__dense {
    const void *w;
    int32_t dt;
    uint64_t in, out;
} mg__dense;

/* mg__matmul's scratch for each of n_threads threads, stride floats apart
 * (mg__dense_stride of the widest matrix's mg__matmul_scratch_size). */
typedef struct mg__dense_ws {
    float *mm;
    size_t stride;
    uint32_t n_threads;
} mg__dense_ws;
size_t mg__dense_stride(size_t scratch_bytes);

/* Y[n x out] = X[n x in] W^T + bias (bias may be NULL). With OpenBLAS
 * single-threaded and a dtype mg__matmul does not split itself, the rows
 * of X are split over the pool; otherwise one product (OpenBLAS's threads
 * or the pool) and the bias added on the pool. */
void mg__dense_rows(const mg__dense *m, const float *X, uint32_t n, const float *bias,
                    float *Y, const mg__dense_ws *ws, mg__pool *pool);

/* The same product with what follows it: Y = act(X W^T + bias) (act
 * MG__ACT_NONE or MG__ACT_GELU), or with acc Y += X W^T + bias (a residual
 * sum; act must be MG__ACT_NONE). Where the product's tiles can (bf16
 * weights, mg__matmul_fused) it is one pass over Y; otherwise the product
 * goes to tmp (n x out floats, used only with acc) and the rest follows
 * on the pool. */
void mg__dense_rows_ex(const mg__dense *m, const float *X, uint32_t n, const float *bias,
                       int acc, int act, float *Y, float *tmp, const mg__dense_ws *ws,
                       mg__pool *pool);

/* Row kernels over the pool, n rows of width values:
 *   MG__ROWS_LN:   y = LayerNorm(x) * w + b (eps)
 *   MG__ROWS_GELU: y = gelu_tanh(x)
 *   MG__ROWS_ADD:  y += x
 *   MG__ROWS_BIAS: y += w (the same vector on every row; x unused) */
enum { MG__ROWS_LN, MG__ROWS_GELU, MG__ROWS_ADD, MG__ROWS_BIAS };
void mg__rows_op(mg__pool *pool, uint32_t op, float *y, const float *x, const float *w,
                 const float *b, uint32_t n, uint32_t width, float eps);

/* Multi-head attention with no mask: for every head h (columns h*hd ..
 * h*hd+hd-1 of q, k, v and out, rows heads*hd wide), out = softmax(q k^T /
 * sqrt(hd)) v. Blocks of queries at a time, so the scores take a block x n,
 * never n x n. bf16: both products on bf16 tiles (q / sqrt(hd), k, v and
 * the softmax numerators rounded to bf16, f32 sums, the 1/sum applied to
 * the output rows), with k and v^T packed once per call; else f32 sgemm. */
typedef struct mg__mha {
    uint32_t n, heads, hd;
    int bf16;
} mg__mha;
/* Whether bf16 attention runs here (AVX512_BF16, even n and hd). */
int mg__mha_bf16_ok(uint32_t n, uint32_t hd);
/* Scratch bytes for n_threads threads; -1 on overflow. */
int mg__mha_scratch_bytes(const mg__mha *a, uint32_t n_threads, uint64_t *bytes);
/* scratch: 64-byte aligned, mg__mha_scratch_bytes for at least n_threads. */
void mg__mha_run(const mg__mha *a, const float *q, const float *k, const float *v,
                 float *out, void *scratch, uint32_t n_threads, mg__pool *pool);

#endif /* MG_KERNELS_LAYERS_H */
