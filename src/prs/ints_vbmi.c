/* ints_vbmi.c - what the integer kernels of ints.h share (the dosage tiles
 * B from the .bed bytes, the walk over groups and chunks, the matrix A) and
 * the AVX512-VNNI kernel; compiled with AVX512-VBMI and VNNI, called only
 * where mg__ints_available() is not none. */
#include "prs/ints.h"

#include <immintrin.h>
#include <string.h>

/* Byte patterns that turn the .bed bytes of 4 slots x 64 samples (lane t of
 * x: slot t's 16 bytes) into B tile rows: byte 4n + t of the row for sample
 * tile i is slot t's dosage for sample 16i + n. vpermb brings the byte
 * holding samples 16i + 2m, + 2m + 1 of each slot into qword m, vpmultishiftqb
 * moves each sample's bit pair to the bottom of its byte, and the slot number
 * above it indexes the quad's 16-byte table with vpshufb. */
typedef struct bpat {
    __m512i idx[4], ctrl, tnum;
} bpat;

static void bpat_init(bpat *bp) {
    uint8_t idx[4][64], ctrl[64], tnum[64];
    for (int m = 0; m < 8; m++)
        for (int e = 0; e < 2; e++)
            for (int t = 0; t < 4; t++) {
                int pos = 8 * m + 4 * e + t;
                for (int i = 0; i < 4; i++) idx[i][pos] = (uint8_t)(16 * t + 4 * i + m / 2);
                ctrl[pos] = (uint8_t)(8 * t + 2 * (2 * (m % 2) + e));
                tnum[pos] = (uint8_t)(t << 2);
            }
    for (int i = 0; i < 4; i++) bp->idx[i] = _mm512_loadu_si512(idx[i]);
    bp->ctrl = _mm512_loadu_si512(ctrl);
    bp->tnum = _mm512_loadu_si512(tnum);
}

/* B tiles of sample tiles p0 .. p0 + np - 1 (np <= 4) for k-steps c0 ..
 * c0 + nc - 1: bbuf[(i x CK + k) KiB]. */
static void build_b(const mg__ints_step *s, const bpat *bp, uint64_t p0, uint32_t np,
                    uint32_t c0, uint32_t nc, uint8_t *bbuf) {
    const __m512i three = _mm512_set1_epi8(3);
    const uint64_t off = 4 * p0;
    for (uint32_t k = 0; k < nc; k++) {
        const unsigned char *const *g = s->geno + (uint64_t)(c0 + k) * MG__INT_SLOTS;
        const uint8_t *lut = s->lut + (uint64_t)(c0 + k) * 256;
        uint8_t *dst = bbuf + (uint64_t)k * 1024;
        for (int j = 0; j < 16; j++, g += 4) {
            __m512i x = _mm512_castsi128_si512(_mm_loadu_si128((const void *)(g[0] + off)));
            x = _mm512_inserti32x4(x, _mm_loadu_si128((const void *)(g[1] + off)), 1);
            x = _mm512_inserti32x4(x, _mm_loadu_si128((const void *)(g[2] + off)), 2);
            x = _mm512_inserti32x4(x, _mm_loadu_si128((const void *)(g[3] + off)), 3);
            __m512i lv = _mm512_broadcast_i32x4(_mm_loadu_si128((const void *)(lut + 16 * j)));
            for (uint32_t i = 0; i < np; i++) {
                __m512i v = _mm512_permutexvar_epi8(bp->idx[i], x);
                v = _mm512_multishift_epi64_epi8(bp->ctrl, v);
                v = _mm512_ternarylogic_epi32(v, three, bp->tnum, 0xEA); /* v & 3 | t << 2 */
                v = _mm512_shuffle_epi8(lv, v);
                _mm512_storeu_si512(dst + (uint64_t)i * MG__INTS_CK * 1024 + 64 * j, v);
            }
        }
    }
}

/* Asks for the .bed bytes of tiles g0 .. g0 + ng - 1 in k-steps c0 .. c0 +
 * nc - 1 (one or two cache lines of each of 64 nc rows a stride apart,
 * which the hardware prefetchers do not foresee), to arrive in L2 while the
 * current chunk's products run: the VNNI kernel's time on a 4096-variant
 * block of 10,000 samples went down by a fifth at 1 score, by an eighth at
 * 10 (into L1 instead, 64 KiB at 24 tiles: no gain). */
static void prefetch_geno(const mg__ints_step *s, uint64_t g0, uint32_t ng, uint32_t c0, uint32_t nc) {
    const unsigned char *const *g = s->geno + (uint64_t)c0 * MG__INT_SLOTS;
    const uint64_t lo = 4 * g0 & ~(uint64_t)63, hi = 4 * (g0 + (ng - 1) / 4 * 4) + 15; /* as build_b */
    for (uint32_t z = 0; z < nc * MG__INT_SLOTS; z++)
        for (uint64_t b = lo; b <= hi; b += 64) _mm_prefetch((const char *)(g[z] + b), _MM_HINT_T1);
}

void mg__ints_walk(const mg__ints_step *s, mg__ints_chunk_fn fn) {
    bpat bp;
    bpat_init(&bp);
    for (uint64_t g0 = s->t0; g0 < s->t1; g0 += MG__INTS_GROUP) {
        const uint32_t ng = s->t1 - g0 < MG__INTS_GROUP ? (uint32_t)(s->t1 - g0) : MG__INTS_GROUP;
        for (uint32_t c0 = 0; c0 < s->nks; c0 += MG__INTS_CK) {
            uint32_t nc = s->nks - c0 < MG__INTS_CK ? s->nks - c0 : MG__INTS_CK;
            for (uint32_t q = 0; q < ng; q += 4)
                build_b(s, &bp, g0 + q, ng - q < 4 ? ng - q : 4, c0, nc,
                        s->bbuf + (uint64_t)q * MG__INTS_CK * 1024);
            if (c0 + MG__INTS_CK < s->nks) {
                uint32_t c1 = c0 + MG__INTS_CK;
                prefetch_geno(s, g0, ng, c1, s->nks - c1 < MG__INTS_CK ? s->nks - c1 : MG__INTS_CK);
            }
            fn(s, g0, ng, c0, nc);
        }
    }
}

/* ---- the VNNI kernel ----------------------------------------------------- */

/* VPDPBUSD adds to each int32 lane the products of 4 unsigned bytes by 4
 * signed ones: lane n of B row q (sample n's dosages of slot quad q) times
 * the 4 digits of A row m at quad q, broadcast, is the AMX product's term
 * for (m, n) and quad q. A register block holds VNNI_R rows x ns (<=
 * VNNI_S) sample tiles of sums across the chunk's k-steps: per quad, ns
 * loads of B and VNNI_R broadcasts feed VNNI_R x ns products. */
#define VNNI_R 8  /* A rows per block (divides 16 x nat: blocks end in A) */
#define VNNI_S 3  /* sample tiles per block: 24 sums + 3 B in 32 zmm      */
_Static_assert(VNNI_S == 3, "vnni_chunk dispatches on 3, 2 or 1 tiles");

/* Rows ar[0 .. VNNI_R) (each 64 bytes, a k-step apart by astride) times
 * the B tiles b + (i x CK + k) KiB of tiles i < ns, added to the sums
 * c + i x tstride ([row][16 samples]). ns is a constant where inlined. */
static inline __attribute__((always_inline)) void
vnni_block(const int8_t *ar, uint64_t astride, const uint8_t *b, uint32_t nc, int32_t *c,
           uint64_t tstride, const int ns) {
    __m512i sum[VNNI_R][VNNI_S];
#pragma GCC unroll 8
    for (int r = 0; r < VNNI_R; r++)
#pragma GCC unroll 3
        for (int i = 0; i < ns; i++) sum[r][i] = _mm512_loadu_si512(c + i * tstride + 16 * r);
    for (uint32_t k = 0; k < nc; k++) {
        const int8_t *a = ar + k * astride;
        const uint8_t *bk = b + (uint64_t)k * 1024;
#pragma GCC unroll 2
        for (int q = 0; q < 16; q++) {
            __m512i bv[VNNI_S];
#pragma GCC unroll 3
            for (int i = 0; i < ns; i++)
                bv[i] = _mm512_loadu_si512(bk + (uint64_t)i * MG__INTS_CK * 1024 + 64 * q);
#pragma GCC unroll 8
            for (int r = 0; r < VNNI_R; r++) {
                int32_t d4;
                memcpy(&d4, a + 64 * r + 4 * q, 4);
                __m512i av = _mm512_set1_epi32(d4);
#pragma GCC unroll 3
                for (int i = 0; i < ns; i++) sum[r][i] = _mm512_dpbusd_epi32(sum[r][i], bv[i], av);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < VNNI_R; r++)
#pragma GCC unroll 3
        for (int i = 0; i < ns; i++) _mm512_storeu_si512(c + i * tstride + 16 * r, sum[r][i]);
}

/* The products of one chunk: per block of VNNI_S sample tiles (their B of
 * the chunk, 24 KiB, stays in L1), every block of VNNI_R rows in use (the
 * chunk's rows stream from L2, each read once per tile block). */
static void vnni_chunk(const mg__ints_step *s, uint64_t g0, uint32_t ng, uint32_t c0, uint32_t nc) {
    const uint64_t tstride = (uint64_t)s->nat * 256, astride = (uint64_t)s->nat * 1024;
    const uint32_t rows = (s->nrow + VNNI_R - 1) / VNNI_R * VNNI_R;
    const int8_t *a0 = s->A + (uint64_t)c0 * astride;
    for (uint32_t t = 0; t < ng; t += VNNI_S) {
        const uint8_t *b = s->bbuf + (uint64_t)t * MG__INTS_CK * 1024;
        int32_t *ct = s->acc + (g0 + t) * tstride;
        uint32_t ns = ng - t < VNNI_S ? ng - t : VNNI_S;
        for (uint32_t m = 0; m < rows; m += VNNI_R) {
            const int8_t *ar = a0 + (uint64_t)(m / 16) * 1024 + (m % 16) * 64;
            int32_t *c = ct + (uint64_t)(m / 16) * 256 + (m % 16) * 16;
            if (ns == 3) vnni_block(ar, astride, b, nc, c, tstride, 3);
            else if (ns == 2) vnni_block(ar, astride, b, nc, c, tstride, 2);
            else vnni_block(ar, astride, b, nc, c, tstride, 1);
        }
    }
}

void mg__ints_run_vnni(const mg__ints_step *s) { mg__ints_walk(s, vnni_chunk); }

/* ---- A (both kernels) ------------------------------------------------------ */

void mg__ints_build_a(const mg__ints_col *col, uint32_t K, const double *inv_s, uint32_t nat,
                      int8_t *A, int64_t *scratch) {
    int64_t *Q = scratch, *T = scratch + (uint64_t)MG__INT_SLOTS * K; /* [z][k], [k][z] */
    memset(A, 0, (size_t)nat * 1024);
    for (uint32_t z = 0; z < MG__INT_SLOTS; z++) {
        int64_t *q = Q + (uint64_t)z * K;
        const double *w = col[z].w;
        if (!w || col[z].mult == 0) {
            memset(q, 0, (size_t)K * sizeof *q);
            continue;
        }
        __m512d m = _mm512_set1_pd(col[z].mult);
        uint32_t k = 0;
        for (; k + 8 <= K; k += 8) {
            __m512d x = _mm512_mul_pd(_mm512_mul_pd(_mm512_loadu_pd(w + k), m), _mm512_loadu_pd(inv_s + k));
            _mm512_storeu_si512(q + k, _mm512_cvtpd_epi64(x)); /* rounds to nearest even */
        }
        if (k < K) {
            __mmask8 mk = (__mmask8)((1u << (K - k)) - 1);
            __m512d x = _mm512_mul_pd(_mm512_mul_pd(_mm512_maskz_loadu_pd(mk, w + k), m),
                                      _mm512_maskz_loadu_pd(mk, inv_s + k));
            _mm512_mask_storeu_epi64(q + k, mk, _mm512_cvtpd_epi64(x));
        }
    }
    for (uint32_t z = 0; z < MG__INT_SLOTS; z++)
        for (uint32_t k = 0; k < K; k++) T[(uint64_t)k * MG__INT_SLOTS + z] = Q[(uint64_t)z * K + k];
    const __m512i ff = _mm512_set1_epi64(0xff), h80 = _mm512_set1_epi64(0x80);
    for (uint32_t k = 0; k < K; k++) {
        __m512i q[8];
        for (int i = 0; i < 8; i++) q[i] = _mm512_loadu_si512(T + (uint64_t)k * MG__INT_SLOTS + 8 * i);
        for (uint32_t j = 0; j < MG__INT_DIGITS; j++) {
            uint32_t m = k * MG__INT_DIGITS + j;
            int8_t *row = A + (uint64_t)(m / 16) * 1024 + (m % 16) * 64;
            for (int i = 0; i < 8; i++) {
                /* balanced digit: the low byte read as signed; q = (q - d) / 256 */
                __m512i d = _mm512_sub_epi64(_mm512_xor_si512(_mm512_and_si512(q[i], ff), h80), h80);
                _mm_storel_epi64((__m128i *)(void *)(row + 8 * i), _mm512_cvtepi64_epi8(d));
                q[i] = _mm512_srai_epi64(_mm512_sub_epi64(q[i], d), 8);
            }
        }
    }
    uint32_t mn = K * MG__INT_DIGITS, mm = mn + 1;
    int8_t *rn = A + (uint64_t)(mn / 16) * 1024 + (mn % 16) * 64;
    int8_t *rm = A + (uint64_t)(mm / 16) * 1024 + (mm % 16) * 64;
    for (uint32_t z = 0; z < MG__INT_SLOTS; z++) {
        rn[z] = col[z].w ? col[z].named : 0;
        rm[z] = col[z].w ? col[z].miss : 0;
    }
}
