"""k-means: ours (torch) against its peers on the same data and the same initial centroids.

    python benchmarks/kmeans.py                    # 1M x 128, K = 27 (PiCIE's COCO-Stuff-27 shape)
    python benchmarks/kmeans.py --rows 200000      # smaller

Rows: our Lloyd vs faiss-cpu's (20 iterations each), our mini-batch vs scikit-learn's MiniBatchKMeans (one
pass over the same batches, in the same order; sklearn's random reassignment of small clusters off, so both
run Sculley's update). Each method runs in its own process (peak memory = its high-water mark above the
data it was handed); inertia is computed by one function on the full data for all. Needs the ``bench``
extra (``pip install -e '.[bench]'``); a peer that is missing is reported as such. The data: unit vectors
around K random directions (PiCIE's features are L2-normalised), seeded.

Writes benchmarks/results/kmeans_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lesseg.cluster import KMeans, MiniBatchKMeans, assign, init_centroids

RESULTS = Path(__file__).parent / "results"


def make_data(rows: int, dim: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    x = centres[torch.randint(k, (rows,), generator=g)] + 0.08 * torch.randn(rows, dim, generator=g)
    x = torch.nn.functional.normalize(x, dim=1)
    start = init_centroids(x[torch.randperm(rows, generator=g)[:100_000]], k, generator=g)
    return x, start


def _peak_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark (Linux)


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(name: str, data: tuple[int, int, int], iters: int, batch: int, device: str) -> dict:
    x, start = make_data(*data)  # made again in this process: a fresh process per method
    base = _rss_mb()
    _peak_reset()
    t0 = time.perf_counter()
    if name == "ours_lloyd":
        xd = x.to(device)
        c = KMeans(len(start), iterations=iters, tol=0.0).fit(xd, centroids=start.to(device)).centroids.cpu()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    elif name == "faiss_lloyd":
        import faiss

        km = faiss.Kmeans(x.shape[1], len(start), niter=iters, max_points_per_centroid=len(x), seed=0)
        km.train(x.numpy(), init_centroids=start.numpy())
        c = torch.from_numpy(km.centroids)
    elif name == "ours_minibatch":
        xd = x.to(device)
        km = MiniBatchKMeans(len(start)).start(start.to(device), torch.zeros(len(start)))
        for i in range(0, len(xd), batch):
            km.partial_fit(xd[i : i + batch])
        c = km.centroids.cpu()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    elif name == "sklearn_minibatch":
        from sklearn.cluster import MiniBatchKMeans as SkMiniBatch

        km = SkMiniBatch(len(start), init=start.numpy(), n_init=1, batch_size=batch, reassignment_ratio=0.0,
                         compute_labels=False, random_state=0)  # fmt: skip
        data = x.numpy()
        for i in range(0, len(data), batch):
            km.partial_fit(data[i : i + batch])
        c = torch.from_numpy(km.cluster_centers_.astype(np.float32))
    else:
        raise ValueError(name)
    seconds = time.perf_counter() - t0
    peak = _peak_mb() - base
    inertia = float(assign(x, c)[1].double().sum())
    return {"seconds": round(seconds, 3), "peak_mb": round(peak, 1), "inertia": inertia}


def _child(queue, *args) -> None:
    try:
        queue.put(run_one(*args))
    except ImportError as e:
        queue.put({"missing": str(e)})


def measure(name: str, *args) -> dict:
    ctx = mp.get_context("spawn")  # not fork: OpenMP thread pools do not survive a fork
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(queue, name, *args))
    p.start()
    out = queue.get()
    p.join()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=27)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4096, help="mini-batch rows")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    data = (args.rows, args.dim, args.k)
    pairs = [("ours_lloyd", "faiss_lloyd"), ("ours_minibatch", "sklearn_minibatch")]
    rows, results = [], {}
    for ours, peer in pairs:
        for name in (ours, peer):
            device = args.device if name.startswith("ours") else "cpu"
            results[name] = measure(name, data, args.iterations, args.batch, device)
        a, b = results[ours], results[peer]
        if "missing" in b:
            rows.append((ours, a, peer, None))
            continue
        rows.append((ours, a, peer, b))

    print(f"k-means, {args.rows:,} x {args.dim}, K = {args.k}, same initial centroids; ours on {args.device}, "
          f"peers on the CPU ({torch.get_num_threads()} threads)")  # fmt: skip
    print(
        "| method | seconds | peak MB | inertia | peer | peer seconds | peer peak MB | peer inertia | "
        "inertia ours/peer | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ours, a, peer, b in rows:
        if b is None:
            print(f"| {ours} | {a['seconds']:.2f} | {a['peak_mb']:.0f} | {a['inertia']:.1f} | {peer}: not "
                  f"installed (pip install -e '.[bench]') | | | | | |")  # fmt: skip
            continue
        print(f"| {ours} | {a['seconds']:.2f} | {a['peak_mb']:.0f} | {a['inertia']:.1f} | {peer} | "
              f"{b['seconds']:.2f} | {b['peak_mb']:.0f} | {b['inertia']:.1f} | "
              f"{a['inertia'] / b['inertia']:.4f} | {b['seconds'] / a['seconds']:.2f}x |")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"kmeans_{args.device.split(':')[0]}.json"
    payload = {"args": vars(args), "results": results, "python": sys.version.split()[0],
               "torch": torch.__version__, "machine": platform.machine(),
               "threads": torch.get_num_threads()}  # fmt: skip
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(out)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
