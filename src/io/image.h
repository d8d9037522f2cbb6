/* image.h - the decoded image object behind mg_image, and the decoders'
 * shared helpers. */
#ifndef MG_IMAGE_H
#define MG_IMAGE_H

#include "core/core.h"

struct mg_image {
    uint32_t tag;          /* MG__TAG_IMAGE */
    uint32_t width, height;
    uint64_t serial;       /* mg__serial_next() at creation */
    int32_t format;        /* MG_PIXEL_* */
    int32_t source;        /* MG_IMAGE_SRC_* */
    uint32_t bits_stored;
    size_t size;           /* bytes of pixels, tightly packed */
    /* Source description reported by mg_image_info_get; mg__image_alloc
     * fills the neutral values (1 frame, slope 1, no window). */
    uint32_t n_frames, frame, bits_allocated;
    int32_t pixel_signed, window, raw_offset;
    double slope, intercept, window_center, window_width;
    char photometric[20];
    char ts_name[96];
    char ts_uid[68];
    char modality[20];
    char sop_class_uid[68];
    char series_uid[68];
    void *pixels;          /* owned; row-major, no padding; allocated with
                              mg__aligned_alloc(MG__IMAGE_ALIGN, size) */
};

#define MG__IMAGE_ALIGN 64

/* A live image handle (right tag). */
static inline int mg__image_ok(const mg_image *img) {
    return img && img->tag == MG__TAG_IMAGE;
}

/* Channels (1 or 3) and bytes per sample (1 or 2) of a MG_PIXEL_* format;
 * 0 for an unknown one. */
uint32_t mg__pixel_channels(int32_t format);
uint32_t mg__pixel_bytes(int32_t format);

/* Checks width/height against params (already defaulted) and computes the
 * byte size; returns MG_OK or MG_E_LIMIT / MG_E_INVALID_ARG with a message. */
mg_status mg__image_check_limits(size_t *bytes, uint32_t w, uint32_t h,
                                 int32_t format, const mg_image_params *p,
                                 char *err, size_t errlen);
/* Copies the caller's params over the defaults, honouring struct_size: only
 * fields the caller's size covers completely are read. A limit of 0 means
 * "the default". src may be NULL (all defaults). Does not validate; see
 * mg__image_params_get. */
void mg__image_params_resolve(mg_image_params *dst, const mg_image_params *src);
/* Validates src (struct_size 4..64 KiB, flags 0) and resolves it into dst.
 * Errors: MG_E_INVALID_ARG with a message. */
mg_status mg__image_params_get(mg_image_params *dst, const mg_image_params *src,
                               char *err, size_t errlen);

/* Reads a whole regular file of at most `limit` bytes into a new buffer
 * (release with mg__free). Errors: MG_E_IO (open/read failed, not a
 * regular file), MG_E_LIMIT (larger than limit), MG_E_IMAGE_FORMAT (empty),
 * MG_E_NOMEM; the message names the file. */
mg_status mg__read_file(unsigned char **out, size_t *out_size,
                        const char *path, uint64_t limit, char *err,
                        size_t errlen);

/* Checks limits and allocates an image with uninitialised pixels. *out is
 * NULL on failure. Errors: MG_E_INVALID_ARG, MG_E_LIMIT, MG_E_NOMEM. */
mg_status mg__image_alloc(mg_image **out, uint32_t w, uint32_t h,
                          int32_t format, int32_t source, uint32_t bits_stored,
                          const mg_image_params *p, char *err, size_t errlen);

/* ---- decoders ---------------------------------------------------------- */
/* Each decodes a whole file held in memory with resolved params p. On
 * success *out is a new image; on failure *out is NULL and err says why.
 * None of them prints, exits or keeps global state. */

/* 1 when data starts with the format's signature. */
int mg__image_is_jpeg(const unsigned char *data, size_t size);
int mg__image_is_png(const unsigned char *data, size_t size);

/* Baseline/progressive/arithmetic 8-bit JPEG via libjpeg(-turbo). Gray ->
 * GRAY8, YCbCr/RGB -> RGB8; CMYK/YCCK, 12-bit and lossless -> MG_E_UNSUPPORTED.
 * Any libjpeg warning about corrupt or truncated data is an error. */
mg_status mg__image_decode_jpeg(mg_image **out, const unsigned char *data,
                                size_t size, const mg_image_params *p,
                                char *err, size_t errlen);
/* PNG via libpng 1.6. Gray (any depth) -> GRAY8/GRAY16, palette -> RGB8,
 * RGB -> RGB8/RGB16; alpha (and tRNS) is discarded, not composited. */
mg_status mg__image_decode_png(mg_image **out, const unsigned char *data,
                               size_t size, const mg_image_params *p,
                               char *err, size_t errlen);

#endif
