#!/usr/bin/python3
"""Reference volumes for tests/check_volume.c and tests/cli_test.sh, computed
with pydicom + numpy (DICOM series) and nibabel (NIfTI), independently of the
library.

usage:
  reference.py make DIR
      writes test inputs under DIR: dicom/<case>/ (series written with
      pydicom: shuffled file order, Instance Number opposite to position, two
      series in one folder, a missing slice, oblique, gantry tilt, enhanced
      multi-frame, no geometry, duplicates; compressed copies made with
      dcmcjpeg / dcmcjpls / gdcmconv when present), hostile/<case>/ (series
      that must be refused) and nifti/*.nii[.gz] (written with nibabel: every
      data type, qform only, pixdim only, NIfTI-2, big endian, 5D, metres);
      DIR/manifest.txt lists what was made ("case dicom|hostile|nifti PATH").
  reference.py expect SRC OUT [--uid UID] [--keep-duplicates]
      assembles the DICOM series in SRC (a folder, not recursive, or a file)
      with pydicom: grouped by SeriesInstanceUID (UID, else the series with
      the most slices), ordered by Image Position (Patient) projected on the
      normal of Image Orientation (Patient) (Instance Number without
      geometry), values = stored value * slope + intercept per slice or
      frame, as float32.
  reference.py nifti FILE OUT
      reads FILE with nibabel: the first 3D volume (scaled, float32) and the
      affine from the sform (code > 0), else the qform (code > 0), else
      diag(pixdim) (NIfTI method 1; nibabel's own fallback centres the image
      instead), in millimetres (xyzt_units), converted from RAS+ to LPS+.
  Both write OUT.f32 (float32 voxels, x fastest, then y, then z) and OUT.txt:
      nx ny nz
      16 numbers: the affine, row-major, voxel -> LPS+ mm
      the series UID ("-" for NIfTI)
      one line per slice: "BASENAME FRAME" (DICOM only)
  reference.py check-nifti WRITTEN EXPECT [--float32] [--dcm2niix DICOMDIR]
      checks a NIfTI file written by the library with nibabel against
      EXPECT.f32/.txt: NIfTI-1 single file, qform_code = sform_code = 1,
      int16 when every expected value is an integer in range (float32 with
      --float32 or otherwise), data equal, sform = the expected affine in
      RAS+ (x, y negated), qform equal to it unless the affine shears. With
      --dcm2niix, converts DICOMDIR with dcm2niix and checks that every
      sampled voxel lands on a voxel of dcm2niix's volume, in RAS+ world
      coordinates, with the same value. Exit status 0 when all holds.
"""
import glob
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np

warnings.simplefilter("ignore")

# ---------------------------------------------------------------- writing


def _uid(*parts):
    from pydicom.uid import generate_uid
    return generate_uid(entropy_srcs=["libmedgemini-volume-test"] + [str(p) for p in parts])


def _ds_str(x):
    """A DS string of at most 16 characters (strings are kept as they are,
    for the hostile cases)."""
    if isinstance(x, str):
        return x
    s = "%.6f" % x
    s = s.rstrip("0").rstrip(".") if "." in s else s
    if s in ("-0", ""):
        s = "0"
    return s[:16]


def _image(path, *, series, study, rows, cols, data, modality="CT", instance=None,
           position=None, orientation=None, spacing=None, thickness=None,
           slope=1.0, intercept=0.0, signed=True, bits_stored=16,
           implicit=False, sop=None, frame_of_ref=None, extra=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    sop = sop or ("1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4")
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = _uid(path)
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = implicit
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = frame_of_ref or _uid("for", study)
    ds.Modality = modality
    ds.PatientName = "Test^Volume"
    ds.PatientID = "VOL"
    if instance is not None:
        ds.InstanceNumber = int(instance)
    if position is not None:
        ds.ImagePositionPatient = [_ds_str(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [_ds_str(v) for v in orientation]
    if spacing is not None:
        ds.PixelSpacing = [_ds_str(v) for v in spacing]
    if thickness is not None:
        ds.SliceThickness = _ds_str(thickness)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = _ds_str(slope)
    ds.RescaleIntercept = _ds_str(intercept)
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    arr = np.asarray(data, dtype=np.int16 if signed else np.uint16)
    assert arr.shape == (rows, cols)
    ds.PixelData = arr.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(path, write_like_original=False)


def _pattern(rows, cols, k, seed, signed=True):
    """Values that differ along x, y and z, so that any transposition or
    misordering shows."""
    rng = np.random.default_rng(seed * 1000 + k)
    y, x = np.mgrid[0:rows, 0:cols]
    v = 40 * k + 7 * x + 3 * y + rng.integers(0, 5, size=(rows, cols))
    if signed:
        v = v - 600
    return v


def _rot(ax_deg, az_deg):
    a, b = math.radians(ax_deg), math.radians(az_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    rz = np.array([[math.cos(b), -math.sin(b), 0], [math.sin(b), math.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def _series(folder, name, *, n, rows=20, cols=24, positions, orientation, spacing=(0.8, 0.6),
            thickness=2.5, instances=None, seed=1, names=None, modality="CT", signed=True,
            slope=1.0, intercept=-1024.0, series_uid=None, study=None, implicit=False,
            skip=(), sizes=None, orientations=None, spacings=None):
    os.makedirs(folder, exist_ok=True)
    series_uid = series_uid or _uid("series", name)
    study = study or _uid("study", name)
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)  # files written (and named) in a random order
    for j, k in enumerate(order):
        if k in skip:
            continue
        r, c = (sizes[k] if sizes and k in sizes else (rows, cols))
        fname = names[k] if names else "img_%03d_%04x.dcm" % (j, rng.randrange(65536))
        _image(os.path.join(folder, fname), series=series_uid, study=study, rows=r, cols=c,
               data=_pattern(r, c, k, seed, signed),
               modality=modality, instance=(instances[k] if instances else k + 1),
               position=positions[k] if positions is not None else None,
               orientation=(orientations[k] if orientations and k in orientations else orientation),
               spacing=(spacings[k] if spacings and k in spacings else spacing),
               thickness=thickness, slope=slope, intercept=intercept, signed=signed,
               implicit=implicit)
    return series_uid


def _enhanced(path, *, n=5, rows=18, cols=22, seed=7, nframes_attr=None, frames_data=None):
    """An Enhanced CT object: per-frame Plane Position and Pixel Value
    Transformation (intercepts differ per frame), shared orientation and
    pixel measures; frames stored out of position order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian
    sop = "1.2.840.10008.5.1.4.1.1.2.1"
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = _uid(path)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid("study", "enhanced")
    ds.SeriesInstanceUID = _uid("series", "enhanced", seed)
    ds.FrameOfReferenceUID = _uid("for", "enhanced")
    ds.Modality = "CT"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.NumberOfFrames = str(nframes_attr if nframes_attr is not None else n)
    r = _rot(-15, 10)
    row, col = r[:, 0], r[:, 1]
    normal = np.cross(row, col)
    origin = np.array([-20.0, 15.0, 40.0])
    order = [3, 0, 4, 1, 2][:n] if n == 5 else list(range(n))[::-1]
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = [_ds_str(v) for v in list(row) + list(col)]
    shared.PlaneOrientationSequence = Sequence([po])
    pm = Dataset()
    pm.PixelSpacing = ["0.7", "0.9"]
    pm.SliceThickness = "3"
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    frames = []
    for f in range(n):
        k = order[f]  # position index of frame f
        it = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [_ds_str(v) for v in origin + 3.0 * k * normal]
        it.PlanePositionSequence = Sequence([pp])
        pv = Dataset()
        pv.RescaleIntercept = str(-1000 - 8 * f)
        pv.RescaleSlope = "1"
        pv.RescaleType = "HU"
        it.PixelValueTransformationSequence = Sequence([pv])
        per.append(it)
        frames.append(_pattern(rows, cols, k, seed).astype("<i2"))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    data = np.stack(frames).tobytes()
    if frames_data is not None:
        data = frames_data(data)
    ds.PixelData = data
    ds.save_as(path, write_like_original=False)


def _compress(tool_args, src_dir, dst_dir):
    """Compresses every file of src_dir with a tool; False when it is absent
    or fails."""
    if shutil.which(tool_args[0]) is None:
        return False
    os.makedirs(dst_dir, exist_ok=True)
    for f in sorted(os.listdir(src_dir)):
        if not f.endswith(".dcm"):
            continue
        r = subprocess.run(tool_args + [os.path.join(src_dir, f), os.path.join(dst_dir, f)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return False
    return True


def _truncate_first_frame(path):
    import pydicom
    from pydicom.encaps import encapsulate, generate_pixel_data_frame
    ds = pydicom.dcmread(path)
    frames = list(generate_pixel_data_frame(ds.PixelData, 1))
    ds.PixelData = encapsulate([frames[0][: len(frames[0]) // 2]])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path)


def _write_nifti(out_dir, manifest):
    import nibabel as nib
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(5)
    aff = np.eye(4)
    aff[:3, :3] = _rot(10, -25) @ np.diag([1.5, 0.75, 2.0])
    aff[:3, 3] = [-30.5, 12.25, 8.0]

    def save(img, name):
        p = os.path.join(out_dir, name)
        nib.save(img, p)
        manifest.append("%s nifti %s" % (name.split(".")[0], p))

    shape = (5, 4, 3)
    for dt in ("uint8", "int8", "int16", "uint16", "int32", "uint32", "int64",
               "uint64", "float32", "float64"):
        info = np.iinfo(dt) if dt[0] in "iu" else None
        if info:
            lo, hi = max(info.min, -100000), min(info.max, 100000)
            a = rng.integers(lo, hi, size=shape).astype(dt)
        else:
            a = rng.normal(0, 1000, size=shape).astype(dt)
        img = nib.Nifti1Image(a, aff, dtype=dt)
        img.header.set_qform(aff, 1)
        img.header.set_sform(aff, 2)
        save(img, "type_%s.nii.gz" % dt)
    # qform only, with scaling (int16 data, slope 2, intercept -5)
    a = rng.integers(-300, 300, size=(6, 5, 4)).astype(np.int16)
    img = nib.Nifti1Image(a, aff)
    img.header.set_sform(None, 0)
    img.header.set_qform(aff, 1)
    img.header.set_slope_inter(2.0, -5.0)
    save(img, "qform_only.nii")
    # neither: pixdim only
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((4, 3, 2))
    hdr.set_zooms((1.25, 2.5, 3.0))
    img = nib.Nifti1Image(rng.normal(size=(4, 3, 2)).astype(np.float32), None, hdr)
    img.header.set_sform(None, 0)
    img.header.set_qform(None, 0)
    save(img, "pixdim_only.nii")
    # NIfTI-2, scaled
    a = rng.integers(0, 4000, size=(7, 6, 5)).astype(np.uint16)
    img = nib.Nifti2Image(a, aff)
    img.header.set_slope_inter(0.5, 100.0)
    save(img, "nifti2.nii.gz")
    # big endian float64
    hdr = nib.Nifti1Header(endianness=">")
    hdr.set_data_dtype(np.float64)
    img = nib.Nifti1Image(rng.normal(size=(3, 4, 5)), aff, hdr)
    save(img, "bigendian.nii")
    # 5D: the first volume
    img = nib.Nifti1Image(rng.integers(0, 100, size=(4, 3, 2, 2, 3)).astype(np.int16), aff)
    save(img, "five_d.nii.gz")
    # 2D
    img = nib.Nifti1Image(rng.integers(0, 100, size=(6, 5)).astype(np.uint8), aff)
    save(img, "two_d.nii")
    # metres
    img = nib.Nifti1Image(rng.integers(0, 100, size=(3, 3, 3)).astype(np.int16), aff / 1000.0)
    img.header.set_xyzt_units("meter", "sec")
    save(img, "units_m.nii")


def cmd_make(out):
    os.makedirs(out, exist_ok=True)
    man = []
    d = os.path.join(out, "dicom")
    h = os.path.join(out, "hostile")
    ax = (1, 0, 0, 0, 1, 0)

    # shuffled file order (names unrelated to position), plus a non-DICOM file
    n = 7
    pos = [(-12.0, -9.5, 10.0 + 2.5 * k) for k in range(n)]
    _series(os.path.join(d, "shuffled"), "shuffled", n=n, positions=pos, orientation=ax, seed=1)
    with open(os.path.join(d, "shuffled", "notes.txt"), "w") as f:
        f.write("not a DICOM file\n")
    man.append("shuffled dicom %s" % os.path.join(d, "shuffled"))

    # Instance Number opposite to position; sagittal; implicit VR
    n = 6
    sag = (0, 1, 0, 0, 0, -1)  # normal (-1, 0, 0)
    pos = [(30.0 - 3.0 * k, -20.0, 50.0) for k in range(n)]
    _series(os.path.join(d, "reverse_instance"), "reverse", n=n, positions=pos, orientation=sag,
            instances=[n - k for k in range(n)], seed=2, implicit=True, spacing=(1.1, 0.9),
            thickness=3.0)
    man.append("reverse_instance dicom %s" % os.path.join(d, "reverse_instance"))

    # two series in one folder: MR (unsigned, slope 0.5) of 5 slices and CT of 3
    f2 = os.path.join(d, "two_series")
    _series(f2, "two_a", n=5, positions=[(0, 0, 2.0 * k) for k in range(5)], orientation=ax,
            seed=3, modality="MR", signed=False, slope=0.5, intercept=0, study=_uid("s2"))
    _series(f2, "two_b", n=3, positions=[(0, 0, 1.0 + 4.0 * k) for k in range(3)],
            orientation=ax, seed=4, study=_uid("s2"))
    man.append("two_series dicom %s" % f2)

    # a missing slice (index 4 of 8)
    n = 8
    pos = [(5.0, 5.0, -40.0 + 1.25 * k) for k in range(n)]
    _series(os.path.join(d, "gap"), "gap", n=n, positions=pos, orientation=ax, seed=5,
            thickness=1.25, skip=(4,))
    man.append("gap dicom %s" % os.path.join(d, "gap"))

    # oblique; MR with a fractional slope (float32 in NIfTI)
    n = 6
    r = _rot(20, 30)
    row, col = r[:, 0], r[:, 1]
    normal = np.cross(row, col)
    p0 = np.array([-50.0, 20.0, 35.0])
    pos = [p0 + 3.0 * k * normal for k in range(n)]
    _series(os.path.join(d, "oblique"), "oblique", n=n, positions=pos,
            orientation=tuple(row) + tuple(col), seed=6, modality="MR", signed=False,
            slope=1.25, intercept=-10.0, spacing=(0.9, 0.7), thickness=3.0)
    man.append("oblique dicom %s" % os.path.join(d, "oblique"))

    # gantry tilt: each slice moves 0.5 mm in y for 2 mm in z
    n = 5
    pos = [(0.0, -100.0 + 0.5 * k, 20.0 + 2.0 * k) for k in range(n)]
    _series(os.path.join(d, "tilt"), "tilt", n=n, positions=pos, orientation=ax, seed=8,
            thickness=2.0)
    man.append("tilt dicom %s" % os.path.join(d, "tilt"))

    # enhanced multi-frame CT
    os.makedirs(os.path.join(d, "enhanced"), exist_ok=True)
    _enhanced(os.path.join(d, "enhanced", "enhanced_ct.dcm"))
    man.append("enhanced dicom %s" % os.path.join(d, "enhanced"))

    # no Image Position/Orientation: Instance Number order
    n = 4
    _series(os.path.join(d, "noposition"), "nopos", n=n, positions=None, orientation=None,
            instances=[3, 1, 4, 2], seed=9)
    man.append("noposition dicom %s" % os.path.join(d, "noposition"))

    # duplicates: slice 2 written twice (Instance Numbers 3 and 30)
    n = 5
    f5 = os.path.join(d, "duplicate")
    uid = _series(f5, "dup", n=n, positions=[(0, 0, 3.0 * k) for k in range(n)],
                  orientation=ax, seed=10)
    _image(os.path.join(f5, "zz_duplicate.dcm"), series=uid, study=_uid("study", "dup"),
           rows=20, cols=24, data=_pattern(20, 24, 99, 10), instance=30, position=(0, 0, 6.0),
           orientation=ax, spacing=(0.8, 0.6), thickness=2.5, intercept=-1024)
    man.append("duplicate dicom %s" % f5)

    # compressed copies of "shuffled" (lossless)
    src = os.path.join(d, "shuffled")
    for name, args in (("jpegll", ["dcmcjpeg", "+e1"]), ("jpegls", ["dcmcjpls"]),
                       ("j2k", ["gdcmconv", "--j2k"])):
        dst = os.path.join(d, "compressed_" + name)
        if _compress(args, src, dst):
            man.append("compressed_%s dicom %s" % (name, dst))

    # hostile series
    _series(os.path.join(h, "mismatched_size"), "mis", n=3,
            positions=[(0, 0, 2.0 * k) for k in range(3)], orientation=ax, seed=11,
            sizes={1: (16, 16)})
    man.append("mismatched_size hostile %s" % os.path.join(h, "mismatched_size"))
    _series(os.path.join(h, "nan_spacing"), "nans", n=3,
            positions=[(0, 0, 2.0 * k) for k in range(3)], orientation=ax, seed=12,
            spacings={2: ("NaN", "NaN")})
    man.append("nan_spacing hostile %s" % os.path.join(h, "nan_spacing"))
    _series(os.path.join(h, "nan_position"), "nanp", n=3,
            positions=[(0, 0, 2.0 * k) if k != 1 else ("nan", 0, 2.0) for k in range(3)],
            orientation=ax, seed=13)
    man.append("nan_position hostile %s" % os.path.join(h, "nan_position"))
    _series(os.path.join(h, "mixed_orientation"), "mixo", n=3,
            positions=[(0, 0, 2.0 * k) for k in range(3)], orientation=ax, seed=14,
            orientations={2: (1, 0, 0, 0, 0, -1)})
    man.append("mixed_orientation hostile %s" % os.path.join(h, "mixed_orientation"))
    _series(os.path.join(h, "off_line"), "offl", n=4,
            positions=[(0, 0, 0), (0, 0, 2), (7, 3, 4), (0, 0, 6)], orientation=ax, seed=15)
    man.append("off_line hostile %s" % os.path.join(h, "off_line"))
    _series(os.path.join(h, "bad_orientation"), "bado", n=3,
            positions=[(0, 0, 2.0 * k) for k in range(3)], orientation=(1, 0, 0, 1, 0, 0),
            seed=16)
    man.append("bad_orientation hostile %s" % os.path.join(h, "bad_orientation"))
    os.makedirs(os.path.join(h, "absurd_frames"), exist_ok=True)
    _enhanced(os.path.join(h, "absurd_frames", "absurd.dcm"), nframes_attr=2000000000)
    man.append("absurd_frames hostile %s" % os.path.join(h, "absurd_frames"))
    os.makedirs(os.path.join(h, "short_pixels"), exist_ok=True)
    _enhanced(os.path.join(h, "short_pixels", "short.dcm"), frames_data=lambda b: b[: len(b) // 2])
    man.append("short_pixels hostile %s" % os.path.join(h, "short_pixels"))
    # a JPEG-LS series whose first file's frame is cut in half
    tdir = os.path.join(h, "truncated_frame")
    if os.path.isdir(os.path.join(d, "compressed_jpegls")):
        shutil.copytree(os.path.join(d, "compressed_jpegls"), tdir, dirs_exist_ok=True)
        _truncate_first_frame(os.path.join(tdir, sorted(os.listdir(tdir))[0]))
        man.append("truncated_frame hostile %s" % tdir)
    tdir = os.path.join(h, "truncated_j2k")
    if os.path.isdir(os.path.join(d, "compressed_j2k")):
        shutil.copytree(os.path.join(d, "compressed_j2k"), tdir, dirs_exist_ok=True)
        _truncate_first_frame(os.path.join(tdir, sorted(os.listdir(tdir))[0]))
        man.append("truncated_j2k hostile %s" % tdir)
    os.makedirs(os.path.join(h, "empty"), exist_ok=True)
    with open(os.path.join(h, "empty", "readme.txt"), "w") as f:
        f.write("no images here\n")
    man.append("empty hostile %s" % os.path.join(h, "empty"))

    _write_nifti(os.path.join(out, "nifti"), man)
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(man) + "\n")


# ------------------------------------------------------------- references


def _write(out, vol, affine, uid, slices):
    nz, ny, nx = vol.shape
    np.ascontiguousarray(vol, dtype="<f4").tofile(out + ".f32")
    with open(out + ".txt", "w") as f:
        f.write("%d %d %d\n" % (nx, ny, nz))
        f.write(" ".join("%.17g" % v for v in np.asarray(affine).ravel()) + "\n")
        f.write((uid or "-") + "\n")
        for s in slices:
            f.write("%s %d\n" % s)


def _fg(ds, frame, macro, keyword):
    for seq, idx in (("PerFrameFunctionalGroupsSequence", frame),
                     ("SharedFunctionalGroupsSequence", 0)):
        s = ds.get(seq)
        if s is not None and len(s) > idx:
            m = s[idx].get(macro)
            if m is not None and len(m) and keyword in m[0]:
                return m[0].data_element(keyword).value
    return None


def _attr(ds, frame, macro, keyword):
    if keyword in ds:
        return ds.data_element(keyword).value
    return _fg(ds, frame, macro, keyword)


def cmd_expect(src, out, uid=None, keep_duplicates=False):
    import pydicom
    files = [src] if os.path.isfile(src) else sorted(
        os.path.join(src, f) for f in os.listdir(src) if not f.startswith("."))
    slices = []  # dicts
    for path in files:
        if not os.path.isfile(path):
            continue
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        if "PixelData" not in ds or ds.get("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.66.4":
            continue
        nfr = int(ds.get("NumberOfFrames", 1) or 1)
        arr = ds.pixel_array
        if nfr == 1:
            arr = arr[None]
        for f in range(nfr):
            pos = _attr(ds, f, "PlanePositionSequence", "ImagePositionPatient")
            ori = _attr(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
            sp = _attr(ds, f, "PixelMeasuresSequence", "PixelSpacing")
            th = _attr(ds, f, "PixelMeasuresSequence", "SliceThickness")
            btw = _attr(ds, f, "PixelMeasuresSequence", "SpacingBetweenSlices")
            if btw not in (None, "") and float(btw) > 0:
                th = btw  # the distance between slices, when given
            slope = _attr(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
            icpt = _attr(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
            slope = float(slope) if slope not in (None, "") and float(slope) != 0 else 1.0
            icpt = float(icpt) if icpt not in (None, "") else 0.0
            slices.append(dict(
                path=path, frame=f, uid=str(ds.get("SeriesInstanceUID", "")),
                inst=int(ds.get("InstanceNumber", 0) or 0),
                pos=None if pos is None else np.array([float(v) for v in pos]),
                ori=None if ori is None else np.array([float(v) for v in ori]),
                sp=None if sp is None else [float(v) for v in sp],
                th=None if th in (None, "") else float(th),
                vals=(arr[f].astype(np.float64) * slope + icpt).astype(np.float32),
                fileidx=files.index(path)))
    if not slices:
        sys.exit("expect: no image in %s" % src)
    counts = {}
    for s in slices:
        counts[s["uid"]] = counts.get(s["uid"], 0) + 1
    if uid is None:
        uid = sorted(counts, key=lambda u: (-counts[u], u))[0]
    chosen = [s for s in slices if s["uid"] == uid]
    s0 = chosen[0]
    dy, dx = (s0["sp"] if s0["sp"] else (1.0, 1.0))
    if s0["pos"] is None or s0["ori"] is None:
        chosen.sort(key=lambda s: (s["inst"], s["fileidx"], s["frame"]))
        dz = s0["th"] or 1.0
        aff = np.diag([dx, dy, dz, 1.0])
    else:
        row = s0["ori"][:3] / np.linalg.norm(s0["ori"][:3])
        col = s0["ori"][3:] / np.linalg.norm(s0["ori"][3:])
        nrm = np.cross(row, col)
        nrm /= np.linalg.norm(nrm)
        for s in chosen:
            s["key"] = float(np.dot(s["pos"], nrm))
        chosen.sort(key=lambda s: (s["key"], s["inst"], s["fileidx"], s["frame"]))
        if keep_duplicates:
            kept = [chosen[0]]
            for s in chosen[1:]:
                if s["key"] - kept[-1]["key"] >= 0.01:
                    kept.append(s)
            chosen = kept
        p0 = chosen[0]["pos"]
        if len(chosen) > 1:
            step = (chosen[-1]["pos"] - p0) / (len(chosen) - 1)
        else:
            step = nrm * (s0["th"] or 1.0)
        aff = np.eye(4)
        aff[:3, 0] = row * dx
        aff[:3, 1] = col * dy
        aff[:3, 2] = step
        aff[:3, 3] = p0
    vol = np.stack([s["vals"] for s in chosen])
    _write(out, vol, aff, uid, [(os.path.basename(s["path"]), s["frame"]) for s in chosen])


def cmd_nifti(path, out):
    import nibabel as nib
    img = nib.load(path)
    hdr = img.header
    data = np.asanyarray(img.dataobj).astype(np.float64)
    while data.ndim > 3:
        data = data[..., 0]
    while data.ndim < 3:
        data = data[..., None]
    if int(hdr["sform_code"]) > 0:
        aff = hdr.get_sform()
    elif int(hdr["qform_code"]) > 0:
        aff = hdr.get_qform()
    else:
        aff = np.diag(list(hdr.get_zooms()[:3]) + [1.0] * (3 - len(hdr.get_zooms()[:3])) + [1.0])
    unit = hdr.get_xyzt_units()[0]
    scale = {"meter": 1000.0, "micron": 0.001}.get(unit, 1.0)
    aff = np.array(aff, dtype=np.float64)
    aff[:3, :] *= scale
    aff[:2, :] *= -1  # RAS+ -> LPS+
    vol = np.transpose(data, (2, 1, 0)).astype(np.float32)
    _write(out, vol, aff, None, [])


def _read_expect(prefix):
    with open(prefix + ".txt") as f:
        lines = f.read().splitlines()
    nx, ny, nz = (int(v) for v in lines[0].split())
    aff = np.array([float(v) for v in lines[1].split()]).reshape(4, 4)
    vol = np.fromfile(prefix + ".f32", dtype="<f4").reshape(nz, ny, nx)
    return vol, aff


def cmd_check_nifti(written, prefix, force_float=False, dcm_dir=None):
    import nibabel as nib
    bad = []
    vol, aff_lps = _read_expect(prefix)
    img = nib.load(written)
    hdr = img.header
    if not isinstance(img, nib.Nifti1Image) or int(hdr["sizeof_hdr"]) != 348:
        bad.append("not a single-file NIfTI-1 image")
    if hdr["magic"] != b"n+1":
        bad.append("magic %r" % hdr["magic"])
    if int(hdr["qform_code"]) != 1 or int(hdr["sform_code"]) != 1:
        bad.append("qform_code %d sform_code %d" % (hdr["qform_code"], hdr["sform_code"]))
    ints = np.all(np.isfinite(vol)) and np.all(vol == np.round(vol)) and \
        vol.min() >= -32768 and vol.max() <= 32767
    want = np.float32 if (force_float or not ints) else np.int16
    if hdr.get_data_dtype() != np.dtype(want):
        bad.append("data type %s, expected %s" % (hdr.get_data_dtype(), np.dtype(want)))
    data = np.asanyarray(img.dataobj).astype(np.float64)
    if data.shape != vol.shape[::-1]:
        bad.append("shape %s, expected %s" % (data.shape, vol.shape[::-1]))
    elif not np.array_equal(np.transpose(data, (2, 1, 0)), vol.astype(np.float64)):
        bad.append("voxel values differ (max %g)" %
                   np.abs(np.transpose(data, (2, 1, 0)) - vol).max())
    ras = aff_lps.copy()
    ras[:2, :] *= -1
    scale = max(1.0, np.abs(ras).max())
    sform = hdr.get_sform()
    if not np.allclose(sform, ras, atol=2e-5 * scale, rtol=0):
        bad.append("sform\n%s\nexpected\n%s" % (sform, ras))
    m = ras[:3, :3]
    zooms = np.linalg.norm(m, axis=0)
    r = m / zooms
    sheared = abs(np.dot(r[:, 0], r[:, 1])) > 1e-6 or abs(np.dot(r[:, 0], r[:, 2])) > 1e-6 or \
        abs(np.dot(r[:, 1], r[:, 2])) > 1e-6
    qform = hdr.get_qform()
    if not sheared and not np.allclose(qform, ras, atol=2e-5 * scale, rtol=0):
        bad.append("qform\n%s\nexpected\n%s" % (qform, ras))
    if sheared:  # the qform keeps the in-plane axes and the origin
        if not np.allclose(qform[:3, :2], ras[:3, :2], atol=2e-5 * scale) or \
                not np.allclose(qform[:3, 3], ras[:3, 3], atol=2e-5 * scale):
            bad.append("qform of a sheared affine\n%s\nfor\n%s" % (qform, ras))
    if not np.allclose(hdr.get_zooms()[:3], zooms, rtol=1e-5):
        bad.append("pixdim %s, expected %s" % (hdr.get_zooms()[:3], zooms))
    if dcm_dir:
        bad += _against_dcm2niix(dcm_dir, img, data)
    if bad:
        print("check-nifti %s:\n  %s" % (written, "\n  ".join(bad)))
        sys.exit(1)
    print("check-nifti %s: ok (%s, %s)" % (written, np.dtype(want).name,
                                          "dcm2niix agrees" if dcm_dir else "no dcm2niix"))


def _against_dcm2niix(dcm_dir, img, data):
    import nibabel as nib
    if shutil.which("dcm2niix") is None:
        return []
    tmp = tempfile.mkdtemp(prefix="mg_d2n_")
    try:
        r = subprocess.run(["dcm2niix", "-z", "n", "-f", "%j", "-o", tmp, dcm_dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return ["dcm2niix failed on %s" % dcm_dir]
        ours = img.affine
        cands = []
        for p in glob.glob(os.path.join(tmp, "*.nii")):
            ref = nib.load(p)
            if ref.shape[:3] == data.shape or sorted(ref.shape[:3]) == sorted(data.shape):
                cands.append(ref)
        if not cands:
            return ["dcm2niix made no volume of shape %s" % (data.shape,)]
        rng = np.random.default_rng(1)
        pts = [(0, 0, 0), tuple(s - 1 for s in data.shape)]
        pts += [tuple(int(rng.integers(0, s)) for s in data.shape) for _ in range(200)]
        errors = []
        for ref in cands:
            rdata = np.asanyarray(ref.dataobj).astype(np.float64)
            inv = np.linalg.inv(ref.affine)
            errs = []
            for ijk in pts:
                world = ours @ np.array(list(ijk) + [1.0])
                v = inv @ world
                vi = np.round(v[:3]).astype(int)
                if np.abs(v[:3] - vi).max() > 1e-3 or np.any(vi < 0) or \
                        np.any(vi >= np.array(rdata.shape[:3])):
                    errs.append("voxel %s -> dcm2niix %s" % (ijk, v[:3]))
                    break
                if rdata[tuple(vi)] != data[ijk]:
                    errs.append("voxel %s = %g, dcm2niix %g" % (ijk, data[ijk], rdata[tuple(vi)]))
                    break
            if not errs:
                return []
            errors += errs
        return ["against dcm2niix: " + "; ".join(errors)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "make" and len(args) == 1:
        cmd_make(args[0])
    elif cmd == "expect" and len(args) >= 2:
        uid = None
        if "--uid" in args:
            uid = args[args.index("--uid") + 1]
        cmd_expect(args[0], args[1], uid, "--keep-duplicates" in args)
    elif cmd == "nifti" and len(args) == 2:
        cmd_nifti(args[0], args[1])
    elif cmd == "check-nifti" and len(args) >= 2:
        d = args[args.index("--dcm2niix") + 1] if "--dcm2niix" in args else None
        cmd_check_nifti(args[0], args[1], "--float32" in args, d)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
