/* check_decoder.c - the Gemma 3 text decoder (src/llm/decoder.c) against the
 * independent PyTorch reference tests/ref/gemma3_ref.py, plus consistency
 * (one batch vs token by token vs chunks), context limits, argument checks
 * and hostile model files.
 *
 * Tolerances, as max |ours - ref| / std(ref logits) over the compared rows:
 *  - every prefill (n > 1, mg__matmul on dequantized weights) and every
 *    f32/f16/bf16 decode step: 1e-3 (seen: ~1e-6; the reference runs in
 *    float64 on the same dequantized weights, so only f32 rounding and
 *    summation order differ);
 *  - q8_0/q4_0 decode steps (mg__matvec rounds the activation to 8 bits
 *    per 32-block): against the plain reference 0.15 (seen: 5-6e-2, the
 *    max over the vocabulary of a ~1.5% rms error); against the reference
 *    run with the same 8-bit activation rounding ("xq8_from") 0.15 for
 *    every step and 1e-3 for at least one (seen: ~1e-6, except after an
 *    element on a rounding boundary lands one step apart, which then stays
 *    in the KV cache: seen once, q4_0, 2.9e-2).
 * The reference needs /usr/bin/python3 with torch and numpy; without them
 * (or under valgrind, where the subprocess would be supervised too) the
 * comparisons are skipped with a note and only the pure-C tests run. */
#include "testutil.h"

#include "io/mgm.h"
#include "kernels/kernels.h"
#include "llm/decoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* States used with a pool of two threads. */
static const mg__dstate_opts k_two = {2, 0};

#define PY "/usr/bin/python3"

/* ============================================================ model writer */

typedef struct tcfg {
    int64_t vocab, hidden, layers, heads, kv, hd, ffn, ctx, window, pattern;
    double acap, fcap;
    int32_t dtype;
    /* hostile mutations */
    const char *skip_tensor;      /* not written */
    const char *bad_tensor;       /* written with out dims + 1 */
    const char *f16_tensor;       /* written as f16 (1-D norms must be f32) */
    const char *three_d_tensor;   /* written as [in, out, 2] */
    const char *meta_key;         /* override: omitted, or set to meta_val */
    int meta_omit, meta_as_string, meta_is_float;
    int64_t meta_val;
    double meta_fval;
} tcfg;

static tcfg small_cfg(int32_t dtype) {
    tcfg c = {512, 64, 3, 4, 2, 16, 128, 256, 8, 2, 0, 0, dtype,
              NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0};
    return c;
}

static uint64_t name_seed(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void put_int(mg_writer *w, const tcfg *c, const char *key, int64_t v) {
    if (c->meta_key && !strcmp(c->meta_key, key)) {
        if (c->meta_omit) return;
        if (c->meta_as_string) {
            ck_assert_int_eq(mg_writer_set_string(w, key, "12"), MG_OK);
            return;
        }
        if (c->meta_is_float) {
            ck_assert_int_eq(mg_writer_set_float(w, key, c->meta_fval), MG_OK);
            return;
        }
        v = c->meta_val;
    }
    ck_assert_int_eq(mg_writer_set_int(w, key, v), MG_OK);
}

static void put_float(mg_writer *w, const tcfg *c, const char *key, double v) {
    if (c->meta_key && !strcmp(c->meta_key, key)) {
        if (c->meta_omit) return;
        v = c->meta_is_float ? c->meta_fval : (double)c->meta_val;
    }
    ck_assert_int_eq(mg_writer_set_float(w, key, v), MG_OK);
}

typedef struct tdesc {
    char name[64];
    int32_t dtype;
    uint32_t n_dims;
    uint64_t dims[3];
    float center, stddev;
} tdesc;

static int list_tensors(const tcfg *c, tdesc *t) {
    int n = 0;
    int64_t q = c->heads * c->hd, kv = c->kv * c->hd;
#define ADD(nm, nd, d0, d1, ctr, sd) do { \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm); \
        t[n].n_dims = nd; t[n].dims[0] = (uint64_t)(d0); t[n].dims[1] = (uint64_t)(d1); \
        t[n].dims[2] = 1; t[n].center = ctr; t[n].stddev = sd; \
        t[n].dtype = nd == 2 ? c->dtype : MG_DTYPE_F32; n++; } while (0)
    ADD("text.token_embd", 2, c->hidden, c->vocab, 0, 0.02f);
    char nm[64];
    for (int64_t l = 0; l < c->layers; l++) {
#define L2(sfx, a, b) snprintf(nm, sizeof nm, "text.blk.%d." sfx, (int)l); ADD(nm, 2, a, b, 0, 0.02f)
#define L1(sfx, a) snprintf(nm, sizeof nm, "text.blk.%d." sfx, (int)l); ADD(nm, 1, a, 1, 0, 0.1f)
        L1("attn_norm", c->hidden);
        L2("attn_q", c->hidden, q);
        L2("attn_k", c->hidden, kv);
        L2("attn_v", c->hidden, kv);
        L1("attn_q_norm", c->hd);
        L1("attn_k_norm", c->hd);
        L2("attn_output", q, c->hidden);
        L1("post_attn_norm", c->hidden);
        L1("ffn_norm", c->hidden);
        L2("ffn_gate", c->hidden, c->ffn);
        L2("ffn_up", c->hidden, c->ffn);
        L2("ffn_down", c->ffn, c->hidden);
        L1("post_ffn_norm", c->hidden);
#undef L1
#undef L2
    }
    ADD("text.output_norm", 1, c->hidden, 1, 0, 0.1f);
#undef ADD
    return n;
}

/* Writes a model with the tensor layout of docs/MODEL_KEYS.md. */
static void write_model(const char *path, const tcfg *c) {
    char err[256];
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.architecture", "gemma3"), MG_OK);
    put_int(w, c, "text.vocab_size", c->vocab);
    put_int(w, c, "text.hidden_size", c->hidden);
    put_int(w, c, "text.n_layers", c->layers);
    put_int(w, c, "text.n_heads", c->heads);
    put_int(w, c, "text.n_kv_heads", c->kv);
    put_int(w, c, "text.head_dim", c->hd);
    put_int(w, c, "text.ffn_size", c->ffn);
    put_int(w, c, "text.context_length", c->ctx);
    put_int(w, c, "text.sliding_window", c->window);
    put_int(w, c, "text.sliding_window_pattern", c->pattern);
    put_int(w, c, "text.query_pre_attn_scalar", c->hd);
    put_float(w, c, "text.rope_theta_local", 10000.0);
    put_float(w, c, "text.rope_theta_global", 1000000.0);
    put_float(w, c, "text.rope_scaling_factor", 8.0);
    put_float(w, c, "text.rms_norm_eps", 1e-6);
    put_float(w, c, "text.attn_logit_softcap", c->acap);
    put_float(w, c, "text.final_logit_softcap", c->fcap);
    tdesc *t = calloc(2 + 13 * (size_t)c->layers, sizeof *t);
    ck_assert_ptr_nonnull(t);
    int n = list_tensors(c, t);
    for (int i = 0; i < n; i++) {
        if (c->skip_tensor && !strcmp(c->skip_tensor, t[i].name)) continue;
        if (c->bad_tensor && !strcmp(c->bad_tensor, t[i].name)) t[i].dims[t[i].n_dims - 1]++;
        if (c->f16_tensor && !strcmp(c->f16_tensor, t[i].name)) t[i].dtype = MG_DTYPE_F16;
        if (c->three_d_tensor && !strcmp(c->three_d_tensor, t[i].name)) {
            t[i].n_dims = 3;
            t[i].dims[2] = 2;
        }
        ck_assert_int_eq(mg_writer_add_tensor(w, t[i].name, t[i].dtype, t[i].n_dims,
                                              t[i].dims, 0), MG_OK);
    }
    for (int i = 0; i < n; i++) {
        if (c->skip_tensor && !strcmp(c->skip_tensor, t[i].name)) continue;
        uint64_t ne = t[i].dims[0] * t[i].dims[1] * t[i].dims[2];
        float *buf = malloc(ne * sizeof *buf);
        ck_assert_ptr_nonnull(buf);
        uint64_t seed = name_seed(t[i].name);
        for (uint64_t j = 0; j < ne; j++)
            buf[j] = t[i].center + 1.7320508f * t[i].stddev * tu_rand_f32(&seed);
        ck_assert_int_eq(mg_writer_write_tensor_f32(w, t[i].name, buf, ne), MG_OK);
        free(buf);
    }
    free(t);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
}

static const char *DTN[5] = {"f32", "f16", "bf16", "q8_0", "q4_0"};

/* A model from `medgemini mkmodel` (env MG_CLI) when available, else the
 * same layout from write_model. extra: mkmodel flags for the window config. */
static void make_model(const char *path, int32_t dtype, int window_cfg) {
    const char *cli = getenv("MG_CLI");
    if (cli && *cli && access(cli, X_OK) == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "%s mkmodel --shape tiny --no-vision --dtype %s %s -o %s 2>/dev/null",
                 cli, DTN[dtype],
                 window_cfg ? "--layers 3 --window 8 --pattern 2 --attn-softcap 5 "
                              "--final-softcap 3" : "",
                 path);
        ck_assert_msg(system(cmd) == 0, "mkmodel failed: %s", cmd);
        return;
    }
    tcfg c = small_cfg(dtype);
    if (window_cfg) {
        c.acap = 5;
        c.fcap = 3;
    } else {
        c.layers = 2; c.window = 32; c.pattern = 6; c.ctx = 512;
    }
    write_model(path, &c);
}

typedef struct loaded {
    mg__mgm *f;
    mg__decoder *d;
} loaded;

static loaded load(const char *path) {
    loaded m = {NULL, NULL};
    char err[512] = "";
    ck_assert_msg(mg__mgm_open(&m.f, path, 0, 0, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(mg__decoder_build(&m.d, m.f, err, sizeof err) == MG_OK, "%s", err);
    return m;
}

static void unload(loaded *m) {
    mg__decoder_free(m->d);
    mg__mgm_close(m->f);
}

/* ============================================================ reference */

static int ref_available(void) {
    static int avail = -1;
    if (avail < 0) {
        if (tu_under_valgrind()) avail = 0;
        else avail = system(PY " -c 'import torch, numpy' >/dev/null 2>&1") == 0;
        if (!avail)
            fprintf(stderr, "check_decoder: note: %s; reference comparisons skipped\n",
                    tu_under_valgrind() ? "under valgrind"
                                        : PY " with torch+numpy not available");
    }
    return avail;
}

/* Runs the reference on the whole sequence; returns n * vocab floats (caller
 * frees) or NULL when the reference is unavailable. embed_rows/embeds: rows
 * given as embeddings (n_emb rows of `hidden` floats). */
/* Set while a test wants the reference's bf16 keys and values. */
static int g_ref_kv_bf16;

static float *run_ref(const char *model, const int32_t *tok, const int32_t *blk,
                      uint32_t n, const uint32_t *embed_rows, uint32_t n_emb,
                      const float *embeds, uint32_t hidden, uint32_t vocab,
                      int xq8_from, int xbf16_until) {
    if (!ref_available()) return NULL;
    const char *req = tu_tmp_path("ref_req.json");
    const char *out = tu_tmp_path("ref_out.f32");
    const char *emb = tu_tmp_path("ref_emb.f32");
    char reqp[4096], outp[4096], embp[4096];
    snprintf(reqp, sizeof reqp, "%s", req);
    snprintf(outp, sizeof outp, "%s", out);
    snprintf(embp, sizeof embp, "%s", emb);
    FILE *f = fopen(reqp, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "{\"model\": \"%s\", \"out\": \"%s\", \"tokens\": [", model, outp);
    for (uint32_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", tok[i]);
    fprintf(f, "]");
    if (blk) {
        fprintf(f, ", \"blocks\": [");
        for (uint32_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", blk[i]);
        fprintf(f, "]");
    }
    if (n_emb) {
        ck_assert_int_eq(tu_write_file(embp, embeds, (size_t)n_emb * hidden * sizeof(float)), 0);
        fprintf(f, ", \"embeds\": \"%s\", \"embed_rows\": [", embp);
        for (uint32_t i = 0; i < n_emb; i++) fprintf(f, "%s%u", i ? "," : "", embed_rows[i]);
        fprintf(f, "]");
    }
    if (xq8_from >= 0) fprintf(f, ", \"xq8_from\": %d", xq8_from);
    if (xbf16_until >= 0) fprintf(f, ", \"xbf16_until\": %d", xbf16_until);
    if (g_ref_kv_bf16) fprintf(f, ", \"kv_bf16\": true");
    fprintf(f, "}\n");
    ck_assert_int_eq(fclose(f), 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, PY " tests/ref/gemma3_ref.py %s", reqp);
    ck_assert_msg(system(cmd) == 0, "reference failed: %s", cmd);
    size_t size = 0;
    float *r = (float *)tu_read_file(outp, &size);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(size, (size_t)n * vocab * sizeof(float));
    unlink(reqp);
    unlink(outp);
    if (n_emb) unlink(embp);
    return r;
}

/* max |a - b| / std(b) over count values. */
static double rel_err(const float *a, const float *b, size_t count) {
    double mean = 0, var = 0, mx = 0;
    for (size_t i = 0; i < count; i++) mean += b[i];
    mean /= (double)count;
    for (size_t i = 0; i < count; i++) var += (b[i] - mean) * (b[i] - mean);
    double sd = sqrt(var / (double)count);
    for (size_t i = 0; i < count; i++) {
        double dd = fabs((double)a[i] - (double)b[i]);
        if (!(dd <= mx)) mx = dd; /* NaN propagates */
    }
    return sd > 0 ? mx / sd : mx;
}

/* Prefill logits (n positions) against the reference. f32-activation
 * prefill: within 1e-3 everywhere. With the integer prefill product
 * (q8_0/q4_0 on AVX512-VNNI) the reference rounds the same activations
 * (xq8_from = 0), and with the bf16 one (AVX512_BF16) it rounds them to
 * bf16 (xbf16_until), but it rounds f64 values where the C code rounds f32
 * ones, so an element on a rounding boundary can land one 8-bit step
 * apart and carry on through the later positions (seen: q4_0, exact at
 * position 0, 2-5e-2 from position 1 on): every position within 0.15
 * and at least one within 1e-3 (seen: ~5e-7). Returns the largest error. */
static double check_prefill(const float *lg, const float *ref, uint32_t n, uint32_t V,
                            int xq8, const char *what, int *all_tight) {
    if (all_tight) *all_tight = 1;
    if (!xq8) {
        double e = rel_err(lg, ref, (size_t)n * V);
        ck_assert_msg(e < 1e-3, "%s prefill rel err %g", what, e);
        return e;
    }
    double worst = 0;
    uint32_t tight = 0;
    for (uint32_t t = 0; t < n; t++) {
        double e = rel_err(lg + (size_t)t * V, ref + (size_t)t * V, V);
        if (e > worst) worst = e;
        tight += e < 1e-3;
        if (getenv("MG_TEST_VERBOSE")) fprintf(stderr, "%s pos %u: %.3g\n", what, t, e);
        ck_assert_msg(e < 0.15, "%s prefill pos %u rel err %g vs rounded-x ref", what, t, e);
    }
    ck_assert_msg(tight > 0, "%s prefill: no position of %u matches the rounded-x ref", what, n);
    if (all_tight) *all_tight = tight == n;
    return worst;
}

static void make_tokens(int32_t *tok, uint32_t n, uint32_t vocab, uint64_t seed) {
    for (uint32_t i = 0; i < n; i++) tok[i] = (int32_t)(tu_rand_u64(&seed) % vocab);
    tok[0] = 2;
}

/* ============================================================ reference tests */

#define NSEQ 30
#define NPRE 24

static void ref_case(int32_t dtype, int window_cfg) {
    const char *path = tu_tmp_path(window_cfg ? "dec_win.mgm" : "dec_tiny.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    make_model(mp, dtype, window_cfg);
    loaded m = load(mp);
    const mg__dconfig *c = mg__decoder_config(m.d);
    uint32_t V = c->vocab;
    int32_t tok[NSEQ];
    make_tokens(tok, NSEQ, V, 42 + (uint64_t)dtype);
    int quant = dtype == MG_DTYPE_Q8_0 || dtype == MG_DTYPE_Q4_0;
    float *ref = run_ref(mp, tok, NULL, NSEQ, NULL, 0, NULL, c->hidden, V, -1, -1);
    /* For q8_0/q4_0, decode steps also against a reference that rounds the
     * activations of positions >= NPRE as the matvec does (all positions
     * where the prefill product rounds them too). bf16 on AVX512_BF16:
     * the prefill rounds its activations to bf16, decode keeps f32. */
    int xq8pf = quant && mg__matmul_pooled(dtype, c->hidden);
    int bfpf = dtype == MG_DTYPE_BF16 && mg__matmul_pooled(dtype, c->hidden);
    float *refq = quant && ref ? run_ref(mp, tok, NULL, NSEQ, NULL, 0, NULL, c->hidden, V,
                                         xq8pf ? 0 : NPRE, -1)
                  : bfpf && ref ? run_ref(mp, tok, NULL, NSEQ, NULL, 0, NULL, c->hidden, V, -1,
                                          NPRE)
                                : NULL;
    if (!ref) {
        unload(&m);
        unlink(mp);
        return;
    }
    mg__dstate *s = NULL;
    ck_assert_int_eq(mg__dstate_new(&s, m.d, 64, NPRE, &k_two), MG_OK);
    mg__pool *pool = mg__pool_new(2);
    ck_assert_ptr_nonnull(pool);
    float *lg = malloc((size_t)NPRE * V * sizeof *lg);
    ck_assert_ptr_nonnull(lg);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, NPRE, lg, 1, pool), MG_OK);
    char what[64];
    snprintf(what, sizeof what, "%s win=%d", DTN[dtype], window_cfg);
    int pf_tight;
    double e = check_prefill(lg, xq8pf || bfpf ? refq : ref, NPRE, V, xq8pf || bfpf, what,
                             &pf_tight);
    double worst = 0, worstq = 0;
    int n_tight = 0;
    for (uint32_t t = NPRE; t < NSEQ; t++) {
        ck_assert_int_eq(mg__decoder_forward(s, &tok[t], NULL, NULL, 1, lg, 0, pool), MG_OK);
        /* bf16: against the reference whose prefill rounded as ours did */
        double ed = rel_err(lg, (bfpf ? refq : ref) + (size_t)t * V, V);
        if (ed > worst) worst = ed;
        ck_assert_msg(ed < (quant || (bfpf && !pf_tight) ? 0.15 : 1e-3),
                      "%s win=%d decode pos %u rel err %g", DTN[dtype], window_cfg, t, ed);
        if (refq && quant) {
            /* The C code and the reference round slightly different x
             * (f32 vs f64 upstream), so an element sitting on a rounding
             * boundary can land one 8-bit step apart, and the difference
             * then stays in the KV cache for the later steps (seen: q4_0,
             * 2.9e-2 from one step on). So: every step within the loose
             * bound, and at least one step tight (seen: ~1e-6). */
            double eq = rel_err(lg, refq + (size_t)t * V, V);
            if (eq > worstq) worstq = eq;
            if (eq < 1e-3) n_tight++;
            ck_assert_msg(eq < 0.15, "%s win=%d decode pos %u rel err %g vs 8-bit-x ref",
                          DTN[dtype], window_cfg, t, eq);
        }
    }
    /* (after a prefill that landed a step apart, every step carries it) */
    if (refq && quant && pf_tight)
        ck_assert_msg(n_tight > 0, "%s: no decode step matches the 8-bit-x ref", DTN[dtype]);
    ck_assert_uint_eq(mg__dstate_pos(s), NSEQ);
    fprintf(stderr, "check_decoder: %-4s %s: prefill rel err %.2e, decode %.2e",
            DTN[dtype], window_cfg ? "window=8/pattern=2/softcaps" : "tiny",
            e, worst);
    if (refq && quant) fprintf(stderr, " (vs 8-bit-activation ref %.2e)", worstq);
    if (bfpf) fprintf(stderr, " (prefill and decode vs the bf16-prefill ref)");
    fprintf(stderr, "\n");
    free(lg);
    free(ref);
    free(refq);
    mg__pool_free(pool);
    mg__dstate_free(s);
    unload(&m);
    unlink(mp);
}

START_TEST(test_ref_tiny) { ref_case((int32_t)_i, 0); }
END_TEST

START_TEST(test_ref_window_softcap) { ref_case((int32_t)_i, 1); }
END_TEST

/* Image blocks (bidirectional), with embedding rows for one of them; the
 * first block is longer than the window, so the OR-ed block mask matters. */
START_TEST(test_ref_image_block) {
    const char *path = tu_tmp_path("dec_img.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    int32_t dtype = _i ? MG_DTYPE_Q8_0 : MG_DTYPE_F32;
    make_model(mp, dtype, 1);
    loaded m = load(mp);
    const mg__dconfig *c = mg__decoder_config(m.d);
    uint32_t V = c->vocab, H = c->hidden;
    int32_t tok[NSEQ], blk[NSEQ] = {0};
    make_tokens(tok, NSEQ, V, 7);
    for (int i = 5; i < 17; i++) blk[i] = 1;
    for (int i = 19; i < 23; i++) blk[i] = 2;
    uint32_t rows[12];
    float *emb = malloc(12 * (size_t)H * sizeof *emb);
    const float *eptr[NSEQ] = {0};
    uint64_t seed = 99;
    for (uint32_t r = 0; r < 12; r++) {
        rows[r] = 5 + r;
        for (uint32_t i = 0; i < H; i++) emb[r * H + i] = tu_rand_f32(&seed);
        eptr[5 + r] = emb + (size_t)r * H;
        tok[5 + r] = -1; /* ignored where an embedding is given */
    }
    int32_t tok_ref[NSEQ];
    memcpy(tok_ref, tok, sizeof tok);
    for (int i = 5; i < 17; i++) tok_ref[i] = 0;
    float *ref = run_ref(mp, tok_ref, blk, NSEQ, rows, 12, emb, H, V, -1, -1);
    int xq8pf = dtype != MG_DTYPE_F32 && mg__matmul_pooled(dtype, H);
    float *refq = dtype != MG_DTYPE_F32 && ref
                      ? run_ref(mp, tok_ref, blk, NSEQ, rows, 12, emb, H, V, xq8pf ? 0 : NPRE, -1)
                      : NULL;
    if (ref) {
        mg__dstate *s = NULL;
        ck_assert_int_eq(mg__dstate_new(&s, m.d, NSEQ, NSEQ, &k_two), MG_OK);
        float *lg = malloc((size_t)NSEQ * V * sizeof *lg);
        /* whole sequence in one batch */
        ck_assert_int_eq(mg__decoder_forward(s, tok, eptr, blk, NSEQ, lg, 1, NULL), MG_OK);
        double e = check_prefill(lg, xq8pf ? refq : ref, NSEQ, V, xq8pf, "image", NULL);
        /* prefill through both blocks, then decode */
        mg__dstate_reset(s);
        ck_assert_int_eq(mg__decoder_forward(s, tok, eptr, blk, NPRE, lg, 1, NULL), MG_OK);
        int pf_tight;
        double e2 = check_prefill(lg, xq8pf ? refq : ref, NPRE, V, xq8pf, "image(24)",
                                  &pf_tight),
               worst = 0;
        for (uint32_t t = NPRE; t < NSEQ; t++) {
            ck_assert_int_eq(mg__decoder_forward(s, &tok[t], NULL, NULL, 1, lg, 0, NULL), MG_OK);
            double ed = rel_err(lg, (refq ? refq : ref) + (size_t)t * V, V);
            double tol = pf_tight ? 1e-3 : 0.15;
            if (ed > worst) worst = ed;
            ck_assert_msg(ed < tol, "image decode pos %u rel err %g", t, ed);
        }
        fprintf(stderr, "check_decoder: %-4s image blocks: prefill rel err %.2e, "
                "decode %.2e\n", DTN[dtype], e > e2 ? e : e2, worst);
        /* The block mask matters: without block ids the result differs. */
        mg__dstate_reset(s);
        ck_assert_int_eq(mg__decoder_forward(s, tok, eptr, NULL, NSEQ, lg, 1, NULL), MG_OK);
        ck_assert(rel_err(lg, ref, (size_t)NSEQ * V) > 1e-2);
        free(lg);
        free(ref);
        free(refq);
        mg__dstate_free(s);
    }
    free(emb);
    unload(&m);
    unlink(mp);
}
END_TEST

/* Long enough for several query blocks and key chunks of the tiled
 * attention (64 x 64), a ring that wraps on the sliding layers, an image
 * block longer than the window across a block boundary, and the KV cache
 * in f32 (_i = 0) or bf16 (_i = 1, against a reference that rounds keys
 * and values to bf16). One batch; then chunks of 50 and single tokens with
 * the default switch between tiled and per-query attention, with tiles
 * for every call, and with the per-query path for every call. */
START_TEST(test_ref_long_tiles) {
    enum { N = 150 };
    const char *path = tu_tmp_path("dec_long.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    make_model(mp, MG_DTYPE_F32, 1);
    loaded m = load(mp);
    const mg__dconfig *c = mg__decoder_config(m.d);
    uint32_t V = c->vocab, H = c->hidden;
    int32_t tok[N], blk[N] = {0}, tok_ref[N];
    make_tokens(tok, N, V, 11);
    enum { B0 = 58, NB = 28 };
    uint32_t rows[NB];
    float *emb = malloc((size_t)NB * H * sizeof *emb);
    const float *eptr[N] = {0};
    uint64_t seed = 3;
    for (uint32_t r = 0; r < NB; r++) {
        rows[r] = B0 + r;
        blk[B0 + r] = 1;
        for (uint32_t i = 0; i < H; i++) emb[(size_t)r * H + i] = tu_rand_f32(&seed);
        eptr[B0 + r] = emb + (size_t)r * H;
    }
    for (int i = 100; i < 104; i++) blk[i] = 2;
    memcpy(tok_ref, tok, sizeof tok);
    for (uint32_t r = 0; r < NB; r++) tok_ref[B0 + r] = 0;
    const int kvb = _i;
    g_ref_kv_bf16 = kvb;
    float *ref = run_ref(mp, tok_ref, blk, N, rows, NB, emb, H, V, -1, -1);
    g_ref_kv_bf16 = 0;
    float *ref32 = kvb && ref ? run_ref(mp, tok_ref, blk, N, rows, NB, emb, H, V, -1, -1) : NULL;
    if (ref) {
        mg__pool *pool = mg__pool_new(2);
        const mg__dstate_opts o = {2, kvb ? MG__DSTATE_KV_BF16 : 0};
        mg__dstate *s = NULL;
        float *lg = malloc((size_t)N * V * sizeof *lg), *lg1 = malloc((size_t)N * V * sizeof *lg1);
        float *lg0 = malloc((size_t)N * V * sizeof *lg0);
        ck_assert(pool && lg && lg1 && lg0);
        ck_assert_int_eq(mg__dstate_new(&s, m.d, N, N, &o), MG_OK);
        ck_assert_int_eq(mg__decoder_forward(s, tok, eptr, blk, N, lg, 1, pool), MG_OK);
        /* bf16: float-level differences between this code's products and
         * the reference's (or between batch shapes, thread counts) flip the
         * rounding of a few keys or values, each a 2^-8 change */
        const double tol = kvb ? 5e-3 : 1e-3;
        double e1 = rel_err(lg, ref, (size_t)N * V);
        ck_assert_msg(e1 < tol, "%s KV: one batch vs reference %g", kvb ? "bf16" : "f32", e1);
        if (ref32) { /* the bf16 rounding really happens, and is small */
            double e32 = rel_err(lg, ref32, (size_t)N * V);
            ck_assert_msg(e32 > 4 * e1 && e32 < 5e-2, "bf16 kv vs f32 ref %g (bf16 ref %g)",
                          e32, e1);
            fprintf(stderr, "check_decoder: bf16 KV cache: logits vs f32 cache %.2e (std-relative "
                    "max), vs bf16-rounding reference %.2e\n", e32, e1);
        }
        mg__dstate_free(s);
        ck_assert_int_eq(mg__dstate_new(&s, m.d, N, 50, &o), MG_OK);
        /* default; tiles for everything; per-query for every call past
         * 7 tokens (grouped decode below, its keys in 5 ranges, so that
         * some ranges hold no key a sliding-window query sees); per-query
         * for every call */
        static const mg__dattn paths[4] = {MG__DATTN_DEFAULT, {1, 1, 0}, {UINT32_MAX, 1, 5},
                                           {UINT32_MAX, 0, 0}};
        double worst = 0;
        for (int pass = 0; pass < 4; pass++) {
            mg__dstate_set_attn(s, &paths[pass]);
            mg__dstate_reset(s);
            /* chunks of 50 (the image block within the second), the text
             * block as one 4-token call, then single tokens */
            for (uint32_t t = 0; t < N;) {
                uint32_t k = t < 100 ? 50 : t < 104 ? 4 : 1;
                ck_assert_int_eq(mg__decoder_forward(s, tok + t, eptr + t, blk + t, k,
                                                     lg1 + (size_t)t * V, 1,
                                                     t % 3 ? pool : NULL), MG_OK);
                t += k;
            }
            double e = rel_err(lg1, ref, (size_t)N * V);
            double eb = rel_err(lg1, lg, (size_t)N * V);
            if (getenv("MG_TEST_VERBOSE"))
                for (uint32_t t = 0; t < N; t++)
                    fprintf(stderr, "pass %d pos %u: vs ref %.3g vs batch %.3g\n", pass, t,
                            rel_err(lg1 + (size_t)t * V, ref + (size_t)t * V, V),
                            rel_err(lg1 + (size_t)t * V, lg + (size_t)t * V, V));
            /* (a flip in an early token's key reaches every later query of
             * a global layer: up to ~2.5e-3 here, so bf16 gets twice tol) */
            ck_assert_msg(e < (kvb ? 2 * tol : tol), "pass %d: chunked vs reference %g", pass, e);
            ck_assert_msg(eb < (kvb ? 2 * tol : 1e-4), "pass %d: chunked vs one batch %g", pass, eb);
            if (e > worst) worst = e;
            /* each pass really took other paths: its sums run in another
             * order, so some logits differ in their last bits */
            if (pass == 0) memcpy(lg0, lg1, (size_t)N * V * sizeof *lg0);
            else ck_assert_msg(memcmp(lg0, lg1, (size_t)N * V * sizeof *lg0) != 0,
                               "pass %d: the same bits as the default paths", pass);
        }
        fprintf(stderr, "check_decoder: %s KV, %u tokens: one batch rel err %.2e, chunked/tiles/"
                "per-query %.2e\n", kvb ? "bf16" : "f32", N, e1, worst);
        mg__dstate_free(s);
        mg__pool_free(pool);
        free(lg);
        free(lg1);
        free(lg0);
        free(ref);
        free(ref32);
    }
    free(emb);
    unload(&m);
    unlink(mp);
}
END_TEST

/* ============================================================ pure C tests */

/* One batch vs token by token vs uneven chunks, all logits; plus a ring
 * that wraps (sequence longer than window + max_batch). */
START_TEST(test_batch_consistency) {
    static const int32_t dts[3] = {MG_DTYPE_F32, MG_DTYPE_BF16, MG_DTYPE_F16};
    int32_t dtype = dts[_i];
    const char *path = tu_tmp_path("dec_cons.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    tcfg cfg = small_cfg(dtype);
    cfg.acap = 5;
    cfg.fcap = 3;
    if (tu_under_valgrind()) cfg.layers = 2;
    write_model(mp, &cfg);
    loaded m = load(mp);
    uint32_t V = (uint32_t)cfg.vocab;
    enum { N = 40 };
    int32_t tok[N], blk[N] = {0};
    make_tokens(tok, N, V, 5);
    for (int i = 10; i < 14; i++) blk[i] = 3;
    float *a = malloc((size_t)N * V * sizeof *a), *b = malloc((size_t)N * V * sizeof *b);
    ck_assert(a && b);
    mg__pool *pool = mg__pool_new(2);
    mg__dstate *s = NULL, *s1 = NULL;
    ck_assert_int_eq(mg__dstate_new(&s, m.d, 64, N, &k_two), MG_OK);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, N, a, 1, pool), MG_OK);
    /* token by token, ring of window + 1 = 9 slots on local layers */
    ck_assert_int_eq(mg__dstate_new(&s1, m.d, 64, 1, &k_two), MG_OK);
    for (uint32_t t = 0; t < N; t++)
        ck_assert_int_eq(mg__decoder_forward(s1, &tok[t], NULL, NULL, 1, b + (size_t)t * V, 0,
                                             t % 2 ? pool : NULL), MG_OK);
    /* bf16 on AVX512_BF16: the batch rounds its activations to bf16 (2^-8
     * relative), single tokens keep f32; so do the single logits row below */
    int bfpf = dtype == MG_DTYPE_BF16 && mg__matmul_pooled(dtype, (uint64_t)cfg.hidden);
    double tol1 = bfpf ? 5e-2 : 1e-4;
    double e = rel_err(b, a, (size_t)N * V);
    ck_assert_msg(e < tol1, "%s token-by-token vs batch rel err %g", DTN[dtype], e);
    /* chunks of 7 into a state with max_batch 7 (ring of 15 slots) */
    mg__dstate_free(s1);
    s1 = NULL;
    ck_assert_int_eq(mg__dstate_new(&s1, m.d, N, 7, &k_two), MG_OK);
    for (uint32_t t = 0; t < N; t += 7) {
        uint32_t k = N - t < 7 ? N - t : 7;
        ck_assert_int_eq(mg__decoder_forward(s1, tok + t, NULL, NULL, k, b + (size_t)t * V, 1,
                                             pool), MG_OK);
    }
    e = rel_err(b, a, (size_t)N * V);
    ck_assert_msg(e < 1e-4, "%s chunked vs batch rel err %g", DTN[dtype], e);
    /* last-token logits match the all-logits row */
    mg__dstate_reset(s);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 20, b, 0, NULL), MG_OK);
    ck_assert(rel_err(b, a + (size_t)19 * V, V) < (bfpf ? 1e-2 : 1e-4));
    /* a block in a chunk: same as in the whole batch when the block lies in
     * the chunk, and different from no block */
    mg__dstate_reset(s);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, blk, N, a, 1, pool), MG_OK);
    mg__dstate_reset(s1);
    for (uint32_t t = 0; t < N; t += 7) {
        uint32_t k = N - t < 7 ? N - t : 7;
        ck_assert_int_eq(mg__decoder_forward(s1, tok + t, NULL, blk + t, k, b + (size_t)t * V,
                                             1, NULL), MG_OK);
    }
    ck_assert(rel_err(b, a, (size_t)N * V) < 1e-4);
    mg__dstate_reset(s);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, N, b, 1, pool), MG_OK);
    ck_assert(rel_err(b + 10 * (size_t)V, a + 10 * (size_t)V, 4 * (size_t)V) > 1e-3);
    free(a);
    free(b);
    mg__dstate_free(s);
    mg__dstate_free(s1);
    mg__pool_free(pool);
    unload(&m);
    unlink(mp);
}
END_TEST

/* Exact mode: a batch of tokens after a prefix gives, row for row, the very
 * logits that feeding those tokens one at a time gives (bitwise), for f32,
 * q8_0 and q4_0 weights (q4_0 in the 16-row layout where the CPU has
 * AVX512-VNNI), f32 and bf16 caches, with the prefix past the sliding
 * window (8 here), at every batch size up to 8; and a batch in exact mode
 * leaves the cache as single tokens would (the next token's logits agree). */
START_TEST(test_exact_batch) {
    static const int32_t dts[3] = {MG_DTYPE_F32, MG_DTYPE_Q8_0, MG_DTYPE_Q4_0};
    const char *path = tu_tmp_path("dec_exact.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    tcfg cfg = small_cfg(dts[_i]);
    write_model(mp, &cfg);
    uint32_t V = (uint32_t)cfg.vocab;
    enum { XPRE = 21, NB = 8 };
    int32_t tok[XPRE + NB + 1];
    make_tokens(tok, XPRE + NB + 1, V, 5 + (uint64_t)_i);
    mg__pool *pool = mg__pool_new(2);
    loaded m = {NULL, NULL};
    char err[512] = "";
    ck_assert_msg(mg__mgm_open(&m.f, mp, 0, 0, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(mg__decoder_build(&m.d, m.f, err, sizeof err) == MG_OK, "%s", err);
    float *one = malloc((size_t)(NB + 1) * V * sizeof(float));
    float *bat = malloc((size_t)(NB + 1) * V * sizeof(float));
    float *pre = malloc((size_t)V * sizeof(float));
    for (int kv = 0; kv < 2; kv++) {
        mg__dstate_opts o = {2, kv ? MG__DSTATE_KV_BF16 : 0};
        mg__dstate *s = NULL;
        ck_assert_int_eq(mg__dstate_new(&s, m.d, 64, NB, &o), MG_OK);
        for (uint32_t nb = 2; nb <= NB; nb += tu_under_valgrind() ? NB - 2 : 1) {
            /* one at a time */
            mg__dstate_reset(s);
            for (uint32_t t = 0; t < XPRE; t += 7)
                ck_assert_int_eq(mg__decoder_forward(s, tok + t, NULL, NULL, 7, pre, 0, pool), MG_OK);
            for (uint32_t t = 0; t <= nb; t++)
                ck_assert_int_eq(mg__decoder_forward(s, tok + XPRE + t, NULL, NULL, 1,
                                                     one + (size_t)t * V, 0, pool), MG_OK);
            /* the same tokens as one exact batch, then the next alone */
            mg__dstate_reset(s);
            for (uint32_t t = 0; t < XPRE; t += 7)
                ck_assert_int_eq(mg__decoder_forward(s, tok + t, NULL, NULL, 7, pre, 0, pool), MG_OK);
            ck_assert_int_eq(mg__dstate_set_exact(s, 1), MG_OK);
            ck_assert_int_eq(mg__decoder_forward(s, tok + XPRE, NULL, NULL, nb, bat, 1, pool), MG_OK);
            ck_assert_int_eq(mg__dstate_set_exact(s, 0), MG_OK);
            ck_assert_int_eq(mg__decoder_forward(s, tok + XPRE + nb, NULL, NULL, 1,
                                                 bat + (size_t)nb * V, 0, pool), MG_OK);
            for (uint32_t t = 0; t <= nb; t++)
                ck_assert_msg(!memcmp(one + (size_t)t * V, bat + (size_t)t * V, V * sizeof(float)),
                              "dtype %d kv %d batch %u: row %u differs", dts[_i], kv, nb, t);
            /* the last row only */
            mg__dstate_reset(s);
            for (uint32_t t = 0; t < XPRE; t += 7)
                ck_assert_int_eq(mg__decoder_forward(s, tok + t, NULL, NULL, 7, pre, 0, pool), MG_OK);
            ck_assert_int_eq(mg__dstate_set_exact(s, 1), MG_OK);
            ck_assert_int_eq(mg__decoder_forward(s, tok + XPRE, NULL, NULL, nb, bat, 0, pool), MG_OK);
            ck_assert_int_eq(mg__dstate_set_exact(s, 0), MG_OK);
            ck_assert(!memcmp(one + (size_t)(nb - 1) * V, bat, V * sizeof(float)));
        }
        mg__dstate_free(s);
    }
    free(one);
    free(bat);
    free(pre);
    mg__pool_free(pool);
    unload(&m);
}
END_TEST

/* q4_0 decoder matrices in the 16-row decode layout (rearranged at load on
 * AVX512-VNNI unless MG_LOAD_FILE_LAYOUT or MG_LOAD_MMAP): the same logits
 * as the file layout, bitwise for a batch (the prefill product reads the
 * same panels) and within f32 summation order for single tokens. */
START_TEST(test_q4x16_layout) {
    const char *path = tu_tmp_path("dec_q4x16.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    tcfg cfg = small_cfg(MG_DTYPE_Q4_0);
    if (tu_under_valgrind()) cfg.layers = 2;
    write_model(mp, &cfg);
    static const uint32_t fl[3] = {0, MG_LOAD_FILE_LAYOUT, MG_LOAD_MMAP};
    int can = mg__kernel_level(mg_simd_level()) >= MG_SIMD_AVX512 && mg__cpu_vnni();
    uint32_t V = (uint32_t)cfg.vocab;
    enum { N = 24 };
    int32_t tok[N];
    make_tokens(tok, N, V, 11);
    float *lg[3][2];
    mg__pool *pool = mg__pool_new(2);
    for (int k = 0; k < 3; k++) {
        loaded m = {NULL, NULL};
        char err[512] = "";
        ck_assert_msg(mg__mgm_open(&m.f, mp, fl[k], 0, err, sizeof err) == MG_OK, "%s", err);
        ck_assert_msg(mg__decoder_build(&m.d, m.f, err, sizeof err) == MG_OK, "%s", err);
        const char *names[] = {"text.token_embd", "text.blk.0.attn_k", "text.blk.1.ffn_down"};
        for (int i = 0; i < 3; i++) {
            const mg__tensor *t = mg__mgm_tensor(m.f, names[i]);
            ck_assert_ptr_nonnull(t);
            ck_assert_int_eq(t->dtype, k == 0 && can ? MG__DTYPE_Q4_0X16 : MG_DTYPE_Q4_0);
        }
        lg[k][0] = malloc((size_t)N * V * sizeof(float));
        lg[k][1] = malloc((size_t)N * V * sizeof(float));
        mg__dstate *s = NULL;
        ck_assert_int_eq(mg__dstate_new(&s, m.d, 64, N, &k_two), MG_OK);
        ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, N, lg[k][0], 1, pool), MG_OK);
        mg__dstate_reset(s);
        for (uint32_t t = 0; t < N; t++)
            ck_assert_int_eq(mg__decoder_forward(s, &tok[t], NULL, NULL, 1,
                                                 lg[k][1] + (size_t)t * V, 0, pool), MG_OK);
        mg__dstate_free(s);
        unload(&m);
    }
    for (int k = 1; k < 3; k++) {
        ck_assert(memcmp(lg[0][0], lg[k][0], (size_t)N * V * sizeof(float)) == 0);
        double e = rel_err(lg[0][1], lg[k][1], (size_t)N * V);
        ck_assert_msg(e < 1e-5, "single tokens, flags 0x%x: rel err %g", fl[k], e);
    }
    for (int k = 0; k < 3; k++) { free(lg[k][0]); free(lg[k][1]); }
    mg__pool_free(pool);
    /* the public tensor view: still q4_0; no bytes for a rearranged matrix,
     * the file's bytes with MG_LOAD_FILE_LAYOUT (as mapped) */
    mg_model *pm[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        mg_model_params p = MG_MODEL_PARAMS_INIT;
        p.flags = fl[k];
        char err[512] = "";
        ck_assert_msg(mg_model_load(&pm[k], mp, &p, err, sizeof err) == MG_OK, "%s", err);
    }
    mg_tensor_info ti[3];
    for (int k = 0; k < 3; k++) {
        memset(&ti[k], 0, sizeof ti[k]);
        ti[k].struct_size = sizeof ti[k];
        ck_assert_int_eq(mg_model_tensor_find(&ti[k], pm[k], "text.blk.0.ffn_up"), MG_OK);
        ck_assert_int_eq(ti[k].dtype, MG_DTYPE_Q4_0);
    }
    ck_assert(ti[0].n_bytes == ti[2].n_bytes && ti[1].n_bytes == ti[2].n_bytes);
    ck_assert(can ? ti[0].data == NULL : ti[0].data != NULL);
    ck_assert(ti[1].data && ti[2].data);
    ck_assert(!memcmp(ti[1].data, ti[2].data, (size_t)ti[1].n_bytes));
    for (int k = 0; k < 3; k++) mg_model_free(pm[k]);
    unlink(mp);
}
END_TEST

START_TEST(test_context_and_args) {
    const char *path = tu_tmp_path("dec_ctx.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    tcfg cfg = small_cfg(MG_DTYPE_Q8_0);
    cfg.layers = 2;
    write_model(mp, &cfg);
    loaded m = load(mp);
    uint32_t V = (uint32_t)cfg.vocab;
    float *lg = malloc((size_t)8 * V * sizeof *lg);
    int32_t tok[9] = {2, 3, 4, 5, 6, 7, 8, 9, 10};
    mg__dstate *s = NULL;
    uint64_t bytes = 0;
    ck_assert_int_eq(mg__dstate_bytes(m.d, 16, 8, NULL, &bytes), MG_OK);
    ck_assert_uint_gt(bytes, 0);
    ck_assert_int_eq(mg__dstate_new(&s, m.d, 0, 1, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__dstate_new(&s, m.d, 16, 0, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__dstate_new(&s, m.d, 16, 17, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__dstate_new(&s, m.d, (uint32_t)cfg.ctx + 1, 1, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__dstate_new(&s, NULL, 16, 8, NULL), MG_E_INVALID_ARG);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(mg__dstate_new(&s, m.d, 16, 8, NULL), MG_OK);
    /* argument errors change nothing */
    ck_assert_int_eq(mg__decoder_forward(NULL, tok, NULL, NULL, 1, lg, 0, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 1, NULL, 0, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 0, lg, 0, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 9, lg, 0, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__decoder_forward(s, NULL, NULL, NULL, 1, lg, 0, NULL), MG_E_INVALID_ARG);
    int32_t bad[2] = {2, (int32_t)V};
    ck_assert_int_eq(mg__decoder_forward(s, bad, NULL, NULL, 2, lg, 0, NULL), MG_E_INVALID_ARG);
    bad[1] = -1;
    ck_assert_int_eq(mg__decoder_forward(s, bad, NULL, NULL, 2, lg, 0, NULL), MG_E_INVALID_ARG);
    int32_t nblk[2] = {0, -3};
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, nblk, 2, lg, 0, NULL), MG_E_INVALID_ARG);
    {   /* state options: unknown flags, too many workers; a pool larger than
         * the state's workers (its per-thread scratch) is refused */
        mg__dstate *t = NULL;
        const mg__dstate_opts badf = {1, 0x2}, badw = {MG__DEC_MAX_WORKERS + 1, 0};
        ck_assert_int_eq(mg__dstate_new(&t, m.d, 16, 8, &badf), MG_E_INVALID_ARG);
        ck_assert_int_eq(mg__dstate_new(&t, m.d, 16, 8, &badw), MG_E_INVALID_ARG);
        ck_assert_int_eq(mg__dstate_bytes(m.d, 16, 8, &badf, &bytes), MG_E_INVALID_ARG);
        ck_assert_ptr_null(t);
        mg__pool *p3 = mg__pool_new(3);
        ck_assert_ptr_nonnull(p3);
        ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 8, lg, 0, p3), MG_E_INVALID_ARG);
        ck_assert_uint_eq(mg__dstate_pos(s), 0);
        mg__pool_free(p3);
        /* a bf16 cache is half the f32 one's size */
        const mg__dstate_opts kvb = {1, MG__DSTATE_KV_BF16};
        uint64_t b32 = 0, b16 = 0;
        ck_assert_int_eq(mg__dstate_bytes(m.d, 256, 8, NULL, &b32), MG_OK);
        ck_assert_int_eq(mg__dstate_bytes(m.d, 256, 8, &kvb, &b16), MG_OK);
        ck_assert_uint_lt(b16, b32);
    }
    ck_assert_uint_eq(mg__dstate_pos(s), 0);
    /* fill the context: 8 + 7 + 1, then one more is CONTEXT_FULL */
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 8, lg, 0, NULL), MG_OK);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 7, lg, 0, NULL), MG_OK);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 2, lg, 0, NULL), MG_E_CONTEXT_FULL);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 1, lg, 0, NULL), MG_OK);
    ck_assert_uint_eq(mg__dstate_pos(s), 16);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 1, lg, 0, NULL), MG_E_CONTEXT_FULL);
    ck_assert_uint_eq(mg__dstate_pos(s), 16);
    for (uint32_t i = 0; i < V; i++) ck_assert(isfinite(lg[i]));
    mg__dstate_reset(s);
    ck_assert_uint_eq(mg__dstate_pos(s), 0);
    ck_assert_int_eq(mg__decoder_forward(s, tok, NULL, NULL, 1, lg, 0, NULL), MG_OK);
    /* NULL-safe frees */
    mg__dstate_free(NULL);
    mg__decoder_free(NULL);
    mg__dstate_reset(NULL);
    ck_assert_ptr_null(mg__decoder_config(NULL));
    mg__dstate_free(s);
    free(lg);
    unload(&m);
    unlink(mp);
}
END_TEST

/* ============================================================ hostile models */

typedef struct hostile {
    const char *what;
    const char *key;
    int omit, as_string, is_float;
    int64_t val;
    double fval;
    const char *skip, *bad, *f16, *three_d;
    int64_t layers_meta; /* n_layers written above the tensors present */
} hostile;

static const hostile HOSTILE[] = {
    {"missing ffn_up", NULL, 0, 0, 0, 0, 0, "text.blk.1.ffn_up", NULL, NULL, NULL, 0},
    {"missing token_embd", NULL, 0, 0, 0, 0, 0, "text.token_embd", NULL, NULL, NULL, 0},
    {"missing output_norm", NULL, 0, 0, 0, 0, 0, "text.output_norm", NULL, NULL, NULL, 0},
    {"missing q_norm", NULL, 0, 0, 0, 0, 0, "text.blk.0.attn_q_norm", NULL, NULL, NULL, 0},
    {"wrong attn_q shape", NULL, 0, 0, 0, 0, 0, NULL, "text.blk.0.attn_q", NULL, NULL, 0},
    {"wrong ffn_down shape", NULL, 0, 0, 0, 0, 0, NULL, "text.blk.2.ffn_down", NULL, NULL, 0},
    {"wrong embd shape", NULL, 0, 0, 0, 0, 0, NULL, "text.token_embd", NULL, NULL, 0},
    {"wrong norm shape", NULL, 0, 0, 0, 0, 0, NULL, "text.blk.1.attn_k_norm", NULL, NULL, 0},
    {"f16 norm", NULL, 0, 0, 0, 0, 0, NULL, NULL, "text.blk.0.ffn_norm", NULL, 0},
    {"3-D matrix", NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, "text.blk.0.attn_v", 0},
    {"more layers than tensors", "text.n_layers", 0, 0, 0, 4, 0, NULL, NULL, NULL, NULL, 0},
    {"zero heads", "text.n_heads", 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"zero kv heads", "text.n_kv_heads", 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"heads % kv_heads", "text.n_kv_heads", 0, 0, 0, 3, 0, NULL, NULL, NULL, NULL, 0},
    {"odd head_dim", "text.head_dim", 0, 0, 0, 15, 0, NULL, NULL, NULL, NULL, 0},
    {"head_dim mismatch", "text.head_dim", 0, 0, 0, 32, 0, NULL, NULL, NULL, NULL, 0},
    {"absurd hidden", "text.hidden_size", 0, 0, 0, (int64_t)1 << 40, 0, NULL, NULL, NULL, NULL, 0},
    {"negative vocab", "text.vocab_size", 0, 0, 0, -1, 0, NULL, NULL, NULL, NULL, 0},
    {"vocab mismatch", "text.vocab_size", 0, 0, 0, 600, 0, NULL, NULL, NULL, NULL, 0},
    {"absurd layers", "text.n_layers", 0, 0, 0, (int64_t)1 << 31, 0, NULL, NULL, NULL, NULL, 0},
    {"absurd ffn", "text.ffn_size", 0, 0, 0, (int64_t)1 << 32, 0, NULL, NULL, NULL, NULL, 0},
    {"zero context", "text.context_length", 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"zero window", "text.sliding_window", 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"zero pattern", "text.sliding_window_pattern", 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"missing n_layers", "text.n_layers", 1, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"missing eps", "text.rms_norm_eps", 1, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"string hidden", "text.hidden_size", 0, 1, 0, 0, 0, NULL, NULL, NULL, NULL, 0},
    {"float heads", "text.n_heads", 0, 0, 1, 0, 4.0, NULL, NULL, NULL, NULL, 0},
    {"zero eps", "text.rms_norm_eps", 0, 0, 1, 0, 0.0, NULL, NULL, NULL, NULL, 0},
    {"NaN eps", "text.rms_norm_eps", 0, 0, 1, 0, NAN, NULL, NULL, NULL, NULL, 0},
    {"negative softcap", "text.attn_logit_softcap", 0, 0, 1, 0, -1.0, NULL, NULL, NULL, NULL, 0},
    {"inf softcap", "text.final_logit_softcap", 0, 0, 1, 0, INFINITY, NULL, NULL, NULL, NULL, 0},
    {"zero rope scale", "text.rope_scaling_factor", 0, 0, 1, 0, 0.0, NULL, NULL, NULL, NULL, 0},
    {"rope theta 0", "text.rope_theta_local", 0, 0, 1, 0, 0.0, NULL, NULL, NULL, NULL, 0},
    {"negative qpas", "text.query_pre_attn_scalar", 0, 0, 0, -16, 0, NULL, NULL, NULL, NULL, 0},
};
#define N_HOSTILE ((int)(sizeof HOSTILE / sizeof HOSTILE[0]))

START_TEST(test_hostile) {
    const hostile *h = &HOSTILE[_i];
    const char *path = tu_tmp_path("dec_bad.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    tcfg c = small_cfg(_i % 2 ? MG_DTYPE_Q4_0 : MG_DTYPE_F32);
    c.meta_key = h->key;
    c.meta_omit = h->omit;
    c.meta_as_string = h->as_string;
    c.meta_is_float = h->is_float;
    c.meta_val = h->val;
    c.meta_fval = h->fval;
    c.skip_tensor = h->skip;
    c.bad_tensor = h->bad;
    c.f16_tensor = h->f16;
    c.three_d_tensor = h->three_d;
    write_model(mp, &c);
    mg__mgm *f = NULL;
    char err[512] = "";
    ck_assert_int_eq(mg__mgm_open(&f, mp, 0, 0, err, sizeof err), MG_OK);
    mg__decoder *d = (mg__decoder *)&err; /* must be reset to NULL */
    mg_status st = mg__decoder_build(&d, f, err, sizeof err);
    ck_assert_msg(st == MG_E_MODEL_FORMAT, "%s: status %d (%s)", h->what, st, err);
    ck_assert_ptr_null(d);
    ck_assert_msg(strncmp(err, "text decoder: ", 14) == 0, "%s: message '%s'", h->what, err);
    mg__mgm_close(f);
    unlink(mp);
}
END_TEST

START_TEST(test_build_args) {
    char err[128] = "";
    mg__decoder *d = NULL;
    ck_assert_int_eq(mg__decoder_build(&d, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__decoder_build(NULL, NULL, NULL, 0), MG_E_INVALID_ARG);
    /* a file without any text keys */
    const char *path = tu_tmp_path("dec_empty.mgm");
    char mp[4096];
    snprintf(mp, sizeof mp, "%s", path);
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, mp, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.name", "x"), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    mg__mgm *f = NULL;
    ck_assert_int_eq(mg__mgm_open(&f, mp, 0, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg__decoder_build(&d, f, err, sizeof err), MG_E_MODEL_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "text.vocab_size"));
    mg__mgm_close(f);
    unlink(mp);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("decoder");
    TCase *tc = tcase_create("decoder");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_ref_tiny, 0, 5);
    tcase_add_loop_test(tc, test_ref_window_softcap, 0, 5);
    tcase_add_loop_test(tc, test_ref_image_block, 0, 2);
    tcase_add_loop_test(tc, test_ref_long_tiles, 0, 2);
    tcase_add_loop_test(tc, test_batch_consistency, 0, 3);
    tcase_add_test(tc, test_q4x16_layout);
    tcase_add_loop_test(tc, test_exact_batch, 0, 3);
    tcase_add_test(tc, test_context_and_args);
    tcase_add_loop_test(tc, test_hostile, 0, N_HOSTILE);
    tcase_add_test(tc, test_build_args);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
