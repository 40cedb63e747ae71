"""PiCIE against its baselines: one table of Hungarian-matched mIoU, pixel accuracy and training speed.

    python benchmarks/picie.py synthetic --jobs 2        # scenes without background, seeds 0 1 2
    python benchmarks/picie.py camvid                    # ../shared/data/camvid, seed 0 (long: background it)
    python benchmarks/picie.py camvid_imagenet --jobs 2  # ImageNet MobileNetV2, seeds 0 1 2, 21 min
    python benchmarks/picie.py synthetic train.epochs=3 --seeds 0 --variants picie untrained

Variants (same backbone, views, init, seed and epochs): ``picie`` (cluster weights by frequency, the
official code), ``picie_inverse`` (inverse frequency, the paper's reading), ``mdc`` (the Modified
DeepCluster baseline) and ``untrained`` (the evaluation's fresh k-means on the features of the randomly
initialised network, train.epochs=0). Random init for ``synthetic`` and ``camvid``; ``camvid_imagenet``
(issue 19) runs configs/picie/camvid_imagenet.yaml: MobileNetV2 from the ImageNet weights of `lesseg weights
import mobilenetv2_100 weights/mobilenetv2_100.pth`, as PiCIE's published numbers start from ImageNet, and
there ``untrained`` is k-means on the ImageNet features themselves. Every run ends with the same evaluation (fresh k-means
with K = classes on the train images, val predicted, Hungarian matching).

Writes benchmarks/results/picie_<dataset>.json (table, per-run metrics, wall times).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import mean_std, run_tasks, training_speed, write_results

from lesseg.api import run
from lesseg.config import load_config
from lesseg.data.synth import generate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = {
    "picie": ["method.variant=picie", "method.cluster_weights=frequency"],
    "picie_inverse": ["method.variant=picie", "method.cluster_weights=inverse"],
    "mdc": ["method.variant=mdc", "method.cluster_weights=frequency"],
    "untrained": ["train.epochs=0"],
}


def one_run(config: str, data: Path, name: str, variant: str, seed: int, overrides: list[str]) -> dict:
    cfg = load_config(ROOT / config, [f"data.root={data}", f"name={name}", f"train.seed={seed}", *overrides,
                                      *VARIANTS[variant]])  # fmt: skip
    start = time.perf_counter()
    run_dir = run(cfg, log=lambda line: print(f"[{name}] {line}", flush=True))
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stages = json.loads((run_dir / "stages.json").read_text())
    ev = metrics["cluster_eval"]
    epochs = metrics.get("features", {}).get("epochs", [])
    return {
        "miou": ev.get("miou"), "pixel_acc": ev.get("pixel_acc"), "per_class_iou": ev.get("per_class_iou"),
        "images_per_s": training_speed(run_dir, "features") if cfg.train.epochs else None,
        "clustering_seconds_per_epoch": (sum(e["seconds"] or 0 for e in epochs) / len(epochs)) if epochs else None,
        "stage_seconds": {k: v.get("seconds") for k, v in stages.items()}, "wall_seconds": round(wall, 1),
    }  # fmt: skip


def table(results: dict[str, dict[int, dict]]) -> str:
    head = ("variant", "seeds", "matched mIoU (val)", "pixel accuracy (val)", "train images/s",
            "clustering s/epoch", "stage seconds (features + eval)")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for variant in [v for v in VARIANTS if v in results]:
        by_seed = results[variant]
        rs = list(by_seed.values())
        secs = [sum(v or 0 for v in r["stage_seconds"].values()) for r in rs]
        lines.append(" | ".join([
            variant, str(len(rs)), mean_std(r["miou"] for r in rs), mean_std(r["pixel_acc"] for r in rs),
            mean_std(r["images_per_s"] for r in rs), mean_std(r["clustering_seconds_per_epoch"] for r in rs),
            f"{sum(secs) / len(secs):.0f} s",
        ]))  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("synthetic", "camvid", "camvid_imagenet"))
    parser.add_argument("--data", type=Path, help="dataset folder (camvid: default ../shared/data/camvid)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="training seeds (default: synthetic 0 1 2; camvid 0)"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs side by side, cpu_count // jobs threads each"
    )
    parser.add_argument("--tag", default="", help="suffix of the run names and the results file (trials)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (before --seeds)")
    args = parser.parse_args()
    imagenet = args.dataset.endswith("_imagenet")
    if args.dataset.startswith("camvid"):
        data = (args.data or ROOT.parent / "shared" / "data" / "camvid").resolve()
        if not data.is_dir():
            print(f"CamVid not found at {data}; pass --data PATH (nothing to measure, exiting)")
            return 0
        if imagenet and not (ROOT / "weights" / "mobilenetv2_100.pth").is_file():
            print("weights/mobilenetv2_100.pth is missing: pip install -e '.[imagenet]' && lesseg weights import "
                  "mobilenetv2_100 weights/mobilenetv2_100.pth (nothing to measure, exiting)")  # fmt: skip
            return 0
        config, seeds = f"configs/picie/{args.dataset}.yaml", args.seeds or ([0, 1, 2] if imagenet else [0])
    else:
        data = args.data or ROOT / "runs" / "bench_data" / "synthetic_none"
        if not (data / "synth.json").is_file():
            generate(data, images=200, classes=8, size=128, seed=0, background="none")
        config, seeds = "configs/picie/synthetic.yaml", args.seeds or [0, 1, 2]
    tag = f"_{args.tag}" if args.tag else ""
    out = RESULTS / f"picie_{args.dataset}{tag}.json"
    results: dict[str, dict[int, dict]] = {}
    init = "ImageNet (mobilenetv2_100)" if imagenet else "random"
    start = time.perf_counter()
    # seed-major: an interrupted benchmark has every variant at the same depth
    tasks = [(config, data, f"bench_picie_{args.dataset}_{variant}_s{seed}{tag}", variant, seed, args.overrides)
             for seed in seeds for variant in args.variants]  # fmt: skip
    for task, result in run_tasks(one_run, tasks, args.jobs):
        variant, seed = task[3], task[4]
        results.setdefault(variant, {})[seed] = result
        results[variant] = dict(sorted(results[variant].items()))
        write_results(out, {
            "init": init, "config": config, "overrides": args.overrides, "table": table(results),
            "total_wall_seconds": round(time.perf_counter() - start, 1), "runs": results,
        }, args.jobs)  # fmt: skip
    print(f"PiCIE on {args.dataset} ({init} init; wall {time.perf_counter() - start:.0f} s)")
    print(table(results))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
