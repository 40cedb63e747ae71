"""The CAM baseline, Puzzle-CAM and MCIS, everything else equal (issues 6 and 7).

    .venv/bin/python benchmarks/cam_methods.py synthetic [--seeds 0 1 2] [--methods cam puzzlecam mcis] [--jobs 2] [KEY=VALUE ...]
    .venv/bin/python benchmarks/cam_methods.py msrc21 [--data ../shared/data/msrc21] [--seeds 0]

The methods run the same pipeline from the same config apart from ``method`` (and MCIS's ``model.name``): backbone (resnet18, output
stride 16), crop, random init, seed and epochs; the CAM baseline and Puzzle-CAM share Puzzle-CAM's official optimiser
(SGD lr 0.1, Nesterov, momentum 1e-4, poly, groups x1/x2/x10/x20, as the Puzzle-CAM code trains its
baseline too), MCIS keeps its own (configs/mcis/*.yaml: the shared one diverges with its extra layers). Per run: CAM
mIoU on train (all images / images with 2+ tags), pseudo-label mIoU of CAM + CRF and random walk + CRF,
the segmenter's val mIoU (trained on the random walk + CRF pseudo-labels, the official recipe), training
images/s and the classifier's wall time. On synthetic scenes (with a background class, 3 seeds) also the
mechanism Puzzle-CAM claims: the share of each object's discriminative part and of the rest of the object
that its CAM label covers. MCIS's CAMs come from co-segmentation (its official inference); its
single-image CAM mIoU comes from a second cams stage on the same classifier, and both inferences' cost per
image is reported. Every network starts from random init (nothing can be downloaded here). Prints one
table, writes benchmarks/results/cam_methods_<dataset>.json; finished stages are not run again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import mean_std, run_tasks, seed_overrides, share_run, training_speed, write_results

from lesseg.api import run
from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.imageio import load_label_png
from lesseg.data.synth import generate
from lesseg.eval import ObjectCoverage, read_metrics
from lesseg.refine import cams_to_labels, load_cams

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
METHODS = ("cam", "puzzlecam", "mcis")
#: The same for every method; sized so that the synthetic table (3 seeds) fits in 30 minutes on 2 CPU cores
#: with --jobs 2: boundary branch 5 epochs (50 iterations), segmenter 5 epochs, no reference runs.
COMMON = ["pseudo_labels.source=random_walk", "pseudo_labels.crf_iterations=1", "eval.refinement=true",
          "eval.references=false"]  # fmt: skip
#: The official Puzzle-CAM optimiser, for the CAM baseline too (as the Puzzle-CAM code trains it). MCIS keeps
#: its own from its config: with its three extra convolutions this one diverges (configs/mcis/synthetic.yaml).
PUZZLE_OPTIM = ["optim.momentum=1e-4", "optim.nesterov=true"]
SYNTHETIC = ["boundary.train.epochs=5", "segmenter.train.epochs=5"]


def optim_overrides(method: str) -> list[str]:
    """Puzzle-CAM's optimiser for the CAM baseline and Puzzle-CAM; none for MCIS (its config's own)."""
    return [] if method == "mcis" else PUZZLE_OPTIM


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
    all_overrides = [f"name={name}", f"data.root={data}", *seed_overrides(seed), *COMMON, *overrides]
    cfg = load_config(ROOT / config, all_overrides)
    start = time.perf_counter()
    run_dir = run(cfg)
    wall = time.perf_counter() - start
    m = read_metrics(run_dir)
    stages = json.loads((run_dir / "stages.json").read_text())
    refine = m.get("refinement", {})
    n_train = len(read_dataset(cfg.data.root).split(cfg.data.train_split))
    single = single_image_cams(run_dir, config, all_overrides) if cfg.method.name == "mcis" else None
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
        "cam_inference_seconds_per_image": stages["cams"]["seconds"] / n_train,
        "single_image_cam_miou": single["miou"] if single else m["cams"]["miou"],
        "single_image_cam_seconds_per_image": single["cams_seconds"] / n_train if single else None,
    }


def single_image_cams(run_dir: Path, config: str, overrides: list[str]) -> dict:
    """MCIS's CAM mIoU and cost with single-image inference: the cams and cam_eval stages again, in a copy
    of the run folder that shares (hard links) its classifier."""
    dest = run_dir.with_name(run_dir.name + "_single")
    share_run(run_dir, dest, checkpoints=["classifier"], stages=["classifier"])
    cfg = load_config(ROOT / config, [*overrides, f"name={dest.name}", "method.cam_inference=single"])
    for stage in ("cams", "cam_eval"):
        run(cfg, stage=stage)
    m = read_metrics(dest)
    seconds = json.loads((dest / "stages.json").read_text())["cams"]["seconds"]
    return {"miou": m["cams"]["miou"], "multi_tag_miou": (m["cams"].get("multi_tag") or {}).get("miou"),
            "cams_seconds": seconds}  # fmt: skip


ROWS = (
    ("CAM mIoU (train; MCIS: co-segmentation)", "cam_miou"),
    ("CAM mIoU, single-image inference", "single_image_cam_miou"),
    ("CAM mIoU, 2+ tags", "cam_multi_tag_miou"),
    ("CAM + CRF pseudo-labels", "cam_crf_miou"),
    ("random walk + CRF pseudo-labels", "random_walk_crf_miou"),
    ("segmenter mIoU (val)", "segmenter_miou"),
    ("CAM covers: part of objects", ("coverage", "part")),
    ("CAM covers: rest of objects", ("coverage", "rest")),
    ("classifier images/s", "classifier_images_per_s"),
    ("classifier seconds", "classifier_seconds"),
    ("CAM inference s/image (MCIS: co-segmentation)", "cam_inference_seconds_per_image"),
    ("CAM inference s/image, single-image (MCIS)", "single_image_cam_seconds_per_image"),
)


def table(results: dict[str, dict[int, dict]]) -> str:
    seeds = len(next(iter(results.values())))
    methods = [m for m in METHODS if m in results]
    lines = [
        f"| (random init, {seeds} seed(s)) | " + " | ".join(methods) + " |",
        "|---" * (len(methods) + 1) + "|",
    ]
    for label, key in ROWS:
        cells = []
        for method in methods:
            runs = results.get(method, {}).values()
            if isinstance(key, tuple):
                values = [(r.get(key[0]) or {}).get(key[1]) for r in runs]
            else:
                values = [r.get(key) for r in runs]
            cells.append(mean_std(values))
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def earlier_results(path: Path, keep: list[str]) -> dict[str, dict[int, dict]]:
    """The runs of methods ``keep`` from an earlier call's results file, so that a call with fewer
    ``--methods`` adds its rows to the table instead of replacing it."""
    if not path.is_file():
        return {}
    runs = json.loads(path.read_text()).get("runs", {})
    return {m: {int(seed): r for seed, r in runs[m].items()} for m in keep if m in runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("msrc21", "synthetic"))
    parser.add_argument("--data", type=Path, help="dataset folder (msrc21: default ../shared/data/msrc21)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: synthetic 0 1 2, msrc21 0)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to run")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs side by side, cpu_count // jobs threads each"
    )
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
    out = RESULTS / f"cam_methods_{args.dataset}.json"
    results = earlier_results(out, keep=[m for m in METHODS if m not in args.methods])
    start = time.perf_counter()
    tasks = [(f"configs/{method}/{args.dataset}.yaml", data, f"bench_methods_{args.dataset}_{method}_s{seed}",
              seed, [*extra, *optim_overrides(method), *args.overrides]) for seed in seeds for method in args.methods]  # fmt: skip
    for task, result in run_tasks(one_run, tasks, args.jobs):
        method = task[0].split("/")[1]
        results.setdefault(method, {})[task[3]] = result
        results[method] = dict(sorted(results[method].items()))
        text = table(results)
        write_results(out, {
            "common_overrides": [*COMMON, *extra, *args.overrides], "cam_puzzlecam_optim": PUZZLE_OPTIM, "table": text,
            "wall_seconds_total_this_call": time.perf_counter() - start, "runs": results,
        }, args.jobs)  # fmt: skip
    print(text)
    print(f"wall time this call: {(time.perf_counter() - start) / 60:.1f} min; written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
