/* triad.c - STREAM-like triad a[i] = b[i] + s * c[i] over arrays far larger
 * than the last-level cache, on 2 threads (the library's pool), reporting
 * the best of several passes in GB/s (24 bytes per element, as STREAM
 * counts: two reads and one write; write-allocate traffic not counted). */
#include "core/pool.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N_ELEMS (64u * 1024u * 1024u) /* 512 MiB per array, 1.5 GiB in all */
#define PASSES 8

typedef struct { double *a; const double *b, *c; double s; size_t n; } triad_job;

static void triad_task(void *arg, uint32_t i, uint32_t n) {
    triad_job *j = arg;
    size_t lo = j->n * i / n, hi = j->n * (i + 1) / n;
    double *a = j->a, s = j->s;
    const double *b = j->b, *c = j->c;
    for (size_t k = lo; k < hi; k++) a[k] = b[k] + s * c[k];
}

static void init_task(void *arg, uint32_t i, uint32_t n) {
    triad_job *j = arg; /* first touch by the thread that uses the pages */
    size_t lo = j->n * i / n, hi = j->n * (i + 1) / n;
    for (size_t k = lo; k < hi; k++) {
        j->a[k] = 0.0;
        ((double *)j->b)[k] = 1.0;
        ((double *)j->c)[k] = 2.0;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    uint32_t nt = 2;
    mg__pool *pool = mg__pool_new(nt);
    double *a = mg__aligned_alloc(64, N_ELEMS * sizeof(double));
    double *b = mg__aligned_alloc(64, N_ELEMS * sizeof(double));
    double *c = mg__aligned_alloc(64, N_ELEMS * sizeof(double));
    if (!pool || !a || !b || !c) { fprintf(stderr, "triad: out of memory\n"); return 1; }
    triad_job j = {a, b, c, 3.0, N_ELEMS};
    mg__pool_run(pool, init_task, &j, nt);
    double best = 1e30, sum = 0;
    for (int p = 0; p < PASSES; p++) {
        double t0 = now();
        mg__pool_run(pool, triad_task, &j, nt);
        double t = now() - t0;
        if (p > 0) { sum += t; if (t < best) best = t; } /* pass 0 warms up */
    }
    double bytes = 3.0 * sizeof(double) * N_ELEMS;
    int okv = a[12345] == 7.0;
    printf("triad: %u threads, 3 x %u MiB arrays, best %.1f GB/s, mean %.1f GB/s%s\n",
           nt, (unsigned)(N_ELEMS * sizeof(double) >> 20), bytes / best * 1e-9,
           bytes / (sum / (PASSES - 1)) * 1e-9, okv ? "" : " (WRONG RESULT)");
    mg__aligned_free(a); mg__aligned_free(b); mg__aligned_free(c);
    mg__pool_free(pool);
    return okv ? 0 : 1;
}
