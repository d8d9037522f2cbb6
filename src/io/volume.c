/* volume.c - the mg_volume object: parameters and limits, caller voxels,
 * queries, and the public entry points of the DICOM and NIfTI readers
 * (volume_dicom.c, nifti.c). */
#include "io/volume.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* struct_size above this is taken for garbage (as for the other structs). */
#define MG__PARAMS_MAX_SIZE 65536u
#define MG__VOLUME_ALIGN 64
#define MG__VOLUME_FLAGS                                                  \
    (MG_VOLUME_RECURSIVE | MG_VOLUME_KEEP_DUPLICATES |                    \
     MG_VOLUME_STRICT_SPACING | MG_VOLUME_STRICT_SERIES)

/* ---- parameters ---------------------------------------------------------- */

MG_API void mg_volume_params_init(mg_volume_params *params) {
    if (!params) return;
    mg_volume_params d = MG_VOLUME_PARAMS_INIT;
    *params = d;
}

#define MG__VP_FIELD(dst, src, n, f)                                      \
    do {                                                                  \
        if ((n) >= offsetof(mg_volume_params, f) + sizeof((src)->f))      \
            (dst)->f = (src)->f;                                          \
    } while (0)

mg_status mg__volume_params_get(mg_volume_params *dst,
                                const mg_volume_params *src, char *err,
                                size_t errlen) {
    const mg_volume_params d = MG_VOLUME_PARAMS_INIT;
    *dst = d;
    if (!src) return MG_OK;
    size_t n = src->struct_size;
    if (n < sizeof src->struct_size || n > MG__PARAMS_MAX_SIZE)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_volume_params.struct_size is %u; set it with "
                       "mg_volume_params_init()", (unsigned)n);
    if (n > sizeof *dst && mg__opts_newer_byte(src, n, sizeof *dst))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "mg_volume_params sets fields this version (%s) does not know",
                       MG_VERSION_STRING);
    MG__VP_FIELD(dst, src, n, flags);
    MG__VP_FIELD(dst, src, n, max_voxels);
    MG__VP_FIELD(dst, src, n, max_memory);
    MG__VP_FIELD(dst, src, n, series_uid);
    MG__VP_FIELD(dst, src, n, max_files);
    MG__VP_FIELD(dst, src, n, reserved);
    dst->struct_size = (uint32_t)sizeof *dst;
    if (!dst->max_voxels) dst->max_voxels = d.max_voxels;
    if (!dst->max_memory) dst->max_memory = d.max_memory;
    if (!dst->max_files) dst->max_files = d.max_files;
    if (dst->flags & ~MG__VOLUME_FLAGS)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_volume_params.flags has unknown bits 0x%x",
                       (unsigned)(dst->flags & ~MG__VOLUME_FLAGS));
    if (dst->reserved)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_volume_params.reserved must be 0");
    if (dst->series_uid && (!*dst->series_uid || strlen(dst->series_uid) > 64))
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_volume_params.series_uid must be 1..64 "
                       "characters (or NULL)");
    return MG_OK;
}

/* ---- limits and allocation ----------------------------------------------- */

mg_status mg__volume_check_limits(size_t *n, uint64_t nx, uint64_t ny,
                                  uint64_t nz, uint64_t extra,
                                  const mg_volume_params *p, const char *what,
                                  char *err, size_t errlen) {
    uint64_t nxy, nv, bytes;
    *n = 0;
    if (!nx || !ny || !nz)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "%s: volume of %llux%llux%llu voxels is empty", what,
                       (unsigned long long)nx, (unsigned long long)ny,
                       (unsigned long long)nz);
    if (mg__mul_u64(nx, ny, &nxy) || mg__mul_u64(nxy, nz, &nv) ||
        nv > p->max_voxels)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "%s: %llux%llux%llu voxels exceed the limit of %llu",
                       what, (unsigned long long)nx, (unsigned long long)ny,
                       (unsigned long long)nz,
                       (unsigned long long)p->max_voxels);
    if (mg__mul_u64(nv, sizeof(float), &bytes) ||
        mg__add_u64(bytes, extra, &bytes) || bytes > p->max_memory ||
        bytes > SIZE_MAX / 2)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "%s: %llux%llux%llu float voxels need more than the "
                       "%llu bytes allowed", what, (unsigned long long)nx,
                       (unsigned long long)ny, (unsigned long long)nz,
                       (unsigned long long)p->max_memory);
    *n = (size_t)nv;
    return MG_OK;
}

mg_status mg__volume_alloc(mg_volume **out, uint32_t nx, uint32_t ny,
                           uint32_t nz, uint64_t extra,
                           const mg_volume_params *p, const char *what,
                           char *err, size_t errlen) {
    size_t n;
    mg_status st;
    *out = NULL;
    if ((st = mg__volume_check_limits(&n, nx, ny, nz, extra, p, what, err,
                                      errlen)))
        return st;
    mg_volume *v = mg__calloc(1, sizeof *v);
    if (!v) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    v->voxels = mg__aligned_alloc(MG__VOLUME_ALIGN, n * sizeof(float));
    v->warnings = mg__strdup("");
    v->slices = mg__strdup("");
    if (!v->voxels || !v->warnings || !v->slices) {
        mg__aligned_free(v->voxels);
        mg__free(v->warnings);
        mg__free(v->slices);
        mg__free(v);
        return mg__err(err, errlen, MG_E_NOMEM,
                       "out of memory for %zu voxels", n);
    }
    v->tag = MG__TAG_VOLUME;
    v->serial = mg__serial_next();
    v->nx = nx;
    v->ny = ny;
    v->nz = nz;
    v->n_voxels = n;
    v->vmin = v->vmax = NAN;
    for (int i = 0; i < 16; i++) v->affine[i] = (i % 5 == 0) ? 1 : 0;
    v->spacing[0] = v->spacing[1] = v->spacing[2] = 1;
    *out = v;
    return MG_OK;
}

MG_API void mg_volume_free(mg_volume *volume) {
    if (!volume || volume->tag != MG__TAG_VOLUME) return;
    volume->tag = MG__TAG_DEAD;
    mg__aligned_free(volume->voxels);
    mg__free(volume->warnings);
    mg__free(volume->slices);
    mg__free(volume);
}

int mg__affine_ok(const double a[16]) {
    for (int i = 0; i < 16; i++)
        if (!isfinite(a[i])) return 0;
    if (a[12] != 0 || a[13] != 0 || a[14] != 0 || a[15] != 1) return 0;
    double len[3];
    for (int c = 0; c < 3; c++)
        len[c] = sqrt(a[c] * a[c] + a[4 + c] * a[4 + c] + a[8 + c] * a[8 + c]);
    double det = a[0] * (a[5] * a[10] - a[6] * a[9]) -
                 a[1] * (a[4] * a[10] - a[6] * a[8]) +
                 a[2] * (a[4] * a[9] - a[5] * a[8]);
    double scale = len[0] * len[1] * len[2];
    return scale > 0 && isfinite(scale) && fabs(det) > 1e-9 * scale;
}

void mg__volume_finish(mg_volume *v, const double affine[16]) {
    memcpy(v->affine, affine, sizeof v->affine);
    for (int c = 0; c < 3; c++)
        v->spacing[c] = sqrt(affine[c] * affine[c] + affine[4 + c] * affine[4 + c] +
                             affine[8 + c] * affine[8 + c]);
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < v->n_voxels; i++) {
        float x = v->voxels[i];
        if (!isfinite(x)) continue;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
    }
    v->vmin = lo <= hi ? lo : NAN;
    v->vmax = lo <= hi ? hi : NAN;
}

/* ---- growing strings ----------------------------------------------------- */

static int sb_reserve(mg__strbuf *b, size_t more) {
    if (b->failed) return 0;
    if (b->n + more + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) {
        if (cap > SIZE_MAX / 2) { b->failed = 1; return 0; }
        cap *= 2;
    }
    char *q = mg__realloc(b->s, cap);
    if (!q) { b->failed = 1; return 0; }
    b->s = q;
    b->cap = cap;
    return 1;
}

void mg__sb_line(mg__strbuf *b, const char *fmt, ...) {
    if (b->max_lines && b->lines >= b->max_lines) {
        b->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    size_t len = (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1;
    if (!sb_reserve(b, len + 1)) return;
    for (size_t i = 0; i < len; i++) /* one line: no embedded newlines */
        b->s[b->n++] = tmp[i] == '\n' ? ' ' : tmp[i];
    b->s[b->n++] = '\n';
    b->s[b->n] = '\0';
    b->lines++;
}

char *mg__sb_take(mg__strbuf *b) {
    if (b->dropped) {
        uint32_t d = b->dropped, cap = b->max_lines;
        b->max_lines = 0;
        mg__sb_line(b, "... and %u more", (unsigned)d);
        b->max_lines = cap;
        b->dropped = 0;
    }
    if (!b->failed && !b->s) {
        b->s = mg__strdup("");
        if (!b->s) b->failed = 1;
    }
    if (b->failed) {
        mg__sb_free(b);
        return NULL;
    }
    char *s = b->s;
    b->s = NULL;
    b->n = b->cap = 0;
    return s;
}

void mg__sb_free(mg__strbuf *b) {
    mg__free(b->s);
    memset(b, 0, sizeof *b);
}

/* ---- public entry points --------------------------------------------------- */

MG_API mg_status mg_volume_load_dicom(mg_volume **out,
                                      const char *const *paths,
                                      size_t n_paths,
                                      const mg_volume_params *params,
                                      char *err, size_t errlen) {
    mg_volume_params p;
    mg_status st;
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!paths || n_paths == 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "no paths given (paths is NULL or n_paths is 0)");
    for (size_t i = 0; i < n_paths; i++)
        if (!paths[i] || !paths[i][0])
            return mg__err(err, errlen, MG_E_INVALID_ARG,
                           "paths[%zu] is NULL or empty", i);
    if ((st = mg__volume_params_get(&p, params, err, errlen))) return st;
    return mg__volume_dicom_load(out, paths, n_paths, &p, err, errlen);
}

MG_API mg_status mg_volume_load_nifti(mg_volume **out, const char *path,
                                      const mg_volume_params *params,
                                      char *err, size_t errlen) {
    mg_volume_params p;
    mg_status st;
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path || !path[0])
        return mg__err(err, errlen, MG_E_INVALID_ARG, "path is NULL or empty");
    if ((st = mg__volume_params_get(&p, params, err, errlen))) return st;
    return mg__nifti_load(out, path, &p, err, errlen);
}

MG_API mg_status mg_volume_from_voxels(mg_volume **out, const float *voxels,
                                       uint32_t nx, uint32_t ny, uint32_t nz,
                                       const double *affine,
                                       const char *modality,
                                       const mg_volume_params *params,
                                       char *err, size_t errlen) {
    static const double identity[16] = {1, 0, 0, 0, 0, 1, 0, 0,
                                        0, 0, 1, 0, 0, 0, 0, 1};
    mg_volume_params p;
    mg_volume *v;
    mg_status st;
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!voxels) return mg__err(err, errlen, MG_E_INVALID_ARG, "voxels is NULL");
    if ((st = mg__volume_params_get(&p, params, err, errlen))) return st;
    if (!affine) affine = identity;
    if (!mg__affine_ok(affine))
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "affine must be finite, end in the row 0 0 0 1 and "
                       "have an invertible 3x3 part");
    if (modality && strlen(modality) >= sizeof v->modality)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "modality is longer than %zu characters",
                       sizeof v->modality - 1);
    if ((st = mg__volume_alloc(&v, nx, ny, nz, 0, &p, "voxels", err, errlen)))
        return st;
    memcpy(v->voxels, voxels, v->n_voxels * sizeof(float));
    v->source = MG_VOLUME_SRC_VOXELS;
    if (modality) snprintf(v->modality, sizeof v->modality, "%s", modality);
    mg__volume_finish(v, affine);
    *out = v;
    return MG_OK;
}

/* ---- queries ------------------------------------------------------------- */

#define MG__VI_FIELD(dst, n, f, v)                                       \
    do {                                                                 \
        if ((n) >= offsetof(mg_volume_info, f) + sizeof((dst)->f))       \
            (dst)->f = (v);                                              \
    } while (0)

MG_API mg_status mg_volume_info_get(mg_volume_info *out,
                                    const mg_volume *volume) {
    if (!mg__volume_ok(volume)) return MG_E_MISUSE;
    if (!out) return MG_E_INVALID_ARG;
    size_t n = out->struct_size;
    if (n < sizeof out->struct_size || n > MG__PARAMS_MAX_SIZE)
        return MG_E_INVALID_ARG;
    MG__VI_FIELD(out, n, nx, volume->nx);
    MG__VI_FIELD(out, n, ny, volume->ny);
    MG__VI_FIELD(out, n, nz, volume->nz);
    MG__VI_FIELD(out, n, source, volume->source);
    MG__VI_FIELD(out, n, n_files, volume->n_files);
    MG__VI_FIELD(out, n, n_skipped, volume->n_skipped);
    MG__VI_FIELD(out, n, n_warnings, volume->n_warnings);
    if (n >= offsetof(mg_volume_info, spacing) + sizeof out->spacing)
        memcpy(out->spacing, volume->spacing, sizeof out->spacing);
    if (n >= offsetof(mg_volume_info, affine) + sizeof out->affine)
        memcpy(out->affine, volume->affine, sizeof out->affine);
    MG__VI_FIELD(out, n, min_value, volume->vmin);
    MG__VI_FIELD(out, n, max_value, volume->vmax);
    return MG_OK;
}

MG_API mg_status mg_volume_copy_voxels(float *buf, size_t cap, size_t *needed,
                                       const mg_volume *volume) {
    if (!mg__volume_ok(volume)) {
        if (needed) *needed = 0;
        return MG_E_MISUSE;
    }
    if (needed) *needed = volume->n_voxels;
    if (cap < volume->n_voxels) return MG_E_BUFFER_TOO_SMALL;
    if (!buf) return MG_E_INVALID_ARG;
    memcpy(buf, volume->voxels, volume->n_voxels * sizeof(float));
    return MG_OK;
}

MG_API const char *mg_volume_get_string(const mg_volume *volume,
                                        const char *key) {
    if (!mg__volume_ok(volume) || !key) return NULL;
    const char *v = NULL;
    if (strcmp(key, "modality") == 0) v = volume->modality;
    else if (strcmp(key, "series_uid") == 0) v = volume->series_uid;
    else if (strcmp(key, "study_uid") == 0) v = volume->study_uid;
    else if (strcmp(key, "frame_of_reference_uid") == 0)
        v = volume->frame_of_ref_uid;
    else if (strcmp(key, "description") == 0) v = volume->description;
    else if (strcmp(key, "warnings") == 0) v = volume->warnings;
    else if (strcmp(key, "slices") == 0) v = volume->slices;
    return v && v[0] ? v : NULL;
}

MG_API mg_status mg_volume_write_nifti(const mg_volume *volume,
                                       const char *path, uint32_t flags,
                                       char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!mg__volume_ok(volume))
        return mg__err(err, errlen, MG_E_MISUSE, "not a live volume handle");
    if (!path || !path[0])
        return mg__err(err, errlen, MG_E_INVALID_ARG, "path is NULL or empty");
    if (flags & ~MG_NIFTI_FLOAT32)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "unknown flags 0x%x", (unsigned)(flags & ~MG_NIFTI_FLOAT32));
    return mg__nifti_write(volume, path, flags, err, errlen);
}
