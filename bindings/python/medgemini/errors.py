"""Exceptions raised for the library's status codes."""

OK = 0
E_INVALID_ARG = 1
E_MISUSE = 2
E_NOMEM = 3
E_IO = 4
E_MODEL_FORMAT = 5
E_CHECKSUM = 6
E_UNSUPPORTED = 7
E_IMAGE_FORMAT = 8
E_LIMIT = 9
E_INTERRUPTED = 10
E_CONTEXT_FULL = 11
E_BUFFER_TOO_SMALL = 12
E_NOT_FOUND = 13
E_TYPE = 14
E_INTERNAL = 15
E_DATA_FORMAT = 16


class MedGeminiError(Exception):
    """An error reported by libmedgemini: ``status`` is the mg_status code,
    ``message`` the library's explanation."""

    status = None

    def __init__(self, message, status=None):
        if status is not None:
            self.status = status
        self.message = message
        super().__init__(message)

    def __str__(self):
        return "%s (status %s)" % (self.message, self.status)


class InvalidArgumentError(MedGeminiError, ValueError):
    status = E_INVALID_ARG


class MisuseError(MedGeminiError):
    """A closed, freed or busy object, or calls in the wrong order."""
    status = E_MISUSE


class OutOfMemoryError(MedGeminiError, MemoryError):
    status = E_NOMEM


class FileAccessError(MedGeminiError):
    """Opening, reading, writing or mapping a file failed (MG_E_IO)."""
    status = E_IO


class ModelFormatError(MedGeminiError):
    status = E_MODEL_FORMAT


class ChecksumError(ModelFormatError):
    status = E_CHECKSUM


class UnsupportedError(MedGeminiError):
    status = E_UNSUPPORTED


class ImageFormatError(MedGeminiError):
    status = E_IMAGE_FORMAT


class LimitError(MedGeminiError):
    status = E_LIMIT


class GenerationError(MedGeminiError):
    """Generation stopped early; ``partial`` holds the text made until then."""

    def __init__(self, message, status=None, partial=""):
        super().__init__(message, status)
        self.partial = partial


class Interrupted(GenerationError):
    """Stopped by Cancel.cancel(), Context.interrupt() or a callback."""
    status = E_INTERRUPTED


class ContextFullError(GenerationError):
    status = E_CONTEXT_FULL


class BufferTooSmallError(MedGeminiError):
    status = E_BUFFER_TOO_SMALL


class NotFoundError(MedGeminiError, LookupError):
    status = E_NOT_FOUND


class TypeMismatchError(MedGeminiError, TypeError):
    status = E_TYPE


class InternalError(MedGeminiError):
    status = E_INTERNAL


class DataFormatError(MedGeminiError):
    """A malformed genotype, frequency or scoring file."""
    status = E_DATA_FORMAT


_BY_STATUS = {cls.status: cls for cls in (
    InvalidArgumentError, MisuseError, OutOfMemoryError, FileAccessError,
    ModelFormatError, ChecksumError, UnsupportedError, ImageFormatError,
    LimitError, Interrupted, ContextFullError, BufferTooSmallError,
    NotFoundError, TypeMismatchError, InternalError, DataFormatError)}


def error_class(status):
    """The exception class for a status code (MedGeminiError if unknown)."""
    return _BY_STATUS.get(status, MedGeminiError)


def make_error(status, message, partial=None):
    from . import _lib
    if not message:
        message = _lib.mg_status_str(status).decode()
    cls = error_class(status)
    if issubclass(cls, GenerationError):
        return cls(message, status, partial or "")
    if cls is MedGeminiError:
        return cls(message, status)
    return cls(message)
