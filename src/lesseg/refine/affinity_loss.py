"""IRN's affinity loss: Ahn, Cho & Kwak, "Weakly Supervised Learning of Instance Segmentation with Inter-pixel
Relations", CVPR 2019, Sec. 3.2 (Eqs. 2-4), as trained by Puzzle-CAM's boundary branch.

Pixel pairs ``(i, j)`` closer than a radius, both with a known affinity label, are split into

* ``P+_bg``: both background (only when the dataset has a background class),
* ``P+_fg``: same foreground class (every same-class pair when there is no background class),
* ``P-``: different classes,

and the predicted affinity ``a_ij`` (from the boundary map: ``1 - max B`` on the path) is trained with::

    L_bg  = 1/|P+_bg| sum_{P+_bg} -log(a_ij + eps)
    L_fg  = 1/|P+_fg| sum_{P+_fg} -log(a_ij + eps)
    L_neg = 1/|P-|    sum_{P-}    -log(1 + eps - a_ij)
    L     = (L_bg / 2 + L_fg / 2 + L_neg) / 2          (with a background class, as IRN)
    L     = (L_fg + L_neg) / 2                           (without one)

The means run over every pair of the whole batch. An empty set contributes 0 (IRN divides by
``count + 1e-5``, which also gives 0 for an empty set and differs from the mean by a relative ``1e-5 /
count`` otherwise). With a background class ``L_bg`` keeps its half weight even when a batch has no
background pairs, as in IRN.

Example:
    >>> import torch
    >>> labels = torch.tensor([[[0, 0, 1]]])  # 1x1x3: background, background, class 1
    >>> offsets = torch.tensor([[0, 1]])  # each pixel with its right neighbour
    >>> affinity = torch.tensor([[[[0.5, 0.5, 0.0]]]])  # last pixel's partner is outside the image
    >>> out = affinity_loss(affinity, labels, offsets, background_index=0)
    >>> round(out["pos_bg"].item(), 4), round(out["neg"].item(), 4), out["pos_fg"].item()
    (0.6931, 0.6931, 0.0)
"""

from __future__ import annotations

import torch
from torch import Tensor


def pair_labels(labels: Tensor, offsets: Tensor, ignore_index: int = 255) -> Tensor:
    """The label of each pixel's partner ``pixel + offset``, for every offset: ``[..., P, h, w]``.

    ``out[..., p, y, x] = labels[..., y + dy_p, x + dx_p]``, or ``ignore_index`` when the partner lies
    outside the image. Computed by one gather, without a loop over offsets.

    Args:
        labels: ``[..., h, w]`` integer label maps (e.g. ``[N, h, w]``).
        offsets: ``[P, 2]`` integer ``(dy, dx)`` offsets (e.g. ``lesseg.refine.affinity.pair_offsets``).
        ignore_index: the value of out-of-image partners.

    Example:
        >>> pair_labels(torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1], [0, -2]])).tolist()
        [[[2, 3, 255]], [[255, 255, 1]]]
    """
    if labels.ndim < 2:
        raise ValueError(f"labels must be [..., h, w], got shape {list(labels.shape)}")
    offsets = _check_offsets(offsets).to(labels.device)
    h, w = labels.shape[-2:]
    ys = torch.arange(h, device=labels.device)[None, :, None] + offsets[:, 0, None, None]  # [P, h, 1]
    xs = torch.arange(w, device=labels.device)[None, None, :] + offsets[:, 1, None, None]  # [P, 1, w]
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)  # [P, h, w]
    partner = labels[..., ys.clamp(0, h - 1), xs.clamp(0, w - 1)]  # [..., P, h, w]
    return partner.masked_fill(~inside, ignore_index)


def affinity_loss(
    affinity: Tensor,
    labels: Tensor,
    offsets: Tensor,
    background_index: int | None,
    ignore_index: int = 255,
    eps: float = 1e-5,
) -> dict[str, Tensor]:
    """IRN's affinity loss (module docstring) of predicted affinities against pixel labels.

    Args:
        affinity: ``[N, P, h, w]`` affinities in [0, 1]; ``affinity[n, p, y, x]`` relates pixel ``(y, x)``
            and its partner ``(y + dy_p, x + dx_p)``. Computed in float32 whatever its dtype.
        labels: ``[N, h, w]`` int64 class indices at the same resolution (affinity labels downsampled to
            the boundary map's grid), ``ignore_index`` where unknown.
        offsets: ``[P, 2]`` integer ``(dy, dx)`` offsets, in the order of ``affinity``'s dim 1.
        background_index: the background class, or ``None`` when the dataset has none.
        ignore_index: unknown label; pairs with an unknown or out-of-image pixel are left out.
        eps: inside the logs, as IRN (1e-5).

    Returns:
        ``{"loss", "pos_bg", "pos_fg", "neg"}``: scalar tensors; ``pos_bg`` is 0 without a background class.
        An input without any valid pair gives a zero loss (no NaN) whose gradient is zero.
    """
    if affinity.ndim != 4:
        raise ValueError(f"affinity must be [N, P, h, w], got shape {list(affinity.shape)}")
    if labels.ndim != 3 or labels.shape[0] != affinity.shape[0] or labels.shape[1:] != affinity.shape[2:]:
        raise ValueError(
            f"labels must be [N, h, w] matching affinity [N, P, h, w] = {list(affinity.shape)}, "
            f"got {list(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (int64), got dtype {labels.dtype}")
    offsets = _check_offsets(offsets)
    if len(offsets) != affinity.shape[1]:
        raise ValueError(
            f"offsets has {len(offsets)} rows but affinity has {affinity.shape[1]} pairs in dim 1; "
            "they must match"
        )
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    a = affinity.float()
    src = labels[:, None]  # [N, 1, h, w]
    dst = pair_labels(labels, offsets, ignore_index)  # [N, P, h, w]
    known = (src != ignore_index) & (dst != ignore_index)
    same = known & (src == dst)
    negative = known & (src != dst)
    pos_term = -torch.log(a + eps)
    neg_term = -torch.log(1.0 + eps - a)
    if background_index is None:
        pos_bg = a.new_zeros(())
        pos_fg = _masked_mean(pos_term, same)
        neg = _masked_mean(neg_term, negative)
        loss = (pos_fg + neg) / 2
    else:
        is_bg = src == background_index
        pos_bg = _masked_mean(pos_term, same & is_bg)
        pos_fg = _masked_mean(pos_term, same & ~is_bg)
        neg = _masked_mean(neg_term, negative)
        loss = (pos_bg / 2 + pos_fg / 2 + neg) / 2
    return {"loss": loss, "pos_bg": pos_bg, "pos_fg": pos_fg, "neg": neg}


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask``; 0 (still part of the graph) when the mask is empty."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1)


def _check_offsets(offsets: Tensor) -> Tensor:
    offsets = torch.as_tensor(offsets)
    if offsets.ndim != 2 or offsets.shape[1] != 2:
        raise ValueError(f"offsets must be [P, 2] (dy, dx) pairs, got shape {list(offsets.shape)}")
    if offsets.is_floating_point() or offsets.dtype == torch.bool:
        raise ValueError(f"offsets must be integers (a LongTensor), got dtype {offsets.dtype}")
    return offsets.long()
