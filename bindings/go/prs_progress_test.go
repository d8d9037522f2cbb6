package medgemini

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// openToyPRS is TestPRSHandComputed's set and scores, read one variant per
// block so that a compute has blocks to stop between.
func openToyPRS(t *testing.T) *PRS {
	t.Helper()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "toy")
	writePlink(t, prefix, [][]int{{2, 1, 0, -1}, {0, 1, 2, 1}, {1, 1, 0, 2}})
	score := filepath.Join(dir, "toy.score")
	os.WriteFile(score, []byte("ID\tA1\tw1\tw2\nrs1\tA\t0.5\t-1\nrs2\tT\t2.0\t0.25\nrs3\tG\t1.0\t0\n"), 0o644)
	p, err := OpenPlink(prefix, PRSThreads(1), PRSBlockVariants(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.AddScores(score); err != nil {
		t.Fatal(err)
	}
	return p
}

var toySums = []float64{6, 3.5, 0, 4.5}

type prsCall struct{ done, total uint64 }

func TestPRSProgress(t *testing.T) {
	p := openToyPRS(t)
	var calls []prsCall
	if err := p.SetProgress(func(done, total uint64) error {
		calls = append(calls, prsCall{done, total})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Compute(); err != nil {
		t.Fatal(err)
	}
	if len(calls) < 2 || calls[0] != (prsCall{0, 3}) || calls[len(calls)-1] != (prsCall{3, 3}) {
		t.Fatalf("progress calls %v", calls)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].done < calls[i-1].done || calls[i].total != 3 {
			t.Fatalf("progress calls %v", calls)
		}
	}
	s, _ := p.Sums(0)
	expectCol(t, "SUM with progress", s, toySums)
	// nil removes the function
	calls = nil
	if err := p.SetProgress(nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Compute(); err != nil || len(calls) != 0 {
		t.Fatalf("after SetProgress(nil): %v, %v", err, calls)
	}
}

// Stopping a compute: from the progress function, by Interrupt from another
// goroutine, by cancelling the context. No results then; the next compute
// works.
func TestPRSInterrupt(t *testing.T) {
	p := openToyPRS(t)
	errStop := errors.New("stop the compute")
	noResults := func(what string) {
		t.Helper()
		if _, err := p.Sums(0); !errors.Is(err, ErrMisuse) {
			t.Fatalf("%s: results after an interrupted compute: %v", what, err)
		}
		p.SetProgress(nil)
		if err := p.Compute(); err != nil {
			t.Fatalf("%s: compute afterwards: %v", what, err)
		}
		s, _ := p.Sums(0)
		expectCol(t, what+": SUM afterwards", s, toySums)
	}

	// the progress function's error
	n := 0
	p.SetProgress(func(done, total uint64) error {
		n++
		return errStop
	})
	err := p.Compute()
	var e *Error
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, errStop) || !errors.As(err, &e) ||
		!strings.Contains(e.Message, "progress") || n != 1 {
		t.Fatalf("progress error: %v (%d calls)", err, n)
	}
	noResults("progress error")

	// Interrupt from another goroutine, made while the compute runs (the
	// progress function holds the compute until it has been made)
	p.SetProgress(func(done, total uint64) error {
		if done == 0 {
			ack := make(chan error)
			go func() { ack <- p.Interrupt() }()
			if err := <-ack; err != nil {
				t.Errorf("Interrupt: %v", err)
			}
		}
		return nil
	})
	err = p.Compute()
	if !errors.Is(err, ErrInterrupted) || errors.Is(err, errStop) || errors.Unwrap(err) != nil {
		t.Fatalf("Interrupt: %v", err)
	}
	noResults("Interrupt")

	// an interrupt made while no compute runs is dropped
	if err := p.Interrupt(); err != nil {
		t.Fatal(err)
	}
	if err := p.Compute(); err != nil {
		t.Fatalf("compute after a stale interrupt: %v", err)
	}

	// cancelling the context (here from the progress function, so that the
	// compute is surely running)
	ctx, cancel := context.WithCancel(context.Background())
	p.SetProgress(func(done, total uint64) error {
		if done == 0 {
			cancel()
		}
		return nil
	})
	err = p.ComputeContext(ctx)
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	noResults("cancelled")
	// a context done before the call: nothing runs
	if err := p.ComputeContext(ctx); !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("pre-cancelled: %v", err)
	}
	// without a progress function, a cancellable context still works
	if err := p.ComputeContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()
	if err := p.ComputeContext(cctx); err != nil {
		t.Fatal(err)
	}

	// a panic in the progress function comes back out of Compute
	p.SetProgress(func(done, total uint64) error { panic("prs boom") })
	func() {
		defer func() {
			if r := recover(); r != "prs boom" {
				t.Fatalf("recovered %v", r)
			}
		}()
		p.Compute()
		t.Fatal("no panic")
	}()
	noResults("panic")

	p.Close()
	if err := p.Interrupt(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Interrupt after Close: %v", err)
	}
	if err := p.SetProgress(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetProgress after Close: %v", err)
	}
}

// The progress function's error on the final report (done == total), when
// the scores are all computed. medgemini.h says a non-zero return stops the
// compute with no results; the library (as of this writing) ignores the
// final report's answer and keeps the results. Either is accepted, but
// not a mix of the two.
func TestPRSProgressStopAtEnd(t *testing.T) {
	p := openToyPRS(t)
	errStop := errors.New("stop at the end")
	p.SetProgress(func(done, total uint64) error {
		if done == total {
			return errStop
		}
		return nil
	})
	err := p.Compute()
	sums, rerr := p.Sums(0)
	switch {
	case errors.Is(err, ErrInterrupted) && errors.Is(err, errStop) && errors.Is(rerr, ErrMisuse):
		t.Log("an error from the final report stops the compute (as medgemini.h says)")
	case err == nil && rerr == nil:
		expectCol(t, "SUM", sums, toySums)
		t.Log("the library ignored the final report's error and kept the results")
	default:
		t.Fatalf("an error from the final report: Compute %v, results %v", err, rerr)
	}
}

// Interrupts from another goroutine at random moments: every compute
// either succeeds with the right sums or stops with no results.
func TestPRSInterruptConcurrent(t *testing.T) {
	p := openToyPRS(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				p.Interrupt()
			}
		}
	}()
	ok, stopped := 0, 0
	for i := 0; i < 300; i++ {
		err := p.Compute()
		s, rerr := p.Sums(0)
		switch {
		case err == nil && rerr == nil:
			expectCol(t, "SUM", s, toySums)
			ok++
		case errors.Is(err, ErrInterrupted) && errors.Is(rerr, ErrMisuse):
			stopped++
		default:
			close(stop)
			t.Fatalf("compute %d: %v, results %v", i, err, rerr)
		}
	}
	close(stop)
	<-done
	t.Logf("%d computes finished, %d interrupted", ok, stopped)
}
