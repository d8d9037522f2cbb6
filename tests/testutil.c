/* testutil.c - helpers shared by the Check suites. */
#include "testutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_tmp_path(const char *name) {
    static char bufs[8][4096];
    static unsigned slot;
    const char *dir = getenv("MG_TEST_TMP");
    if (!dir || !*dir) dir = "lib/tmp";
    mkdir(dir, 0777);
    char *b = bufs[slot++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%ld_%s", dir, (long)getpid(), name);
    return b;
}

const char *tu_shared_data(void) {
    static char buf[4096];
    const char *env = getenv("MG_SHARED_DATA");
    struct stat st;
    if (env && *env && stat(env, &st) == 0) return env;
    const char *cands[] = {"../shared/data", "../../shared/data"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (stat(cands[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(buf, sizeof buf, "%s", cands[i]);
            return buf;
        }
    }
    return NULL;
}

const char *tu_shared_file(const char *rel) {
    static char buf[4096];
    const char *root = tu_shared_data();
    struct stat st;
    if (!root) return NULL;
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    return stat(buf, &st) == 0 ? buf : NULL;
}

unsigned char *tu_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0) { fclose(f); return NULL; }
    rewind(f);
    unsigned char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (p && size) *size = (size_t)n;
    return p;
}

int tu_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, size, f);
    int rc = fclose(f);
    return (w == size && rc == 0) ? 0 : -1;
}

uint64_t tu_rand_u64(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

float tu_rand_f32(uint64_t *s) {
    return (float)((tu_rand_u64(s) >> 40) * (1.0 / 8388608.0) - 1.0);
}

int tu_under_valgrind(void) {
    const char *v = getenv("MG_VALGRIND"), *e = getenv("MG_EMULATED");
    return (v && *v == '1') || (e && *e == '1');
}

const char *tu_make_model(const char *name, const char *args) {
    const char *cli = getenv("MG_CLI");
    ck_assert_msg(cli && *cli, "MG_CLI must name the medgemini tool");
    static char path[8][4096];
    static unsigned slot;
    char *p = path[slot++ % 8];
    snprintf(p, sizeof path[0], "%s", tu_tmp_path(name));
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s mkmodel %s -o %s 2>/dev/null", cli, args, p);
    ck_assert_msg(system(cmd) == 0, "mkmodel failed: %s", cmd);
    return p;
}

int tu_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int tu_python(const char *script, const char *fmt, ...) {
    char args[6144], cmd[8192], cwd[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof args);
    ck_assert(getcwd(cwd, sizeof cwd) != NULL);
    n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/%s' %s >/dev/null", cwd, script,
                 args);
    ck_assert(n > 0 && (size_t)n < sizeof cmd);
    return system(cmd) == 0;
}

typedef struct tu_buf { unsigned char *p; size_t n, cap; } tu_buf;

static void tu_put(tu_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void tu_put16(tu_buf *b, unsigned v) {
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    tu_put(b, x, 2);
}
static void tu_el(tu_buf *b, unsigned g, unsigned e, const char *vr, const char *v) {
    size_t n = strlen(v), pad = n & 1;
    tu_put16(b, g);
    tu_put16(b, e);
    tu_put(b, vr, 2);
    tu_put16(b, (unsigned)(n + pad));
    tu_put(b, v, n);
    if (pad) tu_put(b, strcmp(vr, "UI") ? " " : "", 1);
}

void tu_write_dicom(const char *path, const tu_dcm *els, size_t n) {
    tu_buf b = {0}, m = {0};
    const char *cls = "1.2.840.10008.5.1.4.1.1.7", *sop = "1.2.3";
    for (size_t i = 0; i < n; i++) {
        if (els[i].g == 0x0008 && els[i].e == 0x0016) cls = els[i].v;
        if (els[i].g == 0x0008 && els[i].e == 0x0018) sop = els[i].v;
    }
    unsigned char pre[128] = {0};
    tu_put(&b, pre, sizeof pre);
    tu_put(&b, "DICM", 4);
    tu_el(&m, 0x0002, 0x0002, "UI", cls);
    tu_el(&m, 0x0002, 0x0003, "UI", sop);
    tu_el(&m, 0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1");
    tu_put16(&b, 0x0002);
    tu_put16(&b, 0x0000);
    tu_put(&b, "UL", 2);
    tu_put16(&b, 4);
    unsigned char len[4] = {(unsigned char)m.n, (unsigned char)(m.n >> 8), (unsigned char)(m.n >> 16),
                            (unsigned char)(m.n >> 24)};
    tu_put(&b, len, 4);
    tu_put(&b, m.p, m.n);
    for (size_t i = 0; i < n; i++) tu_el(&b, els[i].g, els[i].e, els[i].vr, els[i].v);
    ck_assert_int_eq(tu_write_file(path, b.p, b.n), 0);
    free(b.p);
    free(m.p);
}

int tu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
