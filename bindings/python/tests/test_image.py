import os

import pytest

import medgemini
from conftest import CXR, ROOT, SHARED

np = pytest.importorskip("numpy")
DICOM = os.path.join(SHARED, "dicom")


def test_png_matches_pillow():
    PIL = pytest.importorskip("PIL.Image")
    img = medgemini.Image.open(CXR)
    ref = np.asarray(PIL.open(CXR))
    info = img.info
    assert (info.height, info.width) == ref.shape[:2]
    assert info.source == "png" and info.n_frames == 1
    arr = img.to_array()
    if ref.ndim == 3 and arr.ndim == 2:
        ref = ref[:, :, 0]
    assert arr.dtype == ref.dtype and np.array_equal(arr, ref)
    assert img.get_string("photometric") in ("MONOCHROME2", "RGB")
    assert img.get_string("no_such_key") is None
    assert "png" in repr(img)


def test_from_bytes_and_array_round_trip():
    img = medgemini.Image.open(CXR)
    again = medgemini.Image.from_bytes(open(CXR, "rb").read())
    assert np.array_equal(img.to_array(), again.to_array())
    rgb = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    im = medgemini.Image.from_array(rgb)
    assert (im.width, im.height, im.mode, im.info.source) == (5, 7, "RGB", "pixels")
    assert np.array_equal(im.to_array(), rgb)
    g16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    im = medgemini.Image.from_array(g16[:, ::-1])      # non-contiguous input
    assert im.mode == "L16" and np.array_equal(im.to_array(), g16[:, ::-1])
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.Image.from_array(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.Image.from_array(np.zeros((2, 2, 4), dtype=np.uint8))


def test_bad_images(tmp_path):
    with pytest.raises(medgemini.ImageFormatError) as e:
        medgemini.Image.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert e.value.status == 8 and e.value.message
    with pytest.raises(medgemini.ImageFormatError):
        medgemini.Image.from_bytes(b"not an image")
    data = open(CXR, "rb").read()
    with pytest.raises(medgemini.MedGeminiError):   # truncated
        medgemini.Image.from_bytes(data[: len(data) // 2])
    with pytest.raises(medgemini.FileAccessError):
        medgemini.Image.open(tmp_path / "none.png")
    with pytest.raises(medgemini.LimitError) as e:
        medgemini.Image.open(CXR, max_pixels=1000)
    assert e.value.status == 9
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.Image.open(CXR, window="bogus")
    img = medgemini.Image.open(CXR)
    img.close()
    with pytest.raises(medgemini.MisuseError):
        img.to_array()


@pytest.mark.skipif(not os.path.isdir(DICOM), reason="shared DICOM data absent")
def test_dicom_raw_values_match_pydicom():
    pydicom = pytest.importorskip("pydicom")
    path = os.path.join(DICOM, "ct_single", "CT_small.dcm")
    img = medgemini.Image.open(path, window="none")
    info = img.info
    assert info.source == "dicom" and img.get_string("modality") == "CT"
    ds = pydicom.dcmread(path)
    want = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    got = img.to_array().astype(np.int64) + info.raw_offset
    assert got.shape == want.shape
    assert np.array_equal(got, np.rint(want).astype(np.int64))
    # an explicit window gives 8-bit grey
    w = medgemini.Image.open(path, window=(40, 400))
    assert w.mode == "L" and w.info.window == "explicit"


@pytest.mark.skipif(not os.path.isdir(DICOM), reason="shared DICOM data absent")
def test_dicom_chest_report_and_unsupported_syntax(model):
    cr = os.path.join(DICOM, "cr_chest", "RG1_J2KI_decoded_ExplicitVRLittleEndian.dcm")
    img = medgemini.Image.open(cr)
    assert img.get_string("modality") == "CR" and img.mode == "L"
    assert model.report(img, max_tokens=4)
    # the JPEG 2000 original decodes to the same values
    j2k = medgemini.Image.open(os.path.join(DICOM, "cr_chest", "RG1_J2KI.dcm"), window="none")
    raw = medgemini.Image.open(cr, window="none")
    assert j2k.get_string("transfer_syntax") == "JPEG 2000"
    assert np.array_equal(j2k.to_array(), raw.to_array())
    with pytest.raises(medgemini.UnsupportedError) as e:
        medgemini.Image.open(os.path.join(DICOM, "transfer_syntax_variants", "MR_small_bigendian.dcm"))
    assert "Big Endian" in e.value.message
