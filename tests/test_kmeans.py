"""k-means: separated blobs recovered exactly, empty clusters re-seeded, mini-batch updates by hand."""

from __future__ import annotations

import pytest
import torch

from lesseg.cluster import KMeans, MiniBatchKMeans, assign, init_centroids


def blobs(k: int = 5, n: int = 200, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 20
    truth = torch.arange(k).repeat_interleave(n)
    return centres[truth] + torch.randn(k * n, d, generator=g) * 0.5, truth


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_lloyd_recovers_separated_blobs_exactly(init):
    x, truth = blobs()
    km = KMeans(5, init=init, seed=1, chunk_size=97).fit(x)
    if init == "random":  # random init may put two seeds in one blob; k-means++ does not need luck
        km = min((KMeans(5, init=init, seed=s).fit(x) for s in range(5)), key=lambda m: m.inertia)
    assert same_partition(km.predict(x), truth)
    assert km.inertia == pytest.approx(float(((x - km.centroids[km.predict(x)]) ** 2).sum()), rel=1e-4)


def test_empty_cluster_is_reseeded():
    x, truth = blobs(k=3)
    start = torch.stack([x[0], x[1], torch.full((8,), 1e4)])  # the third centroid gets no point at first
    km = KMeans(3, iterations=10).fit(x, centroids=start)
    assert km.reseeded >= 1
    assert torch.bincount(km.predict(x), minlength=3).min() > 0 and same_partition(km.predict(x), truth)


def test_minibatch_update_by_hand():
    mb = MiniBatchKMeans(2)
    mb.partial_fit(torch.tensor([[0.0], [10.0]]), centroids=torch.tensor([[1.0], [9.0]]))
    # first batch: each centroid moves fully to the mean of its one point (step 1/1)
    assert mb.centroids.flatten().tolist() == [0.0, 10.0] and mb.counts.tolist() == [1.0, 1.0]
    mb.partial_fit(torch.tensor([[2.0], [4.0], [10.0]]))
    # centroid 0: 2 new points, mean 3, step 2/3 -> 0 + 2/3 * 3 = 2; centroid 1: mean 10, unchanged
    assert mb.centroids.flatten().tolist() == pytest.approx([2.0, 10.0]) and mb.counts.tolist() == [3.0, 2.0]


def test_minibatch_recovers_blobs():
    x, truth = blobs(seed=2)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    mb = MiniBatchKMeans(5, seed=0).fit(x[order].split(250))
    assert same_partition(mb.predict(x), truth)


def test_assign_in_chunks_equals_dense():
    x, _ = blobs(k=4, n=50)
    c = init_centroids(x, 4, generator=torch.Generator().manual_seed(0))
    labels, d = assign(x, c, chunk_size=7)
    dense = torch.cdist(x, c) ** 2
    assert torch.equal(labels, dense.argmin(1)) and torch.allclose(
        d, dense.min(1).values, rtol=1e-4, atol=1e-2
    )


def test_errors():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        KMeans(0)
    with pytest.raises(ValueError, match="init must be one of k-means\\+\\+, random"):
        KMeans(2, init="foo")
    with pytest.raises(ValueError, match="at least k=3 points"):
        KMeans(3).fit(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"x must be a float \[N, D\] tensor"):
        KMeans(2).fit(torch.zeros(4, dtype=torch.long))
    with pytest.raises(RuntimeError, match="fit the k-means before predict"):
        KMeans(2).predict(torch.zeros(3, 2))


def test_streaming_kmeans_recovers_blobs_from_batches():
    """Initialised on a sample of the first batches, then moved batch by batch: the blob centres."""
    from lesseg.cluster import StreamingKMeans

    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    km = StreamingKMeans(3, init_batches=2, init_sample=60, seed=0)
    for _ in range(6):
        km.add(torch.cat([c + 0.2 * torch.randn(40, 2, generator=g) for c in centres]))
    found = km.finish()
    nearest = torch.cdist(centres, found).argmin(1)
    assert sorted(nearest.tolist()) == [0, 1, 2]
    assert torch.allclose(found[nearest], centres, atol=0.1)
    assert km.inertia < 0.2  # mean squared distance of the streamed rows, ~2 * 0.2^2


def test_minibatch_start_counts_the_initial_points():
    """start(centroids, counts): a later batch moves a centroid by n_new / (n_old + n_new)."""
    km = MiniBatchKMeans(1).start(torch.zeros(1, 2), torch.tensor([3]))
    km.partial_fit(torch.tensor([[4.0, 0.0]]))
    assert km.centroids.tolist() == [[1.0, 0.0]]  # 0 + 1/4 * (4 - 0)


def test_faiss_backend_finds_the_same_blobs():
    pytest.importorskip("faiss", reason="the faiss extra is not installed (pip install 'lesseg[faiss]')")
    from lesseg.cluster import lloyd

    x, truth = blobs(k=4, n=100, d=8)
    start = init_centroids(x, 4, generator=torch.Generator().manual_seed(0))
    ours, theirs = lloyd(x, 4, init=start), lloyd(x, 4, backend="faiss", init=start)
    assert same_partition(assign(x, ours)[0], truth) and same_partition(assign(x, theirs)[0], truth)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_unknown_backend_lists_the_valid_ones():
    from lesseg.cluster import lloyd

    with pytest.raises(ValueError, match="torch, faiss"):
        lloyd(torch.zeros(4, 2), 2, backend="sklearn")
