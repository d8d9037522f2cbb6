/* check_threads.c - the threading contract, for the race detector (make
 * check-tsan) as much as for itself: one model shared by several threads,
 * each with its own context, running reports, questions, conversations and
 * text generation with progress callbacks, while other threads interrupt
 * them; the answers of uninterrupted calls equal those of the same calls
 * made one after the other on one thread. Polygenic scores: handles
 * computed on several threads at once, each stopped now and then by
 * mg_prs_interrupt from another thread, give the results of a quiet run. */
#include "testutil.h"

#include "medgemini.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_WORKERS 3
#define N_ROUNDS 3

static mg_model *g_model;
static mg_image *g_img[2];

static int32_t count_progress(void *u, const mg_progress *p) {
    (void)p;
    atomic_fetch_add((atomic_int *)u, 1);
    return 0;
}

/* The calls of one round on ctx: texts into out[0..3] (caller frees). */
static mg_status round_calls(mg_context *c, int who, char **out, atomic_int *events) {
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 6;
    gp.on_progress = count_progress;
    gp.progress_user_data = events;
    const mg_image *one[1] = {g_img[who % 2]};
    mg_status st = mg_generate_report(&out[0], c, one, 1, &gp);
    if (st == MG_OK) st = mg_vqa(&out[1], c, one, 1, "Is it normal?", &gp);
    if (st == MG_OK) st = mg_chat(&out[2], c, one, 1, "Describe it.", &gp);
    if (st == MG_OK) st = mg_chat(&out[3], c, NULL, 0, "Why?", &gp);
    return st;
}

typedef struct worker {
    int who;
    char *want[4];        /* the quiet run's texts */
    atomic_int done_rounds, interrupted, events;
    int failed;
    mg_context *ctx;
    atomic_int ready;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_threads = 1 + (uint32_t)(w->who % 2);
    if (mg_context_new(&w->ctx, g_model, &cp) != MG_OK) {
        w->failed = 1;
        atomic_store(&w->ready, 1);
        return NULL;
    }
    atomic_store(&w->ready, 1);
    for (int r = 0; r < N_ROUNDS; r++) {
        char *out[4] = {NULL, NULL, NULL, NULL};
        mg_context_reset(w->ctx); /* a new conversation each round */
        mg_status st = round_calls(w->ctx, w->who, out, &w->events);
        if (st == MG_E_INTERRUPTED) {
            atomic_fetch_add(&w->interrupted, 1);
        } else if (st != MG_OK) {
            w->failed = 1;
        } else {
            for (int k = 0; k < 4; k++)
                if (!out[k] || strcmp(out[k], w->want[k])) w->failed = 2;
            atomic_fetch_add(&w->done_rounds, 1);
        }
        for (int k = 0; k < 4; k++) mg_string_free(out[k]);
    }
    return NULL;
}

typedef struct stopper { worker *w; atomic_int stop; } stopper;

static void *interrupt_now_and_then(void *arg) {
    stopper *s = arg;
    while (!atomic_load(&s->w->ready)) usleep(100);
    unsigned n = 0;
    while (!atomic_load(&s->stop)) {
        if (++n % 7 == 0 && s->w->ctx) mg_context_interrupt(s->w->ctx);
        usleep(2000);
    }
    return NULL;
}

START_TEST(test_shared_model) {
    char err[512];
    ck_assert_int_eq(mg_model_load(&g_model, tu_make_model("thr.mgm", "--shape tiny --seed 8"),
                                   NULL, err, sizeof err), MG_OK);
    uint64_t seed = 5;
    for (int i = 0; i < 2; i++) {
        uint8_t px[40 * 30 * 3];
        for (size_t k = 0; k < sizeof px; k++) px[k] = (uint8_t)(tu_rand_u64(&seed) >> 56);
        ck_assert_int_eq(mg_image_from_pixels(&g_img[i], px, 40, 30, 0, MG_PIXEL_RGB8, NULL, err,
                                              sizeof err), MG_OK);
    }
    /* the quiet run, one thread */
    static worker w[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].who = i;
        mg_context *c = NULL;
        ck_assert_int_eq(mg_context_new(&c, g_model, NULL), MG_OK);
        atomic_int ev = 0;
        ck_assert_int_eq(round_calls(c, i, w[i].want, &ev), MG_OK);
        mg_context_free(c);
    }
    /* the same, all at once, worker 0 interrupted now and then */
    pthread_t th[N_WORKERS], it;
    stopper s = {&w[0], 0};
    for (int i = 0; i < N_WORKERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    ck_assert_int_eq(pthread_create(&it, NULL, interrupt_now_and_then, &s), 0);
    for (int i = 0; i < N_WORKERS; i++) pthread_join(th[i], NULL);
    atomic_store(&s.stop, 1);
    pthread_join(it, NULL);
    mg_model_free(g_model); /* the contexts keep it alive */
    fprintf(stderr, "check_threads: %d workers x %d rounds; worker 0 interrupted in %d\n",
            N_WORKERS, N_ROUNDS, atomic_load(&w[0].interrupted));
    for (int i = 0; i < N_WORKERS; i++) {
        ck_assert_msg(!w[i].failed, "worker %d failed (%d)", i, w[i].failed);
        ck_assert_int_gt(atomic_load(&w[i].events), 0);
        if (i) ck_assert_int_eq(atomic_load(&w[i].done_rounds), N_ROUNDS);
        ck_assert_int_eq(atomic_load(&w[i].done_rounds) + atomic_load(&w[i].interrupted),
                         N_ROUNDS);
        mg_context_free(w[i].ctx);
        for (int k = 0; k < 4; k++) mg_string_free(w[i].want[k]);
    }
    mg_image_free(g_img[0]);
    mg_image_free(g_img[1]);
}
END_TEST

/* ---- polygenic scores ---------------------------------------------------------- */

static const char *g_prefix, *g_score;
#define NV 4096

static void make_plink(void) {
    static char pre[600], score[700], p[700];
    snprintf(pre, sizeof pre, "%s", tu_tmp_path("thr_fx"));
    snprintf(p, sizeof p, "%s.fam", pre);
    const char *fam = "f1 i1 0 0 1 -9\nf2 i2 0 0 2 -9\nf3 i3 0 0 1 -9\nf4 i4 0 0 2 -9\n";
    ck_assert_int_eq(tu_write_file(p, fam, strlen(fam)), 0);
    /* NV variants on chromosome 1, random calls */
    static char bim[NV * 40];
    size_t o = 0;
    for (int v = 0; v < NV; v++)
        o += (size_t)snprintf(bim + o, sizeof bim - o, "1\trs%d\t0\t%d\tA\tG\n", v, 100 + v);
    snprintf(p, sizeof p, "%s.bim", pre);
    ck_assert_int_eq(tu_write_file(p, bim, o), 0);
    static unsigned char bed[3 + NV];
    bed[0] = 0x6c, bed[1] = 0x1b, bed[2] = 0x01;
    uint64_t seed = 9;
    for (int v = 0; v < NV; v++) bed[3 + v] = (unsigned char)(tu_rand_u64(&seed) >> 56);
    snprintf(p, sizeof p, "%s.bed", pre);
    ck_assert_int_eq(tu_write_file(p, bed, sizeof bed), 0);
    static char sc[NV * 40 + 32];
    o = (size_t)snprintf(sc, sizeof sc, "ID\tA1\ts1\ts2\n");
    for (int v = 0; v < NV; v++)
        o += (size_t)snprintf(sc + o, sizeof sc - o, "rs%d\tA\t%g\t%g\n", v, 0.01 * v - 0.3,
                              v % 3 ? 0.5 : -0.25);
    snprintf(score, sizeof score, "%s.score", pre);
    ck_assert_int_eq(tu_write_file(score, sc, o), 0);
    g_prefix = pre;
    g_score = score;
}

typedef struct prs_worker {
    mg_prs *p;
    double want[8], got[8];
    atomic_int stopped, completed;
    int failed, interrupted;
} prs_worker;

/* 20 computes; a handle interrupted from another thread goes on until at
 * least one was stopped (at most 2000). */
static void *prs_work(void *arg) {
    prs_worker *w = arg;
    for (int r = 0; r < 20 || (w->interrupted && !atomic_load(&w->stopped) && r < 2000); r++) {
        mg_status st = mg_prs_compute(w->p);
        if (st == MG_E_INTERRUPTED) {
            atomic_fetch_add(&w->stopped, 1);
            continue;
        }
        if (st != MG_OK || mg_prs_results(w->got, 4, w->p, MG_PRS_COL_SUM, 1) != MG_OK ||
            memcmp(w->got, w->want, 4 * sizeof(double)))
            w->failed = 1;
        atomic_fetch_add(&w->completed, 1);
    }
    return NULL;
}

typedef struct prs_stopper { mg_prs *p; atomic_int stop; } prs_stopper;

static void *prs_interrupt(void *arg) {
    prs_stopper *s = arg;
    while (!atomic_load(&s->stop)) {
        mg_prs_interrupt(s->p);
        usleep(200);
    }
    return NULL;
}

START_TEST(test_prs_handles) {
    make_plink();
    prs_worker w[2];
    prs_stopper s = {NULL, 0};
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        mg_prs_params pp = MG_PRS_PARAMS_INIT;
        pp.n_threads = 2;
        pp.block_variants = 4;
        ck_assert_int_eq(mg_prs_open_plink(&w[i].p, g_prefix, &pp, NULL, 0), MG_OK);
        ck_assert_int_eq(mg_prs_add_scores(w[i].p, NULL, g_score), MG_OK);
        ck_assert_int_eq(mg_prs_compute(w[i].p), MG_OK);
        ck_assert_int_eq(mg_prs_results(w[i].want, 4, w[i].p, MG_PRS_COL_SUM, 1), MG_OK);
    }
    s.p = w[1].p;
    w[1].interrupted = 1;
    pthread_t th[2], it;
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, prs_work, &w[i]), 0);
    ck_assert_int_eq(pthread_create(&it, NULL, prs_interrupt, &s), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    atomic_store(&s.stop, 1);
    pthread_join(it, NULL);
    fprintf(stderr, "check_threads: polygenic: the interrupted handle: %d computes stopped, %d "
            "completed\n", atomic_load(&w[1].stopped), atomic_load(&w[1].completed));
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(!w[i].failed, "handle %d: wrong results", i);
        if (!i) ck_assert_int_eq(atomic_load(&w[i].completed), 20);
        mg_prs_free(w[i].p);
    }
    ck_assert_int_eq(atomic_load(&w[0].stopped), 0);
    ck_assert_int_gt(atomic_load(&w[1].stopped), 0); /* the ones that ran through are checked */
}
END_TEST

int main(void) {
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_shared_model);
    tcase_add_test(tc, test_prs_handles);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
