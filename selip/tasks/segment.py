"""``SegmentationTask``: the pretrained image encoder under a U-Net decoder (docs/design.md §6).

Soft Dice + cross-entropy loss (:mod:`selip.dice`; by default a foreground-only Dice per
sample, made for lesions of a fraction of a percent of the voxels), Dice per foreground
class on validation and test, sliding-window inference over whole volumes (MONAI) when
the volumes are larger than the training patch.

Evaluation scores the argmax prediction of every sample. ``{stage}/dice_class{c}`` is the
mean hard Dice over the samples whose mask contains class ``c``; a sample whose mask does
not (an exam without a lesion) is left out of it — an empty prediction there is neither a
perfect 1 nor a 0 — and is scored by ``{stage}/empty_clean_class{c}`` instead: the share
of such samples predicted without any voxel of ``c`` (1 − false-alarm rate). So a model
that predicts nothing gets Dice 0 and empty_clean 1, not the share of normal exams as its
Dice. ``{stage}/dice`` and ``{stage}/empty_clean`` average the foreground classes; a
split with no sample of any foreground class has Dice NaN (nothing to overlap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from selip.data.preprocess import preprocess_image, to_dhw
from selip.dice import SegmentationLoss, empty_clean, foreground_dice, segmentation_loss
from selip.models import ImageEncoderConfig
from selip.models.decoder import UNetDecoder
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
from selip.tasks.prediction import to_original_space, write_nifti
from selip.tasks.schedule import check_warmup_steps


class SegmentationTask(FrozenEncoderMixin, BaseTask):
    """Lesion segmentation.

    Args:
        mode: ``finetune`` (encoder from ``encoder_ckpt``, trained with ``lr_encoder``),
            ``frozen`` (encoder from the checkpoint, fixed) or ``scratch``.
        encoder_ckpt: SeLIP pretraining checkpoint (finetune and frozen).
        image_encoder: the architecture for ``scratch``.
        num_classes: classes including background (2 for a binary lesion mask).
        decoder_width: channels of the finest decoder block.
        roi_size: sliding-window size (D, H, W) for whole-volume inference; None: the
            whole volume at once.
        lr: learning rate of the decoder (and of a scratch encoder).
        lr_encoder: learning rate of a fine-tuned encoder (default: lr / 10).
        weight_decay: AdamW weight decay.
        warmup_steps: optimiser steps of linear warmup (then ``schedule`` decays over the
            rest of ``trainer.max_steps``).
        schedule: ``cosine``, ``poly`` or ``constant``.
        predict_dir: where ``selip predict`` writes masks (default: the run folder).
        loss: ``dice_fg_ce`` (foreground Dice per sample + CE: every lesion exam weighs
            the same, small lesions too), ``batch_dice_fg_ce`` (foreground batch Dice + CE:
            fewer false alarms on lesion-free exams, but large lesions dominate the sums)
            or ``dice_ce`` (Dice over every class, background included, + CE: the old
            loss); see :mod:`selip.dice`.
        full_resolution: the decoder's stride-1 path on the input image (off: the stride-2
            map upsampled, as checkpoints written before it was added need).
    """

    frozen_modes = ("frozen",)  # the modes whose encoder stays in eval mode

    def __init__(self, mode: Literal["finetune", "frozen", "scratch"] = "finetune",
                 encoder_ckpt: str | None = None, image_encoder: ImageEncoderConfig | None = None,
                 num_classes: int = 2, decoder_width: int = 16,
                 roi_size: tuple[int, int, int] | None = None, lr: float = 1e-3,
                 lr_encoder: float | None = None, weight_decay: float = 0.01,
                 warmup_steps: int = 20,
                 schedule: Literal["cosine", "poly", "constant"] = "cosine",
                 predict_dir: str | None = None, loss: SegmentationLoss = "dice_fg_ce",
                 full_resolution: bool = True) -> None:
        super().__init__()
        check_warmup_steps(warmup_steps)
        self.encoder = starting_encoder(mode, ("finetune", "frozen", "scratch"), encoder_ckpt,
                                        image_encoder)
        if mode == "frozen":
            freeze_encoder(self.encoder)
        self.save_hyperparameters(ignore=["image_encoder"])
        self.record_config("image_encoder", self.encoder.config)
        self.decoder = UNetDecoder(self.encoder.stage_channels, num_classes, decoder_width,
                                   in_channels=self.encoder.config.in_channels,
                                   full_resolution=full_resolution)
        # Per-sample (B, classes - 1) rows of each evaluation epoch: Dice, empty_clean.
        self._scores: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {
            "val": [], "test": []}

    def setup_for_data(self, stage: str) -> None:
        fit_encoder_to_data(self, self.encoder)  # stacked sequences: inflate the stem
        warn_if_encoder_checkpoint_scaling_differs(self.hparams, self.data)
        self.decoder.match_input_channels(self.encoder.config.in_channels)

    def on_fit_start(self) -> None:
        warn_if_final_step_unvalidated(self.trainer)

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, classes, D, H, W) logits, (B, 1, D, H, W) mask → the configured loss."""
        return segmentation_loss(logits, mask, self.hparams["loss"])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, classes, D, H, W) logits."""
        return self.decoder(self.encoder.stages(image), image.shape[2:], image)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def _infer(self, image: torch.Tensor) -> torch.Tensor:
        roi = self.hparams["roi_size"]
        if roi is None:
            return self(image)
        # imported here: MONAI's package import costs seconds, and only windows need it
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(image, tuple(roi), sw_batch_size=2,  # type: ignore[return-value]
                                        predictor=self, overlap=0.25)

    def evaluate_batch(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int
                       ) -> None:
        logits = self._infer(batch["image"])
        loss = self.loss(logits, batch["mask"])
        classes = logits.shape[1]
        predicted, target = logits.argmax(1), batch["mask"][:, 0].clamp(max=classes - 1)
        self._scores[stage].append((foreground_dice(predicted, target, classes).cpu(),
                                    empty_clean(predicted, target, classes).cpu()))
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(batch["image"]))

    def finish_evaluation(self, stage: str) -> None:
        """Log the epoch's Dice and empty_clean per class and averaged (module docstring):
        means over the samples of every rank (sums and counts are added across ranks, so a
        rank whose share of the split has no lesion does not turn the mean into NaN)."""
        rows, self._scores[stage] = self._scores[stage], []
        if not rows:
            return
        dice = self._mean_over_ranks(torch.cat([d for d, _ in rows]))
        clean = self._mean_over_ranks(torch.cat([e for _, e in rows]))
        values: dict[str, torch.Tensor] = {}
        for c in range(len(dice)):
            values[f"{stage}/dice_class{c + 1}"] = dice[c]
            values[f"{stage}/empty_clean_class{c + 1}"] = clean[c]
        values[f"{stage}/dice"] = torch.nanmean(dice)
        values[f"{stage}/empty_clean"] = torch.nanmean(clean)
        self.log_dict(values, sync_dist=True)  # equal on every rank already

    def _mean_over_ranks(self, scores: torch.Tensor) -> torch.Tensor:
        """(N, K) per-sample scores, NaN where undefined → (K,) mean of the defined ones over
        all ranks' samples (NaN where none is)."""
        defined = ~scores.isnan()
        totals = torch.stack([scores.nan_to_num(0.0).sum(0), defined.sum(0).float()])
        totals = totals.to(self.device)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            totals = trainer.strategy.reduce(totals, reduce_op="sum")
        return totals[0] / totals[1]  # 0 / 0 = NaN: no sample of that class anywhere

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[str]:
        """Segment each volume of the batch and write its mask as NIfTI in the input's own
        shape and affine, under ``predict_dir`` (default: the run folder's ``predictions``).

        The volume is preprocessed again from its file (not from the cache) because mapping
        the prediction back needs the preprocessed grid's affine.
        """
        data = self.data
        assert data.preprocess is not None, "prediction needs the datamodule's settings"
        folder = self._predict_folder()
        written = []
        for sample_id in batch["sample_id"].tolist():
            pair = data.pairs[sample_id]
            images = [preprocess_image(v, data.preprocess) for v in pair.volumes]
            volume = torch.stack([torch.from_numpy(to_dhw(i.data)) for i in images])
            labels = self._infer(volume[None].float().to(self.device)).argmax(1)[0]
            # Masks go onto the first volume's grid (with stacked sequences: the first one).
            name = ("_".join(data.sequences) if len(pair.volumes) > 1
                    else data.sequences[pair.sequence_index])
            path = folder / f"{pair.exam_id}_{name}_mask.nii.gz"
            write_nifti(to_original_space(labels, images[0], pair.volume), path)
            written.append(str(path))
        return written

    def on_predict_epoch_end(self) -> None:
        if self.trainer.is_global_zero:
            print(f"predicted masks written to {self._predict_folder()}")

    def _predict_folder(self) -> Path:
        """``predict_dir``, else the run folder's ``predictions``."""
        if self.hparams["predict_dir"]:
            return Path(self.hparams["predict_dir"])
        return Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions"

    def configure_optimizers(self) -> Any:
        return downstream_optimizer(self, self.decoder.parameters(), self.encoder,
                                    train_encoder=self.hparams["mode"] != "frozen")
