package medgemini

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Calls made at the same time on a model loaded WithBatching share decode
// steps, and each call's text is the one the same call gives on a model
// without batching.
func TestBatching(t *testing.T) {
	path := tinyModel(t, "--no-vision")
	opts := []ModelOption{WithThreads(2), WithNoReuse()}
	plain, err := LoadModel(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	batched, err := LoadModel(path, append(opts, WithBatching(4), WithBatchWait(200*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer batched.Close()

	const n = 4
	prompts := make([]string, n)
	gen := make([][]GenOption, n)
	want := make([]string, n)
	for i := range prompts {
		prompts[i] = fmt.Sprintf("request %d about the chest film", i)
		gen[i] = []GenOption{WithMaxTokens(24 + 6*i)}
		if i == 1 {
			gen[i] = append(gen[i], WithTemperature(0.8), WithGenSeed(9))
		}
		if want[i], err = plain.Generate(context.Background(), prompts[i], gen[i]...); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 2; round++ {
		got := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				got[i], errs[i] = batched.Generate(context.Background(), prompts[i], gen[i]...)
			}(i)
		}
		wg.Wait()
		for i := 0; i < n; i++ {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if got[i] != want[i] {
				t.Fatalf("round %d request %d: batched %q, alone %q", round, i, got[i], want[i])
			}
		}
	}
	st, err := batched.BatchStats()
	if err != nil {
		t.Fatal(err)
	}
	var rows, steps uint64
	for k, c := range st.ByRows {
		rows += uint64(k+1) * c
		steps += c
	}
	if st.Steps == 0 || rows != st.Rows || steps != st.Steps {
		t.Fatalf("inconsistent stats %+v", st)
	}
	t.Logf("%d rows in %d steps (%.2f a step)", st.Rows, st.Steps, float64(st.Rows)/float64(st.Steps))
	if _, err := plain.BatchStats(); err == nil {
		t.Fatal("BatchStats without WithBatching should fail")
	}
	if _, err := LoadModel(path, WithBatching(9)); err == nil {
		t.Fatal("WithBatching(9) should be refused")
	}
	// a context the model cannot have says why
	if _, err := plain.NewSession(SessionContextSize(1 << 30)); err == nil ||
		!strings.Contains(err.Error(), "context length") {
		t.Fatalf("oversized session: %v", err)
	}
	// a session of a batching model joins the batch and survives Close
	s, err := batched.NewSession(SessionThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	batched.Close()
	if _, err := s.Generate(context.Background(), prompts[0], gen[0]...); err != nil {
		t.Fatal(err)
	}
	s.Close()
}
