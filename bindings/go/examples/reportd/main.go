// Command reportd is a small HTTP service that writes a report for an
// uploaded image with libmedgemini.
//
//	reportd -model model.mgm -listen 127.0.0.1:8080
//	curl -F image=@chest.png http://127.0.0.1:8080/report
//	curl --data-binary @chest.png http://127.0.0.1:8080/report
//
// POST /report takes a multipart form (every file part is one image of the
// study) or the raw bytes of one image (JPEG, PNG or DICOM) and answers
// {"report": "..."}; ?question=... asks a question instead (VQA) and
// ?max_tokens=N caps the length; ?window= picks how a DICOM is windowed (file,
// auto, lung, mediastinum, bone, or CENTER,WIDTH; default file). With
// ?stream=1 the answer is a text/event-stream: a "piece" event for each piece
// of text as it is made, then "done" (the whole text and the time) or
// "error". GET /healthz describes the model, the longest answer
// (max_tokens), how many generations stopped because their client went away
// ("cancelled") and, with batching, how many decode steps ran and how many
// tokens they decoded. A client that goes away cancels its generation.
//
// GET / is a small viewer page (web/, embedded in the binary): pick a DICOM,
// PNG or JPEG, look at it with window presets (POST /preview renders the
// image as PNG), watch the report stream in and cancel it. See
// docs/VIEWER.md.
//
// Requests served at the same time share their decode steps (-batch N, up to
// N requests a step, 0 to turn it off): a step reads the model's weights
// once for all of them, and each report is exactly the one it would be alone.
//
// Random-weight test models produce meaningless text: this is a software
// example, not a medical device.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"medgemini"
)

type server struct {
	model     *medgemini.Model
	maxTokens int
	maxBody   int64
	cancelled atomic.Int64 // generations stopped because the client went away
	// afterPiece, when set (tests), runs after each streamed piece is
	// flushed to the client; n counts the pieces of the request.
	afterPiece func(ctx context.Context, n int)
}

type reportResponse struct {
	Report string `json:"report"`
	Images int    `json:"images"`
	Millis int64  `json:"ms"`
}

type errorResponse struct {
	Error  string `json:"error"`
	Status string `json:"status,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// httpStatus maps a library error to an HTTP status.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, medgemini.ErrImageFormat), errors.Is(err, medgemini.ErrInvalidArg),
		errors.Is(err, medgemini.ErrUnsupported):
		return http.StatusUnprocessableEntity
	case errors.Is(err, medgemini.ErrLimit), errors.Is(err, medgemini.ErrContextFull):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, medgemini.ErrInterrupted):
		return 499 // client closed the request
	}
	return http.StatusInternalServerError
}

func fail(w http.ResponseWriter, code int, err error) {
	resp := errorResponse{Error: err.Error()}
	var e *medgemini.Error
	if errors.As(err, &e) {
		resp.Status = e.Status.String()
	}
	writeJSON(w, code, resp)
}

// readImages decodes the request body: multipart file parts, or raw bytes.
func (s *server) readImages(r *http.Request, opts ...medgemini.ImageOption) ([]*medgemini.Image, error) {
	var blobs [][]byte
	if mr, err := r.MultipartReader(); err == nil {
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			if part.FileName() == "" && part.FormName() != "image" {
				continue
			}
			b, err := io.ReadAll(part)
			if err != nil {
				return nil, err
			}
			blobs = append(blobs, b)
		}
	} else if errors.Is(err, http.ErrNotMultipart) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			blobs = append(blobs, b)
		}
	} else {
		return nil, err
	}
	if len(blobs) == 0 {
		return nil, errors.New("no image in the request")
	}
	var images []*medgemini.Image
	for _, b := range blobs {
		img, err := medgemini.ImageFromBytes(b, opts...)
		if err != nil {
			closeAll(images)
			return nil, err
		}
		images = append(images, img)
	}
	return images, nil
}

func closeAll(images []*medgemini.Image) {
	for _, img := range images {
		img.Close()
	}
}

func (s *server) report(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, http.StatusMethodNotAllowed, errors.New("POST an image"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	maxTokens := s.maxTokens
	if v := r.URL.Query().Get("max_tokens"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.maxTokens {
			fail(w, http.StatusBadRequest, errors.New("max_tokens must be 1.."+strconv.Itoa(s.maxTokens)))
			return
		}
		maxTokens = n
	}
	window, err := windowOption(r.URL.Query().Get("window"))
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	start := time.Now()
	images, err := s.readImages(r, window)
	if err != nil {
		s.failRead(w, err)
		return
	}
	defer closeAll(images)
	q := r.URL.Query().Get("question")
	generate := func(ctx context.Context, fn func(string) error) (string, error) {
		opt := medgemini.WithMaxTokens(maxTokens)
		switch {
		case q != "" && fn != nil:
			return s.model.VQAStream(ctx, images, q, fn, opt)
		case q != "":
			return s.model.VQA(ctx, images, q, opt)
		case fn != nil:
			return s.model.ReportStream(ctx, images, fn, opt)
		}
		return s.model.Report(ctx, images, opt)
	}
	if r.URL.Query().Get("stream") == "1" {
		s.stream(w, r, generate, len(images), start)
		return
	}
	text, err := generate(r.Context(), nil)
	if err != nil {
		s.noteCancel(r, err, -1)
		fail(w, httpStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, reportResponse{Report: text, Images: len(images), Millis: time.Since(start).Milliseconds()})
}

// failRead answers a request whose images could not be read.
func (s *server) failRead(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	var e *medgemini.Error
	switch {
	case errors.As(err, &tooBig), errors.Is(err, multipart.ErrMessageTooLarge):
		fail(w, http.StatusRequestEntityTooLarge, err)
	case errors.As(err, &e):
		fail(w, httpStatus(err), err)
	default:
		fail(w, http.StatusBadRequest, err)
	}
}

// noteCancel counts and logs a generation stopped because its client went
// away; pieces is how many were streamed (-1: not streaming).
func (s *server) noteCancel(r *http.Request, err error, pieces int) bool {
	if !errors.Is(err, medgemini.ErrInterrupted) || r.Context().Err() == nil {
		return false
	}
	s.cancelled.Add(1)
	if pieces >= 0 {
		log.Printf("reportd: %s went away; generation stopped, streamed pieces: %d", r.RemoteAddr, pieces)
	} else {
		log.Printf("reportd: %s went away; generation stopped", r.RemoteAddr)
	}
	return true
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	info, err := s.model.Info()
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	out := map[string]interface{}{
		"model": info.Name, "vision": info.HasVision, "library": medgemini.Version(),
		"cancelled": s.cancelled.Load(), "max_tokens": s.maxTokens,
	}
	if st, err := s.model.BatchStats(); err == nil {
		out["batch_steps"], out["batch_rows"] = st.Steps, st.Rows
	}
	writeJSON(w, http.StatusOK, out)
}

func newServer(m *medgemini.Model, maxTokens int, maxBody int64) *server {
	return &server{model: m, maxTokens: maxTokens, maxBody: maxBody}
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/report", s.report)
	mux.HandleFunc("/preview", s.preview)
	mux.HandleFunc("/healthz", s.health)
	mux.Handle("/", staticHandler())
	return mux
}

func newHandler(m *medgemini.Model, maxTokens int, maxBody int64) http.Handler {
	return newServer(m, maxTokens, maxBody).routes()
}

func main() {
	modelPath := flag.String("model", "", "the .mgm model file (required)")
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	threads := flag.Int("threads", 0, "kernel threads per request (0: one per CPU)")
	maxTokens := flag.Int("max-tokens", 256, "longest report, in tokens")
	maxBody := flag.Int64("max-body", 64<<20, "largest request body, in bytes")
	batch := flag.Int("batch", 8, "most concurrent requests in one decode step, 1..8 (0: no batching)")
	flag.Parse()
	if *modelPath == "" {
		flag.Usage()
		log.Fatal("reportd: -model is required")
	}
	opts := []medgemini.ModelOption{medgemini.WithThreads(*threads)}
	if *batch > 0 {
		opts = append(opts, medgemini.WithBatching(*batch))
	}
	m, err := medgemini.LoadModel(*modelPath, opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("reportd: serving %s on http://%s", *modelPath, ln.Addr())
	srv := &http.Server{Handler: newHandler(m, *maxTokens, *maxBody), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}
