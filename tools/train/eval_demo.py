#!/usr/bin/python3
"""eval_demo.py - VQA-RAD test metrics of a demo model, measured through the
C library (the Python binding over libmedgemini.so), not through PyTorch.

    /usr/bin/python3 tools/train/eval_demo.py -m MODEL.mgm [--blind BLIND.mgm]
        [--data ../shared/data/vqa_rad] [--json OUT.json]

For every one of the 451 test questions the model answers greedily
(mg_vqa: the library's image decoding, preprocessing, encoder and decoder);
answers are normalized (trimmed, lower case, whitespace collapsed) and
scored:
  closed accuracy   exact match on the 272 yes/no-style questions
  open exact match  exact match on the 179 open questions
  token F1          mean F1 of answer words vs reference words (open
                    questions, and all questions)
beside two baselines: the majority answer of the training split for closed
questions ("no"), and a question-only (blind) model of the same size that
was trained and is evaluated with a uniform grey image in place of each
image (--blind).
"""
import argparse
import collections
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import vqarad  # noqa: E402
import medgemini  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "vqa_rad"))


def token_f1(pred, ref):
    p, r = pred.split(), ref.split()
    if not p or not r:
        return float(p == r)
    common = collections.Counter(p) & collections.Counter(r)
    n = sum(common.values())
    if n == 0:
        return 0.0
    prec, rec = n / len(p), n / len(r)
    return 2 * prec * rec / (prec + rec)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def grey_image(size=224):
    return medgemini.Image.from_pixels(bytes([128]) * (size * size), size, size, "L")


def run(model_path, recs, data, blind=False, threads=0, max_tokens=24):
    """Answers (normalized) for recs, and seconds taken."""
    model = medgemini.Model.load(model_path, threads=threads)
    out = []
    cache = {}
    t0 = time.time()
    with model:
        ctx = model.context(threads=threads or None)
        grey = grey_image() if blind else None
        for r in recs:
            if blind:
                img = grey
            else:
                img = cache.get(r["image"])
                if img is None:
                    img = cache[r["image"]] = medgemini.Image.open(
                        os.path.join(data, "images", r["image"]))
            a = ctx.vqa([img], r["question"], max_tokens=max_tokens, temperature=0.0)
            out.append(vqarad.norm_answer(a))
        ctx.close()
        for img in cache.values():
            img.close()
        if grey is not None:
            grey.close()
    return out, time.time() - t0


def score(recs, answers):
    closed = [(a == r["answer"]) for r, a in zip(recs, answers) if r["closed"]]
    opn = [(a == r["answer"]) for r, a in zip(recs, answers) if not r["closed"]]
    f1_open = [token_f1(a, r["answer"]) for r, a in zip(recs, answers) if not r["closed"]]
    f1_all = [token_f1(a, r["answer"]) for r, a in zip(recs, answers)]
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    return {"closed_accuracy": mean(closed), "n_closed": len(closed),
            "open_exact_match": mean(opn), "n_open": len(opn),
            "open_token_f1": mean(f1_open), "token_f1_all": mean(f1_all)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--blind", help="the question-only baseline model")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="write the metrics and answers here")
    ap.add_argument("--limit", type=int, default=0, help="first N test questions only")
    args = ap.parse_args()

    train, test = vqarad.load(args.data)
    if args.limit:
        test = test[:args.limit]
    majority = collections.Counter(r["answer"] for r in train if r["closed"]).most_common(1)[0][0]
    rows = {}
    answers, secs = run(args.model, test, args.data, threads=args.threads)
    rows["model"] = dict(score(test, answers), seconds=secs)
    rows["majority (closed: %r)" % majority] = score(
        test, [majority if r["closed"] else "" for r in test])
    if args.blind:
        b_answers, b_secs = run(args.blind, test, args.data, blind=True, threads=args.threads)
        rows["question-only (blind) model"] = dict(score(test, b_answers), seconds=b_secs)

    print("VQA-RAD test (%d questions: %d closed, %d open), through libmedgemini %s on %s" % (
        len(test), sum(r["closed"] for r in test), sum(not r["closed"] for r in test),
        medgemini.version(),
        cpu_name()))
    print("| system | closed accuracy | open exact match | open token F1 | token F1 (all) |")
    print("|---|---|---|---|---|")
    for name, s in rows.items():
        print("| %s | %.1f %% | %.1f %% | %.1f | %.1f |" % (
            name, 100 * s["closed_accuracy"], 100 * s["open_exact_match"],
            100 * s["open_token_f1"], 100 * s["token_f1_all"]))
    print("model: %.1f s for %d questions (%.1f questions/s)" % (
        rows["model"]["seconds"], len(test), len(test) / rows["model"]["seconds"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"metrics": rows, "cpu": cpu_name(),
                       "answers": [{"qid": r["qid"], "question": r["question"],
                                    "reference": r["answer"], "answer": a}
                                   for r, a in zip(test, answers)]}, f, indent=1)


if __name__ == "__main__":
    main()
