/* util.c - text input helpers for the PRS readers. */
#include "prs/prs_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

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
    static const double p10[23] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                    1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                    1e20, 1e21, 1e22 };
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
        if (e10 < 0) v /= p10[-e10];
        else v *= p10[e10];
    }
    *out = neg ? -v : v;
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
