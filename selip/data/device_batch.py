"""What the datamodule asks its trainer about a batch on the device: the dtype the model
takes, where the augmentation runs, its generator, and the loop position it is seeded by.

Lightning-side helpers of :class:`selip.data.datamodule.SelipDataModule` (each takes the
trainer, or None without one).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.accelerators import CPUAccelerator

from selip.data.augment import step_generator


def order_seed(shuffle_seed: int | None) -> int:
    """The seed of the training order: ``shuffle_seed``, else the run's
    ``seed_everything``, else 0. One seed fixes both what a batch holds and how it is
    augmented."""
    if shuffle_seed is not None:
        return shuffle_seed
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def fit_progress(trainer: Any) -> tuple[int, int]:
    """(epoch, batches of it already trained) from the trainer's loops — restored from the
    checkpoint when resuming, (e, 0) at the start of every epoch otherwise."""
    loop = trainer.fit_loop
    # ``processed`` is what Lightning's own set_epoch uses (the trackers are typed as their
    # base class, which lacks it).
    epoch: Any = loop.epoch_progress.current
    batches: Any = loop.epoch_loop.batch_progress.current
    return int(epoch.processed), int(batches.processed)


def input_dtype(trainer: Any) -> torch.dtype:
    """The dtype the model takes its images in: the module's under the "-true" precisions
    (bfloat16, float16, float64), float32 under 32 and the mixed ones (autocast casts per
    operation) and without a trainer.

    Asked of the trainer's precision plugin, which casts every floating input to it before
    the transfer (a no-op when mixed): the float16 the loader ships in must not reach a
    float32 model, nor float32 a bfloat16 one.
    """
    plugin = getattr(trainer, "precision_plugin", None)
    if plugin is None:
        return torch.float32
    return plugin.convert_input(torch.empty(0, dtype=torch.float32)).dtype


def augment_on_device(trainer: Any) -> bool:
    """Affine/gamma/intensity batched on the accelerator after the transfer; on a CPU run
    instead per sample in the loader workers, which run in parallel with the step rather
    than before it."""
    return trainer is not None and not isinstance(getattr(trainer, "accelerator", None),
                                                  CPUAccelerator)


def augment_generator(trainer: Any, seed: int, device: torch.device) -> torch.Generator | None:
    """The generator of this training batch's batched augmentation, on ``device``, seeded
    from (``seed``, global rank, epoch, batch of the epoch).

    Not the global generator: LightningCLI seeds every rank alike, so sample j of the batch
    would get the same affine, gamma and intensity draw on every rank. Epoch and batch are
    the loop counters the training order resumes from (restored from the checkpoint), so a
    resumed run draws what the first run drew at that batch; not ``global_step``, which
    stays put across the batches of a gradient accumulation. None (the global generator)
    without a fit loop.
    """
    if getattr(trainer, "fit_loop", None) is None:
        return None
    epoch, batch = fit_progress(trainer)
    return step_generator((seed, trainer.global_rank, epoch, batch), device)
