"""DICOM files (folders, DICOMDIR) grouped into studies and series."""
import ctypes
import os
from ctypes import byref, c_char_p, c_void_p
from dataclasses import dataclass, field
from typing import List, Optional

from . import _lib
from .errors import make_error

_SIZE_MAX = ctypes.c_size_t(-1).value


@dataclass
class Series:
    uid: str
    modality: Optional[str]
    description: Optional[str]
    number: Optional[str]
    body_part: Optional[str]
    view: Optional[str]          # "frontal", "lateral" or None
    files: List[str] = field(default_factory=list)  # in instance order


@dataclass
class Study:
    uid: str
    patient_id: Optional[str]
    patient_name: Optional[str]
    date: Optional[str]
    time: Optional[str]
    accession: Optional[str]
    description: Optional[str]
    kind: str                    # "volume", "radiograph" or "other"
    frontal: Optional[str]       # paths of the chest views, if any
    lateral: Optional[str]
    prior: Optional[int]         # index of the prior study of the patient
    series: List[Series] = field(default_factory=list)


@dataclass
class StudySet:
    studies: List[Study]
    warnings: List[str]          # files skipped, and why

    def __iter__(self):
        return iter(self.studies)

    def __len__(self):
        return len(self.studies)

    def __getitem__(self, i):
        return self.studies[i]


def scan_studies(paths, max_files=0):
    """Reads folders (recursively), DICOMDIR files or DICOM files and groups
    them into studies and series (mg_studies_scan): each study's kind, chest
    views and prior, each series' files in instance order. Returns a
    StudySet (plain data; nothing to close)."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    enc = [os.fsencode(p) for p in paths]
    arr = (c_char_p * max(1, len(enc)))(*enc)
    p = _lib.mg_studies_params()
    _lib.mg_studies_params_init(byref(p))
    p.max_files = int(max_files)
    out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
    st = _lib.mg_studies_scan(byref(out), arr, len(enc), byref(p), err, _lib.ERRBUF)
    if st:
        raise make_error(st, err.value.decode("utf-8", "replace"))
    h = out.value
    try:
        def get(i, k, key):
            v = _lib.mg_studies_get(h, i, k, key.encode())
            return None if v is None else os.fsdecode(v) if key in ("frontal", "lateral", "files") \
                else v.decode("utf-8", "replace")
        studies = []
        for i in range(_lib.mg_studies_count(h)):
            prior = get(i, -1, "prior")
            s = Study(get(i, -1, "study_uid"), get(i, -1, "patient_id"),
                      get(i, -1, "patient_name"), get(i, -1, "date"), get(i, -1, "time"),
                      get(i, -1, "accession"), get(i, -1, "description"), get(i, -1, "kind"),
                      get(i, -1, "frontal"), get(i, -1, "lateral"),
                      None if prior is None else int(prior))
            for k in range(_lib.mg_studies_series_count(h, i)):
                files = get(i, k, "files")
                s.series.append(Series(get(i, k, "series_uid"), get(i, k, "modality"),
                                       get(i, k, "description"), get(i, k, "number"),
                                       get(i, k, "body_part"), get(i, k, "view"),
                                       files.split("\n") if files else []))
            studies.append(s)
        w = _lib.mg_studies_get(h, _SIZE_MAX, -1, b"warnings") or b""
        warnings = [x for x in w.decode("utf-8", "replace").split("\n") if x]
    finally:
        _lib.mg_studies_free(h)
    return StudySet(studies, warnings)
