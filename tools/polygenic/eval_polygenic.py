#!/usr/bin/python3
"""eval_polygenic.py - held-out evaluation of a polygenic model through the
C library, against the stored baselines.

    /usr/bin/python3 tools/polygenic/eval_polygenic.py -m MODEL.mgm
        [--cohort lib/polygenic/seed1] [--out DIR] [--json FILE] [--md FILE]
        [--cli bin/medgemini] [--via binding|cli] [--threads 1] [--n-boot 1000]
        [--no-plink]

1. The test split's risks through the library, for every outcome's question
   (the 8 trained and the 3 held-out ones, display names of pgmodel.DISPLAY):
   --via binding (default): Model.prs_predict_batch of the Python binding
   (mg_prs_predict_batch, full double precision, a context of --threads
   threads: one is fastest on a busy 2-core machine);
   --via cli: the test split's score SUMs (scores.npy, exact %.17g text)
   written as a .sscore file (`#FID IID <score>_SUM...`) and
   `medgemini prs predict --scores-in FILE -m MODEL --outcome NAME...`
   (PREFIX.risk, 6 decimals; the CLI's --threads sets the scoring threads,
   its context takes every core).
2. Unless --no-plink, the command line end to end on the shipped 500-person
   PLINK set (the first 500 of the test split):
   `prs predict --bfile examples/data/polygenic/cohort500 --score
   weights.tsv.gz` and `prs predict --scores-in` on the same 500 individuals'
   rows of the .sscore file: the two must agree within 1e-6 and with the
   risks of step 1 within 5e-7 + 1e-9 (the file's 6-decimal rounding); the
   AUC on those 500 is reported.
3. The baselines' test predictions from examples/data/polygenic/baselines.json
   (their coefficients and standardization), checked against the stored test
   AUCs and intervals; test AUC of the model, the single-score and the
   ensemble baselines with percentile bootstrap 95 % intervals
   (tools/polygenic/metrics.py, seed 20240601, 1,000 resamples: the
   resamples of baselines.py, so the intervals and the paired differences
   model - single and model - ensemble are paired with the stored baselines).
Writes a Markdown table (stdout and --md) and JSON (--json). Exit status 0
when every check passes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import pgmodel as P
import metrics

sys.path.insert(0, os.path.join(P.ROOT, "bindings", "python"))

EXAMPLE = os.path.join(P.ROOT, "examples", "data", "polygenic")


def write_sscore(path, ids, names, scores):
    with open(path, "w") as f:
        f.write("#FID\tIID\t" + "\t".join(n + "_SUM" for n in names) + "\n")
        for (fid, iid), row in zip(ids, scores):
            f.write(fid + "\t" + iid + "\t" + "\t".join("%.17g" % v for v in row) + "\n")


def read_risk(path, outcomes):
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        if head != ["#FID", "IID"] + list(outcomes):
            raise SystemExit("%s: unexpected header %r" % (path, head))
        ids, vals = [], []
        for line in f:
            p = line.rstrip("\n").split("\t")
            ids.append((p[0], p[1]))
            vals.append([float(v) for v in p[2:]])
    return ids, np.array(vals)


def prs_predict(cli, model, outcomes, out, threads, inputs):
    cmd = [cli, "prs", "predict"] + inputs + ["-m", model, "--out", out, "--threads",
                                              str(threads)]
    for o in outcomes:
        cmd += ["--outcome", o]
    t = time.time()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    return time.time() - t


def baseline_predictions(bl, names, scores):
    """{outcome: {"single": pred, "ensemble": pred}} on these rows, from the
    stored coefficients (baselines.py: z = (SUM - mean) / sd with the
    training split's mean and SD, constant scores 0)."""
    st = bl["standardization"]
    mean = np.array([st["mean"][n] for n in names]) if isinstance(st["mean"], dict) \
        else np.array(st["mean"], dtype=np.float64)
    sd = np.array([st["sd"][n] for n in names]) if isinstance(st["sd"], dict) \
        else np.array(st["sd"], dtype=np.float64)
    usable = sd > 0
    x = np.asarray(scores, dtype=np.float64)
    z = np.where(usable, (x - mean) / np.where(usable, sd, 1.0), 0.0)
    out = {}
    for o in bl["outcomes"]:
        s, e = o["single"], o["ensemble"]
        j = names.index(s["score"])
        w = np.array([e["coef"][n] for n in names])
        cols = np.flatnonzero(usable)
        out[o["outcome"]] = {"single": s["intercept"] + s["coef"] * z[:, j],
                             "ensemble": e["intercept"] + z[:, cols] @ w[cols]}
    return out


def fmt(r):
    return "%.3f [%.3f, %.3f]" % (r["auc"], r["lo"], r["hi"])


def fmt_d(r):
    return "%+.3f [%+.3f, %+.3f]" % (r["diff"], r["lo"], r["hi"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--cohort", default=P.DEFAULT_COHORT)
    ap.add_argument("--baselines", default=os.path.join(EXAMPLE, "baselines.json"))
    ap.add_argument("--cli", default=os.path.join(P.ROOT, "bin", "medgemini"))
    ap.add_argument("--out", help="folder for the .sscore and .risk files (default: a temporary one)")
    ap.add_argument("--json")
    ap.add_argument("--md")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=metrics.DEFAULT_SEED)
    ap.add_argument("--via", choices=["binding", "cli"], default="binding",
                    help="how the test split's risks are computed (both through the C library)")
    ap.add_argument("--no-plink", action="store_true", help="skip the 500-person PLINK path")
    ap.add_argument("--n-test", type=int, default=0,
                    help="the first N test individuals only (a quick look; the stored baselines' "
                         "AUCs are then not checked)")
    args = ap.parse_args()
    t_start = time.time()

    co = P.Cohort(args.cohort)
    te = co.rows("test")
    if args.n_test:
        te = te[:args.n_test]
    names = co.score_names
    disp = [P.DISPLAY[o] for o in co.outcomes]
    tmp = tempfile.TemporaryDirectory(prefix="eval_polygenic.")
    work = args.out or tmp.name
    os.makedirs(work, exist_ok=True)
    fails = []

    # 1. the test split's risks through the library
    test_ids = [co.ids[i] for i in te]
    scores_te = np.asarray(co.scores[te], dtype=np.float64)
    sscore = os.path.join(work, "test.sscore")
    write_sscore(sscore, test_ids, names, scores_te)
    if args.via == "cli":
        prefix = os.path.join(work, "test")
        secs = prs_predict(args.cli, args.model, disp, prefix, args.threads,
                           ["--scores-in", sscore])
        ids, risk = read_risk(prefix + ".risk", disp)
        if ids != test_ids:
            raise SystemExit("the .risk file's individuals differ from the test split")
        how = "medgemini prs predict --scores-in (6-decimal risks)"
    else:
        import medgemini
        m = medgemini.Model.load(args.model, threads=args.threads)
        t = time.time()
        risk = np.asarray(m.prs_predict_batch(scores_te, names,
                                              [P.question(o) for o in co.outcomes]))
        secs = time.time() - t
        m.close()
        how = "Model.prs_predict_batch of the Python binding (mg_prs_predict_batch)"
    print("%s: %d individuals x %d outcomes in %.1f s (%d thread%s)"
          % (how, len(test_ids), len(disp), secs, args.threads,
             "" if args.threads == 1 else "s"), file=sys.stderr)

    # 2. the command line on the shipped 500-person PLINK set
    plink = None
    if not args.no_plink:
        pp = os.path.join(work, "cohort500")
        secs5 = prs_predict(args.cli, args.model, disp, pp, args.threads,
                            ["--bfile", os.path.join(EXAMPLE, "cohort500"),
                             "--score", os.path.join(EXAMPLE, "weights.tsv.gz")])
        ids5, risk5 = read_risk(pp + ".risk", disp)
        where = {iid: i for i, iid in enumerate(test_ids)}
        idx = [where.get(i) for i in ids5]
        if None in idx:
            raise SystemExit("cohort500 holds individuals outside the (evaluated) test split")
        ss5 = os.path.join(work, "cohort500-rows.sscore")
        write_sscore(ss5, ids5, names, scores_te[idx])
        ps = os.path.join(work, "cohort500-sscore")
        secs5s = prs_predict(args.cli, args.model, disp, ps, args.threads, ["--scores-in", ss5])
        ids5s, risk5s = read_risk(ps + ".risk", disp)
        d_paths = float(np.max(np.abs(risk5 - risk5s)))
        d_main = float(np.max(np.abs(risk5s - risk[idx])))
        y5 = {}
        with open(os.path.join(EXAMPLE, "outcomes.tsv")) as f:
            head = f.readline().split()
            for line in f:
                p = line.split()
                y5[(p[0], p[1])] = [int(v) for v in p[2:]]
        Y5 = np.array([y5[i] for i in ids5])
        auc5 = {o: metrics.auc(Y5[:, head[2:].index(o)], risk5[:, k])
                for k, o in enumerate(co.outcomes)}
        plink = {"individuals": len(ids5), "seconds_bfile": round(secs5, 1),
                 "seconds_sscore": round(secs5s, 1),
                 "max_abs_diff_bfile_vs_sscore": d_paths,
                 "max_abs_diff_cli_vs_step1": d_main, "auc": auc5}
        if ids5s != ids5 or d_paths > 1e-6:
            fails.append("PLINK path risks differ from the .sscore path by %.3g" % d_paths)
        tol = 1e-6 if args.via == "cli" else 5e-7 + 1e-9
        if d_main > tol:
            fails.append("CLI risks on the 500 differ from step 1's by %.3g" % d_main)

    # 3. baselines and AUCs
    with open(args.baselines) as f:
        bl = json.load(f)
    base = baseline_predictions(bl, names, scores_te)
    stored = {o["outcome"]: o for o in bl["outcomes"]}
    rows = []
    for k, o in enumerate(co.outcomes):
        y = co.labels(te, o)
        preds = {"model": risk[:, k], "single": base[o]["single"], "ensemble": base[o]["ensemble"]}
        b = metrics.bootstrap_auc(y, preds, n_boot=args.n_boot, seed=args.seed)
        for kind in ("single", "ensemble") if not args.n_test else ():
            s = stored[o][kind]["test"]
            if abs(b[kind]["auc"] - s["auc"]) > 1e-9 or (
                    args.n_boot == s["n_boot"] and args.seed == bl["bootstrap"]["seed"]
                    and (abs(b[kind]["lo"] - s["lo"]) > 1e-9 or abs(b[kind]["hi"] - s["hi"]) > 1e-9)):
                fails.append("%s %s: recomputed test AUC %.6f [%.6f, %.6f] differs from the "
                             "stored %.6f [%.6f, %.6f]" % (o, kind, b[kind]["auc"], b[kind]["lo"],
                                                           b[kind]["hi"], s["auc"], s["lo"], s["hi"]))
        d_s = metrics.bootstrap_auc_diff(y, risk[:, k], base[o]["single"], args.n_boot, args.seed)
        d_e = metrics.bootstrap_auc_diff(y, risk[:, k], base[o]["ensemble"], args.n_boot, args.seed)
        rows.append({"outcome": o, "display_name": disp[k], "question": P.question(o),
                     "held_out": o in co.held_out, "n_cases": b["model"]["n_cases"],
                     "n_controls": b["model"]["n_controls"],
                     "model": b["model"], "single": dict(b["single"], score=stored[o]["single"]["score"]),
                     "ensemble": b["ensemble"], "model_minus_single": d_s,
                     "model_minus_ensemble": d_e,
                     "mean_risk": float(risk[:, k].mean()), "prevalence": float(y.mean())})

    # report
    lines = ["| outcome | set | test cases | model AUC [95 % CI] | single score AUC [95 % CI] "
             "| ensemble AUC [95 % CI] | model - single [95 % CI] | model - ensemble [95 % CI] |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %s | %d | %s | %s (`%s`) | %s | %s | %s |" % (
            r["display_name"], "held out" if r["held_out"] else "trained", r["n_cases"],
            fmt(r["model"]), fmt(r["single"]), r["single"]["score"], fmt(r["ensemble"]),
            fmt_d(r["model_minus_single"]), fmt_d(r["model_minus_ensemble"])))
    summary = {}
    for kind in ("trained", "held out"):
        sel = [r for r in rows if r["held_out"] == (kind == "held out")]
        summary[kind] = {
            "mean_auc": {k: float(np.mean([r[k]["auc"] for r in sel]))
                         for k in ("model", "single", "ensemble")},
            "model_above_single_ci": sum(r["model_minus_single"]["lo"] > 0 for r in sel),
            "model_below_single_ci": sum(r["model_minus_single"]["hi"] < 0 for r in sel),
            "model_above_ensemble_ci": sum(r["model_minus_ensemble"]["lo"] > 0 for r in sel),
            "model_below_ensemble_ci": sum(r["model_minus_ensemble"]["hi"] < 0 for r in sel),
            "n": len(sel)}
        s = summary[kind]
        lines.append("")
        lines.append("%s outcomes (%d): mean AUC model %.3f, single %.3f, ensemble %.3f; model "
                     "above / below single (95 %% CI of the paired difference excludes 0): %d / %d; "
                     "above / below ensemble: %d / %d" % (
                         kind.capitalize(), s["n"], s["mean_auc"]["model"],
                         s["mean_auc"]["single"], s["mean_auc"]["ensemble"],
                         s["model_above_single_ci"], s["model_below_single_ci"],
                         s["model_above_ensemble_ci"], s["model_below_ensemble_ci"]))
    lines.append("")
    lines.append("Risks: %s, %d test individuals, %.0f s. Intervals: percentile bootstrap, "
                 "%d resamples of the test split, seed %d, paired with the stored baselines."
                 % (how, len(test_ids), secs, args.n_boot, args.seed))
    if plink:
        lines.append("")
        lines.append("PLINK path (cohort500, %d individuals, `prs predict --bfile --score`): max "
                     "|risk - `--scores-in` path| = %.2g, max |CLI - risks above| = %.2g; AUC on "
                     "these 500: %s" % (
                         plink["individuals"], plink["max_abs_diff_bfile_vs_sscore"],
                         plink["max_abs_diff_cli_vs_step1"],
                         ", ".join("%s %.3f" % (P.DISPLAY[o], a) for o, a in plink["auc"].items())))
    md = "\n".join(lines) + "\n"
    sys.stdout.write(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": os.path.abspath(args.model), "cohort": os.path.abspath(args.cohort),
                       "split": "test", "n_test": len(te),
                       "bootstrap": {"n_boot": args.n_boot, "seed": args.seed,
                                     "interval": "percentile 95 %", "paired_with": args.baselines},
                       "risks_via": how, "risk_seconds": secs, "threads": args.threads,
                       "outcomes": rows, "summary": summary, "plink500": plink,
                       "checks_failed": fails, "seconds": time.time() - t_start}, f, indent=1)
    for msg in fails:
        print("eval_polygenic: FAIL: " + msg, file=sys.stderr)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
