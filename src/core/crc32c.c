/* crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of .mgm tensors. Slicing-by-8 tables in portable C, and the
 * CPU's CRC-32C instructions where it reports them: SSE4.2 crc32 on x86-64
 * (CPUID), the ARMv8 CRC32 extension's crc32c* on aarch64 (AT_HWCAP). */
#include "core/core.h"

#include <pthread.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#endif

static uint32_t g_tab[8][256];
static int g_hw;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        g_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            g_tab[t][i] = (g_tab[t - 1][i] >> 8) ^ g_tab[0][g_tab[t - 1][i] & 0xff];
#if defined(__x86_64__)
    unsigned a, b, c, d;
    g_hw = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 20) & 1);
#elif defined(__aarch64__) && defined(HWCAP_CRC32)
    g_hw = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#endif
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { crc = (crc >> 8) ^ g_tab[0][(crc ^ *p++) & 0xff]; n--; }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = g_tab[7][v & 0xff] ^ g_tab[6][(v >> 8) & 0xff] ^
              g_tab[5][(v >> 16) & 0xff] ^ g_tab[4][(v >> 24) & 0xff] ^
              g_tab[3][(v >> 32) & 0xff] ^ g_tab[2][(v >> 40) & 0xff] ^
              g_tab[1][(v >> 48) & 0xff] ^ g_tab[0][v >> 56];
        p += 8; n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ g_tab[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); n--; }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8; n -= 8;
    }
    while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#elif defined(__aarch64__)
/* gcc's arm_acle.h declares the intrinsics for any target; clang's only when
 * the whole file is built with +crc, so clang gets its builtins. */
#if defined(__clang__)
#define CRC_TARGET __attribute__((target("crc")))
#define CRC_B(c, b) __builtin_arm_crc32cb(c, b)
#define CRC_D(c, v) __builtin_arm_crc32cd(c, v)
#else
#define CRC_TARGET __attribute__((target("+crc")))
#define CRC_B(c, b) __crc32cb(c, b)
#define CRC_D(c, v) __crc32cd(c, v)
#endif
CRC_TARGET
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { crc = CRC_B(crc, *p++); n--; }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        crc = CRC_D(crc, v);
        p += 8; n -= 8;
    }
    while (n--) crc = CRC_B(crc, *p++);
    return crc;
}
#else
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n) { return crc_sw(crc, p, n); }
#endif

/* Standard CRC-32C: init and final xor 0xFFFFFFFF handled here, so
 * mg__crc32c(0, data, n) gives the textbook value and calls chain. */
uint32_t mg__crc32c(uint32_t crc, const void *data, size_t n) {
    pthread_once(&g_once, crc_init);
    crc = ~crc;
    crc = g_hw ? crc_hw(crc, data, n) : crc_sw(crc, data, n);
    return ~crc;
}

/* For tests: the table version regardless of the CPU. */
uint32_t mg__crc32c_sw(uint32_t crc, const void *data, size_t n);
uint32_t mg__crc32c_sw(uint32_t crc, const void *data, size_t n) {
    pthread_once(&g_once, crc_init);
    return ~crc_sw(~crc, data, n);
}
