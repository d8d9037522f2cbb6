/* check_batch.c - batched decoding (mg_batch): contexts generating at the
 * same time in several threads share decode steps, and every context's
 * text, sequence and final logits are bit for bit those of the same call on
 * a context of its own (the reference run, one call at a time); also the
 * decoder's row kernel against lone forwards, the batch's statistics,
 * interrupts, and misuse. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "core/core.h"
#include "llm/decoder.h"
#include "medgemini.h"
#include "testutil.h"

#define N_REQ 4
#define VOCAB_MAX 4096

static mg_model *load(const char *name, const char *args) {
    mg_model *m = NULL;
    char err[256];
    ck_assert_msg(mg_model_load(&m, tu_make_model(name, args), NULL, err, sizeof err) == MG_OK,
                  "%s", err);
    return m;
}

/* One request: a prompt and its generation settings, and what came out. */
typedef struct req {
    mg_context *c;
    int32_t prompt[48];
    uint32_t np;
    mg_gen_params gp;
    mg_status st;
    char *text;
    int32_t toks[512];
    size_t nt;
    float *logits;
    uint32_t vocab;
    int first;                  /* the gate is still ahead */
} req;

/* A gate the requests' first tokens wait at (at most a second), so that
 * all of them are generating when the steps begin. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_waiting;

static int gate(void *user, const char *piece, size_t len, int32_t tok) {
    int *first = user;
    (void)piece;
    (void)len;
    (void)tok;
    if (!*first) return 0;
    *first = 0;
    pthread_mutex_lock(&g_mu);
    g_waiting++;
    pthread_cond_broadcast(&g_cv);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 1;
    while (g_waiting % N_REQ && !pthread_cond_timedwait(&g_cv, &g_mu, &dl)) {}
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static void req_init(req *r, int k, uint64_t *seed, uint32_t vocab) {
    memset(r, 0, sizeof *r);
    r->np = 3 + (uint32_t)(tu_rand_u64(seed) % 40);
    r->prompt[0] = 2;
    for (uint32_t i = 1; i < r->np; i++) r->prompt[i] = 10 + (int32_t)(tu_rand_u64(seed) % 400);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 20 + (uint32_t)(tu_rand_u64(seed) % 40); /* they end at different steps */
    if (k % 4 == 1) { gp.temperature = 0.9f; gp.seed = 77 + (uint64_t)k; }
    if (k % 4 == 2) gp.repetition_penalty = 1.2f;
    r->gp = gp;
    r->vocab = vocab;
}

static void req_run(req *r) {
    r->first = 1;
    r->st = mg_generate_ids(&r->text, r->c, r->prompt, r->np, &r->gp);
    if (r->st != MG_OK) return;
    ck_assert_int_eq(mg_context_tokens(r->toks, 512, &r->nt, r->c), MG_OK);
    r->logits = malloc(r->vocab * sizeof *r->logits);
    ck_assert_int_eq(mg_context_logits(r->c, r->logits, r->vocab), MG_OK);
}

static void *req_thread(void *arg) {
    req_run(arg);
    return NULL;
}

static void req_same(const req *a, const req *b, int k) {
    ck_assert_int_eq(a->st, MG_OK);
    ck_assert_int_eq(b->st, MG_OK);
    ck_assert_msg(!strcmp(a->text, b->text), "request %d: alone '%s', batched '%s'", k, a->text,
                  b->text);
    ck_assert_uint_eq(a->nt, b->nt);
    ck_assert_msg(!memcmp(a->toks, b->toks, a->nt * sizeof *a->toks), "request %d: tokens", k);
    float worst = 0;
    uint32_t at = 0;
    for (uint32_t i = 0; i < a->vocab; i++)
        if (fabsf(a->logits[i] - b->logits[i]) > worst) { worst = fabsf(a->logits[i] - b->logits[i]); at = i; }
    ck_assert_msg(!memcmp(a->logits, b->logits, a->vocab * sizeof *a->logits),
                  "request %d: final logits differ (by %g at %u, %g vs %g; %zu tokens)", k, worst, at, a->logits[at], b->logits[at], a->nt);
}

static void req_free(req *r) {
    mg_string_free(r->text);
    free(r->logits);
    r->text = NULL;
    r->logits = NULL;
}

/* The row kernel: rows of several states in one call equal lone forwards
 * bit for bit, f32 and q8_0 weights, bf16 and f32 caches mixed. */
START_TEST(test_forward_rows) {
    const char *dts[2] = {"f32", "q8_0"};
    char args[128];
    snprintf(args, sizeof args, "--shape tiny --no-vision --dtype %s --seed %d", dts[_i], 5 + _i);
    mg_model *m = load("rows.mgm", args);
    const mg__decoder *d = m->decoder;
    const uint32_t V = mg__decoder_config(d)->vocab;
    mg__pool *pool = mg__pool_new(2);
    mg__dstate *a[3], *b[3], *scratch = NULL;
    for (int i = 0; i < 3; i++) {
        mg__dstate_opts o = {2, i == 1 ? MG__DSTATE_KV_BF16 : 0};
        ck_assert_int_eq(mg__dstate_new(&a[i], d, 256, 32, &o), MG_OK);
        ck_assert_int_eq(mg__dstate_new(&b[i], d, 256, 32, &o), MG_OK);
    }
    mg__dstate_opts so = {2, 0};
    ck_assert_int_eq(mg__dstate_new(&scratch, d, 4, 4, &so), MG_OK);
    float *la = malloc(4 * (size_t)V * sizeof *la), *lb = malloc(4 * (size_t)V * sizeof *lb);
    uint64_t seed = 3;
    /* different prompt lengths: the rows sit at different positions */
    for (int i = 0; i < 3; i++) {
        int32_t p[40];
        uint32_t n = 5 + 11 * (uint32_t)i;
        for (uint32_t t = 0; t < n; t++) p[t] = (int32_t)(tu_rand_u64(&seed) % V);
        ck_assert_int_eq(mg__decoder_forward(a[i], p, NULL, NULL, n, la, 0, pool), MG_OK);
        ck_assert_int_eq(mg__decoder_forward(b[i], p, NULL, NULL, n, la, 0, pool), MG_OK);
    }
    for (int step = 0; step < 150; step++) {
        uint32_t n = 1 + (uint32_t)step % 3; /* 1, 2 or 3 rows */
        int32_t tok[3];
        mg__dstate *rows[3];
        for (uint32_t i = 0; i < n; i++) {
            tok[i] = (int32_t)(tu_rand_u64(&seed) % V);
            rows[i] = a[(step + i) % 3];
        }
        ck_assert_int_eq(mg__decoder_forward_rows(scratch, rows, tok, n, la, pool), MG_OK);
        for (uint32_t i = 0; i < n; i++) {
            mg__dstate *lone = b[(step + i) % 3];
            ck_assert_int_eq(mg__decoder_forward(lone, &tok[i], NULL, NULL, 1, lb, 0, pool),
                             MG_OK);
            ck_assert_uint_eq(mg__dstate_pos(lone), mg__dstate_pos(rows[i]));
            ck_assert_msg(!memcmp(la + (size_t)i * V, lb, V * sizeof *lb),
                          "step %d row %u: logits differ", step, i);
        }
    }
    /* refused: a state twice, the scratch among the rows, a bad token, too
     * many rows; nothing moves */
    int32_t tok[5] = {1, 2, 3, 4, 5};
    mg__dstate *twice[2] = {a[0], a[0]}, *self[2] = {a[0], scratch};
    uint32_t p0 = mg__dstate_pos(a[0]);
    ck_assert_int_eq(mg__decoder_forward_rows(scratch, twice, tok, 2, la, pool), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__decoder_forward_rows(scratch, self, tok, 2, la, pool), MG_E_INVALID_ARG);
    int32_t bad = (int32_t)V;
    ck_assert_int_eq(mg__decoder_forward_rows(scratch, a, &bad, 1, la, pool), MG_E_INVALID_ARG);
    mg__dstate *five[5] = {a[0], a[1], a[2], b[0], b[1]};
    ck_assert_int_eq(mg__decoder_forward_rows(scratch, five, tok, 5, la, pool), MG_E_INVALID_ARG);
    ck_assert_uint_eq(mg__dstate_pos(a[0]), p0);
    free(la);
    free(lb);
    for (int i = 0; i < 3; i++) {
        mg__dstate_free(a[i]);
        mg__dstate_free(b[i]);
    }
    mg__dstate_free(scratch);
    mg__pool_free(pool);
    mg_model_free(m);
}
END_TEST

/* N_REQ threads generating at once through a batch, against each request
 * alone on a context of its own. */
START_TEST(test_batch_threads) {
    const char *dts[2] = {"q8_0", "f32"};
    char args[128];
    snprintf(args, sizeof args, "--shape tiny --no-vision --dtype %s --seed %d", dts[_i], 41 + _i);
    mg_model *m = load("batch.mgm", args);
    const uint32_t V = mg__decoder_config(m->decoder)->vocab;
    ck_assert_uint_le(V, VOCAB_MAX);
    static req alone[N_REQ], batched[N_REQ];
    uint64_t seed = 1234 + (uint64_t)_i;
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_threads = 2;
    cp.n_ctx = 256;
    cp.flags = MG_CONTEXT_NO_REUSE; /* each round reads its prompt afresh */
    for (int k = 0; k < N_REQ; k++) {
        req_init(&alone[k], k, &seed, V);
        batched[k] = alone[k];
        ck_assert_int_eq(mg_context_new(&alone[k].c, m, &cp), MG_OK);
        req_run(&alone[k]);
    }
    mg_batch_params bp = MG_BATCH_PARAMS_INIT;
    bp.n_threads = 2;
    bp.wait_us = 200000; /* long: steps wait for every generating thread */
    mg_batch *b = NULL;
    ck_assert_int_eq(mg_batch_new(&b, m, &bp), MG_OK);
    cp.batch = b;
    for (int k = 0; k < N_REQ; k++) {
        batched[k].gp.on_token = gate;
        batched[k].gp.user_data = &batched[k].first;
    }
    g_waiting = 0;
    const int rounds = tu_under_valgrind() ? 1 : 3;
    for (int round = 0; round < rounds; round++) {
        pthread_t th[N_REQ];
        for (int k = 0; k < N_REQ; k++) {
            if (!batched[k].c) ck_assert_int_eq(mg_context_new(&batched[k].c, m, &cp), MG_OK);
            ck_assert_int_eq(pthread_create(&th[k], NULL, req_thread, &batched[k]), 0);
        }
        for (int k = 0; k < N_REQ; k++) pthread_join(th[k], NULL);
        for (int k = 0; k < N_REQ; k++) {
            req_same(&alone[k], &batched[k], k);
            req_free(&batched[k]);
        }
    }
    mg_batch_stats bs;
    ck_assert_int_eq(mg_batch_get_stats(b, &bs), MG_OK);
    uint64_t rows = 0, steps = 0;
    for (int i = 0; i < 8; i++) {
        rows += (uint64_t)(i + 1) * bs.by_rows[i];
        steps += bs.by_rows[i];
    }
    ck_assert_uint_eq(rows, bs.rows);
    ck_assert_uint_eq(steps, bs.steps);
    /* every generated token but the last of each call went through a step */
    uint64_t want = 0;
    for (int k = 0; k < N_REQ; k++) want += alone[k].nt - alone[k].np;
    ck_assert_uint_eq(bs.rows, want * (uint64_t)rounds);
    fprintf(stderr, "check_batch (%s): %llu rows in %llu steps (%.2f a step)\n", dts[_i],
            (unsigned long long)bs.rows, (unsigned long long)bs.steps,
            (double)bs.rows / (double)bs.steps);
    ck_assert_msg(bs.by_rows[N_REQ - 1] > 0, "no step held all %d requests", N_REQ);
    /* a batched context used alone: one-row steps, the same output */
    for (int k = 0; k < N_REQ; k++) batched[k].gp.on_token = NULL;
    mg_batch_stats before = bs;
    req_run(&batched[0]);
    req_same(&alone[0], &batched[0], 0);
    req_free(&batched[0]);
    ck_assert_int_eq(mg_batch_get_stats(b, &bs), MG_OK);
    ck_assert_uint_eq(bs.by_rows[0] - before.by_rows[0], bs.steps - before.steps);
    /* the batch outlives its creator's reference while contexts use it */
    mg_batch_free(b);
    mg_batch_free(b); /* a second free of the same reference changes nothing */
    req_run(&batched[1]);
    req_same(&alone[1], &batched[1], 1);
    req_free(&batched[1]);
    for (int k = 0; k < N_REQ; k++) {
        mg_context_free(batched[k].c);
        mg_context_free(alone[k].c);
        req_free(&alone[k]);
    }
    mg_model_free(m);
}
END_TEST

typedef struct intr_arg {
    mg_context *c;
    int tokens;
} intr_arg;

static int stop_after(void *user, const char *piece, size_t len, int32_t tok) {
    intr_arg *a = user;
    (void)piece;
    (void)len;
    (void)tok;
    if (++a->tokens == 5) mg_context_interrupt(a->c);
    return 0;
}

static void *gen_thread(void *arg) {
    req *r = arg;
    r->st = mg_generate_ids(&r->text, r->c, r->prompt, r->np, &r->gp);
    return NULL;
}

/* An interrupted context leaves its batch; the others go on unchanged. */
START_TEST(test_batch_interrupt) {
    mg_model *m = load("batchi.mgm", "--shape tiny --no-vision --dtype q8_0 --seed 9");
    const uint32_t V = mg__decoder_config(m->decoder)->vocab;
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_threads = 2;
    cp.n_ctx = 256;
    uint64_t seed = 5;
    static req alone, r[2];
    req_init(&alone, 0, &seed, V);
    alone.gp.max_tokens = 40;
    r[0] = r[1] = alone;
    ck_assert_int_eq(mg_context_new(&alone.c, m, &cp), MG_OK);
    req_run(&alone);
    mg_batch *b = NULL;
    mg_batch_params bp = MG_BATCH_PARAMS_INIT;
    bp.n_threads = 2;
    bp.wait_us = 100000;
    ck_assert_int_eq(mg_batch_new(&b, m, &bp), MG_OK);
    cp.batch = b;
    ck_assert_int_eq(mg_context_new(&r[0].c, m, &cp), MG_OK);
    ck_assert_int_eq(mg_context_new(&r[1].c, m, &cp), MG_OK);
    intr_arg ia = {r[1].c, 0};
    r[1].gp.on_token = stop_after;
    r[1].gp.user_data = &ia;
    pthread_t th[2];
    for (int k = 0; k < 2; k++) ck_assert_int_eq(pthread_create(&th[k], NULL, gen_thread, &r[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    ck_assert_int_eq(r[1].st, MG_E_INTERRUPTED);
    ck_assert_int_eq(r[0].st, MG_OK);
    ck_assert_str_eq(r[0].text, alone.text);
    ck_assert_msg(!strncmp(r[1].text, alone.text, strlen(r[1].text)), "'%s' not a prefix of '%s'",
                  r[1].text, alone.text);
    mg_batch_free(b);
    for (int k = 0; k < 2; k++) {
        mg_string_free(r[k].text);
        mg_context_free(r[k].c);
    }
    req_free(&alone);
    mg_context_free(alone.c);
    mg_model_free(m);
}
END_TEST

START_TEST(test_batch_misuse) {
    mg_model *m = load("batchm.mgm", "--shape tiny --no-vision --dtype q8_0 --seed 11");
    mg_model *m2 = load("batchm2.mgm", "--shape tiny --no-vision --dtype q8_0 --seed 12");
    mg_batch *b = NULL;
    ck_assert_int_eq(mg_batch_new(NULL, m, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_batch_new(&b, NULL, NULL), MG_E_MISUSE);
    ck_assert_ptr_null(b);
    mg_batch_params bp;
    mg_batch_params_init(&bp);
    bp.max_rows = 9;
    ck_assert_int_eq(mg_batch_new(&b, m, &bp), MG_E_INVALID_ARG);
    mg_batch_params_init(&bp);
    bp.wait_us = 2000000;
    ck_assert_int_eq(mg_batch_new(&b, m, &bp), MG_E_INVALID_ARG);
    /* a newer caller's options this version does not know are refused */
    struct { mg_batch_params p; uint32_t extra; } big;
    memset(&big, 0, sizeof big);
    mg_batch_params_init(&big.p);
    big.p.struct_size = sizeof big;
    big.extra = 1;
    ck_assert_int_eq(mg_batch_new(&b, m, &big.p), MG_E_UNSUPPORTED);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(mg_batch_new(&b, m, NULL), MG_OK);
    mg_batch_stats bs;
    ck_assert_int_eq(mg_batch_get_stats(b, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_batch_get_stats(NULL, &bs), MG_E_MISUSE);
    ck_assert_int_eq(mg_batch_get_stats(b, &bs), MG_OK);
    ck_assert_uint_eq(bs.steps, 0);
    /* a batch serves the model it was made for */
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.batch = b;
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m2, &cp), MG_E_INVALID_ARG);
    ck_assert_ptr_null(c);
    mg_batch_free(b);
    mg_batch_free(NULL);
    mg_model_free(m);
    mg_model_free(m2);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("batch");
    TCase *t = tcase_create("batch");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, test_forward_rows, 0, 2);
    tcase_add_loop_test(t, test_batch_threads, 0, 2);
    tcase_add_test(t, test_batch_interrupt);
    tcase_add_test(t, test_batch_misuse);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
