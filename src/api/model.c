/* model.c - mg_model: loading, reference counting, metadata and tensor
 * queries. Argument and handle checks live here; parsing is in io/mgm.c. */
#include "api/api.h"

#include "kernels/kernels.h"
#include "llm/tokenizer.h"

#include <string.h>

int mg__model_ok(const mg_model *m) {
    return m && m->tag == MG__TAG_MODEL && !atomic_load(&m->closed);
}

void mg__model_retain(mg_model *m) { atomic_fetch_add(&m->refs, 1); }

void mg__model_release(mg_model *m) {
    if (atomic_fetch_sub(&m->refs, 1) != 1) return;
    m->tag = MG__TAG_DEAD;
    mg_tokenizer_free(m->tokenizer);
    mg__decoder_free(m->decoder);
    mg__encoders_free(&m->encoders);
    mg__mgm_close(m->file);
    mg__free(m);
}

const char *mg__model_meta_str(const mg_model *m, const char *key, const char *dflt) {
    const mg__meta *e = mg__mgm_meta(m->file, key);
    return (e && e->type == MG_META_STRING) ? e->v.s : dflt;
}

static const char *meta_str_or_empty(const mg__mgm *f, const char *key) {
    const mg__meta *e = mg__mgm_meta(f, key);
    return (e && e->type == MG_META_STRING) ? e->v.s : "";
}

static int has_prefix_tensor(const mg__mgm *f, const char *prefix) {
    size_t n = strlen(prefix);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strncmp(f->tensors[i].name, prefix, n)) return 1;
    return 0;
}

MG_API mg_status mg_model_load(mg_model **out, const char *path,
                               const mg_model_params *params, char *err,
                               size_t errlen) {
    mg_model_params p = MG_MODEL_PARAMS_INIT;
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return mg__err(err, errlen, MG_E_INVALID_ARG, "path is NULL");
    mg_status pst = mg__params_copy(&p, sizeof p, params);
    if (pst == MG_E_UNSUPPORTED)
        return mg__err(err, errlen, pst, "mg_model_params sets fields this version (%s) does "
                       "not know", MG_VERSION_STRING);
    if (pst != MG_OK)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_model_params.struct_size is invalid");
    if (p.flags & ~(uint32_t)(MG_LOAD_VERIFY_CHECKSUMS | MG_LOAD_NO_MMAP | MG_LOAD_MMAP |
                             MG_LOAD_FILE_LAYOUT))
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "unknown mg_model_params.flags bits 0x%x", p.flags);

    mg__mgm *f = NULL;
    mg_status st = mg__mgm_open(&f, path, p.flags, p.max_memory, err, errlen);
    if (st != MG_OK) return st;

    mg_model *m = mg__calloc(1, sizeof *m);
    if (!m) {
        mg__mgm_close(f);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    m->tag = MG__TAG_MODEL;
    atomic_init(&m->refs, 1);
    atomic_init(&m->closed, 0);
    m->file = f;
    m->name = meta_str_or_empty(f, "general.name");
    m->architecture = meta_str_or_empty(f, "general.architecture");
    m->has_vision = has_prefix_tensor(f, "vision.");
    const mg__meta *cl = mg__mgm_meta(f, "text.context_length");
    if (cl && cl->type == MG_META_INT && cl->v.i > 0)
        m->context_length = cl->v.i > UINT32_MAX ? UINT32_MAX : (uint32_t)cl->v.i;
    if (mg__mgm_meta(f, "text.n_layers")) {
        st = mg__decoder_build(&m->decoder, f, err, errlen);
        if (st != MG_OK) {
            mg__model_release(m);
            return st;
        }
        const mg__dconfig *dc = mg__decoder_config(m->decoder);
        m->context_length = dc->context_length;
        m->has_text = 1;
    }
    st = mg__encoders_build(&m->encoders, f,
                            m->decoder ? mg__decoder_config(m->decoder)->hidden : 0,
                            err, errlen);
    if (st != MG_OK) {
        mg__model_release(m);
        return st;
    }
    m->has_vision = 0;
    for (uint32_t i = 0; i < m->encoders.n; i++)
        if (m->encoders.e[i].vt->input_kind == MG__INPUT_IMAGE) m->has_vision = 1;
    st = mg__tokenizer_from_mgm(&m->tokenizer, f, err, errlen);
    if (st == MG_E_NOT_FOUND) {
        st = MG_OK;
        if (err && errlen) err[0] = '\0';
    }
    if (st != MG_OK) {
        mg__model_release(m);
        return st;
    }
    *out = m;
    return MG_OK;
}

mg_status mg__model_register_encoder(mg_model *m, const mg__encoder_vtable *vt,
                                     char *err, size_t errlen) {
    if (!mg__model_ok(m))
        return mg__err(err, errlen, MG_E_MISUSE, "invalid model handle");
    if (atomic_load(&m->refs) != 1)
        return mg__err(err, errlen, MG_E_MISUSE,
                       "encoders must be registered before the first context is created");
    mg_status st = mg__encoders_add(&m->encoders, vt, m->file,
                                    m->decoder ? mg__decoder_config(m->decoder)->hidden : 0,
                                    err, errlen);
    if (st == MG_OK && vt->input_kind == MG__INPUT_IMAGE) m->has_vision = 1;
    return st;
}

MG_API const mg_tokenizer *mg_model_tokenizer(const mg_model *m) {
    return mg__model_ok(m) ? m->tokenizer : NULL;
}

MG_API void mg_model_free(mg_model *m) {
    if (!m || m->tag != MG__TAG_MODEL) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&m->closed, &expected, 1))
        return; /* already freed by the caller: ignore the repeat */
    mg__model_release(m);
}

MG_API mg_status mg_model_info_get(mg_model_info *out, const mg_model *m) {
    if (!mg__model_ok(m)) return MG_E_MISUSE;
    if (!out || out->struct_size < sizeof(uint32_t)) return MG_E_INVALID_ARG;
    mg_model_info i;
    memset(&i, 0, sizeof i);
    i.struct_size = out->struct_size < sizeof i ? out->struct_size : (uint32_t)sizeof i;
    i.format_version = m->file->version;
    i.n_tensors = m->file->n_tensors;
    i.n_params = m->file->n_params;
    i.n_bytes = m->file->n_bytes;
    i.n_metadata = m->file->n_meta;
    i.name = m->name;
    i.architecture = m->architecture;
    i.has_vision = m->has_vision;
    i.has_text = m->has_text;
    if (m->decoder) {
        i.n_vocab = mg__decoder_config(m->decoder)->vocab;
        i.n_ctx_train = mg__decoder_config(m->decoder)->context_length;
    }
    memcpy(out, &i, i.struct_size);
    return MG_OK;
}

MG_API uint64_t mg_model_meta_count(const mg_model *m) {
    return mg__model_ok(m) ? m->file->n_meta : 0;
}

MG_API mg_status mg_model_meta_entry(const char **key, int32_t *type,
                                     int32_t *elem_type, uint64_t *n_elems,
                                     const mg_model *m, uint64_t i) {
    if (!mg__model_ok(m)) return MG_E_MISUSE;
    if (i >= m->file->n_meta) return MG_E_NOT_FOUND;
    const mg__meta *e = &m->file->meta[i];
    if (key) *key = e->key;
    if (type) *type = e->type;
    if (elem_type) *elem_type = e->elem_type;
    if (n_elems) *n_elems = e->n;
    return MG_OK;
}

static mg_status meta_lookup(const mg__meta **e, const mg_model *m,
                             const char *key, const void *out) {
    if (!mg__model_ok(m)) return MG_E_MISUSE;
    if (!key || !out) return MG_E_INVALID_ARG;
    *e = mg__mgm_meta(m->file, key);
    return *e ? MG_OK : MG_E_NOT_FOUND;
}

MG_API mg_status mg_model_meta_int(int64_t *out, const mg_model *m,
                                   const char *key) {
    const mg__meta *e;
    mg_status st = meta_lookup(&e, m, key, out);
    if (st) return st;
    if (e->type != MG_META_INT) return MG_E_TYPE;
    *out = e->v.i;
    return MG_OK;
}

MG_API mg_status mg_model_meta_float(double *out, const mg_model *m,
                                     const char *key) {
    const mg__meta *e;
    mg_status st = meta_lookup(&e, m, key, out);
    if (st) return st;
    if (e->type == MG_META_INT) { *out = (double)e->v.i; return MG_OK; }
    if (e->type != MG_META_FLOAT) return MG_E_TYPE;
    *out = e->v.f;
    return MG_OK;
}

MG_API mg_status mg_model_meta_string(const char **out, const mg_model *m,
                                      const char *key) {
    const mg__meta *e;
    mg_status st = meta_lookup(&e, m, key, out);
    if (st) return st;
    if (e->type != MG_META_STRING) return MG_E_TYPE;
    *out = e->v.s;
    return MG_OK;
}

static mg_status array_lookup(const mg__meta **e, const mg_model *m,
                              const char *key, uint64_t i, int32_t elem,
                              const void *out) {
    mg_status st = meta_lookup(e, m, key, out);
    if (st) return st;
    if ((*e)->type != MG_META_ARRAY) return MG_E_TYPE;
    if ((*e)->elem_type != elem &&
        !(elem == MG_META_FLOAT && (*e)->elem_type == MG_META_INT))
        return MG_E_TYPE;
    return i < (*e)->n ? MG_OK : MG_E_NOT_FOUND;
}

MG_API mg_status mg_model_meta_array_int(int64_t *out, const mg_model *m,
                                         const char *key, uint64_t i) {
    const mg__meta *e;
    mg_status st = array_lookup(&e, m, key, i, MG_META_INT, out);
    if (st) return st;
    *out = e->v.ai[i];
    return MG_OK;
}

MG_API mg_status mg_model_meta_array_float(double *out, const mg_model *m,
                                           const char *key, uint64_t i) {
    const mg__meta *e;
    mg_status st = array_lookup(&e, m, key, i, MG_META_FLOAT, out);
    if (st) return st;
    *out = e->elem_type == MG_META_INT ? (double)e->v.ai[i] : e->v.af[i];
    return MG_OK;
}

MG_API mg_status mg_model_meta_array_string(const char **out, const mg_model *m,
                                            const char *key, uint64_t i) {
    const mg__meta *e;
    mg_status st = array_lookup(&e, m, key, i, MG_META_STRING, out);
    if (st) return st;
    *out = e->v.as[i];
    return MG_OK;
}

MG_API const char *mg_dtype_name(int32_t dtype) {
    switch (dtype) {
    case MG_DTYPE_F32: return "f32";
    case MG_DTYPE_F16: return "f16";
    case MG_DTYPE_BF16: return "bf16";
    case MG_DTYPE_Q8_0: return "q8_0";
    case MG_DTYPE_Q4_0: return "q4_0";
    default: return NULL;
    }
}

MG_API uint64_t mg_model_tensor_count(const mg_model *m) {
    return mg__model_ok(m) ? m->file->n_tensors : 0;
}

static mg_status tensor_fill(mg_tensor_info *out, const mg__tensor *t) {
    if (out->struct_size < sizeof(uint32_t)) return MG_E_INVALID_ARG;
    mg_tensor_info i;
    memset(&i, 0, sizeof i);
    i.struct_size = out->struct_size < sizeof i ? out->struct_size : (uint32_t)sizeof i;
    /* A q4_0 matrix the decoder rearranged at load (MG_LOAD_FILE_LAYOUT
     * keeps it): still q4_0 in the file, its bytes no longer in that order. */
    int moved = t->dtype == MG__DTYPE_Q4_0X16;
    i.dtype = moved ? MG_DTYPE_Q4_0 : t->dtype;
    i.n_dims = t->n_dims;
    i.compressed = (t->flags & MG__MGM_FLAG_ZSTD) ? 1 : 0;
    for (int k = 0; k < MG_TENSOR_MAX_DIMS; k++) i.dims[k] = t->dims[k];
    i.n_elems = t->n_elems;
    i.n_bytes = t->n_bytes;
    i.file_offset = t->offset;
    i.stored_bytes = t->stored;
    i.crc32c = t->crc32c;
    i.name = t->name;
    i.data = moved ? NULL : t->data;
    memcpy(out, &i, i.struct_size);
    return MG_OK;
}

MG_API mg_status mg_model_tensor_at(mg_tensor_info *out, const mg_model *m,
                                    uint64_t i) {
    if (!mg__model_ok(m)) return MG_E_MISUSE;
    if (!out) return MG_E_INVALID_ARG;
    if (i >= m->file->n_tensors) return MG_E_NOT_FOUND;
    return tensor_fill(out, &m->file->tensors[i]);
}

MG_API mg_status mg_model_tensor_find(mg_tensor_info *out, const mg_model *m,
                                      const char *name) {
    if (!mg__model_ok(m)) return MG_E_MISUSE;
    if (!out || !name) return MG_E_INVALID_ARG;
    const mg__tensor *t = mg__mgm_tensor(m->file, name);
    if (!t) return MG_E_NOT_FOUND;
    return tensor_fill(out, t);
}
