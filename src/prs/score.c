/* score.c - streams the .bed in blocks of variants and computes every score
 * with PLINK 2 --score semantics (docs/PRS.md); writes .sscore files. */
#include "prs/prs_internal.h"
#include "core/pool.h"

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
} row_tab;

typedef struct job {
    const mg_prs *p;
    const unsigned char *geno;   /* block: n_blk_vars x bytes_per_var */
    const uint32_t *row_blkvar;  /* block variant slot of each row in the block */
    const row_tab *tab;          /* per row in the block */
    const double *w;             /* per row in block: K weights */
    uint32_t n_rows, k;
    double *act, *den, *named, *sum;
    uint64_t n_samples;
    uint32_t n_tasks;
} job;

static void run_range(void *arg, uint32_t t, uint32_t nt) {
    const job *j = arg;
    uint64_t lo = j->n_samples * t / nt, hi = j->n_samples * (t + 1) / nt;
    const uint8_t *male = j->p->male;
    uint64_t bpv = j->p->bytes_per_var;
    uint32_t K = j->k;
    for (uint32_t r = 0; r < j->n_rows; r++) {
        const unsigned char *g = j->geno + (uint64_t)j->row_blkvar[r] * bpv;
        const row_tab *tb = &j->tab[r];
        const double *w = j->w + (uint64_t)r * K;
        for (uint64_t s = lo; s < hi; s++) {
            unsigned code = (g[s >> 2] >> ((s & 3) * 2)) & 3u;
            unsigned i = (unsigned)male[s] * 4u + code;
            double d = tb->d[i];
            j->act[s] += tb->ac[i];
            j->den[s] += tb->dn[i];
            j->named[s] += tb->nd[i];
            if (d != 0.0) {
                double *acc = j->sum + s * K;
                for (uint32_t k = 0; k < K; k++) acc[k] += w[k] * d;
            }
        }
    }
}

/* Named-allele frequency over founders with calls, from the block bytes. */
static double founder_freq(const mg_prs *p, const unsigned char *g, int cls, int named_a1) {
    double cnt = 0, tot = 0;
    for (uint64_t s = 0; s < p->n_samples; s++) {
        if (!p->founder[s]) continue;
        unsigned code = (g[s >> 2] >> ((s & 3) * 2)) & 3u;
        if (code == 1) continue;
        double a1 = code == 0 ? 2 : code == 2 ? 1 : 0;
        int hap;
        switch (cls) {
        case MG__CHR_X: hap = p->male[s]; break;
        case MG__CHR_Y: if (!p->male[s]) continue; hap = 1; break;
        case MG__CHR_MT: hap = 1; break;
        default: hap = 0;
        }
        if (hap) { /* one allele; a heterozygous haploid call counts one half */
            cnt += a1 / 2;
            tot += 1;
        } else {
            cnt += a1;
            tot += 2;
        }
    }
    if (tot == 0) return 0.0;
    double f = cnt / tot;
    return named_a1 ? f : 1.0 - f;
}

/* `first`: the variant's first row; ALLELE_CT and DENOM count each variant
 * once however many of its alleles are named (as plink2 does). */
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
    /* active rows: those holding a weight of a kept score */
    uint8_t *active = mg__calloc(p->n_rows ? p->n_rows : 1, 1);
    if (!active) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t e = 0; e < p->n_ent; e++)
        if (col[p->ent[e].score] >= 0) active[p->ent[e].row] = 1;
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
    sum = mg__calloc(N * K, sizeof *sum);
    if (!W || !act || !den || !named || !sum) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t e = 0; e < p->n_ent; e++) {
        int32_t c = col[p->ent[e].score];
        if (c >= 0) W[(uint64_t)rowpos[p->ent[e].row] * K + (uint32_t)c] += p->ent[e].w;
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
    size_t gbytes;
    if (mg__mul_size(B, (size_t)p->bytes_per_var, &gbytes)) { st = mg__prs_set(p, MG_E_NOMEM, "block too large"); goto done; }
    geno = mg__malloc(gbytes);
    tab = mg__malloc((size_t)B * 2 * sizeof *tab); /* at most 2 rows per variant */
    blkvar = mg__malloc((size_t)B * 2 * sizeof *blkvar);
    if (!geno || !tab || !blkvar) { st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }

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
                last = v;
                nv++;
            }
            uint32_t r = i - start;
            int first = i == start || p->rows[order[i - 1]].var != v;
            const mg__prs_row *row = &p->rows[order[i]];
            const mg__prs_variant *var = &p->var[v];
            const unsigned char *g = geno + (uint64_t)(nv - 1) * p->bytes_per_var;
            double f;
            if (p->ext_freq && !isnan(p->ext_freq[v]))
                f = row->named_a1 ? p->ext_freq[v] : 1.0 - p->ext_freq[v];
            else
                f = founder_freq(p, g, var->cls, row->named_a1);
            make_tab(&tab[r], var->cls, row->named_a1, first, f, p->params.flags);
            blkvar[r] = nv - 1;
            i++;
        }
        job j = { p, geno, blkvar, tab, W + (uint64_t)start * K, i - start, K,
                  act, den, named, sum, N, 0 };
        uint32_t nt = pool ? mg__pool_size(pool) : 1;
        mg__pool_run(pool, run_range, &j, nt);
    }

    /* publish */
    mg__free(p->r_act); mg__free(p->r_den); mg__free(p->r_named); mg__free(p->r_sum);
    p->r_act = act; p->r_den = den; p->r_named = named;
    p->r_sum = mg__malloc(((N * p->n_scores) != 0 ? N * p->n_scores : 1) * sizeof *p->r_sum);
    act = den = named = NULL;
    if (!p->r_sum) { p->computed = 0; st = mg__prs_set(p, MG_E_NOMEM, "out of memory"); goto done; }
    for (uint64_t s = 0; s < N; s++)
        for (uint32_t k = 0; k < p->n_scores; k++)
            p->r_sum[s * p->n_scores + k] = col[k] >= 0 ? sum[s * K + (uint32_t)col[k]] : NAN;
    p->computed = 1;
done:
    mg__pool_free(pool);
    mg__free(active); mg__free(order); mg__free(rowpos); mg__free(W);
    mg__free(act); mg__free(den); mg__free(named); mg__free(sum);
    mg__free(geno); mg__free(tab); mg__free(blkvar); mg__free(col);
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
