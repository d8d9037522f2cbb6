#!/bin/sh
# llm.sh - decoder throughput for random-weight models of Gemma 3 1B (bf16,
# q8_0, q4_0) and 4B text (q4_0, q8_0) shapes, on 1 and 2 threads.
# Writes the models under $MODELS (default lib/bench-models, ~10 GB), then
# deletes them unless KEEP=1.  Usage: sh bench/llm.sh [bin/medgemini] [lib/bench/llm]
set -eu
CLI=${1:-bin/medgemini}
LLM=${2:-lib/bench/llm}
MODELS=${MODELS:-lib/bench-models}
mkdir -p "$MODELS"
# OpenBLAS 0.3.21 does not know recent Xeons; name a core type it has.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
for spec in gemma3-1b:bf16 gemma3-1b:q8_0 gemma3-1b:q4_0 medgemma-4b:q4_0 medgemma-4b:q8_0; do
  shape=${spec%%:*} dtype=${spec##*:}
  f=$MODELS/$shape-$dtype.mgm
  [ -f "$f" ] || "$CLI" mkmodel --shape "$shape" --no-vision --dtype "$dtype" -o "$f" 2>/dev/null
  for th in 1 2; do
    OPENBLAS_NUM_THREADS=$th "$LLM" "$f" $th 512 128
  done
  [ "${KEEP:-0}" = 1 ] || rm -f "$f"
done
