"""DeepLabv3+: Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV 2018.

Atrous spatial pyramid pooling (ASPP, DeepLabv3) on the deepest backbone map: a 1x1 convolution, three
3x3 convolutions dilated by ``rates`` ((6, 12, 18) at output stride 16, doubled to (12, 24, 36) at 8) and
image pooling (global average -> 1x1 conv -> broadcast back), each 256 channels, concatenated and
projected by a 1x1 convolution to 256 (then dropout). The decoder reduces the stride-4 backbone map to
48 channels with a 1x1 convolution, concatenates it with the ASPP output upsampled to stride 4 and
refines with two 3x3 convolutions of 256; a 1x1 classifier gives the logits, upsampled bilinearly to the
input size. (The paper's Xception uses depthwise-separable convolutions; these are plain ones.)

Example:
    >>> import torch
    >>> from lesseg.models import DeepLabV3Plus
    >>> model = DeepLabV3Plus("resnet18", num_classes=21, output_stride=16, norm="gn")
    >>> model(torch.randn(1, 3, 64, 64))["logits"].shape
    torch.Size([1, 21, 64, 64])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.errors import ConfigError
from lesseg.models.backbones import create_backbone
from lesseg.models.base import SegmentationModel, register_model

NORMS = ("bn", "gn")
#: ASPP dilation rates at output stride 16; scaled by ``16 / output_stride`` otherwise.
RATES_AT_16 = (6, 12, 18)


def make_norm(norm: str, channels: int) -> nn.Module:
    """BatchNorm (``"bn"``) or GroupNorm (``"gn"``) with ``gcd(32, channels)`` groups: 32 when the channels
    divide by 32, else the largest power of two dividing them (48 channels: 16 groups)."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise ConfigError(f"model.norm={norm!r} is not valid; use one of {NORMS}")


def conv_norm_relu(cin: int, cout: int, kernel: int, norm: str, dilation: int = 1) -> nn.Sequential:
    """Bias-free convolution (same padding), normalisation, ReLU."""
    pad = dilation * (kernel - 1) // 2
    conv = nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False)
    return nn.Sequential(conv, make_norm(norm, cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with an image-pooling branch (DeepLabv3, Chen et al. 2017).

    Args:
        in_channels: channels of the input map. out_channels: of every branch and of the output.
        rates: dilation of the three 3x3 branches. norm: ``"bn"`` or ``"gn"``.
        dropout: after the projection (0.5 in DeepLabv3+; 0 disables).
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int], norm: str, dropout: float):
        super().__init__()
        branches = [conv_norm_relu(in_channels, out_channels, 1, norm)]
        branches += [conv_norm_relu(in_channels, out_channels, 3, norm, r) for r in rates]
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_norm_relu(in_channels, out_channels, 1, norm))
        n = len(branches) + 1
        self.project = nn.Sequential(
            conv_norm_relu(n * out_channels, out_channels, 1, norm), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deepest map plus the stride-4 refinement; returns a 256-channel stride-4 map.

    Args:
        channels: backbone channels per level; low_index / high_index: levels used (stride 4 / deepest).
        rates, norm, dropout: as in :class:`ASPP`. Widths follow the paper: 256, low-level 48.
    """

    def __init__(self, channels, low_index, high_index, rates, norm, dropout, width=256, low_width=48):
        super().__init__()
        self.low_index, self.high_index = low_index, high_index
        self.aspp = ASPP(channels[high_index], width, rates, norm, dropout)
        self.reduce = conv_norm_relu(channels[low_index], low_width, 1, norm)
        self.fuse = nn.Sequential(
            conv_norm_relu(width + low_width, width, 3, norm), conv_norm_relu(width, width, 3, norm)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.reduce(features[self.low_index])
        high = self.aspp(features[self.high_index])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([high, low], dim=1))


@register_model("deeplabv3plus")
class DeepLabV3Plus(SegmentationModel):
    """DeepLabv3+ semantic segmentation model.

    Args:
        backbone: timm model name with a stride-4 level (ResNets, ConvNeXt, EfficientNets, ...; not a
            plain ViT, whose maps are all stride 16).
        num_classes: classes to predict, background included (21 for PASCAL VOC).
        output_stride: 16 (paper's training setting) or 8 (finer, ~3x slower); 32 is allowed.
        norm: ``"bn"`` (BatchNorm, needs batches > 1 in training because of the image-pooling branch) or
            ``"gn"`` (GroupNorm, 32 groups or fewer, see :func:`make_norm`; works with any batch). Applies
            to the decoder; the backbone keeps its own norm layers.
        aspp_dropout: dropout after the ASPP projection (0.5 as in the paper; 0 disables).
        atrous_rates: ASPP rates; default (6, 12, 18) x 16 / output_stride.
        weights, pretrained, img_size: backbone initialisation, see :func:`~lesseg.models.create_backbone`;
            default random init.

    ``forward(x)`` returns ``{"logits": [N, num_classes, H, W]}`` at the input size.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 21,
        output_stride: int = 16,
        norm: str = "bn",
        aspp_dropout: float = 0.5,
        atrous_rates: Sequence[int] | None = None,
        weights: str | None = None,
        pretrained: bool = False,
        img_size: int | None = None,
    ):
        if norm not in NORMS:
            raise ConfigError(f"model.norm={norm!r} is not valid; use one of {NORMS}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"model.num_classes must be a positive integer, got {num_classes!r}")
        if not 0.0 <= aspp_dropout < 1.0:
            raise ConfigError(f"model.aspp_dropout must be in [0, 1), got {aspp_dropout!r}")
        encoder = create_backbone(backbone, output_stride, weights, pretrained, img_size=img_size)
        if 4 not in encoder.reductions:
            raise ConfigError(
                f"deeplabv3plus needs a backbone with a stride-4 feature map; {backbone!r} gives strides "
                f"{encoder.reductions}. Use a CNN backbone (e.g. resnet50, convnext_tiny)"
            )
        if atrous_rates is None:
            atrous_rates = [r * 16 // output_stride for r in RATES_AT_16]
        low_index = encoder.reductions.index(4)
        decoder = DeepLabV3PlusDecoder(encoder.channels, low_index, -1, atrous_rates, norm, aspp_dropout)
        head = nn.Conv2d(256, num_classes, kernel_size=1)
        super().__init__(encoder, decoder, head)
        self.num_classes = num_classes
        self._init_new_layers()

    def _init_new_layers(self) -> None:
        # He init for the decoder convolutions (each feeds a norm layer and a ReLU); the classifier starts
        # near zero (DeepLab's logits layer: normal, std 0.01), so the first loss is about log(classes).
        # He init there gave logits of std ~3.5 and a first loss twice that, whose large gradients reached
        # the pretrained backbone in the first steps.
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def decode(self, features: list[torch.Tensor], input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Decoder and classifier at stride 4, then bilinear upsampling to the input size."""
        logits = self.head(self.decoder(features))
        return {"logits": F.interpolate(logits, size=input_size, mode="bilinear", align_corners=False)}
