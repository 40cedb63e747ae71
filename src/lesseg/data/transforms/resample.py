"""The resampling core and the functional replay API: geometric params applied at any resolution.

Geometric params share one resolution-independent shape: ``size`` (input [H, W]), ``box`` ([top, left, h, w]
in input pixels; it may reach past the image, which pads), ``out`` ([h, w]) and ``flip``. Replaying on a map
of another resolution scales box and out by map size / ``size``; ``invert`` maps a result back to the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import IGNORE_INDEX, KINDS, Size

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


# ----------------------------------------------------------------------------------------- replay API


def is_geometric(p: dict) -> bool:
    """Whether recorded params come from a geometric transform (and so can be replayed without it)."""
    return bool(p.get("geometric"))


def replay(params: Sequence[dict], x: Tensor, kind: str = "map", out_size: Size | None = None) -> Tensor:
    """The geometric params of one sample replayed on x ([C,H,W] or [N,C,H,W]; a mask [H,W] or [N,H,W])
    at any resolution: ``replay(params, feat)`` on an 80 px feature map of a 320 px image. The output
    scales like the input unless ``out_size`` ([h, w]) is given (PiCIE: a crop of a 640 px image's
    feature map resized to the 80 px feature map of the 320 px crop)."""
    geo = [p for p in params if is_geometric(p)]
    ratio = _ratio(geo, tuple(x.shape[-2:]))
    if out_size is not None and geo:
        last = geo[-1]["out"]
        ratio = (out_size[0] / last[0], out_size[1] / last[1])
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


def replay_batch(
    params_list: Sequence[Sequence[dict]], x: Tensor, kind: str = "map", out_size: Size | None = None
) -> Tensor:
    """``replay`` with each image's own params on a batch x [N, ...]; the outputs must share a size."""
    if len(params_list) != len(x):
        raise ValueError(f"replay_batch: got {len(params_list)} params lists for a batch of {len(x)}")
    return torch.stack([replay(p, xi, kind, out_size) for p, xi in zip(params_list, x)])


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
