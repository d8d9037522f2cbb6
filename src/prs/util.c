/* util.c - text input helpers for the PRS readers. */
#include "prs/prs_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

int mg__lines_open(mg__lines *lr, const char *path) {
    memset(lr, 0, sizeof *lr);
    gzFile gz = gzopen(path, "rb");
    if (!gz) return -1;
    gzbuffer(gz, 1u << 17);
    lr->gz = gz;
    return 0;
}

int mg__lines_next(mg__lines *lr) {
    gzFile gz = (gzFile)lr->gz;
    size_t len = 0;
    for (;;) {
        if (lr->cap - len < 2) {
            size_t nc = lr->cap ? lr->cap * 2 : 4096;
            char *nb = mg__realloc(lr->buf, nc);
            if (!nb) return -2;
            lr->buf = nb;
            lr->cap = nc;
        }
        if (!gzgets(gz, lr->buf + len, (int)((lr->cap - len) > (1u << 30) ? (1u << 30) : (lr->cap - len)))) {
            int errnum = 0;
            gzerror(gz, &errnum);
            if (errnum != Z_OK && errnum != Z_BUF_ERROR) return -1;
            if (len == 0) return 0;
            break;
        }
        size_t got = strlen(lr->buf + len);
        len += got;
        if (len && lr->buf[len - 1] == '\n') break;
        if (gzeof(gz)) break;
    }
    while (len && (lr->buf[len - 1] == '\n' || lr->buf[len - 1] == '\r')) len--;
    lr->buf[len] = '\0';
    lr->len = len;
    lr->lineno++;
    return 1;
}

void mg__lines_close(mg__lines *lr) {
    if (lr->gz) gzclose((gzFile)lr->gz);
    mg__free(lr->buf);
    memset(lr, 0, sizeof *lr);
}

uint32_t mg__prs_threads(const mg_prs *p) {
    if (p->params.n_threads) return p->params.n_threads;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (uint32_t)c : 1;
}

/* exact powers of ten: doubles up to 1e22, integers up to 1e8 */
static const double p10_23[23] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                   1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                   1e20, 1e21, 1e22 };
static const uint64_t u10_8[9] = { 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000 };

static int parse_double_slow(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int mg__parse_double(const char *s, double *out) {
    /* Clinger's fast path: m and 10^|e| are exact doubles (m <= 2^53,
     * |e| <= 22), so one correctly rounded multiplication or division gives
     * the correctly rounded value, which is what strtod returns. */
    const char *p = s;
    int neg = 0, nd = 0, any = 0;
    int64_t e10 = 0;
    uint64_t m = 0;
    if (*p == '-' || *p == '+') neg = *p++ == '-';
    for (; *p >= '0' && *p <= '9'; p++) {
        any = 1;
        if (m == 0 && *p == '0') continue;
        if (nd++ == 19) return parse_double_slow(s, out);
        m = m * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++) {
            any = 1;
            e10--;
            if (m == 0 && *p == '0') continue;
            if (nd++ == 19) return parse_double_slow(s, out);
            m = m * 10 + (uint64_t)(*p - '0');
        }
    if (!any) return parse_double_slow(s, out);
    if (*p == 'e' || *p == 'E') {
        p++;
        int eneg = 0;
        int64_t en = 0;
        if (*p == '-' || *p == '+') eneg = *p++ == '-';
        if (!(*p >= '0' && *p <= '9')) return parse_double_slow(s, out);
        for (; *p >= '0' && *p <= '9'; p++)
            if (en < 100000) en = en * 10 + (*p - '0');
        e10 += eneg ? -en : en;
    }
    if (*p || m > ((uint64_t)1 << 53)) return parse_double_slow(s, out);
    double v = (double)m;
    if (m != 0) {
        if (e10 < -22 || e10 > 22) return parse_double_slow(s, out);
        if (e10 < 0) v /= p10_23[-e10];
        else v *= p10_23[e10];
    }
    *out = neg ? -v : v;
    return 0;
}

/* SWAR helpers for mg__parse_prefix: the number of leading digit bytes of
 * 8 bytes (in memory order) and their value. A non-digit byte's carry or
 * borrow only reaches later bytes, after the first non-digit. */
static inline int digit_run(uint64_t x) {
    const uint64_t hi = 0xf0f0f0f0f0f0f0f0ull, z = 0x3030303030303030ull;
    uint64_t m = ((x & hi) ^ z) | (((x + 0x0606060606060606ull) & hi) ^ z);
    return m ? __builtin_ctzll(m) / 8 : 8;
}

static inline uint64_t digits_value(uint64_t x, int n) { /* n in 1..8 */
    x <<= 8 * (8 - n); /* the missing leading digits become zero bytes */
    x &= 0x0f0f0f0f0f0f0f0full;
    x = (x * 2561) >> 8;
    x = ((x & 0x00ff00ff00ff00ffull) * 6553601) >> 16;
    return ((x & 0x0000ffff0000ffffull) * 42949672960001ull) >> 32;
}

#if defined(__SSE2__)
/* The usual weight, [sign] up to 8 digits [. up to 8 digits] and no
 * exponent, inside one 16-byte window: the digit bytes found with one
 * compare, each run's value by SWAR, no branch on the digits themselves.
 * The same m and power of ten as the general loop, so the same double.
 * -1 where it does not apply (the caller then takes the general loop). */
static inline int parse_short(const char *s, const char **end, double *out) {
    const char *p = s;
    int neg = *p == '-';
    p += neg | (*p == '+');
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    unsigned dig = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));
    unsigned n1 = (unsigned)__builtin_ctz(~dig), n2 = 0, len = n1;
    if (n1 > 8) return -1;
    if (p[n1] == '.') {
        n2 = (unsigned)__builtin_ctz(~(dig >> (n1 + 1)));
        len = n1 + 1 + n2;
        if (len >= 16) return -1;
    }
    if (n1 + n2 == 0 || (p[len] | 0x20) == 'e') return -1;
    uint64_t x1, x2;
    memcpy(&x1, p, 8);
    memcpy(&x2, p + n1 + 1, 8);
    /* fractions of 9 to 14 digits (0.000123456 and the like) in two runs */
    unsigned f1 = n2 > 8 ? 8 : n2, f2 = n2 - f1;
    uint64_t m = (n1 ? digits_value(x1, (int)n1) : 0) * u10_8[f1] + (f1 ? digits_value(x2, (int)f1) : 0);
    if (f2) {
        uint64_t x3;
        memcpy(&x3, p + n1 + 9, 8);
        m = m * u10_8[f2] + digits_value(x3, (int)f2);
    }
    if (m > ((uint64_t)1 << 53)) return -1;
    double r = (double)m / p10_23[n2]; /* m exact; one rounding */
    uint64_t bits; /* the sign without a branch: signs are a coin toss */
    memcpy(&bits, &r, sizeof bits);
    bits |= (uint64_t)neg << 63;
    memcpy(out, &bits, sizeof bits);
    *end = p + len;
    return 0;
}
#endif

int mg__parse_prefix(const char *s, const char **end, double *out) {
#if defined(__SSE2__)
    if (parse_short(s, end, out) == 0) return 0;
#endif
    const char *p = s;
    int neg = 0, nd = 0, any = 0;
    int64_t e10 = 0;
    uint64_t m = 0;
    if (*p == '-' || *p == '+') neg = *p++ == '-';
    for (int frac = 0; frac < 2; frac++) {
        if (frac) {
            if (*p != '.') break;
            p++;
        }
        for (;;) {
            uint64_t x;
            memcpy(&x, p, 8);
            int n = digit_run(x);
            if (n) {
                if (nd + n > 19) return -1;
                m = m * u10_8[n] + digits_value(x, n);
                nd += n;
                p += n;
                any = 1;
                if (frac) e10 -= n;
            }
            if (n < 8) break;
        }
    }
    if (!any) return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        int eneg = 0;
        int64_t en = 0;
        if (*p == '-' || *p == '+') eneg = *p++ == '-';
        if (!(*p >= '0' && *p <= '9')) return -1;
        for (; *p >= '0' && *p <= '9'; p++)
            if (en < 100000) en = en * 10 + (*p - '0');
        e10 += eneg ? -en : en;
    }
    if (m > ((uint64_t)1 << 53)) return -1;
    double v = (double)m;
    if (m != 0) {
        if (e10 < -22 || e10 > 22) return -1;
        if (e10 < 0) v /= p10_23[-e10];
        else v *= p10_23[e10];
    }
    *out = neg ? -v : v;
    *end = p;
    return 0;
}

size_t mg__split(char *s, int sep, char **fields, size_t max) {
    size_t n = 0;
    if (sep == '\t') {
        for (;;) {
            char *t = strchr(s, '\t');
            if (n < max) fields[n] = s;
            n++;
            if (!t) break;
            *t = '\0';
            s = t + 1;
        }
        return n;
    }
    for (;;) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        char *b = s;
        while (*s && *s != ' ' && *s != '\t') s++;
        if (n < max) fields[n] = b;
        n++;
        if (*s) *s++ = '\0';
    }
    return n;
}

int mg__chr_code(const char *s) {
    if (!strncasecmp(s, "chr", 3)) s += 3;
    if (!*s) return 0;
    if (!strcasecmp(s, "X")) return 23;
    if (!strcasecmp(s, "Y")) return 24;
    if (!strcasecmp(s, "XY") || !strcasecmp(s, "PAR1") || !strcasecmp(s, "PAR2")) return 25;
    if (!strcasecmp(s, "MT") || !strcasecmp(s, "M")) return 26;
    int v = 0;
    for (const char *c = s; *c; c++) {
        if (!isdigit((unsigned char)*c)) return 0;
        v = v * 10 + (*c - '0');
        if (v > 26) return 0;
    }
    return (v >= 1 && v <= 26) ? v : 0;
}

int mg__chr_class(int code) {
    switch (code) {
    case 23: return MG__CHR_X;
    case 24: return MG__CHR_Y;
    case 25: return MG__CHR_XY;
    case 26: return MG__CHR_MT;
    default: return MG__CHR_AUTO;
    }
}

int mg__allele_ok(const char *s) {
    size_t n = 0;
    for (; *s; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (!(isalnum(c) || strchr(".*<>:_+-", c))) return 0;
        if (n >= 1000) return 0;
    }
    return n > 0;
}

uint64_t mg__prs_arena_add(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s) + 1;
    if (*cap - *len < n) {
        size_t nc = *cap ? *cap : 4096;
        while (nc - *len < n) nc *= 2;
        char *nb = mg__realloc(*buf, nc);
        if (!nb) return UINT64_MAX;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    uint64_t off = *len;
    *len += n;
    return off;
}

int mg__prs_grow(void **arr, uint64_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap) return 0;
    uint64_t nc = *cap ? *cap * 2 : 1024;
    while (nc < need) nc *= 2;
    size_t bytes;
    if (mg__mul_size((size_t)nc, elem, &bytes)) return -1;
    void *na = mg__realloc(*arr, bytes);
    if (!na) return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

/* ---- %.10g, exactly as printf writes it, without printf ------------------ */

/* |v| x 10^k rounded to an integer (ties to even), from v = m x 2^q exactly
 * in 128-bit integers; 0 when out of the range handled here. */
static int scaled_round(uint64_t m, int q, int k, unsigned __int128 *out) {
    static const unsigned __int128 pow10[29] = {
        0x1ull,
        0xaull,
        0x64ull,
        0x3e8ull,
        0x2710ull,
        0x186a0ull,
        0xf4240ull,
        0x989680ull,
        0x5f5e100ull,
        0x3b9aca00ull,
        0x2540be400ull,
        0x174876e800ull,
        0xe8d4a51000ull,
        0x9184e72a000ull,
        0x5af3107a4000ull,
        0x38d7ea4c68000ull,
        0x2386f26fc10000ull,
        0x16345785d8a0000ull,
        0xde0b6b3a7640000ull,
        0x8ac7230489e80000ull,
        (unsigned __int128)0x5ull << 64 | 0x6bc75e2d63100000ull,
        (unsigned __int128)0x36ull << 64 | 0x35c9adc5dea00000ull,
        (unsigned __int128)0x21eull << 64 | 0x19e0c9bab2400000ull,
        (unsigned __int128)0x152dull << 64 | 0x2c7e14af6800000ull,
        (unsigned __int128)0xd3c2ull << 64 | 0x1bcecceda1000000ull,
        (unsigned __int128)0x84595ull << 64 | 0x161401484a000000ull,
        (unsigned __int128)0x52b7d2ull << 64 | 0xdcc80cd2e4000000ull,
        (unsigned __int128)0x33b2e3cull << 64 | 0x9fd0803ce8000000ull,
        (unsigned __int128)0x204fce5eull << 64 | 0x3e25026110000000ull,
    };
    if (k > 28 || k < -28) return 0;
    unsigned __int128 p = pow10[k < 0 ? -k : k];
    if (k >= 0) {
        if (k > 22) return 0;
        unsigned __int128 num = (unsigned __int128)m * p; /* < 2^53 x 10^22 < 2^127 */
        if (q >= 0) {
            if (q > 40) return 0;
            *out = num << q;
            return 1;
        }
        if (-q >= 127) return 0;
        int sh = -q;
        unsigned __int128 ip = num >> sh, rem = num - (ip << sh), half = (unsigned __int128)1 << (sh - 1);
        if (rem > half || (rem == half && (ip & 1))) ip++;
        *out = ip;
        return 1;
    }
    if (k < -28 || q < 0 || q > 74) return 0;
    unsigned __int128 num = (unsigned __int128)m << q;
    unsigned __int128 ip = num / p, rem = num - ip * p, twice = rem * 2;
    if (twice > p || (twice == p && (ip & 1))) ip++;
    *out = ip;
    return 1;
}

size_t mg__fmt_g10(char *buf, double v) {
    const int P = 10;
    const uint64_t lo = 1000000000ull, hi = 10000000000ull; /* 10^(P-1), 10^P */
    if (!isfinite(v) || v == 0) return (size_t)snprintf(buf, 32, "%.10g", v);
    int e2;
    double fr = frexp(fabs(v), &e2);             /* |v| = fr x 2^e2, fr in [0.5, 1) */
    uint64_t m = (uint64_t)ldexp(fr, 53);         /* exact */
    int q = e2 - 53;
    int X = (int)floor(log10(fabs(v)));
    unsigned __int128 n = 0;
    for (int tries = 0;; tries++) {
        if (tries == 3 || !scaled_round(m, q, P - 1 - X, &n)) return (size_t)snprintf(buf, 32, "%.10g", v);
        if (n >= hi) {
            if (n == hi) { /* rounded up to the next power of ten: still exact */
                n = lo;
                X++;
                break;
            }
            X++;
            continue;
        }
        if (n < lo) { X--; continue; }
        break;
    }
    char d[10];
    uint64_t u = (uint64_t)n;
    for (int i = P - 1; i >= 0; i--) { d[i] = (char)('0' + u % 10); u /= 10; }
    int nd = P;
    while (nd > 1 && d[nd - 1] == '0') nd--;
    char *o = buf;
    if (signbit(v)) *o++ = '-';
    if (X < -4 || X >= P) {
        *o++ = d[0];
        if (nd > 1) { *o++ = '.'; memcpy(o, d + 1, (size_t)nd - 1); o += nd - 1; }
        *o++ = 'e';
        *o++ = X < 0 ? '-' : '+';
        int ax = X < 0 ? -X : X;
        if (ax >= 100) { *o++ = (char)('0' + ax / 100); ax %= 100; *o++ = (char)('0' + ax / 10); *o++ = (char)('0' + ax % 10); }
        else { *o++ = (char)('0' + ax / 10); *o++ = (char)('0' + ax % 10); }
    } else if (X >= 0) {
        for (int i = 0; i <= X; i++) *o++ = i < nd ? d[i] : '0';
        if (nd > X + 1) { *o++ = '.'; memcpy(o, d + X + 1, (size_t)(nd - X - 1)); o += nd - X - 1; }
    } else {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -X - 1; i++) *o++ = '0';
        memcpy(o, d, (size_t)nd);
        o += nd;
    }
    *o = '\0';
    return (size_t)(o - buf);
}
