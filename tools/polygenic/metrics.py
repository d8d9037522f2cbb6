"""metrics.py - ROC AUC with bootstrap confidence intervals (numpy only).

    from metrics import auc, bootstrap_auc, bootstrap_auc_diff

auc(y, s)
    Area under the ROC curve of scores s for 0/1 labels y: the Mann-Whitney
    probability that a random case scores above a random control, ties
    counting one half. NaN when y has no case or no control.

bootstrap_auc(y, preds, n_boot=1000, seed=20240601, alpha=0.05)
    preds: one score array, or a dict name -> score array (same individuals).
    Resamples individuals with replacement n_boot times (the same resamples
    for every entry of preds, so intervals of different models are paired)
    and returns, per entry, {"auc", "lo", "hi", "se", "n_boot", "n_cases",
    "n_controls"}: the AUC on the full set and the percentile interval
    (alpha/2, 1 - alpha/2) of the bootstrap AUCs. A resample with no case or
    no control is skipped (counted in "n_boot").

bootstrap_auc_diff(y, a, b, n_boot=1000, seed=20240601, alpha=0.05)
    Paired difference AUC(a) - AUC(b) with its percentile interval and the
    fraction of resamples where the difference is <= 0 ("p_le_0").

Resamples are drawn from numpy.random.default_rng(seed) as index vectors
(rng.integers(0, n, n) per resample, in order), so the same seed, n and n_boot
give the same resamples in any later evaluation; each resample's AUC is
computed exactly from the multiplicities of the individuals (one sort of the
scores per call), which equals the AUC of the resampled vectors.
"""
import numpy as np

DEFAULT_SEED = 20240601


def _tie_groups(s):
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    starts = np.flatnonzero(np.concatenate([[True], ss[1:] != ss[:-1]]))
    return order, starts


def _weighted_auc(y_sorted, counts_sorted, starts):
    """AUC for each row of counts (resamples x n, columns in score order)."""
    pos = counts_sorted * y_sorted[None, :]
    neg = counts_sorted - pos
    gp = np.add.reduceat(pos, starts, axis=1)
    gn = np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(gn, axis=1) - gn
    num = (gp * (below + 0.5 * gn)).sum(axis=1)
    den = gp.sum(axis=1) * gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def auc(y, s):
    y = np.asarray(y).astype(np.float64)
    s = np.asarray(s, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("auc: y and s must be 1-D of the same length")
    if np.isnan(s).any():
        raise ValueError("auc: NaN score")
    order, starts = _tie_groups(s)
    return float(_weighted_auc(y[order], np.ones((1, y.size)), starts)[0])


def resample_counts(n, n_boot=1000, seed=DEFAULT_SEED, batch=100):
    """Yields (resamples x n) multiplicity matrices, `batch` resamples at a time."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(batch, n_boot - done)
        c = np.zeros((b, n))
        for r in range(b):
            c[r] = np.bincount(rng.integers(0, n, size=n), minlength=n)
        done += b
        yield c


def bootstrap_aucs(y, preds, n_boot=1000, seed=DEFAULT_SEED):
    """dict name -> array of n_boot bootstrap AUCs (NaN for a resample with
    no case or no control), on shared resamples."""
    single = not isinstance(preds, dict)
    preds = {"_": preds} if single else preds
    y = np.asarray(y).astype(np.float64)
    prep = {}
    for k, s in preds.items():
        s = np.asarray(s, dtype=np.float64)
        if s.shape != y.shape:
            raise ValueError(f"bootstrap: {k} has {s.shape} scores for {y.shape} labels")
        order, starts = _tie_groups(s)
        prep[k] = (order, starts, y[order])
    out = {k: [] for k in preds}
    for c in resample_counts(y.size, n_boot, seed):
        for k, (order, starts, ys) in prep.items():
            out[k].append(_weighted_auc(ys, c[:, order], starts))
    res = {k: np.concatenate(v) for k, v in out.items()}
    return res["_"] if single else res


def _summary(point, boots, alpha):
    ok = boots[~np.isnan(boots)]
    lo, hi = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if ok.size else (np.nan, np.nan)
    return dict(auc=float(point), lo=float(lo), hi=float(hi), se=float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
                n_boot=int(ok.size))


def bootstrap_auc(y, preds, n_boot=1000, seed=DEFAULT_SEED, alpha=0.05):
    single = not isinstance(preds, dict)
    d = {"_": preds} if single else preds
    boots = bootstrap_aucs(y, d, n_boot, seed)
    y = np.asarray(y)
    res = {}
    for k, s in d.items():
        r = _summary(auc(y, s), boots[k], alpha)
        r["n_cases"] = int((y == 1).sum())
        r["n_controls"] = int((y == 0).sum())
        res[k] = r
    return res["_"] if single else res


def bootstrap_auc_diff(y, a, b, n_boot=1000, seed=DEFAULT_SEED, alpha=0.05):
    boots = bootstrap_aucs(y, {"a": a, "b": b}, n_boot, seed)
    d = boots["a"] - boots["b"]
    r = _summary(auc(y, a) - auc(y, b), d, alpha)
    r["diff"] = r.pop("auc")
    ok = d[~np.isnan(d)]
    r["p_le_0"] = float((ok <= 0).mean()) if ok.size else float("nan")
    return r


def _self_test():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(int)
    s = np.round(rng.standard_normal(300) + y, 1)       # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert abs(auc(y, s) - brute) < 1e-12, (auc(y, s), brute)
    # weighted resample AUC == AUC of the explicitly resampled vectors
    rng2 = np.random.default_rng(DEFAULT_SEED)
    idx = rng2.integers(0, y.size, size=y.size)
    b0 = bootstrap_aucs(y, s, n_boot=1, seed=DEFAULT_SEED)[0]
    assert abs(b0 - auc(y[idx], s[idx])) < 1e-12, (b0, auc(y[idx], s[idx]))
    assert abs(auc(y, -s) - (1 - brute)) < 1e-12
    r = bootstrap_auc(y, s, n_boot=200)
    assert r["lo"] < r["auc"] < r["hi"]
    print("metrics self-test: OK")


if __name__ == "__main__":
    _self_test()
