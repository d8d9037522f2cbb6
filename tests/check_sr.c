/* check_sr.c - reports written as DICOM Basic Text SR (mg_sr_write): read
 * back with the library's own parser, with pydicom (tests/dicom/sr_check.py)
 * and rendered by dcmtk's dsrdump without a warning; character sets
 * (ASCII, ISO_IR 100 sources and text, UTF-8); the evidence of several
 * sources and series; and refusals: sources of two studies or patients,
 * non-DICOM, truncated and UID-less sources, bad text and options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/dicom.h"
#include "io/image.h"
#include "medgemini.h"
#include "testutil.h"

/* ---- hand-made source files ------------------------------------------------ */

/* A small CR-like object without pixels (the SR needs only its header).
 * charset NULL: none. */
static const char *make_source(const char *name, const char *charset, const char *patient_name,
                               const char *patient_id, const char *study, const char *series,
                               const char *sop) {
    const tu_dcm els[] = {
        {0x0008, 0x0005, "CS", charset ? charset : ""},
        {0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.1"},
        {0x0008, 0x0018, "UI", sop},
        {0x0008, 0x0020, "DA", "20240102"},
        {0x0008, 0x0030, "TM", "101500"},
        {0x0008, 0x0050, "SH", "ACC42"},
        {0x0008, 0x0060, "CS", "CR"},
        {0x0008, 0x0090, "PN", "Ref^Doc"},
        {0x0010, 0x0010, "PN", patient_name},
        {0x0010, 0x0020, "LO", patient_id},
        {0x0010, 0x0030, "DA", "19700101"},
        {0x0010, 0x0040, "CS", "O"},
        {0x0020, 0x000D, "UI", study},
        {0x0020, 0x000E, "UI", series},
        {0x0020, 0x0010, "SH", "S1"}};
    const char *path = tu_tmp_path(name);
    tu_write_dicom(path, els, sizeof els / sizeof *els);
    return path;
}

/* ---- reading the SR back --------------------------------------------------- */

typedef struct sr {
    unsigned char *data;
    size_t size;
    mg__dcm_dataset ds;
} sr;

static void sr_open(sr *s, const char *path) {
    ck_assert_int_eq(mg__read_file(&s->data, &s->size, path, UINT64_MAX, NULL, 0), MG_OK);
    mg_image_params ip;
    ck_assert_int_eq(mg__image_params_get(&ip, NULL, NULL, 0), MG_OK);
    char err[256];
    ck_assert_msg(mg__dcm_parse(&s->ds, s->data, s->size, &ip, err, sizeof err) == MG_OK, "%s",
                  err);
}
static void sr_close(sr *s) {
    mg__dcm_free(&s->ds);
    free(s->data);
}

/* The string value of tag in item `item` of sequence element `parent`. */
static const char *val(const sr *s, int32_t parent, uint32_t item, uint32_t tag) {
    static char out[8][1024];
    static int k;
    char *o = out[k++ % 8];
    int32_t i = mg__dcm_find(&s->ds, parent, item, tag);
    o[0] = '\0';
    if (i >= 0) mg__dcm_text(&s->ds, i, o, 1024);
    return o;
}
static int32_t seq(const sr *s, int32_t parent, uint32_t item, uint32_t tag) {
    int32_t i = mg__dcm_find(&s->ds, parent, item, tag);
    ck_assert_msg(i >= 0, "no sequence %08x", tag);
    return i;
}

/* The text of the content item whose concept code is `code` (depth-first). */
static const char *content_text(const sr *s, int32_t cs, const char *code) {
    for (uint32_t it = 0; it < mg__dcm_items(&s->ds, cs); it++) {
        int32_t cn = mg__dcm_find(&s->ds, cs, it, 0x0040A043u);
        if (cn >= 0 && !strcmp(val(s, cn, 0, 0x00080100u), code))
            return val(s, cs, it, 0x0040A160u);
        int32_t sub = mg__dcm_find(&s->ds, cs, it, 0x0040A730u);
        if (sub >= 0) {
            const char *t = content_text(s, sub, code);
            if (t) return t;
        }
    }
    return NULL;
}

static const char *g_model = "medgemma-4b-it q4_0.mgm";

static mg_status write_sr(const char *out, const char *report, const char **src, size_t n,
                          char *err) {
    mg_sr_params p;
    mg_sr_params_init(&p);
    p.model_name = g_model;
    return mg_sr_write(out, report, src, n, &p, err, 512);
}

/* ---- tests ----------------------------------------------------------------- */

START_TEST(test_sr_structure) {
    const char *st = "1.2.826.0.1.3680043.9.7.1";
    const char *a1 = make_source("sr_a1.dcm", "ISO_IR 100", "M\xfcller^J\xfcrgen", "P42", st,
                                 "1.2.826.0.1.3680043.9.7.1.1", "1.2.826.0.1.3680043.9.7.1.1.1");
    const char *a2 = make_source("sr_a2.dcm", "ISO_IR 100", "M\xfcller^J\xfcrgen", "P42", st,
                                 "1.2.826.0.1.3680043.9.7.1.2", "1.2.826.0.1.3680043.9.7.1.2.1");
    const char *a3 = make_source("sr_a3.dcm", "ISO_IR 100", "M\xfcller^J\xfcrgen", "P42", st,
                                 "1.2.826.0.1.3680043.9.7.1.1", "1.2.826.0.1.3680043.9.7.1.1.2");
    const char *src[4] = {a1, a2, a3, a1}; /* a1 twice: listed once */
    const char *report = "Findings: The lungs are clear.\nNo effusion.\n\nIMPRESSION: Normal chest.";
    const char *out = tu_tmp_path("sr_out.dcm");
    char err[512];
    ck_assert_msg(write_sr(out, report, src, 4, err) == MG_OK, "%s", err);
    sr s;
    sr_open(&s, out);
    ck_assert_str_eq(s.ds.ts_uid, "1.2.840.10008.1.2.1"); /* the rest of the meta: pydicom */
    ck_assert_str_eq(val(&s, -1, 0, 0x00080016u), "1.2.840.10008.5.1.4.1.1.88.11");
    ck_assert_str_eq(val(&s, -1, 0, 0x00080060u), "SR");
    /* the patient's name is Latin-1 in the source and in the SR */
    ck_assert_str_eq(val(&s, -1, 0, 0x00080005u), "ISO_IR 100");
    ck_assert_str_eq(val(&s, -1, 0, 0x00100010u), "M\xfcller^J\xfcrgen");
    ck_assert_str_eq(val(&s, -1, 0, 0x00100020u), "P42");
    ck_assert_str_eq(val(&s, -1, 0, 0x00080050u), "ACC42");
    ck_assert_str_eq(val(&s, -1, 0, 0x00080020u), "20240102");
    ck_assert_str_eq(val(&s, -1, 0, 0x0020000Du), st);
    const char *series = val(&s, -1, 0, 0x0020000Eu);
    ck_assert(strncmp(series, "2.25.", 5) == 0 && strlen(series) <= 64);
    ck_assert_str_ne(series, "1.2.826.0.1.3680043.9.7.1.1");
    ck_assert_str_eq(val(&s, -1, 0, 0x00081090u), g_model);
    ck_assert_str_eq(val(&s, -1, 0, 0x0040A491u), "COMPLETE");
    ck_assert_str_eq(val(&s, -1, 0, 0x0040A493u), "UNVERIFIED");
    ck_assert(strstr(val(&s, -1, 0, 0x0040A492u), "not a diagnosis"));
    int32_t ce = seq(&s, -1, 0, 0x0018A001u);
    ck_assert_str_eq(val(&s, ce, 0, 0x00081090u), g_model);
    ck_assert(strstr(val(&s, ce, 0, 0x00181020u), MG_VERSION_STRING));
    ck_assert(strstr(val(&s, ce, 0, 0x0018A003u), "not a diagnosis"));
    /* evidence: the study, its two series, three instances */
    int32_t ev = seq(&s, -1, 0, 0x0040A375u);
    ck_assert_uint_eq(mg__dcm_items(&s.ds, ev), 1);
    ck_assert_str_eq(val(&s, ev, 0, 0x0020000Du), st);
    int32_t rs = seq(&s, ev, 0, 0x00081115u);
    ck_assert_uint_eq(mg__dcm_items(&s.ds, rs), 2);
    int found = 0;
    for (uint32_t i = 0; i < 2; i++) {
        int32_t sops = seq(&s, rs, i, 0x00081199u);
        const char *ser = val(&s, rs, i, 0x0020000Eu);
        uint32_t n = mg__dcm_items(&s.ds, sops);
        ck_assert_uint_eq(n, !strcmp(ser, "1.2.826.0.1.3680043.9.7.1.1") ? 2 : 1);
        for (uint32_t k = 0; k < n; k++) {
            ck_assert_str_eq(val(&s, sops, k, 0x00081150u), "1.2.840.10008.5.1.4.1.1.1");
            found += !strncmp(val(&s, sops, k, 0x00081155u), ser, strlen(ser));
        }
    }
    ck_assert_int_eq(found, 3);
    /* content: findings and impression split at the label */
    int32_t cs = seq(&s, -1, 0, 0x0040A730u);
    ck_assert_str_eq(content_text(&s, cs, "121071"), "The lungs are clear.\nNo effusion.");
    ck_assert_str_eq(content_text(&s, cs, "121073"), "Normal chest.");
    ck_assert_str_eq(content_text(&s, cs, "121015"), g_model);
    ck_assert(strstr(content_text(&s, cs, "121106"), "not a diagnosis"));
    char dev1[128];
    snprintf(dev1, sizeof dev1, "%s", val(&s, cs, 1, 0x0040A124u));
    ck_assert(!strncmp(dev1, "2.25.", 5));
    sr_close(&s);

    /* a second SR: new instance and series UIDs, the same device UID */
    const char *out2 = tu_tmp_path("sr_out2.dcm");
    ck_assert_msg(write_sr(out2, "Heart size normal.", src, 1, err) == MG_OK, "%s", err);
    sr s2;
    sr_open(&s2, out2);
    ck_assert_str_ne(val(&s2, -1, 0, 0x0020000Eu), series);
    int32_t cs2 = seq(&s2, -1, 0, 0x0040A730u);
    ck_assert_str_eq(val(&s2, cs2, 1, 0x0040A124u), dev1);
    ck_assert_str_eq(content_text(&s2, cs2, "121071"), "Heart size normal.");
    ck_assert_ptr_null(content_text(&s2, cs2, "121073")); /* no impression */
    sr_close(&s2);

    /* independent readers: pydicom (names, text, evidence), dcmtk's dsrdump */
    if (tu_python("dicom/sr_check.py", "--probe"))
        ck_assert_msg(tu_python("dicom/sr_check.py",
                                "'%s' --name 'M\xc3\xbcller^J\xc3\xbcrgen' --study %s --sources 3 "
                                "--finding 'The lungs are clear.\nNo effusion.' --impression 'Normal chest.' "
                                "--model '%s'", out, st, g_model),
                      "pydicom disagrees (tests/dicom/sr_check.py)");
    if (system("dsrdump --version >/dev/null 2>&1") == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "dsrdump '%s' >'%s' 2>'%s'", out, tu_tmp_path("sr_dump.txt"),
                 tu_tmp_path("sr_dump.err"));
        ck_assert_int_eq(system(cmd), 0);
        size_t n = 0;
        unsigned char *e = tu_read_file(tu_tmp_path("sr_dump.err"), &n);
        ck_assert_msg(n == 0, "dsrdump warned: %.*s", (int)n, e ? (const char *)e : "");
        free(e);
        unsigned char *d = tu_read_file(tu_tmp_path("sr_dump.txt"), &n);
        ck_assert(d && strstr((const char *)d, "Basic Text SR Document") &&
                  strstr((const char *)d, "Diagnostic Imaging Report") &&
                  strstr((const char *)d, "UNVERIFIED"));
        free(d);
    }
}
END_TEST

/* Text beyond Latin-1 makes the SR UTF-8; ASCII needs no character set. */
START_TEST(test_sr_charsets) {
    const char *st = "1.2.826.0.1.3680043.9.7.2";
    const char *a = make_source("sr_c1.dcm", NULL, "Doe^Jane", "P7", st, "1.2.826.0.1.3680043.9.7.2.1",
                                "1.2.826.0.1.3680043.9.7.2.1.1");
    const char *out = tu_tmp_path("sr_c.dcm");
    char err[512];
    ck_assert_int_eq(write_sr(out, "Clear lungs.", &a, 1, err), MG_OK);
    sr s;
    sr_open(&s, out);
    ck_assert_str_eq(val(&s, -1, 0, 0x00080005u), ""); /* none: ASCII */
    sr_close(&s);
    const char *utf = "Opacity \xe2\x86\x92 right base; \xc3\xa9panchement.";
    ck_assert_int_eq(write_sr(out, utf, &a, 1, err), MG_OK);
    sr_open(&s, out);
    ck_assert_str_eq(val(&s, -1, 0, 0x00080005u), "ISO_IR 192");
    int32_t cs = seq(&s, -1, 0, 0x0040A730u);
    ck_assert_str_eq(content_text(&s, cs, "121071"), utf);
    sr_close(&s);
    if (tu_python("dicom/sr_check.py", "--probe"))
        ck_assert(tu_python("dicom/sr_check.py", "'%s' --name 'Doe^Jane' --study %s --sources 1 "
                                                 "--finding '%s' --model '%s'", out, st, utf,
                            g_model));
    const char *lat = "L\xc3\xa9sion \xc3\xa0 droite.";
    ck_assert_int_eq(write_sr(out, lat, &a, 1, err), MG_OK);
    sr_open(&s, out);
    ck_assert_str_eq(val(&s, -1, 0, 0x00080005u), "ISO_IR 100");
    cs = seq(&s, -1, 0, 0x0040A730u);
    ck_assert_str_eq(content_text(&s, cs, "121071"), "L\xe9sion \xe0 droite.");
    sr_close(&s);
}
END_TEST

START_TEST(test_sr_refusals) {
    const char *st = "1.2.826.0.1.3680043.9.7.3";
    const char *a = make_source("sr_r1.dcm", NULL, "Doe^Jane", "P7", st, "1.2.826.0.1.3680043.9.7.3.1",
                                "1.2.826.0.1.3680043.9.7.3.1.1");
    const char *other_study = make_source("sr_r2.dcm", NULL, "Doe^Jane", "P7", "1.2.826.0.1.3680043.9.7.4",
                                          "1.2.826.0.1.3680043.9.7.4.1", "1.2.826.0.1.3680043.9.7.4.1.1");
    const char *other_pat = make_source("sr_r3.dcm", NULL, "Roe^Rick", "P8", st,
                                        "1.2.826.0.1.3680043.9.7.3.1", "1.2.826.0.1.3680043.9.7.3.1.2");
    const char *bad_cs = make_source("sr_r4.dcm", "ISO_IR 144", "Doe^Jane", "P7", st,
                                     "1.2.826.0.1.3680043.9.7.3.1", "1.2.826.0.1.3680043.9.7.3.1.3");
    const char *out = tu_tmp_path("sr_r.dcm");
    char err[512];
    const char *two[2] = {a, other_study};
    unlink(out);
    ck_assert_int_eq(write_sr(out, "x", two, 2, err), MG_E_INVALID_ARG);
    ck_assert(strstr(err, "another study"));
    two[1] = other_pat;
    ck_assert_int_eq(write_sr(out, "x", two, 2, err), MG_E_INVALID_ARG);
    ck_assert(strstr(err, "another patient"));
    ck_assert_int_eq(write_sr(out, "x", &bad_cs, 1, err), MG_E_UNSUPPORTED);
    ck_assert(strstr(err, "ISO_IR 144"));
    const char *png = "tests/data/images/gray8.png";
    ck_assert_int_eq(write_sr(out, "x", &png, 1, err), MG_E_IMAGE_FORMAT);
    const char *missing = tu_tmp_path("sr_missing.dcm");
    ck_assert_int_eq(write_sr(out, "x", &missing, 1, err), MG_E_IO);
    ck_assert_int_eq(write_sr(out, "bad \xff utf-8", &a, 1, err), MG_E_INVALID_ARG);
    ck_assert_int_eq(write_sr(out, "x", NULL, 1, err), MG_E_INVALID_ARG);
    ck_assert_int_eq(write_sr(out, "x", &a, 0, err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_sr_write(NULL, "x", &a, 1, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_sr_write(out, NULL, &a, 1, NULL, NULL, 0), MG_E_INVALID_ARG);
    ck_assert(!tu_exists(out)); /* nothing written by a refused call */
    mg_sr_params p;
    mg_sr_params_init(&p);
    p.model_name = "a\\b";
    ck_assert_int_eq(mg_sr_write(out, "x", &a, 1, &p, err, sizeof err), MG_E_INVALID_ARG);
    p.model_name = "0123456789012345678901234567890123456789012345678901234567890123456789";
    ck_assert_int_eq(mg_sr_write(out, "x", &a, 1, &p, err, sizeof err), MG_E_INVALID_ARG);
    mg_sr_params_init(&p);
    p.flags = 1;
    ck_assert_int_eq(mg_sr_write(out, "x", &a, 1, &p, err, sizeof err), MG_E_INVALID_ARG);
    struct { mg_sr_params p; uint32_t extra; } big;
    memset(&big, 0, sizeof big);
    mg_sr_params_init(&big.p);
    big.p.struct_size = sizeof big;
    big.extra = 7;
    ck_assert_int_eq(mg_sr_write(out, "x", &a, 1, &big.p, err, sizeof err), MG_E_UNSUPPORTED);
    ck_assert_int_eq(write_sr("/nonexistent-dir/x.dcm", "x", &a, 1, err), MG_E_IO);
    /* every prefix of a source fails cleanly or (past the needed header)
     * works */
    size_t n = 0;
    unsigned char *full = tu_read_file(a, &n);
    const char *cut = tu_tmp_path("sr_cut.dcm");
    int ok = 0;
    for (size_t k = 1; k < n; k += (tu_under_valgrind() ? 37 : 1)) {
        ck_assert_int_eq(tu_write_file(cut, full, k), 0);
        mg_status r = write_sr(out, "x", &cut, 1, err);
        ck_assert_msg(r == MG_OK || r == MG_E_IMAGE_FORMAT || r == MG_E_UNSUPPORTED,
                      "prefix %zu: %d %s", k, r, err);
        ok += r == MG_OK;
    }
    ck_assert_int_lt(ok, (int)n); /* short prefixes lack the UIDs */
    free(full);
}
END_TEST

/* The shared corpus's CR chest radiograph (JPEG 2000, ISO_IR 100), as the
 * CLI's report --sr uses it. */
START_TEST(test_sr_shared_cr) {
    const char *cr = tu_shared_file("dicom/cr_chest/RG1_J2KI.dcm");
    if (!cr) return;
    const char *out = tu_tmp_path("sr_cr.dcm");
    char err[512];
    ck_assert_msg(write_sr(out, "The lungs are clear.", &cr, 1, err) == MG_OK, "%s", err);
    sr s;
    sr_open(&s, out);
    ck_assert_str_eq(val(&s, -1, 0, 0x0020000Du), "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457");
    ck_assert_str_eq(val(&s, -1, 0, 0x00100010u), "CompressedSamples^RG1");
    int32_t ev = seq(&s, -1, 0, 0x0040A375u);
    int32_t rs = seq(&s, ev, 0, 0x00081115u);
    int32_t sops = seq(&s, rs, 0, 0x00081199u);
    ck_assert_str_eq(val(&s, sops, 0, 0x00081155u), "1.3.6.1.4.1.5962.1.1.9.1.3.20040826185059.5457");
    ck_assert_str_eq(val(&s, sops, 0, 0x00081150u), "1.2.840.10008.5.1.4.1.1.1");
    sr_close(&s);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("sr");
    TCase *t = tcase_create("sr");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_sr_structure);
    tcase_add_test(t, test_sr_charsets);
    tcase_add_test(t, test_sr_refusals);
    tcase_add_test(t, test_sr_shared_cr);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
