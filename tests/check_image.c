/* check_image.c - the image API: PNG and JPEG decoding against independent
 * expectations, caller pixels, size negotiation, parameters and limits,
 * handle misuse, and a corpus of truncated, bit-flipped and crafted files
 * (which must fail cleanly, never crash or leak).
 *
 * Expectations come from outside the decoder under test:
 *  - the PNG assets in tests/data/images/ were written by make_images.py's own
 *    PNG encoder from the formulas p8()/p16()/... below, recomputed here;
 *  - the JPEG assets were written by Pillow, and their .pgm/.ppm references
 *    are Pillow's decodes of the same files; they are also compared with the
 *    source gradient within a JPEG-sized tolerance;
 *  - pil_nih.txt holds checksums (sum and FNV-1a of the samples) of Pillow
 *    9.4.0's decode of the shared NIH ChestX-ray14 PNGs, computed by
 *    make_images.py;
 *  - round trips encode with libpng/libjpeg here and compare with the source
 *    pixels. */
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>
#include <png.h>

#include "medgemini.h"
#include "testutil.h"

#define ASSET_DIR "tests/data/images/"

/* ---- helpers --------------------------------------------------------------- */

static unsigned char *asset(const char *name, size_t *size) {
    char path[512];
    snprintf(path, sizeof path, ASSET_DIR "%s", name);
    unsigned char *d = tu_read_file(path, size);
    ck_assert_msg(d != NULL, "cannot read %s (run from the repository root)", path);
    return d;
}

static mg_image_info info_of(const mg_image *img) {
    mg_image_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(mg_image_info_get(&info, img), MG_OK);
    return info;
}

/* The image's pixels in a fresh malloc buffer. */
static unsigned char *pixels_of(const mg_image *img, size_t *size) {
    size_t need = 0;
    ck_assert_int_eq(mg_image_copy_pixels(NULL, 0, &need, img), MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_gt(need, 0);
    unsigned char *p = malloc(need);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(mg_image_copy_pixels(p, need, NULL, img), MG_OK);
    *size = need;
    return p;
}

static mg_image *decode_ok(const void *data, size_t size, const mg_image_params *p) {
    mg_image *img = NULL;
    char err[256] = "";
    mg_status st = mg_image_load_memory(&img, data, size, p, err, sizeof err);
    ck_assert_msg(st == MG_OK, "decode failed: %d %s", (int)st, err);
    ck_assert_ptr_nonnull(img);
    return img;
}

static mg_status decode_status(const void *data, size_t size, const mg_image_params *p,
                               char *err, size_t errlen) {
    mg_image *img = (mg_image *)(uintptr_t)0x1; /* must be reset to NULL */
    mg_status st = mg_image_load_memory(&img, data, size, p, err, errlen);
    if (st == MG_OK) {
        ck_assert_ptr_nonnull(img);
        mg_image_free(img);
    } else {
        ck_assert_ptr_null(img);
    }
    return st;
}

static uint16_t u16_at(const unsigned char *p, size_t i) {
    uint16_t v;
    memcpy(&v, p + 2 * i, 2);
    return v;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t crc32_png(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

/* Recomputes every chunk CRC of a PNG in place (stops at a chunk that does
 * not fit), so that mutations reach libpng's parsers instead of its CRC
 * check. */
static void png_fix_crcs(unsigned char *d, size_t n) {
    size_t i = 8;
    while (i + 12 <= n) {
        uint32_t len = be32(d + i);
        if (len > n - i - 12) break;
        put_be32(d + i + 8 + len, crc32_png(d + i + 4, (size_t)len + 4));
        i += 12 + (size_t)len;
    }
}

static unsigned char *append_chunk(unsigned char *p, const char *type,
                                   const unsigned char *data, uint32_t len) {
    put_be32(p, len);
    memcpy(p + 4, type, 4);
    if (len) memcpy(p + 8, data, len);
    put_be32(p + 8 + len, crc32_png(p + 4, (size_t)len + 4));
    return p + 12 + len;
}

/* A PNG whose IHDR claims w x h (valid CRCs; the IDAT is junk). */
static size_t make_png_header_only(unsigned char *buf, uint32_t w, uint32_t h,
                                   int depth, int color) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char ihdr[13], idat[16];
    memcpy(buf, sig, 8);
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = (unsigned char)depth;
    ihdr[9] = (unsigned char)color;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    memset(idat, 0x5a, sizeof idat);
    unsigned char *p = append_chunk(buf + 8, "IHDR", ihdr, 13);
    p = append_chunk(p, "IDAT", idat, sizeof idat);
    p = append_chunk(p, "IEND", NULL, 0);
    return (size_t)(p - buf);
}

/* Offset of the first JPEG SOFn marker (FF Cn), or 0. */
static size_t jpeg_find_sof(const unsigned char *d, size_t n) {
    size_t i = 2;
    while (i + 4 <= n && d[i] == 0xff) {
        unsigned m = d[i + 1];
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) return i;
        if (m == 0xda) return 0;
        i += 2 + ((size_t)d[i + 2] << 8 | d[i + 3]);
    }
    return 0;
}

/* Offset of the first byte of entropy-coded data after SOS, or 0. */
static size_t jpeg_scan_start(const unsigned char *d, size_t n) {
    size_t i = 2;
    while (i + 4 <= n && d[i] == 0xff) {
        size_t len = (size_t)d[i + 2] << 8 | d[i + 3];
        if (d[i + 1] == 0xda) return i + 2 + len;
        i += 2 + len;
    }
    return 0;
}

static uint32_t fnv1a32(const unsigned char *p, size_t n) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x01000193u;
    return h;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- formulas of make_images.py ------------------------------------------- */

static unsigned p8(unsigned x, unsigned y, unsigned c) {
    return (x * (19 + c * 10) + y * (37 + c * 6) + x * y * c * 3 + c * 50) % 256;
}
static unsigned p16(unsigned x, unsigned y, unsigned c) {
    return (x * (5003 + c * 100) + y * (12011 + c * 7) + x * y * (c * 60013 + 1) + 17 + c) %
           65536;
}
static unsigned plow(unsigned x, unsigned y, unsigned depth) {
    return (x * 3 + y) % (1u << depth);
}
static unsigned pal4(unsigned x, unsigned y, unsigned c) {
    unsigned i = (x + 2 * y) % 11;
    unsigned e[3] = {i * 23 % 256, i * 71 % 256, (255 - i * 13) % 256};
    return e[c];
}
static unsigned pal8(unsigned x, unsigned y, unsigned c) {
    unsigned i = (x * 7 + y * 13) % 200;
    unsigned e[3] = {(i * 37) % 256, (i * 11 + 5) % 256, (i * 101) % 256};
    return e[c];
}

enum { K_P8, K_P16, K_LOW1, K_LOW2, K_LOW4, K_PAL4, K_PAL8 };

static unsigned expect_sample(int kind, unsigned x, unsigned y, unsigned c) {
    switch (kind) {
    case K_P8: return p8(x, y, c);
    case K_P16: return p16(x, y, c);
    case K_LOW1: return plow(x, y, 1) * 255;
    case K_LOW2: return plow(x, y, 2) * 85;
    case K_LOW4: return plow(x, y, 4) * 17;
    case K_PAL4: return pal4(x, y, c);
    case K_PAL8: return pal8(x, y, c);
    default: return 0;
    }
}

static const struct png_case {
    const char *file;
    uint32_t w, h;
    int32_t format;
    uint32_t bits;
    int kind;
} png_cases[] = {
    {"gray8.png", 13, 7, MG_PIXEL_GRAY8, 8, K_P8},
    {"gray16.png", 11, 5, MG_PIXEL_GRAY16, 16, K_P16},
    {"rgb8.png", 9, 6, MG_PIXEL_RGB8, 8, K_P8},
    {"rgb16.png", 7, 5, MG_PIXEL_RGB16, 16, K_P16},      /* several IDATs */
    {"gray1.png", 19, 3, MG_PIXEL_GRAY8, 8, K_LOW1},
    {"gray2.png", 19, 3, MG_PIXEL_GRAY8, 8, K_LOW2},
    {"gray4.png", 19, 3, MG_PIXEL_GRAY8, 8, K_LOW4},
    {"gray_alpha8.png", 10, 4, MG_PIXEL_GRAY8, 8, K_P8},  /* alpha dropped */
    {"gray_alpha16.png", 6, 4, MG_PIXEL_GRAY16, 16, K_P16},
    {"rgba8.png", 8, 3, MG_PIXEL_RGB8, 8, K_P8},
    {"rgba16.png", 5, 4, MG_PIXEL_RGB16, 16, K_P16},
    {"palette4.png", 9, 5, MG_PIXEL_RGB8, 8, K_PAL4},     /* with tRNS */
    {"palette8.png", 15, 6, MG_PIXEL_RGB8, 8, K_PAL8},
    {"gray8_trns.png", 8, 4, MG_PIXEL_GRAY8, 8, K_P8},
    {"rgb8_adam7.png", 13, 11, MG_PIXEL_RGB8, 8, K_P8},
    {"gray16_adam7.png", 10, 9, MG_PIXEL_GRAY16, 16, K_P16},
    {"gray8_chunks.png", 12, 5, MG_PIXEL_GRAY8, 8, K_P8}, /* tEXt, gAMA, private */
};
#define N_PNG_CASES ((int)(sizeof png_cases / sizeof png_cases[0]))

static const char *const jpeg_assets[] = {"gray.jpg", "rgb420.jpg", "rgb444.jpg",
                                          "rgb_prog.jpg", "cmyk.jpg"};
#define N_JPEG_ASSETS ((int)(sizeof jpeg_assets / sizeof jpeg_assets[0]))

/* Every asset, for the corruption corpus. */
static const char *corpus_file(int i) {
    return i < N_PNG_CASES ? png_cases[i].file : jpeg_assets[i - N_PNG_CASES];
}
#define N_CORPUS (N_PNG_CASES + N_JPEG_ASSETS)

/* ---- in-test encoders ------------------------------------------------------ */

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
} membuf;

static void png_write_cb(png_structp png, png_bytep data, size_t n) {
    membuf *b = png_get_io_ptr(png);
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) png_error(png, "oom");
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void png_flush_cb(png_structp png) { (void)png; }

/* Encodes tightly packed native-endian samples with libpng. */
static unsigned char *png_encode(const void *px, uint32_t w, uint32_t h, int channels,
                                 int depth, int interlace, size_t *size) {
    membuf b = {NULL, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(png);
    png_infop info = png_create_info_struct(png);
    ck_assert_ptr_nonnull(info);
    size_t row = (size_t)w * (size_t)channels * (size_t)(depth / 8);
    png_bytep *rows = malloc(h * sizeof *rows);
    ck_assert_ptr_nonnull(rows);
    for (uint32_t y = 0; y < h; y++) rows[y] = (png_bytep)px + y * row;
    if (setjmp(png_jmpbuf(png))) ck_abort_msg("libpng write failed");
    png_set_write_fn(png, &b, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, w, h, depth, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    uint16_t one = 1;
    if (depth == 16 && *(unsigned char *)&one == 1) png_set_swap(png);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *size = b.n;
    return b.p;
}

typedef struct jenc {
    int gray, quality, progressive, arith, restart, optimize, subsample;
    const jpeg_scan_info *scans; /* custom scan script (gray only) */
    int n_scans;
} jenc;

/* Encodes 8-bit gray/RGB pixels with libjpeg; free() the result. */
static unsigned char *jpeg_encode(const unsigned char *px, int w, int h, const jenc *o,
                                  size_t *size) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = o->gray ? 1 : 3;
    c.in_color_space = o->gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, o->quality, TRUE);
    if (!o->gray && !o->subsample) {
        c.comp_info[0].h_samp_factor = 1;
        c.comp_info[0].v_samp_factor = 1;
    }
    if (o->progressive) jpeg_simple_progression(&c);
    if (o->scans) {
        c.scan_info = o->scans;
        c.num_scans = o->n_scans;
    }
    c.arith_code = o->arith ? TRUE : FALSE;
    c.optimize_coding = o->optimize ? TRUE : FALSE;
    c.restart_interval = (unsigned)o->restart;
    jpeg_start_compress(&c, TRUE);
    int stride = w * c.input_components;
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)stride);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *size = len;
    return out;
}

/* A gentle gradient (at most 3 levels per pixel; w <= 64, h <= 24). */
static unsigned smooth(int x, int y, int c) {
    return (unsigned)(20 + x * (3 - c) + y * (2 + c));
}

/* Reads a binary PGM/PPM written by make_images.py. */
static unsigned char *read_pnm(const char *name, int *w, int *h, int *ch) {
    size_t n;
    unsigned char *d = asset(name, &n);
    d[n] = '\0'; /* tu_read_file leaves room for it */
    int maxv = 0, off = 0;
    char magic[3] = {0};
    ck_assert_int_eq(sscanf((const char *)d, "%2s %d %d %d%n", magic, w, h, &maxv, &off), 4);
    ck_assert_int_eq(maxv, 255);
    *ch = magic[1] == '5' ? 1 : 3;
    off++; /* the single whitespace after maxval */
    ck_assert_uint_eq(n - (size_t)off, (size_t)*w * (size_t)*h * (size_t)*ch);
    unsigned char *px = malloc(n - (size_t)off);
    memcpy(px, d + off, n - (size_t)off);
    free(d);
    return px;
}

/* ---- PNG decoding ------------------------------------------------------------ */

START_TEST(test_png_assets) {
    const struct png_case *pc = &png_cases[_i];
    size_t n, psize;
    unsigned char *d = asset(pc->file, &n);
    mg_image *img = decode_ok(d, n, NULL);
    mg_image_info info = info_of(img);
    ck_assert_uint_eq(info.width, pc->w);
    ck_assert_uint_eq(info.height, pc->h);
    ck_assert_int_eq(info.format, pc->format);
    ck_assert_int_eq(info.source, MG_IMAGE_SRC_PNG);
    ck_assert_uint_eq(info.bits_stored, pc->bits);
    unsigned char *px = pixels_of(img, &psize);
    unsigned ch = (pc->format == MG_PIXEL_RGB8 || pc->format == MG_PIXEL_RGB16) ? 3 : 1;
    int wide = pc->format == MG_PIXEL_GRAY16 || pc->format == MG_PIXEL_RGB16;
    ck_assert_uint_eq(psize, (size_t)pc->w * pc->h * ch * (wide ? 2 : 1));
    for (unsigned y = 0; y < pc->h; y++)
        for (unsigned x = 0; x < pc->w; x++)
            for (unsigned c = 0; c < ch; c++) {
                size_t i = ((size_t)y * pc->w + x) * ch + c;
                unsigned got = wide ? u16_at(px, i) : px[i];
                unsigned want = expect_sample(pc->kind, x, y, c);
                ck_assert_msg(got == want, "%s (%u,%u,%u): got %u want %u", pc->file, x, y,
                              c, got, want);
            }
    free(px);
    mg_image_free(img);
    free(d);
}
END_TEST

/* 16-bit (and 8-bit) round trip through libpng's encoder, random samples. */
START_TEST(test_png_roundtrip) {
    static const struct { uint32_t w, h; int ch, depth, interlace; } cases[] = {
        {1, 1, 1, 16, 0}, {17, 9, 1, 16, 0}, {23, 5, 3, 16, 0}, {31, 19, 1, 16, 1},
        {12, 13, 3, 16, 1}, {40, 3, 1, 8, 0}, {7, 29, 3, 8, 1}, {300, 2, 3, 16, 0},
    };
    uint64_t rng = 42;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t bytes = (size_t)cases[k].w * cases[k].h * (size_t)cases[k].ch *
                       (size_t)(cases[k].depth / 8);
        unsigned char *src = malloc(bytes);
        for (size_t i = 0; i < bytes; i++) src[i] = (unsigned char)tu_rand_u64(&rng);
        size_t n, psize;
        unsigned char *png = png_encode(src, cases[k].w, cases[k].h, cases[k].ch,
                                        cases[k].depth, cases[k].interlace, &n);
        mg_image *img = decode_ok(png, n, NULL);
        mg_image_info info = info_of(img);
        int32_t want = cases[k].depth == 16
                           ? (cases[k].ch == 1 ? MG_PIXEL_GRAY16 : MG_PIXEL_RGB16)
                           : (cases[k].ch == 1 ? MG_PIXEL_GRAY8 : MG_PIXEL_RGB8);
        ck_assert_int_eq(info.format, want);
        ck_assert_uint_eq(info.bits_stored, (uint32_t)cases[k].depth);
        unsigned char *px = pixels_of(img, &psize);
        ck_assert_uint_eq(psize, bytes);
        ck_assert_msg(memcmp(px, src, bytes) == 0, "round trip %zu differs", k);
        free(px);
        mg_image_free(img);
        free(png);
        free(src);
    }
}
END_TEST

START_TEST(test_png_strictness) {
    size_t n;
    char err[256];
    unsigned char *d = asset("gray8_chunks.png", &n);
    unsigned char *m = malloc(n + 64);
    /* Reference: the intact file decodes. */
    mg_image_free(decode_ok(d, n, NULL));

    /* Bad CRC in an ancillary chunk (the tEXt text) is an error too. */
    size_t i = 8;
    size_t text = 0, idat = 0, iend = 0;
    while (i + 12 <= n) {
        uint32_t len = be32(d + i);
        if (!memcmp(d + i + 4, "tEXt", 4)) text = i;
        if (!memcmp(d + i + 4, "IDAT", 4)) idat = i;
        if (!memcmp(d + i + 4, "IEND", 4)) iend = i;
        i += 12 + len;
    }
    ck_assert(text && idat && iend);
    memcpy(m, d, n);
    m[text + 10] ^= 0x20;
    ck_assert_int_eq(decode_status(m, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "PNG"));
    /* ... in IDAT. */
    memcpy(m, d, n);
    m[idat + 9] ^= 0x01;
    ck_assert_int_eq(decode_status(m, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* ... in IEND's CRC. */
    memcpy(m, d, n);
    m[iend + 8] ^= 0x01;
    ck_assert_int_eq(decode_status(m, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* Missing IEND: truncated. */
    ck_assert_int_eq(decode_status(d, iend, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* Trailing bytes after IEND are ignored. */
    memcpy(m, d, n);
    memset(m + n, 0xee, 64);
    mg_image_free(decode_ok(m, n + 64, NULL));
    /* An unknown critical chunk ("CRIT") before IDAT is an error. */
    {
        unsigned char *q = malloc(n + 32);
        size_t first = 8 + 25; /* after IHDR */
        memcpy(q, d, first);
        unsigned char *e = append_chunk(q + first, "CRIT", (const unsigned char *)"x", 1);
        memcpy(e, d + first, n - first);
        size_t qn = (size_t)(e - q) + n - first;
        ck_assert_int_eq(decode_status(q, qn, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
        free(q);
    }
    /* IDAT data cut short but chunk structure and CRCs intact ("not enough
     * image data"). */
    {
        size_t qn;
        unsigned char *q = asset("gray8.png", &qn);
        uint32_t len = be32(q + 33);
        ck_assert(!memcmp(q + 37, "IDAT", 4) && len > 10);
        unsigned char *r = malloc(qn);
        memcpy(r, q, 33);
        unsigned char *e = append_chunk(r + 33, "IDAT", q + 41, len / 2);
        e = append_chunk(e, "IEND", NULL, 0);
        ck_assert_int_eq(decode_status(r, (size_t)(e - r), NULL, err, sizeof err),
                         MG_E_IMAGE_FORMAT);
        free(r);
        free(q);
    }
    free(m);
    free(d);
}
END_TEST

/* IHDR claiming 100000 x 100000 (valid CRC): MG_E_LIMIT at once, whatever
 * limit trips first, and nothing image-sized is allocated. */
START_TEST(test_png_huge_header) {
    unsigned char buf[128];
    char err[256];
    size_t n = make_png_header_only(buf, 100000, 100000, 8, 0);
    mg_image_params p;
    double t0 = now_s();
    ck_assert_int_eq(decode_status(buf, n, NULL, err, sizeof err), MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "100000"));
    /* Width/height limits raised: max_pixels trips. */
    mg_image_params_init(&p);
    p.max_width = p.max_height = 200000;
    ck_assert_int_eq(decode_status(buf, n, &p, err, sizeof err), MG_E_LIMIT);
    /* max_pixels raised too: max_memory trips (16-bit RGB: 6e10 bytes). */
    n = make_png_header_only(buf, 100000, 100000, 16, 2);
    p.max_pixels = (uint64_t)1 << 40;
    ck_assert_int_eq(decode_status(buf, n, &p, err, sizeof err), MG_E_LIMIT);
    /* 65535 x 65535 is within the width limits but not max_pixels. */
    n = make_png_header_only(buf, 65535, 65535, 8, 0);
    ck_assert_int_eq(decode_status(buf, n, NULL, err, sizeof err), MG_E_LIMIT);
    /* Width 0 is malformed, not a limit. */
    n = make_png_header_only(buf, 0, 10, 8, 0);
    ck_assert_int_eq(decode_status(buf, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* Width 2^31 is invalid PNG and over the limit: either is fine. */
    n = make_png_header_only(buf, 0x80000000u, 1, 8, 0);
    mg_status st = decode_status(buf, n, NULL, err, sizeof err);
    ck_assert(st == MG_E_LIMIT || st == MG_E_IMAGE_FORMAT);
    /* Within the limits, but a 90-byte file cannot hold 10000 x 10000
     * pixels: refused before the 100 MB allocation. */
    n = make_png_header_only(buf, 10000, 10000, 8, 0);
    ck_assert_int_eq(decode_status(buf, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "cannot hold"));
    /* Within all limits, junk IDAT: a format error after allocation. */
    n = make_png_header_only(buf, 64, 64, 8, 0);
    ck_assert_int_eq(decode_status(buf, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    if (!tu_under_valgrind()) ck_assert_msg(now_s() - t0 < 2.0, "limit checks were slow");
}
END_TEST

/* ---- JPEG decoding ------------------------------------------------------------ */

START_TEST(test_jpeg_assets) {
    static const struct { const char *jpg, *ref; int ch; } cases[] = {
        {"gray.jpg", "gray.pgm", 1},
        {"rgb420.jpg", "rgb420.ppm", 3},
        {"rgb444.jpg", "rgb444.ppm", 3},
        {"rgb_prog.jpg", "rgb_prog.ppm", 3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n, psize;
        int w, h, ch;
        unsigned char *d = asset(cases[k].jpg, &n);
        unsigned char *ref = read_pnm(cases[k].ref, &w, &h, &ch);
        ck_assert_int_eq(ch, cases[k].ch);
        mg_image *img = decode_ok(d, n, NULL);
        mg_image_info info = info_of(img);
        ck_assert_uint_eq(info.width, (uint32_t)w);
        ck_assert_uint_eq(info.height, (uint32_t)h);
        ck_assert_int_eq(info.format, ch == 1 ? MG_PIXEL_GRAY8 : MG_PIXEL_RGB8);
        ck_assert_int_eq(info.source, MG_IMAGE_SRC_JPEG);
        ck_assert_uint_eq(info.bits_stored, 8);
        unsigned char *px = pixels_of(img, &psize);
        ck_assert_uint_eq(psize, (size_t)w * h * ch);
        /* Against Pillow's decode of the same file (same IDCT and
         * upsampling; a little slack for another libjpeg build). */
        int maxd = 0;
        for (size_t i = 0; i < psize; i++) {
            int dd = abs((int)px[i] - (int)ref[i]);
            if (dd > maxd) maxd = dd;
        }
        ck_assert_msg(maxd <= 2, "%s differs from Pillow's decode by %d", cases[k].jpg, maxd);
        /* Against the source gradient of make_images.py. */
        double sum = 0;
        int maxs = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < ch; c++) {
                    int want = ch == 1 ? 16 + x * 6 + y * 5
                               : c == 0 ? 20 + x * 5 + y * 2
                               : c == 1 ? 200 - x * 3 - y * 2
                                        : 60 + (x + y) * 3;
                    int dd = abs((int)px[((size_t)y * w + x) * ch + c] - want);
                    sum += dd;
                    if (dd > maxs) maxs = dd;
                }
        ck_assert_msg(sum / (double)psize < 3.0 && maxs <= 24, "%s: mean %g max %d",
                      cases[k].jpg, sum / (double)psize, maxs);
        free(px);
        free(ref);
        mg_image_free(img);
        free(d);
    }
}
END_TEST

/* Encoder variants through libjpeg: baseline, progressive, arithmetic,
 * restart markers, optimised Huffman, subsampling; odd sizes. */
START_TEST(test_jpeg_variants) {
    static const jenc cases[] = {
        {1, 95, 0, 0, 0, 0, 0, NULL, 0}, {0, 95, 0, 0, 0, 0, 1, NULL, 0},
        {0, 95, 0, 0, 0, 0, 0, NULL, 0}, {1, 90, 1, 0, 0, 0, 0, NULL, 0},
        {0, 90, 1, 0, 0, 0, 1, NULL, 0}, {0, 95, 0, 1, 0, 0, 1, NULL, 0},
        {0, 95, 1, 1, 0, 0, 1, NULL, 0}, {0, 95, 0, 0, 2, 0, 1, NULL, 0},
        {1, 95, 0, 0, 1, 1, 0, NULL, 0}, {0, 100, 0, 0, 0, 1, 0, NULL, 0},
    };
    static const int sizes[][2] = {{1, 1}, {8, 8}, {17, 9}, {41, 23}, {64, 3}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int w = sizes[s][0], h = sizes[s][1], ch = cases[k].gray ? 1 : 3;
            unsigned char *src = malloc((size_t)w * h * ch);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < ch; c++)
                        src[((size_t)y * w + x) * ch + c] =
                            (unsigned char)smooth(x, y, c);
            size_t n, psize;
            unsigned char *jpg = jpeg_encode(src, w, h, &cases[k], &n);
            mg_image *img = decode_ok(jpg, n, NULL);
            mg_image_info info = info_of(img);
            ck_assert_uint_eq(info.width, (uint32_t)w);
            ck_assert_uint_eq(info.height, (uint32_t)h);
            ck_assert_int_eq(info.format, ch == 1 ? MG_PIXEL_GRAY8 : MG_PIXEL_RGB8);
            unsigned char *px = pixels_of(img, &psize);
            double sum = 0;
            int maxd = 0;
            for (size_t i = 0; i < psize; i++) {
                int dd = abs((int)px[i] - (int)src[i]);
                sum += dd;
                if (dd > maxd) maxd = dd;
            }
            ck_assert_msg(sum / (double)psize < 3.0 && maxd <= 20,
                          "case %zu size %dx%d: mean %g max %d", k, w, h,
                          sum / (double)psize, maxd);
            free(px);
            mg_image_free(img);
            free(jpg);
            free(src);
        }
}
END_TEST

START_TEST(test_jpeg_unsupported) {
    size_t n;
    char err[256];
    unsigned char *d = asset("cmyk.jpg", &n);
    ck_assert_int_eq(decode_status(d, n, NULL, err, sizeof err), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "CMYK"));
    free(d);

    d = asset("gray.jpg", &n);
    size_t sof = jpeg_find_sof(d, n);
    ck_assert_uint_gt(sof, 0);
    ck_assert_uint_eq(d[sof + 1], 0xc0);
    ck_assert_uint_eq(d[sof + 4], 8);
    unsigned char *m = malloc(n);
    /* 12-bit samples. */
    memcpy(m, d, n);
    m[sof + 4] = 12;
    ck_assert_int_eq(decode_status(m, n, NULL, err, sizeof err), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "12"));
    /* Lossless (SOF3) and hierarchical (SOF5). */
    memcpy(m, d, n);
    m[sof + 1] = 0xc3;
    ck_assert_int_eq(decode_status(m, n, NULL, err, sizeof err), MG_E_UNSUPPORTED);
    memcpy(m, d, n);
    m[sof + 1] = 0xc5;
    ck_assert_int_eq(decode_status(m, n, NULL, err, sizeof err), MG_E_UNSUPPORTED);
    free(m);
    free(d);
}
END_TEST

/* A JPEG whose SOF claims 65000 x 65000: MG_E_LIMIT straight from the
 * header, quickly. */
START_TEST(test_jpeg_huge_header) {
    size_t n;
    char err[256];
    unsigned char *d = asset("rgb420.jpg", &n);
    size_t sof = jpeg_find_sof(d, n);
    ck_assert_uint_gt(sof, 0);
    d[sof + 5] = 65000 >> 8;
    d[sof + 6] = 65000 & 0xff;
    d[sof + 7] = 65000 >> 8;
    d[sof + 8] = 65000 & 0xff;
    double t0 = now_s();
    ck_assert_int_eq(decode_status(d, n, NULL, err, sizeof err), MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "65000"));
    /* Raised pixel limit: max_memory still refuses 12.7 GB. */
    mg_image_params p;
    mg_image_params_init(&p);
    p.max_pixels = (uint64_t)1 << 40;
    ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_E_LIMIT);
    /* Narrow limits. */
    mg_image_params_init(&p);
    p.max_width = 64999;
    p.max_pixels = (uint64_t)1 << 40;
    p.max_memory = (uint64_t)1 << 40;
    ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_E_LIMIT);
    if (!tu_under_valgrind()) ck_assert_msg(now_s() - t0 < 2.0, "limit checks were slow");
    /* Height 0 (DNL-style): libjpeg refuses it as malformed. */
    d[sof + 5] = d[sof + 6] = 0;
    ck_assert_int_eq(decode_status(d, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    free(d);
}
END_TEST

/* Progressive scan scripts: 65 scans decode; 128 scans hit the scan cap. */
START_TEST(test_jpeg_scan_limit) {
    jpeg_scan_info scans[130];
    int ns = 0;
    const int w = 24, h = 16;
    unsigned char src[24 * 16];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) src[y * w + x] = (unsigned char)smooth(x, y, 0);
    /* DC, one scan per AC coefficient, a DC refinement: 65 scans... */
    scans[ns++] = (jpeg_scan_info){1, {0}, 0, 0, 0, 1};
    for (int k = 1; k < 64; k++) scans[ns++] = (jpeg_scan_info){1, {0}, k, k, 0, 1};
    scans[ns++] = (jpeg_scan_info){1, {0}, 0, 0, 1, 0};
    jenc o = {1, 90, 0, 0, 0, 0, 0, scans, ns};
    size_t n, n2;
    unsigned char *jpg = jpeg_encode(src, w, h, &o, &n);
    mg_image *img = decode_ok(jpg, n, NULL);
    mg_image_free(img);
    free(jpg);
    /* ... plus one refinement scan per AC coefficient: 128 scans. */
    for (int k = 1; k < 64; k++) scans[ns++] = (jpeg_scan_info){1, {0}, k, k, 1, 0};
    o.n_scans = ns;
    jpg = jpeg_encode(src, w, h, &o, &n2);
    char err[256];
    ck_assert_int_eq(decode_status(jpg, n2, NULL, err, sizeof err), MG_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "scans"));
    free(jpg);
}
END_TEST

START_TEST(test_jpeg_corrupt) {
    size_t n;
    char err[256];
    unsigned char *d = asset("rgb420.jpg", &n);
    size_t scan = jpeg_scan_start(d, n);
    ck_assert_uint_gt(scan, 0);
    ck_assert_uint_lt(scan + 8, n);
    unsigned char *m = malloc(n + 16);
    /* EOI in the middle of the entropy-coded data: premature end of data. */
    memcpy(m, d, n);
    size_t mid = scan + (n - scan) / 2;
    m[mid] = 0xff;
    m[mid + 1] = 0xd9;
    ck_assert_int_eq(decode_status(m, mid + 2, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "JPEG"));
    /* A restart marker where none belongs. */
    memcpy(m, d, n);
    m[mid] = 0xff;
    m[mid + 1] = 0xd3;
    ck_assert_int_eq(decode_status(m, n, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* Garbage after EOI is ignored. */
    memcpy(m, d, n);
    memset(m + n, 0x42, 16);
    mg_image_free(decode_ok(m, n + 16, NULL));
    /* Only the SOI and a marker start. */
    ck_assert_int_eq(decode_status(d, 3, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* Tables only (everything before SOF, then EOI): no image. */
    size_t sof = jpeg_find_sof(d, n);
    ck_assert_uint_gt(sof, 0);
    memcpy(m, d, sof);
    m[sof] = 0xff;
    m[sof + 1] = 0xd9;
    ck_assert_int_eq(decode_status(m, sof + 2, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    free(m);
    free(d);
}
END_TEST

/* ---- caller pixels ----------------------------------------------------------- */

START_TEST(test_from_pixels) {
    static const int32_t formats[] = {MG_PIXEL_GRAY8, MG_PIXEL_GRAY16, MG_PIXEL_RGB8,
                                      MG_PIXEL_RGB16};
    static const size_t pads[] = {0, 1, 3, 64};
    char err[256];
    uint64_t rng = 7;
    for (size_t f = 0; f < 4; f++)
        for (size_t pi = 0; pi < 4; pi++) {
            const uint32_t w = 13, h = 6;
            uint32_t bpp = (formats[f] == MG_PIXEL_GRAY8 ? 1 : formats[f] == MG_PIXEL_GRAY16 ? 2
                            : formats[f] == MG_PIXEL_RGB8 ? 3 : 6);
            size_t row = (size_t)w * bpp;
            size_t stride = pads[pi] ? row + pads[pi] : 0;
            size_t real = stride ? stride : row;
            unsigned char *src = malloc(real * h);
            for (size_t i = 0; i < real * h; i++) src[i] = (unsigned char)tu_rand_u64(&rng);
            mg_image *img = NULL;
            ck_assert_int_eq(mg_image_from_pixels(&img, src, w, h, stride, formats[f], NULL,
                                                  err, sizeof err), MG_OK);
            mg_image_info info = info_of(img);
            ck_assert_uint_eq(info.width, w);
            ck_assert_uint_eq(info.height, h);
            ck_assert_int_eq(info.format, formats[f]);
            ck_assert_int_eq(info.source, MG_IMAGE_SRC_PIXELS);
            ck_assert_uint_eq(info.bits_stored, (bpp == 2 || bpp == 6) ? 16 : 8);
            size_t psize;
            unsigned char *px = pixels_of(img, &psize);
            ck_assert_uint_eq(psize, row * h);
            for (uint32_t y = 0; y < h; y++)
                ck_assert(memcmp(px + y * row, src + y * real, row) == 0);
            free(px);
            mg_image_free(img);
            free(src);
        }

    unsigned char buf[4096];
    memset(buf, 0x11, sizeof buf);
    mg_image *img = (mg_image *)(uintptr_t)0x1;
    /* Stride shorter than a row. */
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 10, 2, 29, MG_PIXEL_RGB8, NULL, err,
                                          sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_null(img);
    ck_assert_ptr_nonnull(strstr(err, "stride"));
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 10, 2, 19, MG_PIXEL_GRAY16, NULL, err,
                                          sizeof err), MG_E_INVALID_ARG);
    /* Exactly one row: fine; odd stride for 16-bit: fine (unaligned). */
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 10, 2, 30, MG_PIXEL_RGB8, NULL, err,
                                          sizeof err), MG_OK);
    mg_image_free(img);
    ck_assert_int_eq(mg_image_from_pixels(&img, buf + 1, 10, 3, 21, MG_PIXEL_GRAY16, NULL,
                                          err, sizeof err), MG_OK);
    mg_image_free(img);
    /* Empty. */
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 0, 2, 0, MG_PIXEL_GRAY8, NULL, err,
                                          sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 2, 0, 0, MG_PIXEL_GRAY8, NULL, err,
                                          sizeof err), MG_E_INVALID_ARG);
    /* Unknown formats. */
    const int32_t bad[] = {0, 5, -1, 1000};
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(mg_image_from_pixels(&img, buf, 2, 2, 0, bad[i], NULL, err,
                                              sizeof err), MG_E_INVALID_ARG);
    /* NULLs. */
    ck_assert_int_eq(mg_image_from_pixels(NULL, buf, 2, 2, 0, MG_PIXEL_GRAY8, NULL, err,
                                          sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_image_from_pixels(&img, NULL, 2, 2, 0, MG_PIXEL_GRAY8, NULL, err,
                                          sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_null(img);
    /* A stride that overflows the address space. */
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 2, 3, SIZE_MAX / 2, MG_PIXEL_GRAY8,
                                          NULL, err, sizeof err), MG_E_INVALID_ARG);
    /* Limits. */
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 70000, 1, 0, MG_PIXEL_GRAY8, NULL, err,
                                          sizeof err), MG_E_LIMIT);
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 1, 70000, 0, MG_PIXEL_GRAY8, NULL, err,
                                          sizeof err), MG_E_LIMIT);
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 65535, 65535, 0, MG_PIXEL_RGB16, NULL,
                                          err, sizeof err), MG_E_LIMIT);
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, UINT32_MAX, UINT32_MAX, 0,
                                          MG_PIXEL_RGB16, NULL, err, sizeof err), MG_E_LIMIT);
    mg_image_params p;
    mg_image_params_init(&p);
    p.max_pixels = 12;
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 4, 3, 0, MG_PIXEL_GRAY8, &p, err,
                                          sizeof err), MG_OK);
    mg_image_free(img);
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 13, 1, 0, MG_PIXEL_GRAY8, &p, err,
                                          sizeof err), MG_E_LIMIT);
    mg_image_params_init(&p);
    p.max_memory = 24;
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 4, 3, 0, MG_PIXEL_GRAY16, &p, err,
                                          sizeof err), MG_OK);
    mg_image_free(img);
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 4, 3, 0, MG_PIXEL_RGB8, &p, err,
                                          sizeof err), MG_E_LIMIT);
    ck_assert_ptr_null(img);
    /* err may be NULL. */
    ck_assert_int_eq(mg_image_from_pixels(&img, buf, 0, 0, 0, MG_PIXEL_GRAY8, NULL, NULL, 0),
                     MG_E_INVALID_ARG);
}
END_TEST

/* ---- size negotiation, info, misuse ------------------------------------------ */

START_TEST(test_copy_pixels) {
    unsigned char src[5 * 3 * 2];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)(i * 7 + 1);
    mg_image *img = NULL;
    ck_assert_int_eq(mg_image_from_pixels(&img, src, 5, 3, 0, MG_PIXEL_GRAY16, NULL, NULL, 0),
                     MG_OK);
    size_t need = 1234;
    ck_assert_int_eq(mg_image_copy_pixels(NULL, 0, &need, img), MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(need, sizeof src);
    unsigned char buf[64];
    memset(buf, 0xcc, sizeof buf);
    need = 0;
    ck_assert_int_eq(mg_image_copy_pixels(buf, sizeof src - 1, &need, img),
                     MG_E_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(need, sizeof src);
    ck_assert_uint_eq(buf[0], 0xcc); /* untouched */
    ck_assert_int_eq(mg_image_copy_pixels(buf, sizeof src, &need, img), MG_OK);
    ck_assert(memcmp(buf, src, sizeof src) == 0);
    memset(buf, 0xcc, sizeof buf);
    ck_assert_int_eq(mg_image_copy_pixels(buf, sizeof buf, NULL, img), MG_OK);
    ck_assert(memcmp(buf, src, sizeof src) == 0);
    ck_assert_uint_eq(buf[sizeof src], 0xcc); /* nothing past the pixels */
    /* A NULL buffer that claims to be big enough. */
    ck_assert_int_eq(mg_image_copy_pixels(NULL, sizeof buf, &need, img), MG_E_INVALID_ARG);
    ck_assert_uint_eq(need, sizeof src);
    mg_image_free(img);
}
END_TEST

START_TEST(test_info_struct_size) {
    unsigned char px[6] = {1, 2, 3, 4, 5, 6};
    mg_image *img = NULL;
    ck_assert_int_eq(mg_image_from_pixels(&img, px, 3, 2, 0, MG_PIXEL_GRAY8, NULL, NULL, 0),
                     MG_OK);
    mg_image_info info;
    /* struct_size 0 and smaller than the field itself. */
    memset(&info, 0, sizeof info);
    ck_assert_int_eq(mg_image_info_get(&info, img), MG_E_INVALID_ARG);
    info.struct_size = 3;
    ck_assert_int_eq(mg_image_info_get(&info, img), MG_E_INVALID_ARG);
    info.struct_size = 1u << 30;
    ck_assert_int_eq(mg_image_info_get(&info, img), MG_E_INVALID_ARG);
    /* A short, older struct: only width and height are written. */
    memset(&info, 0x5a, sizeof info);
    info.struct_size = (uint32_t)offsetof(mg_image_info, format);
    ck_assert_int_eq(mg_image_info_get(&info, img), MG_OK);
    ck_assert_uint_eq(info.struct_size, offsetof(mg_image_info, format));
    ck_assert_uint_eq(info.width, 3);
    ck_assert_uint_eq(info.height, 2);
    ck_assert_uint_eq((uint32_t)info.format, 0x5a5a5a5au);
    ck_assert_uint_eq((uint32_t)info.source, 0x5a5a5a5au);
    ck_assert_uint_eq(info.bits_stored, 0x5a5a5a5au);
    /* A size cutting a field in half leaves that field alone. */
    memset(&info, 0x5a, sizeof info);
    info.struct_size = (uint32_t)offsetof(mg_image_info, height) + 2;
    ck_assert_int_eq(mg_image_info_get(&info, img), MG_OK);
    ck_assert_uint_eq(info.width, 3);
    ck_assert_uint_eq(info.height, 0x5a5a5a5au);
    /* A newer, larger struct: known fields written, the tail untouched. */
    struct { mg_image_info i; uint32_t extra[4]; } big;
    memset(&big, 0x77, sizeof big);
    big.i.struct_size = sizeof big;
    ck_assert_int_eq(mg_image_info_get(&big.i, img), MG_OK);
    ck_assert_uint_eq(big.i.struct_size, sizeof big);
    ck_assert_uint_eq(big.i.bits_stored, 8);
    ck_assert_int_eq(big.i.source, MG_IMAGE_SRC_PIXELS);
    ck_assert_uint_eq(big.extra[0], 0x77777777u);
    ck_assert_int_eq(mg_image_info_get(NULL, img), MG_E_INVALID_ARG);
    mg_image_free(img);
}
END_TEST

START_TEST(test_misuse) {
    /* Objects of another type, or already dead: the first uint32 is the tag. */
    struct { uint32_t tag; uint32_t pad[31]; } fake;
    const uint32_t tags[] = {0, 0x12345678u, 0xdeadbeefu, 0x4d474d4fu /* model */};
    mg_image_info info;
    unsigned char buf[16];
    size_t need;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        memset(&fake, 0xab, sizeof fake);
        fake.tag = tags[i];
        const mg_image *img = (const mg_image *)(const void *)&fake;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        ck_assert_int_eq(mg_image_info_get(&info, img), MG_E_MISUSE);
        ck_assert_uint_eq(info.width, 0);
        need = 99;
        ck_assert_int_eq(mg_image_copy_pixels(buf, sizeof buf, &need, img), MG_E_MISUSE);
        ck_assert_uint_eq(need, 0);
        /* Freeing a foreign object is ignored, not a crash. */
        mg_image_free((mg_image *)(void *)&fake);
        ck_assert_uint_eq(fake.tag, tags[i]);
    }
    info.struct_size = sizeof info;
    ck_assert_int_eq(mg_image_info_get(&info, NULL), MG_E_MISUSE);
    ck_assert_int_eq(mg_image_info_get(NULL, NULL), MG_E_MISUSE);
    ck_assert_int_eq(mg_image_copy_pixels(buf, sizeof buf, NULL, NULL), MG_E_MISUSE);
    mg_image_free(NULL);
}
END_TEST

/* ---- parameters, limits, argument checks ------------------------------------- */

START_TEST(test_params) {
    mg_image_params p, d = MG_IMAGE_PARAMS_INIT;
    memset(&p, 0xee, sizeof p);
    mg_image_params_init(&p);
    ck_assert(memcmp(&p, &d, sizeof p) == 0);
    ck_assert_uint_eq(p.struct_size, sizeof p);
    ck_assert_uint_eq(p.max_pixels, (uint64_t)1 << 27);
    ck_assert_uint_eq(p.max_memory, (uint64_t)1 << 30);
    ck_assert_uint_eq(p.max_width, 65535);
    ck_assert_uint_eq(p.max_height, 65535);
    mg_image_params_init(NULL);

    size_t n;
    char err[256];
    unsigned char *png = asset("gray8.png", &n); /* 13 x 7 */
    /* Invalid struct_size values. */
    p.struct_size = 0;
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "struct_size"));
    p.struct_size = 2;
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_E_INVALID_ARG);
    p.struct_size = 1u << 20;
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_E_INVALID_ARG);
    /* Reserved flags. */
    mg_image_params_init(&p);
    p.flags = 1;
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_E_INVALID_ARG);
    /* A short struct: fields past struct_size are not read. */
    mg_image_params_init(&p);
    p.max_pixels = 5;
    p.struct_size = (uint32_t)offsetof(mg_image_params, max_pixels);
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_OK);
    p.struct_size = (uint32_t)offsetof(mg_image_params, max_memory);
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_E_LIMIT);
    p.struct_size = 4; /* just struct_size */
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_OK);
    /* Zeroed limits mean the defaults. */
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    ck_assert_int_eq(decode_status(png, n, &p, err, sizeof err), MG_OK);
    /* A newer, larger struct is accepted. */
    struct { mg_image_params p; uint64_t extra[4]; } big;
    memset(&big, 0, sizeof big);
    mg_image_params_init(&big.p);
    big.p.struct_size = sizeof big;
    ck_assert_int_eq(decode_status(png, n, &big.p, err, sizeof err), MG_OK);
    free(png);
}
END_TEST

START_TEST(test_limits) {
    static const struct { const char *file; uint32_t w, h, bpp; } cases[] = {
        {"gray8.png", 13, 7, 1}, {"rgb16.png", 7, 5, 6}, {"rgb420.jpg", 32, 24, 3},
        {"gray.jpg", 24, 16, 1}, {"rgb_prog.jpg", 32, 24, 3}, {"rgb8_adam7.png", 13, 11, 3},
    };
    char err[256];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n;
        unsigned char *d = asset(cases[k].file, &n);
        uint32_t w = cases[k].w, h = cases[k].h;
        mg_image_params p;
        /* Exactly at each limit: fine; one below: MG_E_LIMIT. */
        mg_image_params_init(&p);
        p.max_pixels = (uint64_t)w * h;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_OK);
        p.max_pixels--;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_E_LIMIT);
        ck_assert_ptr_nonnull(strstr(err, "limit"));
        mg_image_params_init(&p);
        p.max_width = w;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_OK);
        p.max_width = w - 1;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_E_LIMIT);
        mg_image_params_init(&p);
        p.max_height = h;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_OK);
        p.max_height = h - 1;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_E_LIMIT);
        mg_image_params_init(&p);
        p.max_pixels = 1;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_E_LIMIT);
        /* max_memory below the decoded size. */
        mg_image_params_init(&p);
        p.max_memory = (uint64_t)w * h * cases[k].bpp - 1;
        ck_assert_int_eq(decode_status(d, n, &p, err, sizeof err), MG_E_LIMIT);
        free(d);
    }
    /* A progressive JPEG needs its coefficient buffer (3072 bytes here) as
     * well as the 2304 decoded bytes; a baseline one does not. */
    size_t n;
    unsigned char *prog = asset("rgb_prog.jpg", &n);
    mg_image_params p;
    mg_image_params_init(&p);
    p.max_memory = 32 * 24 * 3;
    ck_assert_int_eq(decode_status(prog, n, &p, err, sizeof err), MG_E_LIMIT);
    p.max_memory = 8192;
    ck_assert_int_eq(decode_status(prog, n, &p, err, sizeof err), MG_OK);
    free(prog);
    unsigned char *base = asset("rgb420.jpg", &n);
    p.max_memory = 32 * 24 * 3;
    ck_assert_int_eq(decode_status(base, n, &p, err, sizeof err), MG_OK);
    free(base);
}
END_TEST

START_TEST(test_args_and_errors) {
    size_t n;
    unsigned char *d = asset("gray8.png", &n);
    char err[256];
    mg_image *img = (mg_image *)(uintptr_t)0x1;
    ck_assert_int_eq(mg_image_load_memory(NULL, d, n, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_image_load_memory(&img, NULL, n, NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_ptr_null(img);
    ck_assert_int_eq(mg_image_load_memory(&img, NULL, 0, NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    /* Zero-size buffer. */
    ck_assert_int_eq(decode_status(d, 0, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* err NULL / errlen 0 / tiny errlen: no overflow, NUL-terminated. */
    ck_assert_int_eq(decode_status(d, 5, NULL, NULL, 0), MG_E_IMAGE_FORMAT);
    char small[8];
    memset(small, 'x', sizeof small);
    ck_assert_int_eq(decode_status(d, 5, NULL, small, 0), MG_E_IMAGE_FORMAT);
    ck_assert_int_eq(small[0], 'x');
    ck_assert_int_eq(decode_status(d, 5, NULL, small, 1), MG_E_IMAGE_FORMAT);
    ck_assert_int_eq(small[0], '\0');
    ck_assert_int_eq(decode_status(d, 5, NULL, small, sizeof small), MG_E_IMAGE_FORMAT);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    /* Success clears err. */
    strcpy(err, "stale");
    ck_assert_int_eq(decode_status(d, n, NULL, err, sizeof err), MG_OK);
    ck_assert_str_eq(err, "");
    free(d);

    /* Not an image. */
    static const char text[] = "This is not an image, just text.";
    ck_assert_int_eq(decode_status(text, sizeof text, NULL, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "unrecognised"));
    const unsigned char ff[3] = {0xff, 0xd8, 0xff};
    ck_assert_int_eq(decode_status(ff, 1, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_int_eq(decode_status(ff, 2, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_int_eq(decode_status(ff, 3, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ck_assert_int_eq(decode_status(sig, 8, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_int_eq(decode_status(sig, 7, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    /* DICOM Part 10 (preamble + "DICM") with no Pixel Data: not an image. */
    unsigned char dcm[256];
    memset(dcm, 0, sizeof dcm);
    memcpy(dcm + 128, "DICM", 4);
    ck_assert_int_eq(decode_status(dcm, sizeof dcm, NULL, err, sizeof err), MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "DICOM"));
}
END_TEST

START_TEST(test_load_file) {
    char err[512];
    mg_image *img = NULL;
    ck_assert_int_eq(mg_image_load_file(&img, ASSET_DIR "rgb8.png", NULL, err, sizeof err),
                     MG_OK);
    mg_image_info info = info_of(img);
    ck_assert_uint_eq(info.width, 9);
    ck_assert_int_eq(info.format, MG_PIXEL_RGB8);
    mg_image_free(img);
    ck_assert_int_eq(mg_image_load_file(&img, ASSET_DIR "rgb_prog.jpg", NULL, err, sizeof err),
                     MG_OK);
    ck_assert_int_eq(info_of(img).source, MG_IMAGE_SRC_JPEG);
    mg_image_free(img);

    img = (mg_image *)(uintptr_t)0x1;
    ck_assert_int_eq(mg_image_load_file(&img, ASSET_DIR "no-such-file.png", NULL, err,
                                        sizeof err), MG_E_IO);
    ck_assert_ptr_null(img);
    ck_assert_ptr_nonnull(strstr(err, "no-such-file.png"));
    ck_assert_int_eq(mg_image_load_file(&img, ASSET_DIR, NULL, err, sizeof err), MG_E_IO);
    ck_assert_int_eq(mg_image_load_file(&img, NULL, NULL, err, sizeof err), MG_E_INVALID_ARG);
    ck_assert_int_eq(mg_image_load_file(NULL, ASSET_DIR "rgb8.png", NULL, err, sizeof err),
                     MG_E_INVALID_ARG);
    mg_image_params p;
    mg_image_params_init(&p);
    p.struct_size = 0;
    ck_assert_int_eq(mg_image_load_file(&img, ASSET_DIR "rgb8.png", &p, err, sizeof err),
                     MG_E_INVALID_ARG);
    /* Files bigger than max_memory are refused unread. */
    mg_image_params_init(&p);
    p.max_memory = 100;
    ck_assert_int_eq(mg_image_load_file(&img, ASSET_DIR "rgb420.jpg", &p, err, sizeof err),
                     MG_E_LIMIT);
    /* Empty and truncated files. */
    const char *empty = tu_tmp_path("empty.png");
    ck_assert_int_eq(tu_write_file(empty, "", 0), 0);
    ck_assert_int_eq(mg_image_load_file(&img, empty, NULL, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    size_t n;
    unsigned char *d = asset("rgb420.jpg", &n);
    const char *cut = tu_tmp_path("cut.jpg");
    ck_assert_int_eq(tu_write_file(cut, d, n / 2), 0);
    ck_assert_int_eq(mg_image_load_file(&img, cut, NULL, err, sizeof err), MG_E_IMAGE_FORMAT);
    ck_assert_ptr_null(img);
    remove(empty);
    remove(cut);
    free(d);
}
END_TEST

/* ---- corruption corpus --------------------------------------------------------- */

/* Decodes a mutated buffer: any status is fine, but a success must be a
 * consistent image, and nothing may crash or leak. */
static void decode_any(const unsigned char *d, size_t n) {
    mg_image *img = NULL;
    char err[128];
    mg_status st = mg_image_load_memory(&img, d, n, NULL, err, sizeof err);
    if (st == MG_OK) {
        mg_image_info info = info_of(img);
        size_t need = 0;
        ck_assert_int_eq(mg_image_copy_pixels(NULL, 0, &need, img), MG_E_BUFFER_TOO_SMALL);
        size_t bps = (info.format == MG_PIXEL_GRAY8 ? 1 : info.format == MG_PIXEL_GRAY16 ? 2
                      : info.format == MG_PIXEL_RGB8 ? 3 : 6);
        ck_assert_uint_eq(need, (size_t)info.width * info.height * bps);
        mg_image_free(img);
    } else {
        ck_assert_ptr_null(img);
        ck_assert(st == MG_E_IMAGE_FORMAT || st == MG_E_UNSUPPORTED || st == MG_E_LIMIT);
        ck_assert_uint_gt(strlen(err), 0);
    }
}

/* Every strict prefix of a file is truncated and must fail. */
START_TEST(test_truncated) {
    size_t n;
    const char *name = corpus_file(_i);
    unsigned char *d = asset(name, &n);
    size_t step = tu_under_valgrind() ? 1 + n / 48 : 1;
    for (size_t len = 0; len < n; len += step) {
        /* A private copy of exactly len bytes, so that a read past the end
         * is caught by ASan/valgrind. */
        unsigned char *m = malloc(len ? len : 1);
        memcpy(m, d, len);
        char err[128];
        mg_status st = decode_status(m, len, NULL, err, sizeof err);
        ck_assert_msg(st == MG_E_IMAGE_FORMAT || (st == MG_E_UNSUPPORTED && !strcmp(name, "cmyk.jpg")),
                      "%s cut at %zu/%zu: status %d", name, len, n, (int)st);
        free(m);
    }
    free(d);
}
END_TEST

START_TEST(test_bitflips) {
    size_t n;
    const char *name = corpus_file(_i);
    unsigned char *d = asset(name, &n);
    unsigned char *m = malloc(n);
    int is_png = n > 8 && d[0] == 0x89;
    size_t step = tu_under_valgrind() ? 1 + n / 48 : 1;
    static const unsigned char masks[] = {0x01, 0x80, 0xff, 0x10};
    size_t nmasks = tu_under_valgrind() ? 2 : 4;
    for (size_t pos = 0; pos < n; pos += step)
        for (size_t k = 0; k < nmasks; k++) {
            memcpy(m, d, n);
            m[pos] ^= masks[k];
            decode_any(m, n);
            if (is_png && pos >= 8) { /* CRC repaired: reaches the parsers */
                png_fix_crcs(m, n);
                decode_any(m, n);
            }
        }
    /* Random multi-byte mutations. */
    uint64_t rng = 0x1234 + (uint64_t)_i;
    int iters = tu_under_valgrind() ? 40 : 400;
    for (int it = 0; it < iters; it++) {
        memcpy(m, d, n);
        int flips = 1 + (int)(tu_rand_u64(&rng) % 8);
        for (int f = 0; f < flips; f++)
            m[tu_rand_u64(&rng) % n] = (unsigned char)tu_rand_u64(&rng);
        if (is_png) png_fix_crcs(m, n);
        decode_any(m, n);
    }
    free(m);
    free(d);
}
END_TEST

/* ---- real data ----------------------------------------------------------------- */

/* The NIH ChestX-ray14 samples in the shared data tree (skipped when absent),
 * checked against Pillow's decode (pil_nih.txt, from make_images.py). */
START_TEST(test_nih_samples) {
    FILE *f = fopen(ASSET_DIR "pil_nih.txt", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int seen = 0, checked = 0;
    while (fgets(line, sizeof line, f)) {
        char name[256], mode[8], rel[320];
        unsigned w, h, fnv;
        unsigned long long sum;
        if (line[0] == '#') continue;
        ck_assert_int_eq(sscanf(line, "%255s %u %u %7s %llu %x", name, &w, &h, mode, &sum, &fnv),
                         6);
        seen++;
        if (tu_under_valgrind() && checked >= 1) continue;
        snprintf(rel, sizeof rel, "nih_cxr14_samples/%s", name);
        const char *path = tu_shared_file(rel);
        if (!path) {
            fprintf(stderr, "check_image: %s absent, skipped\n", rel);
            continue;
        }
        mg_image *img = NULL;
        char err[256];
        ck_assert_msg(mg_image_load_file(&img, path, NULL, err, sizeof err) == MG_OK, "%s: %s",
                      path, err);
        mg_image_info info = info_of(img);
        ck_assert_uint_eq(info.width, w);
        ck_assert_uint_eq(info.height, h);
        ck_assert_str_eq(mode, "L");
        ck_assert_int_eq(info.format, MG_PIXEL_GRAY8);
        ck_assert_int_eq(info.source, MG_IMAGE_SRC_PNG);
        ck_assert_uint_eq(info.bits_stored, 8);
        size_t psize;
        unsigned char *px = pixels_of(img, &psize);
        unsigned long long s = 0;
        for (size_t i = 0; i < psize; i++) s += px[i];
        ck_assert_uint_eq(s, sum);
        ck_assert_uint_eq(fnv1a32(px, psize), fnv);
        free(px);
        mg_image_free(img);
        checked++;
    }
    fclose(f);
    ck_assert_int_eq(seen, 4);
}
END_TEST

/* ---- threads ------------------------------------------------------------------- */

typedef struct thread_job {
    const unsigned char *data;
    size_t size;
    uint32_t want_hash;
    int iters, failures;
} thread_job;

static void *decode_thread(void *arg) {
    thread_job *j = arg;
    for (int i = 0; i < j->iters; i++) {
        mg_image *img = NULL;
        if (mg_image_load_memory(&img, j->data, j->size, NULL, NULL, 0) != MG_OK) {
            j->failures++;
            continue;
        }
        size_t need = 0;
        mg_image_copy_pixels(NULL, 0, &need, img);
        unsigned char *px = malloc(need);
        if (!px || mg_image_copy_pixels(px, need, NULL, img) != MG_OK ||
            fnv1a32(px, need) != j->want_hash)
            j->failures++;
        free(px);
        mg_image_free(img);
    }
    return NULL;
}

START_TEST(test_threads) {
    const char *files[2] = {"rgb_prog.jpg", "rgb8_adam7.png"};
    unsigned char *data[2];
    size_t size[2];
    uint32_t hash[2];
    for (int k = 0; k < 2; k++) {
        data[k] = asset(files[k], &size[k]);
        mg_image *img = decode_ok(data[k], size[k], NULL);
        size_t ps;
        unsigned char *px = pixels_of(img, &ps);
        hash[k] = fnv1a32(px, ps);
        free(px);
        mg_image_free(img);
    }
    enum { NT = 4 };
    pthread_t th[NT];
    thread_job jobs[NT];
    for (int t = 0; t < NT; t++) {
        jobs[t] = (thread_job){data[t % 2], size[t % 2], hash[t % 2],
                               tu_under_valgrind() ? 3 : 50, 0};
        ck_assert_int_eq(pthread_create(&th[t], NULL, decode_thread, &jobs[t]), 0);
    }
    for (int t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        ck_assert_int_eq(jobs[t].failures, 0);
    }
    free(data[0]);
    free(data[1]);
}
END_TEST

static Suite *image_suite(void) {
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_png_assets, 0, N_PNG_CASES);
    tcase_add_test(tc, test_png_roundtrip);
    tcase_add_test(tc, test_png_strictness);
    tcase_add_test(tc, test_png_huge_header);
    tcase_add_test(tc, test_jpeg_assets);
    tcase_add_test(tc, test_jpeg_variants);
    tcase_add_test(tc, test_jpeg_unsupported);
    tcase_add_test(tc, test_jpeg_huge_header);
    tcase_add_test(tc, test_jpeg_scan_limit);
    tcase_add_test(tc, test_jpeg_corrupt);
    tcase_add_test(tc, test_nih_samples);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_from_pixels);
    tcase_add_test(tc, test_copy_pixels);
    tcase_add_test(tc, test_info_struct_size);
    tcase_add_test(tc, test_misuse);
    tcase_add_test(tc, test_params);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_args_and_errors);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("corrupt");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_truncated, 0, N_CORPUS);
    tcase_add_loop_test(tc, test_bitflips, 0, N_CORPUS);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(image_suite()); }
