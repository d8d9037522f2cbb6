/* generate.h - text generation over a context (generate.c), for the task
 * entry points (tasks.c, prompt.c) and the context object (api/context.c).
 *
 * None of these enter or leave the context: the public function that calls
 * them holds it (mg__ctx_enter) and leaves it once with the status they
 * return and the message they wrote into its error buffer. */
#ifndef MG_TASKS_GENERATE_H
#define MG_TASKS_GENERATE_H

#include "api/api.h"

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

/* Keeps the reusable prefix of the sequence (or resets it), feeds ids with
 * the blocks' encoder outputs (each block in one decoder call,
 * bidirectional) and generates with gp (already checked) into *out. On
 * failure err holds the message the call leaves with ("" for the status's
 * own text). */
mg_status mg__generate_with_blocks(char **out, mg_context *c, const int32_t *ids, size_t n,
                                   const mg__gen_block *blocks, size_t n_blocks,
                                   const mg_gen_params *gp, char *err, size_t errlen);
/* Called after the prompt is read and before the first token is chosen
 * (c->logits holds the scores of the first answer token); a status other
 * than MG_OK ends the call with it (and err's message). */
typedef mg_status (*mg__prompt_hook)(mg_context *c, void *user, char *err, size_t errlen);
/* mg__generate_with_blocks with a hook. */
mg_status mg__generate_with_hook(char **out, mg_context *c, const int32_t *ids, size_t n,
                                 const mg__gen_block *blocks, size_t n_blocks,
                                 const mg_gen_params *gp, mg__prompt_hook hook, void *user,
                                 char *err, size_t errlen);
/* Appends ids (with the blocks' encoder outputs) to the context's sequence
 * without resetting it or generating; the logits of the last token are in
 * c->logits. Errors: as the decoder's and encoders' (a message in err when
 * they give one). */
mg_status mg__feed_prompt(mg_context *c, const int32_t *ids, size_t n,
                          const mg__gen_block *blocks, size_t n_blocks, char *err,
                          size_t errlen);
/* Validates params into *gp (defaults for NULL): MG_E_INVALID_ARG, or
 * MG_E_UNSUPPORTED for fields of a newer header set. */
mg_status mg__gen_params_check(mg_gen_params *gp, const mg_gen_params *params);
/* The status and message (into err) a call ends with when
 * mg__gen_params_check returned st. */
mg_status mg__gen_params_refuse(mg_status st, char *err, size_t errlen);

/* The decoder hook every context sets on its state: mg_context_interrupt
 * and progress reports between layers. */
int mg__ctx_decoder_hook(void *user, uint32_t layer, uint32_t n_layers, uint32_t n_tokens);
/* Forgets the context's sequence (KV cache, held blocks). */
void mg__ctx_seq_reset(mg_context *c);
/* Forgets the sequence from position pos on; MG_E_INVALID_ARG as
 * mg__dstate_rewind. */
mg_status mg__ctx_seq_rewind(mg_context *c, uint32_t pos);
/* Frees the encoder-output cache and the held-block list. */
void mg__ctx_reuse_free(mg_context *c);

#endif
