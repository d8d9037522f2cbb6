/* pool.c - a small pthread pool: n_threads - 1 workers plus the caller.
 *
 * One job at a time. mg__pool_run publishes the job (fn, arg, n_tasks),
 * bumps a generation counter and wakes the workers; everyone, the caller
 * included, takes task indices from an atomic counter until none are left.
 * Each worker then checks out of the job; the caller returns once every
 * worker has checked out, so no worker touches a job after its run returns.
 *
 * Waiting: a worker (or the caller) first spins briefly with `pause`, since
 * decode runs many short jobs back to back, then sleeps on a condition
 * variable; an idle pool sleeps and burns no CPU. Workers block all signals
 * so that the host's handlers run on its own threads only. */
#include "core/pool.h"
#include "core/core.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* About 50-100 microseconds of polling before sleeping. */
#define SPIN_ITERS 20000

struct mg__pool {
    uint32_t n_threads;
    uint32_t n_started; /* workers actually running */
    pthread_t *threads;

    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers wait here for a new generation */
    pthread_cond_t cv_done; /* the caller waits here for the check-outs */
    int stop;               /* under mu */

    /* The current job; written by the caller before gen is bumped. */
    mg__pool_fn fn;
    void *arg;
    uint32_t n_tasks;

    _Atomic uint64_t gen;      /* job generation */
    _Atomic uint32_t next;     /* next task index to take */
    _Atomic uint32_t checked;  /* workers done with the current job */
    _Atomic uint32_t sleeping; /* the caller sleeps on cv_done */
    _Atomic uint32_t ids;      /* worker numbers handed out */
};

/* The number of the thread running a task: 0 for the caller, 1.. for the
 * workers (see mg__pool_worker). */
static _Thread_local uint32_t tl_worker;

uint32_t mg__pool_worker(void) { return tl_worker; }

static void take_tasks(mg__pool *p) {
    uint32_t n = p->n_tasks;
    for (;;) {
        uint32_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n) break;
        p->fn(p->arg, i, n);
    }
}

static void *worker_main(void *vp) {
    mg__pool *p = vp;
    uint64_t seen = 0;
    tl_worker = atomic_fetch_add_explicit(&p->ids, 1, memory_order_relaxed) + 1;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               spins < SPIN_ITERS) {
            CPU_RELAX();
            spins++;
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while (!p->stop &&
                   (g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->cv_work, &p->mu);
            int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
        }
        seen = g;
        take_tasks(p);
        /* seq_cst pairs with the caller's store to `sleeping` then load of
         * `checked`: one of the two sides sees the other's write. */
        uint32_t c = atomic_fetch_add_explicit(&p->checked, 1, memory_order_seq_cst) + 1;
        if (c == p->n_started &&
            atomic_load_explicit(&p->sleeping, memory_order_seq_cst)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void pool_stop(mg__pool *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (uint32_t i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
}

mg__pool *mg__pool_new(uint32_t n_threads) {
    if (n_threads < 1) return NULL;
    mg__pool *p = mg__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    if (pthread_mutex_init(&p->mu, NULL) != 0) { mg__free(p); return NULL; }
    if (pthread_cond_init(&p->cv_work, NULL) != 0) goto fail_mu;
    if (pthread_cond_init(&p->cv_done, NULL) != 0) goto fail_cv;
    atomic_init(&p->gen, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->checked, 0);
    atomic_init(&p->sleeping, 0);
    atomic_init(&p->ids, 0);
    if (n_threads > 1) {
        p->threads = mg__calloc(n_threads - 1, sizeof *p->threads);
        if (!p->threads) goto fail_all;
        sigset_t all, old;
        sigfillset(&all);
        int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
        for (uint32_t i = 0; i + 1 < n_threads; i++) {
            if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) break;
            p->n_started++;
        }
        if (masked) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (p->n_started + 1 != n_threads) {
            pool_stop(p);
            mg__free(p->threads);
            goto fail_all;
        }
    }
    return p;
fail_all:
    pthread_cond_destroy(&p->cv_done);
fail_cv:
    pthread_cond_destroy(&p->cv_work);
fail_mu:
    pthread_mutex_destroy(&p->mu);
    mg__free(p);
    return NULL;
}

void mg__pool_free(mg__pool *p) {
    if (!p) return;
    pool_stop(p);
    mg__free(p->threads);
    pthread_cond_destroy(&p->cv_done);
    pthread_cond_destroy(&p->cv_work);
    pthread_mutex_destroy(&p->mu);
    mg__free(p);
}

uint32_t mg__pool_size(const mg__pool *p) { return p ? p->n_threads : 1; }

void mg__pool_run(mg__pool *p, mg__pool_fn fn, void *arg, uint32_t n_tasks) {
    if (!fn || n_tasks == 0) return;
    /* The caller is thread 0 of this run. It may itself be a worker of a
     * pool running a task (an inline run with p NULL inside a task): its
     * own number comes back afterwards, or two workers of that pool would
     * both say 0 and share per-thread scratch. */
    const uint32_t outer = tl_worker;
    tl_worker = 0;
    if (!p || p->n_started == 0 || n_tasks == 1) {
        for (uint32_t i = 0; i < n_tasks; i++) fn(arg, i, n_tasks);
        tl_worker = outer;
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->checked, 0, memory_order_relaxed);
    /* Publish under the mutex so a worker about to sleep cannot miss it. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    take_tasks(p);

    int spins = 0;
    while (atomic_load_explicit(&p->checked, memory_order_acquire) != p->n_started) {
        if (spins < SPIN_ITERS) { CPU_RELAX(); spins++; continue; }
        pthread_mutex_lock(&p->mu);
        atomic_store_explicit(&p->sleeping, 1, memory_order_seq_cst);
        while (atomic_load_explicit(&p->checked, memory_order_seq_cst) != p->n_started)
            pthread_cond_wait(&p->cv_done, &p->mu);
        atomic_store_explicit(&p->sleeping, 0, memory_order_relaxed);
        pthread_mutex_unlock(&p->mu);
    }
    tl_worker = outer;
}
