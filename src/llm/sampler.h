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

#endif
