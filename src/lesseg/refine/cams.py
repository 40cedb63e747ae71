"""Multi-scale, flipped CAM inference, batched over images: the recipe of IRN / Puzzle-CAM (``hr_cam``).

For each scale ``s`` the image is resized to ``(round(s H), round(s W))`` (bicubic, as the official code),
normalised with the ImageNet statistics and classified together with its horizontal flip; the class maps get
a ReLU and ``map(image) + flip_back(map(flipped image))`` is formed at the model's stride. Each scale's maps
are upsampled (bilinear, ``align_corners=False``) to the stride-aligned size ``ceil(H / stride) * stride``
and cropped to ``H x W`` -- exactly as the official ``hr_cam`` -- and summed over scales. Only the image's
tagged classes are kept, each divided by its own spatial maximum + 1e-5, so the maps lie in [0, 1].

Batching: images are grouped (sorted by size, to limit padding) into groups of ``batch_size``. At each
scale every image of a group is resized, normalised and zero-padded on the bottom/right (zero = the mean
colour) to a common canvas, the group's largest scaled size. Images and their flips (each flipped *before*
padding, so its content stays top-left) form one batch of ``2B``: one forward pass per group and scale.
Each image's maps are then cropped to its own valid cells ``ceil(h / stride) x ceil(w / stride)``: strided
layers with ``k // 2`` padding are top-left aligned, so these are the cells an unpadded pass gives, and a
ResNet maps any ``H x W`` input to exactly ``ceil(H / stride) x ceil(W / stride)`` cells (checked).

The canvas is deliberately *not* rounded up to a multiple of the stride: rounding buys no alignment (see
above) but would pad every image, whereas without it an image alone, or a group of equally sized images
(most of a dataset), gets exactly the official unpadded result. Padding is not free: a cell whose receptive
field reaches the bottom/right border sees mean-colour pixels instead of each layer's zero padding, so
padded images get slightly different CAMs there (the tests measure it). The result depends on the canvas
only, not on the other images: ``pad_to`` fixes the canvas, and the same canvas gives the same maps whatever
the batch.

The result is at full image resolution only (IRN's ``hr_cam``); a stride-4 output (IRN's ``cam``, for the
random walk) can join as a keyword option.

Example:
    >>> from lesseg.models import create_model
    >>> model = create_model("cam_classifier", backbone="resnet18", num_classes=3)
    >>> image = np.zeros((40, 48, 3), dtype=np.uint8)
    >>> [res] = infer_cams(model, [image], [[0, 2]], scales=(1.0,))
    >>> res.classes.tolist(), res.cams.shape
    ([0, 2], (2, 40, 48))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lesseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lesseg.errors import DataError
from lesseg.io import atomic_write

DEFAULT_SCALES = (0.5, 1.0, 1.5, 2.0)


@dataclass
class CamResult:
    """CAMs of one image: ``cams[i]`` is the map of model output ``classes[i]``, float32 in [0, 1]."""

    classes: np.ndarray  # int64 [K], model-output indices (0..C-1) of the image's tagged classes
    cams: np.ndarray  # float32 [K, H, W]


def infer_cams(
    model: nn.Module,
    images: Sequence[np.ndarray],
    tags: Sequence[Sequence[int]],
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    interpolation: str = "bicubic",
    stride: int | None = None,
    pad_to: tuple[int, int] | None = None,
) -> list[CamResult]:
    """Multi-scale (+ flip) CAMs of ``images``, one :class:`CamResult` per image, in input order.

    Args:
        model: returns ``{"cams": [N, C, h, w]}`` (or the tensor itself), raw class maps at ``stride``;
            put in eval mode and moved to ``device`` (its training mode is restored afterwards).
        images: HxWx3 uint8 RGB arrays; sizes may differ.
        tags: per image, the model-output indices (0..C-1) of its classes; only these maps are kept. An
            image without tags gets an empty result and costs no computation.
        scales: image scales; the maps of all scales are summed.
        flip: add the flipped-back maps of the horizontally flipped image.
        batch_size: images per forward pass (the pass holds ``2 * batch_size`` inputs with ``flip``).
        device: where to compute; amp_dtype: autocast dtype (``torch.float16``/``bfloat16``) or None.
        interpolation: image resizing, ``"bicubic"`` (official) or ``"bilinear"``; done by torch on the
            device, antialiased when shrinking (like the official PIL resize, but not rounded to uint8).
        stride: the model's output stride; by default ``model.encoder.output_stride``, else 16.
        pad_to: canvas of every batch, in original-image pixels (scaled with the images); ``None``: the
            group's largest image. Larger images than ``pad_to`` enlarge the canvas.
    """
    if len(images) != len(tags):
        raise ValueError(f"{len(images)} images but {len(tags)} tag lists")
    if interpolation not in ("bicubic", "bilinear"):
        raise ValueError(f"interpolation must be 'bicubic' or 'bilinear', got {interpolation!r}")
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {list(scales)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, im in enumerate(images):
        if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8):
            what = (
                f"{im.dtype} array of shape {im.shape}" if isinstance(im, np.ndarray) else type(im).__name__
            )
            raise ValueError(f"image {i}: expected an HxWx3 uint8 RGB array, got a {what}")
    if stride is None:
        stride = int(getattr(getattr(model, "encoder", None), "output_stride", 16))
    keys = [np.unique(np.asarray(t, dtype=np.int64).reshape(-1)) for t in tags]
    for i, k in enumerate(keys):
        if len(k) and k[0] < 0:
            raise ValueError(f"image {i}: tags must be model-output indices >= 0, got {k.tolist()}")
    results = [CamResult(k, np.zeros((len(k), *im.shape[:2]), np.float32)) for im, k in zip(images, keys)]
    todo = sorted((i for i in range(len(images)) if len(keys[i])), key=lambda i: images[i].shape[:2])
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    try:
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                group = todo[start : start + batch_size]
                cams = _group_cams(
                    model, [images[i] for i in group], [keys[i] for i in group], scales, flip, device,
                    amp_dtype, interpolation, stride, pad_to,
                )  # fmt: skip
                for i, cam in zip(group, cams):
                    results[i].cams = cam.cpu().numpy()
    finally:
        model.train(was_training)
    return results


def _group_cams(model, images, keys, scales, flip, device, amp_dtype, interpolation, stride, pad_to):
    """Normalised CAMs [K_i, H_i, W_i] of one group of images: one forward pass per scale."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1) * 255
    pixels = [torch.tensor(im, device=device).permute(2, 0, 1).float() for im in images]
    sizes = [tuple(im.shape[:2]) for im in images]
    index = [torch.as_tensor(k, device=device) for k in keys]
    up = [(math.ceil(h / stride) * stride, math.ceil(w / stride) * stride) for h, w in sizes]
    acc = [torch.zeros(len(k), *u, device=device) for k, u in zip(keys, up)]
    n = len(images)
    for s in scales:
        scaled = [(max(1, round(s * h)), max(1, round(s * w))) for h, w in sizes]
        canvas_h = max([h for h, _ in scaled] + ([round(s * pad_to[0])] if pad_to else []))
        canvas_w = max([w for _, w in scaled] + ([round(s * pad_to[1])] if pad_to else []))
        batch = torch.zeros((2 * n if flip else n), 3, canvas_h, canvas_w, device=device)
        for i, (x, (h, w)) in enumerate(zip(pixels, scaled)):
            x = (_resize_image(x, (h, w), interpolation) - mean) / std
            batch[i, :, :h, :w] = x
            if flip:
                batch[n + i, :, :h, :w] = x.flip(-1)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(batch)
        maps = F.relu((out["cams"] if isinstance(out, dict) else out).float())
        expected = (math.ceil(canvas_h / stride), math.ceil(canvas_w / stride))
        if maps.shape[-2:] != expected:
            raise ValueError(
                f"the model gave {tuple(maps.shape[-2:])} maps for a {canvas_h}x{canvas_w} input, not "
                f"ceil(size / {stride}) = {expected}: pass the model's output stride as stride="
            )
        for i, (h, w) in enumerate(scaled):
            if int(index[i].max()) >= maps.shape[1]:
                raise ValueError(
                    f"tag {int(index[i].max())} out of range: the model has {maps.shape[1]} outputs"
                )
            hc, wc = math.ceil(h / stride), math.ceil(w / stride)
            m = maps[i, index[i], :hc, :wc]
            if flip:
                m = m + maps[n + i, index[i], :hc, :wc].flip(-1)
            acc[i] += F.interpolate(m[None], size=up[i], mode="bilinear", align_corners=False)[0]
    out = []
    for a, (h, w) in zip(acc, sizes):
        a = a[:, :h, :w]
        out.append(a / (a.amax(dim=(1, 2), keepdim=True) + 1e-5))
    return out


def _resize_image(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """A [3, H, W] float image in 0..255 resized to ``size`` (antialiased when shrinking, like PIL)."""
    if tuple(x.shape[-2:]) == size:
        return x
    y = F.interpolate(x[None], size=size, mode=interpolation, align_corners=False, antialias=True)[0]
    return y.clamp_(0, 255)


def save_cams(path: str | Path, result: CamResult) -> Path:
    """Write ``result`` as an ``.npz`` (float16 ``cams``, int64 ``classes``), atomically."""
    cams = np.asarray(result.cams, dtype=np.float16)
    classes = np.asarray(result.classes, dtype=np.int64)
    if cams.ndim != 3 or len(classes) != len(cams):
        raise ValueError(f"cams must be [K, H, W] with K = len(classes); got {cams.shape} and {len(classes)}")
    return atomic_write(path, lambda f: np.savez(f, cams=cams, classes=classes))


def load_cams(path: str | Path) -> CamResult:
    """Read a file written by :func:`save_cams`; the maps come back as float32."""
    try:
        with np.load(path, allow_pickle=False) as z:  # a run folder may be downloaded: data only
            return CamResult(z["classes"].astype(np.int64), z["cams"].astype(np.float32))
    except FileNotFoundError:
        raise DataError(f"{path}: CAM file not found") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a CAM file ({e})") from None
