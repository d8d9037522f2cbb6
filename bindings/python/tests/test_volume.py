import os

import pytest

import medgemini
from conftest import SHARED, cli

np = pytest.importorskip("numpy")
CT3 = os.path.join(SHARED, "dicom", "ct_series_3slice")


def test_array_round_trip_and_nifti(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(-1000, 1000, (4, 5, 6)).astype(np.float32)   # (nz, ny, nx)
    aff = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 20], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    v = medgemini.Volume.from_array(a, aff, modality="CT")
    i = v.info
    assert i.shape == (4, 5, 6) and i.source == "voxels"
    assert np.allclose(v.affine, aff) and i.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert (i.min_value, i.max_value) == (a.min(), a.max())
    assert np.array_equal(v.to_array(), a)
    assert v.get_string("modality") == "CT" and v.warnings == []
    path = str(tmp_path / "v.nii.gz")
    v.save_nifti(path)
    back = medgemini.Volume.from_nifti(path)
    assert back.info.source == "nifti"
    assert np.array_equal(back.to_array(), a)
    assert np.allclose(back.affine, aff, atol=1e-5)
    nib = pytest.importorskip("nibabel")
    img = nib.load(path)          # RAS+: x and y negated
    ras = aff.copy()
    ras[:2] *= -1
    assert np.allclose(img.affine, ras, atol=1e-5)
    assert np.array_equal(np.asanyarray(img.dataobj).transpose(2, 1, 0), a)
    v.close()
    with pytest.raises(medgemini.MisuseError):
        v.info


def test_errors(tmp_path):
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.Volume.from_array(np.zeros((2, 2), np.float32))
    with pytest.raises(medgemini.LimitError):
        medgemini.Volume.from_array(np.zeros((2, 3, 4), np.float32), max_voxels=10)
    with pytest.raises(medgemini.FileAccessError):
        medgemini.Volume.from_dicom(tmp_path / "missing")
    with pytest.raises(medgemini.NotFoundError):
        medgemini.Volume.from_dicom(tmp_path)
    (tmp_path / "x.nii").write_bytes(b"\0" * 400)
    with pytest.raises(medgemini.ImageFormatError) as e:
        medgemini.Volume.from_nifti(tmp_path / "x.nii")
    assert "not a NIfTI file" in e.value.message


@pytest.mark.skipif(not os.path.isdir(CT3), reason="shared CT series absent")
def test_ct_series_against_pydicom():
    pydicom = pytest.importorskip("pydicom")
    v = medgemini.Volume.from_dicom(CT3)
    i = v.info
    assert i.shape == (3, 512, 512) and i.source == "dicom"
    assert (i.n_files, i.n_skipped) == (3, 1)
    assert any("Segmentation" in w for w in v.warnings)
    # pydicom: slices sorted by position along the normal (z here), in HU
    ds = sorted((pydicom.dcmread(os.path.join(CT3, f)) for f in ("01.dcm", "02.dcm", "03.dcm")),
                key=lambda d: float(d.ImagePositionPatient[2]))
    ref = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
                    for d in ds]).astype(np.float32)
    assert np.array_equal(v.to_array(), ref)
    assert v.affine[2, 3] == pytest.approx(float(ds[0].ImagePositionPatient[2]))
    assert v.get_string("series_uid") == ds[0].SeriesInstanceUID
    same = medgemini.Volume.from_dicom([os.path.join(CT3, f) for f in ("03.dcm", "01.dcm", "02.dcm")],
                                       series_uid=ds[0].SeriesInstanceUID)
    assert np.array_equal(same.to_array(), ref)


# ------------------------------------------------------ slices for the model

def ramp_ct():
    """A 10-slice CT ramp in HU: voxel (z, y, x) = -1000 + 20 * (12z + 4y + x)."""
    nz, ny, nx = 10, 3, 4
    a = (np.arange(nz * ny * nx, dtype=np.float32).reshape(nz, ny, nx) * 20 - 1000)
    return a, medgemini.Volume.from_array(a, modality="CT")


def ct_rgb(v):
    """MedGemma's CT windows by hand: R -1024..1024, G -135..215, B 0..80."""
    def level(lo, hi):
        return round((min(max(v, lo), hi) - lo) / (hi - lo) * 255)
    return (level(-1024, 1024), level(-135, 215), level(0, 80))


def test_slices_selection_and_ct_window():
    a, v = ramp_ct()
    n = a.shape[0]
    # the rule, by hand: round(i / max * (n - 1)) for i = 1..max, Python's
    # round (half to even: 4.5 -> 4)
    want = [int(round(i / 4 * (n - 1))) for i in range(1, 5)]
    assert want == [2, 4, 7, 9]
    assert v.slice_indices(max_slices=4) == want
    assert v.slice_indices(max_slices=3) == [3, 6, 9]
    assert v.slice_indices() == list(range(n))          # 10 <= 85: all of them
    slices = v.slices(max_slices=4, window="ct")
    assert len(slices) == 4
    for s in slices:
        assert (s.width, s.height, s.mode) == (4, 3, "RGB")
        assert s.get_string("modality") == "CT"
    # slice 2 of 4 is z = 4; voxel (4, 1, 1) = -1000 + 20 * 53 = 60 HU
    assert a[4, 1, 1] == 60.0
    assert ct_rgb(60.0) == (135, 142, 191)               # 134.97, 142.07, 191.25
    px = slices[1].to_array()
    assert tuple(px[1, 1]) == (135, 142, 191)
    # every pixel of every slice against the hand formula (identity affine:
    # the radiological view is the stored order)
    for s, z in zip(slices, want):
        got = s.to_array()
        for y in range(3):
            for x in range(4):
                assert tuple(got[y, x]) == ct_rgb(float(a[z, y, x])), (z, y, x)
    # auto picks CT for modality CT; min-max is grey
    assert np.array_equal(v.slices(max_slices=4)[1].to_array(), px)
    grey = v.slices(max_slices=4, window="minmax")[1].to_array()
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    lo, hi = float(a.min()), float(a.max())
    assert grey[1, 1, 0] == round((60.0 - lo) / (hi - lo) * 255)


def test_slices_radiological_view_and_as_stored():
    a, _ = ramp_ct()
    # x pointing to the patient's right: the view flips the columns so that
    # the right is on the viewer's left; as_stored keeps the voxel order
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    v = medgemini.Volume.from_array(a, flip, modality="CT")
    shown = v.slices(max_slices=4)[1].to_array()
    stored = v.slices(max_slices=4, as_stored=True)[1].to_array()
    assert tuple(stored[1, 1]) == ct_rgb(60.0)
    assert np.array_equal(shown, stored[:, ::-1])
    assert v.slice_indices(max_slices=4, as_stored=True) == [2, 4, 7, 9]


def test_slices_errors():
    _, v = ramp_ct()
    with pytest.raises(medgemini.InvalidArgumentError) as e:
        v.slices(window="lung")                       # refused by the binding
    assert "window" in e.value.message
    with pytest.raises(medgemini.InvalidArgumentError) as e:
        v.slices(window=7)                            # refused by the library
    assert e.value.status == 1 and "unknown window 7" in e.value.message
    with pytest.raises(medgemini.LimitError) as e:
        v.slice_indices(max_slices=medgemini.volume.MAX_SLICES + 1)
    assert "1025" in e.value.message
    v.close()
    with pytest.raises(medgemini.MisuseError):
        v.slices()


def test_vqa_and_report_volume_tokens(model, tiny_path, tmp_path):
    a, v = ramp_ct()
    image_id = model.tokenizer.special("image")
    per_image = model.meta("vision.tokens_per_image")
    assert image_id is not None and per_image > 0
    q = "Is there a mass?"
    with model.context() as ctx:
        # max_tokens=0: the prompt is read, nothing is generated
        assert ctx.vqa_volume(v, q, max_tokens=0, max_slices=4) == ""
        ids = ctx.tokens()
        assert len(ids) == ctx.n_tokens
        assert ids.count(image_id) == 4 * per_image
        text = model.detokenize(ids)
        for k in (1, 2, 3, 4):
            assert "SLICE %d" % k in text
        assert "SLICE 5" not in text and q in text
        # a few tokens: the same prompt, then the answer fed back
        answer = ctx.vqa_volume(v, q, max_tokens=3, max_slices=4)
        more = ctx.tokens()
        assert more[:len(ids)] == ids and more.count(image_id) == 4 * per_image
        # the C tool reading the same NIfTI file holds the same ids and says
        # the same (NIfTI has no modality: the preamble says "one volume")
        path = str(tmp_path / "v.nii.gz")
        v.save_nifti(path)
        nii = medgemini.Volume.from_nifti(path)
        answer_nii = ctx.vqa_volume(nii, q, max_tokens=3, max_slices=4)
        nii_ids = ctx.tokens()
        assert nii_ids.count(image_id) == 4 * per_image
        assert "one CT volume" in text and "one CT volume" not in model.detokenize(nii_ids)
        cli_ids = tmp_path / "ids.txt"
        out = cli("vqa", path, "-q", q, "-m", tiny_path, "--slices", "4", "-n", "3",
                  "--threads", "1", "--prompt-ids", str(cli_ids)).decode()
        assert out.rstrip("\n") == answer_nii
        assert [int(x) for x in cli_ids.read_text().split()] == nii_ids
        # report: all 10 slices (at most 85), the default instruction
        streamed = "".join(ctx.report_volume_stream(v, max_tokens=2))
        assert ctx.report_volume(v, max_tokens=2) == streamed
        ids = ctx.tokens()
        assert ids.count(image_id) == 10 * per_image
        assert "SLICE 10" in model.detokenize(ids)
        # the pooled Model methods work too
        assert model.vqa_volume(v, q, max_tokens=3, max_slices=4) == answer


def test_volume_generation_errors(model):
    _, v = ramp_ct()
    with model.context(n_ctx=64) as ctx:
        # 10 slices x 16 image tokens do not fit 64 positions: refused before
        # any encoding
        with pytest.raises(medgemini.ContextFullError) as e:
            ctx.report_volume(v, max_tokens=2)
        assert e.value.status == 11 and "context" in e.value.message
        with pytest.raises(medgemini.ContextFullError):
            ctx.vqa_volume(v, "Normal?", max_tokens=2)
        assert ctx.last_error[0] == 11
    with model.context() as ctx:
        with pytest.raises(medgemini.InvalidArgumentError) as e:
            ctx.vqa_volume(v, "Normal?", window="bone")
        assert e.value.message
        with pytest.raises(medgemini.InvalidArgumentError) as e:
            ctx.report_volume(v, window=9)
        assert "unknown window 9" in e.value.message
        with pytest.raises(medgemini.LimitError) as e:
            ctx.report_volume(v, max_slices=5000)
        assert "max_slices" in e.value.message
        with pytest.raises(TypeError):
            ctx.report_volume("not a volume")
        v.close()
        with pytest.raises(medgemini.MisuseError):
            ctx.vqa_volume(v, "Normal?")
