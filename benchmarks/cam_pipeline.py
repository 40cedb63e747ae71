"""The CAM baseline's whole pipeline (classifier, CAMs, pseudo-labels, DeepLabv3+, references) on a dataset.

    .venv/bin/python benchmarks/cam_pipeline.py msrc21 [--data ../shared/data/msrc21] [KEY=VALUE ...]
    .venv/bin/python benchmarks/cam_pipeline.py synthetic [KEY=VALUE ...]   # both background modes

msrc21 runs configs/cam/msrc21.yaml (resnet18, output stride 16, crops of 224); synthetic generates the
demo's scenes with and without a background class and runs configs/cam/synthetic.yaml on each. Every network
starts from random init: no weights can be downloaded here. Runs go to runs/bench_*; a finished stage is
not run again, so a killed benchmark resumes. Prints a table and writes benchmarks/results/cam_<name>.json.

Besides the metrics it reports training images/s (classifier and segmenter, from the log), the cams
stage's images/s (with image loading and writing), and benchmarks/cam_speed.py's CAM-inference images/s
beside the raw backbone forward over exactly the same input tensors, measured alternately in one process:
their ratio shows what the CAM machinery costs on top of the network.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import training_speed

from lesseg.api import run
from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.synth import generate
from lesseg.eval import format_headline, headline, read_metrics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def cam_speed(run_dir: Path) -> dict:
    """CAM inference vs raw forward on the run's first 48 training images (benchmarks/cam_speed.py)."""
    script = Path(__file__).parent / "cam_speed.py"
    subprocess.run([sys.executable, str(script), str(run_dir)], check=True)
    return json.loads((RESULTS / f"cam_speed_{run_dir.name}.json").read_text())


def bench_run(config: str, overrides: list[str]) -> dict:
    cfg = load_config(ROOT / config, overrides)
    start = time.perf_counter()
    run_dir = run(cfg)
    wall = time.perf_counter() - start
    metrics = read_metrics(run_dir)
    stages = json.loads((run_dir / "stages.json").read_text())
    n_train = len(read_dataset(cfg.data.root).split(cfg.data.train_split))
    cams_stage_speed = n_train / stages["cams"]["seconds"]  # with loading and writing
    speed = cam_speed(run_dir)
    print(format_headline(metrics))
    return {
        "run_dir": str(run_dir),
        "config": config,
        "overrides": overrides,
        "init": "random",
        "headline": headline(metrics),
        "references": metrics.get("references"),
        "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
        "wall_seconds_this_call": wall,
        "train_images_per_s": {
            "classifier": training_speed(run_dir, "classifier"),
            "segmenter": training_speed(run_dir, "segmenter"),
        },  # fmt: skip
        "cams_stage_images_per_s": cams_stage_speed,
        "cam_speed": speed,
    }


def table(rows: dict[str, dict]) -> str:
    head = ("run", "CAM", "CAM multi", "CAM best-thr", "PL", "PL cover", "seg val", "best ref (cam/pl/seg)",
            "train img/s", "CAM img/s", "raw fwd img/s")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, r in rows.items():
        h = {row["stage"]: row for row in r["headline"]}

        def g(stage, key, h=h):
            v = h.get(stage, {}).get(key)
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

        refs = "/".join(g(s, "reference") for s in ("cams", "pseudo_labels", "segmenter"))
        lines.append(" | ".join([
            name, g("cams", "miou"), g("cams", "multi_tag_miou"), g("cams", "best_threshold_miou"),
            g("pseudo_labels", "miou"), g("pseudo_labels", "coverage"), g("segmenter", "miou"), refs,
            f"{r['train_images_per_s']['classifier']:.1f}", f"{r['cam_speed']['cam_inference_images_per_s']:.2f}",
            f"{r['cam_speed']['raw_forward_images_per_s']:.2f}",
        ]))  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("msrc21", "synthetic"))
    parser.add_argument("--data", type=Path, help="dataset folder (msrc21: default ../shared/data/msrc21)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    if args.dataset == "msrc21":
        data = args.data or ROOT.parent / "shared" / "data" / "msrc21"
        if not (data / "images").is_dir():
            print(f"MSRC-21 not found at {data}; pass --data PATH (nothing to measure, exiting)")
            return 0
        results["msrc21"] = bench_run(
            "configs/cam/msrc21.yaml", [f"data.root={data}", "name=bench_msrc21", *args.overrides]
        )
    else:
        for mode in ("textured", "none"):
            data = ROOT / "runs" / "bench_data" / f"synthetic_{mode}"
            if not (data / "synth.json").is_file():
                generate(data, images=200, classes=8, size=128, seed=0, background=mode)
            results[f"synthetic_{mode}"] = bench_run(
                "configs/cam/synthetic.yaml",
                [f"data.root={data}", f"name=bench_synthetic_{mode}", *args.overrides],
            )
    text = table(results)
    print(text)
    out = RESULTS / f"cam_{args.dataset}.json"
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads":
                               torch.get_num_threads(), "python": sys.version.split()[0], "torch":
                               torch.__version__, "table": text, "runs": results}, indent=1) + "\n")  # fmt: skip
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
