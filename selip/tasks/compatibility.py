"""Does a checkpoint fit the run that reads it? Its image encoder's norm and the intensity
scaling it was trained on, against the model and the data of this run.

A norm that differs cannot load (the layers hold other tensors), so it is an error that
says which option to set; an intensity scaling that differs loads but feeds the encoder
volumes on another scale than it learnt, so it is a warning naming both schemes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.utilities import rank_zero_warn

from selip.data.description import DataDescription
from selip.data.preprocess import LEGACY_INTENSITY
from selip.models import ImageEncoderConfig
from selip.tasks.downstream import RANDOM_MODES


def recorded_intensity(checkpoint: Mapping[str, Any]) -> str | None:
    """The ``data.intensity`` a selip pretraining checkpoint was trained with: what the task
    recorded, else the recorded run config's, the percentile clip for a run recorded before
    the setting existed; None when the checkpoint records neither (written outside the CLI
    by a release before the setting)."""
    record = checkpoint.get("selip") or {}
    preprocess = record.get("preprocess")
    if isinstance(preprocess, Mapping) and "intensity" in preprocess:
        return str(preprocess["intensity"])
    if not record.get("config"):
        return None
    data = (yaml.safe_load(record["config"]) or {}).get("data") or {}
    return str(data.get("intensity", LEGACY_INTENSITY))


def recorded_intensity_of(path: str | Path) -> str | None:
    """:func:`recorded_intensity` of a checkpoint file, read lazily (memory-mapped: the
    weights are not loaded)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return recorded_intensity(checkpoint) if isinstance(checkpoint, Mapping) else None


def warn_if_scaling_differs(recorded: str | None, data: DataDescription, source: str) -> None:
    """Warn when ``source``'s encoder learnt on another intensity scheme than ``data`` uses."""
    here = data.preprocess.intensity if data.preprocess is not None else None
    if recorded is None or here is None or recorded == here:
        return
    rank_zero_warn(f"{source} was trained on volumes scaled by data.intensity '{recorded}', "
                   f"but this run's data uses '{here}': the encoder sees intensities on "
                   f"another scale than it learnt. Set --data.intensity {recorded} to match.",
                   category=UserWarning)


def warn_if_encoder_checkpoint_scaling_differs(hparams: Mapping[str, Any],
                                               data: DataDescription) -> None:
    """:func:`warn_if_scaling_differs` for a downstream task (classification, segmentation)
    whose ``mode`` starts from its ``encoder_ckpt``'s weights."""
    path = hparams.get("encoder_ckpt")
    if path and hparams.get("mode") not in RANDOM_MODES:
        warn_if_scaling_differs(recorded_intensity_of(path), data, str(path))


def check_recorded_norm(checkpoint: Mapping[str, Any], built: ImageEncoderConfig) -> None:
    """Raise when the checkpoint's image encoder uses another norm than the one built."""
    record = (checkpoint.get("hyper_parameters") or {}).get("image_encoder")
    if not isinstance(record, Mapping):
        return
    recorded = ImageEncoderConfig.from_record(record).norm
    if recorded != built.norm:
        raise ValueError(f"the checkpoint's image encoder uses {recorded} norm but this run "
                         f"builds {built.norm} norm (checkpoints from before the norm setting "
                         f"use batch norm): set --model.init_args.image_encoder.norm "
                         f"{recorded}")
