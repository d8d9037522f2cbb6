"""vqarad.py - VQA-RAD (CC0; Lau et al., Scientific Data 5:180251, 2018) as
the demo model's training and test data: question/answer records, the
structured study summaries the "report" instruction is trained on, prompts
laid out exactly as the library lays them out (src/tasks/tasks.c), and the
image pipeline (the library's preprocessing, plus augmentation).

Only the training split feeds training: summaries are composed from the
training questions' annotations, never from test questions.
"""
import json
import os
import re
from collections import defaultdict

import numpy as np
from PIL import Image

REPORT_INSTRUCTION = "Summarize this study."
TURN_USER = "<start_of_turn>user\n"
TURN_END = "<end_of_turn>\n"
TURN_MODEL = "<start_of_turn>model\n"
BOI = "<start_of_image>"
EOI = "<end_of_image>"

REGION = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}


def norm_answer(a):
    """The scoring normalization: trimmed, lower case, inner whitespace
    collapsed."""
    return " ".join(str(a).strip().lower().split())


def load(root):
    """(train, test): lists of dicts with image, organ, question, answer,
    closed (bool), qtype, phrase."""
    def rd(name):
        with open(os.path.join(root, name)) as f:
            recs = json.load(f)
        out = []
        for r in recs:
            out.append({
                "qid": r["qid"], "image": r["image_name"], "organ": r["image_organ"],
                "question": " ".join(str(r["question"]).split()),
                "answer": norm_answer(r["answer"]),
                "closed": str(r["answer_type"]).strip().upper() == "CLOSED",
                "qtype": str(r["question_type"]), "phrase": r["phrase_type"]})
        return out
    return rd("trainset.json"), rd("testset.json")


def prompt_text(text):
    """The user turn up to the image block and the rest, as tasks.c writes
    them for one image and no system prompt: BOS is added by the tokenizer
    and the image tokens go between BOI and EOI."""
    head = TURN_USER + text.strip() + "\n\n" + BOI
    tail = EOI + "\n\n" + TURN_END + TURN_MODEL
    return head, tail


# ------------------------------------------------------- study summaries

_MODALITY_RULES = [
    ("ultrasound", r"\b(ultrasound|sonogra\w*|us)\b"),
    ("MRI", r"\b(mri?|flair|t1|t2|dwi|adc|diffusion|mr[a-z]*)\b|t1-|t2-"),
    ("CT", r"\b(ct|cta|computed tomography)\b"),
    ("X-ray", r"\b(x-?ray|x ray|xray|cxr|radiograph\w*|plain film|film)\b"),
]

_PLANE_RULES = [
    ("axial", r"\b(axial|transverse)\b"),
    ("coronal", r"\bcoronal\b"),
    ("sagittal", r"\bsagittal\b"),
    ("PA", r"\b(pa|posteroanterior|postero-anterior|posterior-anterior)\b"),
    ("AP", r"\b(ap|anteroposterior|antero-posterior|anterior posterior|anterior-posterior)\b"),
    ("lateral", r"\blateral (film|view|image|radiograph)\b|^lateral$"),
]


def _classify(text, rules):
    t = text.lower()
    for name, rx in rules:
        if re.search(rx, t):
            return name
    return None


_PRES_RX = re.compile(
    r"^(?:is|are)(?:/are)? there (?:any |evidence of |signs? of |a |an )*(.+?)\??$", re.I)


def _finding(question):
    """'Is there a pneumothorax?' -> 'pneumothorax'; None when the
    question is not that simple."""
    m = _PRES_RX.match(question.strip())
    if not m:
        return None
    f = m.group(1).strip().rstrip("?. ")
    f = re.sub(r"^(a|an|any|the) ", "", f, flags=re.I)
    if not f or len(f.split()) > 6 or re.search(r"\b(this|image|picture|shown|seen|see)\b", f, re.I):
        return None
    return f.lower()


def summaries(train):
    """image -> summary text composed from the training annotations of that
    image: region (image_organ), modality and plane (from MODALITY / PLANE
    questions), abnormalities named in open answers, and findings asked
    about with yes/no answers."""
    by_img = defaultdict(list)
    for r in train:
        by_img[r["image"]].append(r)
    out = {}
    for img, recs in sorted(by_img.items()):
        region = REGION.get(recs[0]["organ"], recs[0]["organ"].lower())
        modality = plane = None
        present, absent, abnormal = [], [], []
        for r in recs:
            qt = r["qtype"].upper()
            q, a = r["question"], r["answer"]
            if "MODALITY" in qt and modality is None:
                if not r["closed"]:
                    modality = _classify(a, _MODALITY_RULES)
                elif a == "yes":
                    modality = _classify(q, _MODALITY_RULES)
            if "PLANE" in qt and plane is None:
                if not r["closed"]:
                    plane = _classify(a, _PLANE_RULES)
                elif a == "yes":
                    plane = _classify(q, _PLANE_RULES)
            if not r["closed"] and ("ABN" in qt or "PRES" in qt) and a not in ("yes", "no"):
                if re.match(r"^(what|which) .*(abnormal|lesion|finding|patholog|wrong)", q, re.I):
                    if a not in abnormal and len(a.split()) <= 8:
                        abnormal.append(a)
            if r["closed"] and ("PRES" in qt or "ABN" in qt) and a in ("yes", "no"):
                f = _finding(q)
                if f:
                    (present if a == "yes" else absent).append(f)
        if modality is None:  # "... on this CT?", "Is this MRI ...", "this chest x-ray"
            for r in recs:
                m = re.search(r"\bthis (?:\w+ ){0,2}?(ct|cta|mri?|x-?ray|xray|radiograph|film|"
                              r"ultrasound|flair|t1|t2)\b", r["question"], re.I)
                if m and not (r["closed"] and r["answer"] == "no" and r["question"].lower().startswith("is this")):
                    modality = _classify(m.group(1), _MODALITY_RULES)
                    if modality:
                        break
        if modality is None and plane in ("PA", "AP", "lateral"):
            modality = "X-ray"
        head = region.capitalize()
        if modality:
            head += " " + modality
        else:
            head += " image"
        if plane:
            head += ", " + plane + (" view" if plane in ("PA", "AP", "lateral") else " plane")
        lines = [head + "."]
        seen = set()
        pos = [x for x in abnormal + present if not (x in seen or seen.add(x))]
        neg = [x for x in absent if not (x in seen or seen.add(x))]
        if pos:
            lines.append("Findings: " + "; ".join(pos[:4]) + ".")
        if neg:
            lines.append("No " + "; no ".join(neg[:4]) + ".")
        if not pos and not neg:
            lines.append("No findings recorded.")
        out[img] = " ".join(lines)
    return out


# ------------------------------------------------------------------ images

def library_pixels(img, size, mean=0.5, std=0.5, rescale=1.0 / 255.0):
    """What the library feeds the encoder (docs/VISION.md): RGB, PIL bilinear
    resize with reducing_gap=None, float32(v * rescale) with the product in
    double, then (x - mean) / std in float32. Returns [3, size, size]."""
    rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return normalize(np.asarray(rgb, dtype=np.uint8), mean, std, rescale)


def normalize(u8, mean=0.5, std=0.5, rescale=1.0 / 255.0):
    x = (u8.astype(np.float64) * rescale).astype(np.float32)
    x = (x - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def augment(img, size, rng):
    """A random view of img (PIL RGB): a crop of 70-100 % of the area with
    aspect 0.85-1.18, a rotation of up to 8 degrees, brightness and contrast
    jitter of up to 15 %. No flips: left and right are answers here."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.70, 1.0)
        ar = np.exp(rng.uniform(np.log(0.85), np.log(1.18)))
        cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
        if cw <= w and ch <= h:
            break
    else:
        cw, ch = w, h
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    view = img.crop((x0, y0, x0 + cw, y0 + ch))
    ang = rng.uniform(-8, 8)
    if abs(ang) > 0.5:
        view = view.rotate(ang, resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    view = view.resize((size, size), Image.BILINEAR, reducing_gap=None)
    a = np.asarray(view, dtype=np.float32)
    c = rng.uniform(0.85, 1.15)
    b = rng.uniform(-0.15, 0.15) * 255
    m = a.mean()
    a = np.clip((a - m) * c + m + b, 0, 255).round().astype(np.uint8)
    return normalize(a)
