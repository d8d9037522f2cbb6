#!/bin/sh
# tools/polygenic/check.sh - quick self-test of the polygenic cohort tools.
#
#   sh tools/polygenic/check.sh        (from the repository root or anywhere)
#
# Regenerates small cohorts (3,000 individuals, all 6,000 variants) in a
# temporary folder and checks:
#   1. the same seed gives the same bytes (every output file);
#   2. numpy's scores (simulate.py's and plinkio's reference scorer from the
#      files) == `bin/medgemini prs score` SUMs within 1e-6 relative, equal
#      ALLELE_CT/DENOM; plink2 --score agrees within its 6-digit printing
#      when it is installed; without and with missing calls (mean imputation,
#      and --no-mean-imputation);
#   3. 64 traits, 3 thresholds, 192 scores, >= 8 trained and >= 2 held-out
#      outcomes, prevalences in [2 %, 20 %] and liability heritabilities in
#      [0.2, 0.6], split 80/10/10;
#   4. metrics.py's AUC against a brute-force count; baselines.py runs and
#      its ensemble carries signal (mean test AUC > 0.65 on 300 individuals);
#   5. the shipped examples/data/polygenic set, when present, still scores
#      to its stored SUMs.
# Exits non-zero on the first failure. PYTHON (default /usr/bin/python3) and
# MEDGEMINI (default bin/medgemini) may be set in the environment.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PYTHON:-/usr/bin/python3}
mg=${MEDGEMINI:-$root/bin/medgemini}
fail() { echo "check.sh: FAIL: $*" >&2; exit 1; }

[ -x "$mg" ] || fail "$mg not built (make)"
"$py" -c 'import numpy' 2>/dev/null || fail "$py has no numpy (apt-get install python3-numpy)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgcheck.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "== simulate (N = 3000), twice with seed 7: same bytes"
"$py" "$here/simulate.py" --seed 7 --n 3000 --out "$tmp/a" 2>"$tmp/a.log" || { cat "$tmp/a.log"; fail "simulate.py"; }
"$py" "$here/simulate.py" --seed 7 --n 3000 --out "$tmp/b" 2>"$tmp/b.log" || { cat "$tmp/b.log"; fail "simulate.py"; }
for f in cohort.bed cohort.bim cohort.fam weights.tsv.gz scores.npy scores.tsv.gz outcomes.tsv split.tsv \
         truth.npz gwas.npz cohort.json; do
    [ -s "$tmp/a/$f" ] || fail "missing output $f"
    cmp -s "$tmp/a/$f" "$tmp/b/$f" || fail "$f differs between two runs with the same seed"
done
echo "   identical: 11 files"

echo "== scores: numpy vs medgemini vs plink2 (no missing calls)"
"$py" "$here/verify.py" --bfile "$tmp/a/cohort" --score "$tmp/a/weights.tsv.gz" \
    --expected "$tmp/a/scores.tsv.gz" --medgemini "$mg" || fail "scores differ (no missing calls)"

echo "== scores with 0.5 % missing calls (mean imputation; no-mean-imputation)"
"$py" "$here/simulate.py" --seed 8 --n 3000 --missing-rate 0.005 --no-text-scores --out "$tmp/m" \
    2>"$tmp/m.log" || { cat "$tmp/m.log"; fail "simulate.py --missing-rate"; }
"$py" "$here/verify.py" --bfile "$tmp/m/cohort" --score "$tmp/m/weights.tsv.gz" \
    --expected "$tmp/m/scores.npy" --medgemini "$mg" || fail "scores differ (missing calls)"
"$py" "$here/verify.py" --bfile "$tmp/m/cohort" --score "$tmp/m/weights.tsv.gz" --no-mean-imputation \
    --medgemini "$mg" || fail "scores differ (no-mean-imputation)"

echo "== cohort figures"
"$py" - "$tmp/a/cohort.json" <<'EOF' || fail "cohort figures out of range"
import json, sys
m = json.load(open(sys.argv[1]))
bad = []
def need(c, msg):
    if not c: bad.append(msg)
need(len(m["traits"]) == 64, "64 traits")
need(len(m["thresholds"]) == 3, "3 thresholds")
need(len(m["score_names"]) == 192, "192 scores")
need(len(m["trained_outcomes"]) >= 8, ">= 8 trained outcomes")
need(len(m["held_out_outcomes"]) >= 2, ">= 2 held-out outcomes")
for o in m["outcomes"]:
    p, h = o["prevalence"]["all"], o["h2_liability"]
    print(f"   {o['name']:24s} prevalence {100 * p:5.2f} % (target {100 * o['prevalence_target']:.0f} %)  "
          f"h2 {h:.3f} (target {o['h2_target']:.2f}){'  held out' if o['held_out'] else ''}")
    need(0.02 <= o["prevalence_target"] <= 0.20 and 0.02 <= p <= 0.20, o["name"] + " prevalence")
    need(0.2 <= o["h2_target"] <= 0.6 and 0.2 <= h <= 0.6, o["name"] + " heritability")
    need(len(o["trait_weights"]) >= 3, o["name"] + " uses several traits")
c = m["split"]["counts"]
need((c["train"], c["val"], c["test"]) == (2400, 300, 300), "split 80/10/10")
if bad:
    print("   out of range: " + ", ".join(bad)); sys.exit(1)
EOF

echo "== metrics and baselines"
"$py" "$here/metrics.py" || fail "metrics self-test"
"$py" "$here/baselines.py" --cohort "$tmp/a" --n-boot 100 >"$tmp/bl.log" 2>&1 || { cat "$tmp/bl.log"; fail "baselines.py"; }
"$py" - "$tmp/a/baselines.json" <<'EOF' || fail "baselines.json"
import json, sys
b = json.load(open(sys.argv[1]))
assert len(b["outcomes"]) >= 10, "outcomes in baselines.json"
for o in b["outcomes"]:
    for k in ("single", "ensemble"):
        t = o[k]["test"]
        assert 0 <= t["lo"] <= t["hi"] <= 1 and 0 <= t["auc"] <= 1, (o["outcome"], k, t)
# 300 test individuals: single AUCs are noisy; the ensemble must carry signal
mean_e = sum(o["ensemble"]["test"]["auc"] for o in b["outcomes"]) / len(b["outcomes"])
assert mean_e > 0.65, mean_e
print(f"   {len(b['outcomes'])} outcomes, test AUCs with intervals; mean ensemble AUC {mean_e:.3f}")
EOF

ex="$root/examples/data/polygenic"
if [ -f "$ex/cohort500.bed" ]; then
    echo "== shipped example examples/data/polygenic"
    "$py" "$here/verify.py" --bfile "$ex/cohort500" --score "$ex/weights.tsv.gz" \
        --expected "$ex/scores.tsv.gz" --medgemini "$mg" || fail "shipped example"
fi
echo "check.sh: all checks passed"
