/* ints_amx.c - the AMX kernel of ints.h (compiled with AMX-INT8 and
 * AVX512-VBMI; called only where mg__ints_available() is AMX). The dosage
 * tiles and the walk over groups and chunks are ints_vbmi.c's. */
#include "prs/ints.h"

#include <immintrin.h>
#include <string.h>

typedef struct tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* Sums of A tiles abase, + 1 KiB (a k-step apart by astep) times the B
 * tiles of nt (1 or 2, a constant where inlined) sample tiles from b0, in
 * tile registers across the chunk's nc k-steps: c00 and c00 + 256, and
 * the same a sample tile on (+ tstride). */
static inline __attribute__((always_inline)) void
amx_block(const int8_t *abase, uint64_t astep, const uint8_t *b0, uint32_t nc, int32_t *c00,
          uint64_t tstride, const int nt) {
    int32_t *c01 = c00 + tstride;
    const uint8_t *b1 = b0 + MG__INTS_CK * 1024;
    _tile_loadd(0, c00, 64);
    _tile_loadd(1, c00 + 256, 64);
    if (nt == 2) {
        _tile_loadd(2, c01, 64);
        _tile_loadd(3, c01 + 256, 64);
    }
    for (uint32_t k = 0; k < nc; k++) {
        const int8_t *a = abase + (uint64_t)k * astep;
        _tile_loadd(4, a, 64);
        _tile_loadd(5, a + 1024, 64);
        _tile_loadd(6, b0 + (uint64_t)k * 1024, 64);
        if (nt == 2) _tile_loadd(7, b1 + (uint64_t)k * 1024, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 5, 6);
        if (nt == 2) {
            _tile_dpbssd(2, 4, 7);
            _tile_dpbssd(3, 5, 7);
        }
    }
    _tile_stored(0, c00, 64);
    _tile_stored(1, c00 + 256, 64);
    if (nt == 2) {
        _tile_stored(2, c01, 64);
        _tile_stored(3, c01 + 256, 64);
    }
}

/* The products of one chunk: every pair of A tiles meets every pair of
 * sample tiles (a last odd one alone), 2 x 2 tiles of sums in registers. */
static void amx_chunk(const mg__ints_step *s, uint64_t g0, uint32_t ng, uint32_t c0, uint32_t nc) {
    const uint32_t nat = s->nat;
    const uint64_t tstride = (uint64_t)nat * 256; /* int32 per sample tile */
    for (uint32_t ap = 0; ap < nat; ap += 2) {
        const int8_t *abase = s->A + (uint64_t)c0 * nat * 1024 + (uint64_t)ap * 1024;
        for (uint32_t tp = 0; tp < ng; tp += 2) {
            int32_t *c00 = s->acc + (g0 + tp) * tstride + (uint64_t)ap * 256;
            const uint8_t *b0 = s->bbuf + (uint64_t)tp * MG__INTS_CK * 1024;
            if (tp + 1 < ng) amx_block(abase, (uint64_t)nat * 1024, b0, nc, c00, tstride, 2);
            else amx_block(abase, (uint64_t)nat * 1024, b0, nc, c00, tstride, 1);
        }
    }
}

void mg__ints_run_amx(const mg__ints_step *s) {
    tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    mg__ints_walk(s, amx_chunk);
    _tile_release();
}
