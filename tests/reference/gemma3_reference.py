#!/usr/bin/python3
"""gemma3_reference.py - golden fixtures for the Gemma 3 text decoder.

An independent PyTorch implementation of the Gemma 3 text model (Hugging Face
transformers' Gemma3ForCausalLM / Gemma3TextModel), written from the
transformers semantics and not from the C code or from tests/ref/. It builds
tiny random-weight models in several configurations, saves each one as a
Hugging Face-style folder, and dumps reference logits and greedy
continuations. tests/check_reference.c converts those folders to .mgm (with a
test-side converter) and compares the library against them.

Usage (Debian: /usr/bin/python3 with python3-torch and python3-numpy):

    gemma3_reference.py --out DIR               # write fixtures into DIR
    gemma3_reference.py --out DIR --compare REF # ... then compare with REF

`make check-reference` does the second into a scratch directory against the
committed tests/reference/fixtures and then runs check_reference on the fresh
ones. To regenerate the committed fixtures:

    /usr/bin/python3 tests/reference/gemma3_reference.py --out tests/reference/fixtures

Fixture layout, one folder per configuration, DIR/<config>/:
  config.json        Gemma3TextConfig field names (as transformers writes it)
  model.safetensors  float32 weights, HF names and shapes ([out, in] for
                     linear layers; norm weights are HF's w, applied as 1 + w;
                     no lm_head: the output projection is tied to the
                     embedding). Written here with numpy: u64 LE header
                     length, JSON header {name: {dtype, shape, data_offsets}}
                     padded with spaces to a multiple of 8, raw LE data.
  reference.json     {"prompt": [100 ids], "continuation": [64 ids],
                      "logits_file": "logits.f32", "logits_shape": [100, V],
                      "min_greedy_margin": m, "torch": version, ...}
  logits.f32         raw little-endian float32, row-major [position][vocab]:
                     the logits of every position of the prompt.

Numerics. Weights are drawn in float64 from a fixed torch seed (one per
configuration) and stored as float32; the reference logits are computed from
those float32 weights. The forward pass follows what transformers does with a
float32 model, operation by operation where the rounding is part of the
definition, and runs everything else in float64 (so the reference is the
exact function of the stored weights, up to the documented float32 steps):
  - embedding: embed_tokens(ids) * normalizer, normalizer = sqrt(hidden) as a
    float32 tensor, the product rounded to float32 (as HF does in the
    weights' dtype);
  - RoPE: inv_freq = 1 / base^(arange(0, d, 2) / d) and the angles
    inv_freq * position computed in float32, cos/sin in float32 (as HF's
    Gemma3RotaryEmbedding does); linear scaling divides inv_freq by factor;
  - everything else (RMSNorm, projections, softmax, GELU, residuals, logits)
    in float64.
The greedy continuation recomputes the whole sequence at each step and takes
the argmax (the lowest id on a tie); min_greedy_margin is the smallest gap
between the best and second-best logit over the 64 steps, and generation
fails if it is below 1e-3 (a near tie would make the comparison flaky).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

VOCAB = 512
PROMPT_LEN = 100
N_CONTINUE = 64

# name -> configuration. Dimensions that feed q8_0/q4_0 rows (hidden,
# heads*head_dim, intermediate) are multiples of 32.
CONFIGS = {
    # GQA ratio 1, window longer than the sequence, no soft-capping.
    "gqa1_full": dict(seed=1001, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, head_dim=16, sliding_window=512,
                      sliding_window_pattern=2, query_pre_attn_scalar=16,
                      attn_logit_softcapping=None, final_logit_softcapping=None,
                      rope_factor=8.0),
    # GQA ratio 2, window 16 < sequence, global layer 2, both soft-caps on.
    "gqa2_swa_softcap": dict(seed=1002, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=3, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=32,
                             sliding_window=16, sliding_window_pattern=3,
                             query_pre_attn_scalar=32,
                             attn_logit_softcapping=2.0,
                             final_logit_softcapping=30.0, rope_factor=8.0),
    # GQA ratio 4, window 32, pattern 2 (layer 1 global), a
    # query_pre_attn_scalar != head_dim, no soft-capping; the config carries
    # layer_types only (no sliding_window_pattern), as newer transformers
    # writes it.
    "gqa4_swa": dict(seed=1003, hidden_size=64, intermediate_size=128,
                     num_hidden_layers=3, num_attention_heads=8,
                     num_key_value_heads=2, head_dim=16, sliding_window=32,
                     sliding_window_pattern=2, query_pre_attn_scalar=24,
                     attn_logit_softcapping=None, final_logit_softcapping=None,
                     rope_factor=4.0, layer_types_only=True),
    # GQA ratio 1, window 8, no global layer at all, soft-caps on, hidden 32.
    "gqa1_swa8_softcap": dict(seed=1004, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2,
                              num_key_value_heads=2, head_dim=32,
                              sliding_window=8, sliding_window_pattern=6,
                              query_pre_attn_scalar=32,
                              attn_logit_softcapping=1.0,
                              final_logit_softcapping=30.0, rope_factor=8.0),
}

ROPE_THETA = 1000000.0
ROPE_LOCAL = 10000.0
RMS_EPS = 1e-6
MAX_POS = 256
POST_NORM_MEAN = 20.0


def is_global(cfg, i):
    return (i + 1) % cfg["sliding_window_pattern"] == 0


def hf_config(name, c):
    """config.json with Gemma3TextConfig field names."""
    n = c["num_hidden_layers"]
    d = {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": VOCAB,
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": n,
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"],
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": MAX_POS,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "rope_local_base_freq": ROPE_LOCAL,
        "rope_scaling": {"rope_type": "linear", "factor": c["rope_factor"]},
        "sliding_window": c["sliding_window"],
        "sliding_window_pattern": c["sliding_window_pattern"],
        "layer_types": ["full_attention" if is_global(c, i) else "sliding_attention"
                        for i in range(n)],
        "query_pre_attn_scalar": c["query_pre_attn_scalar"],
        "attn_logit_softcapping": c["attn_logit_softcapping"],
        "final_logit_softcapping": c["final_logit_softcapping"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "torch_dtype": "float32",
        "_reference_config": name,
    }
    if c.get("layer_types_only"):
        del d["sliding_window_pattern"]
    return d


def make_weights(c):
    """HF-named float32 tensors, drawn in float64 from the config's seed."""
    g = torch.Generator().manual_seed(c["seed"])
    H, F = c["hidden_size"], c["intermediate_size"]
    nq, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]

    def rnd(shape, std, mean=0.0):
        t = torch.randn(*shape, generator=g, dtype=torch.float64) * std + mean
        return t.to(torch.float32)

    w = {}
    # Post-norm weights around POST_NORM_MEAN (as trained Gemma 3 models
    # have large ones) let the blocks outweigh the scaled input embedding in
    # the residual stream; otherwise the tied output projection just predicts
    # the current token again and greedy continuations are one repeated id.
    # Embedding std 1: logits of order 10, so soft-caps bite and greedy
    # argmax margins are wide.
    w["model.embed_tokens.weight"] = rnd((VOCAB, H), 1.0)
    for i in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % i
        w[p + "input_layernorm.weight"] = rnd((H,), 0.3)
        w[p + "self_attn.q_proj.weight"] = rnd((nq * hd, H), H ** -0.5)
        w[p + "self_attn.k_proj.weight"] = rnd((nkv * hd, H), H ** -0.5)
        w[p + "self_attn.v_proj.weight"] = rnd((nkv * hd, H), H ** -0.5)
        w[p + "self_attn.o_proj.weight"] = rnd((H, nq * hd), (nq * hd) ** -0.5)
        w[p + "self_attn.q_norm.weight"] = rnd((hd,), 0.3)
        w[p + "self_attn.k_norm.weight"] = rnd((hd,), 0.3)
        w[p + "post_attention_layernorm.weight"] = rnd((H,), 1.0, POST_NORM_MEAN)
        w[p + "pre_feedforward_layernorm.weight"] = rnd((H,), 0.3)
        w[p + "mlp.gate_proj.weight"] = rnd((F, H), H ** -0.5)
        w[p + "mlp.up_proj.weight"] = rnd((F, H), H ** -0.5)
        w[p + "mlp.down_proj.weight"] = rnd((H, F), F ** -0.5)
        w[p + "post_feedforward_layernorm.weight"] = rnd((H,), 1.0, POST_NORM_MEAN)
    w["model.norm.weight"] = rnd((H,), 0.3)
    return w, g


# ------------------------------------------------------------- safetensors

def save_safetensors(path, tensors):
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = tensors[name].numpy().astype("<f4", copy=False)
        b = a.tobytes(order="C")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", name
        b, end = e["data_offsets"]
        a = np.frombuffer(raw[base + b:base + end], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


# ------------------------------------------------------------------ model

def rms_norm(x, w, eps):
    # Gemma3RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w), in float (here
    # float64).
    x = x.double()
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * (1.0 + w.double())


def rope_cos_sin(dim, base, factor, n):
    # Gemma3RotaryEmbedding (default / linear rope types): float32 inv_freq
    # and angles; linear scaling divides inv_freq by the factor.
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    inv_freq = inv_freq / factor
    pos = torch.arange(n, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq[None, :]              # [n, dim/2] float32
    emb = torch.cat((freqs, freqs), dim=-1)               # [n, dim]
    return emb.cos().double(), emb.sin().double()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, w, ids):
    """Logits [len(ids), vocab] (float64) of Gemma3ForCausalLM."""
    H = cfg["hidden_size"]
    nq, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    T = len(ids)
    E = w["model.embed_tokens.weight"]
    normalizer = torch.tensor(H ** 0.5, dtype=E.dtype)
    x = (E[torch.tensor(ids, dtype=torch.long)] * normalizer).double()

    cos_l, sin_l = rope_cos_sin(hd, cfg["rope_local_base_freq"], 1.0, T)
    rs = cfg.get("rope_scaling") or {}
    factor = float(rs.get("factor", 1.0)) if rs.get("rope_type", "default") == "linear" else 1.0
    cos_g, sin_g = rope_cos_sin(hd, cfg["rope_theta"], factor, T)

    q_idx = torch.arange(T)[:, None]
    k_idx = torch.arange(T)[None, :]
    causal = k_idx <= q_idx
    sliding = causal & (k_idx > q_idx - cfg["sliding_window"])
    scaling = cfg["query_pre_attn_scalar"] ** -0.5
    acap = cfg.get("attn_logit_softcapping")
    fcap = cfg.get("final_logit_softcapping")
    if "layer_types" in cfg:
        types = cfg["layer_types"]
    else:
        types = ["full_attention" if (i + 1) % cfg["sliding_window_pattern"] == 0
                 else "sliding_attention" for i in range(cfg["num_hidden_layers"])]

    def lin(t, name):
        return t @ w[name].double().T

    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        glob = types[i] == "full_attention"
        res = x
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj.weight").view(T, nq, hd).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj.weight").view(T, nkv, hd).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj.weight").view(T, nkv, hd).transpose(0, 1)
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        cos, sin = (cos_g, sin_g) if glob else (cos_l, sin_l)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: query head j uses kv head j // (nq / nkv)
        rep = nq // nkv
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        s = (q @ k.transpose(1, 2)) * scaling
        if acap is not None:
            s = torch.tanh(s / acap) * acap
        mask = causal if glob else sliding
        s = s.masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v                      # [nq, T, hd]
        a = a.transpose(0, 1).reshape(T, nq * hd)
        h = lin(a, p + "self_attn.o_proj.weight")
        h = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        x = res + h
        res = x
        h = rms_norm(x, w[p + "pre_feedforward_layernorm.weight"], eps)
        gate = torch.nn.functional.gelu(lin(h, p + "mlp.gate_proj.weight"), approximate="tanh")
        h = lin(gate * lin(h, p + "mlp.up_proj.weight"), p + "mlp.down_proj.weight")
        h = rms_norm(h, w[p + "post_feedforward_layernorm.weight"], eps)
        x = res + h
    x = rms_norm(x, w["model.norm.weight"], eps)
    logits = x @ E.double().T
    if fcap is not None:
        logits = torch.tanh(logits / fcap) * fcap
    return logits


def greedy(cfg, w, prompt, n):
    ids = list(prompt)
    out, margin = [], float("inf")
    for _ in range(n):
        last = forward(cfg, w, ids)[-1]
        top = torch.topk(last, 2)
        t = int(torch.argmax(last))
        margin = min(margin, float(top.values[0] - top.values[1]))
        out.append(t)
        ids.append(t)
    return out, margin


def build(name, c, outdir):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    cfg = hf_config(name, c)
    w, g = make_weights(c)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_safetensors(os.path.join(d, "model.safetensors"), w)
    # Reload what was written, so the reference runs on exactly the stored
    # float32 weights and the stored config.
    w = load_safetensors(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    # Prompt: ids 4 .. VOCAB-1 (0-3 are pad/eos/bos/unk in the test tokenizer).
    prompt = [2] + torch.randint(4, VOCAB, (PROMPT_LEN - 1,), generator=g).tolist()
    logits = forward(cfg, w, prompt)
    logits.float().numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
    cont, margin = greedy(cfg, w, prompt, N_CONTINUE)
    if margin < 1e-3:
        sys.exit("%s: greedy margin %.3g is too small for a stable fixture" % (name, margin))
    ref = {
        "config": name,
        "prompt": prompt,
        "continuation": cont,
        "logits_file": "logits.f32",
        "logits_shape": [PROMPT_LEN, VOCAB],
        "logits_dtype": "float32 little-endian, row-major [position][vocab]",
        "min_greedy_margin": margin,
        "torch": torch.__version__,
        "seed": c["seed"],
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("%-20s max|logit| %.3f  greedy margin %.4f  distinct continuation ids %d"
          % (name, float(logits.abs().max()), margin, len(set(cont))))


def compare(name, fresh, golden):
    """0 if fresh/<name> matches golden/<name>, else 1 (messages on stderr)."""
    a, b = os.path.join(fresh, name), os.path.join(golden, name)
    bad = 0

    def fail(msg):
        nonlocal bad
        bad = 1
        print("check-reference: %s: %s" % (name, msg), file=sys.stderr)

    for fn in ("config.json", "model.safetensors"):
        try:
            with open(os.path.join(a, fn), "rb") as f1, open(os.path.join(b, fn), "rb") as f2:
                if f1.read() != f2.read():
                    fail("%s differs from the committed fixture (a different torch "
                         "RNG or a changed generator?)" % fn)
        except OSError as e:
            fail(str(e))
    if bad:
        return bad
    with open(os.path.join(a, "reference.json")) as f:
        ra = json.load(f)
    with open(os.path.join(b, "reference.json")) as f:
        rb = json.load(f)
    if ra["prompt"] != rb["prompt"]:
        fail("prompt differs")
    if ra["continuation"] != rb["continuation"]:
        fail("greedy continuation differs: %s vs %s" % (ra["continuation"], rb["continuation"]))
    la = np.fromfile(os.path.join(a, "logits.f32"), dtype="<f4").astype(np.float64)
    lb = np.fromfile(os.path.join(b, "logits.f32"), dtype="<f4").astype(np.float64)
    if la.shape != lb.shape:
        fail("logits shape differs")
        return bad
    la = la.reshape(ra["logits_shape"])
    lb = lb.reshape(rb["logits_shape"])
    rel = (np.abs(la - lb).max(axis=1) / np.abs(lb).max(axis=1)).max()
    if not rel <= 1e-5:
        fail("logits differ by %.3g relative (limit 1e-5)" % rel)
    else:
        print("check-reference: %-20s matches the committed fixture (logits %.2g rel)" % (name, rel))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory to write fixtures into")
    ap.add_argument("--compare", help="committed fixtures to compare the fresh ones with")
    ap.add_argument("--only", action="append", help="build only this configuration")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.only or sorted(CONFIGS)
    for n in names:
        if n not in CONFIGS:
            sys.exit("unknown configuration %s" % n)
        build(n, CONFIGS[n], args.out)
    if args.compare:
        bad = 0
        for n in names:
            bad |= compare(n, args.out, args.compare)
        extra = sorted(set(os.listdir(args.compare)) - set(CONFIGS))
        extra = [e for e in extra if os.path.isdir(os.path.join(args.compare, e))]
        if extra:
            print("check-reference: committed fixtures with no configuration: %s" % extra,
                  file=sys.stderr)
            bad = 1
        sys.exit(bad)


if __name__ == "__main__":
    main()
