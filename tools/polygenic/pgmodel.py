"""pgmodel.py - what the polygenic model's trainer, evaluation and parity
check share: the cohort, the score image exactly as the library draws it
(docs/POLYGENIC.md), the prompt exactly as the library lays it out
(src/tasks/tasks.c), and a "packed" PyTorch forward that reads one score
image and answers several questions in one sequence, as
mg_prs_predict_batch does (each question sees the score block and itself,
its positions continuing after the block).

The model itself is tools/train/model.py (the demo model's MedGemma
architecture, Hugging Face parameter names); nothing here changes it.
"""
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

DEFAULT_COHORT = os.path.join(ROOT, "lib", "polygenic", "seed1")
DEFAULT_TOKENIZER = os.path.join(
    ROOT, "tests", "tokenizer", "node_modules", "@lenml", "tokenizer-gemma3", "models",
    "tokenizer.json")

# The question template and every outcome's display name (the words put into
# the question). The trained ones go into genome_config.outcomes.
QUESTION = "Does this individual have {outcome}?"
DISPLAY = {
    "coronary_artery_disease": "coronary artery disease",
    "stroke": "stroke",
    "type_2_diabetes": "type 2 diabetes",
    "glaucoma": "glaucoma",
    "copd": "chronic obstructive pulmonary disease",
    "rheumatoid_arthritis": "rheumatoid arthritis",
    "depression": "depression",
    "all_cause_mortality": "all-cause mortality",
    "heart_failure": "heart failure",
    "hypertension": "hypertension",
    "asthma": "asthma",
}
ANSWER_YES, ANSWER_NO = "yes", "no"

# The score image: 64 traits on an 8 x 8 grid of 8-pixel squares (64 x 64),
# one channel per p-value threshold, 32 grey levels per standard deviation.
GRID = (8, 8)
CELL = 8
Z_SCALE = 32.0
SCORE_COLUMN = "SUM"

# The library's prompt pieces (tasks.c: open_turn, add_block, close_turn;
# the genomics block has no label and there is no system prompt).
TURN_USER = "<start_of_turn>user\n"
TURN_END = "<end_of_turn>\n"
TURN_MODEL = "<start_of_turn>model\n"
BOI, EOI = "<start_of_image>", "<end_of_image>"


def question(name):
    """The question for an outcome (its cohort name or a display name)."""
    return QUESTION.replace("{outcome}", DISPLAY.get(name, name))


def prompt_text(q):
    """The whole prompt string the library tokenizes for question q."""
    return TURN_USER + "\n\n" + BOI + EOI + "\n\n" + q.strip() + TURN_END + TURN_MODEL


# ------------------------------------------------------------ cohort

class Cohort:
    """scores.npy, outcomes.tsv, split.tsv and cohort.json of a simulated
    cohort (tools/polygenic/simulate.py)."""

    def __init__(self, folder=DEFAULT_COHORT, mmap=True):
        self.folder = folder
        with open(os.path.join(folder, "cohort.json")) as f:
            self.meta = json.load(f)
        self.score_names = self.meta["score_names"]
        self.traits = [t["name"] for t in self.meta["traits"]]
        self.thresholds = [t["name"] for t in self.meta["thresholds"]]
        self.outcomes = [o["name"] for o in self.meta["outcomes"]]
        self.trained = list(self.meta["trained_outcomes"])
        self.held_out = list(self.meta["held_out_outcomes"])
        want = ["%s_%s" % (t, c) for t in self.traits for c in self.thresholds]
        if want != self.score_names:
            raise SystemExit("cohort.json: score_names are not trait-major <trait>_<threshold>")
        self.scores = np.load(os.path.join(folder, "scores.npy"),
                              mmap_mode="r" if mmap else None)
        ids, y = [], []
        with open(os.path.join(folder, "outcomes.tsv")) as f:
            head = f.readline().rstrip("\n").split("\t")
            if head[2:] != self.outcomes:
                raise SystemExit("outcomes.tsv: columns differ from cohort.json")
            for line in f:
                p = line.rstrip("\n").split("\t")
                ids.append((p[0], p[1]))
                y.append([int(v) for v in p[2:]])
        self.ids = ids
        self.y = np.array(y, dtype=np.int8)
        split = []
        with open(os.path.join(folder, "split.tsv")) as f:
            f.readline()
            for k, line in enumerate(f):
                p = line.rstrip("\n").split("\t")
                if (p[0], p[1]) != ids[k]:
                    raise SystemExit("split.tsv: individuals differ from outcomes.tsv")
                split.append(p[2])
        self.split = np.array(split)
        if self.scores.shape != (len(ids), len(self.score_names)):
            raise SystemExit("scores.npy has shape %s" % (self.scores.shape,))

    def rows(self, name):
        return np.flatnonzero(self.split == name)

    def labels(self, rows, outcome):
        return self.y[rows, self.outcomes.index(outcome)].astype(np.int64)


def reference(scores):
    """Mean and standard deviation (ddof 0) of every score over the given
    rows; a constant score gets std 1 (its pixel is always 128)."""
    x = np.asarray(scores, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[~(std > 0)] = 1.0
    return mean, std


def levels(scores, mean, std, z_scale=Z_SCALE):
    """Grey levels [N, T*C] uint8 of the library's rule:
    clip(nearbyint(128 + z_scale * (score - mean) / std), 0, 255), in double,
    the operations in the C order (genome.c); numpy's rint rounds half to
    even as nearbyint does. NaN -> 128 (a missing score)."""
    x = np.asarray(scores, dtype=np.float64)
    v = np.rint(128.0 + z_scale * (x - mean) / std)
    v = np.where(np.isfinite(x), v, 128.0)
    return np.clip(v, 0, 255).astype(np.uint8)


def level_values():
    """The image encoder's input value of every grey level: rescale by 1/255
    in double, then (x - 0.5) / 0.5 in float32 (docs/VISION.md; the same as
    tools/train/vqarad.normalize)."""
    x = (np.arange(256, dtype=np.float64) * (1.0 / 255.0)).astype(np.float32)
    return (x - np.float32(0.5)) / np.float32(0.5)


def image_u8(lv, n_traits, n_thr, grid=GRID, cell=CELL):
    """The RGB score images [N, H, W, 3] uint8 from levels [N, T*C] (squares
    without a trait and channels past C are 0)."""
    lv = np.asarray(lv).reshape(len(lv), n_traits, n_thr)
    n = lv.shape[0]
    sq = np.zeros((n, grid[0] * grid[1], 3), np.uint8)
    sq[:, :n_traits, :n_thr] = lv
    sq = sq.reshape(n, grid[0], grid[1], 3)
    return np.repeat(np.repeat(sq, cell, axis=1), cell, axis=2)


def pixels(lv, n_traits, n_thr, grid=GRID, cell=CELL, torch_dtype=None):
    """The encoder input [N, 3, H, W] float32 (a torch tensor when
    torch_dtype is given) from levels [N, T*C]."""
    u8 = image_u8(lv, n_traits, n_thr, grid, cell)
    x = level_values()[u8].transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x)
    if torch_dtype is None:
        return x
    import torch
    return torch.from_numpy(x).to(torch_dtype)


def genome_config(traits, thresholds, mean, std, trained_display):
    return {
        "traits": list(traits),
        "thresholds": list(thresholds),
        "reference_mean": [float(v) for v in mean],
        "reference_std": [float(v) for v in std],
        "grid": list(GRID),
        "cell": CELL,
        "z_scale": Z_SCALE,
        "score_column": SCORE_COLUMN,
        "answer_yes": ANSWER_YES,
        "answer_no": ANSWER_NO,
        "question": QUESTION,
        "outcomes": list(trained_display),
    }


# ------------------------------------------------------------ prompts

class Prompts:
    """Token ids of the library's prompts, tokenized through the library
    (Python binding) the way mg_prs_predict_batch does: the whole prompt
    string, then the image tokens put after <start_of_image>; the part up
    to <end_of_image> (the prefix) is the same for every question."""

    def __init__(self, tok, n_img):
        self.tok = tok
        self.n_img = n_img
        self.boi = tok.special("start_of_image")
        self.eoi = tok.special("end_of_image")
        self.img = tok.special("image")
        if None in (self.boi, self.eoi, self.img):
            raise SystemExit("the tokenizer lacks the image markers")
        y, n = tok.tokenize(ANSWER_YES), tok.tokenize(ANSWER_NO)
        if len(y) != 1 or len(n) != 1:
            raise SystemExit("the answers %r and %r must be one token each (got %s, %s)"
                             % (ANSWER_YES, ANSWER_NO, y, n))
        self.yes, self.no = y[0], n[0]
        self.prefix = None

    def ids(self, q):
        """(prefix, tail) of question q: prefix = <bos>...<boi>, n_img image
        tokens, <eoi>; tail = the rest, ending at the answer position."""
        whole = self.tok.tokenize(prompt_text(q), bos=True, special=True)
        if whole.count(self.boi) != 1 or whole.count(self.eoi) != 1:
            raise SystemExit("question %r contains image markers" % q)
        b = whole.index(self.boi)
        if whole[b + 1] != self.eoi:
            raise SystemExit("unexpected prompt layout for %r" % q)
        prefix = whole[:b + 1] + [self.img] * self.n_img + [self.eoi]
        tail = whole[b + 2:]
        if self.prefix is None:
            self.prefix = prefix
        elif prefix != self.prefix:
            raise SystemExit("the prompt prefix differs between questions")
        return prefix, tail

    def full(self, q):
        """Ids and image-block flags of the single (unpacked) prompt."""
        p, t = self.ids(q)
        ids = p + t
        blk = [1 if i == self.img else 0 for i in ids]
        return ids, blk


class Layout:
    """One sequence holding the prefix and several questions' tails: per
    token its id, its position (each tail continues at the end of the
    prefix), its group (0 prefix, k for question k) and whether it is an
    image token; boolean masks [1, T, T] for global and sliding layers; the
    answer positions (each tail's last token)."""

    def __init__(self, prompts, questions, window):
        import torch
        ids, pos, grp = [], [], []
        prefix = None
        self.ans = []
        for k, q in enumerate(questions):
            p, t = prompts.ids(q)
            if prefix is None:
                prefix = p
                ids += p
                pos += list(range(len(p)))
                grp += [0] * len(p)
            ids += t
            pos += list(range(len(p), len(p) + len(t)))
            grp += [k + 1] * len(t)
            self.ans.append(len(ids) - 1)
        self.n_prefix = len(prefix)
        self.img_at = prefix.index(prompts.img)
        self.n_img = prompts.n_img
        self.questions = list(questions)
        self.T = len(ids)
        self.ids = torch.tensor(ids)
        self.pos = torch.tensor(pos)
        g = torch.tensor(grp)
        blk = self.ids == prompts.img
        pi, pj = self.pos[:, None], self.pos[None, :]
        same_or_prefix = (g[None, :] == 0) | (g[None, :] == g[:, None])
        causal = same_or_prefix & (pj <= pi)
        image = blk[:, None] & blk[None, :]
        self.gmask = (causal | image)[None]
        self.smask = ((causal & (pj > pi - window)) | image)[None]
        self.max_pos = int(self.pos.max()) + 1


def packed_logits(model, lay, emb):
    """Logits [B, K, V] at the K answer positions of layout lay, for B
    individuals whose image tokens are emb [B, n_img, H]. The same
    computation as model.hidden() on each question's own prompt (checked by
    check_packed)."""
    import torch
    from model import rope_tables
    c = model.c
    lm = model.model.language_model
    w = lm.embed_tokens.weight
    x0 = lm.embed_tokens(lay.ids) * torch.tensor(math.sqrt(c.hidden_size), dtype=w.dtype)
    b = emb.shape[0]
    a, n = lay.img_at, lay.n_img
    x = torch.cat([x0[None, :a].expand(b, -1, -1), emb.to(x0.dtype),
                   x0[None, a + n:].expand(b, -1, -1)], dim=1)
    cg, sg = rope_tables(lay.max_pos, c.head_dim, c.rope_theta, x.dtype)
    cl, sl = rope_tables(lay.max_pos, c.head_dim, c.rope_local_base_freq, x.dtype)
    cg, sg, cl, sl = cg[lay.pos], sg[lay.pos], cl[lay.pos], sl[lay.pos]
    for i, layer in enumerate(lm.layers):
        if c.is_global(i):
            x = layer(x, cg, sg, lay.gmask)
        else:
            x = layer(x, cl, sl, lay.smask)
    h = lm.norm(x[:, lay.ans])
    return model.logits(h)


def risk_from_logits(lg, yes, no):
    """P(yes) / (P(yes) + P(no)) = 1 / (1 + exp(l_no - l_yes)), in float64."""
    import torch
    d = lg[..., no].double() - lg[..., yes].double()
    return torch.sigmoid(-d)


def single_logits(model, prompts, px, q):
    """Logits at the answer position of question q's own prompt (the
    unpacked path of model.py), px [1, 3, H, W]."""
    import torch
    ids, blk = prompts.full(q)
    emb = model.encode_images(px)
    h = model.hidden(torch.tensor([ids]), torch.tensor([blk]), emb.reshape(-1, emb.shape[-1]))
    return model.logits(h[:, -1])[0]


def check_packed(model, prompts, lay, px, tol=1e-9):
    """The packed forward against the single prompts (float64 model)."""
    import torch
    with torch.no_grad():
        emb = model.encode_images(px)
        lg = packed_logits(model, lay, emb)
        worst = 0.0
        for i in range(px.shape[0]):
            for k, q in enumerate(lay.questions):
                ref = single_logits(model, prompts, px[i:i + 1], q)
                worst = max(worst, float((lg[i, k] - ref).abs().max()))
    if worst > tol:
        raise SystemExit("packed forward differs from the single prompts by %.3g" % worst)
    return worst


def cpu_name():
    """The CPU's name from /proc/cpuinfo (tools/train/eval_demo.py's)."""
    from eval_demo import cpu_name as name
    return name()
