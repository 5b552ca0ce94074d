"""``SelipDataModule``: the one LightningDataModule every selip task uses —
:class:`selip.data.selip_data.SelipData` (the settings, the prepared cohort, its datasets)
with Lightning's loaders on top: a resumable sampler split across the trainer's ranks, and
the training batches' augmentation on the device."""

from __future__ import annotations

from functools import partial

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from selip.data.augment import augment_batch
from selip.data.batch_similarity import batch_plan
from selip.data.dataset import TrainingOrder, flip_of
from selip.data.device_batch import (
    augment_generator,
    augment_on_device,
    fit_progress,
    input_dtype,
    order_seed,
)
from selip.data.sampler import ResumableSampler
from selip.data.selip_data import SelipData
from selip.data.workers import ignore_stop_signals


class SelipDataModule(SelipData, pl.LightningDataModule):
    """Image–report pairs from a manifest, preprocessed through an on-disk cache, as
    Lightning's datamodule: every argument is :class:`SelipData`'s (the ``data`` section of
    a config)."""

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError("call setup() before asking for a dataloader")
        batch_size = self.batch_size if train else self.eval_batch_size
        if train and len(self.datasets[split]) < batch_size:
            raise ValueError(f"the train split has {len(self.datasets[split])} pairs, fewer "
                             f"than batch_size={batch_size}; lower data.batch_size or add exams")
        # training: the sampler rebuilds the dataset in its order; evaluation: Lightning
        # adds a DistributedSampler under DDP
        sampler = self.train_sampler() if train else None
        return DataLoader(self.datasets[split], batch_size=batch_size, sampler=sampler,
                          drop_last=train, shuffle=False if sampler is None else None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          worker_init_fn=ignore_stop_signals if self.num_workers else None,
                          pin_memory=self.pin_memory and torch.cuda.is_available())

    def train_sampler(self) -> ResumableSampler:
        """Seeded, split across the trainer's ranks, resumable mid-epoch; the training
        dataset is built again to draw in its order (seed, rank, flips, per-batch S)."""
        pairs, trainer, seed = self.cohort.split("train"), self.trainer, order_seed(
            self.shuffle_seed)
        weights, rank = None, trainer.global_rank if trainer is not None else 0
        if self.class_balanced and pairs and all(p.label is not None for p in pairs):
            labels = torch.tensor([p.label for p in pairs])
            weights = (1.0 / torch.bincount(labels).double()[labels]).tolist()
        sampler = ResumableSampler(
            len(pairs), self.batch_size, trainer.world_size if trainer is not None else 1,
            rank, seed=seed, weights=weights, positions=True,
            progress=partial(fit_progress, trainer) if trainer is not None else None)
        self.datasets = self._datasets(TrainingOrder(
            seed, rank, augment_fully=not augment_on_device(trainer),
            batch_similarity=batch_plan(self.similarity_table, pairs, sampler,
                                        flip_of(self.augment, seed))))
        return sampler

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int
                                ) -> dict[str, torch.Tensor]:
        """Images arrive as float16 (or already cast to a "-true" precision's dtype: Lightning
        casts the batch before the transfer) and leave in the model's input dtype, on the
        device; training batches also get the affine, gamma and intensity augmentation,
        batched (the flip happened in the workers), seeded per rank and loop position."""
        image, trainer = batch["image"], self.trainer
        if trainer is not None and trainer.training and self.augment.enabled \
                and augment_on_device(trainer):
            # In float32 whatever the model computes in, then cast: in bfloat16 (8
            # significant bits) a 5° rotation's cosine is one step below 1 and the sampling
            # grid's coordinates near the edges are resolved to a quarter voxel at 128
            # voxels; a float32 copy of the batch is small next to the activations.
            image, mask = augment_batch(image.float(), batch.get("mask"), self.augment,
                                        self.preprocess.spacing, augment_generator(
                                            trainer, order_seed(self.shuffle_seed),
                                            image.device))
            if mask is not None:
                batch["mask"] = mask
        batch["image"] = image.to(input_dtype(trainer))
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, train=False)
