"""Image pairs that share a class, for cross-image methods (MCIS, Sun et al. ECCV 2020).

For image ``i`` one of its tagged classes is drawn uniformly, then a partner uniformly among the other
training images tagged with that class (the official sampler; its "50% random pairs" branch has probability
0). The draw is seeded by ``(seed, epoch, i)``, so a resumed epoch sees the same pairs.

Example:
    >>> pairs = PairDataset(SegDataset(source, "train", transform=...), seed=0)  # doctest: +SKIP
    >>> sample = pairs[0]  # image 0's keys, plus "image_partner", "tags_partner", ...  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from lesseg.data.dataset import SegDataset

PARTNER_SUFFIX = "_partner"


class PairDataset(Dataset):
    """Wraps a :class:`SegDataset`: item ``i`` is its sample ``i`` plus a partner's sample, the partner's
    keys suffixed with ``_partner``.

    Args:
        base: the dataset of single images; its image-level tags (``source.tags_of``) choose the partners.
        seed: seed of the partner draws (together with the epoch and the index).

    An image without tags, or whose classes no other image has, is paired with itself (a self-pair).
    """

    def __init__(self, base: SegDataset, seed: int = 0):
        self.base = base
        self.seed = seed
        self.epoch = 0
        source = base.source
        self.tags = [tuple(sorted(source.tags_of(r) or ())) for r in base.records]
        self.by_class: dict[int, list[int]] = {}
        for i, tags in enumerate(self.tags):
            for c in tags:
                self.by_class.setdefault(c, []).append(i)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def partner_of(self, index: int) -> int:
        """The partner of image ``index`` this epoch: another image sharing one of its classes."""
        tags = self.tags[index]
        if not tags:
            return index
        rng = np.random.default_rng([self.seed, self.epoch, index])
        cls = tags[int(rng.integers(len(tags)))]
        others = [j for j in self.by_class[cls] if j != index]
        return int(others[int(rng.integers(len(others)))]) if others else index

    def __getitem__(self, index: int) -> dict:
        sample = self.base[index]
        partner = self.base[self.partner_of(index)]
        sample.update({k + PARTNER_SUFFIX: v for k, v in partner.items()})
        return sample
