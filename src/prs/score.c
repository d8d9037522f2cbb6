/* score.c - streams the .bed in blocks of variants and computes every score
 * with PLINK 2 --score semantics (docs/PRS.md); writes .sscore files. */
#include "prs/prs_internal.h"
#include "core/pool.h"
#include "prs/quad.h"
#include "prs/ints.h"

#include <cblas.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <time.h>

/* Per row and sex group (0: female/unknown, 1: male), per 2-bit code:
 * the score dosage, the observed named-allele dosage, the allele count and
 * the DENOM contribution. */
typedef struct row_tab {
    double d[8], nd[8], ac[8], dn[8];
    int64_t ip[4];  /* fast path: 2 x named dosage | missing ploidy << 32 */
    double pl[2];   /* ploidy per sex group (dosage rows)                  */
    int named_a1, first;
    int miss;       /* the row has a missing call (or may have: dosages)   */
    uint32_t fl;    /* the flags with the row's own dosage model            */
} row_tab;

/* The handle's flags with row r's dosage model in place of the global
 * MG_PRS_DOMINANT / MG_PRS_RECESSIVE. */
static uint32_t row_flags(const mg_prs *p, const mg__prs_row *row) {
    uint32_t fl = p->params.flags;
    if (row->effect == MG__EFFECT_DOMINANT) fl = (fl & ~MG_PRS_RECESSIVE) | MG_PRS_DOMINANT;
    else if (row->effect == MG__EFFECT_RECESSIVE) fl = (fl & ~MG_PRS_DOMINANT) | MG_PRS_RECESSIVE;
    return fl;
}

/* Fast path: rows whose dosages do not depend on sex (everything but Y).
 * Per pair of samples (a nibble of the .bed byte) the tables give the two
 * dosages and two packed integers: 2 x named dosage in the low 32 bits and
 * the ploidy of a missing call (first row of a variant only) in the high. */
typedef struct pair_tab {
    double d[16][2];
    int64_t i[16][2];
} pair_tab;

/* One score is summed straight from the .bed bytes through a table that
 * holds weight x dosage; with more, rows that do not depend on sex go
 * through the quad tables (quad.h) when there are enough samples to pay for
 * building them, and the rest (chrY, VCF dosages, few samples) through a
 * block of decoded dosages times the weight matrix (dgemm). A direct K-wide
 * multiply-add per sample was measured 2x slower than dgemm at K = 10. */
#define FEW_SCORES 1
#define QUAD_MIN_SAMPLES 256
#define QUAD_SUB 16384         /* samples per quad call (scratch size)     */
/* The integer path (AMX or AVX512-VNNI) from this many scores on. On VNNI
 * (2 Zen 4 vCPUs) it took 0.25-0.7 of the double paths' time at 1, 10, 20,
 * 40 and 100 scores, alternating in one process on a busy host, and about
 * as long at 100 scores in a quiet window (docs/PRS.md). */
#define INT_MIN_SCORES 1

typedef struct job {
    const mg_prs *p;
    const unsigned char *geno;   /* block: n_blk_vars x bytes_per_var        */
    const uint32_t *row_blkvar;  /* block variant slot of each row             */
    const row_tab *tab;          /* per row                                    */
    const uint8_t *slow;         /* per row: 1 sex-dependent (Y), 2 dosages    */
    const uint16_t *ds;          /* block: n_blk_vars x n_samples dosages      */
    const double *w;             /* per row: K weights                         */
    uint32_t r0, r1, k;          /* rows of this step                          */
    uint32_t ks;                 /* row stride of sum (>= k)                   */
    double *act, *den, *named, *sum;
    int64_t *ipack;              /* per sample packed integers (fast rows)     */
    double *dmat;                /* GEMM path: (r1 - r0) x ld dosages of the
                                    samples s0..s1 (s0 a multiple of 4)        */
    uint64_t n_samples, s0, s1, ld;
} job;

static void pair_from_tab(pair_tab *pt, const row_tab *tb, double scale) {
    const int64_t *ip = tb->ip;
    for (int n = 0; n < 16; n++) {
        pt->d[n][0] = tb->d[n & 3] * scale;
        pt->d[n][1] = tb->d[n >> 2] * scale;
        pt->i[n][0] = ip[n & 3];
        pt->i[n][1] = ip[n >> 2];
    }
}

/* acc[4b..4b+3] += dosages of byte b's four samples (weight folded in),
 * with the packed integer counts alongside. */
static void accumulate_one(const pair_tab *restrict pt, const unsigned char *restrict g,
                           uint64_t blo, uint64_t bend, double *restrict acc,
                           int64_t *restrict ip) {
    for (uint64_t b = blo; b < bend; b++) {
        unsigned lo4 = g[b] & 15u, hi4 = g[b] >> 4;
        double *restrict a = acc + 4 * b;
        a[0] += pt->d[lo4][0]; a[1] += pt->d[lo4][1];
        a[2] += pt->d[hi4][0]; a[3] += pt->d[hi4][1];
        int64_t *restrict q = ip + 4 * b;
        q[0] += pt->i[lo4][0]; q[1] += pt->i[lo4][1];
        q[2] += pt->i[hi4][0]; q[3] += pt->i[hi4][1];
    }
}

/* Sample range of task t: whole bytes (4 samples) so that tasks never share
 * a .bed byte's accumulators. */
static void task_range(uint64_t n, uint32_t t, uint32_t nt, uint64_t *lo, uint64_t *hi) {
    uint64_t nb = (n + 3) / 4;
    *lo = nb * t / nt * 4;
    *hi = nb * (t + 1) / nt * 4;
    if (*hi > n) *hi = n;
    if (*lo > n) *lo = n;
}

/* Adds dosage d of sample s times the row's weights w to the sample's sums
 * (the one-score and no-dgemm case), or stores it in the dgemm block dm. */
static inline void range_put(const job *j, double *dm, const double *w, uint64_t s, double d) {
    if (dm) dm[s - j->s0] = d;
    else if (d != 0.0) {
        double *acc = j->sum + s * j->ks;
        for (uint32_t k = 0; k < j->k; k++) acc[k] += w[k] * d;
    }
}

/* Row r with VCF dosages, samples [lo, hi): per sample, in 1/16384. */
static void range_dosage_row(const job *j, uint32_t r, uint64_t lo, uint64_t hi) {
    const uint8_t *male = j->p->male;
    const row_tab *tb = &j->tab[r];
    const double *w = j->w + (uint64_t)r * j->k;
    const uint16_t *dsv = j->ds + (uint64_t)j->row_blkvar[r] * j->n_samples;
    double *dm = j->dmat ? j->dmat + (uint64_t)(r - j->r0) * j->ld : NULL;
    uint32_t fl = tb->fl;
    for (uint64_t s = lo; s < hi; s++) {
        unsigned grp = male[s];
        double d;
        if (dsv[s] == MG__DS_MISSING) {
            unsigned i = grp * 4u + 1u;
            d = tb->d[i];
            j->act[s] += tb->ac[i];
            j->den[s] += tb->dn[i];
        } else {
            double pl = tb->pl[grp];
            double a1 = (double)dsv[s] / MG__DS_ONE;
            double n = tb->named_a1 ? a1 : 2 - a1;
            d = n * pl / 2;
            if (fl & MG_PRS_DOMINANT) d = d > 1 ? 1 : d;
            else if (fl & MG_PRS_RECESSIVE) d = d > 1 ? d - 1 : 0;
            if (tb->first) { j->act[s] += pl; j->den[s] += pl; }
            j->named[s] += d;
        }
        range_put(j, dm, w, s, d);
    }
}

/* A sex-dependent row r (chrY), samples [lo, hi): the table of each
 * sample's sex group. */
static void range_sex_row(const job *j, uint32_t r, uint64_t lo, uint64_t hi) {
    const uint8_t *male = j->p->male;
    const unsigned char *g = j->geno + (uint64_t)j->row_blkvar[r] * j->p->bytes_per_var;
    const row_tab *tb = &j->tab[r];
    const double *w = j->w + (uint64_t)r * j->k;
    double *dm = j->dmat ? j->dmat + (uint64_t)(r - j->r0) * j->ld : NULL;
    for (uint64_t s = lo; s < hi; s++) {
        unsigned code = (g[s >> 2] >> ((s & 3) * 2)) & 3u;
        unsigned i = (unsigned)male[s] * 4u + code;
        double d = tb->d[i];
        j->act[s] += tb->ac[i];
        j->den[s] += tb->dn[i];
        j->named[s] += tb->nd[i];
        range_put(j, dm, w, s, d);
    }
}

/* A sex-independent row r, samples [lo, hi): the dosages decoded into the
 * dgemm block a .bed byte at a time, the packed counts added. */
static void range_decode_row(const job *j, uint32_t r, uint64_t lo, uint64_t hi) {
    const unsigned char *g = j->geno + (uint64_t)j->row_blkvar[r] * j->p->bytes_per_var;
    const uint64_t blo = lo / 4, full = hi / 4; /* bytes */
    pair_tab pt;
    pair_from_tab(&pt, &j->tab[r], 1.0);
    double *dm = j->dmat + (uint64_t)(r - j->r0) * j->ld; /* [s - s0] */
    int64_t *ip = j->ipack;
    for (uint64_t b = blo; b < full; b++) {
        unsigned lo4 = g[b] & 15u, hi4 = g[b] >> 4;
        double *d = dm + (4 * b - j->s0);
        d[0] = pt.d[lo4][0]; d[1] = pt.d[lo4][1];
        d[2] = pt.d[hi4][0]; d[3] = pt.d[hi4][1];
        int64_t *q = ip + 4 * b;
        q[0] += pt.i[lo4][0]; q[1] += pt.i[lo4][1];
        q[2] += pt.i[hi4][0]; q[3] += pt.i[hi4][1];
    }
    for (uint64_t s = full * 4 > lo ? full * 4 : lo; s < hi; s++) {
        unsigned code = (g[s >> 2] >> ((s & 3) * 2)) & 3u;
        dm[s - j->s0] = pt.d[code][0];
        ip[s] += pt.i[code][0];
    }
}

/* A sex-independent row r of the one score, samples [lo, hi): the weight
 * folded into the table, the dosages added straight to the sums. */
static void range_one_score_row(const job *j, uint32_t r, uint64_t lo, uint64_t hi) {
    const unsigned char *g = j->geno + (uint64_t)j->row_blkvar[r] * j->p->bytes_per_var;
    const uint64_t blo = lo / 4, full = hi / 4; /* bytes */
    pair_tab pt;
    pair_from_tab(&pt, &j->tab[r], j->w[(uint64_t)r * j->k]);
    double *acc = j->sum;
    int64_t *ip = j->ipack;
    accumulate_one(&pt, g, blo, full, acc, ip);
    for (uint64_t s = full * 4 > lo ? full * 4 : lo; s < hi; s++) {
        unsigned code = (g[s >> 2] >> ((s & 3) * 2)) & 3u;
        acc[s] += pt.d[code][0];
        ip[s] += pt.i[code][0];
    }
}

/* Task t of a step: its samples of rows r0 .. r1 - 1, each row by its kind. */
static void run_range(void *arg, uint32_t t, uint32_t nt) {
    const job *j = arg;
    uint64_t lo, hi;
    task_range(j->s1 - j->s0, t, nt, &lo, &hi);
    lo += j->s0;
    hi += j->s0;
    if (lo >= hi) return;
    for (uint32_t r = j->r0; r < j->r1; r++) {
        if (j->slow[r] == 2) range_dosage_row(j, r, lo, hi);
        else if (j->slow[r]) range_sex_row(j, r, lo, hi);
        else if (j->dmat) range_decode_row(j, r, lo, hi);
        else range_one_score_row(j, r, lo, hi); /* K == 1 */
    }
}

/* The quad path for one step of quads: each task takes whole .bed bytes of
 * samples and its own scratch, in calls of at most QUAD_SUB samples, cut
 * into equal parts (each call builds the step's tables again, so a short
 * last call would pay for them over few samples). */
typedef struct quad_job {
    mg__quad_step base;   /* everything but lo, hi and the scratch */
    uint64_t n;
    double *tab;          /* per task: MAXG x 256 x WIDTH */
    int64_t *itab;        /* per task: MAXG x 256         */
    uint8_t *codes;       /* per task: MAXG x QUAD_SUB    */
} quad_job;

static void quad_task(void *arg, uint32_t t, uint32_t nt) {
    const quad_job *qj = arg;
    uint64_t lo, hi;
    task_range(qj->n, t, nt, &lo, &hi);
    mg__quad_step q = qj->base;
    q.tab = qj->tab + (uint64_t)t * MG__QUAD_MAXG * 256 * MG__QUAD_WIDTH;
    q.itab = qj->itab + (uint64_t)t * MG__QUAD_MAXG * 256;
    q.codes = qj->codes + (uint64_t)t * QUAD_SUB * MG__QUAD_MAXG;
    uint64_t bytes = (hi - lo + 3) / 4, parts = (hi - lo + QUAD_SUB - 1) / QUAD_SUB;
    for (uint64_t i = 0; i < parts; i++) {
        q.lo = lo + bytes * i / parts * 4;
        q.hi = lo + bytes * (i + 1) / parts * 4;
        if (q.hi > hi) q.hi = hi;
        if (q.lo < q.hi) mg__quad_run(&q);
    }
}

/* Named-allele frequency over founders with calls, from the block bytes:
 * 32 samples per 64-bit word, counted with popcounts. Diploid founders count
 * two alleles, haploid ones (males on X, males on Y, everyone on MT) one,
 * a heterozygous haploid call one half. */
typedef struct freq_masks {
    const uint64_t *dip_x, *hap_x, *all, *male; /* lane bit 0 of each sample */
} freq_masks;

/* The counting loop, compiled twice: with the POPCNT instruction (chosen
 * at run time when the CPU has it) and portable. */
#define FREQ_COUNT_BODY                                                          \
    const uint64_t m55 = 0x5555555555555555ull;                                 \
    for (uint64_t wi = 0; wi < nw; wi++) {                                      \
        uint64_t w = 0;                                                         \
        size_t take = (size_t)(nb - wi * 8 < 8 ? nb - wi * 8 : 8);              \
        memcpy(&w, g + wi * 8, take);                                           \
        uint64_t lo = w & m55, hi = (w >> 1) & m55;                             \
        uint64_t homa1 = ~(lo | hi) & m55, het = hi & ~lo, obs = ~(lo & ~hi) & m55; \
        if (dipm) {                                                             \
            uint64_t m = dipm[wi];                                              \
            c[0] += (uint64_t)__builtin_popcountll(homa1 & m);                  \
            c[1] += (uint64_t)__builtin_popcountll(het & m);                    \
            c[2] += (uint64_t)__builtin_popcountll(obs & m);                    \
        }                                                                       \
        if (hapm) {                                                             \
            uint64_t m = hapm[wi];                                              \
            c[3] += (uint64_t)__builtin_popcountll(homa1 & m);                  \
            c[4] += (uint64_t)__builtin_popcountll(het & m);                    \
            c[5] += (uint64_t)__builtin_popcountll(obs & m);                    \
        }                                                                       \
    }

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("popcnt")))
static void freq_count_popcnt(const unsigned char *g, uint64_t nb, uint64_t nw, const uint64_t *dipm,
                              const uint64_t *hapm, uint64_t c[6]) {
    FREQ_COUNT_BODY
}
#define HAVE_POPCNT_PATH 1
#endif

static void freq_count(const unsigned char *g, uint64_t nb, uint64_t nw, const uint64_t *dipm,
                       const uint64_t *hapm, uint64_t c[6]) {
#ifdef HAVE_POPCNT_PATH
    if (__builtin_cpu_supports("popcnt")) {
        freq_count_popcnt(g, nb, nw, dipm, hapm, c);
        return;
    }
#endif
    FREQ_COUNT_BODY
}

static double founder_freq(const mg_prs *p, const freq_masks *fm, const unsigned char *g,
                           int cls, int named_a1) {
    const uint64_t *dipm, *hapm;
    switch (cls) {
    case MG__CHR_X: dipm = fm->dip_x; hapm = fm->hap_x; break;
    case MG__CHR_Y: dipm = NULL; hapm = fm->male; break;
    case MG__CHR_MT: dipm = NULL; hapm = fm->all; break;
    default: dipm = fm->all; hapm = NULL;
    }
    uint64_t nb = p->bytes_per_var, nw = (nb + 7) / 8;
    uint64_t c[6] = {0, 0, 0, 0, 0, 0};
    freq_count(g, nb, nw, dipm, hapm, c);
    uint64_t d_hom = c[0], d_het = c[1], d_obs = c[2], h_hom = c[3], h_het = c[4], h_obs = c[5];
    double cnt = 2.0 * (double)d_hom + (double)d_het + (double)h_hom + 0.5 * (double)h_het;
    double tot = 2.0 * (double)d_obs + (double)h_obs;
    if (tot == 0) return 0.0;
    double f = cnt / tot;
    return named_a1 ? f : 1.0 - f;
}

/* Named-allele frequency from dosages over founders with a value; haploid
 * founders (males on X and Y, everyone on MT) count one allele, their
 * dosage halved. */
static double ds_freq(const mg_prs *p, const uint16_t *ds, int cls, int named_a1) {
    double cnt = 0, tot = 0;
    for (uint64_t s = 0; s < p->n_samples; s++) {
        if (!p->founder[s] || ds[s] == MG__DS_MISSING) continue;
        double a1 = (double)ds[s] / MG__DS_ONE;
        int hap = cls == MG__CHR_MT || ((cls == MG__CHR_X || cls == MG__CHR_Y) && p->male[s]);
        if (cls == MG__CHR_Y && !p->male[s]) continue;
        if (hap) { cnt += a1 / 2; tot += 1; }
        else { cnt += a1; tot += 2; }
    }
    if (tot == 0) return 0.0;
    double f = cnt / tot;
    return named_a1 ? f : 1.0 - f;
}

static void make_tab(row_tab *tb, int cls, int named_a1, int first, double f, uint32_t flags) {
    int mean_imp = !(flags & MG_PRS_NO_MEAN_IMPUTATION);
    for (int grp = 0; grp < 2; grp++) {
        double pl;
        switch (cls) {
        case MG__CHR_Y: pl = grp ? 1 : 0; break;
        case MG__CHR_MT: pl = 1; break;
        default: pl = 2;
        }
        for (int code = 0; code < 4; code++) {
            int i = grp * 4 + code;
            if (pl == 0) { tb->d[i] = tb->nd[i] = tb->ac[i] = tb->dn[i] = 0; continue; }
            if (code == 1) { /* missing */
                double d = 0;
                if (mean_imp) d = (flags & (MG_PRS_DOMINANT | MG_PRS_RECESSIVE)) ? f : pl * f;
                tb->d[i] = d;
                tb->nd[i] = 0;
                tb->ac[i] = 0;
                tb->dn[i] = (mean_imp && first) ? pl : 0;
                continue;
            }
            double a1 = code == 0 ? 2 : code == 2 ? 1 : 0;
            double n = named_a1 ? a1 : 2 - a1;
            double d = n * pl / 2;
            if (flags & MG_PRS_DOMINANT) d = d > 1 ? 1 : d;
            else if (flags & MG_PRS_RECESSIVE) d = d > 1 ? d - 1 : 0;
            tb->d[i] = d;
            tb->nd[i] = d; /* plink2 sums the dominant/recessive dosage */
            tb->ac[i] = first ? pl : 0;
            tb->dn[i] = first ? pl : 0;
        }
    }
    for (int grp = 0; grp < 2; grp++)
        tb->pl[grp] = cls == MG__CHR_Y ? (grp ? 1 : 0) : cls == MG__CHR_MT ? 1 : 2;
    tb->named_a1 = named_a1;
    tb->first = first;
    for (int code = 0; code < 4; code++) /* sex-independent rows only */
        tb->ip[code] = (int64_t)llround(2.0 * tb->nd[code]) +
                       ((code == 1 && first) ? (int64_t)(cls == MG__CHR_MT ? 1 : 2) << 32 : 0);
}

static int cmp_row(const void *a, const void *b, void *ctx) {
    const mg__prs_row *rows = ctx;
    const mg__prs_row *x = &rows[*(const uint32_t *)a], *y = &rows[*(const uint32_t *)b];
    if (x->var != y->var) return x->var < y->var ? -1 : 1;
    if (x->named_a1 != y->named_a1) return x->named_a1 < y->named_a1 ? -1 : 1;
    if (x->effect != y->effect) return x->effect < y->effect ? -1 : 1;
    const uint32_t *ia = a, *ib = b;
    return *ia < *ib ? -1 : *ia > *ib; /* rows of their own model: creation order */
}

/* ---- the integer path (ints.h) ----------------------------------------- */

/* 1 when the sex-independent .bed row g (n samples) has a missing call. */
static int row_has_missing(const unsigned char *g, uint64_t n) {
    uint64_t full = n / 4, i = 0;
    const uint64_t m55 = 0x5555555555555555ull;
    for (; i + 8 <= full; i += 8) {
        uint64_t w;
        memcpy(&w, g + i, 8);
        if (w & ~(w >> 1) & m55) return 1;
    }
    for (; i < full; i++) {
        unsigned b = g[i];
        if (b & ~(b >> 1) & 0x55u) return 1;
    }
    for (uint64_t s = full * 4; s < n; s++)
        if (((g[s >> 2] >> ((s & 3) * 2)) & 3u) == 1u) return 1;
    return 0;
}

/* One slot: row r of the block's tables; kind 0 dosage, 1 missing call,
 * 2 padding. */
typedef struct int_slot {
    uint32_t r;
    uint8_t kind;
} int_slot;

typedef struct int_abuild {
    const int_slot *slot;
    const row_tab *tab;
    const double *const *wrow; /* block row -> its K weights */
    const double *inv_s;   /* per score: 1 / s_k */
    uint32_t K, nat, nks;
    int8_t *A;
    uint8_t *lut;
    int64_t *scratch;      /* per pool thread 2 x 64 x K */
} int_abuild;

/* A and the quad tables for k-steps of task t. */
static void int_abuild_task(void *arg, uint32_t t, uint32_t nt) {
    const int_abuild *ab = arg;
    uint32_t k0 = (uint32_t)((uint64_t)ab->nks * t / nt), k1 = (uint32_t)((uint64_t)ab->nks * (t + 1) / nt);
    const uint32_t K = ab->K, nat = ab->nat;
    int64_t *scratch = ab->scratch + (uint64_t)mg__pool_worker() * 2 * MG__INT_SLOTS * K;
    mg__ints_col col[MG__INT_SLOTS];
    for (uint32_t ks = k0; ks < k1; ks++) {
        for (uint32_t c = 0; c < MG__INT_SLOTS; c++) {
            uint64_t z = (uint64_t)ks * MG__INT_SLOTS + c;
            const int_slot *sl = &ab->slot[z];
            uint8_t *lut = ab->lut + z / 4 * 16 + (z % 4) * 4;
            if (sl->kind == 2) {
                memset(lut, 0, 4);
                col[c] = (mg__ints_col){ NULL, 0, 0, 0 };
                continue;
            }
            const row_tab *tb = &ab->tab[sl->r];
            double pl = tb->pl[0];
            const double *w = ab->wrow[sl->r];
            if (sl->kind == 0) {
                for (int code = 0; code < 4; code++)
                    lut[code] = code == 1 ? 0 : (uint8_t)llround(2.0 * tb->d[code] / pl);
                col[c] = (mg__ints_col){ w, pl / 2, (int8_t)pl, 0 };
            } else {
                for (int code = 0; code < 4; code++) lut[code] = code == 1;
                col[c] = (mg__ints_col){ w, tb->d[1], 0, (int8_t)(tb->first ? pl : 0) };
            }
        }
#if defined(MG_X86_AVX512)
        mg__ints_build_a(col, K, ab->inv_s, nat, ab->A + (uint64_t)ks * nat * 1024, scratch);
#else   /* not reached: without the AVX-512 kernels mg__ints_available() is none */
        (void)col, (void)nat, (void)scratch;
#endif
    }
}

typedef struct int_job {
    mg__ints_step base;
    uint64_t ntile;        /* sample tiles */
    uint8_t *bbuf;         /* per pool thread MG__INTS_BBUF */
} int_job;

/* Task t: the kernel's group t of MG__INTS_GROUP sample tiles. */
static void int_run_task(void *arg, uint32_t t, uint32_t nt) {
    const int_job *ij = arg;
    mg__ints_step st = ij->base;
    (void)nt;
    st.t0 = (uint64_t)t * MG__INTS_GROUP;
    st.t1 = st.t0 + MG__INTS_GROUP < ij->ntile ? st.t0 + MG__INTS_GROUP : ij->ntile;
    st.bbuf = ij->bbuf + (uint64_t)mg__pool_worker() * MG__INTS_BBUF;
    if (st.t0 < st.t1) mg__ints_run(&st);
}

/* Tasks per thread for the block work: threads are handed tasks as they
 * free up, so one that runs slower (a busy sibling core, say) takes fewer
 * of them instead of holding up the block. */
#define TASKS_PER_THREAD 8

/* Moves the int32 sums into the int64 ones (exact) and zeroes them. */
static void int_spill(int32_t *acc, int64_t *acc64, size_t n) {
    for (size_t i = 0; i < n; i++) {
        acc64[i] += acc[i];
        acc[i] = 0;
    }
}

/* Adds the exact sums (acc plus acc64 when spilled) into the double sums,
 * scaled by 2^iexp[k], and the packed counts. */
static void int_finish(const int32_t *acc, const int64_t *acc64, uint32_t nat, uint64_t N, uint32_t K,
                       uint32_t KS, const int *iexp, double *sum, int64_t *ipack) {
    for (uint64_t s = 0; s < N; s++) {
        uint64_t base = s / 16 * nat * 256 + s % 16;
#define ACC(m) ((int64_t)acc[base + (uint64_t)((m) / 16) * 256 + ((m) % 16) * 16] + \
                (acc64 ? acc64[base + (uint64_t)((m) / 16) * 256 + ((m) % 16) * 16] : 0))
        for (uint32_t k = 0; k < K; k++) {
            __int128 tot = 0;
            for (uint32_t j = MG__INT_DIGITS; j-- > 0;) tot = tot * 256 + ACC(k * MG__INT_DIGITS + j);
            if (tot != 0) sum[s * KS + k] += ldexp((double)tot, iexp[k]);
        }
        ipack[s] += ACC(K * MG__INT_DIGITS) + (ACC(K * MG__INT_DIGITS + 1) << 32);
#undef ACC
    }
}

/* The tile buffers (the sums: N x rows x 4 bytes, walked once per chunk of
 * k-steps) start on 2 MiB boundaries and ask for huge pages, to stay
 * within TLB reach. */
static void *big_alloc(size_t n) {
    const size_t al = (size_t)2 << 20;
    if (n > SIZE_MAX - al) return NULL;
    n = (n + al - 1) / al * al;
    void *p = mg__aligned_alloc(al, n);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

/* State of the integer path across blocks; owns every buffer. */
typedef struct int_state {
    uint32_t K, KS, nat, nt;
    int *iexp;             /* per score: s_k = 2^iexp[k]                     */
    double *iinv;          /* per score: 1 / s_k                             */
    int_slot *slot;
    const unsigned char **gptr;
    int8_t *A;
    uint8_t *lut;
    uint8_t *bbuf;         /* per pool thread MG__INTS_BBUF                  */
    uint64_t cap_ks, slots_acc;
    uint64_t flush_slots;  /* slots_acc limit: then the int32 sums go to int64 */
    int32_t *acc;          /* sample tiles x nat x 256                       */
    int64_t *scratch;      /* per pool thread 2 x 64 x K                     */
    int64_t *acc64;        /* NULL until the int32 sums first spill */
} int_state;

static void int_state_free(int_state *is) {
    mg__free(is->slot);
    mg__free(is->gptr);
    mg__aligned_free(is->A);
    mg__free(is->lut);
    mg__aligned_free(is->acc64);
    mg__aligned_free(is->acc);
    mg__aligned_free(is->bbuf);
    mg__free(is->iexp);
    mg__free(is->iinv);
    mg__free(is->scratch);
    memset(is, 0, sizeof *is);
}

/* Room for nks k-steps of slots, A and quad tables. */
static mg_status int_reserve(mg_prs *p, int_state *is, uint64_t nks) {
    if (nks <= is->cap_ks) return MG_OK;
    mg__free(is->slot);
    mg__free(is->gptr);
    mg__aligned_free(is->A);
    mg__free(is->lut);
    is->A = big_alloc((size_t)nks * is->nat * 1024);
    is->slot = mg__malloc((size_t)nks * MG__INT_SLOTS * sizeof *is->slot);
    is->gptr = mg__malloc((size_t)nks * MG__INT_SLOTS * sizeof *is->gptr);
    is->lut = mg__malloc((size_t)nks * 256);
    if (!is->A || !is->slot || !is->gptr || !is->lut) {
        is->cap_ks = 0;
        return mg__prs_set(p, MG_E_NOMEM, "out of memory");
    }
    is->cap_ks = nks;
    return MG_OK;
}

/* Spills the int32 sums to int64 when ns more slots could overflow them. */
static mg_status int_make_room(mg_prs *p, int_state *is, uint64_t ns) {
    if (is->slots_acc + ns > is->flush_slots) {
        size_t n = (size_t)((p->n_samples + 15) / 16) * is->nat * 256;
        if (!is->acc64) {
            is->acc64 = big_alloc(n * sizeof *is->acc64);
            if (!is->acc64) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
            memset(is->acc64, 0, n * sizeof *is->acc64);
        }
        int_spill(is->acc, is->acc64, n);
        is->slots_acc = 0;
    }
    is->slots_acc += ns;
    return MG_OK;
}

/* One block's sex-independent rows frow[0..nf) through the integer kernel:
 * a dosage slot per row, a missing-call slot per row that has missing
 * calls, padded to whole k-steps. */
static mg_status int_block(mg_prs *p, mg__pool *pool, int_state *is, const unsigned char *geno,
                           const unsigned char *zeros, const uint32_t *blkvar, const row_tab *tab,
                           const double *const *Wb, const uint32_t *frow, uint32_t nf) {
    uint64_t N = p->n_samples, bpv = p->bytes_per_var;
    uint64_t nks = ((uint64_t)nf * 2 + MG__INT_SLOTS - 1) / MG__INT_SLOTS; /* at most */
    mg_status st = int_reserve(p, is, nks);
    if (st != MG_OK) return st;
    int_slot *sl = is->slot;
    uint64_t ns = 0;
    for (uint32_t i = 0; i < nf; i++) {
        is->gptr[ns] = geno + (uint64_t)blkvar[frow[i]] * bpv;
        sl[ns++] = (int_slot){ frow[i], 0 };
    }
    for (uint32_t i = 0; i < nf; i++) {
        const unsigned char *g = geno + (uint64_t)blkvar[frow[i]] * bpv;
        if (!tab[frow[i]].miss) continue;
        is->gptr[ns] = g;
        sl[ns++] = (int_slot){ frow[i], 1 };
    }
    nks = (ns + MG__INT_SLOTS - 1) / MG__INT_SLOTS;
    for (; ns < nks * MG__INT_SLOTS; ns++) {
        is->gptr[ns] = zeros;
        sl[ns] = (int_slot){ 0, 2 };
    }
    if ((st = int_make_room(p, is, ns)) != MG_OK) return st;
    int_abuild ab = { sl, tab, Wb, is->iinv, is->K, is->nat, (uint32_t)nks, is->A, is->lut, is->scratch };
    uint64_t nabt = (uint64_t)is->nt * TASKS_PER_THREAD;
    mg__pool_run(pool, int_abuild_task, &ab, (uint32_t)(nks < nabt ? nks : nabt));
    uint64_t ntile = (N + 15) / 16;
    int_job ij = { { (uint32_t)nks, is->nat, is->K * MG__INT_DIGITS + 2, is->A, is->gptr, is->lut,
                     is->acc, 0, 0, NULL },
                   ntile, is->bbuf };
    mg__pool_run(pool, int_run_task, &ij, (uint32_t)((ntile + MG__INTS_GROUP - 1) / MG__INTS_GROUP));
    return MG_OK;
}


/* ---- founder frequencies out ------------------------------------------- */

/* Founder masks (freq_masks) in masks, 4 x nw zero words: lane bit 0 of
 * each founder, in dip_x when female or unknown (X: diploid), in hap_x and
 * male when male (X: haploid; Y), in all always. */
static freq_masks founder_masks(const mg_prs *p, uint64_t *masks, uint64_t nw) {
    for (uint64_t s = 0; s < p->n_samples; s++) {
        if (!p->founder[s]) continue;
        uint64_t bit = 1ull << (2 * (s & 31));
        uint64_t *m = masks + s / 32;
        m[0 * nw] |= p->male[s] ? 0 : bit;
        m[1 * nw] |= p->male[s] ? bit : 0;
        m[2 * nw] |= bit;
        m[3 * nw] |= p->male[s] ? bit : 0;
    }
    return (freq_masks){ masks, masks + nw, masks + 2 * nw, masks + 3 * nw };
}

static int pread_all(int fd, void *dst, size_t want, off_t off);

mg_status mg__prs_write_freq(mg_prs *p, const char *path) {
    if (p->ds_row)
        for (uint64_t v = 0; v < p->n_variants; v++)
            if (p->ds_row[v] != UINT32_MAX)
                return mg__prs_set(p, MG_E_UNSUPPORTED, "frequencies of dosage (VCF DS/GP/HDS) "
                                   "variants are not written; only hard calls are");
    const uint64_t nb = p->bytes_per_var, nw = (nb + 7) / 8;
    uint64_t *masks = mg__calloc(4 * (nw ? nw : 1), sizeof *masks);
    unsigned char *g = mg__malloc(nb ? nb : 1);
    FILE *f = NULL;
    mg_status st = MG_OK;
    if (!masks || !g) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    freq_masks fm = founder_masks(p, masks, nw);
    if (!(f = fopen(path, "w"))) {
        st = mg__prs_set(p, MG_E_IO, "cannot create %s: %s", path, strerror(errno));
        goto done;
    }
    fprintf(f, "#CHROM\tID\tREF\tALT\tALT_FREQS\tOBS_CT\n");
    for (uint64_t v = 0; v < p->n_variants; v++) {
        if (pread_all(p->bed_fd, g, (size_t)nb, (off_t)(3 + v * nb)) != 0) {
            st = mg__prs_set(p, MG_E_IO, "cannot read the genotypes of variant %llu",
                             (unsigned long long)v + 1);
            goto done;
        }
        const mg__prs_variant *var = &p->var[v];
        /* ALT is the .bim A1, the allele founder_freq counts: the value
         * read back is this very double */
        double fa1 = founder_freq(p, &fm, g, var->cls, 1);
        uint64_t c[6] = {0, 0, 0, 0, 0, 0};
        const uint64_t *dipm = var->cls == MG__CHR_X ? fm.dip_x
                               : var->cls == MG__CHR_Y || var->cls == MG__CHR_MT ? NULL : fm.all;
        const uint64_t *hapm = var->cls == MG__CHR_X ? fm.hap_x : var->cls == MG__CHR_Y ? fm.male
                               : var->cls == MG__CHR_MT ? fm.all : NULL;
        freq_count(g, nb, nw, dipm, hapm, c);
        fprintf(f, "%d\t%s\t%s\t%s\t%.17g\t%llu\n", (int)var->chr, mg__prs_vstr(p, var->id),
                mg__prs_vstr(p, var->a2), mg__prs_vstr(p, var->a1), fa1,
                (unsigned long long)(2 * c[2] + c[5]));
    }
    if (ferror(f)) st = mg__prs_set(p, MG_E_IO, "cannot write %s", path);
done:
    if (f && fclose(f) != 0 && st == MG_OK) st = mg__prs_set(p, MG_E_IO, "cannot write %s", path);
    if (st != MG_OK && f) mg__remove_partial(path);
    mg__free(g);
    mg__free(masks);
    return st;
}

/* ---- reading a block and making its row tables, on the pool -------------- */

static int pread_all(int fd, void *dst, size_t want, off_t off) {
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, (char *)dst + got, want - got, off + (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

typedef struct gather_job {
    const mg_prs *p;
    const freq_masks *fm;
    const uint32_t *order;     /* the block's rows (indices into p->rows)  */
    const uint32_t *bvar;      /* block variant slot -> variant            */
    uint32_t nv;
    const uint32_t *blkvar;    /* row -> block variant slot (ascending)    */
    uint32_t nr;
    unsigned char *geno;
    uint16_t *dsb;
    row_tab *tab;
    uint8_t *slow;
    uint32_t *err;             /* per task: variant that failed to read    */
} gather_job;

/* Task t reads its share of the block's variants (runs of consecutive
 * variants in one pread) and makes the tables of their rows. */
static void gather_task(void *arg, uint32_t t, uint32_t nt) {
    const gather_job *j = arg;
    const mg_prs *p = j->p;
    uint64_t N = p->n_samples, bpv = p->bytes_per_var;
    uint32_t v0 = (uint32_t)((uint64_t)j->nv * t / nt), v1 = (uint32_t)((uint64_t)j->nv * (t + 1) / nt);
    j->err[t] = UINT32_MAX;
    for (uint32_t k = v0; k < v1;) {
        uint32_t e = k + 1;
        while (e < v1 && j->bvar[e] == j->bvar[e - 1] + 1) e++;
        if (pread_all(p->bed_fd, j->geno + (uint64_t)k * bpv, (size_t)((e - k) * bpv),
                      (off_t)(3 + (uint64_t)j->bvar[k] * bpv)) != 0) {
            j->err[t] = j->bvar[k];
            return;
        }
        for (uint32_t x = k; x < e; x++) {
            uint32_t v = j->bvar[x];
            if (!p->ds_row || p->ds_row[v] == UINT32_MAX) continue;
            size_t dwant = (size_t)N * sizeof *j->dsb;
            if (pread_all(p->ds_fd, j->dsb + (uint64_t)x * N, dwant, (off_t)((uint64_t)p->ds_row[v] * dwant)) != 0) {
                j->err[t] = v;
                return;
            }
        }
        k = e;
    }
    /* rows of slots v0 .. v1 - 1 (blkvar ascends) */
    uint32_t lo = 0, hi = j->nr;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (j->blkvar[mid] < v0) lo = mid + 1;
        else hi = mid;
    }
    int miss = 0;
    double fa1 = 0; /* A1 frequency of the variant, once per variant */
    for (uint32_t r = lo; r < j->nr && j->blkvar[r] < v1; r++) {
        uint32_t slot = j->blkvar[r], v = j->bvar[slot];
        int first = r == 0 || j->blkvar[r - 1] != slot;
        const mg__prs_row *row = &p->rows[j->order[r]];
        const mg__prs_variant *var = &p->var[v];
        const unsigned char *g = j->geno + (uint64_t)slot * bpv;
        int is_ds = p->ds_row && p->ds_row[v] != UINT32_MAX;
        if (r == lo || first) { /* the frequency only matters for missing calls */
            miss = is_ds || row_has_missing(g, N);
            if (p->ext_freq && !isnan(p->ext_freq[v])) fa1 = p->ext_freq[v];
            else if (is_ds) fa1 = ds_freq(p, j->dsb + (uint64_t)slot * N, var->cls, 1);
            else if (miss) fa1 = founder_freq(p, j->fm, g, var->cls, 1);
            else fa1 = 0;
        }
        double f = (miss || (p->ext_freq && !isnan(p->ext_freq[v]))) ? (row->named_a1 ? fa1 : 1.0 - fa1) : 0;
        uint32_t fl = row_flags(p, row);
        make_tab(&j->tab[r], var->cls, row->named_a1, first, f, fl);
        j->tab[r].miss = miss;
        j->tab[r].fl = fl;
        j->slow[r] = is_ds ? 2 : var->cls == MG__CHR_Y;
    }
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Between blocks: mg_prs_interrupt, and the progress callback (at the
 * first block, then at most every 100 ms); nonzero: stop. */
static int prs_stop(mg_prs *p, uint64_t done, uint64_t total, double *last) {
    if (atomic_load(&p->interrupt)) return 1;
    if (!p->progress) return 0;
    double t = mono_s();
    if (done && t - *last < 0.1) return 0;
    *last = t;
    return p->progress(p->progress_user, done, total) != 0;
}

/* ---- the plan: which rows take which path, sizes, threads, buffers ------- */

/* The quad path's buffers: per pool thread the tables and codes of a
 * quad_job, and one step's rows (.bed rows, weights, per-code values). */
typedef struct quad_bufs {
    double *tab;
    int64_t *itab;
    uint8_t *codes;
    const unsigned char **geno;
    const double **w;
    double *dose;
    int64_t *ipk;
} quad_bufs;

/* What mg__prs_compute works out before it reads a genotype: the kept
 * scores, the active rows in variant order with their weights, the path
 * each row takes, the block and step sizes, the threads, and every buffer
 * (allocated once; plan_free releases them). The paths: with an integer
 * kernel (ints.h) the sex-independent .bed rows go through exact integer
 * sums, else with several scores and enough samples through the quad
 * tables (quad.h); the rest (chrY, VCF dosages; every row when neither
 * applies) through run_range: one score summed straight from the .bed
 * bytes, more as blocks of decoded dosages times the weights (dgemm). */
typedef struct prs_plan {
    /* scores and paths */
    uint32_t K;                   /* kept scores                               */
    uint32_t KS;                  /* row stride of sum: K, or whole quad lanes */
    int32_t *col;                 /* per score its column, -1 when dropped     */
    int ints, quad;               /* the integer path, the quad path           */
    int split;                    /* sex-independent rows apart (ints or quad) */
    /* rows */
    uint32_t n_act;               /* rows holding a weight of a kept score     */
    uint32_t *order;              /* those rows, sorted by cmp_row             */
    uint32_t *rowpos;             /* row -> its position in order              */
    uint32_t max_run;             /* most rows of one variant                  */
    const double **wrow;          /* per position its K weights                */
    double *W;                    /* n_act x K dense weights; NULL when wrow
                                     points into the wide blocks               */
    /* blocks, steps, threads */
    uint32_t B;                   /* variants per block                        */
    size_t rcap;                  /* rows per block                            */
    mg__pool *pool;               /* NULL: the calling thread alone            */
    uint32_t nt, ngt;             /* threads; gather tasks                     */
    uint64_t NS;                  /* samples per dgemm step                    */
    uint32_t G;                   /* rows per dgemm step                       */
    /* results */
    double *act, *den, *named;    /* per sample                                */
    double *sum;                  /* n_samples x KS                            */
    int64_t *ipack;               /* per sample packed counts (fast rows)      */
    double pfast;                 /* ploidy over the sex-independent variants  */
    /* the block in hand */
    unsigned char *geno;          /* B x bytes_per_var                         */
    uint16_t *dsb;                /* B x n_samples dosages, or NULL (no VCF DS) */
    row_tab *tab;                 /* per row                                   */
    uint32_t *bvar;               /* block variant slot -> variant             */
    uint32_t *blkvar;             /* row -> block variant slot (ascending)     */
    uint8_t *slow;                /* per row: 1 sex-dependent (Y), 2 dosages   */
    uint32_t *gerr;               /* per gather task: variant that failed      */
    uint64_t *masks;              /* the words of fm                           */
    freq_masks fm;
    double *dmat;                 /* dgemm steps: G x NS dosages               */
    /* split: the block's sex-independent rows (frow), the others copied
     * apart for run_range (ctab, cblk, cslow, cW) */
    unsigned char *zeros;         /* a .bed row of code 0, the padding         */
    uint32_t *frow, *cblk;
    row_tab *ctab;
    uint8_t *cslow;
    double *cW;
    quad_bufs qb;
    int_state is;
} prs_plan;

static mg_status oom(mg_prs *p) { return mg__prs_set(p, MG_E_NOMEM, "out of memory"); }

static void plan_free(prs_plan *pl) {
    mg__pool_free(pl->pool);
    mg__free(pl->col); mg__free(pl->order); mg__free(pl->rowpos); mg__free(pl->wrow);
    mg__free(pl->W); mg__free(pl->act); mg__free(pl->den); mg__free(pl->named);
    mg__aligned_free(pl->sum); mg__free(pl->ipack);
    mg__free(pl->geno); mg__free(pl->dsb); mg__free(pl->tab); mg__free(pl->bvar);
    mg__free(pl->blkvar); mg__free(pl->slow); mg__free(pl->gerr); mg__free(pl->masks);
    mg__free(pl->dmat);
    mg__free(pl->zeros); mg__free(pl->frow); mg__free(pl->cblk); mg__free(pl->ctab);
    mg__free(pl->cslow); mg__free(pl->cW);
    mg__aligned_free(pl->qb.tab); mg__free(pl->qb.itab); mg__free(pl->qb.codes);
    mg__free(pl->qb.geno); mg__free(pl->qb.w); mg__free(pl->qb.dose); mg__free(pl->qb.ipk);
    int_state_free(&pl->is);
}

/* The kept scores' columns, and the paths. */
static mg_status plan_scores(mg_prs *p, prs_plan *pl) {
    if (p->n_scores == 0) return mg__prs_set(p, MG_E_MISUSE, "no scores were added");
    pl->col = mg__malloc(p->n_scores * sizeof *pl->col);
    if (!pl->col) return oom(p);
    uint32_t K = 0;
    for (uint32_t k = 0; k < p->n_scores; k++) pl->col[k] = p->scores[k].rep.kept ? (int32_t)K++ : -1;
    if (K == 0)
        return mg__prs_set(p, MG_E_INVALID_ARG, "every score was dropped (overlap below %g)",
                           p->params.min_overlap);
    uint64_t N = p->n_samples;
    pl->K = K;
    pl->ints = N >= 16 && K >= INT_MIN_SCORES && !(p->params.flags & MG_PRS_DOUBLE_SUMS) &&
               (uint64_t)K * MG__INT_DIGITS + 2 < ((uint64_t)1 << 20) && mg__ints_available();
    pl->quad = !pl->ints && K > FEW_SCORES && N >= QUAD_MIN_SAMPLES;
    pl->split = pl->quad || pl->ints;
    pl->KS = pl->quad ? (K + MG__QUAD_LANES - 1) / MG__QUAD_LANES * MG__QUAD_LANES : K;
    return MG_OK;
}

/* active[r] = 1 for the rows holding a weight of a kept score. */
static void mark_active(const mg_prs *p, const int32_t *col, uint8_t *active) {
    for (uint64_t e = 0; e < p->n_ent; e++)
        if (col[p->ent[e].score] >= 0) active[p->ent[e].row] = 1;
    for (uint32_t b = 0; b < p->n_wide; b++) {
        const mg__prs_wide *wb = &p->wide[b];
        int any = 0;
        for (uint32_t c = 0; c < wb->nk; c++) any |= col[wb->first + c] >= 0;
        if (any)
            for (uint64_t i = 0; i < wb->n; i++) active[wb->row[i]] = 1;
    }
}

/* The active rows sorted by variant (cmp_row), their positions and the
 * longest run of one variant's rows; dominant and recessive models are
 * refused on haploid chromosomes. */
static mg_status plan_rows(mg_prs *p, prs_plan *pl) {
    const size_t nrows = p->n_rows ? p->n_rows : 1;
    uint8_t *active = mg__calloc(nrows, 1);
    if (!active) return oom(p);
    mark_active(p, pl->col, active);
    pl->order = mg__malloc(nrows * sizeof *pl->order);
    pl->rowpos = mg__malloc(nrows * sizeof *pl->rowpos);
    uint32_t n = 0;
    for (uint32_t r = 0; pl->order && r < p->n_rows; r++) if (active[r]) pl->order[n++] = r;
    mg__free(active);
    if (!pl->order || !pl->rowpos) return oom(p);
    pl->n_act = n;
    for (uint32_t i = 0; i < n; i++) {
        const mg__prs_row *row = &p->rows[pl->order[i]];
        const mg__prs_variant *v = &p->var[row->var];
        if ((row_flags(p, row) & (MG_PRS_DOMINANT | MG_PRS_RECESSIVE)) &&
            (v->cls == MG__CHR_X || v->cls == MG__CHR_Y || v->cls == MG__CHR_MT))
            return mg__prs_set(p, MG_E_UNSUPPORTED,
                               "dominant and recessive scores cannot use haploid chromosomes "
                               "(X, Y, MT): variant %s", mg__prs_vstr(p, v->id));
    }
    qsort_r(pl->order, n, sizeof *pl->order, cmp_row, p->rows);
    for (uint32_t i = 0; i < n; i++) pl->rowpos[pl->order[i]] = i;
    pl->max_run = 1; /* 2, or more with rows of their own dosage models */
    for (uint32_t i = 1, run = 1; i < n; i++) {
        run = p->rows[pl->order[i - 1]].var == p->rows[pl->order[i]].var ? run + 1 : 1;
        if (run > pl->max_run) pl->max_run = run;
    }
    return MG_OK;
}

/* wrow straight into the wide blocks, possible when they hold every kept
 * score in order and no row twice (one wide file); 0 when they do not. */
static int weights_direct(const mg_prs *p, prs_plan *pl) {
    if (p->n_ent != 0 || p->n_wide == 0) return 0;
    for (uint32_t b = 0; b < p->n_wide; b++) {
        const mg__prs_wide *wb = &p->wide[b];
        if (wb->nk != pl->K) return 0;
        for (uint32_t c = 0; c < wb->nk; c++)
            if (pl->col[wb->first + c] != (int32_t)c) return 0;
    }
    memset(pl->wrow, 0, (pl->n_act ? pl->n_act : 1) * sizeof *pl->wrow);
    for (uint32_t b = 0; b < p->n_wide; b++) {
        const mg__prs_wide *wb = &p->wide[b];
        for (uint64_t i = 0; i < wb->n; i++) {
            uint32_t pos = pl->rowpos[wb->row[i]];
            if (pl->wrow[pos]) return 0;
            pl->wrow[pos] = wb->w + i * wb->nk;
        }
    }
    for (uint32_t r = 0; r < pl->n_act; r++)
        if (!pl->wrow[r]) return 0;
    return 1;
}

/* The dense weights: every entry and wide line of a kept score added into
 * its row of W. */
static void fill_weights(const mg_prs *p, prs_plan *pl) {
    const uint32_t K = pl->K;
    for (uint64_t e = 0; e < p->n_ent; e++) {
        int32_t c = pl->col[p->ent[e].score];
        if (c >= 0) pl->W[(uint64_t)pl->rowpos[p->ent[e].row] * K + (uint32_t)c] += p->ent[e].w;
    }
    for (uint32_t b = 0; b < p->n_wide; b++) {
        const mg__prs_wide *wb = &p->wide[b];
        for (uint64_t i = 0; i < wb->n; i++) {
            double *dst = pl->W + (uint64_t)pl->rowpos[wb->row[i]] * K;
            const double *src = wb->w + i * wb->nk;
            for (uint32_t c = 0; c < wb->nk; c++) {
                int32_t cc = pl->col[wb->first + c];
                if (cc >= 0) dst[cc] += src[c];
            }
        }
    }
}

/* Each active row's K weights: on the integer path straight from the wide
 * blocks where they serve (no dense copy), else rows of the dense W. */
static mg_status plan_weights(mg_prs *p, prs_plan *pl) {
    const uint32_t n = pl->n_act;
    size_t wbytes;
    if (mg__mul_size((size_t)n ? n : 1, (size_t)pl->K * sizeof(double), &wbytes))
        return mg__prs_set(p, MG_E_NOMEM, "score matrix too large");
    pl->wrow = mg__malloc((n ? n : 1) * sizeof *pl->wrow);
    if (!pl->wrow) return oom(p);
    if (pl->ints && weights_direct(p, pl)) return MG_OK;
    pl->W = mg__calloc(1, wbytes);
    if (!pl->W) return oom(p);
    for (uint32_t r = 0; r < n; r++) pl->wrow[r] = pl->W + (uint64_t)r * pl->K;
    fill_weights(p, pl);
    return MG_OK;
}

/* The per-sample results, zero; sum aligned so that the quad path's rows
 * of KS (a multiple of 16) doubles start on cache lines. */
static mg_status plan_results(mg_prs *p, prs_plan *pl) {
    const uint64_t N = p->n_samples;
    pl->act = mg__calloc(N, sizeof *pl->act);
    pl->den = mg__calloc(N, sizeof *pl->den);
    pl->named = mg__calloc(N, sizeof *pl->named);
    pl->ipack = mg__calloc(N, sizeof *pl->ipack);
    size_t sum_bytes = 0;
    if (!mg__mul_size((size_t)(N ? N : 1), (size_t)pl->KS * sizeof *pl->sum, &sum_bytes)) {
        pl->sum = mg__aligned_alloc(64, sum_bytes);
        if (pl->sum) memset(pl->sum, 0, sum_bytes);
    }
    if (!pl->act || !pl->den || !pl->named || !pl->ipack || !pl->sum) return oom(p);
    return MG_OK;
}

/* Blocks of B variants (whole variants, up to 2B rows), and the pool when
 * there are threads and samples enough. */
static mg_status plan_threads(mg_prs *p, prs_plan *pl) {
    uint32_t B = p->params.block_variants ? p->params.block_variants : 4096;
    if (pl->ints && B > (1u << 20)) B = 1u << 20; /* int32 sums: < 2^23 slots a block */
    pl->B = B;
    pl->rcap = (size_t)B * 2 > pl->max_run ? (size_t)B * 2 : pl->max_run;
    uint32_t nthr = mg__prs_threads(p);
    if (nthr > 1 && p->n_samples >= 256) {
        pl->pool = mg__pool_new(nthr);
        if (!pl->pool) return mg__prs_set(p, MG_E_NOMEM, "cannot start threads");
    }
    pl->nt = pl->pool ? mg__pool_size(pl->pool) : 1;
    pl->ngt = pl->nt * TASKS_PER_THREAD;
    return MG_OK;
}

/* The split's buffers: the rows copied apart, the padding row and the quad
 * path's (tables cache-line aligned: a table row load must not straddle
 * two lines). */
static mg_status plan_split(mg_prs *p, prs_plan *pl) {
    if (!pl->split) return MG_OK;
    const size_t rows = pl->rcap;
    size_t cwb;
    if (mg__mul_size(rows * sizeof(double), (size_t)pl->K, &cwb))
        return mg__prs_set(p, MG_E_NOMEM, "block too large");
    if (pl->quad) {
        quad_bufs *qb = &pl->qb;
        const size_t nt = pl->nt;
        qb->tab = mg__aligned_alloc(64, nt * MG__QUAD_MAXG * 256 * MG__QUAD_WIDTH * sizeof *qb->tab);
        qb->itab = mg__malloc(nt * MG__QUAD_MAXG * 256 * sizeof *qb->itab);
        qb->codes = mg__malloc(nt * QUAD_SUB * MG__QUAD_MAXG);
        qb->geno = mg__malloc(4 * MG__QUAD_MAXG * sizeof *qb->geno);
        qb->w = mg__malloc(4 * MG__QUAD_MAXG * sizeof *qb->w);
        qb->dose = mg__malloc(16 * MG__QUAD_MAXG * sizeof *qb->dose);
        qb->ipk = mg__malloc(16 * MG__QUAD_MAXG * sizeof *qb->ipk);
        if (!qb->tab || !qb->itab || !qb->codes || !qb->geno || !qb->w || !qb->dose || !qb->ipk)
            return oom(p);
    }
    /* the integer kernels read up to 16 bytes past a row's samples */
    pl->zeros = mg__calloc(p->bytes_per_var + 64, 1);
    pl->ctab = mg__malloc(rows * sizeof *pl->ctab);
    pl->cblk = mg__malloc(rows * sizeof *pl->cblk);
    pl->cslow = mg__malloc(rows);
    pl->frow = mg__malloc(rows * sizeof *pl->frow);
    pl->cW = mg__malloc(cwb);
    if (!pl->zeros || !pl->ctab || !pl->cblk || !pl->cslow || !pl->frow || !pl->cW) return oom(p);
    return MG_OK;
}

/* The limits of run_range and dgemm, and dgemm's steps: up to 2048 samples
 * x up to 1024 rows (16 MiB of dosages), so that each dgemm has a long
 * inner dimension and its N x K output slice stays in cache. */
static mg_status plan_dense(mg_prs *p, prs_plan *pl) {
    const uint64_t N = p->n_samples;
    const uint32_t K = pl->K;
    if (pl->n_act >= (1u << 30)) return mg__prs_set(p, MG_E_LIMIT, "too many score rows");
    if (K > FEW_SCORES && (N > INT32_MAX || K > INT32_MAX / 2))
        return mg__prs_set(p, MG_E_LIMIT, "too many samples or scores for the matrix path");
    pl->NS = N < 2048 ? N : 2048;
    pl->G = K <= FEW_SCORES ? UINT32_MAX : (uint32_t)(((uint64_t)2 << 20) / (pl->NS ? pl->NS : 1));
    if (K <= FEW_SCORES) return MG_OK;
    if (pl->G < 8) pl->G = 8;
    if (pl->G > 1024) pl->G = 1024;
    size_t db;
    if (mg__mul_size((size_t)pl->G * sizeof(double), (size_t)pl->NS, &db))
        return mg__prs_set(p, MG_E_NOMEM, "too many samples");
    pl->dmat = mg__malloc(db);
    if (!pl->dmat) return oom(p);
    return MG_OK;
}

/* The buffers of the block in hand and the founder masks. */
static mg_status plan_block(mg_prs *p, prs_plan *pl) {
    size_t gbytes;
    if (mg__mul_size(pl->B, (size_t)p->bytes_per_var, &gbytes))
        return mg__prs_set(p, MG_E_NOMEM, "block too large");
    pl->geno = mg__malloc(gbytes + 64);
    pl->tab = mg__malloc(pl->rcap * sizeof *pl->tab);
    pl->bvar = mg__malloc((size_t)pl->B * sizeof *pl->bvar);
    pl->gerr = mg__malloc((size_t)pl->ngt * sizeof *pl->gerr);
    pl->blkvar = mg__malloc(pl->rcap * sizeof *pl->blkvar);
    pl->slow = mg__malloc(pl->rcap);
    const uint64_t nw = (p->bytes_per_var + 7) / 8;
    pl->masks = mg__calloc(nw * 4, sizeof *pl->masks);
    if (!pl->geno || !pl->tab || !pl->bvar || !pl->gerr || !pl->blkvar || !pl->slow || !pl->masks)
        return oom(p);
    pl->fm = founder_masks(p, pl->masks, nw);
    if (p->ds_row) {
        size_t dbytes;
        if (mg__mul_size(pl->B, (size_t)p->n_samples * sizeof *pl->dsb, &dbytes))
            return mg__prs_set(p, MG_E_NOMEM, "block too large");
        pl->dsb = mg__malloc(dbytes);
        if (!pl->dsb) return oom(p);
    }
    return MG_OK;
}

/* The integer path's state: sums, scratch, and per score k the scale s_k,
 * a power of two with 2 x max |w_k| / s_k <= 2^(8 x digits - 2), so that
 * every rounded weight (dosage slots: w x ploidy / 2; missing slots: w x
 * imputed dosage <= 2 |w|) fits the signed digits. */
static mg_status plan_ints(mg_prs *p, prs_plan *pl) {
    if (!pl->ints) return MG_OK;
    int_state *is = &pl->is;
    const uint32_t K = pl->K;
    const uint64_t ntile = (p->n_samples + 15) / 16;
    is->K = K;
    is->KS = pl->KS;
    is->nt = pl->nt;
    is->flush_slots = p->tune.flush_slots;
    /* rows: K x digits, the named dosage and missing ploidy counts */
    is->nat = (uint32_t)((((uint64_t)K * MG__INT_DIGITS + 2 + 31) / 32) * 2);
    size_t ab;
    if (mg__mul_size((size_t)ntile * is->nat, 1024, &ab))
        return mg__prs_set(p, MG_E_NOMEM, "too many samples");
    is->acc = big_alloc(ab);
    is->bbuf = big_alloc((size_t)pl->nt * MG__INTS_BBUF);
    is->iexp = mg__malloc(K * sizeof *is->iexp);
    is->iinv = mg__malloc(K * sizeof *is->iinv);
    is->scratch = mg__malloc((size_t)pl->nt * 2 * MG__INT_SLOTS * K * sizeof *is->scratch);
    if (!is->acc || !is->bbuf || !is->iexp || !is->iinv || !is->scratch) return oom(p);
    memset(is->acc, 0, ab);
    for (uint32_t k = 0; k < K; k++) is->iinv[k] = 0; /* max |w_k| first */
    for (uint32_t r = 0; r < pl->n_act; r++)
        for (uint32_t k = 0; k < K; k++) {
            double a = fabs(pl->wrow[r][k]);
            if (a > is->iinv[k]) is->iinv[k] = a;
        }
    for (uint32_t k = 0; k < K; k++) {
        int e = 0;
        if (is->iinv[k] > 0) (void)frexp(2 * is->iinv[k], &e);
        is->iexp[k] = e - (8 * MG__INT_DIGITS - 2);
        is->iinv[k] = ldexp(1.0, -is->iexp[k]);
    }
    return MG_OK;
}

/* The whole plan, in this order (the order of its checks and messages). */
static mg_status plan_make(mg_prs *p, prs_plan *pl) {
    static mg_status (*const steps[])(mg_prs *, prs_plan *) = {
        plan_scores, plan_rows, plan_weights, plan_results, plan_threads, plan_split,
        plan_dense, plan_block, plan_ints,
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        mg_status st = steps[i](p, pl);
        if (st != MG_OK) return st;
    }
    return MG_OK;
}

/* ---- running the plan, block by block ---------------------------------- */

/* The block from row start on: up to B distinct variants (bvar, *nv of
 * them) whose rows all fit rcap, each row's slot in blkvar. Returns the
 * row after the block's last. */
static uint32_t next_block(const mg_prs *p, prs_plan *pl, uint32_t start, uint32_t *nv) {
    uint32_t i = start, n = 0, last = UINT32_MAX;
    while (i < pl->n_act) {
        uint32_t v = p->rows[pl->order[i]].var;
        if (v != last) {
            if (n == pl->B) break;
            uint32_t run = 1;
            while (i + run < pl->n_act && p->rows[pl->order[i + run]].var == v) run++;
            if ((size_t)(i - start) + run > pl->rcap) break;
            pl->bvar[n++] = v;
            last = v;
        }
        pl->blkvar[i - start] = n - 1;
        i++;
    }
    *nv = n;
    return i;
}

/* Reads the block's nv variants and makes the tables of its nr rows on the
 * pool; adds the ploidy of its sex-independent variants to pfast. */
static mg_status gather_block(mg_prs *p, prs_plan *pl, uint32_t start, uint32_t nr, uint32_t nv) {
    gather_job gj = { p, &pl->fm, pl->order + start, pl->bvar, nv, pl->blkvar, nr, pl->geno,
                      pl->dsb, pl->tab, pl->slow, pl->gerr };
    mg__pool_run(pl->pool, gather_task, &gj, pl->ngt);
    for (uint32_t t = 0; t < pl->ngt; t++)
        if (pl->gerr[t] != UINT32_MAX)
            return mg__prs_set(p, MG_E_IO, "%s: read failed at variant %u (file changed?)",
                               p->bed_path, pl->gerr[t]);
    for (uint32_t r = 0; r < nr; r++) {
        const mg__prs_variant *var = &p->var[pl->bvar[pl->blkvar[r]]];
        if (!pl->slow[r] && pl->tab[r].first) pl->pfast += var->cls == MG__CHR_MT ? 1 : 2;
    }
    return MG_OK;
}

/* A block's rows for run_range (and dgemm). */
typedef struct dense_rows {
    uint32_t n;
    const row_tab *tab;
    const uint32_t *blkvar;
    const uint8_t *slow;
    const double *W;              /* n x K */
} dense_rows;

/* The split: the block's sex-independent rows into frow (*nf of them), the
 * others copied apart, returned for run_range. */
static dense_rows split_block(prs_plan *pl, uint32_t nr, const double *const *wb_rows,
                              uint32_t *nf) {
    const uint32_t K = pl->K;
    uint32_t f = 0, n = 0;
    for (uint32_t r = 0; r < nr; r++) {
        if (!pl->slow[r]) { pl->frow[f++] = r; continue; }
        pl->ctab[n] = pl->tab[r];
        pl->cblk[n] = pl->blkvar[r];
        pl->cslow[n] = pl->slow[r];
        memcpy(pl->cW + (uint64_t)n * K, wb_rows[r], (size_t)K * sizeof *pl->cW);
        n++;
    }
    *nf = f;
    return (dense_rows){ n, pl->ctab, pl->cblk, pl->cslow, pl->cW };
}

/* The quad path over the block's rows frow[0..nf), in steps of up to
 * 4 x MG__QUAD_MAXG rows, the last quad padded with rows of code 0 that add
 * nothing. */
static void quad_block(const mg_prs *p, const prs_plan *pl, const double *const *wb_rows, uint32_t nf) {
    const quad_bufs *qb = &pl->qb;
    for (uint32_t f0 = 0; f0 < nf; f0 += 4 * MG__QUAD_MAXG) {
        uint32_t nq = nf - f0 < 4 * MG__QUAD_MAXG ? nf - f0 : 4 * MG__QUAD_MAXG;
        uint32_t nqd = (nq + 3) / 4;
        for (uint32_t x = 0; x < 4 * nqd; x++) {
            const row_tab *tb = x < nq ? &pl->tab[pl->frow[f0 + x]] : NULL;
            qb->geno[x] = tb ? pl->geno + (uint64_t)pl->blkvar[pl->frow[f0 + x]] * p->bytes_per_var
                             : pl->zeros;
            qb->w[x] = tb ? wb_rows[pl->frow[f0 + x]] : NULL;
            for (int c = 0; c < 4; c++) {
                qb->dose[4 * x + (uint32_t)c] = tb ? tb->d[c] : 0;
                qb->ipk[4 * x + (uint32_t)c] = tb ? tb->ip[c] : 0;
            }
        }
        quad_job qj = { { nqd, pl->K, pl->KS, qb->geno, qb->dose, qb->ipk, qb->w, 0, 0, pl->sum,
                          pl->ipack, NULL, NULL, NULL },
                        p->n_samples, qb->tab, qb->itab, qb->codes };
        mg__pool_run(pl->pool, quad_task, &qj, pl->nt);
    }
}

/* run_range over rows dr, in steps of up to G rows (all of them for one
 * score) and NS samples, each step's decoded dosages times its weights
 * added into sum by dgemm (more than one score). */
static void dense_block(const mg_prs *p, const prs_plan *pl, const dense_rows *dr) {
    const uint32_t K = pl->K, nr = dr->n;
    const uint64_t N = p->n_samples, step = pl->dmat ? pl->NS : N;
    for (uint32_t r0 = 0; r0 < nr;) {
        uint32_t r1 = K <= FEW_SCORES ? nr : (nr - r0 > pl->G ? r0 + pl->G : nr);
        for (uint64_t s0 = 0; s0 < N; s0 += step) {
            uint64_t s1 = N - s0 > step ? s0 + step : N;
            job j = { p, pl->geno, dr->blkvar, dr->tab, dr->slow, pl->dsb, dr->W, r0, r1, K,
                      pl->KS, pl->act, pl->den, pl->named, pl->sum, pl->ipack, pl->dmat, N, s0,
                      s1, pl->NS };
            mg__pool_run(pl->pool, run_range, &j, pl->nt);
            if (pl->dmat) /* SUM[s0..s1) (ns x K) += D^T (ns x rows) . W (rows x K) */
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(s1 - s0), (int)K,
                            (int)(r1 - r0), 1.0, pl->dmat, (int)pl->NS,
                            dr->W + (uint64_t)r0 * K, (int)K, 1.0, pl->sum + s0 * pl->KS,
                            (int)pl->KS);
        }
        r0 = r1;
    }
}

/* Rows [start, end) of the plan: read, then each row through its path. */
static mg_status run_block(mg_prs *p, prs_plan *pl, uint32_t start, uint32_t end, uint32_t nv) {
    const uint32_t nr = end - start;
    mg_status st = gather_block(p, pl, start, nr, nv);
    if (st != MG_OK) return st;
    const double *const *wb_rows = pl->wrow + start;
    /* without the split every row goes to run_range, with W dense */
    dense_rows dr = { nr, pl->tab, pl->blkvar, pl->slow,
                      pl->W ? pl->W + (uint64_t)start * pl->K : NULL };
    if (pl->split) {
        uint32_t nf;
        dr = split_block(pl, nr, wb_rows, &nf);
        if (pl->ints && nf &&
            (st = int_block(p, pl->pool, &pl->is, pl->geno, pl->zeros, pl->blkvar, pl->tab,
                            wb_rows, pl->frow, nf)) != MG_OK)
            return st;
        if (pl->quad) quad_block(p, pl, wb_rows, nf);
    }
    dense_block(p, pl, &dr);
    return MG_OK;
}

/* After the last block: the integer path's exact sums into sum and ipack,
 * then the packed counts (named dosage, missing ploidy) and the ploidy of
 * the sex-independent variants into act, den and named. */
static void finish_counts(const mg_prs *p, prs_plan *pl) {
    const uint64_t N = p->n_samples;
    if (pl->ints)
        int_finish(pl->is.acc, pl->is.acc64, pl->is.nat, N, pl->K, pl->KS, pl->is.iexp, pl->sum,
                   pl->ipack);
    const int mean_imp = !(p->params.flags & MG_PRS_NO_MEAN_IMPUTATION);
    for (uint64_t s = 0; s < N; s++) {
        double missp = (double)(pl->ipack[s] >> 32);
        double named2 = (double)(pl->ipack[s] & 0xffffffffll);
        pl->act[s] += pl->pfast - missp;
        pl->den[s] += mean_imp ? pl->pfast : pl->pfast - missp;
        pl->named[s] += named2 / 2;
    }
}

/* Hands the results to the handle: act, den and named move there, the sums
 * are copied by score (NaN for a dropped one). */
static mg_status publish(mg_prs *p, prs_plan *pl) {
    const uint64_t N = p->n_samples;
    mg__free(p->r_act); mg__free(p->r_den); mg__free(p->r_named); mg__free(p->r_sum);
    p->r_act = pl->act; p->r_den = pl->den; p->r_named = pl->named;
    p->r_sum = mg__malloc(((N * p->n_scores) != 0 ? N * p->n_scores : 1) * sizeof *p->r_sum);
    pl->act = pl->den = pl->named = NULL;
    if (!p->r_sum) {
        p->computed = 0;
        return oom(p);
    }
    for (uint64_t s = 0; s < N; s++)
        for (uint32_t k = 0; k < p->n_scores; k++)
            p->r_sum[s * p->n_scores + k] =
                pl->col[k] >= 0 ? pl->sum[s * pl->KS + (uint32_t)pl->col[k]] : NAN;
    p->computed = 1;
    if (p->progress) p->progress(p->progress_user, pl->n_act, pl->n_act);
    return MG_OK;
}

static mg_status stopped(mg_prs *p, uint32_t done, uint32_t total) {
    p->computed = 0;
    return mg__prs_set(p, MG_E_INTERRUPTED, "mg_prs_compute was stopped after %u of %u "
                       "variant rows (%s)", done, total,
                       atomic_load(&p->interrupt) ? "mg_prs_interrupt" : "the progress callback");
}

mg_status mg__prs_compute(mg_prs *p) {
    prs_plan pl;
    memset(&pl, 0, sizeof pl);
    mg_status st = plan_make(p, &pl);
    double t_last = 0;
    for (uint32_t i = 0; st == MG_OK && i < pl.n_act;) {
        if (prs_stop(p, i, pl.n_act, &t_last)) {
            st = stopped(p, i, pl.n_act);
            break;
        }
        uint32_t nv, end = next_block(p, &pl, i, &nv);
        st = run_block(p, &pl, i, end, nv);
        i = end;
    }
    if (st == MG_OK) {
        finish_counts(p, &pl);
        st = publish(p, &pl);
    }
    plan_free(&pl);
    return st;
}

/* Lines are built in a buffer, numbers through mg__fmt_g10 (printf's own
 * %g was half the time of a 100-score run). */
/* The .sscore body is formatted on the pool, SSCORE_PER samples a task,
 * into per-task buffers written in sample order. */
#define SSCORE_PER 256

typedef struct sscore_buf {
    char *b;
    size_t len, cap;
    int oom;
} sscore_buf;

typedef struct sscore_job {
    const mg_prs *p;
    uint64_t s0, s1;       /* this round's samples */
    sscore_buf *bufs;      /* per task             */
} sscore_job;

static void sscore_task(void *arg, uint32_t t, uint32_t nt) {
    const sscore_job *j = arg;
    const mg_prs *p = j->p;
    sscore_buf *sb = &j->bufs[t];
    (void)nt;
    sb->len = 0;
    sb->oom = 0;
    uint64_t a = j->s0 + (uint64_t)t * SSCORE_PER, e = a + SSCORE_PER < j->s1 ? a + SSCORE_PER : j->s1;
    /* numbers: at most 24 bytes each, with their tab */
    const size_t numcap = (3 + 2 * (size_t)p->n_scores) * 40 + 2;
    for (uint64_t s = a; s < e; s++) {
        const char *fid = p->sstr + p->fid[s], *iid = p->sstr + p->iid[s];
        size_t lf = strlen(fid), li = strlen(iid), need = sb->len + lf + li + 1 + numcap;
        if (need > sb->cap) {
            size_t nc = sb->cap * 2 > need ? sb->cap * 2 : need;
            char *nb = mg__realloc(sb->b, nc);
            if (!nb) {
                sb->oom = 1;
                return;
            }
            sb->b = nb;
            sb->cap = nc;
        }
        char *o = sb->b + sb->len;
        memcpy(o, fid, lf);
        o += lf;
        *o++ = '\t';
        memcpy(o, iid, li);
        o += li;
        *o++ = '\t';
        o += mg__fmt_g10(o, p->r_act[s]);
        *o++ = '\t';
        o += mg__fmt_g10(o, p->r_den[s]);
        *o++ = '\t';
        o += mg__fmt_g10(o, p->r_named[s]);
        const double *row = p->r_sum + s * p->n_scores;
        for (uint32_t k = 0; k < p->n_scores; k++)
            if (p->scores[k].rep.kept) {
                *o++ = '\t';
                o += mg__fmt_g10(o, p->r_den[s] != 0 ? row[k] / p->r_den[s] : NAN);
            }
        for (uint32_t k = 0; k < p->n_scores; k++)
            if (p->scores[k].rep.kept) {
                *o++ = '\t';
                o += mg__fmt_g10(o, row[k]);
            }
        *o++ = '\n';
        sb->len = (size_t)(o - sb->b);
    }
}

mg_status mg__prs_write_sscore(mg_prs *p, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return mg__prs_set(p, MG_E_IO, "cannot create %s: %s", path, strerror(errno));
    fputs("#FID\tIID\tALLELE_CT\tDENOM\tNAMED_ALLELE_DOSAGE_SUM", f);
    for (uint32_t k = 0; k < p->n_scores; k++)
        if (p->scores[k].rep.kept) fprintf(f, "\t%s_AVG", p->scores[k].name);
    for (uint32_t k = 0; k < p->n_scores; k++)
        if (p->scores[k].rep.kept) fprintf(f, "\t%s_SUM", p->scores[k].name);
    fputc('\n', f);
    uint32_t nthr = mg__prs_threads(p);
    if (nthr > 64) nthr = 64;
    uint64_t N = p->n_samples;
    mg__pool *pool = nthr > 1 && N > SSCORE_PER ? mg__pool_new(nthr) : NULL; /* NULL: inline */
    uint32_t ntask = pool ? 4 * nthr : 1;
    sscore_buf *bufs = mg__calloc(ntask, sizeof *bufs);
    mg_status st = MG_OK;
    if (!bufs) st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
    for (uint64_t s0 = 0; st == MG_OK && s0 < N; s0 += (uint64_t)ntask * SSCORE_PER) {
        uint64_t s1 = N - s0 < (uint64_t)ntask * SSCORE_PER ? N : s0 + (uint64_t)ntask * SSCORE_PER;
        uint32_t nt = (uint32_t)((s1 - s0 + SSCORE_PER - 1) / SSCORE_PER);
        sscore_job j = { p, s0, s1, bufs };
        mg__pool_run(pool, sscore_task, &j, nt);
        for (uint32_t t = 0; t < nt; t++) {
            if (bufs[t].oom) {
                st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
                break;
            }
            fwrite(bufs[t].b, 1, bufs[t].len, f);
        }
    }
    for (uint32_t t = 0; bufs && t < ntask; t++) mg__free(bufs[t].b);
    mg__free(bufs);
    mg__pool_free(pool);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        if (st == MG_OK) st = mg__prs_set(p, MG_E_IO, "error writing %s", path);
    }
    return st;
}
