/* ops.c - row kernels: RMSNorm, LayerNorm, softmax, GELU (tanh), RoPE.
 * The _ref versions are plain scalar C with double accumulation, the
 * definitions the others are tested against. The others accumulate in f32
 * over 8 independent partial sums (which the compiler can vectorize at the
 * baseline ISA) and apply the same formulas; they are not the hot path
 * (the matvecs are), so they stay portable. */
#include "kernels/kernels.h"
#include "kernels/vec.h"

#include <pthread.h>

#include <math.h>

/* ---- references ----------------------------------------------------------- */

void mg__rmsnorm_ref(float *y, const float *x, const float *w, uint64_t n,
                     float eps, int add_one) {
    if (n == 0) return;
    double ss = 0.0;
    for (uint64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / (double)n + (double)eps);
    for (uint64_t i = 0; i < n; i++) {
        double g = add_one ? 1.0 + (double)w[i] : (double)w[i];
        y[i] = (float)((double)x[i] * inv * g);
    }
}

void mg__layernorm_ref(float *y, const float *x, const float *w,
                       const float *b, uint64_t n, float eps) {
    if (n == 0) return;
    double mean = 0.0, var = 0.0;
    for (uint64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (uint64_t i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
    var /= (double)n;
    double inv = 1.0 / sqrt(var + (double)eps);
    for (uint64_t i = 0; i < n; i++) {
        double v = ((double)x[i] - mean) * inv;
        if (w) v *= w[i];
        if (b) v += b[i];
        y[i] = (float)v;
    }
}

void mg__softmax_ref(float *x, uint64_t n) {
    if (n == 0) return;
    double m = x[0];
    for (uint64_t i = 1; i < n; i++) if (x[i] > m) m = x[i];
    double s = 0.0;
    for (uint64_t i = 0; i < n; i++) s += exp((double)x[i] - m);
    for (uint64_t i = 0; i < n; i++) x[i] = (float)(exp((double)x[i] - m) / s);
}

void mg__gelu_tanh_ref(float *y, const float *x, uint64_t n) {
    const double k = sqrt(2.0 / M_PI);
    for (uint64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v))));
    }
}

void mg__rope_ref(float *x, uint64_t head_dim, double pos, double base,
                  double scale) {
    uint64_t half = head_dim / 2;
    for (uint64_t i = 0; i < half; i++) {
        double theta = pos / scale * pow(base, -2.0 * (double)i / (double)head_dim);
        double c = cos(theta), s = sin(theta);
        double a = x[i], b = x[i + half];
        x[i] = (float)(a * c - b * s);
        x[i + half] = (float)(b * c + a * s);
    }
}

/* ---- fast versions ------------------------------------------------------- */

static float sum_sq(const float *x, uint64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k] * x[i + k];
    for (; i < n; i++) acc[0] += x[i] * x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
           ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float sum(const float *x, uint64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k];
    for (; i < n; i++) acc[0] += x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
           ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void mg__rmsnorm(float *y, const float *x, const float *w, uint64_t n,
                 float eps, int add_one) {
    if (n == 0) return;
    float inv = 1.0f / sqrtf(sum_sq(x, n) / (float)n + eps);
    if (add_one)
        for (uint64_t i = 0; i < n; i++) y[i] = x[i] * inv * (1.0f + w[i]);
    else
        for (uint64_t i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

void mg__layernorm(float *y, const float *x, const float *w, const float *b,
                   uint64_t n, float eps) {
    if (n == 0) return;
    float mean = sum(x, n) / (float)n;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            float d = x[i + k] - mean;
            acc[k] += d * d;
        }
    for (; i < n; i++) acc[0] += (x[i] - mean) * (x[i] - mean);
    float var = (((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                 ((acc[4] + acc[5]) + (acc[6] + acc[7]))) / (float)n;
    float inv = 1.0f / sqrtf(var + eps);
    for (i = 0; i < n; i++) {
        float v = (x[i] - mean) * inv;
        if (w) v *= w[i];
        if (b) v += b[i];
        y[i] = v;
    }
}

static inline const mg__vec_fns *vec(void);

void mg__softmax(float *x, uint64_t n) {
    if (n == 0) return;
    float m = x[0];
    for (uint64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float inv = 1.0f / vec()->expsum(x, m, n);
    for (uint64_t i = 0; i < n; i++) x[i] *= inv;
}

static void gelu_scalar(float *y, const float *x, uint64_t n) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (uint64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

static float dot_scalar(const float *a, const float *b, uint64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    for (; i < n; i++) acc[0] += a[i] * b[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void axpy_scalar(float *y, float a, const float *x, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static float expsum_scalar(float *x, float m, uint64_t n) {
    float s = 0.0f;
    for (uint64_t i = 0; i < n; i++) {
        float d = x[i] - m;
        x[i] = d < -87.0f ? 0.0f : expf(d); /* as the SIMD versions */
        s += x[i];
    }
    return s;
}

static float max_scalar(const float *x, uint64_t n) {
    float m = x[0];
    for (uint64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static void qk_scalar(const float *K, uint32_t nk, uint32_t hd, const float *QT, uint32_t ldq,
                      float scale, float *ST) {
    for (uint32_t j = 0; j < nk; j++) {
        float *s = ST + (size_t)j * ldq;
        for (uint32_t i = 0; i < ldq; i++) s[i] = 0.0f;
        for (uint32_t d = 0; d < hd; d++) {
            const float k = K[(size_t)j * hd + d], *q = QT + (size_t)d * ldq;
            for (uint32_t i = 0; i < ldq; i++) s[i] += k * q[i];
        }
        for (uint32_t i = 0; i < ldq; i++) s[i] *= scale;
    }
}

static void softmax_scalar(float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, float *m,
                           float *l, float *alpha) {
    for (uint32_t i = 0; i < nq; i++) {
        float mx = m[i], sum = 0.0f;
        for (uint32_t j = 0; j < nk; j++) mx = ST[(size_t)j * ldq + i] > mx ? ST[(size_t)j * ldq + i] : mx;
        if (mx == -INFINITY) { /* nothing visible yet */
            for (uint32_t j = 0; j < nk; j++) ST[(size_t)j * ldq + i] = 0.0f;
            alpha[i] = 1.0f;
            continue;
        }
        for (uint32_t j = 0; j < nk; j++) {
            float d = ST[(size_t)j * ldq + i] - mx;
            ST[(size_t)j * ldq + i] = d < -87.0f ? 0.0f : expf(d);
            sum += ST[(size_t)j * ldq + i];
        }
        float d = m[i] - mx;
        alpha[i] = d < -87.0f ? 0.0f : expf(d);
        l[i] = alpha[i] * l[i] + sum;
        m[i] = mx;
    }
}

static void pv_scalar(const float *ST, uint32_t ldq, uint32_t nk, uint32_t nq, const float *V,
                      uint32_t hd, const float *alpha, float *O, uint64_t ldo) {
    for (uint32_t i = 0; i < nq; i++) {
        float *o = O + (size_t)i * ldo;
        for (uint32_t d = 0; d < hd; d++) o[d] *= alpha[i];
        for (uint32_t j = 0; j < nk; j++) {
            const float p = ST[(size_t)j * ldq + i], *v = V + (size_t)j * hd;
            for (uint32_t d = 0; d < hd; d++) o[d] += p * v[d];
        }
    }
}

static void bf16_f32_scalar(float *dst, const uint16_t *src, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = mg__bf16_to_f32(src[i]);
}

static float dot_bf16_scalar(const float *a, const uint16_t *b, uint64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * mg__bf16_to_f32(b[i + j]);
    for (; i < n; i++) acc[0] += a[i] * mg__bf16_to_f32(b[i]);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void axpy_bf16_scalar(float *y, float a, const uint16_t *x, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) y[i] += a * mg__bf16_to_f32(x[i]);
}

static const mg__vec_fns vec_scalar = {dot_scalar, axpy_scalar, gelu_scalar,
                                       expsum_scalar, max_scalar, qk_scalar,
                                       softmax_scalar, pv_scalar, bf16_f32_scalar,
                                       dot_bf16_scalar, axpy_bf16_scalar};

const mg__vec_fns *mg__vec_for(int32_t level) {
    int32_t cpu = mg__cpu_simd_level();
    if (level > cpu) level = cpu;
#if defined(MG_X86_AVX512)
    if (level >= MG_SIMD_AVX512) return &mg__vec_avx512;
#endif
#if defined(MG_X86_AVX2)
    if (level >= MG_SIMD_AVX2) return &mg__vec_avx2;
#endif
    (void)level;
    return &vec_scalar;
}

static const mg__vec_fns *g_vec;
static pthread_once_t g_vec_once = PTHREAD_ONCE_INIT;
static void vec_init(void) { g_vec = mg__vec_for(mg_simd_level()); }
static inline const mg__vec_fns *vec(void) {
    pthread_once(&g_vec_once, vec_init);
    return g_vec;
}

void mg__gelu_tanh(float *y, const float *x, uint64_t n) { vec()->gelu(y, x, n); }
float mg__expsum_f32(float *x, float m, uint64_t n) { return vec()->expsum(x, m, n); }
float mg__max_f32(const float *x, uint64_t n) { return n ? vec()->max(x, n) : -INFINITY; }
float mg__dot_f32(const float *a, const float *b, uint64_t n) { return vec()->dot(a, b, n); }
void mg__axpy_f32(float *y, float a, const float *x, uint64_t n) { vec()->axpy(y, a, x, n); }
const struct mg__vec_fns *mg__vec(void) { return vec(); }

void mg__rope(float *x, uint64_t head_dim, double pos, double base,
              double scale) {
    uint64_t half = head_dim / 2;
    if (half == 0) return;
    /* Angles in double: pos can be large and f32 would lose the phase.
     * inv_freq_i = base^(-2i/d) = exp(i * step), step = -2 ln(base) / d. */
    double p = pos / scale, step = -2.0 * log(base) / (double)head_dim;
    for (uint64_t i = 0; i < half; i++) {
        double theta = p * exp(step * (double)i);
        float c = (float)cos(theta), s = (float)sin(theta);
        float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}
