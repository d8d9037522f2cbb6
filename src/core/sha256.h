/* sha256.h - SHA-256 (FIPS 180-4), streaming. Internal. */
#ifndef MG_SHA256_H
#define MG_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct mg__sha256 {
    uint32_t h[8];
    uint64_t n;      /* bytes hashed */
    uint8_t buf[64];
    size_t fill;
} mg__sha256;

void mg__sha256_init(mg__sha256 *s);
void mg__sha256_update(mg__sha256 *s, const void *data, size_t n);
void mg__sha256_final(mg__sha256 *s, uint8_t out[32]);
/* 64 lowercase hex digits and a NUL. */
void mg__sha256_hex(const uint8_t digest[32], char out[65]);

#endif
