/* tokenizer.h - byte-pair encoding as Hugging Face tokenizers does it for
 * Gemma 3 (see mg_tokenize in medgemini.h). Internal.
 *
 * Pipeline of mg_tokenize (the tokenizer.json semantics it reproduces):
 *  1. added tokens are matched first, leftmost-longest, on the raw text:
 *     user-defined ones (type 4) always, control/unknown ones (types 3, 2)
 *     only with MG_TOKENIZE_PARSE_SPECIAL;
 *  2. every stretch between them is normalized (U+0020 -> U+2581 "▁") and
 *     pre-tokenized (optionally split after each U+0020);
 *  3. each word starts as one symbol per code point (an invalid UTF-8 byte is
 *     a symbol of its own that never merges) and merges are applied lowest
 *     rank first, ties to the leftmost pair;
 *  4. a symbol that is not a token becomes its byte tokens <0xNN> (or the
 *     unknown token when one of them is missing). */
#ifndef MG_TOKENIZER_H
#define MG_TOKENIZER_H

#include "core/core.h"
#include "io/mgm.h"

#define MG__TAG_TOKENIZER 0x4d47544bu /* "MGTK" */

/* tokenizer.token_type values (docs/MODEL_KEYS.md) */
#define MG__TOK_NORMAL  1
#define MG__TOK_UNKNOWN 2   /* the unknown token; special (added) token */
#define MG__TOK_CONTROL 3   /* special (added) token: <bos>, <start_of_turn> */
#define MG__TOK_USER    4   /* added token matched in any text: <unused0> */
#define MG__TOK_UNUSED  5   /* treated as normal */
#define MG__TOK_BYTE    6   /* <0xNN> */

#define MG__TOK_NORM_NONE 0
#define MG__TOK_NORM_SPACE_MARKER 1 /* Replace " " -> "\xe2\x96\x81" */
#define MG__TOK_PRE_NONE 0
#define MG__TOK_PRE_SPLIT_SPACE 1   /* Split " ", MergedWithPrevious */

#define MG__TOK_N_ROLES 9
#define MG__TOK_MAX_VOCAB (1u << 24)
#define MG__TOK_MAX_MERGES (1u << 25)

/* Builds the tokenizer stored in a model file's metadata (tokenizer.* keys,
 * docs/MODEL_KEYS.md). Returns MG_E_NOT_FOUND when the file has no
 * tokenizer.tokens (the model then has no tokenizer), MG_E_MODEL_FORMAT with
 * a message when the keys are inconsistent. */
mg_status mg__tokenizer_from_mgm(mg_tokenizer **out, const mg__mgm *f,
                                 char *err, size_t errlen);

/* Writes the tokenizer.* keys that mg__tokenizer_from_mgm reads back into an
 * identical tokenizer (the converter's path; also used by the tests). */
mg_status mg__tokenizer_write_meta(const mg_tokenizer *tok, mg_writer *w);

/* Writes t as a Hugging Face tokenizer.json (model BPE with byte fallback:
 * every piece in the vocab object by id, merges in rank order as ["a", "b"],
 * types 2, 3 and 4 as added tokens (2 and 3 special), the normalizer and
 * pre-tokenizer of t, a decoder Replace "\xe2\x96\x81" -> " " /
 * ByteFallback / Fuse and a post-processor adding the BOS token) that
 * mg_tokenizer_load_json reads back into the same pieces, types, merges and
 * roles (roles are found by their Gemma piece names, "<bos>", ...; type 5
 * reads back as 1). MG_E_IO when the file cannot be written (it is then
 * removed). Implemented in tokenizer_json.c. */
mg_status mg__tokenizer_write_json(const mg_tokenizer *t, const char *path,
                                   char *err, size_t errlen);

/* Vocabulary pruning (tokenizer_prune.c): a tokenizer with only the tokens
 * that `corpus` needs, which tokenizes the corpus exactly as t does. Kept:
 * every id t produces for the whole corpus in one pass (with
 * MG_TOKENIZE_PARSE_SPECIAL), closed under "both halves of every merge
 * that makes a kept piece"; all <0xNN> byte tokens, every control and
 * unknown token, every token holding a role, every one-byte piece and the
 * space marker "\xe2\x96\x81". New ids are the kept old ids in ascending
 * order; merges are kept, in rank order, when their halves and result are
 * all kept; types, roles, normalizer and pre-tokenizer carry over.
 * *old_ids_out (mg__malloc'ed, caller frees with mg__free) maps new id ->
 * old id; *n_out is the kept count. */
mg_status mg__tokenizer_prune(mg_tokenizer **out, int32_t **old_ids_out,
                              uint32_t *n_out, const mg_tokenizer *t,
                              const char *corpus, size_t corpus_len,
                              char *err, size_t errlen);

/* ---- construction, shared by the .mgm and tokenizer.json loaders -------- */

/* Starts a tokenizer with n_vocab empty slots; every slot must then be set
 * with mg__tok_set_piece before mg__tok_index. */
mg_status mg__tok_new(mg_tokenizer **out, uint32_t n_vocab, char *err,
                      size_t errlen);
mg_status mg__tok_set_piece(mg_tokenizer *t, uint32_t id, const char *s,
                            size_t len, int32_t type, char *err, size_t errlen);
/* Builds the piece index (rejects duplicates and invalid UTF-8). */
mg_status mg__tok_index(mg_tokenizer *t, char *err, size_t errlen);
/* -1 when absent. Valid after mg__tok_index. */
int32_t mg__tok_find(const mg_tokenizer *t, const char *s, size_t len);
/* Reserves room for n merges, then adds them in rank order. */
mg_status mg__tok_reserve_merges(mg_tokenizer *t, uint32_t n, char *err,
                                 size_t errlen);
mg_status mg__tok_add_merge(mg_tokenizer *t, int32_t left, int32_t right,
                            char *err, size_t errlen);
/* Sets the options and special roles (ids or -1), builds the added-token
 * matcher and checks the whole. On error the caller frees t. */
mg_status mg__tok_finish(mg_tokenizer *t, int32_t normalizer,
                         int32_t pre_tokenizer,
                         const int32_t roles[MG__TOK_N_ROLES], char *err,
                         size_t errlen);

/* Read access for tests and the converter: the token type of id, and the
 * pair of merge `rank` (0 when out of range). */
int32_t mg__tok_type(const mg_tokenizer *t, int32_t id);
uint32_t mg__tok_n_merges(const mg_tokenizer *t);
int mg__tok_merge(const mg_tokenizer *t, uint32_t rank, int32_t *left,
                  int32_t *right);
/* The normalizer and pre-tokenizer (MG__TOK_NORM_*, MG__TOK_PRE_*). */
void mg__tok_options(const mg_tokenizer *t, int32_t *normalizer,
                     int32_t *pre_tokenizer);

/* Nonzero when a and b tokenize and detokenize alike: the same vocabulary
 * (pieces, types), special-token roles, merges, normalizer and
 * pre-tokenizer. O(vocabulary + merges). */
int mg__tokenizer_same(const mg_tokenizer *a, const mg_tokenizer *b);

#endif
