/* check_dicom.c - the DICOM reader: every file of the shared DICOM corpus
 * against pydicom (tests/dicom/reference.py) and dcmtk (dcmj2pnm/dcm2pnm),
 * hand-built files with hand-computed expectations (windowing, MONOCHROME1,
 * masking, signed samples, planar configuration, RLE, raw offsets), the
 * parameter ABI, and a hostile corpus (every prefix of small files, seeded
 * byte flips, crafted lies) that must fail cleanly. Compressed syntaxes
 * (lossless JPEG, JPEG-LS, JPEG 2000): the corpus's files and files
 * compressed here by dcmtk, GDCM and OpenJPEG's tools against those tools'
 * decompression, hand-encoded lossless JPEG streams (also against dcmtk),
 * crafted headers, and every prefix and seeded flips of compressed frames.
 *
 * Expectations come from outside the reader: pydicom's pixel_array (with
 * the modality rescale done in Python), dcmtk's rendering with the same
 * window, dcmtk's and GDCM's decompression read back through the
 * uncompressed path, or values worked out by hand below. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <limits.h>
#include <zlib.h>

#include <jpeglib.h>

#include "medgemini.h"
#include "testutil.h"

/* ---- helpers --------------------------------------------------------------- */

static mg_image_info info_of(const mg_image *img) {
    mg_image_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(mg_image_info_get(&info, img), MG_OK);
    return info;
}

static unsigned char *pixels_of(const mg_image *img, size_t *size) {
    size_t need = 0;
    mg_image_copy_pixels(NULL, 0, &need, img);
    unsigned char *p = malloc(need ? need : 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(mg_image_copy_pixels(p, need, NULL, img), MG_OK);
    *size = need;
    return p;
}

static mg_status load_mem(mg_image **img, const void *d, size_t n, int32_t window,
                          uint32_t frame, char *err, size_t errlen) {
    mg_image_params p;
    mg_image_params_init(&p);
    p.window = window;
    p.frame = frame;
    return mg_image_load_memory(img, d, n, &p, err, errlen);
}

/* ---- a tiny DICOM writer (explicit VR little endian) ----------------------- */

typedef struct dbuf {
    unsigned char *d;
    size_t n, cap;
} dbuf;

static void put(dbuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->d = realloc(b->d, b->cap);
        ck_assert_ptr_nonnull(b->d);
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void put16(dbuf *b, unsigned v) {
    unsigned char c[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(b, c, 2);
}
static void put32(dbuf *b, uint32_t v) {
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                          (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(b, c, 4);
}
/* Element header; long-form VRs get the reserved field and 32-bit length. */
static void elh(dbuf *b, unsigned g, unsigned e, const char *vr, uint32_t len) {
    put16(b, g);
    put16(b, e);
    put(b, vr, 2);
    if (!strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "SQ") ||
        !strcmp(vr, "UN") || !strcmp(vr, "UT")) {
        put16(b, 0);
        put32(b, len);
    } else {
        put16(b, len);
    }
}
static void el_str(dbuf *b, unsigned g, unsigned e, const char *vr, const char *s) {
    size_t n = strlen(s);
    elh(b, g, e, vr, (uint32_t)(n + (n & 1)));
    put(b, s, n);
    if (n & 1) put(b, !strcmp(vr, "UI") ? "\0" : " ", 1);
}
static void el_us(dbuf *b, unsigned g, unsigned e, unsigned v) {
    elh(b, g, e, "US", 2);
    put16(b, v);
}
/* Preamble, DICM and a meta group naming the transfer syntax. */
static void header(dbuf *b, const char *ts) {
    unsigned char pre[128] = {0};
    put(b, pre, 128);
    put(b, "DICM", 4);
    el_str(b, 0x0002, 0x0010, "UI", ts);
}
#define TS_EXPLICIT "1.2.840.10008.1.2.1"
#define TS_RLE "1.2.840.10008.1.2.5"

typedef struct imgdesc {
    unsigned rows, cols, spp, bits_alloc, bits_stored, high_bit, pixel_rep, planar;
    const char *photometric, *frames, *slope, *intercept, *wc, *ww;
} imgdesc;

static void image_attrs(dbuf *b, const imgdesc *im) {
    el_str(b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7");
    el_us(b, 0x0028, 0x0002, im->spp);
    el_str(b, 0x0028, 0x0004, "CS", im->photometric);
    if (im->spp > 1) el_us(b, 0x0028, 0x0006, im->planar);
    if (im->frames) el_str(b, 0x0028, 0x0008, "IS", im->frames);
    el_us(b, 0x0028, 0x0010, im->rows);
    el_us(b, 0x0028, 0x0011, im->cols);
    el_us(b, 0x0028, 0x0100, im->bits_alloc);
    el_us(b, 0x0028, 0x0101, im->bits_stored);
    el_us(b, 0x0028, 0x0102, im->high_bit);
    el_us(b, 0x0028, 0x0103, im->pixel_rep);
    if (im->wc) el_str(b, 0x0028, 0x1050, "DS", im->wc);
    if (im->ww) el_str(b, 0x0028, 0x1051, "DS", im->ww);
    if (im->intercept) el_str(b, 0x0028, 0x1052, "DS", im->intercept);
    if (im->slope) el_str(b, 0x0028, 0x1053, "DS", im->slope);
}

/* A native explicit VR LE file with the given pixel bytes. */
static dbuf native_file(const imgdesc *im, const void *px, size_t n) {
    dbuf b = {0};
    header(&b, TS_EXPLICIT);
    image_attrs(&b, im);
    elh(&b, 0x7FE0, 0x0010, im->bits_alloc > 8 ? "OW" : "OB", (uint32_t)(n + (n & 1)));
    put(&b, px, n);
    if (n & 1) put(&b, "\0", 1);
    return b;
}

/* Encapsulated Pixel Data: BOT (n_bot entries given) then fragments. */
static void encapsulated(dbuf *b, const uint32_t *bot, size_t n_bot,
                         const unsigned char *const *frag, const size_t *flen,
                         size_t n_frag) {
    elh(b, 0x7FE0, 0x0010, "OB", 0xFFFFFFFFu);
    put16(b, 0xFFFE); put16(b, 0xE000); put32(b, (uint32_t)(4 * n_bot));
    for (size_t i = 0; i < n_bot; i++) put32(b, bot[i]);
    for (size_t i = 0; i < n_frag; i++) {
        put16(b, 0xFFFE); put16(b, 0xE000); put32(b, (uint32_t)flen[i]);
        put(b, frag[i], flen[i]);
    }
    put16(b, 0xFFFE); put16(b, 0xE0DD); put32(b, 0);
}

/* ---- hand-computed expectations ------------------------------------------- */

/* PS3.3 C.11.2.1.2.1 LINEAR, worked by hand for c=100, w=51:
 * x <= 100-0.5-25 = 74.5 -> 0; x > 124.5 -> 255;
 * else ((x-99.5)/50 + 0.5)*255. */
START_TEST(test_window_by_hand) {
    uint16_t px[6] = {74, 75, 100, 124, 125, 4000};
    /* truncated, as dcmtk does: 2.55 -> 2, 130.05 -> 130, 252.45 -> 252 */
    const uint8_t want[6] = {0, 2, 130, 252, 255, 255};
    imgdesc im = {1, 6, 1, 16, 12, 11, 0, 0, "MONOCHROME2", NULL, NULL, NULL,
                  "100", "51"};
    dbuf b = native_file(&im, px, sizeof px);
    char err[256];
    mg_image *img;
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err), MG_OK);
    mg_image_info in = info_of(img);
    ck_assert_int_eq(in.format, MG_PIXEL_GRAY8);
    ck_assert_int_eq(in.source, MG_IMAGE_SRC_DICOM);
    ck_assert_int_eq(in.window, MG_WINDOW_FILE);
    ck_assert(in.window_center == 100 && in.window_width == 51);
    ck_assert_uint_eq(in.bits_stored, 12);
    ck_assert_uint_eq(in.bits_allocated, 16);
    size_t n;
    unsigned char *o = pixels_of(img, &n);
    ck_assert_uint_eq(n, 6);
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(o[i], want[i]);
    free(o);
    ck_assert_str_eq(mg_image_get_string(img, "photometric"), "MONOCHROME2");
    ck_assert_str_eq(mg_image_get_string(img, "transfer_syntax"), "Explicit VR Little Endian");
    ck_assert_str_eq(mg_image_get_string(img, "transfer_syntax_uid"), TS_EXPLICIT);
    ck_assert_ptr_null(mg_image_get_string(img, "no such key"));
    ck_assert_ptr_null(mg_image_get_string(img, "modality")); /* absent */
    ck_assert_ptr_null(mg_image_get_string(NULL, "photometric"));
    mg_image_free(img);

    /* High Bit 11 with junk in bits 12..15: masked away (4000 = 0xFA0). */
    uint16_t junk[6];
    for (int i = 0; i < 6; i++) junk[i] = (uint16_t)(px[i] | 0xF000);
    dbuf b2 = native_file(&im, junk, sizeof junk);
    ck_assert_int_eq(load_mem(&img, b2.d, b2.n, MG_WINDOW_FILE, 0, err, sizeof err), MG_OK);
    o = pixels_of(img, &n);
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(o[i], want[i]);
    free(o);
    mg_image_free(img);

    /* Explicit window overrides the file's: c=2037.5 w=3928 puts 74 at 0
     * and 4000 at the top: 74 > 2037-1963.5 = 73.5 lies inside, near 0. */
    mg_image_params p;
    mg_image_params_init(&p);
    p.window = MG_WINDOW_EXPLICIT;
    p.window_center = 2037.5;
    p.window_width = 3928;
    ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err), MG_OK);
    o = pixels_of(img, &n);
    /* ((74-2037)/3927+.5)*255 = 0.0649 -> 0; 4000: (1963/3927+.5)*255=254.97 */
    ck_assert_uint_eq(o[0], 0);
    ck_assert_uint_eq(o[5], 254); /* 254.97, truncated */
    ck_assert_uint_eq(o[2], (unsigned)floor(((100 - 2037.0) / 3927 + 0.5) * 255));
    ck_assert_int_eq(info_of(img).window, MG_WINDOW_EXPLICIT);
    free(o);
    mg_image_free(img);

    /* Automatic: min 74 -> 0, max 4000 -> 255. */
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_AUTO, 0, err, sizeof err), MG_OK);
    o = pixels_of(img, &n);
    ck_assert_uint_eq(o[0], 0);
    ck_assert_uint_eq(o[5], 255);
    in = info_of(img);
    ck_assert_int_eq(in.window, MG_WINDOW_AUTO);
    ck_assert(in.window_width == 4000 - 74 + 1);
    free(o);
    mg_image_free(img);
    free(b.d);
    free(b2.d);
}
END_TEST

/* Signed 12-bit, MONOCHROME1, rescale: raw offsets and inversion. */
START_TEST(test_signed_mono1_raw) {
    /* 12-bit two's complement in 16 bits: -2048, -1, 0, 2047. */
    uint16_t px[4] = {0x800, 0xFFF, 0x000, 0x7FF};
    imgdesc im = {2, 2, 1, 16, 12, 11, 1, 0, "MONOCHROME1", NULL, "2", "-1000",
                  NULL, NULL};
    dbuf b = native_file(&im, px, sizeof px);
    char err[256];
    mg_image *img;
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_NONE, 0, err, sizeof err), MG_OK);
    mg_image_info in = info_of(img);
    /* values 2*s-1000: -5096, -1002, -1000, 3094; header range -5096..3094
     * does not fit 0..65535 but spans < 65536: offset = -5096. */
    ck_assert_int_eq(in.format, MG_PIXEL_GRAY16);
    ck_assert_int_eq(in.raw_offset, -5096);
    ck_assert_int_eq(in.window, MG_WINDOW_NONE);
    ck_assert_int_eq(in.pixel_signed, 1);
    ck_assert(in.rescale_slope == 2 && in.rescale_intercept == -1000);
    size_t n;
    uint16_t *o = (uint16_t *)pixels_of(img, &n);
    const int want[4] = {-5096, -1002, -1000, 3094};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(o[i] + in.raw_offset, want[i]);
    free(o);
    mg_image_free(img);
    /* Windowed: auto window over -5096..3094, then inverted. */
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err), MG_OK);
    unsigned char *g = pixels_of(img, &n);
    ck_assert_uint_eq(g[0], 255); /* minimum, inverted */
    ck_assert_uint_eq(g[3], 0);
    /* -1000: ((-1000 - (c-0.5))/(w-1)+0.5)*255, c-0.5 = -5096+4095, w-1 = 8190 */
    double y = ((-1000.0 - (-5096 + 4095.0)) / 8190 + 0.5) * 255;
    ck_assert_uint_eq(g[2], (unsigned)floor(255 - y)); /* inverted, then truncated */
    free(g);
    mg_image_free(img);
    free(b.d);

    /* Unsigned 8-bit without rescale: raw is GRAY8, offset 0. */
    uint8_t p8[4] = {0, 1, 254, 255};
    imgdesc i8 = {2, 2, 1, 8, 8, 7, 0, 0, "MONOCHROME2", NULL, NULL, NULL, NULL, NULL};
    dbuf b8 = native_file(&i8, p8, 4);
    ck_assert_int_eq(load_mem(&img, b8.d, b8.n, MG_WINDOW_NONE, 0, err, sizeof err), MG_OK);
    in = info_of(img);
    ck_assert_int_eq(in.format, MG_PIXEL_GRAY8);
    ck_assert_int_eq(in.raw_offset, 0);
    unsigned char *q = pixels_of(img, &n);
    ck_assert_int_eq(memcmp(q, p8, 4), 0);
    free(q);
    mg_image_free(img);
    free(b8.d);

    /* An intercept no 32-bit offset can carry: refused in raw mode only. */
    imgdesc far = {2, 2, 1, 8, 8, 7, 0, 0, "MONOCHROME2", NULL, NULL, "-1e12", NULL, NULL};
    dbuf bf = native_file(&far, p8, 4);
    ck_assert_int_eq(load_mem(&img, bf.d, bf.n, MG_WINDOW_NONE, 0, err, sizeof err),
                     MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "raw offset"));
    ck_assert_int_eq(load_mem(&img, bf.d, bf.n, MG_WINDOW_FILE, 0, err, sizeof err), MG_OK);
    mg_image_free(img);
    free(bf.d);
}
END_TEST

/* Planar configuration 1, multi-frame selection, frame out of range. */
START_TEST(test_planar_frames) {
    /* 2 frames of 1x2 RGB, planar: frame k has R=(10k+1,10k+2) G=.. B=.. */
    uint8_t px[12];
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 3; c++)
            for (int x = 0; x < 2; x++) px[k * 6 + c * 2 + x] = (uint8_t)(100 * c + 10 * k + x + 1);
    imgdesc im = {1, 2, 3, 8, 8, 7, 0, 1, "RGB", "2", NULL, NULL, NULL, NULL};
    dbuf b = native_file(&im, px, sizeof px);
    char err[256];
    mg_image *img;
    for (uint32_t k = 0; k < 2; k++) {
        ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, k, err, sizeof err), MG_OK);
        mg_image_info in = info_of(img);
        ck_assert_int_eq(in.format, MG_PIXEL_RGB8);
        ck_assert_uint_eq(in.n_frames, 2);
        ck_assert_uint_eq(in.frame, k);
        size_t n;
        unsigned char *o = pixels_of(img, &n);
        ck_assert_uint_eq(n, 6);
        for (int x = 0; x < 2; x++)
            for (int c = 0; c < 3; c++)
                ck_assert_uint_eq(o[x * 3 + c], 100 * c + 10 * k + x + 1);
        free(o);
        mg_image_free(img);
    }
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 2, err, sizeof err),
                     MG_E_INVALID_ARG);
    ck_assert_ptr_null(img);
    ck_assert_ptr_nonnull(strstr(err, "frame 2"));
    ck_assert_ptr_nonnull(strstr(err, "2 frames"));
    free(b.d);
}
END_TEST

/* PackBits as PS3.5 G.3.1 describes it, written by hand. */
START_TEST(test_rle_by_hand) {
    /* 2x3 16-bit grey: values 0x0102 0x0102 0x0102 0xA0B0 0x00FF 0x1234.
     * MSB plane: 01 01 01 A0 00 12 -> run of 3 x 01 (-2,01), literal 3
     * (02, A0 00 12). LSB plane: 02 02 02 B0 FF 34 -> (-2,02), (2,B0 FF 34). */
    const unsigned char seg0[] = {0xFE, 0x01, 0x02, 0xA0, 0x00, 0x12};
    const unsigned char seg1[] = {0xFE, 0x02, 0x02, 0xB0, 0xFF, 0x34};
    unsigned char frame[64 + 12];
    memset(frame, 0, sizeof frame);
    frame[0] = 2;
    frame[4] = 64;
    frame[8] = 64 + 6;
    memcpy(frame + 64, seg0, 6);
    memcpy(frame + 70, seg1, 6);
    imgdesc im = {2, 3, 1, 16, 16, 15, 0, 0, "MONOCHROME2", NULL, NULL, NULL, NULL, NULL};
    dbuf b = {0};
    header(&b, TS_RLE);
    image_attrs(&b, &im);
    const unsigned char *fr[1] = {frame};
    size_t fl[1] = {sizeof frame};
    encapsulated(&b, NULL, 0, fr, fl, 1);
    char err[256];
    mg_image *img;
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_NONE, 0, err, sizeof err), MG_OK);
    size_t n;
    uint16_t *o = (uint16_t *)pixels_of(img, &n);
    const uint16_t want[6] = {0x0102, 0x0102, 0x0102, 0xA0B0, 0x00FF, 0x1234};
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(o[i], want[i]);
    free(o);
    ck_assert_str_eq(mg_image_get_string(img, "transfer_syntax"), "RLE Lossless");
    mg_image_free(img);

    /* Hostile headers: each must fail with a message, never read outside. */
    static const struct { uint32_t nseg, off0, off1; } bad[] = {
        {0, 64, 70}, {16, 64, 70}, {1, 64, 70}, {2, 63, 70}, {2, 64, 200},
        {2, 70, 64}, {2, 0xFFFFFFF0u, 70}, {2, 64, 76}, {3, 64, 70},
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        unsigned char f2[sizeof frame];
        memcpy(f2, frame, sizeof frame);
        memset(f2, 0, 64);
        f2[0] = (unsigned char)bad[t].nseg;
        for (int k = 0; k < 4; k++) {
            f2[4 + k] = (unsigned char)(bad[t].off0 >> (8 * k));
            f2[8 + k] = (unsigned char)(bad[t].off1 >> (8 * k));
        }
        dbuf c = {0};
        header(&c, TS_RLE);
        image_attrs(&c, &im);
        const unsigned char *fr2[1] = {f2};
        encapsulated(&c, NULL, 0, fr2, fl, 1);
        ck_assert_int_eq(load_mem(&img, c.d, c.n, MG_WINDOW_NONE, 0, err, sizeof err),
                         MG_E_IMAGE_FORMAT);
        ck_assert_ptr_nonnull(strstr(err, "RLE"));
        free(c.d);
    }
    free(b.d);
}
END_TEST

/* Crafted lies: lengths, nesting, dimensions, fragments, deflate bombs. */
START_TEST(test_crafted_hostile) {
    char err[256];
    mg_image *img;

    /* Sequences nested 100 deep (undefined lengths). */
    dbuf b = {0};
    header(&b, TS_EXPLICIT);
    for (int i = 0; i < 100; i++) {
        elh(&b, 0x0009, 0x1010, "SQ", 0xFFFFFFFFu);
        put16(&b, 0xFFFE); put16(&b, 0xE000); put32(&b, 0xFFFFFFFFu);
    }
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "nested"));
    free(b.d);

    /* Absurd dimensions: refused by the pixel limit before any allocation. */
    imgdesc huge = {65535, 65535, 1, 16, 16, 15, 0, 0, "MONOCHROME2", "4294967295",
                    NULL, NULL, NULL, NULL};
    uint16_t two[2] = {1, 2};
    b = native_file(&huge, two, sizeof two);
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err), MG_E_LIMIT);
    free(b.d);
    /* rows*cols*frames*spp*bits overflows 64 bits: a clear format error. */
    imgdesc ovf = {8192, 8192, 3, 32, 32, 31, 0, 0, "RGB", "4294967295",
                   NULL, NULL, NULL, NULL};
    b = native_file(&ovf, two, sizeof two);
    mg_image_params p;
    mg_image_params_init(&p);
    p.max_memory = (uint64_t)1 << 40;
    p.max_pixels = (uint64_t)1 << 30;
    ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "Pixel Data has"));
    free(b.d);
    /* A frame count that is not a number. */
    imgdesc badnf = {2, 2, 1, 8, 8, 7, 0, 0, "MONOCHROME2", "1A", NULL, NULL, NULL, NULL};
    b = native_file(&badnf, two, 4);
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "Number of Frames"));
    free(b.d);

    /* Element length past the end. */
    b = (dbuf){0};
    header(&b, TS_EXPLICIT);
    elh(&b, 0x0010, 0x0010, "UT", 0x7FFFFFF0u);
    put(&b, "abc", 3);
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "claims"));
    free(b.d);

    /* Fragment length lying, and a Basic Offset Table pointing nowhere. */
    imgdesc im = {1, 1, 1, 8, 8, 7, 0, 0, "MONOCHROME2", "2", NULL, NULL, NULL, NULL};
    b = (dbuf){0};
    header(&b, "1.2.840.10008.1.2.4.50");
    image_attrs(&b, &im);
    elh(&b, 0x7FE0, 0x0010, "OB", 0xFFFFFFFFu);
    put16(&b, 0xFFFE); put16(&b, 0xE000); put32(&b, 0);
    put16(&b, 0xFFFE); put16(&b, 0xE000); put32(&b, 1000000);
    put(&b, "\xFF\xD8\xFF", 3);
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "fragment"));
    free(b.d);
    const unsigned char f1[4] = {0xFF, 0xD8, 0xFF, 0xD9};
    const unsigned char *fr[2] = {f1, f1};
    size_t fl[2] = {4, 4};
    uint32_t bot[2] = {0, 7}; /* 7 is not a fragment start (12 is) */
    b = (dbuf){0};
    header(&b, "1.2.840.10008.1.2.4.50");
    image_attrs(&b, &im);
    encapsulated(&b, bot, 2, fr, fl, 2);
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 1, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "Offset Table"));
    free(b.d);

    /* Deflate bomb: 64 MiB of zero elements from a few KiB, 1 MiB allowed. */
    {
        size_t raw_n = (size_t)64 << 20;
        unsigned char *raw = calloc(raw_n, 1);
        ck_assert_ptr_nonnull(raw);
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        ck_assert_int_eq(deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
        size_t cap = deflateBound(&zs, raw_n);
        unsigned char *z = malloc(cap);
        zs.next_in = raw;
        zs.avail_in = (uInt)raw_n;
        zs.next_out = z;
        zs.avail_out = (uInt)cap;
        ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
        size_t zn = cap - zs.avail_out;
        deflateEnd(&zs);
        free(raw);
        b = (dbuf){0};
        header(&b, "1.2.840.10008.1.2.1.99");
        put(&b, z, zn);
        free(z);
        mg_image_params_init(&p);
        p.max_memory = 1 << 20;
        ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err),
                         MG_E_LIMIT);
        ck_assert_ptr_nonnull(strstr(err, "deflated"));
        free(b.d);
    }

    /* Unsupported and unknown transfer syntaxes are named. */
    b = (dbuf){0};
    header(&b, "1.2.840.10008.1.2.4.201");
    image_attrs(&b, &im);
    encapsulated(&b, NULL, 0, fr, fl, 2);
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "High-Throughput JPEG 2000"));
    ck_assert_ptr_nonnull(strstr(err, "1.2.840.10008.1.2.4.201"));
    free(b.d);
    /* A supported codec given a frame that is no stream of its kind. */
    b = (dbuf){0};
    header(&b, "1.2.840.10008.1.2.4.80");
    image_attrs(&b, &im);
    encapsulated(&b, NULL, 0, fr, fl, 2);
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_IMAGE_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "JPEG-LS"));
    free(b.d);
    b = (dbuf){0};
    header(&b, "1.2.3.4.5.6");
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "1.2.3.4.5.6"));
    free(b.d);
    /* Not an image: a dataset without Pixel Data. */
    b = (dbuf){0};
    header(&b, TS_EXPLICIT);
    el_str(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.481.5");
    ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_FILE, 0, err, sizeof err),
                     MG_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "RT Plan"));
    free(b.d);
}
END_TEST

/* Parameters: struct_size of the pre-DICOM struct, bad window values,
 * and the info defaults of non-DICOM images. */
START_TEST(test_params_abi) {
    uint16_t px[4] = {0, 10, 20, 30};
    imgdesc im = {2, 2, 1, 16, 16, 15, 0, 0, "MONOCHROME2", "1", NULL, NULL, NULL, NULL};
    dbuf b = native_file(&im, px, sizeof px);
    char err[256];
    mg_image *img;
    /* An old caller: struct ends before `frame`; garbage after it is not
     * read, so the defaults (frame 0, file window) apply. */
    mg_image_params p;
    memset(&p, 0x5A, sizeof p);
    mg_image_params_init(&p);
    p.struct_size = (uint32_t)offsetof(mg_image_params, frame);
    p.frame = 77;
    p.window = 1234;
    ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err), MG_OK);
    mg_image_info in = info_of(img);
    ck_assert_uint_eq(in.frame, 0);
    ck_assert_int_eq(in.window, MG_WINDOW_AUTO);
    mg_image_free(img);
    /* An old info struct: fields past its size stay untouched. */
    mg_image_info old;
    memset(&old, 0x77, sizeof old);
    old.struct_size = (uint32_t)offsetof(mg_image_info, n_frames);
    ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, NULL, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_image_info_get(&old, img), MG_OK);
    ck_assert_uint_eq(old.width, 2);
    ck_assert_uint_eq(old.n_frames, 0x77777777u);
    mg_image_free(img);

    mg_image_params_init(&p);
    p.window = 7;
    ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err), MG_E_INVALID_ARG);
    p.window = MG_WINDOW_EXPLICIT;
    p.window_center = 10;
    p.window_width = 0.5;
    ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err), MG_E_INVALID_ARG);
    p.window_width = NAN;
    ck_assert_int_eq(mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err), MG_E_INVALID_ARG);
    free(b.d);

    /* Caller pixels report the neutral DICOM fields. */
    const uint8_t g[4] = {1, 2, 3, 4};
    ck_assert_int_eq(mg_image_from_pixels(&img, g, 2, 2, 0, MG_PIXEL_GRAY8, NULL, err, sizeof err), MG_OK);
    in = info_of(img);
    ck_assert_uint_eq(in.n_frames, 1);
    ck_assert(in.rescale_slope == 1 && in.rescale_intercept == 0);
    ck_assert_int_eq(in.window, MG_WINDOW_NONE);
    ck_assert_uint_eq(in.bits_allocated, 8);
    ck_assert_str_eq(mg_image_get_string(img, "photometric"), "MONOCHROME2");
    ck_assert_ptr_null(mg_image_get_string(img, "transfer_syntax"));
    mg_image_free(img);
}
END_TEST

/* ---- the shared corpus ----------------------------------------------------- */

static const char *dicom_dir(void) {
    static char buf[4096];
    const char *root = tu_shared_data();
    struct stat st;
    if (!root) return NULL;
    snprintf(buf, sizeof buf, "%s/dicom", root);
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? buf : NULL;
}

static int have_pydicom(void) {
    return system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") == 0;
}

static const char *dcmtk_tool(void) {
    if (system("command -v dcmj2pnm >/dev/null 2>&1") == 0) return "dcmj2pnm";
    if (system("command -v dcm2pnm >/dev/null 2>&1") == 0) return "dcm2pnm";
    return NULL;
}

/* ---- compressed transfer syntaxes: reference tools and helpers ------------ */

#define TS_LL14 "1.2.840.10008.1.2.4.57"
#define TS_LL14SV1 "1.2.840.10008.1.2.4.70"
#define TS_JLS "1.2.840.10008.1.2.4.80"
#define TS_JLS_NEAR "1.2.840.10008.1.2.4.81"
#define TS_J2K_LOSSLESS "1.2.840.10008.1.2.4.90"
#define TS_J2K "1.2.840.10008.1.2.4.91"

/* The tool that decompresses a syntax for comparison: dcmtk for lossless
 * JPEG and JPEG-LS (its own codecs, independent of ours and of CharLS),
 * GDCM for JPEG 2000 (dcmtk 3.6.7 has no JPEG 2000 codec). NULL for other
 * syntaxes. */
static const char *codec_ref_tool(const char *ts) {
    if (!strcmp(ts, TS_LL14) || !strcmp(ts, TS_LL14SV1)) return "dcmdjpeg";
    if (!strcmp(ts, TS_JLS) || !strcmp(ts, TS_JLS_NEAR)) return "dcmdjpls";
    if (!strcmp(ts, TS_J2K_LOSSLESS) || !strcmp(ts, TS_J2K)) return "gdcmconv";
    return NULL;
}

static int have_tool(const char *name) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* Runs a shell command (output discarded); 1 when it exits 0. */
static int run_quiet(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_quiet(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd - 32, fmt, ap);
    va_end(ap);
    ck_assert(n > 0 && (size_t)n < sizeof cmd - 32);
    strcat(cmd, " >/dev/null 2>&1");
    return system(cmd) == 0;
}

/* Decompresses `in` with the reference tool into the Part 10 file `out`. */
static int ref_decompress(const char *tool, const char *in, const char *out) {
    remove(out);
    if (!strcmp(tool, "gdcmconv")) return run_quiet("gdcmconv --raw '%s' '%s'", in, out);
    return run_quiet("%s '%s' '%s'", tool, in, out);
}

/* The Transfer Syntax UID of a Part 10 file (with preamble), or "". */
static void file_ts(const char *path, char *ts, size_t n) {
    size_t len;
    unsigned char *d = tu_read_file(path, &len);
    ts[0] = '\0';
    if (!d) return;
    size_t lim = len < 4096 ? len : 4096;
    for (size_t i = 132; i + 8 <= lim; i++) {
        if (d[i] == 0x02 && d[i + 1] == 0 && d[i + 2] == 0x10 && d[i + 3] == 0 &&
            d[i + 4] == 'U' && d[i + 5] == 'I') {
            size_t l = (size_t)d[i + 6] | (size_t)d[i + 7] << 8;
            if (l > len - i - 8) break;
            size_t k = l < n - 1 ? l : n - 1;
            memcpy(ts, d + i + 8, k);
            ts[k] = '\0';
            while (k && (ts[k - 1] == '\0' || ts[k - 1] == ' ')) ts[--k] = '\0';
            break;
        }
    }
    free(d);
}

/* How far a lossy JPEG 2000 frame (transfer syntax `ts`, as the library
 * names it) may be from a reference decoded on x86-64: the irreversible
 * 9/7 wavelet runs in floating point inside OpenJPEG, whose builds for
 * other CPUs (aarch64: no SSE path, fused multiply-adds) round some values
 * the other way. The references were made on x86-64, where it is exact. */
static long j2k_float_tol(const char *ts) {
#if defined(__x86_64__)
    (void)ts;
    return 0;
#else
    return ts && (!strcmp(ts, "JPEG 2000") || !strcmp(ts, "High-Throughput JPEG 2000"));
#endif
}

/* A frame's values as the library gives them in raw mode: modality values
 * (pixel + raw offset) for grey, samples for colour; tol: j2k_float_tol. */
typedef struct vals {
    int64_t *v;
    size_t n;
    unsigned w, h, ch, n_frames;
    long tol;
} vals;

static mg_status load_vals(vals *out, const char *path, const void *mem, size_t memn,
                           uint32_t frame, char *err, size_t errlen) {
    mg_image_params p;
    mg_image_params_init(&p);
    p.frame = frame;
    p.window = MG_WINDOW_NONE;
    mg_image *img = NULL;
    mg_status st = path ? mg_image_load_file(&img, path, &p, err, errlen)
                        : mg_image_load_memory(&img, mem, memn, &p, err, errlen);
    memset(out, 0, sizeof *out);
    if (st) {
        ck_assert_ptr_null(img);
        ck_assert_msg(err[0] != '\0', "an error without a message");
        return st;
    }
    mg_image_info in = info_of(img);
    size_t n;
    unsigned char *px = pixels_of(img, &n);
    int wide = in.format == MG_PIXEL_GRAY16 || in.format == MG_PIXEL_RGB16;
    out->ch = (in.format == MG_PIXEL_RGB8 || in.format == MG_PIXEL_RGB16) ? 3 : 1;
    out->w = in.width;
    out->h = in.height;
    out->n_frames = in.n_frames;
    out->n = (size_t)in.width * in.height * out->ch;
    out->tol = j2k_float_tol(mg_image_get_string(img, "transfer_syntax"));
    out->v = malloc(out->n * sizeof *out->v + 1);
    ck_assert_ptr_nonnull(out->v);
    for (size_t i = 0; i < out->n; i++)
        out->v[i] = (wide ? ((uint16_t *)(void *)px)[i] : px[i]) +
                    (out->ch == 1 ? (int64_t)in.raw_offset : 0);
    free(px);
    mg_image_free(img);
    return MG_OK;
}

/* Largest difference between two frames' values; -1 when shapes differ. */
static long vals_diff(const vals *a, const vals *b) {
    if (a->w != b->w || a->h != b->h || a->ch != b->ch) return -1;
    long d = 0;
    for (size_t i = 0; i < a->n; i++) {
        int64_t x = a->v[i] > b->v[i] ? a->v[i] - b->v[i] : b->v[i] - a->v[i];
        if (x > d) d = (long)x;
    }
    return d;
}

/* Frames 0 and last of `path` against the same frames of `ref` (both
 * through this library; `ref` uncompressed): identical values (within
 * j2k_float_tol). Returns the frame count. */
static unsigned expect_same_frames(const char *path, const char *ref, const char *what) {
    char err[512];
    vals a, b;
    ck_assert_msg(load_vals(&a, path, NULL, 0, 0, err, sizeof err) == MG_OK, "%s: %s", what, err);
    unsigned nf = a.n_frames;
    for (unsigned k = 0; k < 2; k++) {
        uint32_t fr = k ? nf - 1 : 0;
        if (k && fr == 0) break;
        if (k) {
            free(a.v);
            ck_assert_msg(load_vals(&a, path, NULL, 0, fr, err, sizeof err) == MG_OK, "%s: %s",
                          what, err);
        }
        ck_assert_msg(load_vals(&b, ref, NULL, 0, fr, err, sizeof err) == MG_OK,
                      "%s: reference: %s", what, err);
        long d = vals_diff(&a, &b);
        ck_assert_msg(d >= 0 && d <= a.tol, "%s frame %u: differs from the reference by %ld (-1: shape %ux%ux%u "
                      "vs %ux%ux%u)", what, (unsigned)fr, d, a.w, a.h, a.ch, b.w, b.h, b.ch);
        free(b.v);
    }
    free(a.v);
    return nf;
}

/* The encapsulated Pixel Data of a Part 10 file: *pix is the offset of the
 * (7FE0,0010) tag, the fragments after the offset table are joined into
 * *frame (malloc'd; single-frame files). 0 when there is none. */
static int split_encapsulated(const unsigned char *d, size_t n, size_t *pix,
                              unsigned char **frame, size_t *flen) {
    static const unsigned char tag[4] = {0xE0, 0x7F, 0x10, 0x00};
    static const unsigned char undef[6] = {0, 0, 0xFF, 0xFF, 0xFF, 0xFF};
    size_t at = SIZE_MAX;
    for (size_t i = 0; i + 12 <= n; i++)
        if (!memcmp(d + i, tag, 4) && d[i + 4] == 'O' && (d[i + 5] == 'B' || d[i + 5] == 'W') &&
            !memcmp(d + i + 6, undef, 6))
            at = i;
    if (at == SIZE_MAX) return 0;
    size_t p = at + 12;
    int first = 1;
    dbuf f = {0};
    while (p + 8 <= n) {
        unsigned g = d[p] | d[p + 1] << 8, e = d[p + 2] | d[p + 3] << 8;
        uint32_t len = (uint32_t)d[p + 4] | (uint32_t)d[p + 5] << 8 |
                       (uint32_t)d[p + 6] << 16 | (uint32_t)d[p + 7] << 24;
        if (g == 0xFFFE && e == 0xE0DD) break;
        if (g != 0xFFFE || e != 0xE000 || len > n - p - 8) {
            free(f.d);
            return 0;
        }
        if (!first) put(&f, d + p + 8, len);
        first = 0;
        p += 8 + (size_t)len;
    }
    *pix = at;
    *frame = f.d;
    *flen = f.n;
    return f.n > 0;
}

/* hdr (everything before Pixel Data) + one fragment holding fr[0..fn). */
static dbuf with_frame(const unsigned char *hdr, size_t hn, const unsigned char *fr, size_t fn) {
    dbuf b = {0};
    put(&b, hdr, hn);
    const unsigned char *frs[1] = {fr};
    size_t fl[1] = {fn};
    encapsulated(&b, NULL, 0, frs, fl, 1);
    return b;
}

/* Reads a binary PGM/PPM (maxval < 256). Returns pixels or NULL. */
static unsigned char *read_pnm(const char *path, unsigned *w, unsigned *h, unsigned *ch) {
    size_t n;
    unsigned char *d = tu_read_file(path, &n);
    if (!d) return NULL;
    size_t i = 2;
    unsigned v[3];
    if (n < 2 || d[0] != 'P' || (d[1] != '5' && d[1] != '6')) { free(d); return NULL; }
    for (int k = 0; k < 3; k++) {
        while (i < n && (d[i] == ' ' || d[i] == '\n' || d[i] == '\r' || d[i] == '\t' || d[i] == '#')) {
            if (d[i] == '#') while (i < n && d[i] != '\n') i++;
            else i++;
        }
        v[k] = 0;
        while (i < n && d[i] >= '0' && d[i] <= '9') v[k] = v[k] * 10 + (unsigned)(d[i++] - '0');
    }
    i++;
    *w = v[0];
    *h = v[1];
    *ch = d[1] == '5' ? 1 : 3;
    size_t need = (size_t)v[0] * v[1] * *ch;
    if (v[2] > 255 || n - i < need) { free(d); return NULL; }
    unsigned char *o = malloc(need ? need : 1);
    memcpy(o, d + i, need);
    free(d);
    return o;
}

typedef struct row {
    char rel[256], status[8], kind[8], bin[32], msg[160];
    unsigned frame, rows, cols, n_frames;
} row;

static int parse_row(char *line, row *r) {
    char *f[9];
    int k = 0;
    for (char *s = line; k < 9; k++) {
        f[k] = s;
        char *t = strchr(s, '\t');
        if (!t) { k++; break; }
        *t = '\0';
        s = t + 1;
    }
    if (k < 9) return 0;
    char *nl = strchr(f[8], '\n');
    if (nl) *nl = '\0';
    snprintf(r->rel, sizeof r->rel, "%s", f[0]);
    r->frame = (unsigned)atoi(f[1]);
    snprintf(r->status, sizeof r->status, "%s", f[2]);
    snprintf(r->kind, sizeof r->kind, "%s", f[3]);
    r->rows = (unsigned)atoi(f[4]);
    r->cols = (unsigned)atoi(f[5]);
    r->n_frames = (unsigned)atoi(f[6]);
    snprintf(r->bin, sizeof r->bin, "%s", f[7]);
    snprintf(r->msg, sizeof r->msg, "%s", f[8]);
    return 1;
}

/* A w x h grey JPEG of a pattern depending on k, via libjpeg. */
static unsigned char *make_jpeg(unsigned w, unsigned h, int k, size_t *n) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *out = NULL;
    unsigned long outn = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &outn);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char *line = malloc(w);
    while (c.next_scanline < h) {
        for (unsigned x = 0; x < w; x++) line[x] = (unsigned char)((x * 7 + c.next_scanline * 3 + (unsigned)k * 60) & 0xFF);
        JSAMPROW r = line;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(line);
    *n = outn;
    return out;
}

/* Encapsulated multi-frame JPEG: one fragment per frame without a table,
 * and frames split over fragments with a Basic Offset Table; each frame
 * must equal the same JPEG decoded on its own. */
START_TEST(test_jpeg_frames) {
    size_t n0, n1;
    unsigned char *j0 = make_jpeg(24, 16, 0, &n0), *j1 = make_jpeg(24, 16, 1, &n1);
    char err[256];
    mg_image *ref[2], *img;
    ck_assert_int_eq(mg_image_load_memory(&ref[0], j0, n0, NULL, err, sizeof err), MG_OK);
    ck_assert_int_eq(mg_image_load_memory(&ref[1], j1, n1, NULL, err, sizeof err), MG_OK);
    imgdesc im = {16, 24, 1, 8, 8, 7, 0, 0, "MONOCHROME2", "2", NULL, NULL, NULL, NULL};
    for (int layout = 0; layout < 2; layout++) {
        dbuf b = {0};
        header(&b, "1.2.840.10008.1.2.4.50");
        image_attrs(&b, &im);
        if (layout == 0) {
            const unsigned char *fr[2] = {j0, j1};
            size_t fl[2] = {n0, n1};
            encapsulated(&b, NULL, 0, fr, fl, 2);
        } else {
            /* frame 0 in fragments of 10 and n0-10 bytes, frame 1 in 3 */
            size_t a = 10, c = n1 / 3;
            const unsigned char *fr[5] = {j0, j0 + a, j1, j1 + c, j1 + 2 * c};
            size_t fl[5] = {a, n0 - a, c, c, n1 - 2 * c};
            uint32_t bot[2] = {0, (uint32_t)(8 + a + 8 + (n0 - a))};
            encapsulated(&b, bot, 2, fr, fl, 5);
        }
        for (uint32_t k = 0; k < 2; k++) {
            ck_assert_int_eq(load_mem(&img, b.d, b.n, MG_WINDOW_NONE, k, err, sizeof err), MG_OK);
            size_t na, nb;
            unsigned char *pa = pixels_of(img, &na), *pb = pixels_of(ref[k], &nb);
            ck_assert_uint_eq(na, nb);
            ck_assert_int_eq(memcmp(pa, pb, na), 0);
            free(pa);
            free(pb);
            mg_image_free(img);
        }
        free(b.d);
    }
    mg_image_free(ref[0]);
    mg_image_free(ref[1]);
    free(j0);
    free(j1);
}
END_TEST

/* The same dataset without preamble, and without meta information (a bare
 * implicit VR dataset): identical pixels. */
START_TEST(test_bare_dataset) {
    const char *dir = dicom_dir();
    if (!dir) { fprintf(stderr, "  skipped: shared DICOM data absent\n"); return; }
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/transfer_syntax_variants/MR_small_implicit.dcm", dir);
    size_t n;
    unsigned char *d = tu_read_file(path, &n);
    if (!d) { fprintf(stderr, "  skipped: MR_small_implicit.dcm absent\n"); return; }
    ck_assert_int_eq(memcmp(d + 128, "DICM", 4), 0);
    /* (0002,0000) UL 4 = group length, right after DICM */
    ck_assert_int_eq(d[132], 2);
    uint32_t gl = (uint32_t)d[140] | ((uint32_t)d[141] << 8) | ((uint32_t)d[142] << 16) |
                  ((uint32_t)d[143] << 24);
    size_t body = 132 + 12 + gl;
    ck_assert_uint_lt(body, n);
    mg_image *full, *a, *b2;
    ck_assert_int_eq(load_mem(&full, d, n, MG_WINDOW_NONE, 0, err, sizeof err), MG_OK);
    ck_assert_int_eq(load_mem(&a, d + 128, n - 128, MG_WINDOW_NONE, 0, err, sizeof err), MG_OK);
    unsigned char *bare = malloc(n - body);
    memcpy(bare, d + body, n - body);
    ck_assert_int_eq(load_mem(&b2, bare, n - body, MG_WINDOW_NONE, 0, err, sizeof err), MG_OK);
    ck_assert_str_eq(mg_image_get_string(b2, "transfer_syntax"), "Implicit VR Little Endian");
    size_t n1, n2, n3;
    unsigned char *p1 = pixels_of(full, &n1), *p2 = pixels_of(a, &n2), *p3 = pixels_of(b2, &n3);
    ck_assert_uint_eq(n1, n2);
    ck_assert_uint_eq(n1, n3);
    ck_assert_int_eq(memcmp(p1, p2, n1), 0);
    ck_assert_int_eq(memcmp(p1, p3, n1), 0);
    free(p1); free(p2); free(p3);
    mg_image_free(full); mg_image_free(a); mg_image_free(b2);
    free(bare);
    free(d);
}
END_TEST

/* Compares our raw decode with pydicom's values; returns the max abs diff
 * or -1 on a shape mismatch. */
static long compare_raw(const mg_image *img, const char *binpath, const row *r) {
    size_t bn, n;
    unsigned char *bd = tu_read_file(binpath, &bn);
    ck_assert_ptr_nonnull(bd);
    mg_image_info in = info_of(img);
    unsigned ch = (in.format == MG_PIXEL_RGB8 || in.format == MG_PIXEL_RGB16) ? 3 : 1;
    int wide = in.format == MG_PIXEL_GRAY16 || in.format == MG_PIXEL_RGB16;
    size_t count = (size_t)in.width * in.height * ch;
    if (in.width != r->cols || in.height != r->rows || bn != count * 8) {
        free(bd);
        return -1;
    }
    unsigned char *px = pixels_of(img, &n);
    long maxd = 0;
    for (size_t i = 0; i < count; i++) {
        int64_t want;
        memcpy(&want, bd + 8 * i, 8);
        int64_t got = wide ? ((uint16_t *)(void *)px)[i] : px[i];
        if (ch == 1) got += in.raw_offset;
        int64_t d = got > want ? got - want : want - got;
        if (d > maxd) maxd = d;
    }
    free(px);
    free(bd);
    return maxd;
}

/* Our windowed decode against dcmtk's rendering with the same window.
 * Returns max abs diff, or -2 when dcmtk could not render the file. */
static long compare_dcmtk(const char *tool, const char *path, const mg_image *img, char *note,
                          size_t notelen) {
    mg_image_info in = info_of(img);
    char cmd[16384];
    const char *out = tu_tmp_path("dcmtk_out.pnm");
    remove(out);
    if (in.format == MG_PIXEL_GRAY8)
        snprintf(cmd, sizeof cmd, "%s -q -O +F %u +Ww %.17g %.17g +op '%s' '%s' >/dev/null 2>&1",
                 tool, (unsigned)in.frame + 1, in.window_center, in.window_width, path, out);
    else
        snprintf(cmd, sizeof cmd, "%s -q -O +F %u +op '%s' '%s' >/dev/null 2>&1", tool,
                 (unsigned)in.frame + 1, path, out);
    if (system(cmd) != 0) return -2;
    unsigned w, h, ch;
    unsigned char *ref = read_pnm(out, &w, &h, &ch);
    if (!ref) return -2;
    size_t n;
    unsigned char *px = pixels_of(img, &n);
    long maxd = -1;
    if (w == in.width && h == in.height && (size_t)w * h * ch == n) {
        maxd = 0;
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) {
            long d = labs((long)px[i] - (long)ref[i]);
            if (d) diff++;
            if (d > maxd) maxd = d;
        }
        snprintf(note, notelen, "%zu of %zu samples differ", diff, n);
    }
    free(px);
    free(ref);
    return maxd;
}

START_TEST(test_corpus) {
    const char *dir = dicom_dir();
    if (!dir) { fprintf(stderr, "  skipped: shared DICOM data absent\n"); return; }
    if (!have_pydicom()) { fprintf(stderr, "  skipped: python3-pydicom absent\n"); return; }
    const char *tool = dcmtk_tool();
    if (!tool) fprintf(stderr, "  note: dcmtk absent; windowed output not cross-checked\n");
    char refdir_c[2048], cwd[2048], cmd[8192];
    mkdir(tu_tmp_path("dicom_ref"), 0755);
    ck_assert_ptr_nonnull(realpath(tu_tmp_path("dicom_ref"), refdir_c));
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    /* Under valgrind, only the files of at most 64 KiB (most of the
     * transfer-syntax variants). */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && /usr/bin/python3 '%s/tests/dicom/reference.py' . '%s' %s", dir, cwd,
             refdir_c,
             tu_under_valgrind() ? "$(find . -name '*.dcm' -size -65k | sed 's|^\\./||')" : "");
    ck_assert_msg(system(cmd) == 0, "reference.py failed: %s", cmd);

    char manpath[4200];
    snprintf(manpath, sizeof manpath, "%s/manifest.tsv", refdir_c);
    FILE *man = fopen(manpath, "r");
    ck_assert_ptr_nonnull(man);
    FILE *table = fopen(tu_tmp_path("dicom_table.md"), "w");
    ck_assert_ptr_nonnull(table);
    fprintf(table, "| file | frame | transfer syntax | result |\n|---|---|---|---|\n");
    char line[1024];
    int n_equal = 0, n_refused = 0, n_rows = 0;
    while (fgets(line, sizeof line, man)) {
        row r;
        ck_assert(parse_row(line, &r));
        n_rows++;
        char path[6000], err[512], res[1024];
        snprintf(path, sizeof path, "%s/%s", dir, r.rel);
        mg_image *raw = NULL, *win = NULL;
        mg_image_params p;
        mg_image_params_init(&p);
        p.frame = r.frame;
        p.window = MG_WINDOW_NONE;
        mg_status st = mg_image_load_file(&raw, path, &p, err, sizeof err);
        /* 32-bit colour, and grey values spanning more than 16 bits, have
         * no raw form: compare the windowed one. */
        int wide_span = 0;
        if (st == MG_E_UNSUPPORTED &&
            (strstr(err, "32-bit colour") || strstr(err, "more than 16 bits"))) {
            wide_span = strstr(err, "more than 16 bits") != NULL;
            p.window = MG_WINDOW_FILE;
            st = mg_image_load_file(&raw, path, &p, err, sizeof err);
        }
        char ts[160] = "-";
        const char *uid = st == MG_OK ? mg_image_get_string(raw, "transfer_syntax_uid") : NULL;
        if (st == MG_OK && strcmp(r.status, "ok") != 0) {
            /* pydicom 2.3 here has no JPEG-LS or lossless JPEG decoder and
             * rejects some JPEG 2000 files: those are compared with dcmtk or
             * GDCM by test_compressed_corpus instead. */
            const char *t = mg_image_get_string(raw, "transfer_syntax");
            snprintf(ts, sizeof ts, "%s", t ? t : "-");
            ck_assert_msg(uid && codec_ref_tool(uid),
                          "%s: we decode it but pydicom does not (%s)", r.rel, r.msg);
            snprintf(res, sizeof res, "decoded; pydicom cannot (%s): compared with %s instead",
                     r.msg, codec_ref_tool(uid));
            n_equal++;
        } else if (st == MG_OK) {
            const char *t = mg_image_get_string(raw, "transfer_syntax");
            snprintf(ts, sizeof ts, "%s", t ? t : "-");
            mg_image_info in = info_of(raw);
            long d;
            if (in.format == MG_PIXEL_RGB8 && in.bits_allocated == 32) {
                /* windowed 32-bit colour: top byte of each sample */
                size_t bn, n;
                unsigned char *bd;
                char bp[4200];
                snprintf(bp, sizeof bp, "%s/%s", refdir_c, r.bin);
                bd = tu_read_file(bp, &bn);
                unsigned char *px = pixels_of(raw, &n);
                ck_assert_uint_eq(bn, n * 8);
                d = 0;
                for (size_t i = 0; i < n; i++) {
                    int64_t w;
                    memcpy(&w, bd + 8 * i, 8);
                    long dd = labs((long)px[i] - (long)(w >> 24));
                    if (dd > d) d = dd;
                }
                free(bd);
                free(px);
            } else if (wide_span) {
                /* windowed grey: the linear function (written out here
                 * again) over pydicom's modality values */
                size_t bn, n;
                char bp[4200];
                snprintf(bp, sizeof bp, "%s/%s", refdir_c, r.bin);
                unsigned char *bd = tu_read_file(bp, &bn);
                unsigned char *px = pixels_of(raw, &n);
                ck_assert_uint_eq(bn, n * 8);
                double c = in.window_center, w = in.window_width;
                d = 0;
                for (size_t i = 0; i < n; i++) {
                    int64_t v;
                    memcpy(&v, bd + 8 * i, 8);
                    double x = (double)v, y;
                    if (x <= c - 0.5 - (w - 1) / 2) y = 0;
                    else if (x > c - 0.5 + (w - 1) / 2) y = 255;
                    else y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
                    long dd = labs((long)px[i] - (long)floor(y));
                    if (dd > d) d = dd;
                }
                ck_assert_msg(d <= 1, "%s: windowed output off by %ld", r.rel, d);
                d = 0;
                free(bd);
                free(px);
            } else {
                char bp[4200];
                snprintf(bp, sizeof bp, "%s/%s", refdir_c, r.bin);
                d = compare_raw(raw, bp, &r);
            }
            const char *photo = mg_image_get_string(raw, "photometric");
            /* Colour conversions we do ourselves (YBR -> RGB) may round
             * differently from pydicom's by one; everything else is exact. */
            long tol = (photo && !strncmp(photo, "YBR", 3) && in.format == MG_PIXEL_RGB8) ? 1 : 0;
            if (tol < j2k_float_tol(mg_image_get_string(raw, "transfer_syntax")))
                tol = 1;
            ck_assert_msg(d >= 0 && d <= tol, "%s frame %u: differs from pydicom by %ld",
                          r.rel, r.frame, d);
            int n_res = snprintf(res, sizeof res, "%s pydicom (%s)",
                                 d == 0 ? "equal to" : "within 1 of",
                                 wide_span ? "windowed, values span more than 16 bits"
                                 : in.format == MG_PIXEL_GRAY16 || in.format == MG_PIXEL_GRAY8
                                     ? "modality values" : "RGB");
            /* Windowed 8-bit output against dcmtk with the same window. */
            if (tool) {
                p.window = MG_WINDOW_FILE;
                ck_assert_int_eq(mg_image_load_file(&win, path, &p, err, sizeof err), MG_OK);
                mg_image_info wi = info_of(win);
                char note[128] = "";
                long dd = compare_dcmtk(tool, path, win, note, sizeof note);
                if (dd >= 0 && wi.format == MG_PIXEL_GRAY8) {
                    ck_assert_msg(dd <= 1, "%s frame %u: windowed output differs from %s by %ld",
                                  r.rel, r.frame, tool, dd);
                    snprintf(res + n_res, sizeof res - (size_t)n_res,
                             "; window %g/%g (%s) vs dcmtk: max diff %ld (%s)", wi.window_center,
                             wi.window_width, wi.window == MG_WINDOW_AUTO ? "auto" : "file", dd,
                             note);
                } else if (dd >= 0) {
                    snprintf(res + n_res, sizeof res - (size_t)n_res,
                             "; RGB8 vs dcmtk: max diff %ld (%s)", dd, note);
                } else {
                    snprintf(res + n_res, sizeof res - (size_t)n_res, "; dcmtk: %s",
                             dd == -2 ? "cannot render" : "different shape");
                }
                mg_image_free(win);
            }
            n_equal++;
        } else {
            ck_assert_ptr_null(raw);
            ck_assert_msg(err[0] != '\0', "%s: error without a message", r.rel);
            /* A file pydicom decodes may only be refused as unsupported. */
            if (!strcmp(r.status, "ok"))
                ck_assert_msg(st == MG_E_UNSUPPORTED, "%s: pydicom decodes it, we fail: %s",
                              r.rel, err);
            snprintf(res, sizeof res, "refused (%s): %s%s", mg_status_str(st), err,
                     !strcmp(r.status, "ok") ? "" : "; pydicom cannot decode it either");
            n_refused++;
        }
        /* markdown-safe */
        for (char *c = res; *c; c++) if (*c == '|') *c = '/';
        fprintf(table, "| %s | %u | %s | %s |\n", r.rel, r.frame, ts, res);
        mg_image_free(raw);
    }
    fclose(man);
    fclose(table);
    fprintf(stderr, "  DICOM corpus: %d rows, %d decoded and matched, %d refused (table: %s)\n",
            n_rows, n_equal, n_refused, tu_tmp_path("dicom_table.md"));
    ck_assert_int_gt(n_rows, 0);
}
END_TEST

/* Every prefix of small files, and seeded random byte flips of a few more:
 * no crash, leak or read past the buffer (ASan/valgrind), and a message
 * with every failure. */
static void hostile_file(const char *rel, size_t step_valgrind, int flips) {
    const char *dir = dicom_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    size_t n;
    unsigned char *d = tu_read_file(path, &n);
    if (!d) { fprintf(stderr, "  skipped: %s absent\n", rel); return; }
    char err[512];
    mg_image *img;
    mg_image_params p;
    mg_image_params_init(&p);
    p.max_memory = 64u << 20;
    size_t step = tu_under_valgrind() ? step_valgrind : 1;
    size_t ok = 0;
    for (size_t len = 0; len < n; len += step) {
        /* an exact-size heap copy so that ASan/valgrind see overreads */
        unsigned char *c = malloc(len ? len : 1);
        memcpy(c, d, len);
        err[0] = '\0';
        mg_status st = mg_image_load_memory(&img, c, len, &p, err, sizeof err);
        if (st == MG_OK) { ok++; mg_image_free(img); }
        else ck_assert_msg(err[0] != '\0', "%s prefix %zu: no message", rel, len);
        free(c);
    }
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ n;
    int rounds = tu_under_valgrind() ? flips / 10 : flips;
    for (int r = 0; r < rounds; r++) {
        unsigned char *c = malloc(n);
        memcpy(c, d, n);
        int k = 1 + (int)(tu_rand_u64(&seed) % 8);
        for (int i = 0; i < k; i++) {
            /* Mostly in the header (where lengths live), sometimes anywhere. */
            size_t span = (tu_rand_u64(&seed) & 1) ? (n < 2048 ? n : 2048) : n;
            c[tu_rand_u64(&seed) % span] ^= (unsigned char)(1u << (tu_rand_u64(&seed) % 8));
        }
        for (int w = 0; w < 2; w++) {
            p.window = w ? MG_WINDOW_NONE : MG_WINDOW_FILE;
            err[0] = '\0';
            mg_status st = mg_image_load_memory(&img, c, n, &p, err, sizeof err);
            if (st == MG_OK) mg_image_free(img);
            else ck_assert_msg(err[0] != '\0', "%s flip round %d: no message", rel, r);
        }
        p.window = MG_WINDOW_FILE;
        free(c);
    }
    (void)ok;
    free(d);
}

START_TEST(test_hostile_corpus) {
    if (!dicom_dir()) { fprintf(stderr, "  skipped: shared DICOM data absent\n"); return; }
    hostile_file("transfer_syntax_variants/MR_small_RLE.dcm", 7, 400);
    hostile_file("transfer_syntax_variants/SC_rgb_small_odd_jpeg.dcm", 3, 400);
    hostile_file("transfer_syntax_variants/image_dfl.dcm", 11, 300);
    hostile_file("transfer_syntax_variants/SC_rgb_rle_16bit_2frame.dcm", 13, 300);
    hostile_file("transfer_syntax_variants/rtplan.dcm", 5, 300);
    hostile_file("transfer_syntax_variants/SC_ybr_full_422_uncompressed.dcm", 53, 200);
    hostile_file("transfer_syntax_variants/UN_sequence.dcm", 1, 200);
    hostile_file("mr/emri_small.dcm", 97, 200);
}
END_TEST

/* The files the issue names: clear errors. */
START_TEST(test_named_refusals) {
    const char *dir = dicom_dir();
    if (!dir) { fprintf(stderr, "  skipped: shared DICOM data absent\n"); return; }
    static const struct { const char *rel; mg_status st; const char *needle; } t[] = {
        {"transfer_syntax_variants/MR_truncated.dcm", MG_E_IMAGE_FORMAT, "(7FE0,0010)"},
        {"transfer_syntax_variants/rtplan_truncated.dcm", MG_E_IMAGE_FORMAT, "claims"},
        {"transfer_syntax_variants/badVR.dcm", MG_E_IMAGE_FORMAT, "Number of Frames"},
        {"transfer_syntax_variants/rtplan.dcm", MG_E_UNSUPPORTED, "RT Plan"},
        {"transfer_syntax_variants/test-SR.dcm", MG_E_UNSUPPORTED, "SR"},
        {"transfer_syntax_variants/waveform_ecg.dcm", MG_E_UNSUPPORTED, "Waveform"},
        {"transfer_syntax_variants/MR_small_bigendian.dcm", MG_E_UNSUPPORTED, "Explicit VR Big Endian (1.2.840.10008.1.2.2)"},
        {"transfer_syntax_variants/ExplVR_BigEndNoMeta.dcm", MG_E_UNSUPPORTED, "Big Endian"},
        /* the SIZ marker overwritten by a sequence delimiter (pydicom #1140) */
        {"transfer_syntax_variants/JPEG2000-embedded-sequence-delimiter.dcm", MG_E_IMAGE_FORMAT,
         "JPEG 2000: frame is 3722445056x1024"},
        {"transfer_syntax_variants/JPGExtended.dcm", MG_E_UNSUPPORTED, "12-bit JPEG"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char path[4200], err[512];
        snprintf(path, sizeof path, "%s/%s", dir, t[i].rel);
        mg_image *img = (mg_image *)1;
        mg_status st = mg_image_load_file(&img, path, NULL, err, sizeof err);
        ck_assert_msg(st == t[i].st, "%s: status %d (%s)", t[i].rel, (int)st, err);
        ck_assert_ptr_null(img);
        ck_assert_msg(strstr(err, t[i].needle) != NULL, "%s: message '%s' lacks '%s'", t[i].rel,
                      err, t[i].needle);
    }
}
END_TEST

/* ---- compressed transfer syntaxes ----------------------------------------- */

/* Every lossless JPEG, JPEG-LS and JPEG 2000 file of the shared corpus
 * (found by its Transfer Syntax UID) against the reference tool's
 * decompression read through our uncompressed path: identical values. A
 * file the tool cannot decompress must be refused by us too. */
START_TEST(test_compressed_corpus) {
    const char *dir = dicom_dir();
    if (!dir) { fprintf(stderr, "  skipped: shared DICOM data absent\n"); return; }
    char cmd[4400], line[4400];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.dcm' | LC_ALL=C sort", dir);
    FILE *ls = popen(cmd, "r");
    ck_assert_ptr_nonnull(ls);
    FILE *table = fopen(tu_tmp_path("dicom_codec_table.md"), "w");
    ck_assert_ptr_nonnull(table);
    fprintf(table, "| file | transfer syntax | reference | result |\n|---|---|---|---|\n");
    int n_same = 0, n_both = 0, n_skipped = 0;
    const char *ref = tu_tmp_path("codec_ref.dcm");
    while (fgets(line, sizeof line, ls)) {
        line[strcspn(line, "\n")] = '\0';
        char ts[68];
        file_ts(line, ts, sizeof ts);
        const char *tool = codec_ref_tool(ts);
        if (!tool) continue;
        const char *rel = line + strlen(dir) + 1;
        struct stat sb;
        if (tu_under_valgrind() && stat(line, &sb) == 0 && sb.st_size > 64 * 1024) {
            n_skipped++; /* under valgrind, only the files of at most 64 KiB */
            continue;
        }
        if (!have_tool(tool)) {
            fprintf(stderr, "  skipped %s: %s absent\n", rel, tool);
            n_skipped++;
            continue;
        }
        int ok = ref_decompress(tool, line, ref);
        char err[512], res[700];
        vals a;
        mg_status st = load_vals(&a, line, NULL, 0, 0, err, sizeof err);
        vals r;
        char rerr[512];
        if (ok && st != MG_OK && load_vals(&r, ref, NULL, 0, 0, rerr, sizeof rerr) != MG_OK &&
            strstr(err, "not an image") && strstr(rerr, "not an image")) {
            /* Nothing to decompress: the tool copies the dataset. */
            snprintf(res, sizeof res, "not an image, the tool's output neither: %s", err);
            n_both++;
        } else if (!ok) {
            ck_assert_msg(st != MG_OK, "%s: %s cannot decompress it, we decode it", rel, tool);
            snprintf(res, sizeof res, "refused by both (%s): %s", mg_status_str(st), err);
            n_both++;
        } else {
            ck_assert_msg(st == MG_OK, "%s: %s decompresses it, we fail: %s", rel, tool, err);
            unsigned nf = expect_same_frames(line, ref, rel);
            snprintf(res, sizeof res, "identical values (%ux%u, %u sample%s, frame%s 0%s)", a.w, a.h,
                     a.ch, a.ch > 1 ? "s" : "", nf > 1 ? "s" : "", nf > 1 ? " and last" : "");
            free(a.v);
            n_same++;
        }
        for (char *c = res; *c; c++) if (*c == '|') *c = '/';
        fprintf(table, "| %s | %s | %s | %s |\n", rel, ts,
                !strcmp(tool, "gdcmconv") ? "gdcmconv --raw" : tool, res);
    }
    pclose(ls);
    fclose(table);
    remove(ref);
    fprintf(stderr, "  compressed corpus: %d identical to the reference, %d refused by both, "
            "%d skipped (table: %s)\n", n_same, n_both, n_skipped, tu_tmp_path("dicom_codec_table.md"));
}
END_TEST

/* Files compressed here from the corpus's uncompressed images by dcmtk and
 * GDCM with many options: lossless ones decode to the original values,
 * lossy ones (point transform, near-lossless, irreversible JPEG 2000) to the
 * reference tool's decompression. */
START_TEST(test_compressed_roundtrip) {
    const char *dir = dicom_dir();
    if (!dir) { fprintf(stderr, "  skipped: shared DICOM data absent\n"); return; }
    static const struct {
        const char *src, *tool, *opts, *ts;
        int lossless, big;
    } t[] = {
        /* lossless JPEG: selection values 1..7, point transform, fragments */
        {"mr/MR_small.dcm", "dcmcjpeg", "+e1", TS_LL14SV1, 1, 0},
        {"mr/MR_small.dcm", "dcmcjpeg", "+el +sv 2", TS_LL14, 1, 0},
        {"mr/MR_small.dcm", "dcmcjpeg", "+el +sv 3", TS_LL14, 1, 0},
        {"mr/MR_small.dcm", "dcmcjpeg", "+el +sv 4", TS_LL14, 1, 0},
        {"mr/MR_small.dcm", "dcmcjpeg", "+el +sv 5", TS_LL14, 1, 0},
        {"mr/MR_small.dcm", "dcmcjpeg", "+el +sv 6", TS_LL14, 1, 0},
        {"mr/MR_small.dcm", "dcmcjpeg", "+el +sv 7", TS_LL14, 1, 0},
        {"mr/MR_small.dcm", "dcmcjpeg", "+el +sv 1 +pt 2", TS_LL14, 0, 0},
        {"ct_single/CT_small.dcm", "dcmcjpeg", "+el +sv 7 +pt 1", TS_LL14, 0, 0},
        {"mr/emri_small.dcm", "dcmcjpeg", "+e1 +fs 1 -ot", TS_LL14SV1, 1, 0},
        {"mr/emri_small.dcm", "dcmcjpeg", "+el +sv 4", TS_LL14, 1, 0},
        {"transfer_syntax_variants/SC_rgb_small_odd.dcm", "dcmcjpeg", "+e1", TS_LL14SV1, 1, 0},
        {"transfer_syntax_variants/SC_rgb_small_odd.dcm", "dcmcjpeg", "+el +sv 5", TS_LL14, 1, 0},
        {"mr/MR_small.dcm", "gdcmconv", "-J", TS_LL14SV1, 1, 0},
        {"us/US1_UNCR.dcm", "gdcmconv", "-J", TS_LL14SV1, 1, 1},
        {"ct_series_3slice/01.dcm", "dcmcjpeg", "+el +sv 6", TS_LL14, 1, 1},
        /* JPEG-LS: line, sample and no interleave; near-lossless */
        {"mr/MR_small.dcm", "dcmcjpls", "", TS_JLS, 1, 0},
        {"ct_single/CT_small.dcm", "dcmcjpls", "+is", TS_JLS, 1, 0},
        {"mr/emri_small.dcm", "dcmcjpls", "+fs 1 -ot", TS_JLS, 1, 0},
        {"mr/emri_small.dcm", "dcmcjpls", "+en +md 3", TS_JLS_NEAR, 0, 0},
        {"transfer_syntax_variants/SC_rgb_small_odd.dcm", "dcmcjpls", "+in", TS_JLS, 1, 0},
        {"transfer_syntax_variants/SC_rgb_small_odd.dcm", "dcmcjpls", "+is", TS_JLS, 1, 0},
        {"mr/MR_small.dcm", "gdcmconv", "-L", TS_JLS, 1, 0},
        {"mr/MR_small.dcm", "gdcmconv", "-L -Y", TS_JLS_NEAR, 0, 0},
        {"us/US1_UNCR.dcm", "dcmcjpls", "+in", TS_JLS, 1, 1},
        {"us/US1_UNCR.dcm", "dcmcjpls", "+en", TS_JLS_NEAR, 0, 1},
        /* JPEG 2000: reversible and irreversible */
        {"mr/MR_small.dcm", "gdcmconv", "--j2k", TS_J2K_LOSSLESS, 1, 0},
        {"mr/MR_small.dcm", "gdcmconv", "--j2k --lossy -q 40", TS_J2K, 0, 0},
        {"ct_single/CT_small.dcm", "gdcmconv", "--j2k", TS_J2K_LOSSLESS, 1, 0},
        {"mr/emri_small.dcm", "gdcmconv", "--j2k", TS_J2K_LOSSLESS, 1, 0},
        {"us/US1_UNCR.dcm", "gdcmconv", "--j2k", TS_J2K_LOSSLESS, 1, 1},
        {"us/US1_UNCR.dcm", "gdcmconv", "--j2k --lossy -q 40", TS_J2K, 0, 1},
        {"ct_series_3slice/01.dcm", "gdcmconv", "--j2k", TS_J2K_LOSSLESS, 1, 1},
    };
    const char *enc = tu_tmp_path("codec_enc.dcm"), *ref = tu_tmp_path("codec_enc_ref.dcm");
    int n_done = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (t[i].big && tu_under_valgrind()) continue;
        if (!have_tool(t[i].tool)) {
            fprintf(stderr, "  skipped %s %s %s: %s absent\n", t[i].tool, t[i].opts, t[i].src,
                    t[i].tool);
            continue;
        }
        char src[4400], what[4600];
        snprintf(src, sizeof src, "%s/%s", dir, t[i].src);
        snprintf(what, sizeof what, "%s %s %s", t[i].tool, t[i].opts, t[i].src);
        remove(enc);
        ck_assert_msg(run_quiet("%s %s '%s' '%s'", t[i].tool, t[i].opts, src, enc),
                      "%s: the encoder failed", what);
        char ts[68];
        file_ts(enc, ts, sizeof ts);
        ck_assert_msg(!strcmp(ts, t[i].ts), "%s: transfer syntax %s, expected %s", what, ts,
                      t[i].ts);
        if (t[i].lossless) {
            expect_same_frames(enc, src, what);
        } else {
            const char *tool = codec_ref_tool(ts);
            if (!have_tool(tool)) continue;
            ck_assert_msg(ref_decompress(tool, enc, ref), "%s: %s failed", what, tool);
            expect_same_frames(enc, ref, what);
            /* and lossy indeed: not the original values */
        }
        n_done++;
    }
    remove(enc);
    remove(ref);
    fprintf(stderr, "  %d files compressed here decoded as expected\n", n_done);
}
END_TEST

/* YBR_RCT and YBR_ICT: streams written by OpenJPEG's own encoder with its
 * reversible and irreversible component transforms, labelled as DICOM
 * requires, decode to the RGB that opj_decompress (and GDCM) give; the
 * reversible one to the original samples. */
START_TEST(test_j2k_component_transforms) {
    if (!have_tool("opj_compress") || !have_tool("opj_decompress")) {
        fprintf(stderr, "  skipped: opj_compress/opj_decompress absent (libopenjp2-tools)\n");
        return;
    }
    const unsigned w = 37, h = 23;
    dbuf ppm = {0};
    char head[32];
    snprintf(head, sizeof head, "P6\n%u %u\n255\n", w, h);
    put(&ppm, head, strlen(head));
    unsigned char *pat = malloc(w * h * 3);
    for (unsigned y = 0; y < h; y++)
        for (unsigned x = 0; x < w; x++) {
            unsigned char *q = pat + (y * w + x) * 3;
            q[0] = (unsigned char)(x * 7 + y * 3);
            q[1] = (unsigned char)(x * x + y);
            q[2] = (unsigned char)(200 - x * 5 + y * y);
        }
    put(&ppm, pat, w * h * 3);
    const char *in = tu_tmp_path("mct_in.ppm"), *cs = tu_tmp_path("mct.j2k"),
               *dec = tu_tmp_path("mct_dec.ppm"), *dcm = tu_tmp_path("mct.dcm"),
               *raw = tu_tmp_path("mct_raw.dcm");
    ck_assert(tu_write_file(in, ppm.d, ppm.n) == 0);
    static const struct { const char *opts, *photometric, *ts; int lossless; } t[] = {
        {"-n 3", "YBR_RCT", TS_J2K_LOSSLESS, 1},
        {"-n 3 -I -r 8", "YBR_ICT", TS_J2K, 0},
    };
    int gdcm = have_tool("gdcmconv");
    for (int k = 0; k < 2; k++) {
        ck_assert(run_quiet("opj_compress -i '%s' -o '%s' %s", in, cs, t[k].opts));
        ck_assert(run_quiet("opj_decompress -i '%s' -o '%s'", cs, dec));
        size_t n;
        unsigned char *code = tu_read_file(cs, &n);
        ck_assert_ptr_nonnull(code);
        imgdesc im = {h, w, 3, 8, 8, 7, 0, 0, t[k].photometric, NULL, NULL, NULL, NULL, NULL};
        dbuf f = {0};
        header(&f, t[k].ts);
        image_attrs(&f, &im);
        const unsigned char *frs[1] = {code};
        encapsulated(&f, NULL, 0, frs, &n, 1);
        char err[512];
        vals v;
        ck_assert_msg(load_vals(&v, NULL, f.d, f.n, 0, err, sizeof err) == MG_OK, "%s: %s",
                      t[k].photometric, err);
        unsigned rw, rh, rc;
        unsigned char *ref = read_pnm(dec, &rw, &rh, &rc);
        ck_assert_ptr_nonnull(ref);
        ck_assert(rw == w && rh == h && rc == 3 && v.ch == 3 && v.n == (size_t)w * h * 3);
        for (size_t i = 0; i < v.n; i++) {
            ck_assert_msg(v.v[i] == ref[i], "%s sample %zu: %lld, opj_decompress %u",
                          t[k].photometric, i, (long long)v.v[i], ref[i]);
            if (t[k].lossless) ck_assert_int_eq(v.v[i], pat[i]);
        }
        if (gdcm) {
            ck_assert(tu_write_file(dcm, f.d, f.n) == 0);
            ck_assert(ref_decompress("gdcmconv", dcm, raw));
            expect_same_frames(dcm, raw, t[k].photometric);
        }
        free(ref);
        free(v.v);
        free(f.d);
        free(code);
    }
    remove(in); remove(cs); remove(dec); remove(dcm); remove(raw);
    free(pat);
    free(ppm.d);
}
END_TEST

/* ---- a lossless JPEG encoder (T.81 Annex H), for what no tool here writes:
 * restart intervals, 2- and 16-bit samples with the 32768 difference
 * (SSSS 16), non-interleaved scans with their own predictors and point
 * transforms, Huffman codes longer than 9 bits. ---- */

typedef struct llspec {
    unsigned w, h, nc, prec, restart, interleaved;
    unsigned psv[3], pt[3];
} llspec;

/* 17 categories: 0..7 in 4 bits, 8..15 in 5, 16 in 12 (canonical). */
static const unsigned char ll_counts[16] = {0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};

typedef struct bitw {
    dbuf *b;
    unsigned acc;
    int n;
} bitw;

static void bw_bits(bitw *w, uint32_t v, int k) {
    for (int i = k - 1; i >= 0; i--) {
        w->acc = (w->acc << 1) | ((v >> i) & 1);
        if (++w->n == 8) {
            unsigned char c = (unsigned char)w->acc;
            put(w->b, &c, 1);
            if (c == 0xFF) put(w->b, "\0", 1);
            w->acc = 0;
            w->n = 0;
        }
    }
}
static void bw_flush(bitw *w) {
    while (w->n) bw_bits(w, 1, 1);
}
static void put8(dbuf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}
static void put16be(dbuf *b, unsigned v) {
    put8(b, v >> 8);
    put8(b, v & 0xFF);
}

/* T.81 H.1.2.1: the prediction, from samples shifted by the point transform. */
static int32_t ll_predict(const uint16_t *px, const llspec *s, unsigned c, unsigned x, unsigned y,
                          unsigned line0, unsigned psv, unsigned pt) {
#define LLR(xx, yy) ((int32_t)(px[((size_t)(yy) * s->w + (xx)) * s->nc + c] >> pt))
    if (y == line0) return x == 0 ? (int32_t)1 << (s->prec - pt - 1) : LLR(x - 1, y);
    if (x == 0) return LLR(0, y - 1);
    int32_t a = LLR(x - 1, y), b = LLR(x, y - 1), cc = LLR(x - 1, y - 1);
#undef LLR
    switch (psv) {
    case 1: return a;
    case 2: return b;
    case 3: return cc;
    case 4: return a + b - cc;
    case 5: return a + ((b - cc) >> 1);
    case 6: return b + ((a - cc) >> 1);
    default: return (a + b) / 2;
    }
}

static dbuf ll_encode(const uint16_t *px, const llspec *s) {
    uint16_t code[17];
    int len[17];
    for (int l = 1, c = 0, k = 0; l <= 16; l++, c <<= 1)
        for (int i = 0; i < ll_counts[l - 1]; i++, k++) {
            code[k] = (uint16_t)c++;
            len[k] = l;
        }
    dbuf b = {0};
    put(&b, "\xFF\xD8\xFF\xC3", 4);
    put16be(&b, 8 + 3 * s->nc);
    put8(&b, s->prec);
    put16be(&b, s->h);
    put16be(&b, s->w);
    put8(&b, s->nc);
    for (unsigned c = 0; c < s->nc; c++) {
        put8(&b, c + 1);
        put8(&b, 0x11);
        put8(&b, 0);
    }
    put(&b, "\xFF\xC4", 2);
    put16be(&b, 2 + 1 + 16 + 17);
    put8(&b, 0x00);
    put(&b, ll_counts, 16);
    for (unsigned v = 0; v <= 16; v++) put8(&b, v);
    if (s->restart) {
        put(&b, "\xFF\xDD", 2);
        put16be(&b, 4);
        put16be(&b, s->restart);
    }
    unsigned nscan = s->interleaved ? 1 : s->nc;
    for (unsigned sc = 0; sc < nscan; sc++) {
        unsigned ns = s->interleaved ? s->nc : 1, psv = s->psv[sc], pt = s->pt[sc];
        put(&b, "\xFF\xDA", 2);
        put16be(&b, 6 + 2 * ns);
        put8(&b, ns);
        for (unsigned k = 0; k < ns; k++) {
            put8(&b, (s->interleaved ? k : sc) + 1);
            put8(&b, 0x00);
        }
        put8(&b, psv);
        put8(&b, 0);
        put8(&b, pt);
        bitw w = {&b, 0, 0};
        unsigned left = s->restart, rst = 0, line0 = 0;
        for (unsigned y = 0; y < s->h; y++)
            for (unsigned x = 0; x < s->w; x++) {
                if (s->restart && left == 0) {
                    bw_flush(&w);
                    put8(&b, 0xFF);
                    put8(&b, 0xD0 + (rst++ & 7));
                    left = s->restart;
                    line0 = y;
                }
                for (unsigned k = 0; k < ns; k++) {
                    unsigned c = s->interleaved ? k : sc;
                    int32_t v = px[((size_t)y * s->w + x) * s->nc + c] >> pt;
                    uint32_t d16 = (uint32_t)(v - ll_predict(px, s, c, x, y, line0, psv, pt)) & 0xFFFF;
                    if (d16 == 32768) {
                        bw_bits(&w, code[16], len[16]);
                        continue;
                    }
                    int32_t d = d16 > 32768 ? (int32_t)d16 - 65536 : (int32_t)d16;
                    int ssss = 0;
                    for (int32_t a = d < 0 ? -d : d; a; a >>= 1) ssss++;
                    bw_bits(&w, code[ssss], len[ssss]);
                    if (ssss) bw_bits(&w, (uint32_t)(d < 0 ? d + (1 << ssss) - 1 : d), ssss);
                }
                if (s->restart) left--;
            }
        bw_flush(&w);
    }
    put(&b, "\xFF\xD9", 2);
    return b;
}

/* A DICOM file holding one lossless JPEG frame of the spec's image. */
static dbuf ll_dicom(const llspec *s, const unsigned char *fr, size_t fn) {
    unsigned ba = s->prec > 8 ? 16 : 8;
    imgdesc im = {s->h, s->w, s->nc, ba, s->prec, s->prec - 1, 0, 0,
                  s->nc == 1 ? "MONOCHROME2" : "RGB", NULL, NULL, NULL, NULL, NULL};
    dbuf b = {0};
    header(&b, TS_LL14);
    image_attrs(&b, &im);
    const unsigned char *frs[1] = {fr};
    size_t fl[1] = {fn};
    encapsulated(&b, NULL, 0, frs, fl, 1);
    return b;
}

static uint16_t *ll_image(const llspec *s, uint64_t seed) {
    size_t n = (size_t)s->w * s->h * s->nc;
    uint16_t *px = malloc(n * 2);
    ck_assert_ptr_nonnull(px);
    for (size_t i = 0; i < n; i++)
        px[i] = (uint16_t)(tu_rand_u64(&seed) & ((1u << s->prec) - 1));
    return px;
}

static const llspec ll_cases[] = {
    /* 16-bit, first line 0/32768 alternating (every difference SSSS 16),
     * restart every two lines */
    {17, 6, 1, 16, 34, 1, {1, 0, 0}, {0, 0, 0}},
    {9, 5, 1, 2, 0, 1, {7, 0, 0}, {0, 0, 0}},          /* 2-bit samples */
    {7, 6, 3, 12, 7, 0, {4, 5, 6}, {0, 1, 2}},         /* non-interleaved */
    {10, 4, 3, 8, 20, 1, {3, 0, 0}, {0, 0, 0}},        /* interleaved RGB */
    {13, 7, 1, 16, 0, 1, {6, 0, 0}, {3, 0, 0}},        /* point transform 3 */
};

/* The hand-encoded streams decode to their samples (point transform
 * applied); dcmtk's dcmdjpeg, where installed, decodes them the same. */
START_TEST(test_jpegll_by_hand) {
    int dcmtk = have_tool("dcmdjpeg");
    if (!dcmtk) fprintf(stderr, "  note: dcmdjpeg absent; hand-built streams not cross-checked\n");
    for (size_t t = 0; t < sizeof ll_cases / sizeof ll_cases[0]; t++) {
        const llspec *s = &ll_cases[t];
        uint16_t *px = ll_image(s, 1000 + t);
        if (t == 0)
            for (unsigned x = 0; x < s->w; x++) px[x] = x & 1 ? 32768 : 0;
        dbuf fr = ll_encode(px, s);
        dbuf f = ll_dicom(s, fr.d, fr.n);
        char err[512];
        vals v;
        ck_assert_msg(load_vals(&v, NULL, f.d, f.n, 0, err, sizeof err) == MG_OK, "case %zu: %s",
                      t, err);
        ck_assert_uint_eq(v.n, (size_t)s->w * s->h * s->nc);
        for (size_t i = 0; i < v.n; i++) {
            unsigned pt = s->pt[s->interleaved ? 0 : i % s->nc];
            ck_assert_msg(v.v[i] == (px[i] >> pt << pt), "case %zu sample %zu: %lld, want %u", t,
                          i, (long long)v.v[i], (unsigned)(px[i] >> pt << pt));
        }
        if (dcmtk) {
            const char *in = tu_tmp_path("ll_hand.dcm"), *out = tu_tmp_path("ll_hand_ref.dcm");
            ck_assert(tu_write_file(in, f.d, f.n) == 0);
            ck_assert_msg(ref_decompress("dcmdjpeg", in, out), "case %zu: dcmdjpeg failed", t);
            vals r;
            ck_assert_msg(load_vals(&r, out, NULL, 0, 0, err, sizeof err) == MG_OK, "%s", err);
            ck_assert_msg(vals_diff(&v, &r) == 0, "case %zu: dcmdjpeg decodes it differently", t);
            free(r.v);
            remove(in);
            remove(out);
        }
        free(v.v);
        free(f.d);
        free(fr.d);
        free(px);
    }
}
END_TEST

/* Position of the first FF <m> in a hand-built stream (headers only). */
static size_t marker_at(const dbuf *b, unsigned m) {
    for (size_t i = 0; i + 1 < b->n; i++)
        if (b->d[i] == 0xFF && b->d[i + 1] == m) return i;
    ck_abort_msg("marker FF%02X not found", m);
    return 0;
}

/* Lies in lossless JPEG, JPEG-LS and JPEG 2000 headers: each refused with
 * the right status and a message, before anything image-sized is built. */
START_TEST(test_codec_crafted) {
    char err[512];
    mg_image *img;
    /* lossless JPEG */
    const llspec *s = &ll_cases[0];
    uint16_t *px = ll_image(s, 7);
    dbuf good = ll_encode(px, s);
    static const struct { unsigned marker, off, val; mg_status st; const char *needle; } flaw[] = {
        {0xC4, 5 + 0, 2, MG_E_IMAGE_FORMAT, "prefix code"},   /* 2 codes of length 1 ... */
        {0xC3, 1, 0xC0, MG_E_UNSUPPORTED, "DCT"},            /* SOF0 instead of SOF3 */
        {0xC3, 1, 0xCB, MG_E_UNSUPPORTED, "arithmetic"},      /* SOF11 */
        {0xC3, 1, 0xC7, MG_E_UNSUPPORTED, "hierarchical"},    /* SOF7 */
        {0xC3, 4, 1, MG_E_IMAGE_FORMAT, "precision 1"},       /* P = 1 */
        {0xC3, 8, 16, MG_E_IMAGE_FORMAT, "DICOM header says"}, /* 16 samples per line */
        {0xC3, 6, 0, MG_E_UNSUPPORTED, "DNL"},                /* Y = 0 (high byte already 0) */
        {0xC3, 11, 0x21, MG_E_UNSUPPORTED, "sampling"},       /* H = 2 */
        {0xDD, 5, 5, MG_E_UNSUPPORTED, "restart interval 5"}, /* not whole lines */
        {0xDA, 6, 0x10, MG_E_IMAGE_FORMAT, "undefined Huffman"},
        {0xDA, 5, 9, MG_E_IMAGE_FORMAT, "component the frame lacks"},
        {0xDA, 7, 0, MG_E_IMAGE_FORMAT, "predictor 0"},
        {0xDA, 3, 9, MG_E_IMAGE_FORMAT, "SOS"},               /* length */
        {0xD0, 1, 0xD3, MG_E_IMAGE_FORMAT, "restart marker 0"},
        {0xD8, 1, 0xD9, MG_E_IMAGE_FORMAT, "SOI"},
    };
    for (size_t i = 0; i < sizeof flaw / sizeof flaw[0]; i++) {
        dbuf b = {0};
        put(&b, good.d, good.n);
        size_t at = marker_at(&b, flaw[i].marker);
        b.d[at + flaw[i].off] = (unsigned char)flaw[i].val;
        if (i == 0) b.d[at + 5 + 3] = 6; /* ... and 6 of length 4: 17 in all */
        dbuf f = ll_dicom(s, b.d, b.n);
        mg_status st = load_mem(&img, f.d, f.n, MG_WINDOW_NONE, 0, err, sizeof err);
        ck_assert_msg(st == flaw[i].st && strstr(err, flaw[i].needle),
                      "flaw %zu: status %d, message '%s' (wanted '%s')", i, (int)st, err,
                      flaw[i].needle);
        ck_assert_ptr_null(img);
        free(f.d);
        free(b.d);
    }
    /* A point transform as wide as the 2-bit samples. */
    {
        const llspec *s2 = &ll_cases[1];
        uint16_t *p2 = ll_image(s2, 8);
        dbuf b = ll_encode(p2, s2);
        b.d[marker_at(&b, 0xDA) + 9] = 2;
        dbuf f = ll_dicom(s2, b.d, b.n);
        ck_assert_int_eq(load_mem(&img, f.d, f.n, MG_WINDOW_NONE, 0, err, sizeof err),
                         MG_E_IMAGE_FORMAT);
        ck_assert_ptr_nonnull(strstr(err, "point transform"));
        free(f.d);
        free(b.d);
        free(p2);
    }
    /* Samples wider than Bits Allocated: a 16-bit stream in an 8-bit file. */
    {
        llspec s8 = *s;
        s8.prec = 8;
        dbuf f = ll_dicom(&s8, good.d, good.n);
        ck_assert_int_eq(load_mem(&img, f.d, f.n, MG_WINDOW_NONE, 0, err, sizeof err),
                         MG_E_IMAGE_FORMAT);
        ck_assert_ptr_nonnull(strstr(err, "Bits Allocated"));
        free(f.d);
    }
    /* The working memory of the decode is held to max_memory. */
    {
        dbuf f = ll_dicom(s, good.d, good.n);
        mg_image_params p;
        mg_image_params_init(&p);
        p.window = MG_WINDOW_NONE;
        p.max_memory = (uint64_t)s->w * s->h * 8 + 16;
        ck_assert_int_eq(mg_image_load_memory(&img, f.d, f.n, &p, err, sizeof err), MG_E_LIMIT);
        free(f.d);
    }
    free(good.d);
    free(px);

    /* JPEG 2000: SOC + SIZ only, checked against a 64x64 grey 16-bit header. */
    struct { unsigned w, h, tw, th, nc, prec, sub, rows, cols; uint64_t mem; mg_status st;
             const char *needle; } j[] = {
        {64, 64, 64, 64, 3, 16, 1, 64, 64, 0, MG_E_IMAGE_FORMAT, "with 3 components"},
        {65, 64, 64, 64, 1, 16, 1, 64, 64, 0, MG_E_IMAGE_FORMAT, "DICOM header says"},
        {64, 64, 64, 64, 1, 16, 2, 64, 64, 0, MG_E_IMAGE_FORMAT, "subsampled"},
        {64, 64, 64, 64, 1, 17, 1, 64, 64, 0, MG_E_IMAGE_FORMAT, "17-bit"},
        {64, 64, 0, 64, 1, 16, 1, 64, 64, 0, MG_E_IMAGE_FORMAT, "tile grid"},
        /* 241 x 241 tiles of 17 x 17 on a 4096 x 4096 canvas */
        {4096, 4096, 17, 17, 1, 16, 1, 4096, 4096, 256u << 20, MG_E_LIMIT, "tiles"},
        {4096, 4096, 1, 1, 1, 16, 1, 4096, 4096, 0, MG_E_LIMIT, "tiles"},
        /* a valid main header cut after SIZ: OpenJPEG's own message */
        {64, 64, 64, 64, 1, 16, 1, 64, 64, 0, MG_E_IMAGE_FORMAT, "JPEG 2000: "},
    };
    for (size_t i = 0; i < sizeof j / sizeof j[0]; i++) {
        dbuf c = {0};
        put(&c, "\xFF\x4F\xFF\x51", 4);
        put16be(&c, 38 + 3 * j[i].nc);
        put16be(&c, 0);
        const uint32_t v[8] = {j[i].w, j[i].h, 0, 0, j[i].tw, j[i].th, 0, 0};
        for (int k = 0; k < 8; k++) {
            put16be(&c, v[k] >> 16);
            put16be(&c, v[k] & 0xFFFF);
        }
        put16be(&c, j[i].nc);
        for (unsigned k = 0; k < j[i].nc; k++) {
            put8(&c, j[i].prec - 1);
            put8(&c, j[i].sub);
            put8(&c, j[i].sub);
        }
        imgdesc im = {j[i].rows, j[i].cols, 1, 16, 16, 15, 0, 0, "MONOCHROME2", NULL, NULL, NULL,
                      NULL, NULL};
        dbuf f = {0};
        header(&f, TS_J2K);
        image_attrs(&f, &im);
        const unsigned char *frs[1] = {c.d};
        size_t fl[1] = {c.n};
        encapsulated(&f, NULL, 0, frs, fl, 1);
        mg_image_params p;
        mg_image_params_init(&p);
        if (j[i].mem) p.max_memory = j[i].mem;
        mg_status st = mg_image_load_memory(&img, f.d, f.n, &p, err, sizeof err);
        ck_assert_msg(st == j[i].st && strstr(err, j[i].needle),
                      "J2K case %zu: status %d, message '%s' (wanted '%s')", i, (int)st, err,
                      j[i].needle);
        free(f.d);
        free(c.d);
    }
    /* A JP2 signature without a codestream box; a frame that is no J2K. */
    {
        static const unsigned char jp2[] = {0, 0, 0, 12, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A,
                                            0, 0, 0, 20, 'f', 't', 'y', 'p', 'j', 'p', '2', ' ',
                                            0, 0, 0, 0, 'j', 'p', '2', ' '};
        static const unsigned char junk[] = {0xFF, 0xD8, 0xFF, 0xD9};
        const unsigned char *frames[2] = {jp2, junk};
        size_t lens[2] = {sizeof jp2, sizeof junk};
        const char *needle[2] = {"jp2c", "SOC"};
        for (int k = 0; k < 2; k++) {
            imgdesc im = {64, 64, 1, 16, 16, 15, 0, 0, "MONOCHROME2", NULL, NULL, NULL, NULL, NULL};
            dbuf f = {0};
            header(&f, TS_J2K_LOSSLESS);
            image_attrs(&f, &im);
            encapsulated(&f, NULL, 0, &frames[k], &lens[k], 1);
            ck_assert_int_eq(load_mem(&img, f.d, f.n, MG_WINDOW_FILE, 0, err, sizeof err),
                             MG_E_IMAGE_FORMAT);
            ck_assert_msg(strstr(err, needle[k]), "'%s' lacks '%s'", err, needle[k]);
            free(f.d);
        }
    }

    /* Real frames under a header that lies about them, and a memory cap. */
    const char *dir = dicom_dir();
    if (!dir) { fprintf(stderr, "  skipped (corpus part): shared DICOM data absent\n"); return; }
    static const struct { const char *rel, *ts; } real[] = {
        {"transfer_syntax_variants/MR_small_jpeg_ls_lossless.dcm", TS_JLS},
        {"transfer_syntax_variants/MR_small_jp2klossless.dcm", TS_J2K_LOSSLESS},
    };
    for (size_t i = 0; i < 2; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, real[i].rel);
        size_t n, pix, fn;
        unsigned char *d = tu_read_file(path, &n), *fr;
        if (!d) { fprintf(stderr, "  skipped: %s absent\n", real[i].rel); continue; }
        ck_assert(split_encapsulated(d, n, &pix, &fr, &fn));
        /* 64x64 16-bit frames said to be 32x64, and 8-bit */
        imgdesc lie[2] = {{64, 32, 1, 16, 16, 15, 1, 0, "MONOCHROME2", NULL, NULL, NULL, NULL, NULL},
                          {64, 64, 1, 8, 8, 7, 0, 0, "MONOCHROME2", NULL, NULL, NULL, NULL, NULL}};
        const char *needle[2] = {"DICOM header says", "allow"};
        for (int k = 0; k < 2; k++) {
            dbuf f = {0};
            header(&f, real[i].ts);
            image_attrs(&f, &lie[k]);
            const unsigned char *frs[1] = {fr};
            encapsulated(&f, NULL, 0, frs, &fn, 1);
            ck_assert_int_eq(load_mem(&img, f.d, f.n, MG_WINDOW_NONE, 0, err, sizeof err),
                             MG_E_IMAGE_FORMAT);
            ck_assert_msg(strstr(err, needle[k]), "%s: '%s' lacks '%s'", real[i].rel, err,
                          needle[k]);
            free(f.d);
        }
        /* The 32 KiB of working samples fit, the codec's buffers do not. */
        mg_image_params p;
        mg_image_params_init(&p);
        p.window = MG_WINDOW_NONE;
        p.max_memory = 64 * 64 * 8 + 2048;
        ck_assert_int_eq(mg_image_load_memory(&img, d, n, &p, err, sizeof err), MG_E_LIMIT);
        ck_assert_ptr_null(img);
        free(fr);
        free(d);
    }
}
END_TEST

/* Every prefix of a compressed frame (in steps for the larger ones) and
 * seeded byte flips of it, each re-wrapped in its file's header so that it
 * reaches the codec: an image or an error with a message, never a crash,
 * leak or read out of bounds (ASan, valgrind). */
static void hostile_frame(const char *what, const unsigned char *hdr, size_t hn,
                          const unsigned char *fr, size_t fn, size_t step, size_t step_vg,
                          int flips) {
    char err[512];
    mg_image *img;
    mg_image_params p;
    mg_image_params_init(&p);
    p.max_memory = 64u << 20;
    size_t s = tu_under_valgrind() ? step_vg : step;
    size_t n_ok = 0, n_err = 0;
    for (size_t len = 0; len < fn; len += s) {
        unsigned char *c = malloc(len ? len : 1); /* exact size: overreads show */
        memcpy(c, fr, len);
        dbuf b = with_frame(hdr, hn, c, len);
        err[0] = '\0';
        mg_status st = mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err);
        if (st == MG_OK) { n_ok++; mg_image_free(img); }
        else { n_err++; ck_assert_msg(err[0] != '\0', "%s prefix %zu: no message", what, len); }
        free(b.d);
        free(c);
    }
    uint64_t seed = 0x2545F4914F6CDD1Dull ^ fn;
    int rounds = tu_under_valgrind() ? flips / 10 : flips;
    for (int r = 0; r < rounds; r++) {
        unsigned char *c = malloc(fn);
        memcpy(c, fr, fn);
        int k = 1 + (int)(tu_rand_u64(&seed) % 6);
        for (int i = 0; i < k; i++) {
            /* Mostly in the first bytes (markers and headers), else anywhere. */
            size_t span = (tu_rand_u64(&seed) & 1) ? (fn < 256 ? fn : 256) : fn;
            c[tu_rand_u64(&seed) % span] ^= (unsigned char)(1u << (tu_rand_u64(&seed) % 8));
        }
        dbuf b = with_frame(hdr, hn, c, fn);
        for (int w = 0; w < 2; w++) {
            p.window = w ? MG_WINDOW_NONE : MG_WINDOW_FILE;
            err[0] = '\0';
            mg_status st = mg_image_load_memory(&img, b.d, b.n, &p, err, sizeof err);
            if (st == MG_OK) mg_image_free(img);
            else ck_assert_msg(err[0] != '\0', "%s flip round %d: no message", what, r);
        }
        p.window = MG_WINDOW_FILE;
        free(b.d);
        free(c);
    }
    (void)n_ok;
    (void)n_err;
}

static void hostile_corpus_frame(const char *rel, size_t step, size_t step_vg, int flips) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dicom_dir(), rel);
    size_t n, pix, fn;
    unsigned char *d = tu_read_file(path, &n), *fr;
    if (!d) { fprintf(stderr, "  skipped: %s absent\n", rel); return; }
    ck_assert_msg(split_encapsulated(d, n, &pix, &fr, &fn), "%s: no encapsulated frame", rel);
    hostile_frame(rel, d, pix, fr, fn, step, step_vg, flips);
    free(fr);
    free(d);
}

START_TEST(test_hostile_codecs) {
    /* lossless JPEG: a hand-built stream with restart markers and SSSS 16 */
    const llspec *s = &ll_cases[0];
    uint16_t *px = ll_image(s, 11);
    for (unsigned x = 0; x < s->w; x++) px[x] = x & 1 ? 32768 : 0;
    dbuf fr = ll_encode(px, s);
    dbuf f = ll_dicom(s, fr.d, fr.n);
    size_t pix, fn;
    unsigned char *frame;
    ck_assert(split_encapsulated(f.d, f.n, &pix, &frame, &fn));
    hostile_frame("hand-built lossless JPEG", f.d, pix, frame, fn, 1, 1, 400);
    free(frame);
    free(f.d);
    free(fr.d);
    free(px);
    /* the non-interleaved 3-component one */
    s = &ll_cases[2];
    px = ll_image(s, 12);
    fr = ll_encode(px, s);
    f = ll_dicom(s, fr.d, fr.n);
    ck_assert(split_encapsulated(f.d, f.n, &pix, &frame, &fn));
    hostile_frame("hand-built 3-scan lossless JPEG", f.d, pix, frame, fn, 1, 3, 300);
    free(frame);
    free(f.d);
    free(fr.d);
    free(px);

    if (!dicom_dir()) { fprintf(stderr, "  skipped (corpus part): shared DICOM data absent\n"); return; }
    hostile_corpus_frame("transfer_syntax_variants/SC_rgb_jpeg_gdcm.dcm", 1, 23, 300);
    hostile_corpus_frame("transfer_syntax_variants/MR_small_jpeg_ls_lossless.dcm", 1, 29, 300);
    hostile_corpus_frame("transfer_syntax_variants/MR_small_jp2klossless.dcm", 1, 31, 300);
    hostile_corpus_frame("transfer_syntax_variants/SC_rgb_gdcm_KY.dcm", 1, 7, 300);
    hostile_corpus_frame("transfer_syntax_variants/JPEG2000.dcm", 1, 3, 300);
    hostile_corpus_frame("transfer_syntax_variants/693_J2KI.dcm", 1, 17, 200);
    /* 30 KB JP2 of a 400x400 RGB image: every 37th prefix */
    hostile_corpus_frame("transfer_syntax_variants/GDCMJ2K_TextGBR.dcm", 37, 997, 100);
}
END_TEST

/* The CR chest radiograph (JPEG 2000, lossy): decodes to exactly the values
 * of its uncompressed copy (decoded by pydicom with Pillow's OpenJPEG), and
 * reports its syntax. */
START_TEST(test_cr_chest_j2k) {
    const char *a = tu_shared_file("dicom/cr_chest/RG1_J2KI.dcm");
    char pa[4200];
    if (!a) { fprintf(stderr, "  skipped: cr_chest/RG1_J2KI.dcm absent\n"); return; }
    snprintf(pa, sizeof pa, "%s", a);
    const char *b = tu_shared_file("dicom/cr_chest/RG1_J2KI_decoded_ExplicitVRLittleEndian.dcm");
    char err[512];
    mg_image *img;
    ck_assert_msg(mg_image_load_file(&img, pa, NULL, err, sizeof err) == MG_OK, "%s", err);
    mg_image_info in = info_of(img);
    ck_assert_uint_eq(in.width, 1841);
    ck_assert_uint_eq(in.height, 1955);
    ck_assert_uint_eq(in.bits_stored, 15);
    ck_assert_int_eq(in.window, MG_WINDOW_FILE);
    ck_assert_str_eq(mg_image_get_string(img, "transfer_syntax"), "JPEG 2000");
    ck_assert_str_eq(mg_image_get_string(img, "transfer_syntax_uid"), TS_J2K);
    ck_assert_str_eq(mg_image_get_string(img, "photometric"), "MONOCHROME1");
    ck_assert_str_eq(mg_image_get_string(img, "modality"), "CR");
    mg_image_free(img);
    if (!b) { fprintf(stderr, "  note: the decoded copy is absent; values not compared\n"); return; }
    expect_same_frames(pa, b, "cr_chest/RG1_J2KI.dcm");
}
END_TEST

int main(void) {
    Suite *s = suite_create("dicom");
    TCase *tc = tcase_create("dicom");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_window_by_hand);
    tcase_add_test(tc, test_signed_mono1_raw);
    tcase_add_test(tc, test_planar_frames);
    tcase_add_test(tc, test_rle_by_hand);
    tcase_add_test(tc, test_crafted_hostile);
    tcase_add_test(tc, test_params_abi);
    tcase_add_test(tc, test_named_refusals);
    tcase_add_test(tc, test_jpeg_frames);
    tcase_add_test(tc, test_bare_dataset);
    tcase_add_test(tc, test_corpus);
    tcase_add_test(tc, test_hostile_corpus);
    tcase_add_test(tc, test_jpegll_by_hand);
    tcase_add_test(tc, test_codec_crafted);
    tcase_add_test(tc, test_compressed_corpus);
    tcase_add_test(tc, test_compressed_roundtrip);
    tcase_add_test(tc, test_j2k_component_transforms);
    tcase_add_test(tc, test_cr_chest_j2k);
    tcase_add_test(tc, test_hostile_codecs);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
