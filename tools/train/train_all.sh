#!/bin/sh
# train_all.sh - `make train-demo`: trains the demo model and its
# question-only (blind) baseline side by side (one core each), converts both
# with `medgemini convert` as a user would, evaluates them through the
# library and compares the result with the shipped files.
#
#   sh tools/train/train_all.sh OUT_DIR [extra train_demo.py options]
#
# Writes OUT_DIR/{main,blind}/ (work folders with hf/ checkpoints and logs),
# the shipped pair OUT_DIR/medgemini-demo-q8_0.mgm and medgemini-demo-blind-q4_0.mgm,
# the same checkpoint in bf16 and its float32 master weights (for the agreement
# figures), OUT_DIR/eval*.md and eval*.json.
set -eu
OUT=${1:?usage: train_all.sh OUT_DIR [train_demo.py options]}
shift
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
CLI=${MG_CLI:-bin/medgemini}
SEED=${SEED:-1}
mkdir -p "$OUT"
start=$(date +%s)
if [ -z "${SKIP_TRAIN:-}" ]; then  # SKIP_TRAIN=1: convert and evaluate OUT_DIR's checkpoints again
  echo "== training the demo model and the blind baseline (seed $SEED; logs in $OUT/*.log)"
  $PY tools/train/train_demo.py --out "$OUT/main" --seed "$SEED" --threads 1 "$@" \
    > "$OUT/main.log" 2>&1 &
  pm=$!
  $PY tools/train/train_demo.py --out "$OUT/blind" --blind --seed "$SEED" --threads 1 "$@" \
    > "$OUT/blind.log" 2>&1 &
  pb=$!
  rc=0
  wait $pm || rc=1
  wait $pb || rc=1
  tail -n 3 "$OUT/main.log" "$OUT/blind.log"
  [ $rc -eq 0 ] || { echo "train_all.sh: training failed (see the logs)" >&2; exit 1; }
fi

# The model card's fields, set at conversion (docs/CONVERT.md, --meta).
DESC="A toy MedGemma-architecture model (SigLIP-style image encoder, Gemma 3 projector and decoder) \
trained from scratch on the VQA-RAD training split (CC0) by tools/train/train_demo.py. \
See examples/models/MODEL_CARD.md."
USE="Demonstration and testing of libmedgemini only. Not a medical device: its answers are not \
diagnoses and must not be used for patient care."
LIC="CC0-1.0 (weights); the tokenizer is a subset of Google's Gemma 3 tokenizer (see MODEL_CARD.md)"
echo "== converting (medgemini convert)"
meta() { # NAME DESCRIPTION: the --meta options of one model
  printf '%s\n' "general.name=$1" "general.description=$2" "general.intended_use=$USE" \
    "general.license=$LIC" "prompt.report_instruction=Summarize this study."
}
convert() { # SRC OUT TYPE NAME DESCRIPTION
  src=$1 out=$2 type=$3 name=$4 desc=$5
  set -- "$src" -o "$out" --quiet
  [ "$type" = source ] || set -- "$@" --type "$type"
  while IFS= read -r m; do set -- "$@" --meta "$m"; done <<EOM
$(meta "$name" "$desc")
EOM
  "$CLI" convert "$@"
}
BLIND_DESC="The question-only baseline of medgemini-demo: the same model and recipe trained with every \
image replaced by a uniform grey one. See examples/models/MODEL_CARD.md."
convert "$OUT/main/hf" "$OUT/medgemini-demo-q8_0.mgm" q8_0 medgemini-demo "$DESC"
convert "$OUT/blind/hf" "$OUT/medgemini-demo-blind-q4_0.mgm" q4_0 medgemini-demo-blind "$BLIND_DESC"
convert "$OUT/main/hf" "$OUT/medgemini-demo-bf16.mgm" source medgemini-demo-bf16 "$DESC"
convert "$OUT/main/hf-f32" "$OUT/medgemini-demo-f32.mgm" source medgemini-demo-f32 "$DESC"

echo "== evaluating through the library (VQA-RAD test split)"
$PY tools/train/eval_demo.py -m "$OUT/medgemini-demo-q8_0.mgm" --blind "$OUT/medgemini-demo-blind-q4_0.mgm" \
  --json "$OUT/eval.json" | tee "$OUT/eval.md"
for v in bf16 f32; do
  echo "== the $v checkpoint"
  $PY tools/train/eval_demo.py -m "$OUT/medgemini-demo-$v.mgm" --json "$OUT/eval-$v.json" \
    | tee "$OUT/eval-$v.md" | sed -n '/^| model/p'
done
echo "== parity: PyTorch against the library on 20 test images (the f32 master weights)"
$PY tools/train/parity.py -m "$OUT/medgemini-demo-f32.mgm" --quantized "$OUT/medgemini-demo-q8_0.mgm" \
  | tail -n 2
$PY tools/train/parity.py -m "$OUT/medgemini-demo-f32.mgm" --quantized "$OUT/medgemini-demo-bf16.mgm" \
  | tail -n 1
echo "== against the shipped files (examples/models/SHA256SUMS)"
for f in medgemini-demo-q8_0.mgm medgemini-demo-blind-q4_0.mgm; do
  new=$(sha256sum "$OUT/$f" | cut -d' ' -f1)
  old=$(grep " $f\$" examples/models/SHA256SUMS 2>/dev/null | cut -d' ' -f1 || true)
  if [ "$new" = "$old" ]; then echo "$f: identical to the shipped file"
  else echo "$f: differs from the shipped file (sha256 $new); compare eval.md with MODEL_CARD.md"; fi
done
echo "== done in $(( $(date +%s) - start )) s"
