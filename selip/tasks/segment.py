"""``SegmentationTask``: the pretrained image encoder under a U-Net decoder (DESIGN §2.6).

Dice + cross-entropy loss (MONAI's ``DiceCELoss``), Dice per foreground class on
validation and test, sliding-window inference over whole volumes (MONAI) when the
volumes are larger than the training patch.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from torch.nn import functional as F

from selip.data.preprocess import preprocess_image, to_dhw
from selip.models import ImageEncoderConfig
from selip.models.decoder import UNetDecoder
from selip.tasks.channels import fit_encoder_to_data
from selip.tasks.downstream import (
    FrozenEncoderMixin,
    downstream_optimizer,
    freeze_encoder,
    starting_encoder,
)
from selip.tasks.prediction import to_original_space, write_nifti


class SegmentationTask(FrozenEncoderMixin, pl.LightningModule):
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
        predict_dir: where ``selip predict`` writes masks (default: the run folder).
    """

    frozen_mode = "frozen"  # the mode whose encoder stays in eval mode

    def __init__(self, mode: Literal["finetune", "frozen", "scratch"] = "finetune",
                 encoder_ckpt: str | None = None, image_encoder: ImageEncoderConfig | None = None,
                 num_classes: int = 2, decoder_width: int = 16,
                 roi_size: tuple[int, int, int] | None = None, lr: float = 1e-3,
                 lr_encoder: float | None = None, weight_decay: float = 0.01,
                 warmup: float = 0.05, schedule: Literal["cosine", "poly", "constant"] = "cosine",
                 predict_dir: str | None = None) -> None:
        super().__init__()
        self.encoder = starting_encoder(mode, ("finetune", "frozen", "scratch"), encoder_ckpt,
                                        image_encoder)
        if mode == "frozen":
            freeze_encoder(self.encoder)
        self.save_hyperparameters(ignore=["image_encoder"])
        self.hparams["image_encoder"] = asdict(self.encoder.config)
        self.decoder = UNetDecoder(self.encoder.stage_channels, num_classes, decoder_width)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.dice = {stage: DiceMetric(include_background=False, reduction="mean_batch",
                                       ignore_empty=True) for stage in ("val", "test")}

    def setup(self, stage: str) -> None:
        fit_encoder_to_data(self, self.encoder)  # stacked sequences: inflate the stem

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, classes, D, H, W) logits."""
        return self.decoder(self.encoder.stages(image), image.shape[2:])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def _infer(self, image: torch.Tensor) -> torch.Tensor:
        roi = self.hparams["roi_size"]
        if roi is None:
            return self(image)
        return sliding_window_inference(image, tuple(roi), sw_batch_size=2,  # type: ignore[return-value]
                                        predictor=self, overlap=0.25)

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        logits = self._infer(batch["image"])
        loss = self.loss(logits, batch["mask"])
        classes = logits.shape[1]
        predicted = F.one_hot(logits.argmax(1), classes).permute(0, 4, 1, 2, 3)
        target = F.one_hot(batch["mask"][:, 0].clamp(max=classes - 1), classes)
        self.dice[stage](predicted, target.permute(0, 4, 1, 2, 3))
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(batch["image"]))

    def _log_dice(self, stage: str) -> None:
        aggregated = self.dice[stage].aggregate()
        assert isinstance(aggregated, torch.Tensor)
        per_class = aggregated.to(self.device)
        self.dice[stage].reset()
        values = {f"{stage}/dice_class{c + 1}": per_class[c] for c in range(len(per_class))}
        values[f"{stage}/dice"] = torch.nanmean(per_class)
        self.log_dict(values, sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_dice("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_dice("test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[str]:
        """Segment each volume of the batch and write its mask as NIfTI in the input's own
        shape and affine, under ``predict_dir`` (default: the run folder's ``predictions``).

        The volume is preprocessed again from its file (not from the cache) because mapping
        the prediction back needs the preprocessed grid's affine.
        """
        datamodule: Any = getattr(self.trainer, "datamodule", None)
        folder = self._predict_folder()
        written = []
        for sample_id in batch["sample_id"].tolist():
            pair = datamodule.pairs[sample_id]
            images = [preprocess_image(v, datamodule.preprocess) for v in pair.volumes]
            volume = torch.stack([torch.from_numpy(to_dhw(i.data)) for i in images])
            labels = self._infer(volume[None].float().to(self.device)).argmax(1)[0]
            # Masks go onto the first volume's grid (with stacked sequences: the first one).
            name = ("_".join(datamodule.sequences) if len(pair.volumes) > 1
                    else datamodule.sequences[pair.sequence_index])
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
