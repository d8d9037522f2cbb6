import json
import os
import subprocess
import sys

import pytest

import medgemini
from conftest import ROOT

np = pytest.importorskip("numpy")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "mm"
    subprocess.run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                    os.path.join(ROOT, "tests", "convert", "make_fixtures.py"),
                    "multimodal", str(out)], check=True, capture_output=True)
    return out


def check_values(path, expect):
    with medgemini.Model.load(path) as m:
        for name, idx, want in expect["checks"]:
            t = m.tensor_info(name)
            assert t.dtype == "f32", name
            vals = np.frombuffer(m.tensor_bytes(name), dtype=np.float32)
            assert vals.size == t.n_elems
            assert vals[idx] == pytest.approx(want, rel=1e-6, abs=1e-7), (name, idx)
        assert m.info.has_vision and m.info.has_text
        assert m.tokenizer.vocab_size >= expect["vocab"] > 0


def test_convert_hf_folder_and_gguf(hf_dir, tmp_path):
    expect = json.load(open(hf_dir / "expect.json"))
    calls = []
    out = tmp_path / "f32.mgm"
    medgemini.convert(hf_dir, out, type="f32",
                      progress=lambda *a: calls.append(a) and False)
    assert calls and [c[2] for c in calls] == list(range(calls[0][3]))
    assert all(c[4] == 0 for c in calls)               # f32: lossless
    check_values(out, expect)
    out2 = tmp_path / "gguf.mgm"
    medgemini.convert(hf_dir / "text.gguf", out2, type="f32", mmproj=hf_dir / "mmproj.gguf")
    check_values(out2, expect)
    # q8_0 is lossy: some tensor reports an error
    errs = []
    medgemini.convert(hf_dir, tmp_path / "q8.mgm", type="q8_0",
                      progress=lambda n, dt, i, c, rms, rel: errs.append((dt, rel)))
    assert any(dt == "q8_0" and 0 < rel < 0.05 for dt, rel in errs)


def test_convert_errors(hf_dir, tmp_path):
    out = tmp_path / "x.mgm"
    with pytest.raises(medgemini.Interrupted):
        medgemini.convert(hf_dir, out, progress=lambda n, dt, i, c, r, rr: i >= 2)
    assert not out.exists()
    with pytest.raises(ZeroDivisionError):
        medgemini.convert(hf_dir, out, progress=lambda *a: 1 / 0)
    assert not out.exists()
    with pytest.raises(medgemini.FileAccessError):
        medgemini.convert(tmp_path / "nothing", out)
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.convert(hf_dir, out, type="q3_k")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{ not json")
    with pytest.raises(medgemini.ModelFormatError):
        medgemini.convert(tmp_path / "bad", out)


def test_writer_round_trip(tmp_path):
    path = tmp_path / "w.mgm"
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 64)).astype(np.float32)
    h = rng.standard_normal(32).astype(np.float16)
    q = rng.standard_normal((2, 32)).astype(np.float32)
    with medgemini.Writer(path) as w:
        w.set("general.name", "writer-test")
        w.set("general.architecture", "none")
        w.set("x.int", -5)
        w.set("x.float", 2.5)
        w.set("x.ints", [1, 2, 3])
        w.set("x.floats", [0.5, 1])
        w.set("x.strings", ["a", "bc"])
        with pytest.raises(medgemini.InvalidArgumentError):
            w.set("x.int", 1)                      # duplicate key
        w.add_tensor("a", "f32", [64, 3])
        w.add_tensor("h", "f16", [32], compress=True)
        w.add_tensor("q", "q8_0", [32, 2])
        w.write_tensor_f32("a", a)
        w.write_tensor("h", h.tobytes())
        with pytest.raises(medgemini.NotFoundError):
            w.write_tensor("nope", b"1234")
        with pytest.raises(medgemini.MisuseError):
            w.finish()                             # q has no data yet
    assert not path.exists()                       # unfinished: removed
    with medgemini.Writer(path) as w:
        w.set("x.int", -5)
        w.add_tensor("a", "f32", [64, 3])
        w.add_tensor("q", "q8_0", [32, 2])
        w.write_tensor_f32("a", a)
        w.write_tensor_f32("q", q)
        w.finish()
    with medgemini.Model.load(path, verify=True) as m:
        assert m.meta("x.int") == -5
        t = m.tensor_info("a")
        assert t.shape == (64, 3) and t.dtype == "f32"
        assert m.tensor_bytes("a") == a.tobytes()
        tq = m.tensor_info("q")
        assert tq.dtype == "q8_0" and tq.n_bytes == 2 * 34
        # q8_0 block (GGML's layout): d = max|x| / 127 stored as fp16, and
        # qs = round-half-away(x * (1 / d)) with the unrounded f32 d
        raw = m.tensor_bytes("q")
        for b in range(2):
            blk = raw[34 * b: 34 * (b + 1)]
            d = np.frombuffer(blk[:2], dtype=np.float16)[0]
            qs = np.frombuffer(blk[2:], dtype=np.int8)
            x = q[b]
            d32 = np.float32(np.abs(x).max()) / np.float32(127)
            assert d == np.float16(d32)
            v = x * (np.float32(1) / d32)
            assert np.array_equal(qs, np.trunc(v + np.copysign(np.float32(0.5), v)).astype(np.int8))
        with pytest.raises(medgemini.UnsupportedError):
            m.report(os.path.join(ROOT, "examples", "data", "cxr_nih_00006585_008.png"))


def test_convert_prune_vocab_and_meta(hf_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the theater in athens\n")
    full, pruned = tmp_path / "full.mgm", tmp_path / "pruned.mgm"
    medgemini.convert(hf_dir, full, type="f32")
    medgemini.convert(hf_dir, pruned, type="f32", prune_vocab=corpus,
                      meta={"general.name": "pruned demo",
                            "prompt.report_instruction": "Describe the image."})
    with medgemini.Model.load(full) as mf, medgemini.Model.load(pruned) as mp:
        tf, tp = mf.tokenizer, mp.tokenizer
        assert tp.vocab_size < tf.vocab_size
        assert mp.meta("text.vocab_size") == tp.vocab_size
        assert mp.meta("general.name") == "pruned demo"
        assert mp.meta("prompt.report_instruction") == "Describe the image."
        # the corpus tokenizes to the same pieces; the rows are the same rows
        text = "the theater in athens"
        a, b = tf.tokenize(text), tp.tokenize(text)
        assert [tf.piece(i) for i in a] == [tp.piece(i) for i in b]
        ef = np.frombuffer(mf.tensor_bytes("text.token_embd"), np.float32).reshape(tf.vocab_size, -1)
        ep = np.frombuffer(mp.tensor_bytes("text.token_embd"), np.float32).reshape(tp.vocab_size, -1)
        assert np.array_equal(ef[a], ep[b])
    # meta as (key, value) pairs; refused keys and a missing corpus
    medgemini.convert(hf_dir, tmp_path / "m.mgm", meta=[("general.license", "CC-BY-4.0")])
    with medgemini.Model.load(tmp_path / "m.mgm") as m:
        assert m.meta("general.license") == "CC-BY-4.0"
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.convert(hf_dir, tmp_path / "x.mgm", meta={"text.vocab_size": "3"})
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.convert(hf_dir, tmp_path / "x.mgm", meta={"general.a=b": "c"})
    with pytest.raises(medgemini.FileAccessError):
        medgemini.convert(hf_dir, tmp_path / "x.mgm", prune_vocab=tmp_path / "none.txt")
    assert not (tmp_path / "x.mgm").exists()
