/* speculative.c - speculative decoding against plain decoding in one run:
 * by n-gram lookup (MG_GEN_DRAFT_NGRAM) and, given a draft model, with it
 * (mg_gen_params.draft). Prints tokens per second of the answer (after its
 * first token, so the prompt is left out), tokens drafted and kept per
 * verifying decoder call, and, greedy, whether the texts are identical to
 * plain decoding's (they must be).
 *
 *   lib/bench/speculative MODEL.mgm [THREADS] [TOKENS] [IMAGE] [REPS] [DRAFT.mgm]
 *                         [TEMP] [N_DRAFT]
 *
 * With IMAGE, a report on it (the model's report prompt); without (or ""),
 * a text prompt asking for a templated list. DRAFT.mgm ("" = none): a draft
 * model with the same tokenizer. TEMP > 0 samples (top-k 0, top-p 1), seed
 * 1 + rep in every mode, so the modes draw from the same distributions but
 * their texts differ. Each of REPS rounds (default 2) runs every mode once,
 * alternating; a round's rate is its tokens after the first over the time
 * after the first; printed are the median over the rounds (robust to a
 * machine shared with other work) and the sum over them. Without arguments
 * it prints its usage and exits 0 (make bench runs it bare). */
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

/* Counts generated tokens as the library streams them (a piece per token
 * whose text is complete; pieces held back for stop strings or UTF-8 are
 * none here: no stop strings, whole-token pieces). */
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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { PLAIN, NGRAM, DRAFT, N_MODES };
static const char *k_names[N_MODES] = {"plain", "n-gram", "draft model"};

typedef struct mode_stats {
    double *rate;            /* each round's tokens/s after the first */
    int n_rate;
    double seconds;          /* after each answer's first token, summed */
    uint64_t tokens;         /* pieces after the first, summed */
    uint64_t steps, drafted, kept;
    int differs;             /* greedy: a text unlike plain decoding's */
} mode_stats;

int main(int argc, char **argv) {
    if (argc < 2) {
        printf("usage: speculative MODEL.mgm [THREADS] [TOKENS] [IMAGE] [REPS] [DRAFT.mgm] "
               "[TEMP] [N_DRAFT]\n");
        return 0;
    }
    uint32_t threads = argc > 2 ? (uint32_t)atoi(argv[2]) : 2;
    uint32_t ntok = argc > 3 ? (uint32_t)atoi(argv[3]) : 128;
    const char *image = argc > 4 && argv[4][0] ? argv[4] : NULL;
    int reps = argc > 5 ? atoi(argv[5]) : 2;
    const char *draft_path = argc > 6 && argv[6][0] ? argv[6] : NULL;
    float temp = argc > 7 ? (float)atof(argv[7]) : 0.0f;
    uint32_t n_draft = argc > 8 ? (uint32_t)atoi(argv[8]) : 0;
    char err[512];
    mg_model *m = NULL, *dm = NULL;
    if (mg_model_load(&m, argv[1], NULL, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    if (draft_path && mg_model_load(&dm, draft_path, NULL, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", draft_path, err);
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
    mg_context *c = NULL, *dc = NULL;
    if (mg_context_new(&c, m, &cp) || (dm && mg_context_new(&dc, dm, &cp))) {
        fprintf(stderr, "cannot make a context\n");
        return 1;
    }
    const int n_modes = dm ? N_MODES : DRAFT;
    mode_stats ms[N_MODES];
    memset(ms, 0, sizeof ms);
    for (int mode = 0; mode < N_MODES; mode++)
        if (!(ms[mode].rate = calloc((size_t)(reps > 0 ? reps : 1), sizeof(double)))) return 1;
    char *plain_text = NULL;
    for (int r = 0; r < reps; r++)
        for (int mode = 0; mode < n_modes; mode++) {
            mg_gen_params gp = MG_GEN_PARAMS_INIT;
            gp.max_tokens = ntok;
            gp.temperature = temp;
            gp.seed = 1 + (uint64_t)r;
            if (mode == NGRAM) gp.flags = MG_GEN_DRAFT_NGRAM;
            if (mode == DRAFT) {
                gp.draft = dc;
                gp.n_draft = n_draft;
            }
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
            mode_stats *s = &ms[mode];
            if (t.n > 1 && t.last > t.first) {
                s->seconds += t.last - t.first;
                s->tokens += t.n - 1;
                s->rate[s->n_rate++] = (t.n - 1) / (t.last - t.first);
            }
            s->steps += c->spec_steps - s0;
            s->drafted += c->spec_drafted - d0;
            s->kept += c->spec_accepted - k0;
            if (mode == PLAIN) {
                mg_string_free(plain_text);
                plain_text = out;
                if (r == 0) printf("text (plain, round 1): %s\n", out);
            } else {
                if (strcmp(out, plain_text)) s->differs = 1;
                mg_string_free(out);
            }
        }
    int bad = 0;
    printf("%s, %u threads, %s, %d rounds%s%s\n", img ? "report" : "text prompt", threads,
           temp > 0 ? "sampled" : "greedy", reps, dm ? ", draft " : "", dm ? draft_path : "");
    if (temp > 0) printf("  (sampling: seed 1 + round in every mode)\n");
    double med[N_MODES];
    for (int mode = 0; mode < n_modes; mode++) {
        mode_stats *s = &ms[mode];
        qsort(s->rate, (size_t)s->n_rate, sizeof *s->rate, cmp_double);
        med[mode] = !s->n_rate ? 0
                    : s->n_rate % 2 ? s->rate[s->n_rate / 2]
                                    : 0.5 * (s->rate[s->n_rate / 2 - 1] + s->rate[s->n_rate / 2]);
    }
    printf("tokens/s after each answer's first token: median of the rounds (sum over them)\n");
    for (int mode = 0; mode < n_modes; mode++) {
        const mode_stats *s = &ms[mode];
        double rate = s->seconds > 0 ? s->tokens / s->seconds : 0;
        printf("%-12s %6llu tokens, %8.1f tokens/s (%.1f)", k_names[mode],
               (unsigned long long)s->tokens, med[mode], rate);
        if (mode != PLAIN)
            printf(" %.2fx, %llu verifying calls, %llu drafted, %llu kept (%.2f per call)%s",
                   med[PLAIN] > 0 ? med[mode] / med[PLAIN] : 0.0, (unsigned long long)s->steps,
                   (unsigned long long)s->drafted, (unsigned long long)s->kept,
                   s->steps ? (double)s->kept / (double)s->steps : 0.0,
                   temp > 0 ? "" : s->differs ? ", TEXT DIFFERS" : ", text identical");
        printf("\n");
        if (temp == 0 && s->differs) bad = 1;
    }
    mg_string_free(plain_text);
    for (int mode = 0; mode < N_MODES; mode++) free(ms[mode].rate);
    mg_image_free(img);
    mg_context_free(c);
    mg_context_free(dc);
    mg_model_free(m);
    mg_model_free(dm);
    return bad;
}
