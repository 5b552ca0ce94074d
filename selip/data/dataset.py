"""Image–text pairs: one per (exam, sequence), docs/design.md §1 — or, for downstream tasks
that stack sequences as channels, one per exam.

Workers read preprocessed arrays from the cache (filling it on a miss), flip left–right
(choosing the mirrored report text), and look up the pre-tokenised report text; nothing
here parses or tokenises text per step. The rest of the augmentation runs batched on the
training device (``selip.data.augment.augment_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from selip.data.augment import (
    AugmentSettings,
    augment_pair,
    draw_flip,
    position_flip,
    step_generator,
)
from selip.data.batch_similarity import BatchSimilarity, FlipOf, column_checksum
from selip.data.cache import VolumeCache
from selip.data.pair import Pair
from selip.data.preprocess import preprocess_mask, preprocess_volume
from selip.data.sampler import SampleKey


@dataclass(frozen=True)
class TrainingOrder:
    """How a training dataset draws (evaluation datasets keep the defaults).

    Attributes:
        seed: the training order's seed (flips and worker-side draws follow it).
        rank: the trainer's global rank, mixed into the draws' seed.
        augment_fully: the whole augmentation in the workers (CPU runs); False: only the
            flip there, the rest batched on the device after the transfer.
        batch_similarity: with S computed per batch, what the workers need to compute
            each batch's rows (:func:`selip.data.batch_similarity.batch_plan`).
    """

    seed: int = 0
    rank: int = 0
    augment_fully: bool = False
    batch_similarity: BatchSimilarity | None = None


def flip_of(augment: AugmentSettings | None, seed: int) -> FlipOf:
    """``(epoch, position) -> flipped`` of a training order with ``seed``: the one flip
    rule of the dataset and of the workers' per-batch S."""
    if augment is None:
        return lambda epoch, position: False
    return partial(position_flip, augment, seed)


class PairDataset(Dataset[dict[str, torch.Tensor]]):
    """Dict samples: ``image`` (C, D, H, W) float16 — the cache's precision, half the bytes
    through worker IPC and the host-to-device copy; ``SelipDataModule`` casts it to
    float32 on the device — (C = 1, or the stacked sequences),
    ``input_ids`` / ``attention_mask`` (L,) int64, ``report_id``, ``sample_id``,
    ``sequence`` int64 scalars, and ``label`` (int64 scalar) / ``mask`` (1, D, H, W)
    int64 when the pairs have them.

    The training sampler gives :class:`SampleKey` items: each sample's flip is a pure
    function of its position and its other worker-side draws are seeded by it (a resumed
    run repeats them). With :attr:`batch_similarity` set (``data.similarity.mode: per_batch``)
    each sample of a batch also carries ``similarity_bits`` (N,) int16 — its row of S against
    the step's N gathered reports, float16 bits (an integer, so a "-true" precision plugin
    does not round it) — and ``similarity_check`` (int64 scalar, the columns' checksum)."""

    def __init__(self, pairs: list[Pair], cache: VolumeCache, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 augment: AugmentSettings | None = None,
                 with_mask: bool = True, order: TrainingOrder | None = None) -> None:
        self.pairs = pairs
        self.cache = cache
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.augment = augment
        order = order or TrainingOrder()
        # False: only the flip here, the rest batched on the device after the transfer;
        # True: all of it here (CPU runs, where workers run parallel to the step).
        self.augment_fully = order.augment_fully
        # The trainer's global rank, mixed into the draws' seed.
        self.rank = order.rank
        self.with_label = bool(pairs) and all(p.label is not None for p in pairs)
        # Masks only when the task needs them: reading, warping and shipping an unused
        # mask per sample halved the pretraining loader's throughput.
        self.with_mask = with_mask and bool(pairs) and all(p.mask_key is not None
                                                           for p in pairs)
        # S computed per batch: the S rows of each batch, computed here
        self.batch_similarity: BatchSimilarity | None = order.batch_similarity
        # The training order's seed: with SampleKey items, every draw of a sample — flip
        # and, in augment_fully, the rest — is seeded from (this seed, epoch, position), so
        # a resumed run repeats the workers' draws exactly.
        self.order_seed = order.seed

    def __len__(self) -> int:
        return len(self.pairs)

    def generator(self) -> torch.Generator | None:
        """The generator of one sample's flip and augmentation: on rank 0 the global one
        (None), as in a single process; on any other rank one seeded from a draw of the
        global generator and the rank.

        Not the global generator alone: LightningCLI seeds every rank alike, so with
        ``num_workers=0`` (or workers seeded without Lightning's per-rank
        ``worker_init_fn``) every rank would draw the same for the i-th sample it reads.
        Seeded from the global generator, the stream still follows ``torch.manual_seed``
        and the DataLoader's per-worker seeds.
        """
        if self.rank == 0:
            return None
        draw = int(torch.randint(2**62, (), dtype=torch.int64))
        return step_generator((draw, self.rank))

    def read_image(self, pair: Pair, mirrored: bool = False) -> torch.Tensor:
        """(C, D, H, W) float16 of ``pair``, unaugmented (``mirrored``: left-right flipped):
        each sequence read from the cache straight into its channel."""
        settings = self.cache.settings
        image = np.empty((len(pair.volume_keys), *settings.shape), np.float16)
        for channel, (key, path) in enumerate(zip(pair.volume_keys, pair.volumes, strict=True)):
            out = image[channel]
            got = self.cache.get_or_create(key, "image", partial(preprocess_volume, path,
                                                                 settings), out=out)
            if got is not out:  # a cache that returned its own array instead of filling out
                np.copyto(out, got)
        return torch.from_numpy(_mirror(image) if mirrored else image)

    def read_mask(self, pair: Pair, mirrored: bool = False) -> torch.Tensor:
        """(1, D, H, W) int64 lesion labels of ``pair``, unaugmented (``mirrored``: flipped)."""
        assert pair.mask is not None and pair.mask_key is not None
        settings = self.cache.settings
        mask_path = pair.mask
        array = self.cache.get_or_create(pair.mask_key, "mask",
                                         lambda: preprocess_mask(mask_path, settings))
        return torch.from_numpy(np.asarray(_mirror(array) if mirrored else array,
                                           dtype=np.int64))[None]

    def flipped(self, epoch: int, position: int) -> bool:
        """Whether the training sample at ``position`` of ``epoch``'s global order is
        mirrored (:func:`position_flip` with the order's seed); the workers' per-batch S
        asks this too, so every rank's report ids of a step are known without talking."""
        return flip_of(self.augment, self.order_seed)(epoch, position)

    def __getitem__(self, key: int | SampleKey) -> dict[str, torch.Tensor]:
        # A training key (SampleKey): the flip is its position's (every worker of every rank
        # knows it: per_batch similarity needs that) and the other draws are seeded by it.
        decided, generator = None, None
        if isinstance(key, SampleKey):
            if self.augment is not None:
                decided = self.flipped(key.epoch, key.position)
                generator = step_generator((self.order_seed, key.epoch, key.position))
            key = key.dataset_index
        elif self.augment is not None:
            generator = self.generator()
        pair = self.pairs[key]
        # Accelerator runs: only the flip here, drawn first so that the read mirrors; CPU
        # runs (augment_fully): the whole augmentation, flip included, after the read.
        flipped = (self.augment is not None and not self.augment_fully
                   and (draw_flip(self.augment, generator) if decided is None else decided))
        image = self.read_image(pair, mirrored=flipped)
        mask = self.read_mask(pair, mirrored=flipped) if self.with_mask else None
        if self.augment is not None and self.augment_fully:
            image, mask, flipped = augment_pair(image, mask, self.augment,
                                                self.cache.settings.spacing, generator,
                                                flip=decided)
            image = image.half()
        report_id = pair.mirrored_report_id if flipped else pair.report_id
        sample = {
            "image": image,
            "report_id": torch.tensor(report_id, dtype=torch.long),
            "sample_id": torch.tensor(pair.sample_id, dtype=torch.long),
            "sequence": torch.tensor(pair.sequence_index, dtype=torch.long),
        }
        if self.input_ids is not None and self.attention_mask is not None:
            sample["input_ids"] = self.input_ids[report_id]
            sample["attention_mask"] = self.attention_mask[report_id]
        if self.with_label:
            sample["label"] = torch.tensor(pair.label, dtype=torch.long)
        if mask is not None:
            sample["mask"] = mask.long()
        return sample

    def __getitems__(self, keys: list[int | SampleKey]) -> list[dict[str, torch.Tensor]]:
        """One batch (the DataLoader's batched fetch): the samples, and with
        :attr:`batch_similarity` each one's row of S against the step's gathered reports."""
        samples = [self[key] for key in keys]
        plan = self.batch_similarity
        if plan is None or not keys or not isinstance(keys[0], SampleKey):
            return samples
        rows, columns = plan.rows_for(keys)  # type: ignore[arg-type]
        check = column_checksum(torch.from_numpy(columns))
        bits = torch.from_numpy(rows.astype(np.float16)).view(torch.int16)
        for sample, row in zip(samples, bits, strict=True):
            sample["similarity_bits"] = row  # a view; the collate stacks (copies) them
            sample["similarity_check"] = check
        return samples


def _mirror(array: np.ndarray) -> np.ndarray:
    """A contiguous left–right mirrored copy (W, the last axis, is left–right)."""
    return np.ascontiguousarray(array[..., ::-1])
