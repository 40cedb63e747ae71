"""Shared pieces of the transforms: constants, the per-sample generator, argument checks and the base class.

Every random choice is drawn from a ``numpy.random.Generator`` the caller passes (see ``seeded_rng``), never
from torch's or Python's global RNG, so a sample's augmentation depends only on (seed, epoch, index).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from torch import Tensor

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
KINDS = ("image", "mask", "map")
Size = tuple[int, int]


def seeded_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one sample: the same whatever the worker count, process count or resume point."""
    return np.random.default_rng([seed, epoch, index])


# ----------------------------------------------------------------------------------------- validation


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _range(owner: str, arg: str, v, lo: float = -math.inf, hi: float = math.inf, integer: bool = False):
    ok = isinstance(v, Sequence) and len(v) == 2 and all(_is_num(a) for a in v)
    ok = ok and (not integer or all(float(a).is_integer() for a in v)) and lo <= v[0] <= v[1] <= hi
    if not ok:
        what = "integers" if integer else "numbers"
        raise ValueError(
            f"{owner}: {arg} must be a pair (min, max) of {what} with {lo} <= min <= max <= {hi}, got {v!r}"
        )
    return (int(v[0]), int(v[1])) if integer else (float(v[0]), float(v[1]))


def _prob(owner: str, p) -> float:
    if not _is_num(p) or not 0 <= p <= 1:
        raise ValueError(f"{owner}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _size(owner: str, arg: str, v) -> Size:
    pair = (v, v) if isinstance(v, numbers.Integral) else v
    ok = isinstance(pair, Sequence) and len(pair) == 2
    if not ok or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) and a > 0 for a in pair):
        raise ValueError(
            f"{owner}: {arg} must be a positive int or a pair (height, width) of them, got {v!r}"
        )
    return int(pair[0]), int(pair[1])


def _interp(owner: str, v: str) -> str:
    if v not in INTERPOLATIONS:
        raise ValueError(f"{owner}: interpolation must be one of {', '.join(INTERPOLATIONS)}, got {v!r}")
    return v


# ------------------------------------------------------------------------------------------- base class


class Transform:
    """Base of every transform: ``sample`` draws params (None = not applied), ``apply`` uses them on one
    tensor of a kind ("image", "mask" or "map"). Subclasses are photometric (image only) or geometric.

        >>> import torch
        >>> from lesseg.data.transforms import RandomHorizontalFlip, seeded_rng
        >>> flip = RandomHorizontalFlip(p=1.0)
        >>> mask = torch.tensor([[0, 1, 2]])
        >>> p = flip.sample(seeded_rng(0, 0, 7), (1, 3))
        >>> flip.apply(p, mask, "mask").tolist()
        [[2, 1, 0]]
    """

    name = "transform"
    geometric = False

    def sample(self, rng: np.random.Generator, size: Size) -> dict | None:
        raise NotImplementedError

    def apply(self, params: dict, x: Tensor, kind: str = "image") -> Tensor:
        raise NotImplementedError

    def invert(self, params: dict, x: Tensor, kind: str = "map") -> Tensor:
        raise NotImplementedError(f"{self.name} is photometric: it has no inverse in space")

    def output_size(self, params: dict, size: Size) -> Size:
        return size

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"
