/* convert.c - `medgemini convert`: a Hugging Face folder or a GGUF file (plus
 * an mmproj GGUF) into an .mgm, with per-tensor quantization error and, with
 * --eval, a comparison of the converted model's logits against a lossless
 * conversion of the same source on a file of prompts. */
#include "medgemini.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void conv_usage(FILE *f) {
    fprintf(f,
        "usage: medgemini convert SRC -o OUT.mgm [options]\n"
        "  SRC is a Hugging Face folder (config.json, *.safetensors, tokenizer.json)\n"
        "  or a GGUF file (llama.cpp gemma3)\n"
        "  --type T          f32, f16, bf16, q8_0 or q4_0 for matrices (default: as the\n"
        "                    source); norms, biases and vision embeddings stay f32\n"
        "  --mmproj FILE     the vision part of a GGUF source (llama.cpp mmproj GGUF)\n"
        "  --tokenizer FILE  use this tokenizer.json instead of the source's tokenizer\n"
        "  --prune-vocab F   keep only the tokens that the text file F needs, and their\n"
        "                    embedding rows (F still tokenizes exactly as before)\n"
        "  --meta KEY=VALUE  set a string key under general. or prompt.; repeatable;\n"
        "                    replaces the converter's own value of that key\n"
        "  --compress        store tensors zstd-compressed\n"
        "  --no-checksums    do not record the SHA-256 of the source files\n"
        "  --eval FILE       compare the logits with a lossless (f32) conversion on the\n"
        "                    prompts in FILE (one per line): top-1 agreement, KL\n"
        "  --quiet           no per-tensor lines\n");
}

typedef struct prog { int quiet; double worst; char worst_name[96]; } prog;

static int32_t on_tensor(void *ud, const char *name, int32_t dtype, uint64_t i, uint64_t n,
                         double rms, double rel) {
    prog *p = ud;
    if (rel > p->worst) {
        p->worst = rel;
        snprintf(p->worst_name, sizeof p->worst_name, "%s", name);
    }
    if (!p->quiet)
        fprintf(stderr, "[%4" PRIu64 "/%" PRIu64 "] %-36s %-5s rms err %.3g (rel %.3g)\n",
                i + 1, n, name, mg_dtype_name(dtype), rms, rel);
    return cli_interrupted(); /* Ctrl-C: mg_convert stops and removes the output */
}

static int parse_type(const char *s, int32_t *dt) {
    for (int32_t d = 0; d <= MG_DTYPE_Q4_0; d++)
        if (mg_dtype_name(d) && !strcmp(s, mg_dtype_name(d))) {
            *dt = d;
            return 0;
        }
    return -1;
}

static void softmax(const float *v, size_t n, double *p) {
    double mx = v[0], s = 0;
    for (size_t i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    for (size_t i = 0; i < n; i++) s += (p[i] = exp((double)v[i] - mx));
    for (size_t i = 0; i < n; i++) p[i] /= s;
}

static size_t argmax(const float *v, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Logits of every position of one prompt (BOS + text), n_vocab each; NULL
 * with the reason on stderr. */
static float *prompt_logits(mg_model *m, const char *which, const char *text, size_t *rows,
                            uint32_t *nv) {
    const mg_tokenizer *tok = mg_model_tokenizer(m);
    mg_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (!tok || mg_model_info_get(&info, m) != MG_OK || !info.n_vocab) {
        fprintf(stderr, "medgemini convert: --eval: the %s model has no tokenizer or decoder\n",
                which);
        return NULL;
    }
    size_t n = 0;
    mg_status st = mg_tokenize(NULL, 0, &n, tok, text, strlen(text), MG_TOKENIZE_ADD_BOS);
    if (st != MG_OK && st != MG_E_BUFFER_TOO_SMALL) {
        fprintf(stderr, "medgemini convert: --eval: tokenizing a prompt: %s\n", mg_status_str(st));
        return NULL;
    }
    if (!n || n > 4096) {
        fprintf(stderr, "medgemini convert: --eval: a prompt of %zu tokens (1 to 4096)\n", n);
        return NULL;
    }
    int32_t *ids = malloc(n * sizeof *ids);
    float *lg = malloc(n * info.n_vocab * sizeof *lg);
    mg_context *c = NULL;
    mg_context_params cp;
    mg_context_params_init(&cp);
    cp.n_ctx = (uint32_t)n;
    st = !ids || !lg ? MG_E_NOMEM : mg_tokenize(ids, n, &n, tok, text, strlen(text), MG_TOKENIZE_ADD_BOS);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini convert: --eval: %s\n", mg_status_str(st));
    } else if (cli_context_new("convert", " for --eval", &c, m, &cp)) {
        st = MG_E_INVALID_ARG;
    } else {
        cli_sigint_begin(c);
        st = mg_context_eval(c, ids, n, lg, n * info.n_vocab);
        cli_sigint_end();
        if (st == MG_E_INTERRUPTED && cli_interrupted())
            fprintf(stderr, "medgemini convert: --eval: stopped: %s\n", mg_status_str(st));
        else if (st != MG_OK)
            fprintf(stderr, "medgemini convert: --eval: the %s model: %s\n", which,
                    mg_context_errmsg(c));
    }
    if (st != MG_OK) {
        free(lg);
        lg = NULL;
    }
    mg_context_free(c);
    free(ids);
    *rows = n;
    *nv = info.n_vocab;
    return lg;
}

static int run_eval(const char *ref_path, const char *path, const char *prompts) {
    char err[512];
    mg_model *a = NULL, *b = NULL;
    FILE *f = fopen(prompts, "r");
    if (!f) {
        fprintf(stderr, "medgemini convert: --eval: cannot open %s: %s\n", prompts,
                strerror(errno));
        return 1;
    }
    mg_status st = mg_model_load(&a, ref_path, NULL, err, sizeof err);
    if (st == MG_OK) st = mg_model_load(&b, path, NULL, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini convert: --eval: %s (%s)\n", err, mg_status_str(st));
        fclose(f);
        mg_model_free(a);
        return 1;
    }
    char line[8192];
    size_t rows_all = 0, agree = 0, n_prompts = 0;
    double kl_sum = 0, kl_max = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        size_t ra = 0, rb = 0;
        uint32_t va = 0, vb = 0;
        float *la = prompt_logits(a, "lossless", line, &ra, &va);
        float *lb = la ? prompt_logits(b, "converted", line, &rb, &vb) : NULL;
        double *pa = lb ? malloc(va * sizeof *pa) : NULL, *pb = lb ? malloc(va * sizeof *pb) : NULL;
        if (lb && (ra != rb || va != vb || !pa || !pb))
            fprintf(stderr, "medgemini convert: --eval: %s\n",
                    !pa || !pb ? mg_status_str(MG_E_NOMEM)
                               : "the two models tokenize the prompt differently");
        if (!la || !lb || ra != rb || va != vb || !pa || !pb) {
            free(la);
            free(lb);
            free(pa);
            free(pb);
            rc = cli_interrupted() ? CLI_EXIT_INTERRUPTED : 1;
            break;
        }
        for (size_t r = 0; r < ra; r++) {
            softmax(la + r * va, va, pa);
            softmax(lb + r * va, va, pb);
            double kl = 0;
            for (size_t v = 0; v < va; v++)
                if (pa[v] > 0) kl += pa[v] * (log(pa[v]) - log(pb[v] > 1e-300 ? pb[v] : 1e-300));
            kl_sum += kl;
            if (kl > kl_max) kl_max = kl;
            agree += argmax(la + r * va, va) == argmax(lb + r * va, va);
            rows_all++;
        }
        free(pa);
        free(pb);
        free(la);
        free(lb);
        n_prompts++;
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "medgemini convert: --eval: cannot read %s\n", prompts);
        rc = 1;
    }
    fclose(f);
    if (!rc && rows_all)
        printf("eval: %zu prompts, %zu positions: top-1 agreement %.4f, KL(lossless || "
               "converted) mean %.4g max %.4g nats\n", n_prompts, rows_all,
               (double)agree / (double)rows_all, kl_sum / (double)rows_all, kl_max);
    else if (!rc) {
        fprintf(stderr, "medgemini convert: --eval: no prompts in %s\n", prompts);
        rc = 1;
    }
    mg_model_free(a);
    mg_model_free(b);
    return rc;
}

/* meta has room for argc entries (the --meta values). */
static int convert_main(int argc, char **argv, const char **meta) {
    const char *src = NULL, *out = NULL, *eval = NULL;
    mg_convert_params p;
    mg_convert_params_init(&p);
    p.meta = meta;
    prog pr = {0, 0, ""};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            conv_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") && v) out = v, i++;
        else if (!strcmp(a, "--type") && v) {
            if (parse_type(v, &p.dtype)) {
                fprintf(stderr, "medgemini convert: unknown --type %s\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--mmproj") && v) p.mmproj = v, i++;
        else if (!strcmp(a, "--tokenizer") && v) p.tokenizer = v, i++;
        else if (!strcmp(a, "--eval") && v) eval = v, i++;
        else if (!strcmp(a, "--prune-vocab") && v) p.prune_vocab = v, i++;
        else if (!strcmp(a, "--meta") && v) meta[p.n_meta++] = v, i++;
        else if (!strcmp(a, "--compress")) p.flags |= MG_CONVERT_COMPRESS;
        else if (!strcmp(a, "--no-checksums")) p.flags |= MG_CONVERT_NO_CHECKSUMS;
        else if (!strcmp(a, "--quiet")) pr.quiet = 1;
        else if (a[0] == '-' || src) {
            fprintf(stderr, "medgemini convert: unexpected argument %s\n", a);
            conv_usage(stderr);
            return 2;
        } else src = a;
    }
    if (!src || !out) {
        conv_usage(stderr);
        return 2;
    }
    p.progress = on_tensor;
    p.user_data = &pr;
    char err[1024];
    cli_sigint_begin(NULL); /* Ctrl-C: on_tensor stops the conversion */
    mg_status st = mg_convert(src, out, &p, err, sizeof err);
    cli_sigint_end();
    if (st != MG_OK) {
        fprintf(stderr, "medgemini convert: %s (%s)\n", err, mg_status_str(st));
        return st == MG_E_INTERRUPTED && cli_interrupted() ? CLI_EXIT_INTERRUPTED : 1;
    }
    fprintf(stderr, "wrote %s; largest relative tensor error %.3g (%s)\n", out, pr.worst,
            pr.worst_name[0] ? pr.worst_name : "-");
    if (!eval) return 0;
    char ref[4200];
    snprintf(ref, sizeof ref, "%s.eval-f32.tmp", out);
    mg_convert_params q = p;
    q.dtype = MG_DTYPE_F32;
    q.flags = MG_CONVERT_NO_CHECKSUMS;
    prog quiet = {1, 0, ""};
    q.user_data = &quiet;
    cli_sigint_begin(NULL);
    st = mg_convert(src, ref, &q, err, sizeof err);
    cli_sigint_end();
    if (st != MG_OK) {
        fprintf(stderr, "medgemini convert: --eval: lossless conversion: %s (%s)\n", err,
                mg_status_str(st));
        return st == MG_E_INTERRUPTED && cli_interrupted() ? CLI_EXIT_INTERRUPTED : 1;
    }
    int rc = run_eval(ref, out, eval);
    unlink(ref);
    return rc;
}

int cli_convert(int argc, char **argv) {
    const char **meta = calloc((size_t)argc + 1, sizeof *meta);
    if (!meta) {
        fprintf(stderr, "medgemini convert: out of memory\n");
        return 1;
    }
    int rc = convert_main(argc, argv, meta);
    free(meta);
    return rc;
}
