package medgemini

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Greedy output of the binding equals the CLI's for the same model, image
// and settings (the CLI drives the C API directly).
func TestReportMatchesCLI(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	got, err := m.Report(context.Background(), []*Image{img}, WithMaxTokens(12))
	if err != nil {
		t.Fatal(err)
	}
	want := runCLI(t, "", "report", cxrPath(t), "-m", tinyModel(t), "-n", "12", "--threads", "1")
	if got == "" || got != strings.TrimSuffix(want, "\n") {
		t.Fatalf("report %q, CLI %q", got, want)
	}
	// two views of one study, and a custom instruction
	two, err := m.Report(context.Background(), []*Image{img, img}, WithMaxTokens(8), WithInstruction("Compare."), WithSystemPrompt(""))
	if err != nil {
		t.Fatal(err)
	}
	want2 := runCLI(t, "", "report", cxrPath(t), cxrPath(t), "-m", tinyModel(t), "-n", "8", "--threads", "1",
		"--instruction", "Compare.", "--system", "")
	if two != strings.TrimSuffix(want2, "\n") {
		t.Fatalf("two-image report %q, CLI %q", two, want2)
	}
}

func TestVQAMatchesCLI(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	q := "Is there a pleural effusion?"
	got, err := m.VQA(context.Background(), []*Image{img}, q, WithMaxTokens(10))
	if err != nil {
		t.Fatal(err)
	}
	want := runCLI(t, "", "vqa", cxrPath(t), "-q", q, "-m", tinyModel(t), "-n", "10", "--threads", "1")
	if got == "" || got != strings.TrimSuffix(want, "\n") {
		t.Fatalf("vqa %q, CLI %q", got, want)
	}
	// streaming gives the same text, piece by piece
	var b strings.Builder
	pieces := 0
	streamed, err := m.VQAStream(context.Background(), []*Image{img}, q, func(p string) error {
		b.WriteString(p)
		pieces++
		return nil
	}, WithMaxTokens(10))
	if err != nil || streamed != got || b.String() != got || pieces == 0 || pieces > 10 {
		t.Fatalf("streamed %q (%d pieces, joined %q), %v", streamed, pieces, b.String(), err)
	}
	// image marker text in the question is refused
	if _, err := m.VQA(context.Background(), []*Image{img}, "<start_of_image>", WithMaxTokens(2)); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("marker in question: %v", err)
	}
}

func TestReportErrors(t *testing.T) {
	m := loadTiny(t)
	if _, err := m.Report(context.Background(), nil); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("no images: %v", err)
	}
	if _, err := m.Report(context.Background(), []*Image{nil}); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("nil image: %v", err)
	}
	closed := loadCXR(t)
	closed.Close()
	if _, err := m.Report(context.Background(), []*Image{closed}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed image: %v", err)
	}
	// a text-only model cannot report
	txt, err := LoadModel(tinyModel(t, "--no-vision"))
	if err != nil {
		t.Fatal(err)
	}
	defer txt.Close()
	_, err = txt.Report(context.Background(), []*Image{loadCXR(t)})
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusUnsupported || e.Message == "" {
		t.Fatalf("text-only model: %v", err)
	}
}

func TestGenerateAndTokenize(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	got, err := m.Generate(context.Background(), "hello there", WithMaxTokens(10))
	if err != nil {
		t.Fatal(err)
	}
	want := runCLI(t, "", "generate", "-m", tinyModel(t), "-n", "10", "--threads", "1", "hello there")
	if got != strings.TrimSuffix(want, "\n") {
		t.Fatalf("generate %q, CLI %q", got, want)
	}
	// tokenizer against the CLI
	text := "The heart size is normal.\nNo <start_of_turn> effusion ü"
	for _, special := range []bool{false, true} {
		opts := []TokenizeOption{AddBOS}
		args := []string{"tokenize", "-m", tinyModel(t), "--bos"}
		if special {
			opts = append(opts, ParseSpecial)
			args = append(args, "--special")
		}
		ids, err := m.Tokenize(text, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var cliIDs []string
		for _, line := range strings.Split(strings.TrimSpace(runCLI(t, text+"\n", args...)), "\n") {
			cliIDs = append(cliIDs, strings.Fields(line)...)
		}
		var ours []string
		for _, id := range ids {
			ours = append(ours, strconv.Itoa(int(id)))
		}
		// the CLI encodes line by line; compare the first line only
		first, _ := m.Tokenize(strings.SplitN(text, "\n", 2)[0], opts...)
		if strings.Join(ours[:len(first)], " ") != strings.Join(cliIDs[:len(first)], " ") {
			t.Fatalf("special=%v: ids %v, CLI %v", special, ours, cliIDs)
		}
		back, err := m.Detokenize(ids, true)
		if err != nil {
			t.Fatal(err)
		}
		if !special && back != text {
			t.Fatalf("round trip %q -> %q", text, back)
		}
	}
	tok, _ := m.Tokenizer()
	if tok.VocabSize() != 512 || tok.Special(TokenBOS) < 0 || tok.Special(TokenEndOfTurn) < 0 {
		t.Fatalf("vocab %d bos %d", tok.VocabSize(), tok.Special(TokenBOS))
	}
	if _, ok := tok.Piece(100000); ok {
		t.Fatal("piece out of range")
	}
	if _, err := m.Detokenize([]int32{100000}, false); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("bad id: %v", err)
	}
	// a long text needs a second pass with a larger buffer
	long := strings.Repeat("xq", 3000)
	ids, err := m.Tokenize(long)
	if err != nil || len(ids) == 0 {
		t.Fatal(err)
	}
	if back, _ := m.Detokenize(ids, false); back != long {
		t.Fatal("long round trip")
	}
	// GenerateIDs: the same prompt as token ids gives the same text
	pids, _ := m.Tokenize("<start_of_turn>user\nhello there<end_of_turn>\n<start_of_turn>model\n", AddBOS, ParseSpecial)
	viaIDs, err := m.GenerateIDs(context.Background(), pids, WithMaxTokens(10))
	if err != nil || viaIDs != got {
		t.Fatalf("GenerateIDs %q vs %q, %v", viaIDs, got, err)
	}
	// sampling is repeatable with a seed
	s1, _ := m.Generate(context.Background(), "hi", WithMaxTokens(8), WithTemperature(0.9), WithTopK(40), WithTopP(0.95), WithRepetitionPenalty(1.1), WithGenSeed(7))
	s2, _ := m.Generate(context.Background(), "hi", WithMaxTokens(8), WithTemperature(0.9), WithTopK(40), WithTopP(0.95), WithRepetitionPenalty(1.1), WithGenSeed(7))
	if s1 != s2 {
		t.Fatalf("seeded sampling differs: %q %q", s1, s2)
	}
	// stop strings cut the text before them
	if len(got) > 2 {
		stop := got[len(got)/2:]
		cut, err := m.Generate(context.Background(), "hello there", WithMaxTokens(10), WithStop(stop, "zzzz-never"))
		if err != nil || !strings.HasPrefix(got, cut) || strings.Contains(cut, stop) {
			t.Fatalf("stop %q: %q, %v", stop, cut, err)
		}
	}
}

func TestTokenizerJSON(t *testing.T) {
	path := writeTokJSON(t)
	tok, err := LoadTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	// hand-derived: " " -> U+2581; merges t+h -> "th" (14), U+2581+th -> 15
	cases := map[string][]int32{
		"the heart": {14, 6, 4, 7, 6, 5, 8, 9},
		"the thin":  {14, 6, 15, 11, 12},
	}
	for text, want := range cases {
		ids, err := tok.Tokenize(text)
		if err != nil || len(ids) != len(want) {
			t.Fatalf("%q: %v, %v", text, ids, err)
		}
		for i := range ids {
			if ids[i] != want[i] {
				t.Fatalf("%q: %v, want %v", text, ids, want)
			}
		}
		if back, _ := tok.Detokenize(ids, false); back != text {
			t.Fatalf("%q back as %q", text, back)
		}
	}
	if ids, _ := tok.Tokenize("x", AddBOS); len(ids) == 0 || ids[0] != 2 {
		t.Fatalf("bos: %v", ids)
	}
	if p, _ := tok.Piece(15); p != "\u2581th" {
		t.Fatalf("piece 15 = %q", p)
	}
	if tok.Special(TokenEOS) != 1 {
		t.Fatalf("eos = %d", tok.Special(TokenEOS))
	}
	tok.Close()
	if _, err := tok.Tokenize("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
	if _, err := LoadTokenizer(t.TempDir() + "/none.json"); !errors.Is(err, ErrIO) {
		t.Fatalf("missing: %v", err)
	}
}

// Cancelling the context while a long generation streams stops it within a
// token or so: the error matches ErrInterrupted and context.Canceled and the
// partial text is returned.
func TestCancelWhileStreaming(t *testing.T) {
	m, err := LoadModel(tinyModel(t, slowArgs...), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelledAt time.Time
	pieces, after := 0, 0
	var b strings.Builder
	start := time.Now()
	text, err := m.GenerateStream(ctx, "hello", func(p string) error {
		b.WriteString(p)
		pieces++
		if pieces == 20 {
			cancelledAt = time.Now()
			cancel()
		} else if pieces > 20 {
			after++
		}
		return nil
	}, WithMaxTokens(8000))
	took := time.Since(cancelledAt)
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusInterrupted {
		t.Fatalf("not an *Error: %v", err)
	}
	if took > 2*time.Second {
		t.Fatalf("stopped %v after cancel", took)
	}
	if text != b.String() || pieces < 20 || after > 0 {
		t.Fatalf("text %d bytes, streamed %d, %d pieces, %d after cancel", len(text), b.Len(), pieces, after)
	}
	t.Logf("cancelled after 20 pieces; returned %v later (%d more pieces); whole call %v", took, after, time.Since(start))

	// a deadline on a non-streaming call
	dctx, dcancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer dcancel()
	start = time.Now()
	partial, err := m.Generate(dctx, "hello", WithMaxTokens(8000))
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	// (partial may be empty: the deadline can fall while the prompt is read)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("deadline call took %v, %d bytes", el, len(partial))
	}
	// Session.Interrupt from another goroutine (repeated: a request made
	// before the call starts is dropped)
	sess, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	result := make(chan error, 1)
	start = time.Now()
	go func() {
		_, err := sess.Generate(context.Background(), "hello", WithMaxTokens(8000))
		result <- err
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-result:
			if !errors.Is(err, ErrInterrupted) || errors.Is(err, context.Canceled) {
				t.Fatalf("session interrupt: %v", err)
			}
			break wait
		case <-tick.C:
			if time.Since(start) > 3*time.Second {
				t.Fatal("Session.Interrupt did not stop the call")
			}
			if err := sess.Interrupt(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// the pooled context works again afterwards (the interrupt is not sticky)
	if _, err := m.Generate(context.Background(), "hello", WithMaxTokens(4)); err != nil {
		t.Fatalf("after interrupt: %v", err)
	}
	// an already cancelled context never starts
	if _, err := m.Generate(ctx, "hello"); !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("pre-cancelled: %v", err)
	}
}

func TestCancelReport(t *testing.T) {
	m := loadTiny(t)
	img := loadCXR(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := m.ReportStream(ctx, []*Image{img}, func(string) error {
		n++
		if n == 3 {
			cancel()
		}
		return nil
	}, WithMaxTokens(400))
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) || n > 40 {
		t.Fatalf("report cancel: %v after %d pieces", err, n)
	}
}

func TestStreamCallbackErrorAndPanic(t *testing.T) {
	m := loadTiny(t)
	stop := errors.New("enough")
	n := 0
	var b strings.Builder
	text, err := m.GenerateStream(context.Background(), "hello", func(p string) error {
		n++
		b.WriteString(p)
		if n == 3 {
			return stop
		}
		return nil
	}, WithMaxTokens(50))
	if !errors.Is(err, stop) || !errors.Is(err, ErrInterrupted) || n != 3 {
		t.Fatalf("callback error: %v after %d pieces", err, n)
	}
	if !strings.HasPrefix(b.String(), text) {
		t.Fatalf("partial text %q vs streamed %q", text, b.String())
	}
	var ids []int32
	_, err = m.Generate(context.Background(), "hello", WithMaxTokens(5), WithOnToken(func(_ string, id int32) error {
		ids = append(ids, id)
		return nil
	}))
	if err != nil || len(ids) == 0 {
		t.Fatalf("token ids %v, %v", ids, err)
	}
	// a panic in the callback comes back out of the call, after cleanup
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v", r)
			}
		}()
		m.GenerateStream(context.Background(), "hello", func(string) error { panic("boom") }, WithMaxTokens(5))
		t.Fatal("no panic")
	}()
	if _, err := m.Generate(context.Background(), "hello", WithMaxTokens(3)); err != nil {
		t.Fatalf("model unusable after a callback panic: %v", err)
	}
}

// Many goroutines share one model; each gets the sequential result.
func TestConcurrentUse(t *testing.T) {
	m := loadTiny(t, WithThreads(1), WithPoolSize(2))
	img := loadCXR(t)
	wantReport, err := m.Report(context.Background(), []*Image{img}, WithMaxTokens(6))
	if err != nil {
		t.Fatal(err)
	}
	wantGen, _ := m.Generate(context.Background(), "hello", WithMaxTokens(6))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				if i%2 == 0 {
					got, err := m.Report(context.Background(), []*Image{img}, WithMaxTokens(6))
					if err != nil || got != wantReport {
						errs <- errors.New("report differs: " + got)
						return
					}
				} else {
					got, err := m.Generate(context.Background(), "hello", WithMaxTokens(6))
					if err != nil || got != wantGen {
						errs <- errors.New("generate differs: " + got)
						return
					}
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	m.mu.Lock()
	n := len(m.idle)
	m.mu.Unlock()
	if n > 2 {
		t.Fatalf("pool holds %d contexts, limit 2", n)
	}
}

// Close waits for a call in progress; later calls get ErrClosed.
func TestCloseWaitsForCalls(t *testing.T) {
	m, err := LoadModel(tinyModel(t, slowArgs...), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var once sync.Once
	result := make(chan error, 1)
	go func() {
		_, err := m.GenerateStream(ctx, "hello", func(string) error {
			once.Do(func() { close(started) })
			return nil
		}, WithMaxTokens(8000))
		result <- err
	}()
	<-started
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a call was running")
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-result; !errors.Is(err, ErrInterrupted) {
		t.Fatalf("running call: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the call ended")
	}
	if _, err := m.Generate(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// A session with a bf16 KV cache gives logits close to, but not equal to,
// those of an f32 cache.
func TestSessionKVBF16(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	ids := []int32{2, 300, 17, 41, 99, 5, 260, 301, 302, 12}
	var rows [2][]float32
	for i, opts := range [][]SessionOption{nil, {SessionKVBF16()}} {
		s, err := m.NewSession(append(opts, SessionContextSize(64))...)
		if err != nil {
			t.Fatal(err)
		}
		if rows[i], err = s.Eval(ids, true); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	maxd, maxa := 0.0, 0.0
	for i := range rows[0] {
		d := math.Abs(float64(rows[0][i] - rows[1][i]))
		maxd = math.Max(maxd, d)
		maxa = math.Max(maxa, math.Abs(float64(rows[0][i])))
	}
	if maxd == 0 || maxd > 0.05*maxa {
		t.Fatalf("bf16 cache: max logit difference %g (largest logit %g)", maxd, maxa)
	}
}

func TestSession(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	s, err := m.NewSession(SessionContextSize(64), SessionSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := []int32{2, 300, 17}
	logits, err := s.Eval(ids, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != 3*512 || s.Len() != 3 {
		t.Fatalf("%d logits, %d tokens", len(logits), s.Len())
	}
	if got, err := s.Tokens(); err != nil || len(got) != 3 || got[0] != 2 || got[1] != 300 || got[2] != 17 {
		t.Fatalf("Tokens: %v, %v", got, err)
	}
	// the argmax of the last row is the first greedy token after those ids
	last := logits[2*512:]
	best := 0
	for i, v := range last {
		if v > last[best] {
			best = i
		}
	}
	var first int32 = -1
	m.GenerateIDs(context.Background(), ids, WithMaxTokens(1), WithOnToken(func(_ string, id int32) error {
		first = id
		return nil
	}))
	if first != int32(best) {
		t.Fatalf("argmax %d, generated %d", best, first)
	}
	// Logits returns the last row
	lg, err := s.Logits()
	if err != nil || len(lg) != 512 {
		t.Fatalf("Logits: %v (%d)", err, len(lg))
	}
	for i := range lg {
		if lg[i] != last[i] {
			t.Fatalf("Logits()[%d] = %g, Eval's last row %g", i, lg[i], last[i])
		}
	}
	if _, err := s.Eval([]int32{4}, false); err != nil || s.Len() != 4 {
		t.Fatalf("eval without logits: %v, %d tokens", err, s.Len())
	}
	if err := s.LastError(); err != nil {
		t.Fatalf("LastError after success: %v", err)
	}
	if _, err := s.Eval([]int32{99999}, false); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("bad id: %v", err)
	}
	if err := s.LastError(); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("LastError: %v", err)
	}
	if err := s.Reset(); err != nil || s.Len() != 0 {
		t.Fatalf("reset: %v, %d", err, s.Len())
	}
	// the context holds 64 tokens
	_, err = s.Eval(make([]int32, 65), false)
	if !errors.Is(err, ErrContextFull) {
		t.Fatalf("overflow: %v", err)
	}
	if err := s.Interrupt(); err != nil {
		t.Fatal(err)
	}
	txt, err := s.Generate(context.Background(), "hello", WithMaxTokens(5))
	if err != nil || txt == "" {
		t.Fatalf("session generate %q, %v", txt, err)
	}
	// the session outlives Model.Close
	m.Close()
	if txt2, err := s.Generate(context.Background(), "hello", WithMaxTokens(5)); err != nil || txt2 != txt {
		t.Fatalf("after model close: %q, %v", txt2, err)
	}
	s.Close()
	if err := s.Interrupt(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed session: %v", err)
	}
	if _, err := s.Tokens(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed session tokens: %v", err)
	}
}

// WithDraftNgram changes nothing but speed: greedy generation gives the same
// text, streamed token ids, sequence and last logits as without it (prompts
// that repeat themselves, so that drafts are made and kept, and a stop
// string); with a temperature above 0 the option is ignored.
func TestDraftNgram(t *testing.T) {
	m, err := LoadModel(tinyModel(t, "--no-vision"), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	type result struct {
		text   string
		ids    []int32
		seq    []int32
		logits []float32
	}
	run := func(prompt string, opts ...GenOption) result {
		t.Helper()
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var r result
		opts = with(opts, WithOnToken(func(_ string, id int32) error {
			r.ids = append(r.ids, id)
			return nil
		}))
		if r.text, err = s.Generate(context.Background(), prompt, opts...); err != nil {
			t.Fatalf("%q: %v", prompt, err)
		}
		if r.seq, err = s.Tokens(); err != nil {
			t.Fatal(err)
		}
		if r.logits, err = s.Logits(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	same := func(what string, a, b result) {
		t.Helper()
		if a.text != b.text {
			t.Fatalf("%s: text %q with the option, %q without", what, a.text, b.text)
		}
		if len(a.ids) != len(b.ids) || len(a.seq) != len(b.seq) || len(a.logits) != len(b.logits) {
			t.Fatalf("%s: %d/%d streamed ids, %d/%d sequence tokens, %d/%d logits", what,
				len(a.ids), len(b.ids), len(a.seq), len(b.seq), len(a.logits), len(b.logits))
		}
		for i := range a.ids {
			if a.ids[i] != b.ids[i] {
				t.Fatalf("%s: streamed ids %v, without the option %v", what, a.ids, b.ids)
			}
		}
		for i := range a.seq {
			if a.seq[i] != b.seq[i] {
				t.Fatalf("%s: sequence %v, without the option %v", what, a.seq, b.seq)
			}
		}
		for i := range a.logits {
			if math.Float32bits(a.logits[i]) != math.Float32bits(b.logits[i]) {
				t.Fatalf("%s: logit %d is %g, without the option %g", what, i, a.logits[i], b.logits[i])
			}
		}
	}
	cases := []struct {
		prompt string
		opts   []GenOption
	}{
		{"hello there", nil},
		{"the heart the heart the heart the heart the heart", nil},
		{"No acute findings. No acute findings. No acute findings.", nil},
		{"a b c d a b c d a b c d a b c d a b c d", []GenOption{WithRawPrompt()}},
		{"lungs are clear, lungs are clear, lungs are clear", []GenOption{WithRawPrompt(), WithMaxTokens(7)}},
	}
	for _, c := range cases {
		opts := with([]GenOption{WithMaxTokens(40)}, c.opts...)
		want := run(c.prompt, opts...)
		if len(want.ids) == 0 {
			t.Fatalf("%q: nothing generated", c.prompt)
		}
		same(c.prompt, run(c.prompt, with(opts, WithDraftNgram())...), want)
		// a stop string inside the text cuts it at the same place
		if runes := []rune(want.text); len(runes) > 4 {
			stop := string(runes[len(runes)/2 : len(runes)/2+2])
			what := c.prompt + " (stop " + strconv.Quote(stop) + ")"
			same(what, run(c.prompt, with(opts, WithStop(stop), WithDraftNgram())...), run(c.prompt, with(opts, WithStop(stop))...))
		}
		// sampling: the same distribution (another text for a seed than
		// without the option), the same text for the same seed
		sampled := with(opts, WithTemperature(0.8), WithGenSeed(11), WithDraftNgram())
		same(c.prompt+" (sampled)", run(c.prompt, sampled...), run(c.prompt, sampled...))
	}
}

// WithDraft: a draft model changes nothing but speed for greedy
// generation; sessions that cannot serve as drafts are refused.
func TestDraftModel(t *testing.T) {
	m, err := LoadModel(tinyModel(t, "--no-vision"), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dm, err := LoadModel(tinyModel(t, "--no-vision", "--seed", "9", "--layers", "1"), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	d, err := dm.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	same, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer same.Close()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, prompt := range []string{"hello there", "the heart the heart the heart the heart"} {
		want, err := m.Generate(ctx, prompt, WithMaxTokens(30))
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range [][]GenOption{{WithDraft(d)}, {WithDraft(d), WithDraftMax(2)}, {WithDraft(same)}} {
			got, err := s.Generate(ctx, prompt, with(opts, WithMaxTokens(30))...)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("%q: %q with a draft, %q without", prompt, got, want)
			}
		}
		got, err := m.Generate(ctx, prompt, WithMaxTokens(30), WithDraft(d))
		if err != nil || got != want {
			t.Fatalf("%q: %q (%v) with a draft on a pooled context, %q without", prompt, got, err, want)
		}
		sampled := []GenOption{WithMaxTokens(20), WithTemperature(0.9), WithGenSeed(3), WithDraft(d)}
		a, err1 := s.Generate(ctx, prompt, sampled...)
		b, err2 := s.Generate(ctx, prompt, sampled...)
		if err1 != nil || err2 != nil || a != b {
			t.Fatalf("%q sampled: %q (%v), then %q (%v)", prompt, a, err1, b, err2)
		}
	}
	if d.Len() == 0 {
		t.Fatal("the draft session holds no tokens")
	}
	if _, err := s.Generate(ctx, "x", WithMaxTokens(4), WithDraft(s)); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("the session as its own draft: %v", err)
	}
	om, err := LoadModel(tinyModel(t, "--no-vision", "--vocab", "600"))
	if err != nil {
		t.Fatal(err)
	}
	defer om.Close()
	o, err := om.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := s.Generate(ctx, "x", WithMaxTokens(4), WithDraft(o)); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("a draft with another vocabulary: %v", err)
	}
	closed, err := dm.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := s.Generate(ctx, "x", WithMaxTokens(4), WithDraft(closed)); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed draft session: %v", err)
	}
}

// with returns a new slice of opts followed by more (never sharing opts'
// array, so that option lists built from one base stay apart).
func with(opts []GenOption, more ...GenOption) []GenOption {
	return append(append(make([]GenOption, 0, len(opts)+len(more)), opts...), more...)
}
