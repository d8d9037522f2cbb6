#!/usr/bin/python3
"""export_example.py - the small shipped subset of a simulated cohort.

    /usr/bin/python3 tools/polygenic/export_example.py [--cohort lib/polygenic/seed1]
        [--out examples/data/polygenic] [--n 500]

Takes the first N individuals of the test split (in .fam order) with every
variant and writes, under --out:
  cohort500.bed/.bim/.fam   PLINK 1 binary set (SNP-major)
  weights.tsv.gz            the cohort's wide score file, unchanged
  scores.tsv.gz             their score SUMs as simulate.py computed them
                            (#FID IID <score>_SUM..., exact 8-decimal values)
  outcomes.tsv              FID IID + one 0/1 column per outcome
  cohort.json               the full cohort's metadata, unchanged
  baselines.json, .md       the full cohort's baselines (baselines.py), when present
(The README/PROVENANCE.md beside them is written by hand.)
"""
import argparse
import gzip
import io
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import plinkio  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description="export the shipped example subset")
    ap.add_argument("--cohort", default=os.path.join(ROOT, "lib", "polygenic", "seed1"))
    ap.add_argument("--out", default=os.path.join(ROOT, "examples", "data", "polygenic"))
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    src = os.path.join(a.cohort, "cohort")
    fam_lines = open(src + ".fam").readlines()
    with open(os.path.join(a.cohort, "split.tsv")) as f:
        f.readline()
        split = [line.split()[2] for line in f]
    keep = np.array([i for i, s in enumerate(split) if s == "test"][:a.n])
    if keep.size < a.n:
        raise SystemExit(f"only {keep.size} test individuals")
    dst = os.path.join(a.out, f"cohort{a.n}")
    x = plinkio.read_bed(src, len(fam_lines))[:, keep]
    w = plinkio.BedWriter(dst + ".bed", keep.size)
    w.write(x)
    w.close()
    shutil.copyfile(src + ".bim", dst + ".bim")
    with open(dst + ".fam", "w") as f:
        f.writelines(fam_lines[i] for i in keep)
    shutil.copyfile(os.path.join(a.cohort, "weights.tsv.gz"), os.path.join(a.out, "weights.tsv.gz"))
    shutil.copyfile(os.path.join(a.cohort, "cohort.json"), os.path.join(a.out, "cohort.json"))
    for b in ("baselines.json", "baselines.md"):
        if os.path.exists(os.path.join(a.cohort, b)):
            shutil.copyfile(os.path.join(a.cohort, b), os.path.join(a.out, b))
    with open(os.path.join(a.cohort, "outcomes.tsv")) as f:
        lines = f.readlines()
    with open(os.path.join(a.out, "outcomes.tsv"), "w") as f:
        f.write(lines[0])
        f.writelines(lines[1 + i] for i in keep)
    import json
    meta = json.load(open(os.path.join(a.cohort, "cohort.json")))
    S = np.load(os.path.join(a.cohort, "scores.npy"))[keep]
    iid = [fam_lines[i].split()[1] for i in keep]
    fmt = "%.8f" if meta.get("missing_rate", 0) == 0 else "%.17g"
    with gzip.GzipFile(os.path.join(a.out, "scores.tsv.gz"), "wb", compresslevel=9, mtime=0) as gz, \
            io.TextIOWrapper(gz, encoding="ascii") as f:
        f.write("#FID\tIID\t" + "\t".join(s + "_SUM" for s in meta["score_names"]) + "\n")
        for i, row in zip(iid, S):
            f.write(i + "\t" + i + "\t" + "\t".join(fmt % v for v in row) + "\n")
    total = sum(os.path.getsize(os.path.join(a.out, p)) for p in os.listdir(a.out))
    print(f"{keep.size} test individuals -> {a.out} ({total / 1e6:.2f} MB in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
