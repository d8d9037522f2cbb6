package medgemini

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// The genomics test model (`mkmodel --shape tiny --genome 4,3`): traits
// t0..t3, thresholds p0..p2, reference mean 0.01*k and std 1+0.1*(k%5) for
// score k = trait*3 + threshold, a 2x2 grid of 32-px squares, z_scale 32,
// answer words "Y" and "N".
const (
	gTraits     = 4
	gThresholds = 3
	gCell       = 32
	gZScale     = 32.0
	gQuestion   = "Does this individual have coronary artery disease?"
)

func genomeModel(t *testing.T) *Model {
	t.Helper()
	// f32 (the last --dtype wins): the batch and single calls then agree
	// to rounding; with q8_0 they differ by a few 1e-6.
	m, err := LoadModel(tinyModel(t, "--genome", "4,3", "--dtype", "f32"), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func gName(trait, thr int) string { return fmt.Sprintf("t%d_p%d", trait, thr) }

func gRef(k int) (mean, std float64) { return 0.01 * float64(k), 1 + 0.1*float64(k%5) }

// gLevel is the grey level of score k with value v (ok false: not given).
func gLevel(k int, v float64, ok bool) byte {
	if !ok || math.IsNaN(v) {
		return 128
	}
	mean, std := gRef(k)
	x := math.RoundToEven(128 + gZScale*(v-mean)/std)
	return byte(math.Max(0, math.Min(255, x)))
}

// checkScoreImage compares every pixel of img with the layout computed
// from the scores (names the model does not know are ignored).
func checkScoreImage(t *testing.T, img *Image, scores []float64, names []string) {
	t.Helper()
	info, err := img.Info()
	if err != nil {
		t.Fatal(err)
	}
	side := 2 * gCell
	if info.Width != side || info.Height != side || info.Format != RGB8 {
		t.Fatalf("score image %dx%d format %d", info.Width, info.Height, info.Format)
	}
	pix, err := img.Pixels()
	if err != nil {
		t.Fatal(err)
	}
	given := map[string]float64{}
	for i, n := range names {
		given[n] = scores[i]
	}
	for tr := 0; tr < gTraits; tr++ {
		var want [3]byte
		for c := 0; c < gThresholds; c++ {
			v, ok := given[gName(tr, c)]
			want[c] = gLevel(tr*gThresholds+c, v, ok)
		}
		r0, c0 := (tr/2)*gCell, (tr%2)*gCell
		for y := r0; y < r0+gCell; y++ {
			for x := c0; x < c0+gCell; x++ {
				i := 3 * (y*side + x)
				if got := [3]byte{pix[i], pix[i+1], pix[i+2]}; got != want {
					t.Fatalf("trait %d pixel (%d,%d) = %v, want %v", tr, y, x, got, want)
				}
			}
		}
	}
}

func TestPRSMetadataAsAssumed(t *testing.T) {
	m := genomeModel(t)
	for k := 0; k < gTraits*gThresholds; k++ {
		mean, err1 := m.MetaFloatAt("genome.reference_mean", uint64(k))
		std, err2 := m.MetaFloatAt("genome.reference_std", uint64(k))
		wm, ws := gRef(k)
		if err1 != nil || err2 != nil || math.Abs(mean-wm) > 1e-12 || math.Abs(std-ws) > 1e-12 {
			t.Fatalf("score %d: mean %v std %v (%v %v), want %v %v", k, mean, std, err1, err2, wm, ws)
		}
	}
	if z, err := m.MetaFloat("genome.z_scale"); err != nil || z != gZScale {
		t.Fatalf("z_scale %v %v", z, err)
	}
}

func TestScoreImage(t *testing.T) {
	m := genomeModel(t)
	var names []string
	var scores []float64
	for tr := 0; tr < gTraits; tr++ {
		for c := 0; c < gThresholds; c++ {
			if tr == 3 && c == 1 {
				continue // missing: the reference mean, 128
			}
			names = append(names, gName(tr, c))
			scores = append(scores, 0.37*float64(tr+1)-0.81*float64(c))
		}
	}
	set := func(n string, v float64) {
		for i := range names {
			if names[i] == n {
				scores[i] = v
				return
			}
		}
		names, scores = append(names, n), append(scores, v)
	}
	set("t1_p0", 9)          // clipped to 255
	set("t2_p2", -9)         // clipped to 0
	set("t0_p2", math.NaN()) // NaN: 128
	set("t9_p0", 5)          // unknown: ignored
	set("PGS000001", -5)
	img, err := m.ScoreImage(scores, names)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	checkScoreImage(t, img, scores, names)
	if gLevel(3, 9, true) != 255 || gLevel(8, -9, true) != 0 {
		t.Fatal("clipping not exercised")
	}

	// round half to even: score 0 has mean 0 and std 1, so 128 + 32 v
	for _, c := range []struct {
		v    float64
		grey byte
	}{{0.015625, 128}, {0.046875, 130}, {-0.015625, 128}, {-0.046875, 126}, {0.03125, 129}} {
		img, err := m.ScoreImage([]float64{c.v}, []string{"t0_p0"})
		if err != nil {
			t.Fatal(err)
		}
		pix, _ := img.Pixels()
		img.Close()
		if pix[0] != c.grey || pix[1] != 128 || pix[2] != 128 || gLevel(0, c.v, true) != c.grey {
			t.Fatalf("t0_p0 = %v: pixel %v, want %d", c.v, pix[:3], c.grey)
		}
	}

	// one score: every other square is 128
	one, err := m.ScoreImage([]float64{1.5}, []string{"t2_p1"})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	checkScoreImage(t, one, []float64{1.5}, []string{"t2_p1"})

	// errors
	if _, err := m.ScoreImage([]float64{1, 2, 3}, []string{"t0_p0", "t1_p1", "t0_p0"}); !errors.Is(err, ErrInvalidArg) ||
		!strings.Contains(err.Error(), "t0_p0") {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := m.ScoreImage([]float64{1}, []string{"nothing_known"}); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("no known score: %v", err)
	}
	if _, err := m.ScoreImage([]float64{1, 2}, []string{"t0_p0"}); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("length mismatch: %v", err)
	}
}

// answerIDs are the token ids of the model's answer words "Y" and "N".
func answerIDs(t *testing.T, m *Model) (yes, no int32) {
	t.Helper()
	ws := [2]string{}
	for i, key := range []string{"genome.answer_yes", "genome.answer_no"} {
		w, err := m.MetaString(key)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	if ws != [2]string{"Y", "N"} {
		t.Fatalf("answer words %q", ws)
	}
	y, err1 := m.Tokenize("Y")
	n, err2 := m.Tokenize("N")
	if err1 != nil || err2 != nil || len(y) != 1 || len(n) != 1 || y[0] == n[0] {
		t.Fatalf("answer tokens %v %v (%v %v)", y, n, err1, err2)
	}
	return y[0], n[0]
}

func riskFromLogits(l []float32, yes, no int32) float64 {
	return 1 / (1 + math.Exp(float64(l[no])-float64(l[yes])))
}

var (
	pNames  = []string{"t0_p0", "t1_p1", "t2_p0", "t3_p2", "t1_p2"}
	pScores = []float64{0.5, -1.2, 0.8, 2.0, 0.1}
)

func TestPRSPredictRisk(t *testing.T) {
	m := genomeModel(t)
	yes, no := answerIDs(t, m)
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bg := context.Background()

	text, risk, err := s.PRSPredict(bg, pScores, pNames, gQuestion, WithMaxTokens(0))
	if err != nil || text != "" {
		t.Fatalf("PRSPredict: %q %v", text, err)
	}
	if !(risk > 0 && risk < 1) {
		t.Fatalf("risk %v", risk)
	}
	logits, err := s.Logits()
	if err != nil {
		t.Fatal(err)
	}
	if want := riskFromLogits(logits, yes, no); math.Abs(risk-want) > 1e-12 {
		t.Fatalf("risk %v, from the logits %v", risk, want)
	}
	// the prompt holds one block of the model's image tokens
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
		t.Fatalf("%d image tokens, want %d", nImg, per)
	}

	// The calls below repeat the prompt on a context that holds it: the
	// library keeps all of it but its last token, which it reads again
	// alone. medgemini.h says reuse gives the very numbers of a fresh read;
	// the library at hand differs in the last bits (a few 1e-8 of the risk),
	// so these compare to 1e-6. TestReuseRiskExact checks exact equality
	// without reuse.
	sameRisk := func(a, b float64) bool { return math.Abs(a-b) <= 1e-6 }
	r, err := s.PRSRisk(bg, pScores, pNames, gQuestion)
	if err != nil || !sameRisk(r, risk) {
		t.Fatalf("PRSRisk %v %v, want %v", r, err, risk)
	}
	logits, _ = s.Logits()
	if want := riskFromLogits(logits, yes, no); math.Abs(r-want) > 1e-12 {
		t.Fatalf("PRSRisk %v, from the logits %v", r, want)
	}

	// with text, streamed: the same risk
	var pieces strings.Builder
	text, risk2, err := s.PRSPredict(bg, pScores, pNames, gQuestion, WithMaxTokens(5),
		WithOnToken(func(p string, _ int32) error { pieces.WriteString(p); return nil }))
	if err != nil || !sameRisk(risk2, risk) || text != pieces.String() {
		t.Fatalf("PRSPredict with text: %q %v %v (streamed %q)", text, risk2, err, pieces.String())
	}
	// the pooled model gives the same
	mt, mr, err := m.PRSPredict(bg, pScores, pNames, gQuestion, WithMaxTokens(5))
	if err != nil || mt != text || !sameRisk(mr, risk) {
		t.Fatalf("Model.PRSPredict %q %v %v, session %q %v", mt, mr, err, text, risk)
	}
	if mr, err := m.PRSRisk(bg, pScores, pNames, gQuestion); err != nil || !sameRisk(mr, risk) {
		t.Fatalf("Model.PRSRisk %v %v", mr, err)
	}

	// other scores, another risk; unknown names change nothing
	other, err := s.PRSRisk(bg, []float64{-3, 3, -2.5}, []string{"t0_p0", "t1_p1", "t3_p2"}, gQuestion)
	if err != nil || !(other > 0 && other < 1) || other == risk {
		t.Fatalf("other scores: %v %v (risk %v)", other, err, risk)
	}
	same, err := s.PRSRisk(bg, append([]float64{7}, pScores...), append([]string{"PGS000001"}, pNames...), gQuestion)
	if err != nil || !sameRisk(same, risk) {
		t.Fatalf("with an unknown score: %v %v, want %v", same, err, risk)
	}

	// a duplicated name
	_, r, err = s.PRSPredict(bg, []float64{1, 2}, []string{"t0_p0", "t0_p0"}, gQuestion)
	if !errors.Is(err, ErrInvalidArg) || !strings.Contains(err.Error(), "twice") || !math.IsNaN(r) {
		t.Fatalf("duplicate: %v %v", r, err)
	}
	// a cancelled context stops the call before it starts
	cctx, cancel := context.WithCancel(bg)
	cancel()
	if _, _, err := m.PRSPredict(cctx, pScores, pNames, gQuestion); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestPRSPredictBatch(t *testing.T) {
	m := genomeModel(t)
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bg := context.Background()
	names := []string{"t0_p0", "t1_p1", "t2_p2", "t3_p0"}
	rows := [][]float64{{0.5, -1.2, 2.0, 0}, {0, 0, 0, 0}, {3, 1, -2, math.NaN()}}
	questions := []string{gQuestion, "Does this individual have type 2 diabetes?"}
	got, err := s.PRSPredictBatch(bg, rows, names, questions)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d rows", len(got))
	}
	for i, row := range rows {
		if len(got[i]) != 2 {
			t.Fatalf("row %d: %d risks", i, len(got[i]))
		}
		for q, question := range questions {
			single, err := s.PRSRisk(bg, row, names, question)
			if err != nil || !(single > 0 && single < 1) {
				t.Fatalf("single %d %d: %v %v", i, q, single, err)
			}
			if math.Abs(got[i][q]-single) > 1e-6 {
				t.Fatalf("batch[%d][%d] = %v, single call %v", i, q, got[i][q], single)
			}
		}
	}
	pooled, err := m.PRSPredictBatch(bg, rows, names, questions)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		for q := range got[i] {
			if math.Abs(pooled[i][q]-got[i][q]) > 1e-12 {
				t.Fatalf("pooled batch[%d][%d] = %v, session %v", i, q, pooled[i][q], got[i][q])
			}
		}
	}
	if _, err := s.PRSPredictBatch(bg, [][]float64{{1, 2}}, names, questions); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("short row: %v", err)
	}
	if _, err := s.PRSPredictBatch(bg, rows, names, nil); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("no questions: %v", err)
	}
}

func TestPRSPredictUnsupported(t *testing.T) {
	m := loadTiny(t) // an image encoder, but no genome.* metadata
	if _, err := m.MetaString("genome.answer_yes"); err == nil {
		t.Fatal("the plain tiny model has genome metadata")
	}
	bg := context.Background()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	img, err := m.ScoreImage([]float64{0.5}, []string{"t0_p0"})
	_, r1, err1 := m.PRSPredict(bg, []float64{0.5}, []string{"t0_p0"}, gQuestion)
	_, r2, err2 := s.PRSPredict(bg, []float64{0.5}, []string{"t0_p0"}, gQuestion)
	r3, err3 := s.PRSRisk(bg, []float64{0.5}, []string{"t0_p0"}, gQuestion)
	b, err4 := s.PRSPredictBatch(bg, [][]float64{{0.5}}, []string{"t0_p0"}, []string{gQuestion})
	if img != nil {
		t.Fatal("ScoreImage returned an image")
	}
	for i, e := range []error{err, err1, err2, err3, err4} {
		var me *Error
		if !errors.Is(e, ErrUnsupported) || !errors.As(e, &me) || !strings.Contains(me.Message, "genom") {
			t.Fatalf("call %d: %v", i, e)
		}
	}
	if !math.IsNaN(r1) || !math.IsNaN(r2) || !math.IsNaN(r3) || len(b) != 1 || !math.IsNaN(b[0][0]) {
		t.Fatalf("risks on error: %v %v %v %v", r1, r2, r3, b)
	}
}
