/* llm.c - text decoder throughput: prefill (one batch of N tokens) and
 * decode (M tokens one at a time) in tokens per second, and peak memory.
 *
 *   lib/bench/llm MODEL.mgm [THREADS] [PREFILL] [DECODE]
 *
 * Set OPENBLAS_NUM_THREADS to THREADS as well (bench/llm.sh does).
 * MG_BENCH_ATT=1 also compares the tiled and the per-query attention in
 * prefill, and the grouped and the per-query attention in decode; MG_BENCH_KV_BF16=1 keeps the KV cache in bf16. Without
 * arguments it prints its usage and exits 0 (make bench runs it bare). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "medgemini.h"

#include <stdint.h>

/* The decoder's switch between tiled and per-query attention, set on the
 * context's own decoder state (internal: api/api.h, llm/decoder.h; linked
 * from the static library). */
#include "api/api.h"
#include "llm/decoder.h"

static void set_attn(mg_context *c, uint32_t tile_min, uint32_t grouped) {
    const mg__dattn a = {tile_min, grouped, 0};
    mg__dstate_set_attn(c->dstate, &a);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.mgm [THREADS] [PREFILL] [DECODE] (see bench/llm.sh)\n", argv[0]);
        return 0;
    }
    uint32_t threads = argc > 2 ? (uint32_t)atoi(argv[2]) : 2;
    uint32_t n_pre = argc > 3 ? (uint32_t)atoi(argv[3]) : 512;
    uint32_t n_dec = argc > 4 ? (uint32_t)atoi(argv[4]) : 128;
    char err[512];
    mg_model *m = NULL;
    /* MG_BENCH_NO_MMAP=1: read the file into memory (MG_LOAD_NO_MMAP). */
    mg_model_params mp = MG_MODEL_PARAMS_INIT;
    const char *nm = getenv("MG_BENCH_NO_MMAP");
    if (nm && *nm == '1') mp.flags |= MG_LOAD_NO_MMAP;
    /* MG_BENCH_FILE_LAYOUT=1: q4_0 matrices kept as stored (MG_LOAD_FILE_LAYOUT). */
    const char *fl = getenv("MG_BENCH_FILE_LAYOUT");
    if (fl && *fl == '1') mp.flags |= MG_LOAD_FILE_LAYOUT;
    double tl = now();
    if (mg_model_load(&m, argv[1], &mp, err, sizeof err) != MG_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    printf("load %.2f s%s\n", now() - tl, (mp.flags & MG_LOAD_FILE_LAYOUT) ? " (file layout)" : "");
    mg_model_info mi = {.struct_size = sizeof mi};
    mg_model_info_get(&mi, m);
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    /* MG_BENCH_KV_BF16=1: the context keeps its KV cache in bf16. */
    const char *kb = getenv("MG_BENCH_KV_BF16");
    if (kb && *kb == '1') cp.flags |= MG_CONTEXT_KV_BF16;
    cp.n_threads = threads;
    cp.n_ctx = n_pre + n_dec + 1;
    mg_context *c = NULL;
    if (mg_context_new(&c, m, &cp) != MG_OK || !mi.n_vocab) {
        fprintf(stderr, "cannot create a text context\n");
        return 1;
    }
    int32_t *ids = malloc(n_pre * sizeof *ids);
    float *lg = malloc(mi.n_vocab * sizeof *lg);
    uint64_t x = 88172645463325252ull;
    for (uint32_t i = 0; i < n_pre; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ids[i] = (int32_t)(300 + x % (mi.n_vocab - 300));
    }
    /* Warm-up: touch the weights once (page cache, mmap faults). */
    mg_context_eval(c, ids, 1, lg, mi.n_vocab);
    mg_context_reset(c);

    /* MG_BENCH_ATT=1: prefill with the tiled attention and with the
     * per-query path in turn, three times each, and print both (the
     * decoder's internal switch, decoder.h). */
    const char *ba = getenv("MG_BENCH_ATT");
    if (ba && *ba == '1') {
        double best[2] = {1e30, 1e30};
        for (int rep = 0; rep < 3; rep++)
            for (int path = 0; path < 2; path++) {
                set_attn(c, path ? UINT32_MAX : 8, 1);
                mg_context_reset(c);
                double t0 = now();
                if (mg_context_eval(c, ids, n_pre, NULL, 0) != MG_OK) {
                    fprintf(stderr, "prefill: %s\n", mg_context_errmsg(c));
                    return 1;
                }
                double t = now() - t0;
                if (t < best[path]) best[path] = t;
            }
        mg__dstate_set_attn(c->dstate, NULL);
        mg_context_reset(c);
        printf("%-28s threads %u  prefill %u: tiled attention %7.1f tok/s, per-query %7.1f "
               "tok/s (best of 3 each, alternating): %.2fx\n", mi.name, threads, n_pre,
               n_pre / best[0], n_pre / best[1], best[1] / best[0]);
    }

    double t0 = now();
    mg_status st = mg_context_eval(c, ids, n_pre, NULL, 0);
    double t_pre = now() - t0;
    if (st != MG_OK) { fprintf(stderr, "prefill: %s\n", mg_context_errmsg(c)); return 1; }
    int32_t t = ids[n_pre - 1];
    if (ba && *ba == '1' && n_dec >= 6) {
        /* decode with the grouped and the per-query attention in turn, a
         * sixth of the tokens each, three times (the context grows by the
         * tokens decoded: n_dec is small beside the prompt) */
        double best[2] = {1e30, 1e30};
        uint32_t per = n_dec / 6;
        for (int rep = 0; rep < 3; rep++)
            for (int path = 0; path < 2; path++) {
                set_attn(c, 8, !path);
                double t1 = now();
                for (uint32_t i = 0; i < per; i++) {
                    if (mg_context_eval(c, &t, 1, lg, mi.n_vocab) != MG_OK) return 1;
                    t = (int32_t)(300 + i);
                }
                double dt = now() - t1;
                if (dt < best[path]) best[path] = dt;
            }
        mg__dstate_set_attn(c->dstate, NULL);
        printf("%-28s threads %u  decode at %u: grouped attention %6.2f tok/s, per-query %6.2f "
               "tok/s (best of 3 each, alternating): %.2fx\n", mi.name, threads, n_pre,
               per / best[0], per / best[1], best[1] / best[0]);
        mg_context_reset(c);
        mg_context_eval(c, ids, n_pre, NULL, 0);
    }
    t0 = now();
    for (uint32_t i = 0; i < n_dec; i++) {
        if (mg_context_eval(c, &t, 1, lg, mi.n_vocab) != MG_OK) {
            fprintf(stderr, "decode: %s\n", mg_context_errmsg(c));
            return 1;
        }
        int32_t b = 0;
        for (uint32_t v = 1; v < mi.n_vocab; v++)
            if (lg[v] > lg[b]) b = (int32_t)v;
        t = b;
    }
    double t_dec = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%-28s threads %u  prefill %u: %7.1f tok/s  decode %u: %6.2f tok/s  peak RSS %.0f MiB\n",
           mi.name, threads, n_pre, n_pre / t_pre, n_dec, n_dec / t_dec, ru.ru_maxrss / 1024.0);
    free(ids);
    free(lg);
    mg_context_free(c);
    mg_model_free(m);
    return 0;
}
