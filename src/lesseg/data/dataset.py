"""One dataset class for every method: an image plus the supervision that exists for it.

A sample is a dict:

- ``image``: the transformed image (uint8 [3,H,W] without a transform; float when it ends in Normalize);
- ``mask``: int64 [H,W] class indices, ``ignore_index`` where unlabelled, all ignore when no mask is exposed;
- ``tags``: float [C] multi-hot image-level tags (never the background), zeros when none are exposed;
- ``has_mask``, ``has_tags``: what this image really carries, so a loss can skip what is absent;
- ``index``, ``id``; and ``params`` (the JSON of the recorded transform parameters) when asked for.

Augmentation randomness comes from ``seeded_rng(seed, epoch, index)``: a sample looks the same whatever
the worker count, process count or resume point. Call ``set_epoch`` every epoch, as with
``DistributedSampler``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from lesseg.data.imageio import load_image
from lesseg.data.source import DatasetSource, Record, tags_from_mask
from lesseg.data.splits import Supervision
from lesseg.data.transforms import seeded_rng


class SegDataset(Dataset):
    """Images of one split with the supervision a ``Supervision`` policy lets through.

    Args:
        source: the indexed dataset (``lesseg.data.read_dataset``).
        split: split name, e.g. ``"train"``.
        transform: a ``lesseg.data.transforms.Compose`` (or any callable ``(sample, rng) -> (sample, params)``).
        supervision: what to expose; by default every mask and tag on disk.
        seed: seed of the per-sample augmentation generators.
        return_params: also return the recorded transform parameters as a JSON string.
        extra_maps: optional ``record -> {name: array}`` of further per-pixel maps (CAMs, saliency) that go
            through the same geometric transforms as the mask.
        labels: optional ``record -> mask`` that replaces the masks on disk (pseudo-labels for a segmenter);
            these are always exposed, and the ``Supervision`` policy's mask rules do not apply to them.
        crop_novel_tags: weak-shot only: hide the novel classes' pixels after the transform rather than
            before, and give ``crop_tags``, the multi-hot novel classes visible in the augmented crop (the
            official SimFormer's novel image labels; it reads where the novel pixels are).

    Example:
        >>> import tempfile
        >>> from lesseg.data import read_dataset
        >>> from lesseg.data.synth import generate
        >>> root = tempfile.mkdtemp()
        >>> _ = generate(root, images=5, classes=3, size=32, seed=0)
        >>> ds = SegDataset(read_dataset(root), "train", supervision=Supervision(masks="none"))
        >>> sample = ds[0]  # tags only: the mask is all ignore
        >>> bool((sample["mask"] == 255).all()), bool(sample["has_tags"])
        (True, True)
    """

    def __init__(
        self,
        source: DatasetSource,
        split: str = "train",
        transform: Callable | None = None,
        supervision: Supervision | None = None,
        seed: int = 0,
        return_params: bool = False,
        extra_maps: Callable[[Record], dict[str, np.ndarray]] | None = None,
        labels: Callable[[Record], np.ndarray] | None = None,
        crop_novel_tags: bool = False,
    ):
        self.source = source
        self.split = split
        self.records = source.split(split)
        self.classes = source.classes
        self.transform = transform
        self.supervision = supervision or Supervision()
        self.seed = seed
        self.epoch = 0
        self.return_params = return_params
        self.extra_maps = extra_maps
        self.labels = labels
        self.crop_novel_tags = crop_novel_tags

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def tags_multi_hot(self, tags: tuple[int, ...] | None) -> torch.Tensor:
        vec = torch.zeros(self.classes.num_classes)
        if tags:
            vec[list(tags)] = 1.0
        return vec

    def __getitem__(self, index: int) -> dict:
        return self.draw(index, seeded_rng(self.seed, self.epoch, index))

    def draw(self, index: int, rng: np.random.Generator) -> dict:
        """Sample ``index`` augmented with ``rng`` (``__getitem__`` seeds it by (seed, epoch, index); a
        dataset that draws one image several times an epoch passes its own)."""
        record = self.records[index]
        ignore = self.classes.ignore_index
        image = load_image(record.image)
        # a mask is read only where it is exposed or where the image's tags come from it
        exposed = self.labels is None and self.supervision.exposes_mask(record.id)
        tags_from_it = self.supervision.tags and record.tags is None
        mask = self.source.load_mask(record) if exposed or tags_from_it else None
        tags = (
            record.tags
            if record.tags is not None
            else (tags_from_mask(mask, self.classes) if mask is not None else None)
        )
        if self.labels is not None:
            mask = np.asarray(self.labels(record), dtype=np.int64)
        has_mask = mask is not None and (self.labels is not None or self.supervision.exposes_mask(record.id))
        has_tags = tags is not None and self.supervision.tags
        if has_mask:
            if mask.shape != image.shape[:2]:
                raise_size_mismatch(record, image.shape[:2], mask.shape)
            if self.supervision.novel_classes and not self.crop_novel_tags:
                mask = mask.copy()
                mask[np.isin(mask, list(self.supervision.novel_classes))] = ignore
        else:
            mask = np.full(image.shape[:2], ignore, dtype=np.int64)

        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(mask),
        }
        if self.extra_maps is not None:
            for name, arr in self.extra_maps(record).items():
                sample[name] = torch.as_tensor(arr)
        params: list = []
        if self.transform is not None:
            sample, params = self.transform(sample, rng)
        if self.crop_novel_tags:
            novel = torch.tensor(sorted(self.supervision.novel_classes), dtype=sample["mask"].dtype)
            hidden = (
                torch.isin(sample["mask"], novel)
                if has_mask
                else torch.zeros_like(sample["mask"], dtype=torch.bool)
            )
            sample["crop_tags"] = self.tags_multi_hot(tuple(int(c) for c in sample["mask"][hidden].unique()))
            sample["mask"] = sample["mask"].masked_fill(hidden, ignore)
        sample.update(
            tags=self.tags_multi_hot(tags if has_tags else None),
            has_mask=has_mask,
            has_tags=has_tags,
            index=index,
            id=record.id,
        )
        if self.return_params:
            sample["params"] = json.dumps(params)
        return sample


@functools.lru_cache(maxsize=8)
def seeded_permutation(seed: int, stream: int, round_: int, n: int) -> np.ndarray:
    """A seeded permutation of ``n`` items for one round (epoch) of one stream, computed once per round
    rather than once per item (datasets that reorder their items each epoch)."""
    return np.random.default_rng([seed, stream, round_]).permutation(n)


def raise_size_mismatch(record: Record, image_hw, mask_hw) -> None:
    from lesseg.errors import DataError

    raise DataError(
        f"{record.mask}: mask size {mask_hw[1]}x{mask_hw[0]} differs from image {record.image} "
        f"size {image_hw[1]}x{image_hw[0]} (width x height)"
    )
