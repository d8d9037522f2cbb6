/* matmul.c - prefill matrix product Y = X W^T through cblas_sgemm.
 * f32 weights go straight to sgemm; other dtypes are dequantized a tile of
 * rows at a time into the caller's scratch (SIMD row dequantization) and
 * each tile is one sgemm call writing a column block of Y. */
#include "kernels/kernels.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* Rows per dequantized tile: about 8 MiB of f32, between 64 and 1024 rows,
 * a multiple of 16. Big tiles matter: sgemm repacks X for every call, so
 * few wide calls beat many narrow ones (measured: 256-row tiles ran at 0.8x
 * of f32 sgemm, 816-row tiles at 0.9-1.2x; see docs/PERFORMANCE.md). */
static uint64_t tile_rows(uint64_t cols) {
    uint64_t t = cols ? (2u << 20) / cols : 256;
    t &= ~(uint64_t)15;
    if (t < 64) t = 64;
    if (t > 1024) t = 1024;
    return t;
}

size_t mg__matmul_scratch_size(int32_t dtype, uint64_t cols) {
    uint64_t bytes;
    if (dtype == MG_DTYPE_F32 || !mg__dtype_block_elems(dtype)) return 0;
    if (mg__mul_u64(tile_rows(cols), cols, &bytes) ||
        mg__mul_u64(bytes, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return 0;
    return (size_t)bytes;
}

void mg__matmul(int32_t dtype, const void *W, uint64_t rows, uint64_t cols,
                const float *X, uint64_t n, float *Y, float *scratch) {
    int ok;
    uint64_t row_bytes = mg__dtype_bytes(dtype, cols, &ok);
    if (!ok || !W || !X || !Y || n == 0 || rows == 0) return;
    if (cols == 0) {
        memset(Y, 0, (size_t)(n * rows) * sizeof(float));
        return;
    }
    /* sgemm takes int dimensions. */
    if (rows > INT_MAX || cols > INT_MAX || n > INT_MAX) return;
    if (dtype == MG_DTYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows,
                    (int)cols, 1.0f, X, (int)cols, (const float *)W, (int)cols,
                    0.0f, Y, (int)rows);
        return;
    }
    if (!scratch) return;
    uint64_t tr = tile_rows(cols);
    for (uint64_t r0 = 0; r0 < rows; r0 += tr) {
        uint64_t nr = rows - r0 < tr ? rows - r0 : tr;
        mg__dequant_row(dtype, scratch, (const char *)W + r0 * row_bytes,
                        nr * cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nr,
                    (int)cols, 1.0f, X, (int)cols, scratch, (int)cols, 0.0f,
                    Y + r0, (int)rows);
    }
}
