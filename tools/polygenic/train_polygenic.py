#!/usr/bin/python3
"""train_polygenic.py - trains the polygenic model (a small MedGemma-
architecture model that reads polygenic scores as an image and answers
"Does this individual have X?") on the simulated cohort's training split and
writes it as a Hugging Face folder that `medgemini convert` turns into .mgm.

    /usr/bin/python3 tools/polygenic/train_polygenic.py --out DIR
        [--cohort lib/polygenic/seed1] [--seed 1] [--epochs 5] [options]

Steps (seeded; CPU):
 1. reference distribution: mean and SD (ddof 0) of each of the 192 score
    SUMs over the training split (a constant score gets SD 1); the score
    image of every training and validation individual by the library's rule
    (pgmodel.levels: 64 traits on an 8 x 8 grid of 8-pixel squares, one
    channel per threshold, 32 levels per SD, round half to even, clip);
 2. the pruned Gemma 3 tokenizer (`medgemini tokenize --prune-vocab`) of a
    corpus holding the prompt of every outcome's question (all 11, the held-
    out ones too) with both answers; prompts tokenized through the library's
    Python binding as mg_prs_predict_batch lays them out;
 3. checks before training: the packed forward (one sequence per individual
    holding all questions) equals the single prompts in float64; the
    untrained model, exported and converted by `medgemini convert`, draws the
    same score images as this script (mg_prs_score_image via the binding's
    Model.score_image, pixel by pixel, on 48 individuals including clipped
    and missing scores), reads the same prompt tokens, and gives the same
    risks as PyTorch within 1e-6;
 4. training on the 8 trained outcomes only: a step is --batch individuals,
    each one packed sequence (the prompt up to <end_of_image>, then the 8
    questions, each attending to the score block and to itself, positions
    continuing after the block as in mg_prs_predict_batch); the loss is the
    cross-entropy of the answer token ("yes"/"no", over the whole vocabulary)
    at each question's answer position; AdamW, warm-up then cosine decay,
    gradient clipping at 1, bf16 autocast for matrix products (float32
    master weights); weights initialized Normal(0, --init-std 0.06): with
    the demo's 0.02 the model learned several times more slowly;
    validation AUC (trained outcomes, validation split) every --eval-every
    steps; the weights with the best mean validation AUC are kept;
 5. export: DIR/hf/ (config.json with genome_config, model.safetensors in
    float32, tokenizer.json, preprocessor_config.json, generation_config.json,
    README.md) and DIR/train_log.json.
The test split is never read.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import pgmodel as P  # noqa: E402 (puts tools/train on sys.path)
sys.path.insert(0, os.path.join(P.ROOT, "bindings", "python"))

import model as M  # noqa: E402
import train_demo  # noqa: E402  (tune_malloc, prune_tokenizer, export_hf)
import metrics  # noqa: E402

SHAPE = dict(
    # text decoder: 2 layers, the first sliding (window 32), the second global;
    # 4 query heads sharing 2 key/value heads (GQA)
    hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32, sliding_window=32,
    sliding_window_pattern=2, max_position_embeddings=512,
    # image encoder: 64 x 64 pixels, 16-pixel patches (each 2 x 2 trait
    # squares: the patch embedding weighs the 12 scores of a patch linearly,
    # each with its own weights), 2 layers of width 128; 16 tokens per image
    # (no pooling). With 8-pixel patches (one trait each, every trait through
    # the same linear map) the model learned several times more slowly:
    # validation AUC 0.754 after half an epoch against 0.781 (seed 1).
    image_size=64, patch_size=16, v_hidden=128, v_intermediate=512, v_layers=2, v_heads=4,
    mm_tokens_per_image=16,
)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def export(model, c, tok_json, out, gcfg, prompts, dtype="F32"):
    card = {
        "eos_ids": [prompts.tok.special("eos"), prompts.tok.special("end_of_turn")],
        "readme": "---\nlicense: cc0-1.0\n---\n\nWeights of the libmedgemini polygenic model "
                  "(simulated data, not for clinical use), trained by "
                  "tools/polygenic/train_polygenic.py on the simulated cohort's training "
                  "split. See examples/models/POLYGENIC_MODEL_CARD.md.\n",
    }
    train_demo.export_hf(model, c, tok_json, out, card, dtype)
    path = os.path.join(out, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["genome_config"] = gcfg
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)


def library_checks(args, model, c, tok_json, gcfg, prompts, cohort, rows, lv, questions):
    """The untrained model through the library: score images, prompt tokens,
    risks. Returns a dict of what was checked."""
    import medgemini
    work = os.path.join(args.out, "init-check")
    shutil.rmtree(work, ignore_errors=True)
    export(model, c, tok_json, os.path.join(work, "hf"), gcfg, prompts)
    mgm = os.path.join(work, "init.mgm")
    subprocess.run([args.cli, "convert", os.path.join(work, "hf"), "-o", mgm, "--quiet"],
                   check=True, stdin=subprocess.DEVNULL)
    lib = medgemini.Model.load(mgm, threads=1)
    names = cohort.score_names
    T, C = len(cohort.traits), len(cohort.thresholds)
    z = np.abs(lv.astype(np.int32) - 128).max(axis=1)
    rng = np.random.default_rng(7)
    pick = list(np.argsort(-z, kind="stable")[:16]) + list(rng.choice(len(rows), 32, replace=False))
    out = {"individuals": len(pick)}
    if not hasattr(lib, "score_image"):
        out["score_image"] = "not available in the binding: pixels checked through risks only"
    else:
        bad = 0
        clipped = 0
        for k, i in enumerate(pick):
            vals = np.array(cohort.scores[rows[i]], dtype=np.float64)
            want_lv = lv[i].copy()
            if k % 8 == 7:   # some scores missing: NaN, or not given at all
                vals[5] = np.nan
                want_lv[5] = 128
                given = [j for j in range(len(names)) if j != 11]
                want_lv[11] = 128
            else:
                given = list(range(len(names)))
            img = lib.score_image(([names[j] for j in given], [float(vals[j]) for j in given]))
            got = np.frombuffer(img.tobytes(), np.uint8).reshape(img.height, img.width, 3)
            img.close()
            want = P.image_u8(want_lv[None], T, C)[0]
            bad += int(not np.array_equal(got, want))
            clipped += int(((want_lv == 0) | (want_lv == 255)).any())
        if bad:
            raise SystemExit("score image differs from the library's for %d of %d individuals"
                             % (bad, len(pick)))
        out["score_image"] = ("identical to mg_prs_score_image (Model.score_image) for %d "
                              "individuals (%d with clipped levels, %d with missing scores)"
                              % (len(pick), clipped, len(pick[7::8])))
    # prompt tokens and risks: the context's sequence after prs_risk, and the
    # risk against PyTorch (float64) on the same weights
    ref = M.load_checkpoint(os.path.join(work, "hf"), dtype=torch.float64)
    ctx = lib.context(threads=1)
    worst = 0.0
    for i in pick[:3]:
        vals = [float(v) for v in cohort.scores[rows[i]]]
        px = P.pixels(lv[i:i + 1], T, C, torch_dtype=torch.float64)
        for q in questions[:3]:
            r = ctx.prs_risk((names, vals), q)
            ids, _ = prompts.full(q)
            if ctx.tokens() != ids:
                raise SystemExit("prompt tokens differ from the library's for %r" % q)
            with torch.no_grad():
                lg = P.single_logits(ref, prompts, px, q)
            worst = max(worst, abs(r - float(P.risk_from_logits(lg, prompts.yes, prompts.no))))
    ctx.close()
    lib.close()
    if worst > 1e-6:
        raise SystemExit("untrained model: library risk differs from PyTorch by %.3g" % worst)
    out["prompt_tokens"] = "identical to the context's tokens after prs_risk"
    out["untrained_risk_max_abs_diff"] = worst
    return out


@torch.no_grad()
def predict(model, lay, lv, n_traits, n_thr, yes, no, batch=500, autocast=None):
    model.eval()
    out = []
    for k in range(0, len(lv), batch):
        px = P.pixels(lv[k:k + batch], n_traits, n_thr, torch_dtype=torch.float32)
        with autocast():
            lg = P.packed_logits(model, lay, model.encode_images(px))
        out.append(P.risk_from_logits(lg.float(), yes, no).numpy())
    model.train()
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="work folder (hf/ is written inside)")
    ap.add_argument("--cohort", default=P.DEFAULT_COHORT)
    ap.add_argument("--tokenizer", default=P.DEFAULT_TOKENIZER,
                    help="the full Gemma 3 tokenizer.json")
    ap.add_argument("--cli", default=os.path.join(P.ROOT, "bin", "medgemini"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--epochs", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=64, help="individuals per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=0.0)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--init-std", type=float, default=0.06,
                    help="std of the normal initialization of matrices and embeddings")
    ap.add_argument("--eval-every", type=int, default=1250, help="steps between validations")
    ap.add_argument("--val-n", type=int, default=0, help="validate on the first N (0: all)")
    ap.add_argument("--train-n", type=int, default=0, help="train on the first N (0: all)")
    ap.add_argument("--shape", default="{}", help="JSON overrides of the model shape")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop after this")
    ap.add_argument("--skip-library-checks", action="store_true")
    args = ap.parse_args()

    t0 = time.time()
    train_demo.tune_malloc()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)

    # 1. cohort, reference, score images
    co = P.Cohort(args.cohort)
    tr, va = co.rows("train"), co.rows("val")
    if args.train_n:
        tr = tr[:args.train_n]
    if args.val_n:
        va = va[:args.val_n]
    T, C = len(co.traits), len(co.thresholds)
    mean, std = P.reference(co.scores[co.rows("train")])
    lv_tr = P.levels(co.scores[tr], mean, std)
    lv_va = P.levels(co.scores[va], mean, std)
    trained = co.trained
    y_tr = np.stack([co.labels(tr, o) for o in trained], 1)
    y_va = np.stack([co.labels(va, o) for o in trained], 1)
    log("cohort: %d train, %d validation individuals; %d scores; %.1f %% of training levels "
        "clipped; %.0f s" % (len(tr), len(va), T * C,
                             100.0 * np.mean((lv_tr == 0) | (lv_tr == 255)), time.time() - t0))

    # 2. tokenizer and prompts
    shape = dict(SHAPE)
    shape.update(json.loads(args.shape))
    c = M.Config(**shape)
    corpus = os.path.join(args.out, "corpus.txt")
    with open(corpus, "w") as f:
        for o in co.outcomes:
            for a in (P.ANSWER_YES, P.ANSWER_NO):
                f.write(P.prompt_text(P.question(o)) + a + P.TURN_END)
    tok_json = os.path.join(args.out, "tokenizer.json")
    train_demo.prune_tokenizer(args.cli, args.tokenizer, corpus, tok_json)
    import medgemini
    tok = medgemini.Tokenizer.load_json(tok_json)
    prompts = P.Prompts(tok, c.mm_tokens_per_image)
    c.vocab_size = tok.vocab_size
    c.boi_id, c.eoi_id, c.image_id = prompts.boi, prompts.eoi, prompts.img
    c.dropout = args.dropout
    q_trained = [P.question(o) for o in trained]
    q_all = [P.question(o) for o in co.outcomes]
    for o in co.outcomes:   # every question tokenizes without byte fallback
        _, tail = prompts.ids(P.question(o))
        pieces = [tok.piece(i) for i in tail]
        if any(p.startswith(b"<0x") for p in pieces):
            raise SystemExit("question %r falls back to bytes" % P.question(o))
    lay = P.Layout(prompts, q_trained, c.sliding_window)
    log("vocabulary: %d tokens; prompt prefix %d tokens, packed training sequence %d tokens "
        "(%d questions)" % (c.vocab_size, lay.n_prefix, lay.T, len(q_trained)))

    # 3. model and checks
    model = M.DemoModel(c)
    model.reset_parameters(std=args.init_std, seed=1000 + args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log("parameters: %d (%.2f M)" % (n_params, n_params / 1e6))
    import copy
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():   # non-trivial norms, so the check is not degenerate
        g = torch.Generator().manual_seed(5)
        for n_, p in m64.named_parameters():
            if n_.endswith("norm.weight") or "layernorm" in n_:
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    lay_all = P.Layout(prompts, q_all, c.sliding_window)
    worst = P.check_packed(m64, prompts, lay_all,
                           P.pixels(lv_tr[:2], T, C, torch_dtype=torch.float64))
    del m64
    log("packed forward = single prompts (float64): max |diff| %.2e" % worst)
    gcfg = P.genome_config(co.traits, co.thresholds, mean, std,
                           [P.DISPLAY[o] for o in trained])
    checks = {"packed_vs_single_max_abs_diff": worst}
    if not args.skip_library_checks:
        checks.update(library_checks(args, model, c, tok_json, gcfg, prompts, co, tr, lv_tr,
                                     q_all))
        log("library checks: %s" % json.dumps(checks))

    # 4. training
    model.train()
    decay = [p for n_, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n_, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    steps_per_epoch = math.ceil(len(tr) / args.batch)
    total = int(round(steps_per_epoch * args.epochs))
    warm = min(args.warmup, max(1, total // 10))

    def lr_at(s):
        if s < warm:
            return args.lr * (s + 1) / warm
        f = 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))
        return args.min_lr + (args.lr - args.min_lr) * f

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    ans = torch.tensor([prompts.no, prompts.yes])
    baseline_val = {}
    bpath = os.path.join(P.ROOT, "examples", "data", "polygenic", "baselines.json")
    if os.path.exists(bpath):
        with open(bpath) as f:
            for o in json.load(f)["outcomes"]:
                baseline_val[o["outcome"]] = {"single": o["single"]["val_auc"],
                                              "ensemble": o["ensemble"]["val_auc"]}

    def validate(step, epoch):
        te = time.time()
        r = predict(model, lay, lv_va, T, C, prompts.yes, prompts.no, autocast=autocast)
        aucs = {o: metrics.auc(y_va[:, k], r[:, k]) for k, o in enumerate(trained)}
        rec = {"step": step, "epoch": round(epoch, 3), "val_auc": aucs,
               "val_auc_mean": float(np.mean(list(aucs.values()))),
               "eval_seconds": round(time.time() - te, 1)}
        return rec

    history, best, best_rec = [], None, None
    step, stop = 0, False
    tl, tn, ts = 0.0, 0, time.time()
    train_t0 = time.time()
    ep = 0
    while step < total and not stop:
        order = rng.permutation(len(tr))
        for k in range(0, len(order), args.batch):
            if step >= total:
                break
            idx = np.sort(order[k:k + args.batch])
            px = P.pixels(lv_tr[idx], T, C, torch_dtype=torch.float32)
            tgt = ans[torch.from_numpy(y_tr[idx])]          # [B, K]
            for g_ in opt.param_groups:
                g_["lr"] = lr_at(step)
            with autocast():
                lg = P.packed_logits(model, lay, model.encode_images(px))
            loss = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), tgt.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tl += float(loss) * len(idx)
            tn += len(idx)
            last = step >= total
            if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
                log("stopping: --max-minutes reached")
                stop = last = True
            if step % args.eval_every == 0 or last:
                rec = validate(step, step / steps_per_epoch)
                rec["train_loss"] = tl / max(tn, 1)
                rec["lr"] = lr_at(step - 1)
                rec["train_seconds"] = round(time.time() - ts, 1)
                history.append(rec)
                tl, tn, ts = 0.0, 0, time.time()
                if best_rec is None or rec["val_auc_mean"] > best_rec["val_auc_mean"]:
                    best_rec = rec
                    best = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
                log(json.dumps({k_: (round(v, 4) if isinstance(v, float) else v)
                                for k_, v in rec.items() if k_ != "val_auc"}),
                    " ".join("%s %.3f" % (o[:8], a) for o, a in rec["val_auc"].items()))
            if stop:
                break
        ep += 1
    train_seconds = time.time() - train_t0
    model.load_state_dict(best)
    model.eval()
    log("kept step %d (epoch %.2f): mean validation AUC %.4f" %
        (best_rec["step"], best_rec["epoch"], best_rec["val_auc_mean"]))

    # 5. export
    export(model, c, tok_json, os.path.join(args.out, "hf"), gcfg, prompts)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump({"args": vars(args), "config": c.to_dict(), "parameters": n_params,
                   "packed_sequence_tokens": lay.T, "steps_per_epoch": steps_per_epoch,
                   "total_steps": total, "steps_done": step, "warmup": warm,
                   "history": history, "best": best_rec, "baseline_val_auc": baseline_val,
                   "checks": checks, "torch": torch.__version__, "numpy": np.__version__,
                   "cpu": P.cpu_name(), "threads": args.threads,
                   "train_seconds": train_seconds, "seconds": time.time() - t0}, f, indent=1)
    log("done in %.1f min (training %.1f min)" % ((time.time() - t0) / 60, train_seconds / 60))


if __name__ == "__main__":
    main()
