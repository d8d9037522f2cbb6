#!/usr/bin/python3
"""Random-weight Gemma 3 GGUF files at real shapes, for the peer benchmark.

    /usr/bin/python3 bench/peer/make_models.py [--out DIR] [--llama DIR] [--seed N] [NAME ...]

NAME: gemma3-1b-q8_0, medgemma-4b-q4_0, medgemma-4b-q8_0, siglip-mmproj-bf16,
siglip-mmproj-f16 (default: all). Output in ~/.cache/mg-peer/models (--out). Existing files are
kept (delete one to rewrite it).

The siglip-mmproj files are MedGemma's image side as llama.cpp's converter writes a Gemma 3
mmproj (architecture `clip`, projector type gemma3): SigLIP-400M at 896 px (patch 14, width
1152, MLP 4304, 27 layers, 16 heads), the 4x4 average pool and the projection to 2560. Patch
and position embeddings, norms and biases in f32, the input projection in f16 (as that
converter forces), the layer matrices in bf16 (MedGemma's own dtype) or f16 (the community
files' usual type; their values rounded to bf16 first, as in f16 files converted from MedGemma's
bf16 weights). Random normal weights (0.02), norms around 1.

The files are laid out as llama.cpp's convert_hf_to_gguf.py writes a Gemma 3 text model
(architecture `gemma3`, its tensor names and metadata keys, norms stored as 1 + w, no
`output.weight`: the output projection is tied to `token_embd.weight`). Quantized matrices
are written directly as ggml's q4_0 / q8_0 blocks (random f16 scale, random nibbles / int8s)
since the weights are random anyway. `token_embd` is q8_0 in both the q4_0 and q8_0 files
(our converter's policy for q4_0; llama-quantize would pick q6_K for a tied embedding).
The vocabulary is synthetic SentencePiece-style (`tokenizer.ggml.model` = llama): Gemma's
special tokens, 256 byte tokens, then pieces of 1-3 characters with scores -id, so that the
derived BPE merges (our converter) number about as many as the real tokenizer's.

Needs numpy and llama.cpp's gguf-py (--llama, default ~/.cache/mg-peer/llama.cpp).
"""
import argparse
import os
import sys
import time

import numpy as np

MODELS = {
    # name: (dtype of matrices, shape)
    "gemma3-1b-q8_0": ("q8_0", dict(
        name="Gemma 3 1B (random weights)", n_embd=1152, n_layer=26, n_head=4, n_head_kv=1,
        head_dim=256, n_ff=6912, n_vocab=262144, ctx=32768, swa=512,
        rope_base=1_000_000.0, rope_base_swa=10_000.0, rope_linear=None)),
    "medgemma-4b-q4_0": ("q4_0", dict(
        name="MedGemma 4B text (random weights)", n_embd=2560, n_layer=34, n_head=8, n_head_kv=4,
        head_dim=256, n_ff=10240, n_vocab=262208, ctx=131072, swa=1024,
        rope_base=1_000_000.0, rope_base_swa=10_000.0, rope_linear=8.0)),
    "medgemma-4b-q8_0": ("q8_0", dict(
        name="MedGemma 4B text (random weights)", n_embd=2560, n_layer=34, n_head=8, n_head_kv=4,
        head_dim=256, n_ff=10240, n_vocab=262208, ctx=131072, swa=1024,
        rope_base=1_000_000.0, rope_base_swa=10_000.0, rope_linear=8.0)),
}

# ggml block layouts: (bytes per block of 32 weights, scale range giving |w| ~ 0.02)
BLOCK = {"q8_0": (34, 1.5e-4, 4.0e-4), "q4_0": (18, 2.5e-3, 6.0e-3)}


def quant_blocks(rng, qtype, rows, cols):
    """uint8 array [rows, cols/32 * block bytes] of valid random ggml blocks."""
    assert cols % 32 == 0
    nb, lo, hi = BLOCK[qtype]
    nblk = rows * (cols // 32)
    raw = np.frombuffer(rng.bytes(nblk * nb), dtype=np.uint8).reshape(nblk, nb).copy()
    d = rng.uniform(lo, hi, size=nblk).astype(np.float16)
    raw[:, 0:2] = d.view(np.uint8).reshape(nblk, 2)
    # make the blocks what ggml's quantizer could have produced (so a re-quantization
    # gives back the same bytes): q8_0 ints in [-127, 127] with one of magnitude 127,
    # q4_0 with the block's largest-magnitude weight at nibble 0 (= -8 d)
    if qtype == "q8_0":
        q = raw[:, 2:]
        q[q == 0x80] = 0x81
        q[:, 0] = np.where(q[:, 0] & 1, 0x7F, 0x81)
    else:
        raw[:, 2] &= 0xF0
    return raw.reshape(rows, (cols // 32) * nb)


def vocab(n_vocab):
    """tokens, scores, types of a synthetic Gemma-like SentencePiece vocabulary."""
    NORMAL, UNKNOWN, CONTROL, USER, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
    toks = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    types = [CONTROL, CONTROL, CONTROL, UNKNOWN, USER, USER]
    while len(toks) < 106:
        toks.append("<unused%d>" % (len(toks) - 6))
        types.append(UNUSED)
    toks += ["<start_of_turn>", "<end_of_turn>"]
    types += [CONTROL, CONTROL]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        types.append(BYTE)
    # specials Gemma 3 has at fixed ids (image markers), placed when reached
    fixed = {255999: ("<start_of_image>", USER), 256000: ("<end_of_image>", USER),
             262144: ("<image_soft_token>", USER)}
    alpha = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + \
            [chr(c) for c in range(ord("A"), ord("Z") + 1)] + \
            [chr(c) for c in range(ord("0"), ord("9") + 1)] + list(".,:;!?'-()\n\"/")

    def pieces():
        for a in alpha:
            yield a
        for a in alpha:
            for b in alpha:
                yield a + b
        for a in alpha:
            for b in alpha:
                for c in alpha:
                    yield a + b + c
        for a in alpha:
            for b in alpha:
                for c in alpha:
                    for e in alpha:
                        yield a + b + c + e

    gen = pieces()
    while len(toks) < n_vocab:
        i = len(toks)
        if i in fixed:
            t, ty = fixed[i]
        else:
            t, ty = next(gen), NORMAL
        toks.append(t)
        types.append(ty)
    scores = [0.0 if ty != NORMAL else -float(i) for i, ty in enumerate(types)]
    return toks, scores, types


def write_model(gguf, path, qtype, h, seed):
    rng = np.random.default_rng(seed)
    arch = "gemma3"
    w = gguf.GGUFWriter(str(path) + ".part", arch)
    w.add_name(h["name"])
    w.add_context_length(h["ctx"])
    w.add_embedding_length(h["n_embd"])
    w.add_block_count(h["n_layer"])
    w.add_feed_forward_length(h["n_ff"])
    w.add_head_count(h["n_head"])
    w.add_head_count_kv(h["n_head_kv"])
    w.add_key_length(h["head_dim"])
    w.add_value_length(h["head_dim"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(h["rope_base"])
    w.add_rope_freq_base_swa(h["rope_base_swa"])
    if h["rope_linear"]:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(h["rope_linear"])
    w.add_sliding_window(h["swa"])  # pattern: llama.cpp's gemma3 default (5 local : 1 global)
    w.add_file_type({"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                     "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[qtype])
    toks, scores, types = vocab(h["n_vocab"])
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)

    E, L, F, D = h["n_embd"], h["n_layer"], h["n_ff"], h["head_dim"]
    Q, KV = h["n_head"] * D, h["n_head_kv"] * D
    GT = gguf.GGMLQuantizationType
    qt = {"q8_0": GT.Q8_0, "q4_0": GT.Q4_0}
    # (name, kind, ggml ne = [in, out] / [n]) ; kind: "norm" (f32, 1 + w) or a quant type
    tensors = [("token_embd.weight", "q8_0", (E, h["n_vocab"])), ("output_norm.weight", "norm", (E,))]
    for i in range(L):
        b = "blk.%d." % i
        tensors += [
            (b + "attn_norm.weight", "norm", (E,)),
            (b + "attn_q.weight", qtype, (E, Q)),
            (b + "attn_k.weight", qtype, (E, KV)),
            (b + "attn_v.weight", qtype, (E, KV)),
            (b + "attn_q_norm.weight", "norm", (D,)),
            (b + "attn_k_norm.weight", "norm", (D,)),
            (b + "attn_output.weight", qtype, (Q, E)),
            (b + "post_attention_norm.weight", "norm", (E,)),
            (b + "ffn_norm.weight", "norm", (E,)),
            (b + "ffn_gate.weight", qtype, (E, F)),
            (b + "ffn_up.weight", qtype, (E, F)),
            (b + "ffn_down.weight", qtype, (F, E)),
            (b + "post_ffw_norm.weight", "norm", (E,)),
        ]
    for name, kind, ne in tensors:
        if kind == "norm":
            w.add_tensor_info(name, ne, np.dtype(np.float32), ne[0] * 4)
        else:
            cols, rows = ne
            nbytes = rows * (cols // 32) * BLOCK[kind][0]
            w.add_tensor_info(name, (rows, (cols // 32) * BLOCK[kind][0]), np.dtype(np.uint8),
                              nbytes, raw_dtype=qt[kind])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, kind, ne in tensors:
        if kind == "norm":
            t = (1.0 + 0.05 * rng.standard_normal(ne[0])).astype(np.float32)
        else:
            t = quant_blocks(rng, kind, ne[1], ne[0])
        w.write_tensor_data(t)
    w.close()
    os.replace(str(path) + ".part", path)


VISION = dict(image=896, patch=14, width=1152, ffn=4304, layers=27, heads=16, text=2560)


def write_mmproj(gguf, path, mtype, seed):
    rng = np.random.default_rng(seed)
    v = VISION
    W, F, P, NP = v["width"], v["ffn"], v["patch"], (v["image"] // v["patch"]) ** 2
    w = gguf.GGUFWriter(str(path) + ".part", "clip")
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name("SigLIP-400M 896 + Gemma 3 projector (random weights)")
    w.add_file_type({"bf16": gguf.LlamaFileType.MOSTLY_BF16,
                     "f16": gguf.LlamaFileType.MOSTLY_F16}[mtype])
    w.add_clip_projector_type(gguf.VisionProjectorType.GEMMA3)
    w.add_clip_has_vision_encoder(True)
    w.add_vision_projection_dim(v["text"])
    w.add_vision_image_size(v["image"])
    w.add_vision_patch_size(P)
    w.add_vision_embedding_length(W)
    w.add_vision_feed_forward_length(F)
    w.add_vision_block_count(v["layers"])
    w.add_vision_head_count(v["heads"])
    w.add_vision_image_mean([0.5, 0.5, 0.5])
    w.add_vision_image_std([0.5, 0.5, 0.5])
    w.add_vision_attention_layernorm_eps(1e-6)
    w.add_vision_use_gelu(True)
    GT = gguf.GGMLQuantizationType
    # (name, kind, numpy shape); kind: "f32" random, "norm" (f32 around 1), "bf16", "f16"
    t = [("v.patch_embd.weight", "f32", (W, 3, P, P)), ("v.patch_embd.bias", "f32", (W,)),
         ("v.position_embd.weight", "f32", (NP, W))]
    for i in range(v["layers"]):
        b = "v.blk.%d." % i
        t += [(b + "ln1.weight", "norm", (W,)), (b + "ln1.bias", "f32", (W,)),
              (b + "ln2.weight", "norm", (W,)), (b + "ln2.bias", "f32", (W,))]
        for m, shp in (("attn_q", (W, W)), ("attn_k", (W, W)), ("attn_v", (W, W)),
                       ("attn_out", (W, W)), ("ffn_up", (F, W)), ("ffn_down", (W, F))):
            t += [(b + m + ".weight", mtype, shp), (b + m + ".bias", "f32", (shp[0],))]
    t += [("v.post_ln.weight", "norm", (W,)), ("v.post_ln.bias", "f32", (W,)),
          ("mm.soft_emb_norm.weight", "norm", (W,)),
          ("mm.input_projection.weight", "f16", (W, v["text"]))]
    for name, kind, shp in t:
        n = int(np.prod(shp))
        if kind in ("f32", "norm"):
            w.add_tensor_info(name, shp, np.dtype(np.float32), n * 4)
        else:
            w.add_tensor_info(name, shp[:-1] + (shp[-1] * 2,), np.dtype(np.uint8), n * 2,
                              raw_dtype=GT.BF16 if kind == "bf16" else GT.F16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, kind, shp in t:
        x = rng.standard_normal(shp, dtype=np.float32)
        if kind == "norm":
            x = 1.0 + 0.05 * x
        else:
            x *= 0.02
        if kind == "bf16":
            x = (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
            x = x.reshape(shp[:-1] + (shp[-1] * 2,))
        elif kind == "f16":
            if name != "mm.input_projection.weight":
                # the layer matrices rounded to bf16 first: the f16 files in circulation are
                # converted from MedGemma's bf16 weights, so their values are bf16 values (the
                # small input projection, f16 in both files, keeps full f16 values)
                x = ((x.view(np.uint32) + 0x8000) & 0xFFFF0000).view(np.float32)
            x = x.astype(np.float16).view(np.uint8).reshape(shp[:-1] + (shp[-1] * 2,))
        w.write_tensor_data(x)
    w.close()
    os.replace(str(path) + ".part", path)


MMPROJ = {"siglip-mmproj-bf16": "bf16", "siglip-mmproj-f16": "f16"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/mg-peer/models"))
    ap.add_argument("--llama", default=os.path.expanduser("~/.cache/mg-peer/llama.cpp"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("names", nargs="*", default=list(MODELS) + list(MMPROJ))
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.llama, "gguf-py"))
    import gguf  # noqa: E402  (llama.cpp's own package)
    os.makedirs(a.out, exist_ok=True)
    for n in a.names:
        if n not in MODELS and n not in MMPROJ:
            sys.exit("unknown model %s (known: %s)" % (n, ", ".join(list(MODELS) + list(MMPROJ))))
        path = os.path.join(a.out, n + ".gguf")
        if os.path.exists(path):
            print("%s: exists" % path)
            continue
        t0 = time.time()
        if n in MMPROJ:
            write_mmproj(gguf, path, MMPROJ[n], a.seed)
        else:
            qtype, h = MODELS[n]
            write_model(gguf, path, qtype, h, a.seed)
        print("%s: %.2f GB in %.0f s" % (path, os.path.getsize(path) / 1e9, time.time() - t0))


if __name__ == "__main__":
    main()
