package medgemini

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Converts the decoder's reference fixture (a small Hugging Face folder)
// with a progress callback, then loads and runs the result.
func TestConvert(t *testing.T) {
	src := filepath.Join(repoRoot(t), "tests", "reference", "fixtures", "gqa1_full")
	if _, err := os.Stat(filepath.Join(src, "config.json")); err != nil {
		t.Skip("reference fixture absent")
	}
	tok := writeTokJSON(t)
	out := filepath.Join(t.TempDir(), "conv.mgm")
	var seen []ConvertProgress
	err := Convert(context.Background(), src, out, ConvertDType(DTypeQ8_0), ConvertTokenizer(tok),
		ConvertNoChecksums(), ConvertOnProgress(func(p ConvertProgress) error {
			seen = append(seen, p)
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 || seen[len(seen)-1].Index != seen[0].Count-1 {
		t.Fatalf("progress %+v", seen)
	}
	q8 := 0
	for _, p := range seen {
		if p.DType == DTypeQ8_0 {
			q8++
			if p.RMSError <= 0 || p.RelError <= 0 || p.RelError > 0.05 {
				t.Fatalf("%s: q8_0 error %g (rel %g)", p.Name, p.RMSError, p.RelError)
			}
		}
	}
	if q8 == 0 {
		t.Fatal("no tensor stored as q8_0")
	}
	m, err := LoadModel(out, WithVerifyChecksums())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, _ := m.Info()
	if !info.HasText || info.HasVision || info.Tensors != seen[0].Count {
		t.Fatalf("converted model %+v, %d tensors reported", info, seen[0].Count)
	}
	if _, err := m.Generate(context.Background(), "the heart", WithMaxTokens(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.MetaString("general.source_sha256"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("checksums recorded despite ConvertNoChecksums: %v", err)
	}

	// stopping from the callback, and by cancelling the context
	stop := errors.New("stop here")
	out2 := filepath.Join(t.TempDir(), "stopped.mgm")
	err = Convert(context.Background(), src, out2, ConvertTokenizer(tok), ConvertCompress(),
		ConvertOnProgress(func(ConvertProgress) error { return stop }))
	if !errors.Is(err, stop) || !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stopped: %v", err)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Fatal("interrupted conversion left its output")
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = Convert(ctx, src, out2, ConvertTokenizer(tok), ConvertOnProgress(func(ConvertProgress) error {
		cancel()
		return nil
	}))
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	err = Convert(context.Background(), filepath.Join(t.TempDir(), "nothing"), out2)
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusIO || !strings.Contains(e.Message, "nothing") {
		t.Fatalf("missing source: %v", err)
	}
	if err := Convert(context.Background(), src, out2, ConvertMMProj("x.gguf")); err == nil {
		t.Fatal("mmproj with a folder source accepted")
	}
}

// ConvertPruneVocab and ConvertMeta: the pruned vocabulary, the metadata set,
// and the refusals.
func TestConvertPruneVocabAndMeta(t *testing.T) {
	src := filepath.Join(repoRoot(t), "tests", "reference", "fixtures", "gqa1_full")
	if _, err := os.Stat(filepath.Join(src, "config.json")); err != nil {
		t.Skip("reference fixture absent")
	}
	tok := writeTokJSON(t)
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus.txt")
	if err := os.WriteFile(corpus, []byte("the heart\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "pruned.mgm")
	err := Convert(context.Background(), src, out, ConvertTokenizer(tok), ConvertPruneVocab(corpus),
		ConvertMeta("general.name", "pruned demo"),
		ConvertMeta("prompt.report_instruction", "Describe the image."))
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// kept: 4 specials, 9 one-letter pieces, the space marker, "th"
	if n, err := m.MetaInt("text.vocab_size"); err != nil || n != 15 {
		t.Fatalf("text.vocab_size %d, %v", n, err)
	}
	for k, want := range map[string]string{"general.name": "pruned demo",
		"prompt.report_instruction": "Describe the image."} {
		if got, err := m.MetaString(k); err != nil || got != want {
			t.Fatalf("%s = %q (%v), want %q", k, got, err, want)
		}
	}
	x := filepath.Join(dir, "x.mgm")
	for _, opt := range []ConvertOption{ConvertMeta("text.vocab_size", "3"),
		ConvertMeta("general.a=b", "c")} {
		if err := Convert(context.Background(), src, x, opt); !errors.Is(err, ErrInvalidArg) {
			t.Fatalf("refused meta: %v", err)
		}
	}
	err = Convert(context.Background(), src, x, ConvertTokenizer(tok),
		ConvertPruneVocab(filepath.Join(dir, "none.txt")))
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusIO {
		t.Fatalf("missing corpus: %v", err)
	}
	if _, err := os.Stat(x); !os.IsNotExist(err) {
		t.Fatal("failed conversion left its output")
	}
}
