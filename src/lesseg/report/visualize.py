"""Pictures for the report: coloured masks, overlays, CAM heatmaps, and PNG bytes / data URIs of them."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from lesseg.data.imageio import color_palette

IGNORE_COLOR = (224, 224, 192)  # neutral: the VOC "void" colour

# An inferno-like perceptual ramp (dark purple -> red -> orange -> pale yellow), as (position, RGB) stops.
_RAMP = np.array(
    [
        (0.00, 0, 0, 4),
        (0.15, 40, 11, 84),
        (0.30, 101, 21, 110),
        (0.45, 159, 42, 99),
        (0.60, 212, 72, 66),
        (0.75, 245, 125, 21),
        (0.90, 250, 193, 39),
        (1.00, 252, 255, 164),
    ],
    dtype=np.float64,
)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 copy of an image given as HxW / HxWx1 / HxWx3 / HxWx4, uint8 or float in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[..., :3] if a.shape[2] != 1 else a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxW or HxWxC (C in 1, 3, 4) image, got shape {a.shape}")
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype.kind == "f":
        return (np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def colorize(mask: np.ndarray, palette: np.ndarray | None = None, ignore_index: int = 255) -> np.ndarray:
    """An HxW class-index mask as an HxWx3 uint8 picture; ``ignore_index`` pixels are drawn neutral."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {m.shape}")
    pal = np.asarray(color_palette(256, ignore_index) if palette is None else palette, dtype=np.uint8)
    pal = pal.reshape(-1, 3)
    m = m.astype(np.int64)
    ignored = m == ignore_index
    valid = ~ignored
    if valid.any() and (m[valid].min() < 0 or m[valid].max() >= len(pal)):
        raise ValueError(
            f"mask values {m[valid].min()}..{m[valid].max()} fall outside the {len(pal)}-colour palette"
        )
    out = pal[np.where(valid, m, 0)]
    out[ignored] = IGNORE_COLOR
    return out


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    alpha: float = 0.5,
    palette: np.ndarray | None = None,
    ignore_index: int = 255,
) -> np.ndarray:
    """The coloured mask blended over the image with weight ``alpha``; ignored pixels show the bare image."""
    img = as_rgb_uint8(image)
    if np.asarray(mask).shape != img.shape[:2]:
        raise ValueError(f"mask shape {np.asarray(mask).shape} does not match image shape {img.shape[:2]}")
    colors = colorize(mask, palette, ignore_index).astype(np.float64)
    blended = (1.0 - alpha) * img + alpha * colors
    keep = np.asarray(mask) == ignore_index
    blended[keep] = img[keep]
    return (blended + 0.5).astype(np.uint8)


def with_legend(picture: np.ndarray, mask: np.ndarray, class_names, palette: np.ndarray | None = None,
                ignore_index: int = 255) -> np.ndarray:  # fmt: skip
    """``picture`` (HxWx3) with a legend strip below it: a colour swatch and the name of every class
    present in ``mask``, in class order, wrapped to the picture's width (text scales with it)."""
    from PIL import ImageDraw, ImageFont

    picture = as_rgb_uint8(picture)
    pal = np.asarray(
        color_palette(256, ignore_index) if palette is None else palette, dtype=np.uint8
    ).reshape(-1, 3)
    present = [int(c) for c in np.unique(mask) if c != ignore_index]
    names = [(c, str(class_names[c]) if c < len(class_names) else f"class {c}") for c in present]
    width = picture.shape[1]
    size = max(11, width // 90)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    pad, swatch = size // 2, size
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items = [(c, n, swatch + pad // 2 + int(probe.textlength(n, font=font)) + 2 * pad) for c, n in names]
    rows, x = [[]], pad
    for item in items:
        if rows[-1] and x + item[2] > width:
            rows.append([])
            x = pad
        rows[-1].append(item)
        x += item[2]
    row_h = size + pad
    strip = Image.new("RGB", (width, pad + row_h * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        x, y = pad, pad + r * row_h
        for c, name, w in row:
            draw.rectangle(
                [x, y, x + swatch, y + swatch], fill=tuple(int(v) for v in pal[c]), outline=(90, 90, 90)
            )
            draw.text((x + swatch + pad // 2, y), name, fill=(20, 20, 20), font=font)
            x += w
    return np.concatenate([picture, np.asarray(strip)], axis=0)


def apply_colormap(values: np.ndarray) -> np.ndarray:
    """HxW values in [0, 1] (clipped; NaN counts as 0) through the inferno-like ramp: HxWx3 uint8."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    channels = [np.interp(v, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
    return (np.stack(channels, axis=-1) + 0.5).astype(np.uint8)


def _resize_float(a: np.ndarray, height: int, width: int) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))


def heatmap(image: np.ndarray | None, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A CAM (HxW float in [0, 1]) coloured and blended over the image; a CAM of another size is resized
    bilinearly to the image's. Without an image (None), the coloured CAM alone."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"expected an HxW CAM, got shape {cam.shape}")
    if image is None:
        return apply_colormap(cam)
    img = as_rgb_uint8(image)
    if cam.shape != img.shape[:2]:
        cam = _resize_float(np.nan_to_num(cam), *img.shape[:2])
    colors = apply_colormap(cam).astype(np.float64)
    return ((1.0 - alpha) * img + alpha * colors + 0.5).astype(np.uint8)


def to_png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of an image (any form ``as_rgb_uint8`` takes; an HxWx4 array keeps its alpha)."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 4 and a.dtype == np.uint8:
        im = Image.fromarray(np.ascontiguousarray(a))
    else:
        im = Image.fromarray(as_rgb_uint8(a))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def data_uri(array: np.ndarray) -> str:
    """``data:image/png;base64,...``: the image embedded in a page with no file beside it."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(array)).decode("ascii")
