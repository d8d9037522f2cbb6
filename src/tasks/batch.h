/* batch.h - batched decoding (batch.c), for generation (generate.c) and the
 * context object (api/context.c). */
#ifndef MG_TASKS_BATCH_H
#define MG_TASKS_BATCH_H

#include "api/api.h"

/* A context joins its batch when made (a reference; MG_E_MISUSE for a dead
 * batch, MG_E_INVALID_ARG for another model; *n_threads = the batch's pool
 * size) and leaves it when freed. */
mg_status mg__batch_join(mg_batch *b, const mg_model *model, uint32_t *n_threads);
void mg__batch_leave(mg_batch *b);
/* Counts the context in (on) or out of the batch's generating contexts,
 * whose rows a step waits for. */
void mg__batch_generating(mg_batch *b, int on);
/* Feeds tok to c's sequence in a step of the batch: afterwards c->logits
 * holds its row and the history the token, as a one-token feed leaves
 * them. Errors: as mg__decoder_forward_rows, MG_E_INTERRUPTED. */
mg_status mg__batch_step(mg_batch *b, mg_context *c, int32_t tok);

#endif
