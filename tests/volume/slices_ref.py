#!/usr/bin/python3
"""Reference for the slices a model reads from a volume and for the prompt
that holds them (docs/VOLUME.md, "Slices for the model"), written from the
recipe with numpy and PIL, independently of the library: MedGemma 1.5's CT
notebook (at most 85 slices, slice round(i / 85 * (n - 1)) for i = 1..85;
the windows -1024..1024, -135..215 and 0..80 HU into R, G, B, each clipped,
scaled in float32 and rounded) and Hugging Face's Gemma 3 chat template and
processor (text items trimmed and joined; each image written as
"\\n\\n<start_of_image>" + image tokens + "<end_of_image>\\n\\n").

usage:
  slices_ref.py slices PREFIX OUTDIR [--slices N] [--window auto|ct|minmax]
                [--as-stored] [--modality M]
      PREFIX.f32 / PREFIX.txt: a volume as tests/volume/reference.py writes it
      (pydicom or nibabel; voxels x fastest, affine voxel -> LPS+ mm).
      Writes OUTDIR/slice_001.ppm ... (RGB, PIL) and OUTDIR/z.txt (the z
      index of each slice, one a line).
  slices_ref.py prompt N TOKENS IMAGE_TOKEN BOI EOI PREAMBLE TEXT [--system S]
      Prints the user turn HF builds for [PREAMBLE, image, "SLICE 1", ...,
      image, "SLICE N", TEXT] with TOKENS image tokens per image, written as
      the texts IMAGE_TOKEN, BOI and EOI.
"""
import os
import sys

import numpy as np
from PIL import Image

WINDOWS = [(-1024, 1024), (-135, 215), (0, 80)]


def read_volume(prefix):
    """A volume as tests/volume/reference.py writes it: (z, y, x) voxels, affine."""
    from reference import _read_expect  # pydicom / nibabel not needed for "prompt"
    return _read_expect(prefix)


def dominant(aff, col):
    """(patient axis 0/1/2 = x/y/z, sign) the voxel axis col points to most."""
    v = aff[:3, col]
    a = int(np.argmax(np.abs(v)))  # first of equal magnitudes, as x >= y >= z
    return a, (-1 if v[a] < 0 else 1)


def display(vol, aff, as_stored):
    """The volume as [slice][row][column] in the radiological view: columns
    towards the patient's left (or posterior for sagittal slices), rows
    towards posterior or the feet, slices towards superior, left or
    posterior."""
    if as_stored:
        return vol
    (d0, s0), (d1, s1), (_, s2) = dominant(aff, 0), dominant(aff, 1), dominant(aff, 2)
    h = 1 if d1 < d0 else 0          # the in-plane axis shown horizontally
    dh, sh = (d1, s1) if h else (d0, s0)
    dv, sv = (d0, s0) if h else (d1, s1)
    v = vol                          # axes (z, y, x)
    if h == 1:                       # columns along y, rows along x
        v = v.transpose(0, 2, 1)
    flip_cols = sh > 0 if dh == 2 else sh < 0
    flip_rows = sv > 0 if dv == 2 else sv < 0
    if flip_cols:
        v = v[:, :, ::-1]
    if flip_rows:
        v = v[:, ::-1, :]
    if s2 < 0:
        v = v[::-1, :, :]
    return v


def stored_z(aff, as_stored, nz, s):
    if as_stored:
        return s
    return nz - 1 - s if dominant(aff, 2)[1] < 0 else s


def select(n, max_slices):
    """The notebook's rule (Python's round: half to even)."""
    if n <= max_slices:
        return list(range(n))
    return [int(round(i / max_slices * (n - 1))) for i in range(1, max_slices + 1)]


def ct_rgb(sl):
    chans = []
    for lo, hi in WINDOWS:
        v = np.clip(sl, lo, hi).astype(np.float32)
        v -= lo
        v /= (hi - lo)
        v = v * 255.0
        chans.append(np.round(v, 0))
    out = np.stack(chans, axis=-1)
    out[~np.isfinite(sl)] = 0  # non-finite voxels (also infinities) become 0
    return out.astype(np.uint8)


def minmax_rgb(sl, lo, hi):
    x = sl.astype(np.float64)
    if not hi - lo > 0:
        g = np.full(x.shape, 255.0)
    else:
        g = np.round((x - lo) / (hi - lo) * 255.0)
    g[~np.isfinite(x)] = 0
    g = g.astype(np.uint8)
    return np.stack([g, g, g], axis=-1)


def cmd_slices(prefix, outdir, max_slices=85, window="auto", as_stored=False, modality=""):
    vol, aff = read_volume(prefix)
    finite = vol[np.isfinite(vol)]
    lo = float(finite.min()) if finite.size else float("nan")
    hi = float(finite.max()) if finite.size else float("nan")
    if window == "auto":
        if modality:
            window = "ct" if modality == "CT" else "minmax"
        else:
            window = "ct" if lo <= -500 else "minmax"
    d = display(vol, aff, as_stored)
    os.makedirs(outdir, exist_ok=True)
    idx = select(d.shape[0], max_slices)
    with open(os.path.join(outdir, "z.txt"), "w") as f:
        for i, s in enumerate(idx, 1):
            sl = d[s]
            rgb = ct_rgb(sl) if window == "ct" else minmax_rgb(sl, lo, hi)
            Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(
                os.path.join(outdir, "slice_%03d.ppm" % i))
            f.write("%d\n" % stored_z(aff, as_stored, vol.shape[0], s))
    return 0


def cmd_prompt(n, tokens, image_token, boi, eoi, preamble, text, system=""):
    # The chat template: each text item trimmed, items joined as they are;
    # an image item is "<start_of_image>", which the processor expands.
    items = [preamble.strip()]
    for i in range(1, n + 1):
        items.append(boi)
        items.append(("SLICE %d" % i).strip())
    items.append(text.strip())
    body = "".join(items)
    body = body.replace(boi, "\n\n" + boi + image_token * tokens + eoi + "\n\n")
    head = "<start_of_turn>user\n" + (system + "\n\n" if system else "")
    sys.stdout.write(head + body + "<end_of_turn>\n<start_of_turn>model\n")
    return 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "slices":
        kw = {}
        rest = argv[3:]
        i = 0
        while i < len(rest):
            a = rest[i]
            if a == "--slices":
                kw["max_slices"] = int(rest[i + 1]); i += 2
            elif a == "--window":
                kw["window"] = rest[i + 1]; i += 2
            elif a == "--modality":
                kw["modality"] = rest[i + 1]; i += 2
            elif a == "--as-stored":
                kw["as_stored"] = True; i += 1
            else:
                sys.exit("slices_ref.py: unknown option " + a)
        return cmd_slices(argv[1], argv[2], **kw)
    if len(argv) >= 8 and argv[0] == "prompt":
        system = argv[9] if len(argv) >= 10 and argv[8] == "--system" else ""
        return cmd_prompt(int(argv[1]), int(argv[2]), argv[3], argv[4], argv[5], argv[6],
                          argv[7], system)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
