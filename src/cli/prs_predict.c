/* prs_predict.c - `medgemini prs predict`: disease risks from polygenic
 * scores with a model that reads them (docs/POLYGENIC.md). The scores come
 * from genotypes and scoring files (computed as `prs score` does) or from
 * a .sscore file; each outcome becomes the model's question; the risks go
 * to PREFIX.risk. */
#include "medgemini.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define MAX_OUTCOMES 256
#define CHUNK 256 /* individuals per batch call */

static void usage(FILE *f) {
    fprintf(f,
        "usage: medgemini prs predict (--bfile PREFIX | --vcf FILE | --scores-in FILE.sscore)\n"
        "         [--score FILE...] -m MODEL.mgm --outcome NAME [--outcome NAME...] --out PREFIX\n"
        "         [--no-mean-imputation] [--read-freq FILE] [--min-overlap F] [--threads N]\n"
        "  Writes PREFIX.risk: tab-separated, header \"#FID IID\" and one column per outcome,\n"
        "  the model's P(yes) / (P(yes) + P(no)) for \"Does this individual have NAME?\"\n"
        "  (metadata genome.question), individuals in input order. With genotypes the\n"
        "  scores are computed first (--score: the scoring files whose columns the model\n"
        "  reads); a .sscore file gives them directly (the model's genome.score_column,\n"
        "  SUM or AVG, is read).\n"
        "  On any error (also Ctrl-C) no .risk file is left.\n"
        CLI_EXIT_TEXT);
}

/* The individuals' scores: n x k values, their names and IDs. */
typedef struct table {
    size_t n, k;
    double *v;
    char **names;
    char **fid, **iid;
} table;

static void table_free(table *t) {
    for (size_t j = 0; t->names && j < t->k; j++) free(t->names[j]);
    for (size_t i = 0; t->fid && i < t->n; i++) free(t->fid[i]), free(t->iid[i]);
    free(t->names);
    free(t->fid);
    free(t->iid);
    free(t->v);
    memset(t, 0, sizeof *t);
}

static char *dup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n), p[n] = '\0';
    return p;
}

/* Splits line (modified) at tabs into at most cap fields; returns the count. */
static size_t split(char *line, char **f, size_t cap) {
    size_t n = 0;
    char *p = line;
    while (n < cap) {
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = '\0';
        p = t + 1;
    }
    return n;
}

/* Reads a .sscore (plink2 or ours): "#FID IID ..." or "#IID ...", the
 * columns ending in _SUFFIX. */
static int read_sscore(table *t, const char *path, const char *suffix) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "medgemini prs predict: cannot open '%s': %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    size_t nf = 0, *col = NULL, ncol = 0, idc = 0;
    char **fields = NULL;
    int rc = 1, has_fid = 0;
    size_t sl = strlen(suffix);
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len) continue;
        if (!fields) { /* header */
            size_t tabs = 1;
            for (ssize_t i = 0; i < len; i++) tabs += line[i] == '\t';
            fields = calloc(tabs, sizeof *fields);
            col = calloc(tabs, sizeof *col);
            t->names = calloc(tabs, sizeof *t->names);
            if (!fields || !col || !t->names) goto oom;
            nf = split(line, fields, tabs);
            if (!strcmp(fields[0], "#FID") && nf > 1 && !strcmp(fields[1], "IID")) has_fid = 1;
            else if (strcmp(fields[0], "#IID")) {
                fprintf(stderr, "medgemini prs predict: %s: the header must start with #FID IID or #IID\n",
                        path);
                goto out;
            }
            idc = has_fid ? 2 : 1;
            for (size_t j = idc; j < nf; j++) {
                size_t l = strlen(fields[j]);
                if (l > sl + 1 && fields[j][l - sl - 1] == '_' && !strcmp(fields[j] + l - sl, suffix)) {
                    if (!(t->names[ncol] = dup(fields[j], l - sl - 1))) goto oom;
                    col[ncol++] = j;
                }
            }
            t->k = ncol;
            if (!ncol) {
                fprintf(stderr, "medgemini prs predict: %s has no column ending in _%s\n", path, suffix);
                goto out;
            }
            continue;
        }
        char **row = calloc(nf, sizeof *row);
        if (!row) goto oom;
        size_t got = split(line, row, nf);
        if (got != nf) {
            fprintf(stderr, "medgemini prs predict: %s line %zu: %zu fields, the header has %zu\n", path,
                    lineno, got, nf);
            free(row);
            goto out;
        }
        double *v = realloc(t->v, (t->n + 1) * t->k * sizeof *v);
        char **fi = realloc(t->fid, (t->n + 1) * sizeof *fi);
        if (v) t->v = v;
        if (fi) t->fid = fi;
        char **ii = realloc(t->iid, (t->n + 1) * sizeof *ii);
        if (ii) t->iid = ii;
        if (!v || !fi || !ii) { free(row); goto oom; }
        t->fid[t->n] = dup(has_fid ? row[0] : "0", strlen(has_fid ? row[0] : "0"));
        t->iid[t->n] = dup(row[idc - 1], strlen(row[idc - 1]));
        t->n++;
        if (!t->fid[t->n - 1] || !t->iid[t->n - 1]) { free(row); goto oom; }
        for (size_t j = 0; j < ncol; j++) {
            char *end;
            const char *s = row[col[j]];
            double x = strtod(s, &end);
            if (end == s || *end) {
                if (!strcmp(s, "nan") || !strcmp(s, "NA") || !strcmp(s, "NaN")) x = NAN;
                else {
                    fprintf(stderr, "medgemini prs predict: %s line %zu: '%s' is not a number\n", path,
                            lineno, s);
                    free(row);
                    goto out;
                }
            }
            t->v[(t->n - 1) * t->k + j] = x;
        }
        free(row);
    }
    if (!fields) fprintf(stderr, "medgemini prs predict: %s is empty\n", path);
    else if (!t->n) fprintf(stderr, "medgemini prs predict: %s has no individuals\n", path);
    else rc = 0;
    goto out;
oom:
    fprintf(stderr, "medgemini prs predict: out of memory\n");
out:
    free(line);
    free(fields);
    free(col);
    fclose(f);
    return rc;
}

/* Computes the scores from genotypes, as `prs score` does. */
static int compute_scores(table *t, const char *bfile, const char *vcf, const char *freq,
                          const char *const *files, size_t n_files, const mg_prs_params *pp,
                          int32_t column) {
    char err[512];
    mg_prs *prs = NULL;
    mg_status st = vcf ? mg_prs_open_vcf(&prs, vcf, pp, err, sizeof err)
                       : mg_prs_open_plink(&prs, bfile, pp, err, sizeof err);
    if (st) {
        fprintf(stderr, "medgemini prs predict: %s (%s)\n", err, mg_status_str(st));
        return 1;
    }
    if (freq) st = mg_prs_read_freq(prs, freq);
    for (size_t i = 0; i < n_files && !st; i++) st = mg_prs_add_scores(prs, NULL, files[i]);
    if (!st) st = mg_prs_compute(prs);
    if (st) {
        fprintf(stderr, "medgemini prs predict: %s (%s)\n", mg_prs_errmsg(prs), mg_status_str(st));
        mg_prs_free(prs);
        return 1;
    }
    t->n = (size_t)mg_prs_sample_count(prs);
    t->k = mg_prs_score_count(prs);
    t->v = malloc((t->n ? t->n : 1) * (t->k ? t->k : 1) * sizeof *t->v);
    double *col = malloc((t->n ? t->n : 1) * sizeof *col);
    t->names = calloc(t->k ? t->k : 1, sizeof *t->names);
    t->fid = calloc(t->n ? t->n : 1, sizeof *t->fid);
    t->iid = calloc(t->n ? t->n : 1, sizeof *t->iid);
    int rc = !t->v || !col || !t->names || !t->fid || !t->iid;
    for (uint32_t j = 0; !rc && j < t->k; j++) {
        const char *nm = mg_prs_score_name(prs, j);
        rc = !(t->names[j] = dup(nm, strlen(nm))) ||
             mg_prs_results(col, t->n, prs, column, j) != MG_OK;
        for (size_t i = 0; !rc && i < t->n; i++) t->v[i * t->k + j] = col[i];
    }
    for (size_t i = 0; !rc && i < t->n; i++) {
        const char *f, *d;
        rc = mg_prs_sample_id(&f, &d, prs, i) != MG_OK || !(t->fid[i] = dup(f, strlen(f))) ||
             !(t->iid[i] = dup(d, strlen(d)));
    }
    if (rc) fprintf(stderr, "medgemini prs predict: out of memory\n");
    free(col);
    mg_prs_free(prs);
    return rc;
}

/* The question for an outcome: the template with {outcome} replaced. */
static char *question(const char *tmpl, const char *outcome) {
    const char *at = strstr(tmpl, "{outcome}");
    size_t n = strlen(tmpl) + strlen(outcome) + 1;
    char *q = malloc(n);
    if (!q) return NULL;
    if (at) snprintf(q, n, "%.*s%s%s", (int)(at - tmpl), tmpl, outcome, at + 9);
    else snprintf(q, n, "%s %s", tmpl, outcome);
    return q;
}

int cli_prs_predict(int argc, char **argv) {
    const char *bfile = NULL, *vcf = NULL, *sscore = NULL, *out = NULL, *freq = NULL;
    const char *model_path = NULL, *outcomes[MAX_OUTCOMES];
    size_t n_out = 0, n_files = 0;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    if (!files) {
        fprintf(stderr, "medgemini prs predict: %s\n", mg_status_str(MG_E_NOMEM));
        return 1;
    }
    int rc = 2;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); rc = 0; goto args; }
        if (!strcmp(a, "--no-mean-imputation")) { pp.flags |= MG_PRS_NO_MEAN_IMPUTATION; continue; }
        if (!v) { fprintf(stderr, "medgemini prs predict: %s needs a value\n", a); goto args; }
        i++;
        if (!strcmp(a, "--bfile")) bfile = v;
        else if (!strcmp(a, "--vcf")) vcf = v;
        else if (!strcmp(a, "--scores-in")) sscore = v;
        else if (!strcmp(a, "--score")) files[n_files++] = v;
        else if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--read-freq")) freq = v;
        else if (!strcmp(a, "--outcome")) {
            if (n_out == MAX_OUTCOMES) { fprintf(stderr, "medgemini prs predict: at most %d outcomes\n", MAX_OUTCOMES); goto args; }
            if (!*v) { fprintf(stderr, "medgemini prs predict: an empty --outcome\n"); goto args; }
            outcomes[n_out++] = v;
        } else if (!strcmp(a, "--min-overlap") || !strcmp(a, "--threads")) {
            char *end;
            double x = strtod(v, &end);
            if (end == v || *end || x < 0 || (a[2] == 't' && x > 1024)) {
                fprintf(stderr, "medgemini prs predict: bad %s %s\n", a, v);
                goto args;
            }
            if (a[2] == 't') pp.n_threads = (uint32_t)x;
            else pp.min_overlap = x;
        } else {
            fprintf(stderr, "medgemini prs predict: unknown option %s\n", a);
            usage(stderr);
            goto args;
        }
    }
    if ((!!bfile + !!vcf + !!sscore) != 1 || !model_path || !out || !n_out ||
        (sscore && n_files) || (!sscore && !n_files)) {
        usage(stderr);
        goto args;
    }
    rc = 1;
    char err[512];
    mg_model *m = NULL;
    mg_context *ctx = NULL;
    table t = {0};
    char *qs[MAX_OUTCOMES] = {0};
    double *risk = NULL;
    FILE *f = NULL;
    char *path = NULL;
    int created = 0;
    mg_status ls = mg_model_load(&m, model_path, NULL, err, sizeof err);
    if (ls != MG_OK) {
        fprintf(stderr, "medgemini prs predict: %s: %s (%s)\n", model_path, err, mg_status_str(ls));
        goto done;
    }
    const char *column = "SUM", *tmpl = "Does this individual have {outcome}?";
    static const char *const keys[2] = {"genome.score_column", "genome.question"};
    for (int k = 0; k < 2; k++) { /* absent: the default; present, it must be a string */
        mg_status ms = mg_model_meta_string(k ? &tmpl : &column, m, keys[k]);
        if (ms != MG_OK && ms != MG_E_NOT_FOUND) {
            fprintf(stderr, "medgemini prs predict: %s: %s: %s\n", model_path, keys[k],
                    mg_status_str(ms));
            goto done;
        }
    }
    if (strcmp(column, "SUM") && strcmp(column, "AVG")) {
        fprintf(stderr, "medgemini prs predict: the model's genome.score_column is '%s' (SUM or AVG)\n", column);
        goto done;
    }
    if (sscore ? read_sscore(&t, sscore, column)
               : compute_scores(&t, bfile, vcf, freq, files, n_files, &pp,
                                column[0] == 'S' ? MG_PRS_COL_SUM : MG_PRS_COL_AVG))
        goto done;
    mg_context_params cp;
    mg_context_params_init(&cp);
    if (cli_context_new("prs predict", NULL, &ctx, m, &cp)) goto done;
    for (size_t q = 0; q < n_out; q++)
        if (!(qs[q] = question(tmpl, outcomes[q]))) goto oom;
    size_t np = strlen(out) + 8;
    risk = malloc(CHUNK * n_out * sizeof *risk);
    path = malloc(np);
    if (!risk || !path) goto oom;
    snprintf(path, np, "%s.risk", out);
    if (!(f = fopen(path, "w"))) {
        fprintf(stderr, "medgemini prs predict: cannot create '%s': %s\n", path, strerror(errno));
        goto done;
    }
    created = 1;
    errno = 0;
    fprintf(f, "#FID\tIID");
    for (size_t q = 0; q < n_out; q++) fprintf(f, "\t%s", outcomes[q]);
    fputc('\n', f);
    for (size_t i0 = 0; i0 < t.n; i0 += CHUNK) {
        size_t n = t.n - i0 < CHUNK ? t.n - i0 : CHUNK;
        cli_sigint_begin(ctx);
        mg_status st = cli_interrupted() ? MG_E_INTERRUPTED
                       : mg_prs_predict_batch(risk, ctx, t.v + i0 * t.k, n,
                                              (const char *const *)t.names, t.k,
                                              (const char *const *)qs, n_out);
        cli_sigint_end();
        if (st != MG_OK) {
            char item[80];
            snprintf(item, sizeof item, "individuals %zu-%zu of %zu", i0 + 1, i0 + n, t.n);
            rc = cli_gen_result("prs predict", item, st, 0, ctx);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%s\t%s", t.fid[i0 + i], t.iid[i0 + i]);
            for (size_t q = 0; q < n_out; q++) fprintf(f, "\t%.6f", risk[i * n_out + q]);
            fputc('\n', f);
        }
    }
    int e = ferror(f) ? (errno ? errno : EIO) : 0;
    if (fclose(f) && !e) e = errno ? errno : EIO;
    f = NULL;
    if (e) {
        fprintf(stderr, "medgemini prs predict: cannot write '%s': %s\n", path, strerror(e));
        goto done;
    }
    fprintf(stderr, "medgemini prs predict: %zu individuals, %zu outcomes, %zu scores -> %s\n", t.n, n_out,
            t.k, path);
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "medgemini prs predict: out of memory\n");
done:
    if (f) fclose(f);
    struct stat sb; /* no partial results (a regular file: not a device given as --out) */
    if (rc && created && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) remove(path);
    for (size_t q = 0; q < n_out; q++) free(qs[q]);
    free(risk);
    free(path);
    table_free(&t);
    mg_context_free(ctx);
    mg_model_free(m);
args:
    free(files);
    return rc;
}
