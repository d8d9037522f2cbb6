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
    free(cs);
    mg_context_free(c);

    /* Context full: 16 tokens of room, 6 of prompt. */
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_ctx = 16;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    gp.max_tokens = 100;
    gp.on_token = NULL;
    got = NULL;
    mg_status st = mg_generate_ids(&got, c, k_prompt, 6, &gp);
    if (st == MG_E_CONTEXT_FULL) {
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_eq(mg_context_n_tokens(c), 16);
    } else {
        ck_assert_int_eq(st, MG_OK); /* ended by EOS first: acceptable */
    }
    mg_string_free(got);
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
 * weight types, stop strings, a repetition penalty and token limits; with
 * sampling the flag changes nothing. */
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
        if (k % 8 == 7) { gp.temperature = 0.8f; gp.seed = 5 + (uint64_t)k; }
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
    return s;
}

int main(void) { return tu_run_suite(suite()); }
