#!/usr/bin/python3
"""parity.py - the demo model in PyTorch against the C library.

    /usr/bin/python3 tools/train/parity.py -m MODEL.mgm [--n 20] [--tol 1e-4]
        [--quantized Q.mgm] [--data ../shared/data/vqa_rad]

The PyTorch model of tools/train/model.py is built from the weights stored
in MODEL.mgm (read with the independent reader tests/ref/mgm.py; bf16 and
f32 weights are exact in float32) and runs in float64 on the pixels of the
library's preprocessing as PIL computes them (vqarad.library_pixels) and on
the prompt ids of the library's layout. The library runs the same question
through mg_vqa. For N test questions on N different images:

  * logits of the first answer token (mg_vqa with max_tokens = 0, then
    mg_context_logits) and after every token of the reference answer and its
    <end_of_turn> (teacher forcing: fed with mg_context_eval in one batched
    step) must agree with PyTorch within --tol, measured as
    max |c - r| / max |r| over each row;
  * the greedy answers (up to 16 tokens) must be identical.
For q8_0/q4_0 files the reference uses the dequantized weights; the
library's single-token steps round activations to 8 bits (kernels.h), which
the greedy comparison absorbs, and so do its batched steps on CPUs with
AVX512-VNNI (the integer prefill product): run with MG_SIMD=avx2 for
float32 batched steps and the 1e-4 tolerance, or give --tol 2e-2.

With --quantized, the same questions go through a quantized file too and its
agreement with MODEL.mgm (greedy answers, top-1 token at every teacher-forced
position) is printed; it is reported, not asserted.
Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import model as M  # noqa: E402
import vqarad  # noqa: E402
from mgm import MgmFile  # noqa: E402
import medgemini  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "vqa_rad"))


def torch_model_from_mgm(path):
    """DemoModel with the .mgm's shapes and weights (float64)."""
    f = MgmFile(path)
    g = f.meta
    c = M.Config(
        vocab_size=g["text.vocab_size"], hidden_size=g["text.hidden_size"],
        intermediate_size=g["text.ffn_size"], num_hidden_layers=g["text.n_layers"],
        num_attention_heads=g["text.n_heads"], num_key_value_heads=g["text.n_kv_heads"],
        head_dim=g["text.head_dim"], sliding_window=g["text.sliding_window"],
        sliding_window_pattern=g["text.sliding_window_pattern"],
        query_pre_attn_scalar=g["text.query_pre_attn_scalar"],
        rope_theta=g["text.rope_theta_global"], rope_local_base_freq=g["text.rope_theta_local"],
        rms_norm_eps=g["text.rms_norm_eps"], max_position_embeddings=g["text.context_length"],
        image_size=g["vision.image_size"], patch_size=g["vision.patch_size"],
        v_hidden=g["vision.hidden_size"], v_intermediate=g["vision.ffn_size"],
        v_layers=g["vision.n_layers"], v_heads=g["vision.n_heads"],
        v_eps=g["vision.layer_norm_eps"], mm_tokens_per_image=g["vision.tokens_per_image"],
        boi_id=g["tokenizer.start_of_image_id"], eoi_id=g["tokenizer.end_of_image_id"],
        image_id=g["tokenizer.image_token_id"])
    if g.get("text.rope_scaling_factor", 1.0) != 1.0 or g.get("text.final_logit_softcap", 0) \
            or g.get("text.attn_logit_softcap", 0):
        raise SystemExit("parity.py covers the demo model's shape only (no scaling, no soft-caps)")
    m = M.DemoModel(c)
    W = f.tensor
    sd = {}
    tp = "model.language_model."
    sd[tp + "embed_tokens.weight"] = W("text.token_embd")
    sd[tp + "norm.weight"] = W("text.output_norm")
    names = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
             "attn_output": "self_attn.o_proj", "post_attn_norm": "post_attention_layernorm",
             "ffn_norm": "pre_feedforward_layernorm", "ffn_gate": "mlp.gate_proj",
             "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
             "post_ffn_norm": "post_feedforward_layernorm"}
    for i in range(c.num_hidden_layers):
        for ours, hf in names.items():
            sd["%slayers.%d.%s.weight" % (tp, i, hf)] = W("text.blk.%d.%s" % (i, ours))
    vp = "model.vision_tower.vision_model."
    P = c.patch_size
    sd[vp + "embeddings.patch_embedding.weight"] = W("vision.patch_embd").reshape(
        c.v_hidden, 3, P, P)
    sd[vp + "embeddings.patch_embedding.bias"] = W("vision.patch_embd_bias")
    sd[vp + "embeddings.position_embedding.weight"] = W("vision.pos_embd")
    vn = {"ln1": "layer_norm1", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
          "attn_v": "self_attn.v_proj", "attn_output": "self_attn.out_proj",
          "ln2": "layer_norm2", "ffn_up": "mlp.fc1", "ffn_down": "mlp.fc2"}
    for i in range(c.v_layers):
        for ours, hf in vn.items():
            base = "%sencoder.layers.%d.%s" % (vp, i, hf)
            sd[base + ".weight"] = W("vision.blk.%d.%s" % (i, ours))
            sd[base + ".bias"] = W("vision.blk.%d.%s_bias" % (i, ours))
    sd[vp + "post_layernorm.weight"] = W("vision.post_ln")
    sd[vp + "post_layernorm.bias"] = W("vision.post_ln_bias")
    pp = "model.multi_modal_projector."
    sd[pp + "mm_soft_emb_norm.weight"] = W("mm.soft_emb_norm")
    sd[pp + "mm_input_projection_weight"] = W("mm.input_proj").T  # ours [hidden, width]
    sd = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in sd.items()}
    m = m.double()
    m.load_state_dict(sd, strict=True)
    return m.eval(), c


def rel_err(c, r):
    return float(np.max(np.abs(c - r)) / max(np.max(np.abs(r)), 1e-30))


class TorchRunner:
    def __init__(self, m, c, tok):
        self.m, self.c, self.tok = m, c, tok
        self.eot = tok.special("end_of_turn")
        self.eos = tok.special("eos")

    def prompt(self, question):
        head, tail = vqarad.prompt_text(question)
        a = self.tok.tokenize(head, bos=True, special=True)
        b = self.tok.tokenize(tail, special=True)
        n = self.c.mm_tokens_per_image
        return a + [self.c.image_id] * n + b, [0] * len(a) + [1] * n + [0] * len(b)

    @torch.no_grad()
    def logits(self, px, ids, blk):
        emb = self.m.encode_images(torch.from_numpy(px[None]).double())
        h = self.m.hidden(torch.tensor([ids]), torch.tensor([blk]), emb.reshape(-1, emb.shape[-1]))
        return self.m.logits(h)[0].numpy()

    def greedy(self, px, ids, blk, n=16):
        out = []
        for _ in range(n):
            t = int(np.argmax(self.logits(px, ids + out, blk + [0] * len(out))[-1]))
            if t in (self.eot, self.eos):
                break
            out.append(t)
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--quantized")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)

    _, test = vqarad.load(args.data)
    picked, seen = [], set()
    for r in test:
        if r["image"] not in seen:
            seen.add(r["image"])
            picked.append(r)
        if len(picked) == args.n:
            break

    tm, c = torch_model_from_mgm(args.model)
    model = medgemini.Model.load(args.model, threads=1)
    tok = model.tokenizer
    ref = TorchRunner(tm, c, tok)
    ctx = model.context(threads=1)
    qctx = qmodel = None
    if args.quantized:
        qmodel = medgemini.Model.load(args.quantized, threads=1)
        qctx = qmodel.context(threads=1)
    worst, fails = 0.0, 0
    q_same, q_top1, q_n = 0, 0, 0
    for r in picked:
        im = Image.open(os.path.join(args.data, "images", r["image"]))
        px = vqarad.library_pixels(im, c.image_size)
        ids, blk = ref.prompt(r["question"])
        ans = tok.tokenize(r["answer"]) + [ref.eot]
        want = ref.logits(px, ids + ans, blk + [0] * len(ans))[len(ids) - 1:]
        img = medgemini.Image.open(os.path.join(args.data, "images", r["image"]))
        got_text = ctx.vqa([img], r["question"], max_tokens=0)
        assert got_text == ""
        got = [ctx.logits()]
        got.extend(ctx.eval(ans))   # >= 2 tokens: one batched decoder step
        errs = [rel_err(np.asarray(g, np.float64), w) for g, w in zip(got, want)]
        e = max(errs)
        worst = max(worst, e)
        c_answer = ctx.vqa([img], r["question"], max_tokens=16)
        t_ids = ref.greedy(px, ids, blk)
        t_answer = tok.detokenize(t_ids)
        ok = e <= args.tol and c_answer == t_answer
        fails += not ok
        print("%-18s %-44.44s rel %.2e  C %-16.16r torch %-16.16r %s" % (
            r["image"], r["question"], e, c_answer, t_answer, "ok" if ok else "FAIL"))
        if qctx is not None:
            qa = qctx.vqa([img], r["question"], max_tokens=16)
            qctx.vqa([img], r["question"], max_tokens=0)
            qrows = [qctx.logits()] + list(qctx.eval(ans))
            q_same += qa == c_answer
            q_top1 += sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(qrows, got))
            q_n += len(qrows)
        img.close()
    print("parity: %d/%d questions within %.0e (worst %.2e) with identical greedy answers" % (
        len(picked) - fails, len(picked), args.tol, worst))
    if qctx is not None:
        print("quantized %s: greedy answers identical on %d/%d, top-1 token agreement %.1f %% "
              "(%d positions)" % (os.path.basename(args.quantized), q_same, len(picked),
                                  100.0 * q_top1 / max(q_n, 1), q_n))
        qctx.close()
        qmodel.close()
    ctx.close()
    model.close()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
