"""Labeled and unlabeled images drawn together, for semi-supervised training (PseudoSeg).

Each item of :class:`LabeledUnlabeledPairs` is one labeled sample and ``per_item`` unlabeled ones, so that
a batch of B items is B labeled and B x ``per_item`` unlabeled images and the engine's one sampler (seeded,
resumable, sharded over processes) drives both. An epoch is one pass over the unlabeled images (the many),
or a set number of their draws (``epoch_size``); the labeled ones (the few) come from a second stream. Each
stream is consecutive seeded permutations, each image drawn once per permutation, indexed by the draw's
position. Both depend only on (seed, epoch, item), so a
killed run resumes on the same pairs and augmentations, and under DDP each process draws a disjoint share
of the unlabeled pass and of the labeled stream.

:class:`WeakStrongViews` makes the unlabeled sample's two views: the weak one (the geometric augmentation
only) and the strong one (the same pixels, then colour jitter and a cutout square), with the pixels both
views share (neither padded nor cut out).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch.utils.data import Dataset

from lesseg.data import transforms as T
from lesseg.data.dataset import SegDataset, seeded_permutation

#: stream ids inside the seed, so the two streams and their augmentations never share random numbers
_UNLABELED, _LABELED, _AUGMENT = 1, 2, 3
#: the ImageNet mean pixel on the uint8 scale: what PseudoSeg pads crops and fills its cutout with
MEAN_PIXEL = [round(255 * m) for m in T.IMAGENET_MEAN]


def valid_pixels(sample: dict) -> torch.Tensor:
    """Bool [H, W] of a sample drawn with ``return_params``: True where the crop holds image, not padding."""
    params = json.loads(sample["params"])
    geo = [p for p in params if T.is_geometric(p)]
    if not geo:
        return torch.ones(sample["image"].shape[-2:], dtype=torch.bool)
    return T.valid_region(params, tuple(geo[0]["size"]))


class WithValid(torch.utils.data.Dataset):
    """A dataset drawn with ``return_params`` whose samples also carry ``valid`` (:func:`valid_pixels`;
    ``valid_partner`` for a pair's partner) in place of their ``params``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        for key in [k for k in sample if k.startswith("params")]:
            suffix = key[len("params") :]
            view = {"params": sample.pop(key), "image": sample["image" + suffix]}
            sample["valid" + suffix] = valid_pixels(view)
        return sample


class WeakStrongViews:
    """The two views of an unlabeled crop (PseudoSeg, official ``input_preprocess``): strong = colour
    jitter (brightness, contrast, saturation, hue; random order; always applied) and one cutout square of
    side ``cutout`` filled with ``fill``, on top of the weak view's geometry, so pixel (i, j) is the same
    point of the scene in both.

    Args:
        cutout: side of the square in pixels (official 100 at 513 crops); 0 for none.
        jitter: (brightness, contrast, saturation, hue), official (0.5, 0.5, 0.5, 0.25).
        fill: the cutout's value per channel, uint8 scale (default: the ImageNet mean pixel).
    """

    def __init__(self, cutout: int, jitter=(0.5, 0.5, 0.5, 0.25), fill=None):
        fill = MEAN_PIXEL if fill is None else fill
        ops: list = [T.ColorJitter(*jitter, p=1.0)]
        if cutout > 0:
            ops.append(T.Cutout(size=(cutout, cutout), fill=fill, p=1.0))
        self.strong = T.Compose(ops)
        self.normalize = T.Normalize()

    def __call__(self, image: torch.Tensor, valid: torch.Tensor, rng: np.random.Generator) -> dict:
        """``image``: the weak crop, uint8 [3, H, W]; ``valid``: its non-padded pixels. Returns ``weak``
        and ``strong`` (normalised floats) and ``valid`` (bool [H, W], minus the cutout square)."""
        out, params = self.strong({"image": image}, rng)
        valid = valid.clone()
        for p in params:
            if p["name"] == "cutout":
                t, left, h, w = p["rect"]
                valid[t : t + h, left : left + w] = False
        norm = self.normalize.apply_image
        return {"weak": norm({}, image), "strong": norm({}, out["image"]), "valid": valid}


class LabeledUnlabeledPairs(Dataset):
    """One labeled sample and ``per_item`` unlabeled ones per item (see the module docstring).

    Args:
        labeled, unlabeled: the two sets as ``SegDataset`` s drawn with ``return_params=True``, their
            transforms geometric (the labeled one ends in ``Normalize``, the unlabeled one does not: its
            views are made here).
        views: a :class:`WeakStrongViews`.
        per_item: unlabeled images per labeled one (batch sizes: B labeled, B x per_item unlabeled).
        seed: seeds both streams and the augmentations.
        epoch_size: unlabeled draws per epoch; 0: ``len(unlabeled)`` (one pass).

    An item holds ``image``, ``mask``, ``valid``, ``tags`` of the labeled sample and ``weak``, ``strong``,
    ``weak_valid`` ([per_item, ...]), ``weak_tags`` and ``weak_has_tags`` of the unlabeled ones; the
    unlabeled samples' masks are not in it.

    Example:
        >>> import tempfile
        >>> from lesseg.data import read_dataset
        >>> from lesseg.data.splits import Supervision
        >>> from lesseg.data.synth import generate
        >>> root = tempfile.mkdtemp()
        >>> _ = generate(root, images=6, classes=3, size=32, seed=0)
        >>> src, crop = read_dataset(root), T.Compose([T.RandomCrop(24)])
        >>> lab = SegDataset(src, transform=T.Compose([T.RandomCrop(24), T.Normalize()]), return_params=True)
        >>> unl = SegDataset(src, transform=crop, supervision=Supervision(masks="none"), return_params=True)
        >>> lab.records, unl.records = lab.records[:2], unl.records[2:]
        >>> pairs = LabeledUnlabeledPairs(lab, unl, WeakStrongViews(cutout=8), per_item=2)
        >>> len(unl), len(pairs), pairs[0]["strong"].shape  # 2 unlabeled images per item
        (3, 1, torch.Size([2, 3, 24, 24]))
    """

    def __init__(self, labeled: SegDataset, unlabeled: SegDataset, views: WeakStrongViews, per_item: int = 1,
                 seed: int = 0, epoch_size: int = 0):  # fmt: skip
        if per_item < 1:
            raise ValueError(f"per_item must be >= 1, got {per_item}")
        if epoch_size < 0 or 0 < epoch_size < per_item:
            raise ValueError(f"epoch_size must be 0 (one pass) or >= per_item ({per_item}), got {epoch_size}")
        if len(labeled) == 0 or len(unlabeled) < per_item:
            raise ValueError(f"{len(labeled)} labeled and {len(unlabeled)} unlabeled images: at least one "
                             f"labeled and {per_item} unlabeled are needed")  # fmt: skip
        self.labeled, self.unlabeled, self.views = labeled, unlabeled, views
        self.per_item, self.seed, self.epoch = per_item, seed, 0
        self.epoch_size = epoch_size or len(unlabeled)

    def __len__(self) -> int:
        return self.epoch_size // self.per_item

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _stream(self, stream: int, position: int, n: int) -> int:
        """Image ``position`` of a stream over ``n`` images: a new seeded permutation every ``n`` draws."""
        return int(seeded_permutation(self.seed, stream, position // n, n)[position % n])

    def labeled_index(self, item: int) -> int:
        """The labeled stream at position epoch x len + item."""
        return self._stream(_LABELED, self.epoch * len(self) + item, len(self.labeled))

    def unlabeled_indices(self, item: int) -> list[int]:
        """The item's ``per_item`` draws of the unlabeled stream (one pass per epoch by default)."""
        start = (self.epoch * len(self) + item) * self.per_item
        return [self._stream(_UNLABELED, start + k, len(self.unlabeled)) for k in range(self.per_item)]

    def _rng(self, item: int, slot: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _AUGMENT, self.epoch, item, slot])

    def __getitem__(self, item: int) -> dict:
        lab = self.labeled.draw(self.labeled_index(item), self._rng(item, 0))
        out = {"image": lab["image"], "mask": lab["mask"], "valid": valid_pixels(lab), "id": lab["id"]}
        views = []
        for slot, index in enumerate(self.unlabeled_indices(item), start=1):
            rng = self._rng(item, slot)
            u = self.unlabeled.draw(index, rng)
            views.append({**self.views(u["image"], valid_pixels(u), rng), "tags": u["tags"],
                          "has_tags": torch.tensor(bool(u["has_tags"]))})  # fmt: skip
        for key, name in (("weak", "weak"), ("strong", "strong"), ("valid", "weak_valid"), ("tags", "weak_tags"),
                          ("has_tags", "weak_has_tags")):  # fmt: skip
            out[name] = torch.stack([v[key] for v in views])
        return out
