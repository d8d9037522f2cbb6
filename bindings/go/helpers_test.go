package medgemini

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the source tree holding include/medgemini.h (found upwards
// from the package directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "include", "medgemini.h")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no include/medgemini.h above %s", dir)
		}
	}
}

// cli is the medgemini command-line tool: $MG_CLI or bin/medgemini of the tree.
func cli(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MG_CLI"); p != "" {
		return p
	}
	p := filepath.Join(repoRoot(t), "bin", "medgemini")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("medgemini CLI not found (build the library with make, or set MG_CLI): %v", err)
	}
	return p
}

func runCLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(cli(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("medgemini %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

var (
	modelMu    sync.Mutex
	modelPaths = map[string]string{}
	modelDir   string
)

// tinyModel makes (once per test binary) a random-weight model with
// `medgemini mkmodel --shape tiny --dtype q8_0` plus extra arguments.
func tinyModel(t testing.TB, extra ...string) string {
	t.Helper()
	modelMu.Lock()
	defer modelMu.Unlock()
	key := strings.Join(extra, " ")
	if p, ok := modelPaths[key]; ok {
		return p
	}
	if modelDir == "" {
		d, err := os.MkdirTemp("", "medgemini-go-test")
		if err != nil {
			t.Fatal(err)
		}
		modelDir = d
	}
	p := filepath.Join(modelDir, fmt.Sprintf("tiny%d.mgm", len(modelPaths)))
	args := append([]string{"mkmodel", "--shape", "tiny", "--dtype", "q8_0", "-o", p}, extra...)
	runCLI(t, "", args...)
	modelPaths[key] = p
	return p
}

// slowArgs make a model whose 8000-token generation takes many seconds even
// on a fast CPU (8 layers of width 512, 8192 positions), so that
// cancellation tests cannot pass by the call ending on its own.
var slowArgs = []string{"--context", "8192", "--layers", "8", "--hidden", "512", "--ffn", "2048",
	"--heads", "8", "--kv-heads", "2", "--head-dim", "64"}

func TestMain(m *testing.M) {
	code := m.Run()
	if modelDir != "" {
		os.RemoveAll(modelDir)
	}
	os.Exit(code)
}

func cxrPath(t testing.TB) string {
	return filepath.Join(repoRoot(t), "examples", "data", "cxr_nih_00006585_008.png")
}

func loadTiny(t testing.TB, opts ...ModelOption) *Model {
	t.Helper()
	m, err := LoadModel(tinyModel(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func loadCXR(t testing.TB) *Image {
	t.Helper()
	img, err := LoadImage(cxrPath(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

// writeTokJSON writes a small BPE tokenizer.json (byte fallback, one
// normalizer, two merges).
func writeTokJSON(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tok.json")
	text := `{"added_tokens": [
 {"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
 {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true}],
 "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
 "pre_tokenizer": null,
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
  "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4, "a": 5, "e": 6,
            "h": 7, "r": 8, "t": 9, "s": 10, "i": 11, "n": 12, "o": 13, "th": 14, "\u2581th": 15},
  "merges": [["t", "h"], ["\u2581", "th"]]}}
`
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
