/* encoder.h - per-modality encoders behind a versioned vtable.
 *
 * An encoder turns one input (a 2D image now; a CT volume or genotype data
 * later) into a block of tokens in the text decoder's embedding space, fed
 * to the decoder as one bidirectional block (decoder.h, block ids). Design
 * after SQLite's VFS (a versioned struct of function pointers) and
 * libarchive's format readers (modules bid; the highest bid wins):
 *
 *  - A model bid (probe) looks at a model file and says whether, and how
 *    well, the encoder can run something in it (0 = not at all). When a
 *    model is loaded every built-in vtable is probed; per input kind the
 *    highest bidder is built. A probe only looks: a malformed section is
 *    reported by build, with a message naming the key or tensor.
 *  - An input bid (bid) says how well a built encoder fits one input (0 =
 *    it cannot encode it). A task picks the highest bid among the model's
 *    encoders, so the input kind need not be spelt out by the caller.
 *  - The built encoder (impl) is immutable and shared by every context of
 *    the model, like the decoder; a state (scratch buffers sized once,
 *    when a context is created) belongs to one context and one thread.
 *  - An input is read as one or more blocks (n_blocks: an image is one,
 *    a volume one per slice it gives the model), each of n_tokens tokens
 *    (geometry) and bidirectional within itself, each followed in the
 *    prompt by the text block_label writes (a volume's "SLICE i"); so the
 *    tokens of one input are n_blocks(in) x n_tokens.
 *  - encode writes n_tokens x width floats for block in->block of one
 *    input, checks *interrupt between its steps, and allocates nothing
 *    (the volume encoder grows one slice buffer in its state).
 *
 * Registries are per model (no global mutable state): mg__encoders_build
 * fills a model's set from the static table of built-ins, and
 * mg__encoders_add registers an extra vtable on one model (before any
 * context exists, since contexts size their states from the set).
 *
 * Exposure: the vtable is internal in 0.x (it hands out mg__mgm and
 * mg__pool, which are not public). The path to a plugin header
 * (include/medgemini_encoder.h) is spelt out in docs/VISION.md: replace
 * those two with opaque public views (tensor look-up by name through
 * mg_model_tensor_find, a "parallel for" callback), keep abi_version and
 * struct_size first, and add mg_model_register_encoder() with the rule
 * above. */
#ifndef MG_ENCODER_H
#define MG_ENCODER_H

#include <stdatomic.h>

#include "core/core.h"
#include "core/pool.h"
#include "io/mgm.h"

#define MG__ENCODER_ABI 3u     /* vtable layout version (3: encode takes mg__enc_ctl) */
#define MG__MAX_ENCODERS 8u    /* encoders per model */

/* Input kinds. */
#define MG__INPUT_IMAGE  1     /* one 2D image (mg_image) */
#define MG__INPUT_VOLUME 2     /* a 3D volume (mg_volume), read as slices */
#define MG__INPUT_GENOME 3     /* named polygenic scores (mg__genome_input) */

typedef struct mg__enc_input {
    int32_t kind;                    /* MG__INPUT_* */
    const mg_image *image;           /* IMAGE */
    const mg_volume *volume;         /* VOLUME */
    mg_slice_params slices;          /* VOLUME: checked (mg__slice_params_get) */
    uint32_t block;                  /* the block encode makes (0-based) */
    const void *data;                /* other kinds: kind-specific */
    size_t size;
} mg__enc_input;

/* GENOME input: n scores and their names ("<trait>_<threshold>"). */
typedef struct mg__genome_input {
    const double *scores;
    const char *const *names;
    size_t n;
} mg__genome_input;

/* What encode checks between its steps (at least every layer): the
 * interrupt flag, and a step callback (progress: steps done of total) that
 * stops the encoder by returning nonzero. Both may be NULL. */
typedef struct mg__enc_ctl {
    const atomic_int *interrupt;
    int (*step)(void *user, uint32_t done, uint32_t total);
    void *user;
} mg__enc_ctl;

/* Nonzero when the encoder must stop (then MG_E_INTERRUPTED). */
static inline int mg__enc_stop(const mg__enc_ctl *ctl, uint32_t done, uint32_t total) {
    if (!ctl) return 0;
    if (ctl->interrupt && atomic_load(ctl->interrupt)) return 1;
    return ctl->step && ctl->step(ctl->user, done, total);
}

typedef struct mg__enc_geometry {
    uint32_t n_tokens;   /* tokens per block */
    uint32_t width;      /* floats per token (the text hidden size) */
    uint64_t state_bytes;/* bytes one state allocates */
} mg__enc_geometry;

typedef struct mg__encoder_vtable {
    uint32_t abi_version;    /* MG__ENCODER_ABI */
    uint32_t struct_size;    /* sizeof(mg__encoder_vtable) of its author */
    const char *name;        /* short, stable: "image2d" */
    int32_t input_kind;      /* MG__INPUT_* it serves */
    /* Model bid: > 0 when f holds this encoder's tensors/keys. */
    int32_t (*probe)(const mg__mgm *f);
    /* Builds the immutable encoder over f (which outlives it); text_hidden
     * is the decoder's width the output must have (0 = no decoder).
     * Errors: MG_E_MODEL_FORMAT (message names the key/tensor), MG_E_NOMEM. */
    mg_status (*build)(void **out, const mg__mgm *f, uint32_t text_hidden,
                       char *err, size_t errlen);
    void (*destroy)(void *impl);                         /* NULL ok */
    void (*geometry)(const void *impl, mg__enc_geometry *out);
    /* Input bid: > 0 when impl can encode in. */
    int32_t (*bid)(const void *impl, const mg__enc_input *in);
    /* Blocks the input is read as (>= 1 for an input bid > 0). */
    uint32_t (*n_blocks)(const void *impl, const mg__enc_input *in);
    /* Writes the NUL-terminated text that follows block b in the prompt
     * ("" for none) into buf (cap >= 64). */
    void (*block_label)(const void *impl, const mg__enc_input *in, uint32_t b,
                        char *buf, size_t cap);
    /* A state sized for the pool's thread count (n_threads >= 1). */
    mg_status (*state_new)(void **out, const void *impl, uint32_t n_threads);
    void (*state_free)(void *state);                     /* NULL ok */
    /* Encodes block in->block of one input into out[n_tokens * width]. Errors:
     * MG_E_INVALID_ARG / MG_E_UNSUPPORTED / MG_E_LIMIT (input not usable,
     * message in err), MG_E_INTERRUPTED (mg__enc_stop said so). */
    mg_status (*encode)(void *state, const mg__enc_input *in, float *out,
                        mg__pool *pool, const mg__enc_ctl *ctl,
                        char *err, size_t errlen);
} mg__encoder_vtable;

typedef struct mg__encoder {
    const mg__encoder_vtable *vt;
    void *impl;
    mg__enc_geometry geo;
} mg__encoder;

typedef struct mg__encoders {
    uint32_t n;
    mg__encoder e[MG__MAX_ENCODERS];
} mg__encoders;

/* The built-in vtables (static registry), NULL-terminated. */
extern const mg__encoder_vtable *const mg__builtin_encoders[];
extern const mg__encoder_vtable mg__encoder_image2d;
extern const mg__encoder_vtable mg__encoder_volume3d;
extern const mg__encoder_vtable mg__encoder_genome;

/* A block_label for encoders whose blocks have no text after them. */
void mg__enc_no_label(const void *impl, const mg__enc_input *in, uint32_t b, char *buf,
                      size_t cap);
/* Encodes w x h RGB8 pixels with an image2d state (wrap: an image struct
 * the caller keeps for the call; the pixels are not copied). */
mg_status mg__image2d_encode_rgb(void *state, mg_image *wrap, uint8_t *rgb, uint32_t w,
                                 uint32_t h, float *out, mg__pool *pool,
                                 const mg__enc_ctl *ctl, char *err, size_t errlen);

/* The genomics encoder's score image (S x S RGB8) of g; val and seen:
 * T*C scratch entries (S and T*C from mg__genome_size). Errors: MG_E_INVALID_ARG (a
 * NULL name, a score given twice, none the model reads). */
mg_status mg__genome_render(const void *impl, const mg__genome_input *g, uint8_t *rgb,
                            double *val, uint8_t *seen, char *err, size_t errlen);
void mg__genome_size(const void *impl, uint32_t *side, size_t *n_scores);

/* Probes every built-in against f and builds the best per input kind.
 * A model without any encoder section gives an empty set and MG_OK.
 * Errors: those of the chosen encoders' build. */
mg_status mg__encoders_build(mg__encoders *set, const mg__mgm *f,
                             uint32_t text_hidden, char *err, size_t errlen);
/* Registers and builds an extra vtable on one set. It must probe > 0 on f;
 * it replaces a built-in of the same input kind when its probe bids
 * higher, else it is added. Errors: MG_E_INVALID_ARG (NULL, wrong
 * abi_version or struct_size, a missing function), MG_E_UNSUPPORTED
 * (probe says 0), MG_E_LIMIT (set full), build's errors. */
mg_status mg__encoders_add(mg__encoders *set, const mg__encoder_vtable *vt,
                           const mg__mgm *f, uint32_t text_hidden, char *err,
                           size_t errlen);
void mg__encoders_free(mg__encoders *set);              /* NULL ok */
/* Index of the encoder with the highest bid for in, or -1. */
int mg__encoders_pick(const mg__encoders *set, const mg__enc_input *in);

#endif
