/* error.c - status strings and error-buffer formatting. */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

mg_status mg__verr(char *buf, size_t n, mg_status status, const char *fmt,
                   va_list ap) {
    if (buf && n) {
        int w = vsnprintf(buf, n, fmt, ap);
        if (w < 0) buf[0] = '\0';
    }
    return status;
}

mg_status mg__err(char *buf, size_t n, mg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mg__verr(buf, n, status, fmt, ap);
    va_end(ap);
    return status;
}

/* The calling thread's message of its last failed call that has neither an
 * error buffer nor a handle to hold one (mg_context_new, mg_batch_new). */
static _Thread_local char tl_last[512];

mg_status mg__last_err(mg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mg__verr(tl_last, sizeof tl_last, status, fmt, ap);
    va_end(ap);
    return status;
}

void mg__last_clear(void) { tl_last[0] = '\0'; }

MG_API const char *mg_last_error(void) { return tl_last; }

MG_API const char *mg_status_str(mg_status status) {
    switch (status) {
    case MG_OK: return "success";
    case MG_E_INVALID_ARG: return "invalid argument";
    case MG_E_MISUSE: return "library misuse (bad, freed or busy handle)";
    case MG_E_NOMEM: return "out of memory";
    case MG_E_IO: return "input/output error";
    case MG_E_MODEL_FORMAT: return "malformed model file";
    case MG_E_CHECKSUM: return "checksum mismatch";
    case MG_E_UNSUPPORTED: return "not supported";
    case MG_E_IMAGE_FORMAT: return "malformed image";
    case MG_E_LIMIT: return "input exceeds a configured limit";
    case MG_E_INTERRUPTED: return "interrupted";
    case MG_E_CONTEXT_FULL: return "context is full";
    case MG_E_BUFFER_TOO_SMALL: return "buffer too small";
    case MG_E_NOT_FOUND: return "not found";
    case MG_E_TYPE: return "type mismatch";
    case MG_E_INTERNAL: return "internal error";
    case MG_E_DATA_FORMAT: return "malformed genotype or scoring file";
    default: return "unknown status";
    }
}

size_t mg__opts_newer_byte(const void *src, size_t n, size_t known) {
    const unsigned char *b = src;
    for (size_t i = known; i < n; i++)
        if (b[i]) return i;
    return 0;
}

mg_status mg__params_copy(void *dst, size_t dst_size, const void *src) {
    uint32_t n;
    if (!src) return MG_OK;
    memcpy(&n, src, sizeof n);
    if (n < sizeof(uint32_t) || n > 65536) return MG_E_INVALID_ARG;
    /* Fields past the caller's struct keep their defaults; fields the caller
     * has beyond ours (a newer header) must be zero (their defaults). */
    if (n > dst_size && mg__opts_newer_byte(src, n, dst_size)) return MG_E_UNSUPPORTED;
    memcpy((char *)dst + sizeof(uint32_t), (const char *)src + sizeof(uint32_t),
           (n < dst_size ? n : dst_size) - sizeof(uint32_t));
    memcpy(dst, &dst_size, sizeof(uint32_t));
    return MG_OK;
}
