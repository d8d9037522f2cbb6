/* check_reference.c - the text decoder against the independent PyTorch
 * reference tests/reference/gemma3_reference.py, through the public API.
 *
 * Fixtures: tests/reference/fixtures/<config>/ (committed; CI needs no
 * PyTorch), or the directory named by env MG_REFERENCE_FIXTURES (what
 * `make check-reference` regenerates). Each holds a Hugging Face-style
 * model (config.json + float32 model.safetensors), the logits of a
 * 100-token prompt and its 64-token greedy continuation (reference.json,
 * logits.f32; see the script's header).
 *
 * The folders are converted with the library's converter (mg_convert,
 * src/convert/), the path users take for real checkpoints.
 *
 * Checks, for every fixture:
 *  - f32: mg_context_eval of the prompt with all logits; at every position
 *    p, rel(p) = max_v |ours[p][v] - ref[p][v]| / max_v |ref[p][v]| must be
 *    <= 1e-4;
 *  - f32: the 64-token greedy continuation (argmax of the prompt's last row,
 *    then one mg_context_eval per token, argmax, lowest id on ties) must
 *    equal the reference's exactly;
 *  - bf16, q8_0, q4_0 conversions of the same model: the prompt (prefill,
 *    one call) and then the f32 reference continuation fed one token at a
 *    time (decode path), 163 rows of logits, compared with our f32 model on
 *    the same tokens: top-1 agreement and KL(p_f32 || p_quant) (natural
 *    log, mean and max over rows) are printed, with loose sanity bounds;
 *  - hostile inputs to the converter fail cleanly.
 */
#include "testutil.h"

#include "medgemini.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define REL_TOL 1e-4
#define MAX_FIXTURES 32

static char g_dir[4096];
static char *g_names[MAX_FIXTURES];
static int g_n_fixtures;

/* ============================================================ converter */

/* vsnprintf: truncating a message or an over-long path is fine here. */
static void fmt(char *buf, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t cap, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, cap, f, ap);
    va_end(ap);
}

/* Converts the HF folder `dir` to an .mgm at `out` with the library's
 * converter (mg_convert), matrices in dtype. 0 on success, -1 with a
 * message. */
static int convert(const char *dir, const char *out, int32_t dtype, char *err, size_t errlen) {
    mg_convert_params p;
    mg_convert_params_init(&p);
    p.dtype = dtype;
    p.flags = MG_CONVERT_NO_CHECKSUMS;
    return mg_convert(dir, out, &p, err, errlen) == MG_OK ? 0 : -1;
}

/* ============================================================ fixtures */

typedef struct fixture {
    int32_t prompt[128], cont[64];
    int n_prompt, n_cont;
    uint32_t vocab;
    float *logits; /* n_prompt * vocab */
} fixture;

static void fixture_path(char *buf, size_t cap, int i, const char *file) {
    fmt(buf, cap, "%s/%s/%s", g_dir, g_names[i], file);
}

static int int_array(const cJSON *a, int32_t *out, int cap) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > cap) return -1;
    int n = 0;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsNumber(e)) return -1;
        out[n++] = (int32_t)e->valueint;
    }
    return n;
}

static void load_fixture(fixture *fx, int i) {
    char path[8400];
    memset(fx, 0, sizeof *fx);
    fixture_path(path, sizeof path, i, "reference.json");
    size_t n = 0;
    char *txt = (char *)tu_read_file(path, &n);
    ck_assert_msg(txt != NULL, "cannot read %s", path);
    cJSON *j = cJSON_ParseWithLength(txt, n);
    ck_assert_msg(cJSON_IsObject(j), "%s: not JSON", path);
    fx->n_prompt = int_array(cJSON_GetObjectItemCaseSensitive(j, "prompt"), fx->prompt, 128);
    fx->n_cont = int_array(cJSON_GetObjectItemCaseSensitive(j, "continuation"), fx->cont, 64);
    ck_assert_int_eq(fx->n_prompt, 100);
    ck_assert_int_eq(fx->n_cont, 64);
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "logits_shape");
    ck_assert(cJSON_IsArray(sh) && cJSON_GetArraySize(sh) == 2);
    ck_assert_int_eq(cJSON_GetArrayItem(sh, 0)->valueint, fx->n_prompt);
    fx->vocab = (uint32_t)cJSON_GetArrayItem(sh, 1)->valueint;
    cJSON_Delete(j);
    free(txt);
    fixture_path(path, sizeof path, i, "logits.f32");
    size_t nb = 0;
    fx->logits = (float *)tu_read_file(path, &nb);
    ck_assert_msg(fx->logits != NULL, "cannot read %s", path);
    ck_assert_uint_eq(nb, (size_t)fx->n_prompt * fx->vocab * sizeof(float));
    /* The file is little-endian; so is every machine we build on. */
}

static mg_model *convert_and_load(int i, int32_t dtype) {
    char src[4200], out[64], err[512];
    fmt(src, sizeof src, "%s/%s", g_dir, g_names[i]);
    fmt(out, sizeof out, "ref_%d_%s.mgm", i, mg_dtype_name(dtype));
    char path[4200];
    fmt(path, sizeof path, "%s", tu_tmp_path(out));
    ck_assert_msg(convert(src, path, dtype, err, sizeof err) == 0, "%s: %s", g_names[i], err);
    mg_model *m = NULL;
    ck_assert_msg(mg_model_load(&m, path, NULL, err, sizeof err) == MG_OK, "%s", err);
    return m;
}

static mg_context *new_ctx(mg_model *m) {
    mg_context_params cp;
    mg_context_params_init(&cp);
    cp.n_threads = 2;
    cp.n_ctx = 256;
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    return c;
}

static int32_t argmax(const float *v, uint32_t n) {
    uint32_t b = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return (int32_t)b;
}

/* Logits of the prompt (one call) followed by n_fed tokens of `feed`, one
 * call each: (n_prompt + n_fed) rows. With feed NULL, feeds its own greedy
 * choices and stores them in chosen[0 .. n_fed] (n_fed + 1 ids). */
static float *run_rows(mg_model *m, const fixture *fx, const int32_t *feed, int n_fed,
                       int32_t *chosen) {
    mg_context *c = new_ctx(m);
    size_t V = fx->vocab, rows = (size_t)fx->n_prompt + (size_t)n_fed;
    float *lg = malloc(rows * V * sizeof *lg);
    ck_assert_ptr_nonnull(lg);
    ck_assert_msg(mg_context_eval(c, fx->prompt, (size_t)fx->n_prompt, lg,
                                  (size_t)fx->n_prompt * V) == MG_OK, "%s", mg_context_errmsg(c));
    for (int s = 0; s < n_fed; s++) {
        const float *last = lg + ((size_t)fx->n_prompt + (size_t)s - 1) * V;
        int32_t t = feed ? feed[s] : argmax(last, (uint32_t)V);
        if (chosen) chosen[s] = t;
        ck_assert_msg(mg_context_eval(c, &t, 1, lg + ((size_t)fx->n_prompt + (size_t)s) * V, V)
                      == MG_OK, "%s", mg_context_errmsg(c));
    }
    if (chosen) chosen[n_fed] = argmax(lg + (rows - 1) * V, (uint32_t)V);
    mg_context_free(c);
    return lg;
}

/* ============================================================ tests */

START_TEST(test_f32_logits_and_greedy) {
    fixture fx;
    load_fixture(&fx, _i);
    mg_model *m = convert_and_load(_i, MG_DTYPE_F32);
    mg_model_info info = {sizeof info, 0, 0, 0, 0, 0, NULL, NULL, 0, 0, 0, 0};
    ck_assert_int_eq(mg_model_info_get(&info, m), MG_OK);
    ck_assert_uint_eq(info.n_vocab, fx.vocab);
    /* Under valgrind: the first 8 continuation tokens only (time). */
    int n_cont = tu_under_valgrind() ? 8 : fx.n_cont;
    int32_t got[65];
    float *lg = run_rows(m, &fx, NULL, n_cont - 1, got);
    size_t V = fx.vocab;
    double worst = 0;
    int worst_p = 0;
    for (int p = 0; p < fx.n_prompt; p++) {
        double md = 0, mr = 0;
        for (size_t v = 0; v < V; v++) {
            double r = fx.logits[(size_t)p * V + v], o = lg[(size_t)p * V + v];
            ck_assert_msg(isfinite(o), "%s: logit %d/%zu not finite", g_names[_i], p, v);
            if (fabs(o - r) > md) md = fabs(o - r);
            if (fabs(r) > mr) mr = fabs(r);
        }
        double rel = md / (mr > 0 ? mr : 1);
        if (rel > worst) worst = rel, worst_p = p;
        ck_assert_msg(rel <= REL_TOL, "%s: position %d: max|ours-ref|/max|ref| = %.3g > %.0e "
                      "(max|ref| %.4g)", g_names[_i], p, rel, REL_TOL, mr);
    }
    int match = 0;
    while (match < n_cont && got[match] == fx.cont[match]) match++;
    fprintf(stderr, "check_reference: %-20s f32: max rel err %.3g (position %d); "
            "greedy continuation %d/%d identical\n", g_names[_i], worst, worst_p, match,
            n_cont);
    ck_assert_msg(match == n_cont, "%s: greedy continuation differs at step %d: %d vs %d",
                  g_names[_i], match, match < n_cont ? got[match] : -1,
                  match < n_cont ? fx.cont[match] : -1);
    free(lg);
    mg_model_free(m);
    free(fx.logits);
}
END_TEST

/* Softmax of row v (length n) into p, in double. */
static void softmax(const float *v, size_t n, double *p) {
    double mx = v[0], s = 0;
    for (size_t i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    for (size_t i = 0; i < n; i++) s += (p[i] = exp((double)v[i] - mx));
    for (size_t i = 0; i < n; i++) p[i] /= s;
}

static const int32_t k_qtypes[3] = {MG_DTYPE_BF16, MG_DTYPE_Q8_0, MG_DTYPE_Q4_0};
/* Loose sanity bounds: minimum top-1 agreement, maximum mean KL (nats). */
/* Seen (4 fixtures): bf16 top-1 >= 0.988, KL <= 5.6e-4; q8_0 >= 0.963,
 * <= 4.9e-3; q4_0 >= 0.638, <= 0.93 with the token embedding kept in q8_0
 * by the converter's policy (random Gaussian weights and logits of
 * magnitude 20-80 make q4_0's ~8% weight error show strongly). */
static const double k_min_top1[3] = {0.95, 0.9, 0.5};
static const double k_max_kl[3] = {0.005, 0.05, 3.0};

START_TEST(test_quantized_vs_f32) {
    int fi = _i / 3, qi = _i % 3;
    int32_t dt = k_qtypes[qi];
    fixture fx;
    load_fixture(&fx, fi);
    mg_model *mf = convert_and_load(fi, MG_DTYPE_F32);
    mg_model *mq = convert_and_load(fi, dt);
    int n_fed = tu_under_valgrind() ? 7 : fx.n_cont - 1;
    float *lf = run_rows(mf, &fx, fx.cont, n_fed, NULL);
    float *lq = run_rows(mq, &fx, fx.cont, n_fed, NULL);
    size_t V = fx.vocab, rows = (size_t)fx.n_prompt + (size_t)n_fed;
    double *pf = malloc(V * sizeof *pf), *pq = malloc(V * sizeof *pq);
    ck_assert(pf && pq);
    /* [0]: prefill rows, [1]: decode rows */
    double kl_sum[2] = {0, 0}, kl_max[2] = {0, 0};
    int agree[2] = {0, 0}, cnt[2] = {0, 0};
    for (size_t r = 0; r < rows; r++) {
        int part = r >= (size_t)fx.n_prompt;
        const float *a = lf + r * V, *b = lq + r * V;
        softmax(a, V, pf);
        softmax(b, V, pq);
        double kl = 0;
        for (size_t v = 0; v < V; v++)
            if (pf[v] > 0) kl += pf[v] * (log(pf[v]) - log(pq[v] > 1e-300 ? pq[v] : 1e-300));
        ck_assert_msg(isfinite(kl) && kl > -1e-9, "%s %s row %zu: KL %g", g_names[fi],
                      mg_dtype_name(dt), r, kl);
        kl_sum[part] += kl;
        if (kl > kl_max[part]) kl_max[part] = kl;
        agree[part] += argmax(a, (uint32_t)V) == argmax(b, (uint32_t)V);
        cnt[part]++;
    }
    double top1 = (double)(agree[0] + agree[1]) / (double)rows;
    double kl_mean = (kl_sum[0] + kl_sum[1]) / (double)rows;
    fprintf(stderr, "check_reference: %-20s %-4s vs f32: top-1 %.3f (prefill %d/%d, decode "
            "%d/%d); KL mean %.3g max %.3g (prefill mean %.3g, decode mean %.3g)\n",
            g_names[fi], mg_dtype_name(dt), top1, agree[0], cnt[0], agree[1], cnt[1], kl_mean,
            kl_max[0] > kl_max[1] ? kl_max[0] : kl_max[1], kl_sum[0] / cnt[0],
            kl_sum[1] / cnt[1]);
    ck_assert_msg(top1 >= k_min_top1[qi], "%s %s: top-1 agreement %.3f < %.2f", g_names[fi],
                  mg_dtype_name(dt), top1, k_min_top1[qi]);
    ck_assert_msg(kl_mean <= k_max_kl[qi], "%s %s: mean KL %.3g > %.3g", g_names[fi],
                  mg_dtype_name(dt), kl_mean, k_max_kl[qi]);
    free(pf);
    free(pq);
    free(lf);
    free(lq);
    mg_model_free(mf);
    mg_model_free(mq);
    free(fx.logits);
}
END_TEST

/* ============================================================ hostile */

static int copy_fixture(const char *dst, int i, const unsigned char *st, size_t st_len,
                        const char *cfg_text) {
    char p[4200];
    fmt(p, sizeof p, "%s/config.json", dst);
    if (cfg_text) {
        if (tu_write_file(p, cfg_text, strlen(cfg_text))) return -1;
    } else {
        char src[8400];
        size_t n;
        fixture_path(src, sizeof src, i, "config.json");
        unsigned char *b = tu_read_file(src, &n);
        if (!b || tu_write_file(p, b, n)) { free(b); return -1; }
        free(b);
    }
    fmt(p, sizeof p, "%s/model.safetensors", dst);
    return tu_write_file(p, st, st_len);
}

static void put_u64le(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

START_TEST(test_converter_hostile) {
    char src[8400], dir[4200], out[4200], err[512];
    fixture_path(src, sizeof src, 0, "model.safetensors");
    size_t n = 0;
    unsigned char *good = tu_read_file(src, &n);
    ck_assert_ptr_nonnull(good);
    ck_assert(n > 64);
    fmt(dir, sizeof dir, "%s", tu_tmp_path("ref_hostile"));
    fmt(out, sizeof out, "%s", tu_tmp_path("ref_hostile.mgm"));
    char mk[4300];
    fmt(mk, sizeof mk, "mkdir -p '%s'", dir);
    ck_assert_int_eq(system(mk), 0);
    unsigned char *bad = malloc(n + 64);
    ck_assert_ptr_nonnull(bad);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | good[i];
    /* the unchanged copy converts */
    ck_assert_int_eq(copy_fixture(dir, 0, good, n, NULL), 0);
    ck_assert_msg(convert(dir, out, MG_DTYPE_F32, err, sizeof err) == 0, "%s", err);
    /* truncations: in the length, in the header, in the data */
    size_t cuts[4] = {0, 5, 8 + (size_t)hl / 2, n - 1};
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(copy_fixture(dir, 0, good, cuts[k], NULL), 0);
        ck_assert_int_eq(convert(dir, out, MG_DTYPE_F32, err, sizeof err), -1);
    }
    /* header length past the end, and 2^64 - 1 */
    uint64_t lens[2] = {(uint64_t)n, UINT64_MAX};
    for (int k = 0; k < 2; k++) {
        memcpy(bad, good, n);
        put_u64le(bad, lens[k]);
        ck_assert_int_eq(copy_fixture(dir, 0, bad, n, NULL), 0);
        ck_assert_int_eq(convert(dir, out, MG_DTYPE_F32, err, sizeof err), -1);
    }
    /* header bytes corrupted one at a time (a sample of positions) */
    for (size_t pos = 8; pos < 8 + hl; pos += hl / 23 + 1) {
        memcpy(bad, good, n);
        bad[pos] = (unsigned char)(bad[pos] == '9' ? '1' : bad[pos] == '"' ? '}' : '9');
        ck_assert_int_eq(copy_fixture(dir, 0, bad, n, NULL), 0);
        int rc = convert(dir, out, MG_DTYPE_F32, err, sizeof err);
        ck_assert(rc == 0 || rc == -1); /* must not crash; most fail */
    }
    /* bad configs */
    static const char *cfgs[] = {
        "", "[]", "{}", "{\"vocab_size\": 512}",
        "{\"vocab_size\":512,\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":3,\"num_key_value_heads\":2,"
        "\"head_dim\":16,\"max_position_embeddings\":256,\"sliding_window\":8}",
        "{\"vocab_size\":1e300,\"hidden_size\":64}",
    };
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        ck_assert_int_eq(copy_fixture(dir, 0, good, n, cfgs[k]), 0);
        ck_assert_int_eq(convert(dir, out, MG_DTYPE_F32, err, sizeof err), -1);
    }
    free(bad);
    free(good);
}
END_TEST

/* ============================================================ main */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void find_fixtures(void) {
    const char *env = getenv("MG_REFERENCE_FIXTURES");
    fmt(g_dir, sizeof g_dir, "%s", env && *env ? env : "tests/reference/fixtures");
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && g_n_fixtures < MAX_FIXTURES) {
        if (e->d_name[0] == '.') continue;
        char p[8400];
        fmt(p, sizeof p, "%s/%s/reference.json", g_dir, e->d_name);
        FILE *f = fopen(p, "rb");
        if (!f) continue;
        fclose(f);
        g_names[g_n_fixtures++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(g_names, (size_t)g_n_fixtures, sizeof g_names[0], cmp_str);
}

START_TEST(test_fixtures_present) {
    ck_assert_msg(g_n_fixtures >= 4, "expected >= 4 fixtures under %s, found %d", g_dir,
                  g_n_fixtures);
}
END_TEST

int main(void) {
    find_fixtures();
    Suite *s = suite_create("reference");
    TCase *tc = tcase_create("fixtures");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_fixtures_present);
    if (g_n_fixtures > 0) {
        tcase_add_loop_test(tc, test_f32_logits_and_greedy, 0, g_n_fixtures);
        /* Under valgrind the quantized comparisons run on one fixture
         * (and every test feeds 8 tokens after the prompt, not 64). */
        int nq = tu_under_valgrind() ? 1 : g_n_fixtures;
        tcase_add_loop_test(tc, test_quantized_vs_f32, 0, 3 * nq);
        tcase_add_test(tc, test_converter_hostile);
    }
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    for (int i = 0; i < g_n_fixtures; i++) free(g_names[i]);
    return rc;
}
