/* fuzz_study.c - PACS exports: the input split at the line "%%" into a
 * DICOMDIR and up to two DICOM files, written as DICOMDIR, A and B in a
 * folder of their own; mg_studies_scan groups the folder (the DICOMDIR's
 * records name files by Referenced File ID), every attribute of every study
 * and series is read, and the first study's report is written as a DICOM SR
 * over its files with mg_sr_write. */
#include "fuzz.h"

#include <sys/stat.h>

static char fz_dir[512];

static void fz_dir_cleanup(void) {
    static const char *const names[4] = {"DICOMDIR", "A", "B", "sr.dcm"};
    char p[600];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, names[i]);
        unlink(p);
    }
    rmdir(fz_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fz_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir, sizeof fz_dir, "%s/mg-fuzz-study-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_dir)) return 0;
        atexit(fz_dir_cleanup);
    }
    static const char *const names[3] = {"DICOMDIR", "A", "B"};
    const uint8_t *part[3];
    size_t len[3];
    fz_split(data, size, 3, part, len);
    char p[600];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, names[i]);
        unlink(p);
        if (!len[i]) continue;
        FILE *f = fopen(p, "wb");
        if (!f) return 0;
        fwrite(part[i], 1, len[i], f);
        fclose(f);
    }
    mg_studies *s = NULL;
    char err[256];
    const char *dir = fz_dir;
    mg_studies_params sp = MG_STUDIES_PARAMS_INIT;
    sp.max_files = 16;
    if (mg_studies_scan(&s, &dir, 1, &sp, err, sizeof err) != MG_OK) return 0;
    static const char *const skeys[] = {"study_uid", "patient_id", "patient_name", "date", "time",
                                        "accession", "description", "kind", "frontal", "lateral",
                                        "prior"};
    static const char *const ekeys[] = {"series_uid", "modality", "description", "number",
                                        "body_part", "view", "files"};
    size_t total = 0;
    for (size_t i = 0; i < mg_studies_count(s); i++) {
        for (size_t k = 0; k < sizeof skeys / sizeof *skeys; k++) {
            const char *v = mg_studies_get(s, i, -1, skeys[k]);
            if (v) total += strlen(v);
        }
        for (size_t e = 0; e < mg_studies_series_count(s, i); e++)
            for (size_t k = 0; k < sizeof ekeys / sizeof *ekeys; k++) {
                const char *v = mg_studies_get(s, i, (int64_t)e, ekeys[k]);
                if (v) total += strlen(v);
            }
    }
    const char *w = mg_studies_get(s, SIZE_MAX, -1, "warnings");
    if (w) total += strlen(w);
    /* an SR over the first study's first series */
    const char *files = mg_studies_get(s, 0, 0, "files");
    if (files) {
        char buf[2048], *src[4];
        size_t n = 0;
        snprintf(buf, sizeof buf, "%s", files);
        for (char *c = buf; *c && n < 4;) {
            src[n++] = c;
            char *nl = strchr(c, '\n');
            if (!nl) break;
            *nl = '\0';
            c = nl + 1;
        }
        snprintf(p, sizeof p, "%s/sr.dcm", fz_dir);
        mg_sr_params srp = MG_SR_PARAMS_INIT;
        srp.model_name = "fuzz";
        if (mg_sr_write(p, "Findings: none.\nImpression: none.", (const char *const *)src, n,
                        &srp, err, sizeof err) == MG_OK)
            unlink(p);
    }
    mg_studies_free(s);
    return total == (size_t)-1; /* keeps the reads from being optimized away; never 1 */
}
