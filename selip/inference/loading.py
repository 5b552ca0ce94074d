"""``selip.load``: a training checkpoint or an exported folder → :class:`PretrainedSelip`.

Neither path imports Lightning: a checkpoint is read with ``torch.load(weights_only=True)``
(a pickled payload is refused, never run) and an exported folder with safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from selip.data.defaults import TEXT_INPUT
from selip.data.preprocess import LEGACY_INTENSITY, PreprocessSettings
from selip.inference.model import PretrainedSelip
from selip.io.checkpoints import CheckpointError, load_checkpoint, pretraining_sequences
from selip.io.fingerprint import sha256_file
from selip.models import ImageEncoderConfig, SelipModel, TextEncoderConfig
from selip.models.selip_model import DUAL_ENCODER
from selip.similarity.settings import nest_flat_keys, preset_of
from selip.text.tokenizer import load_tokenizer

#: Files of an exported folder.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_MODEL_DIR = "text_model"
_MODEL_PREFIX = "model."
_PREPROCESS = PreprocessSettings()  # the datamodule's preprocessing defaults
#: The datamodule's defaults (from the dataclasses it takes them from), for checkpoints
#: whose recorded config leaves a key out. A recorded config holds every data setting of
#: its release, so a missing ``intensity`` means a release before the setting, whose only
#: scheme was the percentile clip.
_DATA_DEFAULTS: dict[str, Any] = {"spacing": list(_PREPROCESS.spacing),
                                  "shape": list(_PREPROCESS.shape),
                                  "intensity": LEGACY_INTENSITY,
                                  "intensity_percentiles": list(_PREPROCESS.percentiles),
                                  "first_volume_of_4d": _PREPROCESS.first_volume_of_4d,
                                  "max_length": TEXT_INPUT.max_length,
                                  "text_model": TEXT_INPUT.text_model,
                                  "similarity": TEXT_INPUT.similarity}


class InferenceError(ValueError):
    """A path that is not a usable selip checkpoint or export; the message says why."""


@dataclass
class ModelSettings:
    """Everything needed to rebuild a trained model and its inputs (``config.json``)."""

    image_encoder: dict[str, Any]
    text_encoder: dict[str, Any]
    embed_dim: int
    temperature: float
    max_logit_scale: float
    learn_logit_scale: bool
    sequence_embedding: bool
    max_sequences: int
    preprocess: dict[str, Any]
    max_length: int
    text_model: str | None
    sequences: dict[str, int] | None
    similarity: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def build_model(self, text_model_dir: Path | None = None) -> SelipModel:
        """The architecture with random weights (the text model's config from
        ``text_model_dir`` when given: an export carries its own)."""
        text = dict(self.text_encoder)
        if text_model_dir is not None:
            text.update(model=str(text_model_dir), pretrained=False, config_overrides={})
        else:  # the weights come from the checkpoint: only the architecture is needed
            text["pretrained"] = False
        return SelipModel(ImageEncoderConfig.from_record(self.image_encoder),
                          TextEncoderConfig(**text),
                          self.embed_dim, self.temperature, self.max_logit_scale,
                          self.learn_logit_scale, self.max_sequences, self.sequence_embedding)

    def preprocess_settings(self) -> PreprocessSettings:
        p = self.preprocess
        return PreprocessSettings(tuple(p["spacing"]), tuple(p["shape"]),
                                  tuple(p["intensity_percentiles"]),
                                  bool(p["first_volume_of_4d"]),
                                  p.get("intensity", LEGACY_INTENSITY))  # older exports: none


def settings_from_checkpoint(checkpoint: Mapping[str, Any], path: Path) -> ModelSettings:
    """The settings a pretraining checkpoint records (hyper-parameters and run config)."""
    hp = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hp.get("image_encoder"), Mapping) or \
            not isinstance(hp.get("text_encoder"), Mapping):
        raise InferenceError(f"{path} is a checkpoint, but not of SeLIP pretraining (no image "
                             "and text encoder settings)")
    record = checkpoint.get("selip") or {}
    config = yaml.safe_load(record.get("config") or "") or {}
    recorded, _ = nest_flat_keys(config.get("data") or {})  # records before the block
    data = {**_DATA_DEFAULTS, **recorded}
    if isinstance(record.get("preprocess"), Mapping):  # recorded by the task itself
        done = record["preprocess"]
        data.update(spacing=done["spacing"], shape=done["shape"], intensity=done["intensity"],
                    intensity_percentiles=done["percentiles"],
                    first_volume_of_4d=done["first_volume_of_4d"])
    sequence_embedding = bool(hp.get("sequence_embedding", DUAL_ENCODER.sequence_embedding))
    try:  # the recorded order, or the run config's data.sequences for older checkpoints
        sequences = pretraining_sequences(checkpoint, required=sequence_embedding)
    except ValueError as err:
        raise InferenceError(f"{path}: {err}") from None
    return ModelSettings(
        image_encoder=dict(hp["image_encoder"]), text_encoder=dict(hp["text_encoder"]),
        embed_dim=int(hp.get("embed_dim", DUAL_ENCODER.embed_dim)),
        temperature=float(hp.get("temperature", DUAL_ENCODER.temperature)),
        max_logit_scale=float(hp.get("max_logit_scale", DUAL_ENCODER.max_logit_scale)),
        learn_logit_scale=bool(hp.get("learn_logit_scale", DUAL_ENCODER.learn_logit_scale)),
        sequence_embedding=sequence_embedding,
        max_sequences=int(hp.get("max_sequences", DUAL_ENCODER.max_sequences)),
        preprocess={k: data[k] for k in ("spacing", "shape", "intensity",
                                         "intensity_percentiles", "first_volume_of_4d")},
        max_length=int(data["max_length"]), text_model=data["text_model"],
        sequences={str(k): int(v) for k, v in sequences.items()} if sequences else None,
        similarity=preset_of(data["similarity"]),
        extra={"global_step": checkpoint.get("global_step"), "epoch": checkpoint.get("epoch"),
               "version": record.get("version"), "git_commit": record.get("git_commit"),
               "manifest_sha256": record.get("manifest_sha256"),
               "similarity_key": record.get("similarity_key")})


def model_weights(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The dual encoder's weights from a pretraining checkpoint's ``state_dict``."""
    return {k[len(_MODEL_PREFIX):]: v for k, v in checkpoint["state_dict"].items()
            if k.startswith(_MODEL_PREFIX)}


def model_from_checkpoint(checkpoint: Mapping[str, Any], settings: ModelSettings,
                          path: Path) -> SelipModel:
    """The dual encoder of a checkpoint already read, its weights checked against the
    recorded architecture (:class:`InferenceError` naming ``path`` when they do not fit)."""
    model = settings.build_model()
    _load_weights(model, model_weights(checkpoint), path)
    return model


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TrainedModel:
    """A trained SeLIP model as read from a checkpoint or an export: the dual encoder
    (weights checked against the recorded architecture), the settings it was trained
    with, and where its tokenizer is."""

    model: SelipModel
    settings: ModelSettings
    source: Path
    text_model_dir: Path | None = None  # an export's own copy of the text model

    def tokenizer(self) -> Any:
        """The tokenizer the model was trained with (its added tokens included)."""
        name = str(self.text_model_dir) if self.text_model_dir is not None else (
            self.settings.text_model or self.settings.text_encoder.get("model"))
        return load_tokenizer(name, self.settings.text_encoder.get("added_tokens", []))

    @property
    def preprocess(self) -> PreprocessSettings:
        return self.settings.preprocess_settings()

    @property
    def intensity(self) -> str:
        return str(self.settings.preprocess.get("intensity", LEGACY_INTENSITY))


def read_trained_model(path: str | Path) -> TrainedModel:
    """The one reader of a trained model: a pretraining checkpoint (``.ckpt``) or a
    ``selip export`` folder, checked, on the CPU. ``selip.load``, the downstream tasks
    and zero-shot all read through here.

    Raises:
        InferenceError: missing, not a selip checkpoint or export, a pickle payload, a
            weight file that is missing, altered, or does not fit the recorded architecture.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_export(path)
    if not path.exists():
        raise InferenceError(f"not found: {path}")
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as err:
        raise InferenceError(f"{err} (a selip pretraining checkpoint or a selip export "
                             "folder is needed)") from None
    settings = settings_from_checkpoint(checkpoint, path)
    return TrainedModel(model_from_checkpoint(checkpoint, settings, path), settings, path)


def load(path: str | Path, device: str | torch.device | None = None) -> PretrainedSelip:
    """A SeLIP model from a pretraining checkpoint (``.ckpt``) or an exported folder.

    Args:
        path: ``last.ckpt`` / ``best-*.ckpt`` of ``selip fit``, or a ``selip export`` folder.
        device: where to run (default: CUDA when available, else the CPU).

    Raises:
        InferenceError: missing, not a selip checkpoint or export, a pickle payload, a
            weight file that is missing or altered (its sha256 is in ``config.json``).
    """
    trained = read_trained_model(path)
    return PretrainedSelip(trained.model, trained.tokenizer(), trained.preprocess,
                           trained.settings.max_length, trained.settings.sequences,
                           _device(device))


def read_export_settings(folder: Path) -> tuple[ModelSettings, str]:
    """The settings of an exported folder and the sha256 its weights must have."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise InferenceError(f"{folder} is not a selip export: no {CONFIG_FILE}")
    try:
        stored = json.loads(config_path.read_text())
        digest = stored.pop("weights_sha256")
        stored.pop("format", None)
        return ModelSettings(**stored), str(digest)
    except (ValueError, TypeError, KeyError) as err:
        raise InferenceError(f"{config_path} is not a selip export config ({err})") from None


def _read_export(folder: Path) -> TrainedModel:
    from safetensors.torch import load_file

    settings, digest = read_export_settings(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise InferenceError(f"{folder} is missing its weights: {WEIGHTS_FILE}")
    if sha256_file(weights_path) != digest:
        raise InferenceError(f"{weights_path} does not match the sha256 in {CONFIG_FILE}: "
                             "the weights were altered or only partly copied")
    text_dir = folder / TEXT_MODEL_DIR
    model = settings.build_model(text_dir)
    _load_weights(model, load_file(str(weights_path)), weights_path)
    return TrainedModel(model, settings, folder, text_dir)


def _load_weights(model: SelipModel, weights: Mapping[str, torch.Tensor], source: Path) -> None:
    try:
        model.load_state_dict(dict(weights))
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InferenceError(f"{source}: the weights do not fit the recorded architecture "
                             f"({first})") from None
