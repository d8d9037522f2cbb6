#!/usr/bin/python3
"""make_hf_4b.py - a random-weight Hugging Face folder shaped like MedGemma 4B
(Gemma3ForConditionalGeneration: 34-layer Gemma 3 text decoder, 262208-row
embedding, 27-layer SigLIP So400m at 896 px, projector), bf16, in two
safetensors shards with model.safetensors.index.json, written streaming with
numpy (memory: one 64 MiB block), for the converter's memory measurement
(docs/CONVERT.md). Not run by the test suites.

    make_hf_4b.py OUT_DIR [--tokenizer tokenizer.json] [--text-layers N]

config.json lists only what MedGemma 4B's config.json lists; the rest comes
from transformers' defaults (as in the real file). The weights are a fixed
block of Gaussian bf16 values read at shifting offsets: cheap, and not
constant (zstd and quantization see realistic data).
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

BLOCK = 32 << 20  # bf16 values per random block (64 MiB)


def bf16_block(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(BLOCK + 4096, dtype=np.float32) * 0.02)
    return (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation is fine here


def tensors(text_layers):
    H, F, V, NH, KV, HD = 2560, 10240, 262208, 8, 4, 256
    VW, VF, VL, P, IMG = 1152, 4304, 27, 14, 896
    NP = (IMG // P) ** 2
    t = [("language_model.model.embed_tokens.weight", (V, H))]
    for i in range(text_layers):
        p = "language_model.model.layers.%d." % i
        t += [(p + "input_layernorm.weight", (H,)),
              (p + "self_attn.q_proj.weight", (NH * HD, H)),
              (p + "self_attn.k_proj.weight", (KV * HD, H)),
              (p + "self_attn.v_proj.weight", (KV * HD, H)),
              (p + "self_attn.q_norm.weight", (HD,)), (p + "self_attn.k_norm.weight", (HD,)),
              (p + "self_attn.o_proj.weight", (H, NH * HD)),
              (p + "post_attention_layernorm.weight", (H,)),
              (p + "pre_feedforward_layernorm.weight", (H,)),
              (p + "mlp.gate_proj.weight", (F, H)), (p + "mlp.up_proj.weight", (F, H)),
              (p + "mlp.down_proj.weight", (H, F)),
              (p + "post_feedforward_layernorm.weight", (H,))]
    t.append(("language_model.model.norm.weight", (H,)))
    v = "vision_tower.vision_model."
    t += [(v + "embeddings.patch_embedding.weight", (VW, 3, P, P)),
          (v + "embeddings.patch_embedding.bias", (VW,)),
          (v + "embeddings.position_embedding.weight", (NP, VW))]
    for i in range(VL):
        p = "%sencoder.layers.%d." % (v, i)
        for n in ("layer_norm1", "layer_norm2"):
            t += [(p + n + ".weight", (VW,)), (p + n + ".bias", (VW,))]
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t += [(p + "self_attn." + n + ".weight", (VW, VW)),
                  (p + "self_attn." + n + ".bias", (VW,))]
        t += [(p + "mlp.fc1.weight", (VF, VW)), (p + "mlp.fc1.bias", (VF,)),
              (p + "mlp.fc2.weight", (VW, VF)), (p + "mlp.fc2.bias", (VW,))]
    t += [(v + "post_layernorm.weight", (VW,)), (v + "post_layernorm.bias", (VW,)),
          ("multi_modal_projector.mm_soft_emb_norm.weight", (VW,)),
          ("multi_modal_projector.mm_input_projection_weight", (VW, H))]
    return t


def write_shard(path, items, block):
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in items:
        n = int(np.prod(shape)) * 2
        hdr[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(hdr).encode()
    h += b" " * ((-len(h)) % 8)
    pos = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape in items:
            left = int(np.prod(shape))
            while left:
                c = min(left, BLOCK)
                s = pos % 4096
                f.write(block[s:s + c].tobytes())
                left -= c
                pos += 7919
    return off


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tokenizer")
    ap.add_argument("--text-layers", type=int, default=34)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
           "eoi_token_index": 256000, "eos_token_id": [1, 106], "image_token_index": 262144,
           "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
           "text_config": {"attention_bias": False, "attention_dropout": 0.0,
                           "attn_logit_softcapping": None, "cache_implementation": "hybrid",
                           "final_logit_softcapping": None, "hidden_activation": "gelu_pytorch_tanh",
                           "hidden_size": 2560, "intermediate_size": 10240,
                           "model_type": "gemma3_text", "num_hidden_layers": a.text_layers,
                           "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                           "sliding_window": 1024},
           "torch_dtype": "bfloat16",
           "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                             "model_type": "siglip_vision_model", "num_attention_heads": 16,
                             "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False}}
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    json.dump({"image_seq_length": 256, "image_mean": [0.5, 0.5, 0.5],
               "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 1 / 255,
               "size": {"height": 896, "width": 896}},
              open(os.path.join(a.out, "preprocessor_config.json"), "w"))
    json.dump({"eos_token_id": [1, 106]}, open(os.path.join(a.out, "generation_config.json"), "w"))
    if a.tokenizer:
        shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    t = tensors(a.text_layers)
    half = len(t) // 2
    block = bf16_block(1)
    wm, total = {}, 0
    for k, items in enumerate((t[:half], t[half:])):
        fn = "model-%05d-of-00002.safetensors" % (k + 1)
        total += write_shard(os.path.join(a.out, fn), items, block)
        wm.update({n: fn for n, _ in items})
    json.dump({"metadata": {"total_size": total}, "weight_map": wm},
              open(os.path.join(a.out, "model.safetensors.index.json"), "w"), indent=1)
    print("wrote %s: %d tensors, %.2f GB of bf16" % (a.out, len(t), total / 1e9))


if __name__ == "__main__":
    main()
