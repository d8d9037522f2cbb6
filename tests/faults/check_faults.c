/* check_faults.c - allocation failures. Built against the library compiled
 * with MG_FAULT_INJECTION and ASan+UBSan (make check-faults): each scenario
 * (model load, image decoding, a report, questions and a conversation, a
 * volume report, conversion, polygenic scores (each scoring path) and
 * prediction, generation through a decoding batch) runs once
 * clean, counting the allocations it asks the library for, then once for
 * every k with the k-th of them failing. Every run must end with MG_OK (the
 * failure was absorbed: an optional cache entry) or MG_E_NOMEM with a
 * message, free everything (LeakSanitizer checks at exit) and never crash;
 * after each failed run the same scenario must succeed again. */
#include "testutil.h"

#include "core/core.h"
#include "medgemini.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef MG_FAULT_INJECTION
#error "check_faults needs the library built with -DMG_FAULT_INJECTION (make check-faults)"
#endif

static const char *g_vis, *g_gen, *g_hf, *g_prefix, *g_score;
static const char *g_cohort, *g_cohort_score, *g_cohort_score1;
static char g_msg[1024];

/* The message a failed call left, for the checks below. */
static mg_status note(mg_status st, const char *msg) {
    snprintf(g_msg, sizeof g_msg, "%s", msg ? msg : "");
    return st;
}

static mg_status sc_load(void) {
    mg_model *m = NULL;
    char err[512] = "";
    mg_status st = mg_model_load(&m, g_vis, NULL, err, sizeof err);
    mg_model_free(m);
    return note(st, err);
}

static mg_status sc_images(void) {
    static const char *files[] = {"tests/data/images/rgb420.jpg", "tests/data/images/rgb_prog.jpg",
                                  "tests/data/images/rgb8_adam7.png", "tests/data/images/palette4.png",
                                  "tests/fuzz/corpus/image/explicit16.dcm",
                                  "tests/fuzz/corpus/image/rle16.dcm"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        mg_image *img = NULL;
        char err[512] = "";
        mg_status st = mg_image_load_file(&img, files[i], NULL, err, sizeof err);
        mg_image_free(img);
        if (st != MG_OK) return note(st, err);
    }
    return MG_OK;
}

/* A context over a model file, an image, and the calls `what` picks. */
static mg_status with_context(const char *path, int what) {
    mg_model *m = NULL;
    mg_context *c = NULL;
    mg_image *img = NULL;
    mg_volume *vol = NULL;
    mg_batch *b = NULL;
    char err[512] = "", *out = NULL;
    mg_status st = mg_model_load(&m, path, NULL, err, sizeof err);
    if (st == MG_OK && what == 5) { /* decoding through a batch */
        mg_batch_params bp = MG_BATCH_PARAMS_INIT;
        bp.n_threads = 1;
        st = mg_batch_new(&b, m, &bp);
        snprintf(err, sizeof err, "mg_batch_new");
    }
    if (st == MG_OK) {
        mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
        cp.n_threads = 1;
        cp.n_ctx = 256;
        cp.batch = b;
        st = mg_context_new(&c, m, &cp);
        snprintf(err, sizeof err, "mg_context_new");
    }
    mg_batch_free(b); /* the context keeps its own reference */
    if (st == MG_OK && what <= 2)
        st = mg_image_load_file(&img, "tests/data/images/rgb420.jpg", NULL, err, sizeof err);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 3;
    const mg_image *const one[1] = {img};
#define CALL(expr)                                                   \
    if (st == MG_OK) {                                               \
        st = (expr);                                                 \
        mg_string_free(out);                                         \
        out = NULL;                                                  \
        if (st != MG_OK) snprintf(err, sizeof err, "%s", mg_context_errmsg(c)); \
    }
    if (what == 1) { /* a report */
        CALL(mg_generate_report(&out, c, one, 1, &gp));
    } else if (what == 2) { /* questions (the second from the caches) and a chat */
        CALL(mg_vqa(&out, c, one, 1, "Is it normal?", &gp));
        CALL(mg_vqa(&out, c, one, 1, "Where?", &gp));
        CALL(mg_chat(&out, c, one, 1, "Describe it.", &gp));
        CALL(mg_chat(&out, c, NULL, 0, "And then?", &gp));
        CALL(mg_generate(&out, c, "The heart", &gp));
    } else if (what == 3) { /* a volume */
        float vox[16 * 16 * 3];
        for (size_t i = 0; i < sizeof vox / sizeof vox[0]; i++) vox[i] = (float)(i % 97) * 10.0f;
        if (st == MG_OK)
            st = mg_volume_from_voxels(&vol, vox, 16, 16, 3, NULL, "CT", NULL, err, sizeof err);
        mg_slice_params sp = MG_SLICE_PARAMS_INIT;
        sp.max_slices = 2;
        CALL(mg_vqa_volume(&out, c, vol, "Mass?", &sp, &gp));
    } else if (what == 4) { /* polygenic prediction */
        const char *names[2] = {"t0_p0", "t1_p1"};
        const double scores[2] = {0.5, -1.0};
        double risk = 0;
        CALL(mg_prs_predict(&out, &risk, c, scores, names, 2, "Has it?", &gp));
    } else if (what == 5) {
        CALL(mg_generate(&out, c, "The heart", &gp));
    }
#undef CALL
    mg_volume_free(vol);
    mg_image_free(img);
    mg_context_free(c);
    mg_model_free(m);
    return note(st, err);
}

static mg_status sc_report(void) { return with_context(g_vis, 1); }
static mg_status sc_vqa_chat(void) { return with_context(g_vis, 2); }
static mg_status sc_volume(void) { return with_context(g_vis, 3); }
static mg_status sc_predict(void) { return with_context(g_gen, 4); }
static mg_status sc_batch(void) { return with_context(g_vis, 5); }

static mg_status sc_convert(void) {
    char err[512] = "";
    const char *out = tu_tmp_path("faults_conv.mgm");
    mg_status st = mg_convert(g_hf, out, NULL, err, sizeof err);
    if (st == MG_OK) {
        mg_model *m = NULL;
        st = mg_model_load(&m, out, NULL, err, sizeof err);
        mg_model_free(m);
    }
    return note(st, err);
}

static mg_status sc_prs(void) {
    mg_prs *p = NULL;
    char err[512] = "";
    mg_prs_params pp = MG_PRS_PARAMS_INIT;
    pp.n_threads = 1;
    mg_status st = mg_prs_open_plink(&p, g_prefix, &pp, err, sizeof err);
    if (st == MG_OK && (st = mg_prs_add_scores(p, NULL, g_score)) == MG_OK &&
        (st = mg_prs_compute(p)) == MG_OK) {
        double v[5];
        st = mg_prs_results(v, 5, p, MG_PRS_COL_SUM, 1);
        if (st == MG_OK) st = mg_prs_write_sscore(p, tu_tmp_path("faults.sscore"));
    }
    if (st != MG_OK && p) snprintf(err, sizeof err, "%s", mg_prs_errmsg(p));
    mg_prs_free(p);
    return note(st, err);
}

/* The cohort of make_cohort through each path of the scoring step: the
 * integer sums where the CPU has a kernel for them, the quad tables and
 * dgemm (double sums), one score summed straight from the .bed bytes; two
 * threads, so that the pool's start fails too. */
static mg_status sc_prs_paths(void) {
    static const struct { uint32_t flags; int one; } runs[] = {
        {0, 0}, {MG_PRS_DOUBLE_SUMS, 0}, {MG_PRS_DOUBLE_SUMS, 1},
    };
    mg_status st = MG_OK;
    for (size_t i = 0; st == MG_OK && i < sizeof runs / sizeof runs[0]; i++) {
        mg_prs *p = NULL;
        char err[512] = "";
        mg_prs_params pp = MG_PRS_PARAMS_INIT;
        pp.n_threads = 2;
        pp.flags = runs[i].flags;
        st = mg_prs_open_plink(&p, g_cohort, &pp, err, sizeof err);
        if (st == MG_OK && (st = mg_prs_add_scores(p, NULL, runs[i].one ? g_cohort_score1
                                                                        : g_cohort_score)) == MG_OK)
            st = mg_prs_compute(p);
        if (st != MG_OK && p) snprintf(err, sizeof err, "%s", mg_prs_errmsg(p));
        mg_prs_free(p);
        note(st, err);
    }
    return st;
}

/* ---- fixtures ---------------------------------------------------------------- */

static void write_text(const char *path, const char *s) {
    ck_assert_int_eq(tu_write_file(path, s, strlen(s)), 0);
}

/* A Gemma3ForCausalLM folder: config.json and model.safetensors (zeros,
 * 64-token vocabulary, one layer of width 32), no tokenizer. */
static const char *make_hf(void) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path("faults_hf"));
    mkdir(dir, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{\"architectures\": [\"Gemma3ForCausalLM\"], \"model_type\": \"gemma3_text\", "
                  "\"hidden_size\": 32, \"intermediate_size\": 32, \"num_hidden_layers\": 1, "
                  "\"num_attention_heads\": 1, \"num_key_value_heads\": 1, \"head_dim\": 32, "
                  "\"query_pre_attn_scalar\": 32, \"max_position_embeddings\": 64, "
                  "\"sliding_window\": 16, \"vocab_size\": 64}");
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
        uint64_t rows = i == 0 ? 64 : 32, bytes = (vec ? 32 : rows * 32) * 4;
        if (vec)
            h += (size_t)snprintf(hdr + h, sizeof hdr - h,
                                  "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[%llu,"
                                  "%llu]}", i ? "," : "", names[i], (unsigned long long)off,
                                  (unsigned long long)(off + bytes));
        else
            h += (size_t)snprintf(hdr + h, sizeof hdr - h,
                                  "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu,32],\"data_offsets\":"
                                  "[%llu,%llu]}", i ? "," : "", names[i], (unsigned long long)rows,
                                  (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
    size_t total = 8 + h + (size_t)off;
    unsigned char *file = calloc(1, total);
    ck_assert_ptr_nonnull(file);
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(file + 8, hdr, h);
    for (size_t i = 8 + h; i < total; i += 4) { /* small nonzero floats */
        float v = 0.01f * (float)((i / 4) % 13) - 0.06f;
        memcpy(file + i, &v, 4);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ck_assert_int_eq(tu_write_file(p, file, total), 0);
    free(file);
    return dir;
}

/* 5 samples, 4 variants (one on X), a two-score wide scoring file. */
static void make_plink(void) {
    static char pre[600], score[700];
    snprintf(pre, sizeof pre, "%s", tu_tmp_path("faults_fx"));
    char p[700];
    snprintf(p, sizeof p, "%s.fam", pre);
    write_text(p, "f1 i1 0 0 1 -9\nf2 i2 0 0 2 -9\nf3 i3 0 0 1 -9\nf4 i4 0 0 2 -9\nf5 i5 0 0 0 -9\n");
    snprintf(p, sizeof p, "%s.bim", pre);
    write_text(p, "1\trs1\t0\t100\tA\tG\n1\trs2\t0\t200\tC\tT\n1\trs3\t0\t300\tG\tA\n"
                  "23\trs4\t0\t400\tT\tC\n");
    static const unsigned char bed[] = {0x6c, 0x1b, 0x01, 0x1b, 0x02, 0xe4, 0x01,
                                        0x6c, 0x03, 0x39, 0x00};
    snprintf(p, sizeof p, "%s.bed", pre);
    ck_assert_int_eq(tu_write_file(p, bed, sizeof bed), 0);
    snprintf(score, sizeof score, "%s.score", pre);
    write_text(score, "ID\tA1\ts1\ts2\nrs1\tA\t0.5\t-0.25\nrs2\tT\t1.0\t0\nrs3\tG\t-0.75\t2\n"
                      "rs4\tT\t0.125\t1e-3\n");
    g_prefix = pre;
    g_score = score;
}

/* 300 samples (enough for the quad path), 8 variants on 1, 2, X and Y with
 * every genotype code (missing calls included), a three-score and a
 * one-score wide file. */
static void make_cohort(void) {
    static char pre[600], score[700], score1[700];
    enum { N = 300, V = 8, NB = (N + 3) / 4 };
    snprintf(pre, sizeof pre, "%s", tu_tmp_path("faults_cohort"));
    char p[700], line[128];
    snprintf(p, sizeof p, "%s.fam", pre);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < N; i++) fprintf(f, "f%d i%d 0 0 %d -9\n", i, i, i % 3);
    fclose(f);
    static const char *const chr[V] = {"1", "1", "1", "2", "2", "23", "23", "24"};
    snprintf(p, sizeof p, "%s.bim", pre);
    f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    for (int v = 0; v < V; v++) fprintf(f, "%s\trs%d\t0\t%d\tA\tG\n", chr[v], v, 100 * (v + 1));
    fclose(f);
    unsigned char bed[3 + V * NB] = {0x6c, 0x1b, 0x01};
    uint32_t x = 12345;
    for (size_t i = 3; i < sizeof bed; i++) {
        x = x * 1103515245u + 12345u;
        bed[i] = (unsigned char)(x >> 16);
    }
    snprintf(p, sizeof p, "%s.bed", pre);
    ck_assert_int_eq(tu_write_file(p, bed, sizeof bed), 0);
    snprintf(score, sizeof score, "%s.score", pre);
    snprintf(score1, sizeof score1, "%s.score1", pre);
    FILE *f3 = fopen(score, "w"), *f1 = fopen(score1, "w");
    ck_assert(f3 && f1);
    fprintf(f3, "ID\tA1\ts1\ts2\ts3\n");
    fprintf(f1, "ID\tA1\ts1\n");
    for (int v = 0; v < V; v++) {
        snprintf(line, sizeof line, "rs%d\t%c", v, v % 2 ? 'A' : 'G');
        fprintf(f3, "%s\t%g\t%g\t%g\n", line, 0.25 * (v + 1), -0.5 * v, v % 3 ? 1e-3 : 0.0);
        fprintf(f1, "%s\t%g\n", line, 0.25 * (v + 1));
    }
    fclose(f3);
    fclose(f1);
    g_cohort = pre;
    g_cohort_score = score;
    g_cohort_score1 = score1;
}

/* ---- the runs ------------------------------------------------------------------ */

typedef struct scenario {
    const char *name;
    mg_status (*run)(void);
} scenario;

static void fail_each(const scenario *s) {
    mg__fault_set(0);
    mg_status st = s->run();
    ck_assert_msg(st == MG_OK, "%s: the clean run fails: %d %s", s->name, st, g_msg);
    const long n = mg__fault_count();
    ck_assert_int_gt(n, 0);
    long nomem = 0, absorbed = 0;
    for (long k = 1; k <= n; k++) {
        mg__fault_set(k);
        g_msg[0] = '\0';
        st = s->run();
        int hit = mg__fault_hit();
        mg__fault_set(0);
        ck_assert_msg(st == MG_OK || st == MG_E_NOMEM,
                      "%s: allocation %ld of %ld failed: status %d (%s), want MG_E_NOMEM",
                      s->name, k, n, st, g_msg);
        if (st == MG_E_NOMEM) {
            ck_assert_msg(hit, "%s: MG_E_NOMEM without a failed allocation (k %ld)", s->name, k);
            ck_assert_msg(g_msg[0], "%s: allocation %ld: MG_E_NOMEM without a message", s->name, k);
            nomem++;
        } else {
            absorbed++;
        }
        /* and the same work succeeds afterwards */
        if (k % 16 == 0 || k == n) {
            st = s->run();
            ck_assert_msg(st == MG_OK, "%s: after failing allocation %ld: %d %s", s->name, k, st,
                          g_msg);
        }
    }
    fprintf(stderr, "check_faults: %-9s %5ld allocations, each failed in turn: %ld calls returned "
                    "MG_E_NOMEM, %ld absorbed the failure\n", s->name, n, nomem, absorbed);
}

static const scenario k_scenarios[] = {
    {"load", sc_load},       {"images", sc_images},   {"report", sc_report},
    {"vqa+chat", sc_vqa_chat}, {"volume", sc_volume}, {"convert", sc_convert},
    {"prs", sc_prs},         {"predict", sc_predict}, {"batch", sc_batch},
    {"prs paths", sc_prs_paths},
};

START_TEST(test_faults) {
    if (!g_vis) {
        g_vis = tu_make_model("faults_vis.mgm", "--shape tiny --seed 3");
        g_gen = tu_make_model("faults_gen.mgm", "--shape tiny --genome 2,2 --seed 4");
        g_hf = make_hf();
        make_plink();
        make_cohort();
    }
    fail_each(&k_scenarios[_i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 1200);
    tcase_add_loop_test(tc, test_faults, 0, (int)(sizeof k_scenarios / sizeof k_scenarios[0]));
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
