/* prs.c - `medgemini prs score`: polygenic scores from PLINK 1 binary
 * genotypes, written as a PLINK 2-compatible .sscore file (and the entry to
 * `prs predict`, prs_predict.c). */
#include "medgemini.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void prs_usage(FILE *f) {
    fprintf(f,
        "usage: medgemini prs score {--bfile PREFIX | --vcf FILE} --score FILE [--score FILE...] --out PREFIX\n"
        "         [--no-mean-imputation] [--read-freq FILE] [--dominant | --recessive]\n"
        "         [--keep-ambiguous] [--keep-multiallelic] [--min-overlap F] [--threads N]\n"
        "         [--double-sums]\n"
        "         [--vcf-dosage DS|GP|HDS|none]\n"
        "  Writes PREFIX.sscore (columns as plink2 --score cols=+scoresums,+denom,+fid)\n"
        "  and prints each score's match report on stderr.\n"
        "       medgemini prs predict ... -m MODEL.mgm --outcome NAME --out PREFIX\n"
        "  Disease risks from the scores with a model that reads them (prs predict --help).\n"
        CLI_EXIT_TEXT);
}

static int32_t stop_on_sigint(void *user, uint64_t done, uint64_t total) {
    (void)user;
    (void)done;
    (void)total;
    return cli_interrupted();
}

int cli_prs(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "predict")) return cli_prs_predict(argc - 1, argv + 1);
    if (argc < 1 || strcmp(argv[0], "score") != 0) {
        prs_usage(argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) ? stdout : stderr);
        return argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) ? 0 : 2;
    }
    const char *bfile = NULL, *vcf = NULL, *out = NULL, *freq = NULL;
    const char **scores = calloc((size_t)argc, sizeof *scores);
    size_t n_scores = 0;
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    int rc = 2;
    if (!scores) { fprintf(stderr, "medgemini prs: out of memory\n"); return 1; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--bfile") && v) { bfile = v; i++; }
        else if (!strcmp(a, "--vcf") && v) { vcf = v; i++; }
        else if (!strcmp(a, "--score") && v) { scores[n_scores++] = v; i++; }
        else if (!strcmp(a, "--out") && v) { out = v; i++; }
        else if (!strcmp(a, "--read-freq") && v) { freq = v; i++; }
        else if (!strcmp(a, "--min-overlap") && v) {
            char *end;
            pp.min_overlap = strtod(v, &end);
            if (end == v || *end) { fprintf(stderr, "medgemini prs: bad --min-overlap %s\n", v); goto done; }
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            char *end;
            long t = strtol(v, &end, 10);
            if (end == v || *end || t < 0 || t > 1024) { fprintf(stderr, "medgemini prs: bad --threads %s\n", v); goto done; }
            pp.n_threads = (uint32_t)t;
            i++;
        }
        else if (!strcmp(a, "--vcf-dosage") && v) {
            if (!strcmp(v, "DS")) pp.vcf_dosage = MG_PRS_DOSAGE_DS;
            else if (!strcmp(v, "GP")) pp.vcf_dosage = MG_PRS_DOSAGE_GP;
            else if (!strcmp(v, "HDS")) pp.vcf_dosage = MG_PRS_DOSAGE_HDS;
            else if (!strcmp(v, "none")) pp.vcf_dosage = MG_PRS_DOSAGE_NONE;
            else { fprintf(stderr, "medgemini prs: bad --vcf-dosage %s (DS, GP, HDS or none)\n", v); goto done; }
            i++;
        }
        else if (!strcmp(a, "--no-mean-imputation")) pp.flags |= MG_PRS_NO_MEAN_IMPUTATION;
        else if (!strcmp(a, "--dominant")) pp.flags |= MG_PRS_DOMINANT;
        else if (!strcmp(a, "--recessive")) pp.flags |= MG_PRS_RECESSIVE;
        else if (!strcmp(a, "--keep-ambiguous")) pp.flags |= MG_PRS_KEEP_AMBIGUOUS;
        else if (!strcmp(a, "--keep-multiallelic")) pp.flags |= MG_PRS_KEEP_MULTIALLELIC;
        else if (!strcmp(a, "--double-sums")) pp.flags |= MG_PRS_DOUBLE_SUMS;
        else { fprintf(stderr, "medgemini prs: unknown or incomplete option %s\n", a); prs_usage(stderr); goto done; }
    }
    if (!bfile == !vcf || !out || n_scores == 0) { prs_usage(stderr); goto done; }

    char err[512];
    mg_prs *prs = NULL;
    mg_status st = vcf ? mg_prs_open_vcf(&prs, vcf, &pp, err, sizeof err)
                         : mg_prs_open_plink(&prs, bfile, &pp, err, sizeof err);
    rc = 1;
    if (st != MG_OK) {
        fprintf(stderr, "medgemini prs: %s (%s)\n", err, mg_status_str(st));
        goto done;
    }
    if (freq && (st = mg_prs_read_freq(prs, freq)) != MG_OK) goto fail;
    for (size_t i = 0; i < n_scores; i++)
        if ((st = mg_prs_add_scores(prs, NULL, scores[i])) != MG_OK) goto fail;
    for (uint32_t k = 0; k < mg_prs_score_count(prs); k++) {
        mg_prs_match_report r = { sizeof r, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
        mg_prs_match_report_get(&r, prs, k);
        fprintf(stderr, "%s: %llu rows, %llu matched (%.1f%%), %llu flipped, %llu ambiguous, "
                "%llu multiallelic, %llu duplicate, %llu unmatched%s\n",
                mg_prs_score_name(prs, k), (unsigned long long)r.n_rows,
                (unsigned long long)r.n_matched, 100.0 * r.overlap,
                (unsigned long long)r.n_flipped, (unsigned long long)r.n_ambiguous,
                (unsigned long long)r.n_multiallelic, (unsigned long long)r.n_duplicate,
                (unsigned long long)r.n_unmatched, r.kept ? "" : " -- dropped");
    }
    /* Ctrl-C stops the computation between blocks of variants */
    mg_prs_set_progress(prs, stop_on_sigint, NULL);
    cli_sigint_begin(NULL);
    st = mg_prs_compute(prs);
    cli_sigint_end();
    if (st == MG_E_INTERRUPTED && cli_interrupted()) {
        fprintf(stderr, "medgemini prs: stopped: %s (nothing written)\n", mg_status_str(st));
        mg_prs_free(prs);
        rc = CLI_EXIT_INTERRUPTED;
        goto done;
    }
    if (st != MG_OK) goto fail;
    {
        size_t n = strlen(out) + 8;
        char *path = malloc(n);
        if (!path) { fprintf(stderr, "medgemini prs: out of memory\n"); mg_prs_free(prs); goto done; }
        snprintf(path, n, "%s.sscore", out);
        st = mg_prs_write_sscore(prs, path);
        free(path);
        if (st != MG_OK) goto fail;
    }
    mg_prs_free(prs);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "medgemini prs: %s (%s)\n", mg_prs_errmsg(prs), mg_status_str(st));
    mg_prs_free(prs);
done:
    free(scores);
    return rc;
}
