"""``ClassificationTask``: a pretrained (or fresh) image encoder under a linear head.

Modes (docs/design.md §6): ``linear`` — the encoder from a SeLIP checkpoint, frozen (a linear
probe); ``finetune`` — the same encoder, trained with a lower learning rate; ``scratch`` —
a freshly initialised encoder; ``random_linear`` — a linear probe on a freshly initialised,
frozen encoder of the same architecture: the baseline a pretrained linear probe must beat
(a random network's features are far from useless). A probe standardises the frozen
features (a batch norm without affine terms) before its head, so it trains at one learning
rate whatever their scale. Metrics are torchmetrics' accuracy,
precision, recall, F1 (macro) and AUROC; model selection happens on validation, never on test.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torchmetrics
from torch import nn

from selip.models import ImageEncoderConfig
from selip.tasks.base import BaseTask
from selip.tasks.channels import fit_encoder_to_data
from selip.tasks.compatibility import warn_if_encoder_checkpoint_scaling_differs
from selip.tasks.downstream import (
    FrozenEncoderMixin,
    downstream_optimizer,
    freeze_encoder,
    starting_encoder,
    warn_if_final_step_unvalidated,
)
from selip.tasks.schedule import check_warmup_steps

#: Linear probes: the encoder is frozen (eval mode too) and only the head trains.
_PROBES = ("linear", "random_linear")


def classification_metrics(num_classes: int, prefix: str) -> torchmetrics.MetricCollection:
    """Accuracy, macro precision/recall/F1 and AUROC over softmax probabilities (B, C)."""
    common: dict[str, Any] = {"task": "multiclass", "num_classes": num_classes}
    return torchmetrics.MetricCollection({
        "accuracy": torchmetrics.Accuracy(**common),
        "precision": torchmetrics.Precision(**common, average="macro"),
        "recall": torchmetrics.Recall(**common, average="macro"),
        "f1": torchmetrics.F1Score(**common, average="macro"),
        "auroc": torchmetrics.AUROC(**common),
    }, prefix=prefix)


class ClassificationTask(FrozenEncoderMixin, BaseTask):
    """Exam-level labels from one sequence volume per sample, or from an exam's sequences
    stacked as channels (``data.stack_sequences``; a pretrained 1-channel stem is inflated).

    Args:
        mode: ``linear``, ``finetune``, ``scratch`` or ``random_linear``.
        encoder_ckpt: SeLIP pretraining checkpoint (required for linear and finetune).
        image_encoder: the architecture for ``scratch`` (with a checkpoint, the
            checkpoint's own settings are used).
        num_classes: classes (default: the datamodule's label set).
        lr: learning rate of the head (and of a scratch encoder).
        lr_encoder: learning rate of a fine-tuned encoder (default: lr / 10).
        weight_decay: AdamW weight decay.
        warmup_steps: optimiser steps of linear warmup (then ``schedule`` decays over the
            rest of ``trainer.max_steps``).
        schedule: ``cosine``, ``poly`` or ``constant``.
    """

    frozen_modes = _PROBES  # the modes whose encoder stays in eval mode

    def __init__(self,
                 mode: Literal["linear", "finetune", "scratch", "random_linear"] = "finetune",
                 encoder_ckpt: str | None = None, image_encoder: ImageEncoderConfig | None = None,
                 num_classes: int | None = None, lr: float = 1e-3,
                 lr_encoder: float | None = None, weight_decay: float = 0.01,
                 warmup_steps: int = 20,
                 schedule: Literal["cosine", "poly", "constant"] = "cosine") -> None:
        super().__init__()
        check_warmup_steps(warmup_steps)
        self.encoder = starting_encoder(mode, ("linear", "finetune", "scratch", "random_linear"),
                                        encoder_ckpt,
                                        image_encoder)
        self.save_hyperparameters(ignore=["image_encoder"])
        self.record_config("image_encoder", self.encoder.config)
        if mode in _PROBES:
            freeze_encoder(self.encoder)
        # Why standardise: frozen features differ in scale by 30x between encoders (per-dim
        # std 0.2 for the demo's SeLIP encoder, 0.006 for a random one), and an unnormalised
        # head at lr 1e-3 hardly moved in 200 steps (test loss 1.33 ≈ ln 4 on 4 classes).
        # Standardised, every probe sees unit-variance inputs, as in MAE's linear probe.
        self.feature_norm: nn.Module = (
            nn.BatchNorm1d(self.encoder.out_features, eps=1e-8, affine=False)
            if mode in _PROBES
            else nn.Identity())
        self.head: nn.Linear | None = None
        if num_classes is not None:
            self._build_head(num_classes)

    def _build_head(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, got {num_classes}")
        self.head = nn.Linear(self.encoder.out_features, num_classes)
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")
        self.val_confusion = torchmetrics.ConfusionMatrix(task="multiclass",
                                                          num_classes=num_classes)

    def setup_for_data(self, stage: str) -> None:
        fit_encoder_to_data(self, self.encoder)
        warn_if_encoder_checkpoint_scaling_differs(self.hparams, self.data)
        if self.head is None:
            self.hparams["num_classes"] = len(self.data.classes)
            self._build_head(len(self.data.classes))

    def on_fit_start(self) -> None:
        warn_if_final_step_unvalidated(self.trainer)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, classes) logits."""
        assert self.head is not None, "the head is built in setup() or from num_classes"
        if self.hparams["mode"] in _PROBES:
            with torch.no_grad():
                features = self.encoder(image)
        else:
            features = self.encoder(image)
        return self.head(self.feature_norm(features))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self(batch["image"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def evaluate_batch(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int
                       ) -> None:
        logits = self(batch["image"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self._metrics(stage).update(logits.softmax(-1), batch["label"])
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(batch["label"]))
        if stage == "val":
            self.val_confusion.update(logits.argmax(-1), batch["label"])

    def _metrics(self, stage: str) -> torchmetrics.MetricCollection:
        return self.val_metrics if stage == "val" else self.test_metrics

    def finish_evaluation(self, stage: str) -> None:
        self.log_metrics(self._metrics(stage))
        if stage == "val":
            self._log_confusion()

    def _log_confusion(self) -> None:
        confusion = self.val_confusion.compute().float()
        self.val_confusion.reset()
        writer = getattr(self.logger, "experiment", None)
        if self.trainer.is_global_zero and hasattr(writer, "add_image") and writer is not None:
            rows = confusion / confusion.sum(1, keepdim=True).clamp(min=1)
            writer.add_image("val/confusion_matrix", rows[None].cpu(), self.global_step)

    def configure_optimizers(self) -> Any:
        assert self.head is not None
        return downstream_optimizer(self, self.head.parameters(), self.encoder,
                                    train_encoder=self.hparams["mode"] not in _PROBES)
