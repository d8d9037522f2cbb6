/* alloc.c - the library's allocation entry points. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

void *mg__malloc(size_t n) { return n ? malloc(n) : NULL; }
void *mg__calloc(size_t count, size_t size) {
    return (count && size) ? calloc(count, size) : NULL;
}
void *mg__realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void mg__free(void *p) { free(p); }

char *mg__strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *mg__strdup(const char *s) { return s ? mg__strndup(s, strlen(s)) : NULL; }

void *mg__aligned_alloc(size_t align, size_t n) {
    void *p = NULL;
    if (n == 0 || align < sizeof(void *) || (align & (align - 1))) return NULL;
    if (posix_memalign(&p, align, n) != 0) return NULL;
    return p;
}

void mg__aligned_free(void *p) { free(p); }

MG_API void mg_string_free(char *s) { free(s); }
