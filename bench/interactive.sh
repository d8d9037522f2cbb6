#!/bin/sh
# interactive.sh - what a second question costs. With a random-weight model of
# MedGemma 4B's shape (SigLIP 896 px encoder, Gemma 3 4B decoder, q4_0), times
# the first token of five questions about one chest X-ray:
#  - vqa --no-reuse: every question read afresh, the image encoded each time
#    (the behaviour before contexts kept what they read);
#  - vqa: the image's encoding taken from the context's cache from the second
#    question on (MedGemma's layout puts the question before the image, so the
#    image's 256 tokens are read by the decoder again);
#  - chat: one conversation, each later question read alone (its own tokens).
# Prints each question's time to the first token and its ratio to the first
# question of the same run. The model (~3.4 GB) is written under $MODELS
# (default lib/bench-models) unless MODEL names one; deleted unless KEEP=1.
#   sh bench/interactive.sh [bin/medgemini] [IMAGE]
set -eu
CLI=${1:-bin/medgemini}
IMG=${2:-examples/data/cxr_nih_00006585_008.png}
MODELS=${MODELS:-lib/bench-models}
THREADS=${THREADS:-$(nproc)}
N=${N:-8}
mkdir -p "$MODELS"
f=${MODEL:-$MODELS/medgemma-4b-q4_0-vision.mgm}
made=0
if [ ! -f "$f" ]; then
  "$CLI" mkmodel --shape medgemma-4b --dtype q4_0 -o "$f" 2>/dev/null
  made=1
fi
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "model: $f; image: $IMG; $N tokens per answer"
err=lib/bench-interactive.err
set -- "Is there a pleural effusion?" "Is the heart enlarged?" "Is there a pneumothorax?" \
       "Are the lungs clear?" "Where are the lines and tubes?"
report() { # label: prints the first-token times from $err and their ratios to the first
  grep '^stats:' "$err" | sed 's/.*first token after \([0-9.]*\) s.*/\1/' |
    awk -v l="$1" '{ t[NR] = $1 } END {
      printf "%-16s", l; for (i = 1; i <= NR; i++) printf " q%d %7.2f s", i, t[i]; printf "\n";
      printf "%-16s", ""; for (i = 1; i <= NR; i++) printf "    %7.3fx ", t[i] / t[1]; printf "\n" }'
}
"$CLI" vqa "$IMG" -m "$f" -q "$1" -q "$2" -q "$3" -q "$4" -q "$5" -n "$N" --threads "$THREADS" \
  --stats --no-progress --no-reuse > /dev/null 2> "$err" || { cat "$err" >&2; exit 1; }
report "vqa --no-reuse"
"$CLI" vqa "$IMG" -m "$f" -q "$1" -q "$2" -q "$3" -q "$4" -q "$5" -n "$N" --threads "$THREADS" \
  --stats --no-progress > /dev/null 2> "$err" || { cat "$err" >&2; exit 1; }
report "vqa (cache)"
printf '%s\n' "$@" | "$CLI" chat "$IMG" -m "$f" -n "$N" --threads "$THREADS" --stats \
  --no-progress > /dev/null 2> "$err" || { cat "$err" >&2; exit 1; }
report "chat"
rm -f "$err"
[ "${KEEP:-0}" = 1 ] || [ "$made" = 0 ] || rm -f "$f"
