"""SimFormer's set losses (Chen et al., "Weak-shot Semantic Segmentation via Dual Similarity Transfer",
NeurIPS 2022), on MaskFormer's (Cheng et al. 2021): mask losses, the weak-shot Hungarian matching and the
complementary loss. The facts of the official code: ``../shared/reference/methods.md`` section 4.

Targets of one image are its base classes (each with a binary mask) followed by its novel classes (tags
only, no mask), in that order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

#: the complementary loss's fixed "ignore" proposal: the logit of 0.05 (not learnable, official)
IGNORE_PROPOSAL_LOGIT = float(np.log(0.05 / 0.95))


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:  # fmt: skip
    """Focal loss (Lin et al. 2017, Eq. 5) on mask logits ``[M, P]`` against 0/1 ``targets`` ``[M, P]``:
    ``alpha_t (1 - p_t)^gamma BCE``, averaged over the P pixels, summed over masks, divided by
    ``num_masks``.

    Example:
        >>> round(sigmoid_focal_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), 1).item(), 5)  # p = 0.5
        0.08664
    """
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` per mask (p the sigmoid), summed, divided by ``num_masks``.

    Example:
        >>> round(dice_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), 1).item(), 4)  # 1 - 2/3
        0.3333
    """
    p = logits.sigmoid()
    inter = 2 * (p * targets).sum(-1)
    return (1 - (inter + 1) / (p.sum(-1) + targets.sum(-1) + 1)).sum() / num_masks


def pairwise_mask_costs(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                        gamma: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The focal and dice losses of every (query, target) pair: ``[Q, P]`` logits, ``[T, P]`` targets ->
    two ``[Q, T]`` matrices (the focal one averaged over pixels), as :func:`sigmoid_focal_loss` and
    :func:`dice_loss` would give each pair alone."""
    p = logits.sigmoid()
    pos = (
        alpha
        * (1 - p) ** gamma
        * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    )
    neg = (
        (1 - alpha)
        * p**gamma
        * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    )
    focal = (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]
    dice = 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)
    return focal, dice


@torch.no_grad()
def weak_shot_match(class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
                    base_masks: torch.Tensor, class_weight: float = 1.0, focal_weight: float = 20.0,
                    dice_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Hungarian matching of one image's queries to its targets (SimFormer's matcher).

    cost = -class_weight p(class) for every target, plus ``focal_weight`` focal + ``dice_weight`` dice for
    the base targets (the first ``len(base_masks)`` of ``labels``); the novel ones have no mask and cost by
    class alone.

    Args:
        class_logits: ``[Q, K+1]``. mask_logits: ``[Q, H, W]``. labels: ``[T]`` class of each target, base
            first. base_masks: ``[T_base, H, W]`` 0/1 masks at the predictions' resolution.

    Returns:
        (query indices, target indices), as ``scipy.optimize.linear_sum_assignment`` (min(Q, T) pairs).
    """
    cost = -class_weight * class_logits.float().softmax(-1)[:, labels]
    n_base = len(base_masks)
    if n_base:
        focal, dice = pairwise_mask_costs(mask_logits.flatten(1).float(), base_masks.flatten(1).float())
        cost[:, :n_base] += focal_weight * focal + dice_weight * dice
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows, cols


def complementary_loss(novel_mask_logits: torch.Tensor, base_masks: torch.Tensor, valid: torch.Tensor,
                       focal_weight: float = 20.0, dice_weight: float = 1.0) -> torch.Tensor:  # fmt: skip
    """SimFormer's complementary loss of one image with novel classes.

    The pixel-wise max over the novel-matched queries' mask logits and the constant
    :data:`IGNORE_PROPOSAL_LOGIT` is supervised towards the region no base class covers, ``(1 - max over the
    base masks) x valid``: padded pixels are negatives (official). Focal x ``focal_weight`` + dice x
    ``dice_weight``, as one mask.

    Args:
        novel_mask_logits: ``[M, H, W]`` (M >= 0). base_masks: ``[T_base, H, W]`` 0/1. valid: ``[H, W]``
            True where the crop holds image.
    """
    h, w = valid.shape
    constant = novel_mask_logits.new_full((1, h, w), IGNORE_PROPOSAL_LOGIT)
    pred = torch.cat([novel_mask_logits, constant]).amax(0).flatten()[None]
    covered = base_masks.float().amax(0) if len(base_masks) else torch.zeros(h, w, device=valid.device)
    target = ((1 - covered) * valid.float()).flatten()[None]
    return focal_weight * sigmoid_focal_loss(pred, target, 1) + dice_weight * dice_loss(pred, target, 1)
