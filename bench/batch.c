/* batch.c - batched decoding (mg_batch) for a server: N requests at once,
 * one thread and one context each, with and without a batch, in one run.
 * Prints for N = 1, 2, 4 (or the counts given) the throughput of the
 * generated tokens (all requests), each request's time from its start to
 * its first token and to its end (mean), and the batch's mean step size;
 * and checks that every request's text is the same in both modes.
 *
 *   lib/bench/batch MODEL.mgm [THREADS] [TOKENS] [REPS] [N...]
 *
 * THREADS (default 2) is both the unbatched contexts' and the batch's
 * thread count (the machine's cores: an unbatched server gives each request
 * all of them). Prompts are short text prompts, different per request.
 * Without arguments it prints its usage and exits 0 (make bench runs it
 * bare). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "medgemini.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct job {
    mg_model *m;
    mg_context *c;
    const char *prompt;
    uint32_t ntok;
    double t0, first, end;
    uint32_t n;
    char *text;
    mg_status st;
} job;

static int32_t on_tok(void *u, const char *piece, size_t len, int32_t token) {
    (void)piece, (void)len, (void)token;
    job *j = u;
    if (!j->n++) j->first = now();
    return 0;
}

static void *run(void *arg) {
    job *j = arg;
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = j->ntok;
    gp.on_token = on_tok;
    gp.user_data = j;
    j->n = 0;
    j->t0 = now();
    mg_string_free(j->text);
    j->text = NULL;
    j->st = mg_generate(&j->text, j->c, j->prompt, &gp);
    j->end = now();
    return NULL;
}

static const char *k_prompts[8] = {
    "Describe a normal chest radiograph.", "What does cardiomegaly look like on a film?",
    "Write the findings of a lateral chest view.", "List signs of pleural effusion.",
    "Summarize a CT of the abdomen.", "What is a pneumothorax?",
    "Explain the silhouette sign.", "Describe the costophrenic angles."};

typedef struct result { double tps, first, end, rows_per_step; } result;

/* One round of n requests at once on the given contexts. */
static int round_of(job *jobs, uint32_t n, result *r) {
    pthread_t th[8];
    double t0 = now();
    for (uint32_t i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, run, &jobs[i])) return 1;
    for (uint32_t i = 0; i < n; i++) pthread_join(th[i], NULL);
    double wall = now() - t0, toks = 0, first = 0, end = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (jobs[i].st != MG_OK) {
            fprintf(stderr, "request %u: %s\n", i, mg_status_str(jobs[i].st));
            return 1;
        }
        toks += jobs[i].n;
        first += jobs[i].first - jobs[i].t0;
        end += jobs[i].end - jobs[i].t0;
    }
    r->tps = toks / wall;
    r->first = first / n;
    r->end = end / n;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        printf("usage: batch MODEL.mgm [THREADS] [TOKENS] [REPS] [N...]\n");
        return 0;
    }
    uint32_t threads = argc > 2 ? (uint32_t)atoi(argv[2]) : 2;
    uint32_t ntok = argc > 3 ? (uint32_t)atoi(argv[3]) : 64;
    int reps = argc > 4 ? atoi(argv[4]) : 2;
    uint32_t counts[8] = {1, 2, 4}, nc = 3;
    if (argc > 5) {
        nc = 0;
        for (int a = 5; a < argc && nc < 8; a++) {
            int v = atoi(argv[a]);
            if (v >= 1 && v <= 8) counts[nc++] = (uint32_t)v;
        }
    }
    char err[512];
    mg_model *m = NULL;
    if (mg_model_load(&m, argv[1], NULL, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    mg_batch_params bp = MG_BATCH_PARAMS_INIT;
    bp.n_threads = threads;
    mg_batch *b = NULL;
    if (mg_batch_new(&b, m, &bp)) {
        fprintf(stderr, "cannot make a batch\n");
        return 1;
    }
    printf("model %s, %u threads, %u tokens a request, best of %d\n", argv[1], threads, ntok,
           reps);
    printf("%-3s | %-28s | %-28s | %s\n", "N", "alone: tok/s, first, end (s)",
           "batched: tok/s, first, end (s)", "throughput ratio, rows/step, same text");
    int bad = 0;
    for (uint32_t ci = 0; ci < nc; ci++) {
        uint32_t n = counts[ci];
        job alone[8], batched[8];
        memset(alone, 0, sizeof alone);
        memset(batched, 0, sizeof batched);
        mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
        cp.n_threads = threads;
        cp.n_ctx = 512;
        cp.flags = MG_CONTEXT_NO_REUSE;
        for (uint32_t i = 0; i < n; i++) {
            alone[i] = (job){m, NULL, k_prompts[i % 8], ntok, 0, 0, 0, 0, NULL, MG_OK};
            batched[i] = alone[i];
            mg_context_params bcp = cp;
            bcp.batch = b;
            if (mg_context_new(&alone[i].c, m, &cp) || mg_context_new(&batched[i].c, m, &bcp)) {
                fprintf(stderr, "cannot make contexts\n");
                return 1;
            }
        }
        result ra = {0}, rb = {0}, r;
        mg_batch_stats s0, s1;
        mg_batch_get_stats(b, &s0);
        for (int rep = 0; rep < reps; rep++) { /* alternating, best of each */
            if (round_of(alone, n, &r)) return 1;
            if (r.tps > ra.tps) ra = r;
            if (round_of(batched, n, &r)) return 1;
            if (r.tps > rb.tps) rb = r;
        }
        mg_batch_get_stats(b, &s1);
        double rps = (double)(s1.rows - s0.rows) / (double)(s1.steps - s0.steps);
        int same = 1;
        for (uint32_t i = 0; i < n; i++) same &= !strcmp(alone[i].text, batched[i].text);
        bad |= !same;
        printf("%-3u | %8.2f %8.2f %9.2f  | %8.2f %8.2f %9.2f  | %5.2fx %5.2f %s\n", n, ra.tps,
               ra.first, ra.end, rb.tps, rb.first, rb.end, rb.tps / ra.tps, rps,
               same ? "yes" : "NO");
        fflush(stdout);
        for (uint32_t i = 0; i < n; i++) {
            mg_string_free(alone[i].text);
            mg_string_free(batched[i].text);
            mg_context_free(alone[i].c);
            mg_context_free(batched[i].c);
        }
    }
    mg_batch_free(b);
    mg_model_free(m);
    return bad;
}
