//! Batched decoding: contexts on one model whose decode steps run together.
use crate::error::{Error, Result, Status};
use crate::model::Model;
use crate::sys;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::time::Duration;

struct BatchInner {
    ptr: NonNull<sys::mg_batch>,
}

// SAFETY: a batch is shared by its contexts' threads (medgemini.h, "Batched
// decoding"): its functions lock internally.
unsafe impl Send for BatchInner {}
unsafe impl Sync for BatchInner {}

impl Drop for BatchInner {
    fn drop(&mut self) {
        // drops this reference; contexts made with the batch hold their own
        unsafe { sys::mg_batch_free(self.ptr.as_ptr()) }
    }
}

/// A decoding batch (`mg_batch`). Contexts made with
/// [`ContextOptions::batch`](crate::ContextOptions::batch) hand each token
/// they decode to it, and one step decodes a token for every such context
/// that is generating at the time, reading the model's weights once for all
/// of them: with one context per request thread, a server's throughput
/// grows with concurrent requests. Each context's output is bit for bit
/// what it would be alone (with the batch's thread count). Cloning is
/// cheap; the batch is `Send + Sync`.
#[derive(Clone)]
pub struct Batch {
    inner: Arc<BatchInner>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batch")
    }
}

/// Options of [`Batch::new`]; `Default` takes the library's defaults.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Threads of the batch's pool, which runs the steps; 0 = one per CPU.
    pub n_threads: u32,
    /// Most contexts in one step, 1..=8; 0 = 8.
    pub max_rows: u32,
    /// How long a step waits for the other generating contexts; `None` =
    /// 2 ms, at most 1 s.
    pub wait: Option<Duration>,
}

impl BatchOptions {
    pub fn n_threads(mut self, n: u32) -> Self {
        self.n_threads = n;
        self
    }
    pub fn max_rows(mut self, n: u32) -> Self {
        self.max_rows = n;
        self
    }
    pub fn wait(mut self, d: Duration) -> Self {
        self.wait = Some(d);
        self
    }
}

/// What a batch has done since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BatchStats {
    /// Decode steps run.
    pub steps: u64,
    /// Tokens they decoded (`rows / steps` = the mean batch).
    pub rows: u64,
    /// Steps of 1, 2, ..., 8 rows.
    pub by_rows: [u64; 8],
    /// Wall time spent in steps.
    pub busy: Duration,
}

impl Batch {
    /// A batch for contexts on `model`.
    pub fn new(model: &Model, opts: &BatchOptions) -> Result<Batch> {
        let mut p = unsafe {
            let mut p = std::mem::zeroed::<sys::mg_batch_params>();
            sys::mg_batch_params_init(&mut p);
            p
        };
        p.n_threads = opts.n_threads;
        p.max_rows = opts.max_rows;
        if let Some(w) = opts.wait {
            let us = w.as_micros();
            if us > 1_000_000 {
                return Err(Error::new(Status::InvalidArg, "the batch wait is at most 1 s"));
            }
            p.wait_us = us as u32;
        }
        let mut out = ptr::null_mut();
        let rc = unsafe { sys::mg_batch_new(&mut out, model.as_ptr(), &p) };
        if rc != sys::MG_OK {
            return Err(Error::new(Status::from_code(rc), crate::util::last_error()));
        }
        let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "NULL batch"))?;
        Ok(Batch { inner: Arc::new(BatchInner { ptr }) })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::mg_batch {
        self.inner.ptr.as_ptr()
    }

    /// The batch's counters.
    pub fn stats(&self) -> Result<BatchStats> {
        let mut s = sys::mg_batch_stats::default();
        let rc = unsafe { sys::mg_batch_get_stats(self.as_ptr(), &mut s) };
        if rc != sys::MG_OK {
            return Err(Error::from_code(rc));
        }
        Ok(BatchStats {
            steps: s.steps,
            rows: s.rows,
            by_rows: s.by_rows,
            busy: Duration::from_secs_f64(s.busy_seconds.max(0.0)),
        })
    }
}
