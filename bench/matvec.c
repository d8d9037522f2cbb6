/* matvec.c - decode matvec bandwidth: mg__matvec_level for every dtype and
 * SIMD level on 4096x4096 and MedGemma 4B's FFN up (10240x2560), down
 * (2560x10240) and key/value (1024x2560) shapes (rows x cols), 2 threads.
 *
 * "cold": each call reads a different copy of the matrix, the copies
 * totalling > 1 GiB (beyond the last-level cache), so weights come from
 * DRAM as in real decoding. "hot": the same matrix again and again (cache
 * resident where it fits; shows the compute ceiling). Figures are GB/s of
 * weight bytes read, and the cold figure as a fraction of a triad measured
 * in this same run with the same 2 threads. */
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NT 2
#define POOL_BYTES (1088ull << 20) /* room for >= 1 GiB of copies */
#define BUDGET_S 0.25              /* per measurement */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- triad (as bench/triad.c, smaller) ---- */
typedef struct { double *a; const double *b, *c; size_t n; } tj;
static void triad_task(void *arg, uint32_t i, uint32_t n) {
    tj *j = arg;
    for (size_t k = j->n * i / n; k < j->n * (i + 1) / n; k++)
        j->a[k] = j->b[k] + 3.0 * j->c[k];
}
static double triad(mg__pool *pool, char *mem) {
    size_t n = POOL_BYTES / 3 / sizeof(double);
    double *a = (double *)mem, *b = a + n, *c = b + n;
    for (size_t k = 0; k < n; k++) { a[k] = 0; b[k] = 1; c[k] = 2; }
    tj j = {a, b, c, n};
    double best = 1e30;
    for (int p = 0; p < 6; p++) {
        double t0 = now();
        mg__pool_run(pool, triad_task, &j, NT);
        double t = now() - t0;
        if (p && t < best) best = t;
    }
    return 3.0 * sizeof(double) * (double)n / best * 1e-9;
}

static const char *LNAME[] = {"scalar", "avx2", "avx512"};
static const char *DNAME[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4x16"};

int main(void) {
    mg__pool *pool = mg__pool_new(NT);
    char *mem = mg__aligned_alloc(64, POOL_BYTES);
    float *src = mg__aligned_alloc(64, 10240ull * 4096 * sizeof(float));
    float *x = mg__aligned_alloc(64, 10240 * sizeof(float));
    float *y = mg__aligned_alloc(64, 10240 * sizeof(float));
    if (!pool || !mem || !src || !x || !y) { fprintf(stderr, "out of memory\n"); return 1; }
    double bw = triad(pool, mem);
    int32_t maxl = mg__cpu_simd_level();
    printf("matvec: %d threads; triad in this run: %.1f GB/s; CPU level %s%s\n", NT, bw,
           LNAME[maxl], getenv("MG_SIMD") ? " (MG_SIMD ignored here)" : "");
    printf("%-6s %-12s %-7s %9s %9s %9s %9s\n", "dtype", "rows x cols", "level",
           "us/call", "cold GB/s", "of triad", "hot GB/s");
    uint64_t seed = 0x12345;
    for (size_t i = 0; i < 10240ull * 4096; i++) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        src[i] = (float)((int64_t)(seed >> 40) - (1 << 23)) / (float)(1 << 23);
    }
    for (int i = 0; i < 10240; i++) x[i] = src[i * 7] * 2.0f;
    static const uint64_t SH[][2] = {{4096, 4096}, {10240, 2560}, {2560, 10240}, {1024, 2560}};
    /* dtype 5: q4_0 in the 16-row decode layout the loader makes */
    const char *only = getenv("MG_BENCH_DTYPE");
    for (int dt = 0; dt < 6; dt++) {
        if (only && strcmp(only, DNAME[dt])) continue;
        int32_t fmt = dt == 5 ? MG_DTYPE_Q4_0 : dt, kdt = dt == 5 ? MG__DTYPE_Q4_0X16 : dt;
        for (int s = 0; s < (int)(sizeof SH / sizeof SH[0]); s++) {
            uint64_t rows = SH[s][0], cols = SH[s][1];
            int ok;
            uint64_t bytes = mg__dtype_bytes(fmt, rows * cols, &ok);
            uint64_t stride = (bytes + 4095) & ~4095ull;
            uint64_t ncopy = POOL_BYTES / stride;
            mg__quantize(fmt, mem, src, rows * cols);
            if (dt == 5 && mg__q4x16_pack(mem, rows, cols)) { fprintf(stderr, "pack failed\n"); return 1; }
            for (uint64_t k = 1; k < ncopy; k++) memcpy(mem + k * stride, mem, bytes);
            for (int32_t lvl = MG_SIMD_SCALAR; lvl <= maxl; lvl++) {
                /* cold: cycle through the copies */
                uint64_t calls = 0;
                double t0 = now(), t;
                do {
                    mg__matvec_level(lvl, kdt, mem + (calls % ncopy) * stride, rows, cols,
                                     x, y, pool);
                    calls++;
                } while ((t = now() - t0) < BUDGET_S || calls < 3);
                double cold = (double)bytes * (double)calls / t * 1e-9, us = t / (double)calls * 1e6;
                /* hot: one copy */
                uint64_t hc = 0;
                mg__matvec_level(lvl, kdt, mem, rows, cols, x, y, pool);
                t0 = now();
                do {
                    mg__matvec_level(lvl, kdt, mem, rows, cols, x, y, pool);
                    hc++;
                } while ((t = now() - t0) < BUDGET_S / 2 || hc < 3);
                double hot = (double)bytes * (double)hc / t * 1e-9;
                char shp[32];
                snprintf(shp, sizeof shp, "%llux%llu", (unsigned long long)rows,
                         (unsigned long long)cols);
                printf("%-6s %-12s %-7s %9.0f %9.1f %8.0f%% %9.1f\n", DNAME[dt], shp,
                       LNAME[lvl], us, cold, cold / bw * 100.0, hot);
                fflush(stdout);
            }
        }
    }
    mg__aligned_free(mem); mg__aligned_free(src); mg__aligned_free(x); mg__aligned_free(y);
    mg__pool_free(pool);
    return 0;
}
