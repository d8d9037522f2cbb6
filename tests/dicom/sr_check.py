#!/usr/bin/python3
"""Reads an SR written by mg_sr_write with pydicom and checks it against the
values given (tests/check_sr.c). Exit 0 when every check holds.

  sr_check.py SR.dcm --name PN --study UID --sources N --finding TEXT
              [--impression TEXT] --model NAME
  sr_check.py --probe      exit 0 when pydicom is importable"""
import argparse
import sys


def main():
    if sys.argv[1:] == ["--probe"]:
        import pydicom  # noqa: F401
        return 0
    import pydicom
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--name", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--sources", type=int, required=True)
    ap.add_argument("--finding", required=True)
    ap.add_argument("--impression")
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    d = pydicom.dcmread(a.path)  # strict enough: raises on malformed data
    problems = []

    def check(what, got, want):
        if got != want:
            problems.append("%s: %r, want %r" % (what, got, want))

    check("SOP class", d.SOPClassUID, "1.2.840.10008.5.1.4.1.1.88.11")
    check("meta SOP class", d.file_meta.MediaStorageSOPClassUID, d.SOPClassUID)
    check("meta SOP instance", d.file_meta.MediaStorageSOPInstanceUID, d.SOPInstanceUID)
    check("modality", d.Modality, "SR")
    check("patient name", str(d.PatientName), a.name)
    check("study", d.StudyInstanceUID, a.study)
    check("model name", d.ManufacturerModelName, a.model)
    check("verification", d.VerificationFlag, "UNVERIFIED")
    check("value type", d.ValueType, "CONTAINER")
    check("document title", d.ConceptNameCodeSequence[0].CodeValue, "18748-4")
    ev = d.CurrentRequestedProcedureEvidenceSequence
    check("evidence studies", len(ev), 1)
    check("evidence study", ev[0].StudyInstanceUID, a.study)
    n = sum(len(s.ReferencedSOPSequence) for s in ev[0].ReferencedSeriesSequence)
    check("evidence instances", n, a.sources)
    texts = {}

    def walk(items):
        for it in items:
            code = it.ConceptNameCodeSequence[0].CodeValue
            if it.ValueType == "TEXT":
                texts[code] = it.TextValue
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(d.ContentSequence)
    check("finding", texts.get("121071"), a.finding)
    check("impression", texts.get("121073"), a.impression)
    check("device model", texts.get("121015"), a.model)
    if "not a diagnosis" not in texts.get("121106", ""):
        problems.append("no disclaimer comment")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
