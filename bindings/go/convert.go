package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"

extern int32_t medgeminiGoProgress(void *user, char *name, int32_t dtype, uint64_t index,
                                   uint64_t count, double rms, double rel);

static void mgo_set_progress(mg_convert_params *p, uintptr_t handle) {
    p->progress = (mg_convert_progress)medgeminiGoProgress;
    p->user_data = (void *)handle;
}
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"strings"
)

// ConvertProgress is reported after each tensor Convert writes.
type ConvertProgress struct {
	Name     string  // tensor name in the .mgm
	DType    DType   // the type it was stored in
	Index    uint64  // 0-based
	Count    uint64  // tensors in all
	RMSError float64 // quantization error (0 when lossless)
	RelError float64 // RMSError / RMS of the values
}

type convertOptions struct {
	dtype      DType
	flags      uint32
	mmproj     *string
	tokenizer  *string
	pruneVocab *string
	meta       []string // "key=value"
	progress   func(ConvertProgress) error
	err        error
}

// ConvertOption configures Convert.
type ConvertOption func(*convertOptions)

// ConvertDType stores matrices in this type (default: each matrix's source
// type; the library keeps some tensors in f32/f16 whatever is asked).
func ConvertDType(d DType) ConvertOption { return func(o *convertOptions) { o.dtype = d } }

// ConvertCompress stores tensors zstd-compressed.
func ConvertCompress() ConvertOption {
	return func(o *convertOptions) { o.flags |= C.MG_CONVERT_COMPRESS }
}

// ConvertNoChecksums skips the SHA-256 of the source files.
func ConvertNoChecksums() ConvertOption {
	return func(o *convertOptions) { o.flags |= C.MG_CONVERT_NO_CHECKSUMS }
}

// ConvertMMProj names the vision GGUF of a GGUF source.
func ConvertMMProj(path string) ConvertOption { return func(o *convertOptions) { o.mmproj = &path } }

// ConvertTokenizer uses this tokenizer.json instead of the source's.
func ConvertTokenizer(path string) ConvertOption {
	return func(o *convertOptions) { o.tokenizer = &path }
}

// ConvertPruneVocab keeps only the tokens that the text file corpus needs
// (and their embedding rows); the corpus tokenizes exactly as before.
func ConvertPruneVocab(corpus string) ConvertOption {
	return func(o *convertOptions) { o.pruneVocab = &corpus }
}

// ConvertMeta sets a string metadata key under general. or prompt.
// (general.name, prompt.report_instruction, ...); a key the converter
// writes itself is replaced. Repeatable.
func ConvertMeta(key, value string) ConvertOption {
	return func(o *convertOptions) {
		if strings.Contains(key, "=") && o.err == nil {
			o.err = argError("meta key %q contains '='", key)
		}
		o.meta = append(o.meta, key+"="+value)
	}
}

// ConvertOnProgress calls fn after each tensor; an error from it stops the
// conversion.
func ConvertOnProgress(fn func(ConvertProgress) error) ConvertOption {
	return func(o *convertOptions) { o.progress = fn }
}

type progressState struct {
	ctx      context.Context
	fn       func(ConvertProgress) error
	err      error
	panicked bool
	panicVal interface{}
}

func (s *progressState) progress(name *C.char, dtype C.int32_t, index, count C.uint64_t, rms, rel C.double) (ret C.int32_t) {
	if s.err != nil || s.panicked {
		return 1
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 1
	}
	if s.fn == nil {
		return 0
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked, s.panicVal, ret = true, r, 1
		}
	}()
	err := s.fn(ConvertProgress{Name: C.GoString(name), DType: DType(dtype), Index: uint64(index),
		Count: uint64(count), RMSError: float64(rms), RelError: float64(rel)})
	if err != nil {
		s.err = err
		return 1
	}
	return 0
}

// Convert converts a checkpoint (a Hugging Face folder or a GGUF file) into
// an .mgm file. Cancelling ctx stops it after the tensor being written (the
// output is removed); the error then matches ErrInterrupted and ctx.Err().
func Convert(ctx context.Context, src, out string, opts ...ConvertOption) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := cancelledError(ctx); err != nil {
		return err
	}
	o := convertOptions{dtype: DType(C.MG_CONVERT_DTYPE_SOURCE)}
	for _, f := range opts {
		f(&o)
	}
	if o.err != nil {
		return o.err
	}
	var strs cstrs
	defer strs.free()
	var p C.mg_convert_params
	C.mg_convert_params_init(&p)
	p.dtype = C.int32_t(o.dtype)
	p.flags = C.uint32_t(o.flags)
	p.mmproj = strs.optStr(o.mmproj)
	p.tokenizer = strs.optStr(o.tokenizer)
	p.prune_vocab = strs.optStr(o.pruneVocab)
	p.meta = strs.array(o.meta)
	p.n_meta = C.uint32_t(len(o.meta))
	state := &progressState{ctx: ctx, fn: o.progress}
	h := cgo.NewHandle(state)
	defer h.Delete()
	C.mgo_set_progress(&p, C.uintptr_t(h))
	csrc, cout := strs.str(src), strs.str(out)
	eb := newErrbuf()
	defer eb.free()
	st := C.mg_convert(csrc, cout, &p, eb.p, eb.n)
	if state.panicked {
		panic(state.panicVal)
	}
	if st == C.MG_OK {
		return nil
	}
	e := &Error{Status: Status(st), Message: eb.String()}
	if st == C.MG_E_INTERRUPTED {
		e.Cause = state.err
	}
	return e
}
