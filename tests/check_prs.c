/* check_prs.c - polygenic scores: PLINK 1 reader, scoring-file readers,
 * matching and plink2-exact scoring, checked against plink2 itself (golden
 * files always; live runs of Debian's plink2/plink1.9 when installed). */
#include "medgemini.h"
#include "testutil.h"
#include "prs/prs_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REL_TOL 1e-5 /* plink prints 6 significant digits */

/* ---- .sscore files ------------------------------------------------------- */

typedef struct sscore {
    int ncol;          /* columns after FID, IID */
    char **names;      /* ncol names */
    int nrow;
    char **iid;
    double *v;         /* nrow x ncol */
} sscore;

static void sscore_free(sscore *s) {
    for (int i = 0; i < s->ncol; i++) free(s->names[i]);
    for (int i = 0; i < s->nrow; i++) free(s->iid[i]);
    free(s->names);
    free(s->iid);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int sscore_load(sscore *s, const char *path) {
    memset(s, 0, sizeof *s);
    size_t size;
    char *text = (char *)tu_read_file(path, &size);
    if (!text) return -1;
    text[size] = '\0';
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (!line) { free(text); return -1; }
    /* header */
    char *fs = NULL;
    int col = 0;
    for (char *t = strtok_r(line, "\t", &fs); t; t = strtok_r(NULL, "\t", &fs), col++) {
        if (col < 2) continue;
        s->names = realloc(s->names, (size_t)(s->ncol + 1) * sizeof *s->names);
        s->names[s->ncol++] = strdup(t);
    }
    while ((line = strtok_r(NULL, "\n", &save))) {
        s->iid = realloc(s->iid, (size_t)(s->nrow + 1) * sizeof *s->iid);
        s->v = realloc(s->v, (size_t)(s->nrow + 1) * (size_t)s->ncol * sizeof *s->v);
        col = 0;
        for (char *t = strtok_r(line, "\t", &fs); t; t = strtok_r(NULL, "\t", &fs), col++) {
            if (col == 1) s->iid[s->nrow] = strdup(t);
            else if (col >= 2 && col - 2 < s->ncol) s->v[(size_t)s->nrow * (size_t)s->ncol + (size_t)(col - 2)] = strtod(t, NULL);
        }
        if (col != s->ncol + 2) { s->nrow++; sscore_free(s); free(text); return -1; }
        s->nrow++;
    }
    free(text);
    return 0;
}

static double relerr(double a, double b) {
    if (isnan(a) && isnan(b)) return 0;
    if (a == b) return 0;
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) / m;
}

/* Every column of `ref` present in `got` (by name) within REL_TOL; returns
 * the largest relative error. */
static double sscore_compare(const char *got_path, const char *ref_path, const char *what) {
    sscore a, b;
    ck_assert_msg(sscore_load(&a, got_path) == 0, "%s: cannot read %s", what, got_path);
    ck_assert_msg(sscore_load(&b, ref_path) == 0, "%s: cannot read %s", what, ref_path);
    ck_assert_int_eq(a.nrow, b.nrow);
    /* plink2 adds PHENO columns when the .fam has phenotypes; we do not */
    int skip = 0;
    while (skip < b.ncol && !strncmp(b.names[skip], "PHENO", 5)) skip++;
    ck_assert_int_eq(a.ncol, b.ncol - skip);
    double mx = 0;
    for (int c = skip; c < b.ncol; c++) {
        int ca = -1;
        for (int j = 0; j < a.ncol; j++) if (!strcmp(a.names[j], b.names[c])) ca = j;
        ck_assert_msg(ca == c - skip, "%s: column %s missing or out of order", what, b.names[c]);
        for (int r = 0; r < b.nrow; r++) {
            double e = relerr(a.v[(size_t)r * (size_t)a.ncol + (size_t)ca], b.v[(size_t)r * (size_t)b.ncol + (size_t)c]);
            /* plink2 prints NAMED_ALLELE_DOSAGE_SUM with 3 decimals (visible
             * with fractional VCF dosages): allow half a unit of the last. */
            double ad = fabs(a.v[(size_t)r * (size_t)a.ncol + (size_t)ca] - b.v[(size_t)r * (size_t)b.ncol + (size_t)c]);
            int ok = e <= REL_TOL ||
                     (!strcmp(b.names[c], "NAMED_ALLELE_DOSAGE_SUM") && ad <= 5.0001e-4);
            if (e > mx) mx = e;
            ck_assert_msg(ok, "%s: sample %s column %s: %.10g vs plink2 %.10g",
                          what, b.iid[r], b.names[c], a.v[(size_t)r * (size_t)a.ncol + (size_t)ca],
                          b.v[(size_t)r * (size_t)b.ncol + (size_t)c]);
        }
    }
    for (int r = 0; r < b.nrow; r++) ck_assert_str_eq(a.iid[r], b.iid[r]);
    fprintf(stderr, "  %s: %d samples x %d columns, max relative error %.2e\n", what, b.nrow, b.ncol, mx);
    sscore_free(&a);
    sscore_free(&b);
    return mx;
}

/* ---- helpers --------------------------------------------------------------- */

static int have_tool(const char *name) {
    if (tu_under_valgrind()) return 0;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

static void write_text(const char *path, const char *text) {
    ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

static mg_prs *open_ok(const char *prefix, uint32_t flags) {
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    pp.flags = flags;
    pp.n_threads = 2;
    mg_prs *p = NULL;
    char err[512];
    mg_status st = mg_prs_open_plink(&p, prefix, &pp, err, sizeof err);
    ck_assert_msg(st == MG_OK, "open %s: %s", prefix, err);
    return p;
}

/* Scores prefix with the given score/freq files through the API and writes
 * out_path. */
static void score_tuned(const char *prefix, const char *const *scores, int n, const char *freq,
                        uint32_t flags, const char *out_path, const mg__prs_tuning *tune) {
    mg_prs *p = open_ok(prefix, flags);
    mg__prs_set_tuning(p, tune);
    if (freq) ck_assert_msg(mg_prs_read_freq(p, freq) == MG_OK, "%s", mg_prs_errmsg(p));
    for (int i = 0; i < n; i++)
        ck_assert_msg(mg_prs_add_scores(p, NULL, scores[i]) == MG_OK, "%s", mg_prs_errmsg(p));
    ck_assert_msg(mg_prs_compute(p) == MG_OK, "%s", mg_prs_errmsg(p));
    ck_assert_msg(mg_prs_write_sscore(p, out_path) == MG_OK, "%s", mg_prs_errmsg(p));
    mg_prs_free(p);
}

static void score_ours(const char *prefix, const char *const *scores, int n, const char *freq,
                       uint32_t flags, const char *out_path) {
    score_tuned(prefix, scores, n, freq, flags, out_path, NULL);
}

/* Runs plink2 --score the way pgsc_calc does; `cols` e.g. "3-5". */
static void score_plink2(const char *prefix, const char *score, const char *cols, const char *mods,
                         const char *freq, const char *out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "plink2 --threads 1 --seed 31 --bfile '%s' --extract '%s' %s%s%s --score '%s' header-read "
             "cols=+scoresums,+denom,+fid list-variants %s --score-col-nums %s --out '%s' >'%s.stdout' 2>&1",
             prefix, score, freq ? "--read-freq '" : "", freq ? freq : "", freq ? "'" : "",
             score, mods, cols, out, out);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "plink2 failed (%d): %s", rc, cmd);
}

/* A simulated cohort: n samples (the last fifth non-founders), variants on
 * chromosomes 1, 2, X, Y, MT and XY, missing calls at rates 0/5/20 %, all
 * three sexes; a wide score file with three scores (some variants scored on
 * both alleles, some weights 0, one ID absent from the data) and an .afreq
 * file with arbitrary frequencies. dip_only: score rows for 1, 2, XY only. */
static const char *const sim_chr[] = {"1", "2", "X", "Y", "MT", "XY"};
static const int sim_nvar[] = {30, 20, 25, 10, 8, 5};

static void make_cohort(const char *prefix, int n, uint64_t seed, int dip_only) {
    char path[4096];
    uint64_t rs = seed;
    snprintf(path, sizeof path, "%s.fam", prefix);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++) {
        const char *sex = (const char *[]){"1", "2", "0", "1", "2"}[tu_rand_u64(&rs) % 5];
        int founder = i < n - n / 5;
        fprintf(f, "fam%d ind%d %s %s %s -9\n", i, i, founder ? "0" : "F0", founder ? "0" : "M0", sex);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s.bim", prefix);
    FILE *bim = fopen(path, "w");
    snprintf(path, sizeof path, "%s.bed", prefix);
    FILE *bed = fopen(path, "wb");
    snprintf(path, sizeof path, "%s.score", prefix);
    FILE *sc = fopen(path, "w");
    snprintf(path, sizeof path, "%s.afreq", prefix);
    FILE *af = fopen(path, "w");
    ck_assert(bim && bed && sc && af);
    fputc(0x6c, bed); fputc(0x1b, bed); fputc(0x01, bed);
    fprintf(sc, "ID\teffect_allele\tsA\tsB\tsC\n");
    fprintf(af, "#CHROM\tID\tREF\tALT\tALT_FREQS\tOBS_CT\n");
    const char *bases = "ACGT";
    int v = 0;
    for (int c = 0; c < 6; c++) {
        for (int j = 0; j < sim_nvar[c]; j++, v++) {
            int i1 = (int)(tu_rand_u64(&rs) % 4), i2 = (i1 + 1 + (int)(tu_rand_u64(&rs) % 3)) % 4;
            char a1 = bases[i1], a2 = bases[i2];
            fprintf(bim, "%s\trs%d\t0\t%d\t%c\t%c\n", sim_chr[c], v, 1000 + 10 * v, a1, a2);
            double fr = 0.05 + 0.9 * (double)(tu_rand_u64(&rs) % 1000) / 1000.0;
            double miss = (double[]){0, 0.05, 0.2}[tu_rand_u64(&rs) % 3];
            unsigned char byte = 0;
            for (int s = 0; s < n; s++) {
                unsigned code;
                if ((double)(tu_rand_u64(&rs) % 10000) / 10000.0 < miss) code = 1;
                else {
                    int g = ((double)(tu_rand_u64(&rs) % 10000) / 10000.0 < fr) +
                            ((double)(tu_rand_u64(&rs) % 10000) / 10000.0 < fr);
                    code = g == 2 ? 0u : g == 1 ? 2u : 3u;
                }
                byte |= (unsigned char)(code << (2 * (s & 3)));
                if ((s & 3) == 3 || s == n - 1) { fputc(byte, bed); byte = 0; }
            }
            fprintf(af, "%s\trs%d\t%c\t%c\t%.4f\t200\n", sim_chr[c], v, a2, a1,
                    0.01 + 0.98 * (double)(tu_rand_u64(&rs) % 1000) / 1000.0);
            if (dip_only && c != 0 && c != 1 && c != 5) continue;
            char ea = (tu_rand_u64(&rs) & 1) ? a1 : a2;
            fprintf(sc, "rs%d\t%c", v, ea);
            for (int k = 0; k < 3; k++) {
                if (tu_rand_u64(&rs) % 5 == 0) fprintf(sc, "\t0");
                else fprintf(sc, "\t%.6f", tu_rand_f32(&rs) * 2);
            }
            fputc('\n', sc);
            if (tu_rand_u64(&rs) % 5 == 0) { /* the other allele too */
                fprintf(sc, "rs%d\t%c", v, ea == a1 ? a2 : a1);
                for (int k = 0; k < 3; k++) fprintf(sc, "\t%.6f", (k == 1) ? 0.0 : tu_rand_f32(&rs));
                fputc('\n', sc);
            }
        }
    }
    fprintf(sc, "rsABSENT\tA\t1\t1\t1\n");
    fclose(bim); fclose(bed); fclose(sc); fclose(af);
    /* the first score alone (the one-score code path) */
    char in[4200], out[4200], line[512];
    snprintf(in, sizeof in, "%s.score", prefix);
    snprintf(out, sizeof out, "%s.score1", prefix);
    FILE *fi = fopen(in, "r"), *fo = fopen(out, "w");
    ck_assert(fi && fo);
    while (fgets(line, sizeof line, fi)) {
        char *t1 = strchr(line, '\t');
        char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        char *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
        ck_assert_ptr_nonnull(t3);
        *t3 = '\0';
        fprintf(fo, "%s\n", line);
    }
    fclose(fi);
    fclose(fo);
}

/* ---- golden CINECA output -------------------------------------------------- */

/* The CINECA target with .bim IDs relabelled chr:pos:REF:ALT, as in
 * golden_plink2/PROVENANCE.md. Returns the prefix or NULL when the shared
 * data is absent. */
static const char *cineca_relabelled(void) {
    const char *g = tu_shared_file("pgs/genotypes/cineca_synthetic_subset/cineca_synthetic_subset.bim");
    if (!g) return NULL;
    static char prefix[4096];
    char src[4096], dst[4200];
    snprintf(src, sizeof src, "%s", g);
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("cineca"));
    size_t size;
    char *text = (char *)tu_read_file(src, &size);
    ck_assert_ptr_nonnull(text);
    text[size] = '\0';
    snprintf(dst, sizeof dst, "%s.bim", prefix);
    FILE *f = fopen(dst, "w");
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char chr[64], id[256], cm[64], pos[64], a1[256], a2[256];
        ck_assert_int_eq(sscanf(l, "%63s %255s %63s %63s %255s %255s", chr, id, cm, pos, a1, a2), 6);
        fprintf(f, "%s\t%s:%s:%s:%s\t%s\t%s\t%s\t%s\n", chr, chr, pos, a2, a1, cm, pos, a1, a2);
    }
    fclose(f);
    free(text);
    char abs_src[4096];
    for (int i = 0; i < 2; i++) {
        const char *ext = i ? ".fam" : ".bed";
        char rel[512];
        snprintf(rel, sizeof rel, "pgs/genotypes/cineca_synthetic_subset/cineca_synthetic_subset%s", ext);
        ck_assert_ptr_nonnull(realpath(tu_shared_file(rel), abs_src));
        snprintf(dst, sizeof dst, "%s%s", prefix, ext);
        unlink(dst);
        ck_assert_int_eq(symlink(abs_src, dst), 0);
    }
    return prefix;
}

START_TEST(test_golden_cineca) {
    const char *prefix = cineca_relabelled();
    char score_c[4096] = "", gold_c[4096] = "";
    const char *sp = tu_shared_file("pgs/golden_plink2/cineca_22_additive_0.scorefile.gz");
    if (sp) snprintf(score_c, sizeof score_c, "%s", sp);
    sp = tu_shared_file("pgs/golden_plink2/golden_cineca_22_additive_0.sscore");
    if (sp) snprintf(gold_c, sizeof gold_c, "%s", sp);
    if (!prefix || !*score_c || !*gold_c) { fprintf(stderr, "  skipped: shared PGS data absent\n"); return; }
    const char *out = tu_tmp_path("cineca.sscore");
    const char *sc[] = {score_c};
    score_ours(prefix, sc, 1, NULL, 0, out);
    sscore_compare(out, gold_c, "golden CINECA (wide file)");

    /* the caller-buffer view agrees with the file */
    mg_prs *p = open_ok(prefix, 0);
    uint32_t added = 0;
    ck_assert_int_eq(mg_prs_add_scores(p, &added, score_c), MG_OK);
    ck_assert_uint_eq(added, 2);
    ck_assert_uint_eq(mg_prs_score_count(p), 2);
    ck_assert_str_eq(mg_prs_score_name(p, 0), "PGS001229");
    ck_assert_str_eq(mg_prs_score_name(p, 1), "duplicatetest");
    ck_assert_ptr_null(mg_prs_score_name(p, 2));
    ck_assert_uint_eq(mg_prs_sample_count(p), 2504);
    ck_assert_uint_eq(mg_prs_variant_count(p), 829);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    sscore g;
    ck_assert_int_eq(sscore_load(&g, gold_c), 0);
    double *buf = malloc(2504 * sizeof *buf);
    const int32_t cols[] = {MG_PRS_COL_ALLELE_CT, MG_PRS_COL_DENOM, MG_PRS_COL_NAMED_ALLELE_DOSAGE_SUM,
                            MG_PRS_COL_AVG, MG_PRS_COL_AVG, MG_PRS_COL_SUM, MG_PRS_COL_SUM};
    const uint32_t ks[] = {0, 0, 0, 0, 1, 0, 1};
    for (int c = 0; c < 7; c++) {
        ck_assert_int_eq(mg_prs_results(buf, 2504, p, cols[c], ks[c]), MG_OK);
        for (int r = 0; r < g.nrow; r++)
            ck_assert_msg(relerr(buf[r], g.v[(size_t)r * 7 + (size_t)c]) <= REL_TOL, "column %d sample %d", c, r);
    }
    const char *fid, *iid;
    ck_assert_int_eq(mg_prs_sample_id(&fid, &iid, p, 0), MG_OK);
    ck_assert_str_eq(iid, "HG00096");
    ck_assert_str_eq(fid, "HG00096");
    sscore_free(&g);
    free(buf);
    mg_prs_free(p);
}
END_TEST

/* PGS001229 restricted to chr22 in the PGS Catalog format, matched by our
 * chr:pos + allele rules, must reproduce the score that pgsc_calc's own
 * matching fed to plink2 (golden column PGS001229). */
START_TEST(test_catalog_cineca) {
    const char *g = tu_shared_file("pgs/genotypes/cineca_synthetic_subset/cineca_synthetic_subset.bed");
    if (!g) { fprintf(stderr, "  skipped: shared PGS data absent\n"); return; }
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", g);
    prefix[strlen(prefix) - 4] = '\0';
    char cat[4096] = "", gold[4096] = "";
    const char *sp = tu_shared_file("pgs/pgs_catalog_scoring_files/pgsc_calc_examples/PGS001229_22.txt");
    if (sp) snprintf(cat, sizeof cat, "%s", sp);
    sp = tu_shared_file("pgs/golden_plink2/golden_cineca_22_additive_0.sscore");
    if (sp) snprintf(gold, sizeof gold, "%s", sp);
    if (!*cat || !*gold) { fprintf(stderr, "  skipped: shared PGS data absent\n"); return; }
    mg_prs *p = open_ok(prefix, 0);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, cat), MG_OK);
    mg_prs_match_report r = { sizeof r, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_OK);
    ck_assert_str_eq(mg_prs_score_name(p, 0), "PGS001229");
    ck_assert_uint_eq(r.n_rows, 835);
    ck_assert_uint_eq(r.n_matched, 782);   /* = rows of the golden score file */
    ck_assert_uint_eq(r.n_ambiguous, 47);
    ck_assert_uint_eq(r.n_unmatched, 6);
    ck_assert_uint_eq(r.kept, 1);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    sscore s;
    ck_assert_int_eq(sscore_load(&s, gold), 0);
    double *buf = malloc(2504 * sizeof *buf);
    ck_assert_int_eq(mg_prs_results(buf, 2504, p, MG_PRS_COL_SUM, 0), MG_OK);
    double mx = 0;
    for (int i = 0; i < s.nrow; i++) {
        double e = relerr(buf[i], s.v[(size_t)i * 7 + 5]);
        if (e > mx) mx = e;
        ck_assert_msg(e <= REL_TOL, "sample %d: %.10g vs %.10g", i, buf[i], s.v[(size_t)i * 7 + 5]);
    }
    ck_assert_int_eq(mg_prs_results(buf, 2504, p, MG_PRS_COL_DENOM, 0), MG_OK);
    for (int i = 0; i < s.nrow; i++) ck_assert(buf[i] == s.v[(size_t)i * 7 + 1]);
    fprintf(stderr, "  PGS Catalog PGS001229_22 vs golden: max relative error %.2e\n", mx);
    sscore_free(&s);
    free(buf);
    mg_prs_free(p);
}
END_TEST

/* ---- live plink2 comparisons ------------------------------------------------ */

START_TEST(test_live_sim) {
    if (!have_tool("plink2")) { fprintf(stderr, "  skipped: plink2 not installed\n"); return; }
    static const struct { const char *mods; uint32_t flags; int freq; int dip; } modes[] = {
        {"", 0, 0, 0},
        {"no-mean-imputation", MG_PRS_NO_MEAN_IMPUTATION, 0, 0},
        {"", 0, 1, 0},
        {"dominant", MG_PRS_DOMINANT, 0, 1},
        {"recessive", MG_PRS_RECESSIVE, 0, 1},
        {"dominant no-mean-imputation", MG_PRS_DOMINANT | MG_PRS_NO_MEAN_IMPUTATION, 0, 1},
        {"recessive", MG_PRS_RECESSIVE, 1, 1},
        {"", 0, 0, 2},                          /* one score              */
        {"no-mean-imputation", MG_PRS_NO_MEAN_IMPUTATION, 1, 2},
        {"dominant", MG_PRS_DOMINANT, 0, 3},    /* one score, diploid     */
    };
    /* 2051 samples: more than one 2048-sample step of the matrix path, with
     * a last step that ends inside a .bed byte */
    static const int sizes[] = {0, 120, 333, 2051};
    for (int seed = 1; seed <= 3; seed++) {
        for (int dip = 0; dip <= 1; dip++) {
            char prefix[4096];
            snprintf(prefix, sizeof prefix, "%s", tu_tmp_path(dip ? "simd" : "sim"));
            make_cohort(prefix, sizes[seed], (uint64_t)seed * 7919 + (uint64_t)dip, dip);
            char score[4200], freq[4200];
            snprintf(score, sizeof score, "%s.score", prefix);
            snprintf(freq, sizeof freq, "%s.afreq", prefix);
            char score1[4200];
            snprintf(score1, sizeof score1, "%s.score1", prefix);
            for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
                if (modes[m].dip % 2 != dip) continue;
                int one = modes[m].dip >= 2;
                char pl[4300], ours[4300], what[256];
                snprintf(pl, sizeof pl, "%s_pl%zu", prefix, m);
                snprintf(ours, sizeof ours, "%s_ours%zu.sscore", prefix, m);
                score_plink2(prefix, one ? score1 : score, one ? "3" : "3-5", modes[m].mods,
                             modes[m].freq ? freq : NULL, pl);
                const char *sc[] = {one ? score1 : score};
                score_ours(prefix, sc, 1, modes[m].freq ? freq : NULL, modes[m].flags, ours);
                strcat(pl, ".sscore");
                snprintf(what, sizeof what, "sim seed %d%s%s [%s]%s", seed, dip ? " diploid" : "",
                         one ? " one score" : "", modes[m].mods, modes[m].freq ? " --read-freq" : "");
                sscore_compare(ours, pl, what);
            }
        }
    }
}
END_TEST

/* mg_prs_write_freq: the founder frequencies against plink2 --freq (sexes,
 * X, Y and MT, missing calls, founders and non-founders), read back by
 * mg_prs_read_freq without changing any score. */
START_TEST(test_write_freq) {
    char prefix[4096], ours[4200], pl[4200], cmd[9000], score[4200], a[4300], b[4300];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("simf"));
    make_cohort(prefix, 333, 4242, 0);
    snprintf(ours, sizeof ours, "%s.ours.afreq", prefix);
    mg_prs *p = open_ok(prefix, 0);
    ck_assert_int_eq(mg_prs_write_freq(p, NULL), MG_E_INVALID_ARG);
    ck_assert_msg(mg_prs_write_freq(p, ours) == MG_OK, "%s", mg_prs_errmsg(p));
    ck_assert_int_eq(mg_prs_write_freq(p, "/nonexistent-dir/x.afreq"), MG_E_IO);
    mg_prs_free(p);
    ck_assert_int_eq(mg_prs_write_freq(NULL, ours), MG_E_MISUSE);
    /* the same scores with and without our frequencies read back */
    snprintf(score, sizeof score, "%s.score", prefix);
    snprintf(a, sizeof a, "%s_nofreq.sscore", prefix);
    snprintf(b, sizeof b, "%s_freq.sscore", prefix);
    const char *sc[] = {score};
    score_ours(prefix, sc, 1, NULL, 0, a);
    score_ours(prefix, sc, 1, ours, 0, b);
    size_t na = 0, nb = 0;
    unsigned char *ta = tu_read_file(a, &na), *tb = tu_read_file(b, &nb);
    ck_assert(ta && tb && na == nb && !memcmp(ta, tb, na));
    free(ta);
    free(tb);
    if (!have_tool("plink2")) { fprintf(stderr, "  skipped: plink2 not installed\n"); return; }
    snprintf(pl, sizeof pl, "%s_pl", prefix);
    snprintf(cmd, sizeof cmd, "plink2 --threads 1 --bfile '%s' --freq --out '%s' >/dev/null 2>&1",
             prefix, pl);
    ck_assert_int_eq(system(cmd), 0);
    strcat(pl, ".afreq");
    FILE *fo = fopen(ours, "r"), *fp = fopen(pl, "r");
    ck_assert(fo && fp);
    char lo[1024], lp[1024];
    int c_af = -1, c_obs = -1, rows = 0;
    ck_assert(fgets(lo, sizeof lo, fo) && fgets(lp, sizeof lp, fp));
    {   /* plink2's columns by name (it adds PROVISIONAL_REF? for .bed input) */
        int c = 0;
        for (char *t = strtok(lp, "\t\n"); t; t = strtok(NULL, "\t\n"), c++) {
            if (!strcmp(t, "ALT_FREQS")) c_af = c;
            if (!strcmp(t, "OBS_CT")) c_obs = c;
        }
    }
    ck_assert(c_af > 0 && c_obs > 0);
    double worst = 0;
    while (fgets(lo, sizeof lo, fo)) {
        ck_assert(fgets(lp, sizeof lp, fp));
        char *fo_[8], *fp_[8];
        int no = 0, np = 0;
        for (char *t = strtok(lo, "\t\n"); t && no < 8; t = strtok(NULL, "\t\n")) fo_[no++] = t;
        for (char *t = strtok(lp, "\t\n"); t && np < 8; t = strtok(NULL, "\t\n")) fp_[np++] = t;
        ck_assert(no == 6 && np > c_obs);
        ck_assert_str_eq(fo_[1], fp_[1]);           /* ID   */
        ck_assert_str_eq(fo_[2], fp_[2]);           /* REF  */
        ck_assert_str_eq(fo_[3], fp_[3]);           /* ALT  */
        ck_assert_str_eq(fo_[5], fp_[c_obs]);       /* OBS_CT */
        double x = strtod(fo_[4], NULL), y = strtod(fp_[c_af], NULL), d = fabs(x - y);
        if (d > worst) worst = d;
        ck_assert_msg(d <= 5e-6 + 1e-5 * fabs(y), "%s: %s vs plink2 %s", fo_[1], fo_[4], fp_[c_af]);
        rows++;
    }
    ck_assert(!fgets(lp, sizeof lp, fp));
    fclose(fo);
    fclose(fp);
    ck_assert_int_gt(rows, 50);
    fprintf(stderr, "  write_freq: %d variants, max difference to plink2 --freq %.2e\n", rows, worst);
}
END_TEST

/* plink2 refuses dominant/recessive on haploid chromosomes; so do we. */
START_TEST(test_dominant_haploid_refused) {
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("simh"));
    make_cohort(prefix, 40, 5, 0);
    char score[4200];
    snprintf(score, sizeof score, "%s.score", prefix);
    mg_prs *p = open_ok(prefix, MG_PRS_RECESSIVE);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, score), MG_OK);
    ck_assert_int_eq(mg_prs_compute(p), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mg_prs_errmsg(p), "haploid"));
    mg_prs_free(p);
}
END_TEST

START_TEST(test_live_toy) {
    const char *ped = tu_shared_file("pgs/genotypes/plink_toy/toy.ped");
    if (!ped) { fprintf(stderr, "  skipped: shared PGS data absent\n"); return; }
    if (!have_tool("plink2") || !have_tool("plink1.9")) { fprintf(stderr, "  skipped: plink2/plink1.9 not installed\n"); return; }
    char file[4096], prefix[4096], cmd[9000];
    snprintf(file, sizeof file, "%s", ped);
    file[strlen(file) - 4] = '\0';
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("toy"));
    snprintf(cmd, sizeof cmd, "plink1.9 --file '%s' --make-bed --out '%s' >/dev/null 2>&1", file, prefix);
    ck_assert_int_eq(system(cmd), 0);
    /* both SNPs, both alleles, two scores */
    char bim[4200], score[4200];
    snprintf(bim, sizeof bim, "%s.bim", prefix);
    snprintf(score, sizeof score, "%s.score", prefix);
    size_t size;
    char *text = (char *)tu_read_file(bim, &size);
    ck_assert_ptr_nonnull(text);
    text[size] = '\0';
    FILE *f = fopen(score, "w");
    fprintf(f, "ID\tA1\tw1\tw2\n");
    char *save = NULL;
    int i = 0;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), i++) {
        char chr[64], id[256], cm[64], pos[64], a1[64], a2[64];
        ck_assert_int_eq(sscanf(l, "%63s %255s %63s %63s %63s %63s", chr, id, cm, pos, a1, a2), 6);
        fprintf(f, "%s\t%s\t%.3f\t%.3f\n", id, a1, 0.5 + i, -1.25 * i);
        if (strcmp(a2, "0")) fprintf(f, "%s\t%s\t%.3f\t0\n", id, a2, 0.25);
    }
    fclose(f);
    free(text);
    char pl[4300], ours[4300];
    snprintf(pl, sizeof pl, "%s_pl", prefix);
    snprintf(ours, sizeof ours, "%s_ours.sscore", prefix);
    score_plink2(prefix, score, "3-4", "no-mean-imputation", NULL, pl);
    const char *sc[] = {score};
    score_ours(prefix, sc, 1, NULL, MG_PRS_NO_MEAN_IMPUTATION, ours);
    strcat(pl, ".sscore");
    sscore_compare(ours, pl, "plink_toy (no-mean-imputation)");
}
END_TEST

/* ---- PGS Catalog matching rules --------------------------------------------- */

/* A target designed for every matching case, a PGS Catalog file against it,
 * and the wide file that the rules must reduce it to. */
START_TEST(test_catalog_rules) {
    char prefix[4096], path[4200];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("rules"));
    const int n = 64;
    snprintf(path, sizeof path, "%s.fam", prefix);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < n; i++) fprintf(f, "f%d i%d 0 0 %d -9\n", i, i, 1 + (i & 1));
    fclose(f);
    /* chr pos A1(ALT) A2(REF) */
    static const char *const bim =
        "1\tv1\t0\t100\tG\tA\n"   /* refalt match                         */
        "1\tv2\t0\t200\tT\tC\n"   /* altref match                         */
        "1\tv3\t0\t300\tG\tA\n"   /* strand flip (score T/C)              */
        "1\tv4\t0\t400\tT\tA\n"   /* ambiguous A/T                         */
        "1\tv5\t0\t500\tC\tA\n"   /* multiallelic: two variants at 500    */
        "1\tv6\t0\t500\tG\tA\n"
        "1\tv7\t0\t700\tC\tG\n"   /* ambiguous C/G, kept with the flag     */
        "1\tv8\t0\t800\tT\tG\n"   /* two score rows: duplicate best match  */
        "2\tv9\t0\t900\tA\tG\n"   /* effect allele only (no other allele)  */
        "2\tv10\t0\t1000\tC\tT\n"; /* flipped, effect allele only          */
    snprintf(path, sizeof path, "%s.bim", prefix);
    write_text(path, bim);
    snprintf(path, sizeof path, "%s.bed", prefix);
    f = fopen(path, "wb");
    fputc(0x6c, f); fputc(0x1b, f); fputc(0x01, f);
    uint64_t rs = 99;
    for (int v = 0; v < 10; v++)
        for (int b = 0; b < n / 4; b++) fputc((int)(tu_rand_u64(&rs) & 0xff), f);
    fclose(f);
    char cat[4200];
    snprintf(cat, sizeof cat, "%s.txt", prefix);
    write_text(cat,
        "###PGS CATALOG SCORING FILE - see https://www.pgscatalog.org/downloads/#dl_ftp_scoring\n"
        "#format_version=2.0\n#pgs_id=PGS999999\n#pgs_name=rules\n#genome_build=GRCh37\n"
        "rsID\tchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\n"
        "rs1\t1\t100\tA\tG\t0.5\n"
        "rs2\t1\t200\tT\tC\t-0.25\n"
        "rs3\t1\t300\tT\tC\t0.75\n"
        "rs4\t1\t400\tA\tT\t1.5\n"
        "rs5\t1\t500\tC\tA\t2\n"
        "rs7\t1\t700\tG\tC\t0.125\n"
        "rs8\t1\t800\tT\tG\t0.3\n"
        "rs8b\t1\t800\tG\tT\t0.4\n"
        "rs9\tchr2\t900\tA\t\t-1\n"
        "rs10\t2\t1000\tG\t\t0.2\n"
        "rs11\t3\t1100\tA\tG\t9\n");
    /* default: ambiguous and multiallelic dropped, rs8 duplicates dropped */
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    pp.min_overlap = 0;
    mg_prs *p = NULL;
    char err[256];
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, cat), MG_OK);
    mg_prs_match_report r = { sizeof r, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_OK);
    ck_assert_str_eq(mg_prs_score_name(p, 0), "PGS999999");
    ck_assert_uint_eq(r.n_rows, 11);
    ck_assert_uint_eq(r.n_matched, 5);      /* rs1 rs2 rs3 rs9 rs10 */
    ck_assert_uint_eq(r.n_flipped, 2);      /* rs3 rs10 */
    ck_assert_uint_eq(r.n_ambiguous, 2);    /* rs4 rs7 */
    ck_assert_uint_eq(r.n_multiallelic, 1); /* rs5 */
    ck_assert_uint_eq(r.n_duplicate, 2);    /* rs8 rs8b */
    ck_assert_uint_eq(r.n_unmatched, 1);    /* rs11 */
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    char out1[4300], out2[4300], wide[4300];
    snprintf(out1, sizeof out1, "%s_cat.sscore", prefix);
    ck_assert_int_eq(mg_prs_write_sscore(p, out1), MG_OK);
    mg_prs_free(p);
    /* the same score as a matched wide file (named allele in target terms) */
    snprintf(wide, sizeof wide, "%s.wide", prefix);
    write_text(wide, "ID\teffect_allele\tPGS999999\n"
                     "v1\tA\t0.5\nv2\tT\t-0.25\nv3\tA\t0.75\nv9\tA\t-1\nv10\tC\t0.2\n");
    snprintf(out2, sizeof out2, "%s_wide.sscore", prefix);
    const char *sc[] = {wide};
    score_ours(prefix, sc, 1, NULL, MG_PRS_NO_MEAN_IMPUTATION, out2);
    sc[0] = cat;
    /* (catalog file scored again with no-mean-imputation for plink2's sake) */
    mg_prs_params_init(&pp);
    pp.min_overlap = 0;
    pp.flags = MG_PRS_NO_MEAN_IMPUTATION;
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, cat), MG_OK);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    ck_assert_int_eq(mg_prs_write_sscore(p, out1), MG_OK);
    mg_prs_free(p);
    sscore_compare(out1, out2, "catalog rules vs hand-matched wide file");
    if (have_tool("plink2")) {
        char pl[4300];
        snprintf(pl, sizeof pl, "%s_pl", prefix);
        score_plink2(prefix, wide, "3", "no-mean-imputation", NULL, pl);
        strcat(pl, ".sscore");
        sscore_compare(out1, pl, "catalog rules vs plink2 on the matched file");
    }

    /* with keep-ambiguous and keep-multiallelic */
    mg_prs_params_init(&pp);
    pp.flags = MG_PRS_KEEP_AMBIGUOUS | MG_PRS_KEEP_MULTIALLELIC;
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, cat), MG_OK);
    r.struct_size = sizeof r;
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_OK);
    ck_assert_uint_eq(r.n_matched, 8);
    ck_assert_uint_eq(r.n_ambiguous, 0);
    ck_assert_uint_eq(r.n_multiallelic, 0);
    ck_assert_uint_eq(r.kept, 0);           /* 8/11 < 0.75 */
    ck_assert(fabs(r.overlap - 8.0 / 11.0) < 1e-12);
    mg_prs_free(p);

    /* below min_overlap (default 0.75: 5/11) the score is dropped */
    p = open_ok(prefix, 0);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, cat), MG_OK);
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_OK);
    ck_assert_uint_eq(r.kept, 0);
    ck_assert_int_eq(mg_prs_compute(p), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, wide), MG_OK);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    double buf[64];
    ck_assert_int_eq(mg_prs_results(buf, 64, p, MG_PRS_COL_SUM, 0), MG_OK);
    ck_assert(isnan(buf[0]));
    ck_assert_int_eq(mg_prs_results(buf, 64, p, MG_PRS_COL_SUM, 1), MG_OK);
    ck_assert(!isnan(buf[0]));
    mg_prs_free(p);
}
END_TEST

/* Threads and block sizes change nothing: bit for bit with one thread or
 * two; a different block size regroups the GEMM sums (rounding only). */
START_TEST(test_threads_blocks) {
    char prefix[4096], score[4200];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("simt"));
    make_cohort(prefix, tu_under_valgrind() ? 50 : 2051, 11, 0);
    snprintf(score, sizeof score, "%s.score", prefix);
    double *ref = NULL;
    uint64_t n = 0;
    for (int cfg = 0; cfg < 3; cfg++) {
        mg_prs_params pp;
        mg_prs_params_init(&pp);
        pp.n_threads = cfg == 0 ? 1 : 2;
        pp.block_variants = cfg == 2 ? 7 : 0;
        mg_prs *p = NULL;
        ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, NULL, 0), MG_OK);
        ck_assert_int_eq(mg_prs_add_scores(p, NULL, score), MG_OK);
        ck_assert_int_eq(mg_prs_compute(p), MG_OK);
        n = mg_prs_sample_count(p);
        double *v = malloc(n * 5 * sizeof *v);
        for (int c = 1; c <= 5; c++)
            ck_assert_int_eq(mg_prs_results(v + (uint64_t)(c - 1) * n, n, p, c, 2), MG_OK);
        if (!ref) ref = v;
        else {
            for (uint64_t i = 0; i < n * 5; i++)
                ck_assert_msg(cfg == 1 ? ref[i] == v[i] : fabs(ref[i] - v[i]) < 1e-12 + 1e-9 * fabs(ref[i]),
                              "cfg %d value %llu: %.17g vs %.17g", cfg, (unsigned long long)i, ref[i], v[i]);
            free(v);
        }
        /* computing twice gives the same again */
        ck_assert_int_eq(mg_prs_compute(p), MG_OK);
        /* the .sscore text, formatted on one thread or on the pool */
        if (cfg < 2) {
            char out[4300];
            snprintf(out, sizeof out, "%s_t%d.sscore", prefix, cfg);
            ck_assert_int_eq(mg_prs_write_sscore(p, out), MG_OK);
        }
        mg_prs_free(p);
    }
    free(ref);
    char o0[4300], o1[4300];
    snprintf(o0, sizeof o0, "%s_t0.sscore", prefix);
    snprintf(o1, sizeof o1, "%s_t1.sscore", prefix);
    size_t n0 = 0, n1 = 0;
    unsigned char *d0 = tu_read_file(o0, &n0), *d1 = tu_read_file(o1, &n1);
    ck_assert_ptr_nonnull(d0);
    ck_assert_ptr_nonnull(d1);
    ck_assert_uint_eq(n0, n1);
    ck_assert_msg(memcmp(d0, d1, n0) == 0, "the .sscore differs between 1 and 2 threads");
    /* one line per sample after the header */
    size_t lines = 0;
    for (size_t i = 0; i < n0; i++) lines += d0[i] == '\n';
    ck_assert_uint_eq(lines, n + 1);
    free(d0);
    free(d1);
}
END_TEST

/* ---- progress and interrupt ------------------------------------------------------ */

typedef struct prog_rec {
    uint64_t done[4096], total;
    int n, stop_at;      /* stop_at > 0: return 1 at that call */
    mg_prs *interrupt;   /* non-NULL: call mg_prs_interrupt on the 2nd call */
} prog_rec;

static int32_t prs_prog(void *u, uint64_t done, uint64_t total) {
    prog_rec *r = u;
    if (r->n < 4096) r->done[r->n] = done;
    r->n++;
    r->total = total;
    if (r->interrupt && r->n == 2) mg_prs_interrupt(r->interrupt);
    usleep(101000); /* every later block is due for a report */
    return r->stop_at && r->n == r->stop_at;
}

typedef struct prs_intr { mg_prs *p; atomic_int stop; } prs_intr;

static void *prs_interrupter(void *arg) {
    prs_intr *a = arg;
    while (!atomic_load(&a->stop)) {
        mg_prs_interrupt(a->p);
        usleep(100);
    }
    return NULL;
}

START_TEST(test_progress_interrupt) {
    char prefix[4096], score[4200];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("simp"));
    make_cohort(prefix, 60, 11, 0);
    snprintf(score, sizeof score, "%s.score", prefix);
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    pp.n_threads = 2;
    pp.block_variants = 16;
    mg_prs *p = NULL;
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, NULL, 0), MG_OK);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, score), MG_OK);
    /* the reference: no callback */
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    uint64_t n = mg_prs_sample_count(p);
    double *ref = malloc(n * sizeof *ref), *v = malloc(n * sizeof *v);
    ck_assert_int_eq(mg_prs_results(ref, n, p, MG_PRS_COL_SUM, 0), MG_OK);
    /* progress: from 0, rising, once per block here, ending at total */
    prog_rec *r = calloc(1, sizeof *r);
    ck_assert_int_eq(mg_prs_set_progress(p, prs_prog, r), MG_OK);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    ck_assert_int_ge(r->n, 3);
    ck_assert_uint_eq(r->done[0], 0);
    for (int i = 1; i < r->n; i++) ck_assert_uint_gt(r->done[i], r->done[i - 1]);
    ck_assert_uint_eq(r->done[r->n - 1], r->total);
    ck_assert_uint_gt(r->total, 32);
    ck_assert_int_eq(mg_prs_results(v, n, p, MG_PRS_COL_SUM, 0), MG_OK);
    ck_assert(memcmp(v, ref, n * sizeof *v) == 0);
    /* the callback stops it: no results */
    int calls = r->n;
    memset(r, 0, sizeof *r);
    r->stop_at = 2;
    ck_assert_int_eq(mg_prs_compute(p), MG_E_INTERRUPTED);
    ck_assert_ptr_nonnull(strstr(mg_prs_errmsg(p), "progress callback"));
    ck_assert_int_eq(r->n, 2);
    ck_assert_int_eq(mg_prs_results(v, n, p, MG_PRS_COL_SUM, 0), MG_E_MISUSE);
    /* mg_prs_interrupt (here from inside the callback) */
    memset(r, 0, sizeof *r);
    r->interrupt = p;
    ck_assert_int_eq(mg_prs_compute(p), MG_E_INTERRUPTED);
    ck_assert_ptr_nonnull(strstr(mg_prs_errmsg(p), "mg_prs_interrupt"));
    ck_assert_int_eq(r->n, 2);
    /* a request left from before is dropped; the results come back */
    ck_assert_int_eq(mg_prs_interrupt(p), MG_OK);
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    ck_assert_int_eq(r->n, calls);
    ck_assert_int_eq(mg_prs_results(v, n, p, MG_PRS_COL_SUM, 0), MG_OK);
    ck_assert(memcmp(v, ref, n * sizeof *v) == 0);
    /* from another thread, until one lands inside a compute */
    ck_assert_int_eq(mg_prs_set_progress(p, NULL, NULL), MG_OK);
    prs_intr a = {p, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, prs_interrupter, &a), 0);
    mg_status st = MG_OK;
    for (int i = 0; i < 100000 && st == MG_OK; i++) st = mg_prs_compute(p);
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    ck_assert_int_eq(st, MG_E_INTERRUPTED);
    ck_assert_int_eq(mg_prs_interrupt(NULL), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_set_progress(NULL, prs_prog, r), MG_E_MISUSE);
    free(r);
    free(ref);
    free(v);
    mg_prs_free(p);
}
END_TEST

/* ---- malformed inputs ---------------------------------------------------------- */

static void copy_file(const char *from, const char *to, long truncate_to) {
    size_t size;
    unsigned char *d = tu_read_file(from, &size);
    ck_assert_ptr_nonnull(d);
    if (truncate_to >= 0 && (size_t)truncate_to < size) size = (size_t)truncate_to;
    ck_assert_int_eq(tu_write_file(to, d, size), 0);
    free(d);
}

#define expect_open_fail(prefix, want, needle) expect_open_fail_(prefix, want, needle, __LINE__)
static void expect_open_fail_(const char *prefix, mg_status want, const char *needle, int line) {
    mg_prs *p = (mg_prs *)0x1;
    char err[512] = "x";
    mg_status st = mg_prs_open_plink(&p, prefix, NULL, err, sizeof err);
    ck_assert_msg(st == want, "line %d: want %d got %d (%s)", line, want, st, err);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err, needle) != NULL, "message \"%s\" lacks \"%s\"", err, needle);
}

START_TEST(test_malformed) {
    char base[4096], bad[4096], a[4300], b[4300];
    snprintf(base, sizeof base, "%s", tu_tmp_path("mf"));
    make_cohort(base, 30, 3, 0);
    snprintf(bad, sizeof bad, "%s", tu_tmp_path("mfbad"));
    const char *ext[] = {".bed", ".bim", ".fam"};
#define RESET() for (int i_ = 0; i_ < 3; i_++) { \
        snprintf(a, sizeof a, "%s%s", base, ext[i_]); snprintf(b, sizeof b, "%s%s", bad, ext[i_]); \
        copy_file(a, b, -1); }
    RESET();
    mg_prs *p = open_ok(bad, 0);
    mg_prs_free(p);
    /* truncated .bed */
    snprintf(a, sizeof a, "%s.bed", base); snprintf(b, sizeof b, "%s.bed", bad);
    copy_file(a, b, 3 + 8 * 20);
    expect_open_fail(bad, MG_E_DATA_FORMAT, "truncated");
    /* wrong magic */
    RESET();
    snprintf(b, sizeof b, "%s.bed", bad);
    FILE *f = fopen(b, "r+b"); fputc(0x6d, f); fclose(f);
    expect_open_fail(bad, MG_E_DATA_FORMAT, "magic");
    /* sample-major mode byte */
    RESET();
    snprintf(b, sizeof b, "%s.bed", bad);
    f = fopen(b, "r+b"); fseek(f, 2, SEEK_SET); fputc(0x00, f); fclose(f);
    expect_open_fail(bad, MG_E_DATA_FORMAT, "sample-major");
    /* sample-count mismatch: 4 more samples in the .fam */
    RESET();
    snprintf(b, sizeof b, "%s.fam", bad);
    f = fopen(b, "a");
    for (int i = 0; i < 4; i++) fprintf(f, "x%d y%d 0 0 1 -9\n", i, i);
    fclose(f);
    expect_open_fail(bad, MG_E_DATA_FORMAT, "expected");
    /* .fam with 5 fields */
    RESET();
    snprintf(b, sizeof b, "%s.fam", bad);
    write_text(b, "a b 0 0 1\n");
    expect_open_fail(bad, MG_E_DATA_FORMAT, ".fam:1: expected 6 fields");
    /* .bim: bad allele, bad position, missing field */
    RESET();
    snprintf(b, sizeof b, "%s.bim", bad);
    const char *bims[] = {"1\trs0\t0\t100\tA\tC\x01\n", "1\trs0\t0\t1x0\tA\tC\n", "1\trs0\t0\t100\tA\n"};
    const char *needles[] = {"bad allele", "position", "expected 6 fields"};
    for (int i = 0; i < 3; i++) {
        write_text(b, bims[i]);
        expect_open_fail(bad, MG_E_DATA_FORMAT, needles[i]);
    }
    /* missing file */
    RESET();
    unlink(b);
    expect_open_fail(bad, MG_E_IO, "cannot open");

    /* scoring files */
    RESET();
    p = open_ok(bad, 0);
    char s[4300];
    snprintf(s, sizeof s, "%s.sc", bad);
    const char *bad_scores[] = {
        "ID\tA1\tw\nrs0\tA\tabc\n",                 /* non-numeric weight   */
        "ID\tA1\tw\nrs0\tA\t1\nrs1\tC\tnan\n",       /* not finite           */
        "ID\tA1\tw\nrs0\tA\t1\tx\n",                 /* field count          */
        "ID\tA1\n",                                  /* no weight column     */
        "",                                          /* empty                */
        "#pgs_id=X\nchr_name\tchr_position\teffect_allele\teffect_weight\n1\t1000\tA\t0.1x\n",
    };
    for (size_t i = 0; i < sizeof bad_scores / sizeof bad_scores[0]; i++) {
        write_text(s, bad_scores[i]);
        uint32_t added = 7;
        ck_assert_int_eq(mg_prs_add_scores(p, &added, s), MG_E_DATA_FORMAT);
        ck_assert_uint_eq(added, 0);
        ck_assert_uint_eq(mg_prs_score_count(p), 0);  /* handle unchanged */
        ck_assert(strlen(mg_prs_errmsg(p)) > 0);
    }
    /* duplicate (ID, allele) rows: read the allele from the .bim */
    size_t size;
    snprintf(a, sizeof a, "%s.bim", bad);
    char *bt = (char *)tu_read_file(a, &size);
    ck_assert_ptr_nonnull(bt);
    bt[size] = '\0';
    char chr[16], id[64], a1[16];
    ck_assert_int_eq(sscanf(bt, "%15s %63s %*s %*s %15s", chr, id, a1), 3);
    free(bt);
    char dup[512];
    snprintf(dup, sizeof dup, "ID\tA1\tw\n%s\t%s\t1\n%s\t%s\t2\n", id, a1, id, a1);
    write_text(s, dup);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, s), MG_E_DATA_FORMAT);
    ck_assert_ptr_nonnull(strstr(mg_prs_errmsg(p), "duplicate"));
    ck_assert_uint_eq(mg_prs_score_count(p), 0);
    /* dosage-specific weights are refused as unsupported */
    write_text(s, "#pgs_id=X\nchr_name\tchr_position\teffect_allele\tdosage_0_weight\n1\t1000\tA\t0.1\n");
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, s), MG_E_UNSUPPORTED);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, "/nonexistent/x.txt"), MG_E_IO);
    /* bad frequency files */
    write_text(s, "#CHROM\tID\tREF\tALT\tALT_FREQS\tOBS_CT\n1\trs0\tA\tC\t1.5\t10\n");
    ck_assert_int_eq(mg_prs_read_freq(p, s), MG_E_DATA_FORMAT);
    write_text(s, "foo\tbar\n");
    ck_assert_int_eq(mg_prs_read_freq(p, s), MG_E_DATA_FORMAT);
    /* a good file still works after all that */
    snprintf(s, sizeof s, "%s.score", base);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, s), MG_OK);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    mg_prs_free(p);
#undef RESET
}
END_TEST

/* ---- API misuse ------------------------------------------------------------------ */


/* ---- VCF input ------------------------------------------------------------- */

/* tiny1000G (GRCh38, GT only, 3,202 samples, chr1-22 and X) scored with
 * PGS001229's GRCh38 harmonized positions, against plink2 --vcf. */
START_TEST(test_vcf_tiny1000g) {
    char vcf[4096] = "", cat[4096] = "";
    const char *sp = tu_shared_file("pgs/genotypes/tiny1000G/tiny1000G.vcf.gz");
    if (sp) snprintf(vcf, sizeof vcf, "%s", sp);
    sp = tu_shared_file("pgs/pgs_catalog_scoring_files/PGS001229_hmPOS_GRCh38.structured.txt.gz");
    if (sp) snprintf(cat, sizeof cat, "%s", sp);
    if (!*vcf || !*cat) { fprintf(stderr, "  skipped: shared PGS data absent\n"); return; }
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    pp.min_overlap = 0;
    pp.n_threads = 2;
    mg_prs *p = NULL;
    char err[512];
    ck_assert_msg(mg_prs_open_vcf(&p, vcf, &pp, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_uint_eq(mg_prs_sample_count(p), 3202);
    ck_assert_uint_eq(mg_prs_variant_count(p), 1004);
    const char *fid, *iid;
    ck_assert_int_eq(mg_prs_sample_id(&fid, &iid, p, 0), MG_OK);
    ck_assert_str_eq(fid, "0");
    ck_assert_str_eq(iid, "HG00096");
    ck_assert_msg(mg_prs_add_scores(p, NULL, cat) == MG_OK, "%s", mg_prs_errmsg(p));
    mg_prs_match_report r = { sizeof r, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_OK);
    ck_assert_uint_gt(r.n_matched, 900);
    ck_assert_msg(mg_prs_compute(p) == MG_OK, "%s", mg_prs_errmsg(p));
    mg_prs_free(p);

    /* the catalog file as a wide file on the VCF's chr:pos:ref:alt IDs (both
     * orientations; plink2 skips the IDs absent from the data) */
    char wide[4300], ours[4300], pl[4300], cmd[30000];
    snprintf(wide, sizeof wide, "%s", tu_tmp_path("tiny1000g.wide"));
    snprintf(cmd, sizeof cmd,
             "gzip -dc '%s' | awk -F'\t' 'BEGIN{print \"ID\\teffect_allele\\tPGS001229\"} "
             "NR>1{print $1\":\"$2\":\"$4\":\"$3\"\\t\"$3\"\\t\"$5; print $1\":\"$2\":\"$3\":\"$4\"\\t\"$3\"\\t\"$5}' >'%s'",
             cat, wide);
    if (system(cmd) != 0) { fprintf(stderr, "  skipped: gzip/awk failed\n"); return; }
    mg_prs_params_init(&pp);
    pp.n_threads = 2;
    ck_assert_msg(mg_prs_open_vcf(&p, vcf, &pp, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(mg_prs_add_scores(p, NULL, wide) == MG_OK, "%s", mg_prs_errmsg(p));
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_OK);
    ck_assert_uint_gt(r.n_matched, 900);
    ck_assert_msg(mg_prs_compute(p) == MG_OK, "%s", mg_prs_errmsg(p));
    snprintf(ours, sizeof ours, "%s", tu_tmp_path("tiny1000g_ours.sscore"));
    ck_assert_msg(mg_prs_write_sscore(p, ours) == MG_OK, "%s", mg_prs_errmsg(p));
    mg_prs_free(p);
    if (!have_tool("plink2")) { fprintf(stderr, "  skipped: plink2 not installed\n"); return; }
    snprintf(pl, sizeof pl, "%s", tu_tmp_path("tiny1000g_pl"));
    snprintf(cmd, sizeof cmd,
             "plink2 --threads 1 --seed 31 --vcf '%s' --extract '%s' --score '%s' header-read "
             "cols=+scoresums,+denom,+fid list-variants --score-col-nums 3 --out '%s' >'%s.stdout' 2>&1",
             vcf, wide, wide, pl, pl);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "plink2 failed (%d): %s", rc, cmd);
    strcat(pl, ".sscore");
    double mx = sscore_compare(ours, pl, "tiny1000G VCF vs plink2 --vcf");
    fprintf(stderr, "  tiny1000G VCF vs plink2: max relative difference %.3g\n", mx);
}
END_TEST


/* FORMAT/DS, GP and HDS dosages of the same values (records with GT and the
 * dosage fields, the dosage fields only, GT only, missing values; GP written
 * to 4 decimals, so that its sum is not exactly 1 and gets normalized), 80
 * samples on chr1-2, two scores naming ALT or REF, vs plink2 --vcf
 * dosage=DS|GP|HDS with and without mean imputation. */
START_TEST(test_vcf_dosage) {
    char vcf[4300], sc[4300], ours[4300], pl[4300], cmd[30000];
    snprintf(vcf, sizeof vcf, "%s", tu_tmp_path("ds.vcf"));
    snprintf(sc, sizeof sc, "%s", tu_tmp_path("ds.score"));
    const int N = 80;
    uint64_t rs = 7;
    FILE *f = fopen(vcf, "w"), *g = fopen(sc, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(g);
    fprintf(f, "##fileformat=VCFv4.2\n##contig=<ID=1>\n##contig=<ID=2>\n"
               "##FORMAT=<ID=GT,Number=1,Type=String,Description=\"G\">\n"
               "##FORMAT=<ID=DS,Number=A,Type=Float,Description=\"D\">\n"
               "##FORMAT=<ID=GP,Number=G,Type=Float,Description=\"P\">\n"
               "##FORMAT=<ID=HDS,Number=2,Type=Float,Description=\"H\">\n"
               "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT");
    for (int s2 = 0; s2 < N; s2++) fprintf(f, "\ts%d", s2);
    fprintf(f, "\n");
    fprintf(g, "ID\tA1\tS1\tS2\n");
    static const char *const fmts[] = {"GT:DS:GP:HDS", "DS:GP:HDS", "GT", "GT:DS:GP:HDS"};
    for (int v = 0; v < 40; v++) {
        int kind = v % 4;
        fprintf(f, "%s\t%d\tv%d\tA\tG\t.\t.\t.\t%s", v < 25 ? "1" : "2", 100 + 10 * v, v, fmts[kind]);
        for (int s2 = 0; s2 < N; s2++) {
            double d = (double)(tu_rand_u64(&rs) % 2001) / 1000.0;
            if (tu_rand_u64(&rs) % 5 == 0) d = (double)(long)(d + 0.5);
            int gi = (int)(d + 0.5);
            const char *gt = gi == 0 ? "0/0" : gi == 1 ? "0/1" : "1/1";
            int miss = kind == 3 && tu_rand_u64(&rs) % 7 == 0;
            char dd[128];
            double h1 = d > 1 ? 1 : d, p1 = d * (1 - d / 2), p2 = d * d / 4;
            snprintf(dd, sizeof dd, "%.3f:%.4f,%.4f,%.4f:%.3f,%.3f", d, 1 - p1 - p2, p1, p2, h1, d - h1);
            if (miss) { gt = "./."; strcpy(dd, ".:.:."); }
            if (kind == 0 || kind == 3) fprintf(f, "\t%s:%s", gt, dd);
            else if (kind == 1) fprintf(f, "\t%s", dd);
            else fprintf(f, "\t%s", gt);
        }
        fprintf(f, "\n");
        fprintf(g, "v%d\t%s\t%.4f\t%.4f\n", v, v % 3 ? "G" : "A",
                (double)(tu_rand_u64(&rs) % 2000) / 1000.0 - 1.0,
                (double)(tu_rand_u64(&rs) % 2000) / 1000.0 - 1.0);
    }
    fclose(f);
    fclose(g);
    /* GP-force: plink2 asks for it when a file also has DS */
    static const char *const field[] = {"DS", "GP", "HDS"};
    for (int mode = 0; mode < 6; mode++) {
        int nmi = mode & 1, fi = mode / 2;
        mg_prs_params pp;
        mg_prs_params_init(&pp);
        pp.flags = nmi ? MG_PRS_NO_MEAN_IMPUTATION : 0;
        pp.vcf_dosage = fi == 0 ? MG_PRS_DOSAGE_DS : fi == 1 ? MG_PRS_DOSAGE_GP : MG_PRS_DOSAGE_HDS;
        mg_prs *p = NULL;
        char err[512];
        ck_assert_msg(mg_prs_open_vcf(&p, vcf, &pp, err, sizeof err) == MG_OK, "%s", err);
        ck_assert_msg(mg_prs_add_scores(p, NULL, sc) == MG_OK, "%s", mg_prs_errmsg(p));
        ck_assert_msg(mg_prs_compute(p) == MG_OK, "%s", mg_prs_errmsg(p));
        snprintf(ours, sizeof ours, "%s", tu_tmp_path(nmi ? "ds_ours_nmi.sscore" : "ds_ours.sscore"));
        char what[128];
        snprintf(what, sizeof what, "VCF %s vs plink2 dosage=%s [%s]", field[fi], field[fi],
                 nmi ? "no-mean-imputation" : "");
        ck_assert_msg(mg_prs_write_sscore(p, ours) == MG_OK, "%s", mg_prs_errmsg(p));
        mg_prs_free(p);
        if (!have_tool("plink2")) { fprintf(stderr, "  skipped: plink2 not installed\n"); return; }
        snprintf(pl, sizeof pl, "%s", tu_tmp_path(nmi ? "ds_pl_nmi" : "ds_pl"));
        snprintf(cmd, sizeof cmd,
                 "plink2 --threads 1 --seed 31 --vcf '%s' dosage=%s --extract '%s' --score '%s' header-read "
                 "cols=+scoresums,+denom,+fid list-variants %s --score-col-nums 3-4 --out '%s' >'%s.stdout' 2>&1",
                 vcf, fi == 1 ? "GP-force" : field[fi], sc, sc, nmi ? "no-mean-imputation" : "", pl, pl);
        int rc = system(cmd);
        ck_assert_msg(rc == 0, "plink2 failed (%d): %s", rc, cmd);
        strcat(pl, ".sscore");
        sscore_compare(ours, pl, what);
    }
    static const char *const badgp[] = {"0.2,0.3,0.4,0.1", "0.5,1.5,0", "-0.1,0.6,0.5"};
    for (int b = 0; b < 3; b++) {
        f = fopen(vcf, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
                   "##FORMAT=<ID=GP,Number=G,Type=Float,Description=\"P\">\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\n"
                   "1\t100\tv1\tA\tG\t.\t.\t.\tGP\t%s\n", badgp[b]);
        fclose(f);
        mg_prs_params pp;
        mg_prs_params_init(&pp);
        pp.vcf_dosage = MG_PRS_DOSAGE_GP;
        mg_prs *p = NULL;
        char err[512];
        ck_assert_int_eq(mg_prs_open_vcf(&p, vcf, &pp, err, sizeof err), MG_E_DATA_FORMAT);
        ck_assert_ptr_nonnull(strstr(err, "GP"));
        ck_assert_ptr_null(p);
    }
}
END_TEST

static void expect_vcf_fail(const char *text, mg_status want, const char *what) {
    char path[4300];
    snprintf(path, sizeof path, "%s", tu_tmp_path("bad.vcf"));
    write_text(path, text);
    mg_prs *p = (mg_prs *)1;
    char err[512];
    mg_status st = mg_prs_open_vcf(&p, path, NULL, err, sizeof err);
    ck_assert_msg(st == want, "%s: status %d (%s)", what, (int)st, err);
    ck_assert_ptr_null(p);
    ck_assert_msg(err[0] != '\0', "%s: no message", what);
}

#define VCF_HDR "##fileformat=VCFv4.2\n##contig=<ID=1>\n" \
    "##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n" \
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\n"

START_TEST(test_vcf_malformed) {
    /* a good one first: hom ALT, het, missing, haploid */
    char path[4300];
    snprintf(path, sizeof path, "%s", tu_tmp_path("good.vcf"));
    write_text(path, VCF_HDR "1\t100\tv1\tA\tG\t.\t.\t.\tGT\t1|1\t0/1\n"
                             "1\t200\tv2\tC\tT,G\t.\t.\t.\tGT\t./.\t1\n");
    mg_prs *p = NULL;
    char err[512];
    ck_assert_msg(mg_prs_open_vcf(&p, path, NULL, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_uint_eq(mg_prs_sample_count(p), 2);
    ck_assert_uint_eq(mg_prs_variant_count(p), 2);
    mg_prs_free(p);
    expect_vcf_fail("not a vcf at all\n", MG_E_DATA_FORMAT, "no header");
    expect_vcf_fail("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                    "1\t100\tv1\tA\tG\t.\t.\t.\n", MG_E_DATA_FORMAT, "no samples");
    expect_vcf_fail(VCF_HDR, MG_E_DATA_FORMAT, "no variants");
    expect_vcf_fail(VCF_HDR "1\t100\tv1\tA\tG\t.\t.\t.\tGT\t0|3\t0|0\n", MG_E_DATA_FORMAT,
                    "GT allele out of range");
    expect_vcf_fail(VCF_HDR "1\tabc\tv1\tA\tG\t.\t.\t.\tGT\t0|1\t0|0\n", MG_E_DATA_FORMAT,
                    "bad position");
    expect_vcf_fail(VCF_HDR "1\t100\n", MG_E_DATA_FORMAT, "record cut short");
    expect_vcf_fail(VCF_HDR "1\t100\tv1\tA\tG\t.\t.\t.\tGT\t0|1\n", MG_E_DATA_FORMAT,
                    "sample column missing");
    expect_vcf_fail(VCF_HDR "1\t100\tv1\tA\tG\t.\t.\t.\tGT\t0|x\t0|0\n", MG_E_DATA_FORMAT,
                    "GT not a number");
    expect_vcf_fail("##fileformat=VCFv4.2\n##contig=<ID=1>\n"
                    "##FORMAT=<ID=DS,Number=A,Type=Float,Description=\"D\">\n"
                    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\n"
                    "1\t100\tv1\tA\tG\t.\t.\t.\tDS\t0.5\t2.5\n", MG_E_DATA_FORMAT, "DS above 2");
    snprintf(path, sizeof path, "%s", tu_tmp_path("absent.vcf"));
    p = NULL;
    ck_assert_int_eq(mg_prs_open_vcf(&p, path, NULL, err, sizeof err), MG_E_IO);
    ck_assert_int_eq(mg_prs_open_vcf(&p, NULL, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_open_vcf(NULL, path, NULL, err, sizeof err), MG_E_INVALID_ARG);
}
END_TEST

START_TEST(test_misuse) {
    char prefix[4096], score[4200];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("mu"));
    make_cohort(prefix, 12, 4, 0);
    snprintf(score, sizeof score, "%s.score", prefix);
    char err[128];
    mg_prs *p = NULL;
    ck_assert_int_eq(mg_prs_open_plink(NULL, prefix, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_open_plink(&p, NULL, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_open_plink(&p, "", NULL, NULL, 0), MG_E_INVALID_ARG);
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    ck_assert_uint_eq(pp.struct_size, sizeof pp);
    pp.vcf_dosage = MG_PRS_DOSAGE_NONE + 1;
    ck_assert_int_eq(mg_prs_open_vcf(&p, prefix, &pp, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "vcf_dosage"));
    pp.vcf_dosage = MG_PRS_DOSAGE_DS;
    ck_assert(pp.min_overlap == 0.75);
    mg_prs_params_init(NULL);
    pp.struct_size = 2;
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_E_INVALID_ARG);
    /* a short struct (only struct_size and flags) gets defaults for the rest */
    mg_prs_params_init(&pp);
    pp.struct_size = 8;
    pp.flags = MG_PRS_NO_MEAN_IMPUTATION;
    pp.min_overlap = 7; /* not covered by struct_size: ignored */
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_OK);
    mg_prs_free(p);
    mg_prs_params_init(&pp);
    pp.flags = MG_PRS_DOMINANT | MG_PRS_RECESSIVE;
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_E_INVALID_ARG);
    pp.flags = 0x100;
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_E_INVALID_ARG);
    pp.flags = 0;
    pp.min_overlap = 1.5;
    ck_assert_int_eq(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err), MG_E_INVALID_ARG);

    /* NULL and foreign handles */
    ck_assert_int_eq(mg_prs_add_scores(NULL, NULL, score), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_read_freq(NULL, score), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_compute(NULL), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_write_sscore(NULL, "x"), MG_E_MISUSE);
    ck_assert_uint_eq(mg_prs_sample_count(NULL), 0);
    ck_assert_uint_eq(mg_prs_variant_count(NULL), 0);
    ck_assert_uint_eq(mg_prs_score_count(NULL), 0);
    ck_assert_ptr_null(mg_prs_score_name(NULL, 0));
    ck_assert_str_eq(mg_prs_errmsg(NULL), "not a valid polygenic score handle");
    mg_prs_free(NULL);
    uint64_t fake[64] = {0x12345678u};
    mg_prs *bogus = (mg_prs *)fake;
    ck_assert_int_eq(mg_prs_compute(bogus), MG_E_MISUSE);
    mg_prs_free(bogus);
    double buf[16];
    ck_assert_int_eq(mg_prs_results(buf, 16, bogus, MG_PRS_COL_SUM, 0), MG_E_MISUSE);

    /* order of calls */
    p = open_ok(prefix, 0);
    ck_assert_int_eq(mg_prs_compute(p), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_results(buf, 16, p, MG_PRS_COL_SUM, 0), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_write_sscore(p, tu_tmp_path("mu.sscore")), MG_E_MISUSE);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_read_freq(p, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, score), MG_OK);
    ck_assert_int_eq(mg_prs_compute(p), MG_OK);
    ck_assert_str_eq(mg_prs_errmsg(p), "");
    ck_assert_int_eq(mg_prs_results(NULL, 16, p, MG_PRS_COL_SUM, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_results(buf, 11, p, MG_PRS_COL_SUM, 0), MG_E_BUFFER_TOO_SMALL);
    ck_assert_int_eq(mg_prs_results(buf, 16, p, 0, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_results(buf, 16, p, 6, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_results(buf, 16, p, MG_PRS_COL_AVG, 3), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_results(buf, 16, p, MG_PRS_COL_DENOM, 99), MG_OK);
    ck_assert_int_eq(mg_prs_sample_id(NULL, NULL, p, 12), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_sample_id(NULL, NULL, NULL, 0), MG_E_MISUSE);
    mg_prs_match_report r;
    r.struct_size = 0;
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_match_report_get(NULL, p, 0), MG_E_INVALID_ARG);
    r.struct_size = sizeof r;
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 3), MG_E_INVALID_ARG);
    /* a short report struct is filled only as far as it goes */
    memset(&r, 0xab, sizeof r);
    r.struct_size = 16;
    ck_assert_int_eq(mg_prs_match_report_get(&r, p, 0), MG_OK);
    ck_assert_uint_eq(r.struct_size, 16);
    ck_assert_uint_eq(r.n_matched, 0xababababababababull);
    ck_assert_int_eq(mg_prs_write_sscore(p, "/nonexistent/dir/x.sscore"), MG_E_IO);
    ck_assert(strlen(mg_prs_errmsg(p)) > 0);
    mg_prs_free(p);
}
END_TEST

/* The weight parser must give strtod's double bit for bit (its fast path is
 * only taken where one rounding is exact) and refuse what strtod cannot
 * read completely or reads as infinite/NaN. */
/* A random decimal (sign, up to maxd digits, a point anywhere, sometimes
 * an exponent of -30..30 with e or E) written at buf, not terminated;
 * returns its length (at most maxd + 6). */
static int rand_decimal(char *buf, uint64_t *state, int maxd) {
    uint64_t x = *state;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    *state = x;
    int nd = 1 + (int)(x % (uint64_t)maxd), dot = (int)((x >> 8) % (uint64_t)(nd + 1)), n = 0;
    if ((x >> 16) & 1) buf[n++] = '-';
    uint64_t y = x;
    for (int d = 0; d < nd; d++) {
        if (d == dot && d) buf[n++] = '.';
        y = y * 6364136223846793005ull + 1442695040888963407ull;
        buf[n++] = (char)('0' + (y >> 60) % 10);
    }
    if ((x >> 20) % 3 == 0) n += snprintf(buf + n, 8, "%c%d", (x >> 30) & 1 ? 'e' : 'E', (int)((x >> 24) % 61) - 30);
    return n;
}

START_TEST(test_parse_double) {
    static const char *ok[] = {
        "0", "-0", "+0", "0.0", "1", "-1", ".5", "5.", "0.1", "0.3", "-0.000123", "1e22", "1e23",
        "1e-22", "1e-23", "9007199254740992", "9007199254740993", "123456789012345678",
        "1234567890123456789", "12345678901234567890", "0.12345678901234567890123",
        "3.607986528e-06", "6.02214076E23", "-2.2250738585072014e-308", "4.9e-324",
        "1.7976931348623157e308", "00000123.4500000", "1e+5", "1E-5", "0e999999",
        "0x1p3", "  7", "0.00000000000000000000000000000000001",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double a = 0, b = strtod(ok[i], NULL);
        ck_assert_msg(mg__parse_double(ok[i], &a) == 0, "%s refused", ok[i]);
        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s: %.17g vs strtod %.17g", ok[i], a, b);
    }
    static const char *bad[] = { "", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1x", "nan",
                                 "inf", "-inf", "1e400", "--1", "1 ", "0x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double a;
        ck_assert_msg(mg__parse_double(bad[i], &a) != 0, "\"%s\" accepted", bad[i]);
    }
    /* random decimals of every length and exponent, as score files hold them */
    uint64_t x = 88172645463325252ull;
    char buf[64];
    for (int i = 0; i < 200000; i++) {
        int n = rand_decimal(buf, &x, 20);
        buf[n] = '\0';
        double a = 0, b = strtod(buf, NULL);
        ck_assert_msg(mg__parse_double(buf, &a) == 0, "%s refused", buf);
        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s: %.17g vs strtod %.17g", buf, a, b);
    }
}
END_TEST

/* ---- the integer path (prs/ints.h): AMX or AVX512-VNNI ----------------------- */

#include "prs/ints.h"

/* The integer kernel this process's scores go through, as mg_build_info()
 * reports it: "amx", "vnni" or NULL (double sums only). */
static const char *ints_kernel(void) {
    const char *bi = mg_build_info();
    if (strstr(bi, "prs_ints=amx")) return "AMX";
    if (strstr(bi, "prs_ints=vnni")) return "VNNI";
    ck_assert_ptr_nonnull(strstr(bi, "prs_ints=no"));
    return NULL;
}

/* One random kernel input: A (rows from nrow on zero), one .bed row per
 * slot in its own allocation, no longer than the kernels may read (ASan
 * sees a read past it), lut values 0..127 and random starting sums. */
typedef struct ints_case {
    mg__ints_step st;
    int8_t *A;
    unsigned char **rows;
    uint8_t *lut;
    int32_t *acc0;
    size_t nacc;
} ints_case;

static void ints_case_make(ints_case *c, uint32_t nks, uint32_t nat, uint32_t nrow, uint64_t t0,
                           uint64_t t1, uint64_t *x) {
    memset(c, 0, sizeof *c);
    c->A = malloc((size_t)nks * nat * 1024);
    c->rows = malloc((size_t)nks * MG__INT_SLOTS * sizeof *c->rows);
    c->lut = malloc((size_t)nks * 256);
    c->nacc = (size_t)t1 * nat * 256;
    c->acc0 = malloc(c->nacc * sizeof *c->acc0);
    ck_assert(c->A && c->rows && c->lut && c->acc0);
    for (size_t i = 0; i < (size_t)nks * nat * 1024; i++) {
        uint32_t m = (uint32_t)(i % ((size_t)nat * 1024) / 1024 * 16 + i % 1024 / 64);
        c->A[i] = m < nrow ? (int8_t)tu_rand_u64(x) : 0;
    }
    size_t rb = (size_t)4 * t1 + 12; /* a quad of tiles reads 16 bytes from 4 x its first */
    for (size_t z = 0; z < (size_t)nks * MG__INT_SLOTS; z++) {
        c->rows[z] = malloc(rb);
        ck_assert_ptr_nonnull(c->rows[z]);
        for (size_t b = 0; b < rb; b++) c->rows[z][b] = (unsigned char)tu_rand_u64(x);
    }
    for (size_t i = 0; i < (size_t)nks * 256; i++) c->lut[i] = (uint8_t)(tu_rand_u64(x) & 127);
    for (size_t i = 0; i < c->nacc; i++) c->acc0[i] = (int32_t)(tu_rand_u64(x) % 2000001) - 1000000;
    c->st = (mg__ints_step){ .nks = nks, .nat = nat, .nrow = nrow, .A = c->A,
                             .geno = (const unsigned char *const *)c->rows, .lut = c->lut,
                             .t0 = t0, .t1 = t1 };
}

static void ints_case_free(ints_case *c) {
    for (size_t z = 0; z < (size_t)c->st.nks * MG__INT_SLOTS; z++) free(c->rows[z]);
    free(c->rows);
    free(c->A);
    free(c->lut);
    free(c->acc0);
}

/* Sum (row m, sample n of tile t) of the case, from its definition in
 * ints.h, in int64. */
static int64_t ints_case_sum(const ints_case *c, uint64_t t, uint32_t m, uint32_t n) {
    const mg__ints_step *st = &c->st;
    uint64_t smp = 16 * t + n;
    int64_t sum = c->acc0[(t * st->nat + m / 16) * 256 + (m % 16) * 16 + n];
    for (uint32_t k = 0; k < st->nks; k++)
        for (uint32_t z = 0; z < MG__INT_SLOTS; z++) {
            unsigned code = (c->rows[k * MG__INT_SLOTS + z][smp / 4] >> (2 * (smp % 4))) & 3u;
            int8_t a = c->A[((uint64_t)k * st->nat + m / 16) * 1024 + (m % 16) * 64 + z];
            sum += (int64_t)a * c->lut[k * 256 + z / 4 * 16 + (z % 4) * 4 + code];
        }
    return sum;
}

/* Runs fn on the case from its starting sums into a fresh copy. */
static int32_t *ints_case_run(const ints_case *c, void (*fn)(const mg__ints_step *), uint8_t *bbuf) {
    int32_t *acc = malloc(c->nacc * sizeof *acc);
    ck_assert_ptr_nonnull(acc);
    memcpy(acc, c->acc0, c->nacc * sizeof *acc);
    mg__ints_step st = c->st;
    st.acc = acc;
    st.bbuf = bbuf;
    fn(&st);
    return acc;
}

/* The kernels against the plain reference, bit for bit: sample tile ranges
 * that are not whole groups (nor whole VNNI blocks of 3, nor quads of 4),
 * that start past 0 and span groups; k-step counts that are not whole
 * chunks; rows in use that end inside an A tile or a VNNI row block. */
START_TEST(test_int_kernels) {
    static const struct { uint32_t nks, nat, nrow; uint64_t t0, t1; } shapes[] = {
        { 1, 2, 8, 0, 1 },    { 3, 2, 32, 0, 5 },    { 9, 4, 62, 3, 30 },   { 17, 2, 20, 1, 50 },
        { 8, 6, 90, 24, 49 }, { 13, 4, 64, 0, 24 },  { 2, 38, 602, 2, 29 }, { 11, 2, 1, 5, 7 },
    };
    int vnni = mg__ints_vnni_ok(), amx = mg__ints_available() == MG__INTS_AMX;
    uint8_t *bbuf = malloc(MG__INTS_BBUF);
    ck_assert_ptr_nonnull(bbuf);
    uint64_t x = 0x5eed1234abcdull;
    size_t n = tu_under_valgrind() ? 3 : sizeof shapes / sizeof shapes[0];
    for (size_t i = 0; i < n; i++) {
        ints_case c;
        ints_case_make(&c, shapes[i].nks, shapes[i].nat, shapes[i].nrow, shapes[i].t0, shapes[i].t1, &x);
        int32_t *ref = ints_case_run(&c, mg__ints_run_ref, bbuf);
        /* the reference itself, at one sum */
        uint64_t t = shapes[i].t1 - 1;
        uint32_t m = shapes[i].nrow - 1;
        ck_assert_int_eq(ref[(t * shapes[i].nat + m / 16) * 256 + (m % 16) * 16 + 5],
                         ints_case_sum(&c, t, m, 5));
#if defined(MG_X86_AVX512)
        if (vnni) {
            int32_t *v = ints_case_run(&c, mg__ints_run_vnni, bbuf);
            for (size_t j = 0; j < c.nacc; j++)
                ck_assert_msg(v[j] == ref[j], "VNNI shape %zu sum %zu: %d vs %d", i, j, v[j], ref[j]);
            free(v);
        }
#endif
#if defined(MG_X86_AMX)
        if (amx) {
            int32_t *a = ints_case_run(&c, mg__ints_run_amx, bbuf);
            ck_assert_msg(memcmp(a, ref, c.nacc * sizeof *a) == 0, "AMX shape %zu", i);
            free(a);
        }
#endif
        free(ref);
        ints_case_free(&c);
    }
    free(bbuf);
    printf("  integer kernels vs reference:%s%s%s\n", vnni ? " VNNI" : "", amx ? " AMX" : "",
           vnni || amx ? "" : " none here (reference only)");
}
END_TEST

/* All columns of a computed handle: ALLELE_CT, DENOM, NAMED, then SUM of
 * scores 0..K-1; n x (3 + K), column-major. */
static double *results_all(mg_prs *p, uint64_t *n_out, uint32_t K) {
    uint64_t n = mg_prs_sample_count(p);
    double *v = malloc(n * (3 + K) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(mg_prs_results(v, n, p, MG_PRS_COL_ALLELE_CT, 0), MG_OK);
    ck_assert_int_eq(mg_prs_results(v + n, n, p, MG_PRS_COL_DENOM, 0), MG_OK);
    ck_assert_int_eq(mg_prs_results(v + 2 * n, n, p, MG_PRS_COL_NAMED_ALLELE_DOSAGE_SUM, 0), MG_OK);
    for (uint32_t k = 0; k < K; k++)
        ck_assert_int_eq(mg_prs_results(v + (3 + k) * n, n, p, MG_PRS_COL_SUM, k), MG_OK);
    *n_out = n;
    return v;
}

/* tune: NULL for the defaults */
static double *score_cfg_tuned(const char *prefix, const char *score, uint32_t flags,
                               uint32_t threads, uint32_t block, uint64_t *n, uint32_t K,
                               const mg__prs_tuning *tune) {
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    pp.flags = flags;
    pp.n_threads = threads;
    pp.block_variants = block;
    mg_prs *p = NULL;
    char err[512];
    ck_assert_msg(mg_prs_open_plink(&p, prefix, &pp, err, sizeof err) == MG_OK, "%s", err);
    mg__prs_set_tuning(p, tune);
    ck_assert_msg(mg_prs_add_scores(p, NULL, score) == MG_OK, "%s", mg_prs_errmsg(p));
    ck_assert_msg(mg_prs_compute(p) == MG_OK, "%s", mg_prs_errmsg(p));
    double *v = results_all(p, n, K);
    mg_prs_free(p);
    return v;
}

static double *score_cfg(const char *prefix, const char *score, uint32_t flags, uint32_t threads,
                         uint32_t block, uint64_t *n, uint32_t K) {
    return score_cfg_tuned(prefix, score, flags, threads, block, n, K, NULL);
}

/* Integer sums against double sums (MG_PRS_DOUBLE_SUMS, itself checked
 * against plink2 above): the counts must be equal and each SUM within the
 * rounding bound of the weights, rows x 2 x s_k with s_k = 2^(e - 38) where
 * 2 max|w_k| = f 2^e (each row has a dosage slot, error <= s_k, and at most
 * one missing-call slot, error <= s_k / 2). Then the integer sums must be
 * bit-identical for any thread count, block size and int64 spill point. */
START_TEST(test_int_sums) {
    static const struct { int dip; uint32_t flags; } cases[] = {
        { 0, 0 }, { 0, MG_PRS_NO_MEAN_IMPUTATION }, { 1, MG_PRS_DOMINANT },
        { 1, MG_PRS_RECESSIVE | MG_PRS_NO_MEAN_IMPUTATION },
    };
    const char *kernel = ints_kernel();
    double worst = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char prefix[4096], score[4200];
        snprintf(prefix, sizeof prefix, "%s%zu", tu_tmp_path("ints"), c);
        make_cohort(prefix, tu_under_valgrind() ? 40 : 2051, 100 + c, cases[c].dip);
        snprintf(score, sizeof score, "%s.score", prefix);
        /* the bound, from the score file */
        double maxw[3] = {0, 0, 0};
        int rows = 0;
        FILE *f = fopen(score, "r");
        ck_assert_ptr_nonnull(f);
        char line[512];
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        while (fgets(line, sizeof line, f)) {
            double w[3];
            ck_assert_int_eq(sscanf(line, "%*s %*s %lf %lf %lf", &w[0], &w[1], &w[2]), 3);
            for (int k = 0; k < 3; k++) maxw[k] = fmax(maxw[k], fabs(w[k]));
            rows++;
        }
        fclose(f);
        uint64_t n;
        double *a = score_cfg(prefix, score, cases[c].flags, 2, 0, &n, 3);
        double *b = score_cfg(prefix, score, cases[c].flags | MG_PRS_DOUBLE_SUMS, 2, 0, &n, 3);
        for (uint64_t i = 0; i < 3 * n; i++)
            ck_assert_msg(a[i] == b[i], "case %zu count %llu: %.17g vs %.17g", c, (unsigned long long)i, a[i], b[i]);
        for (uint32_t k = 0; k < 3; k++) {
            int e;
            (void)frexp(2 * maxw[k], &e);
            double bound = rows * 2 * ldexp(1.0, e - 8 * MG__INT_DIGITS + 2);
            for (uint64_t i = 0; i < n; i++) {
                double x = a[(3 + k) * n + i], y = b[(3 + k) * n + i], d = fabs(x - y);
                ck_assert_msg(d <= bound + 1e-12 * fabs(y), "case %zu score %u sample %llu: %.17g vs %.17g (bound %g)",
                              c, k, (unsigned long long)i, x, y, bound);
                worst = fmax(worst, d / bound);
            }
        }
        if (kernel) {
            const mg__prs_tuning spill = {.flush_slots = 64}; /* to int64 before every block */
            double *s = score_cfg_tuned(prefix, score, cases[c].flags, 2, 0, &n, 3, &spill);
            double *t1 = score_cfg(prefix, score, cases[c].flags, 1, 0, &n, 3);
            double *t3 = score_cfg(prefix, score, cases[c].flags, 3, 7, &n, 3);
            ck_assert(memcmp(a, s, n * 6 * sizeof *a) == 0);
            ck_assert(memcmp(a, t1, n * 6 * sizeof *a) == 0);
            /* chrY rows (cases 0, 1) go through the double path, whose
             * additions a block size regroups */
            for (uint64_t i = 0; i < n * 6; i++)
                ck_assert_msg(cases[c].dip ? a[i] == t3[i] : fabs(a[i] - t3[i]) <= 1e-12 * fabs(a[i]),
                              "case %zu value %llu: %.17g vs %.17g", c, (unsigned long long)i, a[i], t3[i]);
            free(s); free(t1); free(t3);
        }
        free(a);
        free(b);
    }
    printf("  integer sums (%s): largest difference to double sums %.2e of the bound\n",
           kernel ? kernel : "no integer kernel here: both are double", worst);
}
END_TEST

/* mg__fmt_g10 against printf("%.10g") on random and edge values. */
START_TEST(test_fmt_g10) {
    static const double edge[] = {
        0.0, -0.0, 1, -1, 0.5, 1e-5, 1e-4, 9.9999999995e-5, 0.0001, 1e9, 1e10, 9999999999.0,
        9999999999.5, 99999999995.0, 1234567890.5, 1234567891.5, 0.1, 0.3, 2.5e-320, 1e300,
        123456789012345678.0, 4.35, 1e-7, 1.00000000005, 0.99999999995, 5e-324, 1.7976931348623157e308,
    };
    char a[64], b[64];
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        size_t n = mg__fmt_g10(a, edge[i]);
        snprintf(b, sizeof b, "%.10g", edge[i]);
        ck_assert_msg(!strcmp(a, b) && n == strlen(b), "%.17g: %s vs printf %s", edge[i], a, b);
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int iters = tu_under_valgrind() ? 20000 : 300000;
    for (int i = 0; i < iters; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        double v;
        switch (i % 4) {
        case 0: { /* any finite bit pattern */
            uint64_t bits = x;
            memcpy(&v, &bits, sizeof v);
            if (!isfinite(v)) continue;
            break;
        }
        case 1: v = ldexp((double)(x >> 11), (int)((x >> 3) % 120) - 90); break; /* scores, sums */
        case 2: v = (double)(int64_t)(x % 20000000001ull) / 2.0; break;           /* halves, ties */
        default: v = (double)(int64_t)((x >> 8) % 2000000001ull - 1000000000ll) / 1e6; break;
        }
        if (x & 1) v = -v;
        mg__fmt_g10(a, v);
        snprintf(b, sizeof b, "%.10g", v);
        ck_assert_msg(!strcmp(a, b), "%.17g: %s vs printf %s", v, a, b);
    }
}
END_TEST

/* mg__parse_prefix (the wide-file fast path) against strtod, in a buffer
 * with the 16 readable bytes it needs after the text. */
START_TEST(test_parse_prefix) {
    char buf[96];
    uint64_t x = 88172645463325252ull;
    int fast = 0, iters = tu_under_valgrind() ? 20000 : 200000;
    for (int i = 0; i < iters; i++) {
        int n = rand_decimal(buf, &x, 22);
        int tail = (int)((x >> 40) % 3); /* what follows: end, tab, space */
        buf[n] = tail == 1 ? '\t' : tail == 2 ? ' ' : '\0';
        memset(buf + n + 1, (x >> 44) & 1 ? '7' : 0, 24);
        double a = 0, b;
        char tmp[96];
        memcpy(tmp, buf, (size_t)n);
        tmp[n] = '\0';
        b = strtod(tmp, NULL);
        const char *end = NULL;
        if (mg__parse_prefix(buf, &end, &a) == 0) {
            fast++;
            ck_assert_msg(end == buf + n, "%s: stopped at %d of %d", tmp, (int)(end - buf), n);
            ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s: %.17g vs strtod %.17g", tmp, a, b);
        }
    }
    ck_assert_int_gt(fast, iters / 2); /* the fast path takes the usual numbers */
    /* every shape of [sign] I digits [. F digits] around the 16-byte window
     * the short form reads: I in 0..10, F in none, 0..16; what follows is
     * a tab, the end, or an exponent */
    for (int sign = 0; sign < 3; sign++)
        for (int ni = 0; ni <= 10; ni++)
            for (int nfr = -1; nfr <= 16; nfr++)
                for (int tail = 0; tail < 3; tail++) {
                    if (ni == 0 && nfr <= 0) continue;
                    int n = 0;
                    if (sign) buf[n++] = sign == 1 ? '-' : '+';
                    for (int d = 0; d < ni; d++) {
                        x = x * 6364136223846793005ull + 1442695040888963407ull;
                        buf[n++] = (char)('0' + (x >> 60) % 10);
                    }
                    if (nfr >= 0) buf[n++] = '.';
                    for (int d = 0; d < nfr; d++) {
                        x = x * 6364136223846793005ull + 1442695040888963407ull;
                        buf[n++] = (char)('0' + (x >> 60) % 10);
                    }
                    if (tail == 2) n += snprintf(buf + n, 8, "e%d", (int)(x >> 59) - 16);
                    memset(buf + n, tail == 0 ? '\t' : 0, 24);
                    char tmp[96];
                    memcpy(tmp, buf, (size_t)n);
                    tmp[n] = '\0';
                    double a = 0, b = strtod(tmp, NULL);
                    const char *end = NULL;
                    int r = mg__parse_prefix(buf, &end, &a);
                    if (tail != 2 && ni + (nfr > 0 ? nfr : 0) <= 15)
                        ck_assert_msg(r == 0, "%s refused", tmp);
                    if (r == 0) {
                        ck_assert_msg(end == buf + n, "%s: stopped at %d of %d", tmp, (int)(end - buf), n);
                        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s: %.17g vs strtod %.17g", tmp, a, b);
                    }
                }
    static const char *bad[] = { "", "-", ".", "e5", "-.e1", "1e", "1e+", "x1", "+", "-.", "+.e" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(buf, 0, sizeof buf);
        strcpy(buf, bad[i]);
        const char *end;
        double a;
        ck_assert_msg(mg__parse_prefix(buf, &end, &a) != 0, "\"%s\" accepted", bad[i]);
    }
}
END_TEST

/* mg__parse_fields_avx2 (whole wide-file lines) against mg__parse_prefix
 * field by field: the same bits when every field is a number, -1 for a bad
 * field or a wrong field count. x86-64 only. */
#if defined(MG_X86_AVX2)
START_TEST(test_parse_fields) {
    if (mg__cpu_simd_level() < MG_SIMD_AVX2) return; /* the CPU's, whatever MG_SIMD says */
    char line[4096];
    double a[64], b[64];
    uint64_t x = 0x2545f4914f6cdd1dull;
    int lines = tu_under_valgrind() ? 300 : 20000, fast = 0;
    for (int it = 0; it < lines; it++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t nk = 1 + (uint32_t)(x % 40);
        int mode = (int)((x >> 8) % 8); /* 0: a bad field; 1: one field too many; 2: one too few */
        uint32_t nf = mode == 1 ? nk + 1 : mode == 2 && nk > 1 ? nk - 1 : nk;
        uint32_t badk = (uint32_t)((x >> 16) % nf);
        int n = 0;
        for (uint32_t k = 0; k < nf; k++) {
            if (k) line[n++] = '\t';
            if (mode == 0 && k == badk) {
                static const char *junk[] = { "", "x", "1.2.3", "--1", "1e", ".", "-", "0x10", "1 2", "nan" };
                n += sprintf(line + n, "%s", junk[(x >> 24) % 10]);
                continue;
            }
            uint64_t y = x + k * 0x9e3779b97f4a7c15ull;
            if (((y >> 5) & 7) == 0) {
                n += rand_decimal(line + n, &y, 16); /* other shapes, exponents too */
            } else { /* the usual shape: [sign] up to 8 digits . up to 10 */
                int sg = (int)((y >> 7) % 3), ni = (int)((y >> 9) % 9), nfr = (int)((y >> 13) % 12) - 1;
                if (ni == 0 && nfr <= 0) ni = 1;
                if (sg) line[n++] = sg == 1 ? '-' : '+';
                for (int d = 0; d < ni; d++) line[n++] = (char)('0' + (y >> (4 * d + 20)) % 10);
                if (nfr >= 0) line[n++] = '.';
                for (int d = 0; d < nfr; d++) line[n++] = (char)('0' + (y >> (3 * d + 2)) % 10);
            }
        }
        line[n] = '\0';
        memset(line + n + 1, (x >> 30) & 1 ? '7' : '\t', 40); /* what follows the NUL is not read as the line */
        /* the expectation, field by field */
        int ok = nf == nk;
        const char *q = line;
        for (uint32_t k = 0; ok && k < nk; k++) {
            const char *e;
            if (mg__parse_prefix(q, &e, &b[k]) != 0 || (k + 1 < nk ? *e != '\t' : *e != '\0')) ok = 0;
            else q = e + 1;
        }
        int r = mg__parse_fields_avx2(line, nk, a);
        ck_assert_msg(r == (ok ? 0 : -1), "line %d (%u fields for %u, mode %d): %d, expected %d: %.200s",
                      it, nf, nk, mode, r, ok ? 0 : -1, line);
        if (ok) {
            fast++;
            ck_assert_msg(memcmp(a, b, nk * sizeof *a) == 0, "line %d: values differ: %.200s", it, line);
        }
    }
    ck_assert_int_gt(fast, lines / 4);
}
END_TEST
#endif

/* Wide files parsed in many small chunks: the same scores, and errors
 * named at the right line. */
START_TEST(test_wide_chunks) {
    char prefix[4096], score[4200], out1[4300], out2[4300], bad[4300];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("wchunk"));
    make_cohort(prefix, 64, 5, 0);
    snprintf(score, sizeof score, "%s.score", prefix);
    snprintf(out1, sizeof out1, "%s.a.sscore", prefix);
    snprintf(out2, sizeof out2, "%s.b.sscore", prefix);
    const char *sc[] = { score };
    score_ours(prefix, sc, 1, NULL, 0, out1);
    const mg__prs_tuning small = {.wide_chunk = 37}; /* shorter than a line: buffers grow */
    score_tuned(prefix, sc, 1, NULL, 0, out2, &small);
    size_t n1, n2;
    char *t1 = (char *)tu_read_file(out1, &n1), *t2 = (char *)tu_read_file(out2, &n2);
    ck_assert(t1 && t2 && n1 == n2 && memcmp(t1, t2, n1) == 0);
    free(t1);
    free(t2);
    /* errors at known lines, CRLF and blank lines on the way; alleles
     * from the .bim so that every line matches */
    char a1s[40];
    {
        char bimp[4300];
        snprintf(bimp, sizeof bimp, "%s.bim", prefix);
        FILE *bf = fopen(bimp, "r");
        ck_assert_ptr_nonnull(bf);
        for (int v = 0; v < 40; v++) ck_assert_int_eq(fscanf(bf, "%*s %*s %*s %*s %c %*c", &a1s[v]), 1);
        fclose(bf);
    }
    snprintf(bad, sizeof bad, "%s.bad", prefix);
    for (int kind = 0; kind < 3; kind++) {
        FILE *f = fopen(bad, "wb");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "ID\tA1\tw1\tw2\r\n");
        int line = 1;
        for (int v = 0; v < 40; v++) {
            line++;
            if (v == 5) { fprintf(f, "\r\n"); continue; }
            if (v == 31 && kind == 0) { fprintf(f, "rs%d\t%c\t0.5\t1e-3x\r\n", v, a1s[v]); break; }
            if (v == 31 && kind == 1) { fprintf(f, "rs2\t%c\t0.5\t1\r\n", a1s[2]); break; }
            if (v == 31 && kind == 2) { fprintf(f, "rs%d\t%c\t0.5\t1%c5\n", v, a1s[v], '\0'); break; }
            fprintf(f, "rs%d\t%c\t0.%d\t-%d.25e-2\r\n", v, a1s[v], v + 1, v);
        }
        fclose(f);
        mg_prs *p = open_ok(prefix, 0);
        mg__prs_set_tuning(p, &small);
        ck_assert_int_eq(mg_prs_add_scores(p, NULL, bad), MG_E_DATA_FORMAT);
        char want[64];
        snprintf(want, sizeof want, ".bad:%d: ", line);
        ck_assert_msg(strstr(mg_prs_errmsg(p), want) != NULL, "kind %d: %s (want %s)", kind,
                      mg_prs_errmsg(p), want);
        ck_assert_msg(strstr(mg_prs_errmsg(p), (const char *[]){"not a number", "duplicate", "NUL"}[kind]),
                      "kind %d: %s", kind, mg_prs_errmsg(p));
        ck_assert_uint_eq(mg_prs_score_count(p), 0);
        mg_prs_free(p);
    }
}
END_TEST

/* Per-row dosage models from a PGS Catalog file's is_dominant/is_recessive
 * columns. pgsc_calc splits such a score by effect type, runs plink2 once
 * per part (plain, `dominant`, `recessive`) and adds the sums: the reference
 * here is the same three plink2 runs (and, without plink2, our own three runs
 * with the global flags). */
START_TEST(test_effect_types) {
    char prefix[4096], cat[4200], part[3][4300], out[4300];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("eff"));
    int n = tu_under_valgrind() ? 40 : 333;
    make_cohort(prefix, n, 4242, 1);
    snprintf(cat, sizeof cat, "%s.catalog.txt", prefix);
    char bimp[4300];
    snprintf(bimp, sizeof bimp, "%s.bim", prefix);
    FILE *bf = fopen(bimp, "r"), *cf = fopen(cat, "w"), *pf[3];
    ck_assert(bf && cf);
    for (int t = 0; t < 3; t++) {
        snprintf(part[t], sizeof part[t], "%s.part%d", prefix, t);
        pf[t] = fopen(part[t], "w");
        ck_assert_ptr_nonnull(pf[t]);
        fprintf(pf[t], "ID\tA1\tEFFECT\n");
    }
    fprintf(cf, "#pgs_id=EFFECT\nrsID\tchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\t"
                "is_dominant\tis_recessive\n");
    char chr[16], id[64], a1[16], a2[16];
    long pos;
    uint64_t rs = 77;
    int counts[3] = {0, 0, 0};
    while (fscanf(bf, "%15s %63s %*s %ld %15s %15s", chr, id, &pos, a1, a2) == 5) {
        if (strcmp(chr, "1") && strcmp(chr, "2") && strcmp(chr, "XY")) continue;
        char x = a1[0], y = a2[0]; /* leave out A/T and C/G: ambiguous, dropped */
        if ((x == 'A' && y == 'T') || (x == 'T' && y == 'A') || (x == 'C' && y == 'G') || (x == 'G' && y == 'C'))
            continue;
        int t = (int)(tu_rand_u64(&rs) % 3);
        const char *ea = tu_rand_u64(&rs) & 1 ? a1 : a2, *oa = ea == a1 ? a2 : a1;
        double w = tu_rand_f32(&rs);
        fprintf(cf, "%s\t%s\t%ld\t%s\t%s\t%.6f\t%s\t%s\n", id, chr, pos, ea, oa, w,
                t == 1 ? "True" : "False", t == 2 ? "TRUE" : "FALSE");
        fprintf(pf[t], "%s\t%s\t%.6f\n", id, ea, w);
        counts[t]++;
    }
    fclose(bf);
    fclose(cf);
    for (int t = 0; t < 3; t++) fclose(pf[t]);
    ck_assert(counts[0] > 3 && counts[1] > 3 && counts[2] > 3);
    snprintf(out, sizeof out, "%s.ours.sscore", prefix);
    const char *sc[] = { cat };
    score_ours(prefix, sc, 1, NULL, 0, out);
    sscore ours;
    ck_assert_int_eq(sscore_load(&ours, out), 0);
    ck_assert_int_eq(ours.ncol, 5); /* ALLELE_CT DENOM NAMED AVG SUM */
    /* the same three parts through our global flags */
    static const uint32_t flags[3] = { 0, MG_PRS_DOMINANT, MG_PRS_RECESSIVE };
    double *sum = calloc((size_t)n * 5, sizeof *sum); /* ALLELE_CT DENOM NAMED SUM sum|SUM| */
    for (int t = 0; t < 3; t++) {
        char o[4400];
        snprintf(o, sizeof o, "%s.self%d.sscore", prefix, t);
        const char *one[] = { part[t] };
        score_ours(prefix, one, 1, NULL, flags[t], o);
        sscore s;
        ck_assert_int_eq(sscore_load(&s, o), 0);
        for (int r = 0; r < n; r++) {
            const double *v = s.v + (size_t)r * (size_t)s.ncol;
            sum[r * 4 + 0] += v[0];
            sum[r * 4 + 1] += v[1];
            sum[r * 4 + 2] += v[2];
            sum[r * 4 + 3] += v[4];
            sum[(size_t)n * 4 + (size_t)r] += fabs(v[4]);
        }
        sscore_free(&s);
    }
    for (int r = 0; r < n; r++) {
        double tol = 1e-9 * (sum[(size_t)n * 4 + (size_t)r] + 1); /* the parts' 10 printed digits */
        const double *v = ours.v + (size_t)r * (size_t)ours.ncol;
        ck_assert_msg(relerr(v[0], sum[r * 4]) == 0 && relerr(v[1], sum[r * 4 + 1]) == 0,
                      "sample %d counts", r);
        ck_assert_msg(relerr(v[2], sum[r * 4 + 2]) < 1e-9 && fabs(v[4] - sum[r * 4 + 3]) <= tol,
                      "sample %d: named %.10g vs %.10g, sum %.10g vs %.10g", r, v[2], sum[r * 4 + 2], v[4],
                      sum[r * 4 + 3]);
    }
    if (!have_tool("plink2") || tu_under_valgrind()) {
        fprintf(stderr, "  effect types: equal to our three runs by model (plink2 not run)\n");
    } else {
        memset(sum, 0, (size_t)n * 5 * sizeof *sum);
        static const char *mods[3] = { "", "dominant", "recessive" };
        for (int t = 0; t < 3; t++) {
            char pl[4400], pls[4500];
            snprintf(pl, sizeof pl, "%s.pl%d", prefix, t);
            score_plink2(prefix, part[t], "3", mods[t], NULL, pl);
            snprintf(pls, sizeof pls, "%s.sscore", pl);
            sscore s;
            ck_assert_int_eq(sscore_load(&s, pls), 0);
            int skip = 0;
            while (skip < s.ncol && !strncmp(s.names[skip], "PHENO", 5)) skip++;
            for (int r = 0; r < n; r++) {
                const double *v = s.v + (size_t)r * (size_t)s.ncol + skip;
                sum[r * 4 + 2] += v[2];
                sum[r * 4 + 3] += v[4];
                sum[(size_t)n * 4 + (size_t)r] += fabs(v[4]);
            }
            sscore_free(&s);
        }
        double mx = 0;
        for (int r = 0; r < n; r++) {
            const double *v = ours.v + (size_t)r * (size_t)ours.ncol;
            /* each plink2 part is printed to 6 digits: half a unit of the
             * last of each part, plus our 1e-5 relative */
            double parts = sum[(size_t)n * 4 + (size_t)r];
            double e = fabs(v[4] - sum[r * 4 + 3]), tol = 5e-6 * parts + 1e-5 * fabs(v[4]);
            ck_assert_msg(e <= tol, "sample %d: SUM %.10g vs plink2 parts %.10g", r, v[4], sum[r * 4 + 3]);
            if (parts > 0) mx = fmax(mx, e / parts);
            ck_assert_msg(fabs(v[2] - sum[r * 4 + 2]) <= 2e-3, "sample %d: NAMED %.10g vs %.10g", r, v[2],
                          sum[r * 4 + 2]);
        }
        fprintf(stderr, "  effect types vs three plink2 runs (plain/dominant/recessive, %d/%d/%d rows): "
                        "max difference %.2e of the parts' sizes\n", counts[0], counts[1], counts[2], mx);
    }
    free(sum);
    sscore_free(&ours);
    /* both flags on one row */
    FILE *bad = fopen(cat, "w");
    ck_assert_ptr_nonnull(bad);
    fprintf(bad, "#pgs_id=X\nrsID\teffect_allele\teffect_weight\tis_dominant\tis_recessive\nrs0\tA\t1\tTRUE\tTRUE\n");
    fclose(bad);
    mg_prs *p = open_ok(prefix, 0);
    ck_assert_int_eq(mg_prs_add_scores(p, NULL, cat), MG_E_DATA_FORMAT);
    ck_assert_ptr_nonnull(strstr(mg_prs_errmsg(p), "is_recessive"));
    mg_prs_free(p);
}
END_TEST

static Suite *prs_suite(void) {
    Suite *s = suite_create("prs");
    TCase *tc = tcase_create("prs");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_golden_cineca);
    tcase_add_test(tc, test_catalog_cineca);
    tcase_add_test(tc, test_live_sim);
    tcase_add_test(tc, test_write_freq);
    tcase_add_test(tc, test_dominant_haploid_refused);
    tcase_add_test(tc, test_live_toy);
    tcase_add_test(tc, test_catalog_rules);
    tcase_add_test(tc, test_threads_blocks);
    tcase_add_test(tc, test_progress_interrupt);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_misuse);
    tcase_add_test(tc, test_vcf_tiny1000g);
    tcase_add_test(tc, test_vcf_malformed);
    tcase_add_test(tc, test_vcf_dosage);
    tcase_add_test(tc, test_parse_double);
    tcase_add_test(tc, test_int_sums);
    tcase_add_test(tc, test_fmt_g10);
    tcase_add_test(tc, test_parse_prefix);
#if defined(MG_X86_AVX2)
    tcase_add_test(tc, test_parse_fields);
#endif
    tcase_add_test(tc, test_wide_chunks);
    tcase_add_test(tc, test_effect_types);
    suite_add_tcase(s, tc);
    TCase *ti = tcase_create("ints"); /* the integer kernels alone (CK_RUN_CASE=ints) */
    tcase_set_timeout(ti, 300);
    tcase_add_test(ti, test_int_kernels);
    suite_add_tcase(s, ti);
    return s;
}

int main(void) { return tu_run_suite(prs_suite()); }
