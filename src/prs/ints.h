/* ints.h - many scores as exact integer sums on AMX tiles or AVX512-VNNI.
 *
 * The score matrix product SUM (samples x scores) = D^T (samples x slots) .
 * W (slots x scores) is computed in integers: every slot's weights are
 * rounded to multiples of a per-score power of two s_k (2^-46 of twice the
 * score's largest |weight|) and written as MG__INT_DIGITS signed base-256
 * digits, each digit a row of the int8 matrix A; dosages are small integers
 * (named allele copies, or 1 for a missing call in a "missing slot" whose
 * weights are the mean-imputed dosage x weight). AMX TDPBSSD multiplies A
 * (rows x 64 slots) by a tile of 16 samples x 64 slots into int32 sums,
 * which are exact; where the CPU has no AMX, AVX512-VNNI VPDPBUSD makes the
 * same int32 sums from the same tiles (16 samples x 4 slots of B times one
 * row's 4 digits at a time: the same products, added in another order, all
 * exact). The digits are recombined in 128-bit integers and scaled by s_k
 * once, so the only rounding is that of the weights (error at most s_k / 2
 * per slot and allele) and one final rounding, whatever the kernel, thread
 * count, block size or order.
 *
 * Two extra A rows carry the packed counts: 2 x named dosage and the
 * ploidy of missing calls (see score.c).
 *
 * Layouts (all tiles 16 rows x 64 bytes, 1 KiB, contiguous):
 *   A:   [k-step][A tile][16 rows][64 slots]             int8
 *   B:   [16 slot quads][16 samples][4 slots]            int8 (built here)
 *   acc: [sample tile][A tile][16 rows][16 samples]      int32
 * Slot z's dosages come from the .bed row geno[z]: 2-bit code c of sample n
 * gives lut[z / 4][(z % 4) * 4 + c], a value in 0..127 (AMX reads B as
 * signed bytes, VNNI as unsigned ones: alike in that range). */
#ifndef MG_PRS_INTS_H
#define MG_PRS_INTS_H

#include <stdint.h>

#define MG__INT_DIGITS 6
#define MG__INT_SLOTS 64          /* slots per k-step                        */
/* int32 sums stay exact for this many slots (|digit x dosage| <= 256);
 * then they move to int64. The threshold in use is the handle's
 * tune.flush_slots, this by default (tests lower it). */
#define MG__INT_FLUSH_SLOTS (1u << 23)

typedef struct mg__ints_step {
    uint32_t nks;                        /* k-steps                          */
    uint32_t nat;                        /* A tiles, even                    */
    uint32_t nrow;                       /* rows of A in use (<= 16 nat); the
                                            rest are zero, and the VNNI
                                            kernel skips them               */
    const int8_t *A;                     /* nks x nat x 1 KiB                */
    const unsigned char *const *geno;    /* nks x 64 .bed rows, each readable
                                            16 bytes past 4 x (last tile)   */
    const uint8_t *lut;                  /* nks x 16 quads x 16 bytes        */
    int32_t *acc;                        /* tiles x nat x 256                */
    uint64_t t0, t1;                     /* sample tiles of this call        */
    uint8_t *bbuf;                       /* scratch: MG__INTS_BBUF bytes     */
} mg__ints_step;

/* The kernels walk [t0, t1) in groups of MG__INTS_GROUP sample tiles; per
 * group, chunks of MG__INTS_CK k-steps: the group's B tiles of the chunk
 * (192 KiB) are made once. AMX: then every pair of A tiles (the chunk's A
 * is 304 KiB at 100 scores) meets every pair of sample tiles, so one A
 * pair's 16 KiB stays in L1 while the group's B streams from L2 and the
 * group's sums (912 KiB at 100 scores) stay in L2. Measured against chunks
 * of 32 steps for groups of 4 tiles: about 7 % faster, on quiet and busy
 * cores. VNNI: every 3 sample tiles' B (24 KiB, in L1) meet every 8 rows
 * of A in use (ints_vbmi.c). */
#define MG__INTS_CK 8                    /* k-steps per chunk                */
#define MG__INTS_GROUP 24                /* sample tiles per group, 4 | it   */
#define MG__INTS_BBUF (MG__INTS_GROUP * MG__INTS_CK * 1024u)

/* One slot's A column: weights w[0..K) (NULL: padding, all zero) times
 * mult, and the two count rows. */
typedef struct mg__ints_col {
    const double *w;
    double mult;
    int8_t named, miss;
} mg__ints_col;

/* Writes one k-step of A (nat KiB) from its 64 columns: rows k x digits + j
 * hold the signed base-256 digits (least significant first) of
 * round(w[k] x mult x inv_s[k]); rows K x digits and + 1 the counts.
 * scratch: 2 x 64 x K int64. */
void mg__ints_build_a(const mg__ints_col *col, uint32_t K, const double *inv_s, uint32_t nat,
                      int8_t *A, int64_t *scratch);

/* The kernel this process uses (CPU, OS, permission, MG_SIMD / MG_AMX):
 * AMX where it has INT8 tiles, else AVX512-VNNI where it has VNNI and
 * VBMI at the AVX-512 level, else none (the double paths of score.c). */
#define MG__INTS_NONE 0
#define MG__INTS_VNNI 1
#define MG__INTS_AMX 2
int mg__ints_available(void);
/* 1 where the VNNI kernel may run (whether or not AMX is there too). */
int mg__ints_vnni_ok(void);
/* Adds the products of one block to acc for tiles [t0, t1), through the
 * kernel of mg__ints_available() (which must not be none). */
void mg__ints_run(const mg__ints_step *s);
/* The kernels themselves: only where mg__ints_available() is AMX, or
 * mg__ints_vnni_ok(), respectively. */
void mg__ints_run_amx(const mg__ints_step *s);
void mg__ints_run_vnni(const mg__ints_step *s);
/* Plain C, any CPU, the same acc as the kernels (tests; bbuf unused). */
void mg__ints_run_ref(const mg__ints_step *s);

/* What both kernels share (ints_vbmi.c; call only from code compiled with
 * AVX512-VBMI): walks [t0, t1) in groups and chunks as described above,
 * makes each group's B tiles of each chunk in s->bbuf ([tile - g0][k - c0]
 * KiB) and hands them to the kernel's product for sample tiles g0 .. g0 +
 * ng - 1 and k-steps c0 .. c0 + nc - 1. */
typedef void (*mg__ints_chunk_fn)(const mg__ints_step *s, uint64_t g0, uint32_t ng, uint32_t c0,
                                  uint32_t nc);
void mg__ints_walk(const mg__ints_step *s, mg__ints_chunk_fn fn);

#endif
