/* vision.c - time to encode one image with the 2D image encoder (SigLIP +
 * Gemma 3 projector) at MedGemma's shape: 896 px, patch 14 (4096
 * patches), width 1152, MLP 4304, 16 heads, 256 tokens, projection to
 * 2560, random weights, in f32 and bf16; and, in the same run, a plain
 * cblas_sgemm of the encoder's largest product (4096 x 1152 x 4304) for
 * the machine's GEMM rate. q8_0 and q4_0 store the matrices the way the
 * converter does: the ones whose rows are not whole 32-blocks (ffn_down,
 * 4304 inputs) as --odd (default f16, the converter's choice).
 *
 *   vision [--layers N] [--threads T] [--dtype f32|bf16|q8_0|q4_0|both|all] [--reps R]
 *          [--odd f16|bf16]
 *   vision --model FILE.mgm [--image FILE] [--threads T] [--reps R]
 *
 * The second form times the image encoder of a given model (bench/peer
 * uses it on a converted mmproj) on an image file, or on the synthetic
 * image below when none is given.
 * N defaults to 2 (so `make bench` stays short); the full encoder is
 * --layers 27 (about 5.5 TFLOP). Each encode runs once to page the
 * weights in, then R times (default 2); the best time is reported. GFLOP/s counts the multiply-adds of the
 * GEMMs (2 per MAC): per layer 2N(4D^2 + 2DF) + 4N^2 D, plus the patch
 * embedding and the projection. The model file (vision tensors only) is
 * written to $TMPDIR (default /tmp) and removed afterwards. OpenBLAS
 * threads are the environment's (OPENBLAS_NUM_THREADS); set
 * OPENBLAS_CORETYPE=SkylakeX on CPUs this OpenBLAS does not know (see
 * docs/PERFORMANCE.md). */
#include "encoders/encoder.h"
#include "io/image.h"
#include "io/mgm.h"
#include "kernels/kernels.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { S = 896, P = 14, D = 1152, F = 4304, NH = 16, TOK = 256, HT = 2560 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((int64_t)(rng >> 40) - (1 << 23)) / (float)(1 << 23);
}

static int32_t odd_dt = MG_DTYPE_F16;

static int put(mg_writer *w, int pass, const char *name, int32_t dt, uint64_t d0, uint64_t d1,
               float center, float scale) {
    uint64_t dims[2] = {d0, d1};
    if ((dt == MG_DTYPE_Q8_0 || dt == MG_DTYPE_Q4_0) && d0 % 32) dt = odd_dt;
    if (pass == 0) return mg_writer_add_tensor(w, name, d1 > 1 ? dt : MG_DTYPE_F32, d1 > 1 ? 2 : 1, dims, 0);
    uint64_t n = d0 * d1;
    float *b = malloc(n * sizeof *b);
    if (!b) return MG_E_NOMEM;
    for (uint64_t i = 0; i < n; i++) b[i] = center + scale * frand();
    mg_status st = mg_writer_write_tensor_f32(w, name, b, n);
    free(b);
    return st;
}

static int write_model(const char *path, int32_t dt, uint32_t layers) {
    char err[256], nm[96];
    mg_writer *w = NULL;
    if (mg_writer_open(&w, path, 0, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", path, err);
        return -1;
    }
    const double half[3] = {0.5, 0.5, 0.5};
    int st = mg_writer_set_int(w, "vision.image_size", S) ||
             mg_writer_set_int(w, "vision.patch_size", P) ||
             mg_writer_set_int(w, "vision.n_layers", layers) ||
             mg_writer_set_int(w, "vision.hidden_size", D) ||
             mg_writer_set_int(w, "vision.ffn_size", F) ||
             mg_writer_set_int(w, "vision.n_heads", NH) ||
             mg_writer_set_int(w, "vision.tokens_per_image", TOK) ||
             mg_writer_set_float(w, "vision.layer_norm_eps", 1e-6) ||
             mg_writer_set_int(w, "image.size", S) ||
             mg_writer_set_float_array(w, "image.mean", half, 3) ||
             mg_writer_set_float_array(w, "image.std", half, 3);
    const uint64_t NP = (S / P) * (S / P);
    for (int pass = 0; pass < 2 && !st; pass++) {
        st |= put(w, pass, "vision.patch_embd", dt, 3 * P * P, D, 0, 0.03f);
        st |= put(w, pass, "vision.patch_embd_bias", dt, D, 1, 0, 0.02f);
        st |= put(w, pass, "vision.pos_embd", dt, D, NP, 0, 0.02f);
        for (uint32_t l = 0; l < layers && !st; l++) {
#define M(s, a, b) snprintf(nm, sizeof nm, "vision.blk.%u." s, l), st |= put(w, pass, nm, dt, a, b, 0, 0.03f)
#define V(s, a, c) snprintf(nm, sizeof nm, "vision.blk.%u." s, l), st |= put(w, pass, nm, dt, a, 1, c, 0.02f)
            V("ln1", D, 1); V("ln1_bias", D, 0); V("ln2", D, 1); V("ln2_bias", D, 0);
            M("attn_q", D, D); V("attn_q_bias", D, 0); M("attn_k", D, D); V("attn_k_bias", D, 0);
            M("attn_v", D, D); V("attn_v_bias", D, 0); M("attn_output", D, D);
            V("attn_output_bias", D, 0); M("ffn_up", D, F); V("ffn_up_bias", F, 0);
            M("ffn_down", F, D); V("ffn_down_bias", D, 0);
#undef M
#undef V
        }
        st |= put(w, pass, "vision.post_ln", dt, D, 1, 1, 0.02f);
        st |= put(w, pass, "vision.post_ln_bias", dt, D, 1, 0, 0.02f);
        st |= put(w, pass, "mm.soft_emb_norm", dt, D, 1, 0, 0.02f);
        st |= put(w, pass, "mm.input_proj", dt, D, HT, 0, 0.03f);
    }
    if (!st) st = mg_writer_finish(w);
    if (st) fprintf(stderr, "writing %s: %s\n", path, mg_writer_errmsg(w));
    mg_writer_free(w);
    return st ? -1 : 0;
}

/* Opens path, builds its image encoder and encodes img once to page the
 * weights in, then reps times; the best time in *best, the encoder state's
 * bytes in *state_bytes. */
static int time_encode(const char *path, const mg_image *img, uint32_t threads, uint32_t reps,
                       double *best, double *state_bytes) {
    char err[256];
    mg__mgm *f = NULL;
    if (mg__mgm_open(&f, path, 0, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    const mg__encoder_vtable *vt = &mg__encoder_image2d;
    void *impl = NULL, *state = NULL;
    uint32_t ht = HT; /* the decoder's width when the file has one */
    if (mg__mgm_get_u32(f, "model", "text.hidden_size", 0, HT, 1, 1u << 20, &ht, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        mg__mgm_close(f);
        return -1;
    }
    if (vt->build(&impl, f, ht, err, sizeof err) || vt->state_new(&state, impl, threads)) {
        fprintf(stderr, "build: %s\n", err);
        vt->destroy(impl);
        mg__mgm_close(f);
        return -1;
    }
    mg__enc_geometry g;
    vt->geometry(impl, &g);
    mg__pool *pool = mg__pool_new(threads);
    float *out = mg__aligned_alloc(64, (size_t)g.n_tokens * ht * 4);
    mg__enc_input in;
    memset(&in, 0, sizeof in);
    in.kind = MG__INPUT_IMAGE;
    in.image = img;
    atomic_int intr = 0;
    const mg__enc_ctl ctl = {&intr, NULL, NULL};
    int rc = 0;
    /* warm-up: page the weights in */
    if (!pool || !out || vt->encode(state, &in, out, pool, &ctl, err, sizeof err)) {
        fprintf(stderr, "encode: %s\n", err);
        rc = -1;
    }
    *best = 1e30;
    for (uint32_t r = 0; r < reps && !rc; r++) {
        double t0 = now();
        vt->encode(state, &in, out, pool, &ctl, err, sizeof err);
        double t = now() - t0;
        if (t < *best) *best = t;
    }
    *state_bytes = (double)g.state_bytes;
    mg__aligned_free(out);
    mg__pool_free(pool);
    vt->state_free(state);
    vt->destroy(impl);
    mg__mgm_close(f);
    return rc;
}

int main(int argc, char **argv) {
    uint32_t layers = 2, threads = 2, reps = 2;
    const char *which = "both", *model = NULL, *image = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--image")) image = argv[i + 1];
        else if (!strcmp(argv[i], "--layers")) layers = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dtype")) which = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--odd"))
            odd_dt = strcmp(argv[i + 1], "bf16") ? MG_DTYPE_F16 : MG_DTYPE_BF16;
    }
    if (!layers || !threads || !reps) return 2;
    if (model) { /* a given model's encoder on a given (or the synthetic) image */
        mg_image *mi = NULL;
        char err[256];
        if (image && mg_image_load_file(&mi, image, NULL, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", image, err);
            return 1;
        }
        if (!image) {
            uint8_t *px = malloc(1024 * 1024);
            if (!px) return 1;
            for (size_t i = 0; i < 1024 * 1024; i++) px[i] = (uint8_t)(128 + 100 * frand());
            int bad = mg_image_from_pixels(&mi, px, 1024, 1024, 0, MG_PIXEL_GRAY8, NULL, err,
                                           sizeof err) != MG_OK;
            free(px);
            if (bad) return 1;
        }
        double best, gb;
        int rc = time_encode(model, mi, threads, reps, &best, &gb);
        if (!rc)
            printf("encode %s: %.2f s (best of %u after a warm-up; %u threads; state %.0f MiB)\n",
                   model, best, reps, threads, gb / 1048576.0);
        mg_image_free(mi);
        return rc ? 1 : 0;
    }
    const double N = (double)(S / P) * (S / P);
    double flop = layers * (2 * N * (4.0 * D * D + 2.0 * D * F) + 4 * N * N * D) +
                  2 * N * 3 * P * P * D + 2.0 * TOK * D * HT;
    printf("vision encoder: %u px, %u layers, %.3f TFLOP per image; %u threads; OpenBLAS %s, "
           "%d threads, core %s\n", S, layers, flop * 1e-12, threads, openblas_get_config(),
           openblas_get_num_threads(), openblas_get_corename());

    /* reference GEMM rate: the MLP up-projection shape */
    {
        const int m = (int)N, n = F, k = D;
        float *A = malloc((size_t)m * k * 4), *B = malloc((size_t)n * k * 4), *C = malloc((size_t)m * n * 4);
        if (!A || !B || !C) return 1;
        for (size_t i = 0; i < (size_t)m * k; i++) A[i] = frand();
        for (size_t i = 0; i < (size_t)n * k; i++) B[i] = frand();
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, A, k, B, k, 0.0f, C, n);
            double t = now() - t0;
            if (t < best) best = t;
        }
        printf("cblas_sgemm %dx%dx%d: %.1f ms, %.1f GFLOP/s\n", m, k, n, best * 1e3,
               2.0 * m * n * k / best * 1e-9);
        free(A); free(B); free(C);
    }

    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    mg_image *img = NULL;
    {
        /* a 1024 x 1024 gray image, resized to 896 inside the encoder */
        uint8_t *px = malloc(1024 * 1024);
        for (size_t i = 0; i < 1024 * 1024; i++) px[i] = (uint8_t)(128 + 100 * frand());
        char err[128];
        if (mg_image_from_pixels(&img, px, 1024, 1024, 0, MG_PIXEL_GRAY8, NULL, err, sizeof err)) return 1;
        free(px);
    }
    int32_t dts[4] = {MG_DTYPE_F32, MG_DTYPE_BF16, MG_DTYPE_Q8_0, MG_DTYPE_Q4_0};
    for (int k = 0; k < 4; k++) {
        if (strcmp(which, "all") && (strcmp(which, "both") || k > 1) &&
            strcmp(which, mg_dtype_name(dts[k])))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/mg_bench_vision_%d_%s.mgm", tmp, (int)getpid(),
                 mg_dtype_name(dts[k]));
        double t0 = now();
        if (write_model(path, dts[k], layers)) return 1;
        double tw = now() - t0;
        double best, gb;
        if (time_encode(path, img, threads, reps, &best, &gb)) return 1;
        printf("encode %-5s: %.2f s, %.1f GFLOP/s (state %.0f MiB; model written in %.1f s)\n",
               mg_dtype_name(dts[k]), best, flop / best * 1e-9, gb / 1048576.0, tw);
        fflush(stdout);
        unlink(path);
    }
    mg_image_free(img);
    return 0;
}
