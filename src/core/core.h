/* core.h - internal helpers shared by every module: errors, allocation,
 * overflow-checked arithmetic, handle tags, CPU features. Not installed. */
#ifndef MG_CORE_H
#define MG_CORE_H

#ifndef MG_BUILDING_LIBRARY
#define MG_BUILDING_LIBRARY 1
#endif
#include "medgemini.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define MG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MG_LIKELY(x) __builtin_expect(!!(x), 1)
#define MG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define MG_PRINTF(a, b)
#define MG_LIKELY(x) (x)
#define MG_UNLIKELY(x) (x)
#endif

/* ---- error buffers ----------------------------------------------------- */

/* Formats a message into buf (if buf && n) and returns status unchanged,
 * so callers can write `return mg__err(err, errlen, MG_E_IO, "...", ...)`. */
mg_status mg__err(char *buf, size_t n, mg_status status, const char *fmt, ...)
    MG_PRINTF(4, 5);
mg_status mg__verr(char *buf, size_t n, mg_status status, const char *fmt,
                   va_list ap);

/* Options structs (mg_*_params) from a newer header are longer than ours;
 * fields added later start at the older sizeof (docs/ABI.md). Those extra
 * fields must be left at zero (a new field's zero means its default), else
 * the call is refused with MG_E_UNSUPPORTED rather than run without what
 * the caller asked for. Returns the offset of the first non-zero byte in
 * [known, n) (known = our sizeof), or 0 when there is none. */
size_t mg__opts_newer_byte(const void *src, size_t n, size_t known);
/* Copies an options struct from the caller over defaults, honouring the
 * caller's struct_size. Returns MG_E_INVALID_ARG when struct_size is smaller
 * than the struct_size field itself or absurdly large (> 64 KiB), and
 * MG_E_UNSUPPORTED when a longer (newer) struct has non-zero bytes past
 * ours. */
mg_status mg__params_copy(void *dst, size_t dst_size, const void *src);
/* Sets the calling thread's mg_last_error() message and returns status;
 * mg__last_clear empties it (at the start of such a call). */
mg_status mg__last_err(mg_status status, const char *fmt, ...) MG_PRINTF(2, 3);
void mg__last_clear(void);

/* ---- overflow-checked arithmetic --------------------------------------- */
/* Each returns 0 on success, 1 on overflow (and then leaves *out undefined). */
static inline int mg__add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
static inline int mg__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int mg__mul_size(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline uint64_t mg__align_up(uint64_t x, uint64_t a) { /* a = 2^k */
    return (x + (a - 1)) & ~(a - 1);
}

/* ---- allocation -------------------------------------------------------- */
/* Every allocation goes through these so that a failure is one code path. */
void *mg__malloc(size_t n);
void *mg__calloc(size_t count, size_t size);
void *mg__realloc(void *p, size_t n);
void mg__free(void *p);
char *mg__strdup(const char *s);
char *mg__strndup(const char *s, size_t n);
/* Aligned to `align` (a power of two >= sizeof(void*)); release with
 * mg__aligned_free. Returns NULL for n == 0 or on failure. */
void *mg__aligned_alloc(size_t align, size_t n);
#ifdef MG_FAULT_INJECTION
/* Test builds: fail the at-th allocation from now (once; 0 = none), how
 * many allocations were asked for since, and whether the failure struck. */
void mg__fault_set(long at);
long mg__fault_count(void);
int mg__fault_hit(void);
#endif
void mg__aligned_free(void *p);

/* ---- handle tags --------------------------------------------------------- */
/* First field of every public object. Checked by the api/ layer. */
#define MG__TAG_MODEL   0x4d474d4fu /* "MGMO" */
#define MG__TAG_CONTEXT 0x4d474358u /* "MGCX" */
#define MG__TAG_IMAGE   0x4d47494du /* "MGIM" */
#define MG__TAG_WRITER  0x4d475752u /* "MGWR" */
#define MG__TAG_PRS     0x4d475052u /* "MGPR" */
#define MG__TAG_VOLUME  0x4d47564fu /* "MGVO" */
#define MG__TAG_BATCH   0x4d474254u /* "MGBT" */
#define MG__TAG_STUDIES 0x4d475354u /* "MGST" */
#define MG__TAG_DEAD    0xdeadbeefu

/* Removes what a failed write left at path, if it is a regular file: never a
 * device, FIFO, socket or directory the caller was given as the output
 * (`-o /dev/full`), nor what a symbolic link points to. */
void mg__remove_partial(const char *path);

/* A number no earlier call in this process returned (never 0): an image's
 * or volume's identity, by which a context recognises an input it has
 * already encoded (handles are immutable once made). */
uint64_t mg__serial_next(void);

/* ---- CPU features ------------------------------------------------------ */
/* The SIMD kernels built in. The _avx2.c files on x86-64; the _avx512.c and
 * _vbmi.c files there unless the compiler lacks those instruction sets
 * (the Makefile then defines MG_NO_AVX512), the _amx.c file likewise
 * (MG_NO_AMX). Every other target runs the scalar kernels: dispatch code
 * names an ISA-specific function only under these macros. */
#if defined(__x86_64__)
#define MG_X86_AVX2 1
#if !defined(MG_NO_AVX512)
#define MG_X86_AVX512 1
#if !defined(MG_NO_AMX)
#define MG_X86_AMX 1
#endif
#endif
#endif

/* Best SIMD level both the CPU (and OS: XGETBV-checked) and this build
 * support, ignoring MG_SIMD: always MG_SIMD_SCALAR off x86-64. */
int32_t mg__cpu_simd_level(void);
/* Whether AMX tile data has been enabled for this process (arch_prctl);
 * tries once. Only for the kernels' AMX paths; 0 where they are not built. */
int mg__cpu_amx_enable(void);
/* Whether the CPU and OS offer AMX (as mg__cpu_amx_enable would use it),
 * without asking for the permission: for planning and reports. */
int mg__cpu_amx_present(void);

/* ---- CRC-32C (Castagnoli), as used by the .mgm container ---------------- */
uint32_t mg__crc32c(uint32_t crc, const void *data, size_t n);

/* ---- UTF-8 ------------------------------------------------------------- */
/* 1 if [s, s+n) is valid UTF-8 with no NUL byte. */
int mg__utf8_valid(const char *s, size_t n);

#endif /* MG_CORE_H */
