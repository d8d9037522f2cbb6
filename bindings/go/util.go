package medgemini

/*
#include <stdlib.h>
*/
import "C"

import (
	"sync"
	"unsafe"
)

// life guards a C handle against use after Close: every call holds a use
// for as long as it runs, and Close waits until no use is left before it
// frees the handle. A call that starts after Close gets ErrClosed.
type life struct {
	mu     sync.Mutex
	cond   *sync.Cond
	active int
	closed bool
}

func (l *life) acquire() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.active++
	return nil
}

func (l *life) release() {
	l.mu.Lock()
	l.active--
	if l.active == 0 && l.cond != nil {
		l.cond.Broadcast()
	}
	l.mu.Unlock()
}

// close marks the handle closed and waits for the uses in progress. It
// returns false when the handle was closed already.
func (l *life) close() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closed = true
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	for l.active > 0 {
		l.cond.Wait()
	}
	return true
}

// cstrs is a set of C strings freed together.
type cstrs []unsafe.Pointer

func (c *cstrs) str(s string) *C.char {
	p := C.CString(s)
	*c = append(*c, unsafe.Pointer(p))
	return p
}

// optStr is NULL for nil, else a C copy of *s.
func (c *cstrs) optStr(s *string) *C.char {
	if s == nil {
		return nil
	}
	return c.str(*s)
}

// array returns a C-allocated array of C strings (NULL for no strings).
func (c *cstrs) array(ss []string) **C.char {
	if len(ss) == 0 {
		return nil
	}
	n := C.size_t(len(ss)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
	arr := C.malloc(n)
	*c = append(*c, arr)
	view := unsafe.Slice((**C.char)(arr), len(ss))
	for i, s := range ss {
		view[i] = c.str(s)
	}
	return (**C.char)(arr)
}

func (c *cstrs) free() {
	for _, p := range *c {
		C.free(p)
	}
	*c = nil
}
