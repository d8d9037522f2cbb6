"""Batch jobs on a Dask ``distributed`` cluster: reports for many DICOM
studies, and polygenic scores sharded by samples.

    from medgemini import batch
    summary = batch.report_studies(["/pacs/export"], "model.mgm", "reports.jsonl")
    scores = batch.prs_sharded("cohort", ["PGS000001.txt.gz"], shards=4)

Both take ``client=`` (any ``distributed.Client``); without one they start a
``LocalCluster`` of ``n_workers`` processes with one thread each and close it
at the end. Every worker process loads a model once and keeps it for all the
studies it is given. Files are passed by path: on a cluster of several
machines, the inputs, ``workdir`` and outputs must be on storage every
worker sees (the same paths).

Needs Debian's python3-distributed (Dask)."""
import csv
import json
import os
import shutil
import sys
import tempfile
import time

from . import _lib
from .errors import InvalidArgumentError, MedGeminiError
from .image import Image
from .model import Model
from .prs import Prs
from .sr import write_sr
from .studies import scan_studies
from .volume import Volume

try:
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

_FIELDS = ["study_uid", "patient_id", "date", "kind", "inputs", "report", "seconds",
           "worker", "sr", "status", "error"]


# ------------------------------------------------------------------ cluster

def _start(client, n_workers):
    """The client to use and whether we own (and must close) it."""
    if client is not None:
        return client, None
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover
        raise ImportError("medgemini.batch needs Dask distributed "
                          "(Debian: python3-distributed)") from e
    worker_env()
    cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    return Client(cluster), cluster


def worker_env():
    """Makes worker processes started from here (a LocalCluster) import
    this package and load the same C library: its folder goes on
    PYTHONPATH and the library's path in MG_LIB."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.environ.get("PYTHONPATH", "")
    if pkg_parent not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = pkg_parent + (os.pathsep + path if path else "")
    os.environ.setdefault("MG_LIB", _lib.lib_path)


def _stop(client, cluster):
    if cluster is not None:
        client.close()
        cluster.close()


# per worker process: model path -> Model, loaded on first use
_MODELS = {}


def _model(path, threads):
    m = _MODELS.get(path)
    if m is None:
        m = _MODELS[path] = Model.load(path, threads=threads)
    return m


# ------------------------------------------------------------------ reports

def _report_one(model_path, threads, study, gen, sr_dir, model_name):
    """One study on a worker: its report (and SR), or the error."""
    out = {"study_uid": study["uid"], "patient_id": study["patient_id"] or "",
           "date": study["date"] or "", "kind": study["kind"], "inputs": len(study["files"]),
           "report": "", "seconds": 0.0, "worker": os.getpid(), "sr": "", "status": "ok",
           "error": ""}
    t0 = time.monotonic()
    try:
        m = _model(model_path, threads)
        if study["kind"] == "volume":
            with Volume.from_dicom(study["files"]) as vol:
                text = m.report_volume(vol, **gen)
        else:
            images = [Image.open(f) for f in study["files"]]
            try:
                text = m.report(images, **gen)
            finally:
                for img in images:
                    img.close()
        out["report"] = text
        if sr_dir:
            path = os.path.join(sr_dir, study["uid"] + ".dcm")
            write_sr(path, text, study["files"], model_name=model_name)
            out["sr"] = path
    except MedGeminiError as e:
        out["status"], out["error"] = "error", "%s: %s" % (type(e).__name__, e)
    except Exception as e:  # noqa: BLE001 - a study's failure must not stop the run
        out["status"], out["error"] = "error", "%s: %s" % (type(e).__name__, e)
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def _study_job(s):
    """What a worker needs of a Study: plain data (pickled to the worker)."""
    if s.kind == "volume":
        best = max((se for se in s.series if se.modality in ("CT", "MR", "PT")),
                   key=lambda se: len(se.files))
        files = best.files
    else:
        files = [f for f in (s.frontal, s.lateral) if f]
    return {"uid": s.uid, "patient_id": s.patient_id, "date": s.date, "kind": s.kind,
            "files": files}


def _format(out):
    ext = os.path.splitext(out)[1].lower()
    if ext in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if ext == ".csv":
        return "csv"
    raise InvalidArgumentError("results go to a .jsonl or .csv file, not %r" % out)


def read_results(out):
    """The records of a results file (.jsonl or .csv), in file order; a
    study that appears more than once (a retried failure) counts by its
    last record."""
    if not os.path.exists(out):
        return []
    with open(out, newline="", encoding="utf-8") as f:
        if _format(out) == "jsonl":
            return [json.loads(line) for line in f if line.strip()]
        return list(csv.DictReader(f))


def report_studies(paths, model_path, out, client=None, n_workers=2, threads=1,
                   resume=True, sr_dir=None, max_files=0, **gen):
    """A report for every study found under paths (folders, DICOMDIR files;
    medgemini.scan_studies groups them): a radiograph study from its frontal
    and lateral images, a volume study from its largest CT/MR/PT series.
    Each result is appended to out (.jsonl: one JSON object a line; .csv: a
    header and one row a study) as soon as it is done, with the fields
    study_uid, patient_id, date, kind, inputs, report, seconds, worker (the
    process id), sr (the SR's path with sr_dir), status ("ok", "error" or
    "skipped": a study with nothing to report on) and error (the message).
    A study that fails is recorded and the run goes on. With resume (the
    default) the studies out already holds with status "ok" or "skipped"
    are not done again; failed ones are retried. gen: generation settings
    as for Model.report (max_tokens, temperature, ...). Returns a summary
    dict: studies, done, skipped, failed, already (from an earlier run),
    seconds, workers."""
    fmt = _format(out)
    t0 = time.monotonic()
    st = scan_studies(paths, max_files=max_files)
    finished = {r["study_uid"]: r["status"] for r in read_results(out)} if resume else {}
    already = [s for s in st if finished.get(s.uid) in ("ok", "skipped")]
    todo = [s for s in st if finished.get(s.uid) not in ("ok", "skipped")]
    if sr_dir:
        os.makedirs(sr_dir, exist_ok=True)
    new_file = not resume or not os.path.exists(out) or os.path.getsize(out) == 0
    f = open(out, "w" if not resume else "a", newline="", encoding="utf-8")
    summary = {"studies": len(st), "done": 0, "skipped": 0, "failed": 0,
               "already": len(already), "seconds": 0.0, "workers": 0}
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(f, fieldnames=_FIELDS)
        if new_file:
            writer.writeheader()

    def emit(rec):
        if writer:
            writer.writerow(rec)
        else:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        key = {"ok": "done", "skipped": "skipped"}.get(rec["status"], "failed")
        summary[key] += 1

    client_, cluster = None, None
    try:
        jobs = []
        for s in todo:
            if s.kind not in ("radiograph", "volume"):
                emit({"study_uid": s.uid, "patient_id": s.patient_id or "", "date": s.date or "",
                      "kind": s.kind, "inputs": 0, "report": "", "seconds": 0.0, "worker": 0,
                      "sr": "", "status": "skipped",
                      "error": "no radiograph or CT/MR/PT volume in the study"})
            else:
                jobs.append(_study_job(s))
        if jobs:
            from distributed import as_completed
            client_, cluster = _start(client, n_workers)
            summary["workers"] = len(client_.scheduler_info().get("workers", {}))
            name = os.path.basename(model_path)[:64]
            futures = [client_.submit(_report_one, model_path, threads, j, gen, sr_dir, name,
                                      key="report-%s" % j["uid"], pure=False) for j in jobs]
            for fut in as_completed(futures):
                emit(fut.result())
    finally:
        f.close()
        if client_ is not None:
            _stop(client_, cluster)
    summary["seconds"] = round(time.monotonic() - t0, 3)
    return summary


# ---------------------------------------------------------- polygenic scores

def _bed_subset(prefix, out_prefix, lo, hi, chunk=4096):
    """Writes samples [lo, hi) of a PLINK 1 set as its own set (the same
    .bim; the .bed rows repacked)."""
    with open(prefix + ".fam", encoding="utf-8") as f:
        fam = f.readlines()
    n = len(fam)
    bpv, nbpv = (n + 3) // 4, (hi - lo + 3) // 4
    shutil.copyfile(prefix + ".bim", out_prefix + ".bim")
    with open(out_prefix + ".fam", "w", encoding="utf-8") as f:
        f.writelines(fam[lo:hi])
    with open(prefix + ".bed", "rb") as src, open(out_prefix + ".bed", "wb") as dst:
        magic = src.read(3)
        if magic != b"\x6c\x1b\x01":
            raise InvalidArgumentError("%s.bed is not a SNP-major PLINK 1 .bed" % prefix)
        dst.write(magic)
        shifts = _np.array([0, 2, 4, 6], dtype=_np.uint8)
        while True:
            raw = src.read(bpv * chunk)
            if not raw:
                break
            rows = _np.frombuffer(raw, dtype=_np.uint8).reshape(-1, bpv)
            codes = ((rows[:, :, None] >> shifts) & 3).reshape(rows.shape[0], -1)[:, lo:hi]
            pad = nbpv * 4 - (hi - lo)
            if pad:
                codes = _np.concatenate(
                    [codes, _np.zeros((codes.shape[0], pad), dtype=_np.uint8)], axis=1)
            q = codes.reshape(codes.shape[0], nbpv, 4).astype(_np.uint8)
            packed = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
            dst.write(packed.astype(_np.uint8).tobytes())


def _prs_shard(prefix, freq, score_files, options):
    with Prs.open_plink(prefix, **options) as p:
        p.read_freq(freq)
        for s in score_files:
            p.add_scores(s)
        p.compute()
        return p.results()


def prs_sharded(bfile, score_files, client=None, n_workers=2, shards=None, workdir=None,
                threads=1, **options):
    """Polygenic scores of a PLINK 1 set computed in shards of samples on
    the cluster and merged: the same result, column for column, as
    Prs.open_plink(bfile).add_scores(...).compute().results() in one
    process. The whole set's founder frequencies are written once
    (Prs.write_freq) and every shard reads them, so mean imputation of a
    missing call uses the same frequency as in one process. shards defaults
    to the number of workers; the shard sets are written under workdir (a
    temporary folder, removed afterwards, by default). options: as for
    Prs.open_plink (model, mean_imputation, ...). Returns the dict of
    Prs.results() (FID, IID, ALLELE_CT, DENOM, NAMED_ALLELE_DOSAGE_SUM,
    <score>_AVG, <score>_SUM)."""
    if _np is None:  # pragma: no cover
        raise ImportError("prs_sharded needs numpy (Debian: python3-numpy)")
    if isinstance(score_files, (str, bytes, os.PathLike)):
        score_files = [score_files]
    score_files = [os.path.abspath(s) for s in score_files]
    bfile = os.path.abspath(bfile)
    own_dir = workdir is None
    workdir = tempfile.mkdtemp(prefix="medgemini-prs-") if own_dir else workdir
    os.makedirs(workdir, exist_ok=True)
    client_, cluster = None, None
    try:
        freq = os.path.join(workdir, "all.afreq")
        with Prs.open_plink(bfile, threads=threads, **options) as p:
            n = p.n_samples
            p.write_freq(freq)
        client_, cluster = _start(client, n_workers)
        if shards is None:
            shards = max(1, len(client_.scheduler_info().get("workers", {})))
        shards = max(1, min(int(shards), n))
        bounds = [n * k // shards for k in range(shards + 1)]
        futures = []
        opts = dict(options, threads=threads)
        for k in range(shards):
            sp = os.path.join(workdir, "shard%d" % k)
            _bed_subset(bfile, sp, bounds[k], bounds[k + 1])
            futures.append(client_.submit(_prs_shard, sp, freq, score_files, opts,
                                          key="prs-shard-%d-%s" % (k, os.path.basename(workdir)),
                                          pure=False))
        parts = client_.gather(futures)
    finally:
        if client_ is not None:
            _stop(client_, cluster)
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    keys = list(parts[0].keys())
    for p in parts[1:]:
        if list(p.keys()) != keys:  # pragma: no cover - a score kept in one shard only
            raise MedGeminiError("the shards kept different scores: %s vs %s"
                                 % (keys, list(p.keys())))
    return {k: _np.concatenate([p[k] for p in parts]) for k in keys}


def main(argv=None):
    """python3 -m medgemini.batch reports|prs ... (see --help)."""
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m medgemini.batch", description=__doc__.split(
        "\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reports", help="one report per DICOM study")
    r.add_argument("paths", nargs="+")
    r.add_argument("-m", "--model", required=True)
    r.add_argument("-o", "--out", required=True, help="results .jsonl or .csv")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--scheduler", help="address of a running scheduler (default: a LocalCluster)")
    r.add_argument("--sr-dir")
    r.add_argument("--no-resume", action="store_true")
    r.add_argument("-n", "--max-tokens", type=int, default=256)
    p = sub.add_parser("prs", help="polygenic scores sharded by samples")
    p.add_argument("--bfile", required=True)
    p.add_argument("--score", action="append", required=True)
    p.add_argument("--out", required=True, help="output .sscore-like TSV")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shards", type=int)
    p.add_argument("--scheduler")
    a = ap.parse_args(argv)
    client = None
    if a.scheduler:
        from distributed import Client
        client = Client(a.scheduler)
    if a.cmd == "reports":
        s = report_studies(a.paths, a.model, a.out, client=client, n_workers=a.workers,
                           threads=a.threads, resume=not a.no_resume, sr_dir=a.sr_dir,
                           max_tokens=a.max_tokens)
        print(json.dumps(s))
    else:
        res = prs_sharded(a.bfile, a.score, client=client, n_workers=a.workers, shards=a.shards)
        cols = list(res.keys())
        with open(a.out, "w", encoding="utf-8") as f:
            f.write("#" + "\t".join(cols) + "\n")
            for i in range(len(res[cols[0]])):
                f.write("\t".join(str(res[c][i]) if c in ("FID", "IID") else repr(float(res[c][i]))
                                  for c in cols) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
