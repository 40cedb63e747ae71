"""SimFormer's pixel-pixel similarity transfer ("crosim"): which pixel pairs SimNet learns on and which
it teaches (official ``cross_img_sim``, with the corrections of ``../shared/reference/methods.md`` 4.7)."""

from __future__ import annotations

import torch

from lesseg.models.simformer import PointPairs


def base_pair_labels(
    la: torch.Tensor, lb: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """SimNet's targets for the ``n x m`` cross pairs of points labelled ``la`` [P, n] and ``lb`` [P, m]
    (novel pixels hidden as ignore): ``same`` (both the same base class) and ``counted`` (either pixel
    base: the official rule; a base pixel and a novel or unlabelled one are a negative pair, two pixels
    of unknown class no pair at all).

    Example:
        >>> same, counted = base_pair_labels(torch.tensor([[1, 255]]), torch.tensor([[1, 2, 255]]), 255)
        >>> same.int().tolist(), counted.int().tolist()
        ([[[1, 0, 0], [0, 0, 0]]], [[[1, 1, 1], [1, 1, 0]]])
    """
    known_a, known_b = (la != ignore_index)[:, :, None], (lb != ignore_index)[:, None, :]
    return (la[:, :, None] == lb[:, None, :]) & known_a, known_a | known_b


def _top_points(score: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """The official point draw: top-``n`` of ``score`` (a 0/1 region) plus 0.1 x uniform noise."""
    noise = torch.rand(score.shape, generator=generator) * 0.1
    return (score.float().cpu() + noise).topk(min(n, score.numel())).indices.to(score.device)


def sample_pair_points(small: torch.Tensor, valid: torch.Tensor, novel_tags: torch.Tensor, points: int,
                       common_fraction: float, ignore_index: int, generator: torch.Generator) -> tuple:  # fmt: skip
    """The crosim points of a batch's pairs (images i and i + B/2) on its ``small`` masks [B, h, w] (novel
    pixels hidden; the mask features' resolution), ``valid`` [B, h, w] and multi-hot ``novel_tags`` [B, K].

    Base points, per image: ``common_fraction`` of ``points`` in one base class both images show (drawn
    at random; none shared: anywhere in the crop), the rest elsewhere in the crop, not padding; their
    labels. Novel points (pairs sharing a novel tag): ``points`` in the novel-or-ignore region (padding
    included), per image. Draws: the official top-k of region + 0.1 x noise.
    """
    ignore = ignore_index
    half = len(small) // 2
    n = points
    n_common = round(n * common_fraction)
    flat, flat_valid = small.flatten(1), valid.flatten(1)
    base_idx, novel_pairs, novel_idx = [], [], []
    for a in range(half):
        b = a + half
        shared = sorted(({int(c) for c in flat[a].unique()} & {int(c) for c in flat[b].unique()}) - {ignore})
        pick = shared[int(torch.randint(len(shared), (1,), generator=generator))] if shared else None
        pair = []
        for i in (a, b):
            region = flat[i] == pick if pick is not None else flat_valid[i]
            inside = _top_points(region & flat_valid[i], n_common, generator)
            rest = _top_points(flat_valid[i] & ~region, n - n_common, generator)
            pair.append(torch.cat([inside, rest]))
        base_idx.append(pair)
        if (novel_tags[a] * novel_tags[b]).sum() > 0:
            novel_pairs.append(a)
            novel_idx.append([_top_points(flat[i] == ignore, n, generator) for i in (a, b)])
    images_a = torch.arange(half, device=small.device)
    idx_a = torch.stack([p[0] for p in base_idx])
    idx_b = torch.stack([p[1] for p in base_idx])
    base = PointPairs(images_a, images_a + half, idx_a, idx_b)
    labels = (flat[:half].gather(1, idx_a), flat[half:].gather(1, idx_b))
    novel = None
    if novel_pairs:
        na = torch.tensor(novel_pairs, device=small.device)
        novel = PointPairs(na, na + half, torch.stack([p[0] for p in novel_idx]),
                           torch.stack([p[1] for p in novel_idx]))  # fmt: skip
    return base, labels, novel
