"""Images: JPEG, PNG and DICOM files or buffers, and caller pixel arrays."""
import ctypes
import os
from ctypes import byref, c_size_t, c_void_p
from dataclasses import dataclass

from . import _lib
from ._handle import HandleState, Owned
from .errors import InvalidArgumentError, make_error

try:  # optional
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

PIXEL_GRAY8, PIXEL_GRAY16, PIXEL_RGB8, PIXEL_RGB16 = 1, 2, 3, 4
_MODES = {PIXEL_GRAY8: "L", PIXEL_GRAY16: "L16", PIXEL_RGB8: "RGB",
          PIXEL_RGB16: "RGB16"}
_SOURCES = {0: "pixels", 1: "jpeg", 2: "png", 3: "dicom"}
_WINDOWS = {"file": 0, "auto": 1, "explicit": 2, "none": 3}
_WINDOW_NAMES = {v: k for k, v in _WINDOWS.items()}


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str            # "L", "L16", "RGB" or "RGB16"
    source: str          # "pixels", "jpeg", "png" or "dicom"
    bits_stored: int
    n_frames: int
    frame: int
    bits_allocated: int
    pixel_signed: bool
    window: str          # "file", "auto", "explicit" or "none"
    raw_offset: int
    rescale_slope: float
    rescale_intercept: float
    window_center: float
    window_width: float


def _params(frame=0, window=None, max_pixels=None, max_memory=None,
            max_width=None, max_height=None):
    p = _lib.mg_image_params()
    _lib.mg_image_params_init(byref(p))
    p.frame = int(frame)
    if window is not None:
        if isinstance(window, str):
            if window not in _WINDOWS or window == "explicit":
                raise InvalidArgumentError(
                    "window must be 'file', 'auto', 'none' or (center, width)")
            p.window = _WINDOWS[window]
        else:
            center, width = window
            p.window = _WINDOWS["explicit"]
            p.window_center, p.window_width = float(center), float(width)
    for name, value in (("max_pixels", max_pixels), ("max_memory", max_memory),
                        ("max_width", max_width), ("max_height", max_height)):
        if value is not None:
            setattr(p, name, int(value))
    return p


def _check_load(status, out, err):
    if status:
        raise make_error(status, err.value.decode("utf-8", "replace"))
    return out.value


class Image(Owned):
    """A decoded image, read-only and shareable between threads. Open one
    with Image.open(path), Image.from_bytes(data) or Image.from_array(arr).
    Options: frame (multi-frame DICOM), window ('file', 'auto', 'none' or a
    (center, width) pair, DICOM only), max_pixels, max_memory, max_width,
    max_height."""

    def __init__(self, handle):
        self._own(HandleState(handle, _lib.mg_image_free, "image"))

    @classmethod
    def open(cls, path, **options):
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        p = _params(**options)
        st = _lib.mg_image_load_file(byref(out), os.fsencode(path), byref(p),
                                     err, _lib.ERRBUF)
        return cls(_check_load(st, out, err))

    @classmethod
    def from_bytes(cls, data, **options):
        data = bytes(data)
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        p = _params(**options)
        st = _lib.mg_image_load_memory(byref(out), data, len(data), byref(p),
                                       err, _lib.ERRBUF)
        return cls(_check_load(st, out, err))

    @classmethod
    def from_pixels(cls, pixels, width, height, mode, stride=0, **options):
        """Copies raw pixels: mode 'L', 'L16', 'RGB' or 'RGB16' (16-bit
        samples in native byte order)."""
        fmt = {v: k for k, v in _MODES.items()}.get(mode)
        if fmt is None:
            raise InvalidArgumentError("mode must be one of %s" % sorted(_MODES.values()))
        buf = (ctypes.c_char * len(pixels)).from_buffer_copy(pixels) \
            if len(pixels) else None
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        p = _params(**options)
        st = _lib.mg_image_from_pixels(byref(out), buf, width, height, stride,
                                       fmt, byref(p), err, _lib.ERRBUF)
        return cls(_check_load(st, out, err))

    @classmethod
    def from_array(cls, array, **options):
        """From a numpy array: (H, W) or (H, W, 1) grey, (H, W, 3) RGB, of
        uint8 or uint16 (other integer and float arrays must be converted
        first)."""
        if _np is None:  # pragma: no cover
            raise ImportError("Image.from_array needs numpy")
        a = _np.asarray(array)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
            raise InvalidArgumentError("expected an (H, W) or (H, W, 3) array, got shape %s" % (a.shape,))
        if a.dtype == _np.uint8:
            mode = "L" if a.ndim == 2 else "RGB"
        elif a.dtype == _np.uint16:
            mode = "L16" if a.ndim == 2 else "RGB16"
            a = a.astype(_np.dtype("=u2"), copy=False)
        else:
            raise InvalidArgumentError("expected a uint8 or uint16 array, got %s" % a.dtype)
        a = _np.ascontiguousarray(a)
        return cls.from_pixels(a.tobytes(), a.shape[1], a.shape[0], mode, **options)

    @property
    def info(self):
        i = _lib.mg_image_info()
        i.struct_size = ctypes.sizeof(i)
        with self._borrow() as h:
            st = _lib.mg_image_info_get(byref(i), h)
        if st:
            raise make_error(st, "")
        return ImageInfo(i.width, i.height, _MODES.get(i.format, str(i.format)),
                         _SOURCES.get(i.source, str(i.source)), i.bits_stored,
                         i.n_frames, i.frame, i.bits_allocated,
                         bool(i.pixel_signed),
                         _WINDOW_NAMES.get(i.window, str(i.window)),
                         i.raw_offset, i.rescale_slope, i.rescale_intercept,
                         i.window_center, i.window_width)

    @property
    def width(self):
        return self.info.width

    @property
    def height(self):
        return self.info.height

    @property
    def mode(self):
        return self.info.mode

    def tobytes(self):
        """The pixels, tightly packed in the image's own mode."""
        need = c_size_t()
        with self._borrow() as h:
            _lib.mg_image_copy_pixels(None, 0, byref(need), h)
            buf = ctypes.create_string_buffer(need.value or 1)
            st = _lib.mg_image_copy_pixels(buf, need.value, byref(need), h)
        if st:
            raise make_error(st, "")
        return buf.raw[:need.value]

    def to_array(self):
        """The pixels as a numpy array: (H, W) or (H, W, 3), uint8 or uint16."""
        if _np is None:  # pragma: no cover
            raise ImportError("Image.to_array needs numpy")
        info = self.info
        dt = _np.uint8 if info.mode in ("L", "RGB") else _np.dtype("=u2")
        a = _np.frombuffer(self.tobytes(), dtype=dt)
        shape = (info.height, info.width) if info.mode in ("L", "L16") \
            else (info.height, info.width, 3)
        return a.reshape(shape).copy()

    def get_string(self, key):
        """A text attribute of the source ("photometric", "transfer_syntax",
        "transfer_syntax_uid", "modality", "sop_class_uid", "series_uid"),
        or None."""
        with self._borrow() as h:
            v = _lib.mg_image_get_string(h, key.encode())
        return None if v is None else v.decode("utf-8", "replace")

    def __repr__(self):
        if self.closed:
            return "<medgemini.Image closed>"
        i = self.info
        return "<medgemini.Image %dx%d %s from %s>" % (i.width, i.height, i.mode, i.source)


def as_image(obj, **options):
    """(image, owned): obj as an Image; owned is True when we made it."""
    if isinstance(obj, Image):
        return obj, False
    if isinstance(obj, (str, os.PathLike)):
        return Image.open(obj, **options), True
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return Image.from_bytes(obj, **options), True
    if _np is not None and isinstance(obj, _np.ndarray):
        return Image.from_array(obj, **options), True
    raise TypeError("expected an Image, a path, bytes or a numpy array, got %r" % type(obj).__name__)
