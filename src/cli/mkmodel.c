/* mkmodel.c - `medgemini mkmodel`: writes a model with random weights in the
 * tensor layout of docs/MODEL_KEYS.md, for tests and benchmarks. Weights are
 * drawn per tensor from a generator seeded by (seed, tensor name), so the
 * file does not depend on write order. */
#include "medgemini.h"

#include <inttypes.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct shape {
    const char *name;
    const char *desc;
    /* text decoder */
    int64_t vocab, hidden, layers, heads, kv_heads, head_dim, ffn, ctx;
    int64_t window, pattern, query_pre_attn_scalar;
    double rope_local, rope_global, rope_scale, eps, final_softcap;
    /* image encoder (layers = 0: none) */
    int64_t v_image, v_patch, v_layers, v_hidden, v_ffn, v_heads, v_tokens;
    double attn_softcap; /* last, left out of the table: 0 unless --attn-softcap */
} shape;

static const shape k_shapes[] = {
    {"tiny", "small random model for tests",
     512, 64, 2, 4, 2, 16, 128, 512, 32, 6, 16, 10000, 1000000, 8, 1e-6, 0,
     64, 8, 2, 64, 128, 4, 16, 0},
    {"gemma3-1b", "Gemma 3 1B text decoder shape",
     262144, 1152, 26, 4, 1, 256, 6912, 32768, 512, 6, 256, 10000, 1000000, 1, 1e-6, 0,
     0, 0, 0, 0, 0, 0, 0, 0},
    {"medgemma-4b", "MedGemma 4B shape: Gemma 3 4B decoder + 896 px image encoder",
     262208, 2560, 34, 8, 4, 256, 10240, 131072, 1024, 6, 256, 10000, 1000000, 8, 1e-6, 0,
     896, 14, 27, 1152, 4304, 16, 256, 0},
    {"gemma3-12b", "Gemma 3 12B shape",
     262208, 3840, 48, 16, 8, 256, 15360, 131072, 1024, 6, 256, 10000, 1000000, 8, 1e-6, 0,
     896, 14, 27, 1152, 4304, 16, 256, 0},
    {"gemma3-27b", "Gemma 3 27B shape",
     262208, 5376, 62, 32, 16, 128, 21504, 131072, 1024, 6, 168, 10000, 1000000, 8, 1e-6, 0,
     896, 14, 27, 1152, 4304, 16, 256, 0},
};

void cli_print_quoted(FILE *f, const char *s, size_t max) {
    size_t n = strlen(s);
    fputc('"', f);
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    if (n > max) fprintf(f, "...(%zu bytes)", n);
}

/* splitmix64 seeded from (seed, name): per-tensor reproducible streams. */
static uint64_t hash_name(uint64_t seed, const char *s) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct gen {
    mg_writer *w;
    int32_t dtype;      /* for matrices */
    uint64_t seed;
    int failed;
} gen;

/* Declares (pass 0) or writes (pass 1) one tensor of uniform values in
 * [center - a, center + a] with a = std * sqrt(3). */
static void tensor(gen *g, int pass, const char *name, uint32_t n_dims,
                   uint64_t d0, uint64_t d1, float center, float stddev) {
    if (g->failed) return;
    uint64_t dims[2] = {d0, d1};
    int32_t dt = MG_DTYPE_F32;
    if (n_dims == 2) {
        dt = g->dtype;
        /* Block types need whole blocks per row; such rows fall back to f16. */
        if ((dt == MG_DTYPE_Q8_0 || dt == MG_DTYPE_Q4_0) && d0 % 32) dt = MG_DTYPE_F16;
    }
    mg_status st;
    if (pass == 0) {
        st = mg_writer_add_tensor(g->w, name, dt, n_dims, dims, 0);
    } else {
        uint64_t n = d0 * (n_dims == 2 ? d1 : 1);
        float *buf = malloc(n * sizeof *buf);
        if (!buf) {
            fprintf(stderr, "medgemini mkmodel: out of memory for %s\n", name);
            g->failed = 1;
            return;
        }
        uint64_t x = hash_name(g->seed, name);
        float a = stddev * 1.7320508f;
        for (uint64_t i = 0; i < n; i++) {
            float u = (float)((splitmix(&x) >> 40) * (1.0 / 8388608.0) - 1.0);
            buf[i] = center + a * u;
        }
        st = mg_writer_write_tensor_f32(g->w, name, buf, n);
        free(buf);
    }
    if (st != MG_OK) {
        fprintf(stderr, "medgemini mkmodel: %s: %s\n", name, mg_writer_errmsg(g->w));
        g->failed = 1;
    }
}

static void all_tensors(gen *g, int pass, const shape *s, int vision) {
    char nm[128];
    const float wstd = 0.02f;
    int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    tensor(g, pass, "text.token_embd", 2, (uint64_t)s->hidden, (uint64_t)s->vocab, 0, wstd);
    for (int64_t l = 0; l < s->layers; l++) {
#define T2(suffix, a, b) snprintf(nm, sizeof nm, "text.blk.%" PRId64 "." suffix, l), \
                         tensor(g, pass, nm, 2, (uint64_t)(a), (uint64_t)(b), 0, wstd)
#define T1(suffix, a) snprintf(nm, sizeof nm, "text.blk.%" PRId64 "." suffix, l), \
                      tensor(g, pass, nm, 1, (uint64_t)(a), 1, 0, 0.1f)
        T1("attn_norm", s->hidden);
        T2("attn_q", s->hidden, q);
        T2("attn_k", s->hidden, kv);
        T2("attn_v", s->hidden, kv);
        T1("attn_q_norm", s->head_dim);
        T1("attn_k_norm", s->head_dim);
        T2("attn_output", q, s->hidden);
        T1("post_attn_norm", s->hidden);
        T1("ffn_norm", s->hidden);
        T2("ffn_gate", s->hidden, s->ffn);
        T2("ffn_up", s->hidden, s->ffn);
        T2("ffn_down", s->ffn, s->hidden);
        T1("post_ffn_norm", s->hidden);
#undef T1
#undef T2
    }
    tensor(g, pass, "text.output_norm", 1, (uint64_t)s->hidden, 1, 0, 0.1f);
    if (!vision) return;
    int64_t np = (s->v_image / s->v_patch) * (s->v_image / s->v_patch);
    int64_t pd = s->v_patch * s->v_patch * 3;
    tensor(g, pass, "vision.patch_embd", 2, (uint64_t)pd, (uint64_t)s->v_hidden, 0, wstd);
    tensor(g, pass, "vision.patch_embd_bias", 1, (uint64_t)s->v_hidden, 1, 0, wstd);
    tensor(g, pass, "vision.pos_embd", 2, (uint64_t)s->v_hidden, (uint64_t)np, 0, wstd);
    for (int64_t l = 0; l < s->v_layers; l++) {
#define V2(suffix, a, b) snprintf(nm, sizeof nm, "vision.blk.%" PRId64 "." suffix, l), \
                         tensor(g, pass, nm, 2, (uint64_t)(a), (uint64_t)(b), 0, wstd)
#define V1(suffix, a, c, sd) snprintf(nm, sizeof nm, "vision.blk.%" PRId64 "." suffix, l), \
                             tensor(g, pass, nm, 1, (uint64_t)(a), 1, c, sd)
        V1("ln1", s->v_hidden, 1.0f, 0.1f);
        V1("ln1_bias", s->v_hidden, 0, wstd);
        V2("attn_q", s->v_hidden, s->v_hidden);
        V1("attn_q_bias", s->v_hidden, 0, wstd);
        V2("attn_k", s->v_hidden, s->v_hidden);
        V1("attn_k_bias", s->v_hidden, 0, wstd);
        V2("attn_v", s->v_hidden, s->v_hidden);
        V1("attn_v_bias", s->v_hidden, 0, wstd);
        V2("attn_output", s->v_hidden, s->v_hidden);
        V1("attn_output_bias", s->v_hidden, 0, wstd);
        V1("ln2", s->v_hidden, 1.0f, 0.1f);
        V1("ln2_bias", s->v_hidden, 0, wstd);
        V2("ffn_up", s->v_hidden, s->v_ffn);
        V1("ffn_up_bias", s->v_ffn, 0, wstd);
        V2("ffn_down", s->v_ffn, s->v_hidden);
        V1("ffn_down_bias", s->v_hidden, 0, wstd);
#undef V1
#undef V2
    }
    tensor(g, pass, "vision.post_ln", 1, (uint64_t)s->v_hidden, 1, 1.0f, 0.1f);
    tensor(g, pass, "vision.post_ln_bias", 1, (uint64_t)s->v_hidden, 1, 0, wstd);
    tensor(g, pass, "mm.soft_emb_norm", 1, (uint64_t)s->v_hidden, 1, 0, 0.1f);
    tensor(g, pass, "mm.input_proj", 2, (uint64_t)s->v_hidden, (uint64_t)s->hidden, 0, wstd);
}

/* A placeholder vocabulary with the special tokens at their Gemma 3 ids when
 * the vocabulary is large enough, byte-fallback tokens, and filler pieces. */
static const char *const k_merges[] = {
    "\xe2\x96\x81 t", "h e", "\xe2\x96\x81t he", "i n", "e r", "o n", "a n", "r e",
};
static const char *const k_merge_out[] = {
    "\xe2\x96\x81t", "he", "\xe2\x96\x81the", "in", "er", "on", "an", "re",
};

static int write_vocab(mg_writer *w, const shape *s) {
    int64_t V = s->vocab;
    /* the small pieces and merges only fit between the bytes and the turn
     * markers when the vocabulary is small (ids 265...) */
    int64_t n_merges = (int64_t)(sizeof k_merges / sizeof k_merges[0]);
    int small_pieces = V >= 265 + 1 + 94 + n_merges && V < 262145;
    if (!small_pieces) n_merges = -95; /* no piece range at all */
    char **tok = calloc((size_t)V, sizeof *tok);
    int64_t *type = calloc((size_t)V, sizeof *type);
    int ok = tok && type;
    int big = V >= 262145;
    int64_t id_sot = big ? 105 : 4, id_eot = big ? 106 : 5;
    int64_t id_boi = big ? 255999 : 6, id_eoi = big ? 256000 : 7;
    int64_t id_img = big ? 262144 : 8;
    int64_t byte0 = big ? 300 : 9; /* clear of the turn markers at 105/106 */
    for (int64_t i = 0; ok && i < V; i++) {
        char b[32];
        const char *t = NULL;
        int64_t ty = 1; /* normal */
        if (i == 0) t = "<pad>", ty = 3;
        else if (i == 1) t = "<eos>", ty = 3;
        else if (i == 2) t = "<bos>", ty = 3;
        else if (i == 3) t = "<unk>", ty = 2;
        else if (i == id_sot) t = "<start_of_turn>", ty = 3;
        else if (i == id_eot) t = "<end_of_turn>", ty = 3;
        else if (i == id_boi) t = "<start_of_image>", ty = 3;
        else if (i == id_eoi) t = "<end_of_image>", ty = 3;
        else if (i == id_img) t = "<image_soft_token>", ty = 3;
        else if (i >= byte0 && i < byte0 + 256) {
            snprintf(b, sizeof b, "<0x%02X>", (unsigned)(i - byte0));
            ty = 6; /* byte */
        } else if (i >= 265 && i < 265 + 1 + 94 + n_merges) {
            /* "▁", printable ASCII, then the merges' results */
            int64_t k = i - 265;
            if (k == 0) t = "\xe2\x96\x81";
            else if (k <= 94) b[0] = (char)(0x20 + k), b[1] = '\0';
            else t = k_merge_out[k - 95];
        } else snprintf(b, sizeof b, "<unused%" PRId64 ">", i);
        tok[i] = strdup(t ? t : b);
        type[i] = ty;
        if (!tok[i]) ok = 0;
    }
    mg_status st = MG_E_NOMEM;
    if (ok) {
        st = mg_writer_set_string(w, "tokenizer.model", "bpe");
        if (!st && small_pieces)
            st = mg_writer_set_string_array(w, "tokenizer.merges", k_merges, (uint64_t)n_merges);
        if (!st) st = mg_writer_set_string_array(w, "tokenizer.tokens", (const char *const *)tok, (uint64_t)V);
        if (!st) st = mg_writer_set_int_array(w, "tokenizer.token_type", type, (uint64_t)V);
        if (!st) st = mg_writer_set_int(w, "tokenizer.pad_id", 0);
        if (!st) st = mg_writer_set_int(w, "tokenizer.eos_id", 1);
        if (!st) st = mg_writer_set_int(w, "tokenizer.bos_id", 2);
        if (!st) st = mg_writer_set_int(w, "tokenizer.unk_id", 3);
        if (!st) st = mg_writer_set_int(w, "tokenizer.start_of_turn_id", id_sot);
        if (!st) st = mg_writer_set_int(w, "tokenizer.end_of_turn_id", id_eot);
        if (!st && s->v_layers) st = mg_writer_set_int(w, "tokenizer.start_of_image_id", id_boi);
        if (!st && s->v_layers) st = mg_writer_set_int(w, "tokenizer.end_of_image_id", id_eoi);
        if (!st && s->v_layers) st = mg_writer_set_int(w, "tokenizer.image_token_id", id_img);
    }
    for (int64_t i = 0; tok && i < V; i++) free(tok[i]);
    free(tok);
    free(type);
    return st == MG_OK ? 0 : -1;
}

static int write_meta(mg_writer *w, const shape *s, int vision, const char *dtype) {
    mg_status st = MG_OK;
#define SI(k, v) if (!st) st = mg_writer_set_int(w, k, (int64_t)(v))
#define SF(k, v) if (!st) st = mg_writer_set_float(w, k, (double)(v))
#define SS(k, v) if (!st) st = mg_writer_set_string(w, k, v)
    char name[128];
    snprintf(name, sizeof name, "random-%s-%s", s->name, dtype);
    SS("general.architecture", "gemma3");
    SS("general.name", name);
    SS("general.version", "1");
    SS("general.license", "CC0-1.0 (random weights)");
    SS("general.source", "medgemini mkmodel");
    SS("general.intended_use",
       "Software testing and benchmarking only. Random weights: the output is "
       "meaningless and must never be used for any clinical purpose.");
    SS("general.description", s->desc);
    SI("text.vocab_size", s->vocab);
    SI("text.hidden_size", s->hidden);
    SI("text.n_layers", s->layers);
    SI("text.n_heads", s->heads);
    SI("text.n_kv_heads", s->kv_heads);
    SI("text.head_dim", s->head_dim);
    SI("text.ffn_size", s->ffn);
    SI("text.context_length", s->ctx);
    SI("text.sliding_window", s->window);
    SI("text.sliding_window_pattern", s->pattern);
    SI("text.query_pre_attn_scalar", s->query_pre_attn_scalar);
    SF("text.rope_theta_local", s->rope_local);
    SF("text.rope_theta_global", s->rope_global);
    SF("text.rope_scaling_factor", s->rope_scale);
    SF("text.rms_norm_eps", s->eps);
    SF("text.final_logit_softcap", s->final_softcap);
    SF("text.attn_logit_softcap", s->attn_softcap);
    SS("prompt.turn_user", "<start_of_turn>user\n");
    SS("prompt.turn_model", "<start_of_turn>model\n");
    SS("prompt.turn_end", "<end_of_turn>\n");
    SS("prompt.system_default", "You are an expert radiologist.");
    SS("prompt.report_instruction", "Describe this X-ray.");
    if (vision) {
        const double mean[3] = {0.5, 0.5, 0.5}, stdv[3] = {0.5, 0.5, 0.5};
        SI("vision.image_size", s->v_image);
        SI("vision.patch_size", s->v_patch);
        SI("vision.n_layers", s->v_layers);
        SI("vision.hidden_size", s->v_hidden);
        SI("vision.ffn_size", s->v_ffn);
        SI("vision.n_heads", s->v_heads);
        SF("vision.layer_norm_eps", 1e-6);
        SI("vision.tokens_per_image", s->v_tokens);
        SI("image.size", s->v_image);
        SS("image.resample", "bilinear");
        SF("image.rescale", 1.0 / 255.0);
        if (!st) st = mg_writer_set_float_array(w, "image.mean", mean, 3);
        if (!st) st = mg_writer_set_float_array(w, "image.std", stdv, 3);
    }
#undef SI
#undef SF
#undef SS
    if (st != MG_OK) return -1;
    return write_vocab(w, s);
}

/* --genome T,C: a genomics encoder's metadata (docs/POLYGENIC.md) over the
 * image encoder: traits t0.., thresholds p0.., reference mean 0.01 k and
 * standard deviation 1 + 0.1 (k mod 5) for score k, the smallest square
 * grid whose side divides the image size, answers "Y" / "N" (one token
 * each in the small vocabulary). */
static int write_genome(mg_writer *w, const shape *s, int64_t T, int64_t C) {
    int64_t S = s->v_image, g = 1;
    while (g <= S && (g * g < T || S % g)) g++;
    if (g > S) {
        fprintf(stderr, "medgemini mkmodel: --genome: %" PRId64 " traits do not fit a square grid "
                "dividing the image size %" PRId64 "\n", T, S);
        return -2;
    }
    char **names = calloc((size_t)(T + C), sizeof *names);
    double *ms = calloc((size_t)(2 * T * C), sizeof *ms);
    int ok = names && ms;
    for (int64_t i = 0; ok && i < T + C; i++) {
        char b[32];
        snprintf(b, sizeof b, i < T ? "t%" PRId64 : "p%" PRId64, i < T ? i : i - T);
        ok = (names[i] = strdup(b)) != NULL;
    }
    for (int64_t k = 0; ok && k < T * C; k++) {
        ms[k] = 0.01 * (double)k;
        ms[T * C + k] = 1.0 + 0.1 * (double)(k % 5);
    }
    mg_status st = ok ? MG_OK : MG_E_NOMEM;
    const int64_t grid[2] = {g, g};
    if (!st) st = mg_writer_set_string_array(w, "genome.traits", (const char *const *)names, (uint64_t)T);
    if (!st) st = mg_writer_set_string_array(w, "genome.thresholds", (const char *const *)names + T, (uint64_t)C);
    if (!st) st = mg_writer_set_float_array(w, "genome.reference_mean", ms, (uint64_t)(T * C));
    if (!st) st = mg_writer_set_float_array(w, "genome.reference_std", ms + T * C, (uint64_t)(T * C));
    if (!st) st = mg_writer_set_int_array(w, "genome.grid", grid, 2);
    if (!st) st = mg_writer_set_int(w, "genome.cell", S / g);
    if (!st) st = mg_writer_set_float(w, "genome.z_scale", 32.0);
    if (!st) st = mg_writer_set_string(w, "genome.answer_yes", "Y");
    if (!st) st = mg_writer_set_string(w, "genome.answer_no", "N");
    if (!st) st = mg_writer_set_string(w, "genome.question", "Does this individual have {outcome}?");
    for (int64_t i = 0; names && i < T + C; i++) free(names[i]);
    free(names);
    free(ms);
    return st == MG_OK ? 0 : -1;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_f64(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* Options that override one dimension of the named shape ("given shape"). */
typedef struct dim_opt { const char *flag; size_t offset; } dim_opt;
static const dim_opt k_dims[] = {
    {"--hidden", offsetof(shape, hidden)},     {"--heads", offsetof(shape, heads)},
    {"--kv-heads", offsetof(shape, kv_heads)}, {"--head-dim", offsetof(shape, head_dim)},
    {"--ffn", offsetof(shape, ffn)},           {"--vocab", offsetof(shape, vocab)},
    {"--context", offsetof(shape, ctx)},
};
#define N_DIMS (sizeof k_dims / sizeof k_dims[0])
static int64_t dim_val[N_DIMS];

static const dim_opt *find_dim(const char *flag) {
    for (size_t k = 0; k < N_DIMS; k++)
        if (!strcmp(k_dims[k].flag, flag)) return &k_dims[k];
    return NULL;
}

int cli_mkmodel(int argc, char **argv) {
    const char *out = NULL, *shape_name = "tiny", *dtype_name = "f32";
    int compress = 0, vision = 1;
    int64_t gtraits = 0, gthresh = 0;
    int64_t seed = 1, layers = -1, vlayers = -1, window = -1, pattern = -1;
    int64_t vimage = -1, vpatch = -1, vtokens = -1;
    double acap = -1, fcap = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG() do { if (!v) { fprintf(stderr, "medgemini mkmodel: %s needs a value\n", a); return 2; } i++; } while (0)
        if (!strcmp(a, "-o")) { NEED_ARG(); out = v; }
        else if (!strcmp(a, "--shape")) { NEED_ARG(); shape_name = v; }
        else if (!strcmp(a, "--dtype")) { NEED_ARG(); dtype_name = v; }
        else if (!strcmp(a, "--seed")) { NEED_ARG(); if (parse_i64(v, 0, INT64_MAX, &seed)) goto bad; }
        else if (!strcmp(a, "--layers")) { NEED_ARG(); if (parse_i64(v, 1, 1000, &layers)) goto bad; }
        else if (!strcmp(a, "--vision-layers")) { NEED_ARG(); if (parse_i64(v, 1, 1000, &vlayers)) goto bad; }
        else if (!strcmp(a, "--image-size")) { NEED_ARG(); if (parse_i64(v, 1, 8192, &vimage)) goto bad; }
        else if (!strcmp(a, "--patch")) { NEED_ARG(); if (parse_i64(v, 1, 8192, &vpatch)) goto bad; }
        else if (!strcmp(a, "--image-tokens")) { NEED_ARG(); if (parse_i64(v, 1, 65536, &vtokens)) goto bad; }
        else if (find_dim(a)) { NEED_ARG(); if (parse_i64(v, 1, 1 << 24, &dim_val[find_dim(a) - k_dims])) goto bad; }
        else if (!strcmp(a, "--window")) { NEED_ARG(); if (parse_i64(v, 1, INT32_MAX, &window)) goto bad; }
        else if (!strcmp(a, "--pattern")) { NEED_ARG(); if (parse_i64(v, 1, 1000, &pattern)) goto bad; }
        else if (!strcmp(a, "--attn-softcap")) { NEED_ARG(); if (parse_f64(v, 0, 1e6, &acap)) goto bad; }
        else if (!strcmp(a, "--final-softcap")) { NEED_ARG(); if (parse_f64(v, 0, 1e6, &fcap)) goto bad; }
        else if (!strcmp(a, "--compress")) compress = 1;
        else if (!strcmp(a, "--no-vision")) vision = 0;
        else if (!strcmp(a, "--genome")) {
            NEED_ARG();
            char gb[64];
            snprintf(gb, sizeof gb, "%s", v);
            char *comma = strchr(gb, ',');
            if (!comma) goto bad;
            *comma = '\0';
            if (parse_i64(gb, 1, 4096, &gtraits) || parse_i64(comma + 1, 1, 3, &gthresh)) goto bad;
        }
        else if (!strcmp(a, "--list-shapes")) {
            for (size_t k = 0; k < sizeof k_shapes / sizeof k_shapes[0]; k++)
                printf("%-12s %s\n", k_shapes[k].name, k_shapes[k].desc);
            return 0;
        } else {
            fprintf(stderr, "medgemini mkmodel: unknown option %s\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "medgemini mkmodel: bad value for %s: %s\n", a, v);
        return 2;
#undef NEED_ARG
    }
    if (!out) { fprintf(stderr, "medgemini mkmodel: -o OUT.mgm is required\n"); return 2; }
    const shape *sp = NULL;
    for (size_t k = 0; k < sizeof k_shapes / sizeof k_shapes[0]; k++)
        if (!strcmp(k_shapes[k].name, shape_name)) sp = &k_shapes[k];
    if (!sp) { fprintf(stderr, "medgemini mkmodel: unknown shape '%s' (see --list-shapes)\n", shape_name); return 2; }
    int32_t dtype = -1;
    for (int32_t d = 0; d <= MG_DTYPE_Q4_0; d++)
        if (mg_dtype_name(d) && !strcmp(mg_dtype_name(d), dtype_name)) dtype = d;
    if (dtype < 0) { fprintf(stderr, "medgemini mkmodel: unknown dtype '%s'\n", dtype_name); return 2; }

    shape s = *sp;
    if (layers > 0) s.layers = layers;
    if (vlayers > 0) s.v_layers = vlayers;
    if (vimage > 0) s.v_image = vimage;
    if (vpatch > 0) s.v_patch = vpatch;
    if (vtokens > 0) s.v_tokens = vtokens;
    if (s.v_layers) {
        int64_t g = s.v_patch ? s.v_image / s.v_patch : 0, side = 0;
        while ((side + 1) * (side + 1) <= s.v_tokens) side++;
        if (!g || s.v_image % s.v_patch || side * side != s.v_tokens || g % side ||
            s.v_hidden % s.v_heads) {
            fprintf(stderr, "medgemini mkmodel: inconsistent image encoder shape (image size a "
                    "multiple of the patch, image tokens a square dividing the patch grid)\n");
            return 2;
        }
    }
    if (window > 0) s.window = window;
    if (pattern > 0) s.pattern = pattern;
    if (acap >= 0) s.attn_softcap = acap;
    if (fcap >= 0) s.final_softcap = fcap;
    for (size_t k = 0; k < N_DIMS; k++)
        if (dim_val[k] > 0) memcpy((char *)&s + k_dims[k].offset, &dim_val[k], sizeof(int64_t));
    if (s.heads % s.kv_heads || s.head_dim % 2 || s.vocab < 9 + 256) {
        fprintf(stderr, "medgemini mkmodel: inconsistent shape (heads %% kv-heads, even head-dim, "
                "vocab >= 265)\n");
        return 2;
    }
    if (!s.v_layers) vision = 0;
    if (!vision) s.v_layers = 0;
    if (gtraits && !vision) {
        fprintf(stderr, "medgemini mkmodel: --genome needs the image encoder\n");
        return 2;
    }

    char err[512];
    mg_writer *w = NULL;
    mg_status st = mg_writer_open(&w, out, compress ? MG_WRITE_COMPRESS : 0, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini mkmodel: %s: %s (%s)\n", out, err, mg_status_str(st));
        return 1;
    }
    gen g = {w, dtype, (uint64_t)seed, 0};
    int mr = write_meta(w, &s, vision, dtype_name);
    if (!mr && gtraits) mr = write_genome(w, &s, gtraits, gthresh);
    if (mr) {
        const char *why = mg_writer_errmsg(w); /* "" when the failure was ours (memory) */
        if (mr != -2)
            fprintf(stderr, "medgemini mkmodel: metadata: %s\n",
                    *why ? why : mg_status_str(MG_E_NOMEM));
        mg_writer_free(w);
        return mr == -2 ? 2 : 1;
    }
    all_tensors(&g, 0, &s, vision);
    all_tensors(&g, 1, &s, vision);
    if (!g.failed && mg_writer_finish(w) != MG_OK) {
        fprintf(stderr, "medgemini mkmodel: %s\n", mg_writer_errmsg(w));
        g.failed = 1;
    }
    mg_writer_free(w);
    if (g.failed) return 1;
    fprintf(stderr, "medgemini mkmodel: wrote %s (shape %s, %s%s)\n", out, s.name,
            dtype_name, compress ? ", zstd" : "");
    return 0;
}
