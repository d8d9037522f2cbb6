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
} mg__vec_fns;

extern const mg__vec_fns mg__vec_avx2;
extern const mg__vec_fns mg__vec_avx512;

#endif
