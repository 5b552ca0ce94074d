"""The training sampler: seeded per epoch, split across ranks, resumable mid-epoch.

A run resumed from a mid-epoch checkpoint must neither repeat nor skip samples. The
order of every epoch is a pure function of (seed, epoch), so a resumed run rebuilds the
interrupted epoch's order and skips the batches that were already trained — read from the
trainer's restored loop progress when the epoch's iterator is created. Lightning creates
that iterator before it calls ``set_epoch`` on a resumed run, so the sampler asks for the
epoch at the same moment instead of trusting ``set_epoch``.

It subclasses :class:`~torch.utils.data.DistributedSampler` so Lightning neither replaces
nor wraps it under DDP; each rank gets an equal share (padded by repetition, as
``DistributedSampler`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, DistributedSampler

#: (epoch, batches of that epoch already trained) — read when an epoch's iterator starts.
Progress = Callable[[], tuple[int, int]]


class SampleKey(NamedTuple):
    """What the sampler yields with ``positions=True``: the dataset index, the epoch and the
    sample's position in the epoch's global order (over all ranks). A loader worker can
    rebuild the whole global batch of a step from it (S per batch: docs/design.md §5)."""

    dataset_index: int
    epoch: int
    position: int


def global_epoch_order(seed: int, epoch: int, length: int, total_size: int,
                       weights: torch.Tensor | None = None) -> list[int]:
    """Every rank's indices of ``epoch`` interleaved (rank r owns positions r, r + W, …):
    a pure function of the seed, the epoch, the dataset and the padded total size."""
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    if weights is not None:
        return torch.multinomial(weights, total_size, replacement=True,
                                 generator=generator).tolist()
    order = torch.randperm(length, generator=generator).tolist()
    return order + (order * (total_size // length + 1))[:total_size - length]


class _Sized(Dataset[object]):
    """A stand-in dataset: the sampler only needs a length."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> object:
        raise IndexError(index)


class ResumableSampler(DistributedSampler[int]):
    """Seeded, per-epoch order over ``num_samples`` indices, this rank's share, minus the
    batches already trained this epoch.

    Args:
        num_samples: dataset length.
        batch_size: per-rank batch size (to turn trained batches into samples).
        num_replicas, rank: the DDP world (1 and 0 on one device).
        seed: base seed; the order of epoch ``e`` depends on ``seed + e`` only.
        weights: when given, indices are drawn with replacement with these weights
            (class-balanced sampling); otherwise a permutation.
        progress: called when an epoch's iterator starts; returns (epoch, batches already
            trained in it). None: ``set_epoch``'s epoch and no skipping.
        positions: yield :class:`SampleKey` (index, epoch, global position) instead of
            bare indices.
    """

    def __init__(self, num_samples: int, batch_size: int, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, weights: Sequence[float] | None = None,
                 progress: Progress | None = None, positions: bool = False) -> None:
        if num_samples < 1:
            raise ValueError(f"the sampler needs at least one sample, got {num_samples}")
        if weights is not None and len(weights) != num_samples:
            raise ValueError(f"{len(weights)} weights for {num_samples} samples")
        super().__init__(_Sized(num_samples), num_replicas=num_replicas, rank=rank,
                         shuffle=True, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.weights = torch.as_tensor(weights, dtype=torch.double) if weights is not None \
            else None
        self.progress = progress
        self.positions = positions
        self.skipped = 0  # samples skipped at the start of the current iterator (for tests/logs)

    def epoch_order(self, epoch: int) -> list[int]:
        """This rank's indices for ``epoch``, none skipped."""
        order = global_epoch_order(self.seed, epoch, len(self.dataset),  # type: ignore[arg-type]
                                   self.total_size, self.weights)
        return order[self.rank:self.total_size:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        epoch, trained_batches = self.progress() if self.progress else (self.epoch, 0)
        order = self.epoch_order(epoch)
        self.skipped = min(len(order), trained_batches * self.batch_size)
        if self.positions:  # local position q is global position rank + world · q
            return iter(SampleKey(index, epoch, self.rank + self.num_replicas * q)  # type: ignore[misc]
                        for q, index in enumerate(order) if q >= self.skipped)
        return iter(order[self.skipped:])

    def __len__(self) -> int:
        # Lightning sizes the epoch from the full length and counts resumed batches itself.
        return self.num_samples
