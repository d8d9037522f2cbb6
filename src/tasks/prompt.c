/* prompt.c - prompts in the model's chat template and their token ids. */
#include "tasks/prompt.h"

#include "llm/tokenizer.h"

#include <ctype.h>
#include <string.h>

static void add(mg__prompt *pr, const char *s, size_t n) {
    if (pr->bad) return;
    if (pr->len + n + 1 > pr->cap) {
        size_t cap = pr->cap ? pr->cap : 512;
        while (cap < pr->len + n + 1) cap *= 2;
        char *p = mg__realloc(pr->p, cap);
        if (!p) {
            pr->bad = 1;
            return;
        }
        pr->p = p;
        pr->cap = cap;
    }
    memcpy(pr->p + pr->len, s, n);
    pr->len += n;
    pr->p[pr->len] = '\0';
}

/* s, or nothing for NULL (a marker the tokenizer lacks: mg__prompt_ids
 * then refuses the prompt). */
static void adds(mg__prompt *pr, const char *s) {
    if (s) add(pr, s, strlen(s));
}

/* Appends s without leading and trailing whitespace (Jinja's trim, which
 * MedGemma's chat template applies to each user text item). */
static void add_trim(mg__prompt *pr, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    add(pr, s, n);
}

static void add_meta(mg__prompt *pr, const mg_model *m, const char *key, const char *dflt) {
    adds(pr, mg__model_meta_str(m, key, dflt));
}

/* Block bl's place in the prompt as Gemma 3's processor writes an image
 * ("\n\n<boi><eoi>\n\n"; the image tokens are inserted after tokenization),
 * then the text the encoder puts after it. */
static void add_block(mg__prompt *pr, const mg_model *m, const mg__gen_block *bl) {
    const mg_tokenizer *tok = m->tokenizer;
    const mg__encoder *e = &m->encoders.e[bl->enc];
    char label[96];
    adds(pr, "\n\n");
    adds(pr, mg_tokenizer_piece(tok, mg_tokenizer_special(tok, MG_TOKEN_START_OF_IMAGE)));
    adds(pr, mg_tokenizer_piece(tok, mg_tokenizer_special(tok, MG_TOKEN_END_OF_IMAGE)));
    adds(pr, "\n\n");
    label[0] = '\0';
    e->vt->block_label(e->impl, &bl->in, bl->in.block, label, sizeof label);
    add_trim(pr, label);
}

void mg__prompt_turn(mg__prompt *pr, const mg_model *m, const char *system,
                     const mg__prompt_part *parts, size_t n_parts, uint32_t flags) {
    if (flags & MG__TURN_LATER) {
        add_meta(pr, m, "prompt.turn_end", "<end_of_turn>\n");
        add_meta(pr, m, "prompt.turn_user", "<start_of_turn>user\n");
    } else {
        add_meta(pr, m, "prompt.turn_user", "<start_of_turn>user\n");
        if (system && *system) {
            adds(pr, system);
            adds(pr, "\n\n");
        }
    }
    for (size_t i = 0; i < n_parts; i++) {
        const mg__prompt_part *pt = &parts[i];
        if (pt->text && (flags & MG__TURN_VERBATIM)) adds(pr, pt->text);
        else if (pt->text) add_trim(pr, pt->text);
        for (size_t b = 0; !pt->text && b < pt->n_blocks; b++) add_block(pr, m, &pt->blocks[b]);
    }
    add_meta(pr, m, "prompt.turn_end", "<end_of_turn>\n");
    add_meta(pr, m, "prompt.turn_model", "<start_of_turn>model\n");
}

void mg__prompt_free(mg__prompt *pr) {
    mg__free(pr->p);
    pr->p = NULL;
    pr->len = pr->cap = 0;
}

mg_status mg__prompt_tokenize(int32_t **ids, size_t *n, const mg_tokenizer *tok,
                              const char *text, size_t len, uint32_t flags) {
    *ids = NULL;
    *n = 0;
    size_t k = 0;
    mg_status st = mg_tokenize(NULL, 0, &k, tok, text, len, flags);
    if (st != MG_OK && st != MG_E_BUFFER_TOO_SMALL) return st;
    int32_t *p = mg__calloc(k ? k : 1, sizeof *p);
    if (!p) return MG_E_NOMEM;
    st = mg_tokenize(p, k, &k, tok, text, len, flags);
    if (st != MG_OK) {
        mg__free(p);
        return st;
    }
    *ids = p;
    *n = k;
    return MG_OK;
}

mg_status mg__prompt_markers(const mg_context *c, int32_t *boi, int32_t *eoi, int32_t *img,
                             char *err, size_t errlen) {
    const mg_tokenizer *tok = c->model->tokenizer;
    if (!c->dstate || !tok)
        return mg__err(err, errlen, MG_E_UNSUPPORTED, "the model has no text decoder or tokenizer");
    *boi = mg_tokenizer_special(tok, MG_TOKEN_START_OF_IMAGE);
    *eoi = mg_tokenizer_special(tok, MG_TOKEN_END_OF_IMAGE);
    *img = mg_tokenizer_special(tok, MG_TOKEN_IMAGE);
    if (*boi < 0 || *eoi < 0 || *img < 0)
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "the model's tokenizer has no image markers "
                       "(tokenizer.start_of_image_id, end_of_image_id, image_token_id)");
    return MG_OK;
}

mg_status mg__prompt_ids(int32_t **all_out, size_t *total_out, const mg_context *c,
                         mg__prompt *pr, mg__gen_block *blocks, size_t n_blocks, int bos,
                         size_t room, char *err, size_t errlen) {
    const mg_model *m = c->model;
    const mg_tokenizer *tok = m->tokenizer;
    int32_t boi = -1, eoi = -1, img = -1;
    mg_status st = MG_OK;
    /* a text prompt of a model without image markers needs none */
    if (!tok || !c->dstate || n_blocks ||
        (mg_tokenizer_special(tok, MG_TOKEN_START_OF_IMAGE) >= 0 &&
         mg_tokenizer_special(tok, MG_TOKEN_END_OF_IMAGE) >= 0 &&
         mg_tokenizer_special(tok, MG_TOKEN_IMAGE) >= 0))
        st = mg__prompt_markers(c, &boi, &eoi, &img, err, errlen);
    if (st == MG_OK && pr->bad) st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    int32_t *ids = NULL;
    size_t n = 0;
    if (st == MG_OK) {
        const uint32_t flags = (bos ? MG_TOKENIZE_ADD_BOS : 0) | MG_TOKENIZE_PARSE_SPECIAL;
        st = mg__prompt_tokenize(&ids, &n, tok, pr->p, pr->len, flags);
        if (st != MG_OK) mg__err(err, errlen, st, "tokenizing the prompt failed");
    }
    mg__prompt_free(pr);
    if (st != MG_OK) return st;
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
    int32_t *all = NULL;
    if (bad || nb != n_blocks)
        st = mg__err(err, errlen, MG_E_INVALID_ARG,
                     "the instruction, question or system text contains image marker tokens");
    else if (total + room > c->params.n_ctx)
        st = mg__err(err, errlen, MG_E_CONTEXT_FULL,
                     "the prompt with %zu image block(s) needs %zu tokens; the context holds %u",
                     n_blocks, total + room, c->params.n_ctx);
    else if (!(all = mg__calloc(total ? total : 1, sizeof *all)))
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    if (st != MG_OK) {
        mg__free(ids);
        return st;
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
