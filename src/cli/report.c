/* report.c - `medgemini report` and `medgemini vqa`: a radiology report for
 * one study, or the answer to a question, from image files, streamed to
 * stdout. */
#include "medgemini.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define MAX_IMAGES 64
#define MAX_QUESTIONS 64

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* --stats: when the first and the last token arrived, and how many. */
typedef struct stats {
    double first, last;
    uint64_t n;
} stats;

static int32_t stream(void *user, const char *piece, size_t len, int32_t token) {
    stats *s = user;
    (void)token;
    double t = now_s();
    if (s->n++ == 0) s->first = t;
    s->last = t;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static void usage(const char *cmd) {
    if (!strcmp(cmd, "vqa"))
        fprintf(stderr, "usage: medgemini vqa IMAGE... -q QUESTION [-q QUESTION...] -m MODEL.mgm "
                        "[options]\n"
                        "  -q QUESTION          may be repeated: each is answered on its own\n"
                        "                       (printed as \"Q: ...\" and \"A: ...\" lines)\n");
    else
        fprintf(stderr, "usage: medgemini report IMAGE... -m MODEL.mgm [options]\n"
                        "  --instruction TEXT   instead of the model's report instruction\n");
    fprintf(stderr,
        "  --system TEXT        instead of the model's system text (\"\" for none)\n"
        "  -n N                 at most N new tokens (default 256)\n"
        "  --temp T --top-k K --top-p P --repeat-penalty R --seed S   sampling\n"
        "  --threads N --ctx N  context settings\n"
        "  --stats              print timings on stderr (load, first token, tokens/s)\n"
        "Images: JPEG, PNG or DICOM files (several: one study, e.g. frontal and lateral).\n");
}

/* cmd: "report" or "vqa". */
static int run(const char *cmd, int argc, char **argv) {
    const char *model_path = NULL, *questions[MAX_QUESTIONS], *paths[MAX_IMAGES];
    size_t n_paths = 0, n_questions = 0;
    mg_gen_params gp;
    mg_gen_params_init(&gp);
    mg_context_params cp;
    mg_context_params_init(&cp);
    int vqa = !strcmp(cmd, "vqa"), want_stats = 0;
    stats ts = {0, 0, 0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(cmd); return 0; }
        if (!strcmp(a, "--stats")) { want_stats = 1; continue; }
        if (a[0] != '-' || !a[1]) {
            if (n_paths == MAX_IMAGES) {
                fprintf(stderr, "medgemini %s: at most %d images\n", cmd, MAX_IMAGES);
                return 2;
            }
            paths[n_paths++] = a;
            continue;
        }
        if (!v) { fprintf(stderr, "medgemini %s: %s needs a value\n", cmd, a); return 2; }
        char *end = NULL;
        if (!strcmp(a, "-m")) model_path = v;
        else if (vqa && !strcmp(a, "-q")) {
            if (n_questions == MAX_QUESTIONS) {
                fprintf(stderr, "medgemini %s: at most %d questions\n", cmd, MAX_QUESTIONS);
                return 2;
            }
            questions[n_questions++] = v;
        }
        else if (!vqa && !strcmp(a, "--instruction")) gp.instruction = v;
        else if (!strcmp(a, "--system")) gp.system_prompt = v;
        else if (!strcmp(a, "-n")) gp.max_tokens = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--temp")) gp.temperature = strtof(v, &end);
        else if (!strcmp(a, "--top-k")) gp.top_k = (int32_t)strtol(v, &end, 10);
        else if (!strcmp(a, "--top-p")) gp.top_p = strtof(v, &end);
        else if (!strcmp(a, "--repeat-penalty")) gp.repetition_penalty = strtof(v, &end);
        else if (!strcmp(a, "--seed")) gp.seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--threads")) cp.n_threads = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--ctx")) cp.n_ctx = (uint32_t)strtoul(v, &end, 10);
        else {
            fprintf(stderr, "medgemini %s: unknown option %s\n", cmd, a);
            usage(cmd);
            return 2;
        }
        if (end && *end) { fprintf(stderr, "medgemini %s: bad value for %s: %s\n", cmd, a, v); return 2; }
        i++;
    }
    if (!model_path || !n_paths || (vqa && !n_questions)) {
        usage(cmd);
        return 2;
    }
    gp.on_token = stream;
    gp.user_data = &ts;
    double t0 = now_s(), t_loaded = 0, t_start = 0;
    char err[512];
    mg_model *m = NULL;
    mg_context *ctx = NULL;
    mg_image *imgs[MAX_IMAGES] = {0};
    int rc = 1;
    for (size_t i = 0; i < n_paths; i++)
        if (mg_image_load_file(&imgs[i], paths[i], NULL, err, sizeof err) != MG_OK) {
            fprintf(stderr, "medgemini %s: %s: %s\n", cmd, paths[i], err);
            goto done;
        }
    if (mg_model_load(&m, model_path, NULL, err, sizeof err) != MG_OK) {
        fprintf(stderr, "medgemini %s: %s: %s\n", cmd, model_path, err);
        goto done;
    }
    mg_status st = mg_context_new(&ctx, m, &cp);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini %s: cannot create a context: %s\n", cmd, mg_status_str(st));
        goto done;
    }
    t_loaded = now_s();
    t_start = t_loaded;
    size_t n_calls = vqa ? n_questions : 1;
    for (size_t q = 0; q < n_calls; q++) {
        char *text = NULL;
        if (vqa && n_questions > 1) {
            printf("%sQ: %s\nA: ", q ? "\n" : "", questions[q]);
            fflush(stdout);
        }
        if (q) t_start = now_s(), ts.n = 0;
        st = vqa ? mg_vqa(&text, ctx, (const mg_image *const *)imgs, n_paths, questions[q], &gp)
                 : mg_generate_report(&text, ctx, (const mg_image *const *)imgs, n_paths, &gp);
        if (text) fputc('\n', stdout);
        if (want_stats) {
            double t_end = now_s();
            fprintf(stderr, "stats: images + model load %.2f s, first token after %.2f s (image "
                            "encoding and prompt), %llu tokens",
                    t_loaded - t0, ts.n ? ts.first - t_start : t_end - t_start,
                    (unsigned long long)ts.n);
            if (ts.n > 1)
                fprintf(stderr, ", %.2f tokens/s after the first",
                        (double)(ts.n - 1) / (ts.last - ts.first));
            fputc('\n', stderr);
        }
        mg_string_free(text);
        if (st != MG_OK && st != MG_E_CONTEXT_FULL) {
            fprintf(stderr, "medgemini %s: %s\n", cmd, mg_context_errmsg(ctx));
            goto done;
        }
    }
    rc = 0;
done:
    for (size_t i = 0; i < n_paths; i++) mg_image_free(imgs[i]);
    mg_context_free(ctx);
    mg_model_free(m);
    return rc;
}

int cli_report(int argc, char **argv) { return run("report", argc, argv); }
int cli_vqa(int argc, char **argv) { return run("vqa", argc, argv); }
