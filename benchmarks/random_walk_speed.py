"""Time and peak memory of IRN's random walk (`lesseg.refine.random_walk`) per image.

    .venv/bin/python benchmarks/random_walk_speed.py [--grid 128] [--classes 3] [--repeats 3] [--threads 1 2]

A 512x512 image gives IRN's stride-4 grid of 128x128 pixels; the walk uses the defaults (radius 5, beta 10,
exp_times 8, i.e. 256 sparse steps). The CPU runs with 1 thread and with torch's default thread count (tiny
sparse products scale poorly, and badly on a busy machine). Each run is a fresh subprocess so that its
memory is its own:

* CPU: resident-set growth, ``ru_maxrss`` after the walk minus the resident size (``/proc/self/statm``)
  just before it (tracemalloc does not see torch's allocations);
* CUDA (when available): ``torch.cuda.max_memory_allocated`` minus the memory allocated before. On CUDA the
  dense IRN form (``random_walk_dense``) is timed as well for comparison; on CPU it would take minutes.

Prints a table and writes benchmarks/results/random_walk_speed.json, with what a dense ``HW x HW`` float32
transition matrix would need.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "random_walk_speed.json"
MIB = 2**20


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_bytes() -> int:
    """Current resident set size (Linux); falls back to the high-water mark elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def child(device: str, grid: int, classes: int, repeats: int, threads: int | None) -> dict:
    """One device, in its own process: memory of the first (cold) walk, then the median of ``repeats``."""
    from lesseg.refine.affinity import affinities_from_boundary, pair_offsets
    from lesseg.refine.random_walk import random_walk, random_walk_dense, transition_matrix

    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    # Content does not change the cost (the sparsity pattern is fixed by the radius); make it plausible:
    # mostly low boundary probability with some strong edges.
    boundary = (torch.rand(grid, grid, generator=gen) ** 4).to(device)
    cams = torch.rand(classes, grid, grid, generator=gen).to(device)
    random_walk(cams[:, :16, :16], boundary[:16, :16], exp_times=1)  # load kernels / libraries first
    _sync(device)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = random_walk(cams, boundary)
        _sync(device)
        peak = torch.cuda.max_memory_allocated() - base
        mem_method = "torch.cuda.max_memory_allocated growth"
    else:
        before, maxrss_before = _rss_bytes(), _maxrss_bytes()
        out = random_walk(cams, boundary)
        peak = _maxrss_bytes() - before
        mem_method = "ru_maxrss growth over the RSS before"
        if _maxrss_bytes() == maxrss_before:
            mem_method += " (upper bound: the high-water mark predates the walk)"
    del out

    def timed(fn) -> float:
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    offsets = pair_offsets(5)

    def build() -> torch.Tensor:
        return transition_matrix(affinities_from_boundary(boundary[None, None], 5), offsets, 10.0)

    trans = build()
    nnz = trans._nnz()
    row = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": torch.get_num_threads() if device == "cpu" else None,
        "grid": f"{grid}x{grid}",
        "classes": classes,
        "radius": 5,
        "beta": 10.0,
        "exp_times": 8,
        "sparse_steps": 2**8,
        "nnz_T": nnz,
        "sparse_T_MiB": (nnz * (trans.values().element_size() + 8) + (grid * grid + 1) * 8) / MIB,
        "build_T_s": timed(build),
        "walk_s": timed(lambda: random_walk(cams, boundary)),
        "peak_mem_MiB": peak / MIB,
        "mem_method": mem_method,
    }
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        row["dense_walk_s"] = timed(lambda: random_walk_dense(cams, boundary))
        row["dense_peak_mem_MiB"] = (torch.cuda.max_memory_allocated() - base) / MIB
        row["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=128, help="grid side: image side / 4 (512 -> 128)")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=None,
        help="torch CPU thread counts (default: 1 and torch's)",
    )
    parser.add_argument("--child", choices=("cpu", "cuda"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        threads = args.threads[0] if args.threads else None
        print(json.dumps(child(args.child, args.grid, args.classes, args.repeats, threads)))
        return 0

    thread_counts = args.threads or sorted({1, torch.get_num_threads()})
    runs = [("cpu", t) for t in thread_counts] + ([("cuda", None)] if torch.cuda.is_available() else [])
    rows = []
    for device, threads in runs:
        cmd = [sys.executable, __file__, "--child", device, "--grid", str(args.grid)]
        cmd += ["--classes", str(args.classes), "--repeats", str(args.repeats)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            rows.append({"device": device, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    n = args.grid * args.grid
    dense_bytes = n * n * 4
    print(f"random walk, {args.grid}x{args.grid} grid (a {4 * args.grid}px image), K={args.classes}, "
          f"radius 5, beta 10, exp_times 8")  # fmt: skip
    print(f"{'device':<34} {'threads':>7} {'build T s':>9} {'walk s':>8} {'peak MiB':>9} {'T MiB':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['device']:<34} failed: {r['error']}")
            continue
        threads = str(r["threads"]) if r["threads"] else "-"
        print(f"{r['device'][:34]:<34} {threads:>7} {r['build_T_s']:>9.3f} {r['walk_s']:>8.3f} "
              f"{r['peak_mem_MiB']:>9.1f} {r['sparse_T_MiB']:>7.1f}")  # fmt: skip
        if "dense_walk_s" in r:
            print(f"{'  dense IRN form on the same GPU':<34} {'-':>7} {'-':>9} {r['dense_walk_s']:>8.3f} "
                  f"{r['dense_peak_mem_MiB']:>9.1f} {dense_bytes / MIB:>7.0f}")  # fmt: skip
    print(f"a dense HW x HW float32 matrix: ({n})^2 * 4 bytes = {dense_bytes / MIB:.0f} MiB "
          f"({dense_bytes / 2**30:.2f} GiB), plus as much again for each squaring's product")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "image": f"{4 * args.grid}x{4 * args.grid}",
        "dense_T_bytes": dense_bytes,
    }
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
