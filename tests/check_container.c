/* check_container.c - the .mgm container: writer/reader round trips, CRC-32C,
 * truncation and bit flips at every byte, hand-crafted hostile files, writer
 * misuse, limits. */
#include "testutil.h"

#include "core/core.h"
#include "io/mgm.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

uint32_t mg__crc32c_sw(uint32_t crc, const void *data, size_t n);

/* ---- little helpers ---------------------------------------------------------- */

static void le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Recomputes header_crc after a test edited the front of a file. */
static void fix_crc(uint8_t *f, size_t n) {
    if (n < 64) return;
    uint64_t doff = get64(f + 40);
    if (doff < 64 || doff > n) return;
    le32(f + 56, 0);
    le32(f + 56, mg__crc32c(0, f, (size_t)doff));
}

static void fill_random(void *p, size_t n, uint64_t seed) {
    uint8_t *b = p;
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(tu_rand_u64(&s) >> 56);
}

/* Opens bytes written to a scratch file; returns the status and closes. */
static mg_status open_bytes(const uint8_t *f, size_t n, uint32_t flags,
                            uint64_t max_memory, char *err, size_t errlen) {
    const char *path = tu_tmp_path("craft.mgm");
    ck_assert_int_eq(tu_write_file(path, f, n), 0);
    mg__mgm *m = NULL;
    mg_status st = mg__mgm_open(&m, path, flags, max_memory, err, errlen);
    if (st == MG_OK) {
        ck_assert_ptr_nonnull(m);
        /* Touch every tensor byte: a bad pointer shows up under ASan. */
        unsigned sum = 0;
        for (uint64_t i = 0; i < m->n_tensors; i++) {
            const uint8_t *d = m->tensors[i].data;
            for (uint64_t k = 0; k < m->tensors[i].n_bytes; k++) sum += d[k];
        }
        (void)sum;
        mg__mgm_close(m);
    } else {
        ck_assert_ptr_null(m);
        ck_assert_msg(err[0] != '\0', "error without a message");
    }
    unlink(path);
    return st;
}

/* Expects `want` (and a message containing `sub`) with and without mmap. */
static void expect_at(const uint8_t *f, size_t n, uint32_t flags, mg_status want,
                      const char *sub, int line) {
    for (int mode = 0; mode < 2; mode++) {
        char err[512] = "";
        uint32_t fl = flags | (mode ? MG_LOAD_NO_MMAP : MG_LOAD_MMAP);
        mg_status st = open_bytes(f, n, fl, 0, err, sizeof err);
        ck_assert_msg(st == want, "line %d (flags %u): status %d, want %d (%s)",
                      line, fl, st, want, err);
        if (sub)
            ck_assert_msg(strstr(err, sub) != NULL,
                          "line %d: message '%s' lacks '%s'", line, err, sub);
    }
}
#define EXPECT(f, n, flags, want, sub) expect_at(f, n, flags, want, sub, __LINE__)

/* ---- a byte builder for hand-crafted files --------------------------------- */

typedef struct tb {
    uint8_t *p;
    size_t n, cap;
} tb;

static void tb_put(tb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        ck_assert_ptr_nonnull(b->p);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void tb_u32(tb *b, uint32_t v) {
    uint8_t x[4];
    le32(x, v);
    tb_put(b, x, 4);
}
static void tb_u64(tb *b, uint64_t v) {
    uint8_t x[8];
    le64(x, v);
    tb_put(b, x, 8);
}
static void tb_zero(tb *b, size_t n) {
    static const uint8_t z[256];
    while (n) {
        size_t c = n < sizeof z ? n : sizeof z;
        tb_put(b, z, c);
        n -= c;
    }
}
static void tb_str(tb *b, const char *s) {
    tb_u32(b, (uint32_t)strlen(s));
    tb_put(b, s, strlen(s));
}

typedef struct craft {
    tb meta, table, data;
    uint64_t n_meta, n_tensors;
    uint32_t alignment;
    uint64_t extra_pad; /* extra zero bytes before data_offset */
} craft;

static void cr_init(craft *c) {
    memset(c, 0, sizeof *c);
    c->alignment = 64;
}
static void cr_free(craft *c) {
    free(c->meta.p);
    free(c->table.p);
    free(c->data.p);
}
static void cr_int(craft *c, const char *k, int64_t v) {
    tb_str(&c->meta, k);
    tb_u32(&c->meta, MG_META_INT);
    tb_u64(&c->meta, (uint64_t)v);
    c->n_meta++;
}
static void cr_string(craft *c, const char *k, const char *v) {
    tb_str(&c->meta, k);
    tb_u32(&c->meta, MG_META_STRING);
    tb_str(&c->meta, v);
    c->n_meta++;
}
static void cr_entry(craft *c, const char *name, uint32_t dtype, uint32_t n_dims,
                     const uint64_t *dims, uint32_t flags, uint32_t crc,
                     uint64_t off, uint64_t stored, uint64_t size) {
    tb_str(&c->table, name);
    tb_u32(&c->table, dtype);
    tb_u32(&c->table, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) tb_u64(&c->table, dims[d]);
    tb_u32(&c->table, flags);
    tb_u32(&c->table, crc);
    tb_u64(&c->table, off);
    tb_u64(&c->table, stored);
    tb_u64(&c->table, size);
    c->n_tensors++;
}
/* Appends stored bytes at the next aligned data offset; returns the offset. */
static uint64_t cr_data(craft *c, const void *p, size_t n) {
    size_t pad = (size_t)(mg__align_up(c->data.n, c->alignment) - c->data.n);
    tb_zero(&c->data, pad);
    uint64_t off = c->data.n;
    tb_put(&c->data, p, n);
    return off;
}
/* An uncompressed tensor with correct entry. */
static void cr_tensor(craft *c, const char *name, uint32_t dtype, uint32_t n_dims,
                      const uint64_t *dims, const void *p, size_t n) {
    uint64_t off = cr_data(c, p, n);
    cr_entry(c, name, dtype, n_dims, dims, 0, mg__crc32c(0, p, n), off, n, n);
}
static uint8_t *cr_build(craft *c, size_t *n) {
    uint64_t table_end = 64 + c->meta.n + c->table.n;
    uint64_t doff = mg__align_up(table_end + c->extra_pad, c->alignment);
    size_t total = (size_t)doff + c->data.n;
    uint8_t *f = calloc(1, total);
    ck_assert_ptr_nonnull(f);
    memcpy(f, "MGMF", 4);
    le32(f + 4, 1);
    le32(f + 12, c->alignment);
    le64(f + 16, c->n_meta);
    le64(f + 24, c->n_tensors);
    le64(f + 32, 64);
    le64(f + 40, doff);
    le64(f + 48, c->data.n);
    le32(f + 60, mg__crc32c(0, c->data.p, c->data.n));
    if (c->meta.n) memcpy(f + 64, c->meta.p, c->meta.n);
    if (c->table.n) memcpy(f + 64 + c->meta.n, c->table.p, c->table.n);
    if (c->data.n) memcpy(f + doff, c->data.p, c->data.n);
    fix_crc(f, total);
    *n = total;
    return f;
}

/* ---- a sample file written with the writer ------------------------------- */

#define N_SAMPLE 5
typedef struct sample_t {
    const char *name;
    int32_t dtype;
    uint32_t n_dims;
    uint64_t dims[4];
    uint32_t flags;
    int compressible;
    uint8_t *bytes;
    uint64_t size;
} sample_t;

static sample_t g_s[N_SAMPLE] = {
    {"text.tok_embd", MG_DTYPE_F32, 2, {64, 3, 1, 1}, 0, 0, NULL, 0},
    {"vision.patch", MG_DTYPE_F16, 4, {8, 2, 2, 1}, MG_WRITE_COMPRESS, 1, NULL, 0},
    {"x.bf16", MG_DTYPE_BF16, 1, {5, 1, 1, 1}, 0, 0, NULL, 0},
    {"blk.0.q8", MG_DTYPE_Q8_0, 2, {64, 2, 1, 1}, MG_WRITE_COMPRESS, 0, NULL, 0},
    {"blk.0.q4", MG_DTYPE_Q4_0, 2, {32, 3, 1, 1}, MG_WRITE_COMPRESS, 1, NULL, 0},
};
static const int g_order[N_SAMPLE] = {3, 0, 4, 2, 1};

static const int64_t g_ints[] = {0, -1, INT64_MIN, INT64_MAX, 42};
static const double g_floats[] = {0.0, -0.0, 1e308, -2.5, 3.25};
static const char *const g_strs[] = {"<pad>", "", "Größe", "✓🙂", "▁the"};

static void sample_prepare(void) {
    for (int i = 0; i < N_SAMPLE; i++) {
        sample_t *s = &g_s[i];
        int ok = 0;
        uint64_t n = s->dims[0] * s->dims[1] * s->dims[2] * s->dims[3];
        s->size = mg__dtype_bytes(s->dtype, n, &ok);
        ck_assert(ok);
        free(s->bytes);
        s->bytes = malloc(s->size);
        if (s->compressible)
            for (uint64_t k = 0; k < s->size; k++) s->bytes[k] = (uint8_t)(k % 3);
        else
            fill_random(s->bytes, s->size, 77 + (uint64_t)i);
    }
}

static void sample_free(void) {
    for (int i = 0; i < N_SAMPLE; i++) {
        free(g_s[i].bytes);
        g_s[i].bytes = NULL;
    }
}

static char g_longkey[256];
static char g_longname[1024];

static void write_sample(const char *path, uint32_t wflags) {
    mg_writer *w = NULL;
    char err[256];
    ck_assert_int_eq(mg_writer_open(&w, path, wflags, err, sizeof err), MG_OK);
    memset(g_longkey, 'k', 255);
    memset(g_longname, 'n', 1023);
    ck_assert_int_eq(mg_writer_set_string(w, "general.name", "Tiny ✓"), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.architecture", "test"), MG_OK);
    ck_assert_int_eq(mg_writer_set_int(w, "a.int", -123456789012345), MG_OK);
    ck_assert_int_eq(mg_writer_set_float(w, "a.float", 0.1), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "a.empty", ""), MG_OK);
    ck_assert_int_eq(mg_writer_set_int_array(w, "a.ints", g_ints, 5), MG_OK);
    ck_assert_int_eq(mg_writer_set_float_array(w, "a.floats", g_floats, 5), MG_OK);
    ck_assert_int_eq(mg_writer_set_string_array(w, "a.strs", g_strs, 5), MG_OK);
    ck_assert_int_eq(mg_writer_set_int_array(w, "a.none", NULL, 0), MG_OK);
    ck_assert_int_eq(mg_writer_set_int(w, g_longkey, 7), MG_OK);
    for (int i = 0; i < N_SAMPLE; i++) {
        const sample_t *s = &g_s[i];
        ck_assert_int_eq(mg_writer_add_tensor(w, s->name, s->dtype, s->n_dims,
                                              s->dims, s->flags), MG_OK);
    }
    uint64_t d1 = 32;
    ck_assert_int_eq(mg_writer_add_tensor(w, g_longname, MG_DTYPE_F32, 1, &d1, 0),
                     MG_OK);
    for (int k = 0; k < N_SAMPLE; k++) {
        const sample_t *s = &g_s[g_order[k]];
        ck_assert_msg(mg_writer_write_tensor(w, s->name, s->bytes, s->size) == MG_OK,
                      "%s", mg_writer_errmsg(w));
    }
    float ones[32];
    for (int i = 0; i < 32; i++) ones[i] = (float)i;
    ck_assert_int_eq(mg_writer_write_tensor_f32(w, g_longname, ones, 32), MG_OK);
    ck_assert_msg(mg_writer_finish(w) == MG_OK, "%s", mg_writer_errmsg(w));
    ck_assert_str_eq(mg_writer_errmsg(w), "");
    mg_writer_free(w);
}

static void check_sample(const mg__mgm *f, int compressed_file) {
    ck_assert_uint_eq(f->version, 1);
    ck_assert_uint_eq(f->alignment, 64);
    ck_assert_uint_eq(f->n_meta, 10);
    ck_assert_uint_eq(f->n_tensors, N_SAMPLE + 1);
    /* metadata in file order */
    ck_assert_str_eq(f->meta[0].key, "general.name");
    ck_assert_str_eq(f->meta[9].key, g_longkey);
    const mg__meta *m = mg__mgm_meta(f, "general.name");
    ck_assert_ptr_eq(m, &f->meta[0]);
    ck_assert_int_eq(m->type, MG_META_STRING);
    ck_assert_str_eq(m->v.s, "Tiny ✓");
    m = mg__mgm_meta(f, "a.int");
    ck_assert_int_eq(m->type, MG_META_INT);
    ck_assert_int_eq(m->n, 1);
    ck_assert(m->v.i == -123456789012345);
    m = mg__mgm_meta(f, "a.float");
    ck_assert_int_eq(m->type, MG_META_FLOAT);
    ck_assert(m->v.f == 0.1);
    ck_assert_str_eq(mg__mgm_meta(f, "a.empty")->v.s, "");
    m = mg__mgm_meta(f, "a.ints");
    ck_assert_int_eq(m->type, MG_META_ARRAY);
    ck_assert_int_eq(m->elem_type, MG_META_INT);
    ck_assert_uint_eq(m->n, 5);
    ck_assert(((uintptr_t)m->v.ai & 7) == 0);
    for (int i = 0; i < 5; i++) ck_assert(m->v.ai[i] == g_ints[i]);
    m = mg__mgm_meta(f, "a.floats");
    ck_assert_int_eq(m->elem_type, MG_META_FLOAT);
    ck_assert(((uintptr_t)m->v.af & 7) == 0);
    ck_assert_mem_eq(m->v.af, g_floats, sizeof g_floats); /* -0.0 kept */
    m = mg__mgm_meta(f, "a.strs");
    ck_assert_int_eq(m->elem_type, MG_META_STRING);
    ck_assert_uint_eq(m->n, 5);
    for (int i = 0; i < 5; i++) ck_assert_str_eq(m->v.as[i], g_strs[i]);
    m = mg__mgm_meta(f, "a.none");
    ck_assert_int_eq(m->type, MG_META_ARRAY);
    ck_assert_uint_eq(m->n, 0);
    ck_assert_int_eq((int)mg__mgm_meta(f, g_longkey)->v.i, 7);
    ck_assert_ptr_null(mg__mgm_meta(f, "missing"));
    ck_assert_ptr_null(mg__mgm_meta(f, "a.int "));
    ck_assert_ptr_null(mg__mgm_meta(f, ""));
    ck_assert_ptr_null(mg__mgm_meta(f, NULL));
    ck_assert_ptr_null(mg__mgm_meta(NULL, "a.int"));

    uint64_t params = 0, bytes = 0;
    for (int i = 0; i < N_SAMPLE; i++) {
        const sample_t *s = &g_s[i];
        const mg__tensor *t = mg__mgm_tensor(f, s->name);
        ck_assert_ptr_eq(t, &f->tensors[i]);
        ck_assert_str_eq(t->name, s->name);
        ck_assert_int_eq(t->dtype, s->dtype);
        ck_assert_uint_eq(t->n_dims, s->n_dims);
        uint64_t n = 1;
        for (int d = 0; d < 4; d++) {
            ck_assert_uint_eq(t->dims[d], s->dims[d]);
            n *= s->dims[d];
        }
        ck_assert_uint_eq(t->n_elems, n);
        ck_assert_uint_eq(t->n_bytes, s->size);
        ck_assert_uint_eq(t->crc32c, mg__crc32c(0, s->bytes, s->size));
        ck_assert_uint_eq(t->offset % 64, 0);
        ck_assert(((uintptr_t)t->data & 63) == 0);
        ck_assert_mem_eq(t->data, s->bytes, s->size);
        int want_z = s->compressible && ((s->flags | (uint32_t)compressed_file) &
                                         MG_WRITE_COMPRESS);
        ck_assert_msg(((t->flags & MG__MGM_FLAG_ZSTD) != 0) == want_z,
                      "tensor %s flags %u", s->name, t->flags);
        if (!want_z) ck_assert_uint_eq(t->stored, t->n_bytes);
        else ck_assert_uint_lt(t->stored, t->n_bytes);
        params += n;
        bytes += s->size;
    }
    const mg__tensor *t = mg__mgm_tensor(f, g_longname);
    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < 32; i++) ck_assert(((const float *)t->data)[i] == (float)i);
    ck_assert_uint_eq(f->n_params, params + 32);
    ck_assert_uint_eq(f->n_bytes, bytes + 128);
    ck_assert_ptr_null(mg__mgm_tensor(f, "nope"));
    ck_assert_ptr_null(mg__mgm_tensor(f, NULL));
    ck_assert_ptr_null(mg__mgm_tensor(NULL, "x.bf16"));
}

/* ---- tests ----------------------------------------------------------------- */

START_TEST(test_crc32c_known_answer) {
    const char *s = "123456789";
    ck_assert_uint_eq(mg__crc32c(0, s, 9), 0xE3069283u);
    ck_assert_uint_eq(mg__crc32c_sw(0, s, 9), 0xE3069283u);
    ck_assert_uint_eq(mg__crc32c(mg__crc32c(0, s, 4), s + 4, 5), 0xE3069283u);
    ck_assert_uint_eq(mg__crc32c(0, s, 0), 0);
    /* 32 zero bytes: RFC 3720 test vector */
    uint8_t z[32] = {0};
    ck_assert_uint_eq(mg__crc32c(0, z, 32), 0x8A9136AAu);
    /* hardware and table versions agree at every length and misalignment */
    uint8_t buf[300];
    fill_random(buf, sizeof buf, 5);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += 7)
            ck_assert_uint_eq(mg__crc32c(0, buf + off, n),
                              mg__crc32c_sw(0, buf + off, n));
}
END_TEST

START_TEST(test_roundtrip) {
    const char *path = tu_tmp_path("sample.mgm");
    sample_prepare();
    for (int wf = 0; wf < 2; wf++) {
        write_sample(path, wf ? MG_WRITE_COMPRESS : 0);
        static const uint32_t lf[] = {MG_LOAD_MMAP, 0, MG_LOAD_VERIFY_CHECKSUMS | MG_LOAD_MMAP,
                                      MG_LOAD_VERIFY_CHECKSUMS | MG_LOAD_NO_MMAP};
        for (size_t k = 0; k < 4; k++) {
            mg__mgm *f = NULL;
            char err[256] = "";
            mg_status st = mg__mgm_open(&f, path, lf[k], 0, err, sizeof err);
            ck_assert_msg(st == MG_OK, "flags %u: %s", lf[k], err);
            check_sample(f, wf);
            mg__mgm_close(f);
        }
    }
    unlink(path);
    sample_free();
}
END_TEST

START_TEST(test_write_f32_converts) {
    const char *path = tu_tmp_path("f32.mgm");
    static const int32_t dt[] = {MG_DTYPE_F32, MG_DTYPE_F16, MG_DTYPE_BF16,
                                 MG_DTYPE_Q8_0, MG_DTYPE_Q4_0};
    float src[4 * 64];
    uint64_t seed = 9;
    for (int i = 0; i < 4 * 64; i++) src[i] = tu_rand_f32(&seed) * 3.0f;
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, NULL, 0), MG_OK);
    uint64_t dims[2] = {64, 4};
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "t%d", i);
        ck_assert_int_eq(mg_writer_add_tensor(w, name, dt[i], 2, dims,
                                              i & 1 ? MG_WRITE_COMPRESS : 0), MG_OK);
    }
    for (int i = 4; i >= 0; i--) {
        snprintf(name, sizeof name, "t%d", i);
        ck_assert_msg(mg_writer_write_tensor_f32(w, name, src, 256) == MG_OK, "%s",
                      mg_writer_errmsg(w));
    }
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    mg__mgm *f = NULL;
    char err[256];
    ck_assert_int_eq(mg__mgm_open(&f, path, MG_LOAD_VERIFY_CHECKSUMS, 0, err,
                                  sizeof err), MG_OK);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "t%d", i);
        const mg__tensor *t = mg__mgm_tensor(f, name);
        ck_assert_ptr_nonnull(t);
        int ok = 0;
        uint64_t size = mg__dtype_bytes(dt[i], 256, &ok);
        ck_assert_uint_eq(t->n_bytes, size);
        void *want = malloc(size);
        ck_assert_int_eq(mg__quantize(dt[i], want, src, 256), 0);
        ck_assert_mem_eq(t->data, want, size);
        free(want);
    }
    mg__mgm_close(f);
    unlink(path);
}
END_TEST

START_TEST(test_big_string_arrays) {
    /* A tokenizer-sized vocabulary: one arena, indexed look-ups. */
    const uint64_t n = tu_under_valgrind() ? 20000 : 262144;
    const char *path = tu_tmp_path("vocab.mgm");
    char *pool = malloc(n * 16);
    const char **v = malloc(n * sizeof *v);
    for (uint64_t i = 0; i < n; i++) {
        char *s = pool + i * 16;
        snprintf(s, 16, "▁t%llu", (unsigned long long)i);
        v[i] = s;
    }
    int64_t *types = malloc(n * sizeof *types);
    for (uint64_t i = 0; i < n; i++) types[i] = (int64_t)(i % 5);
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, NULL, 0), MG_OK);
    ck_assert_int_eq(mg_writer_set_string_array(w, "tokenizer.tokens", v, n), MG_OK);
    ck_assert_int_eq(mg_writer_set_int_array(w, "tokenizer.token_type", types, n),
                     MG_OK);
    char key[32];
    for (int i = 0; i < 500; i++) { /* many keys: hash set and sorted index */
        snprintf(key, sizeof key, "k.%d", i);
        ck_assert_int_eq(mg_writer_set_int(w, key, i), MG_OK);
    }
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    mg__mgm *f = NULL;
    char err[256];
    ck_assert_int_eq(mg__mgm_open(&f, path, MG_LOAD_VERIFY_CHECKSUMS, 0, err,
                                  sizeof err), MG_OK);
    const mg__meta *m = mg__mgm_meta(f, "tokenizer.tokens");
    ck_assert_uint_eq(m->n, n);
    for (uint64_t i = 0; i < n; i++) ck_assert_str_eq(m->v.as[i], v[i]);
    m = mg__mgm_meta(f, "tokenizer.token_type");
    for (uint64_t i = 0; i < n; i++) ck_assert(m->v.ai[i] == types[i]);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "k.%d", i);
        ck_assert_int_eq((int)mg__mgm_meta(f, key)->v.i, i);
    }
    ck_assert_uint_eq(f->n_tensors, 0);
    ck_assert_uint_eq(f->data_size, 0);
    mg__mgm_close(f);
    free(types);
    free(v);
    free(pool);
    unlink(path);
}
END_TEST

START_TEST(test_compression) {
    const char *path = tu_tmp_path("z.mgm");
    const uint64_t n = (uint64_t)1 << 20; /* 4 MiB of f32 */
    float *big = malloc(n * sizeof *big);
    for (uint64_t i = 0; i < n; i++) big[i] = (float)(i % 1000);
    uint8_t *rnd = malloc(65536);
    fill_random(rnd, 65536, 3);
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, MG_WRITE_COMPRESS, NULL, 0), MG_OK);
    uint64_t d1[1] = {n}, d2[1] = {16384}, d3[1] = {64};
    ck_assert_int_eq(mg_writer_add_tensor(w, "big", MG_DTYPE_F32, 1, d1, 0), MG_OK);
    ck_assert_int_eq(mg_writer_add_tensor(w, "rnd", MG_DTYPE_F32, 1, d2, 0), MG_OK);
    ck_assert_int_eq(mg_writer_add_tensor(w, "zeros", MG_DTYPE_F32, 1, d3, 0), MG_OK);
    float zeros[64] = {0};
    ck_assert_int_eq(mg_writer_write_tensor(w, "zeros", zeros, sizeof zeros), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor(w, "rnd", rnd, 65536), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor_f32(w, "big", big, n), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    for (int k = 0; k < 2; k++) {
        mg__mgm *f = NULL;
        char err[256];
        uint32_t fl = k ? MG_LOAD_VERIFY_CHECKSUMS | MG_LOAD_NO_MMAP : MG_LOAD_MMAP;
        ck_assert_int_eq(mg__mgm_open(&f, path, fl, 0, err, sizeof err), MG_OK);
        const mg__tensor *t = mg__mgm_tensor(f, "big");
        ck_assert(t->flags & MG__MGM_FLAG_ZSTD);
        ck_assert_uint_lt(t->stored, t->n_bytes / 10);
        ck_assert_mem_eq(t->data, big, n * 4);
        t = mg__mgm_tensor(f, "rnd"); /* incompressible: stored raw */
        ck_assert_uint_eq(t->flags, 0);
        ck_assert_mem_eq(t->data, rnd, 65536);
        t = mg__mgm_tensor(f, "zeros");
        ck_assert(t->flags & MG__MGM_FLAG_ZSTD);
        ck_assert_mem_eq(t->data, zeros, sizeof zeros);
        ck_assert_uint_eq(f->n_bytes, n * 4 + 65536 + 256);
        mg__mgm_close(f);
    }
    /* max_memory bounds the decompressed total */
    mg__mgm *f = NULL;
    char err[256];
    ck_assert_int_eq(mg__mgm_open(&f, path, 0, n * 4 + 65536 + 255, err, sizeof err),
                     MG_E_LIMIT);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(err, "max_memory"));
    ck_assert_int_eq(mg__mgm_open(&f, path, 0, n * 4 + 65536 + 256, err, sizeof err),
                     MG_OK);
    mg__mgm_close(f);
    free(big);
    free(rnd);
    unlink(path);
}
END_TEST

/* A small file with every kind of section, for truncation and bit flips. */
static uint8_t *small_file(size_t *n) {
    const char *path = tu_tmp_path("small.mgm");
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, NULL, 0), MG_OK);
    ck_assert_int_eq(mg_writer_set_string(w, "general.name", "s"), MG_OK);
    ck_assert_int_eq(mg_writer_set_float(w, "f", 1.5), MG_OK);
    static const char *const toks[] = {"a", "bc", ""};
    ck_assert_int_eq(mg_writer_set_string_array(w, "toks", toks, 3), MG_OK);
    int64_t iv[2] = {1, 2};
    ck_assert_int_eq(mg_writer_set_int_array(w, "ints", iv, 2), MG_OK);
    uint64_t d[2] = {32, 2};
    ck_assert_int_eq(mg_writer_add_tensor(w, "q", MG_DTYPE_Q4_0, 2, d, 0), MG_OK);
    ck_assert_int_eq(mg_writer_add_tensor(w, "z", MG_DTYPE_F16, 2, d,
                                          MG_WRITE_COMPRESS), MG_OK);
    d[0] = 3;
    ck_assert_int_eq(mg_writer_add_tensor(w, "r", MG_DTYPE_F32, 1, d, 0), MG_OK);
    uint8_t q[36], z[128];
    fill_random(q, sizeof q, 11);
    for (size_t i = 0; i < sizeof z; i++) z[i] = (uint8_t)(i & 7);
    float r[3] = {1, 2, 3};
    ck_assert_int_eq(mg_writer_write_tensor(w, "z", z, sizeof z), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor(w, "q", q, sizeof q), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor_f32(w, "r", r, 3), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    uint8_t *f = tu_read_file(path, n);
    ck_assert_ptr_nonnull(f);
    unlink(path);
    return f;
}

START_TEST(test_truncation_every_length) {
    size_t n;
    uint8_t *f = small_file(&n);
    char err[512];
    ck_assert_int_eq(open_bytes(f, n, MG_LOAD_VERIFY_CHECKSUMS, 0, err, sizeof err),
                     MG_OK);
    size_t step = tu_under_valgrind() ? 3 : 1;
    for (size_t len = 0; len < n; len += step) {
        for (int mode = 0; mode < 3; mode++) {
            static const uint32_t fl[] = {MG_LOAD_MMAP, MG_LOAD_VERIFY_CHECKSUMS | MG_LOAD_MMAP,
                                          0};
            mg_status st = open_bytes(f, len, fl[mode], 0, err, sizeof err);
            ck_assert_msg(st == MG_E_MODEL_FORMAT,
                          "truncated to %zu of %zu: status %d (%s)", len, n, st, err);
        }
    }
    /* Appended bytes: ignored unless verifying. */
    uint8_t *g = malloc(n + 1);
    memcpy(g, f, n);
    g[n] = 0;
    ck_assert_int_eq(open_bytes(g, n + 1, 0, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(open_bytes(g, n + 1, MG_LOAD_VERIFY_CHECKSUMS, 0, err,
                                sizeof err), MG_E_MODEL_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "after the data section"));
    free(g);
    free(f);
}
END_TEST

START_TEST(test_bitflip_every_byte) {
    size_t n;
    uint8_t *f = small_file(&n);
    char err[512];
    size_t step = tu_under_valgrind() ? 3 : 1;
    static const int bits[] = {0, 3, 7};
    int detected_without_verify = 0, ok_without_verify = 0;
    for (size_t i = 0; i < n; i += step) {
        for (size_t b = 0; b < 3; b++) {
            f[i] ^= (uint8_t)(1u << bits[b]);
            mg_status st = open_bytes(f, n, MG_LOAD_VERIFY_CHECKSUMS, 0, err,
                                      sizeof err);
            ck_assert_msg(st == MG_E_MODEL_FORMAT || st == MG_E_CHECKSUM ||
                              st == MG_E_UNSUPPORTED,
                          "flip of bit %d at byte %zu of %zu undetected: %d (%s)",
                          bits[b], i, n, st, err);
            /* Without verification: an error or a usable file, never a crash. */
            uint32_t fl = (b == 1) ? 0 : MG_LOAD_MMAP;
            st = open_bytes(f, n, fl, 0, err, sizeof err);
            if (st == MG_OK) ok_without_verify++;
            else detected_without_verify++;
            f[i] ^= (uint8_t)(1u << bits[b]);
        }
    }
    /* Most flips land in the front (header CRC) and are caught anyway; flips
     * in uncompressed tensor data are not, without verification. */
    ck_assert_int_gt(detected_without_verify, 0);
    ck_assert_int_gt(ok_without_verify, 0);
    ck_assert_int_eq(open_bytes(f, n, MG_LOAD_VERIFY_CHECKSUMS, 0, err, sizeof err),
                     MG_OK);
    free(f);
}
END_TEST

START_TEST(test_open_errors) {
    mg__mgm *f = (mg__mgm *)(uintptr_t)1;
    char err[256];
    ck_assert_int_eq(mg__mgm_open(NULL, "x", 0, 0, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg__mgm_open(&f, NULL, 0, 0, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(mg__mgm_open(&f, "/nonexistent/dir/x.mgm", 0, 0, err, sizeof err),
                     MG_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dir/x.mgm"));
    ck_assert_int_eq(mg__mgm_open(&f, "tests", 0, 0, NULL, 0), MG_E_IO);
    const char *path = tu_tmp_path("empty.mgm");
    ck_assert_int_eq(tu_write_file(path, "", 0), 0);
    ck_assert_int_eq(mg__mgm_open(&f, path, 0, 0, err, sizeof err), MG_E_MODEL_FORMAT);
    ck_assert_int_eq(mg__mgm_open(&f, path, MG_LOAD_NO_MMAP, 0, err, 4), MG_E_MODEL_FORMAT);
    ck_assert_uint_le(strlen(err), 3);
    unlink(path);
    /* a FIFO with no writer: an error at once, not a hang */
    const char *fifo = tu_tmp_path("fifo.mgm");
    unlink(fifo);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(mg__mgm_open(&f, fifo, 0, 0, err, sizeof err), MG_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    unlink(fifo);
    mg__mgm_close(NULL);
}
END_TEST

START_TEST(test_empty_file_roundtrip) {
    const char *path = tu_tmp_path("none.mgm");
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, NULL, 0), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    size_t n;
    uint8_t *b = tu_read_file(path, &n);
    ck_assert_uint_eq(n, 64);
    free(b);
    mg__mgm *f = NULL;
    char err[256];
    ck_assert_int_eq(mg__mgm_open(&f, path, MG_LOAD_VERIFY_CHECKSUMS, 0, err,
                                  sizeof err), MG_OK);
    ck_assert_uint_eq(f->n_meta, 0);
    ck_assert_uint_eq(f->n_tensors, 0);
    ck_assert_ptr_null(mg__mgm_meta(f, "x"));
    ck_assert_ptr_null(mg__mgm_tensor(f, "x"));
    mg__mgm_close(f);
    unlink(path);
}
END_TEST

/* ---- hostile files ---------------------------------------------------------- */

static const float g_four[4] = {1, 2, 3, 4};

/* A valid crafted base: two keys, one f32 tensor. */
static uint8_t *base_file(size_t *n) {
    craft c;
    cr_init(&c);
    cr_int(&c, "a", 1);
    cr_string(&c, "b", "hello");
    uint64_t d = 4;
    cr_tensor(&c, "t", MG_DTYPE_F32, 1, &d, g_four, 16);
    uint8_t *f = cr_build(&c, n);
    cr_free(&c);
    return f;
}

START_TEST(test_hostile_header) {
    size_t n;
    uint8_t *f = base_file(&n);
    EXPECT(f, n, MG_LOAD_VERIFY_CHECKSUMS, MG_OK, NULL);
    uint8_t *g = malloc(n + 64);
#define RESET() memcpy(g, f, n)
    RESET(); g[0] = 'X';
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "magic");
    RESET(); le32(g + 4, 2); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_UNSUPPORTED, "version 2");
    RESET(); le32(g + 4, 0); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "version 0");
    RESET(); le32(g + 8, 1); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "flags");
    static const uint32_t bad_align[] = {0, 16, 48, 96, 1u << 21, 0x80000000u};
    for (size_t i = 0; i < sizeof bad_align / sizeof *bad_align; i++) {
        RESET(); le32(g + 12, bad_align[i]); fix_crc(g, n);
        EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "alignment");
    }
    RESET(); le64(g + 16, (uint64_t)1 << 60); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "n_meta");
    RESET(); le64(g + 16, UINT64_MAX); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "n_meta");
    RESET(); le64(g + 24, (uint64_t)1 << 60); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "n_tensors");
    RESET(); le64(g + 16, 3); fix_crc(g, n); /* reads the table as metadata */
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "metadata entry 2");
    RESET(); le64(g + 24, 2); fix_crc(g, n); /* reads padding as a tensor */
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "tensor 1");
    RESET(); le64(g + 24, 0); fix_crc(g, n); /* table shorter than declared */
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "data_offset");
    RESET(); le64(g + 32, 128); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "meta_offset");
    uint64_t doff = get64(f + 40);
    RESET(); le64(g + 40, doff + 32); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "data_offset");
    RESET(); le64(g + 40, 0);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "data_offset");
    RESET(); le64(g + 40, UINT64_MAX - 63);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "data_offset");
    RESET(); le64(g + 48, UINT64_MAX); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "past the end of the file");
    RESET(); le64(g + 48, get64(f + 48) + 1); fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "past the end of the file");
    /* a data_offset larger than needed (extra zero padding) */
    memcpy(g, f, n);
    memmove(g + doff + 64, g + doff, n - doff);
    memset(g + doff, 0, 64);
    le64(g + 40, doff + 64);
    fix_crc(g, n + 64);
    EXPECT(g, n + 64, 0, MG_E_MODEL_FORMAT, "tensor table ends");
    /* header checksum */
    RESET(); g[70] ^= 1; /* a metadata byte */
    EXPECT(g, n, 0, MG_E_CHECKSUM, "header checksum");
    RESET(); g[57] ^= 0x10;
    EXPECT(g, n, 0, MG_E_CHECKSUM, "header checksum");
    /* data checksum and padding, verified only on request */
    RESET(); le32(g + 60, 0x12345678); fix_crc(g, n);
    EXPECT(g, n, 0, MG_OK, NULL);
    EXPECT(g, n, MG_LOAD_VERIFY_CHECKSUMS, MG_E_CHECKSUM, "data section checksum");
    RESET(); g[n - 1] ^= 0x40; /* tensor data */
    EXPECT(g, n, 0, MG_OK, NULL);
    EXPECT(g, n, MG_LOAD_VERIFY_CHECKSUMS, MG_E_CHECKSUM, "tensor 't'");
    /* non-zero padding between the table and data_offset: always rejected */
    RESET(); g[doff - 1] = 1; fix_crc(g, n);
    EXPECT(g, n, 0, MG_E_MODEL_FORMAT, "padding");
#undef RESET
    free(g);
    free(f);
}
END_TEST

START_TEST(test_hostile_metadata) {
    size_t n;
    uint8_t *f;
    uint64_t d = 4;
    craft c;
#define BUILD_EXPECT(setup, want, sub)                        \
    do {                                                      \
        cr_init(&c);                                          \
        setup;                                                \
        f = cr_build(&c, &n);                                 \
        EXPECT(f, n, MG_LOAD_VERIFY_CHECKSUMS, want, sub);    \
        free(f);                                              \
        cr_free(&c);                                          \
    } while (0)
    /* key length past the end */
    BUILD_EXPECT({ tb_u32(&c.meta, 200); tb_put(&c.meta, "abc", 3); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "key of 200 bytes");
    BUILD_EXPECT({ tb_u32(&c.meta, 0); tb_zero(&c.meta, 12); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "key length 0");
    BUILD_EXPECT({ tb_u32(&c.meta, 256); tb_zero(&c.meta, 300); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "key length 256");
    /* bad UTF-8 and NUL in keys */
    BUILD_EXPECT(cr_int(&c, "\xff\xfe", 1), MG_E_MODEL_FORMAT, "UTF-8");
    BUILD_EXPECT(cr_int(&c, "\xc0\x80", 1), MG_E_MODEL_FORMAT, "UTF-8");
    BUILD_EXPECT({ tb_u32(&c.meta, 3); tb_put(&c.meta, "a\0b", 3);
                   tb_u32(&c.meta, 1); tb_u64(&c.meta, 0); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "UTF-8");
    /* duplicate keys */
    BUILD_EXPECT({ cr_int(&c, "k", 1); cr_int(&c, "j", 1); cr_string(&c, "k", "x"); },
                 MG_E_MODEL_FORMAT, "duplicate metadata key 'k'");
    /* unknown type */
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, 5); tb_u64(&c.meta, 0);
                   c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "unknown value type 5");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, 0); tb_u64(&c.meta, 0);
                   c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "unknown value type 0");
    /* value past the end */
    /* (the parse region ends at data_offset, so these end the metadata
     * exactly at a 64-byte boundary: zero padding would otherwise be read) */
    char k56[57], k52[53];
    memset(k56, 'k', 56);
    k56[56] = '\0';
    memset(k52, 'k', 52);
    k52[52] = '\0';
    BUILD_EXPECT({ tb_str(&c.meta, k56); tb_u32(&c.meta, MG_META_INT); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "8-byte value");
    /* huge string lengths */
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_STRING);
                   tb_u32(&c.meta, UINT32_MAX); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "exceeds the limit");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_STRING);
                   tb_u32(&c.meta, 1000); tb_zero(&c.meta, 10); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "runs past data_offset");
    BUILD_EXPECT(cr_string(&c, "k", "bad \xed\xa0\x80 surrogate"),
                 MG_E_MODEL_FORMAT, "not valid UTF-8");
    /* arrays: overflowing and oversized counts, bad element types */
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_INT); tb_u64(&c.meta, ((uint64_t)1 << 61) + 1);
                   tb_u64(&c.meta, 5); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "8-byte elements");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_FLOAT); tb_u64(&c.meta, UINT64_MAX);
                   c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "8-byte elements");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_INT); tb_u64(&c.meta, 6);
                   tb_u64(&c.meta, 5); tb_u64(&c.meta, 5); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "8-byte elements");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_STRING); tb_u64(&c.meta, (uint64_t)1 << 62);
                   c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "strings cannot fit");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_STRING); tb_u64(&c.meta, 2);
                   tb_str(&c.meta, "ok"); tb_u32(&c.meta, 40); tb_zero(&c.meta, 4);
                   c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "element 1");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_ARRAY); tb_u64(&c.meta, 0); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "element type 4");
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, 0); tb_u64(&c.meta, 0); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "element type 0");
    BUILD_EXPECT({ tb_str(&c.meta, k52); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_INT); c.n_meta = 1; },
                 MG_E_MODEL_FORMAT, "array header");
    /* a valid empty string array and a valid crafted file with a tensor */
    BUILD_EXPECT({ tb_str(&c.meta, "k"); tb_u32(&c.meta, MG_META_ARRAY);
                   tb_u32(&c.meta, MG_META_STRING); tb_u64(&c.meta, 0); c.n_meta = 1;
                   cr_tensor(&c, "t", MG_DTYPE_F32, 1, &d, g_four, 16); },
                 MG_OK, NULL);
#undef BUILD_EXPECT
}
END_TEST

START_TEST(test_hostile_tensors) {
    size_t n;
    uint8_t *f;
    craft c;
    uint8_t blob[256];
    fill_random(blob, sizeof blob, 1);
    uint32_t crc16 = mg__crc32c(0, g_four, 16);
#define BUILD_EXPECT(setup, flags, want, sub)                 \
    do {                                                      \
        cr_init(&c);                                          \
        setup;                                                \
        f = cr_build(&c, &n);                                 \
        EXPECT(f, n, flags, want, sub);                       \
        free(f);                                              \
        cr_free(&c);                                          \
    } while (0)
#define V MG_LOAD_VERIFY_CHECKSUMS
    uint64_t d4[5] = {4, 1, 1, 1, 1};
    /* name length */
    BUILD_EXPECT({ tb_u32(&c.table, 0); tb_zero(&c.table, 60); c.n_tensors = 1; },
                 V, MG_E_MODEL_FORMAT, "name length 0");
    BUILD_EXPECT({ tb_u32(&c.table, 1024); tb_zero(&c.table, 1100); c.n_tensors = 1; },
                 V, MG_E_MODEL_FORMAT, "name length 1024");
    BUILD_EXPECT({ tb_u32(&c.table, 100); tb_zero(&c.table, 50); c.n_tensors = 1; },
                 V, MG_E_MODEL_FORMAT, "name of 100 bytes");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "\x80", MG_DTYPE_F32, 1, d4, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "UTF-8");
    /* dtype, rank, dims */
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", 7, 1, d4, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "unknown dtype 7");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 0, d4, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "n_dims 0");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 5, d4, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "n_dims 5");
    uint64_t dz[2] = {4, 0};
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 2, dz, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "dims[1] is 0");
    uint64_t dbig[3] = {(uint64_t)1 << 32, (uint64_t)1 << 32, 2};
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 3, dbig, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "overflows");
    uint64_t dhuge[1] = {(uint64_t)1 << 62}; /* elements fine, bytes overflow */
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, dhuge, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "no valid byte size");
    /* size / dtype / shape mismatch */
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 0, crc16, 0, 12, 12); },
                 V, MG_E_MODEL_FORMAT, "does not match");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F16, 1, d4, 0, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "does not match");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 0, crc16, 0, 15, 16); },
                 V, MG_E_MODEL_FORMAT, "stored_size");
    /* q4_0 with dims[0] not a multiple of 32 (bytes would be whole blocks) */
    uint64_t dq[2] = {16, 2};
    BUILD_EXPECT({ cr_data(&c, blob, 18);
                   cr_entry(&c, "q", MG_DTYPE_Q4_0, 2, dq, 0,
                            mg__crc32c(0, blob, 18), 0, 18, 18); },
                 V, MG_E_MODEL_FORMAT, "multiple of the q4_0 block size");
    uint64_t dq8[1] = {64};
    BUILD_EXPECT(cr_tensor(&c, "q", MG_DTYPE_Q8_0, 1, dq8, blob, 68),
                 V, MG_OK, NULL);
    /* unknown flags */
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 2, crc16, 0, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "unknown flags");
    /* offsets: misaligned, past the end, overflowing, overlapping */
    BUILD_EXPECT({ cr_data(&c, blob, 64);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 0, crc16, 32, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "not a multiple of the alignment");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 0, crc16, 64, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "past the data section");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 0, crc16,
                            UINT64_MAX - 63, 16, 16); },
                 V, MG_E_MODEL_FORMAT, "past the data section");
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "a", MG_DTYPE_F32, 1, d4, 0, crc16, 0, 16, 16);
                   cr_entry(&c, "b", MG_DTYPE_F32, 1, d4, 0, crc16, 0, 16, 16); },
                 0, MG_E_MODEL_FORMAT, "overlap");
    uint64_t d32[1] = {32};
    BUILD_EXPECT({ cr_data(&c, blob, 192);
                   cr_entry(&c, "a", MG_DTYPE_F32, 1, d32, 0,
                            mg__crc32c(0, blob, 128), 0, 128, 128);
                   cr_entry(&c, "b", MG_DTYPE_F32, 1, d4, 0,
                            mg__crc32c(0, blob + 64, 16), 64, 16, 16); },
                 0, MG_E_MODEL_FORMAT, "overlap");
    /* duplicate names */
    BUILD_EXPECT({ cr_tensor(&c, "w", MG_DTYPE_F32, 1, d4, g_four, 16);
                   cr_tensor(&c, "v", MG_DTYPE_F32, 1, d4, g_four, 16);
                   cr_tensor(&c, "w", MG_DTYPE_F32, 1, d4, g_four, 16); },
                 0, MG_E_MODEL_FORMAT, "duplicate tensor name 'w'");
    /* tensors out of table order in the data section are fine */
    BUILD_EXPECT({ uint64_t o1 = cr_data(&c, blob, 16);
                   uint64_t o2 = cr_data(&c, g_four, 16);
                   cr_entry(&c, "second", MG_DTYPE_F32, 1, d4, 0, crc16, o2, 16, 16);
                   cr_entry(&c, "first", MG_DTYPE_F32, 1, d4, 0,
                            mg__crc32c(0, blob, 16), o1, 16, 16); },
                 V, MG_OK, NULL);
    /* CRC of an uncompressed tensor: checked only with verification */
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 0, crc16 ^ 1, 0, 16, 16); },
                 0, MG_OK, NULL);
    BUILD_EXPECT({ cr_data(&c, g_four, 16);
                   cr_entry(&c, "t", MG_DTYPE_F32, 1, d4, 0, crc16 ^ 1, 0, 16, 16); },
                 V, MG_E_CHECKSUM, "CRC-32C mismatch");
    /* non-zero bytes between tensors */
    BUILD_EXPECT({ cr_tensor(&c, "a", MG_DTYPE_F32, 1, d4, g_four, 16);
                   tb_put(&c.data, "\1", 1);
                   cr_tensor(&c, "b", MG_DTYPE_F32, 1, d4, g_four, 16); },
                 0, MG_OK, NULL);
    BUILD_EXPECT({ cr_tensor(&c, "a", MG_DTYPE_F32, 1, d4, g_four, 16);
                   tb_put(&c.data, "\1", 1);
                   cr_tensor(&c, "b", MG_DTYPE_F32, 1, d4, g_four, 16); },
                 V, MG_E_MODEL_FORMAT, "non-zero padding");
    BUILD_EXPECT({ cr_tensor(&c, "a", MG_DTYPE_F32, 1, d4, g_four, 16);
                   tb_put(&c.data, "\0\0\2", 3); },
                 V, MG_E_MODEL_FORMAT, "non-zero padding");
    BUILD_EXPECT({ cr_tensor(&c, "a", MG_DTYPE_F32, 1, d4, g_four, 16);
                   tb_put(&c.data, "\0\0\0", 3); },
                 V, MG_OK, NULL);
#undef V
#undef BUILD_EXPECT
}
END_TEST

/* Compresses src into a freshly malloc'd frame. */
static uint8_t *zframe(const void *src, size_t n, size_t *out, int content_size) {
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t bound = ZSTD_compressBound(n);
    uint8_t *dst = malloc(bound);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, content_size);
    size_t r = ZSTD_compress2(cc, dst, bound, src, n);
    ck_assert(!ZSTD_isError(r));
    ZSTD_freeCCtx(cc);
    *out = r;
    return dst;
}

START_TEST(test_hostile_zstd) {
    size_t n, fn;
    uint8_t *f;
    craft c;
    uint8_t raw[256];
    for (int i = 0; i < 256; i++) raw[i] = (uint8_t)(i % 5);
    uint32_t crc = mg__crc32c(0, raw, 256);
    uint64_t d64[1] = {64}, d32[1] = {32};
    uint8_t *z = zframe(raw, 256, &fn, 1);
    const uint32_t Z = MG__MGM_FLAG_ZSTD;
#define BUILD_EXPECT(setup, flags, want, sub)                 \
    do {                                                      \
        cr_init(&c);                                          \
        setup;                                                \
        f = cr_build(&c, &n);                                 \
        EXPECT(f, n, flags, want, sub);                       \
        free(f);                                              \
        cr_free(&c);                                          \
    } while (0)
    /* the valid case */
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z, fn);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc, o, fn, 256); },
                 MG_LOAD_VERIFY_CHECKSUMS, MG_OK, NULL);
    /* wrong CRC: always checked after decompression */
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z, fn);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc ^ 4, o, fn, 256); },
                 0, MG_E_CHECKSUM, "after decompression");
    /* frame holds 256 bytes, table says 128 */
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z, fn);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d32, Z, crc, o, fn, 128); },
                 0, MG_E_MODEL_FORMAT, "zstd frame holds 256");
    /* frame header lies about its content size */
    /* (a single-segment frame of < 256 bytes has a 1-byte content size
     * field right after the frame header descriptor) */
    size_t fn2;
    uint8_t *z2 = zframe(raw, 200, &fn2, 1);
    ck_assert_msg((z2[4] >> 6) == 0 && (z2[4] & 0x20) && (z2[4] & 3) == 0,
                  "unexpected zstd frame header 0x%02x", z2[4]);
    ck_assert_uint_eq(z2[5], 200);
    z2[5] = 128; /* claims 128 bytes, decodes 200 */
    uint64_t d_32[1] = {32};
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z2, fn2);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d_32, Z,
                            mg__crc32c(0, raw, 128), o, fn2, 128); },
                 0, MG_E_MODEL_FORMAT, "decompression failed");
    z2[5] = 240; /* claims 240 bytes, decodes 200 */
    uint64_t d_60[1] = {60};
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z2, fn2);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d_60, Z,
                            mg__crc32c(0, raw, 240), o, fn2, 240); },
                 0, MG_E_MODEL_FORMAT, "decompression failed");
    free(z2);
    /* content size not recorded */
    size_t fn3;
    uint8_t *z3 = zframe(raw, 256, &fn3, 0);
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z3, fn3);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc, o, fn3, 256); },
                 0, MG_E_MODEL_FORMAT, "content size");
    free(z3);
    /* garbage */
    uint8_t junk[40];
    fill_random(junk, sizeof junk, 8);
    BUILD_EXPECT({ uint64_t o = cr_data(&c, junk, 40);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc, o, 40, 256); },
                 0, MG_E_MODEL_FORMAT, "not a zstd frame");
    /* valid header, corrupt body */
    uint8_t *zc = malloc(fn);
    memcpy(zc, z, fn);
    for (size_t i = 9; i < fn; i++) zc[i] ^= 0x5a;
    cr_init(&c);
    {
        uint64_t o = cr_data(&c, zc, fn);
        cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc, o, fn, 256);
    }
    f = cr_build(&c, &n);
    char err[256];
    mg_status st = open_bytes(f, n, 0, 0, err, sizeof err);
    ck_assert_msg(st == MG_E_MODEL_FORMAT || st == MG_E_CHECKSUM, "%d %s", st, err);
    free(f);
    cr_free(&c);
    free(zc);
    /* a frame followed by more bytes (a second frame) */
    uint8_t *z2x = malloc(2 * fn);
    memcpy(z2x, z, fn);
    memcpy(z2x + fn, z, fn);
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z2x, 2 * fn);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc, o, 2 * fn, 256); },
                 0, MG_E_MODEL_FORMAT, "exactly one zstd frame");
    free(z2x);
    /* truncated frame */
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z, fn - 1);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc, o, fn - 1, 256); },
                 0, MG_E_MODEL_FORMAT, NULL);
    /* a tiny stored size cannot claim a huge output (no huge allocation) */
    uint64_t dh[1] = {(uint64_t)1 << 36};
    BUILD_EXPECT({ uint64_t o = cr_data(&c, z, fn);
                   cr_entry(&c, "z", MG_DTYPE_F32, 1, dh, Z, crc, o, fn,
                            (uint64_t)1 << 38); },
                 0, MG_E_MODEL_FORMAT, "cannot decompress to");
    /* max_memory is checked before any decompression */
    cr_init(&c);
    {
        uint64_t o = cr_data(&c, z, fn);
        cr_entry(&c, "z", MG_DTYPE_F32, 1, d64, Z, crc, o, fn, 256);
    }
    f = cr_build(&c, &n);
    ck_assert_int_eq(open_bytes(f, n, 0, 255, err, sizeof err), MG_E_LIMIT);
    ck_assert_int_eq(open_bytes(f, n, MG_LOAD_NO_MMAP, 256, err, sizeof err), MG_OK);
    free(f);
    cr_free(&c);
    free(z);
#undef BUILD_EXPECT
}
END_TEST

/* ---- writer misuse ------------------------------------------------------------ */

START_TEST(test_writer_misuse) {
    const char *path = tu_tmp_path("misuse.mgm");
    char err[256];
    mg_writer *w = (mg_writer *)(uintptr_t)1;
    uint64_t d[2] = {32, 2};
    float vals[64] = {0};
    /* NULL and bad handles */
    ck_assert_int_eq(mg_writer_set_int(NULL, "k", 1), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_float(NULL, "k", 1), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_string(NULL, "k", "v"), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_int_array(NULL, "k", NULL, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_float_array(NULL, "k", NULL, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_string_array(NULL, "k", NULL, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_add_tensor(NULL, "t", 0, 1, d, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_write_tensor(NULL, "t", vals, 4), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_write_tensor_f32(NULL, "t", vals, 1), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_finish(NULL), MG_E_MISUSE);
    ck_assert_ptr_nonnull(mg_writer_errmsg(NULL));
    mg_writer_free(NULL);
    uint64_t fake[64] = {0};
    ck_assert_int_eq(mg_writer_finish((mg_writer *)fake), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_int((mg_writer *)fake, "k", 1), MG_E_MISUSE);
    mg_writer_free((mg_writer *)fake);
    /* open */
    ck_assert_int_eq(mg_writer_open(NULL, path, 0, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_open(&w, NULL, 0, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(mg_writer_open(&w, "", 0, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_open(&w, path, 0x10, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_open(&w, "/nonexistent/dir/x.mgm", 0, err, sizeof err),
                     MG_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "cannot create"));
    ck_assert_ptr_null(w);

    ck_assert_int_eq(mg_writer_open(&w, path, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(access(path, F_OK), 0);
    /* metadata arguments */
    char key256[257];
    memset(key256, 'k', 256);
    key256[256] = '\0';
    ck_assert_int_eq(mg_writer_set_int(w, NULL, 1), MG_E_INVALID_ARG);
    ck_assert_str_ne(mg_writer_errmsg(w), "");
    ck_assert_int_eq(mg_writer_set_int(w, "", 1), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_set_int(w, key256, 1), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_set_int(w, "bad\xff", 1), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_set_int(w, "k", 1), MG_OK);
    ck_assert_str_eq(mg_writer_errmsg(w), "");
    ck_assert_int_eq(mg_writer_set_float(w, "k", 1), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_writer_errmsg(w), "already set"));
    ck_assert_int_eq(mg_writer_set_string(w, "s", NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_set_string(w, "s", "\xc3"), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_set_int_array(w, "a", NULL, 3), MG_E_INVALID_ARG);
    const char *sv[3] = {"x", NULL, "z"};
    ck_assert_int_eq(mg_writer_set_string_array(w, "sa", sv, 3), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_writer_errmsg(w), "element 1"));
    ck_assert_int_eq(mg_writer_set_string_array(w, "sa", sv, 1), MG_OK);
    ck_assert_int_eq(mg_writer_set_string_array(w, "sa", sv, 1), MG_E_INVALID_ARG);
    /* tensor declarations */
    ck_assert_int_eq(mg_writer_add_tensor(w, NULL, 0, 1, d, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", 9, 1, d, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", -1, 1, d, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", 0, 0, d, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", 0, 5, d, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", 0, 1, NULL, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", 0, 1, d, 0x8), MG_E_INVALID_ARG);
    uint64_t dz[2] = {32, 0}, dq[1] = {16}, dov[3] = {1ull << 40, 1ull << 40, 1ull << 40};
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", 0, 2, dz, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", MG_DTYPE_Q4_0, 1, dq, 0),
                     MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(mg_writer_errmsg(w), "multiple of 32"));
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", 0, 3, dov, 0), MG_E_INVALID_ARG);
    char name1024[1025];
    memset(name1024, 'n', 1024);
    name1024[1024] = '\0';
    ck_assert_int_eq(mg_writer_add_tensor(w, name1024, 0, 1, d, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", MG_DTYPE_F32, 2, d, 0), MG_OK);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", MG_DTYPE_F16, 1, d, 0),
                     MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_add_tensor(w, "u", MG_DTYPE_Q8_0, 2, d, 0), MG_OK);
    /* finishing with missing data */
    ck_assert_int_eq(mg_writer_finish(w), MG_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(mg_writer_errmsg(w), "'t'"));
    /* writes */
    ck_assert_int_eq(mg_writer_write_tensor(w, "nope", vals, 256), MG_E_NOT_FOUND);
    ck_assert_int_eq(mg_writer_write_tensor(w, NULL, vals, 256), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_write_tensor(w, "t", NULL, 256), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_write_tensor(w, "t", vals, 255), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_writer_write_tensor_f32(w, "u", vals, 63), MG_E_INVALID_ARG);
    /* still declaring: nothing was written yet */
    ck_assert_int_eq(mg_writer_set_int(w, "k2", 2), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor(w, "t", vals, 256), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor(w, "t", vals, 256), MG_E_MISUSE);
    /* frozen after the first write */
    ck_assert_int_eq(mg_writer_set_int(w, "k3", 3), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_string_array(w, "k4", sv, 1), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_add_tensor(w, "v", MG_DTYPE_F32, 1, d, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_finish(w), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_write_tensor_f32(w, "u", vals, 64), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_write_tensor(w, "t", vals, 256), MG_E_MISUSE);
    ck_assert_int_eq(mg_writer_set_int(w, "k5", 3), MG_E_MISUSE);
    mg_writer_free(w);
    mg__mgm *f = NULL;
    ck_assert_int_eq(mg__mgm_open(&f, path, MG_LOAD_VERIFY_CHECKSUMS, 0, err,
                                  sizeof err), MG_OK);
    ck_assert_uint_eq(f->n_meta, 3);
    ck_assert_uint_eq(f->n_tensors, 2);
    mg__mgm_close(f);

    /* an unfinished file is removed */
    ck_assert_int_eq(mg_writer_open(&w, path, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_writer_add_tensor(w, "t", MG_DTYPE_F32, 2, d, 0), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor(w, "t", vals, 256), MG_OK);
    mg_writer_free(w);
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

START_TEST(test_writer_layout) {
    /* The writer's own file follows the documented layout byte for byte. */
    const char *path = tu_tmp_path("layout.mgm");
    mg_writer *w = NULL;
    ck_assert_int_eq(mg_writer_open(&w, path, 0, NULL, 0), MG_OK);
    ck_assert_int_eq(mg_writer_set_int(w, "n", 5), MG_OK);
    uint64_t d[1] = {4};
    ck_assert_int_eq(mg_writer_add_tensor(w, "a", MG_DTYPE_F32, 1, d, 0), MG_OK);
    ck_assert_int_eq(mg_writer_add_tensor(w, "b", MG_DTYPE_F32, 1, d, 0), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor(w, "b", g_four, 16), MG_OK);
    ck_assert_int_eq(mg_writer_write_tensor(w, "a", g_four, 16), MG_OK);
    ck_assert_int_eq(mg_writer_finish(w), MG_OK);
    mg_writer_free(w);
    size_t n;
    uint8_t *f = tu_read_file(path, &n);
    craft c;
    cr_init(&c);
    cr_int(&c, "n", 5);
    uint64_t ob = cr_data(&c, g_four, 16), oa = cr_data(&c, g_four, 16);
    uint32_t crc = mg__crc32c(0, g_four, 16);
    cr_entry(&c, "a", MG_DTYPE_F32, 1, d, 0, crc, oa, 16, 16);
    cr_entry(&c, "b", MG_DTYPE_F32, 1, d, 0, crc, ob, 16, 16);
    size_t cn;
    uint8_t *cf = cr_build(&c, &cn);
    ck_assert_uint_eq(n, cn);
    ck_assert_mem_eq(f, cf, n);
    ck_assert_uint_eq(get64(f + 40), 192); /* 64 + 17 + 2 * 53 = 187 -> 192 */
    free(cf);
    free(f);
    cr_free(&c);
    unlink(path);
}
END_TEST

static Suite *container_suite(void) {
    Suite *s = suite_create("container");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_crc32c_known_answer);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_write_f32_converts);
    tcase_add_test(tc, test_big_string_arrays);
    tcase_add_test(tc, test_compression);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_empty_file_roundtrip);
    tcase_add_test(tc, test_writer_misuse);
    tcase_add_test(tc, test_writer_layout);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("hostile");
    tcase_set_timeout(th, 600);
    tcase_add_test(th, test_truncation_every_length);
    tcase_add_test(th, test_bitflip_every_byte);
    tcase_add_test(th, test_hostile_header);
    tcase_add_test(th, test_hostile_metadata);
    tcase_add_test(th, test_hostile_tensors);
    tcase_add_test(th, test_hostile_zstd);
    suite_add_tcase(s, th);
    return s;
}

int main(void) { return tu_run_suite(container_suite()); }
