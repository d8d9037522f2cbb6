#!/usr/bin/python3
"""Throughput of medgemini.batch.report_studies with 1 and 2 Dask workers
in one run: N copies of the shared CR chest radiograph as N studies (new
Study, Series and SOP Instance UIDs of the same length), the demo model,
reports of up to TOKENS tokens, one thread per worker.

  bench/batch_dask.py [N] [TOKENS]      (MG_LIB: the library to use)

Prints, per worker count, the wall time of the whole run (cluster start
included), the time without the cluster's start, and studies per second;
checks that both runs wrote the same reports."""
import json
import os
import shutil
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, os.path.join(root, "bindings", "python"))
from medgemini import batch  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 48
    src = os.path.join(root, "..", "shared", "data", "dicom", "cr_chest", "RG1_J2KI.dcm")
    model = os.path.join(root, "examples", "models", "medgemini-demo-q8_0.mgm")
    data = open(src, "rb").read()
    uids = [b"1.3.6.1.4.1.5962.1.2.9.20040826185059.5457",      # study
            b"1.3.6.1.4.1.5962.1.3.9.1.20040826185059.5457",    # series
            b"1.3.6.1.4.1.5962.1.1.9.1.3.20040826185059.5457"]  # instance
    tmp = tempfile.mkdtemp(prefix="mg-bench-dask-")
    try:
        for i in range(n):
            d = data
            for u in uids:
                d = d.replace(u, u[:-4] + b"%04d" % i)
            os.makedirs(os.path.join(tmp, "export", "s%03d" % i))
            open(os.path.join(tmp, "export", "s%03d" % i, "cr.dcm"), "wb").write(d)
        from distributed import Client, LocalCluster
        batch.worker_env()
        results = {}
        print("%d studies, %d tokens a report, demo model, 1 thread a worker" % (n, tokens))
        for workers in (1, 2):
            t0 = time.monotonic()
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=":0") as lc, Client(lc) as c:
                t1 = time.monotonic()
                out = os.path.join(tmp, "r%d.jsonl" % workers)
                s = batch.report_studies([os.path.join(tmp, "export")], model, out, client=c,
                                         max_tokens=tokens)
                t2 = time.monotonic()
            assert s["done"] == n, s
            results[workers] = {r["study_uid"]: r["report"] for r in batch.read_results(out)}
            print("workers %d: %.2f s in all, %.2f s without the cluster start, %.2f studies/s"
                  % (workers, time.monotonic() - t0, t2 - t1, n / (t2 - t1)))
        print("same reports:", results[1] == results[2])
        return 0 if results[1] == results[2] else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
