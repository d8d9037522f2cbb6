/* volume_dicom.c - a volume from a DICOM series: the files of the folders
 * and paths given are scanned (headers only kept), grouped by Series
 * Instance UID, the chosen series' slices (single-frame files or the frames
 * of enhanced multi-frame objects) are checked for one common geometry and
 * ordered along the slice normal, then each file is read again and its
 * frames decoded (dicom_frame.c) into float32 modality values.
 * docs/VOLUME.md states the rules and messages. */
#include "io/volume.h"
#include "io/dicom.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SOP_SEGMENTATION "1.2.840.10008.5.1.4.1.1.66.4"
#define MAX_DIR_DEPTH 32
#define MAX_WARNING_LINES 64
/* Two slices closer than this along the normal share a position (mm). */
#define DUP_TOL_MM 0.01
/* Slice steps further than this fraction from the median are a gap. */
#define GAP_TOL 0.01
/* Orientation cosines and pixel spacings must agree this closely. */
#define ORIENT_TOL 1e-3
#define SPACING_TOL 1e-3

typedef struct vfile {
    char *path;
    int named;                 /* given in paths (not found in a folder) */
    char series_uid[68], study_uid[68], frame_of_ref_uid[68], modality[20];
    uint32_t rows, cols, n_frames;
    mg_status bad;             /* non-zero: cannot be decoded (bad_msg) */
    char *bad_msg;
} vfile;

typedef struct vslice {
    uint32_t file, frame;
    int32_t instance;
    int32_t has_pos, has_ori, has_sp, has_thk, has_btw;
    double pos[3], ori[6], sp[2], thk, btw;
    double slope, intercept;
} vslice;

typedef struct loader {
    const mg_volume_params *p;
    mg_image_params ip;        /* limits for reading and decoding a file */
    vfile *files;
    size_t n_files, cap_files;
    vslice *sl;
    size_t n_sl, cap_sl;
    uint64_t mem;              /* bytes held by the tables */
    uint32_t n_seen;           /* files looked at */
    uint32_t n_not_dicom, n_unreadable, n_not_image, n_seg;
    mg__strbuf warn;
    char *err;
    size_t errlen;
} loader;

/* ---- tables ------------------------------------------------------------- */

static mg_status grow(loader *L, void **arr, size_t *cap, size_t n,
                      size_t elem) {
    if (n < *cap) return MG_OK;
    size_t nc = *cap ? *cap * 2 : 64;
    uint64_t add = (uint64_t)(nc - *cap) * elem;
    if (nc > SIZE_MAX / elem || L->mem + add > L->p->max_memory)
        return mg__err(L->err, L->errlen, MG_E_LIMIT,
                       "DICOM series: the file and slice tables need more "
                       "than the %llu bytes allowed",
                       (unsigned long long)L->p->max_memory);
    void *q = mg__realloc(*arr, nc * elem);
    if (!q) return mg__err(L->err, L->errlen, MG_E_NOMEM, "out of memory");
    *arr = q;
    *cap = nc;
    L->mem += add;
    return MG_OK;
}

static void loader_free(loader *L) {
    for (size_t i = 0; i < L->n_files; i++) {
        mg__free(L->files[i].path);
        mg__free(L->files[i].bad_msg);
    }
    mg__free(L->files);
    mg__free(L->sl);
    mg__sb_free(&L->warn);
}

/* ---- scanning ------------------------------------------------------------ */

/* Checks that the file's frames exist before a record is made for each:
 * a frame count that the Pixel Data cannot hold is a lie. */
static mg_status check_frames(const mg__dcm_dataset *ds, const mg__dcm_info *in,
                              const mg_volume_params *p, char *err,
                              size_t errlen) {
    const mg__dcm_elem *pe = &ds->el[ds->pixel_el];
    uint64_t px = (uint64_t)in->rows * in->cols, nv, bits;
    int over = mg__mul_u64(px, in->n_frames, &nv);
    if (pe->len != MG__DCM_UNDEF) {
        if (over || mg__mul_u64(nv, (uint64_t)in->spp * in->bits_alloc, &bits) ||
            (bits + 7) / 8 > pe->len)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "Pixel Data has %u bytes; %u frame(s) of %ux%u "
                           "need more", (unsigned)pe->len,
                           (unsigned)in->n_frames, (unsigned)in->cols,
                           (unsigned)in->rows);
    } else if (in->n_frames > 1 &&
               (ds->n_frag < 1 || in->n_frames > ds->n_frag - 1)) {
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "Number of Frames is %u but the Pixel Data holds %zu "
                       "fragment(s)", (unsigned)in->n_frames,
                       ds->n_frag ? ds->n_frag - 1 : (size_t)0);
    }
    if (over || nv > p->max_voxels)
        return mg__err(err, errlen, MG_E_LIMIT,
                       "%u frames of %ux%u exceed the limit of %llu voxels",
                       (unsigned)in->n_frames, (unsigned)in->cols,
                       (unsigned)in->rows, (unsigned long long)p->max_voxels);
    return MG_OK;
}

static void slice_from_info(vslice *s, const mg__dcm_info *in, uint32_t file,
                            uint32_t frame) {
    memset(s, 0, sizeof *s);
    s->file = file;
    s->frame = frame;
    s->instance = in->instance_number;
    s->has_pos = in->has_position;
    s->has_ori = in->has_orientation;
    s->has_sp = in->has_spacing;
    s->has_thk = in->has_thickness;
    s->has_btw = in->has_between;
    memcpy(s->pos, in->position, sizeof s->pos);
    memcpy(s->ori, in->orientation, sizeof s->ori);
    memcpy(s->sp, in->spacing, sizeof s->sp);
    s->thk = in->thickness;
    s->btw = in->between;
    s->slope = in->slope;
    s->intercept = in->intercept;
}

/* A file found in a folder that cannot be used: counted and named. */
static void skip(loader *L, uint32_t *counter, const char *path,
                 const char *why) {
    (*counter)++;
    mg__sb_line(&L->warn, "skipped '%s': %s", path, why);
}

static mg_status scan_file(loader *L, const char *path, int named) {
    char msg[512];
    unsigned char *data = NULL;
    size_t size = 0;
    mg__dcm_dataset ds;
    mg__dcm_info in;
    mg_status st;
    int parsed = 0;

    if (++L->n_seen > L->p->max_files)
        return mg__err(L->err, L->errlen, MG_E_LIMIT,
                       "DICOM series: more than %u files (max_files)",
                       (unsigned)L->p->max_files);
    st = mg__read_file(&data, &size, path, L->p->max_memory, msg, sizeof msg);
    if (st) {
        if (named || st == MG_E_NOMEM)
            return mg__err(L->err, L->errlen, st, "%s", msg);
        skip(L, &L->n_unreadable, path, msg);
        return MG_OK;
    }
    if (!mg__image_is_dicom(data, size)) {
        mg__free(data);
        if (named)
            return mg__err(L->err, L->errlen, MG_E_IMAGE_FORMAT,
                           "'%s' is not a DICOM file", path);
        skip(L, &L->n_not_dicom, path, "not DICOM");
        return MG_OK;
    }
    st = mg__dcm_parse(&ds, data, size, &L->ip, msg, sizeof msg);
    if (st) goto unusable;
    parsed = 1;
    st = mg__dcm_read_info(&in, &ds, 0, msg, sizeof msg);
    if (st) goto unusable;
    if (strcmp(in.sop_class_uid, SOP_SEGMENTATION) == 0) {
        st = mg__err(msg, sizeof msg, MG_E_UNSUPPORTED,
                     "a Segmentation object, not an image volume");
        goto unusable;
    }

    /* From here the file belongs to a series: problems are recorded and
     * become an error only when that series is assembled. */
    if ((st = grow(L, (void **)&L->files, &L->cap_files, L->n_files,
                   sizeof *L->files)))
        goto fail;
    vfile *f = &L->files[L->n_files];
    memset(f, 0, sizeof *f);
    f->path = mg__strdup(path);
    if (!f->path) {
        st = mg__err(L->err, L->errlen, MG_E_NOMEM, "out of memory");
        goto fail;
    }
    L->mem += strlen(path) + 1;
    L->n_files++;
    f->named = named;
    snprintf(f->series_uid, sizeof f->series_uid, "%s", in.series_uid);
    snprintf(f->study_uid, sizeof f->study_uid, "%s", in.study_uid);
    snprintf(f->frame_of_ref_uid, sizeof f->frame_of_ref_uid, "%s",
             in.frame_of_ref_uid);
    snprintf(f->modality, sizeof f->modality, "%s", in.modality);
    f->rows = in.rows;
    f->cols = in.cols;
    f->n_frames = in.n_frames;
    const uint32_t fi = (uint32_t)(L->n_files - 1);

    int color = 0;
    mg_status bad = mg__dcm_check_pixels(&ds, &in, &L->ip, &color, msg,
                                         sizeof msg);
    if (!bad && color)
        bad = mg__err(msg, sizeof msg, MG_E_UNSUPPORTED,
                      "a colour image (%s); volumes hold grey modality "
                      "values", in.photometric);
    if (!bad) bad = check_frames(&ds, &in, L->p, msg, sizeof msg);
    if (bad) {
        if (bad == MG_E_NOMEM) {
            st = mg__err(L->err, L->errlen, bad, "%s", msg);
            goto fail;
        }
        f->bad = bad;
        f->bad_msg = mg__strdup(msg);
        if (!f->bad_msg) {
            st = mg__err(L->err, L->errlen, MG_E_NOMEM, "out of memory");
            goto fail;
        }
        f->n_frames = 1; /* one record, for grouping */
    }
    for (uint32_t k = 0; k < f->n_frames; k++) {
        mg__dcm_info fin;
        if (k > 0) {
            if ((st = mg__dcm_read_info(&fin, &ds, k, msg, sizeof msg))) {
                st = mg__err(L->err, L->errlen, st, "'%s' frame %u: %s", path,
                             (unsigned)k, msg);
                goto fail;
            }
        }
        if ((st = grow(L, (void **)&L->sl, &L->cap_sl, L->n_sl, sizeof *L->sl)))
            goto fail;
        slice_from_info(&L->sl[L->n_sl++], k ? &fin : &in, fi, k);
    }
    mg__dcm_free(&ds);
    mg__free(data);
    return MG_OK;

unusable:
    /* Not readable as a DICOM image: an error when named, else skipped. */
    if (parsed) mg__dcm_free(&ds);
    mg__free(data);
    if (named || st == MG_E_NOMEM)
        return mg__err(L->err, L->errlen, st, "'%s': %s", path, msg);
    if (st == MG_E_UNSUPPORTED && strstr(msg, "Segmentation"))
        skip(L, &L->n_seg, path, msg);
    else if (st == MG_E_UNSUPPORTED && strstr(msg, "not an image"))
        skip(L, &L->n_not_image, path, msg);
    else
        skip(L, &L->n_unreadable, path, msg);
    return MG_OK;
fail:
    if (parsed) mg__dcm_free(&ds);
    mg__free(data);
    return st;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static mg_status scan_dir(loader *L, const char *dir, unsigned depth) {
    char ebuf[128];
    DIR *d = opendir(dir);
    if (!d)
        return mg__err(L->err, L->errlen, MG_E_IO, "cannot open folder '%s': %s",
                       dir, strerror_r(errno, ebuf, sizeof ebuf));
    char **names = NULL;
    size_t n = 0, cap = 0;
    mg_status st = MG_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", "..", hidden files */
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            if (nc > (size_t)L->p->max_files * 2 + 64) {
                st = mg__err(L->err, L->errlen, MG_E_LIMIT,
                             "DICOM series: folder '%s' holds more than %u "
                             "entries (max_files)", dir,
                             (unsigned)L->p->max_files);
                break;
            }
            char **q = mg__realloc(names, nc * sizeof *names);
            if (!q) {
                st = mg__err(L->err, L->errlen, MG_E_NOMEM, "out of memory");
                break;
            }
            names = q;
            cap = nc;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = mg__malloc(len);
        if (!names[n]) {
            st = mg__err(L->err, L->errlen, MG_E_NOMEM, "out of memory");
            break;
        }
        snprintf(names[n], len, "%s%s%s", dir,
                 dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        n++;
    }
    closedir(d);
    if (!st && n) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && !st; i++) {
        struct stat sb, lb;
        if (stat(names[i], &sb) != 0) {
            skip(L, &L->n_unreadable, names[i], strerror_r(errno, ebuf, sizeof ebuf));
            L->n_seen++;
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            /* Subfolders with MG_VOLUME_RECURSIVE; links to folders are not
             * followed (no loops). */
            if (!(L->p->flags & MG_VOLUME_RECURSIVE)) continue;
            if (lstat(names[i], &lb) == 0 && S_ISLNK(lb.st_mode)) continue;
            if (depth + 1 > MAX_DIR_DEPTH) {
                st = mg__err(L->err, L->errlen, MG_E_LIMIT,
                             "DICOM series: folders nested deeper than %d "
                             "levels under '%s'", MAX_DIR_DEPTH, dir);
                break;
            }
            st = scan_dir(L, names[i], depth + 1);
        } else if (S_ISREG(sb.st_mode)) {
            st = scan_file(L, names[i], 0);
        }
    }
    for (size_t i = 0; i < n; i++) mg__free(names[i]);
    mg__free(names);
    return st;
}

/* ---- series and geometry --------------------------------------------------- */

typedef struct series {
    const char *uid;
    uint32_t n_slices, n_files;
    uint32_t first_file;       /* for messages */
} series;

typedef struct order {
    double key;                /* position along the normal, or instance */
    int32_t instance;
    uint32_t file, frame, idx; /* idx into L->sl */
} order;

static int cmp_order(const void *a, const void *b) {
    const order *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->instance != y->instance) return x->instance < y->instance ? -1 : 1;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double dot3(const double *a, const double *b) {
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
static double norm3(const double *a) { return sqrt(dot3(a, a)); }

/* Groups the slices by series and picks one: *chosen receives its UID. */
static mg_status pick_series(loader *L, const char **chosen) {
    series *g = NULL;
    size_t ng = 0;
    mg_status st = MG_OK;
    const char *want = L->p->series_uid;
    *chosen = NULL;
    if (L->n_files == 0) {
        return mg__err(L->err, L->errlen, MG_E_NOT_FOUND,
                       "DICOM series: no DICOM image among %u file(s) (%u "
                       "not DICOM, %u unreadable, %u not images, %u "
                       "segmentations)", (unsigned)L->n_seen,
                       (unsigned)L->n_not_dicom, (unsigned)L->n_unreadable,
                       (unsigned)L->n_not_image, (unsigned)L->n_seg);
    }
    g = mg__calloc(L->n_files, sizeof *g);
    if (!g) return mg__err(L->err, L->errlen, MG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < L->n_files; i++) {
        const char *u = L->files[i].series_uid;
        size_t k = 0;
        while (k < ng && strcmp(g[k].uid, u) != 0) k++;
        if (k == ng) {
            g[ng].uid = u;
            g[ng].first_file = (uint32_t)i;
            ng++;
        }
        g[k].n_files++;
    }
    for (size_t i = 0; i < L->n_sl; i++) {
        const char *u = L->files[L->sl[i].file].series_uid;
        for (size_t k = 0; k < ng; k++)
            if (strcmp(g[k].uid, u) == 0) { g[k].n_slices++; break; }
    }
    size_t best = ng;
    if (want) {
        for (size_t k = 0; k < ng; k++)
            if (strcmp(g[k].uid, want) == 0) best = k;
        if (best == ng) {
            char list[400];
            size_t o = 0;
            list[0] = '\0';
            for (size_t k = 0; k < ng && o < sizeof list - 80; k++)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s (%u)",
                                      k ? ", " : "",
                                      g[k].uid[0] ? g[k].uid : "(none)",
                                      (unsigned)g[k].n_slices);
            st = mg__err(L->err, L->errlen, MG_E_NOT_FOUND,
                         "DICOM series: no slice of series %s; the files "
                         "hold %s", want, list);
            goto done;
        }
    } else {
        best = 0;
        for (size_t k = 1; k < ng; k++) {
            const series *a = &g[k], *b = &g[best];
            if (a->n_slices > b->n_slices ||
                (a->n_slices == b->n_slices &&
                 (a->n_files > b->n_files ||
                  (a->n_files == b->n_files && strcmp(a->uid, b->uid) < 0))))
                best = k;
        }
        if (ng > 1 && (L->p->flags & MG_VOLUME_STRICT_SERIES)) {
            st = mg__err(L->err, L->errlen, MG_E_IMAGE_FORMAT,
                         "DICOM series: the files hold %zu series (e.g. %s "
                         "with %u slices and %s with %u); pick one with "
                         "series_uid", ng,
                         g[best].uid[0] ? g[best].uid : "(none)",
                         (unsigned)g[best].n_slices,
                         g[best ? 0 : 1].uid[0] ? g[best ? 0 : 1].uid : "(none)",
                         (unsigned)g[best ? 0 : 1].n_slices);
            goto done;
        }
    }
    for (size_t k = 0; k < ng; k++) {
        if (k == best) continue;
        const vfile *f = &L->files[g[k].first_file];
        mg__sb_line(&L->warn, "other series %s (%u slice%s in %u file%s, %s) "
                    "not used", g[k].uid[0] ? g[k].uid : "(no UID)",
                    (unsigned)g[k].n_slices, g[k].n_slices == 1 ? "" : "s",
                    (unsigned)g[k].n_files, g[k].n_files == 1 ? "" : "s",
                    f->modality[0] ? f->modality : "no modality");
    }
    *chosen = g[best].uid;
done:
    mg__free(g);
    return st;
}

/* The geometry of the chosen slices (order[0..*n) sorted, duplicates
 * handled): fills the LPS+ affine. */
static mg_status geometry(loader *L, order *ord, size_t *n_io, double aff[16]) {
    size_t n = *n_io;
    const vslice *s0 = &L->sl[ord[0].idx];
    const vfile *f0 = &L->files[s0->file];
    char *err = L->err;
    size_t errlen = L->errlen;

    /* Size, and which attributes every slice has. */
    size_t n_geo = 0, n_sp = 0;
    for (size_t i = 0; i < n; i++) {
        const vslice *s = &L->sl[ord[i].idx];
        const vfile *f = &L->files[s->file];
        if (f->rows != f0->rows || f->cols != f0->cols)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM series: slices differ in size: '%s' is "
                           "%ux%u, '%s' is %ux%u", f0->path,
                           (unsigned)f0->cols, (unsigned)f0->rows, f->path,
                           (unsigned)f->cols, (unsigned)f->rows);
        if (s->has_pos < 0 || s->has_ori < 0 || s->has_sp < 0)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM series: '%s' frame %u: %s is malformed "
                           "(missing values, or not finite numbers)",
                           f->path, (unsigned)s->frame,
                           s->has_pos < 0 ? "Image Position (Patient)"
                           : s->has_ori < 0 ? "Image Orientation (Patient)"
                                            : "Pixel Spacing");
        n_geo += s->has_pos == 1 && s->has_ori == 1;
        n_sp += s->has_sp == 1;
    }
    if (n_geo != 0 && n_geo != n)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM series: %zu of %zu slices lack Image Position "
                       "or Orientation (Patient)", n - n_geo, n);
    if (n_sp != 0 && n_sp != n)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM series: %zu of %zu slices lack Pixel Spacing",
                       n - n_sp, n);
    double dx = 1, dy = 1; /* column spacing (x), row spacing (y) */
    if (n_sp) {
        dy = s0->sp[0];
        dx = s0->sp[1];
        if (!(dx > 0) || !(dy > 0))
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM series: '%s': Pixel Spacing %g\\%g is not "
                           "positive", f0->path, dy, dx);
        for (size_t i = 1; i < n; i++) {
            const vslice *s = &L->sl[ord[i].idx];
            if (fabs(s->sp[0] - dy) > SPACING_TOL * dy ||
                fabs(s->sp[1] - dx) > SPACING_TOL * dx)
                return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                               "DICOM series: slices differ in Pixel "
                               "Spacing: '%s' has %g\\%g, '%s' has %g\\%g",
                               f0->path, dy, dx, L->files[s->file].path,
                               s->sp[0], s->sp[1]);
        }
    } else {
        mg__sb_line(&L->warn, "no Pixel Spacing: 1 mm pixels assumed");
    }

    /* No geometry at all: Instance Number order, axial guess. */
    if (n_geo == 0) {
        for (size_t i = 0; i < n; i++) ord[i].key = ord[i].instance;
        qsort(ord, n, sizeof *ord, cmp_order);
        double dz = s0->has_btw == 1 && s0->btw > 0 ? s0->btw
                    : s0->has_thk == 1 && s0->thk > 0 ? s0->thk : 1;
        mg__sb_line(&L->warn, "no Image Position/Orientation (Patient): "
                    "slices ordered by Instance Number; the affine assumes "
                    "axial slices %g mm apart at the origin", dz);
        for (size_t i = 1; i < n; i++)
            if (ord[i].instance == ord[i - 1].instance) {
                mg__sb_line(&L->warn, "Instance Numbers repeat (%d): those "
                            "slices are in file order",
                            (int)ord[i].instance);
                break;
            }
        memset(aff, 0, 16 * sizeof *aff);
        aff[0] = dx;
        aff[5] = dy;
        aff[10] = dz;
        aff[15] = 1;
        return MG_OK;
    }

    /* Orientation: two orthogonal unit vectors, the same for every slice. */
    double r[3], c[3], nrm[3];
    memcpy(r, s0->ori, sizeof r);
    memcpy(c, s0->ori + 3, sizeof c);
    double lr = norm3(r), lc = norm3(c);
    if (fabs(lr - 1) > 0.01 || fabs(lc - 1) > 0.01 ||
        fabs(dot3(r, c)) > 0.01)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM series: '%s': Image Orientation (Patient) "
                       "%g\\%g\\%g\\%g\\%g\\%g is not two orthogonal unit "
                       "vectors", f0->path, r[0], r[1], r[2], c[0], c[1],
                       c[2]);
    for (int k = 0; k < 3; k++) {
        r[k] /= lr;
        c[k] /= lc;
    }
    nrm[0] = r[1] * c[2] - r[2] * c[1];
    nrm[1] = r[2] * c[0] - r[0] * c[2];
    nrm[2] = r[0] * c[1] - r[1] * c[0];
    double ln = norm3(nrm);
    for (int k = 0; k < 3; k++) nrm[k] /= ln;
    for (size_t i = 1; i < n; i++) {
        const vslice *s = &L->sl[ord[i].idx];
        for (int k = 0; k < 6; k++) {
            double ref = k < 3 ? r[k] : c[k - 3];
            double v = s->ori[k] / (k < 3 ? norm3(s->ori) : norm3(s->ori + 3));
            if (!(fabs(v - ref) <= ORIENT_TOL))
                return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                               "DICOM series: slices differ in orientation: "
                               "'%s' has %g\\%g\\%g\\%g\\%g\\%g, '%s' has "
                               "%g\\%g\\%g\\%g\\%g\\%g", f0->path, s0->ori[0],
                               s0->ori[1], s0->ori[2], s0->ori[3], s0->ori[4],
                               s0->ori[5], L->files[s->file].path, s->ori[0],
                               s->ori[1], s->ori[2], s->ori[3], s->ori[4],
                               s->ori[5]);
        }
    }

    /* Order along the normal. */
    for (size_t i = 0; i < n; i++) ord[i].key = dot3(L->sl[ord[i].idx].pos, nrm);
    qsort(ord, n, sizeof *ord, cmp_order);

    /* Slices sharing a position. */
    size_t n_dup = 0, first_dup = 0;
    for (size_t i = 1; i < n; i++)
        if (ord[i].key - ord[i - 1].key < DUP_TOL_MM) {
            if (!n_dup) first_dup = i;
            n_dup++;
        }
    if (n_dup) {
        const vslice *a = &L->sl[ord[first_dup - 1].idx];
        const vslice *b = &L->sl[ord[first_dup].idx];
        if (!(L->p->flags & MG_VOLUME_KEEP_DUPLICATES))
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM series: %zu slice%s a position with "
                           "another ('%s' frame %u and '%s' frame %u, at "
                           "%.6g mm along the normal): several volumes in "
                           "one series (time points, echoes) or duplicated "
                           "files; MG_VOLUME_KEEP_DUPLICATES keeps the "
                           "first of each", n_dup,
                           n_dup == 1 ? " shares" : "s share",
                           L->files[a->file].path, (unsigned)a->frame,
                           L->files[b->file].path, (unsigned)b->frame,
                           ord[first_dup].key);
        size_t m = 1;
        for (size_t i = 1; i < n; i++)
            if (ord[i].key - ord[m - 1].key >= DUP_TOL_MM) ord[m++] = ord[i];
        mg__sb_line(&L->warn, "dropped %zu slice%s sharing a position with "
                    "another (kept the lowest Instance Number at each; "
                    "first: '%s' frame %u)", n_dup, n_dup == 1 ? "" : "s",
                    L->files[b->file].path, (unsigned)b->frame);
        n = m;
        *n_io = n;
    }

    /* Slice step: from the first to the last slice. */
    const double *p0 = L->sl[ord[0].idx].pos;
    double d[3];
    if (n == 1) {
        double dz = s0->has_btw == 1 && s0->btw > 0 ? s0->btw
                    : s0->has_thk == 1 && s0->thk > 0 ? s0->thk : 1;
        for (int k = 0; k < 3; k++) d[k] = nrm[k] * dz;
    } else {
        const double *pl = L->sl[ord[n - 1].idx].pos;
        for (int k = 0; k < 3; k++) d[k] = (pl[k] - p0[k]) / (double)(n - 1);

        /* Uneven steps: missing slices. */
        double *steps = mg__malloc((n - 1) * sizeof *steps);
        if (!steps) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        for (size_t i = 0; i + 1 < n; i++) steps[i] = ord[i + 1].key - ord[i].key;
        qsort(steps, n - 1, sizeof *steps, cmp_double);
        double med = (n - 1) % 2 ? steps[(n - 1) / 2]
                                 : 0.5 * (steps[(n - 1) / 2 - 1] + steps[(n - 1) / 2]);
        mg__free(steps);
        size_t n_bad = 0, worst = 0;
        double worst_dev = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            double st = ord[i + 1].key - ord[i].key, dev = fabs(st - med);
            if (dev > GAP_TOL * med) {
                n_bad++;
                if (dev > worst_dev) { worst_dev = dev; worst = i; }
            }
        }
        if (n_bad) {
            double st = ord[worst + 1].key - ord[worst].key;
            if (L->p->flags & MG_VOLUME_STRICT_SPACING)
                return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                               "DICOM series: uneven slice spacing: %zu "
                               "step%s from the median %.6g mm by "
                               "more than 1%% (%.6g mm between slices %zu "
                               "and %zu): missing slices?", n_bad,
                               n_bad == 1 ? " differs" : "s differ", med, st,
                               worst,
                               worst + 1);
            mg__sb_line(&L->warn, "uneven slice spacing: %zu step%s "
                        "from the median %.6g mm by more than 1%% (%.6g mm "
                        "between slices %zu and %zu): missing slices? The "
                        "affine uses the mean step %.6g mm", n_bad,
                        n_bad == 1 ? " differs" : "s differ", med, st, worst,
                        worst + 1,
                        dot3(d, nrm));
        }

        /* Every slice on the line from the first along d. */
        double ld = norm3(d), u[3];
        for (int k = 0; k < 3; k++) u[k] = d[k] / ld;
        double tol = 0.1 * (dx < dy ? dx : dy);
        for (size_t i = 1; i < n; i++) {
            const double *pi = L->sl[ord[i].idx].pos;
            double v[3] = {pi[0] - p0[0], pi[1] - p0[1], pi[2] - p0[2]};
            double t = dot3(v, u), off[3];
            for (int k = 0; k < 3; k++) off[k] = v[k] - t * u[k];
            if (norm3(off) > tol)
                return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                               "DICOM series: slice positions do not lie on "
                               "one line ('%s' is %.3g mm off the line "
                               "through the first and last slices): several "
                               "stacks in one series?",
                               L->files[L->sl[ord[i].idx].file].path,
                               norm3(off));
        }

        /* Gantry tilt: the stack advances across the slice plane. */
        double along = dot3(d, nrm), perp[3];
        for (int k = 0; k < 3; k++) perp[k] = d[k] - along * nrm[k];
        double lp = norm3(perp);
        if (lp > 1e-3 * fabs(along))
            mg__sb_line(&L->warn, "gantry tilt or sheared stack: each slice "
                        "moves %.4g mm across the slice plane for %.4g mm "
                        "along the normal (%.3g degrees); the affine keeps "
                        "the shear, voxels are not resampled", lp, along,
                        atan2(lp, fabs(along)) * 180.0 / M_PI);
    }
    for (int k = 0; k < 3; k++) {
        aff[4 * k + 0] = r[k] * dx;
        aff[4 * k + 1] = c[k] * dy;
        aff[4 * k + 2] = d[k];
        aff[4 * k + 3] = p0[k];
    }
    aff[12] = aff[13] = aff[14] = 0;
    aff[15] = 1;
    if (!mg__affine_ok(aff))
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM series: the slice geometry gives a singular "
                       "affine");
    return MG_OK;
}

/* ---- decoding -------------------------------------------------------------- */

typedef struct zslot {
    uint32_t file, frame, z;
} zslot;

static int cmp_zslot(const void *a, const void *b) {
    const zslot *x = a, *y = b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

/* Decodes the frames listed in zs[0..n) (all of one file) into v. */
static mg_status decode_file(loader *L, const zslot *zs, size_t n,
                             mg_volume *v, int64_t *work) {
    const vfile *f = &L->files[zs[0].file];
    char msg[512];
    unsigned char *data = NULL;
    size_t size;
    mg__dcm_dataset ds;
    mg_status st;
    const size_t npx = (size_t)v->nx * v->ny;

    if ((st = mg__read_file(&data, &size, f->path, L->p->max_memory, msg,
                            sizeof msg)))
        return mg__err(L->err, L->errlen, st, "%s", msg);
    if ((st = mg__dcm_parse(&ds, data, size, &L->ip, msg, sizeof msg))) {
        mg__free(data);
        return mg__err(L->err, L->errlen, st, "'%s': %s", f->path, msg);
    }
    size_t i = 0;
    for (; i < n; i++) {
        mg__dcm_info in;
        int color = 0, ybr = 0;
        mg_image_params ip = L->ip;
        ip.frame = zs[i].frame;
        if ((st = mg__dcm_read_info(&in, &ds, zs[i].frame, msg, sizeof msg)) ||
            (st = mg__dcm_check_pixels(&ds, &in, &ip, &color, msg,
                                       sizeof msg)))
            break;
        if (in.rows != v->ny || in.cols != v->nx || color) {
            st = mg__err(msg, sizeof msg, MG_E_IO,
                         "the file changed while the series was read");
            break;
        }
        if ((st = mg__dcm_frame_samples(work, &ybr, &ds, &in, zs[i].frame, &ip,
                                        msg, sizeof msg)))
            break;
        float *dst = v->voxels + (size_t)zs[i].z * npx;
        for (size_t k = 0; k < npx; k++)
            dst[k] = (float)((double)work[k] * in.slope + in.intercept);
    }
    mg__dcm_free(&ds);
    mg__free(data);
    if (st) {
        if (f->n_frames > 1)
            return mg__err(L->err, L->errlen, st, "'%s' frame %u: %s",
                           f->path, (unsigned)zs[i < n ? i : n - 1].frame,
                           msg);
        return mg__err(L->err, L->errlen, st, "'%s': %s", f->path, msg);
    }
    return MG_OK;
}

mg_status mg__volume_dicom_load(mg_volume **out, const char *const *paths,
                                size_t n_paths, const mg_volume_params *p,
                                char *err, size_t errlen) {
    loader L;
    mg_status st = MG_OK;
    order *ord = NULL;
    zslot *zs = NULL;
    int64_t *work = NULL;
    mg_volume *v = NULL;
    char ebuf[128];
    *out = NULL;

    memset(&L, 0, sizeof L);
    L.p = p;
    L.err = err;
    L.errlen = errlen;
    L.warn.max_lines = MAX_WARNING_LINES;
    mg_image_params_init(&L.ip);
    L.ip.max_memory = p->max_memory;
    L.ip.max_pixels = p->max_voxels;
    L.ip.window = MG_WINDOW_NONE;

    for (size_t i = 0; i < n_paths && !st; i++) {
        struct stat sb;
        if (stat(paths[i], &sb) != 0)
            st = mg__err(err, errlen, MG_E_IO, "cannot open '%s': %s", paths[i],
                         strerror_r(errno, ebuf, sizeof ebuf));
        else if (S_ISDIR(sb.st_mode))
            st = scan_dir(&L, paths[i], 0);
        else
            st = scan_file(&L, paths[i], 1);
    }
    if (st) goto done;

    const char *uid;
    if ((st = pick_series(&L, &uid))) goto done;

    /* The chosen series' slices; a file of it that cannot be decoded is
     * the error. */
    size_t n = 0;
    ord = mg__malloc((L.n_sl ? L.n_sl : 1) * sizeof *ord);
    if (!ord) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < L.n_sl; i++) {
        const vslice *s = &L.sl[i];
        const vfile *f = &L.files[s->file];
        if (strcmp(f->series_uid, uid) != 0) continue;
        if (f->bad) {
            st = mg__err(err, errlen, f->bad, "'%s': %s", f->path, f->bad_msg);
            goto done;
        }
        ord[n].key = 0;
        ord[n].instance = s->instance;
        ord[n].file = s->file;
        ord[n].frame = s->frame;
        ord[n].idx = (uint32_t)i;
        n++;
    }
    double aff[16];
    if ((st = geometry(&L, ord, &n, aff))) goto done;
    if (n > UINT32_MAX) {
        st = mg__err(err, errlen, MG_E_LIMIT, "DICOM series: too many slices");
        goto done;
    }

    const vfile *f0 = &L.files[L.sl[ord[0].idx].file];
    uint64_t work_bytes = (uint64_t)f0->rows * f0->cols * sizeof *work;
    if ((st = mg__volume_alloc(&v, f0->cols, f0->rows, (uint32_t)n, work_bytes,
                               p, "DICOM series", err, errlen)))
        goto done;
    work = mg__malloc((size_t)work_bytes);
    zs = mg__malloc(n * sizeof *zs);
    if (!work || !zs) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t z = 0; z < n; z++) {
        zs[z].file = ord[z].file;
        zs[z].frame = ord[z].frame;
        zs[z].z = (uint32_t)z;
    }
    qsort(zs, n, sizeof *zs, cmp_zslot);
    uint32_t n_used = 0;
    for (size_t i = 0; i < n && !st;) {
        size_t j = i;
        while (j < n && zs[j].file == zs[i].file) j++;
        st = decode_file(&L, zs + i, j - i, v, work);
        n_used++;
        i = j;
    }
    if (st) goto done;

    /* Attributes, the slice list and the warnings. */
    mg__strbuf sl = {0};
    for (size_t z = 0; z < n; z++)
        mg__sb_line(&sl, "%s\t%u", L.files[ord[z].file].path,
                    (unsigned)ord[z].frame);
    for (size_t z = 1; z < n; z++) {
        const vfile *f = &L.files[ord[z].file];
        if (strcmp(f->frame_of_ref_uid, f0->frame_of_ref_uid) != 0) {
            mg__sb_line(&L.warn, "slices of different Frames of Reference "
                        "('%s' and '%s')", f0->path, f->path);
            break;
        }
    }
    for (size_t z = 1; z < n; z++) {
        const vfile *f = &L.files[ord[z].file];
        if (strcmp(f->modality, f0->modality) != 0) {
            mg__sb_line(&L.warn, "slices of different modalities (%s in '%s', "
                        "%s in '%s')", f0->modality, f0->path, f->modality,
                        f->path);
            break;
        }
    }
    char *slices = mg__sb_take(&sl);
    char *warnings = mg__sb_take(&L.warn);
    if (!slices || !warnings) {
        mg__free(slices);
        mg__free(warnings);
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    mg__free(v->slices);
    mg__free(v->warnings);
    v->slices = slices;
    v->warnings = warnings;
    v->n_warnings = L.warn.lines;
    v->source = MG_VOLUME_SRC_DICOM;
    v->n_files = n_used;
    v->n_skipped = L.n_seen - n_used;
    snprintf(v->modality, sizeof v->modality, "%s", f0->modality);
    snprintf(v->series_uid, sizeof v->series_uid, "%s", f0->series_uid);
    snprintf(v->study_uid, sizeof v->study_uid, "%s", f0->study_uid);
    snprintf(v->frame_of_ref_uid, sizeof v->frame_of_ref_uid, "%s",
             f0->frame_of_ref_uid);
    mg__volume_finish(v, aff);
    *out = v;
    v = NULL;
done:
    mg_volume_free(v);
    mg__free(work);
    mg__free(zs);
    mg__free(ord);
    loader_free(&L);
    return st;
}
