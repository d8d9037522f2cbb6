#!/usr/bin/python3
"""gemma3_ref.py - an independent PyTorch reference for the Gemma 3 text
decoder, written from Hugging Face transformers' Gemma3 semantics (not from
the C code), used by tests/check_decoder.c.

    gemma3_ref.py REQUEST.json

REQUEST.json:
  {"model": "x.mgm",             # .mgm file (read with tests/ref/mgm.py)
   "tokens": [2, 17, ...],       # token ids, the whole sequence
   "blocks": [0, 0, 1, 1, 0],    # optional: 0 text, >0 image token
   "embeds": "e.f32",            # optional: raw float32 rows of width hidden
   "embed_rows": [2, 3],         # which positions take those rows, in order
   "xq8_from": 24,               # optional: see below
   "xbf16_until": 24,            # optional: see below
   "kv_bf16": true,              # optional: see below
   "out": "logits.f32"}          # written: float32 [n_tokens, vocab]

Weights are dequantized to float and everything runs in float64: the
reference is the exact function, the C code is compared against it.
With "xq8_from": k, the inputs of every matrix product for positions >= k
are first rounded to 8 bits per 32-element block (d = amax / 127, q =
round-half-even(x / d)), which is what a q8_0/q4_0 single-token decode step
in the C code does to its activation (kernels.h, mg__xq8); that lets the
decode steps of quantized models be checked tightly too.
With "xbf16_until": k, the inputs of every product with bf16 weights for
positions < k are first rounded to bf16 (via float32, nearest even), as
the C code's batched steps do on CPUs with AVX512_BF16 (mg__matmul_level),
while its single-token steps keep float32.
With "kv_bf16": true, keys (after RoPE) and values are rounded to bf16
(via float32, nearest even) before attention, as a KV cache kept in bf16
stores them.

Semantics (transformers Gemma3TextModel / Gemma3ForConditionalGeneration):
- embeddings: embed_tokens(ids) * embed_scale, embed_scale = sqrt(hidden)
  cast to the embedding weights' dtype (bf16 / f16 rounding for those
  dtypes; float32 otherwise, quantized files having no torch dtype). Rows
  given as input embeddings (image features) replace whole rows, unscaled.
- Gemma3RMSNorm: x / sqrt(mean(x^2) + eps) * (1 + w).
- per layer: h = x + post_attention_layernorm(attn(input_layernorm(x)));
  out = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))).
- attention: q/k per-head RMSNorm, then RoPE (rotate_half); local layers use
  rope_local_base_freq without scaling, global layers rope_theta with
  linear scaling (inv_freq / factor). Scores q.k * query_pre_attn_scalar^-0.5,
  optional soft-cap cap*tanh(s/cap), mask, softmax, GQA (repeat_kv).
- layer i is sliding iff (i + 1) % sliding_window_pattern != 0.
- masks (transformers.masking_utils): causal kv <= q; sliding adds
  kv > q - sliding_window; image tokens: or_mask_function
  token_type_ids_mask_function: q and kv in the same image group (groups =
  contiguous runs of image tokens) may attend to each other - OR-ed with the
  causal / sliding mask, so it also bypasses the window.
- MLP: down(gelu_tanh(gate(x)) * up(x)).
- final norm, tied lm_head (embed_tokens weight), optional final soft-cap.
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgm import MgmFile  # noqa: E402

DT = torch.float64


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(pos, head_dim, base, factor):
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=DT) / head_dim))
    inv_freq = inv_freq / factor
    freqs = pos[:, None].to(DT) * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def main():
    req = json.load(open(sys.argv[1]))
    f = MgmFile(req["model"])
    m = f.meta

    def gi(k, d=None):
        return int(m[k]) if k in m else d

    def gf(k, d=None):
        return float(m[k]) if k in m else d

    V, H, L = gi("text.vocab_size"), gi("text.hidden_size"), gi("text.n_layers")
    NH, NKV, HD = gi("text.n_heads"), gi("text.n_kv_heads"), gi("text.head_dim")
    W, PAT = gi("text.sliding_window"), gi("text.sliding_window_pattern")
    QPAS = gf("text.query_pre_attn_scalar", float(HD))
    th_loc, th_glob = gf("text.rope_theta_local", 10000.0), gf("text.rope_theta_global", 1e6)
    factor = gf("text.rope_scaling_factor", 1.0)
    eps = gf("text.rms_norm_eps")
    acap, fcap = gf("text.attn_logit_softcap", 0.0), gf("text.final_logit_softcap", 0.0)

    def T(name):
        return torch.from_numpy(f.tensor(name)).to(DT)

    ids = torch.tensor(req["tokens"], dtype=torch.long)
    n = ids.shape[0]
    blocks = torch.tensor(req.get("blocks", [0] * n), dtype=torch.long)

    emb_w = T("text.token_embd")  # (V, H)
    edt = f.dtype("text.token_embd")
    scale = torch.tensor(H ** 0.5, dtype=torch.float32)
    if edt == "bf16":
        scale = scale.to(torch.bfloat16)
    elif edt == "f16":
        scale = scale.to(torch.float16)
    scale = scale.to(DT)
    x = emb_w[ids.clamp(0, V - 1)] * scale
    if req.get("embeds"):
        rows = req["embed_rows"]
        e = np.fromfile(req["embeds"], dtype="<f4").reshape(len(rows), H)
        for j, r in enumerate(rows):
            x[r] = torch.from_numpy(e[j].astype(np.float64))

    xq8_from = req.get("xq8_from")

    def q8(a):
        b = a.reshape(-1, 32)
        d = b.abs().amax(dim=1, keepdim=True) / 127.0
        safe = torch.where(d > 0, d, torch.ones_like(d))
        return (torch.round(b / safe) * d).reshape(a.shape)

    xbf16_until = req.get("xbf16_until")

    def bf(a):
        return a.to(torch.float32).to(torch.bfloat16).to(a.dtype)

    kv_bf16 = bool(req.get("kv_bf16"))

    def lin(a, name):
        w = emb_w if name == "text.token_embd" else T(name)
        if (xq8_from is not None and xq8_from < a.shape[0]
                and f.dtype(name) in ("q8_0", "q4_0")):
            a = torch.cat((a[:xq8_from], q8(a[xq8_from:])), 0)
        if xbf16_until is not None and f.dtype(name) == "bf16":
            a = torch.cat((bf(a[:xbf16_until]), a[xbf16_until:]), 0)
        return a @ w.T

    pos = torch.arange(n)
    qi, ki = pos[:, None], pos[None, :]
    causal = ki <= qi
    sliding = causal & (ki > qi - W)
    is_img = blocks > 0
    prev = torch.cat((torch.zeros(1, dtype=torch.bool), is_img[:-1]))
    group = torch.cumsum((is_img & ~prev).long(), 0) - 1
    group = torch.where(is_img, group, torch.full_like(group, -1))
    same_img = (group[:, None] == group[None, :]) & is_img[:, None] & is_img[None, :]
    mask_global = causal | same_img
    mask_local = sliding | same_img

    cos_l, sin_l = rope_cos_sin(pos, HD, th_loc, 1.0)
    cos_g, sin_g = rope_cos_sin(pos, HD, th_glob, factor)
    rep = NH // NKV

    for li in range(L):
        p = "text.blk.%d." % li
        is_global = (li + 1) % PAT == 0
        hn = rmsnorm(x, T(p + "attn_norm"), eps)
        q = lin(hn, p + "attn_q").view(n, NH, HD).transpose(0, 1)   # (NH, n, HD)
        k = lin(hn, p + "attn_k").view(n, NKV, HD).transpose(0, 1)
        v = lin(hn, p + "attn_v").view(n, NKV, HD).transpose(0, 1)
        q = rmsnorm(q, T(p + "attn_q_norm"), eps)
        k = rmsnorm(k, T(p + "attn_k_norm"), eps)
        cos, sin = (cos_g, sin_g) if is_global else (cos_l, sin_l)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if kv_bf16:
            k, v = bf(k), bf(v)
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        s = (q @ k.transpose(1, 2)) * QPAS ** -0.5
        if acap > 0:
            s = acap * torch.tanh(s / acap)
        mask = mask_global if is_global else mask_local
        s = s.masked_fill(~mask[None], float("-inf"))
        a = torch.softmax(s, dim=-1) @ v                      # (NH, n, HD)
        a = a.transpose(0, 1).reshape(n, NH * HD)
        o = lin(a, p + "attn_output")
        x = x + rmsnorm(o, T(p + "post_attn_norm"), eps)
        hn = rmsnorm(x, T(p + "ffn_norm"), eps)
        g = lin(hn, p + "ffn_gate")
        u = lin(hn, p + "ffn_up")
        d = lin(gelu_tanh(g) * u, p + "ffn_down")
        x = x + rmsnorm(d, T(p + "post_ffn_norm"), eps)

    x = rmsnorm(x, T("text.output_norm"), eps)
    logits = lin(x, "text.token_embd")
    if fcap > 0:
        logits = fcap * torch.tanh(logits / fcap)
    logits.to(torch.float32).numpy().astype("<f4").tofile(req["out"])


if __name__ == "__main__":
    main()
