/* wide_avx2.c - the weights of one wide-file line, all at once (AVX2; see
 * mg__parse_fields_avx2 in prs_internal.h).
 *
 * The scalar reader finds where a number ends before it can start on the
 * next, so a line of 100 weights is one long chain of dependent steps. Here
 * the field starts come first, from a tab scan 32 bytes at a time; every
 * field is then converted on its own, and the CPU overlaps many of them.
 * A field of the usual shape ([sign] digits [. digits], at most 15 digits
 * and 15 bytes) is converted in one 16-byte register: the digits are moved
 * right-aligned past the dot with one byte shuffle and summed in pairs,
 * fours and eights by multiply-adds; the value is the same integer m and
 * the same power of ten as in the scalar reader, so the same double. Other
 * fields go to the scalar reader one by one. */
#include "prs/prs_internal.h"

#include <immintrin.h>
#include <string.h>

static const double p10_15[16] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                   1e11, 1e12, 1e13, 1e14, 1e15 };

/* The field at p of n bytes (no tab or NUL inside); 0 and *out, or -1
 * when it is not of the usual shape. Reads 16 bytes from p. */
static inline int field_short(const char *p, size_t n, double *out) {
    int neg = *p == '-';
    int sg = neg | (*p == '+');
    p += sg;
    n -= (size_t)sg;
    if (n == 0 || n > 15) return -1;
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    unsigned dig = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));
    unsigned n1 = (unsigned)__builtin_ctz(~dig), n2 = 0;
    if (n1 != n) {
        /* a dot, then digits up to the end of the field */
        if (p[n1] != '.') return -1;
        n2 = (unsigned)n - n1 - 1;
        if (((dig >> (n1 + 1)) & ((1u << n2) - 1)) != (1u << n2) - 1) return -1;
        if (n1 + n2 == 0) return -1;
    }
    unsigned nd = n1 + n2;
    /* output byte j takes digit t = j - 16 + nd, found at t + (t >= n1);
     * t < 0 gives a zero byte */
    const __m128i iota = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m128i t = _mm_add_epi8(iota, _mm_set1_epi8((char)((int)nd - 16)));
    __m128i src = _mm_sub_epi8(t, _mm_cmpgt_epi8(t, _mm_set1_epi8((char)((int)n1 - 1))));
    src = _mm_or_si128(src, _mm_cmpgt_epi8(_mm_setzero_si128(), t));
    __m128i x = _mm_shuffle_epi8(d, src);
    __m128i t1 = _mm_maddubs_epi16(x, _mm_setr_epi8(10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1));
    __m128i t2 = _mm_madd_epi16(t1, _mm_setr_epi16(100, 1, 100, 1, 100, 1, 100, 1));
    __m128i t3 = _mm_packus_epi32(t2, t2);
    __m128i t4 = _mm_madd_epi16(t3, _mm_setr_epi16(10000, 1, 10000, 1, 10000, 1, 10000, 1));
    uint64_t m = (uint64_t)(uint32_t)_mm_cvtsi128_si32(t4) * 100000000u +
                 (uint32_t)_mm_extract_epi32(t4, 1);
    double r = (double)m / p10_15[n2]; /* m < 10^15: exact; one rounding */
    uint64_t bits;
    memcpy(&bits, &r, sizeof bits);
    bits |= (uint64_t)neg << 63;
    memcpy(out, &bits, sizeof bits);
    return 0;
}

/* A field of another shape (an exponent, many digits) by the scalar reader. */
static int field_other(const char *p, size_t n, double *out) {
    const char *e;
    return mg__parse_prefix(p, &e, out) == 0 && e == p + n ? 0 : -1;
}

int mg__parse_fields_avx2(const char *s, uint32_t nk, double *w) {
    const __m256i tab = _mm256_set1_epi8('\t'), nul = _mm256_setzero_si256();
    size_t cur = 0; /* start of field k */
    uint32_t k = 0;
    int bad = 0;
    for (size_t o = 0;; o += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(s + o));
        uint32_t mt = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, tab));
        uint32_t mz = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, nul));
        if (mz) mt &= (mz & (0u - mz)) - 1; /* the tabs before the end */
        while (mt) {
            size_t e = o + (size_t)__builtin_ctz(mt);
            if (k + 1 >= nk) return -1; /* more fields than scores */
            if (field_short(s + cur, e - cur, &w[k]) != 0) bad |= field_other(s + cur, e - cur, &w[k]);
            k++;
            cur = e + 1;
            mt &= mt - 1;
        }
        if (mz) {
            size_t e = o + (size_t)__builtin_ctz(mz);
            if (k + 1 != nk) return -1;
            if (field_short(s + cur, e - cur, &w[k]) != 0) bad |= field_other(s + cur, e - cur, &w[k]);
            return bad ? -1 : 0;
        }
    }
}
