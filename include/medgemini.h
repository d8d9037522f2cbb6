/*
 * medgemini.h - public API of libmedgemini, an embeddable library that runs
 * medical multimodal models (a vision encoder and a text decoder) on the CPU.
 *
 * ABI policy (see docs/ABI.md): until 1.0 the ABI may change between minor
 * releases and the SONAME stays libmedgemini.so.0; every change is listed
 * under "ABI" in CHANGELOG.md. Status code values are pinned forever.
 * Structs are passed by pointer only, start with `struct_size`, and grow by
 * appending fields; the library reads only the bytes the caller's size covers
 * and uses defaults for the rest.
 *
 * Conventions that hold for every function below unless it says otherwise:
 *  - Functions return an mg_status (int32_t); MG_OK is 0.
 *  - Output parameters come first and are named `out`; what comes back through
 *    `**out` belongs to the caller and is released with the matching mg_*_free.
 *    Every mg_*_free accepts NULL.
 *  - Inputs (pixels, strings, buffers) are borrowed for the duration of the
 *    call only.
 *  - Handles carry a type tag; a NULL handle, a handle of the wrong type, or a
 *    model already freed by the caller yields MG_E_MISUSE instead of a crash
 *    (detection of arbitrary dangling pointers is best effort, as in SQLite).
 *  - Threads: an mg_model is immutable after loading and may be shared by any
 *    number of threads. An mg_context is used by one thread at a time;
 *    mg_context_interrupt may be called from any thread. mg_image objects are
 *    read-only after creation and may be shared. There is no global init.
 *  - The library never prints to stdout, never calls exit() or abort().
 *  - Matrix multiplies go through OpenBLAS, whose own thread count is the
 *    host's to set (OPENBLAS_NUM_THREADS or openblas_set_num_threads());
 *    the library's own kernels use the context's thread count.
 *  - Stack: the decode kernels keep the quantized activations on the
 *    calling thread's stack (up to about 64 KiB per call); threads that
 *    call the library need at least 256 KiB of stack (the default almost
 *    everywhere; set it where you create threads with a smaller one).
 */
#ifndef MEDGEMINI_H
#define MEDGEMINI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MG_BUILDING_LIBRARY) && defined(__GNUC__)
#define MG_API __attribute__((visibility("default")))
#else
#define MG_API
#endif

/* ---------------------------------------------------------------- versions */

#define MG_VERSION_MAJOR 0
#define MG_VERSION_MINOR 1
#define MG_VERSION_PATCH 0
#define MG_VERSION_NUMBER \
    (MG_VERSION_MAJOR * 10000 + MG_VERSION_MINOR * 100 + MG_VERSION_PATCH)
#define MG_VERSION_STRING "0.1.0"

/* The version of the library actually loaded: MAJOR*10000 + MINOR*100 + PATCH.
 * Compare with MG_VERSION_NUMBER to detect a header/library mismatch. */
MG_API uint32_t mg_version_number(void);
/* "MAJOR.MINOR.PATCH"; static storage, never freed. */
MG_API const char *mg_version_string(void);

/* A static, NUL-terminated description of how this copy was built and what it
 * chose at run time, as space-separated key=value pairs, e.g.
 * "version=0.1.0 simd=avx512 blas=OpenBLAS(...) zstd=1.5.4 png=1.6.39 jpeg=62".
 * Never freed; thread-safe. */
MG_API const char *mg_build_info(void);

/* SIMD levels the kernels can use, chosen at run time from CPUID. */
#define MG_SIMD_SCALAR 0
#define MG_SIMD_AVX2   1   /* AVX2 + FMA + F16C */
#define MG_SIMD_AVX512 2   /* AVX-512 F/BW/VL/DQ */
/* The level the kernels use in this process (the best one the CPU and OS
 * support, lowered by the environment variable MG_SIMD=scalar|avx2|avx512 if
 * it is set when the library first needs it). AMX tiles (the polygenic-score
 * kernel) are used at the AVX-512 level when the CPU has them and the OS
 * grants them; MG_AMX=0 turns them off; mg_build_info() says "amx=yes|no".
 * Without AMX the polygenic-score integer sums run on AVX512-VNNI where the
 * CPU has it and AVX512-VBMI (at the AVX-512 level); mg_build_info() says
 * which with "prs_ints=amx|vnni|no". */
MG_API int32_t mg_simd_level(void);

/* ------------------------------------------------------------ status codes */

typedef int32_t mg_status;
#define MG_OK                  0
#define MG_E_INVALID_ARG       1  /* an argument is out of range or NULL     */
#define MG_E_MISUSE            2  /* wrong, freed or busy handle; bad order  */
#define MG_E_NOMEM             3  /* an allocation failed                    */
#define MG_E_IO                4  /* open/read/write/mmap failed             */
#define MG_E_MODEL_FORMAT      5  /* model file is malformed or inconsistent */
#define MG_E_CHECKSUM          6  /* stored checksum does not match the data */
#define MG_E_UNSUPPORTED       7  /* valid request the library cannot serve  */
#define MG_E_IMAGE_FORMAT      8  /* image data is corrupt or truncated      */
#define MG_E_LIMIT             9  /* input exceeds a configured limit        */
#define MG_E_INTERRUPTED      10  /* stopped by mg_context_interrupt/callback*/
#define MG_E_CONTEXT_FULL     11  /* the context's token capacity is used up */
#define MG_E_BUFFER_TOO_SMALL 12  /* a caller buffer is too small            */
#define MG_E_NOT_FOUND        13  /* no such metadata key or tensor          */
#define MG_E_TYPE             14  /* value exists with another type          */
#define MG_E_INTERNAL         15  /* a bug in the library; please report it  */
#define MG_E_DATA_FORMAT      16  /* genotype or scoring file is malformed   */

/* A static English description of a status code ("unknown status" for values
 * this version does not know). Never NULL, never freed. */
MG_API const char *mg_status_str(mg_status status);

/* The calling thread's message for the last failed call among those that
 * have neither an error buffer nor a handle to keep one: mg_context_new and
 * mg_batch_new (e.g. "n_ctx 9000 is above the model's context length
 * 8192"). "" after such a call succeeded. Valid until the thread's next
 * such call; never NULL. */
MG_API const char *mg_last_error(void);

/* ------------------------------------------------------------------ memory */

/* Frees a string returned by the library. NULL is ignored. Never use free()
 * on library strings: the library may use another heap. */
MG_API void mg_string_free(char *s);

/* ------------------------------------------------------------------- model */

typedef struct mg_model mg_model;

#define MG_LOAD_VERIFY_CHECKSUMS 0x1u /* check every tensor's CRC-32C and that
                                         padding is zero (reads whole file)  */
#define MG_LOAD_NO_MMAP          0x2u /* read the file into memory: now the
                                         default, kept so that callers that
                                         name it build and behave the same  */
#define MG_LOAD_MMAP             0x4u /* map the file read-only instead of
                                         reading it (ignored with
                                         MG_LOAD_NO_MMAP): pages are shared
                                         between processes that map the same
                                         file, but decoding is slower (4 KiB
                                         pages) and a file truncated while
                                         mapped raises SIGBUS in the host    */
#define MG_LOAD_FILE_LAYOUT      0x8u /* keep every tensor's bytes as stored.
                                         Without it, on CPUs with
                                         AVX512-VNNI, the text decoder's
                                         q4_0 matrices (rows a multiple of
                                         16, columns of 64) are rearranged
                                         in place at load, 16 rows
                                         interleaved, for faster decoding;
                                         mg_model_tensor_* then report their
                                         data as NULL. Ignored (nothing is
                                         rearranged) with MG_LOAD_MMAP     */

typedef struct mg_model_params {
    uint32_t struct_size;  /* sizeof(mg_model_params)                        */
    uint32_t flags;        /* MG_LOAD_* bits; default 0                      */
    uint64_t max_memory;   /* refuse files whose tensors (decompressed) need
                              more bytes than this; 0 = no limit (default).
                              Set it when files may come from untrusted
                              sources: a zstd frame may claim to expand
                              32768-fold                                     */
} mg_model_params;

#define MG_MODEL_PARAMS_INIT { sizeof(mg_model_params), 0, 0 }
/* Fills *params with defaults and sets struct_size. */
MG_API void mg_model_params_init(mg_model_params *params);

/* Loads an .mgm model file. params may be NULL for defaults. On failure *out
 * is set to NULL and, when err is not NULL, a NUL-terminated message (at most
 * errlen bytes) says what was wrong. The file is read into aligned memory
 * (transparent huge pages where the kernel offers them: decoding reads every
 * weight per token, and 2 MiB pages spare the TLB); MG_LOAD_MMAP maps it
 * read-only instead. zstd-compressed tensors are decompressed into aligned
 * memory either way.
 * Errors: MG_E_INVALID_ARG, MG_E_IO, MG_E_MODEL_FORMAT, MG_E_CHECKSUM (with
 * MG_LOAD_VERIFY_CHECKSUMS), MG_E_LIMIT, MG_E_NOMEM, MG_E_UNSUPPORTED (a
 * newer format version). Thread-safe. */
MG_API mg_status mg_model_load(mg_model **out, const char *path,
                               const mg_model_params *params,
                               char *err, size_t errlen);

/* Releases the caller's reference. Contexts still open keep the model's
 * memory alive until they are freed ("zombie" state); any other call on a
 * freed model returns MG_E_MISUSE while it lingers. NULL is ignored. */
MG_API void mg_model_free(mg_model *model);

typedef struct mg_model_info {
    uint32_t struct_size;    /* set by the caller to sizeof(mg_model_info)   */
    uint32_t format_version; /* .mgm format version of the file              */
    uint64_t n_tensors;
    uint64_t n_params;       /* total number of weights                      */
    uint64_t n_bytes;        /* bytes of tensor data (decompressed)          */
    uint64_t n_metadata;     /* number of metadata keys                      */
    const char *name;        /* metadata general.name, or "" (model-owned)   */
    const char *architecture;/* metadata general.architecture, or ""         */
    uint32_t has_vision;     /* 1 if the model has an image encoder          */
    uint32_t has_text;       /* 1 if the model has a text decoder            */
    uint32_t n_vocab;        /* logits per position (0 without a decoder)    */
    uint32_t n_ctx_train;    /* the decoder's longest sequence (or 0)        */
} mg_model_info;

/* Fills *out (up to out->struct_size bytes). Strings point into the model and
 * live as long as it does. Errors: MG_E_MISUSE, MG_E_INVALID_ARG. */
MG_API mg_status mg_model_info_get(mg_model_info *out, const mg_model *model);

/* Metadata value types (also the .mgm on-disk type codes). */
#define MG_META_INT    1   /* int64                                        */
#define MG_META_FLOAT  2   /* double                                       */
#define MG_META_STRING 3   /* UTF-8, no embedded NUL                       */
#define MG_META_ARRAY  4   /* homogeneous array of INT, FLOAT or STRING    */

/* Number of metadata entries. Returns 0 for a bad handle. */
MG_API uint64_t mg_model_meta_count(const mg_model *model);
/* The key of entry i (0-based, in file order) and its type (MG_META_*);
 * array entries also report their element type and length. Any of the out
 * pointers may be NULL. *key points into the model.
 * Errors: MG_E_MISUSE, MG_E_NOT_FOUND (i out of range). */
MG_API mg_status mg_model_meta_entry(const char **key, int32_t *type,
                                     int32_t *elem_type, uint64_t *n_elems,
                                     const mg_model *model, uint64_t i);
/* Typed look-ups by key. Errors: MG_E_NOT_FOUND, MG_E_TYPE, MG_E_MISUSE,
 * MG_E_INVALID_ARG. get_float also accepts an INT value. Strings point into
 * the model (NUL-terminated) and live as long as it does. */
MG_API mg_status mg_model_meta_int(int64_t *out, const mg_model *model,
                                   const char *key);
MG_API mg_status mg_model_meta_float(double *out, const mg_model *model,
                                     const char *key);
MG_API mg_status mg_model_meta_string(const char **out, const mg_model *model,
                                      const char *key);
/* Element i of an array value. Errors as above, MG_E_NOT_FOUND for i past
 * the end. */
MG_API mg_status mg_model_meta_array_int(int64_t *out, const mg_model *model,
                                         const char *key, uint64_t i);
MG_API mg_status mg_model_meta_array_float(double *out, const mg_model *model,
                                           const char *key, uint64_t i);
MG_API mg_status mg_model_meta_array_string(const char **out,
                                            const mg_model *model,
                                            const char *key, uint64_t i);

/* Tensor element types (also the .mgm on-disk dtype codes). */
#define MG_DTYPE_F32  0
#define MG_DTYPE_F16  1
#define MG_DTYPE_BF16 2
#define MG_DTYPE_Q8_0 3   /* blocks of 32: fp16 scale + 32 int8          */
#define MG_DTYPE_Q4_0 4   /* blocks of 32: fp16 scale + 16 bytes nibbles */

/* Static name of a dtype ("f32", "q4_0", ...) or NULL if unknown. */
MG_API const char *mg_dtype_name(int32_t dtype);

#define MG_TENSOR_MAX_DIMS 4

typedef struct mg_tensor_info {
    uint32_t struct_size;  /* set by the caller                             */
    int32_t dtype;         /* MG_DTYPE_*                                    */
    uint32_t n_dims;
    uint32_t compressed;   /* 1 if stored zstd-compressed in the file       */
    uint64_t dims[MG_TENSOR_MAX_DIMS]; /* dims[0] varies fastest; unused = 1 */
    uint64_t n_elems;
    uint64_t n_bytes;      /* decompressed size                              */
    uint64_t file_offset;  /* absolute offset of the stored bytes           */
    uint64_t stored_bytes; /* bytes in the file                             */
    uint32_t crc32c;       /* CRC-32C of the decompressed bytes             */
    uint32_t reserved;
    const char *name;      /* points into the model                         */
    const void *data;      /* the decompressed bytes, read-only; NULL for a
                              matrix rearranged at load (see
                              MG_LOAD_FILE_LAYOUT)                          */
} mg_tensor_info;

MG_API uint64_t mg_model_tensor_count(const mg_model *model);
/* Tensor i in file order, or by name. Errors: MG_E_MISUSE, MG_E_NOT_FOUND,
 * MG_E_INVALID_ARG. */
MG_API mg_status mg_model_tensor_at(mg_tensor_info *out, const mg_model *model,
                                    uint64_t i);
MG_API mg_status mg_model_tensor_find(mg_tensor_info *out,
                                      const mg_model *model, const char *name);

/* --------------------------------------------------------------- tokenizer */

/* A tokenizer: the byte-pair encoder of a model's text side. The one inside a
 * model is borrowed with mg_model_tokenizer() and lives as long as the model;
 * one loaded from a Hugging Face tokenizer.json is the caller's. Immutable:
 * any number of threads may use one tokenizer at once. */
typedef struct mg_tokenizer mg_tokenizer;

/* The model's tokenizer (built when the model is loaded), or NULL when the
 * model has none or the handle is bad. Never free it. */
MG_API const mg_tokenizer *mg_model_tokenizer(const mg_model *model);

/* Loads a Hugging Face tokenizer.json (BPE models with byte fallback, as
 * Gemma 3 uses). Errors: MG_E_INVALID_ARG, MG_E_IO, MG_E_MODEL_FORMAT (bad
 * JSON or an unsupported tokenizer kind, named in err), MG_E_NOMEM. */
MG_API mg_status mg_tokenizer_load_json(mg_tokenizer **out, const char *path,
                                        char *err, size_t errlen);
MG_API void mg_tokenizer_free(mg_tokenizer *tok);

/* Number of token ids (vocabulary plus added tokens); 0 for a bad handle. */
MG_API uint32_t mg_tokenizer_vocab_size(const mg_tokenizer *tok);
/* The piece of token id (as stored: "\xe2\x96\x81" for a space, "<0x0A>" for
 * a byte token), NUL-terminated, owned by the tokenizer; NULL if out of
 * range. */
MG_API const char *mg_tokenizer_piece(const mg_tokenizer *tok, int32_t id);
/* The id of a special token by role, or -1: MG_TOKEN_BOS, ... */
#define MG_TOKEN_BOS 0
#define MG_TOKEN_EOS 1
#define MG_TOKEN_PAD 2
#define MG_TOKEN_UNK 3
#define MG_TOKEN_START_OF_TURN 4
#define MG_TOKEN_END_OF_TURN 5
#define MG_TOKEN_START_OF_IMAGE 6
#define MG_TOKEN_END_OF_IMAGE 7
#define MG_TOKEN_IMAGE 8
MG_API int32_t mg_tokenizer_special(const mg_tokenizer *tok, int32_t role);

#define MG_TOKENIZE_ADD_BOS       0x1u /* prepend the BOS token (a tokenizer
                                          without one: MG_E_INVALID_ARG)     */
#define MG_TOKENIZE_PARSE_SPECIAL 0x2u /* match the text of special tokens
                                          ("<start_of_turn>") as those tokens;
                                          without it they are encoded as
                                          plain text                         */

/* Encodes len bytes of UTF-8 text into token ids. Writes at most cap ids to
 * ids (which may be NULL when cap is 0) and sets *n_ids to the number the
 * whole text needs; returns MG_E_BUFFER_TOO_SMALL when cap is short (call
 * again with a larger buffer). Bytes that are not valid UTF-8 are encoded,
 * each on its own, as their byte-fallback tokens <0xNN>, so any byte string
 * round-trips through mg_detokenize (except that a literal U+2581, the
 * word-boundary marker, comes back as a space, as in Hugging Face
 * tokenizers). Errors: MG_E_MISUSE (NULL or bad tok), MG_E_INVALID_ARG,
 * MG_E_BUFFER_TOO_SMALL, MG_E_NOMEM. Thread-safe. */
MG_API mg_status mg_tokenize(int32_t *ids, size_t cap, size_t *n_ids,
                             const mg_tokenizer *tok, const char *text,
                             size_t len, uint32_t flags);

#define MG_DETOKENIZE_SKIP_SPECIAL 0x1u /* leave out the special tokens
                                           (control and unknown)           */

/* Decodes ids into UTF-8 text (byte tokens fused, the word-boundary marker
 * turned back into spaces). Writes at most cap bytes including a NUL to buf
 * and sets *n_bytes to the length the whole text needs (without the NUL);
 * MG_E_BUFFER_TOO_SMALL when cap <= that length. Ids out of range give
 * MG_E_INVALID_ARG. Thread-safe. */
MG_API mg_status mg_detokenize(char *buf, size_t cap, size_t *n_bytes,
                               const mg_tokenizer *tok, const int32_t *ids,
                               size_t n_ids, uint32_t flags);

/* ----------------------------------------------------------------- writer */

/* Writes .mgm files (see docs/FORMAT.md). Set metadata and declare every
 * tensor first, then write their data in any order; mg_writer_finish() fills
 * in the table and checksums. Memory use is one tensor (plus its compressed
 * copy) at a time. A writer is used by one thread at a time.
 * Errors of every mg_writer_* call: MG_E_MISUSE (bad handle; metadata or a
 * declaration after the first tensor data; a tensor written twice; finish
 * with data missing; any call after finish), MG_E_INVALID_ARG (bad argument,
 * duplicate key or tensor name, wrong size), MG_E_NOT_FOUND (writing an
 * undeclared tensor), MG_E_IO (after an I/O failure every later call fails
 * with it), MG_E_NOMEM. mg_writer_errmsg() says what happened.
 * With MG_WRITE_COMPRESS a tensor that does not shrink is stored raw. */
typedef struct mg_writer mg_writer;

#define MG_WRITE_COMPRESS 0x1u  /* store tensors zstd-compressed */

MG_API mg_status mg_writer_open(mg_writer **out, const char *path,
                                uint32_t flags, char *err, size_t errlen);
/* Metadata; keys are unique, 1..255 bytes of UTF-8. */
MG_API mg_status mg_writer_set_int(mg_writer *w, const char *key, int64_t v);
MG_API mg_status mg_writer_set_float(mg_writer *w, const char *key, double v);
MG_API mg_status mg_writer_set_string(mg_writer *w, const char *key,
                                      const char *v);
MG_API mg_status mg_writer_set_int_array(mg_writer *w, const char *key,
                                         const int64_t *v, uint64_t n);
MG_API mg_status mg_writer_set_float_array(mg_writer *w, const char *key,
                                           const double *v, uint64_t n);
MG_API mg_status mg_writer_set_string_array(mg_writer *w, const char *key,
                                            const char *const *v, uint64_t n);
/* Declares a tensor. dims[0] varies fastest and, for q8_0/q4_0, must be a
 * multiple of 32. flags: MG_WRITE_COMPRESS to compress this one tensor
 * (the writer's own flags apply too). */
MG_API mg_status mg_writer_add_tensor(mg_writer *w, const char *name,
                                      int32_t dtype, uint32_t n_dims,
                                      const uint64_t *dims, uint32_t flags);
/* Writes the data of a declared tensor, already in its dtype's layout;
 * `size` must equal its byte size. */
MG_API mg_status mg_writer_write_tensor(mg_writer *w, const char *name,
                                        const void *data, uint64_t size);
/* Converts n_elems f32 values to the tensor's dtype (rounding to nearest
 * even for f16/bf16, GGML-compatible blocks for q8_0/q4_0) and writes them. */
MG_API mg_status mg_writer_write_tensor_f32(mg_writer *w, const char *name,
                                            const float *data,
                                            uint64_t n_elems);
/* Completes the file. Fails with MG_E_MISUSE if a declared tensor has no
 * data. The writer must still be freed. */
MG_API mg_status mg_writer_finish(mg_writer *w);
/* Last error message of the writer (static "" if none). */
MG_API const char *mg_writer_errmsg(const mg_writer *w);
/* Frees the writer; an unfinished file is removed. NULL is ignored. */
MG_API void mg_writer_free(mg_writer *w);

/* ------------------------------------------------------------- conversion */

/* Converts a checkpoint into an .mgm file (docs/CONVERT.md): a Hugging Face
 * folder (config.json, model.safetensors or sharded model-*.safetensors with
 * model.safetensors.index.json, tokenizer.json, tokenizer_config.json,
 * generation_config.json, preprocessor_config.json) or a GGUF file (with its
 * vision part as a separate "mmproj" GGUF). Tensors are streamed one at a
 * time (memory: about one tensor in the output type plus a block of rows). */

/* Called after each tensor is written: its name in the .mgm, the dtype it
 * was stored in, its index (0-based) of count, and the quantization error
 * against the source values (root mean square of the difference, and that
 * divided by the RMS of the values; 0 for lossless). Return non-zero to stop
 * (mg_convert then returns MG_E_INTERRUPTED and removes the output). */
typedef int32_t (*mg_convert_progress)(void *user_data, const char *name,
                                       int32_t dtype, uint64_t index,
                                       uint64_t count, double rms_error,
                                       double rel_error);

#define MG_CONVERT_COMPRESS     0x1u /* store tensors zstd-compressed        */
#define MG_CONVERT_NO_CHECKSUMS 0x2u /* skip the SHA-256 of the source files */

#define MG_CONVERT_DTYPE_SOURCE (-1) /* keep each matrix's source type (an
                                        f16 matrix whose values are all exact
                                        in bf16 is stored as bf16)          */

typedef struct mg_convert_params {
    uint32_t struct_size;     /* sizeof(mg_convert_params)                  */
    int32_t dtype;            /* MG_DTYPE_* for matrices (the policy in
                                 docs/CONVERT.md keeps some in f32/f16), or
                                 MG_CONVERT_DTYPE_SOURCE (default)          */
    uint32_t flags;           /* MG_CONVERT_* bits; default 0               */
    uint32_t reserved;        /* 0                                          */
    const char *mmproj;       /* GGUF source: the vision GGUF, or NULL      */
    const char *tokenizer;    /* a tokenizer.json to use instead of the
                                 source's own, or NULL                      */
    mg_convert_progress progress; /* may be NULL                            */
    void *user_data;
    const char *prune_vocab;  /* a text file (corpus), or NULL: keep only
                                 the tokens it needs and their embedding
                                 rows (docs/CONVERT.md)                     */
    const char *const *meta;  /* n_meta "key=value" strings: string metadata
                                 under general.* or prompt.* to set; a key
                                 the converter writes is replaced           */
    uint32_t n_meta;          /* default 0                                  */
} mg_convert_params;

#define MG_CONVERT_PARAMS_INIT \
    { sizeof(mg_convert_params), MG_CONVERT_DTYPE_SOURCE, 0, 0, NULL, NULL, \
      NULL, NULL, NULL, NULL, 0 }
/* Fills *params with defaults and sets struct_size. */
MG_API void mg_convert_params_init(mg_convert_params *params);

/* Converts src (a folder or a .gguf file) into out_path. params may be NULL
 * for defaults. On failure the output is removed and err (if not NULL)
 * receives a NUL-terminated message of at most errlen bytes.
 * Errors: MG_E_INVALID_ARG (also a malformed or refused meta entry, or
 * prune_vocab with a source that has no tokenizer), MG_E_IO (missing or
 * unreadable file, missing shard, unreadable prune_vocab corpus),
 * MG_E_MODEL_FORMAT (malformed or inconsistent source),
 * MG_E_UNSUPPORTED (a model, option or tensor type the converter does not
 * handle, named in the message), MG_E_INTERRUPTED, MG_E_NOMEM. */
MG_API mg_status mg_convert(const char *src, const char *out_path,
                            const mg_convert_params *params, char *err,
                            size_t errlen);

/* ----------------------------------------------------------------- context */

typedef struct mg_context mg_context;
/* A decoding batch: contexts that decode together (see mg_batch_new). */
typedef struct mg_batch mg_batch;

/* mg_context_params.flags */
#define MG_CONTEXT_KV_BF16 0x1u /* keep the KV cache's keys and values as
                                   bf16 (rounded to nearest even): half its
                                   memory and half the bytes each generated
                                   token reads; arithmetic stays f32 (logit
                                   difference measured: docs/PERFORMANCE.md) */
#define MG_CONTEXT_NO_REUSE 0x2u /* read every prompt from the start and
                                   encode every image anew: no prefix reuse
                                   and no encoder-output cache (see "Reuse
                                   across calls" below)                   */

typedef struct mg_context_params {
    uint32_t struct_size; /* sizeof(mg_context_params)                       */
    uint32_t n_threads;   /* threads for the library's own kernels; 0 = one
                             per online CPU (default)                        */
    uint32_t n_ctx;       /* token capacity of the KV cache; 0 = the model's
                             context length capped at 8192 (default)          */
    uint32_t flags;       /* MG_CONTEXT_* bits; default 0 (f32 KV cache)     */
    uint64_t seed;        /* seed of the context's sampler RNG (default 0)   */
    mg_batch *batch;      /* NULL (default), or a batch on the same model:
                             the context's token-by-token decode steps run
                             together with those of the batch's other
                             contexts (see mg_batch_new)                     */
} mg_context_params;

#define MG_CONTEXT_PARAMS_INIT { sizeof(mg_context_params), 0, 0, 0, 0, NULL }
MG_API void mg_context_params_init(mg_context_params *params);

/* Creates a context over a model. The context holds a reference: the model's
 * memory lives until both the model and every context are freed. All buffers
 * are sized here so that generation allocates nothing, except the
 * encoder-output cache below, which grows as inputs are encoded (an
 * allocation failure there only means the output is not kept).
 *
 * Reuse across calls (unless flags has MG_CONTEXT_NO_REUSE). A context
 * keeps what its last call read:
 *  - Prefix reuse: a generating call (mg_generate*, mg_generate_report*,
 *    mg_vqa*, mg_prs_predict) reads only the part of its prompt that
 *    differs from the sequence the context holds: the leading tokens that
 *    agree, image blocks included (the same image, volume slice or score
 *    set at the same place), are kept in the KV cache and not evaluated
 *    again. A second question that extends a conversation therefore costs
 *    only its own tokens.
 *  - Encoder-output cache: the encoder's output for each image, volume
 *    slice or score set is kept, keyed by the input's identity (the same
 *    image or volume handle, the same slice choice and block; for scores,
 *    the same values and names); a later prompt holding that input at
 *    another place (e.g. after a different question: MedGemma's layout puts
 *    the text before the images) reads it from the cache instead of running
 *    the encoder. The cache holds at most n_ctx tokens' worth of outputs
 *    (n_ctx x hidden floats), least recently used dropped first.
 * Cached encoder outputs are the very numbers a fresh encoding gives. The
 * part of a prompt read again is read in other batches than a fresh read
 * would use, so logits may differ in their last bits (seen: ~1e-7
 * relative; tests compare the generated text, exactly, and the logits, to
 * 1e-5, with and without reuse); MG_CONTEXT_NO_REUSE makes every call's
 * numbers independent of what the context did before. Identity is by
 * handle: an image loaded twice from one file is two inputs.
 * mg_context_reset empties the sequence and keeps the cache.
 * With params->batch, the context holds a reference to the batch, and its
 * KV cache and scratch are sized for the larger of its own and the batch's
 * thread count.
 * Errors: MG_E_MISUSE (also a freed batch), MG_E_INVALID_ARG (also a batch
 * on another model), MG_E_LIMIT (a KV cache too large to address),
 * MG_E_NOMEM; mg_last_error() says why. */
MG_API mg_status mg_context_new(mg_context **out, mg_model *model,
                                const mg_context_params *params);
/* Frees a context. Must not run concurrently with another call on the same
 * context. NULL is ignored. */
MG_API void mg_context_free(mg_context *ctx);

/* Asks the call running on ctx (if any) to stop; it returns
 * MG_E_INTERRUPTED within one token. Async-signal-safe, callable from any
 * thread. A request made while no call runs is dropped when the next call
 * starts. Errors: MG_E_MISUSE. */
MG_API mg_status mg_context_interrupt(mg_context *ctx);

/* The message of the last failed call on ctx ("" after success). Points into
 * the context; valid until the next call on it. Thread: the context's. */
MG_API const char *mg_context_errmsg(const mg_context *ctx);
/* The status of the last call on ctx. */
MG_API mg_status mg_context_errcode(const mg_context *ctx);

/* ----------------------------------------------------------- batched decoding
 *
 * Serving several requests at once on one model (e.g. one thread per
 * request, each with its own context): decoding one token reads every
 * weight of the model, so a step that decodes a token for each of several
 * contexts reads them once for all. Contexts made with
 * mg_context_params.batch = b join b: whenever such a context decodes a
 * single token while generating (the steps after the prompt), it hands the
 * token to b, and one thread (the first of a step) runs the step for every
 * context of b that is waiting, on b's own thread pool, while the others
 * wait for their rows. Everything else (prompt reading, image encoding,
 * sampling, streaming, speculative verification) stays on each context's
 * own threads.
 *
 * A step waits for the batch's contexts that are generating, up to wait_us
 * after its first row arrived; those that are busy elsewhere (reading a
 * prompt) do not hold it. Each row is computed exactly as the context
 * would compute that token alone (the decode kernels, single-token
 * attention against its own KV cache), so a context's output does not
 * depend on which contexts it shares steps with: text, tokens and logits
 * are bit for bit those of the same call on an unbatched context with
 * n_threads equal to the batch's (the key ranges of a long attention are
 * split by thread count; give contexts and batch the same count). A context
 * that is the only one generating decodes on its own threads, as without a
 * batch. mg_context_interrupt is seen between steps.
 * Thread safety: a batch is shared by its contexts' threads; its contexts
 * follow the usual rule (one call at a time on each). */
typedef struct mg_batch_params {
    uint32_t struct_size; /* sizeof(mg_batch_params)                         */
    uint32_t n_threads;   /* threads of the batch's pool, which runs the
                             joint steps; 0 = one per online CPU             */
    uint32_t max_rows;    /* most contexts in one step, 1..8; 0 = 8          */
    uint32_t wait_us;     /* how long a step's first row waits for the other
                             generating contexts, in microseconds, at most
                             1000000; 0 = 2000                               */
} mg_batch_params;

#define MG_BATCH_PARAMS_INIT { sizeof(mg_batch_params), 0, 0, 0 }
MG_API void mg_batch_params_init(mg_batch_params *params);

/* Creates a batch for contexts on model (it holds a reference to the
 * model). params may be NULL for defaults.
 * Errors: MG_E_MISUSE (freed model), MG_E_INVALID_ARG (bad params),
 * MG_E_UNSUPPORTED (no text decoder, or one whose FFN is narrower than its
 * attention output, which the exact row kernels need), MG_E_NOMEM;
 * mg_last_error() says why. */
MG_API mg_status mg_batch_new(mg_batch **out, mg_model *model,
                              const mg_batch_params *params);
/* Drops the caller's reference; the batch lives on while contexts made
 * with it exist. NULL is ignored. */
MG_API void mg_batch_free(mg_batch *batch);

/* What a batch has done since it was made. */
typedef struct mg_batch_stats {
    uint64_t steps;          /* decode steps run                             */
    uint64_t rows;           /* tokens decoded by them (rows / steps = the
                                mean batch size)                             */
    uint64_t by_rows[8];     /* steps of 1, 2, ..., 8 rows                   */
    double busy_seconds;     /* wall time spent in steps                     */
} mg_batch_stats;
/* Errors: MG_E_MISUSE (not a live batch), MG_E_INVALID_ARG (NULL out). */
MG_API mg_status mg_batch_get_stats(const mg_batch *batch, mg_batch_stats *out);

/* ------------------------------------------------------------------- image */

typedef struct mg_image mg_image;

/* Pixel layouts of caller buffers and of decoded images. */
#define MG_PIXEL_GRAY8  1
#define MG_PIXEL_GRAY16 2   /* native-endian uint16                         */
#define MG_PIXEL_RGB8   3
#define MG_PIXEL_RGB16  4   /* native-endian uint16 per channel             */

/* How DICOM grey values become display pixels (mg_image_params.window):
 *  FILE      the file's first VOI window (Window Center/Width, also from
 *            enhanced multi-frame functional groups); AUTO when it has none
 *  AUTO      a window spanning the frame's minimum..maximum modality value
 *  EXPLICIT  window_center / window_width from the params
 *  NONE      no windowing: the modality values (stored values after Rescale
 *            Slope/Intercept, rounded) as GRAY16, shifted by
 *            mg_image_info.raw_offset (value = pixel + raw_offset); GRAY8
 *            when every possible value fits 0..255. Colour images stay RGB
 *            at their own depth (RGB8, or RGB16 when Bits Allocated is 16;
 *            32-bit colour is refused in this mode).
 * The first three produce GRAY8 (PS3.3 C.11.2.1.2 linear function, then
 * MONOCHROME1 inverted, truncated to an integer as dcmtk does) or RGB8 for
 * colour (YBR converted to RGB; samples above 8 bits shifted down). All of
 * this is ignored for JPEG and PNG. */
#define MG_WINDOW_FILE     0
#define MG_WINDOW_AUTO     1
#define MG_WINDOW_EXPLICIT 2
#define MG_WINDOW_NONE     3

typedef struct mg_image_params {
    uint32_t struct_size;
    uint32_t flags;        /* reserved, 0                                   */
    uint64_t max_pixels;   /* width*height limit; default 2^27 (134 M)      */
    uint64_t max_memory;   /* decoded bytes limit; default 1 GiB            */
    uint32_t max_width;    /* default 65535                                 */
    uint32_t max_height;   /* default 65535                                 */
    /* --- appended for DICOM input --- */
    uint32_t frame;        /* multi-frame DICOM: 0-based frame; default 0   */
    int32_t window;        /* MG_WINDOW_*; default MG_WINDOW_FILE           */
    double window_center;  /* for MG_WINDOW_EXPLICIT, in modality units     */
    double window_width;   /* for MG_WINDOW_EXPLICIT; must be >= 1          */
} mg_image_params;

#define MG_IMAGE_PARAMS_INIT \
    { sizeof(mg_image_params), 0, (uint64_t)1 << 27, (uint64_t)1 << 30, \
      65535, 65535, 0, MG_WINDOW_FILE, 0.0, 0.0 }
MG_API void mg_image_params_init(mg_image_params *params);

/* Image source formats reported by mg_image_info. */
#define MG_IMAGE_SRC_PIXELS 0
#define MG_IMAGE_SRC_JPEG   1
#define MG_IMAGE_SRC_PNG    2
#define MG_IMAGE_SRC_DICOM  3

/* Decodes a JPEG, PNG or DICOM Part 10 file (recognised by content, not by
 * name; see docs/DICOM.md for the DICOM transfer syntaxes and rules). Limits
 * are checked from the header, before any pixel memory is allocated.
 * On failure *out is NULL and err (if not NULL) receives a message.
 * Errors: MG_E_INVALID_ARG, MG_E_IO, MG_E_IMAGE_FORMAT (corrupt, truncated,
 * unknown format, a DICOM object without pixels), MG_E_UNSUPPORTED (e.g.
 * CMYK JPEG, a DICOM transfer syntax without a decoder: the message names
 * it), MG_E_LIMIT, MG_E_NOMEM; MG_E_INVALID_ARG also for a frame index past
 * the last frame or a bad explicit window.
 * Thread-safe. */
MG_API mg_status mg_image_load_file(mg_image **out, const char *path,
                                    const mg_image_params *params,
                                    char *err, size_t errlen);
/* The same from a memory buffer (borrowed for the call). */
MG_API mg_status mg_image_load_memory(mg_image **out, const void *data,
                                      size_t size,
                                      const mg_image_params *params,
                                      char *err, size_t errlen);
/* Copies a caller's pixel buffer: `format` is MG_PIXEL_*, `stride` the bytes
 * between row starts (0 = tightly packed; otherwise at least one row).
 * Errors: MG_E_INVALID_ARG, MG_E_LIMIT, MG_E_NOMEM. */
MG_API mg_status mg_image_from_pixels(mg_image **out, const void *pixels,
                                      uint32_t width, uint32_t height,
                                      size_t stride, int32_t format,
                                      const mg_image_params *params,
                                      char *err, size_t errlen);
MG_API void mg_image_free(mg_image *image);

typedef struct mg_image_info {
    uint32_t struct_size;
    uint32_t width;
    uint32_t height;
    int32_t format;        /* MG_PIXEL_* of the stored pixels              */
    int32_t source;        /* MG_IMAGE_SRC_*                               */
    uint32_t bits_stored;  /* significant bits per sample in the source
                              (8, 12, 16 ...; DICOM: Bits Stored)          */
    /* --- appended for DICOM input; other sources report 1 frame, slope 1,
       intercept 0, window MG_WINDOW_NONE with center/width 0 --- */
    uint32_t n_frames;     /* frames in the source                         */
    uint32_t frame;        /* the frame decoded (0-based)                  */
    uint32_t bits_allocated; /* DICOM Bits Allocated; 8/16 otherwise       */
    int32_t pixel_signed;  /* 1 when the source samples are signed         */
    int32_t window;        /* MG_WINDOW_* that produced the pixels (FILE
                              only when the file's window was used)        */
    int32_t raw_offset;    /* MG_WINDOW_NONE grey: value = pixel + this    */
    double rescale_slope;  /* modality value = stored * slope + intercept  */
    double rescale_intercept;
    double window_center;  /* the window applied; 0 and 0 when none        */
    double window_width;
} mg_image_info;

MG_API mg_status mg_image_info_get(mg_image_info *out, const mg_image *image);
/* Copies the pixels, tightly packed in the image's own format, into buf.
 * Returns MG_E_BUFFER_TOO_SMALL when size is short; *needed (if not NULL)
 * always receives the byte count required. */
MG_API mg_status mg_image_copy_pixels(void *buf, size_t size, size_t *needed,
                                      const mg_image *image);
/* Text attributes of the source, NUL-terminated, owned by the image (valid
 * until mg_image_free); NULL for an unknown key, a bad handle, or a value
 * the source does not have. Keys: "photometric" (DICOM Photometric
 * Interpretation, or "MONOCHROME2"/"RGB" for JPEG and PNG),
 * "transfer_syntax" (name), "transfer_syntax_uid", "modality",
 * "sop_class_uid", "series_uid" (DICOM only). */
MG_API const char *mg_image_get_string(const mg_image *image, const char *key);

/* ------------------------------------------------------- DICOM SR output */

/* Options of mg_sr_write. Text fields: UTF-8, at most 64 characters, no
 * control characters or backslashes; NULL takes the default. */
typedef struct mg_sr_params {
    uint32_t struct_size;        /* sizeof(mg_sr_params)                    */
    uint32_t flags;              /* reserved, 0                             */
    const char *model_name;      /* the model that wrote the report (e.g.
                                    its file name): Manufacturer's Model
                                    Name and Device Observer Model Name;
                                    default "unknown model"                 */
    const char *manufacturer;    /* default "libmedgemini"                  */
    const char *series_description; /* default "AI report, not a diagnosis" */
    uint32_t series_number;      /* 0 = 9001                                */
    uint32_t reserved;           /* 0                                       */
} mg_sr_params;

#define MG_SR_PARAMS_INIT { sizeof(mg_sr_params), 0, NULL, NULL, NULL, 0, 0 }
MG_API void mg_sr_params_init(mg_sr_params *params);

/* Writes report (UTF-8, e.g. what mg_generate_report returned) to out_path
 * as a DICOM Basic Text SR instance (Explicit VR Little Endian, Specific
 * Character Set ISO_IR 192) in the study of the source DICOM files the
 * report was made from (all of one study and one patient):
 *  - patient and study attributes copied from the first source (converted
 *    to UTF-8 from no, ISO_IR 6, ISO_IR 100 or ISO_IR 192 character sets);
 *    a new series (Modality SR, Series Number params->series_number) and a
 *    new instance, with fresh UIDs under the 2.25 root;
 *  - every source instance listed in the Current Requested Procedure
 *    Evidence Sequence, by series;
 *  - the software identified: Manufacturer, Manufacturer's Model Name (the
 *    model), Software Versions ("libmedgemini X.Y.Z"), a Contributing
 *    Equipment item (Processing Equipment) and a device observer context
 *    in the content (Observer Type Device, a Device Observer UID that is
 *    the same for the same model name, name, manufacturer, model name);
 *  - Completion Flag COMPLETE, Verification Flag UNVERIFIED, and the
 *    statement "Generated by software (libmedgemini); not a diagnosis..."
 *    as the Completion Flag Description, the contribution's description
 *    and a Comment in the content;
 *  - the content tree: Diagnostic Imaging Report (18748-4, LN) holding the
 *    Findings (DCM 121070/121071) and, when the report has a line starting
 *    with "Impression:", the Impressions (121072/121073) after it.
 * The file is written in place (removed again if writing fails).
 * Errors: MG_E_INVALID_ARG (NULL arguments, no sources, report not UTF-8,
 * bad params, sources of different studies or patients), MG_E_IO,
 * MG_E_IMAGE_FORMAT (a source that is not DICOM or lacks its SOP Class,
 * SOP Instance, Series or Study Instance UID, or a copied value that is
 * malformed), MG_E_UNSUPPORTED (a source character set not listed above),
 * MG_E_NOMEM; err (if not NULL) receives a message of at most errlen
 * bytes. Thread: any; nothing shared. */
MG_API mg_status mg_sr_write(const char *out_path, const char *report,
                             const char *const *sources, size_t n_sources,
                             const mg_sr_params *params, char *err, size_t errlen);

/* ---------------------------------------------------------------- studies */

/* DICOM files grouped into studies and series, as PACS exports and media
 * are organised: folders (read recursively; hidden entries and links to
 * folders skipped) and DICOMDIR files (the files their records reference,
 * which must lie under the DICOMDIR's folder). Each file is read once;
 * files that are not DICOM, cannot be parsed, lack a Study or Series
 * Instance UID, or repeat an instance already seen are listed in the
 * warnings and otherwise skipped. */
typedef struct mg_studies mg_studies;

typedef struct mg_studies_params {
    uint32_t struct_size; /* sizeof(mg_studies_params)                       */
    uint32_t flags;       /* reserved, 0                                     */
    uint32_t max_files;   /* most files looked at (also entries per folder);
                             0 = 100000, at most 4194304                     */
    uint32_t reserved;    /* 0                                               */
} mg_studies_params;

#define MG_STUDIES_PARAMS_INIT { sizeof(mg_studies_params), 0, 0, 0 }
MG_API void mg_studies_params_init(mg_studies_params *params);

/* Scans paths (folders, DICOMDIR or other DICOM files). Studies are sorted
 * by Patient ID, Study Date and Time, Study Instance UID; series by Series
 * Number and UID; files by Instance Number and path.
 * Errors: MG_E_INVALID_ARG, MG_E_IO (a path that cannot be opened),
 * MG_E_LIMIT (more than max_files), MG_E_IMAGE_FORMAT (no study found),
 * MG_E_NOMEM; err receives a message. */
MG_API mg_status mg_studies_scan(mg_studies **out, const char *const *paths, size_t n_paths,
                                 const mg_studies_params *params, char *err, size_t errlen);
MG_API void mg_studies_free(mg_studies *studies);                    /* NULL ok */
/* Number of studies (0 for a bad handle). */
MG_API size_t mg_studies_count(const mg_studies *studies);
/* Number of series of a study (0 when out of range). */
MG_API size_t mg_studies_series_count(const mg_studies *studies, size_t study);
/* Text attributes, owned by the set (valid until mg_studies_free); NULL for
 * an unknown key, an index out of range or a value the files do not have.
 * series < 0: the study's keys
 *   "study_uid", "patient_id", "patient_name", "date", "time", "accession",
 *   "description" (from its first file, characters above 0x7E as stored);
 *   "kind": "volume" (a CT, MR or PT series of two or more files or
 *   frames: read it with mg_volume_load_dicom), "radiograph" (a CR or DX
 *   series), else "other";
 *   "frontal", "lateral": the path of the study's first frontal (View
 *   Position PA or AP) and lateral (LL, RL, LAT, LATERAL) radiograph, the
 *   view read from View Position, else from the series or protocol
 *   description as whole words; a radiograph study with no view
 *   information has its first image as "frontal";
 *   "prior": the index (decimal) of the latest study of the same Patient ID
 *   on an earlier Study Date.
 * series >= 0: that series' "series_uid", "modality", "description",
 *   "number", "body_part", "view" ("frontal" or "lateral" from its first
 *   file), "files" (its paths, one a line, in instance order).
 * study = SIZE_MAX, series = -1, "warnings": one line per skipped file
 * (the first 100, then a count), "" when none. */
MG_API const char *mg_studies_get(const mg_studies *studies, size_t study, int64_t series,
                                  const char *key);

/* ------------------------------------------------------------------ volume */

/* A 3D volume: nx * ny * nz voxels as float32 in modality units (DICOM:
 * stored values after each slice's or frame's Rescale Slope/Intercept, i.e.
 * Hounsfield units for CT; NIfTI: values after scl_slope/scl_inter), x
 * varying fastest, then y, then z. From DICOM, x runs along the columns of a
 * slice (the Image Orientation row direction), y along its rows, and z is
 * the slice index ordered by increasing position along the slice normal
 * (row direction x column direction). An affine maps voxel indices to
 * patient coordinates in millimetres, in DICOM's LPS+ convention (x towards
 * the patient's left, y posterior, z head): NIfTI's RAS+ world coordinates
 * are converted on reading and writing (x and y negated).
 * See docs/VOLUME.md for the rules, checks and their messages.
 * Volumes are read-only after creation and may be shared by threads. */
typedef struct mg_volume mg_volume;

/* mg_volume_params.flags */
#define MG_VOLUME_RECURSIVE       0x01u /* DICOM: look into the folders given
                                           and their subfolders (default:
                                           only the files directly in them) */
#define MG_VOLUME_KEEP_DUPLICATES 0x02u /* DICOM: slices sharing a position:
                                           keep the first (lowest Instance
                                           Number, then file order) with a
                                           warning instead of failing      */
#define MG_VOLUME_STRICT_SPACING  0x04u /* DICOM: uneven slice spacing (a
                                           gap) is an error instead of a
                                           warning                          */
#define MG_VOLUME_STRICT_SERIES   0x08u /* DICOM: files of more than one
                                           series are an error unless
                                           series_uid picks one (default:
                                           the largest, with a warning)     */

typedef struct mg_volume_params {
    uint32_t struct_size;  /* sizeof(mg_volume_params)                      */
    uint32_t flags;        /* MG_VOLUME_* bits; default 0                   */
    uint64_t max_voxels;   /* nx*ny*nz limit; default 2^29 (536 M)          */
    uint64_t max_memory;   /* bytes: the voxels (4 each) plus one slice's
                              working buffer, and each file read; default
                              4 GiB                                         */
    const char *series_uid;/* DICOM: the Series Instance UID to assemble;
                              NULL = the series with the most slices        */
    uint32_t max_files;    /* DICOM: files looked at, folders included;
                              default 100000                                */
    uint32_t reserved;     /* 0                                             */
} mg_volume_params;

#define MG_VOLUME_PARAMS_INIT \
    { sizeof(mg_volume_params), 0, (uint64_t)1 << 29, (uint64_t)1 << 32, \
      NULL, 100000, 0 }
/* Fills *params with defaults and sets struct_size. */
MG_API void mg_volume_params_init(mg_volume_params *params);

/* Volume sources reported by mg_volume_info. */
#define MG_VOLUME_SRC_VOXELS 0
#define MG_VOLUME_SRC_DICOM  1
#define MG_VOLUME_SRC_NIFTI  2

/* Assembles a volume from a DICOM series. paths holds n_paths files and/or
 * folders (a folder stands for the regular files in it, not hidden ones,
 * and with MG_VOLUME_RECURSIVE those of its subfolders). Files found in
 * folders that are not DICOM, cannot be read, hold no image or a
 * segmentation, are skipped (counted in mg_volume_info.n_skipped and named
 * in the "warnings" string); a file named in paths must be a DICOM image.
 * Slices (single-frame files, or the frames of enhanced multi-frame CT/MR
 * files, positioned by their functional groups) are grouped by Series
 * Instance UID; params->series_uid picks a series, else the one with the
 * most slices is taken. Slices are ordered by Image Position (Patient)
 * projected on the normal of Image Orientation (Patient); only when no
 * slice has a position and orientation, by Instance Number (with a
 * warning). Every slice must have the same size, orientation and pixel
 * spacing; slices sharing a position are refused (see
 * MG_VOLUME_KEEP_DUPLICATES); uneven spacing (steps more than 1% away from
 * the median: missing slices) and gantry tilt are reported as warnings.
 * Compressed transfer syntaxes are decoded as by mg_image_load_file.
 * Limits are checked before the voxels are allocated. On failure *out is
 * NULL and err (if not NULL) receives a message of at most errlen bytes.
 * Errors: MG_E_INVALID_ARG, MG_E_IO, MG_E_IMAGE_FORMAT (corrupt files;
 * slices that do not make one volume: mismatched size, orientation or
 * spacing, duplicates, malformed geometry), MG_E_UNSUPPORTED (colour
 * images, a transfer syntax without a decoder), MG_E_NOT_FOUND (no DICOM
 * image, or no slice of params->series_uid), MG_E_LIMIT, MG_E_NOMEM.
 * Thread-safe. */
MG_API mg_status mg_volume_load_dicom(mg_volume **out,
                                      const char *const *paths,
                                      size_t n_paths,
                                      const mg_volume_params *params,
                                      char *err, size_t errlen);

/* Reads a NIfTI-1 or NIfTI-2 single file (.nii, or gzip-compressed .nii.gz,
 * recognised by content; either byte order). Data types: uint8, int8,
 * int16, uint16, int32, uint32, int64, uint64, float32, float64; values
 * are scaled by scl_slope/scl_inter when scl_slope is non-zero and finite.
 * The affine comes from the sform when sform_code > 0, else from the qform
 * when qform_code > 0, else from pixdim alone (NIfTI method 1), and is
 * converted from RAS+ to LPS+. A 4D (or higher) file gives its first volume
 * with a warning. The header's sizes and offset are checked against the
 * limits and, for uncompressed files, the file size before anything is
 * allocated; compressed data is streamed and a short stream is an error.
 * Errors: MG_E_INVALID_ARG, MG_E_IO, MG_E_IMAGE_FORMAT (not NIfTI,
 * inconsistent header, truncated data), MG_E_UNSUPPORTED (Analyze or
 * two-file NIfTI, complex or RGB data), MG_E_LIMIT, MG_E_NOMEM.
 * Thread-safe. */
MG_API mg_status mg_volume_load_nifti(mg_volume **out, const char *path,
                                      const mg_volume_params *params,
                                      char *err, size_t errlen);

/* Copies the caller's nx*ny*nz voxels (x fastest). affine: 16 doubles,
 * row-major, voxel -> LPS+ millimetres (bottom row 0 0 0 1; the 3x3 part
 * invertible); NULL = identity (1 mm voxels at the origin). modality may be
 * NULL. Non-finite values are kept (and left out of the value range).
 * Errors: MG_E_INVALID_ARG, MG_E_LIMIT, MG_E_NOMEM. */
MG_API mg_status mg_volume_from_voxels(mg_volume **out, const float *voxels,
                                       uint32_t nx, uint32_t ny, uint32_t nz,
                                       const double *affine,
                                       const char *modality,
                                       const mg_volume_params *params,
                                       char *err, size_t errlen);

MG_API void mg_volume_free(mg_volume *volume);

typedef struct mg_volume_info {
    uint32_t struct_size;
    uint32_t nx;           /* voxels along x (DICOM: columns)               */
    uint32_t ny;           /* along y (DICOM: rows)                         */
    uint32_t nz;           /* along z (DICOM: slices)                       */
    int32_t source;        /* MG_VOLUME_SRC_*                               */
    uint32_t n_files;      /* files that gave voxels (DICOM), 1 for NIfTI   */
    uint32_t n_skipped;    /* DICOM: files looked at and not used (not
                              DICOM, unreadable, not an image, another
                              series, duplicates dropped)                   */
    uint32_t n_warnings;   /* lines of mg_volume_get_string(v, "warnings")  */
    double spacing[3];     /* mm between voxel centres along x, y, z (the
                              lengths of the affine's first three columns) */
    double affine[16];     /* row-major 4x4: (i, j, k, 1) -> LPS+ mm        */
    double min_value;      /* finite voxel values' range (NaN when none)    */
    double max_value;
} mg_volume_info;

/* Fills *out (up to out->struct_size bytes).
 * Errors: MG_E_MISUSE (bad handle), MG_E_INVALID_ARG. */
MG_API mg_status mg_volume_info_get(mg_volume_info *out,
                                    const mg_volume *volume);
/* Copies the voxels (float32, x fastest) into buf. cap and *needed count
 * voxels, not bytes. Returns MG_E_BUFFER_TOO_SMALL when cap is short;
 * *needed (if not NULL) always receives nx*ny*nz. */
MG_API mg_status mg_volume_copy_voxels(float *buf, size_t cap, size_t *needed,
                                       const mg_volume *volume);
/* Text attributes, NUL-terminated, owned by the volume (valid until
 * mg_volume_free); NULL for an unknown key, a bad handle, or a value the
 * source does not have. Keys: "modality", "series_uid", "study_uid",
 * "frame_of_reference_uid" (DICOM), "description" (NIfTI descrip),
 * "warnings" (one line per warning: skipped files, other series, gaps,
 * gantry tilt, dropped duplicates, the Instance Number fallback, a 4D
 * NIfTI file), "slices" (DICOM: one line per slice in z order, "PATH\tFRAME"
 * with FRAME 0-based). */
MG_API const char *mg_volume_get_string(const mg_volume *volume,
                                        const char *key);

/* mg_volume_write_nifti flags */
#define MG_NIFTI_FLOAT32 0x1u  /* always store float32 (default: int16 when
                                  every voxel is an integer in its range)   */

/* Writes the volume as a single-file NIfTI-1 image, gzip-compressed when
 * path ends in ".gz": int16 when every voxel is an integer in
 * -32768..32767, else float32 (scl_slope 1, scl_inter 0); qform and sform
 * (codes 1, scanner) map voxels to RAS+ millimetres: the LPS+ affine with
 * x and y negated, as dcm2niix writes DICOM series; the qform holds the
 * rotation and voxel sizes nearest the affine (exact unless the affine
 * shears, as for gantry tilt, which only the sform keeps).
 * Errors: MG_E_MISUSE, MG_E_INVALID_ARG, MG_E_IO (the file is removed). */
MG_API mg_status mg_volume_write_nifti(const mg_volume *volume,
                                       const char *path, uint32_t flags,
                                       char *err, size_t errlen);

/* ------------------------------------------------------- volume slices */

/* How a volume becomes the images a model reads (docs/VOLUME.md, "Slices
 * for the model"): MedGemma 1.5's CT recipe. */
#define MG_SLICE_WINDOW_AUTO   0 /* modality "CT", or none and a minimum
                                     at most -500 (Hounsfield units):
                                     MG_SLICE_WINDOW_CT; else MINMAX      */
#define MG_SLICE_WINDOW_CT     1 /* R, G, B = the windows -1024..1024,
                                     -135..215 and 0..80 HU, each scaled to
                                     0..255                               */
#define MG_SLICE_WINDOW_MINMAX 2 /* grey: the volume's value range to
                                     0..255 (MedGemma's material for MR)  */

/* mg_slice_params.flags */
#define MG_SLICES_AS_STORED 0x1u /* slices across z in voxel order, rows
                                    along y, columns along x, as stored
                                    (default: the radiological display,
                                    whatever the source's voxel order)     */

#define MG_MAX_SLICES 1024u      /* the largest max_slices */

typedef struct mg_slice_params {
    uint32_t struct_size;  /* sizeof(mg_slice_params)                       */
    uint32_t max_slices;   /* slices given to the model: all when the volume
                              has no more, else evenly spaced ones (0 =
                              default 85, MedGemma 1.5's limit; at most
                              MG_MAX_SLICES)                                */
    int32_t window;        /* MG_SLICE_WINDOW_*; default AUTO               */
    uint32_t flags;        /* MG_SLICES_* bits; default 0                   */
} mg_slice_params;

#define MG_SLICE_PARAMS_INIT { sizeof(mg_slice_params), 85, MG_SLICE_WINDOW_AUTO, 0 }
/* Fills *params with defaults and sets struct_size. */
MG_API void mg_slice_params_init(mg_slice_params *params);

/* The slices a model reads for this volume, as new RGB8 images (free each
 * with mg_image_free), in the order the prompt holds them: the slices are
 * cut across the third voxel axis (z) and turned to the radiological view
 * (patient's right on the left; anterior, or the head, at the top; slices
 * from inferior to superior, right to left or anterior to posterior)
 * unless MG_SLICES_AS_STORED; when there are more than max_slices, slice
 * round(i / max_slices * (n - 1)) for i = 1..max_slices is taken (round
 * half to even, as MedGemma's CT notebook). *n_out (may be NULL) receives
 * the count; z_index (may be NULL, else cap entries) the volume's z index
 * of each slice. With out and z_index NULL only the count is returned;
 * otherwise cap below the count gives MG_E_BUFFER_TOO_SMALL.
 * Errors: MG_E_MISUSE (bad handle), MG_E_INVALID_ARG, MG_E_LIMIT,
 * MG_E_BUFFER_TOO_SMALL, MG_E_NOMEM. Thread-safe. */
MG_API mg_status mg_volume_slices(mg_image **out, size_t cap, size_t *n_out,
                                  uint32_t *z_index, const mg_volume *volume,
                                  const mg_slice_params *params, char *err,
                                  size_t errlen);

/* -------------------------------------------------------------- generation */

/* Streaming callback: called with each piece of decoded text as it is
 * produced (not NUL-terminated; `len` bytes of UTF-8), with the token id.
 * Return 0 to continue, non-zero to stop (the call then returns
 * MG_E_INTERRUPTED with the text produced so far). Runs on the calling
 * thread. */
typedef int32_t (*mg_token_callback)(void *user_data, const char *piece,
                                     size_t len, int32_t token);

/* Progress of a generating call (mg_progress_callback). */
#define MG_STAGE_ENCODE   1 /* an encoder reads one block of the prompt (an
                               image, a volume slice, a score set)         */
#define MG_STAGE_PREFILL  2 /* the text decoder reads the prompt           */
#define MG_STAGE_GENERATE 3 /* the answer's tokens are made               */

typedef struct mg_progress {
    uint32_t struct_size; /* sizeof(mg_progress) of the library            */
    int32_t stage;        /* MG_STAGE_*                                     */
    uint32_t block;       /* ENCODE: the block's index among the prompt's
                             blocks (0-based)                              */
    uint32_t n_blocks;    /* blocks in the prompt                           */
    uint32_t step;        /* ENCODE: encoder steps done (three per layer,
                             then the projector); PREFILL: decoder layers
                             done for the current batch of tokens (fields
                             another stage uses keep their last values)    */
    uint32_t n_steps;     /* steps of that encoder run or decoder batch     */
    uint32_t done;        /* PREFILL: prompt tokens read; GENERATE: tokens
                             generated                                     */
    uint32_t total;       /* PREFILL: prompt tokens to read; GENERATE:
                             max_tokens                                    */
    uint32_t reused;      /* prompt tokens kept from the context's sequence
                             (not read again)                              */
    uint32_t cached;      /* blocks whose encoder output came from the
                             context's cache (not encoded again)          */
    double seconds;       /* since the call began                           */
} mg_progress;

/* Progress callback: called when each stage and each block begins, then at
 * most every 100 ms while work goes on (checked after every encoder step,
 * decoder layer and token: on MedGemma 4B with 2 cores at least every
 * ~0.5 s). Return 0 to continue, non-zero to stop: the call returns
 * MG_E_INTERRUPTED as for mg_context_interrupt. Runs on the calling thread;
 * *progress is valid during the call only. */
typedef int32_t (*mg_progress_callback)(void *user_data, const mg_progress *progress);

typedef struct mg_gen_params {
    uint32_t struct_size;
    uint32_t max_tokens;         /* default 256                              */
    float temperature;           /* 0 = greedy; default 0                    */
    int32_t top_k;               /* 0 = off; default 0                       */
    float top_p;                 /* 1 = off; default 1                       */
    float repetition_penalty;    /* 1 = off; default 1                       */
    uint64_t seed;               /* 0 = keep the context's RNG state         */
    const char *const *stop;     /* stop strings (borrowed), may be NULL     */
    uint32_t n_stop;
    uint32_t flags;              /* reserved, 0                              */
    mg_token_callback on_token;  /* may be NULL                              */
    void *user_data;
    const char *system_prompt;   /* NULL = the model's default for reports
                                    and VQA ("" = none); mg_generate uses
                                    none                                    */
    const char *instruction;     /* NULL = the model's default report prompt */
    mg_progress_callback on_progress; /* may be NULL                        */
    void *progress_user_data;
    mg_context *draft;           /* speculative decoding with a draft model:
                                    a context (the caller's, not the one
                                    generating; used by this call alone) on
                                    a smaller model with the same tokenizer;
                                    NULL = none. See below                  */
    uint32_t n_draft;            /* most tokens per draft; 0 = 4; capped at
                                    16 and at the context's batch - 1      */
    uint32_t reserved;           /* 0 (keeps the struct free of padding)   */
} mg_gen_params;

/* mg_gen_params.flags */
#define MG_GEN_RAW_PROMPT 0x1u /* mg_generate: use the prompt text as it is
                                  (no BOS, no chat turn markers)            */
#define MG_GEN_DRAFT_NGRAM 0x2u /* speculative decoding by n-gram lookup:
                                  after each token, the tokens that followed
                                  the last earlier occurrence of the
                                  sequence's last 3 (else 2) tokens, up to
                                  4 (fewer after refused drafts), are fed
                                  with it in one decoder call computed
                                  exactly as single tokens (the same
                                  kernels, each weight block read once) and
                                  checked against what decoding would have
                                  chosen. Faster when the answer repeats the
                                  prompt or itself (docs/INTERACTIVE.md).
                                  Greedy: the text, the context's sequence
                                  and logits are bit for bit those without
                                  the flag. Sampling (temperature > 0): each
                                  drafted token is kept with the probability
                                  speculative sampling gives it (Leviathan
                                  et al. / Chen et al. 2023), else replaced
                                  by a draw from what the sampler's
                                  distribution has beyond the draft: the
                                  text has exactly the distribution of plain
                                  sampling, but the RNG is used differently,
                                  so a seed gives another text than without
                                  the flag (still the same one every time).
                                  Ignored when params.draft is set        */
/* params.draft: a draft model proposes the next tokens (up to n_draft, by
 * its own greedy choice or sampling with the same settings), checked as
 * above in one exact decoder call of the generating context; with the same
 * guarantees (greedy: bit for bit plain decoding; sampling: the same
 * distribution, another text per seed). The draft context reads the
 * prompt's text tokens (encoder blocks such as images left out: the draft
 * model needs no encoder; what its sequence already holds is kept when it
 * agrees) and follows the answer; afterwards its sequence holds the
 * prompt's text and the answer, possibly without the last tokens. Its
 * model must have a text decoder and the same tokenizer (vocabulary, token
 * strings and types, special tokens, merges), else MG_E_INVALID_ARG; so
 * for the generating context itself or a context busy in another call.
 * A failure of the draft context (e.g. its context length reached) ends
 * drafting for the call without failing it. */

#define MG_GEN_PARAMS_INIT \
    { sizeof(mg_gen_params), 256, 0.0f, 0, 1.0f, 1.0f, 0, NULL, 0, 0, NULL, \
      NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 }
MG_API void mg_gen_params_init(mg_gen_params *params);

/* ---------------------------------------------------------- text generation */

/* Generates text from a text prompt. The prompt is wrapped in the model's
 * chat turn (metadata prompt.turn_user, prompt.turn_end, prompt.turn_model;
 * the system prompt, when given, opens the user turn) after BOS, unless
 * params->flags has MG_GEN_RAW_PROMPT. Generation stops at the end-of-turn
 * or end-of-sequence token, at a stop string (left out of the text), after
 * max_tokens, on mg_context_interrupt (checked before every token and after
 * every decoder layer), or when the streaming or progress callback returns
 * non-zero. The context's sequence is replaced by the prompt (keeping what
 * agrees with it: see mg_context_new). *out receives the text (free with mg_string_free) also when the
 * call returns MG_E_INTERRUPTED or MG_E_CONTEXT_FULL during generation,
 * holding what was made until then; it stays NULL when the call stopped
 * while reading the prompt (a prompt that does not fit, an interrupt
 * before the first token), so a NULL text means no answer at all. The text is valid UTF-8: generated bytes that do not form a
 * valid sequence become U+FFFD. With temperature 0 the result is
 * deterministic; otherwise it
 * is deterministic for a given seed (params->seed, or the context's RNG).
 * Errors: MG_E_MISUSE, MG_E_INVALID_ARG, MG_E_UNSUPPORTED (no text decoder or
 * tokenizer), MG_E_INTERRUPTED, MG_E_CONTEXT_FULL, MG_E_NOMEM. */
MG_API mg_status mg_generate(char **out, mg_context *ctx, const char *prompt,
                             const mg_gen_params *params);

/* The same from token ids used as they are (no BOS or turn added). */
MG_API mg_status mg_generate_ids(char **out, mg_context *ctx,
                                 const int32_t *ids, size_t n_ids,
                                 const mg_gen_params *params);

/* Low level: appends n_ids tokens to the context's sequence and, when
 * logits is not NULL, writes the logits of every one of them (n_ids rows of
 * mg_model_info.n_vocab floats; cap counts floats, MG_E_BUFFER_TOO_SMALL if
 * short). Errors: as mg_generate. */
MG_API mg_status mg_context_eval(mg_context *ctx, const int32_t *ids,
                                 size_t n_ids, float *logits, size_t cap);
/* Empties the context's sequence (the KV cache). */
MG_API mg_status mg_context_reset(mg_context *ctx);
/* Copies the logits of the context's last decoder step (n_vocab floats, the
 * scores of the token that comes next; cap counts floats). After
 * mg_context_eval they follow its last token; after mg_generate,
 * mg_generate_ids, mg_generate_report and mg_vqa they are the scores the last
 * generated token (or the end-of-turn token that ended generation) was
 * chosen from, with a repetition penalty already applied when one was set.
 * With max_tokens = 0 those calls read the prompt and generate nothing, so
 * this returns the scores of the answer's first token: e.g. to compare the
 * "yes" and "no" tokens of a closed question.
 * Errors: MG_E_MISUSE, MG_E_INVALID_ARG (logits is NULL, or no decoder step
 * since the sequence was last emptied or a step failed), MG_E_BUFFER_TOO_SMALL
 * (cap < n_vocab), MG_E_UNSUPPORTED (no text decoder). */
MG_API mg_status mg_context_logits(mg_context *ctx, float *logits, size_t cap);
/* Copies the token ids of the context's sequence (the prompt as read, image
 * blocks as image tokens, then what was generated and fed back; the last
 * generated token is fed only when generation continued past it). cap
 * counts ids; *needed (may be NULL) receives the count; cap below it gives
 * MG_E_BUFFER_TOO_SMALL (ids may then be NULL with cap 0).
 * Errors: MG_E_MISUSE, MG_E_INVALID_ARG, MG_E_BUFFER_TOO_SMALL,
 * MG_E_UNSUPPORTED (no text decoder). */
MG_API mg_status mg_context_tokens(int32_t *ids, size_t cap, size_t *needed,
                                   mg_context *ctx);
/* Tokens in the context's sequence; 0 for a bad handle. */
MG_API uint32_t mg_context_n_tokens(const mg_context *ctx);

/* -------------------------------------------------------- polygenic scores */

/* Polygenic scores computed the way PLINK 2 `--score` computes them as the
 * PGS Catalog Calculator drives it (docs/PRS.md lists every rule). A handle
 * holds one genotype set (PLINK 1 binary .bed/.bim/.fam), any number of
 * scoring files matched to it, and, after mg_prs_compute(), the per-sample
 * results. Genotypes are streamed from the .bed in blocks of variants, so
 * memory is bounded by a block plus the sample and variant tables.
 *
 * Threads: a handle is used by one thread at a time (mg_prs_interrupt()
 * excepted); separate handles are independent. mg_prs_compute() uses
 * params.n_threads threads of its own.
 * Errors of every mg_prs_* call returning mg_status: MG_E_MISUSE (NULL,
 * freed or foreign handle; calls out of order), MG_E_INVALID_ARG,
 * MG_E_IO (open/read/write failed), MG_E_DATA_FORMAT (malformed genotype,
 * frequency or scoring file; the message names the file and line),
 * MG_E_NOMEM. After a failure mg_prs_errmsg() says what happened; a failed
 * mg_prs_add_scores() or mg_prs_read_freq() leaves the handle as it was. */
typedef struct mg_prs mg_prs;

#define MG_PRS_NO_MEAN_IMPUTATION 0x01u /* missing calls add nothing and are
                                           left out of DENOM              */
#define MG_PRS_DOMINANT           0x02u /* dosage d -> min(d, 1)           */
#define MG_PRS_RECESSIVE          0x04u /* dosage d -> max(d - 1, 0)       */
#define MG_PRS_KEEP_AMBIGUOUS     0x08u /* keep A/T and C/G matches        */
#define MG_PRS_KEEP_MULTIALLELIC  0x10u /* keep matches at target positions
                                           holding several variants        */
#define MG_PRS_DOUBLE_SUMS        0x20u /* sum weight x dosage in double, as
                                           plink2 does, even where the CPU
                                           has AMX or AVX512-VNNI (default
                                           there: exact integer sums of the
                                           weights rounded to 2^-46 of twice
                                           each score's largest |weight|;
                                           docs/PRS.md)                    */

typedef struct mg_prs_params {
    uint32_t struct_size;  /* sizeof(mg_prs_params)                         */
    uint32_t flags;        /* MG_PRS_* bits; default 0                      */
    double min_overlap;    /* a PGS Catalog score whose matched fraction of
                              variants is below this is dropped; default
                              0.75 (0 keeps every score)                    */
    uint32_t n_threads;    /* threads for mg_prs_compute; 0 = one per
                              online CPU (default)                         */
    uint32_t block_variants; /* variants decoded per block; 0 = 4096       */
    uint32_t vcf_dosage;   /* MG_PRS_DOSAGE_*: the VCF field dosages come
                              from; default MG_PRS_DOSAGE_DS               */
} mg_prs_params;

/* Dosage sources of mg_prs_open_vcf(), as plink2 --vcf FILE dosage=FIELD. */
#define MG_PRS_DOSAGE_DS   0  /* FORMAT/DS: ALT dosage (summed over ALTs)    */
#define MG_PRS_DOSAGE_GP   1  /* FORMAT/GP: genotype probabilities; dosage =
                                 sum of P(g) x ALT count of g / sum of P(g)  */
#define MG_PRS_DOSAGE_HDS  2  /* FORMAT/HDS: haplotype ALT dosages, summed   */
#define MG_PRS_DOSAGE_NONE 3  /* GT hard calls only                          */

#define MG_PRS_PARAMS_INIT { sizeof(mg_prs_params), 0, 0.75, 0, 0, MG_PRS_DOSAGE_DS }
/* Fills *params with defaults and sets struct_size. */
MG_API void mg_prs_params_init(mg_prs_params *params);

/* Opens the PLINK 1 binary set PREFIX.bed/.bim/.fam (SNP-major .bed). The
 * .bim and .fam are read and validated (field counts, numbers, sexes,
 * allele strings), the .bed's magic and exact size are checked; genotypes
 * are read later, by mg_prs_compute(). params may be NULL for defaults and
 * is copied. On failure *out is NULL and err (if not NULL) receives a
 * NUL-terminated message of at most errlen bytes.
 * Errors: MG_E_INVALID_ARG, MG_E_IO, MG_E_DATA_FORMAT, MG_E_NOMEM. */
MG_API mg_status mg_prs_open_plink(mg_prs **out, const char *prefix,
                                   const mg_prs_params *params,
                                   char *err, size_t errlen);

/* Opens a VCF or BCF file (plain or bgzip-compressed; htslib reads it), as
 * plink2 --vcf FILE dosage=DS does: a record with a FORMAT/DS value (ALT
 * dosage, summed over ALTs, quantised to 1/16384; must lie in [0, 2]) is
 * scored on it, otherwise on its GT hard calls; params.vcf_dosage picks GP
 * (normalized by the probabilities' sum, as plink2 dosage=GP), HDS or no
 * dosage field instead, and a sample whose field is "." has a missing
 * dosage; A1 = ALT and A2 = REF, a multiallelic record one variant whose
 * A1 lists every ALT (excluded from matching unless
 * MG_PRS_KEEP_MULTIALLELIC), a haploid call counted as homozygous, every
 * sample a founder of unknown sex (diploid on chrX, no chrY contribution)
 * and, as in plink2, FID "0" and IID the sample ID. Records are read one at a time and
 * their calls written, 2 bits per sample, to an unlinked temporary file in
 * $TMPDIR (or /tmp), dosages as 16-bit values to a second one, both read
 * by mg_prs_compute() in blocks. htslib may also report parse errors on
 * stderr. params, err and
 * errlen as for mg_prs_open_plink().
 * Errors: MG_E_INVALID_ARG, MG_E_IO, MG_E_DATA_FORMAT, MG_E_LIMIT,
 * MG_E_NOMEM. */
MG_API mg_status mg_prs_open_vcf(mg_prs **out, const char *path,
                                 const mg_prs_params *params,
                                 char *err, size_t errlen);

/* Reads allele frequencies used for mean imputation instead of the founder
 * frequencies of the target: a PLINK 2 .afreq (columns ID, REF, ALT,
 * ALT_FREQS) or PLINK 1 .frq (SNP, A1, A2, MAF) file, plain or gzip,
 * matched by variant ID and alleles. Variants it does not list keep the
 * founder frequency. Call before mg_prs_compute(). */
MG_API mg_status mg_prs_read_freq(mg_prs *prs, const char *path);

/* Adds the scores of one scoring file, plain or gzip, recognised by content:
 *  - a PGS Catalog scoring file ('#' metadata lines, then a table with
 *    effect_allele, effect_weight and chr_name/chr_position or the
 *    harmonized hm_chr/hm_pos): one score, named by #pgs_id (#pgs_name, else
 *    the file name), matched on chromosome, position and alleles with
 *    strand flips, ambiguous and multiallelic rules and min_overlap;
 *  - a PLINK 2-style wide file (header "ID <allele col> <score>..."): one
 *    score per weight column, matched by variant ID; rows whose ID is not in
 *    the target or whose allele is not one of the variant's are skipped.
 * *n_added (may be NULL) receives the number of scores the file added.
 * Call before mg_prs_compute(). */
MG_API mg_status mg_prs_add_scores(mg_prs *prs, uint32_t *n_added,
                                   const char *path);

/* Streams the genotypes once and computes every score for every sample.
 * With one score the sums come straight from the .bed bytes; with several,
 * blocks of decoded dosages are multiplied by the weight matrix through
 * OpenBLAS dgemm (double precision; its threads are the host's to set).
 * Fails with MG_E_MISUSE when no score was added, MG_E_INVALID_ARG when
 * every score was dropped by min_overlap, MG_E_UNSUPPORTED for dominant or
 * recessive scores on X, Y or MT variants (as plink2), MG_E_INTERRUPTED
 * (mg_prs_interrupt or the progress callback: no results then). May be
 * called again (e.g. after adding scores); results are replaced. */
MG_API mg_status mg_prs_compute(mg_prs *prs);

/* Progress of mg_prs_compute(): done of total variant rows scored; called
 * on the calling thread before the first block, then at most every 100 ms
 * between blocks, and once with done == total at the end (its return value
 * is then ignored: the results are complete). Return non-zero to stop:
 * mg_prs_compute() then returns MG_E_INTERRUPTED with no results. */
typedef int32_t (*mg_prs_progress)(void *user_data, uint64_t done, uint64_t total);
/* Sets (fn NULL: clears) the handle's progress callback. */
MG_API mg_status mg_prs_set_progress(mg_prs *prs, mg_prs_progress fn, void *user_data);
/* Asks a running mg_prs_compute() on prs to stop at its next block of
 * variants (it returns MG_E_INTERRUPTED, no results). Callable from any
 * thread, async-signal-safe; a request made while no compute runs is
 * dropped when the next one starts. Errors: MG_E_MISUSE. */
MG_API mg_status mg_prs_interrupt(mg_prs *prs);

/* Counts; 0 for a bad handle. Scores count every score added, kept or not. */
MG_API uint64_t mg_prs_sample_count(const mg_prs *prs);
MG_API uint64_t mg_prs_variant_count(const mg_prs *prs);
MG_API uint32_t mg_prs_score_count(const mg_prs *prs);

/* Family and individual ID of sample i (pointers into the handle, valid
 * until mg_prs_free). Either output may be NULL. */
MG_API mg_status mg_prs_sample_id(const char **fid, const char **iid,
                                  const mg_prs *prs, uint64_t i);
/* Name of score k (pointer into the handle), or NULL when out of range. */
MG_API const char *mg_prs_score_name(const mg_prs *prs, uint32_t k);

/* How one score's file matched the target. */
typedef struct mg_prs_match_report {
    uint32_t struct_size;
    uint32_t kept;             /* 1 when the score is computed           */
    uint64_t n_rows;           /* variant rows in the file               */
    uint64_t n_matched;        /* rows used                               */
    uint64_t n_flipped;        /* of those, matched on the other strand  */
    uint64_t n_ambiguous;      /* A/T, C/G matches dropped               */
    uint64_t n_multiallelic;   /* matches at multiallelic sites dropped  */
    uint64_t n_duplicate;      /* rows dropped as duplicate best matches */
    uint64_t n_unmatched;      /* rows with no usable target variant     */
    double overlap;            /* n_matched / n_rows (0 for no rows)     */
} mg_prs_match_report;

MG_API mg_status mg_prs_match_report_get(mg_prs_match_report *out,
                                         const mg_prs *prs, uint32_t k);

/* Result columns, as in a .sscore file. */
#define MG_PRS_COL_SUM                     1 /* per score                 */
#define MG_PRS_COL_AVG                     2 /* per score: SUM / DENOM    */
#define MG_PRS_COL_ALLELE_CT               3 /* shared by all scores      */
#define MG_PRS_COL_DENOM                   4 /* shared                    */
#define MG_PRS_COL_NAMED_ALLELE_DOSAGE_SUM 5 /* shared                    */

/* Copies one result column, one value per sample in .fam order, into buf
 * (n >= sample count, else MG_E_BUFFER_TOO_SMALL). `score` is ignored for the
 * shared columns. A dropped score gives NaN. Fails with MG_E_MISUSE before
 * mg_prs_compute() succeeded. */
MG_API mg_status mg_prs_results(double *buf, size_t n, const mg_prs *prs,
                                int32_t column, uint32_t score);

/* Writes the founder frequencies of every variant as a plink2 .afreq file
 * (#CHROM ID REF ALT ALT_FREQS OBS_CT; ALT is the .bim A1, REF A2;
 * frequencies printed with 17 significant digits, so mg_prs_read_freq reads
 * back the very values mg_prs_compute uses for mean imputation; OBS_CT the
 * founder allele observations). Computing scores of a subset of the samples
 * with these frequencies (mg_prs_read_freq) gives each sample exactly what
 * the whole set gives it: the Python binding's medgemini.batch shards scores
 * by samples this way. Hard calls only (PLINK sets, VCF GT);
 * MG_E_UNSUPPORTED for a VCF read with dosages. Reads the whole .bed.
 * Errors: MG_E_MISUSE, MG_E_INVALID_ARG, MG_E_IO, MG_E_UNSUPPORTED,
 * MG_E_NOMEM (message in mg_prs_errmsg). */
MG_API mg_status mg_prs_write_freq(mg_prs *prs, const char *path);

/* Writes the results as a PLINK 2 .sscore file (tab-separated, header
 * "#FID IID ALLELE_CT DENOM NAMED_ALLELE_DOSAGE_SUM <s>_AVG... <s>_SUM...",
 * kept scores only). Errors: MG_E_MISUSE before compute, MG_E_IO. */
MG_API mg_status mg_prs_write_sscore(mg_prs *prs, const char *path);

/* The message of the last failed call on prs ("" after success; a static
 * text for a bad handle). Valid until the next call on the handle. */
MG_API const char *mg_prs_errmsg(const mg_prs *prs);
/* Frees the handle and everything it owns. NULL is ignored. */
MG_API void mg_prs_free(mg_prs *prs);

/* ------------------------------------------------------------------- tasks */

/* Writes a radiology report for one study (n_images >= 1 images, at most 64,
 * e.g. frontal and lateral views, or a prior study). Each image is converted
 * to RGB, resized and normalized as the model's image processor does it,
 * encoded by the model's image encoder and placed in MedGemma's chat prompt
 * (docs/VISION.md): the system text is params->system_prompt (NULL: metadata
 * prompt.system_default; "": none), the instruction params->instruction
 * (NULL: metadata prompt.report_instruction). Generation then works as in
 * mg_generate (greedy or sampled, stop strings, streaming, progress,
 * interrupt, the sequence replaced by the prompt); *out receives the report text (free it
 * with mg_string_free), also on MG_E_INTERRUPTED and MG_E_CONTEXT_FULL.
 * params may be NULL for defaults.
 * Errors: MG_E_MISUSE, MG_E_INVALID_ARG (also: image marker tokens in the
 * caller's text), MG_E_LIMIT (too many images; an image larger than 65535
 * px a side), MG_E_UNSUPPORTED (no image encoder, text decoder, tokenizer or
 * image marker tokens in the model), MG_E_CONTEXT_FULL (the prompt with its
 * image tokens does not fit n_ctx: checked before any encoding),
 * MG_E_INTERRUPTED, MG_E_NOMEM. */
MG_API mg_status mg_generate_report(char **out, mg_context *ctx,
                                    const mg_image *const *images,
                                    size_t n_images,
                                    const mg_gen_params *params);

/* Answers a question about one or more images: as mg_generate_report with
 * the question in place of the instruction (params->instruction is
 * ignored). *out and errors as above. */
MG_API mg_status mg_vqa(char **out, mg_context *ctx,
                        const mg_image *const *images, size_t n_images,
                        const char *question, const mg_gen_params *params);

/* Multi-turn chat about images, the conversation held in the context.
 * The first call (on a fresh context, after mg_context_reset, or after any
 * other generating call on it) opens a conversation with MedGemma's chat
 * template: <bos>, the user turn with the system text (params->system_prompt,
 * NULL: metadata prompt.system_default), the message and its images (as
 * mg_vqa lays them out), then the model's turn, whose answer is generated.
 * Each later call appends the user's next turn (message, and images if any)
 * after the previous answer and generates the next answer; only the new
 * turn's tokens are read (the conversation stays in the KV cache), so a
 * follow-up question costs its own tokens, not the images again.
 * The history is the tokens the model produced (an answer cut by max_tokens,
 * a stop string or an interrupt is closed there).
 * When the context fills: before a turn is read, room is kept for its
 * answer (max_tokens, at most a quarter of n_ctx). If the conversation,
 * the turn and that room do not fit, the oldest exchanges are dropped
 * (whole question-answer pairs), except the first (the system text and the
 * first images), and the kept ones after it are read again at their new
 * places (their images from the encoder-output cache; an exchange whose
 * images are no longer cached is dropped too). When even the first
 * exchange and the new turn do not fit, MG_E_CONTEXT_FULL.
 * n_images may be 0 (images may then be NULL). *out receives the answer as
 * in mg_vqa. Needs a context without MG_CONTEXT_NO_REUSE.
 * Errors: as mg_vqa, MG_E_UNSUPPORTED (MG_CONTEXT_NO_REUSE). */
MG_API mg_status mg_chat(char **out, mg_context *ctx, const mg_image *const *images,
                         size_t n_images, const char *message,
                         const mg_gen_params *params);

/* A report (mg_generate_report_volume) or an answer (mg_vqa_volume) for a
 * CT or MR volume, the way MedGemma 1.5 reads one: the slices of
 * mg_volume_slices (at most slices->max_slices, default 85; NULL for the
 * defaults), each through the model's image encoder into its own block of
 * image tokens, bidirectional within the block, laid out in the user turn
 * as [preamble, slice 1, "SLICE 1", slice 2, "SLICE 2", ..., text] through
 * Gemma 3's chat template (docs/VOLUME.md gives the exact text). The
 * preamble is metadata prompt.volume_preamble (default: a sentence saying
 * the images are consecutive slices of one volume); the text is the
 * question, or params->instruction, or metadata
 * prompt.volume_report_instruction (default: asks for the findings of a
 * report). The system text, generation, streaming, interrupt and *out work
 * as in mg_generate_report. With 85 slices the prompt holds 85 x the
 * model's tokens per image (21,760 for MedGemma's 256): the context's
 * n_ctx must hold them, checked before any slice is encoded
 * (MG_E_CONTEXT_FULL); fewer slices cost proportionally less time.
 * Errors: MG_E_MISUSE (bad handles), MG_E_INVALID_ARG, MG_E_LIMIT (slices
 * larger than 65535 px a side, max_slices above MG_MAX_SLICES),
 * MG_E_UNSUPPORTED (no image encoder, decoder or image markers),
 * MG_E_CONTEXT_FULL, MG_E_INTERRUPTED, MG_E_NOMEM. */
MG_API mg_status mg_generate_report_volume(char **out, mg_context *ctx,
                                           const mg_volume *volume,
                                           const mg_slice_params *slices,
                                           const mg_gen_params *params);
MG_API mg_status mg_vqa_volume(char **out, mg_context *ctx, const mg_volume *volume,
                               const char *question, const mg_slice_params *slices,
                               const mg_gen_params *params);

/* Polygenic risk prediction (Med-Gemini-Polygenic; docs/POLYGENIC.md) with
 * a model whose metadata describes a genomics encoder (genome.*): named
 * polygenic scores ("<trait>_<threshold>", e.g. the columns of a wide
 * scoring file), standardized against the reference distribution stored
 * in the model, are laid out as the score image (each trait a square, one
 * channel per p-value threshold) and read by the model's image encoder
 * into one block of tokens. Scores the model does not know are ignored;
 * scores it knows but are not given (or NaN) count as the reference mean.
 *
 * mg_prs_predict asks one question ("Does this individual have coronary
 * artery disease?") after the score block in MedGemma's chat turn,
 * generates the answer text into *out (as mg_generate_report: params,
 * streaming, interrupt; out may be NULL for the risk alone) and, when risk
 * is not NULL, writes P(yes) / (P(yes) + P(no)) from the scores of the
 * answer's first token (the tokens of metadata genome.answer_yes and
 * genome.answer_no, default "yes" and "no"; the repetition penalty is not
 * applied to them).
 * Errors: MG_E_MISUSE, MG_E_INVALID_ARG (NULL arguments, a score given
 * twice, no score the model reads), MG_E_UNSUPPORTED (no genomics encoder,
 * decoder or tokenizer; answer words that are not one token each),
 * MG_E_CONTEXT_FULL, MG_E_INTERRUPTED, MG_E_NOMEM. */
MG_API mg_status mg_prs_predict(char **out, double *risk, mg_context *ctx,
                                const double *scores,
                                const char *const *names, size_t n_scores,
                                const char *question,
                                const mg_gen_params *params);

/* Risks for many individuals and questions: risk[i * n_questions + q] for
 * individual i (scores[i * n_scores ...], the same names for all) and
 * question q, as mg_prs_predict computes them, without text. Each
 * individual's score block is read once and shared by its questions (the
 * context's sequence is rewound to it). The context's sequence is left
 * holding the last prompt. Errors: as mg_prs_predict; on an error the
 * risks not yet computed are NaN. */
MG_API mg_status mg_prs_predict_batch(double *risk, mg_context *ctx,
                                      const double *scores, size_t n_individuals,
                                      const char *const *names, size_t n_scores,
                                      const char *const *questions,
                                      size_t n_questions);

/* The score image the model reads for these scores (RGB8; free with
 * mg_image_free), e.g. to show it or to check a trainer's input.
 * Errors: MG_E_MISUSE (bad model), MG_E_INVALID_ARG, MG_E_UNSUPPORTED (no
 * genomics encoder), MG_E_NOMEM. */
MG_API mg_status mg_prs_score_image(mg_image **out, const mg_model *model,
                                    const double *scores,
                                    const char *const *names, size_t n_scores,
                                    char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* MEDGEMINI_H */
