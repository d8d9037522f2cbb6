/* generate.c - text generation over a context: feeding tokens through the
 * decoder, sampling, stop conditions, streaming. */
#include "tasks/generate.h"

#include "core/sha256.h"
#include "io/image.h"
#include "io/volume.h"
#include "llm/tokenizer.h"
#include "tasks/batch.h"
#include "tasks/prompt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MG__MAX_STOP 16u
#define MG__MAX_STOP_LEN 256u

/* ---------------------------------------------------------------- progress */

#define MG__PROGRESS_EVERY_S 0.1

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Reports c->prog->p to the callback when force is set or enough time
 * passed; nonzero when the call must stop (the callback said so now or
 * before, or mg_context_interrupt). */
static int prog_emit(mg_context *c, int force) {
    if (atomic_load(&c->interrupt)) return 1;
    mg__progress *g = c->prog;
    if (!g) return 0;
    if (g->stop) return 1;
    double t = now_s();
    if (!force && t - g->last < MG__PROGRESS_EVERY_S) return 0;
    g->last = t;
    g->p.seconds = t - g->t0;
    if (g->fn(g->user, &g->p)) g->stop = 1;
    return g->stop;
}

static void prog_stage(mg_context *c, int32_t stage, uint32_t n_steps) {
    if (!c->prog) return;
    c->prog->p.stage = stage;
    c->prog->p.step = 0;
    c->prog->p.n_steps = n_steps;
}

/* The decoder's per-layer hook: interrupts and progress inside a batch. */
int mg__ctx_decoder_hook(void *user, uint32_t layer, uint32_t n_layers, uint32_t n_tokens) {
    mg_context *c = user;
    if (c->prog && c->prog->p.stage == MG_STAGE_PREFILL) {
        c->prog->p.step = layer;
        c->prog->p.n_steps = n_layers;
    }
    return prog_emit(c, 0);
}

/* The encoders' step callback; step 0 is the block's first report. */
static int enc_step(void *user, uint32_t done, uint32_t total) {
    mg_context *c = user;
    if (c->prog) {
        c->prog->p.step = done;
        c->prog->p.n_steps = total;
    }
    return prog_emit(c, done == 0);
}

/* Appends n ids to the sequence; logits of every id go to `all` (n rows)
 * when it is not NULL, else the last id's logits go to ctx->logits. */
static mg_status feed_with(mg_context *c, const int32_t *ids, size_t n, float *all,
                           mg__pool *pool) {
    uint32_t pos = mg__dstate_pos(c->dstate);
    if (n > (size_t)c->params.n_ctx - pos) return MG_E_CONTEXT_FULL;
    if (n) c->logits_valid = 0;
    for (size_t off = 0; off < n;) {
        if (atomic_load(&c->interrupt)) return MG_E_INTERRUPTED;
        uint32_t chunk = (uint32_t)(n - off < c->max_batch ? n - off : c->max_batch);
        float *dst = all ? all + off * c->n_vocab : c->logits;
        mg_status st = mg__decoder_forward(c->dstate, ids + off, NULL, NULL, chunk, dst,
                                           all != NULL, pool);
        if (st != MG_OK) return st;
        memcpy(c->history + pos + off, ids + off, chunk * sizeof(int32_t));
        off += chunk;
        if (c->prog && c->prog->p.stage == MG_STAGE_PREFILL) {
            c->prog->p.done += chunk;
            if (prog_emit(c, 0)) return MG_E_INTERRUPTED;
        }
    }
    if (all && n) memcpy(c->logits, all + (n - 1) * c->n_vocab, c->n_vocab * sizeof(float));
    if (n) c->logits_valid = 1;
    return MG_OK;
}

static mg_status feed(mg_context *c, const int32_t *ids, size_t n, float *all) {
    return feed_with(c, ids, n, all, c->pool);
}

/* The helpers below return a status and write their message into the
 * call's error buffer (err); the public functions enter and leave the
 * context (api.h). */

static mg_status need_text(const mg_context *c, char *err, size_t errlen) {
    if (!c->dstate) return mg__err(err, errlen, MG_E_UNSUPPORTED, "the model has no text decoder");
    return MG_OK;
}

static mg_status check_ids(const mg_context *c, const int32_t *ids, size_t n, char *err,
                           size_t errlen) {
    if (n && !ids) return mg__err(err, errlen, MG_E_INVALID_ARG, "ids is NULL");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= c->n_vocab)
            return mg__err(err, errlen, MG_E_INVALID_ARG,
                           "token id %d at %zu is out of range [0, %u)", ids[i], i, c->n_vocab);
    return MG_OK;
}

static mg_status eval(mg_context *c, const int32_t *ids, size_t n, float *logits, size_t cap,
                      char *err, size_t errlen) {
    mg_status st;
    if ((st = need_text(c, err, errlen)) || (st = check_ids(c, ids, n, err, errlen))) return st;
    size_t need;
    if (logits && (mg__mul_size(n, c->n_vocab, &need) || cap < need))
        return mg__err(err, errlen, MG_E_BUFFER_TOO_SMALL, "logits needs %zu x %u floats", n,
                       c->n_vocab);
    st = feed(c, ids, n, logits);
    if (st == MG_E_CONTEXT_FULL) mg__err(err, errlen, st, "the context holds %u tokens",
                                         c->params.n_ctx);
    return st;
}

MG_API mg_status mg_context_eval(mg_context *c, const int32_t *ids, size_t n,
                                 float *logits, size_t cap) {
    mg_status st = mg__ctx_enter(c);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    st = eval(c, ids, n, logits, cap, err, sizeof err);
    return mg__ctx_leave(c, st, "%s", err);
}

MG_API mg_status mg_context_reset(mg_context *c) {
    mg_status st = mg__ctx_enter(c);
    if (st) return st;
    mg__ctx_seq_reset(c);
    return mg__ctx_leave(c, MG_OK, NULL);
}

static mg_status logits_copy(const mg_context *c, float *logits, size_t cap, char *err,
                             size_t errlen) {
    mg_status st = need_text(c, err, errlen);
    if (st) return st;
    if (!logits) return mg__err(err, errlen, MG_E_INVALID_ARG, "logits is NULL");
    if (cap < c->n_vocab)
        return mg__err(err, errlen, MG_E_BUFFER_TOO_SMALL, "logits needs %u floats", c->n_vocab);
    if (!c->logits_valid || !mg__dstate_pos(c->dstate))
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "no decoder step since the sequence was emptied: no logits");
    memcpy(logits, c->logits, (size_t)c->n_vocab * sizeof(float));
    return MG_OK;
}

MG_API mg_status mg_context_logits(mg_context *c, float *logits, size_t cap) {
    mg_status st = mg__ctx_enter(c);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    st = logits_copy(c, logits, cap, err, sizeof err);
    return mg__ctx_leave(c, st, "%s", err);
}

MG_API uint32_t mg_context_n_tokens(const mg_context *c) {
    if (!c || c->tag != MG__TAG_CONTEXT || !c->dstate) return 0;
    return mg__dstate_pos(c->dstate);
}

static mg_status tokens_copy(int32_t *ids, size_t cap, size_t *needed, const mg_context *c,
                             char *err, size_t errlen) {
    mg_status st = need_text(c, err, errlen);
    if (st) return st;
    uint32_t n = mg__dstate_pos(c->dstate);
    if (needed) *needed = n;
    if (!ids && cap) return mg__err(err, errlen, MG_E_INVALID_ARG, "ids is NULL");
    if (cap < n)
        return mg__err(err, errlen, MG_E_BUFFER_TOO_SMALL, "the sequence holds %u tokens", n);
    if (n) memcpy(ids, c->history, (size_t)n * sizeof *ids);
    return MG_OK;
}

MG_API mg_status mg_context_tokens(int32_t *ids, size_t cap, size_t *needed,
                                   mg_context *c) {
    mg_status st = mg__ctx_enter(c);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    st = tokens_copy(ids, cap, needed, c, err, sizeof err);
    return mg__ctx_leave(c, st, "%s", err);
}

/* A growing output string. */
typedef struct obuf { char *p; size_t len, cap; } obuf;

static int obuf_add(obuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = mg__realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Generated bytes pass through this decoder on their way into the output,
 * so the text (and every streamed piece) is valid UTF-8: byte-fallback
 * tokens that do not form a valid sequence, and NUL bytes, become U+FFFD,
 * as a lossy UTF-8 decode would render them. An incomplete sequence waits
 * for the next token. */
typedef struct u8dec { unsigned char b[4]; int n, need; } u8dec;

static int put_fffd(obuf *o) { return obuf_add(o, "\xef\xbf\xbd", 3); }

static int u8_push(obuf *o, u8dec *d, unsigned char c) {
    if (d->n) {
        unsigned char lo = 0x80, hi = 0xbf, lead = d->b[0];
        if (d->n == 1) { /* second byte ranges exclude overlongs and surrogates */
            if (lead == 0xe0) lo = 0xa0;
            else if (lead == 0xed) hi = 0x9f;
            else if (lead == 0xf0) lo = 0x90;
            else if (lead == 0xf4) hi = 0x8f;
        }
        if (c >= lo && c <= hi) {
            d->b[d->n++] = c;
            if (d->n < d->need) return 0;
            int r = obuf_add(o, (const char *)d->b, (size_t)d->n);
            d->n = 0;
            return r;
        }
        d->n = 0;
        if (put_fffd(o)) return -1;
    }
    if (c >= 0x01 && c < 0x80) return obuf_add(o, (const char *)&c, 1);
    if (c >= 0xc2 && c <= 0xf4) {
        d->b[0] = c;
        d->n = 1;
        d->need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        return 0;
    }
    return put_fffd(o);
}

static int u8_flush(obuf *o, u8dec *d) {
    if (!d->n) return 0;
    d->n = 0;
    return put_fffd(o);
}

/* Output side of generation: the text so far, streaming and stop strings. */
typedef struct gen_out {
    const mg_gen_params *p;
    const mg_tokenizer *tok;
    obuf *out;
    size_t hold, emitted;
    int cb_stopped; /* on_token asked to stop */
    int32_t last;
    u8dec u8;
} gen_out;

/* Takes token t into the text: *done when a stop string ended it. Errors:
 * MG_E_INTERRUPTED (the streaming callback said stop), MG_E_NOMEM,
 * MG_E_INTERNAL. */
static mg_status take(gen_out *g, int32_t t, int *done) {
    const mg_gen_params *p = g->p;
    obuf *out = g->out;
    char piece[512];
    size_t n = 0;
    *done = 0;
    g->last = t;
    mg_status st = mg_detokenize(piece, sizeof piece, &n, g->tok, &t, 1,
                                 MG_DETOKENIZE_SKIP_SPECIAL);
    if (st != MG_OK) return st == MG_E_BUFFER_TOO_SMALL ? MG_E_INTERNAL : st;
    size_t before = out->len;
    for (size_t j = 0; j < n; j++)
        if (u8_push(out, &g->u8, (unsigned char)piece[j])) return MG_E_NOMEM;
    /* Stop strings: look only where the new piece could complete one. */
    for (uint32_t k = 0; k < p->n_stop && !*done; k++) {
        size_t l = strlen(p->stop[k]);
        if (!l) continue;
        size_t from = before >= l - 1 ? before - (l - 1) : 0;
        for (size_t j = from; j + l <= out->len; j++)
            if (!memcmp(out->p + j, p->stop[k], l)) {
                out->len = j;
                out->p[j] = '\0';
                *done = 1;
                break;
            }
    }
    if (p->on_token) {
        size_t safe = *done ? out->len : (out->len > g->hold ? out->len - g->hold : 0);
        if (safe < g->emitted) safe = g->emitted;
        while (safe > g->emitted && safe < out->len && ((unsigned char)out->p[safe] & 0xc0) == 0x80)
            safe--;
        if (safe > g->emitted) {
            int stop = p->on_token(p->user_data, out->p + g->emitted, safe - g->emitted, t) != 0;
            g->emitted = safe;
            if (stop) {
                g->cb_stopped = 1;
                return MG_E_INTERRUPTED;
            }
        }
    }
    return MG_OK;
}

/* Speculative decoding by n-gram lookup: the draft is what followed the
 * most recent earlier occurrence of the sequence's last MG__DRAFT_NGRAM
 * (then fewer, down to 2) tokens, at most MG__DRAFT_MAX tokens, stopping
 * at an image placeholder; a continuation that reaches the end of the
 * sequence goes on with the draft itself (a repeating pattern repeats). */
#define MG__DRAFT_NGRAM 3u
#define MG__DRAFT_MAX 4u
#define MG__DRAFT_PAUSE 4u

static uint32_t draft_ngram(const int32_t *s, uint32_t len, int32_t img, int32_t *d,
                            uint32_t kmax) {
    for (uint32_t n = MG__DRAFT_NGRAM; n >= 2; n--) {
        if (len <= n) continue;
        const int32_t *tail = s + len - n;
        for (uint32_t at = len - n; at-- > 0;) {
            if (s[at] != tail[0] || memcmp(s + at, tail, n * sizeof *s)) continue;
            uint32_t k = 0;
            for (; k < kmax; k++) {
                uint32_t from = at + n + k;
                int32_t v = from < len ? s[from] : d[from - len];
                if (v == img) break;
                d[k] = v;
            }
            if (k) return k;
        }
    }
    return 0;
}

static int reuse_on(const mg_context *c);

/* A draft model's context during a call (mg_gen_params.draft): it holds
 * the text tokens of the generating context's sequence, which sit `off`
 * positions later there (the encoder blocks before them); q holds the
 * draft's distributions (n_max rows of n_vocab) when sampling. */
#define MG__DRAFT_CAP 16u
#define MG__DRAFT_DEFAULT 4u

typedef struct draft_run {
    mg_context *held;          /* the draft context the call holds, or NULL */
    mg_context *dc;            /* NULL: none, or given up */
    uint32_t off, n_max;
    float *q;
    mg__pool *pool;            /* the threads the draft runs on */
} draft_run;

/* Stops drafting with the model for the rest of the call. */
static void draft_drop(draft_run *dr) {
    dr->dc = NULL;
}

/* Brings the draft context to the text of c's sequence: keeps what it
 * already holds of it, feeds the rest. An interrupt of c stops it (and
 * drafting; generation then sees the interrupt). */
static void draft_start(draft_run *dr, mg_context *c, int sampling) {
    mg_context *dc = dr->dc;
    uint32_t pos = mg__dstate_pos(c->dstate), n = 0;
    int32_t *text = mg__malloc((size_t)(pos ? pos : 1) * sizeof *text);
    if (!text || (sampling && !(dr->q = mg__malloc((size_t)dr->n_max * c->n_vocab *
                                                  sizeof *dr->q)))) {
        mg__free(text);
        draft_drop(dr);
        return;
    }
    for (uint32_t i = 0, h = 0; i < pos;) {
        while (h < c->n_held && c->held[h].at + c->held[h].n <= i) h++;
        if (h < c->n_held && c->held[h].at <= i) {
            i = c->held[h].at + c->held[h].n;
            continue;
        }
        text[n++] = c->history[i++];
    }
    dr->off = pos - n;
    uint32_t have = mg__dstate_pos(dc->dstate), L = 0;
    if (reuse_on(dc))
        while (L < have && L < n && dc->history[L] == text[L]) L++;
    if (L < have && (!reuse_on(dc) || mg__ctx_seq_rewind(dc, L) != MG_OK)) {
        mg__ctx_seq_reset(dc);
        L = 0;
    }
    /* in batches, so that mg_context_interrupt and the progress callback
     * of the generating call are heard while a long prompt is read */
    for (uint32_t at = L; at < n && dr->dc;) {
        uint32_t chunk = n - at < dc->max_batch ? n - at : dc->max_batch;
        if (prog_emit(c, 0) || feed_with(dc, text + at, chunk, NULL, dr->pool) != MG_OK)
            draft_drop(dr);
        at += chunk;
    }
    mg__free(text);
}

/* Drafts up to kmax tokens into d[1..] after t = c->history[pos] (not yet
 * fed): the draft context reads what it lacks of c's sequence up to t,
 * then takes its own choices one by one. Returns the count; on a failure
 * of the draft context, drafting stops for the call. */
static uint32_t draft_model(draft_run *dr, mg_context *c, uint32_t pos, const mg__sampling *sp,
                            int32_t *d, uint32_t kmax, int32_t eos, int32_t eot) {
    mg_context *dc = dr->dc;
    const size_t V = c->n_vocab;
    uint32_t k = 0;
    for (; k < kmax; k++) {
        uint32_t have = mg__dstate_pos(dc->dstate) + dr->off;
        mg_status st = k ? feed_with(dc, &d[k], 1, NULL, dr->pool)
                         : have <= pos ? feed_with(dc, c->history + have, pos + 1 - have, NULL,
                                                   dr->pool)
                                       : MG_E_INTERNAL;
        if (st != MG_OK) {
            draft_drop(dr);
            return 0;
        }
        uint32_t dpos = mg__dstate_pos(dc->dstate);
        if (dr->q) {
            mg__tokp *dist;
            uint32_t nd = mg__sample_dist(&dist, dc->logits, dc->n_vocab, sp, dc->history, dpos,
                                          dc->sampler_scratch);
            float *q = dr->q + (size_t)k * V;
            memset(q, 0, V * sizeof *q);
            for (uint32_t i = 0; i < nd; i++) q[dist[i].id] = dist[i].p;
            d[k + 1] = mg__sample_from(dist, nd, &c->rng);
        } else {
            d[k + 1] = mg__sample(dc->logits, dc->n_vocab, sp, dc->history, dpos, &c->rng,
                                  dc->sampler_scratch);
        }
        if (d[k + 1] == eos || d[k + 1] == eot) return k + 1;
    }
    return k;
}

/* Generates from the logits in ctx->logits (the sequence is already fed).
 * Speculative decoding (a draft model, dr->dc, or MG_GEN_DRAFT_NGRAM): a
 * drafted continuation is fed with the chosen token in one decoder call in
 * exact mode (every row computed as that token alone would be:
 * mg__dstate_set_exact), so row j holds the very scores plain decoding
 * would choose the token after d[j] from. Greedy: a drafted token stands
 * while it is the one greedy decoding takes from the row before it, so the
 * text, the sequence and the final logits are bit for bit those of plain
 * decoding. Sampling: each drafted token stands or is replaced as
 * speculative sampling decides (mg__spec_verify against the sampler's
 * distribution of the row before it), so the text has plain sampling's
 * distribution. */
static mg_status gen_loop(mg_context *c, const mg_gen_params *p, obuf *out, draft_run *dr) {
    const mg_tokenizer *tok = c->model->tokenizer; /* also while the model lingers freed */
    if (!tok) return MG_E_UNSUPPORTED;
    int32_t eos = mg_tokenizer_special(tok, MG_TOKEN_EOS);
    int32_t eot = mg_tokenizer_special(tok, MG_TOKEN_END_OF_TURN);
    mg__sampling sp = {p->temperature, p->top_k, p->top_p, p->repetition_penalty};
    if (p->seed) mg__rng_seed(&c->rng, p->seed);
    gen_out g = {p, tok, out, 0, 0, 0, -1, {{0}, 0, 0}};
    for (uint32_t i = 0; i < p->n_stop; i++) {
        size_t l = strlen(p->stop[i]);
        if (l > g.hold) g.hold = l;
    }
    g.hold = g.hold ? g.hold - 1 : 0;
    const int32_t img = mg_tokenizer_special(tok, MG_TOKEN_IMAGE);
    const int exact = c->max_batch > 1 && mg__dstate_set_exact(c->dstate, 1) == MG_OK &&
                      mg__dstate_set_exact(c->dstate, 0) == MG_OK;
    const int sampling = p->temperature > 0.0f;
    if (!exact || p->max_tokens < 2) draft_drop(dr);
    if (dr->dc) draft_start(dr, c, sampling);
    const int ngram = exact && !dr->dc && (p->flags & MG_GEN_DRAFT_NGRAM);
    const size_t V = c->n_vocab;
    mg_status st = MG_OK;
    c->last_tok = -1;
    prog_stage(c, MG_STAGE_GENERATE, 0);
    if (c->prog) c->prog->p.total = p->max_tokens;
    int32_t next = -1; /* a token already chosen from row 0 */
    uint32_t i = 0;
    /* Draft length: a verifying call of 1 + k rows costs about 1 + 0.6 k
     * single steps (MedGemma 4B q4_0, 2 threads), so drafts grow while they
     * are kept whole and shrink when refused; after a wholly refused one,
     * drafting pauses for MG__DRAFT_PAUSE tokens. */
    const uint32_t kcap = dr->dc ? dr->n_max : MG__DRAFT_MAX;
    uint32_t klen = dr->dc ? dr->n_max : 2, pause = 0;
    while (i < p->max_tokens) {
        if (c->prog) c->prog->p.done = i;
        if (prog_emit(c, i == 0)) { st = MG_E_INTERRUPTED; break; }
        const uint32_t pos = mg__dstate_pos(c->dstate);
        int32_t t = next >= 0 ? next
                              : mg__sample(c->logits, c->n_vocab, &sp, c->history, pos, &c->rng,
                                           c->sampler_scratch);
        next = -1;
        if (t == eos || t == eot) break;
        int done = 0;
        if ((st = take(&g, t, &done)) != MG_OK) break;
        i++;
        if (done || i == p->max_tokens) { /* no need to run the last token */
            c->last_tok = t;
            break;
        }
        int32_t d[MG__DRAFT_CAP + 1];
        uint32_t k = 0;
        if (pause) pause--;
        else if ((ngram || dr->dc) && pos < c->params.n_ctx) {
            uint32_t kmax = klen, room = c->params.n_ctx - pos - 1;
            if (kmax > room) kmax = room;
            if (kmax > c->max_batch - 1) kmax = c->max_batch - 1;
            if (kmax > p->max_tokens - i) kmax = p->max_tokens - i;
            c->history[pos] = t;
            if (kmax && dr->dc) k = draft_model(dr, c, pos, &sp, d, kmax, eos, eot);
            else if (kmax) k = draft_ngram(c->history, pos + 1, img, d + 1, kmax);
        }
        if (!k) {
            st = c->batch ? mg__batch_step(c->batch, c, t) : feed(c, &t, 1, NULL);
            if (st != MG_OK) {
                c->last_tok = t;
                break;
            }
            continue;
        }
        /* t and the draft in one exact call, every row's logits kept */
        d[0] = t;
        c->logits_valid = 0;
        mg__dstate_set_exact(c->dstate, 1);
        st = mg__decoder_forward(c->dstate, d, NULL, NULL, k + 1, c->logits, 1, c->pool);
        mg__dstate_set_exact(c->dstate, 0);
        if (st != MG_OK) {
            c->last_tok = t;
            break;
        }
        memcpy(c->history + pos, d, (k + 1) * sizeof *d);
        c->logits_valid = 1;
        c->spec_drafted += k;
        c->spec_steps++;
        /* Row j holds the scores after d[j]; d[j + 1] stands while the
         * check against row j keeps it. */
        uint32_t j = 0, keep = k + 1; /* tokens of the call the sequence keeps */
        int ended = 0;
        for (; j < k; j++) {
            float *row = c->logits + (size_t)j * V;
            int32_t u;
            int kept;
            if (sampling) {
                mg__tokp *dist;
                uint32_t nd = mg__sample_dist(&dist, row, c->n_vocab, &sp, c->history,
                                              pos + 1 + j, c->sampler_scratch);
                kept = mg__spec_verify(&u, dist, nd, dr->dc ? dr->q + (size_t)j * V : NULL,
                                       d[j + 1], &c->rng);
            } else {
                u = mg__sample(row, c->n_vocab, &sp, c->history, pos + 1 + j, &c->rng,
                               c->sampler_scratch);
                kept = u == d[j + 1];
            }
            if (!kept) { /* the draft ends: u is the next token */
                next = u;
                keep = j + 1;
                break;
            }
            c->spec_accepted++;
            if (u == eos || u == eot) { ended = 1; keep = j + 1; break; }
            if ((st = take(&g, u, &done)) != MG_OK) { ended = 1; keep = j + 1; break; }
            i++;
            if (done || i == p->max_tokens) {
                c->last_tok = u;
                ended = 1;
                keep = j + 1;
                break;
            }
            if (c->prog) c->prog->p.done = i;
            if (prog_emit(c, 0)) { /* as plain decoding: u fed, its row current */
                st = MG_E_INTERRUPTED;
                ended = 1;
                j++;
                keep = j + 1;
                break;
            }
        }
        if (j == k && klen < kcap) klen++;
        else if (j < k && j == 0) {
            klen = klen > 1 ? klen - 1 : 1;
            pause = MG__DRAFT_PAUSE;
        } else if (j < k && klen > 1) klen--;
        /* row j (the one the last token was chosen from, or the next
         * token's) becomes row 0; the sequence drops what was not kept */
        if (j) memmove(c->logits, c->logits + (size_t)j * V, V * sizeof *c->logits);
        if (keep < k + 1 && mg__ctx_seq_rewind(c, pos + keep) != MG_OK) {
            st = MG_E_INTERNAL; /* a rewind of at most a batch within the ring */
            break;
        }
        c->logits_valid = 1;
        /* the draft model's sequence drops the refused tokens too */
        if (dr->dc && mg__dstate_pos(dr->dc->dstate) + dr->off > pos + keep &&
            mg__ctx_seq_rewind(dr->dc, pos + keep - dr->off) != MG_OK)
            draft_drop(dr);
        if (ended) break;
    }
    if (u8_flush(out, &g.u8) && st == MG_OK) st = MG_E_NOMEM;
    /* the rest of the text the call returns (held back as a possible stop
     * string's start, or an incomplete UTF-8 sequence now flushed): also
     * when the answer was cut short, unless the callback itself stopped */
    int returns_text = st == MG_OK || st == MG_E_CONTEXT_FULL ||
                       (st == MG_E_INTERRUPTED && !g.cb_stopped);
    if (p->on_token && returns_text && out->len > g.emitted)
        p->on_token(p->user_data, out->p + g.emitted, out->len - g.emitted, g.last);
    return st;
}

/* The draft context (mg_gen_params.draft) is a second context a generating
 * call holds: draft_claim enters it and draft_release leaves it (MG_OK:
 * its own errcode and message read as after a call that succeeded). They
 * are a pair in run_blocks, the one function every generating call goes
 * through, rather than in each public function: only generation uses the
 * draft, and it is claimed once the prompt is ready (a call that fails
 * before never touches it).
 *
 * draft_release gives back the draft context draft_claim claimed. */
static void draft_release(draft_run *dr) {
    if (dr->held) mg__ctx_leave(dr->held, MG_OK, NULL);
    dr->held = dr->dc = NULL;
}

/* Claims the draft context of gp for the call (dr->dc NULL when none);
 * MG_E_INVALID_ARG with a message in err, and nothing held, when it
 * cannot serve. */
static mg_status draft_claim(draft_run *dr, mg_context *c, const mg_gen_params *gp, char *err,
                             size_t errlen) {
    memset(dr, 0, sizeof *dr);
    mg_context *dc = gp->draft;
    if (!dc) return MG_OK;
    if (dc == c) {
        snprintf(err, errlen, "the draft context is the generating context");
        return MG_E_INVALID_ARG;
    }
    if (mg__ctx_enter(dc) != MG_OK) {
        snprintf(err, errlen, "the draft context is not a valid context or is busy in another call");
        return MG_E_INVALID_ARG;
    }
    dr->held = dc;
    const char *why = NULL;
    if (!dc->dstate) why = "the draft model has no text decoder";
    else if (!dc->model->tokenizer) why = "the draft model has no tokenizer";
    else if (dc->n_vocab != c->n_vocab)
        why = "the draft model's vocabulary differs in size from the model's";
    else if (!mg__tokenizer_same(dc->model->tokenizer, c->model->tokenizer))
        why = "the draft model's tokenizer differs from the model's";
    if (why) {
        draft_release(dr);
        snprintf(err, errlen, "%s", why);
        return MG_E_INVALID_ARG;
    }
    uint32_t n = gp->n_draft ? gp->n_draft : MG__DRAFT_DEFAULT;
    if (n > MG__DRAFT_CAP) n = MG__DRAFT_CAP;
    dr->dc = dc;
    dr->n_max = n;
    /* The draft runs on the generating context's threads when its decoder
     * state has room for as many (the call owns both contexts): two pools
     * taking turns would each keep spinning while the other works. */
    dr->pool = mg__pool_size(c->pool) <= mg__pool_size(dc->pool) ? c->pool : dc->pool;
    return MG_OK;
}

static mg_status check_gen_params(mg_gen_params *gp, const mg_gen_params *params) {
    mg_gen_params d = MG_GEN_PARAMS_INIT;
    *gp = d;
    mg_status pst = mg__params_copy(gp, sizeof *gp, params);
    if (pst != MG_OK) return pst == MG_E_UNSUPPORTED ? pst : MG_E_INVALID_ARG;
    if (!(gp->temperature >= 0.0f) || !(gp->top_p > 0.0f && gp->top_p <= 1.0f) ||
        gp->top_k < 0 || !(gp->repetition_penalty > 0.0f) || (gp->n_stop && !gp->stop) ||
        gp->n_stop > MG__MAX_STOP || (gp->flags & ~(MG_GEN_RAW_PROMPT | MG_GEN_DRAFT_NGRAM)) ||
        gp->reserved)
        return MG_E_INVALID_ARG;
    for (uint32_t i = 0; i < gp->n_stop; i++)
        if (!gp->stop[i] || strlen(gp->stop[i]) > MG__MAX_STOP_LEN) return MG_E_INVALID_ARG;
    return MG_OK;
}

/* ------------------------------------------------------ reuse across calls
 *
 * The context remembers which encoder blocks its sequence holds (c->held,
 * by position) and keeps encoder outputs by input identity (c->embeds). A
 * new prompt keeps the longest leading part that agrees with the sequence:
 * the same token ids, and at every block position the same input; a block
 * is kept whole or not at all (its tokens attend to each other). */

static int reuse_on(const mg_context *c) { return !(c->params.flags & MG_CONTEXT_NO_REUSE); }

/* The identity of a block's input: everything its encoder output depends on
 * besides the model. 0 when the kind has none (never reused). */
static int block_key(const mg__gen_block *bl, uint8_t key[32]) {
    const mg__enc_input *in = &bl->in;
    if (bl->key) {
        memcpy(key, bl->key, 32);
        return 1;
    }
    uint64_t head[4] = {(uint64_t)(uint32_t)in->kind, (uint64_t)(uint32_t)bl->enc, in->block, 0};
    mg__sha256 h;
    mg__sha256_init(&h);
    switch (in->kind) {
    case MG__INPUT_IMAGE:
        if (!in->image || !in->image->serial) return 0;
        head[3] = in->image->serial;
        mg__sha256_update(&h, head, sizeof head);
        break;
    case MG__INPUT_VOLUME: {
        if (!in->volume || !in->volume->serial) return 0;
        head[3] = in->volume->serial;
        uint32_t sp[3] = {in->slices.max_slices, (uint32_t)in->slices.window, in->slices.flags};
        mg__sha256_update(&h, head, sizeof head);
        mg__sha256_update(&h, sp, sizeof sp);
        break;
    }
    case MG__INPUT_GENOME: {
        const mg__genome_input *g = in->data;
        if (!g || in->size != sizeof *g || (g->n && (!g->scores || !g->names))) return 0;
        head[3] = g->n;
        mg__sha256_update(&h, head, sizeof head);
        for (size_t i = 0; i < g->n; i++) {
            uint64_t len = g->names[i] ? strlen(g->names[i]) : UINT64_MAX;
            mg__sha256_update(&h, &g->scores[i], sizeof g->scores[i]);
            mg__sha256_update(&h, &len, sizeof len);
            if (g->names[i]) mg__sha256_update(&h, g->names[i], (size_t)len);
        }
        break;
    }
    default: return 0;
    }
    mg__sha256_final(&h, key);
    return 1;
}

static const uint8_t k_no_key[32] = {0};

/* Records a block fed at [at, at + n); the list is sized for the most
 * blocks a sequence can hold (mg_context_new), so this cannot fail. */
static void held_add(mg_context *c, uint32_t at, uint32_t n, int enc, const uint8_t *key) {
    if (c->n_held >= c->cap_held) return; /* unreachable; then never matched */
    mg__held *h = &c->held[c->n_held++];
    h->at = at;
    h->n = n;
    h->enc = enc;
    memcpy(h->key, key ? key : k_no_key, sizeof h->key);
}

/* Drops the held blocks that reach position pos or beyond. */
static void held_trim(mg_context *c, uint32_t pos) {
    while (c->n_held && c->held[c->n_held - 1].at + c->held[c->n_held - 1].n > pos) c->n_held--;
}

void mg__ctx_seq_reset(mg_context *c) {
    if (c->dstate) mg__dstate_reset(c->dstate);
    c->n_held = 0;
    c->logits_valid = 0;
    c->n_chat = 0;
}

mg_status mg__ctx_seq_rewind(mg_context *c, uint32_t pos) {
    mg_status st = mg__dstate_rewind(c->dstate, pos);
    if (st == MG_OK) {
        held_trim(c, pos);
        c->logits_valid = 0;
        if (pos < c->chat_pos && !c->in_chat) c->n_chat = 0;
    }
    return st;
}

void mg__ctx_reuse_free(mg_context *c) {
    for (uint32_t i = 0; i < c->n_embeds; i++) mg__aligned_free(c->embeds[i].rows);
    mg__free(c->embeds);
    mg__free(c->held);
    c->embeds = NULL;
    c->held = NULL;
    c->n_embeds = c->cap_embeds = c->n_held = c->cap_held = 0;
    c->embed_tokens = 0;
}

static mg__embed *embed_find(mg_context *c, const uint8_t key[32], uint32_t nt, uint32_t w) {
    for (uint32_t i = 0; i < c->n_embeds; i++) {
        mg__embed *e = &c->embeds[i];
        if (e->n_tokens == nt && e->width == w && !memcmp(e->key, key, 32)) return e;
    }
    return NULL;
}

/* Keeps a copy of an encoder output, dropping the least recently used
 * ones to stay within n_ctx tokens; an allocation failure keeps nothing. */
static void embed_put(mg_context *c, const uint8_t key[32], const float *rows, uint32_t nt,
                      uint32_t w) {
    if (nt > c->params.n_ctx) return;
    while (c->n_embeds && c->embed_tokens + nt > c->params.n_ctx) {
        uint32_t lru = 0;
        for (uint32_t i = 1; i < c->n_embeds; i++)
            if (c->embeds[i].used < c->embeds[lru].used) lru = i;
        c->embed_tokens -= c->embeds[lru].n_tokens;
        mg__aligned_free(c->embeds[lru].rows);
        c->embeds[lru] = c->embeds[--c->n_embeds];
    }
    if (c->n_embeds == c->cap_embeds) {
        uint32_t cap = c->cap_embeds ? 2 * c->cap_embeds : 8;
        mg__embed *p = mg__realloc(c->embeds, (size_t)cap * sizeof *p);
        if (!p) return;
        c->embeds = p;
        c->cap_embeds = cap;
    }
    size_t nf = (size_t)nt * w;
    float *copy = mg__aligned_alloc(64, nf * sizeof *copy);
    if (!copy) return;
    memcpy(copy, rows, nf * sizeof *copy);
    mg__embed *e = &c->embeds[c->n_embeds++];
    memcpy(e->key, key, 32);
    e->n_tokens = nt;
    e->width = w;
    e->used = ++c->embed_clock;
    e->rows = copy;
    c->embed_tokens += nt;
}

/* The held block at position at, or NULL. */
static const mg__held *held_at(const mg_context *c, size_t at) {
    for (uint32_t i = 0; i < c->n_held; i++)
        if (c->held[i].at == at) return &c->held[i];
    return NULL;
}

/* How many leading tokens of the prompt (ids, blocks) the sequence already
 * holds, leaving at least its last two to read again: the last for its
 * logits, and two so that they are read as a batch. A single token goes
 * through the decode kernels, whose 8-bit rounding of the activations (q8_0
 * and q4_0 weights) moves logits by up to ~1e-2 from the batch kernels a
 * fresh read uses; rows of batches agree with each other to ~1e-7. */
#define MG__REREAD 2u
static size_t common_prefix(const mg_context *c, const int32_t *ids, size_t n,
                            const mg__gen_block *blocks, size_t n_blocks) {
    size_t pos = mg__dstate_pos(c->dstate), L = 0;
    size_t lim = n > MG__REREAD ? n - MG__REREAD : 0;
    if (pos < lim) lim = pos;
    while (L < lim && c->history[L] == ids[L]) L++;
    for (size_t L0 = SIZE_MAX; L != L0;) {
        L0 = L;
        for (size_t b = 0; b < n_blocks; b++) {
            const mg__gen_block *bl = &blocks[b];
            if (bl->at >= L) break;
            uint32_t nt = c->model->encoders.e[bl->enc].geo.n_tokens;
            uint8_t key[32];
            const mg__held *h = held_at(c, bl->at);
            if (bl->at + nt > L || !h || h->n != nt || !block_key(bl, key) ||
                !memcmp(h->key, k_no_key, 32) || memcmp(h->key, key, 32)) {
                L = bl->at;
                break;
            }
        }
        for (uint32_t i = 0; i < c->n_held && c->held[i].at < L; i++) {
            size_t b = 0;
            while (b < n_blocks && blocks[b].at != c->held[i].at) b++;
            if (b == n_blocks || c->held[i].at + c->held[i].n > L) {
                L = c->held[i].at;
                break;
            }
        }
    }
    return L;
}

/* Keeps the reusable prefix of the prompt in the sequence and returns its
 * length: where feeding starts. */
static size_t reuse_prefix(mg_context *c, const int32_t *ids, size_t n,
                           const mg__gen_block *blocks, size_t n_blocks) {
    if (!reuse_on(c) || !n) {
        mg__ctx_seq_reset(c);
        return 0;
    }
    size_t L = common_prefix(c, ids, n, blocks, n_blocks);
    if (L < mg__dstate_pos(c->dstate) && mg__ctx_seq_rewind(c, (uint32_t)L) != MG_OK) {
        mg__ctx_seq_reset(c); /* a sliding layer's ring no longer holds the window */
        L = 0;
    }
    return L;
}

/* Feeds ids[from, n) of a prompt whose ids[0] sits at position
 * pos - from (pos: the sequence's length now): text through feed(), each
 * block from the encoder-output cache or its encoder, in one decoder call
 * with its own block id. Blocks before from are already in the sequence. */
static mg_status feed_prompt(mg_context *c, const int32_t *ids, size_t n, size_t from,
                             const mg__gen_block *blocks, size_t n_blocks,
                             char *err, size_t errlen) {
    uint32_t pos0 = mg__dstate_pos(c->dstate);
    if (from > pos0 || n - from > (size_t)c->params.n_ctx - pos0) return MG_E_CONTEXT_FULL;
    const uint32_t base = pos0 - (uint32_t)from;
    size_t at = from;
    for (size_t b = 0; b < n_blocks; b++) {
        const mg__gen_block *bl = &blocks[b];
        const mg__encoder *e = &c->model->encoders.e[bl->enc];
        uint32_t nt = e->geo.n_tokens;
        if (bl->at + nt > n) return MG_E_INTERNAL;
        if (bl->at < from) {
            if (bl->at + nt > from) return MG_E_INTERNAL;
            continue;
        }
        if (bl->at < at) return MG_E_INTERNAL;
        mg_status st = feed(c, ids + at, bl->at - at, NULL);
        if (st != MG_OK) return st;
        if (nt > c->max_batch) return MG_E_CONTEXT_FULL;
        if (prog_emit(c, 0)) return MG_E_INTERRUPTED;
        uint8_t key[32];
        int keyed = reuse_on(c) && block_key(bl, key);
        mg__embed *hit = keyed ? embed_find(c, key, nt, e->geo.width) : NULL;
        const float *src = c->enc_out;
        if (hit) {
            hit->used = ++c->embed_clock;
            src = hit->rows;
            if (c->prog) c->prog->p.cached++;
        } else if (!bl->in.kind) {
            snprintf(err, errlen, "an earlier image's encoder output is no longer in the "
                                  "context's cache: start a new conversation");
            return MG_E_CONTEXT_FULL;
        } else {
            if (c->prog) {
                prog_stage(c, MG_STAGE_ENCODE, 0);
                c->prog->p.block = (uint32_t)b;
            }
            const mg__enc_ctl ctl = {&c->interrupt, enc_step, c};
            st = e->vt->encode(c->enc_state[bl->enc], &bl->in, c->enc_out, c->pool, &ctl, err,
                               errlen);
            if (st != MG_OK) return st;
            if (keyed) embed_put(c, key, c->enc_out, nt, e->geo.width);
            prog_stage(c, MG_STAGE_PREFILL, 0);
        }
        uint32_t pos = mg__dstate_pos(c->dstate);
        for (uint32_t t = 0; t < nt; t++) {
            c->enc_rows[t] = src + (size_t)t * e->geo.width;
            c->enc_blk[t] = (int32_t)(b + 1);
        }
        c->logits_valid = 0;
        st = mg__decoder_forward(c->dstate, ids + bl->at, c->enc_rows, c->enc_blk, nt,
                                 c->logits, 0, c->pool);
        if (st != MG_OK) return st;
        c->logits_valid = 1;
        memcpy(c->history + pos, ids + bl->at, nt * sizeof(int32_t));
        held_add(c, base + (uint32_t)bl->at, nt, bl->enc, keyed ? key : NULL);
        at = bl->at + nt;
        if (c->prog) {
            c->prog->p.done += nt;
            if (prog_emit(c, 0)) return MG_E_INTERRUPTED;
        }
    }
    return feed(c, ids + at, n - at, NULL);
}

/* Generation over a prompt: feeds it (keeping the reusable prefix of the
 * sequence), runs the hook, generates into *out; the message of a failure
 * goes to msg. */
static mg_status run_blocks(char **out, mg_context *c, const int32_t *ids, size_t n,
                            const mg__gen_block *blocks, size_t n_blocks,
                            const mg_gen_params *gp, mg__prompt_hook hook, void *user,
                            char *msg, size_t msglen) {
    obuf b = {0};
    char err[256] = "";
    mg_status st = MG_E_INVALID_ARG;
    mg__progress prog;
    draft_run dr;
    mg_status dst = draft_claim(&dr, c, gp, err, sizeof err);
    if (dst != MG_OK) return mg__err(msg, msglen, dst, "%s", err);
    if (gp->on_progress) {
        memset(&prog, 0, sizeof prog);
        prog.fn = gp->on_progress;
        prog.user = gp->progress_user_data;
        prog.p.struct_size = sizeof prog.p;
        prog.p.n_blocks = (uint32_t)n_blocks;
        prog.t0 = prog.last = now_s();
        c->prog = &prog;
    }
    if (!c->in_chat) c->n_chat = 0;
    if (n > c->params.n_ctx) st = MG_E_CONTEXT_FULL;
    else if (n) {
        size_t from = reuse_prefix(c, ids, n, blocks, n_blocks);
        if (c->prog) {
            prog.p.stage = MG_STAGE_PREFILL;
            prog.p.reused = (uint32_t)from;
            prog.p.total = (uint32_t)(n - from);
        }
        st = prog_emit(c, 1) ? MG_E_INTERRUPTED
                             : feed_prompt(c, ids, n, from, blocks, n_blocks, err, sizeof err);
    }
    int in_prompt = st != MG_OK;
    if (st == MG_OK && hook) st = hook(c, user, err, sizeof err);
    if (st == MG_OK) {
        if (c->batch) mg__batch_generating(c->batch, 1);
        st = gen_loop(c, gp, &b, &dr);
        if (c->batch) mg__batch_generating(c->batch, 0);
    }
    mg__free(dr.q);
    draft_release(&dr);
    /* a text also for an answer cut short; none when the call stopped
     * while reading the prompt (nothing was generated) */
    if (st == MG_OK || (!in_prompt && (st == MG_E_INTERRUPTED || st == MG_E_CONTEXT_FULL))) {
        if (!b.p && obuf_add(&b, "", 0)) st = MG_E_NOMEM;
        else *out = b.p;
    }
    if (!*out) mg__free(b.p);
    int by_callback = c->prog && c->prog->stop;
    c->prog = NULL;
    switch (st) {
    case MG_OK: return st;
    case MG_E_INTERRUPTED:
        return mg__err(msg, msglen, st, "%s%s",
                       in_prompt ? "interrupted while reading the prompt"
                                 : "generation was interrupted",
                       by_callback ? " (by the progress callback)" : "");
    case MG_E_CONTEXT_FULL:
        return mg__err(msg, msglen, st, "the context holds %u tokens%s", c->params.n_ctx,
                       in_prompt ? " and the prompt does not fit" : "");
    case MG_E_UNSUPPORTED:
        return mg__err(msg, msglen, st, "%s", err[0] ? err : "the model has no tokenizer");
    case MG_E_INVALID_ARG:
        return mg__err(msg, msglen, st, "%s", err[0] ? err : "the prompt is empty");
    default: return mg__err(msg, msglen, st, "%s", err); /* "": the status's text */
    }
}

mg_status mg__generate_with_blocks(char **out, mg_context *c, const int32_t *ids, size_t n,
                                   const mg__gen_block *blocks, size_t n_blocks,
                                   const mg_gen_params *gp, char *err, size_t errlen) {
    return run_blocks(out, c, ids, n, blocks, n_blocks, gp, NULL, NULL, err, errlen);
}

mg_status mg__generate_with_hook(char **out, mg_context *c, const int32_t *ids, size_t n,
                                 const mg__gen_block *blocks, size_t n_blocks,
                                 const mg_gen_params *gp, mg__prompt_hook hook, void *user,
                                 char *err, size_t errlen) {
    return run_blocks(out, c, ids, n, blocks, n_blocks, gp, hook, user, err, errlen);
}

mg_status mg__feed_prompt(mg_context *c, const int32_t *ids, size_t n,
                          const mg__gen_block *blocks, size_t n_blocks, char *err,
                          size_t errlen) {
    return feed_prompt(c, ids, n, 0, blocks, n_blocks, err, errlen);
}

mg_status mg__gen_params_check(mg_gen_params *gp, const mg_gen_params *params) {
    return check_gen_params(gp, params);
}

mg_status mg__gen_params_refuse(mg_status st, char *err, size_t errlen) {
    if (st == MG_E_UNSUPPORTED)
        return mg__err(err, errlen, st, "mg_gen_params sets fields this version (%s) does not "
                       "know", MG_VERSION_STRING);
    return mg__err(err, errlen, MG_E_INVALID_ARG, "generation parameters out of range");
}

static mg_status generate_ids(char **out, mg_context *c, const int32_t *ids, size_t n,
                              const mg_gen_params *params, char *err, size_t errlen) {
    mg_status st;
    if ((st = need_text(c, err, errlen)) || (st = check_ids(c, ids, n, err, errlen))) return st;
    mg_gen_params gp;
    if ((st = check_gen_params(&gp, params))) return mg__gen_params_refuse(st, err, errlen);
    return run_blocks(out, c, ids, n, NULL, 0, &gp, NULL, NULL, err, errlen);
}

MG_API mg_status mg_generate_ids(char **out, mg_context *c, const int32_t *ids,
                                 size_t n, const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(c);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!out)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG, "out is NULL");
    else
        st = generate_ids(out, c, ids, n, params, err, sizeof err);
    return mg__ctx_leave(c, st, "%s", err);
}

/* The prompt in the chat template (the user turn with the system text, if
 * any, and the prompt as given; the model turn's opening), or as it is
 * with MG_GEN_RAW_PROMPT, tokenized; then generation. */
static mg_status generate_text(char **out, mg_context *c, const char *prompt,
                               const mg_gen_params *params, char *err, size_t errlen) {
    mg_status st = need_text(c, err, errlen);
    if (st) return st;
    const mg_tokenizer *tok = c->model->tokenizer; /* also while the model lingers freed */
    if (!tok) return mg__err(err, errlen, MG_E_UNSUPPORTED, "the model has no tokenizer");
    mg_gen_params gp;
    if ((st = check_gen_params(&gp, params))) return mg__gen_params_refuse(st, err, errlen);
    const int raw = (gp.flags & MG_GEN_RAW_PROMPT) != 0;
    mg__prompt pr = {0};
    if (!raw) {
        const mg__prompt_part part = {prompt, NULL, 0};
        mg__prompt_turn(&pr, c->model, gp.system_prompt, &part, 1, MG__TURN_VERBATIM);
        if (pr.bad) {
            mg__prompt_free(&pr);
            return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        }
    }
    int32_t *ids = NULL;
    size_t n = 0;
    st = raw ? mg__prompt_tokenize(&ids, &n, tok, prompt, strlen(prompt), 0)
             : mg__prompt_tokenize(&ids, &n, tok, pr.p, pr.len,
                                   MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL);
    mg__prompt_free(&pr);
    if (st != MG_OK) return mg__err(err, errlen, st, "tokenizing the prompt failed");
    st = run_blocks(out, c, ids, n, NULL, 0, &gp, NULL, NULL, err, errlen);
    mg__free(ids);
    return st;
}

MG_API mg_status mg_generate(char **out, mg_context *c, const char *prompt,
                             const mg_gen_params *params) {
    if (out) *out = NULL;
    mg_status st = mg__ctx_enter(c);
    if (st) return st;
    char err[MG__ERRMSG_LEN] = "";
    if (!out || !prompt)
        st = mg__err(err, sizeof err, MG_E_INVALID_ARG, "out or prompt is NULL");
    else
        st = generate_text(out, c, prompt, params, err, sizeof err);
    return mg__ctx_leave(c, st, "%s", err);
}
