#!/usr/bin/python3
"""Reads the raw outputs of bench/peer/run.sh and prints the peer table and its CSV.

    report.py RAW_DIR OUT_CSV CPU CORETYPE THREADS PP TG MODEL ...

Text models: llama-bench's CSV (pp, tg from an empty context, tg at depth PP) against our
lib/bench/llm lines (prefill and decode after it; decode after a 1-token prompt), ours the mean
of its runs. mmproj rows: llama-mtmd-cli's "batch encoding done in N ms" and its log's
timestamps (first token: from the chat formatting of the prompt to the performance summary
printed right after the one generated token) against lib/bench/vision --model and
medgemini report --stats. Seconds for the image rows (lower is better; the ratio is
llama.cpp's time over ours), tokens per second for the text rows (ratio ours over llama.cpp):
a ratio above 1 always means ours is faster.
"""
import csv
import os
import re
import sys


def read(path):
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def llama_bench(path):
    """{(n_prompt, n_gen, n_depth): avg tokens/s} from a llama-bench CSV."""
    out = {}
    if os.path.exists(path):
        for r in csv.DictReader(open(path)):
            try:
                key = (int(r["n_prompt"]), int(r["n_gen"]), int(r.get("n_depth") or 0))
                out[key] = float(r["avg_ts"])
            except (KeyError, ValueError):
                pass
    return out


def stamp(line):
    """Seconds since the start from a llama.cpp log line 'M.SS.mmm.uuu L ...'."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)\.(\d+) ", line)
    if not m:
        return None
    mi, s, ms, us = (int(x) for x in m.groups())
    return mi * 60 + s + ms / 1e3 + us / 1e6


def mtmd(path):
    """(encode seconds, first-token seconds) from a llama-mtmd-cli -v log."""
    enc = start = end = None
    for line in read(path).splitlines():
        m = re.search(r"batch encoding done in (\d+) ms", line)
        if m:
            enc = int(m.group(1)) / 1e3
        if start is None and "chat_add_and_format" in line:
            start = stamp(line)
        if end is None and "llama_perf_context_print" in line:
            end = stamp(line)
    first = end - start if start is not None and end is not None else None
    return enc, first


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def main():
    raw, out, cpu, coretype, th, pp, tg = sys.argv[1:8]
    models = sys.argv[8:]
    pp_i, tg_i = int(pp), int(tg)
    rows = []  # (model, workload, unit, llama, ours, ratio, ours runs)
    for m in models:
        if m.startswith("siglip-mmproj-"):
            enc, first = [], []
            for k in (1, 2):
                a = re.search(r"^encode .*: ([\d.]+) s", read(os.path.join(raw, "%s.ours_enc%d" % (m, k))), re.M)
                b = re.search(r"first token after ([\d.]+) s", read(os.path.join(raw, "%s.ours_rep%d" % (m, k))))
                if a:
                    enc.append(float(a.group(1)))
                if b:
                    first.append(float(b.group(1)))
            e_off, f_off = mtmd(os.path.join(raw, m + ".llama_off"))
            e_on, f_on = mtmd(os.path.join(raw, m + ".llama_on"))
            oe, of = mean(enc), mean(first)
            runs_e = "/".join("%.2f" % x for x in enc)
            runs_f = "/".join("%.2f" % x for x in first)
            for wl, l, o, runs in (("image encode (llama.cpp fa off)", e_off, oe, runs_e),
                                   ("image encode (llama.cpp fa on)", e_on, oe, runs_e),
                                   ("first report token (fa off)", f_off, of, runs_f),
                                   ("first report token (fa on)", f_on, of, runs_f)):
                rows.append((m, wl, "s", l, o, (l / o) if (l and o) else None, runs))
            continue
        lb = llama_bench(os.path.join(raw, m + ".llama"))
        lb.update(llama_bench(os.path.join(raw, m + ".llama_d")))
        lp = lb.get((pp_i, 0, 0))
        lt0 = lb.get((0, tg_i, 0))
        ltd = lb.get((0, tg_i, pp_i))
        op, otd, ot0 = [], [], []
        for k in (1, 2):
            s = read(os.path.join(raw, "%s.ours%d" % (m, k)))
            a = re.search(r"prefill \d+:\s*([\d.]+) tok/s", s)
            b = re.search(r"decode \d+:\s*([\d.]+) tok/s", s)
            c = re.search(r"decode \d+:\s*([\d.]+) tok/s", read(os.path.join(raw, "%s.ours_e%d" % (m, k))))
            if a:
                op.append(float(a.group(1)))
            if b:
                otd.append(float(b.group(1)))
            if c:
                ot0.append(float(c.group(1)))
        for wl, l, o in (("prefill %s" % pp, lp, op), ("decode %s" % tg, lt0, ot0),
                         ("decode %s after %s" % (tg, pp), ltd, otd)):
            ov = mean(o)
            rows.append((m, wl, "tok/s", l, ov, (ov / l) if (ov and l) else None,
                         "/".join("%.2f" % x for x in o)))

    def fmt(x, p=2):
        return "" if x is None else "%.*f" % (p, x)

    print()
    print("CPU: %s   OPENBLAS_CORETYPE=%s   threads %s" % (cpu, coretype, th))
    print("%-20s %-33s %-6s %10s %10s %7s  %s" % ("model", "workload", "unit", "llama.cpp", "ours",
                                                  "ratio", "ours runs"))
    for m, wl, u, l, o, r, runs in rows:
        print("%-20s %-33s %-6s %10s %10s %7s  %s" % (m, wl, u, fmt(l), fmt(o), fmt(r, 3), runs))
    print("(ratio > 1: ours faster; tok/s ours / llama.cpp, seconds llama.cpp / ours)")
    with open(out, "w", newline="") as fo:
        w = csv.writer(fo)
        w.writerow(["cpu", "openblas_coretype", "threads", "model", "workload", "unit",
                    "llamacpp", "ours", "ratio_ours_faster"])
        for m, wl, u, l, o, r, runs in rows:
            w.writerow([cpu, coretype, th, m, wl, u, fmt(l), fmt(o), fmt(r, 3)])
    print()
    print(open(out).read(), end="")
    print("(csv: %s)" % out)


if __name__ == "__main__":
    main()
