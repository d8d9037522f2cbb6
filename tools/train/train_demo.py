#!/usr/bin/python3
"""train_demo.py - trains the demo model (a small MedGemma-architecture
model) on the VQA-RAD training split and writes it as a Hugging Face
folder that `medgemini convert` turns into .mgm, the path real users take.

    /usr/bin/python3 tools/train/train_demo.py --out BUILD_DIR [options]

Steps (all seeded; CPU by default, a GPU when --device cuda is given):
 1. the training text (every training prompt and answer, and the study
    summaries) is written to corpus.txt; the real Gemma 3 tokenizer is
    pruned to it by the library (`medgemini tokenize --prune-vocab`), so
    training sees exactly the ids the library produces;
 2. every prompt is tokenized through the library (Python binding) in the
    layout of src/tasks/tasks.c, and checked against the library's own
    layout of the whole prompt string;
 3. the model trains on answers only (loss on the answer tokens and
    <end_of_turn>), images augmented, a batch = all questions of a few
    images plus each image's summary under the report instruction;
 4. the weights are written in bfloat16 (hf/model.safetensors) with
    config.json, preprocessor_config.json, generation_config.json,
    tokenizer.json and a README.md, ready for `medgemini convert`.

--blind trains the question-only baseline: the same model and recipe with
every image replaced by a uniform grey one (in training and evaluation).
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
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import model as M  # noqa: E402
import vqarad  # noqa: E402

DEFAULT_TOKENIZER = os.path.join(
    ROOT, "tests", "tokenizer", "node_modules", "@lenml", "tokenizer-gemma3", "models",
    "tokenizer.json")
DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "vqa_rad"))


def tune_malloc():
    """Keeps freed tensor memory in the process instead of returning it to
    the kernel after every operation: on virtual machines where fresh pages
    are slow to fault in, glibc's default (mmap for blocks over 128 KiB to
    32 MiB, trimming the heap top) made training ~10x slower."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD: the largest allowed
        libc.mallopt(-1, 1 << 30)    # M_TRIM_THRESHOLD
        libc.mallopt(-2, 256 << 20)  # M_TOP_PAD
    except (OSError, AttributeError):
        pass


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------ tokenizer

def prune_tokenizer(cli, full, corpus, out):
    subprocess.run([cli, "tokenize", "--tokenizer", full, "--prune-vocab", corpus,
                    "--save-tokenizer", out], check=True, stdin=subprocess.DEVNULL)


class Encoded:
    """Token ids of the training and test items for one tokenizer."""

    def __init__(self, tok, n_img):
        import medgemini  # noqa: F401 (the binding; loads lib/libmedgemini.so)
        self.tok = tok
        self.n_img = n_img
        self.image_id = tok.special("image")
        self.boi = tok.special("start_of_image")
        self.eoi = tok.special("end_of_image")
        self.eot = tok.special("end_of_turn")
        if None in (self.image_id, self.boi, self.eoi, self.eot):
            raise SystemExit("the tokenizer lacks image or turn markers")
        self._cache = {}

    def prompt(self, text):
        """Prompt ids and their block ids (1 on the image tokens)."""
        if text in self._cache:
            return self._cache[text]
        head, tail = vqarad.prompt_text(text)
        a = self.tok.tokenize(head, bos=True, special=True)
        b = self.tok.tokenize(tail, special=True)
        # the library tokenizes the whole string, then inserts the image
        # tokens after <start_of_image>: the two must agree
        whole = self.tok.tokenize(head + tail, bos=True, special=True)
        if whole != a + b or a[-1] != self.boi or b[0] != self.eoi:
            raise SystemExit("prompt layout differs from the library's for %r" % text)
        ids = a + [self.image_id] * self.n_img + b
        blk = [0] * len(a) + [1] * self.n_img + [0] * len(b)
        self._cache[text] = (ids, blk)
        return ids, blk

    def answer(self, text):
        return self.tok.tokenize(text, special=False) + [self.eot]


# ------------------------------------------------------------ data

class ImageBank:
    """Decoded training images: the library-exact tensors (no augmentation)
    and a copy at most 2 x size a side for augmented views."""

    def __init__(self, root, names, size, blind):
        self.size = size
        self.blind = blind
        self.exact, self.small = {}, {}
        for n in names:
            im = Image.open(os.path.join(root, "images", n))
            im.load()
            im = im.convert("RGB")
            self.exact[n] = vqarad.library_pixels(im, size)
            w, h = im.size
            s = min(1.0, 2.0 * size / max(w, h))
            if s < 1.0:
                im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR,
                               reducing_gap=None)
            self.small[n] = im
        self.grey = vqarad.normalize(np.full((size, size, 3), 128, np.uint8))

    def view(self, name, rng, p_exact):
        if self.blind:
            return self.grey
        if rng.random() < p_exact:
            return self.exact[name]
        return vqarad.augment(self.small[name], self.size, rng)


def make_items(recs, summaries, enc, with_reports=True):
    """Training items: (image, prompt ids, block ids, answer ids, kind)."""
    items = []
    for r in recs:
        ids, blk = enc.prompt(r["question"])
        items.append((r["image"], ids, blk, enc.answer(r["answer"]), "qa"))
    if with_reports:
        for img, s in summaries.items():
            ids, blk = enc.prompt(vqarad.REPORT_INSTRUCTION)
            items.append((img, ids, blk, enc.answer(s), "report"))
    return items


def collate(batch_items, img_index):
    """Right-padded tensors: ids, blocks, labels (-100 off the answer),
    and which image each sequence uses."""
    n = len(batch_items)
    t = max(len(it[1]) + len(it[3]) for it in batch_items)
    ids = np.zeros((n, t), np.int64)
    blk = np.zeros((n, t), np.int64)
    lab = np.full((n, t), -100, np.int64)
    which = np.zeros(n, np.int64)
    for i, (img, p, b, a, _) in enumerate(batch_items):
        seq = p + a
        ids[i, :len(seq)] = seq
        blk[i, :len(b)] = b
        # position j predicts token j + 1: answer tokens are predicted from
        # the last prompt position on
        lab[i, len(p) - 1:len(seq) - 1] = a
        which[i] = img_index[img]
    return (torch.from_numpy(ids), torch.from_numpy(blk), torch.from_numpy(lab),
            torch.from_numpy(which))


def forward_loss(model, px, ids, blk, lab, which):
    emb = model.encode_images(px)                      # [n_img, mm, H]
    rows = emb[which].reshape(-1, emb.shape[-1])
    h = model.hidden(ids, blk, rows)
    sel = lab >= 0
    logits = model.logits(h[sel])
    return F.cross_entropy(logits, lab[sel], reduction="sum"), logits, lab[sel]


# ------------------------------------------------------------ evaluation (dev)

@torch.no_grad()
def teacher_forced_eval(model, items, bank, batch_imgs=16):
    """Exact-match rate of whole answers under teacher forcing (equal to
    greedy exact match: every argmax right <=> greedy reproduces it)."""
    model.eval()
    by_img = {}
    for it in items:
        by_img.setdefault(it[0], []).append(it)
    imgs = sorted(by_img)
    ok = {"closed": [0, 0], "open": [0, 0]}
    for k in range(0, len(imgs), batch_imgs):
        group = imgs[k:k + batch_imgs]
        index = {g: i for i, g in enumerate(group)}
        px = torch.from_numpy(np.stack([bank.exact[g] if not bank.blind else bank.grey
                                        for g in group]))
        its = [it for g in group for it in by_img[g]]
        ids, blk, lab, which = collate(its, index)
        emb = model.encode_images(px)
        h = model.hidden(ids, blk, emb[which].reshape(-1, emb.shape[-1]))
        pred = model.logits(h).argmax(-1)
        good = ((pred == lab) | (lab < 0)).all(dim=1)
        for it, g in zip(its, good.tolist()):
            key = "closed" if it[4] == "closed" else "open"
            ok[key][0] += int(g)
            ok[key][1] += 1
    model.train()
    return {k: (v[0] / v[1] if v[1] else float("nan"), v[1]) for k, v in ok.items()}


# ------------------------------------------------------------ export

def export_hf(model, c, tok_json, out, card, dtype="BF16"):
    os.makedirs(out, exist_ok=True)
    sd = M.state_to_numpy(model)
    M.save_safetensors(os.path.join(out, "model.safetensors"), sd, dtype,
                       {"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(M.hf_config(c), f, indent=2)
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "Gemma3ImageProcessor",
                   "size": {"height": c.image_size, "width": c.image_size},
                   "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                   "rescale_factor": 1.0 / 255.0, "resample": 2,
                   "do_pan_and_scan": False, "image_seq_length": c.mm_tokens_per_image},
                  f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": card["eos_ids"]}, f)
    shutil.copyfile(tok_json, os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(card["readme"])


# ------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="work folder (hf/ is written inside)")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="the full Gemma 3 tokenizer.json")
    ap.add_argument("--cli", default=os.path.join(ROOT, "bin", "medgemini"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["bf16", "f32"], default="bf16",
                    help="matrix products in bfloat16 (autocast; float32 master weights)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--images-per-batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--p-exact", type=float, default=0.3,
                    help="share of image views that are the library's exact pixels")
    ap.add_argument("--report-weight", type=float, default=0.3)
    ap.add_argument("--ema", type=float, default=0.0,
                    help="export an exponential moving average of the weights with this decay "
                         "per step (0: the last weights)")
    ap.add_argument("--blind", action="store_true", help="question-only baseline")
    ap.add_argument("--val", type=float, default=0.0,
                    help="hold out this share of training questions for development")
    ap.add_argument("--shape", default="{}", help="JSON overrides of model.Config")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop early after this")
    args = ap.parse_args()

    t0 = time.time()
    tune_malloc()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)

    train, test = vqarad.load(args.data)
    del test  # never used in training
    summaries = vqarad.summaries(train)
    val = []
    if args.val > 0:
        perm = np.random.default_rng(12345).permutation(len(train))
        k = int(len(train) * args.val)
        val = [train[i] for i in sorted(perm[:k])]
        train = [train[i] for i in sorted(perm[k:])]

    # 1. corpus and pruned tokenizer
    shape = json.loads(args.shape)
    c = M.Config(**shape)
    corpus = os.path.join(args.out, "corpus.txt")
    with open(corpus, "w") as f:
        for r in train:
            h, t = vqarad.prompt_text(r["question"])
            f.write(h + t + r["answer"] + "<end_of_turn>\n")
        h, t = vqarad.prompt_text(vqarad.REPORT_INSTRUCTION)
        for s in summaries.values():
            f.write(h + t + s + "<end_of_turn>\n")
    tok_json = os.path.join(args.out, "tokenizer.json")
    prune_tokenizer(args.cli, args.tokenizer, corpus, tok_json)
    import medgemini
    tok = medgemini.Tokenizer.load_json(tok_json)
    enc = Encoded(tok, c.mm_tokens_per_image)
    c.vocab_size = tok.vocab_size
    c.boi_id, c.eoi_id, c.image_id = enc.boi, enc.eoi, enc.image_id
    c.dropout = args.dropout
    log("vocabulary: %d tokens (pruned from the full Gemma 3 tokenizer)" % c.vocab_size)

    # 2. items
    items = make_items(train, summaries, enc)
    val_items = [(r["image"],) + enc.prompt(r["question"]) +
                 (enc.answer(r["answer"]), "closed" if r["closed"] else "open") for r in val]
    names = sorted({it[0] for it in items} | {it[0] for it in val_items})
    bank = ImageBank(args.data, names, c.image_size, args.blind)
    by_img = {}
    for it in items:
        by_img.setdefault(it[0], []).append(it)
    log("items: %d QA + %d reports over %d images; %.0f s" %
        (sum(it[4] == "qa" for it in items), sum(it[4] == "report" for it in items),
         len(by_img), time.time() - t0))

    # 3. training
    model = M.DemoModel(c)
    dev = torch.device(args.device)
    model.to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    log("parameters: %.2f M" % (n_params / 1e6))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    imgs = sorted(by_img)
    steps_per_epoch = math.ceil(len(imgs) / args.images_per_batch)
    total = steps_per_epoch * args.epochs
    warm = min(200, total // 10)

    def lr_at(s):
        if s < warm:
            return args.lr * (s + 1) / warm
        return args.lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16,
                              enabled=args.precision == "bf16")

    ema = None
    if args.ema > 0:
        ema = {k: v.detach().clone() for k, v in model.state_dict().items()}

    step = 0
    history = []
    for ep in range(args.epochs):
        order = rng.permutation(len(imgs))
        tl, tn, rl, rn, te = 0.0, 0, 0.0, 0, time.time()
        for k in range(0, len(order), args.images_per_batch):
            group = [imgs[i] for i in order[k:k + args.images_per_batch]]
            index = {g: i for i, g in enumerate(group)}
            px = torch.from_numpy(np.stack([bank.view(g, rng, args.p_exact) for g in group]))
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            with autocast():
                emb = model.encode_images(px.to(dev))
            loss = 0.0
            # questions and summaries are padded apart (summaries are long):
            # loss = mean over answer tokens + report_weight x mean over
            # summary tokens
            for kind in ("qa", "report"):
                its = [it for g in group for it in by_img[g] if it[4] == kind]
                if not its:
                    continue
                ids, blk, lab, which = collate(its, index)
                with autocast():
                    h = model.hidden(ids.to(dev), blk.to(dev),
                                     emb[which.to(dev)].reshape(-1, emb.shape[-1]))
                    sel = (lab >= 0).to(dev)
                    logits = model.logits(h[sel]).float()
                ce = F.cross_entropy(logits, lab.to(dev)[sel], reduction="none")
                if kind == "qa":
                    loss = loss + ce.mean()
                    tl += float(ce.sum())
                    tn += ce.numel()
                else:
                    loss = loss + args.report_weight * ce.mean()
                    rl += float(ce.sum())
                    rn += ce.numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if ema is not None:
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        ema[k].mul_(args.ema).add_(v.detach(), alpha=1.0 - args.ema)
        rec = {"epoch": ep + 1, "loss": tl / max(tn, 1), "report_loss": rl / max(rn, 1),
               "seconds": time.time() - te}
        if val_items and ((ep + 1) % 5 == 0 or ep + 1 == args.epochs):
            with autocast():
                rec["val"] = teacher_forced_eval(model, val_items, bank)
        history.append(rec)
        log(json.dumps(rec))
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            log("stopping: --max-minutes reached")
            break

    # 4. export
    if ema is not None:
        model.load_state_dict(ema)
    model.eval()
    card = {
        "eos_ids": [tok.special("eos"), enc.eot],
        "readme": "---\nlicense: cc0-1.0\n---\n\nWeights of the libmedgemini demo model, "
                  "trained by tools/train/train_demo.py on the VQA-RAD training split. See "
                  "examples/models/MODEL_CARD.md.\n",
    }
    # the checkpoint in bfloat16 (what ships), and the float32 master
    # weights (to measure what the bf16 rounding changes)
    export_hf(model, c, tok_json, os.path.join(args.out, "hf"), card)
    export_hf(model, c, tok_json, os.path.join(args.out, "hf-f32"), card, "F32")
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump({"args": vars(args), "config": c.to_dict(), "history": history,
                   "torch": torch.__version__, "seconds": time.time() - t0}, f, indent=1)
    log("done in %.1f min" % ((time.time() - t0) / 60))


if __name__ == "__main__":
    main()
