#!/usr/bin/python3
"""baselines.py - logistic-regression baselines on the simulated cohort's scores.

    /usr/bin/python3 tools/polygenic/baselines.py [--cohort lib/polygenic/seed1]
        [--out DIR] [--n-boot 1000] [--boot-seed 20240601]

Per outcome (trained and held out alike), on the 192 score SUMs standardized
with the training split's mean and SD:
  single    the one score with the best validation AUC (each score oriented by
            the sign of its case-control mean difference in the training
            split), then a logistic regression on it (intercept + 1 weight)
  ensemble  a logistic regression on all scores (the linear ensemble)
Both are fitted on the training split by Newton's method (IRLS) with an L2
penalty lambda * n / 2 * |w|^2 (intercept free); lambda is picked from a grid
by validation AUC. Test AUC with a percentile bootstrap 95 % interval (metrics
.bootstrap_auc, shared resamples, so single, ensemble and any later model on
the same seed are paired), and the paired ensemble - single difference.
The held-out outcomes' baselines are fitted on those outcomes' own labels:
they are what a model that never saw those labels is compared against, not
models that share its handicap.

Writes DIR/baselines.json and DIR/baselines.md (DIR = --out, default the
cohort folder).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import metrics  # noqa: E402

LAMBDAS = [1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6]


def fit_logistic(X, y, lam, w0=None, tol=1e-9, max_iter=100):
    """L2-penalized logistic regression by Newton's method. X: n x p (no
    intercept column), y: 0/1. Minimizes sum(logloss) + lam * n / 2 * |w|^2;
    returns (intercept, w)."""
    n, p = X.shape
    Xa = np.hstack([np.ones((n, 1)), X])
    beta = np.zeros(p + 1) if w0 is None else w0.copy()
    pen = np.full(p + 1, lam * n)
    pen[0] = 0.0
    y = y.astype(np.float64)

    def loss(b):
        eta = Xa @ b
        return float(np.sum(np.logaddexp(0, eta) - y * eta) + 0.5 * np.sum(pen * b * b))

    cur = loss(beta)
    for _ in range(max_iter):
        eta = Xa @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        g = Xa.T @ (mu - y) + pen * beta
        wts = mu * (1 - mu)
        H = (Xa * wts[:, None]).T @ Xa
        H[np.diag_indices_from(H)] += pen + 1e-12
        step = np.linalg.solve(H, g)
        t = 1.0
        while True:
            nb = beta - t * step
            nl = loss(nb)
            if nl <= cur + 1e-12 * abs(cur) or t < 1e-6:
                break
            t *= 0.5
        beta, done = nb, abs(cur - nl) <= tol * max(1.0, abs(cur))
        cur = nl
        if done or np.max(np.abs(t * step)) < 1e-10:
            break
    return beta[0], beta[1:]


def predict(b0, w, X):
    return b0 + X @ w


def fit_tuned(Xtr, ytr, Xva, yva):
    """Fits every lambda of the grid (warm starts, largest first); returns the
    one with the best validation AUC: (lambda, b0, w, val_auc, grid)."""
    best, grid, w0 = None, [], None
    for lam in LAMBDAS:
        b0, w = fit_logistic(Xtr, ytr, lam, w0)
        w0 = np.concatenate([[b0], w])
        va = metrics.auc(yva, predict(b0, w, Xva))
        grid.append(dict(lam=lam, val_auc=round(va, 5)))
        if best is None or va > best[3] + 1e-12:
            best = (lam, b0, w, va)
    return best + (grid,)


def read_table(path):
    with open(path) as f:
        head = f.readline().split()
        rows = [line.split() for line in f]
    return head, rows


def fmt_ci(r):
    return f"{r['auc']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def main(argv=None):
    ap = argparse.ArgumentParser(description="logistic-regression baselines (single best score, ensemble)")
    ap.add_argument("--cohort", default=os.path.join(ROOT, "lib", "polygenic", "seed1"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--boot-seed", type=int, default=metrics.DEFAULT_SEED)
    a = ap.parse_args(argv)
    out = a.out or a.cohort
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    meta = json.load(open(os.path.join(a.cohort, "cohort.json")))
    S = np.load(os.path.join(a.cohort, "scores.npy"))
    names = meta["score_names"]
    head, rows = read_table(os.path.join(a.cohort, "outcomes.tsv"))
    onames = head[2:]
    Y = np.array([r[2:] for r in rows], dtype=np.int8)
    _, srows = read_table(os.path.join(a.cohort, "split.tsv"))
    split = np.array([r[2] for r in srows])
    assert [r[1] for r in rows] == [r[1] for r in srows], "outcomes.tsv and split.tsv differ in order"
    tr, va, te = split == "train", split == "val", split == "test"
    mean = S[tr].mean(axis=0)
    sd = S[tr].std(axis=0)
    usable = sd > 0
    Z = np.where(usable, (S - mean) / np.where(usable, sd, 1.0), 0.0)
    truth_path = os.path.join(a.cohort, "truth.npz")
    truth = np.load(truth_path) if os.path.exists(truth_path) else None
    held = set(meta["held_out_outcomes"])

    res = []
    for k, on in enumerate(onames):
        y = Y[:, k]
        # single best score: oriented by the training split, chosen on validation
        diff = Z[tr][y[tr] == 1].mean(axis=0) - Z[tr][y[tr] == 0].mean(axis=0)
        orient = np.where(diff >= 0, 1.0, -1.0)
        vals = np.array([metrics.auc(y[va], orient[j] * Z[va, j]) if usable[j] else 0.5
                         for j in range(len(names))])
        j = int(np.argmax(vals))
        lam1, b01, w1, va1, grid1 = fit_tuned(Z[tr][:, [j]], y[tr], Z[va][:, [j]], y[va])
        # ensemble on all (non-constant) scores
        cols = np.flatnonzero(usable)
        lamE, b0E, wE, vaE, gridE = fit_tuned(Z[tr][:, cols], y[tr], Z[va][:, cols], y[va])
        pred1 = predict(b01, w1, Z[te][:, [j]])
        predE = predict(b0E, wE, Z[te][:, cols])
        preds = {"single": pred1, "ensemble": predE}
        if truth is not None:
            preds["genetic_liability"] = truth["outcome_g"][te, list(truth["outcome_names"]).index(on)].astype(np.float64)
        boot = metrics.bootstrap_auc(y[te], preds, n_boot=a.n_boot, seed=a.boot_seed)
        dES = metrics.bootstrap_auc_diff(y[te], predE, pred1, n_boot=a.n_boot, seed=a.boot_seed)
        wfull = np.zeros(len(names))
        wfull[cols] = wE
        r = dict(
            outcome=on, held_out=on in held, baselines_use_outcome_labels=True,
            prevalence={"train": round(float(y[tr].mean()), 5), "val": round(float(y[va].mean()), 5),
                        "test": round(float(y[te].mean()), 5)},
            n_test_cases=boot["single"]["n_cases"], n_test_controls=boot["single"]["n_controls"],
            single=dict(score=names[j], orientation=int(orient[j]), val_auc_of_score=round(float(vals[j]), 5),
                        top5_val=[dict(score=names[i], val_auc=round(float(vals[i]), 5))
                                  for i in np.argsort(-vals)[:5]],
                        lam=lam1, intercept=float(b01), coef=float(w1[0]), val_auc=round(float(va1), 5),
                        test=boot["single"]),
            ensemble=dict(lam=lamE, intercept=float(b0E), coef=dict(zip(names, [float(v) for v in wfull])),
                          val_auc=round(float(vaE), 5), lam_grid=gridE, test=boot["ensemble"]),
            ensemble_minus_single=dES,
        )
        if truth is not None:
            r["genetic_liability_test"] = boot["genetic_liability"]
        res.append(r)
        print(f"[{time.time() - t0:6.1f} s] {on}: single {names[j]} {fmt_ci(boot['single'])}, "
              f"ensemble (lambda {lamE:g}) {fmt_ci(boot['ensemble'])}", file=sys.stderr, flush=True)

    doc = dict(
        generator="tools/polygenic/baselines.py", cohort=os.path.basename(os.path.normpath(a.cohort)),
        cohort_seed=meta["seed"], versions=dict(python=platform.python_version(), numpy=np.__version__),
        inputs=("score SUMs (scores.npy) standardized with the training split's mean and SD "
                "(z = (SUM - mean) / sd; constant scores left out of the ensemble)"),
        standardization=dict(mean=dict(zip(names, [float(v) for v in mean])),
                             sd=dict(zip(names, [float(v) for v in sd]))),
        model="logistic regression, Newton/IRLS, L2 penalty lam * n_train / 2 * |w|^2 on the weights "
              "(intercept unpenalized), lam chosen on the validation split by AUC",
        lam_grid=LAMBDAS,
        bootstrap=dict(n_boot=a.n_boot, seed=a.boot_seed, interval="percentile 95 %",
                       resampling="individuals of the test split, with replacement; the same resamples "
                                  "for every model (metrics.bootstrap_auc)"),
        note_held_out=("held-out outcomes' baselines are fitted on their own training labels; a model "
                       "trained without those labels is compared against them"),
        outcomes=res,
    )
    with open(os.path.join(out, "baselines.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    lines = ["| outcome | set | test prevalence (cases) | best single score | single AUC [95 % CI] | "
             "ensemble AUC [95 % CI] | ensemble - single [95 % CI] | true genetic liability AUC |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res:
        d = r["ensemble_minus_single"]
        gl = fmt_ci(r["genetic_liability_test"]) if "genetic_liability_test" in r else "-"
        lines.append(f"| {r['outcome']} | {'held out' if r['held_out'] else 'trained'} | "
                     f"{100 * r['prevalence']['test']:.1f} % ({r['n_test_cases']}) | `{r['single']['score']}` | "
                     f"{fmt_ci(r['single']['test'])} | {fmt_ci(r['ensemble']['test'])} | "
                     f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] | {gl} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(out, "baselines.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"baselines: {time.time() - t0:.0f} s; wrote {out}/baselines.json and baselines.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
