/* check_core.c - core helpers: UTF-8 validation, error buffers, aligned
 * allocation, overflow-checked arithmetic, CPU detection. (CRC-32C is tested
 * with the container that uses it.) */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "medgemini.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "testutil.h"

START_TEST(test_utf8) {
    static const struct { const char *s; size_t n; int ok; } cases[] = {
        {"", 0, 1},
        {"plain ascii", 11, 1},
        {"\xc3\xa9", 2, 1},                  /* U+00E9 */
        {"\xe2\x96\x81", 3, 1},              /* U+2581, the word marker */
        {"\xf0\x9f\xa9\xbb", 4, 1},          /* U+1FA7B */
        {"\xf4\x8f\xbf\xbf", 4, 1},          /* U+10FFFF, the last */
        {"\xef\xbf\xbd", 3, 1},              /* U+FFFD */
        {"a\0b", 3, 0},                      /* embedded NUL */
        {"\x80", 1, 0},                      /* lone continuation */
        {"\xc3", 1, 0},                      /* truncated */
        {"\xe2\x96", 2, 0},                  /* truncated */
        {"\xc0\xaf", 2, 0},                  /* overlong '/' */
        {"\xe0\x80\xaf", 3, 0},              /* overlong */
        {"\xf0\x80\x80\xaf", 4, 0},          /* overlong */
        {"\xed\xa0\x80", 3, 0},              /* surrogate U+D800 */
        {"\xed\xbf\xbf", 3, 0},              /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 4, 0},          /* U+110000 */
        {"\xf8\x88\x80\x80\x80", 5, 0},      /* 5-byte form */
        {"\xff", 1, 0},
        {"\xc3\x28", 2, 0},                  /* bad continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(mg__utf8_valid(cases[i].s, cases[i].n) == cases[i].ok, "case %zu", i);
    /* Exhaustive over 2-byte sequences against the definition. */
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++) {
            char s[2] = {(char)a, (char)b};
            int want;
            if (a < 0x80) want = a != 0 && (b < 0x80 && b != 0);
            else want = a >= 0xc2 && a <= 0xdf && (b & 0xc0) == 0x80;
            ck_assert_msg(mg__utf8_valid(s, 2) == want, "%02x %02x", a, b);
        }
}
END_TEST

START_TEST(test_err_buffer) {
    char buf[16];
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(mg__err(buf, sizeof buf, MG_E_IO, "value %d of %s", 42, "something long"),
                     MG_E_IO);
    ck_assert_uint_eq(strlen(buf), sizeof buf - 1);
    ck_assert_str_eq(buf, "value 42 of som");
    ck_assert_int_eq(mg__err(NULL, 0, MG_E_NOMEM, "x"), MG_E_NOMEM);
    char one[1] = {'z'};
    mg__err(one, 1, MG_E_IO, "abc");
    ck_assert_int_eq(one[0], '\0');
}
END_TEST

START_TEST(test_alloc) {
    size_t aligns[] = {8, 16, 64, 4096, 1 << 20};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        unsigned char *p = mg__aligned_alloc(aligns[i], 100);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % aligns[i], 0);
        memset(p, 1, 100);
        mg__aligned_free(p);
    }
    ck_assert_ptr_null(mg__aligned_alloc(64, 0));
    ck_assert_ptr_null(mg__aligned_alloc(48, 16));  /* not a power of two */
    ck_assert_ptr_null(mg__aligned_alloc(2, 16));   /* below sizeof(void*) */
    ck_assert_ptr_null(mg__aligned_alloc(64, SIZE_MAX - 8));
    ck_assert_ptr_null(mg__malloc(0));
    ck_assert_ptr_null(mg__calloc(0, 8));
    ck_assert_ptr_null(mg__calloc(SIZE_MAX / 2, 4));  /* product overflows */
    ck_assert_ptr_null(mg__malloc((size_t)PTRDIFF_MAX + 1));
    ck_assert_ptr_null(mg__realloc(NULL, SIZE_MAX));
    char *d = mg__strndup("abcdef", 3);
    ck_assert_str_eq(d, "abc");
    mg__free(d);
    ck_assert_ptr_null(mg__strdup(NULL));
    mg__aligned_free(NULL);
    mg__free(NULL);
}
END_TEST

START_TEST(test_overflow) {
    uint64_t r;
    ck_assert_int_eq(mg__add_u64(UINT64_MAX - 1, 1, &r), 0);
    ck_assert_uint_eq(r, UINT64_MAX);
    ck_assert_int_ne(mg__add_u64(UINT64_MAX, 1, &r), 0);
    ck_assert_int_eq(mg__mul_u64(1ull << 32, (1ull << 32) - 1, &r), 0);
    ck_assert_int_ne(mg__mul_u64(1ull << 32, 1ull << 32, &r), 0);
    size_t z;
    ck_assert_int_ne(mg__mul_size(SIZE_MAX / 3 + 1, 3, &z), 0);
    ck_assert_uint_eq(mg__align_up(0, 64), 0);
    ck_assert_uint_eq(mg__align_up(1, 64), 64);
    ck_assert_uint_eq(mg__align_up(64, 64), 64);
    ck_assert_uint_eq(mg__align_up(65, 32), 96);
}
END_TEST


/* What a failed write leaves is removed only if it is a regular file: an
 * output given as a FIFO or a device stays (`-o /dev/full` once deleted the
 * machine's /dev/full). With root, a private full device (major 1, minor 7)
 * as a model writer's output: the write fails, the node stays. */
START_TEST(test_remove_partial) {
    char reg[4096], fifo[4096], dev[4096];
    snprintf(reg, sizeof reg, "%s", tu_tmp_path("partial.bin"));
    snprintf(fifo, sizeof fifo, "%s", tu_tmp_path("partial.fifo"));
    snprintf(dev, sizeof dev, "%s", tu_tmp_path("partial.full"));
    ck_assert_int_eq(tu_write_file(reg, "x", 1), 0);
    unlink(fifo);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    mg__remove_partial(reg);
    mg__remove_partial(fifo);
    mg__remove_partial(NULL);
    struct stat st;
    ck_assert_int_ne(lstat(reg, &st), 0);
    ck_assert_int_eq(lstat(fifo, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    unlink(fifo);
    unlink(dev);
    if (mknod(dev, S_IFCHR | 0600, makedev(1, 7)) != 0) return; /* not root: done */
    mg_writer *w = NULL;
    char err[256];
    ck_assert_int_eq(mg_writer_open(&w, dev, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_writer_set_int(w, "a.b", 1), MG_OK);
    ck_assert_int_ne(mg_writer_finish(w), MG_OK); /* ENOSPC */
    mg_writer_free(w);
    ck_assert_int_eq(lstat(dev, &st), 0);
    ck_assert(S_ISCHR(st.st_mode));
    unlink(dev);
}
END_TEST

START_TEST(test_cpu) {
    int32_t cpu = mg__cpu_simd_level();
    ck_assert(cpu >= MG_SIMD_SCALAR && cpu <= MG_SIMD_AVX512);
    /* The chosen level never exceeds what the CPU and OS support, and is
     * stable. */
    ck_assert_int_le(mg_simd_level(), cpu);
    ck_assert_int_eq(mg_simd_level(), mg_simd_level());
    ck_assert_int_eq(mg__cpu_simd_level(), cpu);
    /* Enabling AMX is idempotent and never faults. */
    int amx = mg__cpu_amx_enable();
    ck_assert_int_eq(mg__cpu_amx_enable(), amx);
    /* MG_SIMD caps the level (make check-simd runs suites under it). */
    const char *env = getenv("MG_SIMD");
    if (env && !strcmp(env, "scalar")) ck_assert_int_eq(mg_simd_level(), MG_SIMD_SCALAR);
    if (env && !strcmp(env, "avx2")) ck_assert_int_le(mg_simd_level(), MG_SIMD_AVX2);
#if !defined(__x86_64__)
    /* Only the scalar kernels elsewhere. */
    ck_assert_int_eq(cpu, MG_SIMD_SCALAR);
    ck_assert_int_eq(amx, 0);
#endif
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_err_buffer);
    tcase_add_test(tc, test_alloc);
    tcase_add_test(tc, test_overflow);
    tcase_add_test(tc, test_cpu);
    tcase_add_test(tc, test_remove_partial);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
