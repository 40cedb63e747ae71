"""Affinity-label thresholds without a background class: precision and coverage over a (t, m) grid.

    .venv/bin/python benchmarks/affinity_thresholds.py runs/bench_synthetic_none

Reads a finished run's CAMs (e.g. from `benchmarks/cam_pipeline.py synthetic`) and, for every min_score t
and min_margin m, labels each training image as ``affinity_labels`` does (top class where its score is at
least t and beats the second by at least m, ignore elsewhere). Precision is the share of labelled pixels
that agree with the mask, coverage the labelled share, both over multi-tag images only (a single-tag image
is trivially right). The masks are read here for measuring only. Writes
benchmarks/results/affinity_thresholds_<run>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.refine import load_cams
from lesseg.refine.affinity_labels import affinity_labels

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--scores", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3])
    args = parser.parse_args()
    if not (args.run / "cams").is_dir():
        print(f"{args.run}/cams not found: run benchmarks/cam_pipeline.py synthetic first (exiting)")
        return 0
    cfg = load_config(args.run / "config.yaml")
    source = read_dataset(cfg.data.root)
    if source.classes.background is not None:
        print("this dataset has a background class: its affinity labels use fg/bg thresholds instead")
        return 0
    pairs = []
    for r in source.split(cfg.data.train_split):
        res = load_cams(args.run / "cams" / f"{r.id}.npz")
        if len(res.classes) >= 2 and r.mask is not None:
            pairs.append((res, source.load_mask(r)))
    rows = []
    print("| min_score t | min_margin m | precision | coverage |\n|---|---|---|---|")
    for t in args.scores:
        for m in args.margins:
            right = labelled = total = 0
            for res, gt in pairs:
                label = affinity_labels(res, source.classes, min_score=t, min_margin=m)
                known = (label != source.classes.ignore_index) & (gt != source.classes.ignore_index)
                right += int((label[known] == gt[known]).sum())
                labelled += int(known.sum())
                total += int((gt != source.classes.ignore_index).sum())
            rows.append({"min_score": t, "min_margin": m, "precision": right / max(1, labelled),
                         "coverage": labelled / max(1, total)})  # fmt: skip
            print(f"| {t} | {m} | {rows[-1]['precision']:.3f} | {rows[-1]['coverage']:.3f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"affinity_thresholds_{args.run.name}.json"
    out.write_text(json.dumps({"run": str(args.run), "images": len(pairs), "rows": rows}, indent=1) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
