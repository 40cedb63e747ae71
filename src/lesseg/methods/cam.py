"""The CAM baseline (Zhou et al., CVPR 2016): a classifier trained on image-level tags.

Its class activation maps (the 1x1 classifier applied before global average pooling) localise each tagged
class; Puzzle-CAM and MCIS are measured against it. Training sees tags only, never a mask.
"""

from __future__ import annotations

import torch

from lesseg.data import transforms as T
from lesseg.data.splits import Supervision
from lesseg.methods.base import Method, register_method
from lesseg.models import create_model, multilabel_soft_margin_loss


@register_method("cam")
class CAMMethod(Method):
    def supervision(self) -> Supervision:
        return Supervision(masks="none", tags=True)

    def train_transform(self) -> T.Compose:
        d = self.cfg.data
        return T.Compose([
            T.RandomRescale(scale=tuple(d.scale_range)), T.RandomCrop(d.crop_size),
            T.RandomHorizontalFlip(), T.Normalize(),
        ])  # fmt: skip

    def build_model(self) -> torch.nn.Module:
        return create_model(self.cfg.model.name, **self.model_kwargs())

    def model_kwargs(self) -> dict:
        """The classifier's arguments from ``model.*``: one output per taggable class (no background)."""
        m = self.cfg.model
        return {"backbone": m.backbone, "num_classes": len(self.classes.tag_indices),
                "output_stride": m.output_stride, "weights": m.weights, "pretrained": m.pretrained}  # fmt: skip

    def training_step(self, model, batch, ctx) -> dict:
        # the classifier has one output per taggable class (no background output)
        tags = batch["tags"][:, list(self.classes.tag_indices)]
        logits = model(batch["image"])["logits"]
        return {"loss": multilabel_soft_margin_loss(logits.float(), tags)}
