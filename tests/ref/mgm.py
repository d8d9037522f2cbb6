"""mgm.py - a small, independent reader for .mgm model files (docs/FORMAT.md),
for the numerical reference scripts under tests/ref/. It trusts the file
(the C reader is the validating one) and checks only what it needs.

    f = MgmFile("model.mgm")
    f.meta["text.hidden_size"]          # int, float, str or list
    f.tensor("text.token_embd")         # numpy float32 array, shape dims[::-1]

Dequantization (f16, bf16, q8_0, q4_0 -> float32) is written from the block
layouts in docs/FORMAT.md, with numpy only.
"""
import struct

import numpy as np

DTYPES = {0: "f32", 1: "f16", 2: "bf16", 3: "q8_0", 4: "q4_0"}
QK = 32


class MgmFile:
    def __init__(self, path):
        with open(path, "rb") as fh:
            self.buf = fh.read()
        b = self.buf
        if b[:4] != b"MGMF":
            raise ValueError("not an .mgm file")
        (self.version, _flags, self.alignment, n_meta, n_tensors, meta_off,
         self.data_offset, self.data_size) = struct.unpack_from("<IIIQQQQQ", b, 4)
        off = meta_off
        self.meta = {}
        for _ in range(n_meta):
            (klen,) = struct.unpack_from("<I", b, off)
            off += 4
            key = b[off:off + klen].decode("utf-8")
            off += klen
            (typ,) = struct.unpack_from("<I", b, off)
            off += 4
            if typ == 4:
                elem, count = struct.unpack_from("<IQ", b, off)
                off += 12
                vals = []
                for _ in range(count):
                    v, off = self._value(elem, off)
                    vals.append(v)
                self.meta[key] = vals
            else:
                self.meta[key], off = self._value(typ, off)
        self.tensors = {}
        for _ in range(n_tensors):
            (nlen,) = struct.unpack_from("<I", b, off)
            off += 4
            name = b[off:off + nlen].decode("utf-8")
            off += nlen
            dtype, n_dims = struct.unpack_from("<II", b, off)
            off += 8
            dims = list(struct.unpack_from("<%dQ" % n_dims, b, off))
            off += 8 * n_dims
            flags, _crc, toff, stored, size = struct.unpack_from("<IIQQQ", b, off)
            off += 32
            self.tensors[name] = (dtype, dims, flags, toff, stored, size)

    def _value(self, typ, off):
        b = self.buf
        if typ == 1:
            return struct.unpack_from("<q", b, off)[0], off + 8
        if typ == 2:
            return struct.unpack_from("<d", b, off)[0], off + 8
        if typ == 3:
            (n,) = struct.unpack_from("<I", b, off)
            return b[off + 4:off + 4 + n].decode("utf-8"), off + 4 + n
        raise ValueError("bad metadata type %d" % typ)

    def dtype(self, name):
        return DTYPES[self.tensors[name][0]]

    def raw(self, name):
        dtype, dims, flags, toff, stored, size = self.tensors[name]
        start = self.data_offset + toff
        data = self.buf[start:start + stored]
        if flags & 1:
            import zstandard  # only needed for compressed files
            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        return data

    def tensor(self, name):
        """The tensor as float32, numpy shape dims reversed (rows, cols)."""
        dtype, dims, _flags, _off, _st, _size = self.tensors[name]
        n = 1
        for d in dims:
            n *= d
        out = dequantize(DTYPES[dtype], self.raw(name), n)
        return out.reshape(list(reversed(dims)))


def dequantize(dtype, data, n):
    if dtype == "f32":
        return np.frombuffer(data, dtype="<f4", count=n).astype(np.float32)
    if dtype == "f16":
        return np.frombuffer(data, dtype="<f2", count=n).astype(np.float32)
    if dtype == "bf16":
        u = np.frombuffer(data, dtype="<u2", count=n).astype(np.uint32) << 16
        return u.view(np.float32).copy()
    nb = n // QK
    if dtype == "q8_0":
        blk = np.frombuffer(data, dtype=np.uint8, count=nb * 34).reshape(nb, 34)
        d = blk[:, :2].copy().view("<f2").astype(np.float32)          # (nb, 1)
        q = blk[:, 2:].copy().view(np.int8).astype(np.float32)        # (nb, 32)
        return (d * q).reshape(n)
    if dtype == "q4_0":
        blk = np.frombuffer(data, dtype=np.uint8, count=nb * 18).reshape(nb, 18)
        d = blk[:, :2].copy().view("<f2").astype(np.float32)
        qs = blk[:, 2:]
        lo = (qs & 0x0F).astype(np.float32) - 8.0   # elements 0..15
        hi = (qs >> 4).astype(np.float32) - 8.0     # elements 16..31
        return (d * np.concatenate([lo, hi], axis=1)).reshape(n)
    raise ValueError("unknown dtype " + dtype)
