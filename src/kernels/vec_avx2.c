/* vec_avx2.c - dot, axpy and tanh-GELU with AVX2 + FMA. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/vec.h"

static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float dot(const float *a, const float *b, uint64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float *y, float a, const float *x, uint64_t n) {
    __m256 va = _mm256_set1_ps(a);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* exp as in vec_avx512.c, with 2^k built from the exponent bits. */
static inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(87.0f)), _mm256_set1_ps(-87.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 gelu8(__m256 x) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 u = _mm256_mul_ps(_mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x),
                             _mm256_set1_ps(-1.5957691216057308f));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(u)));
}

static void gelu(float *y, const float *x, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float tx[8] = {0}, ty[8];
        for (uint64_t j = i; j < n; j++) tx[j - i] = x[j];
        _mm256_storeu_ps(ty, gelu8(_mm256_loadu_ps(tx)));
        for (uint64_t j = i; j < n; j++) y[j] = ty[j - i];
    }
}

static float expsum(float *x, float m, uint64_t n) {
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps(), lo = _mm256_set1_ps(-87.0f);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        __m256 e = _mm256_and_ps(_mm256_cmp_ps(d, lo, _CMP_GE_OQ), exp256(d));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float t[8];
    _mm256_storeu_ps(t, acc);
    float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    for (; i < n; i++) {
        float d = x[i] - m;
        x[i] = d < -87.0f ? 0.0f : expf(d);
        s += x[i];
    }
    return s;
}

static float vmax(const float *x, uint64_t n) {
    __m256 m = _mm256_set1_ps(x[0]);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float t[8], r;
    _mm256_storeu_ps(t, m);
    r = t[0];
    for (int j = 1; j < 8; j++) r = t[j] > r ? t[j] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

/* ---- attention tiles (vec.h) ---- */

/* 4 keys (or 1) x 16 queries, summed over d. */
#define QK_BLOCK(R)                                                                      \
    static inline void qk_##R(const float *K, uint32_t hd, const float *QT, uint32_t ldq, \
                              float scale, float *ST) {                                  \
        __m256 acc[R][2];                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();         \
        for (uint32_t d = 0; d < hd; d++) {                                              \
            __m256 q0 = _mm256_loadu_ps(QT + (size_t)d * ldq);                           \
            __m256 q1 = _mm256_loadu_ps(QT + (size_t)d * ldq + 8);                       \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                \
                __m256 k = _mm256_broadcast_ss(K + (size_t)r * hd + d);                  \
                acc[r][0] = _mm256_fmadd_ps(k, q0, acc[r][0]);                           \
                acc[r][1] = _mm256_fmadd_ps(k, q1, acc[r][1]);                           \
            }                                                                            \
        }                                                                                \
        __m256 vs = _mm256_set1_ps(scale);                                               \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                    \
            _mm256_storeu_ps(ST + (size_t)r * ldq, _mm256_mul_ps(acc[r][0], vs));        \
            _mm256_storeu_ps(ST + (size_t)r * ldq + 8, _mm256_mul_ps(acc[r][1], vs));    \
        }                                                                                \
    }
QK_BLOCK(4)
QK_BLOCK(1)

static void qk(const float *K, uint32_t nk, uint32_t hd, const float *QT, uint32_t ldq,
               float scale, float *ST) {
    for (uint32_t i = 0; i < ldq; i += 16) {
        uint32_t j = 0;
        for (; j + 4 <= nk; j += 4) qk_4(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
        for (; j < nk; j++) qk_1(K + (size_t)j * hd, hd, QT + i, ldq, scale, ST + (size_t)j * ldq + i);
    }
}

static void softmax_tile(float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, float *m, float *l,
                         float *alpha) {
    const __m256 lo = _mm256_set1_ps(-87.0f), ninf = _mm256_set1_ps(-INFINITY);
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    /* whole vectors of 8 columns: the tile's columns nq..ldq are scratch
     * (their results are not used), m, l and alpha are written for i < nq */
    for (uint32_t i = 0; i < nq; i += 8) {
        float mt[8], lt[8], at[8];
        uint32_t w = nq - i < 8 ? nq - i : 8;
        for (uint32_t c = 0; c < 8; c++) {
            mt[c] = c < w ? m[i + c] : -INFINITY;
            lt[c] = c < w ? l[i + c] : 0.0f;
        }
        __m256 mo = _mm256_loadu_ps(mt), mx = mo;
        for (uint32_t j = 0; j < nk; j++) mx = _mm256_max_ps(mx, _mm256_loadu_ps(ST + (size_t)j * ldq + i));
        __m256 dead = _mm256_cmp_ps(mx, ninf, _CMP_EQ_OQ);
        __m256 sub = _mm256_blendv_ps(mx, zero, dead);
        __m256 sum = zero;
        for (uint32_t j = 0; j < nk; j++) {
            float *row = ST + (size_t)j * ldq + i;
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(row), sub);
            __m256 e = _mm256_and_ps(_mm256_cmp_ps(d, lo, _CMP_GE_OQ), exp256(d));
            _mm256_storeu_ps(row, e);
            sum = _mm256_add_ps(sum, e);
        }
        __m256 d = _mm256_sub_ps(mo, sub);
        __m256 a = _mm256_and_ps(_mm256_cmp_ps(d, lo, _CMP_GE_OQ), exp256(d));
        a = _mm256_blendv_ps(a, one, dead);
        _mm256_storeu_ps(at, a);
        _mm256_storeu_ps(lt, _mm256_fmadd_ps(a, _mm256_loadu_ps(lt), sum));
        _mm256_storeu_ps(mt, mx);
        for (uint32_t c = 0; c < w; c++) {
            alpha[i + c] = at[c];
            l[i + c] = lt[c];
            m[i + c] = mt[c];
        }
    }
}

/* R queries x 16 dims of O over nk keys. */
#define PV_BLOCK(R)                                                                      \
    static inline void pv_##R(const float *ST, uint32_t ldq, uint32_t nk, const float *V, \
                              uint32_t hd, const float *alpha, float *O, uint64_t ldo) { \
        __m256 acc[R][2];                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                    \
            __m256 a = _mm256_set1_ps(alpha[r]);                                         \
            acc[r][0] = _mm256_mul_ps(a, _mm256_loadu_ps(O + r * ldo));                  \
            acc[r][1] = _mm256_mul_ps(a, _mm256_loadu_ps(O + r * ldo + 8));              \
        }                                                                                \
        for (uint32_t j = 0; j < nk; j++) {                                              \
            __m256 v0 = _mm256_loadu_ps(V + (size_t)j * hd);                             \
            __m256 v1 = _mm256_loadu_ps(V + (size_t)j * hd + 8);                         \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                \
                __m256 p = _mm256_broadcast_ss(ST + (size_t)j * ldq + r);                \
                acc[r][0] = _mm256_fmadd_ps(p, v0, acc[r][0]);                           \
                acc[r][1] = _mm256_fmadd_ps(p, v1, acc[r][1]);                           \
            }                                                                            \
        }                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                    \
            _mm256_storeu_ps(O + r * ldo, acc[r][0]);                                    \
            _mm256_storeu_ps(O + r * ldo + 8, acc[r][1]);                                \
        }                                                                                \
    }
PV_BLOCK(4)
PV_BLOCK(1)

static void pv(const float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, const float *V,
               uint32_t hd, const float *alpha, float *O, uint64_t ldo) {
    uint32_t d = 0;
    for (; d + 16 <= hd; d += 16) {
        uint32_t i = 0;
        for (; i + 4 <= nq; i += 4) pv_4(ST + i, ldq, nk, V + d, hd, alpha + i, O + i * ldo + d, ldo);
        for (; i < nq; i++) pv_1(ST + i, ldq, nk, V + d, hd, alpha + i, O + i * ldo + d, ldo);
    }
    if (d < hd) /* the last hd % 16 dims */
        for (uint32_t i = 0; i < nq; i++) {
            float *o = O + i * ldo;
            for (uint32_t e = d; e < hd; e++) o[e] *= alpha[i];
            for (uint32_t j = 0; j < nk; j++) {
                const float p = ST[(size_t)j * ldq + i], *v = V + (size_t)j * hd;
                for (uint32_t e = d; e < hd; e++) o[e] += p * v[e];
            }
        }
}

static inline __m256 bf16x8(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline float bf1(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void bf16_f32(float *dst, const uint16_t *src, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8(src + i));
    for (; i < n; i++) dst[i] = bf1(src[i]);
}

static float dot_bf16(const float *a, const uint16_t *b, uint64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), bf16x8(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), bf16x8(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), bf16x8(b + i), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * bf1(b[i]);
    return s;
}

static void axpy_bf16(float *y, float a, const uint16_t *x, uint64_t n) {
    __m256 va = _mm256_set1_ps(a);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, bf16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * bf1(x[i]);
}

const mg__vec_fns mg__vec_avx2 = {dot, axpy, gelu, expsum, vmax, qk, softmax_tile, pv,
                                  bf16_f32, dot_bf16, axpy_bf16};
