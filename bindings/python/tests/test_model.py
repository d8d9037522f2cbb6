import gc
import os
import threading
import time

import pytest

import medgemini
from conftest import CXR, cli


def test_info_and_metadata(model, tiny_path):
    info = model.info
    md = model.metadata
    assert info.has_vision and info.has_text
    assert info.n_metadata == len(md)
    assert info.n_vocab == md["text.vocab_size"]
    assert info.name == md["general.name"] == model.meta("general.name")
    assert info.architecture == md["general.architecture"]
    assert isinstance(md["image.mean"], list) and len(md["image.mean"]) == 3
    assert model.meta("no.such.key", None) is None
    with pytest.raises(KeyError):
        model.meta("no.such.key")
    tensors = model.tensors()
    assert len(tensors) == info.n_tensors
    assert sum(t.n_elems for t in tensors) == info.n_params
    assert sum(t.n_bytes for t in tensors) == info.n_bytes
    t0 = model.tensor_info(tensors[0].name)
    assert t0 == tensors[0]
    assert len(model.tensor_bytes(t0.name)) == t0.n_bytes
    with pytest.raises(medgemini.NotFoundError) as e:
        model.tensor_info("no.such.tensor")
    assert e.value.status == 13
    # the C tool's listing agrees on the name
    assert info.name.encode() in cli("info", tiny_path)


def test_load_mmap_same_weights(model, tiny_path):
    # read (the default) and mapped (mmap=True) hold the same bytes
    with medgemini.Model.load(tiny_path, mmap=True) as mapped:
        for t in model.tensors()[:8]:
            assert mapped.tensor_bytes(t.name) == model.tensor_bytes(t.name)


def test_load_file_layout(tmp_path):
    # q4_0 decoder matrices may be rearranged at load (AVX512-VNNI): the
    # same text either way; file_layout=True keeps the stored bytes, which
    # the default load then either has too or refuses to hand out
    path = str(tmp_path / "q4.mgm")
    cli("mkmodel", "--shape", "tiny", "--no-vision", "--dtype", "q4_0", "-o", path)
    name = "text.blk.0.ffn_up"
    with medgemini.Model.load(path, file_layout=True) as kept, \
            medgemini.Model.load(path, mmap=True) as mapped, \
            medgemini.Model.load(path) as default:
        stored = mapped.tensor_bytes(name)
        assert kept.tensor_bytes(name) == stored
        assert default.tensor_info(name).dtype == kept.tensor_info(name).dtype
        try:
            assert default.tensor_bytes(name) == stored
        except medgemini.UnsupportedError as e:
            assert e.status == 7 and "file_layout" in e.message
        want = kept.generate("Describe the film.", max_tokens=12)
        assert default.generate("Describe the film.", max_tokens=12) == want


def test_load_errors(tmp_path):
    with pytest.raises(medgemini.FileAccessError) as e:
        medgemini.Model.load(str(tmp_path / "missing.mgm"))
    assert e.value.status == 4 and "missing.mgm" in e.value.message
    bad = tmp_path / "bad.mgm"
    bad.write_bytes(b"this is not a model file at all" * 10)
    with pytest.raises(medgemini.ModelFormatError) as e:
        medgemini.Model.load(bad)
    assert e.value.status == 5 and e.value.message


def test_tokenize_matches_cli(model, tiny_path):
    texts = ["hello world", "Findings: no effusion.", "<start_of_turn>user"]
    for text in texts:
        for bos, special in ((False, False), (True, False), (True, True)):
            args = ["tokenize", "-m", tiny_path] + (["--bos"] if bos else []) + \
                   (["--special"] if special else [])
            want = [int(x) for x in cli(*args, input=text.encode() + b"\n").split()]
            assert model.tokenize(text, bos=bos, special=special) == want
    ids = model.tokenize("hello world")
    assert model.detokenize(ids) == "hello world"
    tok = model.tokenizer
    assert tok.vocab_size == model.info.n_vocab
    assert tok.special("bos") == model.meta("tokenizer.bos_id")
    assert tok.special("eos") == model.meta("tokenizer.eos_id")
    assert tok.piece(ids[0]) is not None and tok.piece(10 ** 6) is None
    with pytest.raises(medgemini.InvalidArgumentError):
        model.detokenize([10 ** 6])
    # bytes that are not UTF-8 round-trip through byte tokens
    raw = b"\xff\xfeok"
    assert tok.detokenize_bytes(tok.tokenize(raw)) == raw


def test_report_and_vqa_match_cli(model, tiny_path):
    want = cli("report", CXR, "-m", tiny_path, "-n", "12", "--threads", "1").decode()
    got = model.report(CXR, max_tokens=12)
    assert got and want.rstrip("\n") == got
    # the same pixels through every input path give the same report
    img = medgemini.Image.open(CXR)
    assert model.report([img], max_tokens=12) == got
    assert model.report(open(CXR, "rb").read(), max_tokens=12) == got
    np = pytest.importorskip("numpy")
    assert model.report(medgemini.Image.from_array(img.to_array()), max_tokens=12) == got
    q = "Is there a pleural effusion?"
    want = cli("vqa", CXR, "-q", q, "-m", tiny_path, "-n", "10", "--threads", "1").decode()
    assert model.vqa(img, q, max_tokens=10) == want.rstrip("\n")
    assert model.vqa([img, img], q, max_tokens=4) != ""


def test_generate_matches_cli(model, tiny_path):
    want = cli("generate", "-m", tiny_path, "-n", "16", "--threads", "1", "Describe the film.")
    assert model.generate("Describe the film.", max_tokens=16) == want.decode().rstrip("\n")


def test_streaming(model):
    full = model.report(CXR, max_tokens=20)
    gen = model.report_stream(CXR, max_tokens=20)
    pieces = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as stop:
            assert stop.value == full
            break
    assert len(pieces) > 1 and "".join(pieces) == full
    q = "What is shown?"
    assert "".join(model.vqa_stream(CXR, q, max_tokens=8)) == model.vqa(CXR, q, max_tokens=8)
    assert "".join(model.generate_stream("hi", max_tokens=8)) == model.generate("hi", max_tokens=8)


def test_on_token_stop_and_exception(model):
    seen = []
    with pytest.raises(medgemini.Interrupted) as e:
        model.report(CXR, max_tokens=30, on_token=lambda p: seen.append(p) or len(seen) >= 3)
    # the C side's text may also hold bytes of a character not finished yet
    assert e.value.status == 10 and e.value.partial.startswith("".join(seen))
    assert len(seen) == 3

    def boom(piece):
        raise RuntimeError("from the callback")
    with pytest.raises(RuntimeError, match="from the callback"):
        model.generate("x", max_tokens=5, on_token=boom)
    with pytest.raises(TypeError):
        model.generate("x", no_such_param=1)


def test_closing_the_stream_interrupts(slow_path):
    with medgemini.Model.load(slow_path, threads=1) as m:
        gen = m.generate_stream("tell me", max_tokens=3000)
        first = next(gen)
        t0 = time.monotonic()
        gen.close()
        # 3000 tokens take ~30 s here; the interrupt stops it within a token
        assert time.monotonic() - t0 < 2.0
        assert first
        assert m.generate("again", max_tokens=2)  # the pooled context still works


def test_cancel_token_from_another_thread(slow_path):
    with medgemini.Model.load(slow_path, threads=1) as m:
        cancel = medgemini.Cancel()
        started = threading.Event()
        box = {}

        def work():
            try:
                m.generate("go", max_tokens=3000, cancel=cancel,
                           on_token=lambda p: started.set())
            except medgemini.Interrupted as e:
                box["e"] = e
        t = threading.Thread(target=work)
        t.start()
        assert started.wait(30)
        t0 = time.monotonic()
        cancel.cancel()
        t.join(10)
        assert not t.is_alive() and time.monotonic() - t0 < 2.0
        assert box["e"].partial
        with pytest.raises(medgemini.Interrupted):   # a cancelled token stays cancelled
            m.generate("go", cancel=cancel)


def test_context_interrupt_and_busy(slow_path):
    with medgemini.Model.load(slow_path, threads=1) as m, m.context(n_ctx=4096) as ctx:
        started = threading.Event()
        box = {}

        def work():
            try:
                box["text"] = ctx.generate("go", max_tokens=3000, on_token=lambda p: started.set())
            except medgemini.MedGeminiError as e:
                box["e"] = e
        t = threading.Thread(target=work)
        t.start()
        assert started.wait(30)
        with pytest.raises(medgemini.MisuseError):    # one thread at a time
            ctx.generate("other", max_tokens=1)
        ctx.interrupt()                               # mg_context_interrupt only
        t.join(10)
        assert not t.is_alive()
        assert isinstance(box.get("e"), medgemini.Interrupted), box
        assert ctx.last_error[0] == 10
        assert ctx.generate("ok", max_tokens=2) is not None


def test_context_full_keeps_partial(slow_path):
    with medgemini.Model.load(slow_path, threads=1) as m, m.context(n_ctx=40) as ctx:
        with pytest.raises(medgemini.ContextFullError) as e:
            ctx.generate("fill it", max_tokens=1000)
        assert e.value.status == 11 and e.value.partial


def test_eval_logits_agree_with_greedy(model):
    np = pytest.importorskip("numpy")
    ids = model.tokenize("the heart size is", bos=True)
    with model.context() as ctx:
        logits = ctx.eval(ids)
        assert logits.shape == (len(ids), model.info.n_vocab)
        assert ctx.n_tokens == len(ids)
        ctx.reset()
        assert ctx.n_tokens == 0
        text = ctx.generate_ids(ids, max_tokens=1)
    assert text == model.detokenize([int(np.argmax(logits[-1]))])


def test_context_kv_bf16(model):
    np = pytest.importorskip("numpy")
    ids = model.tokenize("the heart size is normal. no effusion.", bos=True)
    with model.context() as ctx:
        a = ctx.eval(ids)
    with model.context(kv_bf16=True) as ctx:
        b = ctx.eval(ids)
        report = ctx.report(CXR, max_tokens=4)
    assert isinstance(report, str)
    # keys and values rounded to bf16: close to the f32 cache, not equal
    # (bench/prefill_accuracy.py --kv-bf16: max |dlogit| / std 0.027 on
    # average over report positions)
    rel = np.abs(a - b).max() / a.std()
    assert 0 < rel < 0.25
    assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.8


def test_context_logits(model):
    np = pytest.importorskip("numpy")
    ids = model.tokenize("the heart size is", bos=True)
    with model.context() as ctx:
        with pytest.raises(medgemini.InvalidArgumentError):
            ctx.logits()                      # nothing evaluated yet
        rows = ctx.eval(ids)
        assert np.array_equal(ctx.logits(), rows[-1])
        # a VQA call with max_tokens=0 reads the prompt and stops: the
        # logits are those of the answer's first token, whose argmax is
        # what a one-token answer says
        assert ctx.vqa(CXR, "Is the heart enlarged?", max_tokens=0) == ""
        first = ctx.logits()
        one = ctx.vqa(CXR, "Is the heart enlarged?", max_tokens=1)
        assert one == model.detokenize([int(np.argmax(first))], skip_special=True)
        ctx.reset()
        with pytest.raises(medgemini.InvalidArgumentError):
            ctx.logits()


def test_context_tokens(model):
    ids = model.tokenize("the heart size is", bos=True)
    with model.context() as ctx:
        assert ctx.tokens() == []
        ctx.eval(ids, logits=False)
        assert ctx.tokens() == ids
        # a report holds the image as tokens_per_image image tokens between
        # the image markers
        ctx.report(CXR, max_tokens=0)
        got = ctx.tokens()
        tok = model.tokenizer
        n = model.meta("vision.tokens_per_image")
        start = got.index(tok.special("start_of_image"))
        assert got[start + 1:start + 1 + n] == [tok.special("image")] * n
        assert got[start + 1 + n] == tok.special("end_of_image")
        assert len(got) == ctx.n_tokens and got[0] == tok.special("bos")
        ctx.reset()
        assert ctx.tokens() == []
    ctx.close()
    with pytest.raises(medgemini.MisuseError):
        ctx.tokens()


def test_shared_model_across_threads(model):
    want = model.report(CXR, max_tokens=10)
    qs = ["a?", "b?", "c?"]
    wants = {q: model.vqa(CXR, q, max_tokens=6) for q in qs}
    results, errors = [], []

    def work(i):
        try:
            results.append(model.report(CXR, max_tokens=10))
            q = qs[i % 3]
            results.append(wants[q] == model.vqa(CXR, q, max_tokens=6))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results.count(want) == 6 and results.count(True) == 6


def test_close_and_finalizer(tiny_path):
    m = medgemini.Model.load(tiny_path)
    tok = m.tokenizer
    m.close()
    m.close()
    assert m.closed and tok.closed
    for call in (lambda: m.report(CXR), lambda: m.tokenize("x"), lambda: m.metadata,
                 lambda: m.context()):
        with pytest.raises(medgemini.MisuseError) as e:
            call()
        assert e.value.status == 2
    m2 = medgemini.Model.load(tiny_path)
    m2.report(CXR, max_tokens=1)     # leaves a context in the pool
    fin = m2._finalizer
    del m2
    gc.collect()
    assert not fin.alive
    img = medgemini.Image.open(CXR)
    fin = img._finalizer
    del img
    gc.collect()
    assert not fin.alive


def test_close_while_another_thread_generates(slow_path):
    m = medgemini.Model.load(slow_path, threads=1)
    started = threading.Event()
    box = {}

    def work():
        try:
            box["text"] = m.generate("go", max_tokens=40, on_token=lambda p: started.set())
        except Exception as exc:  # pragma: no cover
            box["e"] = exc
    t = threading.Thread(target=work)
    t.start()
    assert started.wait(30)
    m.close()              # deferred until the running call returns
    t.join(30)
    assert "text" in box, box
    with pytest.raises(medgemini.MisuseError):
        m.generate("x")


def test_draft_gives_the_same_text(model):
    # speculative decoding (draft_ngram=True) is exact for greedy decoding;
    # when sampling it keeps the distribution (another text for a seed than
    # without it, the same one every time)
    with model.context(threads=1) as a, model.context(threads=1) as b:
        for prompt in ("The heart", "a b c a b c a b c", "Lungs: clear. Heart: normal. Lungs:"):
            want = a.generate(prompt, max_tokens=40)
            assert b.generate(prompt, max_tokens=40, draft_ngram=True) == want
            once = b.generate(prompt, max_tokens=20, temperature=0.9, seed=7, draft_ngram=True)
            assert b.generate(prompt, max_tokens=20, temperature=0.9, seed=7, draft_ngram=True) == once


def test_draft_model(model, tmp_path):
    # a draft model (a Context on a smaller model with the same tokenizer)
    # changes nothing but speed for greedy decoding
    small = str(tmp_path / "draft.mgm")
    cli("mkmodel", "--shape", "tiny", "--dtype", "q4_0", "--seed", "9", "--layers", "1", "-o", small)
    other = str(tmp_path / "other.mgm")
    cli("mkmodel", "--shape", "tiny", "--vocab", "600", "-o", other)
    with medgemini.Model.load(small, threads=1) as dm, dm.context() as d, \
            model.context(threads=1) as a, model.context(threads=1) as b, \
            model.context(threads=1) as same:
        for prompt in ("The heart", "a b c a b c a b c", "Lungs: clear. Heart: normal. Lungs:"):
            want = a.generate(prompt, max_tokens=30)
            assert b.generate(prompt, max_tokens=30, draft=d) == want
            assert b.generate(prompt, max_tokens=30, draft=d, n_draft=2) == want
            assert b.generate(prompt, max_tokens=30, draft=same) == want
            assert model.generate(prompt, max_tokens=30, draft=d) == want
            once = b.generate(prompt, max_tokens=20, temperature=0.9, seed=3, draft=d)
            assert b.generate(prompt, max_tokens=20, temperature=0.9, seed=3, draft=d) == once
        # the draft context follows the answer: its tokens are the prompt's text
        assert d.n_tokens > 0
        with pytest.raises(medgemini.InvalidArgumentError, match="generating context"):
            b.generate("x", max_tokens=4, draft=b)
        with pytest.raises(TypeError):
            b.generate("x", max_tokens=4, draft=dm)
        with medgemini.Model.load(other) as om, om.context() as o:
            with pytest.raises(medgemini.InvalidArgumentError, match="vocabulary"):
                b.generate("x", max_tokens=4, draft=o)



def test_context_errors_say_why(model):
    with pytest.raises(medgemini.InvalidArgumentError) as e:
        model.context(n_ctx=10 ** 8)
    assert "context length" in str(e.value)
