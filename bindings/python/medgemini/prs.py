"""Polygenic scores, computed as PLINK 2 --score does (docs/PRS.md)."""
import ctypes
import os
import threading
from array import array
from ctypes import byref, c_char_p, c_uint32, c_void_p
from dataclasses import dataclass

from . import _lib
from ._handle import HandleState, Owned
from .errors import InvalidArgumentError, make_error

try:
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

NO_MEAN_IMPUTATION = 0x01
DOMINANT = 0x02
RECESSIVE = 0x04
KEEP_AMBIGUOUS = 0x08
KEEP_MULTIALLELIC = 0x10
DOUBLE_SUMS = 0x20
_DOSAGE = {"ds": 0, "gp": 1, "hds": 2, "none": 3}
COL_SUM, COL_AVG, COL_ALLELE_CT, COL_DENOM, COL_NAMED_ALLELE_DOSAGE_SUM = 1, 2, 3, 4, 5
_COLUMNS = {"SUM": COL_SUM, "AVG": COL_AVG, "ALLELE_CT": COL_ALLELE_CT,
            "DENOM": COL_DENOM, "NAMED_ALLELE_DOSAGE_SUM": COL_NAMED_ALLELE_DOSAGE_SUM}


@dataclass(frozen=True)
class MatchReport:
    kept: bool
    n_rows: int
    n_matched: int
    n_flipped: int
    n_ambiguous: int
    n_multiallelic: int
    n_duplicate: int
    n_unmatched: int
    overlap: float


def _params(model="additive", mean_imputation=True, keep_ambiguous=False,
            keep_multiallelic=False, min_overlap=None, threads=0,
            block_variants=0, dosage="ds", double_sums=False):
    p = _lib.mg_prs_params()
    _lib.mg_prs_params_init(byref(p))
    flags = 0
    if model == "dominant":
        flags |= DOMINANT
    elif model == "recessive":
        flags |= RECESSIVE
    elif model != "additive":
        raise InvalidArgumentError("model must be 'additive', 'dominant' or 'recessive'")
    if not mean_imputation:
        flags |= NO_MEAN_IMPUTATION
    if keep_ambiguous:
        flags |= KEEP_AMBIGUOUS
    if keep_multiallelic:
        flags |= KEEP_MULTIALLELIC
    if double_sums:
        flags |= DOUBLE_SUMS
    p.flags = flags
    if min_overlap is not None:
        p.min_overlap = float(min_overlap)
    p.n_threads = int(threads or 0)
    p.block_variants = int(block_variants or 0)
    if dosage not in _DOSAGE:
        raise InvalidArgumentError("dosage must be one of %s" % sorted(_DOSAGE))
    p.vcf_dosage = _DOSAGE[dosage]
    return p


class Prs(Owned):
    """One genotype set plus scoring files and their results.

        with Prs.open_plink("cohort") as prs:       # cohort.bed/.bim/.fam
            prs.add_scores("weights.txt")
            prs.compute()
            res = prs.results()   # {"IID": ..., "ALLELE_CT": ndarray, "<score>_SUM": ...}

    Options of open_plink/open_vcf: model ('additive', 'dominant',
    'recessive'), mean_imputation (default True), keep_ambiguous,
    keep_multiallelic, min_overlap (default 0.75), threads, block_variants,
    dosage (VCF: 'ds', 'gp', 'hds' or 'none'), double_sums (sum in double
    as plink2 does even where the CPU has AMX or AVX512-VNNI). Calls on one
    Prs are serialised by a lock; interrupt() is the exception (any thread,
    at any time)."""

    def __init__(self, handle):
        self._lock = threading.RLock()
        # interrupt() state, apart from _lock (held by a running compute())
        self._ilock = threading.Lock()
        self._computing = False
        self._stop = False
        self._own(HandleState(handle, _lib.mg_prs_free, "PRS handle"))

    @classmethod
    def _open(cls, fn, path, options):
        p = _params(**options)
        out, err = c_void_p(), ctypes.create_string_buffer(_lib.ERRBUF)
        st = fn(byref(out), os.fsencode(path), byref(p), err, _lib.ERRBUF)
        if st:
            raise make_error(st, err.value.decode("utf-8", "replace"))
        return cls(out.value)

    @classmethod
    def open_plink(cls, prefix, **options):
        """Opens PREFIX.bed/.bim/.fam."""
        return cls._open(_lib.mg_prs_open_plink, prefix, options)

    @classmethod
    def open_vcf(cls, path, **options):
        """Opens a VCF or BCF file (plain or bgzipped)."""
        return cls._open(_lib.mg_prs_open_vcf, path, options)

    def _check(self, h, st):
        if st:
            raise make_error(st, (_lib.mg_prs_errmsg(h) or b"").decode("utf-8", "replace"))

    def _use(self):
        return _Locked(self)

    def read_freq(self, path):
        """Allele frequencies for mean imputation (.afreq or .frq)."""
        with self._use() as h:
            self._check(h, _lib.mg_prs_read_freq(h, os.fsencode(path)))

    def add_scores(self, path):
        """Adds the scores of a scoring file; returns how many it added."""
        n = c_uint32()
        with self._use() as h:
            self._check(h, _lib.mg_prs_add_scores(h, byref(n), os.fsencode(path)))
        return n.value

    def compute(self, progress=None):
        """Streams the genotypes once and computes every score for every
        sample; returns self (so prs.compute().results() reads well).
        progress(done, total) is called with the variant rows scored so
        far, before the first block (done 0), at most every 100 ms after,
        and once with done == total at the end; a truthy return stops the
        computation (Interrupted, and no results until the next compute()).
        An exception raised by progress stops it too and is raised again
        here. interrupt() from another thread stops it as well."""
        if progress is not None and not callable(progress):
            raise TypeError("progress must be a callable, got %r" % type(progress).__name__)
        box = {}

        def on_progress(_user, done, total):
            # runs inside mg_prs_compute: nothing may escape into C
            try:
                if progress is not None and progress(done, total):
                    return 1
                return 1 if self._stop else 0
            except BaseException as exc:
                box["exc"] = exc
                return 1

        # installed even without progress: it sees an interrupt() that lands
        # before the library's compute starts (which drops its own request)
        cb = _lib.mg_prs_progress(on_progress)
        with self._use() as h:
            self._check(h, _lib.mg_prs_set_progress(h, cb, None))
            with self._ilock:
                self._computing, self._stop = True, False
            try:
                st = _lib.mg_prs_compute(h)
                msg = (_lib.mg_prs_errmsg(h) or b"").decode("utf-8", "replace") if st else ""
            finally:
                with self._ilock:
                    self._computing, self._stop = False, False
                _lib.mg_prs_set_progress(h, _lib.mg_prs_progress(), None)  # NULL: clears
        if "exc" in box:
            raise box["exc"]
        if st:
            raise make_error(st, msg)
        return self

    def interrupt(self):
        """Stops a compute() running on this handle in another thread (it
        raises Interrupted, with no results). Callable from any thread; does
        nothing when no compute() runs."""
        with self._ilock:
            if not self._computing:
                return
            self._stop = True
            with self._borrow() as h:
                _lib.mg_prs_interrupt(h)

    @property
    def n_samples(self):
        with self._use() as h:
            return _lib.mg_prs_sample_count(h)

    @property
    def n_variants(self):
        with self._use() as h:
            return _lib.mg_prs_variant_count(h)

    @property
    def score_names(self):
        with self._use() as h:
            return [(_lib.mg_prs_score_name(h, k) or b"").decode("utf-8", "replace")
                    for k in range(_lib.mg_prs_score_count(h))]

    @property
    def samples(self):
        """[(FID, IID), ...] in .fam order."""
        out = []
        with self._use() as h:
            for i in range(_lib.mg_prs_sample_count(h)):
                fid, iid = c_char_p(), c_char_p()
                self._check(h, _lib.mg_prs_sample_id(byref(fid), byref(iid), h, i))
                out.append(((fid.value or b"").decode("utf-8", "replace"),
                            (iid.value or b"").decode("utf-8", "replace")))
        return out

    def match_report(self, k):
        r = _lib.mg_prs_match_report()
        r.struct_size = ctypes.sizeof(r)
        with self._use() as h:
            self._check(h, _lib.mg_prs_match_report_get(byref(r), h, int(k)))
        return MatchReport(bool(r.kept), r.n_rows, r.n_matched, r.n_flipped,
                           r.n_ambiguous, r.n_multiallelic, r.n_duplicate,
                           r.n_unmatched, r.overlap)

    def column(self, column, score=0):
        """One result column ('SUM', 'AVG', 'ALLELE_CT', 'DENOM',
        'NAMED_ALLELE_DOSAGE_SUM'), one float64 per sample (numpy array, or
        array('d') without numpy). score: index or name."""
        col = _COLUMNS.get(column, column)
        if col not in _COLUMNS.values():
            raise InvalidArgumentError("unknown column %r" % (column,))
        if isinstance(score, str):
            score = self.score_names.index(score)
        with self._use() as h:
            n = _lib.mg_prs_sample_count(h)
            if _np is not None:
                buf = _np.empty(n, dtype=_np.float64)
                ptr = buf.ctypes.data_as(c_void_p)
            else:  # pragma: no cover
                buf = array("d", bytes(8 * n))
                ptr = buf.buffer_info()[0]
            self._check(h, _lib.mg_prs_results(ptr, n, h, col, int(score)))
        return buf

    def results(self):
        """Every result as a dict of arrays, keyed as the .sscore columns:
        FID, IID, ALLELE_CT, DENOM, NAMED_ALLELE_DOSAGE_SUM, then
        <score>_AVG and <score>_SUM for each kept score."""
        with self._lock:
            samples = self.samples
            out = {}
            if _np is not None:
                out["FID"] = _np.array([s[0] for s in samples], dtype=object)
                out["IID"] = _np.array([s[1] for s in samples], dtype=object)
            else:  # pragma: no cover
                out["FID"], out["IID"] = [s[0] for s in samples], [s[1] for s in samples]
            for c in ("ALLELE_CT", "DENOM", "NAMED_ALLELE_DOSAGE_SUM"):
                out[c] = self.column(c)
            for k, name in enumerate(self.score_names):
                if not self.match_report(k).kept:
                    continue
                out[name + "_AVG"] = self.column("AVG", k)
                out[name + "_SUM"] = self.column("SUM", k)
            return out

    def write_sscore(self, path):
        with self._use() as h:
            self._check(h, _lib.mg_prs_write_sscore(h, os.fsencode(path)))

    def write_freq(self, path):
        """Writes every variant's founder frequency as a plink2 .afreq file
        that read_freq() reads back exactly: scores of a subset of the
        samples computed with it equal the whole set's (hard calls only)."""
        with self._use() as h:
            self._check(h, _lib.mg_prs_write_freq(h, os.fsencode(path)))


class _Locked:
    def __init__(self, prs):
        self.prs = prs

    def __enter__(self):
        self.prs._lock.acquire()
        try:
            self.cm = self.prs._borrow()
            return self.cm.__enter__()
        except BaseException:
            self.prs._lock.release()
            raise

    def __exit__(self, *exc):
        try:
            return self.cm.__exit__(*exc)
        finally:
            self.prs._lock.release()
