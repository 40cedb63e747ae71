"""CAM refinement (issue 5): CAM, CAM + CRF, random walk and random walk + CRF as pseudo-label sources.

    .venv/bin/python benchmarks/refinement.py synthetic [--seeds 0 1 2] [KEY=VALUE ...]   # both modes
    .venv/bin/python benchmarks/refinement.py msrc21 [--data ../shared/data/msrc21] [--seeds 0]

For each scene set (synthetic: the demo's scenes with and without a background class; msrc21) and seed
(train.seed, boundary.train.seed and segmenter.train.seed), one run trains the classifier, infers CAMs,
trains IRN's boundary branch, walks the CAMs and scores the four pseudo-label sources on train
(``refine_eval``), then trains a DeepLabv3+ on the plain CAM pseudo-labels. Each other source gets its own
segmenter in a copy of that run (classifier, CAMs, boundary branch and walked maps hard-linked, so only the
pseudo-labels and the segmenter are computed again). Every network starts from random init: nothing can be
downloaded here.

Prints per source: pseudo-label mIoU and coverage on train and segmenter mIoU on val, mean +- std over
the seeds, and the stage times; writes benchmarks/results/refinement_<dataset>.json. Finished stages are
not run again, so a killed benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import mean_std, run_tasks, seed_overrides, share_run, write_results

from lesseg.api import run
from lesseg.config import load_config
from lesseg.data.synth import generate
from lesseg.eval import read_metrics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"

#: pseudo-label source: its config overrides (the label CRF runs Puzzle-CAM's README's 1 iteration).
VARIANTS = {
    "cam": ["pseudo_labels.source=cams", "pseudo_labels.crf_iterations=0"],
    "cam_crf": ["pseudo_labels.source=cams", "pseudo_labels.crf_iterations=1"],
    "random_walk": ["pseudo_labels.source=random_walk", "pseudo_labels.crf_iterations=0"],
    "random_walk_crf": ["pseudo_labels.source=random_walk", "pseudo_labels.crf_iterations=1"],
}
#: What a variant's copy shares with the base run (hard links: none of it is written again).
SHARED_FOLDERS = ("cams", "affinity_labels", "random_walk")
SHARED_CHECKPOINTS = ("classifier", "boundary")


def one_variant(config: str, data: Path, name: str, seed: int, overrides: list[str], variant: str,
                base_dir: Path | None) -> dict:  # fmt: skip
    """One pseudo-label source's run: the base run (``base_dir`` None, source ``cam``) or a copy of it."""
    run_name = f"{name}_s{seed}" + ("" if variant == "cam" else f"_{variant}")
    # the base run evaluates every source's pseudo-labels and the references; copies skip both
    evals = ["eval.refinement=true"] if variant == "cam" else ["eval.references=false"]
    common = [f"data.root={data}", *seed_overrides(seed), *overrides]
    cfg = load_config(ROOT / config, [f"name={run_name}", *common, *VARIANTS[variant], *evals])
    if base_dir is not None:
        share_run(base_dir, Path(cfg.run_dir) / run_name, SHARED_FOLDERS, SHARED_CHECKPOINTS)
    start = time.perf_counter()
    run_dir = run(cfg)
    wall = time.perf_counter() - start
    m = read_metrics(run_dir)
    stages = json.loads((run_dir / "stages.json").read_text())
    out = {
        "run_dir": str(run_dir),
        "pseudo_label_miou": m["pseudo_labels"].get("miou"),
        "coverage": m["pseudo_labels"]["coverage"],
        "segmenter_miou": m["segmenter"]["miou"],
        "wall_seconds_this_call": wall,
        "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
    }
    if variant == "cam":
        out["refine_eval"] = m.get("refinement")
    return out


def one_seed(config: str, data: Path, name: str, seed: int, overrides: list[str], jobs: int = 1) -> dict:
    """The base run, then its copies (``jobs`` of them side by side: they share only read-only files)."""
    base = one_variant(config, data, name, seed, overrides, "cam", None)
    out = {"cam": {k: v for k, v in base.items() if k != "refine_eval"}, "refine_eval": base["refine_eval"]}
    tasks = [(config, data, name, seed, overrides, v, Path(base["run_dir"])) for v in VARIANTS if v != "cam"]
    for task, result in run_tasks(one_variant, tasks, jobs):
        out[task[5]] = result
    return out


def table(results: dict[str, dict[int, dict]]) -> str:
    head = ("scenes", "pseudo-labels", "seeds", "PL mIoU (train)", "PL coverage", "segmenter mIoU (val)")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for scenes, by_seed in results.items():
        for variant in VARIANTS:
            rows = [r[variant] for r in by_seed.values() if variant in r]
            lines.append(" | ".join([
                scenes, variant, str(len(rows)),
                mean_std([r["pseudo_label_miou"] for r in rows]), mean_std([r["coverage"] for r in rows]),
                mean_std([r["segmenter_miou"] for r in rows]),
            ]))  # fmt: skip
    return "\n".join(lines)


def stage_times(results: dict[str, dict[int, dict]]) -> str:
    names = ("classifier", "cams", "affinity_labels", "boundary", "random_walk", "refine_eval", "segmenter")
    lines = [" | ".join(("scenes", *names)), " | ".join("---" for _ in range(len(names) + 1))]
    for scenes, by_seed in results.items():
        base = [r["cam"]["stage_seconds"] for r in by_seed.values() if "cam" in r]
        lines.append(
            " | ".join([scenes, *(f"{np.mean([b.get(n, np.nan) for b in base]):.0f} s" for n in names)])
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("msrc21", "synthetic"))
    parser.add_argument("--data", type=Path, help="dataset folder (msrc21: default ../shared/data/msrc21)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2; msrc21: 0)")
    parser.add_argument("--modes", nargs="+", default=["textured", "none"], help="synthetic background modes")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="pseudo-label variants trained side by side (after the base run), 1 thread each when > 1",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    results: dict[str, dict[int, dict]] = {}
    out = RESULTS / f"refinement_{args.dataset}.json"
    if args.dataset == "msrc21":
        data = args.data or ROOT.parent / "shared" / "data" / "msrc21"
        if not (data / "images").is_dir():
            print(f"MSRC-21 not found at {data}; pass --data PATH (nothing to measure, exiting)")
            return 0
        jobs = [("msrc21", "configs/cam/msrc21.yaml", data.resolve(), "bench_refine_msrc21")]
        seeds = args.seeds or [0]
    else:
        jobs = []
        for mode in args.modes:
            data = ROOT / "runs" / "bench_data" / f"synthetic_{mode}"
            if not (data / "synth.json").is_file():
                generate(data, images=200, classes=8, size=128, seed=0, background=mode)
            jobs.append((f"synthetic_{mode}", "configs/cam/synthetic.yaml", data, f"bench_refine_{mode}"))
        seeds = args.seeds or [0, 1, 2]
    for seed in seeds:  # seed-major: an interrupted benchmark has every scene set at the same depth
        for scenes, config, data, name in jobs:
            results.setdefault(scenes, {})[seed] = one_seed(
                config, data, name, seed, args.overrides, args.jobs
            )
            text = table(results)
            write_results(
                out, {"table": text, "stage_times": stage_times(results), "runs": results}, args.jobs
            )
    print(text)
    print(stage_times(results))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
