"""What SimFormer's MaskFormer needs to learn on MSRC-21 within a CPU budget (issue 21): each variant runs
stage one of configs/simformer/msrc21.yaml (no crosim, no retraining, no references) on base/novel split 0
(``--splits``: others) and scores val mIoU (all, base and novel classes).

    lesseg weights import mobilenetv2_100 weights/mobilenetv2_100.pth       # once
    .venv/bin/python benchmarks/simformer_recipe.py --jobs 2                 # every variant
    .venv/bin/python benchmarks/simformer_recipe.py --only lr1e-3 --jobs 2   # some of them

Seed 0 (``--seeds``: others), ImageNet init. The official optimiser (AdamW lr 1e-4, backbone x0.1,
clipping 0.01) and decoder (100 queries, 6 layers, dropout 0.1) are made for 160k iterations; here they
get 264 steps. The shipped config uses lr 1e-3 with 25 queries, 3 layers, no dropout and learned query
features (``lr1e-3_small_decoder_learned_queries``). Results: benchmarks/results/simformer_recipe_msrc21.json
(one entry per variant, kept across calls); finished runs are not trained again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import msrc21_or_synthetic, run_tasks, training_speed, write_results

from lesseg.api import run
from lesseg.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "simformer" / "msrc21.yaml"
OUT = Path(__file__).parent / "results" / "simformer_recipe_msrc21.json"
SEARCH = ["method.crosim=false", "method.retrain=false", "eval.references=false"]
#: the official decoder (100 queries, 6 layers, dropout 0.1) and the shipped one: each variant names every
#: setting it tests, so that its run stays what it was when the shipped config changes
OFFICIAL = ["method.num_queries=100", "method.dec_layers=6", "method.dropout=0.1", "method.query_init=zeros"]
SMALL = ["method.num_queries=25", "method.dec_layers=3", "method.dropout=0", "method.query_init=zeros"]
NO_DISTILL = ["method.crosim=true", "method.distill_weight=0"]
PAIRS_ONLY = [*NO_DISTILL, "method.similarity_weight=0"]
#: the shipped recipe (msrc21.yaml's optimiser and decoder)
LEARNED = ["optim.lr=1e-3", *SMALL, "method.query_init=learned"]
VARIANTS = {
    "official_lr1e-4": ["optim.lr=1e-4", *OFFICIAL],
    "lr3e-4": ["optim.lr=3e-4", *OFFICIAL],
    "lr1e-3": ["optim.lr=1e-3", *OFFICIAL],
    "lr1e-3_queries25": ["optim.lr=1e-3", *OFFICIAL, "method.num_queries=25"],
    "lr1e-3_3_layers": ["optim.lr=1e-3", *OFFICIAL, "method.dec_layers=3"],
    "lr1e-4_small_decoder": ["optim.lr=1e-4", *SMALL],
    "lr1e-3_small_decoder": ["optim.lr=1e-3", *SMALL],
    "lr1e-3_small_decoder_12_epochs": ["optim.lr=1e-3", *SMALL, "train.epochs=12"],
    "lr1e-3_small_decoder_warmup30": ["optim.lr=1e-3", *SMALL, "optim.warmup_steps=30"],
    "lr5e-4_small_decoder": ["optim.lr=5e-4", *SMALL],
    # Mask2Former's learned query features: the queries differ from the first layer on, not only by position
    "lr1e-3_small_decoder_learned_queries": LEARNED,  # shipped
    "lr1e-3_learned_queries": ["optim.lr=1e-3", *OFFICIAL, "method.query_init=learned"],
    # with learned queries: what the complementary loss adds, and what crosim's pairs alone do
    "learned_queries_no_complementary": [*LEARNED, "method.complementary_weight=0"],
    "learned_queries_pairs_only": [*LEARNED, *PAIRS_ONLY],
    # crosim's pairs and SimNet without its distillation: what the pair sampler alone does to stage one
    "lr1e-3_small_decoder_crosim_no_distill": ["optim.lr=1e-3", *SMALL, *NO_DISTILL],
    # the pairs alone: SimNet gets no loss either, so none of its gradient joins the full-model clipping
    "lr1e-3_small_decoder_pairs_only": ["optim.lr=1e-3", *SMALL, *PAIRS_ONLY],
    "lr1e-3_small_decoder_pairs_only_warmup30": [
        "optim.lr=1e-3",
        *SMALL,
        *PAIRS_ONLY,
        "optim.warmup_steps=30",
    ],
}


def key(name: str, split: int, seed: int = 0) -> str:
    """The variant's entry (and run name): split 0 and seed 0 keep the bare name."""
    return name + (f"_split{split}" if split else "") + (f"_seed{seed}" if seed else "")


def one_run(name: str, data: Path, epochs: int, overrides: list[str], split: int = 0, seed: int = 0) -> dict:
    cfg = load_config(CONFIG, [f"name=simformer_recipe_{key(name, split, seed)}", f"data.root={data}",
                               f"train.epochs={epochs}", f"data.novel_seed={split}", f"train.seed={seed}",
                               *SEARCH, *overrides])  # fmt: skip
    start = time.perf_counter()
    run_dir = run(cfg, log=lambda _: None)
    seg = json.loads((run_dir / "metrics.json").read_text())["segmenter"]
    stages = json.loads((run_dir / "stages.json").read_text())
    return {"variant": name, "split": split, "seed": seed, "overrides": overrides, "epochs": cfg.train.epochs,
            "miou": seg["miou"], "base": seg["subsets"]["base"], "novel": seg["subsets"]["novel"],
            # a collapsed decoder (every query the same mask) scores one or two classes
            "classes_iou_above_0.05": sum(1 for v in seg["per_class_iou"].values() if v and v > 0.05),
            "train_images_per_s": training_speed(run_dir, "train"), "train_seconds": stages["train"]["seconds"],
            "wall_s": round(time.perf_counter() - start, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=6, help="train.epochs unless a variant sets it")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to run (default: all)")
    parser.add_argument(
        "--splits", type=int, nargs="+", default=[0], help="data.novel_seed values (default 0)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed values (default 0)")
    args = parser.parse_args()
    found = msrc21_or_synthetic("msrc21_imagenet", None)
    if found is None:
        return 0
    data, init = found
    names = args.only or list(VARIANTS)
    tasks = [(name, data, args.epochs, VARIANTS[name], split, seed)
             for seed in args.seeds for split in args.splits for name in names]  # fmt: skip
    for task, result in run_tasks(one_run, tasks, args.jobs):
        entry = key(task[0], task[4], task[5])
        # read again before each write: another call may have added its variants meanwhile
        results = json.loads(OUT.read_text())["variants"] if OUT.is_file() else {}
        results[entry] = result
        print(f"{entry:<20} epochs {result['epochs']:>2}  all {result['miou']:.3f}  base {result['base']:.3f}  "
              f"novel {result['novel']:.3f}  classes > 0.05: {result['classes_iou_above_0.05']}  "
              f"{result['train_seconds']:.0f} s", flush=True)  # fmt: skip
        write_results(OUT, {"init": init, "search": SEARCH, "variants": results}, args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
