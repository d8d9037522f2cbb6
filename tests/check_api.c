/* check_api.c - public API contract: versions, status codes, options structs,
 * handle misuse, model/context lifetime (including the zombie model), threads
 * sharing one model, interrupt, and the not-yet-implemented task entry
 * points. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "medgemini.h"
#include "testutil.h"

/* Writes a small model with the public writer. */
/* One polygenic score, for the entry points that need some. */
static const double k_sc[1] = {0.5};
static const char *const k_nm[1] = {"PGS000001"};

static const char *make_model(const char *name, int64_t ctx_len) {
    const char *path = tu_tmp_path(name);
    char err[256];
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.name", "api-test"), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.architecture", "gemma3"), MG_OK);
    ck_assert_int_eq(mg_writer_set_int(w, "text.context_length", ctx_len), MG_OK);
    ck_assert_int_eq(mg_writer_set_float(w, "text.rms_norm_eps", 1e-6), MG_OK);
    const int64_t ia[3] = {7, -8, 9};
    ck_assert_int_eq(mg_writer_set_int_array(w, "test.ints", ia, 3), MG_OK);
    const char *sa[2] = {"alpha", "\xce\xb2" "eta"};
    ck_assert_int_eq(mg_writer_set_string_array(w, "test.strings", sa, 2), MG_OK);
    uint64_t d1[1] = {64}, d2[2] = {64, 3};
    ck_assert_int_eq(mg_writer_add_tensor(w, "text.output_norm", MG_DTYPE_F32, 1, d1, 0), MG_OK);
    ck_assert_int_eq(mg_writer_add_tensor(w, "text.token_embd", MG_DTYPE_Q8_0, 2, d2, 0), MG_OK);
    float v[192];
    for (int i = 0; i < 192; i++) v[i] = (float)i / 64.0f - 1.0f;
    ck_assert_int_eq(mg_writer_write_tensor_f32(w, "text.output_norm", v, 64), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor_f32(w, "text.token_embd", v, 192), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    return path;
}

static mg_model *load(const char *path) {
    mg_model *m = NULL;
    char err[256];
    mg_status st = mg_model_load(&m, path, NULL, err, sizeof err);
    ck_assert_msg(st == MG_OK, "load: %s", err);
    return m;
}

START_TEST(test_version) {
    ck_assert_uint_eq(mg_version_number(), MG_VERSION_NUMBER);
    ck_assert_str_eq(mg_version_string(), MG_VERSION_STRING);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", MG_VERSION_MAJOR, MG_VERSION_MINOR, MG_VERSION_PATCH);
    ck_assert_str_eq(mg_version_string(), buf);
    const char *bi = mg_build_info();
    ck_assert_ptr_nonnull(strstr(bi, "version=" MG_VERSION_STRING));
    ck_assert_ptr_nonnull(strstr(bi, "simd="));
    ck_assert_ptr_nonnull(strstr(bi, "blas=OpenBLAS"));
    ck_assert_ptr_null(strchr(bi, '\n'));
    int32_t lvl = mg_simd_level();
    ck_assert(lvl >= MG_SIMD_SCALAR && lvl <= MG_SIMD_AVX512);
    const char *names[] = {"simd=scalar", "simd=avx2", "simd=avx512"};
    ck_assert_ptr_nonnull(strstr(bi, names[lvl]));
}
END_TEST

START_TEST(test_status_codes) {
    /* Values are pinned forever: a change here is an ABI break. */
    ck_assert_int_eq(MG_OK, 0);
    ck_assert_int_eq(MG_E_INVALID_ARG, 1);
    ck_assert_int_eq(MG_E_MISUSE, 2);
    ck_assert_int_eq(MG_E_NOMEM, 3);
    ck_assert_int_eq(MG_E_IO, 4);
    ck_assert_int_eq(MG_E_MODEL_FORMAT, 5);
    ck_assert_int_eq(MG_E_CHECKSUM, 6);
    ck_assert_int_eq(MG_E_UNSUPPORTED, 7);
    ck_assert_int_eq(MG_E_IMAGE_FORMAT, 8);
    ck_assert_int_eq(MG_E_LIMIT, 9);
    ck_assert_int_eq(MG_E_INTERRUPTED, 10);
    ck_assert_int_eq(MG_E_CONTEXT_FULL, 11);
    ck_assert_int_eq(MG_E_BUFFER_TOO_SMALL, 12);
    ck_assert_int_eq(MG_E_NOT_FOUND, 13);
    ck_assert_int_eq(MG_E_TYPE, 14);
    ck_assert_int_eq(MG_E_INTERNAL, 15);
    ck_assert_int_eq(MG_E_DATA_FORMAT, 16);
    const char *unknown = mg_status_str(-1);
    ck_assert_str_eq(unknown, "unknown status");
    ck_assert_str_eq(mg_status_str(17), unknown);
    ck_assert_str_eq(mg_status_str(INT32_MAX), unknown);
    for (int32_t s = 0; s <= 16; s++) {
        const char *t = mg_status_str(s);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_ne(t, unknown);
        for (int32_t u = 0; u < s; u++) ck_assert_str_ne(t, mg_status_str(u));
    }
    ck_assert_str_eq(mg_dtype_name(MG_DTYPE_Q4_0), "q4_0");
    ck_assert_ptr_null(mg_dtype_name(5));
    ck_assert_ptr_null(mg_dtype_name(-1));
}
END_TEST

START_TEST(test_params_init) {
    mg_model_params mp;
    memset(&mp, 0xab, sizeof mp);
    mg_model_params_init(&mp);
    ck_assert_uint_eq(mp.struct_size, sizeof mp);
    ck_assert_uint_eq(mp.flags, 0);
    mg_context_params cp;
    memset(&cp, 0xab, sizeof cp);
    mg_context_params_init(&cp);
    ck_assert_uint_eq(cp.struct_size, sizeof cp);
    ck_assert_uint_eq(cp.n_threads, 0);
    mg_gen_params gp;
    memset(&gp, 0xab, sizeof gp);
    mg_gen_params_init(&gp);
    mg_gen_params gi = MG_GEN_PARAMS_INIT;
    ck_assert_int_eq(memcmp(&gp, &gi, sizeof gp), 0);
    ck_assert_uint_eq(gp.max_tokens, 256);
    ck_assert(gp.top_p == 1.0f);
    mg_image_params ip;
    mg_image_params_init(&ip);
    mg_image_params ii = MG_IMAGE_PARAMS_INIT;
    ck_assert_int_eq(memcmp(&ip, &ii, sizeof ip), 0);
    /* NULL is ignored, not a crash. */
    mg_model_params_init(NULL);
    mg_context_params_init(NULL);
    mg_gen_params_init(NULL);
    mg_image_params_init(NULL);
}
END_TEST

START_TEST(test_load_errors) {
    mg_model *m = (mg_model *)0x1;
    char err[256];
    ck_assert_int_eq(mg_model_load(NULL, "x", NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_model_load(&m, NULL, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(mg_model_load(&m, "/nonexistent/model.mgm", NULL, err, sizeof err), MG_E_IO);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/model.mgm"));
    /* NULL error buffer and a tiny one are both fine. */
    ck_assert_int_eq(mg_model_load(&m, "/nonexistent/model.mgm", NULL, NULL, 0), MG_E_IO);
    char tiny[4];
    ck_assert_int_eq(mg_model_load(&m, "/nonexistent/model.mgm", NULL, tiny, sizeof tiny), MG_E_IO);
    ck_assert_uint_eq(strlen(tiny), 3);
    /* Bad struct sizes and flags. */
    mg_model_params p = MG_MODEL_PARAMS_INIT;
    p.struct_size = 0;
    ck_assert_int_eq(mg_model_load(&m, "x", &p, err, sizeof err), MG_E_INVALID_ARG);
    p.struct_size = 1u << 30;
    ck_assert_int_eq(mg_model_load(&m, "x", &p, err, sizeof err), MG_E_INVALID_ARG);
    mg_model_params_init(&p);
    p.flags = 0x80;
    ck_assert_int_eq(mg_model_load(&m, "x", &p, err, sizeof err), MG_E_INVALID_ARG);
    /* A directory and an empty file. */
    ck_assert_int_ne(mg_model_load(&m, ".", NULL, err, sizeof err), MG_OK);
    const char *empty = tu_tmp_path("empty.mgm");
    ck_assert_int_eq(tu_write_file(empty, "", 0), 0);
    ck_assert_int_eq(mg_model_load(&m, empty, NULL, err, sizeof err), MG_E_MODEL_FORMAT);
    ck_assert_ptr_null(m);
    remove(empty);
}
END_TEST

START_TEST(test_model_queries) {
    const char *path = make_model("q.mgm", 4096);
    mg_model *m = load(path);
    mg_model_info mi = {.struct_size = sizeof mi};
    ck_assert_int_eq(mg_model_info_get(&mi, m), MG_OK);
    ck_assert_str_eq(mi.name, "api-test");
    ck_assert_str_eq(mi.architecture, "gemma3");
    ck_assert_uint_eq(mi.n_tensors, 2);
    ck_assert_uint_eq(mi.n_params, 64 + 192);
    ck_assert_uint_eq(mi.n_bytes, 64 * 4 + 6 * 34);
    ck_assert_uint_eq(mi.has_text, 0);   /* text tensors, but no decoder config */
    ck_assert_uint_eq(mi.has_vision, 0);
    ck_assert_uint_eq(mi.n_vocab, 0);
    ck_assert_uint_eq(mi.format_version, 1);
    /* A caller compiled against an older, shorter struct gets only its part. */
    struct { mg_model_info i; uint64_t guard; } shortinfo;
    memset(&shortinfo, 0x5a, sizeof shortinfo);
    shortinfo.i.struct_size = 8;
    ck_assert_int_eq(mg_model_info_get(&shortinfo.i, m), MG_OK);
    ck_assert_uint_eq(shortinfo.i.format_version, 1);
    ck_assert_uint_eq(shortinfo.i.n_tensors, 0x5a5a5a5a5a5a5a5aull);
    ck_assert_uint_eq(shortinfo.guard, 0x5a5a5a5a5a5a5a5aull);

    ck_assert_uint_eq(mg_model_meta_count(m), 6);
    const char *key; int32_t type, et; uint64_t n;
    ck_assert_int_eq(mg_model_meta_entry(&key, &type, &et, &n, m, 4), MG_OK);
    ck_assert_str_eq(key, "test.ints");
    ck_assert_int_eq(type, MG_META_ARRAY);
    ck_assert_int_eq(et, MG_META_INT);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(mg_model_meta_entry(NULL, NULL, NULL, NULL, m, 6), MG_E_NOT_FOUND);

    int64_t iv; double dv; const char *sv;
    ck_assert_int_eq(mg_model_meta_int(&iv, m, "text.context_length"), MG_OK);
    ck_assert_int_eq(iv, 4096);
    ck_assert_int_eq(mg_model_meta_float(&dv, m, "text.context_length"), MG_OK);
    ck_assert(dv == 4096.0);
    ck_assert_int_eq(mg_model_meta_float(&dv, m, "text.rms_norm_eps"), MG_OK);
    ck_assert(dv == 1e-6);
    ck_assert_int_eq(mg_model_meta_int(&iv, m, "text.rms_norm_eps"), MG_E_TYPE);
    ck_assert_int_eq(mg_model_meta_string(&sv, m, "general.name"), MG_OK);
    ck_assert_str_eq(sv, "api-test");
    ck_assert_int_eq(mg_model_meta_string(&sv, m, "no.such.key"), MG_E_NOT_FOUND);
    ck_assert_int_eq(mg_model_meta_string(NULL, m, "general.name"), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_model_meta_string(&sv, m, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_model_meta_array_int(&iv, m, "test.ints", 1), MG_OK);
    ck_assert_int_eq(iv, -8);
    ck_assert_int_eq(mg_model_meta_array_float(&dv, m, "test.ints", 2), MG_OK);
    ck_assert(dv == 9.0);
    ck_assert_int_eq(mg_model_meta_array_int(&iv, m, "test.ints", 3), MG_E_NOT_FOUND);
    ck_assert_int_eq(mg_model_meta_array_string(&sv, m, "test.strings", 1), MG_OK);
    ck_assert_str_eq(sv, "\xce\xb2" "eta");
    ck_assert_int_eq(mg_model_meta_array_int(&iv, m, "test.strings", 0), MG_E_TYPE);
    ck_assert_int_eq(mg_model_meta_array_int(&iv, m, "general.name", 0), MG_E_TYPE);

    ck_assert_uint_eq(mg_model_tensor_count(m), 2);
    mg_tensor_info t = {.struct_size = sizeof t};
    ck_assert_int_eq(mg_model_tensor_find(&t, m, "text.token_embd"), MG_OK);
    ck_assert_int_eq(t.dtype, MG_DTYPE_Q8_0);
    ck_assert_uint_eq(t.n_dims, 2);
    ck_assert_uint_eq(t.dims[0], 64);
    ck_assert_uint_eq(t.dims[1], 3);
    ck_assert_uint_eq(t.dims[2], 1);
    ck_assert_uint_eq(t.n_bytes, 6 * 34);
    ck_assert_ptr_nonnull(t.data);
    ck_assert_int_eq(mg_model_tensor_find(&t, m, "nope"), MG_E_NOT_FOUND);
    ck_assert_int_eq(mg_model_tensor_at(&t, m, 0), MG_OK);
    ck_assert_str_eq(t.name, "text.output_norm");
    const float *f = t.data;
    ck_assert(f[0] == -1.0f && f[63] == 63.0f / 64.0f - 1.0f);
    ck_assert_int_eq(mg_model_tensor_at(&t, m, 2), MG_E_NOT_FOUND);
    ck_assert_int_eq(mg_model_tensor_at(NULL, m, 0), MG_E_INVALID_ARG);
    mg_model_free(m);
    remove(path);
}
END_TEST

START_TEST(test_misuse) {
    ck_assert_int_eq(mg_model_info_get(NULL, NULL), MG_E_MISUSE);
    mg_model_info mi = {.struct_size = sizeof mi};
    ck_assert_int_eq(mg_model_info_get(&mi, NULL), MG_E_MISUSE);
    ck_assert_uint_eq(mg_model_meta_count(NULL), 0);
    ck_assert_uint_eq(mg_model_tensor_count(NULL), 0);
    int64_t iv;
    ck_assert_int_eq(mg_model_meta_int(&iv, NULL, "k"), MG_E_MISUSE);
    mg_context *c = (mg_context *)0x1;
    ck_assert_int_eq(mg_context_new(&c, NULL, NULL), MG_E_MISUSE);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(mg_context_new(NULL, NULL, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_context_interrupt(NULL), MG_E_MISUSE);
    ck_assert_int_eq(mg_context_errcode(NULL), MG_E_MISUSE);
    ck_assert_str_eq(mg_context_errmsg(NULL), "invalid context handle");
    char *out = (char *)0x1;
    ck_assert_int_eq(mg_generate_report(&out, NULL, NULL, 0, NULL), MG_E_MISUSE);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(mg_vqa(&out, NULL, NULL, 0, "q", NULL), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_predict(&out, NULL, NULL, k_sc, k_nm, 1, "q", NULL), MG_E_MISUSE);
    /* Every free accepts NULL. */
    mg_model_free(NULL);
    mg_context_free(NULL);
    mg_image_free(NULL);
    mg_writer_free(NULL);
    mg_string_free(NULL);

    /* Handles of the wrong type are refused, not dereferenced as something
     * else. */
    const char *path = make_model("misuse.mgm", 1024);
    mg_model *m = load(path);
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    ck_assert_int_eq(mg_model_info_get(&mi, (mg_model *)c), MG_E_MISUSE);
    mg_context *cx = (mg_context *)0x1;
    ck_assert_int_eq(mg_context_new(&cx, (mg_model *)c, NULL), MG_E_MISUSE);
    ck_assert_ptr_null(cx);
    ck_assert_int_eq(mg_context_interrupt((mg_context *)m), MG_E_MISUSE);
    mg_context *c2 = NULL;
    ck_assert_int_eq(mg_context_new(&c2, m, NULL), MG_OK);
    ck_assert_int_eq(mg_generate_report(&out, (mg_context *)m, NULL, 0, NULL), MG_E_MISUSE);
    /* Images array holding a non-image. */
    const mg_image *imgs[1] = {(const mg_image *)m};
    ck_assert_int_eq(mg_generate_report(&out, c2, imgs, 1, NULL), MG_E_MISUSE);
    ck_assert_int_eq(mg_context_errcode(c2), MG_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c2), "images[0]"));
    mg_context_free(c2);
    /* Wrong struct sizes. */
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.struct_size = 2;
    ck_assert_int_eq(mg_context_new(&c2, m, &cp), MG_E_INVALID_ARG);
    ck_assert_ptr_null(c2);
    mg_context_params_init(&cp);
    cp.n_ctx = 2048; /* over the model's 1024 */
    ck_assert_int_eq(mg_context_new(&c2, m, &cp), MG_E_INVALID_ARG);
    /* the reason, on this thread */
    ck_assert_str_eq(mg_last_error(), "n_ctx 2048 is above the model's context length 1024");
    cp.n_ctx = 0;
    ck_assert_int_eq(mg_context_new(&c2, m, &cp), MG_OK);
    ck_assert_str_eq(mg_last_error(), "");
    mg_context_free(c2);
    mg_context_free(c);
    mg_model_free(m);
    remove(path);
}
END_TEST

START_TEST(test_zombie_model) {
    const char *path = make_model("zombie.mgm", 1024);
    mg_model *m = load(path);
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    mg_model_free(m); /* contexts keep the memory alive */
    mg_model_info mi = {.struct_size = sizeof mi};
    ck_assert_int_eq(mg_model_info_get(&mi, m), MG_E_MISUSE);
    ck_assert_uint_eq(mg_model_meta_count(m), 0);
    mg_context *c2 = NULL;
    ck_assert_int_eq(mg_context_new(&c2, m, NULL), MG_E_MISUSE);
    mg_model_free(m); /* a repeated free while it lingers is ignored */
    /* The context still works. */
    ck_assert_int_eq(mg_context_interrupt(c), MG_OK);
    char *out = NULL;
    ck_assert_int_eq(mg_prs_predict(&out, NULL, c, k_sc, k_nm, 1, "risk?", NULL), MG_E_UNSUPPORTED);
    mg_context_free(c); /* last reference: the model goes now (valgrind/ASan check) */
    remove(path);
}
END_TEST

START_TEST(test_context_params) {
    const char *path = make_model("ctx.mgm", 100000);
    mg_model *m = load(path);
    /* A struct from an "older header" that only has struct_size and
     * n_threads: the rest defaults. */
    struct { uint32_t struct_size, n_threads; } old = {8, 2};
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, (const mg_context_params *)&old), MG_OK);
    mg_context_free(c);
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_threads = 100000;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_last_error(), "n_threads 100000"));
    cp.n_threads = 3;
    cp.flags = 0x40; /* unknown bit */
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_E_INVALID_ARG);
    ck_assert_str_eq(mg_last_error(), "unknown mg_context_params flags 0x40");
    cp.flags = MG_CONTEXT_KV_BF16 | 0x80000000u;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_E_INVALID_ARG);
    cp.flags = MG_CONTEXT_KV_BF16;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    mg_context_free(c);
    mg_model_free(m);
    remove(path);
}
END_TEST

/* A caller built against a newer header: our struct then 16 bytes of fields
 * this version does not know, all zero (their defaults: accepted) or one of
 * them set (refused with MG_E_UNSUPPORTED, not ignored). */
typedef struct { _Alignas(16) unsigned char b[512]; } newer_buf;
static const void *newer(newer_buf *nb, const void *ours, size_t size, int set) {
    ck_assert_uint_le(size + 16, sizeof nb->b);
    memset(nb->b, 0, sizeof nb->b);
    memcpy(nb->b, ours, size);
    uint32_t n = (uint32_t)size + 16;
    memcpy(nb->b, &n, sizeof n);
    if (set) nb->b[size + 9] = 1;
    return nb->b;
}

START_TEST(test_newer_params) {
    newer_buf nb;
    char err[256];
    const char *path = make_model("newer.mgm", 1024);
    for (int set = 0; set < 2; set++) {
        mg_status want = set ? MG_E_UNSUPPORTED : MG_OK;
        mg_model_params mp = MG_MODEL_PARAMS_INIT;
        mg_model *m = NULL;
        ck_assert_int_eq(mg_model_load(&m, path, newer(&nb, &mp, sizeof mp, set), err, sizeof err),
                         want);
        if (set) {
            ck_assert_ptr_null(m);
            ck_assert_ptr_nonnull(strstr(err, "mg_model_params"));
            m = load(path);
        }
        mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
        mg_context *c = NULL;
        ck_assert_int_eq(mg_context_new(&c, m, newer(&nb, &cp, sizeof cp, set)), want);
        if (!c) ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
        mg_context_free(c);
        mg_model_free(m);
        /* generation, on a tiny model with a decoder from the CLI when there is one */
        const char *cli = getenv("MG_CLI");
        if (cli && *cli) {
            const char *tp = tu_tmp_path("newer_tiny.mgm");
            char cmd[8192];
            snprintf(cmd, sizeof cmd, "%s mkmodel --shape tiny --no-vision -o %s", cli, tp);
            ck_assert_int_eq(system(cmd), 0);
            m = load(tp);
            ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
            mg_gen_params gp = MG_GEN_PARAMS_INIT;
            gp.max_tokens = 2;
            char *out = NULL;
            ck_assert_int_eq(mg_generate(&out, c, "hi", newer(&nb, &gp, sizeof gp, set)),
                             set ? MG_E_UNSUPPORTED : MG_OK);
            ck_assert((strstr(mg_context_errmsg(c), "mg_gen_params") != NULL) == (set != 0));
            ck_assert((out == NULL) == (set != 0));
            mg_string_free(out);
            mg_context_free(c);
            mg_model_free(m);
            remove(tp);
        }
        /* the rest: a missing file is MG_E_IO once the parameters pass */
        const char *missing = tu_tmp_path("no-such-file");
        mg_status io = set ? MG_E_UNSUPPORTED : MG_E_IO;
        mg_image_params ip = MG_IMAGE_PARAMS_INIT;
        mg_image *img = NULL;
        ck_assert_int_eq(mg_image_load_file(&img, missing, newer(&nb, &ip, sizeof ip, set), err,
                                            sizeof err), io);
        mg_volume_params vp = MG_VOLUME_PARAMS_INIT;
        mg_volume *vol = NULL;
        ck_assert_int_eq(mg_volume_load_nifti(&vol, missing, newer(&nb, &vp, sizeof vp, set), err,
                                              sizeof err), io);
        mg_prs_params pp;
        mg_prs_params_init(&pp);
        mg_prs *prs = NULL;
        mg_status ps = mg_prs_open_plink(&prs, missing, newer(&nb, &pp, sizeof pp, set), err,
                                         sizeof err);
        ck_assert_int_eq(ps, set ? MG_E_UNSUPPORTED : MG_E_IO);
        mg_convert_params vc = MG_CONVERT_PARAMS_INIT;
        mg_status cs = mg_convert(missing, tu_tmp_path("newer-out.mgm"),
                                  newer(&nb, &vc, sizeof vc, set), err, sizeof err);
        if (set) ck_assert_int_eq(cs, MG_E_UNSUPPORTED);
        else ck_assert_int_ne(cs, MG_E_UNSUPPORTED);
        float vox[8] = {0};
        ck_assert_int_eq(mg_volume_from_voxels(&vol, vox, 2, 2, 2, NULL, NULL, NULL, err,
                                               sizeof err), MG_OK);
        mg_slice_params sp = MG_SLICE_PARAMS_INIT;
        size_t n = 0;
        ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, vol,
                                          newer(&nb, &sp, sizeof sp, set), err, sizeof err),
                         set ? MG_E_UNSUPPORTED : MG_OK);
        mg_volume_free(vol);
    }
    remove(path);
}
END_TEST

START_TEST(test_tasks_unsupported) {
    const char *path = make_model("tasks.mgm", 1024);
    mg_model *m = load(path);
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    uint8_t px[16] = {0};
    mg_image *img = NULL;
    char err[128];
    ck_assert_int_eq(mg_image_from_pixels(&img, px, 4, 4, 0, MG_PIXEL_GRAY8, NULL, err, sizeof err), MG_OK);
    const mg_image *imgs[1] = {img};
    char *out = (char *)0x1;
    ck_assert_int_eq(mg_generate_report(&out, c, imgs, 1, NULL), MG_E_UNSUPPORTED);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(mg_context_errcode(c), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "no image encoder"));
    ck_assert_int_eq(mg_vqa(&out, c, imgs, 1, "Is there a pneumothorax?", NULL), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "cannot read images"));
    double sc[1] = {0.5};
    const char *nm[1] = {"PGS000001"};
    ck_assert_int_eq(mg_prs_predict(&out, NULL, c, sc, nm, 1, "risk?", NULL), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "polygenic"));
    /* Argument errors come first and say which argument. */
    ck_assert_int_eq(mg_generate_report(&out, c, imgs, 0, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_generate_report(NULL, c, imgs, 1, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_vqa(&out, c, imgs, 1, NULL, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_predict(&out, NULL, c, NULL, nm, 1, "q", NULL), MG_E_INVALID_ARG);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.top_p = 0.0f;
    ck_assert_int_eq(mg_generate_report(&out, c, imgs, 1, &gp), MG_E_INVALID_ARG);
    gp.top_p = 1.0f;
    gp.temperature = -1.0f;
    ck_assert_int_eq(mg_generate_report(&out, c, imgs, 1, &gp), MG_E_INVALID_ARG);
    gp.struct_size = 0;
    ck_assert_int_eq(mg_generate_report(&out, c, imgs, 1, &gp), MG_E_INVALID_ARG);
    /* A successful call clears the message: interrupt is accepted. */
    ck_assert_int_eq(mg_context_interrupt(c), MG_OK);
    mg_image_free(img);
    mg_context_free(c);
    mg_model_free(m);
    remove(path);
}
END_TEST

typedef struct { mg_model *m; int ok; } thread_arg;

static void *worker(void *p) {
    thread_arg *a = p;
    a->ok = 1;
    for (int it = 0; it < 50; it++) {
        mg_context *c = NULL;
        mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
        cp.n_threads = 2;
        if (mg_context_new(&c, a->m, &cp) != MG_OK) { a->ok = 0; break; }
        int64_t v = 0;
        const char *s = NULL;
        mg_tensor_info t = {.struct_size = sizeof t};
        if (mg_model_meta_int(&v, a->m, "text.context_length") != MG_OK || v != 1024) a->ok = 0;
        if (mg_model_meta_array_string(&s, a->m, "test.strings", 0) != MG_OK || strcmp(s, "alpha")) a->ok = 0;
        if (mg_model_tensor_find(&t, a->m, "text.token_embd") != MG_OK) a->ok = 0;
        char *out = NULL;
        if (mg_prs_predict(&out, NULL, c, k_sc, k_nm, 1, "q", NULL) != MG_E_UNSUPPORTED) a->ok = 0;
        mg_context_free(c);
    }
    return NULL;
}

START_TEST(test_threads_share_model) {
    const char *path = make_model("threads.mgm", 1024);
    mg_model *m = load(path);
    enum { N = 4 };
    pthread_t th[N];
    thread_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i].m = m;
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert(args[i].ok);
    }
    mg_model_free(m);
    remove(path);
}
END_TEST

/* Interrupt from many threads at once while the owner keeps calling. */
static void *interrupter(void *p) {
    for (int i = 0; i < 1000; i++) mg_context_interrupt(p);
    return NULL;
}

START_TEST(test_interrupt_any_thread) {
    const char *path = make_model("intr.mgm", 1024);
    mg_model *m = load(path);
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, interrupter, c);
    for (int i = 0; i < 200; i++) {
        char *out = NULL;
        ck_assert_int_eq(mg_prs_predict(&out, NULL, c, k_sc, k_nm, 1, "q", NULL), MG_E_UNSUPPORTED);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    mg_context_free(c);
    mg_model_free(m);
    remove(path);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_status_codes);
    tcase_add_test(tc, test_params_init);
    tcase_add_test(tc, test_load_errors);
    tcase_add_test(tc, test_model_queries);
    tcase_add_test(tc, test_misuse);
    tcase_add_test(tc, test_zombie_model);
    tcase_add_test(tc, test_context_params);
    tcase_add_test(tc, test_newer_params);
    tcase_add_test(tc, test_tasks_unsupported);
    tcase_add_test(tc, test_threads_share_model);
    tcase_add_test(tc, test_interrupt_any_thread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
