package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Model is a loaded .mgm model. It is safe for concurrent use by any number
// of goroutines: each call runs on its own inference context, taken from a
// small pool (or created) and returned when the call ends. Close releases
// the model; it waits for calls in progress. A finalizer closes a Model that
// is garbage collected without Close, but call Close: a model holds large
// mappings the Go collector does not see.
type Model struct {
	ptr  *C.mg_model
	life life

	mu       sync.Mutex
	idle     []*C.mg_context
	poolSize int
	sessions int  // open Sessions; the C model is freed when the last one closes
	closed   bool // Close was called
	ctxOpts  contextOptions
	batch    *C.mg_batch // WithBatching; its contexts join it
}

type contextOptions struct {
	threads uint32
	nCtx    uint32
	seed    uint64
	flags   uint32
}

type modelOptions struct {
	flags     uint32
	maxMemory uint64
	ctx       contextOptions
	poolSize  int
	batchRows int // 0: no batching
	batchWait time.Duration
}

// ModelOption configures LoadModel.
type ModelOption func(*modelOptions)

// WithThreads sets the thread count of the library's own kernels for every
// context of the model (0: one per online CPU, the default).
func WithThreads(n int) ModelOption {
	return func(o *modelOptions) { o.ctx.threads = uint32(n) }
}

// WithContextSize sets the token capacity of each context (0: the model's
// context length capped at 8192, the default).
func WithContextSize(n int) ModelOption {
	return func(o *modelOptions) { o.ctx.nCtx = uint32(n) }
}

// WithKVBF16 keeps the keys and values of every context's KV cache as bf16:
// half the cache's memory, arithmetic still f32.
func WithKVBF16() ModelOption {
	return func(o *modelOptions) { o.ctx.flags |= C.MG_CONTEXT_KV_BF16 }
}

// WithNoReuse turns off reuse across calls in every context of the model:
// each prompt is read from its start and each image encoded anew (no prefix
// reuse, no encoder-output cache). The text is the same either way; reuse
// saves time when calls share a prompt's start or images, and costs each
// pooled context up to its token capacity x the model's width of floats
// for the cache. Sessions of the model inherit it.
func WithNoReuse() ModelOption {
	return func(o *modelOptions) { o.ctx.flags |= C.MG_CONTEXT_NO_REUSE }
}

// WithSeed sets the seed of each new context's sampler RNG.
func WithSeed(seed uint64) ModelOption {
	return func(o *modelOptions) { o.ctx.seed = seed }
}

// WithVerifyChecksums checks every tensor's CRC-32C while loading.
func WithVerifyChecksums() ModelOption {
	return func(o *modelOptions) { o.flags |= C.MG_LOAD_VERIFY_CHECKSUMS }
}

// WithNoMmap reads the file into memory: the library's default, kept for
// callers that name it; it wins over WithMmap.
func WithNoMmap() ModelOption {
	return func(o *modelOptions) { o.flags |= C.MG_LOAD_NO_MMAP }
}

// WithMmap maps the file read-only instead of reading it: pages are shared
// between processes, decoding is slower (4 KiB pages).
func WithMmap() ModelOption {
	return func(o *modelOptions) { o.flags |= C.MG_LOAD_MMAP }
}

// WithFileLayout keeps every tensor's bytes as stored. Without it, on CPUs
// with AVX512-VNNI, the text decoder's q4_0 matrices are rearranged at load
// for faster decoding and TensorData refuses them.
func WithFileLayout() ModelOption {
	return func(o *modelOptions) { o.flags |= C.MG_LOAD_FILE_LAYOUT }
}

// WithMaxMemory refuses files whose tensors need more than n bytes.
func WithMaxMemory(n uint64) ModelOption {
	return func(o *modelOptions) { o.maxMemory = n }
}

// WithPoolSize sets how many idle contexts the model keeps for reuse
// (default: GOMAXPROCS). Calls beyond it still run, on fresh contexts.
func WithPoolSize(n int) ModelOption {
	return func(o *modelOptions) { o.poolSize = n }
}

// WithBatching runs the decode steps of calls made at the same time (from
// several goroutines: Report, VQA, Generate, Sessions) together, up to
// maxRows of them in one step (1..8; 0 means 8): each step reads the
// model's weights once for all its calls, so a server's throughput grows
// with concurrent requests. Every call's text is exactly what it would be
// alone. The steps run on a thread pool of the model's thread count
// (WithThreads).
func WithBatching(maxRows int) ModelOption {
	return func(o *modelOptions) {
		o.batchRows = maxRows
		if maxRows == 0 {
			o.batchRows = 8
		}
	}
}

// WithBatchWait sets how long a decode step waits for the other calls that
// are generating to join it (default 2 ms; at most 1 s). Only with
// WithBatching.
func WithBatchWait(d time.Duration) ModelOption {
	return func(o *modelOptions) { o.batchWait = d }
}

// LoadModel loads an .mgm model file.
func LoadModel(path string, opts ...ModelOption) (*Model, error) {
	o := modelOptions{poolSize: runtime.GOMAXPROCS(0)}
	for _, f := range opts {
		f(&o)
	}
	var params C.mg_model_params
	C.mg_model_params_init(&params)
	params.flags = C.uint32_t(o.flags)
	params.max_memory = C.uint64_t(o.maxMemory)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_model
	st := C.mg_model_load(&ptr, cpath, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	m := &Model{ptr: ptr, poolSize: o.poolSize, ctxOpts: o.ctx}
	if o.batchRows != 0 {
		if o.batchRows < 0 || o.batchRows > 8 || o.batchWait < 0 || o.batchWait > time.Second {
			C.mg_model_free(ptr)
			return nil, newError(C.MG_E_INVALID_ARG, "WithBatching: 1..8 rows, a wait of at most 1 s")
		}
		var bp C.mg_batch_params
		C.mg_batch_params_init(&bp)
		bp.n_threads = C.uint32_t(o.ctx.threads)
		bp.max_rows = C.uint32_t(o.batchRows)
		bp.wait_us = C.uint32_t(o.batchWait / time.Microsecond)
		if st := C.mg_batch_new(&m.batch, ptr, &bp); st != C.MG_OK {
			msg := C.GoString(C.mg_last_error())
			C.mg_model_free(ptr)
			return nil, newError(st, "cannot make the decoding batch: "+msg)
		}
	}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// BatchStats is what a model's decoding batch (WithBatching) has done.
type BatchStats struct {
	Steps  uint64        // decode steps run
	Rows   uint64        // tokens decoded by them (Rows/Steps: the mean batch)
	ByRows [8]uint64     // steps of 1, 2, ..., 8 rows
	Busy   time.Duration // time spent in steps
}

// BatchStats returns the decoding batch's counters; an error without
// WithBatching or after Close.
func (m *Model) BatchStats() (BatchStats, error) {
	if err := m.life.acquire(); err != nil {
		return BatchStats{}, err
	}
	defer m.life.release()
	if m.batch == nil {
		return BatchStats{}, newError(C.MG_E_INVALID_ARG, "the model was loaded without WithBatching")
	}
	var cs C.mg_batch_stats
	if st := C.mg_batch_get_stats(m.batch, &cs); st != C.MG_OK {
		return BatchStats{}, newError(st, "mg_batch_get_stats failed")
	}
	out := BatchStats{Steps: uint64(cs.steps), Rows: uint64(cs.rows),
		Busy: time.Duration(float64(cs.busy_seconds) * float64(time.Second))}
	for i := range out.ByRows {
		out.ByRows[i] = uint64(cs.by_rows[i])
	}
	return out, nil
}

// Close frees the model and its pooled contexts. It waits for calls in
// progress to finish (cancel their contexts to hurry them). Open Sessions
// keep the model usable through them until they are closed. Closing twice
// is harmless.
func (m *Model) Close() error {
	if m == nil || !m.life.close() {
		return nil
	}
	runtime.SetFinalizer(m, nil)
	m.mu.Lock()
	idle := m.idle
	m.idle = nil
	m.closed = true
	last := m.sessions == 0
	m.mu.Unlock()
	for _, c := range idle {
		C.mg_context_free(c)
	}
	if m.batch != nil {
		C.mg_batch_free(m.batch) // lives on while sessions' contexts use it
	}
	if last {
		C.mg_model_free(m.ptr)
	}
	return nil
}

// sessionClosed frees the C model when it was the last user after Close.
func (m *Model) sessionClosed() {
	m.mu.Lock()
	m.sessions--
	last := m.closed && m.sessions == 0
	m.mu.Unlock()
	if last {
		C.mg_model_free(m.ptr)
	}
}

// newContext creates a context with the model's context options.
func (m *Model) newContext(o contextOptions) (*C.mg_context, error) {
	var params C.mg_context_params
	C.mg_context_params_init(&params)
	params.n_threads = C.uint32_t(o.threads)
	params.n_ctx = C.uint32_t(o.nCtx)
	params.seed = C.uint64_t(o.seed)
	params.flags = C.uint32_t(o.flags)
	params.batch = m.batch
	var c *C.mg_context
	st := C.mg_context_new(&c, m.ptr, &params)
	if st != C.MG_OK {
		return nil, newError(st, "cannot create a context: "+C.GoString(C.mg_last_error()))
	}
	return c, nil
}

// getContext takes a pooled context or makes one. The caller holds a use
// of m.life.
func (m *Model) getContext() (*C.mg_context, error) {
	m.mu.Lock()
	if n := len(m.idle); n > 0 {
		c := m.idle[n-1]
		m.idle = m.idle[:n-1]
		m.mu.Unlock()
		return c, nil
	}
	m.mu.Unlock()
	return m.newContext(m.ctxOpts)
}

func (m *Model) putContext(c *C.mg_context) {
	m.mu.Lock()
	if len(m.idle) < m.poolSize {
		m.idle = append(m.idle, c)
		c = nil
	}
	m.mu.Unlock()
	if c != nil {
		C.mg_context_free(c)
	}
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	FormatVersion uint32
	Tensors       uint64
	Params        uint64
	Bytes         uint64
	MetadataKeys  uint64
	Name          string
	Architecture  string
	HasVision     bool
	HasText       bool
	VocabSize     uint32
	ContextLength uint32
}

// Info returns the model's summary.
func (m *Model) Info() (ModelInfo, error) {
	if err := m.life.acquire(); err != nil {
		return ModelInfo{}, err
	}
	defer m.life.release()
	var ci C.mg_model_info
	ci.struct_size = C.uint32_t(C.sizeof_mg_model_info)
	st := C.mg_model_info_get(&ci, m.ptr)
	if st != C.MG_OK {
		return ModelInfo{}, newError(st, "mg_model_info_get failed")
	}
	return ModelInfo{
		FormatVersion: uint32(ci.format_version),
		Tensors:       uint64(ci.n_tensors),
		Params:        uint64(ci.n_params),
		Bytes:         uint64(ci.n_bytes),
		MetadataKeys:  uint64(ci.n_metadata),
		Name:          C.GoString(ci.name),
		Architecture:  C.GoString(ci.architecture),
		HasVision:     ci.has_vision != 0,
		HasText:       ci.has_text != 0,
		VocabSize:     uint32(ci.n_vocab),
		ContextLength: uint32(ci.n_ctx_train),
	}, nil
}

// MetaType is the type of a metadata value.
type MetaType int32

// Metadata value types.
const (
	MetaInt    MetaType = C.MG_META_INT
	MetaFloat  MetaType = C.MG_META_FLOAT
	MetaString MetaType = C.MG_META_STRING
	MetaArray  MetaType = C.MG_META_ARRAY
)

// MetaEntry is one metadata key; ElemType and Len describe arrays.
type MetaEntry struct {
	Key      string
	Type     MetaType
	ElemType MetaType
	Len      uint64
}

// Metadata lists the model's metadata keys in file order.
func (m *Model) Metadata() ([]MetaEntry, error) {
	if err := m.life.acquire(); err != nil {
		return nil, err
	}
	defer m.life.release()
	n := uint64(C.mg_model_meta_count(m.ptr))
	out := make([]MetaEntry, 0, n)
	for i := uint64(0); i < n; i++ {
		var key *C.char
		var typ, elem C.int32_t
		var ne C.uint64_t
		ci := C.uint64_t(i)
		st := C.mg_model_meta_entry(&key, &typ, &elem, &ne, m.ptr, ci)
		if st != C.MG_OK {
			return nil, newError(st, "mg_model_meta_entry failed")
		}
		out = append(out, MetaEntry{Key: C.GoString(key), Type: MetaType(typ), ElemType: MetaType(elem), Len: uint64(ne)})
	}
	return out, nil
}

func (m *Model) metaKey(key string, what string, f func(ckey *C.char) C.mg_status) error {
	if err := m.life.acquire(); err != nil {
		return err
	}
	defer m.life.release()
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	st := f(ckey)
	if st != C.MG_OK {
		return newError(st, what+" "+key)
	}
	return nil
}

// MetaInt returns an integer metadata value.
func (m *Model) MetaInt(key string) (int64, error) {
	var v C.int64_t
	err := m.metaKey(key, "metadata int", func(ckey *C.char) C.mg_status {
		return C.mg_model_meta_int(&v, m.ptr, ckey)
	})
	return int64(v), err
}

// MetaFloat returns a float (or integer) metadata value.
func (m *Model) MetaFloat(key string) (float64, error) {
	var v C.double
	err := m.metaKey(key, "metadata float", func(ckey *C.char) C.mg_status {
		return C.mg_model_meta_float(&v, m.ptr, ckey)
	})
	return float64(v), err
}

// MetaString returns a string metadata value.
func (m *Model) MetaString(key string) (string, error) {
	var v *C.char
	err := m.metaKey(key, "metadata string", func(ckey *C.char) C.mg_status {
		return C.mg_model_meta_string(&v, m.ptr, ckey)
	})
	if err != nil {
		return "", err
	}
	return C.GoString(v), nil
}

// MetaIntAt returns element i of an integer array.
func (m *Model) MetaIntAt(key string, i uint64) (int64, error) {
	var v C.int64_t
	ci := C.uint64_t(i)
	err := m.metaKey(key, "metadata int array", func(ckey *C.char) C.mg_status {
		return C.mg_model_meta_array_int(&v, m.ptr, ckey, ci)
	})
	return int64(v), err
}

// MetaFloatAt returns element i of a float array.
func (m *Model) MetaFloatAt(key string, i uint64) (float64, error) {
	var v C.double
	ci := C.uint64_t(i)
	err := m.metaKey(key, "metadata float array", func(ckey *C.char) C.mg_status {
		return C.mg_model_meta_array_float(&v, m.ptr, ckey, ci)
	})
	return float64(v), err
}

// MetaStringAt returns element i of a string array.
func (m *Model) MetaStringAt(key string, i uint64) (string, error) {
	var v *C.char
	ci := C.uint64_t(i)
	err := m.metaKey(key, "metadata string array", func(ckey *C.char) C.mg_status {
		return C.mg_model_meta_array_string(&v, m.ptr, ckey, ci)
	})
	if err != nil {
		return "", err
	}
	return C.GoString(v), nil
}

// TensorInfo describes one tensor of the model. Data is not copied: use
// Model.TensorData for the bytes.
type TensorInfo struct {
	Name        string
	DType       DType
	Dims        []uint64
	Elems       uint64
	Bytes       uint64
	Compressed  bool
	FileOffset  uint64
	StoredBytes uint64
	CRC32C      uint32
}

func tensorInfo(ti *C.mg_tensor_info) TensorInfo {
	n := int(ti.n_dims)
	if n > C.MG_TENSOR_MAX_DIMS {
		n = C.MG_TENSOR_MAX_DIMS
	}
	dims := make([]uint64, n)
	for i := 0; i < n; i++ {
		dims[i] = uint64(ti.dims[i])
	}
	return TensorInfo{
		Name: C.GoString(ti.name), DType: DType(ti.dtype), Dims: dims,
		Elems: uint64(ti.n_elems), Bytes: uint64(ti.n_bytes), Compressed: ti.compressed != 0,
		FileOffset: uint64(ti.file_offset), StoredBytes: uint64(ti.stored_bytes),
		CRC32C: uint32(ti.crc32c),
	}
}

// Tensors lists the model's tensors in file order.
func (m *Model) Tensors() ([]TensorInfo, error) {
	if err := m.life.acquire(); err != nil {
		return nil, err
	}
	defer m.life.release()
	n := uint64(C.mg_model_tensor_count(m.ptr))
	out := make([]TensorInfo, 0, n)
	for i := uint64(0); i < n; i++ {
		var ti C.mg_tensor_info
		ti.struct_size = C.uint32_t(C.sizeof_mg_tensor_info)
		ci := C.uint64_t(i)
		st := C.mg_model_tensor_at(&ti, m.ptr, ci)
		if st != C.MG_OK {
			return nil, newError(st, "mg_model_tensor_at failed")
		}
		out = append(out, tensorInfo(&ti))
	}
	return out, nil
}

// Tensor looks a tensor up by name.
func (m *Model) Tensor(name string) (TensorInfo, error) {
	var ti C.mg_tensor_info
	ti.struct_size = C.uint32_t(C.sizeof_mg_tensor_info)
	err := m.metaKey(name, "tensor", func(cname *C.char) C.mg_status {
		return C.mg_model_tensor_find(&ti, m.ptr, cname)
	})
	if err != nil {
		return TensorInfo{}, err
	}
	return tensorInfo(&ti), nil
}

// TensorData copies the (decompressed) bytes of a tensor.
func (m *Model) TensorData(name string) ([]byte, error) {
	if err := m.life.acquire(); err != nil {
		return nil, err
	}
	defer m.life.release()
	var ti C.mg_tensor_info
	ti.struct_size = C.uint32_t(C.sizeof_mg_tensor_info)
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	st := C.mg_model_tensor_find(&ti, m.ptr, cname)
	if st != C.MG_OK {
		return nil, newError(st, "tensor "+name)
	}
	if ti.n_bytes > 0 && ti.data == nil {
		return nil, newError(C.MG_E_UNSUPPORTED, "tensor "+name+
			" was rearranged at load for decoding; load the model WithFileLayout to read its bytes")
	}
	out := make([]byte, int(ti.n_bytes))
	if len(out) > 0 {
		copy(out, unsafe.Slice((*byte)(ti.data), len(out)))
	}
	return out, nil
}
