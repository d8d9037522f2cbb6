/* kquant.c - dequantization of GGML's Q4_K and Q6_K super-blocks (256
 * values), so that GGUF files using them can be converted (the values are
 * then stored in one of the .mgm types). Layouts:
 *   Q4_K (144 bytes): f16 d, f16 dmin, 12 bytes of packed 6-bit scales and
 *     mins for 8 sub-blocks of 32, 128 bytes of nibbles; each 64 values use
 *     32 bytes, low nibbles first: value = d*sc*q - dmin*m.
 *   Q6_K (210 bytes): 128 bytes low nibbles ql, 64 bytes high 2-bit pairs qh,
 *     16 int8 scales (one per 16 values), f16 d; value = d*sc*(q - 32). */
#include "convert/convert.h"
#include "kernels/kernels.h"

#include <string.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Sub-block j's 6-bit scale and min from the 12 packed bytes. */
static void scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

void mg__dequant_q4_k(float *y, const void *src, uint64_t n) {
    const uint8_t *b = src;
    for (uint64_t i = 0; i < n / 256; i++, b += 144) {
        float d = mg__f16_to_f32(rd16(b)), dmin = mg__f16_to_f32(rd16(b + 2));
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int c = 0; c < 4; c++, q += 32) {
            uint8_t sc, m;
            scale_min(2 * c, scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            scale_min(2 * c + 1, scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void mg__dequant_q6_k(float *y, const void *src, uint64_t n) {
    const uint8_t *b = src;
    for (uint64_t i = 0; i < n / 256; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = mg__f16_to_f32(rd16(b + 208));
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8)
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
    }
}
