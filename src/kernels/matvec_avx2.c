/* matvec_avx2.c - AVX2 + FMA + F16C row kernels, activation quantization and
 * row dequantization. Compiled with -mavx2 -mfma -mf16c; only called after
 * the run-time check in matvec.c. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v),
                              _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline __m256 load8_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static inline void store_y(float *y, int acc, float t) { *y = acc ? *y + t : t; }

/* ---- float rows ------------------------------------------------------------ */

static void rows_f32(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                     const void *xv, float *y, int acc) {
    const float *x = xv;
    for (uint64_t r = 0; r < nrows; r++) {
        const float *w = (const float *)((const char *)W + r * rb);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        uint64_t c = 0;
        for (; c + 32 <= cols; c += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 8), _mm256_loadu_ps(x + c + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 16), _mm256_loadu_ps(x + c + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 24), _mm256_loadu_ps(x + c + 24), a3);
        }
        for (; c + 8 <= cols; c += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a0);
        float t = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; c < cols; c++) t += w[c] * x[c];
        store_y(y + r, acc, t);
    }
}

static void rows_f16(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                     const void *xv, float *y, int acc) {
    const float *x = xv;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint16_t *w = (const uint16_t *)((const char *)W + r * rb);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        uint64_t c = 0;
#define LD(o) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + c + (o))))
        for (; c + 32 <= cols; c += 32) {
            a0 = _mm256_fmadd_ps(LD(0), _mm256_loadu_ps(x + c), a0);
            a1 = _mm256_fmadd_ps(LD(8), _mm256_loadu_ps(x + c + 8), a1);
            a2 = _mm256_fmadd_ps(LD(16), _mm256_loadu_ps(x + c + 16), a2);
            a3 = _mm256_fmadd_ps(LD(24), _mm256_loadu_ps(x + c + 24), a3);
        }
        for (; c + 8 <= cols; c += 8)
            a0 = _mm256_fmadd_ps(LD(0), _mm256_loadu_ps(x + c), a0);
#undef LD
        float t = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; c < cols; c++) t += h2f(w[c]) * x[c];
        store_y(y + r, acc, t);
    }
}

static void rows_bf16(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    const float *x = xv;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint16_t *w = (const uint16_t *)((const char *)W + r * rb);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        uint64_t c = 0;
        for (; c + 32 <= cols; c += 32) {
            a0 = _mm256_fmadd_ps(load8_bf16(w + c), _mm256_loadu_ps(x + c), a0);
            a1 = _mm256_fmadd_ps(load8_bf16(w + c + 8), _mm256_loadu_ps(x + c + 8), a1);
            a2 = _mm256_fmadd_ps(load8_bf16(w + c + 16), _mm256_loadu_ps(x + c + 16), a2);
            a3 = _mm256_fmadd_ps(load8_bf16(w + c + 24), _mm256_loadu_ps(x + c + 24), a3);
        }
        for (; c + 8 <= cols; c += 8)
            a0 = _mm256_fmadd_ps(load8_bf16(w + c), _mm256_loadu_ps(x + c), a0);
        float t = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; c < cols; c++) t += mg__bf16_to_f32(w[c]) * x[c];
        store_y(y + r, acc, t);
    }
}

/* ---- quantized rows (integer dot products) ------------------------------- */

/* sum over 32 pairs of u8 a * s8 b, as 8 int32 partial sums. */
static inline __m256i dot_u8s8(__m256i a, __m256i b) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}

static inline __m256i q8_dot(const mg__block_q8_0 *b, const int8_t *xq) {
    __m256i w = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i x = _mm256_loadu_si256((const __m256i *)xq);
    return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

static inline __m256i q4_dot(const mg__block_q4_0 *b, const int8_t *xq,
                             int32_t s8) {
    __m128i q = _mm_loadu_si128((const __m128i *)b->qs);
    __m128i m = _mm_set1_epi8(0x0f);
    __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m),
                                 _mm_and_si128(q, m));
    __m256i x = _mm256_loadu_si256((const __m256i *)xq);
    return _mm256_sub_epi32(dot_u8s8(w, x), _mm256_zextsi128_si256(_mm_cvtsi32_si128(s8)));
}

static void rows_q8_0(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    const mg__xq8 *xq = xv;
    uint64_t nb = cols / MG__QK;
    for (uint64_t r = 0; r < nrows; r++) {
        const mg__block_q8_0 *b =
            (const mg__block_q8_0 *)((const char *)W + r * rb);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        uint64_t i = 0;
        for (; i + 2 <= nb; i += 2) {
            __m256i s0 = q8_dot(&b[i], xq->q + i * MG__QK);
            __m256i s1 = q8_dot(&b[i + 1], xq->q + (i + 1) * MG__QK);
            a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0),
                                 _mm256_set1_ps(h2f(b[i].d) * xq->d[i]), a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1),
                                 _mm256_set1_ps(h2f(b[i + 1].d) * xq->d[i + 1]), a1);
        }
        for (; i < nb; i++) {
            __m256i s0 = q8_dot(&b[i], xq->q + i * MG__QK);
            a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0),
                                 _mm256_set1_ps(h2f(b[i].d) * xq->d[i]), a0);
        }
        store_y(y + r, acc, hsum8(_mm256_add_ps(a0, a1)));
    }
}

static void rows_q4_0(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    const mg__xq8 *xq = xv;
    uint64_t nb = cols / MG__QK;
    for (uint64_t r = 0; r < nrows; r++) {
        const mg__block_q4_0 *b =
            (const mg__block_q4_0 *)((const char *)W + r * rb);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        uint64_t i = 0;
        for (; i + 2 <= nb; i += 2) {
            __m256i s0 = q4_dot(&b[i], xq->q + i * MG__QK, xq->s8[i]);
            __m256i s1 = q4_dot(&b[i + 1], xq->q + (i + 1) * MG__QK, xq->s8[i + 1]);
            a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0),
                                 _mm256_set1_ps(h2f(b[i].d) * xq->d[i]), a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1),
                                 _mm256_set1_ps(h2f(b[i + 1].d) * xq->d[i + 1]), a1);
        }
        for (; i < nb; i++) {
            __m256i s0 = q4_dot(&b[i], xq->q + i * MG__QK, xq->s8[i]);
            a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0),
                                 _mm256_set1_ps(h2f(b[i].d) * xq->d[i]), a0);
        }
        store_y(y + r, acc, hsum8(_mm256_add_ps(a0, a1)));
    }
}

const mg__rows_fn mg__rows_avx2[5] = {rows_f32, rows_f16, rows_bf16, rows_q8_0,
                                      rows_q4_0};

/* ---- activation quantization ------------------------------------------- */

void mg__quantize_x8_avx2(const float *x, uint64_t n, int8_t *q, float *d,
                          int32_t *s8) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (uint64_t b = 0; b < n / MG__QK; b++) {
        const float *xb = x + b * MG__QK;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8),
               v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(
            _mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
            _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        s8[b] = 8 * hsum8i(_mm256_add_epi32(_mm256_add_epi32(i0, i1),
                                            _mm256_add_epi32(i2, i3)));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1),
                                       _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, perm);
        _mm256_storeu_si256((__m256i *)(q + b * MG__QK), p);
    }
}

/* ---- row dequantization -------------------------------------------------- */

void mg__dequant_row_avx2(int32_t dtype, float *dst, const void *src,
                          uint64_t n) {
    uint64_t i = 0;
    switch (dtype) {
    case MG_DTYPE_F16: {
        const uint16_t *s = src;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
        for (; i < n; i++) dst[i] = h2f(s[i]);
        return;
    }
    case MG_DTYPE_BF16: {
        const uint16_t *s = src;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_bf16(s + i));
        for (; i < n; i++) dst[i] = mg__bf16_to_f32(s[i]);
        return;
    }
    case MG_DTYPE_Q8_0: {
        const mg__block_q8_0 *b = src;
        for (uint64_t k = 0; k < n / MG__QK; k++) {
            __m256 dv = _mm256_set1_ps(h2f(b[k].d));
            for (int j = 0; j < MG__QK; j += 8) {
                __m128i q = _mm_loadl_epi64((const __m128i *)(b[k].qs + j));
                __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                _mm256_storeu_ps(dst + k * MG__QK + j, _mm256_mul_ps(f, dv));
            }
        }
        return;
    }
    case MG_DTYPE_Q4_0: {
        const mg__block_q4_0 *b = src;
        const __m256i m = _mm256_set1_epi32(0x0f), eight = _mm256_set1_epi32(8);
        for (uint64_t k = 0; k < n / MG__QK; k++) {
            __m256 dv = _mm256_set1_ps(h2f(b[k].d));
            float *o = dst + k * MG__QK;
            for (int j = 0; j < MG__QK / 2; j += 8) {
                __m128i q = _mm_loadl_epi64((const __m128i *)(b[k].qs + j));
                __m256i v = _mm256_cvtepu8_epi32(q);
                __m256i lo = _mm256_sub_epi32(_mm256_and_si256(v, m), eight);
                __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(v, 4), eight);
                _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), dv));
                _mm256_storeu_ps(o + j + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), dv));
            }
        }
        return;
    }
    default:
        mg__dequantize_ref_row(dtype, dst, src, n);
        return;
    }
}
