"""k-means in torch (CPU or GPU): full-batch Lloyd and mini-batch (Sculley 2010) modes, k-means++ or sampled
initialisation, empty clusters re-seeded. PiCIE clusters pixel features with it every epoch and evaluates
by k-means on the trained features.

Memory stays bounded by what the caller hands over: distances are computed ``chunk_size`` rows at a time
(``||x||^2 - 2 x.c + ||c||^2``), never as an ``N x K`` matrix of the whole data, and the mini-batch mode
takes one batch at a time (:meth:`MiniBatchKMeans.partial_fit`), as PiCIE's online update does.

Example:
    >>> import torch
    >>> x = torch.cat([torch.randn(100, 2) * 0.1 + c for c in (torch.tensor([0.0, 0]), torch.tensor([5.0, 5]))])
    >>> km = KMeans(2, seed=0).fit(x)
    >>> sorted(torch.bincount(km.predict(x)).tolist())
    [100, 100]
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

INITS = ("k-means++", "random")


def _check_data(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        got = (
            f"{x.dtype} tensor of shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        )
        raise ValueError(f"{name} must be a float [N, D] tensor, got a {got}")
    return x


def assign(
    x: torch.Tensor, centroids: torch.Tensor, chunk_size: int = 65536
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid (squared Euclidean) of each row of ``x``: ``(labels [N] int64, sq. distances [N])``,
    computed ``chunk_size`` rows at a time."""
    _check_data(x)
    c = centroids.to(x.device, x.dtype)
    c_sq = (c * c).sum(1)
    labels, dists = [], []
    for start in range(0, len(x), chunk_size):
        part = x[start : start + chunk_size]
        d = (part * part).sum(1, keepdim=True) - 2 * part @ c.T + c_sq
        best, idx = d.min(1)
        labels.append(idx)
        dists.append(best.clamp_min(0))
    if not labels:
        return torch.zeros(0, dtype=torch.long, device=x.device), torch.zeros(0, device=x.device)
    return torch.cat(labels), torch.cat(dists)


def init_centroids(x: torch.Tensor, k: int, method: str = "k-means++", generator: torch.Generator | None = None,
                   chunk_size: int = 65536) -> torch.Tensor:  # fmt: skip
    """``k`` initial centroids from the rows of ``x``: ``k-means++`` (Arthur & Vassilvitskii 2007: each next
    centroid drawn with probability proportional to the squared distance to the nearest chosen one) or
    ``random`` (``k`` distinct rows)."""
    _check_data(x)
    if method not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {method!r}")
    if len(x) < k:
        raise ValueError(f"need at least k={k} points to initialise, got {len(x)}")
    g = generator or torch.Generator().manual_seed(0)
    if method == "random":
        return x[torch.randperm(len(x), generator=g)[:k].to(x.device)].clone()
    first = int(torch.randint(len(x), (1,), generator=g))
    chosen = [x[first]]
    _, d = assign(x, x[first][None], chunk_size)
    for _ in range(1, k):
        total = d.sum()
        if total <= 0:  # fewer distinct points than k: any remaining row
            idx = int(torch.randint(len(x), (1,), generator=g))
        else:
            idx = int(torch.multinomial((d / total).cpu().double(), 1, generator=g))
        chosen.append(x[idx])
        _, d_new = assign(x, x[idx][None], chunk_size)
        d = torch.minimum(d, d_new)
    return torch.stack(chosen).clone()


def _reseed_empty(centroids: torch.Tensor, counts: torch.Tensor, x: torch.Tensor, dists: torch.Tensor) -> int:
    """Move each empty centroid onto the point farthest from its own centroid (a distinct one per empty
    cluster); returns how many were moved."""
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) == 0:
        return 0
    far = torch.topk(dists, min(len(empty), len(dists))).indices
    for e, i in zip(empty.tolist(), far.tolist()):
        centroids[e] = x[i]
    return len(empty)


class KMeans:
    """Full-batch k-means (Lloyd's algorithm).

    Args:
        k: number of clusters.
        iterations: maximum Lloyd iterations (PiCIE's faiss k-means: 20).
        tol: stop when the relative decrease of the inertia is below this.
        init: ``"k-means++"`` or ``"random"``, or pass ``centroids`` to :meth:`fit`.
        init_sample: the initialisation sees at most this many rows (drawn at random).
        seed: seeds the initialisation.
        chunk_size: rows per distance computation (bounds memory to ``chunk_size x k``).

    After :meth:`fit`: ``centroids`` ``[k, D]``, ``inertia`` (sum of squared distances), ``n_iter``,
    ``reseeded`` (empty clusters moved over the run).
    """

    def __init__(self, k: int, iterations: int = 20, tol: float = 1e-4, init: str = "k-means++",
                 init_sample: int = 100_000, seed: int = 0, chunk_size: int = 65536):  # fmt: skip
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.k, self.iterations, self.tol, self.init = k, iterations, tol, init
        self.init_sample, self.seed, self.chunk_size = init_sample, seed, chunk_size
        self.centroids: torch.Tensor | None = None
        self.inertia = float("nan")
        self.n_iter = 0
        self.reseeded = 0

    def fit(self, x: torch.Tensor, centroids: torch.Tensor | None = None) -> KMeans:
        _check_data(x)
        g = torch.Generator().manual_seed(self.seed)
        if centroids is None:
            sample = (
                x
                if len(x) <= self.init_sample
                else x[torch.randperm(len(x), generator=g)[: self.init_sample].to(x.device)]
            )
            c = init_centroids(sample, self.k, self.init, g, self.chunk_size)
        else:
            c = centroids.to(x.device, x.dtype).clone()
            if c.shape != (self.k, x.shape[1]):
                raise ValueError(f"centroids must be [k={self.k}, D={x.shape[1]}], got {list(c.shape)}")
        previous = float("inf")
        for it in range(self.iterations):
            labels, dists = assign(x, c, self.chunk_size)
            inertia = float(dists.sum())
            sums = torch.zeros_like(c).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=self.k)
            filled = counts > 0
            c[filled] = sums[filled] / counts[filled, None].to(x.dtype)
            self.reseeded += _reseed_empty(c, counts, x, dists)
            self.n_iter = it + 1
            if previous - inertia <= self.tol * max(previous, 1e-12) and filled.all():
                break
            previous = inertia
        self.centroids = c
        self.inertia = float(assign(x, c, self.chunk_size)[1].sum())
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.centroids is None:
            raise RuntimeError("fit the k-means before predict")
        return assign(x, self.centroids, self.chunk_size)[0]


class MiniBatchKMeans:
    """Online k-means: each batch moves every centroid towards the mean of its assigned points with step
    ``n_new / n_total`` (its running count; Sculley 2010, and PiCIE's faiss-based update). The first batch
    (or ``centroids``) initialises with k-means++ (or random rows); a centroid that never received a point
    is re-seeded on the current batch's farthest point.

    Args:
        k, init, seed, chunk_size: as :class:`KMeans`.

    ``partial_fit(batch)`` updates; ``fit(batches)`` runs over an iterable of ``[n, D]`` batches;
    ``centroids``, ``counts`` hold the state.
    """

    def __init__(self, k: int, init: str = "k-means++", seed: int = 0, chunk_size: int = 65536):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.k, self.init, self.chunk_size = k, init, chunk_size
        self.generator = torch.Generator().manual_seed(seed)
        self.centroids: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.reseeded = 0

    def start(self, centroids: torch.Tensor, counts: torch.Tensor) -> MiniBatchKMeans:
        """Begin from given centroids ``[k, D]`` that already account for ``counts`` points each (PiCIE:
        the initial k-means and its assignment), so the next batches move them with step n_new / n_total."""
        if centroids.shape[0] != self.k or counts.shape != (self.k,):
            raise ValueError(f"need [k={self.k}, D] centroids and [k] counts, got {list(centroids.shape)}, "
                             f"{list(counts.shape)}")  # fmt: skip
        self.centroids = centroids.clone()
        self.counts = counts.to(centroids.device, torch.float64).clone()
        return self

    def partial_fit(self, batch: torch.Tensor, centroids: torch.Tensor | None = None) -> MiniBatchKMeans:
        _check_data(batch, "batch")
        if self.centroids is None:
            c = (
                centroids
                if centroids is not None
                else init_centroids(batch, self.k, self.init, self.generator, self.chunk_size)
            )
            self.centroids = c.to(batch.device, batch.dtype).clone()
            self.counts = torch.zeros(self.k, dtype=torch.float64, device=batch.device)
        labels, dists = assign(batch, self.centroids, self.chunk_size)
        sums = torch.zeros_like(self.centroids).index_add_(0, labels, batch)
        new = torch.bincount(labels, minlength=self.k).to(self.counts.dtype)
        self.counts += new
        hit = new > 0
        step = (new[hit] / self.counts[hit]).to(batch.dtype)[:, None]
        self.centroids[hit] += step * (sums[hit] / new[hit, None].to(batch.dtype) - self.centroids[hit])
        never = self.counts == 0
        if never.any():
            self.reseeded += _reseed_empty(self.centroids, self.counts.masked_fill(~never, 1), batch, dists)
        return self

    def fit(self, batches: Iterable[torch.Tensor]) -> MiniBatchKMeans:
        for batch in batches:
            self.partial_fit(batch)
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.centroids is None:
            raise RuntimeError("fit the k-means before predict")
        return assign(x, self.centroids, self.chunk_size)[0]

    def inertia(self, x: torch.Tensor) -> float:
        """Sum of squared distances of ``x``'s rows to their nearest centroid."""
        return float(assign(x, self.centroids, self.chunk_size)[1].sum())
