/* mgm.h - the .mgm model container: reader (validating) and the structures
 * the rest of the library reads. Writer: mg_writer_* in medgemini.h,
 * implemented in io/mgm_writer.c. Format: docs/FORMAT.md. */
#ifndef MG_MGM_H
#define MG_MGM_H

#include "core/core.h"

#define MG__MGM_MAGIC "MGMF"          /* 4 bytes at offset 0 */
#define MG__MGM_VERSION 1u
#define MG__MGM_HEADER_SIZE 64u
#define MG__MGM_MIN_ALIGN 32u
#define MG__MGM_MAX_ALIGN (1u << 20)
#define MG__MGM_MAX_KEY 255u
#define MG__MGM_MAX_NAME 1023u
#define MG__MGM_MAX_STRING (16u << 20) /* longest metadata string value */
#define MG__MGM_MAX_ZSTD_RATIO 32768u /* most output bytes a zstd frame can
                                         produce per stored byte */
#define MG__MGM_WRITER_ALIGN 64u      /* alignment the writer uses */
#define MG__MGM_FLAG_ZSTD 0x1u        /* tensor flag */

typedef struct mg__meta {
    const char *key;       /* NUL-terminated copy owned by the file object */
    int32_t type;          /* MG_META_* */
    int32_t elem_type;     /* for arrays: MG_META_INT/FLOAT/STRING, else 0 */
    uint64_t n;            /* for arrays: element count, else 1 */
    union {
        int64_t i;
        double f;
        const char *s;     /* NUL-terminated copy */
        const int64_t *ai;
        const double *af;
        const char *const *as;
    } v;
} mg__meta;

typedef struct mg__tensor {
    const char *name;      /* NUL-terminated copy */
    int32_t dtype;
    uint32_t n_dims;
    uint64_t dims[MG_TENSOR_MAX_DIMS];  /* unused dims are 1 */
    uint64_t n_elems;
    uint64_t n_bytes;      /* decompressed */
    uint64_t offset;       /* absolute file offset of stored bytes */
    uint64_t stored;       /* stored bytes */
    uint32_t flags;        /* MG__MGM_FLAG_* */
    uint32_t crc32c;
    const void *data;      /* decompressed bytes, aligned to the file's
                              alignment (to the page size at most when the
                              file is mapped and alignment > page size) */
} mg__tensor;

typedef struct mg__mgm {
    uint32_t version;
    uint32_t alignment;
    uint64_t file_size;
    uint64_t n_meta;
    mg__meta *meta;        /* in file order */
    uint64_t n_tensors;
    mg__tensor *tensors;   /* file order */
    uint64_t n_params;
    uint64_t n_bytes;
    uint64_t data_offset;  /* absolute offset of the data section */
    uint64_t data_size;
    /* private to io/mgm.c: mapping, owned buffers, name index */
    void *priv;
} mg__mgm;

/* Opens and validates path. flags: MG_LOAD_* bits. max_memory as in
 * mg_model_params. On error returns a status and writes err. */
mg_status mg__mgm_open(mg__mgm **out, const char *path, uint32_t flags,
                       uint64_t max_memory, char *err, size_t errlen);
void mg__mgm_close(mg__mgm *f);   /* NULL ok */

/* Rearranges the q4_0 matrix t (rows x cols) into the decode layout in place
 * (kernels.h, MG__DTYPE_Q4_0X16; its dtype then reads so) when its bytes are
 * the file object's own memory (not MG_LOAD_MMAP), MG_LOAD_FILE_LAYOUT is
 * not set, the shape fits and the CPU runs the layout's kernel
 * (AVX512-VNNI at the process's SIMD level). For model builders only,
 * before the model is shared. Returns 1 if t is in that layout (now or
 * already), 0 if left as it is, -1 out of memory. */
int mg__mgm_repack_q4x16(const mg__mgm *f, const mg__tensor *t, uint64_t rows,
                         uint64_t cols);

/* Look-ups: NULL when absent (or f/key NULL). Both are O(log n). */
const mg__meta *mg__mgm_meta(const mg__mgm *f, const char *key);
const mg__tensor *mg__mgm_tensor(const mg__mgm *f, const char *name);

/* Checked reads for the model builders (io/mgm_get.c). Every failure is
 * MG_E_MODEL_FORMAT with a message that starts with `what` (e.g. "text
 * decoder") and names the key or tensor.
 *  get_u32: an INT key within [lo, hi]; absent: MG_E_MODEL_FORMAT when
 *           required, else def.
 *  get_f64: a FLOAT (or INT) key with lo < v <= hi, or v == 0 when zero_ok;
 *           absent: as get_u32.
 *  get_matrix: a tensor with data, dims [in, out] (further dims 1) in a
 *           dtype whose rows of `in` elements have a size, n_bytes to match;
 *           when scratch is not NULL and the dtype is not f32, raises
 *           *scratch to mg__matmul_scratch_size(dtype, in).
 *  get_vector: an f32 tensor of exactly n elements. */
mg_status mg__mgm_get_u32(const mg__mgm *f, const char *what, const char *key,
                          int required, uint32_t def, uint32_t lo, uint32_t hi,
                          uint32_t *out, char *err, size_t errlen);
mg_status mg__mgm_get_f64(const mg__mgm *f, const char *what, const char *key,
                          int required, double def, double lo, double hi,
                          int zero_ok, double *out, char *err, size_t errlen);
mg_status mg__mgm_get_matrix(const mg__mgm *f, const char *what,
                             const char *name, uint64_t in, uint64_t out,
                             const mg__tensor **t, size_t *scratch, char *err,
                             size_t errlen);
mg_status mg__mgm_get_vector(const mg__mgm *f, const char *what,
                             const char *name, uint64_t n, const float **out,
                             char *err, size_t errlen);

#endif
