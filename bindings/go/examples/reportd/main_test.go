package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"medgemini"
)

func repoRoot(t *testing.T) string {
	dir, _ := os.Getwd()
	for d := dir; filepath.Dir(d) != d; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "include", "medgemini.h")); err == nil {
			return d
		}
	}
	t.Fatalf("no include/medgemini.h above %s", dir)
	return ""
}

// setup makes a tiny random-weight model, loads it and serves the handler on
// a loopback listener.
func setup(t *testing.T, mkmodelArgs ...string) (*medgemini.Model, *httptest.Server, []byte) {
	root := repoRoot(t)
	path := makeModel(t, mkmodelArgs...)
	m, err := medgemini.LoadModel(path, medgemini.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	maxTokens := 32
	if len(mkmodelArgs) > 0 {
		maxTokens = 8000
	}
	srv := httptest.NewServer(newHandler(m, maxTokens, 4<<20))
	t.Cleanup(func() { srv.Close(); m.Close() })
	img, err := os.ReadFile(filepath.Join(root, "examples", "data", "cxr_nih_00006585_008.png"))
	if err != nil {
		t.Fatal(err)
	}
	return m, srv, img
}

// makeModel writes a tiny random-weight q8_0 model with the medgemini CLI.
func makeModel(t *testing.T, mkmodelArgs ...string) string {
	cli := os.Getenv("MG_CLI")
	if cli == "" {
		cli = filepath.Join(repoRoot(t), "bin", "medgemini")
	}
	path := filepath.Join(t.TempDir(), "tiny.mgm")
	args := append([]string{"mkmodel", "--shape", "tiny", "--dtype", "q8_0", "-o", path}, mkmodelArgs...)
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("mkmodel: %v\n%s", err, out)
	}
	return path
}

func decode(t *testing.T, resp *http.Response, code int, v interface{}) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("HTTP %d (want %d): %s", resp.StatusCode, code, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("bad JSON %q: %v", body, err)
	}
}

func TestReportService(t *testing.T) {
	m, srv, img := setup(t)
	// what the service must answer: the same greedy report, made directly
	decoded, err := medgemini.ImageFromBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	defer decoded.Close()
	want, err := m.Report(context.Background(), []*medgemini.Image{decoded}, medgemini.WithMaxTokens(32))
	if err != nil || want == "" {
		t.Fatalf("direct report %q, %v", want, err)
	}

	// multipart upload
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("image", "cxr.png")
	fw.Write(img)
	mw.Close()
	resp, err := http.Post(srv.URL+"/report", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	var got reportResponse
	decode(t, resp, http.StatusOK, &got)
	if got.Report != want || got.Images != 1 {
		t.Fatalf("multipart: %+v, want %q", got, want)
	}

	// raw body
	resp, err = http.Post(srv.URL+"/report", "image/png", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	got = reportResponse{}
	decode(t, resp, http.StatusOK, &got)
	if got.Report != want {
		t.Fatalf("raw: %q, want %q", got.Report, want)
	}

	// two views in one multipart study, a shorter report
	body.Reset()
	mw = multipart.NewWriter(&body)
	for _, name := range []string{"pa.png", "lat.png"} {
		fw, _ := mw.CreateFormFile("image", name)
		fw.Write(img)
	}
	mw.Close()
	resp, _ = http.Post(srv.URL+"/report?max_tokens=4", mw.FormDataContentType(), &body)
	got = reportResponse{}
	decode(t, resp, http.StatusOK, &got)
	want2, _ := m.Report(context.Background(), []*medgemini.Image{decoded, decoded}, medgemini.WithMaxTokens(4))
	if got.Images != 2 || got.Report != want2 {
		t.Fatalf("two images: %+v, want %q", got, want2)
	}

	// a question
	resp, _ = http.Post(srv.URL+"/report?question=Any+effusion%3F", "image/png", bytes.NewReader(img))
	got = reportResponse{}
	decode(t, resp, http.StatusOK, &got)
	wantQ, _ := m.VQA(context.Background(), []*medgemini.Image{decoded}, "Any effusion?", medgemini.WithMaxTokens(32))
	if got.Report != wantQ {
		t.Fatalf("vqa: %q, want %q", got.Report, wantQ)
	}

	// health
	hresp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]interface{}
	decode(t, hresp, http.StatusOK, &h)
	if h["model"] != "random-tiny-q8_0" || h["vision"] != true {
		t.Fatalf("health %v", h)
	}
}

func TestReportServiceErrors(t *testing.T) {
	_, srv, img := setup(t)
	var e errorResponse

	resp, _ := http.Post(srv.URL+"/report", "application/octet-stream", bytes.NewReader([]byte("not an image")))
	decode(t, resp, http.StatusUnprocessableEntity, &e)
	if e.Status == "" || e.Error == "" {
		t.Fatalf("garbage: %+v", e)
	}
	resp, _ = http.Post(srv.URL+"/report", "image/png", bytes.NewReader(img[:len(img)/3]))
	decode(t, resp, http.StatusUnprocessableEntity, &e)

	resp, _ = http.Post(srv.URL+"/report", "image/png", bytes.NewReader(nil))
	decode(t, resp, http.StatusBadRequest, &e)

	resp, _ = http.Get(srv.URL + "/report")
	decode(t, resp, http.StatusMethodNotAllowed, &e)

	resp, _ = http.Post(srv.URL+"/report?max_tokens=0", "image/png", bytes.NewReader(img))
	decode(t, resp, http.StatusBadRequest, &e)

	big := make([]byte, 5<<20)
	resp, _ = http.Post(srv.URL+"/report", "image/png", bytes.NewReader(big))
	decode(t, resp, http.StatusRequestEntityTooLarge, &e)
}

// A client that gives up cancels the generation: the server's handler
// returns soon after, instead of generating 8000 tokens.
func TestClientDisconnectCancels(t *testing.T) {
	_, srv, img := setup(t, "--context", "8192", "--layers", "8", "--hidden", "512", "--ffn", "2048",
		"--heads", "8", "--kv-heads", "2", "--head-dim", "64")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/report?max_tokens=8000", bytes.NewReader(img))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("an 8000-token report finished within 300 ms")
	}
	start := time.Now()
	srv.Close() // waits for the handler
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("handler ran on for %v after the client left", el)
	}
}

// Concurrent requests to a batching service share decode steps and get the
// reports the unbatched model gives.
func TestBatchedRequests(t *testing.T) {
	m, _, img := setup(t)
	path := makeModel(t) // the same file again: mkmodel is deterministic
	bm, err := medgemini.LoadModel(path, medgemini.WithThreads(1), medgemini.WithBatching(4),
		medgemini.WithBatchWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newHandler(bm, 32, 4<<20))
	defer func() { srv.Close(); bm.Close() }()
	decoded, err := medgemini.ImageFromBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	defer decoded.Close()
	const n = 4
	want := make([]string, n)
	for i := range want {
		if want[i], err = m.Report(context.Background(), []*medgemini.Image{decoded},
			medgemini.WithMaxTokens(12+5*i)); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]reportResponse, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Post(fmt.Sprintf("%s/report?max_tokens=%d", srv.URL, 12+5*i), "image/png",
				bytes.NewReader(img))
			if err != nil {
				t.Error(err)
				return
			}
			decode(t, resp, http.StatusOK, &got[i])
		}(i)
	}
	wg.Wait()
	for i := range got {
		if got[i].Report != want[i] {
			t.Fatalf("request %d: %q, want %q", i, got[i].Report, want[i])
		}
	}
	hresp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]interface{}
	decode(t, hresp, http.StatusOK, &h)
	steps, _ := h["batch_steps"].(float64)
	rows, _ := h["batch_rows"].(float64)
	if steps == 0 || rows < steps {
		t.Fatalf("health %v", h)
	}
	t.Logf("%v rows in %v steps", rows, steps)
}
