/* vec.h - small f32 vector kernels with SIMD variants (internal to
 * kernels/; the public entry points are in kernels.h). */
#ifndef MG_VEC_H
#define MG_VEC_H

#include <stdint.h>

typedef struct mg__vec_fns {
    float (*dot)(const float *a, const float *b, uint64_t n);
    void (*axpy)(float *y, float a, const float *x, uint64_t n);
    void (*gelu)(float *y, const float *x, uint64_t n);
    /* x[i] = exp(x[i] - m) in place; returns the sum (softmax numerator). */
    float (*expsum)(float *x, float m, uint64_t n);
    /* max of x[0..n), n >= 1 (NaN-free input) */
    float (*max)(const float *x, uint64_t n);

    /* Attention tiles (the decoder's tiled attention, llm/decoder.c). A
     * tile is nk keys against nq queries; ldq (a multiple of 16, >= nq) is
     * the query stride of QT and of the score tile ST, whose row j holds
     * key j's scores for every query.
     * qk:      ST[j][i] = scale * sum_d K[j][d] QT[d][i] for j < nk, i < ldq
     *          (K row-major nk x hd, QT hd x ldq).
     * softmax: one step of the online softmax of each query column i < nq:
     *          m[i] becomes max(m[i], max_j ST[j][i]), ST[j][i] becomes
     *          exp(ST[j][i] - m[i]) (0 where that is below -87, so -inf
     *          scores give 0), alpha[i] = exp(old m[i] - new m[i]) (1 when
     *          both are -inf) and l[i] = alpha[i] l[i] + sum_j ST[j][i].
     * pv:      O[i][d] = alpha[i] O[i][d] + sum_j ST[j][i] V[j][d] for
     *          i < nq, d < hd (V row-major nk x hd; O rows ldo apart). */
    void (*qk)(const float *K, uint32_t nk, uint32_t hd, const float *QT, uint32_t ldq,
               float scale, float *ST);
    void (*softmax)(float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, float *m, float *l,
                    float *alpha);
    void (*pv)(const float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, const float *V,
               uint32_t hd, const float *alpha, float *O, uint64_t ldo);
    /* bf16 operands (a bf16 KV cache): dst[i] = f32 of src[i]; dot with a
     * bf16 vector; y += a * x with x bf16. */
    void (*bf16_f32)(float *dst, const uint16_t *src, uint64_t n);
    float (*dot_bf16)(const float *a, const uint16_t *b, uint64_t n);
    void (*axpy_bf16)(float *y, float a, const uint16_t *x, uint64_t n);
} mg__vec_fns;

extern const mg__vec_fns mg__vec_avx2;
extern const mg__vec_fns mg__vec_avx512;

#endif
