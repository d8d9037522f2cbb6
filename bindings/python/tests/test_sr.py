"""write_sr: a report as a DICOM Basic Text SR in the study of its sources,
read back with pydicom (when installed)."""
import os

import pytest

import medgemini
from conftest import SHARED

CR = os.path.join(SHARED, "dicom", "cr_chest", "RG1_J2KI.dcm")
CXR_PNG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))), "examples", "data", "cxr_nih_00006585_008.png")


@pytest.mark.skipif(not os.path.exists(CR), reason="shared DICOM data not present")
def test_write_sr_round_trip(tmp_path):
    out = tmp_path / "sr.dcm"
    medgemini.write_sr(out, "Findings: Clear lungs.\nImpression: Normal.", [CR],
                       model_name="demo.mgm", series_number=77)
    data = out.read_bytes()
    assert data[128:132] == b"DICM"
    pydicom = pytest.importorskip("pydicom")
    d = pydicom.dcmread(str(out))
    src = pydicom.dcmread(CR, stop_before_pixels=True)
    assert d.StudyInstanceUID == src.StudyInstanceUID
    assert d.PatientID == src.PatientID
    assert d.SeriesNumber == 77 and d.Modality == "SR"
    assert d.ManufacturerModelName == "demo.mgm"
    sops = d.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert sops.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    texts = []

    def walk(items):
        for it in items:
            if it.ValueType == "TEXT":
                texts.append(it.TextValue)
            if "ContentSequence" in it:
                walk(it.ContentSequence)
    walk(d.ContentSequence)
    assert "Clear lungs." in texts and "Normal." in texts


def test_write_sr_refusals(tmp_path):
    with pytest.raises(medgemini.ImageFormatError):
        medgemini.write_sr(tmp_path / "x.dcm", "text", [CXR_PNG])
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.write_sr(tmp_path / "x.dcm", "text", [])
    with pytest.raises(medgemini.FileAccessError):
        medgemini.write_sr(tmp_path / "x.dcm", "text", [str(tmp_path / "missing.dcm")])
    assert not (tmp_path / "x.dcm").exists()


@pytest.mark.skipif(not os.path.exists(CR), reason="shared DICOM data not present")
def test_scan_studies_and_sr_per_study(tmp_path):
    ct = os.path.join(SHARED, "dicom", "ct_series_3slice")
    st = medgemini.scan_studies([os.path.dirname(CR), ct])
    assert len(st) == 2
    kinds = sorted(s.kind for s in st)
    assert kinds == ["radiograph", "volume"]
    cr = next(s for s in st if s.kind == "radiograph")
    assert cr.frontal.endswith("RG1_J2KI.dcm") and cr.lateral is None and cr.prior is None
    vol = next(s for s in st if s.kind == "volume")
    ct_series = next(se for se in vol.series if se.modality == "CT")
    assert len(ct_series.files) == 3
    assert any("same instance" in w for w in st.warnings)
    out = tmp_path / "sr.dcm"
    medgemini.write_sr(out, "Clear.", [cr.frontal])
    again = medgemini.scan_studies([str(out), cr.frontal])
    assert len(again) == 1 and {se.modality for se in again[0].series} == {"CR", "SR"}
    with pytest.raises(medgemini.FileAccessError):
        medgemini.scan_studies([str(tmp_path / "missing")])
