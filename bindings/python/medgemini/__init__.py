"""Python binding of libmedgemini (ctypes): medical image reports, visual
question answering, text generation, 3D volumes and polygenic scores on the
CPU."""
from . import _lib
from .errors import (BufferTooSmallError, ChecksumError, ContextFullError,
                     DataFormatError, FileAccessError, GenerationError,
                     ImageFormatError, InternalError, Interrupted,
                     InvalidArgumentError, LimitError, MedGeminiError,
                     MisuseError, ModelFormatError, NotFoundError,
                     OutOfMemoryError, TypeMismatchError, UnsupportedError,
                     error_class)
from .image import Image, ImageInfo
from .volume import Volume, VolumeInfo
from .model import Cancel, Context, Model, ModelInfo, Progress, TensorInfo, Tokenizer
from .prs import Prs, MatchReport
from .convert import Writer, convert
from .sr import write_sr
from .studies import Series, Study, StudySet, scan_studies

__version__ = "0.1.0"


def version():
    """The loaded library's version string."""
    return _lib.mg_version_string().decode()


def version_number():
    return _lib.mg_version_number()


def build_info():
    return _lib.mg_build_info().decode()


def simd_level():
    """'scalar', 'avx2' or 'avx512'."""
    return {0: "scalar", 1: "avx2", 2: "avx512"}.get(_lib.mg_simd_level(), "unknown")


def status_str(status):
    return _lib.mg_status_str(status).decode()


def dtype_name(dtype):
    v = _lib.mg_dtype_name(dtype)
    return None if v is None else v.decode()


library_path = _lib.lib_path

__all__ = [
    "Model", "ModelInfo", "TensorInfo", "Context", "Cancel", "Progress", "Tokenizer",
    "Image", "ImageInfo", "Volume", "VolumeInfo", "Prs", "MatchReport", "Writer", "convert",
    "write_sr", "scan_studies", "StudySet", "Study", "Series",
    "version", "version_number", "build_info", "simd_level", "status_str",
    "dtype_name", "library_path", "error_class",
    "MedGeminiError", "InvalidArgumentError", "MisuseError", "OutOfMemoryError",
    "FileAccessError", "ModelFormatError", "ChecksumError", "UnsupportedError",
    "ImageFormatError", "LimitError", "GenerationError", "Interrupted",
    "ContextFullError", "BufferTooSmallError", "NotFoundError",
    "TypeMismatchError", "InternalError", "DataFormatError",
]
