package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"

extern int32_t medgeminiGoToken(void *user, char *piece, size_t n, int32_t token);
extern int32_t medgeminiGoGenProgress(void *user, mg_progress *progress);

static void mgo_set_stream(mg_gen_params *p, uintptr_t handle) {
    p->on_token = (mg_token_callback)medgeminiGoToken;
    p->user_data = (void *)handle;
}

static void mgo_set_gen_progress(mg_gen_params *p, uintptr_t handle) {
    p->on_progress = (mg_progress_callback)medgeminiGoGenProgress;
    p->progress_user_data = (void *)handle;
}
*/
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"strconv"
	"time"
	"unsafe"
)

type genOptions struct {
	maxTokens    *int
	temperature  *float32
	topK         *int
	topP         *float32
	repPenalty   *float32
	seed         uint64
	stop         []string
	systemPrompt *string
	instruction  *string
	raw          bool
	draftNgram   bool
	draft        *Session
	draftMax     int
	onToken      func(piece string, token int32) error
	onProgress   func(Progress) error
}

// GenOption configures a generation call (Report, VQA, Generate, ...).
type GenOption func(*genOptions)

// WithMaxTokens caps the number of generated tokens (default 256).
func WithMaxTokens(n int) GenOption { return func(o *genOptions) { o.maxTokens = &n } }

// WithTemperature samples at temperature t (0, the default, is greedy).
func WithTemperature(t float32) GenOption { return func(o *genOptions) { o.temperature = &t } }

// WithTopK keeps the k most likely tokens when sampling (0: off).
func WithTopK(k int) GenOption { return func(o *genOptions) { o.topK = &k } }

// WithTopP keeps the smallest set of tokens with probability mass p (1: off).
func WithTopP(p float32) GenOption { return func(o *genOptions) { o.topP = &p } }

// WithRepetitionPenalty penalises tokens already in the sequence (1: off).
func WithRepetitionPenalty(r float32) GenOption { return func(o *genOptions) { o.repPenalty = &r } }

// WithGenSeed seeds sampling for this call (0 keeps the context's RNG state).
func WithGenSeed(seed uint64) GenOption { return func(o *genOptions) { o.seed = seed } }

// WithStop stops generation at any of the strings (left out of the text).
func WithStop(stop ...string) GenOption {
	return func(o *genOptions) { o.stop = append(o.stop, stop...) }
}

// WithSystemPrompt sets the system text ("" for none; the default for
// reports and VQA is the model's own).
func WithSystemPrompt(s string) GenOption { return func(o *genOptions) { o.systemPrompt = &s } }

// WithInstruction replaces the model's default report instruction.
func WithInstruction(s string) GenOption { return func(o *genOptions) { o.instruction = &s } }

// WithRawPrompt makes Generate use the prompt as it is (no BOS, no turn).
func WithRawPrompt() GenOption { return func(o *genOptions) { o.raw = true } }

// WithDraftNgram turns on speculative decoding from n-grams
// (MG_GEN_DRAFT_NGRAM): after each token, the tokens that followed the last
// earlier occurrence of the sequence's last 3 (else 2) tokens, up to 4, are
// read with it in one decoder call and checked against what decoding would
// choose. For greedy generation the text, the context's sequence and its
// logits are exactly those without the option; it only saves time, most
// when the answer repeats the prompt or itself. When sampling, drafted
// tokens are kept or replaced by speculative sampling: the texts have the
// distribution of plain sampling, but a seed gives another text than
// without the option (the same one every time).
func WithDraftNgram() GenOption { return func(o *genOptions) { o.draftNgram = true } }

// WithDraft makes a draft model propose the tokens instead (mg_gen_params
// draft): s is a Session on a smaller model with the same tokenizer, which
// the call uses (it reads the prompt's text and follows the answer), with
// the guarantees of WithDraftNgram. s must not be in use by another call
// nor be the session generating; a tokenizer that differs gives an
// InvalidArgument error.
func WithDraft(s *Session) GenOption { return func(o *genOptions) { o.draft = s } }

// WithDraftMax caps the tokens of one draft (1 to 16; 0, the default,
// means 4).
func WithDraftMax(n int) GenOption { return func(o *genOptions) { o.draftMax = n } }

// WithOnToken streams: fn is called with each piece of text and its token id
// as it is produced, on the calling goroutine. A non-nil error stops the
// call, which then returns an *Error with StatusInterrupted wrapping it.
func WithOnToken(fn func(piece string, token int32) error) GenOption {
	return func(o *genOptions) { o.onToken = fn }
}

// WithProgress reports the call's progress: fn is called on the calling
// goroutine when each stage (StageEncode, StagePrefill, StageGenerate) and
// each encoder block begins, then at most every 100 ms while work goes on. A
// non-nil error stops the call, which then returns an *Error with
// StatusInterrupted (matching ErrInterrupted) wrapping it, and the text made
// so far. The Progress value is a copy; fn may keep it.
func WithProgress(fn func(Progress) error) GenOption {
	return func(o *genOptions) { o.onProgress = fn }
}

// Stage is the part of a generating call that a Progress report describes.
type Stage int32

// Stages of a generating call. The prompt is read in StagePrefill; each
// encoder block in it that is not cached is read in StageEncode, after
// which StagePrefill resumes; then StageGenerate.
const (
	StageEncode   Stage = C.MG_STAGE_ENCODE   // an encoder reads one block (image, volume slice, score set)
	StagePrefill  Stage = C.MG_STAGE_PREFILL  // the text decoder reads the prompt
	StageGenerate Stage = C.MG_STAGE_GENERATE // the answer's tokens are made
)

// String names the stage ("encode", "prefill", "generate").
func (s Stage) String() string {
	switch s {
	case StageEncode:
		return "encode"
	case StagePrefill:
		return "prefill"
	case StageGenerate:
		return "generate"
	}
	return "Stage(" + strconv.Itoa(int(s)) + ")"
}

// Progress is one progress report of a generating call (WithProgress).
type Progress struct {
	Stage   Stage
	Block   int           // StageEncode: the block's index among the prompt's blocks
	NBlocks int           // encoder blocks (images, slices, score sets) in the prompt
	Step    int           // StageEncode: encoder steps done; StagePrefill: decoder layers done for the current batch
	NSteps  int           // steps of that encoder run or decoder batch
	Done    int           // StagePrefill: prompt tokens read; StageGenerate: tokens generated
	Total   int           // StagePrefill: prompt tokens to read; StageGenerate: the token limit
	Reused  int           // prompt tokens kept from the context's sequence (not read again)
	Cached  int           // blocks taken from the context's encoder-output cache (not encoded again)
	Elapsed time.Duration // since the call began
}

// callState is what the token and progress callbacks reach through a
// cgo.Handle.
type callState struct {
	ctx        context.Context
	onToken    func(string, int32) error
	onProgress func(Progress) error
	err        error
	panicked   bool
	panicVal   interface{}
}

// stop records a callback's outcome; nonzero tells the library to stop.
func (s *callState) stop(err error) C.int32_t {
	if err != nil {
		s.err = err
		return 1
	}
	if s.ctx != nil && s.ctx.Err() != nil {
		return 1 // cancelled: stop now rather than when the interrupt lands
	}
	return 0
}

func (s *callState) token(piece *C.char, n C.size_t, token C.int32_t) (ret C.int32_t) {
	if s.err != nil || s.panicked {
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked, s.panicVal, ret = true, r, 1
		}
	}()
	text := ""
	if n > 0 {
		text = string(unsafe.Slice((*byte)(unsafe.Pointer(piece)), int(n)))
	}
	return s.stop(s.onToken(text, int32(token)))
}

func (s *callState) progress(cp *C.mg_progress) (ret C.int32_t) {
	if s.err != nil || s.panicked {
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked, s.panicVal, ret = true, r, 1
		}
	}()
	// Read only the fields the library's struct has (struct_size), so that
	// an older library's shorter struct leaves the rest zero.
	var p C.mg_progress
	n := uintptr(cp.struct_size)
	if n > unsafe.Sizeof(p) {
		n = unsafe.Sizeof(p)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&p)), n), unsafe.Slice((*byte)(unsafe.Pointer(cp)), n))
	return s.stop(s.onProgress(Progress{
		Stage:   Stage(p.stage),
		Block:   int(p.block),
		NBlocks: int(p.n_blocks),
		Step:    int(p.step),
		NSteps:  int(p.n_steps),
		Done:    int(p.done),
		Total:   int(p.total),
		Reused:  int(p.reused),
		Cached:  int(p.cached),
		Elapsed: time.Duration(float64(p.seconds) * float64(time.Second)),
	}))
}

// call is the state of one generation call: its C parameters (in C memory,
// so that no Go pointer sits next to them), the C strings they point to and
// the handle both callbacks receive as their user data.
type call struct {
	params *C.mg_gen_params
	strs   cstrs
	state  *callState
	handle cgo.Handle
	draft  *Session
}

func newCall(opts []GenOption) *call {
	var o genOptions
	for _, f := range opts {
		f(&o)
	}
	k := &call{params: (*C.mg_gen_params)(C.malloc(C.sizeof_mg_gen_params))}
	p := k.params
	C.mg_gen_params_init(p)
	if o.maxTokens != nil {
		p.max_tokens = C.uint32_t(*o.maxTokens)
	}
	if o.temperature != nil {
		p.temperature = C.float(*o.temperature)
	}
	if o.topK != nil {
		p.top_k = C.int32_t(*o.topK)
	}
	if o.topP != nil {
		p.top_p = C.float(*o.topP)
	}
	if o.repPenalty != nil {
		p.repetition_penalty = C.float(*o.repPenalty)
	}
	p.seed = C.uint64_t(o.seed)
	if len(o.stop) > 0 {
		p.stop = k.strs.array(o.stop)
		p.n_stop = C.uint32_t(len(o.stop))
	}
	if o.raw {
		p.flags |= C.MG_GEN_RAW_PROMPT
	}
	if o.draftNgram {
		p.flags |= C.MG_GEN_DRAFT_NGRAM
	}
	if o.draftMax > 0 {
		p.n_draft = C.uint32_t(o.draftMax)
	}
	k.draft = o.draft
	p.system_prompt = k.strs.optStr(o.systemPrompt)
	p.instruction = k.strs.optStr(o.instruction)
	if o.onToken != nil || o.onProgress != nil {
		k.state = &callState{onToken: o.onToken, onProgress: o.onProgress}
		k.handle = cgo.NewHandle(k.state)
		if o.onToken != nil {
			C.mgo_set_stream(p, C.uintptr_t(k.handle))
		}
		if o.onProgress != nil {
			C.mgo_set_gen_progress(p, C.uintptr_t(k.handle))
		}
	}
	return k
}

func (k *call) free() {
	C.free(unsafe.Pointer(k.params))
	k.params = nil
	k.strs.free()
	if k.handle != 0 {
		k.handle.Delete()
		k.handle = 0
	}
}

// run performs fn on the C context c while a watcher goroutine turns the
// cancellation of ctx into mg_context_interrupt. The watcher has exited
// before run returns, so it never touches c after the call.
func (k *call) run(ctx context.Context, c *C.mg_context, fn func(out **C.char) C.mg_status) (string, error) {
	if k.state != nil {
		k.state.ctx = ctx
	}
	if k.draft != nil { // held open for the call
		if err := k.draft.life.acquire(); err != nil {
			return "", err
		}
		defer k.draft.life.release()
		k.params.draft = k.draft.ptr
	}
	var done, exited chan struct{}
	if ctx.Done() != nil {
		done, exited = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			select {
			case <-ctx.Done():
				C.mg_context_interrupt(c)
			case <-done:
			}
		}()
	}
	var out *C.char
	st := fn(&out)
	if done != nil {
		close(done)
		<-exited
	}
	text := ""
	if out != nil {
		text = C.GoString(out)
		C.mg_string_free(out)
	}
	if k.state != nil && k.state.panicked {
		panic(k.state.panicVal)
	}
	if st == C.MG_OK {
		return text, nil
	}
	e := &Error{Status: Status(st), Message: C.GoString(C.mg_context_errmsg(c))}
	if st == C.MG_E_INTERRUPTED {
		if k.state != nil && k.state.err != nil {
			e.Cause = k.state.err
		} else if ctx.Err() != nil {
			e.Cause = ctx.Err()
		}
	}
	return text, e
}

func cancelledError(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return &Error{Status: StatusInterrupted, Message: "context done before the call started", Cause: err}
	}
	return nil
}

// generate runs fn on a pooled context of m.
func (m *Model) generate(ctx context.Context, opts []GenOption, fn func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := cancelledError(ctx); err != nil {
		return "", err
	}
	if err := m.life.acquire(); err != nil {
		return "", err
	}
	defer m.life.release()
	c, err := m.getContext()
	if err != nil {
		return "", err
	}
	k := newCall(opts)
	defer k.free()
	text, err := k.run(ctx, c, func(out **C.char) C.mg_status { return fn(c, out, k.params) })
	m.putContext(c)
	return text, err
}

// imageArray holds uses of the images for the duration of a call.
type imageArray struct {
	imgs []*Image
	ptrs []*C.mg_image
}

func acquireImages(images []*Image) (*imageArray, error) {
	a := &imageArray{}
	for i, img := range images {
		if img == nil {
			a.release()
			return nil, argError("image %d is nil", i)
		}
		if err := img.life.acquire(); err != nil {
			a.release()
			return nil, err
		}
		a.imgs = append(a.imgs, img)
		a.ptrs = append(a.ptrs, img.ptr)
	}
	return a, nil
}

func (a *imageArray) release() {
	for _, img := range a.imgs {
		img.life.release()
	}
	runtime.KeepAlive(a.imgs)
	a.imgs, a.ptrs = nil, nil
}

// cptr is the C view of the array (a Go slice of C pointers, which cgo
// allows to pass).
func (a *imageArray) cptr() **C.mg_image {
	if len(a.ptrs) == 0 {
		return nil
	}
	return (**C.mg_image)(unsafe.Pointer(&a.ptrs[0]))
}

// Report writes a radiology report for one study (one or more images).
// On cancellation of ctx the call stops within one token and returns the
// text made so far with an error matching ErrInterrupted and ctx.Err().
func (m *Model) Report(ctx context.Context, images []*Image, opts ...GenOption) (string, error) {
	a, err := acquireImages(images)
	if err != nil {
		return "", err
	}
	defer a.release()
	imgs, n := a.cptr(), C.size_t(len(a.ptrs))
	return m.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_generate_report(out, c, imgs, n, p)
	})
}

// ReportStream is Report with fn called for each piece of text as it is
// produced. An error from fn stops generation and is wrapped in the result.
func (m *Model) ReportStream(ctx context.Context, images []*Image, fn func(piece string) error, opts ...GenOption) (string, error) {
	return m.Report(ctx, images, append(opts, streamOpt(fn))...)
}

// VQA answers a question about one or more images.
func (m *Model) VQA(ctx context.Context, images []*Image, question string, opts ...GenOption) (string, error) {
	a, err := acquireImages(images)
	if err != nil {
		return "", err
	}
	defer a.release()
	imgs, n := a.cptr(), C.size_t(len(a.ptrs))
	cq := C.CString(question)
	defer C.free(unsafe.Pointer(cq))
	return m.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_vqa(out, c, imgs, n, cq, p)
	})
}

// VQAStream is VQA with streaming, as ReportStream.
func (m *Model) VQAStream(ctx context.Context, images []*Image, question string, fn func(piece string) error, opts ...GenOption) (string, error) {
	return m.VQA(ctx, images, question, append(opts, streamOpt(fn))...)
}

// Generate generates text from a prompt, wrapped in the model's chat turn
// unless WithRawPrompt is given.
func (m *Model) Generate(ctx context.Context, prompt string, opts ...GenOption) (string, error) {
	cp := C.CString(prompt)
	defer C.free(unsafe.Pointer(cp))
	return m.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_generate(out, c, cp, p)
	})
}

// GenerateStream is Generate with streaming, as ReportStream.
func (m *Model) GenerateStream(ctx context.Context, prompt string, fn func(piece string) error, opts ...GenOption) (string, error) {
	return m.Generate(ctx, prompt, append(opts, streamOpt(fn))...)
}

// GenerateIDs generates from token ids used as they are.
func (m *Model) GenerateIDs(ctx context.Context, ids []int32, opts ...GenOption) (string, error) {
	var cids *C.int32_t
	if len(ids) > 0 {
		cids = (*C.int32_t)(unsafe.Pointer(&ids[0]))
	}
	n := C.size_t(len(ids))
	text, err := m.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_generate_ids(out, c, cids, n, p)
	})
	runtime.KeepAlive(ids)
	return text, err
}

func streamOpt(fn func(string) error) GenOption {
	return WithOnToken(func(piece string, _ int32) error { return fn(piece) })
}
