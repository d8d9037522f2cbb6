/* image.c - `medgemini image`: decode a JPEG, PNG or DICOM file and write
 * the decoded pixels (before any resizing for a model) as PGM/PPM, or print
 * what was read. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medgemini.h"
#include "cli.h"

static void image_usage(FILE *f) {
    fprintf(f,
        "usage: medgemini image FILE (-o OUT.pgm|OUT.ppm | --info) [options]\n"
        "  -o OUT        write the decoded pixels: PGM for grey, PPM for colour,\n"
        "                16-bit (big-endian, maxval 65535) when the pixels have more\n"
        "                than 8 bits\n"
        "  --info        print size, bits, photometric, transfer syntax, window,\n"
        "                frames and rescale\n"
        "  --frame N     frame of a multi-frame DICOM file (0-based; default 0)\n"
        "  --raw         DICOM: modality values (after Rescale Slope/Intercept),\n"
        "                no windowing; written as 16-bit PGM with the offset that\n"
        "                --info reports (value = pixel + raw offset)\n"
        "  --window C,W  DICOM: window center and width (default: the file's\n"
        "                window, else the frame's min..max)\n"
        "  --auto-window DICOM: window from the frame's min..max even if the file\n"
        "                has one\n");
}

static const char *window_name(int32_t w) {
    switch (w) {
    case MG_WINDOW_FILE: return "file";
    case MG_WINDOW_AUTO: return "auto (min..max)";
    case MG_WINDOW_EXPLICIT: return "explicit";
    case MG_WINDOW_NONE: return "none";
    default: return "?";
    }
}

static const char *source_name(int32_t s) {
    switch (s) {
    case MG_IMAGE_SRC_JPEG: return "JPEG";
    case MG_IMAGE_SRC_PNG: return "PNG";
    case MG_IMAGE_SRC_DICOM: return "DICOM";
    default: return "pixels";
    }
}

static int parse_u32(const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > 0xFFFFFFFFul) return 1;
    *out = (uint32_t)v;
    return 0;
}

static int write_pnm(const char *path, const mg_image_info *info,
                     const unsigned char *px, size_t size) {
    int gray = info->format == MG_PIXEL_GRAY8 || info->format == MG_PIXEL_GRAY16;
    int wide = info->format == MG_PIXEL_GRAY16 || info->format == MG_PIXEL_RGB16;
    const char *dot = strrchr(path, '.');
    if (dot && ((gray && !strcmp(dot, ".ppm")) || (!gray && !strcmp(dot, ".pgm")))) {
        fprintf(stderr, "medgemini image: the image is %s; use a .%s name\n",
                gray ? "grey" : "colour", gray ? "pgm" : "ppm");
        return 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "medgemini image: cannot create '%s': %s\n", path,
                strerror(errno));
        return 1;
    }
    errno = 0;
    int bad = fprintf(f, "P%c\n%u %u\n%u\n", gray ? '5' : '6', (unsigned)info->width,
                      (unsigned)info->height, wide ? 65535u : 255u) < 0;
    if (wide) { /* PNM stores 16-bit samples most significant byte first */
        const uint16_t *s = (const uint16_t *)(const void *)px;
        for (size_t i = 0; i < size / 2 && !bad; i++) {
            unsigned char b[2] = {(unsigned char)(s[i] >> 8),
                                  (unsigned char)(s[i] & 0xFF)};
            bad = fwrite(b, 1, 2, f) != 2;
        }
    } else if (!bad) {
        bad = fwrite(px, 1, size, f) != size;
    }
    int e = bad || ferror(f) ? (errno ? errno : EIO) : 0;
    if (fclose(f) != 0 && !e) e = errno ? errno : EIO;
    if (e) {
        fprintf(stderr, "medgemini image: cannot write '%s': %s\n", path, strerror(e));
        return 1;
    }
    return 0;
}

static void print_info(const mg_image *img, const mg_image_info *in) {
    const char *s;
    printf("source: %s\n", source_name(in->source));
    printf("size: %ux%u\n", (unsigned)in->width, (unsigned)in->height);
    printf("format: %s\n", in->format == MG_PIXEL_GRAY8 ? "gray8"
                           : in->format == MG_PIXEL_GRAY16 ? "gray16"
                           : in->format == MG_PIXEL_RGB8 ? "rgb8" : "rgb16");
    printf("bits: %u stored, %u allocated, %s\n", (unsigned)in->bits_stored,
           (unsigned)in->bits_allocated, in->pixel_signed ? "signed" : "unsigned");
    printf("photometric: %s\n", (s = mg_image_get_string(img, "photometric")) ? s : "");
    if ((s = mg_image_get_string(img, "transfer_syntax")))
        printf("transfer syntax: %s (%s)\n", s,
               mg_image_get_string(img, "transfer_syntax_uid")
                   ? mg_image_get_string(img, "transfer_syntax_uid") : "");
    if ((s = mg_image_get_string(img, "modality"))) printf("modality: %s\n", s);
    printf("frames: %u (decoded frame %u)\n", (unsigned)in->n_frames,
           (unsigned)in->frame);
    printf("rescale: slope %.17g intercept %.17g\n", in->rescale_slope,
           in->rescale_intercept);
    if (in->window == MG_WINDOW_NONE)
        printf("window: none\n");
    else
        printf("window: %s center %.17g width %.17g\n", window_name(in->window),
               in->window_center, in->window_width);
    if (in->source == MG_IMAGE_SRC_DICOM && in->window == MG_WINDOW_NONE &&
        (in->format == MG_PIXEL_GRAY16 || in->format == MG_PIXEL_GRAY8))
        printf("raw offset: %d (modality value = pixel + offset)\n",
               (int)in->raw_offset);
}

int cli_image(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    int info = 0;
    mg_image_params p;
    mg_image_params_init(&p);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            image_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else if (!strcmp(a, "--raw")) {
            p.window = MG_WINDOW_NONE;
        } else if (!strcmp(a, "--auto-window")) {
            p.window = MG_WINDOW_AUTO;
        } else if (!strcmp(a, "--frame") && i + 1 < argc) {
            if (parse_u32(argv[++i], &p.frame)) {
                fprintf(stderr, "medgemini image: bad frame '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--window") && i + 1 < argc) {
            char *end;
            const char *w = argv[++i];
            p.window_center = strtod(w, &end);
            if (end == w || *end != ',') {
                fprintf(stderr, "medgemini image: --window wants C,W\n");
                return 2;
            }
            const char *w2 = end + 1;
            p.window_width = strtod(w2, &end);
            if (end == w2 || *end) {
                fprintf(stderr, "medgemini image: --window wants C,W\n");
                return 2;
            }
            p.window = MG_WINDOW_EXPLICIT;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "medgemini image: unknown option '%s'\n", a);
            image_usage(stderr);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "medgemini image: more than one input file\n");
            return 2;
        }
    }
    if (!path || (!out && !info)) {
        image_usage(stderr);
        return 2;
    }
    char err[512];
    mg_image *img = NULL;
    mg_status st = mg_image_load_file(&img, path, &p, err, sizeof err);
    if (st) {
        fprintf(stderr, "medgemini image: %s: %s (%s)\n", path, err,
                mg_status_str(st));
        return 1;
    }
    mg_image_info in;
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    if ((st = mg_image_info_get(&in, img)) != MG_OK) {
        fprintf(stderr, "medgemini image: %s: %s\n", path, mg_status_str(st));
        mg_image_free(img);
        return 1;
    }
    int rc = 0;
    if (info) print_info(img, &in);
    if (out) {
        size_t need = 0;
        st = mg_image_copy_pixels(NULL, 0, &need, img);
        unsigned char *px = st == MG_OK || st == MG_E_BUFFER_TOO_SMALL ? malloc(need ? need : 1)
                                                                       : NULL;
        if (px && (st = mg_image_copy_pixels(px, need, NULL, img)) == MG_OK) {
            rc = write_pnm(out, &in, px, need);
        } else {
            fprintf(stderr, "medgemini image: %s: %s\n", path,
                    mg_status_str(px || (st != MG_OK && st != MG_E_BUFFER_TOO_SMALL) ? st
                                                                                     : MG_E_NOMEM));
            rc = 1;
        }
        free(px);
    }
    mg_image_free(img);
    return rc;
}
