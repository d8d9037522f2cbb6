package main

// The browser viewer: the embedded page, the preview renderer and the
// streamed report (server-sent events).

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"medgemini"
)

//go:embed web
var webFiles embed.FS

// The viewer loads nothing from elsewhere and runs no inline script.
const viewerCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func staticHandler() http.Handler {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded tree always has web/
	}
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			fail(w, http.StatusMethodNotAllowed, errors.New("GET the viewer"))
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", viewerCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// Window presets in modality units (centre, width): CT lung, mediastinum
// (soft tissue) and bone.
var windowPresets = map[string][2]float64{
	"lung":        {-600, 1500},
	"mediastinum": {50, 350},
	"bone":        {400, 1800},
}

// windowOption parses ?window=: file (the default), auto, a preset name, or
// CENTER,WIDTH.
func windowOption(v string) (medgemini.ImageOption, error) {
	switch v {
	case "", "file":
		return medgemini.WithWindow(medgemini.WindowFile), nil
	case "auto":
		return medgemini.WithWindow(medgemini.WindowAuto), nil
	}
	if p, ok := windowPresets[v]; ok {
		return medgemini.WithExplicitWindow(p[0], p[1]), nil
	}
	if c, wd, ok := strings.Cut(v, ","); ok {
		center, err1 := strconv.ParseFloat(strings.TrimSpace(c), 64)
		width, err2 := strconv.ParseFloat(strings.TrimSpace(wd), 64)
		if err1 == nil && err2 == nil && width >= 1 && width < 1e9 && center > -1e9 && center < 1e9 {
			return medgemini.WithExplicitWindow(center, width), nil
		}
	}
	return nil, fmt.Errorf("window must be file, auto, lung, mediastinum, bone or CENTER,WIDTH (width >= 1), not %q", v)
}

var sourceNames = map[medgemini.ImageSource]string{
	medgemini.SourcePixels: "pixels", medgemini.SourceJPEG: "JPEG",
	medgemini.SourcePNG: "PNG", medgemini.SourceDICOM: "DICOM",
}

// previewSide is the longest side of a preview; larger images are shrunk.
const previewSide = 1024

// preview answers the first image of the request as a PNG, windowed as
// ?window= says. Headers describe it: X-Image-Source (DICOM, PNG, JPEG),
// X-Image-Size (WxH of the decoded image) and X-Window (CENTER,WIDTH applied,
// or "none").
func (s *server) preview(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, http.StatusMethodNotAllowed, errors.New("POST an image"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	window, err := windowOption(r.URL.Query().Get("window"))
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	images, err := s.readImages(r, window)
	if err != nil {
		s.failRead(w, err)
		return
	}
	defer closeAll(images)
	info, err := images[0].Info()
	if err != nil {
		fail(w, httpStatus(err), err)
		return
	}
	pix, err := images[0].Pixels()
	if err != nil {
		fail(w, httpStatus(err), err)
		return
	}
	img := shrink(toGo(pix, info), previewSide)
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Image-Source", sourceNames[info.Source])
	h.Set("X-Image-Size", fmt.Sprintf("%dx%d", info.Width, info.Height))
	if info.Window == medgemini.WindowNone {
		h.Set("X-Window", "none")
	} else {
		h.Set("X-Window", strconv.FormatFloat(info.WindowCenter, 'g', 6, 64)+","+
			strconv.FormatFloat(info.WindowWidth, 'g', 6, 64))
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	enc.Encode(w, img)
}

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// toGo wraps the library's tightly packed pixels as an 8-bit Go image
// (16-bit samples keep their high byte).
func toGo(pix []byte, info medgemini.ImageInfo) image.Image {
	wd, ht := info.Width, info.Height
	rect := image.Rect(0, 0, wd, ht)
	hi := 0 // index of a 16-bit sample's high byte
	if littleEndian {
		hi = 1
	}
	switch info.Format {
	case medgemini.Gray8:
		return &image.Gray{Pix: pix, Stride: wd, Rect: rect}
	case medgemini.Gray16:
		g := image.NewGray(rect)
		for i := range g.Pix {
			g.Pix[i] = pix[2*i+hi]
		}
		return g
	}
	step := 3 // RGB8
	if info.Format == medgemini.RGB16 {
		step = 6
	}
	c := image.NewRGBA(rect)
	for i, j := 0, 0; i < len(c.Pix); i, j = i+4, j+step {
		if step == 3 {
			copy(c.Pix[i:i+3], pix[j:j+3])
		} else {
			c.Pix[i], c.Pix[i+1], c.Pix[i+2] = pix[j+hi], pix[j+2+hi], pix[j+4+hi]
		}
		c.Pix[i+3] = 255
	}
	return c
}

// shrink scales img down (averaging boxes of pixels) so that neither side
// exceeds side; smaller images come back as they are.
func shrink(img image.Image, side int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= side && h <= side {
		return img
	}
	ow, oh := side, side
	if w > h {
		oh = max1(h * side / w)
	} else {
		ow = max1(w * side / h)
	}
	// every image from toGo is *image.Gray or *image.RGBA: read samples
	// as channels of those
	var src []byte
	var stride, ch int
	switch g := img.(type) {
	case *image.Gray:
		src, stride, ch = g.Pix, g.Stride, 1
	case *image.RGBA:
		src, stride, ch = g.Pix, g.Stride, 4
	default:
		return img
	}
	dst := make([]byte, ow*oh*ch)
	for oy := 0; oy < oh; oy++ {
		y0, y1 := oy*h/oh, max1((oy+1)*h/oh)
		for ox := 0; ox < ow; ox++ {
			x0, x1 := ox*w/ow, max1((ox+1)*w/ow)
			n := (y1 - y0) * (x1 - x0)
			for k := 0; k < ch; k++ {
				sum := 0
				for y := y0; y < y1; y++ {
					row := src[y*stride:]
					for x := x0; x < x1; x++ {
						sum += int(row[x*ch+k])
					}
				}
				dst[(oy*ow+ox)*ch+k] = byte((sum + n/2) / n)
			}
		}
	}
	r := image.Rect(0, 0, ow, oh)
	if ch == 1 {
		return &image.Gray{Pix: dst, Stride: ow, Rect: r}
	}
	return &image.RGBA{Pix: dst, Stride: 4 * ow, Rect: r}
}

func max1(v int) int {
	if v < 1 {
		return 1
	}
	return v
}

type pieceEvent struct {
	Text string `json:"text"`
}

type doneEvent struct {
	Report string `json:"report"`
	Images int    `json:"images"`
	Pieces int    `json:"pieces"`
	Millis int64  `json:"ms"`
}

type errorEvent struct {
	Error  string `json:"error"`
	Status string `json:"status,omitempty"`
	Code   int    `json:"code"`
}

// writeEvent writes one server-sent event; data is JSON, so it is one line.
func writeEvent(w http.ResponseWriter, name string, v interface{}) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
	return err
}

// stream runs generate with a callback that sends each piece of text as a
// server-sent event and flushes it, then a "done" or an "error" event.
func (s *server) stream(w http.ResponseWriter, r *http.Request,
	generate func(context.Context, func(string) error) (string, error), images int, start time.Time) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, errors.New("this connection cannot stream"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not hold pieces back
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	ctx := r.Context()
	pieces := 0
	text, err := generate(ctx, func(piece string) error {
		pieces++
		if err := writeEvent(w, "piece", pieceEvent{Text: piece}); err != nil {
			return err
		}
		flusher.Flush()
		if s.afterPiece != nil {
			s.afterPiece(ctx, pieces)
		}
		return ctx.Err()
	})
	if err != nil {
		if s.noteCancel(r, err, pieces) {
			return // nobody to tell
		}
		ev := errorEvent{Error: err.Error(), Code: httpStatus(err)}
		var e *medgemini.Error
		if errors.As(err, &e) {
			ev.Status = e.Status.String()
		}
		writeEvent(w, "error", ev)
		return
	}
	writeEvent(w, "done", doneEvent{Report: text, Images: images, Pieces: pieces,
		Millis: time.Since(start).Milliseconds()})
}
