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

/* The size of a context's message, and of the error buffer a call over a
 * context formats its message into (mg__ctx_leave). */
#define MG__ERRMSG_LEN 512

struct mg_context {
    uint32_t tag;              /* MG__TAG_CONTEXT */
    mg_model *model;
    mg__pool *pool;
    mg_batch *batch;           /* params.batch, joined (tasks/batch.c) */
    mg_context_params params;
    atomic_int interrupt;
    atomic_int busy;           /* a call is running on this context */
    mg_status status;
    char errmsg[MG__ERRMSG_LEN];
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


/* The context call bracket (api/context.c). A public function that works
 * on a context enters it once, runs, and leaves it once, both in its own
 * body; the helpers it calls return a status and write their message into
 * the call's error buffer (char err[MG__ERRMSG_LEN]), never entering or
 * leaving. Outputs are cleared (*out = NULL, *risk = NaN) before entering,
 * so that they read cleared also when the handle is refused. The one other
 * context a call holds, a draft model's for speculative decoding, is
 * claimed and released by a helper pair in tasks/generate.c (draft_claim,
 * draft_release). Without a bracket: mg_context_free, mg_context_interrupt
 * (any thread), and the readers mg_context_errmsg, mg_context_errcode and
 * mg_context_n_tokens.
 *
 * mg__ctx_enter checks the handle, claims it for this call (a second thread
 * gets MG_E_MISUSE), clears the message and a stale interrupt. */
mg_status mg__ctx_enter(mg_context *ctx);
/* Records status and, when status != MG_OK, the formatted message (the
 * status's own text when fmt is NULL or formats to ""), releases the
 * context and returns status. */
mg_status mg__ctx_leave(mg_context *ctx, mg_status status, const char *fmt, ...)
    MG_PRINTF(3, 4);

#endif
