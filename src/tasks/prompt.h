/* prompt.h - prompts in the model's chat template (prompt.c): the user turn
 * with its content (text, image blocks, volume slices, score blocks), the
 * model turn's opening, and the prompt's token ids. The layout is Gemma 3's
 * chat template and processor (docs/VISION.md, VOLUME.md, POLYGENIC.md). */
#ifndef MG_TASKS_PROMPT_H
#define MG_TASKS_PROMPT_H

#include "tasks/generate.h"

/* A prompt's text as it is built; bad: an allocation failed (the text is
 * then incomplete). */
typedef struct mg__prompt { char *p; size_t len, cap; int bad; } mg__prompt;

/* One item of a user turn's content: a text (trimmed of surrounding
 * whitespace, as the template trims text items, unless the turn is
 * verbatim), or, when text is NULL, n_blocks encoder blocks in order, each
 * written as "\n\n<start_of_image><end_of_image>\n\n" and then the text its
 * encoder puts after it (a volume slice's "SLICE i"). */
typedef struct mg__prompt_part {
    const char *text;
    const mg__gen_block *blocks;
    size_t n_blocks;
} mg__prompt_part;

/* mg__prompt_turn flags. */
#define MG__TURN_LATER 1u     /* a later turn of a conversation: the previous
                                 answer's end of turn first, no system text */
#define MG__TURN_VERBATIM 2u  /* text items as given (mg_generate) */

/* Appends a user turn and the model turn's opening to pr:
 *   prompt.turn_user ("<start_of_turn>user\n"), the system text and "\n\n"
 *   when system is neither NULL nor "", the parts, prompt.turn_end
 *   ("<end_of_turn>\n"), prompt.turn_model ("<start_of_turn>model\n")
 * (model metadata, Gemma 3's text as the default). */
void mg__prompt_turn(mg__prompt *pr, const mg_model *m, const char *system,
                     const mg__prompt_part *parts, size_t n_parts, uint32_t flags);
void mg__prompt_free(mg__prompt *pr);

/* Tokenizes text in two passes, sizing then filling, into a new array
 * *ids of *n ids (free with mg__free; none on failure). Errors: as
 * mg_tokenize, MG_E_NOMEM. */
mg_status mg__prompt_tokenize(int32_t **ids, size_t *n, const mg_tokenizer *tok,
                              const char *text, size_t len, uint32_t flags);

/* The model's image marker tokens; MG_E_UNSUPPORTED (message in err) when
 * it has no decoder, tokenizer or markers. */
mg_status mg__prompt_markers(const mg_context *c, int32_t *boi, int32_t *eoi, int32_t *img,
                             char *err, size_t errlen);

/* Tokenizes the prompt pr (consumed; BOS first when bos is set) into *all
 * (*total ids, free with mg__free), with each block's tokens (the image
 * token, as many as its encoder gives) after its <start_of_image> marker and
 * blocks[].at set; room tokens must remain in the context besides them.
 * Errors, with a message in err: MG_E_UNSUPPORTED (no markers),
 * MG_E_NOMEM, MG_E_INVALID_ARG (marker tokens in the caller's text),
 * MG_E_CONTEXT_FULL, those of mg_tokenize. */
mg_status mg__prompt_ids(int32_t **all, size_t *total, const mg_context *c, mg__prompt *pr,
                         mg__gen_block *blocks, size_t n_blocks, int bos, size_t room,
                         char *err, size_t errlen);

#endif
