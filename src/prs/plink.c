/* plink.c - PLINK 1 binary fileset (.bed/.bim/.fam): sample and variant
 * tables, .bed validation. Genotype bytes are read by score.c in blocks. */
#include "prs/prs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *mg__prs_vstr(const mg_prs *p, uint64_t off) { return p->vstr + off; }



static int parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_num(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    (void)v;
    return (end == s || *end) ? -1 : 0;
}

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = mg__malloc(na + nb + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

static mg_status read_fam(mg_prs *p, const char *path) {
    mg__lines lr;
    if (mg__lines_open(&lr, path) != 0)
        return mg__prs_set(p, MG_E_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 0;
    uint64_t vcap = 0, n = 0;
    mg_status st = MG_OK;
    int r;
    while ((r = mg__lines_next(&lr)) == 1) {
        char *f[7];
        size_t nf = mg__split(lr.buf, 0, f, 7);
        if (nf == 0) continue;
        if (nf != 6) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: expected 6 fields, found %zu",
                             path, (unsigned long long)lr.lineno, nf);
            break;
        }
        if (n >= UINT32_MAX - 1) {
            st = mg__prs_set(p, MG_E_LIMIT, "%s: too many samples", path);
            break;
        }
        uint64_t c0 = vcap;
        if (mg__prs_grow((void **)&p->fid, &c0, n + 1, sizeof *p->fid) ||
            (c0 = vcap, mg__prs_grow((void **)&p->iid, &c0, n + 1, sizeof *p->iid)) ||
            (c0 = vcap, mg__prs_grow((void **)&p->male, &c0, n + 1, 1)) ||
            (c0 = vcap, mg__prs_grow((void **)&p->founder, &c0, n + 1, 1))) {
            st = mg__prs_set(p, MG_E_NOMEM, "out of memory reading %s", path);
            break;
        }
        vcap = c0;
        uint64_t a = mg__prs_arena_add(&p->sstr, &p->sstr_len, &cap, f[0]);
        uint64_t b = mg__prs_arena_add(&p->sstr, &p->sstr_len, &cap, f[1]);
        if (a == UINT64_MAX || b == UINT64_MAX) {
            st = mg__prs_set(p, MG_E_NOMEM, "out of memory reading %s", path);
            break;
        }
        p->fid[n] = a;
        p->iid[n] = b;
        p->male[n] = !strcmp(f[4], "1");
        p->founder[n] = !strcmp(f[2], "0") && !strcmp(f[3], "0");
        n++;
    }
    if (st == MG_OK && r < 0)
        st = mg__prs_set(p, r == -2 ? MG_E_NOMEM : MG_E_IO, "error reading %s", path);
    if (st == MG_OK && n == 0) st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no samples", path);
    p->n_samples = n;
    mg__lines_close(&lr);
    return st;
}

static mg_status read_bim(mg_prs *p, const char *path) {
    mg__lines lr;
    if (mg__lines_open(&lr, path) != 0)
        return mg__prs_set(p, MG_E_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 0;
    uint64_t vcap = 0, n = 0;
    mg_status st = MG_OK;
    int r;
    while ((r = mg__lines_next(&lr)) == 1) {
        char *f[7];
        size_t nf = mg__split(lr.buf, 0, f, 7);
        unsigned long long ln = (unsigned long long)lr.lineno;
        if (nf == 0) continue;
        if (nf != 6) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: expected 6 fields, found %zu", path, ln, nf);
            break;
        }
        int64_t pos;
        if (parse_num(f[2]) != 0 || parse_i64(f[3], &pos) != 0) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: bad genetic distance or position", path, ln);
            break;
        }
        if (!mg__allele_ok(f[4]) || !mg__allele_ok(f[5])) {
            st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s:%llu: bad allele code", path, ln);
            break;
        }
        if (n >= UINT32_MAX / 2 - 1) {
            st = mg__prs_set(p, MG_E_LIMIT, "%s: too many variants", path);
            break;
        }
        if (mg__prs_grow((void **)&p->var, &vcap, n + 1, sizeof *p->var)) {
            st = mg__prs_set(p, MG_E_NOMEM, "out of memory reading %s", path);
            break;
        }
        mg__prs_variant *v = &p->var[n];
        v->id = mg__prs_arena_add(&p->vstr, &p->vstr_len, &cap, f[1]);
        v->a1 = mg__prs_arena_add(&p->vstr, &p->vstr_len, &cap, f[4]);
        v->a2 = mg__prs_arena_add(&p->vstr, &p->vstr_len, &cap, f[5]);
        if (v->id == UINT64_MAX || v->a1 == UINT64_MAX || v->a2 == UINT64_MAX) {
            st = mg__prs_set(p, MG_E_NOMEM, "out of memory reading %s", path);
            break;
        }
        v->pos = pos;
        v->chr = (int16_t)mg__chr_code(f[0]);
        v->cls = (uint8_t)mg__chr_class(v->chr);
        v->multi = 0;
        n++;
    }
    if (st == MG_OK && r < 0)
        st = mg__prs_set(p, r == -2 ? MG_E_NOMEM : MG_E_IO, "error reading %s", path);
    if (st == MG_OK && n == 0) st = mg__prs_set(p, MG_E_DATA_FORMAT, "%s: no variants", path);
    p->n_variants = n;
    mg__lines_close(&lr);
    return st;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

#define DUP_ID (UINT32_MAX - 1)

int64_t mg__prs_find_id(const mg_prs *p, const char *id) {
    uint64_t i = hash_str(id) & p->id_hash_mask;
    for (;;) {
        uint32_t v = p->id_hash[i];
        if (v == UINT32_MAX) return -1;
        uint32_t vi = v & 0x7fffffffu;
        if (!strcmp(p->vstr + p->var[vi].id, id)) return (v & 0x80000000u) ? -2 : (int64_t)vi;
        i = (i + 1) & p->id_hash_mask;
    }
}

static mg_status build_index(mg_prs *p) {
    uint64_t size = 16;
    while (size < p->n_variants * 2) size *= 2;
    p->id_hash = mg__malloc(size * sizeof *p->id_hash);
    p->by_pos = mg__malloc(p->n_variants * sizeof *p->by_pos);
    if (!p->id_hash || !p->by_pos) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
    memset(p->id_hash, 0xff, size * sizeof *p->id_hash);
    p->id_hash_mask = size - 1;
    for (uint64_t v = 0; v < p->n_variants; v++) {
        const char *id = p->vstr + p->var[v].id;
        uint64_t i = hash_str(id) & p->id_hash_mask;
        for (;;) {
            uint32_t e = p->id_hash[i];
            if (e == UINT32_MAX) { p->id_hash[i] = (uint32_t)v; break; }
            if (!strcmp(p->vstr + p->var[e & 0x7fffffffu].id, id)) {
                p->id_hash[i] = e | 0x80000000u; /* the ID is not unique */
                break;
            }
            i = (i + 1) & p->id_hash_mask;
        }
    }
    return MG_OK;
}


/* Sorts by_pos with a small merge sort (no global state: several handles may
 * be opened from several threads). */
static void sort_pos(const mg_prs *p, uint32_t *a, uint32_t *tmp, uint64_t n) {
    if (n < 2) return;
    uint64_t h = n / 2;
    sort_pos(p, a, tmp, h);
    sort_pos(p, a + h, tmp, n - h);
    uint64_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        const mg__prs_variant *x = &p->var[a[i]], *y = &p->var[a[j]];
        int le = x->chr != y->chr ? x->chr < y->chr
               : x->pos != y->pos ? x->pos < y->pos : a[i] < a[j];
        tmp[k++] = le ? a[i++] : a[j++];
    }
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

mg_status mg__prs_load_plink(mg_prs *p, const char *prefix) {
    char *fam = join(prefix, ".fam"), *bim = join(prefix, ".bim");
    p->bed_path = join(prefix, ".bed");
    mg_status st = MG_OK;
    if (!fam || !bim || !p->bed_path) st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
    if (st == MG_OK) st = read_fam(p, fam);
    if (st == MG_OK) st = read_bim(p, bim);
    mg__free(fam);
    mg__free(bim);
    if (st != MG_OK) return st;

    p->bytes_per_var = (p->n_samples + 3) / 4;
    uint64_t want;
    if (mg__mul_u64(p->n_variants, p->bytes_per_var, &want) || mg__add_u64(want, 3, &want))
        return mg__prs_set(p, MG_E_DATA_FORMAT, "%s: size overflows", p->bed_path);
    p->bed_fd = open(p->bed_path, O_RDONLY | O_CLOEXEC);
    if (p->bed_fd < 0)
        return mg__prs_set(p, MG_E_IO, "cannot open %s: %s", p->bed_path, strerror(errno));
    struct stat sb;
    if (fstat(p->bed_fd, &sb) != 0)
        return mg__prs_set(p, MG_E_IO, "cannot stat %s: %s", p->bed_path, strerror(errno));
    unsigned char magic[3];
    ssize_t got = pread(p->bed_fd, magic, 3, 0);
    if (got != 3 || magic[0] != 0x6c || magic[1] != 0x1b)
        return mg__prs_set(p, MG_E_DATA_FORMAT, "%s: not a PLINK 1 .bed file (bad magic)", p->bed_path);
    if (magic[2] != 0x01)
        return mg__prs_set(p, MG_E_DATA_FORMAT,
                           "%s: sample-major .bed files are not supported (mode byte 0x%02x)",
                           p->bed_path, magic[2]);
    if ((uint64_t)sb.st_size != want)
        return mg__prs_set(p, MG_E_DATA_FORMAT,
                           "%s: size %llu bytes, expected %llu for %llu samples x %llu variants "
                           "(truncated, or .fam/.bim do not belong to it)",
                           p->bed_path, (unsigned long long)sb.st_size, (unsigned long long)want,
                           (unsigned long long)p->n_samples, (unsigned long long)p->n_variants);

    return mg__prs_index(p);
}

/* Builds the ID hash and position order and marks multiallelic variants;
 * shared with the VCF reader (vcf.c). */
mg_status mg__prs_index(mg_prs *p) {
    mg_status st = build_index(p);
    if (st != MG_OK) return st;
    uint32_t *tmp = mg__malloc(p->n_variants * sizeof *tmp);
    if (!tmp) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < p->n_variants; i++) p->by_pos[i] = (uint32_t)i;
    sort_pos(p, p->by_pos, tmp, p->n_variants);
    mg__free(tmp);
    for (uint64_t i = 0; i + 1 < p->n_variants; i++) {
        mg__prs_variant *x = &p->var[p->by_pos[i]], *y = &p->var[p->by_pos[i + 1]];
        if (x->chr == y->chr && x->chr != 0 && x->pos == y->pos) x->multi = y->multi = 1;
    }
    for (uint64_t i = 0; i < p->n_variants; i++)
        if (strchr(p->vstr + p->var[i].a1, ',') || strchr(p->vstr + p->var[i].a2, ','))
            p->var[i].multi = 1;
    return MG_OK;
}
