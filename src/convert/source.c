/* source.c - the converter's view of its input files: a list of tensors with
 * their file, offset, type and shape, read a block of rows at a time with
 * pread (no mapping: mapped file pages would count in the resident set). */
#include "convert/convert.h"
#include "kernels/kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void mg__csrc_free(mg__csrc *s) {
    if (!s) return;
    for (uint32_t i = 0; i < s->n_files; i++) {
        if (s->files[i].fd >= 0) close(s->files[i].fd);
        mg__free(s->files[i].path);
    }
    mg__free(s->files);
    for (size_t i = 0; i < s->n_t; i++) mg__free(s->t[i].name);
    mg__free(s->t);
    for (size_t i = 0; i < s->n_kv; i++) {
        mg__gkv *kv = &s->kv[i];
        mg__free(kv->key);
        mg__free(kv->s);
        mg__free(kv->ai);
        mg__free(kv->af);
        for (uint64_t k = 0; kv->as && k < kv->n; k++) mg__free(kv->as[k]);
        mg__free(kv->as);
    }
    mg__free(s->kv);
    memset(s, 0, sizeof *s);
}

mg_status mg__csrc_add_file(mg__csrc *s, const char *path, uint32_t *idx,
                            char *err, size_t errlen) {
    char eb[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mg__err(err, errlen, MG_E_IO, "cannot open '%s': %s", path,
                       strerror_r(errno, eb, sizeof eb));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mg__err(err, errlen, MG_E_IO, "'%s' is not a regular file", path);
    }
    mg__cfile *f = mg__realloc(s->files, (s->n_files + 1) * sizeof *f);
    if (!f) {
        close(fd);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    s->files = f;
    f = &s->files[s->n_files];
    f->fd = fd;
    f->size = (uint64_t)sb.st_size;
    f->path = mg__strdup(path);
    if (!f->path) {
        close(fd);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    *idx = s->n_files++;
    return MG_OK;
}

mg_status mg__csrc_add_tensor(mg__csrc *s, const mg__ctensor *t, char *err,
                              size_t errlen) {
    if (s->n_t == s->cap_t) {
        size_t cap = s->cap_t ? s->cap_t * 2 : 256;
        mg__ctensor *nt = mg__realloc(s->t, cap * sizeof *nt);
        if (!nt) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        s->t = nt;
        s->cap_t = cap;
    }
    s->t[s->n_t] = *t;
    s->t[s->n_t].name = mg__strdup(t->name);
    if (!s->t[s->n_t].name) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    s->t[s->n_t].used = 0;
    s->n_t++;
    return MG_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const mg__ctensor *)a)->name, ((const mg__ctensor *)b)->name);
}

typedef struct { uint32_t file; uint64_t off, end; const char *name; } range;

static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

mg_status mg__csrc_index(mg__csrc *s, char *err, size_t errlen) {
    if (s->n_t > 1) qsort(s->t, s->n_t, sizeof *s->t, cmp_name);
    for (size_t i = 1; i < s->n_t; i++)
        if (!strcmp(s->t[i - 1].name, s->t[i].name))
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "tensor '%.200s' appears twice in the source", s->t[i].name);
    if (s->n_t < 2) return MG_OK;
    range *r = mg__malloc(s->n_t * sizeof *r);
    if (!r) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_t; i++)
        r[i] = (range){s->t[i].file, s->t[i].offset, s->t[i].offset + s->t[i].size,
                       s->t[i].name};
    qsort(r, s->n_t, sizeof *r, cmp_range);
    mg_status st = MG_OK;
    for (size_t i = 1; i < s->n_t; i++)
        if (r[i].file == r[i - 1].file && r[i].off < r[i - 1].end &&
            r[i].end > r[i].off) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "%s: the data of tensors '%.120s' and '%.120s' overlap",
                         s->files[r[i].file].path, r[i - 1].name, r[i].name);
            break;
        }
    mg__free(r);
    return st;
}

mg__ctensor *mg__csrc_find(const mg__csrc *s, const char *name) {
    size_t lo = 0, hi = s->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->t[mid].name, name);
        if (!c) return &s->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const mg__gkv *mg__csrc_kv(const mg__csrc *s, const char *key) {
    for (size_t i = 0; i < s->n_kv; i++)
        if (!strcmp(s->kv[i].key, key)) return &s->kv[i];
    return NULL;
}

static mg_status pread_all(const mg__cfile *f, void *dst, uint64_t n, uint64_t off,
                           char *err, size_t errlen) {
    char eb[128];
    uint8_t *p = dst;
    while (n) {
        size_t c = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        ssize_t r = pread(f->fd, p, c, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return mg__err(err, errlen, MG_E_IO, "cannot read '%s': %s", f->path,
                           strerror_r(errno, eb, sizeof eb));
        if (r == 0)
            return mg__err(err, errlen, MG_E_IO, "'%s' is shorter than its header says",
                           f->path);
        p += r;
        n -= (uint64_t)r;
        off += (uint64_t)r;
    }
    return MG_OK;
}

uint64_t mg__csrc_bytes(int32_t type, uint64_t n, int *ok) {
    if (type == MG__SRC_Q4_K || type == MG__SRC_Q6_K) {
        *ok = n % 256 == 0;
        return *ok ? n / 256 * (type == MG__SRC_Q4_K ? 144 : 210) : 0;
    }
    return mg__dtype_bytes(type, n, ok);
}

mg_status mg__csrc_read_rows(const mg__csrc *s, const mg__ctensor *t,
                             uint64_t row0, uint64_t n_rows, float *out,
                             void *scratch, char *err, size_t errlen) {
    if (t->dtype < 0)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "tensor '%.200s' has type %s, which cannot be converted", t->name,
                       t->type_name ? t->type_name : "?");
    int ok = 0;
    uint64_t row_bytes = mg__csrc_bytes(t->dtype, t->dims[0], &ok);
    if (!ok) return mg__err(err, errlen, MG_E_INTERNAL, "bad row size");
    uint64_t n = n_rows * t->dims[0];
    mg_status st = pread_all(&s->files[t->file], scratch, row_bytes * n_rows,
                             t->offset + row0 * row_bytes, err, errlen);
    if (st) return st;
    if (t->dtype == MG_DTYPE_F32) memcpy(out, scratch, (size_t)n * sizeof(float));
    else if (t->dtype == MG__SRC_Q4_K) mg__dequant_q4_k(out, scratch, n);
    else if (t->dtype == MG__SRC_Q6_K) mg__dequant_q6_k(out, scratch, n);
    else if (mg__dequantize(t->dtype, out, scratch, n) != 0)
        return mg__err(err, errlen, MG_E_INTERNAL, "cannot decode tensor '%.200s'", t->name);
    return MG_OK;
}

mg_status mg__read_text_file(char **out, size_t *len, const char *path,
                             size_t max, char *err, size_t errlen) {
    char eb[128];
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return MG_E_NOT_FOUND;
        return mg__err(err, errlen, MG_E_IO, "cannot open '%s': %s", path,
                       strerror_r(errno, eb, sizeof eb));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > max) {
        close(fd);
        return mg__err(err, errlen, MG_E_IO, "'%s' is not a regular file of at most %zu bytes",
                       path, max);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = mg__malloc(n + 1);
    if (!buf) {
        close(fd);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    mg__cfile f = {fd, (char *)path, n};
    mg_status st = pread_all(&f, buf, n, 0, err, errlen);
    close(fd);
    if (st) {
        mg__free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return MG_OK;
}
