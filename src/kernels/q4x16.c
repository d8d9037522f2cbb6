/* q4x16.c - the decode layout of q4_0 weights: 16 rows interleaved.
 *
 * A q4_0 row is read one 18-byte block after another; a matvec over such
 * rows gathers each block's 16 quant bytes and its f16 scale into vectors,
 * and the rearranged activations it needs are loaded again for every row.
 * In this layout (kernels.h, MG__DTYPE_Q4_0X16) one 64-byte vector holds
 * four quant bytes of the same block of 16 rows, one row per 32-bit lane,
 * so an integer dot-product instruction works on 16 rows at once with the
 * activation bytes broadcast, and the 16 scales of a block are one 32-byte
 * load. Decoder matrices are rearranged in place when a model is loaded
 * (llm/decoder.c through io/mgm.c's mg__mgm_repack_q4x16): the bytes are
 * the same, only their order changes.
 *
 * This file: the packing, the scalar element and row access, and the
 * scalar row kernel (the reference the SIMD kernel is tested against, and
 * the kernel of every level below AVX512-VNNI). */
#include "kernels/kernels.h"

#include <string.h>

int mg__q4x16_fits(uint64_t rows, uint64_t cols) {
    return rows > 0 && rows % 16 == 0 && cols > 0 && cols % 64 == 0 &&
           cols <= MG__Q4X16_MAX_COLS;
}

_Static_assert(MG__Q4X16_PAIR == 2 * 16 * sizeof(mg__block_q4_0), "a pair holds 2 blocks of 16 rows");

void mg__q4x16_pack_group(void *dst, const void *src, uint64_t cols) {
    const size_t rb = (size_t)(cols / MG__QK) * sizeof(mg__block_q4_0);
    uint8_t *g = dst;
    for (uint64_t b = 0; b < cols / MG__QK; b++) {
        uint8_t *q = (uint8_t *)mg__q4x16_quants(g, b), *s = (uint8_t *)mg__q4x16_scales(g, b);
        for (uint32_t i = 0; i < 16; i++) {
            const mg__block_q4_0 *blk =
                (const mg__block_q4_0 *)((const char *)src + i * rb) + b;
            memcpy(s + 2 * i, &blk->d, 2);
            for (uint32_t k = 0; k < 4; k++) memcpy(q + 64 * k + 4 * i, blk->qs + 4 * k, 4);
        }
    }
}

int mg__q4x16_pack(void *W, uint64_t rows, uint64_t cols) {
    if (!W || !mg__q4x16_fits(rows, cols)) return -1;
    const size_t gb = 16 * (size_t)(cols / MG__QK) * sizeof(mg__block_q4_0);
    void *tmp = mg__malloc(gb);
    if (!tmp) return -1;
    for (uint64_t g = 0; g < rows / 16; g++) {
        uint8_t *p = (uint8_t *)W + g * gb;
        memcpy(tmp, p, gb);
        mg__q4x16_pack_group(p, tmp, cols);
    }
    mg__free(tmp);
    return 0;
}

float mg__q4x16_elem(const void *W, uint64_t cols, uint64_t r, uint64_t c) {
    const size_t gb = 16 * (size_t)(cols / MG__QK) * sizeof(mg__block_q4_0);
    const uint8_t *g = (const uint8_t *)W + (r / 16) * gb;
    uint32_t i = (uint32_t)(r % 16), j = (uint32_t)(c % MG__QK);
    uint64_t b = c / MG__QK;
    uint16_t d;
    memcpy(&d, mg__q4x16_scales(g, b) + 2 * i, 2);
    uint8_t byte = mg__q4x16_quants(g, b)[64 * ((j % 16) / 4) + 4 * i + j % 4];
    int nib = j < 16 ? (byte & 0x0f) : (byte >> 4);
    return mg__f16_to_f32(d) * (float)(nib - 8);
}

void mg__q4x16_dequant_rows(float *dst, const void *W, uint64_t cols, uint64_t r0,
                            uint64_t nr) {
    for (uint64_t r = 0; r < nr; r++)
        for (uint64_t c = 0; c < cols; c++)
            dst[r * cols + c] = mg__q4x16_elem(W, cols, r0 + r, c);
}

/* y[r] (+)= row r . x for the 16-row groups at W (group stride 16 * rb):
 * per block the integer sum of (nibble - 8) * q, times d_w * d_x. */
void mg__rows_q4x16_scalar(const void *W, size_t rb, uint64_t nrows, uint64_t cols,
                           const void *xv, float *y, int acc) {
    const mg__xq8 *xq = xv;
    for (uint64_t g0 = 0; g0 < nrows; g0 += 16) {
        const uint8_t *g = (const uint8_t *)W + g0 * rb;
        float s[16] = {0};
        for (uint64_t b = 0; b < cols / MG__QK; b++) {
            const uint8_t *q = mg__q4x16_quants(g, b), *sc = mg__q4x16_scales(g, b);
            const int8_t *x = xq->q + b * MG__QK;
            for (uint32_t i = 0; i < 16; i++) {
                int32_t isum = -xq->s8[b];
                for (uint32_t k = 0; k < 4; k++)
                    for (uint32_t t = 0; t < 4; t++) {
                        uint8_t byte = q[64 * k + 4 * i + t];
                        isum += (int32_t)(byte & 0x0f) * x[4 * k + t] +
                                (int32_t)(byte >> 4) * x[16 + 4 * k + t];
                    }
                uint16_t d;
                memcpy(&d, sc + 2 * i, 2);
                s[i] += (float)isum * (mg__f16_to_f32(d) * xq->d[b]);
            }
        }
        for (uint32_t i = 0; i < 16; i++) y[g0 + i] = acc ? y[g0 + i] + s[i] : s[i];
    }
}
