/* config.c - the converter's configuration mapping: Hugging Face config.json
 * (with transformers' defaults for the fields a checkpoint leaves out) and
 * preprocessor_config.json, llama.cpp's GGUF gemma3 and clip keys, and the
 * tokenizer of a GGUF file. docs/CONVERT.md lists every default. */
#include "convert/convert.h"
#include "llm/tokenizer.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ JSON */

/* An integer field in [lo, hi]; absent or null gives def when has_def. */
static mg_status jint(const cJSON *o, const char *where, const char *k, int has_def,
                      int64_t def, int64_t lo, int64_t hi, int64_t *out, char *err,
                      size_t errlen) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    if (!v || cJSON_IsNull(v)) {
        if (has_def) {
            *out = def;
            return MG_OK;
        }
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: %s is missing", where, k);
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        !(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: %s must be an integer in [%" PRId64 ", %" PRId64 "]", where, k,
                       lo, hi);
    *out = (int64_t)v->valuedouble;
    return MG_OK;
}

/* A number in [lo, hi]; absent gives def; null gives null_val. */
static mg_status jnum(const cJSON *o, const char *where, const char *k, double def,
                      double null_val, double lo, double hi, double *out, char *err,
                      size_t errlen) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    if (!v) {
        *out = def;
        return MG_OK;
    }
    if (cJSON_IsNull(v)) {
        *out = null_val;
        return MG_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: %s must be a number in [%g, %g]",
                       where, k, lo, hi);
    *out = v->valuedouble;
    return MG_OK;
}

static int jstr_is(const cJSON *o, const char *k, const char *want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && !strcmp(v->valuestring, want);
}

static mg_status read_json(cJSON **out, const char *dir, const char *file, int required,
                           char *err, size_t errlen) {
    char path[4608];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *txt = NULL;
    size_t n = 0;
    *out = NULL;
    mg_status st = mg__read_text_file(&txt, &n, path, (size_t)64 << 20, err, errlen);
    if (st == MG_E_NOT_FOUND)
        return required ? mg__err(err, errlen, MG_E_IO, "%s is missing", path) : MG_OK;
    if (st) return st;
    cJSON *j = cJSON_ParseWithLength(txt, n);
    mg__free(txt);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s is not a JSON object", path);
    }
    *out = j;
    return MG_OK;
}

/* Text decoder fields of a Gemma3TextConfig (flat or text_config). */
static mg_status text_cfg(mg__ccfg *c, const cJSON *t, const char *w, char *err,
                          size_t errlen) {
    mg_status st;
#define I(k, d, lo, hi, f) if ((st = jint(t, w, k, 1, d, lo, hi, &c->f, err, errlen))) return st
    I("vocab_size", 262208, 1, 1 << 24, vocab);
    I("hidden_size", 2304, 1, 1 << 16, hidden);
    I("intermediate_size", 9216, 1, 1 << 20, ffn);
    I("num_hidden_layers", 26, 1, 1024, layers);
    I("num_attention_heads", 8, 1, 1024, heads);
    I("num_key_value_heads", 4, 1, 1024, kv_heads);
    I("head_dim", 256, 2, 4096, head_dim);
    I("max_position_embeddings", 131072, 1, 1 << 24, ctx);
    I("sliding_window", 4096, 1, INT32_MAX, window);
    I("query_pre_attn_scalar", 256, 1, 1 << 24, qpas);
#undef I
    if (c->heads % c->kv_heads)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: num_attention_heads %" PRId64 " is not a multiple of "
                       "num_key_value_heads %" PRId64, w, c->heads, c->kv_heads);
    if (c->head_dim % 2)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: head_dim must be even", w);
    if ((st = jnum(t, w, "rope_theta", 1e6, 1e6, 1, 1e12, &c->theta_global, err, errlen)) ||
        (st = jnum(t, w, "rope_local_base_freq", 1e4, 1e4, 1, 1e12, &c->theta_local, err,
                   errlen)) ||
        (st = jnum(t, w, "rms_norm_eps", 1e-6, 1e-6, 1e-12, 1, &c->eps, err, errlen)) ||
        (st = jnum(t, w, "attn_logit_softcapping", 0, 0, 0, 1e6, &c->attn_softcap, err,
                   errlen)) ||
        (st = jnum(t, w, "final_logit_softcapping", 0, 0, 0, 1e6, &c->final_softcap, err,
                   errlen)))
        return st;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(t, "hidden_activation");
    if (act && !cJSON_IsNull(act) && !jstr_is(t, "hidden_activation", "gelu_pytorch_tanh"))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "%s: hidden_activation must be gelu_pytorch_tanh", w);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "attention_bias")))
        return mg__err(err, errlen, MG_E_UNSUPPORTED, "%s: attention_bias is not supported", w);
    c->tied = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "tie_word_embeddings"));
    /* Layer pattern: layer_types (newer configs), else sliding_window_pattern,
     * else 6. layer_types must be periodic with the global layer last. */
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(t, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->layers)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "%s: layer_types is not an array of num_hidden_layers entries", w);
        int64_t first = 0;
        for (int64_t i = 0; i < c->layers && !first; i++) {
            const cJSON *e = cJSON_GetArrayItem(lt, (int)i);
            if (cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")) first = i + 1;
        }
        c->pattern = first ? first : c->layers + 1;
        for (int64_t i = 0; i < c->layers; i++) {
            const cJSON *e = cJSON_GetArrayItem(lt, (int)i);
            const char *want = (i + 1) % c->pattern ? "sliding_attention" : "full_attention";
            if (!cJSON_IsString(e) || strcmp(e->valuestring, want))
                return mg__err(err, errlen, MG_E_UNSUPPORTED,
                               "%s: layer_types[%d] breaks the periodic pattern of one "
                               "full_attention layer every %" PRId64, w, (int)i, c->pattern);
        }
    } else if ((st = jint(t, w, "sliding_window_pattern", 1, 6, 1, 1024, &c->pattern, err,
                          errlen))) {
        return st;
    }
    c->rope_factor = 1;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(t, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsObject(rs))
            return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: rope_scaling is not an object", w);
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
        if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "linear")) {
            if ((st = jnum(rs, w, "factor", NAN, NAN, 1e-6, 1e6, &c->rope_factor, err, errlen)))
                return st;
            if (isnan(c->rope_factor))
                return mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: rope_scaling.factor is missing", w);
        } else if (!(cJSON_IsString(ty) && !strcmp(ty->valuestring, "default"))) {
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "%s: rope_scaling type '%.40s' is not supported (linear only)", w,
                           cJSON_IsString(ty) ? ty->valuestring : "?");
        }
    }
    return MG_OK;
}

static mg_status vision_cfg(mg__ccfg *c, const cJSON *v, const char *w, char *err,
                            size_t errlen) {
    mg_status st;
#define I(k, d, lo, hi, f) if ((st = jint(v, w, k, 1, d, lo, hi, &c->f, err, errlen))) return st
    I("hidden_size", 768, 1, 1 << 16, v_hidden);
    I("intermediate_size", 3072, 1, 1 << 20, v_ffn);
    I("num_hidden_layers", 12, 1, 1024, v_layers);
    I("num_attention_heads", 12, 1, 1024, v_heads);
    I("num_channels", 3, 3, 3, v_channels);
    I("image_size", 224, 1, 1 << 15, v_image);
    I("patch_size", 16, 1, 1 << 10, v_patch);
#undef I
    if ((st = jnum(v, w, "layer_norm_eps", 1e-6, 1e-6, 1e-12, 1, &c->v_eps, err, errlen)))
        return st;
    if (c->v_hidden % c->v_heads)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: hidden_size is not a multiple of num_attention_heads", w);
    if (c->v_image % c->v_patch)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: image_size is not a multiple of patch_size", w);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "vision_use_head")))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "%s: vision_use_head = true is not supported", w);
    return MG_OK;
}

static mg_status check_tokens(const mg__ccfg *c, char *err, size_t errlen) {
    int64_t side = c->v_image / c->v_patch, ts = (int64_t)llround(sqrt((double)c->mm_tokens));
    if (ts < 1 || ts * ts != c->mm_tokens || side % ts)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "image tokens per image (%" PRId64 ") must be a square whose side "
                       "divides the %" PRId64 "x%" PRId64 " patch grid", c->mm_tokens, side,
                       side);
    return MG_OK;
}

static void default_image(mg__ccfg *c) {
    c->img_size = c->v_image;
    for (int i = 0; i < 3; i++) c->img_mean[i] = c->img_std[i] = 0.5;
    c->img_rescale = 1.0 / 255.0;
    snprintf(c->img_resample, sizeof c->img_resample, "bilinear");
}

static mg_status preprocessor(mg__ccfg *c, const char *dir, char *err, size_t errlen) {
    cJSON *j = NULL;
    mg_status st = read_json(&j, dir, "preprocessor_config.json", 0, err, errlen);
    if (st || !j) return st;
    const char *w = "preprocessor_config.json";
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(j, "size");
    if (cJSON_IsObject(sz)) {
        int64_t h = 0, wd = 0;
        if ((st = jint(sz, w, "height", 0, 0, 1, 1 << 15, &h, err, errlen)) ||
            (st = jint(sz, w, "width", 0, 0, 1, 1 << 15, &wd, err, errlen)))
            goto done;
        if (h != wd) {
            st = mg__err(err, errlen, MG_E_UNSUPPORTED, "%s: size must be square", w);
            goto done;
        }
        c->img_size = h;
    } else if ((st = jint(j, w, "size", 1, c->img_size, 1, 1 << 15, &c->img_size, err, errlen))) {
        goto done;
    }
    const char *arrs[2] = {"image_mean", "image_std"};
    for (int a = 0; a < 2; a++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, arrs[a]);
        if (!v) continue;
        double *dst = a ? c->img_std : c->img_mean;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: %s is not 3 numbers", w, arrs[a]);
            goto done;
        }
        for (int i = 0; i < 3; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble) < 1e6) || (a && !(e->valuedouble > 0))) {
                st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "%s: bad %s value", w, arrs[a]);
                goto done;
            }
            dst[i] = e->valuedouble;
        }
    }
    if ((st = jnum(j, w, "rescale_factor", c->img_rescale, c->img_rescale, 1e-12, 1e6,
                   &c->img_rescale, err, errlen)))
        goto done;
    int64_t rs = 2;
    if ((st = jint(j, w, "resample", 1, 2, 0, 5, &rs, err, errlen))) goto done;
    static const char *const pil[6] = {"nearest", "lanczos", "bilinear", "bicubic", "box",
                                       "hamming"};
    snprintf(c->img_resample, sizeof c->img_resample, "%s", pil[rs]);
    int64_t seq = 0;
    if ((st = jint(j, w, "image_seq_length", 1, c->mm_tokens, 1, 1 << 20, &seq, err, errlen)))
        goto done;
    if (seq != c->mm_tokens)
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "%s: image_seq_length %" PRId64 " differs from config.json's "
                     "mm_tokens_per_image %" PRId64, w, seq, c->mm_tokens);
done:
    cJSON_Delete(j);
    return st;
}

mg_status mg__cfg_from_hf(mg__ccfg *c, const char *dir, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->boi_id = c->eoi_id = c->image_id = -1;
    cJSON *j = NULL;
    mg_status st = read_json(&j, dir, "config.json", 1, err, errlen);
    if (st) return st;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(j, "text_config");
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    int cond = cJSON_IsObject(tc) || jstr_is(j, "model_type", "gemma3");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (cJSON_IsString(a0) && !strcmp(a0->valuestring, "Gemma3ForConditionalGeneration"))
        cond = 1;
    if (!cond && cJSON_IsString(mt) && strcmp(mt->valuestring, "gemma3_text")) {
        st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                     "config.json: model_type '%.60s' is not supported (gemma3, gemma3_text)",
                     mt->valuestring);
        goto done;
    }
    if (!cond) {
        st = text_cfg(c, j, "config.json", err, errlen);
        goto done;
    }
    if (tc && !cJSON_IsObject(tc)) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "config.json: text_config is not an object");
        goto done;
    }
    if ((st = text_cfg(c, tc, "config.json text_config", err, errlen))) goto done;
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(j, "vision_config");
    if (vc && !cJSON_IsNull(vc) && !cJSON_IsObject(vc)) {
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "config.json: vision_config is not an object");
        goto done;
    }
    c->has_vision = 1;
    if ((st = vision_cfg(c, vc, "config.json vision_config", err, errlen))) goto done;
    if ((st = jint(j, "config.json", "mm_tokens_per_image", 1, 256, 1, 1 << 20, &c->mm_tokens,
                   err, errlen)) ||
        (st = jint(j, "config.json", "boi_token_index", 1, 255999, 0, INT32_MAX, &c->boi_id,
                   err, errlen)) ||
        (st = jint(j, "config.json", "eoi_token_index", 1, 256000, 0, INT32_MAX, &c->eoi_id,
                   err, errlen)) ||
        (st = jint(j, "config.json", "image_token_index", 1, 262144, 0, INT32_MAX,
                   &c->image_id, err, errlen)) ||
        (st = check_tokens(c, err, errlen)))
        goto done;
    default_image(c);
    if ((st = preprocessor(c, dir, err, errlen))) goto done;
    /* A genomics encoder's settings, written as genome.* keys. */
    const cJSON *gc = cJSON_GetObjectItemCaseSensitive(j, "genome_config");
    if (gc && !cJSON_IsNull(gc)) {
        if (!cJSON_IsObject(gc)) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "config.json: genome_config is not an object");
            goto done;
        }
        if (!(c->genome_json = cJSON_PrintUnformatted(gc)))
            st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
done:
    cJSON_Delete(j);
    return st;
}

/* ================================================================ GGUF */

static const mg__gkv *kv_find(const mg__csrc *s, const char *key) { return mg__csrc_kv(s, key); }

static int kv_is_int(const mg__gkv *kv) {
    return kv->type <= MG__GV_I32 || kv->type == MG__GV_U64 || kv->type == MG__GV_I64 ||
           kv->type == MG__GV_BOOL;
}

/* An integer key (or an array of equal integers, as some files store
 * per-layer values). */
static mg_status gint(const mg__csrc *s, const char *key, int has_def, int64_t def,
                      int64_t lo, int64_t hi, int64_t *out, char *err, size_t errlen) {
    const mg__gkv *kv = kv_find(s, key);
    if (!kv) {
        if (has_def) {
            *out = def;
            return MG_OK;
        }
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "GGUF: key %s is missing", key);
    }
    int64_t v;
    if (kv->type == MG__GV_ARRAY && kv->ai && kv->n > 0 && kv->elem_type != MG__GV_F32 &&
        kv->elem_type != MG__GV_F64) {
        v = kv->ai[0];
        for (uint64_t i = 1; i < kv->n; i++)
            if (kv->ai[i] != v)
                return mg__err(err, errlen, MG_E_UNSUPPORTED,
                               "GGUF: %s differs between layers", key);
    } else if (kv->type != MG__GV_ARRAY && kv_is_int(kv)) {
        v = kv->i;
    } else {
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "GGUF: %s is not an integer", key);
    }
    if (v < lo || v > hi)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "GGUF: %s = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                       key, v, lo, hi);
    *out = v;
    return MG_OK;
}

static mg_status gnum(const mg__csrc *s, const char *key, double def, double lo, double hi,
                      double *out, char *err, size_t errlen) {
    const mg__gkv *kv = kv_find(s, key);
    if (!kv) {
        *out = def;
        return MG_OK;
    }
    if (kv->type == MG__GV_ARRAY || kv->type == MG__GV_STRING || kv->type == MG__GV_BOOL ||
        !(kv->f >= lo && kv->f <= hi))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "GGUF: %s must be a number in [%g, %g]", key, lo, hi);
    *out = kv->f;
    return MG_OK;
}

static const char *gstr(const mg__csrc *s, const char *key) {
    const mg__gkv *kv = kv_find(s, key);
    return kv && kv->type == MG__GV_STRING ? kv->s : NULL;
}

mg_status mg__cfg_from_gguf(mg__ccfg *c, const mg__csrc *s, int has_mmproj, char *err,
                            size_t errlen) {
    memset(c, 0, sizeof *c);
    c->boi_id = c->eoi_id = c->image_id = -1;
    c->tied = 1;
    const char *arch = gstr(s, "general.architecture");
    if (!arch || strcmp(arch, "gemma3"))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "GGUF: general.architecture '%.60s' is not supported (gemma3)",
                       arch ? arch : "(missing)");
    mg_status st;
#define I(k, hd, d, lo, hi, f) if ((st = gint(s, "gemma3." k, hd, d, lo, hi, &c->f, err, errlen))) return st
    I("context_length", 0, 0, 1, 1 << 24, ctx);
    I("embedding_length", 0, 0, 1, 1 << 16, hidden);
    I("block_count", 0, 0, 1, 1024, layers);
    I("feed_forward_length", 0, 0, 1, 1 << 20, ffn);
    I("attention.head_count", 0, 0, 1, 1024, heads);
    I("attention.head_count_kv", 1, c->heads, 1, 1024, kv_heads);
    I("attention.key_length", 1, c->hidden / c->heads, 2, 4096, head_dim);
    I("attention.sliding_window", 1, 4096, 1, INT32_MAX, window);
    I("attention.query_pre_attn_scalar", 1, c->head_dim, 1, 1 << 24, qpas);
#undef I
    int64_t vl = 0;
    if ((st = gint(s, "gemma3.attention.value_length", 1, c->head_dim, 1, 4096, &vl, err, errlen)))
        return st;
    if (vl != c->head_dim)
        return mg__err(err, errlen, MG_E_UNSUPPORTED, "GGUF: value_length differs from key_length");
    if (c->heads % c->kv_heads || c->head_dim % 2)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "GGUF: head counts or key_length are inconsistent");
    if ((st = gnum(s, "gemma3.attention.layer_norm_rms_epsilon", 1e-6, 1e-12, 1, &c->eps, err,
                   errlen)) ||
        (st = gnum(s, "gemma3.rope.freq_base", 1e6, 1, 1e12, &c->theta_global, err, errlen)) ||
        (st = gnum(s, "gemma3.rope.freq_base_swa", 1e4, 1, 1e12, &c->theta_local, err,
                   errlen)) ||
        (st = gnum(s, "gemma3.attn_logit_softcapping", 0, 0, 1e6, &c->attn_softcap, err,
                   errlen)) ||
        (st = gnum(s, "gemma3.final_logit_softcapping", 0, 0, 1e6, &c->final_softcap, err,
                   errlen)))
        return st;
    c->rope_factor = 1;
    const char *rt = gstr(s, "gemma3.rope.scaling.type");
    if (rt && !strcmp(rt, "linear")) {
        if ((st = gnum(s, "gemma3.rope.scaling.factor", 1, 1e-6, 1e6, &c->rope_factor, err,
                       errlen)))
            return st;
    } else if (rt && strcmp(rt, "none")) {
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "GGUF: rope scaling type '%.40s' is not supported", rt);
    }
    /* Layer pattern: an int period, or llama.cpp's per-layer bool array
     * (true = sliding window); llama.cpp's default for gemma3 is 6. */
    const mg__gkv *pk = kv_find(s, "gemma3.attention.sliding_window_pattern");
    c->pattern = 6;
    if (pk && pk->type == MG__GV_ARRAY) {
        if (pk->elem_type != MG__GV_BOOL || pk->n != (uint64_t)c->layers)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "GGUF: sliding_window_pattern is not one bool per layer");
        int64_t first = 0;
        for (int64_t i = 0; i < c->layers && !first; i++)
            if (!pk->ai[i]) first = i + 1;
        c->pattern = first ? first : c->layers + 1;
        for (int64_t i = 0; i < c->layers; i++)
            if ((pk->ai[i] != 0) != ((i + 1) % c->pattern != 0))
                return mg__err(err, errlen, MG_E_UNSUPPORTED,
                               "GGUF: sliding_window_pattern is not periodic");
    } else if (pk && (st = gint(s, "gemma3.attention.sliding_window_pattern", 0, 0, 1, 1024,
                                &c->pattern, err, errlen))) {
        return st;
    }
    if (!has_mmproj) return MG_OK;
    const char *pt = gstr(s, "clip.projector_type");
    if (!pt) pt = gstr(s, "clip.vision.projector_type");
    if (!pt || strcmp(pt, "gemma3"))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "mmproj: projector type '%.60s' is not supported (gemma3)",
                       pt ? pt : "(missing)");
    c->has_vision = 1;
    c->v_channels = 3;
#define V(k, f, hi) if ((st = gint(s, "clip.vision." k, 0, 0, 1, hi, &c->f, err, errlen))) return st
    V("image_size", v_image, 1 << 15);
    V("patch_size", v_patch, 1 << 10);
    V("embedding_length", v_hidden, 1 << 16);
    V("feed_forward_length", v_ffn, 1 << 20);
    V("block_count", v_layers, 1024);
    V("attention.head_count", v_heads, 1024);
#undef V
    if ((st = gnum(s, "clip.vision.attention.layer_norm_epsilon", 1e-6, 1e-12, 1, &c->v_eps,
                   err, errlen)))
        return st;
    if (c->v_image % c->v_patch || c->v_hidden % c->v_heads)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "mmproj: inconsistent vision shape");
    int64_t scale = 4;
    if ((st = gint(s, "clip.vision.projector.scale_factor", 1, 4, 1, 1 << 10, &scale, err,
                   errlen)))
        return st;
    int64_t side = c->v_image / c->v_patch;
    if (side % scale)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "mmproj: projector scale factor does not divide the patch grid");
    c->mm_tokens = (side / scale) * (side / scale);
    default_image(c);
    const char *arrs[2] = {"clip.vision.image_mean", "clip.vision.image_std"};
    for (int a = 0; a < 2; a++) {
        const mg__gkv *kv = kv_find(s, arrs[a]);
        if (!kv) continue;
        if (kv->type != MG__GV_ARRAY || !kv->af || kv->n != 3)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT, "mmproj: %s is not 3 numbers",
                           arrs[a]);
        for (int i = 0; i < 3; i++) {
            if (!(fabs(kv->af[i]) < 1e6) || (a && !(kv->af[i] > 0)))
                return mg__err(err, errlen, MG_E_MODEL_FORMAT, "mmproj: bad %s", arrs[a]);
            (a ? c->img_std : c->img_mean)[i] = kv->af[i];
        }
    }
    return MG_OK;
}

/* ============================================================ tokenizer */

typedef struct cand { double score; int32_t id; } cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct pair { int32_t l, r; } pair;

static int cmp_pair(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

static const char *const k_role_piece[MG__TOK_N_ROLES] = {
    NULL, NULL, NULL, NULL, "<start_of_turn>", "<end_of_turn>",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>",
};

mg_status mg__tokenizer_from_gguf(mg_tokenizer **out, const mg__csrc *s, char *err,
                                  size_t errlen) {
    *out = NULL;
    const char *model = gstr(s, "tokenizer.ggml.model");
    const mg__gkv *toks = kv_find(s, "tokenizer.ggml.tokens");
    if (!model || !toks) return MG_E_NOT_FOUND;
    if (strcmp(model, "llama"))
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "GGUF: tokenizer model '%.40s' is not supported (llama, i.e. "
                       "SentencePiece BPE); pass a tokenizer.json instead", model);
    if (toks->type != MG__GV_ARRAY || toks->elem_type != MG__GV_STRING || toks->n == 0 ||
        toks->n > MG__TOK_MAX_VOCAB)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "GGUF: tokenizer.ggml.tokens is not a string array of 1 .. 2^24");
    uint32_t n = (uint32_t)toks->n;
    const mg__gkv *types = kv_find(s, "tokenizer.ggml.token_type");
    const mg__gkv *scores = kv_find(s, "tokenizer.ggml.scores");
    if (types && (types->type != MG__GV_ARRAY || !types->ai || types->n != n))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "GGUF: tokenizer.ggml.token_type is not one integer per token");
    if (!scores || scores->type != MG__GV_ARRAY || !scores->af || scores->n != n)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "GGUF: tokenizer.ggml.scores is not one number per token");
    mg_tokenizer *t = NULL;
    cand *order = NULL;
    pair *local = NULL;
    mg_status st = mg__tok_new(&t, n, err, errlen);
    for (uint32_t i = 0; !st && i < n; i++) {
        int64_t ty = types ? types->ai[i] : MG__TOK_NORMAL;
        if (ty < MG__TOK_NORMAL || ty > MG__TOK_BYTE)
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "GGUF: token %" PRIu32 " has unknown type %" PRId64, i, ty);
        else
            st = mg__tok_set_piece(t, i, toks->as[i], strlen(toks->as[i]), (int32_t)ty, err,
                                   errlen);
    }
    if (!st) st = mg__tok_index(t, err, errlen);
    /* Merges as Hugging Face derives them from a SentencePiece BPE model:
     * every split of every piece into two pieces, pieces in descending
     * score (ties by id), the splits of one piece by (left id, right id). */
    uint64_t n_merges = 0;
    size_t maxlen = 0;
    for (uint32_t i = 0; !st && i < n; i++)
        if (strlen(toks->as[i]) > maxlen) maxlen = strlen(toks->as[i]);
    if (!st) {
        order = mg__malloc((size_t)n * sizeof *order);
        local = mg__malloc((maxlen + 1) * sizeof *local);
        if (!order || !local) st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    /* two passes: count, then add */
    for (int pass = 0; !st && pass < 2; pass++) {
        if (pass == 1) {
            if (n_merges > MG__TOK_MAX_MERGES) {
                st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "GGUF: too many merges");
                break;
            }
            if ((st = mg__tok_reserve_merges(t, (uint32_t)n_merges, err, errlen))) break;
        }
        for (uint32_t i = 0; i < n; i++) order[i] = (cand){scores->af[i], (int32_t)i};
        if (pass == 0) qsort(order, n, sizeof *order, cmp_cand);
        else qsort(order, n, sizeof *order, cmp_cand);
        for (uint32_t k = 0; !st && k < n; k++) {
            const char *p = toks->as[order[k].id];
            size_t len = strlen(p), nl = 0;
            for (size_t c = 1; c < len; c++) {
                if (((unsigned char)p[c] & 0xC0) == 0x80) continue; /* inside a code point */
                int32_t l = mg__tok_find(t, p, c), r = mg__tok_find(t, p + c, len - c);
                if (l >= 0 && r >= 0) local[nl++] = (pair){l, r};
            }
            if (pass == 0) {
                n_merges += nl;
                continue;
            }
            if (nl > 1) qsort(local, nl, sizeof *local, cmp_pair);
            for (size_t q = 0; !st && q < nl; q++)
                st = mg__tok_add_merge(t, local[q].l, local[q].r, err, errlen);
        }
    }
    int32_t roles[MG__TOK_N_ROLES];
    static const char *const role_keys[4] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"};
    for (int i = 0; !st && i < MG__TOK_N_ROLES; i++) {
        roles[i] = -1;
        if (i < 4) {
            int64_t v = -1;
            if ((st = gint(s, role_keys[i], 1, -1, -1, (int64_t)n - 1, &v, err, errlen))) break;
            roles[i] = (int32_t)v;
        } else {
            roles[i] = mg__tok_find(t, k_role_piece[i], strlen(k_role_piece[i]));
        }
    }
    if (!st) st = mg__tok_finish(t, MG__TOK_NORM_SPACE_MARKER, MG__TOK_PRE_NONE, roles, err,
                                 errlen);
    mg__free(order);
    mg__free(local);
    if (st) {
        mg_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MG_OK;
}

mg_status mg__tokenizer_pad(mg_tokenizer **out, const mg_tokenizer *t, uint32_t n_vocab,
                            char *err, size_t errlen) {
    *out = NULL;
    uint32_t n0 = mg_tokenizer_vocab_size(t);
    if (n_vocab < n0 || n_vocab > MG__TOK_MAX_VOCAB)
        return mg__err(err, errlen, MG_E_INTERNAL, "bad padding size");
    mg_tokenizer *p = NULL;
    mg_status st = mg__tok_new(&p, n_vocab, err, errlen);
    for (uint32_t i = 0; !st && i < n0; i++) {
        const char *s = mg_tokenizer_piece(t, (int32_t)i);
        st = mg__tok_set_piece(p, i, s, strlen(s), mg__tok_type(t, (int32_t)i), err, errlen);
    }
    /* Placeholders "<unused_pad_N>"; a name the vocabulary already has gets
     * more underscores until it is unique. */
    for (uint32_t i = n0; !st && i < n_vocab; i++) {
        char b[64];
        int u = 1;
        for (;;) {
            snprintf(b, sizeof b, "<unused%.*s%s%" PRIu32 ">", u, "________", "pad_", i);
            if (mg__tok_find(t, b, strlen(b)) < 0 || u >= 8) break;
            u++;
        }
        st = mg__tok_set_piece(p, i, b, strlen(b), MG__TOK_UNUSED, err, errlen);
    }
    if (!st) st = mg__tok_index(p, err, errlen);
    uint32_t nm = mg__tok_n_merges(t);
    if (!st) st = mg__tok_reserve_merges(p, nm, err, errlen);
    for (uint32_t r = 0; !st && r < nm; r++) {
        int32_t a, b;
        mg__tok_merge(t, r, &a, &b);
        st = mg__tok_add_merge(p, a, b, err, errlen);
    }
    int32_t roles[MG__TOK_N_ROLES], norm, pre;
    for (int i = 0; i < MG__TOK_N_ROLES; i++) roles[i] = mg_tokenizer_special(t, i);
    mg__tok_options(t, &norm, &pre);
    if (!st) st = mg__tok_finish(p, norm, pre, roles, err, errlen);
    if (st) {
        mg_tokenizer_free(p);
        return st;
    }
    *out = p;
    return MG_OK;
}
