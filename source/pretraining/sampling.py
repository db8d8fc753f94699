"""Epochs of a chosen length: a seeded subset of the samples each epoch, balanced across slides.

A cohort of whole slides holds millions of patches; ``data.patches_per_epoch`` draws that many each
epoch, as evenly over the slides as their sizes allow, with a generator seeded by (seed, epoch). The
order is then split over ranks the way ``DistributedSampler`` does (rank r takes every world_size-th
index), so N processes see, step by step, exactly the global batches one process would.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def balanced_quota(sizes: Sequence[int], count: int, rng: np.random.Generator) -> np.ndarray:
    """How many samples to take from each group: ``count`` in all, as equal as the group ``sizes`` allow.

    Groups smaller than their share give all they have and the rest goes to the others; a remainder
    smaller than the number of open groups goes one each to groups drawn with ``rng``.

    Returns:
        ``(G,)`` int array, each ``<= sizes[g]``, summing to ``min(count, sum(sizes))``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    quota = np.zeros_like(sizes)
    remaining = int(min(count, sizes.sum()))
    while remaining > 0:
        open_groups = np.flatnonzero(quota < sizes)
        share = remaining // len(open_groups)
        if share == 0:
            quota[rng.choice(open_groups, size=remaining, replace=False)] += 1
            break
        take = np.minimum(share, sizes[open_groups] - quota[open_groups])
        quota[open_groups] += take
        remaining -= int(take.sum())
    return quota


class BalancedEpochSampler(Sampler[int]):
    """Each epoch, ``per_epoch`` indices balanced across groups (slides), shuffled, this rank's share.

    Args:
        groups: ``(N,)`` group (slide) index of each sample of the dataset.
        per_epoch: samples drawn per epoch over all ranks (at most N).
        seed: base seed; the epoch's draw uses ``(seed, epoch)``.
        world_size, rank: the processes sharing each epoch.
    """

    def __init__(
        self, groups: Sequence[int], per_epoch: int, seed: int = 0, world_size: int = 1, rank: int = 0
    ) -> None:
        self.groups = np.asarray(groups)
        self.per_epoch = min(int(per_epoch), len(self.groups))
        self.seed, self.world_size, self.rank = seed, world_size, rank
        self.epoch = 0
        self.members = [np.flatnonzero(self.groups == g) for g in np.unique(self.groups)]

    def set_epoch(self, epoch: int) -> None:
        """Draw the subset of ``epoch`` on the next iteration."""
        self.epoch = epoch

    def epoch_indices(self) -> np.ndarray:
        """The epoch's global order: ``(per_epoch,)`` dataset indices (the same on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        quota = balanced_quota([len(m) for m in self.members], self.per_epoch, rng)
        chosen = [
            rng.choice(members, size=int(k), replace=False) for members, k in zip(self.members, quota, strict=True) if k
        ]
        return rng.permutation(np.concatenate(chosen))

    def __len__(self) -> int:
        return self.per_epoch // self.world_size

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_indices()[: len(self) * self.world_size]
        return iter(order[self.rank :: self.world_size].tolist())
