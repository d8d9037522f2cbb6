/* matmul.c - prefill matmul: our mg__matmul (f32 straight to sgemm; other
 * dtypes dequantized a tile of rows at a time, then sgemm) against
 * cblas_sgemm called directly on f32 weights, for 512 tokens x 2560 x 10240
 * (or the tokens, cols and rows given as arguments)
 * (X is 512x2560, W is 10240x2560, Y = X W^T). GFLOP/s = 2*n*rows*cols / t.
 * OpenBLAS uses its own threads (OPENBLAS_NUM_THREADS, default all cores). */
#include "kernels/kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int N = 512, COLS = 2560, ROWS = 10240;
#define REPS 3

static const char *DNAME[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};

int main(int argc, char **argv) {
    /* matmul [tokens cols rows] */
    if (argc == 4) {
        N = atoi(argv[1]); COLS = atoi(argv[2]); ROWS = atoi(argv[3]);
        if (N < 1 || COLS < 32 || COLS % 32 || ROWS < 1) {
            fprintf(stderr, "usage: matmul [tokens cols rows], cols a multiple of 32\n");
            return 2;
        }
    }
    float *X = mg__aligned_alloc(64, (size_t)N * COLS * 4);
    float *Wf = mg__aligned_alloc(64, (size_t)ROWS * COLS * 4);
    float *Y = mg__aligned_alloc(64, (size_t)N * ROWS * 4);
    void *Wq = mg__aligned_alloc(64, (size_t)ROWS * COLS * 4);
    if (!X || !Wf || !Y || !Wq) { fprintf(stderr, "out of memory\n"); return 1; }
    uint64_t s = 99;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        Wf[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
        if (i < (size_t)N * COLS) X[i] = Wf[i] * 0.5f;
    }
    double flop = 2.0 * N * (double)ROWS * COLS;
    printf("matmul: %d tokens x %d cols x %d rows; OpenBLAS threads %d (%s)\n", N, COLS,
           ROWS, openblas_get_num_threads(), openblas_get_config());
    /* direct sgemm */
    double best = 1e30;
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, ROWS, COLS, 1.0f, X,
                    COLS, Wf, COLS, 0.0f, Y, ROWS);
        double t = now() - t0;
        if (t < best) best = t;
    }
    double ref = flop / best * 1e-9;
    printf("%-22s %8.1f ms %8.1f GFLOP/s %6.2f\n", "cblas_sgemm direct", best * 1e3, ref, 1.0);
    mg__pool *pool = mg__pool_new((uint32_t)openblas_get_num_threads());
    for (int dt = 0; dt < 5; dt++) {
        mg__quantize(dt, Wq, Wf, (uint64_t)ROWS * COLS);
        size_t ss = mg__matmul_scratch_size(dt, COLS);
        float *scratch = ss ? mg__aligned_alloc(64, ss) : NULL;
        /* q8_0/q4_0: the dequantize + sgemm path (AVX2 level) and, where
         * the CPU has AVX512-VNNI, the integer path on our pool. */
        int quant = dt == MG_DTYPE_Q8_0 || dt == MG_DTYPE_Q4_0;
        for (int v = 0; v < (quant && mg__cpu_vnni() ? 2 : 1); v++) {
            int32_t level = quant && v == 0 ? MG_SIMD_AVX2 : mg_simd_level();
            best = 1e30;
            for (int r = 0; r < REPS; r++) {
                double t0 = now();
                mg__matmul_level(level, dt, Wq, ROWS, COLS, X, N, Y, scratch, pool);
                double t = now() - t0;
                if (t < best) best = t;
            }
            char name[64];
            snprintf(name, sizeof name, "mg__matmul %s%s", DNAME[dt],
                     !quant ? "" : v ? " vnni" : " sgemm");
            printf("%-22s %8.1f ms %8.1f GFLOP/s %6.2f  (scratch %zu KiB)\n", name,
                   best * 1e3, flop / best * 1e-9, flop / best * 1e-9 / ref, ss >> 10);
        }
        mg__aligned_free(scratch);
    }
    mg__pool_free(pool);
    mg__aligned_free(X); mg__aligned_free(Wf); mg__aligned_free(Y); mg__aligned_free(Wq);
    return 0;
}
