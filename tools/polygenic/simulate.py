#!/usr/bin/python3
"""simulate.py - a simulated biobank cohort for polygenic-score modelling.

    /usr/bin/python3 tools/polygenic/simulate.py [--seed 1] [--n 100000]
        [--variants 6000] [--missing-rate 0] [--out lib/polygenic/seed1]

Genotypes (independent SNPs on chromosomes 1-22, Hardy-Weinberg), 64
quantitative traits in 8 blocks of 8 whose true effects are block-correlated,
each trait's genetic liability (genotypes x true effects, standardized), a
summary-level GWAS per trait in an external discovery sample (estimated
effect = true effect + noise of variance 1/N_gwas), clumping-free
pruning-and-thresholding scores at three p-value thresholds (the weights
written to one wide score file, the scores computed from the genotypes as
plink2 --score computes its SUM column), 11 binary outcomes by a liability
threshold model on the traits' genetic liabilities (8 for training, 3 held
out), and a fixed train/validation/test split.

Everything derives from --seed through numpy's SeedSequence; the same seed,
numpy and BLAS give the same bytes. See tools/polygenic/README.md.
"""
import argparse
import gzip
import io
import json
import math
import os
import platform
import statistics
import sys
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import plinkio  # noqa: E402

VERSION = 1

# GRCh37 autosome lengths (bp): variants are spread over them in proportion.
CHROM_LEN = [249250621, 243199373, 198022430, 191154276, 180915260, 171115067, 159138663,
             146364022, 141213431, 135534747, 135006516, 133851895, 115169878, 107349540,
             102531392, 90354753, 81195210, 78077248, 59128983, 63025520, 48129895, 51304566]

# 8 blocks of 8 traits. The sign orients a trait against its block's shared
# genetic factor (HDL-C against the lipid factor, FEV1 against the lung
# factor...). Blocks pair into four super-blocks sharing a weaker factor.
BLOCKS = [
    ("lipids", "metabolic", [("ldl_c", 1), ("total_chol", 1), ("apob", 1), ("triglycerides", 1),
                             ("remnant_chol", 1), ("lpa", 1), ("hdl_c", -1), ("apoa1", -1)]),
    ("glycaemic", "metabolic", [("fasting_glucose", 1), ("hba1c", 1), ("fasting_insulin", 1),
                                ("homa_ir", 1), ("c_peptide", 1), ("uric_acid", 1), ("alt_enzyme", 1),
                                ("adiponectin", -1)]),
    ("cardiac", "cardiovascular", [("sbp", 1), ("dbp", 1), ("pulse_pressure", 1),
                                   ("mean_arterial_pressure", 1), ("heart_rate", 1), ("lv_mass", 1),
                                   ("nt_probnp", 1), ("arterial_stiffness", 1)]),
    ("anthropometric", "cardiovascular", [("bmi", 1), ("waist_hip_ratio", 1), ("body_fat_pct", 1),
                                          ("waist_circ", 1), ("body_weight", 1), ("hip_circ", 1),
                                          ("visceral_fat", 1), ("fat_free_mass", 1)]),
    ("immune", "immune_lung", [("crp", 1), ("il6", 1), ("wbc_count", 1), ("neutrophil_count", 1),
                               ("lymphocyte_count", 1), ("esr", 1), ("rheumatoid_factor", 1),
                               ("anti_ccp", 1)]),
    ("lung", "immune_lung", [("fev1", -1), ("fvc", -1), ("fev1_fvc", -1), ("pef", -1),
                             ("smoking_initiation", 1), ("cigs_per_day", 1), ("eosinophil_count", 1),
                             ("total_ige", 1)]),
    ("eye", "eye_brain", [("iop", 1), ("vcdr", 1), ("cup_area", 1), ("disc_area", 1), ("cct", -1),
                          ("rnfl_thickness", -1), ("axial_length", 1), ("refractive_error", -1)]),
    ("psych", "eye_brain", [("neuroticism", 1), ("depressive_symptoms", 1), ("insomnia", 1),
                            ("loneliness", 1), ("anxiety", 1), ("risk_tolerance", 1),
                            ("educational_attainment", -1), ("cognitive_performance", -1)]),
]

# Outcomes: (name, held out?, prevalence, liability-scale heritability, raw
# weights on the traits' standardized genetic liabilities). The weights are
# rescaled so that the genetic part has variance = heritability in the cohort.
OUTCOMES = [
    ("coronary_artery_disease", False, 0.08, 0.40,
     {"ldl_c": 1.0, "apob": 0.5, "lpa": 0.6, "hdl_c": -0.4, "sbp": 0.5, "hba1c": 0.3,
      "smoking_initiation": 0.3, "crp": 0.2}),
    ("stroke", False, 0.05, 0.25,
     {"sbp": 1.0, "dbp": 0.4, "arterial_stiffness": 0.4, "ldl_c": 0.3, "hba1c": 0.2,
      "heart_rate": 0.2, "smoking_initiation": 0.2}),
    ("type_2_diabetes", False, 0.10, 0.45,
     {"hba1c": 1.0, "fasting_glucose": 0.6, "homa_ir": 0.6, "bmi": 0.7, "waist_hip_ratio": 0.5,
      "triglycerides": 0.3, "adiponectin": -0.3}),
    ("glaucoma", False, 0.04, 0.50,
     {"iop": 1.0, "vcdr": 0.8, "cup_area": 0.4, "cct": -0.3, "axial_length": 0.2}),
    ("copd", False, 0.06, 0.30,
     {"fev1_fvc": -1.0, "fev1": -0.6, "smoking_initiation": 0.5, "cigs_per_day": 0.5,
      "eosinophil_count": 0.2}),
    ("rheumatoid_arthritis", False, 0.04, 0.55,
     {"anti_ccp": 1.0, "rheumatoid_factor": 0.8, "crp": 0.3, "lymphocyte_count": 0.3, "esr": 0.2}),
    ("depression", False, 0.15, 0.25,
     {"depressive_symptoms": 1.0, "neuroticism": 0.7, "insomnia": 0.4, "loneliness": 0.3,
      "anxiety": 0.3, "bmi": 0.1}),
    ("all_cause_mortality", False, 0.12, 0.22,
     {"sbp": 0.4, "ldl_c": 0.2, "smoking_initiation": 0.5, "cigs_per_day": 0.3, "bmi": 0.3,
      "educational_attainment": -0.4, "hba1c": 0.3, "fev1": -0.3, "crp": 0.2, "nt_probnp": 0.2}),
    ("heart_failure", True, 0.05, 0.35,
     {"nt_probnp": 0.8, "lv_mass": 0.7, "sbp": 0.5, "bmi": 0.6, "hba1c": 0.2, "heart_rate": 0.3,
      "crp": 0.1}),
    ("hypertension", True, 0.17, 0.40,
     {"sbp": 1.0, "dbp": 0.8, "pulse_pressure": 0.3, "bmi": 0.5, "waist_hip_ratio": 0.3,
      "uric_acid": 0.2}),
    ("asthma", True, 0.09, 0.35,
     {"eosinophil_count": 1.0, "total_ige": 0.8, "fev1_fvc": -0.5, "crp": 0.2,
      "smoking_initiation": 0.2, "bmi": 0.2}),
]

THRESHOLDS = [("p1e6", 1e-6), ("p1e3", 1e-3), ("p05", 0.05)]
SPLIT_RULE = "row index i (0-based, .fam order): i % 10 in 0-7 train, 8 validation, 9 test"
WEIGHT_DECIMALS = 8


def save_npz(path, **arrays):
    """np.savez_compressed with fixed zip timestamps (the same bytes each run)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(v), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue(),
                       compress_type=zipfile.ZIP_DEFLATED)


def split_of(n):
    r = np.arange(n) % 10
    return np.where(r < 8, "train", np.where(r == 8, "val", "test"))


def log(msg, t0):
    print(f"[{time.time() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=100000, help="individuals (default 100000)")
    ap.add_argument("--variants", type=int, default=6000, help="SNPs (default 6000)")
    ap.add_argument("--causal-fraction", type=float, default=0.2,
                    help="fraction of SNPs with effects (shared by all traits; default 0.2)")
    ap.add_argument("--maf", type=float, nargs=2, default=[0.02, 0.5], metavar=("LO", "HI"),
                    help="minor allele frequency range, uniform (default 0.02 0.5)")
    ap.add_argument("--trait-h2", type=float, nargs=2, default=[0.1, 0.5], metavar=("LO", "HI"),
                    help="SNP heritability of each trait's phenotype in the GWAS, uniform")
    ap.add_argument("--gwas-n", type=float, nargs=2, default=[3000, 60000], metavar=("LO", "HI"),
                    help="discovery GWAS sample size per trait, log-uniform (default 3000 60000)")
    ap.add_argument("--missing-rate", type=float, default=0.0,
                    help="fraction of genotype calls set missing in the .bed (default 0)")
    ap.add_argument("--chunk", type=int, default=256, help="variants per block (memory)")
    ap.add_argument("--no-text-scores", action="store_true",
                    help="skip scores.tsv.gz (scores.npy is always written)")
    ap.add_argument("--out", default=None, help="output folder (default lib/polygenic/seed<SEED>)")
    a = ap.parse_args(argv)
    out = a.out or os.path.join(ROOT, "lib", "polygenic", f"seed{a.seed}")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()

    N, M = a.n, a.variants
    trait_names = [t for _, _, ts in BLOCKS for t, _ in ts]
    T = len(trait_names)
    O = len(OUTCOMES)
    ss = np.random.SeedSequence(a.seed)
    (rng_var, rng_eff, rng_gwas, rng_geno, rng_miss, rng_fam, rng_env) = [
        np.random.default_rng(s) for s in ss.spawn(7)]

    # ---- variants -------------------------------------------------------------
    share = np.array(CHROM_LEN, dtype=np.float64) / sum(CHROM_LEN)
    per_chr = np.floor(share * M).astype(int)
    per_chr[np.argsort(-(share * M - per_chr))[:M - per_chr.sum()]] += 1
    chrom, pos = [], []
    for c, (n_c, length) in enumerate(zip(per_chr, CHROM_LEN), start=1):
        p = np.unique(rng_var.integers(10000, length - 10000, size=n_c))
        while p.size < n_c:
            p = np.unique(np.concatenate([p, rng_var.integers(10000, length - 10000, size=n_c - p.size)]))
        chrom += [str(c)] * n_c
        pos.append(np.sort(p))
    pos = np.concatenate(pos)
    pairs = [("A", "C"), ("A", "G"), ("C", "A"), ("C", "T"), ("G", "A"), ("G", "T"), ("T", "C"), ("T", "G")]
    pk = rng_var.integers(0, len(pairs), size=M)
    a1 = [pairs[k][0] for k in pk]   # A1: the minor (counted) allele
    a2 = [pairs[k][1] for k in pk]
    ids = [f"{c}:{p}" for c, p in zip(chrom, pos)]
    maf = rng_var.uniform(a.maf[0], a.maf[1], size=M)
    named_a1 = rng_var.random(M) < 0.5      # effect allele in the score file: A1 or A2
    sd = np.sqrt(2 * maf * (1 - maf))

    # ---- true effects: block-correlated across traits ---------------------------
    block_of = np.repeat(np.arange(len(BLOCKS)), 8)
    supers = sorted({s for _, s, _ in BLOCKS}, key=[s for _, s, _ in BLOCKS].index)
    super_of = np.array([supers.index(BLOCKS[b][1]) for b in block_of])
    sign = np.array([s for _, _, ts in BLOCKS for _, s in ts], dtype=np.float64)
    block_centre = rng_eff.uniform(0.5, 0.8, size=len(BLOCKS))
    lam_block = np.clip(block_centre[block_of] + rng_eff.uniform(-0.1, 0.1, size=T), 0.3, 0.9)
    lam_super = rng_eff.uniform(0.2, 0.4, size=T)
    lam_global = rng_eff.uniform(0.1, 0.3, size=T)
    shared = lam_block ** 2 + lam_super ** 2 + lam_global ** 2
    shrink = np.sqrt(np.minimum(1.0, 0.95 / shared))              # keep >= 5 % trait-specific
    lam_block, lam_super, lam_global = lam_block * shrink, lam_super * shrink, lam_global * shrink
    resid = 1 - lam_block ** 2 - lam_super ** 2 - lam_global ** 2
    # model genetic correlation of the traits' effects
    L = np.zeros((T, 1 + len(supers) + len(BLOCKS)))
    L[:, 0] = lam_global
    L[np.arange(T), 1 + super_of] = lam_super
    L[np.arange(T), 1 + len(supers) + block_of] = lam_block
    L *= sign[:, None]
    rg_model = L @ L.T + np.diag(resid)

    causal = np.sort(rng_eff.choice(M, size=int(round(a.causal_fraction * M)), replace=False))
    mc = causal.size
    scale = np.sqrt(rng_eff.gamma(0.5, 2.0, size=mc))            # heavy-tailed, shared
    factors = rng_eff.standard_normal((mc, L.shape[1]))
    beta_c = factors @ L.T + rng_eff.standard_normal((mc, T)) * np.sqrt(resid)
    beta_c *= scale[:, None]
    h2_trait = rng_eff.uniform(a.trait_h2[0], a.trait_h2[1], size=T)
    beta_c *= np.sqrt(h2_trait / (beta_c ** 2).sum(axis=0))       # sum beta^2 = h2 exactly
    beta = np.zeros((M, T))
    beta[causal] = beta_c                                          # per standardized genotype
    b_allele = beta / sd[:, None]                                  # per A1 allele

    # ---- GWAS in an external discovery sample -----------------------------------
    gwas_n = np.exp(rng_gwas.uniform(math.log(a.gwas_n[0]), math.log(a.gwas_n[1]), size=T))
    gwas_n = np.round(gwas_n).astype(np.int64)
    se = 1.0 / np.sqrt(gwas_n)
    beta_hat = beta + rng_gwas.standard_normal((M, T)) * se[None, :]
    z = beta_hat / se[None, :]
    erfc = np.frompyfunc(math.erfc, 1, 1)
    pval = erfc(np.abs(z) / math.sqrt(2)).astype(np.float64)
    w_a1 = beta_hat / sd[:, None]                                  # per A1 allele
    w_named = np.where(named_a1[:, None], w_a1, -w_a1)             # per effect allele
    w_units = np.rint(w_named * 10 ** WEIGHT_DECIMALS).astype(np.int64)
    score_names, cols = [], []
    for t, tn in enumerate(trait_names):
        for thn, thv in THRESHOLDS:
            score_names.append(f"{tn}_{thn}")
            cols.append(np.where(pval[:, t] < thv, w_units[:, t], 0))
    W_units = np.stack(cols, axis=1)                               # M x (T*3)
    K = W_units.shape[1]
    n_in_score = (W_units != 0).sum(axis=0)
    log(f"{M} variants, {mc} causal; GWAS n {gwas_n.min()}-{gwas_n.max()}; "
        f"variants per score: {dict((thn, [int(n_in_score[j::3].min()), int(np.median(n_in_score[j::3])), int(n_in_score[j::3].max())]) for j, (thn, _) in enumerate(THRESHOLDS))} (min/median/max)", t0)

    # ---- genotypes, .bed, liabilities and scores ----------------------------------
    prefix = os.path.join(out, "cohort")
    plinkio.write_bim(prefix + ".bim", chrom, ids, pos, a1, a2)
    sex = rng_fam.integers(1, 3, size=N)
    iid = [f"S{i + 1:06d}" for i in range(N)]
    plinkio.write_fam(prefix + ".fam", iid, iid, sex)
    bed = plinkio.BedWriter(prefix + ".bed", N)
    g_raw = np.zeros((N, T))
    s_units = np.zeros((N, K))
    W_f = W_units.astype(np.float64)
    p2 = (maf ** 2).astype(np.float32)
    p2het = (maf ** 2 + 2 * maf * (1 - maf)).astype(np.float32)
    n_missing = 0
    for lo in range(0, M, a.chunk):
        hi = min(M, lo + a.chunk)
        u = rng_geno.random((hi - lo, N), dtype=np.float32)
        x = (u < p2[lo:hi, None]).astype(np.int8) + (u < p2het[lo:hi, None]).astype(np.int8)
        del u
        xf = x.astype(np.float64)
        g_raw += xf.T @ b_allele[lo:hi]
        named = np.where(named_a1[lo:hi, None], xf, 2.0 - xf)
        if a.missing_rate > 0:
            miss = rng_miss.random((hi - lo, N), dtype=np.float32) < a.missing_rate
            n_missing += int(miss.sum())
            called = (~miss).sum(axis=1)
            f_a1 = np.where(miss, 0, x).sum(axis=1) / np.maximum(2 * called, 1)
            f_named = np.where(named_a1[lo:hi], f_a1, 1 - f_a1)
            f_named = np.where(called > 0, f_named, 0.0)
            named = np.where(miss, 2 * f_named[:, None], named)
            x = np.where(miss, np.int8(-1), x)
        s_units += named.T @ W_f[lo:hi]
        bed.write(x)
        del xf, named, x
    bed.close()
    scores = s_units / 10 ** WEIGHT_DECIMALS
    g_raw -= g_raw.mean(axis=0)
    trait_g = g_raw / g_raw.std(axis=0)
    del g_raw, s_units
    log(f"genotypes, .bed ({N} x {M}), liabilities and {K} scores done", t0)

    plinkio.write_wide(os.path.join(out, "weights.tsv.gz"), ids,
                       [x if n else y for x, y, n in zip(a1, a2, named_a1)], score_names,
                       W_units, WEIGHT_DECIMALS)
    log("weights.tsv.gz written", t0)

    # ---- outcomes -------------------------------------------------------------
    R = np.corrcoef(trait_g, rowvar=False)
    nd = statistics.NormalDist()
    out_names = [o[0] for o in OUTCOMES]
    outcome_g = np.zeros((N, O))
    outcome_l = np.zeros((N, O))
    y = np.zeros((N, O), dtype=np.int8)
    out_meta = []
    env = rng_env.standard_normal((N, O))
    for k, (name, held, prev, h2, wts) in enumerate(OUTCOMES):
        a_raw = np.zeros(T)
        for tn, v in wts.items():
            a_raw[trait_names.index(tn)] = v
        c = math.sqrt(h2 / (a_raw @ R @ a_raw))
        outcome_g[:, k] = trait_g @ (c * a_raw)
        outcome_l[:, k] = outcome_g[:, k] + env[:, k] * math.sqrt(1 - h2)
        thr = nd.inv_cdf(1 - prev)
        y[:, k] = outcome_l[:, k] > thr
        out_meta.append(dict(name=name, held_out=held, prevalence_target=prev, h2_target=h2,
                             liability_threshold=thr,
                             trait_weights={tn: round(c * v, 6) for tn, v in wts.items()}))
    split = split_of(N)

    # ---- realized figures ------------------------------------------------------------
    rg_out = np.corrcoef(outcome_g, rowvar=False)
    r_out_trait = (outcome_g - outcome_g.mean(0)).T @ trait_g / N / outcome_g.std(0)[:, None]
    sc = scores - scores.mean(0)
    sd_s = sc.std(0)
    r_score_g = np.full(K, np.nan)
    for j in range(K):
        if sd_s[j] > 0:
            r_score_g[j] = float(sc[:, j] @ trait_g[:, j // 3]) / N / sd_s[j]
    del sc
    for k, m in enumerate(out_meta):
        m["prevalence"] = {s: round(float(y[split == s, k].mean()), 5) for s in ("train", "val", "test")}
        m["prevalence"]["all"] = round(float(y[:, k].mean()), 5)
        m["h2_liability"] = round(float(outcome_g[:, k].var() / outcome_l[:, k].var()), 4)
        top = np.argsort(-np.abs(r_out_trait[k]))[:6]
        m["genetic_corr_top_traits"] = {trait_names[t]: round(float(r_out_trait[k, t]), 3) for t in top}
        m["genetic_corr_outcomes"] = {out_names[j]: round(float(rg_out[k, j]), 3) for j in range(O) if j != k}
    trait_meta = []
    for t, tn in enumerate(trait_names):
        trait_meta.append(dict(
            name=tn, block=BLOCKS[block_of[t]][0], superblock=BLOCKS[block_of[t]][1],
            sign=int(sign[t]), h2_gwas_phenotype=round(float(h2_trait[t]), 4), gwas_n=int(gwas_n[t]),
            n_variants={thn: int(n_in_score[3 * t + j]) for j, (thn, _) in enumerate(THRESHOLDS)},
            r_score_liability={thn: (None if np.isnan(r_score_g[3 * t + j]) else round(float(r_score_g[3 * t + j]), 4))
                               for j, (thn, _) in enumerate(THRESHOLDS)}))
    same_b = block_of[:, None] == block_of[None, :]
    same_s = super_of[:, None] == super_of[None, :]
    off = ~np.eye(T, dtype=bool)
    absR = np.abs(R)
    rg_summary = {
        "mean_abs_within_block": round(float(absR[same_b & off].mean()), 3),
        "mean_abs_within_superblock_other_block": round(float(absR[same_s & ~same_b].mean()), 3),
        "mean_abs_across_superblocks": round(float(absR[~same_s].mean()), 3),
        "model_mean_abs_within_block": round(float(np.abs(rg_model)[same_b & off].mean()), 3),
        "model_mean_abs_within_superblock_other_block": round(float(np.abs(rg_model)[same_s & ~same_b].mean()), 3),
        "model_mean_abs_across_superblocks": round(float(np.abs(rg_model)[~same_s].mean()), 3),
    }

    # ---- files ------------------------------------------------------------------
    np.save(os.path.join(out, "scores.npy"), scores)
    with open(os.path.join(out, "outcomes.tsv"), "w") as f:
        f.write("FID\tIID\t" + "\t".join(out_names) + "\n")
        for i in range(N):
            f.write(iid[i] + "\t" + iid[i] + "\t" + "\t".join("1" if v else "0" for v in y[i]) + "\n")
    with open(os.path.join(out, "split.tsv"), "w") as f:
        f.write("FID\tIID\tsplit\n")
        for i in range(N):
            f.write(f"{iid[i]}\t{iid[i]}\t{split[i]}\n")
    save_npz(os.path.join(out, "truth.npz"), trait_names=np.array(trait_names),
                        outcome_names=np.array(out_names), trait_g=trait_g.astype(np.float32),
                        outcome_g=outcome_g.astype(np.float32), outcome_liability=outcome_l.astype(np.float32),
                        trait_rg_cohort=R, trait_rg_model=rg_model, outcome_rg=rg_out,
                        outcome_trait_r=r_out_trait)
    save_npz(os.path.join(out, "gwas.npz"), variant_ids=np.array(ids), trait_names=np.array(trait_names),
                        maf=maf, beta=beta, beta_hat=beta_hat, se=se, p=pval, gwas_n=gwas_n,
                        effect_allele_is_a1=named_a1)
    log("scores.npy, outcomes.tsv, split.tsv, truth.npz, gwas.npz written", t0)
    if not a.no_text_scores:
        with gzip.GzipFile(os.path.join(out, "scores.tsv.gz"), "wb", compresslevel=4, mtime=0) as gz, \
                io.TextIOWrapper(gz, encoding="ascii") as f:
            f.write("#FID\tIID\t" + "\t".join(s + "_SUM" for s in score_names) + "\n")
            fmt = "%s\t%s\t" + "\t".join(["%.8f" if a.missing_rate == 0 else "%.17g"] * K) + "\n"
            for i in range(N):
                f.write(fmt % ((iid[i], iid[i]) + tuple(scores[i].tolist())))
        log("scores.tsv.gz written", t0)

    meta = dict(
        generator="tools/polygenic/simulate.py", generator_version=VERSION,
        parameters={k: v for k, v in vars(a).items() if k != "out"},
        seed=a.seed, versions=dict(python=platform.python_version(), numpy=np.__version__),
        n_individuals=N, n_variants=M, n_causal=int(mc), chromosomes="1-22 (GRCh37 lengths)",
        maf_range=a.maf, trait_h2_range=a.trait_h2, gwas_n_range=a.gwas_n, missing_rate=a.missing_rate,
        n_missing_calls=n_missing,
        thresholds=[dict(name=n, p_below=v) for n, v in THRESHOLDS],
        weight_decimals=WEIGHT_DECIMALS,
        score_column="SUM",
        score_names=score_names,
        score_definition=("SUM of weight x named-allele dosage over the score's variants, as plink2 --score "
                          "cols=+scoresums writes <name>_SUM (mean imputation from founder frequencies for "
                          "missing calls); score <trait>_<threshold> has a weight on the variants whose GWAS "
                          "p-value is below the threshold, 0 elsewhere"),
        traits=trait_meta, blocks=[dict(name=b, superblock=s, traits=[t for t, _ in ts]) for b, s, ts in BLOCKS],
        trait_genetic_correlation=rg_summary,
        outcomes=out_meta,
        trained_outcomes=[o[0] for o in OUTCOMES if not o[1]],
        held_out_outcomes=[o[0] for o in OUTCOMES if o[1]],
        split=dict(rule=SPLIT_RULE, counts={s: int((split == s).sum()) for s in ("train", "val", "test")}),
        files=dict(plink="cohort.bed/.bim/.fam", weights="weights.tsv.gz", scores_npy="scores.npy",
                   scores_text=None if a.no_text_scores else "scores.tsv.gz", outcomes="outcomes.tsv",
                   split="split.tsv", truth="truth.npz", gwas="gwas.npz"),
    )
    with open(os.path.join(out, "cohort.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log(f"done: {out}", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
