package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"
*/
import "C"

import (
	"image"
	"runtime"
	"unsafe"
)

// Image is a decoded image (JPEG, PNG, DICOM, or caller pixels). Images are
// read-only and may be shared by goroutines and used in several calls at
// once. Close frees the pixels (it waits for calls using the image); a
// finalizer does it for an image that is collected without Close.
type Image struct {
	ptr  *C.mg_image
	life life
}

// PixelFormat is a pixel layout (MG_PIXEL_*).
type PixelFormat int32

// Pixel layouts. 16-bit samples are native-endian.
const (
	Gray8  PixelFormat = C.MG_PIXEL_GRAY8
	Gray16 PixelFormat = C.MG_PIXEL_GRAY16
	RGB8   PixelFormat = C.MG_PIXEL_RGB8
	RGB16  PixelFormat = C.MG_PIXEL_RGB16
)

// Window is how DICOM grey values become display pixels (MG_WINDOW_*).
type Window int32

// DICOM windowing modes.
const (
	WindowFile     Window = C.MG_WINDOW_FILE
	WindowAuto     Window = C.MG_WINDOW_AUTO
	WindowExplicit Window = C.MG_WINDOW_EXPLICIT
	WindowNone     Window = C.MG_WINDOW_NONE
)

// ImageSource is where an image came from (MG_IMAGE_SRC_*).
type ImageSource int32

// Image sources.
const (
	SourcePixels ImageSource = C.MG_IMAGE_SRC_PIXELS
	SourceJPEG   ImageSource = C.MG_IMAGE_SRC_JPEG
	SourcePNG    ImageSource = C.MG_IMAGE_SRC_PNG
	SourceDICOM  ImageSource = C.MG_IMAGE_SRC_DICOM
)

type imageOptions struct {
	maxPixels, maxMemory *uint64
	maxWidth, maxHeight  *uint32
	frame                uint32
	window               Window
	center, width        float64
}

// ImageOption configures image decoding.
type ImageOption func(*imageOptions)

// WithMaxPixels limits width*height (default 2^27).
func WithMaxPixels(n uint64) ImageOption { return func(o *imageOptions) { o.maxPixels = &n } }

// WithMaxImageMemory limits the decoded bytes (default 1 GiB).
func WithMaxImageMemory(n uint64) ImageOption { return func(o *imageOptions) { o.maxMemory = &n } }

// WithMaxSize limits the width and height (default 65535 each).
func WithMaxSize(w, h uint32) ImageOption {
	return func(o *imageOptions) { o.maxWidth, o.maxHeight = &w, &h }
}

// WithFrame picks the frame of a multi-frame DICOM (0-based).
func WithFrame(i int) ImageOption { return func(o *imageOptions) { o.frame = uint32(i) } }

// WithWindow picks the DICOM windowing mode.
func WithWindow(w Window) ImageOption { return func(o *imageOptions) { o.window = w } }

// WithExplicitWindow applies the window center/width (modality units).
func WithExplicitWindow(center, width float64) ImageOption {
	return func(o *imageOptions) { o.window, o.center, o.width = WindowExplicit, center, width }
}

func imageParams(opts []ImageOption) C.mg_image_params {
	o := imageOptions{window: WindowFile}
	for _, f := range opts {
		f(&o)
	}
	var p C.mg_image_params
	C.mg_image_params_init(&p)
	if o.maxPixels != nil {
		p.max_pixels = C.uint64_t(*o.maxPixels)
	}
	if o.maxMemory != nil {
		p.max_memory = C.uint64_t(*o.maxMemory)
	}
	if o.maxWidth != nil {
		p.max_width = C.uint32_t(*o.maxWidth)
		p.max_height = C.uint32_t(*o.maxHeight)
	}
	p.frame = C.uint32_t(o.frame)
	p.window = C.int32_t(o.window)
	p.window_center = C.double(o.center)
	p.window_width = C.double(o.width)
	return p
}

func wrapImage(ptr *C.mg_image) *Image {
	img := &Image{ptr: ptr}
	runtime.SetFinalizer(img, (*Image).Close)
	return img
}

// LoadImage decodes a JPEG, PNG or DICOM file (recognised by content).
func LoadImage(path string, opts ...ImageOption) (*Image, error) {
	params := imageParams(opts)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_image
	st := C.mg_image_load_file(&ptr, cpath, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapImage(ptr), nil
}

// ImageFromBytes decodes an encoded JPEG, PNG or DICOM image held in memory.
func ImageFromBytes(data []byte, opts ...ImageOption) (*Image, error) {
	params := imageParams(opts)
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_image
	var buf unsafe.Pointer
	if len(data) > 0 {
		buf = unsafe.Pointer(&data[0])
	}
	size := C.size_t(len(data))
	st := C.mg_image_load_memory(&ptr, buf, size, &params, eb.p, eb.n)
	runtime.KeepAlive(data)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapImage(ptr), nil
}

// ImageFromPixels copies a pixel buffer: rows of width pixels in format,
// stride bytes apart (0: tightly packed). 16-bit formats hold native-endian
// samples.
func ImageFromPixels(pix []byte, width, height, stride int, format PixelFormat, opts ...ImageOption) (*Image, error) {
	if width <= 0 || height <= 0 || width > 1<<32-1 || height > 1<<32-1 || stride < 0 {
		return nil, argError("bad image geometry %dx%d stride %d", width, height, stride)
	}
	bpp := map[PixelFormat]int{Gray8: 1, Gray16: 2, RGB8: 3, RGB16: 6}[format]
	if bpp == 0 {
		return nil, argError("unknown pixel format %d", format)
	}
	row := width * bpp
	if stride == 0 {
		stride = row
	}
	if stride < row || height-1 > len(pix)/stride || (height-1)*stride+row > len(pix) {
		return nil, argError("pixel buffer of %d bytes is too small for %dx%d (stride %d)", len(pix), width, height, stride)
	}
	params := imageParams(opts)
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_image
	buf := unsafe.Pointer(&pix[0])
	cw, ch, cs, cf := C.uint32_t(width), C.uint32_t(height), C.size_t(stride), C.int32_t(format)
	st := C.mg_image_from_pixels(&ptr, buf, cw, ch, cs, cf, &params, eb.p, eb.n)
	runtime.KeepAlive(pix)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapImage(ptr), nil
}

// ImageFromGo converts a Go image: grey images become Gray8 (Gray16 for
// image.Gray16), everything else RGB8 (alpha is dropped).
func ImageFromGo(src image.Image, opts ...ImageOption) (*Image, error) {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil, argError("empty image")
	}
	switch g := src.(type) {
	case *image.Gray:
		return ImageFromPixels(g.Pix[g.PixOffset(b.Min.X, b.Min.Y):], w, h, g.Stride, Gray8, opts...)
	case *image.Gray16:
		pix := make([]byte, 2*w*h)
		out := unsafe.Slice((*uint16)(unsafe.Pointer(&pix[0])), w*h)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out[y*w+x] = g.Gray16At(b.Min.X+x, b.Min.Y+y).Y
			}
		}
		return ImageFromPixels(pix, w, h, 0, Gray16, opts...)
	}
	pix := make([]byte, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bb, _ := src.At(b.Min.X+x, b.Min.Y+y).RGBA()
			i := 3 * (y*w + x)
			pix[i], pix[i+1], pix[i+2] = byte(r>>8), byte(g>>8), byte(bb>>8)
		}
	}
	return ImageFromPixels(pix, w, h, 0, RGB8, opts...)
}

// Close frees the image. Closing twice is harmless.
func (img *Image) Close() error {
	if img == nil || !img.life.close() {
		return nil
	}
	runtime.SetFinalizer(img, nil)
	C.mg_image_free(img.ptr)
	img.ptr = nil
	return nil
}

// ImageInfo describes a decoded image.
type ImageInfo struct {
	Width, Height    int
	Format           PixelFormat
	Source           ImageSource
	BitsStored       uint32
	Frames           uint32
	Frame            uint32
	BitsAllocated    uint32
	Signed           bool
	Window           Window
	RawOffset        int32
	RescaleSlope     float64
	RescaleIntercept float64
	WindowCenter     float64
	WindowWidth      float64
}

// Info returns the image's geometry and source attributes.
func (img *Image) Info() (ImageInfo, error) {
	if err := img.life.acquire(); err != nil {
		return ImageInfo{}, err
	}
	defer img.life.release()
	var ci C.mg_image_info
	ci.struct_size = C.uint32_t(C.sizeof_mg_image_info)
	st := C.mg_image_info_get(&ci, img.ptr)
	if st != C.MG_OK {
		return ImageInfo{}, newError(st, "mg_image_info_get failed")
	}
	return ImageInfo{
		Width: int(ci.width), Height: int(ci.height), Format: PixelFormat(ci.format),
		Source: ImageSource(ci.source), BitsStored: uint32(ci.bits_stored),
		Frames: uint32(ci.n_frames), Frame: uint32(ci.frame), BitsAllocated: uint32(ci.bits_allocated),
		Signed: ci.pixel_signed != 0, Window: Window(ci.window), RawOffset: int32(ci.raw_offset),
		RescaleSlope: float64(ci.rescale_slope), RescaleIntercept: float64(ci.rescale_intercept),
		WindowCenter: float64(ci.window_center), WindowWidth: float64(ci.window_width),
	}, nil
}

// Pixels copies the pixels, tightly packed in the image's own format.
func (img *Image) Pixels() ([]byte, error) {
	if err := img.life.acquire(); err != nil {
		return nil, err
	}
	defer img.life.release()
	var need C.size_t
	st := C.mg_image_copy_pixels(nil, 0, &need, img.ptr)
	if st != C.MG_OK && st != C.MG_E_BUFFER_TOO_SMALL {
		return nil, newError(st, "mg_image_copy_pixels failed")
	}
	out := make([]byte, int(need))
	if len(out) == 0 {
		return out, nil
	}
	buf := unsafe.Pointer(&out[0])
	st = C.mg_image_copy_pixels(buf, need, &need, img.ptr)
	if st != C.MG_OK {
		return nil, newError(st, "mg_image_copy_pixels failed")
	}
	return out, nil
}

// Attr returns a text attribute of the source ("photometric",
// "transfer_syntax", "transfer_syntax_uid", "modality", "sop_class_uid",
// "series_uid"); ok is false when the source has none.
func (img *Image) Attr(key string) (value string, ok bool) {
	if img.life.acquire() != nil {
		return "", false
	}
	defer img.life.release()
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	p := C.mg_image_get_string(img.ptr, ckey)
	if p == nil {
		return "", false
	}
	return C.GoString(p), true
}
