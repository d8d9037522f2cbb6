/* convert.h - the model converter's internals (mg_convert in medgemini.h;
 * docs/CONVERT.md). A source is a set of files and the tensors in them; the
 * readers (safetensors.c, gguf.c) validate every header field against the
 * file before anything is trusted, and tensor data is read later with pread,
 * a block of rows at a time. */
#ifndef MG_CONVERT_H
#define MG_CONVERT_H

#include "core/core.h"

#define MG__CONV_MAX_DIMS 4

/* Source-only element types (GGML K-quants), beside the MG_DTYPE_* codes. */
#define MG__SRC_Q4_K 100
#define MG__SRC_Q6_K 101
/* Bytes of n elements of a source type (MG_DTYPE_* or MG__SRC_*); 0 with
 * *ok = 0 when n is not whole blocks or the type is unknown. */
uint64_t mg__csrc_bytes(int32_t type, uint64_t n, int *ok);
/* n (a multiple of 256) values of Q4_K / Q6_K blocks into f32 (kquant.c). */
void mg__dequant_q4_k(float *dst, const void *src, uint64_t n);
void mg__dequant_q6_k(float *dst, const void *src, uint64_t n);

/* GGUF value types */
enum {
    MG__GV_U8 = 0, MG__GV_I8, MG__GV_U16, MG__GV_I16, MG__GV_U32, MG__GV_I32,
    MG__GV_F32, MG__GV_BOOL, MG__GV_STRING, MG__GV_ARRAY, MG__GV_U64,
    MG__GV_I64, MG__GV_F64
};

typedef struct mg__cfile {
    int fd;
    char *path;
    uint64_t size;
} mg__cfile;

typedef struct mg__ctensor {
    char *name;
    int32_t dtype;      /* MG_DTYPE_* of the stored data, or -1: not readable */
    const char *type_name; /* the source's own name of its type ("BF16", "Q4_K") */
    uint32_t n_dims;
    uint64_t dims[MG__CONV_MAX_DIMS]; /* dims[0] varies fastest */
    uint64_t n_elems;
    uint32_t file;      /* index into mg__csrc.files */
    uint64_t offset;    /* absolute file offset */
    uint64_t size;      /* bytes */
    int used;           /* set by the converter */
} mg__ctensor;

/* A GGUF key/value. Arrays of numbers are kept as doubles and int64s both;
 * string arrays as NUL-terminated strings. */
typedef struct mg__gkv {
    char *key;
    uint32_t type;       /* MG__GV_* */
    uint32_t elem_type;  /* for arrays */
    uint64_t n;          /* array length (1 for scalars) */
    int64_t i;           /* integer / bool scalars */
    double f;            /* numeric scalars (ints too) */
    char *s;             /* STRING */
    int64_t *ai;         /* numeric arrays */
    double *af;
    char **as;           /* string arrays */
} mg__gkv;

typedef struct mg__csrc {
    mg__cfile *files;
    uint32_t n_files;
    mg__ctensor *t;
    size_t n_t, cap_t;
    mg__gkv *kv;         /* GGUF only */
    size_t n_kv, cap_kv;
} mg__csrc;

void mg__csrc_free(mg__csrc *s);
/* Opens path read-only and appends it to s->files (index in *idx). */
mg_status mg__csrc_add_file(mg__csrc *s, const char *path, uint32_t *idx,
                            char *err, size_t errlen);
/* Appends a tensor (name copied); rejects duplicate names. */
mg_status mg__csrc_add_tensor(mg__csrc *s, const mg__ctensor *t, char *err,
                              size_t errlen);
/* Sorts the tensors by name for look-up and rejects duplicates, then checks
 * that the byte ranges within each file do not overlap. */
mg_status mg__csrc_index(mg__csrc *s, char *err, size_t errlen);
mg__ctensor *mg__csrc_find(const mg__csrc *s, const char *name);
const mg__gkv *mg__csrc_kv(const mg__csrc *s, const char *key);
/* Reads rows [row0, row0 + n_rows) (a row = dims[0] elements) as f32 into
 * out; scratch must hold n_rows rows in the stored type. */
mg_status mg__csrc_read_rows(const mg__csrc *s, const mg__ctensor *t,
                             uint64_t row0, uint64_t n_rows, float *out,
                             void *scratch, char *err, size_t errlen);

/* safetensors: one file, or a folder's model.safetensors.index.json with its
 * shards (dir, index file name). */
mg_status mg__st_add_file(mg__csrc *s, const char *path, char *err,
                          size_t errlen);
mg_status mg__st_open_dir(mg__csrc *s, const char *dir, char *err,
                          size_t errlen);

/* GGUF v2/v3 (little-endian). */
mg_status mg__gguf_add_file(mg__csrc *s, const char *path, char *err,
                            size_t errlen);
/* The name of a GGML tensor type code, or NULL. */
const char *mg__ggml_type_name(uint32_t type);

/* Reads a whole small file (JSON) into a NUL-terminated buffer (at most
 * max bytes). MG_E_NOT_FOUND when it does not exist. */
mg_status mg__read_text_file(char **out, size_t *len, const char *path,
                             size_t max, char *err, size_t errlen);

/* The model configuration both source formats map to (docs/CONVERT.md has
 * the defaults table). */
typedef struct mg__ccfg {
    /* text decoder */
    int64_t vocab, hidden, ffn, layers, heads, kv_heads, head_dim, ctx;
    int64_t window, pattern, qpas;
    double theta_global, theta_local, rope_factor, eps, attn_softcap, final_softcap;
    int tied;
    /* image encoder and projector (has_vision) */
    int has_vision;
    int64_t v_image, v_patch, v_layers, v_hidden, v_ffn, v_heads, v_channels;
    int64_t mm_tokens;
    double v_eps;
    /* image token ids from config.json, -1 when not given */
    int64_t boi_id, eoi_id, image_id;
    /* preprocessing */
    int64_t img_size;
    double img_mean[3], img_std[3], img_rescale;
    char img_resample[16];
    /* config.json "genome_config" (a genomics encoder's metadata,
     * docs/POLYGENIC.md) as compact JSON, or NULL; free with cJSON_free */
    char *genome_json;
} mg__ccfg;

/* config.json (Gemma3ForConditionalGeneration or Gemma3ForCausalLM) and
 * preprocessor_config.json of a Hugging Face folder. */
mg_status mg__cfg_from_hf(mg__ccfg *c, const char *dir, char *err, size_t errlen);
/* The gemma3.* keys (text) and clip.* keys (mmproj, when has_mmproj) of a
 * GGUF source; vocab is taken from token_embd by the caller. */
mg_status mg__cfg_from_gguf(mg__ccfg *c, const mg__csrc *s, int has_mmproj,
                            char *err, size_t errlen);

struct mg_tokenizer;
/* A tokenizer from GGUF tokenizer.ggml.* keys (SentencePiece-style "llama"
 * vocabularies: BPE merges derived from the scores, see docs/CONVERT.md). */
mg_status mg__tokenizer_from_gguf(struct mg_tokenizer **out, const mg__csrc *s,
                                  char *err, size_t errlen);
/* A copy of t with n_vocab >= its size ids: the extra ids get unique
 * placeholder pieces of type unused (5). */
mg_status mg__tokenizer_pad(struct mg_tokenizer **out, const struct mg_tokenizer *t,
                            uint32_t n_vocab, char *err, size_t errlen);

#endif
