"""Checkpoint conversion (mg_convert) and the .mgm writer."""
import ctypes
import os
from collections.abc import Mapping
from ctypes import byref, c_char_p, c_double, c_int64, c_uint64, c_void_p

from . import _lib
from ._handle import HandleState, Owned
from .errors import InvalidArgumentError, make_error

try:
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

DTYPES = {"f32": 0, "f16": 1, "bf16": 2, "q8_0": 3, "q4_0": 4}
CONVERT_COMPRESS = 0x1
CONVERT_NO_CHECKSUMS = 0x2
WRITE_COMPRESS = 0x1


def _dtype(name):
    if isinstance(name, int):
        return name
    if name not in DTYPES:
        raise InvalidArgumentError("unknown dtype %r (one of %s)" % (name, ", ".join(DTYPES)))
    return DTYPES[name]


def _meta_entries(meta):
    """"key=value" byte strings from a mapping or (key, value) pairs."""
    items = meta.items() if isinstance(meta, Mapping) else meta
    out = []
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise InvalidArgumentError("meta takes a mapping or (key, value) pairs, not %r"
                                       % (item,)) from None
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgumentError("meta keys and values are strings: %r" % (item,))
        if "=" in key:
            raise InvalidArgumentError("meta key %r holds '='" % key)
        out.append(("%s=%s" % (key, value)).encode("utf-8"))
    return out


def convert(src, out, type=None, mmproj=None, tokenizer=None, compress=False,
            checksums=True, progress=None, prune_vocab=None, meta=None):
    """Converts a Hugging Face folder or a GGUF file into an .mgm file.
    type: 'f32', 'f16', 'bf16', 'q8_0', 'q4_0' or None (keep the source
    types). progress(name, dtype, index, count, rms_error, rel_error) is
    called after each tensor; returning True stops (raises Interrupted).
    prune_vocab: a text file; the model keeps only the tokens it needs (and
    their embedding rows), and the file tokenizes exactly as before.
    meta: string metadata under general.* or prompt.* to set, as a mapping
    (or (key, value) pairs); a key the converter writes itself is replaced."""
    p = _lib.mg_convert_params()
    _lib.mg_convert_params_init(byref(p))
    if prune_vocab is not None:
        p.prune_vocab = os.fsencode(prune_vocab)
    entries = _meta_entries(meta) if meta is not None else []
    if entries:
        arr = (c_char_p * len(entries))(*entries)
        p.meta = ctypes.cast(arr, ctypes.POINTER(c_char_p))
        p.n_meta = len(entries)
    if type is not None:
        p.dtype = _dtype(type)
    p.flags = (CONVERT_COMPRESS if compress else 0) | (0 if checksums else CONVERT_NO_CHECKSUMS)
    if mmproj is not None:
        p.mmproj = os.fsencode(mmproj)
    if tokenizer is not None:
        p.tokenizer = os.fsencode(tokenizer)
    box = {}

    def cb(_user, name, dtype, index, count, rms, rel):
        try:
            dn = _lib.mg_dtype_name(dtype)
            return 1 if progress(name.decode("utf-8", "replace"),
                                 dn.decode() if dn else str(dtype),
                                 index, count, rms, rel) else 0
        except BaseException as exc:
            box["exc"] = exc
            return 1
    if progress is not None:
        cfn = _lib.mg_convert_progress(cb)
        p.progress = cfn
    err = ctypes.create_string_buffer(_lib.ERRBUF)
    st = _lib.mg_convert(os.fsencode(src), os.fsencode(out), byref(p), err, _lib.ERRBUF)
    if "exc" in box:
        raise box["exc"]
    if st:
        raise make_error(st, err.value.decode("utf-8", "replace"))


class Writer(Owned):
    """Writes an .mgm file: set metadata and declare every tensor, then
    write their data; finish() completes the file (an unfinished file is
    removed on close)."""

    def __init__(self, path, compress=False):
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        st = _lib.mg_writer_open(byref(out), os.fsencode(path),
                                 WRITE_COMPRESS if compress else 0, err, _lib.ERRBUF)
        if st:
            raise make_error(st, err.value.decode("utf-8", "replace"))
        self._own(HandleState(out.value, _lib.mg_writer_free, "writer"))

    def _check(self, h, st):
        if st:
            raise make_error(st, (_lib.mg_writer_errmsg(h) or b"").decode("utf-8", "replace"))

    def set(self, key, value):
        """Metadata: int, float, str, or a list of one of those."""
        k = key.encode()
        with self._borrow() as h:
            if isinstance(value, bool) or isinstance(value, int):
                st = _lib.mg_writer_set_int(h, k, int(value))
            elif isinstance(value, float):
                st = _lib.mg_writer_set_float(h, k, value)
            elif isinstance(value, str):
                st = _lib.mg_writer_set_string(h, k, value.encode())
            elif isinstance(value, (list, tuple)):
                n = len(value)
                if all(isinstance(v, int) for v in value):
                    st = _lib.mg_writer_set_int_array(h, k, (c_int64 * max(n, 1))(*value), n)
                elif all(isinstance(v, (int, float)) for v in value):
                    st = _lib.mg_writer_set_float_array(h, k, (c_double * max(n, 1))(*map(float, value)), n)
                elif all(isinstance(v, str) for v in value):
                    st = _lib.mg_writer_set_string_array(
                        h, k, (c_char_p * max(n, 1))(*[v.encode() for v in value]), n)
                else:
                    raise InvalidArgumentError("a metadata list holds ints, floats or strings")
            else:
                raise InvalidArgumentError("unsupported metadata value %r" % (value,))
            self._check(h, st)

    def add_tensor(self, name, dtype, shape, compress=False):
        """Declares a tensor; shape lists dims[0] (fastest varying) first."""
        dims = (c_uint64 * max(len(shape), 1))(*shape)
        with self._borrow() as h:
            self._check(h, _lib.mg_writer_add_tensor(h, name.encode(), _dtype(dtype), len(shape),
                                                     dims, WRITE_COMPRESS if compress else 0))

    def write_tensor(self, name, data):
        """Writes a tensor's bytes, already in its dtype's layout."""
        data = bytes(data)
        with self._borrow() as h:
            self._check(h, _lib.mg_writer_write_tensor(h, name.encode(), data, len(data)))

    def write_tensor_f32(self, name, values):
        """Converts float32 values (a numpy array or a sequence) to the
        tensor's dtype and writes them."""
        if _np is not None:
            a = _np.ascontiguousarray(values, dtype=_np.float32).ravel()
            ptr, n = a.ctypes.data_as(c_void_p), a.size
        else:  # pragma: no cover
            a = (ctypes.c_float * len(values))(*values)
            ptr, n = ctypes.cast(a, c_void_p), len(values)
        with self._borrow() as h:
            self._check(h, _lib.mg_writer_write_tensor_f32(h, name.encode(), ptr, n))

    def finish(self):
        with self._borrow() as h:
            self._check(h, _lib.mg_writer_finish(h))
