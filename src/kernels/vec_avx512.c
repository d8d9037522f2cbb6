/* vec_avx512.c - dot, axpy and tanh-GELU with AVX-512F. */
#include <immintrin.h>
#include <math.h>

#include "kernels/simd512.h"
#include "kernels/vec.h"

static float dot(const float *a, const float *b, uint64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void axpy(float *y, float a, const float *x, uint64_t n) {
    __m512 va = _mm512_set1_ps(a);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i),
                                                       _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void gelu(float *y, const float *x, uint64_t n) {
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static float expsum(float *x, float m, uint64_t n) {
    /* below -87 the clamped exp512 would give 1.6e-38 instead of 0 */
    __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps(), lo = _mm512_set1_ps(-87.0f);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
        __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, lo, _CMP_GE_OQ), exp512(d));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm);
        __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, lo, _CMP_GE_OQ), exp512(d));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, e));
    }
    return _mm512_reduce_add_ps(acc);
}

static float vmax(const float *x, uint64_t n) {
    __m512 m = _mm512_set1_ps(x[0]);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + i));
    }
    return _mm512_reduce_max_ps(m);
}

/* ---- attention tiles (vec.h) ---- */

static inline __mmask16 tail16(uint32_t n) { return (__mmask16)((1u << n) - 1); }

/* R keys (rows of K) x C vectors of 16 queries, summed over d. */
#define QK_BLOCK(R, C)                                                                   \
    static inline void qk_##R##x##C(const float *K, uint32_t hd, const float *QT,       \
                                    uint32_t ldq, float scale, float *ST) {              \
        __m512 acc[R][C];                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                      \
            _Pragma("GCC unroll 8") for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();                 \
        for (uint32_t d = 0; d < hd; d++) {                                              \
            __m512 q[C];                                                                 \
            _Pragma("GCC unroll 8") for (int c = 0; c < C; c++) q[c] = _mm512_loadu_ps(QT + (size_t)d * ldq + 16 * c); \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                \
                __m512 k = _mm512_set1_ps(K[(size_t)r * hd + d]);                        \
                _Pragma("GCC unroll 8") for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(k, q[c], acc[r][c]); \
            }                                                                            \
        }                                                                                \
        __m512 vs = _mm512_set1_ps(scale);                                               \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                      \
            _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)                                                  \
                _mm512_storeu_ps(ST + (size_t)r * ldq + 16 * c, _mm512_mul_ps(acc[r][c], vs)); \
    }
QK_BLOCK(4, 4)
QK_BLOCK(1, 4)
QK_BLOCK(6, 2)
QK_BLOCK(1, 2)
QK_BLOCK(8, 1)
QK_BLOCK(1, 1)

static void qk(const float *K, uint32_t nk, uint32_t hd, const float *QT, uint32_t ldq,
               float scale, float *ST) {
    uint32_t i = 0;
    for (; i + 64 <= ldq; i += 64) {
        uint32_t j = 0;
        for (; j + 4 <= nk; j += 4)
            qk_4x4(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
        for (; j < nk; j++) qk_1x4(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
    }
    for (; i + 32 <= ldq; i += 32) {
        uint32_t j = 0;
        for (; j + 6 <= nk; j += 6)
            qk_6x2(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
        for (; j < nk; j++) qk_1x2(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
    }
    for (; i < ldq; i += 16) {
        uint32_t j = 0;
        for (; j + 8 <= nk; j += 8)
            qk_8x1(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
        for (; j < nk; j++) qk_1x1(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
    }
}

static void softmax_tile(float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, float *m, float *l,
                         float *alpha) {
    const __m512 lo = _mm512_set1_ps(-87.0f), ninf = _mm512_set1_ps(-INFINITY);
    for (uint32_t i = 0; i < nq; i += 16) {
        __mmask16 k = nq - i >= 16 ? (__mmask16)0xFFFF : tail16(nq - i);
        __m512 mo = _mm512_mask_loadu_ps(ninf, k, m + i), mx = mo;
        for (uint32_t j = 0; j < nk; j++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(ST + (size_t)j * ldq + i));
        /* columns with nothing visible yet: subtract 0 (every term is then
         * exp(-inf) = 0) and keep alpha 1 */
        __mmask16 dead = _mm512_cmp_ps_mask(mx, ninf, _CMP_EQ_OQ);
        __m512 sub = _mm512_mask_mov_ps(mx, dead, _mm512_setzero_ps());
        __m512 sum = _mm512_setzero_ps();
        for (uint32_t j = 0; j < nk; j++) {
            float *row = ST + (size_t)j * ldq + i;
            __m512 d = _mm512_sub_ps(_mm512_loadu_ps(row), sub);
            __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, lo, _CMP_GE_OQ), exp512(d));
            _mm512_storeu_ps(row, e);
            sum = _mm512_add_ps(sum, e);
        }
        __m512 d = _mm512_sub_ps(mo, sub);
        __m512 a = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, lo, _CMP_GE_OQ), exp512(d));
        a = _mm512_mask_mov_ps(a, dead, _mm512_set1_ps(1.0f));
        _mm512_mask_storeu_ps(alpha + i, k, a);
        _mm512_mask_storeu_ps(l + i, k, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(k, l + i), sum));
        _mm512_mask_storeu_ps(m + i, k, mx);
    }
}

/* R queries x C vectors of 16 dims of O, over nk keys; mask on the last
 * vector (hd tails). */
#define PV_BLOCK(R, C)                                                                   \
    static inline void pv_##R##x##C(const float *ST, uint32_t ldq, uint32_t nk,         \
                                    const float *V, uint32_t hd, const float *alpha,    \
                                    float *O, uint64_t ldo, __mmask16 last) {            \
        __m512 acc[R][C];                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                    \
            __m512 a = _mm512_set1_ps(alpha[r]);                                         \
            _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)                                                  \
                acc[r][c] = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(c == C - 1 ? last : 0xFFFF, \
                                                                   O + r * ldo + 16 * c)); \
        }                                                                                \
        for (uint32_t j = 0; j < nk; j++) {                                              \
            __m512 v[C];                                                                 \
            _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)                                                  \
                v[c] = _mm512_maskz_loadu_ps(c == C - 1 ? last : 0xFFFF, V + (size_t)j * hd + 16 * c); \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                \
                __m512 p = _mm512_set1_ps(ST[(size_t)j * ldq + r]);                      \
                _Pragma("GCC unroll 8") for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(p, v[c], acc[r][c]); \
            }                                                                            \
        }                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                      \
            _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)                                                  \
                _mm512_mask_storeu_ps(O + r * ldo + 16 * c, c == C - 1 ? last : 0xFFFF, acc[r][c]); \
    }
PV_BLOCK(4, 4)
PV_BLOCK(1, 4)
PV_BLOCK(4, 1)
PV_BLOCK(1, 1)

static void pv(const float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, const float *V,
               uint32_t hd, const float *alpha, float *O, uint64_t ldo) {
    uint32_t d = 0;
    for (; d + 64 <= hd; d += 64) {
        uint32_t i = 0;
        for (; i + 4 <= nq; i += 4)
            pv_4x4(ST + i, ldq, nk, V + d, hd, alpha + i, O + i * ldo + d, ldo, 0xFFFF);
        for (; i < nq; i++) pv_1x4(ST + i, ldq, nk, V + d, hd, alpha + i, O + i * ldo + d, ldo, 0xFFFF);
    }
    for (; d < hd; d += 16) {
        __mmask16 last = hd - d >= 16 ? (__mmask16)0xFFFF : tail16(hd - d);
        uint32_t i = 0;
        for (; i + 4 <= nq; i += 4)
            pv_4x1(ST + i, ldq, nk, V + d, hd, alpha + i, O + i * ldo + d, ldo, last);
        for (; i < nq; i++) pv_1x1(ST + i, ldq, nk, V + d, hd, alpha + i, O + i * ldo + d, ldo, last);
    }
}

static inline __m512 bf16x16(const uint16_t *p, __mmask16 k) {
    __m256i h = _mm256_maskz_loadu_epi16(k, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static void bf16_f32(float *dst, const uint16_t *src, uint64_t n) {
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, bf16x16(src + i, 0xFFFF));
    if (i < n) _mm512_mask_storeu_ps(dst + i, tail16((uint32_t)(n - i)), bf16x16(src + i, tail16((uint32_t)(n - i))));
}

static float dot_bf16(const float *a, const uint16_t *b, uint64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), bf16x16(b + i, 0xFFFF), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), bf16x16(b + i + 16, 0xFFFF), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : tail16((uint32_t)(n - i));
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), bf16x16(b + i, m), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void axpy_bf16(float *y, float a, const uint16_t *x, uint64_t n) {
    __m512 va = _mm512_set1_ps(a);
    for (uint64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : tail16((uint32_t)(n - i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, bf16x16(x + i, m), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

const mg__vec_fns mg__vec_avx512 = {dot, axpy, gelu, expsum, vmax, qk, softmax_tile, pv,
                                    bf16_f32, dot_bf16, axpy_bf16};
