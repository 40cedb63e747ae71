"""Geometric transforms: a box of the input resampled to an output size, maybe flipped; image, mask and
maps move together, and the recorded params replay or invert at any resolution (see ``resample``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from .base import IGNORE_INDEX, Size, Transform, _interp, _is_num, _prob, _range, _size
from .resample import _geo, _inverse, _scaled, _unflip


class Geometric(Transform):
    """A geometric transform: a box of the input resampled to an output size, maybe flipped. Subclasses
    implement ``frame(rng, size) -> (box, out, flip) | None``; image, mask and maps all move together.
    Image: ``interpolation`` (antialiased when shrinking); mask: nearest; float maps: bilinear; int: nearest.

        >>> class CentreCrop(Geometric):
        ...     def frame(self, rng, size):
        ...         return ((size[0] - 32) // 2, (size[1] - 32) // 2, 32, 32), (32, 32), False
    """

    geometric = True
    interpolation, fill, ignore_index = "bilinear", 0, IGNORE_INDEX

    def frame(self, rng: np.random.Generator, size: Size):
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, size: Size) -> dict | None:
        f = self.frame(rng, size)
        if f is None:
            return None
        (box, out, flip), fill = f, self.fill
        return {"name": self.name, "geometric": True, "size": [int(size[0]), int(size[1])],
                "box": [int(b) for b in box], "out": [int(o) for o in out], "flip": bool(flip),
                "interp": self.interpolation, "ignore": int(self.ignore_index),
                "fill": [float(v) for v in fill] if isinstance(fill, Sequence) else float(fill)}  # fmt: skip

    def apply(self, params: dict, x: Tensor, kind: str = "image") -> Tensor:
        return _geo(params, x, kind)[0]

    def invert(self, params: dict, x: Tensor, kind: str = "map") -> Tensor:
        return _geo(_inverse(params), _unflip(params, x), kind)[0]

    def output_size(self, params: dict, size: Size) -> Size:
        return _scaled(params, size)[1]


# ------------------------------------------------------------------------------------------ geometric


class RandomRescale(Geometric):
    """Rescale keeping the aspect ratio, with the long side, the short side (ints, inclusive) or the scale
    factor drawn uniformly from a range; give exactly one. ``RandomRescale(long_side=(320, 640))``"""

    name = "rescale"

    def __init__(self, long_side=None, short_side=None, scale=None, interpolation: str = "bilinear"):
        options = {"long_side": long_side, "short_side": short_side, "scale": scale}
        given = {k: v for k, v in options.items() if v is not None}
        if len(given) != 1:
            raise ValueError(
                "RandomRescale: give exactly one of long_side=(min, max), short_side=(min, max) or "
                f"scale=(min, max); got {', '.join(given) or 'none'}"
            )
        self.by = next(iter(given))
        integer = self.by != "scale"
        self.range = _range("RandomRescale", self.by, given[self.by], 1 if integer else 1e-6, integer=integer)
        self.interpolation = _interp("RandomRescale", interpolation)

    def frame(self, rng: np.random.Generator, size: Size):
        H, W = size
        if self.by == "scale":
            r = rng.uniform(*self.range)
        else:
            side = max(H, W) if self.by == "long_side" else min(H, W)
            r = int(rng.integers(self.range[0], self.range[1] + 1)) / side
        return (0, 0, H, W), (max(1, round(H * r)), max(1, round(W * r))), False


class RandomCrop(Geometric):
    """A random size window; where the input is smaller it is padded at a random position (image with
    ``fill``, mask with ``ignore_index``, maps with 0), IRN / Puzzle-CAM style. ``RandomCrop(512)``"""

    name = "crop"

    def __init__(self, size, fill: float | Sequence[float] = 0, ignore_index: int = IGNORE_INDEX):
        self.size = _size("RandomCrop", "size", size)
        if not (_is_num(fill) or (isinstance(fill, Sequence) and fill and all(_is_num(v) for v in fill))):
            raise ValueError(f"RandomCrop: fill must be a number or one number per channel, got {fill!r}")
        if not isinstance(ignore_index, numbers.Integral):
            raise ValueError(f"RandomCrop: ignore_index must be an int, got {ignore_index!r}")
        self.fill, self.ignore_index = fill, int(ignore_index)

    def frame(self, rng: np.random.Generator, size: Size):
        def offset(n: int, c: int) -> int:  # window start in the input; negative = pad before
            return int(rng.integers(0, n - c + 1)) if n >= c else -int(rng.integers(0, c - n + 1))

        (ch, cw), (H, W) = self.size, size
        return (offset(H, ch), offset(W, cw), ch, cw), (ch, cw), False


class CenterCrop(Geometric):
    """The central ``size`` window (padded evenly where the input is smaller); deterministic. With
    ``RandomRescale(short_side=(s, s))`` before it, PiCIE's "resize the short side, centre-crop" transform.
    ``CenterCrop(320)``"""

    name = "center_crop"

    def __init__(self, size):
        self.size = _size("CenterCrop", "size", size)

    def frame(self, rng: np.random.Generator, size: Size):
        (ch, cw), (H, W) = self.size, size
        return ((H - ch) // 2, (W - cw) // 2, ch, cw), (ch, cw), False


class RandomResizedCrop(Geometric):
    """A box of random area (fraction ``scale`` of the input) and aspect ``ratio``, resized to ``size``
    (PiCIE). ``RandomResizedCrop(320, scale=(0.5, 1.0))``"""

    name = "resized_crop"

    def __init__(self, size, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), interpolation: str = "bilinear"):
        self.size = _size("RandomResizedCrop", "size", size)
        self.scale = _range("RandomResizedCrop", "scale", scale, lo=1e-6, hi=1.0)
        self.ratio = _range("RandomResizedCrop", "ratio", ratio, lo=1e-6)
        self.interpolation = _interp("RandomResizedCrop", interpolation)

    def frame(self, rng: np.random.Generator, size: Size):
        H, W = size
        logr = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area, r = H * W * rng.uniform(*self.scale), math.exp(rng.uniform(*logr))
            w, h = round(math.sqrt(area * r)), round(math.sqrt(area / r))
            if 0 < w <= W and 0 < h <= H:
                t, le = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
                return (t, le, h, w), self.size, False
        # fallback: the largest central box whose aspect ratio is in range
        r = min(max(W / H, self.ratio[0]), self.ratio[1])
        h, w = (H, min(W, round(H * r))) if r <= W / H else (min(H, round(W / r)), W)
        return ((H - h) // 2, (W - w) // 2, h, w), self.size, False


class RandomHorizontalFlip(Geometric):
    """Mirror left-right with probability p; its own inverse. ``RandomHorizontalFlip(0.5)``"""

    name = "hflip"

    def __init__(self, p: float = 0.5):
        self.p = _prob("RandomHorizontalFlip", p)

    def frame(self, rng: np.random.Generator, size: Size):
        return ((0, 0, *size), size, True) if rng.random() < self.p else None
