#!/usr/bin/python3
"""make_fixtures.py - test inputs for tests/check_convert.c (numpy only).

  make_fixtures.py gguf HF_DIR OUT.gguf
      The f32 weights of a Hugging Face Gemma 3 text folder (config.json +
      model.safetensors, as tests/reference/gemma3_reference.py writes them)
      written as a llama.cpp-style GGUF: llama.cpp tensor names, gemma3.* keys,
      norm weights stored as 1 + w (float32), as convert_hf_to_gguf.py does.
  make_fixtures.py tokgguf TOKENIZER_JSON OUT.gguf
      A one-layer gemma3 GGUF whose tokenizer.ggml.* keys hold the given
      tokenizer.json as llama.cpp stores SentencePiece vocabularies (pieces,
      scores, token types; no merges).
  make_fixtures.py f16 HF_DIR OUT_DIR
      HF_DIR's weights as F16 safetensors in OUT_DIR/exact (values exact in bf16)
      and OUT_DIR/plain (rounded to f16 only), each with HF_DIR's config.json.
  make_fixtures.py kquant OUT_DIR
      OUT_DIR/text.gguf, a one-layer gemma3 GGUF (hidden 256) whose token
      embedding is Q6_K and ffn_gate/ffn_up Q4_K (random blocks), and
      OUT_DIR/expect.json with element values computed from the block layouts.
  make_fixtures.py multimodal OUT_DIR [--old-names | --bf16]
      A tiny random Gemma3ForConditionalGeneration folder: config.json
      leaning on transformers' defaults, two safetensors shards and their
      index, a small BPE tokenizer.json, tokenizer_config.json,
      generation_config.json, preprocessor_config.json; the same weights as
      OUT_DIR/text.gguf and OUT_DIR/mmproj.gguf (llama.cpp names; clip.* keys;
      +1 on text norms and mm.soft_emb_norm); OUT_DIR/expect.json lists
      element checks (tensor, flat index, value) derived from the HF arrays.

The GGUF writer below follows the GGUF v3 layout: magic, version, tensor and
key counts, key/values, tensor infos (dims fastest first), data aligned to 32.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

ALIGN = 32
T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR = 4, 5, 6, 7, 8, 9


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if t == T_U32:
        return struct.pack("<I", v)
    if t == T_I32:
        return struct.pack("<i", v)
    if t == T_F32:
        return struct.pack("<f", v)
    if t == T_BOOL:
        return struct.pack("<B", 1 if v else 0)
    if t == T_STR:
        return gstr(v)
    raise ValueError(t)


def write_gguf(path, kvs, tensors):
    """kvs: [(key, type, value)] (arrays: (key, (T_ARR, elem_type), list));
    tensors: [(name, float32 or float16 ndarray in numpy order)]."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    for k, t, v in kvs:
        out += gstr(k)
        if isinstance(t, tuple):
            out += struct.pack("<IIQ", T_ARR, t[1], len(v))
            for e in v:
                out += gval(t[1], e)
        else:
            out += struct.pack("<I", t) + gval(t, v)
    off = 0
    blobs = []
    for name, a in tensors:
        if isinstance(a, tuple):  # (ggml type, shape, raw bytes)
            gt, shape, b = a
        else:
            gt = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}[a.dtype]
            shape = a.shape
            b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        out += gstr(name) + struct.pack("<I", len(shape))
        for d in reversed(shape):
            out += struct.pack("<Q", d)
        out += struct.pack("<IQ", gt, off)
        blobs.append(b)
        off += (len(b) + ALIGN - 1) // ALIGN * ALIGN
    out += b"\0" * ((-len(out)) % ALIGN)
    with open(path, "wb") as f:
        f.write(out)
        for b in blobs:
            f.write(b)
            f.write(b"\0" * ((-len(b)) % ALIGN))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16}[v["dtype"]]
        out[k] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=dt).reshape(v["shape"])
    return out


def to_bf16_bits(a):
    """float32 values rounded to nearest even bf16, as uint16 bit patterns"""
    b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype("<u2")


def write_safetensors(path, tensors, dtype="F32"):
    if dtype == "BF16":
        tensors = {k: to_bf16_bits(a) for k, a in tensors.items()}
    else:
        np_dt = {"F32": "<f4", "F16": "<f2"}[dtype]
        tensors = {k: np.ascontiguousarray(a, dtype=np_dt) for k, a in tensors.items()}
    hdr, off = {}, 0
    for k, a in tensors.items():
        hdr[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(hdr).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for a in tensors.values():
            f.write(a.tobytes())


TEXT_MAP = [("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
            ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"),
            ("self_attn.o_proj", "attn_output"),
            ("post_attention_layernorm", "post_attention_norm"),
            ("pre_feedforward_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
            ("post_feedforward_layernorm", "post_ffw_norm")]

ONE = np.float32(1)


def text_gguf(cfg, w, prefix, tokenizer=None):
    """(kvs, tensors) of a gemma3 GGUF from HF text weights."""
    L = cfg["num_hidden_layers"]
    kv = [("general.architecture", T_STR, "gemma3"), ("general.name", T_STR, "fixture"),
          ("gemma3.context_length", T_U32, cfg["max_position_embeddings"]),
          ("gemma3.embedding_length", T_U32, cfg["hidden_size"]),
          ("gemma3.block_count", T_U32, L),
          ("gemma3.feed_forward_length", T_U32, cfg["intermediate_size"]),
          ("gemma3.attention.head_count", T_U32, cfg["num_attention_heads"]),
          ("gemma3.attention.head_count_kv", T_U32, cfg["num_key_value_heads"]),
          ("gemma3.attention.key_length", T_U32, cfg["head_dim"]),
          ("gemma3.attention.value_length", T_U32, cfg["head_dim"]),
          ("gemma3.attention.layer_norm_rms_epsilon", T_F32, cfg.get("rms_norm_eps", 1e-6)),
          ("gemma3.rope.freq_base", T_F32, cfg.get("rope_theta", 1e6)),
          ("gemma3.attention.sliding_window", T_U32, cfg["sliding_window"])]
    qpas = cfg.get("query_pre_attn_scalar", cfg["head_dim"])
    if qpas != cfg["head_dim"]:
        # llama.cpp derives the scale from key_length (hidden/heads for the
        # 27B); this key is medgemini's extension for other values
        kv.append(("gemma3.attention.query_pre_attn_scalar", T_U32, qpas))
    pat = cfg.get("sliding_window_pattern", 6)
    if "layer_types" in cfg:
        swa = [t == "sliding_attention" for t in cfg["layer_types"]]
    else:
        swa = [(i + 1) % pat != 0 for i in range(L)]
    kv.append(("gemma3.attention.sliding_window_pattern", (T_ARR, T_BOOL), swa))
    rs = cfg.get("rope_scaling")
    if rs:
        kv += [("gemma3.rope.scaling.type", T_STR, "linear"),
               ("gemma3.rope.scaling.factor", T_F32, rs["factor"])]
    for k in ("attn_logit_softcapping", "final_logit_softcapping"):
        if cfg.get(k) is not None:
            kv.append(("gemma3." + k, T_F32, cfg[k]))
    if tokenizer:
        kv += tokenizer
    t = [("token_embd.weight", w[prefix + "embed_tokens.weight"])]
    for i in range(L):
        for hf, gg in TEXT_MAP:
            a = w["%slayers.%d.%s.weight" % (prefix, i, hf)]
            if hf.endswith("norm"):
                a = (a.astype(np.float32) + ONE).astype(np.float32)
            t.append(("blk.%d.%s.weight" % (i, gg), a))
    t.append(("output_norm.weight", (w[prefix + "norm.weight"] + ONE).astype(np.float32)))
    return kv, t


def cmd_gguf(hf_dir, out):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    w = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    kv, t = text_gguf(cfg, w, "model.")
    write_gguf(out, kv, t)


# ---------------------------------------------------------------- multimodal

def tokenizer_json():
    """A small Gemma-like BPE tokenizer.json: specials, byte fallback, letters,
    a few merges. Returns (json dict, tokens, types)."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                "<start_of_image>", "<end_of_image>"]
    vocab = list(specials)
    vocab += ["<0x%02X>" % b for b in range(256)]
    letters = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += letters
    merges = [("t", "h"), ("\u2581", "th"), ("e", "r"), ("\u2581th", "e"), ("a", "n"),
              ("i", "n"), ("\u2581", "a"), ("o", "n")]
    for a, b in merges:
        vocab.append(a + b)
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(specials)]
    img = len(vocab)
    added.append({"id": img, "content": "<image_soft_token>", "single_word": False,
                  "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    tj = {"version": "1.0", "added_tokens": added,
          "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
          "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                            "behavior": "MergedWithPrevious", "invert": False},
          "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                    "continuing_subword_prefix": "", "end_of_word_suffix": "",
                    "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                    "vocab": {s: i for i, s in enumerate(vocab)},
                    "merges": [[a, b] for a, b in merges]}}
    return tj, vocab + ["<image_soft_token>"], img


def cmd_multimodal(out, old_names, dtype="F32"):
    rng = np.random.default_rng(7)
    os.makedirs(out, exist_ok=True)
    tj, tokens, img_id = tokenizer_json()
    V = len(tokens) + 11  # more embedding rows than tokens, as in real Gemma 3
    H, F, L, NH, KV, HD = 64, 128, 2, 2, 1, 32
    VW, VF, VL, VH, IMG, P = 32, 48, 2, 2, 32, 8
    NP = (IMG // P) ** 2
    text = {"hidden_size": H, "intermediate_size": F, "num_hidden_layers": L,
            "num_attention_heads": NH, "num_key_value_heads": KV, "head_dim": HD,
            "query_pre_attn_scalar": HD, "vocab_size": V, "max_position_embeddings": 256,
            "sliding_window": 8, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
            "model_type": "gemma3_text"}
    vision = {"hidden_size": VW, "intermediate_size": VF, "num_hidden_layers": VL,
              "num_attention_heads": VH, "image_size": IMG, "patch_size": P,
              "model_type": "siglip_vision_model", "vision_use_head": False}
    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
           "text_config": text, "vision_config": vision, "mm_tokens_per_image": 4,
           "boi_token_index": 6, "eoi_token_index": 7, "image_token_index": img_id}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    json.dump(tj, open(os.path.join(out, "tokenizer.json"), "w"))
    json.dump({"chat_template": "{{ bos_token }}<start_of_turn>user\n...", "eos_token": "<eos>"},
              open(os.path.join(out, "tokenizer_config.json"), "w"))
    json.dump({"eos_token_id": [1, 5]}, open(os.path.join(out, "generation_config.json"), "w"))
    json.dump({"size": {"height": IMG, "width": IMG}, "image_mean": [0.5, 0.5, 0.5],
               "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 1 / 255,
               "image_seq_length": 4}, open(os.path.join(out, "preprocessor_config.json"), "w"))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("---\nlicense: apache-2.0\n---\n# fixture\n")

    def r(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    tp = "language_model.model." if old_names else "model.language_model."
    vp = "vision_tower.vision_model." if old_names else "model.vision_tower.vision_model."
    pp = "multi_modal_projector." if old_names else "model.multi_modal_projector."
    w = {tp + "embed_tokens.weight": r(V, H)}
    for i in range(L):
        for hf, _ in TEXT_MAP:
            shape = {"q_proj": (NH * HD, H), "k_proj": (KV * HD, H), "v_proj": (KV * HD, H),
                     "o_proj": (H, NH * HD), "gate_proj": (F, H), "up_proj": (F, H),
                     "down_proj": (H, F), "q_norm": (HD,), "k_norm": (HD,)}.get(
                         hf.split(".")[-1], (H,))
            w["%slayers.%d.%s.weight" % (tp, i, hf)] = r(*shape)
    w[tp + "norm.weight"] = r(H)
    v = {vp + "embeddings.patch_embedding.weight": r(VW, 3, P, P),
         vp + "embeddings.patch_embedding.bias": r(VW),
         vp + "embeddings.position_embedding.weight": r(NP, VW),
         vp + "post_layernorm.weight": r(VW) + 1, vp + "post_layernorm.bias": r(VW)}
    for i in range(VL):
        e = "%sencoder.layers.%d." % (vp, i)
        for n in ("layer_norm1", "layer_norm2"):
            v[e + n + ".weight"] = r(VW) + 1
            v[e + n + ".bias"] = r(VW)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            v[e + "self_attn." + n + ".weight"] = r(VW, VW)
            v[e + "self_attn." + n + ".bias"] = r(VW)
        v[e + "mlp.fc1.weight"], v[e + "mlp.fc1.bias"] = r(VF, VW), r(VF)
        v[e + "mlp.fc2.weight"], v[e + "mlp.fc2.bias"] = r(VW, VF), r(VW)
    v[pp + "mm_soft_emb_norm.weight"] = r(VW)
    v[pp + "mm_input_projection_weight"] = r(VW, H)
    shard1 = {k: a for k, a in w.items()}
    shard2 = dict(v)
    write_safetensors(os.path.join(out, "model-00001-of-00002.safetensors"), shard1, dtype)
    write_safetensors(os.path.join(out, "model-00002-of-00002.safetensors"), shard2, dtype)
    wm = {k: "model-00001-of-00002.safetensors" for k in shard1}
    wm.update({k: "model-00002-of-00002.safetensors" for k in shard2})
    json.dump({"metadata": {}, "weight_map": wm},
              open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=1)

    # GGUF: text (with a SentencePiece-style tokenizer) and mmproj
    types = []
    for i, s in enumerate(tokens):
        types.append(3 if i < 8 or s == "<image_soft_token>" else
                     6 if s.startswith("<0x") else 1)
    types[3] = 2
    scores = [0.0 if t != 1 else -float(i) for i, t in enumerate(types)]
    tok = [("tokenizer.ggml.model", T_STR, "llama"),
           ("tokenizer.ggml.tokens", (T_ARR, T_STR), tokens),
           ("tokenizer.ggml.scores", (T_ARR, T_F32), scores),
           ("tokenizer.ggml.token_type", (T_ARR, T_I32), types),
           ("tokenizer.ggml.bos_token_id", T_U32, 2), ("tokenizer.ggml.eos_token_id", T_U32, 1),
           ("tokenizer.ggml.unknown_token_id", T_U32, 3),
           ("tokenizer.ggml.padding_token_id", T_U32, 0)]
    tcfg = dict(text)
    kv, t = text_gguf(tcfg, w, tp, tok)
    write_gguf(os.path.join(out, "text.gguf"), kv, t)
    mkv = [("general.architecture", T_STR, "clip"), ("clip.projector_type", T_STR, "gemma3"),
           ("clip.has_vision_encoder", T_BOOL, True),
           ("clip.vision.image_size", T_U32, IMG), ("clip.vision.patch_size", T_U32, P),
           ("clip.vision.embedding_length", T_U32, VW),
           ("clip.vision.feed_forward_length", T_U32, VF),
           ("clip.vision.block_count", T_U32, VL),
           ("clip.vision.attention.head_count", T_U32, VH),
           ("clip.vision.attention.layer_norm_epsilon", T_F32, 1e-6),
           ("clip.vision.image_mean", (T_ARR, T_F32), [0.5, 0.5, 0.5]),
           ("clip.vision.image_std", (T_ARR, T_F32), [0.5, 0.5, 0.5]),
           ("clip.vision.projector.scale_factor", T_U32, 2)]
    mt = [("v.patch_embd.weight", v[vp + "embeddings.patch_embedding.weight"]),
          ("v.patch_embd.bias", v[vp + "embeddings.patch_embedding.bias"]),
          ("v.position_embd.weight", v[vp + "embeddings.position_embedding.weight"])]
    for i in range(VL):
        e = "%sencoder.layers.%d." % (vp, i)
        for hf, gg in (("layer_norm1", "ln1"), ("layer_norm2", "ln2"),
                       ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                       ("self_attn.v_proj", "attn_v"), ("self_attn.out_proj", "attn_out"),
                       ("mlp.fc1", "ffn_up"), ("mlp.fc2", "ffn_down")):
            for s in ("weight", "bias"):
                mt.append(("v.blk.%d.%s.%s" % (i, gg, s), v[e + hf + "." + s]))
    mt += [("v.post_ln.weight", v[vp + "post_layernorm.weight"]),
           ("v.post_ln.bias", v[vp + "post_layernorm.bias"]),
           ("mm.soft_emb_norm.weight", (v[pp + "mm_soft_emb_norm.weight"] + ONE).astype(np.float32)),
           ("mm.input_projection.weight", v[pp + "mm_input_projection_weight"])]
    write_gguf(os.path.join(out, "mmproj.gguf"), mkv, mt)

    # element checks from the HF arrays (independent of the converter)
    conv = v[vp + "embeddings.patch_embedding.weight"]
    proj = v[pp + "mm_input_projection_weight"]
    pos = v[vp + "embeddings.position_embedding.weight"]
    ex = []
    for o, c, ky, kx in ((0, 0, 0, 0), (3, 2, 5, 1), (VW - 1, 1, P - 1, P - 2)):
        ex.append(["vision.patch_embd", o * 3 * P * P + c * P * P + ky * P + kx,
                   float(conv[o, c, ky, kx])])
    for i, j in ((0, 0), (5, 17), (VW - 1, H - 1)):   # in = vision unit i, out = text unit j
        ex.append(["mm.input_proj", j * VW + i, float(proj[i, j])])
    for p, c in ((0, 0), (NP - 1, 7)):
        ex.append(["vision.pos_embd", p * VW + c, float(pos[p, c])])
    ex.append(["mm.soft_emb_norm", 3, float(v[pp + "mm_soft_emb_norm.weight"][3])])
    ex.append(["vision.blk.1.ffn_down", 2 * VF + 40, float(v[vp + "encoder.layers.1.mlp.fc2.weight"][2, 40])])
    ex.append(["text.blk.1.attn_q_norm", 4, float(w[tp + "layers.1.self_attn.q_norm.weight"][4])])
    json.dump({"checks": ex, "vocab": V, "n_tokens": len(tokens)},
              open(os.path.join(out, "expect.json"), "w"))


def f16(b, o):
    return float(np.frombuffer(b[o:o + 2], dtype="<f2")[0])


def q4k_value(b, e):
    """Element e of Q4_K data b, from the block layout (GGML k_quants)."""
    blk = b[144 * (e // 256):144 * (e // 256 + 1)]
    r = e % 256
    c, h, l = r // 64, (r % 64) // 32, r % 32
    j = 2 * c + h
    sb = blk[4:16]
    if j < 4:
        sc, m = sb[j] & 63, sb[j + 4] & 63
    else:
        sc = (sb[j + 4] & 15) | ((sb[j - 4] >> 6) << 4)
        m = (sb[j + 4] >> 4) | ((sb[j] >> 6) << 4)
    q = blk[16 + 32 * c + l]
    q = q >> 4 if h else q & 15
    return np.float32(np.float32(f16(blk, 0)) * np.float32(sc)) * np.float32(q) - \
        np.float32(np.float32(f16(blk, 2)) * np.float32(m))


def q6k_value(b, e):
    blk = b[210 * (e // 256):210 * (e // 256 + 1)]
    r = e % 256
    half, k, l = r // 128, (r % 128) // 32, r % 32
    lo = blk[64 * half + l + (k & 1) * 32]
    lo = lo & 15 if k < 2 else lo >> 4
    hi = (blk[128 + 32 * half + l] >> (2 * k)) & 3
    sc = np.int8(blk[192 + 8 * half + l // 16 + 2 * k].astype(np.int8))
    return np.float32(np.float32(f16(blk, 208)) * np.float32(sc)) * np.float32(((hi << 4) | lo) - 32)


def cmd_kquant(out_dir):
    """text.gguf with Q6_K token_embd and Q4_K ffn_gate/ffn_up (random blocks,
    small scales), hidden 256; expect.json: element values from the layouts."""
    rng = np.random.default_rng(5)
    os.makedirs(out_dir, exist_ok=True)
    H, F, V = 256, 512, 64
    cfg = {"max_position_embeddings": 64, "hidden_size": H, "num_hidden_layers": 1,
           "intermediate_size": F, "num_attention_heads": 2, "num_key_value_heads": 1,
           "head_dim": 128, "sliding_window": 16}

    def blocks(n_elems, size, d_at):
        b = rng.integers(0, 256, size=(n_elems // 256, size), dtype=np.uint8)
        for o in d_at:  # f16 scales in [2^-10, 2^-8)
            v = rng.uniform(2 ** -10, 2 ** -8, size=b.shape[0]).astype("<f2")
            b[:, o:o + 2] = v.view(np.uint8).reshape(-1, 2)
        return b.reshape(-1)

    w = {"model.embed_tokens.weight": np.zeros((V, H), np.float32),
         "model.norm.weight": (rng.standard_normal(H) * 0.1).astype(np.float32)}
    for hf, _ in TEXT_MAP:
        shape = {"q_proj": (256, H), "k_proj": (128, H), "v_proj": (128, H), "o_proj": (H, 256),
                 "gate_proj": (F, H), "up_proj": (F, H), "down_proj": (H, F),
                 "q_norm": (128,), "k_norm": (128,)}.get(hf.split(".")[-1], (H,))
        w["model.layers.0.%s.weight" % hf] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    kv, t = text_gguf(cfg, w, "model.")
    emb = blocks(V * H, 210, [208])
    gate = blocks(F * H, 144, [0, 2])
    up = blocks(F * H, 144, [0, 2])
    raw = {"token_embd.weight": (14, (V, H), emb.tobytes()),
           "blk.0.ffn_gate.weight": (12, (F, H), gate.tobytes()),
           "blk.0.ffn_up.weight": (12, (F, H), up.tobytes())}
    t = [(n, raw.get(n, a)) for n, a in t]
    write_gguf(os.path.join(out_dir, "text.gguf"), kv, t)
    ex = []
    for name, b, fn in (("text.token_embd", emb, q6k_value), ("text.blk.0.ffn_gate", gate, q4k_value),
                        ("text.blk.0.ffn_up", up, q4k_value)):
        n = b.size // (210 if fn is q6k_value else 144) * 256
        for e in list(range(0, 300, 7)) + list(rng.integers(0, n, 40)):
            ex.append([name, int(e), float(fn(b, int(e)))])
    json.dump({"checks": ex}, open(os.path.join(out_dir, "expect.json"), "w"))


def cmd_tokgguf(tok_path, out):
    """A one-layer gemma3 GGUF (zero weights) whose tokenizer is tokenizer.json
    recast the way llama.cpp stores a SentencePiece vocabulary: pieces,
    scores (0 for control, user-defined and byte pieces; minus the id for
    normal ones, the order of a SentencePiece BPE model) and token types."""
    tj = json.load(open(tok_path, encoding="utf-8"))
    vocab = tj["model"]["vocab"]
    n = max(max(vocab.values()), max(a["id"] for a in tj["added_tokens"])) + 1
    tokens = [None] * n
    for s, i in vocab.items():
        tokens[i] = s
    types = [1] * n
    unk = tj["model"].get("unk_token")
    for a in tj["added_tokens"]:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = (2 if a["content"] == unk else 3) if a["special"] else 4
    for i, s in enumerate(tokens):
        if types[i] == 1 and len(s) == 6 and s.startswith("<0x") and s.endswith(">"):
            types[i] = 6
    scores = [-float(i) if t == 1 else 0.0 for i, t in enumerate(types)]
    ids = {s: i for i, s in enumerate(tokens)}
    tok = [("tokenizer.ggml.model", T_STR, "llama"),
           ("tokenizer.ggml.tokens", (T_ARR, T_STR), tokens),
           ("tokenizer.ggml.scores", (T_ARR, T_F32), scores),
           ("tokenizer.ggml.token_type", (T_ARR, T_I32), types),
           ("tokenizer.ggml.bos_token_id", T_U32, ids["<bos>"]),
           ("tokenizer.ggml.eos_token_id", T_U32, ids["<eos>"]),
           ("tokenizer.ggml.unknown_token_id", T_U32, ids[unk]),
           ("tokenizer.ggml.padding_token_id", T_U32, ids["<pad>"])]
    H = 32
    cfg = {"max_position_embeddings": 64, "hidden_size": H, "num_hidden_layers": 1,
           "intermediate_size": H, "num_attention_heads": 1, "num_key_value_heads": 1,
           "head_dim": H, "sliding_window": 16}
    w = {"model.embed_tokens.weight": np.zeros((n, H), np.float16),
         "model.norm.weight": np.zeros(H, np.float32)}
    for hf, _ in TEXT_MAP:
        w["model.layers.0.%s.weight" % hf] = np.zeros(H if hf.endswith("norm") else (H, H),
                                                      np.float32)
    kv, t = text_gguf(cfg, w, "model.", tok)
    write_gguf(out, kv, t)


def cmd_f16(hf_dir, out):
    """hf_dir's weights as F16 safetensors, twice: out/exact holds values that
    bf16 represents exactly (rounded to bf16 first, as an f16 file converted
    from bf16 weights is), out/plain the values rounded to f16 alone."""
    t = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    for name in ("exact", "plain"):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(hf_dir, "config.json"), d)
        w = {}
        for k, a in t.items():
            a = np.asarray(a, dtype=np.float32)
            if name == "exact":  # round to nearest even bf16
                b = a.view(np.uint32).astype(np.uint64)
                b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16 << 16).astype(np.uint32)
                a = b.view(np.float32)
            w[k] = a
        write_safetensors(os.path.join(d, "model.safetensors"), w, "F16")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "f16":
        cmd_f16(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "kquant":
        cmd_kquant(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "tokgguf":
        cmd_tokgguf(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "gguf":
        cmd_gguf(sys.argv[2], sys.argv[3])
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "multimodal":
        opt = sys.argv[3] if len(sys.argv) == 4 else ""
        cmd_multimodal(sys.argv[2], opt == "--old-names", "BF16" if opt == "--bf16" else "F32")
    else:
        sys.exit(__doc__)
