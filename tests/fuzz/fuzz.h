/* fuzz.h - shared pieces of the fuzz harnesses (tests/fuzz/fuzz_*.c).
 *
 * Each harness defines LLVMFuzzerTestOneInput and feeds one input to one
 * reader of the public API. `make fuzz` links them with libFuzzer (clang);
 * `make fuzz-replay` links them with replay.c and runs the committed
 * corpora and crash reproducers under ASan+UBSan. A harness must return 0
 * and leave nothing allocated whatever the input: the sanitizers and the
 * leak checker report the rest. */
#ifndef MG_FUZZ_H
#define MG_FUZZ_H

#include "medgemini.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A scratch path of this process ending in `suffix` ("" allowed), in
 * $TMPDIR or /tmp; the same path on every call with the same suffix. The
 * files are removed at exit. */
static char fz_buf[8][512];
static int fz_n;
static void fz_cleanup(void) {
    for (int i = 0; i < fz_n; i++) unlink(fz_buf[i]);
}
static inline const char *fz_path(const char *suffix) {
    static char sfx[8][32];
    char (*buf)[512] = fz_buf;
    int n = fz_n;
    for (int i = 0; i < n; i++)
        if (!strcmp(sfx[i], suffix)) return buf[i];
    if (n == 8) return NULL;
    if (n == 0) atexit(fz_cleanup);
    const char *dir = getenv("TMPDIR");
    snprintf(buf[n], sizeof buf[n], "%s/mg-fuzz-%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(),
             suffix);
    snprintf(sfx[n], sizeof sfx[n], "%s", suffix);
    return buf[fz_n++];
}

/* Writes size bytes to fz_path(suffix); returns the path or NULL. */
static inline const char *fz_write(const char *suffix, const void *data, size_t size) {
    const char *p = fz_path(suffix);
    if (!p) return NULL;
    FILE *f = fopen(p, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return p;
}

/* Volume limits small enough for a fuzzer. */
static inline mg_volume_params fz_volume_params(void) {
    mg_volume_params vp = MG_VOLUME_PARAMS_INIT;
    vp.max_voxels = 1u << 20;
    vp.max_memory = 64u << 20;
    return vp;
}

/* Reads a loaded volume's info, renders the slices a model would read (at
 * most 4) and frees it all. */
static inline void fz_volume_use(mg_volume *vol) {
    mg_volume_info vi = {.struct_size = sizeof vi};
    mg_volume_info_get(&vi, vol);
    mg_slice_params sp = MG_SLICE_PARAMS_INIT;
    sp.max_slices = 4;
    mg_image *sl[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;
    char err[256];
    if (mg_volume_slices(sl, 4, &n, NULL, vol, &sp, err, sizeof err) == MG_OK)
        for (size_t i = 0; i < n && i < 4; i++) mg_image_free(sl[i]);
    mg_volume_free(vol);
}

/* Splits the input at the first n-1 occurrences of the line "\n%%\n" into n
 * parts (missing parts are empty). */
static inline void fz_split(const uint8_t *data, size_t size, int n, const uint8_t **part,
                            size_t *len) {
    static const char sep[] = "\n%%\n";
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        part[i] = data + at;
        len[i] = size - at;
        if (i == n - 1) break;
        for (size_t k = at; k + 4 <= size; k++)
            if (!memcmp(data + k, sep, 4)) {
                len[i] = k - at;
                at = k + 4;
                goto next;
            }
        for (int j = i + 1; j < n; j++) part[j] = data + size, len[j] = 0;
        return;
    next:;
    }
}

#endif
