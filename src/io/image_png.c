/* image_png.c - PNG decoding through libpng 1.6, from memory.
 *
 * libpng reports errors through our error function, which longjmps back to
 * decode(). As in image_jpeg.c, everything that changes after setjmp lives in
 * a struct reached through an unmodified pointer, so no local is left
 * indeterminate by the longjmp.
 *
 * Output: gray of any depth -> GRAY8 (1/2/4-bit samples are scaled to 0..255
 * by bit replication) or GRAY16; palette -> RGB8; RGB -> RGB8 or RGB16.
 * 16-bit samples are returned native-endian. Alpha channels are discarded,
 * not composited, and tRNS is ignored: the colour values are returned as
 * stored. bits_stored is the bit depth of the returned samples (8 or 16);
 * sBIT is not applied.
 *
 * Defences: the width and height in IHDR are checked against the caller's
 * limits before libpng is even set up, and again from libpng's parsed header
 * before the pixel buffer is allocated; libpng's own user limits are set to
 * the same values; a file too short to hold its image (deflate expands at
 * most 1032:1) is refused before the allocation; ancillary chunks we do not use are skipped unparsed (but
 * CRC-checked); a bad CRC in any chunk, a truncated stream and missing image
 * data are errors.
 */
#include "core/core.h"
#include "io/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

#define MG__PNG_CHUNK_MALLOC_MAX ((png_alloc_size_t)8 << 20)
#define MG__PNG_CHUNK_CACHE_MAX 256u

typedef struct png_state {
    png_structp png;
    png_infop info;
    jmp_buf jb;
    mg_status status;          /* set before each longjmp */
    char msg[256];
    const unsigned char *data;
    size_t size, pos;
    const mg_image_params *p;
    char *err;
    size_t errlen;
    mg_image *img;             /* owned until handed to the caller */
    png_bytep *rows;
} png_state;

static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

int mg__image_is_png(const unsigned char *d, size_t n) {
    return n >= sizeof png_sig && memcmp(d, png_sig, sizeof png_sig) == 0;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static void on_error(png_structp png, png_const_charp msg) {
    png_state *st = png_get_error_ptr(png);
    snprintf(st->msg, sizeof st->msg, "%s", msg ? msg : "error");
    if (st->status == MG_OK) st->status = MG_E_IMAGE_FORMAT;
    longjmp(st->jb, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* never printed; benign problems do not stop the decode */
}

static void on_read(png_structp png, png_bytep out, size_t n) {
    png_state *st = png_get_io_ptr(png);
    if (n > st->size - st->pos) {
        st->status = MG_E_IMAGE_FORMAT;
        png_error(png, "truncated PNG data (unexpected end of file)");
    }
    memcpy(out, st->data + st->pos, n);
    st->pos += n;
}

/* The output format of an IHDR bit depth and colour type; 0 if invalid. */
static int32_t out_format(int depth, int color) {
    switch (color) {
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        return depth == 16 ? MG_PIXEL_GRAY16 : MG_PIXEL_GRAY8;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA:
        return depth == 16 ? MG_PIXEL_RGB16 : MG_PIXEL_RGB8;
    case PNG_COLOR_TYPE_PALETTE:
        return depth <= 8 ? MG_PIXEL_RGB8 : 0;
    default:
        return 0;
    }
}

/* Limit check straight from the raw IHDR, so that a header over the limits
 * yields MG_E_LIMIT (not libpng's "exceeds user limit" error) and nothing
 * is set up. A malformed IHDR is left for libpng to report. */
static mg_status precheck_ihdr(png_state *st) {
    const unsigned char *d = st->data;
    size_t bytes;
    if (st->size < 8 + 8 + 13 || be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4))
        return MG_OK;
    uint32_t w = be32(d + 16), h = be32(d + 20);
    int32_t format = out_format(d[24], d[25]);
    if (!w || !h || !format) return MG_OK;
    mg_status s = mg__image_check_limits(&bytes, w, h, format, st->p, st->err,
                                         st->errlen);
    return s == MG_E_LIMIT ? s : MG_OK;
}

static int little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static mg_status decode(png_state *const st) {
    png_uint_32 w, h;
    int depth, color, interlace;
    mg_status s;

    if (setjmp(st->jb)) return st->status ? st->status : MG_E_IMAGE_FORMAT;

    st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, on_error,
                                     on_warning);
    if (!st->png) {
        snprintf(st->msg, sizeof st->msg, "cannot create the PNG reader");
        return MG_E_NOMEM;
    }
    st->info = png_create_info_struct(st->png);
    if (!st->info) {
        snprintf(st->msg, sizeof st->msg, "cannot create the PNG reader");
        return MG_E_NOMEM;
    }
    png_structp png = st->png;
    png_infop info = st->info;
    png_set_read_fn(png, st, on_read);
    png_set_user_limits(png,
                        st->p->max_width > 0x7fffffffu ? 0x7fffffffu : st->p->max_width,
                        st->p->max_height > 0x7fffffffu ? 0x7fffffffu : st->p->max_height);
    png_set_chunk_cache_max(png, MG__PNG_CHUNK_CACHE_MAX);
    png_set_chunk_malloc_max(png, MG__PNG_CHUNK_MALLOC_MAX);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
#ifdef PNG_HANDLE_AS_UNKNOWN_SUPPORTED
    /* Every ancillary chunk but tRNS (text, ICC profiles, ...) is skipped
     * unparsed after its CRC check: we use none of them. */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
#endif

    png_read_info(png, info);
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    int32_t format = out_format(depth, color);
    if (!format) {
        snprintf(st->msg, sizeof st->msg,
                 "unsupported bit depth %d for colour type %d", depth, color);
        return MG_E_IMAGE_FORMAT;
    }
    size_t bytes;
    if ((s = mg__image_check_limits(&bytes, w, h, format, st->p, st->err,
                                    st->errlen))) {
        st->msg[0] = '\0';
        return s;
    }
    /* Deflate expands at most 1032:1, so a file too short to hold the
     * filtered rows is refused before any pixel memory is allocated (a
     * small file must not cost a large allocation). */
    uint64_t raw_row =
        ((uint64_t)w * png_get_channels(png, info) * (uint64_t)depth + 7) / 8 + 1;
    uint64_t raw, room;
    int raw_ovf = mg__mul_u64(raw_row, h, &raw);
    int room_ovf = mg__mul_u64(st->size, 1032, &room);
    if (raw_ovf || (!room_ovf && room < raw)) {
        snprintf(st->msg, sizeof st->msg,
                 "%zu bytes cannot hold a %ux%u image (truncated)", st->size,
                 (unsigned)w, (unsigned)h);
        return MG_E_IMAGE_FORMAT;
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    /* Drops an alpha channel, including the one palette expansion makes
     * from tRNS; a no-op for rows without alpha. */
    png_set_strip_alpha(png);
    if (depth == 16 && little_endian()) png_set_swap(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    uint32_t ch = mg__pixel_channels(format), bps = mg__pixel_bytes(format);
    if (png_get_channels(png, info) != ch ||
        png_get_bit_depth(png, info) != 8 * bps ||
        png_get_rowbytes(png, info) != (size_t)w * ch * bps) {
        snprintf(st->msg, sizeof st->msg,
                 "libpng row layout (%u channels, %u bits, %zu bytes) is not "
                 "the expected one", (unsigned)png_get_channels(png, info),
                 (unsigned)png_get_bit_depth(png, info),
                 (size_t)png_get_rowbytes(png, info));
        return MG_E_INTERNAL;
    }

    /* Pixel memory only now, after the limits. */
    if ((s = mg__image_alloc(&st->img, w, h, format, MG_IMAGE_SRC_PNG, 8 * bps,
                             st->p, st->err, st->errlen))) {
        st->msg[0] = '\0';
        return s;
    }
    size_t nrows;
    if (mg__mul_size(h, sizeof *st->rows, &nrows) ||
        !(st->rows = mg__malloc(nrows))) {
        snprintf(st->msg, sizeof st->msg, "out of memory");
        return MG_E_NOMEM;
    }
    size_t row = (size_t)w * ch * bps;
    for (png_uint_32 y = 0; y < h; y++)
        st->rows[y] = (png_bytep)st->img->pixels + (size_t)y * row;
    png_read_image(png, st->rows);
    /* The chunks after the image data, through IEND: a file cut short after
     * its last IDAT is still truncated. */
    png_read_end(png, NULL);
    return MG_OK;
}

mg_status mg__image_decode_png(mg_image **out, const unsigned char *data,
                               size_t size, const mg_image_params *p,
                               char *err, size_t errlen) {
    png_state st;
    mg_status s;

    *out = NULL;
    memset(&st, 0, sizeof st);
    st.data = data;
    st.size = size;
    st.p = p;
    st.err = err;
    st.errlen = errlen;

    if ((s = precheck_ihdr(&st))) return s;
    s = decode(&st);

    if (st.png) png_destroy_read_struct(&st.png, st.info ? &st.info : NULL, NULL);
    mg__free(st.rows);
    if (s != MG_OK) {
        mg_image_free(st.img);
        if (st.msg[0]) mg__err(err, errlen, s, "PNG: %s", st.msg);
        return s;
    }
    *out = st.img;
    return MG_OK;
}
