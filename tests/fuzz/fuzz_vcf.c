/* fuzz_vcf.c - VCF genotypes (plain text; htslib also sniffs bgzip and BCF
 * from the bytes): mg_prs_open_vcf on the input, dosages from FORMAT/DS,
 * GP or HDS by the last byte (GT where those are absent), scored with a
 * fixed wide score file. */
#include "prs_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fz_write("-in.vcf", data, size);
    const char *score = fz_write("-score.txt", FX_SCORE, sizeof FX_SCORE - 1);
    if (!p || !score) return 0;
    mg_prs_params pp;
    mg_prs_params_init(&pp);
    pp.n_threads = 1;
    if (size) pp.vcf_dosage = data[size - 1] % 3; /* MG_PRS_DOSAGE_DS, GP or HDS */
    mg_prs *prs = NULL;
    char err[256];
    if (mg_prs_open_vcf(&prs, p, &pp, err, sizeof err) == MG_OK) {
        fx_score(prs, score);
        mg_prs_free(prs);
    }
    return 0;
}
