/* dicom.h - DICOM Part 10 reading: the dataset parser (reusable for series
 * and volumes), the image attributes it yields, and the pixel decoders.
 *
 * The parser records every element of the dataset, nested ones included,
 * in a flat array (value offsets point into the file buffer, or into the
 * inflated copy for deflated files); lookups go by tag within one item of
 * one sequence. Nothing is interpreted while parsing beyond what is needed
 * to find element boundaries. */
#ifndef MG_DICOM_H
#define MG_DICOM_H

#include "core/core.h"
#include "io/image.h"

#define MG__DCM_UNDEF 0xFFFFFFFFu
/* Sequences nested deeper than this are refused (the standard sets no
 * limit; real files use fewer than 10 levels). */
#define MG__DCM_MAX_DEPTH 32

/* Tags as (group << 16 | element). */
#define MG__DCM_TAG(g, e) (((uint32_t)(g) << 16) | (uint32_t)(e))
#define MG__DCM_PIXEL_DATA MG__DCM_TAG(0x7FE0, 0x0010)

typedef struct mg__dcm_elem {
    uint32_t tag;
    uint16_t vr;       /* two ASCII letters, first in the high byte; 0 =
                          unknown (implicit VR) */
    uint16_t depth;    /* 0 = top-level dataset */
    int32_t parent;    /* index of the enclosing SQ element, -1 at top */
    uint32_t item;     /* item number within the parent sequence */
    uint32_t len;      /* value length; MG__DCM_UNDEF for undefined */
    size_t off;        /* value offset in ds->data */
} mg__dcm_elem;

typedef struct mg__dcm_frag {
    size_t off;        /* fragment value offset in ds->data */
    uint32_t len;
} mg__dcm_frag;

/* Transfer syntaxes the reader knows by name. */
enum {
    MG__TS_IMPLICIT_LE = 1,
    MG__TS_EXPLICIT_LE,
    MG__TS_DEFLATED_LE,
    MG__TS_EXPLICIT_BE,
    MG__TS_JPEG_BASELINE,
    MG__TS_JPEG_EXTENDED,
    MG__TS_JPEG_LOSSLESS,   /* processes 14 / 14 SV1 (jpeg_lossless.c) */
    MG__TS_RLE,
    MG__TS_OTHER_COMPRESSED,/* JPEG 2000 Part 2, HTJ2K, video ...: not
                               decoded */
    MG__TS_JPEG_LS,         /* lossless and near-lossless (CharLS) */
    MG__TS_JPEG2000         /* lossless-only and lossy (OpenJPEG) */
};

typedef struct mg__dcm_dataset {
    const unsigned char *data; /* the dataset bytes (file or inflated) */
    size_t size;
    unsigned char *inflated;   /* owned, for deflated files */
    mg__dcm_elem *el;
    size_t n_el, cap_el;
    mg__dcm_frag *frag;        /* top-level encapsulated Pixel Data items */
    size_t n_frag, cap_frag;   /* frag[0] is the Basic Offset Table */
    int32_t pixel_el;          /* top-level Pixel Data element, -1 if none */
    int32_t float_pixels;      /* Float/Double Float Pixel Data present */
    int32_t has_meta;          /* a File Meta Information group was read */
    int32_t ts;                /* MG__TS_* (0 unknown) */
    int32_t ts_guessed;        /* no Transfer Syntax UID: guessed from data */
    char ts_uid[68];
    const char *ts_name;       /* static text */
} mg__dcm_dataset;

/* Parses a whole Part 10 file (or a bare dataset starting at offset 0, as
 * written without preamble and meta). Big endian and unknown non-LE
 * syntaxes are refused here with MG_E_UNSUPPORTED naming the syntax.
 * Deflated datasets are inflated within p->max_memory. On failure ds is
 * freed. */
mg_status mg__dcm_parse(mg__dcm_dataset *ds, const unsigned char *data,
                        size_t size, const mg_image_params *p, char *err,
                        size_t errlen);
void mg__dcm_free(mg__dcm_dataset *ds);

/* 1 when data looks like DICOM: "DICM" after the 128-byte preamble or at
 * offset 0, or a plausible first element of a bare dataset. */
int mg__image_is_dicom(const unsigned char *data, size_t size);

/* Index of the element `tag` directly inside item `item` of the sequence
 * element `parent` (-1: top level), or -1. */
int32_t mg__dcm_find(const mg__dcm_dataset *ds, int32_t parent, uint32_t item,
                     uint32_t tag);
/* Number of items of sequence element `sq` (0 if not a parsed sequence). */
uint32_t mg__dcm_items(const mg__dcm_dataset *ds, int32_t sq);
/* The value of a string element, without trailing spaces/NULs (and leading
 * spaces), truncated to n-1 bytes; "" when absent. Returns 1 if found. */
int mg__dcm_str(const mg__dcm_dataset *ds, int32_t idx, char *buf, size_t n);
/* The k-th (0-based) backslash-separated numeric value of a DS/IS element
 * or of a binary US/SS/UL/SL/FL/FD one (binary types need the VR, so in
 * implicit files binary values are read as US when len is 2k). Returns 1 on
 * success, 0 if absent, -1 if present but not a number. */
int mg__dcm_num(const mg__dcm_dataset *ds, int32_t idx, uint32_t k,
                double *out);
/* Same, but bytes above 0x7E are kept as they are (text in the dataset's
 * character set, for the caller to convert); control characters other than
 * TAB, LF and CR become '?'. */
int mg__dcm_text(const mg__dcm_dataset *ds, int32_t idx, char *buf, size_t n);
/* A 16-bit unsigned binary value (US); -1 if absent or malformed. */
int32_t mg__dcm_u16(const mg__dcm_dataset *ds, int32_t idx);

/* What an image reader (and later the volume reader) needs from a dataset.
 * Functional groups of enhanced multi-frame objects are consulted for the
 * frame given (per-frame first, then shared). */
typedef struct mg__dcm_info {
    uint32_t rows, cols, spp, bits_alloc, bits_stored, high_bit;
    uint32_t pixel_rep, planar, n_frames;
    char photometric[20];
    char modality[20];
    char sop_class_uid[68];
    char series_uid[68];
    char study_uid[68];
    char frame_of_ref_uid[68];
    double slope, intercept;       /* 1, 0 when absent */
    int32_t has_window;
    double window_center, window_width; /* the first pair */
    /* Geometry (top level, else the frame's functional groups): 1 when
     * present and numeric, 0 when absent, -1 when present but malformed
     * (too few values, not numbers, NaN or infinite). */
    int32_t has_position, has_orientation, has_spacing, has_thickness;
    int32_t has_between;           /* Spacing Between Slices (0018,0088) */
    double position[3], orientation[6], spacing[2], thickness, between;
    int32_t instance_number;
} mg__dcm_info;

/* Reads the image attributes for `frame`. Errors (MG_E_IMAGE_FORMAT /
 * MG_E_UNSUPPORTED) for a missing or malformed mandatory attribute; a file
 * without Pixel Data gets a message naming what it is (SOP class). */
mg_status mg__dcm_read_info(mg__dcm_info *out, const mg__dcm_dataset *ds,
                            uint32_t frame, char *err, size_t errlen);

/* A readable name of a SOP Class UID, or NULL. */
const char *mg__dcm_sop_class_name(const char *uid);

/* RLE Lossless (PS3.5 Annex G) decode of one frame: the segments hold the
 * bytes of each sample most significant byte first; out receives
 * rows*cols*spp samples of `bytes` bytes each, native endian, interleaved.
 * Every offset and run is bounds-checked. */
mg_status mg__dcm_rle_decode(void *out, const unsigned char *src, size_t n,
                             uint32_t rows, uint32_t cols, uint32_t spp,
                             uint32_t bytes, char *err, size_t errlen);

/* JPEG-LS (CharLS) decode of one frame src[0..n): the frame header must
 * say cols x rows with spp components of 2..max_prec bits. out receives
 * rows*cols*spp samples, interleaved; *prec the sample precision. budget:
 * the bytes the decoder may set aside (checked before it does). Defined in
 * dicom_jls.c. */
mg_status mg__dcm_jls_decode(int64_t *out, uint32_t *prec,
                             const unsigned char *src, size_t n, uint32_t rows,
                             uint32_t cols, uint32_t spp, uint32_t max_prec,
                             uint64_t budget, char *err, size_t errlen);

/* JPEG 2000 (OpenJPEG) decode of one frame src[0..n), a J2K codestream or a
 * JP2 file: the same contract as mg__dcm_jls_decode (precision 1..max_prec);
 * samples are negative when the codestream is signed (*sgnd). Defined in
 * dicom_j2k.c. */
mg_status mg__dcm_j2k_decode(int64_t *out, uint32_t *prec, int *sgnd,
                             const unsigned char *src, size_t n, uint32_t rows,
                             uint32_t cols, uint32_t spp, uint32_t max_prec,
                             uint64_t budget, char *err, size_t errlen);

/* ---- frames (dicom_frame.c) --------------------------------------------- */

/* The bytes of encapsulated frame `frame` of n_frames: found through the
 * Basic Offset Table, else one fragment per frame, else (one frame) all
 * fragments, else a new frame at each fragment starting its codestream's
 * first marker. Several fragments are joined into a new buffer, *owned
 * (release with mg__free; NULL when *bytes points into the dataset). */
mg_status mg__dcm_frame_bytes(const unsigned char **bytes, size_t *len,
                              unsigned char **owned,
                              const mg__dcm_dataset *ds, uint32_t n_frames,
                              uint32_t frame, char *err, size_t errlen);

/* Decodes one encapsulated frame src[0..len) of transfer syntax ts
 * (MG__TS_RLE, _JPEG_BASELINE, _JPEG_EXTENDED, _JPEG_LOSSLESS, _JPEG_LS,
 * _JPEG2000; ts_name for messages) whose pixels the DICOM header `in`
 * describes. out receives rows*cols*spp stored values, interleaved (Bits
 * Stored and Pixel Representation applied); *ybr is 1 when they are still
 * full-range YCbCr for the caller to convert, 0 for grey or RGB. The
 * stream's size and component count must equal the header's
 * (MG_E_IMAGE_FORMAT otherwise); the codec's own memory is held to
 * p->max_memory less the 8 bytes per sample of out. */
mg_status mg__dcm_decode_frame(int64_t *out, int *ybr,
                               const unsigned char *src, size_t len,
                               int32_t ts, const char *ts_name,
                               const mg__dcm_info *in, const mg_image_params *p,
                               char *err, size_t errlen);

/* Stored values of frame `frame` of a dataset, native or encapsulated (the
 * two functions above): the contract of mg__dcm_decode_frame. The caller
 * has checked the header (sizes, bits, photometric, frame number). */
mg_status mg__dcm_frame_samples(int64_t *out, int *ybr,
                                const mg__dcm_dataset *ds,
                                const mg__dcm_info *in, uint32_t frame,
                                const mg_image_params *p, char *err,
                                size_t errlen);

/* JPEG (libjpeg) decode of one frame into dst (w*h*comps bytes, 8-bit).
 * rgb_as_is: no colour transform when the stream carries no Adobe marker
 * (DICOM Photometric Interpretation RGB). Defined in image_jpeg.c. */
mg_status mg__jpeg_decode_into(unsigned char *dst, uint32_t w, uint32_t h,
                               uint32_t comps, int rgb_as_is,
                               const unsigned char *data, size_t size,
                               const mg_image_params *p, int *precision,
                               char *err, size_t errlen);

/* The checks every reader makes before asking for a frame's samples: the
 * transfer syntax has a decoder and matches the Pixel Data's encoding
 * (native or encapsulated), Photometric Interpretation, Samples per Pixel,
 * bits and the frame number p->frame are consistent and supported (for
 * p->window too). *color is 1 for RGB/YBR data. */
mg_status mg__dcm_check_pixels(const mg__dcm_dataset *ds,
                               const mg__dcm_info *in, const mg_image_params *p,
                               int *color, char *err, size_t errlen);

/* The DICOM image reader behind mg_image_load_memory. */
mg_status mg__image_decode_dicom(mg_image **out, const unsigned char *data,
                                 size_t size, const mg_image_params *p,
                                 char *err, size_t errlen);

#endif
