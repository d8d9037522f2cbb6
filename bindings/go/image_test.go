package medgemini

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// The real chest X-ray, decoded by the library, against Go's own PNG decoder.
func TestImageCXRMatchesGoDecoder(t *testing.T) {
	raw, err := os.ReadFile(cxrPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	gray, ok := ref.(*image.Gray)
	if !ok {
		t.Fatalf("reference decode is %T", ref)
	}
	fromFile, err := LoadImage(cxrPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fromFile.Close()
	fromMem, err := ImageFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer fromMem.Close()
	for _, img := range []*Image{fromFile, fromMem} {
		info, err := img.Info()
		if err != nil {
			t.Fatal(err)
		}
		b := gray.Bounds()
		if info.Width != b.Dx() || info.Height != b.Dy() || info.Format != Gray8 ||
			info.Source != SourcePNG || info.BitsStored != 8 || info.Frames != 1 {
			t.Fatalf("info %+v", info)
		}
		pix, err := img.Pixels()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pix, gray.Pix) {
			t.Fatal("pixels differ from Go's image/png")
		}
		if v, ok := img.Attr("photometric"); !ok || v != "MONOCHROME2" {
			t.Fatalf("photometric = %q %v", v, ok)
		}
		if _, ok := img.Attr("series_uid"); ok {
			t.Fatal("a PNG has no series UID")
		}
	}
}

func TestImageFromPixels(t *testing.T) {
	// 3x2 RGB with a 2-byte row gap, copied and read back packed
	w, h, stride := 3, 2, 11
	pix := make([]byte, stride*h)
	for y := 0; y < h; y++ {
		for x := 0; x < 3*w; x++ {
			pix[y*stride+x] = byte(10*y + x)
		}
	}
	img, err := ImageFromPixels(pix, w, h, stride, RGB8)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got, _ := img.Pixels()
	for y := 0; y < h; y++ {
		if !bytes.Equal(got[y*3*w:(y+1)*3*w], pix[y*stride:y*stride+3*w]) {
			t.Fatalf("row %d differs", y)
		}
	}
	info, _ := img.Info()
	if info.Source != SourcePixels || info.Format != RGB8 || info.Width != 3 || info.Height != 2 {
		t.Fatalf("info %+v", info)
	}
	if _, err := ImageFromPixels(pix[:10], w, h, stride, RGB8); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("short buffer: %v", err)
	}
	if _, err := ImageFromPixels(pix, w, h, 0, PixelFormat(77)); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("bad format: %v", err)
	}
	if _, err := ImageFromPixels(pix, w, h, 0, Gray8, WithMaxPixels(4)); !errors.Is(err, ErrLimit) {
		t.Fatalf("limit: %v", err)
	}

	// a Go image
	g16 := image.NewGray16(image.Rect(0, 0, 2, 2))
	g16.SetGray16(1, 1, color.Gray16{Y: 40000})
	img16, err := ImageFromGo(g16)
	if err != nil {
		t.Fatal(err)
	}
	defer img16.Close()
	info, _ = img16.Info()
	p16, _ := img16.Pixels()
	if info.Format != Gray16 || len(p16) != 8 {
		t.Fatalf("gray16: %+v %d", info, len(p16))
	}
	if v := uint16(p16[6]) | uint16(p16[7])<<8; v != 40000 { // little-endian host
		t.Fatalf("gray16 pixel = %d", v)
	}
	rgba := image.NewRGBA(image.Rect(0, 0, 2, 1))
	rgba.Set(1, 0, color.RGBA{R: 200, G: 100, B: 50, A: 255})
	imgRGB, err := ImageFromGo(rgba)
	if err != nil {
		t.Fatal(err)
	}
	defer imgRGB.Close()
	if p, _ := imgRGB.Pixels(); !bytes.Equal(p, []byte{0, 0, 0, 200, 100, 50}) {
		t.Fatalf("rgb pixels %v", p)
	}
}

func TestImageErrors(t *testing.T) {
	if _, err := ImageFromBytes([]byte("not an image")); !errors.Is(err, ErrImageFormat) {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := ImageFromBytes(nil); !errors.Is(err, ErrInvalidArg) && !errors.Is(err, ErrImageFormat) {
		t.Fatalf("empty: %v", err)
	}
	raw, _ := os.ReadFile(cxrPath(t))
	_, err := ImageFromBytes(raw[:len(raw)/2])
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusImageFormat || e.Message == "" {
		t.Fatalf("truncated PNG: %v", err)
	}
	if _, err := LoadImage(cxrPath(t), WithMaxSize(512, 512)); !errors.Is(err, ErrLimit) {
		t.Fatalf("size limit: %v", err)
	}
	if _, err := LoadImage(filepath.Join(t.TempDir(), "none.png")); !errors.Is(err, ErrIO) {
		t.Fatalf("missing: %v", err)
	}
	img := loadCXR(t)
	img.Close()
	if _, err := img.Info(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed image: %v", err)
	}
	// finalizers free images nobody closed
	for i := 0; i < 20; i++ {
		if _, err := ImageFromBytes(raw); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
}

func TestImageDICOM(t *testing.T) {
	root := repoRoot(t)
	dir := os.Getenv("MG_SHARED_DATA")
	if dir == "" {
		dir = filepath.Join(root, "..", "shared", "data")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "dicom", "*", "*.dcm"))
	if len(matches) == 0 {
		t.Skip("shared DICOM data absent")
	}
	ok := 0
	for _, p := range matches {
		img, err := LoadImage(p)
		if err != nil {
			continue // some transfer syntaxes may be unsupported by this build
		}
		info, _ := img.Info()
		if info.Source != SourceDICOM || info.Width <= 0 {
			t.Fatalf("%s: %+v", p, info)
		}
		if _, ok := img.Attr("transfer_syntax_uid"); !ok {
			t.Fatalf("%s: no transfer syntax", p)
		}
		img.Close()
		ok++
	}
	if ok == 0 {
		t.Fatal("no DICOM file decoded")
	}
}
