"""Batched decoding: calls made at the same time from several threads on a
model loaded with batch=N share decode steps and give the texts the same
calls give on a model without batching."""
import threading

import pytest

import medgemini
from conftest import CXR


@pytest.fixture
def image():
    with medgemini.Image.open(CXR) as img:
        yield img


def test_concurrent_calls_share_steps_and_keep_their_text(tiny_path, image):
    prompts = ["request %d about the film" % i for i in range(4)]
    kw = [dict(max_tokens=20 + 5 * i) for i in range(4)]
    kw[1].update(temperature=0.8, seed=7)
    with medgemini.Model.load(tiny_path, threads=1, reuse=False) as plain:
        want = [plain.generate(p, **k) for p, k in zip(prompts, kw)]
        want_report = plain.report(image, max_tokens=16)
    with medgemini.Model.load(tiny_path, threads=1, reuse=False, batch=4,
                              batch_wait=0.2) as m:
        for _ in range(2):
            got = [None] * 4
            errors = []

            def run(i):
                try:
                    got[i] = m.generate(prompts[i], **kw[i])
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            assert got == want
        assert m.report(image, max_tokens=16) == want_report
        s = m.batch_stats()
        assert s["steps"] > 0
        assert sum(s["by_rows"]) == s["steps"]
        assert sum((k + 1) * n for k, n in enumerate(s["by_rows"])) == s["rows"]
        assert s["busy_seconds"] > 0
        # a Context of a batching model joins the batch too
        with m.context() as c:
            assert c.generate(prompts[0], **kw[0]) == want[0]
        assert m.batch_stats()["rows"] > s["rows"]


def test_batch_refusals(tiny_path, model):
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.Model.load(tiny_path, batch=9)
    with pytest.raises(medgemini.InvalidArgumentError):
        medgemini.Model.load(tiny_path, batch=2, batch_wait=5)
    with pytest.raises(medgemini.InvalidArgumentError):
        model.batch_stats()
