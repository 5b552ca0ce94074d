"""How many image channels the data gives, and making a task's encoder take them.

With ``data.stack_sequences`` an exam's sequences arrive as channels of one image;
classification and segmentation inflate a pretrained 1-channel stem to match, while the
tasks that pair one sequence with text (pretraining, zero-shot) refuse stacked data.
"""

from __future__ import annotations

from dataclasses import asdict

import lightning.pytorch as pl

from selip.models import ImageEncoder
from selip.models.image_encoder import match_input_channels


def data_image_channels(module: pl.LightningModule) -> int:
    """Channels of the datamodule's images (its stacked sequences), 1 without one."""
    datamodule = getattr(module.trainer, "datamodule", None)
    return int(getattr(datamodule, "image_channels", 1))


def fit_encoder_to_data(module: pl.LightningModule, encoder: ImageEncoder) -> None:
    """Inflate a 1-channel (pretrained) stem to the datamodule's stacked sequences and
    record the encoder's settings in the hyper-parameters (call from ``setup``)."""
    match_input_channels(encoder, data_image_channels(module))
    module.hparams["image_encoder"] = asdict(encoder.config)


def require_single_channel(module: pl.LightningModule, task: str) -> None:
    """Tasks that pair one sequence with text reject stacked sequences up front."""
    if data_image_channels(module) != 1:
        raise ValueError(f"{task} pairs one sequence volume with its text; set "
                         "data.stack_sequences false (stacked channels are for the "
                         "classification and segmentation tasks)")
