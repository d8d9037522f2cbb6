/* tasks.c - the task entry points: report generation and visual question
 * answering over images (prompt layout in docs/VISION.md) and over volumes
 * (docs/VOLUME.md), and
 * polygenic-risk prediction from the score image (docs/POLYGENIC.md). */
#include "tasks/prompt.h"

#include "io/image.h"
#include "io/volume.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Used when neither the caller nor the model's metadata gives one. */
#define MG__DEFAULT_REPORT_INSTRUCTION "Describe this X-ray."

/* The helpers below return a status and write their message into the
 * call's error buffer (err); the public functions at the end of each part
 * enter and leave the context. */

static mg_status check_images(const mg_image *const *images, size_t n_images, char *err,
                              size_t errlen) {
    if (!images || n_images == 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "at least one image is required");
    if (n_images > 64)
        return mg__err(err, errlen, MG_E_LIMIT, "%zu images in one call (limit 64)", n_images);
    for (size_t i = 0; i < n_images; i++)
        if (!images[i] || images[i]->tag != MG__TAG_IMAGE)
            return mg__err(err, errlen, MG_E_MISUSE, "images[%zu] is not a valid image handle", i);
    return MG_OK;
}

/* The first check of params (before mg__gen_params_check's). */
static mg_status check_gen(const mg_gen_params *params, char *err, size_t errlen) {
    mg_gen_params p = MG_GEN_PARAMS_INIT;
    mg_status pst = mg__params_copy(&p, sizeof p, params);
    if (pst == MG_E_UNSUPPORTED)
        return mg__err(err, errlen, pst, "mg_gen_params sets fields this version (%s) does not "
                       "know", MG_VERSION_STRING);
    if (pst != MG_OK)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "mg_gen_params.struct_size is invalid");
    if (!(p.temperature >= 0.0f) || !(p.top_p > 0.0f && p.top_p <= 1.0f) ||
        p.top_k < 0 || !(p.repetition_penalty > 0.0f) || (p.n_stop && !p.stop))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "generation parameters out of range");
    return MG_OK;
}

/* Validates params into *gp (defaults for NULL). */
static mg_status gen_params(mg_gen_params *gp, const mg_gen_params *params, char *err,
                            size_t errlen) {
    mg_status st = mg__gen_params_check(gp, params);
    return st ? mg__gen_params_refuse(st, err, errlen) : MG_OK;
}

static const char *meta_str(const mg_model *m, const char *key, const char *dflt) {
    return mg__model_meta_str(m, key, dflt);
}

/* The system text of a task's prompt: the caller's, else the model's
 * default ("" for none). */
static const char *system_text(const mg_model *m, const mg_gen_params *gp) {
    return gp->system_prompt ? gp->system_prompt : meta_str(m, "prompt.system_default", "");
}

/* Tokenizes the prompt pr (consumed), puts each block's tokens after its
 * <boi> marker, and generates. */
static mg_status run_prompt_hook(char **out, mg_context *c, mg__prompt *pr,
                                 mg__gen_block *blocks, size_t n_blocks,
                                 const mg_gen_params *gp, mg__prompt_hook hook, void *user,
                                 char *err, size_t errlen) {
    int32_t *all = NULL;
    size_t total = 0;
    mg_status st = mg__prompt_ids(&all, &total, c, pr, blocks, n_blocks, 1, 0, err, errlen);
    if (st) return st;
    st = mg__generate_with_hook(out, c, all, total, blocks, n_blocks, gp, hook, user, err,
                                errlen);
    mg__free(all);
    return st;
}

static mg_status run_prompt(char **out, mg_context *c, mg__prompt *pr, mg__gen_block *blocks,
                            size_t n_blocks, const mg_gen_params *gp, char *err,
                            size_t errlen) {
    return run_prompt_hook(out, c, pr, blocks, n_blocks, gp, NULL, NULL, err, errlen);
}

/* The encoder blocks of n images (*blocks, free with mg__free). */
static mg_status image_blocks(mg__gen_block **blocks, const mg_model *m,
                              const mg_image *const *images, size_t n, char *err,
                              size_t errlen) {
    mg__gen_block *b = mg__calloc(n, sizeof *b);
    if (!b) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        b[i].in.kind = MG__INPUT_IMAGE;
        b[i].in.image = images[i];
        b[i].enc = mg__encoders_pick(&m->encoders, &b[i].in);
        if (b[i].enc < 0) {
            mg__free(b);
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "the model has no image encoder (no vision tensors): "
                           "it cannot read images");
        }
    }
    *blocks = b;
    return MG_OK;
}

/* Report (question == NULL) or VQA over images, with the prompt laid out as
 * Hugging Face's Gemma 3 chat template and processor produce it for the
 * content [text, image, image, ...]. */
static mg_status multimodal(char **out, mg_context *c, const mg_image *const *images,
                            size_t n_images, const char *question,
                            const mg_gen_params *params, char *err, size_t errlen) {
    mg_gen_params gp;
    mg_status st;
    if ((st = check_images(images, n_images, err, errlen)) ||
        (st = check_gen(params, err, errlen)) || (st = gen_params(&gp, params, err, errlen)))
        return st;
    const mg_model *m = c->model;
    mg__gen_block *blocks = NULL;
    if ((st = image_blocks(&blocks, m, images, n_images, err, errlen))) return st;
    int32_t boi, eoi, img;
    st = mg__prompt_markers(c, &boi, &eoi, &img, err, errlen);
    if (st) {
        mg__free(blocks);
        return st;
    }
    const char *text = question ? question
                     : gp.instruction ? gp.instruction
                     : meta_str(m, "prompt.report_instruction", MG__DEFAULT_REPORT_INSTRUCTION);
    const mg__prompt_part parts[2] = {{text, NULL, 0}, {NULL, blocks, n_images}};
    mg__prompt pr = {0};
    mg__prompt_turn(&pr, m, system_text(m, &gp), parts, 2, 0);
    st = run_prompt(out, c, &pr, blocks, n_images, &gp, err, errlen);
    mg__free(blocks);
    return st;
}

/* ------------------------------------------------------------------ chat */

/* Appends an exchange start to the conversation record. */
static int chat_push(mg_context *c, uint32_t at) {
    if (c->n_chat == c->cap_chat) {
        uint32_t cap = c->cap_chat ? 2 * c->cap_chat : 16;
        uint32_t *p = mg__realloc(c->chat_at, (size_t)cap * sizeof *p);
        if (!p) return -1;
        c->chat_at = p;
        c->cap_chat = cap;
    }
    c->chat_at[c->n_chat++] = at;
    return 0;
}

/* The conversation's tokens: history[0, chat_pos) and chat_last. */
static uint32_t chat_len(const mg_context *c) {
    return c->chat_pos + (c->chat_last >= 0);
}

/* The cached-block check for an exchange kept by truncation. */
static int span_cached(const mg_context *c, uint32_t a, uint32_t b) {
    for (uint32_t i = 0; i < c->n_held; i++) {
        const mg__held *h = &c->held[i];
        if (h->at < a || h->at >= b) continue;
        int found = 0;
        for (uint32_t k = 0; k < c->n_embeds && !found; k++)
            found = !memcmp(c->embeds[k].key, h->key, 32) && c->embeds[k].n_tokens == h->n;
        if (!found) return 0;
    }
    return 1;
}

/* The next exchange of the conversation (mg_chat; out and message are
 * not NULL). */
static mg_status chat(char **out, mg_context *c, const mg_image *const *images,
                      size_t n_images, const char *message, const mg_gen_params *params,
                      char *err, size_t errlen) {
    mg_status st;
    if ((n_images && (st = check_images(images, n_images, err, errlen))) ||
        (st = check_gen(params, err, errlen)))
        return st;
    if (c->params.flags & MG_CONTEXT_NO_REUSE)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "chat keeps the conversation in the context: it needs a context "
                       "made without MG_CONTEXT_NO_REUSE");
    if (!c->dstate || !c->model->tokenizer)
        return mg__err(err, errlen, MG_E_UNSUPPORTED, "the model has no text decoder or tokenizer");
    mg_gen_params gp;
    if ((st = gen_params(&gp, params, err, errlen))) return st;
    const mg_model *m = c->model;
    /* The conversation goes on when the context still holds it. */
    int cont = c->n_chat > 0 && mg__dstate_pos(c->dstate) >= c->chat_pos;
    if (!cont) c->n_chat = 0;
    mg__gen_block *nb = NULL;
    if (n_images && (st = image_blocks(&nb, m, images, n_images, err, errlen))) return st;
    /* The new user turn, as Gemma 3's chat template writes a later turn:
     * the previous answer closed by <end_of_turn>, then the user turn with
     * the message and its images, then the model turn's opening. The first
     * turn starts with <bos> and the system text. */
    const mg__prompt_part parts[2] = {{message, NULL, 0}, {NULL, nb, n_images}};
    mg__prompt pr = {0};
    mg__prompt_turn(&pr, m, system_text(m, &gp), parts, 2, cont ? MG__TURN_LATER : 0);
    int32_t *turn = NULL;
    size_t n_turn = 0;
    if ((st = mg__prompt_ids(&turn, &n_turn, c, &pr, nb, n_images, !cont, 0, err, errlen))) {
        mg__free(nb);
        return st;
    }
    /* Room for the answer: max_tokens, at most a quarter of the context. */
    const uint32_t n_ctx = c->params.n_ctx;
    size_t room = gp.max_tokens < n_ctx / 4 ? gp.max_tokens : n_ctx / 4;
    if (room < 1) room = 1;
    /* Which exchanges stay: all, or (when the conversation no longer fits)
     * the first (its images and system text) and the latest ones that fit
     * and whose images are still cached; the oldest go first. */
    uint32_t len = cont ? chat_len(c) : 0, n_ex = cont ? c->n_chat : 0;
    uint32_t first_keep = 1; /* exchanges 1 .. first_keep-1 are dropped */
    uint32_t *ex_end = NULL;
    st = MG_OK;
    if (n_ex && !(ex_end = mg__calloc(n_ex, sizeof *ex_end))) st = MG_E_NOMEM;
    for (uint32_t k = 0; st == MG_OK && k < n_ex; k++)
        ex_end[k] = k + 1 < n_ex ? c->chat_at[k + 1] : len;
    size_t kept = len;
    if (st == MG_OK && n_ex && kept + n_turn + room > n_ctx) {
        kept = ex_end[0];
        size_t tail = 0;
        first_keep = n_ex;
        for (uint32_t k = n_ex; k-- > 1;) {
            size_t span = ex_end[k] - c->chat_at[k];
            if (kept + tail + span + n_turn + room > n_ctx ||
                !span_cached(c, c->chat_at[k], ex_end[k]))
                break;
            tail += span;
            first_keep = k;
        }
        kept += tail;
    }
    if (st == MG_OK && kept + n_turn > n_ctx) {
        size_t need = kept + n_turn;
        mg__free(ex_end);
        mg__free(turn);
        mg__free(nb);
        return mg__err(err, errlen, MG_E_CONTEXT_FULL,
                       "the conversation's first exchange and the new message need %zu "
                       "tokens; the context holds %u (start a new conversation with "
                       "mg_context_reset, or use a larger context)", need, n_ctx);
    }
    /* The prompt: the kept exchanges' tokens and blocks (known by their
     * keys: their rows are in the KV cache or the encoder-output cache),
     * then the new turn. */
    int32_t *ids = NULL;
    mg__gen_block *blocks = NULL;
    uint32_t *new_at = NULL;
    size_t n_blocks = 0, n_ids = kept + n_turn;
    if (st == MG_OK) {
        ids = mg__calloc(n_ids, sizeof *ids);
        blocks = mg__calloc(c->n_held + n_images + 1, sizeof *blocks);
        new_at = mg__calloc(n_ex + 1, sizeof *new_at);
        if (!ids || !blocks || !new_at) st = MG_E_NOMEM;
    }
    uint32_t n_new_ex = 0;
    if (st == MG_OK) {
        size_t o = 0;
        for (uint32_t k = 0; k < n_ex; k++) {
            if (k && k < first_keep) continue;
            uint32_t a = c->chat_at[k], b = ex_end[k];
            new_at[n_new_ex++] = (uint32_t)o;
            for (uint32_t i = a; i < b; i++)
                ids[o + i - a] = i < c->chat_pos ? c->history[i] : c->chat_last;
            for (uint32_t h = 0; h < c->n_held; h++) {
                const mg__held *hb = &c->held[h];
                if (hb->at < a || hb->at >= b) continue;
                mg__gen_block *bl = &blocks[n_blocks++];
                bl->at = o + hb->at - a;
                bl->enc = hb->enc;
                bl->key = hb->key;
            }
            o += b - a;
        }
        new_at[n_new_ex++] = (uint32_t)o;
        memcpy(ids + o, turn, n_turn * sizeof *ids);
        for (size_t i = 0; i < n_images; i++) {
            blocks[n_blocks] = nb[i];
            blocks[n_blocks++].at += o;
        }
    }
    mg__free(turn);
    mg__free(ex_end);
    if (st != MG_OK) {
        mg__free(ids);
        mg__free(blocks);
        mg__free(new_at);
        mg__free(nb);
        return mg__err(err, errlen, st, "out of memory");
    }
    /* Held keys are copied: the held list changes while the prompt is read. */
    uint8_t (*keys)[32] = n_blocks ? mg__calloc(n_blocks, sizeof *keys) : NULL;
    if (n_blocks && !keys) st = MG_E_NOMEM;
    for (size_t i = 0; st == MG_OK && i < n_blocks; i++)
        if (blocks[i].key) {
            memcpy(keys[i], blocks[i].key, 32);
            blocks[i].key = keys[i];
        }
    if (st == MG_OK) {
        c->in_chat = 1;
        st = mg__generate_with_blocks(out, c, ids, n_ids, blocks, n_blocks, &gp, err, errlen);
        c->in_chat = 0;
        /* The exchange is kept when its prompt was read whole (also when
         * the answer was cut short); else the conversation is as before
         * unless it had been truncated. */
        uint32_t pos = mg__dstate_pos(c->dstate);
        int read = pos >= n_ids && (st == MG_OK || st == MG_E_INTERRUPTED ||
                                    st == MG_E_CONTEXT_FULL);
        if (read) {
            c->n_chat = 0;
            for (uint32_t k = 0; k < n_new_ex; k++)
                if (chat_push(c, new_at[k])) {
                    c->n_chat = 0; /* out of memory: the next call starts anew */
                    break;
                }
            c->chat_pos = pos;
            c->chat_last = c->last_tok;
        } else if (first_keep > 1 || !cont) {
            c->n_chat = 0;
        }
    } else {
        mg__err(err, errlen, st, "out of memory");
    }
    mg__free(keys);
    mg__free(ids);
    mg__free(blocks);
    mg__free(new_at);
    mg__free(nb);
    return st;
}

MG_API mg_status mg_chat(char **out, mg_context *ctx, const mg_image *const *images,
                         size_t n_images, const char *message, const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!out || !message)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG, "out or message is NULL");
    else
        st = chat(out, ctx, images, n_images, message, params, err, sizeof err);
    return mg__ctx_leave(ctx, st, "%s", err);
}

/* Report (question == NULL) or VQA over a volume: MedGemma 1.5's layout,
 * the content [preamble, slice 1, "SLICE 1", slice 2, "SLICE 2", ...,
 * text] through the same template (docs/VOLUME.md). */
static mg_status volumetric(char **out, mg_context *c, const mg_volume *volume,
                            const char *question, const mg_slice_params *sparams,
                            const mg_gen_params *params, char *err, size_t errlen) {
    if (!mg__volume_ok(volume))
        return mg__err(err, errlen, MG_E_MISUSE, "volume is not a valid volume handle");
    mg_gen_params gp;
    mg_status st;
    if ((st = check_gen(params, err, errlen)) || (st = gen_params(&gp, params, err, errlen)))
        return st;
    mg__enc_input in;
    memset(&in, 0, sizeof in);
    in.kind = MG__INPUT_VOLUME;
    in.volume = volume;
    if ((st = mg__slice_params_get(&in.slices, sparams, err, errlen))) return st;
    const mg_model *m = c->model;
    int enc = mg__encoders_pick(&m->encoders, &in);
    if (enc < 0)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "the model has no volume encoder (no vision tensors): "
                       "it cannot read volumes");
    int32_t boi, eoi, img;
    if ((st = mg__prompt_markers(c, &boi, &eoi, &img, err, errlen))) return st;
    const mg__encoder *e = &m->encoders.e[enc];
    uint32_t nb = e->vt->n_blocks(e->impl, &in);
    if (!nb) return mg__err(err, errlen, MG_E_INVALID_ARG, "the volume gives no slices");
    /* Checked before anything is encoded or allocated per slice. */
    uint64_t need = (uint64_t)nb * e->geo.n_tokens;
    if (need > c->params.n_ctx)
        return mg__err(err, errlen, MG_E_CONTEXT_FULL,
                       "%u slices need %llu image tokens; the context holds %u "
                       "(ask for fewer slices, or a larger context)",
                       (unsigned)nb, (unsigned long long)need, c->params.n_ctx);
    mg__gen_block *blocks = mg__calloc(nb, sizeof *blocks);
    if (!blocks) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    for (uint32_t b = 0; b < nb; b++) {
        blocks[b].in = in;
        blocks[b].in.block = b;
        blocks[b].enc = enc;
    }
    const char *kind = volume->modality[0] ? volume->modality : "";
    char dflt_pre[160], dflt_text[160];
    snprintf(dflt_pre, sizeof dflt_pre,
             "The images are consecutive slices of one %s%svolume, in order, each followed "
             "by its number.", kind, *kind ? " " : "");
    snprintf(dflt_text, sizeof dflt_text,
             "Write the findings of a radiology report for this %s%sstudy.", kind,
             *kind ? " " : "");
    const char *pre = meta_str(m, "prompt.volume_preamble", dflt_pre);
    const char *text = question ? question
                     : gp.instruction ? gp.instruction
                     : meta_str(m, "prompt.volume_report_instruction", dflt_text);
    const mg__prompt_part parts[3] = {{pre, NULL, 0}, {NULL, blocks, nb}, {text, NULL, 0}};
    mg__prompt pr = {0};
    mg__prompt_turn(&pr, m, system_text(m, &gp), parts, 3, 0);
    st = run_prompt(out, c, &pr, blocks, nb, &gp, err, errlen);
    mg__free(blocks);
    return st;
}

MG_API mg_status mg_generate_report(char **out, mg_context *ctx,
                                    const mg_image *const *images,
                                    size_t n_images,
                                    const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!out)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG, "out is NULL");
    else
        st = multimodal(out, ctx, images, n_images, NULL, params, err, sizeof err);
    return mg__ctx_leave(ctx, st, "%s", err);
}

MG_API mg_status mg_vqa(char **out, mg_context *ctx,
                        const mg_image *const *images, size_t n_images,
                        const char *question, const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!out || !question)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG, "out or question is NULL");
    else
        st = multimodal(out, ctx, images, n_images, question, params, err, sizeof err);
    return mg__ctx_leave(ctx, st, "%s", err);
}

MG_API mg_status mg_generate_report_volume(char **out, mg_context *ctx,
                                           const mg_volume *volume,
                                           const mg_slice_params *slices,
                                           const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!out)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG, "out is NULL");
    else
        st = volumetric(out, ctx, volume, NULL, slices, params, err, sizeof err);
    return mg__ctx_leave(ctx, st, "%s", err);
}

MG_API mg_status mg_vqa_volume(char **out, mg_context *ctx, const mg_volume *volume,
                               const char *question, const mg_slice_params *slices,
                               const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!out || !question)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG, "out or question is NULL");
    else
        st = volumetric(out, ctx, volume, question, slices, params, err, sizeof err);
    return mg__ctx_leave(ctx, st, "%s", err);
}

/* ------------------------------------------------------------- polygenic */

/* The ids of the yes and no answer words (one token each). */
static mg_status answer_ids(const mg_context *c, int32_t *yes, int32_t *no, char *err,
                            size_t errlen) {
    const mg_tokenizer *tok = c->model->tokenizer;
    const char *w[2] = {meta_str(c->model, "genome.answer_yes", "yes"),
                        meta_str(c->model, "genome.answer_no", "no")};
    int32_t id[2];
    for (int k = 0; k < 2; k++) {
        size_t n = 0;
        mg_status st = mg_tokenize(id + k, 1, &n, tok, w[k], strlen(w[k]), 0);
        if (st == MG_E_NOMEM) return mg__err(err, errlen, st, "out of memory");
        if (st != MG_OK || n != 1)
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "the answer word '%s' is not one token of the model's tokenizer",
                           w[k]);
    }
    *yes = id[0];
    *no = id[1];
    return MG_OK;
}

/* The score block of g: the model's genomics encoder on it, the markers
 * and the answer words' ids. */
static mg_status genome_block(const mg_context *c, mg__genome_input *g, mg__gen_block *bl,
                              int32_t *yes, int32_t *no, char *err, size_t errlen) {
    memset(bl, 0, sizeof *bl);
    bl->in.kind = MG__INPUT_GENOME;
    bl->in.data = g;
    bl->in.size = sizeof *g;
    bl->enc = mg__encoders_pick(&c->model->encoders, &bl->in);
    if (bl->enc < 0)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "the model has no genomics encoder (metadata genome.*): it cannot "
                       "read polygenic scores");
    int32_t boi, eoi, img;
    mg_status st = mg__prompt_markers(c, &boi, &eoi, &img, err, errlen);
    return st ? st : answer_ids(c, yes, no, err, errlen);
}

/* P(yes) / (P(yes) + P(no)) from the logits. */
static double yes_risk(const float *logits, int32_t yes, int32_t no) {
    double d = (double)logits[no] - (double)logits[yes];
    return 1.0 / (1.0 + exp(d));
}

/* The user turn with the score block before the question:
 * <start_of_turn>user\n[system\n\n]\n\n<boi><eoi>\n\nQUESTION<end_of_turn>\n
 * <start_of_turn>model\n (Gemma 3's template for [image, text]). */
static void genome_prompt(mg__prompt *pr, const mg_model *m, const mg__gen_block *bl,
                          const mg_gen_params *gp, const char *question) {
    const mg__prompt_part parts[2] = {{NULL, bl, 1}, {question, NULL, 0}};
    mg__prompt_turn(pr, m, system_text(m, gp), parts, 2, 0);
}

typedef struct risk_hook { double *risk; int32_t yes, no; } risk_hook;

static mg_status take_risk(mg_context *c, void *user, char *err, size_t errlen) {
    (void)err, (void)errlen;
    risk_hook *h = user;
    if (h->risk) *h->risk = yes_risk(c->logits, h->yes, h->no);
    return MG_OK;
}

static mg_status check_scores(const double *scores, const char *const *names, size_t n,
                              char *err, size_t errlen) {
    if (!n || !scores || !names)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "no scores given (scores, names or n_scores)");
    return MG_OK;
}

/* mg_prs_predict once out or risk and question are known not NULL. */
static mg_status predict(char **out, double *risk, mg_context *c, const double *scores,
                         const char *const *names, size_t n_scores, const char *question,
                         const mg_gen_params *params, char *err, size_t errlen) {
    mg_gen_params gp;
    mg_status st;
    if ((st = check_scores(scores, names, n_scores, err, errlen)) ||
        (st = check_gen(params, err, errlen)) || (st = gen_params(&gp, params, err, errlen)))
        return st;
    if (!out) gp.max_tokens = 0;
    mg__genome_input g = {scores, names, n_scores};
    mg__gen_block bl;
    risk_hook h = {risk, 0, 0};
    if ((st = genome_block(c, &g, &bl, &h.yes, &h.no, err, errlen))) return st;
    mg__prompt pr = {0};
    genome_prompt(&pr, c->model, &bl, &gp, question);
    char *text = NULL;
    st = run_prompt_hook(out ? out : &text, c, &pr, &bl, 1, &gp, take_risk, &h, err, errlen);
    mg_string_free(text);
    return st;
}

MG_API mg_status mg_prs_predict(char **out, double *risk, mg_context *ctx,
                                const double *scores, const char *const *names,
                                size_t n_scores, const char *question,
                                const mg_gen_params *params) {
    if (out) *out = NULL;
    if (risk) *risk = NAN;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if ((!out && !risk) || !question)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG,
                     "question is NULL, or out and risk both are");
    else
        st = predict(out, risk, ctx, scores, names, n_scores, question, params, err, sizeof err);
    return mg__ctx_leave(ctx, st, "%s", err);
}

/* Every question's prompt for the score block bl, tokenized whole (as the
 * single call does); the text up to <eoi> is the same for all, so each
 * prompt is that prefix (*prefix: <bos> ... <boi> and the block's image
 * tokens, bl->at set), then its own tokens from <eoi> on (tail[q]). */
static mg_status question_ids(int32_t **prefix, size_t *n_prefix, int32_t **tail,
                              size_t *n_tail, const mg_context *c, mg__gen_block *bl,
                              const char *const *questions, size_t n_questions, char *err,
                              size_t errlen) {
    mg_gen_params gp;
    mg__gen_params_check(&gp, NULL);
    int32_t boi, eoi, img;
    mg__prompt_markers(c, &boi, &eoi, &img, err, errlen); /* genome_block checked them */
    const mg_tokenizer *tok = c->model->tokenizer;
    const uint32_t flags = MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL;
    const uint32_t nt = c->model->encoders.e[bl->enc].geo.n_tokens;
    mg_status st = MG_OK;
    for (size_t q = 0; q < n_questions && st == MG_OK; q++) {
        mg__prompt pr = {0};
        genome_prompt(&pr, c->model, bl, &gp, questions[q]);
        size_t n = 0;
        int32_t *ids = NULL;
        st = pr.bad ? MG_E_NOMEM : mg__prompt_tokenize(&ids, &n, tok, pr.p, pr.len, flags);
        mg__prompt_free(&pr);
        size_t e = 0, nb = 0;
        for (size_t i = 0; st == MG_OK && i < n; i++) {
            if (ids[i] == boi || ids[i] == img || ids[i] == eoi) nb++;
            if (ids[i] == eoi) e = i + 1;
        }
        if (st == MG_OK && nb != 2)
            st = mg__err(err, errlen, MG_E_INVALID_ARG,
                         "question %zu contains image marker tokens", q);
        /* The shared prefix ends with the image tokens; each question's
         * part starts at <eoi>, so it is read in one decoder call as the
         * single call reads it, giving the same numbers. */
        if (st == MG_OK && !*prefix) {
            *n_prefix = e - 1 + nt; /* <bos> ... <boi>, nt image tokens */
            *prefix = mg__calloc(*n_prefix, sizeof **prefix);
            if (!*prefix) st = MG_E_NOMEM;
            else {
                memcpy(*prefix, ids, (e - 1) * sizeof *ids);
                for (uint32_t t = 0; t < nt; t++) (*prefix)[e - 1 + t] = img;
                bl->at = e - 1;
            }
        }
        if (st == MG_OK) {
            n_tail[q] = n - (e - 1);
            tail[q] = mg__calloc(n_tail[q], sizeof **tail);
            if (!tail[q]) st = MG_E_NOMEM;
            else memcpy(tail[q], ids + e - 1, n_tail[q] * sizeof *ids);
        }
        mg__free(ids);
    }
    return st;
}

/* mg_prs_predict_batch once risk and questions are known not NULL and
 * the counts not 0. */
static mg_status predict_batch(double *risk, mg_context *c, const double *scores,
                               size_t n_individuals, const char *const *names, size_t n_scores,
                               const char *const *questions, size_t n_questions, char *errout,
                               size_t errlen) {
    size_t total;
    if (mg__mul_size(n_individuals, n_questions, &total))
        return mg__err(errout, errlen, MG_E_INVALID_ARG, "too many individuals x questions");
    for (size_t i = 0; i < total; i++) risk[i] = NAN;
    mg_status st = check_scores(scores, names, n_scores, errout, errlen);
    if (st) return st;
    for (size_t q = 0; q < n_questions; q++)
        if (!questions[q])
            return mg__err(errout, errlen, MG_E_INVALID_ARG, "questions[%zu] is NULL", q);
    mg__genome_input g = {scores, names, n_scores};
    mg__gen_block bl;
    int32_t yes, no;
    if ((st = genome_block(c, &g, &bl, &yes, &no, errout, errlen))) return st;
    int32_t **tail = mg__calloc(n_questions, sizeof *tail);
    size_t *n_tail = mg__calloc(n_questions, sizeof *n_tail);
    int32_t *prefix = NULL;
    size_t n_prefix = 0;
    char err[256] = "";
    if (!tail || !n_tail) st = MG_E_NOMEM;
    else st = question_ids(&prefix, &n_prefix, tail, n_tail, c, &bl, questions, n_questions,
                           err, sizeof err);
    for (size_t i = 0; i < n_individuals && st == MG_OK; i++) {
        g.scores = scores + i * n_scores;
        mg__ctx_seq_reset(c);
        st = mg__feed_prompt(c, prefix, n_prefix, &bl, 1, err, sizeof err);
        uint32_t at = mg__dstate_pos(c->dstate);
        for (size_t q = 0; q < n_questions && st == MG_OK; q++) {
            if (q && mg__ctx_seq_rewind(c, at) != MG_OK) st = MG_E_INTERNAL;
            if (st == MG_OK) st = mg__feed_prompt(c, tail[q], n_tail[q], NULL, 0, err, sizeof err);
            if (st == MG_OK) risk[i * n_questions + q] = yes_risk(c->logits, yes, no);
        }
    }
    for (size_t q = 0; tail && q < n_questions; q++) mg__free(tail[q]);
    mg__free(tail);
    mg__free(n_tail);
    mg__free(prefix);
    if (st != MG_OK && err[0]) mg__err(errout, errlen, st, "%s", err);
    return st;
}

MG_API mg_status mg_prs_predict_batch(double *risk, mg_context *ctx, const double *scores,
                                      size_t n_individuals, const char *const *names,
                                      size_t n_scores, const char *const *questions,
                                      size_t n_questions) {
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!risk || !questions || !n_questions || !n_individuals)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG,
                     "risk or questions is NULL, or a count is 0");
    else
        st = predict_batch(risk, ctx, scores, n_individuals, names, n_scores, questions,
                           n_questions, err, sizeof err);
    return mg__ctx_leave(ctx, st, "%s", err);
}

MG_API mg_status mg_prs_score_image(mg_image **out, const mg_model *model,
                                    const double *scores, const char *const *names,
                                    size_t n_scores, char *err, size_t errlen) {
    if (out) *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!mg__model_ok(model)) return mg__err(err, errlen, MG_E_MISUSE, "not a valid model handle");
    if (!out || !scores || !names || !n_scores)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "out, scores or names is NULL, or no scores");
    const mg__encoder *e = NULL;
    for (uint32_t i = 0; i < model->encoders.n; i++)
        if (model->encoders.e[i].vt == &mg__encoder_genome) e = &model->encoders.e[i];
    if (!e)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "the model has no genomics encoder (metadata genome.*)");
    uint32_t S;
    size_t tc;
    mg__genome_size(e->impl, &S, &tc);
    mg_image_params ip;
    mg__image_params_resolve(&ip, NULL);
    mg_image *img = NULL;
    mg_status st = mg__image_alloc(&img, S, S, MG_PIXEL_RGB8, MG_IMAGE_SRC_PIXELS, 8, &ip, err,
                                   errlen);
    if (st) return st;
    double *val = mg__calloc(tc, sizeof *val);
    uint8_t *seen = mg__calloc(tc, 1);
    mg__genome_input g = {scores, names, n_scores};
    if (!val || !seen) st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    else st = mg__genome_render(e->impl, &g, img->pixels, val, seen, err, errlen);
    mg__free(val);
    mg__free(seen);
    if (st) {
        mg_image_free(img);
        return st;
    }
    *out = img;
    return MG_OK;
}
