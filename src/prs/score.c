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

static void run_range(void *arg, uint32_t t, uint32_t nt) {
    const job *j = arg;
    uint64_t lo, hi;
    task_range(j->s1 - j->s0, t, nt, &lo, &hi);
    lo += j->s0;
    hi += j->s0;
    if (lo >= hi) return;
    const uint8_t *male = j->p->male;
    uint64_t bpv = j->p->bytes_per_var, ld = j->ld;
    uint32_t K = j->k;
    uint64_t blo = lo / 4, bhi = (hi + 3) / 4, full = hi / 4; /* bytes */
    pair_tab pt;
    for (uint32_t r = j->r0; r < j->r1; r++) {
        const unsigned char *g = j->geno + (uint64_t)j->row_blkvar[r] * bpv;
        const row_tab *tb = &j->tab[r];
        const double *w = j->w + (uint64_t)r * K;
        if (j->slow[r] == 2) { /* VCF dosages: per sample, in 1/16384 */
            const uint16_t *dsv = j->ds + (uint64_t)j->row_blkvar[r] * j->n_samples;
            double *dm = j->dmat ? j->dmat + (uint64_t)(r - j->r0) * ld : NULL;
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
                if (dm) dm[s - j->s0] = d;
                else if (d != 0.0) {
                    double *acc = j->sum + s * j->ks;
                    for (uint32_t k = 0; k < K; k++) acc[k] += w[k] * d;
                }
            }
            continue;
        }
        if (j->slow[r]) { /* generic per-sample path (chrY: depends on sex) */
            double *dm = j->dmat ? j->dmat + (uint64_t)(r - j->r0) * ld : NULL;
            for (uint64_t s = lo; s < hi; s++) {
                unsigned code = (g[s >> 2] >> ((s & 3) * 2)) & 3u;
                unsigned i = (unsigned)male[s] * 4u + code;
                double d = tb->d[i];
                j->act[s] += tb->ac[i];
                j->den[s] += tb->dn[i];
                j->named[s] += tb->nd[i];
                if (dm) dm[s - j->s0] = d;
                else if (d != 0.0) {
                    double *acc = j->sum + s * j->ks;
                    for (uint32_t k = 0; k < K; k++) acc[k] += w[k] * d;
                }
            }
            continue;
        }
        if (j->dmat) { /* decode into the GEMM block */
            pair_from_tab(&pt, tb, 1.0);
            double *dm = j->dmat + (uint64_t)(r - j->r0) * ld; /* [s - s0] */
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
        } else { /* K == 1: the weight folded into the table */
            pair_from_tab(&pt, tb, w[0]);
            double *acc = j->sum;
            int64_t *ip = j->ipack;
            accumulate_one(&pt, g, blo, full, acc, ip);
            for (uint64_t s = full * 4 > lo ? full * 4 : lo; s < hi; s++) {
                unsigned code = (g[s >> 2] >> ((s & 3) * 2)) & 3u;
                acc[s] += pt.d[code][0];
                ip[s] += pt.i[code][0];
            }
        }
    }
    (void)bhi;
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

/* State of the integer path across blocks. */
typedef struct int_state {
    uint32_t K, KS, nat, nt;
    const int *iexp;
    const double *iinv;
    int_slot *slot;
    const unsigned char **gptr;
    int8_t *A;
    uint8_t *lut, *bbuf;
    uint64_t cap_ks, slots_acc;
    uint64_t flush_slots;  /* slots_acc limit: then int32 sums go to int64 */
    int32_t *acc;
    int64_t *scratch;
    int64_t *acc64;        /* NULL until the int32 sums first spill */
} int_state;

static void int_state_free(int_state *is) {
    mg__free(is->slot);
    mg__free(is->gptr);
    mg__aligned_free(is->A);
    mg__free(is->lut);
    mg__aligned_free(is->acc64);
    is->slot = NULL; is->gptr = NULL; is->A = NULL; is->lut = NULL; is->acc64 = NULL;
    is->cap_ks = 0;
}

/* One block's sex-independent rows frow[0..nf) through the integer kernel:
 * a dosage slot per row, a missing-call slot per row that has missing
 * calls, padded to whole k-steps. */
static mg_status int_block(mg_prs *p, mg__pool *pool, int_state *is, const unsigned char *geno,
                           const unsigned char *zeros, const uint32_t *blkvar, const row_tab *tab,
                           const double *const *Wb, const uint32_t *frow, uint32_t nf, double *sum,
                           int64_t *ipack) {
    uint64_t N = p->n_samples, bpv = p->bytes_per_var;
    uint64_t nks = ((uint64_t)nf * 2 + MG__INT_SLOTS - 1) / MG__INT_SLOTS; /* at most */
    if (nks > is->cap_ks) {
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
    }
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
    if (is->slots_acc + ns > is->flush_slots) {
        size_t n = (size_t)((N + 15) / 16) * is->nat * 256;
        if (!is->acc64) {
            is->acc64 = big_alloc(n * sizeof *is->acc64);
            if (!is->acc64) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
            memset(is->acc64, 0, n * sizeof *is->acc64);
        }
        int_spill(is->acc, is->acc64, n);
        is->slots_acc = 0;
    }
    is->slots_acc += ns;
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

static int pread_all(int fd, void *dst, size_t want, off_t off);

mg_status mg__prs_write_freq(mg_prs *p, const char *path) {
    if (p->ds_row)
        for (uint64_t v = 0; v < p->n_variants; v++)
            if (p->ds_row[v] != UINT32_MAX)
                return mg__prs_set(p, MG_E_UNSUPPORTED, "frequencies of dosage (VCF DS/GP/HDS) "
                                   "variants are not written; only hard calls are");
    const uint64_t N = p->n_samples, nb = p->bytes_per_var, nw = (nb + 7) / 8;
    uint64_t *masks = mg__calloc(4 * (nw ? nw : 1), sizeof *masks);
    unsigned char *g = mg__malloc(nb ? nb : 1);
    FILE *f = NULL;
    mg_status st = MG_OK;
    if (!masks || !g) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    freq_masks fm = { masks, masks + nw, masks + 2 * nw, masks + 3 * nw };
    for (uint64_t s2 = 0; s2 < N; s2++) { /* as mg__prs_compute builds them */
        if (!p->founder[s2]) continue;
        uint64_t bit = 1ull << (2 * (s2 & 31));
        uint64_t *m = masks + s2 / 32;
        m[0 * nw] |= p->male[s2] ? 0 : bit;
        m[1 * nw] |= p->male[s2] ? bit : 0;
        m[2 * nw] |= bit;
        m[3 * nw] |= p->male[s2] ? bit : 0;
    }
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
    if (st != MG_OK && f) remove(path);
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

mg_status mg__prs_compute(mg_prs *p) {
    if (p->n_scores == 0) return mg__prs_set(p, MG_E_MISUSE, "no scores were added");
    uint32_t K = 0;
    int32_t *col = mg__malloc(p->n_scores * sizeof *col);
    if (!col) return mg__prs_set(p, MG_E_NOMEM, "out of memory");
    for (uint32_t k = 0; k < p->n_scores; k++) col[k] = p->scores[k].rep.kept ? (int32_t)K++ : -1;
    if (K == 0) {
        mg__free(col);
        return mg__prs_set(p, MG_E_INVALID_ARG, "every score was dropped (overlap below %g)",
                           p->params.min_overlap);
    }
    mg_status st = MG_OK;
    uint64_t N = p->n_samples;
    uint32_t *order = NULL, *rowpos = NULL, *blkvar = NULL, *bvar = NULL, *gerr = NULL;
    const double **wrow = NULL;
    double *W = NULL, *act = NULL, *den = NULL, *named = NULL, *sum = NULL;
    unsigned char *geno = NULL;
    row_tab *tab = NULL;
    mg__pool *pool = NULL;
    double *dmat = NULL;
    uint8_t *slow = NULL;
    int64_t *ipack = NULL;
    uint64_t *masks = NULL;
    uint16_t *dsb = NULL;
    /* quad path */
    double *qtab = NULL, *cW = NULL;
    int64_t *qitab = NULL;
    uint8_t *qcodes = NULL;
    uint8_t *cslow = NULL;
    unsigned char *zeros = NULL;
    row_tab *ctab = NULL;
    uint32_t *cblk = NULL, *frow = NULL;
    const unsigned char **qgeno = NULL;
    const double **qw = NULL;
    double *qdose = NULL;
    int64_t *qipk = NULL;
    /* integer path (ints.h) */
    int32_t *iacc = NULL;
    uint8_t *ibbuf = NULL;
    int *iexp = NULL;
    double *iinv = NULL;
    int64_t *iscr = NULL;
    uint32_t inat = 0;
    int_state is;
    memset(&is, 0, sizeof is);
    int ints = N >= 16 && K >= INT_MIN_SCORES && !(p->params.flags & MG_PRS_DOUBLE_SUMS) &&
               (uint64_t)K * MG__INT_DIGITS + 2 < ((uint64_t)1 << 20) && mg__ints_available();
    int quad = !ints && K > FEW_SCORES && N >= QUAD_MIN_SAMPLES;
    int split = quad || ints; /* sex-independent .bed rows apart from the rest */
    uint32_t KS = quad ? (K + MG__QUAD_LANES - 1) / MG__QUAD_LANES * MG__QUAD_LANES : K;
    /* active rows: those holding a weight of a kept score */
    uint8_t *active = mg__calloc(p->n_rows ? p->n_rows : 1, 1);
    if (!active) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t e = 0; e < p->n_ent; e++)
        if (col[p->ent[e].score] >= 0) active[p->ent[e].row] = 1;
    for (uint32_t b = 0; b < p->n_wide; b++) {
        const mg__prs_wide *wb = &p->wide[b];
        int any = 0;
        for (uint32_t c = 0; c < wb->nk; c++) any |= col[wb->first + c] >= 0;
        if (any)
            for (uint64_t i = 0; i < wb->n; i++) active[wb->row[i]] = 1;
    }
    uint32_t n_act = 0;
    order = mg__malloc((p->n_rows ? p->n_rows : 1) * sizeof *order);
    rowpos = mg__malloc((p->n_rows ? p->n_rows : 1) * sizeof *rowpos);
    if (!order || !rowpos) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint32_t r = 0; r < p->n_rows; r++) if (active[r]) order[n_act++] = r;
    for (uint32_t i = 0; i < n_act; i++) {
        const mg__prs_row *row = &p->rows[order[i]];
        if (row_flags(p, row) & (MG_PRS_DOMINANT | MG_PRS_RECESSIVE)) {
            const mg__prs_variant *v = &p->var[row->var];
            if (v->cls == MG__CHR_X || v->cls == MG__CHR_Y || v->cls == MG__CHR_MT) {
                st = mg__prs_set(p, MG_E_UNSUPPORTED,
                                 "dominant and recessive scores cannot use haploid chromosomes "
                                 "(X, Y, MT): variant %s", mg__prs_vstr(p, v->id));
                goto done;
            }
        }
    }
    qsort_r(order, n_act, sizeof *order, cmp_row, p->rows);
    for (uint32_t i = 0; i < n_act; i++) rowpos[order[i]] = i;
    uint32_t max_run = 1; /* most rows of one variant (2, or more with own dosage models) */
    for (uint32_t i = 1, run = 1; i < n_act; i++) {
        run = p->rows[order[i - 1]].var == p->rows[order[i]].var ? run + 1 : 1;
        if (run > max_run) max_run = run;
    }
    size_t wbytes;
    if (mg__mul_size((size_t)n_act ? n_act : 1, (size_t)K * sizeof(double), &wbytes)) {
        st = mg__prs_set(p, MG_E_NOMEM, "score matrix too large");
        goto done;
    }
    /* Each row's K weights: straight from the wide blocks when they hold
     * every kept score in order and no row twice (one wide file, the integer
     * path: no dense copy), else from the dense matrix W. */
    wrow = mg__malloc((n_act ? n_act : 1) * sizeof *wrow);
    if (!wrow) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    int direct = ints && p->n_ent == 0 && p->n_wide > 0;
    for (uint32_t b = 0; direct && b < p->n_wide; b++) {
        const mg__prs_wide *wb = &p->wide[b];
        if (wb->nk != K) direct = 0;
        for (uint32_t c = 0; direct && c < wb->nk; c++) direct = col[wb->first + c] == (int32_t)c;
    }
    if (direct) {
        memset(wrow, 0, (n_act ? n_act : 1) * sizeof *wrow);
        for (uint32_t b = 0; direct && b < p->n_wide; b++) {
            const mg__prs_wide *wb = &p->wide[b];
            for (uint64_t i = 0; i < wb->n; i++) {
                uint32_t pos = rowpos[wb->row[i]];
                if (wrow[pos]) { direct = 0; break; }
                wrow[pos] = wb->w + i * wb->nk;
            }
        }
        for (uint32_t r = 0; direct && r < n_act; r++) direct = wrow[r] != NULL;
    }
    if (!direct) {
        W = mg__calloc(1, wbytes);
        if (!W) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        for (uint32_t r = 0; r < n_act; r++) wrow[r] = W + (uint64_t)r * K;
    }
    act = mg__calloc(N, sizeof *act);
    den = mg__calloc(N, sizeof *den);
    named = mg__calloc(N, sizeof *named);
    /* aligned so that the quad path's rows of KS (a multiple of 16) doubles
     * start on cache lines */
    size_t sum_bytes = 0;
    if (!mg__mul_size((size_t)(N ? N : 1), (size_t)KS * sizeof *sum, &sum_bytes)) {
        sum = mg__aligned_alloc(64, sum_bytes);
        if (sum) memset(sum, 0, sum_bytes);
    }
    if (!act || !den || !named || !sum) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t e = 0; W && e < p->n_ent; e++) {
        int32_t c = col[p->ent[e].score];
        if (c >= 0) W[(uint64_t)rowpos[p->ent[e].row] * K + (uint32_t)c] += p->ent[e].w;
    }
    for (uint32_t b = 0; W && b < p->n_wide; b++) {
        const mg__prs_wide *wb = &p->wide[b];
        for (uint64_t i = 0; i < wb->n; i++) {
            double *dst = W + (uint64_t)rowpos[wb->row[i]] * K;
            const double *src = wb->w + i * wb->nk;
            for (uint32_t c = 0; c < wb->nk; c++) {
                int32_t cc = col[wb->first + c];
                if (cc >= 0) dst[cc] += src[c];
            }
        }
    }

    uint32_t B = p->params.block_variants ? p->params.block_variants : 4096;
    if (ints && B > (1u << 20)) B = 1u << 20; /* int32 sums: < 2^23 slots a block */
    /* rows a block holds: whole variants, B of them or up to 2B rows */
    size_t rcap = (size_t)B * 2 > max_run ? (size_t)B * 2 : max_run;
    uint32_t nthr = mg__prs_threads(p);
    if (nthr > 1 && N >= 256) {
        pool = mg__pool_new(nthr);
        if (!pool) { st = mg__prs_set(p, MG_E_NOMEM, "cannot start threads"); goto done; }
    }
    uint32_t nt = pool ? mg__pool_size(pool) : 1;
    if (split) {
        size_t rows2 = rcap, cwb;
        if (mg__mul_size(rows2 * sizeof(double), (size_t)K, &cwb)) { st = mg__prs_set(p, MG_E_NOMEM, "block too large"); goto done; }
        /* cache-line aligned: a table row load must not straddle two lines */
        if (quad) {
            qtab = mg__aligned_alloc(64, (size_t)nt * MG__QUAD_MAXG * 256 * MG__QUAD_WIDTH * sizeof *qtab);
            qitab = mg__malloc((size_t)nt * MG__QUAD_MAXG * 256 * sizeof *qitab);
            qcodes = mg__malloc((size_t)nt * QUAD_SUB * MG__QUAD_MAXG);
            qgeno = mg__malloc(4 * MG__QUAD_MAXG * sizeof *qgeno);
            qw = mg__malloc(4 * MG__QUAD_MAXG * sizeof *qw);
            qdose = mg__malloc(16 * MG__QUAD_MAXG * sizeof *qdose);
            qipk = mg__malloc(16 * MG__QUAD_MAXG * sizeof *qipk);
            if (!qtab || !qitab || !qcodes || !qgeno || !qw || !qdose || !qipk) {
                st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
                goto done;
            }
        }
        /* the integer kernels read up to 16 bytes past a row's samples */
        zeros = mg__calloc(p->bytes_per_var + 64, 1);
        ctab = mg__malloc(rows2 * sizeof *ctab);
        cblk = mg__malloc(rows2 * sizeof *cblk);
        cslow = mg__malloc(rows2);
        frow = mg__malloc(rows2 * sizeof *frow);
        cW = mg__malloc(cwb);
        if (!zeros || !ctab || !cblk || !cslow || !frow || !cW) {
            st = mg__prs_set(p, MG_E_NOMEM, "out of memory");
            goto done;
        }
    }
    if (n_act >= (1u << 30)) { st = mg__prs_set(p, MG_E_LIMIT, "too many score rows"); goto done; }
    if (K > FEW_SCORES && (N > INT32_MAX || K > INT32_MAX / 2)) {
        st = mg__prs_set(p, MG_E_LIMIT, "too many samples or scores for the matrix path");
        goto done;
    }
    /* GEMM steps: up to 2048 samples x up to 1024 rows (16 MiB of dosages),
     * so that each dgemm has a long inner dimension and its N x K output
     * slice stays in cache. */
    uint64_t NS = N < 2048 ? N : 2048;
    uint32_t G = K <= FEW_SCORES ? UINT32_MAX : (uint32_t)(((uint64_t)2 << 20) / (NS ? NS : 1));
    if (K > FEW_SCORES) {
        if (G < 8) G = 8;
        if (G > 1024) G = 1024;
        size_t db;
        if (mg__mul_size((size_t)G * sizeof(double), (size_t)NS, &db)) { st = mg__prs_set(p, MG_E_NOMEM, "too many samples"); goto done; }
        dmat = mg__malloc(db);
        if (!dmat) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    }
    size_t gbytes;
    if (mg__mul_size(B, (size_t)p->bytes_per_var, &gbytes)) { st = mg__prs_set(p, MG_E_NOMEM, "block too large"); goto done; }
    geno = mg__malloc(gbytes + 64);
    tab = mg__malloc(rcap * sizeof *tab);
    bvar = mg__malloc((size_t)B * sizeof *bvar);
    uint32_t ngt = nt * TASKS_PER_THREAD; /* gather tasks */
    gerr = mg__malloc((size_t)ngt * sizeof *gerr);
    blkvar = mg__malloc(rcap * sizeof *blkvar);
    slow = mg__malloc(rcap);
    ipack = mg__calloc(N, sizeof *ipack);
    uint64_t nw = (p->bytes_per_var + 7) / 8;
    masks = mg__calloc(nw * 4, sizeof *masks);
    if (!geno || !tab || !blkvar || !slow || !ipack || !masks || !bvar || !gerr) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    if (p->ds_row) {
        size_t dbytes;
        if (mg__mul_size(B, (size_t)N * sizeof *dsb, &dbytes)) { st = mg__prs_set(p, MG_E_NOMEM, "block too large"); goto done; }
        dsb = mg__malloc(dbytes);
        if (!dsb) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    }
    if (ints) {
        /* rows: K x digits, the named dosage and missing ploidy counts */
        inat = (uint32_t)((((uint64_t)K * MG__INT_DIGITS + 2 + 31) / 32) * 2);
        uint64_t ntile = (N + 15) / 16;
        size_t ab;
        if (mg__mul_size((size_t)ntile * inat, 1024, &ab)) { st = mg__prs_set(p, MG_E_NOMEM, "too many samples"); goto done; }
        iacc = big_alloc(ab);
        ibbuf = big_alloc((size_t)nt * MG__INTS_BBUF);
        iexp = mg__malloc(K * sizeof *iexp);
        iinv = mg__malloc(K * sizeof *iinv);
        iscr = mg__malloc((size_t)nt * 2 * MG__INT_SLOTS * K * sizeof *iscr);
        if (!iacc || !ibbuf || !iexp || !iinv || !iscr) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
        memset(iacc, 0, ab);
        /* s_k: a power of two with 2 x max |w_k| / s_k <= 2^(8 x digits - 2),
         * so every rounded weight (dosage slots: w x ploidy / 2; missing
         * slots: w x imputed dosage <= 2 |w|) fits the signed digits */
        for (uint32_t k = 0; k < K; k++) iinv[k] = 0; /* max |w_k| first */
        for (uint32_t r = 0; r < n_act; r++) {
            const double *wr = wrow[r];
            for (uint32_t k = 0; k < K; k++) {
                double a = fabs(wr[k]);
                if (a > iinv[k]) iinv[k] = a;
            }
        }
        for (uint32_t k = 0; k < K; k++) {
            double m = iinv[k];
            int e = 0;
            if (m > 0) (void)frexp(2 * m, &e);
            iexp[k] = e - (8 * MG__INT_DIGITS - 2);
            iinv[k] = ldexp(1.0, -iexp[k]);
        }
        is = (int_state){ K, KS, inat, nt, iexp, iinv, NULL, NULL, NULL, NULL, ibbuf, 0, 0,
                          p->tune.flush_slots, iacc, iscr, NULL };
    }
    freq_masks fm = { masks, masks + nw, masks + 2 * nw, masks + 3 * nw };
    for (uint64_t s2 = 0; s2 < N; s2++) {
        if (!p->founder[s2]) continue;
        uint64_t bit = 1ull << (2 * (s2 & 31));
        uint64_t *m = masks + s2 / 32;
        m[0 * nw] |= p->male[s2] ? 0 : bit;  /* X: diploid founders  */
        m[1 * nw] |= p->male[s2] ? bit : 0;  /* X: haploid founders  */
        m[2 * nw] |= bit;                    /* all founders         */
        m[3 * nw] |= p->male[s2] ? bit : 0;  /* Y: male founders     */
    }
    double pfast = 0; /* ploidy summed over the sex-independent variants */

    double t_last = 0;
    for (uint32_t i = 0; i < n_act;) {
        if (prs_stop(p, i, n_act, &t_last)) {
            p->computed = 0;
            st = mg__prs_set(p, MG_E_INTERRUPTED, "mg_prs_compute was stopped after %u of %u "
                             "variant rows (%s)", i, n_act,
                             atomic_load(&p->interrupt) ? "mg_prs_interrupt"
                                                        : "the progress callback");
            goto done;
        }
        /* gather up to B distinct variants; threads read them and make the
         * row tables */
        uint32_t start = i, nv = 0;
        uint32_t last = UINT32_MAX;
        while (i < n_act) {
            uint32_t v = p->rows[order[i]].var;
            if (v != last) {
                if (nv == B) break;
                uint32_t run = 1;
                while (i + run < n_act && p->rows[order[i + run]].var == v) run++;
                if ((size_t)(i - start) + run > rcap) break;
                bvar[nv++] = v;
                last = v;
            }
            blkvar[i - start] = nv - 1;
            i++;
        }
        {
            gather_job gj = { p, &fm, order + start, bvar, nv, blkvar, i - start, geno, dsb,
                              tab, slow, gerr };
            mg__pool_run(pool, gather_task, &gj, ngt);
            for (uint32_t t = 0; t < ngt; t++) {
                if (gerr[t] == UINT32_MAX) continue;
                st = mg__prs_set(p, MG_E_IO, "%s: read failed at variant %u (file changed?)",
                                 p->bed_path, gerr[t]);
                goto done;
            }
            for (uint32_t r = 0; r < i - start; r++) {
                const mg__prs_variant *var = &p->var[bvar[blkvar[r]]];
                if (!slow[r] && tab[r].first) pfast += var->cls == MG__CHR_MT ? 1 : 2;
            }
        }
        uint32_t nr = i - start;
        const double *Wb = W ? W + (uint64_t)start * K : NULL; /* dense paths (not direct) */
        const double *const *wb_rows = wrow + start;
        const row_tab *btab = tab;
        const uint32_t *bblk = blkvar;
        const uint8_t *bslow = slow;
        if (split) { /* sex-independent .bed rows by quads or integers, the rest below */
            uint32_t nf = 0, nsl = 0;
            for (uint32_t r = 0; r < nr; r++) {
                if (!slow[r]) { frow[nf++] = r; continue; }
                ctab[nsl] = tab[r];
                cblk[nsl] = blkvar[r];
                cslow[nsl] = slow[r];
                memcpy(cW + (uint64_t)nsl * K, wb_rows[r], (size_t)K * sizeof *cW);
                nsl++;
            }
            if (ints && nf) {
                st = int_block(p, pool, &is, geno, zeros, blkvar, tab, wb_rows, frow, nf, sum, ipack);
                if (st != MG_OK) goto done;
            }
            for (uint32_t f0 = 0; quad && f0 < nf; f0 += 4 * MG__QUAD_MAXG) {
                uint32_t nq = nf - f0 < 4 * MG__QUAD_MAXG ? nf - f0 : 4 * MG__QUAD_MAXG;
                uint32_t nqd = (nq + 3) / 4;
                for (uint32_t x = 0; x < 4 * nqd; x++) {
                    if (x < nq) {
                        uint32_t r = frow[f0 + x];
                        qgeno[x] = geno + (uint64_t)blkvar[r] * p->bytes_per_var;
                        qw[x] = wb_rows[r];
                        for (int c = 0; c < 4; c++) {
                            qdose[4 * x + (uint32_t)c] = tab[r].d[c];
                            qipk[4 * x + (uint32_t)c] = tab[r].ip[c];
                        }
                    } else { /* padding: code 0 everywhere, adds nothing */
                        qgeno[x] = zeros;
                        qw[x] = NULL;
                        for (int c = 0; c < 4; c++) {
                            qdose[4 * x + (uint32_t)c] = 0;
                            qipk[4 * x + (uint32_t)c] = 0;
                        }
                    }
                }
                quad_job qj = { { nqd, K, KS, qgeno, qdose, qipk, qw, 0, 0, sum, ipack,
                                  NULL, NULL, NULL },
                                N, qtab, qitab, qcodes };
                mg__pool_run(pool, quad_task, &qj, nt);
            }
            nr = nsl;
            Wb = cW;
            btab = ctab;
            bblk = cblk;
            bslow = cslow;
        }
        for (uint32_t r0 = 0; r0 < nr;) {
            uint32_t r1 = K <= FEW_SCORES ? nr : (nr - r0 > G ? r0 + G : nr);
            uint64_t step = dmat ? NS : N;
            for (uint64_t s0 = 0; s0 < N; s0 += step) {
                uint64_t s1 = N - s0 > step ? s0 + step : N;
                job j = { p, geno, bblk, btab, bslow, dsb, Wb, r0, r1, K, KS,
                          act, den, named, sum, ipack, dmat, N, s0, s1, NS };
                mg__pool_run(pool, run_range, &j, nt);
                if (dmat) /* SUM[s0..s1) (ns x K) += D^T (ns x rows) . W (rows x K) */
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(s1 - s0), (int)K,
                                (int)(r1 - r0), 1.0, dmat, (int)NS,
                                Wb + (uint64_t)r0 * K, (int)K, 1.0, sum + s0 * KS, (int)KS);
            }
            r0 = r1;
        }
    }
    if (ints) int_finish(iacc, is.acc64, inat, N, K, KS, iexp, sum, ipack);
    {
        int mean_imp = !(p->params.flags & MG_PRS_NO_MEAN_IMPUTATION);
        for (uint64_t s2 = 0; s2 < N; s2++) {
            double missp = (double)(ipack[s2] >> 32);
            double named2 = (double)(ipack[s2] & 0xffffffffll);
            act[s2] += pfast - missp;
            den[s2] += mean_imp ? pfast : pfast - missp;
            named[s2] += named2 / 2;
        }
    }

    /* publish */
    mg__free(p->r_act); mg__free(p->r_den); mg__free(p->r_named); mg__free(p->r_sum);
    p->r_act = act; p->r_den = den; p->r_named = named;
    p->r_sum = mg__malloc(((N * p->n_scores) != 0 ? N * p->n_scores : 1) * sizeof *p->r_sum);
    act = den = named = NULL;
    if (!p->r_sum) { p->computed = 0; st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t s = 0; s < N; s++)
        for (uint32_t k = 0; k < p->n_scores; k++)
            p->r_sum[s * p->n_scores + k] = col[k] >= 0 ? sum[s * KS + (uint32_t)col[k]] : NAN;
    p->computed = 1;
    if (p->progress) p->progress(p->progress_user, n_act, n_act);
done:
    mg__pool_free(pool);
    mg__free(active); mg__free(order); mg__free(rowpos); mg__free(W);
    mg__free(act); mg__free(den); mg__free(named); mg__aligned_free(sum);
    mg__free(geno); mg__free(tab); mg__free(blkvar); mg__free(col);
    mg__free(dmat); mg__free(slow); mg__free(ipack); mg__free(masks); mg__free(dsb);
    mg__aligned_free(qtab); mg__free(qitab); mg__free(qcodes); mg__free(zeros); mg__free(ctab);
    mg__free(cblk); mg__free(cslow); mg__free(frow); mg__free(cW); mg__free(qgeno);
    mg__free(qw); mg__free(qdose); mg__free(qipk);
    mg__aligned_free(iacc); mg__aligned_free(ibbuf); mg__free(iexp); mg__free(iinv); mg__free(iscr);
    int_state_free(&is);
    mg__free(bvar); mg__free(gerr); mg__free(wrow);
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
