#!/usr/bin/python3
"""vision_ref.py - an independent reference for the image side of MedGemma:
Hugging Face Gemma3ImageProcessor preprocessing (PIL), the SigLIP vision
transformer and Gemma 3's multimodal projector, written from the
transformers modeling semantics with plain torch ops (not from the C code).
Used by tests/check_vision.c.

    vision_ref.py REQUEST.json

REQUEST.json:
  {"model": "x.mgm",                       # .mgm file (tests/ref/mgm.py)
   "images": [{"raw": "img.bin",           # pixels as the library holds them
               "width": W, "height": H,
               "format": 1|2|3|4,          # GRAY8, GRAY16, RGB8, RGB16
               "bits": 12}],               # bits stored (16-bit formats)
   "size": 896,                            # optional: resize target only
   "rgb_out": "rgb.u8",                    # optional: resized RGB8, concatenated
   "out": "features.f32"}                  # optional: float32 [n_images, tokens, hidden]

Preprocessing (transformers Gemma3ImageProcessor, PIL path): 16-bit samples
are first reduced to 8 bits the documented way (round(v * 255 / max) with
max = 2^bits - 1, in integers, half up) - PIL itself would clip; then
Image.convert("RGB"), Image.resize((S, S), BILINEAR, reducing_gap=None),
rescale: (x.astype(float64) * rescale).astype(float32), normalize:
(x - mean) / std in float32.

Model (float64 on the dequantized weights):
- SiglipVisionEmbeddings: conv2d(kernel = stride = patch) with bias,
  flatten(2).transpose(1, 2), + position_embedding(arange(n_patches)).
- SiglipEncoderLayer (pre-LN): x = x + out_proj(attn(layer_norm1(x)));
  x = x + fc2(gelu_tanh(fc1(layer_norm2(x)))); attention: q, k, v with bias,
  softmax(q k^T * head_dim^-0.5) v, no mask.
- post_layernorm.
- Gemma3MultiModalProjector: transpose(1, 2).reshape(D, G, G),
  avg_pool2d(k = G / sqrt(tokens)), flatten(2).transpose(1, 2),
  Gemma3RMSNorm (x * (1 + w), eps = vision layer_norm_eps),
  x @ mm_input_projection_weight.
With "xq8": true, the input rows of every product with q8_0/q4_0 weights
(the patch embedding included, as an unfolded product) are first rounded
to 8 bits per 32-element block (d = amax / 127, q = round-half-even(x / d)),
which is what the C code's integer prefill product does to them on CPUs
with AVX512-VNNI (kernels.h, mg__matmul_level); with "xbf16": true, those
of every product with bf16 weights are rounded to bf16 (via float32,
nearest even), as on CPUs with AVX512_BF16, and so are attention's inputs
(scaled q, k, v and the softmax numerators) when the layer's weights are
bf16; with "att_bf16": true, attention's inputs are rounded so whatever the
weights (the C code does so for q8_0/q4_0 weights on CPUs with AVX512_BF16).
"""
import json
import math
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgm import MgmFile  # noqa: E402


def to8(arr, bits):
    mx = (1 << bits) - 1 if 1 <= bits < 16 else 65535
    a = np.minimum(arr.astype(np.int64), mx)
    return ((a * 255 + mx // 2) // mx).astype(np.uint8)


def load_raw(im):
    w, h, fmt = im["width"], im["height"], im["format"]
    ch = 1 if fmt in (1, 2) else 3
    dt = np.uint8 if fmt in (1, 3) else np.dtype("<u2")
    a = np.fromfile(im["raw"], dtype=dt).reshape(h, w, ch)
    if dt != np.uint8:
        a = to8(a, im.get("bits", 16))
    if ch == 1:
        pil = Image.fromarray(a[:, :, 0], mode="L")
    else:
        pil = Image.fromarray(a, mode="RGB")
    return pil.convert("RGB")


def preprocess(pil, size, rescale, mean, std):
    r = pil.resize((size, size), resample=Image.BILINEAR, reducing_gap=None)
    rgb = np.asarray(r, dtype=np.uint8)
    x = (rgb.astype(np.float64) * rescale).astype(np.float32)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return rgb, x.transpose(2, 0, 1)  # CHW


def main():
    req = json.load(open(sys.argv[1]))
    f = MgmFile(req["model"]) if req.get("model") else None
    m = f.meta if f else {}
    size = req.get("size") or int(m["image.size"])
    rescale = float(m.get("image.rescale", 1.0 / 255.0))
    mean = [float(v) for v in m.get("image.mean", [0.5] * 3)]
    std = [float(v) for v in m.get("image.std", [0.5] * 3)]
    rgbs, pix = [], []
    for im in req["images"]:
        rgb, x = preprocess(load_raw(im), size, rescale, mean, std)
        rgbs.append(rgb)
        pix.append(x)
    if req.get("rgb_out"):
        np.concatenate([r.reshape(-1) for r in rgbs]).tofile(req["rgb_out"])
    if not req.get("out"):
        return
    import torch  # only for the model (preprocessing-only runs stay quick)
    import torch.nn.functional as Fn
    DT = torch.float64

    def T(name):
        return torch.from_numpy(f.tensor(name)).to(DT)

    P = int(m["vision.patch_size"])
    D = int(m["vision.hidden_size"])
    NH = int(m["vision.n_heads"])
    L = int(m["vision.n_layers"])
    TOK = int(m["vision.tokens_per_image"])
    eps = float(m.get("vision.layer_norm_eps", 1e-6))
    G = size // P
    hd = D // NH
    conv_w = T("vision.patch_embd").reshape(D, 3, P, P)
    conv_b = T("vision.patch_embd_bias")
    pos = T("vision.pos_embd")  # (n_patches, D)

    xq8 = bool(req.get("xq8"))
    xbf16 = bool(req.get("xbf16"))

    def rounds(name):
        return ((xq8 and f.dtype(name) in ("q8_0", "q4_0"))
                or (xbf16 and f.dtype(name) == "bf16"))

    def bf(x):
        return x.to(torch.float32).to(torch.bfloat16).to(x.dtype)

    def rnd(x, name):
        """x as the C code's product with weight `name` sees it."""
        if xq8 and f.dtype(name) in ("q8_0", "q4_0"):
            return q8(x)
        if xbf16 and f.dtype(name) == "bf16":
            return bf(x)
        return x

    def q8(a):
        b = a.reshape(-1, 32)
        d = b.abs().amax(dim=1, keepdim=True) / 127.0
        safe = torch.where(d > 0, d, torch.ones_like(d))
        return (torch.round(b / safe) * d).reshape(a.shape)

    def lin(x, name, bias=True):
        y = rnd(x, name) @ T(name).T
        return y + T(name + "_bias") if bias else y

    feats = []
    for x in pix:
        px = torch.from_numpy(np.ascontiguousarray(x)).to(DT)[None]
        if rounds("vision.patch_embd"):
            rows = rnd(Fn.unfold(px, P, stride=P)[0].T, "vision.patch_embd")
            h = rows @ conv_w.reshape(D, -1).T + conv_b + pos
        else:
            h = Fn.conv2d(px, conv_w, conv_b, stride=P)      # (1, D, G, G)
            h = h.flatten(2).transpose(1, 2)[0] + pos         # (N, D)
        n = h.shape[0]
        for li in range(L):
            p = "vision.blk.%d." % li
            r = h
            a = Fn.layer_norm(h, (D,), T(p + "ln1"), T(p + "ln1_bias"), eps)
            q = lin(a, p + "attn_q").view(n, NH, hd).transpose(0, 1)
            k = lin(a, p + "attn_k").view(n, NH, hd).transpose(0, 1)
            v = lin(a, p + "attn_v").view(n, NH, hd).transpose(0, 1)
            if (xbf16 and f.dtype(p + "attn_q") == "bf16") or req.get("att_bf16"):
                # as the C code on AVX512_BF16: bf16(scale q) bf16(k)^T, the
                # softmax numerators exp(s - max) rounded to bf16 times
                # bf16(v), then divided by the sum of the unrounded ones
                sc = float(np.float32(1.0) / np.sqrt(np.float32(hd)))
                s = bf(q * sc) @ bf(k).transpose(1, 2)
                ex = torch.exp(s - s.amax(dim=-1, keepdim=True))
                o = (bf(ex) @ bf(v)) / ex.sum(dim=-1, keepdim=True)
            else:
                s = torch.softmax((q @ k.transpose(1, 2)) * hd ** -0.5, dim=-1)
                o = s @ v
            o = o.transpose(0, 1).reshape(n, D)
            h = r + lin(o, p + "attn_output")
            r = h
            a = Fn.layer_norm(h, (D,), T(p + "ln2"), T(p + "ln2_bias"), eps)
            a = Fn.gelu(lin(a, p + "ffn_up"), approximate="tanh")
            h = r + lin(a, p + "ffn_down")
        h = Fn.layer_norm(h, (D,), T("vision.post_ln"), T("vision.post_ln_bias"), eps)
        side = int(math.isqrt(TOK))
        kk = G // side
        g = h.transpose(0, 1).reshape(1, D, G, G)
        g = Fn.avg_pool2d(g, kernel_size=kk, stride=kk)
        g = g.flatten(2).transpose(1, 2)[0]                    # (TOK, D)
        w = T("mm.soft_emb_norm")
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)
        feats.append(rnd(g, "mm.input_proj") @ T("mm.input_proj").T)  # (TOK, hidden)
    torch.stack(feats).to(torch.float32).numpy().astype("<f4").tofile(req["out"])


if __name__ == "__main__":
    main()
