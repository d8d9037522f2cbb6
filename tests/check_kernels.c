/* check_kernels.c - numeric kernels against their scalar references and
 * hand-computed values, at every SIMD level the CPU (and the build) has; the
 * thread pool. The x86-64 kernels are called directly only where they are
 * built (MG_X86_AVX2, MG_X86_AVX512: core/core.h). */
#include "testutil.h"

#include "kernels/kernels.h"
#include "kernels/layers.h"
#include "kernels/vec.h"

#if defined(MG_X86_AVX2)
#include <immintrin.h>
#endif
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NDT 5
static const int32_t DTYPES[NDT] = {MG_DTYPE_F32, MG_DTYPE_F16, MG_DTYPE_BF16,
                                    MG_DTYPE_Q8_0, MG_DTYPE_Q4_0};
static const char *DTNAME[NDT] = {"f32", "f16", "bf16", "q8_0", "q4_0"};

static int is_quant(int32_t dt) {
    return dt == MG_DTYPE_Q8_0 || dt == MG_DTYPE_Q4_0;
}

static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void fill(float *x, uint64_t n, uint64_t *seed, float scale) {
    for (uint64_t i = 0; i < n; i++) x[i] = tu_rand_f32(seed) * scale;
}

/* Random f32 data quantized to dtype; caller frees. */
static void *make_weights(int32_t dt, uint64_t rows, uint64_t cols,
                          uint64_t *seed) {
    int ok;
    uint64_t bytes = mg__dtype_bytes(dt, rows * cols, &ok);
    ck_assert(ok);
    float *f = malloc(rows * cols * sizeof(float));
    void *w = malloc(bytes ? bytes : 1);
    ck_assert(f && w);
    fill(f, rows * cols, seed, 1.0f);
    ck_assert_int_eq(mg__quantize(dt, w, f, rows * cols), 0);
    free(f);
    return w;
}

/* ============================================================ dtype facts */

START_TEST(test_dtype_facts) {
    ck_assert_uint_eq(mg__dtype_block_elems(MG_DTYPE_F32), 1);
    ck_assert_uint_eq(mg__dtype_block_elems(MG_DTYPE_Q4_0), 32);
    ck_assert_uint_eq(mg__dtype_block_elems(99), 0);
    ck_assert_uint_eq(mg__dtype_block_bytes(MG_DTYPE_F32), 4);
    ck_assert_uint_eq(mg__dtype_block_bytes(MG_DTYPE_F16), 2);
    ck_assert_uint_eq(mg__dtype_block_bytes(MG_DTYPE_BF16), 2);
    ck_assert_uint_eq(mg__dtype_block_bytes(MG_DTYPE_Q8_0), 34);
    ck_assert_uint_eq(mg__dtype_block_bytes(MG_DTYPE_Q4_0), 18);
    ck_assert_uint_eq(mg__dtype_block_bytes(-1), 0);
    ck_assert_uint_eq(sizeof(mg__block_q8_0), 34);
    ck_assert_uint_eq(sizeof(mg__block_q4_0), 18);
    int ok = -1;
    ck_assert_uint_eq(mg__dtype_bytes(MG_DTYPE_Q8_0, 64, &ok), 68);
    ck_assert_int_eq(ok, 1);
    ck_assert_uint_eq(mg__dtype_bytes(MG_DTYPE_Q4_0, 4096, &ok), 128 * 18);
    ck_assert_uint_eq(mg__dtype_bytes(MG_DTYPE_Q4_0, 33, &ok), 0);
    ck_assert_int_eq(ok, 0);
    ck_assert_uint_eq(mg__dtype_bytes(7, 32, &ok), 0);
    ck_assert_int_eq(ok, 0);
    ck_assert_uint_eq(mg__dtype_bytes(MG_DTYPE_F32, UINT64_MAX / 2, &ok), 0);
    ck_assert_int_eq(ok, 0);
    ck_assert_uint_eq(mg__dtype_bytes(MG_DTYPE_F16, 0, &ok), 0);
    ck_assert_int_eq(ok, 1);
}
END_TEST

/* ============================================================ f16 / bf16 */

START_TEST(test_f16_cases) {
    struct { float f; uint16_t h; } c[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000},
        {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00},
        {1e10f, 0x7c00}, {-1e10f, 0xfc00},
        {0x1p-14f, 0x0400}, {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000},
        {0x1.8p-25f, 0x0001}, {0x1.8p-24f, 0x0002}, /* tie -> even */
        {0x3p-25f, 0x0002}, {0x1p-26f, 0x0000},
        {1.0f + 0x1p-11f, 0x3c00}, {1.0f + 0x3p-11f, 0x3c02}, /* ties */
        {1.0f + 0x1.8p-11f, 0x3c01}, {0.1f, 0x2e66}, {0x1.ffcp-15f, 0x0400},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ck_assert_msg(mg__f32_to_f16(c[i].f) == c[i].h, "f16(%a) = %04x, want %04x",
                      (double)c[i].f, mg__f32_to_f16(c[i].f), c[i].h);
    }
    ck_assert_uint_eq(mg__f32_to_f16(INFINITY), 0x7c00);
    ck_assert_uint_eq(mg__f32_to_f16(-INFINITY), 0xfc00);
    uint16_t hn = mg__f32_to_f16(NAN);
    ck_assert((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff));
    ck_assert(isnan(mg__f16_to_f32(0x7e00)));
    ck_assert(isinf(mg__f16_to_f32(0xfc00)) && mg__f16_to_f32(0xfc00) < 0);
    ck_assert(mg__f16_to_f32(0x0001) == 0x1p-24f);
    ck_assert(mg__f16_to_f32(0x3555) == 0x1.554p-2f);
    /* every half round-trips (nan stays nan) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mg__f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            ck_assert(isnan(f));
            ck_assert(isnan(mg__f16_to_f32(mg__f32_to_f16(f))));
        } else {
            ck_assert_uint_eq(mg__f32_to_f16(f), h);
        }
    }
}
END_TEST

/* The CPU's own conversions: F16C on x86-64, the __fp16 type (fcvt, round
 * to nearest even) on aarch64. */
#if defined(MG_X86_AVX2)
#define HW_F16 1
__attribute__((target("f16c"))) static uint16_t hw_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f32(uint16_t h) {
    return _cvtsh_ss(h);
}
static int hw_f16_ok(void) { return mg__cpu_simd_level() >= MG_SIMD_AVX2; } /* F16C */
#elif defined(__aarch64__)
#define HW_F16 1
static uint16_t hw_f16(float f) {
    __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float hw_f32(uint16_t u) {
    __fp16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}
static int hw_f16_ok(void) { return 1; }
#endif

#if defined(HW_F16)
START_TEST(test_f16_vs_hardware) {
    if (!hw_f16_ok()) return;
    uint64_t seed = 7;
    int n = tu_under_valgrind() ? 20000 : 500000;
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)tu_rand_u64(&seed);
        /* bias toward the f16 range half of the time */
        if (i & 1) u = (u & 0x80000000u) | (0x33000000u + (u % 0x15000000u));
        float f = bits_f32(u);
        ck_assert_msg(mg__f32_to_f16(f) == hw_f16(f), "%08x: %04x vs hw %04x", u,
                      mg__f32_to_f16(f), hw_f16(f));
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float a = mg__f16_to_f32((uint16_t)h), b = hw_f32((uint16_t)h);
        ck_assert(f32_bits(a) == f32_bits(b));
    }
}
END_TEST
#endif

START_TEST(test_bf16_cases) {
    ck_assert_uint_eq(mg__f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(mg__f32_to_bf16(-2.0f), 0xc000);
    ck_assert_uint_eq(mg__f32_to_bf16(0.0f), 0x0000);
    ck_assert_uint_eq(mg__f32_to_bf16(-0.0f), 0x8000);
    ck_assert_uint_eq(mg__f32_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(mg__f32_to_bf16(-INFINITY), 0xff80);
    /* ties to even: 1 + 2^-8 is halfway between 0x3f80 and 0x3f81 */
    ck_assert_uint_eq(mg__f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    ck_assert_uint_eq(mg__f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);
    ck_assert_uint_eq(mg__f32_to_bf16(1.0f + 0x1.8p-8f), 0x3f81);
    ck_assert_uint_eq(mg__f32_to_bf16(bits_f32(0x7f7fffffu)), 0x7f80); /* -> inf */
    uint16_t n = mg__f32_to_bf16(NAN);
    ck_assert((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    n = mg__f32_to_bf16(bits_f32(0x7f800001u)); /* nan with low payload only */
    ck_assert((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    ck_assert(mg__bf16_to_f32(0x3f80) == 1.0f);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mg__bf16_to_f32((uint16_t)h);
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) ck_assert(isnan(f));
        else ck_assert_uint_eq(mg__f32_to_bf16(f), h);
    }
    /* random: the result is one of the two neighbours and the nearer one */
    uint64_t seed = 11;
    for (int i = 0; i < 100000; i++) {
        float f = tu_rand_f32(&seed) * 1000.0f;
        uint16_t b = mg__f32_to_bf16(f);
        uint32_t u = f32_bits(f);
        float lo = bits_f32(u & 0xffff0000u), hi = bits_f32((u & 0xffff0000u) + 0x10000u);
        double e = fabs((double)mg__bf16_to_f32(b) - f);
        ck_assert(e <= fabs((double)lo - f) && e <= fabs((double)hi - f));
    }
}
END_TEST

/* ============================================================ blocks */

START_TEST(test_q8_0_block) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    mg__block_q8_0 b;
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q8_0, &b, x, 32), 0);
    ck_assert_uint_eq(b.d, mg__f32_to_f16(16.0f / 127.0f));
    for (int j = 0; j < 32; j++)
        ck_assert_int_eq(b.qs[j], (int)roundf((float)(j - 16) * (127.0f / 16.0f)));
    ck_assert_int_eq(b.qs[0], -127);
    ck_assert_int_eq(b.qs[16], 0);
    ck_assert_int_eq(b.qs[17], 8); /* 7.9375 */
    float z[32] = {0};
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q8_0, &b, z, 32), 0);
    ck_assert_uint_eq(b.d, 0);
    for (int j = 0; j < 32; j++) ck_assert_int_eq(b.qs[j], 0);
    float back[32];
    ck_assert_int_eq(mg__dequantize(MG_DTYPE_Q8_0, back, &b, 32), 0);
    for (int j = 0; j < 32; j++) ck_assert(back[j] == 0.0f);
}
END_TEST

START_TEST(test_q4_0_block) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16); /* max |.| is -16 */
    mg__block_q4_0 b;
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q4_0, &b, x, 32), 0);
    ck_assert_uint_eq(b.d, mg__f32_to_f16(2.0f)); /* -16 / -8 */
    for (int j = 0; j < 16; j++) {
        int q0 = (int)((float)(j - 16) * 0.5f + 8.5f);
        int q1 = (int)((float)j * 0.5f + 8.5f);
        if (q1 > 15) q1 = 15;
        ck_assert_int_eq(b.qs[j] & 0x0f, q0);
        ck_assert_int_eq(b.qs[j] >> 4, q1);
    }
    ck_assert_int_eq(b.qs[0] & 0x0f, 0);  /* -16 -> 0 -> (0-8)*2 = -16 */
    ck_assert_int_eq(b.qs[15] >> 4, 15);  /* 15 -> 16.0 clamped to 15 */
    float back[32];
    ck_assert_int_eq(mg__dequantize(MG_DTYPE_Q4_0, back, &b, 32), 0);
    ck_assert(back[0] == -16.0f);
    ck_assert(back[31] == 14.0f);
    ck_assert(back[16] == 0.0f); /* x = 0 -> q = 8 */
    /* positive max: d negative */
    for (int j = 0; j < 32; j++) x[j] = j == 5 ? 4.0f : 1.0f;
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q4_0, &b, x, 32), 0);
    ck_assert(mg__f16_to_f32(b.d) == -0.5f);
    ck_assert_int_eq(b.qs[5] & 0x0f, 0);
    ck_assert_int_eq(b.qs[0] & 0x0f, 6); /* 1 / -0.5 + 8.5 = 6.5 -> 6 */
    float z[32] = {0};
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q4_0, &b, z, 32), 0);
    for (int j = 0; j < 16; j++) ck_assert_uint_eq(b.qs[j], 0x88);
}
END_TEST

START_TEST(test_quantize_roundtrip) {
    uint64_t seed = 3;
    enum { N = 4096 };
    float *x = malloc(N * 4), *y = malloc(N * 4);
    void *q = malloc(N * 4);
    fill(x, N, &seed, 3.0f);
    x[100] = 1e-30f; /* tiny values and a subnormal-ish block */
    for (int i = 0; i < 32; i++) x[320 + i] = 1e-6f * (float)i;
    for (int k = 0; k < NDT; k++) {
        int32_t dt = DTYPES[k];
        ck_assert_int_eq(mg__quantize(dt, q, x, N), 0);
        ck_assert_int_eq(mg__dequantize(dt, y, q, N), 0);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            for (int j = 0; j < 32; j++) {
                int i = b * 32 + j;
                double e = fabs((double)y[i] - x[i]), tol;
                switch (dt) {
                case MG_DTYPE_F32: tol = 0; break;
                case MG_DTYPE_F16: tol = fabs(x[i]) * 0x1p-11 + 0x1p-25; break;
                case MG_DTYPE_BF16: tol = fabs(x[i]) * 0x1p-8; break;
                /* half a step, the f16 rounding of d times |q| <= 127, and
                 * f16 subnormal d */
                case MG_DTYPE_Q8_0: tol = amax / 127.0 * 0.5 + amax * 0x1p-11 + 127 * 0x1p-24; break;
                /* the positive end saturates at 7: a full step */
                default: tol = amax / 8.0 * 1.0 + amax * 0x1p-10 + 8 * 0x1p-24; break;
                }
                ck_assert_msg(e <= tol, "%s i=%d x=%g y=%g", DTNAME[k], i,
                              (double)x[i], (double)y[i]);
            }
        }
        /* SIMD row dequantization is bit-exact with the scalar one */
        float *z = malloc(N * 4);
        mg__dequantize_ref_row(dt, z, q, N);
        ck_assert(memcmp(z, y, N * 4) == 0);
#if defined(MG_X86_AVX2)
        if (mg__cpu_simd_level() >= MG_SIMD_AVX2) {
            mg__dequant_row_avx2(dt, y, q, N - 32);
            ck_assert(memcmp(z, y, (N - 32) * 4) == 0);
        }
#endif
#if defined(MG_X86_AVX512)
        if (mg__cpu_simd_level() >= MG_SIMD_AVX512) {
            mg__dequant_row_avx512(dt, y, q, N - 32);
            ck_assert(memcmp(z, y, (N - 32) * 4) == 0);
        }
#endif
        free(z);
    }
    /* bad arguments */
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q8_0, q, x, 33), -1);
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q4_0, q, x, 31), -1);
    ck_assert_int_eq(mg__quantize(42, q, x, 32), -1);
    ck_assert_int_eq(mg__quantize(MG_DTYPE_F16, NULL, x, 32), -1);
    ck_assert_int_eq(mg__dequantize(MG_DTYPE_Q8_0, y, q, 48), -1);
    ck_assert_int_eq(mg__dequantize(-3, y, q, 32), -1);
    ck_assert_int_eq(mg__dequantize(MG_DTYPE_F32, y, q, 0), 0);
    free(x); free(y); free(q);
}
END_TEST

START_TEST(test_quantize_nonfinite) {
    /* non-finite input must not crash or trap the sanitizer */
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)i;
    x[3] = NAN;
    x[40] = INFINITY;
    mg__block_q8_0 b8[2];
    mg__block_q4_0 b4[2];
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q8_0, b8, x, 64), 0);
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q4_0, b4, x, 64), 0);
}
END_TEST

/* ============================================================ matvec */

typedef struct { uint64_t rows, cols; } shape;
static const shape MV_SHAPES[] = {
    {1, 32}, {7, 32}, {33, 64}, {5, 96}, {17, 4096}, {9, 2560}, {3, 10240},
    {129, 256}, {257, 2560}, {1031, 4096}, {61, 10240}, {64, 20480},
};
/* float types only: cols not a multiple of 32 (masked tails) */
static const shape MV_SHAPES_F[] = {{3, 1}, {5, 7}, {31, 100}, {2, 17}, {19, 1001}};

/* Independent emulation of the activation quantization the quantized
 * kernels use (see mg__xq8): d = amax/127, q = nearest-even(x * 127/amax). */
static void emulate_x8(const float *x, uint64_t n, float *xh, float *dstep) {
    for (uint64_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f, d = amax / 127.0f;
        dstep[b] = d;
        for (int j = 0; j < 32; j++)
            xh[b * 32 + j] = (float)((double)d * nearbyintf(x[b * 32 + j] * id));
    }
}

static int g_levels[3], g_nlevels;
static void init_levels(void) {
    g_nlevels = 0;
    for (int l = MG_SIMD_SCALAR; l <= mg__cpu_simd_level(); l++) g_levels[g_nlevels++] = l;
}

static double worst_ratio; /* largest error / tolerance seen, for the log */

static void check_matvec(int32_t dt, uint64_t rows, uint64_t cols,
                         mg__pool *pool, uint64_t seed) {
    void *W = make_weights(dt, rows, cols, &seed);
    float *x = malloc(cols * 4), *xh = malloc(cols * 4), *d = malloc((cols / 32 + 1) * 4);
    float *yr = malloc(rows * 4), *yh = malloc(rows * 4), *y = malloc((rows + 1) * 4);
    float *wf = malloc(cols * 4);
    fill(x, cols, &seed, 2.0f);
    x[0] = 0.0f;
    mg__matvec_ref(dt, W, rows, cols, x, yr);
    if (is_quant(dt)) {
        emulate_x8(x, cols, xh, d);
        mg__matvec_ref(dt, W, rows, cols, xh, yh);
    }
    int ok;
    uint64_t rb = mg__dtype_bytes(dt, cols, &ok);
    for (int li = 0; li < g_nlevels; li++) {
        y[rows] = 12345.0f; /* guard */
        for (uint64_t r = 0; r < rows; r++) y[r] = NAN;
        mg__matvec_level(g_levels[li], dt, W, rows, cols, x, y, pool);
        ck_assert(y[rows] == 12345.0f);
        for (uint64_t r = 0; r < rows; r++) {
            mg__dequantize(dt, wf, (const char *)W + r * rb, cols);
            double S = 0.0, B = 0.0;
            for (uint64_t c = 0; c < cols; c++) S += fabs((double)wf[c] * x[c]);
            /* f32 accumulation in a different order than the (double)
             * reference: 2e-6 of sum |w x| (observed: under 1e-7). */
            double tol = 2e-6 * S + 1e-30;
            double e = fabs((double)y[r] - yr[r]);
            if (is_quant(dt)) {
                /* Honest bound for 8-bit activations: each x moves by at
                 * most half a step d_b of its block. */
                for (uint64_t c = 0; c < cols; c++)
                    B += fabs((double)wf[c]) * d[c / 32] * 0.5 * (1 + 1e-5);
                double e2 = fabs((double)y[r] - yh[r]);
                ck_assert_msg(e2 <= tol, "%s L%d %llux%llu r=%llu: %g vs emulated %g",
                              dt == MG_DTYPE_Q8_0 ? "q8_0" : "q4_0", g_levels[li],
                              (unsigned long long)rows, (unsigned long long)cols,
                              (unsigned long long)r, (double)y[r], (double)yh[r]);
                tol += B;
            }
            if (e / tol > worst_ratio) worst_ratio = e / tol;
            ck_assert_msg(e <= tol, "dtype %d L%d %llux%llu r=%llu: %g vs ref %g (tol %g)",
                          dt, g_levels[li], (unsigned long long)rows,
                          (unsigned long long)cols, (unsigned long long)r,
                          (double)y[r], (double)yr[r], tol);
        }
    }
    free(W); free(x); free(xh); free(d); free(yr); free(yh); free(y); free(wf);
}

START_TEST(test_matvec_shapes) {
    int dti = _i;
    int32_t dt = DTYPES[dti];
    init_levels();
    mg__pool *pool = mg__pool_new(2);
    ck_assert_ptr_nonnull(pool);
    size_t ns = sizeof MV_SHAPES / sizeof MV_SHAPES[0];
    if (tu_under_valgrind()) ns = 9; /* skip the largest */
    for (size_t s = 0; s < ns; s++) {
        check_matvec(dt, MV_SHAPES[s].rows, MV_SHAPES[s].cols, NULL, 100 + s);
        check_matvec(dt, MV_SHAPES[s].rows, MV_SHAPES[s].cols, pool, 200 + s);
    }
    if (!is_quant(dt))
        for (size_t s = 0; s < sizeof MV_SHAPES_F / sizeof MV_SHAPES_F[0]; s++)
            check_matvec(dt, MV_SHAPES_F[s].rows, MV_SHAPES_F[s].cols, pool, 300 + s);
    mg__pool_free(pool);
    fprintf(stderr, "matvec %s: worst error/tolerance %.3f\n", DTNAME[dti], worst_ratio);
}
END_TEST

START_TEST(test_matvec_pools) {
    /* row splits over pools of several sizes give the same (bitwise) rows */
    uint64_t seed = 5, rows = 1001, cols = 2560;
    if (tu_under_valgrind()) rows = 301;
    float *x = malloc(cols * 4), *y0 = malloc(rows * 4), *y1 = malloc(rows * 4);
    fill(x, cols, &seed, 1.0f);
    for (int k = 0; k < NDT; k++) {
        void *W = make_weights(DTYPES[k], rows, cols, &seed);
        mg__matvec(DTYPES[k], W, rows, cols, x, y0, NULL);
        for (uint32_t nt = 1; nt <= 4; nt++) {
            mg__pool *p = mg__pool_new(nt);
            ck_assert_ptr_nonnull(p);
            for (int rep = 0; rep < 3; rep++) {
                memset(y1, 0, rows * 4);
                mg__matvec(DTYPES[k], W, rows, cols, x, y1, p);
                ck_assert(memcmp(y0, y1, rows * 4) == 0);
            }
            mg__pool_free(p);
        }
        free(W);
    }
    free(x); free(y0); free(y1);
}
END_TEST

/* Every quantized x86-64 row kernel this CPU can run, called directly on
 * the same 8-bit x (the dispatcher picks only the best one, so the others
 * would go untested on a newer CPU): equal to the scalar kernel within f32
 * rounding. Columns 32..608 cover every remainder of the four-block groups. */
#if defined(MG_X86_AVX2)
START_TEST(test_rows_variants) {
    struct { const char *name; const mg__rows_fn *tab; int ok; } v[] = {
        {"avx2", mg__rows_avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
#if defined(MG_X86_AVX512)
        {"avx512", mg__rows_avx512, mg__cpu_simd_level() >= MG_SIMD_AVX512},
        {"avx512vnni", mg__rows_avx512vnni,
         mg__cpu_simd_level() >= MG_SIMD_AVX512 && __builtin_cpu_supports("avx512vnni")},
        {"avx512vbmi", mg__rows_avx512vbmi,
         mg__cpu_simd_level() >= MG_SIMD_AVX512 && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512vbmi")},
#endif
    };
    uint64_t seed = 77;
    int tested = 0;
    for (int k = 3; k <= 4; k++) { /* q8_0, q4_0 */
        int32_t dt = DTYPES[k];
        for (uint64_t cols = 32; cols <= 608; cols += 32) {
            uint64_t rows = 5;
            void *W = make_weights(dt, rows, cols, &seed);
            float *x = malloc(cols * 4), yref[5], y[5];
            int8_t *q = malloc(cols);
            float *d = malloc(cols / 32 * 4);
            int32_t *s8 = malloc(cols / 32 * 4);
            fill(x, cols, &seed, 2.0f);
            mg__quantize_x8(x, cols, q, d, s8);
            mg__xq8 xq = {q, d, s8};
            int ok;
            uint64_t rb = mg__dtype_bytes(dt, cols, &ok);
            /* scalar reference over the same 8-bit x: the dispatcher's
             * scalar level */
            mg__matvec_level(MG_SIMD_SCALAR, dt, W, rows, cols, x, yref, NULL);
            for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
                if (!v[i].ok || !v[i].tab[dt]) continue;
                for (int acc = 0; acc < 2; acc++) {
                    for (uint64_t r = 0; r < rows; r++) y[r] = acc ? 1.0f : NAN;
                    v[i].tab[dt](W, rb, rows, cols, &xq, y, acc);
                    for (uint64_t r = 0; r < rows; r++) {
                        double want = yref[r] + (acc ? 1.0 : 0.0);
                        ck_assert_msg(fabs(y[r] - want) <= 1e-5 * (fabs(want) + 1.0),
                                      "%s dtype %d cols %llu row %llu acc %d: %g vs %g",
                                      v[i].name, dt, (unsigned long long)cols,
                                      (unsigned long long)r, acc, (double)y[r], want);
                    }
                    tested++;
                }
            }
            free(W); free(x); free(q); free(d); free(s8);
        }
    }
    ck_assert_int_gt(tested, 0);
    fprintf(stderr, "row kernel variants: %d checks\n", tested);
}
END_TEST
#endif

START_TEST(test_matvec_edges) {
    float x[64], y[4] = {1, 2, 3, 4};
    uint64_t seed = 9;
    fill(x, 64, &seed, 1.0f);
    mg__block_q8_0 w[8];
    ck_assert_int_eq(mg__quantize(MG_DTYPE_Q8_0, w, x, 64), 0);
    mg__matvec(MG_DTYPE_Q8_0, w, 0, 64, x, y, NULL); /* no rows: no-op */
    ck_assert(y[0] == 1.0f);
    mg__matvec(MG_DTYPE_Q8_0, w, 2, 48, x, y, NULL); /* not whole blocks */
    ck_assert(y[0] == 1.0f);
    mg__matvec(77, w, 2, 64, x, y, NULL); /* unknown dtype */
    ck_assert(y[0] == 1.0f);
    mg__matvec(MG_DTYPE_F32, NULL, 2, 64, x, y, NULL);
    ck_assert(y[0] == 1.0f);
    mg__matvec(MG_DTYPE_F32, w, 3, 0, x, y, NULL); /* empty rows: zeros */
    ck_assert(y[0] == 0.0f && y[2] == 0.0f && y[3] == 4.0f);
    /* a level above the CPU's falls back */
    float y1[2], y2[2];
    mg__matvec_level(99, MG_DTYPE_Q8_0, w, 2, 32, x, y1, NULL);
    mg__matvec_level(mg__cpu_simd_level(), MG_DTYPE_Q8_0, w, 2, 32, x, y2, NULL);
    ck_assert(y1[0] == y2[0] && y1[1] == y2[1]);
    mg__matvec_level(-5, MG_DTYPE_Q8_0, w, 2, 32, x, y1, NULL);
    ck_assert(fabsf(y1[0] - y2[0]) <= 1e-5f * (fabsf(y2[0]) + 1));
}
END_TEST

/* ============================================================ matmul */

/* Bound on |sum_c w[c] (x[c] - xq[c])| for the 8-bit activations of the
 * integer path: each x is rounded to a step of amax_b / 127 of its block,
 * so it moves by at most amax_b / 254. */
static double x8_bound(const float *w, const float *x, uint64_t cols) {
    double B = 0.0;
    for (uint64_t b = 0; b < cols / 32; b++) {
        double amax = 0.0, sw = 0.0;
        for (int j = 0; j < 32; j++) {
            amax = fmax(amax, fabs((double)x[b * 32 + j]));
            sw += fabs((double)w[b * 32 + j]);
        }
        B += sw * amax / 254.0;
    }
    return B;
}

/* Every SIMD level, with and without a pool. Float weights and the sgemm
 * path agree with the f64 reference to 2e-5 of sum |w x|. The integer path
 * (q8_0/q4_0 with AVX512-VNNI) is checked twice: against the scalar matvec,
 * which computes the same block sums of the same 8-bit activations (float
 * order only), and against the f64 reference within the rounding bound of
 * those activations. */
START_TEST(test_matmul) {
    int dti = _i;
    int32_t dt = DTYPES[dti];
    struct { uint64_t n, rows, cols; } sh[] = {
        {1, 1, 32}, {3, 7, 64}, {5, 300, 64}, {2, 33, 2560}, {17, 65, 256},
        {4, 20, 10240}, {9, 270, 4096}, {700, 20, 10240}, {64, 97, 1056},
    };
    size_t ns = sizeof sh / sizeof sh[0];
    if (tu_under_valgrind()) ns = 5;
    uint64_t seed = 77 + (uint64_t)dti;
    mg__pool *pool = mg__pool_new(3);
    ck_assert_ptr_nonnull(pool);
    const int32_t levels[] = {MG_SIMD_SCALAR, MG_SIMD_AVX2, MG_SIMD_AVX512};
    int quant = dt == MG_DTYPE_Q8_0 || dt == MG_DTYPE_Q4_0, int_seen = 0;
    for (size_t s = 0; s < ns; s++) {
        uint64_t n = sh[s].n, rows = sh[s].rows, cols = sh[s].cols;
        void *W = make_weights(dt, rows, cols, &seed);
        float *X = malloc(n * cols * 4), *Y = malloc(n * rows * 4),
              *R = malloc(n * rows * 4), *M = malloc(n * rows * 4),
              *wf = malloc(rows * cols * 4);
        fill(X, n * cols, &seed, 1.0f);
        if (n > 3) /* a row of zeros and one with a single outlier */
            for (uint64_t c = 0; c < cols; c++) {
                X[c] = 0.0f;
                X[cols + c] *= c == cols / 2 ? 100.0f : 0.01f;
            }
        size_t ss = mg__matmul_scratch_size(dt, cols);
        if (dt == MG_DTYPE_F32) ck_assert_uint_eq(ss, 0);
        else ck_assert_uint_ge(ss, 64 * cols * 4);
        float *scratch = ss ? mg__aligned_alloc(64, ss) : NULL;
        mg__matmul_ref(dt, W, rows, cols, X, n, R);
        mg__dequantize(dt, wf, W, rows * cols);
        if (quant)
            for (uint64_t t = 0; t < n; t++)
                mg__matvec_level(MG_SIMD_SCALAR, dt, W, rows, cols, X + t * cols,
                                 M + t * rows, NULL);
        if (dt == MG_DTYPE_BF16) { /* the reference on X rounded to bf16 */
            float *Xb = malloc(n * cols * 4);
            for (uint64_t i = 0; i < n * cols; i++)
                Xb[i] = mg__bf16_to_f32(mg__f32_to_bf16(X[i]));
            mg__matmul_ref(dt, W, rows, cols, Xb, n, M);
            free(Xb);
        }
        /* sum |w x| and the 8-bit rounding bound of each output */
        double *S = malloc(n * rows * sizeof *S), *B = malloc(n * rows * sizeof *B);
        for (uint64_t t = 0; t < n; t++)
            for (uint64_t r = 0; r < rows; r++) {
                const float *w = wf + r * cols, *x = X + t * cols;
                double a = 0.0;
                for (uint64_t c = 0; c < cols; c++) a += fabs((double)w[c] * x[c]);
                S[t * rows + r] = a;
                B[t * rows + r] = quant ? x8_bound(w, x, cols) : 0.0;
            }
        for (int li = 0; li < 3; li++)
            for (int wp = 0; wp < 2; wp++) {
                int32_t level = levels[li];
                int intpath = quant && mg__kernel_level(level) >= MG_SIMD_AVX512 &&
                              mg__cpu_vnni();
                int bfpath = dt == MG_DTYPE_BF16 && n > 1 &&
                             mg__kernel_level(level) >= MG_SIMD_AVX512 && mg__cpu_bf16();
                int_seen |= intpath | bfpath;
                memset(Y, 0xff, n * rows * 4); /* NaN: every output written */
                mg__matmul_level(level, dt, W, rows, cols, X, n, Y, scratch,
                                 wp ? pool : NULL);
                for (uint64_t t = 0; t < n; t++)
                    for (uint64_t r = 0; r < rows; r++) {
                        double y = Y[t * rows + r], ref = R[t * rows + r];
                        double tol = 2e-5 * S[t * rows + r] + 1e-30;
                        if (intpath) {
                            double e = fabs(y - M[t * rows + r]);
                            ck_assert_msg(e <= tol,
                                          "%s level %d n=%llu %llux%llu [%llu][%llu]: %g vs "
                                          "matvec %g",
                                          DTNAME[dti], level, (unsigned long long)n,
                                          (unsigned long long)rows, (unsigned long long)cols,
                                          (unsigned long long)t, (unsigned long long)r, y,
                                          (double)M[t * rows + r]);
                            tol += B[t * rows + r];
                        } else if (bfpath) {
                            /* same products of X rounded to bf16, and within
                             * that rounding (2^-8 relative per element) of
                             * the exact ones */
                            double e = fabs(y - M[t * rows + r]);
                            ck_assert_msg(e <= tol, "bf16 level %d n=%llu %llux%llu: %g vs %g",
                                          level, (unsigned long long)n,
                                          (unsigned long long)rows, (unsigned long long)cols, y,
                                          (double)M[t * rows + r]);
                            tol += S[t * rows + r] / 256.0;
                        }
                        ck_assert_msg(fabs(y - ref) <= tol,
                                      "%s level %d n=%llu %llux%llu: %g vs %g", DTNAME[dti],
                                      level, (unsigned long long)n, (unsigned long long)rows,
                                      (unsigned long long)cols, y, ref);
                    }
            }
        mg__aligned_free(scratch);
        free(W); free(X); free(Y); free(R); free(M); free(wf); free(S); free(B);
    }
    mg__pool_free(pool);
#if defined(MG_X86_AVX512)
    if (quant && mg__cpu_simd_level() >= MG_SIMD_AVX512 &&
        __builtin_cpu_supports("avx512vnni"))
        ck_assert(int_seen);
    if (dt == MG_DTYPE_BF16 && mg__cpu_simd_level() >= MG_SIMD_AVX512 &&
        __builtin_cpu_supports("avx512bf16"))
        ck_assert(int_seen);
#else
    (void)quant, (void)int_seen;
#endif
}
END_TEST

/* ============================================================ several vectors */

/* mg__matvec_multi_level: every vector's product bit for bit what the
 * single-vector decode product gives at the same level, for every dtype
 * (and q4x16), shapes across a row block and a column chunk, 2 to 8
 * vectors, with and without the pool; 9 vectors run one by one. */
START_TEST(test_matvec_multi) {
    static const shape SH[] = {{16, 64}, {48, 2560}, {1040, 256}, {64, 17408}, {4100, 96}};
    size_t ns = tu_under_valgrind() ? 2 : sizeof SH / sizeof SH[0];
    init_levels();
    mg__pool *pool = mg__pool_new(3);
    ck_assert_ptr_nonnull(pool);
    uint64_t seed = 777;
    void *scratch = NULL;
    ck_assert_int_eq(posix_memalign(&scratch, 64, mg__matvec_multi_scratch(8)), 0);
    for (int k = 0; k <= NDT; k++) {
        const int x16 = k == NDT;
        const int32_t dt = x16 ? MG__DTYPE_Q4_0X16 : DTYPES[k];
        for (size_t si = 0; si < ns; si++) {
            uint64_t rows = SH[si].rows, cols = SH[si].cols;
            if (x16 && !mg__q4x16_fits(rows, cols)) continue;
            void *W = make_weights(x16 ? MG_DTYPE_Q4_0 : dt, rows, cols, &seed);
            if (x16) ck_assert_int_eq(mg__q4x16_pack(W, rows, cols), 0);
            const uint64_t nmax = 9;
            float *X = malloc(nmax * cols * 4), *Y = malloc(nmax * rows * 4),
                  *y = malloc(rows * 4);
            fill(X, nmax * cols, &seed, 2.0f);
            for (int li = 0; li < g_nlevels; li++)
                for (uint64_t n = tu_under_valgrind() ? 3 : 2; n <= nmax;
                     n += tu_under_valgrind() ? 6 : (n < 4 ? 1 : 5 - (n == 4)))
                    for (int wp = 0; wp < 2; wp++) {
                        for (uint64_t i = 0; i < n * rows; i++) Y[i] = NAN;
                        mg__matvec_multi_level(g_levels[li], dt, W, rows, cols, X, n, Y,
                                               scratch, wp ? pool : NULL);
                        for (uint64_t v = 0; v < n; v++) {
                            mg__matvec_level(g_levels[li], dt, W, rows, cols, X + v * cols, y,
                                             wp ? pool : NULL);
                            ck_assert_msg(!memcmp(y, Y + v * rows, rows * 4),
                                          "%s L%d %llux%llu n=%llu vector %llu differs",
                                          x16 ? "q4x16" : DTNAME[k], g_levels[li],
                                          (unsigned long long)rows, (unsigned long long)cols,
                                          (unsigned long long)n, (unsigned long long)v);
                        }
                    }
            free(X);
            free(Y);
            free(y);
            free(W);
        }
    }
    free(scratch);
    mg__pool_free(pool);
}
END_TEST

/* ============================================================ q4x16 */

/* The 16-row decode layout (MG__DTYPE_Q4_0X16) against the q4_0 rows it
 * came from: every element the same value; the matvec at every SIMD level
 * (and each row kernel called directly) within f32 summation order of the
 * q4_0 matvec on the same 8-bit x; the prefill product bitwise equal to
 * q4_0's at every level (the same panels, or the same dequantized rows into
 * sgemm); shapes it cannot hold refused. */
START_TEST(test_q4x16) {
    static const shape SH[] = {{16, 64}, {32, 128}, {48, 2560}, {272, 1152},
                               {16, 10240}, {64, 16384}, {1040, 256}};
    size_t ns = sizeof SH / sizeof SH[0];
    if (tu_under_valgrind()) ns = 4;
    init_levels();
    mg__pool *pool = mg__pool_new(3);
    ck_assert_ptr_nonnull(pool);
    uint64_t seed = 4242;
#if defined(MG_X86_AVX512)
    int vnni = mg__cpu_simd_level() >= MG_SIMD_AVX512 && __builtin_cpu_supports("avx512vnni");
#endif
    for (size_t s = 0; s < ns; s++) {
        uint64_t rows = SH[s].rows, cols = SH[s].cols;
        int ok;
        uint64_t rb = mg__dtype_bytes(MG_DTYPE_Q4_0, cols, &ok), bytes = rb * rows;
        void *W = make_weights(MG_DTYPE_Q4_0, rows, cols, &seed);
        void *P = malloc(bytes);
        memcpy(P, W, bytes);
        ck_assert(mg__q4x16_fits(rows, cols));
        ck_assert_int_eq(mg__q4x16_pack(P, rows, cols), 0);
        ck_assert(memcmp(P, W, bytes) != 0);
        /* every element */
        float *wf = malloc(cols * 4), *pf = malloc(cols * 4);
        for (uint64_t r = 0; r < rows; r++) {
            ck_assert_int_eq(mg__dequantize(MG_DTYPE_Q4_0, wf, (const char *)W + r * rb, cols), 0);
            mg__q4x16_dequant_rows(pf, P, cols, r, 1);
            ck_assert(memcmp(wf, pf, cols * 4) == 0);
            for (uint64_t c = 0; c < cols; c += 7)
                ck_assert(mg__q4x16_elem(P, cols, r, c) == wf[c]);
        }
        /* matvec at every level, with and without the pool */
        float *x = malloc(cols * 4), *y0 = malloc((rows + 1) * 4), *y1 = malloc((rows + 1) * 4);
        fill(x, cols, &seed, 2.0f);
        for (int li = 0; li < g_nlevels; li++)
            for (int wp = 0; wp < 2; wp++) {
                mg__matvec_level(g_levels[li], MG_DTYPE_Q4_0, W, rows, cols, x, y0, NULL);
                y1[rows] = 777.0f;
                for (uint64_t r = 0; r < rows; r++) y1[r] = NAN;
                mg__matvec_level(g_levels[li], MG__DTYPE_Q4_0X16, P, rows, cols, x, y1,
                                 wp ? pool : NULL);
                ck_assert(y1[rows] == 777.0f);
                for (uint64_t r = 0; r < rows; r++) {
                    ck_assert_int_eq(mg__dequantize(MG_DTYPE_Q4_0, wf,
                                                    (const char *)W + r * rb, cols), 0);
                    double S = 0;
                    for (uint64_t c = 0; c < cols; c++) S += fabs((double)wf[c] * x[c]);
                    ck_assert_msg(fabs((double)y1[r] - y0[r]) <= 2e-6 * S + 1e-30,
                                  "q4x16 L%d %llux%llu r=%llu: %g vs q4_0 %g", g_levels[li],
                                  (unsigned long long)rows, (unsigned long long)cols,
                                  (unsigned long long)r, (double)y1[r], (double)y0[r]);
                }
            }
        /* the row kernels directly, storing and accumulating */
        {
            int8_t *q = malloc(cols);
            float *d = malloc(cols / 32 * 4);
            int32_t *s8 = malloc(cols / 32 * 4);
            mg__quantize_x8(x, cols, q, d, s8);
            mg__xq8 xq = {q, d, s8};
            mg__matvec_level(MG_SIMD_SCALAR, MG_DTYPE_Q4_0, W, rows, cols, x, y0, NULL);
#if defined(MG_X86_AVX512)
            const int nk = 2 + vnni;
#else
            const int nk = 2;
#endif
            for (int k = 0; k < nk; k++) {
                int acc = k == 1;
                for (uint64_t r = 0; r < rows; r++) y1[r] = acc ? 1.0f : NAN;
#if defined(MG_X86_AVX512)
                (k < 2 ? mg__rows_q4x16_scalar : mg__rows_q4x16_vnni)(P, rb, rows, cols, &xq,
                                                                      y1, acc);
#else
                mg__rows_q4x16_scalar(P, rb, rows, cols, &xq, y1, acc);
#endif
                for (uint64_t r = 0; r < rows; r++) {
                    double want = y0[r] + (acc ? 1.0 : 0.0);
                    ck_assert_msg(fabs(y1[r] - want) <= 1e-5 * (fabs(want) + 1.0),
                                  "row kernel %d: %g vs %g", k, (double)y1[r], want);
                }
            }
            free(q); free(d); free(s8);
        }
        /* prefill: bitwise what q4_0 gives, at every level */
        if (!tu_under_valgrind() || rows * cols <= 65536) {
            uint64_t n = 9;
            size_t ss = mg__matmul_scratch_size(MG__DTYPE_Q4_0X16, cols);
            ck_assert_uint_eq(ss, mg__matmul_scratch_size(MG_DTYPE_Q4_0, cols));
            float *scratch = mg__aligned_alloc(64, ss);
            float *X = malloc(n * cols * 4), *Y0 = malloc(n * rows * 4), *Y1 = malloc(n * rows * 4);
            fill(X, n * cols, &seed, 1.0f);
            for (int li = 0; li < g_nlevels; li++) {
                mg__matmul_level(g_levels[li], MG_DTYPE_Q4_0, W, rows, cols, X, n, Y0, scratch, pool);
                memset(Y1, 0xff, n * rows * 4);
                mg__matmul_level(g_levels[li], MG__DTYPE_Q4_0X16, P, rows, cols, X, n, Y1, scratch,
                                 pool);
                ck_assert_msg(memcmp(Y0, Y1, n * rows * 4) == 0, "matmul L%d %llux%llu",
                              g_levels[li], (unsigned long long)rows, (unsigned long long)cols);
            }
            mg__aligned_free(scratch);
            free(X); free(Y0); free(Y1);
        }
        free(W); free(P); free(wf); free(pf); free(x); free(y0); free(y1);
    }
    /* shapes the layout cannot hold: refused, and the kernels write nothing */
    static const shape BAD[] = {{17, 64}, {16, 32}, {16, 96}, {16, 16448}, {0, 64}};
    for (size_t b = 0; b < sizeof BAD / sizeof BAD[0]; b++) {
        uint64_t rows = BAD[b].rows, cols = BAD[b].cols;
        ck_assert(!mg__q4x16_fits(rows, cols));
        if (!rows) continue;
        void *W = make_weights(MG_DTYPE_Q4_0, rows, cols, &seed);
        ck_assert_int_eq(mg__q4x16_pack(W, rows, cols), -1);
        float *x = calloc(cols, 4), *y = malloc(rows * 4);
        for (uint64_t r = 0; r < rows; r++) y[r] = 5.0f;
        mg__matvec(MG__DTYPE_Q4_0X16, W, rows, cols, x, y, pool);
        for (uint64_t r = 0; r < rows; r++) ck_assert(y[r] == 5.0f);
        free(W); free(x); free(y);
    }
    ck_assert_int_eq(mg__q4x16_pack(NULL, 16, 64), -1);
    /* not a dtype of files or of the conversion functions */
    float f[32];
    ck_assert_int_eq(mg__dequantize(MG__DTYPE_Q4_0X16, f, f, 32), -1);
    ck_assert_uint_eq(mg__dtype_block_elems(MG__DTYPE_Q4_0X16), 0);
    mg__pool_free(pool);
}
END_TEST

/* ============================================================ row ops */

static void assert_close(const float *a, const float *b, uint64_t n, double rel,
                         double abs_tol, const char *what) {
    for (uint64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        ck_assert_msg(e <= abs_tol + rel * fabs((double)b[i]), "%s[%llu]: %.9g vs %.9g",
                      what, (unsigned long long)i, (double)a[i], (double)b[i]);
    }
}

/* dot, axpy and GELU at every SIMD level against double-precision sums and
 * the GELU reference, over lengths that exercise every tail. */
START_TEST(test_vec_levels) {
    enum { N = 300 };
    float a[N], b[N], y[N], y0[N], g[N], gr[N];
    uint64_t st = 99;
    for (int i = 0; i < N; i++) {
        a[i] = tu_rand_f32(&st);
        b[i] = tu_rand_f32(&st);
        y0[i] = tu_rand_f32(&st);
        g[i] = 12.0f * tu_rand_f32(&st); /* +-12: both tails of GELU */
    }
    g[0] = 0.0f; g[1] = -100.0f; g[2] = 100.0f; g[3] = 1e-30f;
    mg__gelu_tanh_ref(gr, g, N);
    for (int32_t lvl = MG_SIMD_SCALAR; lvl <= MG_SIMD_AVX512; lvl++) {
        const mg__vec_fns *v = mg__vec_for(lvl);
        for (uint64_t n = 0; n <= N; n += (n < 40 ? 1 : 37)) {
            double want = 0, mag = 0;
            for (uint64_t i = 0; i < n; i++) {
                want += (double)a[i] * b[i];
                mag += fabs((double)a[i] * b[i]);
            }
            double got = v->dot(a, b, n);
            ck_assert_msg(fabs(got - want) <= 1e-6 * mag + 1e-7, "dot level %d n %llu", lvl,
                          (unsigned long long)n);
            memcpy(y, y0, sizeof y);
            v->axpy(y, 0.75f, a, n);
            for (uint64_t i = 0; i < N; i++) {
                float w = i < n ? y0[i] + 0.75f * a[i] : y0[i]; /* nothing past n touched */
                ck_assert_msg(fabsf(y[i] - w) <= 1e-6f, "axpy level %d", lvl);
            }
            float out[N + 1];
            out[n] = 12345.0f;
            v->gelu(out, g, n);
            ck_assert(out[n] == 12345.0f);
            assert_close(out, gr, n, 2e-6, 1e-7, "gelu level");
            /* expsum: exp(x - m) in place and its sum; arguments below
             * -87 give exactly 0 */
            float ex[N + 1];
            memcpy(ex, g, sizeof(float) * n);
            ex[n] = 12345.0f;
            double wsum = 0;
            float got_sum = v->expsum(ex, 100.0f, n); /* 100 = max(g) */
            for (uint64_t i = 0; i < n; i++) {
                double w = (double)g[i] - 100.0 < -87.0 ? 0.0 : exp((double)g[i] - 100.0);
                wsum += w;
                ck_assert_msg(fabs(ex[i] - w) <= 1e-6 * w + 1e-30, "expsum level %d", lvl);
            }
            ck_assert(ex[n] == 12345.0f);
            ck_assert_msg(fabs(got_sum - wsum) <= 1e-5 * wsum + 1e-30, "expsum sum level %d", lvl);
        }
    }
}
END_TEST

/* The attention tiles (vec.h: qk, softmax, pv) and the bf16 helpers at
 * every SIMD level against double-precision sums written out here, over
 * head sizes and tile shapes that reach every register block and tail. */
START_TEST(test_attn_tiles_levels) {
    enum { MAXK = 70, MAXQ = 80, MAXD = 264 };
    static const uint32_t hds[] = {8, 24, 40, 256, 264};
    static const uint32_t nks[] = {1, 3, 7, 64, 70};
    static const uint32_t nqs[] = {1, 5, 16, 33, 64, 80};
    float *K = malloc(sizeof(float) * MAXK * MAXD), *QT = malloc(sizeof(float) * MAXD * MAXQ);
    float *ST = malloc(sizeof(float) * MAXK * MAXQ), *S0 = malloc(sizeof(float) * MAXK * MAXQ);
    enum { OSZ = MAXQ * (MAXD + 3) };
    float *O = malloc(sizeof(float) * OSZ), *O0 = malloc(sizeof(float) * OSZ);
    uint16_t *Kb = malloc(sizeof(uint16_t) * MAXK * MAXD);
    ck_assert(K && QT && ST && S0 && O && O0 && Kb);
    uint64_t st = 5;
    for (int i = 0; i < MAXK * MAXD; i++) {
        K[i] = tu_rand_f32(&st);
        Kb[i] = mg__f32_to_bf16(tu_rand_f32(&st));
    }
    for (int i = 0; i < MAXD * MAXQ; i++) QT[i] = tu_rand_f32(&st);
    for (int i = 0; i < OSZ; i++) O0[i] = tu_rand_f32(&st);
    int checks = 0;
    for (int32_t lvl = MG_SIMD_SCALAR; lvl <= MG_SIMD_AVX512; lvl++) {
        const mg__vec_fns *v = mg__vec_for(lvl);
        for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
            for (size_t b = 0; b < sizeof nks / sizeof nks[0]; b++)
                for (size_t c = 0; c < sizeof nqs / sizeof nqs[0]; c++) {
                    const uint32_t hd = hds[a], nk = nks[b], nq = nqs[c];
                    const uint32_t ldq = (nq + 15) & ~15u;
                    /* qk: every column of ST up to ldq, scaled */
                    v->qk(K, nk, hd, QT, ldq, 0.5f, ST);
                    for (uint32_t j = 0; j < nk; j++)
                        for (uint32_t i = 0; i < ldq; i++) {
                            double w = 0, mag = 0;
                            for (uint32_t d = 0; d < hd; d++) {
                                double t = (double)K[(size_t)j * hd + d] * QT[(size_t)d * ldq + i];
                                w += t;
                                mag += fabs(t);
                            }
                            w *= 0.5;
                            ck_assert_msg(fabs(ST[(size_t)j * ldq + i] - w) <= 1e-6 * mag + 1e-7,
                                          "qk level %d hd %u nk %u nq %u", lvl, hd, nk, nq);
                        }
                    /* softmax step: scores of magnitude ~8 with masked
                     * entries, one column masked throughout, running m/l
                     * from an earlier step (and none for column 1) */
                    float m[MAXQ], l[MAXQ], al[MAXQ], m0[MAXQ], l0[MAXQ];
                    for (uint32_t i = 0; i < nq; i++) {
                        m0[i] = i == 1 ? -INFINITY : 4.0f * tu_rand_f32(&st);
                        l0[i] = i == 1 ? 0.0f : 1.0f + fabsf(tu_rand_f32(&st));
                        m[i] = m0[i];
                        l[i] = l0[i];
                    }
                    for (uint32_t j = 0; j < nk; j++)
                        for (uint32_t i = 0; i < ldq; i++) {
                            float x = 16.0f * ST[(size_t)j * ldq + i];
                            if ((i + 3 * j) % 5 == 0 || i == 1) x = -INFINITY;
                            S0[(size_t)j * ldq + i] = ST[(size_t)j * ldq + i] = x;
                        }
                    v->softmax(ST, ldq, nk, nq, m, l, al);
                    for (uint32_t i = 0; i < nq; i++) {
                        double mx = m0[i];
                        for (uint32_t j = 0; j < nk; j++)
                            if (S0[(size_t)j * ldq + i] > mx) mx = S0[(size_t)j * ldq + i];
                        ck_assert(m[i] == (float)mx);
                        double sum = 0;
                        for (uint32_t j = 0; j < nk; j++) {
                            double x = S0[(size_t)j * ldq + i];
                            double e = x - mx < -87.0 || isinf(x) ? 0.0 : exp(x - mx);
                            sum += e;
                            /* x - m rounds to float first: |x - m| ulps */
                            double tol = (1e-6 + 1.2e-7 * (isinf(x) ? 0 : fabs(x - mx))) * e;
                            ck_assert_msg(fabs(ST[(size_t)j * ldq + i] - e) <= tol + 1e-30,
                                          "softmax level %d", lvl);
                        }
                        double wa = isinf(mx) ? 1.0 : (m0[i] - mx < -87.0 ? 0.0 : exp(m0[i] - mx));
                        ck_assert_msg(fabs(al[i] - wa) <= (1e-6 + 1.2e-7 * (isinf(mx) ? 0 : fabs(m0[i] - mx))) * wa + 1e-30,
                                      "alpha level %d", lvl);
                        double wl = wa * l0[i] + sum;
                        ck_assert_msg(fabs(l[i] - wl) <= 1e-5 * wl + 1e-30, "l level %d", lvl);
                    }
                    /* pv into O rows hd + 3 apart; nothing past hd touched */
                    const uint64_t ldo = hd + 3;
                    memcpy(O, O0, sizeof(float) * OSZ);
                    v->pv(ST, ldq, nk, nq, K, hd, al, O, ldo);
                    for (uint32_t i = 0; i < MAXQ; i++)
                        for (uint32_t d = 0; d < ldo; d++) {
                            size_t at = (size_t)i * ldo + d;
                            if (i >= nq || d >= hd) {
                                ck_assert_msg(O[at] == O0[at], "pv wrote past its tile");
                                continue;
                            }
                            double w = (double)al[i] * O0[at], mag = fabs(w);
                            for (uint32_t j = 0; j < nk; j++) {
                                double t = (double)ST[(size_t)j * ldq + i] * K[(size_t)j * hd + d];
                                w += t;
                                mag += fabs(t);
                            }
                            ck_assert_msg(fabs(O[at] - w) <= 1e-6 * mag + 1e-7,
                                          "pv level %d hd %u nk %u nq %u", lvl, hd, nk, nq);
                        }
                    checks++;
                }
        /* bf16 helpers: exact widening; dot and axpy against doubles */
        for (uint32_t n = 0; n <= 70; n += (n < 20 ? 1 : 17)) {
            float f[80], y[80], y0[80];
            f[n] = 7.0f;
            v->bf16_f32(f, Kb, n);
            ck_assert(f[n] == 7.0f);
            double w = 0, mag = 0;
            for (uint32_t i = 0; i < n; i++) {
                ck_assert(f[i] == mg__bf16_to_f32(Kb[i]));
                w += (double)K[i] * f[i];
                mag += fabs((double)K[i] * f[i]);
                y0[i] = y[i] = K[i + 100];
            }
            y[n] = y0[n] = 3.0f;
            ck_assert(fabs(v->dot_bf16(K, Kb, n) - w) <= 1e-6 * mag + 1e-7);
            v->axpy_bf16(y, -0.25f, Kb, n);
            for (uint32_t i = 0; i <= n; i++)
                ck_assert(fabsf(y[i] - (i < n ? y0[i] - 0.25f * f[i] : 3.0f)) <= 1e-6f);
        }
    }
    fprintf(stderr, "check_kernels: attention tiles: %d shapes x levels\n", checks);
    free(K); free(QT); free(ST); free(S0); free(O); free(O0); free(Kb);
}
END_TEST

START_TEST(test_ops_hand_values) {
    float x[4] = {0.0f, (float)M_LN2, 0, 0};
    mg__softmax_ref(x, 2);
    ck_assert(fabs(x[0] - 1.0 / 3) < 1e-7 && fabs(x[1] - 2.0 / 3) < 1e-7);
    x[0] = 0.0f; x[1] = (float)M_LN2;
    mg__softmax(x, 2);
    ck_assert(fabs(x[0] - 1.0 / 3) < 1e-6 && fabs(x[1] - 2.0 / 3) < 1e-6);
    float big[3] = {1000.0f, 1000.0f, -1000.0f};
    mg__softmax(big, 3);
    ck_assert(fabs(big[0] - 0.5) < 1e-6 && big[2] == 0.0f);
    float one = 1.0f;
    mg__softmax(&one, 1);
    ck_assert(one == 1.0f);

    float g[3] = {1.0f, 0.0f, -1.0f}, gy[3];
    mg__gelu_tanh_ref(gy, g, 3);
    ck_assert(fabs(gy[0] - 0.841192) < 1e-6);
    ck_assert(gy[1] == 0.0f);
    ck_assert(fabs(gy[2] + 0.158808) < 1e-6);
    mg__gelu_tanh(gy, g, 3);
    ck_assert(fabs(gy[0] - 0.841192) < 2e-6 && fabs(gy[2] + 0.158808) < 2e-6);

    /* rmsnorm of a constant vector c: c / sqrt(c^2 + eps) * w */
    float c[8], w[8], y[8];
    for (int i = 0; i < 8; i++) { c[i] = 3.0f; w[i] = 0.5f; }
    mg__rmsnorm_ref(y, c, w, 8, 1e-6f, 0);
    for (int i = 0; i < 8; i++) ck_assert(fabs(y[i] - 3.0 / sqrt(9.0 + 1e-6) * 0.5) < 1e-7);
    mg__rmsnorm(y, c, w, 8, 1e-6f, 1); /* Gemma: x * (1 + w) */
    for (int i = 0; i < 8; i++) ck_assert(fabs(y[i] - 3.0 / sqrt(9.0 + 1e-6) * 1.5) < 1e-6);
    mg__rmsnorm(c, c, w, 8, 0.0f, 0); /* in place */
    for (int i = 0; i < 8; i++) ck_assert(fabs(c[i] - 0.5) < 1e-6);

    /* layernorm of [1 2 3 4]: mean 2.5, var 1.25 */
    float l[4] = {1, 2, 3, 4}, ly[4], lw[4] = {1, 1, 2, 2}, lb[4] = {0, 1, 0, 1};
    mg__layernorm_ref(ly, l, NULL, NULL, 4, 0.0f);
    for (int i = 0; i < 4; i++) ck_assert(fabs(ly[i] - (l[i] - 2.5) / sqrt(1.25)) < 1e-6);
    mg__layernorm(ly, l, lw, lb, 4, 0.0f);
    for (int i = 0; i < 4; i++)
        ck_assert(fabs(ly[i] - ((l[i] - 2.5) / sqrt(1.25) * lw[i] + lb[i])) < 1e-6);

    /* rope at position 0 is the identity */
    float r[8] = {1, 2, 3, 4, 5, 6, 7, 8}, r0[8];
    memcpy(r0, r, sizeof r);
    mg__rope_ref(r, 8, 0.0, 10000.0, 1.0);
    ck_assert(memcmp(r, r0, sizeof r) == 0);
    mg__rope(r, 8, 0.0, 10000.0, 1.0);
    ck_assert(memcmp(r, r0, sizeof r) == 0);
    /* head_dim 2: pairs (0, 1) rotate by theta = pos */
    float p[2] = {1.0f, 0.0f};
    mg__rope_ref(p, 2, 1.0, 10000.0, 1.0);
    ck_assert(fabs(p[0] - cos(1.0)) < 1e-7 && fabs(p[1] - sin(1.0)) < 1e-7);
    /* head_dim 4, pos 2: theta_0 = 2, theta_1 = 2 * 10000^-0.5 = 0.02;
     * pairs are (0, 2) and (1, 3); scale 2 halves the angles */
    float q[4] = {1, 1, 0, 0};
    mg__rope(q, 4, 4.0, 10000.0, 2.0);
    ck_assert(fabs(q[0] - cos(2.0)) < 1e-6 && fabs(q[2] - sin(2.0)) < 1e-6);
    ck_assert(fabs(q[1] - cos(0.02)) < 1e-6 && fabs(q[3] - sin(0.02)) < 1e-6);
}
END_TEST

START_TEST(test_ops_vs_ref) {
    uint64_t seed = 21;
    uint64_t sizes[] = {1, 2, 7, 8, 33, 256, 1152, 2560};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint64_t n = sizes[s];
        float *x = malloc(n * 4), *w = malloc(n * 4), *b = malloc(n * 4),
              *a = malloc(n * 4), *r = malloc(n * 4);
        fill(x, n, &seed, 4.0f);
        fill(w, n, &seed, 1.0f);
        fill(b, n, &seed, 1.0f);
        for (int add_one = 0; add_one < 2; add_one++) {
            mg__rmsnorm(a, x, w, n, 1e-6f, add_one);
            mg__rmsnorm_ref(r, x, w, n, 1e-6f, add_one);
            assert_close(a, r, n, 1e-5, 1e-6, "rmsnorm");
        }
        mg__layernorm(a, x, w, b, n, 1e-6f);
        mg__layernorm_ref(r, x, w, b, n, 1e-6f);
        assert_close(a, r, n, 1e-4, 1e-5, "layernorm");
        mg__layernorm(a, x, NULL, b, n, 1e-6f);
        mg__layernorm_ref(r, x, NULL, b, n, 1e-6f);
        assert_close(a, r, n, 1e-4, 1e-5, "layernorm(w=NULL)");
        memcpy(a, x, n * 4);
        memcpy(r, x, n * 4);
        mg__softmax(a, n);
        mg__softmax_ref(r, n);
        assert_close(a, r, n, 1e-5, 1e-8, "softmax");
        double tot = 0;
        for (uint64_t i = 0; i < n; i++) tot += a[i];
        ck_assert(fabs(tot - 1.0) < 1e-5);
        mg__gelu_tanh(a, x, n);
        mg__gelu_tanh_ref(r, x, n);
        assert_close(a, r, n, 1e-5, 1e-6, "gelu");
        if (n % 2 == 0) {
            double pos[] = {1, 17, 4095, 131071};
            for (size_t k = 0; k < 4; k++) {
                memcpy(a, x, n * 4);
                memcpy(r, x, n * 4);
                mg__rope(a, n, pos[k], 1e6, 1.0);
                mg__rope_ref(r, n, pos[k], 1e6, 1.0);
                assert_close(a, r, n, 1e-5, 1e-5, "rope");
                /* rotation keeps each pair's norm */
                for (uint64_t i = 0; i < n / 2; i++) {
                    double n0 = hypot(x[i], x[i + n / 2]), n1 = hypot(a[i], a[i + n / 2]);
                    ck_assert(fabs(n0 - n1) <= 1e-5 * (n0 + 1));
                }
            }
        }
        free(x); free(w); free(b); free(a); free(r);
    }
}
END_TEST

/* ============================================================ pool */

typedef struct {
    _Atomic uint64_t sum;
    _Atomic uint32_t hits[256];
    uint32_t size;               /* the pool's threads                     */
    _Atomic uint32_t busy[8];    /* per worker number: a task is running   */
    _Atomic uint32_t bad_worker; /* numbers out of range or used twice     */
} pool_probe;

static void probe_task(void *arg, uint32_t i, uint32_t n) {
    pool_probe *p = arg;
    uint32_t w = mg__pool_worker();
    if (w >= p->size || w >= 8 || atomic_exchange(&p->busy[w], 1) != 0) {
        atomic_fetch_add(&p->bad_worker, 1);
        w = UINT32_MAX;
    }
    atomic_fetch_add(&p->sum, (uint64_t)i + 1);
    if (i < 256 && i < n) atomic_fetch_add(&p->hits[i], 1);
    if (w != UINT32_MAX) atomic_store(&p->busy[w], 0);
}

START_TEST(test_pool) {
    ck_assert_ptr_null(mg__pool_new(0));
    ck_assert_uint_eq(mg__pool_size(NULL), 1);
    mg__pool_free(NULL);
    uint32_t sizes[] = {1, 2, 3, 4, 8};
    int runs = tu_under_valgrind() ? 50 : 2000;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        mg__pool *p = mg__pool_new(sizes[s]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq(mg__pool_size(p), sizes[s]);
        for (int run = 0; run < runs; run++) {
            uint32_t n = (uint32_t)(run % 70);
            pool_probe pr;
            memset(&pr, 0, sizeof pr);
            pr.size = sizes[s];
            mg__pool_run(p, probe_task, &pr, n);
            ck_assert_uint_eq(atomic_load(&pr.sum), (uint64_t)n * (n + 1) / 2);
            /* worker numbers: below the pool's size, never two tasks at once */
            ck_assert_uint_eq(atomic_load(&pr.bad_worker), 0);
            for (uint32_t i = 0; i < n; i++) ck_assert_uint_eq(atomic_load(&pr.hits[i]), 1);
            if (run % 500 == 7) usleep(3000); /* let the workers fall asleep */
        }
        mg__pool_free(p);
    }
    /* NULL pool runs inline, in order */
    pool_probe pr;
    memset(&pr, 0, sizeof pr);
    pr.size = 1;
    mg__pool_run(NULL, probe_task, &pr, 10);
    ck_assert_uint_eq(atomic_load(&pr.sum), 55);
    ck_assert_uint_eq(atomic_load(&pr.bad_worker), 0);
    mg__pool_run(NULL, NULL, &pr, 10); /* no function: nothing */
    /* create and destroy without running */
    for (int i = 0; i < 20; i++) mg__pool_free(mg__pool_new(3));
}
END_TEST

static void slow_task(void *arg, uint32_t i, uint32_t n) {
    (void)n;
    usleep(1000 + 500 * (i % 3));
    atomic_fetch_add((_Atomic uint64_t *)arg, 1);
}

/* A task that runs an inline job (pool NULL, as the kernels do for small
 * work) keeps its own worker number afterwards, so per-thread scratch
 * indexed by mg__pool_worker() stays private to each thread. */
static void inner_task(void *arg, uint32_t i, uint32_t n) {
    (void)n;
    ((uint32_t *)arg)[i] = mg__pool_worker();
}

typedef struct { _Atomic uint32_t bad; _Atomic uint32_t seen[8][64]; } nest_job;

static void outer_task(void *arg, uint32_t i, uint32_t n) {
    nest_job *j = arg;
    (void)n;
    uint32_t before = mg__pool_worker(), inner[2] = {99, 99};
    mg__pool_run(NULL, inner_task, inner, 2);
    if (inner[0] != 0 || inner[1] != 0 || mg__pool_worker() != before) atomic_store(&j->bad, 1);
    if (before < 8) atomic_fetch_add(&j->seen[before][i % 64], 1);
    for (volatile int spin = 0; spin < 20000; spin++) {
    }
}

START_TEST(test_pool_worker_nested) {
    mg__pool *pool = mg__pool_new(3);
    ck_assert_ptr_nonnull(pool);
    static nest_job j;
    for (int rep = 0; rep < 20; rep++) mg__pool_run(pool, outer_task, &j, 64);
    uint32_t bad = atomic_load(&j.bad);
    ck_assert_msg(bad == 0, "a worker lost its number after an inline run");
    /* every task saw one of the pool's numbers */
    uint32_t total = 0;
    for (int w = 0; w < 8; w++)
        for (int i = 0; i < 64; i++) {
            if (w >= 3) ck_assert_uint_eq(atomic_load(&j.seen[w][i]), 0);
            total += atomic_load(&j.seen[w][i]);
        }
    ck_assert_uint_eq(total, 20 * 64);
    mg__pool_free(pool);
}
END_TEST

START_TEST(test_pool_sleepy) {
    /* tasks long enough that the caller and workers go to sleep */
    mg__pool *p = mg__pool_new(4);
    ck_assert_ptr_nonnull(p);
    for (int run = 0; run < 5; run++) {
        _Atomic uint64_t c = 0;
        mg__pool_run(p, slow_task, &c, 9);
        ck_assert_uint_eq(atomic_load(&c), 9);
        usleep(5000);
    }
    mg__pool_free(p);
}
END_TEST


/* ============================================================ packed bf16 */

/* mg__bf16_pack's words against the layout kernels.h spells out, from a
 * row-major source and from a transposed one; the packed product against
 * mg__gemm_bf16 (bit for bit: the same tiles) and a double reference. */
/* mg__dense_rows_ex: bias, a residual sum (acc) and GELU done in the
 * product's own pass over Y where bf16 tiles run (mg__matmul_fused), in
 * steps elsewhere; both against double sums of the values the product
 * multiplies (X rounded to bf16 on the tiles, kept in f32 by sgemm). */
START_TEST(test_dense_fused) {
    struct { uint64_t rows, cols, n; } sh[] = {
        {33, 64, 9}, {72, 1100, 13}, {100, 36, 2}, {1152, 64, 17}, {40, 520, 1},
    };
    size_t ns = sizeof sh / sizeof sh[0];
    uint64_t seed = 777;
    mg__pool *pool = mg__pool_new(2);
    ck_assert_ptr_nonnull(pool);
    int fast = mg__matmul_pooled(MG_DTYPE_BF16, 64);
    for (size_t s = 0; s < ns; s++)
        for (int mode = 0; mode < 3; mode++) { /* plain + bias, acc, GELU */
            uint64_t rows = sh[s].rows, cols = sh[s].cols, n = sh[s].n;
            int acc = mode == 1, act = mode == 2 ? MG__ACT_GELU : MG__ACT_NONE;
            float *W = malloc(rows * cols * 4), *X = malloc(n * cols * 4);
            float *bias = malloc(rows * 4), *Y = malloc(n * rows * 4), *Y0 = malloc(n * rows * 4);
            float *tmp = malloc(n * rows * 4);
            uint16_t *wb = malloc(rows * cols * 2);
            size_t sb = mg__matmul_scratch_size(MG_DTYPE_BF16, cols);
            mg__dense_ws ws = {NULL, mg__dense_stride(sb), 2};
            ws.mm = mg__aligned_alloc(64, 2 * ws.stride * 4);
            ck_assert(W && X && bias && Y && Y0 && tmp && wb && ws.mm);
            fill(W, rows * cols, &seed, 1.0f);
            fill(X, n * cols, &seed, 1.0f);
            fill(bias, rows, &seed, 0.5f);
            fill(Y0, n * rows, &seed, 4.0f);
            for (uint64_t i = 0; i < rows * cols; i++) wb[i] = mg__f32_to_bf16(W[i]);
            memcpy(Y, Y0, n * rows * 4);
            mg__dense m = {wb, MG_DTYPE_BF16, cols, rows};
            /* what the one-pass path is asked, and whether it takes it */
            float *probe = malloc(n * rows * 4);
            ck_assert_ptr_nonnull(probe);
            memcpy(probe, Y0, n * rows * 4);
            int took = mg__matmul_fused(MG_DTYPE_BF16, wb, rows, cols, X, n, probe, ws.mm,
                                        pool, bias, acc, act);
            ck_assert_int_eq(took, fast && n >= 2);
            mg__dense_rows_ex(&m, X, (uint32_t)n, bias, acc, act, Y, tmp, &ws, pool);
            if (took) ck_assert_int_eq(memcmp(probe, Y, n * rows * 4), 0);
            int tiles = took; /* X rounded to bf16 (n = 1 goes to the matvec, in f32) */
            for (uint64_t t = 0; t < n; t++)
                for (uint64_t r = 0; r < rows; r++) {
                    double v = bias[r], mag = fabs(bias[r]);
                    for (uint64_t c = 0; c < cols; c++) {
                        double w = mg__bf16_to_f32(wb[r * cols + c]);
                        double x = tiles ? mg__bf16_to_f32(mg__f32_to_bf16(X[t * cols + c]))
                                         : X[t * cols + c];
                        v += w * x;
                        mag += fabs(w * x);
                    }
                    if (acc) {
                        v += Y0[t * rows + r];
                        mag += fabs(Y0[t * rows + r]);
                    }
                    double tol = 1e-5 * mag + 1e-30;
                    if (act == MG__ACT_GELU) {
                        v = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
                        tol = 1.2e-5 * mag + 1e-6 * fabs(v) + 1e-30;
                    }
                    ck_assert_msg(fabs(Y[t * rows + r] - v) <= tol,
                                  "shape %zu mode %d: Y[%" PRIu64 "][%" PRIu64 "] %g vs %g", s,
                                  mode, t, r, (double)Y[t * rows + r], v);
                }
            free(W), free(X), free(bias), free(Y), free(Y0), free(tmp), free(wb), free(probe);
            mg__aligned_free(ws.mm);
        }
    /* a residual sum with GELU is not a thing the product does */
    float w2[4] = {0}, x2[4] = {0}, y2[4] = {0};
    ck_assert_int_eq(mg__matmul_fused(MG_DTYPE_BF16, w2, 2, 2, x2, 2, y2, y2, pool, NULL, 1,
                                      MG__ACT_GELU), 0);
    mg__pool_free(pool);
}
END_TEST

START_TEST(test_bf16_packed) {
    struct { uint64_t rows, cols, n; } sh[] = {
        {1, 2, 1}, {17, 72, 9}, {32, 72, 64}, {72, 1100, 13}, {100, 36, 8}, {72, 4096, 20},
    };
    size_t ns = sizeof sh / sizeof sh[0];
    if (tu_under_valgrind()) ns = 4;
    uint64_t seed = 4242;
    mg__pool *pool = mg__pool_new(2);
    ck_assert_ptr_nonnull(pool);
    int fast = mg__matmul_pooled(MG_DTYPE_BF16, 64);
    for (size_t s = 0; s < ns; s++) {
        uint64_t rows = sh[s].rows, cols = sh[s].cols, n = sh[s].n;
        uint64_t words = mg__bf16_packed_words(rows, cols);
        ck_assert_uint_eq(words, (rows + 31) / 32 * 32 * (cols / 2));
        float *W = malloc(rows * cols * 4), *WT = malloc(rows * cols * 4);
        float *X = malloc(n * cols * 4), *Y = malloc(n * rows * 4), *Z = malloc(n * rows * 4);
        uint16_t *wb = malloc(rows * cols * 2), *xb = malloc(n * cols * 2);
        uint32_t *P = mg__aligned_alloc(64, words * 4), *PT = mg__aligned_alloc(64, words * 4);
        ck_assert(W && WT && X && Y && Z && wb && xb && P && PT);
        fill(W, rows * cols, &seed, 1.0f);
        fill(X, n * cols, &seed, 1.0f);
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t c = 0; c < cols; c++) WT[c * rows + r] = W[r * cols + c];
        const float sc = 0.37f;
        mg__bf16_pack(P, W, cols, 1, rows, cols, sc);
        mg__bf16_pack(PT, WT, 1, rows, rows, cols, sc);
        for (uint64_t w = 0; w < words; w++) {
            uint64_t j = w % 16, g = w / 16 % 2, q = w / 32 % (cols / 2), p = w / 32 / (cols / 2);
            uint64_t r = 32 * p + 16 * g + j;
            uint32_t want = 0;
            if (r < rows)
                want = mg__f32_to_bf16(sc * W[r * cols + 2 * q]) |
                       (uint32_t)mg__f32_to_bf16(sc * W[r * cols + 2 * q + 1]) << 16;
            ck_assert_msg(P[w] == want && PT[w] == want,
                          "%zu: word %" PRIu64 " (row %" PRIu64 ", pair %" PRIu64 ")", s, w, r, q);
        }
        for (uint64_t i = 0; i < rows * cols; i++) wb[i] = mg__f32_to_bf16(sc * W[i]);
        for (uint64_t i = 0; i < n * cols; i++) xb[i] = mg__f32_to_bf16(X[i]);
        mg__gemm_bf16_packed(P, rows, cols, xb, cols, n, Y, rows, pool);
        for (uint64_t t = 0; t < n; t++)
            for (uint64_t r = 0; r < rows; r++) {
                double ref = 0, mag = 0;
                for (uint64_t c = 0; c < cols; c++) {
                    double a = mg__bf16_to_f32(wb[r * cols + c]), b = mg__bf16_to_f32(xb[t * cols + c]);
                    ref += a * b;
                    mag += fabs(a * b);
                }
                ck_assert_msg(fabs(Y[t * rows + r] - ref) <= 1e-6 * mag + 1e-30,
                              "%zu: Y[%" PRIu64 "][%" PRIu64 "] %g vs %g", s, t, r,
                              (double)Y[t * rows + r], ref);
            }
        if (fast) { /* the unpacked product on the same values: the same bits */
            uint16_t *xs = malloc(n * cols * 2);
            float *Xb = malloc(n * cols * 4);
            ck_assert(xs && Xb);
            for (uint64_t i = 0; i < n * cols; i++) Xb[i] = mg__bf16_to_f32(xb[i]);
            mg__gemm_bf16(wb, rows, cols, Xb, cols, 1.0f, n, Z, rows, xs, NULL);
            ck_assert_int_eq(memcmp(Y, Z, n * rows * 4), 0);
            free(xs);
            free(Xb);
        }
        free(W), free(WT), free(X), free(Y), free(Z), free(wb), free(xb);
        mg__aligned_free(P);
        mg__aligned_free(PT);
    }
    mg__pool_free(pool);
}
END_TEST

/* mg__mha_run (f32, and bf16 where the CPU has it) against attention in
 * double: plain for f32; for bf16 with the same roundings (q / sqrt(hd), k,
 * v and the softmax numerators to bf16). Pools of 1 and 2 threads. */
START_TEST(test_mha) {
    struct { uint32_t n, heads, hd; } sh[] = {{1, 1, 2}, {50, 3, 8}, {130, 2, 72}, {300, 2, 16}};
    uint64_t seed = 99;
    for (int bf = 0; bf < 2; bf++)
        for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
            const uint32_t N = sh[s].n, H = sh[s].heads, hd = sh[s].hd, D = H * hd;
            if (bf && !mg__mha_bf16_ok(N, hd)) continue;
            float *q = malloc((size_t)N * D * 4), *k = malloc((size_t)N * D * 4),
                  *v = malloc((size_t)N * D * 4), *o = malloc((size_t)N * D * 4);
            double *p = malloc((size_t)N * 8);
            ck_assert(q && k && v && o && p);
            fill(q, (uint64_t)N * D, &seed, 2.0f);
            fill(k, (uint64_t)N * D, &seed, 2.0f);
            fill(v, (uint64_t)N * D, &seed, 1.0f);
            for (uint32_t nt = 1; nt <= 2; nt++) {
                mg__mha a = {N, H, hd, bf};
                uint64_t bytes = 0;
                ck_assert_int_eq(mg__mha_scratch_bytes(&a, nt, &bytes), 0);
                void *scratch = mg__aligned_alloc(64, bytes);
                mg__pool *pool = mg__pool_new(nt);
                ck_assert(scratch && pool);
                memset(o, 0, (size_t)N * D * 4);
                mg__mha_run(&a, q, k, v, o, scratch, nt, pool);
                const float scale = 1.0f / sqrtf((float)hd);
#define RB(x) (bf ? (double)mg__bf16_to_f32(mg__f32_to_bf16(x)) : (double)(x))
                double worst = 0;
                for (uint32_t h = 0; h < H; h++)
                    for (uint32_t i = 0; i < N; i++) {
                        double m = -INFINITY, sum = 0;
                        for (uint32_t j = 0; j < N; j++) {
                            double d = 0;
                            for (uint32_t c = 0; c < hd; c++)
                                d += (bf ? RB(scale * q[(size_t)i * D + h * hd + c])
                                         : scale * (double)q[(size_t)i * D + h * hd + c]) *
                                     RB(k[(size_t)j * D + h * hd + c]);
                            p[j] = d;
                            if (d > m) m = d;
                        }
                        for (uint32_t j = 0; j < N; j++) {
                            double e = exp(p[j] - m);
                            sum += e;
                            p[j] = RB((float)e);
                        }
                        for (uint32_t c = 0; c < hd; c++) {
                            double r = 0;
                            for (uint32_t j = 0; j < N; j++) r += p[j] * RB(v[(size_t)j * D + h * hd + c]);
                            r /= sum;
                            double err = fabs(o[(size_t)i * D + h * hd + c] - r);
                            if (err > worst) worst = err;
                        }
                    }
#undef RB
                /* measured: f32 <= 4e-7, bf16 <= 1.1e-5 (a sum or exp an
                 * f32 ulp off can round a numerator the other way) */
                double tol = bf ? 1e-4 : 4e-6;
                ck_assert_msg(worst <= tol, "bf16 %d n %u heads %u hd %u threads %u: err %g", bf,
                              N, H, hd, nt, worst);
                mg__aligned_free(scratch);
                mg__pool_free(pool);
            }
            free(q), free(k), free(v), free(o), free(p);
        }
}
END_TEST

static Suite *kernels_suite(void) {
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("dtype");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_dtype_facts);
    tcase_add_test(tc, test_f16_cases);
#if defined(HW_F16)
    tcase_add_test(tc, test_f16_vs_hardware);
#endif
    tcase_add_test(tc, test_bf16_cases);
    tcase_add_test(tc, test_q8_0_block);
    tcase_add_test(tc, test_q4_0_block);
    tcase_add_test(tc, test_quantize_roundtrip);
    tcase_add_test(tc, test_quantize_nonfinite);
    suite_add_tcase(s, tc);

    tc = tcase_create("matvec");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_matvec_shapes, 0, NDT);
    tcase_add_test(tc, test_matvec_pools);
    tcase_add_test(tc, test_matvec_edges);
#if defined(MG_X86_AVX2)
    tcase_add_test(tc, test_rows_variants);
#endif
    tcase_add_test(tc, test_q4x16);
    tcase_add_test(tc, test_matvec_multi);
    suite_add_tcase(s, tc);

    tc = tcase_create("matmul");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_matmul, 0, NDT);
    tcase_add_test(tc, test_bf16_packed);
    tcase_add_test(tc, test_dense_fused);
    tcase_add_test(tc, test_mha);
    suite_add_tcase(s, tc);

    tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ops_hand_values);
    tcase_add_test(tc, test_ops_vs_ref);
    tcase_add_test(tc, test_vec_levels);
    tcase_add_test(tc, test_attn_tiles_levels);
    suite_add_tcase(s, tc);

    tc = tcase_create("pool");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pool);
    tcase_add_test(tc, test_pool_sleepy);
    tcase_add_test(tc, test_pool_worker_nested);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(kernels_suite()); }
