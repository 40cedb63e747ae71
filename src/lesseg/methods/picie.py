"""PiCIE: Cho, Mall, Bala & Hariharan, "PiCIE: Unsupervised Semantic Segmentation using Invariance and
Equivariance in Clustering", CVPR 2021 (in progress: the geometric replay so far).

Equivariance (Sec. 3.3): view 1 applies a geometric transform ``G`` (a resized crop and a flip) to the
*image* before the network; view 2 applies the same ``G`` to the network's *feature map* of the whole image.
Both views then describe the same pixels, so their cluster labels can supervise each other. ``G`` is
described resolution-free, as a crop box in normalised coordinates and a flip, so one draw applies to an
image and to a 4x smaller feature map alike (:func:`apply_geometry`).

Example:
    >>> import torch
    >>> g = Geometry(box=(0.0, 0.0, 0.5, 0.5), flip=False)  # the top-left quarter
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> apply_geometry(x, [g], (2, 2)).flatten().tolist()
    [0.0, 1.0, 4.0, 5.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Geometry:
    """A crop box ``(y0, x0, y1, x1)`` in [0, 1] coordinates of the whole image (0 = top/left edge, 1 =
    bottom/right edge) and a horizontal flip applied after cropping."""

    box: tuple[float, float, float, float]
    flip: bool


def random_geometry(rng: np.random.Generator, aspect: float = 1.0, scale: tuple[float, float] = (0.5, 1.0),
                    flip_p: float = 0.5) -> Geometry:  # fmt: skip
    """PiCIE's draw: a random resized crop of ``scale`` of the area (square in pixels for an image of
    aspect ``width / height``, within the image) and a flip with probability ``flip_p``."""
    area = rng.uniform(*scale)
    side_h = min(1.0, math.sqrt(area * aspect))  # a square crop: h_frac * H == w_frac * W
    side_w = min(1.0, side_h / aspect)
    y0 = rng.uniform(0, 1 - side_h)
    x0 = rng.uniform(0, 1 - side_w)
    return Geometry((y0, x0, y0 + side_h, x0 + side_w), bool(rng.random() < flip_p))


def apply_geometry(x: torch.Tensor, geometries: list[Geometry], size: tuple[int, int]) -> torch.Tensor:
    """Crop each map of ``x`` ``[N, C, H, W]`` to its box, resize it to ``size`` (bilinear sampling at the
    output pixels' centres) and flip it if asked: ``[N, C, *size]``. The box is in normalised
    coordinates, so the same geometry gives corresponding pixels on an image and on its feature map."""
    if x.ndim != 4 or len(geometries) != x.shape[0]:
        raise ValueError(
            f"need one geometry per map of a [N, C, H, W] input; got {len(geometries)} for {list(x.shape)}"
        )
    h, w = size
    grids = []
    for g in geometries:
        y0, x0, y1, x1 = g.box
        # output pixel centres -> normalised [-1, 1] coordinates of the input (align_corners=False)
        ys = y0 + (torch.arange(h, dtype=torch.float32) + 0.5) / h * (y1 - y0)
        xs = x0 + (torch.arange(w, dtype=torch.float32) + 0.5) / w * (x1 - x0)
        if g.flip:
            xs = xs.flip(0)
        gy, gx = torch.meshgrid(ys * 2 - 1, xs * 2 - 1, indexing="ij")
        grids.append(torch.stack([gx, gy], dim=-1))
    grid = torch.stack(grids).to(x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
