/* version.c - version queries and the build description. */
#include "core/core.h"
#include "prs/ints.h"

#include <cblas.h>
#include <jpeglib.h>
#include <png.h>
#include <pthread.h>
#include <stdio.h>
#include <zstd.h>

MG_API uint32_t mg_version_number(void) { return MG_VERSION_NUMBER; }
MG_API const char *mg_version_string(void) { return MG_VERSION_STRING; }

static const char *simd_name(int32_t level) {
    switch (level) {
    case MG_SIMD_AVX512: return "avx512";
    case MG_SIMD_AVX2: return "avx2";
    default: return "scalar";
    }
}

/* The polygenic scores' integer kernel (prs/ints.h), "no" for the double
 * paths. */
static const char *ints_name(int kernel) {
    switch (kernel) {
    case MG__INTS_AMX: return "amx";
    case MG__INTS_VNNI: return "vnni";
    default: return "no";
    }
}

static char g_info[1024];
static pthread_once_t g_info_once = PTHREAD_ONCE_INIT;

static void info_init(void) {
    const char *blas = openblas_get_config();
    char blas_clean[256];
    size_t j = 0;
    /* The config string contains spaces; keep the value one token wide. */
    for (size_t i = 0; blas && blas[i] && j + 1 < sizeof blas_clean; i++)
        blas_clean[j++] = blas[i] == ' ' ? '_' : blas[i];
    blas_clean[j] = '\0';
    snprintf(g_info, sizeof g_info,
             "version=%s simd=%s cpu_simd=%s amx=%s prs_ints=%s blas=OpenBLAS:%s zstd=%s png=%s "
             "jpeg=libjpeg-turbo:api%d compiler=%s",
             MG_VERSION_STRING, simd_name(mg_simd_level()),
             simd_name(mg__cpu_simd_level()), mg__cpu_amx_present() ? "yes" : "no",
             ints_name(mg__ints_available()), blas_clean, ZSTD_versionString(),
             png_get_libpng_ver(NULL), JPEG_LIB_VERSION,
#if defined(__clang__)
             "clang-" __clang_version__
#elif defined(__GNUC__)
             "gcc-" __VERSION__
#else
             "unknown"
#endif
    );
    for (char *p = g_info; *p; p++)
        if (*p == '\n') *p = ' ';
}

MG_API const char *mg_build_info(void) {
    pthread_once(&g_info_once, info_init);
    return g_info;
}
