#!/usr/bin/python3
"""summarize.py - Markdown tables of a simulated cohort's realized figures
(the ones tools/polygenic/README.md quotes).

    /usr/bin/python3 tools/polygenic/summarize.py [--cohort lib/polygenic/seed1] > summary.md

Reads cohort.json and truth.npz: outcomes (prevalence per split, liability
heritability, the traits they correlate with most), the outcomes' genetic
correlation matrix, the traits' block structure, and the scores' variant
counts and correlation with the true genetic liabilities per threshold.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

ABBR = {"coronary_artery_disease": "CAD", "stroke": "STR", "type_2_diabetes": "T2D", "glaucoma": "GLA",
        "copd": "COPD", "rheumatoid_arthritis": "RA", "depression": "DEP", "all_cause_mortality": "MORT",
        "heart_failure": "HF", "hypertension": "HTN", "asthma": "AST"}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cohort", default=os.path.join(ROOT, "lib", "polygenic", "seed1"))
    a = ap.parse_args(argv)
    m = json.load(open(os.path.join(a.cohort, "cohort.json")))
    tr = np.load(os.path.join(a.cohort, "truth.npz"))
    p = print
    p(f"Cohort: seed {m['seed']}, {m['n_individuals']:,} individuals, {m['n_variants']:,} variants "
      f"({m['n_causal']:,} causal), numpy {m['versions']['numpy']}.\n")
    p("| outcome | set | prevalence target | realized all / train / val / test | h2 target | h2 realized (liability) | traits with the largest genetic correlation |")
    p("|---|---|---|---|---|---|---|")
    for o in m["outcomes"]:
        pr = o["prevalence"]
        top = ", ".join(f"{t} {v:+.2f}" for t, v in list(o["genetic_corr_top_traits"].items())[:4])
        p(f"| {o['name']} | {'held out' if o['held_out'] else 'trained'} | {100 * o['prevalence_target']:.0f} % | "
          f"{100 * pr['all']:.2f} / {100 * pr['train']:.2f} / {100 * pr['val']:.2f} / {100 * pr['test']:.2f} % | "
          f"{o['h2_target']:.2f} | {o['h2_liability']:.3f} | {top} |")
    names = [o["name"] for o in m["outcomes"]]
    rg = tr["outcome_rg"]
    p("\nGenetic correlation of the outcomes' genetic liabilities (cohort):\n")
    p("| | " + " | ".join(ABBR.get(n, n) for n in names) + " |")
    p("|---" * (len(names) + 1) + "|")
    for i, n in enumerate(names):
        p(f"| {ABBR.get(n, n)} | " + " | ".join("1" if i == j else f"{rg[i, j]:.2f}" for j in range(len(names))) + " |")
    s = m["trait_genetic_correlation"]
    p(f"\nTraits' genetic liabilities, mean |correlation| (cohort; model in brackets): within a block "
      f"{s['mean_abs_within_block']:.3f} ({s['model_mean_abs_within_block']:.3f}), between the two blocks of a "
      f"super-block {s['mean_abs_within_superblock_other_block']:.3f} "
      f"({s['model_mean_abs_within_superblock_other_block']:.3f}), across super-blocks "
      f"{s['mean_abs_across_superblocks']:.3f} ({s['model_mean_abs_across_superblocks']:.3f}).\n")
    p("| threshold | variants per score: min / median / max | empty scores | r(score, true liability): min / median / max |")
    p("|---|---|---|---|")
    for th in m["thresholds"]:
        n = np.array([t["n_variants"][th["name"]] for t in m["traits"]])
        r = np.array([np.nan if t["r_score_liability"][th["name"]] is None else t["r_score_liability"][th["name"]]
                      for t in m["traits"]])
        p(f"| `{th['name']}` (p < {th['p_below']:g}) | {n.min()} / {int(np.median(n))} / {n.max()} | "
          f"{int((n == 0).sum())} | {np.nanmin(r):.2f} / {np.nanmedian(r):.2f} / {np.nanmax(r):.2f} |")
    best = np.array([max(v for v in t["r_score_liability"].values() if v is not None) for t in m["traits"]])
    gn = np.array([t["gwas_n"] for t in m["traits"]])
    p(f"\nBest threshold per trait: r(score, true liability) {best.min():.2f} to {best.max():.2f} "
      f"(median {np.median(best):.2f}); GWAS n {gn.min():,} to {gn.max():,}.")
    empty = [f"{t['name']}_{k}" for t in m["traits"] for k, v in t["n_variants"].items() if v == 0]
    if empty:
        p("Scores with no variant (all weights 0, SUM 0 for everyone): " + ", ".join(f"`{e}`" for e in empty) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
