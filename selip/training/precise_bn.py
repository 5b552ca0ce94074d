"""``PreciseBatchNorm``: batch-norm statistics recomputed for the current weights before
every validation, so validation, the checkpoints saved after it, and everything that reads
them (``selip test``, ``selip export``, ``selip.load``, frozen probes) normalise with
statistics that the saved weights produce (:mod:`selip.models.precise_bn` says why).

Every task adds it by itself when its image encoder trains with batch norm
(:meth:`selip.tasks.base.BaseTask.configure_callbacks`); group and instance norm, the
default and the other option, need nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from selip.models.image_encoder import ImageEncoder
from selip.models.precise_bn import batch_norms, recompute_batchnorm_statistics


def trainable_batchnorm_encoders(module: nn.Module) -> list[ImageEncoder]:
    """The image encoders inside ``module`` that have batch norms and train (a frozen
    encoder keeps the statistics it was saved with)."""
    return [m for m in module.modules()
            if isinstance(m, ImageEncoder) and batch_norms(m)
            and any(p.requires_grad for p in m.parameters())]


class PreciseBatchNorm(pl.Callback):
    """Keeps the last ``num_batches`` training inputs (on the CPU, in float16; 256 volumes at
    the demo's batch, 512 at the paper's) and, when a validation inside ``fit`` starts,
    recomputes every trainable image encoder's batch-norm
    statistics over them with the current weights; under DDP the statistics are averaged
    over ranks, so every rank (and the checkpoint) holds the same.

    The kept inputs cost host memory: 256 demo volumes are 134 MB, but 512 volumes of the
    paper's 32 x 224 x 224 are 1.6 GB per rank, so lower ``num_batches`` there (or keep the
    default group norm, which needs none of this).

    Args:
        num_batches: training batches to recompute over (the most recent ones).
    """

    def __init__(self, num_batches: int = 8) -> None:
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        self.num_batches = num_batches
        self._recent: deque[torch.Tensor] = deque(maxlen=num_batches)
        self._steps_since = 0  # training steps since the statistics were last recomputed

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # The batch after the device-side augmentation: what the encoder trained on.
        self._recent.append(batch["image"].detach().to("cpu", torch.float16))
        self._steps_since += 1

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.recompute(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A checkpoint saved at the epoch's end without a validation before it (Lightning
        # runs checkpoint callbacks after the others) gets precise statistics too; after a
        # validation at the epoch's last step they are current already.
        self.recompute(pl_module)

    def recompute(self, pl_module: pl.LightningModule) -> int:
        """Recompute over the kept batches unless no step trained since the last time;
        returns how many batches were used (0: nothing to do)."""
        if not self._recent or self._steps_since == 0:
            return 0
        used = 0
        for encoder in trainable_batchnorm_encoders(pl_module):
            dtype = next(encoder.parameters()).dtype
            device = next(encoder.parameters()).device
            batches = (images.to(device, dtype) for images in self._recent)
            used = recompute_batchnorm_statistics(encoder, batches)
        self._steps_since = 0
        return used

    def state_dict(self) -> dict[str, Any]:
        return {"num_batches": self.num_batches}  # the inputs are not worth a checkpoint
