/* prs_internal.h - polygenic scores: the handle and the pieces shared by the
 * PLINK reader, the scoring-file readers, matching and scoring. Not
 * installed. */
#ifndef MG_PRS_INTERNAL_H
#define MG_PRS_INTERNAL_H

#include "core/core.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>


/* Chromosome classes that decide ploidy. */
#define MG__CHR_AUTO 0 /* autosomes, unplaced contigs                     */
#define MG__CHR_X    1
#define MG__CHR_Y    2
#define MG__CHR_XY   3 /* pseudo-autosomal region: diploid               */
#define MG__CHR_MT   4

/* ---- text input ---------------------------------------------------------- */
/* Line reader over a plain or gzip file (zlib reads both). */
typedef struct mg__lines {
    void *gz;          /* gzFile */
    char *buf;
    size_t cap;
    size_t len;
    uint64_t lineno;
} mg__lines;

/* 0 on success, -1 when the file cannot be opened (errno set). */
int mg__lines_open(mg__lines *lr, const char *path);
/* 1 with lr->buf holding the next line (no '\n'/'\r', NUL-terminated),
 * 0 at end of file, -1 on a read error, -2 when out of memory. */
int mg__lines_next(mg__lines *lr);
void mg__lines_close(mg__lines *lr);

/* Splits s in place into at most max fields separated by any run of spaces
 * and tabs (sep == 0) or by single tabs (sep == '\t', empty fields kept).
 * Returns the number of fields found (which may exceed max: the rest are
 * not stored). */
size_t mg__split(char *s, int sep, char **fields, size_t max);
/* A decimal number filling all of s, as strtod reads it (the same double:
 * plain decimals of up to 19 digits whose value is exact with one
 * multiplication or division by a power of ten take a fast path, the rest
 * go through strtod). 0 on success; -1 for an empty, partial, infinite or
 * NaN value. */
int mg__parse_double(const char *s, double *out);

/* The decimal number at the start of s (sign, digits, '.', digits,
 * exponent) where Clinger's fast path gives strtod's value exactly: 0 with
 * *out and *end (the byte after it) set; -1 when s does not start with such
 * a number or it needs strtod (more than 19 digits, large exponents).
 * Reads up to 16 bytes past the number: s must lie in a buffer with 16
 * readable bytes after its text. */
int mg__parse_prefix(const char *s, const char **end, double *out);

/* The handle's n_threads, or the online CPUs when it is 0. */
uint32_t mg__prs_threads(const mg_prs *p);

/* The nk tab-separated weights of a wide-file line (s: the fields after ID
 * and allele, NUL-terminated): 0 with w[0..nk) set, bit for bit what
 * mg__parse_prefix gives (which reads the fields of unusual shape), or -1
 * when a field is not a number for it or the count differs (the caller then
 * reads the line field by field; w is then scratch). nk >= 1. Reads up to
 * 32 bytes past the NUL. AVX2: only where mg_simd_level() >= MG_SIMD_AVX2. */
int mg__parse_fields_avx2(const char *s, uint32_t nk, double *w);

/* v as printf("%.10g") writes it (exact decimal rounding in 128-bit
 * integers for the usual magnitudes, printf itself for the rest); buf holds
 * at least 32 bytes. Returns the length. */
size_t mg__fmt_g10(char *buf, double v);

/* Chromosome name -> code 1..22, 23 X, 24 Y, 25 XY, 26 MT (with or
 * without a "chr" prefix, numbers or letters); 0 for anything else. */
int mg__chr_code(const char *s);
int mg__chr_class(int code);

/* 1 for a usable allele string: 1..1000 bytes of [A-Za-z0-9.*<>:_+-]. */
int mg__allele_ok(const char *s);

/* ---- the handle -------------------------------------------------------- */
typedef struct mg__prs_variant {
    uint64_t id, a1, a2;   /* offsets into prs->vstr                      */
    int64_t pos;
    int16_t chr;           /* mg__chr_code                                */
    uint8_t cls;           /* MG__CHR_*                                   */
    uint8_t multi;         /* another variant shares chr:pos              */
} mg__prs_variant;

typedef struct mg__prs_score {
    char *name;
    mg_prs_match_report rep;
} mg__prs_score;

/* One (variant, named allele) row of the combined score matrix. */
typedef struct mg__prs_row {
    uint32_t var;
    uint8_t named_a1;      /* 1: the named allele is the .bim A1 (col 5) */
    uint8_t effect;        /* MG__EFFECT_*                                */
    uint32_t stamp;        /* serial of the last file that used the row  */
} mg__prs_row;

/* A row's dosage model: the handle's flags (MG_PRS_DOMINANT/RECESSIVE or
 * additive), or its own from a PGS Catalog file's is_dominant/is_recessive
 * columns. Rows with their own model are not shared between scores. */
#define MG__EFFECT_DEFAULT   0
#define MG__EFFECT_DOMINANT  1
#define MG__EFFECT_RECESSIVE 2

typedef struct mg__prs_entry {
    uint32_t row, score;
    double w;
} mg__prs_entry;

/* The matched lines of one wide file (ID, allele, nk weight columns) kept
 * dense: line i gives row[i] the weights w[i * nk .. + nk) of scores first
 * .. first + nk - 1. */
typedef struct mg__prs_wide {
    uint32_t first, nk;
    uint64_t n, cap;
    uint32_t *row;
    double *w;
} mg__prs_wide;

/* Sizes of a handle's internal steps that tests lower, on their own
 * handle, to reach paths real inputs take only at scale (mg_prs_open_*
 * sets the defaults). */
#define MG__PRS_WIDE_CHUNK ((size_t)1 << 20)
typedef struct mg__prs_tuning {
    size_t wide_chunk;     /* bytes of a wide score file parsed per thread
                              and round (MG__PRS_WIDE_CHUNK)             */
    uint64_t flush_slots;  /* slots the integer path sums in int32 before
                              it moves the sums to int64
                              (MG__INT_FLUSH_SLOTS, ints.h)              */
} mg__prs_tuning;

struct mg_prs {
    uint32_t tag;                 /* MG__TAG_PRS */
    mg_status status;
    char errmsg[512];
    mg_prs_params params;
    mg__prs_tuning tune;

    /* genotypes */
    char *bed_path;
    int bed_fd;
    uint64_t n_samples, n_variants, bytes_per_var;
    char *sstr;  size_t sstr_len;  /* sample ID strings                   */
    uint64_t *fid, *iid;          /* offsets into sstr                    */
    uint8_t *male, *founder;
    char *vstr;  size_t vstr_len;  /* variant strings                     */
    mg__prs_variant *var;
    uint32_t *id_hash; uint64_t id_hash_mask; /* UINT32_MAX empty        */
    uint32_t *by_pos;             /* variant indices sorted by chr, pos   */

    double *ext_freq;             /* A1 frequency from --read-freq or NaN */

    /* VCF FORMAT/DS dosages (vcf.c): per variant the row of ds_fd holding
     * n_samples uint16 A1 dosages in 1/16384 (MG__DS_MISSING: no value), or
     * UINT32_MAX for hard calls only; NULL when no variant has dosages. */
    uint32_t *ds_row;
    int ds_fd;

    /* scores */
    mg__prs_score *scores; uint32_t n_scores, cap_scores;
    mg__prs_row *rows; uint32_t n_rows, cap_rows;
    uint32_t *row_of;             /* 2 * n_variants, UINT32_MAX = none    */
    mg__prs_entry *ent; uint64_t n_ent, cap_ent;
    mg__prs_wide *wide; uint32_t n_wide, cap_wide;
    uint32_t file_serial;

    /* progress and interrupt of mg_prs_compute */
    mg_prs_progress progress;
    void *progress_user;
    atomic_int interrupt;

    /* results (after compute) */
    int computed;
    double *r_act, *r_den, *r_named, *r_sum; /* r_sum: n_samples x n_scores */
};

mg_status mg__prs_set(mg_prs *p, mg_status st, const char *fmt, ...)
    MG_PRINTF(3, 4);

/* plink.c */
mg_status mg__prs_load_plink(mg_prs *p, const char *prefix);
const char *mg__prs_vstr(const mg_prs *p, uint64_t off);
/* Variant index by ID, or -1 (absent) / -2 (ID not unique). */
int64_t mg__prs_find_id(const mg_prs *p, const char *id);
mg_status mg__prs_index(mg_prs *p);

/* vcf.c: reads a VCF/BCF (plain or bgzipped) through htslib, one record at a
 * time, into the sample and variant tables and an unlinked temporary file
 * laid out like a SNP-major .bed (GT hard calls), which score.c then reads
 * exactly as it reads a PLINK 1 set; FORMAT/DS rows go to ds_fd. */
mg_status mg__prs_load_vcf(mg_prs *p, const char *path);

#define MG__DS_MISSING 0xffffu
#define MG__DS_ONE     16384.0

/* prs.c: sets p's tuning, each field of t that is 0 (every field when t is
 * NULL) to its default; between calls on the handle. */
void mg__prs_set_tuning(mg_prs *p, const mg__prs_tuning *t);

/* scorefile.c */
mg_status mg__prs_read_freq(mg_prs *p, const char *path);
mg_status mg__prs_add_file(mg_prs *p, const char *path, uint32_t *n_added);

/* score.c */
mg_status mg__prs_compute(mg_prs *p);
mg_status mg__prs_write_sscore(mg_prs *p, const char *path);
mg_status mg__prs_write_freq(mg_prs *p, const char *path);

/* Appends s (with its NUL) to a growing string arena; returns the offset or
 * UINT64_MAX when out of memory. */
uint64_t mg__prs_arena_add(char **buf, size_t *len, size_t *cap, const char *s);
/* Grows *arr (*cap elements of elem bytes) to hold at least need; 0 or -1. */
int mg__prs_grow(void **arr, uint64_t *cap, uint64_t need, size_t elem);

#endif
