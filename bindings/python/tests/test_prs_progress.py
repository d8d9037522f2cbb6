"""Prs.compute(progress=...) and Prs.interrupt() on the PLINK sets of
test_prs.py (results checked against the hand computation)."""
import threading

import pytest

import medgemini
from test_prs import check_against, hand_scores, make_set  # skips without numpy


@pytest.fixture
def cohort(tmp_path):
    prefix, d = make_set(str(tmp_path), n=40, m=30, seed=4)
    # small blocks of variants: compute() stops between blocks
    with medgemini.Prs.open_plink(prefix, block_variants=4) as prs:
        prs.add_scores(prefix + ".score")
        yield prs, hand_scores(d)


def test_compute_progress(cohort):
    prs, want = cohort
    events = []
    assert prs.compute(progress=lambda done, total: events.append((done, total))) is prs
    total = events[0][1]
    assert total > 0 and events[0] == (0, total) and events[-1] == (total, total)
    assert [d for d, _ in events] == sorted(d for d, _ in events)
    assert all(t == total for _, t in events)
    check_against(prs.results(), want)
    # the callback is the call's own: a later compute() does not call it
    n = len(events)
    prs.compute()
    assert len(events) == n
    check_against(prs.results(), want)
    with pytest.raises(TypeError):
        prs.compute(progress=42)


def test_compute_stopped_by_progress(cohort):
    prs, want = cohort
    calls = []
    with pytest.raises(medgemini.Interrupted) as e:
        prs.compute(progress=lambda done, total: calls.append(done) or True)
    assert e.value.status == 10 and calls == [0]
    assert "progress" in e.value.message
    with pytest.raises(medgemini.MisuseError):        # no results after a stop
        prs.results()
    # the handle works on
    check_against(prs.compute().results(), want)


def test_exception_in_progress_is_reraised(cohort):
    prs, want = cohort
    with pytest.raises(ZeroDivisionError):
        prs.compute(progress=lambda done, total: 1 / 0)
    with pytest.raises(medgemini.MisuseError):
        prs.results()
    check_against(prs.compute().results(), want)


def test_interrupt_from_another_thread(cohort):
    prs, want = cohort
    entered, release = threading.Event(), threading.Event()
    box = {}

    def hold(done, total):                # keeps compute() at its first block
        entered.set()
        release.wait(10)

    def work():
        try:
            prs.compute(progress=hold)
            box["ok"] = True
        except medgemini.MedGeminiError as exc:
            box["e"] = exc

    t = threading.Thread(target=work)
    t.start()
    assert entered.wait(10)
    prs.interrupt()                       # does not wait for the handle's lock
    release.set()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(box.get("e"), medgemini.Interrupted), box
    with pytest.raises(medgemini.MisuseError):
        prs.results()
    # a request made while no compute runs is dropped
    prs.interrupt()
    check_against(prs.compute().results(), want)
    prs.close()
    with pytest.raises(medgemini.MisuseError):
        prs.compute()
