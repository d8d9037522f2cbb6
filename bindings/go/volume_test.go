package medgemini

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVolumeFromVoxelsAndNIfTI(t *testing.T) {
	nx, ny, nz := 4, 3, 2
	vox := make([]float32, nx*ny*nz)
	for i := range vox {
		vox[i] = float32(i*7 - 50)
	}
	aff := [16]float64{0.8, 0, 0, -10, 0, 0.9, 0, 20, 0, 0, 2.5, 30, 0, 0, 0, 1}
	v, err := VolumeFromVoxels(vox, nx, ny, nz, &aff, "CT")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	info, err := v.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.NX != nx || info.NY != ny || info.NZ != nz || info.Source != VolumeSourceVoxels ||
		info.Affine != aff || math.Abs(info.Spacing[2]-2.5) > 1e-12 ||
		info.MinValue != -50 || info.MaxValue != float64(vox[len(vox)-1]) {
		t.Fatalf("info %+v", info)
	}
	if m, ok := v.Attr("modality"); !ok || m != "CT" {
		t.Fatalf("modality %q %v", m, ok)
	}
	path := filepath.Join(t.TempDir(), "v.nii.gz")
	if err := v.WriteNIfTI(path, false); err != nil {
		t.Fatal(err)
	}
	back, err := LoadNIfTIVolume(path)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	got, err := back.Voxels()
	if err != nil {
		t.Fatal(err)
	}
	for i := range vox {
		if got[i] != vox[i] {
			t.Fatalf("voxel %d: %g, want %g", i, got[i], vox[i])
		}
	}
	binfo, _ := back.Info()
	for i := range aff {
		if math.Abs(binfo.Affine[i]-aff[i]) > 1e-5 {
			t.Fatalf("affine %v, want %v", binfo.Affine, aff)
		}
	}
	if _, err := VolumeFromVoxels(vox[:5], nx, ny, nz, nil, ""); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("short voxels: %v", err)
	}
	if _, err := VolumeFromVoxels(vox, nx, ny, nz, nil, "", WithMaxVoxels(10)); !errors.Is(err, ErrLimit) {
		t.Fatalf("limit: %v", err)
	}
	v.Close()
	if _, err := v.Info(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed volume: %v", err)
	}
}

func TestVolumeDICOMSeries(t *testing.T) {
	dir := os.Getenv("MG_SHARED_DATA")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "..", "shared", "data")
	}
	series := filepath.Join(dir, "dicom", "ct_series_3slice")
	if _, err := os.Stat(series); err != nil {
		t.Skip("shared CT series absent")
	}
	v, err := LoadDICOMVolume([]string{series})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	info, _ := v.Info()
	if info.NX != 512 || info.NY != 512 || info.NZ != 3 || info.Source != VolumeSourceDICOM ||
		info.Files != 3 || info.Skipped != 1 || info.MinValue != -3024 || info.MaxValue != 1381 {
		t.Fatalf("info %+v", info)
	}
	if math.Abs(info.Affine[11]+128.69) > 1e-4 { // the lowest slice first
		t.Fatalf("origin z %g", info.Affine[11])
	}
	slices, _ := v.Attr("slices")
	if lines := strings.Split(strings.TrimSpace(slices), "\n"); len(lines) != 3 ||
		!strings.Contains(lines[0], "03.dcm") {
		t.Fatalf("slices %q", slices)
	}
	uid, _ := v.Attr("series_uid")
	files := []string{filepath.Join(series, "02.dcm"), filepath.Join(series, "03.dcm"),
		filepath.Join(series, "01.dcm")}
	w, err := LoadDICOMVolume(files, WithSeriesUID(uid))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, _ := v.Voxels()
	b, _ := w.Voxels()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("voxel %d differs", i)
		}
	}
	if _, err := LoadDICOMVolume([]string{series}, WithSeriesUID("1.2.3")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown series: %v", err)
	}
	if _, err := LoadDICOMVolume([]string{filepath.Join(t.TempDir(), "none")}); !errors.Is(err, ErrIO) {
		t.Fatalf("missing folder: %v", err)
	}
}

// rampCT is a 10-slice CT ramp in HU: voxel (x, y, z) of a 4x3 grid =
// -1000 + 20*(12z + 4y + x).
func rampCT(t *testing.T, affine *[16]float64) ([]float32, *Volume) {
	t.Helper()
	vox := make([]float32, 4*3*10)
	for i := range vox {
		vox[i] = float32(-1000 + 20*i)
	}
	v, err := VolumeFromVoxels(vox, 4, 3, 10, affine, "CT")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return vox, v
}

// ctRGB is MedGemma's CT windows by hand: R -1024..1024, G -135..215, B 0..80.
func ctRGB(v float64) [3]byte {
	level := func(lo, hi float64) byte {
		return byte(math.RoundToEven((math.Min(math.Max(v, lo), hi) - lo) / (hi - lo) * 255))
	}
	return [3]byte{level(-1024, 1024), level(-135, 215), level(0, 80)}
}

func closeAll(imgs []*Image) {
	for _, img := range imgs {
		img.Close()
	}
}

func TestVolumeSlices(t *testing.T) {
	vox, v := rampCT(t, nil)
	// the rule, by hand: round(i/max*(n-1)) for i = 1..max, half to even
	// (4.5 -> 4)
	var want []int
	for i := 1; i <= 4; i++ {
		want = append(want, int(math.RoundToEven(float64(i)/4*9)))
	}
	if fmt.Sprint(want) != "[2 4 7 9]" {
		t.Fatalf("hand rule %v", want)
	}
	imgs, idx, err := v.Slices(&SliceOptions{MaxSlices: 4, Window: SliceWindowCT})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(imgs)
	if len(imgs) != 4 || fmt.Sprint(idx) != fmt.Sprint(want) {
		t.Fatalf("%d slices, z %v, want %v", len(imgs), idx, want)
	}
	if only, err := v.SliceIndices(&SliceOptions{MaxSlices: 3}); err != nil || fmt.Sprint(only) != "[3 6 9]" {
		t.Fatalf("3 slices: %v %v", only, err)
	}
	if all, err := v.SliceIndices(nil); err != nil || fmt.Sprint(all) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Fatalf("default: %v %v", all, err)
	}
	// slice 2 of 4 is z = 4; voxel (1, 1, 4) = -1000 + 20*53 = 60 HU
	if vox[4*12+1*4+1] != 60 || ctRGB(60) != [3]byte{135, 142, 191} {
		t.Fatalf("hand values: %g %v", vox[53], ctRGB(60))
	}
	for k, img := range imgs {
		info, _ := img.Info()
		if info.Width != 4 || info.Height != 3 || info.Format != RGB8 {
			t.Fatalf("slice %d: %+v", k, info)
		}
		pix, err := img.Pixels()
		if err != nil {
			t.Fatal(err)
		}
		for y := 0; y < 3; y++ {
			for x := 0; x < 4; x++ {
				p := pix[3*(y*4+x):]
				got := [3]byte{p[0], p[1], p[2]}
				if exp := ctRGB(float64(vox[idx[k]*12+y*4+x])); got != exp {
					t.Fatalf("slice %d (z %d) pixel (%d, %d): %v, want %v", k, idx[k], x, y, got, exp)
				}
			}
		}
	}
	pix, _ := imgs[1].Pixels()
	if p := pix[3*(1*4+1):]; p[0] != 135 || p[1] != 142 || p[2] != 191 {
		t.Fatalf("pixel (1, 1) of z 4: %v", p[:3])
	}
	// x towards the patient's right: the radiological view flips the columns
	flip := [16]float64{-1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}
	_, fv := rampCT(t, &flip)
	shown, _, err := fv.Slices(&SliceOptions{MaxSlices: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(shown)
	stored, _, err := fv.Slices(&SliceOptions{MaxSlices: 4, AsStored: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(stored)
	a, _ := shown[1].Pixels()
	b, _ := stored[1].Pixels()
	for y := 0; y < 3; y++ {
		for x := 0; x < 4; x++ {
			if a[3*(y*4+x)] != b[3*(y*4+3-x)] {
				t.Fatalf("pixel (%d, %d) not mirrored", x, y)
			}
		}
	}
	// errors: a bad window, too many slices, a closed volume
	_, _, err = v.Slices(&SliceOptions{Window: SliceWindow(7)})
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusInvalidArg || !strings.Contains(e.Message, "unknown window 7") {
		t.Fatalf("bad window: %v", err)
	}
	if _, err := v.SliceIndices(&SliceOptions{MaxSlices: MaxSlices + 1}); !errors.Is(err, ErrLimit) ||
		!strings.Contains(err.Error(), "1025") {
		t.Fatalf("too many slices: %v", err)
	}
	if _, err := v.SliceIndices(&SliceOptions{MaxSlices: -1}); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("negative max: %v", err)
	}
	v.Close()
	if _, _, err := v.Slices(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed volume: %v", err)
	}
}

func TestVolumeReportAndVQA(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	_, v := rampCT(t, nil)
	tok, err := m.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	imageID := tok.Special(TokenImage)
	perImage, err := m.MetaInt("vision.tokens_per_image")
	if err != nil || imageID < 0 || perImage <= 0 {
		t.Fatalf("image token %d, %d per image: %v", imageID, perImage, err)
	}
	count := func(ids []int32) int {
		n := 0
		for _, id := range ids {
			if id == imageID {
				n++
			}
		}
		return n
	}
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bg := context.Background()
	q := "Is there a mass?"
	// no tokens: the prompt is read, nothing generated
	if txt, err := s.VQAVolume(bg, v, q, &SliceOptions{MaxSlices: 4}, WithMaxTokens(0)); err != nil || txt != "" {
		t.Fatalf("vqa: %q %v", txt, err)
	}
	ids, err := s.Tokens()
	if err != nil || len(ids) != s.Len() {
		t.Fatalf("tokens: %d (Len %d) %v", len(ids), s.Len(), err)
	}
	if n := count(ids); n != 4*int(perImage) {
		t.Fatalf("%d image tokens, want 4 x %d", n, perImage)
	}
	text, err := m.Detokenize(ids, false)
	if err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 4; k++ {
		if !strings.Contains(text, fmt.Sprintf("SLICE %d", k)) {
			t.Fatalf("no SLICE %d in %q", k, text)
		}
	}
	if strings.Contains(text, "SLICE 5") || !strings.Contains(text, q) {
		t.Fatalf("prompt %q", text)
	}
	// a few tokens, pooled and on the session, streamed or not, agree
	answer, err := m.VQAVolume(bg, v, q, &SliceOptions{MaxSlices: 4}, WithMaxTokens(3))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	got, err := s.VQAVolume(bg, v, q, &SliceOptions{MaxSlices: 4}, WithMaxTokens(3),
		WithOnToken(func(p string, _ int32) error { b.WriteString(p); return nil }))
	if err != nil || got != answer || b.String() != answer {
		t.Fatalf("session %q (streamed %q), pooled %q: %v", got, b.String(), answer, err)
	}
	more, _ := s.Tokens()
	if len(more) < len(ids) || fmt.Sprint(more[:len(ids)]) != fmt.Sprint(ids) {
		t.Fatalf("the prompt changed")
	}
	// report: all 10 slices (at most 85)
	rep, err := s.ReportVolume(bg, v, nil, WithMaxTokens(2))
	if err != nil {
		t.Fatal(err)
	}
	if rep2, err := m.ReportVolume(bg, v, nil, WithMaxTokens(2)); err != nil || rep2 != rep {
		t.Fatalf("pooled report %q, session %q: %v", rep2, rep, err)
	}
	ids, _ = s.Tokens()
	if n := count(ids); n != 10*int(perImage) {
		t.Fatalf("%d image tokens, want 10 x %d", n, perImage)
	}
	if text, _ := m.Detokenize(ids, false); !strings.Contains(text, "SLICE 10") {
		t.Fatalf("report prompt %q", text)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.Tokens(); err != nil || len(ids) != 0 {
		t.Fatalf("after reset: %v %v", ids, err)
	}
}

func TestVolumeGenerationErrors(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	_, v := rampCT(t, nil)
	bg := context.Background()
	small, err := m.NewSession(SessionContextSize(64))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	// 10 slices x 16 image tokens do not fit 64 positions
	_, err = small.ReportVolume(bg, v, nil, WithMaxTokens(2))
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusContextFull || !strings.Contains(e.Message, "context") {
		t.Fatalf("small context: %v", err)
	}
	if _, err := small.VQAVolume(bg, v, "Normal?", nil); !errors.Is(err, ErrContextFull) {
		t.Fatalf("small context vqa: %v", err)
	}
	if err := small.LastError(); !errors.Is(err, ErrContextFull) {
		t.Fatalf("LastError: %v", err)
	}
	_, err = m.VQAVolume(bg, v, "Normal?", &SliceOptions{Window: 9})
	if !errors.As(err, &e) || e.Status != StatusInvalidArg || !strings.Contains(e.Message, "unknown window 9") {
		t.Fatalf("bad window: %v", err)
	}
	if _, err := m.ReportVolume(bg, v, &SliceOptions{MaxSlices: 5000}); !errors.Is(err, ErrLimit) {
		t.Fatalf("too many slices: %v", err)
	}
	if _, err := m.ReportVolume(bg, nil, nil); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("nil volume: %v", err)
	}
	v.Close()
	if _, err := m.ReportVolume(bg, v, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed volume: %v", err)
	}
}
