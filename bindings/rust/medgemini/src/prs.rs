//! Polygenic scores, computed as PLINK 2 `--score` does.
use crate::error::{Error, Result, Status};
use crate::sys;
use crate::util::{check, check_buf, opt_str, path_cstring, static_str, ERRLEN};
use std::any::Any;
use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

/// The C handle, shared by the [`Prs`] and its [`PrsInterrupter`]s; freed
/// when the last of them is dropped, so an interrupt never reaches a freed
/// handle and the free never runs during another call.
struct PrsInner {
    ptr: NonNull<sys::mg_prs>,
}

// SAFETY: through a PrsInner shared between threads only mg_prs_interrupt
// is ever called (callable from any thread); every other call goes through
// the single, !Sync Prs that owns the first reference.
unsafe impl Send for PrsInner {}
unsafe impl Sync for PrsInner {}

impl Drop for PrsInner {
    fn drop(&mut self) {
        unsafe { sys::mg_prs_free(self.ptr.as_ptr()) }
    }
}

/// One genotype set, the scoring files matched to it and, after
/// [`compute`](Prs::compute), the per-sample results. Used by one thread at
/// a time (`Send`, not `Sync`).
pub struct Prs {
    inner: Arc<PrsInner>,
    _not_sync: PhantomData<Cell<()>>,
}

/// Stops a running [`Prs::compute`] from any thread. Cloneable,
/// `Send + Sync`; it keeps the C handle alive, so it may outlive the
/// [`Prs`] it came from (interrupting then does nothing) — and holds the
/// handle's memory until it is dropped too.
#[derive(Clone)]
pub struct PrsInterrupter {
    inner: Arc<PrsInner>,
}

impl PrsInterrupter {
    /// Asks the running compute (if any) to stop at its next block of
    /// variants: it returns [`Status::Interrupted`] and no results. A
    /// request made while no compute runs is dropped when the next one
    /// starts.
    pub fn interrupt(&self) -> Result<()> {
        check(unsafe { sys::mg_prs_interrupt(self.inner.ptr.as_ptr()) })
    }
}

impl std::fmt::Debug for PrsInterrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrsInterrupter")
    }
}

/// What the compute progress callback sees through user_data.
struct Hook<'a> {
    f: &'a mut dyn FnMut(u64, u64) -> bool,
    panic: Option<Box<dyn Any + Send>>,
}

unsafe extern "C" fn on_progress(ud: *mut c_void, done: u64, total: u64) -> i32 {
    // SAFETY: ud is the &mut Hook of Prs::compute_with_progress, registered
    // only while that call runs; the library calls back on its thread.
    let st = &mut *(ud as *mut Hook);
    if st.panic.is_some() {
        return 1;
    }
    // A panic must not unwind through C: catch it, stop, rethrow after.
    match panic::catch_unwind(AssertUnwindSafe(|| (st.f)(done, total))) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            st.panic = Some(e);
            1
        }
    }
}

/// Which VCF field dosages come from (plink2 `--vcf FILE dosage=FIELD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VcfDosage {
    #[default]
    Ds,
    Gp,
    Hds,
    /// GT hard calls only.
    None,
}

/// Options of [`Prs::open_plink`] and [`Prs::open_vcf`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PrsOptions {
    /// Missing calls add nothing and are left out of DENOM.
    pub no_mean_imputation: bool,
    /// Dosage d -> min(d, 1).
    pub dominant: bool,
    /// Dosage d -> max(d - 1, 0).
    pub recessive: bool,
    /// Keep A/T and C/G matches.
    pub keep_ambiguous: bool,
    /// Keep matches at positions holding several variants.
    pub keep_multiallelic: bool,
    /// Sum in double precision as plink2 does, even where the CPU has AMX or AVX512-VNNI.
    pub double_sums: bool,
    /// PGS Catalog scores matching less than this fraction are dropped.
    pub min_overlap: f64,
    /// Threads of compute; 0 = one per online CPU.
    pub n_threads: u32,
    /// Variants decoded per block; 0 = 4096.
    pub block_variants: u32,
    pub vcf_dosage: VcfDosage,
}

impl Default for PrsOptions {
    fn default() -> Self {
        let p = params_default();
        PrsOptions {
            no_mean_imputation: false,
            dominant: false,
            recessive: false,
            keep_ambiguous: false,
            keep_multiallelic: false,
            double_sums: false,
            min_overlap: p.min_overlap,
            n_threads: p.n_threads,
            block_variants: p.block_variants,
            vcf_dosage: VcfDosage::Ds,
        }
    }
}

impl PrsOptions {
    pub fn no_mean_imputation(mut self, on: bool) -> Self {
        self.no_mean_imputation = on;
        self
    }
    pub fn dominant(mut self, on: bool) -> Self {
        self.dominant = on;
        self
    }
    pub fn recessive(mut self, on: bool) -> Self {
        self.recessive = on;
        self
    }
    pub fn keep_ambiguous(mut self, on: bool) -> Self {
        self.keep_ambiguous = on;
        self
    }
    pub fn keep_multiallelic(mut self, on: bool) -> Self {
        self.keep_multiallelic = on;
        self
    }
    pub fn double_sums(mut self, on: bool) -> Self {
        self.double_sums = on;
        self
    }
    pub fn min_overlap(mut self, f: f64) -> Self {
        self.min_overlap = f;
        self
    }
    pub fn n_threads(mut self, n: u32) -> Self {
        self.n_threads = n;
        self
    }
    pub fn block_variants(mut self, n: u32) -> Self {
        self.block_variants = n;
        self
    }
    pub fn vcf_dosage(mut self, d: VcfDosage) -> Self {
        self.vcf_dosage = d;
        self
    }

    fn to_c(&self) -> sys::mg_prs_params {
        let mut p = params_default();
        let bits = [
            (self.no_mean_imputation, sys::MG_PRS_NO_MEAN_IMPUTATION),
            (self.dominant, sys::MG_PRS_DOMINANT),
            (self.recessive, sys::MG_PRS_RECESSIVE),
            (self.keep_ambiguous, sys::MG_PRS_KEEP_AMBIGUOUS),
            (self.keep_multiallelic, sys::MG_PRS_KEEP_MULTIALLELIC),
            (self.double_sums, sys::MG_PRS_DOUBLE_SUMS),
        ];
        for (on, bit) in bits {
            if on {
                p.flags |= bit;
            }
        }
        p.min_overlap = self.min_overlap;
        p.n_threads = self.n_threads;
        p.block_variants = self.block_variants;
        p.vcf_dosage = match self.vcf_dosage {
            VcfDosage::Ds => sys::MG_PRS_DOSAGE_DS,
            VcfDosage::Gp => sys::MG_PRS_DOSAGE_GP,
            VcfDosage::Hds => sys::MG_PRS_DOSAGE_HDS,
            VcfDosage::None => sys::MG_PRS_DOSAGE_NONE,
        };
        p
    }
}

fn params_default() -> sys::mg_prs_params {
    unsafe {
        let mut p = std::mem::zeroed::<sys::mg_prs_params>();
        sys::mg_prs_params_init(&mut p);
        p
    }
}

/// Result columns, as in a .sscore file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrsColumn {
    /// Per score: the weighted dosage sum.
    Sum,
    /// Per score: SUM / DENOM.
    Avg,
    /// Shared: alleles counted.
    AlleleCt,
    /// Shared.
    Denom,
    /// Shared.
    NamedAlleleDosageSum,
}

impl PrsColumn {
    fn code(self) -> i32 {
        match self {
            PrsColumn::Sum => sys::MG_PRS_COL_SUM,
            PrsColumn::Avg => sys::MG_PRS_COL_AVG,
            PrsColumn::AlleleCt => sys::MG_PRS_COL_ALLELE_CT,
            PrsColumn::Denom => sys::MG_PRS_COL_DENOM,
            PrsColumn::NamedAlleleDosageSum => sys::MG_PRS_COL_NAMED_ALLELE_DOSAGE_SUM,
        }
    }
}

/// How one score's file matched the target.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchReport {
    pub kept: bool,
    pub n_rows: u64,
    pub n_matched: u64,
    pub n_flipped: u64,
    pub n_ambiguous: u64,
    pub n_multiallelic: u64,
    pub n_duplicate: u64,
    pub n_unmatched: u64,
    pub overlap: f64,
}

fn open(
    path: &Path,
    opts: &PrsOptions,
    f: unsafe extern "C" fn(*mut *mut sys::mg_prs, *const c_char, *const sys::mg_prs_params, *mut c_char, usize) -> i32,
) -> Result<Prs> {
    let c = path_cstring(path)?;
    let p = opts.to_c();
    let mut err = [0 as c_char; ERRLEN];
    let mut out = ptr::null_mut();
    let rc = unsafe { f(&mut out, c.as_ptr(), &p, err.as_mut_ptr(), ERRLEN) };
    check_buf(rc, &err)?;
    let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "NULL PRS handle"))?;
    Ok(Prs { inner: Arc::new(PrsInner { ptr }), _not_sync: PhantomData })
}

impl Prs {
    /// Opens the PLINK 1 binary set `prefix`.bed/.bim/.fam.
    pub fn open_plink(prefix: impl AsRef<Path>, opts: &PrsOptions) -> Result<Prs> {
        open(prefix.as_ref(), opts, sys::mg_prs_open_plink)
    }

    /// Opens a VCF or BCF file (plain or bgzip-compressed).
    pub fn open_vcf(path: impl AsRef<Path>, opts: &PrsOptions) -> Result<Prs> {
        open(path.as_ref(), opts, sys::mg_prs_open_vcf)
    }

    fn ptr(&self) -> *mut sys::mg_prs {
        self.inner.ptr.as_ptr()
    }

    /// A handle that interrupts this set's running
    /// [`compute`](Self::compute) from any thread.
    pub fn interrupter(&self) -> PrsInterrupter {
        PrsInterrupter { inner: Arc::clone(&self.inner) }
    }

    fn check(&self, rc: i32) -> Result<()> {
        if rc == sys::MG_OK {
            return Ok(());
        }
        let status = Status::from_code(rc);
        let msg = unsafe { static_str(sys::mg_prs_errmsg(self.ptr())) };
        Err(Error::new(status, if msg.is_empty() { status.description() } else { msg }))
    }

    /// Reads allele frequencies for mean imputation (.afreq or .frq).
    pub fn read_freq(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let c = path_cstring(path.as_ref())?;
        let rc = unsafe { sys::mg_prs_read_freq(self.ptr(), c.as_ptr()) };
        self.check(rc)
    }

    /// Adds the scores of one scoring file; returns how many it added.
    pub fn add_scores(&mut self, path: impl AsRef<Path>) -> Result<u32> {
        let c = path_cstring(path.as_ref())?;
        let mut n = 0u32;
        let rc = unsafe { sys::mg_prs_add_scores(self.ptr(), &mut n, c.as_ptr()) };
        self.check(rc)?;
        Ok(n)
    }

    /// Streams the genotypes once and computes every score.
    /// [`Status::Interrupted`] (and no results) when stopped by a
    /// [`PrsInterrupter`].
    pub fn compute(&mut self) -> Result<()> {
        let rc = unsafe { sys::mg_prs_compute(self.ptr()) };
        self.check(rc)
    }

    /// [`compute`](Self::compute), calling `f(done, total)` with the
    /// variant rows scored: before the first block (done = 0), at most
    /// every 100 ms between blocks, and once with done == total at the end.
    /// `f` returns true to go on, false to stop: the call then fails with
    /// [`Status::Interrupted`] and no results (false at the final call
    /// changes nothing: the results are complete). A panic in `f` stops the
    /// compute and is resumed once it has returned.
    pub fn compute_with_progress(&mut self, mut f: impl FnMut(u64, u64) -> bool) -> Result<()> {
        let mut hook = Hook { f: &mut f, panic: None };
        let ud = &mut hook as *mut Hook as *mut c_void;
        let rc = unsafe { sys::mg_prs_set_progress(self.ptr(), Some(on_progress), ud) };
        self.check(rc)?;
        let rc = unsafe { sys::mg_prs_compute(self.ptr()) };
        // Read the outcome before clearing: every call resets the message.
        let result = self.check(rc);
        // Never leave the callback registered past this borrow of f.
        let cleared = unsafe { sys::mg_prs_set_progress(self.ptr(), None, ptr::null_mut()) };
        debug_assert_eq!(cleared, sys::MG_OK);
        if let Some(p) = hook.panic.take() {
            panic::resume_unwind(p);
        }
        result
    }

    pub fn sample_count(&self) -> u64 {
        unsafe { sys::mg_prs_sample_count(self.ptr()) }
    }

    pub fn variant_count(&self) -> u64 {
        unsafe { sys::mg_prs_variant_count(self.ptr()) }
    }

    /// Scores added, kept or not.
    pub fn score_count(&self) -> u32 {
        unsafe { sys::mg_prs_score_count(self.ptr()) }
    }

    /// Family and individual ID of sample `i`.
    pub fn sample_id(&self, i: u64) -> Result<(&str, &str)> {
        let (mut fid, mut iid) = (ptr::null(), ptr::null());
        let rc = unsafe { sys::mg_prs_sample_id(&mut fid, &mut iid, self.ptr(), i) };
        self.check(rc)?;
        Ok(unsafe { (static_str(fid), static_str(iid)) })
    }

    /// (FID, IID) of every sample, in .fam order.
    pub fn sample_ids(&self) -> Result<Vec<(String, String)>> {
        (0..self.sample_count())
            .map(|i| self.sample_id(i).map(|(f, i)| (f.to_owned(), i.to_owned())))
            .collect()
    }

    /// Name of score `k`.
    pub fn score_name(&self, k: u32) -> Option<&str> {
        unsafe { opt_str(sys::mg_prs_score_name(self.ptr(), k)) }
    }

    /// Names of every score, in order added.
    pub fn score_names(&self) -> Vec<String> {
        (0..self.score_count()).map(|k| self.score_name(k).unwrap_or("").to_owned()).collect()
    }

    /// How score `k` matched the target.
    pub fn match_report(&self, k: u32) -> Result<MatchReport> {
        let mut r = unsafe { std::mem::zeroed::<sys::mg_prs_match_report>() };
        r.struct_size = std::mem::size_of::<sys::mg_prs_match_report>() as u32;
        let rc = unsafe { sys::mg_prs_match_report_get(&mut r, self.ptr(), k) };
        self.check(rc)?;
        Ok(MatchReport {
            kept: r.kept != 0,
            n_rows: r.n_rows,
            n_matched: r.n_matched,
            n_flipped: r.n_flipped,
            n_ambiguous: r.n_ambiguous,
            n_multiallelic: r.n_multiallelic,
            n_duplicate: r.n_duplicate,
            n_unmatched: r.n_unmatched,
            overlap: r.overlap,
        })
    }

    /// One result column, one value per sample in .fam order (`score` is
    /// ignored for the shared columns; a dropped score gives NaN).
    pub fn results(&self, column: PrsColumn, score: u32) -> Result<Vec<f64>> {
        let n = usize::try_from(self.sample_count())
            .map_err(|_| Error::new(Status::Limit, "too many samples"))?;
        let mut buf = vec![0f64; n];
        let rc = unsafe { sys::mg_prs_results(buf.as_mut_ptr(), n, self.ptr(), column.code(), score) };
        self.check(rc)?;
        Ok(buf)
    }

    /// Shortcut for `results(PrsColumn::Sum, score)`.
    pub fn sums(&self, score: u32) -> Result<Vec<f64>> {
        self.results(PrsColumn::Sum, score)
    }

    /// Writes the results as a PLINK 2 .sscore file.
    pub fn write_sscore(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let c = path_cstring(path.as_ref())?;
        let rc = unsafe { sys::mg_prs_write_sscore(self.ptr(), c.as_ptr()) };
        self.check(rc)
    }

    /// Writes every variant's founder frequency as a plink2 .afreq file
    /// that [`read_freq`](Self::read_freq) reads back exactly: scores of a
    /// subset of the samples computed with it equal those of the whole set
    /// (hard calls only).
    pub fn write_freq(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let c = path_cstring(path.as_ref())?;
        let rc = unsafe { sys::mg_prs_write_freq(self.ptr(), c.as_ptr()) };
        self.check(rc)
    }
}

impl std::fmt::Debug for Prs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prs")
            .field("samples", &self.sample_count())
            .field("variants", &self.variant_count())
            .field("scores", &self.score_count())
            .finish()
    }
}
