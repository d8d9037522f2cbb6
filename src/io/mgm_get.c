/* mgm_get.c - checked reads of metadata keys and tensors for the model
 * builders (text decoder, encoders): one place for the type, range, shape
 * and size checks that make a hostile file fail at load, not in a kernel. */
#include "io/mgm.h"
#include "kernels/kernels.h"

mg_status mg__mgm_get_u32(const mg__mgm *f, const char *what, const char *key,
                          int required, uint32_t def, uint32_t lo, uint32_t hi,
                          uint32_t *out, char *err, size_t errlen) {
    const mg__meta *m = mg__mgm_meta(f, key);
    if (!m) {
        if (required)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: metadata key %s is missing",
                           what, key);
        *out = def;
        return MG_OK;
    }
    if (m->type != MG_META_INT)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: metadata key %s is not an integer",
                       what, key);
    if (m->v.i < (int64_t)lo || m->v.i > (int64_t)hi)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: %s = %lld is out of range [%u, %u]",
                       what, key, (long long)m->v.i, lo, hi);
    *out = (uint32_t)m->v.i;
    return MG_OK;
}

mg_status mg__mgm_get_f64(const mg__mgm *f, const char *what, const char *key,
                          int required, double def, double lo, double hi,
                          int zero_ok, double *out, char *err, size_t errlen) {
    const mg__meta *m = mg__mgm_meta(f, key);
    double v;
    if (!m) {
        if (required)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: metadata key %s is missing",
                           what, key);
        *out = def;
        return MG_OK;
    }
    if (m->type == MG_META_FLOAT) v = m->v.f;
    else if (m->type == MG_META_INT) v = (double)m->v.i;
    else
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: metadata key %s is not a number",
                       what, key);
    if (!(zero_ok && v == 0.0) && !(v > lo && v <= hi))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: %s = %g is out of range (%g, %g]%s",
                       what, key, v, lo, hi, zero_ok ? " (or 0)" : "");
    *out = v;
    return MG_OK;
}

static const mg__tensor *find(const mg__mgm *f, const char *what, const char *name,
                              char *err, size_t errlen, mg_status *st) {
    const mg__tensor *t = mg__mgm_tensor(f, name);
    if (!t || !t->data) {
        *st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: tensor %s %s", what, name,
                      t ? "has no data" : "is missing");
        return NULL;
    }
    *st = MG_OK;
    return t;
}

mg_status mg__mgm_get_matrix(const mg__mgm *f, const char *what,
                             const char *name, uint64_t in, uint64_t out,
                             const mg__tensor **tp, size_t *scratch, char *err,
                             size_t errlen) {
    mg_status st;
    const mg__tensor *t = find(f, what, name, err, errlen, &st);
    if (!t) return st;
    int ok = 0;
    /* a matrix a builder already rearranged (mg__mgm_repack_q4x16) */
    int32_t fdt = t->dtype == MG__DTYPE_Q4_0X16 ? MG_DTYPE_Q4_0 : t->dtype;
    uint64_t row = mg__dtype_bytes(fdt, in, &ok), total;
    if (!ok || mg__mul_u64(row, out, &total))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: tensor %s has unsupported dtype %d for rows of %llu", what, name,
                       (int)t->dtype, (unsigned long long)in);
    int shape_ok = t->n_dims >= 2 && t->dims[0] == in && t->dims[1] == out;
    for (uint32_t i = 2; i < t->n_dims && i < MG_TENSOR_MAX_DIMS; i++)
        if (t->dims[i] != 1) shape_ok = 0;
    if (!shape_ok || t->n_bytes != total)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: tensor %s has dims [%llu, %llu] (%u dims), expected [%llu, %llu]",
                       what, name, (unsigned long long)t->dims[0],
                       (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 1), t->n_dims,
                       (unsigned long long)in, (unsigned long long)out);
    if (t->dtype != MG_DTYPE_F32 && scratch) {
        size_t need = mg__matmul_scratch_size(t->dtype, in);
        if (!need)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: tensor %s is too wide", what,
                           name);
        if (need > *scratch) *scratch = need;
    }
    *tp = t;
    return MG_OK;
}

mg_status mg__mgm_get_vector(const mg__mgm *f, const char *what,
                             const char *name, uint64_t n, const float **out,
                             char *err, size_t errlen) {
    mg_status st;
    const mg__tensor *t = find(f, what, name, err, errlen, &st);
    if (!t) return st;
    if (t->dtype != MG_DTYPE_F32 || t->n_elems != n || t->dims[0] != n || t->n_bytes != n * 4)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: tensor %s must be f32 [%llu] (dtype %d, %llu elements)", what, name,
                       (unsigned long long)n, (int)t->dtype, (unsigned long long)t->n_elems);
    *out = t->data;
    return MG_OK;
}
