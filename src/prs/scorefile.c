/* scorefile.c - scoring files (PGS Catalog and PLINK 2-style wide files),
 * their matching to the target, and allele-frequency files. */
#include "prs/prs_internal.h"
#include "core/pool.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

static int parse_weight(const char *s, double *out) { return mg__parse_double(s, out); }

/* ---- frequencies --------------------------------------------------------- */

static int col_index(char **f, size_t nf, const char *name) {
    for (size_t i = 0; i < nf; i++) {
        const char *s = f[i];
        if (*s == '#') s++;
        if (!strcasecmp(s, name)) return (int)i;
    }
    return -1;
}

#define MAX_COLS 4096

mg_status mg__prs_read_freq(mg_prs *p, const char *path) {
    mg__lines lr;
    if (mg__lines_open(&lr, path) != 0)
        return mg__prs_set(p, MG_E_IO, "cannot open %s: %s", path, strerror(errno));
    char **f = mg__malloc(MAX_COLS * sizeof *f);
    double *fr = mg__malloc(p->n_variants * sizeof *fr);
    mg_status st = MG_OK;
    if (!f || !fr) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t i = 0; i < p->n_variants; i++) fr[i] = NAN;
    if (p->ext_freq) memcpy(fr, p->ext_freq, p->n_variants * sizeof *fr);
    int r = mg__lines_next(&lr);
    if (r != 1) { st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no header line", path); goto done; }
    size_t nh = mg__split(lr.buf, 0, f, MAX_COLS);
    if (nh > MAX_COLS) nh = MAX_COLS;
    int c_id = col_index(f, nh, "ID"), c_ref = col_index(f, nh, "REF"),
        c_alt = col_index(f, nh, "ALT"), c_af = col_index(f, nh, "ALT_FREQS");
    int frq = 0;
    if (c_id < 0 || c_ref < 0 || c_alt < 0 || c_af < 0) {
        c_id = col_index(f, nh, "SNP"); c_ref = col_index(f, nh, "A2");
        c_alt = col_index(f, nh, "A1"); c_af = col_index(f, nh, "MAF");
        frq = 1;
    }
    if (c_id < 0 || c_ref < 0 || c_alt < 0 || c_af < 0) {
        st = mg__prs_set(p, MG_E_DATA_FORMAT,
                         "%s: header needs ID, REF, ALT, ALT_FREQS (.afreq) or SNP, A1, A2, MAF (.frq)", path);
        goto done;
    }
    size_t need = (size_t)c_id;
    if ((size_t)c_ref > need) need = (size_t)c_ref;
    if ((size_t)c_alt > need) need = (size_t)c_alt;
    if ((size_t)c_af > need) need = (size_t)c_af;
    while ((r = mg__lines_next(&lr)) == 1) {
        size_t nf = mg__split(lr.buf, 0, f, MAX_COLS);
        if (nf == 0) continue;
        if (nf != nh) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: expected %zu fields, found %zu",
                             path, (unsigned long long)lr.lineno, nh, nf);
            goto done;
        }
        double af;
        if (parse_weight(f[c_af], &af) != 0 || af < 0 || af > 1) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: bad frequency \"%s\"",
                             path, (unsigned long long)lr.lineno, f[c_af]);
            goto done;
        }
        int64_t v = mg__prs_find_id(p, f[c_id]);
        if (v < 0) continue;
        const char *a1 = mg__prs_vstr(p, p->var[v].a1), *a2 = mg__prs_vstr(p, p->var[v].a2);
        /* The frequency column is that of ALT (.afreq) or A1 (.frq). */
        const char *counted = f[c_alt], *other = f[c_ref];
        (void)frq;
        if (!strcasecmp(counted, a1) && !strcasecmp(other, a2)) fr[v] = af;
        else if (!strcasecmp(counted, a2) && !strcasecmp(other, a1)) fr[v] = 1.0 - af;
    }
    if (r < 0) st = mg__prs_set(p, r == -2 ? MG_E_NOMEM : MG_E_IO, "error reading %s", path);
done:
    if (st == MG_OK) {
        mg__free(p->ext_freq);
        p->ext_freq = fr;
        fr = NULL;
    }
    mg__free(fr);
    mg__free(f);
    mg__lines_close(&lr);
    return st;
}

/* ---- shared pieces of the score readers ---------------------------------- */

static mg_status add_score(mg_prs *p, const char *name, uint32_t *idx) {
    if (p->n_scores == p->cap_scores) {
        uint32_t nc = p->cap_scores ? p->cap_scores * 2 : 8;
        mg__prs_score *ns = mg__realloc(p->scores, nc * sizeof *ns);
        if (!ns) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
        p->scores = ns;
        p->cap_scores = nc;
    }
    mg__prs_score *s = &p->scores[p->n_scores];
    memset(s, 0, sizeof *s);
    s->name = mg__strdup(name);
    if (!s->name) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
    s->rep.struct_size = sizeof s->rep;
    *idx = p->n_scores++;
    return MG_OK;
}

static uint32_t new_row(mg_prs *p, uint32_t var, int named_a1, int effect) {
    if (p->n_rows == UINT32_MAX - 1) return UINT32_MAX;
    if (p->n_rows == p->cap_rows) {
        uint32_t nc = p->cap_rows ? (p->cap_rows > UINT32_MAX / 2 ? UINT32_MAX - 1 : p->cap_rows * 2) : 1024;
        mg__prs_row *nr = mg__realloc(p->rows, (size_t)nc * sizeof *nr);
        if (!nr) return UINT32_MAX;
        p->rows = nr;
        p->cap_rows = nc;
    }
    p->rows[p->n_rows].var = var;
    p->rows[p->n_rows].named_a1 = (uint8_t)(named_a1 ? 1 : 0);
    p->rows[p->n_rows].effect = (uint8_t)effect;
    p->rows[p->n_rows].stamp = 0;
    return p->n_rows++;
}

/* The row of (variant, named allele), created when absent; UINT32_MAX when
 * out of memory. */
static uint32_t get_row(mg_prs *p, uint32_t var, int named_a1) {
    if (!p->row_of) {
        p->row_of = mg__malloc(2 * p->n_variants * sizeof *p->row_of);
        if (!p->row_of) return UINT32_MAX;
        memset(p->row_of, 0xff, 2 * p->n_variants * sizeof *p->row_of);
    }
    uint32_t *slot = &p->row_of[2 * (uint64_t)var + (named_a1 ? 1 : 0)];
    if (*slot != UINT32_MAX) return *slot;
    uint32_t r = new_row(p, var, named_a1, MG__EFFECT_DEFAULT);
    if (r != UINT32_MAX) *slot = r;
    return r;
}

static int add_entry(mg_prs *p, uint32_t row, uint32_t score, double w) {
    if (p->n_ent == p->cap_ent) {
        uint64_t nc = p->cap_ent ? p->cap_ent * 2 : 4096;
        mg__prs_entry *ne = mg__realloc(p->ent, nc * sizeof *ne);
        if (!ne) return -1;
        p->ent = ne;
        p->cap_ent = nc;
    }
    p->ent[p->n_ent].row = row;
    p->ent[p->n_ent].score = score;
    p->ent[p->n_ent].w = w;
    p->n_ent++;
    return 0;
}

/* Undoes a failed file: drops the scores, rows, entries and wide blocks it
 * added. */
static void rollback(mg_prs *p, uint32_t n_scores, uint32_t n_rows, uint64_t n_ent,
                     uint32_t n_wide) {
    for (uint32_t i = n_wide; i < p->n_wide; i++) {
        mg__free(p->wide[i].row);
        mg__free(p->wide[i].w);
    }
    p->n_wide = n_wide;
    for (uint32_t k = n_scores; k < p->n_scores; k++) mg__free(p->scores[k].name);
    p->n_scores = n_scores;
    for (uint32_t r = n_rows; r < p->n_rows; r++)
        if (p->rows[r].effect == MG__EFFECT_DEFAULT)
            p->row_of[2 * (uint64_t)p->rows[r].var + p->rows[r].named_a1] = UINT32_MAX;
    p->n_rows = n_rows;
    p->n_ent = n_ent;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- PLINK 2-style wide files ---------------------------------------------- */

/* The body of a wide file is read in rounds of up to WIDE_PER_THREAD
 * buffers of whole lines per thread, each p->tune.wide_chunk bytes (gzread:
 * plain or gzip); the buffers are
 * parsed in parallel, each a pool task, so that a thread that runs slower
 * takes fewer (fields, weights, ID lookup: read-only on the handle), then
 * merged in file order on the calling thread, which creates the rows,
 * catches duplicates and reports the first error by line. Each buffer's
 * matched lines become one dense mg__prs_wide block. */
#define WIDE_SLACK 64 /* zero bytes after a buffer: the weight readers read ahead */
#define WIDE_PER_THREAD 4

typedef struct wide_chunk {
    char *buf;
    size_t len, cap;                /* whole lines, NUL-separated after parse */
    uint64_t lines;                 /* lines in buf (after parse)             */
    uint64_t n_rows;                /* data lines                             */
    uint32_t *var;
    uint8_t *na1;
    uint64_t *line;                 /* line of each matched line, from 0      */
    double *w;                      /* matched x nk                           */
    uint64_t n, cap_m;
    mg_status st;                   /* first error, at err_line               */
    uint64_t err_line;              /* from 0                                 */
    char err[320];
} wide_chunk;

typedef struct wide_job {
    const mg_prs *p;
    wide_chunk *ch;
    uint32_t n_ch;
    int sep;
    size_t nh;
    uint32_t nk;
} wide_job;

static int chunk_grow(wide_chunk *c, uint32_t nk) {
    uint64_t cap = c->cap_m;
    void *v = c->var, *a = c->na1, *l = c->line, *w = c->w;
    if (mg__prs_grow(&v, &cap, c->n + 1, sizeof *c->var) != 0) return -1;
    c->var = v;
    cap = c->cap_m;
    if (mg__prs_grow(&a, &cap, c->n + 1, sizeof *c->na1) != 0) return -1;
    c->na1 = a;
    cap = c->cap_m;
    if (mg__prs_grow(&l, &cap, c->n + 1, sizeof *c->line) != 0) return -1;
    c->line = l;
    cap = c->cap_m;
    if (mg__prs_grow(&w, &cap, c->n + 1, (size_t)nk * sizeof *c->w) != 0) return -1;
    c->w = w;
    c->cap_m = cap;
    return 0;
}

/* A tab-separated line of exactly 2 + nk fields whose weights all take the
 * fast path: f[0], f[1] and w set, 0. Otherwise -1 and the line unchanged
 * (the general path then parses it, or names its error). avx2: the whole
 * line at once first (mg__parse_fields_avx2). */
static int wide_line_fast(char *s, uint32_t nk, char **f, double *w, int avx2) {
    char *t1 = strchr(s, '\t');
    if (!t1) return -1;
    char *t2 = strchr(t1 + 1, '\t');
    if (!t2) return -1;
    const char *q = t2 + 1;
    int whole = 0;
#if defined(MG_X86_AVX2)
    whole = avx2 && mg__parse_fields_avx2(q, nk, w) == 0;
#else
    (void)avx2;
#endif
    for (uint32_t k = 0; !whole && k < nk; k++) {
        const char *e;
        if (mg__parse_prefix(q, &e, &w[k]) != 0) return -1;
        if (k + 1 < nk ? *e != '\t' : *e != '\0') return -1;
        q = e + 1;
    }
    *t1 = '\0';
    *t2 = '\0';
    f[0] = s;
    f[1] = t1 + 1;
    return 0;
}

static void wide_parse_task(void *arg, uint32_t t, uint32_t nt) {
    const wide_job *j = arg;
    const mg_prs *p = j->p;
    char *f[MAX_COLS];
    const int avx2 = mg_simd_level() >= MG_SIMD_AVX2;
    (void)nt;
    {   /* task t: buffer t */
        wide_chunk *c = &j->ch[t];
        c->n = 0;
        c->n_rows = 0;
        c->st = MG_OK;
        char *s = c->buf, *end = c->buf + c->len;
        uint64_t ln = 0;
        for (; s < end; ln++) {
            char *e = memchr(s, '\n', (size_t)(end - s));
            if (!e) e = end;
            char *next = e < end ? e + 1 : end;
            if (memchr(s, '\0', (size_t)(e - s))) {
                c->st = MG_E_DATA_FORMAT;
                c->err_line = ln;
                snprintf(c->err, sizeof c->err, "NUL byte in line");
                break;
            }
            while (e > s && (e[-1] == '\r' || e[-1] == '\n')) e--;
            *e = '\0';
            char *line = s;
            s = next;
            if (c->n == c->cap_m && chunk_grow(c, j->nk) != 0) {
                c->st = MG_E_NOMEM;
                c->err_line = ln;
                snprintf(c->err, sizeof c->err, "out of memory");
                break;
            }
            double *w = c->w + c->n * j->nk;
            if (j->sep == '\t' && wide_line_fast(line, j->nk, f, w, avx2) == 0) goto parsed;
            size_t nf = mg__split(line, j->sep, f, MAX_COLS);
            if (nf == 0 || (nf == 1 && !*f[0])) continue;
            if (nf != j->nh) {
                c->st = MG_E_DATA_FORMAT;
                c->err_line = ln;
                snprintf(c->err, sizeof c->err, "expected %zu fields, found %zu", j->nh, nf);
                break;
            }
            uint32_t k = 0;
            for (; k < j->nk; k++)
                if (parse_weight(f[k + 2], &w[k]) != 0) break;
            if (k < j->nk) {
                c->st = MG_E_DATA_FORMAT;
                c->err_line = ln;
                snprintf(c->err, sizeof c->err, "weight \"%.200s\" is not a number", f[k + 2]);
                break;
            }
        parsed:
            c->n_rows++;
            int64_t v = mg__prs_find_id(p, f[0]);
            if (v < 0) continue;
            const char *a1 = mg__prs_vstr(p, p->var[v].a1), *a2 = mg__prs_vstr(p, p->var[v].a2);
            int named_a1;
            if (!strcmp(f[1], a1)) named_a1 = 1;
            else if (!strcmp(f[1], a2)) named_a1 = 0;
            else continue;
            c->var[c->n] = (uint32_t)v;
            c->na1[c->n] = (uint8_t)named_a1;
            c->line[c->n] = ln;
            c->n++;
        }
        c->lines = ln;
    }
}

static void chunk_clear(wide_chunk *c) {
    mg__free(c->var);
    mg__free(c->na1);
    mg__free(c->line);
    mg__free(c->w);
    c->var = NULL; c->na1 = NULL; c->line = NULL; c->w = NULL;
    c->n = c->cap_m = 0;
}

/* Merges chunk c in file order: rows, duplicates, then its error if any;
 * its matched lines become a wide block (the arrays move there). */
static mg_status wide_merge(mg_prs *p, wide_chunk *c, const char *path, uint32_t first, uint32_t nk,
                            uint32_t serial, uint64_t *line, uint64_t *n_rows, uint64_t *n_match) {
    for (uint64_t i = 0; i < c->n; i++) {
        if (c->st != MG_OK && c->line[i] > c->err_line) break;
        uint32_t row = get_row(p, c->var[i], c->na1[i]);
        if (row == UINT32_MAX) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
        if (p->rows[row].stamp == serial) {
            const mg__prs_variant *v = &p->var[c->var[i]];
            return mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: duplicate row for variant %s, allele %s",
                               path, (unsigned long long)(*line + c->line[i]), mg__prs_vstr(p, v->id),
                               mg__prs_vstr(p, c->na1[i] ? v->a1 : v->a2));
        }
        p->rows[row].stamp = serial;
        c->var[i] = row; /* now the row index */
    }
    if (c->st != MG_OK)
        return mg__prs_set(p, c->st, "%s:%llu: %s", path, (unsigned long long)(*line + c->err_line), c->err);
    *line += c->lines;
    *n_rows += c->n_rows;
    *n_match += c->n;
    if (c->n == 0) return MG_OK;
    if (p->n_wide == p->cap_wide) {
        uint64_t cap = p->cap_wide;
        void *arr = p->wide;
        if (mg__prs_grow(&arr, &cap, (uint64_t)p->n_wide + 1, sizeof *p->wide) != 0 || cap > UINT32_MAX)
            return mg__prs_set(p, MG_E_NOMEM, "out of memory");
        p->wide = arr;
        p->cap_wide = (uint32_t)cap;
    }
    mg__prs_wide *wb = &p->wide[p->n_wide++];
    memset(wb, 0, sizeof *wb);
    wb->first = first;
    wb->nk = nk;
    wb->n = wb->cap = c->n;
    wb->row = c->var;
    wb->w = c->w;
    c->var = NULL;
    c->w = NULL;
    chunk_clear(c);
    return MG_OK;
}

static mg_status read_wide_body(mg_prs *p, mg__lines *lr, const char *path, int sep, size_t nh,
                                uint32_t first, uint32_t nk, uint64_t *n_rows, uint64_t *n_match) {
    uint32_t nthr = mg__prs_threads(p);
    if (nthr > 64) nthr = 64;
    uint32_t nbuf = nthr * WIDE_PER_THREAD;
    const size_t chunk = p->tune.wide_chunk;
    wide_chunk *ch = mg__calloc(nbuf, sizeof *ch);
    mg__pool *pool = NULL;
    mg_status st = MG_OK;
    if (!ch) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
    gzFile gz = (gzFile)lr->gz;
    uint32_t serial = ++p->file_serial;
    uint64_t line = lr->lineno + 1;
    char *carry = NULL;
    size_t carry_len = 0;
    int eof = 0;
    while (!eof || carry_len) {
        uint32_t n_ch = 0;
        while (n_ch < nbuf && (!eof || carry_len)) {
            wide_chunk *c = &ch[n_ch];
            if (c->cap < chunk + 1) {
                char *nb = mg__realloc(c->buf, chunk + 1 + WIDE_SLACK);
                if (!nb) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
                c->buf = nb;
                c->cap = chunk + 1;
            }
            /* the previous buffer's partial last line first */
            if (carry_len) memcpy(c->buf, carry, carry_len);
            c->len = carry_len;
            carry_len = 0;
            for (;;) {
                while (!eof && c->len < c->cap - 1) {
                    size_t want = c->cap - 1 - c->len;
                    int got = gzread(gz, c->buf + c->len, want > (1u << 30) ? (1u << 30) : (unsigned)want);
                    if (got < 0) { st = mg__prs_set(p, MG_E_IO, "error reading %s", path); goto done; }
                    if (got == 0) eof = 1;
                    c->len += (size_t)got;
                }
                if (eof) break;
                char *nl = c->len ? memrchr(c->buf, '\n', c->len) : NULL;
                if (nl) { /* keep whole lines, carry the rest */
                    size_t keep = (size_t)(nl - c->buf) + 1;
                    carry_len = c->len - keep;
                    if (carry_len) {
                        char *cb = mg__realloc(carry, carry_len);
                        if (!cb) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
                        carry = cb;
                        memcpy(carry, c->buf + keep, carry_len);
                    }
                    c->len = keep;
                    break;
                }
                /* one line longer than the buffer: grow it */
                if (c->cap > ((size_t)1 << 31)) { st = mg__prs_set(p, MG_E_LIMIT, "%s: line too long", path); goto done; }
                char *nb = mg__realloc(c->buf, c->cap * 2 + WIDE_SLACK);
                if (!nb) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
                c->buf = nb;
                c->cap *= 2;
            }
            memset(c->buf + c->len, 0, WIDE_SLACK);
            if (c->len) n_ch++;
        }
        if (n_ch == 0) break;
        if (n_ch > 1 && !pool) pool = mg__pool_new(nthr);
        wide_job j = { p, ch, n_ch, sep, nh, nk };
        mg__pool_run(pool, wide_parse_task, &j, n_ch);
        for (uint32_t i = 0; i < n_ch; i++) {
            st = wide_merge(p, &ch[i], path, first, nk, serial, &line, n_rows, n_match);
            if (st != MG_OK) goto done;
        }
    }
done:
    for (uint32_t i = 0; i < nbuf; i++) {
        chunk_clear(&ch[i]);
        mg__free(ch[i].buf);
    }
    mg__free(ch);
    mg__free(carry);
    mg__pool_free(pool);
    return st;
}

static mg_status read_wide(mg_prs *p, mg__lines *lr, const char *path, char **f,
                           uint32_t *n_added) {
    int sep = strchr(lr->buf, '\t') ? '\t' : 0;
    size_t nh = mg__split(lr->buf, sep, f, MAX_COLS);
    if (nh > MAX_COLS)
        return mg__prs_set(p, MG_E_LIMIT, "%s: more than %d columns", path, MAX_COLS - 2);
    if (nh < 3)
        return mg__prs_set(p, MG_E_DATA_FORMAT,
                           "%s: header needs a variant ID, an allele and at least one weight column", path);
    uint32_t first = p->n_scores;
    for (size_t c = 2; c < nh; c++) {
        uint32_t k;
        mg_status st = add_score(p, f[c], &k);
        if (st != MG_OK) return st;
    }
    uint32_t nk = (uint32_t)(nh - 2);
    uint64_t n_rows = 0, n_match = 0;
    mg_status st = read_wide_body(p, lr, path, sep, nh, first, nk, &n_rows, &n_match);
    if (st != MG_OK) return st;
    for (uint32_t c = 0; c < nk; c++) {
        mg_prs_match_report *rep = &p->scores[first + c].rep;
        rep->n_rows = n_rows;
        rep->n_matched = n_match;
        rep->n_unmatched = n_rows - n_match;
        rep->overlap = n_rows ? (double)n_match / (double)n_rows : 0.0;
        rep->kept = 1; /* a wide file is already matched: kept as plink2 does */
    }
    *n_added = nk;
    return MG_OK;
}

/* ---- PGS Catalog scoring files ----------------------------------------------- */

static char comp_base(char c) {
    switch (toupper((unsigned char)c)) {
    case 'A': return 'T';
    case 'T': return 'A';
    case 'C': return 'G';
    case 'G': return 'C';
    default: return 0;
    }
}

/* Complement of a pure-ACGT allele into out (cap bytes); 0 when it has other
 * letters or does not fit. */
static int complement(const char *s, char *out, size_t cap) {
    size_t n = strlen(s);
    if (n == 0 || n >= cap) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = comp_base(s[i]);
        if (!c) return 0;
        out[i] = c;
    }
    out[n] = '\0';
    return 1;
}

static int is_ambiguous(const char *ref, const char *alt) {
    char c[8];
    return strlen(ref) == 1 && complement(ref, c, sizeof c) && !strcasecmp(c, alt);
}

static int truthy(const char *s) {
    return !strcasecmp(s, "TRUE") || !strcmp(s, "1") || !strcasecmp(s, "T") || !strcasecmp(s, "yes");
}

typedef struct cand {
    uint32_t var;
    uint8_t named_a1, flipped, drop, effect;
    double w;
} cand;

/* Best match of one row among the target variants at chr:pos (or with the
 * ID), by the preference order of docs/PRS.md. Returns the match type 1..8
 * (0: none); *var / *named_a1 / *ties filled. */
static int best_match(const mg_prs *p, const uint32_t *vars, size_t nv, const char *ea,
                      const char *oa, uint32_t *var, int *named_a1, int *ties) {
    char cea[1024], coa[1024];
    int have_cea = complement(ea, cea, sizeof cea);
    int have_coa = *oa && complement(oa, coa, sizeof coa);
    int best = 0;
    *ties = 0;
    for (size_t i = 0; i < nv; i++) {
        const mg__prs_variant *v = &p->var[vars[i]];
        const char *ref = mg__prs_vstr(p, v->a2), *alt = mg__prs_vstr(p, v->a1);
        int t = 0, na1 = 0;
        if (*oa) {
            if (!strcasecmp(ea, ref) && !strcasecmp(oa, alt)) { t = 1; na1 = 0; }
            else if (!strcasecmp(ea, alt) && !strcasecmp(oa, ref)) { t = 2; na1 = 1; }
            else if (have_cea && have_coa && !strcasecmp(cea, ref) && !strcasecmp(coa, alt)) { t = 3; na1 = 0; }
            else if (have_cea && have_coa && !strcasecmp(cea, alt) && !strcasecmp(coa, ref)) { t = 4; na1 = 1; }
        } else {
            if (!strcasecmp(ea, ref)) { t = 5; na1 = 0; }
            else if (!strcasecmp(ea, alt)) { t = 6; na1 = 1; }
            else if (have_cea && !strcasecmp(cea, ref)) { t = 7; na1 = 0; }
            else if (have_cea && !strcasecmp(cea, alt)) { t = 8; na1 = 1; }
        }
        if (!t) continue;
        if (!best || t < best) { best = t; *var = vars[i]; *named_a1 = na1; *ties = 0; }
        else if (t == best) (*ties)++;
    }
    return best;
}

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->var != y->var) return x->var < y->var ? -1 : 1;
    return 0;
}

static mg_status read_catalog(mg_prs *p, mg__lines *lr, const char *path, char **f,
                              const char *pgs_id, uint32_t *n_added) {
    size_t nh = mg__split(lr->buf, '\t', f, MAX_COLS);
    if (nh > MAX_COLS) return mg__prs_set(p, MG_E_LIMIT, "%s: too many columns", path);
    int c_ea = col_index(f, nh, "effect_allele"), c_oa = col_index(f, nh, "other_allele");
    int c_w = col_index(f, nh, "effect_weight");
    int c_chr = col_index(f, nh, "hm_chr"), c_pos = col_index(f, nh, "hm_pos");
    if (c_chr < 0 || c_pos < 0) { c_chr = col_index(f, nh, "chr_name"); c_pos = col_index(f, nh, "chr_position"); }
    int c_rs = col_index(f, nh, "hm_rsID");
    if (c_rs < 0) c_rs = col_index(f, nh, "rsID");
    int c_hap = col_index(f, nh, "is_haplotype"), c_dip = col_index(f, nh, "is_diplotype");
    int c_dom = col_index(f, nh, "is_dominant"), c_rec = col_index(f, nh, "is_recessive");
    if (c_ea < 0)
        return mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no effect_allele column", path);
    if (c_w < 0) {
        if (col_index(f, nh, "dosage_0_weight") >= 0)
            return mg__prs_set(p, MG_E_UNSUPPORTED, "%s: dosage-specific weights are not supported", path);
        return mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no effect_weight column", path);
    }
    int by_pos = c_chr >= 0 && c_pos >= 0;
    if (!by_pos && c_rs < 0)
        return mg__prs_set(p, MG_E_DATA_FORMAT, "%s: neither chromosome/position nor rsID columns", path);
    uint32_t k;
    mg_status st = add_score(p, pgs_id, &k);
    if (st != MG_OK) return st;
    mg_prs_match_report *rep = &p->scores[k].rep;
    cand *cs = NULL;
    uint64_t nc = 0, ccap = 0;
    int r;
    while ((r = mg__lines_next(lr)) == 1) {
        unsigned long long ln = (unsigned long long)lr->lineno;
        if (lr->buf[0] == '#') continue;
        size_t nf = mg__split(lr->buf, '\t', f, MAX_COLS);
        if (nf == 1 && !*f[0]) continue;
        if (nf != nh) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: expected %zu fields, found %zu", path, ln, nh, nf);
            break;
        }
        double w;
        if (parse_weight(f[c_w], &w) != 0) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: weight \"%s\" is not a number", path, ln, f[c_w]);
            break;
        }
        int dom = c_dom >= 0 && truthy(f[c_dom]), rec = c_rec >= 0 && truthy(f[c_rec]);
        if (dom && rec) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: both is_dominant and is_recessive", path, ln);
            break;
        }
        rep->n_rows++;
        const char *ea = f[c_ea], *oa = c_oa >= 0 ? f[c_oa] : "";
        if ((c_hap >= 0 && truthy(f[c_hap])) || (c_dip >= 0 && truthy(f[c_dip])) ||
            !mg__allele_ok(ea) || (*oa && !mg__allele_ok(oa))) {
            rep->n_unmatched++;
            continue;
        }
        uint32_t one, var = 0;
        const uint32_t *vars = NULL;
        size_t nv = 0;
        if (by_pos) {
            int chr = mg__chr_code(f[c_chr]);
            char *end;
            errno = 0;
            long long pos = strtoll(f[c_pos], &end, 10);
            if (chr && end != f[c_pos] && !*end && !errno) {
                /* binary search for the first variant at (chr, pos) */
                uint64_t lo = 0, hi = p->n_variants;
                while (lo < hi) {
                    uint64_t mid = (lo + hi) / 2;
                    const mg__prs_variant *v = &p->var[p->by_pos[mid]];
                    if (v->chr < chr || (v->chr == chr && v->pos < pos)) lo = mid + 1;
                    else hi = mid;
                }
                uint64_t e = lo;
                while (e < p->n_variants && p->var[p->by_pos[e]].chr == chr &&
                       p->var[p->by_pos[e]].pos == pos) e++;
                vars = p->by_pos + lo;
                nv = (size_t)(e - lo);
            }
        } else {
            int64_t v = mg__prs_find_id(p, f[c_rs]);
            if (v >= 0) { one = (uint32_t)v; vars = &one; nv = 1; }
        }
        int named_a1 = 0, ties = 0;
        int t = best_match(p, vars, nv, ea, oa, &var, &named_a1, &ties);
        if (!t) { rep->n_unmatched++; continue; }
        const mg__prs_variant *v = &p->var[var];
        if (!(p->params.flags & MG_PRS_KEEP_AMBIGUOUS) &&
            is_ambiguous(mg__prs_vstr(p, v->a2), mg__prs_vstr(p, v->a1))) {
            rep->n_ambiguous++;
            continue;
        }
        if (!(p->params.flags & MG_PRS_KEEP_MULTIALLELIC) && (v->multi || ties)) {
            rep->n_multiallelic++;
            continue;
        }
        if (nc == ccap) {
            uint64_t ncap = ccap ? ccap * 2 : 256;
            cand *n2 = mg__realloc(cs, ncap * sizeof *n2);
            if (!n2) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); break; }
            cs = n2;
            ccap = ncap;
        }
        cs[nc].var = var;
        cs[nc].named_a1 = (uint8_t)named_a1;
        cs[nc].flipped = (uint8_t)(t == 3 || t == 4 || t == 7 || t == 8);
        cs[nc].drop = 0;
        cs[nc].effect = (uint8_t)(dom ? MG__EFFECT_DOMINANT : rec ? MG__EFFECT_RECESSIVE : MG__EFFECT_DEFAULT);
        cs[nc].w = w;
        nc++;
    }
    if (st == MG_OK && r < 0)
        st = mg__prs_set(p, r == -2 ? MG_E_NOMEM : MG_E_IO, "error reading %s", path);
    if (st == MG_OK && nc) {
        /* rows best-matching one variant are all dropped */
        qsort(cs, nc, sizeof *cs, cmp_cand); /* ties keep no order: all go */
        for (uint64_t i = 0; i < nc;) {
            uint64_t j = i + 1;
            while (j < nc && cs[j].var == cs[i].var) j++;
            if (j - i > 1)
                for (uint64_t q = i; q < j; q++) cs[q].drop = 1;
            i = j;
        }
        for (uint64_t i = 0; i < nc && st == MG_OK; i++) {
            if (cs[i].drop) { rep->n_duplicate++; continue; }
            uint32_t row = cs[i].effect == MG__EFFECT_DEFAULT ? get_row(p, cs[i].var, cs[i].named_a1)
                                                               : new_row(p, cs[i].var, cs[i].named_a1, cs[i].effect);
            if (row == UINT32_MAX || add_entry(p, row, k, cs[i].w) != 0) {
                st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
                break;
            }
            rep->n_matched++;
            rep->n_flipped += cs[i].flipped;
        }
    }
    mg__free(cs);
    if (st != MG_OK) return st;
    rep->overlap = rep->n_rows ? (double)rep->n_matched / (double)rep->n_rows : 0.0;
    rep->kept = rep->n_matched > 0 && rep->overlap >= p->params.min_overlap;
    *n_added = 1;
    return MG_OK;
}

mg_status mg__prs_add_file(mg_prs *p, const char *path, uint32_t *n_added) {
    mg__lines lr;
    *n_added = 0;
    if (mg__lines_open(&lr, path) != 0)
        return mg__prs_set(p, MG_E_IO, "cannot open %s: %s", path, strerror(errno));
    char **f = mg__malloc(MAX_COLS * sizeof *f);
    char name[256] = "";
    char pgs_name[256] = "";
    uint32_t n_scores = p->n_scores, n_rows = p->n_rows;
    uint64_t n_ent = p->n_ent;
    uint32_t n_wide = p->n_wide;
    mg_status st = MG_OK;
    int r, meta = 0;
    if (!f) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    while ((r = mg__lines_next(&lr)) == 1) {
        if (lr.buf[0] == '#') {
            meta = 1;
            if (!strncmp(lr.buf, "#pgs_id=", 8)) snprintf(name, sizeof name, "%s", lr.buf + 8);
            else if (!strncmp(lr.buf, "#pgs_name=", 10)) snprintf(pgs_name, sizeof pgs_name, "%s", lr.buf + 10);
            continue;
        }
        if (lr.len) break;
    }
    if (r != 1) {
        st = r == 0 ? mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no header line", path)
                    : mg__prs_set(p, r == -2 ? MG_E_NOMEM : MG_E_IO, "error reading %s", path);
        goto done;
    }
    /* The header decides: PGS Catalog columns, else ID + allele + weights. */
    int catalog = strstr(lr.buf, "effect_weight") != NULL || strstr(lr.buf, "dosage_0_weight") != NULL ||
                  (meta && strstr(lr.buf, "effect_allele") && strstr(lr.buf, "chr_name"));
    if (catalog) {
        if (!*name) snprintf(name, sizeof name, "%s", *pgs_name ? pgs_name : base_name(path));
        st = read_catalog(p, &lr, path, f, name, n_added);
    } else {
        st = read_wide(p, &lr, path, f, n_added);
    }
done:
    if (st != MG_OK) {
        rollback(p, n_scores, n_rows, n_ent, n_wide);
        *n_added = 0;
    }
    mg__free(f);
    mg__lines_close(&lr);
    return st;
}
