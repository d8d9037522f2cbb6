/* image.h - the decoded image object behind mg_image. */
#ifndef MG_IMAGE_H
#define MG_IMAGE_H

#include "core/core.h"

struct mg_image {
    uint32_t tag;          /* MG__TAG_IMAGE */
    uint32_t width, height;
    int32_t format;        /* MG_PIXEL_* */
    int32_t source;        /* MG_IMAGE_SRC_* */
    uint32_t bits_stored;
    size_t size;           /* bytes of pixels, tightly packed */
    void *pixels;          /* owned; row-major, no padding */
};

/* Channels (1 or 3) and bytes per sample (1 or 2) of a MG_PIXEL_* format;
 * 0 for an unknown one. */
uint32_t mg__pixel_channels(int32_t format);
uint32_t mg__pixel_bytes(int32_t format);

/* Checks width/height against params (already defaulted) and computes the
 * byte size; returns MG_OK or MG_E_LIMIT / MG_E_INVALID_ARG with a message. */
mg_status mg__image_check_limits(size_t *bytes, uint32_t w, uint32_t h,
                                 int32_t format, const mg_image_params *p,
                                 char *err, size_t errlen);
/* Copies the caller's params over the defaults, honouring struct_size. */
void mg__image_params_resolve(mg_image_params *dst, const mg_image_params *src);

#endif
