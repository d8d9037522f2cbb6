/* testutil.h - helpers shared by the Check suites. */
#ifndef MG_TESTUTIL_H
#define MG_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A scratch path "$MG_TEST_TMP/<name>" (directory created on demand);
 * returns a static buffer rotated over 8 slots. */
const char *tu_tmp_path(const char *name);
/* The shared data tree (env MG_SHARED_DATA, else ../shared/data relative to
 * the repository root), or NULL when absent. */
const char *tu_shared_data(void);
/* "<shared>/<rel>" when it exists, else NULL (static buffer). */
const char *tu_shared_file(const char *rel);
/* Reads a whole file; caller frees. NULL on error. */
unsigned char *tu_read_file(const char *path, size_t *size);
int tu_write_file(const char *path, const void *data, size_t size);
/* Deterministic PRNG (xorshift64*). */
uint64_t tu_rand_u64(uint64_t *state);
float tu_rand_f32(uint64_t *state);      /* uniform in [-1, 1) */
/* 1 when running under valgrind (env MG_VALGRIND=1) or another slow runner
 * such as qemu-user (MG_EMULATED=1): suites shrink loops. */
int tu_under_valgrind(void);
/* A model written by `$MG_CLI mkmodel ARGS -o $MG_TEST_TMP/<name>` (fails
 * the test when that fails); returns a static buffer rotated over 8 slots. */
const char *tu_make_model(const char *name, const char *args);
/* 1 when path exists. */
int tu_exists(const char *path);
/* Runs `/usr/bin/python3 <repository>/tests/<script> <formatted args>` with
 * its stdout discarded; 1 when it exits 0. */
int tu_python(const char *script, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A DICOM Part 10 file (preamble, meta group, Explicit VR Little Endian)
 * of string elements, written in the order given (give them sorted by
 * tag); the meta group takes SOP Class/Instance from (0008,0016/0018).
 * Fails the test when it cannot be written. */
typedef struct tu_dcm { uint16_t g, e; const char *vr, *v; } tu_dcm;
void tu_write_dicom(const char *path, const tu_dcm *els, size_t n);
/* Runs a suite with CK_NORMAL output and returns the process exit status. */
int tu_run_suite(Suite *s);

#endif
