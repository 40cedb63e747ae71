"""SimFormer's claims on seeded base/novel splits (issue 21): stage one without and with crosim, after
retraining, against the weak-supervision baseline and the fully supervised upper bound.

    .venv/bin/python benchmarks/simformer.py msrc21_imagenet --jobs 2
    .venv/bin/python benchmarks/simformer.py msrc21_imagenet --splits 0 --jobs 2     # one split first
    .venv/bin/python benchmarks/simformer.py synthetic --jobs 2                      # random init, generated

Runs configs/simformer/<msrc21|synthetic>.yaml on each split (``data.novel=1/4`` drawn with
``data.novel_seed``; MSRC-21: MobileNetV2 from the ImageNet weights of `lesseg weights import
mobilenetv2_100 weights/mobilenetv2_100.pth`): ``stage_one`` (method.crosim=false, no retraining) and
``simformer`` (crosim, retraining; its references stage trains the weak-supervision baseline on the CAMs
of one CAM run, configs/cam/<msrc21_imagenet|synthetic>.yaml, shared by every split: its classifier saw
tags only; the first split's also trains the upper bound, which sees every mask and so is trained once and
scored on each split's base and novel classes). Prints one table (val mIoU: all, base, novel classes; mean +- std over the
splits) and writes benchmarks/results/simformer_<dataset>.json. Finished stages are kept: a later call
continues the run folders.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import mean_std, msrc21_or_synthetic, run_tasks, training_speed, write_results

from lesseg.api import run
from lesseg.config import load_config
from lesseg.eval.subsets import subset_miou

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
VARIANTS = {
    "stage_one": ["method.crosim=false", "method.retrain=false", "eval.references=false"],
    "simformer": [],
    # the official code's novel targets, the classes visible in each crop (reads where novel pixels are)
    "crop_tags": ["method.novel_tags=crop", "method.retrain=false", "eval.references=false"],
}
DEFAULT_VARIANTS = ("stage_one", "simformer")
#: table rows: (label, variant, where in metrics.json)
ROWS = (
    ("stage one, no crosim", "stage_one", ("segmenter",)),
    ("stage one, crosim", "simformer", ("stage_one",)),
    ("stage one, crosim, official crop tags", "crop_tags", ("segmenter",)),
    ("after retraining (SimFormer)", "simformer", ("segmenter",)),
    ("weak-supervision baseline (CAM)", "simformer", ("references", "weak_baseline", "val")),
)
UPPER = "fully supervised upper bound"


def configs(dataset: str) -> tuple[str, str]:
    if dataset.startswith("msrc21"):
        return "configs/simformer/msrc21.yaml", "configs/cam/msrc21_imagenet.yaml"
    return "configs/simformer/synthetic.yaml", "configs/cam/synthetic.yaml"


def cam_run(dataset: str, data: Path, overrides: list[str]) -> dict:
    """The CAM pipeline up to its CAMs, once for every split."""
    cfg = load_config(ROOT / configs(dataset)[1], [f"name=bench_simformer_cams_{dataset}", f"data.root={data}",
                                                   *overrides])  # fmt: skip
    start = time.perf_counter()
    run_dir = run(cfg, until="cams", log=lambda line: print(f"[cams] {line}", flush=True))
    return {"run_dir": str(run_dir), "wall_seconds_this_call": round(time.perf_counter() - start, 1)}


def one_run(
    dataset: str, data: Path, variant: str, split: int, upper_bound: bool, overrides: list[str]
) -> dict:
    """One run; ``upper_bound``: its references also train the upper bound, which sees every mask and so
    does not depend on the split: one run trains it and :func:`table` scores it on every split's classes."""
    cams = Path(ROOT / "runs" / f"bench_simformer_cams_{dataset}").resolve()
    cfg = load_config(ROOT / configs(dataset)[0], [
        f"name=bench_simformer_{dataset}_{variant}_split{split}", f"data.root={data}", f"data.novel_seed={split}",
        f"method.baseline_cams={cams}", f"method.upper_bound={str(upper_bound).lower()}", "eval.gallery=4",
        *VARIANTS[variant], *overrides,
    ])  # fmt: skip
    start = time.perf_counter()
    say = lambda line: print(f"[{variant} split{split}] {line}", flush=True)  # noqa: E731
    if variant == "simformer":  # its references read the CAM run's CAMs: wait for them after retraining
        run(cfg, until="retrain", log=say)
        while "cams" not in json.loads(_stages(cams)):
            time.sleep(20)
    run_dir = run(cfg, log=say)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stages = json.loads((run_dir / "stages.json").read_text())
    novel = json.loads((run_dir / "splits" / "base_novel.json").read_text())["novel_names"]
    out = {"novel": novel, "run_dir": str(run_dir), "wall_seconds_this_call": round(time.perf_counter() - start, 1),
           "train_images_per_s": training_speed(run_dir, "train"),
           "seconds": {k: v["seconds"] for k, v in stages.items()}}  # fmt: skip
    for label, v, where in ROWS:
        if v != variant:
            continue
        m = metrics
        for key in where:
            m = (m or {}).get(key)
        if m:
            out[label] = {"miou": m["miou"], "base": m["subsets"]["base"], "novel": m["subsets"]["novel"]}
    upper = metrics.get("references", {}).get("upper_bound")
    if upper:
        out["upper_bound_per_class_iou"] = upper["val"]["per_class_iou"]
    if "pseudo_labels" in metrics:
        out["pseudo_labels"] = metrics["pseudo_labels"]
    return out


def upper_bound_cells(runs: dict) -> dict[str, dict]:
    """``{split: cell}``: the upper bound (trained once) scored on each SimFormer split's classes."""
    per_class = next((r["upper_bound_per_class_iou"] for v in runs.values() for r in v.values()
                      if "upper_bound_per_class_iou" in r), None)  # fmt: skip
    if per_class is None:
        return {}
    cells = {}
    for split, r in runs.get("simformer", {}).items():
        novel = set(r["novel"])
        base = [c for c in per_class if c not in novel]
        sub = subset_miou(
            {"per_class_iou": per_class}, {"base": base, "novel": sorted(novel)}, harmonic=False
        )
        present = [v for v in per_class.values() if v is not None]
        cells[split] = {"miou": sum(present) / len(present), **sub}
    return cells


def _stages(run_dir: Path) -> str:
    path = run_dir / "stages.json"
    return path.read_text() if path.is_file() else "{}"


def _call(task):
    return cam_run(*task[1:]) if task[0] == "cams" else one_run(*task[1:])


def table(runs: dict, init: str) -> str:
    lines = [f"| val mIoU ({init}) | all | base | novel | novel / upper bound | splits |", "|---" * 6 + "|"]
    upper_cells = upper_bound_cells(runs)
    upper = {split: c["novel"] for split, c in upper_cells.items()}
    rows = [(label, variant, {s: r[label] for s, r in runs.get(variant, {}).items() if label in r})
            for label, variant, _ in ROWS]  # fmt: skip
    rows.append((UPPER + " (trained once, scored per split)", "simformer", upper_cells))
    for label, _, by_split in rows:
        cells = list(by_split.values())
        if not cells:
            continue
        ratios = [c["novel"] / upper[s] for s, c in by_split.items() if upper.get(s)]
        lines.append(f"| {label} | {mean_std(c['miou'] for c in cells)} | {mean_std(c['base'] for c in cells)} | "
                     f"{mean_std(c['novel'] for c in cells)} | {mean_std(ratios)} | {len(cells)} |")  # fmt: skip
    speeds = [r.get("train_images_per_s") for v in runs.values() for r in v.values()]
    lines.append(f"| training images/s (stage one) | {mean_std(speeds)} | | | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("msrc21_imagenet", "synthetic"))
    parser.add_argument("--data", type=Path, help="dataset folder (default ../shared/data/msrc21)")
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3], help="data.novel_seed values")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        choices=list(VARIANTS),
        help="crop_tags: stage one with the official code's crop-level novel tags (not default)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs side by side, cpu_count // jobs threads each"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    args = parser.parse_args()
    found = msrc21_or_synthetic(args.dataset, args.data)
    if found is None:
        return 0
    data, init = found
    # the CAM run first, then stage one (it needs no CAMs), then SimFormer, whose references read them
    tasks = [("cams", args.dataset, data, args.overrides)] if "simformer" in args.variants else []
    tasks += [("run", args.dataset, data, v, s, v == "simformer" and s == args.splits[0], args.overrides)
              for v in args.variants for s in args.splits]  # fmt: skip
    out = RESULTS / f"simformer_{args.dataset}.json"
    runs: dict = json.loads(out.read_text()).get("runs", {}) if out.is_file() else {}
    start = time.perf_counter()
    text = ""
    for (task,), result in run_tasks(_call, [(t,) for t in tasks], args.jobs):
        if task[0] == "cams":
            runs["cams"] = result
        else:
            runs.setdefault(task[3], {})[str(task[4])] = result
        text = table({k: v for k, v in runs.items() if k in VARIANTS}, init)
        write_results(out, {"init": init, "overrides": args.overrides, "table": text, "runs": runs,
                            "wall_seconds_this_call": round(time.perf_counter() - start, 1)}, args.jobs)  # fmt: skip
    print(text)
    print(f"wall time this call: {(time.perf_counter() - start) / 60:.1f} min; written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
