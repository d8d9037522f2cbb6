/* gguf.c - reads GGUF files (versions 2 and 3, little-endian): the key/value
 * section, the tensor infos and the aligned data section. Every count, length
 * and offset is checked against the bytes left in the file before it is used;
 * strings must be UTF-8; tensor types the converter cannot decode are kept
 * with their name so that an error can name them when they are needed. */
#include "convert/convert.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef unsigned long long ull;

#define MAX_STRING ((uint64_t)1 << 24)

static const struct { const char *name; uint32_t blck, bytes; int32_t dtype; } k_ggml[] = {
    [0] = {"F32", 1, 4, MG_DTYPE_F32},    [1] = {"F16", 1, 2, MG_DTYPE_F16},
    [2] = {"Q4_0", 32, 18, MG_DTYPE_Q4_0}, [3] = {"Q4_1", 32, 20, -1},
    [6] = {"Q5_0", 32, 22, -1},           [7] = {"Q5_1", 32, 24, -1},
    [8] = {"Q8_0", 32, 34, MG_DTYPE_Q8_0}, [9] = {"Q8_1", 32, 36, -1},
    [10] = {"Q2_K", 256, 84, -1},         [11] = {"Q3_K", 256, 110, -1},
    [12] = {"Q4_K", 256, 144, MG__SRC_Q4_K},        [13] = {"Q5_K", 256, 176, -1},
    [14] = {"Q6_K", 256, 210, MG__SRC_Q6_K},        [15] = {"Q8_K", 256, 292, -1},
    [16] = {"IQ2_XXS", 256, 66, -1},      [17] = {"IQ2_XS", 256, 74, -1},
    [18] = {"IQ3_XXS", 256, 98, -1},      [19] = {"IQ1_S", 256, 50, -1},
    [20] = {"IQ4_NL", 32, 18, -1},        [21] = {"IQ3_S", 256, 110, -1},
    [22] = {"IQ2_S", 256, 82, -1},        [23] = {"IQ4_XS", 256, 136, -1},
    [24] = {"I8", 1, 1, -1},              [25] = {"I16", 1, 2, -1},
    [26] = {"I32", 1, 4, -1},             [27] = {"I64", 1, 8, -1},
    [28] = {"F64", 1, 8, -1},             [29] = {"IQ1_M", 256, 56, -1},
    [30] = {"BF16", 1, 2, MG_DTYPE_BF16}, [34] = {"TQ1_0", 256, 54, -1},
    [35] = {"TQ2_0", 256, 66, -1},        [39] = {"MXFP4", 32, 17, -1},
};
#define N_GGML (sizeof k_ggml / sizeof k_ggml[0])

const char *mg__ggml_type_name(uint32_t type) {
    return type < N_GGML ? k_ggml[type].name : NULL;
}

/* Buffered sequential reader over the file's front. */
typedef struct rd {
    const mg__cfile *f;
    uint64_t pos;   /* file offset of buf[0] */
    uint8_t buf[1 << 16];
    size_t len, at;
    const char *path;
    char *err;
    size_t errlen;
} rd;

static uint64_t rd_off(const rd *r) { return r->pos + r->at; }
static uint64_t rd_left(const rd *r) { return r->f->size - rd_off(r); }

static mg_status rd_bytes(rd *r, void *dst, uint64_t n) {
    uint8_t *p = dst;
    if (n > rd_left(r))
        return mg__err(r->err, r->errlen, MG_E_MODEL_FORMAT,
                       "%s: truncated (needs %llu bytes at offset %llu)", r->path, (ull)n,
                       (ull)rd_off(r));
    while (n) {
        if (r->at == r->len) {
            r->pos += r->len;
            r->at = r->len = 0;
            uint64_t want = r->f->size - r->pos;
            if (want > sizeof r->buf) want = sizeof r->buf;
            ssize_t got;
            do got = pread(r->f->fd, r->buf, (size_t)want, (off_t)r->pos);
            while (got < 0 && errno == EINTR);
            if (got <= 0)
                return mg__err(r->err, r->errlen, MG_E_IO, "%s: read failed", r->path);
            r->len = (size_t)got;
        }
        size_t c = r->len - r->at < n ? r->len - r->at : (size_t)n;
        memcpy(p, r->buf + r->at, c);
        p += c, r->at += c, n -= c;
    }
    return MG_OK;
}

static mg_status rd_u32(rd *r, uint32_t *v) {
    uint8_t b[4];
    mg_status st = rd_bytes(r, b, 4);
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return st;
}

static mg_status rd_u64(rd *r, uint64_t *v) {
    uint32_t lo = 0, hi = 0;
    mg_status st = rd_u32(r, &lo);
    if (!st) st = rd_u32(r, &hi);
    *v = (uint64_t)hi << 32 | lo;
    return st;
}

static mg_status rd_str(rd *r, char **out, const char *what) {
    uint64_t n;
    mg_status st = rd_u64(r, &n);
    if (st) return st;
    if (n > MAX_STRING || n > rd_left(r))
        return mg__err(r->err, r->errlen, MG_E_MODEL_FORMAT,
                       "%s: %s: string length %llu at offset %llu is out of range", r->path,
                       what, (ull)n, (ull)(rd_off(r) - 8));
    char *s = mg__malloc((size_t)n + 1);
    if (!s) return mg__err(r->err, r->errlen, MG_E_NOMEM, "out of memory");
    if ((st = rd_bytes(r, s, n))) {
        mg__free(s);
        return st;
    }
    s[n] = '\0';
    if (!mg__utf8_valid(s, (size_t)n)) {
        mg__free(s);
        return mg__err(r->err, r->errlen, MG_E_MODEL_FORMAT,
                       "%s: %s: string at offset %llu is not valid UTF-8 or holds a NUL",
                       r->path, what, (ull)(rd_off(r) - n));
    }
    *out = s;
    return MG_OK;
}

static uint32_t scalar_size(uint32_t t) {
    switch (t) {
    case MG__GV_U8: case MG__GV_I8: case MG__GV_BOOL: return 1;
    case MG__GV_U16: case MG__GV_I16: return 2;
    case MG__GV_U32: case MG__GV_I32: case MG__GV_F32: return 4;
    case MG__GV_U64: case MG__GV_I64: case MG__GV_F64: return 8;
    default: return 0;
    }
}

/* One numeric scalar of type t as int64 and double. */
static mg_status rd_num(rd *r, uint32_t t, int64_t *i, double *f) {
    uint8_t b[8] = {0};
    uint32_t n = scalar_size(t);
    mg_status st = rd_bytes(r, b, n);
    if (st) return st;
    uint64_t u = 0;
    for (uint32_t k = 0; k < n; k++) u |= (uint64_t)b[k] << (8 * k);
    switch (t) {
    case MG__GV_I8: *i = (int8_t)u; break;
    case MG__GV_I16: *i = (int16_t)u; break;
    case MG__GV_I32: *i = (int32_t)u; break;
    case MG__GV_I64: *i = (int64_t)u; break;
    case MG__GV_F32: { float x; uint32_t u32 = (uint32_t)u; memcpy(&x, &u32, 4); *f = x; *i = 0; return MG_OK; }
    case MG__GV_F64: { double x; memcpy(&x, &u, 8); *f = x; *i = 0; return MG_OK; }
    case MG__GV_U64: *i = u > INT64_MAX ? INT64_MAX : (int64_t)u; *f = (double)u; return MG_OK;
    default: *i = (int64_t)u; break;
    }
    *f = (double)*i;
    return MG_OK;
}

static mg_status read_kv(rd *r, mg__gkv *kv) {
    mg_status st = rd_str(r, &kv->key, "key");
    if (st) return st;
    if (!kv->key[0])
        return mg__err(r->err, r->errlen, MG_E_MODEL_FORMAT, "%s: empty key", r->path);
    if ((st = rd_u32(r, &kv->type))) return st;
    kv->n = 1;
    if (kv->type == MG__GV_STRING) return rd_str(r, &kv->s, kv->key);
    if (kv->type != MG__GV_ARRAY) {
        if (!scalar_size(kv->type))
            return mg__err(r->err, r->errlen, MG_E_MODEL_FORMAT,
                           "%s: key '%.200s' has unknown value type %u", r->path, kv->key,
                           kv->type);
        return rd_num(r, kv->type, &kv->i, &kv->f);
    }
    if ((st = rd_u32(r, &kv->elem_type)) || (st = rd_u64(r, &kv->n))) return st;
    uint32_t es = kv->elem_type == MG__GV_STRING ? 8 : scalar_size(kv->elem_type);
    if (!es)
        return mg__err(r->err, r->errlen, MG_E_MODEL_FORMAT,
                       "%s: key '%.200s': array of unsupported type %u (nested arrays are "
                       "not supported)", r->path, kv->key, kv->elem_type);
    if (kv->n > rd_left(r) / es)
        return mg__err(r->err, r->errlen, MG_E_MODEL_FORMAT,
                       "%s: key '%.200s': array count %llu does not fit in the file",
                       r->path, kv->key, (ull)kv->n);
    if (kv->elem_type == MG__GV_STRING) {
        kv->as = mg__calloc(kv->n ? (size_t)kv->n : 1, sizeof *kv->as);
        if (!kv->as) return mg__err(r->err, r->errlen, MG_E_NOMEM, "out of memory");
        for (uint64_t k = 0; k < kv->n; k++)
            if ((st = rd_str(r, &kv->as[k], kv->key))) return st;
        return MG_OK;
    }
    kv->ai = mg__malloc((kv->n ? (size_t)kv->n : 1) * sizeof *kv->ai);
    kv->af = mg__malloc((kv->n ? (size_t)kv->n : 1) * sizeof *kv->af);
    if (!kv->ai || !kv->af) return mg__err(r->err, r->errlen, MG_E_NOMEM, "out of memory");
    for (uint64_t k = 0; k < kv->n; k++)
        if ((st = rd_num(r, kv->elem_type, &kv->ai[k], &kv->af[k]))) return st;
    return MG_OK;
}

mg_status mg__gguf_add_file(mg__csrc *s, const char *path, char *err, size_t errlen) {
    uint32_t fi;
    mg_status st = mg__csrc_add_file(s, path, &fi, err, errlen);
    if (st) return st;
    rd *r = mg__calloc(1, sizeof *r);
    if (!r) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    r->f = &s->files[fi];
    r->path = path;
    r->err = err;
    r->errlen = errlen;
    size_t kv0 = s->n_kv, t0 = s->n_t;
    char magic[4];
    uint32_t version = 0;
    uint64_t n_t = 0, n_kv = 0;
    if ((st = rd_bytes(r, magic, 4))) goto done;
    if (memcmp(magic, "GGUF", 4)) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: not a GGUF file", path);
        goto done;
    }
    if ((st = rd_u32(r, &version))) goto done;
    if (version != 2 && version != 3) {
        st = mg__err(err, errlen, version == 0 || version == 1 ? MG_E_MODEL_FORMAT
                     : MG_E_UNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3)",
                     path, version);
        goto done;
    }
    if ((st = rd_u64(r, &n_t)) || (st = rd_u64(r, &n_kv))) goto done;
    /* smallest kv: 8 + 1 + 4 + 1 bytes; smallest tensor info: 8 + 1 + 4 + 8 + 4 + 8 */
    if (n_kv > rd_left(r) / 14 || n_t > rd_left(r) / 33) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "%s: %llu keys and %llu tensors cannot fit in the file", path,
                     (ull)n_kv, (ull)n_t);
        goto done;
    }
    for (uint64_t k = 0; k < n_kv; k++) {
        if (s->n_kv == s->cap_kv) {
            size_t cap = s->cap_kv ? s->cap_kv * 2 : 64;
            mg__gkv *nk = mg__realloc(s->kv, cap * sizeof *nk);
            if (!nk) { st = mg__err(err, errlen, MG_E_NOMEM, "out of memory"); goto done; }
            s->kv = nk;
            s->cap_kv = cap;
        }
        mg__gkv *kv = &s->kv[s->n_kv++];
        memset(kv, 0, sizeof *kv);
        if ((st = read_kv(r, kv))) goto done;
        for (size_t q = kv0; q + 1 < s->n_kv; q++)
            if (!strcmp(s->kv[q].key, kv->key)) {
                st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: key '%.200s' appears twice",
                             path, kv->key);
                goto done;
            }
    }
    uint64_t align = 32;
    for (size_t q = kv0; q < s->n_kv; q++)
        if (!strcmp(s->kv[q].key, "general.alignment")) {
            const mg__gkv *kv = &s->kv[q];
            if (kv->type != MG__GV_U32 || kv->i == 0 || (kv->i & (kv->i - 1)) ||
                kv->i > (1 << 24)) {
                st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                             "%s: general.alignment must be a power of two (u32)", path);
                goto done;
            }
            align = (uint64_t)kv->i;
        }
    for (uint64_t k = 0; k < n_t; k++) {
        mg__ctensor t;
        memset(&t, 0, sizeof t);
        uint32_t type = 0;
        if ((st = rd_str(r, &t.name, "tensor name"))) goto done;
        if (!t.name[0] || (st = rd_u32(r, &t.n_dims))) {
            if (!st) st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: empty tensor name", path);
            mg__free(t.name);
            goto done;
        }
#define TBAD(...) do { st = mg__err(err, errlen, MG_E_MODEL_FORMAT, __VA_ARGS__); mg__free(t.name); goto done; } while (0)
        if (t.n_dims < 1 || t.n_dims > MG__CONV_MAX_DIMS)
            TBAD("%s: tensor '%.200s' has %u dimensions (1 to %d)", path, t.name, t.n_dims,
                 MG__CONV_MAX_DIMS);
        t.n_elems = 1;
        for (uint32_t d = 0; d < t.n_dims; d++) {
            if ((st = rd_u64(r, &t.dims[d]))) { mg__free(t.name); goto done; }
            if (!t.dims[d] || mg__mul_u64(t.n_elems, t.dims[d], &t.n_elems))
                TBAD("%s: tensor '%.200s': dimension %u is 0 or the element count overflows",
                     path, t.name, d);
        }
        for (uint32_t d = t.n_dims; d < MG__CONV_MAX_DIMS; d++) t.dims[d] = 1;
        if ((st = rd_u32(r, &type)) || (st = rd_u64(r, &t.offset))) { mg__free(t.name); goto done; }
        if (type >= N_GGML || !k_ggml[type].name)
            TBAD("%s: tensor '%.200s' has unknown type %u", path, t.name, type);
        t.type_name = k_ggml[type].name;
        t.dtype = k_ggml[type].dtype;
        if (t.dims[0] % k_ggml[type].blck)
            TBAD("%s: tensor '%.200s': row length %llu is not a multiple of %s's block of %u",
                 path, t.name, (ull)t.dims[0], t.type_name, k_ggml[type].blck);
        if (mg__mul_u64(t.n_elems / k_ggml[type].blck, k_ggml[type].bytes, &t.size))
            TBAD("%s: tensor '%.200s': byte size overflows", path, t.name);
        if (t.offset % align)
            TBAD("%s: tensor '%.200s': data offset %llu is not aligned to %llu", path, t.name,
                 (ull)t.offset, (ull)align);
        t.file = fi;
        st = mg__csrc_add_tensor(s, &t, err, errlen);
        mg__free(t.name);
        if (st) goto done;
#undef TBAD
    }
    uint64_t data0 = mg__align_up(rd_off(r), align);
    if (data0 < rd_off(r) || data0 > r->f->size) {
        if (n_t) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: no room for the data section",
                         path);
            goto done;
        }
        data0 = r->f->size;
    }
    for (size_t q = t0; q < s->n_t; q++) {
        mg__ctensor *t = &s->t[q];
        uint64_t end;
        if (mg__add_u64(t->offset, t->size, &end) || end > r->f->size - data0) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "%s: tensor '%.200s': data [%llu, +%llu) lies past the end of the "
                         "file", path, t->name, (ull)t->offset, (ull)t->size);
            goto done;
        }
        t->offset += data0;
    }
done:
    mg__free(r);
    return st;
}
