package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Tokenizer is a model's byte-pair encoder (borrowed from a Model, valid
// while the model is open) or one loaded from a tokenizer.json (closed with
// Close). Safe for concurrent use.
type Tokenizer struct {
	ptr   *C.mg_tokenizer
	owner *Model // nil for a tokenizer loaded from JSON
	life  life
}

// Special token roles for Tokenizer.Special.
const (
	TokenBOS          = int(C.MG_TOKEN_BOS)
	TokenEOS          = int(C.MG_TOKEN_EOS)
	TokenPAD          = int(C.MG_TOKEN_PAD)
	TokenUNK          = int(C.MG_TOKEN_UNK)
	TokenStartOfTurn  = int(C.MG_TOKEN_START_OF_TURN)
	TokenEndOfTurn    = int(C.MG_TOKEN_END_OF_TURN)
	TokenStartOfImage = int(C.MG_TOKEN_START_OF_IMAGE)
	TokenEndOfImage   = int(C.MG_TOKEN_END_OF_IMAGE)
	TokenImage        = int(C.MG_TOKEN_IMAGE)
)

// TokenizeOption sets tokenizer flags.
type TokenizeOption uint32

// Tokenize flags.
const (
	AddBOS       TokenizeOption = C.MG_TOKENIZE_ADD_BOS
	ParseSpecial TokenizeOption = C.MG_TOKENIZE_PARSE_SPECIAL
)

// Tokenizer returns the model's tokenizer, or an error matching
// ErrUnsupported when the model has none.
func (m *Model) Tokenizer() (*Tokenizer, error) {
	if err := m.life.acquire(); err != nil {
		return nil, err
	}
	defer m.life.release()
	p := C.mg_model_tokenizer(m.ptr)
	if p == nil {
		return nil, &Error{Status: StatusUnsupported, Message: "the model has no tokenizer"}
	}
	return &Tokenizer{ptr: p, owner: m}, nil
}

// Tokenize encodes text with the model's tokenizer.
func (m *Model) Tokenize(text string, opts ...TokenizeOption) ([]int32, error) {
	t, err := m.Tokenizer()
	if err != nil {
		return nil, err
	}
	return t.Tokenize(text, opts...)
}

// Detokenize decodes ids with the model's tokenizer.
func (m *Model) Detokenize(ids []int32, skipSpecial bool) (string, error) {
	t, err := m.Tokenizer()
	if err != nil {
		return "", err
	}
	return t.Detokenize(ids, skipSpecial)
}

// LoadTokenizer loads a Hugging Face tokenizer.json.
func LoadTokenizer(path string) (*Tokenizer, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	eb := newErrbuf()
	defer eb.free()
	var p *C.mg_tokenizer
	st := C.mg_tokenizer_load_json(&p, cpath, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	t := &Tokenizer{ptr: p}
	runtime.SetFinalizer(t, (*Tokenizer).Close)
	return t, nil
}

// Close frees a tokenizer loaded with LoadTokenizer; for a model's own
// tokenizer it only makes this value unusable.
func (t *Tokenizer) Close() error {
	if t == nil || !t.life.close() {
		return nil
	}
	runtime.SetFinalizer(t, nil)
	if t.owner == nil {
		C.mg_tokenizer_free(t.ptr)
	}
	t.ptr = nil
	return nil
}

// use holds the tokenizer (and its model) for one call.
func (t *Tokenizer) use() (func(), error) {
	if err := t.life.acquire(); err != nil {
		return nil, err
	}
	if t.owner != nil {
		if err := t.owner.life.acquire(); err != nil {
			t.life.release()
			return nil, err
		}
		return func() { t.owner.life.release(); t.life.release() }, nil
	}
	return t.life.release, nil
}

// VocabSize is the number of token ids.
func (t *Tokenizer) VocabSize() int {
	done, err := t.use()
	if err != nil {
		return 0
	}
	defer done()
	return int(C.mg_tokenizer_vocab_size(t.ptr))
}

// Piece is the stored piece of a token id; ok is false when out of range.
func (t *Tokenizer) Piece(id int32) (piece string, ok bool) {
	done, err := t.use()
	if err != nil {
		return "", false
	}
	defer done()
	cid := C.int32_t(id)
	p := C.mg_tokenizer_piece(t.ptr, cid)
	if p == nil {
		return "", false
	}
	return C.GoString(p), true
}

// Special is the id of a special token role (TokenBOS, ...), or -1.
func (t *Tokenizer) Special(role int) int32 {
	done, err := t.use()
	if err != nil {
		return -1
	}
	defer done()
	cr := C.int32_t(role)
	return int32(C.mg_tokenizer_special(t.ptr, cr))
}

// Tokenize encodes text into token ids.
func (t *Tokenizer) Tokenize(text string, opts ...TokenizeOption) ([]int32, error) {
	done, err := t.use()
	if err != nil {
		return nil, err
	}
	defer done()
	var flags C.uint32_t
	for _, o := range opts {
		flags |= C.uint32_t(o)
	}
	var strs cstrs
	defer strs.free()
	ctext := strs.str(text)
	clen := C.size_t(len(text))
	ids := make([]int32, len(text)+2)
	for {
		var need C.size_t
		capacity := C.size_t(len(ids))
		cids := (*C.int32_t)(unsafe.Pointer(&ids[0]))
		st := C.mg_tokenize(cids, capacity, &need, t.ptr, ctext, clen, flags)
		if st == C.MG_E_BUFFER_TOO_SMALL && int(need) > len(ids) {
			ids = make([]int32, int(need))
			continue
		}
		if st != C.MG_OK {
			return nil, newError(st, "tokenize failed")
		}
		return ids[:int(need)], nil
	}
}

// Detokenize decodes ids into text, optionally leaving out special tokens.
func (t *Tokenizer) Detokenize(ids []int32, skipSpecial bool) (string, error) {
	done, err := t.use()
	if err != nil {
		return "", err
	}
	defer done()
	var flags C.uint32_t
	if skipSpecial {
		flags = C.MG_DETOKENIZE_SKIP_SPECIAL
	}
	var cids *C.int32_t
	if len(ids) > 0 {
		cids = (*C.int32_t)(unsafe.Pointer(&ids[0]))
	}
	n := C.size_t(len(ids))
	buf := make([]byte, 16*len(ids)+1)
	for {
		var need C.size_t
		cbuf := (*C.char)(unsafe.Pointer(&buf[0]))
		capacity := C.size_t(len(buf))
		st := C.mg_detokenize(cbuf, capacity, &need, t.ptr, cids, n, flags)
		if st == C.MG_E_BUFFER_TOO_SMALL && int(need) >= len(buf) {
			buf = make([]byte, int(need)+1)
			continue
		}
		runtime.KeepAlive(ids)
		if st != C.MG_OK {
			return "", newError(st, "detokenize failed")
		}
		return string(buf[:int(need)]), nil
	}
}
