/* check_polygenic.c - polygenic risk prediction through the genomics
 * encoder (docs/POLYGENIC.md), on random-weight models written by
 * `medgemini mkmodel --genome T,C` (reference mean 0.01 k, standard
 * deviation 1 + 0.1 (k mod 5) for score k = trait * C + threshold):
 *  - the score image against values computed by hand from the documented
 *    rule (squares on the grid, one channel per threshold, z scaled by 32
 *    around 128, rounding, clipping, missing and NaN scores at 128, unused
 *    squares and channels 0), unknown names ignored, duplicates and
 *    no usable score refused;
 *  - the prompt (the context's tokens) against the layout written out by
 *    hand; the risk against P(yes) / (P(yes) + P(no)) of the answer
 *    position's logits; the batch (shared score block, rewound context)
 *    equal to one call per individual and question (f32 and q8_0);
 *  - the score block against the image encoder's tokens of the score image;
 *  - errors: no genomics encoder, NULL arguments, answer words that are
 *    not one token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "io/image.h"
#include "testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static mg_model *load(const char *path) {
    mg_model *m = NULL;
    char err[512];
    ck_assert_msg(mg_model_load(&m, path, NULL, err, sizeof err) == MG_OK, "%s: %s", path, err);
    return m;
}

static double ref_mean(int k) { return 0.01 * k; }
static double ref_std(int k) { return 1.0 + 0.1 * (k % 5); }

/* The documented pixel level of score value v for score k. */
static int level(double v, int k) {
    if (!isfinite(v)) return 128;
    double x = nearbyint(128.0 + 32.0 * (v - ref_mean(k)) / ref_std(k));
    return x < 0 ? 0 : x > 255 ? 255 : (int)x;
}

START_TEST(test_score_image) {
    /* 10 traits x 2 thresholds on a 64 px image: a 4 x 4 grid of 16 px */
    mg_model *m = load(tu_make_model("pg_img.mgm", "--shape tiny --genome 10,2"));
    const char *names[24];
    double vals[24];
    char buf[24][16];
    size_t n = 0;
    for (int t = 0; t < 10; t++)
        for (int c = 0; c < 2; c++) {
            if (t == 3 && c == 1) continue; /* missing: 128 */
            snprintf(buf[n], sizeof buf[n], "t%d_p%d", t, c);
            names[n] = buf[n];
            vals[n] = t == 4 && c == 0 ? NAN           /* NaN: 128 */
                    : t == 5 ? (c ? 1e9 : -1e9)         /* clipped: 255, 0 */
                    : 0.37 * t - 0.81 * c + 0.013 * (t * c);
            n++;
        }
    names[n] = "t99_p0"; /* a score the model does not read: ignored */
    vals[n++] = 5.0;
    mg_image *img = NULL;
    char err[256];
    ck_assert_msg(mg_prs_score_image(&img, m, vals, names, n, err, sizeof err) == MG_OK, "%s", err);
    ck_assert_uint_eq(img->width, 64);
    ck_assert_uint_eq(img->height, 64);
    const uint8_t *px = img->pixels;
    for (int t = 0; t < 16; t++) {
        int want[3] = {0, 0, 0};
        if (t < 10)
            for (int c = 0; c < 2; c++) {
                int k = t * 2 + c;
                double v = NAN;
                for (size_t i = 0; i < n; i++) {
                    char nm[16];
                    snprintf(nm, sizeof nm, "t%d_p%d", t, c);
                    if (!strcmp(names[i], nm)) v = vals[i];
                }
                want[c] = level(v, k);
            }
        /* every pixel of the square */
        int r0 = (t / 4) * 16, c0 = (t % 4) * 16;
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                for (int ch = 0; ch < 3; ch++)
                    ck_assert_msg(px[((size_t)(r0 + y) * 64 + c0 + x) * 3 + ch] == want[ch],
                                  "trait %d channel %d: %d, want %d", t, ch,
                                  px[((size_t)(r0 + y) * 64 + c0 + x) * 3 + ch], want[ch]);
    }
    /* spot values: t1_p0 = 0.37 -> 128 + 32 (0.37 - 0.02) / 1.2 = 137.33 -> 137 */
    ck_assert_uint_eq(px[(0 * 64 + 16) * 3 + 0], 137);
    ck_assert_uint_eq(px[(0 * 64 + 3 * 16) * 3 + 1], 128);  /* t3_p1 missing */
    ck_assert_uint_eq(px[(16 * 64 + 0 * 16) * 3 + 0], 128); /* t4_p0 NaN */
    ck_assert_uint_eq(px[(16 * 64 + 1 * 16) * 3 + 0], 0);   /* t5_p0 far below */
    ck_assert_uint_eq(px[(16 * 64 + 1 * 16) * 3 + 1], 255); /* t5_p1 far above */
    ck_assert_uint_eq(px[(16 * 64 + 1 * 16) * 3 + 2], 0);   /* no third threshold */
    ck_assert_uint_eq(px[(63 * 64 + 63) * 3 + 0], 0);       /* square 15: no trait */
    mg_image_free(img);
    /* a duplicate, none known, NULL name */
    const char *dup[2] = {"t0_p0", "t0_p0"};
    double dv[2] = {1, 2};
    ck_assert_int_eq(mg_prs_score_image(&img, m, dv, dup, 2, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "twice"));
    const char *unk[1] = {"BMI_5e-8"};
    ck_assert_int_eq(mg_prs_score_image(&img, m, dv, unk, 1, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "none of the 1 scores"));
    const char *nul[1] = {NULL};
    ck_assert_int_eq(mg_prs_score_image(&img, m, dv, nul, 1, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_score_image(&img, NULL, dv, dup, 1, err, sizeof err), MG_E_MISUSE);
    mg_model_free(m);
    /* a model without a genomics encoder */
    m = load(tu_make_model("pg_none.mgm", "--shape tiny"));
    ck_assert_int_eq(mg_prs_score_image(&img, m, dv, dup, 1, err, sizeof err), MG_E_UNSUPPORTED);
    mg_context *c = NULL;
    ck_assert_int_eq(mg_context_new(&c, m, NULL), MG_OK);
    double r = 0;
    ck_assert_int_eq(mg_prs_predict(NULL, &r, c, dv, dup, 1, "q", NULL), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mg_context_errmsg(c), "genomics encoder"));
    ck_assert(isnan(r));
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

/* Scores of individual i for the 4 x 3 model. */
static void scores_of(int i, double *v, const char **names, char (*buf)[16]) {
    int n = 0;
    for (int t = 0; t < 4; t++)
        for (int c = 0; c < 3; c++, n++) {
            snprintf(buf[n], 16, "t%d_p%d", t, c);
            names[n] = buf[n];
            v[n] = sin(1.3 * i + 0.7 * n) * 2.0;
        }
}

START_TEST(test_predict) {
    /* f32 and q8_0 (whose single-token and batched kernels differ) */
    mg_model *m = load(tu_make_model(_i ? "pg_pred8.mgm" : "pg_pred.mgm",
                                     _i ? "--shape tiny --genome 4,3 --dtype q8_0"
                                        : "--shape tiny --genome 4,3"));
    /* Exact comparisons between calls read every prompt afresh (without
     * prefix reuse the same prompt is read in the same chunks); the
     * context with reuse is checked against it at the end. */
    mg_context *c = NULL;
    mg_context_params cp = MG_CONTEXT_PARAMS_INIT;
    cp.flags = MG_CONTEXT_NO_REUSE;
    ck_assert_int_eq(mg_context_new(&c, m, &cp), MG_OK);
    const mg_tokenizer *tok = mg_model_tokenizer(m);
    double v[12];
    const char *names[12];
    char buf[12][16];
    scores_of(0, v, names, buf);
    /* the risk from the answer position's logits */
    double risk = -1;
    ck_assert_int_eq(mg_prs_predict(NULL, &risk, c, v, names, 12, " Has it? ", NULL), MG_OK);
    float *lg = malloc(512 * sizeof *lg);
    ck_assert_int_eq(mg_context_logits(c, lg, 512), MG_OK);
    int32_t yes = -1, no = -1;
    size_t nt = 0;
    ck_assert_int_eq(mg_tokenize(&yes, 1, &nt, tok, "Y", 1, 0), MG_OK);
    ck_assert_int_eq(mg_tokenize(&no, 1, &nt, tok, "N", 1, 0), MG_OK);
    double py = exp((double)lg[yes]), pn = exp((double)lg[no]);
    ck_assert_msg(fabs(risk - py / (py + pn)) < 1e-9, "risk %.12f, logits give %.12f", risk,
                  py / (py + pn));
    ck_assert(risk > 0 && risk < 1);
    /* the prompt, written out by hand */
    const char *sys = "You are an expert radiologist.";
    char text[4096];
    int o = snprintf(text, sizeof text, "<start_of_turn>user\n%s\n\n\n\n<start_of_image>", sys);
    for (int t = 0; t < 16; t++) o += snprintf(text + o, sizeof text - (size_t)o, "<image_soft_token>");
    snprintf(text + o, sizeof text - (size_t)o,
             "<end_of_image>\n\nHas it?<end_of_turn>\n<start_of_turn>model\n");
    int32_t want[512], got[512];
    size_t nw = 0, ng = 0;
    ck_assert_int_eq(mg_tokenize(want, 512, &nw, tok, text, strlen(text),
                                 MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL), MG_OK);
    ck_assert_int_eq(mg_context_tokens(got, 512, &ng, c), MG_OK);
    ck_assert_uint_eq(ng, nw);
    ck_assert(memcmp(got, want, nw * sizeof *got) == 0);
    /* with text: the same risk, and an answer */
    char *out = NULL;
    double risk2 = -1;
    mg_gen_params gp = MG_GEN_PARAMS_INIT;
    gp.max_tokens = 3;
    ck_assert_int_eq(mg_prs_predict(&out, &risk2, c, v, names, 12, "Has it?", &gp), MG_OK);
    ck_assert_ptr_nonnull(out);
    ck_assert(risk2 == risk);
    mg_string_free(out);

    /* the batch: 3 individuals x 2 questions, against single calls */
    double all[3 * 12], br[6];
    const char *qs[2] = {"Has it?", "Will it have something else entirely?"};
    for (int i = 0; i < 3; i++) scores_of(i, all + 12 * i, names, buf);
    ck_assert_int_eq(mg_prs_predict_batch(br, c, all, 3, names, 12, qs, 2), MG_OK);
    for (int i = 0; i < 3; i++)
        for (int q = 0; q < 2; q++) {
            double one = -1;
            ck_assert_int_eq(mg_prs_predict(NULL, &one, c, all + 12 * i, names, 12, qs[q], NULL),
                             MG_OK);
            ck_assert_msg(one == br[i * 2 + q], "individual %d question %d: batch "
                          "%.17g, single %.17g", i, q, br[i * 2 + q], one);
        }
    ck_assert(br[0] != br[2] || br[0] != br[4]); /* the scores matter */

    /* With reuse (the default): a run of calls where each prompt shares a
     * prefix with the last (the same call again, another individual,
     * another question) gives the fresh risks within float rounding of a
     * different batch split (the kept prefix is not read again), and the
     * same block is taken from the encoder-output cache. */
    mg_context *r = NULL;
    ck_assert_int_eq(mg_context_new(&r, m, NULL), MG_OK);
    const int order[][2] = {{0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 0}, {0, 0}, {2, 1}, {2, 1}};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        int i = order[k][0], q = order[k][1];
        double one = -1;
        ck_assert_int_eq(mg_prs_predict(NULL, &one, r, all + 12 * i, names, 12, qs[q], NULL),
                         MG_OK);
        ck_assert_msg(fabs(one - br[i * 2 + q]) <= 1e-6, "call %zu: reuse %.17g, fresh %.17g", k,
                      one, br[i * 2 + q]);
    }
    ck_assert_uint_eq(r->n_embeds, 3); /* one encoder output per individual */
    mg_context_free(r);

    /* the block holds the image encoder's tokens of the score image */
    mg_image *img = NULL;
    char err[256];
    ck_assert_int_eq(mg_prs_score_image(&img, m, v, names, 12, err, sizeof err), MG_OK);
    mg__genome_input g = {v, names, 12};
    mg__enc_input gin = {.kind = MG__INPUT_GENOME, .data = &g, .size = sizeof g};
    mg__enc_input iin = {.kind = MG__INPUT_IMAGE, .image = img};
    int kg = mg__encoders_pick(&m->encoders, &gin), ki = mg__encoders_pick(&m->encoders, &iin);
    ck_assert_int_ge(kg, 0);
    ck_assert_int_ge(ki, 0);
    ck_assert_str_eq(m->encoders.e[kg].vt->name, "genome");
    size_t per = (size_t)m->encoders.e[kg].geo.n_tokens * m->encoders.e[kg].geo.width;
    float *a = malloc(per * sizeof *a), *b = malloc(per * sizeof *b);
    ck_assert_int_eq(m->encoders.e[kg].vt->encode(c->enc_state[kg], &gin, a, c->pool,
                                                  &(mg__enc_ctl){&c->interrupt, NULL, NULL}, err, sizeof err), MG_OK);
    ck_assert_int_eq(m->encoders.e[ki].vt->encode(c->enc_state[ki], &iin, b, c->pool,
                                                  &(mg__enc_ctl){&c->interrupt, NULL, NULL}, err, sizeof err), MG_OK);
    ck_assert(memcmp(a, b, per * sizeof *a) == 0);
    free(a);
    free(b);
    mg_image_free(img);

    /* errors */
    ck_assert_int_eq(mg_prs_predict(NULL, NULL, c, v, names, 12, "q", NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_predict(NULL, &risk, c, v, names, 12, NULL, NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_predict(NULL, &risk, c, NULL, names, 12, "q", NULL), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_prs_predict_batch(br, c, all, 0, names, 12, qs, 2), MG_E_INVALID_ARG);
    const char *bad_q[1] = {"what <start_of_image> is"};
    ck_assert_int_eq(mg_prs_predict_batch(br, c, all, 1, names, 12, bad_q, 1), MG_E_INVALID_ARG);
    ck_assert(isnan(br[0]));
    free(lg);
    mg_context_free(c);
    mg_model_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("polygenic");
    TCase *tc = tcase_create("polygenic");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_score_image);
    tcase_add_loop_test(tc, test_predict, 0, 2);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
