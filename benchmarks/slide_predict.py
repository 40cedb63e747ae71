"""Whole-image vs sliding-window prediction on large images: time and peak memory (issue 17).

    python benchmarks/slide_predict.py                 # a DeepLabv3+ of configs/cam/synthetic.yaml, random init
    python benchmarks/slide_predict.py --run runs/demo --mosaic demo_data/textured
        # a trained run's segmenter on a mosaic of its dataset's images at their own scale, both modes
        # scored (mIoU) against the mosaic of their masks

Each (size, mode) runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own; the table
gives that peak and how much of it the prediction added over the process before it started (model loaded,
image in memory). Sizes: 1, 4 and 12 megapixels (4:3). Modes: ``whole`` (one forward pass over the image,
what `lesseg predict` did before) and ``sliding`` (windows of --window px every --stride px, the run's
default above ``segmenter.test_slide_above`` = 4 MP). Writes benchmarks/results/slide_predict.json
(slide_predict_mosaic.json with --mosaic).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_results

SIZES = {"1MP": (866, 1155), "4MP": (1732, 2309), "12MP": (3000, 4000)}  # (height, width)
OUT = Path(__file__).parent / "results" / "slide_predict.json"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def mosaic(root: Path, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """An image and its mask tiled from a folder-layout dataset's images and masks (sorted, repeated)."""
    from lesseg.data import read_dataset
    from lesseg.data.imageio import load_image

    source = read_dataset(root)
    records = [r for r in source.split("val") if r.mask is not None] or source.split("train")
    image, mask = np.zeros((height, width, 3), np.uint8), np.full((height, width), 255, np.uint8)
    y, k = 0, 0
    while y < height:
        x, row = 0, 0
        while x < width:
            r = records[k % len(records)]
            k += 1
            tile, labels = load_image(r.image), source.load_mask(r)
            h, w = min(tile.shape[0], height - y), min(tile.shape[1], width - x)
            image[y : y + h, x : x + w] = tile[:h, :w]
            mask[y : y + h, x : x + w] = labels[:h, :w]
            x, row = x + w, max(row, h)
        y += row
    return image, mask


def child(
    run: str, size: str, mode: str, window: int, stride: int, mask_out: str, images: str | None
) -> None:
    """Predict one image in this process and print the measurements as JSON."""
    import torch

    from lesseg.api import load_run

    height, width = SIZES[size]
    slide_above = 0.0 if mode == "sliding" else float("inf")
    predictor = load_run(run, device="cpu", slide_above=slide_above, window=window, stride=stride)
    if images:
        image = mosaic(Path(images), height, width)[0]
    else:
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    before = _rss_mb()
    start = time.perf_counter()
    mask = predictor.predict(image)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(mask_out, mask.astype(np.uint8))
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(peak), "added_mb": round(peak - before),
                      "threads": torch.get_num_threads()}))  # fmt: skip


def make_random_run(folder: Path) -> Path:
    """A run folder with the synthetic config's DeepLabv3+ at its seeded initial weights (8 classes)."""
    import torch

    from lesseg.config import load_config, save_config
    from lesseg.data.classes import ClassInfo
    from lesseg.engine.checkpoint import save_checkpoint
    from lesseg.stages.segmenter import build_segmenter

    cfg = load_config(Path(__file__).parents[1] / "configs" / "cam" / "synthetic.yaml")
    save_config(cfg, folder / "config.yaml")
    classes = ClassInfo(("background", *(f"class{i}" for i in range(1, 8))), background="background")
    (folder / "classes.json").write_text(json.dumps(classes.to_dict()))
    torch.manual_seed(0)
    save_checkpoint(folder / "checkpoints" / "segmenter_final.pt",
                    {"model": build_segmenter(cfg.segmenter.model, 8).state_dict()})  # fmt: skip
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run folder (default: a random-init DeepLabv3+)")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=768)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument(
        "--mosaic", help="a folder-layout dataset: predict a mosaic of its images (else noise)"
    )
    parser.add_argument("--child", nargs=3, metavar=("RUN", "SIZE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--mask-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.window, args.stride, args.mask_out, args.mosaic)
        return

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_random_run(Path(tmp) / "run")
        init = "trained run " + str(args.run) if args.run else "random init"
        rows = []
        for size in args.sizes:
            masks = {}
            for mode in ("whole", "sliding"):
                mask_out = str(Path(tmp) / f"{size}_{mode}.npy")
                cmd = [sys.executable, __file__, "--child", str(run), size, mode, "--window", str(args.window),
                       "--stride", str(args.stride), "--mask-out", mask_out]  # fmt: skip
                cmd += ["--mosaic", args.mosaic] if args.mosaic else []
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = {"size": size, "mode": mode, **json.loads(done.stdout.strip().splitlines()[-1])}
                masks[mode] = np.load(mask_out)
                rows.append(row)
                print(f"{size:>5} {mode:>8}: {row['seconds']:7.1f} s, peak {row['peak_rss_mb']:6d} MiB "
                      f"(+{row['added_mb']} MiB by the prediction)", flush=True)  # fmt: skip
            agree = float((masks["whole"] == masks["sliding"]).mean())
            rows[-1]["agreement_with_whole"] = round(agree, 4)
            if args.mosaic:
                from lesseg.data import read_dataset
                from lesseg.eval import ConfusionMatrix

                truth = mosaic(Path(args.mosaic), *SIZES[size])[1]
                names = read_dataset(args.mosaic).classes.classes
                for row, mode in zip(rows[-2:], ("whole", "sliding")):
                    cm = ConfusionMatrix(len(names), ignore_index=255)
                    cm.update(masks[mode].astype(np.int64), truth.astype(np.int64))
                    row["miou"] = round(cm.metrics(names).miou, 4)
                print(f"{size:>5}: mIoU whole {rows[-2]['miou']:.3f}, sliding {rows[-1]['miou']:.3f}; "
                      f"masks agree on {agree:.1%} of pixels", flush=True)  # fmt: skip
    print(f"\nwindow {args.window}, stride {args.stride}; {init}; image: {args.mosaic or 'noise'}; one process "
          "per row, CPU")  # fmt: skip
    print(
        f"{'size':>5} {'mode':>8} {'seconds':>8} {'peak MiB':>9} {'added MiB':>10} {'time x':>7} {'mem x':>6}"
    )
    for r in rows:
        base = next(b for b in rows if b["size"] == r["size"] and b["mode"] == "whole")
        r["time_vs_whole"] = round(r["seconds"] / base["seconds"], 2)
        r["added_vs_whole"] = round(r["added_mb"] / max(1, base["added_mb"]), 3)
        print(f"{r['size']:>5} {r['mode']:>8} {r['seconds']:8.1f} {r['peak_rss_mb']:9d} {r['added_mb']:10d} "
              f"{r['time_vs_whole']:7.2f} {r['added_vs_whole']:6.2f}")  # fmt: skip
    image = f"mosaic of {args.mosaic}" if args.mosaic else "uniform noise"
    out = OUT.with_name(f"{OUT.stem}_mosaic.json") if args.mosaic else OUT
    write_results(
        out, {"init": init, "image": image, "window": args.window, "stride": args.stride, "rows": rows}
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
