package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"medgemini"
)

// readEvents parses a text/event-stream answer into (event, data) pairs.
func readEvents(t *testing.T, r io.Reader) [][2]string {
	t.Helper()
	var events [][2]string
	name, data := "", ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if name != "" || data != "" {
				events = append(events, [2]string{name, data})
			}
			name, data = "", ""
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data += line[6:]
		}
	}
	return events
}

// The viewer's endpoints without a browser: the page, previews, windows and
// the event stream.
func TestViewerEndpoints(t *testing.T) {
	m, srv, img := setup(t)

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") ||
		!bytes.Contains(page, []byte(`src="viewer.js"`)) {
		t.Fatalf("GET /: %d %v", resp.StatusCode, resp.Header)
	}
	for _, path := range []string{"/viewer.js", "/style.css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}

	// a PNG preview: the image itself, no window
	resp, err = http.Post(srv.URL+"/preview?window=lung", "image/png", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Image-Source") != "PNG" ||
		resp.Header.Get("X-Window") != "none" {
		t.Fatalf("preview: %d %v", resp.StatusCode, resp.Header)
	}
	pv, err := png.Decode(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := medgemini.ImageFromBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	defer decoded.Close()
	info, _ := decoded.Info()
	if resp.Header.Get("X-Image-Size") != fmt.Sprintf("%dx%d", info.Width, info.Height) {
		t.Fatalf("size header %q", resp.Header.Get("X-Image-Size"))
	}
	if b := pv.Bounds(); b.Dx() > previewSide || b.Dy() > previewSide || b.Dx() < previewSide && b.Dy() < previewSide {
		t.Fatalf("preview of %dx%d is %v", info.Width, info.Height, b)
	}

	var e errorResponse
	for _, bad := range []string{"bogus", "40,0", "x,3"} {
		resp, _ = http.Post(srv.URL+"/preview?window="+bad, "image/png", bytes.NewReader(img))
		decode(t, resp, http.StatusBadRequest, &e)
	}
	resp, _ = http.Post(srv.URL+"/preview", "image/png", strings.NewReader("not an image"))
	decode(t, resp, http.StatusUnprocessableEntity, &e)

	// the stream: its pieces make the report the binding writes
	var wantPieces []string
	want, err := m.ReportStream(context.Background(), []*medgemini.Image{decoded},
		func(p string) error { wantPieces = append(wantPieces, p); return nil }, medgemini.WithMaxTokens(32))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(srv.URL+"/report?stream=1&window=auto", "image/png", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream content type %q", resp.Header.Get("Content-Type"))
	}
	events := readEvents(t, resp.Body)
	resp.Body.Close()
	if len(events) != len(wantPieces)+1 {
		t.Fatalf("%d events for %d pieces: %q", len(events), len(wantPieces), events)
	}
	var text strings.Builder
	for i, ev := range events[:len(wantPieces)] {
		var p pieceEvent
		if ev[0] != "piece" || json.Unmarshal([]byte(ev[1]), &p) != nil || p.Text != wantPieces[i] {
			t.Fatalf("event %d: %q, want piece %q", i, ev, wantPieces[i])
		}
		text.WriteString(p.Text)
	}
	var done doneEvent
	last := events[len(events)-1]
	if last[0] != "done" || json.Unmarshal([]byte(last[1]), &done) != nil || done.Report != want ||
		text.String() != want || done.Pieces != len(wantPieces) || done.Images != 1 {
		t.Fatalf("last event %q, want the report %q", last, want)
	}

	// bad parameters are refused before the stream begins
	resp, _ = http.Post(srv.URL+"/report?stream=1&max_tokens=999", "image/png", bytes.NewReader(img))
	decode(t, resp, http.StatusBadRequest, &e)
}

// A streaming client that goes away after the first piece stops its
// generation: the handler returns soon after (instead of making 8000
// tokens), and /healthz counts one cancellation.
func TestStreamDisconnectCancels(t *testing.T) {
	_, srv, img := setup(t, "--context", "8192", "--layers", "8", "--hidden", "512", "--ffn", "2048",
		"--heads", "8", "--kv-heads", "2", "--head-dim", "64")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/report?stream=1&max_tokens=8000",
		bytes.NewReader(img))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event: piece\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	start := time.Now()
	for {
		hresp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var h map[string]interface{}
		decode(t, hresp, http.StatusOK, &h)
		if h["cancelled"] == 1.0 {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("the generation ran on for 3 s after its client left: %v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// repoFile returns root/rel, or "" when it does not exist.
func repoFile(root, rel string) string {
	p := filepath.Join(root, rel)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// The viewer in headless Chromium with the bundled demo model: pick a DICOM
// with the page's file input, change the window, stream a report and compare
// it with the binding's, then cancel a report and check that the server's
// generation stopped. MG_VIEWER_SCREENSHOT=FILE saves a screenshot of the
// finished report (docs/reportd-viewer.png is one).
func TestViewerInBrowser(t *testing.T) {
	exe := findChromium()
	if exe == "" {
		t.Skip("no chromium on the PATH (Debian package chromium; or set MG_CHROMIUM)")
	}
	root := repoRoot(t)
	modelPath := repoFile(root, "examples/models/medgemini-demo-q8_0.mgm")
	if modelPath == "" {
		t.Fatal("the bundled model examples/models/medgemini-demo-q8_0.mgm is missing")
	}
	imgPath := repoFile(root, "../shared/data/dicom/cr_chest/RG1_J2KI.dcm")
	dicom := imgPath != ""
	if !dicom {
		t.Log("no shared DICOM corpus next to the repository: using a PNG")
		imgPath = filepath.Join(root, "examples", "data", "cxr_nih_00006585_008.png")
	}
	m, err := medgemini.LoadModel(modelPath, medgemini.WithThreads(2), medgemini.WithBatching(8)) // as reportd
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(m, 200, 16<<20) // the page's default, 256, becomes 200
	// the cancellation check holds the request's first piece until the
	// client has gone: deterministic however fast the model is
	var hold sync.Mutex
	holding, heldPieces := false, 0
	s.afterPiece = func(ctx context.Context, n int) {
		hold.Lock()
		h := holding
		if h {
			heldPieces = n
		}
		hold.Unlock()
		if h {
			<-ctx.Done()
		}
	}
	srv := httptest.NewServer(s.routes())
	t.Cleanup(func() { srv.Close(); m.Close() })

	// the independent expectation: the binding's own report of the image
	// with the window the test picks
	img, err := medgemini.LoadImage(imgPath, medgemini.WithWindow(medgemini.WindowAuto))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	pieces := 0
	want, err := m.ReportStream(context.Background(), []*medgemini.Image{img},
		func(string) error { pieces++; return nil }, medgemini.WithMaxTokens(200))
	if err != nil || want == "" {
		t.Fatalf("binding report %q, %v", want, err)
	}

	start := time.Now()
	b := startBrowser(t, exe, 1100, 720)
	b.must(b.session, "Page.navigate", map[string]interface{}{"url": srv.URL + "/"}, nil)
	b.waitFor("the page", `document.body && document.body.dataset.ready === "1" && document.getElementById("model").textContent.startsWith("model ")`, 15*time.Second)

	// pick the file with the real file input
	var input struct {
		Result struct {
			ObjectID string `json:"objectId"`
		} `json:"result"`
	}
	b.must(b.session, "Runtime.evaluate", map[string]interface{}{"expression": `document.getElementById("file")`}, &input)
	b.must(b.session, "DOM.setFileInputFiles", map[string]interface{}{
		"files": []string{imgPath}, "objectId": input.Result.ObjectID}, nil)
	source := "PNG"
	if dicom {
		source = "DICOM"
	}
	loaded := func(window string) string {
		return fmt.Sprintf(`(() => { const i = document.getElementById("preview");
			return i.dataset.state === "loaded" && i.naturalWidth > 0 && i.dataset.source === %q && i.dataset.window %s })()`,
			source, window)
	}
	b.waitFor("the preview", loaded(`!== undefined`), 20*time.Second)
	if dicom {
		b.mustEval(`document.querySelector('[data-window="lung"]').click()`, nil)
		b.waitFor("the lung window", loaded(`=== "-600,1500"`), 20*time.Second)
		b.mustEval(`document.querySelector('[data-window="auto"]').click()`, nil)
		b.waitFor("the auto window", loaded(`!== "-600,1500"`)+` && document.querySelector('[data-window="auto"]').classList.contains("on")`, 20*time.Second)
	} else {
		b.mustEval(`document.querySelector('[data-window="auto"]').click()`, nil)
		b.waitFor("the note on windows", `document.getElementById("imginfo").textContent.includes("DICOM only")`, 20*time.Second)
	}

	// stream a report
	b.mustEval(`document.getElementById("start").click()`, nil)
	b.waitFor("the report", `document.getElementById("status").dataset.state === "done"`, 30*time.Second)
	var got struct {
		Text   string `json:"text"`
		Pieces string `json:"pieces"`
		Status string `json:"status"`
	}
	b.mustEval(`(() => { const r = document.getElementById("report");
		return {text: r.textContent, pieces: r.dataset.pieces, status: document.getElementById("status").textContent}; })()`, &got)
	if got.Text != want || got.Pieces != fmt.Sprint(pieces) {
		t.Fatalf("page shows %q in %s pieces (%s); the binding wrote %q in %d", got.Text, got.Pieces, got.Status, want, pieces)
	}
	if path := os.Getenv("MG_VIEWER_SCREENSHOT"); path != "" {
		var shot struct {
			Data string `json:"data"`
		}
		b.must(b.session, "Page.captureScreenshot", map[string]interface{}{"format": "png",
			"clip": map[string]interface{}{"x": 0, "y": 0, "width": 1100, "height": 720, "scale": 0.8}}, &shot)
		data, err := base64.StdEncoding.DecodeString(shot.Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(data))
	}

	// a report held at its first piece, cancelled from the page
	hold.Lock()
	holding = true
	hold.Unlock()
	b.mustEval(`document.getElementById("start").click()`, nil)
	b.waitFor("the first piece", `document.getElementById("report").dataset.pieces === "1" && !document.getElementById("cancel").disabled`, 30*time.Second)
	b.mustEval(`document.getElementById("cancel").click()`, nil)
	b.waitFor("the cancelled state", `document.getElementById("status").dataset.state === "cancelled" && !document.getElementById("start").disabled`+
		` && document.getElementById("status").textContent === "Cancelled after 1 piece."`, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for s.cancelled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server did not see the cancellation")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hold.Lock()
	n := heldPieces
	hold.Unlock()
	if n != 1 {
		t.Fatalf("the cancelled generation made %d pieces, want 1", n)
	}
	hresp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]interface{}
	decode(t, hresp, http.StatusOK, &h)
	var maxTokens string
	b.mustEval(`(() => { const m = document.getElementById("maxtokens"); return m.max + "/" + m.value; })()`, &maxTokens)
	if h["cancelled"] != 1.0 || h["max_tokens"] != 200.0 || maxTokens != "200/200" {
		t.Fatalf("health %v, the page's longest answer (max/value) %q", h, maxTokens)
	}
	if dicom { // a PNG: shown as it is, and the page says windows do not apply
		b.must(b.session, "DOM.setFileInputFiles", map[string]interface{}{
			"files":    []string{filepath.Join(root, "examples", "data", "cxr_nih_00006585_008.png")},
			"objectId": input.Result.ObjectID}, nil)
		source = "PNG"
		b.waitFor("the PNG preview", loaded(`=== "none"`)+
			` && document.getElementById("imginfo").textContent.includes("window presets apply to DICOM only")`, 20*time.Second)
	}
	t.Logf("browser part: %v", time.Since(start).Round(time.Millisecond))
}

// shrink averages boxes of pixels; toGo keeps the high byte of 16-bit
// samples.
func TestPreviewPixels(t *testing.T) {
	// 2000x1000 grey in bands 500 columns wide, 0 and 200 in turn: each
	// 2x2 box lies in one band
	src := image.NewGray(image.Rect(0, 0, 2000, 1000))
	for y := 0; y < 1000; y++ {
		for x := 0; x < 2000; x++ {
			if (x/500)%2 == 1 {
				src.Pix[y*2000+x] = 200
			}
		}
	}
	g, ok := shrink(src, 1000).(*image.Gray)
	if !ok || g.Rect.Dx() != 1000 || g.Rect.Dy() != 500 {
		t.Fatalf("shrunk to %v", g.Bounds())
	}
	for _, c := range [][3]int{{0, 0, 0}, {249, 499, 0}, {250, 0, 200}, {999, 499, 200}} {
		if v := g.GrayAt(c[0], c[1]).Y; int(v) != c[2] {
			t.Fatalf("pixel %d,%d is %d, want %d", c[0], c[1], v, c[2])
		}
	}
	box := &image.Gray{Pix: []byte{0, 100, 10, 20, 50, 50, 30, 41}, Stride: 4, Rect: image.Rect(0, 0, 4, 2)}
	if g := shrink(box, 2).(*image.Gray); !bytes.Equal(g.Pix, []byte{50, 25}) {
		t.Fatalf("2x2 boxes averaged to %v", g.Pix)
	}
	if small := image.NewGray(image.Rect(0, 0, 10, 20)); shrink(small, 1000) != image.Image(small) {
		t.Fatal("a small image was resized")
	}

	// 2x1 RGB16 and GRAY16 in native byte order
	put := func(b []byte, v uint16) {
		if littleEndian {
			b[0], b[1] = byte(v), byte(v>>8)
		} else {
			b[0], b[1] = byte(v>>8), byte(v)
		}
	}
	rgb := make([]byte, 12)
	for i, v := range []uint16{0x1234, 0xabcd, 0xff00, 0x0001, 0x8000, 0x7fff} {
		put(rgb[2*i:], v)
	}
	c := toGo(rgb, medgemini.ImageInfo{Width: 2, Height: 1, Format: medgemini.RGB16}).(*image.RGBA)
	if want := []byte{0x12, 0xab, 0xff, 255, 0x00, 0x80, 0x7f, 255}; !bytes.Equal(c.Pix, want) {
		t.Fatalf("RGB16: % x, want % x", c.Pix, want)
	}
	gray := make([]byte, 4)
	put(gray, 0xfe01)
	put(gray[2:], 0x0102)
	gg := toGo(gray, medgemini.ImageInfo{Width: 2, Height: 1, Format: medgemini.Gray16}).(*image.Gray)
	if !bytes.Equal(gg.Pix, []byte{0xfe, 0x01}) {
		t.Fatalf("GRAY16: % x", gg.Pix)
	}
}
