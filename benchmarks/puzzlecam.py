"""The CAM baseline against Puzzle-CAM, everything else equal (issue 6).

    .venv/bin/python benchmarks/puzzlecam.py synthetic [--seeds 0 1 2] [KEY=VALUE ...]
    .venv/bin/python benchmarks/puzzlecam.py msrc21 [--data ../shared/data/msrc21] [--seeds 0]

Both methods run the same pipeline from the same config apart from ``method``: backbone (resnet18, output
stride 16), crop, random init, seed, epochs and optimiser (the official one for both: SGD lr 0.1, Nesterov,
momentum 1e-4, poly, groups x1/x2/x10/x20, as the Puzzle-CAM code trains its baseline too). Per run: CAM
mIoU on train (all images / images with 2+ tags), pseudo-label mIoU of CAM + CRF and random walk + CRF,
the segmenter's val mIoU (trained on the random walk + CRF pseudo-labels, the official recipe), training
images/s and the classifier's wall time. On synthetic scenes (with a background class, 3 seeds) also the
mechanism Puzzle-CAM claims: the share of each object's discriminative part and of the rest of the object
that its CAM label covers. Every network starts from random init (nothing can be downloaded here). Prints
one table, writes benchmarks/results/puzzlecam_<dataset>.json; finished stages are not run again.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lesseg.api import run
from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.imageio import load_label_png
from lesseg.data.synth import generate
from lesseg.eval import ObjectCoverage, read_metrics
from lesseg.refine import cams_to_labels, load_cams

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
METHODS = ("cam", "puzzlecam")
#: The same for both methods; sized so that the synthetic table (2 methods x 3 seeds) fits in 30 minutes
#: on 2 CPU cores: boundary branch 10 epochs (100 iterations), segmenter 5 epochs, no reference runs.
COMMON = ["optim.momentum=1e-4", "optim.nesterov=true", "pseudo_labels.source=random_walk",
          "pseudo_labels.crf_iterations=1", "eval.refinement=true", "eval.references=false"]  # fmt: skip
SYNTHETIC = ["boundary.train.epochs=10", "segmenter.train.epochs=5"]


def training_speed(run_dir: Path, stage: str) -> float | None:
    speeds = [r["images_per_s"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
              if r.get("stage") == stage and "images_per_s" in r]  # fmt: skip
    speeds = speeds[1:] or speeds  # the first window holds the warm-up
    return float(np.mean(speeds)) if speeds else None


def object_coverage(run_dir: Path, cfg) -> dict | None:
    """Part / rest coverage of the CAM labels (configured threshold) over the training images, when the
    dataset has ``instances/`` and ``parts/`` (the synthetic scenes)."""
    root = Path(cfg.data.root)
    if not (root / "instances").is_dir():
        return None
    source = read_dataset(root)
    cov = ObjectCoverage()
    for r in source.split(cfg.data.train_split):
        res = load_cams(run_dir / "cams" / f"{r.id}.npz")
        labels = cams_to_labels(res, source.classes, bg_threshold=cfg.pseudo_labels.bg_threshold)
        instances = load_label_png(root / "instances" / f"{r.id}.png")
        parts = load_label_png(root / "parts" / f"{r.id}.png")
        cov.update(labels, instances, parts, source.load_mask(r))
    return cov.result()


def one_run(config: str, data: Path, name: str, seed: int, overrides: list[str]) -> dict:
    seeds = [f"train.seed={seed}", f"boundary.train.seed={seed}", f"segmenter.train.seed={seed}"]
    cfg = load_config(ROOT / config, [f"name={name}", f"data.root={data}", *seeds, *COMMON, *overrides])
    start = time.perf_counter()
    run_dir = run(cfg)
    wall = time.perf_counter() - start
    m = read_metrics(run_dir)
    stages = json.loads((run_dir / "stages.json").read_text())
    refine = m.get("refinement", {})
    return {
        "run_dir": str(run_dir),
        "cam_miou": m["cams"]["miou"],
        "cam_multi_tag_miou": (m["cams"].get("multi_tag") or {}).get("miou"),
        "cam_crf_miou": refine.get("cam_crf", {}).get("miou"),
        "random_walk_crf_miou": refine.get("random_walk_crf", {}).get("miou"),
        "segmenter_miou": m["segmenter"]["miou"],
        "classifier_images_per_s": training_speed(run_dir, "classifier"),
        "classifier_seconds": stages["classifier"]["seconds"],
        "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
        "wall_seconds_this_call": wall,
        "coverage": object_coverage(run_dir, cfg),
    }


def mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}"


ROWS = (
    ("CAM mIoU (train)", "cam_miou"),
    ("CAM mIoU, 2+ tags", "cam_multi_tag_miou"),
    ("CAM + CRF pseudo-labels", "cam_crf_miou"),
    ("random walk + CRF pseudo-labels", "random_walk_crf_miou"),
    ("segmenter mIoU (val)", "segmenter_miou"),
    ("CAM covers: part of objects", ("coverage", "part")),
    ("CAM covers: rest of objects", ("coverage", "rest")),
    ("classifier images/s", "classifier_images_per_s"),
    ("classifier seconds", "classifier_seconds"),
)


def table(results: dict[str, dict[int, dict]]) -> str:
    seeds = len(next(iter(results.values())))
    lines = [
        f"| (random init, {seeds} seed(s)) | " + " | ".join(METHODS) + " |",
        "|---" * (len(METHODS) + 1) + "|",
    ]
    for label, key in ROWS:
        cells = []
        for method in METHODS:
            runs = results.get(method, {}).values()
            if isinstance(key, tuple):
                values = [(r.get(key[0]) or {}).get(key[1]) for r in runs]
            else:
                values = [r.get(key) for r in runs]
            cells.append(mean_std(values))
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("msrc21", "synthetic"))
    parser.add_argument("--data", type=Path, help="dataset folder (msrc21: default ../shared/data/msrc21)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: synthetic 0 1 2, msrc21 0)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for both methods")
    args = parser.parse_args()
    if args.dataset == "msrc21":
        data = (args.data or ROOT.parent / "shared" / "data" / "msrc21").resolve()
        if not (data / "images").is_dir():
            print(f"MSRC-21 not found at {data}; pass --data PATH (nothing to measure, exiting)")
            return 0
        seeds, extra = args.seeds or [0], []
    else:
        data = ROOT / "runs" / "bench_data" / "synthetic_textured"
        if not (data / "synth.json").is_file():
            generate(data, images=200, classes=8, size=128, seed=0, background="textured")
        seeds, extra = args.seeds or [0, 1, 2], SYNTHETIC
    results: dict[str, dict[int, dict]] = {}
    out = RESULTS / f"puzzlecam_{args.dataset}.json"
    start = time.perf_counter()
    for seed in seeds:
        for method in METHODS:
            results.setdefault(method, {})[seed] = one_run(
                f"configs/{method}/{args.dataset}.yaml", data, f"bench_puzzle_{args.dataset}_{method}_s{seed}",
                seed, [*extra, *args.overrides],
            )  # fmt: skip
            text = table(results)
            RESULTS.mkdir(exist_ok=True)
            out.write_text(json.dumps({
                "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                "python": sys.version.split()[0], "torch": torch.__version__, "init": "random",
                "common_overrides": [*COMMON, *extra, *args.overrides], "table": text,
                "wall_seconds_total_this_call": time.perf_counter() - start, "runs": results,
            }, indent=1) + "\n")  # fmt: skip
    print(text)
    print(f"wall time this call: {(time.perf_counter() - start) / 60:.1f} min; written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
