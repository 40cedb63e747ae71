"""PseudoSeg against the supervised-only baseline over labeled fractions (issue 20).

    .venv/bin/python benchmarks/pseudoseg.py msrc21_imagenet --jobs 2
    .venv/bin/python benchmarks/pseudoseg.py msrc21_imagenet --fractions 1/8 --seeds 0 --variants semi
    .venv/bin/python benchmarks/pseudoseg.py synthetic --jobs 2          # random init, generated scenes

Runs configs/pseudoseg/<msrc21|synthetic>.yaml (MSRC-21: MobileNetV2 from the ImageNet weights of `lesseg
weights import mobilenetv2_100 weights/mobilenetv2_100.pth`) at each labeled fraction of train (the rest
unlabeled): ``semi`` (PseudoSeg, unlabeled images with nothing), ``weak`` (method.weak=true: their tags
too) and the ablations at 1/8 (``decoder`` / ``sgc``: pseudo-labels from one source alone, ``no_sharpen``:
T = 1, ``rampup``: L_u's weight rising over the first 30% of training, not the official constant one).
The ``semi`` runs' references stage trains the supervised-only baseline on the same labeled split (same
network, recipe and steps) and, at 1/8, the fully supervised upper bound. Seeds: ``--seeds`` (default
0 1 2) at 1/8, the first of them elsewhere; a seed draws the labeled split and the training.
Prints one table (val mIoU, single scale), writes benchmarks/results/pseudoseg_<dataset>.json and the
label-efficiency figure in benchmarks/results/pseudoseg_<dataset>/report.html. Finished stages are kept:
a later call continues the run folders.
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

from common import mean_std, msrc21_or_synthetic, run_tasks, training_speed, write_results

from lesseg.api import run
from lesseg.config import load_config
from lesseg.report import write_report
from lesseg.report.charts import line_chart_svg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
FRACTIONS = ("1/16", "1/8", "1/4", "1/2")
VARIANTS = {
    "semi": [],
    "weak": ["method.weak=true"],
    "decoder": ["method.pseudo_label=decoder"],
    "sgc": ["method.pseudo_label=sgc"],
    "no_sharpen": ["method.temperature=1.0"],
    "rampup": ["method.consistency_rampup=0.3"],  # not official: L_u's weight rises over the first 30%
}
ABLATIONS = ("decoder", "sgc", "no_sharpen", "rampup")
MAIN = "1/8"  # the fraction with every seed, the ablations and the upper bound


def run_name(dataset: str, variant: str, fraction: str, seed: int) -> str:
    return f"bench_pseudoseg_{dataset}_{variant}_{fraction.replace('/', 'of')}_s{seed}"


def one_run(dataset: str, data: Path, variant: str, fraction: str, seed: int, overrides: list[str]) -> dict:
    config = (
        "configs/pseudoseg/msrc21.yaml"
        if dataset.startswith("msrc21")
        else "configs/pseudoseg/synthetic.yaml"
    )
    references = variant == "semi"
    cfg = load_config(ROOT / config, [
        f"name={run_name(dataset, variant, fraction, seed)}", f"data.root={data}", f"data.labeled={fraction}",
        f"data.labeled_seed={seed}", f"train.seed={seed}", f"eval.references={str(references).lower()}",
        f"method.upper_bound={str(fraction == MAIN).lower()}", "eval.gallery=4", *VARIANTS[variant], *overrides,
    ])  # fmt: skip
    start = time.perf_counter()
    run_dir = run(cfg, log=lambda line: print(f"[{variant} {fraction} s{seed}] {line}", flush=True))
    m = json.loads((run_dir / "metrics.json").read_text())
    refs = m.get("references", {})
    stages = json.loads((run_dir / "stages.json").read_text())
    labeled_per_s = training_speed(run_dir, "train")
    k = cfg.method.unlabeled_per_labeled
    return {
        "miou": m["segmenter"]["miou"],
        "supervised_only_miou": (refs.get("supervised_only") or {}).get("val", {}).get("miou"),
        "upper_bound_miou": (refs.get("upper_bound") or {}).get("val", {}).get("miou"),
        "random_tags_val_miou": (refs.get("random_tags") or {}).get("val", {}).get("miou"),
        "labeled": len(json.loads((run_dir / "splits" / "labeled.json").read_text())["labeled"]),
        "train_images_per_s": labeled_per_s * (1 + k) if labeled_per_s else None,
        "train_seconds": stages["train"]["seconds"],
        "references_seconds": stages.get("references", {}).get("seconds"),
        "wall_seconds_this_call": round(time.perf_counter() - start, 1),
        "run_dir": str(run_dir),
    }


def _call(task):
    return one_run(*task)


def table(runs: dict, init: str) -> str:
    """Rows: fractions (then the ablations at 1/8); cells mean +- std over the seeds that ran."""

    def cell(variant, fraction, key="miou"):
        return mean_std(r.get(key) for r in runs.get(variant, {}).get(fraction, {}).values())

    lines = [f"| val mIoU ({init}) | labeled | supervised only | PseudoSeg semi | PseudoSeg weak | semi - supervised |"
             " upper bound | seeds |", "|---" * 8 + "|"]  # fmt: skip
    for fraction in sorted({f for v in runs.values() for f in v}, key=Fraction):
        semi = runs.get("semi", {}).get(fraction, {})
        gaps = [r["miou"] - r["supervised_only_miou"] for r in semi.values() if r.get("supervised_only_miou")]
        labeled = next((r["labeled"] for v in runs.values() for r in v.get(fraction, {}).values()), "")
        lines.append(f"| {fraction} | {labeled} | {cell('semi', fraction, 'supervised_only_miou')} | "
                     f"{cell('semi', fraction)} | {cell('weak', fraction)} | {mean_std(gaps)} | "
                     f"{cell('semi', fraction, 'upper_bound_miou')} | {', '.join(map(str, semi))} |")  # fmt: skip
    for variant in ABLATIONS:
        if MAIN in runs.get(variant, {}):
            lines.append(f"| {MAIN}, pseudo-labels: {variant} | | | {cell(variant, MAIN)} | | | | "
                         f"{', '.join(map(str, runs[variant][MAIN]))} |")  # fmt: skip
    speeds = [r.get("train_images_per_s") for v in runs.values() for f in v.values() for r in f.values()]
    lines.append(f"| training images/s (labeled + unlabeled) | {mean_std(speeds)} | | | | | | |")
    return "\n".join(lines)


def label_efficiency_report(out_dir: Path, runs: dict, init: str, text: str) -> Path:
    """report.html with val mIoU against the labeled fraction, one line per method (means over seeds)."""

    def means(variant, key="miou"):
        pts = []
        for fraction, by_seed in runs.get(variant, {}).items():
            vals = [r[key] for r in by_seed.values() if r.get(key) is not None]
            if vals:
                pts.append((float(Fraction(fraction)), sum(vals) / len(vals)))
        return pts

    series = {"supervised only": means("semi", "supervised_only_miou"), "PseudoSeg semi": means("semi"),
              "PseudoSeg weak": means("weak")}  # fmt: skip
    svg = line_chart_svg({k: v for k, v in series.items() if v}, x_label="labeled fraction of train")
    notes = [f"{init}; val mIoU, single scale. Means over the seeds that ran.", *text.splitlines()]
    return write_report(out_dir, "PseudoSeg: label efficiency", {}, [], notes=notes,
                        figures=[("val mIoU against the labeled fraction", svg)])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("msrc21_imagenet", "synthetic"))
    parser.add_argument("--data", type=Path, help="dataset folder (default ../shared/data/msrc21)")
    parser.add_argument("--fractions", nargs="+", default=list(FRACTIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs side by side, cpu_count // jobs threads each"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    args = parser.parse_args()
    found = msrc21_or_synthetic(args.dataset, args.data)
    if found is None:
        return 0
    data, init = found
    tasks = []
    for variant in args.variants:
        for fraction in (
            args.fractions if variant not in ABLATIONS else [f for f in args.fractions if f == MAIN]
        ):
            for seed in args.seeds if fraction == MAIN else args.seeds[:1]:
                tasks.append((args.dataset, data, variant, fraction, seed, args.overrides))
    out = RESULTS / f"pseudoseg_{args.dataset}.json"
    runs: dict = json.loads(out.read_text()).get("runs", {}) if out.is_file() else {}
    start = time.perf_counter()
    text = ""
    for (task,), result in run_tasks(_call, [(t,) for t in tasks], args.jobs):
        _, _, variant, fraction, seed, _ = task
        runs.setdefault(variant, {}).setdefault(fraction, {})[str(seed)] = result
        text = table(runs, init)
        write_results(out, {"init": init, "overrides": args.overrides, "table": text, "runs": runs,
                            "wall_seconds_this_call": round(time.perf_counter() - start, 1)}, args.jobs)  # fmt: skip
    report = label_efficiency_report(RESULTS / f"pseudoseg_{args.dataset}", runs, init, text)
    print(text)
    print(f"wall time this call: {(time.perf_counter() - start) / 60:.1f} min; written: {out}, {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
