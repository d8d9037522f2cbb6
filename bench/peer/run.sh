#!/bin/sh
# Peer benchmark: llama.cpp's llama-bench against our lib/bench/llm on the same random-weight
# Gemma 3 GGUF files (bench/peer/make_models.py), converted to .mgm by our converter with the
# dtypes kept. Prefill of 512 tokens and decode of 128 tokens, tokens per second. Not run in CI.
#
#   sh bench/peer/run.sh [MODEL ...]      (default: gemma3-1b-q8_0 medgemma-4b-q4_0 medgemma-4b-q8_0)
#
# Per model, interleaved: ours, llama-bench (-r REPS, its mean), ours again; ours = the mean of
# its runs. Needs bench/peer/setup.sh done. Environment:
#   MG_PEER_CACHE    cache folder (default ~/.cache/mg-peer; models in $MG_PEER_CACHE/models)
#   MG_PEER_THREADS  threads (default 2)      MG_PEER_REPS  llama-bench -r (default 3)
#   MG_PEER_PP / MG_PEER_TG   prompt and generation lengths (default 512 / 128)
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
OURS=$CACHE/ours
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUTCSV=${MG_PEER_OUT:-$CACHE/results-$STAMP.csv}
LOG=$CACHE/run-$STAMP.log
[ $# -gt 0 ] || set -- gemma3-1b-q8_0 medgemma-4b-q4_0 medgemma-4b-q8_0
[ -x "$LB" ] && [ -x "$OURS/lib/bench/llm" ] && [ -x "$OURS/bin/medgemini" ] ||
    { echo "run bench/peer/setup.sh first" >&2; exit 1; }

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
CORETYPE=${OPENBLAS_CORETYPE-(unset)}
LLAMA_REV=$(git -C "$CACHE/llama.cpp" rev-parse --short HEAD 2>/dev/null || echo unknown)
RAW=$CACHE/raw-$STAMP
mkdir -p "$RAW"
echo "cpu: $CPU  OPENBLAS_CORETYPE=$CORETYPE  threads $TH  llama.cpp $LLAMA_REV  log $LOG" | tee "$LOG"

for m in "$@"; do
    g=$MODELS/$m.gguf
    o=$MODELS/$m.mgm
    if [ ! -f "$g" ]; then echo "$m: $g missing (make_models.py)" | tee -a "$LOG"; continue; fi
    if [ ! -f "$o" ] || [ "$g" -nt "$o" ] || [ "$OURS/bin/medgemini" -nt "$o" ]; then
        echo "$m: converting" | tee -a "$LOG"
        if ! $NICE "$OURS/bin/medgemini" convert "$g" -o "$o" --quiet --no-checksums >"$RAW/$m.convert" 2>&1; then
            echo "$m: our converter refused:" | tee -a "$LOG"; tee -a "$LOG" <"$RAW/$m.convert"
            rm -f "$o"; continue
        fi
        cat "$RAW/$m.convert" >>"$LOG"
    fi
    echo "$m: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
    # ours, llama.cpp, ours
    OPENBLAS_NUM_THREADS=$TH $NICE "$OURS/lib/bench/llm" "$o" "$TH" "$PP" "$TG" >"$RAW/$m.ours1" 2>>"$LOG" ||
        echo "$m: ours failed (see $LOG)" | tee -a "$LOG"
    cat "$RAW/$m.ours1" | tee -a "$LOG"
    $NICE "$LB" -m "$g" -t "$TH" -p "$PP" -n "$TG" -r "$REPS" -o csv >"$RAW/$m.llama" 2>>"$LOG" ||
        echo "$m: llama-bench failed (see $LOG)" | tee -a "$LOG"
    cat "$RAW/$m.llama" >>"$LOG"
    OPENBLAS_NUM_THREADS=$TH $NICE "$OURS/lib/bench/llm" "$o" "$TH" "$PP" "$TG" >"$RAW/$m.ours2" 2>>"$LOG" ||
        echo "$m: ours failed (see $LOG)" | tee -a "$LOG"
    cat "$RAW/$m.ours2" | tee -a "$LOG"
done

/usr/bin/python3 - "$RAW" "$OUTCSV" "$CPU" "$CORETYPE" "$TH" "$PP" "$TG" "$@" <<'EOF' | tee -a "$LOG"
import csv, os, re, sys
raw, out, cpu, coretype, th, pp, tg = sys.argv[1:8]
models = sys.argv[8:]
rows = []
for m in models:
    lp = lt = None
    f = os.path.join(raw, m + ".llama")
    if os.path.exists(f):
        for r in csv.DictReader(open(f)):
            if int(r["n_prompt"]) > 0 and int(r["n_gen"]) == 0: lp = float(r["avg_ts"])
            if int(r["n_gen"]) > 0 and int(r["n_prompt"]) == 0: lt = float(r["avg_ts"])
    op, ot = [], []
    for k in ("ours1", "ours2"):
        f = os.path.join(raw, m + "." + k)
        s = open(f).read() if os.path.exists(f) else ""
        a = re.search(r"prefill \d+:\s*([\d.]+) tok/s", s)
        b = re.search(r"decode \d+:\s*([\d.]+) tok/s", s)
        if a: op.append(float(a.group(1)))
        if b: ot.append(float(b.group(1)))
    for wl, l, o in (("prefill %s" % pp, lp, op), ("decode %s" % tg, lt, ot)):
        ov = sum(o) / len(o) if o else None
        rows.append((m, wl, l, ov, (ov / l) if (ov and l) else None, "/".join("%.2f" % x for x in o)))
fmt = lambda x, p=2: "" if x is None else "%.*f" % (p, x)
print()
print("CPU: %s   OPENBLAS_CORETYPE=%s   threads %s" % (cpu, coretype, th))
print("%-18s %-12s %14s %14s %10s  %s" % ("model", "workload", "llama.cpp t/s", "ours t/s", "ours/llama", "ours runs"))
for m, wl, l, o, r, runs in rows:
    print("%-18s %-12s %14s %14s %10s  %s" % (m, wl, fmt(l), fmt(o), fmt(r, 3), runs))
with open(out, "w", newline="") as fo:
    w = csv.writer(fo)
    w.writerow(["cpu", "openblas_coretype", "threads", "model", "workload", "llamacpp_tok_s", "ours_tok_s", "ratio_ours_over_llamacpp"])
    for m, wl, l, o, r, runs in rows:
        w.writerow([cpu, coretype, th, m, wl, fmt(l), fmt(o), fmt(r, 3)])
print()
print(open(out).read(), end="")
print("(csv: %s)" % out)
EOF
