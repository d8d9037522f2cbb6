/* prs.c - polygenic scores, ours against plink2 in one run.
 *
 * Makes (or reuses) a PLINK 1 set simulated by plink1.9 --simulate, writes
 * wide score files with 1, 10 and 100 scores over every variant (as
 * pgsc_calc hands them to plink2), then for each runs plink2 --score and
 * `mg_prs_*` (in a child process, so that each gets its own peak RSS) and
 * prints wall time, throughput (variant x sample x score products / s), the
 * ratio and both peak RSS figures, after checking that the two .sscore files
 * agree (1e-5 relative). The .bed is read once first so that both tools
 * find it in the page cache.
 *
 *   bench/prs [--full] [--samples N] [--variants V] [--dir DIR] [--threads T]
 *             [--double-sums]
 *
 * Default 10,000 samples x 20,000 variants (under a minute in all); --full is the
 * issue's 10,000 x 500,000 set (1.25 GB .bed; plink1.9 needs ~1 min to make
 * it, the 100-score file is ~0.6 GB). --double-sums runs ours with
 * MG_PRS_DOUBLE_SUMS (the double paths even where an integer kernel is
 * there, as mg_build_info()'s prs_ints= says). Skips (exit 0) without
 * plink2 and plink1.9. OPENBLAS_CORETYPE / OPENBLAS_NUM_THREADS are the host's to set. */
#include "medgemini.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint32_t g_flags; /* mg_prs_params.flags of our runs */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double gauss(void) { /* Box-Muller from xorshift64* */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
        u[i] = ((double)((rng * 0x2545f4914f6cdd1dull) >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* Runs argv (plink2) or our scorer (argv == NULL) in a child; returns wall
 * seconds and the child's peak RSS in KiB through *rss_kb; -1 on failure. */
static double run_child(char *const *argv, const char *bfile, const char *score,
                        const char *out, uint32_t threads, long *rss_kb) {
    fflush(stdout);
    fflush(stderr);
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (argv) {
            if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(126);
            execvp(argv[0], argv);
            _exit(127);
        }
        mg_prs_params pp;
        mg_prs_params_init(&pp);
        pp.n_threads = threads;
        pp.flags = g_flags;
        mg_prs *p = NULL;
        char err[512];
        if (mg_prs_open_plink(&p, bfile, &pp, err, sizeof err) != MG_OK) {
            fprintf(stderr, "open: %s\n", err);
            _exit(1);
        }
        if (mg_prs_add_scores(p, NULL, score) != MG_OK || mg_prs_compute(p) != MG_OK ||
            mg_prs_write_sscore(p, out) != MG_OK) {
            fprintf(stderr, "score: %s\n", mg_prs_errmsg(p));
            _exit(1);
        }
        mg_prs_free(p);
        _exit(0);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) return -1;
    double t = now() - t0;
    *rss_kb = ru.ru_maxrss;
    return (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? t : -1;
}

/* Largest relative difference between our .sscore and plink2's (which has
 * a PHENO1 column after IID when the .fam has phenotypes). */
static double compare(const char *ours, const char *theirs) {
    FILE *a = fopen(ours, "r"), *b = fopen(theirs, "r");
    if (!a || !b) { if (a) fclose(a); if (b) fclose(b); return INFINITY; }
    static char la[1 << 16], lb[1 << 16];
    double mx = 0;
    int skip = 0, first = 1;
    while (fgets(la, sizeof la, a) && fgets(lb, sizeof lb, b)) {
        if (first) { skip = strstr(lb, "PHENO1") ? 1 : 0; first = 0; continue; }
        char *sa, *sb;
        char *ta = strtok_r(la, "\t\n", &sa), *tb = strtok_r(lb, "\t\n", &sb);
        for (int c = 0; ta && tb; c++) {
            if (c == 2 && skip) { tb = strtok_r(NULL, "\t\n", &sb); if (!tb) break; }
            if (c >= 2) {
                double x = strtod(ta, NULL), y = strtod(tb, NULL);
                double m = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
                double e = x == y ? 0 : fabs(x - y) / m;
                if (e > mx) mx = e;
            }
            ta = strtok_r(NULL, "\t\n", &sa);
            tb = strtok_r(NULL, "\t\n", &sb);
        }
    }
    fclose(a);
    fclose(b);
    return mx;
}

int main(int argc, char **argv) {
    long n_samples = 10000, n_variants = 20000;
    const char *dir = "/tmp/mg_prs_bench";
    uint32_t threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--full")) n_variants = 500000;
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc) n_samples = atol(argv[++i]);
        else if (!strcmp(argv[i], "--variants") && i + 1 < argc) n_variants = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--double-sums")) g_flags |= MG_PRS_DOUBLE_SUMS;
        else {
            fprintf(stderr, "usage: %s [--full] [--samples N] [--variants V] [--dir DIR] [--threads T] "
                    "[--double-sums]\n", argv[0]);
            return 2;
        }
    }
    if (system("command -v plink2 >/dev/null 2>&1 && command -v plink1.9 >/dev/null 2>&1") != 0) {
        printf("prs bench: skipped (plink2 and plink1.9 are needed)\n");
        return 0;
    }
    char cmd[8192], prefix[1024], path[1100];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) return 1;
    snprintf(prefix, sizeof prefix, "%s/sim_%ldx%ld", dir, n_samples, n_variants);
    snprintf(path, sizeof path, "%s.bed", prefix);
    if (!exists(path)) {
        double t0 = now();
        snprintf(path, sizeof path, "%s.simfile", prefix);
        FILE *f = fopen(path, "w");
        if (!f) return 1;
        fprintf(f, "%ld snp 0.05 0.95 1.00 1.00\n", n_variants);
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "plink1.9 --simulate '%s' --simulate-ncases %ld --simulate-ncontrols %ld "
                 "--make-bed --out '%s' >/dev/null 2>&1", path, n_samples / 2, n_samples - n_samples / 2, prefix);
        if (system(cmd) != 0) { fprintf(stderr, "plink1.9 --simulate failed\n"); return 1; }
        printf("simulated %ld samples x %ld variants with plink1.9 in %.1f s\n", n_samples, n_variants, now() - t0);
    }
    /* Both tools then read the .bed from the page cache: read it once now. */
    snprintf(cmd, sizeof cmd, "cat '%s.bed' > /dev/null", prefix);
    if (system(cmd) != 0) return 1;
    static const int ks[] = {1, 10, 100};
    const char *ik = strstr(mg_build_info(), "prs_ints=");
    printf("polygenic scores, %ld samples x %ld variants, PLINK 1 .bed, %u threads (both); ours: %s%.*s\n",
           n_samples, n_variants, threads, g_flags & MG_PRS_DOUBLE_SUMS ? "double sums, " : "",
           ik ? (int)strcspn(ik, " ") : 0, ik ? ik : "");
    printf("%7s %10s %10s %7s %14s %14s %11s %11s %9s\n", "scores", "ours s", "plink2 s", "ratio",
           "ours prod/s", "plink2 prod/s", "ours RSS", "plink2 RSS", "max rel");
    for (size_t q = 0; q < sizeof ks / sizeof ks[0]; q++) {
        int K = ks[q];
        char score[1200], ours[1200], pl[1200], plss[1300];
        snprintf(score, sizeof score, "%s.k%d.score", prefix, K);
        if (!exists(score)) { /* every variant, a random allele, K weights */
            snprintf(path, sizeof path, "%s.bim", prefix);
            FILE *bim = fopen(path, "r"), *out = fopen(score, "w");
            if (!bim || !out) return 1;
            fprintf(out, "ID\teffect_allele");
            for (int k = 0; k < K; k++) fprintf(out, "\ts%d", k);
            fputc('\n', out);
            char chr[64], id[256], cm[64], pos[64], a1[64], a2[64];
            while (fscanf(bim, "%63s %255s %63s %63s %63s %63s", chr, id, cm, pos, a1, a2) == 6) {
                fprintf(out, "%s\t%s", id, gauss() > 0 ? a1 : a2);
                for (int k = 0; k < K; k++) fprintf(out, "\t%.6g", 0.01 * gauss());
                fputc('\n', out);
            }
            fclose(bim);
            fclose(out);
        }
        snprintf(ours, sizeof ours, "%s.k%d.ours.sscore", prefix, K);
        snprintf(pl, sizeof pl, "%s.k%d.plink2", prefix, K);
        snprintf(plss, sizeof plss, "%s.sscore", pl);
        char cols[32], thr[16];
        snprintf(cols, sizeof cols, K == 1 ? "3" : "3-%d", K + 2);
        snprintf(thr, sizeof thr, "%u", threads);
        char *pargv[] = {"plink2", "--threads", thr, "--bfile", prefix, "--score", score, "header-read",
                         "cols=+scoresums,+denom,+fid", "--score-col-nums", cols, "--out", pl, NULL};
        long rss_p = 0, rss_o = 0;
        double tp = run_child(pargv, NULL, NULL, NULL, 0, &rss_p);
        double to = run_child(NULL, prefix, score, ours, threads, &rss_o);
        if (tp < 0 || to < 0) { fprintf(stderr, "a run failed (K=%d)\n", K); return 1; }
        double prod = (double)n_samples * (double)n_variants * K;
        printf("%7d %10.2f %10.2f %6.2fx %14.3g %14.3g %8.0f MB %8.0f MB %9.2g\n", K, to, tp, tp / to,
               prod / to, prod / tp, rss_o / 1024.0, rss_p / 1024.0, compare(ours, plss));
        fflush(stdout);
    }
    return 0;
}
