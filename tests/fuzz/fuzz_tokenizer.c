/* fuzz_tokenizer.c - the tokenizer: a tokenizer.json and a text (the input
 * split at the line "%%"): the JSON is loaded with mg_tokenizer_load_json
 * and, if it loads, tokenizes the text and decodes the ids back; the text
 * is also tokenized by the demo model's real Gemma 3 vocabulary (loaded
 * once, when examples/models is in reach) with and without special-token
 * parsing. */
#include "fuzz.h"

static const mg_tokenizer *demo_tokenizer(void) {
    static int tried;
    static mg_model *m;
    if (!tried) {
        tried = 1;
        const char *dir = getenv("MG_FUZZ_MODEL");
        char err[256];
        if (mg_model_load(&m, dir && *dir ? dir : "examples/models/medgemini-demo-q8_0.mgm", NULL,
                          err, sizeof err) != MG_OK)
            m = NULL;
    }
    return m ? mg_model_tokenizer(m) : NULL;
}

static void run(const mg_tokenizer *tok, const uint8_t *text, size_t len, uint32_t flags) {
    size_t cap = len * 2 + 8, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return;
    if (mg_tokenize(ids, cap, &n, tok, (const char *)text, len, flags) == MG_OK) {
        char buf[4096];
        size_t nb = 0;
        mg_detokenize(buf, sizeof buf, &nb, tok, ids, n, 0);
        mg_detokenize(buf, sizeof buf, &nb, tok, ids, n, MG_DETOKENIZE_SKIP_SPECIAL);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[2];
    size_t len[2];
    fz_split(data, size, 2, part, len);
    const char *p = fz_write(".json", part[0], len[0]);
    mg_tokenizer *tok = NULL;
    char err[256];
    if (p && mg_tokenizer_load_json(&tok, p, err, sizeof err) == MG_OK) {
        run(tok, part[1], len[1], MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL);
        mg_tokenizer_free(tok);
    }
    const mg_tokenizer *demo = demo_tokenizer();
    if (demo) {
        run(demo, data, size, 0);
        run(demo, data, size, MG_TOKENIZE_PARSE_SPECIAL);
    }
    return 0;
}
