"""IRN's boundary-aware random walk: spread class activation maps within regions enclosed by boundaries.

Ahn, Cho & Kwak, "Weakly Supervised Learning of Instance Segmentation with Inter-pixel Relations",
CVPR 2019 (Sec. 3 and 5), also the refinement step of Puzzle-CAM. Given a boundary map ``B`` on the
stride-4 feature grid of an image:

1. affinities ``a_ij = 1 - max B`` on the line between pixels ``i`` and ``j``, for pairs closer than
   ``radius`` (:func:`lesseg.refine.affinity.affinities_from_boundary`);
2. ``A = a ** beta`` made symmetric, with a self-loop of affinity 1 on every pixel; ``D`` its column sums;
   the transition matrix ``T = A D^-1`` (every column sums to 1);
3. the CAMs, damped on boundaries by ``(1 - B)``, are propagated as ``x @ T^(2^exp_times)`` (each CAM a row
   vector over the ``H*W`` pixels).

Row vs column convention, spelled out: ``(x @ T)_j = sum_i x_i A_ij / D_j`` with ``sum_i A_ij / D_j = 1``,
so every output pixel ``j`` is a weighted *average* of the input values of the pixels it has high
affinity with (itself included). Since ``A`` is symmetric, ``x @ T = (D^-1 A x^T)^T``: the same step is the
row-stochastic matrix ``T^T = D^-1 A`` applied to the column vector ``x^T``, which is what the sparse code
does.

Background (the caller decides; :func:`propagate_labels` implements both):

* dataset with a background class (VOC, COCO): propagate the foreground CAMs, divide by their global max,
  then prepend a constant background plane (IRN's ``sem_seg_bg_thres``, e.g. 0.35) and argmax;
* without one (Cityscapes-like): propagate all the image's class maps and argmax among them.

Example:
    >>> import torch
    >>> cams = torch.zeros(1, 8, 8)
    >>> cams[0, 2, 2] = 1.0  # a single activated pixel
    >>> boundary = torch.zeros(8, 8)
    >>> boundary[:, 5] = 1.0  # a wall at column 5
    >>> rw = random_walk(cams, boundary, radius=3, exp_times=4)
    >>> bool(rw[0, :, :5].min() > 0), float(rw[0, :, 5:].abs().max())  # spreads left, never crosses
    (True, 0.0)
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from lesseg.refine.affinity import affinities_from_boundary, pair_offsets

__all__ = ["propagate_labels", "random_walk", "random_walk_dense", "transition_matrix"]


def _check_affinity(affinity: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    """``affinity`` as ``[P, H, W]`` and ``offsets`` as a CPU ``[P, 2]`` long tensor, or a ValueError."""
    if not isinstance(affinity, Tensor) or affinity.ndim not in (3, 4):
        shape = tuple(affinity.shape) if isinstance(affinity, Tensor) else type(affinity).__name__
        raise ValueError(f"affinity must be [P, H, W] or [1, P, H, W] (one image), got {shape}")
    if affinity.ndim == 4:
        if affinity.shape[0] != 1:
            raise ValueError(
                f"affinity must hold one image ([1, P, H, W]); got a batch of {affinity.shape[0]}: "
                "build one transition matrix per image"
            )
        affinity = affinity[0]
    if not affinity.is_floating_point():
        raise ValueError(f"affinity must be a floating point tensor, got {affinity.dtype}")
    offsets = torch.as_tensor(offsets).to("cpu", torch.long)
    if offsets.ndim != 2 or offsets.shape[1] != 2 or len(offsets) != affinity.shape[0]:
        raise ValueError(
            f"offsets must be [P, 2] with P = affinity.shape[-3] = {affinity.shape[0]}, "
            f"got {tuple(offsets.shape)}"
        )
    seen: set[tuple[int, int]] = set()
    for dy, dx in offsets.tolist():
        # Each unordered pair must come once: a repeated offset, or both o and -o, would double-count edges.
        if (dy, dx) == (0, 0) or (dy, dx) in seen or (-dy, -dx) in seen:
            raise ValueError(
                f"offsets must be distinct, nonzero and never contain both o and -o (as pair_offsets gives); "
                f"offending offset {(dy, dx)}"
            )
        seen.add((dy, dx))
    return affinity, offsets


def _check_beta(beta: float) -> None:
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0:
        raise ValueError(f"beta must be a number > 0, got {beta!r}")


def _shift(t: Tensor, dy: int, dx: int, fill: float = 0.0) -> Tensor:
    """``s[..., y, x] = t[..., y + dy, x + dx]``, ``fill`` where that falls outside the map."""
    h, w = t.shape[-2:]
    out = torch.full_like(t, fill)
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ys < ye and xs < xe:
        out[..., ys:ye, xs:xe] = t[..., ys + dy : ye + dy, xs + dx : xe + dx]
    return out


def _stencil(affinity: Tensor, offsets: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """The symmetric weights ``A`` as a stencil: ``A[i, i + q] = weights[k, i]`` for ``q = full[k]``.

    ``full`` ([Q, 2], ``Q = 2P + 1``) holds every offset, its negation and (0, 0), sorted by (dy, dx), so
    for each pixel the partners ``i + q`` come in increasing flat index: the CSR column order. ``valid``
    ([Q, H, W]) says whether the partner is inside the image; invalid weights are 0.
    """
    _, h, w = affinity.shape
    dev = affinity.device
    ys = torch.arange(h, device=dev).view(h, 1)
    xs = torch.arange(w, device=dev).view(1, w)

    def inside(dy: int, dx: int) -> Tensor:
        return ((ys + dy >= 0) & (ys + dy < h)) & ((xs + dx >= 0) & (xs + dx < w))

    stencil: dict[tuple[int, int], Tensor] = {(0, 0): torch.ones_like(affinity[0])}  # self-loop, affinity 1
    for p, (dy, dx) in enumerate(offsets.tolist()):
        # Masked explicitly: the caller's affinity for a partner outside the image need not be 0.
        weight = torch.where(inside(dy, dx), affinity[p].clamp_min(0).pow(beta), 0.0)
        stencil[(dy, dx)] = weight
        # The same pair seen from the partner: A[j, j - o] = A[j - o, j] = weight at pixel j - o.
        stencil[(-dy, -dx)] = _shift(weight, -dy, -dx)
    full = sorted(stencil)
    weights = torch.stack([stencil[q] for q in full])
    valid = torch.stack([inside(dy, dx) for dy, dx in full])
    return weights, valid, torch.tensor(full, dtype=torch.long)


def _to_csr(values: Tensor, valid: Tensor, full: Tensor) -> Tensor:
    """A ``[H*W, H*W]`` CSR matrix with ``M[i, i + q] = values[k, i]`` (``q = full[k]``) where ``valid``."""
    _, h, w = values.shape
    n = h * w
    flat = (full[:, 0] * w + full[:, 1]).to(values.device)
    vals = values.permute(1, 2, 0).reshape(n, -1)  # row i, its partners in increasing column order
    mask = valid.permute(1, 2, 0).reshape(n, -1)
    cols = torch.arange(n, device=values.device).view(n, 1) + flat.view(1, -1)
    crow = torch.zeros(n + 1, dtype=torch.long, device=values.device)
    crow[1:] = mask.sum(1).cumsum(0)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols[mask], vals[mask], (n, n), check_invariants=False)


def transition_matrix(affinity: Tensor, offsets: Tensor, beta: float = 10.0) -> Tensor:
    """IRN's column-stochastic transition matrix ``T = A D^-1`` over the ``H*W`` pixels of one image, sparse.

    ``affinity``: ``[P, H, W]`` (or ``[1, P, H, W]``) from :func:`affinities_from_boundary`, channel ``p``
    relating pixel ``(y, x)`` to ``(y + dy, x + dx)`` with ``(dy, dx) = offsets[p]``; ``offsets``: ``[P, 2]``,
    each unordered pair once (as :func:`pair_offsets` gives). Pixels are flattened row-major
    (``i = y * W + x``).

    ``A[i, j] = A[j, i] = affinity ** beta`` for each pair (both directions), ``A[i, i] = 1`` (self-loop,
    affinity 1 with itself), ``D_j = sum_i A[i, j]`` and ``T[i, j] = A[i, j] / D_j``: every column sums to 1.
    ``beta`` sharpens the affinities (IRN: 10). Pairs whose partner is outside the image have no entry.

    Returns a ``torch.sparse_csr_tensor`` of shape ``[H*W, H*W]`` with ``H*W + 2 * (#pairs)`` stored
    entries (column indices sorted within each row); no dense ``H*W x H*W`` matrix is built. It is
    assembled straight from the stencil, without sorting a COO list (which costs ~0.3 s at 128x128).

    Example:
        >>> aff = torch.ones(len(pair_offsets(2)), 3, 3)
        >>> T = transition_matrix(aff, pair_offsets(2), beta=10.0)
        >>> T.shape, torch.allclose(T.to_dense().sum(0), torch.ones(9))
        (torch.Size([9, 9]), True)
    """
    affinity, offsets = _check_affinity(affinity, offsets)
    _check_beta(beta)
    weights, valid, full = _stencil(affinity, offsets, beta)
    degree = weights.sum(0)  # row sums of the symmetric A = its column sums D; >= 1 thanks to the self-loop
    # T[i, i + q] = A[i, i + q] / D_{i + q}: the degree of the partner, shifted into place (1 outside).
    partner_degree = torch.stack([_shift(degree, dy, dx, fill=1.0) for dy, dx in full.tolist()])
    return _to_csr(weights / partner_degree, valid, full)


def _row_stochastic(affinity: Tensor, offsets: Tensor, beta: float) -> Tensor:
    """``T^T = D^-1 A`` as CSR (rows sum to 1): ``x @ T`` for row vectors is ``T^T @ x^T`` for columns."""
    weights, valid, full = _stencil(affinity, offsets, beta)
    return _to_csr(weights / weights.sum(0, keepdim=True), valid, full)


def _check_inputs(cams: Tensor, boundary: Tensor, radius: int, beta: float, exp_times: int) -> None:
    if not isinstance(cams, Tensor) or cams.ndim != 3 or not cams.is_floating_point():
        desc = f"{tuple(cams.shape)} {cams.dtype}" if isinstance(cams, Tensor) else type(cams).__name__
        raise ValueError(f"cams must be a floating point [K, H, W] tensor, got {desc}")
    if not isinstance(boundary, Tensor) or tuple(boundary.shape) != tuple(cams.shape[1:]):
        shape = tuple(boundary.shape) if isinstance(boundary, Tensor) else type(boundary).__name__
        raise ValueError(f"boundary must be [H, W] = {tuple(cams.shape[1:])} like the cams, got {shape}")
    if boundary.device != cams.device:
        raise ValueError(f"cams and boundary must be on one device, got {cams.device} and {boundary.device}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius must be an integer >= 1, got {radius!r}")
    _check_beta(beta)
    if isinstance(exp_times, bool) or not isinstance(exp_times, int) or exp_times < 0:
        raise ValueError(
            f"exp_times must be an integer >= 0 (T is raised to 2**exp_times), got {exp_times!r}"
        )


def random_walk(
    cams: Tensor, boundary: Tensor, radius: int = 5, beta: float = 10.0, exp_times: int = 8
) -> Tensor:
    """IRN inference: propagate ``cams`` ``[K, H, W]`` through ``T^(2^exp_times)`` built from ``boundary``.

    ``boundary``: ``[H, W]`` boundary probabilities in ``[0, 1]`` on the same grid (IRN: stride 4 of the
    image). Computes ``(cams * (1 - boundary)).view(K, H*W) @ T^(2^exp_times)`` with ``T`` from
    :func:`transition_matrix` (affinities within ``radius``, sharpened by ``beta``); returns ``[K, H, W]``.
    Each output pixel is a weighted average of the damped input values of the pixels it is connected to
    without crossing a boundary. Defaults are IRN's and Puzzle-CAM's (radius 5, beta 10, exp_times 8).

    Cost: ``T^(2^exp_times)`` is applied to the ``K`` vectors by ``2^exp_times`` sparse products with
    ``T^T = D^-1 A`` (CSR), rather than by squaring ``T`` ``exp_times`` times. Squaring doubles the reach of
    the matrix each time, so after a few squarings ``T^(2^s)`` is effectively dense (on a 128x128 grid
    ``(128^2)^2`` entries, 1 GiB as float32 and more as sparse): memory explodes. Repeated application keeps
    memory at ``O(nnz(T) + K*H*W)`` (about 69 entries per pixel at radius 5) and costs
    ``2^exp_times * nnz(T) * K`` multiply-adds. Mathematically both are ``x @ T^(2^exp_times)``; only the
    float rounding order differs (:func:`random_walk_dense` is the squaring form).

    Example:
        >>> cams = torch.rand(3, 16, 16)
        >>> random_walk(cams, torch.zeros(16, 16), exp_times=2).shape
        torch.Size([3, 16, 16])
    """
    _check_inputs(cams, boundary, radius, beta, exp_times)
    k, h, w = cams.shape
    if k == 0 or h * w == 0:
        return cams.clone()
    offsets = pair_offsets(radius)
    aff = affinities_from_boundary(boundary.to(cams.dtype)[None, None], radius)[0]
    step = _row_stochastic(aff, offsets, beta)  # T^T = D^-1 A
    x = (cams * (1.0 - boundary.to(cams.dtype))).reshape(k, h * w).t().contiguous()  # [HW, K] columns
    for _ in range(2**exp_times):
        x = step @ x  # (T^T)^n x^T = (x @ T^n)^T
    return x.t().reshape(k, h, w)


def random_walk_dense(
    cams: Tensor, boundary: Tensor, radius: int = 5, beta: float = 10.0, exp_times: int = 8
) -> Tensor:
    """Reference form of :func:`random_walk` with a dense ``[H*W, H*W]`` matrix, the way IRN's code does it.

    Builds ``A`` densely (pairs in both directions plus the identity), ``T = A / A.sum(0)``, squares ``T``
    ``exp_times`` times and returns ``(cams * (1 - boundary)).view(K, H*W) @ T``. Memory is
    ``(H*W)^2`` floats (1 GiB at 128x128 in float32): for tests and small images only.

    Example:
        >>> cams, boundary = torch.rand(2, 6, 6), torch.rand(6, 6) * 0.5
        >>> torch.allclose(random_walk_dense(cams, boundary, 3, exp_times=3),
        ...                random_walk(cams, boundary, 3, exp_times=3), atol=1e-5)
        True
    """
    _check_inputs(cams, boundary, radius, beta, exp_times)
    k, h, w = cams.shape
    n = h * w
    offsets = pair_offsets(radius)
    aff = affinities_from_boundary(boundary.to(cams.dtype)[None, None], radius)[0]
    dense = torch.eye(n, dtype=cams.dtype, device=cams.device)
    grid = dense.view(h, w, h, w)
    for p, (dy, dx) in enumerate(offsets.tolist()):
        # Source pixels whose partner (y + dy, x + dx) is inside the image (dy >= 0 for pair_offsets).
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), min(w, w - dx)
        if y1 <= y0 or x1 <= x0:
            continue
        ys = torch.arange(y0, y1, device=cams.device).view(-1, 1)
        xs = torch.arange(x0, x1, device=cams.device).view(1, -1)
        a = aff[p, y0:y1, x0:x1].pow(beta)
        grid[ys, xs, ys + dy, xs + dx] = a
        grid[ys + dy, xs + dx, ys, xs] = a
    trans = dense / dense.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        trans = trans @ trans
    x = (cams * (1.0 - boundary.to(cams.dtype))).reshape(k, n)
    return (x @ trans).reshape(k, h, w)


def propagate_labels(
    cams: Tensor,
    boundary: Tensor,
    bg_threshold: float | None = None,
    radius: int = 5,
    beta: float = 10.0,
    exp_times: int = 8,
) -> Tensor:
    """Random-walk the image's class maps and prepare them for an argmax, as IRN's ``make_sem_seg_labels``.

    ``cams``: ``[K, H, W]`` maps of the classes present in the image (foreground classes only when the dataset
    has a background class). The walked maps are divided by their global maximum (IRN divides by the max
    over all classes and pixels, keeping the ratios between classes); all-zero maps stay zero.

    * ``bg_threshold`` given (a background class exists): returns ``[K + 1, H, W]`` with a constant plane
      ``bg_threshold`` at index 0 (e.g. 0.35), then the normalised maps;
    * ``None`` (no background class): returns the ``[K, H, W]`` normalised maps.

    ``argmax(0)`` of the result is then the label (index 0 = background when ``bg_threshold`` is given).
    IRN upsamples the walked maps to the image size before normalising; bilinear upsampling does not
    change the maximum much, so normalising on the grid and upsampling after is equivalent up to that.

    Example:
        >>> cams = torch.zeros(1, 8, 8)
        >>> cams[0, :, :4] = 0.8
        >>> out = propagate_labels(cams, torch.zeros(8, 8), bg_threshold=0.35, exp_times=3)
        >>> out.shape, round(float(out[0, 0, 0]), 4)
        (torch.Size([2, 8, 8]), 0.35)
    """
    if bg_threshold is not None and not (
        isinstance(bg_threshold, (int, float))
        and not isinstance(bg_threshold, bool)
        and 0 <= bg_threshold <= 1
    ):
        raise ValueError(
            f"bg_threshold must be None (no background class) or in [0, 1], got {bg_threshold!r}"
        )
    rw = random_walk(cams, boundary, radius=radius, beta=beta, exp_times=exp_times)
    if rw.numel():
        top = rw.max()
        if top > 0:
            rw = rw / top
    if bg_threshold is None:
        return rw
    return torch.cat([rw.new_full((1, *rw.shape[1:]), float(bg_threshold)), rw])
