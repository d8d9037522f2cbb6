/* quad_impl.h - the body of mg__quad_run_<isa> (quad.h), compiled once per
 * instruction set; QUAD_FN names the function, QUAD_AVX512 selects the
 * hand-vectorized additions. */
#include "prs/quad.h"

#include <string.h>
#ifdef QUAD_AVX512
#include <immintrin.h>
#endif

/* Tables of quad g for score lanes [k0, k0 + W): 256 rows of W doubles. */
#define QUAD_TABLES(NAME, W)                                                       \
static void NAME(const mg__quad_step *q, uint32_t g, uint32_t k0, double *restrict T) { \
    double w[4][W];                                                                \
    for (int i = 0; i < 4; i++) {                                                  \
        const double *src = q->w[4 * g + (uint32_t)i];                            \
        for (uint32_t k = 0; k < W; k++)                                           \
            w[i][k] = src && k0 + k < q->K ? src[k0 + k] : 0.0;                    \
    }                                                                              \
    const double *d = q->dose + (uint64_t)16 * g;                                  \
    for (int c0 = 0; c0 < 4; c0++)                                                 \
        for (int k = 0; k < W; k++) T[c0 * W + k] = d[c0] * w[0][k];               \
    /* joint code c0 | c1 << 2 | c2 << 4 | c3 << 6, one row at a time, highest  \
     * code first so that the code-0 slice is overwritten last */                 \
    for (int i = 1, span = 4; i < 4; i++, span *= 4)                               \
        for (int c = 3; c >= 0; c--) {                                             \
            double dw[W];                                                          \
            for (int k = 0; k < W; k++) dw[k] = d[4 * i + c] * w[i][k];            \
            for (int x = 0; x < span; x++) {                                       \
                double r[W];                                                       \
                memcpy(r, T + x * W, sizeof r);                                    \
                for (int k = 0; k < W; k++) r[k] += dw[k];                         \
                memcpy(T + (c * span + x) * W, r, sizeof r);                       \
            }                                                                      \
        }                                                                          \
}
QUAD_TABLES(quad_tables32, 32)
QUAD_TABLES(quad_tables16, 16)

#ifdef QUAD_AVX512
/* Four samples at a time, their W lanes held in registers across the quads
 * of the step (spelled out: compilers keep arrays of vectors in memory). */
#define LD(j, v) _mm512_loadu_pd(r[j] + 8 * (v))
#define ST(j, v, x) _mm512_storeu_pd(r[j] + 8 * (v), x)
#define ADD(x, t, v) x = _mm512_add_pd(x, _mm512_loadu_pd((t) + 8 * (v)))
#define QUAD_ROWS(W)                                                               \
        double *r[4];                                                              \
        for (int j = 0; j < 4; j++)                                                \
            r[j] = s + (uint64_t)j < ns ? q->sum + (lo + s + (uint64_t)j) * KP + k0 : dummy; \
        const uint8_t *cs = codes + s;
#define QUAD_PTRS(W)                                                               \
            uint32_t m;                                                            \
            memcpy(&m, cs, 4);                                                     \
            const double *tg = tab + (uint64_t)g * 256 * W;                        \
            const double *t0 = tg + (m & 0xffu) * W, *t1 = tg + ((m >> 8) & 0xffu) * W; \
            const double *t2 = tg + ((m >> 16) & 0xffu) * W, *t3 = tg + (m >> 24) * W;

static void quad_accum32(const mg__quad_step *q, uint32_t k0, const double *restrict tab,
                         const uint8_t *restrict codes, uint64_t ns4) {
    const uint32_t G = q->G;
    const uint64_t lo = q->lo, ns = q->hi - q->lo, KP = q->KP;
    double dummy[32];
    for (uint64_t s = 0; s < ns; s += 4) {
        QUAD_ROWS(32)
        __m512d a00 = LD(0, 0), a01 = LD(0, 1), a02 = LD(0, 2), a03 = LD(0, 3);
        __m512d a10 = LD(1, 0), a11 = LD(1, 1), a12 = LD(1, 2), a13 = LD(1, 3);
        __m512d a20 = LD(2, 0), a21 = LD(2, 1), a22 = LD(2, 2), a23 = LD(2, 3);
        __m512d a30 = LD(3, 0), a31 = LD(3, 1), a32 = LD(3, 2), a33 = LD(3, 3);
        for (uint32_t g = 0; g < G; g++, cs += ns4) {
            QUAD_PTRS(32)
            ADD(a00, t0, 0); ADD(a01, t0, 1); ADD(a02, t0, 2); ADD(a03, t0, 3);
            ADD(a10, t1, 0); ADD(a11, t1, 1); ADD(a12, t1, 2); ADD(a13, t1, 3);
            ADD(a20, t2, 0); ADD(a21, t2, 1); ADD(a22, t2, 2); ADD(a23, t2, 3);
            ADD(a30, t3, 0); ADD(a31, t3, 1); ADD(a32, t3, 2); ADD(a33, t3, 3);
        }
        ST(0, 0, a00); ST(0, 1, a01); ST(0, 2, a02); ST(0, 3, a03);
        ST(1, 0, a10); ST(1, 1, a11); ST(1, 2, a12); ST(1, 3, a13);
        ST(2, 0, a20); ST(2, 1, a21); ST(2, 2, a22); ST(2, 3, a23);
        ST(3, 0, a30); ST(3, 1, a31); ST(3, 2, a32); ST(3, 3, a33);
    }
}

static void quad_accum16(const mg__quad_step *q, uint32_t k0, const double *restrict tab,
                         const uint8_t *restrict codes, uint64_t ns4) {
    const uint32_t G = q->G;
    const uint64_t lo = q->lo, ns = q->hi - q->lo, KP = q->KP;
    double dummy[16];
    for (uint64_t s = 0; s < ns; s += 4) {
        QUAD_ROWS(16)
        __m512d a00 = LD(0, 0), a01 = LD(0, 1), a10 = LD(1, 0), a11 = LD(1, 1);
        __m512d a20 = LD(2, 0), a21 = LD(2, 1), a30 = LD(3, 0), a31 = LD(3, 1);
        for (uint32_t g = 0; g < G; g++, cs += ns4) {
            QUAD_PTRS(16)
            ADD(a00, t0, 0); ADD(a01, t0, 1); ADD(a10, t1, 0); ADD(a11, t1, 1);
            ADD(a20, t2, 0); ADD(a21, t2, 1); ADD(a30, t3, 0); ADD(a31, t3, 1);
        }
        ST(0, 0, a00); ST(0, 1, a01); ST(1, 0, a10); ST(1, 1, a11);
        ST(2, 0, a20); ST(2, 1, a21); ST(3, 0, a30); ST(3, 1, a31);
    }
}
#else
/* One sample at a time, in the same order of additions. */
#define QUAD_ACCUM(NAME, W)                                                        \
static void NAME(const mg__quad_step *q, uint32_t k0, const double *restrict tab,   \
                 const uint8_t *restrict codes, uint64_t ns4) {                    \
    const uint32_t G = q->G;                                                       \
    const uint64_t lo = q->lo, ns = q->hi - q->lo, KP = q->KP;                    \
    for (uint64_t s = 0; s < ns; s++) {                                            \
        double *restrict acc = q->sum + (lo + s) * KP + k0;                        \
        double v[W];                                                               \
        memcpy(v, acc, sizeof v);                                                  \
        for (uint32_t g = 0; g < G; g++) {                                         \
            const double *t = tab + ((uint64_t)g * 256 + codes[g * ns4 + s]) * W;  \
            for (int k = 0; k < W; k++) v[k] += t[k];                              \
        }                                                                          \
        memcpy(acc, v, sizeof v);                                                  \
    }                                                                              \
}
QUAD_ACCUM(quad_accum32, 32)
QUAD_ACCUM(quad_accum16, 16)
#endif

void QUAD_FN(const mg__quad_step *q) {
    const uint32_t G = q->G;
    const uint64_t lo = q->lo, hi = q->hi, ns = hi - lo, ns4 = (ns + 3) & ~(uint64_t)3;
    uint8_t *restrict codes = q->codes;
    int64_t *restrict itab = q->itab;

    /* spread[b]: the four 2-bit codes of .bed byte b, one per byte */
    uint32_t spread[256];
    for (uint32_t b = 0; b < 256; b++)
        spread[b] = (b & 3u) | ((b >> 2) & 3u) << 8 | ((b >> 4) & 3u) << 16 | (b >> 6) << 24;
    /* joint codes c0 | c1 << 2 | c2 << 4 | c3 << 6 of every sample, per quad
     * (lo is a multiple of 4, so sample lo + 4i + j is bit pair j of byte
     * lo / 4 + i), and the packed counts */
    for (uint32_t g = 0; g < G; g++) {
        const int64_t *ip = q->ipk + (uint64_t)16 * g;
        int64_t *it = itab + (uint64_t)256 * g;
        for (int c = 0; c < 256; c++)
            it[c] = ip[c & 3] + ip[4 + ((c >> 2) & 3)] + ip[8 + ((c >> 4) & 3)] + ip[12 + (c >> 6)];
        const unsigned char *g0 = q->geno[4 * g] + lo / 4, *g1 = q->geno[4 * g + 1] + lo / 4;
        const unsigned char *g2 = q->geno[4 * g + 2] + lo / 4, *g3 = q->geno[4 * g + 3] + lo / 4;
        uint8_t *cg = codes + g * ns4;
        for (uint64_t i = 0; i < ns4 / 4; i++) {
            uint32_t m = spread[g0[i]] | spread[g1[i]] << 2 | spread[g2[i]] << 4 | spread[g3[i]] << 6;
            memcpy(cg + 4 * i, &m, 4);
        }
    }
    for (uint32_t g = 0; g < G; g++) {
        const uint8_t *cg = codes + g * ns4;
        const int64_t *it = itab + (uint64_t)256 * g;
        int64_t *restrict ipack = q->ipack + lo;
        for (uint64_t s = 0; s < ns; s++) ipack[s] += it[cg[s]];
    }

    for (uint32_t k0 = 0; k0 < q->K;) {
        if (q->K - k0 > 16) {
            for (uint32_t g = 0; g < G; g++) quad_tables32(q, g, k0, q->tab + (uint64_t)g * 256 * 32);
            quad_accum32(q, k0, q->tab, codes, ns4);
            k0 += 32;
        } else {
            for (uint32_t g = 0; g < G; g++) quad_tables16(q, g, k0, q->tab + (uint64_t)g * 256 * 16);
            quad_accum16(q, k0, q->tab, codes, ns4);
            k0 += 16;
        }
    }
}
