//! Safe Rust API of libmedgemini: radiology reports and visual question
//! answering with MedGemma-style models on the CPU, tokenization, model
//! files, conversion, 3D volumes (DICOM series, NIfTI) and polygenic risk
//! scores.
//!
//! The raw C declarations live in the `medgemini-sys` crate (re-exported as
//! [`sys`]). This crate wraps them in owned types that free their handle
//! when dropped, returns [`Result`] with an [`Error`] carrying the library's
//! [`Status`] and message, and marks types `Send`/`Sync` exactly as the C
//! threading contract allows:
//!
//! | type | Send | Sync | why |
//! |---|---|---|---|
//! | [`Model`] | yes | yes | immutable after load, shared by any number of threads (cheap `Clone`) |
//! | [`Context`] | yes | **no** | used by one thread at a time |
//! | [`Batch`] | yes | yes | shared by the threads of its contexts |
//! | [`Interrupter`] | yes | yes | `mg_context_interrupt` may be called from any thread |
//! | [`PrsInterrupter`] | yes | yes | `mg_prs_interrupt` may be called from any thread |
//! | [`Image`] | yes | yes | read-only after creation |
//! | [`Volume`] | yes | yes | read-only after creation |
//! | [`Tokenizer`] | yes | yes | immutable |
//! | [`Prs`], [`Writer`] | yes | no | one thread at a time |
//!
//! A [`Context`] cannot be shared between threads:
//!
//! ```compile_fail,E0277
//! fn needs_sync<T: Sync>() {}
//! needs_sync::<medgemini::Context>();
//! ```
//!
//! ```compile_fail,E0277
//! fn needs_sync<T: Sync>() {}
//! needs_sync::<medgemini::Prs>();
//! ```
//!
//! but it can be moved to another one, and the others are shareable:
//!
//! ```
//! fn needs_send<T: Send>() {}
//! fn needs_both<T: Send + Sync>() {}
//! needs_send::<medgemini::Context>();
//! needs_both::<medgemini::Model>();
//! needs_both::<medgemini::Image>();
//! needs_both::<medgemini::Volume>();
//! needs_both::<medgemini::Interrupter>();
//! needs_both::<medgemini::PrsInterrupter>();
//! needs_both::<medgemini::GenOptions>();
//! needs_send::<medgemini::Prs>();
//! needs_both::<medgemini::Tokenizer>();
//! ```
//!
//! A report for one chest X-ray:
//!
//! ```no_run
//! use medgemini::{Context, ContextOptions, GenOptions, Image, Model};
//! # fn main() -> Result<(), medgemini::Error> {
//! let model = Model::load("medgemma-4b.mgm")?;
//! let mut ctx = Context::new(&model, &ContextOptions::default())?;
//! let image = Image::open("chest.png")?;
//! let report = ctx.report(&[&image], &GenOptions::default().max_tokens(200))?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod batch;
mod context;
mod convert;
mod error;
mod image;
mod model;
mod prs;
mod sr;
mod tokenizer;
mod util;
mod volume;
mod writer;

pub use medgemini_sys as sys;

pub use batch::{Batch, BatchOptions, BatchStats};
pub use context::{Context, ContextOptions, GenOptions, Interrupter, Progress, ProgressCallback, Stage};
pub use convert::{convert, convert_with_progress, ConvertOptions, ConvertProgress};
pub use error::{Error, Result, Status};
pub use image::{Image, ImageInfo, ImageOptions, ImageSource, PixelFormat, Window};
pub use model::{Dtype, LoadOptions, MetaEntry, MetaType, Model, ModelInfo, TensorInfo};
pub use sr::{scan_studies, write_sr, Series, SrOptions, Study, StudySet};
pub use prs::{MatchReport, Prs, PrsColumn, PrsInterrupter, PrsOptions, VcfDosage};
pub use tokenizer::{SpecialToken, Tokenizer};
pub use volume::{SliceOptions, SliceWindow, Volume, VolumeInfo, VolumeOptions, VolumeSlice, VolumeSource, MAX_SLICES};
pub use writer::Writer;

use std::ffi::CStr;

/// The version of the loaded library, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: static NUL-terminated storage, never freed.
    unsafe { util::static_str(sys::mg_version_string()) }
}

/// The version of the loaded library as MAJOR*10000 + MINOR*100 + PATCH.
/// Compare with [`sys::MG_VERSION_NUMBER`] (the header these declarations
/// were written from) to detect a mismatch.
pub fn version_number() -> u32 {
    unsafe { sys::mg_version_number() }
}

/// How the library was built and what it chose at run time
/// (space-separated key=value pairs).
pub fn build_info() -> &'static str {
    unsafe { util::static_str(sys::mg_build_info()) }
}

/// SIMD level the library's kernels use in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdLevel {
    Scalar,
    Avx2,
    Avx512,
    Other(i32),
}

/// The SIMD level the kernels use (see MG_SIMD in the library docs).
pub fn simd_level() -> SimdLevel {
    match unsafe { sys::mg_simd_level() } {
        sys::MG_SIMD_SCALAR => SimdLevel::Scalar,
        sys::MG_SIMD_AVX2 => SimdLevel::Avx2,
        sys::MG_SIMD_AVX512 => SimdLevel::Avx512,
        n => SimdLevel::Other(n),
    }
}

/// The static English description of a status code.
pub fn status_str(code: i32) -> &'static str {
    unsafe { CStr::from_ptr(sys::mg_status_str(code)).to_str().unwrap_or("unknown status") }
}
