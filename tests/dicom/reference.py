#!/usr/bin/python3
"""Reference pixel values for tests/check_dicom.c, computed with pydicom.

usage: reference.py DATA_DIR OUT_DIR [REL_PATH ...]

For every DICOM file under DATA_DIR (or the given relative paths) writes, for
frame 0 and, in multi-frame files, the last frame, OUT_DIR/<n>.bin: the
frame's values as little-endian int64 (row-major, samples interleaved):
  grey:   stored values (Bits Stored / High Bit applied, sign from Pixel
          Representation) times Rescale Slope plus Rescale Intercept (top
          level, else the enhanced multi-frame functional groups), rounded
          half up to an integer;
  colour: the samples as RGB (YBR_FULL / YBR_FULL_422 converted with
          pydicom's convert_color_space).
and a line in OUT_DIR/manifest.tsv:
  rel  frame  status  kind  rows  cols  n_frames  bin  message
status is "ok" or "fail" (pydicom could not give pixels; message says why).
"""
import math
import os
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
import pydicom  # noqa: E402
from pydicom.pixel_data_handlers.util import convert_color_space  # noqa: E402


def fg_value(ds, frame, macro, keyword):
    if keyword in ds:
        return ds.data_element(keyword).value
    for seq_kw, idx in (("PerFrameFunctionalGroupsSequence", frame),
                        ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(seq_kw)
        if seq is None or len(seq) <= idx:
            continue
        m = seq[idx].get(macro)
        if m is not None and len(m) > 0 and keyword in m[0]:
            return m[0].data_element(keyword).value
    return None


def first(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return float(v[0]) if len(v) else None
    return float(v)


def expected(ds, frame):
    arr = ds.pixel_array
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        arr = arr[frame]
    spp = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.PhotometricInterpretation)
    ba = int(ds.BitsAllocated)
    bs = int(ds.get("BitsStored", ba))
    hb = int(ds.get("HighBit", bs - 1))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if spp == 1:
        a = arr.astype(np.int64)
        if ba > 1:
            u = a & ((1 << ba) - 1)             # the raw container bits
            u = (u >> (hb + 1 - bs)) & ((1 << bs) - 1)
            if signed:
                u = np.where(u >= (1 << (bs - 1)), u - (1 << bs), u)
            a = u
        slope = first(fg_value(ds, frame, "PixelValueTransformationSequence",
                               "RescaleSlope"))
        icpt = first(fg_value(ds, frame, "PixelValueTransformationSequence",
                              "RescaleIntercept"))
        if not slope:
            slope = 1.0
        icpt = icpt or 0.0
        m = np.floor(a.astype(np.float64) * slope + icpt + 0.5)
        return "gray", m.astype(np.int64)
    a = arr
    # pydicom 2.3 returns YBR_FULL / YBR_FULL_422 data as YCbCr for every
    # syntax (its Pillow path asks for YCbCr output; 4:2:2 is upsampled).
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        a = convert_color_space(a, "YBR_FULL", "RGB")
    return "color", a.astype(np.int64)


def main():
    data, out = sys.argv[1], sys.argv[2]
    rels = sys.argv[3:]
    if not rels:
        for root, _, files in os.walk(data):
            for f in files:
                if f.endswith(".dcm"):
                    rels.append(os.path.relpath(os.path.join(root, f), data))
    rels.sort()
    os.makedirs(out, exist_ok=True)
    n = 0
    with open(os.path.join(out, "manifest.tsv"), "w") as man:
        for rel in rels:
            path = os.path.join(data, rel)
            try:
                ds = pydicom.dcmread(path, force=True)
                n_frames = int(ds.get("NumberOfFrames", 1) or 1)
                frames = [0] if n_frames <= 1 else [0, n_frames - 1]
            except Exception as e:  # noqa: BLE001
                man.write("%s\t0\tfail\t-\t0\t0\t0\t-\t%s\n" % (rel, str(e)[:120].replace("\t", " ").replace("\n", " ")))
                continue
            for fr in frames:
                try:
                    kind, a = expected(ds, fr)
                    name = "%d.bin" % n
                    n += 1
                    a.astype("<i8").tofile(os.path.join(out, name))
                    man.write("%s\t%d\tok\t%s\t%d\t%d\t%d\t%s\t-\n" % (
                        rel, fr, kind, int(ds.Rows), int(ds.Columns),
                        n_frames, name))
                except Exception as e:  # noqa: BLE001
                    msg = (type(e).__name__ + ": " + str(e))[:120]
                    msg = msg.replace("\t", " ").replace("\n", " ")
                    man.write("%s\t%d\tfail\t-\t0\t0\t%d\t-\t%s\n" % (
                        rel, fr, n_frames, msg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
