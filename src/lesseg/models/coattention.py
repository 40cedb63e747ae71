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
