/* check_studies.c - DICOM files grouped into studies and series
 * (mg_studies): a hand-made PACS export whose grouping, order, views,
 * priors, kinds and skipped files are worked out by hand; the same files
 * through a DICOMDIR made by dcmtk's dcmmkdir; the shared corpus; limits
 * and bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "medgemini.h"
#include "testutil.h"

static char g_root[1024];

static const char *at(const char *rel) {
    static char buf[8][1280];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", g_root, rel);
    return b;
}

static void mkdirs(const char *rel) {
    char p[1280];
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    for (char *c = p + strlen(g_root) + 1; *c; c++)
        if (*c == '/') {
            *c = '\0';
            mkdir(p, 0777);
            *c = '/';
        }
    mkdir(p, 0777);
}

/* One image header: patient, study (UID, date), series (UID, number,
 * modality, description), instance (UID, number), View Position. */
static void image(const char *rel, const char *pid, const char *study, const char *date,
                  const char *series, const char *series_no, const char *modality,
                  const char *desc, const char *sop, const char *inst_no, const char *vpos) {
    const tu_dcm els[] = {
        {0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.1"},
        {0x0008, 0x0018, "UI", sop},
        {0x0008, 0x0020, "DA", date},
        {0x0008, 0x0030, "TM", "120000"},
        {0x0008, 0x0050, "SH", "A1"},
        {0x0008, 0x0060, "CS", modality},
        {0x0008, 0x103E, "LO", desc},
        {0x0010, 0x0010, "PN", "Test^Patient"},
        {0x0010, 0x0020, "LO", pid},
        {0x0018, 0x5101, "CS", vpos},
        {0x0020, 0x000D, "UI", study},
        {0x0020, 0x000E, "UI", series},
        {0x0020, 0x0010, "SH", "1"},
        {0x0020, 0x0011, "IS", series_no},
        {0x0020, 0x0013, "IS", inst_no}};
    tu_write_dicom(at(rel), els, sizeof els / sizeof *els);
}

#define R "1.2.826.0.1.3680043.9.8."

/* The export: patient P1 with two chest studies (January: PA and lateral
 * by View Position, in two series; March: views only in the series
 * descriptions), patient P2 with a 3-slice CT (files named against their
 * instance order), and things to skip. */
static void make_export(void) {
    snprintf(g_root, sizeof g_root, "%s", tu_tmp_path("studies"));
    mkdir(g_root, 0777);
    mkdirs("jan");
    mkdirs("mar/sub");
    mkdirs("ct");
    mkdirs(".hidden");
    image("jan/IM1", "P1", R "1", "20240110", R "1.1", "1", "CR", "", R "1.1.1", "1", "PA");
    image("jan/IM2", "P1", R "1", "20240110", R "1.2", "2", "CR", "", R "1.2.1", "1", "LL");
    image("mar/sub/x", "P1", R "2", "20240305", R "2.1", "1", "DX", "CHEST LAT", R "2.1.1", "1", "");
    image("mar/y", "P1", R "2", "20240305", R "2.1", "1", "DX", "PA chest", R "2.1.2", "2", "");
    image("ct/a", "P2", R "3", "20230101", R "3.1", "5", "CT", "abdomen", R "3.1.3", "3", "");
    image("ct/b", "P2", R "3", "20230101", R "3.1", "5", "CT", "abdomen", R "3.1.1", "1", "");
    image("ct/c", "P2", R "3", "20230101", R "3.1", "5", "CT", "abdomen", R "3.1.2", "2", "");
    image("ct/dup", "P2", R "3", "20230101", R "3.1", "5", "CT", "abdomen", R "3.1.2", "2", "");
    image(".hidden/h", "P9", R "9", "20230101", R "9.1", "1", "CR", "", R "9.1.1", "1", "PA");
    ck_assert_int_eq(tu_write_file(at("ct/notes.txt"), "not dicom", 9), 0);
    const tu_dcm noid[] = {{0x0008, 0x0060, "CS", "CR"}, {0x0010, 0x0020, "LO", "P3"}};
    tu_write_dicom(at("jan/noid"), noid, 2);
}

static const char *get(const mg_studies *s, size_t st, int64_t se, const char *key) {
    const char *v = mg_studies_get(s, st, se, key);
    return v ? v : "(null)";
}

START_TEST(test_export) {
    make_export();
    mg_studies *s = NULL;
    char err[512];
    const char *root = g_root;
    ck_assert_msg(mg_studies_scan(&s, &root, 1, NULL, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_uint_eq(mg_studies_count(s), 3);
    /* order: P1 January, P1 March, P2 */
    ck_assert_str_eq(get(s, 0, -1, "study_uid"), R "1");
    ck_assert_str_eq(get(s, 1, -1, "study_uid"), R "2");
    ck_assert_str_eq(get(s, 2, -1, "study_uid"), R "3");
    ck_assert_str_eq(get(s, 0, -1, "kind"), "radiograph");
    ck_assert_str_eq(get(s, 2, -1, "kind"), "volume");
    ck_assert_str_eq(get(s, 0, -1, "frontal"), at("jan/IM1"));
    ck_assert_str_eq(get(s, 0, -1, "lateral"), at("jan/IM2"));
    ck_assert_str_eq(get(s, 1, -1, "frontal"), at("mar/y"));
    ck_assert_str_eq(get(s, 1, -1, "lateral"), at("mar/sub/x"));
    ck_assert_ptr_null(mg_studies_get(s, 2, -1, "frontal"));
    /* the March study's prior is January's; the others have none */
    ck_assert_str_eq(get(s, 1, -1, "prior"), "0");
    ck_assert_ptr_null(mg_studies_get(s, 0, -1, "prior"));
    ck_assert_ptr_null(mg_studies_get(s, 2, -1, "prior"));
    ck_assert_str_eq(get(s, 0, -1, "patient_id"), "P1");
    ck_assert_str_eq(get(s, 0, -1, "date"), "20240110");
    ck_assert_str_eq(get(s, 0, -1, "patient_name"), "Test^Patient");
    /* series */
    ck_assert_uint_eq(mg_studies_series_count(s, 0), 2);
    ck_assert_uint_eq(mg_studies_series_count(s, 1), 1);
    ck_assert_uint_eq(mg_studies_series_count(s, 2), 1);
    ck_assert_str_eq(get(s, 0, 0, "view"), "frontal");
    ck_assert_str_eq(get(s, 0, 1, "view"), "lateral");
    ck_assert_str_eq(get(s, 0, 1, "number"), "2");
    ck_assert_str_eq(get(s, 2, 0, "modality"), "CT");
    ck_assert_str_eq(get(s, 2, 0, "description"), "abdomen");
    /* the CT in instance order, the duplicate instance once */
    char want[4096];
    snprintf(want, sizeof want, "%s\n%s\n%s", at("ct/b"), at("ct/c"), at("ct/a"));
    const char *files = get(s, 2, 0, "files");
    ck_assert_msg(!strcmp(files, want) ||
                      /* dup and c are the same instance: either may be kept */
                      (snprintf(want, sizeof want, "%s\n%s\n%s", at("ct/b"), at("ct/dup"), at("ct/a")),
                       !strcmp(files, want)),
                  "files: %s", files);
    /* skipped: the text file, the file without UIDs, the duplicate; not the
     * hidden folder */
    const char *w = get(s, SIZE_MAX, -1, "warnings");
    ck_assert(strstr(w, "notes.txt: not DICOM"));
    ck_assert(strstr(w, "noid: no Study or Series Instance UID"));
    ck_assert(strstr(w, "the same instance"));
    ck_assert(!strstr(w, ".hidden"));
    /* out of range and bad keys */
    ck_assert_ptr_null(mg_studies_get(s, 3, -1, "study_uid"));
    ck_assert_ptr_null(mg_studies_get(s, 0, 2, "series_uid"));
    ck_assert_ptr_null(mg_studies_get(s, 0, -1, "nonsense"));
    ck_assert_ptr_null(mg_studies_get(s, 0, -1, NULL));
    ck_assert_uint_eq(mg_studies_series_count(s, 9), 0);
    mg_studies_free(s);

    /* the same files given one by one group the same way */
    const char *paths[3] = {at("jan/IM2"), at("mar/y"), at("jan/IM1")};
    ck_assert_int_eq(mg_studies_scan(&s, paths, 3, NULL, err, sizeof err), MG_OK);
    ck_assert_uint_eq(mg_studies_count(s), 2);
    ck_assert_str_eq(get(s, 0, -1, "frontal"), at("jan/IM1"));
    ck_assert_str_eq(get(s, 1, -1, "prior"), "0");
    mg_studies_free(s);

    /* limits and refusals */
    mg_studies_params p;
    mg_studies_params_init(&p);
    p.max_files = 3;
    ck_assert_int_eq(mg_studies_scan(&s, &root, 1, &p, err, sizeof err), MG_E_LIMIT);
    ck_assert_ptr_null(s);
    p.max_files = 0;
    p.flags = 1;
    ck_assert_int_eq(mg_studies_scan(&s, &root, 1, &p, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_studies_scan(&s, NULL, 1, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_studies_scan(NULL, &root, 1, NULL, err, sizeof err), MG_E_INVALID_ARG);
    const char *missing = at("missing");
    ck_assert_int_eq(mg_studies_scan(&s, &missing, 1, NULL, err, sizeof err), MG_E_IO);
    const char *empty = at(".hidden");
    mkdirs("empty");
    empty = at("empty");
    ck_assert_int_eq(mg_studies_scan(&s, &empty, 1, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert(strstr(err, "no DICOM study"));
    ck_assert_uint_eq(mg_studies_count(NULL), 0);
    ck_assert_ptr_null(mg_studies_get(NULL, 0, -1, "study_uid"));
    mg_studies_free(NULL);
}
END_TEST

/* A DICOMDIR written by dcmtk for the January and CT files groups them as
 * the folders do. */
START_TEST(test_dicomdir) {
    if (system("dcmmkdir --version >/dev/null 2>&1") != 0) return;
    make_export();
    mkdirs("media/IMG");
    const char *names[5][2] = {{"jan/IM1", "A1"}, {"jan/IM2", "A2"}, {"ct/a", "B1"},
                               {"ct/b", "B2"}, {"ct/c", "B3"}};
    for (int i = 0; i < 5; i++) {
        size_t n = 0;
        unsigned char *d = tu_read_file(at(names[i][0]), &n);
        char rel[64];
        snprintf(rel, sizeof rel, "media/IMG/%s", names[i][1]);
        ck_assert_int_eq(tu_write_file(at(rel), d, n), 0);
        free(d);
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && dcmmkdir -q +r +I IMG", at("media"));
    ck_assert_int_eq(system(cmd), 0);
    const char *dd = at("media/DICOMDIR");
    mg_studies *s = NULL;
    char err[512];
    ck_assert_msg(mg_studies_scan(&s, &dd, 1, NULL, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_uint_eq(mg_studies_count(s), 2);
    ck_assert_str_eq(get(s, 0, -1, "study_uid"), R "1");
    ck_assert_str_eq(get(s, 0, -1, "frontal"), at("media/IMG/A1"));
    ck_assert_str_eq(get(s, 0, -1, "lateral"), at("media/IMG/A2"));
    ck_assert_str_eq(get(s, 1, -1, "kind"), "volume");
    char want[4096];
    snprintf(want, sizeof want, "%s\n%s\n%s", at("media/IMG/B2"), at("media/IMG/B3"),
             at("media/IMG/B1"));
    ck_assert_str_eq(get(s, 1, 0, "files"), want);
    mg_studies_free(s);
}
END_TEST

/* The shared corpus: the CR chest radiograph is a radiograph study with a
 * frontal view; the CT series folder is one volume study (its segmentation
 * object a series of its own). */
START_TEST(test_shared) {
    const char *cr = tu_shared_file("dicom/cr_chest");
    if (!cr) return;
    char crp[1024];
    snprintf(crp, sizeof crp, "%s", cr);
    const char *ct = tu_shared_file("dicom/ct_series_3slice");
    const char *paths[2] = {crp, ct};
    mg_studies *s = NULL;
    char err[512];
    ck_assert_msg(mg_studies_scan(&s, paths, 2, NULL, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_uint_eq(mg_studies_count(s), 2);
    /* patients "99000" (CT) and "9RG1" (CR), in that order */
    ck_assert_str_eq(get(s, 0, -1, "kind"), "volume");
    ck_assert_str_eq(get(s, 1, -1, "kind"), "radiograph");
    ck_assert_str_eq(get(s, 1, -1, "study_uid"), "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457");
    ck_assert(strstr(get(s, 1, -1, "frontal"), "RG1_J2KI.dcm"));
    ck_assert_uint_eq(mg_studies_series_count(s, 0), 2);
    /* the decoded copy of the CR image is the same instance: skipped */
    ck_assert(strstr(get(s, SIZE_MAX, -1, "warnings"), "the same instance"));
    mg_studies_free(s);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("studies");
    TCase *t = tcase_create("studies");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_export);
    tcase_add_test(t, test_dicomdir);
    tcase_add_test(t, test_shared);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
