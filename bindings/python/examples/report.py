#!/usr/bin/env python3
"""Writes a report for a study, or answers a question about it, streaming
the text as it is generated. Ctrl-C stops the generation cleanly.

    report.py MODEL.mgm IMAGE [IMAGE...] [-q QUESTION] [-n MAX_TOKENS]
"""
import argparse
import sys

import medgemini


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("images", nargs="+", help="JPEG, PNG or DICOM files of one study")
    ap.add_argument("-q", "--question", help="answer this question instead of writing a report")
    ap.add_argument("-n", "--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    try:
        with medgemini.Model.load(a.model, threads=a.threads) as model:
            images = [medgemini.Image.open(p) for p in a.images]
            params = dict(max_tokens=a.max_tokens, temperature=a.temperature, seed=a.seed)
            if a.question:
                stream = model.vqa_stream(images, a.question, **params)
            else:
                stream = model.report_stream(images, **params)
            try:
                for piece in stream:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                stream.close()          # interrupts the generation
                sys.stdout.write("\n[stopped]")
            sys.stdout.write("\n")
            for img in images:
                img.close()
    except medgemini.MedGeminiError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
