#!/usr/bin/python3
"""parity_polygenic.py - the polygenic model in PyTorch against the C library.

    /usr/bin/python3 tools/polygenic/parity_polygenic.py -m MODEL.mgm
        [--n 100] [--tol 1e-4] [--scores examples/data/polygenic/scores.tsv.gz]
        [--hf HF_FOLDER]

The reference is tools/train/model.py in float64 on the weights read back
from MODEL.mgm (tests/ref/mgm.py through tools/train/parity.py; f32 and bf16
weights are exact, q8_0/q4_0 dequantized), or with --hf on the exported
Hugging Face checkpoint's weights. Its input is the score image computed here
from the file's own genome.* metadata by the rule of docs/POLYGENIC.md, and
each question's prompt as the library lays it out (one prompt per question,
model.py's plain forward, not the trainer's packed one). The library runs
mg_prs_predict_batch (Model.prs_predict_batch, what `prs predict` uses) for
the first N individuals of --scores (default: the shipped 500 of
examples/data/polygenic, the first 500 of the cohort's test split) and every
outcome's question (the 8 trained and the 3 held-out ones); for the first 5
individuals also single mg_prs_predict calls (Model.prs_risk) and the score
image (Model.score_image), pixel by pixel.
Prints the largest |risk_C - risk_torch| and exits 1 when it exceeds --tol
(or an image differs).
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch

import pgmodel as P

sys.path.insert(0, os.path.join(P.ROOT, "tests", "ref"))
sys.path.insert(0, os.path.join(P.ROOT, "bindings", "python"))

import model as M  # noqa: E402
from mgm import MgmFile  # noqa: E402


def read_scores(path, n):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt") as f:
        head = f.readline().rstrip("\n").split("\t")
        if head[:2] != ["#FID", "IID"]:
            raise SystemExit("%s: header must start with #FID IID" % path)
        names = [h[:-4] for h in head[2:] if h.endswith("_SUM")]
        rows, ids = [], []
        for line in f:
            p = line.rstrip("\n").split("\t")
            ids.append((p[0], p[1]))
            rows.append([float(v) for v in p[2:]])
            if len(rows) == n:
                break
    return ids, names, np.array(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--hf", help="take the reference weights from this Hugging Face folder")
    ap.add_argument("--scores", default=os.path.join(P.ROOT, "examples", "data", "polygenic",
                                                      "scores.tsv.gz"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import medgemini
    import parity as demo_parity   # tools/train/parity.py: the .mgm -> PyTorch reader

    f = MgmFile(args.model)
    g = f.meta
    traits, thr = g["genome.traits"], g["genome.thresholds"]
    T, C = len(traits), len(thr)
    mean = np.array(g["genome.reference_mean"], dtype=np.float64)
    std = np.array(g["genome.reference_std"], dtype=np.float64)
    grid, cell = tuple(g["genome.grid"]), int(g["genome.cell"])
    z = float(g.get("genome.z_scale", 32.0))
    question = g.get("genome.question", P.QUESTION)
    yes_w, no_w = g.get("genome.answer_yes", "yes"), g.get("genome.answer_no", "no")
    dtypes = sorted({f.dtype(n) for n in ("text.token_embd", "text.blk.0.attn_q",
                                          "vision.blk.0.attn_q")})
    del f

    if args.hf:
        ref = M.load_checkpoint(args.hf, dtype=torch.float64)
        c = ref.c
    else:
        ref, c = demo_parity.torch_model_from_mgm(args.model)
    ref.eval()
    lib = medgemini.Model.load(args.model, threads=args.threads)
    tok = lib.tokenizer
    prompts = P.Prompts(tok, c.mm_tokens_per_image)
    if (tok.tokenize(yes_w), tok.tokenize(no_w)) != ([prompts.yes], [prompts.no]):
        raise SystemExit("the file's answer words are not the ones checked here")

    ids, names, scores = read_scores(args.scores, args.n)
    want = ["%s_%s" % (t, h) for t in traits for h in thr]
    col = [names.index(n) for n in want]
    x = scores[:, col]
    lv = P.levels(x, mean, std, z)
    px = P.pixels(lv, T, C, grid, cell, torch_dtype=torch.float64)
    questions = [question.replace("{outcome}", P.DISPLAY[o]) for o in P.DISPLAY]

    t1 = time.time()
    risk_c = lib.prs_predict_batch(x, want, questions)
    t_c = time.time() - t1
    t1 = time.time()
    risk_t = np.zeros_like(risk_c)
    with torch.no_grad():
        for i in range(len(x)):
            emb = ref.encode_images(px[i:i + 1])
            for k, q in enumerate(questions):
                ids_q, blk = prompts.full(q)
                h = ref.hidden(torch.tensor([ids_q]), torch.tensor([blk]),
                               emb.reshape(-1, emb.shape[-1]))
                lg = ref.logits(h[:, -1])[0]
                risk_t[i, k] = float(P.risk_from_logits(lg, prompts.yes, prompts.no))
    t_t = time.time() - t1
    d = np.abs(risk_c - risk_t)
    worst = float(d.max())

    # single calls and score images for the first 5
    single, bad_img = 0.0, 0
    for i in range(min(5, len(x))):
        for k, q in enumerate(questions):
            single = max(single, abs(lib.prs_risk((want, list(x[i])), q) - risk_c[i, k]))
        if hasattr(lib, "score_image"):
            img = lib.score_image((want, list(x[i])))
            got = np.frombuffer(img.tobytes(), np.uint8).reshape(img.height, img.width, 3)
            img.close()
            bad_img += int(not np.array_equal(got, P.image_u8(lv[i:i + 1], T, C, grid, cell)[0]))
    lib.close()

    ok = worst <= args.tol and bad_img == 0 and single <= 1e-6
    print("parity %s (weights %s, reference from %s): %d individuals x %d questions: "
          "max |risk_C - risk_torch| = %.2e (tol %.0e), mean %.2e; batch vs single calls %.1e; "
          "score images %s; risks range [%.4f, %.4f]; C %.1f s, torch float64 %.1f s: %s" % (
              os.path.basename(args.model), "/".join(dtypes),
              "the HF folder" if args.hf else "the .mgm", len(x), len(questions), worst, args.tol,
              float(d.mean()), single,
              "identical (5 individuals)" if bad_img == 0 else "DIFFER (%d)" % bad_img,
              float(risk_c.min()), float(risk_c.max()), t_c, t_t, "ok" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
