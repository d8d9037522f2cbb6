package medgemini

// The exported functions the C library calls back into. A file with
// //export may only declare things in its preamble, so the shims that
// install these pointers live in generate.go, convert.go and prs.go. Each
// receives a runtime/cgo.Handle as its user data: no Go pointer is held by C.

/*
#include <stddef.h>
#include <stdint.h>
#include "medgemini.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

//export medgeminiGoToken
func medgeminiGoToken(user unsafe.Pointer, piece *C.char, n C.size_t, token C.int32_t) C.int32_t {
	s, ok := cgo.Handle(uintptr(user)).Value().(*callState)
	if !ok || s.onToken == nil {
		return 1
	}
	return s.token(piece, n, token)
}

//export medgeminiGoGenProgress
func medgeminiGoGenProgress(user unsafe.Pointer, p *C.mg_progress) C.int32_t {
	s, ok := cgo.Handle(uintptr(user)).Value().(*callState)
	if !ok || s.onProgress == nil || p == nil {
		return 1
	}
	return s.progress(p)
}

//export medgeminiGoProgress
func medgeminiGoProgress(user unsafe.Pointer, name *C.char, dtype C.int32_t, index, count C.uint64_t, rms, rel C.double) C.int32_t {
	s, ok := cgo.Handle(uintptr(user)).Value().(*progressState)
	if !ok {
		return 1
	}
	return s.progress(name, dtype, index, count, rms, rel)
}

//export medgeminiGoPRSProgress
func medgeminiGoPRSProgress(user unsafe.Pointer, done, total C.uint64_t) C.int32_t {
	s, ok := cgo.Handle(uintptr(user)).Value().(*prsProgressState)
	if !ok {
		return 1
	}
	return s.progress(uint64(done), uint64(total))
}
