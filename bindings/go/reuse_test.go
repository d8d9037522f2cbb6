package medgemini

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// progressLog collects the reports of one call.
type progressLog []Progress

func (l *progressLog) opt() GenOption {
	return WithProgress(func(p Progress) error {
		*l = append(*l, p)
		return nil
	})
}

func (l progressLog) stage(s Stage) []Progress {
	var out []Progress
	for _, p := range l {
		if p.Stage == s {
			out = append(out, p)
		}
	}
	return out
}

func (l progressLog) maxCached() int {
	n := 0
	for _, p := range l {
		if p.Cached > n {
			n = p.Cached
		}
	}
	return n
}

const (
	qEffusion = "Is there a pleural effusion?"
	qHeart    = "Is the heart enlarged?"
)

// vqaFresh is the answer of a context that never read anything before.
func vqaFresh(t *testing.T, m *Model, images []*Image, q string, opts ...GenOption) string {
	t.Helper()
	s, err := m.NewSession(SessionNoReuse())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	text, err := s.VQA(context.Background(), images, q, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// Every stage is reported, in order, and Done rises while tokens are made.
func TestProgressStages(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var log progressLog
	tokens := 0
	// a token callback that sleeps makes generation last long enough for
	// several of the reports that come at most every 100 ms
	text, err := s.VQA(context.Background(), []*Image{img}, qEffusion, WithMaxTokens(60), log.opt(),
		WithOnToken(func(string, int32) error {
			tokens++
			time.Sleep(10 * time.Millisecond)
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if want := vqaFresh(t, m, []*Image{img}, qEffusion, WithMaxTokens(60)); text != want {
		t.Fatalf("with progress %q, without %q", text, want)
	}
	if len(log) == 0 || log[0].Stage != StagePrefill {
		t.Fatalf("reports %+v", log)
	}
	order := map[Stage]int{StagePrefill: 0, StageEncode: 1, StageGenerate: 2}
	var last Progress
	for i, p := range log {
		if i > 0 && (order[p.Stage] < order[last.Stage] && !(last.Stage == StageEncode && p.Stage == StagePrefill)) {
			t.Fatalf("report %d: %v after %v", i, p.Stage, last.Stage)
		}
		if p.NBlocks != 1 || p.Elapsed < last.Elapsed || p.Cached != 0 || p.Reused != 0 {
			t.Fatalf("report %d: %+v after %+v", i, p, last)
		}
		if p.Stage == last.Stage && p.Done < last.Done {
			t.Fatalf("Done fell: %+v after %+v", p, last)
		}
		last = p
	}
	enc := log.stage(StageEncode)
	if len(enc) == 0 || enc[0].Block != 0 {
		t.Fatalf("encode reports %+v", enc)
	}
	pre := log.stage(StagePrefill)
	if pre[0].Done != 0 || pre[0].Total <= 16 {
		t.Fatalf("prefill reports %+v", pre)
	}
	gen := log.stage(StageGenerate)
	if len(gen) < 2 || gen[0].Done != 0 || gen[0].Total != 60 {
		t.Fatalf("generate reports %+v (%d tokens)", gen, tokens)
	}
	// (Done counts the end-of-turn token too, which is not streamed)
	if end := gen[len(gen)-1]; end.Done <= gen[0].Done || end.Done > tokens+1 {
		t.Fatalf("Done did not rise: %+v (%d tokens)", gen, tokens)
	}
	if StageEncode.String() != "encode" || Stage(9).String() != "Stage(9)" {
		t.Fatalf("stage names %v %v", StageEncode, Stage(9))
	}
	t.Logf("%d reports, %d while generating %d tokens", len(log), len(gen), tokens)
}

// A second question about the same *Image on the same context takes the
// encoder's output from the cache and keeps the prompt's common start; the
// text is what a fresh context gives.
func TestReuseEncoderCache(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	bg := context.Background()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var first, second progressLog
	a1, err := s.VQA(bg, []*Image{img}, qEffusion, WithMaxTokens(12), first.opt())
	if err != nil {
		t.Fatal(err)
	}
	if len(first.stage(StageEncode)) != 1 || first.maxCached() != 0 {
		t.Fatalf("first call: %+v", first)
	}
	a2, err := s.VQA(bg, []*Image{img}, qHeart, WithMaxTokens(12), second.opt())
	if err != nil {
		t.Fatal(err)
	}
	if len(second.stage(StageEncode)) != 0 || second.maxCached() != 1 || second[0].Reused == 0 {
		t.Fatalf("second call: %+v", second)
	}
	if a1 != vqaFresh(t, m, []*Image{img}, qEffusion, WithMaxTokens(12)) ||
		a2 != vqaFresh(t, m, []*Image{img}, qHeart, WithMaxTokens(12)) {
		t.Fatalf("answers with reuse %q %q differ from a fresh context's", a1, a2)
	}
	// the same question again: the whole prompt but its last two tokens is
	// kept (they are read again as a batch, for the next token's scores)
	var again progressLog
	if a, err := s.VQA(bg, []*Image{img}, qHeart, WithMaxTokens(12), again.opt()); err != nil || a != a2 {
		t.Fatalf("same question again: %q, %v (want %q)", a, err, a2)
	}
	if again[0].Total != 2 || len(again.stage(StageEncode)) != 0 {
		t.Fatalf("same question again: %+v", again)
	}
	// the same file loaded again is another input: encoded anew, the same text
	twin, err := LoadImage(cxrPath(t))
	if err != nil {
		t.Fatal(err)
	}
	var third progressLog
	if a, err := s.VQA(bg, []*Image{twin}, qHeart, WithMaxTokens(12), third.opt()); err != nil || a != a2 {
		t.Fatalf("reloaded image: %q, %v (want %q)", a, err, a2)
	}
	if len(third.stage(StageEncode)) != 1 || third.maxCached() != 0 {
		t.Fatalf("reloaded image: %+v", third)
	}
	// a closed image's successor (likely at the same address) is not
	// mistaken for it
	twin.Close()
	pix, _ := img.Pixels()
	info, _ := img.Info()
	for i := range pix {
		pix[i] = 255 - pix[i]
	}
	neg, err := ImageFromPixels(pix, int(info.Width), int(info.Height), len(pix)/int(info.Height), info.Format)
	if err != nil {
		t.Fatal(err)
	}
	defer neg.Close()
	var fourth progressLog
	a4, err := s.VQA(bg, []*Image{neg}, qHeart, WithMaxTokens(12), fourth.opt())
	if err != nil || len(fourth.stage(StageEncode)) != 1 || fourth.maxCached() != 0 {
		t.Fatalf("new image: %v, %+v", err, fourth)
	}
	if want := vqaFresh(t, m, []*Image{neg}, qHeart, WithMaxTokens(12)); a4 != want {
		t.Fatalf("new image: %q, fresh %q", a4, want)
	}
	// two views of the same image: encoded once, the second view cached
	var two progressLog
	if _, err := s.Report(bg, []*Image{img, img}, WithMaxTokens(4), two.opt()); err != nil {
		t.Fatal(err)
	}
	if two[0].NBlocks != 2 || two.maxCached() != 2 || len(two.stage(StageEncode)) != 0 {
		t.Fatalf("two views of a cached image: %+v", two)
	}
}

// A context without reuse gives the same text and reads everything anew;
// it cannot chat.
func TestNoReuse(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	bg := context.Background()
	want, err := m.VQA(bg, []*Image{img}, qEffusion, WithMaxTokens(12))
	if err != nil {
		t.Fatal(err)
	}
	nr := loadTiny(t, WithThreads(1), WithNoReuse())
	for i := 0; i < 2; i++ {
		var log progressLog
		got, err := nr.VQA(bg, []*Image{img}, qEffusion, WithMaxTokens(12), log.opt())
		if err != nil || got != want {
			t.Fatalf("WithNoReuse call %d: %q, %v (want %q)", i, got, err, want)
		}
		if len(log.stage(StageEncode)) != 1 || log.maxCached() != 0 || log[0].Reused != 0 {
			t.Fatalf("WithNoReuse call %d: %+v", i, log)
		}
	}
	s, err := m.NewSession(SessionNoReuse())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []string{qEffusion, qHeart} {
		var log progressLog
		if _, err := s.VQA(bg, []*Image{img}, q, WithMaxTokens(4), log.opt()); err != nil {
			t.Fatal(err)
		}
		if len(log.stage(StageEncode)) != 1 || log.maxCached() != 0 || log[0].Reused != 0 {
			t.Fatalf("SessionNoReuse: %+v", log)
		}
	}
	_, err = s.Chat(bg, []*Image{img}, qEffusion)
	var e *Error
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("chat without reuse: %v", err)
	}
	// sessions inherit the model's setting
	ns, err := nr.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if _, err := ns.Chat(bg, []*Image{img}, qEffusion); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("chat on a WithNoReuse model's session: %v", err)
	}
}

// An error from the progress function stops the call with the interrupted
// error wrapping it; the context works normally afterwards.
func TestProgressStop(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	bg := context.Background()
	want := vqaFresh(t, m, []*Image{img}, qEffusion, WithMaxTokens(12))
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errStop := errors.New("stop here")
	for _, at := range []Stage{StageEncode, StagePrefill, StageGenerate} {
		calls, after := 0, 0
		stopped := false
		text, err := s.VQA(bg, []*Image{img}, qEffusion, WithMaxTokens(12), WithProgress(func(p Progress) error {
			calls++
			if stopped {
				after++
			}
			if p.Stage == at {
				stopped = true
				return errStop
			}
			return nil
		}))
		var e *Error
		if !errors.Is(err, ErrInterrupted) || !errors.Is(err, errStop) || !errors.As(err, &e) ||
			e.Status != StatusInterrupted || after != 0 || !stopped {
			t.Fatalf("stop at %v: %v (%d reports, %d after the stop)", at, err, calls, after)
		}
		if !strings.HasPrefix(want, text) {
			t.Fatalf("stop at %v: partial text %q is not a prefix of %q", at, text, want)
		}
		// the next call on the same context gives the fresh answer
		if got, err := s.VQA(bg, []*Image{img}, qEffusion, WithMaxTokens(12)); err != nil || got != want {
			t.Fatalf("after a stop at %v: %q, %v (want %q)", at, got, err, want)
		}
	}
	// cancelling the context from the progress function stops the call too
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	_, err = s.VQA(ctx, []*Image{img}, qHeart, WithProgress(func(p Progress) error {
		cancel()
		return nil
	}))
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel from the progress function: %v", err)
	}
	// a panic comes back out of the call
	func() {
		defer func() {
			if r := recover(); r != "progress boom" {
				t.Fatalf("recovered %v", r)
			}
		}()
		s.VQA(bg, []*Image{img}, qEffusion, WithProgress(func(Progress) error { panic("progress boom") }))
		t.Fatal("no panic")
	}()
	// on a pooled context, with streaming at the same time
	var pieces strings.Builder
	text, err := m.VQA(bg, []*Image{img}, qEffusion, WithMaxTokens(12),
		WithOnToken(func(p string, _ int32) error { pieces.WriteString(p); return nil }),
		WithProgress(func(p Progress) error {
			if p.Stage == StageGenerate {
				return errStop
			}
			return nil
		}))
	if !errors.Is(err, errStop) || text != pieces.String() {
		t.Fatalf("pooled: %q (streamed %q), %v", text, pieces.String(), err)
	}
	if got, err := m.VQA(bg, []*Image{img}, qEffusion, WithMaxTokens(12)); err != nil || got != want {
		t.Fatalf("pooled after a stop: %q, %v", got, err)
	}
}

// Generate and the volume calls report progress as well.
func TestProgressOtherCalls(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	var log progressLog
	if _, err := m.Generate(context.Background(), "hello", WithMaxTokens(4), log.opt()); err != nil {
		t.Fatal(err)
	}
	if len(log.stage(StagePrefill)) == 0 || len(log.stage(StageGenerate)) == 0 ||
		len(log.stage(StageEncode)) != 0 || log[0].NBlocks != 0 {
		t.Fatalf("generate: %+v", log)
	}
	_, vol := rampCT(t, nil)
	defer vol.Close()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	slices := &SliceOptions{MaxSlices: 3}
	var v1, v2 progressLog
	if _, err := s.VQAVolume(context.Background(), vol, qEffusion, slices, WithMaxTokens(4), v1.opt()); err != nil {
		t.Fatal(err)
	}
	if v1[0].NBlocks != 3 || len(v1.stage(StageEncode)) != 3 {
		t.Fatalf("volume: %+v", v1)
	}
	for i, p := range v1.stage(StageEncode) {
		if p.Block != i {
			t.Fatalf("volume encode reports %+v", v1.stage(StageEncode))
		}
	}
	// the same slices after other system text: all from the cache
	if _, err := s.ReportVolume(context.Background(), vol, slices, WithMaxTokens(4), WithSystemPrompt("Be brief."), v2.opt()); err != nil {
		t.Fatal(err)
	}
	if len(v2.stage(StageEncode)) != 0 || v2.maxCached() != 3 {
		t.Fatalf("volume again: %+v", v2)
	}
}

// Chat: the first answer is VQA's, later turns read only their own tokens.
func TestChat(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	bg := context.Background()
	want := vqaFresh(t, m, []*Image{img}, qEffusion, WithMaxTokens(12))
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var first progressLog
	a1, err := s.Chat(bg, []*Image{img}, qEffusion, WithMaxTokens(12), first.opt())
	if err != nil || a1 != want {
		t.Fatalf("first turn %q, %v; VQA %q", a1, err, want)
	}
	n1 := s.Len()
	var second progressLog
	var streamed strings.Builder
	a2, err := s.Chat(bg, nil, "And the heart?", WithMaxTokens(12), second.opt(),
		WithOnToken(func(p string, _ int32) error { streamed.WriteString(p); return nil }))
	if err != nil || a2 != streamed.String() {
		t.Fatalf("second turn %q (streamed %q), %v", a2, streamed.String(), err)
	}
	if len(second.stage(StageEncode)) != 0 || second[0].Reused == 0 || second[0].Reused > n1 ||
		second[0].Total >= first[0].Total || s.Len() <= n1 {
		t.Fatalf("second turn read too much: %+v (first %+v, %d then %d tokens)", second, first[0], n1, s.Len())
	}
	// a later turn may bring an image again: from the cache
	var third progressLog
	if _, err := s.Chat(bg, []*Image{img}, "Compare with this view.", WithMaxTokens(8), third.opt()); err != nil {
		t.Fatal(err)
	}
	if len(third.stage(StageEncode)) != 0 || third.maxCached() != 1 {
		t.Fatalf("third turn: %+v", third)
	}
	// a turn stopped early is closed there; the conversation goes on
	errStop := errors.New("enough")
	_, err = s.Chat(bg, nil, "Anything else?", WithMaxTokens(12), WithOnToken(func(string, int32) error { return errStop }))
	if !errors.Is(err, errStop) || !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stopped turn: %v", err)
	}
	if _, err := s.Chat(bg, nil, "Thanks.", WithMaxTokens(4)); err != nil {
		t.Fatalf("turn after a stopped one: %v", err)
	}
	// another call, or Reset, ends the conversation: the next Chat opens one
	if _, err := s.Generate(bg, "hello", WithMaxTokens(2)); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Chat(bg, []*Image{img}, qEffusion, WithMaxTokens(12)); err != nil || a != want {
		t.Fatalf("chat after Generate: %q, %v (want %q)", a, err, want)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Chat(bg, []*Image{img}, qEffusion, WithMaxTokens(12)); err != nil || a != want {
		t.Fatalf("chat after Reset: %q, %v (want %q)", a, err, want)
	}
	// errors: a nil image, a closed session
	if _, err := s.Chat(bg, []*Image{nil}, "x"); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("nil image: %v", err)
	}
	s.Close()
	if _, err := s.Chat(bg, nil, "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed session: %v", err)
	}
}

// A conversation longer than the context drops its oldest exchanges but
// the first, and goes on.
func TestChatLongConversation(t *testing.T) {
	m := loadTiny(t, WithThreads(1))
	img := loadCXR(t)
	bg := context.Background()
	s, err := m.NewSession(SessionContextSize(160))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Chat(bg, []*Image{img}, qEffusion, WithMaxTokens(8)); err != nil {
		t.Fatal(err)
	}
	maxLen := 0
	for i := 0; i < 30; i++ {
		var log progressLog
		if _, err := s.Chat(bg, nil, "Next question, please answer briefly.", WithMaxTokens(8), log.opt()); err != nil {
			t.Fatalf("turn %d: %v (%d tokens held)", i+2, err, s.Len())
		}
		if n := s.Len(); n > 160 {
			t.Fatalf("turn %d: %d tokens in a context of 160", i+2, n)
		} else if n > maxLen {
			maxLen = n
		}
	}
	// the first exchange (and its image) is still there
	ids, err := s.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := m.Tokenizer()
	nImg := 0
	for _, id := range ids {
		if id == tok.Special(TokenImage) {
			nImg++
		}
	}
	if per, _ := m.MetaInt("vision.tokens_per_image"); int64(nImg) != per {
		t.Fatalf("%d image tokens held, want %d", nImg, per)
	}
	t.Logf("up to %d tokens held", maxLen)
}

// Without reuse, repeating a prompt gives exactly the same numbers: PRSRisk
// equals PRSPredict's risk. With reuse (the default) the library re-reads
// the prompt's last token alone, and the numbers may differ in their last
// bits, although medgemini.h says they do not; this logs the difference
// and fails only when it is larger than rounding.
func TestReuseRiskExact(t *testing.T) {
	m := genomeModel(t)
	bg := context.Background()
	var risks [2][]float64
	for i, opts := range [][]SessionOption{{SessionNoReuse()}, nil} {
		s, err := m.NewSession(opts...)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 3; j++ {
			_, r, err := s.PRSPredict(bg, pScores, pNames, gQuestion, WithMaxTokens(0))
			if err != nil {
				t.Fatal(err)
			}
			risks[i] = append(risks[i], r)
		}
		r, err := s.PRSRisk(bg, pScores, pNames, gQuestion)
		if err != nil {
			t.Fatal(err)
		}
		risks[i] = append(risks[i], r)
		s.Close()
	}
	fresh := risks[0][0]
	for j, r := range risks[0] {
		if r != fresh {
			t.Fatalf("without reuse, call %d: risk %.17g, first call %.17g", j, r, fresh)
		}
	}
	worst := 0.0
	for _, r := range risks[1] {
		worst = math.Max(worst, math.Abs(r-fresh))
	}
	if worst > 1e-6 {
		t.Fatalf("with reuse: risks %.17g, fresh %.17g", risks[1], fresh)
	}
	if worst != 0 {
		t.Logf("with reuse the risk differs from a fresh read by up to %.3g (medgemini.h promises equal numbers)", worst)
	}
}
