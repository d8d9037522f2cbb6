#!/bin/sh
# volume3d.sh - time and memory of a report on a CT volume (MedGemma 1.5's
# recipe, docs/VOLUME.md) with a random-weight model of MedGemma 4B's shape
# (SigLIP 896 px encoder, 256 tokens per slice, Gemma 3 4B decoder, q4_0).
# Runs `medgemini report` with a few slice counts and the context MedGemma
# 1.5 needs for 85 slices, and prints the time to the first token (slice
# encoding + prefill) and the peak resident memory of each, from which the
# cost of a full 85-slice CT follows (both grow linearly with the slices;
# docs/VOLUME.md quotes a run). The model (~3 GB) is written under $MODELS
# (default lib/bench-models) and deleted unless KEEP=1.
#   sh bench/volume3d.sh [bin/medgemini] [VOLUME (a series folder or NIfTI)] [SLICES...]
set -eu
CLI=${1:-bin/medgemini}
VOL=${2:-../shared/data/nifti/ct_head_niivue/CT_AVM.nii.gz}
shift 2 2>/dev/null || shift $#
SLICES=${*:-1 4}
MODELS=${MODELS:-lib/bench-models}
CTX=${CTX:-23040}  # 85 x 256 image tokens, 85 labels, the prompt and a 512-token report
THREADS=${THREADS:-$(nproc)}
mkdir -p "$MODELS"
f=$MODELS/medgemma-4b-q4_0-vision.mgm
[ -f "$f" ] || "$CLI" mkmodel --shape medgemma-4b --dtype q4_0 -o "$f" 2>/dev/null
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "volume: $VOL; context: $CTX tokens"
for n in $SLICES; do
  /usr/bin/time -f 'peak RSS %M KiB, wall %e s' "$CLI" report "$VOL" -m "$f" --slices "$n" \
    --ctx "$CTX" --threads "$THREADS" -n 8 --stats > /dev/null 2> lib/bench-volume3d.err || {
      cat lib/bench-volume3d.err >&2; exit 1; }
  printf 'slices %s: %s; %s\n' "$n" "$(grep '^stats:' lib/bench-volume3d.err | sed 's/^stats: //')" \
    "$(tail -n 1 lib/bench-volume3d.err)"
done
rm -f lib/bench-volume3d.err
[ "${KEEP:-0}" = 1 ] || rm -f "$f"
