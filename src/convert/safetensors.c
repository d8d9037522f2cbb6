/* safetensors.c - reads safetensors files (u64 LE header length, a JSON
 * header {name: {dtype, shape, data_offsets}}, raw little-endian data) and
 * sharded folders (model.safetensors.index.json). Every header field is
 * checked against the file: header length, dtypes, shape products, offsets
 * inside the data section, sizes equal to shape x dtype, no overlaps, every
 * shard present. */
#include "convert/convert.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEADER ((uint64_t)256 << 20) /* 256 MiB of JSON is far beyond any model */

typedef unsigned long long ull;

static const struct { const char *name; uint32_t bytes; int32_t dtype; } k_types[] = {
    {"F32", 4, MG_DTYPE_F32}, {"F16", 2, MG_DTYPE_F16}, {"BF16", 2, MG_DTYPE_BF16},
    {"F64", 8, -1}, {"I64", 8, -1}, {"U64", 8, -1}, {"I32", 4, -1}, {"U32", 4, -1},
    {"I16", 2, -1}, {"U16", 2, -1}, {"I8", 1, -1}, {"U8", 1, -1}, {"BOOL", 1, -1},
    {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1},
};

/* A JSON number that is a non-negative integer below 2^53. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

mg_status mg__st_add_file(mg__csrc *s, const char *path, char *err, size_t errlen) {
    uint32_t fi;
    mg_status st = mg__csrc_add_file(s, path, &fi, err, errlen);
    if (st) return st;
    const mg__cfile *f = &s->files[fi];
    uint8_t lb[8];
    if (f->size < 8 || pread(f->fd, lb, 8, 0) != 8)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: too short for a safetensors file", path);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | lb[i];
    if (hl > f->size - 8)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: header length %llu is past the end of the file (%llu bytes)",
                       path, (ull)hl, (ull)f->size);
    if (hl > MAX_HEADER || hl < 2)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: header length %llu is out of range (2 .. %llu)", path, (ull)hl,
                       (ull)MAX_HEADER);
    char *hdr = mg__malloc((size_t)hl + 1);
    if (!hdr) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    uint64_t got = 0;
    while (got < hl) {
        ssize_t r = pread(f->fd, hdr + got, (size_t)(hl - got), (off_t)(8 + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            mg__free(hdr);
            return mg__err(err, errlen, MG_E_IO, "%s: cannot read the header", path);
        }
        got += (uint64_t)r;
    }
    hdr[hl] = '\0';
    cJSON *j = cJSON_ParseWithLength(hdr, (size_t)hl);
    mg__free(hdr);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: the header is not a JSON object", path);
    }
    uint64_t data0 = 8 + hl, data_size = f->size - data0;
    const cJSON *e;
    st = MG_OK;
    cJSON_ArrayForEach(e, j) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__")) continue;
#define BAD(...) do { st = mg__err(err, errlen, MG_E_MODEL_FORMAT, __VA_ARGS__); goto done; } while (0)
        if (!*name || strlen(name) > 1000 || !mg__utf8_valid(name, strlen(name)))
            BAD("%s: a tensor has an empty, over-long or invalid name", path);
        if (!cJSON_IsObject(e)) BAD("%s: tensor '%.200s' is not an object", path, name);
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt)) BAD("%s: tensor '%.200s' has no dtype", path, name);
        int ti = -1;
        for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++)
            if (!strcmp(dt->valuestring, k_types[k].name)) ti = (int)k;
        if (ti < 0)
            BAD("%s: tensor '%.200s' has unknown dtype '%.40s'", path, name, dt->valuestring);
        int nd = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
        if (nd < 0 || nd > MG__CONV_MAX_DIMS)
            BAD("%s: tensor '%.200s': shape is not an array of at most %d dimensions", path,
                name, MG__CONV_MAX_DIMS);
        mg__ctensor t;
        memset(&t, 0, sizeof t);
        t.name = (char *)name;
        t.n_dims = (uint32_t)(nd ? nd : 1);
        for (int d = 0; d < MG__CONV_MAX_DIMS; d++) t.dims[d] = 1;
        uint64_t ne = 1;
        for (int d = 0; d < nd; d++) {
            uint64_t v;
            if (!json_u64(cJSON_GetArrayItem(sh, d), &v))
                BAD("%s: tensor '%.200s': shape[%d] is not a non-negative integer", path,
                    name, d);
            t.dims[nd - 1 - d] = v; /* safetensors lists the slowest dimension first */
            if (mg__mul_u64(ne, v, &ne))
                BAD("%s: tensor '%.200s': the element count overflows", path, name);
        }
        uint64_t b, en, bytes;
        if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
            !json_u64(cJSON_GetArrayItem(of, 0), &b) || !json_u64(cJSON_GetArrayItem(of, 1), &en))
            BAD("%s: tensor '%.200s': data_offsets is not [begin, end]", path, name);
        if (b > en || en > data_size)
            BAD("%s: tensor '%.200s': data_offsets [%llu, %llu] lie outside the data "
                "section (%llu bytes)", path, name, (ull)b, (ull)en, (ull)data_size);
        if (mg__mul_u64(ne, k_types[ti].bytes, &bytes) || bytes != en - b)
            BAD("%s: tensor '%.200s': %llu bytes of data, but its shape and dtype %s "
                "need %llu", path, name, (ull)(en - b), k_types[ti].name,
                (ull)(ne * k_types[ti].bytes));
#undef BAD
        t.dtype = k_types[ti].dtype;
        t.type_name = k_types[ti].name;
        t.n_elems = ne;
        t.file = fi;
        t.offset = data0 + b;
        t.size = en - b;
        if ((st = mg__csrc_add_tensor(s, &t, err, errlen))) goto done;
    }
done:
    cJSON_Delete(j);
    return st;
}

static int safe_file_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") && strlen(s) < 512;
}

mg_status mg__st_open_dir(mg__csrc *s, const char *dir, char *err, size_t errlen) {
    char path[4608];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *txt = NULL;
    size_t n = 0;
    mg_status st = mg__read_text_file(&txt, &n, path, (size_t)64 << 20, err, errlen);
    if (st == MG_E_NOT_FOUND) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (access(path, F_OK) != 0)
            return mg__err(err, errlen, MG_E_IO,
                           "%s: neither model.safetensors.index.json nor model.safetensors",
                           dir);
        st = mg__st_add_file(s, path, err, errlen);
        return st ? st : mg__csrc_index(s, err, errlen);
    }
    if (st) return st;
    cJSON *j = cJSON_ParseWithLength(txt, n);
    mg__free(txt);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(j);
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: no \"weight_map\" object", path);
    }
    /* The shards, each opened once, in order of first appearance. */
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !safe_file_name(e->valuestring)) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "%s: weight_map entry '%.200s' does not name a file in the folder",
                         path, e->string ? e->string : "");
            goto done;
        }
        int seen = 0;
        for (const cJSON *p = wm->child; p != e && !seen; p = p->next)
            seen = !strcmp(p->valuestring, e->valuestring);
        if (seen) continue;
        char sp[4608];
        snprintf(sp, sizeof sp, "%s/%s", dir, e->valuestring);
        if (access(sp, F_OK) != 0) {
            st = mg__err(err, errlen, MG_E_IO, "%s: shard '%.200s' is missing", dir,
                         e->valuestring);
            goto done;
        }
        if ((st = mg__st_add_file(s, sp, err, errlen))) goto done;
    }
    if ((st = mg__csrc_index(s, err, errlen))) goto done;
    /* Every mapped tensor must be in its shard, and every tensor mapped. */
    cJSON_ArrayForEach(e, wm) {
        const mg__ctensor *t = mg__csrc_find(s, e->string);
        const char *fp = t ? s->files[t->file].path : NULL;
        const char *base = fp ? strrchr(fp, '/') : NULL;
        base = base ? base + 1 : fp;
        if (!t || strcmp(base, e->valuestring)) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "%s: tensor '%.200s' is not in shard '%.200s'", path, e->string,
                         e->valuestring);
            goto done;
        }
    }
    if ((size_t)cJSON_GetArraySize(wm) != s->n_t)
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "%s: the shards hold %zu tensors, the weight_map lists %d", path, s->n_t,
                     cJSON_GetArraySize(wm));
done:
    cJSON_Delete(j);
    return st;
}
