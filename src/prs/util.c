/* util.c - text input helpers for the PRS readers. */
#include "prs/prs_internal.h"

#include <ctype.h>
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
