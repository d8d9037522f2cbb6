"""model.py - the demo model in PyTorch: a SigLIP-style image encoder, the
Gemma 3 multimodal projector and a Gemma 3 text decoder (sliding and global
layers, grouped-query attention, q/k norms, GeGLU), written from the Hugging
Face transformers semantics that the library implements (docs/VISION.md,
docs/MODEL_KEYS.md). Parameter names are those of a Hugging Face
Gemma3ForConditionalGeneration checkpoint, so `export_hf` writes a folder that
`medgemini convert` reads the way it reads Google's MedGemma.

The same module is the reference of the parity check (parity.py): it runs in
float32 or float64 on the weights read back from the exported checkpoint.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    """Shapes of the demo model (names as in the Hugging Face config)."""

    def __init__(self, **kw):
        # text decoder
        self.vocab_size = 0
        self.hidden_size = 256
        self.intermediate_size = 768
        self.num_hidden_layers = 6
        self.num_attention_heads = 4
        self.num_key_value_heads = 2
        self.head_dim = 64
        self.sliding_window = 32
        self.sliding_window_pattern = 3   # every 3rd layer is global
        self.query_pre_attn_scalar = 64
        self.rope_theta = 1e6
        self.rope_local_base_freq = 1e4
        self.rms_norm_eps = 1e-6
        self.max_position_embeddings = 2048
        # image encoder and projector
        self.image_size = 224
        self.patch_size = 14
        self.v_hidden = 192
        self.v_intermediate = 768
        self.v_layers = 6
        self.v_heads = 3
        self.v_eps = 1e-6
        self.mm_tokens_per_image = 16
        # special ids (of the pruned vocabulary)
        self.boi_id = -1
        self.eoi_id = -1
        self.image_id = -1
        self.dropout = 0.0
        for k, v in kw.items():
            if not hasattr(self, k):
                raise KeyError(k)
            setattr(self, k, v)

    def to_dict(self):
        return dict(self.__dict__)

    def is_global(self, layer):
        return (layer + 1) % self.sliding_window_pattern == 0

    @property
    def grid(self):
        return self.image_size // self.patch_size

    @property
    def pool(self):
        return self.grid // int(round(math.sqrt(self.mm_tokens_per_image)))


def gelu_tanh(x):
    # in float32: PyTorch's bfloat16 GELU kernels are several times slower
    # on the CPU than the float32 ones (training runs under bf16 autocast)
    if x.dtype == torch.bfloat16:
        return F.gelu(x.float(), approximate="tanh").to(torch.bfloat16)
    return F.gelu(x, approximate="tanh")


class GemmaRMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * (1 + w), computed in the input dtype."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1.0 + self.weight)


# ----------------------------------------------------------------- vision

class VisionAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = c.v_hidden
        self.h = c.v_heads
        self.q_proj = nn.Linear(w, w)
        self.k_proj = nn.Linear(w, w)
        self.v_proj = nn.Linear(w, w)
        self.out_proj = nn.Linear(w, w)

    def forward(self, x):
        b, n, w = x.shape
        d = w // self.h
        q = self.q_proj(x).view(b, n, self.h, d).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.h, d).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.h, d).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1)
        return self.out_proj((a @ v).transpose(1, 2).reshape(b, n, w))


class VisionMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c.v_hidden, c.v_intermediate)
        self.fc2 = nn.Linear(c.v_intermediate, c.v_hidden)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c.v_hidden, eps=c.v_eps)
        self.self_attn = VisionAttention(c)
        self.layer_norm2 = nn.LayerNorm(c.v_hidden, eps=c.v_eps)
        self.mlp = VisionMLP(c)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x):
        x = x + self.drop(self.self_attn(self.layer_norm1(x)))
        return x + self.drop(self.mlp(self.layer_norm2(x)))


class VisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, c.v_hidden, c.patch_size, stride=c.patch_size)
        self.position_embedding = nn.Embedding(c.grid * c.grid, c.v_hidden)

    def forward(self, px):
        x = self.patch_embedding(px).flatten(2).transpose(1, 2)  # row-major patches
        return x + self.position_embedding.weight[None]


class VisionEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(c) for _ in range(c.v_layers))


class VisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = VisionEmbeddings(c)
        self.encoder = VisionEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.v_hidden, eps=c.v_eps)

    def forward(self, px):
        x = self.embeddings(px)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


class VisionTower(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = VisionModel(c)


class Projector(nn.Module):
    """Gemma3MultiModalProjector: k x k average pooling of the patch grid,
    Gemma RMSNorm with the vision eps, then x @ W."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.mm_input_projection_weight = nn.Parameter(torch.empty(c.v_hidden, c.hidden_size))
        self.mm_soft_emb_norm = GemmaRMSNorm(c.v_hidden, c.v_eps)

    def forward(self, x):
        b, n, w = x.shape
        g = self.c.grid
        x = x.transpose(1, 2).reshape(b, w, g, g)
        x = F.avg_pool2d(x, self.c.pool, self.c.pool).flatten(2).transpose(1, 2)
        return self.mm_soft_emb_norm(x) @ self.mm_input_projection_weight


# ----------------------------------------------------------------- text

def rope_tables(n, dim, base, dtype):
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    f = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    e = torch.cat((f, f), dim=-1)
    return e.cos().to(dtype), e.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class TextAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h, d = c.hidden_size, c.head_dim
        self.q_proj = nn.Linear(h, c.num_attention_heads * d, bias=False)
        self.k_proj = nn.Linear(h, c.num_key_value_heads * d, bias=False)
        self.v_proj = nn.Linear(h, c.num_key_value_heads * d, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * d, h, bias=False)
        self.q_norm = GemmaRMSNorm(d, c.rms_norm_eps)
        self.k_norm = GemmaRMSNorm(d, c.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        c = self.c
        b, t, _ = x.shape
        d, nh, nkv = c.head_dim, c.num_attention_heads, c.num_key_value_heads
        q = self.q_norm(self.q_proj(x).view(b, t, nh, d)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, t, nkv, d)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, nkv, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) * c.query_pre_attn_scalar ** -0.5
        s = s.masked_fill(~mask[:, None], float("-inf"))
        a = torch.softmax(s, dim=-1)
        return self.o_proj((a @ v).transpose(1, 2).reshape(b, t, nh * d))


class TextMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(gelu_tanh(self.gate_proj(x)) * self.up_proj(x))


class TextLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        e = c.rms_norm_eps
        self.input_layernorm = GemmaRMSNorm(c.hidden_size, e)
        self.self_attn = TextAttention(c)
        self.post_attention_layernorm = GemmaRMSNorm(c.hidden_size, e)
        self.pre_feedforward_layernorm = GemmaRMSNorm(c.hidden_size, e)
        self.mlp = TextMLP(c)
        self.post_feedforward_layernorm = GemmaRMSNorm(c.hidden_size, e)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, cos, sin, mask):
        x = x + self.drop(self.post_attention_layernorm(
            self.self_attn(self.input_layernorm(x), cos, sin, mask)))
        return x + self.drop(self.post_feedforward_layernorm(
            self.mlp(self.pre_feedforward_layernorm(x))))


class LanguageModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(TextLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = GemmaRMSNorm(c.hidden_size, c.rms_norm_eps)


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.language_model = LanguageModel(c)
        self.vision_tower = VisionTower(c)
        self.multi_modal_projector = Projector(c)


def build_masks(n, blocks, window):
    """Boolean [B, T, T] masks (True = may attend) for global and sliding
    layers. blocks: [B, T] int, 0 for text, k > 0 for the k-th image's
    tokens; tokens of one image attend to each other both ways (OR-ed with
    the causal / sliding mask, as transformers' token_type_ids mask)."""
    q = torch.arange(n)[:, None]
    kv = torch.arange(n)[None, :]
    causal = (kv <= q)[None]
    sliding = causal & (kv > q - window)[None]
    same = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] > 0)
    return causal | same, sliding | same


class DemoModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.reset_parameters()

    def reset_parameters(self, std=0.02, seed=1234):
        """Normal(0, std) matrices and embeddings, zero biases, LayerNorm
        weights 1, Gemma RMSNorm weights 0 (a scale of 1 + w = 1)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, GemmaRMSNorm):
                    m.weight.zero_()
                elif isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                elif isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
                    m.weight.normal_(0.0, std, generator=g)
                    if getattr(m, "bias", None) is not None:
                        m.bias.zero_()
            p = self.model.multi_modal_projector.mm_input_projection_weight
            p.normal_(0.0, std, generator=g)

    # image tokens: [n_images, mm_tokens, hidden]
    def encode_images(self, px):
        x = self.model.vision_tower.vision_model(px)
        return self.model.multi_modal_projector(x)

    def hidden(self, ids, blocks, img_emb=None):
        """ids, blocks: [B, T]; img_emb: rows for the positions where
        blocks > 0, in row-major order. Returns the final normed hidden
        states [B, T, H]."""
        c = self.c
        lm = self.model.language_model
        b, t = ids.shape
        w = lm.embed_tokens.weight
        x = lm.embed_tokens(ids) * torch.tensor(math.sqrt(c.hidden_size), dtype=w.dtype)
        if img_emb is not None:
            sel = blocks > 0
            x = x.masked_scatter(sel[..., None], img_emb.to(x.dtype))
        gmask, smask = build_masks(t, blocks, c.sliding_window)
        cos_g, sin_g = rope_tables(t, c.head_dim, c.rope_theta, x.dtype)
        cos_l, sin_l = rope_tables(t, c.head_dim, c.rope_local_base_freq, x.dtype)
        for i, layer in enumerate(lm.layers):
            if c.is_global(i):
                x = layer(x, cos_g, sin_g, gmask)
            else:
                x = layer(x, cos_l, sin_l, smask)
        return lm.norm(x)

    def logits(self, h):
        return h @ self.model.language_model.embed_tokens.weight.t()


# ----------------------------------------------------------------- files

_ST_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (None, 2)}


def to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u >> 16) & 1) + 0x7FFF
    return ((u + r) >> 16).astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def save_safetensors(path, tensors, dtype="BF16", metadata=None):
    """tensors: name -> float32 numpy array. Written sorted by name."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "BF16":
            raw = to_bf16_bits(a).tobytes()
        elif dtype == "F32":
            raw = a.tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype=np.uint16 if e["dtype"] in ("BF16", "F16") else np.float32)
        if e["dtype"] == "BF16":
            arr = from_bf16_bits(raw)
        elif e["dtype"] == "F16":
            arr = raw.view(np.float16).astype(np.float32)
        else:
            arr = raw.astype(np.float32)
        out[name] = arr.reshape(e["shape"])
    del base
    return out


def hf_config(c):
    """config.json of a Gemma3ForConditionalGeneration with these shapes."""
    layer_types = ["full_attention" if c.is_global(i) else "sliding_attention"
                   for i in range(c.num_hidden_layers)]
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "boi_token_index": c.boi_id,
        "eoi_token_index": c.eoi_id,
        "image_token_index": c.image_id,
        "mm_tokens_per_image": c.mm_tokens_per_image,
        "text_config": {
            "model_type": "gemma3_text",
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads,
            "head_dim": c.head_dim,
            "max_position_embeddings": c.max_position_embeddings,
            "sliding_window": c.sliding_window,
            "sliding_window_pattern": c.sliding_window_pattern,
            "layer_types": layer_types,
            "query_pre_attn_scalar": c.query_pre_attn_scalar,
            "rope_theta": c.rope_theta,
            "rope_local_base_freq": c.rope_local_base_freq,
            "rope_scaling": None,
            "rms_norm_eps": c.rms_norm_eps,
            "hidden_activation": "gelu_pytorch_tanh",
            "attn_logit_softcapping": None,
            "final_logit_softcapping": None,
            "attention_bias": False,
            "tie_word_embeddings": True,
        },
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": c.v_hidden,
            "intermediate_size": c.v_intermediate,
            "num_hidden_layers": c.v_layers,
            "num_attention_heads": c.v_heads,
            "num_channels": 3,
            "image_size": c.image_size,
            "patch_size": c.patch_size,
            "layer_norm_eps": c.v_eps,
            "vision_use_head": False,
        },
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }


def config_from_hf(j):
    t, v = j["text_config"], j["vision_config"]
    return Config(
        vocab_size=t["vocab_size"], hidden_size=t["hidden_size"],
        intermediate_size=t["intermediate_size"], num_hidden_layers=t["num_hidden_layers"],
        num_attention_heads=t["num_attention_heads"], num_key_value_heads=t["num_key_value_heads"],
        head_dim=t["head_dim"], sliding_window=t["sliding_window"],
        sliding_window_pattern=t["sliding_window_pattern"],
        query_pre_attn_scalar=t["query_pre_attn_scalar"], rope_theta=t["rope_theta"],
        rope_local_base_freq=t["rope_local_base_freq"], rms_norm_eps=t["rms_norm_eps"],
        max_position_embeddings=t["max_position_embeddings"],
        image_size=v["image_size"], patch_size=v["patch_size"], v_hidden=v["hidden_size"],
        v_intermediate=v["intermediate_size"], v_layers=v["num_hidden_layers"],
        v_heads=v["num_attention_heads"], v_eps=v["layer_norm_eps"],
        mm_tokens_per_image=j["mm_tokens_per_image"], boi_id=j["boi_token_index"],
        eoi_id=j["eoi_token_index"], image_id=j["image_token_index"])


def state_to_numpy(model):
    return {k: v.detach().to(torch.float32).cpu().numpy() for k, v in model.state_dict().items()}


def load_checkpoint(folder, dtype=torch.float32):
    """A DemoModel from an exported folder (config.json + model.safetensors)."""
    with open(os.path.join(folder, "config.json")) as f:
        c = config_from_hf(json.load(f))
    m = DemoModel(c)
    w = load_safetensors(os.path.join(folder, "model.safetensors"))
    sd = {k: torch.from_numpy(np.array(v)) for k, v in w.items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError("checkpoint mismatch: missing %s, unexpected %s" % (missing, unexpected))
    return m.to(dtype).eval()
