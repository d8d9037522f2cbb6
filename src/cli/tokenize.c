/* tokenize.c - `medgemini tokenize`: text lines on stdin -> token ids, or
 * (--decode) lines of ids -> text. */
#include "medgemini.h"

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
        "  --pieces        print the pieces instead of the ids\n");
}

static int decode_line(const mg_tokenizer *tok, char *line, uint32_t flags,
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
            fprintf(stderr, "medgemini tokenize: bad id near \"%.20s\"\n", p);
            return 1;
        }
        if (n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            int32_t *q = realloc(*ids, nc * sizeof *q);
            if (!q) return 1;
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
        if (!q) return 1;
        *buf = q;
        *bcap = need + 1;
        st = mg_detokenize(*buf, *bcap, &need, tok, *ids, n, flags);
    }
    if (st != MG_OK) {
        fprintf(stderr, "medgemini tokenize: %s\n", mg_status_str(st));
        return 1;
    }
    fwrite(*buf, 1, need, stdout);
    fputc('\n', stdout);
    return 0;
}

int cli_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *json_path = NULL;
    uint32_t flags = 0, dflags = 0;
    int decode = 0, pieces = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model_path = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) json_path = argv[++i];
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
        st = mg_model_load(&model, model_path, NULL, err, sizeof err);
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
    int rc = 0;
    char *line = NULL, *buf = NULL;
    size_t lcap = 0, cap = 0, bcap = 0;
    int32_t *ids = NULL;
    ssize_t got;
    while (rc == 0 && (got = getline(&line, &lcap, stdin)) >= 0) {
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        if (decode) {
            rc = decode_line(tok, line, dflags, &ids, &cap, &buf, &bcap);
            continue;
        }
        size_t n = 0;
        st = mg_tokenize(ids, cap, &n, tok, line, len, flags);
        if (st == MG_E_BUFFER_TOO_SMALL) {
            int32_t *q = realloc(ids, (n + 1) * sizeof *q);
            if (!q) {
                rc = 1;
                break;
            }
            ids = q;
            cap = n + 1;
            st = mg_tokenize(ids, cap, &n, tok, line, len, flags);
        }
        if (st != MG_OK) {
            fprintf(stderr, "medgemini tokenize: %s\n", mg_status_str(st));
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
    free(line);
    free(ids);
    free(buf);
    mg_tokenizer_free(owned);
    mg_model_free(model);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
