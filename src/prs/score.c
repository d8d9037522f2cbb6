/* score.c - streams the .bed in blocks of variants and computes every score
 * with PLINK 2 --score semantics (docs/PRS.md); writes .sscore files. */
#include "prs/prs_internal.h"
#include "core/pool.h"
#include "prs/quad.h"

#include <cblas.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Per row and sex group (0: female/unknown, 1: male), per 2-bit code:
 * the score dosage, the observed named-allele dosage, the allele count and
 * the DENOM contribution. */
typedef struct row_tab {
    double d[8], nd[8], ac[8], dn[8];
    int64_t ip[4];  /* fast path: 2 x named dosage | missing ploidy << 32 */
    double pl[2];   /* ploidy per sex group (dosage rows)                  */
    int named_a1, first;
} row_tab;

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
            uint32_t fl = j->p->params.flags;
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
    return x->named_a1 < y->named_a1 ? -1 : x->named_a1 > y->named_a1;
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
    uint32_t *order = NULL, *rowpos = NULL, *blkvar = NULL;
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
    int quad = K > FEW_SCORES && N >= QUAD_MIN_SAMPLES;
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
    if (p->params.flags & (MG_PRS_DOMINANT | MG_PRS_RECESSIVE)) {
        for (uint32_t i = 0; i < n_act; i++) {
            const mg__prs_variant *v = &p->var[p->rows[order[i]].var];
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
    size_t wbytes;
    if (mg__mul_size((size_t)n_act ? n_act : 1, (size_t)K * sizeof(double), &wbytes)) {
        st = mg__prs_set(p, MG_E_NOMEM, "score matrix too large");
        goto done;
    }
    W = mg__calloc(1, wbytes);
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
    if (!W || !act || !den || !named || !sum) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t e = 0; e < p->n_ent; e++) {
        int32_t c = col[p->ent[e].score];
        if (c >= 0) W[(uint64_t)rowpos[p->ent[e].row] * K + (uint32_t)c] += p->ent[e].w;
    }
    for (uint32_t b = 0; b < p->n_wide; b++) {
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
    uint32_t nthr = p->params.n_threads;
    if (nthr == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        nthr = c > 0 ? (uint32_t)c : 1;
    }
    if (nthr > 1 && N >= 256) {
        pool = mg__pool_new(nthr);
        if (!pool) { st = mg__prs_set(p, MG_E_NOMEM, "cannot start threads"); goto done; }
    }
    uint32_t nt = pool ? mg__pool_size(pool) : 1;
    if (quad) {
        size_t rows2 = (size_t)B * 2, cwb;
        if (mg__mul_size(rows2 * sizeof(double), (size_t)K, &cwb)) { st = mg__prs_set(p, MG_E_NOMEM, "block too large"); goto done; }
        /* cache-line aligned: a table row load must not straddle two lines */
        qtab = mg__aligned_alloc(64, (size_t)nt * MG__QUAD_MAXG * 256 * MG__QUAD_WIDTH * sizeof *qtab);
        qitab = mg__malloc((size_t)nt * MG__QUAD_MAXG * 256 * sizeof *qitab);
        qcodes = mg__malloc((size_t)nt * QUAD_SUB * MG__QUAD_MAXG);
        zeros = mg__calloc(p->bytes_per_var ? p->bytes_per_var : 1, 1);
        ctab = mg__malloc(rows2 * sizeof *ctab);
        cblk = mg__malloc(rows2 * sizeof *cblk);
        cslow = mg__malloc(rows2);
        frow = mg__malloc(rows2 * sizeof *frow);
        cW = mg__malloc(cwb);
        qgeno = mg__malloc(4 * MG__QUAD_MAXG * sizeof *qgeno);
        qw = mg__malloc(4 * MG__QUAD_MAXG * sizeof *qw);
        qdose = mg__malloc(16 * MG__QUAD_MAXG * sizeof *qdose);
        qipk = mg__malloc(16 * MG__QUAD_MAXG * sizeof *qipk);
        if (!qtab || !qitab || !qcodes || !zeros || !ctab || !cblk || !cslow || !frow || !cW ||
            !qgeno || !qw || !qdose || !qipk) {
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
    geno = mg__malloc(gbytes);
    tab = mg__malloc((size_t)B * 2 * sizeof *tab); /* at most 2 rows per variant */
    blkvar = mg__malloc((size_t)B * 2 * sizeof *blkvar);
    slow = mg__malloc((size_t)B * 2);
    ipack = mg__calloc(N, sizeof *ipack);
    uint64_t nw = (p->bytes_per_var + 7) / 8;
    masks = mg__calloc(nw * 4, sizeof *masks);
    if (!geno || !tab || !blkvar || !slow || !ipack || !masks) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    if (p->ds_row) {
        size_t dbytes;
        if (mg__mul_size(B, (size_t)N * sizeof *dsb, &dbytes)) { st = mg__prs_set(p, MG_E_NOMEM, "block too large"); goto done; }
        dsb = mg__malloc(dbytes);
        if (!dsb) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
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

    for (uint32_t i = 0; i < n_act;) {
        /* gather up to B distinct variants */
        uint32_t start = i, nv = 0;
        uint32_t last = UINT32_MAX;
        while (i < n_act) {
            uint32_t v = p->rows[order[i]].var;
            if (v != last) {
                if (nv == B) break;
                unsigned char *dst = geno + (uint64_t)nv * p->bytes_per_var;
                off_t off = (off_t)(3 + (uint64_t)v * p->bytes_per_var);
                size_t want = (size_t)p->bytes_per_var, got = 0;
                while (got < want) {
                    ssize_t n = pread(p->bed_fd, dst + got, want - got, off + (off_t)got);
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) {
                        st = mg__prs_set(p, MG_E_IO, "%s: read failed at variant %u (file changed?)",
                                         p->bed_path, v);
                        goto done;
                    }
                    got += (size_t)n;
                }
                if (p->ds_row && p->ds_row[v] != UINT32_MAX) {
                    unsigned char *dd = (unsigned char *)(dsb + (uint64_t)nv * N);
                    size_t dwant = (size_t)N * sizeof *dsb, dgot = 0;
                    off_t doff = (off_t)((uint64_t)p->ds_row[v] * dwant);
                    while (dgot < dwant) {
                        ssize_t n = pread(p->ds_fd, dd + dgot, dwant - dgot, doff + (off_t)dgot);
                        if (n < 0 && errno == EINTR) continue;
                        if (n <= 0) {
                            st = mg__prs_set(p, MG_E_IO, "%s: dosage read failed at variant %u",
                                             p->bed_path, v);
                            goto done;
                        }
                        dgot += (size_t)n;
                    }
                }
                last = v;
                nv++;
            }
            uint32_t r = i - start;
            int first = i == start || p->rows[order[i - 1]].var != v;
            const mg__prs_row *row = &p->rows[order[i]];
            const mg__prs_variant *var = &p->var[v];
            const unsigned char *g = geno + (uint64_t)(nv - 1) * p->bytes_per_var;
            int is_ds = p->ds_row && p->ds_row[v] != UINT32_MAX;
            double f;
            if (p->ext_freq && !isnan(p->ext_freq[v]))
                f = row->named_a1 ? p->ext_freq[v] : 1.0 - p->ext_freq[v];
            else if (is_ds)
                f = ds_freq(p, dsb + (uint64_t)(nv - 1) * N, var->cls, row->named_a1);
            else
                f = founder_freq(p, &fm, g, var->cls, row->named_a1);
            make_tab(&tab[r], var->cls, row->named_a1, first, f, p->params.flags);
            slow[r] = is_ds ? 2 : var->cls == MG__CHR_Y;
            if (!slow[r] && first) pfast += var->cls == MG__CHR_MT ? 1 : 2;
            blkvar[r] = nv - 1;
            i++;
        }
        uint32_t nr = i - start;
        const double *Wb = W + (uint64_t)start * K;
        const row_tab *btab = tab;
        const uint32_t *bblk = blkvar;
        const uint8_t *bslow = slow;
        if (quad) { /* sex-independent .bed rows by quads, the rest below */
            uint32_t nf = 0, nsl = 0;
            for (uint32_t r = 0; r < nr; r++) {
                if (!slow[r]) { frow[nf++] = r; continue; }
                ctab[nsl] = tab[r];
                cblk[nsl] = blkvar[r];
                cslow[nsl] = slow[r];
                memcpy(cW + (uint64_t)nsl * K, Wb + (uint64_t)r * K, (size_t)K * sizeof *cW);
                nsl++;
            }
            for (uint32_t f0 = 0; f0 < nf; f0 += 4 * MG__QUAD_MAXG) {
                uint32_t nq = nf - f0 < 4 * MG__QUAD_MAXG ? nf - f0 : 4 * MG__QUAD_MAXG;
                uint32_t nqd = (nq + 3) / 4;
                for (uint32_t x = 0; x < 4 * nqd; x++) {
                    if (x < nq) {
                        uint32_t r = frow[f0 + x];
                        qgeno[x] = geno + (uint64_t)blkvar[r] * p->bytes_per_var;
                        qw[x] = Wb + (uint64_t)r * K;
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
done:
    mg__pool_free(pool);
    mg__free(active); mg__free(order); mg__free(rowpos); mg__free(W);
    mg__free(act); mg__free(den); mg__free(named); mg__aligned_free(sum);
    mg__free(geno); mg__free(tab); mg__free(blkvar); mg__free(col);
    mg__free(dmat); mg__free(slow); mg__free(ipack); mg__free(masks); mg__free(dsb);
    mg__aligned_free(qtab); mg__free(qitab); mg__free(qcodes); mg__free(zeros); mg__free(ctab);
    mg__free(cblk); mg__free(cslow); mg__free(frow); mg__free(cW); mg__free(qgeno);
    mg__free(qw); mg__free(qdose); mg__free(qipk);
    return st;
}

static void put_num(FILE *f, double v) {
    if (isnan(v)) fputs("nan", f);
    else if (isinf(v)) fputs(v > 0 ? "inf" : "-inf", f);
    else fprintf(f, "%.10g", v);
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
    for (uint64_t s = 0; s < p->n_samples; s++) {
        fprintf(f, "%s\t%s\t", p->sstr + p->fid[s], p->sstr + p->iid[s]);
        put_num(f, p->r_act[s]);
        fputc('\t', f);
        put_num(f, p->r_den[s]);
        fputc('\t', f);
        put_num(f, p->r_named[s]);
        const double *row = p->r_sum + s * p->n_scores;
        for (uint32_t k = 0; k < p->n_scores; k++)
            if (p->scores[k].rep.kept) { fputc('\t', f); put_num(f, p->r_den[s] != 0 ? row[k] / p->r_den[s] : NAN); }
        for (uint32_t k = 0; k < p->n_scores; k++)
            if (p->scores[k].rep.kept) { fputc('\t', f); put_num(f, row[k]); }
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return mg__prs_set(p, MG_E_IO, "error writing %s", path);
    return MG_OK;
}
