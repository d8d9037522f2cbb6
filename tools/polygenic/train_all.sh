#!/bin/sh
# train_all.sh - the shipped polygenic model from the repository: simulates the
# cohort if needed, trains, converts with `medgemini convert` as a user would,
# evaluates through the C library, checks parity with PyTorch and compares
# the result with examples/models/SHA256SUMS.
#
#   sh tools/polygenic/train_all.sh OUT_DIR [extra train_polygenic.py options]
#
# Environment: COHORT (default lib/polygenic/seed1; simulated with seed 1 when
# its scores.npy is missing), MG_CLI (default bin/medgemini), SEED (default 1),
# SKIP_TRAIN=1 (convert and evaluate OUT_DIR/work/hf again).
# Writes OUT_DIR/work/ (hf/ checkpoint, tokenizer, train_log.json),
# OUT_DIR/train.log, OUT_DIR/medgemini-polygenic-f32.mgm (the shipped file's
# recipe), OUT_DIR/medgemini-polygenic-q8_0.mgm (for the quantization figure
# only), OUT_DIR/eval.{md,json}, OUT_DIR/parity.txt.
set -eu
OUT=${1:?usage: train_all.sh OUT_DIR [train_polygenic.py options]}
shift
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
CLI=${MG_CLI:-bin/medgemini}
SEED=${SEED:-1}
COHORT=${COHORT:-lib/polygenic/seed1}
NAME=medgemini-polygenic-f32.mgm
mkdir -p "$OUT"
start=$(date +%s)
[ -x "$CLI" ] || { echo "train_all.sh: $CLI not built (make)" >&2; exit 1; }

if [ ! -f "$COHORT/scores.npy" ]; then
  echo "== simulating the cohort (seed 1) into $COHORT"
  $PY tools/polygenic/simulate.py --out "$COHORT"
fi

if [ -z "${SKIP_TRAIN:-}" ]; then
  echo "== training (seed $SEED; log in $OUT/train.log)"
  $PY tools/polygenic/train_polygenic.py --out "$OUT/work" --cohort "$COHORT" --cli "$CLI" \
    --seed "$SEED" "$@" > "$OUT/train.log" 2>&1 || {
    tail -n 20 "$OUT/train.log"; echo "train_all.sh: training failed" >&2; exit 1; }
  tail -n 3 "$OUT/train.log"
fi

echo "== converting (medgemini convert)"
DESC="A small MedGemma-architecture model (SigLIP-style image encoder, Gemma 3 projector and \
decoder) that reads 192 polygenic scores as a 64 x 64 score image and answers 'Does this \
individual have X?'; trained from scratch by tools/polygenic/train_polygenic.py on the training \
split of a simulated cohort (tools/polygenic/simulate.py, seed 1). Simulated data, not for \
clinical use. See examples/models/POLYGENIC_MODEL_CARD.md."
USE="Demonstration and testing of libmedgemini's polygenic risk path (medgemini prs predict) only. \
Trained on simulated data: its risks say nothing about real people. Not a medical device, not for \
clinical use."
LIC="CC0-1.0 (weights); the tokenizer is a subset of Google's Gemma 3 tokenizer (see \
POLYGENIC_MODEL_CARD.md)"
convert() { # TYPE OUT NAME
  "$CLI" convert "$OUT/work/hf" -o "$2" --type "$1" --quiet \
    --meta "general.name=$3" --meta "general.description=$DESC" \
    --meta "general.license=$LIC" --meta "general.intended_use=$USE"
}
convert f32 "$OUT/$NAME" medgemini-polygenic
convert q8_0 "$OUT/medgemini-polygenic-q8_0.mgm" medgemini-polygenic-q8_0

echo "== evaluating through the library (test split, 10,000 individuals; the 500-person PLINK set)"
$PY tools/polygenic/eval_polygenic.py -m "$OUT/$NAME" --cohort "$COHORT" --cli "$CLI" \
  --out "$OUT/eval-files" --json "$OUT/eval.json" --md "$OUT/eval.md"

echo "== parity: PyTorch (float64) against the library, 100 test individuals x 11 questions"
: > "$OUT/parity.txt"
rc=0
par() { # MUST(1/0) parity_polygenic.py options
  must=$1; shift
  if $PY tools/polygenic/parity_polygenic.py "$@" > "$OUT/parity.tmp"; then :; else
    [ "$must" = 0 ] || rc=1; fi
  cat "$OUT/parity.tmp" | tee -a "$OUT/parity.txt"
  rm -f "$OUT/parity.tmp"
}
par 1 -m "$OUT/$NAME" --n 100                         # weights read back from the .mgm
par 1 -m "$OUT/$NAME" --hf "$OUT/work/hf" --n 100     # weights of the exported checkpoint
# the q8_0 conversion: a figure (against the float32 checkpoint and against its
# own dequantized weights), not a requirement
par 0 -m "$OUT/medgemini-polygenic-q8_0.mgm" --hf "$OUT/work/hf" --n 100
par 0 -m "$OUT/medgemini-polygenic-q8_0.mgm" --n 100
[ $rc -eq 0 ] || { echo "train_all.sh: parity failed" >&2; exit 1; }

echo "== against the shipped file (examples/models/SHA256SUMS)"
new=$(sha256sum "$OUT/$NAME" | cut -d' ' -f1)
old=$(grep " $NAME\$" examples/models/SHA256SUMS 2>/dev/null | cut -d' ' -f1 || true)
if [ "$new" = "$old" ]; then echo "$NAME: identical to the shipped file"
else echo "$NAME: differs from the shipped file (sha256 $new); compare eval.md with POLYGENIC_MODEL_CARD.md"; fi
echo "== done in $(( $(date +%s) - start )) s"
