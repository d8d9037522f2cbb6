/* tasks.c - the task entry points: report generation and visual question
 * answering over images (prompt layout in docs/VISION.md) and over volumes
 * (docs/VOLUME.md), and
 * polygenic-risk prediction from the score image (docs/POLYGENIC.md). */
#include "api/api.h"

#include "io/image.h"
#include "io/volume.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Used when neither the caller nor the model's metadata gives one. */
#define MG__DEFAULT_REPORT_INSTRUCTION "Describe this X-ray."

static mg_status check_images(mg_context *ctx, const mg_image *const *images,
                              size_t n_images) {
    if (!images || n_images == 0)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "at least one image is required");
    if (n_images > 64)
        return mg__ctx_leave(ctx, MG_E_LIMIT, "%zu images in one call (limit 64)", n_images);
    for (size_t i = 0; i < n_images; i++)
        if (!images[i] || images[i]->tag != MG__TAG_IMAGE)
            return mg__ctx_leave(ctx, MG_E_MISUSE, "images[%zu] is not a valid image handle", i);
    return MG_OK;
}

static mg_status check_gen(mg_context *ctx, const mg_gen_params *params) {
    mg_gen_params p = MG_GEN_PARAMS_INIT;
    mg_status pst = mg__params_copy(&p, sizeof p, params);
    if (pst == MG_E_UNSUPPORTED)
        return mg__ctx_leave(ctx, pst, "mg_gen_params sets fields this version (%s) does not "
                             "know", MG_VERSION_STRING);
    if (pst != MG_OK)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "mg_gen_params.struct_size is invalid");
    if (!(p.temperature >= 0.0f) || !(p.top_p > 0.0f && p.top_p <= 1.0f) ||
        p.top_k < 0 || !(p.repetition_penalty > 0.0f) || (p.n_stop && !p.stop))
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "generation parameters out of range");
    return MG_OK;
}

/* A growing string for the prompt text. */
typedef struct sbuf { char *p; size_t len, cap; int bad; } sbuf;

static void sadd(sbuf *b, const char *s, size_t n) {
    if (b->bad) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = mg__realloc(b->p, cap);
        if (!p) {
            b->bad = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static void sadds(sbuf *b, const char *s) { sadd(b, s, strlen(s)); }

/* Appends s without leading and trailing whitespace (Jinja's trim, which
 * MedGemma's chat template applies to each user text item). */
static void sadd_trim(sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    sadd(b, s, n);
}

static const char *meta_str(const mg_model *m, const char *key, const char *dflt) {
    return mg__model_meta_str(m, key, dflt);
}

/* The image marker tokens, or an error when the model has none. */
static mg_status markers(mg_context *c, int32_t *boi, int32_t *eoi, int32_t *img) {
    const mg_tokenizer *tok = c->model->tokenizer;
    if (!c->dstate || !tok)
        return mg__ctx_leave(c, MG_E_UNSUPPORTED, "the model has no text decoder or tokenizer");
    *boi = mg_tokenizer_special(tok, MG_TOKEN_START_OF_IMAGE);
    *eoi = mg_tokenizer_special(tok, MG_TOKEN_END_OF_IMAGE);
    *img = mg_tokenizer_special(tok, MG_TOKEN_IMAGE);
    if (*boi < 0 || *eoi < 0 || *img < 0)
        return mg__ctx_leave(c, MG_E_UNSUPPORTED,
                             "the model's tokenizer has no image markers "
                             "(tokenizer.start_of_image_id, end_of_image_id, image_token_id)");
    return MG_OK;
}

/* Appends block b's place in the prompt as Gemma 3's processor writes an
 * image ("\n\n<boi><eoi>\n\n"; the image tokens are inserted after
 * tokenization), then the text the encoder puts after it. */
static void add_block(sbuf *sb, mg_context *c, const mg__gen_block *bl) {
    const mg_tokenizer *tok = c->model->tokenizer;
    const mg__encoder *e = &c->model->encoders.e[bl->enc];
    char label[96];
    sadds(sb, "\n\n");
    sadds(sb, mg_tokenizer_piece(tok, mg_tokenizer_special(tok, MG_TOKEN_START_OF_IMAGE)));
    sadds(sb, mg_tokenizer_piece(tok, mg_tokenizer_special(tok, MG_TOKEN_END_OF_IMAGE)));
    sadds(sb, "\n\n");
    label[0] = '\0';
    e->vt->block_label(e->impl, &bl->in, bl->in.block, label, sizeof label);
    sadd_trim(sb, label);
}

/* Tokenizes the prompt text sb (consumed; BOS first when bos is set) into
 * *all (*total ids), with each block's tokens after its <boi> marker and
 * blocks[].at set; `room` tokens must remain in the context besides them.
 * On failure the context is left with the error. */
static mg_status prompt_ids(mg_context *c, sbuf *sb, mg__gen_block *blocks, size_t n_blocks,
                            int bos, size_t room, int32_t **all_out, size_t *total_out) {
    const mg_model *m = c->model;
    const mg_tokenizer *tok = m->tokenizer;
    int32_t boi = -1, eoi = -1, img = -1;
    mg_status st = MG_OK;
    if (!tok || !c->dstate || n_blocks ||
        (mg_tokenizer_special(tok, MG_TOKEN_START_OF_IMAGE) >= 0 &&
         mg_tokenizer_special(tok, MG_TOKEN_END_OF_IMAGE) >= 0 &&
         mg_tokenizer_special(tok, MG_TOKEN_IMAGE) >= 0))
        st = markers(c, &boi, &eoi, &img);
    if (st) {
        mg__free(sb->p);
        return st;
    }
    if (sb->bad) {
        mg__free(sb->p);
        return mg__ctx_leave(c, MG_E_NOMEM, "out of memory");
    }
    const uint32_t flags = (bos ? MG_TOKENIZE_ADD_BOS : 0) | MG_TOKENIZE_PARSE_SPECIAL;
    size_t n = 0;
    st = mg_tokenize(NULL, 0, &n, tok, sb->p, sb->len, flags);
    int32_t *ids = NULL, *all = NULL;
    if (st == MG_OK || st == MG_E_BUFFER_TOO_SMALL) {
        ids = mg__calloc(n ? n : 1, sizeof *ids);
        st = ids ? mg_tokenize(ids, n, &n, tok, sb->p, sb->len, flags) : MG_E_NOMEM;
    }
    mg__free(sb->p);
    sb->p = NULL;
    if (st != MG_OK) {
        mg__free(ids);
        return mg__ctx_leave(c, st, "tokenizing the prompt failed");
    }
    /* Exactly one <boi><eoi> pair per block: marker text inside the
     * caller's strings would shift the images, so it is refused. */
    size_t nb = 0, total = n;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == img || ids[i] == eoi) bad |= i == 0 || ids[i - 1] != boi || ids[i] == img;
        if (ids[i] != boi) continue;
        if (i + 1 >= n || ids[i + 1] != eoi || nb >= n_blocks) bad = 1;
        else total += m->encoders.e[blocks[nb++].enc].geo.n_tokens;
    }
    if (bad || nb != n_blocks) {
        mg__free(ids);
        return mg__ctx_leave(c, MG_E_INVALID_ARG,
                             "the instruction, question or system text contains image "
                             "marker tokens");
    }
    if (total + room > c->params.n_ctx) {
        mg__free(ids);
        return mg__ctx_leave(c, MG_E_CONTEXT_FULL,
                             "the prompt with %zu image block(s) needs %zu tokens; the context "
                             "holds %u", n_blocks, total + room, c->params.n_ctx);
    }
    all = mg__calloc(total ? total : 1, sizeof *all);
    if (!all) {
        mg__free(ids);
        return mg__ctx_leave(c, MG_E_NOMEM, "out of memory");
    }
    size_t o = 0;
    nb = 0;
    for (size_t i = 0; i < n; i++) {
        all[o++] = ids[i];
        if (ids[i] != boi) continue;
        uint32_t nt = m->encoders.e[blocks[nb].enc].geo.n_tokens;
        blocks[nb++].at = o;
        for (uint32_t t = 0; t < nt; t++) all[o++] = img;
    }
    mg__free(ids);
    *all_out = all;
    *total_out = total;
    return MG_OK;
}

/* Tokenizes the prompt text sb (consumed), puts each block's tokens after
 * its <boi> marker, and generates. */
static mg_status run_prompt_hook(char **out, mg_context *c, sbuf *sb, mg__gen_block *blocks,
                                 size_t n_blocks, const mg_gen_params *gp, mg__prompt_hook hook,
                                 void *user) {
    int32_t *all = NULL;
    size_t total = 0;
    mg_status st = prompt_ids(c, sb, blocks, n_blocks, 1, 0, &all, &total);
    if (st) return st;
    st = mg__generate_with_hook(out, c, all, total, blocks, n_blocks, gp, hook, user);
    mg__free(all);
    return st;
}

static mg_status run_prompt(char **out, mg_context *c, sbuf *sb, mg__gen_block *blocks,
                            size_t n_blocks, const mg_gen_params *gp) {
    return run_prompt_hook(out, c, sb, blocks, n_blocks, gp, NULL, NULL);
}

/* Opens the user turn: <start_of_turn>user\n{system}\n\n */
static void open_turn(sbuf *sb, const mg_model *m, const mg_gen_params *gp) {
    const char *sys = gp->system_prompt ? gp->system_prompt
                                        : meta_str(m, "prompt.system_default", "");
    sadds(sb, meta_str(m, "prompt.turn_user", "<start_of_turn>user\n"));
    if (*sys) {
        sadds(sb, sys);
        sadds(sb, "\n\n");
    }
}

static void close_turn(sbuf *sb, const mg_model *m) {
    sadds(sb, meta_str(m, "prompt.turn_end", "<end_of_turn>\n"));
    sadds(sb, meta_str(m, "prompt.turn_model", "<start_of_turn>model\n"));
}

/* Report (question == NULL) or VQA over images, with the prompt laid out as
 * Hugging Face's Gemma 3 chat template and processor produce it for the
 * content [text, image, image, ...]. */
static mg_status multimodal(char **out, mg_context *c, const mg_image *const *images,
                            size_t n_images, const char *question,
                            const mg_gen_params *params) {
    mg_gen_params gp;
    mg_status gst = mg__gen_params_check(&gp, params);
    if (gst) return mg__gen_params_refuse(c, gst);
    const mg_model *m = c->model;
    mg__gen_block *blocks = mg__calloc(n_images, sizeof *blocks);
    if (!blocks) return mg__ctx_leave(c, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n_images; i++) {
        blocks[i].in.kind = MG__INPUT_IMAGE;
        blocks[i].in.image = images[i];
        blocks[i].enc = mg__encoders_pick(&m->encoders, &blocks[i].in);
        if (blocks[i].enc < 0) {
            mg__free(blocks);
            return mg__ctx_leave(c, MG_E_UNSUPPORTED,
                                 "the model has no image encoder (no vision tensors): "
                                 "it cannot read images");
        }
    }
    int32_t boi, eoi, img;
    mg_status st = markers(c, &boi, &eoi, &img);
    if (st) {
        mg__free(blocks);
        return st;
    }
    const char *text = question ? question
                     : gp.instruction ? gp.instruction
                     : meta_str(m, "prompt.report_instruction", MG__DEFAULT_REPORT_INSTRUCTION);
    sbuf sb = {0};
    open_turn(&sb, m, &gp);
    sadd_trim(&sb, text);
    for (size_t i = 0; i < n_images; i++) add_block(&sb, c, &blocks[i]);
    close_turn(&sb, m);
    st = run_prompt(out, c, &sb, blocks, n_images, &gp);
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

MG_API mg_status mg_chat(char **out, mg_context *ctx, const mg_image *const *images,
                         size_t n_images, const char *message, const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!out || !message)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out or message is NULL");
    if (n_images && (st = check_images(ctx, images, n_images))) return st;
    if ((st = check_gen(ctx, params))) return st;
    mg_context *c = ctx;
    if (c->params.flags & MG_CONTEXT_NO_REUSE)
        return mg__ctx_leave(c, MG_E_UNSUPPORTED,
                             "chat keeps the conversation in the context: it needs a context "
                             "made without MG_CONTEXT_NO_REUSE");
    if (!c->dstate || !c->model->tokenizer)
        return mg__ctx_leave(c, MG_E_UNSUPPORTED, "the model has no text decoder or tokenizer");
    mg_gen_params gp;
    mg_status gst = mg__gen_params_check(&gp, params);
    if (gst) return mg__gen_params_refuse(c, gst);
    const mg_model *m = c->model;
    /* The conversation goes on when the context still holds it. */
    int cont = c->n_chat > 0 && mg__dstate_pos(c->dstate) >= c->chat_pos;
    if (!cont) c->n_chat = 0;
    mg__gen_block *nb = n_images ? mg__calloc(n_images, sizeof *nb) : NULL;
    if (n_images && !nb) return mg__ctx_leave(c, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n_images; i++) {
        nb[i].in.kind = MG__INPUT_IMAGE;
        nb[i].in.image = images[i];
        nb[i].enc = mg__encoders_pick(&m->encoders, &nb[i].in);
        if (nb[i].enc < 0) {
            mg__free(nb);
            return mg__ctx_leave(c, MG_E_UNSUPPORTED,
                                 "the model has no image encoder (no vision tensors): "
                                 "it cannot read images");
        }
    }
    /* The new user turn, as Gemma 3's chat template writes a later turn:
     * the previous answer closed by <end_of_turn>, then the user turn with
     * the message and its images, then the model turn's opening. The first
     * turn starts with <bos> and the system text. */
    sbuf sb = {0};
    if (cont) {
        sadds(&sb, meta_str(m, "prompt.turn_end", "<end_of_turn>\n"));
        sadds(&sb, meta_str(m, "prompt.turn_user", "<start_of_turn>user\n"));
    } else {
        open_turn(&sb, m, &gp);
    }
    sadd_trim(&sb, message);
    for (size_t i = 0; i < n_images; i++) add_block(&sb, c, &nb[i]);
    close_turn(&sb, m);
    int32_t *turn = NULL;
    size_t n_turn = 0;
    if ((st = prompt_ids(c, &sb, nb, n_images, !cont, 0, &turn, &n_turn))) {
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
        return mg__ctx_leave(c, MG_E_CONTEXT_FULL,
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
        return mg__ctx_leave(c, st, "out of memory");
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
        st = mg__generate_with_blocks(out, c, ids, n_ids, blocks, n_blocks, &gp);
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
        st = mg__ctx_leave(c, st, "out of memory");
    }
    mg__free(keys);
    mg__free(ids);
    mg__free(blocks);
    mg__free(new_at);
    mg__free(nb);
    return st;
}

/* Report (question == NULL) or VQA over a volume: MedGemma 1.5's layout,
 * the content [preamble, slice 1, "SLICE 1", slice 2, "SLICE 2", ...,
 * text] through the same template (docs/VOLUME.md). */
static mg_status volumetric(char **out, mg_context *c, const mg_volume *volume,
                            const char *question, const mg_slice_params *sparams,
                            const mg_gen_params *params) {
    mg_gen_params gp;
    mg_status gst = mg__gen_params_check(&gp, params);
    if (gst) return mg__gen_params_refuse(c, gst);
    char err[256];
    mg__enc_input in;
    memset(&in, 0, sizeof in);
    in.kind = MG__INPUT_VOLUME;
    in.volume = volume;
    mg_status st = mg__slice_params_get(&in.slices, sparams, err, sizeof err);
    if (st) return mg__ctx_leave(c, st, "%s", err);
    const mg_model *m = c->model;
    int enc = mg__encoders_pick(&m->encoders, &in);
    if (enc < 0)
        return mg__ctx_leave(c, MG_E_UNSUPPORTED,
                             "the model has no volume encoder (no vision tensors): "
                             "it cannot read volumes");
    int32_t boi, eoi, img;
    if ((st = markers(c, &boi, &eoi, &img))) return st;
    const mg__encoder *e = &m->encoders.e[enc];
    uint32_t nb = e->vt->n_blocks(e->impl, &in);
    if (!nb) return mg__ctx_leave(c, MG_E_INVALID_ARG, "the volume gives no slices");
    /* Checked before anything is encoded or allocated per slice. */
    uint64_t need = (uint64_t)nb * e->geo.n_tokens;
    if (need > c->params.n_ctx)
        return mg__ctx_leave(c, MG_E_CONTEXT_FULL,
                             "%u slices need %llu image tokens; the context holds %u "
                             "(ask for fewer slices, or a larger context)",
                             (unsigned)nb, (unsigned long long)need, c->params.n_ctx);
    mg__gen_block *blocks = mg__calloc(nb, sizeof *blocks);
    if (!blocks) return mg__ctx_leave(c, MG_E_NOMEM, "out of memory");
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
    sbuf sb = {0};
    open_turn(&sb, m, &gp);
    sadd_trim(&sb, pre);
    for (uint32_t b = 0; b < nb; b++) add_block(&sb, c, &blocks[b]);
    sadd_trim(&sb, text);
    close_turn(&sb, m);
    st = run_prompt(out, c, &sb, blocks, nb, &gp);
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
    if (!out) return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out is NULL");
    if ((st = check_images(ctx, images, n_images))) return st;
    if ((st = check_gen(ctx, params))) return st;
    return multimodal(out, ctx, images, n_images, NULL, params);
}

MG_API mg_status mg_vqa(char **out, mg_context *ctx,
                        const mg_image *const *images, size_t n_images,
                        const char *question, const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!out || !question)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out or question is NULL");
    if ((st = check_images(ctx, images, n_images))) return st;
    if ((st = check_gen(ctx, params))) return st;
    return multimodal(out, ctx, images, n_images, question, params);
}

MG_API mg_status mg_generate_report_volume(char **out, mg_context *ctx,
                                           const mg_volume *volume,
                                           const mg_slice_params *slices,
                                           const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!out) return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out is NULL");
    if (!mg__volume_ok(volume))
        return mg__ctx_leave(ctx, MG_E_MISUSE, "volume is not a valid volume handle");
    if ((st = check_gen(ctx, params))) return st;
    return volumetric(out, ctx, volume, NULL, slices, params);
}

MG_API mg_status mg_vqa_volume(char **out, mg_context *ctx, const mg_volume *volume,
                               const char *question, const mg_slice_params *slices,
                               const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!out || !question)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "out or question is NULL");
    if (!mg__volume_ok(volume))
        return mg__ctx_leave(ctx, MG_E_MISUSE, "volume is not a valid volume handle");
    if ((st = check_gen(ctx, params))) return st;
    return volumetric(out, ctx, volume, question, slices, params);
}

/* ------------------------------------------------------------- polygenic */

/* The ids of the yes and no answer words (one token each). */
static mg_status answer_ids(mg_context *c, int32_t *yes, int32_t *no) {
    const mg_tokenizer *tok = c->model->tokenizer;
    const char *w[2] = {meta_str(c->model, "genome.answer_yes", "yes"),
                        meta_str(c->model, "genome.answer_no", "no")};
    int32_t id[2];
    for (int k = 0; k < 2; k++) {
        size_t n = 0;
        mg_status st = mg_tokenize(id + k, 1, &n, tok, w[k], strlen(w[k]), 0);
        if (st == MG_E_NOMEM) return mg__ctx_leave(c, st, "out of memory");
        if (st != MG_OK || n != 1)
            return mg__ctx_leave(c, MG_E_UNSUPPORTED,
                                 "the answer word '%s' is not one token of the model's tokenizer",
                                 w[k]);
    }
    *yes = id[0];
    *no = id[1];
    return MG_OK;
}

/* The score block of g: the model's genomics encoder on it, the markers
 * and the answer words' ids; on failure the context is left with the
 * error. */
static mg_status genome_block(mg_context *c, mg__genome_input *g, mg__gen_block *bl,
                              int32_t *yes, int32_t *no) {
    memset(bl, 0, sizeof *bl);
    bl->in.kind = MG__INPUT_GENOME;
    bl->in.data = g;
    bl->in.size = sizeof *g;
    bl->enc = mg__encoders_pick(&c->model->encoders, &bl->in);
    if (bl->enc < 0)
        return mg__ctx_leave(c, MG_E_UNSUPPORTED,
                             "the model has no genomics encoder (metadata genome.*): it cannot "
                             "read polygenic scores");
    int32_t boi, eoi, img;
    mg_status st = markers(c, &boi, &eoi, &img);
    return st ? st : answer_ids(c, yes, no);
}

/* P(yes) / (P(yes) + P(no)) from the logits. */
static double yes_risk(const float *logits, int32_t yes, int32_t no) {
    double d = (double)logits[no] - (double)logits[yes];
    return 1.0 / (1.0 + exp(d));
}

/* The user turn with the score block before the question:
 * <start_of_turn>user\n[system\n\n]\n\n<boi><eoi>\n\nQUESTION<end_of_turn>\n
 * <start_of_turn>model\n (Gemma 3's template for [image, text]). */
static void genome_prompt(sbuf *sb, mg_context *c, const mg__gen_block *bl,
                          const mg_gen_params *gp, const char *question) {
    open_turn(sb, c->model, gp);
    add_block(sb, c, bl);
    sadd_trim(sb, question);
    close_turn(sb, c->model);
}

typedef struct risk_hook { double *risk; int32_t yes, no; } risk_hook;

static mg_status take_risk(mg_context *c, void *user, char *err, size_t errlen) {
    (void)err, (void)errlen;
    risk_hook *h = user;
    if (h->risk) *h->risk = yes_risk(c->logits, h->yes, h->no);
    return MG_OK;
}

static mg_status check_scores(mg_context *c, const double *scores, const char *const *names,
                              size_t n) {
    if (!n || !scores || !names)
        return mg__ctx_leave(c, MG_E_INVALID_ARG, "no scores given (scores, names or n_scores)");
    return MG_OK;
}

MG_API mg_status mg_prs_predict(char **out, double *risk, mg_context *ctx,
                                const double *scores, const char *const *names,
                                size_t n_scores, const char *question,
                                const mg_gen_params *params) {
    if (out) *out = NULL;
    if (risk) *risk = NAN;
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if ((!out && !risk) || !question)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "question is NULL, or out and risk both are");
    if ((st = check_scores(ctx, scores, names, n_scores))) return st;
    if ((st = check_gen(ctx, params))) return st;
    mg_gen_params gp;
    mg_status gst = mg__gen_params_check(&gp, params);
    if (gst) return mg__gen_params_refuse(ctx, gst);
    if (!out) gp.max_tokens = 0;
    mg__genome_input g = {scores, names, n_scores};
    mg__gen_block bl;
    risk_hook h = {risk, 0, 0};
    if ((st = genome_block(ctx, &g, &bl, &h.yes, &h.no))) return st;
    sbuf sb = {0};
    genome_prompt(&sb, ctx, &bl, &gp, question);
    char *text = NULL;
    st = run_prompt_hook(out ? out : &text, ctx, &sb, &bl, 1, &gp, take_risk, &h);
    mg_string_free(text);
    return st;
}

MG_API mg_status mg_prs_predict_batch(double *risk, mg_context *ctx, const double *scores,
                                      size_t n_individuals, const char *const *names,
                                      size_t n_scores, const char *const *questions,
                                      size_t n_questions) {
    mg_status st = mg__ctx_enter(ctx);
    if (st) return st;
    if (!risk || !questions || !n_questions || !n_individuals)
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "risk or questions is NULL, or a count is 0");
    size_t total;
    if (mg__mul_size(n_individuals, n_questions, &total))
        return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "too many individuals x questions");
    for (size_t i = 0; i < total; i++) risk[i] = NAN;
    if ((st = check_scores(ctx, scores, names, n_scores))) return st;
    for (size_t q = 0; q < n_questions; q++)
        if (!questions[q]) return mg__ctx_leave(ctx, MG_E_INVALID_ARG, "questions[%zu] is NULL", q);
    mg_gen_params gp;
    mg__gen_params_check(&gp, NULL);
    mg__genome_input g = {scores, names, n_scores};
    mg__gen_block bl;
    int32_t boi, eoi, img, yes, no;
    if ((st = genome_block(ctx, &g, &bl, &yes, &no))) return st;
    markers(ctx, &boi, &eoi, &img); /* known to succeed: genome_block checked them */
    /* Every question's prompt, tokenized whole (as the single call does);
     * the text up to <eoi> is the same for all, so each prompt is that
     * prefix, then its own tokens from <eoi> on. */
    const mg_tokenizer *tok = ctx->model->tokenizer;
    const uint32_t flags = MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL;
    const uint32_t nt = ctx->model->encoders.e[bl.enc].geo.n_tokens;
    int32_t **tail = mg__calloc(n_questions, sizeof *tail);
    size_t *n_tail = mg__calloc(n_questions, sizeof *n_tail);
    int32_t *prefix = NULL;
    size_t n_prefix = 0;
    char err[256] = "";
    if (!tail || !n_tail) st = MG_E_NOMEM;
    for (size_t q = 0; q < n_questions && st == MG_OK; q++) {
        sbuf sb = {0};
        genome_prompt(&sb, ctx, &bl, &gp, questions[q]);
        size_t n = 0;
        int32_t *ids = NULL;
        if (sb.bad) st = MG_E_NOMEM;
        else {
            st = mg_tokenize(NULL, 0, &n, tok, sb.p, sb.len, flags);
            if (st == MG_OK || st == MG_E_BUFFER_TOO_SMALL) {
                ids = mg__calloc(n ? n : 1, sizeof *ids);
                st = ids ? mg_tokenize(ids, n, &n, tok, sb.p, sb.len, flags) : MG_E_NOMEM;
            }
        }
        mg__free(sb.p);
        size_t e = 0, nb = 0;
        for (size_t i = 0; st == MG_OK && i < n; i++) {
            if (ids[i] == boi || ids[i] == img || ids[i] == eoi) nb++;
            if (ids[i] == eoi) e = i + 1;
        }
        if (st == MG_OK && nb != 2) {
            st = MG_E_INVALID_ARG;
            snprintf(err, sizeof err, "question %zu contains image marker tokens", q);
        }
        /* The shared prefix ends with the image tokens; each question's
         * part starts at <eoi>, so it is read in one decoder call as the
         * single call reads it, giving the same numbers. */
        if (st == MG_OK && !prefix) {
            n_prefix = e - 1 + nt; /* <bos> ... <boi>, nt image tokens */
            prefix = mg__calloc(n_prefix, sizeof *prefix);
            if (!prefix) st = MG_E_NOMEM;
            else {
                memcpy(prefix, ids, (e - 1) * sizeof *ids);
                for (uint32_t t = 0; t < nt; t++) prefix[e - 1 + t] = img;
                bl.at = e - 1;
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
    for (size_t i = 0; i < n_individuals && st == MG_OK; i++) {
        g.scores = scores + i * n_scores;
        mg__ctx_seq_reset(ctx);
        st = mg__feed_prompt(ctx, prefix, n_prefix, &bl, 1, err, sizeof err);
        uint32_t at = mg__dstate_pos(ctx->dstate);
        for (size_t q = 0; q < n_questions && st == MG_OK; q++) {
            if (q && mg__ctx_seq_rewind(ctx, at) != MG_OK) st = MG_E_INTERNAL;
            if (st == MG_OK) st = mg__feed_prompt(ctx, tail[q], n_tail[q], NULL, 0, err, sizeof err);
            if (st == MG_OK) risk[i * n_questions + q] = yes_risk(ctx->logits, yes, no);
        }
    }
    for (size_t q = 0; tail && q < n_questions; q++) mg__free(tail[q]);
    mg__free(tail);
    mg__free(n_tail);
    mg__free(prefix);
    if (st == MG_OK) return mg__ctx_leave(ctx, MG_OK, NULL);
    return mg__ctx_leave(ctx, st, "%s", err[0] ? err : mg_status_str(st));
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
