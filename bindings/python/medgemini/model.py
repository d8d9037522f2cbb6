"""Models, contexts, tokenizers, generation, reports and VQA."""
import codecs
import contextlib
import ctypes
import os
import queue
import threading
from array import array
from collections import namedtuple
from ctypes import byref, c_char_p, c_double, c_int32, c_int64, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass

from . import _lib
from ._handle import HandleState, Owned
from .errors import (E_BUFFER_TOO_SMALL, E_INTERRUPTED, E_MISUSE, E_UNSUPPORTED, Interrupted,
                     InvalidArgumentError, MisuseError, UnsupportedError,
                     make_error)
from .image import Image, as_image
from .volume import Volume, slice_params

try:
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

LOAD_VERIFY_CHECKSUMS = 0x1
LOAD_NO_MMAP = 0x2
LOAD_MMAP = 0x4
LOAD_FILE_LAYOUT = 0x8
CONTEXT_KV_BF16 = 0x1
CONTEXT_NO_REUSE = 0x2
TOKENIZE_ADD_BOS = 0x1
TOKENIZE_PARSE_SPECIAL = 0x2
DETOKENIZE_SKIP_SPECIAL = 0x1
GEN_RAW_PROMPT = 0x1
GEN_DRAFT_NGRAM = 0x2
SPECIAL_TOKENS = {"bos": 0, "eos": 1, "pad": 2, "unk": 3, "start_of_turn": 4,
                  "end_of_turn": 5, "start_of_image": 6, "end_of_image": 7,
                  "image": 8}


def _enc(s):
    return None if s is None else (s if isinstance(s, bytes) else str(s).encode("utf-8"))


# ---------------------------------------------------------------- tokenizer

class Tokenizer(Owned):
    """A byte-pair tokenizer: model.tokenizer (borrowed from the model, which
    it keeps open) or Tokenizer.load_json(path) for a Hugging Face
    tokenizer.json. Immutable and usable from any number of threads."""

    def __init__(self, handle=None, model=None):
        self._model = model
        if handle is not None:
            self._own(HandleState(handle, _lib.mg_tokenizer_free, "tokenizer"))

    @classmethod
    def load_json(cls, path):
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        st = _lib.mg_tokenizer_load_json(byref(out), os.fsencode(path), err, _lib.ERRBUF)
        if st:
            raise make_error(st, err.value.decode("utf-8", "replace"))
        return cls(handle=out.value)

    def close(self):
        if self._model is None:
            super().close()

    @property
    def closed(self):
        return self._model.closed if self._model is not None else super().closed

    @contextlib.contextmanager
    def _tok(self):
        if self._model is None:
            with self._borrow() as h:
                yield h
            return
        with self._model._borrow() as mh:
            t = _lib.mg_model_tokenizer(mh)
            if not t:
                raise UnsupportedError("the model has no tokenizer")
            yield t

    @property
    def vocab_size(self):
        with self._tok() as t:
            return _lib.mg_tokenizer_vocab_size(t)

    def piece(self, token_id):
        """The stored piece of a token id (bytes), or None when out of range."""
        with self._tok() as t:
            return _lib.mg_tokenizer_piece(t, int(token_id))

    def special(self, role):
        """The id of a special token ('bos', 'eos', 'end_of_turn', 'image',
        ...), or None when the tokenizer has none."""
        if role not in SPECIAL_TOKENS:
            raise InvalidArgumentError("unknown special token role %r" % (role,))
        with self._tok() as t:
            v = _lib.mg_tokenizer_special(t, SPECIAL_TOKENS[role])
        return None if v < 0 else v

    def tokenize(self, text, bos=False, special=False):
        """Token ids of text (str or bytes), as a list of ints."""
        data = _enc(text)
        flags = (TOKENIZE_ADD_BOS if bos else 0) | (TOKENIZE_PARSE_SPECIAL if special else 0)
        n = c_size_t()
        cap = len(data) + 2
        with self._tok() as t:
            while True:
                ids = (c_int32 * cap)()
                st = _lib.mg_tokenize(ids, cap, byref(n), t, data, len(data), flags)
                if st == E_BUFFER_TOO_SMALL and n.value > cap:
                    cap = n.value
                    continue
                break
        if st:
            raise make_error(st, "tokenize failed")
        return list(ids[:n.value])

    def detokenize_bytes(self, ids, skip_special=False):
        ids = list(ids)
        arr = (c_int32 * max(len(ids), 1))(*ids)
        flags = DETOKENIZE_SKIP_SPECIAL if skip_special else 0
        n = c_size_t()
        with self._tok() as t:
            st = _lib.mg_detokenize(None, 0, byref(n), t, arr, len(ids), flags)
            if st not in (0, E_BUFFER_TOO_SMALL):
                raise make_error(st, "detokenize failed")
            buf = ctypes.create_string_buffer(n.value + 1)
            st = _lib.mg_detokenize(buf, n.value + 1, byref(n), t, arr, len(ids), flags)
        if st:
            raise make_error(st, "detokenize failed")
        return buf.raw[:n.value]

    def detokenize(self, ids, skip_special=False):
        """Text of token ids (invalid UTF-8 replaced by U+FFFD)."""
        return self.detokenize_bytes(ids, skip_special).decode("utf-8", "replace")


# ------------------------------------------------------------- cancellation

class Cancel:
    """A cancellation token: pass it as cancel=... to any generation call and
    call cancel() from any thread to stop that call (it raises Interrupted,
    whose .partial holds the text made so far). Once cancelled it stays
    cancelled; calls started with it fail at once. The running call is
    stopped through mg_context_interrupt and, should the request land just
    before the C call starts (when the library drops it), at the next token
    by the token callback, which checks the token too."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cancelled = False
        self._ctxs = set()

    def cancel(self):
        with self._lock:
            self._cancelled = True
            for h in self._ctxs:
                _lib.mg_context_interrupt(h)

    @property
    def cancelled(self):
        return self._cancelled

    def _attach(self, h):
        with self._lock:
            self._ctxs.add(h)
            return self._cancelled

    def _detach(self, h):
        with self._lock:
            self._ctxs.discard(h)


_STAGES = {_lib.MG_STAGE_ENCODE: "encode", _lib.MG_STAGE_PREFILL: "prefill",
           _lib.MG_STAGE_GENERATE: "generate"}
_PROGRESS_FIELDS = ("block", "n_blocks", "step", "n_steps", "done", "total",
                    "reused", "cached", "seconds")
# (name, end offset) of each field after stage: a field past the library's
# struct_size (an older library) reads as 0
_PROGRESS_LAYOUT = tuple((f, getattr(_lib.mg_progress, f).offset +
                          getattr(_lib.mg_progress, f).size) for f in _PROGRESS_FIELDS)


class Progress(namedtuple("Progress", ("stage",) + _PROGRESS_FIELDS)):
    """One progress event of a generating call (an immutable namedtuple),
    passed to the progress= callable of report(), vqa(), chat(), ...:

    stage: "encode" (an encoder reads one block: an image, a volume slice,
    a score set), "prefill" (the text decoder reads the prompt) or
    "generate" (the answer's tokens are made);
    block, n_blocks: encode: the block's index (0-based) among the
    prompt's n_blocks blocks;
    step, n_steps: encode: encoder steps done of n_steps; prefill: decoder
    layers done for the current batch of prompt tokens;
    done, total: prefill: prompt tokens read of total to read; generate:
    tokens made of max_tokens;
    reused: prompt tokens kept from the context's sequence (not read
    again); cached: blocks taken from the context's encoder-output cache
    (not encoded again); seconds: time since the call began.

    Events come when each stage and each block begins, then at most every
    100 ms; no final event is promised, so a stage may end before done
    reaches total."""
    __slots__ = ()


def _read_progress(ptr):
    p = ptr.contents
    size = p.struct_size
    stage = p.stage
    return Progress(_STAGES.get(stage, "stage %d" % stage),
                    *[getattr(p, f) if end <= size else 0 for f, end in _PROGRESS_LAYOUT])


_GEN_FIELDS = ("max_tokens", "temperature", "top_k", "top_p",
               "repetition_penalty", "seed", "system_prompt", "instruction")


class _GenCall:
    """mg_gen_params for one call plus everything it must keep alive."""

    def __init__(self, params, on_token=None, cancels=(), progress=None):
        p = _lib.mg_gen_params()
        _lib.mg_gen_params_init(byref(p))
        self._keep = []
        self.draft = None
        for key, value in params.items():
            if key in ("system_prompt", "instruction"):
                if value is not None:
                    v = _enc(value)
                    self._keep.append(v)
                    setattr(p, key, v)
            elif key in _GEN_FIELDS:
                if value is not None:
                    setattr(p, key, value)
            elif key == "stop":
                if value:
                    if isinstance(value, (str, bytes)):
                        value = [value]
                    arr = (c_char_p * len(value))(*[_enc(s) for s in value])
                    self._keep.append(arr)
                    p.stop, p.n_stop = arr, len(value)
            elif key == "raw_prompt":
                if value:
                    p.flags |= GEN_RAW_PROMPT
            elif key == "draft_ngram":
                # speculative decoding by n-gram lookup: greedy gives the same
                # text, sampling the same distribution (another text per seed)
                if value:
                    p.flags |= GEN_DRAFT_NGRAM
            elif key == "draft":
                # speculative decoding with a draft model: a Context on a
                # smaller model with the same tokenizer, held for the call
                if value is not None:
                    if not isinstance(value, Context):
                        raise TypeError("draft must be a Context (on a draft model), got %r"
                                        % type(value).__name__)
                    self.draft = value
            elif key == "n_draft":
                if value is not None:
                    if int(value) < 0:
                        raise InvalidArgumentError("n_draft must be >= 0, got %r" % (value,))
                    p.n_draft = int(value)
            else:
                raise TypeError("unknown generation parameter %r" % key)
        if progress is not None and not callable(progress):
            raise TypeError("progress must be a callable, got %r" % type(progress).__name__)
        self.on_token = on_token
        self.progress = progress
        self.cancels = [c for c in cancels if c is not None]
        self.exc = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if on_token is not None or self.cancels:
            self._cb = _lib.mg_token_callback(self._callback)
            p.on_token = self._cb
        if progress is not None or self.cancels:
            # with cancellation tokens too: the first event comes before
            # the encoders run, so a cancel() that lands just before the C
            # call starts stops it there rather than at the first token
            self._pcb = _lib.mg_progress_callback(self._progress_callback)
            p.on_progress = self._pcb
        self.params = p

    def _progress_callback(self, _user, ptr):
        # runs on the calling thread inside the C call: nothing may escape
        try:
            if self.exc is not None or any(c.cancelled for c in self.cancels):
                return 1
            if self.progress is not None and self.progress(_read_progress(ptr)):
                return 1
            return 0
        except BaseException as exc:  # re-raised after the C call returns
            self.exc = exc
            return 1

    def _callback(self, _user, piece, n, _token):
        try:
            if self.exc is not None or any(c.cancelled for c in self.cancels):
                return 1
            if self.on_token is not None:
                text = self._decoder.decode(ctypes.string_at(piece, n) if n else b"")
                if text and self.on_token(text):
                    return 1
            return 0
        except BaseException as exc:  # re-raised after the C call returns
            self.exc = exc
            return 1

    def flush(self):
        rest = self._decoder.decode(b"", final=True)
        if rest and self.on_token is not None:
            self.on_token(rest)

    def run(self, ctx, fn, *args):
        """Calls fn(&out, ctx, *args, &params); returns the text or raises."""
        return self.invoke(ctx, lambda out, params: fn(out, ctx, *args, params))

    def invoke(self, ctx, call):
        """Calls call(&out, &params) on the context ctx with the
        cancellation tokens attached; returns the text or raises."""
        for c in self.cancels:
            if c._attach(ctx):
                for d in self.cancels:
                    d._detach(ctx)
                raise Interrupted("cancelled before the call started", E_INTERRUPTED, "")
        out = c_void_p()
        try:
            with contextlib.ExitStack() as stack:
                if self.draft is not None:
                    if self.draft._state is not None and self.draft._state.handle == ctx:
                        raise InvalidArgumentError("the draft context is the generating context")
                    try:
                        self.params.draft = stack.enter_context(self.draft._acquire())
                    except MisuseError as exc:
                        raise InvalidArgumentError("draft context: %s" % exc) from None
                st = call(byref(out), byref(self.params))
        finally:
            self.params.draft = None
            for c in self.cancels:
                c._detach(ctx)
        text = _lib.take_string(out)
        if self.exc is not None:
            raise self.exc
        if st:
            msg = _lib.mg_context_errmsg(ctx)
            raise make_error(st, msg.decode("utf-8", "replace") if msg else "", partial=text)
        try:
            self.flush()
        except BaseException:
            raise
        return text


_DONE = object()


_STOPPED = object()


def _stream(acquire, fn, prepare, params, cancel, progress=None):
    """Runs a generation call in a worker thread and yields its text pieces.
    Closing the generator interrupts the call; its return value is the text.
    Progress events travel through the same queue, so progress() runs on
    the thread that iterates the generator, in order with the pieces; a
    truthy return or an exception there interrupts the call (Interrupted,
    or that exception, is raised by the generator)."""
    q = queue.SimpleQueue()
    own = Cancel()
    result = {}
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a callable, got %r" % type(progress).__name__)

    def on_token(piece):
        q.put(piece)

    call = _GenCall(params, on_token=on_token, cancels=(cancel, own),
                    progress=q.put if progress is not None else None)

    def worker():
        try:
            with prepare() as args, acquire() as ctx:
                result["text"] = call.run(ctx, fn, *args)
        except BaseException as exc:
            result["exc"] = exc
        finally:
            q.put(_DONE)

    t = threading.Thread(target=worker, name="medgemini-stream", daemon=True)
    t.start()
    stop = None  # _STOPPED, or the exception progress() raised
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            if isinstance(item, Progress):
                if stop is None:
                    try:
                        if progress(item):
                            stop = _STOPPED
                    except BaseException as exc:
                        stop = exc
                    if stop is not None:
                        own.cancel()
            elif stop is None:
                yield item
    finally:
        if t.is_alive():
            own.cancel()
        t.join()
    if stop is not None and stop is not _STOPPED:
        raise stop
    if "exc" in result:
        raise result["exc"]
    if stop is _STOPPED:  # the call ended before the request reached it
        raise Interrupted("stopped by the progress callback", E_INTERRUPTED, result["text"])
    return result["text"]


# ------------------------------------------------------------------ images

@contextlib.contextmanager
def _image_array(images, optional=False):
    """Borrows the handles of images (one or a sequence of Images, paths,
    bytes or arrays) as an mg_image* array for the length of a call.
    optional: None means no images."""
    if images is None and optional:
        images = []
    elif not isinstance(images, (list, tuple)):
        images = [images]
    made, held = [], []
    with contextlib.ExitStack() as stack:
        try:
            for obj in images:
                img, owned = as_image(obj)
                if owned:
                    made.append(img)
                held.append(stack.enter_context(img._borrow()))
            arr = (c_void_p * max(len(held), 1))(*held)
            yield arr, len(held)
        finally:
            stack.close()
            for img in made:
                img.close()


def _volume_slices(volume, max_slices, window, as_stored):
    if not isinstance(volume, Volume):
        raise TypeError("expected a Volume, got %r" % type(volume).__name__)
    return slice_params(max_slices, window, as_stored)


# ----------------------------------------------------------------- contexts

def _context_params(threads, n_ctx, seed, kv_bf16=False, reuse=True, batch=None):
    p = _lib.mg_context_params()
    _lib.mg_context_params_init(byref(p))
    p.n_threads = int(threads or 0)
    p.n_ctx = int(n_ctx or 0)
    p.seed = int(seed or 0)
    p.flags = (CONTEXT_KV_BF16 if kv_bf16 else 0) | (0 if reuse else CONTEXT_NO_REUSE)
    p.batch = batch
    return p


def _new_context(model_handle, threads, n_ctx, seed, kv_bf16=False, reuse=True, batch=None):
    out = c_void_p()
    p = _context_params(threads, n_ctx, seed, kv_bf16, reuse, batch)
    st = _lib.mg_context_new(byref(out), model_handle, byref(p))
    if st:
        raise make_error(st, "cannot create a context: " +
                         (_lib.mg_last_error() or b"").decode("utf-8", "replace"))
    return out.value


class _Generating:
    """Generation methods shared by Model (pooled contexts) and Context."""

    def _acquire(self):
        raise NotImplementedError

    def _call(self, fn, args, params, on_token=None, cancel=None, progress=None):
        call = _GenCall(params, on_token=on_token, cancels=(cancel,), progress=progress)
        with self._acquire() as ctx:
            return call.run(ctx, fn, *args)

    def generate(self, prompt, on_token=None, cancel=None, progress=None, **params):
        """Text generated from a prompt (wrapped in the chat turn unless
        raw_prompt=True). Parameters: max_tokens, temperature, top_k, top_p,
        repetition_penalty, seed, stop (a string or list of strings),
        system_prompt, raw_prompt, draft_ngram (speculative decoding by n-gram
        lookup: greedy gives the same text, sampling the same distribution
        but another text for a seed), draft (a Context on a smaller model
        with the same tokenizer that drafts the tokens instead, held by the
        call; its sequence follows the prompt's text and the answer) and
        n_draft (most tokens per draft, 0 = 4); on_token(piece) is called with each piece
        of text (return True to stop); cancel is a Cancel token;
        progress(p) is called with a Progress event as each stage and
        block begins and then at most every 100 ms (return True to stop:
        Interrupted; an exception it raises stops the call and is raised
        again once the call has returned)."""
        return self._call(_lib.mg_generate, (_enc(prompt),), params, on_token, cancel, progress)

    def generate_stream(self, prompt, cancel=None, progress=None, **params):
        """As generate(), as a generator of text pieces (progress() runs on
        the thread iterating it)."""
        return _stream(self._acquire, _lib.mg_generate,
                       lambda: contextlib.nullcontext((_enc(prompt),)), params, cancel, progress)

    def generate_ids(self, ids, on_token=None, cancel=None, progress=None, **params):
        """Generation from token ids used as they are."""
        ids = list(ids)
        arr = (c_int32 * max(len(ids), 1))(*ids)
        return self._call(_lib.mg_generate_ids, (arr, len(ids)), params, on_token, cancel,
                          progress)

    def report(self, images, on_token=None, cancel=None, progress=None, **params):
        """A radiology report for one study: images is one image or a list
        (Image objects, paths, bytes or numpy arrays). Extra parameters as
        generate(), plus instruction."""
        with _image_array(images) as (arr, n):
            return self._call(_lib.mg_generate_report, (arr, n), params, on_token, cancel,
                              progress)

    def report_stream(self, images, cancel=None, progress=None, **params):
        """As report(), as a generator of text pieces; closing it stops the
        generation. The generator's return value is the whole text."""
        @contextlib.contextmanager
        def prepare():
            with _image_array(images) as (arr, n):
                yield (arr, n)
        return _stream(self._acquire, _lib.mg_generate_report, prepare, params, cancel, progress)

    def vqa(self, images, question, on_token=None, cancel=None, progress=None, **params):
        """The answer to a question about one or more images."""
        with _image_array(images) as (arr, n):
            return self._call(_lib.mg_vqa, (arr, n, _enc(question)), params, on_token, cancel,
                              progress)

    def vqa_stream(self, images, question, cancel=None, progress=None, **params):
        """As vqa(), as a generator of text pieces."""
        @contextlib.contextmanager
        def prepare():
            with _image_array(images) as (arr, n):
                yield (arr, n, _enc(question))
        return _stream(self._acquire, _lib.mg_vqa, prepare, params, cancel, progress)

    def report_volume(self, volume, on_token=None, cancel=None, max_slices=None,
                      window=None, as_stored=False, progress=None, **params):
        """A report for a CT or MR Volume, read as MedGemma 1.5 reads one:
        the slices of volume.slices(max_slices, window, as_stored) (at most
        85 by default), each through the image encoder, labelled "SLICE 1",
        "SLICE 2", ... in one user turn. The context must hold slices x the
        model's tokens per image (ContextFullError otherwise, before any
        encoding). Extra parameters as report(), instruction included."""
        sp = _volume_slices(volume, max_slices, window, as_stored)
        with volume._borrow() as vh:
            return self._call(_lib.mg_generate_report_volume, (vh, byref(sp)), params,
                              on_token, cancel, progress)

    def report_volume_stream(self, volume, cancel=None, max_slices=None, window=None,
                             as_stored=False, progress=None, **params):
        """As report_volume(), as a generator of text pieces."""
        sp = _volume_slices(volume, max_slices, window, as_stored)

        @contextlib.contextmanager
        def prepare():
            with volume._borrow() as vh:
                yield (vh, byref(sp))
        return _stream(self._acquire, _lib.mg_generate_report_volume, prepare, params, cancel,
                       progress)

    def vqa_volume(self, volume, question, on_token=None, cancel=None, max_slices=None,
                   window=None, as_stored=False, progress=None, **params):
        """The answer to a question about a CT or MR Volume (slices as in
        report_volume())."""
        sp = _volume_slices(volume, max_slices, window, as_stored)
        with volume._borrow() as vh:
            return self._call(_lib.mg_vqa_volume, (vh, _enc(question), byref(sp)), params,
                              on_token, cancel, progress)

    def vqa_volume_stream(self, volume, question, cancel=None, max_slices=None, window=None,
                          as_stored=False, progress=None, **params):
        """As vqa_volume(), as a generator of text pieces."""
        sp = _volume_slices(volume, max_slices, window, as_stored)

        @contextlib.contextmanager
        def prepare():
            with volume._borrow() as vh:
                yield (vh, _enc(question), byref(sp))
        return _stream(self._acquire, _lib.mg_vqa_volume, prepare, params, cancel, progress)

    def prs_predict(self, scores, question, on_token=None, cancel=None, progress=None,
                    **params):
        """Polygenic risk prediction with a model that has a genomics
        encoder (metadata genome.*; UnsupportedError otherwise). scores is
        a dict {name: value} or a (names, values) pair, named
        "<trait>_<threshold>" as the model's genome.traits and
        genome.thresholds; the model lays them out as its score image
        (Model.score_image), reads it as one image block and answers the
        question after it. Names it does not know are ignored, scores it
        knows but are not given (or NaN) count as the reference mean; a
        name given twice is an InvalidArgumentError. Returns (text, risk):
        the generated answer (generation parameters as generate()) and
        P(yes) / (P(yes) + P(no)) from the scores of the answer's first
        token (the model's genome.answer_yes and genome.answer_no words)."""
        names, vals, n = _score_arrays(scores)
        risk = c_double(float("nan"))
        q = _enc(question)
        call = _GenCall(params, on_token=on_token, cancels=(cancel,), progress=progress)
        with self._acquire() as ctx:
            text = call.invoke(ctx, lambda out, p: _lib.mg_prs_predict(
                out, byref(risk), ctx, vals, names, n, q, p))
        return text, risk.value

    def prs_risk(self, scores, question, cancel=None, progress=None):
        """The risk of prs_predict() alone, as a float in (0, 1), without
        generating text (the context's logits() are then those of the
        answer's first token)."""
        names, vals, n = _score_arrays(scores)
        risk = c_double(float("nan"))
        q = _enc(question)
        call = _GenCall({}, cancels=(cancel,), progress=progress)
        with self._acquire() as ctx:
            call.invoke(ctx, lambda out, p: _lib.mg_prs_predict(
                None, byref(risk), ctx, vals, names, n, q, p))
        return risk.value

    def prs_predict_batch(self, scores, names, questions, cancel=None):
        """Risks for many individuals and questions: scores is a matrix,
        one row per individual and one column per name (a list of rows or
        a 2-D numpy array); questions a list of strings (or one string).
        Each individual's score block is read once and shared by its
        questions. Returns risk[i][q], as prs_risk() computes it: a numpy
        float64 array of shape (individuals, questions) when numpy is
        installed, else a list of lists."""
        names = [_enc(k) for k in names]
        if isinstance(questions, (str, bytes)):
            questions = [questions]
        qs = [_enc(q) for q in questions]
        k = len(names)
        if _np is not None and isinstance(scores, _np.ndarray):
            mat = _np.ascontiguousarray(scores, dtype=_np.float64)
            if mat.ndim != 2 or mat.shape[1] != k:
                raise InvalidArgumentError("scores must be a matrix of %d columns, got shape %s"
                                           % (k, mat.shape))
            n_ind = mat.shape[0]
            flat = mat.reshape(-1).tolist()
        else:
            rows = [list(r) for r in scores]
            for i, r in enumerate(rows):
                if len(r) != k:
                    raise InvalidArgumentError("row %d of scores has %d values for %d names"
                                               % (i, len(r), k))
            n_ind = len(rows)
            flat = [float(v) for r in rows for v in r]
        if not n_ind or not qs or not k:
            raise InvalidArgumentError("no individuals, names or questions")
        vals = (c_double * len(flat))(*flat)
        arr = (c_char_p * k)(*names)
        qarr = (c_char_p * len(qs))(*qs)
        risk = (c_double * (n_ind * len(qs)))()
        call = _GenCall({}, cancels=(cancel,))
        with self._acquire() as ctx:
            call.invoke(ctx, lambda out, p: _lib.mg_prs_predict_batch(
                risk, ctx, vals, n_ind, arr, k, qarr, len(qs)))
        nq = len(qs)
        if _np is not None:
            return _np.ctypeslib.as_array(risk).reshape(n_ind, nq).copy()
        return [list(risk[i * nq:(i + 1) * nq]) for i in range(n_ind)]


def _score_arrays(scores):
    """(names, values, n) as C arrays from a dict {name: value} or a
    (names, values) pair."""
    if isinstance(scores, dict):
        names, values = list(scores.keys()), list(scores.values())
    else:
        try:
            names, values = scores
        except (TypeError, ValueError):
            raise TypeError("scores must be a dict {name: value} or a (names, values) pair") from None
        names, values = list(names), list(values)
    if len(names) != len(values):
        raise InvalidArgumentError("%d score names but %d values" % (len(names), len(values)))
    n = len(names)
    vals = (c_double * max(n, 1))(*[float(v) for v in values])
    arr = (c_char_p * max(n, 1))(*[_enc(k) for k in names])
    return arr, vals, n


class Context(Owned, _Generating):
    """A generation context of its own (KV cache and scratch buffers): the
    low-level interface (eval, reset, n_tokens) and an interrupt() that any
    thread may call, and chat(), whose conversation it holds. One thread at
    a time: a call made while another thread runs one on the same context
    raises MisuseError. Model.context() makes one; Model's own methods use a
    pool of contexts instead."""

    def __init__(self, model, threads=None, n_ctx=None, seed=None, kv_bf16=None, reuse=None):
        if threads is None:
            threads = model._threads
        if n_ctx is None:
            n_ctx = model._n_ctx
        if kv_bf16 is None:
            kv_bf16 = model._kv_bf16
        if reuse is None:
            reuse = model._reuse
        with model._borrow() as mh:
            h = _new_context(mh, threads, n_ctx, seed, kv_bf16, reuse, model._state.batch)
        self.model = model
        self._reuse = bool(reuse)
        self._busy = threading.Lock()
        self._own(HandleState(h, _lib.mg_context_free, "context"))

    @contextlib.contextmanager
    def _acquire(self):
        if not self._busy.acquire(blocking=False):
            raise MisuseError("the context is in use by another thread")
        try:
            with self._borrow() as h:
                yield h
        finally:
            self._busy.release()

    @property
    def reuse(self):
        """Whether the context keeps what its last call read (prefix reuse
        and the encoder-output cache); False for reuse=False
        (MG_CONTEXT_NO_REUSE). The texts are the same either way."""
        return self._reuse

    def chat(self, message, images=None, on_token=None, cancel=None, progress=None, **params):
        """The model's answer to the next user turn of a conversation held
        in this context. The first call (on a new context, after reset(),
        or after any other generating call on it) opens the conversation
        as vqa() would (system prompt, images, message); each later call
        appends the next turn (message, plus images if any: one image or a
        list, as vqa()) after the previous answer and reads only that turn.
        When the context fills, the oldest exchanges but the first are
        dropped. Generation parameters, on_token, cancel and progress as
        vqa(). UnsupportedError on a context made with reuse=False."""
        with _image_array(images, optional=True) as (arr, n):
            return self._call(_lib.mg_chat, (arr, n, _enc(message)), params, on_token, cancel,
                              progress)

    def chat_stream(self, message, images=None, cancel=None, progress=None, **params):
        """As chat(), as a generator of text pieces (its return value is the
        whole answer; closing it interrupts the answer, which the
        conversation then keeps as cut)."""
        @contextlib.contextmanager
        def prepare():
            with _image_array(images, optional=True) as (arr, n):
                yield (arr, n, _enc(message))
        return _stream(self._acquire, _lib.mg_chat, prepare, params, cancel, progress)

    def interrupt(self):
        """Asks the call running on this context (if any) to stop; it raises
        Interrupted within one token. Callable from any thread."""
        with self._borrow() as h:
            _lib.mg_context_interrupt(h)

    def reset(self):
        """Empties the context's token sequence (KV cache) and ends a chat
        conversation; the encoder-output cache is kept."""
        with self._acquire() as h:
            st = _lib.mg_context_reset(h)
            if st:
                raise make_error(st, (_lib.mg_context_errmsg(h) or b"").decode())

    @property
    def n_tokens(self):
        with self._borrow() as h:
            return _lib.mg_context_n_tokens(h)

    def eval(self, ids, logits=True):
        """Appends tokens to the sequence; with logits=True returns their
        logits as a numpy float32 array of shape (len(ids), n_vocab)."""
        ids = list(ids)
        arr = (c_int32 * max(len(ids), 1))(*ids)
        n_vocab = self.model.info.n_vocab
        with self._acquire() as h:
            if logits:
                if _np is None:  # pragma: no cover
                    raise ImportError("Context.eval(logits=True) needs numpy")
                out = _np.empty((len(ids), n_vocab), dtype=_np.float32)
                st = _lib.mg_context_eval(h, arr, len(ids), out.ctypes.data_as(c_void_p), out.size)
            else:
                out = None
                st = _lib.mg_context_eval(h, arr, len(ids), None, 0)
            if st:
                raise make_error(st, (_lib.mg_context_errmsg(h) or b"").decode())
        return out

    def logits(self):
        """The logits of the last decoder step (numpy float32, n_vocab; an
        array('f') without numpy): the scores of the next token. After
        report()/vqa() with max_tokens=0, or prs_risk(), they are those of
        the answer's first token."""
        n = self.model.info.n_vocab
        if _np is not None:
            out = _np.empty(n, dtype=_np.float32)
            ptr = out.ctypes.data_as(c_void_p)
        else:
            out = array("f", bytes(4 * n))
            ptr = out.buffer_info()[0]
        with self._acquire() as h:
            st = _lib.mg_context_logits(h, ptr, n)
            if st:
                raise make_error(st, (_lib.mg_context_errmsg(h) or b"").decode())
        return out

    def tokens(self):
        """The token ids of the context's sequence, as a list of ints: the
        prompt as read (image blocks as the tokenizer's image token, id
        model.tokenizer.special("image")), then what was generated and fed
        back."""
        need = c_size_t()
        with self._acquire() as h:
            st = _lib.mg_context_tokens(None, 0, byref(need), h)
            if st not in (0, E_BUFFER_TOO_SMALL):
                raise make_error(st, (_lib.mg_context_errmsg(h) or b"").decode())
            n = need.value
            ids = (c_int32 * max(n, 1))()
            st = _lib.mg_context_tokens(ids, n, byref(need), h)
            if st:
                raise make_error(st, (_lib.mg_context_errmsg(h) or b"").decode())
        return list(ids[:n])

    @property
    def last_error(self):
        """(status, message) of the last call on the context."""
        with self._borrow() as h:
            return _lib.mg_context_errcode(h), (_lib.mg_context_errmsg(h) or b"").decode()


@dataclass(frozen=True)
class ModelInfo:
    format_version: int
    n_tensors: int
    n_params: int
    n_bytes: int
    n_metadata: int
    name: str
    architecture: str
    has_vision: bool
    has_text: bool
    n_vocab: int
    n_ctx_train: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple        # dims[0] (fastest varying) first, as in the file
    n_elems: int
    n_bytes: int
    compressed: bool
    file_offset: int
    stored_bytes: int
    crc32c: int


class _ModelState(HandleState):
    """The model handle plus a pool of idle contexts, freed with it."""

    def __init__(self, handle):
        super().__init__(handle, _lib.mg_model_free, "model")
        self.idle = []
        self.batch = None  # batch=N: the decoding batch its contexts join

    def free_extra(self):
        while self.idle:
            _lib.mg_context_free(self.idle.pop())
        if self.batch:  # lives on in the C library while Contexts use it
            _lib.mg_batch_free(self.batch)
            self.batch = None


class Model(Owned, _Generating):
    """A loaded .mgm model. Use it as a context manager or close() it; a
    finalizer frees it otherwise. A Model may be shared by any number of
    threads: each generation call takes a context from a small pool (or
    makes one), so concurrent calls never share a context.

    Model.load(path, threads=0, n_ctx=0, seed=0, verify=False, mmap=False,
    max_memory=0, pool_size=4, kv_bf16=False, file_layout=False, reuse=True):
    threads, n_ctx, kv_bf16 (keys and values of the KV cache kept as bf16:
    half its memory) and reuse apply to the contexts it makes (0 = the
    library's defaults). reuse=False makes contexts that read every prompt
    from the start and encode every image anew (MG_CONTEXT_NO_REUSE); by
    default a context keeps what its last call read (the leading prompt
    tokens it shares with the next call, and the encoder's output for each
    Image object), with the same texts.
    file_layout keeps every tensor's bytes as stored; without it the text
    decoder's q4_0 matrices may be rearranged at load for faster decoding,
    and tensor_bytes() refuses them.
    batch=N (1..8) runs the decode steps of calls made at the same time from
    several threads together, up to N a step (one read of the weights for
    all: server throughput), each call's text exactly what it is alone;
    batch_wait is how long (seconds, default 0.002) a step waits for the
    other generating calls. batch_stats() says what it did."""

    def __init__(self, path, threads=0, n_ctx=0, seed=0, verify=False,
                 mmap=False, max_memory=0, pool_size=4, kv_bf16=False,
                 file_layout=False, reuse=True, batch=0, batch_wait=None):
        p = _lib.mg_model_params()
        _lib.mg_model_params_init(byref(p))
        p.flags = ((LOAD_VERIFY_CHECKSUMS if verify else 0) | (LOAD_MMAP if mmap else 0) |
                   (LOAD_FILE_LAYOUT if file_layout else 0))
        p.max_memory = int(max_memory or 0)
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        st = _lib.mg_model_load(byref(out), os.fsencode(path), byref(p), err, _lib.ERRBUF)
        if st:
            raise make_error(st, err.value.decode("utf-8", "replace"))
        self.path = os.fspath(path)
        self._threads, self._n_ctx, self._seed = threads, n_ctx, seed
        self._kv_bf16 = bool(kv_bf16)
        self._reuse = bool(reuse)
        self._pool_size = max(0, int(pool_size))
        self._own(_ModelState(out.value))
        if batch:
            bp = _lib.mg_batch_params()
            _lib.mg_batch_params_init(byref(bp))
            bp.n_threads = int(threads or 0)
            bp.max_rows = int(batch)
            wait = 0 if batch_wait is None else int(round(batch_wait * 1e6))
            if not 1 <= bp.max_rows <= 8 or not 0 <= wait <= 1000000:
                self.close()
                raise InvalidArgumentError("batch must be 1..8 and batch_wait 0..1 s")
            bp.wait_us = wait
            b = c_void_p()
            st = _lib.mg_batch_new(byref(b), out.value, byref(bp))
            if st:
                msg = (_lib.mg_last_error() or b"").decode("utf-8", "replace")
                self.close()
                raise make_error(st, "cannot make the decoding batch: " + msg)
            self._state.batch = b.value
        self.info = self._read_info()

    @classmethod
    def load(cls, path, **options):
        return cls(path, **options)

    def _read_info(self):
        i = _lib.mg_model_info()
        i.struct_size = ctypes.sizeof(i)
        with self._borrow() as h:
            st = _lib.mg_model_info_get(byref(i), h)
        if st:
            raise make_error(st, "")
        dec = (lambda b: (b or b"").decode("utf-8", "replace"))
        return ModelInfo(i.format_version, i.n_tensors, i.n_params, i.n_bytes,
                         i.n_metadata, dec(i.name), dec(i.architecture),
                         bool(i.has_vision), bool(i.has_text), i.n_vocab, i.n_ctx_train)

    @contextlib.contextmanager
    def _acquire(self):
        state = self._state
        with self._borrow() as mh:
            with state.lock:
                h = state.idle.pop() if state.idle else None
            if h is None:
                h = _new_context(mh, self._threads, self._n_ctx, self._seed, self._kv_bf16,
                                 self._reuse, state.batch)
            try:
                yield h
            finally:
                with state.lock:
                    keep = not state.closed and len(state.idle) < self._pool_size
                    if keep:
                        state.idle.append(h)
                if not keep:
                    _lib.mg_context_free(h)

    def context(self, threads=None, n_ctx=None, seed=None, kv_bf16=None, reuse=None):
        """A Context of its own (for chat(), interrupt(), eval() and a KV
        cache that persists between calls); kv_bf16=True keeps its keys and
        values as bf16, reuse=False turns off prefix reuse and the
        encoder-output cache (None: the model's settings)."""
        return Context(self, threads, n_ctx, seed, kv_bf16, reuse)

    def batch_stats(self):
        """What the decoding batch (batch=N) has done: a dict with steps,
        rows (tokens decoded; rows / steps is the mean batch), by_rows (the
        count of steps of 1..8 rows) and busy_seconds. InvalidArgumentError
        for a model loaded without batch."""
        with self._borrow():
            b = self._state.batch
            if not b:
                raise InvalidArgumentError("the model was loaded without batch=")
            s = _lib.mg_batch_stats()
            st = _lib.mg_batch_get_stats(b, byref(s))
        if st:
            raise make_error(st, "")
        return {"steps": s.steps, "rows": s.rows, "by_rows": list(s.by_rows),
                "busy_seconds": s.busy_seconds}

    @property
    def tokenizer(self):
        return Tokenizer(model=self)

    def tokenize(self, text, bos=False, special=False):
        return self.tokenizer.tokenize(text, bos=bos, special=special)

    def detokenize(self, ids, skip_special=False):
        return self.tokenizer.detokenize(ids, skip_special=skip_special)

    # metadata
    def meta(self, key, default=KeyError):
        """The value of one metadata key (int, float, str or list)."""
        with self._borrow() as h:
            n = _lib.mg_model_meta_count(h)
            for i in range(n):
                k, t, et, ne = c_char_p(), c_int32(), c_int32(), c_uint64()
                _lib.mg_model_meta_entry(byref(k), byref(t), byref(et), byref(ne), h, i)
                if k.value.decode("utf-8", "replace") == key:
                    return self._value(h, k.value, t.value, et.value, ne.value)
        if default is KeyError:
            raise KeyError(key)
        return default

    @property
    def metadata(self):
        """Every metadata entry as a dict, in file order."""
        out = {}
        with self._borrow() as h:
            for i in range(_lib.mg_model_meta_count(h)):
                k, t, et, ne = c_char_p(), c_int32(), c_int32(), c_uint64()
                st = _lib.mg_model_meta_entry(byref(k), byref(t), byref(et), byref(ne), h, i)
                if st:
                    raise make_error(st, "")
                out[k.value.decode("utf-8", "replace")] = self._value(h, k.value, t.value, et.value, ne.value)
        return out

    @staticmethod
    def _value(h, key, typ, elem, n):
        def one(t, i=None):
            if t == 1:
                v, f = c_int64(), (_lib.mg_model_meta_int if i is None else _lib.mg_model_meta_array_int)
            elif t == 2:
                v, f = c_double(), (_lib.mg_model_meta_float if i is None else _lib.mg_model_meta_array_float)
            elif t == 3:
                v, f = c_char_p(), (_lib.mg_model_meta_string if i is None else _lib.mg_model_meta_array_string)
            else:
                raise UnsupportedError("metadata type %d" % t)
            st = f(byref(v), h, key) if i is None else f(byref(v), h, key, i)
            if st:
                raise make_error(st, "metadata %r" % key)
            return v.value.decode("utf-8", "replace") if t == 3 else v.value
        if typ == 4:
            return [one(elem, i) for i in range(n)]
        return one(typ)

    def score_image(self, scores):
        """The score image the model's genomics encoder reads for these
        polygenic scores (a dict {name: value} or a (names, values) pair;
        see prs_predict()): an RGB Image, each trait a square of the
        model's genome.grid, one channel per p-value threshold holding
        128 + genome.z_scale * (score - mean) / std (rounded half to even,
        clipped to 0..255; 128 for a score not given). UnsupportedError for
        a model without a genomics encoder."""
        names, vals, n = _score_arrays(scores)
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        with self._borrow() as h:
            st = _lib.mg_prs_score_image(byref(out), h, vals, names, n, err, _lib.ERRBUF)
        if st:
            raise make_error(st, err.value.decode("utf-8", "replace"))
        return Image(out.value)

    def tensors(self):
        """TensorInfo of every tensor, in file order."""
        with self._borrow() as h:
            out = []
            for i in range(_lib.mg_model_tensor_count(h)):
                t = _lib.mg_tensor_info()
                t.struct_size = ctypes.sizeof(t)
                st = _lib.mg_model_tensor_at(byref(t), h, i)
                if st:
                    raise make_error(st, "")
                out.append(self._tinfo(t))
            return out

    def tensor_info(self, name):
        t = _lib.mg_tensor_info()
        t.struct_size = ctypes.sizeof(t)
        with self._borrow() as h:
            st = _lib.mg_model_tensor_find(byref(t), h, _enc(name))
        if st:
            raise make_error(st, "no tensor %r" % name)
        return self._tinfo(t)

    def tensor_bytes(self, name):
        """A copy of a tensor's (decompressed) bytes."""
        t = _lib.mg_tensor_info()
        t.struct_size = ctypes.sizeof(t)
        with self._borrow() as h:
            st = _lib.mg_model_tensor_find(byref(t), h, _enc(name))
            if st:
                raise make_error(st, "no tensor %r" % name)
            if t.n_bytes and not t.data:
                raise make_error(E_UNSUPPORTED, "tensor %r was rearranged at load for "
                                 "decoding; load the model with file_layout=True to "
                                 "read its bytes" % name)
            return ctypes.string_at(t.data, t.n_bytes)

    @staticmethod
    def _tinfo(t):
        name = _lib.mg_dtype_name(t.dtype)
        return TensorInfo(t.name.decode("utf-8", "replace"),
                          name.decode() if name else str(t.dtype),
                          tuple(t.dims[:t.n_dims]), t.n_elems, t.n_bytes,
                          bool(t.compressed), t.file_offset, t.stored_bytes, t.crc32c)

    def __repr__(self):
        if self.closed:
            return "<medgemini.Model closed>"
        return "<medgemini.Model %r %s>" % (self.info.name, self.path)
