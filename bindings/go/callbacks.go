package medgemini

// The exported functions the C library calls back into. A file with
// //export may only declare things in its preamble, so the shims that
// install these pointers live in generate.go and convert.go.

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

//export medgeminiGoToken
func medgeminiGoToken(user unsafe.Pointer, piece *C.char, n C.size_t, token C.int32_t) C.int32_t {
	s, ok := cgo.Handle(uintptr(user)).Value().(*streamState)
	if !ok {
		return 1
	}
	return s.token(piece, n, token)
}

//export medgeminiGoProgress
func medgeminiGoProgress(user unsafe.Pointer, name *C.char, dtype C.int32_t, index, count C.uint64_t, rms, rel C.double) C.int32_t {
	s, ok := cgo.Handle(uintptr(user)).Value().(*progressState)
	if !ok {
		return 1
	}
	return s.progress(name, dtype, index, count, rms, rel)
}
