//! Raw declarations of the libmedgemini C API, written by hand from
//! `include/medgemini.h` (the single source of truth). Every exported
//! `mg_*` function is declared here with the same parameters, in the same
//! order; structs are declared field by field as in the header. Use the
//! safe `medgemini` crate unless you need the raw calls.
//!
//! Options structs must be filled by their `*_init()` functions, which set
//! `struct_size` and the defaults.
#![allow(non_camel_case_types)]
#![no_std]

use core::ffi::{c_char, c_void};

// ---------------------------------------------------------------- versions
pub const MG_VERSION_MAJOR: u32 = 0;
pub const MG_VERSION_MINOR: u32 = 1;
pub const MG_VERSION_PATCH: u32 = 0;
pub const MG_VERSION_NUMBER: u32 =
    MG_VERSION_MAJOR * 10000 + MG_VERSION_MINOR * 100 + MG_VERSION_PATCH;
pub const MG_VERSION_STRING: &str = "0.1.0";

pub const MG_SIMD_SCALAR: i32 = 0;
pub const MG_SIMD_AVX2: i32 = 1;
pub const MG_SIMD_AVX512: i32 = 2;

// ------------------------------------------------------------ status codes
pub type mg_status = i32;
pub const MG_OK: mg_status = 0;
pub const MG_E_INVALID_ARG: mg_status = 1;
pub const MG_E_MISUSE: mg_status = 2;
pub const MG_E_NOMEM: mg_status = 3;
pub const MG_E_IO: mg_status = 4;
pub const MG_E_MODEL_FORMAT: mg_status = 5;
pub const MG_E_CHECKSUM: mg_status = 6;
pub const MG_E_UNSUPPORTED: mg_status = 7;
pub const MG_E_IMAGE_FORMAT: mg_status = 8;
pub const MG_E_LIMIT: mg_status = 9;
pub const MG_E_INTERRUPTED: mg_status = 10;
pub const MG_E_CONTEXT_FULL: mg_status = 11;
pub const MG_E_BUFFER_TOO_SMALL: mg_status = 12;
pub const MG_E_NOT_FOUND: mg_status = 13;
pub const MG_E_TYPE: mg_status = 14;
pub const MG_E_INTERNAL: mg_status = 15;
pub const MG_E_DATA_FORMAT: mg_status = 16;

// ---------------------------------------------------------- opaque handles
#[repr(C)]
pub struct mg_model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mg_tokenizer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mg_writer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mg_context {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mg_batch {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mg_image {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mg_prs {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mg_volume {
    _private: [u8; 0],
}

// ------------------------------------------------------------------- model
pub const MG_LOAD_VERIFY_CHECKSUMS: u32 = 0x1;
pub const MG_LOAD_NO_MMAP: u32 = 0x2;
pub const MG_LOAD_MMAP: u32 = 0x4;
pub const MG_LOAD_FILE_LAYOUT: u32 = 0x8;
pub const MG_CONTEXT_KV_BF16: u32 = 0x1;
pub const MG_CONTEXT_NO_REUSE: u32 = 0x2;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_model_params {
    pub struct_size: u32,
    pub flags: u32,
    pub max_memory: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_model_info {
    pub struct_size: u32,
    pub format_version: u32,
    pub n_tensors: u64,
    pub n_params: u64,
    pub n_bytes: u64,
    pub n_metadata: u64,
    pub name: *const c_char,
    pub architecture: *const c_char,
    pub has_vision: u32,
    pub has_text: u32,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
}

pub const MG_META_INT: i32 = 1;
pub const MG_META_FLOAT: i32 = 2;
pub const MG_META_STRING: i32 = 3;
pub const MG_META_ARRAY: i32 = 4;

pub const MG_DTYPE_F32: i32 = 0;
pub const MG_DTYPE_F16: i32 = 1;
pub const MG_DTYPE_BF16: i32 = 2;
pub const MG_DTYPE_Q8_0: i32 = 3;
pub const MG_DTYPE_Q4_0: i32 = 4;

pub const MG_TENSOR_MAX_DIMS: usize = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_tensor_info {
    pub struct_size: u32,
    pub dtype: i32,
    pub n_dims: u32,
    pub compressed: u32,
    pub dims: [u64; MG_TENSOR_MAX_DIMS],
    pub n_elems: u64,
    pub n_bytes: u64,
    pub file_offset: u64,
    pub stored_bytes: u64,
    pub crc32c: u32,
    pub reserved: u32,
    pub name: *const c_char,
    pub data: *const c_void,
}

// --------------------------------------------------------------- tokenizer
pub const MG_TOKEN_BOS: i32 = 0;
pub const MG_TOKEN_EOS: i32 = 1;
pub const MG_TOKEN_PAD: i32 = 2;
pub const MG_TOKEN_UNK: i32 = 3;
pub const MG_TOKEN_START_OF_TURN: i32 = 4;
pub const MG_TOKEN_END_OF_TURN: i32 = 5;
pub const MG_TOKEN_START_OF_IMAGE: i32 = 6;
pub const MG_TOKEN_END_OF_IMAGE: i32 = 7;
pub const MG_TOKEN_IMAGE: i32 = 8;

pub const MG_TOKENIZE_ADD_BOS: u32 = 0x1;
pub const MG_TOKENIZE_PARSE_SPECIAL: u32 = 0x2;
pub const MG_DETOKENIZE_SKIP_SPECIAL: u32 = 0x1;

// ------------------------------------------------------------------ writer
pub const MG_WRITE_COMPRESS: u32 = 0x1;

// -------------------------------------------------------------- conversion
pub type mg_convert_progress = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        name: *const c_char,
        dtype: i32,
        index: u64,
        count: u64,
        rms_error: f64,
        rel_error: f64,
    ) -> i32,
>;

pub const MG_CONVERT_COMPRESS: u32 = 0x1;
pub const MG_CONVERT_NO_CHECKSUMS: u32 = 0x2;
pub const MG_CONVERT_DTYPE_SOURCE: i32 = -1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_convert_params {
    pub struct_size: u32,
    pub dtype: i32,
    pub flags: u32,
    pub reserved: u32,
    pub mmproj: *const c_char,
    pub tokenizer: *const c_char,
    pub progress: mg_convert_progress,
    pub user_data: *mut c_void,
    pub prune_vocab: *const c_char,
    pub meta: *const *const c_char,
    pub n_meta: u32,
}

// ----------------------------------------------------------------- context
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_context_params {
    pub struct_size: u32,
    pub n_threads: u32,
    pub n_ctx: u32,
    pub flags: u32,
    pub seed: u64,
    pub batch: *mut mg_batch,
}

#[repr(C)]
pub struct mg_studies {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_studies_params {
    pub struct_size: u32,
    pub flags: u32,
    pub max_files: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_sr_params {
    pub struct_size: u32,
    pub flags: u32,
    pub model_name: *const c_char,
    pub manufacturer: *const c_char,
    pub series_description: *const c_char,
    pub series_number: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_batch_params {
    pub struct_size: u32,
    pub n_threads: u32,
    pub max_rows: u32,
    pub wait_us: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct mg_batch_stats {
    pub steps: u64,
    pub rows: u64,
    pub by_rows: [u64; 8],
    pub busy_seconds: f64,
}

// ------------------------------------------------------------------- image
pub const MG_PIXEL_GRAY8: i32 = 1;
pub const MG_PIXEL_GRAY16: i32 = 2;
pub const MG_PIXEL_RGB8: i32 = 3;
pub const MG_PIXEL_RGB16: i32 = 4;

pub const MG_WINDOW_FILE: i32 = 0;
pub const MG_WINDOW_AUTO: i32 = 1;
pub const MG_WINDOW_EXPLICIT: i32 = 2;
pub const MG_WINDOW_NONE: i32 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_image_params {
    pub struct_size: u32,
    pub flags: u32,
    pub max_pixels: u64,
    pub max_memory: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub frame: u32,
    pub window: i32,
    pub window_center: f64,
    pub window_width: f64,
}

pub const MG_IMAGE_SRC_PIXELS: i32 = 0;
pub const MG_IMAGE_SRC_JPEG: i32 = 1;
pub const MG_IMAGE_SRC_PNG: i32 = 2;
pub const MG_IMAGE_SRC_DICOM: i32 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_image_info {
    pub struct_size: u32,
    pub width: u32,
    pub height: u32,
    pub format: i32,
    pub source: i32,
    pub bits_stored: u32,
    pub n_frames: u32,
    pub frame: u32,
    pub bits_allocated: u32,
    pub pixel_signed: i32,
    pub window: i32,
    pub raw_offset: i32,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub window_center: f64,
    pub window_width: f64,
}

// ------------------------------------------------------------------ volume
pub const MG_VOLUME_RECURSIVE: u32 = 0x01;
pub const MG_VOLUME_KEEP_DUPLICATES: u32 = 0x02;
pub const MG_VOLUME_STRICT_SPACING: u32 = 0x04;
pub const MG_VOLUME_STRICT_SERIES: u32 = 0x08;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_volume_params {
    pub struct_size: u32,
    pub flags: u32,
    pub max_voxels: u64,
    pub max_memory: u64,
    pub series_uid: *const c_char,
    pub max_files: u32,
    pub reserved: u32,
}

pub const MG_VOLUME_SRC_VOXELS: i32 = 0;
pub const MG_VOLUME_SRC_DICOM: i32 = 1;
pub const MG_VOLUME_SRC_NIFTI: i32 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_volume_info {
    pub struct_size: u32,
    pub nx: u32,
    pub ny: u32,
    pub nz: u32,
    pub source: i32,
    pub n_files: u32,
    pub n_skipped: u32,
    pub n_warnings: u32,
    pub spacing: [f64; 3],
    pub affine: [f64; 16],
    pub min_value: f64,
    pub max_value: f64,
}

pub const MG_NIFTI_FLOAT32: u32 = 0x1;

// ----------------------------------------------------------- volume slices
pub const MG_SLICE_WINDOW_AUTO: i32 = 0;
pub const MG_SLICE_WINDOW_CT: i32 = 1;
pub const MG_SLICE_WINDOW_MINMAX: i32 = 2;
pub const MG_SLICES_AS_STORED: u32 = 0x1;
pub const MG_MAX_SLICES: u32 = 1024;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_slice_params {
    pub struct_size: u32,
    pub max_slices: u32,
    pub window: i32,
    pub flags: u32,
}

// -------------------------------------------------------------- generation
pub type mg_token_callback = Option<
    unsafe extern "C" fn(user_data: *mut c_void, piece: *const c_char, len: usize, token: i32) -> i32,
>;

pub const MG_STAGE_ENCODE: i32 = 1;
pub const MG_STAGE_PREFILL: i32 = 2;
pub const MG_STAGE_GENERATE: i32 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_progress {
    pub struct_size: u32,
    pub stage: i32,
    pub block: u32,
    pub n_blocks: u32,
    pub step: u32,
    pub n_steps: u32,
    pub done: u32,
    pub total: u32,
    pub reused: u32,
    pub cached: u32,
    pub seconds: f64,
}

pub type mg_progress_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, progress: *const mg_progress) -> i32>;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_gen_params {
    pub struct_size: u32,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
    pub stop: *const *const c_char,
    pub n_stop: u32,
    pub flags: u32,
    pub on_token: mg_token_callback,
    pub user_data: *mut c_void,
    pub system_prompt: *const c_char,
    pub instruction: *const c_char,
    pub on_progress: mg_progress_callback,
    pub progress_user_data: *mut c_void,
    /// A context on a draft model (NULL: none).
    pub draft: *mut mg_context,
    /// Most tokens per draft (0 = the library's default).
    pub n_draft: u32,
    /// 0.
    pub reserved: u32,
}

pub const MG_GEN_RAW_PROMPT: u32 = 0x1;
pub const MG_GEN_DRAFT_NGRAM: u32 = 0x2;

// -------------------------------------------------------- polygenic scores
pub const MG_PRS_NO_MEAN_IMPUTATION: u32 = 0x01;
pub const MG_PRS_DOMINANT: u32 = 0x02;
pub const MG_PRS_RECESSIVE: u32 = 0x04;
pub const MG_PRS_KEEP_AMBIGUOUS: u32 = 0x08;
pub const MG_PRS_KEEP_MULTIALLELIC: u32 = 0x10;
pub const MG_PRS_DOUBLE_SUMS: u32 = 0x20;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_prs_params {
    pub struct_size: u32,
    pub flags: u32,
    pub min_overlap: f64,
    pub n_threads: u32,
    pub block_variants: u32,
    pub vcf_dosage: u32,
}

pub const MG_PRS_DOSAGE_DS: u32 = 0;
pub const MG_PRS_DOSAGE_GP: u32 = 1;
pub const MG_PRS_DOSAGE_HDS: u32 = 2;
pub const MG_PRS_DOSAGE_NONE: u32 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mg_prs_match_report {
    pub struct_size: u32,
    pub kept: u32,
    pub n_rows: u64,
    pub n_matched: u64,
    pub n_flipped: u64,
    pub n_ambiguous: u64,
    pub n_multiallelic: u64,
    pub n_duplicate: u64,
    pub n_unmatched: u64,
    pub overlap: f64,
}

pub type mg_prs_progress = Option<unsafe extern "C" fn(user_data: *mut c_void, done: u64, total: u64) -> i32>;

pub const MG_PRS_COL_SUM: i32 = 1;
pub const MG_PRS_COL_AVG: i32 = 2;
pub const MG_PRS_COL_ALLELE_CT: i32 = 3;
pub const MG_PRS_COL_DENOM: i32 = 4;
pub const MG_PRS_COL_NAMED_ALLELE_DOSAGE_SUM: i32 = 5;

// --------------------------------------------------------------- functions
extern "C" {
    // versions and build
    pub fn mg_version_number() -> u32;
    pub fn mg_version_string() -> *const c_char;
    pub fn mg_build_info() -> *const c_char;
    pub fn mg_simd_level() -> i32;
    pub fn mg_status_str(status: mg_status) -> *const c_char;
    pub fn mg_string_free(s: *mut c_char);

    // model
    pub fn mg_model_params_init(params: *mut mg_model_params);
    pub fn mg_model_load(out: *mut *mut mg_model, path: *const c_char, params: *const mg_model_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_model_free(model: *mut mg_model);
    pub fn mg_model_info_get(out: *mut mg_model_info, model: *const mg_model) -> mg_status;
    pub fn mg_model_meta_count(model: *const mg_model) -> u64;
    pub fn mg_model_meta_entry(key: *mut *const c_char, type_: *mut i32, elem_type: *mut i32, n_elems: *mut u64, model: *const mg_model, i: u64) -> mg_status;
    pub fn mg_model_meta_int(out: *mut i64, model: *const mg_model, key: *const c_char) -> mg_status;
    pub fn mg_model_meta_float(out: *mut f64, model: *const mg_model, key: *const c_char) -> mg_status;
    pub fn mg_model_meta_string(out: *mut *const c_char, model: *const mg_model, key: *const c_char) -> mg_status;
    pub fn mg_model_meta_array_int(out: *mut i64, model: *const mg_model, key: *const c_char, i: u64) -> mg_status;
    pub fn mg_model_meta_array_float(out: *mut f64, model: *const mg_model, key: *const c_char, i: u64) -> mg_status;
    pub fn mg_model_meta_array_string(out: *mut *const c_char, model: *const mg_model, key: *const c_char, i: u64) -> mg_status;
    pub fn mg_dtype_name(dtype: i32) -> *const c_char;
    pub fn mg_model_tensor_count(model: *const mg_model) -> u64;
    pub fn mg_model_tensor_at(out: *mut mg_tensor_info, model: *const mg_model, i: u64) -> mg_status;
    pub fn mg_model_tensor_find(out: *mut mg_tensor_info, model: *const mg_model, name: *const c_char) -> mg_status;

    // tokenizer
    pub fn mg_model_tokenizer(model: *const mg_model) -> *const mg_tokenizer;
    pub fn mg_tokenizer_load_json(out: *mut *mut mg_tokenizer, path: *const c_char, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_tokenizer_free(tok: *mut mg_tokenizer);
    pub fn mg_tokenizer_vocab_size(tok: *const mg_tokenizer) -> u32;
    pub fn mg_tokenizer_piece(tok: *const mg_tokenizer, id: i32) -> *const c_char;
    pub fn mg_tokenizer_special(tok: *const mg_tokenizer, role: i32) -> i32;
    pub fn mg_tokenize(ids: *mut i32, cap: usize, n_ids: *mut usize, tok: *const mg_tokenizer, text: *const c_char, len: usize, flags: u32) -> mg_status;
    pub fn mg_detokenize(buf: *mut c_char, cap: usize, n_bytes: *mut usize, tok: *const mg_tokenizer, ids: *const i32, n_ids: usize, flags: u32) -> mg_status;

    // writer
    pub fn mg_writer_open(out: *mut *mut mg_writer, path: *const c_char, flags: u32, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_writer_set_int(w: *mut mg_writer, key: *const c_char, v: i64) -> mg_status;
    pub fn mg_writer_set_float(w: *mut mg_writer, key: *const c_char, v: f64) -> mg_status;
    pub fn mg_writer_set_string(w: *mut mg_writer, key: *const c_char, v: *const c_char) -> mg_status;
    pub fn mg_writer_set_int_array(w: *mut mg_writer, key: *const c_char, v: *const i64, n: u64) -> mg_status;
    pub fn mg_writer_set_float_array(w: *mut mg_writer, key: *const c_char, v: *const f64, n: u64) -> mg_status;
    pub fn mg_writer_set_string_array(w: *mut mg_writer, key: *const c_char, v: *const *const c_char, n: u64) -> mg_status;
    pub fn mg_writer_add_tensor(w: *mut mg_writer, name: *const c_char, dtype: i32, n_dims: u32, dims: *const u64, flags: u32) -> mg_status;
    pub fn mg_writer_write_tensor(w: *mut mg_writer, name: *const c_char, data: *const c_void, size: u64) -> mg_status;
    pub fn mg_writer_write_tensor_f32(w: *mut mg_writer, name: *const c_char, data: *const f32, n_elems: u64) -> mg_status;
    pub fn mg_writer_finish(w: *mut mg_writer) -> mg_status;
    pub fn mg_writer_errmsg(w: *const mg_writer) -> *const c_char;
    pub fn mg_writer_free(w: *mut mg_writer);

    // conversion
    pub fn mg_convert_params_init(params: *mut mg_convert_params);
    pub fn mg_convert(src: *const c_char, out_path: *const c_char, params: *const mg_convert_params, err: *mut c_char, errlen: usize) -> mg_status;

    // context
    pub fn mg_context_params_init(params: *mut mg_context_params);
    pub fn mg_context_new(out: *mut *mut mg_context, model: *mut mg_model, params: *const mg_context_params) -> mg_status;
    pub fn mg_context_free(ctx: *mut mg_context);
    pub fn mg_context_interrupt(ctx: *mut mg_context) -> mg_status;
    pub fn mg_context_errmsg(ctx: *const mg_context) -> *const c_char;
    pub fn mg_context_errcode(ctx: *const mg_context) -> mg_status;
    pub fn mg_last_error() -> *const c_char;
    pub fn mg_studies_params_init(params: *mut mg_studies_params);
    pub fn mg_studies_scan(out: *mut *mut mg_studies, paths: *const *const c_char, n_paths: usize, params: *const mg_studies_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_studies_free(studies: *mut mg_studies);
    pub fn mg_studies_count(studies: *const mg_studies) -> usize;
    pub fn mg_studies_series_count(studies: *const mg_studies, study: usize) -> usize;
    pub fn mg_studies_get(studies: *const mg_studies, study: usize, series: i64, key: *const c_char) -> *const c_char;
    pub fn mg_sr_params_init(params: *mut mg_sr_params);
    pub fn mg_sr_write(out_path: *const c_char, report: *const c_char, sources: *const *const c_char, n_sources: usize, params: *const mg_sr_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_batch_params_init(params: *mut mg_batch_params);
    pub fn mg_batch_new(out: *mut *mut mg_batch, model: *mut mg_model, params: *const mg_batch_params) -> mg_status;
    pub fn mg_batch_free(batch: *mut mg_batch);
    pub fn mg_batch_get_stats(batch: *const mg_batch, out: *mut mg_batch_stats) -> mg_status;

    // image
    pub fn mg_image_params_init(params: *mut mg_image_params);
    pub fn mg_image_load_file(out: *mut *mut mg_image, path: *const c_char, params: *const mg_image_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_image_load_memory(out: *mut *mut mg_image, data: *const c_void, size: usize, params: *const mg_image_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_image_from_pixels(out: *mut *mut mg_image, pixels: *const c_void, width: u32, height: u32, stride: usize, format: i32, params: *const mg_image_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_image_free(image: *mut mg_image);
    pub fn mg_image_info_get(out: *mut mg_image_info, image: *const mg_image) -> mg_status;
    pub fn mg_image_copy_pixels(buf: *mut c_void, size: usize, needed: *mut usize, image: *const mg_image) -> mg_status;
    pub fn mg_image_get_string(image: *const mg_image, key: *const c_char) -> *const c_char;

    // volume
    pub fn mg_volume_params_init(params: *mut mg_volume_params);
    pub fn mg_volume_load_dicom(out: *mut *mut mg_volume, paths: *const *const c_char, n_paths: usize, params: *const mg_volume_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_volume_load_nifti(out: *mut *mut mg_volume, path: *const c_char, params: *const mg_volume_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_volume_from_voxels(out: *mut *mut mg_volume, voxels: *const f32, nx: u32, ny: u32, nz: u32, affine: *const f64, modality: *const c_char, params: *const mg_volume_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_volume_free(volume: *mut mg_volume);
    pub fn mg_volume_info_get(out: *mut mg_volume_info, volume: *const mg_volume) -> mg_status;
    pub fn mg_volume_copy_voxels(buf: *mut f32, cap: usize, needed: *mut usize, volume: *const mg_volume) -> mg_status;
    pub fn mg_volume_get_string(volume: *const mg_volume, key: *const c_char) -> *const c_char;
    pub fn mg_volume_write_nifti(volume: *const mg_volume, path: *const c_char, flags: u32, err: *mut c_char, errlen: usize) -> mg_status;

    // volume slices
    pub fn mg_slice_params_init(params: *mut mg_slice_params);
    pub fn mg_volume_slices(out: *mut *mut mg_image, cap: usize, n_out: *mut usize, z_index: *mut u32, volume: *const mg_volume, params: *const mg_slice_params, err: *mut c_char, errlen: usize) -> mg_status;

    // generation
    pub fn mg_gen_params_init(params: *mut mg_gen_params);
    pub fn mg_generate(out: *mut *mut c_char, ctx: *mut mg_context, prompt: *const c_char, params: *const mg_gen_params) -> mg_status;
    pub fn mg_generate_ids(out: *mut *mut c_char, ctx: *mut mg_context, ids: *const i32, n_ids: usize, params: *const mg_gen_params) -> mg_status;
    pub fn mg_context_eval(ctx: *mut mg_context, ids: *const i32, n_ids: usize, logits: *mut f32, cap: usize) -> mg_status;
    pub fn mg_context_reset(ctx: *mut mg_context) -> mg_status;
    pub fn mg_context_logits(ctx: *mut mg_context, logits: *mut f32, cap: usize) -> mg_status;
    pub fn mg_context_tokens(ids: *mut i32, cap: usize, needed: *mut usize, ctx: *mut mg_context) -> mg_status;
    pub fn mg_context_n_tokens(ctx: *const mg_context) -> u32;

    // polygenic scores
    pub fn mg_prs_params_init(params: *mut mg_prs_params);
    pub fn mg_prs_open_plink(out: *mut *mut mg_prs, prefix: *const c_char, params: *const mg_prs_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_prs_open_vcf(out: *mut *mut mg_prs, path: *const c_char, params: *const mg_prs_params, err: *mut c_char, errlen: usize) -> mg_status;
    pub fn mg_prs_read_freq(prs: *mut mg_prs, path: *const c_char) -> mg_status;
    pub fn mg_prs_add_scores(prs: *mut mg_prs, n_added: *mut u32, path: *const c_char) -> mg_status;
    pub fn mg_prs_compute(prs: *mut mg_prs) -> mg_status;
    pub fn mg_prs_set_progress(prs: *mut mg_prs, fn_: mg_prs_progress, user_data: *mut c_void) -> mg_status;
    pub fn mg_prs_interrupt(prs: *mut mg_prs) -> mg_status;
    pub fn mg_prs_sample_count(prs: *const mg_prs) -> u64;
    pub fn mg_prs_variant_count(prs: *const mg_prs) -> u64;
    pub fn mg_prs_score_count(prs: *const mg_prs) -> u32;
    pub fn mg_prs_sample_id(fid: *mut *const c_char, iid: *mut *const c_char, prs: *const mg_prs, i: u64) -> mg_status;
    pub fn mg_prs_score_name(prs: *const mg_prs, k: u32) -> *const c_char;
    pub fn mg_prs_match_report_get(out: *mut mg_prs_match_report, prs: *const mg_prs, k: u32) -> mg_status;
    pub fn mg_prs_results(buf: *mut f64, n: usize, prs: *const mg_prs, column: i32, score: u32) -> mg_status;
    pub fn mg_prs_write_sscore(prs: *mut mg_prs, path: *const c_char) -> mg_status;
    pub fn mg_prs_write_freq(prs: *mut mg_prs, path: *const c_char) -> mg_status;
    pub fn mg_prs_errmsg(prs: *const mg_prs) -> *const c_char;
    pub fn mg_prs_free(prs: *mut mg_prs);

    // tasks
    pub fn mg_generate_report(out: *mut *mut c_char, ctx: *mut mg_context, images: *const *const mg_image, n_images: usize, params: *const mg_gen_params) -> mg_status;
    pub fn mg_vqa(out: *mut *mut c_char, ctx: *mut mg_context, images: *const *const mg_image, n_images: usize, question: *const c_char, params: *const mg_gen_params) -> mg_status;
    pub fn mg_chat(out: *mut *mut c_char, ctx: *mut mg_context, images: *const *const mg_image, n_images: usize, message: *const c_char, params: *const mg_gen_params) -> mg_status;
    pub fn mg_generate_report_volume(out: *mut *mut c_char, ctx: *mut mg_context, volume: *const mg_volume, slices: *const mg_slice_params, params: *const mg_gen_params) -> mg_status;
    pub fn mg_vqa_volume(out: *mut *mut c_char, ctx: *mut mg_context, volume: *const mg_volume, question: *const c_char, slices: *const mg_slice_params, params: *const mg_gen_params) -> mg_status;
    pub fn mg_prs_predict(out: *mut *mut c_char, risk: *mut f64, ctx: *mut mg_context, scores: *const f64, names: *const *const c_char, n_scores: usize, question: *const c_char, params: *const mg_gen_params) -> mg_status;
    pub fn mg_prs_predict_batch(risk: *mut f64, ctx: *mut mg_context, scores: *const f64, n_individuals: usize, names: *const *const c_char, n_scores: usize, questions: *const *const c_char, n_questions: usize) -> mg_status;
    pub fn mg_prs_score_image(out: *mut *mut mg_image, model: *const mg_model, scores: *const f64, names: *const *const c_char, n_scores: usize, err: *mut c_char, errlen: usize) -> mg_status;
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// Struct sizes as the C compiler lays them out on LP64 targets.
    #[test]
    fn struct_sizes_match_the_header() {
        use core::mem::size_of;
        assert_eq!(size_of::<mg_model_params>(), 16);
        assert_eq!(size_of::<mg_model_info>(), 72);
        assert_eq!(size_of::<mg_tensor_info>(), 104);
        assert_eq!(size_of::<mg_convert_params>(), 72);
        assert_eq!(size_of::<mg_context_params>(), 32);
        assert_eq!(size_of::<mg_batch_params>(), 16);
        assert_eq!(size_of::<mg_sr_params>(), 40);
        assert_eq!(size_of::<mg_studies_params>(), 16);
        assert_eq!(size_of::<mg_batch_stats>(), 88);
        assert_eq!(size_of::<mg_image_params>(), 56);
        assert_eq!(size_of::<mg_image_info>(), 80);
        assert_eq!(size_of::<mg_gen_params>(), 112);
        assert_eq!(size_of::<mg_progress>(), 48);
        assert_eq!(size_of::<mg_prs_params>(), 32);
        assert_eq!(size_of::<mg_prs_match_report>(), 72);
        assert_eq!(size_of::<mg_volume_params>(), 40);
        assert_eq!(size_of::<mg_volume_info>(), 200);
        assert_eq!(size_of::<mg_slice_params>(), 16);
    }

    #[test]
    fn init_functions_agree_on_struct_size() {
        unsafe {
            let mut g = core::mem::zeroed::<mg_gen_params>();
            mg_gen_params_init(&mut g);
            assert_eq!(g.struct_size as usize, core::mem::size_of::<mg_gen_params>());
            assert_eq!(g.max_tokens, 256);
            assert!(g.on_progress.is_none() && g.progress_user_data.is_null());
            let mut i = core::mem::zeroed::<mg_image_params>();
            mg_image_params_init(&mut i);
            assert_eq!(i.struct_size as usize, core::mem::size_of::<mg_image_params>());
            assert_eq!(i.max_pixels, 1u64 << 27);
            let mut p = core::mem::zeroed::<mg_prs_params>();
            mg_prs_params_init(&mut p);
            assert_eq!(p.struct_size as usize, core::mem::size_of::<mg_prs_params>());
            assert_eq!(p.min_overlap, 0.75);
            let mut v = core::mem::zeroed::<mg_volume_params>();
            mg_volume_params_init(&mut v);
            assert_eq!(v.struct_size as usize, core::mem::size_of::<mg_volume_params>());
            assert_eq!(v.max_voxels, 1u64 << 29);
            let mut sp = core::mem::zeroed::<mg_slice_params>();
            mg_slice_params_init(&mut sp);
            assert_eq!(sp.struct_size as usize, core::mem::size_of::<mg_slice_params>());
            assert_eq!((sp.max_slices, sp.window, sp.flags), (85, MG_SLICE_WINDOW_AUTO, 0));
            assert_eq!(mg_version_number(), MG_VERSION_NUMBER);
        }
    }
}
