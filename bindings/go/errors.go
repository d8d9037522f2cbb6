package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Status is a library status code (mg_status). The values are pinned by the
// C library and never reused.
type Status int32

// Status codes, as in medgemini.h.
const (
	StatusOK             Status = C.MG_OK
	StatusInvalidArg     Status = C.MG_E_INVALID_ARG
	StatusMisuse         Status = C.MG_E_MISUSE
	StatusNoMem          Status = C.MG_E_NOMEM
	StatusIO             Status = C.MG_E_IO
	StatusModelFormat    Status = C.MG_E_MODEL_FORMAT
	StatusChecksum       Status = C.MG_E_CHECKSUM
	StatusUnsupported    Status = C.MG_E_UNSUPPORTED
	StatusImageFormat    Status = C.MG_E_IMAGE_FORMAT
	StatusLimit          Status = C.MG_E_LIMIT
	StatusInterrupted    Status = C.MG_E_INTERRUPTED
	StatusContextFull    Status = C.MG_E_CONTEXT_FULL
	StatusBufferTooSmall Status = C.MG_E_BUFFER_TOO_SMALL
	StatusNotFound       Status = C.MG_E_NOT_FOUND
	StatusType           Status = C.MG_E_TYPE
	StatusInternal       Status = C.MG_E_INTERNAL
	StatusDataFormat     Status = C.MG_E_DATA_FORMAT
)

// String returns the library's static description of the status.
func (s Status) String() string {
	cs := C.int32_t(s)
	return C.GoString(C.mg_status_str(cs))
}

// Error is a failed library call: the status code and the library's message
// (the per-handle message, or the text of the error buffer). Cause, when not
// nil, is what made the call stop: the context's error for a cancelled call,
// or the error a streaming callback returned.
type Error struct {
	Status  Status
	Message string
	Cause   error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Status.String()
	} else {
		msg = msg + " (" + e.Status.String() + ")"
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return "medgemini: " + msg
}

// Unwrap returns the cause, so that errors.Is(err, context.Canceled) holds
// for a cancelled call.
func (e *Error) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, ErrInterrupted) (and the other sentinels) match any
// *Error with the same status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Message == "" && t.Cause == nil {
		return t.Status == e.Status
	}
	return t == e
}

// Sentinel errors, one per status code, for errors.Is.
var (
	ErrInvalidArg     = &Error{Status: StatusInvalidArg}
	ErrMisuse         = &Error{Status: StatusMisuse}
	ErrNoMem          = &Error{Status: StatusNoMem}
	ErrIO             = &Error{Status: StatusIO}
	ErrModelFormat    = &Error{Status: StatusModelFormat}
	ErrChecksum       = &Error{Status: StatusChecksum}
	ErrUnsupported    = &Error{Status: StatusUnsupported}
	ErrImageFormat    = &Error{Status: StatusImageFormat}
	ErrLimit          = &Error{Status: StatusLimit}
	ErrInterrupted    = &Error{Status: StatusInterrupted}
	ErrContextFull    = &Error{Status: StatusContextFull}
	ErrBufferTooSmall = &Error{Status: StatusBufferTooSmall}
	ErrNotFound       = &Error{Status: StatusNotFound}
	ErrType           = &Error{Status: StatusType}
	ErrInternal       = &Error{Status: StatusInternal}
	ErrDataFormat     = &Error{Status: StatusDataFormat}
)

// ErrClosed is returned by calls on a Model, Image, Tokenizer, PRS, Writer
// or Session after Close. It matches ErrMisuse as well.
var ErrClosed = &Error{Status: StatusMisuse, Message: "handle is closed"}

func newError(st C.mg_status, msg string) error {
	if st == C.MG_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: msg}
}

// errbuf is a C buffer for the functions that report errors through
// (char *err, size_t errlen).
type errbuf struct {
	p *C.char
	n C.size_t
}

const errbufSize = 1024

func newErrbuf() errbuf {
	return errbuf{p: (*C.char)(C.calloc(errbufSize, 1)), n: errbufSize}
}

func (b errbuf) String() string { return C.GoString(b.p) }
func (b errbuf) free()          { C.free(unsafe.Pointer(b.p)) }

func (b errbuf) err(st C.mg_status) error {
	if st == C.MG_OK {
		return nil
	}
	return newError(st, b.String())
}

func argError(format string, a ...interface{}) error {
	return &Error{Status: StatusInvalidArg, Message: fmt.Sprintf(format, a...)}
}
