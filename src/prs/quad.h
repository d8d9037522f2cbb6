/* quad.h - many scores at once from the .bed bytes through per-quad tables.
 *
 * Four score rows (a "quad") have 4^4 = 256 joint genotype codes. For each
 * quad a table holds, for every joint code, the four rows' dosage x weight
 * products summed, for up to 32 scores at a time; a sample then adds one
 * table row per quad instead of four rows' dosages times K weights: a
 * quarter of the additions of the matrix product and no multiplications.
 * The tables of a step of quads stay in L2 while every sample reads them.
 * The packed integer counts (named allele dosage, missing ploidy) ride along
 * in a 256-entry table per quad.
 *
 * Everything is in double, as plink2 sums (float tables were tried: heavily
 * cancelling scores then drift past 1e-5 relative).
 *
 * Summation order is fixed (step by step, quad by quad), so the result does
 * not depend on the thread count or the instruction set. */
#ifndef MG_PRS_QUAD_H
#define MG_PRS_QUAD_H

#include <stdint.h>

#define MG__QUAD_LANES 16    /* KP (the sum row stride) is a multiple of it  */
#define MG__QUAD_WIDTH 32    /* scores per table chunk (at most)             */
#define MG__QUAD_MAXG  16    /* quads per step: 16 x 64 KiB tables = 1 MiB   */

typedef struct mg__quad_step {
    uint32_t G;                         /* quads in this step, 1..MAXG       */
    uint32_t K;                         /* scores                            */
    uint32_t KP;                        /* sum row stride, multiple of LANES */
    const unsigned char *const *geno;   /* 4G rows' .bed bytes (variant)     */
    const double *dose;                 /* 4G x 4: dosage by 2-bit code      */
    const int64_t *ipk;                 /* 4G x 4: packed counts by code     */
    const double *const *w;             /* 4G rows' K weights; NULL = none   */
    uint64_t lo, hi;                    /* samples [lo, hi), lo % 4 == 0     */
    double *sum;                        /* N x KP                            */
    int64_t *ipack;                     /* N                                 */
    double *tab;                        /* scratch: G x 256 x WIDTH          */
    int64_t *itab;                      /* scratch: G x 256                  */
    uint8_t *codes;                     /* scratch: G x (hi - lo + 3)        */
} mg__quad_step;

void mg__quad_run_scalar(const mg__quad_step *q);
void mg__quad_run_avx2(const mg__quad_step *q);
void mg__quad_run_avx512(const mg__quad_step *q);
/* The variant for this CPU (and MG_SIMD). */
void mg__quad_run(const mg__quad_step *q);

#endif
