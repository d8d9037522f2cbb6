/* fuzz_score.c - scoring files: the input as a wide or PGS Catalog scoring
 * file (plain; gzip is recognised from the bytes) added to a fixed PLINK
 * set with mg_prs_add_scores, then computed. */
#include "prs_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *pre = fx_plink();
    const char *score = fz_write("-in.txt", data, size);
    if (!pre || !score) return 0;
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    pp.n_threads = 1;
    mg_prs *prs = NULL;
    char err[256];
    if (mg_prs_open_plink(&prs, pre, &pp, err, sizeof err) == MG_OK) {
        fx_score(prs, score);
        mg_prs_free(prs);
    }
    return 0;
}
