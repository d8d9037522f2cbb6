/* api.h - internal view of the public handles and of options structs. */
#ifndef MG_API_INTERNAL_H
#define MG_API_INTERNAL_H

#include <stdatomic.h>

#include "core/core.h"
#include "core/pool.h"
#include "encoders/encoder.h"
#include "io/mgm.h"
#include "llm/decoder.h"
#include "llm/sampler.h"

struct mg_model {
    uint32_t tag;              /* MG__TAG_MODEL */
    atomic_int refs;           /* caller's reference + one per context */
    atomic_int closed;         /* the caller called mg_model_free */
    mg__mgm *file;
    const char *name;          /* metadata or "" */
    const char *architecture;
    uint32_t has_vision, has_text;
    uint32_t context_length;   /* text.context_length or 0 */
    mg_tokenizer *tokenizer;   /* NULL when the file has none */
    mg__decoder *decoder;      /* NULL when the file has no text.n_layers */
    mg__encoders encoders;     /* per-modality encoders (may be empty) */
};

struct mg_context {
    uint32_t tag;              /* MG__TAG_CONTEXT */
    mg_model *model;
    mg__pool *pool;
    mg_batch *batch;           /* params.batch, joined (tasks/batch.c) */
    mg_context_params params;
    atomic_int interrupt;
    atomic_int busy;           /* a call is running on this context */
    mg_status status;
    char errmsg[512];
    /* text generation (NULL without a decoder); sized at creation */
    mg__dstate *dstate;
    uint32_t n_vocab, max_batch;
    float *logits;             /* max_batch * n_vocab */
    int logits_valid;          /* logits hold the last decoder step's row */
    void *sampler_scratch;
    int32_t *history;          /* the sequence's tokens, n_ctx */
    mg__rng rng;
    /* encoders: one state per model encoder, and one output block */
    void *enc_state[MG__MAX_ENCODERS];
    float *enc_out;            /* max n_tokens * width over the encoders */
    uint64_t enc_bytes;        /* bytes the encoder states hold */
    const float **enc_rows;    /* max_batch row pointers into enc_out */
    int32_t *enc_blk;          /* max_batch block ids */
    /* reuse across calls (generate.c): the encoder blocks the sequence
     * holds, and the encoder-output cache */
    struct mg__held *held;     /* n_held blocks, by position */
    uint32_t n_held, cap_held;
    struct mg__embed *embeds;  /* n_embeds cached encoder outputs */
    uint32_t n_embeds, cap_embeds;
    uint64_t embed_tokens;     /* tokens the cache holds (<= n_ctx) */
    uint64_t embed_clock;      /* use counter for least-recently-used */
    struct mg__progress *prog; /* the running call's progress, or NULL */
    int32_t last_tok;          /* the last generated token when generation
                                  stopped without feeding it, else -1 */
    /* the conversation mg_chat holds (tasks.c): the sequence's first
     * chat_pos tokens, then chat_last when >= 0; exchange k starts at
     * chat_at[k]; n_chat = 0: none */
    uint32_t *chat_at;
    uint32_t n_chat, cap_chat, chat_pos;
    int32_t chat_last;
    int in_chat;               /* an mg_chat call is running */
    uint64_t spec_steps;       /* speculative decoding (bench, tests): calls */
    uint64_t spec_drafted;     /* verifying drafts, tokens drafted, */
    uint64_t spec_accepted;    /* and of those kept */
};

/* A generating call's progress reports (generate.c). */
typedef struct mg__progress {
    mg_progress_callback fn;
    void *user;
    mg_progress p;
    double t0, last;           /* monotonic seconds: start, last report */
    int stop;                  /* the callback asked to stop */
} mg__progress;

/* An encoder block the context's sequence holds: positions [at, at + n),
 * made from the input whose identity is key. */
typedef struct mg__held { uint32_t at, n; int32_t enc; uint8_t key[32]; } mg__held;
/* A cached encoder output: n_tokens x width floats of the input key. */
typedef struct mg__embed {
    uint8_t key[32];
    uint32_t n_tokens, width;
    uint64_t used;
    float *rows;
} mg__embed;

/* Batched decoding (tasks/batch.c). A context joins its batch when made
 * (a reference; MG_E_MISUSE for a dead batch, MG_E_INVALID_ARG for another
 * model; *n_threads = the batch's pool size) and leaves it when freed. */
mg_status mg__batch_join(mg_batch *b, const mg_model *model, uint32_t *n_threads);
void mg__batch_leave(mg_batch *b);
/* Counts the context in (on) or out of the batch's generating contexts,
 * whose rows a step waits for. */
void mg__batch_generating(mg_batch *b, int on);
/* Feeds tok to c's sequence in a step of the batch: afterwards c->logits
 * holds its row and the history the token, as a one-token feed leaves
 * them. Errors: as mg__decoder_forward_rows, MG_E_INTERRUPTED. */
mg_status mg__batch_step(mg_batch *b, mg_context *c, int32_t tok);

/* The decoder hook every context sets on its state (generate.c):
 * mg_context_interrupt and progress reports between layers. */
int mg__ctx_decoder_hook(void *user, uint32_t layer, uint32_t n_layers, uint32_t n_tokens);
/* Forgets the context's sequence (KV cache, held blocks). */
void mg__ctx_seq_reset(mg_context *c);
/* Forgets the sequence from position pos on; MG_E_INVALID_ARG as
 * mg__dstate_rewind. */
mg_status mg__ctx_seq_rewind(mg_context *c, uint32_t pos);
/* Frees the encoder-output cache and the held-block list. */
void mg__ctx_reuse_free(mg_context *c);

/* A prompt block filled by an encoder: positions [at, at + n_tokens) of the
 * prompt's ids hold placeholders (the image token) whose rows come from
 * encoder `enc` run on `in`. */
typedef struct mg__gen_block {
    size_t at;
    int enc;
    mg__enc_input in;
    const uint8_t *key;        /* NULL, or the input's identity (32 bytes)
                                  when only the context's encoder-output
                                  cache can give its rows (in.kind 0) */
} mg__gen_block;

/* Resets the sequence, feeds ids with the blocks' encoder outputs (each block
 * in one decoder call, bidirectional), generates with gp (already checked)
 * and leaves the context (mg__ctx_leave) with the result. */
mg_status mg__generate_with_blocks(char **out, mg_context *c, const int32_t *ids,
                                   size_t n, const mg__gen_block *blocks,
                                   size_t n_blocks, const mg_gen_params *gp);
/* Called after the prompt is read and before the first token is chosen
 * (c->logits holds the scores of the first answer token); a status other
 * than MG_OK ends the call with it (and err's message). */
typedef mg_status (*mg__prompt_hook)(mg_context *c, void *user, char *err, size_t errlen);
/* mg__generate_with_blocks with a hook. */
mg_status mg__generate_with_hook(char **out, mg_context *c, const int32_t *ids, size_t n,
                                 const mg__gen_block *blocks, size_t n_blocks,
                                 const mg_gen_params *gp, mg__prompt_hook hook, void *user);
/* Appends ids (with the blocks' encoder outputs) to the context's sequence
 * without resetting it, generating or leaving the context; the logits of
 * the last token are in c->logits. Errors: as the decoder's and encoders'. */
mg_status mg__feed_prompt(mg_context *c, const int32_t *ids, size_t n,
                          const mg__gen_block *blocks, size_t n_blocks, char *err,
                          size_t errlen);
/* Validates params into *gp (defaults for NULL). */
mg_status mg__gen_params_check(mg_gen_params *gp, const mg_gen_params *params);
/* Leaves the context call with the status and message for a failed
 * mg__gen_params_check (MG_E_UNSUPPORTED: fields of a newer header set). */
mg_status mg__gen_params_refuse(mg_context *c, mg_status st);

/* A live (not freed) model, for functions taking one. */
int mg__model_ok(const mg_model *m);
/* A string metadata value of the model, or dflt when absent or not a
 * string; works while a freed model lingers for its contexts. */
const char *mg__model_meta_str(const mg_model *m, const char *key, const char *dflt);
void mg__model_retain(mg_model *m);
void mg__model_release(mg_model *m);

/* Registers an extra encoder on a model that has no context yet (see
 * encoders/encoder.h; the internal path to a public plugin API).
 * Errors: MG_E_MISUSE (bad model, or contexts exist), those of
 * mg__encoders_add. */
mg_status mg__model_register_encoder(mg_model *m, const mg__encoder_vtable *vt,
                                     char *err, size_t errlen);


/* Context call bracket: checks the handle, claims it for this call (a second
 * thread gets MG_E_MISUSE), clears the message and a stale interrupt. */
mg_status mg__ctx_enter(mg_context *ctx);
/* Records status (and a formatted message when status != MG_OK), releases
 * the context and returns status. */
mg_status mg__ctx_leave(mg_context *ctx, mg_status status, const char *fmt, ...)
    MG_PRINTF(3, 4);

#endif
