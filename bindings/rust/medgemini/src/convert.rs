//! Converting Hugging Face folders and GGUF files into .mgm.
use crate::error::{Error, Result, Status};
use crate::model::Dtype;
use crate::sys;
use crate::util::{check_buf, cstring, path_cstring, static_str, ERRLEN};
use std::any::Any;
use std::ffi::{c_char, c_void, CString};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr;

/// Options of [`convert`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ConvertOptions {
    /// Dtype of the matrices; None keeps each matrix's source type.
    pub dtype: Option<Dtype>,
    /// Store tensors zstd-compressed.
    pub compress: bool,
    /// Skip the SHA-256 of the source files.
    pub no_checksums: bool,
    /// GGUF source: the vision ("mmproj") GGUF.
    pub mmproj: Option<PathBuf>,
    /// A tokenizer.json to use instead of the source's own.
    pub tokenizer: Option<PathBuf>,
    /// A text file: the model keeps only the tokens it needs (and their
    /// embedding rows); the text tokenizes exactly as before.
    pub prune_vocab: Option<PathBuf>,
    /// String metadata under `general.` or `prompt.` to set, in order; a key
    /// the converter writes itself is replaced.
    pub meta: Vec<(String, String)>,
}

impl ConvertOptions {
    pub fn dtype(mut self, d: Dtype) -> Self {
        self.dtype = Some(d);
        self
    }
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }
    pub fn no_checksums(mut self, on: bool) -> Self {
        self.no_checksums = on;
        self
    }
    pub fn mmproj(mut self, p: impl Into<PathBuf>) -> Self {
        self.mmproj = Some(p.into());
        self
    }
    pub fn tokenizer(mut self, p: impl Into<PathBuf>) -> Self {
        self.tokenizer = Some(p.into());
        self
    }
    pub fn prune_vocab(mut self, corpus: impl Into<PathBuf>) -> Self {
        self.prune_vocab = Some(corpus.into());
        self
    }
    /// Adds one metadata string (`general.name`, `prompt.report_instruction`, ...).
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.push((key.into(), value.into()));
        self
    }
}

/// One step of a conversion, passed to the progress closure.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertProgress<'a> {
    /// The tensor's name in the .mgm.
    pub name: &'a str,
    pub dtype: Dtype,
    pub index: u64,
    pub count: u64,
    /// RMS of the quantization error, and that over the RMS of the values.
    pub rms_error: f64,
    pub rel_error: f64,
}

struct Progress<'a> {
    f: &'a mut dyn FnMut(&ConvertProgress) -> bool,
    panic: Option<Box<dyn Any + Send>>,
}

unsafe extern "C" fn on_progress(ud: *mut c_void, name: *const c_char, dtype: i32, index: u64, count: u64,
                                 rms: f64, rel: f64) -> i32 {
    // SAFETY: ud is the &mut Progress of this call; the library calls back
    // on the calling thread.
    let st = &mut *(ud as *mut Progress);
    if st.panic.is_some() {
        return 1;
    }
    let p = ConvertProgress { name: static_str(name), dtype: Dtype::from_code(dtype), index, count,
                              rms_error: rms, rel_error: rel };
    match panic::catch_unwind(AssertUnwindSafe(|| (st.f)(&p))) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            st.panic = Some(e);
            1
        }
    }
}

/// Converts `src` (a Hugging Face folder or a .gguf file) into `out`.
pub fn convert(src: impl AsRef<Path>, out: impl AsRef<Path>, opts: &ConvertOptions) -> Result<()> {
    run(src.as_ref(), out.as_ref(), opts, None)
}

/// [`convert`], calling `f` after each tensor; `f` returns false to stop
/// (the call then fails with [`Status::Interrupted`](crate::Status) and the
/// output is removed).
pub fn convert_with_progress(src: impl AsRef<Path>, out: impl AsRef<Path>, opts: &ConvertOptions,
                             mut f: impl FnMut(&ConvertProgress) -> bool) -> Result<()> {
    run(src.as_ref(), out.as_ref(), opts, Some(&mut f))
}

fn run(src: &Path, out: &Path, opts: &ConvertOptions, f: Option<&mut dyn FnMut(&ConvertProgress) -> bool>) -> Result<()> {
    let csrc = path_cstring(src)?;
    let cout = path_cstring(out)?;
    let mmproj: Option<CString> = opts.mmproj.as_deref().map(path_cstring).transpose()?;
    let tok: Option<CString> = opts.tokenizer.as_deref().map(path_cstring).transpose()?;
    let corpus: Option<CString> = opts.prune_vocab.as_deref().map(path_cstring).transpose()?;
    let mut meta = Vec::with_capacity(opts.meta.len());
    for (k, v) in &opts.meta {
        if k.contains('=') {
            return Err(Error::new(Status::InvalidArg, format!("meta key {k:?} contains '='")));
        }
        meta.push(cstring(&format!("{k}={v}"), "a meta entry")?);
    }
    let meta_ptrs: Vec<*const c_char> = meta.iter().map(|c| c.as_ptr()).collect();
    let mut p = unsafe {
        let mut p = std::mem::zeroed::<sys::mg_convert_params>();
        sys::mg_convert_params_init(&mut p);
        p
    };
    if let Some(d) = opts.dtype {
        p.dtype = d.code();
    }
    if opts.compress {
        p.flags |= sys::MG_CONVERT_COMPRESS;
    }
    if opts.no_checksums {
        p.flags |= sys::MG_CONVERT_NO_CHECKSUMS;
    }
    p.mmproj = mmproj.as_ref().map_or(ptr::null(), |c| c.as_ptr());
    p.tokenizer = tok.as_ref().map_or(ptr::null(), |c| c.as_ptr());
    p.prune_vocab = corpus.as_ref().map_or(ptr::null(), |c| c.as_ptr());
    if !meta_ptrs.is_empty() {
        p.meta = meta_ptrs.as_ptr();
        p.n_meta = u32::try_from(meta_ptrs.len())
            .map_err(|_| Error::new(Status::InvalidArg, "too many meta entries"))?;
    }
    let mut state = f.map(|f| Progress { f, panic: None });
    if let Some(st) = state.as_mut() {
        p.progress = Some(on_progress);
        p.user_data = st as *mut Progress as *mut c_void;
    }
    let mut err = [0 as c_char; ERRLEN];
    let rc = unsafe { sys::mg_convert(csrc.as_ptr(), cout.as_ptr(), &p, err.as_mut_ptr(), ERRLEN) };
    if let Some(Progress { panic: Some(e), .. }) = state {
        panic::resume_unwind(e);
    }
    check_buf(rc, &err)
}
