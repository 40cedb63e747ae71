"""CAM inference images/s beside the raw backbone forward over the same input tensors, in one process.

    .venv/bin/python benchmarks/cam_speed.py runs/bench_msrc21 [--images 48] [--repeats 2]

Uses a finished run's classifier and config (scales, flips, batch size) on the first N training images.
``cam inference`` is ``lesseg.refine.infer_cams`` on decoded images: resizing, normalising, padding, the
forward passes, ReLU, flip-back, upsampling, per-class normalisation. ``raw forward`` is the same network's
forward passes alone over tensors of exactly the shapes infer_cams builds (images sorted by size, grouped by
cams.batch_size, padded to the group's largest scaled size, flips doubling the batch). The two alternate
``--repeats`` times and the best time of each counts, so both see the same machine state; their ratio is
the overhead of the CAM machinery. Prints a table and writes benchmarks/results/cam_speed_<run>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lesseg.config import load_config
from lesseg.data import read_dataset
from lesseg.data.imageio import load_image
from lesseg.engine.checkpoint import load_checkpoint
from lesseg.methods import get_method
from lesseg.refine import infer_cams

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder whose classifier stage finished")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    weights = args.run / "checkpoints" / "classifier_final.pt"
    if not weights.is_file():
        print(f"{weights} not found: run the pipeline first (nothing to measure, exiting)")
        return 0
    cfg = load_config(args.run / "config.yaml")
    source = read_dataset(cfg.data.root, cfg.data.format, **cfg.data.options)
    output_of = {c: k for k, c in enumerate(source.classes.tag_indices)}
    model = get_method(cfg.method.name)(cfg, source).build_model().eval()
    model.load_state_dict(load_checkpoint(weights)["model"])
    records = [r for r in source.split(cfg.data.train_split) if source.tags_of(r)][: args.images]
    images = [load_image(r.image) for r in records]
    tags = [[output_of[c] for c in source.tags_of(r)] for r in records]
    c = cfg.cams
    flips = 2 if c.flip else 1
    sizes = sorted(im.shape[:2] for im in images)
    shapes = []
    for i in range(0, len(sizes), c.batch_size):
        group = sizes[i : i + c.batch_size]
        for s in c.scales:
            h = max(max(1, round(s * gh)) for gh, _ in group)
            w = max(max(1, round(s * gw)) for _, gw in group)
            shapes.append((flips * len(group), 3, h, w))

    def cam_inference() -> None:
        infer_cams(model, images, tags, scales=c.scales, flip=c.flip, batch_size=c.batch_size)

    @torch.inference_mode()
    def raw_forward() -> None:
        for shape in shapes:
            model(torch.zeros(shape))

    best = {"cam_inference": float("inf"), "raw_forward": float("inf")}
    raw_forward()  # warm-up (allocator, kernel choice)
    for _ in range(args.repeats):
        for name, fn in (("cam_inference", cam_inference), ("raw_forward", raw_forward)):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    n = len(images)
    result = {
        "run": str(args.run),
        "images": n,
        "scales": list(c.scales),
        "flip": c.flip,
        "batch_size": c.batch_size,
        "backbone": cfg.model.backbone,
        "output_stride": cfg.model.output_stride,
        "threads": torch.get_num_threads(),
        "megapixels_per_image": sum(s[0] * s[2] * s[3] for s in shapes) / n / 1e6,
        "cam_inference_images_per_s": n / best["cam_inference"],
        "raw_forward_images_per_s": n / best["raw_forward"],
        "ratio": best["raw_forward"] / best["cam_inference"],
    }
    print("| run | images | Mpx/image | CAM inference img/s | raw forward img/s | ratio |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.run.name} | {n} | {result['megapixels_per_image']:.2f} | "
          f"{result['cam_inference_images_per_s']:.2f} | {result['raw_forward_images_per_s']:.2f} | "
          f"{result['ratio']:.2f} |")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cam_speed_{args.run.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
