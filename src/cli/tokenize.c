/* tokenize.c - `medgemini tokenize`: text lines on stdin -> token ids, or
 * (--decode) lines of ids -> text; --prune-vocab and --save-tokenizer make a
 * pruned or re-written tokenizer.json (the library's internal
 * mg__tokenizer_prune and mg__tokenizer_write_json, linked statically). */
#include "medgemini.h"
#include "llm/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void tok_usage(FILE *f) {
    fprintf(f,
        "usage: medgemini tokenize (-m MODEL.mgm | --tokenizer tokenizer.json) [options]\n"
        "  reads UTF-8 lines on stdin, prints one line of space-separated token ids\n"
        "  per input line (the newline itself is not encoded)\n"
        "  --bos           prepend the BOS token\n"
        "  --special       match the text of special tokens (<start_of_turn>) as them\n"
        "  --decode        read lines of ids instead and print their text\n"
        "  --skip-special  with --decode: leave out special tokens\n"
        "  --pieces        print the pieces instead of the ids\n"
        "  --prune-vocab F keep only the tokens that the text file F needs (F then\n"
        "                  tokenizes exactly as before; docs/CONVERT.md); without\n"
        "                  --save-tokenizer, stdin is tokenized with the pruned ids\n"
        "  --save-tokenizer OUT.json\n"
        "                  write the (pruned) tokenizer as a tokenizer.json and exit\n"
        "                  (stdin is not read); a summary goes to stderr\n");
}

static int decode_line(const mg_tokenizer *tok, char *line, size_t lineno, uint32_t flags,
                       int32_t **ids, size_t *cap, char **buf, size_t *bcap) {
    size_t n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "medgemini tokenize: line %zu: bad id near \"%.20s\"\n", lineno, p);
            return 1;
        }
        if (n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            int32_t *q = realloc(*ids, nc * sizeof *q);
            if (!q) {
                fprintf(stderr, "medgemini tokenize: %s\n", mg_status_str(MG_E_NOMEM));
                return 1;
            }
            *ids = q;
            *cap = nc;
        }
        (*ids)[n++] = (int32_t)v;
        p = end;
    }
    size_t need = 0;
    mg_status st = mg_detokenize(*buf, *bcap, &need, tok, *ids, n, flags);
    if (st == MG_E_BUFFER_TOO_SMALL) {
        char *q = realloc(*buf, need + 1);
        if (!q) {
            fprintf(stderr, "medgemini tokenize: %s\n", mg_status_str(MG_E_NOMEM));
            return 1;
        }
        *buf = q;
        *bcap = need + 1;
        st = mg_detokenize(*buf, *bcap, &need, tok, *ids, n, flags);
    }
    if (st != MG_OK) {
        fprintf(stderr, "medgemini tokenize: line %zu: %s%s\n", lineno, mg_status_str(st),
                st == MG_E_INVALID_ARG ? " (an id out of the vocabulary?)" : "");
        return 1;
    }
    fwrite(*buf, 1, need, stdout);
    fputc('\n', stdout);
    return 0;
}

/* The whole file (any bytes); NULL with a message on failure. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "medgemini tokenize: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *q = realloc(buf, cap * 2);
        if (!q) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = q;
        cap *= 2;
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "medgemini tokenize: cannot read %s\n", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* --prune-vocab and --save-tokenizer; *tok may be replaced by the pruned
 * tokenizer (owned through *pruned). Returns 0, or the exit code. */
static int prune_and_save(const mg_tokenizer **tok, mg_tokenizer **pruned,
                          const char *corpus_path, const char *save_path) {
    char err[512] = "";
    uint32_t n0 = mg_tokenizer_vocab_size(*tok), m0 = mg__tok_n_merges(*tok);
    if (corpus_path) {
        size_t len = 0;
        char *corpus = read_all(corpus_path, &len);
        if (!corpus) return 1;
        mg_status st = mg__tokenizer_prune(pruned, NULL, NULL, *tok, corpus, len, err, sizeof err);
        free(corpus);
        if (st != MG_OK) {
            fprintf(stderr, "medgemini tokenize: %s: %s\n", mg_status_str(st), err);
            return 1;
        }
        *tok = *pruned;
    }
    if (save_path) {
        mg_status st = mg__tokenizer_write_json(*tok, save_path, err, sizeof err);
        if (st != MG_OK) {
            fprintf(stderr, "medgemini tokenize: %s: %s\n", mg_status_str(st), err);
            return 1;
        }
    }
    if (corpus_path)
        fprintf(stderr, "medgemini tokenize: kept %u of %u tokens and %u of %u merges%s%s\n",
                mg_tokenizer_vocab_size(*tok), n0, mg__tok_n_merges(*tok), m0,
                save_path ? "; wrote " : "", save_path ? save_path : "");
    else if (save_path)
        fprintf(stderr, "medgemini tokenize: wrote %s (%u tokens, %u merges)\n", save_path, n0, m0);
    return 0;
}

int cli_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *json_path = NULL, *corpus_path = NULL, *save_path = NULL;
    uint32_t flags = 0, dflags = 0;
    int decode = 0, pieces = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model_path = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(a, "--prune-vocab") && i + 1 < argc) corpus_path = argv[++i];
        else if (!strcmp(a, "--save-tokenizer") && i + 1 < argc) save_path = argv[++i];
        else if (!strcmp(a, "--bos")) flags |= MG_TOKENIZE_ADD_BOS;
        else if (!strcmp(a, "--special")) flags |= MG_TOKENIZE_PARSE_SPECIAL;
        else if (!strcmp(a, "--decode")) decode = 1;
        else if (!strcmp(a, "--skip-special")) dflags |= MG_DETOKENIZE_SKIP_SPECIAL;
        else if (!strcmp(a, "--pieces")) pieces = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tok_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "medgemini tokenize: unknown or incomplete option '%s'\n", a);
            tok_usage(stderr);
            return 2;
        }
    }
    if (!model_path == !json_path) {
        tok_usage(stderr);
        return 2;
    }
    char err[512] = "";
    mg_model *model = NULL;
    mg_tokenizer *owned = NULL;
    const mg_tokenizer *tok = NULL;
    mg_status st;
    if (model_path) {
        mg_model_params mp = MG_MODEL_PARAMS_INIT;
        mp.flags = MG_LOAD_MMAP; /* only the tokenizer is read */
        st = mg_model_load(&model, model_path, &mp, err, sizeof err);
        if (st == MG_OK && !(tok = mg_model_tokenizer(model))) {
            fprintf(stderr, "medgemini tokenize: %s has no tokenizer\n", model_path);
            mg_model_free(model);
            return 1;
        }
    } else {
        st = mg_tokenizer_load_json(&owned, json_path, err, sizeof err);
        tok = owned;
    }
    if (st != MG_OK) {
        fprintf(stderr, "medgemini tokenize: %s: %s\n", mg_status_str(st), err);
        return 1;
    }
    mg_tokenizer *pruned = NULL;
    int rc = 0;
    if (corpus_path || save_path) {
        rc = prune_and_save(&tok, &pruned, corpus_path, save_path);
        if (rc || save_path) {
            mg_tokenizer_free(pruned);
            mg_tokenizer_free(owned);
            mg_model_free(model);
            return rc;
        }
    }
    char *line = NULL, *buf = NULL;
    size_t lcap = 0, cap = 0, bcap = 0;
    int32_t *ids = NULL;
    ssize_t got;
    size_t lineno = 0;
    errno = 0;
    /* stops at the first bad line, or when the output fails */
    while (rc == 0 && !ferror(stdout) && (got = getline(&line, &lcap, stdin)) >= 0) {
        size_t len = (size_t)got;
        lineno++;
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        if (decode) {
            rc = decode_line(tok, line, lineno, dflags, &ids, &cap, &buf, &bcap);
            continue;
        }
        size_t n = 0;
        st = mg_tokenize(ids, cap, &n, tok, line, len, flags);
        if (st == MG_E_BUFFER_TOO_SMALL) {
            int32_t *q = realloc(ids, (n + 1) * sizeof *q);
            if (!q) {
                fprintf(stderr, "medgemini tokenize: %s\n", mg_status_str(MG_E_NOMEM));
                rc = 1;
                break;
            }
            ids = q;
            cap = n + 1;
            st = mg_tokenize(ids, cap, &n, tok, line, len, flags);
        }
        if (st != MG_OK) {
            fprintf(stderr, "medgemini tokenize: line %zu: %s\n", lineno, mg_status_str(st));
            rc = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (i) fputc(' ', stdout);
            if (pieces) cli_print_quoted(stdout, mg_tokenizer_piece(tok, ids[i]), 256);
            else printf("%d", (int)ids[i]);
        }
        fputc('\n', stdout);
    }
    if (rc == 0 && ferror(stdin)) {
        fprintf(stderr, "medgemini tokenize: cannot read standard input: %s\n",
                strerror(errno ? errno : EIO));
        rc = 1;
    }
    free(line);
    free(ids);
    free(buf);
    mg_tokenizer_free(pruned);
    mg_tokenizer_free(owned);
    mg_model_free(model);
    if (cli_stdout_failed("tokenize")) rc = 1;
    return rc;
}
