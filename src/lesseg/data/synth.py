"""Synthetic scenes for weak supervision, written in the generic folder layout.

Thing classes differ in shape and texture (for some, colour is a nuisance); every object carries a small
class-specific two-colour marker (its *discriminative part*, at most 15% of its visible area) that alone
tells its class, so CAMs trained on the tags tend to fire on the marker rather than the whole object.
Besides ``images/``, ``masks/``, ``image_labels.csv`` and the split lists, ``instances/`` (object ids,
0 = none) and ``parts/`` (the object's id on its visible marker pixels) allow measuring how much of each
object a CAM covers. ``synth.json`` records the parameters and every class's definition.

Output is byte-identical per seed: class definitions come from their own seeded generator, image ``i``
from ``np.random.default_rng([seed, i])``.

Example:
    >>> stats = generate("demo_data/synthetic", images=200, classes=8, seed=0)  # doctest: +SKIP
    >>> print(stats.format())  # doctest: +SKIP
"""

from __future__ import annotations

import colorsys
import csv
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lesseg.data.classes import ClassInfo
from lesseg.data.imageio import color_palette, save_label_png
from lesseg.data.source import tags_from_mask
from lesseg.errors import ConfigError, did_you_mean
from lesseg.io import atomic_write, atomic_write_json, atomic_write_text

SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "star", "cross", "ring", "hexagon", "crescent")
TEXTURES = ("plain", "stripes", "checker", "dots", "rings", "grid", "waves")
MARKER_COLOURS = (
    (230, 25, 25),
    (20, 200, 40),
    (30, 60, 235),
    (250, 225, 0),
    (225, 30, 225),
    (0, 225, 235),
    (250, 250, 250),
    (10, 10, 10),
)
MARKER_LAYOUTS = ("quad", "halves", "bands", "core")
# name, colour, second colour, pattern (in image coordinates)
STUFF = (
    ("sky", (135, 185, 235), (205, 228, 250), "smooth"),
    ("grass", (55, 135, 45), (125, 190, 70), "fine"),
    ("water", (25, 85, 160), (90, 160, 215), "waves"),
    ("sand", (215, 190, 135), (175, 145, 95), "fine"),
    ("brick", (165, 70, 45), (215, 205, 190), "bricks"),
    ("snow", (242, 242, 248), (195, 205, 225), "smooth"),
    ("rock", (105, 100, 95), (165, 160, 150), "coarse"),
    ("wood", (125, 80, 40), (180, 130, 75), "grain"),
    ("foliage", (30, 80, 35), (85, 130, 40), "coarse"),
    ("road", (65, 65, 72), (115, 115, 120), "fine"),
    ("dirt", (110, 78, 50), (155, 118, 80), "coarse"),
    ("tiles", (205, 200, 185), (80, 85, 95), "tiles"),
)
BACKGROUNDS = ("textured", "none")
CLASS_WEIGHTS = (0.2, 0.35, 0.3, 0.15)  # P(1..4 classes per image)
MAX_CLASSES = 32
MAX_PART_RATIO = 0.15  # visible part / visible object
MIN_VISIBLE = 0.5  # an occluded object keeps at least this share of its area (and of its part)
MIN_STUFF_VISIBLE = 0.3
ATTEMPTS = 25


@dataclass
class SynthStats:
    """What ``generate`` wrote: classes-per-image histogram, part/object area ratios, time taken."""

    classes_per_image: dict[int, int]
    mean_part_ratio: float
    max_part_ratio: float
    seconds: float
    class_names: tuple[str, ...] = ()
    images: int = 0
    objects: int = 0
    out: Path | None = None

    def format(self) -> str:
        total = max(1, sum(self.classes_per_image.values()))
        lines = [
            f"wrote {self.images} images to {self.out} in {self.seconds:.1f} s",
            f"classes ({len(self.class_names)}): {', '.join(self.class_names)}",
            "classes per image:",
        ]
        for n, count in sorted(self.classes_per_image.items()):
            share = count / total
            lines.append(f"  {n}  {'#' * round(40 * share):<40} {count:6d}  ({100 * share:.1f}%)")
        lines.append(
            f"objects: {self.objects}; discriminative part / object area (visible pixels): "
            f"mean {self.mean_part_ratio:.3f}, max {self.max_part_ratio:.3f}"
        )
        return "\n".join(lines)


@dataclass
class _Object:
    cls: int
    box: tuple[slice, slice]  # bounding box in the image
    u: np.ndarray  # object-frame coordinates on the box (units of the object radius)
    v: np.ndarray
    mask: np.ndarray  # shape pixels on the box
    part: tuple[int, int, int]  # marker top-left y, x (image) and side
    colours: tuple[np.ndarray, np.ndarray]  # the texture's two colours
    area: int  # shape pixels inside the image


# ---------------------------------------------------------------------------------------------- class definitions


def _class_defs(num_classes: int, background: str, seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, 2**32 - 1, 1])
    defs: list[dict] = []
    if background == "textured":
        defs.append({"name": "background", "kind": "background"})
    else:
        for j in rng.permutation(len(STUFF))[: max(1, num_classes // 3)]:
            name, c1, c2, pattern = STUFF[j]
            defs.append({"name": name, "kind": "stuff", "pattern": pattern, "colours": [list(c1), list(c2)]})
    n_things = num_classes - len(defs)
    shapes, textures = rng.permutation(len(SHAPES)), rng.permutation(len(TEXTURES))
    pairs = [(a, b) for a in range(len(MARKER_COLOURS)) for b in range(a + 1, len(MARKER_COLOURS))]
    pair_order, layout_offset = rng.permutation(len(pairs)), rng.integers(0, len(MARKER_LAYOUTS), len(pairs))
    informative = rng.permutation([True] * (n_things // 2) + [False] * (n_things - n_things // 2))
    hue0 = rng.random()
    for k in range(n_things):  # (k mod 9, (k + k // 9) mod 7) is unique for k < 63: no two equal identities
        shape = SHAPES[shapes[k % len(SHAPES)]]
        texture = TEXTURES[textures[(k + k // len(SHAPES)) % len(TEXTURES)]]
        p = int(pair_order[k % len(pairs)])
        layout = MARKER_LAYOUTS[(layout_offset[p] + k // len(pairs)) % len(MARKER_LAYOUTS)]
        hue = (hue0 + k / max(1, n_things)) % 1.0
        colour = _hsv(hue, rng.uniform(0.55, 0.8), rng.uniform(0.6, 0.9)) if informative[k] else None
        defs.append(
            {
                "name": f"{shape}_{texture}",
                "kind": "thing",
                "shape": shape,
                "texture": texture,
                "frequency": round(float(rng.uniform(1.6, 2.6)), 3),
                "orientation": round(float(rng.uniform(0, np.pi)), 3),
                "colour_informative": bool(informative[k]),
                "colour": colour,
                "part": {"layout": layout, "colours": [list(MARKER_COLOURS[i]) for i in pairs[p]]},
            }
        )
    return defs


def _hsv(h: float, s: float, v: float) -> list[int]:
    return [round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)]


# ------------------------------------------------------------------------------------------ shapes and textures


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av, rho2 = np.abs(u), np.abs(v), u * u + v * v
    if shape == "ellipse":
        return u * u + (v / 0.62) ** 2 <= 1
    if shape == "rectangle":
        return (au <= 0.92) & (av <= 0.6)
    if shape in ("triangle", "hexagon"):
        n = 3 if shape == "triangle" else 6
        angles = 2 * np.pi * np.arange(n) / n + np.pi / 2
        dist = np.max([u * np.cos(a) + v * np.sin(a) for a in angles], axis=0)
        return dist <= np.cos(np.pi / n) * (1.0 if n == 6 else 1.15)
    if shape == "diamond":
        return au / 0.7 + av <= 1
    if shape == "star":  # five points, inner radius 0.45; fold the angle onto one edge of a point
        seg = 2 * np.pi / 5
        t = np.arctan2(v, u) % seg
        phi = np.minimum(t, seg - t)
        rho = np.sqrt(rho2)
        dx, dy = 0.45 * np.cos(seg / 2) - 1, 0.45 * np.sin(seg / 2)
        return dx * rho * np.sin(phi) - dy * (rho * np.cos(phi) - 1) >= 0
    if shape == "cross":
        return ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))
    if shape == "ring":
        return (rho2 <= 1) & (rho2 >= 0.5**2)
    if shape == "crescent":
        return (rho2 <= 1) & ((u - 0.5) ** 2 + v * v >= 0.8**2)
    raise ValueError(shape)


def _texture(kind: str, freq: float, angle: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Two-tone texture value in [0, 1] on object coordinates (it turns and scales with the object)."""
    a = (u * np.cos(angle) + v * np.sin(angle)) * freq
    b = (-u * np.sin(angle) + v * np.cos(angle)) * freq
    if kind == "plain":  # soft shading towards the rim
        return 0.35 * np.minimum(u * u + v * v, 1.0)
    if kind == "stripes":
        sel = np.sin(2 * np.pi * a) > 0
    elif kind == "checker":
        sel = np.sin(2 * np.pi * a) * np.sin(2 * np.pi * b) > 0
    elif kind == "dots":
        sel = (a - np.round(a)) ** 2 + (b - np.round(b)) ** 2 < 0.3**2
    elif kind == "rings":
        sel = np.sin(2 * np.pi * freq * np.sqrt(u * u + v * v)) > 0
    elif kind == "grid":
        sel = (np.abs(a - np.round(a)) < 0.14) | (np.abs(b - np.round(b)) < 0.14)
    elif kind == "waves":
        sel = np.sin(2 * np.pi * a + 1.6 * np.sin(2 * np.pi * 0.8 * b)) > 0
    else:
        raise ValueError(kind)
    return sel.astype(np.float32)


def _marker(layout: str, colours: list, side: int) -> np.ndarray:
    a = (np.arange(side) + 0.5) / side
    rows, cols = a[:, None], a[None, :]
    sel = {
        "quad": (rows < 0.5) ^ (cols < 0.5),
        "halves": np.broadcast_to(cols >= 0.5, (side, side)),
        "bands": np.broadcast_to(rows >= 0.5, (side, side)),
        "core": (np.abs(rows - 0.5) < 0.26) & (np.abs(cols - 0.5) < 0.26),
    }[layout]
    return np.where(sel[..., None], np.float32(colours[1]), np.float32(colours[0]))


def _noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth value noise in [0, 1]: a (cells+1)^2 random grid, smoothstep-interpolated to size x size."""
    grid = rng.random((cells + 1, cells + 1, channels), dtype=np.float32)
    t = np.arange(size, dtype=np.float32) * (cells / size)
    i = t.astype(np.int64)
    f = t - i
    w1 = f * f * (3 - 2 * f)
    weights = np.zeros((size, cells + 1), dtype=np.float32)  # separable interpolation as two matrix products
    weights[np.arange(size), i] = 1 - w1
    weights[np.arange(size), i + 1] += w1
    out = weights @ grid.transpose(2, 0, 1) @ weights.T
    return out.transpose(1, 2, 0) if channels > 1 else out[0]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return c[:, None], c[None, :]


# ---------------------------------------------------------------------------------------------- scene layers


def _textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A VOC-like cluttered plane: muted colour noise, a tone edge, lines and soft blobs."""
    yy, xx = _grid(size)
    c1, c2 = (np.float32(_hsv(rng.random(), rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.8))) for _ in range(2))
    img = c1 + (c2 - c1) * _noise(rng, size, int(rng.integers(2, 5)))[..., None]
    img += 60 * (_noise(rng, size, int(rng.integers(3, 7)), 3) - 0.5)
    img += 24 * (_noise(rng, size, max(4, size // 6)) - 0.5)[..., None]
    ang, off = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(-0.7, 0.7))
    edge = (xx * np.cos(ang) + yy * np.sin(ang)) > off
    img = np.where(edge[..., None], img * np.float32(rng.uniform(0.7, 1.3)), img)
    for _ in range(int(rng.integers(3, 8))):
        colour = np.float32(_hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.2, 0.9)))
        p, q = (rng.uniform(-1, 1, 2).astype(np.float32) for _ in range(2))
        if rng.random() < 0.5:  # a line segment
            d = q - p
            t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(1e-6, float(d @ d)), 0, 1)
            dist = np.hypot(xx - p[0] - t * d[0], yy - p[1] - t * d[1])
            alpha = (dist < float(rng.uniform(0.8, 2.5)) / size).astype(np.float32) * 0.8
        else:  # a soft blob
            two_var = float(2 * rng.uniform(0.05, 0.25) ** 2)
            alpha = 0.6 * np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / two_var)
        img += alpha[..., None] * (colour - img)
    return img


def _stuff_pattern(rng: np.random.Generator, pattern: str, size: int) -> np.ndarray:
    yy, xx = _grid(size)
    if pattern == "smooth":
        return _noise(rng, size, 3) * 0.7 + 0.3 * (yy + 1) / 2
    if pattern == "fine":
        return 0.5 * _noise(rng, size, max(4, size // 4)) + 0.5 * rng.random((size, size), dtype=np.float32)
    if pattern == "coarse":
        return np.clip((_noise(rng, size, 8) - 0.5) * 3 + 0.5, 0, 1)
    if pattern == "waves":
        k, ph = rng.uniform(5, 8), rng.uniform(0, 2 * np.pi)
        return 0.5 + 0.5 * np.sin(2 * np.pi * k * yy + 2.0 * np.sin(np.pi * 2.5 * xx + ph))
    if pattern == "grain":
        return 0.5 + 0.5 * np.sin(2 * np.pi * 6 * xx + 5 * _noise(rng, size, 3))
    n = size / 8  # bricks and tiles: cells of size/8 pixels with mortar lines
    y, x = (yy + 1) * size / 2 / n, (xx + 1) * size / 2 / n + rng.random()
    if pattern == "bricks":
        y, x = y * 2, x + 0.5 * (np.floor(y * 2) % 2)
    lines = (np.abs(y - np.round(y)) * n < 0.9) | (np.abs(x - np.round(x)) * n < 0.9)
    return lines.astype(np.float32) + 0.15 * rng.random((size, size), dtype=np.float32)


def _stuff_layer(rng, defs, chosen, size) -> tuple[np.ndarray, np.ndarray]:
    """One or two stuff regions split by a wavy boundary: (RGB float image, label map)."""
    yy, xx = _grid(size)
    label = np.full((size, size), chosen[0], dtype=np.uint8)
    if len(chosen) == 2:
        ang, off = rng.uniform(0, 2 * np.pi), rng.uniform(-0.35, 0.35)
        amp, freq, ph = rng.uniform(0.05, 0.2), rng.uniform(1, 3), rng.uniform(0, 2 * np.pi)
        along = -xx * np.sin(ang) + yy * np.cos(ang)
        side = xx * np.cos(ang) + yy * np.sin(ang) - off + amp * np.sin(np.pi * freq * along + ph) > 0
        label[side] = chosen[1]
    img = np.zeros((size, size, 3), dtype=np.float32)
    for c in chosen:
        d = defs[c]
        c1, c2 = (np.float32(x) * np.float32(rng.uniform(0.9, 1.1)) for x in d["colours"])
        t = _stuff_pattern(rng, d["pattern"], size)[..., None]
        img = np.where((label == c)[..., None], c1 + (c2 - c1) * t, img)
    return img, label


def _sample_object(rng, cls: int, d: dict, size: int, r_max: float) -> _Object | None:
    r = max(r_max * float(rng.uniform(0.6, 1.0)), 6.0)
    aspect, theta = float(rng.uniform(0.85, 1.18)), float(rng.uniform(0, 2 * np.pi))
    cy, cx = (float(c) for c in rng.uniform(0.55 * r, size - 0.55 * r, 2))
    ext = 1.4 * r
    y0, y1 = max(0, int(cy - ext)), min(size, int(np.ceil(cy + ext)))
    x0, x1 = max(0, int(cx - ext)), min(size, int(np.ceil(cx + ext)))
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / (r * aspect)
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) * aspect / r
    mask = _shape_mask(d["shape"], u, v)
    area = int(mask.sum())
    if area < 30:
        return None
    # the marker: a square of about 4-9% of the object's area lying wholly inside the shape
    side = max(3, round(np.sqrt(rng.uniform(0.04, 0.09) * area)))
    ii = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    while side >= 3:
        win = ii[side:, side:] - ii[:-side, side:] - ii[side:, :-side] + ii[:-side, :-side]
        ys, xs = np.nonzero(win == side * side)
        if len(ys):
            k = rng.integers(len(ys))
            break
        side -= 1
    else:
        return None
    if d["colour_informative"]:
        a = np.float32(d["colour"]) * np.float32(rng.uniform(0.9, 1.1, 3))
    else:
        a = np.float32(_hsv(rng.random(), rng.uniform(0.3, 0.85), rng.uniform(0.45, 0.95)))
    b = a * 0.4 if a.max() > 140 else a + (255 - a) * 0.6
    part = (y0 + int(ys[k]), x0 + int(xs[k]), side)
    return _Object(cls, (slice(y0, y1), slice(x0, x1)), u, v, mask, part, (a, b), area)


def _acceptable(inst: np.ndarray, objs: list[_Object], stuff: np.ndarray | None, stuff_area: dict) -> bool:
    counts = np.bincount(inst.reshape(-1), minlength=len(objs) + 1)
    for j, o in enumerate(objs, start=1):
        y, x, s = o.part
        part_visible = np.count_nonzero(inst[y : y + s, x : x + s] == j)
        if counts[j] < MIN_VISIBLE * o.area or part_visible < MIN_VISIBLE * s * s:
            return False
        if part_visible > MAX_PART_RATIO * counts[j]:
            return False
    if stuff is not None:
        seen = np.bincount(stuff[inst == 0], minlength=256)
        return all(seen[c] >= MIN_STUFF_VISIBLE * a for c, a in stuff_area.items())
    return True


def _scene(rng: np.random.Generator, defs: list[dict], size: int):
    """One image: (RGB uint8, class mask, instance map, part map, part ratio of each object)."""
    things = [k for k, d in enumerate(defs) if d["kind"] == "thing"]
    stuffs = [k for k, d in enumerate(defs) if d["kind"] == "stuff"]
    n = int(rng.choice(len(CLASS_WEIGHTS), p=CLASS_WEIGHTS)) + 1
    if stuffs:
        n = min(n, len(things) + min(2, len(stuffs)))
        lo, hi = max(1, n - len(things)), min(2, len(stuffs), n)
        n_stuff = 2 if lo == 2 or (hi == 2 and rng.random() < 0.4) else 1
        chosen = sorted(int(c) for c in rng.choice(stuffs, n_stuff, replace=False))
        canvas, base = _stuff_layer(rng, defs, chosen, size)
        stuff_area = {c: int(np.count_nonzero(base == c)) for c in chosen}
    else:
        n_stuff, stuff_area = 0, {}
        n = min(n, len(things))
        canvas, base = _textured_background(rng, size), np.zeros((size, size), dtype=np.uint8)
    classes = sorted(int(c) for c in rng.choice(things, n - n_stuff, replace=False))
    todo = [c for c in classes for _ in range(int(rng.integers(1, 3)))]
    todo = [todo[i] for i in rng.permutation(len(todo))]  # painting order
    r_max = size * min(0.26, 0.48 / np.sqrt(len(todo) + 1))
    inst = np.zeros((size, size), dtype=np.uint8)
    objs: list[_Object] = []
    for c in todo:
        for attempt in range(ATTEMPTS):
            o = _sample_object(rng, c, defs[c], size, r_max * 0.97**attempt)
            if o is None:
                continue
            trial = inst.copy()
            trial[o.box][o.mask] = len(objs) + 1
            if _acceptable(trial, [*objs, o], base if stuffs else None, stuff_area):
                inst = trial
                objs.append(o)
                break
    parts = np.zeros_like(inst)
    ratios = []
    for j, o in enumerate(objs, start=1):
        d = defs[o.cls]
        t = _texture(d["texture"], d["frequency"], d["orientation"], o.u, o.v)[..., None]
        a, b = o.colours
        canvas[o.box][o.mask] = (a + (b - a) * t)[o.mask]
        y, x, s = o.part
        region = (slice(y, y + s), slice(x, x + s))
        canvas[region] = _marker(d["part"]["layout"], d["part"]["colours"], s)
        visible = inst[region] == j
        parts[region][visible] = j
        ratios.append(np.count_nonzero(visible) / np.count_nonzero(inst == j))
    cls_of = np.array([0, *[o.cls for o in objs]], dtype=np.uint8)
    mask = np.where(inst > 0, cls_of[inst], base)
    return _finish(rng, canvas, size), mask, inst, parts, ratios


def _finish(rng: np.random.Generator, canvas: np.ndarray, size: int) -> np.ndarray:
    """Nuisance lighting (gradient and spot, colour cast) and pixel noise."""
    yy, xx = _grid(size)
    ang, tilt, spot, gain, sigma = (
        float(rng.uniform(a, b)) for a, b in ((0, 2 * np.pi), (0.05, 0.3), (0, 0.3), (0.8, 1.05), (2, 7))
    )
    sy, sx = (float(c) for c in rng.uniform(-1, 1, 2))
    light = 1 + tilt * (xx * np.cos(ang) + yy * np.sin(ang))
    light = light + spot * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / 0.5)
    cast = np.float32(gain * (1 + rng.normal(0, 0.04, 3)))
    img = canvas * (light[..., None] * cast) + rng.standard_normal(canvas.shape, dtype=np.float32) * sigma
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- the writer


def _validate(images, classes, seed, background, size, val_fraction) -> None:
    def whole(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if background not in BACKGROUNDS:
        raise ConfigError(
            f"background must be one of: {', '.join(BACKGROUNDS)}; got {background!r}"
            f"{did_you_mean(str(background), BACKGROUNDS)}"
        )
    if not whole(images) or images < 1:
        raise ConfigError(f"images must be an integer >= 1, got {images!r}")
    if not whole(classes) or not 2 <= classes <= MAX_CLASSES:
        raise ConfigError(
            f"classes must be an integer from 2 to {MAX_CLASSES} (entries of classes.json, "
            f"background or stuff included, at least one thing class), got {classes!r}"
        )
    if not whole(size) or size < 32:
        raise ConfigError(f"size must be an integer >= 32 (pixels), got {size!r}")
    if not whole(seed) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")


def generate(
    out: str | Path,
    images: int = 500,
    classes: int = 8,
    seed: int = 0,
    background: str = "textured",
    size: int = 128,
    val_fraction: float = 0.2,
) -> SynthStats:
    """Write a synthetic dataset to ``out`` (generic folder layout); existing files are overwritten.

    Args:
        out: the dataset folder (created).
        images: number of images.
        classes: entries of classes.json; with ``background="textured"`` class 0 is "background" and the rest
            are things; with ``"none"`` about a third (at least one) are stuff classes filling the image.
        seed: the output is byte-identical per seed.
        background: ``"textured"`` (a cluttered background class) or ``"none"`` (stuff, no background class).
        size: image side in pixels.
        val_fraction: share of the images listed in val.txt (the rest in train.txt).
    """
    _validate(images, classes, seed, background, size, val_fraction)
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out} exists and is not a folder")
    defs = _class_defs(classes, background, seed)
    info = ClassInfo(tuple(d["name"] for d in defs), 255, "background" if background == "textured" else None)
    palette = color_palette(classes)
    ids = [f"synth_{i:05d}" for i in range(images)]
    _remove_stale(out, set(ids))
    rows, ratios, hist = [], [], dict.fromkeys(range(1, len(CLASS_WEIGHTS) + 1), 0)
    for i, image_id in enumerate(ids):
        img, mask, inst, parts, r = _scene(np.random.default_rng([seed, i]), defs, size)
        ratios += r
        tags = [info.classes[c] for c in tags_from_mask(mask, info)]
        hist[len(tags)] = hist.get(len(tags), 0) + 1
        rows.append((image_id, " ".join(tags)))
        _save_rgb_png(out / "images" / f"{image_id}.png", img)
        for sub, labels in (("masks", mask), ("instances", inst), ("parts", parts)):
            save_label_png(out / sub / f"{image_id}.png", labels, palette)
    _write_lists(out, rows, np.random.default_rng([seed, 2**32 - 1, 2]), val_fraction)
    info.save(out / "classes.json")
    params = dict(images=images, classes=classes, seed=seed, background=background, size=size)
    params["val_fraction"] = val_fraction
    settings = {
        "class_weights": list(CLASS_WEIGHTS),
        "max_part_ratio": MAX_PART_RATIO,
        "min_visible": MIN_VISIBLE,
    }
    synth = {"generator": "lesseg.data.synth", "parameters": params, "settings": settings, "classes": defs}
    atomic_write_json(out / "synth.json", synth)
    r = np.array(ratios or [0.0])
    seconds = time.perf_counter() - start
    return SynthStats(hist, float(r.mean()), float(r.max()), seconds, info.classes, images, len(ratios), out)


def _write_lists(
    out: Path, rows: list[tuple[str, str]], rng: np.random.Generator, val_fraction: float
) -> None:
    """image_labels.csv, and train.txt / val.txt (val.txt only when it gets images)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows([("image", "labels"), *rows])
    atomic_write_text(out / "image_labels.csv", text.getvalue())
    ids = [image_id for image_id, _ in rows]
    n_val = min(len(ids) - 1, round(len(ids) * val_fraction))
    val = {ids[k] for k in rng.permutation(len(ids))[:n_val]}
    atomic_write_text(out / "train.txt", "".join(f"{x}\n" for x in ids if x not in val))
    if val:
        atomic_write_text(out / "val.txt", "".join(f"{x}\n" for x in ids if x in val))
    else:
        (out / "val.txt").unlink(missing_ok=True)


def _save_rgb_png(path: Path, img: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Drop files of an earlier, larger synth run in the same folder (only names this generator writes)."""
    for sub in ("images", "masks", "instances", "parts"):
        if (out / sub).is_dir():
            for p in sorted((out / sub).glob("synth_*.png")):
                if re.fullmatch(r"synth_\d{5,}", p.stem) and p.stem not in keep:
                    p.unlink()
