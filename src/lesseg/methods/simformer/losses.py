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


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Binary cross-entropy of mask logits ``[M, P]``, averaged over pixels, summed over masks, divided by
    ``num_masks``: the mask loss the paper and the configs' ``SoftmaxBCE`` name suggest (``mask_loss=bce``);
    the official code computes the focal loss (``mask_loss=focal``, default)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


MASK_LOSSES = {"focal": sigmoid_focal_loss, "bce": sigmoid_bce_loss}


def mask_pixel_loss(name: str):
    if name not in MASK_LOSSES:
        raise ValueError(f"method.mask_loss={name!r} is not valid; use one of {tuple(MASK_LOSSES)}")
    return MASK_LOSSES[name]


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
                       focal_weight: float = 20.0, dice_weight: float = 1.0,
                       mask_loss: str = "focal") -> torch.Tensor:  # fmt: skip
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
    return focal_weight * mask_pixel_loss(mask_loss)(pred, target, 1) + dice_weight * dice_loss(
        pred, target, 1
    )


def set_losses(outputs: dict, targets: list[dict], num_classes: int, no_object_weight: float = 0.1,
               focal_weight: float = 20.0, dice_weight: float = 1.0, complementary_weight: float = 0.0,
               mask_loss: str = "focal") -> dict[str, torch.Tensor]:  # fmt: skip
    """SimFormer's set losses of a batch, on the last decoder layer and on every ``aux_outputs`` layer
    (deep supervision), summed over layers.

    Per image and layer, :func:`weak_shot_match` pairs queries with targets; then

    * ``classification``: cross-entropy over every query, matched ones towards their target's class
      (base and novel), the rest towards "no object" (class weight ``no_object_weight``, 0.1);
    * ``mask``: for the base targets, ``focal_weight`` focal (or BCE: ``mask_loss``) + ``dice_weight`` dice of
      the matched queries' masks (bilinearly upsampled to the targets' size) divided by the number of base
      targets in the batch;
    * ``complementary`` (``complementary_weight`` > 0; 0.20 ADE, 0.15 COCO): :func:`complementary_loss`
      of each image with novel targets, averaged over those images, times the weight.

    Args:
        outputs: MaskFormer's ``pred_logits`` [N, Q, K+1], ``pred_masks`` [N, Q, h, w], ``aux_outputs``.
        targets: per image, ``labels`` [T] (base targets first), ``masks`` [T_base, H, W] 0/1 (the base
            targets' masks at the crop's size) and ``valid`` [H, W] (True where the crop holds image).
        num_classes: K.
    """
    pixel_loss = mask_pixel_loss(mask_loss)
    layers = [outputs, *outputs.get("aux_outputs", [])]
    num_masks = max(1, sum(len(t["masks"]) for t in targets))
    weight = torch.ones(num_classes + 1, device=outputs["pred_logits"].device)
    weight[-1] = no_object_weight
    total = {"classification": 0.0, "mask": 0.0, "complementary": 0.0}
    for layer in layers:
        logits, masks = layer["pred_logits"], layer["pred_masks"]
        classes = torch.full(logits.shape[:2], num_classes, dtype=torch.long, device=logits.device)
        mask_terms, comp_terms = [], []
        for i, t in enumerate(targets):
            if not len(t["labels"]):
                continue
            small = (F.interpolate(t["masks"][None].float(), size=masks.shape[-2:], mode="nearest")[0]
                     if len(t["masks"]) else t["masks"].new_zeros((0, *masks.shape[-2:])))  # fmt: skip
            rows, cols = weak_shot_match(logits[i], masks[i], t["labels"], small, focal_weight=focal_weight,
                                         dice_weight=dice_weight)  # fmt: skip
            rows, cols = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
            classes[i, rows] = t["labels"][cols].to(logits.device)
            n_base = len(t["masks"])
            base, novel = cols < n_base, cols >= n_base
            size = t["masks"].shape[-2:]
            if base.any():
                pred = F.interpolate(
                    masks[i, rows[base]][None], size=size, mode="bilinear", align_corners=False
                )[0]
                target = t["masks"][cols[base]].flatten(1).float()
                mask_terms.append(focal_weight * pixel_loss(pred.flatten(1), target, num_masks)
                                  + dice_weight * dice_loss(pred.flatten(1), target, num_masks))  # fmt: skip
            if complementary_weight and novel.any():
                pred = F.interpolate(
                    masks[i, rows[novel]][None], size=size, mode="bilinear", align_corners=False
                )[0]
                comp_terms.append(
                    complementary_loss(pred, t["masks"], t["valid"], focal_weight, dice_weight, mask_loss)
                )
        total["classification"] = total["classification"] + F.cross_entropy(
            logits.float().transpose(1, 2), classes, weight=weight
        )
        if mask_terms:
            total["mask"] = total["mask"] + torch.stack(mask_terms).sum()
        if comp_terms:
            total["complementary"] = (
                total["complementary"] + complementary_weight * torch.stack(comp_terms).mean()
            )
    zero = outputs["pred_logits"].sum() * 0
    return {k: v if torch.is_tensor(v) else zero for k, v in total.items()}


def similarity_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "cce"
) -> torch.Tensor:
    """Pixel-pixel similarity distillation (SimFormer Sec. 3.3): ``student`` = ReLU(cosine) of two pixels'
    novel-class score vectors, ``teacher`` = SimNet's P(same class) (no gradient), both in [0, 1], any
    shape; plain mean over the pairs.

    ``cce`` (official default): ``-relu(t - 0.5) log(1 + s) - relu(0.5 - t) log(2 - s)``, a hinge at 0.5
    that pulls s up where the teacher says "same" and down where it says "different"; ``ce``: binary
    cross-entropy of s against t.

    Example:
        >>> s, t = torch.tensor([0.5]), torch.tensor([1.0])
        >>> round(similarity_distillation_loss(s, t).item(), 4)  # -0.5 log 1.5
        -0.2027
    """
    t = teacher.detach().float()
    s = student.float()
    if kind == "cce":
        return (-F.relu(t - 0.5) * torch.log1p(s) - F.relu(0.5 - t) * torch.log(2 - s)).mean()
    if kind == "ce":
        return F.binary_cross_entropy(s.clamp(1e-6, 1 - 1e-6), t)
    raise ValueError(f"method.distill_loss={kind!r} is not valid; use one of ('cce', 'ce')")


def balanced_pair_bce(prob_same: torch.Tensor, same: torch.Tensor, positive_fraction: float) -> torch.Tensor:
    """SimNet's class-balanced BCE on base-pixel pairs: positives weighted by the negative fraction and
    negatives by the positive fraction (``positive_fraction``: the official running mean over the last 25
    batches), averaged over the pairs.

    Example:
        >>> p, y = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])
        >>> round(balanced_pair_bce(p, y, 0.25).item(), 4)  # (0.75 + 0.25) log 2 / 2
        0.3466
    """
    y = same.float()
    w = y * (1 - positive_fraction) + (1 - y) * positive_fraction
    return F.binary_cross_entropy(prob_same.float().clamp(1e-6, 1 - 1e-6), y, weight=w)
