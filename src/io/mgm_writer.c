/* mgm_writer.c - the .mgm writer (mg_writer_* in medgemini.h; format:
 * docs/FORMAT.md).
 *
 * Metadata is serialised into memory as it is set and tensors are declared up
 * front. The first tensor write freezes both: the size of the metadata and of
 * the table is then known (a table entry's size depends only on its name and
 * rank), so the data section starts at a fixed offset and each tensor's bytes
 * are appended there as they arrive, in any order. mg_writer_finish() writes
 * the metadata, the table and the header at the front and computes both
 * checksums. Only one tensor (plus its compressed copy) is in memory at a
 * time. */
#include "io/mgm.h"
#include "kernels/kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define ZSTD_LEVEL 3
#define TABLE_FIXED 44u /* bytes of a table entry besides name and dims */

typedef unsigned long long ull;

enum { W_OPEN, W_DATA, W_FINISHED, W_FAILED };

typedef struct wtensor {
    char *name;
    uint32_t name_len;
    int32_t dtype;
    uint32_t n_dims;
    uint32_t compress;
    uint64_t dims[MG_TENSOR_MAX_DIMS];
    uint64_t n_elems;
    uint64_t size;
    int written;
    uint32_t tflags; /* as stored */
    uint32_t crc;
    uint64_t offset; /* relative to data_offset */
    uint64_t stored;
} wtensor;

/* Open-addressing hash set of indices (slot value = index + 1; 0 = empty). */
typedef struct wmap {
    uint64_t *slot;
    size_t cap; /* power of two or 0 */
    size_t n;
} wmap;

struct mg_writer {
    uint32_t tag;            /* MG__TAG_WRITER */
    int state;
    int fd;
    uint32_t flags;
    char *path;
    mg_status fail_status;
    /* metadata, serialised */
    uint8_t *meta;
    size_t meta_len, meta_cap;
    uint64_t n_meta;
    char **keys;
    size_t keys_cap;
    wmap key_map;
    /* tensors, in declaration order */
    wtensor *t;
    size_t n_t, t_cap;
    wmap name_map;
    /* data section */
    uint64_t data_offset;
    uint64_t data_end;       /* relative to data_offset */
    uint32_t data_crc;
    ZSTD_CCtx *cctx;
    char msg[512];
};

static mg_status wfail(mg_writer *w, mg_status st, const char *fmt, ...)
    MG_PRINTF(3, 4);
static mg_status wfail(mg_writer *w, mg_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mg__verr(w->msg, sizeof w->msg, st, fmt, ap);
    va_end(ap);
    return st;
}

static mg_status wok(mg_writer *w) {
    w->msg[0] = '\0';
    return MG_OK;
}

static int w_valid(const mg_writer *w) { return w && w->tag == MG__TAG_WRITER; }

/* ---- hash set ------------------------------------------------------------ */

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

typedef const char *(*wmap_get)(const mg_writer *w, uint64_t idx);

static const char *get_key(const mg_writer *w, uint64_t i) { return w->keys[i]; }
static const char *get_name(const mg_writer *w, uint64_t i) { return w->t[i].name; }

/* Index of s, or -1. */
static int64_t wmap_find(const mg_writer *w, const wmap *m, wmap_get get,
                         const char *s) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash_str(s) & mask;; i = (i + 1) & mask) {
        uint64_t v = m->slot[i];
        if (!v) return -1;
        if (!strcmp(get(w, v - 1), s)) return (int64_t)(v - 1);
    }
}

static void wmap_put_raw(uint64_t *slot, size_t cap, uint64_t h, uint64_t v) {
    size_t mask = cap - 1, i = (size_t)h & mask;
    while (slot[i]) i = (i + 1) & mask;
    slot[i] = v;
}

/* Inserts index idx (whose string is not yet present). 0 or -1 (NOMEM). */
static int wmap_insert(const mg_writer *w, wmap *m, wmap_get get, uint64_t idx) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        uint64_t *slot = mg__calloc(cap, sizeof *slot);
        if (!slot) return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slot[i])
                wmap_put_raw(slot, cap, hash_str(get(w, m->slot[i] - 1)),
                             m->slot[i]);
        mg__free(m->slot);
        m->slot = slot;
        m->cap = cap;
    }
    wmap_put_raw(m->slot, m->cap, hash_str(get(w, idx)), idx + 1);
    m->n++;
    return 0;
}

/* ---- low-level output ------------------------------------------------------ */

static mg_status io_fail(mg_writer *w, const char *what, int e) {
    char eb[128];
    w->state = W_FAILED;
    w->fail_status = MG_E_IO;
    return wfail(w, MG_E_IO, "%s '%s': %s", what, w->path,
                 strerror_r(e, eb, sizeof eb));
}

static mg_status pwrite_all(mg_writer *w, const void *data, uint64_t n,
                            uint64_t off) {
    const uint8_t *p = data;
    while (n) {
        size_t c = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        ssize_t r = pwrite(w->fd, p, c, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return io_fail(w, "cannot write", r < 0 ? errno : ENOSPC);
        p += r;
        n -= (uint64_t)r;
        off += (uint64_t)r;
    }
    return MG_OK;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- argument checks --------------------------------------------------- */

/* Common state check for the declaration phase (metadata, add_tensor). */
static mg_status check_declare(mg_writer *w, const char *what) {
    switch (w->state) {
    case W_OPEN: return MG_OK;
    case W_DATA:
        return wfail(w, MG_E_MISUSE,
                     "%s: not allowed after tensor data has been written", what);
    case W_FINISHED:
        return wfail(w, MG_E_MISUSE, "%s: the writer is already finished", what);
    default:
        return wfail(w, w->fail_status,
                     "%s: an earlier error left the file incomplete", what);
    }
}

static mg_status check_name(mg_writer *w, const char *s, size_t max,
                            const char *what, size_t *len) {
    if (!s) return wfail(w, MG_E_INVALID_ARG, "%s is NULL", what);
    size_t n = strnlen(s, max + 1);
    if (n < 1 || n > max)
        return wfail(w, MG_E_INVALID_ARG, "%s must be 1..%zu bytes", what, max);
    if (!mg__utf8_valid(s, n))
        return wfail(w, MG_E_INVALID_ARG,
                     "%s is not valid UTF-8", what);
    *len = n;
    return MG_OK;
}

static mg_status check_key(mg_writer *w, const char *key, size_t *klen) {
    mg_status st = check_declare(w, "metadata");
    if (st) return st;
    if ((st = check_name(w, key, MG__MGM_MAX_KEY, "metadata key", klen)))
        return st;
    if (wmap_find(w, &w->key_map, get_key, key) >= 0)
        return wfail(w, MG_E_INVALID_ARG, "metadata key '%s' is already set",
                     key);
    return MG_OK;
}

static mg_status check_string(mg_writer *w, const char *key, const char *v,
                              uint64_t idx, size_t *len) {
    char where[40] = "";
    if (idx != UINT64_MAX) snprintf(where, sizeof where, " element %llu", (ull)idx);
    if (!v)
        return wfail(w, MG_E_INVALID_ARG, "metadata '%s'%s: string is NULL", key,
                     where);
    size_t n = strnlen(v, (size_t)MG__MGM_MAX_STRING + 1);
    if (n > MG__MGM_MAX_STRING)
        return wfail(w, MG_E_INVALID_ARG,
                     "metadata '%s'%s: string longer than %u bytes", key, where,
                     MG__MGM_MAX_STRING);
    if (!mg__utf8_valid(v, n))
        return wfail(w, MG_E_INVALID_ARG,
                     "metadata '%s'%s: string is not valid UTF-8", key, where);
    *len = n;
    return MG_OK;
}

/* ---- metadata ------------------------------------------------------------ */

/* Makes room for `more` bytes of metadata. */
static mg_status meta_reserve(mg_writer *w, uint64_t more) {
    uint64_t need;
    if (mg__add_u64(w->meta_len, more, &need) || need > SIZE_MAX / 2)
        return wfail(w, MG_E_NOMEM, "metadata too large");
    if (need <= w->meta_cap) return MG_OK;
    size_t cap = w->meta_cap ? w->meta_cap : 4096;
    while (cap < need) cap *= 2;
    uint8_t *p = mg__realloc(w->meta, cap);
    if (!p) return wfail(w, MG_E_NOMEM, "out of memory for metadata");
    w->meta = p;
    w->meta_cap = cap;
    return MG_OK;
}

static void meta_put32(mg_writer *w, uint32_t v) {
    put32(w->meta + w->meta_len, v);
    w->meta_len += 4;
}
static void meta_put64(mg_writer *w, uint64_t v) {
    put64(w->meta + w->meta_len, v);
    w->meta_len += 8;
}
static void meta_putb(mg_writer *w, const void *p, size_t n) {
    if (n) memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
}

/* Reserves room for an entry with `value_bytes` of value and writes its key
 * and type; also records the key. On error nothing changes. */
static mg_status meta_begin(mg_writer *w, const char *key, size_t klen,
                            uint32_t type, uint64_t value_bytes) {
    uint64_t n;
    if (mg__add_u64(8 + (uint64_t)klen, value_bytes, &n))
        return wfail(w, MG_E_NOMEM, "metadata too large");
    mg_status st = meta_reserve(w, n);
    if (st) return st;
    if (w->n_meta == w->keys_cap) {
        size_t cap = w->keys_cap ? w->keys_cap * 2 : 32;
        char **k = mg__realloc(w->keys, cap * sizeof *k);
        if (!k) return wfail(w, MG_E_NOMEM, "out of memory");
        w->keys = k;
        w->keys_cap = cap;
    }
    char *copy = mg__strndup(key, klen);
    if (!copy) return wfail(w, MG_E_NOMEM, "out of memory");
    w->keys[w->n_meta] = copy;
    if (wmap_insert(w, &w->key_map, get_key, w->n_meta)) {
        mg__free(copy);
        return wfail(w, MG_E_NOMEM, "out of memory");
    }
    w->n_meta++;
    meta_put32(w, (uint32_t)klen);
    meta_putb(w, key, klen);
    meta_put32(w, type);
    return MG_OK;
}

MG_API mg_status mg_writer_set_int(mg_writer *w, const char *key, int64_t v) {
    size_t klen;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = check_key(w, key, &klen);
    if (!st) st = meta_begin(w, key, klen, MG_META_INT, 8);
    if (st) return st;
    meta_put64(w, (uint64_t)v);
    return wok(w);
}

MG_API mg_status mg_writer_set_float(mg_writer *w, const char *key, double v) {
    size_t klen;
    uint64_t bits;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = check_key(w, key, &klen);
    if (!st) st = meta_begin(w, key, klen, MG_META_FLOAT, 8);
    if (st) return st;
    memcpy(&bits, &v, 8);
    meta_put64(w, bits);
    return wok(w);
}

MG_API mg_status mg_writer_set_string(mg_writer *w, const char *key,
                                      const char *v) {
    size_t klen, len;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = check_key(w, key, &klen);
    if (!st) st = check_string(w, key, v, UINT64_MAX, &len);
    if (!st) st = meta_begin(w, key, klen, MG_META_STRING, 4 + (uint64_t)len);
    if (st) return st;
    meta_put32(w, (uint32_t)len);
    meta_putb(w, v, len);
    return wok(w);
}

static mg_status set_num_array(mg_writer *w, const char *key, const void *v,
                               uint64_t n, uint32_t et) {
    size_t klen;
    uint64_t nb;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = check_key(w, key, &klen);
    if (st) return st;
    if (!v && n)
        return wfail(w, MG_E_INVALID_ARG, "metadata '%s': values are NULL", key);
    if (mg__mul_u64(n, 8, &nb) || mg__add_u64(nb, 12, &nb))
        return wfail(w, MG_E_INVALID_ARG, "metadata '%s': %llu values is too many",
                     key, (ull)n);
    if ((st = meta_begin(w, key, klen, MG_META_ARRAY, nb))) return st;
    meta_put32(w, et);
    meta_put64(w, n);
    const uint8_t *src = v;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t x;
        memcpy(&x, src + 8 * i, 8);
        meta_put64(w, x);
    }
    return wok(w);
}

MG_API mg_status mg_writer_set_int_array(mg_writer *w, const char *key,
                                         const int64_t *v, uint64_t n) {
    return set_num_array(w, key, v, n, MG_META_INT);
}

MG_API mg_status mg_writer_set_float_array(mg_writer *w, const char *key,
                                           const double *v, uint64_t n) {
    return set_num_array(w, key, v, n, MG_META_FLOAT);
}

MG_API mg_status mg_writer_set_string_array(mg_writer *w, const char *key,
                                            const char *const *v, uint64_t n) {
    size_t klen, len;
    uint64_t nb = 12, add;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = check_key(w, key, &klen);
    if (st) return st;
    if (!v && n)
        return wfail(w, MG_E_INVALID_ARG, "metadata '%s': values are NULL", key);
    for (uint64_t i = 0; i < n; i++) {
        if ((st = check_string(w, key, v[i], i, &len))) return st;
        if (mg__add_u64(nb, 4 + (uint64_t)len, &add))
            return wfail(w, MG_E_NOMEM, "metadata '%s': too large", key);
        nb = add;
    }
    if ((st = meta_begin(w, key, klen, MG_META_ARRAY, nb))) return st;
    meta_put32(w, MG_META_STRING);
    meta_put64(w, n);
    for (uint64_t i = 0; i < n; i++) {
        len = strlen(v[i]);
        meta_put32(w, (uint32_t)len);
        meta_putb(w, v[i], len);
    }
    return wok(w);
}

/* ---- tensors --------------------------------------------------------------- */

MG_API mg_status mg_writer_add_tensor(mg_writer *w, const char *name,
                                      int32_t dtype, uint32_t n_dims,
                                      const uint64_t *dims, uint32_t flags) {
    size_t nlen;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = check_declare(w, "mg_writer_add_tensor");
    if (st) return st;
    if ((st = check_name(w, name, MG__MGM_MAX_NAME, "tensor name", &nlen)))
        return st;
    uint32_t be = mg__dtype_block_elems(dtype);
    if (!be)
        return wfail(w, MG_E_INVALID_ARG, "tensor '%s': unknown dtype %d", name,
                     (int)dtype);
    if (n_dims < 1 || n_dims > MG_TENSOR_MAX_DIMS)
        return wfail(w, MG_E_INVALID_ARG, "tensor '%s': n_dims %u is not 1..%d",
                     name, n_dims, MG_TENSOR_MAX_DIMS);
    if (!dims) return wfail(w, MG_E_INVALID_ARG, "tensor '%s': dims is NULL", name);
    if (flags & ~(uint32_t)MG_WRITE_COMPRESS)
        return wfail(w, MG_E_INVALID_ARG, "tensor '%s': unknown flags 0x%x", name,
                     flags);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (dims[d] == 0)
            return wfail(w, MG_E_INVALID_ARG, "tensor '%s': dims[%u] is 0", name, d);
        if (mg__mul_u64(n, dims[d], &n))
            return wfail(w, MG_E_INVALID_ARG,
                         "tensor '%s': element count overflows", name);
    }
    if (dims[0] % be)
        return wfail(w, MG_E_INVALID_ARG,
                     "tensor '%s': dims[0] = %llu is not a multiple of %u, the "
                     "block size of %s",
                     name, (ull)dims[0], be, mg_dtype_name(dtype));
    int ok = 0;
    uint64_t size = mg__dtype_bytes(dtype, n, &ok);
    if (!ok || size > SIZE_MAX)
        return wfail(w, MG_E_INVALID_ARG, "tensor '%s': byte size overflows", name);
    if (wmap_find(w, &w->name_map, get_name, name) >= 0)
        return wfail(w, MG_E_INVALID_ARG, "tensor '%s' is already declared", name);
    if (w->n_t == w->t_cap) {
        size_t cap = w->t_cap ? w->t_cap * 2 : 64;
        wtensor *t = mg__realloc(w->t, cap * sizeof *t);
        if (!t) return wfail(w, MG_E_NOMEM, "out of memory");
        w->t = t;
        w->t_cap = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = mg__strndup(name, nlen);
    if (!t->name) return wfail(w, MG_E_NOMEM, "out of memory");
    t->name_len = (uint32_t)nlen;
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < MG_TENSOR_MAX_DIMS; d++)
        t->dims[d] = d < n_dims ? dims[d] : 1;
    t->n_elems = n;
    t->size = size;
    t->compress = ((flags | w->flags) & MG_WRITE_COMPRESS) != 0;
    if (wmap_insert(w, &w->name_map, get_name, w->n_t)) {
        mg__free(t->name);
        return wfail(w, MG_E_NOMEM, "out of memory");
    }
    w->n_t++;
    return wok(w);
}

/* Fixes the layout of the front of the file: from here on the metadata and
 * the table cannot change size. */
static void freeze(mg_writer *w) {
    uint64_t end = MG__MGM_HEADER_SIZE + (uint64_t)w->meta_len;
    for (size_t i = 0; i < w->n_t; i++)
        end += TABLE_FIXED + w->t[i].name_len + 8ull * w->t[i].n_dims;
    w->data_offset = mg__align_up(end, MG__MGM_WRITER_ALIGN);
    w->data_end = 0;
    w->data_crc = 0;
    w->state = W_DATA;
}

/* Looks up a tensor for writing. */
static mg_status find_for_write(mg_writer *w, const char *name,
                                const void *data, wtensor **out) {
    if (w->state == W_FINISHED)
        return wfail(w, MG_E_MISUSE, "the writer is already finished");
    if (w->state == W_FAILED)
        return wfail(w, w->fail_status,
                     "an earlier error left the file incomplete");
    if (!name) return wfail(w, MG_E_INVALID_ARG, "tensor name is NULL");
    int64_t i = wmap_find(w, &w->name_map, get_name, name);
    if (i < 0)
        return wfail(w, MG_E_NOT_FOUND, "tensor '%.200s' was not declared", name);
    if (w->t[i].written)
        return wfail(w, MG_E_MISUSE, "tensor '%s' was already written", name);
    if (!data) return wfail(w, MG_E_INVALID_ARG, "tensor '%s': data is NULL", name);
    *out = &w->t[i];
    return MG_OK;
}

static const uint8_t g_zero[MG__MGM_WRITER_ALIGN];

/* Compresses (if asked and worthwhile) and appends one tensor's bytes. */
static mg_status store(mg_writer *w, wtensor *t, const void *data) {
    const void *out = data;
    uint64_t out_size = t->size;
    void *cbuf = NULL;
    uint32_t tflags = 0;
    if (t->compress) {
        size_t bound = ZSTD_compressBound((size_t)t->size);
        if (ZSTD_isError(bound))
            return wfail(w, MG_E_INVALID_ARG, "tensor '%s' too large to compress",
                         t->name);
        if (!w->cctx && !(w->cctx = ZSTD_createCCtx()))
            return wfail(w, MG_E_NOMEM, "out of memory (zstd context)");
        cbuf = mg__malloc(bound);
        if (!cbuf)
            return wfail(w, MG_E_NOMEM,
                         "out of memory for the compressed copy of '%s'", t->name);
        size_t r = ZSTD_compressCCtx(w->cctx, cbuf, bound, data, (size_t)t->size,
                                     ZSTD_LEVEL);
        if (ZSTD_isError(r)) {
            mg__free(cbuf);
            return wfail(w, MG_E_INTERNAL, "tensor '%s': zstd: %s", t->name,
                         ZSTD_getErrorName(r));
        }
        if (r < t->size) { /* else store it raw: compression did not help */
            out = cbuf;
            out_size = r;
            tflags = MG__MGM_FLAG_ZSTD;
        }
    }
    if (w->state == W_OPEN) freeze(w);
    uint64_t off = mg__align_up(w->data_end, MG__MGM_WRITER_ALIGN);
    uint64_t pad = off - w->data_end;
    mg_status st = MG_OK;
    if (pad) st = pwrite_all(w, g_zero, pad, w->data_offset + w->data_end);
    if (!st) st = pwrite_all(w, out, out_size, w->data_offset + off);
    if (!st) {
        w->data_crc = mg__crc32c(w->data_crc, g_zero, (size_t)pad);
        w->data_crc = mg__crc32c(w->data_crc, out, (size_t)out_size);
        t->crc = mg__crc32c(0, data, (size_t)t->size);
        t->offset = off;
        t->stored = out_size;
        t->tflags = tflags;
        t->written = 1;
        w->data_end = off + out_size;
    }
    mg__free(cbuf);
    return st ? st : wok(w);
}

MG_API mg_status mg_writer_write_tensor(mg_writer *w, const char *name,
                                        const void *data, uint64_t size) {
    wtensor *t;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = find_for_write(w, name, data, &t);
    if (st) return st;
    if (size != t->size)
        return wfail(w, MG_E_INVALID_ARG,
                     "tensor '%s': %llu bytes given, its dtype and shape need %llu",
                     name, (ull)size, (ull)t->size);
    return store(w, t, data);
}

MG_API mg_status mg_writer_write_tensor_f32(mg_writer *w, const char *name,
                                            const float *data, uint64_t n_elems) {
    wtensor *t;
    if (!w_valid(w)) return MG_E_MISUSE;
    mg_status st = find_for_write(w, name, data, &t);
    if (st) return st;
    if (n_elems != t->n_elems)
        return wfail(w, MG_E_INVALID_ARG,
                     "tensor '%s': %llu values given, it has %llu elements", name,
                     (ull)n_elems, (ull)t->n_elems);
    if (t->dtype == MG_DTYPE_F32) return store(w, t, data);
    void *buf = mg__malloc((size_t)t->size);
    if (!buf)
        return wfail(w, MG_E_NOMEM, "out of memory converting tensor '%s'", name);
    if (mg__quantize(t->dtype, buf, data, n_elems) != 0) {
        mg__free(buf);
        return wfail(w, MG_E_INTERNAL, "tensor '%s': conversion to %s failed",
                     name, mg_dtype_name(t->dtype));
    }
    st = store(w, t, buf);
    mg__free(buf);
    return st;
}

/* ---- finish ---------------------------------------------------------------- */

MG_API mg_status mg_writer_finish(mg_writer *w) {
    if (!w_valid(w)) return MG_E_MISUSE;
    if (w->state == W_FINISHED)
        return wfail(w, MG_E_MISUSE, "the writer is already finished");
    if (w->state == W_FAILED)
        return wfail(w, w->fail_status,
                     "an earlier error left the file incomplete");
    for (size_t i = 0; i < w->n_t; i++)
        if (!w->t[i].written)
            return wfail(w, MG_E_MISUSE,
                         "tensor '%s' was declared but its data was never written",
                         w->t[i].name);
    if (w->state == W_OPEN) freeze(w);

    uint64_t meta_end = MG__MGM_HEADER_SIZE + (uint64_t)w->meta_len;
    uint64_t table_size = w->data_offset - meta_end; /* table + padding */
    uint8_t *table = mg__calloc(1, table_size ? (size_t)table_size : 1);
    if (!table) return wfail(w, MG_E_NOMEM, "out of memory for the tensor table");
    uint8_t *p = table;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put32(p, t->name_len);
        memcpy(p + 4, t->name, t->name_len);
        p += 4 + t->name_len;
        put32(p, (uint32_t)t->dtype);
        put32(p + 4, t->n_dims);
        p += 8;
        for (uint32_t d = 0; d < t->n_dims; d++, p += 8) put64(p, t->dims[d]);
        put32(p, t->tflags);
        put32(p + 4, t->crc);
        put64(p + 8, t->offset);
        put64(p + 16, t->stored);
        put64(p + 24, t->size);
        p += 32;
    }

    uint8_t hdr[MG__MGM_HEADER_SIZE];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, MG__MGM_MAGIC, 4);
    put32(hdr + 4, MG__MGM_VERSION);
    put32(hdr + 8, 0);
    put32(hdr + 12, MG__MGM_WRITER_ALIGN);
    put64(hdr + 16, w->n_meta);
    put64(hdr + 24, (uint64_t)w->n_t);
    put64(hdr + 32, MG__MGM_HEADER_SIZE);
    put64(hdr + 40, w->data_offset);
    put64(hdr + 48, w->data_end);
    put32(hdr + 60, w->data_crc);
    uint32_t crc = mg__crc32c(0, hdr, sizeof hdr); /* crc field still zero */
    crc = mg__crc32c(crc, w->meta, w->meta_len);
    crc = mg__crc32c(crc, table, (size_t)table_size);
    put32(hdr + 56, crc);

    mg_status st = pwrite_all(w, hdr, sizeof hdr, 0);
    if (!st) st = pwrite_all(w, w->meta, w->meta_len, MG__MGM_HEADER_SIZE);
    if (!st) st = pwrite_all(w, table, table_size, meta_end);
    mg__free(table);
    if (st) return st;
    /* No tensor data: the file ends at data_offset (the padding above was
     * written as part of the table buffer). */
    if (fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS)
        return io_fail(w, "cannot sync", errno);
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) return io_fail(w, "cannot close", errno);
    w->state = W_FINISHED;
    return wok(w);
}

/* ---- open / free ------------------------------------------------------------ */

MG_API mg_status mg_writer_open(mg_writer **out, const char *path,
                                uint32_t flags, char *err, size_t errlen) {
    char eb[128];
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path || !*path)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "path is NULL or empty");
    if (flags & ~(uint32_t)MG_WRITE_COMPRESS)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown flags 0x%x", flags);
    mg_writer *w = mg__calloc(1, sizeof *w);
    if (!w) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    w->path = mg__strdup(path);
    if (!w->path) {
        mg__free(w);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        mg__free(w->path);
        mg__free(w);
        return mg__err(err, errlen, MG_E_IO, "cannot create '%s': %s", path,
                       strerror_r(e, eb, sizeof eb));
    }
    w->tag = MG__TAG_WRITER;
    w->flags = flags;
    w->state = W_OPEN;
    *out = w;
    return MG_OK;
}

MG_API const char *mg_writer_errmsg(const mg_writer *w) {
    if (!w_valid(w)) return "not a valid writer handle";
    return w->msg;
}

MG_API void mg_writer_free(mg_writer *w) {
    if (!w_valid(w)) return;
    if (w->fd >= 0) close(w->fd);
    if (w->state != W_FINISHED) mg__remove_partial(w->path);
    for (size_t i = 0; i < w->n_meta; i++) mg__free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++) mg__free(w->t[i].name);
    mg__free(w->keys);
    mg__free(w->key_map.slot);
    mg__free(w->t);
    mg__free(w->name_map.slot);
    mg__free(w->meta);
    ZSTD_freeCCtx(w->cctx);
    mg__free(w->path);
    w->tag = MG__TAG_DEAD;
    mg__free(w);
}
