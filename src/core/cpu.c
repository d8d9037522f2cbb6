/* cpu.c - run-time CPU feature detection (CPUID + XGETBV) and AMX enabling
 * on x86-64; the scalar level elsewhere. */
#include "core/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(MG_X86_AVX2)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

int32_t mg__cpu_simd_level(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return MG_SIMD_SCALAR;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1,
        f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return MG_SIMD_SCALAR;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return MG_SIMD_SCALAR; /* XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return MG_SIMD_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1,
        avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    if (!(avx2 && fma && f16c)) return MG_SIMD_SCALAR;
#if defined(MG_X86_AVX512)
    if (avx512f && avx512dq && avx512bw && avx512vl && (xcr0 & 0xe0) == 0xe0)
        return MG_SIMD_AVX512;
#else
    (void)avx512f, (void)avx512dq, (void)avx512bw, (void)avx512vl;
#endif
    return MG_SIMD_AVX2;
}
#else
int32_t mg__cpu_simd_level(void) { return MG_SIMD_SCALAR; }
#endif

static int32_t g_level = -1;
static pthread_once_t g_level_once = PTHREAD_ONCE_INIT;

static void level_init(void) {
    int32_t lvl = mg__cpu_simd_level();
    const char *env = getenv("MG_SIMD");
    if (env) {
        int32_t cap = lvl;
        if (!strcmp(env, "scalar")) cap = MG_SIMD_SCALAR;
        else if (!strcmp(env, "avx2")) cap = MG_SIMD_AVX2;
        else if (!strcmp(env, "avx512")) cap = MG_SIMD_AVX512;
        if (cap < lvl) lvl = cap;
    }
    g_level = lvl;
}

MG_API int32_t mg_simd_level(void) {
    pthread_once(&g_level_once, level_init);
    return g_level;
}

#if defined(MG_X86_AMX)
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int g_amx = 0, g_amx_present = 0;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT, g_amx_present_once = PTHREAD_ONCE_INIT;

/* AMX tiles with INT8 and BF16 products, plus AVX512-VBMI (the byte shuffles
 * that feed them), enabled by the OS (XCR0 tile bits). Off below
 * MG_SIMD=avx512 and with MG_AMX=0. Detection only: no permission asked. */
static void amx_detect(void) {
    unsigned a, b, c, d;
    if (mg_simd_level() < MG_SIMD_AVX512) return;
    const char *env = getenv("MG_AMX");
    if (env && !strcmp(env, "0")) return;
    if (__get_cpuid_max(0, NULL) < 0xd) return;
    __cpuid_count(7, 0, a, b, c, d);
    int amx_tile = (d >> 24) & 1, amx_bf16 = (d >> 22) & 1, amx_int8 = (d >> 25) & 1;
    int vbmi = (c >> 1) & 1;
    if (!amx_tile || !amx_bf16 || !amx_int8 || !vbmi) return;
    if ((xgetbv0() & 0x60000) != 0x60000) return; /* XTILECFG | XTILEDATA */
    g_amx_present = 1;
}

/* The tile data granted to this process by ARCH_REQ_XCOMP_PERM (once per
 * process; without it the first tile instruction faults), asked for only
 * when a tile kernel is about to run. */
static void amx_init(void) {
    pthread_once(&g_amx_present_once, amx_detect);
    if (!g_amx_present) return;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return;
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0) return;
    if (!(perm & (1ul << XFEATURE_XTILEDATA))) return;
    g_amx = 1;
}

int mg__cpu_amx_enable(void) {
    pthread_once(&g_amx_once, amx_init);
    return g_amx;
}

int mg__cpu_amx_present(void) {
    pthread_once(&g_amx_present_once, amx_detect);
    return g_amx_present;
}
#else
int mg__cpu_amx_enable(void) { return 0; }
int mg__cpu_amx_present(void) { return 0; }
#endif
