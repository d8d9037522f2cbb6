/* tokenizer_prune.c - vocabulary pruning: the part of a tokenizer that a
 * corpus needs (mg__tokenizer_prune in llm/tokenizer.h). A model trained on
 * that corpus then needs embedding rows only for the kept tokens.
 *
 * Why the pruned tokenizer tokenizes the corpus exactly as the full one:
 *
 *  - Added tokens. The full tokenizer matches added tokens leftmost-longest
 *    in the raw text. Every added token it matched in the corpus was emitted
 *    and is kept; the pruned set of added tokens is a subset of the full one
 *    that contains all of them. At a position where the full tokenizer
 *    matched token X, X is the longest candidate of the full set, so it is
 *    the longest of the subset too; where the full set had no match, the
 *    subset has none. The stretches of text between matches, and so the
 *    words that reach BPE, are the same.
 *
 *  - BPE. In the full run on a word every output piece is built by a tree of
 *    merges whose leaves are the word's code points. Each inner node is the
 *    result of some merge (a, b), and the closure below keeps a and b for
 *    EVERY merge that makes a kept piece, so every node of every tree is
 *    kept: the initial symbols get the same pieces (a code point that is not
 *    a piece of the full vocabulary is not one of the pruned either). The
 *    pruned merge list is the full list restricted to merges whose halves
 *    and result are kept, in the same order. At each step the full run
 *    applies the lowest-ranked applicable merge (ties to the leftmost pair);
 *    that merge makes a tree node, so it survives, and every merge
 *    applicable in the pruned state is also applicable in the full state
 *    (same symbols, a subset of the merges). So the pruned run applies the
 *    same merge at the same place, step after step, and stops when the full
 *    run stops. No merge appears that the full list lacks.
 *
 *  - Byte fallback. A symbol left without a piece becomes its <0xNN> tokens;
 *    all 256 are kept (or the unknown token, also kept).
 *
 * Kept besides what the corpus needs (they cost a few hundred rows and keep
 * any other text encodable and decodable byte for byte): the byte tokens,
 * control and unknown tokens, every token with a role, every one-byte piece
 * and the space marker (without it a space outside the corpus would fall
 * back to the bytes of U+2581 and decode as that character, not a space).
 * Extra kept pieces do not disturb the argument above: it needs the trees
 * to be kept, nothing more. */
#include "llm/tokenizer.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Marks id and pushes it on the work stack when it was not kept yet. */
static void keep_id(uint8_t *keep, int32_t *stack, uint32_t *sp, int32_t id) {
    if (id < 0 || keep[id]) return;
    keep[id] = 1;
    stack[(*sp)++] = id;
}

/* result[r] = the piece merge r makes (its halves concatenated). */
static mg_status merge_results(const mg_tokenizer *t, int32_t *result, char *err,
                               size_t errlen) {
    uint32_t nm = mg__tok_n_merges(t);
    size_t cap = 256;
    char *buf = mg__malloc(cap);
    if (!buf) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    for (uint32_t r = 0; r < nm; r++) {
        int32_t a = -1, b = -1;
        mg__tok_merge(t, r, &a, &b);
        const char *pa = mg_tokenizer_piece(t, a), *pb = mg_tokenizer_piece(t, b);
        size_t la = strlen(pa), lb = strlen(pb);
        if (la + lb > cap) {
            while (cap < la + lb) cap *= 2;
            char *q = mg__realloc(buf, cap);
            if (!q) {
                mg__free(buf);
                return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
            }
            buf = q;
        }
        memcpy(buf, pa, la);
        memcpy(buf + la, pb, lb);
        result[r] = mg__tok_find(t, buf, la + lb);
        if (result[r] < 0) { /* mg__tok_add_merge checked this when it was built */
            mg__free(buf);
            return mg__err(err, errlen, MG_E_INTERNAL, "tokenizer: merge %" PRIu32
                           " has no result piece", r);
        }
    }
    mg__free(buf);
    return MG_OK;
}

/* The kept set (keep[id] = 1): the corpus ids, the fixed extras, then the
 * closure over merges. */
static mg_status kept_set(const mg_tokenizer *t, uint8_t *keep, const int32_t *result,
                          const char *corpus, size_t corpus_len, char *err, size_t errlen) {
    uint32_t nv = mg_tokenizer_vocab_size(t), nm = mg__tok_n_merges(t);
    mg_status st = MG_OK;
    int32_t *stack = mg__malloc((size_t)nv * sizeof *stack);
    uint32_t *first = mg__calloc((size_t)nv + 1, sizeof *first); /* merges by result */
    uint32_t *by_res = mg__malloc(((size_t)nm + 1) * sizeof *by_res);
    int32_t *ids = NULL;
    size_t cap = 0;
    if (!stack || !first || !by_res || mg__mul_size(corpus_len + 1, sizeof *ids, &cap) ||
        !(ids = mg__malloc(cap))) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    uint32_t sp = 0;
    /* every id of the corpus: at most one per byte */
    size_t n = 0;
    st = mg_tokenize(ids, corpus_len + 1, &n, t, corpus, corpus_len, MG_TOKENIZE_PARSE_SPECIAL);
    if (st) {
        st = mg__err(err, errlen, st, "tokenizing the corpus failed: %s", mg_status_str(st));
        goto done;
    }
    for (size_t i = 0; i < n; i++) keep_id(keep, stack, &sp, ids[i]);
    /* byte tokens, special tokens, roles, one-byte pieces, the space marker */
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", (unsigned)b);
        keep_id(keep, stack, &sp, mg__tok_find(t, s, 6));
    }
    for (uint32_t id = 0; id < nv; id++) {
        int32_t ty = mg__tok_type(t, (int32_t)id);
        if (ty == MG__TOK_CONTROL || ty == MG__TOK_UNKNOWN || ty == MG__TOK_BYTE)
            keep_id(keep, stack, &sp, (int32_t)id);
    }
    for (int32_t r = 0; r < MG__TOK_N_ROLES; r++)
        keep_id(keep, stack, &sp, mg_tokenizer_special(t, r));
    for (int c = 0; c < 128; c++) {
        char s = (char)c;
        keep_id(keep, stack, &sp, mg__tok_find(t, &s, 1));
    }
    keep_id(keep, stack, &sp, mg__tok_find(t, "\xe2\x96\x81", 3));
    /* merges grouped by result (counting sort), then the closure */
    for (uint32_t r = 0; r < nm; r++) first[result[r] + 1]++;
    for (uint32_t id = 0; id < nv; id++) first[id + 1] += first[id];
    for (uint32_t r = 0; r < nm; r++) by_res[first[result[r]]++] = r;
    for (uint32_t id = nv; id > 0; id--) first[id] = first[id - 1];
    first[0] = 0;
    while (sp) {
        int32_t id = stack[--sp];
        for (uint32_t k = first[id]; k < first[id + 1]; k++) {
            int32_t a = -1, b = -1;
            mg__tok_merge(t, by_res[k], &a, &b);
            keep_id(keep, stack, &sp, a);
            keep_id(keep, stack, &sp, b);
        }
    }
done:
    mg__free(stack);
    mg__free(first);
    mg__free(by_res);
    mg__free(ids);
    return st;
}

mg_status mg__tokenizer_prune(mg_tokenizer **out, int32_t **old_ids_out, uint32_t *n_out,
                              const mg_tokenizer *t, const char *corpus, size_t corpus_len,
                              char *err, size_t errlen) {
    if (out) *out = NULL;
    if (old_ids_out) *old_ids_out = NULL;
    if (n_out) *n_out = 0;
    uint32_t nv = mg_tokenizer_vocab_size(t);
    if (!out || !nv || (!corpus && corpus_len))
        return mg__err(err, errlen, MG_E_INVALID_ARG, "pruning: bad arguments");
    if (!corpus) corpus = "";
    uint32_t nm = mg__tok_n_merges(t);
    mg_tokenizer *p = NULL;
    uint8_t *keep = mg__calloc(nv, 1);
    int32_t *result = mg__malloc(((size_t)nm + 1) * sizeof *result);
    int32_t *new_of = mg__malloc((size_t)nv * sizeof *new_of);
    int32_t *old_of = NULL;
    mg_status st = MG_OK;
    if (!keep || !result || !new_of) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((st = merge_results(t, result, err, errlen)) ||
        (st = kept_set(t, keep, result, corpus, corpus_len, err, errlen)))
        goto done;
    uint32_t nk = 0;
    for (uint32_t id = 0; id < nv; id++) new_of[id] = keep[id] ? (int32_t)nk++ : -1;
    if (!(old_of = mg__malloc((size_t)nk * sizeof *old_of))) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    for (uint32_t id = 0; id < nv; id++)
        if (keep[id]) old_of[new_of[id]] = (int32_t)id;
    if ((st = mg__tok_new(&p, nk, err, errlen))) goto done;
    for (uint32_t k = 0; !st && k < nk; k++) {
        const char *s = mg_tokenizer_piece(t, old_of[k]);
        st = mg__tok_set_piece(p, k, s, strlen(s), mg__tok_type(t, old_of[k]), err, errlen);
    }
    if (!st) st = mg__tok_index(p, err, errlen);
    uint32_t nmk = 0;
    for (uint32_t r = 0; r < nm; r++) {
        int32_t a = -1, b = -1;
        mg__tok_merge(t, r, &a, &b);
        nmk += keep[a] && keep[b] && keep[result[r]];
    }
    if (!st) st = mg__tok_reserve_merges(p, nmk, err, errlen);
    for (uint32_t r = 0; !st && r < nm; r++) {
        int32_t a = -1, b = -1;
        mg__tok_merge(t, r, &a, &b);
        if (keep[a] && keep[b] && keep[result[r]])
            st = mg__tok_add_merge(p, new_of[a], new_of[b], err, errlen);
    }
    int32_t roles[MG__TOK_N_ROLES], norm = 0, pre = 0;
    for (int32_t r = 0; r < MG__TOK_N_ROLES; r++) {
        int32_t id = mg_tokenizer_special(t, r);
        roles[r] = id >= 0 ? new_of[id] : -1;
    }
    mg__tok_options(t, &norm, &pre);
    if (!st) st = mg__tok_finish(p, norm, pre, roles, err, errlen);
    if (st) goto done;
    *out = p;
    p = NULL;
    if (n_out) *n_out = nk;
    if (old_ids_out) {
        *old_ids_out = old_of;
        old_of = NULL;
    }
done:
    mg_tokenizer_free(p);
    mg__free(keep);
    mg__free(result);
    mg__free(new_of);
    mg__free(old_of);
    return st;
}
