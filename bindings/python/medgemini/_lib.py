"""Raw ctypes declarations of libmedgemini's public API (include/medgemini.h).

Every exported function is declared here exactly once, as
``_fn("mg_name", restype, [argtypes...])``; bindings/check_drift.py reads these
calls to check that the binding matches the library. Structs are declared
field by field as in the header and are always filled by the library's
``*_init()`` functions before use.
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int32,
                    c_size_t, c_uint32, c_uint64, c_int64, c_void_p)

SONAME = "libmedgemini.so.0"


def _load():
    """MG_LIB (the file, or a folder holding it), then the in-tree build
    (repository/lib), then the system loader."""
    env = os.environ.get("MG_LIB")
    if env:
        path = os.path.join(env, SONAME) if os.path.isdir(env) else env
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:
            raise OSError("cannot load MG_LIB=%r: %s" % (env, exc)) from None
    here = os.path.dirname(os.path.abspath(__file__))
    intree = os.path.normpath(os.path.join(here, "..", "..", "..", "lib", SONAME))
    if os.path.exists(intree):
        return ctypes.CDLL(intree), intree
    try:
        return ctypes.CDLL(SONAME), SONAME
    except OSError as exc:
        raise OSError("cannot load %s (install libmedgemini or set MG_LIB to "
                      "its path): %s" % (SONAME, exc)) from None


lib, lib_path = _load()


def _fn(name, restype, argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


# ------------------------------------------------------------------ structs

class mg_model_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32),
                ("max_memory", c_uint64)]


class mg_model_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("format_version", c_uint32),
                ("n_tensors", c_uint64), ("n_params", c_uint64),
                ("n_bytes", c_uint64), ("n_metadata", c_uint64),
                ("name", c_char_p), ("architecture", c_char_p),
                ("has_vision", c_uint32), ("has_text", c_uint32),
                ("n_vocab", c_uint32), ("n_ctx_train", c_uint32)]


MG_TENSOR_MAX_DIMS = 4


class mg_tensor_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("dtype", c_int32),
                ("n_dims", c_uint32), ("compressed", c_uint32),
                ("dims", c_uint64 * MG_TENSOR_MAX_DIMS),
                ("n_elems", c_uint64), ("n_bytes", c_uint64),
                ("file_offset", c_uint64), ("stored_bytes", c_uint64),
                ("crc32c", c_uint32), ("reserved", c_uint32),
                ("name", c_char_p), ("data", c_void_p)]


mg_convert_progress = ctypes.CFUNCTYPE(c_int32, c_void_p, c_char_p, c_int32,
                                       c_uint64, c_uint64, c_double, c_double)


class mg_convert_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("dtype", c_int32),
                ("flags", c_uint32), ("reserved", c_uint32),
                ("mmproj", c_char_p), ("tokenizer", c_char_p),
                ("progress", mg_convert_progress), ("user_data", c_void_p),
                ("prune_vocab", c_char_p), ("meta", POINTER(c_char_p)),
                ("n_meta", c_uint32)]


class mg_context_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_threads", c_uint32),
                ("n_ctx", c_uint32), ("flags", c_uint32), ("seed", c_uint64),
                ("batch", c_void_p)]


class mg_sr_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32), ("model_name", c_char_p),
                ("manufacturer", c_char_p), ("series_description", c_char_p),
                ("series_number", c_uint32), ("reserved", c_uint32)]


class mg_studies_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32), ("max_files", c_uint32),
                ("reserved", c_uint32)]


class mg_batch_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_threads", c_uint32),
                ("max_rows", c_uint32), ("wait_us", c_uint32)]


class mg_batch_stats(Structure):
    _fields_ = [("steps", c_uint64), ("rows", c_uint64), ("by_rows", c_uint64 * 8),
                ("busy_seconds", c_double)]


class mg_image_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32),
                ("max_pixels", c_uint64), ("max_memory", c_uint64),
                ("max_width", c_uint32), ("max_height", c_uint32),
                ("frame", c_uint32), ("window", c_int32),
                ("window_center", c_double), ("window_width", c_double)]


class mg_image_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("width", c_uint32),
                ("height", c_uint32), ("format", c_int32), ("source", c_int32),
                ("bits_stored", c_uint32), ("n_frames", c_uint32),
                ("frame", c_uint32), ("bits_allocated", c_uint32),
                ("pixel_signed", c_int32), ("window", c_int32),
                ("raw_offset", c_int32), ("rescale_slope", c_double),
                ("rescale_intercept", c_double), ("window_center", c_double),
                ("window_width", c_double)]


class mg_volume_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32),
                ("max_voxels", c_uint64), ("max_memory", c_uint64),
                ("series_uid", c_char_p), ("max_files", c_uint32),
                ("reserved", c_uint32)]


class mg_volume_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("nx", c_uint32), ("ny", c_uint32),
                ("nz", c_uint32), ("source", c_int32), ("n_files", c_uint32),
                ("n_skipped", c_uint32), ("n_warnings", c_uint32),
                ("spacing", c_double * 3), ("affine", c_double * 16),
                ("min_value", c_double), ("max_value", c_double)]


class mg_slice_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("max_slices", c_uint32),
                ("window", c_int32), ("flags", c_uint32)]


# piece is not NUL-terminated: take it as a raw pointer.
mg_token_callback = ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_size_t,
                                     c_int32)


class mg_progress(Structure):
    _fields_ = [("struct_size", c_uint32), ("stage", c_int32),
                ("block", c_uint32), ("n_blocks", c_uint32),
                ("step", c_uint32), ("n_steps", c_uint32),
                ("done", c_uint32), ("total", c_uint32),
                ("reused", c_uint32), ("cached", c_uint32),
                ("seconds", c_double)]


MG_STAGE_ENCODE, MG_STAGE_PREFILL, MG_STAGE_GENERATE = 1, 2, 3

mg_progress_callback = ctypes.CFUNCTYPE(c_int32, c_void_p, POINTER(mg_progress))


class mg_gen_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("max_tokens", c_uint32),
                ("temperature", c_float), ("top_k", c_int32),
                ("top_p", c_float), ("repetition_penalty", c_float),
                ("seed", c_uint64), ("stop", POINTER(c_char_p)),
                ("n_stop", c_uint32), ("flags", c_uint32),
                ("on_token", mg_token_callback), ("user_data", c_void_p),
                ("system_prompt", c_char_p), ("instruction", c_char_p),
                ("on_progress", mg_progress_callback),
                ("progress_user_data", c_void_p),
                ("draft", c_void_p), ("n_draft", c_uint32), ("reserved", c_uint32)]


class mg_prs_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32),
                ("min_overlap", c_double), ("n_threads", c_uint32),
                ("block_variants", c_uint32), ("vcf_dosage", c_uint32)]


mg_prs_progress = ctypes.CFUNCTYPE(c_int32, c_void_p, c_uint64, c_uint64)


class mg_prs_match_report(Structure):
    _fields_ = [("struct_size", c_uint32), ("kept", c_uint32),
                ("n_rows", c_uint64), ("n_matched", c_uint64),
                ("n_flipped", c_uint64), ("n_ambiguous", c_uint64),
                ("n_multiallelic", c_uint64), ("n_duplicate", c_uint64),
                ("n_unmatched", c_uint64), ("overlap", c_double)]


# ------------------------------------------------------------------ handles
# Opaque handles are plain void pointers; the Python classes own them.
P = c_void_p
PP = POINTER(c_void_p)
ERRBUF = 1024
st = c_int32  # mg_status

# ---------------------------------------------------------------- functions
mg_version_number = _fn("mg_version_number", c_uint32, [])
mg_version_string = _fn("mg_version_string", c_char_p, [])
mg_build_info = _fn("mg_build_info", c_char_p, [])
mg_simd_level = _fn("mg_simd_level", c_int32, [])
mg_status_str = _fn("mg_status_str", c_char_p, [c_int32])
mg_string_free = _fn("mg_string_free", None, [c_void_p])
mg_dtype_name = _fn("mg_dtype_name", c_char_p, [c_int32])

# model
mg_model_params_init = _fn("mg_model_params_init", None, [POINTER(mg_model_params)])
mg_model_load = _fn("mg_model_load", st, [PP, c_char_p, POINTER(mg_model_params), c_char_p, c_size_t])
mg_model_free = _fn("mg_model_free", None, [P])
mg_model_info_get = _fn("mg_model_info_get", st, [POINTER(mg_model_info), P])
mg_model_meta_count = _fn("mg_model_meta_count", c_uint64, [P])
mg_model_meta_entry = _fn("mg_model_meta_entry", st, [POINTER(c_char_p), POINTER(c_int32), POINTER(c_int32), POINTER(c_uint64), P, c_uint64])
mg_model_meta_int = _fn("mg_model_meta_int", st, [POINTER(c_int64), P, c_char_p])
mg_model_meta_float = _fn("mg_model_meta_float", st, [POINTER(c_double), P, c_char_p])
mg_model_meta_string = _fn("mg_model_meta_string", st, [POINTER(c_char_p), P, c_char_p])
mg_model_meta_array_int = _fn("mg_model_meta_array_int", st, [POINTER(c_int64), P, c_char_p, c_uint64])
mg_model_meta_array_float = _fn("mg_model_meta_array_float", st, [POINTER(c_double), P, c_char_p, c_uint64])
mg_model_meta_array_string = _fn("mg_model_meta_array_string", st, [POINTER(c_char_p), P, c_char_p, c_uint64])
mg_model_tensor_count = _fn("mg_model_tensor_count", c_uint64, [P])
mg_model_tensor_at = _fn("mg_model_tensor_at", st, [POINTER(mg_tensor_info), P, c_uint64])
mg_model_tensor_find = _fn("mg_model_tensor_find", st, [POINTER(mg_tensor_info), P, c_char_p])

# tokenizer
mg_model_tokenizer = _fn("mg_model_tokenizer", P, [P])
mg_tokenizer_load_json = _fn("mg_tokenizer_load_json", st, [PP, c_char_p, c_char_p, c_size_t])
mg_tokenizer_free = _fn("mg_tokenizer_free", None, [P])
mg_tokenizer_vocab_size = _fn("mg_tokenizer_vocab_size", c_uint32, [P])
mg_tokenizer_piece = _fn("mg_tokenizer_piece", c_char_p, [P, c_int32])
mg_tokenizer_special = _fn("mg_tokenizer_special", c_int32, [P, c_int32])
mg_tokenize = _fn("mg_tokenize", st, [POINTER(c_int32), c_size_t, POINTER(c_size_t), P, c_char_p, c_size_t, c_uint32])
mg_detokenize = _fn("mg_detokenize", st, [c_void_p, c_size_t, POINTER(c_size_t), P, POINTER(c_int32), c_size_t, c_uint32])

# writer
mg_writer_open = _fn("mg_writer_open", st, [PP, c_char_p, c_uint32, c_char_p, c_size_t])
mg_writer_set_int = _fn("mg_writer_set_int", st, [P, c_char_p, c_int64])
mg_writer_set_float = _fn("mg_writer_set_float", st, [P, c_char_p, c_double])
mg_writer_set_string = _fn("mg_writer_set_string", st, [P, c_char_p, c_char_p])
mg_writer_set_int_array = _fn("mg_writer_set_int_array", st, [P, c_char_p, POINTER(c_int64), c_uint64])
mg_writer_set_float_array = _fn("mg_writer_set_float_array", st, [P, c_char_p, POINTER(c_double), c_uint64])
mg_writer_set_string_array = _fn("mg_writer_set_string_array", st, [P, c_char_p, POINTER(c_char_p), c_uint64])
mg_writer_add_tensor = _fn("mg_writer_add_tensor", st, [P, c_char_p, c_int32, c_uint32, POINTER(c_uint64), c_uint32])
mg_writer_write_tensor = _fn("mg_writer_write_tensor", st, [P, c_char_p, c_void_p, c_uint64])
mg_writer_write_tensor_f32 = _fn("mg_writer_write_tensor_f32", st, [P, c_char_p, c_void_p, c_uint64])
mg_writer_finish = _fn("mg_writer_finish", st, [P])
mg_writer_errmsg = _fn("mg_writer_errmsg", c_char_p, [P])
mg_writer_free = _fn("mg_writer_free", None, [P])

# conversion
mg_convert_params_init = _fn("mg_convert_params_init", None, [POINTER(mg_convert_params)])
mg_convert = _fn("mg_convert", st, [c_char_p, c_char_p, POINTER(mg_convert_params), c_char_p, c_size_t])

# context
mg_context_params_init = _fn("mg_context_params_init", None, [POINTER(mg_context_params)])
mg_context_new = _fn("mg_context_new", st, [PP, P, POINTER(mg_context_params)])
mg_context_free = _fn("mg_context_free", None, [P])
mg_last_error = _fn("mg_last_error", c_char_p, [])
mg_batch_params_init = _fn("mg_batch_params_init", None, [POINTER(mg_batch_params)])
mg_batch_new = _fn("mg_batch_new", st, [PP, P, POINTER(mg_batch_params)])
mg_batch_free = _fn("mg_batch_free", None, [P])
mg_batch_get_stats = _fn("mg_batch_get_stats", st, [P, POINTER(mg_batch_stats)])
mg_context_interrupt = _fn("mg_context_interrupt", st, [P])
mg_context_errmsg = _fn("mg_context_errmsg", c_char_p, [P])
mg_context_errcode = _fn("mg_context_errcode", st, [P])

# images
mg_image_params_init = _fn("mg_image_params_init", None, [POINTER(mg_image_params)])
mg_studies_params_init = _fn("mg_studies_params_init", None, [POINTER(mg_studies_params)])
mg_studies_scan = _fn("mg_studies_scan", st, [PP, POINTER(c_char_p), c_size_t,
                                              POINTER(mg_studies_params), c_char_p, c_size_t])
mg_studies_free = _fn("mg_studies_free", None, [P])
mg_studies_count = _fn("mg_studies_count", c_size_t, [P])
mg_studies_series_count = _fn("mg_studies_series_count", c_size_t, [P, c_size_t])
mg_studies_get = _fn("mg_studies_get", c_char_p, [P, c_size_t, c_int64, c_char_p])
mg_sr_params_init = _fn("mg_sr_params_init", None, [POINTER(mg_sr_params)])
mg_sr_write = _fn("mg_sr_write", st, [c_char_p, c_char_p, POINTER(c_char_p), c_size_t,
                                      POINTER(mg_sr_params), c_char_p, c_size_t])
mg_image_load_file = _fn("mg_image_load_file", st, [PP, c_char_p, POINTER(mg_image_params), c_char_p, c_size_t])
mg_image_load_memory = _fn("mg_image_load_memory", st, [PP, c_void_p, c_size_t, POINTER(mg_image_params), c_char_p, c_size_t])
mg_image_from_pixels = _fn("mg_image_from_pixels", st, [PP, c_void_p, c_uint32, c_uint32, c_size_t, c_int32, POINTER(mg_image_params), c_char_p, c_size_t])
mg_image_free = _fn("mg_image_free", None, [P])
mg_image_info_get = _fn("mg_image_info_get", st, [POINTER(mg_image_info), P])
mg_image_copy_pixels = _fn("mg_image_copy_pixels", st, [c_void_p, c_size_t, POINTER(c_size_t), P])
mg_image_get_string = _fn("mg_image_get_string", c_char_p, [P, c_char_p])

# volumes
mg_volume_params_init = _fn("mg_volume_params_init", None, [POINTER(mg_volume_params)])
mg_volume_load_dicom = _fn("mg_volume_load_dicom", st, [PP, POINTER(c_char_p), c_size_t, POINTER(mg_volume_params), c_char_p, c_size_t])
mg_volume_load_nifti = _fn("mg_volume_load_nifti", st, [PP, c_char_p, POINTER(mg_volume_params), c_char_p, c_size_t])
mg_volume_from_voxels = _fn("mg_volume_from_voxels", st, [PP, c_void_p, c_uint32, c_uint32, c_uint32, POINTER(c_double), c_char_p, POINTER(mg_volume_params), c_char_p, c_size_t])
mg_volume_free = _fn("mg_volume_free", None, [P])
mg_volume_info_get = _fn("mg_volume_info_get", st, [POINTER(mg_volume_info), P])
mg_volume_copy_voxels = _fn("mg_volume_copy_voxels", st, [c_void_p, c_size_t, POINTER(c_size_t), P])
mg_volume_get_string = _fn("mg_volume_get_string", c_char_p, [P, c_char_p])
mg_volume_write_nifti = _fn("mg_volume_write_nifti", st, [P, c_char_p, c_uint32, c_char_p, c_size_t])
mg_slice_params_init = _fn("mg_slice_params_init", None, [POINTER(mg_slice_params)])
mg_volume_slices = _fn("mg_volume_slices", st, [POINTER(c_void_p), c_size_t, POINTER(c_size_t), POINTER(c_uint32), P, POINTER(mg_slice_params), c_char_p, c_size_t])

# generation
mg_gen_params_init = _fn("mg_gen_params_init", None, [POINTER(mg_gen_params)])
mg_generate = _fn("mg_generate", st, [PP, P, c_char_p, POINTER(mg_gen_params)])
mg_generate_ids = _fn("mg_generate_ids", st, [PP, P, POINTER(c_int32), c_size_t, POINTER(mg_gen_params)])
mg_context_eval = _fn("mg_context_eval", st, [P, POINTER(c_int32), c_size_t, c_void_p, c_size_t])
mg_context_reset = _fn("mg_context_reset", st, [P])
mg_context_logits = _fn("mg_context_logits", st, [P, c_void_p, c_size_t])
mg_context_tokens = _fn("mg_context_tokens", st, [POINTER(c_int32), c_size_t, POINTER(c_size_t), P])
mg_context_n_tokens = _fn("mg_context_n_tokens", c_uint32, [P])

# polygenic scores
mg_prs_params_init = _fn("mg_prs_params_init", None, [POINTER(mg_prs_params)])
mg_prs_open_plink = _fn("mg_prs_open_plink", st, [PP, c_char_p, POINTER(mg_prs_params), c_char_p, c_size_t])
mg_prs_open_vcf = _fn("mg_prs_open_vcf", st, [PP, c_char_p, POINTER(mg_prs_params), c_char_p, c_size_t])
mg_prs_read_freq = _fn("mg_prs_read_freq", st, [P, c_char_p])
mg_prs_add_scores = _fn("mg_prs_add_scores", st, [P, POINTER(c_uint32), c_char_p])
mg_prs_compute = _fn("mg_prs_compute", st, [P])
mg_prs_sample_count = _fn("mg_prs_sample_count", c_uint64, [P])
mg_prs_variant_count = _fn("mg_prs_variant_count", c_uint64, [P])
mg_prs_score_count = _fn("mg_prs_score_count", c_uint32, [P])
mg_prs_sample_id = _fn("mg_prs_sample_id", st, [POINTER(c_char_p), POINTER(c_char_p), P, c_uint64])
mg_prs_score_name = _fn("mg_prs_score_name", c_char_p, [P, c_uint32])
mg_prs_match_report_get = _fn("mg_prs_match_report_get", st, [POINTER(mg_prs_match_report), P, c_uint32])
mg_prs_results = _fn("mg_prs_results", st, [c_void_p, c_size_t, P, c_int32, c_uint32])
mg_prs_write_sscore = _fn("mg_prs_write_sscore", st, [P, c_char_p])
mg_prs_write_freq = _fn("mg_prs_write_freq", st, [P, c_char_p])
mg_prs_set_progress = _fn("mg_prs_set_progress", st, [P, mg_prs_progress, c_void_p])
mg_prs_interrupt = _fn("mg_prs_interrupt", st, [P])
mg_prs_errmsg = _fn("mg_prs_errmsg", c_char_p, [P])
mg_prs_free = _fn("mg_prs_free", None, [P])

# tasks
mg_generate_report = _fn("mg_generate_report", st, [PP, P, POINTER(c_void_p), c_size_t, POINTER(mg_gen_params)])
mg_vqa = _fn("mg_vqa", st, [PP, P, POINTER(c_void_p), c_size_t, c_char_p, POINTER(mg_gen_params)])
mg_chat = _fn("mg_chat", st, [PP, P, POINTER(c_void_p), c_size_t, c_char_p, POINTER(mg_gen_params)])
mg_generate_report_volume = _fn("mg_generate_report_volume", st, [PP, P, P, POINTER(mg_slice_params), POINTER(mg_gen_params)])
mg_vqa_volume = _fn("mg_vqa_volume", st, [PP, P, P, c_char_p, POINTER(mg_slice_params), POINTER(mg_gen_params)])
mg_prs_predict = _fn("mg_prs_predict", st, [PP, POINTER(c_double), P, POINTER(c_double), POINTER(c_char_p), c_size_t, c_char_p, POINTER(mg_gen_params)])
mg_prs_predict_batch = _fn("mg_prs_predict_batch", st, [POINTER(c_double), P, POINTER(c_double), c_size_t, POINTER(c_char_p), c_size_t, POINTER(c_char_p), c_size_t])
mg_prs_score_image = _fn("mg_prs_score_image", st, [PP, P, POINTER(c_double), POINTER(c_char_p), c_size_t, c_char_p, c_size_t])


def take_string(ptr):
    """Decodes and frees a library-owned char* held in a c_void_p."""
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8", "replace")
    finally:
        mg_string_free(ptr)
        ptr.value = None
