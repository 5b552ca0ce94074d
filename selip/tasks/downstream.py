"""What the downstream tasks share: the encoder they start from and their optimiser."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from selip.inference.loading import InferenceError, read_trained_model
from selip.io.checkpoints import CheckpointError
from selip.models import ImageEncoder, ImageEncoderConfig
from selip.tasks.schedule import check_warmup_steps, warmup_then_decay

#: Modes that start from a randomly initialised encoder (never from ``encoder_ckpt``'s weights).
RANDOM_MODES = ("scratch", "random_linear")


def load_pretrained_encoder(path: str) -> ImageEncoder:
    """The image encoder of a SeLIP pretraining checkpoint or export, read by the one
    reader of trained models (:func:`selip.inference.loading.read_trained_model`).

    Raises:
        CheckpointError: not a selip pretraining checkpoint or export, or corrupt.
    """
    try:
        return read_trained_model(path).model.image_encoder
    except InferenceError as err:
        raise CheckpointError(str(err)) from None


def freeze_encoder(encoder: ImageEncoder) -> None:
    """Fix an encoder: no gradients, and eval mode, so its batch-norm layers normalise with
    their pretrained running statistics and never update them (a frozen encoder left in
    train mode would normalise each batch by itself and let its statistics drift).

    ``model.train()`` puts every submodule back in train mode, so a task with a frozen
    encoder calls this again from its own ``train()`` (see :class:`FrozenEncoderMixin`).
    """
    encoder.requires_grad_(False)
    encoder.eval()


class FrozenEncoderMixin:
    """``train()`` that leaves the task's ``encoder`` in eval mode when its ``mode``
    hyper-parameter is one of :attr:`frozen_modes` (``linear`` and ``random_linear``
    probes, ``frozen`` segmentation).

    Every ``model.train()`` passes through here, whether Lightning (after validation, in
    versions or with hooks that call it), a callback or a user calls it; Lightning 2.x's
    evaluation loops instead restore the modes they captured, eval included.
    """

    frozen_modes: tuple[str, ...]
    encoder: ImageEncoder
    hparams: Any

    def train(self, mode: bool = True) -> Any:
        super().train(mode)  # type: ignore[misc]
        if self.hparams.get("mode") in self.frozen_modes:
            freeze_encoder(self.encoder)
        return self


def starting_encoder(mode: str, modes: tuple[str, ...], encoder_ckpt: str | None,
                     image_encoder: ImageEncoderConfig | Mapping[str, Any] | None
                     ) -> ImageEncoder:
    """A fresh encoder for ``scratch`` and ``random_linear``, else the checkpoint's
    (``modes`` lists the valid modes; every other mode needs ``encoder_ckpt``).

    A fresh encoder with a checkpoint and no ``image_encoder`` takes the checkpoint's
    architecture with random weights, so "SeLIP vs scratch" (and a pretrained linear probe
    vs one on a random encoder) compares the same network.
    """
    if mode not in modes:
        raise ValueError(f"mode must be one of {', '.join(modes)}, got {mode!r}")
    if mode in RANDOM_MODES:
        if image_encoder is None and encoder_ckpt:
            image_encoder = load_pretrained_encoder(encoder_ckpt).config
        config = image_encoder if image_encoder is not None else ImageEncoderConfig()
        if isinstance(config, Mapping):  # from a checkpoint's hyper-parameters
            config = ImageEncoderConfig.from_record(config)
        return ImageEncoder(config)
    if not encoder_ckpt:
        raise ValueError(f"mode '{mode}' needs model.init_args.encoder_ckpt: a SeLIP "
                         "pretraining checkpoint (or use mode: scratch)")
    return load_pretrained_encoder(encoder_ckpt)


def downstream_optimizer(module: pl.LightningModule, new_parameters: Iterable[torch.nn.Parameter],
                         encoder: ImageEncoder, train_encoder: bool) -> dict[str, Any]:
    """AdamW with warmup + decay: the new layers at ``lr``; the encoder, when trained, at
    ``lr_encoder`` (default ``lr`` from scratch, ``lr / 10`` when fine-tuning).

    The schedule spans ``trainer.estimated_stepping_batches`` (``trainer.max_steps`` when
    set) after ``warmup_steps`` optimiser steps of linear warmup."""
    hp = module.hparams
    groups: list[dict[str, Any]] = [{"params": list(new_parameters), "lr": hp["lr"],
                                     "name": "new_layers"}]
    if train_encoder:
        lr_encoder = hp["lr_encoder"] if hp["lr_encoder"] is not None else (
            hp["lr"] if hp["mode"] == "scratch" else hp["lr"] / 10)
        groups.append({"params": encoder.parameters(), "lr": lr_encoder, "name": "encoder"})
    optimizer = torch.optim.AdamW(groups, weight_decay=hp["weight_decay"])
    total = int(module.trainer.estimated_stepping_batches)
    factor = warmup_then_decay(total, check_warmup_steps(hp["warmup_steps"]), hp["schedule"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def final_step_unvalidated(max_steps: int, val_check_interval: Any,
                           check_val_every_n_epoch: int | None) -> bool:
    """True when a run budgeted in steps (``max_steps`` > 0) validates every
    ``val_check_interval`` steps counted across epochs (``check_val_every_n_epoch`` None,
    as the downstream configs set) and its last step is not one of them, so the weights it
    ends with are never validated (nor eligible as the best checkpoint)."""
    return (max_steps > 0 and check_val_every_n_epoch is None
            and isinstance(val_check_interval, int) and val_check_interval > 0
            and max_steps % val_check_interval != 0)


def warn_if_final_step_unvalidated(trainer: pl.Trainer) -> None:
    """Warn (from ``on_fit_start``) about :func:`final_step_unvalidated` settings."""
    if final_step_unvalidated(trainer.max_steps, trainer.val_check_interval,
                              trainer.check_val_every_n_epoch):
        rank_zero_warn(f"trainer.max_steps ({trainer.max_steps}) is not a multiple of "
                       f"trainer.val_check_interval ({trainer.val_check_interval}): the "
                       "last steps are never validated; make it a multiple")
