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

// Writer writes an .mgm file: set metadata and declare every tensor first,
// then write their data in any order, then Finish. Used by one goroutine at
// a time. Close without Finish removes the unfinished file.
type Writer struct {
	ptr  *C.mg_writer
	life life
}

// CreateWriter starts an .mgm file; compress stores tensors zstd-compressed.
func CreateWriter(path string, compress bool) (*Writer, error) {
	var flags C.uint32_t
	if compress {
		flags = C.MG_WRITE_COMPRESS
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	eb := newErrbuf()
	defer eb.free()
	var p *C.mg_writer
	st := C.mg_writer_open(&p, cpath, flags, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	w := &Writer{ptr: p}
	runtime.SetFinalizer(w, (*Writer).Close)
	return w, nil
}

// Close frees the writer (removing the file unless Finish succeeded).
func (w *Writer) Close() error {
	if w == nil || !w.life.close() {
		return nil
	}
	runtime.SetFinalizer(w, nil)
	C.mg_writer_free(w.ptr)
	w.ptr = nil
	return nil
}

func (w *Writer) do(key string, f func(ckey *C.char) C.mg_status) error {
	if err := w.life.acquire(); err != nil {
		return err
	}
	defer w.life.release()
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	st := f(ckey)
	if st == C.MG_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.mg_writer_errmsg(w.ptr))}
}

// SetInt sets an integer metadata value.
func (w *Writer) SetInt(key string, v int64) error {
	cv := C.int64_t(v)
	return w.do(key, func(ckey *C.char) C.mg_status { return C.mg_writer_set_int(w.ptr, ckey, cv) })
}

// SetFloat sets a float metadata value.
func (w *Writer) SetFloat(key string, v float64) error {
	cv := C.double(v)
	return w.do(key, func(ckey *C.char) C.mg_status { return C.mg_writer_set_float(w.ptr, ckey, cv) })
}

// SetString sets a string metadata value.
func (w *Writer) SetString(key, v string) error {
	cv := C.CString(v)
	defer C.free(unsafe.Pointer(cv))
	return w.do(key, func(ckey *C.char) C.mg_status { return C.mg_writer_set_string(w.ptr, ckey, cv) })
}

// SetInts sets an integer array.
func (w *Writer) SetInts(key string, v []int64) error {
	var p *C.int64_t
	if len(v) > 0 {
		p = (*C.int64_t)(unsafe.Pointer(&v[0]))
	}
	n := C.uint64_t(len(v))
	err := w.do(key, func(ckey *C.char) C.mg_status { return C.mg_writer_set_int_array(w.ptr, ckey, p, n) })
	runtime.KeepAlive(v)
	return err
}

// SetFloats sets a float array.
func (w *Writer) SetFloats(key string, v []float64) error {
	var p *C.double
	if len(v) > 0 {
		p = (*C.double)(unsafe.Pointer(&v[0]))
	}
	n := C.uint64_t(len(v))
	err := w.do(key, func(ckey *C.char) C.mg_status { return C.mg_writer_set_float_array(w.ptr, ckey, p, n) })
	runtime.KeepAlive(v)
	return err
}

// SetStrings sets a string array.
func (w *Writer) SetStrings(key string, v []string) error {
	var strs cstrs
	defer strs.free()
	p := strs.array(v)
	n := C.uint64_t(len(v))
	return w.do(key, func(ckey *C.char) C.mg_status { return C.mg_writer_set_string_array(w.ptr, ckey, p, n) })
}

// AddTensor declares a tensor (dims[0] varies fastest); compress stores this
// one tensor compressed.
func (w *Writer) AddTensor(name string, dtype DType, dims []uint64, compress bool) error {
	var flags C.uint32_t
	if compress {
		flags = C.MG_WRITE_COMPRESS
	}
	var pd *C.uint64_t
	if len(dims) > 0 {
		pd = (*C.uint64_t)(unsafe.Pointer(&dims[0]))
	}
	nd, dt := C.uint32_t(len(dims)), C.int32_t(dtype)
	err := w.do(name, func(cname *C.char) C.mg_status {
		return C.mg_writer_add_tensor(w.ptr, cname, dt, nd, pd, flags)
	})
	runtime.KeepAlive(dims)
	return err
}

// WriteTensor writes a declared tensor's bytes, already in its layout.
func (w *Writer) WriteTensor(name string, data []byte) error {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	n := C.uint64_t(len(data))
	err := w.do(name, func(cname *C.char) C.mg_status { return C.mg_writer_write_tensor(w.ptr, cname, p, n) })
	runtime.KeepAlive(data)
	return err
}

// WriteTensorF32 converts float32 values to the tensor's type and writes
// them.
func (w *Writer) WriteTensorF32(name string, data []float32) error {
	var p *C.float
	if len(data) > 0 {
		p = (*C.float)(unsafe.Pointer(&data[0]))
	}
	n := C.uint64_t(len(data))
	err := w.do(name, func(cname *C.char) C.mg_status { return C.mg_writer_write_tensor_f32(w.ptr, cname, p, n) })
	runtime.KeepAlive(data)
	return err
}

// Finish completes the file. The writer must still be closed.
func (w *Writer) Finish() error {
	if err := w.life.acquire(); err != nil {
		return err
	}
	defer w.life.release()
	st := C.mg_writer_finish(w.ptr)
	if st == C.MG_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.mg_writer_errmsg(w.ptr))}
}
