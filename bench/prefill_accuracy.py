#!/usr/bin/python3
"""prefill_accuracy.py - what the 8-bit activations of the integer prefill
product cost: prompt logits of a q8_0/q4_0 model computed twice through the
library, once with MG_SIMD=avx2 (weights dequantized, f32 activations, sgemm)
and once at the CPU's own level (AVX512-VNNI: activations rounded to 8 bits
per 32-element block, as the decode matvec always did), compared the way
`medgemini convert --eval` compares a conversion with its lossless source:
top-1 agreement and KL(f32-activation || 8-bit-activation) per position.

    /usr/bin/python3 bench/prefill_accuracy.py MODEL.mgm [N_PROMPTS]
    /usr/bin/python3 bench/prefill_accuracy.py --kv-bf16 MODEL.mgm [N_PROMPTS]

With --kv-bf16 it measures the bf16 KV cache instead (MG_CONTEXT_KV_BF16):
the same prompts at the CPU's own level with an f32 cache and with a bf16
cache, KL(f32 cache || bf16 cache).

Prompts: the first N (default 50) test-split reports of the IU X-ray
annotation (R2Gen split) in ../shared/data, each as one prompt with BOS.
Needs the shared library built (MG_LIB, default lib/libmedgemini.so) and
numpy. Not run in CI; docs/PERFORMANCE.md quotes it.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.environ.get("MG_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))


def prompts(n):
    ann = json.load(open(os.path.join(DATA, "iu_xray", "r2gen", "annotation.json")))
    return [r["report"] for r in ann["test"][:n]]


def child(model, n, out, kv_bf16=False):
    """Writes the logits of every prompt position as float32, in order."""
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import medgemini as mg
    m = mg.Model.load(model)
    with open(out, "wb") as f:
        for text in prompts(n):
            ids = m.tokenize(text, bos=True)
            ctx = m.context(n_ctx=len(ids), kv_bf16=kv_bf16)
            f.write(ctx.eval(ids).astype("<f4").tobytes())
            ctx.close()
    m.close()


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:] == ["kv"])
        return
    args = sys.argv[1:]
    kv = bool(args) and args[0] == "--kv-bf16"
    if kv:
        args = args[1:]
    if not args:
        sys.exit(__doc__)
    import numpy as np
    model = args[0]
    n = int(args[1]) if len(args) > 1 else 50
    tmp = tempfile.mkdtemp()
    outs = {}
    runs = ((("f32", None, []), ("int8", None, ["kv"])) if kv
            else (("f32", "avx2", []), ("int8", None, [])))
    for name, simd, extra in runs:
        env = dict(os.environ)
        env.pop("MG_SIMD", None)
        if simd:
            env["MG_SIMD"] = simd
        env.setdefault("MG_LIB", os.path.join(ROOT, "lib", "libmedgemini.so"))
        outs[name] = os.path.join(tmp, name + ".f32")
        subprocess.run([sys.executable, __file__, "--child", model, str(n), outs[name]] + extra,
                       env=env, check=True)
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import medgemini as mg
    m = mg.Model.load(model)
    V = m.info.n_vocab
    m.close()
    a = np.fromfile(outs["f32"], dtype="<f4").reshape(-1, V).astype(np.float64)
    b = np.fromfile(outs["int8"], dtype="<f4").reshape(-1, V).astype(np.float64)
    for p in outs.values():
        os.unlink(p)
    os.rmdir(tmp)
    if a.shape != b.shape:
        sys.exit("logit shapes differ")

    def logsoftmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    la, lb = logsoftmax(a), logsoftmax(b)
    kl = (np.exp(la) * (la - lb)).sum(axis=1)
    agree = (a.argmax(axis=1) == b.argmax(axis=1)).mean()
    rel = np.abs(a - b).max(axis=1) / a.std(axis=1)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    what = "KL(f32 cache || bf16 cache)" if kv else "KL(f32-x || 8-bit-x)"
    print("%s on %s: %d prompts, %d positions: top-1 agreement %.4f, "
          "%s mean %.3g max %.3g nats, max |dlogit|/std mean %.3g"
          % (os.path.basename(model), cpu, n, a.shape[0], agree, what, kl.mean(), kl.max(),
             rel.mean()))


if __name__ == "__main__":
    main()
