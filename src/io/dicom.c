/* dicom.c - the DICOM Part 10 dataset parser (PS3.10 file format, PS3.5
 * encodings): preamble and File Meta Information, transfer syntax
 * detection, explicit and implicit VR little endian, deflated datasets,
 * defined and undefined lengths, sequences (depth-limited), encapsulated
 * Pixel Data items; and the attribute reader that turns a dataset into an
 * mg__dcm_info.
 *
 * Every length is checked against the bytes that remain before it is used;
 * offsets are size_t and additions are done as "len <= end - pos". */
#include "io/dicom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* ---- transfer syntaxes ------------------------------------------------- */

static const struct {
    const char *uid;
    const char *name;
    int32_t ts;
} mg__ts_table[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", MG__TS_IMPLICIT_LE},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", MG__TS_EXPLICIT_LE},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian",
     MG__TS_DEFLATED_LE},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", MG__TS_EXPLICIT_BE},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)",
     MG__TS_JPEG_BASELINE},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)",
     MG__TS_JPEG_EXTENDED},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)",
     MG__TS_JPEG_LOSSLESS},
    {"1.2.840.10008.1.2.4.70",
     "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, "
     "Selection Value 1)", MG__TS_JPEG_LOSSLESS},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", MG__TS_JPEG_LS},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)",
     MG__TS_JPEG_LS},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 (Lossless Only)", MG__TS_JPEG2000},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000", MG__TS_JPEG2000},
    {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component (Lossless "
     "Only)", MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.94", "JPIP Referenced", MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile For 2D Video",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile For 3D Video",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 (Lossless Only)",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options "
     "(Lossless Only)", MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000",
     MG__TS_OTHER_COMPRESSED},
    {"1.2.840.10008.1.2.5", "RLE Lossless", MG__TS_RLE},
};

static const struct {
    const char *uid, *name;
} mg__sop_table[] = {
    {"1.2.840.10008.5.1.4.1.1.481.5", "RT Plan"},
    {"1.2.840.10008.5.1.4.1.1.481.3", "RT Structure Set"},
    {"1.2.840.10008.5.1.4.1.1.481.2", "RT Dose"},
    {"1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR"},
    {"1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR"},
    {"1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR"},
    {"1.2.840.10008.5.1.4.1.1.88.59", "Key Object Selection"},
    {"1.2.840.10008.5.1.4.1.1.9.1.1", "12-lead ECG Waveform"},
    {"1.2.840.10008.5.1.4.1.1.9.1.2", "General ECG Waveform"},
    {"1.2.840.10008.5.1.4.1.1.9.1.3", "Ambulatory ECG Waveform"},
    {"1.2.840.10008.5.1.4.1.1.66.4", "Segmentation"},
    {"1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF"},
    {"1.2.840.10008.5.1.4.1.1.11.1", "Grayscale Softcopy Presentation State"},
    {"1.2.840.10008.5.1.4.1.1.1", "Computed Radiography Image"},
    {"1.2.840.10008.5.1.4.1.1.2", "CT Image"},
    {"1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image"},
    {"1.2.840.10008.5.1.4.1.1.4", "MR Image"},
    {"1.2.840.10008.5.1.4.1.1.4.1", "Enhanced MR Image"},
    {"1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image"},
    {"1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image"},
};

const char *mg__dcm_sop_class_name(const char *uid) {
    for (size_t i = 0; i < sizeof mg__sop_table / sizeof mg__sop_table[0]; i++)
        if (strcmp(uid, mg__sop_table[i].uid) == 0) return mg__sop_table[i].name;
    return NULL;
}

/* ---- little helpers ---------------------------------------------------- */

static uint16_t rd16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

#define VR(a, b) ((uint16_t)(((a) << 8) | (b)))

static int vr_letters(const unsigned char *p) {
    return p[0] >= 'A' && p[0] <= 'Z' && p[1] >= 'A' && p[1] <= 'Z';
}

/* 1 for the VRs with a 2-byte reserved field and a 32-bit length. */
static int vr_long(uint16_t vr) {
    switch (vr) {
    case VR('O', 'B'): case VR('O', 'D'): case VR('O', 'F'):
    case VR('O', 'L'): case VR('O', 'V'): case VR('O', 'W'):
    case VR('S', 'Q'): case VR('S', 'V'): case VR('U', 'C'):
    case VR('U', 'N'): case VR('U', 'R'): case VR('U', 'T'):
    case VR('U', 'V'):
        return 1;
    default:
        return 0;
    }
}

/* The VRs of PS3.5 Table 6.2-1. */
static int vr_known(uint16_t vr) {
    static const char list[] = "AEASATCSDADSDTFLFDISLOLTOBODOFOLOVOWPNSHSLSQSS"
                               "STSVTMUCUIULUNURUSUTUV";
    for (size_t i = 0; i + 1 < sizeof list; i += 2)
        if (VR(list[i], list[i + 1]) == vr) return 1;
    return 0;
}

/* Sequences the image reader looks into, for implicit VR files where a
 * defined-length sequence cannot be told from other data. */
static int known_sq(uint32_t tag) {
    switch (tag) {
    case MG__DCM_TAG(0x5200, 0x9229): /* Shared Functional Groups */
    case MG__DCM_TAG(0x5200, 0x9230): /* Per-frame Functional Groups */
    case MG__DCM_TAG(0x0028, 0x9145): /* Pixel Value Transformation */
    case MG__DCM_TAG(0x0028, 0x9132): /* Frame VOI LUT */
    case MG__DCM_TAG(0x0028, 0x9110): /* Pixel Measures */
    case MG__DCM_TAG(0x0020, 0x9113): /* Plane Position (Patient) */
    case MG__DCM_TAG(0x0020, 0x9116): /* Plane Orientation (Patient) */
    case MG__DCM_TAG(0x0028, 0x3010): /* VOI LUT */
    case MG__DCM_TAG(0x0028, 0x3000): /* Modality LUT */
    case MG__DCM_TAG(0x0088, 0x0200): /* Icon Image */
        return 1;
    default:
        return 0;
    }
}

/* ---- parser ------------------------------------------------------------ */

typedef struct parser {
    mg__dcm_dataset *ds;
    const unsigned char *d;
    size_t n;
    uint64_t max_memory;   /* bound on the element table */
    char *err;
    size_t errlen;
} parser;

static mg_status add_elem(parser *ps, const mg__dcm_elem *e) {
    mg__dcm_dataset *ds = ps->ds;
    if (ds->n_el == ds->cap_el) {
        size_t cap = ds->cap_el ? ds->cap_el * 2 : 64;
        /* Each element takes 8 bytes of input at least, so cap stays
         * below size/4 entries; the table is held to max_memory too. */
        if ((uint64_t)cap * sizeof *ds->el > ps->max_memory)
            return mg__err(ps->err, ps->errlen, MG_E_LIMIT,
                           "DICOM: more elements than the %llu bytes allowed "
                           "can index", (unsigned long long)ps->max_memory);
        void *q = mg__realloc(ds->el, cap * sizeof *ds->el);
        if (!q) return mg__err(ps->err, ps->errlen, MG_E_NOMEM, "out of memory");
        ds->el = q;
        ds->cap_el = cap;
    }
    ds->el[ds->n_el++] = *e;
    return MG_OK;
}

static mg_status add_frag(parser *ps, size_t off, uint32_t len) {
    mg__dcm_dataset *ds = ps->ds;
    if (ds->n_frag == ds->cap_frag) {
        size_t cap = ds->cap_frag ? ds->cap_frag * 2 : 16;
        void *q = mg__realloc(ds->frag, cap * sizeof *ds->frag);
        if (!q) return mg__err(ps->err, ps->errlen, MG_E_NOMEM, "out of memory");
        ds->frag = q;
        ds->cap_frag = cap;
    }
    ds->frag[ds->n_frag].off = off;
    ds->frag[ds->n_frag].len = len;
    ds->n_frag++;
    return MG_OK;
}

static mg_status trunc_err(parser *ps, uint32_t tag, size_t pos) {
    return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                   "DICOM: truncated at element (%04X,%04X), offset %zu",
                   (unsigned)(tag >> 16), (unsigned)(tag & 0xFFFF), pos);
}

static mg_status parse_elems(parser *ps, size_t *pos, size_t end, int undef,
                             int explicit_vr, unsigned depth, int32_t parent,
                             uint32_t item);

/* Encapsulated Pixel Data: items until the sequence delimiter. */
static mg_status parse_encapsulated(parser *ps, size_t *pos, int top) {
    size_t p = *pos;
    for (;;) {
        if (ps->n - p < 8) return trunc_err(ps, MG__DCM_PIXEL_DATA, p);
        uint32_t tag = MG__DCM_TAG(rd16(ps->d + p), rd16(ps->d + p + 2));
        uint32_t len = rd32(ps->d + p + 4);
        p += 8;
        if (tag == MG__DCM_TAG(0xFFFE, 0xE0DD)) break;
        if (tag != MG__DCM_TAG(0xFFFE, 0xE000))
            return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: encapsulated Pixel Data holds element "
                           "(%04X,%04X) at offset %zu where an item was "
                           "expected", (unsigned)(tag >> 16),
                           (unsigned)(tag & 0xFFFF), p - 8);
        if (len == MG__DCM_UNDEF || len > ps->n - p)
            return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: Pixel Data fragment at offset %zu claims "
                           "%u bytes; %zu remain", p - 8, (unsigned)len,
                           ps->n - p);
        if (top) {
            mg_status st = add_frag(ps, p, len);
            if (st) return st;
        }
        p += len;
    }
    *pos = p;
    return MG_OK;
}

/* A sequence's items, from *pos (after the SQ header). */
static mg_status parse_sequence(parser *ps, size_t *pos, uint32_t len,
                                int explicit_vr, unsigned depth, int32_t self) {
    size_t p = *pos, end;
    uint32_t item = 0;
    if (depth > MG__DCM_MAX_DEPTH)
        return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: sequences nested deeper than %d levels",
                       MG__DCM_MAX_DEPTH);
    if (len != MG__DCM_UNDEF) {
        if (len > ps->n - p) return trunc_err(ps, ps->ds->el[self].tag, p);
        end = p + len;
    } else {
        end = ps->n;
    }
    for (;;) {
        if (len != MG__DCM_UNDEF && p == end) break;
        if (end - p < 8) return trunc_err(ps, ps->ds->el[self].tag, p);
        uint32_t tag = MG__DCM_TAG(rd16(ps->d + p), rd16(ps->d + p + 2));
        uint32_t ilen = rd32(ps->d + p + 4);
        p += 8;
        if (tag == MG__DCM_TAG(0xFFFE, 0xE0DD)) {
            if (len != MG__DCM_UNDEF)
                return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                               "DICOM: sequence delimiter inside a "
                               "defined-length sequence at offset %zu", p - 8);
            break;
        }
        if (tag != MG__DCM_TAG(0xFFFE, 0xE000))
            return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: element (%04X,%04X) at offset %zu where a "
                           "sequence item was expected",
                           (unsigned)(tag >> 16), (unsigned)(tag & 0xFFFF),
                           p - 8);
        mg_status st;
        if (ilen == MG__DCM_UNDEF) {
            st = parse_elems(ps, &p, end, 1, explicit_vr, depth, self, item);
        } else {
            if (ilen > end - p) return trunc_err(ps, ps->ds->el[self].tag, p);
            size_t iend = p + ilen;
            st = parse_elems(ps, &p, iend, 0, explicit_vr, depth, self, item);
        }
        if (st) return st;
        if (item == UINT32_MAX)
            return mg__err(ps->err, ps->errlen, MG_E_LIMIT,
                           "DICOM: too many sequence items");
        item++;
    }
    *pos = p;
    return MG_OK;
}

/* Elements up to end (defined length) or up to an item delimiter (undef). */
static mg_status parse_elems(parser *ps, size_t *pos, size_t end, int undef,
                             int explicit_vr, unsigned depth, int32_t parent,
                             uint32_t item) {
    size_t p = *pos;
    mg_status st;
    for (;;) {
        if (!undef && p == end) break;
        if (end - p < 8) {
            /* Trailing padding shorter than an element header after a
             * complete top-level dataset is tolerated only if zero. */
            if (depth == 0 && !undef) {
                int zero = 1;
                for (size_t i = p; i < end; i++) zero &= ps->d[i] == 0;
                if (zero) { p = end; break; }
            }
            return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: truncated element header at offset %zu", p);
        }
        const unsigned char *h = ps->d + p;
        uint16_t g = rd16(h), e = rd16(h + 2);
        uint32_t tag = MG__DCM_TAG(g, e);
        if (tag == MG__DCM_TAG(0xFFFE, 0xE00D)) { /* item delimiter */
            if (!undef)
                return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                               "DICOM: item delimiter outside an "
                               "undefined-length item at offset %zu", p);
            p += 8;
            break;
        }
        if (g == 0xFFFE)
            return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: unexpected delimiter (FFFE,%04X) at "
                           "offset %zu", (unsigned)e, p);
        mg__dcm_elem el;
        memset(&el, 0, sizeof el);
        el.tag = tag;
        el.depth = (uint16_t)depth;
        el.parent = parent;
        el.item = item;
        if (explicit_vr) {
            if (!vr_letters(h + 4))
                return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                               "DICOM: element (%04X,%04X) at offset %zu has "
                               "no valid VR (bytes %02X %02X)", (unsigned)g,
                               (unsigned)e, p, h[4], h[5]);
            el.vr = VR(h[4], h[5]);
            if (vr_long(el.vr) || !vr_known(el.vr)) {
                /* Unknown VRs are read as the long form (PS3.5 6.2: a
                 * future VR has the 4-byte length). */
                if (end - p < 12) return trunc_err(ps, tag, p);
                el.len = rd32(h + 8);
                p += 12;
            } else {
                el.len = rd16(h + 6);
                p += 8;
            }
        } else {
            el.len = rd32(h + 4);
            p += 8;
        }
        el.off = p;
        int is_sq = el.vr == VR('S', 'Q') ||
                    (el.vr == 0 && tag != MG__DCM_PIXEL_DATA &&
                     (el.len == MG__DCM_UNDEF || known_sq(tag))) ||
                    (el.vr == VR('U', 'N') && el.len == MG__DCM_UNDEF);
        int32_t self = (int32_t)ps->ds->n_el;
        if (ps->ds->n_el >= INT32_MAX)
            return mg__err(ps->err, ps->errlen, MG_E_LIMIT,
                           "DICOM: too many elements");
        if ((st = add_elem(ps, &el))) return st;
        if (depth == 0 && tag == MG__DCM_PIXEL_DATA) ps->ds->pixel_el = self;
        if (depth == 0 && (tag == MG__DCM_TAG(0x7FE0, 0x0008) ||
                           tag == MG__DCM_TAG(0x7FE0, 0x0009)))
            ps->ds->float_pixels = 1;
        if (is_sq) {
            /* UN with undefined length: implicit VR LE inside (PS3.5
             * 6.2.2). */
            int ex = el.vr == VR('U', 'N') ? 0 : explicit_vr;
            size_t q = p;
            if ((st = parse_sequence(ps, &q, el.len, ex, depth + 1, self)))
                return st;
            if (el.len == MG__DCM_UNDEF)
                ps->ds->el[self].len = (uint32_t)0; /* value not addressable */
            p = q;
        } else if (el.len == MG__DCM_UNDEF) {
            if (tag != MG__DCM_PIXEL_DATA)
                return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                               "DICOM: element (%04X,%04X) has an undefined "
                               "length but is not a sequence or Pixel Data",
                               (unsigned)g, (unsigned)e);
            ps->ds->el[self].len = MG__DCM_UNDEF;
            if ((st = parse_encapsulated(ps, &p, depth == 0))) return st;
        } else {
            if (el.len > end - p)
                return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                               "DICOM: element (%04X,%04X) at offset %zu "
                               "claims %u bytes; only %zu remain", (unsigned)g,
                               (unsigned)e, p - 8, (unsigned)el.len, end - p);
            p += el.len;
        }
        if (!undef && p > end)
            return mg__err(ps->err, ps->errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: item contents overrun the item at offset "
                           "%zu", p);
    }
    *pos = p;
    return MG_OK;
}

void mg__dcm_free(mg__dcm_dataset *ds) {
    if (!ds) return;
    mg__free(ds->el);
    mg__free(ds->frag);
    mg__free(ds->inflated);
    memset(ds, 0, sizeof *ds);
    ds->pixel_el = -1;
}

/* Plausible first element of a bare dataset (no preamble, no "DICM"). */
static int bare_dataset(const unsigned char *d, size_t n) {
    if (n < 8) return 0;
    uint16_t g = rd16(d), e = rd16(d + 2);
    uint16_t gbe = (uint16_t)((d[0] << 8) | d[1]);
    /* Meta group or the usual first groups, little or big endian. */
    int glike = g == 0x0002 || g == 0x0008 || (g == 0x0000 && e == 0x0000);
    int gbelike = gbe == 0x0002 || gbe == 0x0008;
    if (!glike && !gbelike) return 0;
    if (vr_letters(d + 4)) return vr_known(VR(d[4], d[5]));
    /* Implicit VR: a length that fits the data, or undefined. */
    uint32_t len = rd32(d + 4);
    return glike && (len == MG__DCM_UNDEF || len <= n - 8);
}

int mg__image_is_dicom(const unsigned char *d, size_t n) {
    if (n >= 132 && memcmp(d + 128, "DICM", 4) == 0) return 1;
    if (n >= 12 && memcmp(d, "DICM", 4) == 0) return 1;
    return bare_dataset(d, n);
}

static void set_ts(mg__dcm_dataset *ds, const char *uid) {
    snprintf(ds->ts_uid, sizeof ds->ts_uid, "%s", uid);
    ds->ts = 0;
    ds->ts_name = "unknown transfer syntax";
    for (size_t i = 0; i < sizeof mg__ts_table / sizeof mg__ts_table[0]; i++)
        if (strcmp(uid, mg__ts_table[i].uid) == 0) {
            ds->ts = mg__ts_table[i].ts;
            ds->ts_name = mg__ts_table[i].name;
        }
}

/* Inflates the raw deflate stream (no zlib header, PS3.5 A.5) in
 * d[0..n) within `limit` bytes. */
static mg_status inflate_all(unsigned char **out, size_t *out_n,
                             const unsigned char *d, size_t n, uint64_t limit,
                             char *err, size_t errlen) {
    z_stream zs;
    size_t cap = n * 4 + 1024, used = 0;
    unsigned char *buf;
    int r;
    *out = NULL;
    *out_n = 0;
    if (cap > limit) cap = (size_t)limit;
    if (cap == 0) cap = 1;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK)
        return mg__err(err, errlen, MG_E_NOMEM, "DICOM: zlib init failed");
    buf = mg__malloc(cap);
    if (!buf) {
        inflateEnd(&zs);
        return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    }
    size_t in_done = 0;
    for (;;) {
        uInt in_chunk = (uInt)((n - in_done) > 0x40000000u ? 0x40000000u
                                                            : (n - in_done));
        uInt out_chunk = (uInt)((cap - used) > 0x40000000u ? 0x40000000u
                                                            : (cap - used));
        zs.next_in = (Bytef *)(uintptr_t)(d + in_done);
        zs.avail_in = in_chunk;
        zs.next_out = buf + used;
        zs.avail_out = out_chunk;
        r = inflate(&zs, Z_NO_FLUSH);
        in_done += in_chunk - zs.avail_in;
        used += out_chunk - zs.avail_out;
        if (r == Z_STREAM_END) break;
        if (r != Z_OK && r != Z_BUF_ERROR) {
            inflateEnd(&zs);
            mg__free(buf);
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: deflated dataset is corrupt (%s)",
                           zs.msg ? zs.msg : "zlib error");
        }
        if (used == cap) {
            if (cap >= limit) {
                inflateEnd(&zs);
                mg__free(buf);
                return mg__err(err, errlen, MG_E_LIMIT,
                               "DICOM: deflated dataset expands beyond the "
                               "%llu bytes allowed",
                               (unsigned long long)limit);
            }
            size_t ncap = cap > (size_t)limit / 2 ? (size_t)limit : cap * 2;
            unsigned char *q = mg__realloc(buf, ncap);
            if (!q) {
                inflateEnd(&zs);
                mg__free(buf);
                return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
            }
            buf = q;
            cap = ncap;
        } else if (in_done == n && r == Z_BUF_ERROR) {
            inflateEnd(&zs);
            mg__free(buf);
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: deflated dataset is truncated");
        }
    }
    inflateEnd(&zs);
    *out = buf;
    *out_n = used;
    return MG_OK;
}

mg_status mg__dcm_parse(mg__dcm_dataset *ds, const unsigned char *d, size_t n,
                        const mg_image_params *p, char *err, size_t errlen) {
    parser ps;
    size_t pos = 0;
    mg_status st;

    memset(ds, 0, sizeof *ds);
    ds->pixel_el = -1;
    ds->ts_name = "unknown transfer syntax";
    if (n >= 132 && memcmp(d + 128, "DICM", 4) == 0)
        pos = 132;
    else if (n >= 4 && memcmp(d, "DICM", 4) == 0)
        pos = 4;

    /* File Meta Information: explicit VR little endian, group 0002. */
    char uid[68] = "";
    while (n - pos >= 8 && rd16(d + pos) == 0x0002) {
        const unsigned char *h = d + pos;
        uint16_t e = rd16(h + 2);
        uint32_t len;
        size_t hl;
        if (!vr_letters(h + 4))
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: file meta element (0002,%04X) has no VR",
                           (unsigned)e);
        if (vr_long(VR(h[4], h[5]))) {
            if (n - pos < 12)
                return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                               "DICOM: truncated file meta information");
            len = rd32(h + 8);
            hl = 12;
        } else {
            len = rd16(h + 6);
            hl = 8;
        }
        if (len == MG__DCM_UNDEF || len > n - pos - hl)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: file meta element (0002,%04X) claims %u "
                           "bytes; %zu remain", (unsigned)e, (unsigned)len,
                           n - pos - hl);
        if (e == 0x0010) {
            size_t k = len < sizeof uid - 1 ? len : sizeof uid - 1;
            memcpy(uid, h + hl, k);
            uid[k] = '\0';
            while (k > 0 && (uid[k - 1] == ' ' || uid[k - 1] == '\0'))
                uid[--k] = '\0';
            for (size_t i = 0; i < k; i++)
                if (uid[i] < ' ' || uid[i] > '~') uid[i] = '?';
        }
        ds->has_meta = 1;
        pos += hl + len;
    }

    if (uid[0]) {
        set_ts(ds, uid);
    } else {
        /* No Transfer Syntax UID: guess from the first element, as
         * toolkits do: byte order from the group, VR from the letters. */
        ds->ts_guessed = 1;
        if (n - pos < 8)
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: no dataset after the file header");
        uint16_t g = rd16(d + pos);
        if ((g & 0xFF) == 0 && g != 0 && (g >> 8) <= 0x08)
            set_ts(ds, "1.2.840.10008.1.2.2");
        else if (vr_letters(d + pos + 4) && vr_known(VR(d[pos + 4], d[pos + 5])))
            set_ts(ds, "1.2.840.10008.1.2.1");
        else
            set_ts(ds, "1.2.840.10008.1.2");
    }

    int explicit_vr;
    switch (ds->ts) {
    case MG__TS_IMPLICIT_LE:
        explicit_vr = 0;
        break;
    case MG__TS_EXPLICIT_BE:
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: transfer syntax %s (%s)%s is not supported",
                       ds->ts_name, ds->ts_uid,
                       ds->ts_guessed ? ", guessed from the data," : "");
    case 0:
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: unknown transfer syntax UID '%s'", ds->ts_uid);
    default:
        explicit_vr = 1; /* every other known syntax is explicit VR LE */
        break;
    }

    const unsigned char *body = d;
    size_t body_n = n;
    if (ds->ts == MG__TS_DEFLATED_LE) {
        unsigned char *inf;
        size_t inf_n;
        if ((st = inflate_all(&inf, &inf_n, d + pos, n - pos, p->max_memory,
                              err, errlen)))
            return st;
        ds->inflated = inf;
        body = inf;
        body_n = inf_n;
        pos = 0;
    }
    ds->data = body;
    ds->size = body_n;

    /* Some writers mislabel the encoding: trust the first element's bytes
     * (the same check pydicom and dcmtk make). */
    if (body_n - pos >= 8) {
        int looks_explicit = vr_letters(body + pos + 4) &&
                             vr_known(VR(body[pos + 4], body[pos + 5]));
        if (explicit_vr && !looks_explicit) explicit_vr = 0;
        else if (!explicit_vr && looks_explicit) explicit_vr = 1;
    }

    ps.ds = ds;
    ps.max_memory = p->max_memory;
    ps.d = body;
    ps.n = body_n;
    ps.err = err;
    ps.errlen = errlen;
    st = parse_elems(&ps, &pos, body_n, 0, explicit_vr, 0, -1, 0);
    if (st) {
        mg__dcm_free(ds);
        return st;
    }
    return MG_OK;
}

/* ---- lookups ----------------------------------------------------------- */

int32_t mg__dcm_find(const mg__dcm_dataset *ds, int32_t parent, uint32_t item,
                     uint32_t tag) {
    size_t start = parent < 0 ? 0 : (size_t)parent + 1;
    unsigned depth = parent < 0 ? 0 : ds->el[parent].depth + 1u;
    for (size_t i = start; i < ds->n_el; i++) {
        const mg__dcm_elem *e = &ds->el[i];
        if (e->depth < depth) break; /* left the parent's subtree */
        if (e->depth == depth && e->parent == parent && e->item == item &&
            e->tag == tag)
            return (int32_t)i;
    }
    return -1;
}

uint32_t mg__dcm_items(const mg__dcm_dataset *ds, int32_t sq) {
    uint32_t n = 0;
    if (sq < 0) return 0;
    for (size_t i = (size_t)sq + 1; i < ds->n_el; i++) {
        const mg__dcm_elem *e = &ds->el[i];
        if (e->depth <= ds->el[sq].depth) break;
        if (e->parent == sq && e->item + 1 > n) n = e->item + 1;
    }
    return n;
}

int mg__dcm_str(const mg__dcm_dataset *ds, int32_t idx, char *buf, size_t n) {
    if (n) buf[0] = '\0';
    if (idx < 0 || !n) return 0;
    const mg__dcm_elem *e = &ds->el[idx];
    if (e->len == MG__DCM_UNDEF) return 0;
    const char *s = (const char *)ds->data + e->off;
    size_t len = e->len;
    while (len && (*s == ' ')) { s++; len--; }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\0')) len--;
    if (len > n - 1) len = n - 1;
    for (size_t i = 0; i < len; i++)
        buf[i] = (s[i] >= ' ' && s[i] <= '~') ? s[i] : '?';
    buf[len] = '\0';
    return 1;
}

int mg__dcm_text(const mg__dcm_dataset *ds, int32_t idx, char *buf, size_t n) {
    if (n) buf[0] = '\0';
    if (idx < 0 || !n) return 0;
    const mg__dcm_elem *e = &ds->el[idx];
    if (e->len == MG__DCM_UNDEF) return 0;
    const unsigned char *s = ds->data + e->off;
    size_t len = e->len;
    while (len && *s == ' ') { s++; len--; }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\0')) len--;
    if (len > n - 1) len = n - 1;
    for (size_t i = 0; i < len; i++)
        buf[i] = s[i] < ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t' ? '?' : (char)s[i];
    buf[len] = '\0';
    return 1;
}

int32_t mg__dcm_u16(const mg__dcm_dataset *ds, int32_t idx) {
    if (idx < 0) return -1;
    const mg__dcm_elem *e = &ds->el[idx];
    if (e->len < 2 || e->len == MG__DCM_UNDEF) return -1;
    return rd16(ds->data + e->off);
}

int mg__dcm_num(const mg__dcm_dataset *ds, int32_t idx, uint32_t k,
                double *out) {
    if (idx < 0) return 0;
    const mg__dcm_elem *e = &ds->el[idx];
    if (e->len == MG__DCM_UNDEF) return 0;
    const unsigned char *v = ds->data + e->off;
    uint32_t len = e->len;
    switch (e->vr) {
    case VR('U', 'S'):
        if ((uint64_t)k * 2 + 2 > len) return 0;
        *out = rd16(v + 2 * k);
        return 1;
    case VR('S', 'S'):
        if ((uint64_t)k * 2 + 2 > len) return 0;
        *out = (int16_t)rd16(v + 2 * k);
        return 1;
    case VR('U', 'L'):
        if ((uint64_t)k * 4 + 4 > len) return 0;
        *out = rd32(v + 4 * k);
        return 1;
    case VR('S', 'L'):
        if ((uint64_t)k * 4 + 4 > len) return 0;
        *out = (int32_t)rd32(v + 4 * k);
        return 1;
    case VR('F', 'L'): {
        if ((uint64_t)k * 4 + 4 > len) return 0;
        uint32_t u = rd32(v + 4 * k);
        float f;
        memcpy(&f, &u, 4);
        *out = f;
        return isfinite(*out) ? 1 : -1;
    }
    case VR('F', 'D'): {
        if ((uint64_t)k * 8 + 8 > len) return 0;
        uint64_t u = rd32(v + 8 * k) | ((uint64_t)rd32(v + 8 * k + 4) << 32);
        memcpy(out, &u, 8);
        return isfinite(*out) ? 1 : -1;
    }
    default:
        break;
    }
    /* DS / IS (or unknown VR in implicit files): text. */
    uint32_t i = 0, field = 0;
    while (field < k && i < len) {
        if (v[i] == '\\') field++;
        i++;
    }
    if (field < k) return 0;
    char buf[72];
    size_t m = 0;
    while (i < len && v[i] != '\\') {
        if (m + 1 < sizeof buf) buf[m++] = (char)v[i];
        i++;
    }
    buf[m] = '\0';
    char *s = buf;
    while (*s == ' ') s++;
    size_t sl = strlen(s);
    while (sl && (s[sl - 1] == ' ' || s[sl - 1] == '\0')) s[--sl] = '\0';
    if (!*s) return 0;
    for (char *c = s; *c; c++)
        if (!strchr("0123456789+-.eE", *c)) return -1;
    char *endp;
    double x = strtod(s, &endp);
    if (*endp || !isfinite(x)) return -1;
    *out = x;
    return 1;
}

/* ---- attributes -------------------------------------------------------- */

static mg_status need_u16(uint32_t *out, const mg__dcm_dataset *ds,
                          uint32_t tag, const char *name, int32_t dflt,
                          char *err, size_t errlen) {
    int32_t idx = mg__dcm_find(ds, -1, 0, tag);
    int32_t v = mg__dcm_u16(ds, idx);
    if (v < 0) {
        if (dflt >= 0 && idx < 0) { *out = (uint32_t)dflt; return MG_OK; }
        return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                       "DICOM: %s (%04X,%04X) is %s", name,
                       (unsigned)(tag >> 16), (unsigned)(tag & 0xFFFF),
                       idx < 0 ? "missing" : "malformed");
    }
    *out = (uint32_t)v;
    return MG_OK;
}

/* Looks tag up in functional group sequence `fg_seq` -> item -> `macro`
 * sequence -> item 0; returns the element or -1. */
static int32_t fg_find(const mg__dcm_dataset *ds, uint32_t fg_seq,
                       uint32_t item, uint32_t macro, uint32_t tag) {
    int32_t s = mg__dcm_find(ds, -1, 0, fg_seq);
    if (s < 0) return -1;
    int32_t m = mg__dcm_find(ds, s, item, macro);
    if (m < 0) return -1;
    return mg__dcm_find(ds, m, 0, tag);
}

/* tag at top level, else per-frame group for frame, else shared group. */
static int32_t find_fg(const mg__dcm_dataset *ds, uint32_t frame,
                       uint32_t macro, uint32_t tag) {
    int32_t i = mg__dcm_find(ds, -1, 0, tag);
    if (i >= 0) return i;
    i = fg_find(ds, MG__DCM_TAG(0x5200, 0x9230), frame, macro, tag);
    if (i >= 0) return i;
    return fg_find(ds, MG__DCM_TAG(0x5200, 0x9229), 0, macro, tag);
}

/* k numbers of element idx: 1 when all are there, 0 when the element is
 * absent or empty, -1 when it has a value but one of the k is missing or
 * malformed. */
static int nums(const mg__dcm_dataset *ds, int32_t idx, double *v, uint32_t k) {
    if (idx < 0 || ds->el[idx].len == 0) return 0; /* absent or empty */
    for (uint32_t i = 0; i < k; i++)
        if (mg__dcm_num(ds, idx, i, &v[i]) != 1) return -1;
    return 1;
}

mg_status mg__dcm_read_info(mg__dcm_info *o, const mg__dcm_dataset *ds,
                            uint32_t frame, char *err, size_t errlen) {
    mg_status st;
    double x;
    memset(o, 0, sizeof *o);
    mg__dcm_str(ds, mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0008, 0x0016)),
                o->sop_class_uid, sizeof o->sop_class_uid);
    mg__dcm_str(ds, mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0008, 0x0060)),
                o->modality, sizeof o->modality);
    mg__dcm_str(ds, mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0020, 0x000E)),
                o->series_uid, sizeof o->series_uid);
    mg__dcm_str(ds, mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0020, 0x000D)),
                o->study_uid, sizeof o->study_uid);
    mg__dcm_str(ds, mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0020, 0x0052)),
                o->frame_of_ref_uid, sizeof o->frame_of_ref_uid);
    if (mg__dcm_num(ds, mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0020, 0x0013)),
                    0, &x) == 1 && fabs(x) < 2e9)
        o->instance_number = (int32_t)x;

    if (ds->pixel_el < 0) {
        const char *what = mg__dcm_sop_class_name(o->sop_class_uid);
        if (ds->float_pixels)
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "DICOM: floating-point pixel data is not "
                           "supported");
        if (what || o->sop_class_uid[0])
            return mg__err(err, errlen, MG_E_UNSUPPORTED,
                           "DICOM: not an image: no Pixel Data (SOP class "
                           "%s%s%s)", what ? what : "", what ? ", " : "",
                           o->sop_class_uid);
        return mg__err(err, errlen, MG_E_UNSUPPORTED,
                       "DICOM: not an image: no Pixel Data element");
    }

    if ((st = need_u16(&o->rows, ds, MG__DCM_TAG(0x0028, 0x0010), "Rows", -1,
                       err, errlen)) ||
        (st = need_u16(&o->cols, ds, MG__DCM_TAG(0x0028, 0x0011), "Columns",
                       -1, err, errlen)) ||
        (st = need_u16(&o->spp, ds, MG__DCM_TAG(0x0028, 0x0002),
                       "Samples per Pixel", 1, err, errlen)) ||
        (st = need_u16(&o->bits_alloc, ds, MG__DCM_TAG(0x0028, 0x0100),
                       "Bits Allocated", -1, err, errlen)) ||
        (st = need_u16(&o->pixel_rep, ds, MG__DCM_TAG(0x0028, 0x0103),
                       "Pixel Representation", 0, err, errlen)))
        return st;
    if ((st = need_u16(&o->bits_stored, ds, MG__DCM_TAG(0x0028, 0x0101),
                       "Bits Stored", (int32_t)o->bits_alloc, err, errlen)) ||
        (st = need_u16(&o->high_bit, ds, MG__DCM_TAG(0x0028, 0x0102),
                       "High Bit", (int32_t)o->bits_stored - 1, err, errlen)) ||
        (st = need_u16(&o->planar, ds, MG__DCM_TAG(0x0028, 0x0006),
                       "Planar Configuration", 0, err, errlen)))
        return st;
    if (!mg__dcm_str(ds, mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0028, 0x0004)),
                     o->photometric, sizeof o->photometric)) {
        /* Absent in some old files: monochrome by sample count. */
        snprintf(o->photometric, sizeof o->photometric, "%s",
                 o->spp == 1 ? "MONOCHROME2" : "RGB");
    }
    int32_t nf = mg__dcm_find(ds, -1, 0, MG__DCM_TAG(0x0028, 0x0008));
    o->n_frames = 1;
    if (nf >= 0) {
        int r = mg__dcm_num(ds, nf, 0, &x);
        if (r < 0 || (r == 1 && (x != floor(x) || x < 0 || x > 4294967295.0))) {
            char s[40];
            mg__dcm_str(ds, nf, s, sizeof s);
            return mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                           "DICOM: Number of Frames '%s' is not a "
                           "non-negative integer", s);
        }
        if (r == 1 && x >= 1) o->n_frames = (uint32_t)x;
    }

    /* Modality LUT (rescale), VOI window: top level or functional groups.
     * (RT Dose Grid Scaling is not a modality transform and is not
     * applied, as in dcmtk and pydicom.) */
    o->slope = 1;
    o->intercept = 0;
    int32_t si = find_fg(ds, frame, MG__DCM_TAG(0x0028, 0x9145),
                         MG__DCM_TAG(0x0028, 0x1053));
    int32_t ii = find_fg(ds, frame, MG__DCM_TAG(0x0028, 0x9145),
                         MG__DCM_TAG(0x0028, 0x1052));
    if (mg__dcm_num(ds, si, 0, &x) == 1 && x != 0) o->slope = x;
    if (mg__dcm_num(ds, ii, 0, &x) == 1) o->intercept = x;
    int32_t wc = find_fg(ds, frame, MG__DCM_TAG(0x0028, 0x9132),
                         MG__DCM_TAG(0x0028, 0x1050));
    int32_t ww = find_fg(ds, frame, MG__DCM_TAG(0x0028, 0x9132),
                         MG__DCM_TAG(0x0028, 0x1051));
    double c, w;
    if (mg__dcm_num(ds, wc, 0, &c) == 1 && mg__dcm_num(ds, ww, 0, &w) == 1 &&
        w >= 1) {
        o->has_window = 1;
        o->window_center = c;
        o->window_width = w;
    }

    /* Geometry, for series and volumes. */
    o->has_position = nums(ds, find_fg(ds, frame, MG__DCM_TAG(0x0020, 0x9113),
                                       MG__DCM_TAG(0x0020, 0x0032)),
                           o->position, 3);
    o->has_orientation =
        nums(ds, find_fg(ds, frame, MG__DCM_TAG(0x0020, 0x9116),
                         MG__DCM_TAG(0x0020, 0x0037)),
             o->orientation, 6);
    o->has_spacing = nums(ds, find_fg(ds, frame, MG__DCM_TAG(0x0028, 0x9110),
                                      MG__DCM_TAG(0x0028, 0x0030)),
                          o->spacing, 2);
    o->has_thickness = nums(ds, find_fg(ds, frame, MG__DCM_TAG(0x0028, 0x9110),
                                        MG__DCM_TAG(0x0018, 0x0050)),
                            &o->thickness, 1);
    o->has_between = nums(ds, find_fg(ds, frame, MG__DCM_TAG(0x0028, 0x9110),
                                      MG__DCM_TAG(0x0018, 0x0088)),
                          &o->between, 1);
    return MG_OK;
}
