#!/usr/bin/python3
"""verify.py - check a PLINK set + wide score file three (or four) ways:
numpy's reference scorer (plinkio.reference_scores, from the files alone),
`bin/medgemini prs score`, plink2 --score when installed, and optionally the
scores simulate.py stored.

    /usr/bin/python3 tools/polygenic/verify.py --bfile PREFIX --score FILE
        [--expected scores.tsv.gz | scores.npy] [--sample K] [--no-plink2]
        [--medgemini bin/medgemini] [--work DIR] [--rtol 1e-6]

--sample K first writes a PLINK subset of every K-th individual (numpy, from
the .bed) and checks on that subset; scores of individuals with no missing
call do not depend on the rest of the cohort, so they still equal the stored
ones (with missing calls the mean imputation uses the subset's frequencies:
compare --expected only on sets without missing calls).

Criteria, per SUM value a (tool) against b (numpy):
  medgemini (prints 10 significant digits): |a - b| <= rtol * max(|a|, |b|) + atol
  plink2 (prints 6 significant digits):     |a - b| <= half a unit of a's 6th
      significant digit (the printing bound, <= 5e-6 relative) + atol
  stored scores:                            the same rtol test
with atol = 1e-12 x (sum over rows of 2 |w|) per score (double rounding of the
sum itself). ALLELE_CT and DENOM must be equal. Exits 1 on any failure.
"""
import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import plinkio  # noqa: E402


def subset(prefix, every, dst):
    """Every `every`-th individual of prefix into the PLINK set dst."""
    fam = plinkio.read_fam(prefix)
    n = len(fam["iid"])
    keep = np.arange(0, n, every)
    x = plinkio.read_bed(prefix, n)[:, keep]
    w = plinkio.BedWriter(dst + ".bed", keep.size)
    for lo in range(0, x.shape[0], 1024):
        w.write(x[lo:lo + 1024])
    w.close()
    shutil.copyfile(prefix + ".bim", dst + ".bim")
    with open(prefix + ".fam") as f, open(dst + ".fam", "w") as g:
        lines = f.readlines()
        g.writelines(lines[i] for i in keep)
    return keep


def read_expected(path):
    if path.endswith(".npy"):
        return None, np.load(path)
    with plinkio.open_text(path) as f:
        head = f.readline().split()
        ids, vals = [], []
        for line in f:
            t = line.split("\t")
            ids.append(t[1]); vals.append(np.array(t[2:], dtype=np.float64))
    return ids, np.stack(vals)


def rel_check(name, a, b, rtol, atol):
    diff = np.abs(a - b)
    bad = diff > rtol * np.maximum(np.abs(a), np.abs(b)) + atol[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff > 0, diff / np.maximum(np.abs(a), np.abs(b)), 0.0)
    print(f"  {name}: max rel. diff {np.nanmax(rel):.3g}, max abs. diff {diff.max():.3g}, "
          f"{int(bad.sum())} of {bad.size} values outside rtol {rtol:g}")
    return not bad.any()


def print_bound_check(name, printed, b, atol, digits=6):
    """|printed - b| within half a unit of printed's last significant digit."""
    mag = np.floor(np.log10(np.where(printed == 0, 1.0, np.abs(printed))))
    half = 0.5 * 10.0 ** (mag - (digits - 1))
    half = np.where(printed == 0, 0.0, half)
    diff = np.abs(printed - b)
    bad = diff > half * (1 + 1e-9) + atol[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff > 0, diff / np.maximum(np.abs(printed), np.abs(b)), 0.0)
    print(f"  {name}: max rel. diff {np.nanmax(rel):.3g} (printing bound 5e-6), "
          f"{int(bad.sum())} of {bad.size} values outside the {digits}-digit printing bound")
    return not bad.any()


def main(argv=None):
    ap = argparse.ArgumentParser(description="numpy vs medgemini vs plink2 scores")
    ap.add_argument("--bfile", required=True)
    ap.add_argument("--score", required=True)
    ap.add_argument("--expected", help="scores.tsv.gz or scores.npy from simulate.py (same individuals, "
                    "or the full cohort when --sample is used)")
    ap.add_argument("--sample", type=int, default=1, help="check every K-th individual only")
    ap.add_argument("--medgemini", default=os.path.join(ROOT, "bin", "medgemini"))
    ap.add_argument("--plink2", default=shutil.which("plink2"))
    ap.add_argument("--no-plink2", action="store_true")
    ap.add_argument("--no-mean-imputation", action="store_true")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--work", help="folder for the outputs (default: a temporary one, removed)")
    a = ap.parse_args(argv)
    work = a.work or tempfile.mkdtemp(prefix="pgverify")
    os.makedirs(work, exist_ok=True)
    ok = True
    try:
        prefix, keep = a.bfile, None
        if a.sample > 1:
            prefix = os.path.join(work, "subset")
            keep = subset(a.bfile, a.sample, prefix)
            print(f"subset: {keep.size} individuals (every {a.sample}th) -> {prefix}")
        t = time.time()
        ref = plinkio.reference_scores(prefix, a.score, mean_imputation=not a.no_mean_imputation)
        names = ref["names"]
        _, _, _, w = plinkio.read_wide(a.score)
        atol = 1e-12 * 2 * np.abs(w).sum(axis=0)
        print(f"numpy reference: {len(ref['iid'])} individuals x {len(names)} scores ({time.time() - t:.1f} s)")

        mods = ["--no-mean-imputation"] if a.no_mean_imputation else []
        t = time.time()
        r = subprocess.run([a.medgemini, "prs", "score", "--bfile", prefix, "--score", a.score,
                            "--out", os.path.join(work, "mg")] + mods, capture_output=True, text=True)
        if r.returncode != 0:
            print("medgemini prs score failed:\n" + r.stderr)
            return 1
        mg = plinkio.read_sscore(os.path.join(work, "mg.sscore"))
        print(f"medgemini prs score ({time.time() - t:.1f} s):")
        assert mg["iid"] == ref["iid"], "medgemini: sample order differs"
        A = np.stack([mg[s + "_SUM"] for s in names], axis=1)
        ok &= rel_check("SUM vs numpy", A, ref["SUM"], a.rtol, atol)
        ok &= rel_check("AVG vs numpy", np.stack([mg[s + "_AVG"] for s in names], axis=1), ref["AVG"],
                        a.rtol, atol / np.maximum(ref["DENOM"].min(), 1))
        for c in ("ALLELE_CT", "DENOM"):
            same = np.array_equal(mg[c], ref[c])
            print(f"  {c}: {'equal' if same else 'DIFFERENT'}")
            ok &= same
        ok &= rel_check("NAMED_ALLELE_DOSAGE_SUM vs numpy", mg["NAMED_ALLELE_DOSAGE_SUM"][:, None],
                        ref["NAMED_ALLELE_DOSAGE_SUM"][:, None], a.rtol, np.zeros(1))

        if a.plink2 and not a.no_plink2:
            t = time.time()
            k = len(names)
            cmd = [a.plink2, "--threads", "2", "--bfile", prefix, "--score", a.score, "header-read",
                   "cols=+scoresums,+denom,+fid", "--score-col-nums", f"3-{k + 2}",
                   "--out", os.path.join(work, "plink2")]
            if a.no_mean_imputation:
                cmd.insert(cmd.index("--score-col-nums"), "no-mean-imputation")
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print("plink2 failed:\n" + r.stdout + r.stderr)
                return 1
            pl = plinkio.read_sscore(os.path.join(work, "plink2.sscore"))
            print(f"plink2 --score ({time.time() - t:.1f} s):")
            assert pl["iid"] == ref["iid"], "plink2: sample order differs"
            P = np.stack([pl[s + "_SUM"] for s in names], axis=1)
            ok &= print_bound_check("SUM vs numpy", P, ref["SUM"], atol)
            for c in ("ALLELE_CT", "DENOM"):
                same = np.array_equal(pl[c], ref[c])
                print(f"  {c}: {'equal' if same else 'DIFFERENT'}")
                ok &= same
            ok &= print_bound_check("SUM vs medgemini", P, A, atol)
        elif not a.no_plink2:
            print("plink2 not installed: skipped")

        if a.expected:
            ids, E = read_expected(a.expected)
            if keep is not None:
                E = E[keep]
                ids = [ids[i] for i in keep] if ids else None
            if ids is not None:
                assert ids == ref["iid"], "expected: sample order differs"
            print(f"stored scores ({a.expected}):")
            ok &= rel_check("SUM vs numpy", E, ref["SUM"], a.rtol, atol)
            ok &= rel_check("SUM vs medgemini", E, A, a.rtol, atol)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    print("verify: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
