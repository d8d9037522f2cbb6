/* speculative.c - speculative decoding by n-gram lookup (MG_GEN_DRAFT_NGRAM)
 * against plain greedy decoding in one run: tokens per second of the
 * answer (after the prompt), tokens kept per decoder call, and whether the
 * two texts are identical (they must be).
 *
 *   lib/bench/speculative MODEL.mgm [THREADS] [TOKENS] [IMAGE] [REPS]
 *
 * With IMAGE, a report on it (the model's report prompt); without, a text
 * prompt asking for a templated list. Alternates plain and speculative runs
 * REPS times (default 2) and prints the best of each. Without arguments it
 * prints its usage and exits 0 (make bench runs it bare). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct timing { double first, last; uint32_t n; } timing;

static int32_t on_tok(void *u, const char *piece, size_t len, int32_t token) {
    (void)piece, (void)len, (void)token;
    timing *t = u;
    double x = now();
    if (!t->n++) t->first = x;
    t->last = x;
    return 0;
}

static const char *k_prompt =
    "List the findings of a normal chest X-ray as lines of the form 'Lungs: clear.', "
    "'Heart: normal size.', 'Pleura: no effusion.', 'Bones: intact.', one organ per line, "
    "then repeat the list.";

int main(int argc, char **argv) {
    if (argc < 2) {
        printf("usage: speculative MODEL.mgm [THREADS] [TOKENS] [IMAGE] [REPS]\n");
        return 0;
    }
    uint32_t threads = argc > 2 ? (uint32_t)atoi(argv[2]) : 2;
    uint32_t ntok = argc > 3 ? (uint32_t)atoi(argv[3]) : 128;
    const char *image = argc > 4 && argv[4][0] ? argv[4] : NULL;
    int reps = argc > 5 ? atoi(argv[5]) : 2;
    char err[512];
    mg_model *m = NULL;
    if (mg_model_load(&m, argv[1], NULL, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    mg_image *img = NULL;
    if (image && mg_image_load_file(&img, image, NULL, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", image, err);
        return 1;
    }
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_threads = threads;
    cp.n_ctx = 2048;
    mg_context *c = NULL;
    if (mg_context_new(&c, m, &cp)) {
        fprintf(stderr, "cannot make a context\n");
        return 1;
    }
    double best[2] = {1e30, 1e30};
    char *text[2] = {NULL, NULL};
    uint64_t steps = 0, drafted = 0, kept = 0;
    uint32_t made[2] = {0, 0};
    for (int r = 0; r < reps; r++)
        for (int spec = 0; spec < 2; spec++) {
            mg_gen_params gp = MG_GEN_PARAMS_INIT;
            gp.max_tokens = ntok;
            gp.flags = spec ? MG_GEN_DRAFT_NGRAM : 0;
            timing t = {0, 0, 0};
            gp.on_token = on_tok;
            gp.user_data = &t;
            uint64_t s0 = c->spec_steps, d0 = c->spec_drafted, k0 = c->spec_accepted;
            char *out = NULL;
            mg_status st = img ? mg_generate_report(&out, c, (const mg_image *const *)&img, 1, &gp)
                               : mg_generate(&out, c, k_prompt, &gp);
            if (st != MG_OK) {
                fprintf(stderr, "generation failed: %s\n", mg_context_errmsg(c));
                return 1;
            }
            size_t ids = 0;
            mg_context_tokens(NULL, 0, &ids, c);
            /* tokens per second after the first token (prefill excluded) */
            double el = t.n > 1 ? t.last - t.first : 1e30;
            if (el < best[spec]) best[spec] = el;
            made[spec] = t.n;
            if (spec) {
                steps = c->spec_steps - s0;
                drafted = c->spec_drafted - d0;
                kept = c->spec_accepted - k0;
            }
            mg_string_free(text[spec]);
            text[spec] = out;
        }
    int same = text[0] && text[1] && !strcmp(text[0], text[1]);
    printf("plain:       %u streamed pieces, %.2f pieces/s after the first\n", made[0],
           (made[0] - 1) / best[0]);
    printf("speculative: %u streamed pieces, %.2f pieces/s after the first (%.3fx), %llu "
           "verifying calls, %llu tokens drafted, %llu kept (%.2f per call)\n",
           made[1], (made[1] - 1) / best[1], best[0] / best[1], (unsigned long long)steps,
           (unsigned long long)drafted, (unsigned long long)kept,
           steps ? (double)kept / (double)steps : 0.0);
    printf("texts identical: %s\n", same ? "yes" : "NO");
    mg_string_free(text[0]);
    mg_string_free(text[1]);
    mg_image_free(img);
    mg_context_free(c);
    mg_model_free(m);
    return same ? 0 : 1;
}
