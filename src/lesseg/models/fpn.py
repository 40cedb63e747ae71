"""PiCIE's feature network: Cho et al., "PiCIE: Unsupervised Semantic Segmentation using Invariance and
Equivariance in Clustering", CVPR 2021 (Sec. 4): a ResNet with a light FPN decoder (Lin et al. 2017).

The backbone's last four levels (strides 4, 8, 16, 32 for a ResNet) go through 1x1 lateral convolutions
to ``channels`` (128); from the deepest, each is upsampled bilinearly to the next finer level and added.
The stride-4 result, L2-normalised over channels, is the pixel embedding that PiCIE clusters (cosine
geometry: centroids classify by dot product).

Example:
    >>> import torch
    >>> net = PiCIEFPN("resnet18")
    >>> out = net(torch.randn(2, 3, 64, 64))
    >>> out["features"].shape
    torch.Size([2, 128, 16, 16])
    >>> torch.allclose(out["features"].norm(dim=1), torch.ones(2, 16, 16))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.errors import ConfigError
from lesseg.models.backbones import create_backbone
from lesseg.models.base import SegmentationModel, register_model


@register_model("picie_fpn")
class PiCIEFPN(SegmentationModel):
    """ResNet + light FPN giving L2-normalised pixel features at stride 4.

    Args:
        backbone: timm model name (PiCIE: ``"resnet18"``); its last four levels are used.
        channels: embedding width (PiCIE: 128).
        output_stride: of the backbone (32: no dilation, as PiCIE).
        weights, pretrained: backbone weights (local file / timm download); PiCIE starts from ImageNet.

    ``forward(x)`` returns ``{"features": [N, channels, ~H/4, ~W/4]}`` with unit norm at every pixel.
    """

    def __init__(self, backbone: str = "resnet18", channels: int = 128, output_stride: int = 32,
                 weights: str | None = None, pretrained: bool = False):  # fmt: skip
        encoder = create_backbone(backbone, output_stride, weights, pretrained)
        if len(encoder.channels) < 4:
            raise ConfigError(
                f"model.backbone={backbone!r} gives {len(encoder.channels)} levels; the FPN needs 4"
            )
        laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in encoder.channels[-4:])
        super().__init__(encoder, laterals, nn.Identity())
        self.channels = channels

    def decode(self, features: list[torch.Tensor], input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        levels = [lateral(f) for lateral, f in zip(self.decoder, features[-4:])]
        top = levels[-1]
        for finer in reversed(levels[:-1]):
            top = finer + F.interpolate(top, size=finer.shape[-2:], mode="bilinear", align_corners=False)
        return {"features": F.normalize(top, dim=1)}
