/* fuzz_plink.c - PLINK 1 binary genotypes: the input split at the line
 * "%%" into .bim, .fam and .bed, opened with mg_prs_open_plink (every
 * dosage model from the first byte) and scored with a fixed wide score
 * file. */
#include "prs_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[3];
    size_t len[3];
    fz_split(data, size, 3, part, len);
    if (!fz_write("-in.bim", part[0], len[0]) || !fz_write("-in.fam", part[1], len[1]) ||
        !fz_write("-in.bed", part[2], len[2]))
        return 0;
    const char *score = fz_write("-score.txt", FX_SCORE, sizeof FX_SCORE - 1);
    if (!score) return 0;
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    uint8_t m = size ? data[0] : 0;
    pp.flags = (m & 1 ? MG_PRS_DOMINANT : m & 2 ? MG_PRS_RECESSIVE : 0) |
               (m & 4 ? MG_PRS_NO_MEAN_IMPUTATION : 0);
    pp.n_threads = 1;
    mg_prs *prs = NULL;
    char err[256];
    if (mg_prs_open_plink(&prs, fz_path("-in"), &pp, err, sizeof err) == MG_OK) {
        fx_score(prs, score);
        mg_prs_free(prs);
    }
    return 0;
}
