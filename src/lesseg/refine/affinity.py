"""Inter-pixel affinities from a boundary map, as in IRN (Ahn, Cho & Kwak, "Weakly Supervised Learning of
Instance Segmentation with Inter-pixel Relations", CVPR 2019, Sec. 3).

IRN does not predict affinities directly: it predicts a class boundary map ``B`` and derives the affinity of
two nearby pixels ``i`` and ``j`` from the strongest boundary on the straight line between them::

    a_ij = 1 - max_{k in path(i, j)} B(k)

so two pixels are related unless some boundary separates them. Only pairs closer than ``radius`` are
considered; the random walk (:mod:`lesseg.refine.random_walk`) spreads information further by repetition.

Example:
    >>> import torch
    >>> boundary = torch.zeros(1, 1, 4, 6)
    >>> boundary[..., 3] = 1.0  # a vertical boundary line at column 3
    >>> aff = affinities_from_boundary(boundary, radius=3)
    >>> offsets = pair_offsets(3).tolist()
    >>> aff[0, offsets.index([0, 1]), 0, 0].item()  # (0, 0) -> (0, 1): same side
    1.0
    >>> aff[0, offsets.index([0, 2]), 0, 2].item()  # (0, 2) -> (0, 4): across the line
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def pair_offsets(radius: int) -> torch.LongTensor:
    """The (dy, dx) offsets of every pixel pair closer than ``radius``, each unordered pair counted once.

    A pair of pixels ``p`` and ``q`` is described from ``p`` as the offset ``q - p``; the same pair seen from
    ``q`` is the negated offset. To count every pair once we keep only one of each ``{o, -o}``: the
    half-plane ``dy > 0, or dy == 0 and dx > 0`` (the pixels "after" ``p`` in raster order). The zero offset
    (a pixel with itself) is excluded. This is the neighbourhood IRN searches (``radius=5`` at inference:
    34 offsets; ``radius=10`` in training).

    The result is sorted by ``dy`` then ``dx`` and is a ``[P, 2]`` int64 tensor.

    Example:
        >>> pair_offsets(2).tolist()
        [[0, 1], [1, -1], [1, 0], [1, 1]]
        >>> len(pair_offsets(5))
        34
    """
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius must be an integer >= 1, got {radius!r}")
    r2 = radius * radius
    offsets = [
        (dy, dx)
        for dy in range(0, radius)
        for dx in range(-radius + 1, radius)
        if dy * dy + dx * dx < r2 and (dy > 0 or dx > 0)
    ]
    return torch.tensor(offsets, dtype=torch.long).reshape(-1, 2)


def path_points(offset: Sequence[int] | Tensor) -> torch.LongTensor:
    """The pixels on the straight line from ``(0, 0)`` to ``offset = (dy, dx)``, both ends included.

    The line is sampled at unit steps along its longer axis and the other coordinate is rounded (half away
    from zero, in exact integer arithmetic so the result does not depend on float rounding). Both
    coordinates then move monotonically by at most one pixel per step, so the path visits every row and every
    column between its ends: it cannot jump over a one-pixel-wide horizontal or vertical boundary line.

    Returns a ``[L, 2]`` int64 tensor, ``L = max(|dy|, |dx|) + 1``, starting at ``(0, 0)``.

    Example:
        >>> path_points((1, 3)).tolist()
        [[0, 0], [0, 1], [1, 2], [1, 3]]
        >>> path_points((0, 0)).tolist()
        [[0, 0]]
    """
    values = offset.tolist() if isinstance(offset, Tensor) else list(offset)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"offset must be two integers (dy, dx), got {offset!r}")
    dy, dx = values
    n = max(abs(dy), abs(dx))
    if n == 0:
        return torch.zeros(1, 2, dtype=torch.long)

    def rounded(num: int) -> int:  # round(num / n), halves away from zero
        q = (2 * abs(num) + n) // (2 * n)
        return q if num >= 0 else -q

    points = [(rounded(i * dy), rounded(i * dx)) for i in range(n + 1)]
    return torch.tensor(points, dtype=torch.long)


def affinities_from_boundary(boundary: Tensor, radius: int) -> Tensor:
    """IRN's inter-pixel affinities: ``1 - max`` of the boundary map over the path between two pixels.

    ``boundary``: ``[N, 1, H, W]`` boundary probabilities in ``[0, 1]``. Returns ``[N, P, H, W]`` where
    ``P = len(pair_offsets(radius))``; channel ``p`` at ``(y, x)`` is the affinity of pixel ``(y, x)`` with
    pixel ``(y + dy, x + dx)``, ``(dy, dx) = pair_offsets(radius)[p]``. The maximum runs over every point of
    :func:`path_points` (both endpoints included), as in IRN (Ahn et al. 2019, Sec. 3: the affinity is one
    minus the maximum boundary probability on the line between the two pixels). Pairs whose partner lies
    outside the image get affinity 0.

    One running ``torch.maximum`` over shifted views of the padded map per offset: no ``[N, L, H, W]``
    stack of path values, which made the backward pass several times slower on 64x64 grids.

    Example:
        >>> affinities_from_boundary(torch.zeros(2, 1, 8, 8), radius=5).shape
        torch.Size([2, 34, 8, 8])
    """
    if not isinstance(boundary, Tensor) or boundary.ndim != 4 or boundary.shape[1] != 1:
        shape = tuple(boundary.shape) if isinstance(boundary, Tensor) else type(boundary).__name__
        raise ValueError(f"boundary must be a [N, 1, H, W] tensor, got {shape}")
    if not boundary.is_floating_point():
        raise ValueError(
            f"boundary must be a floating point tensor with values in [0, 1], got {boundary.dtype}"
        )
    if boundary.numel() and (boundary.min() < 0 or boundary.max() > 1):
        lo, hi = boundary.min().item(), boundary.max().item()
        raise ValueError(f"boundary values must lie in [0, 1] (probabilities), got [{lo:.4g}, {hi:.4g}]")
    offsets = pair_offsets(radius)
    n, _, h, w = boundary.shape
    pad = radius - 1
    # Pad with boundary = 1 (bottom, left, right; every offset has dy >= 0): any path leaving the image then
    # has max boundary 1, i.e. affinity 0, which is how IRN treats partners outside the image.
    padded = F.pad(boundary, (pad, pad, 0, pad), mode="constant", value=1.0)
    out = []
    for offset in offsets.tolist():
        running = None
        for py, px in path_points(offset).tolist():
            view = padded[:, 0, py : py + h, pad + px : pad + px + w]
            running = view if running is None else torch.maximum(running, view)
        out.append(1.0 - running)
    return torch.stack(out, dim=1)
