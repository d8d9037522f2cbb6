import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)                      # bindings/python
ROOT = os.path.dirname(os.path.dirname(PKG))     # repository root
sys.path.insert(0, PKG)

CLI = os.environ.get("MG_CLI") or os.path.join(ROOT, "bin", "medgemini")
CXR = os.path.join(ROOT, "examples", "data", "cxr_nih_00006585_008.png")
SHARED = os.environ.get("MG_SHARED_DATA") or os.path.join(ROOT, "..", "shared", "data")


def cli(*args, input=None):
    """Runs the C command-line tool (an independent path through the C API)."""
    r = subprocess.run([CLI, *args], input=input, capture_output=True, check=True)
    return r.stdout


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.mgm")
    cli("mkmodel", "--shape", "tiny", "--dtype", "q8_0", "-o", path)
    return path


@pytest.fixture(scope="session")
def model(tiny_path):
    import medgemini
    with medgemini.Model.load(tiny_path, threads=1) as m:
        yield m


@pytest.fixture(scope="session")
def genome_path(tmp_path_factory):
    """A random-weight model with a genomics encoder: traits t0..t3,
    thresholds p0..p2 (scores "t0_p0" ... "t3_p2"), reference mean 0.01*k
    and std 1 + 0.1*(k % 5) for score k = trait*3 + threshold, a 2x2 grid
    of 32-px squares, z_scale 32, answer words "Y" and "N"."""
    path = str(tmp_path_factory.mktemp("model") / "genome.mgm")
    cli("mkmodel", "--shape", "tiny", "--genome", "4,3", "-o", path)
    return path


@pytest.fixture(scope="session")
def slow_path(tmp_path_factory):
    """A text model large enough that generation takes a noticeable time."""
    path = str(tmp_path_factory.mktemp("model") / "slow.mgm")
    cli("mkmodel", "--shape", "tiny", "--no-vision", "--hidden", "256", "--ffn", "1024",
        "--layers", "4", "--context", "4096", "-o", path)
    return path
