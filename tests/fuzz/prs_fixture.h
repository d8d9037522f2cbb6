/* prs_fixture.h - a fixed small genotype set and scoring file for the
 * polygenic harnesses (one side fixed, the other fuzzed): 5 samples, 4
 * variants on chromosome 1 (one on X), PLINK 1 binary. */
#ifndef MG_FUZZ_PRS_FIXTURE_H
#define MG_FUZZ_PRS_FIXTURE_H

#include "fuzz.h"

static const char FX_FAM[] = "f1 i1 0 0 1 -9\nf2 i2 0 0 2 -9\nf3 i3 0 0 1 -9\n"
                             "f4 i4 0 0 2 -9\nf5 i5 0 0 0 -9\n";
static const char FX_BIM[] = "1\trs1\t0\t100\tA\tG\n1\trs2\t0\t200\tC\tT\n"
                             "1\trs3\t0\t300\tG\tA\n23\trs4\t0\t400\tT\tC\n";
/* magic, then per variant ceil(5 / 4) = 2 bytes of 2-bit codes */
static const uint8_t FX_BED[] = {0x6c, 0x1b, 0x01, 0x1b, 0x02, 0xe4, 0x01,
                                 0x6c, 0x03, 0x39, 0x00};
static const char FX_SCORE[] = "ID\tA1\ts1\ts2\nrs1\tA\t0.5\t-0.25\nrs2\tT\t1.0\t0\n"
                               "rs3\tG\t-0.75\t2\nrs4\tT\t0.125\t1e-3\n";

/* Writes the fixture's .bed/.bim/.fam under one prefix; returns it. */
static inline const char *fx_plink(void) {
    const char *pre = fz_path("-fx");
    if (!fz_write("-fx.bed", FX_BED, sizeof FX_BED) ||
        !fz_write("-fx.bim", FX_BIM, sizeof FX_BIM - 1) ||
        !fz_write("-fx.fam", FX_FAM, sizeof FX_FAM - 1))
        return NULL;
    return pre;
}

/* Adds the score file at `score` to an open set, computes and reads every
 * result (errors are fine: only crashes, leaks and UB count). */
static inline void fx_score(mg_prs *prs, const char *score) {
    uint32_t added = 0;
    if (mg_prs_add_scores(prs, &added, score) != MG_OK) return;
    if (mg_prs_compute(prs) != MG_OK) return;
    double buf[4096];
    mg_prs_results(buf, sizeof buf / sizeof buf[0], prs, MG_PRS_COL_SUM, 0);
    mg_prs_results(buf, sizeof buf / sizeof buf[0], prs, MG_PRS_COL_AVG, added ? added - 1 : 0);
    mg_prs_match_report rep = {.struct_size = sizeof rep};
    mg_prs_match_report_get(&rep, prs, 0);
}

#endif
