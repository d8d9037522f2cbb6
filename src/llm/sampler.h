/* sampler.h - choosing the next token from logits: greedy, temperature,
 * top-k, top-p (nucleus) and repetition penalty, with a seeded RNG. */
#ifndef MG_SAMPLER_H
#define MG_SAMPLER_H

#include "core/core.h"

/* xoshiro256** state; seeded from one 64-bit value through splitmix64. */
typedef struct mg__rng { uint64_t s[4]; } mg__rng;
void mg__rng_seed(mg__rng *r, uint64_t seed);
uint64_t mg__rng_next(mg__rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double mg__rng_uniform(mg__rng *r);

typedef struct mg__sampling {
    float temperature;         /* <= 0: greedy */
    int32_t top_k;             /* <= 0: off */
    float top_p;               /* >= 1: off */
    float repetition_penalty;  /* 1: off */
} mg__sampling;

/* Scratch for a vocabulary of n entries: sampler_scratch_bytes(n) bytes,
 * allocated once by the caller (the context). */
size_t mg__sampler_scratch_bytes(uint32_t n_vocab);

/* Picks a token. logits (n_vocab floats) is modified in place (penalty and
 * temperature applied). history: ids already in the sequence (for the
 * repetition penalty; may be NULL when n_hist is 0; ids out of range are
 * ignored). Greedy picks the lowest id among equal maxima.
 * Repetition penalty as in Hugging Face: a seen token's logit l becomes
 * l / penalty if l > 0, else l * penalty (each token once).
 * Order of the filters: penalty, temperature, top-k, softmax, top-p. */
int32_t mg__sample(float *logits, uint32_t n_vocab, const mg__sampling *p,
                   const int32_t *history, size_t n_hist, mg__rng *rng,
                   void *scratch);

/* A token and its probability: an entry of a sampling distribution. */
typedef struct mg__tokp { float p; int32_t id; } mg__tokp;

/* The distribution mg__sample draws from, written into the scratch: *out
 * points to the returned number of entries, the probabilities summing to 1
 * (up to rounding). The same filters and ordering as mg__sample, and logits
 * modified in place as it does (the penalty only): greedy (temperature <= 0
 * or top_k 1) gives the one maximum with probability 1; plain temperature
 * sampling every id in id order; with top-k or top-p the survivors best
 * first. mg__sample_from(*out, n, rng) then picks as mg__sample would with
 * the same RNG state, up to the rounding of the normalized weights. */
uint32_t mg__sample_dist(mg__tokp **out, float *logits, uint32_t n_vocab,
                         const mg__sampling *p, const int32_t *history,
                         size_t n_hist, void *scratch);
/* Draws an id from n entries by their weights (need not sum to 1). */
int32_t mg__sample_from(const mg__tokp *d, uint32_t n, mg__rng *rng);

/* Speculative sampling's check of a drafted token x (Leviathan et al.,
 * Chen et al. 2023): p (np entries) is the target distribution at x's
 * position, q the draft's (n_vocab probabilities by id; NULL: x with
 * probability 1, as an n-gram draft). x is accepted with probability
 * min(1, p(x) / q(x)); otherwise *out is drawn from max(0, p - q)
 * normalized. Returns 1 (accepted, *out = x) or 0 (*out the replacement).
 * Drafting x from q and then this give *out distributed exactly as p. */
int mg__spec_verify(int32_t *out, const mg__tokp *p, uint32_t np, const float *q,
                    int32_t x, mg__rng *rng);

#endif
