#!/bin/sh
# model_test.sh - checks the shipped polygenic model end to end.
#
#   sh tools/polygenic/model_test.sh [CLI]        (CLI default: bin/medgemini)
#
#   1. examples/models/medgemini-polygenic-f32.mgm matches its SHA256SUMS line;
#   2. `CLI prs predict --bfile examples/data/polygenic/cohort500 --score
#      weights.tsv.gz` with two trained outcomes writes the .risk file (header,
#      500 individuals in .fam order, risks in (0, 1));
#   3. the AUC of those risks on the 500 individuals (outcomes.tsv; Mann-Whitney,
#      ties counting one half, computed here in awk) equals the figure recorded
#      in examples/models/POLYGENIC_MODEL_CARD.md within AUC_TOL;
#   4. when /usr/bin/python3 has torch and numpy: tools/polygenic/
#      parity_polygenic.py on 20 individuals (PyTorch float64 vs the library's
#      risk, all 11 questions, within 1e-4); otherwise it says it skips.
# Exits non-zero on the first failure. PYTHON may name another interpreter.
set -eu

# Recorded in POLYGENIC_MODEL_CARD.md ("Checks"): AUC on the 500 shipped individuals.
EXPECT_CAD=0.792379
EXPECT_T2D=0.819275
AUC_TOL=0.002

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cli=${1:-$root/bin/medgemini}
case $cli in /*) ;; */*) cli=$(pwd)/$cli ;; esac
py=${PYTHON:-/usr/bin/python3}
name=medgemini-polygenic-f32.mgm
model=$root/examples/models/$name
data=$root/examples/data/polygenic
fail() { echo "model_test.sh: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/polygenic_model_test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# 1. checksum
[ -f "$model" ] || fail "$model is missing"
want=$(awk -v n="$name" '$2 == n || $2 == "*" n { print $1 }' "$root/examples/models/SHA256SUMS")
[ -n "$want" ] || fail "no line for $name in examples/models/SHA256SUMS"
got=$(sha256sum "$model" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "$name: sha256 $got, SHA256SUMS says $want"
echo "model_test.sh: $name sha256 ok"

# 2. prs predict from genotypes
start=$(date +%s)
"$cli" prs predict --bfile "$data/cohort500" --score "$data/weights.tsv.gz" -m "$model" \
  --outcome "coronary artery disease" --outcome "type 2 diabetes" --out "$tmp/x" \
  > "$tmp/log" 2>&1 || { cat "$tmp/log" >&2; fail "prs predict exited non-zero"; }
secs=$(( $(date +%s) - start ))
tab=$(printf '\t')
[ "$(head -n 1 "$tmp/x.risk")" = "#FID${tab}IID${tab}coronary artery disease${tab}type 2 diabetes" ] \
  || fail "unexpected .risk header: $(head -n 1 "$tmp/x.risk")"
awk -F'\t' 'NR > 1 { print $1 "\t" $2 }' "$tmp/x.risk" > "$tmp/ids.risk"
awk 'NR > 1 { print $1 "\t" $2 }' "$data/outcomes.tsv" > "$tmp/ids.out"
awk '{ print $1 "\t" $2 }' "$data/cohort500.fam" > "$tmp/ids.fam"
cmp -s "$tmp/ids.risk" "$tmp/ids.fam" || fail ".risk individuals differ from cohort500.fam"
cmp -s "$tmp/ids.out" "$tmp/ids.fam" || fail "outcomes.tsv individuals differ from cohort500.fam"
[ "$(wc -l < "$tmp/ids.risk")" -eq 500 ] || fail "expected 500 individuals"
awk -F'\t' 'NR > 1 { for (i = 3; i <= 4; i++) if (!($i > 0 && $i < 1)) { bad = 1 } }
  END { exit bad }' "$tmp/x.risk" || fail "a risk outside (0, 1)"
echo "model_test.sh: prs predict --bfile: 500 individuals, 2 outcomes ($secs s)"

# 3. AUC on the 500
auc() { # RISK_COLUMN OUTCOME_COLUMN
  awk -F'\t' -v c="$1" 'NR > 1 { print $c }' "$tmp/x.risk" > "$tmp/r"
  awk -v c="$2" 'NR > 1 { print $c }' "$data/outcomes.tsv" > "$tmp/y"
  paste "$tmp/r" "$tmp/y" | LC_ALL=C sort -g -k1,1 | awk '
    { v[NR] = $1; y[NR] = $2 }
    END {
      i = 1; r1 = 0; n1 = 0
      while (i <= NR) {
        j = i
        while (j < NR && v[j + 1] == v[i]) j++
        for (k = i; k <= j; k++) if (y[k] == 1) { r1 += (i + j) / 2; n1++ }
        i = j + 1
      }
      n0 = NR - n1
      if (n1 == 0 || n0 == 0) { print "nan"; exit }
      printf "%.6f\n", (r1 - n1 * (n1 + 1) / 2) / (n1 * n0)
    }'
}
check_auc() { # LABEL GOT EXPECTED
  awk -v g="$2" -v e="$3" -v t="$AUC_TOL" 'BEGIN { d = g - e; if (d < 0) d = -d; exit !(d <= t) }' \
    || fail "$1: AUC on the 500 is $2, the model card records $3 (tolerance $AUC_TOL)"
  echo "model_test.sh: $1 AUC on the 500 = $2 (recorded $3, tolerance $AUC_TOL) ok"
}
check_auc "coronary artery disease" "$(auc 3 3)" "$EXPECT_CAD"
check_auc "type 2 diabetes" "$(auc 4 5)" "$EXPECT_T2D"

# 4. parity with PyTorch
if "$py" -c 'import torch, numpy' > /dev/null 2>&1; then
  "$py" "$here/parity_polygenic.py" -m "$model" --n 20 || fail "parity"
else
  echo "model_test.sh: skipping the PyTorch parity check ($py has no torch/numpy)"
fi
echo "model_test.sh: all checks passed"
