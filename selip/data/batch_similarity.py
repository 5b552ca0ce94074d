"""S rows of a training batch, computed in the loader worker that reads it.

Under ``data.similarity.mode: per_batch`` the training sampler yields
:class:`~selip.data.sampler.SampleKey` (index, epoch, global position) and each sample's
left–right flip is a function of its position (``PairDataset.flipped``). Both are
pure functions of (seed, epoch, world size), so a worker holding this rank's keys of a
step can rebuild the whole global batch of that step — every rank's samples and, through
their flips, their report ids — with no communication, and compute this rank's (b, N) rows
of S against the N gathered columns in the order ``gather_no_grad`` stacks them
(rank-major). The loss then sees exactly what a dense-table lookup gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from selip.data.pair import Pair
from selip.data.sampler import ResumableSampler, SampleKey, global_epoch_order
from selip.similarity.lookup import SimilarityLookup
from selip.similarity.per_batch import PerBatchSimilarity
from selip.similarity.per_batch import column_checksum as column_checksum  # re-export

#: ``(epoch, position) -> flipped``: the flip a training sample gets (the dataset's own,
#: :meth:`selip.data.dataset.PairDataset.flipped`, so the two never disagree).
FlipOf = Callable[[int, int], bool]


@dataclass
class BatchSimilarity:
    """What a worker needs to score its batch: the sampler's settings, the flips, the
    pairs' report ids, and the parsed reports.

    Args:
        similarity: S over every report text, computed when asked.
        report_ids, mirrored_ids: (n,) per dataset index, the pair's text and its mirror.
        seed: the training order's seed.
        length, total_size: the dataset length and the sampler's padded global size.
        world_size, batch_size: ranks and per-rank batch size.
        flipped: whether the sample at (epoch, position) is mirrored.
        weights: the sampler's class weights (None: a permutation).
    """

    similarity: PerBatchSimilarity
    report_ids: np.ndarray
    mirrored_ids: np.ndarray
    seed: int
    length: int
    total_size: int
    world_size: int
    batch_size: int
    flipped: FlipOf
    weights: torch.Tensor | None = None
    _order: tuple[int, list[int]] | None = field(default=None, repr=False)

    def report_id(self, index: int, epoch: int, position: int) -> int:
        """The report id the sample carries: its mirror's when it is flipped."""
        flipped = self.flipped(epoch, position)
        return int(self.mirrored_ids[index] if flipped else self.report_ids[index])

    def order(self, epoch: int) -> list[int]:
        """The global order of ``epoch`` (kept for the epoch: one permutation per epoch)."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, global_epoch_order(self.seed, epoch, self.length,
                                                     self.total_size, self.weights))
        return self._order[1]

    def columns(self, epoch: int, step: int) -> np.ndarray:
        """(world · batch,) report ids of step ``step`` of ``epoch``, rank-major as
        ``gather_no_grad`` concatenates them."""
        order, world, size = self.order(epoch), self.world_size, self.batch_size
        positions = [rank + world * (step * size + j) for rank in range(world)
                     for j in range(size)]
        return np.array([self.report_id(order[p], epoch, p) for p in positions], np.int64)

    def rows_for(self, keys: list[SampleKey]) -> tuple[np.ndarray, np.ndarray]:
        """This rank's rows of S for one batch of keys (b, N) float32, and the N column
        report ids.

        Raises:
            ValueError: keys that are not one step's batch of one rank.
        """
        local = [k.position // self.world_size for k in keys]
        step = local[0] // self.batch_size
        if len(keys) != self.batch_size or local != list(range(step * self.batch_size,
                                                              (step + 1) * self.batch_size)):
            raise ValueError("per-batch similarity needs whole batches in sampler order "
                             f"(batch_size {self.batch_size}, drop_last); got positions "
                             f"{[k.position for k in keys][:4]}…")
        columns = self.columns(keys[0].epoch, step)
        rows = np.array([self.report_id(k.dataset_index, k.epoch, k.position) for k in keys])
        return self.similarity.rows(rows, columns), columns


def batch_plan(similarity: SimilarityLookup | None, pairs: Sequence[Pair],
               sampler: ResumableSampler, flipped: FlipOf) -> BatchSimilarity | None:
    """What the loader workers need to compute each training batch's S rows, when the
    lookup computes S per batch; None when it holds a table (the step looks rows up).
    The one place, besides ``selip.similarity``, that tells the modes apart.

    Args:
        pairs: the training dataset's pairs, in dataset order.
        sampler: the training sampler (its seed, padded size, ranks, batch and weights).
        flipped: the dataset's flip of the sample at (epoch, position).
    """
    if not isinstance(similarity, PerBatchSimilarity):
        return None
    return BatchSimilarity(
        similarity, np.array([p.report_id for p in pairs], np.int64),
        np.array([p.mirrored_report_id for p in pairs], np.int64),
        seed=sampler.seed, length=len(pairs), total_size=sampler.total_size,
        world_size=sampler.num_replicas, batch_size=sampler.batch_size, flipped=flipped,
        weights=sampler.weights)
