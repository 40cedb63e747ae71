"""Helpers the benchmark scripts share (they run as ``python benchmarks/<name>.py``, which puts this folder
on the import path)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def training_speed(run_dir: Path, stage: str) -> float | None:
    """Mean images/s the trainer logged for ``stage`` (its first log line, which holds the warm-up, left out)."""
    speeds = [r["images_per_s"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
              if r.get("stage") == stage and "images_per_s" in r]  # fmt: skip
    speeds = speeds[1:] or speeds
    return float(np.mean(speeds)) if speeds else None


def mean_std(values: Iterable[float | None]) -> str:
    """``mean +- std`` (sample std) of the values that are not None; one value alone; "" for none."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}"


def seed_overrides(seed: int) -> list[str]:
    """The config overrides that seed every trained network of a CAM-family run."""
    return [f"train.seed={seed}", f"boundary.train.seed={seed}", f"segmenter.train.seed={seed}"]


def share_run(base: Path, dest: Path, folders: Iterable[str] = (), checkpoints: Iterable[str] = (),
              stages: Iterable[str] | None = None) -> None:  # fmt: skip
    """Make ``dest`` a run folder whose upstream stages are ``base``'s, so the pipeline finds them done: the
    artifact ``folders`` and the ``checkpoints`` (stage names) hard-linked (none of it is written again),
    ``classes.json`` copied, and ``stages.json`` copied whole with ``metrics.json`` (``stages=None``) or
    reduced to the named ``stages``. Nothing happens when ``dest`` already has a ``stages.json``."""
    if (dest / "stages.json").is_file():
        return  # made before: its own stages.json says what is done
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "checkpoints").mkdir(parents=True)
    for folder in folders:
        if (base / folder).is_dir():
            shutil.copytree(base / folder, tmp / folder, copy_function=os.link)
    for name in checkpoints:
        for src in (base / "checkpoints").glob(f"{name}_*.pt"):
            os.link(src, tmp / "checkpoints" / src.name)
    shutil.copy2(base / "classes.json", tmp / "classes.json")
    if stages is None:
        for name in ("stages.json", "metrics.json"):
            shutil.copy2(base / name, tmp / name)
    else:
        state = json.loads((base / "stages.json").read_text())
        (tmp / "stages.json").write_text(json.dumps({k: state[k] for k in stages}))
    tmp.rename(dest)
