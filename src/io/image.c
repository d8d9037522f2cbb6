/* image.c - the mg_image object: parameters and limits, copies of caller
 * pixels, format detection and file loading. The decoders live in
 * image_jpeg.c and image_png.c. */
#include "core/core.h"
#include "io/image.h"
#include "io/dicom.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* struct_size above this is taken for garbage (same bound as api/). */
#define MG__PARAMS_MAX_SIZE 65536u

/* ---- formats and limits ------------------------------------------------ */

uint32_t mg__pixel_channels(int32_t format) {
    switch (format) {
    case MG_PIXEL_GRAY8: case MG_PIXEL_GRAY16: return 1;
    case MG_PIXEL_RGB8: case MG_PIXEL_RGB16: return 3;
    default: return 0;
    }
}

uint32_t mg__pixel_bytes(int32_t format) {
    switch (format) {
    case MG_PIXEL_GRAY8: case MG_PIXEL_RGB8: return 1;
    case MG_PIXEL_GRAY16: case MG_PIXEL_RGB16: return 2;
    default: return 0;
    }
}

MG_API void mg_image_params_init(mg_image_params *params) {
    if (!params) return;
    mg_image_params d = MG_IMAGE_PARAMS_INIT;
    *params = d;
}

/* Copies field f when the caller's size covers it completely. */
#define MG__PARAM_FIELD(dst, src, n, f)                                   \
    do {                                                                  \
        if ((n) >= offsetof(mg_image_params, f) + sizeof((src)->f))       \
            (dst)->f = (src)->f;                                          \
    } while (0)

void mg__image_params_resolve(mg_image_params *dst, const mg_image_params *src) {
    const mg_image_params d = MG_IMAGE_PARAMS_INIT;
    *dst = d;
    if (!src) return;
    size_t n = src->struct_size;
    MG__PARAM_FIELD(dst, src, n, flags);
    MG__PARAM_FIELD(dst, src, n, max_pixels);
    MG__PARAM_FIELD(dst, src, n, max_memory);
    MG__PARAM_FIELD(dst, src, n, max_width);
    MG__PARAM_FIELD(dst, src, n, max_height);
    MG__PARAM_FIELD(dst, src, n, frame);
    MG__PARAM_FIELD(dst, src, n, window);
    MG__PARAM_FIELD(dst, src, n, window_center);
    MG__PARAM_FIELD(dst, src, n, window_width);
    dst->struct_size = (uint32_t)sizeof *dst;
    /* A zeroed limit means the default, so that `{sizeof p}` works. */
    if (!dst->max_pixels) dst->max_pixels = d.max_pixels;
    if (!dst->max_memory) dst->max_memory = d.max_memory;
    if (!dst->max_width) dst->max_width = d.max_width;
    if (!dst->max_height) dst->max_height = d.max_height;
}

mg_status mg__image_params_get(mg_image_params *dst, const mg_image_params *src,
                               char *err, size_t errlen) {
    if (src && (src->struct_size < sizeof src->struct_size ||
                src->struct_size > MG__PARAMS_MAX_SIZE)) {
        mg__image_params_resolve(dst, NULL);
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_image_params.struct_size is %u; set it with "
                       "mg_image_params_init()", (unsigned)src->struct_size);
    }
    if (src && src->struct_size > sizeof *dst &&
        mg__opts_newer_byte(src, src->struct_size, sizeof *dst)) {
        mg__image_params_resolve(dst, NULL);
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "mg_image_params sets fields this version (%s) does not know",
                       MG_VERSION_STRING);
    }
    mg__image_params_resolve(dst, src);
    if (dst->flags != 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_image_params.flags has unknown bits 0x%x",
                       (unsigned)dst->flags);
    if (dst->window < MG_WINDOW_FILE || dst->window > MG_WINDOW_NONE)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "mg_image_params.window is %d; expected MG_WINDOW_*",
                       (int)dst->window);
    if (dst->window == MG_WINDOW_EXPLICIT &&
        !(isfinite(dst->window_center) && isfinite(dst->window_width) &&
          dst->window_width >= 1))
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "explicit window center %g width %g: the width must "
                       "be at least 1 and both finite",
                       dst->window_center, dst->window_width);
    return MG_OK;
}

mg_status mg__image_check_limits(size_t *bytes, uint32_t w, uint32_t h,
                                 int32_t format, const mg_image_params *p,
                                 char *err, size_t errlen) {
    uint32_t ch = mg__pixel_channels(format), bps = mg__pixel_bytes(format);
    uint64_t pixels, n;
    *bytes = 0;
    if (!ch || !bps)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "unknown pixel format %d",
                       (int)format);
    if (w == 0 || h == 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "image is %ux%u (empty)",
                       (unsigned)w, (unsigned)h);
    if (w > p->max_width || h > p->max_height)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "image is %ux%u; the limit is %ux%u", (unsigned)w,
                       (unsigned)h, (unsigned)p->max_width,
                       (unsigned)p->max_height);
    pixels = (uint64_t)w * h; /* cannot overflow: both < 2^32 */
    if (pixels > p->max_pixels)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "image is %ux%u = %llu pixels; the limit is %llu",
                       (unsigned)w, (unsigned)h, (unsigned long long)pixels,
                       (unsigned long long)p->max_pixels);
    if (mg__mul_u64(pixels, (uint64_t)ch * bps, &n) || n > p->max_memory ||
        n > (uint64_t)SIZE_MAX)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "image of %ux%u needs more than the %llu bytes allowed",
                       (unsigned)w, (unsigned)h,
                       (unsigned long long)p->max_memory);
    *bytes = (size_t)n;
    return MG_OK;
}

mg_status mg__image_alloc(mg_image **out, uint32_t w, uint32_t h,
                          int32_t format, int32_t source, uint32_t bits_stored,
                          const mg_image_params *p, char *err, size_t errlen) {
    size_t bytes;
    mg_status st;
    *out = NULL;
    if ((st = mg__image_check_limits(&bytes, w, h, format, p, err, errlen)))
        return st;
    mg_image *img = mg__calloc(1, sizeof *img);
    if (!img) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    img->pixels = mg__aligned_alloc(MG__IMAGE_ALIGN, bytes);
    if (!img->pixels) {
        mg__free(img);
        return mg__err(err, errlen, MG_E_NOMEM,
                       "out of memory for %zu bytes of pixels", bytes);
    }
    img->tag = MG__TAG_IMAGE;
    img->serial = mg__serial_next();
    img->width = w;
    img->height = h;
    img->format = format;
    img->source = source;
    img->bits_stored = bits_stored;
    img->size = bytes;
    img->n_frames = 1;
    img->bits_allocated = 8 * mg__pixel_bytes(format);
    img->window = MG_WINDOW_NONE;
    img->slope = 1;
    snprintf(img->photometric, sizeof img->photometric, "%s",
             mg__pixel_channels(format) == 1 ? "MONOCHROME2" : "RGB");
    *out = img;
    return MG_OK;
}

MG_API void mg_image_free(mg_image *image) {
    /* Anything without the live tag (a double free, a foreign pointer) is
     * left alone: best effort, as the header says. */
    if (!image || image->tag != MG__TAG_IMAGE) return;
    image->tag = MG__TAG_DEAD;
    mg__aligned_free(image->pixels);
    image->pixels = NULL;
    mg__free(image);
}

/* ---- caller pixels ----------------------------------------------------- */

MG_API mg_status mg_image_from_pixels(mg_image **out, const void *pixels,
                                      uint32_t width, uint32_t height,
                                      size_t stride, int32_t format,
                                      const mg_image_params *params,
                                      char *err, size_t errlen) {
    mg_image_params p;
    mg_image *img;
    mg_status st;
    size_t row, span, bytes;

    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!pixels) return mg__err(err, errlen, MG_E_INVALID_ARG, "pixels is NULL");
    if ((st = mg__image_params_get(&p, params, err, errlen))) return st;
    uint32_t ch = mg__pixel_channels(format), bps = mg__pixel_bytes(format);
    if (!ch)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "unknown pixel format %d", (int)format);
    if (width == 0 || height == 0)
        return mg__err(err, errlen, MG_E_INVALID_ARG, "image is %ux%u (empty)",
                       (unsigned)width, (unsigned)height);
    if (mg__mul_size((size_t)width, (size_t)ch * bps, &row))
        return mg__err(err, errlen, MG_E_LIMIT, "row size overflows");
    if (stride == 0) stride = row;
    if (stride < row)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "stride %zu is smaller than a row (%zu bytes)", stride,
                       row);
    if ((st = mg__image_check_limits(&bytes, width, height, format, &p, err,
                                     errlen)))
        return st;
    /* The caller's buffer spans stride*(height-1)+row bytes; it must be
     * addressable. */
    if (mg__mul_size(stride, (size_t)height - 1, &span) ||
        span > SIZE_MAX - row)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "stride %zu x height %u overflows the address space",
                       stride, (unsigned)height);
    if ((st = mg__image_alloc(&img, width, height, format, MG_IMAGE_SRC_PIXELS,
                              8 * bps, &p, err, errlen)))
        return st;
    const unsigned char *src = pixels;
    unsigned char *dst = img->pixels;
    if (stride == row) {
        memcpy(dst, src, img->size);
    } else {
        for (uint32_t y = 0; y < height; y++)
            memcpy(dst + (size_t)y * row, src + (size_t)y * stride, row);
    }
    *out = img;
    return MG_OK;
}

/* ---- queries ------------------------------------------------------------- */

#define MG__INFO_FIELD(dst, n, f, v)                                     \
    do {                                                                 \
        if ((n) >= offsetof(mg_image_info, f) + sizeof((dst)->f))        \
            (dst)->f = (v);                                              \
    } while (0)

MG_API mg_status mg_image_info_get(mg_image_info *out, const mg_image *image) {
    if (!mg__image_ok(image)) return MG_E_MISUSE;
    if (!out) return MG_E_INVALID_ARG;
    size_t n = out->struct_size;
    if (n < sizeof out->struct_size || n > MG__PARAMS_MAX_SIZE)
        return MG_E_INVALID_ARG;
    /* Only the fields the caller's struct_size covers are written. */
    MG__INFO_FIELD(out, n, width, image->width);
    MG__INFO_FIELD(out, n, height, image->height);
    MG__INFO_FIELD(out, n, format, image->format);
    MG__INFO_FIELD(out, n, source, image->source);
    MG__INFO_FIELD(out, n, bits_stored, image->bits_stored);
    MG__INFO_FIELD(out, n, n_frames, image->n_frames);
    MG__INFO_FIELD(out, n, frame, image->frame);
    MG__INFO_FIELD(out, n, bits_allocated, image->bits_allocated);
    MG__INFO_FIELD(out, n, pixel_signed, image->pixel_signed);
    MG__INFO_FIELD(out, n, window, image->window);
    MG__INFO_FIELD(out, n, raw_offset, image->raw_offset);
    MG__INFO_FIELD(out, n, rescale_slope, image->slope);
    MG__INFO_FIELD(out, n, rescale_intercept, image->intercept);
    MG__INFO_FIELD(out, n, window_center, image->window_center);
    MG__INFO_FIELD(out, n, window_width, image->window_width);
    return MG_OK;
}

MG_API const char *mg_image_get_string(const mg_image *image, const char *key) {
    if (!mg__image_ok(image) || !key) return NULL;
    const char *v = NULL;
    if (strcmp(key, "photometric") == 0) v = image->photometric;
    else if (strcmp(key, "transfer_syntax") == 0) v = image->ts_name;
    else if (strcmp(key, "transfer_syntax_uid") == 0) v = image->ts_uid;
    else if (strcmp(key, "modality") == 0) v = image->modality;
    else if (strcmp(key, "sop_class_uid") == 0) v = image->sop_class_uid;
    else if (strcmp(key, "series_uid") == 0) v = image->series_uid;
    return v && v[0] ? v : NULL;
}

MG_API mg_status mg_image_copy_pixels(void *buf, size_t size, size_t *needed,
                                      const mg_image *image) {
    if (!mg__image_ok(image)) {
        if (needed) *needed = 0;
        return MG_E_MISUSE;
    }
    if (needed) *needed = image->size;
    if (size < image->size) return MG_E_BUFFER_TOO_SMALL;
    if (!buf) return MG_E_INVALID_ARG;
    memcpy(buf, image->pixels, image->size);
    return MG_OK;
}

/* ---- format detection ---------------------------------------------------- */

typedef mg_status (*mg__image_decoder)(mg_image **out,
                                       const unsigned char *data, size_t size,
                                       const mg_image_params *p, char *err,
                                       size_t errlen);

/* Readers, tried in order; the first whose signature matches decodes. Each
 * signature is unambiguous, so no bidding is needed yet; DICOM comes last
 * because a bare dataset (no preamble) is recognised by a weaker test. */
static const struct {
    const char *name;
    int (*match)(const unsigned char *data, size_t size);
    mg__image_decoder decode;
} mg__image_readers[] = {
    {"JPEG", mg__image_is_jpeg, mg__image_decode_jpeg},
    {"PNG", mg__image_is_png, mg__image_decode_png},
    {"DICOM", mg__image_is_dicom, mg__image_decode_dicom},
};

MG_API mg_status mg_image_load_memory(mg_image **out, const void *data,
                                      size_t size,
                                      const mg_image_params *params,
                                      char *err, size_t errlen) {
    mg_image_params p;
    mg_status st;

    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!data) return mg__err(err, errlen, MG_E_INVALID_ARG, "data is NULL");
    if ((st = mg__image_params_get(&p, params, err, errlen))) return st;
    if (size == 0)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT, "empty image data");
    for (size_t i = 0; i < sizeof mg__image_readers / sizeof mg__image_readers[0]; i++)
        if (mg__image_readers[i].match(data, size))
            return mg__image_readers[i].decode(out, data, size, &p, err, errlen);
    return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                   "unrecognised image format (expected JPEG, PNG or DICOM)");
}

/* Reads a whole regular file of at most `limit` bytes. */
static mg_status read_file(unsigned char **out, size_t *out_size,
                           const char *path, uint64_t limit, char *err,
                           size_t errlen) {
    char ebuf[128];
    struct stat sb;
    int fd;

    *out = NULL;
    *out_size = 0;
    do fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return mg__err(err, errlen, MG_E_IO, "cannot open '%s': %s", path,
                       strerror_r(errno, ebuf, sizeof ebuf));
    if (fstat(fd, &sb) != 0) {
        mg_status st = mg__err(err, errlen, MG_E_IO, "cannot stat '%s': %s",
                               path, strerror_r(errno, ebuf, sizeof ebuf));
        close(fd);
        return st;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return mg__err(err, errlen, MG_E_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > limit || (uint64_t)sb.st_size > SIZE_MAX / 2) {
        close(fd);
        return mg__err(err, errlen, MG_E_LIMIT,
                       "'%s' is %lld bytes; the limit is %llu", path,
                       (long long)sb.st_size, (unsigned long long)limit);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    if (n == 0) {
        close(fd);
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT, "'%s' is empty", path);
    }
    unsigned char *buf = mg__malloc(n);
    if (!buf) {
        close(fd);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory reading '%s'",
                       path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            mg_status st = mg__err(err, errlen, MG_E_IO, "cannot read '%s': %s",
                                   path, strerror_r(errno, ebuf, sizeof ebuf));
            mg__free(buf);
            close(fd);
            return st;
        }
        if (r == 0) break; /* the file shrank under us */
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        mg__free(buf);
        return mg__err(err, errlen, MG_E_IO,
                       "'%s' changed size while being read", path);
    }
    *out = buf;
    *out_size = n;
    return MG_OK;
}

mg_status mg__read_file(unsigned char **out, size_t *out_size,
                        const char *path, uint64_t limit, char *err,
                        size_t errlen) {
    return read_file(out, out_size, path, limit, err, errlen);
}

MG_API mg_status mg_image_load_file(mg_image **out, const char *path,
                                    const mg_image_params *params,
                                    char *err, size_t errlen) {
    mg_image_params p;
    unsigned char *data;
    size_t size;
    mg_status st;

    if (err && errlen) err[0] = '\0';
    if (!out) return mg__err(err, errlen, MG_E_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return mg__err(err, errlen, MG_E_INVALID_ARG, "path is NULL");
    if ((st = mg__image_params_get(&p, params, err, errlen))) return st;
    /* A file bigger than the decoded-size budget is refused unread. */
    if ((st = read_file(&data, &size, path, p.max_memory, err, errlen)))
        return st;
    st = mg_image_load_memory(out, data, size, &p, err, errlen);
    mg__free(data);
    return st;
}
