package medgemini

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	v := VersionNumber()
	if v != HeaderVersionNumber {
		t.Fatalf("library version %d, header %d", v, HeaderVersionNumber)
	}
	want := fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
	if Version() != want {
		t.Fatalf("Version() = %q, want %q", Version(), want)
	}
	if !strings.Contains(BuildInfo(), "version="+want) {
		t.Fatalf("BuildInfo() = %q", BuildInfo())
	}
	if l := SIMDLevel(); l < SIMDScalar || l > SIMDAVX512 {
		t.Fatalf("SIMDLevel() = %d", l)
	}
	if DTypeQ8_0.String() != "q8_0" || DTypeF32.String() != "f32" || DType(99).String() != "dtype(99)" {
		t.Fatal("dtype names")
	}
	if StatusInterrupted.String() == "" || Status(12345).String() != "unknown status" {
		t.Fatalf("status strings: %q %q", StatusInterrupted.String(), Status(12345).String())
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadModel(filepath.Join(dir, "missing.mgm"))
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusIO || !errors.Is(err, ErrIO) {
		t.Fatalf("missing file: %v", err)
	}
	if !strings.Contains(e.Message, "missing.mgm") {
		t.Fatalf("message does not name the file: %q", e.Message)
	}
	if errors.Is(err, ErrModelFormat) {
		t.Fatal("IO error matches ErrModelFormat")
	}
	bad := filepath.Join(dir, "bad.mgm")
	os.WriteFile(bad, []byte("this is not a model file at all, just some text bytes......."), 0o644)
	_, err = LoadModel(bad)
	if !errors.Is(err, ErrModelFormat) {
		t.Fatalf("garbage file: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "medgemini: ") {
		t.Fatalf("error text %q", err.Error())
	}
	// a limit below the model's size
	_, err = LoadModel(tinyModel(t), WithMaxMemory(1000))
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("max memory: %v", err)
	}
}

func TestModelInfoAndMetadata(t *testing.T) {
	m, err := LoadModel(tinyModel(t), WithVerifyChecksums(), WithNoMmap())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mapped, err := LoadModel(tinyModel(t), WithMmap())
	if err != nil {
		t.Fatal(err)
	}
	mapped.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "random-tiny-q8_0" || info.Architecture != "gemma3" || !info.HasVision || !info.HasText ||
		info.VocabSize != 512 || info.ContextLength != 512 || info.FormatVersion != 1 {
		t.Fatalf("info %+v", info)
	}
	meta, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(meta)) != info.MetadataKeys {
		t.Fatalf("%d metadata entries, info says %d", len(meta), info.MetadataKeys)
	}
	types := map[string]MetaEntry{}
	for _, e := range meta {
		types[e.Key] = e
	}
	if types["general.name"].Type != MetaString || types["text.vocab_size"].Type != MetaInt {
		t.Fatalf("entry types: %+v %+v", types["general.name"], types["text.vocab_size"])
	}
	if v, err := m.MetaInt("text.vocab_size"); err != nil || v != 512 {
		t.Fatalf("MetaInt = %d, %v", v, err)
	}
	if v, err := m.MetaFloat("text.rms_norm_eps"); err != nil || math.Abs(v-1e-6) > 1e-12 {
		t.Fatalf("MetaFloat = %g, %v", v, err)
	}
	if v, err := m.MetaString("prompt.system_default"); err != nil || v != "You are an expert radiologist." {
		t.Fatalf("MetaString = %q, %v", v, err)
	}
	if _, err := m.MetaString("no.such.key"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := m.MetaInt("general.name"); !errors.Is(err, ErrType) {
		t.Fatalf("wrong type: %v", err)
	}
	// an array: the tokenizer's tokens, checked against the tokenizer
	arr, ok := types["tokenizer.tokens"]
	if !ok || arr.Type != MetaArray || arr.ElemType != MetaString || arr.Len != 512 {
		t.Fatalf("tokenizer.tokens entry %+v", arr)
	}
	tok, err := m.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 2, 300, 511} {
		s, err := m.MetaStringAt("tokenizer.tokens", i)
		p, _ := tok.Piece(int32(i))
		if err != nil || s != p {
			t.Fatalf("token %d: %q (%v) vs piece %q", i, s, err, p)
		}
	}
	if _, err := m.MetaStringAt("tokenizer.tokens", 512); !errors.Is(err, ErrNotFound) {
		t.Fatalf("past the end: %v", err)
	}
	for _, e := range meta {
		if e.Type == MetaArray && e.ElemType == MetaInt && e.Len > 0 {
			if _, err := m.MetaIntAt(e.Key, 0); err != nil {
				t.Fatalf("%s[0]: %v", e.Key, err)
			}
		}
		if e.Type == MetaArray && e.ElemType == MetaFloat && e.Len > 0 {
			if _, err := m.MetaFloatAt(e.Key, 0); err != nil {
				t.Fatalf("%s[0]: %v", e.Key, err)
			}
		}
	}
	tensors, err := m.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(tensors)) != info.Tensors || len(tensors) == 0 {
		t.Fatalf("%d tensors, info says %d", len(tensors), info.Tensors)
	}
	var total, params uint64
	for _, ti := range tensors {
		total += ti.Bytes
		params += ti.Elems
		prod := uint64(1)
		for _, d := range ti.Dims {
			prod *= d
		}
		if prod != ti.Elems {
			t.Fatalf("%s: dims %v, %d elems", ti.Name, ti.Dims, ti.Elems)
		}
	}
	if total != info.Bytes || params != info.Params {
		t.Fatalf("tensor bytes %d params %d; info %d %d", total, params, info.Bytes, info.Params)
	}
	first := tensors[0]
	byName, err := m.Tensor(first.Name)
	if err != nil || byName.FileOffset != first.FileOffset || byName.CRC32C != first.CRC32C {
		t.Fatalf("Tensor(%q) = %+v, %v", first.Name, byName, err)
	}
	data, err := m.TensorData(first.Name)
	if err != nil || uint64(len(data)) != first.Bytes {
		t.Fatalf("TensorData: %d bytes, %v", len(data), err)
	}
	if _, err := m.Tensor("no.such.tensor"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing tensor: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Info(); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrMisuse) {
		t.Fatalf("after Close: %v", err)
	}
	m.Close() // twice is harmless
}

func TestWriterRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.mgm")
	w, err := CreateWriter(path, false)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.SetString("general.name", "go-writer"))
	must(w.SetInt("test.int", -42))
	must(w.SetFloat("test.float", 2.5))
	must(w.SetInts("test.ints", []int64{1, -2, 3}))
	must(w.SetFloats("test.floats", []float64{0.5, -1.5}))
	must(w.SetStrings("test.strings", []string{"a", "bc", ""}))
	if err := w.SetInt("test.int", 1); !errors.Is(err, ErrInvalidArg) || !strings.Contains(err.Error(), "test.int") {
		t.Fatalf("duplicate key: %v", err)
	}
	must(w.AddTensor("t.f32", DTypeF32, []uint64{3, 2}, false))
	must(w.AddTensor("t.raw", DTypeF32, []uint64{2}, true))
	vals := []float32{1, 2, 3, -4, 5.5, 6}
	must(w.WriteTensorF32("t.f32", vals))
	raw := make([]byte, 8)
	binary.LittleEndian.PutUint32(raw, math.Float32bits(7))
	binary.LittleEndian.PutUint32(raw[4:], math.Float32bits(-8))
	if err := w.WriteTensor("t.raw", raw[:5]); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("wrong size: %v", err)
	}
	if err := w.WriteTensor("t.none", raw); !errors.Is(err, ErrNotFound) {
		t.Fatalf("undeclared tensor: %v", err)
	}
	must(w.WriteTensor("t.raw", raw))
	must(w.Finish())
	must(w.Close())
	if err := w.Finish(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}

	m, err := LoadModel(path, WithVerifyChecksums())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if v, _ := m.MetaInt("test.int"); v != -42 {
		t.Fatalf("test.int = %d", v)
	}
	if v, _ := m.MetaFloat("test.float"); v != 2.5 {
		t.Fatalf("test.float = %g", v)
	}
	if v, _ := m.MetaIntAt("test.ints", 1); v != -2 {
		t.Fatalf("test.ints[1] = %d", v)
	}
	if v, _ := m.MetaFloatAt("test.floats", 1); v != -1.5 {
		t.Fatalf("test.floats[1] = %g", v)
	}
	if v, _ := m.MetaStringAt("test.strings", 1); v != "bc" {
		t.Fatalf("test.strings[1] = %q", v)
	}
	info, _ := m.Info()
	if info.Name != "go-writer" || info.HasText || info.Tensors != 2 || info.Params != 8 {
		t.Fatalf("info %+v", info)
	}
	data, err := m.TensorData("t.f32")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])); got != v {
			t.Fatalf("t.f32[%d] = %g, want %g", i, got, v)
		}
	}
	ti, _ := m.Tensor("t.f32")
	if len(ti.Dims) != 2 || ti.Dims[0] != 3 || ti.Dims[1] != 2 || ti.DType != DTypeF32 {
		t.Fatalf("t.f32 info %+v", ti)
	}
	if d, _ := m.TensorData("t.raw"); string(d) != string(raw) {
		t.Fatal("t.raw bytes differ")
	}
	if _, err := m.Tokenizer(); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("tokenizer of a model without one: %v", err)
	}
	// an unfinished writer removes its file
	p2 := filepath.Join(t.TempDir(), "unfinished.mgm")
	w2, err := CreateWriter(p2, true)
	must(err)
	must(w2.AddTensor("x", DTypeF32, []uint64{1}, false))
	if err := w2.Finish(); !errors.Is(err, ErrMisuse) {
		t.Fatalf("finish with data missing: %v", err)
	}
	w2.Close()
	if _, err := os.Stat(p2); !os.IsNotExist(err) {
		t.Fatalf("unfinished file left: %v", err)
	}
}

// q4_0 decoder matrices may be rearranged at load (AVX512-VNNI): the same
// text either way; WithFileLayout keeps the stored bytes, which a default
// load then either has too or refuses to hand out.
func TestFileLayout(t *testing.T) {
	p := tinyModel(t, "--no-vision", "--dtype", "q4_0")
	kept, err := LoadModel(p, WithFileLayout())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	mapped, err := LoadModel(p, WithMmap())
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	def, err := LoadModel(p)
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	const name = "text.blk.0.ffn_up"
	stored, err := mapped.TensorData(name)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kept.TensorData(name); err != nil || string(got) != string(stored) {
		t.Fatalf("file layout: %d bytes, %v", len(got), err)
	}
	if got, err := def.TensorData(name); err != nil {
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "WithFileLayout") {
			t.Fatalf("default load: %v", err)
		}
	} else if string(got) != string(stored) {
		t.Fatal("default load: bytes differ from the file's")
	}
	want, err := kept.Generate(context.Background(), "Describe the film.", WithMaxTokens(12))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := def.Generate(context.Background(), "Describe the film.", WithMaxTokens(12)); err != nil || got != want {
		t.Fatalf("default load generates %q (%v), file layout %q", got, err, want)
	}
}
