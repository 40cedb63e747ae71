"""Photometric transforms: colour jitter, blur, grayscale, cutout and normalisation; they change the image
only, so masks and maps pass through untouched and replay/invert skip them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import IMAGENET_MEAN, IMAGENET_STD, Size, Transform, _is_num, _prob, _range


class Photometric(Transform):
    """A colour transform: changes the image only; masks and maps pass through untouched. With
    ``unit_floats``, ``apply_image`` sees floats in [0, 1] (a uint8 image is converted there and back).

        >>> class Invert(Photometric):
        ...     def sample(self, rng, size): return {"name": "invert"} if rng.random() < 0.5 else None
        ...     def apply_image(self, params, x): return 1 - x
    """

    unit_floats = True

    def apply(self, params: dict, x: Tensor, kind: str = "image") -> Tensor:
        if kind != "image":
            return x
        if not (self.unit_floats and x.dtype == torch.uint8):
            return self.apply_image(params, x)
        return (self.apply_image(params, x.float() / 255) * 255).round().clamp(0, 255).to(torch.uint8)

    def apply_image(self, params: dict, x: Tensor) -> Tensor:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------- helpers


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma [..., 1, H, W] of an RGB image [..., 3, H, W]."""
    r, g, b = x.unbind(-3)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _blend(a: Tensor, b, f: float) -> Tensor:
    return (f * a + (1 - f) * b).clamp(0, 1)


def _shift_hue(x: Tensor, shift: float) -> Tensor:
    """Rotate the hue of an RGB image in [0, 1] by ``shift`` turns (through HSV)."""
    r, g, b = x.unbind(-3)
    v, c = x.amax(-3), x.amax(-3) - x.amin(-3)
    s = torch.where(v > 0, c / v.clamp_min(1e-12), 0)
    cc = c.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / cc, torch.where(v == g, 2 + (b - r) / cc, 4 + (r - g) / cc))
    h = (torch.where(c > 0, h / 6, 0) + shift) % 1 * 6
    i, f = h.floor(), h - h.floor()
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack([v, q, p, p, t, v, t, v, v, q, p, p, p, p, t, v, v, q]).view(3, 6, *v.shape)
    idx = (i.long() % 6).expand(3, 1, *v.shape)
    return table.gather(1, idx).squeeze(1).movedim(0, -3)


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of every channel, radius ceil(3 sigma) capped to the image, reflect padding."""
    H, W = x.shape[-2:]
    r = min(math.ceil(3 * sigma), H - 1, W - 1)
    if r < 1:
        return x
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.pad(x.reshape(-1, 1, H, W), (r, r, r, r), mode="reflect")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
    return y.reshape(x.shape)


def _jitter(arg: str, v, centre: float, lo: float, hi: float):
    if v is None or (_is_num(v) and v == 0):
        return None
    if _is_num(v):
        if not 0 <= v <= (0.5 if arg == "hue" else math.inf):
            limit = " and <= 0.5" if arg == "hue" else ""
            raise ValueError(
                f"ColorJitter: {arg} must be a number >= 0{limit} or a (min, max) pair, got {v!r}"
            )
        return (max(lo, centre - v), centre + v)
    return _range("ColorJitter", arg, v, lo=lo, hi=hi)


class ColorJitter(Photometric):
    """With probability p, jitter brightness, contrast, saturation (factor ranges; a number b means
    [1-b, 1+b]) and hue (a shift; h means [-h, h], within [-0.5, 0.5]) in a random order, like torchvision.
    Use before ``Normalize``. ``ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)``"""

    name = "color_jitter"
    OPS = {
        "brightness": lambda x, f: (x * f).clamp(0, 1),
        "contrast": lambda x, f: _blend(x, _gray(x).mean((-3, -2, -1), keepdim=True), f),
        "saturation": lambda x, f: _blend(x, _gray(x), f),
        "hue": _shift_hue,
    }

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p: float = 0.8):
        given = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        self.ranges = {k: _jitter(k, v, 1.0, 0.0, math.inf) for k, v in given.items()}
        self.ranges["hue"] = _jitter("hue", hue, 0.0, -0.5, 0.5)
        self.p = _prob("ColorJitter", p)

    def sample(self, rng: np.random.Generator, size: Size) -> dict | None:
        if rng.random() >= self.p:
            return None
        order = [k for k in np.array(list(self.OPS))[rng.permutation(4)].tolist() if self.ranges[k]]
        return {"name": self.name, "order": order, **{k: float(rng.uniform(*self.ranges[k])) for k in order}}

    def apply_image(self, params: dict, x: Tensor) -> Tensor:
        for k in params["order"]:
            x = self.OPS[k](x, params[k])
        return x


class GaussianBlur(Photometric):
    """With probability p, blur with a sigma drawn from a range (kernel radius ceil(3 sigma), capped to the
    image). ``GaussianBlur(sigma=(0.1, 2.0), p=0.5)``"""

    name = "blur"

    def __init__(self, sigma=(0.1, 2.0), p: float = 0.5):
        self.sigma = _range("GaussianBlur", "sigma", sigma, lo=1e-6)
        self.p = _prob("GaussianBlur", p)

    def sample(self, rng: np.random.Generator, size: Size) -> dict | None:
        if rng.random() >= self.p:
            return None
        return {"name": self.name, "sigma": float(rng.uniform(*self.sigma))}

    def apply_image(self, params: dict, x: Tensor) -> Tensor:
        return _blur(x, params["sigma"])


class RandomGrayscale(Photometric):
    """With probability p, replace the colours by their luma (still 3 equal channels). ``RandomGrayscale(0.2)``"""

    name = "grayscale"

    def __init__(self, p: float = 0.2):
        self.p = _prob("RandomGrayscale", p)

    def sample(self, rng: np.random.Generator, size: Size) -> dict | None:
        return {"name": self.name} if rng.random() < self.p else None

    def apply_image(self, params: dict, x: Tensor) -> Tensor:
        return _gray(x).expand_as(x).clone()


class Cutout(Photometric):
    """With probability p, fill a square of side drawn from ``size`` (pixels, inclusive), centred anywhere
    and clipped to the image, with ``fill`` (a number, or one per channel: e.g. the mean pixel); the image
    only. ``Cutout(size=(16, 64), fill=0, p=0.5)``"""

    name = "cutout"
    unit_floats = False

    def __init__(self, size=(16, 64), fill: float = 0, p: float = 0.5):
        self.size = _range("Cutout", "size", size, lo=1, integer=True)
        if not (_is_num(fill) or (isinstance(fill, Sequence) and fill and all(_is_num(v) for v in fill))):
            raise ValueError(f"Cutout: fill must be a number or one number per channel, got {fill!r}")
        self.fill, self.p = fill, _prob("Cutout", p)

    def sample(self, rng: np.random.Generator, size: Size) -> dict | None:
        if rng.random() >= self.p:
            return None
        s = int(rng.integers(self.size[0], self.size[1] + 1))
        cy, cx = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        t, le = cy - s // 2, cx - s // 2
        t0, l0, t1, l1 = max(t, 0), max(le, 0), min(t + s, size[0]), min(le + s, size[1])
        return {"name": self.name, "rect": [t0, l0, t1 - t0, l1 - l0]}

    def apply_image(self, params: dict, x: Tensor) -> Tensor:
        t, le, h, w = params["rect"]
        x = x.clone()
        fill = self.fill if _is_num(self.fill) else torch.tensor(self.fill, dtype=x.dtype).view(-1, 1, 1)
        x[..., t : t + h, le : le + w] = fill
        return x


class Normalize(Photometric):
    """(x - mean) / std per channel; a uint8 image is first scaled to [0, 1] floats. Not random.
    ``Normalize()`` uses the ImageNet statistics."""

    name = "normalize"
    unit_floats = False

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        ok = all(isinstance(v, Sequence) and v and all(_is_num(a) for a in v) for v in (mean, std))
        if not ok or len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(
                f"Normalize: mean and std must be sequences of numbers of one length (one per channel), "
                f"std > 0; got mean={mean!r}, std={std!r}"
            )
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def sample(self, rng: np.random.Generator, size: Size) -> dict | None:
        return {"name": self.name}

    def apply_image(self, params: dict, x: Tensor) -> Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        mean, std = (torch.tensor(v, device=x.device).view(-1, 1, 1) for v in (self.mean, self.std))
        return (x - mean) / std
