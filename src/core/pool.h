/* pool.h - a small pthread pool for the library's own kernels.
 * A pool belongs to one context and is driven by one thread at a time. */
#ifndef MG_POOL_H
#define MG_POOL_H

#include <stdint.h>

typedef struct mg__pool mg__pool;

/* Task i of n: fn(arg, i, n). Tasks must not call back into the pool. */
typedef void (*mg__pool_fn)(void *arg, uint32_t i, uint32_t n);

/* n_threads >= 1 (the calling thread counts as one: n_threads - 1 workers
 * are started). Returns NULL on failure. */
mg__pool *mg__pool_new(uint32_t n_threads);
void mg__pool_free(mg__pool *pool);                 /* NULL ok */
uint32_t mg__pool_size(const mg__pool *pool);       /* 1 for NULL */
/* Runs fn for i = 0..n_tasks-1 across the pool and the caller; returns when
 * all are done. pool may be NULL (runs inline). */
void mg__pool_run(mg__pool *pool, mg__pool_fn fn, void *arg, uint32_t n_tasks);
/* Inside a task: which of the pool's threads runs it, 0 (the caller) to
 * mg__pool_size() - 1, for per-thread scratch. Tasks are handed out one at
 * a time to whichever thread is free, so splitting work into more tasks
 * than threads balances threads that run at different speeds. */
uint32_t mg__pool_worker(void);

#endif
