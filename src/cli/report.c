/* report.c - `medgemini report` and `medgemini vqa`: a radiology report for
 * one study, or the answer to a question, from image files, streamed to
 * stdout. */
#include "medgemini.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    return cli_stream(piece, len);
}

/* The progress bar on stderr (--progress, or by default when stderr is a
 * terminal): the stage, how far it is, the seconds since the call began;
 * cleared when the answer starts streaming. */
typedef struct bar { int on, drawn; } bar;

static void bar_clear(bar *b) {
    if (b->drawn) fputs("\r\033[K", stderr);
    b->drawn = 0;
}

static int32_t draw_bar(void *user, const mg_progress *p) {
    bar *b = user;
    if (p->stage == MG_STAGE_GENERATE) {
        bar_clear(b);
        return 0;
    }
    double frac = 0;
    char what[96];
    if (p->stage == MG_STAGE_ENCODE) {
        frac = p->n_steps ? (double)p->step / p->n_steps : 0;
        snprintf(what, sizeof what, "encoding image %u/%u", p->block + 1, p->n_blocks);
    } else {
        double layer = p->n_steps ? (double)p->step / p->n_steps : 0;
        frac = p->total ? ((double)p->done + 0.999 * layer *
                           (p->total - p->done < 512 ? p->total - p->done : 512)) / p->total
                        : 1;
        if (frac > 1) frac = 1;
        snprintf(what, sizeof what, "reading the prompt, %u/%u tokens (%u kept)", p->done,
                 p->total, p->reused);
    }
    char cells[21];
    int fill = (int)(frac * 20 + 0.5);
    for (int i = 0; i < 20; i++) cells[i] = i < fill ? '#' : '-';
    cells[20] = '\0';
    fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %.1f s", what, cells, 100 * frac, p->seconds);
    fflush(stderr);
    b->drawn = 1;
    return 0;
}

static void usage(const char *cmd) {
    if (!strcmp(cmd, "chat"))
        fprintf(stderr, "usage: medgemini chat [IMAGE...] -m MODEL.mgm [options]\n"
                        "  one message per line on stdin; each answer is streamed to stdout,\n"
                        "  the conversation kept (the images are read once, with the first\n"
                        "  message); a line \"/reset\" starts a new conversation\n");
    else if (!strcmp(cmd, "vqa"))
        fprintf(stderr, "usage: medgemini vqa IMAGE... -q QUESTION [-q QUESTION...] -m MODEL.mgm "
                        "[options]\n"
                        "  -q QUESTION          may be repeated: each is answered on its own\n"
                        "                       (printed as \"Q: ...\" and \"A: ...\" lines); an\n"
                        "                       answer cut short is said on stderr and the next\n"
                        "                       question asked; any other error stops there\n");
    else
        fprintf(stderr, "usage: medgemini report IMAGE... -m MODEL.mgm [options]\n"
                        "       medgemini report (SERIES_DIR... | VOLUME.nii[.gz]) -m MODEL.mgm "
                        "[options]\n"
                        "  --instruction TEXT   instead of the model's report instruction\n"
                        "  --sr OUT.dcm         also write the report as a DICOM Basic Text SR in\n"
                        "                       the study of the DICOM inputs (docs/DICOM.md)\n"
                        "Folders or a DICOMDIR of several studies (or of radiographs): one report\n"
                        "per study (medgemini study lists them); --sr then names a folder. A study\n"
                        "that fails is named on stderr and the next one reported; the exit status\n"
                        "is then that of the worst (a count of failed studies ends stderr)\n"
                        "  --prior              also give the model the patient's prior study's\n"
                        "                       frontal view (after the study's own images)\n");
    fprintf(stderr,
        "  --system TEXT        instead of the model's system text (\"\" for none)\n"
        "  -n N                 at most N new tokens (default 256)\n"
        "  --temp T --top-k K --top-p P --repeat-penalty R --seed S   sampling\n"
        "  --threads N --ctx N  context settings\n"
        "  --kv-bf16            keep the KV cache in bf16 (half the memory)\n"
        "  --no-reuse           read every prompt afresh: no prefix reuse, no cached\n"
        "                       image encodings across questions\n"
        "  --draft              speculative decoding by n-gram lookup (greedy: the same\n"
        "                       text, faster when it repeats itself or the prompt;\n"
        "                       sampling: the same distribution, another text per seed)\n"
        "  --draft-model FILE   speculative decoding with a smaller model of the same\n"
        "                       tokenizer drafting (needs no image encoder; as --draft)\n"
        "  --draft-max N        at most N drafted tokens per step (1-16, default 4)\n"
        "  --stats              print timings on stderr (load, first token, tokens/s)\n"
        "  --progress, --no-progress  a progress bar on stderr (default: when stderr is\n"
        "                       a terminal)\n"
        "  --prompt-ids FILE    write the token ids the context held after the (last) call\n"
        "Images: JPEG, PNG or DICOM files (several: one study, e.g. frontal and lateral).\n"
        "Volumes (a CT or MR read slice by slice, MedGemma 1.5's recipe; docs/VOLUME.md):\n"
        "a folder of one DICOM series (or several folders), a NIfTI file, or DICOM files\n"
        "with --volume.\n"
        "  --volume             read the DICOM files given as the slices of one volume\n"
        "  --slices N           at most N evenly spaced slices (default 85)\n"
        "  --window W           auto (default: CT windows for CT, else min-max), ct, minmax\n"
        "  --as-stored          slices in voxel order, not turned to the radiological view\n"
        "  --series UID         the DICOM series to read (default: the largest)\n"
        CLI_EXIT_TEXT);
}

/* --prompt-ids: the context's tokens, one id a line. */
static int write_ids(const char *cmd, const char *path, mg_context *ctx) {
    size_t n = 0;
    mg_status st = mg_context_tokens(NULL, 0, &n, ctx);
    int32_t *ids = st == MG_OK || st == MG_E_BUFFER_TOO_SMALL ? malloc((n ? n : 1) * sizeof *ids)
                                                               : NULL;
    if (ids && (st = mg_context_tokens(ids, n, &n, ctx)) != MG_OK) {
        free(ids);
        ids = NULL;
    }
    if (!ids) {
        fprintf(stderr, "medgemini %s: --prompt-ids: %s\n", cmd,
                mg_status_str(st == MG_OK || st == MG_E_BUFFER_TOO_SMALL ? MG_E_NOMEM : st));
        return 1;
    }
    FILE *f = fopen(path, "w");
    int e = f ? 0 : errno;
    for (size_t i = 0; f && !e && i < n; i++)
        if (fprintf(f, "%d\n", (int)ids[i]) < 0) e = errno ? errno : EIO;
    if (f && !e && ferror(f)) e = errno ? errno : EIO;
    if (f && fclose(f) && !e) e = errno ? errno : EIO;
    free(ids);
    if (e) fprintf(stderr, "medgemini %s: cannot write %s: %s\n", cmd, path, strerror(e));
    return e != 0;
}

/* `medgemini chat`: one message per stdin line, the images with the first. */
static int chat_loop(mg_context *ctx, mg_image **imgs, size_t n_imgs, mg_gen_params *gp,
                     stats *ts, int want_stats, bar *pb) {
    char *line = NULL;
    size_t cap = 0;
    int first = 1, rc = 0, tty = isatty(0);
    for (;;) {
        if (tty) fputs("> ", stderr);
        errno = 0;
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "medgemini chat: cannot read standard input: %s\n",
                        strerror(errno ? errno : EIO));
                rc = cli_worse(rc, CLI_EXIT_ERROR);
            }
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len) continue;
        if (!strcmp(line, "/reset")) {
            mg_context_reset(ctx);
            first = 1;
            continue;
        }
        char *text = NULL;
        double t0 = now_s();
        ts->n = 0;
        cli_sigint_begin(ctx);
        mg_status st = mg_chat(&text, ctx, first ? (const mg_image *const *)imgs : NULL,
                               first ? n_imgs : 0, line, gp);
        cli_sigint_end();
        bar_clear(pb);
        cli_stream_end(text);
        if (want_stats)
            fprintf(stderr, "stats: first token after %.2f s, %llu tokens, %u in the context\n",
                    ts->n ? ts->first - t0 : now_s() - t0, (unsigned long long)ts->n,
                    mg_context_n_tokens(ctx));
        int partial = text != NULL;
        mg_string_free(text);
        /* an answer cut short by a full context: the conversation goes on
         * (mg_chat drops old exchanges); anything else ends it */
        int r = cli_gen_result("chat", NULL, st, partial, ctx);
        rc = cli_worse(rc, r);
        if (r != CLI_EXIT_OK && r != CLI_EXIT_PARTIAL) break;
        if ((r = cli_should_stop("chat")) != CLI_EXIT_OK) {
            rc = cli_worse(rc, r);
            break;
        }
        first = 0;
    }
    free(line);
    return rc;
}

/* Writes text as an SR at out over the source files src (model named by its
 * file name). */
static int sr_files(const char *cmd, const char *out, const char *text, const char *const *src,
                    size_t n, const char *model_path) {
    const char *slash = strrchr(model_path, '/');
    mg_sr_params srp;
    mg_sr_params_init(&srp);
    char name[65]; /* the file name, cut to 64 bytes at a character boundary */
    snprintf(name, sizeof name, "%s", slash ? slash + 1 : model_path);
    if (strlen(name) == 64) /* a cut character would be invalid UTF-8: drop its bytes */
        for (size_t l = 64; l && (unsigned char)name[l - 1] >= 0x80;) name[--l] = '\0';
    srp.model_name = name;
    char err[512];
    mg_status st = mg_sr_write(out, text, src, n, &srp, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini %s: --sr %s: %s (%s)\n", cmd, out, err, mg_status_str(st));
        return 1;
    }
    return 0;
}

/* --sr: the report as a DICOM SR in the study of its DICOM inputs (the
 * images given, or every slice file of a DICOM volume). */
static int write_sr(const char *cmd, const char *out, const char *text, const char **paths,
                    size_t n_paths, const mg_volume *vol, const char *model_path) {
    const char *slices = vol ? mg_volume_get_string(vol, "slices") : NULL;
    size_t cap = slices ? 1 : n_paths, n = 0;
    for (const char *c = slices; c && *c; c++) cap += *c == '\n';
    char **src = calloc(cap ? cap : 1, sizeof *src);
    int rc = 1;
    if (!src) goto oom;
    if (vol && !slices) {
        fprintf(stderr, "medgemini %s: --sr needs DICOM input (not NIfTI)\n", cmd);
        goto done;
    }
    for (const char *c = slices; c && *c;) { /* "PATH\tFRAME" lines, a file once */
        const char *tab = strchr(c, '\t'), *nl = strchr(c, '\n');
        if (!nl) nl = c + strlen(c);
        size_t l = (tab && tab < nl ? tab : nl) - c;
        int seen = 0;
        for (size_t k = 0; k < n && !seen; k++) seen = strlen(src[k]) == l && !strncmp(src[k], c, l);
        if (!seen) {
            if (!(src[n] = strndup(c, l))) goto oom;
            n++;
        }
        c = *nl ? nl + 1 : nl;
    }
    for (size_t i = 0; !vol && i < n_paths; i++)
        if (!(src[n++] = strdup(paths[i]))) goto oom;
    rc = sr_files(cmd, out, text, (const char *const *)src, n, model_path);
    goto done;
oom:
    fprintf(stderr, "medgemini %s: --sr: out of memory\n", cmd);
done:
    for (size_t i = 0; src && i < n; i++) free(src[i]);
    free(src);
    return rc;
}

/* The lines of a newline-separated list as an array (pointers into a copy;
 * free both with free_lines). */
static char **split_lines(const char *s, size_t *n) {
    char *copy = strdup(s ? s : "");
    size_t cap = 1;
    for (const char *c = copy; c && *c; c++) cap += *c == '\n';
    char **v = copy ? malloc((cap + 1) * sizeof *v) : NULL;
    *n = 0;
    if (!v) { free(copy); return NULL; }
    v[0] = copy; /* slot 0 keeps the buffer for free_lines */
    for (char *c = copy; *c;) {
        v[++*n] = c;
        char *e = strchr(c, '\n');
        if (!e) break;
        *e = '\0';
        c = e + 1;
    }
    return v;
}
static void free_lines(char **v) {
    if (v) free(v[0]);
    free(v);
}

/* `report DIR...` over several studies (or one radiograph study): one
 * report per study, from its volume (the largest CT/MR/PT series) or its
 * frontal and lateral radiographs; with --sr naming a folder, one SR per
 * study in it (STUDY_UID.dcm), or a file for a single study. */
static int report_studies(mg_context *ctx, mg_studies *st, mg_gen_params *gp,
                          const mg_slice_params *sp, const mg_volume_params *vp, bar *pb,
                          const char *sr_path, const char *model_path, int with_prior) {
    size_t ns = mg_studies_count(st), n_failed = 0, n_done = 0;
    struct stat sb;
    int sr_dir = sr_path && stat(sr_path, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (sr_path && ns > 1 && !sr_dir) {
        fprintf(stderr, "medgemini report: %zu studies: --sr must name a folder (one SR each)\n",
                ns);
        return 2;
    }
    int rc = 0;
    for (size_t i = 0; i < ns; i++) {
        int stop = cli_should_stop("report");
        if (stop) {
            rc = cli_worse(rc, stop);
            break;
        }
        const char *kind = mg_studies_get(st, i, -1, "kind"), *uid = mg_studies_get(st, i, -1, "study_uid");
        if (!kind) kind = "-";
        if (!uid) uid = "-";
        printf("%s== study %zu of %zu: %s (patient %s, %s, %s)\n", i ? "\n" : "", i + 1, ns, uid,
               mg_studies_get(st, i, -1, "patient_id") ? mg_studies_get(st, i, -1, "patient_id") : "-",
               mg_studies_get(st, i, -1, "date") ? mg_studies_get(st, i, -1, "date") : "no date", kind);
        fflush(stdout);
        n_done++;
        char **files = NULL;
        size_t nf = 0;
        mg_image *imgs[3] = {NULL, NULL, NULL};
        mg_volume *vol = NULL;
        char err[512] = "", *text = NULL;
        const char *bad_path = NULL; /* the input that failed to load */
        mg_status s = MG_OK;
        int r = CLI_EXIT_OK, generated = 0;
        if (!strcmp(kind, "volume")) {
            size_t best = 0, best_n = 0; /* the largest volume series */
            for (size_t k = 0; k < mg_studies_series_count(st, i); k++) {
                const char *m = mg_studies_get(st, i, (int64_t)k, "modality");
                char **f = split_lines(mg_studies_get(st, i, (int64_t)k, "files"), &nf);
                if (m && (!strcmp(m, "CT") || !strcmp(m, "MR") || !strcmp(m, "PT")) && nf > best_n)
                    best = k, best_n = nf;
                free_lines(f);
            }
            files = split_lines(mg_studies_get(st, i, (int64_t)best, "files"), &nf);
            if (!files) s = MG_E_NOMEM, snprintf(err, sizeof err, "%s", mg_status_str(s));
            if (s == MG_OK)
                s = mg_volume_load_dicom(&vol, (const char *const *)files + 1, nf, vp, err, sizeof err);
            if (s == MG_OK) {
                cli_sigint_begin(ctx);
                s = mg_generate_report_volume(&text, ctx, vol, sp, gp);
                cli_sigint_end();
                generated = 1;
            }
        } else if (!strcmp(kind, "radiograph")) {
            const char *v[2] = {mg_studies_get(st, i, -1, "frontal"), mg_studies_get(st, i, -1, "lateral")};
            char both[8192];
            snprintf(both, sizeof both, "%s%s%s", v[0] ? v[0] : "", v[0] && v[1] ? "\n" : "",
                     v[1] ? v[1] : "");
            files = split_lines(both, &nf);
            if (!files) s = MG_E_NOMEM, snprintf(err, sizeof err, "%s", mg_status_str(s));
            for (size_t k = 0; k < nf && s == MG_OK; k++)
                if ((s = mg_image_load_file(&imgs[k], files[k + 1], NULL, err, sizeof err)) != MG_OK)
                    bad_path = files[k + 1];
            /* --prior: the prior study's frontal view after this study's
             * images (not part of the SR's evidence: another study) */
            const char *pi = with_prior ? mg_studies_get(st, i, -1, "prior") : NULL;
            const char *pf = pi ? mg_studies_get(st, (size_t)strtoull(pi, NULL, 10), -1, "frontal") : NULL;
            size_t n_img = nf;
            if (s == MG_OK && pf) {
                if ((s = mg_image_load_file(&imgs[nf], pf, NULL, err, sizeof err)) != MG_OK)
                    bad_path = pf;
                n_img++;
                const char *pd = mg_studies_get(st, (size_t)strtoull(pi, NULL, 10), -1, "date");
                if (s == MG_OK) printf("(with the prior study of %s: %s)\n", pd ? pd : "no date", pf);
            }
            if (s == MG_OK) {
                cli_sigint_begin(ctx);
                s = mg_generate_report(&text, ctx, (const mg_image *const *)imgs, n_img, gp);
                cli_sigint_end();
                generated = 1;
            }
        } else {
            printf("(skipped: no radiograph or CT/MR volume in this study)\n");
            free_lines(files);
            continue;
        }
        bar_clear(pb);
        cli_stream_end(text);
        char item[600];
        snprintf(item, sizeof item, "study %zu of %zu (%s)", i + 1, ns, uid);
        if (generated) {
            r = cli_gen_result("report", item, s, text != NULL, ctx);
        } else if (s != MG_OK) { /* the study's images or volume */
            fprintf(stderr, "medgemini report: %s: %s%s%s (%s)\n", item, bad_path ? bad_path : "",
                    bad_path ? ": " : "", err, mg_status_str(s));
            r = CLI_EXIT_ERROR;
        }
        if (r == CLI_EXIT_OK && sr_path) {
            char out[4096];
            if (sr_dir) snprintf(out, sizeof out, "%s/%s.dcm", sr_path, uid);
            else snprintf(out, sizeof out, "%s", sr_path);
            if (sr_files("report", out, text, (const char *const *)files + 1, nf, model_path))
                r = CLI_EXIT_ERROR;
        }
        if (r != CLI_EXIT_OK) n_failed++;
        rc = cli_worse(rc, r);
        mg_string_free(text);
        mg_image_free(imgs[0]);
        mg_image_free(imgs[1]);
        mg_image_free(imgs[2]);
        mg_volume_free(vol);
        free_lines(files);
        if (r == CLI_EXIT_INTERRUPTED || cli_stdout_failed("report")) {
            rc = cli_worse(rc, r == CLI_EXIT_INTERRUPTED ? r : CLI_EXIT_ERROR);
            break;
        }
    }
    if (ns > 1 && (n_failed || n_done < ns))
        fprintf(stderr, "medgemini report: %zu of %zu studies without a complete report%s\n",
                n_failed + (ns - n_done), ns, n_done < ns ? " (stopped early)" : "");
    return rc;
}

/* The options that take a value (for saying which are unknown). */
static const char k_value_options[] =
    " -m -q --instruction --system -n --temp --top-k --top-p --repeat-penalty --seed --threads"
    " --ctx --slices --window --series --prompt-ids --sr --draft-model --draft-max ";

/* cmd: "report", "vqa" or "chat". */
static int run(const char *cmd, int argc, char **argv) {
    const char *model_path = NULL, *questions[MAX_QUESTIONS], *paths[MAX_IMAGES];
    size_t n_paths = 0, n_questions = 0;
    mg_gen_params gp;
    mg_gen_params_init(&gp);
    mg_context_params cp;
    mg_context_params_init(&cp);
    int vqa = !strcmp(cmd, "vqa"), chat = !strcmp(cmd, "chat"), want_stats = 0, as_volume = 0;
    int with_prior = 0;
    bar pb = {isatty(2), 0};
    const char *ids_path = NULL, *sr_path = NULL, *draft_path = NULL;
    mg_slice_params sp;
    mg_slice_params_init(&sp);
    mg_volume_params vp;
    mg_volume_params_init(&vp);
    stats ts = {0, 0, 0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(cmd); return 0; }
        if (!strcmp(a, "--stats")) { want_stats = 1; continue; }
        if (!strcmp(a, "--progress")) { pb.on = 1; continue; }
        if (!strcmp(a, "--no-progress")) { pb.on = 0; continue; }
        if (!strcmp(a, "--volume")) { as_volume = 1; continue; }
        if (!strcmp(a, "--kv-bf16")) { cp.flags |= MG_CONTEXT_KV_BF16; continue; }
        if (!strcmp(a, "--no-reuse")) { cp.flags |= MG_CONTEXT_NO_REUSE; continue; }
        if (!strcmp(a, "--draft")) { gp.flags |= MG_GEN_DRAFT_NGRAM; continue; }
        if (!strcmp(a, "--as-stored")) { sp.flags |= MG_SLICES_AS_STORED; continue; }
        if (!vqa && !chat && !strcmp(a, "--prior")) { with_prior = 1; continue; }
        if (a[0] != '-' || !a[1]) {
            if (n_paths == MAX_IMAGES) {
                fprintf(stderr, "medgemini %s: at most %d images\n", cmd, MAX_IMAGES);
                return 2;
            }
            paths[n_paths++] = a;
            continue;
        }
        if (!v) {
            if (cli_known_option(a, k_value_options))
                fprintf(stderr, "medgemini %s: %s needs a value\n", cmd, a);
            else
                fprintf(stderr, "medgemini %s: unknown option %s\n", cmd, a);
            return 2;
        }
        char *end = NULL;
        if (!strcmp(a, "-m")) model_path = v;
        else if (vqa && !strcmp(a, "-q")) {
            if (n_questions == MAX_QUESTIONS) {
                fprintf(stderr, "medgemini %s: at most %d questions\n", cmd, MAX_QUESTIONS);
                return 2;
            }
            questions[n_questions++] = v;
        }
        else if (!vqa && !chat && !strcmp(a, "--instruction")) gp.instruction = v;
        else if (!strcmp(a, "--system")) gp.system_prompt = v;
        else if (!strcmp(a, "-n")) gp.max_tokens = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--temp")) gp.temperature = strtof(v, &end);
        else if (!strcmp(a, "--top-k")) gp.top_k = (int32_t)strtol(v, &end, 10);
        else if (!strcmp(a, "--top-p")) gp.top_p = strtof(v, &end);
        else if (!strcmp(a, "--repeat-penalty")) gp.repetition_penalty = strtof(v, &end);
        else if (!strcmp(a, "--seed")) gp.seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--threads")) cp.n_threads = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--ctx")) cp.n_ctx = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--slices")) {
            sp.max_slices = (uint32_t)strtoul(v, &end, 10);
            if (!sp.max_slices) end = (char *)"0";
        }
        else if (!strcmp(a, "--window")) {
            if (!strcmp(v, "auto")) sp.window = MG_SLICE_WINDOW_AUTO;
            else if (!strcmp(v, "ct")) sp.window = MG_SLICE_WINDOW_CT;
            else if (!strcmp(v, "minmax")) sp.window = MG_SLICE_WINDOW_MINMAX;
            else end = (char *)v;
        }
        else if (!strcmp(a, "--series")) vp.series_uid = v;
        else if (!strcmp(a, "--prompt-ids")) ids_path = v;
        else if (!vqa && !chat && !strcmp(a, "--sr")) sr_path = v;
        else if (!strcmp(a, "--draft-model")) draft_path = v;
        else if (!strcmp(a, "--draft-max")) {
            unsigned nd;
            if (cli_draft_max(v, &nd)) end = (char *)v;
            else gp.n_draft = nd;
        }
        else {
            fprintf(stderr, "medgemini %s: unknown option %s\n", cmd, a);
            usage(cmd);
            return 2;
        }
        if (end && *end) { fprintf(stderr, "medgemini %s: bad value for %s: %s\n", cmd, a, v); return 2; }
        i++;
    }
    if (!model_path || (!n_paths && !chat) || (vqa && !n_questions)) {
        usage(cmd);
        return 2;
    }
    gp.on_token = stream;
    gp.user_data = &ts;
    if (pb.on) {
        gp.on_progress = draw_bar;
        gp.progress_user_data = &pb;
    }
    double t0 = now_s(), t_loaded = 0, t_start = 0;
    char err[512];
    mg_model *m = NULL, *dm = NULL;
    mg_context *ctx = NULL, *dctx = NULL;
    mg_image *imgs[MAX_IMAGES] = {0};
    mg_volume *vol = NULL;
    int rc = 1;
    mg_status st;
    mg_studies *studies = NULL;
    /* report on folders or a DICOMDIR: one report per study, unless they
     * hold a single study that is a volume (read as one series, as before) */
    if (!vqa && !chat) {
        int dirs = 0;
        for (size_t i = 0; i < n_paths; i++) {
            struct stat sb;
            const char *b = strrchr(paths[i], '/');
            dirs += (stat(paths[i], &sb) == 0 && S_ISDIR(sb.st_mode)) ||
                    !strcmp(b ? b + 1 : paths[i], "DICOMDIR");
        }
        if (dirs && dirs == (int)n_paths) {
            if ((st = mg_studies_scan(&studies, paths, n_paths, NULL, err, sizeof err)) != MG_OK) {
                fprintf(stderr, "medgemini %s: %s (%s)\n", cmd, err, mg_status_str(st));
                goto done;
            }
            const char *kind0 = mg_studies_get(studies, 0, -1, "kind");
            if (mg_studies_count(studies) == 1 && kind0 && !strcmp(kind0, "volume")) {
                mg_studies_free(studies);
                studies = NULL;
            }
        }
    }
    /* A folder, or a NIfTI file, is a volume. */
    for (size_t i = 0; i < n_paths; i++) {
        struct stat sb;
        size_t l = strlen(paths[i]);
        if (stat(paths[i], &sb) == 0 && S_ISDIR(sb.st_mode)) as_volume = 1;
        if ((l > 4 && !strcmp(paths[i] + l - 4, ".nii")) ||
            (l > 7 && !strcmp(paths[i] + l - 7, ".nii.gz"))) {
            if (n_paths > 1) {
                fprintf(stderr, "medgemini %s: a NIfTI file is one volume: give it alone\n", cmd);
                return 2;
            }
            as_volume = 2;
        }
    }
    if (studies) as_volume = 0;
    if (chat && as_volume) {
        fprintf(stderr, "medgemini chat: chat reads images (volumes: use vqa)\n");
        return 2;
    }
    if (studies) {
        /* the images and volumes are read per study below */
    } else if (as_volume == 2) {
        if ((st = mg_volume_load_nifti(&vol, paths[0], &vp, err, sizeof err)) != MG_OK) {
            fprintf(stderr, "medgemini %s: %s: %s (%s)\n", cmd, paths[0], err, mg_status_str(st));
            goto done;
        }
    } else if (as_volume) {
        if ((st = mg_volume_load_dicom(&vol, paths, n_paths, &vp, err, sizeof err)) != MG_OK) {
            fprintf(stderr, "medgemini %s: %s (%s)\n", cmd, err, mg_status_str(st));
            goto done;
        }
    } else {
        for (size_t i = 0; i < n_paths; i++)
            if ((st = mg_image_load_file(&imgs[i], paths[i], NULL, err, sizeof err)) != MG_OK) {
                fprintf(stderr, "medgemini %s: %s: %s (%s)\n", cmd, paths[i], err,
                        mg_status_str(st));
                goto done;
            }
    }
    if ((st = mg_model_load(&m, model_path, NULL, err, sizeof err)) != MG_OK) {
        fprintf(stderr, "medgemini %s: %s: %s (%s)\n", cmd, model_path, err, mg_status_str(st));
        goto done;
    }
    if (cli_context_new(cmd, NULL, &ctx, m, &cp)) goto done;
    if (draft_path) {
        if (cli_draft_open(cmd, draft_path, &cp, &dm, &dctx)) goto done;
        gp.draft = dctx;
    }
    t_loaded = now_s();
    t_start = t_loaded;
    if (chat) {
        rc = chat_loop(ctx, imgs, n_paths, &gp, &ts, want_stats, &pb);
        goto done;
    }
    if (studies) {
        rc = report_studies(ctx, studies, &gp, &sp, &vp, &pb, sr_path, model_path, with_prior);
        goto done;
    }
    size_t n_calls = vqa ? n_questions : 1;
    rc = CLI_EXIT_OK;
    for (size_t q = 0; q < n_calls; q++) {
        int r = cli_should_stop(cmd);
        if (r) {
            rc = cli_worse(rc, r);
            break;
        }
        char *text = NULL;
        if (vqa && n_questions > 1) {
            printf("%sQ: %s\nA: ", q ? "\n" : "", questions[q]);
            fflush(stdout);
        }
        if (q) t_start = now_s(), ts.n = 0;
        cli_sigint_begin(ctx);
        if (vol)
            st = vqa ? mg_vqa_volume(&text, ctx, vol, questions[q], &sp, &gp)
                     : mg_generate_report_volume(&text, ctx, vol, &sp, &gp);
        else
            st = vqa ? mg_vqa(&text, ctx, (const mg_image *const *)imgs, n_paths, questions[q],
                              &gp)
                     : mg_generate_report(&text, ctx, (const mg_image *const *)imgs, n_paths,
                                          &gp);
        cli_sigint_end();
        bar_clear(&pb);
        cli_stream_end(text);
        if (!text && vqa && n_questions > 1) cli_out("\n", 1); /* ends the "A: " line */
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
        int partial = text != NULL; /* a context that filled during generation */
        char item[64] = "";
        if (n_calls > 1) snprintf(item, sizeof item, "question %zu of %zu", q + 1, n_calls);
        r = cli_gen_result(cmd, item, st, partial, ctx);
        if (sr_path && r == CLI_EXIT_OK &&
            write_sr(cmd, sr_path, text, paths, n_paths, vol, model_path))
            r = CLI_EXIT_ERROR;
        mg_string_free(text);
        if (ids_path && q + 1 == n_calls && write_ids(cmd, ids_path, ctx)) r = cli_worse(r, 1);
        rc = cli_worse(rc, r);
        /* a cut-short answer: the next question is asked; else stop */
        if (r != CLI_EXIT_OK && r != CLI_EXIT_PARTIAL) break;
    }
done:
    mg_studies_free(studies);
    for (size_t i = 0; i < n_paths; i++) mg_image_free(imgs[i]);
    mg_volume_free(vol);
    mg_context_free(ctx);
    mg_model_free(m);
    mg_context_free(dctx);
    mg_model_free(dm);
    return rc;
}

int cli_report(int argc, char **argv) { return run("report", argc, argv); }
int cli_vqa(int argc, char **argv) { return run("vqa", argc, argv); }
int cli_chat(int argc, char **argv) { return run("chat", argc, argv); }
