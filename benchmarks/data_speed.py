"""Speed of the data layer: synthetic scene generation, `data check`, and augmented loading.

    .venv/bin/python benchmarks/data_speed.py [--data ../shared/data] [--images 500]

Prints a table and writes benchmarks/results/data_speed.json. The real datasets are optional: rows that
need one say so and are skipped when it is missing. No model is involved, so nothing here depends on weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lesseg.data import read_dataset
from lesseg.data import transforms as T
from lesseg.data.check import check_dataset
from lesseg.data.dataset import SegDataset
from lesseg.data.synth import generate

RESULTS = Path(__file__).parent / "results" / "data_speed.json"


def time_loader(source, workers: int, epochs: int = 1) -> float:
    """Images per second through SegDataset with a CAM-style augmentation (rescale, crop 224, flip, jitter)."""
    tf = T.Compose([T.RandomRescale(long_side=(160, 320)), T.RandomCrop(224), T.RandomHorizontalFlip(),
                    T.ColorJitter(), T.Normalize()])  # fmt: skip
    ds = SegDataset(source, "train", transform=tf, seed=0)
    loader = DataLoader(ds, batch_size=16, num_workers=workers, shuffle=True, persistent_workers=False)
    start, n = time.perf_counter(), 0
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in loader:
            n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[dict] = []

    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("textured", "none"):
            stats = generate(
                Path(tmp) / mode, images=args.images, classes=8, seed=0, background=mode, size=128
            )
            rows.append(
                {
                    "task": f"synth {args.images} images 128px, background {mode}",
                    "seconds": stats.seconds,
                    "images_per_s": args.images / stats.seconds,
                }
            )
        synth_source = read_dataset(Path(tmp) / "textured")
        for workers in (0, 2):
            rate = time_loader(synth_source, workers)
            rows.append(
                {
                    "task": f"load+augment synthetic train (crop 224), {workers} workers",
                    "seconds": None,
                    "images_per_s": rate,
                }
            )

        for name in ("msrc21", "camvid"):
            root = args.data / name
            if not root.is_dir():
                rows.append({"task": f"data check {name}", "skipped": f"{root} not found"})
                continue
            start = time.perf_counter()
            report = check_dataset(read_dataset(root))
            seconds = time.perf_counter() - start
            n = sum(len(v) for v in report.source.splits.values())
            rows.append(
                {
                    "task": f"data check {name} ({n} images, {len(report.problems)} problems)",
                    "seconds": seconds,
                    "images_per_s": n / seconds,
                }
            )
            for workers in (0, 2):
                rate = time_loader(report.source, workers)
                rows.append(
                    {
                        "task": f"load+augment {name} train (crop 224), {workers} workers",
                        "seconds": None,
                        "images_per_s": rate,
                    }
                )

    print(f"{'task':<62} {'seconds':>8} {'images/s':>9}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['task']:<62} skipped: {r['skipped']}")
            continue
        secs = f"{r['seconds']:.2f}" if r["seconds"] is not None else "-"
        print(f"{r['task']:<62} {secs:>8} {r['images_per_s']:>9.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
