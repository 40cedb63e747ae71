"""Reading images and masks from disk, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lesseg.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_image(path: str | Path) -> np.ndarray:
    """An RGB image as an HxWx3 uint8 array. Decodes fully, so a truncated file fails here."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def load_label_png(path: str | Path) -> np.ndarray:
    """The raw values of a single-channel label PNG (palette indices for palette PNGs) as HxW uint8."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DataError(
                    f"{path}: a label map must be single-channel (palette 'P' or grayscale 'L'), got mode {im.mode!r}"
                )
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read mask ({e})") from None
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(f"{path}: label values must lie in 0..255, found {arr.min()}..{arr.max()}")
        arr = arr.astype(np.uint8)
    return arr


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the header, without decoding the pixels (a truncated file passes)."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def save_label_png(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a class-index mask as an 8-bit PNG; with a palette it is a palette PNG that viewers colour."""
    from lesseg.io import atomic_write

    im = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
    if palette is not None:
        im.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    atomic_write(path, lambda f: im.save(f, format="PNG"))


def color_palette(num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved), extended to 256 entries; ignore is white-ish."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    pal[ignore_index] = (224, 224, 192)
    return pal
