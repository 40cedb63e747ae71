"""Paired, seeded, replayable transforms: an image, its mask and any extra maps move together.

Every random choice is drawn from a ``numpy.random.Generator`` the caller passes (see ``seeded_rng``), never
from torch's or Python's global RNG, so a sample's augmentation depends only on (seed, epoch, index).

Params are plain JSON. Geometric ones all share one resolution-independent shape: ``size`` (input [H, W]),
``box`` ([top, left, h, w] in input pixels; it may reach past the image, which pads), ``out`` ([h, w]) and
``flip``. Replaying on a map of another resolution scales box and out by map size / ``size``, so the params
of a 320 px image replay on its 80 px feature map (PiCIE), and ``invert`` maps a result back to the input.

    >>> import torch
    >>> t = Compose([RandomResizedCrop(32), RandomHorizontalFlip(), ColorJitter(), Normalize()])
    >>> img, mask = torch.zeros(3, 64, 64, dtype=torch.uint8), torch.zeros(64, 64, dtype=torch.int64)
    >>> out, params = t({"image": img, "mask": mask}, seeded_rng(0, 0, 5))
    >>> feat = torch.rand(1, 8, 16, 16)          # view 2's features of the whole 64 px image, stride 4
    >>> replay(params, feat).shape               # view 1's geometry on them: its 32 px crop at stride 4
    torch.Size([1, 8, 8, 8])

Modules: ``base`` (constants, ``seeded_rng``, argument checks, ``Transform``), ``resample`` (the resampling
core and ``replay``/``invert``/``output_size``/``valid_region``), ``geometry`` (``Geometric`` and the crops,
rescale and flip), ``photometric`` (``Photometric`` and the colour, blur, grayscale, cutout and normalize
transforms) and ``compose`` (``Compose``). Import from this package, not from them.
"""

from .base import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, Transform, seeded_rng
from .base import INTERPOLATIONS as INTERPOLATIONS
from .base import KINDS as KINDS
from .base import Size as Size
from .compose import Compose
from .geometry import (
    CenterCrop,
    Geometric,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRescale,
    RandomResizedCrop,
)
from .photometric import ColorJitter, Cutout, GaussianBlur, Normalize, Photometric, RandomGrayscale
from .resample import invert, invert_batch, is_geometric, output_size, replay, replay_batch, valid_region

__all__ = [
    "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "CenterCrop", "ColorJitter", "Compose", "Cutout", "GaussianBlur",
    "Geometric", "Normalize", "Photometric", "RandomCrop", "RandomGrayscale", "RandomHorizontalFlip",
    "RandomRescale", "RandomResizedCrop", "Transform", "invert", "invert_batch", "is_geometric",
    "output_size", "replay", "replay_batch", "seeded_rng", "valid_region",
]  # fmt: skip
