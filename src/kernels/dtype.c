/* dtype.c - dtype facts, f16/bf16 scalar conversions, and conversion of f32
 * arrays to and from every dtype's layout (q8_0/q4_0 blocks as in GGML). */
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

uint32_t mg__dtype_block_elems(int32_t dtype) {
    switch (dtype) {
    case MG_DTYPE_F32: case MG_DTYPE_F16: case MG_DTYPE_BF16: return 1;
    case MG_DTYPE_Q8_0: case MG_DTYPE_Q4_0: return MG__QK;
    default: return 0;
    }
}

uint32_t mg__dtype_block_bytes(int32_t dtype) {
    switch (dtype) {
    case MG_DTYPE_F32: return 4;
    case MG_DTYPE_F16: return 2;
    case MG_DTYPE_BF16: return 2;
    case MG_DTYPE_Q8_0: return (uint32_t)sizeof(mg__block_q8_0);
    case MG_DTYPE_Q4_0: return (uint32_t)sizeof(mg__block_q4_0);
    default: return 0;
    }
}

uint64_t mg__dtype_bytes(int32_t dtype, uint64_t n, int *ok) {
    uint32_t be = mg__dtype_block_elems(dtype), bb = mg__dtype_block_bytes(dtype);
    uint64_t out;
    if (ok) *ok = 0;
    if (!be || n % be) return 0;
    if (mg__mul_u64(n / be, bb, &out)) return 0;
    if (ok) *ok = 1;
    return out;
}

/* ---- scalar conversions -------------------------------------------------- */

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float mg__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) { /* inf, or nan: keep the payload, make it quiet */
        if (man == 0) return bits_f32(sign | 0x7f800000u);
        return bits_f32(sign | 0x7fc00000u | (man << 13));
    }
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t mg__f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf or nan */
        if (ax == 0x7f800000u) return sign | 0x7c00u;
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) { /* below 2^-14: subnormal half or zero */
        if (ax <= 0x33000000u) return sign; /* <= 2^-25 rounds to 0 (even) */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u),
                 half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (ax - 0x38000000u) >> 13, rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

float mg__bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t mg__f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* nan: truncate, force quiet */
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ---- blocks --------------------------------------------------------------- */

/* q8_0: d = amax / 127, q = round(x / d) (computed as x * (1/d), rounding
 * half away from zero, as GGML does). Non-finite input yields a non-finite
 * d; the quants are then clamped rather than left undefined. */
static void quantize_q8_0(mg__block_q8_0 *b, const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < MG__QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax || a != a) amax = a;
    }
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = mg__f32_to_f16(d);
    for (int j = 0; j < MG__QK; j++) {
        float v = roundf(x[j] * id);
        if (!(v == v)) v = 0.0f;
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        b->qs[j] = (int8_t)v;
    }
}

/* q4_0: d = m / -8 where m is the value of largest magnitude (with its sign);
 * q = min(15, trunc(x / d + 8.5)); element j in the low nibble of qs[j],
 * element j + 16 in the high nibble. */
static void quantize_q4_0(mg__block_q4_0 *b, const float *x) {
    float amax = 0.0f, m = 0.0f;
    for (int j = 0; j < MG__QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax || a != a) { amax = a; m = x[j]; }
    }
    float d = m / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = mg__f32_to_f16(d);
    for (int j = 0; j < MG__QK / 2; j++) {
        float v0 = x[j] * id + 8.5f, v1 = x[j + MG__QK / 2] * id + 8.5f;
        int q0 = (v0 >= 0.0f) ? (v0 < 15.0f ? (int)v0 : 15) : 0;
        int q1 = (v1 >= 0.0f) ? (v1 < 15.0f ? (int)v1 : 15) : 0;
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

int mg__quantize(int32_t dtype, void *dst, const float *src, uint64_t n) {
    int ok;
    mg__dtype_bytes(dtype, n, &ok);
    if (!ok || (n && (!dst || !src))) return -1;
    switch (dtype) {
    case MG_DTYPE_F32:
        if (n) memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case MG_DTYPE_F16: {
        uint16_t *d = dst;
        for (uint64_t i = 0; i < n; i++) d[i] = mg__f32_to_f16(src[i]);
        return 0;
    }
    case MG_DTYPE_BF16: {
        uint16_t *d = dst;
        for (uint64_t i = 0; i < n; i++) d[i] = mg__f32_to_bf16(src[i]);
        return 0;
    }
    case MG_DTYPE_Q8_0: {
        mg__block_q8_0 *b = dst;
        for (uint64_t i = 0; i < n / MG__QK; i++)
            quantize_q8_0(&b[i], src + i * MG__QK);
        return 0;
    }
    case MG_DTYPE_Q4_0: {
        mg__block_q4_0 *b = dst;
        for (uint64_t i = 0; i < n / MG__QK; i++)
            quantize_q4_0(&b[i], src + i * MG__QK);
        return 0;
    }
    default:
        return -1;
    }
}

void mg__dequantize_ref_row(int32_t dtype, float *dst, const void *src,
                            uint64_t n) {
    switch (dtype) {
    case MG_DTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case MG_DTYPE_F16: {
        const uint16_t *s = src;
        for (uint64_t i = 0; i < n; i++) dst[i] = mg__f16_to_f32(s[i]);
        break;
    }
    case MG_DTYPE_BF16: {
        const uint16_t *s = src;
        for (uint64_t i = 0; i < n; i++) dst[i] = mg__bf16_to_f32(s[i]);
        break;
    }
    case MG_DTYPE_Q8_0: {
        const mg__block_q8_0 *b = src;
        for (uint64_t i = 0; i < n / MG__QK; i++) {
            float d = mg__f16_to_f32(b[i].d);
            for (int j = 0; j < MG__QK; j++)
                dst[i * MG__QK + j] = d * (float)b[i].qs[j];
        }
        break;
    }
    case MG_DTYPE_Q4_0: {
        const mg__block_q4_0 *b = src;
        for (uint64_t i = 0; i < n / MG__QK; i++) {
            float d = mg__f16_to_f32(b[i].d);
            float *o = dst + i * MG__QK;
            for (int j = 0; j < MG__QK / 2; j++) {
                o[j] = d * (float)((int)(b[i].qs[j] & 0x0f) - 8);
                o[j + MG__QK / 2] = d * (float)((int)(b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    default:
        break;
    }
}

int mg__dequantize(int32_t dtype, float *dst, const void *src, uint64_t n) {
    int ok;
    mg__dtype_bytes(dtype, n, &ok);
    if (!ok || (n && (!dst || !src))) return -1;
    if (n) mg__dequant_row(dtype, dst, src, n);
    return 0;
}
