"""MCIS: Sun, Wang, Dai & Van Gool, "Mining Cross-Image Semantics for Weakly Supervised Semantic
Segmentation", ECCV 2020.

The classifier (:class:`~lesseg.models.MCISNet`) is trained on pairs of images that share a class
(:class:`~lesseg.data.pairs.PairDataset`). Per pair ``(m, n)`` with tags ``y_m``, ``y_n`` (Eq. 10, all
weights 1, every term a multi-label soft-margin loss):

* single-image CAM loss of each image on its own tags;
* co-attention loss: each image's co-attentive feature (re-expressed through the other image) classified
  by the co-attention head against the **common** classes ``y_m * y_n``;
* contrastive co-attention loss: each image's own features with what the partner explains gated out,
  classified by the same head against its **unshared** classes ``y_m - y_m * y_n``; from the second epoch
  on (``method.contrastive_from_epoch``) and only when the batch has unshared classes, as the official code.

The official code adds three self-pairs per image (its flip, its 0.75x and its 2x rescale), each with a
single-image term on the view and a co-attention term on the image, against the image's own tags
(``method.self_pairs``, on by default). Deviation: images are rescaled and cropped as the CAM baseline's
(``data.crop_size``, ``data.scale_range``) instead of the official square 256x256 resize, so that every
CAM method here sees the same crops; the official ColorJitter(0.3, 0.3, 0.3, 0.1) is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lesseg.data import transforms as T
from lesseg.data.pairs import PARTNER_SUFFIX, PairDataset
from lesseg.errors import ConfigError
from lesseg.methods.base import register_method
from lesseg.methods.cam import CAMMethod
from lesseg.models import MCISNet, multilabel_soft_margin_loss

#: The official self-pair rescales (besides the flip).
SELF_PAIR_SCALES = (0.75, 2.0)


def pair_targets(y_m: torch.Tensor, y_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(common, unshared_m, unshared_n)`` of multi-hot tag batches ``[N, C]``: the classes both images
    hold, and those only ``m`` / only ``n`` holds.

    Example:
        >>> common, only_m, only_n = pair_targets(torch.tensor([[1.0, 1, 0]]), torch.tensor([[0.0, 1, 1]]))
        >>> common.tolist(), only_m.tolist(), only_n.tolist()
        ([[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
    """
    common = y_m * y_n
    return common, y_m - common, y_n - common


def self_pair_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The official self-pair partners of a batch: its flip, and its 0.75x and 2x rescales (bilinear)."""
    views = [x.flip(-1)]
    for s in SELF_PAIR_SCALES:
        size = (max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s)))
        views.append(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
    return views


@register_method("mcis")
class MCISMethod(CAMMethod):
    """MCIS's pairs, network and losses (module docstring); CAM inference by co-segmentation or by the
    single-image head (``method.cam_inference``)."""

    def __init__(self, cfg, classes):
        super().__init__(cfg, classes)
        if cfg.method.cam_inference == "cosegmentation":
            raise ConfigError(
                "method.cam_inference=cosegmentation (MCIS's co-segmentation inference) is not available yet; "
                "use method.cam_inference=single"
            )

    def train_transform(self) -> T.Compose:
        d = self.cfg.data
        return T.Compose([
            T.RandomRescale(scale=tuple(d.scale_range)), T.RandomCrop(d.crop_size), T.RandomHorizontalFlip(),
            T.ColorJitter(0.3, 0.3, 0.3, 0.1, p=1.0), T.Normalize(),
        ])  # fmt: skip

    def train_dataset(self, dataset):
        """Each training image with a partner sharing one of its classes."""
        return PairDataset(dataset, seed=self.cfg.train.seed)

    def build_model(self) -> MCISNet:
        m = self.cfg.model
        if m.name not in ("mcis", "cam_classifier"):
            raise ConfigError(f"method mcis trains model.name=mcis, got {m.name!r}")
        return MCISNet(backbone=m.backbone, num_classes=len(self.classes.tag_indices),
                       output_stride=m.output_stride, weights=m.weights, pretrained=m.pretrained)  # fmt: skip

    def training_step(self, model, batch, ctx) -> dict:
        m = self.cfg.method
        keep = list(self.classes.tag_indices)
        x, y = batch["image"], batch["tags"][:, keep]
        partner, y_p = batch["image" + PARTNER_SUFFIX], batch["tags" + PARTNER_SUFFIX][:, keep]
        partners = [partner, *(self_pair_views(x) if m.self_pairs else [])]
        out = model(x, partners=partners)
        pair = out["pairs"][0]
        common, only_x, only_p = pair_targets(y, y_p)

        def mlsm(key_or_logits, target, source=pair):
            logits = source[key_or_logits] if isinstance(key_or_logits, str) else key_or_logits
            return multilabel_soft_margin_loss(logits.float(), target)

        single = mlsm(out["logits"], y) + mlsm("partner_logits", y_p)
        co = mlsm("co_logits", common) + mlsm("partner_co_logits", common)
        self_terms = sum((mlsm("partner_logits", y, p) + mlsm("co_logits", y, p) for p in out["pairs"][1:]),
                         start=torch.zeros((), device=x.device))  # fmt: skip
        contrast = torch.zeros((), device=x.device)
        if ctx.epoch >= m.contrastive_from_epoch and (only_x.sum() + only_p.sum()) > 0:
            contrast = mlsm("contrast_logits", only_x) + mlsm("partner_contrast_logits", only_p)
        loss = single + co + self_terms + contrast
        return {"loss": loss, "single": single, "co": co, "self_pairs": self_terms, "contrast": contrast}
