"""SimFormer's network (Chen et al., "Weak-shot Semantic Segmentation via Dual Similarity Transfer", NeurIPS
2022): MaskFormer plus SimNet, the pixel-pixel similarity net of its "crosim" stage.

SimNet (official ``cross_img_sim``): three residual blocks over the concatenated mask features of two
pixels (each block two linear layers, i.e. 1x1 convolutions, with BatchNorm and ReLU, plus a skip; the
first squeezes ``2 mask_dim`` to ``width``), a two-way head, softmax: P(the two pixels share a class).

``SimFormerNet.forward(x, base_points=, novel_points=)`` runs MaskFormer and, for pixel pairs across two
images of the batch, SimNet: on base-point pairs (features detached, official ``BASE_DETACH``: SimNet
learns similarity without moving the features) and on novel-or-ignore point pairs, where SimNet is the
teacher (no gradient) and the student is ReLU of the cosine between the two pixels' novel-class score
vectors (softmax over all K+1 classes, the novel columns taken without renormalising, times the sigmoid
masks, summed over queries).

Example:
    >>> import torch
    >>> net = SimFormerNet("resnet18", num_classes=4, novel_classes=(3,), num_queries=5, dec_layers=1)
    >>> pts = PointPairs(torch.tensor([0]), torch.tensor([1]), torch.tensor([[0, 5]]), torch.tensor([[2, 7]]))
    >>> out = net(torch.randn(2, 3, 64, 64), base_points=pts, novel_points=pts)
    >>> out["base_same_prob"].shape, out["novel_student"].shape
    (torch.Size([1, 2, 2]), torch.Size([1, 2, 2]))
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lesseg.models.base import register_model
from lesseg.models.maskformer import MaskFormer


class PointPairs(NamedTuple):
    """Pixel pairs across images of a batch: for each pair of images ``(image_a[p], image_b[p])``, ``n``
    points in each (flat indices into the mask features' ``h x w``), all ``n x n`` cross pairs used."""

    image_a: torch.Tensor  # [P]
    image_b: torch.Tensor  # [P]
    index_a: torch.Tensor  # [P, n]
    index_b: torch.Tensor  # [P, n]


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
                                  nn.Linear(cout, cout, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True))  # fmt: skip
        self.skip = nn.Identity() if cin == cout else nn.Linear(cin, cout, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class SimNet(nn.Module):
    """P(same class) of pixel pairs from their two ``dim``-d features (see the module docstring).

    ``positive_history`` keeps the positive fraction of the last 25 batches of base pairs, the official
    running class balance of its loss; a buffer, so a resumed run weighs as the uninterrupted one.
    """

    def __init__(self, dim: int = 256, width: int = 256, blocks: int = 3, history: int = 25):
        super().__init__()
        self.blocks = nn.Sequential(*(_Block(2 * dim if i == 0 else width, width) for i in range(blocks)))
        self.head = nn.Linear(width, 2)
        self.register_buffer("positive_history", torch.full((history,), -1.0))  # -1: no batch yet

    def forward(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        """``[M, dim]`` features of the two pixels of M pairs -> ``[M]`` P(same class)."""
        return self.head(self.blocks(torch.cat([fa, fb], dim=1))).softmax(1)[:, 1]

    @torch.no_grad()
    def positive_fraction(self, batch_fraction: float) -> float:
        """Push this batch's positive fraction into the history; return the history's mean."""
        h = self.positive_history
        h.copy_(torch.cat([h[1:], h.new_tensor([batch_fraction])]))
        return float(h[h >= 0].mean())


def _gather_points(maps: torch.Tensor, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[N, C, h, w]`` maps at the points ``index`` [P, n] of images ``images`` [P] -> ``[P, n, C]``."""
    flat = maps.flatten(2)[images]  # [P, C, hw]
    return flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


@register_model("simformer")
class SimFormerNet(MaskFormer):
    """MaskFormer with SimNet (see the module docstring).

    Args:
        novel_classes: the novel class indices (the student's score columns); empty: no SimNet.
        simnet_width: SimNet's width (256).
        Every other argument: :class:`~lesseg.models.maskformer.MaskFormer`'s.
    """

    def __init__(self, backbone: str = "resnet50", num_classes: int = 150, novel_classes: tuple[int, ...] = (),
                 simnet_width: int = 256, output_stride: int = 32, num_queries: int = 100, hidden_dim: int = 256,
                 heads: int = 8, ffn_dim: int = 2048, dec_layers: int = 6, dropout: float = 0.1,
                 conv_dim: int = 256, mask_dim: int = 256, weights: str | None = None,
                 pretrained: bool = False, query_init: str = "zeros"):  # fmt: skip
        super().__init__(backbone, num_classes, output_stride, num_queries, hidden_dim, heads, ffn_dim, dec_layers,
                         dropout, conv_dim, mask_dim, weights, pretrained, query_init)  # fmt: skip
        self.novel_classes = tuple(int(c) for c in novel_classes)
        self.simnet = SimNet(mask_dim, simnet_width) if self.novel_classes else None

    def forward(self, x: torch.Tensor, base_points: PointPairs | None = None,
                novel_points: PointPairs | None = None) -> dict:  # fmt: skip
        out = super().forward(x)
        if self.simnet is None or (base_points is None and novel_points is None):
            return out
        feats = out["mask_features"]
        if base_points is not None:
            out["base_same_prob"] = self._pair_probs(feats.detach(), base_points)
        if novel_points is not None:
            with torch.no_grad():
                out["novel_teacher"] = self._pair_probs(feats.detach(), novel_points)
            out["novel_student"] = self._novel_cosine(out["pred_logits"], out["pred_masks"], novel_points)
        return out

    def _pair_probs(self, feats: torch.Tensor, pts: PointPairs) -> torch.Tensor:
        fa, fb = (
            _gather_points(feats, pts.image_a, pts.index_a),
            _gather_points(feats, pts.image_b, pts.index_b),
        )
        p, n, c = fa.shape
        m = fb.shape[1]
        pairs_a = fa[:, :, None, :].expand(p, n, m, c).reshape(-1, c)
        pairs_b = fb[:, None, :, :].expand(p, n, m, c).reshape(-1, c)
        return self.simnet(pairs_a, pairs_b).view(p, n, m)

    def _novel_cosine(
        self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, pts: PointPairs
    ) -> torch.Tensor:
        probs = pred_logits.float().softmax(-1)[..., list(self.novel_classes)]  # [N, Q, Kn]

        def scores(images, index):
            masks = _gather_points(pred_masks.float().sigmoid(), images, index)  # [P, n, Q]
            return masks @ probs[images]  # [P, n, Kn]

        sa, sb = scores(pts.image_a, pts.index_a), scores(pts.image_b, pts.index_b)
        return F.relu(F.normalize(sa, dim=-1) @ F.normalize(sb, dim=-1).transpose(1, 2))
