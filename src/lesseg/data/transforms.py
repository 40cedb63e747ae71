"""Paired, seeded, replayable transforms: an image, its mask and any extra maps move together.

Every random choice is drawn from a ``numpy.random.Generator`` the caller passes (see ``seeded_rng``), never
from torch's or Python's global RNG, so a sample's augmentation depends only on (seed, epoch, index).

Params are plain JSON. Geometric ones all share one resolution-independent shape: ``size`` (input [H, W]),
``box`` ([top, left, h, w] in input pixels; it may reach past the image, which pads), ``out`` ([h, w]) and
``flip``. Replaying on a map of another resolution scales box and out by map size / ``size``, so the params
of a 320 px image replay on its 80 px feature map (PiCIE), and ``invert`` maps a result back to the input.

    >>> t = Compose([RandomResizedCrop(32), RandomHorizontalFlip(), ColorJitter(), Normalize()])
    >>> out, params = t({"image": img, "mask": mask}, seeded_rng(0, epoch, index))
    >>> feat2 = replay(params, feat)             # view 1's geometry on view 2's [N, C, h, w] features
    >>> back, valid = invert(params, out["mask"], kind="mask")
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
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


# ------------------------------------------------------------------------------------ resampling core


def _as4d(x: Tensor, kind: str) -> tuple[Tensor, tuple]:
    """[N, C, H, W] view of an image/map ([H,W], [C,H,W] or [N,C,H,W]) or a mask ([H,W] or [N,H,W])."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if x.dim() == 2 or (kind == "mask" and x.dim() == 3):
        return x.reshape(-1, 1, *x.shape[-2:]), x.shape
    if kind != "mask" and x.dim() in (3, 4):
        return x.reshape(-1, *x.shape[-3:]), x.shape
    raise ValueError(
        f"a {kind} must be {'[N,]H,W' if kind == 'mask' else '[N,][C,]H,W'}, got shape {tuple(x.shape)}"
    )


def _restore(y: Tensor, shape: tuple) -> Tensor:
    return y.reshape(*shape[:-2], *y.shape[-2:])


def _to_float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.float()


def _back(y: Tensor, dtype: torch.dtype) -> Tensor:
    if dtype.is_floating_point:
        return y.to(dtype)
    if dtype == torch.bool:
        return y > 0.5
    info = torch.iinfo(dtype)
    return y.round().clamp(info.min, info.max).to(dtype)


def _fill(fill, x: Tensor) -> Tensor:
    f = torch.as_tensor(fill, device=x.device).to(x.dtype)
    return f.view(-1, 1, 1) if f.dim() == 1 else f


def _centres(start: float, length: float, n: int) -> Tensor:
    """Source coordinates (pixel edges at integers) of the centres of n output pixels spanning a box."""
    return start + (torch.arange(n, dtype=torch.float64) + 0.5) * (length / n)


def _resample(x: Tensor, box, out: Size, mode: str, antialias: bool, fill) -> tuple[Tensor, Tensor]:
    """Resample the box [top, left, h, w] of x [N,C,H,W] to out; returns it and where it lies inside x."""
    H, W = x.shape[-2:]
    t, le, h, w = box
    sy, sx = _centres(t, h, out[0]), _centres(le, w, out[1])
    valid = ((sy >= 0) & (sy < H))[:, None] & ((sx >= 0) & (sx < W))[None, :]
    if all(abs(b - round(b)) < 1e-6 for b in box):  # exact path: crop (with padding) by slicing, then resize
        t, le, h, w = (round(b) for b in box)
        y = _fill(fill, x).expand(*x.shape[:-2], h, w).clone()
        y0, y1, x0, x1 = max(t, 0), min(t + h, H), max(le, 0), min(le + w, W)
        if y1 > y0 and x1 > x0:
            y[..., y0 - t : y1 - t, x0 - le : x1 - le] = x[..., y0:y1, x0:x1]
        if (h, w) == tuple(out):
            return y, valid
        if mode == "nearest":
            z = F.interpolate(_to_float(y), size=tuple(out), mode="nearest-exact")
        else:
            aa = antialias and (out[0] < h or out[1] < w)
            z = F.interpolate(_to_float(y), size=tuple(out), mode=mode, align_corners=False, antialias=aa)
        return _back(z, x.dtype), valid
    # fractional box (a replay at another resolution, or an inverse): sample at the output pixel centres
    gx, gy = (2 * sx / W - 1).float(), (2 * sy / H - 1).float()
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).expand(x.shape[0], -1, -1, -1)
    xf = _to_float(x)
    z = F.grid_sample(xf, grid.to(x.device, xf.dtype), mode=mode, padding_mode="border", align_corners=False)
    z = torch.where(valid.to(x.device), z, _fill(fill, z))
    return _back(z, x.dtype), valid


def _ratio(geo: Sequence[dict], size: Size) -> tuple[float, float] | None:
    """Size of a map over the size its first step was recorded at (None when there are no steps)."""
    return (size[0] / geo[0]["size"][0], size[1] / geo[0]["size"][1]) if geo else None


def _scaled(p: dict, size: Size, ratio: tuple[float, float] | None = None) -> tuple[list[float], Size]:
    """The box and output size of params p on an input of the given size. The box scales with this input;
    the output size with ``ratio`` (the whole chain's, so rounding does not accumulate over steps)."""
    ry, rx = size[0] / p["size"][0], size[1] / p["size"][1]
    oy, ox = ratio or (ry, rx)
    (t, le, h, w), (oh, ow) = p["box"], p["out"]
    return [t * ry, le * rx, h * ry, w * rx], (max(1, round(oh * oy)), max(1, round(ow * ox)))


def _geo(p: dict, x: Tensor, kind: str, ratio=None) -> tuple[Tensor, Tensor]:
    """Geometric params p applied to x at any resolution; returns the result and its validity [h, w]."""
    x4, shape = _as4d(x, kind)
    box, out = _scaled(p, tuple(x4.shape[-2:]), ratio)
    if kind == "image":
        mode, fill = p.get("interp", "bilinear"), p.get("fill", 0)
    elif kind == "mask" or not x.is_floating_point():
        mode, fill = "nearest", p.get("ignore", IGNORE_INDEX) if kind == "mask" else 0
    else:
        mode, fill = "bilinear", 0
    y, valid = _resample(x4, box, out, mode, kind == "image", fill)
    if p.get("flip"):
        y, valid = y.flip(-1), valid.flip(-1)
    return _restore(y, shape), valid.to(x.device)


def _inverse(p: dict) -> dict:
    """Params taking p's output frame back to its input frame (flip undone separately)."""
    (H, W), (t, le, h, w), (oh, ow) = p["size"], p["box"], p["out"]
    sy, sx = oh / h, ow / w
    return {**p, "size": [oh, ow], "box": [-t * sy, -le * sx, H * sy, W * sx], "out": [H, W], "flip": False}


def _unflip(p: dict, x: Tensor) -> Tensor:
    return x.flip(-1) if p.get("flip") else x


def is_geometric(p: dict) -> bool:
    """Whether recorded params come from a geometric transform (and so can be replayed without it)."""
    return bool(p.get("geometric"))


def replay(params: Sequence[dict], x: Tensor, kind: str = "map") -> Tensor:
    """The geometric params of one sample replayed on x ([C,H,W] or [N,C,H,W]; a mask [H,W] or [N,H,W])
    at any resolution: ``replay(params, feat)`` on an 80 px feature map of a 320 px image."""
    geo = [p for p in params if is_geometric(p)]
    ratio = _ratio(geo, tuple(x.shape[-2:]))
    for p in geo:
        x = _geo(p, x, kind, ratio)[0]
    return x


def invert(params: Sequence[dict], x: Tensor, kind: str = "map") -> tuple[Tensor, Tensor]:
    """x, in the frame the geometric params produced, taken back to the original frame, and a bool
    validity mask [H, W] there: False where the content was cropped away and, for interpolated kinds,
    where interpolation mixed in padding. Fill: the ignore index for masks, 0 for maps."""
    soft = kind == "image" or (kind == "map" and x.is_floating_point())  # validity is interpolated too
    valid = torch.ones(x.shape[-2:], dtype=torch.float32 if soft else torch.bool, device=x.device)
    steps = [(p, _inverse(p)) for p in reversed(params) if is_geometric(p)]
    ratio = _ratio([q for _, q in steps], tuple(x.shape[-2:]))
    for p, q in steps:
        x, inside = _geo(q, _unflip(p, x), kind, ratio)
        valid = _geo(q, _unflip(p, valid), "map", ratio)[0] * inside
    return x, (valid > 0.999 if soft else valid)


def replay_batch(params_list: Sequence[Sequence[dict]], x: Tensor, kind: str = "map") -> Tensor:
    """``replay`` with each image's own params on a batch x [N, ...]; the outputs must share a size."""
    if len(params_list) != len(x):
        raise ValueError(f"replay_batch: got {len(params_list)} params lists for a batch of {len(x)}")
    return torch.stack([replay(p, xi, kind) for p, xi in zip(params_list, x)])


def invert_batch(
    params_list: Sequence[Sequence[dict]], x: Tensor, kind: str = "map"
) -> tuple[Tensor, Tensor]:
    """``invert`` per image of a batch; returns the stacked results and validity masks [N, H, W]."""
    if len(params_list) != len(x):
        raise ValueError(f"invert_batch: got {len(params_list)} params lists for a batch of {len(x)}")
    pairs = [invert(p, xi, kind) for p, xi in zip(params_list, x)]
    return torch.stack([a for a, _ in pairs]), torch.stack([v for _, v in pairs])


def output_size(params: Sequence[dict], size: Size) -> Size:
    """The size replaying the geometric params gives for an input of the given (H, W)."""
    geo = [p for p in params if is_geometric(p)]
    ratio = _ratio(geo, size)
    for p in geo:
        size = _scaled(p, size, ratio)[1]
    return size


def valid_region(params: Sequence[dict], size: Size) -> Tensor:
    """Bool [h, w] in the output frame: True where the content came from the input, False where padded."""
    return replay(params, torch.ones(size, dtype=torch.bool), "map")


# ------------------------------------------------------------------------------------------ base classes


class Transform:
    """Base of every transform: ``sample`` draws params (None = not applied), ``apply`` uses them on one
    tensor of a kind ("image", "mask" or "map"). Subclasses are photometric (image only) or geometric.

        >>> flip = RandomHorizontalFlip()
        >>> p = flip.sample(seeded_rng(0, 0, 7), (64, 64))
        >>> mask = flip.apply(p, mask, "mask") if p else mask
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


# ---------------------------------------------------------------------------------------- photometric


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
    and clipped to the image, with ``fill``; the image only. ``Cutout(size=(16, 64), fill=0, p=0.5)``"""

    name = "cutout"
    unit_floats = False

    def __init__(self, size=(16, 64), fill: float = 0, p: float = 0.5):
        self.size = _range("Cutout", "size", size, lo=1, integer=True)
        if not _is_num(fill):
            raise ValueError(f"Cutout: fill must be a number, got {fill!r}")
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
        x[..., t : t + h, le : le + w] = self.fill
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


# ------------------------------------------------------------------------------------------- compose


class Compose:
    """Transforms in order over a sample dict: "image" (uint8 [3,H,W]), "mask" (int64 [H,W], optional) and
    any other key a map ([C,H,W] float: bilinear, or int: nearest). Returns the new dict and the params
    (JSON-serialisable, each with "name" and its "index" here) to log, replay or invert.

        >>> t = Compose([RandomRescale(scale=(0.5, 2.0)), RandomCrop(321), RandomHorizontalFlip(), Normalize()])
        >>> out, params = t({"image": img, "mask": mask, "cam": cam}, seeded_rng(seed, epoch, index))
    """

    def __init__(self, transforms: Sequence[Transform]):
        bad = [t for t in transforms if not isinstance(t, Transform)]
        if bad:
            raise ValueError(f"Compose: transforms must be Transform instances, got {bad[0]!r}")
        self.transforms = list(transforms)

    def __call__(
        self, sample: dict[str, Tensor], rng: np.random.Generator
    ) -> tuple[dict[str, Tensor], list[dict]]:
        size = self._size(sample)
        params = []
        for i, t in enumerate(self.transforms):
            p = t.sample(rng, size)
            if p is not None:
                params.append({**p, "name": t.name, "index": i})
                size = t.output_size(p, size)
        return self.apply(sample, params), params

    def apply(self, sample: dict[str, Tensor], params: Sequence[dict]) -> dict[str, Tensor]:
        """Recorded params applied again to a sample: the same input gives the same output exactly."""
        self._size(sample)
        out = dict(sample)
        for p in params:
            t = self._transform(p)
            for key, x in out.items():
                if t.geometric or key == "image":
                    out[key] = t.apply(p, x, key if key in ("image", "mask") else "map")
        return out

    def replay(
        self, params: Sequence[dict], x: Tensor, kind: str = "map", geometric_only: bool = True
    ) -> Tensor:
        """The params on one tensor at any resolution (see ``replay``); with geometric_only=False the
        photometric ones too (they change only an image)."""
        ratio = _ratio([p for p in params if is_geometric(p)], tuple(x.shape[-2:]))
        for p in params:
            if is_geometric(p):
                x = _geo(p, x, kind, ratio)[0]
            elif not geometric_only:
                x = self._transform(p).apply(p, x, kind)
        return x

    def invert(self, params: Sequence[dict], x: Tensor, kind: str = "map") -> tuple[Tensor, Tensor]:
        """x taken back to the original frame, with its validity mask (see ``invert``)."""
        return invert(params, x, kind)

    def _transform(self, p: dict) -> Transform:
        i, n = p.get("index"), len(self.transforms)
        if not (isinstance(i, int) and 0 <= i < n and self.transforms[i].name == p.get("name")):
            raise ValueError(
                f"Compose: params {p.get('name')!r} at index {i!r} match none of its {n} transforms"
            )
        return self.transforms[i]

    @staticmethod
    def _size(sample: dict[str, Tensor]) -> Size:
        if not sample:
            raise ValueError("Compose: the sample is empty; give at least an 'image'")
        sizes = {k: tuple(v.shape[-2:]) for k, v in sample.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"Compose: all entries must share one (H, W), got {sizes}")
        return next(iter(sizes.values()))


__all__ = [
    "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "ColorJitter", "Compose", "Cutout", "GaussianBlur",
    "Geometric", "Normalize", "Photometric", "RandomCrop", "RandomGrayscale", "RandomHorizontalFlip",
    "RandomRescale", "RandomResizedCrop", "Transform", "invert", "invert_batch", "is_geometric",
    "output_size", "replay", "replay_batch", "seeded_rng", "valid_region",
]  # fmt: skip
