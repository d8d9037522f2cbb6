/* context.c - mg_context: per-thread state over a shared model. */
#include "api/api.h"
#include "tasks/batch.h"
#include "tasks/generate.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MG__MAX_THREADS 512u
#define MG__DEFAULT_CTX_CAP 8192u
#define MG__MAX_BATCH 512u /* prompt tokens per forward call */

/* Frees what a context owns except its model reference. */
static void context_destroy(mg_context *c) {
    mg__batch_leave(c->batch);
    mg__ctx_reuse_free(c);
    mg__free(c->chat_at);
    for (uint32_t i = 0; c->model && i < c->model->encoders.n; i++)
        c->model->encoders.e[i].vt->state_free(c->enc_state[i]);
    mg__aligned_free(c->enc_out);
    mg__free(c->enc_rows);
    mg__free(c->enc_blk);
    mg__pool_free(c->pool);
    mg__dstate_free(c->dstate);
    mg__aligned_free(c->logits);
    mg__free(c->sampler_scratch);
    mg__free(c->history);
    mg__free(c);
}

MG_API mg_status mg_context_new(mg_context **out, mg_model *model,
                                const mg_context_params *params) {
    mg__last_clear();
    if (!out) return mg__last_err(MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!mg__model_ok(model)) return mg__last_err(MG_E_MISUSE, "not a loaded model");
    mg_context_params p = MG_CONTEXT_PARAMS_INIT;
    mg_status pst = mg__params_copy(&p, sizeof p, params);
    if (pst == MG_E_UNSUPPORTED)
        return mg__last_err(pst, "mg_context_params has fields this version does not know set "
                                 "(struct_size %u)", params->struct_size);
    if (pst != MG_OK)
        return mg__last_err(MG_E_INVALID_ARG, "mg_context_params: bad struct_size");
    if (p.flags & ~(MG_CONTEXT_KV_BF16 | MG_CONTEXT_NO_REUSE))
        return mg__last_err(MG_E_INVALID_ARG, "unknown mg_context_params flags 0x%x", p.flags);
    if (p.n_threads > MG__MAX_THREADS)
        return mg__last_err(MG_E_INVALID_ARG, "n_threads %u is above %u", p.n_threads,
                            MG__MAX_THREADS);
    if (p.n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n < 1 ? 1u : (n > (long)MG__MAX_THREADS ? MG__MAX_THREADS : (uint32_t)n);
    }
    if (p.n_ctx == 0) {
        p.n_ctx = model->context_length ? model->context_length : MG__DEFAULT_CTX_CAP;
        if (p.n_ctx > MG__DEFAULT_CTX_CAP) p.n_ctx = MG__DEFAULT_CTX_CAP;
    } else if (model->context_length && p.n_ctx > model->context_length) {
        return mg__last_err(MG_E_INVALID_ARG, "n_ctx %u is above the model's context length %u",
                            p.n_ctx, model->context_length);
    }

    uint32_t workers = p.n_threads;
    if (p.batch) {
        uint32_t bt = 0;
        mg_status bst = mg__batch_join(p.batch, model, &bt);
        if (bst != MG_OK)
            return mg__last_err(bst, bst == MG_E_MISUSE ? "params.batch is not a live batch"
                                                        : "params.batch serves another model");
        if (bt > workers) workers = bt;
    }
    mg_context *c = mg__calloc(1, sizeof *c);
    if (!c) {
        mg__batch_leave(p.batch);
        return mg__last_err(MG_E_NOMEM, "out of memory");
    }
    c->batch = p.batch;
    c->pool = mg__pool_new(p.n_threads);
    if (!c->pool) {
        mg__batch_leave(c->batch);
        mg__free(c);
        return mg__last_err(MG_E_NOMEM, "cannot start a pool of %u threads", p.n_threads);
    }
    /* Encoders: a state each, and the largest token block; an encoder's
     * block is fed to the decoder in one call, so the batch covers it. */
    c->model = model;
    uint64_t enc_out = 0, enc_tokens = 0;
    for (uint32_t i = 0; i < model->encoders.n; i++) {
        const mg__encoder *e = &model->encoders.e[i];
        uint64_t n = (uint64_t)e->geo.n_tokens * e->geo.width;
        if (n > enc_out) enc_out = n;
        if (e->geo.n_tokens > enc_tokens) enc_tokens = e->geo.n_tokens;
        mg_status est = e->vt->state_new(&c->enc_state[i], e->impl, p.n_threads);
        if (est != MG_OK) {
            context_destroy(c);
            return mg__last_err(est, "the %s encoder's state: %s", e->vt->name,
                                mg_status_str(est));
        }
        c->enc_bytes += e->geo.state_bytes;
    }
    if (enc_out && !(c->enc_out = mg__aligned_alloc(64, (size_t)enc_out * sizeof(float)))) {
        context_destroy(c);
        return mg__last_err(MG_E_NOMEM, "out of memory (encoder output)");
    }
    if (model->decoder) {
        const mg__dconfig *dc = mg__decoder_config(model->decoder);
        c->n_vocab = dc->vocab;
        c->max_batch = p.n_ctx < MG__MAX_BATCH ? p.n_ctx : MG__MAX_BATCH;
        if (enc_tokens > c->max_batch)
            c->max_batch = enc_tokens < p.n_ctx ? (uint32_t)enc_tokens : p.n_ctx;
        size_t nl;
        mg__dstate_opts dso = {workers,
                               (p.flags & MG_CONTEXT_KV_BF16) ? MG__DSTATE_KV_BF16 : 0};
        mg_status dst = mg__mul_size((size_t)c->max_batch, c->n_vocab, &nl)
                            ? MG_E_LIMIT
                            : mg__dstate_new(&c->dstate, model->decoder, p.n_ctx, c->max_batch, &dso);
        if (dst != MG_OK) {
            uint64_t bytes = 0;
            mg__dstate_bytes(model->decoder, p.n_ctx, c->max_batch, &dso, &bytes);
            context_destroy(c);
            return mg__last_err(dst, "the KV cache and scratch for %u tokens (%.1f MiB): %s",
                                p.n_ctx, (double)bytes / 1048576.0, mg_status_str(dst));
        }
        if (!(c->logits = mg__aligned_alloc(64, nl * sizeof(float))) ||
            !(c->sampler_scratch = mg__malloc(mg__sampler_scratch_bytes(c->n_vocab))) ||
            !(c->history = mg__calloc(p.n_ctx, sizeof(int32_t))) ||
            !(c->enc_rows = mg__calloc(c->max_batch, sizeof *c->enc_rows)) ||
            !(c->enc_blk = mg__calloc(c->max_batch, sizeof *c->enc_blk))) {
            context_destroy(c);
            return mg__last_err(MG_E_NOMEM, "out of memory (logits and sampler)");
        }
        mg__dstate_set_hook(c->dstate, mg__ctx_decoder_hook, c);
        /* The most encoder blocks a sequence can hold, for prefix reuse. */
        uint32_t min_tok = 0;
        for (uint32_t i = 0; i < model->encoders.n; i++) {
            uint32_t nt = model->encoders.e[i].geo.n_tokens;
            if (nt && (!min_tok || nt < min_tok)) min_tok = nt;
        }
        if (min_tok && p.n_ctx >= min_tok) {
            c->cap_held = p.n_ctx / min_tok;
            if (!(c->held = mg__calloc(c->cap_held, sizeof *c->held))) {
                context_destroy(c);
                return mg__last_err(MG_E_NOMEM, "out of memory (reuse list)");
            }
        }
    }
    mg__rng_seed(&c->rng, p.seed);
    c->last_tok = c->chat_last = -1;
    c->tag = MG__TAG_CONTEXT;
    c->params = p;
    atomic_init(&c->interrupt, 0);
    atomic_init(&c->busy, 0);
    mg__model_retain(model);
    c->model = model;
    *out = c;
    return MG_OK;
}

MG_API void mg_context_free(mg_context *c) {
    if (!c || c->tag != MG__TAG_CONTEXT) return;
    c->tag = MG__TAG_DEAD;
    mg_model *m = c->model;
    context_destroy(c); /* uses the model's encoder table: release after */
    mg__model_release(m);
}

MG_API mg_status mg_context_interrupt(mg_context *c) {
    if (!c || c->tag != MG__TAG_CONTEXT) return MG_E_MISUSE;
    atomic_store(&c->interrupt, 1);
    return MG_OK;
}

MG_API const char *mg_context_errmsg(const mg_context *c) {
    if (!c || c->tag != MG__TAG_CONTEXT) return "invalid context handle";
    return c->errmsg;
}

MG_API mg_status mg_context_errcode(const mg_context *c) {
    if (!c || c->tag != MG__TAG_CONTEXT) return MG_E_MISUSE;
    return c->status;
}

/* The bracket of every public call over a context (the rule is in api.h):
 * enter once, at the top of the public function; leave once, at its end,
 * with the status and the message its helpers wrote into the call's error
 * buffer. */
mg_status mg__ctx_enter(mg_context *c) {
    if (!c || c->tag != MG__TAG_CONTEXT) return MG_E_MISUSE;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&c->busy, &expected, 1)) {
        /* Do not touch the message: the owning thread is using it. */
        return MG_E_MISUSE;
    }
    atomic_store(&c->interrupt, 0);
    c->errmsg[0] = '\0';
    c->status = MG_OK;
    return MG_OK;
}

mg_status mg__ctx_leave(mg_context *c, mg_status status, const char *fmt, ...) {
    c->status = status;
    if (status != MG_OK && fmt) {
        va_list ap;
        va_start(ap, fmt);
        mg__verr(c->errmsg, sizeof c->errmsg, status, fmt, ap);
        va_end(ap);
    }
    if (status != MG_OK && !c->errmsg[0])
        snprintf(c->errmsg, sizeof c->errmsg, "%s", mg_status_str(status));
    atomic_store(&c->busy, 0);
    return status;
}
