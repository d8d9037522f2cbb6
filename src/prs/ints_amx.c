/* ints_amx.c - the AMX kernel of ints.h (compiled with AMX-INT8 and
 * AVX512-VBMI; called only where mg__ints_available()). */
#include "prs/ints.h"

#include <immintrin.h>
#include <string.h>

typedef struct tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

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

void mg__ints_run_amx(const mg__ints_step *s) {
    tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    bpat bp;
    bpat_init(&bp);
    const uint32_t nat = s->nat;
    const uint64_t tstride = (uint64_t)nat * 256; /* int32 per sample tile */
    for (uint64_t g0 = s->t0; g0 < s->t1; g0 += MG__INTS_GROUP) {
        const uint32_t ng = s->t1 - g0 < MG__INTS_GROUP ? (uint32_t)(s->t1 - g0) : MG__INTS_GROUP;
        for (uint32_t c0 = 0; c0 < s->nks; c0 += MG__INTS_CK) {
            uint32_t nc = s->nks - c0 < MG__INTS_CK ? s->nks - c0 : MG__INTS_CK;
            for (uint32_t q = 0; q < ng; q += 4)
                build_b(s, &bp, g0 + q, ng - q < 4 ? ng - q : 4, c0, nc,
                        s->bbuf + (uint64_t)q * MG__INTS_CK * 1024);
            for (uint32_t ap = 0; ap < nat; ap += 2) {
                const int8_t *abase = s->A + (uint64_t)c0 * nat * 1024 + (uint64_t)ap * 1024;
                for (uint32_t tp = 0; tp < ng; tp += 2) {
                    int32_t *c00 = s->acc + (g0 + tp) * tstride + (uint64_t)ap * 256;
                    const uint8_t *b0 = s->bbuf + (uint64_t)tp * MG__INTS_CK * 1024;
                    if (tp + 1 < ng) {
                        int32_t *c01 = c00 + tstride;
                        const uint8_t *b1 = b0 + MG__INTS_CK * 1024;
                        _tile_loadd(0, c00, 64);
                        _tile_loadd(1, c00 + 256, 64);
                        _tile_loadd(2, c01, 64);
                        _tile_loadd(3, c01 + 256, 64);
                        for (uint32_t k = 0; k < nc; k++) {
                            const int8_t *a = abase + (uint64_t)k * nat * 1024;
                            _tile_loadd(4, a, 64);
                            _tile_loadd(5, a + 1024, 64);
                            _tile_loadd(6, b0 + (uint64_t)k * 1024, 64);
                            _tile_loadd(7, b1 + (uint64_t)k * 1024, 64);
                            _tile_dpbssd(0, 4, 6);
                            _tile_dpbssd(1, 5, 6);
                            _tile_dpbssd(2, 4, 7);
                            _tile_dpbssd(3, 5, 7);
                        }
                        _tile_stored(0, c00, 64);
                        _tile_stored(1, c00 + 256, 64);
                        _tile_stored(2, c01, 64);
                        _tile_stored(3, c01 + 256, 64);
                    } else {
                        _tile_loadd(0, c00, 64);
                        _tile_loadd(1, c00 + 256, 64);
                        for (uint32_t k = 0; k < nc; k++) {
                            const int8_t *a = abase + (uint64_t)k * nat * 1024;
                            _tile_loadd(4, a, 64);
                            _tile_loadd(5, a + 1024, 64);
                            _tile_loadd(6, b0 + (uint64_t)k * 1024, 64);
                            _tile_dpbssd(0, 4, 6);
                            _tile_dpbssd(1, 5, 6);
                        }
                        _tile_stored(0, c00, 64);
                        _tile_stored(1, c00 + 256, 64);
                    }
                }
            }
        }
    }
    _tile_release();
}

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
