package medgemini

/*
#include "medgemini.h"
*/
import "C"

import (
	"context"
	"runtime"
	"unsafe"
)

// Session is one inference context of a model, for callers who need its
// state across calls (Eval appends tokens to its sequence, Chat holds a
// conversation, and unless SessionNoReuse a call reuses what the previous
// one read: the prompt's common start and the encoder outputs of the same
// *Image). A Session is used by one goroutine at a time; Interrupt may be
// called from any goroutine. The Model's Report, VQA and Generate need no
// Session: they take contexts from the model's pool.
type Session struct {
	model  *Model
	ptr    *C.mg_context
	life   life
	nVocab int
}

// SessionOption configures NewSession.
type SessionOption func(*contextOptions)

// SessionThreads sets the session's kernel thread count.
func SessionThreads(n int) SessionOption { return func(o *contextOptions) { o.threads = uint32(n) } }

// SessionContextSize sets the session's token capacity.
func SessionContextSize(n int) SessionOption { return func(o *contextOptions) { o.nCtx = uint32(n) } }

// SessionKVBF16 keeps the session's KV cache keys and values as bf16.
func SessionKVBF16() SessionOption {
	return func(o *contextOptions) { o.flags |= C.MG_CONTEXT_KV_BF16 }
}

// SessionNoReuse turns off the session's reuse across calls, as
// WithNoReuse does for a model's contexts: every prompt is read from its
// start and every image encoded anew. Chat needs reuse.
func SessionNoReuse() SessionOption {
	return func(o *contextOptions) { o.flags |= C.MG_CONTEXT_NO_REUSE }
}

// SessionSeed seeds the session's sampler RNG.
func SessionSeed(seed uint64) SessionOption { return func(o *contextOptions) { o.seed = seed } }

// NewSession creates a context over the model, with the model's context
// options changed by opts. The session keeps the model alive until it is
// closed, also after Model.Close.
func (m *Model) NewSession(opts ...SessionOption) (*Session, error) {
	info, err := m.Info()
	if err != nil {
		return nil, err
	}
	if err := m.life.acquire(); err != nil {
		return nil, err
	}
	defer m.life.release()
	o := m.ctxOpts
	for _, f := range opts {
		f(&o)
	}
	c, err := m.newContext(o)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.sessions++
	m.mu.Unlock()
	s := &Session{model: m, ptr: c, nVocab: int(info.VocabSize)}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

// Close frees the session (waiting for a call in progress). Closing twice is
// harmless.
func (s *Session) Close() error {
	if s == nil || !s.life.close() {
		return nil
	}
	runtime.SetFinalizer(s, nil)
	C.mg_context_free(s.ptr)
	s.ptr = nil
	s.model.sessionClosed()
	return nil
}

func (s *Session) lastError(st C.mg_status) error {
	if st == C.MG_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.mg_context_errmsg(s.ptr))}
}

// LastError is the status and message of the session's last call (nil after
// a success).
func (s *Session) LastError() error {
	if err := s.life.acquire(); err != nil {
		return err
	}
	defer s.life.release()
	st := C.mg_context_errcode(s.ptr)
	return s.lastError(st)
}

// Interrupt asks the call running on the session to stop; it returns an
// error matching ErrInterrupted within one token. Safe from any goroutine.
func (s *Session) Interrupt() error {
	if err := s.life.acquire(); err != nil {
		return err
	}
	defer s.life.release()
	st := C.mg_context_interrupt(s.ptr)
	return newError(st, "mg_context_interrupt failed")
}

// Eval appends tokens to the session's sequence. With wantLogits it returns
// their logits: len(ids) rows of the model's vocabulary size.
func (s *Session) Eval(ids []int32, wantLogits bool) ([]float32, error) {
	if err := s.life.acquire(); err != nil {
		return nil, err
	}
	defer s.life.release()
	var cids *C.int32_t
	if len(ids) > 0 {
		cids = (*C.int32_t)(unsafe.Pointer(&ids[0]))
	}
	n := C.size_t(len(ids))
	var logits []float32
	var clog *C.float
	if wantLogits && len(ids) > 0 && s.nVocab > 0 {
		logits = make([]float32, len(ids)*s.nVocab)
		clog = (*C.float)(unsafe.Pointer(&logits[0]))
	}
	capacity := C.size_t(len(logits))
	st := C.mg_context_eval(s.ptr, cids, n, clog, capacity)
	runtime.KeepAlive(ids)
	if st != C.MG_OK {
		return nil, s.lastError(st)
	}
	return logits, nil
}

// Logits returns the logits of the session's last decoder step (the
// model's vocabulary size of scores for the next token). After Report or VQA
// with MaxTokens(0) they are those of the answer's first token.
func (s *Session) Logits() ([]float32, error) {
	if err := s.life.acquire(); err != nil {
		return nil, err
	}
	defer s.life.release()
	if s.nVocab <= 0 {
		return nil, &Error{Status: StatusUnsupported, Message: "the model has no text decoder"}
	}
	logits := make([]float32, s.nVocab)
	st := C.mg_context_logits(s.ptr, (*C.float)(unsafe.Pointer(&logits[0])), C.size_t(len(logits)))
	if st != C.MG_OK {
		return nil, s.lastError(st)
	}
	return logits, nil
}

// Tokens returns the token ids of the session's sequence: the prompt as read
// (image blocks as the tokenizer's image token, Tokenizer.Special(TokenImage)),
// then what was generated and fed back.
func (s *Session) Tokens() ([]int32, error) {
	if err := s.life.acquire(); err != nil {
		return nil, err
	}
	defer s.life.release()
	var need C.size_t
	st := C.mg_context_tokens(nil, 0, &need, s.ptr)
	if st != C.MG_OK && st != C.MG_E_BUFFER_TOO_SMALL {
		return nil, s.lastError(st)
	}
	ids := make([]int32, int(need))
	if len(ids) == 0 {
		return ids, nil
	}
	st = C.mg_context_tokens((*C.int32_t)(unsafe.Pointer(&ids[0])), need, &need, s.ptr)
	if st != C.MG_OK {
		return nil, s.lastError(st)
	}
	return ids, nil
}

// Reset empties the session's sequence.
func (s *Session) Reset() error {
	if err := s.life.acquire(); err != nil {
		return err
	}
	defer s.life.release()
	st := C.mg_context_reset(s.ptr)
	return s.lastError(st)
}

// Len is the number of tokens in the session's sequence.
func (s *Session) Len() int {
	if s.life.acquire() != nil {
		return 0
	}
	defer s.life.release()
	return int(C.mg_context_n_tokens(s.ptr))
}

// Generate runs generation on the session (its sequence is replaced by the
// prompt, with reuse as in Session.Report), as Model.Generate.
func (s *Session) Generate(ctx context.Context, prompt string, opts ...GenOption) (string, error) {
	var strs cstrs
	defer strs.free()
	cp := strs.str(prompt)
	return s.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_generate(out, c, cp, p)
	})
}

// generate runs fn on the session's context, as Model.generate does on a
// pooled one.
func (s *Session) generate(ctx context.Context, opts []GenOption, fn func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := cancelledError(ctx); err != nil {
		return "", err
	}
	if err := s.life.acquire(); err != nil {
		return "", err
	}
	defer s.life.release()
	k := newCall(opts)
	defer k.free()
	c := s.ptr
	return k.run(ctx, c, func(out **C.char) C.mg_status { return fn(c, out, k.params) })
}

// Report is Model.Report on the session. Its sequence is replaced by the
// new prompt; unless the session was made with SessionNoReuse, the part of
// the prompt that matches what the session holds is not read again and an
// image the session has encoded already (the same *Image) is taken from its
// encoder-output cache. The text is the same either way.
func (s *Session) Report(ctx context.Context, images []*Image, opts ...GenOption) (string, error) {
	a, err := acquireImages(images)
	if err != nil {
		return "", err
	}
	defer a.release()
	imgs, n := a.cptr(), C.size_t(len(a.ptrs))
	return s.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_generate_report(out, c, imgs, n, p)
	})
}

// VQA is Model.VQA on the session, with reuse as in Session.Report.
func (s *Session) VQA(ctx context.Context, images []*Image, question string, opts ...GenOption) (string, error) {
	a, err := acquireImages(images)
	if err != nil {
		return "", err
	}
	defer a.release()
	imgs, n := a.cptr(), C.size_t(len(a.ptrs))
	var strs cstrs
	defer strs.free()
	cq := strs.str(question)
	return s.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_vqa(out, c, imgs, n, cq, p)
	})
}

// Chat holds a conversation in the session. The first call (on a new
// session, after Reset, or after any other generating call on it) opens one
// as VQA does (system text, message, images) and returns the answer; each
// later call appends the next user turn (message, and images, which may be
// nil) and returns the next answer, reading only the new turn. When the
// context fills, the oldest exchanges but the first are dropped; when even
// the first and the new turn do not fit, the error matches ErrContextFull.
// Generation options, streaming and cancellation work as in VQA (the
// history keeps an answer cut short as it was returned). A session made with
// SessionNoReuse (or from a model loaded WithNoReuse) cannot chat: the
// error matches ErrUnsupported.
func (s *Session) Chat(ctx context.Context, images []*Image, message string, opts ...GenOption) (string, error) {
	a, err := acquireImages(images)
	if err != nil {
		return "", err
	}
	defer a.release()
	imgs, n := a.cptr(), C.size_t(len(a.ptrs))
	var strs cstrs
	defer strs.free()
	cm := strs.str(message)
	return s.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_chat(out, c, imgs, n, cm, p)
	})
}
