/* generate.c - `medgemini generate`: text generation from a prompt or from
 * raw token ids, streaming to stdout; --dump-logits writes the logits of
 * every prompt position for comparison with other implementations. */
#include "medgemini.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int32_t stream(void *user, const char *piece, size_t len, int32_t token) {
    (void)user;
    (void)token;
    return cli_stream(piece, len);
}

static int parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return -1;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) return -1;
        if (*n == cap) {
            int32_t *p = realloc(*ids, (cap *= 2) * sizeof **ids);
            if (!p) return -1;
            *ids = p;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    return *n ? 0 : -1;
}

int cli_draft_open(const char *cmd, const char *path, const mg_context_params *cp,
                   mg_model **m, mg_context **c) {
    char err[512];
    mg_status st = mg_model_load(m, path, NULL, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini %s: draft model %s: %s (%s)\n", cmd, path, err,
                mg_status_str(st));
        return 1;
    }
    return cli_context_new(cmd, " on the draft model", c, *m, cp);
}

int cli_draft_max(const char *v, unsigned *n) {
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (!*v || *end || errno || x < 1 || x > 16) return -1;
    *n = (unsigned)x;
    return 0;
}

static void usage(void) {
    fprintf(stderr,
        "usage: medgemini generate -m MODEL.mgm [options] [PROMPT]\n"
        "  -p PROMPT            the prompt (or give it as the last argument)\n"
        "  --ids 2,818,...      feed these token ids as they are instead of a prompt\n"
        "  --dump-logits FILE   with --ids: write the logits of every prompt position,\n"
        "                       one line per position, space-separated\n"
        "  --raw                no BOS and no chat turn around the prompt\n"
        "  --draft              speculative decoding by n-gram lookup (greedy: the same\n"
        "                       text, faster when it repeats itself or the prompt;\n"
        "                       sampling: the same distribution, another text per seed)\n"
        "  --draft-model FILE   speculative decoding with a smaller model of the same\n"
        "                       tokenizer drafting (as --draft; takes its place)\n"
        "  --draft-max N        at most N drafted tokens per step (1-16, default 4)\n"
        "  --system TEXT        a system prompt at the start of the user turn\n"
        "  -n N                 at most N new tokens (default 256)\n"
        "  --temp T --top-k K --top-p P --repeat-penalty R --seed S   sampling\n"
        "  --stop STRING        stop at STRING (repeatable)\n"
        "  --threads N --ctx N  context settings\n"
        "  --kv-bf16            keep the KV cache in bf16 (half the memory)\n"
        CLI_EXIT_TEXT);
}

int cli_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *ids_arg = NULL, *dump = NULL;
    const char *draft_path = NULL;
    const char *stops[16];
    uint32_t n_stop = 0;
    mg_gen_params gp;
    mg_gen_params_init(&gp);
    mg_context_params cp;
    mg_context_params_init(&cp);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--raw")) { gp.flags |= MG_GEN_RAW_PROMPT; continue; }
        if (!strcmp(a, "--draft")) { gp.flags |= MG_GEN_DRAFT_NGRAM; continue; }
        if (!strcmp(a, "--kv-bf16")) { cp.flags |= MG_CONTEXT_KV_BF16; continue; }
        if (a[0] != '-') {
            if (prompt) { usage(); return 2; }
            prompt = a;
            continue;
        }
        if (!v) {
            static const char known[] = " -m -p --ids --dump-logits --draft-model --draft-max"
                                        " --system -n --temp --top-k --top-p --repeat-penalty"
                                        " --seed --threads --ctx --stop ";
            if (cli_known_option(a, known))
                fprintf(stderr, "medgemini generate: %s needs a value\n", a);
            else
                fprintf(stderr, "medgemini generate: unknown option %s\n", a);
            return 2;
        }
        char *end = NULL;
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "-p")) prompt = v;
        else if (!strcmp(a, "--ids")) ids_arg = v;
        else if (!strcmp(a, "--dump-logits")) dump = v;
        else if (!strcmp(a, "--draft-model")) draft_path = v;
        else if (!strcmp(a, "--draft-max")) {
            unsigned nd;
            if (cli_draft_max(v, &nd)) end = (char *)v;
            else gp.n_draft = nd;
        }
        else if (!strcmp(a, "--system")) gp.system_prompt = v;
        else if (!strcmp(a, "-n")) gp.max_tokens = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--temp")) gp.temperature = strtof(v, &end);
        else if (!strcmp(a, "--top-k")) gp.top_k = (int32_t)strtol(v, &end, 10);
        else if (!strcmp(a, "--top-p")) gp.top_p = strtof(v, &end);
        else if (!strcmp(a, "--repeat-penalty")) gp.repetition_penalty = strtof(v, &end);
        else if (!strcmp(a, "--seed")) gp.seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--threads")) cp.n_threads = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--ctx")) cp.n_ctx = (uint32_t)strtoul(v, &end, 10);
        else if (!strcmp(a, "--stop")) {
            if (n_stop == 16) { fprintf(stderr, "medgemini generate: at most 16 --stop\n"); return 2; }
            stops[n_stop++] = v;
        } else { takes = 0; }
        if (!takes) { fprintf(stderr, "medgemini generate: unknown option %s\n", a); usage(); return 2; }
        if (end && *end) { fprintf(stderr, "medgemini generate: bad value for %s: %s\n", a, v); return 2; }
        i++;
    }
    if (!model_path || (!prompt && !ids_arg) || (prompt && ids_arg) || (dump && !ids_arg)) {
        usage();
        return 2;
    }
    gp.stop = stops;
    gp.n_stop = n_stop;
    gp.on_token = stream;

    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (ids_arg && parse_ids(ids_arg, &ids, &n_ids)) {
        fprintf(stderr, "medgemini generate: --ids wants comma-separated token ids\n");
        free(ids);
        return 2;
    }
    char err[512];
    mg_model *m = NULL, *dm = NULL;
    mg_context *ctx = NULL, *dctx = NULL;
    int rc = 1;
    mg_status st = mg_model_load(&m, model_path, NULL, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini generate: %s: %s (%s)\n", model_path, err, mg_status_str(st));
        goto done;
    }
    if (cli_context_new("generate", NULL, &ctx, m, &cp)) goto done;
    if (draft_path) {
        if (cli_draft_open("generate", draft_path, &cp, &dm, &dctx)) goto done;
        gp.draft = dctx;
    }
    if (dump) {
        mg_model_info mi = {.struct_size = sizeof mi};
        mg_model_info_get(&mi, m);
        size_t nf = n_ids * (size_t)mi.n_vocab;
        float *lg = nf ? malloc(nf * sizeof *lg) : NULL;
        FILE *f = fopen(dump, "w");
        if (!lg || !f) {
            fprintf(stderr, "medgemini generate: %s: %s\n", dump, f ? "out of memory" : strerror(errno));
            free(lg);
            if (f) fclose(f);
            goto done;
        }
        cli_sigint_begin(ctx);
        st = mg_context_eval(ctx, ids, n_ids, lg, nf);
        cli_sigint_end();
        int werr = 0;
        for (size_t t = 0; st == MG_OK && !werr && t < n_ids; t++) {
            for (uint32_t v = 0; v < mi.n_vocab; v++)
                fprintf(f, v ? " %.9g" : "%.9g", lg[t * mi.n_vocab + v]);
            if (fputc('\n', f) == EOF) werr = errno ? errno : EIO;
        }
        free(lg);
        if (!werr && ferror(f)) werr = errno ? errno : EIO;
        if (fclose(f) != 0 && !werr) werr = errno ? errno : EIO;
        if (st != MG_OK) {
            if (st == MG_E_INTERRUPTED && cli_interrupted()) {
                fprintf(stderr, "medgemini generate: logits: stopped: %s\n", mg_status_str(st));
                rc = CLI_EXIT_INTERRUPTED;
            } else {
                fprintf(stderr, "medgemini generate: logits: %s\n", mg_context_errmsg(ctx));
            }
            goto done;
        }
        if (werr) {
            fprintf(stderr, "medgemini generate: cannot write %s: %s\n", dump, strerror(werr));
            goto done;
        }
    }
    char *text = NULL;
    cli_sigint_begin(ctx);
    st = ids ? mg_generate_ids(&text, ctx, ids, n_ids, &gp) : mg_generate(&text, ctx, prompt, &gp);
    cli_sigint_end();
    cli_stream_end(text); /* no answer, no line */
    int text_seen = text != NULL;
    mg_string_free(text);
    rc = cli_gen_result("generate", NULL, st, text_seen, ctx);
done:
    free(ids);
    mg_context_free(ctx);
    mg_model_free(m);
    mg_context_free(dctx);
    mg_model_free(dm);
    return rc;
}
