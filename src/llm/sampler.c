/* sampler.c - next-token selection (see sampler.h). */
#include "llm/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mg__rng_seed(mg__rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mg__rng_next(mg__rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double mg__rng_uniform(mg__rng *r) {
    return (double)(mg__rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* The same layout as mg__tokp (sampler.h): a candidate's logit, then its
 * weight once mg__sample_dist has filled it. */
typedef struct cand { float logit; int32_t id; } cand;
_Static_assert(sizeof(cand) == sizeof(mg__tokp), "cand and mg__tokp share the scratch");

/* Layout of the scratch: n candidates, then a bitmap of seen ids. */
size_t mg__sampler_scratch_bytes(uint32_t n_vocab) {
    return (size_t)n_vocab * sizeof(cand) + ((size_t)n_vocab + 7) / 8;
}

/* Descending by logit, ascending id among equals: a total order, so the
 * result never depends on qsort's stability. */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Moves the k best candidates to the front, sorted best first. For small k
 * a min-heap of the best k seen so far (O(n log k)); otherwise a full sort. */
static void heap_down(cand *h, uint32_t k, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        /* the heap's root is the worst kept candidate: "greater" in cand_cmp */
        if (l < k && cand_cmp(&h[l], &h[m]) > 0) m = l;
        if (r < k && cand_cmp(&h[r], &h[m]) > 0) m = r;
        if (m == i) return;
        cand t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

static void select_top(cand *c, uint32_t n, uint32_t k) {
    if (k >= n || k > n / 4) {
        qsort(c, n, sizeof *c, cand_cmp);
        return;
    }
    for (uint32_t i = k / 2; i-- > 0;) heap_down(c, k, i);
    for (uint32_t i = k; i < n; i++)
        if (cand_cmp(&c[i], &c[0]) < 0) {
            c[0] = c[i];
            heap_down(c, k, 0);
        }
    qsort(c, k, sizeof *c, cand_cmp);
}

/* The repetition penalty, in place; the bitmap after the candidates in the
 * scratch marks the ids already penalized. */
static void penalize(float *logits, uint32_t n, const mg__sampling *p, const int32_t *history,
                     size_t n_hist, void *scratch) {
    uint8_t *seen = (uint8_t *)((cand *)scratch + n);
    if (p->repetition_penalty == 1.0f || !n_hist) return;
    memset(seen, 0, ((size_t)n + 7) / 8);
    for (size_t i = 0; i < n_hist; i++) {
        int32_t t = history[i];
        if (t < 0 || (uint32_t)t >= n || (seen[t >> 3] & (1u << (t & 7)))) continue;
        seen[t >> 3] |= (uint8_t)(1u << (t & 7));
        float l = logits[t];
        logits[t] = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
    }
}

/* The top-k candidates by logit / temperature, their softmax weights (not
 * normalized) in c[i].logit, best first, cut to the top-p nucleus: returns
 * how many are kept and their weights' sum. Shared by drawing a token and
 * by the distribution speculative sampling checks drafts against, so the
 * two agree exactly. */
static uint32_t top_weights(cand *c, const float *logits, uint32_t n, const mg__sampling *p,
                            uint32_t k, double *sum_out) {
    for (uint32_t i = 0; i < n; i++) {
        c[i].logit = logits[i] / p->temperature;
        c[i].id = (int32_t)i;
    }
    select_top(c, n, k);
    /* Softmax over the k survivors (sorted, so c[0] is the maximum). */
    double sum = 0.0, mx = c[0].logit;
    for (uint32_t i = 0; i < k; i++) {
        double e = exp((double)c[i].logit - mx);
        c[i].logit = (float)e;
        sum += e;
    }
    uint32_t keep = k;
    if (p->top_p < 1.0f) {
        double cum = 0.0;
        for (uint32_t i = 0; i < k; i++) {
            cum += c[i].logit / sum;
            if (cum >= p->top_p) { keep = i + 1; break; }
        }
        sum = 0.0;
        for (uint32_t i = 0; i < keep; i++) sum += c[i].logit;
    }
    *sum_out = sum;
    return keep;
}

int32_t mg__sample(float *logits, uint32_t n, const mg__sampling *p,
                   const int32_t *history, size_t n_hist, mg__rng *rng,
                   void *scratch) {
    cand *c = scratch;
    penalize(logits, n, p, history, n_hist, scratch);
    if (!(p->temperature > 0.0f) || p->top_k == 1) {
        int32_t best = 0;
        for (uint32_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = (int32_t)i;
        return best;
    }
    uint32_t k = (p->top_k > 0 && (uint32_t)p->top_k < n) ? (uint32_t)p->top_k : n;
    if (k == n && !(p->top_p < 1.0f)) {
        /* Plain temperature sampling: no ordering needed. */
        float mx = logits[0];
        for (uint32_t i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
        double sum = 0.0;
        for (uint32_t i = 0; i < n; i++) sum += exp(((double)logits[i] - mx) / p->temperature);
        double u = mg__rng_uniform(rng) * sum, acc = 0.0;
        for (uint32_t i = 0; i < n; i++) {
            acc += exp(((double)logits[i] - mx) / p->temperature);
            if (u < acc) return (int32_t)i;
        }
        return (int32_t)(n - 1);
    }
    double sum;
    uint32_t keep = top_weights(c, logits, n, p, k, &sum);
    double u = mg__rng_uniform(rng) * sum, acc = 0.0;
    for (uint32_t i = 0; i < keep; i++) {
        acc += c[i].logit;
        if (u < acc) return c[i].id;
    }
    return c[keep - 1].id;
}

uint32_t mg__sample_dist(mg__tokp **out, float *logits, uint32_t n, const mg__sampling *p,
                         const int32_t *history, size_t n_hist, void *scratch) {
    cand *c = scratch;
    mg__tokp *d = scratch;
    *out = d;
    penalize(logits, n, p, history, n_hist, scratch);
    if (!(p->temperature > 0.0f) || p->top_k == 1) {
        int32_t best = 0;
        for (uint32_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = (int32_t)i;
        d[0].p = 1.0f;
        d[0].id = best;
        return 1;
    }
    uint32_t k = (p->top_k > 0 && (uint32_t)p->top_k < n) ? (uint32_t)p->top_k : n;
    if (k == n && !(p->top_p < 1.0f)) {
        /* As mg__sample: every id, in id order, the weights computed in
         * double from the maximum. */
        float mx = logits[0];
        for (uint32_t i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
        double sum = 0.0;
        for (uint32_t i = 0; i < n; i++) sum += exp(((double)logits[i] - mx) / p->temperature);
        for (uint32_t i = 0; i < n; i++) {
            d[i].p = (float)(exp(((double)logits[i] - mx) / p->temperature) / sum);
            d[i].id = (int32_t)i;
        }
        return n;
    }
    double sum;
    uint32_t keep = top_weights(c, logits, n, p, k, &sum);
    for (uint32_t i = 0; i < keep; i++) d[i].p = (float)(c[i].logit / sum);
    return keep;
}

int32_t mg__sample_from(const mg__tokp *d, uint32_t n, mg__rng *rng) {
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) sum += d[i].p;
    double u = mg__rng_uniform(rng) * sum, acc = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        acc += d[i].p;
        if (u < acc) return d[i].id;
    }
    for (uint32_t i = n; i-- > 0;) /* rounding: the last id with weight */
        if (d[i].p > 0.0f) return d[i].id;
    return n ? d[n - 1].id : 0;
}

int mg__spec_verify(int32_t *out, const mg__tokp *p, uint32_t np, const float *q, int32_t x,
                    mg__rng *rng) {
    double px = 0.0;
    for (uint32_t i = 0; i < np; i++)
        if (p[i].id == x) { px = p[i].p; break; }
    double qx = q ? q[x] : 1.0;
    /* accept with probability min(1, p(x) / q(x)); q(x) = 0 cannot have
     * drafted x, but then accept only what p allows */
    if (qx > 0.0 ? mg__rng_uniform(rng) * qx < px : px > 0.0) {
        *out = x;
        return 1;
    }
    /* rejected: draw from max(0, p - q), normalized */
    double sum = 0.0;
    for (uint32_t i = 0; i < np; i++) {
        double qi = q ? q[p[i].id] : p[i].id == x ? 1.0 : 0.0;
        double r = (double)p[i].p - qi;
        if (r > 0.0) sum += r;
    }
    if (!(sum > 0.0)) { /* p <= q everywhere: only by rounding; draw from p */
        *out = mg__sample_from(p, np, rng);
        return 0;
    }
    double u = mg__rng_uniform(rng) * sum, acc = 0.0;
    int32_t last = -1;
    for (uint32_t i = 0; i < np; i++) {
        double qi = q ? q[p[i].id] : p[i].id == x ? 1.0 : 0.0;
        double r = (double)p[i].p - qi;
        if (!(r > 0.0)) continue;
        last = p[i].id;
        acc += r;
        if (u < acc) break;
    }
    *out = last;
    return 0;
}
