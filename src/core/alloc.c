/* alloc.c - the library's allocation entry points; removing what a failed write left. */
#include "core/core.h"

#include <sys/stat.h>
#include <unistd.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* No object may exceed PTRDIFF_MAX bytes (pointer differences must stay
 * defined); such requests fail here instead of reaching the allocator. */
#define MG__MAX_ALLOC ((size_t)PTRDIFF_MAX)

#ifdef MG_FAULT_INJECTION
/* Test builds only (make check-faults): the at-th allocation after
 * mg__fault_set(at) fails, once; at = 0 never. Every allocation of the
 * library passes through the functions below, so a test can fail each one
 * in turn. */
static _Atomic long g_fault_at, g_fault_n;
static _Atomic int g_fault_hit;

void mg__fault_set(long at) {
    atomic_store(&g_fault_at, 0);
    atomic_store(&g_fault_n, 0);
    atomic_store(&g_fault_hit, 0);
    atomic_store(&g_fault_at, at);
}
long mg__fault_count(void) { return atomic_load(&g_fault_n); }
int mg__fault_hit(void) { return atomic_load(&g_fault_hit); }

static int fault(void) {
    long n = atomic_fetch_add(&g_fault_n, 1) + 1, at = atomic_load(&g_fault_at);
    if (!at || n != at) return 0;
    atomic_store(&g_fault_hit, 1);
    return 1;
}
#else
#define fault() 0
#endif

void *mg__malloc(size_t n) {
    return (n && n <= MG__MAX_ALLOC && !fault()) ? malloc(n) : NULL;
}
void *mg__calloc(size_t count, size_t size) {
    size_t n;
    if (!count || !size || mg__mul_size(count, size, &n) || n > MG__MAX_ALLOC || fault())
        return NULL;
    return calloc(count, size);
}
void *mg__realloc(void *p, size_t n) {
    return (n <= MG__MAX_ALLOC && !fault()) ? realloc(p, n ? n : 1) : NULL;
}
void mg__free(void *p) { free(p); }

char *mg__strndup(const char *s, size_t n) {
    char *d = mg__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *mg__strdup(const char *s) { return s ? mg__strndup(s, strlen(s)) : NULL; }

void *mg__aligned_alloc(size_t align, size_t n) {
    void *p = NULL;
    if (n == 0 || n > MG__MAX_ALLOC || align < sizeof(void *) || (align & (align - 1)) ||
        fault())
        return NULL;
    if (posix_memalign(&p, align, n) != 0) return NULL;
    return p;
}

void mg__aligned_free(void *p) { free(p); }

MG_API void mg_string_free(char *s) { free(s); }

uint64_t mg__serial_next(void) {
    static _Atomic uint64_t next = 1;
    return atomic_fetch_add(&next, 1);
}

void mg__remove_partial(const char *path) {
    struct stat st;
    if (path && lstat(path, &st) == 0 && S_ISREG(st.st_mode)) unlink(path);
}
