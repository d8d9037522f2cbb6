/* volume.h - the 3D volume object behind mg_volume, and the helpers its
 * readers (volume_dicom.c, nifti.c) share. docs/VOLUME.md states the rules. */
#ifndef MG_VOLUME_H
#define MG_VOLUME_H

#include "core/core.h"

struct mg_volume {
    uint32_t tag;              /* MG__TAG_VOLUME */
    uint32_t nx, ny, nz;
    uint64_t serial;           /* mg__serial_next() at creation */
    int32_t source;            /* MG_VOLUME_SRC_* */
    uint32_t n_files, n_skipped, n_warnings;
    double affine[16];         /* row-major, voxel -> LPS+ mm */
    double spacing[3];         /* column lengths of the affine */
    double vmin, vmax;         /* finite range; NaN when none */
    size_t n_voxels;
    float *voxels;             /* owned; mg__aligned_alloc(64, 4 * n) */
    char modality[20];
    char series_uid[68];
    char study_uid[68];
    char frame_of_ref_uid[68];
    char description[81];
    char *warnings;            /* owned, "" or '\n'-terminated lines */
    char *slices;              /* owned, "" or lines "PATH\tFRAME\n" */
};

static inline int mg__volume_ok(const mg_volume *v) {
    return v && v->tag == MG__TAG_VOLUME;
}

/* Validates params (struct_size 4..64 KiB, known flags, reserved 0) and
 * copies what the caller's struct_size covers over the defaults; a zero
 * limit means the default. src may be NULL. Errors: MG_E_INVALID_ARG. */
mg_status mg__volume_params_get(mg_volume_params *dst,
                                const mg_volume_params *src, char *err,
                                size_t errlen);

/* Checks nx*ny*nz against max_voxels and 4 bytes a voxel plus `extra`
 * bytes against max_memory; *n receives the voxel count. Errors:
 * MG_E_INVALID_ARG (a zero size), MG_E_LIMIT (the message says which). */
mg_status mg__volume_check_limits(size_t *n, uint64_t nx, uint64_t ny,
                                  uint64_t nz, uint64_t extra,
                                  const mg_volume_params *p, const char *what,
                                  char *err, size_t errlen);

/* A new volume with uninitialised voxels (limits checked as above) and
 * empty strings. Errors: those of mg__volume_check_limits, MG_E_NOMEM. */
mg_status mg__volume_alloc(mg_volume **out, uint32_t nx, uint32_t ny,
                           uint32_t nz, uint64_t extra,
                           const mg_volume_params *p, const char *what,
                           char *err, size_t errlen);

/* Sets the affine (copied) and derives the spacing, computes the value
 * range; call once the voxels are in place. */
void mg__volume_finish(mg_volume *v, const double affine[16]);

/* Whether a 4x4 row-major affine is usable: finite, bottom row 0 0 0 1,
 * the 3x3 part invertible (|det| above a tiny fraction of the product of
 * its column lengths). */
int mg__affine_ok(const double a[16]);

/* ---- growing strings (warnings, slice lists) ---------------------------- */

typedef struct mg__strbuf {
    char *s;
    size_t n, cap;
    uint32_t lines;            /* lines added */
    uint32_t max_lines;        /* further lines are only counted (0 = no cap) */
    uint32_t dropped;
    int failed;                /* an allocation failed */
} mg__strbuf;

/* Appends one formatted line (a '\n' is added). Lines past max_lines are
 * counted in dropped instead; mg__sb_take adds a last line for them. */
void mg__sb_line(mg__strbuf *b, const char *fmt, ...) MG_PRINTF(2, 3);
/* Hands the text over (never NULL unless an allocation failed: then NULL
 * and the buffer is freed). */
char *mg__sb_take(mg__strbuf *b);
void mg__sb_free(mg__strbuf *b);

/* ---- readers ------------------------------------------------------------ */

/* nifti.c */
mg_status mg__nifti_load(mg_volume **out, const char *path,
                         const mg_volume_params *p, char *err, size_t errlen);
mg_status mg__nifti_write(const mg_volume *v, const char *path,
                          uint32_t flags, char *err, size_t errlen);

/* volume_dicom.c */
mg_status mg__volume_dicom_load(mg_volume **out, const char *const *paths,
                                size_t n_paths, const mg_volume_params *p,
                                char *err, size_t errlen);

/* ---- slices for the model (volume_render.c) ----------------------------- */

/* Validates params (struct_size 4..64 KiB, window, flags, max_slices up to
 * MG_MAX_SLICES; 0 means 85) over the defaults; src may be NULL.
 * Errors: MG_E_INVALID_ARG, MG_E_LIMIT. */
mg_status mg__slice_params_get(mg_slice_params *dst, const mg_slice_params *src,
                               char *err, size_t errlen);
/* The display size (w x h) of a slice and the number n of slices. */
void mg__slices_size(const mg_volume *v, uint32_t flags, uint32_t *w, uint32_t *h,
                     uint32_t *n);
#define MG__VOL_MAX_SIDE 65535u /* the largest slice side the model reads */

/* MedGemma 1.5's selection: the display slice that block b (0-based) of at
 * most max reads out of nz. */
uint32_t mg__slices_pick(uint32_t nz, uint32_t max, uint32_t b);
/* The same for every block into idx (nz entries); returns the count. */
uint32_t mg__slices_select(uint32_t nz, uint32_t max, uint32_t *idx);
/* The window MG_SLICE_WINDOW_AUTO stands for on v (others are returned as is). */
int32_t mg__slices_window(const mg_volume *v, int32_t window);
/* Renders display slice s (0 <= s < n) into rgb (w * h * 3 bytes). */
void mg__slices_render(const mg_volume *v, uint32_t flags, int32_t window, uint32_t s,
                       uint8_t *rgb);
/* The volume's z index of display slice s. */
uint32_t mg__slices_display_index(const mg_volume *v, uint32_t flags, uint32_t s);

#endif
