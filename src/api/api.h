/* api.h - internal view of the public handles and of options structs. */
#ifndef MG_API_INTERNAL_H
#define MG_API_INTERNAL_H

#include <stdatomic.h>

#include "core/core.h"
#include "core/pool.h"
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
};

struct mg_context {
    uint32_t tag;              /* MG__TAG_CONTEXT */
    mg_model *model;
    mg__pool *pool;
    mg_context_params params;
    atomic_int interrupt;
    atomic_int busy;           /* a call is running on this context */
    mg_status status;
    char errmsg[512];
    /* text generation (NULL without a decoder); sized at creation */
    mg__dstate *dstate;
    uint32_t n_vocab, max_batch;
    float *logits;             /* max_batch * n_vocab */
    void *sampler_scratch;
    int32_t *history;          /* the sequence's tokens, n_ctx */
    mg__rng rng;
};

/* A live (not freed) model, for functions taking one. */
int mg__model_ok(const mg_model *m);
void mg__model_retain(mg_model *m);
void mg__model_release(mg_model *m);

/* Copies an options struct from the caller over defaults, honouring the
 * caller's struct_size. Returns MG_E_INVALID_ARG when struct_size is smaller
 * than the struct_size field itself or absurdly large (> 64 KiB). */
mg_status mg__params_copy(void *dst, size_t dst_size, const void *src);

/* Context call bracket: checks the handle, claims it for this call (a second
 * thread gets MG_E_MISUSE), clears the message and a stale interrupt. */
mg_status mg__ctx_enter(mg_context *ctx);
/* Records status (and a formatted message when status != MG_OK), releases
 * the context and returns status. */
mg_status mg__ctx_leave(mg_context *ctx, mg_status status, const char *fmt, ...)
    MG_PRINTF(3, 4);

#endif
