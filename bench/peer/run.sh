#!/bin/sh
# Peer benchmark: llama.cpp against libmedgemini on the same random-weight Gemma 3 GGUF files
# (bench/peer/make_models.py), converted to .mgm by our converter with the dtypes kept. Not run
# in CI.
#
#   sh bench/peer/run.sh [MODEL ...]      (default: gemma3-1b-q8_0 medgemma-4b-q4_0 medgemma-4b-q8_0
#                                          siglip-mmproj-bf16 siglip-mmproj-f16)
#
# Text models (llama-bench against lib/bench/llm), tokens per second: prefill of 512 tokens,
# decode of 128 tokens from an empty context (llama-bench's tg128) and decode of 128 tokens
# after the 512-token prompt (llama-bench -d 512; ours right after its prefill). Per model,
# interleaved: ours, llama-bench (-r REPS, its mean), ours again; ours = the mean of its runs.
#
# mmproj files (siglip-mmproj-*), seconds, on the chest X-ray in examples/data: image encode at
# 896 px (llama-mtmd-cli with flash attention off and on: its "batch encoding" time; ours:
# lib/bench/vision --model, one encode after a warm-up) and time to the first report token
# (from the prompt's start to the first generated token, image encoding included: llama-mtmd-cli
# -n 1 from its log's timestamps; ours: medgemini report -n 1 --stats), each with the text model
# medgemma-4b-q4_0 (its GGUF must exist) and the mmproj merged into one .mgm by our converter.
# Order: ours, llama.cpp (off, on), ours.
#
# Needs bench/peer/setup.sh done. Environment:
#   MG_PEER_CACHE    cache folder (default ~/.cache/mg-peer; models in $MG_PEER_CACHE/models)
#   MG_PEER_THREADS  threads (default 2)      MG_PEER_REPS  llama-bench -r (default 3)
#   MG_PEER_PP / MG_PEER_TG   prompt and generation lengths (default 512 / 128)
#   MG_PEER_IMAGE    image for the mmproj rows (default examples/data/cxr_nih_00006585_008.png)
#   MG_PEER_NICE     nice level (default 15)  MG_PEER_OUT   result CSV (default $CACHE/results-DATE.csv)
# OPENBLAS_CORETYPE is left as the environment sets it (and reported).
set -eu
CACHE=${MG_PEER_CACHE:-$HOME/.cache/mg-peer}
MODELS=$CACHE/models
TH=${MG_PEER_THREADS:-2}
REPS=${MG_PEER_REPS:-3}
PP=${MG_PEER_PP:-512}
TG=${MG_PEER_TG:-128}
NICE="nice -n ${MG_PEER_NICE:-15}"
LB=$CACHE/llama.cpp/build/bin/llama-bench
MT=$CACHE/llama.cpp/build/bin/llama-mtmd-cli
REPO=$(cd "$(dirname "$0")/../.." && pwd)
IMG=${MG_PEER_IMAGE:-$REPO/examples/data/cxr_nih_00006585_008.png}
OURS=$CACHE/ours
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUTCSV=${MG_PEER_OUT:-$CACHE/results-$STAMP.csv}
LOG=$CACHE/run-$STAMP.log
[ $# -gt 0 ] || set -- gemma3-1b-q8_0 medgemma-4b-q4_0 medgemma-4b-q8_0 siglip-mmproj-bf16 siglip-mmproj-f16
[ -x "$LB" ] && [ -x "$MT" ] && [ -x "$OURS/lib/bench/llm" ] && [ -x "$OURS/lib/bench/vision" ] &&
    [ -x "$OURS/bin/medgemini" ] ||
    { echo "run bench/peer/setup.sh first" >&2; exit 1; }

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
CORETYPE=${OPENBLAS_CORETYPE-(unset)}
LLAMA_REV=$(git -C "$CACHE/llama.cpp" rev-parse --short HEAD 2>/dev/null || echo unknown)
RAW=$CACHE/raw-$STAMP
mkdir -p "$RAW"
echo "cpu: $CPU  OPENBLAS_CORETYPE=$CORETYPE  threads $TH  llama.cpp $LLAMA_REV  log $LOG" | tee "$LOG"

# llama-mtmd-cli on the image, flash attention $3: its log (-v, timestamps) in $2
mtmd() {
    $NICE "$MT" -m "$MODELS/medgemma-4b-q4_0.gguf" --mmproj "$1" --image "$IMG" \
        -p "Describe this chest X-ray." -n 1 -t "$TH" -fa "$3" --chat-template gemma --temp 0 \
        -v >"$2.out" 2>"$2" || echo "llama-mtmd-cli failed (see $2)" | tee -a "$LOG"
}

# our converter into $1 from the sources and options that follow (model $m); fails when it refuses
convert() {
    out=$1
    shift
    echo "$m: converting $*" | tee -a "$LOG"
    if ! $NICE "$OURS/bin/medgemini" convert "$@" -o "$out" --quiet --no-checksums \
            >"$RAW/$m.convert" 2>&1; then
        echo "$m: our converter refused:" | tee -a "$LOG"; tee -a "$LOG" <"$RAW/$m.convert"
        rm -f "$out"
        return 1
    fi
    cat "$RAW/$m.convert" >>"$LOG"
}

for m in "$@"; do
    g=$MODELS/$m.gguf
    o=$MODELS/$m.mgm
    if [ ! -f "$g" ]; then echo "$m: $g missing (make_models.py)" | tee -a "$LOG"; continue; fi
    case $m in siglip-mmproj-*)
        t=$MODELS/medgemma-4b-q4_0.gguf
        o=$MODELS/medgemma-4b-q4_0+$m.mgm
        if [ ! -f "$t" ]; then echo "$m: $t missing (make_models.py)" | tee -a "$LOG"; continue; fi
        if [ ! -f "$o" ] || [ "$g" -nt "$o" ] || [ "$t" -nt "$o" ] || [ "$OURS/bin/medgemini" -nt "$o" ]; then
            convert "$o" "$t" --mmproj "$g" || continue
        fi
        echo "$m: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
        for k in 1 2; do
            if [ $k = 2 ]; then
                mtmd "$g" "$RAW/$m.llama_off" off
                grep -E "batch encoding done|image decoded" "$RAW/$m.llama_off" | tee -a "$LOG"
                mtmd "$g" "$RAW/$m.llama_on" on
                grep -E "batch encoding done|image decoded" "$RAW/$m.llama_on" | tee -a "$LOG"
            fi
            OPENBLAS_NUM_THREADS=$TH $NICE "$OURS/lib/bench/vision" --model "$o" --image "$IMG" \
                --threads "$TH" --reps 1 >"$RAW/$m.ours_enc$k" 2>>"$LOG" ||
                echo "$m: ours (encode) failed (see $LOG)" | tee -a "$LOG"
            cat "$RAW/$m.ours_enc$k" | tee -a "$LOG"
            OPENBLAS_NUM_THREADS=$TH $NICE "$OURS/bin/medgemini" report "$IMG" -m "$o" -n 1 \
                --threads "$TH" --stats >"$RAW/$m.ours_rep$k.out" 2>"$RAW/$m.ours_rep$k" ||
                echo "$m: ours (report) failed (see $RAW/$m.ours_rep$k)" | tee -a "$LOG"
            grep "^stats" "$RAW/$m.ours_rep$k" | tee -a "$LOG"
        done
        continue ;;
    esac
    if [ ! -f "$o" ] || [ "$g" -nt "$o" ] || [ "$OURS/bin/medgemini" -nt "$o" ]; then
        convert "$o" "$g" || continue
    fi
    echo "$m: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
    # ours (prefill + decode after it; decode from an empty context), llama.cpp, ours again
    for k in 1 2; do
        if [ $k = 2 ]; then
            $NICE "$LB" -m "$g" -t "$TH" -p "$PP" -n "$TG" -r "$REPS" -o csv >"$RAW/$m.llama" 2>>"$LOG" ||
                echo "$m: llama-bench failed (see $LOG)" | tee -a "$LOG"
            cat "$RAW/$m.llama" >>"$LOG"
            $NICE "$LB" -m "$g" -t "$TH" -p 0 -n "$TG" -d "$PP" -r "$REPS" -o csv >"$RAW/$m.llama_d" 2>>"$LOG" ||
                echo "$m: llama-bench -d failed (see $LOG)" | tee -a "$LOG"
            cat "$RAW/$m.llama_d" >>"$LOG"
        fi
        OPENBLAS_NUM_THREADS=$TH $NICE "$OURS/lib/bench/llm" "$o" "$TH" "$PP" "$TG" >"$RAW/$m.ours$k" 2>>"$LOG" ||
            echo "$m: ours failed (see $LOG)" | tee -a "$LOG"
        cat "$RAW/$m.ours$k" | tee -a "$LOG"
        OPENBLAS_NUM_THREADS=$TH $NICE "$OURS/lib/bench/llm" "$o" "$TH" 1 "$TG" >"$RAW/$m.ours_e$k" 2>>"$LOG" ||
            echo "$m: ours failed (see $LOG)" | tee -a "$LOG"
        cat "$RAW/$m.ours_e$k" | tee -a "$LOG"
    done
done

/usr/bin/python3 "$REPO/bench/peer/report.py" "$RAW" "$OUTCSV" "$CPU" "$CORETYPE" "$TH" "$PP" "$TG" "$@" | tee -a "$LOG"
