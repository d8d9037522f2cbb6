"""Progress callbacks of the generating calls, what a context keeps between
calls (prefix reuse, the encoder-output cache, reuse=False) and multi-turn
chat, against the real library with the tiny random-weight models."""
import threading
import time

import pytest

import medgemini
from conftest import CXR, cli

Q1 = "Is there a pleural effusion?"
Q2 = "Is the heart enlarged?"
FOLLOW_UP = "Why do you say so?"


def stages(events):
    """The stages of events in order, repeats folded."""
    out = []
    for e in events:
        if not out or out[-1] != e.stage:
            out.append(e.stage)
    return out


def drain(gen):
    """(pieces, return value) of a *_stream generator."""
    pieces = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as stop:
            return pieces, stop.value


def check_events(events, max_tokens):
    assert events and all(isinstance(e, medgemini.Progress) for e in events)
    assert all(e.stage in ("encode", "prefill", "generate") for e in events)
    secs = [e.seconds for e in events]
    assert secs == sorted(secs) and secs[0] >= 0
    # the answer's tokens come last, done rises within each stage
    assert events[-1].stage == "generate"
    gen = [e for e in events if e.stage == "generate"]
    assert all(e.total == max_tokens for e in gen)
    first_gen = events.index(gen[0])
    assert all(e.stage == "generate" for e in events[first_gen:])
    for stage in ("prefill", "generate"):
        done = [e.done for e in events if e.stage == stage]
        assert done == sorted(done)
    for e in events:
        if e.stage == "prefill":
            assert e.done <= e.total
        if e.stage == "encode":
            assert e.block < e.n_blocks
        if e.n_steps:
            assert e.step <= e.n_steps


@pytest.fixture
def image():
    with medgemini.Image.open(CXR) as img:
        yield img


# ------------------------------------------------------------------ progress

def test_progress_events_and_encoder_cache(model, image):
    with model.context(reuse=False) as fresh:
        want1 = fresh.vqa(image, Q1, max_tokens=6)
        want2 = fresh.vqa(image, Q2, max_tokens=6)
    with model.context() as ctx:
        first = []
        assert ctx.vqa(image, Q1, max_tokens=6, progress=first.append) == want1
        check_events(first, 6)
        assert set(stages(first)) == {"encode", "prefill", "generate"}
        enc = [e for e in first if e.stage == "encode"]
        assert all(e.block == 0 and e.n_blocks == 1 for e in enc)
        assert all(e.reused == 0 and e.cached == 0 for e in first)   # a new context
        p = first[0]
        with pytest.raises(AttributeError):
            p.done = 99                                               # read-only
        assert p._asdict()["stage"] == p.stage == p[0]

        # the same Image object after another question: its encoder output
        # comes from the context's cache (MedGemma puts the text first, so
        # the image sits at another place and is read again, not encoded)
        second = []
        assert ctx.vqa(image, Q2, max_tokens=6, progress=second.append) == want2
        check_events(second, 6)
        assert "encode" not in stages(second)
        assert max(e.cached for e in second) > 0
        assert max(e.reused for e in second) > 0      # <bos> and the turn's opening

        # the same prompt again: all of it but what must be read again is kept
        n_prompt = second[0].reused + second[0].total
        third = []
        assert ctx.vqa(image, Q2, max_tokens=6, progress=third.append) == want2
        assert "encode" not in stages(third)
        assert third[0].stage == "prefill" and third[0].reused + third[0].total == n_prompt
        assert third[0].reused >= n_prompt - 2   # the last two read again, as a batch

        # a path makes a new Image on every call: encoded every time
        for _ in range(2):
            ev = []
            ctx.vqa(CXR, Q2, max_tokens=2, progress=ev.append)
            assert "encode" in stages(ev)


def test_progress_on_every_entry_point(model, image, tmp_path):
    # pooled Model calls
    ev = []
    assert model.report(image, max_tokens=3, progress=ev.append) == model.report(image, max_tokens=3)
    check_events(ev, 3)
    ev = []
    model.generate("Describe the film.", max_tokens=3, progress=ev.append)
    assert stages(ev) == ["prefill", "generate"] and ev[0].n_blocks == 0
    ev = []
    ids = model.tokenize("the heart", bos=True)
    model.generate_ids(ids, max_tokens=2, progress=ev.append)
    # (a pooled context may hold the <bos> already)
    assert stages(ev) == ["prefill", "generate"] and ev[0].reused + ev[0].total == len(ids)
    # volumes: one encoder block per slice
    np = pytest.importorskip("numpy")
    arr = np.arange(6 * 8 * 8, dtype=np.float32).reshape(6, 8, 8) * 5 - 1000
    vol = medgemini.Volume.from_array(arr, modality="CT")
    with model.context() as ctx:
        ev = []
        ctx.vqa_volume(vol, Q1, max_tokens=2, max_slices=3, progress=ev.append)
        enc = [e for e in ev if e.stage == "encode"]
        assert sorted({e.block for e in enc}) == [0, 1, 2]
        assert all(e.n_blocks == 3 for e in ev)
        ev = []
        ctx.report_volume(vol, max_tokens=2, max_slices=3, progress=ev.append)
        # the slices come before the text: kept in the sequence, not encoded
        assert "encode" not in stages(ev) and ev[0].reused > 0
    vol.close()


def test_progress_inside_the_image_encoder(tmp_path):
    # an encoder slow enough (~0.4 s) for events between its steps
    path = str(tmp_path / "venc.mgm")
    cli("mkmodel", "--shape", "tiny", "--vision-layers", "24", "--image-size", "448",
        "--patch", "14", "--image-tokens", "64", "-o", path)
    with medgemini.Model.load(path, threads=1) as m, m.context() as ctx, \
            medgemini.Image.open(CXR) as img:
        ev = []
        ctx.vqa(img, Q1, max_tokens=2, progress=ev.append)
        check_events(ev, 2)
        steps = [e for e in ev if e.stage == "encode" and e.n_steps]
        assert steps, ev
        assert all(e.n_steps == 3 * 24 + 1 for e in steps)   # three per layer, the projector
        assert [e.step for e in steps] == sorted(e.step for e in steps)
        # stopped between two encoder steps
        seen = []
        t0 = time.monotonic()
        with medgemini.Image.open(CXR) as other, pytest.raises(medgemini.Interrupted) as e:
            ctx.vqa(other, Q1, max_tokens=2,
                    progress=lambda p: seen.append(p) or (p.stage == "encode" and p.step > 0))
        assert e.value.partial == "" and seen[-1].stage == "encode"
        assert 0 < seen[-1].step < seen[-1].n_steps
        assert time.monotonic() - t0 < 5


def test_progress_in_streams_runs_on_the_iterating_thread(model, image):
    want = model.vqa(image, Q1, max_tokens=8)
    threads, ev = set(), []

    def watch(p):
        threads.add(threading.get_ident())
        ev.append(p)
    pieces, text = drain(model.vqa_stream(image, Q1, max_tokens=8, progress=watch))
    assert text == want == "".join(pieces)
    assert threads == {threading.get_ident()}
    check_events(ev, 8)
    ev = []
    _, text = drain(model.report_stream(image, max_tokens=3, progress=ev.append))
    assert text == model.report(image, max_tokens=3) and ev
    ev = []
    _, text = drain(model.generate_stream("hi", max_tokens=3, progress=ev.append))
    assert text == model.generate("hi", max_tokens=3) and stages(ev) == ["prefill", "generate"]


def test_progress_done_rises_during_generation(slow_path):
    events = []

    def watch(p):
        events.append(p)
        return sum(e.stage == "generate" for e in events) >= 3

    with medgemini.Model.load(slow_path, threads=1) as m:
        with pytest.raises(medgemini.Interrupted) as e:
            m.generate("tell me", max_tokens=3000, progress=watch)
    gen = [e for e in events if e.stage == "generate"]
    assert len(gen) == 3 and all(g.total == 3000 for g in gen)
    assert gen[0].done == 0 and gen[0].done < gen[1].done < gen[2].done
    # after the stage's first event, at most one every 100 ms
    assert gen[2].seconds - gen[1].seconds >= 0.09
    assert e.value.partial and e.value.status == 10


def test_stopping_from_progress_raises_interrupted(model, image, slow_path):
    with model.context() as ctx:
        want = ctx.vqa(image, Q1, max_tokens=4)
        # stopped while an image is encoded (a new Image object: reset()
        # empties the sequence, not the encoder-output cache): nothing
        # generated yet
        ctx.reset()
        with pytest.raises(medgemini.Interrupted) as e, medgemini.Image.open(CXR) as other:
            ctx.vqa(other, Q1, max_tokens=4, progress=lambda p: p.stage == "encode")
        assert e.value.status == 10 and e.value.partial == ""
        assert "progress" in e.value.message
        seen = []
        with pytest.raises(medgemini.Interrupted):
            ctx.report(image, max_tokens=4, progress=lambda p: seen.append(p) or 1)
        assert len(seen) == 1                     # no event after the stop
        # the context is fine afterwards
        assert ctx.vqa(image, Q1, max_tokens=4) == want
    # stopped while generating: the text so far is kept, as for on_token
    with medgemini.Model.load(slow_path, threads=1) as m, m.context() as ctx:
        pieces = []
        t0 = time.monotonic()
        with pytest.raises(medgemini.Interrupted) as e:
            ctx.generate("go", max_tokens=3000, on_token=pieces.append,
                         progress=lambda p: p.stage == "generate" and p.done > 0)
        assert time.monotonic() - t0 < 10
        assert e.value.partial and e.value.partial.startswith("".join(pieces))
        # streams: the generator raises Interrupted
        gen = ctx.generate_stream("go", max_tokens=3000,
                                  progress=lambda p: p.stage == "generate" and p.done > 0)
        got = []
        with pytest.raises(medgemini.Interrupted) as e:
            for piece in gen:
                got.append(piece)
        assert e.value.partial.startswith("".join(got))
        assert ctx.generate("ok", max_tokens=2) is not None


def test_exception_in_progress_is_reraised(model, image):
    class Boom(Exception):
        pass

    def boom(p):
        raise Boom(p.stage)

    with model.context() as ctx:
        want = ctx.vqa(image, Q1, max_tokens=4)
        with pytest.raises(Boom):
            ctx.vqa(image, Q1, max_tokens=4, progress=boom)

        def late(p):
            if p.stage == "generate":
                raise Boom("late")
        with pytest.raises(Boom, match="late"):
            ctx.report(image, max_tokens=4, progress=late)
        with pytest.raises(Boom):
            drain(ctx.vqa_stream(image, Q1, max_tokens=4, progress=boom))
        with pytest.raises(Boom):
            ctx.chat(Q1, images=image, max_tokens=4, progress=boom)
        assert ctx.vqa(image, Q1, max_tokens=4) == want
        with pytest.raises(TypeError):
            ctx.vqa(image, Q1, progress="not callable")
        with pytest.raises(TypeError):
            drain(ctx.vqa_stream(image, Q1, progress=3))


def test_prs_predict_progress(genome_path):
    scores = {"t0_p0": 0.5, "t1_p1": -1.2, "t3_p2": 2.0}
    q = "Does this individual have coronary artery disease?"
    with medgemini.Model.load(genome_path, threads=1) as gm, gm.context() as ctx:
        ev = []
        text, risk = ctx.prs_predict(scores, q, max_tokens=3, progress=ev.append)
        check_events(ev, 3)
        assert "encode" in stages(ev)
        # the same scores again: the score block, before the question, is
        # kept in the context's sequence
        ev = []
        text2, risk2 = ctx.prs_predict(scores, "Does this individual have asthma?",
                                       max_tokens=3, progress=ev.append)
        assert "encode" not in stages(ev) and ev[0].reused > 0
        # after other scores, the first ones come from the encoder-output cache
        ctx.prs_risk({"t2_p1": 1.0}, q)
        ev = []
        text3, risk3 = ctx.prs_predict(scores, q, max_tokens=3, progress=ev.append)
        assert text3 == text and risk3 == pytest.approx(risk, abs=1e-6)
        assert "encode" not in stages(ev) and max(e.cached for e in ev) == 1
        ev = []
        assert 0 < ctx.prs_risk(scores, q, progress=ev.append) < 1
        assert ev and ev[0].stage == "prefill"
        with pytest.raises(medgemini.Interrupted):
            ctx.prs_predict({"t0_p0": 9.0}, q, progress=lambda p: True)


# ------------------------------------------------------------------- reuse

def test_reuse_false_gives_the_same_texts(model, tiny_path, image):
    with model.context(reuse=False) as nr, model.context() as ctx:
        assert nr.reuse is False and ctx.reuse is True
        for q in (Q1, Q2, Q2, Q1):
            ev = []
            got = nr.vqa(image, q, max_tokens=8, progress=ev.append)
            assert got == ctx.vqa(image, q, max_tokens=8)
            # nothing kept: every prompt read and every image encoded anew
            assert "encode" in stages(ev)
            assert all(e.reused == 0 and e.cached == 0 for e in ev)
        assert nr.report(image, max_tokens=6) == ctx.report(image, max_tokens=6)
        with pytest.raises(medgemini.UnsupportedError) as e:
            nr.chat(Q1, images=image)
        assert e.value.status == 7
        with pytest.raises(medgemini.UnsupportedError):
            drain(nr.chat_stream(Q1, images=image))
    # the model's setting reaches its pooled contexts and Model.context()
    with medgemini.Model.load(tiny_path, threads=1, reuse=False) as m:
        ev = []
        assert m.vqa(image, Q1, max_tokens=8) == model.vqa(image, Q1, max_tokens=8)
        m.vqa(image, Q1, max_tokens=8, progress=ev.append)      # a pooled context again
        assert "encode" in stages(ev) and all(e.reused == 0 for e in ev)
        with m.context() as c1, m.context(reuse=True) as c2:
            assert not c1.reuse and c2.reuse


def test_reuse_keeps_the_logits(model, image):
    # include/medgemini.h: the part of a prompt read again is batched
    # differently from a fresh read, so logits agree to float rounding (the
    # header's bound: 1e-5 relative); without reuse, equal calls are bit-equal
    np = pytest.importorskip("numpy")
    with model.context(reuse=False) as nr, model.context() as ctx, \
            model.context(reuse=False) as nr2:
        for q in (Q1, Q2, Q2):
            assert ctx.vqa(image, q, max_tokens=0) == nr.vqa(image, q, max_tokens=0) == ""
            assert nr2.vqa(image, q, max_tokens=0) == ""
            a, b, c = ctx.logits(), nr.logits(), nr2.logits()
            assert np.array_equal(b, c)
            scale = float(np.abs(b).max())
            assert float(np.abs(a - b).max()) <= 1e-5 * scale, (q, float(np.abs(a - b).max()))


# -------------------------------------------------------------------- chat

def test_chat_turns(model, image):
    with model.context(reuse=False) as fresh:
        want = fresh.vqa(image, Q1, max_tokens=8)
    assert not hasattr(model, "chat")      # a conversation lives in one Context
    with model.context() as ctx:
        a = ctx.chat(Q1, images=image, max_tokens=8)
        assert a == want                   # the first turn is laid out as vqa()
        n1 = ctx.n_tokens
        turn1 = ctx.tokens()
        ev = []
        b = ctx.chat(FOLLOW_UP, max_tokens=8, progress=ev.append)
        assert isinstance(b, str)
        n2 = ctx.n_tokens
        assert n2 > n1 and ctx.tokens()[:n1] == turn1
        # only the new turn is read: the conversation stays in the KV cache
        assert "encode" not in stages(ev) and ev[0].reused == n1
        # a later turn may bring images (this one from the encoder cache)
        ev = []
        c = ctx.chat("And compared with this one?", images=[image], max_tokens=8,
                     progress=ev.append)
        assert isinstance(c, str) and ctx.n_tokens > n2
        assert "encode" not in stages(ev) and max(e.cached for e in ev) == 1
    # streaming gives the same turns on a new context
    with model.context() as ctx:
        pieces, text = drain(ctx.chat_stream(Q1, images=image, max_tokens=8))
        assert text == a == "".join(pieces)
        assert drain(ctx.chat_stream(FOLLOW_UP, max_tokens=8))[1] == b
        # another generating call ends the conversation; the next chat opens one
        ctx.vqa(image, Q2, max_tokens=3)
        assert ctx.chat(Q1, images=image, max_tokens=8) == a
        ctx.reset()
        assert ctx.n_tokens == 0
        assert ctx.chat(Q1, images=image, max_tokens=8) == a
        assert ctx.chat(FOLLOW_UP, max_tokens=8) == b


def test_chat_interrupted_turn_and_full_context(model, image):
    with model.context(n_ctx=200) as ctx:
        ctx.chat(Q1, images=image, max_tokens=8)
        first = ctx.tokens()
        # a turn cut short by a callback: Interrupted, the conversation goes on
        with pytest.raises(medgemini.Interrupted) as e:
            ctx.chat("Stop there.", max_tokens=30, on_token=lambda piece: True)
        assert e.value.status == 10
        n = ctx.n_tokens
        assert isinstance(ctx.chat("Go on.", max_tokens=4), str) and ctx.n_tokens > n
        # more turns than the context holds: the oldest exchanges but the
        # first are dropped
        for i in range(6):
            assert isinstance(ctx.chat("Tell me more about finding number %d, please." % i,
                                       max_tokens=8), str)
            assert ctx.n_tokens <= 200
            assert ctx.tokens()[:len(first)] == first
