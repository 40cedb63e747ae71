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
