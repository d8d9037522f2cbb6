package medgemini

/*
#include <stdlib.h>
#include "medgemini.h"

extern int32_t medgeminiGoPRSProgress(void *user, uint64_t done, uint64_t total);

static mg_status mgo_set_prs_progress(mg_prs *prs, uintptr_t handle) {
    return mg_prs_set_progress(prs, (mg_prs_progress)medgeminiGoPRSProgress, (void *)handle);
}
*/
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// PRS holds one genotype set, the scoring files matched to it and, after
// Compute, the per-sample polygenic scores (plink2 --score rules, see the
// library's docs/PRS.md). A PRS is used by one goroutine at a time
// (Interrupt may be called from any).
type PRS struct {
	ptr      *C.mg_prs
	life     life
	progress func(done, total uint64) error
}

// PRS flags (PRSFlags option).
const (
	PRSNoMeanImputation = uint32(C.MG_PRS_NO_MEAN_IMPUTATION)
	PRSDominant         = uint32(C.MG_PRS_DOMINANT)
	PRSRecessive        = uint32(C.MG_PRS_RECESSIVE)
	PRSKeepAmbiguous    = uint32(C.MG_PRS_KEEP_AMBIGUOUS)
	PRSKeepMultiallelic = uint32(C.MG_PRS_KEEP_MULTIALLELIC)
	PRSDoubleSums       = uint32(C.MG_PRS_DOUBLE_SUMS)
)

// VCF dosage sources (PRSDosage option).
const (
	DosageDS   = uint32(C.MG_PRS_DOSAGE_DS)
	DosageGP   = uint32(C.MG_PRS_DOSAGE_GP)
	DosageHDS  = uint32(C.MG_PRS_DOSAGE_HDS)
	DosageNone = uint32(C.MG_PRS_DOSAGE_NONE)
)

// Result columns for PRS.Results.
type PRSColumn int32

// Result columns, as in a .sscore file.
const (
	ColSum                  PRSColumn = C.MG_PRS_COL_SUM
	ColAvg                  PRSColumn = C.MG_PRS_COL_AVG
	ColAlleleCount          PRSColumn = C.MG_PRS_COL_ALLELE_CT
	ColDenom                PRSColumn = C.MG_PRS_COL_DENOM
	ColNamedAlleleDosageSum PRSColumn = C.MG_PRS_COL_NAMED_ALLELE_DOSAGE_SUM
)

type prsOptions struct {
	flags         uint32
	minOverlap    *float64
	threads       uint32
	blockVariants uint32
	dosage        uint32
}

// PRSOption configures OpenPlink and OpenVCF.
type PRSOption func(*prsOptions)

// PRSFlags sets MG_PRS_* flags (PRSNoMeanImputation, ...).
func PRSFlags(flags uint32) PRSOption { return func(o *prsOptions) { o.flags |= flags } }

// PRSMinOverlap drops PGS Catalog scores matching less than this fraction of
// their variants (default 0.75; 0 keeps every score).
func PRSMinOverlap(f float64) PRSOption { return func(o *prsOptions) { o.minOverlap = &f } }

// PRSThreads sets Compute's thread count (0: one per CPU).
func PRSThreads(n int) PRSOption { return func(o *prsOptions) { o.threads = uint32(n) } }

// PRSBlockVariants sets the variants decoded per block (0: 4096).
func PRSBlockVariants(n int) PRSOption { return func(o *prsOptions) { o.blockVariants = uint32(n) } }

// PRSDosage picks the VCF field dosages come from (DosageDS, ...).
func PRSDosage(d uint32) PRSOption { return func(o *prsOptions) { o.dosage = d } }

func prsParams(opts []PRSOption) C.mg_prs_params {
	o := prsOptions{dosage: DosageDS}
	for _, f := range opts {
		f(&o)
	}
	var p C.mg_prs_params
	C.mg_prs_params_init(&p)
	p.flags = C.uint32_t(o.flags)
	if o.minOverlap != nil {
		p.min_overlap = C.double(*o.minOverlap)
	}
	p.n_threads = C.uint32_t(o.threads)
	p.block_variants = C.uint32_t(o.blockVariants)
	p.vcf_dosage = C.uint32_t(o.dosage)
	return p
}

func wrapPRS(p *C.mg_prs) *PRS {
	r := &PRS{ptr: p}
	runtime.SetFinalizer(r, (*PRS).Close)
	return r
}

// OpenPlink opens the PLINK 1 binary set prefix.bed/.bim/.fam.
func OpenPlink(prefix string, opts ...PRSOption) (*PRS, error) {
	params := prsParams(opts)
	cprefix := C.CString(prefix)
	defer C.free(unsafe.Pointer(cprefix))
	eb := newErrbuf()
	defer eb.free()
	var p *C.mg_prs
	st := C.mg_prs_open_plink(&p, cprefix, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapPRS(p), nil
}

// OpenVCF opens a VCF or BCF file (plain or bgzip-compressed).
func OpenVCF(path string, opts ...PRSOption) (*PRS, error) {
	params := prsParams(opts)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	eb := newErrbuf()
	defer eb.free()
	var p *C.mg_prs
	st := C.mg_prs_open_vcf(&p, cpath, &params, eb.p, eb.n)
	if st != C.MG_OK {
		return nil, eb.err(st)
	}
	return wrapPRS(p), nil
}

// Close frees the handle. Closing twice is harmless.
func (r *PRS) Close() error {
	if r == nil || !r.life.close() {
		return nil
	}
	runtime.SetFinalizer(r, nil)
	C.mg_prs_free(r.ptr)
	r.ptr = nil
	return nil
}

func (r *PRS) check(st C.mg_status) error {
	if st == C.MG_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.mg_prs_errmsg(r.ptr))}
}

func (r *PRS) pathCall(path string, f func(cpath *C.char) C.mg_status) error {
	if err := r.life.acquire(); err != nil {
		return err
	}
	defer r.life.release()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return r.check(f(cpath))
}

// ReadFreq reads allele frequencies (.afreq or .frq) for mean imputation.
func (r *PRS) ReadFreq(path string) error {
	return r.pathCall(path, func(cpath *C.char) C.mg_status {
		return C.mg_prs_read_freq(r.ptr, cpath)
	})
}

// AddScores adds the scores of a scoring file (PGS Catalog or PLINK 2 wide
// format) and returns how many it added.
func (r *PRS) AddScores(path string) (int, error) {
	var n C.uint32_t
	err := r.pathCall(path, func(cpath *C.char) C.mg_status {
		return C.mg_prs_add_scores(r.ptr, &n, cpath)
	})
	return int(n), err
}

// Compute streams the genotypes once and computes every score. It may be
// called again (after adding scores, say); results are replaced.
func (r *PRS) Compute() error { return r.ComputeContext(context.Background()) }

// ComputeContext is Compute that stops when ctx is done: at the next block
// of variants, with an error matching ErrInterrupted and ctx.Err(), and no
// results (until a later compute succeeds).
func (r *PRS) ComputeContext(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := cancelledError(ctx); err != nil {
		return err
	}
	if err := r.life.acquire(); err != nil {
		return err
	}
	defer r.life.release()
	// The callback is installed for this call only (and also without a
	// progress function when ctx can be cancelled: it closes the window in
	// which an interrupt made just before the compute starts is dropped).
	state := &prsProgressState{ctx: ctx, fn: r.progress}
	if state.fn != nil || ctx.Done() != nil {
		h := cgo.NewHandle(state)
		defer h.Delete()
		if err := r.check(C.mgo_set_prs_progress(r.ptr, C.uintptr_t(h))); err != nil {
			return err
		}
		defer C.mg_prs_set_progress(r.ptr, nil, nil) // runs before h.Delete
	}
	var done, exited chan struct{}
	if ctx.Done() != nil {
		done, exited = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			select {
			case <-ctx.Done():
				C.mg_prs_interrupt(r.ptr)
			case <-done:
			}
		}()
	}
	st := C.mg_prs_compute(r.ptr)
	if done != nil {
		close(done)
		<-exited
	}
	if state.panicked {
		panic(state.panicVal)
	}
	if st == C.MG_OK {
		return nil
	}
	e := &Error{Status: Status(st), Message: C.GoString(C.mg_prs_errmsg(r.ptr))}
	if st == C.MG_E_INTERRUPTED {
		if state.err != nil {
			e.Cause = state.err
		} else if ctx.Err() != nil {
			e.Cause = ctx.Err()
		}
	}
	return e
}

// SetProgress makes later computes call fn with the variant rows scored so
// far (done of total): before the first block (done 0), at most every
// 100 ms between blocks, and once with done == total at the end. It runs on
// the goroutine that called Compute. An error from fn stops the compute (no
// results); Compute then returns an error matching ErrInterrupted that
// wraps it. (The library ignores an error from the final report, when
// every score is computed already.) nil removes the function.
func (r *PRS) SetProgress(fn func(done, total uint64) error) error {
	if err := r.life.acquire(); err != nil {
		return err
	}
	defer r.life.release()
	r.progress = fn
	return nil
}

// Interrupt asks a compute running on r to stop at its next block of
// variants; it then returns an error matching ErrInterrupted, and no
// results. Safe from any goroutine. A request made while no compute runs is
// dropped when the next one starts.
func (r *PRS) Interrupt() error {
	if err := r.life.acquire(); err != nil {
		return err
	}
	defer r.life.release()
	return newError(C.mg_prs_interrupt(r.ptr), "mg_prs_interrupt failed")
}

// prsProgressState is what the compute progress callback reaches through a
// cgo.Handle.
type prsProgressState struct {
	ctx      context.Context
	fn       func(done, total uint64) error
	err      error
	panicked bool
	panicVal interface{}
}

func (s *prsProgressState) progress(done, total uint64) (ret C.int32_t) {
	if s.err != nil || s.panicked {
		return 1
	}
	if s.ctx.Err() != nil {
		return 1
	}
	if s.fn == nil {
		return 0
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked, s.panicVal, ret = true, r, 1
		}
	}()
	if err := s.fn(done, total); err != nil {
		s.err = err
		return 1
	}
	if s.ctx.Err() != nil {
		return 1 // cancelled meanwhile: stop now rather than when the interrupt lands
	}
	return 0
}

// WriteSScore writes the results as a PLINK 2 .sscore file.
func (r *PRS) WriteSScore(path string) error {
	return r.pathCall(path, func(cpath *C.char) C.mg_status {
		return C.mg_prs_write_sscore(r.ptr, cpath)
	})
}

// WriteFreq writes every variant's founder frequency as a plink2 .afreq
// file that ReadFreq reads back exactly: scores of a subset of the samples
// computed with it equal those of the whole set (hard calls only).
func (r *PRS) WriteFreq(path string) error {
	return r.pathCall(path, func(cpath *C.char) C.mg_status {
		return C.mg_prs_write_freq(r.ptr, cpath)
	})
}

// Samples is the number of samples.
func (r *PRS) Samples() int {
	if r.life.acquire() != nil {
		return 0
	}
	defer r.life.release()
	return int(C.mg_prs_sample_count(r.ptr))
}

// Variants is the number of variants in the genotype set.
func (r *PRS) Variants() int {
	if r.life.acquire() != nil {
		return 0
	}
	defer r.life.release()
	return int(C.mg_prs_variant_count(r.ptr))
}

// Scores is the number of scores added (kept or not).
func (r *PRS) Scores() int {
	if r.life.acquire() != nil {
		return 0
	}
	defer r.life.release()
	return int(C.mg_prs_score_count(r.ptr))
}

// SampleID is a sample's family and individual ID.
type SampleID struct{ FID, IID string }

// SampleIDs lists the samples in .fam order.
func (r *PRS) SampleIDs() ([]SampleID, error) {
	if err := r.life.acquire(); err != nil {
		return nil, err
	}
	defer r.life.release()
	n := uint64(C.mg_prs_sample_count(r.ptr))
	out := make([]SampleID, 0, n)
	for i := uint64(0); i < n; i++ {
		var fid, iid *C.char
		ci := C.uint64_t(i)
		st := C.mg_prs_sample_id(&fid, &iid, r.ptr, ci)
		if err := r.check(st); err != nil {
			return nil, err
		}
		out = append(out, SampleID{FID: C.GoString(fid), IID: C.GoString(iid)})
	}
	return out, nil
}

// ScoreNames lists the scores' names in the order they were added.
func (r *PRS) ScoreNames() []string {
	if r.life.acquire() != nil {
		return nil
	}
	defer r.life.release()
	n := uint32(C.mg_prs_score_count(r.ptr))
	out := make([]string, 0, n)
	for k := uint32(0); k < n; k++ {
		ck := C.uint32_t(k)
		out = append(out, C.GoString(C.mg_prs_score_name(r.ptr, ck)))
	}
	return out
}

// MatchReport is how one score's file matched the target.
type MatchReport struct {
	Kept         bool
	Rows         uint64
	Matched      uint64
	Flipped      uint64
	Ambiguous    uint64
	Multiallelic uint64
	Duplicate    uint64
	Unmatched    uint64
	Overlap      float64
}

// MatchReport describes score k's matching.
func (r *PRS) MatchReport(k int) (MatchReport, error) {
	if err := r.life.acquire(); err != nil {
		return MatchReport{}, err
	}
	defer r.life.release()
	var c C.mg_prs_match_report
	c.struct_size = C.uint32_t(C.sizeof_mg_prs_match_report)
	ck := C.uint32_t(k)
	st := C.mg_prs_match_report_get(&c, r.ptr, ck)
	if err := r.check(st); err != nil {
		return MatchReport{}, err
	}
	return MatchReport{
		Kept: c.kept != 0, Rows: uint64(c.n_rows), Matched: uint64(c.n_matched),
		Flipped: uint64(c.n_flipped), Ambiguous: uint64(c.n_ambiguous),
		Multiallelic: uint64(c.n_multiallelic), Duplicate: uint64(c.n_duplicate),
		Unmatched: uint64(c.n_unmatched), Overlap: float64(c.overlap),
	}, nil
}

// Results returns one result column, one value per sample in .fam order.
// score is ignored for the shared columns; a dropped score gives NaN.
func (r *PRS) Results(col PRSColumn, score int) ([]float64, error) {
	if err := r.life.acquire(); err != nil {
		return nil, err
	}
	defer r.life.release()
	n := int(C.mg_prs_sample_count(r.ptr))
	out := make([]float64, n)
	var buf *C.double
	if n > 0 {
		buf = (*C.double)(unsafe.Pointer(&out[0]))
	}
	cn, ccol, ck := C.size_t(n), C.int32_t(col), C.uint32_t(score)
	st := C.mg_prs_results(buf, cn, r.ptr, ccol, ck)
	if err := r.check(st); err != nil {
		return nil, err
	}
	return out, nil
}

// Sums returns the SUM column of score k.
func (r *PRS) Sums(k int) ([]float64, error) { return r.Results(ColSum, k) }

// Averages returns the AVG column (SUM / DENOM) of score k.
func (r *PRS) Averages(k int) ([]float64, error) { return r.Results(ColAvg, k) }
