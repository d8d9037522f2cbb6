/* matmul_avx512.c - prefill product Y = X W^T for q8_0/q4_0 weights on
 * AVX512-VNNI (vpdpbusd), the integer twin of the decode matvec.
 *
 * X is quantized once per call exactly as the matvec quantizes its vector
 * (mg__quantize_x8: 8 bits per 32-element block, scale amax/127), so every
 * output is the same block sum the matvec computes:
 *     Y[t][r] = sum_b dw[r][b] * dx[t][b] * sum_j w[r][b][j] * x[t][b][j].
 * Weights are repacked on the fly, one panel of 32 rows and one chunk of
 * columns at a time, into the layout vpdpbusd wants: for each block, eight
 * "quads" of four consecutive columns, each quad holding 16 rows x 4 bytes
 * in one 64-byte vector. The weight is the unsigned operand (q8_0 stored
 * as w + 128, q4_0 as its raw nibble, i.e. w + 8) and the activation the
 * signed one, broadcast four bytes at a time; the offset comes back out
 * through the block's activation sum (mg__quantize_x8's s8 = 8 * sum q).
 * Every weight byte is repacked once per call and then used for every row
 * of X, so the repack costs little next to the products for a prefill.
 *
 * Compiled with AVX-512 F/BW/VL/DQ + VNNI; matmul.c calls it only after
 * checking CPUID for AVX512_VNNI. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "kernels/simd512.h"

#define MG_INLINE static inline __attribute__((always_inline))

#define MR 4             /* rows of X per micro tile (4, 6, 8 measured alike) */
#define NG 2             /* 16-row groups per panel                         */
#define PR (16 * NG)     /* weight rows per panel                           */
#define KCB 32           /* blocks per column chunk (1024 columns)          */
#define QB (16 * MG__QK) /* bytes of one block of one 16-row group: 512     */

/* The panel of one column chunk: u[blk][g] is QB bytes, dw[blk][g] 16
 * scales; about 36 KiB on the stack of whichever thread runs the task. */
typedef struct {
    uint8_t u[KCB][NG][QB] __attribute__((aligned(64)));
    float dw[KCB][NG][16] __attribute__((aligned(64)));
} panel;

/* Rows r0..r0+nr of the weights, blocks b0..b0+kb, into p with gathers:
 * per 16-row group and block, one gather of the 16 scales and, for q4_0,
 * four gathers of four quant bytes (each holds quad q in its low nibbles and
 * quad q + 4 in its high ones), for q8_0 eight. Lanes past nr read nothing
 * and get the offset (weight 0) and scale 0. Twice as fast as copying the
 * bytes four at a time (4 vs 8 us per cold 32 x 1024 q4_0 chunk). Offsets
 * are 32-bit: 15 rows must fit (matmul.c sends only rows of up to 2^26
 * columns here). */
static void repack(int32_t dtype, const char *W, size_t row_bytes, uint64_t r0,
                          uint32_t nr, uint64_t b0, uint32_t kb, panel *p) {
    const int q8 = dtype == MG_DTYPE_Q8_0;
    const size_t bs = q8 ? sizeof(mg__block_q8_0) : sizeof(mg__block_q4_0);
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int32_t)row_bytes));
    const __m512i lo4 = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
    for (uint32_t g = 0; g < NG; g++) {
        uint32_t left = nr > g * 16 ? nr - g * 16 : 0;
        __mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1u);
        const __m512i fill = q8 ? _mm512_setzero_si512() : _mm512_set1_epi8((char)0x88);
        if (!m) {
            for (uint32_t b = 0; b < kb; b++) {
                _mm512_store_ps(p->dw[b][g], _mm512_setzero_ps());
                for (uint32_t q = 0; q < 8; q++)
                    _mm512_store_si512((void *)(p->u[b][g] + q * 64),
                                       q8 ? flip : _mm512_set1_epi8(0x08));
            }
            continue;
        }
        if (dtype == MG__DTYPE_Q4_0X16) {
            /* the 16-row decode layout (kernels.h): plain loads, no gathers;
             * rows come in whole groups, so m is all or nothing here */
            const uint8_t *gp = (const uint8_t *)W + (r0 + g * 16) * row_bytes;
            for (uint32_t b = 0; b < kb; b++) {
                uint64_t bb = b0 + b;
                const uint8_t *q = mg__q4x16_quants(gp, bb), *sc = mg__q4x16_scales(gp, bb);
                _mm512_store_ps(p->dw[b][g],
                                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc)));
                uint8_t *u = p->u[b][g];
#pragma GCC unroll 4
                for (int q4 = 0; q4 < 4; q4++) {
                    __m512i v = _mm512_loadu_si512((const void *)(q + 64 * q4));
                    _mm512_store_si512((void *)(u + q4 * 64), _mm512_and_si512(v, lo4));
                    _mm512_store_si512((void *)(u + (q4 + 4) * 64),
                                       _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4));
                }
            }
            continue;
        }
        const char *base = W + (r0 + g * 16) * row_bytes + b0 * bs;
        for (uint32_t b = 0; b < kb; b++, base += bs) {
            /* f16 scale in the low half of each gathered dword */
            __m512i d32 = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base, 1);
            _mm512_store_ps(p->dw[b][g], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d32)));
            uint8_t *u = p->u[b][g];
            if (q8) {
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++) {
                    __m512i v = _mm512_mask_i32gather_epi32(fill, m, idx, base + 2 + q * 4, 1);
                    _mm512_store_si512((void *)(u + q * 64), _mm512_xor_si512(v, flip));
                }
            } else {
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    __m512i v = _mm512_mask_i32gather_epi32(fill, m, idx, base + 2 + q * 4, 1);
                    _mm512_store_si512((void *)(u + q * 64), _mm512_and_si512(v, lo4));
                    _mm512_store_si512((void *)(u + (q + 4) * 64),
                                       _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4));
                }
            }
        }
    }
}

/* The f32 accumulators of a micro tile (M rows x 32 columns of Y): zero, or
 * what Y holds from the previous column chunk; and back into Y. m0, m1: the
 * valid columns of the two 16-column halves (the panel's last rows). */
MG_INLINE void acc_load(const int M, __m512 f[][NG], const float *Y, uint64_t ldy, int first,
                        __mmask16 m0, __mmask16 m1) {
#pragma GCC unroll 8
    for (int t = 0; t < M; t++) {
        f[t][0] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, Y + t * ldy);
        f[t][1] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, Y + t * ldy + 16);
    }
}

MG_INLINE void acc_store(const int M, __m512 f[][NG], float *Y, uint64_t ldy, __mmask16 m0,
                         __mmask16 m1) {
#pragma GCC unroll 8
    for (int t = 0; t < M; t++) {
        _mm512_mask_storeu_ps(Y + t * ldy, m0, f[t][0]);
        _mm512_mask_storeu_ps(Y + t * ldy + 16, m1, f[t][1]);
    }
}

static void panel_masks(uint32_t nr, __mmask16 *m0, __mmask16 *m1) {
    *m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1u);
    *m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
}

/* One micro tile: M rows of X (t = 0..M-1 at xq + t * cols, xd/xs + t *
 * nb), kb blocks of the panel, into Y's 32 columns (ldy apart), adding to
 * what is there unless first. Each block's sums start at xs, minus the
 * weight offset times the block's sum of x (matmul.c computes it). */
MG_INLINE void tile(const int M, const panel *p, uint32_t kb, const int8_t *xq,
                    const float *xd, const int32_t *xs, uint64_t cols,
                    uint64_t nb, float *Y, uint64_t ldy, int first,
                    __mmask16 m0, __mmask16 m1) {
    __m512 f[MR][NG];
    acc_load(M, f, Y, ldy, first, m0, m1);
    for (uint32_t b = 0; b < kb; b++) {
        __m512i a[MR][NG];
#pragma GCC unroll 4
        for (int t = 0; t < M; t++) {
            a[t][0] = _mm512_set1_epi32(xs[t * nb + b]);
            a[t][1] = _mm512_set1_epi32(xs[t * nb + b]);
        }
        const uint8_t *u0 = p->u[b][0], *u1 = p->u[b][1];
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) {
            __m512i w0 = _mm512_load_si512((const void *)(u0 + q * 64));
            __m512i w1 = _mm512_load_si512((const void *)(u1 + q * 64));
#pragma GCC unroll 4
            for (int t = 0; t < M; t++) {
                int32_t xv;
                memcpy(&xv, xq + t * cols + b * MG__QK + q * 4, 4);
                __m512i x4 = _mm512_set1_epi32(xv);
                a[t][0] = _mm512_dpbusd_epi32(a[t][0], w0, x4);
                a[t][1] = _mm512_dpbusd_epi32(a[t][1], w1, x4);
            }
        }
        __m512 d0 = _mm512_load_ps(p->dw[b][0]), d1 = _mm512_load_ps(p->dw[b][1]);
#pragma GCC unroll 4
        for (int t = 0; t < M; t++) {
            __m512 dx = _mm512_set1_ps(xd[t * nb + b]);
            f[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[t][0]),
                                      _mm512_mul_ps(d0, dx), f[t][0]);
            f[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[t][1]),
                                      _mm512_mul_ps(d1, dx), f[t][1]);
        }
    }
    acc_store(M, f, Y, ldy, m0, m1);
}

void mg__matmul_q8_panels_vnni(const mg__q8_gemm *g, uint64_t p0, uint64_t p1) {
    panel p;
    const uint64_t nb = g->cols / MG__QK;
    for (uint64_t pi = p0; pi < p1; pi++) {
        uint64_t r0 = pi * PR;
        uint32_t nr = g->rows - r0 < PR ? (uint32_t)(g->rows - r0) : PR;
        __mmask16 m0, m1;
        panel_masks(nr, &m0, &m1);
        for (uint64_t b0 = 0; b0 < nb; b0 += KCB) {
            uint32_t kb = nb - b0 < KCB ? (uint32_t)(nb - b0) : KCB;
            repack(g->dtype, g->W, g->row_bytes, r0, nr, b0, kb, &p);
            uint64_t t = 0;
            for (; t + MR <= g->n; t += MR)
                tile(MR, &p, kb, g->xq + t * g->cols + b0 * MG__QK, g->xd + t * nb + b0,
                     g->xs + t * nb + b0, g->cols, nb, g->Y + t * g->ldy + r0, g->ldy,
                     b0 == 0, m0, m1);
            switch (g->n - t) {
#define TAIL(k)                                                                        \
    case k:                                                                            \
        tile(k, &p, kb, g->xq + t * g->cols + b0 * MG__QK, g->xd + t * nb + b0,        \
             g->xs + t * nb + b0, g->cols, nb, g->Y + t * g->ldy + r0, g->ldy,     \
             b0 == 0, m0, m1);                                                         \
        break;
            TAIL(3)
            TAIL(2)
            TAIL(1)
#undef TAIL
            default: break;
            }
        }
    }
}

/* ---- bf16 weights (AVX512_BF16) ------------------------------------------- */

/* The bf16 product works the same way without scales: X rounded to bf16
 * once per call, weights repacked 32 rows by BKC columns at a time into
 * pairs (vdpbf16ps multiplies two bf16 pairs per 32-bit lane and adds
 * both products to an f32 lane): per column pair, 16 rows x 4 bytes in
 * one 64-byte vector per group. Sums are in f32. */
#define BKC 512   /* columns per chunk: 256 pairs, 32 KiB of panel */
#define BMR 8     /* rows of X per micro tile: 16 f32 accumulators   */

typedef struct {
    uint32_t u[BKC / 2][NG][16] __attribute__((aligned(64)));
} bpanel;

/* What a micro tile does besides the sums: bias (at the panel's first row)
 * added in the first chunk, Y's old value too where acc, GELU in the last
 * chunk where gelu. */
typedef struct {
    const float *bias;
    int acc, gelu;
} bepi;

static void repack_bf16(const uint16_t *W, uint64_t cols, uint64_t r0, uint32_t nr,
                        uint64_t c0, uint32_t kp, bpanel *p) {
    for (uint32_t g = 0; g < NG; g++)
        for (uint32_t j = 0; j < 16; j++) {
            uint32_t r = g * 16 + j;
            if (r >= nr) {
                for (uint32_t q = 0; q < kp; q++) p->u[q][g][j] = 0;
                continue;
            }
            const uint16_t *src = W + (r0 + r) * cols + c0;
            for (uint32_t q = 0; q < kp; q++) {
                uint32_t w;
                memcpy(&w, src + 2 * q, 4);
                p->u[q][g][j] = w;
            }
        }
}

/* u: kp column pairs of one panel, NG x 16 32-bit lanes each (a bpanel's
 * rows or a prepacked panel's); X rows ldx apart. G: the 16-row groups in
 * use (1 where the panel's rows end in its first group: attention's 72-row
 * products end with an 8-row panel). */
MG_INLINE void btile(const int M, const int G, const uint32_t *u, uint32_t kp,
                     const uint16_t *xb, uint64_t ldx, float *Y, uint64_t ldy, int first,
                     __mmask16 m0, __mmask16 m1, const bepi *e) {
    __m512 f[BMR][NG];
    if (first) { /* bias, and Y's old value where it accumulates */
        __m512 b0 = e->bias ? _mm512_maskz_loadu_ps(m0, e->bias) : _mm512_setzero_ps();
        __m512 b1 = e->bias && G > 1 ? _mm512_maskz_loadu_ps(m1, e->bias + 16)
                                     : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int t = 0; t < M; t++) {
            f[t][0] = e->acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(m0, Y + t * ldy), b0) : b0;
            f[t][1] = G < 2 ? b1
                      : e->acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(m1, Y + t * ldy + 16), b1)
                               : b1;
        }
    } else {
#pragma GCC unroll 8
        for (int t = 0; t < M; t++) {
            f[t][0] = _mm512_maskz_loadu_ps(m0, Y + t * ldy);
            f[t][1] = G < 2 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, Y + t * ldy + 16);
        }
    }
    for (uint32_t q = 0; q < kp; q++) {
        __m512bh w0 = (__m512bh)_mm512_load_si512((const void *)(u + q * PR));
        __m512bh w1 = G < 2 ? w0 : (__m512bh)_mm512_load_si512((const void *)(u + q * PR + 16));
#pragma GCC unroll 8
        for (int t = 0; t < M; t++) {
            int32_t xv;
            memcpy(&xv, xb + t * ldx + 2 * q, 4);
            __m512bh x2 = (__m512bh)_mm512_set1_epi32(xv);
            f[t][0] = _mm512_dpbf16_ps(f[t][0], w0, x2);
            if (G > 1) f[t][1] = _mm512_dpbf16_ps(f[t][1], w1, x2);
        }
    }
    if (e->gelu) /* the last chunk of a product whose rows go through GELU */
#pragma GCC unroll 8
        for (int t = 0; t < M; t++) {
            f[t][0] = gelu16(f[t][0]);
            if (G > 1) f[t][1] = gelu16(f[t][1]);
        }
#pragma GCC unroll 8
    for (int t = 0; t < M; t++) {
        _mm512_mask_storeu_ps(Y + t * ldy, m0, f[t][0]);
        if (G > 1) _mm512_mask_storeu_ps(Y + t * ldy + 16, m1, f[t][1]);
    }
}

/* The micro tiles of one panel chunk with G groups in use: every row of X
 * against kp column pairs at u (column c0 on). */
MG_INLINE void bf16_chunk_g(const int G, const mg__bf16_gemm *g, const uint32_t *u,
                            uint64_t r0, uint64_t c0, uint32_t kc, __mmask16 m0,
                            __mmask16 m1) {
    const uint64_t ldx = g->ldx ? g->ldx : g->cols;
    const int first = c0 == 0;
    const bepi e = {first && g->bias ? g->bias + r0 : NULL, first && g->acc,
                    c0 + kc >= g->cols && g->act == MG__ACT_GELU};
    uint64_t t = 0;
    for (; t + BMR <= g->n; t += BMR)
        btile(BMR, G, u, kc / 2, g->xb + t * ldx + c0, ldx, g->Y + t * g->ldy + r0, g->ldy,
              first, m0, m1, &e);
    switch (g->n - t) {
#define TAIL(k)                                                                         \
    case k:                                                                             \
        btile(k, G, u, kc / 2, g->xb + t * ldx + c0, ldx, g->Y + t * g->ldy + r0, g->ldy, \
              first, m0, m1, &e);                                                       \
        break;
    TAIL(7)
    TAIL(6)
    TAIL(5)
    TAIL(4)
    TAIL(3)
    TAIL(2)
    TAIL(1)
#undef TAIL
    default: break;
    }
}

static void bf16_chunk(const mg__bf16_gemm *g, const uint32_t *u, uint64_t r0, uint64_t c0,
                       uint32_t kc, __mmask16 m0, __mmask16 m1) {
    if (m1) bf16_chunk_g(2, g, u, r0, c0, kc, m0, m1);
    else bf16_chunk_g(1, g, u, r0, c0, kc, m0, m1);
}

void mg__matmul_bf16_panels(const mg__bf16_gemm *g, uint64_t p0, uint64_t p1) {
    bpanel p;
    for (uint64_t pi = p0; pi < p1; pi++) {
        uint64_t r0 = pi * PR;
        uint32_t nr = g->rows - r0 < PR ? (uint32_t)(g->rows - r0) : PR;
        __mmask16 m0, m1;
        panel_masks(nr, &m0, &m1);
        for (uint64_t c0 = 0; c0 < g->cols; c0 += BKC) {
            uint32_t kc = g->cols - c0 < BKC ? (uint32_t)(g->cols - c0) : BKC;
            const uint32_t *u;
            if (g->Wp) { /* prepacked: the panel's pairs from c0 / 2 on */
                u = g->Wp + (pi * (g->cols / 2) + c0 / 2) * PR;
            } else {
                repack_bf16(g->W, g->cols, r0, nr, c0, kc / 2, &p);
                u = &p.u[0][0][0];
            }
            bf16_chunk(g, u, r0, c0, kc, m0, m1);
        }
    }
}

void mg__f32_to_bf16_avx512(uint16_t *dst, const float *src, uint64_t n, float scale) {
    uint64_t i = 0;
    __m512 s = _mm512_set1_ps(scale);
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(src + i + 16), s),
                                         _mm512_mul_ps(_mm512_loadu_ps(src + i), s));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    for (; i < n; i++) dst[i] = mg__f32_to_bf16(src[i] * scale);
}

/* Packs a bf16 weight matrix for mg__matmul_bf16_panels (kernels.h,
 * mg__bf16_pack): 16 lanes of a group at a time, elements loaded plainly
 * where the lanes are adjacent in memory (rs == 1), gathered otherwise. */
void mg__bf16_pack_avx512(uint32_t *dst, const float *src, uint64_t rs, uint64_t cs,
                          uint64_t rows, uint64_t cols, float scale) {
    const uint64_t kp = cols / 2, panels = (rows + PR - 1) / PR;
    const __m512 s = _mm512_set1_ps(scale);
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32((int32_t)rs));
    for (uint64_t p = 0; p < panels; p++)
        for (uint32_t g = 0; g < NG; g++) {
            uint64_t r0 = p * PR + g * 16;
            uint64_t left = rows > r0 ? rows - r0 : 0;
            __mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1u);
            uint32_t *d = dst + p * kp * PR + g * 16;
            const float *base = src + (m ? r0 * rs : 0);
            for (uint64_t q = 0; q < kp; q++) {
                const float *e0 = base + 2 * q * cs, *e1 = e0 + cs;
                __m512 a, b;
                if (rs == 1) {
                    a = _mm512_maskz_loadu_ps(m, e0);
                    b = _mm512_maskz_loadu_ps(m, e1);
                } else {
                    a = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, e0, 4);
                    b = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, e1, 4);
                }
                __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(a, s)));
                __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(b, s)));
                _mm512_store_si512((void *)(d + q * PR),
                                   _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
            }
        }
}
