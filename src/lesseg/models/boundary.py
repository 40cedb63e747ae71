"""Class-boundary network of IRN: Ahn, Cho & Kwak, "Weakly Supervised Learning of Instance Segmentation with
Inter-pixel Relations", CVPR 2019 (Sec. 3.1), in the form Puzzle-CAM (Jo & Yu 2021) trains as its
"AffinityNet".

A frozen backbone gives feature maps at several strides; each level goes through its own branch (1x1
convolution to 32 channels, GroupNorm with 4 groups, resizing to the stride-4 grid, ReLU), the branches are
concatenated (``32 x levels`` channels) and a last 1x1 convolution predicts one boundary logit per stride-4
cell. The boundary probability ``B = sigmoid(logit)`` gives the affinity of two nearby pixels as
``1 - max B`` along the line between them (:mod:`lesseg.refine.affinity`), trained with the affinity loss
of :mod:`lesseg.refine.affinity_loss`.

Example:
    >>> import torch
    >>> from lesseg.models import create_backbone
    >>> net = BoundaryNet(create_backbone("resnet18", output_stride=16))
    >>> net(torch.randn(2, 3, 64, 64))["boundary_logits"].shape
    torch.Size([2, 1, 16, 16])
    >>> net.boundary(torch.randn(1, 3, 70, 90)).shape  # probabilities, ceil(H / 4) x ceil(W / 4)
    torch.Size([1, 1, 18, 23])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.models.backbones import Backbone
from lesseg.models.base import split_param_groups

#: Stride of the boundary map (IRN: a 512x512 crop gives a 128x128 map).
BOUNDARY_STRIDE = 4
#: Channels of each level's branch and GroupNorm groups (IRN: 32 channels, 4 groups).
BRANCH_CHANNELS = 32
BRANCH_GROUPS = 4


class BoundaryNet(nn.Module):
    """IRN's boundary branch on a frozen backbone.

    Args:
        backbone: a :class:`~lesseg.models.Backbone` (from :func:`~lesseg.models.create_backbone`). The
            lesseg pipeline passes the trained CAM classifier's encoder. The official IRN / Puzzle-CAM code
            uses an ImageNet-pretrained ResNet-50 instead; a backbone with random init would give random
            features, so pass trained or pretrained weights. The backbone's BatchNorm statistics stay
            fixed (it is kept in eval mode) and, with ``freeze_backbone``, so are its weights, *in place*
            (``requires_grad`` off): pass a copy (``copy.deepcopy(classifier.encoder)``) to keep the
            original trainable.
        freeze_backbone: IRN's choice and the default (True): the branch reads detached features. False
            trains the backbone's weights with the branch (its BatchNorm statistics still fixed), for
            backbones whose features hold too little edge information, e.g. one trained from scratch on a
            small dataset; the backbone then falls in the ``backbone_*`` parameter groups.

    Every level the backbone returns gets a branch. A level of stride ``r`` is resized to the stride-4
    grid of ``ceil(H / 4) x ceil(W / 4)`` cells: upsampled bilinearly by ``r / 4`` (IRN's
    ``nn.Upsample(scale_factor)``, keeping cells aligned) when coarser, average-pooled by ``4 / r`` when
    finer (a ResNet's stride-2 stem), then cropped to the grid (edge-replicated if a backbone gives
    a smaller map). Branch convolutions have no bias (GroupNorm follows) and Kaiming-normal init; the
    final 1x1 convolution keeps PyTorch's default init, with a bias.

    ``forward(x)`` returns ``{"boundary_logits": [N, 1, ceil(H / 4), ceil(W / 4)]}``; :meth:`boundary`
    gives the sigmoid probabilities. With a frozen backbone the features are computed without gradient
    (IRN detaches them).
    """

    def __init__(self, backbone: Backbone, freeze_backbone: bool = True):
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise ValueError(
                f"backbone must be a lesseg Backbone (from create_backbone), got {type(backbone).__name__}"
            )
        self.encoder = backbone
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, BRANCH_CHANNELS, kernel_size=1, bias=False),
                nn.GroupNorm(BRANCH_GROUPS, BRANCH_CHANNELS),
            )
            for c in backbone.channels
        )
        self.head = nn.Conv2d(BRANCH_CHANNELS * len(backbone.channels), 1, kernel_size=1)
        for branch in self.branches:
            nn.init.kaiming_normal_(branch[0].weight, mode="fan_out", nonlinearity="relu")

    def train(self, mode: bool = True) -> BoundaryNet:
        """Set the new layers' mode; the backbone always stays in eval mode (fixed BatchNorm)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Boundary logits ``[N, 1, ceil(H / 4), ceil(W / 4)]`` of a batch ``x`` of shape ``[N, 3, H, W]``."""
        self._check_input(x)
        size = (math.ceil(x.shape[2] / BOUNDARY_STRIDE), math.ceil(x.shape[3] / BOUNDARY_STRIDE))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            features = self.encoder(x)
        maps = []
        for branch, feature, reduction in zip(self.branches, features, self.encoder.reductions):
            y = _to_grid(branch(feature), reduction, size)
            maps.append(F.relu(y))
        return {"boundary_logits": self.head(torch.cat(maps, dim=1))}

    def boundary(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the logits, in [0, 1]: ``[N, 1, ceil(H / 4), ceil(W / 4)]``."""
        return torch.sigmoid(self(x)["boundary_logits"])

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters in the engine's four groups: the branch and head are ``new_*``
        (kernels ``new_weight``; biases and GroupNorm parameters ``new_bias``, no weight decay); the
        backbone's ``backbone_*`` groups are empty unless ``freeze_backbone`` is False."""
        return split_param_groups(self, self.encoder)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor of shape [N, 3, H, W], got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an input of shape [N, 3, H, W] (RGB), got {list(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a float input (normalised image), got dtype {x.dtype}")
        self.encoder.check_input_size(int(x.shape[2]), int(x.shape[3]))


def _to_grid(y: torch.Tensor, reduction: int, size: tuple[int, int]) -> torch.Tensor:
    """Resize a stride-``reduction`` map to the stride-4 grid ``size``, cell-aligned as IRN."""
    if reduction > BOUNDARY_STRIDE and reduction % BOUNDARY_STRIDE == 0:
        factor = reduction // BOUNDARY_STRIDE
        y = F.interpolate(y, scale_factor=factor, mode="bilinear", align_corners=False)
    elif reduction < BOUNDARY_STRIDE and BOUNDARY_STRIDE % reduction == 0:
        y = F.avg_pool2d(y, BOUNDARY_STRIDE // reduction, ceil_mode=True)
    elif reduction != BOUNDARY_STRIDE:  # a stride that is no multiple or divisor of 4: plain resize
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)
    y = y[..., : size[0], : size[1]]
    pad_h, pad_w = size[0] - y.shape[2], size[1] - y.shape[3]
    if pad_h > 0 or pad_w > 0:
        y = F.pad(y, (0, max(pad_w, 0), 0, max(pad_h, 0)), mode="replicate")
    return y
