/* nifti.c - NIfTI-1 and NIfTI-2 single-file images (.nii, .nii.gz) to and
 * from mg_volume. Reading: the header (either byte order) is checked
 * before anything is allocated; the data of the first 3D volume is
 * streamed through zlib (which reads uncompressed files transparently) and
 * converted to float32 modality values. Writing: NIfTI-1, int16 or
 * float32, qform and sform in RAS+. docs/VOLUME.md states the rules. */
#include "io/volume.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define NII1_HDR 348
#define NII2_HDR 540

/* NIfTI datatype codes (nifti1.h). */
enum {
    DT_BINARY = 1, DT_UINT8 = 2, DT_INT16 = 4, DT_INT32 = 8, DT_FLOAT32 = 16,
    DT_COMPLEX64 = 32, DT_FLOAT64 = 64, DT_RGB24 = 128, DT_INT8 = 256,
    DT_UINT16 = 512, DT_UINT32 = 768, DT_INT64 = 1024, DT_UINT64 = 1280,
    DT_FLOAT128 = 1536, DT_COMPLEX128 = 1792, DT_COMPLEX256 = 2048,
    DT_RGBA32 = 2304
};

/* Bytes per voxel of a supported type; 0 when unsupported. */
static uint32_t dt_bytes(int32_t dt) {
    switch (dt) {
    case DT_UINT8: case DT_INT8: return 1;
    case DT_INT16: case DT_UINT16: return 2;
    case DT_INT32: case DT_UINT32: case DT_FLOAT32: return 4;
    case DT_FLOAT64: case DT_INT64: case DT_UINT64: return 8;
    default: return 0;
    }
}

static const char *dt_name(int32_t dt) {
    switch (dt) {
    case DT_BINARY: return "binary (1 bit)";
    case DT_COMPLEX64: return "complex64";
    case DT_RGB24: return "RGB24";
    case DT_FLOAT128: return "float128";
    case DT_COMPLEX128: return "complex128";
    case DT_COMPLEX256: return "complex256";
    case DT_RGBA32: return "RGBA32";
    default: return NULL;
    }
}

/* ---- byte order ------------------------------------------------------------ */

static uint64_t rd_u(const unsigned char *p, int n, int swap) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        int k = swap ? i : n - 1 - i; /* most significant byte first */
        v = (v << 8) | p[k];
    }
    return v;
}
static int16_t rd_i16(const unsigned char *p, int swap) {
    return (int16_t)(uint16_t)rd_u(p, 2, swap);
}
static int32_t rd_i32(const unsigned char *p, int swap) {
    return (int32_t)(uint32_t)rd_u(p, 4, swap);
}
static int64_t rd_i64(const unsigned char *p, int swap) {
    return (int64_t)rd_u(p, 8, swap);
}
static double rd_f32(const unsigned char *p, int swap) {
    uint32_t u = (uint32_t)rd_u(p, 4, swap);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static double rd_f64(const unsigned char *p, int swap) {
    uint64_t u = rd_u(p, 8, swap);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* ---- header ---------------------------------------------------------------- */

typedef struct nhdr {
    int version;          /* 1 or 2 */
    int swap;             /* the file's byte order is not little endian */
    int64_t dim[8];
    double pixdim[8];
    int32_t datatype;
    int64_t vox_offset;
    double scl_slope, scl_inter;
    int32_t qform_code, sform_code;
    double quat[3], qoff[3];
    double srow[12];
    int32_t units;        /* xyzt_units & 7 */
    char descrip[81];
} nhdr;

static void copy_descrip(char *dst, const unsigned char *src) {
    size_t k = 0;
    for (; k < 80 && src[k]; k++)
        dst[k] = (src[k] >= ' ' && src[k] <= '~') ? (char)src[k] : '?';
    while (k && dst[k - 1] == ' ') k--;
    dst[k] = '\0';
}

/* Recognises and decodes the header in h[0..n). */
static mg_status parse_header(nhdr *o, const unsigned char *h, size_t n,
                              const char *path, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    if (n >= 4) {
        int32_t le = rd_i32(h, 0), be = rd_i32(h, 1);
        if (le == NII1_HDR || be == NII1_HDR) {
            o->version = 1;
            o->swap = le != NII1_HDR;
        } else if (le == NII2_HDR || be == NII2_HDR) {
            o->version = 2;
            o->swap = le != NII2_HDR;
        }
    }
    if (!o->version)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "'%s' is not a NIfTI file (no 348- or 540-byte "
                       "header)", path);
    size_t need = o->version == 1 ? NII1_HDR : NII2_HDR;
    if (n < need)
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "'%s': NIfTI-%d header truncated (%zu of %zu bytes)",
                       path, o->version, n, need);
    const int s = o->swap;
    if (o->version == 1) {
        const unsigned char *m = h + 344;
        if (memcmp(m, "ni1\0", 4) == 0)
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "'%s': a two-file NIfTI-1 header (.hdr/.img); "
                           "only single .nii files are read", path);
        if (memcmp(m, "n+1\0", 4) != 0)
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "'%s': no NIfTI-1 magic (an Analyze 7.5 "
                           "header?); only NIfTI is read", path);
        for (int i = 0; i < 8; i++) {
            o->dim[i] = rd_i16(h + 40 + 2 * i, s);
            o->pixdim[i] = rd_f32(h + 76 + 4 * i, s);
        }
        o->datatype = rd_i16(h + 70, s);
        double vo = rd_f32(h + 108, s);
        if (!isfinite(vo) || vo < 0 || vo > 4e9 || vo != floor(vo))
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "'%s': vox_offset %g is not a byte offset", path,
                           vo);
        o->vox_offset = (int64_t)vo;
        o->scl_slope = rd_f32(h + 112, s);
        o->scl_inter = rd_f32(h + 116, s);
        o->units = h[123] & 7;
        copy_descrip(o->descrip, h + 148);
        o->qform_code = rd_i16(h + 252, s);
        o->sform_code = rd_i16(h + 254, s);
        for (int i = 0; i < 3; i++) {
            o->quat[i] = rd_f32(h + 256 + 4 * i, s);
            o->qoff[i] = rd_f32(h + 268 + 4 * i, s);
        }
        for (int i = 0; i < 12; i++) o->srow[i] = rd_f32(h + 280 + 4 * i, s);
    } else {
        const unsigned char *m = h + 4;
        if (memcmp(m, "ni2\0", 4) == 0)
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "'%s': a two-file NIfTI-2 header; only single "
                           ".nii files are read", path);
        if (memcmp(m, "n+2\0", 4) != 0)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "'%s': 540-byte header without the NIfTI-2 magic",
                           path);
        for (int i = 0; i < 8; i++) {
            o->dim[i] = rd_i64(h + 16 + 8 * i, s);
            o->pixdim[i] = rd_f64(h + 104 + 8 * i, s);
        }
        o->datatype = rd_i16(h + 12, s);
        o->vox_offset = rd_i64(h + 168, s);
        o->scl_slope = rd_f64(h + 176, s);
        o->scl_inter = rd_f64(h + 184, s);
        copy_descrip(o->descrip, h + 240);
        o->qform_code = rd_i32(h + 344, s);
        o->sform_code = rd_i32(h + 348, s);
        for (int i = 0; i < 3; i++) {
            o->quat[i] = rd_f64(h + 352 + 8 * i, s);
            o->qoff[i] = rd_f64(h + 376 + 8 * i, s);
        }
        for (int i = 0; i < 12; i++) o->srow[i] = rd_f64(h + 400 + 8 * i, s);
        o->units = rd_i32(h + 500, s) & 7;
    }
    return MG_OK;
}

/* Voxel sizes 1..3 for the affine: positive and finite where the axis
 * exists; an axis past dim[0] with a zero or non-finite size gets 1. */
static mg_status voxel_sizes(double d[3], const nhdr *o, const char *path,
                             char *err, size_t errlen) {
    for (int i = 1; i <= 3; i++) {
        double x = o->pixdim[i];
        if (i > o->dim[0] && (!isfinite(x) || x == 0)) x = 1;
        if (!isfinite(x) || x <= 0)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "'%s': pixdim[%d] = %g; voxel sizes must be "
                           "positive and finite", path, i, x);
        d[i - 1] = x;
    }
    return MG_OK;
}

/* The RAS+ affine of the header: sform, else qform, else pixdim. */
static mg_status header_affine(double a[16], const nhdr *o, const char *path,
                               char *err, size_t errlen) {
    double d[3];
    mg_status st;
    memset(a, 0, 16 * sizeof *a);
    a[15] = 1;
    if (o->sform_code > 0) {
        memcpy(a, o->srow, 12 * sizeof *a);
    } else if (o->qform_code > 0) {
        if ((st = voxel_sizes(d, o, path, err, errlen))) return st;
        double b = o->quat[0], c = o->quat[1], dd = o->quat[2];
        if (!isfinite(b) || !isfinite(c) || !isfinite(dd))
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "'%s': the qform quaternion is not finite", path);
        /* a = sqrt(1 - b^2 - c^2 - d^2); a 180-degree rotation when the
         * rest is (about) unit length, as nifti1_io does. */
        double aa = 1.0 - (b * b + c * c + dd * dd), qa;
        if (aa < 1e-7) {
            double nrm = sqrt(b * b + c * c + dd * dd);
            b /= nrm;
            c /= nrm;
            dd /= nrm;
            qa = 0;
        } else {
            qa = sqrt(aa);
        }
        double R[9] = {
            qa * qa + b * b - c * c - dd * dd, 2 * (b * c - qa * dd),
            2 * (b * dd + qa * c),
            2 * (b * c + qa * dd), qa * qa + c * c - b * b - dd * dd,
            2 * (c * dd - qa * b),
            2 * (b * dd - qa * c), 2 * (c * dd + qa * b),
            qa * qa + dd * dd - b * b - c * c};
        double qfac = o->pixdim[0] < 0 ? -1 : 1;
        double sz[3] = {d[0], d[1], qfac * d[2]};
        for (int r = 0; r < 3; r++) {
            for (int k = 0; k < 3; k++) a[4 * r + k] = R[3 * r + k] * sz[k];
            a[4 * r + 3] = o->qoff[r];
        }
    } else {
        if ((st = voxel_sizes(d, o, path, err, errlen))) return st;
        a[0] = d[0];
        a[5] = d[1];
        a[10] = d[2];
    }
    /* xyzt_units: metres and micrometres to millimetres. */
    double unit = o->units == 1 ? 1000.0 : o->units == 3 ? 0.001 : 1.0;
    if (unit != 1.0)
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 4; k++) a[4 * r + k] *= unit;
    if (!mg__affine_ok(a))
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "'%s': the %s affine is not finite or not invertible",
                       path, o->sform_code > 0 ? "sform"
                             : o->qform_code > 0 ? "qform" : "pixdim");
    return MG_OK;
}

/* One voxel of type dt at p as a double. */
static double voxel_value(const unsigned char *p, int32_t dt, int swap) {
    switch (dt) {
    case DT_UINT8: return p[0];
    case DT_INT8: return (int8_t)p[0];
    case DT_INT16: return rd_i16(p, swap);
    case DT_UINT16: return (uint16_t)rd_u(p, 2, swap);
    case DT_INT32: return rd_i32(p, swap);
    case DT_UINT32: return (uint32_t)rd_u(p, 4, swap);
    case DT_INT64: return (double)rd_i64(p, swap);
    case DT_UINT64: return (double)rd_u(p, 8, swap);
    case DT_FLOAT32: return rd_f32(p, swap);
    case DT_FLOAT64: return rd_f64(p, swap);
    default: return 0;
    }
}

static mg_status gz_fail(gzFile f, const char *path, const char *what,
                         char *err, size_t errlen) {
    int zerr = 0, e = errno;
    char ebuf[128];
    const char *msg = gzerror(f, &zerr);
    if (zerr == Z_ERRNO)
        return mg__err(err, errlen, MG_E_IO, "'%s': read error %s: %s", path,
                       what, strerror_r(e, ebuf, sizeof ebuf));
    return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                   "'%s': corrupt compressed data %s (%s)", path, what,
                   msg && *msg ? msg : "zlib error");
}

/* Reads up to n bytes; *got receives how many came. */
static mg_status gz_read(gzFile f, unsigned char *buf, size_t n, size_t *got,
                         const char *path, const char *what, char *err,
                         size_t errlen) {
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(f, buf + *got, (unsigned)want);
        if (r < 0) return gz_fail(f, path, what, err, errlen);
        if (r == 0) break;
        *got += (size_t)r;
    }
    /* A stream that ends inside a gzip member sets Z_BUF_ERROR. */
    int zerr = 0;
    gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_BUF_ERROR)
        return gz_fail(f, path, what, err, errlen);
    return MG_OK;
}

mg_status mg__nifti_load(mg_volume **out, const char *path,
                         const mg_volume_params *p, char *err, size_t errlen) {
    char ebuf[128];
    struct stat sb;
    mg_status st;
    mg_volume *v = NULL;
    unsigned char *chunk = NULL;
    gzFile f = NULL;
    int fd;
    *out = NULL;

    do fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return mg__err(err, errlen, MG_E_IO, "cannot open '%s': %s", path,
                       strerror_r(errno, ebuf, sizeof ebuf));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mg__err(err, errlen, MG_E_IO, "'%s' is not a regular file",
                       path);
    }
    unsigned char magic[2] = {0, 0};
    ssize_t mr;
    do mr = pread(fd, magic, 2, 0);
    while (mr < 0 && errno == EINTR);
    int gz = mr == 2 && magic[0] == 0x1F && magic[1] == 0x8B;
    f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    gzbuffer(f, 1u << 17);

    /* Header: 348 or 540 bytes. */
    unsigned char h[NII2_HDR];
    size_t got;
    nhdr o;
    if ((st = gz_read(f, h, NII1_HDR, &got, path, "in the header", err,
                      errlen)))
        goto done;
    if ((st = parse_header(&o, h, got, path, err, errlen)) &&
        o.version != 2)
        goto done;
    if (o.version == 2) {
        size_t more;
        if ((st = gz_read(f, h + NII1_HDR, NII2_HDR - NII1_HDR, &more, path,
                          "in the header", err, errlen)))
            goto done;
        if ((st = parse_header(&o, h, got + more, path, err, errlen)))
            goto done;
    }

    /* Sizes, type and offset, before anything is allocated. */
    int64_t nd = o.dim[0];
    if (nd < 1 || nd > 7) {
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                     "'%s': dim[0] = %lld; a NIfTI image has 1 to 7 "
                     "dimensions", path, (long long)nd);
        goto done;
    }
    uint64_t n_after = 1; /* volumes past the first (4th dimension on) */
    for (int i = 1; i <= nd; i++) {
        if (o.dim[i] < 1) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "'%s': dim[%d] = %lld; sizes must be at least 1",
                         path, i, (long long)o.dim[i]);
            goto done;
        }
        if (i >= 4 && mg__mul_u64(n_after, (uint64_t)o.dim[i], &n_after)) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "'%s': the dimensions' product overflows", path);
            goto done;
        }
    }
    uint64_t nx = (uint64_t)o.dim[1], ny = nd >= 2 ? (uint64_t)o.dim[2] : 1,
             nz = nd >= 3 ? (uint64_t)o.dim[3] : 1;
    if (nx > UINT32_MAX || ny > UINT32_MAX || nz > UINT32_MAX) {
        st = mg__err(err, errlen, MG_E_LIMIT,
                     "'%s': %llux%llux%llu voxels; each size must fit 32 "
                     "bits", path, (unsigned long long)nx,
                     (unsigned long long)ny, (unsigned long long)nz);
        goto done;
    }
    uint32_t bpv = dt_bytes(o.datatype);
    if (!bpv) {
        const char *nm = dt_name(o.datatype);
        st = nm ? mg__err(err, errlen, MG_E_UNSUPPORTED,
                          "'%s': NIfTI data type %s (%d) is not supported",
                          path, nm, (int)o.datatype)
                : mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                          "'%s': unknown NIfTI data type %d", path,
                          (int)o.datatype);
        goto done;
    }
    int64_t min_off = o.version == 1 ? NII1_HDR + 4 : NII2_HDR + 4;
    if (o.vox_offset < min_off) {
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                     "'%s': vox_offset %lld lies inside the header (a "
                     "single-file NIfTI-%d needs at least %lld)", path,
                     (long long)o.vox_offset, o.version, (long long)min_off);
        goto done;
    }
    size_t n_vox;
    if ((st = mg__volume_check_limits(&n_vox, nx, ny, nz, 0, p, "NIfTI", err,
                                      errlen)))
        goto done;
    uint64_t vol_bytes = (uint64_t)n_vox * bpv, all_bytes, end;
    if (mg__mul_u64(vol_bytes, n_after, &all_bytes) ||
        mg__add_u64(all_bytes, (uint64_t)o.vox_offset, &end)) {
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                     "'%s': the data size overflows 64 bits", path);
        goto done;
    }
    if (!gz && (uint64_t)sb.st_size < end) {
        st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                     "'%s' is truncated: the header places %llu bytes of "
                     "data at offset %lld, the file has %lld bytes", path,
                     (unsigned long long)all_bytes, (long long)o.vox_offset,
                     (long long)sb.st_size);
        goto done;
    }
    if (gz && (uint64_t)o.vox_offset > p->max_memory) {
        st = mg__err(err, errlen, MG_E_LIMIT,
                     "'%s': vox_offset %lld is beyond the %llu bytes allowed",
                     path, (long long)o.vox_offset,
                     (unsigned long long)p->max_memory);
        goto done;
    }
    double slope = 1, inter = 0;
    int scaled = o.scl_slope != 0 && isfinite(o.scl_slope);
    if (scaled) {
        if (!isfinite(o.scl_inter)) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "'%s': scl_slope %g with a non-finite scl_inter",
                         path, o.scl_slope);
            goto done;
        }
        slope = o.scl_slope;
        inter = o.scl_inter;
    }
    double aff[16];
    if ((st = header_affine(aff, &o, path, err, errlen))) goto done;
    for (int k = 0; k < 8; k++) aff[k] = 0.0 - aff[k]; /* RAS+ -> LPS+ */

    /* The data of the first volume, streamed. */
    if ((st = mg__volume_alloc(&v, (uint32_t)nx, (uint32_t)ny, (uint32_t)nz,
                               0, p, "NIfTI", err, errlen)))
        goto done;
    if (gzseek(f, (z_off_t)o.vox_offset, SEEK_SET) != (z_off_t)o.vox_offset) {
        st = gz_fail(f, path, "before the data", err, errlen);
        if (!st)
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "'%s' ends before its data (offset %lld)", path,
                         (long long)o.vox_offset);
        goto done;
    }
    const size_t per_chunk = 65536;
    chunk = mg__malloc(per_chunk * bpv);
    if (!chunk) {
        st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_vox;) {
        size_t k = n_vox - i < per_chunk ? n_vox - i : per_chunk;
        if ((st = gz_read(f, chunk, k * bpv, &got, path, "in the data", err,
                          errlen)))
            goto done;
        if (got != k * bpv) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "'%s' is truncated: %llu of the %llu data bytes of "
                         "the first volume are there", path,
                         (unsigned long long)((uint64_t)i * bpv + got),
                         (unsigned long long)vol_bytes);
            goto done;
        }
        for (size_t j = 0; j < k; j++) {
            double x = voxel_value(chunk + j * bpv, o.datatype, o.swap);
            v->voxels[i + j] = (float)(scaled ? x * slope + inter : x);
        }
        i += k;
    }

    if (gz && n_after == 1) {
        /* A single volume: the gzip trailer must follow (its CRC checks
         * the data); data after the volume is ignored. */
        unsigned char extra;
        int r = gzread(f, &extra, 1);
        int zerr = Z_OK;
        const char *zmsg = gzerror(f, &zerr);
        if (r < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR)) {
            st = gz_fail(f, path, "after the data", err, errlen);
            goto done;
        }
        if (zerr == Z_BUF_ERROR) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "'%s' is truncated: the gzip stream ends before its "
                         "trailer (%s)", path, zmsg);
            goto done;
        }
    }
    v->source = MG_VOLUME_SRC_NIFTI;
    v->n_files = 1;
    snprintf(v->description, sizeof v->description, "%s", o.descrip);
    if (n_after > 1) {
        mg__strbuf w = {0};
        mg__sb_line(&w, "%dD NIfTI file: the first of %llu volumes was read",
                    (int)nd, (unsigned long long)n_after);
        char *s = mg__sb_take(&w);
        if (!s) {
            st = mg__err(err, errlen, MG_E_NOMEM, "out of memory");
            goto done;
        }
        mg__free(v->warnings);
        v->warnings = s;
        v->n_warnings = 1;
    }
    mg__volume_finish(v, aff);
    *out = v;
    v = NULL;
    st = MG_OK;
done:
    mg__free(chunk);
    mg_volume_free(v);
    if (f) gzclose_r(f);
    return st;
}

/* ---- writing ----------------------------------------------------------------- */

static void put_i16(unsigned char *p, int v) {
    p[0] = (unsigned char)(v & 0xFF);
    p[1] = (unsigned char)((v >> 8) & 0xFF);
}
static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_f32(unsigned char *p, double x) {
    float f = (float)x;
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(p, u);
}

/* Quaternion (b, c, d, with a >= 0) of a proper rotation R (row-major). */
static void rot_to_quat(const double R[9], double q[3]) {
    double a, b, c, d;
    double t = R[0] + R[4] + R[8];
    if (t > -0.5) {
        a = 0.5 * sqrt(1 + t);
        b = (R[7] - R[5]) / (4 * a);
        c = (R[2] - R[6]) / (4 * a);
        d = (R[3] - R[1]) / (4 * a);
    } else if (R[0] > R[4] && R[0] > R[8]) {
        b = 0.5 * sqrt(1 + R[0] - R[4] - R[8]);
        a = (R[7] - R[5]) / (4 * b);
        c = (R[1] + R[3]) / (4 * b);
        d = (R[2] + R[6]) / (4 * b);
    } else if (R[4] > R[8]) {
        c = 0.5 * sqrt(1 - R[0] + R[4] - R[8]);
        a = (R[2] - R[6]) / (4 * c);
        b = (R[1] + R[3]) / (4 * c);
        d = (R[5] + R[7]) / (4 * c);
    } else {
        d = 0.5 * sqrt(1 - R[0] - R[4] + R[8]);
        a = (R[3] - R[1]) / (4 * d);
        b = (R[2] + R[6]) / (4 * d);
        c = (R[5] + R[7]) / (4 * d);
    }
    if (a < 0) { b = -b; c = -c; d = -d; }
    q[0] = b;
    q[1] = c;
    q[2] = d;
}

static void build_header(unsigned char h[NII1_HDR + 4], const mg_volume *v,
                         int as_int16) {
    memset(h, 0, NII1_HDR + 4);
    put_u32(h, NII1_HDR);
    h[38] = 'r';
    const int dims[8] = {3, (int)v->nx, (int)v->ny, (int)v->nz, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++) put_i16(h + 40 + 2 * i, dims[i]);
    put_i16(h + 70, as_int16 ? DT_INT16 : DT_FLOAT32);
    put_i16(h + 72, as_int16 ? 16 : 32);

    /* RAS+ affine: LPS+ with the first two rows negated. */
    double M[12];
    for (int k = 0; k < 12; k++) M[k] = k < 8 ? 0.0 - v->affine[k] : v->affine[k];
    /* qform: a proper rotation R from the 3x3 part by Gram-Schmidt from
     * the x column; the z column is R's third column times qfac (-1 for a
     * left-handed frame) times the z voxel size. */
    double c[3][3], s[3];
    for (int k = 0; k < 3; k++) {
        for (int r = 0; r < 3; r++) c[k][r] = M[4 * r + k];
        s[k] = sqrt(c[k][0] * c[k][0] + c[k][1] * c[k][1] + c[k][2] * c[k][2]);
    }
    double u0[3], u1[3], u2[3];
    for (int r = 0; r < 3; r++) u0[r] = c[0][r] / s[0];
    double dp = u0[0] * c[1][0] + u0[1] * c[1][1] + u0[2] * c[1][2];
    for (int r = 0; r < 3; r++) u1[r] = c[1][r] - dp * u0[r];
    double n1 = sqrt(u1[0] * u1[0] + u1[1] * u1[1] + u1[2] * u1[2]);
    for (int r = 0; r < 3; r++) u1[r] /= n1;
    u2[0] = u0[1] * u1[2] - u0[2] * u1[1];
    u2[1] = u0[2] * u1[0] - u0[0] * u1[2];
    u2[2] = u0[0] * u1[1] - u0[1] * u1[0];
    double qfac = (u2[0] * c[2][0] + u2[1] * c[2][1] + u2[2] * c[2][2]) < 0 ? -1 : 1;
    double R[9];
    for (int r = 0; r < 3; r++) {
        R[3 * r] = u0[r];
        R[3 * r + 1] = u1[r];
        R[3 * r + 2] = u2[r];
    }
    double q[3];
    rot_to_quat(R, q);

    const double pixdim[8] = {qfac, s[0], s[1], s[2], 1, 1, 1, 1};
    for (int i = 0; i < 8; i++) put_f32(h + 76 + 4 * i, pixdim[i]);
    put_f32(h + 108, NII1_HDR + 4);    /* vox_offset */
    put_f32(h + 112, 1);               /* scl_slope */
    put_f32(h + 116, 0);               /* scl_inter */
    h[123] = 2 | 8;                    /* millimetres, seconds */
    char desc[80];
    snprintf(desc, sizeof desc, "libmedgemini %s%s%s", MG_VERSION_STRING,
             v->modality[0] ? " " : "", v->modality);
    memcpy(h + 148, desc, strlen(desc));
    put_i16(h + 252, 1);               /* qform_code: scanner */
    put_i16(h + 254, 1);               /* sform_code: scanner */
    for (int i = 0; i < 3; i++) {
        put_f32(h + 256 + 4 * i, q[i]);
        put_f32(h + 268 + 4 * i, M[4 * i + 3]);
    }
    for (int i = 0; i < 12; i++) put_f32(h + 280 + 4 * i, M[i]);
    memcpy(h + 344, "n+1\0", 4);
}

mg_status mg__nifti_write(const mg_volume *v, const char *path,
                          uint32_t flags, char *err, size_t errlen) {
    if (v->nx > 32767 || v->ny > 32767 || v->nz > 32767)
        return mg__err(err, errlen, MG_E_INVALID_ARG,
                       "NIfTI-1 sizes are at most 32767; the volume is "
                       "%ux%ux%u", (unsigned)v->nx, (unsigned)v->ny,
                       (unsigned)v->nz);
    int as_int16 = !(flags & MG_NIFTI_FLOAT32);
    for (size_t i = 0; i < v->n_voxels && as_int16; i++) {
        float x = v->voxels[i];
        as_int16 = x >= -32768.0f && x <= 32767.0f && x == rintf(x);
    }
    unsigned char h[NII1_HDR + 4];
    build_header(h, v, as_int16);

    size_t plen = strlen(path);
    int compress = plen >= 3 && strcmp(path + plen - 3, ".gz") == 0;
    char ebuf[128];
    errno = 0;
    gzFile f = gzopen(path, compress ? "wb6" : "wbT");
    if (!f)
        return mg__err(err, errlen, MG_E_IO, "cannot create '%s': %s", path,
                       strerror_r(errno ? errno : ENOMEM, ebuf, sizeof ebuf));
    int ok = gzwrite(f, h, sizeof h) == (int)sizeof h;
    unsigned char buf[65536];
    const size_t per = sizeof buf / (as_int16 ? 2 : 4);
    for (size_t i = 0; i < v->n_voxels && ok;) {
        size_t k = v->n_voxels - i < per ? v->n_voxels - i : per;
        for (size_t j = 0; j < k; j++) {
            float x = v->voxels[i + j];
            if (as_int16) {
                put_i16(buf + 2 * j, (int)x);
            } else {
                uint32_t u;
                memcpy(&u, &x, 4);
                put_u32(buf + 4 * j, u);
            }
        }
        size_t nb = k * (as_int16 ? 2 : 4);
        ok = gzwrite(f, buf, (unsigned)nb) == (int)nb;
        i += k;
    }
    int zerr = 0;
    const char *zmsg = ok ? "" : gzerror(f, &zerr);
    char msg[160];
    snprintf(msg, sizeof msg, "%s",
             zerr == Z_ERRNO ? strerror_r(errno, ebuf, sizeof ebuf) : zmsg);
    if (gzclose_w(f) != Z_OK && ok) {
        ok = 0;
        snprintf(msg, sizeof msg, "%s",
                 strerror_r(errno ? errno : EIO, ebuf, sizeof ebuf));
    }
    if (!ok) {
        mg__remove_partial(path);
        return mg__err(err, errlen, MG_E_IO, "cannot write '%s': %s", path,
                       msg[0] ? msg : "write failed");
    }
    return MG_OK;
}
