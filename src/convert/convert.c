/* convert.c - mg_convert: Hugging Face folders and GGUF files into .mgm
 * (docs/CONVERT.md). The source is indexed first (headers only), the
 * configuration and the tokenizer mapped, every output tensor planned and
 * checked against its source shape; then metadata and the tensor table are
 * declared and the tensors streamed through mg_writer one at a time, each
 * read a block of rows at a time with pread. */
#include "convert/convert.h"
#include "core/sha256.h"
#include "kernels/kernels.h"
#include "llm/tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONVERTER_VERSION "medgemini-convert " MG_VERSION_STRING
#define CHUNK_ELEMS ((uint64_t)1 << 22) /* f32 values per block of rows */

enum { XF_NONE, XF_MINUS_ONE, XF_TRANSPOSE };
enum { K_VEC, K_F32, K_EMBD, K_MAT };

typedef struct plan {
    char name[96];
    mg__ctensor *src;
    uint32_t n_dims;
    uint64_t dims[MG__CONV_MAX_DIMS];
    int xform, kind;
    int32_t dtype;
} plan;

typedef struct conv {
    mg__csrc src;
    mg__ccfg cfg;
    plan *p;
    size_t n_p, cap_p;
    int gguf;
    char *err;
    size_t errlen;
    mg_tokenizer *tok;     /* the output's tokenizer (padded, pruned), or NULL */
    int64_t src_vocab;     /* embedding rows of the source */
    int32_t *keep_rows;    /* pruning: new id -> source row (ascending), or NULL */
    uint32_t n_keep;
    const char *const *meta; /* validated "key=value" overrides */
    uint32_t n_meta;
    uint8_t *meta_done;    /* which of them were written */
} conv;

#define FAILC(cv, code, ...) mg__err((cv)->err, (cv)->errlen, code, __VA_ARGS__)

/* Plans `ours` from source tensor `sname` whose dims (fastest first) must be
 * sd[0..sn); the output has dims od[0..on). */
static mg_status add(conv *cv, const char *ours, const char *sname, int xform, int kind,
                     uint32_t sn, const uint64_t *sd, uint32_t on, const uint64_t *od) {
    mg__ctensor *t = mg__csrc_find(&cv->src, sname);
    if (!t)
        return FAILC(cv, MG_E_MODEL_FORMAT, "the source has no tensor '%.200s' (for %s)", sname,
                     ours);
    int ok = t->n_dims >= sn;
    for (uint32_t d = 0; ok && d < MG__CONV_MAX_DIMS; d++)
        ok = t->dims[d] == (d < sn ? sd[d] : 1);
    if (!ok) {
        char want[128], got[128];
        int k = 0, g = 0;
        for (uint32_t d = 0; d < sn; d++)
            k += snprintf(want + k, sizeof want - (size_t)k, "%s%llu", d ? ", " : "",
                          (unsigned long long)sd[sn - 1 - d]);
        for (uint32_t d = 0; d < t->n_dims; d++)
            g += snprintf(got + g, sizeof got - (size_t)g, "%s%llu", d ? ", " : "",
                          (unsigned long long)t->dims[t->n_dims - 1 - d]);
        return FAILC(cv, MG_E_MODEL_FORMAT,
                     "tensor '%.200s' has shape [%s] (slowest first), the configuration "
                     "needs [%s]", sname, got, want);
    }
    if (t->used)
        return FAILC(cv, MG_E_MODEL_FORMAT, "tensor '%.200s' is mapped twice", sname);
    if (t->dtype < 0)
        return FAILC(cv, MG_E_UNSUPPORTED,
                     "tensor '%.200s' has type %s, which the converter does not decode "
                     "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)", sname,
                     t->type_name);
    t->used = 1;
    if (cv->n_p == cv->cap_p) {
        size_t cap = cv->cap_p ? cv->cap_p * 2 : 256;
        plan *np = mg__realloc(cv->p, cap * sizeof *np);
        if (!np) return FAILC(cv, MG_E_NOMEM, "out of memory");
        cv->p = np;
        cv->cap_p = cap;
    }
    plan *p = &cv->p[cv->n_p++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", ours);
    p->src = t;
    p->n_dims = on;
    for (uint32_t d = 0; d < MG__CONV_MAX_DIMS; d++) p->dims[d] = d < on ? od[d] : 1;
    p->xform = xform;
    p->kind = kind;
    return MG_OK;
}

#define D(...) (const uint64_t[]){__VA_ARGS__}
#define ND(...) (uint32_t)(sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)), D(__VA_ARGS__)

/* Plans a same-shape tensor: dims (fastest first) identical in both. */
#define SAME(ours, sname, xf, kind, ...) add(cv, ours, sname, xf, kind, ND(__VA_ARGS__), ND(__VA_ARGS__))

/* ------------------------------------------------------------- text */

static const struct { const char *hf, *gg, *ours; int norm; int rows, cols; } k_layer[] = {
    /* rows/cols codes: 1 hidden, 2 heads*hd, 3 kv*hd, 4 ffn, 5 head_dim; cols = input width */
    {"input_layernorm.weight", "attn_norm.weight", "attn_norm", 1, 1, 0},
    {"self_attn.q_proj.weight", "attn_q.weight", "attn_q", 0, 2, 1},
    {"self_attn.k_proj.weight", "attn_k.weight", "attn_k", 0, 3, 1},
    {"self_attn.v_proj.weight", "attn_v.weight", "attn_v", 0, 3, 1},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", "attn_q_norm", 1, 5, 0},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", "attn_k_norm", 1, 5, 0},
    {"self_attn.o_proj.weight", "attn_output.weight", "attn_output", 0, 1, 2},
    {"post_attention_layernorm.weight", "post_attention_norm.weight", "post_attn_norm", 1, 1, 0},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight", "ffn_norm", 1, 1, 0},
    {"mlp.gate_proj.weight", "ffn_gate.weight", "ffn_gate", 0, 4, 1},
    {"mlp.up_proj.weight", "ffn_up.weight", "ffn_up", 0, 4, 1},
    {"mlp.down_proj.weight", "ffn_down.weight", "ffn_down", 0, 1, 4},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", "post_ffn_norm", 1, 1, 0},
};

static uint64_t code_dim(const mg__ccfg *c, int code) {
    switch (code) {
    case 1: return (uint64_t)c->hidden;
    case 2: return (uint64_t)(c->heads * c->head_dim);
    case 3: return (uint64_t)(c->kv_heads * c->head_dim);
    case 4: return (uint64_t)c->ffn;
    case 5: return (uint64_t)c->head_dim;
    default: return 1;
    }
}

static mg_status plan_text(conv *cv, const char *prefix) {
    const mg__ccfg *c = &cv->cfg;
    char s[512], o[96];
    mg_status st;
    uint64_t H = (uint64_t)c->hidden, V = (uint64_t)c->vocab;
    snprintf(s, sizeof s, cv->gguf ? "token_embd.weight" : "%sembed_tokens.weight", prefix);
    if ((st = SAME("text.token_embd", s, XF_NONE, K_EMBD, H, V))) return st;
    for (int64_t l = 0; l < c->layers; l++)
        for (size_t k = 0; k < sizeof k_layer / sizeof k_layer[0]; k++) {
            if (cv->gguf) snprintf(s, sizeof s, "blk.%" PRId64 ".%s", l, k_layer[k].gg);
            else snprintf(s, sizeof s, "%slayers.%" PRId64 ".%s", prefix, l, k_layer[k].hf);
            snprintf(o, sizeof o, "text.blk.%" PRId64 ".%s", l, k_layer[k].ours);
            uint64_t r = code_dim(c, k_layer[k].rows);
            if (k_layer[k].norm)
                st = SAME(o, s, cv->gguf ? XF_MINUS_ONE : XF_NONE, K_VEC, r);
            else
                st = SAME(o, s, XF_NONE, K_MAT, code_dim(c, k_layer[k].cols), r);
            if (st) return st;
        }
    snprintf(s, sizeof s, cv->gguf ? "output_norm.weight" : "%snorm.weight", prefix);
    return SAME("text.output_norm", s, cv->gguf ? XF_MINUS_ONE : XF_NONE, K_VEC, H);
}

/* ------------------------------------------------------------- vision */

static mg_status plan_vision(conv *cv, const char *vp, const char *pp) {
    const mg__ccfg *c = &cv->cfg;
    char s[512], o[96];
    mg_status st;
    uint64_t W = (uint64_t)c->v_hidden, F = (uint64_t)c->v_ffn, P = (uint64_t)c->v_patch;
    uint64_t NP = (uint64_t)(c->v_image / c->v_patch) * (uint64_t)(c->v_image / c->v_patch);
    uint64_t H = (uint64_t)c->hidden;
    int g = cv->gguf;
#define N(hf, gg) (g ? snprintf(s, sizeof s, "%s", gg) : snprintf(s, sizeof s, "%s%s", vp, hf), s)
    /* conv weight [W, 3, P, P] (slowest first) = dims [P, P, 3, W]; its
     * memory order is exactly rows of 3*P*P inputs c*P*P + ky*P + kx */
    if ((st = add(cv, "vision.patch_embd", N("embeddings.patch_embedding.weight",
                  "v.patch_embd.weight"), XF_NONE, K_F32, ND(P, P, 3, W), ND(3 * P * P, W))) ||
        (st = SAME("vision.patch_embd_bias", N("embeddings.patch_embedding.bias",
                   "v.patch_embd.bias"), XF_NONE, K_VEC, W)) ||
        (st = SAME("vision.pos_embd", N("embeddings.position_embedding.weight",
                   "v.position_embd.weight"), XF_NONE, K_F32, W, NP)))
        return st;
    static const struct { const char *hf, *gg, *ours; int mat; int in, out; } L[] = {
        /* in/out: 1 = width, 2 = ffn */
        {"layer_norm1.weight", "ln1.weight", "ln1", 0, 0, 1},
        {"layer_norm1.bias", "ln1.bias", "ln1_bias", 0, 0, 1},
        {"self_attn.q_proj.weight", "attn_q.weight", "attn_q", 1, 1, 1},
        {"self_attn.q_proj.bias", "attn_q.bias", "attn_q_bias", 0, 0, 1},
        {"self_attn.k_proj.weight", "attn_k.weight", "attn_k", 1, 1, 1},
        {"self_attn.k_proj.bias", "attn_k.bias", "attn_k_bias", 0, 0, 1},
        {"self_attn.v_proj.weight", "attn_v.weight", "attn_v", 1, 1, 1},
        {"self_attn.v_proj.bias", "attn_v.bias", "attn_v_bias", 0, 0, 1},
        {"self_attn.out_proj.weight", "attn_out.weight", "attn_output", 1, 1, 1},
        {"self_attn.out_proj.bias", "attn_out.bias", "attn_output_bias", 0, 0, 1},
        {"layer_norm2.weight", "ln2.weight", "ln2", 0, 0, 1},
        {"layer_norm2.bias", "ln2.bias", "ln2_bias", 0, 0, 1},
        {"mlp.fc1.weight", "ffn_up.weight", "ffn_up", 1, 1, 2},
        {"mlp.fc1.bias", "ffn_up.bias", "ffn_up_bias", 0, 0, 2},
        {"mlp.fc2.weight", "ffn_down.weight", "ffn_down", 1, 2, 1},
        {"mlp.fc2.bias", "ffn_down.bias", "ffn_down_bias", 0, 0, 1},
    };
    for (int64_t l = 0; l < c->v_layers; l++)
        for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
            if (g) snprintf(s, sizeof s, "v.blk.%" PRId64 ".%s", l, L[k].gg);
            else snprintf(s, sizeof s, "%sencoder.layers.%" PRId64 ".%s", vp, l, L[k].hf);
            snprintf(o, sizeof o, "vision.blk.%" PRId64 ".%s", l, L[k].ours);
            uint64_t out = L[k].out == 2 ? F : W, in = L[k].in == 2 ? F : W;
            st = L[k].mat ? SAME(o, s, XF_NONE, K_MAT, in, out) : SAME(o, s, XF_NONE, K_VEC, out);
            if (st) return st;
        }
    if ((st = SAME("vision.post_ln", N("post_layernorm.weight", "v.post_ln.weight"), XF_NONE,
                   K_VEC, W)) ||
        (st = SAME("vision.post_ln_bias", N("post_layernorm.bias", "v.post_ln.bias"), XF_NONE,
                   K_VEC, W)))
        return st;
#undef N
    /* projector: Gemma RMSNorm (1 + w; llama.cpp stores 1 + w), and the
     * input projection stored [width, hidden] (slowest first) and applied as
     * x @ W: dims [hidden, width], transposed into our [in = width, out]. */
    if (g) snprintf(s, sizeof s, "mm.soft_emb_norm.weight");
    else snprintf(s, sizeof s, "%smm_soft_emb_norm.weight", pp);
    if ((st = SAME("mm.soft_emb_norm", s, g ? XF_MINUS_ONE : XF_NONE, K_VEC, W))) return st;
    if (g) snprintf(s, sizeof s, "mm.input_projection.weight");
    else snprintf(s, sizeof s, "%smm_input_projection_weight", pp);
    return add(cv, "mm.input_proj", s, XF_TRANSPOSE, K_MAT, ND(H, W), ND(W, H));
}

/* HF: which naming the checkpoint uses. */
static mg_status plan_hf(conv *cv) {
    static const char *const tp[] = {"model.language_model.", "language_model.model.", "model."};
    const char *prefix = NULL;
    char s[256];
    for (size_t i = 0; i < 3 && !prefix; i++) {
        snprintf(s, sizeof s, "%sembed_tokens.weight", tp[i]);
        if (mg__csrc_find(&cv->src, s)) prefix = tp[i];
    }
    if (!prefix)
        return FAILC(cv, MG_E_MODEL_FORMAT,
                     "no token embedding (model.language_model.embed_tokens.weight, "
                     "language_model.model.embed_tokens.weight or model.embed_tokens.weight)");
    mg_status st = plan_text(cv, prefix);
    if (st || !cv->cfg.has_vision) return st;
    int newer = !strcmp(prefix, "model.language_model.");
    return plan_vision(cv, newer ? "model.vision_tower.vision_model." : "vision_tower.vision_model.",
                       newer ? "model.multi_modal_projector." : "multi_modal_projector.");
}

/* Every source tensor must be used, except a tied lm_head copy. */
static mg_status check_unused(conv *cv) {
    for (size_t i = 0; i < cv->src.n_t; i++) {
        const mg__ctensor *t = &cv->src.t[i];
        if (t->used || !strcmp(t->name, "lm_head.weight") || !strcmp(t->name, "output.weight"))
            continue;
        return FAILC(cv, MG_E_UNSUPPORTED,
                     "source tensor '%.200s' has no place in the model (an unsupported "
                     "variant?)", t->name);
    }
    return MG_OK;
}

/* ------------------------------------------------------------- policy */

static int32_t choose_dtype(const plan *p, int32_t want) {
    if (p->kind == K_VEC || p->kind == K_F32) return MG_DTYPE_F32;
    int32_t dt = want;
    if (dt == MG_CONVERT_DTYPE_SOURCE) dt = p->src->dtype;
    /* K-quants have no .mgm type: the block type of the same class */
    if (dt == MG__SRC_Q4_K) dt = MG_DTYPE_Q4_0;
    if (dt == MG__SRC_Q6_K) dt = MG_DTYPE_Q8_0;
    if (p->kind == K_EMBD && want == MG_DTYPE_Q4_0) dt = MG_DTYPE_Q8_0;
    /* rows that are not whole 32-blocks (SigLIP's ffn_down: 4304 inputs):
     * bf16 from a bf16 source (the same values, and the bf16 tile path),
     * else f16 (an f16 source bf16 holds exactly becomes bf16 below) */
    if ((dt == MG_DTYPE_Q8_0 || dt == MG_DTYPE_Q4_0) && p->dims[0] % 32)
        dt = p->src->dtype == MG_DTYPE_BF16 ? MG_DTYPE_BF16 : MG_DTYPE_F16;
    return dt;
}

/* Whether every value of an f16 source tensor is exact in bf16, as in
 * files converted to f16 from bf16 weights (MedGemma's own dtype): an f32
 * widened from such an f16 has its low 16 bits zero. Reads the tensor once. */
static mg_status f16_fits_bf16(conv *cv, const mg__ctensor *t, int *exact) {
    uint64_t cols = t->dims[0], rows = cols ? t->n_elems / cols : 0;
    uint64_t chunk = cols ? CHUNK_ELEMS / cols : 0;
    int ok = 1;
    uint64_t src_row = mg__csrc_bytes(t->dtype, cols, &ok);
    *exact = 0;
    if (!ok || !rows) return MG_OK;
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    float *x = mg__malloc((size_t)(chunk * cols) * sizeof *x);
    void *scratch = mg__malloc((size_t)(chunk * src_row) + 64);
    mg_status st = MG_OK;
    if (!x || !scratch) {
        st = FAILC(cv, MG_E_NOMEM, "out of memory reading tensor '%s'", t->name);
        goto done;
    }
    *exact = 1;
    for (uint64_t r0 = 0; r0 < rows && *exact; r0 += chunk) {
        uint64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        if ((st = mg__csrc_read_rows(&cv->src, t, r0, nr, x, scratch, cv->err, cv->errlen))) {
            *exact = 0;
            goto done;
        }
        for (uint64_t i = 0; i < nr * cols; i++) {
            uint32_t b;
            memcpy(&b, x + i, 4);
            if (b & 0xffffu) {
                *exact = 0;
                break;
            }
        }
    }
done:
    mg__free(x);
    mg__free(scratch);
    return st;
}

/* ------------------------------------------------------------- metadata */

#define W(call) do { if ((st = (call))) return mg__err(cv->err, cv->errlen, st, "%s", mg_writer_errmsg(w)); } while (0)

/* --meta: "key=value" entries that set string keys under general.* and
 * prompt.*. Keys that record where the file came from, or what it is, stay
 * the converter's. */
static const char *const k_meta_reserved[] = {
    "general.architecture", "general.converter", "general.source_files", "general.source_sha256",
};
#define MAX_META 4096u

static mg_status check_meta(const char *const *meta, uint32_t n, char *err, size_t errlen) {
    if (n && !meta)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "meta is NULL but n_meta is %u", n);
    if (n > MAX_META)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "%u meta entries (at most %u)", n, MAX_META);
    for (uint32_t i = 0; i < n; i++) {
        const char *e = meta[i];
        if (!e) return mg__err(err, errlen, MG_E_INVALID_ARG, "meta entry %u is NULL", i);
        const char *eq = strchr(e, '=');
        size_t kl = eq ? (size_t)(eq - e) : 0;
        size_t pl = !strncmp(e, "general.", 8) ? 8 : !strncmp(e, "prompt.", 7) ? 7 : 0;
        if (!eq || !kl)
            return mg__err(err, errlen, MG_E_INVALID_ARG,
                           "meta entry '%.80s' is not KEY=VALUE", e);
        int ok = pl && kl > pl && kl <= 255 && e[kl - 1] != '.';
        for (size_t k = 0; ok && k < kl; k++) {
            char c = e[k];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || (c == '.' && e[k + 1] != '.');
        }
        if (!ok)
            return mg__err(err, errlen, MG_E_INVALID_ARG,
                           "meta key '%.*s': only keys under general. or prompt. (letters, "
                           "digits, '_', '-', '.') can be set", (int)(kl < 80 ? kl : 80), e);
        for (size_t r = 0; r < sizeof k_meta_reserved / sizeof k_meta_reserved[0]; r++)
            if (strlen(k_meta_reserved[r]) == kl && !strncmp(e, k_meta_reserved[r], kl))
                return mg__err(err, errlen, MG_E_INVALID_ARG,
                               "meta key '%s' is the converter's own and cannot be set",
                               k_meta_reserved[r]);
        size_t vl = strlen(eq + 1);
        if (vl > ((size_t)16 << 20) || !mg__utf8_valid(eq + 1, vl))
            return mg__err(err, errlen, MG_E_INVALID_ARG,
                           "meta '%.*s': the value is not valid UTF-8 of at most 16 MiB",
                           (int)kl, e);
        for (uint32_t j = 0; j < i; j++)
            if (!strncmp(meta[j], e, kl + 1))
                return mg__err(err, errlen, MG_E_INVALID_ARG, "meta key '%.*s' is given twice",
                               (int)kl, e);
    }
    return MG_OK;
}

#define PUT(call) do { if ((st = (call))) return st; } while (0)

/* The --meta value for key, or NULL; marks it written. */
static const char *meta_value(conv *cv, const char *key) {
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < cv->n_meta; i++)
        if (!strncmp(cv->meta[i], key, kl) && cv->meta[i][kl] == '=') {
            cv->meta_done[i] = 1;
            return cv->meta[i] + kl + 1;
        }
    return NULL;
}

/* A string key the converter writes, unless --meta gives it. */
static mg_status put_str(conv *cv, mg_writer *w, const char *key, const char *v) {
    const char *o = meta_value(cv, key);
    mg_status st;
    W(mg_writer_set_string(w, key, o ? o : v));
    return MG_OK;
}

/* The --meta keys the converter does not write itself. */
static mg_status put_meta_rest(conv *cv, mg_writer *w) {
    mg_status st;
    for (uint32_t i = 0; i < cv->n_meta; i++) {
        if (cv->meta_done[i]) continue;
        char key[256];
        size_t kl = (size_t)(strchr(cv->meta[i], '=') - cv->meta[i]);
        memcpy(key, cv->meta[i], kl);
        key[kl] = '\0';
        W(mg_writer_set_string(w, key, cv->meta[i] + kl + 1));
        cv->meta_done[i] = 1;
    }
    return MG_OK;
}

/* config.json's genome_config, each member as genome.<name>: a string, a
 * number (an integer when integral), or an array of strings or of numbers
 * (integers when all are integral). */
static int integral(double x) { return isfinite(x) && x == floor(x) && fabs(x) < 9007199254740992.0; }

static mg_status write_genome(conv *cv, mg_writer *w, const char *json) {
    mg_status st = MG_OK;
    cJSON *g = cJSON_Parse(json);
    if (!g) return mg__err(cv->err, cv->errlen, MG_E_NOMEM, "out of memory");
    const cJSON *it;
    char key[96];
    cJSON_ArrayForEach(it, g) {
        const char *name = it->string;
        int ok = name && *name && strlen(name) < 64;
        for (const char *p = name; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok) {
            st = mg__err(cv->err, cv->errlen, MG_E_MODEL_FORMAT,
                         "config.json genome_config: member name '%.40s' (a-z, 0-9, _)",
                         name ? name : "");
            break;
        }
        snprintf(key, sizeof key, "genome.%s", name);
        int n = cJSON_GetArraySize(it);
        if (cJSON_IsString(it)) st = mg_writer_set_string(w, key, it->valuestring);
        else if (cJSON_IsNumber(it))
            st = integral(it->valuedouble) ? mg_writer_set_int(w, key, (int64_t)it->valuedouble)
                                           : mg_writer_set_float(w, key, it->valuedouble);
        else if (cJSON_IsArray(it) && n > 0 && cJSON_IsString(cJSON_GetArrayItem(it, 0))) {
            const char **a = mg__calloc((size_t)n, sizeof *a);
            if (!a) { st = MG_E_NOMEM; break; }
            int i = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, it) {
                if (!cJSON_IsString(e)) break;
                a[i++] = e->valuestring;
            }
            st = i == n ? mg_writer_set_string_array(w, key, a, (uint64_t)n) : MG_E_MODEL_FORMAT;
            mg__free(a);
        } else if (cJSON_IsArray(it) && n > 0) {
            double *a = mg__calloc((size_t)n, sizeof *a);
            int64_t *ai = mg__calloc((size_t)n, sizeof *ai);
            if (!a || !ai) { mg__free(a); mg__free(ai); st = MG_E_NOMEM; break; }
            int i = 0, all_int = 1;
            const cJSON *e;
            cJSON_ArrayForEach(e, it) {
                if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) break;
                a[i] = e->valuedouble;
                all_int &= integral(a[i]);
                ai[i] = all_int ? (int64_t)a[i] : 0;
                i++;
            }
            if (i != n) st = MG_E_MODEL_FORMAT;
            else st = all_int ? mg_writer_set_int_array(w, key, ai, (uint64_t)n)
                              : mg_writer_set_float_array(w, key, a, (uint64_t)n);
            mg__free(a);
            mg__free(ai);
        } else st = MG_E_MODEL_FORMAT;
        if (st) {
            st = st == MG_E_MODEL_FORMAT
                     ? mg__err(cv->err, cv->errlen, st,
                               "config.json genome_config: %s must be a string, a number or a "
                               "non-empty array of strings or of finite numbers", name)
                     : mg__err(cv->err, cv->errlen, st, "%s", mg_writer_errmsg(w));
            break;
        }
    }
    cJSON_Delete(g);
    return st;
}

static mg_status write_config(conv *cv, mg_writer *w) {
    const mg__ccfg *c = &cv->cfg;
    mg_status st;
    W(mg_writer_set_int(w, "text.vocab_size", c->vocab));
    W(mg_writer_set_int(w, "text.hidden_size", c->hidden));
    W(mg_writer_set_int(w, "text.n_layers", c->layers));
    W(mg_writer_set_int(w, "text.n_heads", c->heads));
    W(mg_writer_set_int(w, "text.n_kv_heads", c->kv_heads));
    W(mg_writer_set_int(w, "text.head_dim", c->head_dim));
    W(mg_writer_set_int(w, "text.ffn_size", c->ffn));
    W(mg_writer_set_int(w, "text.context_length", c->ctx));
    W(mg_writer_set_int(w, "text.sliding_window", c->window));
    W(mg_writer_set_int(w, "text.sliding_window_pattern", c->pattern));
    W(mg_writer_set_int(w, "text.query_pre_attn_scalar", c->qpas));
    W(mg_writer_set_float(w, "text.rope_theta_local", c->theta_local));
    W(mg_writer_set_float(w, "text.rope_theta_global", c->theta_global));
    W(mg_writer_set_float(w, "text.rope_scaling_factor", c->rope_factor));
    W(mg_writer_set_float(w, "text.rms_norm_eps", c->eps));
    W(mg_writer_set_float(w, "text.attn_logit_softcap", c->attn_softcap));
    W(mg_writer_set_float(w, "text.final_logit_softcap", c->final_softcap));
    if (!c->has_vision) return MG_OK;
    W(mg_writer_set_int(w, "vision.image_size", c->v_image));
    W(mg_writer_set_int(w, "vision.patch_size", c->v_patch));
    W(mg_writer_set_int(w, "vision.n_layers", c->v_layers));
    W(mg_writer_set_int(w, "vision.hidden_size", c->v_hidden));
    W(mg_writer_set_int(w, "vision.ffn_size", c->v_ffn));
    W(mg_writer_set_int(w, "vision.n_heads", c->v_heads));
    W(mg_writer_set_float(w, "vision.layer_norm_eps", c->v_eps));
    W(mg_writer_set_int(w, "vision.tokens_per_image", c->mm_tokens));
    W(mg_writer_set_int(w, "image.size", c->img_size));
    W(mg_writer_set_string(w, "image.resample", c->img_resample));
    W(mg_writer_set_float(w, "image.rescale", c->img_rescale));
    W(mg_writer_set_float_array(w, "image.mean", c->img_mean, 3));
    W(mg_writer_set_float_array(w, "image.std", c->img_std, 3));
    return c->genome_json ? write_genome(cv, w, c->genome_json) : MG_OK;
}

static const char *base_name(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    const char *b = p;
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '/') b = p + i + 1;
    return b;
}

static mg_status sha_file(const mg__cfile *f, char hex[65], char *err, size_t errlen) {
    mg__sha256 h;
    mg__sha256_init(&h);
    size_t cap = (size_t)4 << 20;
    uint8_t *buf = mg__malloc(cap);
    if (!buf) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    uint64_t off = 0;
    while (off < f->size) {
        ssize_t r = pread(f->fd, buf, cap, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            mg__free(buf);
            return mg__err(err, errlen, MG_E_IO, "cannot read '%s'", f->path);
        }
        mg__sha256_update(&h, buf, (size_t)r);
        off += (uint64_t)r;
    }
    mg__free(buf);
    uint8_t d[32];
    mg__sha256_final(&h, d);
    mg__sha256_hex(d, hex);
    return MG_OK;
}

/* general.* keys: model card, converter, source files and their SHA-256. */
static mg_status write_general(conv *cv, mg_writer *w, const char *src, uint32_t flags,
                               const char *const *extra, size_t n_extra) {
    mg_status st;
    const char *name = NULL, *license = NULL, *version = NULL, *desc = NULL;
    if (cv->gguf) {
        const mg__gkv *kv;
        if ((kv = mg__csrc_kv(&cv->src, "general.name")) && kv->s) name = kv->s;
        if ((kv = mg__csrc_kv(&cv->src, "general.license")) && kv->s) license = kv->s;
        if ((kv = mg__csrc_kv(&cv->src, "general.version")) && kv->s) version = kv->s;
        if ((kv = mg__csrc_kv(&cv->src, "general.description")) && kv->s) desc = kv->s;
    }
    char lic[128] = "";
    if (!cv->gguf) { /* README.md front matter "license: x" */
        char path[4608], *txt = NULL;
        snprintf(path, sizeof path, "%s/README.md", src);
        if (mg__read_text_file(&txt, NULL, path, (size_t)16 << 20, NULL, 0) == MG_OK && txt) {
            if (!strncmp(txt, "---", 3)) {
                char *end = strstr(txt + 3, "\n---");
                char *l = strstr(txt, "\nlicense:");
                if (l && (!end || l < end)) {
                    l += 9;
                    while (*l == ' ') l++;
                    size_t k = 0;
                    while (l[k] && l[k] != '\n' && l[k] != '\r' && k + 1 < sizeof lic) k++;
                    memcpy(lic, l, k);
                    lic[k] = '\0';
                    if (mg__utf8_valid(lic, k) && k) license = lic;
                }
            }
            mg__free(txt);
        }
    }
    W(mg_writer_set_string(w, "general.architecture", "gemma3"));
    PUT(put_str(cv, w, "general.name", name ? name : base_name(src)));
    if (version) PUT(put_str(cv, w, "general.version", version));
    if (desc) PUT(put_str(cv, w, "general.description", desc));
    PUT(put_str(cv, w, "general.license", license ? license : "see the source model card"));
    char source[600];
    snprintf(source, sizeof source, "%s %s", cv->gguf ? "GGUF" : "Hugging Face", base_name(src));
    PUT(put_str(cv, w, "general.source", source));
    PUT(put_str(cv, w, "general.intended_use",
                "As stated by the source model card. Model output is not a "
                "diagnosis and needs review by a qualified professional."));
    W(mg_writer_set_string(w, "general.converter", CONVERTER_VERSION));
    size_t n = cv->src.n_files + n_extra;
    const char **names = mg__calloc(n ? n : 1, sizeof *names);
    char **sums = mg__calloc(n ? n : 1, sizeof *sums);
    st = names && sums ? MG_OK : mg__err(cv->err, cv->errlen, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        const char *path = i < cv->src.n_files ? cv->src.files[i].path : extra[i - cv->src.n_files];
        names[i] = base_name(path);
        if (!(sums[i] = mg__calloc(1, 65))) {
            st = mg__err(cv->err, cv->errlen, MG_E_NOMEM, "out of memory");
            break;
        }
        if (flags & MG_CONVERT_NO_CHECKSUMS) continue;
        if (i < cv->src.n_files) {
            st = sha_file(&cv->src.files[i], sums[i], cv->err, cv->errlen);
        } else {
            mg__csrc tmp;
            memset(&tmp, 0, sizeof tmp);
            uint32_t fi;
            st = mg__csrc_add_file(&tmp, path, &fi, cv->err, cv->errlen);
            if (!st) st = sha_file(&tmp.files[0], sums[i], cv->err, cv->errlen);
            mg__csrc_free(&tmp);
        }
    }
    if (!st) st = mg_writer_set_string_array(w, "general.source_files", names, n);
    if (!st && !(flags & MG_CONVERT_NO_CHECKSUMS))
        st = mg_writer_set_string_array(w, "general.source_sha256", (const char *const *)sums, n);
    if (st && !cv->err[0]) mg__err(cv->err, cv->errlen, st, "%s", mg_writer_errmsg(w));
    for (size_t i = 0; sums && i < n; i++) mg__free(sums[i]);
    mg__free(sums);
    mg__free(names);
    return st;
}

/* The output's tokenizer: the source's (or the override), padded to the
 * embedding's rows, its image ids checked against config.json; cv->tok stays
 * NULL when there is none. */
static mg_status load_tokenizer(conv *cv, const char *src, const char *override) {
    mg_tokenizer *tok = NULL, *pad = NULL;
    mg_status st = MG_OK;
    char path[4608];
    if (override || !cv->gguf) {
        if (override) snprintf(path, sizeof path, "%s", override);
        else snprintf(path, sizeof path, "%s/tokenizer.json", src);
        if (override || access(path, F_OK) == 0) {
            st = mg_tokenizer_load_json(&tok, path, cv->err, cv->errlen);
        }
    } else {
        st = mg__tokenizer_from_gguf(&tok, &cv->src, cv->err, cv->errlen);
        if (st == MG_E_NOT_FOUND) st = MG_OK;
    }
    if (st || !tok) return st;
    uint32_t n = mg_tokenizer_vocab_size(tok);
    if ((uint64_t)n > (uint64_t)cv->cfg.vocab) {
        mg_tokenizer_free(tok);
        return FAILC(cv, MG_E_MODEL_FORMAT,
                     "the tokenizer has %u tokens but the embedding only %" PRId64 " rows", n,
                     cv->cfg.vocab);
    }
    if ((uint64_t)n < (uint64_t)cv->cfg.vocab) {
        st = mg__tokenizer_pad(&pad, tok, (uint32_t)cv->cfg.vocab, cv->err, cv->errlen);
        mg_tokenizer_free(tok);
        if (st) return st;
        tok = pad;
    }
    const int64_t cfg_ids[3] = {cv->cfg.boi_id, cv->cfg.eoi_id, cv->cfg.image_id};
    const int32_t roles[3] = {MG_TOKEN_START_OF_IMAGE, MG_TOKEN_END_OF_IMAGE, MG_TOKEN_IMAGE};
    for (int i = 0; i < 3; i++) {
        int32_t r = mg_tokenizer_special(tok, roles[i]);
        if (cv->cfg.has_vision && cfg_ids[i] >= 0 && r >= 0 && r != cfg_ids[i]) {
            mg_tokenizer_free(tok);
            return FAILC(cv, MG_E_MODEL_FORMAT,
                         "config.json gives image token id %" PRId64 " where the tokenizer "
                         "has %d", cfg_ids[i], (int)r);
        }
    }
    cv->tok = tok;
    return MG_OK;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The new id of source id `old` after pruning, or -1 when it was dropped. */
static int64_t kept_id(const conv *cv, int64_t old) {
    if (!cv->keep_rows) return old;
    if (old < 0 || old > INT32_MAX) return -1;
    int32_t key = (int32_t)old;
    const int32_t *hit = bsearch(&key, cv->keep_rows, cv->n_keep, sizeof key, cmp_i32);
    return hit ? (int64_t)(hit - cv->keep_rows) : -1;
}

/* --prune-vocab: the tokenizer keeps what the corpus needs, the embedding
 * the rows of the kept ids (the source ids, as padding came first); the
 * vocabulary size and config.json's image ids follow. */
static mg_status prune_vocab(conv *cv, const char *corpus_path) {
    if (!cv->tok)
        return FAILC(cv, MG_E_INVALID_ARG,
                     "pruning the vocabulary needs a tokenizer, and the source has none "
                     "(give one with --tokenizer)");
    char *txt = NULL;
    size_t len = 0;
    mg_status st = mg__read_text_file(&txt, &len, corpus_path, (size_t)1 << 30, cv->err,
                                      cv->errlen);
    if (st == MG_E_NOT_FOUND)
        return FAILC(cv, MG_E_IO, "cannot open the corpus '%s': no such file", corpus_path);
    if (st) return st;
    mg_tokenizer *p = NULL;
    st = mg__tokenizer_prune(&p, &cv->keep_rows, &cv->n_keep, cv->tok, txt, len, cv->err,
                             cv->errlen);
    mg__free(txt);
    if (st) return st;
    mg_tokenizer_free(cv->tok);
    cv->tok = p;
    for (size_t i = 0; i < cv->n_p; i++)
        if (cv->p[i].kind == K_EMBD) cv->p[i].dims[1] = cv->n_keep;
    cv->cfg.vocab = cv->n_keep;
    cv->cfg.boi_id = kept_id(cv, cv->cfg.boi_id);
    cv->cfg.eoi_id = kept_id(cv, cv->cfg.eoi_id);
    cv->cfg.image_id = kept_id(cv, cv->cfg.image_id);
    return MG_OK;
}

/* Tokenizer, chat template and turn markers, generation eos ids. */
static mg_status write_tokenizer(conv *cv, mg_writer *w, const char *src) {
    mg_status st = MG_OK;
    char path[4608];
    const mg_tokenizer *tok = cv->tok;
    if (!tok) return MG_OK;
    if ((st = mg__tokenizer_write_meta(tok, w)))
        return mg__err(cv->err, cv->errlen, st, "%s", mg_writer_errmsg(w));
    if (mg_tokenizer_special(tok, MG_TOKEN_START_OF_TURN) >= 0 &&
        mg_tokenizer_special(tok, MG_TOKEN_END_OF_TURN) >= 0) {
        PUT(put_str(cv, w, "prompt.turn_user", "<start_of_turn>user\n"));
        PUT(put_str(cv, w, "prompt.turn_model", "<start_of_turn>model\n"));
        PUT(put_str(cv, w, "prompt.turn_end", "<end_of_turn>\n"));
    }
    /* chat template */
    char *tmpl = NULL;
    cJSON *tc = NULL;
    if (cv->gguf) {
        const mg__gkv *kv = mg__csrc_kv(&cv->src, "tokenizer.chat_template");
        if (kv && kv->s) tmpl = mg__strdup(kv->s);
    } else {
        char *txt = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/chat_template.jinja", src);
        if (mg__read_text_file(&txt, &len, path, (size_t)16 << 20, NULL, 0) == MG_OK &&
            mg__utf8_valid(txt, len))
            tmpl = txt;
        else
            mg__free(txt);
        snprintf(path, sizeof path, "%s/tokenizer_config.json", src);
        if (!tmpl && mg__read_text_file(&txt, &len, path, (size_t)64 << 20, NULL, 0) == MG_OK) {
            tc = cJSON_ParseWithLength(txt, len);
            mg__free(txt);
            const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
            if (cJSON_IsString(ct) && mg__utf8_valid(ct->valuestring, strlen(ct->valuestring)))
                tmpl = mg__strdup(ct->valuestring);
            cJSON_Delete(tc);
        }
    }
    if (tmpl) {
        st = mg_writer_set_string(w, "tokenizer.chat_template", tmpl);
        mg__free(tmpl);
        if (st) return mg__err(cv->err, cv->errlen, st, "%s", mg_writer_errmsg(w));
    }
    if (!cv->gguf) { /* generation_config.json eos_token_id: int or list */
        char *txt = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/generation_config.json", src);
        if (mg__read_text_file(&txt, &len, path, (size_t)1 << 20, NULL, 0) == MG_OK) {
            cJSON *g = cJSON_ParseWithLength(txt, len);
            mg__free(txt);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(g, "eos_token_id");
            int64_t ids[16];
            uint64_t n_ids = 0;
            if (cJSON_IsNumber(e)) ids[n_ids++] = (int64_t)e->valuedouble;
            const cJSON *x;
            if (cJSON_IsArray(e))
                cJSON_ArrayForEach(x, e) if (cJSON_IsNumber(x) && n_ids < 16) ids[n_ids++] = (int64_t)x->valuedouble;
            int ok = 1;
            for (uint64_t i = 0; i < n_ids; i++) ok &= ids[i] >= 0 && ids[i] < cv->src_vocab;
            cJSON_Delete(g);
            /* after pruning: the new ids; an eos token that was dropped can
             * never be generated, so it goes */
            uint64_t k = 0;
            for (uint64_t i = 0; ok && i < n_ids; i++)
                if ((ids[k] = kept_id(cv, ids[i])) >= 0) k++;
            if (k && ok) W(mg_writer_set_int_array(w, "generation.eos_ids", ids, k));
        }
    }
    return MG_OK;
}

/* ------------------------------------------------------------- tensors */

static mg_status stream_one(conv *cv, mg_writer *w, const plan *p, double *rms, double *rel) {
    const mg__ctensor *t = p->src;
    /* the token embedding of a pruned vocabulary: output row r is source row
     * keep_rows[r] (rows of the same width) */
    const int32_t *gather = p->kind == K_EMBD ? cv->keep_rows : NULL;
    uint64_t cols = p->dims[0], n = 1;
    for (uint32_t d = 0; d < p->n_dims; d++) n *= p->dims[d]; /* = t->n_elems unless gathered */
    uint64_t rows = n / cols;
    int ok = 0;
    uint64_t out_bytes = mg__dtype_bytes(p->dtype, n, &ok);
    uint64_t out_row = mg__dtype_bytes(p->dtype, cols, &ok);
    uint64_t src_row = mg__csrc_bytes(t->dtype, t->dims[0], &ok);
    if (!ok || out_bytes > SIZE_MAX) return FAILC(cv, MG_E_INTERNAL, "bad tensor size");
    uint64_t chunk = p->xform == XF_TRANSPOSE ? rows : CHUNK_ELEMS / cols;
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    /* source rows: the source's rows (dims[0] of the source), which equal ours
     * except for the transpose (whole tensor) and the patch reshape (whole
     * rows of ours are whole multiples of the source's rows). */
    uint64_t src_rows_per_out = cols / t->dims[0] ? cols / t->dims[0] : 1;
    if (p->xform == XF_TRANSPOSE) src_rows_per_out = 1;
    uint8_t *out = mg__malloc((size_t)(out_bytes ? out_bytes : 1));
    float *x = mg__malloc((size_t)(chunk * cols) * sizeof *x);
    float *y = p->xform == XF_TRANSPOSE || p->dtype != MG_DTYPE_F32
                   ? mg__malloc((size_t)(chunk * cols) * sizeof *y) : NULL;
    void *scratch = mg__malloc((size_t)(chunk * cols / t->dims[0] * src_row) + 64);
    mg_status st = MG_OK;
    if (!out || !x || !scratch || (!y && (p->xform == XF_TRANSPOSE || p->dtype != MG_DTYPE_F32))) {
        st = FAILC(cv, MG_E_NOMEM, "out of memory for tensor '%s'", p->name);
        goto done;
    }
    double sd = 0, sx = 0;
    for (uint64_t r0 = 0; r0 < rows; r0 += chunk) {
        uint64_t nr = rows - r0 < chunk ? rows - r0 : chunk, ne = nr * cols;
        uint64_t sr0 = p->xform == XF_TRANSPOSE ? 0 : r0 * src_rows_per_out;
        uint64_t snr = p->xform == XF_TRANSPOSE ? t->n_elems / t->dims[0] : nr * src_rows_per_out;
        for (uint64_t k = 0; gather && k < nr;) { /* runs of consecutive source rows */
            uint64_t s0 = (uint64_t)gather[r0 + k], run = 1;
            while (k + run < nr && (uint64_t)gather[r0 + k + run] == s0 + run) run++;
            if ((st = mg__csrc_read_rows(&cv->src, t, s0, run, x + k * cols, scratch, cv->err,
                                         cv->errlen)))
                goto done;
            k += run;
        }
        if (!gather &&
            (st = mg__csrc_read_rows(&cv->src, t, sr0, snr, x, scratch, cv->err, cv->errlen)))
            goto done;
        float *v = x;
        if (p->xform == XF_MINUS_ONE) {
            for (uint64_t i = 0; i < ne; i++) x[i] = x[i] - 1.0f;
        } else if (p->xform == XF_TRANSPOSE) { /* source [a fastest, b] -> ours [b, a] */
            uint64_t a = t->dims[0], b = t->dims[1];
            for (uint64_t i = 0; i < b; i++)
                for (uint64_t j = 0; j < a; j++) y[j * b + i] = x[i * a + j];
            v = y;
        }
        for (uint64_t i = 0; i < ne; i++)
            if (!isfinite(v[i])) {
                st = FAILC(cv, MG_E_MODEL_FORMAT, "tensor '%.200s' holds a NaN or infinity",
                           t->name);
                goto done;
            }
        uint8_t *dst = out + r0 * out_row;
        if (p->dtype == MG_DTYPE_F32) {
            memcpy(dst, v, (size_t)ne * sizeof(float));
            continue;
        }
        if (mg__quantize(p->dtype, dst, v, ne) != 0) {
            st = FAILC(cv, MG_E_INTERNAL, "cannot quantize '%s'", p->name);
            goto done;
        }
        float *back = v == y ? x : y;
        mg__dequantize(p->dtype, back, dst, ne);
        for (uint64_t i = 0; i < ne; i++) {
            double d = (double)v[i] - (double)back[i];
            sd += d * d;
            sx += (double)v[i] * (double)v[i];
        }
    }
    *rms = n ? sqrt(sd / (double)n) : 0;
    *rel = sx > 0 ? sqrt(sd / sx) : 0;
    if ((st = mg_writer_write_tensor(w, p->name, out, out_bytes)))
        st = mg__err(cv->err, cv->errlen, st, "%s", mg_writer_errmsg(w));
done:
    mg__free(out);
    mg__free(x);
    mg__free(y);
    mg__free(scratch);
    return st;
}

/* ------------------------------------------------------------- API */

MG_API void mg_convert_params_init(mg_convert_params *params) {
    if (!params) return;
    mg_convert_params d = MG_CONVERT_PARAMS_INIT;
    *params = d;
}

MG_API mg_status mg_convert(const char *src, const char *out_path,
                            const mg_convert_params *params, char *err, size_t errlen) {
    char dummy[8];
    if (!err || !errlen) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    if (!src || !out_path || !*src || !*out_path)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "src or out_path is NULL or empty");
    mg_convert_params p = MG_CONVERT_PARAMS_INIT;
    if (params) {
        if (params->struct_size < sizeof(uint32_t) * 2 || params->struct_size > (1u << 16))
            return mg__err(err, errlen, MG_E_INVALID_ARG, "params->struct_size is invalid");
        if (params->struct_size > sizeof p &&
            mg__opts_newer_byte(params, params->struct_size, sizeof p))
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "mg_convert_params sets fields this version (%s) does not know",
                           MG_VERSION_STRING);
        size_t n = params->struct_size < sizeof p ? params->struct_size : sizeof p;
        memcpy(&p, params, n);
        p.struct_size = sizeof p;
    }
    if (p.dtype != MG_CONVERT_DTYPE_SOURCE && !mg_dtype_name(p.dtype))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown dtype %d", (int)p.dtype);
    if (p.flags & ~(uint32_t)(MG_CONVERT_COMPRESS | MG_CONVERT_NO_CHECKSUMS))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown flags 0x%x", p.flags);
    mg_status st = check_meta(p.meta, p.n_meta, err, errlen);
    if (st) return st;
    if (p.prune_vocab && !*p.prune_vocab)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "prune_vocab is an empty path");
    struct stat sb;
    if (stat(src, &sb) != 0) {
        char eb[128];
        return mg__err(err, errlen, MG_E_IO, "cannot open '%s': %s", src,
                       strerror_r(errno, eb, sizeof eb));
    }
    conv cv;
    memset(&cv, 0, sizeof cv);
    cv.err = err;
    cv.errlen = errlen;
    cv.meta = p.meta;
    cv.n_meta = p.n_meta;
    mg_writer *w = NULL;
    if (p.n_meta && !(cv.meta_done = mg__calloc(p.n_meta, 1))) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        if (p.mmproj) {
            st = mg__err(err, errlen, MG_E_INVALID_ARG,
                         "--mmproj is for GGUF sources; a Hugging Face folder holds its vision "
                         "tower itself");
            goto done;
        }
        if ((st = mg__cfg_from_hf(&cv.cfg, src, err, errlen)) ||
            (st = mg__st_open_dir(&cv.src, src, err, errlen)) || (st = plan_hf(&cv)))
            goto done;
    } else {
        cv.gguf = 1;
        if ((st = mg__gguf_add_file(&cv.src, src, err, errlen))) goto done;
        if (p.mmproj && (st = mg__gguf_add_file(&cv.src, p.mmproj, err, errlen))) goto done;
        if ((st = mg__csrc_index(&cv.src, err, errlen)) ||
            (st = mg__cfg_from_gguf(&cv.cfg, &cv.src, p.mmproj != NULL, err, errlen)))
            goto done;
        const mg__ctensor *e = mg__csrc_find(&cv.src, "token_embd.weight");
        if (!e || e->n_dims != 2) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "GGUF: no 2-D token_embd.weight");
            goto done;
        }
        cv.cfg.vocab = (int64_t)e->dims[1];
        if ((st = plan_text(&cv, "")) || (cv.cfg.has_vision && (st = plan_vision(&cv, "", ""))))
            goto done;
    }
    if (!cv.cfg.tied) {
        st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                     "untied output projections (tie_word_embeddings = false) are not supported");
        goto done;
    }
    if ((st = check_unused(&cv))) goto done;
    for (size_t i = 0; i < cv.n_p; i++) {
        plan *q = &cv.p[i];
        q->dtype = choose_dtype(q, p.dtype);
        /* dtypes kept, or a quantized type asked of rows that cannot hold
         * it: an f16 matrix that bf16 holds exactly is stored as bf16 (no
         * value changes; prefill and the image encoder multiply bf16 on
         * their tile path, f16 through dequantized tiles) */
        int exact = 0;
        int kept = p.dtype == MG_CONVERT_DTYPE_SOURCE ||
                   ((p.dtype == MG_DTYPE_Q8_0 || p.dtype == MG_DTYPE_Q4_0) && q->dims[0] % 32);
        if (kept && q->dtype == MG_DTYPE_F16 &&
            q->src->dtype == MG_DTYPE_F16 && q->xform != XF_MINUS_ONE &&
            (q->kind == K_MAT || q->kind == K_EMBD)) {
            if ((st = f16_fits_bf16(&cv, q->src, &exact))) goto done;
            if (exact) q->dtype = MG_DTYPE_BF16;
        }
    }
    cv.src_vocab = cv.cfg.vocab;
    if ((st = load_tokenizer(&cv, src, p.tokenizer)) ||
        (p.prune_vocab && (st = prune_vocab(&cv, p.prune_vocab))))
        goto done;
    if ((st = mg_writer_open(&w, out_path, (p.flags & MG_CONVERT_COMPRESS) ? MG_WRITE_COMPRESS : 0,
                             err, errlen)))
        goto done;
    /* the other files the conversion read */
    const char *extra[8];
    char extra_buf[6][4608];
    size_t n_extra = 0;
    if (!cv.gguf) {
        static const char *const names[6] = {
            "config.json", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "generation_config.json", "preprocessor_config.json"};
        for (int i = 0; i < 6; i++) {
            if (i == 2 && p.tokenizer) continue;
            snprintf(extra_buf[i], sizeof extra_buf[i], "%s/%s", src, names[i]);
            if (access(extra_buf[i], R_OK) == 0) extra[n_extra++] = extra_buf[i];
        }
    }
    if (p.tokenizer) extra[n_extra++] = p.tokenizer;
    if (p.prune_vocab) extra[n_extra++] = p.prune_vocab;
    if ((st = write_general(&cv, w, src, p.flags, extra, n_extra)) ||
        (st = write_config(&cv, w)) ||
        (st = write_tokenizer(&cv, w, src)) ||
        (st = put_meta_rest(&cv, w)))
        goto done;
    mg_tokenizer_free(cv.tok); /* written; its memory is not needed while streaming */
    cv.tok = NULL;
    for (size_t i = 0; i < cv.n_p; i++)
        if ((st = mg_writer_add_tensor(w, cv.p[i].name, cv.p[i].dtype, cv.p[i].n_dims,
                                       cv.p[i].dims, 0))) {
            mg__err(err, errlen, st, "%s", mg_writer_errmsg(w));
            goto done;
        }
    for (size_t i = 0; i < cv.n_p; i++) {
        double rms = 0, rel = 0;
        if ((st = stream_one(&cv, w, &cv.p[i], &rms, &rel))) goto done;
        if (p.progress && p.progress(p.user_data, cv.p[i].name, cv.p[i].dtype, i, cv.n_p, rms, rel)) {
            st = mg__err(err, errlen, MG_E_INTERRUPTED, "stopped by the progress callback");
            goto done;
        }
    }
    if ((st = mg_writer_finish(w))) mg__err(err, errlen, st, "%s", mg_writer_errmsg(w));
done:
    mg_writer_free(w); /* removes an unfinished file */
    cJSON_free(cv.cfg.genome_json);
    mg__csrc_free(&cv.src);
    mg__free(cv.p);
    mg_tokenizer_free(cv.tok);
    mg__free(cv.keep_rows);
    mg__free(cv.meta_done);
    return st;
}
