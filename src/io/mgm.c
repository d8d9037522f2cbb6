/* mgm.c - the validating .mgm reader (format: docs/FORMAT.md).
 *
 * Every count, length and offset read from the file is checked against the
 * bytes that are really there before it is used, so that a damaged or hostile
 * file yields an error and never a crash or a huge allocation. Loading walks
 * the metadata and the tensor table twice: the first pass validates and
 * counts, the second copies into one owned block (entries, indexes, arrays
 * and one arena for every string), so that a tokenizer with half a million
 * strings costs one allocation rather than half a million. */
#include "io/mgm.h"
#include "kernels/kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define HDR_VERSION     4
#define HDR_FLAGS       8
#define HDR_ALIGNMENT  12
#define HDR_N_META     16
#define HDR_N_TENSORS  24
#define HDR_META_OFF   32
#define HDR_DATA_OFF   40
#define HDR_DATA_SIZE  48
#define HDR_CRC        56
#define HDR_DATA_CRC   60

#define MIN_META_ENTRY   13u /* key_len + 1-byte key + type + empty string */
#define MIN_TENSOR_ENTRY 53u /* fixed 44 + 1-byte name + one dim */
#define VERIFY_CHUNK     ((size_t)1 << 18)
#define HUGE_PAGE        ((size_t)2 << 20) /* x86-64 transparent huge page */
#define HUGE_MIN         ((uint64_t)16 << 20) /* files from this size on */

typedef unsigned long long ull; /* for printf */

typedef struct mgm_priv {
    void *map;          /* MG_LOAD_MMAP: the mmap()ed file, or NULL */
    size_t map_size;
    void *buf;          /* otherwise: the file read into memory */
    void *block;        /* entries, indexes, arrays, strings (one malloc) */
    void *arena;        /* decompressed tensors (aligned), or NULL */
    const mg__meta **meta_idx;     /* sorted by key */
    const mg__tensor **tensor_idx; /* sorted by name */
    uint32_t flags;     /* the MG_LOAD_* bits it was opened with */
} mgm_priv;

typedef struct mgm_obj {
    mg__mgm pub;
    mgm_priv priv;
} mgm_obj;

/* Loader state shared by the two passes. */
typedef struct ld {
    const uint8_t *b;
    uint64_t file_size;
    uint32_t flags;
    uint32_t alignment;
    uint64_t n_meta, n_tensors, data_offset, data_size;
    uint32_t data_crc;
    uint64_t table_start, table_end;
    /* pass 1 totals */
    uint64_t n_chars, n_ptrs, n_nums;
    /* pass 2 destinations */
    mg__meta *meta;
    mg__tensor *tensors;
    char *chars;
    const char **ptrs;
    uint64_t *nums;
    uint64_t chars_used, ptrs_used, nums_used;
    char *err;
    size_t errlen;
} ld;

typedef struct cur {
    const uint8_t *b;
    uint64_t pos, end;
} cur;

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static int cur_u32(cur *c, uint32_t *v) {
    if (c->end - c->pos < 4) return -1;
    *v = rd32(c->b + c->pos);
    c->pos += 4;
    return 0;
}

static int cur_u64(cur *c, uint64_t *v) {
    if (c->end - c->pos < 8) return -1;
    *v = rd64(c->b + c->pos);
    c->pos += 8;
    return 0;
}

static mg_status fail(ld *L, mg_status st, const char *fmt, ...) MG_PRINTF(3, 4);
static mg_status fail(ld *L, mg_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mg__verr(L->err, L->errlen, st, fmt, ap);
    va_end(ap);
    return st;
}

static const char *put_str(ld *L, const uint8_t *s, uint32_t n) {
    char *d = L->chars + L->chars_used;
    memcpy(d, s, n);
    d[n] = '\0';
    L->chars_used += (uint64_t)n + 1;
    return d;
}

static int all_zero(const uint8_t *p, uint64_t n, uint64_t *bad) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) { *bad = i; return 0; }
    return 1;
}

static const char *dtype_str(uint32_t dtype) {
    const char *s = mg_dtype_name((int32_t)dtype);
    return s ? s : "?";
}

/* ---- metadata ------------------------------------------------------------ */

/* A string value (u32 length + bytes) of entry i, element k (or a scalar when
 * k == UINT64_MAX). */
static mg_status rd_string(ld *L, cur *c, int fill, uint64_t i, uint32_t klen,
                           const char *key, uint64_t k, const char **out) {
    uint32_t len;
    uint64_t at = c->pos;
    char where[48] = "";
    if (k != UINT64_MAX) snprintf(where, sizeof where, " element %llu", (ull)k);
    if (cur_u32(c, &len))
        return fail(L, MG_E_MODEL_FORMAT,
                    "metadata entry %llu ('%.*s')%s: string length at offset "
                    "%llu runs past data_offset %llu",
                    (ull)i, (int)klen, key, where, (ull)at, (ull)L->data_offset);
    if (len > MG__MGM_MAX_STRING)
        return fail(L, MG_E_MODEL_FORMAT,
                    "metadata entry %llu ('%.*s')%s: string length %u exceeds "
                    "the limit of %u bytes",
                    (ull)i, (int)klen, key, where, len, MG__MGM_MAX_STRING);
    if (c->end - c->pos < len)
        return fail(L, MG_E_MODEL_FORMAT,
                    "metadata entry %llu ('%.*s')%s: string of %u bytes at offset "
                    "%llu runs past data_offset %llu",
                    (ull)i, (int)klen, key, where, len, (ull)c->pos,
                    (ull)L->data_offset);
    const uint8_t *s = c->b + c->pos;
    if (!fill) {
        if (!mg__utf8_valid((const char *)s, len))
            return fail(L, MG_E_MODEL_FORMAT,
                        "metadata entry %llu ('%.*s')%s: string at offset %llu "
                        "is not valid UTF-8 or contains NUL",
                        (ull)i, (int)klen, key, where, (ull)c->pos);
        L->n_chars += (uint64_t)len + 1;
    } else {
        *out = put_str(L, s, len);
    }
    c->pos += len;
    return MG_OK;
}

static mg_status parse_meta(ld *L, int fill) {
    cur c = {L->b, MG__MGM_HEADER_SIZE, L->data_offset};
    for (uint64_t i = 0; i < L->n_meta; i++) {
        uint64_t at = c.pos;
        uint32_t klen, type;
        if (cur_u32(&c, &klen))
            return fail(L, MG_E_MODEL_FORMAT,
                        "metadata entry %llu: key length at offset %llu runs "
                        "past data_offset %llu",
                        (ull)i, (ull)at, (ull)L->data_offset);
        if (klen < 1 || klen > MG__MGM_MAX_KEY)
            return fail(L, MG_E_MODEL_FORMAT,
                        "metadata entry %llu at offset %llu: key length %u is "
                        "outside 1..%u",
                        (ull)i, (ull)at, klen, MG__MGM_MAX_KEY);
        if (c.end - c.pos < klen)
            return fail(L, MG_E_MODEL_FORMAT,
                        "metadata entry %llu at offset %llu: key of %u bytes "
                        "runs past data_offset %llu",
                        (ull)i, (ull)at, klen, (ull)L->data_offset);
        const char *key = (const char *)c.b + c.pos;
        if (!fill && !mg__utf8_valid(key, klen))
            return fail(L, MG_E_MODEL_FORMAT,
                        "metadata entry %llu at offset %llu: key is not valid "
                        "UTF-8 or contains NUL",
                        (ull)i, (ull)at);
        mg__meta *m = fill ? &L->meta[i] : NULL;
        if (m) {
            m->key = put_str(L, c.b + c.pos, klen);
            m->elem_type = 0;
            m->n = 1;
        } else {
            L->n_chars += (uint64_t)klen + 1;
        }
        c.pos += klen;
        if (cur_u32(&c, &type))
            return fail(L, MG_E_MODEL_FORMAT,
                        "metadata entry %llu ('%.*s'): value type runs past "
                        "data_offset %llu",
                        (ull)i, (int)klen, key, (ull)L->data_offset);
        if (m) m->type = (int32_t)type;
        uint64_t v;
        mg_status st;
        switch (type) {
        case MG_META_INT:
        case MG_META_FLOAT:
            if (cur_u64(&c, &v))
                return fail(L, MG_E_MODEL_FORMAT,
                            "metadata entry %llu ('%.*s'): 8-byte value runs "
                            "past data_offset %llu",
                            (ull)i, (int)klen, key, (ull)L->data_offset);
            if (m && type == MG_META_INT) m->v.i = (int64_t)v;
            if (m && type == MG_META_FLOAT) memcpy(&m->v.f, &v, sizeof v);
            break;
        case MG_META_STRING: {
            const char *s = NULL;
            st = rd_string(L, &c, fill, i, klen, key, UINT64_MAX, &s);
            if (st) return st;
            if (m) m->v.s = s;
            break;
        }
        case MG_META_ARRAY: {
            uint32_t et;
            uint64_t count, nb;
            if (cur_u32(&c, &et) || cur_u64(&c, &count))
                return fail(L, MG_E_MODEL_FORMAT,
                            "metadata entry %llu ('%.*s'): array header runs "
                            "past data_offset %llu",
                            (ull)i, (int)klen, key, (ull)L->data_offset);
            if (et < MG_META_INT || et > MG_META_STRING)
                return fail(L, MG_E_MODEL_FORMAT,
                            "metadata entry %llu ('%.*s'): array element type "
                            "%u is not 1 (int), 2 (float) or 3 (string)",
                            (ull)i, (int)klen, key, et);
            uint64_t left = c.end - c.pos;
            if (et != MG_META_STRING) {
                if (mg__mul_u64(count, 8, &nb) || nb > left)
                    return fail(L, MG_E_MODEL_FORMAT,
                                "metadata entry %llu ('%.*s'): array of %llu "
                                "8-byte elements needs more than the %llu bytes "
                                "left before data_offset",
                                (ull)i, (int)klen, key, (ull)count, (ull)left);
                if (!m) {
                    L->n_nums += count;
                } else {
                    uint64_t *dst = L->nums + L->nums_used;
                    for (uint64_t k = 0; k < count; k++)
                        dst[k] = rd64(c.b + c.pos + 8 * k);
                    L->nums_used += count;
                    if (et == MG_META_INT) m->v.ai = (const int64_t *)(void *)dst;
                    else m->v.af = (const double *)(void *)dst;
                }
                c.pos += nb;
            } else {
                if (count > left / 4)
                    return fail(L, MG_E_MODEL_FORMAT,
                                "metadata entry %llu ('%.*s'): array of %llu "
                                "strings cannot fit in the %llu bytes left "
                                "before data_offset",
                                (ull)i, (int)klen, key, (ull)count, (ull)left);
                const char **dst = m ? L->ptrs + L->ptrs_used : NULL;
                for (uint64_t k = 0; k < count; k++) {
                    st = rd_string(L, &c, fill, i, klen, key, k,
                                   m ? &dst[k] : NULL);
                    if (st) return st;
                }
                if (m) {
                    L->ptrs_used += count;
                    m->v.as = dst;
                } else {
                    L->n_ptrs += count;
                }
            }
            if (m) {
                m->elem_type = (int32_t)et;
                m->n = count;
            }
            break;
        }
        default:
            return fail(L, MG_E_MODEL_FORMAT,
                        "metadata entry %llu ('%.*s'): unknown value type %u",
                        (ull)i, (int)klen, key, type);
        }
    }
    L->table_start = c.pos;
    return MG_OK;
}

/* ---- tensor table ------------------------------------------------------- */

static mg_status parse_tensors(ld *L, int fill) {
    cur c = {L->b, L->table_start, L->data_offset};
    for (uint64_t i = 0; i < L->n_tensors; i++) {
        uint64_t at = c.pos;
        uint32_t nlen, dtype, n_dims, tflags, crc;
        uint64_t dims[MG_TENSOR_MAX_DIMS] = {1, 1, 1, 1};
        uint64_t off, stored, size, n_elems = 1, expect, end;
        if (cur_u32(&c, &nlen))
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu: name length at offset %llu runs past "
                        "data_offset %llu",
                        (ull)i, (ull)at, (ull)L->data_offset);
        if (nlen < 1 || nlen > MG__MGM_MAX_NAME)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu at offset %llu: name length %u is outside "
                        "1..%u",
                        (ull)i, (ull)at, nlen, MG__MGM_MAX_NAME);
        if (c.end - c.pos < nlen)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu at offset %llu: name of %u bytes runs past "
                        "data_offset %llu",
                        (ull)i, (ull)at, nlen, (ull)L->data_offset);
        const char *name = (const char *)c.b + c.pos;
        if (!fill && !mg__utf8_valid(name, nlen))
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu at offset %llu: name is not valid UTF-8 or "
                        "contains NUL",
                        (ull)i, (ull)at);
        c.pos += nlen;
        int nm = nlen > 200 ? 200 : (int)nlen; /* keep messages short */
        if (cur_u32(&c, &dtype) || cur_u32(&c, &n_dims))
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu ('%.*s'): entry runs past data_offset %llu",
                        (ull)i, nm, name, (ull)L->data_offset);
        if (mg__dtype_block_elems((int32_t)dtype) == 0)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu ('%.*s'): unknown dtype %u", (ull)i, nm,
                        name, dtype);
        if (n_dims < 1 || n_dims > MG_TENSOR_MAX_DIMS)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu ('%.*s'): n_dims %u is outside 1..%u",
                        (ull)i, nm, name, n_dims, MG_TENSOR_MAX_DIMS);
        for (uint32_t d = 0; d < n_dims; d++) {
            if (cur_u64(&c, &dims[d]))
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): dims run past data_offset %llu",
                            (ull)i, nm, name, (ull)L->data_offset);
            if (dims[d] == 0)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): dims[%u] is 0", (ull)i, nm,
                            name, d);
            if (mg__mul_u64(n_elems, dims[d], &n_elems))
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): the product of its dims "
                            "overflows 64 bits",
                            (ull)i, nm, name);
        }
        if (cur_u32(&c, &tflags) || cur_u32(&c, &crc) || cur_u64(&c, &off) ||
            cur_u64(&c, &stored) || cur_u64(&c, &size))
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor %llu ('%.*s'): entry runs past data_offset %llu",
                        (ull)i, nm, name, (ull)L->data_offset);
        if (!fill) {
            uint32_t be = mg__dtype_block_elems((int32_t)dtype);
            int ok = 0;
            if (dims[0] % be)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): dims[0] = %llu is not a "
                            "multiple of the %s block size %u",
                            (ull)i, nm, name, (ull)dims[0], dtype_str(dtype), be);
            expect = mg__dtype_bytes((int32_t)dtype, n_elems, &ok);
            if (!ok)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): %llu elements of %s have no "
                            "valid byte size",
                            (ull)i, nm, name, (ull)n_elems, dtype_str(dtype));
            if (size != expect)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): size %llu does not match %llu "
                            "elements of %s (%llu bytes)",
                            (ull)i, nm, name, (ull)size, (ull)n_elems,
                            dtype_str(dtype), (ull)expect);
            if (tflags & ~MG__MGM_FLAG_ZSTD)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): unknown flags 0x%x", (ull)i,
                            nm, name, tflags);
            if (off % L->alignment)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): offset %llu is not a multiple "
                            "of the alignment %u",
                            (ull)i, nm, name, (ull)off, L->alignment);
            if (!(tflags & MG__MGM_FLAG_ZSTD) && stored != size)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): uncompressed but stored_size "
                            "%llu differs from size %llu",
                            (ull)i, nm, name, (ull)stored, (ull)size);
            if (stored == 0)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): stored_size is 0", (ull)i, nm,
                            name);
            uint64_t most;
            if ((tflags & MG__MGM_FLAG_ZSTD) &&
                !mg__mul_u64(stored, MG__MGM_MAX_ZSTD_RATIO, &most) && size > most)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): %llu stored bytes cannot "
                            "decompress to %llu bytes",
                            (ull)i, nm, name, (ull)stored, (ull)size);
            if (mg__add_u64(off, stored, &end) || end > L->data_size)
                return fail(L, MG_E_MODEL_FORMAT,
                            "tensor %llu ('%.*s'): stored bytes [%llu, +%llu) run "
                            "past the data section (%llu bytes)",
                            (ull)i, nm, name, (ull)off, (ull)stored,
                            (ull)L->data_size);
            L->n_chars += (uint64_t)nlen + 1;
        } else {
            mg__tensor *t = &L->tensors[i];
            t->name = put_str(L, (const uint8_t *)name, nlen);
            t->dtype = (int32_t)dtype;
            t->n_dims = n_dims;
            memcpy(t->dims, dims, sizeof dims);
            t->n_elems = n_elems;
            t->n_bytes = size;
            t->offset = L->data_offset + off;
            t->stored = stored;
            t->flags = tflags;
            t->crc32c = crc;
            if (!(tflags & MG__MGM_FLAG_ZSTD)) t->data = L->b + t->offset;
        }
    }
    L->table_end = c.pos;
    return MG_OK;
}

/* ---- sorting and look-up -------------------------------------------------- */

static int cmp_meta(const void *a, const void *b) {
    return strcmp((*(const mg__meta *const *)a)->key,
                  (*(const mg__meta *const *)b)->key);
}
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const mg__tensor *const *)a)->name,
                  (*(const mg__tensor *const *)b)->name);
}
static int cmp_tensor_off(const void *a, const void *b) {
    uint64_t x = (*(const mg__tensor *const *)a)->offset;
    uint64_t y = (*(const mg__tensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}
static int find_meta(const void *key, const void *e) {
    return strcmp((const char *)key, (*(const mg__meta *const *)e)->key);
}
static int find_tensor(const void *key, const void *e) {
    return strcmp((const char *)key, (*(const mg__tensor *const *)e)->name);
}

const mg__meta *mg__mgm_meta(const mg__mgm *f, const char *key) {
    if (!f || !key || !f->n_meta) return NULL;
    const mgm_priv *p = f->priv;
    const mg__meta *const *e =
        bsearch(key, p->meta_idx, (size_t)f->n_meta, sizeof *e, find_meta);
    return e ? *e : NULL;
}

const mg__tensor *mg__mgm_tensor(const mg__mgm *f, const char *name) {
    if (!f || !name || !f->n_tensors) return NULL;
    const mgm_priv *p = f->priv;
    const mg__tensor *const *e =
        bsearch(name, p->tensor_idx, (size_t)f->n_tensors, sizeof *e, find_tensor);
    return e ? *e : NULL;
}

/* ---- loading ------------------------------------------------------------ */

static mg_status check_header(ld *L) {
    const uint8_t *b = L->b;
    if (L->file_size < MG__MGM_HEADER_SIZE)
        return fail(L, MG_E_MODEL_FORMAT,
                    "file is %llu bytes, too short for the %u-byte .mgm header",
                    (ull)L->file_size, MG__MGM_HEADER_SIZE);
    if (memcmp(b, MG__MGM_MAGIC, 4))
        return fail(L, MG_E_MODEL_FORMAT,
                    "not an .mgm file (the magic bytes are not \"MGMF\")");
    uint32_t version = rd32(b + HDR_VERSION);
    if (version == 0)
        return fail(L, MG_E_MODEL_FORMAT, "header: version 0 is invalid");
    if (version > MG__MGM_VERSION)
        return fail(L, MG_E_UNSUPPORTED,
                    "header: format version %u is newer than this library "
                    "supports (%u)",
                    version, MG__MGM_VERSION);
    uint32_t hflags = rd32(b + HDR_FLAGS);
    if (hflags)
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: flags 0x%x set, but version 1 defines none", hflags);
    uint32_t a = rd32(b + HDR_ALIGNMENT);
    if (a < MG__MGM_MIN_ALIGN || a > MG__MGM_MAX_ALIGN || (a & (a - 1)))
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: alignment %u is not a power of two in %u..%u", a,
                    MG__MGM_MIN_ALIGN, MG__MGM_MAX_ALIGN);
    L->alignment = a;
    L->n_meta = rd64(b + HDR_N_META);
    L->n_tensors = rd64(b + HDR_N_TENSORS);
    uint64_t meta_off = rd64(b + HDR_META_OFF);
    L->data_offset = rd64(b + HDR_DATA_OFF);
    L->data_size = rd64(b + HDR_DATA_SIZE);
    L->data_crc = rd32(b + HDR_DATA_CRC);
    if (meta_off != MG__MGM_HEADER_SIZE)
        return fail(L, MG_E_MODEL_FORMAT, "header: meta_offset %llu is not %u",
                    (ull)meta_off, MG__MGM_HEADER_SIZE);
    if (L->data_offset < MG__MGM_HEADER_SIZE || L->data_offset % a)
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: data_offset %llu is below %u or not a multiple of "
                    "the alignment %u",
                    (ull)L->data_offset, MG__MGM_HEADER_SIZE, a);
    if (L->data_offset > L->file_size)
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: data_offset %llu is past the end of the file (%llu "
                    "bytes; truncated?)",
                    (ull)L->data_offset, (ull)L->file_size);
    uint64_t end;
    if (mg__add_u64(L->data_offset, L->data_size, &end) || end > L->file_size)
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: data section of %llu bytes at %llu runs past the "
                    "end of the file (%llu bytes; truncated?)",
                    (ull)L->data_size, (ull)L->data_offset, (ull)L->file_size);
    uint64_t room = L->data_offset - MG__MGM_HEADER_SIZE;
    if (L->n_meta > room / MIN_META_ENTRY)
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: n_meta %llu entries cannot fit in the %llu bytes "
                    "before data_offset",
                    (ull)L->n_meta, (ull)room);
    if (L->n_tensors > room / MIN_TENSOR_ENTRY)
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: n_tensors %llu entries cannot fit in the %llu bytes "
                    "before data_offset",
                    (ull)L->n_tensors, (ull)room);
    static const uint8_t zero4[4];
    uint32_t crc = mg__crc32c(0, b, HDR_CRC);
    crc = mg__crc32c(crc, zero4, 4);
    crc = mg__crc32c(crc, b + HDR_CRC + 4, (size_t)(L->data_offset - HDR_CRC - 4));
    uint32_t stored = rd32(b + HDR_CRC);
    if (crc != stored)
        return fail(L, MG_E_CHECKSUM,
                    "header checksum mismatch (stored 0x%08x, computed 0x%08x): "
                    "the header, metadata or tensor table is corrupt",
                    stored, crc);
    return MG_OK;
}

/* Sizes the owned block from the pass-1 totals, allocates it and points the
 * pass-2 destinations into it. */
static mg_status alloc_block(ld *L, mgm_obj *o) {
    size_t n_meta = (size_t)L->n_meta, n_t = (size_t)L->n_tensors;
    size_t parts[7], total = 0;
    if (mg__mul_size(n_meta, sizeof(mg__meta), &parts[0]) ||
        mg__mul_size(n_t, sizeof(mg__tensor), &parts[1]) ||
        mg__mul_size(n_meta, sizeof(mg__meta *), &parts[2]) ||
        mg__mul_size(n_t, sizeof(mg__tensor *), &parts[3]) ||
        L->n_ptrs > SIZE_MAX || mg__mul_size((size_t)L->n_ptrs, sizeof(char *), &parts[4]) ||
        L->n_nums > SIZE_MAX || mg__mul_size((size_t)L->n_nums, 8, &parts[5]) ||
        L->n_chars > SIZE_MAX)
        return fail(L, MG_E_NOMEM, "metadata too large for this platform");
    parts[6] = (size_t)L->n_chars;
    for (int k = 0; k < 7; k++)
        if (__builtin_add_overflow(total, parts[k], &total))
            return fail(L, MG_E_NOMEM, "metadata too large for this platform");
    char *p = mg__calloc(1, total ? total : 1);
    if (!p)
        return fail(L, MG_E_NOMEM, "out of memory for %llu bytes of metadata",
                    (ull)total);
    o->priv.block = p;
    /* Every part but the last is a multiple of 8 bytes, so each stays
     * naturally aligned. */
    L->meta = (mg__meta *)(void *)p;
    p += parts[0];
    L->tensors = (mg__tensor *)(void *)p;
    p += parts[1];
    o->priv.meta_idx = (const mg__meta **)(void *)p;
    p += parts[2];
    o->priv.tensor_idx = (const mg__tensor **)(void *)p;
    p += parts[3];
    L->ptrs = (const char **)(void *)p;
    p += parts[4];
    L->nums = (uint64_t *)(void *)p;
    p += parts[5];
    L->chars = p;
    return MG_OK;
}

/* Checks that the stored ranges do not overlap (sorted holds the tensors in
 * offset order). */
static mg_status check_overlap(ld *L, const mg__tensor **sorted, uint64_t n) {
    for (uint64_t k = 1; k < n; k++) {
        const mg__tensor *a = sorted[k - 1], *t = sorted[k];
        if (t->offset < a->offset + a->stored)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensors '%.200s' and '%.200s' overlap in the data "
                        "section (offsets %llu and %llu)",
                        a->name, t->name, (ull)(a->offset - L->data_offset),
                        (ull)(t->offset - L->data_offset));
    }
    return MG_OK;
}

static mg_status decompress_all(ld *L, mgm_obj *o) {
    mg__mgm *f = &o->pub;
    uint64_t total = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        mg__tensor *t = &f->tensors[i];
        if (!(t->flags & MG__MGM_FLAG_ZSTD)) continue;
        const void *src = L->b + t->offset;
        unsigned long long fcs = ZSTD_getFrameContentSize(src, (size_t)t->stored);
        if (fcs == ZSTD_CONTENTSIZE_ERROR)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor '%.200s': stored bytes are not a zstd frame",
                        t->name);
        if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor '%.200s': zstd frame does not record its "
                        "content size",
                        t->name);
        if (fcs != t->n_bytes)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor '%.200s': zstd frame holds %llu bytes, the "
                        "table says %llu",
                        t->name, fcs, (ull)t->n_bytes);
        size_t fsz = ZSTD_findFrameCompressedSize(src, (size_t)t->stored);
        if (ZSTD_isError(fsz) || fsz != t->stored)
            return fail(L, MG_E_MODEL_FORMAT,
                        "tensor '%.200s': stored bytes are not exactly one zstd "
                        "frame (%s)",
                        t->name,
                        ZSTD_isError(fsz) ? ZSTD_getErrorName(fsz)
                                          : "trailing bytes");
        if (mg__add_u64(total, mg__align_up(t->n_bytes, L->alignment), &total))
            return fail(L, MG_E_NOMEM, "decompressed tensors overflow 64 bits");
    }
    if (total == 0) return MG_OK;
    if (total > SIZE_MAX)
        return fail(L, MG_E_NOMEM, "decompressed tensors too large (%llu bytes)",
                    (ull)total);
    size_t al = L->alignment;
    uint8_t *arena = mg__aligned_alloc(al, (size_t)total);
    if (!arena)
        return fail(L, MG_E_NOMEM,
                    "out of memory for %llu bytes of decompressed tensors",
                    (ull)total);
    o->priv.arena = arena;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx) return fail(L, MG_E_NOMEM, "out of memory (zstd context)");
    mg_status st = MG_OK;
    uint64_t pos = 0;
    for (uint64_t i = 0; i < f->n_tensors && st == MG_OK; i++) {
        mg__tensor *t = &f->tensors[i];
        if (!(t->flags & MG__MGM_FLAG_ZSTD)) continue;
        uint8_t *dst = arena + pos;
        pos += mg__align_up(t->n_bytes, L->alignment);
        size_t r = ZSTD_decompressDCtx(dctx, dst, (size_t)t->n_bytes,
                                       L->b + t->offset, (size_t)t->stored);
        if (ZSTD_isError(r)) {
            st = fail(L, MG_E_MODEL_FORMAT,
                      "tensor '%.200s': zstd decompression failed: %s", t->name,
                      ZSTD_getErrorName(r));
        } else if (r != t->n_bytes) {
            st = fail(L, MG_E_MODEL_FORMAT,
                      "tensor '%.200s': decompressed to %llu bytes, expected %llu",
                      t->name, (ull)r, (ull)t->n_bytes);
        } else {
            uint32_t crc = mg__crc32c(0, dst, r);
            if (crc != t->crc32c)
                st = fail(L, MG_E_CHECKSUM,
                          "tensor '%.200s': CRC-32C mismatch after decompression "
                          "(stored 0x%08x, computed 0x%08x)",
                          t->name, t->crc32c, crc);
        }
        t->data = dst;
    }
    ZSTD_freeDCtx(dctx);
    return st;
}

/* MG_LOAD_VERIFY_CHECKSUMS: walks the whole data section in offset order,
 * checking each uncompressed tensor's CRC, that every other byte is zero, and
 * the CRC of the section itself. */
static mg_status verify_data(ld *L, const mg__tensor **sorted, uint64_t n) {
    const uint8_t *base = L->b + L->data_offset;
    uint32_t dcrc = 0;
    uint64_t pos = 0, bad;
    for (uint64_t k = 0; k <= n; k++) {
        const mg__tensor *t = k < n ? sorted[k] : NULL;
        uint64_t start = t ? t->offset - L->data_offset : L->data_size;
        if (!all_zero(base + pos, start - pos, &bad))
            return fail(L, MG_E_MODEL_FORMAT,
                        "non-zero padding byte at file offset %llu",
                        (ull)(L->data_offset + pos + bad));
        dcrc = mg__crc32c(dcrc, base + pos, (size_t)(start - pos));
        if (!t) break;
        const uint8_t *p = base + start;
        int raw = !(t->flags & MG__MGM_FLAG_ZSTD);
        uint32_t tcrc = 0;
        for (uint64_t done = 0; done < t->stored;) {
            size_t c = t->stored - done < VERIFY_CHUNK ? (size_t)(t->stored - done)
                                                       : VERIFY_CHUNK;
            dcrc = mg__crc32c(dcrc, p + done, c);
            if (raw) tcrc = mg__crc32c(tcrc, p + done, c);
            done += c;
        }
        if (raw && tcrc != t->crc32c)
            return fail(L, MG_E_CHECKSUM,
                        "tensor '%.200s': CRC-32C mismatch (stored 0x%08x, "
                        "computed 0x%08x)",
                        t->name, t->crc32c, tcrc);
        pos = start + t->stored;
    }
    if (dcrc != L->data_crc)
        return fail(L, MG_E_CHECKSUM,
                    "data section checksum mismatch (stored 0x%08x, computed "
                    "0x%08x)",
                    L->data_crc, dcrc);
    uint64_t end = L->data_offset + L->data_size;
    if (L->file_size > end)
        return fail(L, MG_E_MODEL_FORMAT,
                    "%llu unexpected bytes after the data section (which ends "
                    "at %llu)",
                    (ull)(L->file_size - end), (ull)end);
    return MG_OK;
}

static mg_status load(ld *L, mgm_obj *o, uint64_t max_memory) {
    mg_status st = check_header(L);
    if (st) return st;
    if ((st = parse_meta(L, 0)) || (st = parse_tensors(L, 0))) return st;
    uint64_t padded = mg__align_up(L->table_end, L->alignment), bad;
    if (L->data_offset != padded)
        return fail(L, MG_E_MODEL_FORMAT,
                    "header: data_offset %llu, but the tensor table ends at %llu "
                    "(expected %llu)",
                    (ull)L->data_offset, (ull)L->table_end, (ull)padded);
    if (!all_zero(L->b + L->table_end, L->data_offset - L->table_end, &bad))
        return fail(L, MG_E_MODEL_FORMAT,
                    "non-zero padding byte at file offset %llu",
                    (ull)(L->table_end + bad));

    if ((st = alloc_block(L, o))) return st;
    if ((st = parse_meta(L, 1)) || (st = parse_tensors(L, 1))) return st;

    mg__mgm *f = &o->pub;
    mgm_priv *p = &o->priv;
    f->version = rd32(L->b + HDR_VERSION);
    f->alignment = L->alignment;
    f->file_size = L->file_size;
    f->n_meta = L->n_meta;
    f->meta = L->meta;
    f->n_tensors = L->n_tensors;
    f->tensors = L->tensors;
    f->data_offset = L->data_offset;
    f->data_size = L->data_size;

    size_t nm = (size_t)f->n_meta, nt = (size_t)f->n_tensors;
    for (size_t i = 0; i < nm; i++) p->meta_idx[i] = &f->meta[i];
    for (size_t i = 0; i < nt; i++) p->tensor_idx[i] = &f->tensors[i];
    if (nm) qsort(p->meta_idx, nm, sizeof *p->meta_idx, cmp_meta);
    if (nt) qsort(p->tensor_idx, nt, sizeof *p->tensor_idx, cmp_tensor_name);
    for (size_t i = 1; i < nm; i++)
        if (!strcmp(p->meta_idx[i]->key, p->meta_idx[i - 1]->key))
            return fail(L, MG_E_MODEL_FORMAT, "duplicate metadata key '%s'",
                        p->meta_idx[i]->key);
    for (size_t i = 1; i < nt; i++)
        if (!strcmp(p->tensor_idx[i]->name, p->tensor_idx[i - 1]->name))
            return fail(L, MG_E_MODEL_FORMAT, "duplicate tensor name '%.200s'",
                        p->tensor_idx[i]->name);

    for (size_t i = 0; i < nt; i++) {
        const mg__tensor *t = &f->tensors[i];
        if (mg__add_u64(f->n_params, t->n_elems, &f->n_params) ||
            mg__add_u64(f->n_bytes, t->n_bytes, &f->n_bytes))
            return fail(L, MG_E_MODEL_FORMAT, "total tensor size overflows");
    }
    if (max_memory && f->n_bytes > max_memory)
        return fail(L, MG_E_LIMIT,
                    "tensors need %llu bytes, more than max_memory (%llu)",
                    (ull)f->n_bytes, (ull)max_memory);

    /* Tensors in offset order, for the overlap and padding checks. */
    const mg__tensor **sorted = NULL;
    if (nt) {
        sorted = mg__malloc(nt * sizeof *sorted);
        if (!sorted) return fail(L, MG_E_NOMEM, "out of memory");
        for (size_t i = 0; i < nt; i++) sorted[i] = &f->tensors[i];
        qsort(sorted, nt, sizeof *sorted, cmp_tensor_off);
    }
    st = check_overlap(L, sorted, nt);
    if (!st) st = decompress_all(L, o);
    if (!st && (L->flags & MG_LOAD_VERIFY_CHECKSUMS))
        st = verify_data(L, sorted, nt);
    mg__free(sorted);
    return st;
}

static const char *errno_str(int e, char *buf, size_t n) {
    /* GNU strerror_r (the build defines _GNU_SOURCE): thread-safe. */
    return strerror_r(e, buf, n);
}

/* Maps or reads the file into o->priv; sets L->b and L->file_size. */
static mg_status open_file(ld *L, mgm_obj *o, const char *path) {
    char eb[128];
    /* O_NONBLOCK: opening a FIFO must not hang the host (the file type is
     * checked next); it changes nothing for regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return fail(L, MG_E_IO, "cannot open '%s': %s", path,
                    errno_str(errno, eb, sizeof eb));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fail(L, MG_E_IO, "cannot stat '%s': %s", path,
                    errno_str(e, eb, sizeof eb));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fail(L, MG_E_IO, "'%s' is not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    L->file_size = size;
    if (size < MG__MGM_HEADER_SIZE) {
        close(fd);
        return fail(L, MG_E_MODEL_FORMAT,
                    "file is %llu bytes, too short for the %u-byte .mgm header",
                    (ull)size, MG__MGM_HEADER_SIZE);
    }
    if (size > SIZE_MAX) {
        close(fd);
        return fail(L, MG_E_IO, "'%s' is too large to load", path);
    }
    if ((L->flags & MG_LOAD_MMAP) && !(L->flags & MG_LOAD_NO_MMAP)) {
        void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        int e = errno;
        close(fd);
        if (m == MAP_FAILED)
            return fail(L, MG_E_IO, "cannot map '%s': %s", path,
                        errno_str(e, eb, sizeof eb));
        o->priv.map = m;
        o->priv.map_size = (size_t)size;
        L->b = m;
        return MG_OK;
    }
    /* Read the header first so the buffer can honour the file alignment. */
    uint8_t hdr[MG__MGM_HEADER_SIZE];
    size_t align = 4096;
    if (pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr) {
        uint32_t a = rd32(hdr + HDR_ALIGNMENT);
        if (a > align && a <= MG__MGM_MAX_ALIGN && !(a & (a - 1))) align = a;
    }
    /* Large files on 2 MiB boundaries, offered to transparent huge pages: a
     * decode step reads every weight, and with 4 KiB pages the TLB misses
     * cost about a quarter of the speed of a 4B model (docs/PERFORMANCE.md). */
    int huge = size >= HUGE_MIN;
    if (huge && align < HUGE_PAGE) align = HUGE_PAGE;
    uint8_t *buf = mg__aligned_alloc(align, (size_t)size);
    if (!buf) {
        close(fd);
        return fail(L, MG_E_NOMEM, "out of memory reading %llu bytes of '%s'",
                    (ull)size, path);
    }
#ifdef MADV_HUGEPAGE
    if (huge) (void)madvise(buf, (size_t)size & ~(size_t)(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
    o->priv.buf = buf;
    for (uint64_t done = 0; done < size;) {
        size_t want = size - done > ((size_t)1 << 30) ? ((size_t)1 << 30)
                                                      : (size_t)(size - done);
        ssize_t r = pread(fd, buf + done, want, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            return fail(L, MG_E_IO, "cannot read '%s': %s", path,
                        e ? errno_str(e, eb, sizeof eb) : "file shrank");
        }
        done += (uint64_t)r;
    }
    close(fd);
    L->b = buf;
    return MG_OK;
}

mg_status mg__mgm_open(mg__mgm **out, const char *path, uint32_t flags,
                       uint64_t max_memory, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return mg__err(err, errlen, MG_E_INVALID_ARG, "path is NULL");
    mgm_obj *o = mg__calloc(1, sizeof *o);
    if (!o) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    o->pub.priv = &o->priv;
    ld L;
    memset(&L, 0, sizeof L);
    L.flags = flags;
    L.err = err;
    L.errlen = errlen;
    mg_status st = open_file(&L, o, path);
    if (!st) st = load(&L, o, max_memory);
    if (st) {
        mg__mgm_close(&o->pub);
        return st;
    }
    o->priv.flags = flags;
    *out = &o->pub;
    return MG_OK;
}

int mg__mgm_repack_q4x16(const mg__mgm *f, const mg__tensor *t, uint64_t rows,
                         uint64_t cols) {
    if (!f || !t) return 0;
    if (t->dtype == MG__DTYPE_Q4_0X16) return 1;
    const mgm_obj *o = (const mgm_obj *)(const void *)f;
    if (t->dtype != MG_DTYPE_Q4_0 || o->priv.map || !t->data ||
        (o->priv.flags & MG_LOAD_FILE_LAYOUT) || !mg__q4x16_fits(rows, cols) ||
        mg__kernel_level(mg_simd_level()) < MG_SIMD_AVX512 || !mg__cpu_vnni())
        return 0;
    /* The bytes are the file object's own buffer (read or decompressed), and
     * the builders run before the model is handed out, so no one else can be
     * reading them. */
    mg__tensor *w = (mg__tensor *)(void *)t;
    if (mg__q4x16_pack((void *)(uintptr_t)w->data, rows, cols)) return -1;
    w->dtype = MG__DTYPE_Q4_0X16;
    return 1;
}

void mg__mgm_close(mg__mgm *f) {
    if (!f) return;
    mgm_obj *o = (mgm_obj *)(void *)f;
    if (o->priv.map) munmap(o->priv.map, o->priv.map_size);
    mg__aligned_free(o->priv.buf);
    mg__aligned_free(o->priv.arena);
    mg__free(o->priv.block);
    mg__free(o);
}
