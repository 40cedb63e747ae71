"""A sampler whose order depends only on (seed, epoch) and that can start in the middle of an epoch.

Resuming after a kill must replay the same batches that an uninterrupted run would have seen, so the epoch's
permutation is recomputed from the seed and the first ``start_batch`` batches are skipped. Under DDP, rank r
takes every world-th index of the permutation, so one global batch holds the same images however many
processes share it (what makes a 2-process run equal a 1-process run with the same global batch).
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from lesseg.errors import ConfigError


class ResumableSampler(Sampler[int]):
    """Indices of one rank's share of an epoch.

    Args:
        length: dataset size.
        batch_size: per-process batch size; whole global batches only (the tail that does not fill one
            global batch is dropped, as ``drop_last`` would).
        rank, world_size: this process and how many share each global batch.
        seed: permutation seed; the epoch comes from ``set_epoch``.
        shuffle: a new permutation every epoch, else dataset order.
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if length < batch_size * world_size:
            raise ConfigError(
                f"the dataset has {length} images, fewer than one global batch of {batch_size * world_size}; "
                "lower data.batch_size (or the training stage's own batch size)"
            )
        self.length, self.batch_size = length, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.length // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
            if self.shuffle
            else np.arange(self.length)
        )
        used = self.batches_per_epoch * self.batch_size * self.world_size
        mine = order[:used][self.rank :: self.world_size]
        return iter(mine[self.start_batch * self.batch_size :].tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
