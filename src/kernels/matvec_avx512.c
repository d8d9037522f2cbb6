/* matvec_avx512.c - AVX-512 row kernels, activation quantization and row
 * dequantization. Compiled with AVX-512 F/BW/VL/DQ (+BF16/VNNI) flags; the
 * base kernels use only F/BW/VL/DQ, the _vnni ones also AVX512_VNNI, and
 * matvec.c calls each only after checking CPUID for it. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#define MG_INLINE static inline __attribute__((always_inline))

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline void store_y(float *y, int acc, float t) { *y = acc ? *y + t : t; }

static inline __m512 load16_bf16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static inline __m512 load16_bf16_tail(const uint16_t *p, __mmask16 k) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/* ---- float rows ------------------------------------------------------------ */

/* LOADW(off) yields 16 weights as f32 from column c + off; TAILW(k) the
 * masked tail at column c. */
#define FLOAT_ROWS(NAME, WT, LOADW, TAILW)                                      \
    static void NAME(const void *W, size_t rb, uint64_t nrows, uint64_t cols,  \
                     const void *xv, float *y, int acc) {                      \
        const float *x = xv;                                                   \
        for (uint64_t r = 0; r < nrows; r++) {                                 \
            const WT *w = (const WT *)((const char *)W + r * rb);              \
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;        \
            uint64_t c = 0;                                                    \
            for (; c + 64 <= cols; c += 64) {                                  \
                a0 = _mm512_fmadd_ps(LOADW(0), _mm512_loadu_ps(x + c), a0);    \
                a1 = _mm512_fmadd_ps(LOADW(16), _mm512_loadu_ps(x + c + 16), a1); \
                a2 = _mm512_fmadd_ps(LOADW(32), _mm512_loadu_ps(x + c + 32), a2); \
                a3 = _mm512_fmadd_ps(LOADW(48), _mm512_loadu_ps(x + c + 48), a3); \
            }                                                                  \
            for (; c + 16 <= cols; c += 16)                                    \
                a0 = _mm512_fmadd_ps(LOADW(0), _mm512_loadu_ps(x + c), a0);    \
            if (c < cols) {                                                    \
                __mmask16 k = (__mmask16)((1u << (cols - c)) - 1u);            \
                a1 = _mm512_fmadd_ps(TAILW(k), _mm512_maskz_loadu_ps(k, x + c), a1); \
            }                                                                  \
            __m512 s = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)); \
            store_y(y + r, acc, _mm512_reduce_add_ps(s));                      \
        }                                                                      \
    }

#define LW_F32(o) _mm512_loadu_ps(w + c + (o))
#define TW_F32(k) _mm512_maskz_loadu_ps(k, w + c)
#define LW_F16(o) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + c + (o))))
#define TW_F16(k) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, w + c))
#define LW_BF16(o) load16_bf16(w + c + (o))
#define TW_BF16(k) load16_bf16_tail(w + c, k)

FLOAT_ROWS(rows_f32, float, LW_F32, TW_F32)
FLOAT_ROWS(rows_f16, uint16_t, LW_F16, TW_F16)
FLOAT_ROWS(rows_bf16, uint16_t, LW_BF16, TW_BF16)

/* ---- quantized rows (integer dot products) ------------------------------- */

/* Sum of u8 a * s8 b over groups of 4 bytes, as int32 lanes. */
MG_INLINE __m512i dot512(__m512i a, __m512i b, int vnni) {
    if (vnni) return _mm512_dpbusd_epi32(_mm512_setzero_si512(), a, b);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(a, b), _mm512_set1_epi16(1));
}
MG_INLINE __m256i dot256(__m256i a, __m256i b, int vnni) {
    if (vnni) return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}

/* Two scales, each over 8 lanes. */
MG_INLINE __m512 scale2(float s0, float s1) {
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

MG_INLINE void rows_q8_0_t(const void *W, size_t rb, uint64_t nrows,
                           uint64_t cols, const void *xv, float *y, int acc,
                           int vnni) {
    const mg__xq8 *xq = xv;
    uint64_t nb = cols / MG__QK;
    const __m512i zero = _mm512_setzero_si512();
    for (uint64_t r = 0; r < nrows; r++) {
        const mg__block_q8_0 *b =
            (const mg__block_q8_0 *)((const char *)W + r * rb);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        uint64_t i = 0;
        for (; i + 4 <= nb; i += 4) {
            for (int h = 0; h < 2; h++) {
                uint64_t k = i + 2 * (uint64_t)h;
                __m512i w = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[k].qs)),
                    _mm256_loadu_si256((const __m256i *)b[k + 1].qs), 1);
                __m512i x = _mm512_loadu_si512(xq->q + k * MG__QK);
                __mmask64 neg = _mm512_movepi8_mask(w);
                __m512i sx = _mm512_mask_sub_epi8(x, neg, zero, x);
                __m512i s = dot512(_mm512_abs_epi8(w), sx, vnni);
                __m512 sc = scale2(h2f(b[k].d) * xq->d[k],
                                   h2f(b[k + 1].d) * xq->d[k + 1]);
                if (h == 0) a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, a0);
                else a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, a1);
            }
        }
        __m256 t = _mm256_setzero_ps();
        for (; i < nb; i++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)b[i].qs);
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq->q + i * MG__QK));
            __m256i s = dot256(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w), vnni);
            t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
                                _mm256_set1_ps(h2f(b[i].d) * xq->d[i]), t);
        }
        __m512 s = _mm512_add_ps(_mm512_add_ps(a0, a1),
                                 _mm512_zextps256_ps512(t));
        store_y(y + r, acc, _mm512_reduce_add_ps(s));
    }
}

MG_INLINE void rows_q4_0_t(const void *W, size_t rb, uint64_t nrows,
                           uint64_t cols, const void *xv, float *y, int acc,
                           int vnni) {
    const mg__xq8 *xq = xv;
    uint64_t nb = cols / MG__QK;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    /* puts s8[k] in lane 0 and s8[k+1] in lane 8; lane 2 of the source is 0 */
    const __m512i sidx = _mm512_setr_epi32(0, 2, 2, 2, 2, 2, 2, 2,
                                           1, 2, 2, 2, 2, 2, 2, 2);
    for (uint64_t r = 0; r < nrows; r++) {
        const mg__block_q4_0 *b =
            (const mg__block_q4_0 *)((const char *)W + r * rb);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        uint64_t i = 0;
        for (; i + 4 <= nb; i += 4) {
            for (int h = 0; h < 2; h++) {
                uint64_t k = i + 2 * (uint64_t)h;
                __m256i q = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b[k].qs)),
                    _mm_loadu_si128((const __m128i *)b[k + 1].qs), 1);
                __m256i lo = _mm256_and_si256(q, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                /* [lo_k, lo_k1, hi_k, hi_k1] -> [lo_k, hi_k, lo_k1, hi_k1] */
                __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                w = _mm512_shuffle_i64x2(w, w, _MM_SHUFFLE(3, 1, 2, 0));
                __m512i x = _mm512_loadu_si512(xq->q + k * MG__QK);
                __m512i corr = _mm512_permutexvar_epi32(
                    sidx, _mm512_zextsi128_si512(
                              _mm_loadl_epi64((const __m128i *)(xq->s8 + k))));
                __m512i s = _mm512_sub_epi32(dot512(w, x, vnni), corr);
                __m512 sc = scale2(h2f(b[k].d) * xq->d[k],
                                   h2f(b[k + 1].d) * xq->d[k + 1]);
                if (h == 0) a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, a0);
                else a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, a1);
            }
        }
        __m256 t = _mm256_setzero_ps();
        const __m128i m4s = _mm_set1_epi8(0x0f);
        for (; i < nb; i++) {
            __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
            __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4s),
                                         _mm_and_si128(q, m4s));
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq->q + i * MG__QK));
            __m256i s = _mm256_sub_epi32(dot256(w, x, vnni),
                                         _mm256_zextsi128_si256(_mm_cvtsi32_si128(xq->s8[i])));
            t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
                                _mm256_set1_ps(h2f(b[i].d) * xq->d[i]), t);
        }
        __m512 s = _mm512_add_ps(_mm512_add_ps(a0, a1),
                                 _mm512_zextps256_ps512(t));
        store_y(y + r, acc, _mm512_reduce_add_ps(s));
    }
}

static void rows_q8_0(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    rows_q8_0_t(W, rb, nrows, cols, xv, y, acc, 0);
}
static void rows_q8_0_vnni(const void *W, size_t rb, uint64_t nrows,
                           uint64_t cols, const void *xv, float *y, int acc) {
    rows_q8_0_t(W, rb, nrows, cols, xv, y, acc, 1);
}
static void rows_q4_0(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                      const void *xv, float *y, int acc) {
    rows_q4_0_t(W, rb, nrows, cols, xv, y, acc, 0);
}
static void rows_q4_0_vnni(const void *W, size_t rb, uint64_t nrows,
                           uint64_t cols, const void *xv, float *y, int acc) {
    rows_q4_0_t(W, rb, nrows, cols, xv, y, acc, 1);
}

/* q4_0 with AVX512-VBMI and VNNI, four blocks (72 bytes) of a row at a time.
 * The row is read in its stored layout: one 64-byte load and an 8-byte one
 * cover four blocks, a two-source byte permute gathers their 64 quant
 * bytes and a word permute their four f16 scales (no repacking). x is
 * rearranged once per call to match: per group of four blocks, 64 bytes of
 * their low-nibble partners (elements 0-15 of each block) then 64 of their
 * high-nibble ones (16-31), with each block's d_x and q4_0 offset term spread
 * over the four int32 lanes that hold the block's partial sums. One row at
 * a time: interleaving two rows' streams measured slower from DRAM on AMD
 * EPYC (the loads of x come from L1 either way). */
#define VB_MAXG (16384u / 128u) /* the column chunk of matvec.c: 128 groups */

__attribute__((target("avx512vbmi")))
static inline __m512 vb_row_group(const uint8_t *w, __m512i gidx, __m512i didx,
                                  __m512i xlo, __m512i xhi, __m512i corr,
                                  __m512 xd, __m512 acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i a = _mm512_loadu_si512(w);
    __m512i b = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(w + 64)));
    __m512i q = _mm512_permutex2var_epi8(a, gidx, b);
    __m512i lo = _mm512_and_si512(q, m4);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo),
                                    hi, xhi);
    s = _mm512_sub_epi32(s, corr);
    __m512 wd = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(didx, a)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(wd, xd), acc);
}

__attribute__((target("avx512vbmi")))
static void rows_q4_0_vbmi(const void *W, size_t rb, uint64_t nrows,
                           uint64_t cols, const void *xv, float *y, int acc) {
    const mg__xq8 *xq = xv;
    uint64_t nb = cols / MG__QK, ng = nb / 4;
    if (ng > VB_MAXG) { /* longer than matvec.c ever passes: the plain kernel */
        rows_q4_0_t(W, rb, nrows, cols, xv, y, acc, 1);
        return;
    }
    int8_t xp[VB_MAXG * 128] __attribute__((aligned(64)));
    float xd[VB_MAXG * 16] __attribute__((aligned(64)));
    int32_t co[VB_MAXG * 16] __attribute__((aligned(64)));
    for (uint64_t g = 0; g < ng; g++)
        for (int j = 0; j < 4; j++) {
            uint64_t k = 4 * g + (uint64_t)j;
            memcpy(xp + g * 128 + j * 16, xq->q + k * MG__QK, 16);
            memcpy(xp + g * 128 + 64 + j * 16, xq->q + k * MG__QK + 16, 16);
            for (int l = 0; l < 4; l++) {
                xd[g * 16 + (uint64_t)j * 4 + (uint64_t)l] = xq->d[k];
                co[g * 16 + (uint64_t)j * 4 + (uint64_t)l] = l == 0 ? xq->s8[k] : 0;
            }
        }
    /* byte 16 j + t of the gathered quants is byte 2 + 18 j + t of the group;
     * word 4 j + l of the scales is word 9 j (the f16 d of block j) */
    uint8_t gi[64];
    uint16_t di[32];
    for (int j = 0; j < 4; j++)
        for (int t = 0; t < 16; t++) gi[16 * j + t] = (uint8_t)(2 + 18 * j + t);
    for (int i = 0; i < 32; i++) di[i] = (uint16_t)(9 * ((i / 4) & 3));
    const __m512i gidx = _mm512_loadu_si512(gi), didx = _mm512_loadu_si512(di);
    const uint64_t gb = 4 * sizeof(mg__block_q4_0);
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *w0 = (const uint8_t *)W + r * rb;
        __m512 a0 = _mm512_setzero_ps();
        for (uint64_t g = 0; g < ng; g++)
            a0 = vb_row_group(w0 + g * gb, gidx, didx, _mm512_load_si512(xp + g * 128),
                              _mm512_load_si512(xp + g * 128 + 64),
                              _mm512_load_si512(co + g * 16), _mm512_load_ps(xd + g * 16), a0);
        float t0 = _mm512_reduce_add_ps(a0);
        if (nb > 4 * ng) {
            float e;
            mg__xq8 tx = {xq->q + 4 * ng * MG__QK, xq->d + 4 * ng, xq->s8 + 4 * ng};
            rows_q4_0_t(w0 + ng * gb, rb, 1, (nb - 4 * ng) * MG__QK, &tx, &e, 0, 1);
            t0 += e;
        }
        store_y(y + r, acc, t0);
    }
}

/* The 16-row interleaved q4_0 layout (q4x16.c): per pair of blocks, eight
 * 64-byte quant vectors (four per block, 16 rows x 4 bytes) and two
 * 32-byte scale vectors. Each vector's low nibbles meet four activation
 * bytes broadcast from the block's first half, its high nibbles four from
 * the second half; a block's int32 sums start at minus its offset term, so
 * the 16 lanes end up holding the 16 rows' block sums, scaled in f32 by
 * d_w (16 scales at once) times d_x. Four independent sum chains per pair
 * keep vpdpbusd's latency hidden. */
MG_INLINE __m512i x16_block(const uint8_t *q, const int8_t *x, __m512i init) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i lo = init, hi = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512i v = _mm512_loadu_si512((const void *)(q + 64 * k));
        int32_t xl, xh;
        memcpy(&xl, x + 4 * k, 4);
        memcpy(&xh, x + 16 + 4 * k, 4);
        lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, m4), _mm512_set1_epi32(xl));
        hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                 _mm512_set1_epi32(xh));
    }
    return _mm512_add_epi32(lo, hi);
}

void mg__rows_q4x16_vnni(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                         const void *xv, float *y, int acc) {
    const mg__xq8 *xq = xv;
    const uint64_t np = cols / (2 * MG__QK);
    for (uint64_t g0 = 0; g0 < nrows; g0 += 16) {
        const uint8_t *g = (const uint8_t *)W + g0 * rb;
        __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
        for (uint64_t p = 0; p < np; p++, g += MG__Q4X16_PAIR) {
            const uint64_t b = 2 * p;
            __m512i s0 = x16_block(g, xq->q + b * MG__QK, _mm512_set1_epi32(-xq->s8[b]));
            __m512i s1 = x16_block(mg__q4x16_quants(g, 1), xq->q + (b + 1) * MG__QK,
                                   _mm512_set1_epi32(-xq->s8[b + 1]));
            __m512 d0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)mg__q4x16_scales(g, 0)));
            __m512 d1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)mg__q4x16_scales(g, 1)));
            f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0),
                                 _mm512_mul_ps(d0, _mm512_set1_ps(xq->d[b])), f0);
            f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1),
                                 _mm512_mul_ps(d1, _mm512_set1_ps(xq->d[b + 1])), f1);
        }
        __m512 t = _mm512_add_ps(f0, f1);
        if (acc) t = _mm512_add_ps(t, _mm512_loadu_ps(y + g0));
        _mm512_storeu_ps(y + g0, t);
    }
}

const mg__rows_fn mg__rows_avx512[5] = {rows_f32, rows_f16, rows_bf16,
                                        rows_q8_0, rows_q4_0};
const mg__rows_fn mg__rows_avx512vnni[5] = {NULL, NULL, NULL, rows_q8_0_vnni,
                                            rows_q4_0_vnni};
const mg__rows_fn mg__rows_avx512vbmi[5] = {NULL, NULL, NULL, NULL, rows_q4_0_vbmi};

/* ---- activation quantization ------------------------------------------- */

void mg__quantize_x8_avx512(const float *x, uint64_t n, int8_t *q, float *d,
                            int32_t *s8) {
    for (uint64_t b = 0; b < n / MG__QK; b++) {
        const float *xb = x + b * MG__QK;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        float amax = _mm512_reduce_max_ps(
            _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        s8[b] = 8 * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        _mm_storeu_si128((__m128i *)(q + b * MG__QK), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + b * MG__QK + 16), _mm512_cvtsepi32_epi8(i1));
    }
}

/* ---- row dequantization -------------------------------------------------- */

void mg__dequant_row_avx512(int32_t dtype, float *dst, const void *src,
                            uint64_t n) {
    uint64_t i = 0;
    switch (dtype) {
    case MG_DTYPE_F16: {
        const uint16_t *s = src;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
        for (; i < n; i++) dst[i] = h2f(s[i]);
        return;
    }
    case MG_DTYPE_BF16: {
        const uint16_t *s = src;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_bf16(s + i));
        for (; i < n; i++) dst[i] = mg__bf16_to_f32(s[i]);
        return;
    }
    case MG_DTYPE_Q8_0: {
        const mg__block_q8_0 *b = src;
        for (uint64_t k = 0; k < n / MG__QK; k++) {
            __m512 dv = _mm512_set1_ps(h2f(b[k].d));
            for (int j = 0; j < MG__QK; j += 16) {
                __m128i q = _mm_loadu_si128((const __m128i *)(b[k].qs + j));
                __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
                _mm512_storeu_ps(dst + k * MG__QK + j, _mm512_mul_ps(f, dv));
            }
        }
        return;
    }
    case MG_DTYPE_Q4_0: {
        const mg__block_q4_0 *b = src;
        const __m512i m = _mm512_set1_epi32(0x0f), eight = _mm512_set1_epi32(8);
        for (uint64_t k = 0; k < n / MG__QK; k++) {
            __m512 dv = _mm512_set1_ps(h2f(b[k].d));
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b[k].qs));
            __m512i lo = _mm512_sub_epi32(_mm512_and_si512(v, m), eight);
            __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(v, 4), eight);
            _mm512_storeu_ps(dst + k * MG__QK, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), dv));
            _mm512_storeu_ps(dst + k * MG__QK + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), dv));
        }
        return;
    }
    default:
        mg__dequantize_ref_row(dtype, dst, src, n);
        return;
    }
}
