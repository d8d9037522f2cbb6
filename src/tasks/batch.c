/* batch.c - mg_batch: decode steps of several contexts run as one.
 *
 * Contexts made with a batch hand each single-token decode step to it
 * (mg__batch_step). Requests queue in arrival order; the request at the
 * head of the queue, when no step is running, leads the next step: it
 * waits (up to wait_us) until every context of the batch that is
 * generating has queued a request, takes up to max_rows requests, runs
 * them through mg__decoder_forward_rows on the batch's pool and scratch
 * state with the lock released, then marks them done and wakes the others.
 * Requests that arrive during a step form the next one, so steps follow
 * each other without a gap (continuous batching). One step runs at a time:
 * the pool and the scratch state are the batch's. A context that is the
 * only one generating takes its step on its own pool, as it would without
 * the batch (handing one row to the batch's threads measured slower). */
#include "tasks/batch.h"

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MG__BATCH_MAX_ROWS 8u
#define MG__BATCH_WAIT_US 2000u
#define MG__BATCH_MAX_WAIT_US 1000000u
#define MG__BATCH_MAX_THREADS 512u

typedef struct mg__breq {
    mg_context *c;
    int32_t tok;
    mg_status st;
    int done;
} mg__breq;

struct mg_batch {
    uint32_t tag;                /* MG__TAG_BATCH */
    mg_model *model;
    mg__pool *pool;
    mg__dstate *scratch;         /* batch buffers of max_rows rows */
    float *logits;               /* max_rows x vocab */
    uint32_t n_threads, max_rows, wait_us, vocab;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                    /* the creator's and one per context */
    int user_freed;              /* mg_batch_free was called */
    uint32_t generating;         /* contexts inside a generating loop */
    mg__breq *queue[MG__BATCH_MAX_ROWS];
    uint32_t n_queue;
    int running;                 /* a step is being computed */
    mg_batch_stats stats;
};

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void batch_destroy(mg_batch *b) {
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    mg__dstate_free(b->scratch);
    mg__aligned_free(b->logits);
    mg__pool_free(b->pool);
    mg_model *m = b->model;
    b->tag = MG__TAG_DEAD;
    mg__free(b);
    mg__model_release(m);
}

MG_API void mg_batch_params_init(mg_batch_params *p) {
    if (!p) return;
    mg_batch_params d = MG_BATCH_PARAMS_INIT;
    *p = d;
}

MG_API mg_status mg_batch_new(mg_batch **out, mg_model *model, const mg_batch_params *params) {
    mg__last_clear();
    if (!out) return mg__last_err(MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!mg__model_ok(model)) return mg__last_err(MG_E_MISUSE, "not a loaded model");
    mg_batch_params p = MG_BATCH_PARAMS_INIT;
    mg_status st = mg__params_copy(&p, sizeof p, params);
    if (st != MG_OK)
        return mg__last_err(st == MG_E_UNSUPPORTED ? st : MG_E_INVALID_ARG,
                            "mg_batch_params: bad struct_size or fields this version does not "
                            "know");
    if (p.n_threads > MG__BATCH_MAX_THREADS || p.max_rows > MG__BATCH_MAX_ROWS ||
        p.wait_us > MG__BATCH_MAX_WAIT_US)
        return mg__last_err(MG_E_INVALID_ARG, "mg_batch_params out of range (n_threads %u, "
                            "max_rows %u of 8, wait_us %u of 1000000)", p.n_threads, p.max_rows,
                            p.wait_us);
    if (!model->decoder) return mg__last_err(MG_E_UNSUPPORTED, "the model has no text decoder");
    const mg__dconfig *dc = mg__decoder_config(model->decoder);
    if ((uint64_t)dc->ffn < (uint64_t)dc->n_heads * dc->head_dim)
        return mg__last_err(MG_E_UNSUPPORTED, "the decoder's FFN is narrower than its attention "
                            "output (the exact row kernels need it)");
    if (p.n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n < 1 ? 1u : (n > (long)MG__BATCH_MAX_THREADS ? MG__BATCH_MAX_THREADS
                                                                      : (uint32_t)n);
    }
    if (p.max_rows == 0) p.max_rows = MG__BATCH_MAX_ROWS;
    if (p.wait_us == 0) p.wait_us = MG__BATCH_WAIT_US;
    /* the scratch state's batch buffers hold max_rows rows (at least 2:
     * only a state with batches has the exact row kernels' scratch) */
    uint32_t rows = p.max_rows < 2 ? 2 : p.max_rows;
    if (dc->context_length < rows) rows = dc->context_length;
    if (rows < 2) return mg__last_err(MG_E_UNSUPPORTED, "the model's context holds one token");
    if (p.max_rows > rows) p.max_rows = rows;

    mg_batch *b = mg__calloc(1, sizeof *b);
    if (!b) return mg__last_err(MG_E_NOMEM, "out of memory");
    if (pthread_mutex_init(&b->mu, NULL)) {
        mg__free(b);
        return mg__last_err(MG_E_NOMEM, "cannot make a mutex");
    }
    if (pthread_cond_init(&b->cv, NULL)) {
        pthread_mutex_destroy(&b->mu);
        mg__free(b);
        return mg__last_err(MG_E_NOMEM, "cannot make a condition variable");
    }
    mg__model_retain(model);
    b->model = model;
    b->n_threads = p.n_threads;
    b->max_rows = p.max_rows;
    b->wait_us = p.wait_us;
    b->vocab = dc->vocab;
    b->refs = 1;
    mg__dstate_opts o = {p.n_threads, 0};
    size_t nl;
    if (!(b->pool = mg__pool_new(p.n_threads)) ||
        mg__dstate_new(&b->scratch, model->decoder, rows, rows, &o) != MG_OK ||
        mg__mul_size((size_t)rows, dc->vocab, &nl) ||
        !(b->logits = mg__aligned_alloc(64, nl * sizeof(float)))) {
        batch_destroy(b);
        return mg__last_err(MG_E_NOMEM, "out of memory (the batch's pool, rows and logits)");
    }
    b->tag = MG__TAG_BATCH;
    *out = b;
    return MG_OK;
}

static void batch_unref(mg_batch *b) {
    pthread_mutex_lock(&b->mu);
    int last = --b->refs == 0;
    pthread_mutex_unlock(&b->mu);
    if (last) batch_destroy(b);
}

MG_API void mg_batch_free(mg_batch *b) {
    if (!b || b->tag != MG__TAG_BATCH) return;
    pthread_mutex_lock(&b->mu);
    int again = b->user_freed; /* its creator's reference is already gone */
    b->user_freed = 1;
    pthread_mutex_unlock(&b->mu);
    if (!again) batch_unref(b);
}

MG_API mg_status mg_batch_get_stats(const mg_batch *b, mg_batch_stats *out) {
    if (!b || b->tag != MG__TAG_BATCH) return MG_E_MISUSE;
    if (!out) return MG_E_INVALID_ARG;
    mg_batch *w = (mg_batch *)b; /* the lock only */
    pthread_mutex_lock(&w->mu);
    *out = b->stats;
    pthread_mutex_unlock(&w->mu);
    return MG_OK;
}

/* ---------------------------------------------------------------- internal */

mg_status mg__batch_join(mg_batch *b, const mg_model *model, uint32_t *n_threads) {
    if (!b || b->tag != MG__TAG_BATCH) return MG_E_MISUSE;
    if (b->model != model) return MG_E_INVALID_ARG;
    pthread_mutex_lock(&b->mu);
    b->refs++;
    pthread_mutex_unlock(&b->mu);
    *n_threads = b->n_threads;
    return MG_OK;
}

void mg__batch_leave(mg_batch *b) {
    if (b) batch_unref(b);
}

void mg__batch_generating(mg_batch *b, int on) {
    pthread_mutex_lock(&b->mu);
    if (on) b->generating++;
    else {
        b->generating--;
        pthread_cond_broadcast(&b->cv); /* a leader may be waiting for it */
    }
    pthread_mutex_unlock(&b->mu);
}

/* Runs the step of the first n queued requests (lock held on entry and on
 * return, released while computing). */
static void run_step(mg_batch *b, uint32_t n) {
    mg__breq *rq[MG__BATCH_MAX_ROWS];
    memcpy(rq, b->queue, n * sizeof *rq);
    b->n_queue -= n;
    memmove(b->queue, b->queue + n, b->n_queue * sizeof *b->queue);
    b->running = 1;
    pthread_mutex_unlock(&b->mu);

    mg__dstate *rows[MG__BATCH_MAX_ROWS];
    int32_t toks[MG__BATCH_MAX_ROWS];
    for (uint32_t i = 0; i < n; i++) {
        rows[i] = rq[i]->c->dstate;
        toks[i] = rq[i]->tok;
    }
    double t0 = mono();
    mg_status st = mg__decoder_forward_rows(b->scratch, rows, toks, n, b->logits, b->pool);
    for (uint32_t i = 0; i < n; i++) {
        mg_context *c = rq[i]->c;
        if (st == MG_OK) {
            memcpy(c->logits, b->logits + (size_t)i * b->vocab, b->vocab * sizeof(float));
            c->history[mg__dstate_pos(c->dstate) - 1] = rq[i]->tok;
            c->logits_valid = 1;
        }
        rq[i]->st = st;
    }
    double dt = mono() - t0;

    pthread_mutex_lock(&b->mu);
    for (uint32_t i = 0; i < n; i++) rq[i]->done = 1;
    b->running = 0;
    b->stats.steps++;
    b->stats.rows += n;
    b->stats.by_rows[n - 1]++;
    b->stats.busy_seconds += dt;
    pthread_cond_broadcast(&b->cv);
}

static void deadline_at(struct timespec *ts, uint32_t us) {
    clock_gettime(CLOCK_REALTIME, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (uint64_t)us * 1000u;
    ts->tv_sec += (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

mg_status mg__batch_step(mg_batch *b, mg_context *c, int32_t tok) {
    if (tok < 0 || (uint32_t)tok >= c->n_vocab) return MG_E_INVALID_ARG;
    if (mg__dstate_pos(c->dstate) >= c->params.n_ctx) return MG_E_CONTEXT_FULL;
    if (atomic_load(&c->interrupt)) return MG_E_INTERRUPTED;
    c->logits_valid = 0;
    mg__breq r = {c, tok, MG_OK, 0};
    pthread_mutex_lock(&b->mu);
    if (!b->running && !b->n_queue && b->generating <= 1) {
        /* alone: the step on the context's own pool, as an unbatched
         * context takes it (no hand-over to the batch's threads) */
        b->running = 1;
        pthread_mutex_unlock(&b->mu);
        double t0 = mono();
        uint32_t pos = mg__dstate_pos(c->dstate);
        mg_status st = mg__decoder_forward(c->dstate, &tok, NULL, NULL, 1, c->logits, 0, c->pool);
        if (st == MG_OK) {
            c->history[pos] = tok;
            c->logits_valid = 1;
        }
        double dt = mono() - t0;
        pthread_mutex_lock(&b->mu);
        b->running = 0;
        b->stats.steps++;
        b->stats.rows++;
        b->stats.by_rows[0]++;
        b->stats.busy_seconds += dt;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        return st;
    }
    while (b->n_queue == b->max_rows) pthread_cond_wait(&b->cv, &b->mu);
    b->queue[b->n_queue++] = &r;
    pthread_cond_broadcast(&b->cv); /* a waiting leader counts its rows */
    while (!r.done) {
        if (!b->running && b->queue[0] == &r) {
            /* lead: wait for the other generating contexts' rows */
            uint32_t want = b->generating < b->max_rows ? b->generating : b->max_rows;
            struct timespec dl;
            deadline_at(&dl, b->wait_us);
            while (b->n_queue < want) {
                if (pthread_cond_timedwait(&b->cv, &b->mu, &dl)) break;
                want = b->generating < b->max_rows ? b->generating : b->max_rows;
            }
            run_step(b, b->n_queue);
            continue;
        }
        pthread_cond_wait(&b->cv, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return r.st;
}
