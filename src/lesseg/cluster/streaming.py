"""k-means over a stream of feature batches, with memory bounded by one batch plus an initialisation sample.

PiCIE's recipe (its ``run_mini_batch_kmeans``): Lloyd k-means on the first batches initialises the
centroids, then each further batch moves them (mini-batch k-means, Sculley 2010). The official code keeps
every pixel of the first 20 batches of 256 images for the initialisation (~33M vectors, ~17 GB of host RAM);
here the initialisation sees a uniform random sample of at most ``init_sample`` of their rows.

Example:
    >>> import torch
    >>> km = StreamingKMeans(2, init_batches=1, seed=0)
    >>> for _ in range(3):
    ...     km.add(torch.cat([torch.randn(50, 2) * 0.1, torch.randn(50, 2) * 0.1 + 5]))
    >>> sorted(round(float(v)) for v in km.finish()[:, 0])
    [0, 5]
"""

from __future__ import annotations

import torch

from lesseg.cluster.kmeans import KMeans, MiniBatchKMeans, assign

BACKENDS = ("torch", "faiss")


def lloyd(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0, backend: str = "torch",
          init: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Full-batch k-means centroids ``[k, D]`` of ``x``, ``iterations`` Lloyd steps from ``init`` (default:
    k-means++ for ours, faiss's own random rows for faiss): ours on ``x``'s device, or faiss-cpu (the
    ``faiss`` extra)."""
    if backend not in BACKENDS:
        raise ValueError(f"k-means backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        km = KMeans(k, iterations=iterations, tol=0.0, seed=seed, init_sample=len(x))
        return km.fit(x, centroids=init).centroids
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "method.kmeans_backend=faiss needs faiss: pip install 'lesseg[faiss]' (or use the torch backend)"
        ) from None
    data = x.detach().float().cpu().contiguous().numpy()
    km = faiss.Kmeans(data.shape[1], k, niter=iterations, seed=seed, max_points_per_centroid=len(data))
    km.train(data, init_centroids=None if init is None else init.detach().float().cpu().contiguous().numpy())
    return torch.from_numpy(km.centroids).to(x.device, x.dtype)


class StreamingKMeans:
    """Feed batches of rows with :meth:`add`, get the centroids from :meth:`finish`.

    Args:
        k: clusters.
        init_batches: batches whose rows (sampled) initialise the centroids by Lloyd k-means (official 20).
        init_sample: at most this many rows in that sample, drawn uniformly (equal share per batch).
        iterations: Lloyd iterations of the initialisation (official 10).
        seed: seeds the sampling and the initialisation.
        backend: ``torch`` or ``faiss`` for the initialisation.

    ``inertia`` after :meth:`finish`: mean squared distance of the batches added after the initialisation
    (or of the sample, when the stream ended within it) to their centroid at the time they were added.
    """

    def __init__(self, k: int, init_batches: int = 20, init_sample: int = 500_000, iterations: int = 10,
                 seed: int = 0, backend: str = "torch"):  # fmt: skip
        if init_batches < 1 or init_sample < k:
            raise ValueError(
                f"need init_batches >= 1 and init_sample >= k={k}, got {init_batches}, {init_sample}"
            )
        self.k, self.init_batches, self.init_sample = k, init_batches, init_sample
        self.iterations, self.seed, self.backend = iterations, seed, backend
        self.generator = torch.Generator().manual_seed(seed)
        self.sample: list[torch.Tensor] = []
        self.batches = 0
        self.online = MiniBatchKMeans(k, seed=seed)
        self._sq_sum, self._rows = 0.0, 0
        self.inertia = float("nan")

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        self.batches += 1
        if self.online.centroids is None:
            share = -(-self.init_sample // self.init_batches)
            if len(x) > share:
                x = x[torch.randperm(len(x), generator=self.generator)[:share].to(x.device)]
            self.sample.append(x)
            if self.batches == self.init_batches:
                self._initialise()
            return
        _, d = assign(x, self.online.centroids)
        self._sq_sum, self._rows = self._sq_sum + float(d.sum()), self._rows + len(x)
        self.online.partial_fit(x)

    def _initialise(self) -> None:
        sample = torch.cat(self.sample)
        self.sample = []
        if len(sample) < self.k:
            raise ValueError(f"k-means needs at least k={self.k} feature vectors, got {len(sample)}")
        centroids = lloyd(sample, self.k, self.iterations, self.seed, self.backend).to(sample.device)
        labels, d = assign(sample, centroids)
        self.online.start(centroids, torch.bincount(labels, minlength=self.k))
        self._init_inertia = float(d.mean())

    def finish(self) -> torch.Tensor:
        if self.online.centroids is None:
            if not self.sample:
                raise ValueError("k-means got no data")
            self._initialise()
        self.inertia = self._sq_sum / self._rows if self._rows else self._init_inertia
        return self.online.centroids.clone()
