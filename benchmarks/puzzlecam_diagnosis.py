"""Why Puzzle-CAM's CAMs score below the CAM baseline's on ImageNet features (issue 19): its loss taken apart.

    .venv/bin/python benchmarks/puzzlecam_diagnosis.py [--alphas 0] [--seeds 0 1 2] [--jobs 2]

Puzzle-CAM's classifier trains on L_cls (the full image's tags) + L_p_cls (the stitched tiles' tags) +
alpha L_re (the full and stitched CAMs reconciled, alpha ramped to ``method.alpha_max``, official 4). The
CAM baseline trains on L_cls alone. Runs configs/puzzlecam/msrc21_imagenet.yaml at the budget of
``cam_methods.py msrc21_imagenet`` (same seeds, epochs, optimiser) with ``method.alpha_max`` set to each of
``--alphas`` (0: the tiles' classification without the reconciliation), up to the CAM scores, and sets
them beside the CAM and Puzzle-CAM rows of benchmarks/results/cam_methods_msrc21_imagenet.json (run that
first). Each run's last logged loss terms say what the classifier ended on. ImageNet init (mobilenetv2_100).
Measured on 2 cores: about 10 minutes per run with two side by side.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cam_methods import IMAGENET_BUDGET, IMAGENET_OPTIM, one_run
from common import mean_std, run_tasks, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
METHODS_RESULTS = RESULTS / "cam_methods_msrc21_imagenet.json"


def last_losses(run_dir: str) -> dict:
    """The classifier's last logged loss terms."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    rows = [r for r in map(json.loads, lines) if r.get("stage") == "classifier" and "loss" in r]
    return {k: v for k, v in rows[-1].items() if k not in ("stage", "step", "epoch", "lr", "images_per_s")}


def diagnose(data: Path, alpha: float, seed: int) -> dict:
    name = f"bench_puzzle_diagnosis_alpha{alpha:g}_s{seed}"
    overrides = [*IMAGENET_BUDGET, *IMAGENET_OPTIM, f"method.alpha_max={alpha}"]
    r = one_run("configs/puzzlecam/msrc21_imagenet.yaml", data, name, seed, overrides, until="cam_eval")
    return {"cam_miou": r["cam_miou"], "cam_multi_tag_miou": r["cam_multi_tag_miou"],
            "last_losses": last_losses(r["run_dir"]), "run_dir": r["run_dir"]}  # fmt: skip


def _call(task):
    return diagnose(*task)


def table(rows: dict[str, dict[int, dict]]) -> str:
    lines = [
        "| (ImageNet init mobilenetv2_100) | CAM mIoU | CAM mIoU, 2+ tags | seeds |",
        "|---|---|---|---|",
    ]
    for label, runs in rows.items():
        cams = [r.get("cam_miou") for r in runs.values()]
        multi = [r.get("cam_multi_tag_miou") for r in runs.values()]
        lines.append(f"| {label} | {mean_std(cams)} | {mean_std(multi)} | {', '.join(map(str, runs))} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "msrc21")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    data = args.data.resolve()
    if not (data / "images").is_dir():
        print(f"MSRC-21 not found at {data}; pass --data PATH (nothing to measure, exiting)")
        return 0
    if not (ROOT / "weights" / "mobilenetv2_100.pth").is_file() or not METHODS_RESULTS.is_file():
        print("needs weights/mobilenetv2_100.pth (lesseg weights import) and the results of "
              "benchmarks/cam_methods.py msrc21_imagenet (nothing to measure, exiting)")  # fmt: skip
        return 0
    start = time.perf_counter()
    tasks = [(data, a, s) for a in args.alphas for s in args.seeds]
    found: dict[float, dict[int, dict]] = {}
    for task, result in run_tasks(_call, [(t,) for t in tasks], args.jobs):
        _, alpha, seed = task[0]
        found.setdefault(alpha, {})[seed] = result
    earlier = json.loads(METHODS_RESULTS.read_text())["runs"]  # read now: cam_methods.py may have added rows
    rows = {"CAM baseline (L_cls)": {int(s): r for s, r in earlier["cam"].items()}}
    for alpha in sorted(found):
        rows[f"L_cls + L_p_cls + L_re, alpha_max={alpha:g}"] = dict(sorted(found[alpha].items()))
    rows["Puzzle-CAM (alpha_max=4, official)"] = {int(s): r for s, r in earlier["puzzlecam"].items()}
    text = table(rows)
    out = RESULTS / "puzzlecam_diagnosis_imagenet.json"
    write_results(out, {"init": "ImageNet (mobilenetv2_100)", "table": text, "rows": rows,
                        "wall_seconds": time.perf_counter() - start}, args.jobs)  # fmt: skip
    print(text)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
