/* study.c - `medgemini study PATH... [--list]`: DICOM files (folders,
 * DICOMDIR) grouped into studies and series (mg_studies). */
#include "medgemini.h"
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

static void usage(void) {
    fprintf(stderr,
            "usage: medgemini study PATH... [--list] [--files] [--warnings]\n"
            "  PATH: folders (read recursively), DICOMDIR files or DICOM files\n"
            "  --list      one block per study: patient, date, kind, views, prior, series\n"
            "              (the default)\n"
            "  --files     also each series' files\n"
            "  --warnings  also the files that were skipped, and why\n"
            "Reports per study: medgemini report DIR -m MODEL (docs/DICOM.md).\n");
}

int cli_study(int argc, char **argv) {
    const char *paths[256];
    size_t n = 0;
    int files = 0, warnings = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(); return 0; }
        if (!strcmp(argv[i], "--list")) continue;
        if (!strcmp(argv[i], "--files")) { files = 1; continue; }
        if (!strcmp(argv[i], "--warnings")) { warnings = 1; continue; }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "medgemini study: unknown option %s\n", argv[i]);
            return 2;
        }
        if (n == sizeof paths / sizeof *paths) {
            fprintf(stderr, "medgemini study: at most 256 paths\n");
            return 2;
        }
        paths[n++] = argv[i];
    }
    if (!n) { usage(); return 2; }
    mg_studies *s = NULL;
    char err[512];
    mg_status st = mg_studies_scan(&s, paths, n, NULL, err, sizeof err);
    if (st != MG_OK) {
        fprintf(stderr, "medgemini study: %s (%s)\n", err, mg_status_str(st));
        return 1;
    }
    size_t ns = mg_studies_count(s);
    for (size_t i = 0; i < ns; i++) {
        const char *prior = mg_studies_get(s, i, -1, "prior");
        printf("study %zu: %s\n", i + 1, or_dash(mg_studies_get(s, i, -1, "study_uid")));
        printf("  patient %s (%s), date %s %s, accession %s, %s\n",
               or_dash(mg_studies_get(s, i, -1, "patient_id")),
               or_dash(mg_studies_get(s, i, -1, "patient_name")),
               or_dash(mg_studies_get(s, i, -1, "date")), or_dash(mg_studies_get(s, i, -1, "time")),
               or_dash(mg_studies_get(s, i, -1, "accession")), or_dash(mg_studies_get(s, i, -1, "kind")));
        if (mg_studies_get(s, i, -1, "description"))
            printf("  description: %s\n", mg_studies_get(s, i, -1, "description"));
        if (mg_studies_get(s, i, -1, "frontal"))
            printf("  frontal: %s\n", mg_studies_get(s, i, -1, "frontal"));
        if (mg_studies_get(s, i, -1, "lateral"))
            printf("  lateral: %s\n", mg_studies_get(s, i, -1, "lateral"));
        if (prior) {
            unsigned long long k = strtoull(prior, NULL, 10);
            printf("  prior: study %llu (%s)\n", k + 1, or_dash(mg_studies_get(s, (size_t)k, -1, "date")));
        }
        for (size_t k = 0; k < mg_studies_series_count(s, i); k++) {
            const char *f = mg_studies_get(s, i, (int64_t)k, "files");
            size_t nf = f ? 1 : 0;
            for (const char *c = f; c && *c; c++) nf += *c == '\n';
            printf("  series %s: %s %s, %zu file%s%s%s%s%s\n",
                   or_dash(mg_studies_get(s, i, (int64_t)k, "number")),
                   or_dash(mg_studies_get(s, i, (int64_t)k, "series_uid")),
                   or_dash(mg_studies_get(s, i, (int64_t)k, "modality")), nf, nf == 1 ? "" : "s",
                   mg_studies_get(s, i, (int64_t)k, "view") ? ", " : "",
                   mg_studies_get(s, i, (int64_t)k, "view") ? mg_studies_get(s, i, (int64_t)k, "view") : "",
                   mg_studies_get(s, i, (int64_t)k, "description") ? ": " : "",
                   mg_studies_get(s, i, (int64_t)k, "description") ? mg_studies_get(s, i, (int64_t)k, "description") : "");
            for (const char *c = files ? f : NULL; c && *c;) {
                const char *e = strchr(c, '\n');
                int l = e ? (int)(e - c) : (int)strlen(c);
                printf("    %.*s\n", l, c);
                c = e ? e + 1 : c + l;
            }
        }
    }
    const char *w = mg_studies_get(s, SIZE_MAX, -1, "warnings");
    if (warnings && w && *w) printf("skipped:\n%s", w);
    else if (w && *w) {
        size_t nw = 0;
        for (const char *c = w; *c; c++) nw += *c == '\n';
        fprintf(stderr, "medgemini study: %zu file%s skipped (--warnings lists them)\n", nw,
                nw == 1 ? "" : "s");
    }
    mg_studies_free(s);
    return 0;
}
