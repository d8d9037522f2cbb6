/* decoder.h - the Gemma 3 text decoder: forward pass with a KV cache.
 *
 * Two objects, after llama2.c's transformer / run-state split:
 *  - mg__decoder: the configuration read from metadata and pointers to the
 *    weights inside a loaded .mgm file (docs/MODEL_KEYS.md). Immutable once
 *    built, shared by any number of states; it borrows the file, which must
 *    outlive it. Building validates every configuration value and every
 *    tensor's presence, dtype and shape, so that the forward pass can trust
 *    them: a malformed or hostile file fails here with MG_E_MODEL_FORMAT and
 *    a message naming the key or tensor.
 *  - mg__dstate: one sequence's KV cache plus all scratch buffers, sized at
 *    creation for n_ctx tokens and batches of up to max_batch tokens, so the
 *    forward pass allocates nothing. Used by one thread at a time.
 *
 * Semantics are those of Hugging Face transformers' Gemma 3 text model
 * (checked against tests/ref/gemma3_ref.py by tests/check_decoder.c):
 *  - embedding row (dequantized) * sqrt(hidden), the scale rounded to the
 *    embedding's float type for f16/bf16 tables (as HF casts it to the
 *    weights' dtype) and kept f32 for f32/q8_0/q4_0 tables;
 *  - RMSNorm x * (1 + w); sandwich norms around attention and MLP; per-head
 *    q/k RMSNorm before rotate-half RoPE (base rope_theta_local on sliding
 *    layers; rope_theta_global with positions / rope_scaling_factor on
 *    global ones); layer i is global iff (i + 1) % sliding_window_pattern
 *    == 0; GQA; scores * query_pre_attn_scalar^-0.5, optional soft-cap
 *    cap * tanh(s / cap); GeGLU MLP (tanh GELU); final norm, output tied to
 *    the embedding, optional final soft-cap.
 *  - masks: key position k is visible from query position p when k <= p and,
 *    on sliding layers, k > p - sliding_window; in addition, tokens with the
 *    same nonzero block id in the same forward call (an image) see each
 *    other in both directions. As in transformers >= 4.53 (masking_utils,
 *    or_mask_function), the block rule is OR-ed onto the causal/sliding
 *    mask, so it also reaches past the window. (Versions 4.50-4.52 AND-ed
 *    the window on top and treated all image tokens as one block; the two
 *    agree whenever an image block is shorter than the window, as 256 image
 *    tokens against a 1024 window are.) A block must be fed in one call:
 *    block ids do not link tokens across calls.
 *
 * KV cache: f32 (exact), or bf16 (MG__DSTATE_KV_BF16: keys after RoPE and
 * values rounded to nearest even, half the memory and half the bytes a
 * decode step reads; all arithmetic stays f32), laid out per layer as
 * [kv_head][slot][head_dim].
 * Global layers keep n_ctx slots (slot = position). Sliding layers keep a
 * ring of min(n_ctx, sliding_window + max_batch) slots (slot = position mod
 * ring size): enough for every query of a batch to see its whole window and
 * every key of its own batch.
 *
 * Matrix products: a batch of n > 1 tokens goes through mg__matmul (sgemm on
 * dequantized tiles, exact up to summation order; for q8_0/q4_0 weights on
 * AVX512-VNNI an integer product on the pool instead, with the activations
 * rounded as the matvec rounds them, and for bf16 weights on AVX512_BF16 a
 * vdpbf16ps product with the activations rounded to bf16); a single token
 * through mg__matvec
 * (for q8_0/q4_0 weights that quantizes the activation to 8 bits per
 * 32-block, as GGML does).
 *
 * Attention: a batch of 8 tokens or more is cut into blocks of up to 64
 * queries of the heads that share a KV head, each run against the visible
 * keys in chunks of up to 64 with an online softmax (running max and sum
 * per query, the output rescaled when the max grows; the flash-attention
 * recurrence): the score tile is 64 x 64 whatever the sequence length, the
 * keys of a chunk are read once for all heads of the group, and the
 * products are register-blocked tile kernels (kernels/vec.h). Fewer tokens
 * (decode) run per KV head and key range: every head of the group scores
 * each key row as it is read, partial sums (max, sum, weighted values) per
 * range are merged at the end, so the cache is read once per group and a
 * long context is split over the pool. Both on the pool. */
#ifndef MG_DECODER_H
#define MG_DECODER_H

#include "core/core.h"
#include "core/pool.h"
#include "io/mgm.h"

/* Upper bounds accepted from a file (anything larger is MG_E_MODEL_FORMAT). */
#define MG__DEC_MAX_VOCAB   (1u << 24)
#define MG__DEC_MAX_HIDDEN  (1u << 16)
#define MG__DEC_MAX_LAYERS  1024u
#define MG__DEC_MAX_HEADS   1024u
#define MG__DEC_MAX_HEADDIM 4096u
#define MG__DEC_MAX_FFN     (1u << 20)
#define MG__DEC_MAX_CTX     (1u << 24)
#define MG__DEC_MAX_WORKERS 1024u

/* Which attention path a forward takes: each state holds its own choice,
 * the defaults below from mg__dstate_new on; tests and benchmarks change it
 * on their state (mg__dstate_set_attn) to compare the paths. */
typedef struct mg__dattn {
    uint32_t tile_min;  /* batches of at least this many tokens take the
                           tiled attention, smaller ones the per-query
                           paths (8) */
    uint32_t grouped;   /* batches of up to 7 tokens below tile_min run
                           grouped by KV head and split over key ranges
                           (1), or one query head per task over all its
                           keys (0) */
    uint32_t splits;    /* key ranges per KV head in a grouped decode: 0 =
                           by the pool size and the span (at least 128 keys
                           a range), else this count (at most 16 taken) */
} mg__dattn;
#define MG__DATTN_DEFAULT {8, 1, 0}

/* How a state is made (NULL: the defaults, all zero). */
#define MG__DSTATE_KV_BF16 1u   /* keys and values stored as bf16 */
typedef struct mg__dstate_opts {
    uint32_t n_workers;  /* threads of the largest pool passed to forward
                            (0 = 1): the tile scratch is per thread */
    uint32_t flags;      /* MG__DSTATE_* */
} mg__dstate_opts;

typedef struct mg__dconfig {
    uint32_t vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim, ffn;
    uint32_t context_length;
    uint32_t sliding_window;    /* >= 1 */
    uint32_t pattern;           /* layer i is global iff (i+1) % pattern == 0 */
    double query_pre_attn_scalar;
    double rope_theta_local, rope_theta_global, rope_scaling_factor;
    double rms_norm_eps;
    double attn_softcap, final_softcap; /* 0 = off */
} mg__dconfig;

typedef struct mg__decoder mg__decoder;
typedef struct mg__dstate mg__dstate;

/* Reads text.* metadata and tensors from f (which must outlive *out).
 * Required keys: text.vocab_size, hidden_size, n_layers, n_heads,
 * n_kv_heads, head_dim, ffn_size, context_length, sliding_window,
 * sliding_window_pattern, rms_norm_eps. Defaults for the others:
 * query_pre_attn_scalar = head_dim, rope_theta_local = 10000,
 * rope_theta_global = 1e6, rope_scaling_factor = 1, soft-caps 0.
 * Errors: MG_E_INVALID_ARG, MG_E_MODEL_FORMAT (message in err), MG_E_NOMEM. */
mg_status mg__decoder_build(mg__decoder **out, const mg__mgm *f, char *err,
                            size_t errlen);
void mg__decoder_free(mg__decoder *d);                         /* NULL ok */
const mg__dconfig *mg__decoder_config(const mg__decoder *d);

/* Bytes a state for (n_ctx, max_batch) allocates (KV cache + scratch);
 * MG_E_INVALID_ARG for n_ctx or max_batch of 0, n_ctx above
 * context_length, max_batch above n_ctx; MG_E_LIMIT when the size
 * overflows. */
mg_status mg__dstate_bytes(const mg__decoder *d, uint32_t n_ctx,
                           uint32_t max_batch, const mg__dstate_opts *o,
                           uint64_t *bytes);
/* A state for sequences of up to n_ctx tokens fed in calls of up to
 * max_batch tokens, o as above (NULL for the defaults; MG_E_INVALID_ARG for
 * unknown flags or more than MG__DEC_MAX_WORKERS workers). Errors: as
 * mg__dstate_bytes, MG_E_NOMEM. */
mg_status mg__dstate_new(mg__dstate **out, const mg__decoder *d,
                         uint32_t n_ctx, uint32_t max_batch,
                         const mg__dstate_opts *o);
void mg__dstate_free(mg__dstate *s);                           /* NULL ok */
/* Forgets the sequence: the next forward starts at position 0. */
void mg__dstate_reset(mg__dstate *s);
/* Tokens consumed so far (the position of the next one). */
uint32_t mg__dstate_pos(const mg__dstate *s);
/* Forgets the tokens from position pos on (the next forward starts at
 * pos), e.g. to ask several questions after one shared prefix. Refused
 * (MG_E_INVALID_ARG) when pos is past the end or when a sliding layer's
 * ring has already overwritten keys the window before pos needs (more than
 * max_batch tokens were written since). */
mg_status mg__dstate_rewind(mg__dstate *s, uint32_t pos);

/* Called by mg__decoder_forward before layer l (1 <= l < n_layers) and
 * after the last (l = n_layers) with the call's token count; nonzero stops
 * the call with MG_E_INTERRUPTED, the sequence as before it. */
typedef int (*mg__dstate_hook)(void *user, uint32_t layer, uint32_t n_layers,
                               uint32_t n_tokens);
/* Exact mode (on != 0): a forward of n > 1 tokens computes every row as a
 * forward of that token alone would (the decode kernels, each row's
 * attention by the single-token path), bit for bit, while each weight block
 * is read once for all rows (mg__matvec_multi_level); for speculative
 * decoding's verification. Rows must be text (no block ids). Errors:
 * MG_E_UNSUPPORTED (the model's FFN is narrower than its attention). */
mg_status mg__dstate_set_exact(mg__dstate *s, int on);
/* Sets (fn NULL: clears) the state's hook. */
void mg__dstate_set_hook(mg__dstate *s, mg__dstate_hook fn, void *user);
/* Sets the state's attention paths (a NULL a: the defaults); between
 * forwards, like the other setters. */
void mg__dstate_set_attn(mg__dstate *s, const mg__dattn *a);

/* Runs n tokens (1 <= n <= max_batch) at positions pos .. pos + n - 1 and
 * appends their keys and values to the cache.
 *  tokens:    n ids in [0, vocab); may be NULL when every row has an embed.
 *  embeds:    NULL, or n pointers: embeds[i] non-NULL gives row i directly
 *             as hidden floats (e.g. image features; not scaled), and then
 *             tokens[i] is ignored.
 *  block_ids: NULL (all 0), or n values >= 0: 0 = ordinary causal token,
 *             k > 0 = member of block k (bidirectional within the call).
 *  logits:    vocab floats for the last token, or n * vocab (row t for
 *             token t) when all_logits is nonzero.
 *  pool:      may be NULL (caller's thread only); at most the state's
 *             n_workers threads.
 * Errors (nothing changes): MG_E_INTERRUPTED (the hook said so),
 * MG_E_INVALID_ARG (NULL state or logits, n out of
 * range, token id out of range, a row with neither token nor embed, a
 * negative block id, a pool larger than n_workers), MG_E_CONTEXT_FULL (pos + n > n_ctx). */
mg_status mg__decoder_forward(mg__dstate *s, const int32_t *tokens,
                              const float *const *embeds,
                              const int32_t *block_ids, uint32_t n,
                              float *logits, int all_logits, mg__pool *pool);

/* One token for each of n states at once (batched serving): rows[t] takes
 * tokens[t] at its own position, with its own cache, each row computed as
 * mg__decoder_forward of that token alone on rows[t] computes it (exact
 * mode: the decode kernels, single-token attention) provided the pool has
 * as many threads as the one the lone call would use, while every weight
 * block is read once for all rows. s lends its batch buffers only (its
 * sequence is untouched): n <= s's max_batch, s made with max_batch > 1.
 * logits: n x vocab, row t for rows[t]. States' hooks are not called.
 * Errors (nothing changes): MG_E_INVALID_ARG (NULL arguments, n out of
 * range, a state twice, s among the rows, rows of another decoder, a token
 * out of range, a pool larger than s's or a row's n_workers),
 * MG_E_CONTEXT_FULL (a row's state is full), MG_E_UNSUPPORTED (as
 * mg__dstate_set_exact). */
mg_status mg__decoder_forward_rows(mg__dstate *s, mg__dstate *const *rows,
                                   const int32_t *tokens, uint32_t n, float *logits,
                                   mg__pool *pool);

#endif
