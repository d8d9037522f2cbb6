/* tokenizer_json.c - mg_tokenizer_load_json: reads a Hugging Face
 * tokenizer.json (model BPE with byte fallback; normalizer Replace " " ->
 * "\xe2\x96\x81" or none; pre-tokenizer Split " " MergedWithPrevious or none;
 * added tokens without lstrip/rstrip/single_word/normalized), as Gemma 3
 * ships it. Anything else is refused with MG_E_MODEL_FORMAT, never guessed.
 * mg__tokenizer_write_json writes a tokenizer back in that same form. */
#include "llm/tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_JSON_BYTES ((size_t)1 << 30)

#define FAIL(...) return mg__err(err, errlen, MG_E_MODEL_FORMAT, "tokenizer.json: " __VA_ARGS__)

static int json_id(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)MG__TOK_MAX_VOCAB) || floor(d) != d) return 0;
    *out = (int64_t)d;
    return 1;
}

static int json_bool(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsTrue(v);
}

static int is_str(const cJSON *v, const char *s) {
    return cJSON_IsString(v) && v->valuestring && !strcmp(v->valuestring, s);
}

/* {"String": " "} */
static int pattern_is_space(const cJSON *pat) {
    return cJSON_IsObject(pat) &&
           is_str(cJSON_GetObjectItemCaseSensitive(pat, "String"), " ");
}

static mg_status check_config(const cJSON *root, int32_t *norm, int32_t *pre,
                              char *err, size_t errlen) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!n || cJSON_IsNull(n)) {
        *norm = MG__TOK_NORM_NONE;
    } else if (cJSON_IsObject(n) &&
               is_str(cJSON_GetObjectItemCaseSensitive(n, "type"), "Replace") &&
               pattern_is_space(cJSON_GetObjectItemCaseSensitive(n, "pattern")) &&
               is_str(cJSON_GetObjectItemCaseSensitive(n, "content"), "\xe2\x96\x81")) {
        *norm = MG__TOK_NORM_SPACE_MARKER;
    } else {
        FAIL("unsupported normalizer (only Replace \" \" -> \"\\u2581\" or null)");
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!p || cJSON_IsNull(p)) {
        *pre = MG__TOK_PRE_NONE;
    } else if (cJSON_IsObject(p) &&
               is_str(cJSON_GetObjectItemCaseSensitive(p, "type"), "Split") &&
               pattern_is_space(cJSON_GetObjectItemCaseSensitive(p, "pattern")) &&
               is_str(cJSON_GetObjectItemCaseSensitive(p, "behavior"), "MergedWithPrevious") &&
               !json_bool(p, "invert")) {
        *pre = MG__TOK_PRE_SPLIT_SPACE;
    } else {
        FAIL("unsupported pre_tokenizer (only Split \" \" MergedWithPrevious or null)");
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(m)) FAIL("no \"model\" object");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(m, "type");
    if (ty && !is_str(ty, "BPE")) FAIL("unsupported model type (only BPE)");
    const char *bad[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, bad[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            FAIL("unsupported model.%s", bad[i]);
    }
    if (json_bool(m, "ignore_merges")) FAIL("unsupported model.ignore_merges = true");
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (cJSON_IsNumber(dr) && dr->valuedouble != 0) FAIL("unsupported BPE dropout");
    return MG_OK;
}

static mg_status build(mg_tokenizer **out, const cJSON *root, char *err,
                       size_t errlen) {
    int32_t norm = 0, pre = 0;
    mg_status st = check_config(root, &norm, &pre, err, errlen);
    if (st) return st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) FAIL("model.vocab is not an object");
    if (merges && !cJSON_IsArray(merges) && !cJSON_IsNull(merges))
        FAIL("model.merges is not an array");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        FAIL("added_tokens is not an array");
    int nvocab = cJSON_GetArraySize(vocab);
    if (nvocab <= 0 || (uint32_t)nvocab > MG__TOK_MAX_VOCAB) FAIL("model.vocab is empty or too large");
    /* Added tokens past the vocabulary extend it (Gemma 3's image token). */
    uint32_t total = (uint32_t)nvocab, n_added = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, added) {
        n_added++;
        int64_t id = 0;
        if (!cJSON_IsObject(a) || !json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id))
            FAIL("an added token has no valid \"id\"");
        if (n_added > MG__TOK_MAX_VOCAB) FAIL("too many added tokens");
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(a, "content")))
            FAIL("added token %" PRId64 " has no \"content\" string", id);
        if ((uint64_t)id >= total) total = (uint32_t)id + 1;
    }
    if (total > MG__TOK_MAX_VOCAB || total - (uint32_t)nvocab > n_added)
        FAIL("added token ids leave a gap after the vocabulary");
    mg_tokenizer *t = NULL;
    if ((st = mg__tok_new(&t, total, err, errlen))) return st;
    /* The added tokens' types and contents, then the vocabulary. */
    int32_t *atype = mg__calloc(total, sizeof *atype);
    const char **acontent = mg__calloc(total, sizeof *acontent);
    if (!atype || !acontent) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    const char *unk = NULL;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(u)) unk = u->valuestring;
    cJSON_ArrayForEach(a, added) {
        int64_t id = 0;
        json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id);
        const char *c = cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring;
        if (json_bool(a, "lstrip") || json_bool(a, "rstrip") ||
            json_bool(a, "single_word") || json_bool(a, "normalized")) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.json: added token %" PRId64 " uses lstrip, rstrip, "
                         "single_word or normalized, which are not supported", id);
            goto done;
        }
        if (atype[id]) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.json: added token id %" PRId64 " given twice", id);
            goto done;
        }
        int special = json_bool(a, "special");
        atype[id] = !special ? MG__TOK_USER
                    : (unk && !strcmp(c, unk)) ? MG__TOK_UNKNOWN : MG__TOK_CONTROL;
        acontent[id] = c;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) {
        int64_t id = 0;
        if (!json_id(v, &id) || id >= nvocab) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.json: vocab entry \"%.60s\" has a bad id "
                         "(ids must be 0..%d)", v->string ? v->string : "", nvocab - 1);
            goto done;
        }
        if (acontent[id] && strcmp(acontent[id], v->string)) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.json: added token %" PRId64 " differs from the "
                         "vocabulary's token %" PRId64, id, id);
            goto done;
        }
        size_t len = strlen(v->string);
        int32_t type = atype[id] ? atype[id] : MG__TOK_NORMAL;
        if (!atype[id] && len == 6 && !strncmp(v->string, "<0x", 3) && v->string[5] == '>')
            type = MG__TOK_BYTE;
        if ((st = mg__tok_set_piece(t, (uint32_t)id, v->string, len, type, err, errlen)))
            goto done;
    }
    for (uint32_t id = (uint32_t)nvocab; id < total; id++) {
        if (!acontent[id]) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.json: token ids have a gap at %" PRIu32, id);
            goto done;
        }
        if ((st = mg__tok_set_piece(t, id, acontent[id], strlen(acontent[id]),
                                    atype[id], err, errlen)))
            goto done;
    }
    if ((st = mg__tok_index(t, err, errlen))) goto done;
    int nm = merges ? cJSON_GetArraySize(merges) : 0;
    if ((st = mg__tok_reserve_merges(t, (uint32_t)(nm < 0 ? 0 : nm), err, errlen)))
        goto done;
    const cJSON *m;
    uint32_t rank = 0;
    cJSON_ArrayForEach(m, merges) {
        int32_t l = -1, r = -1;
        if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
            cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            l = mg__tok_find(t, m->child->valuestring, strlen(m->child->valuestring));
            r = mg__tok_find(t, m->child->next->valuestring,
                             strlen(m->child->next->valuestring));
        } else if (cJSON_IsString(m)) {
            /* the older "a b" form: split at the first space */
            const char *s = m->valuestring, *sp = strchr(s, ' ');
            if (sp) {
                l = mg__tok_find(t, s, (size_t)(sp - s));
                r = mg__tok_find(t, sp + 1, strlen(sp + 1));
            }
        } else {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.json: merge %" PRIu32 " is neither [\"a\", \"b\"] "
                         "nor \"a b\"", rank);
            goto done;
        }
        if (l < 0 || r < 0) {
            st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                         "tokenizer.json: merge %" PRIu32 " names a token that is "
                         "not in the vocabulary", rank);
            goto done;
        }
        if ((st = mg__tok_add_merge(t, l, r, err, errlen))) goto done;
        rank++;
    }
    static const char *const role_piece[MG__TOK_N_ROLES] = {
        "<bos>", "<eos>", "<pad>", NULL, "<start_of_turn>", "<end_of_turn>",
        "<start_of_image>", "<end_of_image>", "<image_soft_token>",
    };
    int32_t roles[MG__TOK_N_ROLES];
    for (int i = 0; i < MG__TOK_N_ROLES; i++) {
        const char *p = i == MG_TOKEN_UNK ? unk : role_piece[i];
        roles[i] = p ? mg__tok_find(t, p, strlen(p)) : -1;
    }
    if (unk && roles[MG_TOKEN_UNK] < 0)
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT,
                     "tokenizer.json: model.unk_token is not in the vocabulary");
    else
        st = mg__tok_finish(t, norm, pre, roles, err, errlen);
done:
    mg__free(atype);
    mg__free(acontent);
    if (st != MG_OK) {
        mg_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MG_OK;
}

MG_API mg_status mg_tokenizer_load_json(mg_tokenizer **out, const char *path,
                                        char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return mg__err(err, errlen, MG_E_INVALID_ARG, "path is NULL");
    FILE *fp = fopen(path, "rb");
    if (!fp) return mg__err(err, errlen, MG_E_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode) ||
        (uint64_t)sb.st_size > MAX_JSON_BYTES) {
        fclose(fp);
        return mg__err(err, errlen, MG_E_IO, "%s: not a regular file of at most 1 GiB", path);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = mg__malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    size_t got = fread(buf, 1, n, fp);
    int rerr = ferror(fp);
    fclose(fp);
    if (got != n || rerr) {
        mg__free(buf);
        return mg__err(err, errlen, MG_E_IO, "%s: read failed", path);
    }
    buf[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    if (!root) {
        size_t at = end && end >= buf ? (size_t)(end - buf) : 0;
        mg__free(buf);
        return mg__err(err, errlen, MG_E_MODEL_FORMAT,
                       "%s: not valid JSON (near byte %zu)", path, at);
    }
    mg__free(buf);
    mg_status st;
    if (!cJSON_IsObject(root))
        st = mg__err(err, errlen, MG_E_MODEL_FORMAT, "tokenizer.json: not a JSON object");
    else
        st = build(out, root, err, errlen);
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------- writing */

/* A JSON string: quotes, backslashes and control characters escaped, the
 * rest (valid UTF-8, checked when the piece was set) as it is. */
static void put_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", (unsigned)*p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static const char k_space_json[] = "{\"String\": \" \"}";

mg_status mg__tokenizer_write_json(const mg_tokenizer *t, const char *path, char *err,
                                   size_t errlen) {
    uint32_t nv = mg_tokenizer_vocab_size(t);
    if (!nv || !path) return mg__err(err, errlen, MG_E_INVALID_ARG, "no tokenizer or path");
    FILE *f = fopen(path, "wb");
    if (!f) return mg__err(err, errlen, MG_E_IO, "%s: %s", path, strerror(errno));
    int32_t norm = 0, pre = 0;
    mg__tok_options(t, &norm, &pre);
    int32_t bos = mg_tokenizer_special(t, MG_TOKEN_BOS);
    int32_t unk = mg_tokenizer_special(t, MG_TOKEN_UNK);
    fputs("{\n\"version\": \"1.0\",\n\"truncation\": null,\n\"padding\": null,\n"
          "\"added_tokens\": [", f);
    int first = 1;
    for (uint32_t id = 0; id < nv; id++) {
        int32_t ty = mg__tok_type(t, (int32_t)id);
        if (ty != MG__TOK_UNKNOWN && ty != MG__TOK_CONTROL && ty != MG__TOK_USER) continue;
        fprintf(f, "%s\n {\"id\": %" PRIu32 ", \"content\": ", first ? "" : ",", id);
        put_json_str(f, mg_tokenizer_piece(t, (int32_t)id));
        fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                "\"normalized\": false, \"special\": %s}", ty == MG__TOK_USER ? "false" : "true");
        first = 0;
    }
    fputs("\n],\n\"normalizer\": ", f);
    if (norm == MG__TOK_NORM_SPACE_MARKER)
        fprintf(f, "{\"type\": \"Replace\", \"pattern\": %s, \"content\": \"\xe2\x96\x81\"}",
                k_space_json);
    else
        fputs("null", f);
    fputs(",\n\"pre_tokenizer\": ", f);
    if (pre == MG__TOK_PRE_SPLIT_SPACE)
        fprintf(f, "{\"type\": \"Split\", \"pattern\": %s, \"behavior\": \"MergedWithPrevious\", "
                "\"invert\": false}", k_space_json);
    else
        fputs("null", f);
    fputs(",\n\"post_processor\": ", f);
    if (bos >= 0) {
        const char *b = mg_tokenizer_piece(t, bos);
        fputs("{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": ", f);
        put_json_str(f, b);
        fputs(", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
              "\"pair\": [{\"SpecialToken\": {\"id\": ", f);
        put_json_str(f, b);
        fputs(", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
              "{\"SpecialToken\": {\"id\": ", f);
        put_json_str(f, b);
        fputs(", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
              "\"special_tokens\": {", f);
        put_json_str(f, b);
        fputs(": {\"id\": ", f);
        put_json_str(f, b);
        fprintf(f, ", \"ids\": [%d], \"tokens\": [", (int)bos);
        put_json_str(f, b);
        fputs("]}}}", f);
    } else {
        fputs("null", f);
    }
    fprintf(f, ",\n\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", "
            "\"pattern\": {\"String\": \"\xe2\x96\x81\"}, \"content\": \" \"}, "
            "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},\n"
            "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": ");
    if (unk >= 0) put_json_str(f, mg_tokenizer_piece(t, unk));
    else fputs("null", f);
    fputs(", \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
          "\"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false,\n"
          "\"vocab\": {", f);
    for (uint32_t id = 0; id < nv; id++) {
        fputs(id ? ",\n " : "\n ", f);
        put_json_str(f, mg_tokenizer_piece(t, (int32_t)id));
        fprintf(f, ": %" PRIu32, id);
    }
    fputs("\n},\n\"merges\": [", f);
    uint32_t nm = mg__tok_n_merges(t);
    for (uint32_t r = 0; r < nm; r++) {
        int32_t a = -1, b = -1;
        mg__tok_merge(t, r, &a, &b);
        fputs(r ? ",\n [" : "\n [", f);
        put_json_str(f, mg_tokenizer_piece(t, a));
        fputs(", ", f);
        put_json_str(f, mg_tokenizer_piece(t, b));
        fputc(']', f);
    }
    fputs("\n]}\n}\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        mg__remove_partial(path);
        return mg__err(err, errlen, MG_E_IO, "%s: write failed", path);
    }
    return MG_OK;
}
