"""3D volumes: DICOM series, NIfTI files and caller voxel arrays."""
import ctypes
import os
from ctypes import byref, c_char_p, c_double, c_size_t, c_uint32, c_void_p
from dataclasses import dataclass

from . import _lib
from ._handle import HandleState, Owned
from .errors import InvalidArgumentError, make_error
from .image import Image

try:  # optional
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

# mg_volume_params.flags
RECURSIVE, KEEP_DUPLICATES, STRICT_SPACING, STRICT_SERIES = 0x1, 0x2, 0x4, 0x8
_SOURCES = {0: "voxels", 1: "dicom", 2: "nifti"}

# mg_slice_params (the slices a model reads, docs/VOLUME.md "Slices for the
# model")
SLICE_WINDOW_AUTO, SLICE_WINDOW_CT, SLICE_WINDOW_MINMAX = 0, 1, 2
SLICES_AS_STORED = 0x1
MAX_SLICES = 1024           # the largest max_slices
DEFAULT_MAX_SLICES = 85     # MedGemma 1.5's limit
_SLICE_WINDOWS = {"auto": SLICE_WINDOW_AUTO, "ct": SLICE_WINDOW_CT,
                  "minmax": SLICE_WINDOW_MINMAX}


@dataclass(frozen=True)
class VolumeInfo:
    shape: tuple         # (nz, ny, nx), as the array from to_array()
    source: str          # "voxels", "dicom" or "nifti"
    n_files: int
    n_skipped: int
    n_warnings: int
    spacing: tuple       # mm along x, y, z
    affine: tuple        # 4 rows of 4: (i, j, k, 1) -> LPS+ mm
    min_value: float
    max_value: float


def _params(series_uid=None, recursive=False, keep_duplicates=False,
            strict_spacing=False, strict_series=False, max_voxels=None,
            max_memory=None, max_files=None):
    p = _lib.mg_volume_params()
    _lib.mg_volume_params_init(byref(p))
    p.flags = ((RECURSIVE if recursive else 0) | (KEEP_DUPLICATES if keep_duplicates else 0) |
               (STRICT_SPACING if strict_spacing else 0) |
               (STRICT_SERIES if strict_series else 0))
    uid = None
    if series_uid is not None:
        uid = series_uid.encode()
        p.series_uid = uid
    for name, value in (("max_voxels", max_voxels), ("max_memory", max_memory),
                        ("max_files", max_files)):
        if value is not None:
            setattr(p, name, int(value))
    return p, uid  # uid keeps the bytes alive while p is used


def slice_params(max_slices=None, window=None, as_stored=False):
    """An mg_slice_params: max_slices (None or 0: 85, at most MAX_SLICES),
    window ("auto" (None), "ct", "minmax", or a SLICE_WINDOW_* code),
    as_stored (voxel order instead of the radiological display)."""
    p = _lib.mg_slice_params()
    _lib.mg_slice_params_init(byref(p))
    if max_slices is not None:
        n = int(max_slices)
        if n < 0 or n > 0xFFFFFFFF:
            raise InvalidArgumentError("max_slices must be 0..%d, got %d" % (MAX_SLICES, n))
        p.max_slices = n
    if window is not None:
        if isinstance(window, str):
            code = _SLICE_WINDOWS.get(window.lower())
            if code is None:
                raise InvalidArgumentError(
                    "window must be 'auto', 'ct' or 'minmax', got %r" % (window,))
            p.window = code
        elif isinstance(window, int) and not isinstance(window, bool) and \
                -2 ** 31 <= window < 2 ** 31:
            p.window = window          # a SLICE_WINDOW_* code: checked by the library
        else:
            raise InvalidArgumentError(
                "window must be 'auto', 'ct' or 'minmax', got %r" % (window,))
    p.flags = SLICES_AS_STORED if as_stored else 0
    return p


def _check(status, out, err):
    if status:
        raise make_error(status, err.value.decode("utf-8", "replace"))
    return out.value


class Volume(Owned):
    """A 3D volume of float32 modality values (Hounsfield units for CT), read
    only and shareable between threads. Make one with Volume.from_dicom(paths),
    Volume.from_nifti(path) or Volume.from_array(arr, affine). Options of the
    readers: series_uid, recursive, keep_duplicates, strict_spacing,
    strict_series, max_voxels, max_memory, max_files."""

    def __init__(self, handle):
        self._own(HandleState(handle, _lib.mg_volume_free, "volume"))

    @classmethod
    def from_dicom(cls, paths, **options):
        """A series from DICOM files and/or folders (one path or a list)."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        enc = [os.fsencode(p) for p in paths]
        arr = (c_char_p * max(len(enc), 1))(*enc)
        p, _keep = _params(**options)
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        st = _lib.mg_volume_load_dicom(byref(out), arr, len(enc), byref(p), err, _lib.ERRBUF)
        return cls(_check(st, out, err))

    @classmethod
    def from_nifti(cls, path, **options):
        p, _keep = _params(**options)
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        st = _lib.mg_volume_load_nifti(byref(out), os.fsencode(path), byref(p), err, _lib.ERRBUF)
        return cls(_check(st, out, err))

    @classmethod
    def from_array(cls, array, affine=None, modality=None, **options):
        """From a numpy array of shape (nz, ny, nx) (x varies fastest) and a
        4x4 voxel -> LPS+ affine (None: identity)."""
        if _np is None:  # pragma: no cover
            raise ImportError("Volume.from_array needs numpy")
        a = _np.ascontiguousarray(array, dtype=_np.float32)
        if a.ndim != 3:
            raise InvalidArgumentError("expected a 3D (nz, ny, nx) array, got shape %s" % (a.shape,))
        aff = None
        if affine is not None:
            m = _np.asarray(affine, dtype=_np.float64).reshape(16)
            aff = (c_double * 16)(*m)
        p, _keep = _params(**options)
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        nz, ny, nx = a.shape
        st = _lib.mg_volume_from_voxels(byref(out), a.ctypes.data, nx, ny, nz, aff,
                                        modality.encode() if modality else None,
                                        byref(p), err, _lib.ERRBUF)
        return cls(_check(st, out, err))

    @property
    def info(self):
        i = _lib.mg_volume_info()
        i.struct_size = ctypes.sizeof(i)
        with self._borrow() as h:
            st = _lib.mg_volume_info_get(byref(i), h)
        if st:
            raise make_error(st, "")
        aff = tuple(tuple(i.affine[4 * r + c] for c in range(4)) for r in range(4))
        return VolumeInfo((i.nz, i.ny, i.nx), _SOURCES.get(i.source, str(i.source)),
                          i.n_files, i.n_skipped, i.n_warnings, tuple(i.spacing), aff,
                          i.min_value, i.max_value)

    @property
    def shape(self):
        return self.info.shape

    @property
    def affine(self):
        """The 4x4 voxel -> LPS+ affine (a numpy array when numpy is there)."""
        a = self.info.affine
        return _np.array(a) if _np is not None else a

    def to_array(self):
        """The voxels as a float32 numpy array of shape (nz, ny, nx)."""
        if _np is None:  # pragma: no cover
            raise ImportError("Volume.to_array needs numpy")
        shape = self.info.shape
        out = _np.empty(shape, dtype=_np.float32)
        need = c_size_t()
        with self._borrow() as h:
            st = _lib.mg_volume_copy_voxels(out.ctypes.data, out.size, byref(need), h)
        if st:
            raise make_error(st, "")
        return out

    def _slices(self, images, max_slices, window, as_stored):
        """(z indices, Images or None) of mg_volume_slices."""
        p = slice_params(max_slices, window, as_stored)
        err = ctypes.create_string_buffer(_lib.ERRBUF)
        n = c_size_t()
        with self._borrow() as h:
            st = _lib.mg_volume_slices(None, 0, byref(n), None, h, byref(p), err, _lib.ERRBUF)
            if st:
                raise make_error(st, err.value.decode("utf-8", "replace"))
            count = n.value
            z = (c_uint32 * max(count, 1))()
            out = (c_void_p * max(count, 1))() if images else None
            st = _lib.mg_volume_slices(out, count, byref(n), z, h, byref(p), err, _lib.ERRBUF)
        if st:
            raise make_error(st, err.value.decode("utf-8", "replace"))
        return list(z[:count]), ([Image(out[i]) for i in range(count)] if images else None)

    def slices(self, max_slices=DEFAULT_MAX_SLICES, window="auto", as_stored=False):
        """The slices a model reads for this volume (what report_volume and
        vqa_volume encode), as a list of RGB Images in prompt order: cut
        across z, turned to the radiological view unless as_stored, at most
        max_slices evenly spaced ones (see slice_indices). window: "auto"
        (CT for modality CT or HU-like values, else min-max), "ct" (R, G, B
        = the -1024..1024, -135..215 and 0..80 HU windows) or "minmax"."""
        return self._slices(True, max_slices, window, as_stored)[1]

    def slice_indices(self, max_slices=DEFAULT_MAX_SLICES, window="auto", as_stored=False):
        """The volume's z index of each of slices(...) (same arguments): all
        slices when there are at most max_slices, else slice
        round(i / max_slices * (nz - 1)) for i = 1..max_slices."""
        return self._slices(False, max_slices, window, as_stored)[0]

    def get_string(self, key):
        """"modality", "series_uid", "study_uid", "frame_of_reference_uid",
        "description", "warnings" or "slices"; None when absent."""
        with self._borrow() as h:
            v = _lib.mg_volume_get_string(h, key.encode())
        return None if v is None else v.decode("utf-8", "replace")

    @property
    def warnings(self):
        """The warnings (skipped files, other series, gaps, tilt ...), a list."""
        s = self.get_string("warnings")
        return s.splitlines() if s else []

    def save_nifti(self, path, float32=False):
        """Writes NIfTI-1 (.nii, or .nii.gz compressed) in RAS+ as dcm2niix does."""
        err = ctypes.create_string_buffer(_lib.ERRBUF)
        with self._borrow() as h:
            st = _lib.mg_volume_write_nifti(h, os.fsencode(path), 1 if float32 else 0,
                                            err, _lib.ERRBUF)
        if st:
            raise make_error(st, err.value.decode("utf-8", "replace"))

    def __repr__(self):
        if self.closed:
            return "<medgemini.Volume closed>"
        i = self.info
        return "<medgemini.Volume %dx%dx%d from %s>" % (i.shape[2], i.shape[1], i.shape[0],
                                                        i.source)
