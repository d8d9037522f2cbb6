/* check_volume3d.c - volumes read by a model (MedGemma 1.5's recipe):
 *  - the slices of mg_volume_slices against tests/volume/slices_ref.py
 *    (numpy + PIL, written from the recipe) on volumes assembled by
 *    pydicom / nibabel (tests/volume/reference.py): byte for byte, with the
 *    z index of every slice, on series written for the test (axial in
 *    shuffled files, sagittal, oblique, gantry tilt), the shared CT series
 *    and NIfTI head CTs (85 of 154 slices), each window and the stored
 *    order;
 *  - the same slices from a DICOM series and from its NIfTI conversion;
 *  - the selection rule on hand-computed cases;
 *  - the prompt: the context's tokens after mg_vqa_volume and
 *    mg_generate_report_volume equal the reference's Hugging Face layout
 *    tokenized, and each block's embeddings equal the 2D encoder's on the
 *    slice image;
 *  - errors (bad handles, parameters, a context too small, a model without
 *    vision) and mg_context_tokens.
 * Reference tests skip with a note where python3 with pydicom, numpy,
 * nibabel and PIL or the shared data are absent. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "io/image.h"
#include "io/volume.h"
#include "testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static char g_fix[4096];
static char g_cwd[4096];
static int g_ref;

#define py(script, ...) tu_python("volume/" script, __VA_ARGS__)

static const char *fix(const char *rel) {
    static char bufs[4][4400];
    static unsigned slot;
    char *b = bufs[slot++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", g_fix, rel);
    return b;
}

#define exists tu_exists

static mg_volume *load_src(const char *src, int nifti) {
    mg_volume *v = NULL;
    char err[1024];
    mg_status st = nifti ? mg_volume_load_nifti(&v, src, NULL, err, sizeof err)
                         : mg_volume_load_dicom(&v, &src, 1, NULL, err, sizeof err);
    ck_assert_msg(st == MG_OK, "%s: %s", src, err);
    return v;
}

/* The library's slices, as new images with their z indices. */
static size_t slices_of(const mg_volume *v, const mg_slice_params *sp, mg_image **imgs,
                        uint32_t *z, size_t cap) {
    size_t n = 0;
    char err[512];
    ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, v, sp, err, sizeof err), MG_OK);
    ck_assert_uint_le(n, cap);
    ck_assert_msg(mg_volume_slices(imgs, cap, &n, z, v, sp, err, sizeof err) == MG_OK, "%s", err);
    return n;
}

/* Reads a binary PPM (P6, maxval 255) as written by PIL. */
static unsigned char *read_ppm(const char *path, uint32_t *w, uint32_t *h) {
    size_t size = 0;
    unsigned char *d = tu_read_file(path, &size);
    ck_assert_msg(d != NULL, "cannot read %s", path);
    unsigned mw = 0, mh = 0, mx = 0;
    int off = 0;
    char head[64]; /* the header, NUL-terminated for sscanf */
    size_t hn = size < sizeof head - 1 ? size : sizeof head - 1;
    memcpy(head, d, hn);
    head[hn] = '\0';
    ck_assert_msg(sscanf(head, "P6 %u %u %u%n", &mw, &mh, &mx, &off) == 3 && mx == 255,
                  "%s: not a P6 file", path);
    off++; /* the single whitespace after maxval */
    ck_assert_uint_eq(size - (size_t)off, (size_t)mw * mh * 3);
    memmove(d, d + off, size - (size_t)off);
    *w = mw;
    *h = mh;
    return d;
}

/* One case: the library's slices of src equal the reference's. */
static void compare_case(const char *tag, const char *src, int nifti, const char *opts,
                         const mg_slice_params *sp) {
    char prefix[4400], outdir[4400];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp_path("v3_expect"));
    snprintf(outdir, sizeof outdir, "%s_%s", tu_tmp_path("v3_slices"), tag);
    ck_assert_msg(py("reference.py", nifti ? "nifti '%s' '%s'" : "expect '%s' '%s'", src, prefix),
                  "%s: reference.py failed", tag);
    mg_volume *v = load_src(src, nifti);
    const char *mod = mg_volume_get_string(v, "modality");
    char mopt[64] = "";
    if (mod && *mod) snprintf(mopt, sizeof mopt, " --modality %s", mod);
    ck_assert_msg(py("slices_ref.py", "slices '%s' '%s' %s%s", prefix, outdir, opts, mopt),
                  "%s: slices_ref.py failed", tag);
    mg_image *imgs[128];
    uint32_t z[128];
    size_t n = slices_of(v, sp, imgs, z, 128);
    char path[4600];
    snprintf(path, sizeof path, "%s/z.txt", outdir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned rz = 0;
        ck_assert_msg(fscanf(f, "%u", &rz) == 1, "%s: the reference has fewer slices", tag);
        ck_assert_msg(rz == z[i], "%s: slice %zu is z %u, the reference's %u", tag, i + 1,
                      (unsigned)z[i], rz);
        snprintf(path, sizeof path, "%s/slice_%03zu.ppm", outdir, i + 1);
        uint32_t w, h;
        unsigned char *ref = read_ppm(path, &w, &h);
        mg_image_info in = {.struct_size = sizeof in};
        ck_assert_int_eq(mg_image_info_get(&in, imgs[i]), MG_OK);
        ck_assert_int_eq(in.format, MG_PIXEL_RGB8);
        ck_assert_msg(in.width == w && in.height == h, "%s: slice %zu is %ux%u, the reference's "
                      "%ux%u", tag, i + 1, (unsigned)in.width, (unsigned)in.height, w, h);
        size_t size = (size_t)w * h * 3, need = 0;
        unsigned char *px = malloc(size);
        ck_assert_int_eq(mg_image_copy_pixels(px, size, &need, imgs[i]), MG_OK);
        size_t diff = 0;
        for (size_t k = 0; k < size; k++) diff += px[k] != ref[k];
        ck_assert_msg(diff == 0, "%s: slice %zu differs from the reference in %zu of %zu bytes",
                      tag, i + 1, diff, size);
        same++;
        free(px);
        free(ref);
        mg_image_free(imgs[i]);
    }
    unsigned extra;
    ck_assert_msg(fscanf(f, "%u", &extra) != 1, "%s: the reference has more slices", tag);
    fclose(f);
    fprintf(stderr, "  %s: %zu slices equal to the reference\n", tag, same);
    mg_volume_free(v);
}

START_TEST(test_slices_reference) {
    if (!g_ref) { fprintf(stderr, "  skipped: python3 with pydicom/nibabel/PIL absent\n"); return; }
    mg_slice_params sp = MG_SLICE_PARAMS_INIT;
    compare_case("shuffled", fix("dicom/shuffled"), 0, "", &sp);
    compare_case("sagittal", fix("dicom/reverse_instance"), 0, "", &sp);
    compare_case("oblique", fix("dicom/oblique"), 0, "", &sp);
    compare_case("tilt", fix("dicom/tilt"), 0, "", &sp);
    compare_case("enhanced", fix("dicom/enhanced"), 0, "", &sp);
    sp.max_slices = 4;
    compare_case("shuffled4", fix("dicom/shuffled"), 0, "--slices 4", &sp);
    sp.window = MG_SLICE_WINDOW_MINMAX;
    sp.flags = MG_SLICES_AS_STORED;
    compare_case("stored_minmax", fix("dicom/reverse_instance"), 0,
                 "--slices 4 --window minmax --as-stored", &sp);
    sp = (mg_slice_params)MG_SLICE_PARAMS_INIT;
    compare_case("nifti_qform", fix("nifti/qform_only.nii"), 1, "", &sp);
    const char *root = tu_shared_data();
    char p[4200];
    if (!root) {
        fprintf(stderr, "  note: shared data absent: real CT cases skipped\n");
        return;
    }
    snprintf(p, sizeof p, "%s/dicom/ct_series_3slice", root);
    if (exists(p)) {
        compare_case("ct3", p, 0, "", &sp);
        sp.window = MG_SLICE_WINDOW_MINMAX;
        compare_case("ct3_minmax", p, 0, "--window minmax", &sp);
        sp.window = MG_SLICE_WINDOW_AUTO;
    }
    if (tu_under_valgrind()) return; /* the large volumes: once is enough */
    snprintf(p, sizeof p, "%s/nifti/ct_head_niivue/CT_AVM.nii.gz", root);
    if (exists(p)) compare_case("avm85", p, 1, "", &sp); /* 85 of 154, RAS+ */
    snprintf(p, sizeof p, "%s/nifti/ct_head_niivue/CT_pitch.nii.gz", root);
    if (exists(p)) {
        sp.max_slices = 20;
        sp.window = MG_SLICE_WINDOW_CT;
        compare_case("pitch20_ct", p, 1, "--slices 20 --window ct", &sp);
    }
}
END_TEST

/* The same patient volume stored in another voxel order (each axis
 * reversed or x and y swapped, with the affine to match) gives the same
 * slices; so does dcm2niix's NIfTI conversion of a series, which stores
 * the rows the other way round. */
static void same_slices(const mg_volume *a, const mg_volume *b, const char *what) {
    mg_slice_params sp = MG_SLICE_PARAMS_INIT;
    sp.window = MG_SLICE_WINDOW_CT; /* NIfTI has no modality */
    mg_image *ra[64], *rb[64];
    uint32_t za[64], zb[64];
    size_t na = slices_of(a, &sp, ra, za, 64), nb = slices_of(b, &sp, rb, zb, 64);
    ck_assert_uint_eq(na, nb);
    for (size_t i = 0; i < na; i++) {
        ck_assert_uint_eq(ra[i]->width, rb[i]->width);
        ck_assert_uint_eq(ra[i]->height, rb[i]->height);
        ck_assert_msg(memcmp(ra[i]->pixels, rb[i]->pixels, ra[i]->size) == 0,
                      "%s: slice %zu differs", what, i + 1);
        mg_image_free(ra[i]);
        mg_image_free(rb[i]);
    }
}

/* v stored with axis `flip` (0-2) reversed, or x and y swapped (flip 3). */
static mg_volume *restored(const mg_volume *v, int flip) {
    mg_volume_info in = {.struct_size = sizeof in};
    ck_assert_int_eq(mg_volume_info_get(&in, v), MG_OK);
    size_t n = 0;
    mg_volume_copy_voxels(NULL, 0, &n, v);
    float *src = malloc(n * sizeof *src), *dst = malloc(n * sizeof *dst);
    ck_assert_int_eq(mg_volume_copy_voxels(src, n, &n, v), MG_OK);
    uint32_t N[3] = {in.nx, in.ny, in.nz}, M[3] = {in.nx, in.ny, in.nz};
    double aff[16];
    memcpy(aff, in.affine, sizeof aff);
    if (flip == 3) {
        M[0] = in.ny, M[1] = in.nx;
        for (int r = 0; r < 3; r++) {
            aff[4 * r + 0] = in.affine[4 * r + 1];
            aff[4 * r + 1] = in.affine[4 * r + 0];
        }
    } else {
        /* new index i' = N - 1 - i: origin moves to the old last voxel */
        for (int r = 0; r < 3; r++) {
            aff[4 * r + 3] += in.affine[4 * r + flip] * (double)(N[flip] - 1);
            aff[4 * r + flip] = -in.affine[4 * r + flip];
        }
    }
    for (uint32_t k = 0; k < N[2]; k++)
        for (uint32_t j = 0; j < N[1]; j++)
            for (uint32_t i = 0; i < N[0]; i++) {
                uint32_t c[3] = {i, j, k};
                if (flip < 3) c[flip] = N[flip] - 1 - c[flip];
                else c[0] = j, c[1] = i;
                dst[((size_t)c[2] * M[1] + c[1]) * M[0] + c[0]] =
                    src[((size_t)k * N[1] + j) * N[0] + i];
            }
    mg_volume *w = NULL;
    char err[256];
    ck_assert_msg(mg_volume_from_voxels(&w, dst, M[0], M[1], M[2], aff, NULL, NULL, err,
                                        sizeof err) == MG_OK, "%s", err);
    free(src);
    free(dst);
    return w;
}

START_TEST(test_slices_source_independent) {
    if (!g_ref) { fprintf(stderr, "  skipped: fixtures absent\n"); return; }
    const char *cases[] = {"dicom/shuffled", "dicom/reverse_instance", "dicom/oblique"};
    int d2n = system("command -v dcm2niix >/dev/null 2>&1") == 0;
    if (!d2n) fprintf(stderr, "  note: dcm2niix absent: its conversions not compared\n");
    for (size_t c = 0; c < 3; c++) {
        mg_volume *a = load_src(fix(cases[c]), 0);
        for (int f = 0; f < 4; f++) {
            mg_volume *b = restored(a, f);
            char what[128];
            snprintf(what, sizeof what, "%s stored with change %d", cases[c], f);
            same_slices(a, b, what);
            mg_volume_free(b);
        }
        if (d2n) {
            char dir[4400], cmd[9200], nii[4600];
            snprintf(dir, sizeof dir, "%s_%zu", tu_tmp_path("v3_d2n"), c);
            snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && dcm2niix -z y -b n -f conv "
                     "-o '%s' '%s' >/dev/null 2>&1", dir, dir, dir, fix(cases[c]));
            ck_assert_msg(system(cmd) == 0, "dcm2niix failed on %s", cases[c]);
            snprintf(nii, sizeof nii, "%s/conv.nii.gz", dir);
            mg_volume *b = load_src(nii, 1);
            mg_volume_info ia = {.struct_size = sizeof ia}, ib = {.struct_size = sizeof ib};
            mg_volume_info_get(&ia, a);
            mg_volume_info_get(&ib, b);
            if (c == 0) /* axial: dcm2niix stores the rows from posterior to anterior */
                ck_assert(ia.affine[5] * ib.affine[5] < 0);
            char what[128];
            snprintf(what, sizeof what, "%s vs dcm2niix", cases[c]);
            same_slices(a, b, what);
            mg_volume_free(b);
        }
        mg_volume_free(a);
    }
}
END_TEST

/* The selection on hand-computed cases: int(round(i / max * (n - 1))),
 * round half to even. */
START_TEST(test_selection) {
    uint32_t idx[200];
    ck_assert_uint_eq(mg__slices_select(10, 4, idx), 4);
    /* 2.25, 4.5, 6.75, 9 */
    ck_assert_uint_eq(idx[0], 2);
    ck_assert_uint_eq(idx[1], 4);
    ck_assert_uint_eq(idx[2], 7);
    ck_assert_uint_eq(idx[3], 9);
    ck_assert_uint_eq(mg__slices_select(5, 4, idx), 4);
    /* 1, 2, 3, 4: slice 0 is never taken when there are more */
    for (uint32_t i = 0; i < 4; i++) ck_assert_uint_eq(idx[i], i + 1);
    ck_assert_uint_eq(mg__slices_select(3, 85, idx), 3);
    ck_assert_uint_eq(idx[2], 2);
    ck_assert_uint_eq(mg__slices_select(7, 2, idx), 2);
    ck_assert_uint_eq(idx[0], 3); /* 1/2 * 6 = 3 */
    ck_assert_uint_eq(idx[1], 6);
    /* 2.5 -> 2 and 7.5 -> 8 (half to even): n = 6, max = 2 -> 2.5, 5 */
    ck_assert_uint_eq(mg__slices_select(6, 2, idx), 2);
    ck_assert_uint_eq(idx[0], 2);
    ck_assert_uint_eq(idx[1], 5);
    ck_assert_uint_eq(mg__slices_select(16, 2, idx), 2);
    ck_assert_uint_eq(idx[0], 8); /* 7.5 -> 8 */
    /* the API: z indices of a volume from voxels (stored order is the
     * display order for an identity affine) */
    float vox[2 * 2 * 10];
    for (int i = 0; i < 40; i++) vox[i] = (float)(i / 4) * 10.0f - 1000.0f;
    mg_volume *v = NULL;
    char err[256];
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, 2, 2, 10, NULL, "CT", NULL, err, sizeof err),
                     MG_OK);
    mg_slice_params sp = MG_SLICE_PARAMS_INIT;
    sp.max_slices = 4;
    uint32_t z[4];
    size_t n = 0;
    ck_assert_int_eq(mg_volume_slices(NULL, 4, &n, z, v, &sp, err, sizeof err), MG_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(z[0], 2);
    ck_assert_uint_eq(z[3], 9);
    /* and the values: slice z = 2 holds -980 HU everywhere: R = round((44)
     * / 2048 * 255) = 5, G = 0 (below -135), B = 0 */
    mg_image *im[4];
    ck_assert_int_eq(mg_volume_slices(im, 4, &n, NULL, v, &sp, err, sizeof err), MG_OK);
    const uint8_t *px = im[0]->pixels;
    ck_assert_uint_eq(px[0], 5);
    ck_assert_uint_eq(px[1], 0);
    ck_assert_uint_eq(px[2], 0);
    for (int i = 0; i < 4; i++) mg_image_free(im[i]);
    /* errors */
    ck_assert_int_eq(mg_volume_slices(im, 3, &n, NULL, v, &sp, err, sizeof err),
                     MG_E_BUFFER_TOO_SMALL);
    sp.window = 7;
    ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, v, &sp, err, sizeof err),
                     MG_E_INVALID_ARG);
    sp = (mg_slice_params)MG_SLICE_PARAMS_INIT;
    sp.max_slices = MG_MAX_SLICES + 1;
    ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, v, &sp, err, sizeof err), MG_E_LIMIT);
    sp = (mg_slice_params)MG_SLICE_PARAMS_INIT;
    sp.flags = 0x80;
    ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, v, &sp, err, sizeof err),
                     MG_E_INVALID_ARG);
    sp = (mg_slice_params)MG_SLICE_PARAMS_INIT;
    sp.struct_size = 2;
    ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, v, &sp, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, (const mg_volume *)&sp, NULL, err,
                                      sizeof err), MG_E_MISUSE);
    /* a smaller caller struct (only struct_size and max_slices) */
    struct { uint32_t struct_size, max_slices; } old = {8, 2};
    ck_assert_int_eq(mg_volume_slices(NULL, 0, &n, NULL, v, (const mg_slice_params *)&old, err,
                                      sizeof err), MG_OK);
    ck_assert_uint_eq(n, 2);
    mg_volume_free(v);
}
END_TEST

/* ---- prompts ---------------------------------------------------------- */

#define make_model tu_make_model

static mg_volume *ct_volume(uint32_t nx, uint32_t ny, uint32_t nz, const char *mod) {
    float *vox = malloc((size_t)nx * ny * nz * sizeof *vox);
    uint64_t seed = 42;
    for (size_t i = 0; i < (size_t)nx * ny * nz; i++)
        vox[i] = -1000.0f + 1500.0f * (0.5f + 0.5f * tu_rand_f32(&seed));
    double aff[16] = {0.7, 0, 0, -10, 0, 0.7, 0, -20, 0, 0, 2.5, 30, 0, 0, 0, 1};
    mg_volume *v = NULL;
    char err[256];
    ck_assert_int_eq(mg_volume_from_voxels(&v, vox, nx, ny, nz, aff, mod, NULL, err, sizeof err),
                     MG_OK);
    free(vox);
    return v;
}

/* The reference's prompt text for n slices, tokenized with the model's
 * tokenizer (specials parsed, BOS first). */
static int32_t *expected_ids(const mg_model *m, uint32_t n, uint32_t tokens, const char *pre,
                             const char *text, size_t *n_ids) {
    const mg_tokenizer *tok = mg_model_tokenizer(m);
    const char *img = mg_tokenizer_piece(tok, mg_tokenizer_special(tok, MG_TOKEN_IMAGE));
    const char *boi = mg_tokenizer_piece(tok, mg_tokenizer_special(tok, MG_TOKEN_START_OF_IMAGE));
    const char *eoi = mg_tokenizer_piece(tok, mg_tokenizer_special(tok, MG_TOKEN_END_OF_IMAGE));
    char out[4400], cmd[12000];
    snprintf(out, sizeof out, "%s", tu_tmp_path("v3_prompt.txt"));
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/volume/slices_ref.py' prompt %u %u '%s' '%s' '%s' '%s' "
             "'%s' > '%s'", g_cwd, n, tokens, img, boi, eoi, pre, text, out);
    ck_assert_msg(system(cmd) == 0, "slices_ref.py prompt failed");
    size_t size = 0;
    unsigned char *t = tu_read_file(out, &size);
    ck_assert_ptr_nonnull(t);
    const uint32_t fl = MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL;
    size_t need = 0;
    mg_tokenize(NULL, 0, &need, tok, (const char *)t, size, fl);
    int32_t *ids = malloc(need * sizeof *ids);
    ck_assert_int_eq(mg_tokenize(ids, need, &need, tok, (const char *)t, size, fl), MG_OK);
    free(t);
    *n_ids = need;
    return ids;
}

static int32_t *context_ids(mg_context *c, size_t *n) {
    size_t need = 0;
    mg_status st = mg_context_tokens(NULL, 0, &need, c);
    ck_assert(st == MG_OK || st == MG_E_BUFFER_TOO_SMALL);
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
    ck_assert_int_eq(mg_context_tokens(ids, need, &need, c), MG_OK);
    *n = need;
    return ids;
}

START_TEST(test_prompt_layout) {
    if (system("/usr/bin/python3 -c 'import numpy, PIL' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "  skipped: python3 with numpy and PIL absent\n");
        return;
    }
    mg_model *m = NULL;
    char err[512];
    ck_assert_int_eq(mg_model_load(&m, make_model("v3_tiny.mgm", "--shape tiny"), NULL, err,
                                   sizeof err), MG_OK);
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    mg_volume *v = ct_volume(20, 16, 9, "CT");
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 0;
    gp.system_prompt = "";
    mg_slice_params sp = MG_SLICE_PARAMS_INIT;
    sp.max_slices = 4;
    char *out = NULL;
    ck_assert_int_eq(mg_vqa_volume(&out, c, v, "  Is there a mass?\n", &sp, &gp), MG_OK);
    mg_string_free(out);
    const mg__enc_geometry *g = &m->encoders.e[1].geo;
    ck_assert_str_eq(m->encoders.e[1].vt->name, "volume3d");
    size_t n_got = 0, n_want = 0;
    int32_t *got = context_ids(c, &n_got);
    int32_t *want = expected_ids(m, 4, g->n_tokens,
                                 "The images are consecutive slices of one CT volume, in order, "
                                 "each followed by its number.", "Is there a mass?", &n_want);
    ck_assert_uint_eq(n_got, n_want);
    for (size_t i = 0; i < n_got; i++)
        ck_assert_msg(got[i] == want[i], "token %zu: %d, the reference's %d", i, got[i], want[i]);
    free(got);
    free(want);
    /* report: the instruction after the slices; all 9 slices when the limit is higher */
    gp.instruction = "Findings?";
    ck_assert_int_eq(mg_generate_report_volume(&out, c, v, NULL, &gp), MG_OK);
    mg_string_free(out);
    got = context_ids(c, &n_got);
    want = expected_ids(m, 9, g->n_tokens,
                        "The images are consecutive slices of one CT volume, in order, "
                        "each followed by its number.", "Findings?", &n_want);
    ck_assert_uint_eq(n_got, n_want);
    ck_assert(memcmp(got, want, n_got * sizeof *got) == 0);
    free(got);
    free(want);

    /* each block holds the 2D encoder's tokens of the slice image */
    mg_image *imgs[4];
    uint32_t z[4];
    size_t ns = slices_of(v, &sp, imgs, z, 4);
    ck_assert_uint_eq(ns, 4);
    size_t per = (size_t)g->n_tokens * g->width;
    float *a = malloc(per * sizeof *a), *b = malloc(per * sizeof *b);
    for (uint32_t i = 0; i < 4; i++) {
        mg__enc_input vin = {.kind = MG__INPUT_VOLUME, .volume = v, .block = i};
        ck_assert_int_eq(mg__slice_params_get(&vin.slices, &sp, err, sizeof err), MG_OK);
        mg__enc_input iin = {.kind = MG__INPUT_IMAGE, .image = imgs[i]};
        ck_assert_int_eq(mg__encoders_pick(&m->encoders, &vin), 1);
        ck_assert_int_eq(mg__encoders_pick(&m->encoders, &iin), 0);
        ck_assert_uint_eq(m->encoders.e[1].vt->n_blocks(m->encoders.e[1].impl, &vin), 4);
        ck_assert_int_eq(m->encoders.e[1].vt->encode(c->enc_state[1], &vin, a, c->pool,
                                                     &(mg__enc_ctl){&c->interrupt, NULL, NULL}, err, sizeof err), MG_OK);
        ck_assert_int_eq(m->encoders.e[0].vt->encode(c->enc_state[0], &iin, b, c->pool,
                                                     &(mg__enc_ctl){&c->interrupt, NULL, NULL}, err, sizeof err), MG_OK);
        ck_assert_msg(memcmp(a, b, per * sizeof *a) == 0, "block %u differs from its slice", i);
        mg_image_free(imgs[i]);
    }
    free(a);
    free(b);

    /* a context too small: refused before any encoding, with a hint */
    mg_context *small = NULL;
    cp.n_ctx = 64;
    ck_assert_int_eq(mg_context_new(&small, m, &cp), MG_OK);
    ck_assert_int_eq(mg_generate_report_volume(&out, small, v, NULL, &gp), MG_E_CONTEXT_FULL);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(small), "fewer slices"));
    ck_assert_uint_eq(mg_context_n_tokens(small), 0);
    mg_context_free(small);
    /* misuse and bad parameters */
    ck_assert_int_eq(mg_generate_report_volume(&out, c, NULL, NULL, &gp), MG_E_MISUSE);
    ck_assert_int_eq(mg_vqa_volume(&out, c, (const mg_volume *)m, "q", NULL, &gp), MG_E_MISUSE);
    ck_assert_int_eq(mg_vqa_volume(&out, c, v, NULL, NULL, &gp), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_vqa_volume(NULL, c, v, "q", NULL, &gp), MG_E_INVALID_ARG);
    sp.window = -1;
    ck_assert_int_eq(mg_vqa_volume(&out, c, v, "q", &sp, &gp), MG_E_INVALID_ARG);
    ck_assert_ptr_null(out);
    /* marker text in the question is refused */
    const mg_tokenizer *tok = mg_model_tokenizer(m);
    char q[128];
    snprintf(q, sizeof q, "what %s", mg_tokenizer_piece(tok, mg_tokenizer_special(tok,
                                                        MG_TOKEN_START_OF_IMAGE)));
    sp = (mg_slice_params)MG_SLICE_PARAMS_INIT;
    ck_assert_int_eq(mg_vqa_volume(&out, c, v, q, &sp, &gp), MG_E_INVALID_ARG);
    mg_volume_free(v);
    mg_context_free(c);
    mg_model_free(m);

    /* a model without vision cannot read volumes */
    ck_assert_int_eq(mg_model_load(&m, make_model("v3_novis.mgm", "--shape tiny --no-vision"),
                                   NULL, err, sizeof err), MG_OK);
    cp.n_ctx = 256;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    v = ct_volume(8, 8, 3, "MR");
    ck_assert_int_eq(mg_generate_report_volume(&out, c, v, NULL, NULL), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "volume encoder"));
    mg_volume_free(v);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

/* Questions about one volume on a context that reuses what it read (the
 * slices come before the question, so a second question reads only its
 * own tokens) against a context that reads every prompt afresh: the same
 * text and sequence, logits within float rounding of another batch split. */
START_TEST(test_reuse_volume) {
    mg_model *m = NULL;
    char err[512];
    ck_assert_int_eq(mg_model_load(&m, make_model("v3_reuse.mgm", "--shape tiny --seed 4"), NULL,
                                   err, sizeof err), MG_OK);
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.n_threads = 2;
    mg_context *r = NULL, *f = NULL;
    ck_assert_int_eq(mg_context_new(&r, m, &cp), MG_OK);
    cp.flags = MG_CONTEXT_NO_REUSE;
    ck_assert_int_eq(mg_context_new(&f, m, &cp), MG_OK);
    mg_volume *v = ct_volume(20, 16, 9, "CT");
    mg_slice_params sp = MG_SLICE_PARAMS_INIT;
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 5;
    const char *qs[] = {"Is there a mass?", "Is there a mass?", "Any effusion?", NULL, "Size?"};
    const uint32_t nsl[] = {4, 4, 4, 4, 9};
    uint32_t V = r->n_vocab;
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb);
    const int n_calls = tu_under_valgrind() ? 3 : 5; /* valgrind: the 4-slice calls */
    for (int k = 0; k < n_calls; k++) {
        sp.max_slices = nsl[k];
        char *a = NULL, *b = NULL;
        mg_status sa, sb;
        if (qs[k]) {
            sa = mg_vqa_volume(&a, r, v, qs[k], &sp, &gp);
            ck_assert_int_eq(mg_context_logits(r, la, V), MG_OK);
            sb = mg_vqa_volume(&b, f, v, qs[k], &sp, &gp);
        } else {
            sa = mg_generate_report_volume(&a, r, v, &sp, &gp);
            ck_assert_int_eq(mg_context_logits(r, la, V), MG_OK);
            sb = mg_generate_report_volume(&b, f, v, &sp, &gp);
        }
        ck_assert_int_eq(sa, MG_OK);
        ck_assert_int_eq(sb, MG_OK);
        ck_assert_int_eq(mg_context_logits(f, lb, V), MG_OK);
        ck_assert_msg(!strcmp(a, b), "call %d: reuse '%s', fresh '%s'", k, a, b);
        ck_assert_uint_eq(mg_context_n_tokens(r), mg_context_n_tokens(f));
        double e = 0, mx = 0;
        for (uint32_t i = 0; i < V; i++) {
            if (fabs(la[i] - lb[i]) > e) e = fabs(la[i] - lb[i]);
            if (fabs(lb[i]) > mx) mx = fabs(lb[i]);
        }
        ck_assert_msg(e <= 1e-5 * mx, "call %d: logits differ by %g", k, e);
        mg_string_free(a);
        mg_string_free(b);
    }
    /* 4 slices, then 9 others (another slice choice is another input) */
    ck_assert_uint_eq(r->n_embeds, n_calls == 5 ? 13 : 4);
    free(la);
    free(lb);
    mg_volume_free(v);
    mg_context_free(r);
    mg_context_free(f);
    mg_model_free(m);
}
END_TEST

/* mg_context_tokens against the ids a generation was given. */
START_TEST(test_context_tokens) {
    mg_model *m = NULL;
    char err[512];
    ck_assert_int_eq(mg_model_load(&m, make_model("v3_tok.mgm", "--shape tiny --no-vision"), NULL,
                                   err, sizeof err), MG_OK);
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    size_t n = 99;
    ck_assert_int_eq(mg_context_tokens(NULL, 0, &n, c), MG_OK);
    ck_assert_uint_eq(n, 0);
    int32_t ids[5] = {2, 10, 11, 12, 13};
    ck_assert_int_eq(mg_context_eval(c, ids, 5, NULL, 0), MG_OK);
    int32_t got[8];
    ck_assert_int_eq(mg_context_tokens(got, 3, &n, c), MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(mg_context_tokens(got, 8, &n, c), MG_OK);
    ck_assert(memcmp(got, ids, sizeof ids) == 0);
    ck_assert_int_eq(mg_context_tokens(NULL, 8, &n, c), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_context_tokens(got, 8, &n, NULL), MG_E_MISUSE);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

/* The demo model reads the shared CT series end to end (deterministic). */
START_TEST(test_demo_ct_report) {
    const char *root = tu_shared_data();
    char p[4200], model[4200];
    snprintf(model, sizeof model, "%s/examples/models/medgemini-demo-q8_0.mgm", g_cwd);
    if (!root || !exists(model)) { fprintf(stderr, "  skipped: data or demo model absent\n"); return; }
    snprintf(p, sizeof p, "%s/dicom/ct_series_3slice", root);
    if (!exists(p)) return;
    mg_volume *v = load_src(p, 0);
    mg_model *m = NULL;
    char err[512];
    ck_assert_int_eq(mg_model_load(&m, model, NULL, err, sizeof err), MG_OK);
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 24;
    char *a = NULL, *b = NULL;
    ck_assert_int_eq(mg_generate_report_volume(&a, c, v, NULL, &gp), MG_OK);
    ck_assert_int_eq(mg_generate_report_volume(&b, c, v, NULL, &gp), MG_OK);
    ck_assert_str_eq(a, b);
    ck_assert_uint_gt(strlen(a), 0);
    /* 3 blocks of the model's tokens per image in the sequence */
    size_t n = 0;
    int32_t *ids = context_ids(c, &n);
    const mg_tokenizer *tok = mg_model_tokenizer(m);
    int32_t img = mg_tokenizer_special(tok, MG_TOKEN_IMAGE);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ids[i] == img;
    ck_assert_uint_eq(k, 3 * m->encoders.e[0].geo.n_tokens);
    free(ids);
    mg_string_free(a);
    mg_string_free(b);
    mg_context_free(c);
    mg_model_free(m);
    mg_volume_free(v);
}
END_TEST

int main(void) {
    if (!getcwd(g_cwd, sizeof g_cwd)) return EXIT_FAILURE;
    if (system("/usr/bin/python3 -c 'import pydicom, numpy, nibabel, PIL' >/dev/null 2>&1") == 0) {
        char cmd[8800];
        snprintf(g_fix, sizeof g_fix, "%s", tu_tmp_path("volume3d_fixtures"));
        snprintf(cmd, sizeof cmd,
                 "rm -rf '%s' && /usr/bin/python3 '%s/tests/volume/reference.py' make '%s' "
                 ">/dev/null", g_fix, g_cwd, g_fix);
        g_ref = system(cmd) == 0;
        if (!g_ref) fprintf(stderr, "reference.py make failed: %s\n", cmd);
    } else {
        fprintf(stderr, "note: python3 with pydicom, numpy, nibabel and PIL absent: reference "
                        "tests skipped\n");
    }
    Suite *s = suite_create("volume3d");
    TCase *tc = tcase_create("volume3d");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_selection);
    tcase_add_test(tc, test_context_tokens);
    tcase_add_test(tc, test_prompt_layout);
    tcase_add_test(tc, test_reuse_volume);
    tcase_add_test(tc, test_slices_reference);
    tcase_add_test(tc, test_slices_source_independent);
    tcase_add_test(tc, test_demo_ct_report);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
