//! Models: loading, information, metadata and tensors.
use crate::context::{Context, ContextOptions};
use crate::error::{Error, Result, Status};
use crate::sys;
use crate::tokenizer::Tokenizer;
use crate::image::Image;
use crate::util::{check, check_buf, check_scores, cstring, cstrings, opt_str, path_cstring, static_str, ERRLEN};
use std::ffi::c_char;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

pub(crate) struct ModelInner {
    pub(crate) ptr: NonNull<sys::mg_model>,
}

// SAFETY: an mg_model is immutable after loading and may be shared by any
// number of threads (medgemini.h, "Threads").
unsafe impl Send for ModelInner {}
unsafe impl Sync for ModelInner {}

impl Drop for ModelInner {
    fn drop(&mut self) {
        // Contexts hold their own Model clone, so this runs after the last.
        unsafe { sys::mg_model_free(self.ptr.as_ptr()) }
    }
}

/// A loaded model. Cloning is cheap (a reference count); the model is freed
/// when the last clone and the last [`Context`] over it are dropped.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

/// Options of [`Model::load_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Check every tensor's CRC-32C and zero padding (reads the whole file).
    pub verify_checksums: bool,
    /// Read the file into memory (the library's default; kept for callers
    /// that set it). Wins over `mmap`.
    pub no_mmap: bool,
    /// Map the file read-only instead of reading it: shares pages between
    /// processes, decodes more slowly (4 KiB pages).
    pub mmap: bool,
    /// Keep every tensor's bytes as stored. Without it, on CPUs with
    /// AVX512-VNNI, the text decoder's q4_0 matrices are rearranged at load
    /// for faster decoding and their [`TensorInfo::data`] is empty.
    pub file_layout: bool,
    /// Refuse files whose tensors need more bytes than this (0 = no limit).
    pub max_memory: u64,
}

impl LoadOptions {
    pub fn verify_checksums(mut self, on: bool) -> Self {
        self.verify_checksums = on;
        self
    }
    pub fn no_mmap(mut self, on: bool) -> Self {
        self.no_mmap = on;
        self
    }
    pub fn mmap(mut self, on: bool) -> Self {
        self.mmap = on;
        self
    }
    pub fn file_layout(mut self, on: bool) -> Self {
        self.file_layout = on;
        self
    }
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = bytes;
        self
    }
}

/// Summary of a model ([`Model::info`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub format_version: u32,
    pub n_tensors: u64,
    pub n_params: u64,
    pub n_bytes: u64,
    pub n_metadata: u64,
    pub name: String,
    pub architecture: String,
    pub has_vision: bool,
    pub has_text: bool,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
}

/// Metadata value types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaType {
    Int,
    Float,
    String,
    Array,
    Other(i32),
}

impl MetaType {
    fn from_code(c: i32) -> MetaType {
        match c {
            sys::MG_META_INT => MetaType::Int,
            sys::MG_META_FLOAT => MetaType::Float,
            sys::MG_META_STRING => MetaType::String,
            sys::MG_META_ARRAY => MetaType::Array,
            n => MetaType::Other(n),
        }
    }
}

/// One metadata entry ([`Model::meta_entry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaEntry<'a> {
    pub key: &'a str,
    pub kind: MetaType,
    /// For arrays: the element type and count.
    pub elem_type: Option<MetaType>,
    pub n_elems: u64,
}

/// Tensor element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Other(i32),
}

impl Dtype {
    pub fn from_code(c: i32) -> Dtype {
        match c {
            sys::MG_DTYPE_F32 => Dtype::F32,
            sys::MG_DTYPE_F16 => Dtype::F16,
            sys::MG_DTYPE_BF16 => Dtype::Bf16,
            sys::MG_DTYPE_Q8_0 => Dtype::Q8_0,
            sys::MG_DTYPE_Q4_0 => Dtype::Q4_0,
            n => Dtype::Other(n),
        }
    }
    pub fn code(self) -> i32 {
        match self {
            Dtype::F32 => sys::MG_DTYPE_F32,
            Dtype::F16 => sys::MG_DTYPE_F16,
            Dtype::Bf16 => sys::MG_DTYPE_BF16,
            Dtype::Q8_0 => sys::MG_DTYPE_Q8_0,
            Dtype::Q4_0 => sys::MG_DTYPE_Q4_0,
            Dtype::Other(n) => n,
        }
    }
    /// The library's name ("f32", "q8_0", ...), None if it does not know it.
    pub fn name(self) -> Option<&'static str> {
        unsafe { opt_str(sys::mg_dtype_name(self.code())) }
    }
}

/// A tensor of a model; `data` borrows the model's (decompressed) bytes.
#[derive(Debug, Clone)]
pub struct TensorInfo<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    /// Dimensions, dims[0] varying fastest (n_dims entries).
    pub dims: Vec<u64>,
    pub n_elems: u64,
    pub n_bytes: u64,
    pub compressed: bool,
    pub file_offset: u64,
    pub stored_bytes: u64,
    pub crc32c: u32,
    /// The decompressed bytes; empty for a matrix the library rearranged at
    /// load (see [`LoadOptions::file_layout`]).
    pub data: &'a [u8],
}

impl Model {
    /// Loads an .mgm file with default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &LoadOptions::default())
    }

    /// Loads an .mgm file.
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        let cpath = path_cstring(path.as_ref())?;
        let mut p = unsafe {
            let mut p = std::mem::zeroed::<sys::mg_model_params>();
            sys::mg_model_params_init(&mut p);
            p
        };
        if opts.verify_checksums {
            p.flags |= sys::MG_LOAD_VERIFY_CHECKSUMS;
        }
        if opts.no_mmap {
            p.flags |= sys::MG_LOAD_NO_MMAP;
        }
        if opts.mmap {
            p.flags |= sys::MG_LOAD_MMAP;
        }
        if opts.file_layout {
            p.flags |= sys::MG_LOAD_FILE_LAYOUT;
        }
        p.max_memory = opts.max_memory;
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe { sys::mg_model_load(&mut out, cpath.as_ptr(), &p, err.as_mut_ptr(), ERRLEN) };
        check_buf(rc, &err)?;
        let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "mg_model_load gave NULL"))?;
        Ok(Model { inner: Arc::new(ModelInner { ptr }) })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::mg_model {
        self.inner.ptr.as_ptr()
    }

    /// A new context over this model (same as [`Context::new`]).
    pub fn context(&self, opts: &ContextOptions) -> Result<Context> {
        Context::new(self, opts)
    }

    /// Format version, counts, name and what the model can do.
    pub fn info(&self) -> ModelInfo {
        unsafe {
            let mut i = std::mem::zeroed::<sys::mg_model_info>();
            i.struct_size = std::mem::size_of::<sys::mg_model_info>() as u32;
            // Cannot fail for a live handle and a full-size struct.
            let _ = sys::mg_model_info_get(&mut i, self.as_ptr());
            ModelInfo {
                format_version: i.format_version,
                n_tensors: i.n_tensors,
                n_params: i.n_params,
                n_bytes: i.n_bytes,
                n_metadata: i.n_metadata,
                name: static_str(i.name).to_owned(),
                architecture: static_str(i.architecture).to_owned(),
                has_vision: i.has_vision != 0,
                has_text: i.has_text != 0,
                n_vocab: i.n_vocab,
                n_ctx_train: i.n_ctx_train,
            }
        }
    }

    /// The model's tokenizer, if it has one (shares the model).
    pub fn tokenizer(&self) -> Option<Tokenizer> {
        let p = unsafe { sys::mg_model_tokenizer(self.as_ptr()) };
        NonNull::new(p as *mut sys::mg_tokenizer).map(|ptr| Tokenizer::borrowed(ptr, self.clone()))
    }

    /// Number of metadata entries.
    pub fn meta_count(&self) -> u64 {
        unsafe { sys::mg_model_meta_count(self.as_ptr()) }
    }

    /// Metadata entry `i` (file order).
    pub fn meta_entry(&self, i: u64) -> Result<MetaEntry<'_>> {
        let mut key = ptr::null();
        let (mut t, mut et, mut n) = (0i32, 0i32, 0u64);
        check(unsafe { sys::mg_model_meta_entry(&mut key, &mut t, &mut et, &mut n, self.as_ptr(), i) })?;
        let kind = MetaType::from_code(t);
        Ok(MetaEntry {
            key: unsafe { static_str(key) },
            kind,
            elem_type: if kind == MetaType::Array { Some(MetaType::from_code(et)) } else { None },
            n_elems: n,
        })
    }

    /// Every metadata entry, in file order.
    pub fn meta_entries(&self) -> Vec<MetaEntry<'_>> {
        (0..self.meta_count()).filter_map(|i| self.meta_entry(i).ok()).collect()
    }

    /// An integer value.
    pub fn meta_int(&self, key: &str) -> Result<i64> {
        let k = cstring(key, "key")?;
        let mut v = 0i64;
        check(unsafe { sys::mg_model_meta_int(&mut v, self.as_ptr(), k.as_ptr()) }).map_err(|e| keyed(e, key))?;
        Ok(v)
    }

    /// A float value (an integer value is converted).
    pub fn meta_float(&self, key: &str) -> Result<f64> {
        let k = cstring(key, "key")?;
        let mut v = 0f64;
        check(unsafe { sys::mg_model_meta_float(&mut v, self.as_ptr(), k.as_ptr()) }).map_err(|e| keyed(e, key))?;
        Ok(v)
    }

    /// A string value (borrowed from the model).
    pub fn meta_string(&self, key: &str) -> Result<&str> {
        let k = cstring(key, "key")?;
        let mut v = ptr::null();
        check(unsafe { sys::mg_model_meta_string(&mut v, self.as_ptr(), k.as_ptr()) }).map_err(|e| keyed(e, key))?;
        Ok(unsafe { static_str(v) })
    }

    /// Element `i` of an integer array.
    pub fn meta_array_int(&self, key: &str, i: u64) -> Result<i64> {
        let k = cstring(key, "key")?;
        let mut v = 0i64;
        check(unsafe { sys::mg_model_meta_array_int(&mut v, self.as_ptr(), k.as_ptr(), i) })
            .map_err(|e| keyed(e, key))?;
        Ok(v)
    }

    /// Element `i` of a float array.
    pub fn meta_array_float(&self, key: &str, i: u64) -> Result<f64> {
        let k = cstring(key, "key")?;
        let mut v = 0f64;
        check(unsafe { sys::mg_model_meta_array_float(&mut v, self.as_ptr(), k.as_ptr(), i) })
            .map_err(|e| keyed(e, key))?;
        Ok(v)
    }

    /// Element `i` of a string array (borrowed from the model).
    pub fn meta_array_string(&self, key: &str, i: u64) -> Result<&str> {
        let k = cstring(key, "key")?;
        let mut v = ptr::null();
        check(unsafe { sys::mg_model_meta_array_string(&mut v, self.as_ptr(), k.as_ptr(), i) })
            .map_err(|e| keyed(e, key))?;
        Ok(unsafe { static_str(v) })
    }

    fn array_len(&self, key: &str) -> Result<u64> {
        self.meta_entries()
            .into_iter()
            .find(|e| e.key == key)
            .map(|e| e.n_elems)
            .ok_or_else(|| Error::new(Status::NotFound, format!("no metadata key {key}")))
    }

    /// A whole integer array.
    pub fn meta_int_array(&self, key: &str) -> Result<Vec<i64>> {
        (0..self.array_len(key)?).map(|i| self.meta_array_int(key, i)).collect()
    }

    /// A whole float array.
    pub fn meta_float_array(&self, key: &str) -> Result<Vec<f64>> {
        (0..self.array_len(key)?).map(|i| self.meta_array_float(key, i)).collect()
    }

    /// A whole string array.
    pub fn meta_string_array(&self, key: &str) -> Result<Vec<&str>> {
        (0..self.array_len(key)?).map(|i| self.meta_array_string(key, i)).collect()
    }

    /// The score image the model's genomics encoder reads for these
    /// polygenic scores (`scores[i]` named `names[i]`; see
    /// [`Context::prs_predict`]): RGB8, each trait a square of the model's
    /// `genome.grid`, one channel per p-value threshold holding
    /// 128 + `genome.z_scale` * (score - mean) / std, rounded half to even
    /// and clipped to 0..255 (128 for a score not given).
    /// [`Status::Unsupported`] for a model without a genomics encoder.
    pub fn score_image(&self, scores: &[f64], names: &[&str]) -> Result<Image> {
        check_scores(scores, names)?;
        let (_names_c, name_ptrs) = cstrings(names, "score name")?;
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe {
            sys::mg_prs_score_image(&mut out, self.as_ptr(), scores.as_ptr(), name_ptrs.as_ptr(), scores.len(),
                                    err.as_mut_ptr(), ERRLEN)
        };
        check_buf(rc, &err)?;
        let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "mg_prs_score_image gave NULL"))?;
        Ok(Image::from_raw(ptr))
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> u64 {
        unsafe { sys::mg_model_tensor_count(self.as_ptr()) }
    }

    /// Tensor `i` in file order.
    pub fn tensor(&self, i: u64) -> Result<TensorInfo<'_>> {
        let mut t = tensor_info_new();
        check(unsafe { sys::mg_model_tensor_at(&mut t, self.as_ptr(), i) })?;
        Ok(unsafe { tensor_from(&t) })
    }

    /// A tensor by name.
    pub fn tensor_by_name(&self, name: &str) -> Result<TensorInfo<'_>> {
        let n = cstring(name, "tensor name")?;
        let mut t = tensor_info_new();
        check(unsafe { sys::mg_model_tensor_find(&mut t, self.as_ptr(), n.as_ptr()) })
            .map_err(|e| Error::new(e.status(), format!("tensor {name}: {}", e.message())))?;
        Ok(unsafe { tensor_from(&t) })
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.info();
        f.debug_struct("Model").field("name", &i.name).field("n_params", &i.n_params).finish()
    }
}

fn keyed(e: Error, key: &str) -> Error {
    Error::new(e.status(), format!("metadata {key}: {}", e.message()))
}

fn tensor_info_new() -> sys::mg_tensor_info {
    let mut t = unsafe { std::mem::zeroed::<sys::mg_tensor_info>() };
    t.struct_size = std::mem::size_of::<sys::mg_tensor_info>() as u32;
    t
}

/// # Safety
/// `t` was filled by the library for a model that outlives `'a`.
unsafe fn tensor_from<'a>(t: &sys::mg_tensor_info) -> TensorInfo<'a> {
    let n = (t.n_dims as usize).min(sys::MG_TENSOR_MAX_DIMS);
    TensorInfo {
        name: static_str(t.name),
        dtype: Dtype::from_code(t.dtype),
        dims: t.dims[..n].to_vec(),
        n_elems: t.n_elems,
        n_bytes: t.n_bytes,
        compressed: t.compressed != 0,
        file_offset: t.file_offset,
        stored_bytes: t.stored_bytes,
        crc32c: t.crc32c,
        data: if t.data.is_null() || t.n_bytes == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(t.data as *const u8, t.n_bytes as usize)
        },
    }
}
