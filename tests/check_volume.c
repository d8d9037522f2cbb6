/* check_volume.c - 3D volumes: DICOM series assembled by the library
 * against the same series assembled with pydicom + numpy
 * (tests/volume/reference.py: grouped by Series Instance UID, ordered by
 * position along the slice normal, rescaled per slice or frame), NIfTI
 * files read by the library against nibabel, NIfTI files written by the
 * library checked with nibabel (and against dcm2niix's conversion of the
 * same series where dcm2niix is installed); series written for the test
 * with pydicom (shuffled files, Instance Number opposite to position, two
 * series in one folder, a missing slice, oblique, gantry tilt, enhanced
 * multi-frame, no geometry, duplicates, lossless JPEG / JPEG-LS / JPEG 2000
 * copies), the shared CT series, enhanced CT and NIfTI files; hostile
 * series and NIfTI headers that must fail with a status and a message;
 * truncated and bit-flipped files that must never crash; the parameter
 * and info ABI. Tests needing Python, pydicom, nibabel or the shared data
 * skip with a note when those are absent. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "medgemini.h"
#include "testutil.h"

/* Paths are built in fixed buffers that are long enough in practice. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static char g_fix[4096];  /* fixtures written by reference.py make */
static char g_cwd[4096];
static int g_ref;         /* python3 with pydicom, numpy and nibabel, fixtures made */

/* ---- helpers ------------------------------------------------------------- */

/* Runs reference.py with the arguments; 1 when it exits 0. */
static int ref(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int ref(const char *fmt, ...) {
    char args[6144], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    ck_assert(n > 0 && (size_t)n < sizeof args);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/volume/reference.py' %s >/dev/null",
             g_cwd, args);
    return system(cmd) == 0;
}

static const char *fix(const char *rel) {
    static char bufs[4][4400];
    static unsigned slot;
    char *b = bufs[slot++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", g_fix, rel);
    return b;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static mg_volume_info info_of(const mg_volume *v) {
    mg_volume_info in;
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    ck_assert_int_eq(mg_volume_info_get(&in, v), MG_OK);
    return in;
}

static float *voxels_of(const mg_volume *v, size_t *n) {
    size_t need = 0;
    ck_assert_int_eq(mg_volume_copy_voxels(NULL, 0, &need, v), MG_E_BUFFER_TOO_SMALL);
    float *p = malloc((need ? need : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(mg_volume_copy_voxels(p, need, NULL, v), MG_OK);
    *n = need;
    return p;
}

static mg_status load_dir(mg_volume **v, const char *dir, const mg_volume_params *p,
                          char *err, size_t errlen) {
    const char *paths[] = {dir};
    return mg_volume_load_dicom(v, paths, 1, p, err, errlen);
}

static const char *str_or(const mg_volume *v, const char *key) {
    const char *s = mg_volume_get_string(v, key);
    return s ? s : "";
}

/* ---- the reference's output ------------------------------------------------ */

typedef struct expect {
    uint32_t nx, ny, nz;
    double aff[16];
    char uid[128];
    float *v;
    char slices[64][160]; /* "BASENAME FRAME" */
    size_t n_slices;
} expect;

static void read_expect(expect *e, const char *prefix) {
    char path[4400], line[512];
    memset(e, 0, sizeof *e);
    snprintf(path, sizeof path, "%s.txt", prefix);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    ck_assert(fscanf(f, "%u %u %u", &e->nx, &e->ny, &e->nz) == 3);
    for (int i = 0; i < 16; i++) ck_assert(fscanf(f, "%lf", &e->aff[i]) == 1);
    ck_assert(fscanf(f, "%127s", e->uid) == 1);
    if (!fgets(line, sizeof line, f)) line[0] = '\0'; /* rest of the UID line */
    while (e->n_slices < 64 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) snprintf(e->slices[e->n_slices++], sizeof e->slices[0], "%s", line);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s.f32", prefix);
    size_t size = 0;
    e->v = (float *)tu_read_file(path, &size);
    ck_assert_ptr_nonnull(e->v);
    ck_assert_uint_eq(size, (size_t)e->nx * e->ny * e->nz * sizeof(float));
}

/* Our volume against the reference: size, affine, voxels (relative
 * tolerance vtol; 0 = identical) and, for DICOM, the slice order. */
static void compare(const mg_volume *v, const expect *e, double atol, double vtol,
                    const char *what) {
    mg_volume_info in = info_of(v);
    ck_assert_msg(in.nx == e->nx && in.ny == e->ny && in.nz == e->nz,
                  "%s: %ux%ux%u, reference %ux%ux%u", what, in.nx, in.ny, in.nz, e->nx,
                  e->ny, e->nz);
    for (int i = 0; i < 16; i++)
        ck_assert_msg(fabs(in.affine[i] - e->aff[i]) <= atol * fmax(1, fabs(e->aff[i])),
                      "%s: affine[%d] = %.10g, reference %.10g", what, i, in.affine[i],
                      e->aff[i]);
    for (int c = 0; c < 3; c++) {
        double l = sqrt(e->aff[c] * e->aff[c] + e->aff[4 + c] * e->aff[4 + c] +
                        e->aff[8 + c] * e->aff[8 + c]);
        ck_assert_msg(fabs(in.spacing[c] - l) <= atol * fmax(1, l), "%s: spacing[%d]", what, c);
    }
    size_t n;
    float *p = voxels_of(v, &n);
    ck_assert_uint_eq(n, (size_t)e->nx * e->ny * e->nz);
    size_t bad = 0, first = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)p[i] - (double)e->v[i]);
        if (isnan(p[i]) && isnan(e->v[i])) d = 0;
        if (!(d <= vtol * fmax(1, fabs((double)e->v[i])))) {
            if (!bad) first = i;
            bad++;
        }
        if (isfinite(e->v[i])) {
            if (e->v[i] < lo) lo = e->v[i];
            if (e->v[i] > hi) hi = e->v[i];
        }
    }
    ck_assert_msg(bad == 0, "%s: %zu of %zu voxels differ (first at %zu: %g, reference %g)",
                  what, bad, n, first, (double)p[first], (double)e->v[first]);
    ck_assert_msg(in.min_value == lo && in.max_value == hi, "%s: range %g..%g, reference %g..%g",
                  what, in.min_value, in.max_value, (double)lo, (double)hi);
    free(p);
    if (e->n_slices && in.source == MG_VOLUME_SRC_DICOM) {
        const char *s = str_or(v, "slices");
        for (size_t z = 0; z < e->n_slices; z++) {
            const char *nl = strchr(s, '\n');
            ck_assert_msg(nl != NULL, "%s: slice list too short", what);
            char line[4400];
            snprintf(line, sizeof line, "%.*s", (int)(nl - s), s);
            char *tab = strchr(line, '\t');
            ck_assert_ptr_nonnull(tab);
            *tab = ' ';
            char *base = strrchr(line, '/');
            base = base ? base + 1 : line;
            ck_assert_msg(strcmp(base, e->slices[z]) == 0, "%s: slice %zu is '%s', reference '%s'",
                          what, z, base, e->slices[z]);
            s = nl + 1;
        }
        ck_assert_msg(*s == '\0', "%s: slice list too long", what);
    }
}

static void free_expect(expect *e) { free(e->v); }

/* Loads DICOM case `dir` (flags, uid) and compares it with the reference
 * run with the same choice; returns the volume for further checks. */
static mg_volume *check_dicom(const char *dir, uint32_t flags, const char *uid,
                              const char *what) {
    char err[1024], prefix[4400];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("vol_expect"));
    ck_assert_msg(ref("expect '%s' '%s'%s%s%s", dir, prefix, uid ? " --uid " : "",
                      uid ? uid : "", flags & MG_VOLUME_KEEP_DUPLICATES ? " --keep-duplicates" : ""),
                  "reference.py expect failed for %s", what);
    expect e;
    read_expect(&e, prefix);
    mg_volume_params p;
    mg_volume_params_init(&p);
    p.flags = flags;
    p.series_uid = uid;
    mg_volume *v = NULL;
    mg_status st = load_dir(&v, dir, &p, err, sizeof err);
    ck_assert_msg(st == MG_OK, "%s: %s", what, err);
    compare(v, &e, 1e-9, 0, what);
    ck_assert_str_eq(str_or(v, "series_uid"), e.uid);
    free_expect(&e);
    return v;
}

/* ---- parameters and the info ABI ------------------------------------------- */

START_TEST(test_params_abi) {
    mg_volume_params a, b = MG_VOLUME_PARAMS_INIT;
    memset(&a, 0xAB, sizeof a);
    mg_volume_params_init(&a);
    ck_assert_int_eq(memcmp(&a, &b, sizeof a), 0);
    ck_assert_uint_eq(a.struct_size, sizeof a);
    ck_assert_uint_eq(a.max_voxels, (uint64_t)1 << 29);
    mg_volume_params_init(NULL);

    float vox[200];
    for (int i = 0; i < 200; i++) vox[i] = (float)i;
    char err[256];
    mg_volume *v = NULL;
    mg_volume_params p = a;
    p.struct_size = 2;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 10, 10, 2, NULL, NULL, &p, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_ptr_null(v);
    ck_assert_ptr_nonnull(strstr(err, "struct_size"));
    p.struct_size = 1u << 20;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 10, 10, 2, NULL, NULL, &p, err, sizeof err),
                     MG_E_INVALID_ARG);
    p = a;
    p.flags = 0x100;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 10, 10, 2, NULL, NULL, &p, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "flags"));
    p = a;
    p.reserved = 1;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 10, 10, 2, NULL, NULL, &p, err, sizeof err),
                     MG_E_INVALID_ARG);
    p = a;
    p.series_uid = "";
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 10, 10, 2, NULL, NULL, &p, err, sizeof err),
                     MG_E_INVALID_ARG);

    /* An older caller's struct: fields past its size are not read. */
    unsigned char raw[sizeof(mg_volume_params)];
    memset(raw, 0xFF, sizeof raw);
    mg_volume_params *old = (mg_volume_params *)(void *)raw;
    old->struct_size = (uint32_t)offsetof(mg_volume_params, series_uid);
    old->flags = 0;
    old->max_voxels = 100;
    old->max_memory = 0; /* default */
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 10, 10, 1, NULL, NULL, old, err, sizeof err),
                     MG_OK);
    mg_volume_free(v);
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 10, 10, 2, NULL, NULL, old, err, sizeof err),
                     MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "limit of 100"));

    /* info: only the fields struct_size covers are written. */
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 5, 4, 3, NULL, "CT", NULL, err, sizeof err),
                     MG_OK);
    mg_volume_info in;
    memset(&in, 0x5A, sizeof in);
    in.struct_size = (uint32_t)offsetof(mg_volume_info, source);
    ck_assert_int_eq(mg_volume_info_get(&in, v), MG_OK);
    ck_assert_uint_eq(in.nx, 5);
    ck_assert_uint_eq(in.ny, 4);
    ck_assert_uint_eq(in.nz, 3);
    ck_assert_uint_eq((uint32_t)in.source, 0x5A5A5A5Au);
    in.struct_size = 0;
    ck_assert_int_eq(mg_volume_info_get(&in, v), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_info_get(NULL, v), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_info_get(&in, NULL), MG_E_MISUSE);
    mg_volume_free(v);
}
END_TEST

START_TEST(test_from_voxels) {
    const uint32_t nx = 6, ny = 5, nz = 4;
    float vox[6 * 5 * 4];
    for (uint32_t i = 0; i < nx * ny * nz; i++) vox[i] = (float)i * 0.5f - 7;
    vox[3] = NAN;
    vox[4] = INFINITY;
    const double aff[16] = {0, 0, 2.5, -10, 0.7, 0, 0, 20, 0, -0.9, 0, 30, 0, 0, 0, 1};
    char err[256];
    mg_volume *v = NULL;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, aff, "MR", NULL, err, sizeof err),
                     MG_OK);
    mg_volume_info in = info_of(v);
    ck_assert_int_eq(in.source, MG_VOLUME_SRC_VOXELS);
    ck_assert_uint_eq(in.n_files, 0);
    ck_assert_uint_eq(in.n_warnings, 0);
    ck_assert_int_eq(memcmp(in.affine, aff, sizeof aff), 0);
    ck_assert(fabs(in.spacing[0] - 0.7) < 1e-12 && fabs(in.spacing[1] - 0.9) < 1e-12 &&
              fabs(in.spacing[2] - 2.5) < 1e-12);
    ck_assert(in.min_value == -7 && in.max_value == (nx * ny * nz - 1) * 0.5 - 7);
    ck_assert_str_eq(mg_volume_get_string(v, "modality"), "MR");
    ck_assert_ptr_null(mg_volume_get_string(v, "series_uid"));
    ck_assert_ptr_null(mg_volume_get_string(v, "warnings"));
    ck_assert_ptr_null(mg_volume_get_string(v, "no such key"));
    ck_assert_ptr_null(mg_volume_get_string(v, NULL));
    size_t need = 0;
    float small[10];
    ck_assert_int_eq(mg_volume_copy_voxels(small, 10, &need, v), MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(need, nx * ny * nz);
    float back[6 * 5 * 4];
    ck_assert_int_eq(mg_volume_copy_voxels(back, need, &need, v), MG_OK);
    ck_assert_int_eq(memcmp(back, vox, sizeof vox), 0); /* NaN bits too */
    ck_assert_int_eq(mg_volume_copy_voxels(NULL, need, NULL, v), MG_E_INVALID_ARG);
    mg_volume_free(v);

    /* all NaN: no range */
    float nan4[4] = {NAN, NAN, NAN, NAN};
    ck_assert_int_eq(mg_volume_from_voxels(&v, nan4, 2, 2, 1, NULL, NULL, NULL, err, sizeof err),
                     MG_OK);
    in = info_of(v);
    ck_assert(isnan(in.min_value) && isnan(in.max_value));
    ck_assert(in.affine[0] == 1 && in.affine[5] == 1 && in.affine[10] == 1 && in.affine[15] == 1);
    mg_volume_free(v);

    /* bad arguments */
    double bad[16];
    memcpy(bad, aff, sizeof bad);
    bad[5] = NAN;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, bad, NULL, NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "affine"));
    memcpy(bad, aff, sizeof bad);
    bad[14] = 1;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, bad, NULL, NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    const double singular[16] = {1, 2, 0, 0, 2, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, singular, NULL, NULL, err,
                                           sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 0, ny, nz, NULL, NULL, NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_from_voxels(&v, NULL, nx, ny, nz, NULL, NULL, NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_from_voxels(NULL, vox, nx, ny, nz, NULL, NULL, NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, NULL,
                                           "A MODALITY NAME THAT IS FAR TOO LONG", NULL, err,
                                           sizeof err), MG_E_INVALID_ARG);
    /* limits: before any allocation, also for sizes whose product overflows */
    mg_volume_params p;
    mg_volume_params_init(&p);
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, NULL,
                                           NULL, &p, err, sizeof err), MG_E_LIMIT);
    p.max_memory = 100;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, NULL, NULL, &p, err, sizeof err),
                     MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "bytes allowed"));
    ck_assert_ptr_null(v);

    /* handles that are not volumes */
    mg_volume_free(NULL);
    uint32_t fake[64];
    memset(fake, 0, sizeof fake);
    mg_volume *fv = (mg_volume *)(void *)fake;
    ck_assert_int_eq(mg_volume_info_get(&in, fv), MG_E_MISUSE);
    ck_assert_int_eq(mg_volume_copy_voxels(back, 1000, &need, fv), MG_E_MISUSE);
    ck_assert_uint_eq(need, 0);
    ck_assert_ptr_null(mg_volume_get_string(fv, "modality"));
    ck_assert_int_eq(mg_volume_write_nifti(fv, tu_tmp_path("x.nii"), 0, err, sizeof err),
                     MG_E_MISUSE);
    mg_volume_free(fv); /* ignored */
}
END_TEST

/* ---- NIfTI: our writer, our reader ------------------------------------------ */

/* A rotation (about z by a, then x by b) times scales, optionally
 * mirrored in x, plus an offset. */
static void make_affine(double m[16], double a, double b, const double s[3], int mirror,
                        const double off[3]) {
    double ca = cos(a), sa = sin(a), cb = cos(b), sb = sin(b);
    double R[9] = {ca, -sa * cb, sa * sb, sa, ca * cb, -ca * sb, 0, sb, cb};
    memset(m, 0, 16 * sizeof *m);
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 3; c++) m[4 * r + c] = R[3 * r + c] * s[c] * (c == 0 && mirror ? -1 : 1);
        m[4 * r + 3] = off[r];
    }
    m[15] = 1;
}

static void expect_affine_near(const double *got, const double *want, double tol,
                               const char *what) {
    for (int i = 0; i < 16; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * fmax(1, fabs(want[i])),
                      "%s: affine[%d] %.9g vs %.9g", what, i, got[i], want[i]);
}

START_TEST(test_nifti_roundtrip) {
    const uint32_t nx = 7, ny = 5, nz = 3;
    float ints[7 * 5 * 3], reals[7 * 5 * 3];
    uint64_t seed = 42;
    for (uint32_t i = 0; i < nx * ny * nz; i++) {
        ints[i] = (float)((int)(tu_rand_u64(&seed) % 60000) - 30000);
        reals[i] = tu_rand_f32(&seed) * 1000;
    }
    ints[0] = -32768;
    ints[1] = 32767;
    const struct { double a, b, s[3]; int mirror; } geo[] = {
        {0, 0, {1, 1, 1}, 0},
        {0.3, -0.7, {0.8, 1.25, 3.0}, 0},
        {2.0, 1.1, {0.5, 0.5, 5}, 1},
        {3.14159, 0, {2, 3, 4}, 0},      /* 180 degrees: the quaternion's a = 0 */
        {-1.2, 2.9, {0.3, 0.9, 1.7}, 1},
    };
    char err[512];
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        double aff[16];
        const double off[3] = {-100.5 + g, 37.25, 12.0 - 3 * g};
        make_affine(aff, geo[g].a, geo[g].b, geo[g].s, geo[g].mirror, off);
        for (int kind = 0; kind < 3; kind++) {
            const float *src = kind == 1 ? reals : ints;
            mg_volume *v = NULL, *w = NULL;
            ck_assert_int_eq(mg_volume_from_voxels(&v, src, nx, ny, nz, aff, "CT", NULL, err,
                                                   sizeof err), MG_OK);
            const char *path = tu_tmp_path(kind == 2 ? "rt.nii.gz" : "rt.nii");
            uint32_t flags = kind == 2 ? MG_NIFTI_FLOAT32 : 0;
            ck_assert_msg(mg_volume_write_nifti(v, path, flags, err, sizeof err) == MG_OK, "%s",
                          err);
            ck_assert_msg(mg_volume_load_nifti(&w, path, NULL, err, sizeof err) == MG_OK, "%s",
                          err);
            mg_volume_info in = info_of(w);
            ck_assert_int_eq(in.source, MG_VOLUME_SRC_NIFTI);
            ck_assert(in.nx == nx && in.ny == ny && in.nz == nz);
            expect_affine_near(in.affine, aff, 2e-6, "sform");
            size_t n;
            float *back = voxels_of(w, &n);
            ck_assert_int_eq(memcmp(back, src, sizeof ints), 0);
            free(back);
            ck_assert_ptr_nonnull(strstr(str_or(w, "description"), "CT"));
            mg_volume_free(w);
            if (kind != 2) {
                /* The data type chosen, then the qform alone (sform_code
                 * set to 0 in the file) gives the same affine. */
                size_t size;
                unsigned char *d = tu_read_file(path, &size);
                ck_assert_ptr_nonnull(d);
                ck_assert_uint_eq(size, 352 + nx * ny * nz * (kind == 0 ? 2 : 4));
                ck_assert_int_eq(d[70] | d[71] << 8, kind == 0 ? 4 : 16);
                d[254] = d[255] = 0;
                ck_assert_int_eq(tu_write_file(path, d, size), 0);
                free(d);
                ck_assert_msg(mg_volume_load_nifti(&w, path, NULL, err, sizeof err) == MG_OK,
                              "%s", err);
                in = info_of(w);
                expect_affine_near(in.affine, aff, 2e-6, "qform");
                mg_volume_free(w);
            }
            mg_volume_free(v);
        }
    }
    /* 40000 does not fit int16: float32 */
    float big[2] = {1, 40000};
    mg_volume *v = NULL;
    ck_assert_int_eq(mg_volume_from_voxels(&v, big, 2, 1, 1, NULL, NULL, NULL, err, sizeof err),
                     MG_OK);
    const char *path = tu_tmp_path("big.nii");
    ck_assert_int_eq(mg_volume_write_nifti(v, path, 0, err, sizeof err), MG_OK);
    size_t size;
    unsigned char *d = tu_read_file(path, &size);
    ck_assert_int_eq(d[70], 16);
    free(d);
    /* errors */
    ck_assert_int_eq(mg_volume_write_nifti(v, "/nonexistent-dir/x.nii", 0, err, sizeof err),
                     MG_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir/x.nii"));
    ck_assert_int_eq(mg_volume_write_nifti(v, path, 0x80, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_write_nifti(v, NULL, 0, err, sizeof err), MG_E_INVALID_ARG);
    mg_volume_free(v);
    float *row = calloc(40000, sizeof *row);
    ck_assert_int_eq(mg_volume_from_voxels(&v, row, 40000, 1, 1, NULL, NULL, NULL, err, sizeof err),
                     MG_OK);
    ck_assert_int_eq(mg_volume_write_nifti(v, path, 0, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "32767"));
    mg_volume_free(v);
    free(row);
}
END_TEST

/* ---- NIfTI headers that lie ------------------------------------------------- */

typedef struct nii {
    unsigned char h[352];
} nii;

static void w16(unsigned char *p, int v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void w32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void wf(unsigned char *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    w32(p, u);
}

/* A valid NIfTI-1 header: nx x ny x nz int16, 1 mm, sform identity. */
static nii nii_header(int nx, int ny, int nz) {
    nii n;
    memset(&n, 0, sizeof n);
    w32(n.h, 348);
    const int dim[8] = {3, nx, ny, nz, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++) w16(n.h + 40 + 2 * i, dim[i]);
    w16(n.h + 70, 4);
    w16(n.h + 72, 16);
    for (int i = 0; i < 8; i++) wf(n.h + 76 + 4 * i, 1);
    wf(n.h + 108, 352);
    w16(n.h + 254, 1);
    wf(n.h + 280, 1);
    wf(n.h + 296 + 4, 1);
    wf(n.h + 312 + 8, 1);
    memcpy(n.h + 344, "n+1", 4);
    return n;
}

/* Writes header + `data_bytes` bytes of data (pattern) and loads it. */
static mg_status load_nii(const nii *n, size_t data_bytes, int gz, char *err, size_t errlen) {
    const char *path = tu_tmp_path(gz ? "h.nii.gz" : "h.nii");
    unsigned char *buf = malloc(352 + data_bytes);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, n->h, 352);
    for (size_t i = 0; i < data_bytes; i++) buf[352 + i] = (unsigned char)(i * 7);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, buf, (unsigned)(352 + data_bytes)), (int)(352 + data_bytes));
        gzclose(f);
    } else {
        ck_assert_int_eq(tu_write_file(path, buf, 352 + data_bytes), 0);
    }
    free(buf);
    mg_volume *v = NULL;
    mg_status st = mg_volume_load_nifti(&v, path, NULL, err, errlen);
    if (st == MG_OK) {
        ck_assert_ptr_nonnull(v);
        mg_volume_free(v);
    } else {
        ck_assert_ptr_null(v);
        ck_assert_msg(err[0] != '\0', "status %d without a message", (int)st);
    }
    return st;
}


typedef struct patch {
    int off, kind;  /* kind 2: int16, 4: float32, 0: none */
    double value;
} patch;

START_TEST(test_nifti_hostile) {
    char err[512];
    nii n = nii_header(4, 3, 2);
    ck_assert_msg(load_nii(&n, 48, 0, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_msg(load_nii(&n, 48, 1, err, sizeof err) == MG_OK, "%s", err);
    static const struct {
        const char *what;
        patch p[3];
        mg_status want;
        const char *msg;
    } lies[] = {
        {"dim[0] = 0", {{40, 2, 0}}, MG_E_IMAGE_FORMAT, "dim[0]"},
        {"dim[0] = 8", {{40, 2, 8}}, MG_E_IMAGE_FORMAT, "dim[0]"},
        {"negative size", {{44, 2, -3}}, MG_E_IMAGE_FORMAT, "dim[2]"},
        {"zero size", {{46, 2, 0}}, MG_E_IMAGE_FORMAT, "dim[3]"},
        {"huge sizes", {{42, 2, 32767}, {44, 2, 32767}, {46, 2, 32767}}, MG_E_LIMIT, "limit"},
        {"data past the end", {{46, 2, 100}}, MG_E_IMAGE_FORMAT, "truncated"},
        {"4D data past the end (plain files only)", {{40, 2, 4}, {48, 2, 1000}},
         MG_E_IMAGE_FORMAT, "truncated"},
        {"vox_offset inside the header", {{108, 4, 100}}, MG_E_IMAGE_FORMAT, "vox_offset"},
        {"vox_offset past the end", {{108, 4, 1e6}}, MG_E_IMAGE_FORMAT, "truncated"},
        {"vox_offset NaN", {{108, 4, NAN}}, MG_E_IMAGE_FORMAT, "vox_offset"},
        {"vox_offset fractional", {{108, 4, 352.5}}, MG_E_IMAGE_FORMAT, "vox_offset"},
        {"complex data", {{70, 2, 32}}, MG_E_UNSUPPORTED, "complex64"},
        {"RGB data", {{70, 2, 128}}, MG_E_UNSUPPORTED, "RGB24"},
        {"unknown data type", {{70, 2, 3}}, MG_E_IMAGE_FORMAT, "unknown NIfTI data type"},
        {"float64 data past the end", {{70, 2, 64}}, MG_E_IMAGE_FORMAT, "truncated"},
        {"sform NaN", {{280, 4, NAN}}, MG_E_IMAGE_FORMAT, "sform"},
        {"sform singular", {{300, 4, 0}}, MG_E_IMAGE_FORMAT, "sform"},
        {"slope with a NaN intercept", {{112, 4, 2}, {116, 4, NAN}}, MG_E_IMAGE_FORMAT,
         "scl_inter"},
        {"qform with NaN spacing", {{254, 2, 0}, {252, 2, 1}, {80, 4, NAN}}, MG_E_IMAGE_FORMAT,
         "pixdim[1]"},
        {"qform with negative spacing", {{254, 2, 0}, {252, 2, 1}, {84, 4, -2}},
         MG_E_IMAGE_FORMAT, "pixdim[2]"},
        {"qform with a NaN quaternion", {{254, 2, 0}, {252, 2, 1}, {260, 4, NAN}},
         MG_E_IMAGE_FORMAT, "quaternion"},
        {"pixdim only, zero spacing", {{254, 2, 0}, {88, 4, 0}}, MG_E_IMAGE_FORMAT, "pixdim[3]"},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        nii m = nii_header(4, 3, 2);
        for (int k = 0; k < 3; k++) {
            const patch *pt = &lies[i].p[k];
            if (pt->kind == 2) w16(m.h + pt->off, (int)pt->value);
            else if (pt->kind == 4) wf(m.h + pt->off, (float)pt->value);
        }
        for (int gz = 0; gz < 2; gz++) {
            if (gz && strstr(lies[i].what, "plain files only")) {
                /* compressed: only the first volume is read */
                ck_assert_int_eq(load_nii(&m, 48, gz, err, sizeof err), MG_OK);
                continue;
            }
            mg_status st = load_nii(&m, 48, gz, err, sizeof err);
            ck_assert_msg(st == lies[i].want && strstr(err, lies[i].msg),
                          "%s (%s): status %d '%s'", lies[i].what, gz ? "gz" : "plain", (int)st,
                          err);
        }
    }
    /* magic and size fields */
    nii m = nii_header(4, 3, 2);
    memcpy(m.h + 344, "ni1", 4);
    ck_assert_int_eq(load_nii(&m, 48, 0, err, sizeof err), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "two-file"));
    memset(m.h + 344, 0, 4);
    ck_assert_int_eq(load_nii(&m, 48, 0, err, sizeof err), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "Analyze"));
    m = nii_header(4, 3, 2);
    w32(m.h, 0);
    ck_assert_int_eq(load_nii(&m, 48, 1, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "not a NIfTI file"));
    /* the header read in the other byte order: 1024 x 768 x 512 */
    m = nii_header(4, 3, 2);
    m.h[0] = 0; m.h[1] = 0; m.h[2] = 0x01; m.h[3] = 0x5C;
    ck_assert_int_ne(load_nii(&m, 48, 0, err, sizeof err), MG_OK);
    /* max_voxels */
    mg_volume_params p;
    mg_volume_params_init(&p);
    p.max_voxels = 10;
    mg_volume *v = NULL;
    ck_assert_int_eq(load_nii(&n, 48, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_volume_load_nifti(&v, tu_tmp_path("h.nii"), &p, err, sizeof err),
                     MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "limit of 10"));
    /* paths */
    ck_assert_int_eq(mg_volume_load_nifti(&v, "/nonexistent.nii", NULL, err, sizeof err), MG_E_IO);
    ck_assert_int_eq(mg_volume_load_nifti(&v, ".", NULL, err, sizeof err), MG_E_IO);
    ck_assert_int_eq(mg_volume_load_nifti(&v, NULL, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_load_nifti(NULL, "x.nii", NULL, err, sizeof err), MG_E_INVALID_ARG);
    const char *empty = tu_tmp_path("empty.nii");
    ck_assert_int_eq(tu_write_file(empty, "", 0), 0);
    ck_assert_int_eq(mg_volume_load_nifti(&v, empty, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_int_eq(tu_write_file(empty, "\x5c\x01\0\0abc", 7), 0);
    ck_assert_int_eq(mg_volume_load_nifti(&v, empty, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "truncated"));

    /* NIfTI-2: sizes past 32 bits, negative sizes */
    unsigned char h2[544 + 16];
    memset(h2, 0, sizeof h2);
    w32(h2, 540);
    memcpy(h2 + 4, "n+2\0\r\n\032\n", 8);
    w16(h2 + 12, 2); /* uint8 */
    const int64_t dims2[8] = {3, 2, 2, (int64_t)1 << 33, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++)
        for (int b = 0; b < 8; b++) h2[16 + 8 * i + b] = (unsigned char)((uint64_t)dims2[i] >> (8 * b));
    for (int i = 0; i < 8; i++) {
        double one = 1;
        memcpy(h2 + 104 + 8 * i, &one, 8);
    }
    h2[168] = 0x20; h2[169] = 0x02; /* vox_offset 544 */
    const char *p2 = tu_tmp_path("n2.nii");
    ck_assert_int_eq(tu_write_file(p2, h2, sizeof h2), 0);
    ck_assert_int_eq(mg_volume_load_nifti(&v, p2, NULL, err, sizeof err), MG_E_LIMIT);
    h2[16 + 8 * 3 + 7] = 0x80; /* negative */
    ck_assert_int_eq(tu_write_file(p2, h2, sizeof h2), 0);
    ck_assert_int_eq(mg_volume_load_nifti(&v, p2, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    memset(h2 + 16 + 8 * 3, 0, 8);
    h2[16 + 8 * 3] = 4; /* 2x2x4 uint8 = 16 bytes: there */
    ck_assert_int_eq(tu_write_file(p2, h2, sizeof h2), 0);
    ck_assert_msg(mg_volume_load_nifti(&v, p2, NULL, err, sizeof err) == MG_OK, "%s", err);
    mg_volume_free(v);
    ck_assert_int_eq(tu_write_file(p2, h2, 300), 0);
    ck_assert_int_eq(mg_volume_load_nifti(&v, p2, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "header truncated"));
}
END_TEST

/* Every prefix (in steps) and seeded byte flips of a written .nii.gz and
 * .nii: an error with a message or a volume, never a crash. */
START_TEST(test_nifti_prefixes_and_flips) {
    const uint32_t nx = 9, ny = 7, nz = 5;
    float vox[9 * 7 * 5];
    uint64_t seed = 7;
    for (uint32_t i = 0; i < nx * ny * nz; i++) vox[i] = (float)(tu_rand_u64(&seed) % 3000);
    char err[512];
    mg_volume *v = NULL;
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, NULL, NULL, NULL, err, sizeof err),
                     MG_OK);
    const int vg = tu_under_valgrind();
    for (int gz = 0; gz < 2; gz++) {
        const char *src = tu_tmp_path(gz ? "pf.nii.gz" : "pf.nii");
        const char *dst = tu_tmp_path(gz ? "pf_cut.nii.gz" : "pf_cut.nii");
        ck_assert_int_eq(mg_volume_write_nifti(v, src, 0, err, sizeof err), MG_OK);
        size_t size;
        unsigned char *d = tu_read_file(src, &size);
        ck_assert_ptr_nonnull(d);
        size_t step = vg ? 97 : 5;
        for (size_t k = 0; k < size; k += step) {
            mg_volume *w = NULL;
            ck_assert_int_eq(tu_write_file(dst, d, k), 0);
            err[0] = '\0';
            mg_status st = mg_volume_load_nifti(&w, dst, NULL, err, sizeof err);
            ck_assert_msg(st != MG_OK, "prefix of %zu of %zu bytes loaded", k, size);
            ck_assert_msg(err[0], "prefix %zu: no message", k);
            ck_assert_ptr_null(w);
        }
        int rounds = vg ? 20 : 300;
        for (int r = 0; r < rounds; r++) {
            unsigned char *c = malloc(size);
            memcpy(c, d, size);
            int flips = 1 + (int)(tu_rand_u64(&seed) % 4);
            for (int f = 0; f < flips; f++) {
                size_t at = (tu_rand_u64(&seed) % 2) ? tu_rand_u64(&seed) % (size < 360 ? size : 360)
                                                      : tu_rand_u64(&seed) % size;
                c[at] ^= (unsigned char)(1u << (tu_rand_u64(&seed) % 8));
            }
            ck_assert_int_eq(tu_write_file(dst, c, size), 0);
            free(c);
            mg_volume *w = NULL;
            err[0] = '\0';
            mg_status st = mg_volume_load_nifti(&w, dst, NULL, err, sizeof err);
            if (st == MG_OK) mg_volume_free(w);
            else ck_assert_msg(err[0], "flip round %d: status %d without a message", r, (int)st);
        }
        free(d);
    }
    mg_volume_free(v);
}
END_TEST

/* ---- NIfTI against nibabel ---------------------------------------------------- */

static void check_nifti_file(const char *path, const char *what) {
    char prefix[4400], err[512];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("nii_expect"));
    ck_assert_msg(ref("nifti '%s' '%s'", path, prefix), "reference.py nifti failed on %s", path);
    expect e;
    read_expect(&e, prefix);
    mg_volume *v = NULL;
    mg_status st = mg_volume_load_nifti(&v, path, NULL, err, sizeof err);
    ck_assert_msg(st == MG_OK, "%s: %s", what, err);
    /* float32 header fields: nibabel's double arithmetic and ours agree
     * to a few ulp */
    compare(v, &e, 1e-5, 1e-6, what);
    mg_volume_free(v);
    free_expect(&e);
}

START_TEST(test_nifti_shared) {
    const char *root = tu_shared_data();
    char dir[4200];
    if (!root) { fprintf(stderr, "  skipped: shared data absent\n"); return; }
    snprintf(dir, sizeof dir, "%s/nifti", root);
    if (!exists(dir)) { fprintf(stderr, "  skipped: shared NIfTI data absent\n"); return; }
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with nibabel absent\n"); return; }
    char cmd[4400], line[4400];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.nii*' | sort", dir);
    FILE *ls = popen(cmd, "r");
    ck_assert_ptr_nonnull(ls);
    int n = 0;
    while (fgets(line, sizeof line, ls)) {
        line[strcspn(line, "\n")] = '\0';
        if (tu_under_valgrind() && strstr(line, "ct_head_niivue")) continue; /* the largest */
        check_nifti_file(line, line);
        n++;
    }
    pclose(ls);
    ck_assert_int_ge(n, 5);
    fprintf(stderr, "  %d shared NIfTI files equal to nibabel's reading\n", n);
}
END_TEST

START_TEST(test_nifti_generated) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    char man[4400], line[4400], name[256], kind[32], path[4096], err[512];
    snprintf(man, sizeof man, "%s/manifest.txt", g_fix);
    FILE *f = fopen(man, "r");
    ck_assert_ptr_nonnull(f);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%255s %31s %4095s", name, kind, path) != 3 || strcmp(kind, "nifti"))
            continue;
        check_nifti_file(path, name);
        n++;
    }
    fclose(f);
    ck_assert_int_ge(n, 15);
    /* the 5D file: the first volume, with a warning */
    mg_volume *v = NULL;
    ck_assert_int_eq(mg_volume_load_nifti(&v, fix("nifti/five_d.nii.gz"), NULL, err, sizeof err),
                     MG_OK);
    ck_assert_uint_eq(info_of(v).n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "first of 6 volumes"));
    mg_volume_free(v);
}
END_TEST

/* ---- DICOM series against pydicom ---------------------------------------------- */

START_TEST(test_dicom_cases) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    char err[1024];
    mg_volume *v;
    mg_volume_info in;

    /* shuffled file names; a text file in the folder is skipped */
    v = check_dicom(fix("dicom/shuffled"), 0, NULL, "shuffled");
    in = info_of(v);
    ck_assert_int_eq(in.source, MG_VOLUME_SRC_DICOM);
    ck_assert_uint_eq(in.n_files, 7);
    ck_assert_uint_eq(in.n_skipped, 1);
    ck_assert_uint_eq(in.n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "notes.txt': not DICOM"));
    ck_assert_str_eq(str_or(v, "modality"), "CT");
    ck_assert(in.min_value < -1500 && in.max_value > -1300); /* intercept -1024 applied */
    mg_volume_free(v);

    /* Instance Numbers opposite to the positions; sagittal; implicit VR */
    v = check_dicom(fix("dicom/reverse_instance"), 0, NULL, "reverse_instance");
    in = info_of(v);
    ck_assert_uint_eq(in.n_warnings, 0);
    /* z runs along the normal (-1, 0, 0): x decreases 3 mm a slice */
    ck_assert(fabs(in.affine[2] + 3) < 1e-9 && fabs(in.affine[6]) < 1e-9);
    mg_volume_free(v);

    /* two series: the larger by default, the other by UID */
    v = check_dicom(fix("dicom/two_series"), 0, NULL, "two_series (default)");
    in = info_of(v);
    ck_assert_uint_eq(in.nz, 5);
    ck_assert_uint_eq(in.n_skipped, 3);
    ck_assert_str_eq(str_or(v, "modality"), "MR");
    const char *w = strstr(str_or(v, "warnings"), "other series ");
    ck_assert_ptr_nonnull(w);
    char other[80];
    ck_assert_int_eq(sscanf(w + strlen("other series "), "%79[0-9.]", other), 1);
    mg_volume_free(v);
    v = check_dicom(fix("dicom/two_series"), 0, other, "two_series (by UID)");
    in = info_of(v);
    ck_assert_uint_eq(in.nz, 3);
    ck_assert_str_eq(str_or(v, "modality"), "CT");
    ck_assert_str_eq(str_or(v, "series_uid"), other);
    mg_volume_free(v);
    mg_volume_params p;
    mg_volume_params_init(&p);
    p.flags = MG_VOLUME_STRICT_SERIES;
    v = NULL;
    ck_assert_int_eq(load_dir(&v, fix("dicom/two_series"), &p, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "2 series"));
    ck_assert_ptr_null(v);
    p.series_uid = other; /* a UID makes the choice: fine */
    ck_assert_int_eq(load_dir(&v, fix("dicom/two_series"), &p, err, sizeof err), MG_OK);
    mg_volume_free(v);
    mg_volume_params_init(&p);
    p.series_uid = "1.2.3.4";
    ck_assert_int_eq(load_dir(&v, fix("dicom/two_series"), &p, err, sizeof err), MG_E_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err, "1.2.3.4"));
    ck_assert_ptr_nonnull(strstr(err, other));

    /* a missing slice: a warning, or an error when asked */
    v = check_dicom(fix("dicom/gap"), 0, NULL, "gap");
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "uneven slice spacing"));
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "median 1.25 mm"));
    mg_volume_free(v);
    mg_volume_params_init(&p);
    p.flags = MG_VOLUME_STRICT_SPACING;
    ck_assert_int_eq(load_dir(&v, fix("dicom/gap"), &p, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "missing slices"));

    /* oblique, unsigned with a fractional slope */
    v = check_dicom(fix("dicom/oblique"), 0, NULL, "oblique");
    ck_assert_uint_eq(info_of(v).n_warnings, 0);
    mg_volume_free(v);

    /* gantry tilt: reported, the affine shears */
    v = check_dicom(fix("dicom/tilt"), 0, NULL, "tilt");
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "gantry tilt"));
    in = info_of(v);
    ck_assert(fabs(in.affine[6] - 0.5) < 1e-9 && fabs(in.affine[10] - 2) < 1e-9);
    mg_volume_free(v);

    /* enhanced multi-frame CT: frames out of order, per-frame rescale */
    v = check_dicom(fix("dicom/enhanced"), 0, NULL, "enhanced");
    in = info_of(v);
    ck_assert_uint_eq(in.nz, 5);
    ck_assert_uint_eq(in.n_files, 1);
    mg_volume_free(v);
    /* the file named on its own */
    v = check_dicom(fix("dicom/enhanced/enhanced_ct.dcm"), 0, NULL, "enhanced (file)");
    mg_volume_free(v);

    /* no geometry: Instance Number order */
    v = check_dicom(fix("dicom/noposition"), 0, NULL, "noposition");
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "ordered by Instance Number"));
    mg_volume_free(v);

    /* duplicates: refused, or the first kept */
    mg_volume_params_init(&p);
    ck_assert_int_eq(load_dir(&v, fix("dicom/duplicate"), &p, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "1 slice shares a position"));
    ck_assert_ptr_nonnull(strstr(err, "zz_duplicate.dcm"));
    v = check_dicom(fix("dicom/duplicate"), MG_VOLUME_KEEP_DUPLICATES, NULL, "duplicate (kept)");
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "dropped 1 slice"));
    ck_assert_ptr_null(strstr(str_or(v, "slices"), "zz_duplicate"));
    ck_assert_uint_eq(info_of(v).n_skipped, 1);
    mg_volume_free(v);
}
END_TEST

/* Files named one by one (in another order), folders searched recursively,
 * and the limits. */
START_TEST(test_dicom_paths_and_limits) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    char err[1024], cmd[4400], line[4400];
    snprintf(cmd, sizeof cmd, "ls -r '%s'/*.dcm", fix("dicom/shuffled"));
    FILE *ls = popen(cmd, "r");
    ck_assert_ptr_nonnull(ls);
    char *names[16];
    size_t n = 0;
    while (n < 16 && fgets(line, sizeof line, ls)) {
        line[strcspn(line, "\n")] = '\0';
        names[n++] = strdup(line);
    }
    pclose(ls);
    ck_assert_uint_eq(n, 7);
    mg_volume *a = NULL, *b = NULL;
    ck_assert_int_eq(mg_volume_load_dicom(&a, (const char *const *)names, n, NULL, err, sizeof err),
                     MG_OK);
    ck_assert_int_eq(load_dir(&b, fix("dicom/shuffled"), NULL, err, sizeof err), MG_OK);
    size_t na, nb;
    float *va = voxels_of(a, &na), *vb = voxels_of(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(va, vb, na * sizeof *va), 0);
    ck_assert_uint_eq(info_of(a).n_skipped, 0);
    ck_assert_str_eq(str_or(a, "slices"), str_or(b, "slices"));
    free(va);
    free(vb);
    mg_volume_free(a);
    mg_volume_free(b);

    /* a named file must be a DICOM image */
    const char *two[] = {names[0], fix("dicom/shuffled/notes.txt")};
    ck_assert_int_eq(mg_volume_load_dicom(&a, two, 2, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "notes.txt' is not a DICOM file"));
    const char *missing[] = {fix("dicom/no-such-folder")};
    ck_assert_int_eq(mg_volume_load_dicom(&a, missing, 1, NULL, err, sizeof err), MG_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "no-such-folder"));
    ck_assert_int_eq(mg_volume_load_dicom(&a, NULL, 1, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_load_dicom(&a, two, 0, NULL, err, sizeof err), MG_E_INVALID_ARG);
    const char *nul[] = {NULL};
    ck_assert_int_eq(mg_volume_load_dicom(&a, nul, 1, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_load_dicom(NULL, two, 1, NULL, err, sizeof err), MG_E_INVALID_ARG);
    for (size_t i = 0; i < n; i++) free(names[i]);

    /* recursive: the parent folder holds every case; a UID picks one */
    mg_volume_params p;
    mg_volume_params_init(&p);
    ck_assert_int_eq(load_dir(&a, fix("dicom"), &p, err, sizeof err), MG_E_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err, "no DICOM image among 0 file"));
    mg_volume *o = NULL;
    ck_assert_int_eq(load_dir(&o, fix("dicom/oblique"), NULL, err, sizeof err), MG_OK);
    p.flags = MG_VOLUME_RECURSIVE;
    p.series_uid = mg_volume_get_string(o, "series_uid");
    ck_assert_msg(load_dir(&a, fix("dicom"), &p, err, sizeof err) == MG_OK, "%s", err);
    va = voxels_of(a, &na);
    vb = voxels_of(o, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(va, vb, na * sizeof *va), 0);
    ck_assert_uint_gt(info_of(a).n_skipped, 30);
    free(va);
    free(vb);
    mg_volume_free(a);
    mg_volume_free(o);

    /* limits, checked before the voxels are allocated */
    mg_volume_params_init(&p);
    p.max_voxels = 24 * 20 * 6;
    ck_assert_int_eq(load_dir(&a, fix("dicom/shuffled"), &p, err, sizeof err), MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "24x20x7"));
    mg_volume_params_init(&p);
    p.max_memory = 24 * 20 * 7 * 4;
    ck_assert_int_eq(load_dir(&a, fix("dicom/shuffled"), &p, err, sizeof err), MG_E_LIMIT);
    mg_volume_params_init(&p);
    p.max_files = 3;
    ck_assert_int_eq(load_dir(&a, fix("dicom/shuffled"), &p, err, sizeof err), MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "max_files"));
    ck_assert_ptr_null(a);
}
END_TEST

START_TEST(test_dicom_compressed) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    static const char *cases[] = {"compressed_jpegll", "compressed_jpegls", "compressed_j2k"};
    char prefix[4400], err[1024];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("vol_expect_plain"));
    ck_assert(ref("expect '%s' '%s'", fix("dicom/shuffled"), prefix));
    expect e;
    read_expect(&e, prefix);
    int n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!exists(fix(cases[i]))) {
            char d[4400];
            snprintf(d, sizeof d, "dicom/%s", cases[i]);
            if (!exists(fix(d))) {
                fprintf(stderr, "  skipped %s: its tool (dcmtk, GDCM) is absent\n", cases[i]);
                continue;
            }
            mg_volume *v = NULL;
            mg_status st = load_dir(&v, fix(d), NULL, err, sizeof err);
            ck_assert_msg(st == MG_OK, "%s: %s", cases[i], err);
            compare(v, &e, 1e-9, 0, cases[i]);
            mg_volume_free(v);
            n++;
        }
    }
    free_expect(&e);
    fprintf(stderr, "  %d compressed copies equal to the uncompressed series\n", n);
}
END_TEST

START_TEST(test_dicom_hostile) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    static const struct {
        const char *dir;
        mg_status want;
        const char *msg;
    } cases[] = {
        {"hostile/mismatched_size", MG_E_IMAGE_FORMAT, "differ in size"},
        {"hostile/nan_spacing", MG_E_IMAGE_FORMAT, "Pixel Spacing is malformed"},
        {"hostile/nan_position", MG_E_IMAGE_FORMAT, "Image Position (Patient) is malformed"},
        {"hostile/mixed_orientation", MG_E_IMAGE_FORMAT, "differ in orientation"},
        {"hostile/off_line", MG_E_IMAGE_FORMAT, "do not lie on one line"},
        {"hostile/bad_orientation", MG_E_IMAGE_FORMAT, "not two orthogonal unit vectors"},
        {"hostile/absurd_frames", MG_E_IMAGE_FORMAT, "2000000000 frame(s)"},
        {"hostile/short_pixels", MG_E_IMAGE_FORMAT, "Pixel Data has"},
        {"hostile/truncated_frame", MG_E_IMAGE_FORMAT, "JPEG-LS"},
        {"hostile/truncated_j2k", MG_E_IMAGE_FORMAT, "JPEG 2000"},
        {"hostile/empty", MG_E_NOT_FOUND, "no DICOM image among 1 file(s) (1 not DICOM"},
    };
    char err[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!exists(fix(cases[i].dir))) {
            fprintf(stderr, "  skipped %s: not made (tool absent)\n", cases[i].dir);
            continue;
        }
        mg_volume *v = NULL;
        err[0] = '\0';
        mg_status st = load_dir(&v, fix(cases[i].dir), NULL, err, sizeof err);
        ck_assert_msg(st == cases[i].want && strstr(err, cases[i].msg),
                      "%s: status %d '%s'", cases[i].dir, (int)st, err);
        ck_assert_ptr_null(v);
    }
}
END_TEST

/* Prefixes and byte flips of one file of a series (native and JPEG-LS):
 * the folder loads or fails with a message, never crashes. */
static void mangle_series(const char *src_dir, const char *tag, uint64_t seed) {
    char cmd[8800], dir[4400], victim[4400], err[1024];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path(tag));
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/*.dcm '%s'/", dir, dir,
             src_dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "ls '%s'/*.dcm | head -1", dir);
    FILE *ls = popen(cmd, "r");
    ck_assert(fgets(victim, sizeof victim, ls) != NULL);
    pclose(ls);
    victim[strcspn(victim, "\n")] = '\0';
    size_t size;
    unsigned char *orig = tu_read_file(victim, &size);
    ck_assert_ptr_nonnull(orig);
    const int vg = tu_under_valgrind();
    size_t step = size / (vg ? 7 : 61) + 1;
    int n_ok = 0, n_err = 0;
    for (size_t k = 0; k < size; k += step) {
        ck_assert_int_eq(tu_write_file(victim, orig, k), 0);
        mg_volume *v = NULL;
        err[0] = '\0';
        mg_status st = load_dir(&v, dir, NULL, err, sizeof err);
        if (st == MG_OK) { n_ok++; mg_volume_free(v); }
        else { n_err++; ck_assert_msg(err[0], "%s prefix %zu: no message", tag, k); }
    }
    int rounds = vg ? 8 : 120;
    for (int r = 0; r < rounds; r++) {
        unsigned char *c = malloc(size);
        memcpy(c, orig, size);
        int flips = 1 + (int)(tu_rand_u64(&seed) % 6);
        for (int f = 0; f < flips; f++) {
            size_t at = tu_rand_u64(&seed) % size;
            c[at] ^= (unsigned char)(1u << (tu_rand_u64(&seed) % 8));
        }
        ck_assert_int_eq(tu_write_file(victim, c, size), 0);
        free(c);
        mg_volume *v = NULL;
        err[0] = '\0';
        mg_status st = load_dir(&v, dir, NULL, err, sizeof err);
        if (st == MG_OK) { n_ok++; mg_volume_free(v); }
        else { n_err++; ck_assert_msg(err[0], "%s flips %d: no message", tag, r); }
    }
    free(orig);
    fprintf(stderr, "  %s: %d loaded, %d refused with a message\n", tag, n_ok, n_err);
}

START_TEST(test_dicom_mangled) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    mangle_series(fix("dicom/shuffled"), "mangle_native", 11);
    mangle_series(fix("dicom/enhanced"), "mangle_enhanced", 12);
    if (exists(fix("dicom/compressed_jpegls")))
        mangle_series(fix("dicom/compressed_jpegls"), "mangle_jpegls", 13);
    if (exists(fix("dicom/compressed_j2k")) && !tu_under_valgrind())
        mangle_series(fix("dicom/compressed_j2k"), "mangle_j2k", 14);
}
END_TEST

/* ---- the shared CT series and enhanced CT ----------------------------------------- */

START_TEST(test_dicom_shared) {
    const char *root = tu_shared_data();
    if (!root) { fprintf(stderr, "  skipped: shared data absent\n"); return; }
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    char dir[4200], err[1024];
    snprintf(dir, sizeof dir, "%s/dicom/ct_series_3slice", root);
    if (!exists(dir)) { fprintf(stderr, "  skipped: ct_series_3slice absent\n"); return; }
    mg_volume *v = check_dicom(dir, 0, NULL, "ct_series_3slice");
    mg_volume_info in = info_of(v);
    ck_assert(in.nx == 512 && in.ny == 512 && in.nz == 3);
    ck_assert_uint_eq(in.n_skipped, 1); /* the segmentation */
    ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "Segmentation"));
    ck_assert(fabs(in.spacing[0] - 0.810547) < 1e-9 && fabs(in.spacing[2] - 1.0) < 1e-6);
    ck_assert(fabs(in.affine[11] + 128.69) < 1e-4); /* the lowest slice first */
    ck_assert(in.min_value == -3024 && in.max_value == 1381);
    /* named in another order: the same volume */
    char f1[4300], f2[4300], f3[4300], seg[4300];
    snprintf(f1, sizeof f1, "%s/02.dcm", dir);
    snprintf(f2, sizeof f2, "%s/01.dcm", dir);
    snprintf(f3, sizeof f3, "%s/03.dcm", dir);
    snprintf(seg, sizeof seg, "%s/liver_seg.dcm", dir);
    const char *files[] = {f1, f2, f3};
    mg_volume *w = NULL;
    ck_assert_int_eq(mg_volume_load_dicom(&w, files, 3, NULL, err, sizeof err), MG_OK);
    size_t na, nb;
    float *a = voxels_of(v, &na), *b = voxels_of(w, &nb);
    ck_assert_int_eq(memcmp(a, b, na * sizeof *a), 0);
    free(a);
    free(b);
    mg_volume_free(w);
    mg_volume_free(v);
    const char *segs[] = {seg};
    ck_assert_int_eq(mg_volume_load_dicom(&w, segs, 1, NULL, err, sizeof err), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "Segmentation"));

    snprintf(dir, sizeof dir, "%s/dicom/ct_single/eCT_Supplemental.dcm", root);
    if (exists(dir)) {
        v = check_dicom(dir, 0, NULL, "eCT_Supplemental (enhanced CT, 2 frames)");
        in = info_of(v);
        ck_assert(in.nz == 2 && fabs(in.spacing[2] - 10) < 1e-9);
        mg_volume_free(v);
    }
    snprintf(dir, sizeof dir, "%s/dicom/mr/emri_small.dcm", root);
    if (exists(dir)) { /* enhanced MR without any geometry */
        v = check_dicom(dir, 0, NULL, "emri_small (no geometry)");
        ck_assert_ptr_nonnull(strstr(str_or(v, "warnings"), "Instance Number"));
        mg_volume_free(v);
    }
    snprintf(dir, sizeof dir, "%s/dicom/us/US1_UNCR.dcm", root);
    if (exists(dir)) {
        const char *us[] = {dir};
        ck_assert_int_eq(mg_volume_load_dicom(&w, us, 1, NULL, err, sizeof err), MG_E_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(err, "colour"));
    }
}
END_TEST

/* ---- written NIfTI checked by nibabel (and dcm2niix) ------------------------------- */

static void write_and_check(const char *src, int nifti, const char *d2n_dir, uint32_t wflags,
                            const char *tag) {
    char prefix[4400], out[4400], err[1024];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("wr_expect"));
    snprintf(out, sizeof out, "%s", tu_tmp_path(tag));
    ck_assert(nifti ? ref("nifti '%s' '%s'", src, prefix) : ref("expect '%s' '%s'", src, prefix));
    mg_volume *v = NULL;
    mg_status st = nifti ? mg_volume_load_nifti(&v, src, NULL, err, sizeof err)
                         : load_dir(&v, src, NULL, err, sizeof err);
    ck_assert_msg(st == MG_OK, "%s: %s", tag, err);
    ck_assert_msg(mg_volume_write_nifti(v, out, wflags, err, sizeof err) == MG_OK, "%s", err);
    mg_volume_free(v);
    ck_assert_msg(ref("check-nifti '%s' '%s'%s%s%s", out, prefix,
                      wflags & MG_NIFTI_FLOAT32 ? " --float32" : "", d2n_dir ? " --dcm2niix '" : "",
                      d2n_dir ? d2n_dir : ""), "%s: the written NIfTI fails the check", tag);
}

START_TEST(test_write_checked) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel absent\n"); return; }
    if (system("command -v dcm2niix >/dev/null 2>&1") != 0)
        fprintf(stderr, "  note: dcm2niix absent; written files checked with nibabel only\n");
    char d2n[4400];
#define D2N(x) (snprintf(d2n, sizeof d2n, "%s'", (x)), d2n)
    write_and_check(fix("dicom/shuffled"), 0, D2N(fix("dicom/shuffled")), 0, "w_shuffled.nii.gz");
    write_and_check(fix("dicom/shuffled"), 0, NULL, MG_NIFTI_FLOAT32, "w_shuffled_f.nii");
    write_and_check(fix("dicom/oblique"), 0, D2N(fix("dicom/oblique")), 0, "w_oblique.nii.gz");
    write_and_check(fix("dicom/reverse_instance"), 0, D2N(fix("dicom/reverse_instance")), 0,
                    "w_reverse.nii.gz");
    write_and_check(fix("dicom/enhanced"), 0, NULL, 0, "w_enhanced.nii.gz");
    write_and_check(fix("dicom/tilt"), 0, NULL, 0, "w_tilt.nii.gz"); /* sheared: sform only */
    write_and_check(fix("nifti/qform_only.nii"), 1, NULL, 0, "w_qform.nii.gz");
    write_and_check(fix("nifti/type_float64.nii.gz"), 1, NULL, 0, "w_f64.nii");
    const char *root = tu_shared_data();
    char p[4200];
    if (root) {
        snprintf(p, sizeof p, "%s/dicom/ct_series_3slice", root);
        if (exists(p)) write_and_check(p, 0, D2N(p), 0, "w_ct3.nii.gz");
        snprintf(p, sizeof p, "%s/nifti/ct_head_niivue/CT_pitch.nii.gz", root);
        if (exists(p) && !tu_under_valgrind()) write_and_check(p, 1, NULL, 0, "w_pitch.nii.gz");
    }
#undef D2N
}
END_TEST

int main(void) {
    if (!getcwd(g_cwd, sizeof g_cwd)) return EXIT_FAILURE;
    /* The test inputs, written once for every test. */
    if (system("/usr/bin/python3 -c 'import pydicom, numpy, nibabel' >/dev/null 2>&1") == 0) {
        char cmd[8800];
        snprintf(g_fix, sizeof g_fix, "%s", tu_tmp_path("volume_fixtures"));
        snprintf(cmd, sizeof cmd,
                 "rm -rf '%s' && /usr/bin/python3 '%s/tests/volume/reference.py' make '%s'",
                 g_fix, g_cwd, g_fix);
        g_ref = system(cmd) == 0;
        if (!g_ref) fprintf(stderr, "reference.py make failed: %s\n", cmd);
    } else {
        fprintf(stderr, "note: python3 with pydicom, numpy and nibabel absent: reference tests "
                        "skipped\n");
    }
    Suite *s = suite_create("volume");
    TCase *tc = tcase_create("volume");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_params_abi);
    tcase_add_test(tc, test_from_voxels);
    tcase_add_test(tc, test_nifti_roundtrip);
    tcase_add_test(tc, test_nifti_hostile);
    tcase_add_test(tc, test_nifti_prefixes_and_flips);
    tcase_add_test(tc, test_nifti_shared);
    tcase_add_test(tc, test_nifti_generated);
    tcase_add_test(tc, test_dicom_cases);
    tcase_add_test(tc, test_dicom_paths_and_limits);
    tcase_add_test(tc, test_dicom_compressed);
    tcase_add_test(tc, test_dicom_hostile);
    tcase_add_test(tc, test_dicom_mangled);
    tcase_add_test(tc, test_dicom_shared);
    tcase_add_test(tc, test_write_checked);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
