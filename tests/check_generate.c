/* check_generate.c - sampling (against hand-computed distributions) and the
 * generation loop: determinism under a seed, max tokens, stop strings,
 * streaming, interrupt from the callback and from another thread, context
 * full, and greedy generation against a step-by-step loop over
 * mg_context_eval. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/core.h"
#include "llm/sampler.h"
#include "medgemini.h"
#include "testutil.h"

/* ---- sampler ------------------------------------------------------------ */

static int32_t draw(const float *base, uint32_t n, const mg__sampling *p, mg__rng *r,
                    const int32_t *hist, size_t nh) {
    float lg[16];
    static unsigned char scratch[4096];
    memcpy(lg, base, n * sizeof *lg);
    return mg__sample(lg, n, p, hist, nh, r, scratch);
}

/* Frequencies of `draws` samples against expected probabilities. */
static void check_freq(const float *lg, uint32_t n, const mg__sampling *p, const double *want) {
    mg__rng r;
    mg__rng_seed(&r, 12345);
    int draws = tu_under_valgrind() ? 20000 : 100000;
    int count[16] = {0};
    for (int i = 0; i < draws; i++) count[draw(lg, n, p, &r, NULL, 0)]++;
    for (uint32_t k = 0; k < n; k++) {
        double f = (double)count[k] / draws;
        /* 5 standard deviations of a binomial proportion, at least 1e-9 */
        double sd = sqrt(want[k] * (1 - want[k]) / draws);
        ck_assert_msg(fabs(f - want[k]) <= 5 * sd + 1e-9, "id %u: %.4f vs %.4f", k, f, want[k]);
    }
}

START_TEST(test_rng) {
    mg__rng a, b;
    mg__rng_seed(&a, 42);
    mg__rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) ck_assert_uint_eq(mg__rng_next(&a), mg__rng_next(&b));
    mg__rng_seed(&b, 43);
    ck_assert_uint_ne(mg__rng_next(&a), mg__rng_next(&b));
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u = mg__rng_uniform(&a);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u;
    }
    ck_assert(fabs(sum / 100000 - 0.5) < 0.01);
}
END_TEST

START_TEST(test_greedy) {
    mg__rng r;
    mg__rng_seed(&r, 1);
    mg__sampling g = {0.0f, 0, 1.0f, 1.0f};
    const float a[5] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
    ck_assert_int_eq(draw(a, 5, &g, &r, NULL, 0), 1); /* lowest id among ties */
    mg__sampling k1 = {0.7f, 1, 1.0f, 1.0f};          /* top-k 1 is greedy */
    ck_assert_int_eq(draw(a, 5, &k1, &r, NULL, 0), 1);
    /* Repetition penalty 2 on ids 1 and 3: 3.0 -> 1.5 each; id 4 (2.9) wins. */
    mg__sampling rp = {0.0f, 0, 1.0f, 2.0f};
    const int32_t hist[4] = {1, 3, 3, 99 /* out of range: ignored */};
    ck_assert_int_eq(draw(a, 5, &rp, &r, hist, 4), 4);
    /* Negative logits are multiplied: -1 * 2 = -2 stays below 0.5. */
    const float b[2] = {-1.0f, -1.5f};
    const int32_t h0[1] = {0};
    ck_assert_int_eq(draw(b, 2, &rp, &r, h0, 1), 1);
}
END_TEST

START_TEST(test_distributions) {
    /* logits 0, ln 2, ln 4: softmax 1/7, 2/7, 4/7 */
    const float lg[3] = {0.0f, (float)log(2.0), (float)log(4.0)};
    mg__sampling t1 = {1.0f, 0, 1.0f, 1.0f};
    const double w1[3] = {1.0 / 7, 2.0 / 7, 4.0 / 7};
    check_freq(lg, 3, &t1, w1);
    /* temperature 2: proportional to 1, sqrt 2, 2 */
    mg__sampling t2 = {2.0f, 0, 1.0f, 1.0f};
    double z = 1 + sqrt(2.0) + 2;
    const double w2[3] = {1 / z, sqrt(2.0) / z, 2 / z};
    check_freq(lg, 3, &t2, w2);
    /* top-k 2: 1/3, 2/3 over ids 1 and 2 */
    mg__sampling k2 = {1.0f, 2, 1.0f, 1.0f};
    const double w3[3] = {0, 1.0 / 3, 2.0 / 3};
    check_freq(lg, 3, &k2, w3);
    /* top-p 0.5: 4/7 >= 0.5 alone */
    mg__sampling p5 = {1.0f, 0, 0.5f, 1.0f};
    const double w4[3] = {0, 0, 1};
    check_freq(lg, 3, &p5, w4);
    /* top-p 0.8: 4/7 + 2/7 >= 0.8, renormalized to 1/3, 2/3 */
    mg__sampling p8 = {1.0f, 0, 0.8f, 1.0f};
    check_freq(lg, 3, &p8, w3);
    /* top-k over a larger vocabulary goes through the heap path */
    float big[16];
    for (int i = 0; i < 16; i++) big[i] = (float)(i % 5) - 10.0f * (i == 7);
    mg__sampling k3 = {1.0f, 3, 1.0f, 1.0f};
    double w5[16] = {0};
    /* value 4 at ids 4, 9, 14; k = 3 keeps exactly these, equally likely */
    w5[4] = w5[9] = w5[14] = 1.0 / 3;
    check_freq(big, 16, &k3, w5);
}
END_TEST


/* ---- speculative sampling's check --------------------------------------- */

/* Chi-square statistic to a standard normal deviate (Wilson-Hilferty);
 * above 4.75 is a p-value below 1e-6. */
static double chi2_z(double x, int df) {
    if (df < 1) return 0.0;
    double k = df, v = 2.0 / (9.0 * k);
    return (cbrt(x / k) - (1.0 - v)) / sqrt(v);
}

/* Draws x from q (one-hot at x1 when q is NULL), checks it against p with
 * mg__spec_verify, `trials` times: the outcomes must follow p. */
static void check_verify(const mg__tokp *pl, uint32_t np, const float *q, int32_t x1,
                         uint64_t seed, int trials) {
    mg__rng r;
    mg__rng_seed(&r, seed);
    mg__tokp ql[6];
    uint32_t nq = 0;
    for (int32_t i = 0; q && i < 6; i++)
        if (q[i] > 0) { ql[nq].id = i; ql[nq].p = q[i]; nq++; }
    long count[6] = {0}, kept = 0;
    for (int t = 0; t < trials; t++) {
        int32_t x = q ? mg__sample_from(ql, nq, &r) : x1, y = -1;
        int ok = mg__spec_verify(&y, pl, np, q, x, &r);
        ck_assert(y >= 0 && y < 6);
        if (ok) { ck_assert_int_eq(y, x); kept++; }
        else ck_assert_int_ne(y, x); /* refused x is never drawn again */
        count[y]++;
    }
    double want[6] = {0}, chi = 0;
    for (uint32_t i = 0; i < np; i++) want[pl[i].id] = pl[i].p;
    int df = -1;
    for (int i = 0; i < 6; i++) {
        if (want[i] == 0) {
            ck_assert_msg(count[i] == 0, "id %d lies outside p but came %ld times", i, count[i]);
            continue;
        }
        double e = want[i] * trials;
        chi += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    ck_assert_msg(chi2_z(chi, df) < 4.75, "chi-square %.1f with %d degrees of freedom", chi, df);
    /* the acceptance rate is sum min(p, q) */
    double acc = 0;
    for (int i = 0; i < 6; i++) acc += fmin(want[i], q ? q[i] : i == x1);
    ck_assert_msg(fabs((double)kept / trials - acc) < 5 * sqrt(fabs(acc * (1 - acc)) / trials) + 1e-6,
                  "kept %.4f, expected %.4f", (double)kept / trials, acc);
}

START_TEST(test_spec_verify) {
    int trials = tu_under_valgrind() ? 20000 : 200000;
    /* p over the whole vocabulary, in id order (plain temperature) */
    const mg__tokp full[6] = {{0.1f, 0}, {0.3f, 1}, {0.05f, 2}, {0.25f, 3}, {0.2f, 4}, {0.1f, 5}};
    /* p after top-k 4, best first: ids 4 and 5 absent */
    const mg__tokp top[4] = {{0.4f, 1}, {0.3f, 3}, {0.2f, 0}, {0.1f, 2}};
    /* n-gram drafts: q one-hot, at a likely, an unlikely and an absent id */
    check_verify(full, 6, NULL, 1, 1, trials);
    check_verify(full, 6, NULL, 2, 2, trials);
    check_verify(top, 4, NULL, 5, 3, trials);
    check_verify(top, 4, NULL, 0, 4, trials);
    /* model drafts: q a distribution unlike p, one with ids p lacks, q = p */
    const float q1[6] = {0.3f, 0.1f, 0.2f, 0.1f, 0.1f, 0.2f};
    check_verify(full, 6, q1, -1, 5, trials);
    check_verify(top, 4, q1, -1, 6, trials);
    const float q2[6] = {0.0f, 0.1f, 0.0f, 0.1f, 0.5f, 0.3f};
    check_verify(top, 4, q2, -1, 7, trials);
    const float q3[6] = {0.1f, 0.3f, 0.05f, 0.25f, 0.2f, 0.1f};
    check_verify(full, 6, q3, -1, 8, trials);
    /* greedy target (one id with probability 1) */
    const mg__tokp one[1] = {{1.0f, 3}};
    check_verify(one, 1, q1, -1, 9, trials / 10);
    check_verify(one, 1, NULL, 3, 10, trials / 10);
}
END_TEST

/* mg__sample_dist is the distribution mg__sample draws from: the same
 * filters, and mg__sample_from over it picks what mg__sample picks from
 * the same RNG state. */
START_TEST(test_sample_dist) {
    static unsigned char s1[64 * 9 + 64], s2[64 * 9 + 64];
    const mg__sampling cases[6] = {
        {0.0f, 0, 1.0f, 1.0f}, {1.0f, 0, 1.0f, 1.0f}, {0.7f, 5, 1.0f, 1.0f},
        {1.3f, 0, 0.9f, 1.0f}, {0.9f, 20, 0.7f, 1.3f}, {0.8f, 1, 1.0f, 1.0f}};
    uint64_t seed = 5;
    const int32_t hist[5] = {3, 9, 9, 40, 63};
    for (int c = 0; c < 6; c++)
        for (int rep = 0; rep < 200; rep++) {
            float a[64], b[64];
            for (int i = 0; i < 64; i++)
                a[i] = b[i] = (float)(tu_rand_u64(&seed) % 1000) / 250.0f - 2.0f;
            mg__rng r1, r2;
            mg__rng_seed(&r1, 100 + (uint64_t)rep);
            mg__rng_seed(&r2, 100 + (uint64_t)rep);
            int32_t want = mg__sample(a, 64, &cases[c], hist, 5, &r1, s1);
            mg__tokp *d;
            uint32_t n = mg__sample_dist(&d, b, 64, &cases[c], hist, 5, s2);
            ck_assert(!memcmp(a, b, sizeof a)); /* the same in-place penalty */
            double sum = 0;
            for (uint32_t i = 0; i < n; i++) sum += d[i].p;
            ck_assert(fabs(sum - 1.0) < 1e-5);
            if (cases[c].temperature == 0.0f || cases[c].top_k == 1) {
                ck_assert_uint_eq(n, 1);
                ck_assert_int_eq(d[0].id, want);
            } else {
                ck_assert_int_eq(mg__sample_from(d, n, &r2), want);
            }
            if (cases[c].top_k > 1) ck_assert_uint_le(n, (uint32_t)cases[c].top_k);
        }
}
END_TEST

/* ---- generation ----------------------------------------------------------- */

static const char *g_model;

static void make_tiny(void) {
    const char *cli = getenv("MG_CLI");
    ck_assert_msg(cli && *cli, "MG_CLI must name the medgemini tool");
    const char *path = tu_tmp_path("gen_tiny.mgm");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s mkmodel --shape tiny --no-vision --seed 11 -o %s 2>/dev/null", cli, path);
    ck_assert_int_eq(system(cmd), 0);
    g_model = path;
}

static mg_model *load_tiny(void) {
    if (!g_model) make_tiny();
    mg_model *m = NULL;
    char err[256];
    ck_assert_msg(mg_model_load(&m, g_model, NULL, err, sizeof err) == MG_OK, "%s", err);
    return m;
}

typedef struct cbstate {
    char text[65536];
    size_t len;
    int calls, stop_after, interrupt_after;
    mg_context *ctx;
} cbstate;

static int32_t collect(void *u, const char *piece, size_t len, int32_t token) {
    cbstate *s = u;
    (void)token;
    ck_assert(len > 0);
    ck_assert(s->len + len < sizeof s->text);
    memcpy(s->text + s->len, piece, len);
    s->len += len;
    s->text[s->len] = '\0';
    s->calls++;
    if (s->interrupt_after && s->calls == s->interrupt_after) mg_context_interrupt(s->ctx);
    return s->stop_after && s->calls >= s->stop_after;
}

static const int32_t k_prompt[6] = {2, 300, 301, 302, 303, 304};

START_TEST(test_generate_deterministic) {
    mg_model *m = load_tiny();
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 40;
    char *a = NULL, *b = NULL;
    ck_assert_int_eq(mg_generate_ids(&a, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_int_eq(mg_generate_ids(&b, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_str_eq(a, b); /* greedy */
    mg_string_free(b);
    gp.temperature = 1.5f;
    gp.seed = 99;
    char *s1 = NULL, *s2 = NULL;
    ck_assert_int_eq(mg_generate_ids(&s1, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_int_eq(mg_generate_ids(&s2, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_str_eq(s1, s2); /* same seed, same text */
    int differs = 0;
    for (uint64_t seed = 100; seed < 105 && !differs; seed++) {
        char *s3 = NULL;
        gp.seed = seed;
        ck_assert_int_eq(mg_generate_ids(&s3, c, k_prompt, 6, &gp), MG_OK);
        differs = strcmp(s1, s3) != 0;
        mg_string_free(s3);
    }
    ck_assert_msg(differs, "five other seeds all gave the same text");
    /* A second context with the same context seed repeats the first's
     * sampled stream when params.seed is 0. */
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.seed = 7;
    mg_context *c1 = NULL, *c2 = NULL;
    ck_assert_int_eq(mg_context_new(&c1, m, &cp), MG_OK);
    ck_assert_int_eq(mg_context_new(&c2, m, &cp), MG_OK);
    gp.seed = 0;
    char *x = NULL, *y = NULL;
    ck_assert_int_eq(mg_generate_ids(&x, c1, k_prompt, 6, &gp), MG_OK);
    ck_assert_int_eq(mg_generate_ids(&y, c2, k_prompt, 6, &gp), MG_OK);
    ck_assert_str_eq(x, y);
    mg_string_free(x);
    mg_string_free(y);
    mg_string_free(a);
    mg_string_free(s1);
    mg_string_free(s2);
    mg_context_free(c1);
    mg_context_free(c2);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

/* Test oracle for lossy UTF-8 decoding: each maximal prefix of a valid
 * sequence that is not completed becomes one U+FFFD (the Unicode
 * recommendation, also Python's errors="replace"); NUL becomes U+FFFD too.
 * Built on the strict validator by trying completions. */
static int is_valid_prefix(const unsigned char *p, size_t k) {
    static const unsigned char fill[] = {0x80, 0x90, 0xa0, 0xbf};
    for (size_t total = k; total <= 4; total++) {
        unsigned char buf[4];
        memcpy(buf, p, k);
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 4; b++)
                for (size_t c = 0; c < 4; c++) {
                    unsigned char f[3] = {fill[a], fill[b], fill[c]};
                    for (size_t j = k; j < total; j++) buf[j] = f[j - k];
                    if (mg__utf8_valid((const char *)buf, total)) return 1;
                }
    }
    return 0;
}

static size_t lossy_utf8(const char *in, size_t n, char *out) {
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        for (size_t k = 1; k <= 4 && i + k <= n; k++)
            if (mg__utf8_valid(in + i, k)) { len = k; break; }
        if (len) {
            memcpy(out + o, in + i, len);
            o += len;
            i += len;
            continue;
        }
        size_t k = 1; /* maximal subpart: longest prefix of some valid char */
        while (k < 3 && i + k < n && is_valid_prefix(s + i, k + 1)) k++;
        if (!is_valid_prefix(s + i, k)) k = 1;
        memcpy(out + o, "\xef\xbf\xbd", 3);
        o += 3;
        i += k;
    }
    out[o] = '\0';
    return o;
}

static int32_t argmax(const float *v, uint32_t n) {
    int32_t b = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = (int32_t)i;
    return b;
}

START_TEST(test_greedy_matches_eval_loop) {
    mg_model *m = load_tiny();
    mg_model_info mi = {.struct_size = sizeof mi};
    ck_assert_int_eq(mg_model_info_get(&mi, m), MG_OK);
    ck_assert_uint_eq(mi.has_text, 1);
    ck_assert_uint_eq(mi.n_vocab, 512);
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    const mg_tokenizer *tok = mg_model_tokenizer(m);
    ck_assert_ptr_nonnull(tok);
    int32_t eos = mg_tokenizer_special(tok, MG_TOKEN_EOS), eot = mg_tokenizer_special(tok, MG_TOKEN_END_OF_TURN);
    /* Step by step: eval, argmax, eval the choice. */
    float *lg = malloc(6 * 512 * sizeof *lg);
    ck_assert_int_eq(mg_context_eval(c, k_prompt, 6, lg, 6 * 512), MG_OK);
    ck_assert_uint_eq(mg_context_n_tokens(c), 6);
    int32_t toks[30];
    int n = 0;
    int32_t t = argmax(lg + 5 * 512, 512);
    while (n < 30 && t != eos && t != eot) {
        toks[n++] = t;
        ck_assert_int_eq(mg_context_eval(c, &t, 1, lg, 512), MG_OK);
        t = argmax(lg, 512);
    }
    char raw[4096], want[16384];
    size_t rl = 0;
    ck_assert_int_eq(mg_detokenize(raw, sizeof raw, &rl, tok, toks, (size_t)n,
                                   MG_DETOKENIZE_SKIP_SPECIAL), MG_OK);
    size_t wl = lossy_utf8(raw, rl, want);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 30;
    cbstate *cs = calloc(1, sizeof *cs);
    gp.on_token = collect;
    gp.user_data = cs;
    char *got = NULL;
    ck_assert_int_eq(mg_generate_ids(&got, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_uint_eq(strlen(got), wl);
    ck_assert_int_eq(memcmp(got, want, wl), 0);
    /* The streamed pieces add up to the same text. */
    ck_assert_uint_eq(cs->len, wl);
    ck_assert_int_eq(memcmp(cs->text, want, wl), 0);
    ck_assert_int_le(cs->calls, 30);
    mg_string_free(got);
    free(cs);
    free(lg);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

/* mg_context_logits: the last row of mg_context_eval; after a generating
 * call with max_tokens = 0, the row after the prompt; after greedy
 * generation, the row whose argmax was the last token (or end of turn). */
START_TEST(test_context_logits) {
    mg_model *m = load_tiny();
    mg_context *c = NULL, *c2 = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&c2, m, NULL), MG_OK);
    float *rows = malloc(6 * 512 * sizeof *rows), *got = malloc(512 * sizeof *got);
    /* nothing evaluated yet */
    ck_assert_int_eq(mg_context_logits(c, got, 512), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_context_eval(c2, k_prompt, 6, rows, 6 * 512), MG_OK);
    ck_assert_int_eq(mg_context_logits(c2, got, 511), MG_E_BUFFER_TOO_SMALL);
    ck_assert_int_eq(mg_context_logits(c2, NULL, 512), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_context_logits(c2, got, 512), MG_OK);
    ck_assert_int_eq(memcmp(got, rows + 5 * 512, 512 * sizeof *got), 0);
    /* a generating call that reads the prompt and stops */
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 0;
    char *out = NULL;
    ck_assert_int_eq(mg_generate_ids(&out, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_str_eq(out, "");
    mg_string_free(out);
    ck_assert_int_eq(mg_context_logits(c, got, 512), MG_OK);
    for (int i = 0; i < 512; i++)  /* batched prompt vs the same batch: same code path */
        ck_assert_msg(fabsf(got[i] - rows[5 * 512 + i]) <= 1e-5f * (1 + fabsf(rows[5 * 512 + i])),
                      "logit %d: %g vs %g", i, got[i], rows[5 * 512 + i]);
    /* one greedy token: the logits it was chosen from are still there */
    gp.max_tokens = 1;
    ck_assert_int_eq(mg_generate_ids(&out, c, k_prompt, 6, &gp), MG_OK);
    mg_string_free(out);
    ck_assert_int_eq(mg_context_logits(c, got, 512), MG_OK);
    ck_assert_int_eq(argmax(got, 512), argmax(rows + 5 * 512, 512));
    /* emptied: nothing to return */
    ck_assert_int_eq(mg_context_reset(c), MG_OK);
    ck_assert_int_eq(mg_context_logits(c, got, 512), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_context_logits(NULL, got, 512), MG_E_MISUSE);
    free(rows);
    free(got);
    mg_context_free(c);
    mg_context_free(c2);
    mg_model_free(m);
}
END_TEST

START_TEST(test_stop_strings_and_limits) {
    mg_model *m = load_tiny();
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 60;
    char *full = NULL;
    ck_assert_int_eq(mg_generate_ids(&full, c, k_prompt, 6, &gp), MG_OK);
    size_t fl = strlen(full);
    ck_assert_uint_gt(fl, 12);
    /* A stop string taken from the middle of the greedy text. */
    char stop[4];
    memcpy(stop, full + fl / 2, 3);
    stop[3] = '\0';
    const char *cut = strstr(full, stop);
    ck_assert_ptr_nonnull(cut);
    const char *stops[2] = {"\x01never", stop};
    gp.stop = stops;
    gp.n_stop = 2;
    cbstate *cs = calloc(1, sizeof *cs);
    gp.on_token = collect;
    gp.user_data = cs;
    char *got = NULL;
    ck_assert_int_eq(mg_generate_ids(&got, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_uint_eq(strlen(got), (size_t)(cut - full));
    ck_assert_int_eq(strncmp(got, full, (size_t)(cut - full)), 0);
    ck_assert_str_eq(cs->text, got); /* nothing past the stop was streamed */
    mg_string_free(got);

    /* max_tokens: at most that many pieces. */
    memset(cs, 0, sizeof *cs);
    gp.n_stop = 0;
    gp.stop = NULL;
    gp.max_tokens = 5;
    ck_assert_int_eq(mg_generate_ids(&got, c, k_prompt, 6, &gp), MG_OK);
    ck_assert_int_le(cs->calls, 5);
    ck_assert_str_eq(cs->text, got);
    mg_string_free(got);

    /* The callback asks to stop after 3 pieces. */
    memset(cs, 0, sizeof *cs);
    gp.max_tokens = 60;
    cs->stop_after = 3;
    ck_assert_int_eq(mg_generate_ids(&got, c, k_prompt, 6, &gp), MG_E_INTERRUPTED);
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(cs->calls, 3);
    ck_assert_str_eq(cs->text, got);
    mg_string_free(got);

    /* mg_context_interrupt during a call stops it before the next token. */
    memset(cs, 0, sizeof *cs);
    cs->ctx = c;
    cs->interrupt_after = 2;
    ck_assert_int_eq(mg_generate_ids(&got, c, k_prompt, 6, &gp), MG_E_INTERRUPTED);
    ck_assert_int_eq(cs->calls, 2);
    ck_assert_int_eq(mg_context_errcode(c), MG_E_INTERRUPTED);
    mg_string_free(got);
    /* An interrupt left over from before a call does not stop the next. */
    mg_context_interrupt(c);
    memset(cs, 0, sizeof *cs);
    gp.max_tokens = 4;
    ck_assert_int_eq(mg_generate_ids(&got, c, k_prompt, 6, &gp), MG_OK);
    mg_string_free(got);
    mg_string_free(full);
    mg_context_free(c);

    /* Context full: 16 tokens of room, 6 of prompt. A stop string that never
     * matches holds the text's last 7 bytes back from streaming; the answer
     * cut short still streams all the text it returns. */
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_ctx = 16;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    gp.max_tokens = 100;
    const char *never[1] = {"\x01\x02\x03\x04\x05\x06\x07\x08"};
    gp.stop = never;
    gp.n_stop = 1;
    memset(cs, 0, sizeof *cs);
    gp.on_token = collect;
    gp.user_data = cs;
    got = NULL;
    mg_status st = mg_generate_ids(&got, c, k_prompt, 6, &gp);
    if (st == MG_E_CONTEXT_FULL) {
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_gt(strlen(got), 0);
        ck_assert_uint_eq(mg_context_n_tokens(c), 16);
    } else {
        ck_assert_int_eq(st, MG_OK); /* ended by EOS first: acceptable */
    }
    ck_assert_str_eq(cs->text, got);
    mg_string_free(got);
    free(cs);
    gp.on_token = NULL;
    gp.stop = NULL;
    gp.n_stop = 0;
    int32_t many[20];
    for (int i = 0; i < 20; i++) many[i] = 300 + i;
    ck_assert_int_eq(mg_generate_ids(&got, c, many, 20, &gp), MG_E_CONTEXT_FULL);
    mg_string_free(got);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

typedef struct racer { mg_context *c; atomic_int *started; } racer;

static void *interrupter(void *p) {
    racer *r = p;
    while (!atomic_load(r->started)) ;
    mg_context_interrupt(r->c);
    return NULL;
}

static int32_t mark_started(void *u, const char *piece, size_t len, int32_t token) {
    (void)piece; (void)len; (void)token;
    atomic_store((atomic_int *)u, 1);
    return 0;
}

START_TEST(test_interrupt_other_thread) {
    mg_model *m = load_tiny();
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    atomic_int started = 0;
    racer r = {c, &started};
    pthread_t th;
    pthread_create(&th, NULL, interrupter, &r);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 100000; /* more than the context holds */
    gp.temperature = 1.0f;
    gp.seed = 3;
    gp.on_token = mark_started;
    gp.user_data = &started;
    char *got = NULL;
    mg_status st = mg_generate_ids(&got, c, k_prompt, 6, &gp);
    pthread_join(th, NULL);
    /* Interrupted, or (rarely) finished first by EOS or a full context. */
    ck_assert(st == MG_E_INTERRUPTED || st == MG_OK || st == MG_E_CONTEXT_FULL);
    ck_assert_ptr_nonnull(got);
    mg_string_free(got);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

/* Half of the tiny vocabulary is byte tokens, so sampled text is full of
 * byte sequences that are not UTF-8: the output must still be valid. */
/* Speculative decoding by n-gram lookup (MG_GEN_DRAFT_NGRAM) against plain
 * greedy decoding: the same text, streamed pieces, sequence, last token and
 * final logits, bit for bit, over many prompts (random models decoding
 * greedily fall into loops, so drafts are both kept and refused), three
 * weight types, stop strings, a repetition penalty and token limits
 * (sampling: test_spec_sampling). */
START_TEST(test_speculative) {
    const char *dts[3] = {"f32", "q8_0", "q4_0"};
    char args[128];
    snprintf(args, sizeof args, "--shape tiny --no-vision --dtype %s --seed %d", dts[_i], 31 + _i);
    mg_model *m = NULL;
    char err[256];
    ck_assert_msg(mg_model_load(&m, tu_make_model("spec.mgm", args), NULL, err, sizeof err) ==
                  MG_OK, "%s", err);
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.flags = MG_CONTEXT_NO_REUSE;
    cp.n_threads = 2;
    mg_context *a = NULL, *b = NULL;
    ck_assert_int_eq(mg_context_new(&a, m, &cp), MG_OK);
    ck_assert_int_eq(mg_context_new(&b, m, &cp), MG_OK);
    cbstate *sa = calloc(1, sizeof *sa), *sb = calloc(1, sizeof *sb);
    float *la = malloc(512 * sizeof *la), *lb = malloc(512 * sizeof *lb);
    int32_t *ta = malloc(512 * sizeof *ta), *tb = malloc(512 * sizeof *tb);
    uint64_t seed = 99;
    const int n_prompts = tu_under_valgrind() ? 4 : 24;
    for (int k = 0; k < n_prompts; k++) {
        int32_t prompt[40];
        uint32_t np = 4 + (uint32_t)(tu_rand_u64(&seed) % 30);
        prompt[0] = 2;
        for (uint32_t i = 1; i < np; i++) /* some prompts repeat a short pattern */
            prompt[i] = k % 3 == 0 ? 20 + (int32_t)(i % 5)
                                   : 10 + (int32_t)(tu_rand_u64(&seed) % 400);
        mg_gen_params gp = MG_GEN_PARAMS_INIT;
        gp.max_tokens = k % 4 == 1 ? 7 : k % 4 == 2 ? 1 : 60;
        const char *stops[1] = {"ab"};
        if (k % 5 == 3) { gp.stop = stops; gp.n_stop = 1; }
        if (k % 6 == 4) gp.repetition_penalty = 1.3f;
        memset(sa, 0, sizeof *sa);
        memset(sb, 0, sizeof *sb);
        gp.on_token = collect;
        gp.user_data = sa;
        char *x = NULL, *y = NULL;
        mg_status s1 = mg_generate_ids(&x, a, prompt, np, &gp);
        gp.user_data = sb;
        gp.flags = MG_GEN_DRAFT_NGRAM;
        mg_status s2 = mg_generate_ids(&y, b, prompt, np, &gp);
        ck_assert_int_eq(s1, MG_OK);
        ck_assert_int_eq(s2, MG_OK);
        ck_assert_msg(!strcmp(x, y), "prompt %d: plain '%s', speculative '%s'", k, x, y);
        ck_assert_str_eq(sa->text, sb->text);
        ck_assert_int_eq(sa->calls, sb->calls);
        size_t na = 0, nb = 0;
        ck_assert_int_eq(mg_context_tokens(ta, 512, &na, a), MG_OK);
        ck_assert_int_eq(mg_context_tokens(tb, 512, &nb, b), MG_OK);
        ck_assert_uint_eq(na, nb);
        ck_assert_msg(!memcmp(ta, tb, na * sizeof *ta), "prompt %d: sequences differ", k);
        ck_assert_int_eq(a->last_tok, b->last_tok);
        ck_assert_int_eq(mg_context_logits(a, la, 512), MG_OK);
        ck_assert_int_eq(mg_context_logits(b, lb, 512), MG_OK);
        ck_assert_msg(!memcmp(la, lb, 512 * sizeof *la), "prompt %d: final logits differ", k);
        mg_string_free(x);
        mg_string_free(y);
    }
    /* drafts were made, and both kept and refused */
    fprintf(stderr, "check_generate: speculative (%s): %llu calls, %llu tokens drafted, %llu "
            "kept\n", dts[_i], (unsigned long long)b->spec_steps,
            (unsigned long long)b->spec_drafted, (unsigned long long)b->spec_accepted);
    ck_assert_uint_gt(b->spec_accepted, 0);
    ck_assert_uint_lt(b->spec_accepted, b->spec_drafted);
    ck_assert_uint_eq(a->spec_drafted, 0);
    free(sa);
    free(sb);
    free(la);
    free(lb);
    free(ta);
    free(tb);
    mg_context_free(a);
    mg_context_free(b);
    mg_model_free(m);
}
END_TEST

/* Greedy decoding with a draft model is plain greedy decoding bit for bit:
 * text, streamed pieces, sequence, last token, final logits. _i 0: a
 * draft that disagrees (another seed, one layer); 1: the same model file
 * loaded again (agrees but for rounding); 2: the same model handle, with
 * a draft context that keeps its sequence across calls. */
START_TEST(test_spec_draft_greedy) {
    char args[128];
    snprintf(args, sizeof args, "--shape tiny --no-vision --dtype q8_0 --seed 41");
    const char *tpath = tu_make_model("spec_target.mgm", args);
    mg_model *m = NULL, *dm = NULL;
    char err[256];
    ck_assert_msg(mg_model_load(&m, tpath, NULL, err, sizeof err) == MG_OK, "%s", err);
    if (_i == 0) {
        const char *dp = tu_make_model("spec_draft.mgm",
                                       "--shape tiny --no-vision --dtype q4_0 --seed 77 --layers 1");
        ck_assert_msg(mg_model_load(&dm, dp, NULL, err, sizeof err) == MG_OK, "%s", err);
    } else if (_i == 1) {
        ck_assert_msg(mg_model_load(&dm, tpath, NULL, err, sizeof err) == MG_OK, "%s", err);
    }
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.flags = MG_CONTEXT_NO_REUSE;
    cp.n_threads = 2;
    mg_context *a = NULL, *b = NULL, *d = NULL;
    ck_assert_int_eq(mg_context_new(&a, m, &cp), MG_OK);
    ck_assert_int_eq(mg_context_new(&b, m, &cp), MG_OK);
    mg_context_params dcp = MG_CONTEXT_PARAMS_INIT;
    if (_i != 2) dcp.flags = MG_CONTEXT_NO_REUSE;
    ck_assert_int_eq(mg_context_new(&d, dm ? dm : m, &dcp), MG_OK);
    cbstate *sa = calloc(1, sizeof *sa), *sb = calloc(1, sizeof *sb);
    float *la = malloc(512 * sizeof *la), *lb = malloc(512 * sizeof *lb);
    int32_t *ta = malloc(512 * sizeof *ta), *tb = malloc(512 * sizeof *tb);
    uint64_t seed = 7 + (uint64_t)_i;
    const int n_prompts = tu_under_valgrind() ? 3 : 16;
    for (int k = 0; k < n_prompts; k++) {
        int32_t prompt[40];
        uint32_t np = 4 + (uint32_t)(tu_rand_u64(&seed) % 30);
        prompt[0] = 2;
        for (uint32_t i = 1; i < np; i++)
            prompt[i] = k % 3 == 0 ? 20 + (int32_t)(i % 5) : 10 + (int32_t)(tu_rand_u64(&seed) % 400);
        mg_gen_params gp = MG_GEN_PARAMS_INIT;
        gp.max_tokens = k % 4 == 1 ? 7 : k % 4 == 2 ? 1 : 60;
        const char *stops[1] = {"ab"};
        if (k % 5 == 3) { gp.stop = stops; gp.n_stop = 1; }
        if (k % 6 == 4) gp.repetition_penalty = 1.3f;
        memset(sa, 0, sizeof *sa);
        memset(sb, 0, sizeof *sb);
        gp.on_token = collect;
        gp.user_data = sa;
        char *x = NULL, *y = NULL;
        mg_status s1 = mg_generate_ids(&x, a, prompt, np, &gp);
        gp.user_data = sb;
        gp.draft = d;
        gp.n_draft = k % 2 ? 3 : 0;
        if (k % 7 == 5) gp.flags = MG_GEN_DRAFT_NGRAM; /* the model draft wins */
        mg_status s2 = mg_generate_ids(&y, b, prompt, np, &gp);
        ck_assert_int_eq(s1, MG_OK);
        ck_assert_msg(s2 == MG_OK, "%s", mg_context_errmsg(b));
        ck_assert_msg(!strcmp(x, y), "prompt %d: plain '%s', with a draft '%s'", k, x, y);
        ck_assert_str_eq(sa->text, sb->text);
        ck_assert_int_eq(sa->calls, sb->calls);
        size_t na = 0, nb = 0;
        ck_assert_int_eq(mg_context_tokens(ta, 512, &na, a), MG_OK);
        ck_assert_int_eq(mg_context_tokens(tb, 512, &nb, b), MG_OK);
        ck_assert_uint_eq(na, nb);
        ck_assert_msg(!memcmp(ta, tb, na * sizeof *ta), "prompt %d: sequences differ", k);
        ck_assert_int_eq(a->last_tok, b->last_tok);
        ck_assert_int_eq(mg_context_logits(a, la, 512), MG_OK);
        ck_assert_int_eq(mg_context_logits(b, lb, 512), MG_OK);
        ck_assert_msg(!memcmp(la, lb, 512 * sizeof *la), "prompt %d: final logits differ", k);
        /* the draft's sequence is a prefix of the answer's text */
        size_t nd = 0;
        ck_assert_int_eq(mg_context_tokens(tb, 512, &nd, d), MG_OK);
        if (gp.max_tokens > 1) {
            ck_assert_uint_le(nd, na);
            ck_assert_msg(!memcmp(ta, tb, nd * sizeof *ta), "prompt %d: the draft's sequence", k);
        }
        mg_string_free(x);
        mg_string_free(y);
    }
    fprintf(stderr, "check_generate: draft model %d: %llu calls, %llu tokens drafted, %llu kept\n",
            _i, (unsigned long long)b->spec_steps, (unsigned long long)b->spec_drafted,
            (unsigned long long)b->spec_accepted);
    ck_assert_uint_gt(b->spec_drafted, 0);
    if (_i == 0) ck_assert_uint_lt(b->spec_accepted, b->spec_drafted * 3 / 4);
    else ck_assert_uint_gt(b->spec_accepted, b->spec_drafted * 9 / 10);
    free(sa);
    free(sb);
    free(la);
    free(lb);
    free(ta);
    free(tb);
    mg_context_free(a);
    mg_context_free(b);
    mg_context_free(d);
    mg_model_free(m);
    mg_model_free(dm);
}
END_TEST

/* A draft that cannot serve is refused with a message. */
START_TEST(test_spec_draft_refused) {
    mg_model *m = load_tiny(), *other = NULL, *vis = NULL;
    char err[256];
    ck_assert_msg(mg_model_load(&other, tu_make_model("spec_vocab.mgm",
                                "--shape tiny --no-vision --vocab 600"), NULL, err, sizeof err) ==
                  MG_OK, "%s", err);
    ck_assert_msg(mg_model_load(&vis, tu_make_model("spec_vision.mgm", "--shape tiny"), NULL, err,
                                sizeof err) == MG_OK, "%s", err);
    mg_context *c = NULL, *co = NULL, *cv = NULL, *d = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&co, other, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&cv, vis, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&d, m, NULL), MG_OK);
    const int32_t ids[4] = {2, 30, 31, 32};
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 4;
    char *out = NULL;
    gp.draft = c;
    ck_assert_int_eq(mg_generate_ids(&out, c, ids, 4, &gp), MG_E_INVALID_ARG);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "draft context is the generating"));
    gp.draft = co;
    ck_assert_int_eq(mg_generate_ids(&out, c, ids, 4, &gp), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "vocabulary"));
    /* the same vocabulary size, other special tokens (the image ones) */
    gp.draft = cv;
    ck_assert_int_eq(mg_generate_ids(&out, c, ids, 4, &gp), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "tokenizer differs"));
    gp.draft = d;
    gp.reserved = 1; /* must be 0 */
    ck_assert_int_eq(mg_generate_ids(&out, c, ids, 4, &gp), MG_E_INVALID_ARG);
    gp.reserved = 0;
    atomic_store(&d->busy, 1); /* as while another thread runs a call on it */
    ck_assert_int_eq(mg_generate_ids(&out, c, ids, 4, &gp), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "busy"));
    atomic_store(&d->busy, 0);
    ck_assert_int_eq(mg_generate_ids(&out, c, ids, 4, &gp), MG_OK);
    mg_string_free(out);
    /* the draft is released after the call, and usable on its own */
    ck_assert_int_eq(atomic_load(&d->busy), 0);
    ck_assert_int_eq(mg_context_eval(d, ids, 2, NULL, 0), MG_OK);
    mg_context_free(c);
    mg_context_free(co);
    mg_context_free(cv);
    mg_context_free(d);
    mg_model_free(m);
    mg_model_free(other);
    mg_model_free(vis);
}
END_TEST

/* Speculative sampling keeps plain sampling's distribution: the tokens at
 * answer positions 1 to 3 over many seeds, plain against n-gram drafts,
 * a disagreeing draft model and an agreeing one (the same file), compared position by
 * position with a two-sample chi-square at p < 1e-6 (deterministic: fixed
 * seeds); a fifth arm drafts with the same weights in q4_0 (close, not
 * equal: drafts often kept, sometimes refused). The prompt is a greedy loop of the model, so that n-gram drafts
 * are made at those positions, and kept or refused. */
#define SPEC_ARMS 5
static void spec_tokens(mg_context *c, const int32_t *prompt, size_t np, const mg_gen_params *gp,
                        int32_t out[3]) {
    char *x = NULL;
    mg_status st = mg_generate_ids(&x, c, prompt, np, gp);
    ck_assert_msg(st == MG_OK, "%s", mg_context_errmsg(c));
    mg_string_free(x);
    int32_t seq[600];
    size_t n = 0;
    ck_assert_int_eq(mg_context_tokens(seq, 600, &n, c), MG_OK);
    int32_t gen[4];
    size_t ng = 0;
    for (size_t i = np; i < n && ng < 4; i++) gen[ng++] = seq[i];
    if (ng < 4 && c->last_tok >= 0) gen[ng++] = c->last_tok;
    for (int k = 0; k < 3; k++) out[k] = (size_t)k + 1 < ng ? gen[k + 1] : -1; /* -1: ended */
}

START_TEST(test_spec_sampling) {
    const char *tpath = tu_make_model("spec_s_target.mgm", "--shape tiny --no-vision --seed 3");
    const char *dpath = tu_make_model("spec_s_draft.mgm",
                                      "--shape tiny --no-vision --seed 8 --layers 1");
    const char *qpath = tu_make_model("spec_s_q4.mgm", "--shape tiny --no-vision --seed 3 "
                                      "--dtype q4_0");
    mg_model *m = NULL, *dm = NULL, *qm = NULL;
    char err[256];
    ck_assert_msg(mg_model_load(&m, tpath, NULL, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(mg_model_load(&dm, dpath, NULL, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(mg_model_load(&qm, qpath, NULL, err, sizeof err) == MG_OK, "%s", err);
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_threads = 1;
    mg_context *c[SPEC_ARMS], *dother = NULL, *dsame = NULL, *dq4 = NULL;
    for (int a = 0; a < SPEC_ARMS; a++) ck_assert_int_eq(mg_context_new(&c[a], m, &cp), MG_OK);
    ck_assert_int_eq(mg_context_new(&dother, dm, &cp), MG_OK);
    ck_assert_int_eq(mg_context_new(&dsame, m, &cp), MG_OK);
    ck_assert_int_eq(mg_context_new(&dq4, qm, &cp), MG_OK);
    /* the prompt: a start, then what greedy decoding makes of it (a loop) */
    int32_t prompt[80] = {2, 40, 41, 42, 43};
    size_t np = 5;
    {
        mg_gen_params g = MG_GEN_PARAMS_INIT;
        g.max_tokens = 40;
        char *x = NULL;
        ck_assert_int_eq(mg_generate_ids(&x, c[0], prompt, np, &g), MG_OK);
        mg_string_free(x);
        size_t n = 0;
        ck_assert_int_eq(mg_context_tokens(prompt, 80, &n, c[0]), MG_OK);
        np = n;
    }
    const int n_seeds = tu_under_valgrind() ? 300 : 9000;
    const uint32_t V = 512;
    /* counts[arm][position][token + 1] */
    int (*counts)[3][513] = calloc(SPEC_ARMS, sizeof *counts);
    for (int a = 0; a < SPEC_ARMS; a++)
        for (int s = 0; s < n_seeds; s++) {
            mg_gen_params gp = MG_GEN_PARAMS_INIT;
            gp.max_tokens = 4;
            /* the sampler's paths: temperature alone, top-k, top-k and top-p
             * (the random model's logits are close together: a low
             * temperature makes a few tokens likely) */
            gp.temperature = s % 3 == 0 ? 0.05f : s % 3 == 1 ? 0.8f : 0.6f;
            gp.top_k = s % 3 == 0 ? 0 : s % 3 == 1 ? 5 : 8;
            gp.top_p = s % 3 == 2 ? 0.8f : 1.0f;
            gp.seed = 1000003ull * (uint64_t)(a + 1) + (uint64_t)s;
            if (a == 1) gp.flags = MG_GEN_DRAFT_NGRAM;
            if (a == 2) gp.draft = dother;
            if (a == 3) gp.draft = dsame;
            if (a == 4) gp.draft = dq4;
            gp.n_draft = 3;
            int32_t t[3];
            spec_tokens(c[a], prompt, np, &gp, t);
            for (int k = 0; k < 3; k++) counts[a][k][t[k] + 1]++;
        }
    for (int a = 1; a < SPEC_ARMS; a++) {
        fprintf(stderr, "check_generate: speculative sampling arm %d: %llu calls, %llu drafted, "
                "%llu kept\n", a, (unsigned long long)c[a]->spec_steps,
                (unsigned long long)c[a]->spec_drafted, (unsigned long long)c[a]->spec_accepted);
        /* drafts were made at these positions, and both kept and refused */
        ck_assert_uint_gt(c[a]->spec_accepted, (uint64_t)n_seeds / 100);
        if (a != 3) ck_assert_uint_lt(c[a]->spec_accepted, c[a]->spec_drafted);
        for (int k = 0; k < 3; k++) {
            /* cells with fewer than 10 draws in both arms pooled */
            double chi = 0;
            int df = -1;
            long pa = 0, pb = 0;
            for (uint32_t v = 0; v <= V; v++) {
                long x = counts[0][k][v], y = counts[a][k][v];
                if (x + y < 10) { pa += x; pb += y; continue; }
                chi += (double)(x - y) * (x - y) / (double)(x + y);
                df++;
            }
            if (pa + pb) { chi += (double)(pa - pb) * (pa - pb) / (double)(pa + pb); df++; }
            double z = chi2_z(chi, df);
            fprintf(stderr, "  position %d: chi-square %.1f, %d df, z %.2f\n", k + 1, chi, df, z);
            ck_assert_msg(z < 4.75, "arm %d, position %d: chi-square %.1f with %d df", a, k + 1,
                          chi, df);
        }
    }
    free(counts);
    for (int a = 0; a < SPEC_ARMS; a++) mg_context_free(c[a]);
    mg_context_free(dother);
    mg_context_free(dsame);
    mg_context_free(dq4);
    mg_model_free(m);
    mg_model_free(dm);
    mg_model_free(qm);
}
END_TEST

/* With an image in the prompt the draft (a model with an image encoder it
 * does not use) reads the prompt's text only; the answers are those without
 * a draft, and the draft's sequence is the target's without the image
 * block. */
START_TEST(test_spec_draft_image) {
    mg_model *m = NULL, *dm = NULL;
    char err[256];
    ck_assert_msg(mg_model_load(&m, tu_make_model("spec_img.mgm", "--shape tiny --seed 21"), NULL,
                                err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(mg_model_load(&dm, tu_make_model("spec_img_draft.mgm",
                                                   "--shape tiny --seed 22 --layers 1"),
                                NULL, err, sizeof err) == MG_OK, "%s", err);
    uint8_t px[32 * 24 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7 % 251);
    mg_image *img = NULL;
    ck_assert_int_eq(mg_image_from_pixels(&img, px, 32, 24, 0, MG_PIXEL_RGB8, NULL, err,
                                          sizeof err), MG_OK);
    mg_context *a = NULL, *b = NULL, *d = NULL;
    ck_assert_int_eq(mg_context_new(&a, m, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&b, m, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&d, dm, NULL), MG_OK);
    const char *qs[3] = {"Is there a fracture?", "Where is it?", "a b a b a b a b"};
    const mg_image *const imgs[1] = {img};
    for (int q = 0; q < 3; q++) {
        mg_gen_params gp = MG_GEN_PARAMS_INIT;
        gp.max_tokens = 24;
        char *x = NULL, *y = NULL;
        ck_assert_int_eq(mg_vqa(&x, a, imgs, 1, qs[q], &gp), MG_OK);
        gp.draft = d;
        ck_assert_msg(mg_vqa(&y, b, imgs, 1, qs[q], &gp) == MG_OK, "%s", mg_context_errmsg(b));
        ck_assert_str_eq(x, y);
        mg_string_free(x);
        mg_string_free(y);
        int32_t tt[512], td[512];
        size_t nt = 0, nd = 0;
        ck_assert_int_eq(mg_context_tokens(tt, 512, &nt, b), MG_OK);
        ck_assert_int_eq(mg_context_tokens(td, 512, &nd, d), MG_OK);
        int32_t img_tok = mg_tokenizer_special(mg_model_tokenizer(m), MG_TOKEN_IMAGE);
        size_t k = 0;
        for (size_t i = 0; i < nt && k < nd; i++)
            if (tt[i] != img_tok) ck_assert_int_eq(td[k++], tt[i]);
        ck_assert_uint_eq(k, nd);
        ck_assert_uint_lt(nd, nt);
    }
    ck_assert_uint_gt(b->spec_drafted, 0);
    mg_context_free(a);
    mg_context_free(b);
    mg_context_free(d);
    mg_image_free(img);
    mg_model_free(m);
    mg_model_free(dm);
}
END_TEST

/* Stopping a call that drafts with a model (the token callback, at the
 * third piece: deterministic, unlike progress reports, which are spaced in
 * time) returns MG_E_INTERRUPTED with the text so far and releases the
 * draft context, which then serves the next call as before. */
static int32_t stop_at_3(void *user, const char *piece, size_t len, int32_t tok) {
    (void)piece, (void)len, (void)tok;
    return ++*(int *)user >= 3;
}

START_TEST(test_spec_draft_interrupt) {
    mg_model *m = load_tiny();
    mg_context *a = NULL, *b = NULL, *d = NULL;
    ck_assert_int_eq(mg_context_new(&a, m, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&b, m, NULL), MG_OK);
    ck_assert_int_eq(mg_context_new(&d, m, NULL), MG_OK);
    const int32_t ids[6] = {2, 30, 31, 32, 30, 31};
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 40;
    gp.draft = d;
    int pieces = 0;
    gp.on_token = stop_at_3;
    gp.user_data = &pieces;
    char *out = NULL;
    ck_assert_int_eq(mg_generate_ids(&out, b, ids, 6, &gp), MG_E_INTERRUPTED);
    ck_assert_ptr_nonnull(out);
    mg_string_free(out);
    ck_assert_int_eq(atomic_load(&d->busy), 0);
    gp.on_token = NULL;
    char *x = NULL, *y = NULL;
    ck_assert_int_eq(mg_generate_ids(&y, b, ids, 6, &gp), MG_OK);
    gp.draft = NULL;
    ck_assert_int_eq(mg_generate_ids(&x, a, ids, 6, &gp), MG_OK);
    ck_assert_str_eq(x, y);
    mg_string_free(x);
    mg_string_free(y);
    mg_context_free(a);
    mg_context_free(b);
    mg_context_free(d);
    mg_model_free(m);
}
END_TEST

START_TEST(test_output_is_utf8) {
    mg_model *m = load_tiny();
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 64;
    gp.temperature = 2.0f;
    cbstate *cs = calloc(1, sizeof *cs);
    gp.on_token = collect;
    gp.user_data = cs;
    int replaced = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        memset(cs, 0, sizeof *cs);
        gp.seed = seed;
        char *got = NULL;
        ck_assert_int_eq(mg_generate_ids(&got, c, k_prompt, 6, &gp), MG_OK);
        ck_assert(mg__utf8_valid(got, strlen(got)));
        ck_assert_str_eq(cs->text, got);
        replaced |= strstr(got, "\xef\xbf\xbd") != NULL;
        mg_string_free(got);
    }
    ck_assert_msg(replaced, "expected some invalid byte sequences to be replaced");
    free(cs);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

START_TEST(test_generate_text_prompt) {
    mg_model *m = load_tiny();
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 8;
    char *a = NULL, *b = NULL;
    ck_assert_int_eq(mg_generate(&a, c, "Findings: clear lungs.", &gp), MG_OK);
    /* The chat turn changes what the model sees. */
    gp.flags = MG_GEN_RAW_PROMPT;
    ck_assert_int_eq(mg_generate(&b, c, "Findings: clear lungs.", &gp), MG_OK);
    ck_assert_uint_gt(mg_context_n_tokens(c), 0);
    mg_string_free(a);
    mg_string_free(b);
    ck_assert_int_eq(mg_generate(&a, c, "", &gp), MG_E_INVALID_ARG); /* raw and empty */
    ck_assert_ptr_null(a);
    ck_assert_int_eq(mg_context_reset(c), MG_OK);
    ck_assert_uint_eq(mg_context_n_tokens(c), 0);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

START_TEST(test_generate_misuse) {
    mg_model *m = load_tiny();
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    char *out = (char *)0x1;
    ck_assert_int_eq(mg_generate(&out, NULL, "x", NULL), MG_E_MISUSE);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(mg_generate(NULL, c, "x", NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_generate(&out, c, NULL, NULL), MG_E_INVALID_ARG);
    const int32_t bad[2] = {2, 512};
    ck_assert_int_eq(mg_generate_ids(&out, c, bad, 2, NULL), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "out of range"));
    const int32_t neg[1] = {-1};
    ck_assert_int_eq(mg_context_eval(c, neg, 1, NULL, 0), MG_E_INVALID_ARG);
    float lg[10];
    ck_assert_int_eq(mg_context_eval(c, k_prompt, 1, lg, 10), MG_E_BUFFER_TOO_SMALL);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.n_stop = 1; /* with stop == NULL */
    ck_assert_int_eq(mg_generate_ids(&out, c, k_prompt, 6, &gp), MG_E_INVALID_ARG);
    gp.n_stop = 0;
    gp.flags = 0x80;
    ck_assert_int_eq(mg_generate_ids(&out, c, k_prompt, 6, &gp), MG_E_INVALID_ARG);
    ck_assert_uint_eq(mg_context_n_tokens(NULL), 0);
    ck_assert_int_eq(mg_context_reset(NULL), MG_E_MISUSE);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("generate");
    TCase *ts = tcase_create("sampler");
    tcase_set_timeout(ts, 120);
    tcase_add_test(ts, test_rng);
    tcase_add_test(ts, test_greedy);
    tcase_add_test(ts, test_distributions);
    tcase_add_test(ts, test_spec_verify);
    tcase_add_test(ts, test_sample_dist);
    suite_add_tcase(s, ts);
    TCase *tg = tcase_create("generate");
    tcase_set_timeout(tg, 300);
    tcase_add_test(tg, test_generate_deterministic);
    tcase_add_test(tg, test_greedy_matches_eval_loop);
    tcase_add_test(tg, test_context_logits);
    tcase_add_test(tg, test_stop_strings_and_limits);
    tcase_add_test(tg, test_interrupt_other_thread);
    tcase_add_test(tg, test_generate_text_prompt);
    tcase_add_test(tg, test_output_is_utf8);
    tcase_add_loop_test(tg, test_speculative, 0, 3);
    tcase_add_test(tg, test_generate_misuse);
    suite_add_tcase(s, tg);
    TCase *tp = tcase_create("speculative");
    tcase_set_timeout(tp, 300);
    tcase_add_loop_test(tp, test_spec_draft_greedy, 0, 3);
    tcase_add_test(tp, test_spec_draft_refused);
    tcase_add_test(tp, test_spec_draft_image);
    tcase_add_test(tp, test_spec_draft_interrupt);
    tcase_add_test(tp, test_spec_sampling);
    suite_add_tcase(s, tp);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
