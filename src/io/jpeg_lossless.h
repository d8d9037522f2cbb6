/* jpeg_lossless.h - lossless JPEG (ITU-T T.81 process 14: Huffman coding,
 * non-hierarchical, predictors 1..7, point transform, restart intervals),
 * the coding of DICOM transfer syntaxes 1.2.840.10008.1.2.4.57 and .70.
 * libjpeg-turbo 2.1 has no lossless decoder; this one is ours. */
#ifndef MG_JPEG_LOSSLESS_H
#define MG_JPEG_LOSSLESS_H

#include "core/core.h"

/* Decodes the lossless JPEG image in data[0..n) into out: w*h*comps
 * samples, interleaved (pixel by pixel), each the reconstructed P-bit value
 * (point transform undone). The frame header must say exactly w x h with
 * `comps` components, each sampled 1x1. *precision receives the frame's P
 * (2..16) once the frame header has been read, 0 before.
 *
 * Every length, table and code is checked; data is never read outside
 * data[0..n). Errors: MG_E_IMAGE_FORMAT (malformed or truncated stream,
 * size mismatch), MG_E_UNSUPPORTED (a DCT, arithmetic-coded, hierarchical
 * or JPEG-LS stream; subsampled components; an image height left to a DNL
 * marker). */
mg_status mg__jpegll_decode(uint16_t *out, uint32_t w, uint32_t h,
                            uint32_t comps, const unsigned char *data,
                            size_t n, int *precision, char *err,
                            size_t errlen);

#endif
