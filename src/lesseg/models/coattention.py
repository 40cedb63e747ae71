"""Cross-image co-attention of MCIS: Sun, Wang, Dai & Van Gool, "Mining Cross-Image Semantics for Weakly
Supervised Semantic Segmentation", ECCV 2020 (Sec. 3.2, Eqs. 3-5).

Two images ``m`` and ``n`` with feature maps ``F_m`` (``C x P_m`` after flattening the positions) and
``F_n`` (``C x P_n``) are related by the affinity

    S = F_m^T W_P F_n          (P_m x P_n; W_P a learnable C x C matrix, not necessarily symmetric)

Each image is then re-expressed through the other: ``n``'s co-attentive feature at position ``j`` is the
average of ``m``'s features weighted by ``softmax`` of column ``j`` of ``S`` (over ``m``'s positions), and
``m``'s co-attentive feature at ``i`` averages ``n``'s features with ``softmax`` of row ``i`` of ``S``
(over ``n``'s positions)::

    Z_n = F_m softmax_m(S)        (C x P_n)
    Z_m = F_n softmax_n(S^T)      (C x P_m)

Example:
    >>> import torch
    >>> co = CoAttention(channels=4)
    >>> z_m, z_n = co(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 2, 5))
    >>> z_m.shape, z_n.shape
    (torch.Size([2, 4, 3, 3]), torch.Size([2, 4, 2, 5]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.models.base import SegmentationModel, register_model


class CoAttention(nn.Module):
    """Co-attention between two batches of feature maps (MCIS Eqs. 3-5, module docstring).

    Args:
        channels: ``C``, the features' channel count (512 for MCIS's VGG-16).

    ``W_P`` is initialised as the official code's bias-free ``nn.Linear(C, C)`` (uniform in
    ``[-1/sqrt(C), 1/sqrt(C)]``); that layer computes ``F_m^T W^T``, so ``W_P`` is its weight transposed.
    ``forward(f_m, f_n)`` returns ``(z_m, z_n)`` with the shapes of ``f_m`` and ``f_n``; :meth:`attention`
    returns the two attention matrices.
    """

    def __init__(self, channels: int):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        bound = channels**-0.5
        self.weight = nn.Parameter(torch.empty(channels, channels).uniform_(-bound, bound))

    def affinity(self, f_m: torch.Tensor, f_n: torch.Tensor) -> torch.Tensor:
        """``S = F_m^T W_P F_n``: ``[N, P_m, P_n]`` for features ``[N, C, H_m, W_m]`` and ``[N, C, H_n, W_n]``."""
        self._check(f_m, f_n)
        return f_m.flatten(2).transpose(1, 2) @ self.weight @ f_n.flatten(2)

    def attention(self, f_m: torch.Tensor, f_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A_m, A_n)``: ``A_m [N, P_m, P_n]`` sums to 1 over ``m``'s positions (dim 1) and gives ``z_n``;
        ``A_n [N, P_n, P_m]`` sums to 1 over ``n``'s positions (dim 1) and gives ``z_m``."""
        s = self.affinity(f_m, f_n)
        return F.softmax(s, dim=1), F.softmax(s.transpose(1, 2), dim=1)

    def forward(self, f_m: torch.Tensor, f_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a_m, a_n = self.attention(f_m, f_n)
        z_n = (f_m.flatten(2) @ a_m).reshape(f_n.shape)
        z_m = (f_n.flatten(2) @ a_n).reshape(f_m.shape)
        return z_m, z_n

    def _check(self, f_m: torch.Tensor, f_n: torch.Tensor) -> None:
        c = self.weight.shape[0]
        for name, f in (("f_m", f_m), ("f_n", f_n)):
            if f.ndim != 4 or f.shape[1] != c:
                raise ValueError(f"{name} must be [N, {c}, H, W], got {list(f.shape)}")
        if f_m.shape[0] != f_n.shape[0]:
            raise ValueError(
                f"f_m and f_n must hold the same number of images, got {f_m.shape[0]} and {f_n.shape[0]}"
            )


@register_model("mcis")
class MCISNet(SegmentationModel):
    """MCIS's classifier (Sun et al. 2020, Sec. 3): backbone, three extra 3x3 convolutions (512 channels,
    ReLU), and three heads on the resulting features ``F``:

    * ``head``: the single-image CAM classifier (1x1 convolution with bias); ``forward(x)`` returns its
      ``{"logits", "cams"}`` like :class:`~lesseg.models.CAMClassifier`, so the CAM stages can use it;
    * ``co_head``: the co-attention classifier (1x1, no bias) on co-attentive features;
    * ``gate``: the class-agnostic gate ``sigmoid(1x1 conv, no bias)`` of contrastive co-attention.

    ``forward(x, partners=[p_1, ...])`` runs ``x`` once and pairs it with each partner batch (all in one
    call, so DistributedDataParallel sees one forward); besides ``logits``/``cams`` of ``x`` it returns
    ``pairs``, one dict per partner: ``partner_logits``, ``co_logits``/``co_cams`` (``x``'s co-attentive
    feature through ``co_head``), ``partner_co_logits``/``partner_co_cams``, ``contrast_logits``
    (``co_head`` on ``F_x * (1 - gate(Z_x))``) and ``partner_contrast_logits``. Partners may differ in size
    from ``x`` (MCIS's rescaled self-pairs).

    Args:
        backbone: timm model name; MCIS uses ``"vgg16"`` at output stride 8 (DeepLab-LargeFOV style).
        num_classes: foreground classes.
        output_stride: 8 (MCIS), 16 or 32.
        weights, pretrained: backbone weights (local file / timm download), as :class:`CAMClassifier`.
        channels: width of the extra convolutions and of the co-attention (512).

    Initialisation as the official code: the extra convolutions and ``head`` He-normal with fan-out
    (``std = sqrt(2 / (k * k * out_channels))``), zero biases; ``co_head``, ``gate`` and ``W_P`` PyTorch's
    defaults. (PyTorch's default for the extra convolutions shrinks the features about 2.5x per layer; from
    random init the classifier then learns nothing but the tag prior in the first epochs.)
    """

    def __init__(self, backbone: str = "vgg16", num_classes: int = 20, output_stride: int = 8,
                 weights: str | None = None, pretrained: bool = False, channels: int = 512):  # fmt: skip
        from lesseg.models.backbones import create_backbone

        encoder = create_backbone(backbone, output_stride, weights, pretrained)
        layers: list[nn.Module] = []
        c_in = encoder.channels[-1]
        for _ in range(3):
            layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = channels
        head = nn.Conv2d(channels, num_classes, 1)
        for conv in [*layers[::2], head]:  # the official init of the extra layers: He normal, fan-out
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        super().__init__(encoder, nn.Sequential(*layers), head)
        self.coattention = CoAttention(channels)
        self.co_head = nn.Conv2d(channels, num_classes, 1, bias=False)
        self.gate = nn.Conv2d(channels, 1, 1, bias=False)
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.decoder(self.encoder(x)[-1])

    def forward(self, x: torch.Tensor, partners: list[torch.Tensor] | None = None) -> dict:
        f_x = self.features(x)
        cams = self.head(f_x)
        out: dict = {"logits": cams.mean(dim=(2, 3)), "cams": cams}
        if partners is None:
            return out
        out["pairs"] = [self._pair(f_x, self.features(partner)) for partner in partners]
        return out

    def _pair(self, f_x: torch.Tensor, f_p: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"partner_logits": self.head(f_p).mean(dim=(2, 3))}
        z_x, z_p = self.coattention(f_x, f_p)
        for prefix, f, z in (("", f_x, z_x), ("partner_", f_p, z_p)):
            co = self.co_head(z)
            out[prefix + "co_cams"] = co
            out[prefix + "co_logits"] = co.mean(dim=(2, 3))
            kept = f * (1 - torch.sigmoid(self.gate(z)))  # what the partner does not explain
            out[prefix + "contrast_logits"] = self.co_head(kept).mean(dim=(2, 3))
        return out

    def decode(self, features, input_size):  # forward() is overridden; kept for the base class contract
        cams = self.head(self.decoder(features[-1]))
        return {"logits": cams.mean(dim=(2, 3)), "cams": cams}
