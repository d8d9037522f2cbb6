/* preprocess.h - image preprocessing as Hugging Face's Gemma3ImageProcessor
 * (slow, PIL-based path) does it: convert to RGB, resize with PIL's
 * BILINEAR filter (Image.resize(..., reducing_gap=None)), rescale, normalize.
 *
 * The resize reproduces Pillow's Resample.c bit for bit on 8-bit data:
 * per-axis triangle filter whose support grows with the downscale factor
 * (antialiasing), coefficients normalized in double and rounded to 22-bit
 * fixed point, accumulation from 2^21 (rounding), >> 22 and clip to
 * [0, 255]; the horizontal pass runs first and is rounded to 8 bits before
 * the vertical pass. Channels are independent, so a gray image is resized
 * once and replicated (what convert("RGB") followed by resize gives).
 * Rows of the horizontal pass are kept in a ring of as many rows as the
 * vertical filter spans, so memory is bounded by the output width and the
 * largest downscale factor, not by the input size.
 *
 * 16-bit samples are first reduced to 8 bits: with b = bits_stored (16 when
 * it is 0 or above 16) and max = 2^b - 1, v8 = (min(v, max) * 255 + max / 2)
 * / max in integers (rounding half up): the full stored range maps onto
 * 0..255 (PIL itself would clip I;16 at 255, which is useless for 12- or
 * 16-bit radiographs). */
#ifndef MG_PREPROCESS_H
#define MG_PREPROCESS_H

#include "core/core.h"

/* Bytes of scratch mg__resize_rgb8 needs for an in_w x in_h input and an
 * out_w x out_h output; 0 on overflow or a zero size. */
uint64_t mg__resize_scratch_bytes(uint32_t in_w, uint32_t in_h, uint32_t out_w,
                                  uint32_t out_h);

/* Resizes img (any MG_PIXEL_* format) to out_w x out_h interleaved RGB8
 * (out has out_w * out_h * 3 bytes). scratch must be 16-byte aligned and
 * hold mg__resize_scratch_bytes() bytes. Errors: MG_E_INVALID_ARG (bad
 * image or sizes), MG_E_LIMIT (scratch too small for this input). */
mg_status mg__resize_rgb8(uint8_t *out, uint32_t out_w, uint32_t out_h,
                          const mg_image *img, void *scratch,
                          size_t scratch_bytes, char *err, size_t errlen);

/* The per-channel lookup table from an 8-bit sample to the model input, as
 * numpy computes it in the processor: r = float32(v * rescale) (the product
 * in double), then (r - float32(mean)) / float32(std) in float32. */
void mg__normalize_lut(float lut[3][256], double rescale, const double mean[3],
                       const double stdv[3]);

#endif
