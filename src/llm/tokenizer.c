/* tokenizer.c - BPE with byte fallback, as Hugging Face tokenizers runs a
 * Gemma 3 tokenizer.json (pipeline: llm/tokenizer.h). The tokenizer is built
 * once (hash tables for piece -> id and merge pair -> rank, a trie of added
 * tokens) and is immutable afterwards; each mg_tokenize call works in its own
 * scratch buffers. tokenizer.json parsing: llm/tokenizer_json.c. */
#include "llm/tokenizer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct merge_slot {
    uint64_t key;    /* left << 32 | right; MERGE_EMPTY when free */
    uint32_t rank;
    int32_t result;
} merge_slot;
#define MERGE_EMPTY UINT64_MAX

typedef struct trie_node {
    int32_t child;   /* first child, -1 */
    int32_t sibling; /* next sibling, -1 */
    int32_t token;   /* added token ending here, -1 */
    uint8_t byte;
} trie_node;

struct mg_tokenizer {
    uint32_t tag;                /* MG__TAG_TOKENIZER */
    uint32_t n_vocab;
    char *pool;                  /* pieces, each NUL-terminated */
    size_t pool_len, pool_cap;
    uint64_t *off;               /* piece offsets into pool */
    uint32_t *len;               /* piece lengths; UINT32_MAX = not yet set */
    uint8_t *type;               /* MG__TOK_* */
    int16_t *byte_of;            /* byte value of a <0xNN> piece, else -1 */
    int32_t byte_id[256];        /* the <0xNN> token of each byte, or -1 */
    int32_t ascii_id[128];       /* the token of each 1-byte piece, or -1 */
    int32_t roles[MG__TOK_N_ROLES];
    int32_t normalizer, pre_tokenizer;
    int32_t marker_id;           /* the token "\xe2\x96\x81", or -1 */
    uint32_t *piece_ht;          /* id + 1; 0 = empty */
    uint64_t piece_mask;
    int32_t *merge_l, *merge_r;  /* in rank order */
    uint32_t n_merges, cap_merges;
    merge_slot *merge_ht;
    uint32_t merge_bits;
    trie_node *trie;             /* added tokens; node 0 is the root */
    uint32_t n_trie, cap_trie;
    int32_t root[256];           /* root's child for each first byte */
};

static const char k_marker[] = "\xe2\x96\x81"; /* U+2581 */

/* ------------------------------------------------------------- hashing */

static uint64_t fnv_step(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_BASIS 0xcbf29ce484222325ull

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static inline const char *piece_at(const mg_tokenizer *t, uint32_t id) {
    return t->pool + t->off[id];
}

/* Finds the piece a (+ b when blen > 0), or -1. */
static int32_t find2(const mg_tokenizer *t, const char *a, size_t alen,
                     const char *b, size_t blen) {
    if (!t->piece_ht) return -1;
    uint64_t h = mix64(fnv_step(fnv_step(FNV_BASIS, a, alen), b, blen));
    size_t n = alen + blen;
    for (uint64_t i = h & t->piece_mask;; i = (i + 1) & t->piece_mask) {
        uint32_t v = t->piece_ht[i];
        if (!v) return -1;
        uint32_t id = v - 1;
        if (t->len[id] == n) {
            const char *p = piece_at(t, id);
            if (!memcmp(p, a, alen) && (!blen || !memcmp(p + alen, b, blen)))
                return (int32_t)id;
        }
    }
}

int32_t mg__tok_find(const mg_tokenizer *t, const char *s, size_t len) {
    return find2(t, s, len, "", 0);
}

static inline const merge_slot *merge_find(const mg_tokenizer *t, int32_t l,
                                           int32_t r) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint64_t mask = ((uint64_t)1 << t->merge_bits) - 1;
    for (uint64_t i = (key * 0x9e3779b97f4a7c15ull) >> (64 - t->merge_bits);;
         i = (i + 1) & mask) {
        const merge_slot *s = &t->merge_ht[i];
        if (s->key == key) return s;
        if (s->key == MERGE_EMPTY) return NULL;
    }
}

/* ------------------------------------------------------------ building */

mg_status mg__tok_new(mg_tokenizer **out, uint32_t n_vocab, char *err,
                      size_t errlen) {
    *out = NULL;
    if (n_vocab == 0 || n_vocab > MG__TOK_MAX_VOCAB)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: vocabulary size %" PRIu32 " out of range",
                       n_vocab);
    mg_tokenizer *t = mg__calloc(1, sizeof *t);
    if (!t) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    t->tag = MG__TAG_TOKENIZER;
    t->n_vocab = n_vocab;
    t->off = mg__malloc((size_t)n_vocab * sizeof *t->off);
    t->len = mg__malloc((size_t)n_vocab * sizeof *t->len);
    t->type = mg__calloc(n_vocab, 1);
    t->byte_of = mg__malloc((size_t)n_vocab * sizeof *t->byte_of);
    t->pool_cap = (size_t)n_vocab * 8 + 64;
    t->pool = mg__malloc(t->pool_cap);
    if (!t->off || !t->len || !t->type || !t->byte_of || !t->pool) {
        mg_tokenizer_free(t);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    memset(t->len, 0xff, (size_t)n_vocab * sizeof *t->len);
    for (int i = 0; i < MG__TOK_N_ROLES; i++) t->roles[i] = -1;
    t->marker_id = -1;
    *out = t;
    return MG_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

mg_status mg__tok_set_piece(mg_tokenizer *t, uint32_t id, const char *s,
                            size_t len, int32_t type, char *err, size_t errlen) {
    if (id >= t->n_vocab)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: token id %" PRIu32 " out of range", id);
    if (t->len[id] != UINT32_MAX)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: token id %" PRIu32 " given twice", id);
    if (type < MG__TOK_NORMAL || type > MG__TOK_BYTE)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: token %" PRIu32 " has unknown type %" PRId32,
                       id, type);
    if (len > 65535 || !mg__utf8_valid(s, len))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: token %" PRIu32
                       " is not valid UTF-8 (or is longer than 64 KiB)", id);
    if (t->pool_len + len + 1 > t->pool_cap) {
        size_t cap = t->pool_cap * 2;
        while (cap < t->pool_len + len + 1) cap *= 2;
        char *p = mg__realloc(t->pool, cap);
        if (!p) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        t->pool = p;
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, s, len);
    t->pool[t->pool_len + len] = '\0';
    t->off[id] = t->pool_len;
    t->len[id] = (uint32_t)len;
    t->pool_len += len + 1;
    t->type[id] = (uint8_t)type;
    int b = -1;
    if (len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
        hexval(s[3]) >= 0 && hexval(s[4]) >= 0)
        b = hexval(s[3]) * 16 + hexval(s[4]);
    t->byte_of[id] = (int16_t)b;
    return MG_OK;
}

mg_status mg__tok_index(mg_tokenizer *t, char *err, size_t errlen) {
    uint64_t size = 1024;
    while (size < (uint64_t)t->n_vocab * 2) size *= 2;
    t->piece_ht = mg__calloc((size_t)size, sizeof *t->piece_ht);
    if (!t->piece_ht) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    t->piece_mask = size - 1;
    for (uint32_t id = 0; id < t->n_vocab; id++) {
        if (t->len[id] == UINT32_MAX)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "tokenizer: token id %" PRIu32 " is missing", id);
        const char *p = piece_at(t, id);
        uint64_t i = mix64(fnv_step(FNV_BASIS, p, t->len[id])) & t->piece_mask;
        for (;; i = (i + 1) & t->piece_mask) {
            uint32_t v = t->piece_ht[i];
            if (!v) break;
            if (t->len[v - 1] == t->len[id] &&
                !memcmp(piece_at(t, v - 1), p, t->len[id]))
                return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                               "tokenizer: tokens %" PRIu32 " and %" PRIu32
                               " are the same piece", v - 1, id);
        }
        t->piece_ht[i] = id + 1;
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", (unsigned)b);
        t->byte_id[b] = mg__tok_find(t, s, 6);
    }
    for (int c = 0; c < 128; c++) {
        char s = (char)c;
        t->ascii_id[c] = mg__tok_find(t, &s, 1);
    }
    t->marker_id = mg__tok_find(t, k_marker, 3);
    return MG_OK;
}

mg_status mg__tok_reserve_merges(mg_tokenizer *t, uint32_t n, char *err,
                                 size_t errlen) {
    if (n > MG__TOK_MAX_MERGES)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: %" PRIu32 " merges is too many", n);
    if (t->merge_ht)
        return mg__err(err, errlen, MG_E_INTERNAL, "tokenizer: merges reserved twice");
    uint32_t bits = 10;
    while (((uint64_t)1 << bits) < (uint64_t)n + n / 2) bits++;
    t->merge_bits = bits;
    t->merge_ht = mg__malloc(((size_t)1 << bits) * sizeof *t->merge_ht);
    t->merge_l = mg__malloc(((size_t)n + 1) * sizeof *t->merge_l);
    t->merge_r = mg__malloc(((size_t)n + 1) * sizeof *t->merge_r);
    if (!t->merge_ht || !t->merge_l || !t->merge_r)
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < ((size_t)1 << bits); i++) t->merge_ht[i].key = MERGE_EMPTY;
    t->cap_merges = n;
    return MG_OK;
}

mg_status mg__tok_add_merge(mg_tokenizer *t, int32_t l, int32_t r, char *err,
                            size_t errlen) {
    if (t->n_merges >= t->cap_merges)
        return mg__err(err, errlen, MG_E_INTERNAL, "tokenizer: too many merges");
    uint32_t rank = t->n_merges;
    if (l < 0 || r < 0 || (uint32_t)l >= t->n_vocab || (uint32_t)r >= t->n_vocab)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: merge %" PRIu32 " names an unknown token", rank);
    int32_t res = find2(t, piece_at(t, (uint32_t)l), t->len[l],
                        piece_at(t, (uint32_t)r), t->len[r]);
    if (res < 0)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: merge %" PRIu32 " (\"%s\" \"%s\") makes a piece "
                       "that is not in the vocabulary", rank,
                       piece_at(t, (uint32_t)l), piece_at(t, (uint32_t)r));
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint64_t mask = ((uint64_t)1 << t->merge_bits) - 1;
    uint64_t i = (key * 0x9e3779b97f4a7c15ull) >> (64 - t->merge_bits);
    for (; t->merge_ht[i].key != MERGE_EMPTY; i = (i + 1) & mask)
        if (t->merge_ht[i].key == key)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "tokenizer: merge %" PRIu32 " repeats merge %" PRIu32,
                           rank, t->merge_ht[i].rank);
    t->merge_ht[i].key = key;
    t->merge_ht[i].rank = rank;
    t->merge_ht[i].result = res;
    t->merge_l[rank] = l;
    t->merge_r[rank] = r;
    t->n_merges++;
    return MG_OK;
}

static int is_added(int type) {
    return type == MG__TOK_UNKNOWN || type == MG__TOK_CONTROL ||
           type == MG__TOK_USER;
}

static int32_t trie_add_node(mg_tokenizer *t, uint8_t byte) {
    if (t->n_trie == t->cap_trie) {
        uint32_t cap = t->cap_trie ? t->cap_trie * 2 : 256;
        trie_node *p = mg__realloc(t->trie, (size_t)cap * sizeof *p);
        if (!p) return -1;
        t->trie = p;
        t->cap_trie = cap;
    }
    trie_node *n = &t->trie[t->n_trie];
    n->child = n->sibling = n->token = -1;
    n->byte = byte;
    return (int32_t)t->n_trie++;
}

mg_status mg__tok_finish(mg_tokenizer *t, int32_t normalizer,
                         int32_t pre_tokenizer,
                         const int32_t roles[MG__TOK_N_ROLES], char *err,
                         size_t errlen) {
    mg_status st;
    if (!t->piece_ht && (st = mg__tok_index(t, err, errlen)) != MG_OK) return st;
    if (!t->merge_ht && (st = mg__tok_reserve_merges(t, 0, err, errlen)) != MG_OK)
        return st;
    t->normalizer = normalizer;
    t->pre_tokenizer = pre_tokenizer;
    for (int i = 0; i < MG__TOK_N_ROLES; i++) {
        if (roles[i] < -1 || (roles[i] >= 0 && (uint32_t)roles[i] >= t->n_vocab))
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "tokenizer: special token id %" PRId32 " out of range",
                           roles[i]);
        t->roles[i] = roles[i];
    }
    int all_bytes = 1;
    for (int b = 0; b < 256; b++) all_bytes &= t->byte_id[b] >= 0;
    if (!all_bytes && t->roles[MG_TOKEN_UNK] < 0)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer: neither all 256 byte tokens <0xNN> nor an "
                       "unknown token");
    /* the added-token trie */
    for (int i = 0; i < 256; i++) t->root[i] = -1;
    if (trie_add_node(t, 0) < 0) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    for (uint32_t id = 0; id < t->n_vocab; id++) {
        if (!is_added(t->type[id]) || t->len[id] == 0) continue;
        const unsigned char *p = (const unsigned char *)piece_at(t, id);
        int32_t node = -1;
        for (uint32_t k = 0; k < t->len[id]; k++) {
            int32_t *link = node < 0 ? &t->root[p[k]] : &t->trie[node].child;
            int32_t c = *link;
            if (node >= 0)
                while (c >= 0 && t->trie[c].byte != p[k]) c = t->trie[c].sibling;
            if (c < 0) {
                c = trie_add_node(t, p[k]);
                if (c < 0) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
                /* re-take the link: the realloc may have moved the nodes */
                link = node < 0 ? &t->root[p[k]] : &t->trie[node].child;
                if (node >= 0) t->trie[c].sibling = *link;
                *link = c;
            }
            node = c;
        }
        t->trie[node].token = (int32_t)id;
    }
    return MG_OK;
}

/* -------------------------------------------------------------- public */

static int tok_ok(const mg_tokenizer *t) {
    return t && t->tag == MG__TAG_TOKENIZER;
}

MG_API void mg_tokenizer_free(mg_tokenizer *t) {
    if (!t || t->tag != MG__TAG_TOKENIZER) return;
    t->tag = MG__TAG_DEAD;
    mg__free(t->pool);
    mg__free(t->off);
    mg__free(t->len);
    mg__free(t->type);
    mg__free(t->byte_of);
    mg__free(t->piece_ht);
    mg__free(t->merge_l);
    mg__free(t->merge_r);
    mg__free(t->merge_ht);
    mg__free(t->trie);
    mg__free(t);
}

MG_API uint32_t mg_tokenizer_vocab_size(const mg_tokenizer *t) {
    return tok_ok(t) ? t->n_vocab : 0;
}

MG_API const char *mg_tokenizer_piece(const mg_tokenizer *t, int32_t id) {
    if (!tok_ok(t) || id < 0 || (uint32_t)id >= t->n_vocab) return NULL;
    return piece_at(t, (uint32_t)id);
}

MG_API int32_t mg_tokenizer_special(const mg_tokenizer *t, int32_t role) {
    if (!tok_ok(t) || role < 0 || role >= MG__TOK_N_ROLES) return -1;
    return t->roles[role];
}

int32_t mg__tok_type(const mg_tokenizer *t, int32_t id) {
    if (!tok_ok(t) || id < 0 || (uint32_t)id >= t->n_vocab) return 0;
    return t->type[id];
}

void mg__tok_options(const mg_tokenizer *t, int32_t *normalizer,
                     int32_t *pre_tokenizer) {
    *normalizer = tok_ok(t) ? t->normalizer : MG__TOK_NORM_NONE;
    *pre_tokenizer = tok_ok(t) ? t->pre_tokenizer : MG__TOK_PRE_NONE;
}

uint32_t mg__tok_n_merges(const mg_tokenizer *t) {
    return tok_ok(t) ? t->n_merges : 0;
}

int mg__tok_merge(const mg_tokenizer *t, uint32_t rank, int32_t *left,
                  int32_t *right) {
    if (!tok_ok(t) || rank >= t->n_merges) return 0;
    *left = t->merge_l[rank];
    *right = t->merge_r[rank];
    return 1;
}

/* ------------------------------------------------------------ encoding */

typedef struct sym {
    int32_t id;      /* token, or -1 (falls back to bytes) */
    uint32_t start;  /* offset in the word */
    uint32_t len;    /* 0 once merged into its left neighbour */
    int32_t prev, next;
} sym;

typedef struct enc {
    const mg_tokenizer *t;
    int32_t *ids;
    size_t cap, n;
    char *norm;       /* normalized section */
    size_t norm_cap;
    sym *syms;
    uint64_t *heap;   /* rank << 32 | left symbol index */
    size_t sym_cap;
} enc;

static inline void emit(enc *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

/* Length of the valid UTF-8 sequence at p (n > 0 bytes left), 0 if none. */
static size_t u8_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xc2) return 0;
    if (c < 0xe0) return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if (n < 3 || (p[2] & 0xc0) != 0x80) return 0;
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c < 0xf5) {
        if (n < 4 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

static inline void push_pair(const mg_tokenizer *t, const sym *s, uint64_t *h,
                             size_t *nh, int32_t i) {
    int32_t j = s[i].next;
    if (j < 0 || s[i].id < 0 || s[j].id < 0) return;
    const merge_slot *m = merge_find(t, s[i].id, s[j].id);
    if (m) heap_push(h, nh, (uint64_t)m->rank << 32 | (uint32_t)i);
}

static mg_status bpe_word(enc *e, const char *w, size_t n) {
    const mg_tokenizer *t = e->t;
    const unsigned char *u = (const unsigned char *)w;
    if (n > e->sym_cap) {
        size_t cap = n < 64 ? 64 : n;
        size_t hb;
        if (cap > UINT32_MAX / 4 || mg__mul_size(cap, 3 * sizeof(uint64_t), &hb))
            return MG_E_NOMEM;
        sym *s = mg__realloc(e->syms, cap * sizeof *s);
        if (!s) return MG_E_NOMEM;
        e->syms = s;
        uint64_t *h = mg__realloc(e->heap, hb);
        if (!h) return MG_E_NOMEM;
        e->heap = h;
        e->sym_cap = cap;
    }
    sym *s = e->syms;
    int32_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t l = u8_len(u + i, n - i);
        int32_t id;
        if (l == 0) {
            l = 1;
            id = -1; /* an invalid byte: never merges, becomes <0xNN> */
        } else if (l == 1) {
            id = t->ascii_id[u[i]];
        } else if (l == 3 && t->marker_id >= 0 && !memcmp(u + i, k_marker, 3)) {
            id = t->marker_id;
        } else {
            id = mg__tok_find(t, w + i, l);
        }
        s[m].id = id;
        s[m].start = (uint32_t)i;
        s[m].len = (uint32_t)l;
        s[m].prev = m - 1;
        s[m].next = -1;
        if (m) s[m - 1].next = m;
        m++;
        i += l;
    }
    if (m > 1 && t->n_merges) {
        uint64_t *h = e->heap;
        size_t nh = 0;
        for (int32_t i = 0; i + 1 < m; i++) push_pair(t, s, h, &nh, i);
        while (nh) {
            uint64_t top = heap_pop(h, &nh);
            int32_t i = (int32_t)(uint32_t)top;
            if (s[i].len == 0) continue;
            int32_t j = s[i].next;
            if (j < 0 || s[i].id < 0 || s[j].id < 0) continue;
            const merge_slot *mg = merge_find(t, s[i].id, s[j].id);
            if (!mg || mg->rank != (uint32_t)(top >> 32)) continue;
            s[i].id = mg->result;
            s[i].len += s[j].len;
            s[i].next = s[j].next;
            if (s[j].next >= 0) s[s[j].next].prev = i;
            s[j].len = 0;
            if (s[i].prev >= 0) push_pair(t, s, h, &nh, s[i].prev);
            push_pair(t, s, h, &nh, i);
        }
    }
    for (int32_t i = 0; m > 0 && i >= 0; i = s[i].next) {
        if (s[i].id >= 0) {
            emit(e, s[i].id);
            continue;
        }
        int all = 1;
        for (uint32_t k = 0; k < s[i].len; k++)
            all &= t->byte_id[u[s[i].start + k]] >= 0;
        if (all)
            for (uint32_t k = 0; k < s[i].len; k++) emit(e, t->byte_id[u[s[i].start + k]]);
        else
            emit(e, t->roles[MG_TOKEN_UNK]);
    }
    return MG_OK;
}

/* Normalizes, pre-tokenizes and encodes one stretch of text between added
 * tokens. */
static mg_status encode_section(enc *e, const char *p, size_t n) {
    const mg_tokenizer *t = e->t;
    if (n == 0) return MG_OK;
    const char *w = p;
    size_t wn = n;
    if (t->normalizer == MG__TOK_NORM_SPACE_MARKER) {
        size_t spaces = 0;
        for (size_t i = 0; i < n; i++) spaces += p[i] == ' ';
        if (spaces) {
            size_t need = n + 2 * spaces;
            if (need > e->norm_cap) {
                char *q = mg__realloc(e->norm, need);
                if (!q) return MG_E_NOMEM;
                e->norm = q;
                e->norm_cap = need;
            }
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (p[i] == ' ') {
                    memcpy(e->norm + k, k_marker, 3);
                    k += 3;
                } else {
                    e->norm[k++] = p[i];
                }
            }
            w = e->norm;
            wn = k;
        }
    }
    if (t->pre_tokenizer == MG__TOK_PRE_SPLIT_SPACE) {
        size_t a = 0;
        for (size_t i = 0; i < wn; i++) {
            if (w[i] == ' ') {
                mg_status st = bpe_word(e, w + a, i + 1 - a);
                if (st) return st;
                a = i + 1;
            }
        }
        return a < wn ? bpe_word(e, w + a, wn - a) : MG_OK;
    }
    return bpe_word(e, w, wn);
}

/* Longest added token at p that this call may match, or -1; *mlen its length. */
static int32_t match_added(const mg_tokenizer *t, const unsigned char *p,
                           size_t n, int special, size_t *mlen) {
    int32_t best = -1;
    int32_t node = t->root[p[0]];
    for (size_t k = 0;;) {
        const trie_node *nd = &t->trie[node];
        if (nd->token >= 0 &&
            (special || t->type[nd->token] == MG__TOK_USER)) {
            best = nd->token;
            *mlen = k + 1;
        }
        if (++k >= n) break;
        int32_t c = nd->child;
        while (c >= 0 && t->trie[c].byte != p[k]) c = t->trie[c].sibling;
        if (c < 0) break;
        node = c;
    }
    return best;
}

MG_API mg_status mg_tokenize(int32_t *ids, size_t cap, size_t *n_ids,
                             const mg_tokenizer *t, const char *text,
                             size_t len, uint32_t flags) {
    if (!tok_ok(t)) return MG_E_MISUSE;
    if (!n_ids || (!ids && cap) || (!text && len) ||
        (flags & ~(MG_TOKENIZE_ADD_BOS | MG_TOKENIZE_PARSE_SPECIAL)))
        return MG_E_INVALID_ARG;
    if ((flags & MG_TOKENIZE_ADD_BOS) && t->roles[MG_TOKEN_BOS] < 0)
        return MG_E_INVALID_ARG;
    *n_ids = 0;
    enc e = {.t = t, .ids = ids, .cap = cap};
    if (flags & MG_TOKENIZE_ADD_BOS) emit(&e, t->roles[MG_TOKEN_BOS]);
    mg_status st = MG_OK;
    const unsigned char *u = (const unsigned char *)text;
    int special = (flags & MG_TOKENIZE_PARSE_SPECIAL) != 0;
    size_t start = 0;
    for (size_t i = 0; i < len && st == MG_OK;) {
        size_t ml = 0;
        int32_t id = t->root[u[i]] >= 0 ? match_added(t, u + i, len - i, special, &ml) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        st = encode_section(&e, text + start, i - start);
        emit(&e, id);
        i += ml;
        start = i;
    }
    if (st == MG_OK) st = encode_section(&e, text + start, len - start);
    mg__free(e.norm);
    mg__free(e.syms);
    mg__free(e.heap);
    if (st != MG_OK) return st;
    *n_ids = e.n;
    return e.n > cap ? MG_E_BUFFER_TOO_SMALL : MG_OK;
}

/* ------------------------------------------------------------ decoding */

MG_API mg_status mg_detokenize(char *buf, size_t cap, size_t *n_bytes,
                               const mg_tokenizer *t, const int32_t *ids,
                               size_t n_ids, uint32_t flags) {
    if (!tok_ok(t)) return MG_E_MISUSE;
    if (!n_bytes || (!buf && cap) || (!ids && n_ids) ||
        (flags & ~MG_DETOKENIZE_SKIP_SPECIAL))
        return MG_E_INVALID_ARG;
    *n_bytes = 0;
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= t->n_vocab) return MG_E_INVALID_ARG;
    size_t n = 0;
#define PUT(c) do { if (n + 1 < cap) buf[n] = (char)(c); n++; } while (0)
    for (size_t i = 0; i < n_ids; i++) {
        uint32_t id = (uint32_t)ids[i];
        if ((flags & MG_DETOKENIZE_SKIP_SPECIAL) &&
            (t->type[id] == MG__TOK_CONTROL || t->type[id] == MG__TOK_UNKNOWN))
            continue;
        if (t->byte_of[id] >= 0) {
            PUT(t->byte_of[id]);
            continue;
        }
        const char *p = piece_at(t, id);
        uint32_t l = t->len[id];
        for (uint32_t k = 0; k < l; k++) {
            if (k + 3 <= l && !memcmp(p + k, k_marker, 3)) {
                PUT(' ');
                k += 2;
            } else {
                PUT(p[k]);
            }
        }
    }
#undef PUT
    if (cap) buf[n < cap ? n : cap - 1] = '\0';
    *n_bytes = n;
    return n >= cap ? MG_E_BUFFER_TOO_SMALL : MG_OK;
}

/* ------------------------------------------------------- .mgm metadata */

static const char *const k_role_keys[MG__TOK_N_ROLES] = {
    "tokenizer.bos_id", "tokenizer.eos_id", "tokenizer.pad_id",
    "tokenizer.unk_id", "tokenizer.start_of_turn_id", "tokenizer.end_of_turn_id",
    "tokenizer.start_of_image_id", "tokenizer.end_of_image_id",
    "tokenizer.image_token_id",
};

/* Splits "a b" at the first space where both halves are tokens. */
static mg_status split_merge(const mg_tokenizer *t, const char *s, int32_t *l,
                             int32_t *r) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ') continue;
        int32_t a = mg__tok_find(t, s, i), b = mg__tok_find(t, s + i + 1, n - i - 1);
        if (a >= 0 && b >= 0) {
            *l = a;
            *r = b;
            return MG_OK;
        }
    }
    return MG_E_NOT_FOUND;
}

mg_status mg__tokenizer_from_mgm(mg_tokenizer **out, const mg__mgm *f,
                                 char *err, size_t errlen) {
    *out = NULL;
    const mg__meta *tokens = mg__mgm_meta(f, "tokenizer.tokens");
    if (!tokens) return MG_E_NOT_FOUND;
    if (tokens->type != MG_META_ARRAY || tokens->elem_type != MG_META_STRING)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer.tokens is not a string array");
    const mg__meta *model = mg__mgm_meta(f, "tokenizer.model");
    if (model && (model->type != MG_META_STRING ||
                  (strcmp(model->v.s, "bpe") && strcmp(model->v.s, "placeholder"))))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer.model: only \"bpe\" is supported");
    if (tokens->n == 0 || tokens->n > MG__TOK_MAX_VOCAB)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer.tokens: %" PRIu64 " tokens is out of range",
                       tokens->n);
    uint32_t nv = (uint32_t)tokens->n;
    const mg__meta *types = mg__mgm_meta(f, "tokenizer.token_type");
    if (types && (types->type != MG_META_ARRAY || types->elem_type != MG_META_INT ||
                  types->n != tokens->n))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer.token_type is not an int array as long as "
                       "tokenizer.tokens");
    const mg__meta *merges = mg__mgm_meta(f, "tokenizer.merges");
    if (merges && (merges->type != MG_META_ARRAY || merges->elem_type != MG_META_STRING))
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "tokenizer.merges is not a string array");
    if (merges && merges->n > MG__TOK_MAX_MERGES)
        return mg__err(err, errlen, MG_E_MODEL_FORMAT, "tokenizer.merges: too many");
    int32_t norm = MG__TOK_NORM_SPACE_MARKER, pre = MG__TOK_PRE_NONE;
    const mg__meta *mn = mg__mgm_meta(f, "tokenizer.normalizer");
    if (mn) {
        if (mn->type == MG_META_STRING && !strcmp(mn->v.s, "space_marker")) norm = MG__TOK_NORM_SPACE_MARKER;
        else if (mn->type == MG_META_STRING && !strcmp(mn->v.s, "none")) norm = MG__TOK_NORM_NONE;
        else return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                            "tokenizer.normalizer: expected \"space_marker\" or \"none\"");
    }
    const mg__meta *mp = mg__mgm_meta(f, "tokenizer.pre_tokenizer");
    if (mp) {
        if (mp->type == MG_META_STRING && !strcmp(mp->v.s, "split_space")) pre = MG__TOK_PRE_SPLIT_SPACE;
        else if (mp->type == MG_META_STRING && !strcmp(mp->v.s, "none")) pre = MG__TOK_PRE_NONE;
        else return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                            "tokenizer.pre_tokenizer: expected \"split_space\" or \"none\"");
    }
    int32_t roles[MG__TOK_N_ROLES];
    for (int i = 0; i < MG__TOK_N_ROLES; i++) {
        const mg__meta *m = mg__mgm_meta(f, k_role_keys[i]);
        roles[i] = -1;
        if (!m) continue;
        if (m->type != MG_META_INT || m->v.i < 0 || m->v.i >= (int64_t)nv)
            return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                           "%s: not a token id", k_role_keys[i]);
        roles[i] = (int32_t)m->v.i;
    }
    mg_tokenizer *t = NULL;
    mg_status st = mg__tok_new(&t, nv, err, errlen);
    for (uint32_t i = 0; st == MG_OK && i < nv; i++) {
        int64_t ty = types ? types->v.ai[i] : MG__TOK_NORMAL;
        if (ty < MG__TOK_NORMAL || ty > MG__TOK_BYTE) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.token_type[%" PRIu32 "] = %" PRId64 " is unknown", i, ty);
            break;
        }
        const char *s = tokens->v.as[i];
        st = mg__tok_set_piece(t, i, s, strlen(s), (int32_t)ty, err, errlen);
    }
    if (st == MG_OK) st = mg__tok_index(t, err, errlen);
    uint64_t nm = merges ? merges->n : 0;
    if (st == MG_OK) st = mg__tok_reserve_merges(t, (uint32_t)nm, err, errlen);
    for (uint64_t i = 0; st == MG_OK && i < nm; i++) {
        int32_t l, r;
        if (split_merge(t, merges->v.as[i], &l, &r) != MG_OK) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.merges[%" PRIu64 "] is not two tokens \"a b\"", i);
            break;
        }
        st = mg__tok_add_merge(t, l, r, err, errlen);
    }
    if (st == MG_OK) st = mg__tok_finish(t, norm, pre, roles, err, errlen);
    if (st != MG_OK) {
        mg_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MG_OK;
}

mg_status mg__tokenizer_write_meta(const mg_tokenizer *t, mg_writer *w) {
    if (!tok_ok(t) || !w) return MG_E_INVALID_ARG;
    mg_status st = MG_E_NOMEM;
    const char **pieces = mg__malloc((size_t)t->n_vocab * sizeof *pieces);
    int64_t *types = mg__malloc((size_t)t->n_vocab * sizeof *types);
    const char **ms = mg__malloc(((size_t)t->n_merges + 1) * sizeof *ms);
    size_t mlen = 1;
    for (uint32_t i = 0; i < t->n_merges; i++)
        mlen += (size_t)t->len[t->merge_l[i]] + t->len[t->merge_r[i]] + 2;
    char *mbuf = mg__malloc(mlen);
    if (pieces && types && ms && mbuf) {
        for (uint32_t i = 0; i < t->n_vocab; i++) {
            pieces[i] = piece_at(t, i);
            types[i] = t->type[i];
        }
        size_t k = 0;
        for (uint32_t i = 0; i < t->n_merges; i++) {
            uint32_t l = (uint32_t)t->merge_l[i], r = (uint32_t)t->merge_r[i];
            ms[i] = mbuf + k;
            memcpy(mbuf + k, piece_at(t, l), t->len[l]);
            k += t->len[l];
            mbuf[k++] = ' ';
            memcpy(mbuf + k, piece_at(t, r), t->len[r]);
            k += t->len[r];
            mbuf[k++] = '\0';
        }
        st = mg_writer_set_string(w, "tokenizer.model", "bpe");
        if (!st) st = mg_writer_set_string_array(w, "tokenizer.tokens", pieces, t->n_vocab);
        if (!st) st = mg_writer_set_int_array(w, "tokenizer.token_type", types, t->n_vocab);
        if (!st && t->n_merges)
            st = mg_writer_set_string_array(w, "tokenizer.merges", ms, t->n_merges);
        if (!st)
            st = mg_writer_set_string(w, "tokenizer.normalizer",
                                      t->normalizer == MG__TOK_NORM_SPACE_MARKER
                                          ? "space_marker" : "none");
        if (!st)
            st = mg_writer_set_string(w, "tokenizer.pre_tokenizer",
                                      t->pre_tokenizer == MG__TOK_PRE_SPLIT_SPACE
                                          ? "split_space" : "none");
        for (int i = 0; !st && i < MG__TOK_N_ROLES; i++)
            if (t->roles[i] >= 0) st = mg_writer_set_int(w, k_role_keys[i], t->roles[i]);
    }
    mg__free(pieces);
    mg__free(types);
    mg__free(ms);
    mg__free(mbuf);
    return st;
}

int mg__tokenizer_same(const mg_tokenizer *a, const mg_tokenizer *b) {
    if (a == b) return 1;
    if (!a || !b || a->n_vocab != b->n_vocab || a->n_merges != b->n_merges ||
        a->normalizer != b->normalizer || a->pre_tokenizer != b->pre_tokenizer ||
        memcmp(a->roles, b->roles, sizeof a->roles) ||
        memcmp(a->type, b->type, a->n_vocab * sizeof *a->type) ||
        memcmp(a->len, b->len, a->n_vocab * sizeof *a->len))
        return 0;
    for (uint32_t i = 0; i < a->n_vocab; i++)
        if (memcmp(a->pool + a->off[i], b->pool + b->off[i], a->len[i])) return 0;
    return !a->n_merges || (!memcmp(a->merge_l, b->merge_l, a->n_merges * sizeof *a->merge_l) &&
                            !memcmp(a->merge_r, b->merge_r, a->n_merges * sizeof *a->merge_r));
}
