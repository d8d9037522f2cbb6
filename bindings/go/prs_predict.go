package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"
*/
import "C"

import (
	"context"
	"math"
	"runtime"
	"unsafe"
)

// Polygenic risk prediction (Med-Gemini-Polygenic; docs/POLYGENIC.md) with
// a model whose metadata describes a genomics encoder (genome.*). Scores are
// named "<trait>_<threshold>" after the model's genome.traits and
// genome.thresholds; the model standardizes them against its reference
// distribution, lays them out as its score image (Model.ScoreImage) and
// reads that as one block of image tokens. Names the model does not know
// are ignored; scores it knows but are not given (or NaN) count as the
// reference mean; a name given twice is an error matching ErrInvalidArg.
// A model without a genomics encoder gives an error matching
// ErrUnsupported.

// prsArgs holds the C view of one score vector for the duration of a call.
type prsArgs struct {
	strs   cstrs
	names  **C.char
	scores *C.double
	n      C.size_t
}

func newPRSArgs(scores []float64, names []string) (*prsArgs, error) {
	if len(scores) != len(names) {
		return nil, argError("%d scores but %d names", len(scores), len(names))
	}
	a := &prsArgs{n: C.size_t(len(scores))}
	a.names = a.strs.array(names)
	if len(scores) > 0 {
		a.scores = (*C.double)(unsafe.Pointer(&scores[0]))
	}
	return a, nil
}

func (a *prsArgs) free() { a.strs.free() }

// PRSPredict asks a question ("Does this individual have coronary artery
// disease?") about an individual's polygenic scores (scores[i] is the score
// named names[i]). It returns the generated answer (generation options,
// streaming and cancellation as in VQA) and the risk P(yes) / (P(yes) +
// P(no)) from the scores of the answer's first token, for the model's
// genome.answer_yes and genome.answer_no words. On an error the risk is NaN
// and the answer holds the text made so far.
func (m *Model) PRSPredict(ctx context.Context, scores []float64, names []string, question string, opts ...GenOption) (answer string, risk float64, err error) {
	a, err := newPRSArgs(scores, names)
	if err != nil {
		return "", math.NaN(), err
	}
	defer a.free()
	cq := a.strs.str(question)
	cr := (*C.double)(C.malloc(C.sizeof_double))
	defer C.free(unsafe.Pointer(cr))
	*cr = C.double(math.NaN())
	answer, err = m.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_prs_predict(out, cr, c, a.scores, a.names, a.n, cq, p)
	})
	runtime.KeepAlive(scores)
	return answer, float64(*cr), err
}

// PRSRisk is the risk of PRSPredict alone, without generating text.
func (m *Model) PRSRisk(ctx context.Context, scores []float64, names []string, question string) (float64, error) {
	a, err := newPRSArgs(scores, names)
	if err != nil {
		return math.NaN(), err
	}
	defer a.free()
	cq := a.strs.str(question)
	cr := (*C.double)(C.malloc(C.sizeof_double))
	defer C.free(unsafe.Pointer(cr))
	*cr = C.double(math.NaN())
	_, err = m.generate(ctx, nil, func(c *C.mg_context, _ **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_prs_predict(nil, cr, c, a.scores, a.names, a.n, cq, p)
	})
	runtime.KeepAlive(scores)
	return float64(*cr), err
}

// prsBatch is the C view of a batch: the score matrix flattened row-major.
type prsBatch struct {
	prsArgs
	flat      []float64
	rows      int
	questions **C.char
	nq        int
}

func newPRSBatch(scores [][]float64, names []string, questions []string) (*prsBatch, error) {
	if len(scores) == 0 || len(questions) == 0 {
		return nil, argError("no individuals (%d) or no questions (%d)", len(scores), len(questions))
	}
	b := &prsBatch{rows: len(scores), nq: len(questions)}
	b.flat = make([]float64, 0, len(scores)*len(names))
	for i, row := range scores {
		if len(row) != len(names) {
			return nil, argError("individual %d has %d scores for %d names", i, len(row), len(names))
		}
		b.flat = append(b.flat, row...)
	}
	b.n = C.size_t(len(names))
	b.names = b.strs.array(names)
	if len(b.flat) > 0 {
		b.scores = (*C.double)(unsafe.Pointer(&b.flat[0]))
	}
	b.questions = b.strs.array(questions)
	return b, nil
}

// result splits the C risks (row-major) into one row per individual.
func (b *prsBatch) result(cr *C.double) [][]float64 {
	all := unsafe.Slice((*float64)(unsafe.Pointer(cr)), b.rows*b.nq)
	out := make([][]float64, b.rows)
	for i := range out {
		out[i] = append([]float64(nil), all[i*b.nq:(i+1)*b.nq]...)
	}
	return out
}

// alloc returns the C array of the risks, all NaN.
func (b *prsBatch) alloc() *C.double {
	cr := (*C.double)(C.calloc(C.size_t(b.rows*b.nq), C.sizeof_double))
	for i, r := 0, unsafe.Slice(cr, b.rows*b.nq); i < len(r); i++ {
		r[i] = C.double(math.NaN())
	}
	return cr
}

// PRSPredictBatch computes the risks of many individuals for many
// questions, as PRSRisk does: risk[i][q] for the scores scores[i] (one value
// per name, the same names for all) and questions[q]. Each individual's
// score block is read once and shared by its questions. On an error the
// risks not computed are NaN.
func (m *Model) PRSPredictBatch(ctx context.Context, scores [][]float64, names []string, questions []string) ([][]float64, error) {
	b, err := newPRSBatch(scores, names, questions)
	if err != nil {
		return nil, err
	}
	defer b.free()
	cr := b.alloc()
	defer C.free(unsafe.Pointer(cr))
	nInd, nq := C.size_t(b.rows), C.size_t(b.nq)
	_, err = m.generate(ctx, nil, func(c *C.mg_context, _ **C.char, _ *C.mg_gen_params) C.mg_status {
		return C.mg_prs_predict_batch(cr, c, b.scores, nInd, b.names, b.n, b.questions, nq)
	})
	runtime.KeepAlive(b.flat)
	return b.result(cr), err
}

// PRSPredict is Model.PRSPredict on the session (its sequence is reset
// first; afterwards Logits, with WithMaxTokens(0), are those of the
// answer's first token and Tokens the prompt as read).
func (s *Session) PRSPredict(ctx context.Context, scores []float64, names []string, question string, opts ...GenOption) (answer string, risk float64, err error) {
	a, err := newPRSArgs(scores, names)
	if err != nil {
		return "", math.NaN(), err
	}
	defer a.free()
	cq := a.strs.str(question)
	cr := (*C.double)(C.malloc(C.sizeof_double))
	defer C.free(unsafe.Pointer(cr))
	*cr = C.double(math.NaN())
	answer, err = s.generate(ctx, opts, func(c *C.mg_context, out **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_prs_predict(out, cr, c, a.scores, a.names, a.n, cq, p)
	})
	runtime.KeepAlive(scores)
	return answer, float64(*cr), err
}

// PRSRisk is Model.PRSRisk on the session; afterwards Logits are those of
// the answer's first token.
func (s *Session) PRSRisk(ctx context.Context, scores []float64, names []string, question string) (float64, error) {
	a, err := newPRSArgs(scores, names)
	if err != nil {
		return math.NaN(), err
	}
	defer a.free()
	cq := a.strs.str(question)
	cr := (*C.double)(C.malloc(C.sizeof_double))
	defer C.free(unsafe.Pointer(cr))
	*cr = C.double(math.NaN())
	_, err = s.generate(ctx, nil, func(c *C.mg_context, _ **C.char, p *C.mg_gen_params) C.mg_status {
		return C.mg_prs_predict(nil, cr, c, a.scores, a.names, a.n, cq, p)
	})
	runtime.KeepAlive(scores)
	return float64(*cr), err
}

// PRSPredictBatch is Model.PRSPredictBatch on the session (its sequence is
// left holding the last prompt).
func (s *Session) PRSPredictBatch(ctx context.Context, scores [][]float64, names []string, questions []string) ([][]float64, error) {
	b, err := newPRSBatch(scores, names, questions)
	if err != nil {
		return nil, err
	}
	defer b.free()
	cr := b.alloc()
	defer C.free(unsafe.Pointer(cr))
	nInd, nq := C.size_t(b.rows), C.size_t(b.nq)
	_, err = s.generate(ctx, nil, func(c *C.mg_context, _ **C.char, _ *C.mg_gen_params) C.mg_status {
		return C.mg_prs_predict_batch(cr, c, b.scores, nInd, b.names, b.n, b.questions, nq)
	})
	runtime.KeepAlive(b.flat)
	return b.result(cr), err
}

// ScoreImage returns the score image the model's genomics encoder reads for
// these scores (scores[i] named names[i]): an RGB8 image of the model's
// genome.grid of squares, one per trait, each channel a p-value threshold
// holding 128 + genome.z_scale * (score - mean) / std, rounded half to even
// and clipped to 0..255 (128 for a score not given). Close the image when
// done.
func (m *Model) ScoreImage(scores []float64, names []string) (*Image, error) {
	a, err := newPRSArgs(scores, names)
	if err != nil {
		return nil, err
	}
	defer a.free()
	if err := m.life.acquire(); err != nil {
		return nil, err
	}
	defer m.life.release()
	eb := newErrbuf()
	defer eb.free()
	var ptr *C.mg_image
	st := C.mg_prs_score_image(&ptr, m.ptr, a.scores, a.names, a.n, eb.p, eb.n)
	runtime.KeepAlive(scores)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapImage(ptr), nil
}
