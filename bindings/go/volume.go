package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"
*/
import "C"

import (
	"context"
	"runtime"
	"unsafe"
)

// Volume is a 3D volume of float32 modality values (Hounsfield units for
// CT), x varying fastest, then y, then z, with an affine from voxel indices
// to LPS+ patient millimetres. Volumes are read-only and may be shared by
// goroutines. Close frees the voxels; a finalizer does it for a volume that
// is collected without Close.
type Volume struct {
	ptr  *C.mg_volume
	life life
}

// VolumeSource is where a volume came from (MG_VOLUME_SRC_*).
type VolumeSource int32

// Volume sources.
const (
	VolumeSourceVoxels VolumeSource = C.MG_VOLUME_SRC_VOXELS
	VolumeSourceDICOM  VolumeSource = C.MG_VOLUME_SRC_DICOM
	VolumeSourceNIfTI  VolumeSource = C.MG_VOLUME_SRC_NIFTI
)

type volumeOptions struct {
	flags                uint32
	seriesUID            *string
	maxVoxels, maxMemory *uint64
	maxFiles             *uint32
}

// VolumeOption configures volume loading.
type VolumeOption func(*volumeOptions)

// WithSeriesUID picks the DICOM series to assemble (default: the one with
// the most slices).
func WithSeriesUID(uid string) VolumeOption { return func(o *volumeOptions) { o.seriesUID = &uid } }

// WithRecursive makes DICOM loading look into subfolders too.
func WithRecursive() VolumeOption {
	return func(o *volumeOptions) { o.flags |= C.MG_VOLUME_RECURSIVE }
}

// WithKeepDuplicates keeps the first of DICOM slices sharing a position
// instead of failing.
func WithKeepDuplicates() VolumeOption {
	return func(o *volumeOptions) { o.flags |= C.MG_VOLUME_KEEP_DUPLICATES }
}

// WithStrictSpacing makes uneven DICOM slice spacing an error.
func WithStrictSpacing() VolumeOption {
	return func(o *volumeOptions) { o.flags |= C.MG_VOLUME_STRICT_SPACING }
}

// WithMaxVoxels limits nx*ny*nz (default 2^29).
func WithMaxVoxels(n uint64) VolumeOption { return func(o *volumeOptions) { o.maxVoxels = &n } }

// WithMaxFiles limits the files a DICOM load looks at (default 100000).
func WithMaxFiles(n uint32) VolumeOption { return func(o *volumeOptions) { o.maxFiles = &n } }

// WithMaxVolumeMemory limits the bytes of the voxels and of each file read
// (default 4 GiB).
func WithMaxVolumeMemory(n uint64) VolumeOption {
	return func(o *volumeOptions) { o.maxMemory = &n }
}

func volumeParams(opts []VolumeOption, cs *cstrs) C.mg_volume_params {
	var o volumeOptions
	for _, f := range opts {
		f(&o)
	}
	var p C.mg_volume_params
	C.mg_volume_params_init(&p)
	p.flags = C.uint32_t(o.flags)
	p.series_uid = cs.optStr(o.seriesUID)
	if o.maxVoxels != nil {
		p.max_voxels = C.uint64_t(*o.maxVoxels)
	}
	if o.maxMemory != nil {
		p.max_memory = C.uint64_t(*o.maxMemory)
	}
	if o.maxFiles != nil {
		p.max_files = C.uint32_t(*o.maxFiles)
	}
	return p
}

func wrapVolume(ptr *C.mg_volume) *Volume {
	v := &Volume{ptr: ptr}
	runtime.SetFinalizer(v, (*Volume).Close)
	return v
}

// LoadDICOMVolume assembles a series from DICOM files and/or folders.
func LoadDICOMVolume(paths []string, opts ...VolumeOption) (*Volume, error) {
	if len(paths) == 0 {
		return nil, argError("no paths given")
	}
	var cs cstrs
	defer cs.free()
	params := volumeParams(opts, &cs)
	arr := cs.array(paths)
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_volume
	n := C.size_t(len(paths))
	st := C.mg_volume_load_dicom(&ptr, arr, n, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapVolume(ptr), nil
}

// LoadNIfTIVolume reads a NIfTI-1 or NIfTI-2 file (.nii or .nii.gz).
func LoadNIfTIVolume(path string, opts ...VolumeOption) (*Volume, error) {
	var cs cstrs
	defer cs.free()
	params := volumeParams(opts, &cs)
	cpath := cs.str(path)
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_volume
	st := C.mg_volume_load_nifti(&ptr, cpath, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapVolume(ptr), nil
}

// VolumeFromVoxels copies nx*ny*nz voxels (x fastest). affine is the 4x4
// row-major voxel -> LPS+ mm matrix, or nil for the identity.
func VolumeFromVoxels(voxels []float32, nx, ny, nz int, affine *[16]float64, modality string,
	opts ...VolumeOption) (*Volume, error) {
	if nx <= 0 || ny <= 0 || nz <= 0 || nx > 1<<32-1 || ny > 1<<32-1 || nz > 1<<32-1 ||
		uint64(len(voxels)) != uint64(nx)*uint64(ny)*uint64(nz) {
		return nil, argError("%d voxels for a %dx%dx%d volume", len(voxels), nx, ny, nz)
	}
	var cs cstrs
	defer cs.free()
	params := volumeParams(opts, &cs)
	var caff *C.double
	var aff [16]C.double
	if affine != nil {
		for i, x := range affine {
			aff[i] = C.double(x)
		}
		caff = &aff[0]
	}
	var cmod *C.char
	if modality != "" {
		cmod = cs.str(modality)
	}
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_volume
	buf := (*C.float)(unsafe.Pointer(&voxels[0]))
	cx, cy, cz := C.uint32_t(nx), C.uint32_t(ny), C.uint32_t(nz)
	st := C.mg_volume_from_voxels(&ptr, buf, cx, cy, cz, caff, cmod, &params, eb.p, eb.n)
	runtime.KeepAlive(voxels)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapVolume(ptr), nil
}

// Close frees the volume. Closing twice is harmless.
func (v *Volume) Close() error {
	if v == nil || !v.life.close() {
		return nil
	}
	runtime.SetFinalizer(v, nil)
	C.mg_volume_free(v.ptr)
	v.ptr = nil
	return nil
}

// VolumeInfo describes a volume.
type VolumeInfo struct {
	NX, NY, NZ         int
	Source             VolumeSource
	Files, Skipped     int
	Warnings           int
	Spacing            [3]float64  // mm along x, y, z
	Affine             [16]float64 // row-major, (i, j, k, 1) -> LPS+ mm
	MinValue, MaxValue float64
}

// Info returns the volume's size, geometry and value range.
func (v *Volume) Info() (VolumeInfo, error) {
	if err := v.life.acquire(); err != nil {
		return VolumeInfo{}, err
	}
	defer v.life.release()
	var ci C.mg_volume_info
	ci.struct_size = C.uint32_t(C.sizeof_mg_volume_info)
	st := C.mg_volume_info_get(&ci, v.ptr)
	if st != C.MG_OK {
		return VolumeInfo{}, newError(st, "mg_volume_info_get failed")
	}
	info := VolumeInfo{
		NX: int(ci.nx), NY: int(ci.ny), NZ: int(ci.nz), Source: VolumeSource(ci.source),
		Files: int(ci.n_files), Skipped: int(ci.n_skipped), Warnings: int(ci.n_warnings),
		MinValue: float64(ci.min_value), MaxValue: float64(ci.max_value),
	}
	for i := 0; i < 3; i++ {
		info.Spacing[i] = float64(ci.spacing[i])
	}
	for i := 0; i < 16; i++ {
		info.Affine[i] = float64(ci.affine[i])
	}
	return info, nil
}

// Voxels copies the voxels (x fastest, then y, then z).
func (v *Volume) Voxels() ([]float32, error) {
	if err := v.life.acquire(); err != nil {
		return nil, err
	}
	defer v.life.release()
	var need C.size_t
	st := C.mg_volume_copy_voxels(nil, 0, &need, v.ptr)
	if st != C.MG_OK && st != C.MG_E_BUFFER_TOO_SMALL {
		return nil, newError(st, "mg_volume_copy_voxels failed")
	}
	out := make([]float32, int(need))
	buf := (*C.float)(unsafe.Pointer(&out[0]))
	st = C.mg_volume_copy_voxels(buf, need, &need, v.ptr)
	if st != C.MG_OK {
		return nil, newError(st, "mg_volume_copy_voxels failed")
	}
	return out, nil
}

// Attr returns a text attribute ("modality", "series_uid", "study_uid",
// "frame_of_reference_uid", "description", "warnings", "slices"); ok is
// false when the volume has none.
func (v *Volume) Attr(key string) (value string, ok bool) {
	if v.life.acquire() != nil {
		return "", false
	}
	defer v.life.release()
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	p := C.mg_volume_get_string(v.ptr, ckey)
	if p == nil {
		return "", false
	}
	return C.GoString(p), true
}

// WriteNIfTI writes NIfTI-1 (gzip-compressed when path ends in .gz) with
// qform and sform in RAS+, int16 when the values allow it (asFloat32
// forces float32).
func (v *Volume) WriteNIfTI(path string, asFloat32 bool) error {
	if err := v.life.acquire(); err != nil {
		return err
	}
	defer v.life.release()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var flags C.uint32_t
	if asFloat32 {
		flags = C.MG_NIFTI_FLOAT32
	}
	eb := newErrbuf()
	defer eb.free()
	st := C.mg_volume_write_nifti(v.ptr, cpath, flags, eb.p, eb.n)
	return eb.err(st)
}

// SliceWindow is how voxel values become the RGB pixels of the slices a
// model reads (MG_SLICE_WINDOW_*).
type SliceWindow int32

// Slice windows (docs/VOLUME.md, "Slices for the model").
const (
	// SliceWindowAuto is CT for modality CT, or no modality and values
	// down to -500 HU or lower; else MinMax.
	SliceWindowAuto SliceWindow = C.MG_SLICE_WINDOW_AUTO
	// SliceWindowCT puts the windows -1024..1024, -135..215 and 0..80 HU
	// into R, G and B, each scaled to 0..255 (MedGemma 1.5's CT recipe).
	SliceWindowCT SliceWindow = C.MG_SLICE_WINDOW_CT
	// SliceWindowMinMax maps the volume's value range to 0..255 grey.
	SliceWindowMinMax SliceWindow = C.MG_SLICE_WINDOW_MINMAX
)

// Slice counts: the default and the largest SliceOptions.MaxSlices.
const (
	DefaultMaxSlices = 85
	MaxSlices        = int(C.MG_MAX_SLICES)
)

// SliceOptions are the settings of the slices a model reads for a volume
// (mg_slice_params). The zero value, or a nil pointer, gives the defaults.
type SliceOptions struct {
	// MaxSlices: all slices when the volume has no more, else this many
	// evenly spaced ones (0: DefaultMaxSlices; at most MaxSlices).
	MaxSlices int
	// Window: SliceWindowAuto (the zero value), SliceWindowCT or
	// SliceWindowMinMax.
	Window SliceWindow
	// AsStored keeps the voxel order (rows along y, columns along x)
	// instead of the radiological view.
	AsStored bool
}

func sliceParams(o *SliceOptions) (C.mg_slice_params, error) {
	var p C.mg_slice_params
	C.mg_slice_params_init(&p)
	if o == nil {
		return p, nil
	}
	if o.MaxSlices < 0 || int64(o.MaxSlices) > 1<<32-1 {
		return p, argError("max slices %d out of range (0..%d)", o.MaxSlices, MaxSlices)
	}
	if o.MaxSlices != 0 {
		p.max_slices = C.uint32_t(o.MaxSlices)
	}
	p.window = C.int32_t(o.Window)
	if o.AsStored {
		p.flags |= C.MG_SLICES_AS_STORED
	}
	return p, nil
}

// slices runs mg_volume_slices; with wantImages false only the z indices.
func (v *Volume) slices(o *SliceOptions, wantImages bool) ([]*Image, []int, error) {
	params, err := sliceParams(o)
	if err != nil {
		return nil, nil, err
	}
	if err := v.life.acquire(); err != nil {
		return nil, nil, err
	}
	defer v.life.release()
	eb := newErrbuf()
	defer eb.free()
	var n C.size_t
	st := C.mg_volume_slices(nil, 0, &n, nil, v.ptr, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, nil, eb.err(st)
	}
	count := int(n)
	if count == 0 {
		return nil, nil, nil
	}
	z := (*C.uint32_t)(C.calloc(n, C.sizeof_uint32_t))
	defer C.free(unsafe.Pointer(z))
	var out **C.mg_image
	if wantImages {
		out = (**C.mg_image)(C.calloc(n, C.size_t(unsafe.Sizeof((*C.mg_image)(nil)))))
		defer C.free(unsafe.Pointer(out))
	}
	st = C.mg_volume_slices(out, n, &n, z, v.ptr, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, nil, eb.err(st)
	}
	idx := make([]int, count)
	for i, x := range unsafe.Slice(z, count) {
		idx[i] = int(x)
	}
	var imgs []*Image
	if wantImages {
		for _, p := range unsafe.Slice(out, count) {
			imgs = append(imgs, wrapImage(p))
		}
	}
	return imgs, idx, nil
}

// Slices returns the slices a model reads for this volume (what
// ReportVolume and VQAVolume encode), as new RGB8 images in prompt order,
// and the volume's z index of each: cut across z, turned to the
// radiological view unless opts.AsStored, all of them when there are at
// most opts.MaxSlices, else slice round(i/max*(nz-1)) for i = 1..max (round
// half to even). Close the images when done. opts may be nil.
func (v *Volume) Slices(opts *SliceOptions) ([]*Image, []int, error) {
	return v.slices(opts, true)
}

// SliceIndices returns the z indices of Slices(opts) without making the
// images.
func (v *Volume) SliceIndices(opts *SliceOptions) ([]int, error) {
	_, idx, err := v.slices(opts, false)
	return idx, err
}

// volumeCall holds a use of the volume and its C slice parameters (in C
// memory, like the generation parameters) for the duration of a call.
type volumeCall struct {
	v      *Volume
	params *C.mg_slice_params
}

func acquireVolume(v *Volume, opts *SliceOptions) (*volumeCall, error) {
	if v == nil {
		return nil, argError("volume is nil")
	}
	p, err := sliceParams(opts)
	if err != nil {
		return nil, err
	}
	if err := v.life.acquire(); err != nil {
		return nil, err
	}
	cp := (*C.mg_slice_params)(C.malloc(C.sizeof_mg_slice_params))
	*cp = p
	return &volumeCall{v: v, params: cp}, nil
}

func (a *volumeCall) release() {
	C.free(unsafe.Pointer(a.params))
	a.v.life.release()
	runtime.KeepAlive(a.v)
}

// ReportVolume writes a report for a CT or MR volume the way MedGemma 1.5
// reads one: the slices of v.Slices(slices) (nil: the defaults, at most 85),
// each through the image encoder into its own block of image tokens,
// labelled "SLICE 1", "SLICE 2", ... in one user turn; WithInstruction
// replaces the model's volume report instruction. The context must hold
// slices x the model's tokens per image (else an error matching
// ErrContextFull, before any encoding). Cancellation and streaming work as
// in Report.
func (m *Model) ReportVolume(ctx context.Context, v *Volume, slices *SliceOptions, opts ...GenOption) (string, error) {
	a, err := acquireVolume(v, slices)
	if err != nil {
		return "", err
	}
	defer a.release()
	vp, sp := a.v.ptr, a.params
	return m.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_generate_report_volume(out, c, vp, sp, p)
	})
}

// VQAVolume answers a question about a CT or MR volume (slices as in
// ReportVolume).
func (m *Model) VQAVolume(ctx context.Context, v *Volume, question string, slices *SliceOptions, opts ...GenOption) (string, error) {
	a, err := acquireVolume(v, slices)
	if err != nil {
		return "", err
	}
	defer a.release()
	vp, sp := a.v.ptr, a.params
	cq := C.CString(question)
	defer C.free(unsafe.Pointer(cq))
	return m.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_vqa_volume(out, c, vp, cq, sp, p)
	})
}

// ReportVolume is Model.ReportVolume on the session (its sequence is reset
// first; Tokens then returns the prompt as read).
func (s *Session) ReportVolume(ctx context.Context, v *Volume, slices *SliceOptions, opts ...GenOption) (string, error) {
	a, err := acquireVolume(v, slices)
	if err != nil {
		return "", err
	}
	defer a.release()
	vp, sp := a.v.ptr, a.params
	return s.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_generate_report_volume(out, c, vp, sp, p)
	})
}

// VQAVolume is Model.VQAVolume on the session.
func (s *Session) VQAVolume(ctx context.Context, v *Volume, question string, slices *SliceOptions, opts ...GenOption) (string, error) {
	a, err := acquireVolume(v, slices)
	if err != nil {
		return "", err
	}
	defer a.release()
	vp, sp := a.v.ptr, a.params
	cq := C.CString(question)
	defer C.free(unsafe.Pointer(cq))
	return s.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_vqa_volume(out, c, vp, cq, sp, p)
	})
}
