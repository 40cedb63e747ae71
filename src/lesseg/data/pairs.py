"""Image pairs that share a class, for cross-image methods (MCIS, Sun et al. ECCV 2020; SimFormer's crosim).

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

from lesseg.data.dataset import SegDataset, seeded_permutation

PARTNER_SUFFIX = "_partner"
_ANCHORS = 7  # the anchor permutation's stream id


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

    def anchor_of(self, index: int) -> int:
        """The image item ``index`` is about (itself here)."""
        return index

    def __getitem__(self, index: int) -> dict:
        anchor = self.anchor_of(index)
        sample = self.base[anchor]
        partner = self.base[self.partner_of(anchor)]
        sample.update({k + PARTNER_SUFFIX: v for k, v in partner.items()})
        return sample


class WeakShotPairDataset(PairDataset):
    """SimFormer's crosim pairs (the official "Deconf0.01" sampler), drawn by the run, any batch size.

    The anchor's partner shares exactly one novel class with it where possible: one of the anchor's novel
    tags is drawn (with probability ``rare_prob``, 0.01, the one with the fewest images instead), then a
    partner among the images carrying it and no other of the anchor's novel tags; failing that, any image
    carrying it; an anchor without novel tags (or whose novel classes no other image has) gets a partner
    sharing any class (:class:`PairDataset`).

    An epoch has half as many items as images, anchors a seeded permutation's first half, so that with
    the partners it shows as many images as an epoch of single images.

    Args:
        base: the single images. novel: the novel class indices. seed: of the draws (with epoch, index).
    """

    def __init__(self, base: SegDataset, novel: tuple[int, ...], seed: int = 0, rare_prob: float = 0.01):
        super().__init__(base, seed)
        self.novel = frozenset(novel)
        self.rare_prob = rare_prob

    def __len__(self) -> int:
        return max(1, len(self.base) // 2)

    def anchor_of(self, index: int) -> int:
        return int(seeded_permutation(self.seed, _ANCHORS, self.epoch, len(self.base))[index])

    def partner_of(self, index: int) -> int:
        novel = [c for c in self.tags[index] if c in self.novel]
        if novel:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            if rng.random() < self.rare_prob:
                cls = min(novel, key=lambda c: len(self.by_class[c]))
            else:
                cls = novel[int(rng.integers(len(novel)))]
            sharing = [j for j in self.by_class[cls] if j != index]
            exact = [j for j in sharing if len(set(self.tags[j]) & set(novel)) == 1]
            for candidates in (exact, sharing):
                if candidates:
                    return int(candidates[int(rng.integers(len(candidates)))])
        return super().partner_of(index)
