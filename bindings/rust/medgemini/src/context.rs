//! Contexts: generation, reports, VQA, streaming and interruption.
use crate::error::{Error, Result, Status};
use crate::image::Image;
use crate::volume::{SliceOptions, Volume};
use crate::model::Model;
use crate::sys;
use crate::util::{check, check_scores, cstring, cstrings, static_str, take_string};
use std::any::Any;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The C context, shared by the [`Context`] and its [`Interrupter`]s; freed
/// when the last of them is dropped, so an interrupt never reaches a freed
/// context and the free never runs during another call.
struct CtxInner {
    ptr: NonNull<sys::mg_context>,
}

// SAFETY: through CtxInner shared between threads only mg_context_interrupt
// is ever called (callable from any thread); every other call goes through
// the single, !Sync Context that owns the first reference.
unsafe impl Send for CtxInner {}
unsafe impl Sync for CtxInner {}

impl Drop for CtxInner {
    fn drop(&mut self) {
        unsafe { sys::mg_context_free(self.ptr.as_ptr()) }
    }
}

/// Per-conversation state over a [`Model`]: the KV cache and sampler.
/// Used by one thread at a time (`Send`, not `Sync`); create one per thread
/// to run a shared model in parallel.
pub struct Context {
    inner: Arc<CtxInner>,
    model: Model,
    /// The draft model's context of speculative decoding (set_draft).
    draft: Option<Box<Context>>,
    _not_sync: PhantomData<Cell<()>>,
}

/// Stops the call running on a [`Context`] from any thread. Cloneable,
/// `Send + Sync`; it keeps the C context alive, so it may outlive the
/// [`Context`] it came from (interrupting then does nothing).
#[derive(Clone)]
pub struct Interrupter {
    inner: Arc<CtxInner>,
}

impl Interrupter {
    /// Asks the running call (if any) to stop: it returns
    /// [`Status::Interrupted`] within one token. A request made while no
    /// call runs is dropped when the next call starts.
    pub fn interrupt(&self) -> Result<()> {
        check(unsafe { sys::mg_context_interrupt(self.inner.ptr.as_ptr()) })
    }
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupter")
    }
}

/// Options of [`Context::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ContextOptions {
    /// Threads of the library's own kernels; 0 = one per online CPU.
    pub n_threads: u32,
    /// Token capacity; 0 = the model's context length capped at 8192.
    pub n_ctx: u32,
    /// Seed of the context's sampler.
    pub seed: u64,
    /// Keep the KV cache's keys and values as bf16 (`MG_CONTEXT_KV_BF16`):
    /// half its memory; arithmetic stays f32.
    pub kv_bf16: bool,
    /// Keep what the last call read (default true): prefix reuse (a prompt
    /// sharing leading tokens, image blocks included, with the context's
    /// sequence is read only from where it differs) and the encoder-output
    /// cache (an [`Image`] or [`Volume`] already encoded is not encoded
    /// again; identity is by handle). The texts are the same either way;
    /// scores computed from the logits (e.g. [`Context::prs_risk`]) may
    /// differ in the last float digits, the kept prefix not being read
    /// again in the same batches. False sets `MG_CONTEXT_NO_REUSE`: every prompt is read from scratch,
    /// and [`Context::chat`] is [`Status::Unsupported`].
    pub reuse: bool,
    /// Decode together with the batch's other contexts (see [`Batch`]);
    /// the batch must be on the same model.
    pub batch: Option<crate::Batch>,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions { n_threads: 0, n_ctx: 0, seed: 0, kv_bf16: false, reuse: true, batch: None }
    }
}

impl ContextOptions {
    pub fn kv_bf16(mut self, on: bool) -> Self {
        self.kv_bf16 = on;
        self
    }
    /// See [`reuse`](Self::reuse); `reuse(false)` is `MG_CONTEXT_NO_REUSE`.
    pub fn reuse(mut self, on: bool) -> Self {
        self.reuse = on;
        self
    }
    pub fn n_threads(mut self, n: u32) -> Self {
        self.n_threads = n;
        self
    }
    pub fn n_ctx(mut self, n: u32) -> Self {
        self.n_ctx = n;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// See [`batch`](Self::batch).
    pub fn batch(mut self, batch: &crate::Batch) -> Self {
        self.batch = Some(batch.clone());
        self
    }
}

/// Generation settings (`mg_gen_params`); `Default` takes the library's
/// defaults. Set fields directly or chain the builder methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GenOptions {
    /// Most tokens to generate (library default 256).
    pub max_tokens: u32,
    /// 0 = greedy (default).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i32,
    /// 1 = off.
    pub top_p: f32,
    /// 1 = off.
    pub repetition_penalty: f32,
    /// 0 = keep the context's RNG state; otherwise reseed for this call.
    pub seed: u64,
    /// Generation stops at any of these (left out of the text).
    pub stop: Vec<String>,
    /// Reports and VQA: None = the model's default system text, Some("") =
    /// none. Plain generation uses none unless set.
    pub system_prompt: Option<String>,
    /// Reports: None = the model's default instruction.
    pub instruction: Option<String>,
    /// Plain generation: use the prompt as it is (no BOS, no chat turn).
    pub raw_prompt: bool,
    /// Speculative decoding from the sequence's own n-grams
    /// (`MG_GEN_DRAFT_NGRAM`); see [`GenOptions::draft_ngram`].
    pub draft_ngram: bool,
    /// Most tokens per draft of a draft model ([`Context::set_draft`]);
    /// 0 = the library's default (4), at most 16.
    pub n_draft: u32,
    /// Called with the call's [`Progress`]; see [`GenOptions::progress`].
    pub progress: Option<ProgressCallback>,
}

impl Default for GenOptions {
    fn default() -> Self {
        let p = gen_params_default();
        GenOptions {
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            repetition_penalty: p.repetition_penalty,
            seed: p.seed,
            stop: Vec::new(),
            system_prompt: None,
            instruction: None,
            raw_prompt: false,
            draft_ngram: false,
            n_draft: 0,
            progress: None,
        }
    }
}

impl GenOptions {
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = n;
        self
    }
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }
    pub fn top_k(mut self, k: i32) -> Self {
        self.top_k = k;
        self
    }
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = p;
        self
    }
    pub fn repetition_penalty(mut self, r: f32) -> Self {
        self.repetition_penalty = r;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }
    pub fn system_prompt(mut self, s: impl Into<String>) -> Self {
        self.system_prompt = Some(s.into());
        self
    }
    pub fn instruction(mut self, s: impl Into<String>) -> Self {
        self.instruction = Some(s.into());
        self
    }
    pub fn raw_prompt(mut self, on: bool) -> Self {
        self.raw_prompt = on;
        self
    }
    /// Speculative decoding (`MG_GEN_DRAFT_NGRAM`): after each token, the
    /// tokens that followed the last earlier occurrence of the sequence's
    /// last 3 (else 2) tokens, up to 4, are read with it in one decoder
    /// call and checked against what decoding would choose. Greedy: the
    /// text, the context's sequence and its logits are exactly those
    /// without it; it only saves time, most when the answer repeats the
    /// prompt or itself. Sampling (`temperature` > 0): drafted tokens are
    /// kept or replaced by speculative sampling, so texts have the
    /// distribution of plain sampling, but a seed gives another text than
    /// without it (the same one every time). A draft model
    /// ([`Context::set_draft`]) takes its place.
    pub fn draft_ngram(mut self, on: bool) -> Self {
        self.draft_ngram = on;
        self
    }
    /// At most `n` tokens per draft of a draft model (0 = 4; capped at 16).
    pub fn n_draft(mut self, n: u32) -> Self {
        self.n_draft = n;
        self
    }
    /// Calls `f` with the progress of each generating call made with these
    /// options (reports, VQA, chat, volumes, plain generation,
    /// [`prs_predict`](Context::prs_predict)): when each stage and each
    /// encoder block begins, then at most every 100 ms while work goes on,
    /// on the calling thread. `f` returns true to go on, false to stop:
    /// the call then fails with [`Status::Interrupted`] (the text made so
    /// far in [`Error::partial_text`]), as for an [`Interrupter`]. A panic
    /// in `f` stops the call and is resumed once the call has returned.
    ///
    /// The closure is `Send + 'static` because the options are `Clone`,
    /// `Send` and `Sync`: clones share it (and call it under a lock, one
    /// call at a time, should several threads use them at once), so it
    /// must not itself start a call with the same options.
    pub fn progress(mut self, f: impl FnMut(&Progress) -> bool + Send + 'static) -> Self {
        self.progress = Some(ProgressCallback::new(f));
        self
    }
}

/// The progress closure of [`GenOptions`], shared by its clones. Two are
/// equal when they are the same closure.
#[derive(Clone)]
pub struct ProgressCallback(Arc<Mutex<ProgressFn>>);

type ProgressFn = dyn FnMut(&Progress) -> bool + Send;

impl ProgressCallback {
    /// Wraps `f` (see [`GenOptions::progress`]).
    pub fn new(f: impl FnMut(&Progress) -> bool + Send + 'static) -> Self {
        ProgressCallback(Arc::new(Mutex::new(f)))
    }

    fn call(&self, p: &Progress) -> bool {
        // A panic in an earlier call poisoned the lock; the closure itself
        // is still there to call.
        let mut f = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (*f)(p)
    }
}

impl PartialEq for ProgressCallback {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for ProgressCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressCallback")
    }
}

/// The stage a generating call is in ([`Progress::stage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// An encoder reads one block of the prompt (an image, a volume slice,
    /// a score set): [`Progress::block`] of [`Progress::n_blocks`], encoder
    /// steps [`Progress::step`] of [`Progress::n_steps`].
    Encode,
    /// The text decoder reads the prompt: [`Progress::done`] of
    /// [`Progress::total`] tokens, decoder layers `step` of `n_steps` of
    /// the current batch.
    Prefill,
    /// The answer's tokens are made: `done` of `total` (= max_tokens).
    Generate,
    /// A stage this binding does not know (from a newer library).
    Other(i32),
}

impl Stage {
    fn from_code(code: i32) -> Stage {
        match code {
            sys::MG_STAGE_ENCODE => Stage::Encode,
            sys::MG_STAGE_PREFILL => Stage::Prefill,
            sys::MG_STAGE_GENERATE => Stage::Generate,
            n => Stage::Other(n),
        }
    }
}

/// Where a generating call stands (`mg_progress`), passed to the closure
/// of [`GenOptions::progress`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    pub stage: Stage,
    /// Encode: the block's index among the prompt's blocks (0-based).
    pub block: u32,
    /// Blocks (images, slices, score sets) in the prompt.
    pub n_blocks: u32,
    /// Encode: encoder steps done (three per layer, then the projector);
    /// Prefill: decoder layers done for the current batch of tokens.
    pub step: u32,
    /// Steps of that encoder run or decoder batch.
    pub n_steps: u32,
    /// Prefill: prompt tokens read; Generate: tokens generated.
    pub done: u32,
    /// Prefill: prompt tokens to read; Generate: max_tokens.
    pub total: u32,
    /// Prompt tokens kept from the context's sequence (not read again).
    pub reused: u32,
    /// Blocks whose encoder output came from the context's cache.
    pub cached: u32,
    /// Time since the call began.
    pub elapsed: Duration,
}

impl Progress {
    /// # Safety
    /// `p` points to a live `mg_progress` whose `struct_size` is right.
    unsafe fn from_raw(p: *const sys::mg_progress) -> Progress {
        // Copy no more than the library's struct holds (an older one may be
        // shorter); fields it lacks read as 0.
        let mut c = std::mem::zeroed::<sys::mg_progress>();
        let n = ((*p).struct_size as usize).min(std::mem::size_of::<sys::mg_progress>());
        ptr::copy_nonoverlapping(p as *const u8, &mut c as *mut sys::mg_progress as *mut u8, n);
        Progress {
            stage: Stage::from_code(c.stage),
            block: c.block,
            n_blocks: c.n_blocks,
            step: c.step,
            n_steps: c.n_steps,
            done: c.done,
            total: c.total,
            reused: c.reused,
            cached: c.cached,
            elapsed: Duration::try_from_secs_f64(c.seconds).unwrap_or_default(),
        }
    }
}

fn gen_params_default() -> sys::mg_gen_params {
    unsafe {
        let mut p = std::mem::zeroed::<sys::mg_gen_params>();
        sys::mg_gen_params_init(&mut p);
        p
    }
}

/// mg_gen_params plus the C strings its pointers point into.
struct Prepared {
    params: sys::mg_gen_params,
    _stop: Vec<CString>,
    _stop_ptrs: Vec<*const c_char>,
    _system: Option<CString>,
    _instruction: Option<CString>,
}

impl Prepared {
    fn new(o: &GenOptions) -> Result<Prepared> {
        let mut p = gen_params_default();
        p.max_tokens = o.max_tokens;
        p.temperature = o.temperature;
        p.top_k = o.top_k;
        p.top_p = o.top_p;
        p.repetition_penalty = o.repetition_penalty;
        p.seed = o.seed;
        if o.raw_prompt {
            p.flags |= sys::MG_GEN_RAW_PROMPT;
        }
        if o.draft_ngram {
            p.flags |= sys::MG_GEN_DRAFT_NGRAM;
        }
        p.n_draft = o.n_draft;
        let stop = o.stop.iter().map(|s| cstring(s, "stop string")).collect::<Result<Vec<_>>>()?;
        let stop_ptrs: Vec<*const c_char> = stop.iter().map(|s| s.as_ptr()).collect();
        if !stop.is_empty() {
            p.stop = stop_ptrs.as_ptr();
            p.n_stop = u32::try_from(stop.len())
                .map_err(|_| Error::new(Status::InvalidArg, "too many stop strings"))?;
        }
        let system = o.system_prompt.as_deref().map(|s| cstring(s, "system prompt")).transpose()?;
        let instruction = o.instruction.as_deref().map(|s| cstring(s, "instruction")).transpose()?;
        if let Some(s) = &system {
            p.system_prompt = s.as_ptr();
        }
        if let Some(s) = &instruction {
            p.instruction = s.as_ptr();
        }
        Ok(Prepared { params: p, _stop: stop, _stop_ptrs: stop_ptrs, _system: system, _instruction: instruction })
    }
}

/// What the token and progress callbacks see through their user_data
/// (both point to the one Hooks of the call).
struct Hooks<'a> {
    stream: Option<&'a mut dyn FnMut(&str) -> bool>,
    /// The stream closure asked to stop (an early, normal end).
    stopped: bool,
    progress: Option<ProgressCallback>,
    /// A panic of either closure, resumed after the C call.
    panic: Option<Box<dyn Any + Send>>,
}

unsafe extern "C" fn on_token(ud: *mut c_void, piece: *const c_char, len: usize, _token: i32) -> i32 {
    // SAFETY: ud is the &mut Hooks set up by Context::run for this call,
    // and the library calls back on the calling thread only, one callback
    // at a time.
    let st = &mut *(ud as *mut Hooks);
    if st.panic.is_some() || st.stopped {
        return 1;
    }
    let Some(f) = st.stream.as_mut() else { return 0 };
    let bytes = if len == 0 { &[][..] } else { std::slice::from_raw_parts(piece as *const u8, len) };
    let text = String::from_utf8_lossy(bytes);
    // A panic must not unwind through C: catch it, stop, rethrow after.
    match panic::catch_unwind(AssertUnwindSafe(|| f(&text))) {
        Ok(true) => 0,
        Ok(false) => {
            st.stopped = true;
            1
        }
        Err(p) => {
            st.panic = Some(p);
            1
        }
    }
}

unsafe extern "C" fn on_progress(ud: *mut c_void, p: *const sys::mg_progress) -> i32 {
    // SAFETY: as on_token; p is valid during this call.
    let st = &mut *(ud as *mut Hooks);
    if st.panic.is_some() {
        return 1;
    }
    let Some(cb) = st.progress.as_ref() else { return 0 };
    if p.is_null() {
        return 0;
    }
    let prog = Progress::from_raw(p);
    match panic::catch_unwind(AssertUnwindSafe(|| cb.call(&prog))) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            st.panic = Some(e);
            1
        }
    }
}

impl Context {
    /// Creates a context over `model` (all its buffers are sized here).
    pub fn new(model: &Model, opts: &ContextOptions) -> Result<Context> {
        let mut p = unsafe {
            let mut p = std::mem::zeroed::<sys::mg_context_params>();
            sys::mg_context_params_init(&mut p);
            p
        };
        p.n_threads = opts.n_threads;
        p.n_ctx = opts.n_ctx;
        p.seed = opts.seed;
        p.flags = 0;
        if opts.kv_bf16 {
            p.flags |= sys::MG_CONTEXT_KV_BF16;
        }
        if !opts.reuse {
            p.flags |= sys::MG_CONTEXT_NO_REUSE;
        }
        // the context takes its own reference to the batch in the library
        p.batch = opts.batch.as_ref().map_or(ptr::null_mut(), |b| b.as_ptr());
        let mut out = ptr::null_mut();
        let rc = unsafe { sys::mg_context_new(&mut out, model.as_ptr(), &p) };
        if rc != sys::MG_OK {
            return Err(Error::new(Status::from_code(rc), crate::util::last_error()));
        }
        let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "NULL context"))?;
        Ok(Context { inner: Arc::new(CtxInner { ptr }), model: model.clone(), draft: None, _not_sync: PhantomData })
    }

    fn ptr(&self) -> *mut sys::mg_context {
        self.inner.ptr.as_ptr()
    }

    /// The model this context runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// A handle that interrupts this context's running call from any thread.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter { inner: Arc::clone(&self.inner) }
    }

    /// Attaches a draft model's context for speculative decoding, returning
    /// the one attached before: every generating call of this context then
    /// lets `draft` (a context on a smaller model with the same tokenizer)
    /// propose the next tokens, checked as [`GenOptions::draft_ngram`]
    /// describes, with the same guarantees (greedy: exactly the text
    /// without a draft; sampling: the same distribution). The draft reads
    /// the prompt's text tokens (images left out: the draft model needs no
    /// image encoder) and follows the answer. A draft whose tokenizer
    /// differs makes the calls fail with [`Status::InvalidArg`]. `None`
    /// detaches it.
    pub fn set_draft(&mut self, draft: Option<Context>) -> Option<Context> {
        std::mem::replace(&mut self.draft, draft.map(Box::new)).map(|b| *b)
    }

    /// The attached draft context ([`set_draft`](Self::set_draft)).
    pub fn draft(&self) -> Option<&Context> {
        self.draft.as_deref()
    }

    /// The attached draft context, to use on its own between calls.
    pub fn draft_mut(&mut self) -> Option<&mut Context> {
        self.draft.as_deref_mut()
    }

    /// Tokens in the context's sequence.
    pub fn n_tokens(&self) -> u32 {
        unsafe { sys::mg_context_n_tokens(self.ptr()) }
    }

    /// The status of the last call on this context (None after success).
    pub fn last_status(&self) -> Option<Status> {
        match unsafe { sys::mg_context_errcode(self.ptr()) } {
            sys::MG_OK => None,
            rc => Some(Status::from_code(rc)),
        }
    }

    /// The error of the last failed call on this context.
    fn last_error(&self, rc: i32) -> Error {
        let msg = unsafe { static_str(sys::mg_context_errmsg(self.ptr())) };
        let status = Status::from_code(rc);
        Error::new(status, if msg.is_empty() { status.description() } else { msg })
    }

    fn check(&self, rc: i32) -> Result<()> {
        if rc == sys::MG_OK {
            Ok(())
        } else {
            Err(self.last_error(rc))
        }
    }

    /// Empties the sequence (the KV cache).
    pub fn reset(&mut self) -> Result<()> {
        let rc = unsafe { sys::mg_context_reset(self.ptr()) };
        self.check(rc)
    }

    /// Appends tokens to the sequence without computing logits.
    pub fn eval(&mut self, ids: &[i32]) -> Result<()> {
        let rc = unsafe { sys::mg_context_eval(self.ptr(), ids.as_ptr(), ids.len(), ptr::null_mut(), 0) };
        self.check(rc)
    }

    /// Appends tokens and returns their logits: `ids.len()` rows of
    /// `n_vocab` floats, row-major.
    pub fn eval_logits(&mut self, ids: &[i32]) -> Result<Vec<f32>> {
        let n_vocab = self.model.info().n_vocab as usize;
        let n = ids
            .len()
            .checked_mul(n_vocab)
            .ok_or_else(|| Error::new(Status::InvalidArg, "too many ids"))?;
        let mut logits = vec![0f32; n];
        let rc = unsafe { sys::mg_context_eval(self.ptr(), ids.as_ptr(), ids.len(), logits.as_mut_ptr(), n) };
        self.check(rc)?;
        Ok(logits)
    }

    /// The logits of the last decoder step: `n_vocab` scores of the next
    /// token. After a report or VQA call with `max_tokens(0)` they are those
    /// of the answer's first token.
    pub fn logits(&mut self) -> Result<Vec<f32>> {
        let n_vocab = self.model.info().n_vocab as usize;
        let mut logits = vec![0f32; n_vocab];
        let rc = unsafe { sys::mg_context_logits(self.ptr(), logits.as_mut_ptr(), n_vocab) };
        self.check(rc)?;
        Ok(logits)
    }

    /// The token ids of the context's sequence: the prompt as read (image
    /// blocks as the tokenizer's image token,
    /// [`SpecialToken::Image`](crate::SpecialToken::Image)), then what was
    /// generated and fed back.
    pub fn tokens(&mut self) -> Result<Vec<i32>> {
        let mut need = 0usize;
        let rc = unsafe { sys::mg_context_tokens(ptr::null_mut(), 0, &mut need, self.ptr()) };
        if rc != sys::MG_OK && rc != sys::MG_E_BUFFER_TOO_SMALL {
            return Err(self.last_error(rc));
        }
        let mut ids = vec![0i32; need];
        let rc = unsafe { sys::mg_context_tokens(ids.as_mut_ptr(), ids.len(), &mut need, self.ptr()) };
        self.check(rc)?;
        ids.truncate(need);
        Ok(ids)
    }

    /// Runs one generating call with the given options (and their progress
    /// closure) and optional stream.
    fn run(
        &mut self,
        opts: &GenOptions,
        f: Option<&mut dyn FnMut(&str) -> bool>,
        call: impl FnOnce(*mut *mut c_char, *mut sys::mg_context, *const sys::mg_gen_params) -> i32,
    ) -> Result<String> {
        let mut prep = Prepared::new(opts)?;
        let (has_stream, has_progress) = (f.is_some(), opts.progress.is_some());
        let mut hooks = Hooks { stream: f, stopped: false, progress: opts.progress.clone(), panic: None };
        let ud = &mut hooks as *mut Hooks as *mut c_void;
        if has_stream {
            prep.params.on_token = Some(on_token);
            prep.params.user_data = ud;
        }
        if has_progress {
            prep.params.on_progress = Some(on_progress);
            prep.params.progress_user_data = ud;
        }
        if let Some(d) = &self.draft {
            prep.params.draft = d.ptr();
        }
        let mut out: *mut c_char = ptr::null_mut();
        let rc = call(&mut out, self.ptr(), &prep.params);
        let text = unsafe { take_string(out) };
        if let Some(p) = hooks.panic.take() {
            panic::resume_unwind(p);
        }
        if hooks.stopped && rc == sys::MG_E_INTERRUPTED {
            // The caller's stream closure asked to stop: a normal, early end.
            return Ok(text.unwrap_or_default());
        }
        if rc == sys::MG_OK {
            Ok(text.unwrap_or_default())
        } else {
            Err(self.last_error(rc).with_partial(text))
        }
    }

    /// Generates text from a prompt (wrapped in the model's chat turn unless
    /// `raw_prompt`). The context's sequence is reset first.
    pub fn generate(&mut self, prompt: &str, opts: &GenOptions) -> Result<String> {
        let p = cstring(prompt, "prompt")?;
        self.run(opts, None, |o, c, g| unsafe { sys::mg_generate(o, c, p.as_ptr(), g) })
    }

    /// [`generate`](Self::generate), calling `f` with each piece of text as
    /// it is produced; `f` returns false to stop (then the text so far is
    /// returned as Ok).
    pub fn generate_stream(&mut self, prompt: &str, opts: &GenOptions, mut f: impl FnMut(&str) -> bool) -> Result<String> {
        let p = cstring(prompt, "prompt")?;
        self.run(opts, Some(&mut f), |o, c, g| unsafe { sys::mg_generate(o, c, p.as_ptr(), g) })
    }

    /// Generates from token ids used as they are (no BOS or turn added).
    pub fn generate_ids(&mut self, ids: &[i32], opts: &GenOptions) -> Result<String> {
        self.run(opts, None, |o, c, g| unsafe { sys::mg_generate_ids(o, c, ids.as_ptr(), ids.len(), g) })
    }

    /// [`generate_ids`](Self::generate_ids) with streaming.
    pub fn generate_ids_stream(&mut self, ids: &[i32], opts: &GenOptions, mut f: impl FnMut(&str) -> bool) -> Result<String> {
        self.run(opts, Some(&mut f), |o, c, g| unsafe { sys::mg_generate_ids(o, c, ids.as_ptr(), ids.len(), g) })
    }

    /// Writes a report for one study (1 to 64 images).
    pub fn report(&mut self, images: &[&Image], opts: &GenOptions) -> Result<String> {
        let ptrs = image_ptrs(images);
        self.run(opts, None, |o, c, g| unsafe { sys::mg_generate_report(o, c, ptrs.as_ptr(), ptrs.len(), g) })
    }

    /// [`report`](Self::report) with streaming.
    pub fn report_stream(&mut self, images: &[&Image], opts: &GenOptions, mut f: impl FnMut(&str) -> bool) -> Result<String> {
        let ptrs = image_ptrs(images);
        self.run(opts, Some(&mut f), |o, c, g| unsafe {
            sys::mg_generate_report(o, c, ptrs.as_ptr(), ptrs.len(), g)
        })
    }

    /// Answers a question about one or more images (`opts.instruction` is
    /// ignored).
    pub fn vqa(&mut self, images: &[&Image], question: &str, opts: &GenOptions) -> Result<String> {
        let ptrs = image_ptrs(images);
        let q = cstring(question, "question")?;
        self.run(opts, None, |o, c, g| unsafe { sys::mg_vqa(o, c, ptrs.as_ptr(), ptrs.len(), q.as_ptr(), g) })
    }

    /// [`vqa`](Self::vqa) with streaming.
    pub fn vqa_stream(&mut self, images: &[&Image], question: &str, opts: &GenOptions, mut f: impl FnMut(&str) -> bool) -> Result<String> {
        let ptrs = image_ptrs(images);
        let q = cstring(question, "question")?;
        self.run(opts, Some(&mut f), |o, c, g| unsafe {
            sys::mg_vqa(o, c, ptrs.as_ptr(), ptrs.len(), q.as_ptr(), g)
        })
    }

    /// One turn of a conversation about images, held in the context: the
    /// first call (on a fresh context, after [`reset`](Self::reset) or after
    /// any other generating call) opens it as [`vqa`](Self::vqa) does (the
    /// same prompt, so the same answer); each later call appends the next
    /// user turn (`message`, and `images` if any: usually none) and
    /// generates the next answer, reading only the new turn. When the
    /// context fills, the oldest exchanges but the first are dropped.
    /// [`Status::Unsupported`] on a context made with
    /// [`reuse(false)`](ContextOptions::reuse).
    pub fn chat(&mut self, images: &[&Image], message: &str, opts: &GenOptions) -> Result<String> {
        self.chat_call(images, message, opts, None)
    }

    /// [`chat`](Self::chat) with streaming.
    pub fn chat_stream(&mut self, images: &[&Image], message: &str, opts: &GenOptions,
                       mut f: impl FnMut(&str) -> bool) -> Result<String> {
        self.chat_call(images, message, opts, Some(&mut f))
    }

    fn chat_call(&mut self, images: &[&Image], message: &str, opts: &GenOptions,
                 f: Option<&mut dyn FnMut(&str) -> bool>) -> Result<String> {
        let ptrs = image_ptrs(images);
        let images_ptr = if ptrs.is_empty() { ptr::null() } else { ptrs.as_ptr() };
        let m = cstring(message, "message")?;
        self.run(opts, f, |o, c, g| unsafe { sys::mg_chat(o, c, images_ptr, ptrs.len(), m.as_ptr(), g) })
    }

    /// Writes a report for a CT or MR volume the way MedGemma 1.5 reads
    /// one: the slices of [`Volume::slices`] (at most `slices.max_slices`,
    /// default 85), each through the image encoder into its own block of
    /// image tokens, labelled "SLICE 1", "SLICE 2", ... in one user turn;
    /// `opts.instruction` replaces the model's volume report instruction.
    /// The context must hold slices x the model's tokens per image
    /// ([`Status::ContextFull`] otherwise, before any encoding).
    pub fn report_volume(&mut self, volume: &Volume, slices: &SliceOptions, opts: &GenOptions) -> Result<String> {
        let sp = slices.to_c();
        self.run(opts, None, |o, c, g| unsafe { sys::mg_generate_report_volume(o, c, volume.as_ptr(), &sp, g) })
    }

    /// [`report_volume`](Self::report_volume) with streaming.
    pub fn report_volume_stream(&mut self, volume: &Volume, slices: &SliceOptions, opts: &GenOptions,
                                mut f: impl FnMut(&str) -> bool) -> Result<String> {
        let sp = slices.to_c();
        self.run(opts, Some(&mut f), |o, c, g| unsafe {
            sys::mg_generate_report_volume(o, c, volume.as_ptr(), &sp, g)
        })
    }

    /// Answers a question about a CT or MR volume (slices as in
    /// [`report_volume`](Self::report_volume); `opts.instruction` is
    /// ignored).
    pub fn vqa_volume(&mut self, volume: &Volume, question: &str, slices: &SliceOptions, opts: &GenOptions) -> Result<String> {
        let q = cstring(question, "question")?;
        let sp = slices.to_c();
        self.run(opts, None, |o, c, g| unsafe { sys::mg_vqa_volume(o, c, volume.as_ptr(), q.as_ptr(), &sp, g) })
    }

    /// [`vqa_volume`](Self::vqa_volume) with streaming.
    pub fn vqa_volume_stream(&mut self, volume: &Volume, question: &str, slices: &SliceOptions, opts: &GenOptions,
                             mut f: impl FnMut(&str) -> bool) -> Result<String> {
        let q = cstring(question, "question")?;
        let sp = slices.to_c();
        self.run(opts, Some(&mut f), |o, c, g| unsafe {
            sys::mg_vqa_volume(o, c, volume.as_ptr(), q.as_ptr(), &sp, g)
        })
    }

    /// Polygenic risk prediction with a model that has a genomics encoder
    /// (metadata `genome.*`; [`Status::Unsupported`] otherwise):
    /// `scores[i]` is the score named `names[i]` (`"<trait>_<threshold>"`,
    /// after the model's `genome.traits` and `genome.thresholds`). The
    /// model lays the scores out as its score image
    /// ([`Model::score_image`]), reads it as one block of image tokens and
    /// answers `question` after it. Names it does not know are ignored;
    /// scores it knows but are not given (or NaN) count as the reference
    /// mean; a name given twice is [`Status::InvalidArg`]. Returns the
    /// generated answer and the risk P(yes) / (P(yes) + P(no)) from the
    /// scores of the answer's first token (the model's `genome.answer_yes`
    /// and `genome.answer_no` words). The context's sequence is reset
    /// first.
    pub fn prs_predict(&mut self, scores: &[f64], names: &[&str], question: &str, opts: &GenOptions) -> Result<(String, f64)> {
        self.prs_call(scores, names, question, opts, None)
    }

    /// [`prs_predict`](Self::prs_predict) with streaming.
    pub fn prs_predict_stream(&mut self, scores: &[f64], names: &[&str], question: &str, opts: &GenOptions,
                              mut f: impl FnMut(&str) -> bool) -> Result<(String, f64)> {
        self.prs_call(scores, names, question, opts, Some(&mut f))
    }

    fn prs_call(&mut self, scores: &[f64], names: &[&str], question: &str, opts: &GenOptions,
                f: Option<&mut dyn FnMut(&str) -> bool>) -> Result<(String, f64)> {
        check_scores(scores, names)?;
        let (_names_c, name_ptrs) = cstrings(names, "score name")?;
        let q = cstring(question, "question")?;
        let mut risk = f64::NAN;
        let rp: *mut f64 = &mut risk;
        let text = self.run(opts, f, |o, c, g| unsafe {
            sys::mg_prs_predict(o, rp, c, scores.as_ptr(), name_ptrs.as_ptr(), scores.len(), q.as_ptr(), g)
        })?;
        Ok((text, risk))
    }

    /// The risk of [`prs_predict`](Self::prs_predict) alone, without
    /// generating text; afterwards [`logits`](Self::logits) are those of
    /// the answer's first token.
    pub fn prs_risk(&mut self, scores: &[f64], names: &[&str], question: &str) -> Result<f64> {
        check_scores(scores, names)?;
        let (_names_c, name_ptrs) = cstrings(names, "score name")?;
        let q = cstring(question, "question")?;
        let mut risk = f64::NAN;
        let rp: *mut f64 = &mut risk;
        self.run(&GenOptions::default(), None, |_, c, g| unsafe {
            sys::mg_prs_predict(ptr::null_mut(), rp, c, scores.as_ptr(), name_ptrs.as_ptr(), scores.len(),
                                q.as_ptr(), g)
        })?;
        Ok(risk)
    }

    /// Risks for many individuals and questions, as
    /// [`prs_risk`](Self::prs_risk) computes them: `scores` is row-major,
    /// one row of `names.len()` values per individual (the same names for
    /// all); the result is row-major too, `risk[i * questions.len() + q]`.
    /// Each individual's score block is read once and shared by its
    /// questions; the context's sequence is left holding the last prompt.
    pub fn prs_predict_batch(&mut self, scores: &[f64], names: &[&str], questions: &[&str]) -> Result<Vec<f64>> {
        if names.is_empty() || scores.is_empty() || scores.len() % names.len() != 0 {
            return Err(Error::new(
                Status::InvalidArg,
                format!("{} scores are not rows of {} names", scores.len(), names.len()),
            ));
        }
        let n_ind = scores.len() / names.len();
        let n = n_ind
            .checked_mul(questions.len())
            .ok_or_else(|| Error::new(Status::InvalidArg, "too many individuals x questions"))?;
        let (_names_c, name_ptrs) = cstrings(names, "score name")?;
        let (_q_c, q_ptrs) = cstrings(questions, "question")?;
        let mut risk = vec![f64::NAN; n];
        let rp = risk.as_mut_ptr();
        self.run(&GenOptions::default(), None, |_, c, _| unsafe {
            sys::mg_prs_predict_batch(rp, c, scores.as_ptr(), n_ind, name_ptrs.as_ptr(), names.len(),
                                      q_ptrs.as_ptr(), questions.len())
        })?;
        Ok(risk)
    }
}

fn image_ptrs(images: &[&Image]) -> Vec<*const sys::mg_image> {
    images.iter().map(|i| i.as_ptr()).collect()
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("n_tokens", &self.n_tokens()).finish()
    }
}
