import os
import subprocess
import sys

from conftest import CXR, PKG


def run_example(*args):
    env = dict(os.environ, PYTHONPATH=PKG + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(PKG, "examples", "report.py"), *args],
                          capture_output=True, env=env, timeout=120)


def test_example_report_and_vqa(model, tiny_path):
    r = run_example(tiny_path, CXR, "-n", "12", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == model.report(CXR, max_tokens=12) + "\n"
    r = run_example(tiny_path, CXR, "-q", "Any effusion?", "-n", "6")
    assert r.returncode == 0 and r.stdout.decode() == model.vqa(CXR, "Any effusion?", max_tokens=6) + "\n"


def test_example_reports_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    r = run_example(str(tmp_path / "missing.mgm"), str(bad))
    assert r.returncode == 1 and b"error:" in r.stderr
