/* volume.c - `medgemini volume`: assemble a volume from a DICOM series (or
 * read a NIfTI file), print what was assembled, and write it as NIfTI-1. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "medgemini.h"
#include "cli.h"

static void volume_usage(FILE *f) {
    fprintf(f,
        "usage: medgemini volume SRC... (--info | -o OUT.nii[.gz] | --slices-dir DIR)\n"
        "                        [options]\n"
        "  SRC             DICOM files and/or folders of one series, or one NIfTI\n"
        "                  file (.nii or .nii.gz)\n"
        "  --info          print the size, spacing, orientation, affine, series\n"
        "                  UID, value range, warnings and the slices used\n"
        "  -o OUT          write NIfTI-1 (gzip-compressed when OUT ends in .gz):\n"
        "                  int16 when every value is an integer that fits, else\n"
        "                  float32; qform and sform in RAS+ as dcm2niix writes\n"
        "  --float32       always write float32\n"
        "  --slices-dir DIR  write the slices a model reads (MedGemma 1.5's recipe,\n"
        "                  docs/VOLUME.md) as DIR/slice_001.ppm ... and print, for\n"
        "                  each, the volume's z index\n"
        "  --slices N      at most N evenly spaced slices (default 85)\n"
        "  --window W      auto (CT windows for CT, else min-max), ct or minmax\n"
        "  --as-stored     slices in voxel order, not the radiological view\n"
        "  --series UID    DICOM: the series to assemble (default: the one with\n"
        "                  the most slices)\n"
        "  --recursive     DICOM: also look into subfolders\n"
        "  --keep-duplicates  DICOM: keep the first of slices sharing a position\n"
        "  --strict-spacing   DICOM: uneven slice spacing is an error\n"
        "  --strict-series    DICOM: several series without --series is an error\n"
        "  --max-voxels N  refuse volumes of more voxels (default 2^29)\n");
}

static int is_nifti_name(const char *p) {
    size_t n = strlen(p);
    return (n > 4 && strcmp(p + n - 4, ".nii") == 0) ||
           (n > 7 && strcmp(p + n - 7, ".nii.gz") == 0);
}

/* The patient direction a vector points to most (LPS+ axes). */
static char axis_code(const double *a, int col) {
    double x = a[col], y = a[4 + col], z = a[8 + col];
    double ax = fabs(x), ay = fabs(y), az = fabs(z);
    if (ax >= ay && ax >= az) return x >= 0 ? 'L' : 'R';
    if (ay >= az) return y >= 0 ? 'P' : 'A';
    return z >= 0 ? 'S' : 'I';
}

static void print_lines(const char *s, const char *indent) {
    while (s && *s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        printf("%s%.*s\n", indent, (int)n, s);
        s = e ? e + 1 : s + n;
    }
}

static void print_info(const mg_volume *v, const mg_volume_info *in) {
    const char *s;
    static const char *src[] = {"voxels", "DICOM", "NIfTI"};
    printf("source: %s\n", in->source >= 0 && in->source <= 2 ? src[in->source] : "?");
    printf("size: %u x %u x %u\n", (unsigned)in->nx, (unsigned)in->ny,
           (unsigned)in->nz);
    printf("spacing: %.6g %.6g %.6g mm\n", in->spacing[0], in->spacing[1],
           in->spacing[2]);
    printf("orientation: %c%c%c (x, y, z axes; LPS+ patient coordinates)\n",
           axis_code(in->affine, 0), axis_code(in->affine, 1),
           axis_code(in->affine, 2));
    for (int c = 0; c < 3; c++) {
        double l = in->spacing[c] > 0 ? in->spacing[c] : 1;
        printf("  %c direction: %.6f %.6f %.6f\n", "xyz"[c], in->affine[c] / l,
               in->affine[4 + c] / l, in->affine[8 + c] / l);
    }
    printf("origin: %.6g %.6g %.6g mm (LPS+, centre of the first voxel)\n",
           in->affine[3], in->affine[7], in->affine[11]);
    printf("affine (voxel -> LPS+ mm):\n");
    for (int r = 0; r < 4; r++)
        printf("  %12.6f %12.6f %12.6f %12.6f\n", in->affine[4 * r],
               in->affine[4 * r + 1], in->affine[4 * r + 2],
               in->affine[4 * r + 3]);
    if ((s = mg_volume_get_string(v, "modality"))) printf("modality: %s\n", s);
    if ((s = mg_volume_get_string(v, "series_uid"))) printf("series: %s\n", s);
    if ((s = mg_volume_get_string(v, "description")))
        printf("description: %s\n", s);
    printf("values: %.9g .. %.9g\n", in->min_value, in->max_value);
    if (in->source == MG_VOLUME_SRC_DICOM)
        printf("files: %u used, %u skipped\n", (unsigned)in->n_files,
               (unsigned)in->n_skipped);
    printf("warnings: %u\n", (unsigned)in->n_warnings);
    print_lines(mg_volume_get_string(v, "warnings"), "  ");
    if ((s = mg_volume_get_string(v, "slices"))) {
        printf("slices (z, file, frame):\n");
        unsigned z = 0;
        while (*s) {
            const char *e = strchr(s, '\n');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            const char *tab = memchr(s, '\t', n);
            size_t pl = tab ? (size_t)(tab - s) : n;
            printf("  %u %.*s", z++, (int)pl, s);
            if (tab) printf(" %.*s", (int)(n - pl - 1), tab + 1);
            printf("\n");
            s = e ? e + 1 : s + n;
        }
    }
}

/* The model's slices as DIR/slice_NNN.ppm, and their z indices on stdout. */
static int write_slices(const mg_volume *v, const char *dir, const mg_slice_params *sp) {
    char err[512], path[4096];
    size_t n = 0;
    mg_status st = mg_volume_slices(NULL, 0, &n, NULL, v, sp, err, sizeof err);
    mg_image **imgs = st ? NULL : calloc(n ? n : 1, sizeof *imgs);
    uint32_t *z = st ? NULL : calloc(n ? n : 1, sizeof *z);
    if (!st && (!imgs || !z)) st = MG_E_NOMEM, snprintf(err, sizeof err, "out of memory");
    if (!st) st = mg_volume_slices(imgs, n, &n, z, v, sp, err, sizeof err);
    if (st) {
        fprintf(stderr, "medgemini volume: %s (%s)\n", err, mg_status_str(st));
        free(imgs);
        free(z);
        return 1;
    }
    mkdir(dir, 0777); /* may exist; fopen says when it is unusable */
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        mg_image_info in;
        memset(&in, 0, sizeof in);
        in.struct_size = sizeof in;
        mg_image_info_get(&in, imgs[i]);
        size_t size = 0;
        mg_image_copy_pixels(NULL, 0, &size, imgs[i]);
        unsigned char *px = malloc(size ? size : 1);
        snprintf(path, sizeof path, "%s/slice_%03zu.ppm", dir, i + 1);
        st = px ? mg_image_copy_pixels(px, size, &size, imgs[i]) : MG_E_NOMEM;
        if (st) {
            fprintf(stderr, "medgemini volume: slice %zu: %s\n", i + 1, mg_status_str(st));
            free(px);
            bad = 1;
            break;
        }
        errno = 0;
        FILE *f = fopen(path, "wb");
        int e = f ? 0 : errno;
        if (!e && (fprintf(f, "P6\n%u %u\n255\n", (unsigned)in.width, (unsigned)in.height) < 0 ||
                   fwrite(px, 1, size, f) != size || ferror(f)))
            e = errno ? errno : EIO;
        if (f && fclose(f) && !e) e = errno ? errno : EIO;
        free(px);
        bad = e != 0;
        if (bad) fprintf(stderr, "medgemini volume: cannot write '%s': %s\n", path, strerror(e));
        else printf("slice %zu: z %u\n", i + 1, (unsigned)z[i]);
    }
    for (size_t i = 0; i < n; i++) mg_image_free(imgs[i]);
    free(imgs);
    free(z);
    return bad;
}

int cli_volume(int argc, char **argv) {
    const char *out = NULL, *slices_dir = NULL;
    mg_slice_params sp;
    mg_slice_params_init(&sp);
    int info = 0;
    uint32_t wflags = 0;
    mg_volume_params p;
    mg_volume_params_init(&p);
    const char **src = calloc((size_t)argc + 1, sizeof *src);
    size_t n_src = 0;
    if (!src) {
        fprintf(stderr, "medgemini volume: out of memory\n");
        return 1;
    }
    int rc = 2;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            volume_usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else if (!strcmp(a, "--slices-dir") && i + 1 < argc) {
            slices_dir = argv[++i];
        } else if (!strcmp(a, "--slices") && i + 1 < argc) {
            char *end;
            const char *s = argv[++i];
            unsigned long v = strtoul(s, &end, 10);
            if (end == s || *end || s[0] == '-' || v == 0 || v > MG_MAX_SLICES) {
                fprintf(stderr, "medgemini volume: bad --slices '%s'\n", s);
                goto done;
            }
            sp.max_slices = (uint32_t)v;
        } else if (!strcmp(a, "--window") && i + 1 < argc) {
            const char *w = argv[++i];
            if (!strcmp(w, "auto")) sp.window = MG_SLICE_WINDOW_AUTO;
            else if (!strcmp(w, "ct")) sp.window = MG_SLICE_WINDOW_CT;
            else if (!strcmp(w, "minmax")) sp.window = MG_SLICE_WINDOW_MINMAX;
            else {
                fprintf(stderr, "medgemini volume: bad --window '%s' (auto, ct, minmax)\n", w);
                goto done;
            }
        } else if (!strcmp(a, "--as-stored")) {
            sp.flags |= MG_SLICES_AS_STORED;
        } else if (!strcmp(a, "--float32")) {
            wflags |= MG_NIFTI_FLOAT32;
        } else if (!strcmp(a, "--series") && i + 1 < argc) {
            p.series_uid = argv[++i];
        } else if (!strcmp(a, "--recursive")) {
            p.flags |= MG_VOLUME_RECURSIVE;
        } else if (!strcmp(a, "--keep-duplicates")) {
            p.flags |= MG_VOLUME_KEEP_DUPLICATES;
        } else if (!strcmp(a, "--strict-spacing")) {
            p.flags |= MG_VOLUME_STRICT_SPACING;
        } else if (!strcmp(a, "--strict-series")) {
            p.flags |= MG_VOLUME_STRICT_SERIES;
        } else if (!strcmp(a, "--max-voxels") && i + 1 < argc) {
            char *end;
            const char *s = argv[++i];
            errno = 0;
            unsigned long long v = strtoull(s, &end, 10);
            if (errno || end == s || *end || s[0] == '-' || v == 0) {
                fprintf(stderr, "medgemini volume: bad --max-voxels '%s'\n", s);
                goto done;
            }
            p.max_voxels = v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "medgemini volume: unknown option '%s'\n", a);
            volume_usage(stderr);
            goto done;
        } else {
            src[n_src++] = a;
        }
    }
    if (!n_src || (!out && !info && !slices_dir)) {
        volume_usage(stderr);
        goto done;
    }
    struct stat sb;
    int nifti = n_src == 1 && is_nifti_name(src[0]) && stat(src[0], &sb) == 0 &&
                S_ISREG(sb.st_mode);
    char err[1024];
    mg_volume *v = NULL;
    mg_status st = nifti ? mg_volume_load_nifti(&v, src[0], &p, err, sizeof err)
                         : mg_volume_load_dicom(&v, src, n_src, &p, err, sizeof err);
    if (st) {
        fprintf(stderr, "medgemini volume: %s (%s)\n", err, mg_status_str(st));
        rc = 1;
        goto done;
    }
    mg_volume_info in;
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    if ((st = mg_volume_info_get(&in, v)) != MG_OK) {
        fprintf(stderr, "medgemini volume: %s\n", mg_status_str(st));
        mg_volume_free(v);
        rc = 1;
        goto done;
    }
    rc = 0;
    if (info) print_info(v, &in);
    else if (in.n_warnings) /* not asked for, but worth knowing */
        fprintf(stderr, "medgemini volume: %u warning(s) (see --info)\n",
                (unsigned)in.n_warnings);
    if (out) {
        st = mg_volume_write_nifti(v, out, wflags, err, sizeof err);
        if (st) {
            fprintf(stderr, "medgemini volume: %s (%s)\n", err,
                    mg_status_str(st));
            rc = 1;
        }
    }
    if (slices_dir && write_slices(v, slices_dir, &sp)) rc = 1;
    mg_volume_free(v);
done:
    free(src);
    return rc;
}
