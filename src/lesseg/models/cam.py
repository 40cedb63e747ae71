"""Class activation map (CAM) classifier: Zhou et al., "Learning Deep Features for Discriminative
Localization", CVPR 2016, in the fully-convolutional form of IRN (Ahn et al. 2019) and Puzzle-CAM
(Jo & Yu 2021).

The last feature map ``f`` of the backbone goes through a 1x1 convolution without bias, giving one map
per class, ``M_c = w_c^T f``; global average pooling gives the logit ``z_c = mean_{i,j} M_c(i, j)``. As
the convolution is linear and has no bias this equals classifying the pooled features (the original
CAM), and the maps ``M_c`` are the CAMs (before the ReLU and normalisation that CAM methods apply).

Example:
    >>> import torch
    >>> from lesseg.models import CAMClassifier, multilabel_soft_margin_loss
    >>> model = CAMClassifier("resnet18", num_classes=20)
    >>> out = model(torch.randn(2, 3, 64, 64))
    >>> out["logits"].shape, out["cams"].shape
    (torch.Size([2, 20]), torch.Size([2, 20, 4, 4]))
    >>> loss = multilabel_soft_margin_loss(out["logits"], torch.zeros(2, 20))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.errors import ConfigError
from lesseg.models.backbones import create_backbone
from lesseg.models.base import SegmentationModel, register_model


@register_model("cam_classifier")
class CAMClassifier(SegmentationModel):
    """Multi-label image classifier whose 1x1 classifier gives class activation maps.

    Args:
        backbone: timm model name (see :func:`~lesseg.models.create_backbone`); IRN and Puzzle-CAM use
            ``"resnet50"``.
        num_classes: foreground classes (20 for PASCAL VOC); background has no map.
        output_stride: stride of the CAMs: 16 (IRN, Puzzle-CAM), 8 or 32.
        weights: local checkpoint for the backbone (``.pth``/``.safetensors``); ``None`` for none.
        pretrained: download timm's ImageNet weights for the backbone; with neither, random init.
        img_size: fixed input size for ViT backbones; ``None`` otherwise.

    ``forward(x)`` returns ``{"logits": [N, C], "cams": [N, C, h, w]}``, ``h`` about ``H / output_stride``;
    ``logits`` is the spatial mean of ``cams``. ``head`` is the bias-free 1x1 convolution
    (Kaiming-normal init); there is no decoder.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 20,
        output_stride: int = 16,
        weights: str | None = None,
        pretrained: bool = False,
        img_size: int | None = None,
    ):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"model.num_classes must be a positive integer, got {num_classes!r}")
        encoder = create_backbone(backbone, output_stride, weights, pretrained, img_size=img_size)
        head = nn.Conv2d(encoder.channels[-1], num_classes, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(head.weight)
        super().__init__(encoder, nn.Identity(), head)
        self.num_classes = num_classes

    def decode(self, features: list[torch.Tensor], input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Class maps from the deepest feature map, and their global average as logits."""
        cams = self.head(self.decoder(features[-1]))
        return {"logits": cams.mean(dim=(2, 3)), "cams": cams}


def multilabel_soft_margin_loss(logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Multi-label soft-margin loss of image-level tags (the classification loss of CAM methods).

    .. math::
        \\ell = \\frac{1}{N C} \\sum_{n=1}^{N} \\sum_{c=1}^{C}
        -\\left[ y_{nc} \\log \\sigma(x_{nc}) + (1 - y_{nc}) \\log \\sigma(-x_{nc}) \\right]

    i.e. the mean over classes (then over the batch) of a per-class logistic loss; equal to
    ``torch.nn.functional.multilabel_soft_margin_loss``, which computes it.

    Args:
        logits: ``[N, C]`` raw scores ``x``.
        tags: ``[N, C]`` targets ``y`` in {0, 1} (soft values in [0, 1] also work).

    Example:
        >>> multilabel_soft_margin_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(1.4100)
    """
    if logits.ndim != 2 or logits.shape != tags.shape:
        raise ValueError(
            f"logits and tags must both be [N, C]; got {list(logits.shape)} and {list(tags.shape)}"
        )
    return F.multilabel_soft_margin_loss(logits, tags.to(logits.dtype))
