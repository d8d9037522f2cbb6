import re

import pytest

import medgemini
from conftest import ROOT, cli


def header():
    return open(ROOT + "/include/medgemini.h").read()


def test_version_matches_header_and_cli():
    m = re.search(r'#define MG_VERSION_STRING "([^"]+)"', header())
    assert medgemini.version() == m.group(1)
    major, minor, patch = map(int, m.group(1).split("."))
    assert medgemini.version_number() == major * 10000 + minor * 100 + patch
    assert medgemini.version().encode() in cli("version")
    assert "version=" + medgemini.version() in medgemini.build_info()
    assert medgemini.simd_level() in ("scalar", "avx2", "avx512")


def test_every_status_code_has_its_exception_class():
    codes = {name: int(v) for name, v in
             re.findall(r"#define MG_(E_\w+)\s+(\d+)", header())}
    assert len(codes) >= 16
    for name, code in codes.items():
        cls = medgemini.error_class(code)
        assert cls is not medgemini.MedGeminiError, name
        assert issubclass(cls, medgemini.MedGeminiError)
        assert cls.status == code
        assert medgemini.status_str(code) and medgemini.status_str(code) != "unknown status"
    assert medgemini.error_class(9999) is medgemini.MedGeminiError
    # no builtin shadowed by a re-export
    import builtins
    for name in medgemini.__all__:
        assert not hasattr(builtins, name), name


def test_dtype_names():
    assert [medgemini.dtype_name(i) for i in range(5)] == ["f32", "f16", "bf16", "q8_0", "q4_0"]
    assert medgemini.dtype_name(99) is None
