"""``selip export``: a pretraining checkpoint → a self-contained folder.

The folder holds ``model.safetensors`` (the dual encoder's weights), ``config.json``
(architecture, embedding size, logit scale, preprocessing, sequences, similarity preset,
the weights' sha256), ``text_model/`` (the text model's config and tokenizer files) and a
``README.md`` model card. :func:`selip.load` reads it without Lightning; the image tower
alone loads into MONAI's ResNet (see docs/using.md).
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selip.inference.loading import (
    CONFIG_FILE,
    TEXT_MODEL_DIR,
    WEIGHTS_FILE,
    InferenceError,
    ModelSettings,
    model_from_checkpoint,
    model_weights,
    settings_from_checkpoint,
)
from selip.io.checkpoints import CheckpointError, load_checkpoint
from selip.io.fingerprint import sha256_file
from selip.models import SelipModel
from selip.text.tokenizer import load_tokenizer

#: The format of ``config.json``; a later selip that changes it bumps this.
EXPORT_FORMAT = 1


def export_model(checkpoint_path: str | Path, out: str | Path) -> Path:
    """Write the export folder ``out`` from a pretraining checkpoint; returns ``out``.

    Written into a temporary sibling folder and renamed at the end: an interrupted export
    never leaves a half-written folder under ``out``.

    Raises:
        InferenceError: not a selip pretraining checkpoint, or ``out`` exists and is not
            empty.
    """
    source, target = Path(checkpoint_path).expanduser(), Path(out).expanduser()
    if target.exists() and any(target.iterdir()):
        raise InferenceError(f"{target} exists and is not empty: choose a new folder")
    try:
        checkpoint = load_checkpoint(source)
    except CheckpointError as err:
        raise InferenceError(str(err)) from None
    settings = settings_from_checkpoint(checkpoint, source)
    model = model_from_checkpoint(checkpoint, settings, source)  # weights fit, or an error
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write(staging, model, settings, checkpoint, source)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write(folder: Path, model: SelipModel, settings: ModelSettings,
           checkpoint: dict[str, Any], source: Path) -> None:
    from safetensors.torch import save_file

    weights = {k: v.detach().cpu().contiguous().clone()
               for k, v in model_weights(checkpoint).items()}
    save_file(weights, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    text_dir = folder / TEXT_MODEL_DIR
    text_encoder = model.text_encoder
    hf_config = copy.deepcopy(text_encoder.model.config)
    # the base vocabulary: selip.load grows it by the added tokens again, in order
    hf_config.vocab_size = text_encoder.base_vocabulary
    hf_config.save_pretrained(text_dir)
    tokenizer_source = settings.text_model or settings.text_encoder.get("model")
    load_tokenizer(tokenizer_source).save_pretrained(text_dir)
    stored = asdict(settings)
    stored["extra"].update(source_checkpoint=source.name,
                           logit_scale=float(model.logit_scale().detach()))
    stored.update(format=EXPORT_FORMAT, weights_sha256=sha256_file(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(stored, indent=2, default=str))
    (folder / "README.md").write_text(model_card(settings, checkpoint))


def model_card(settings: ModelSettings, checkpoint: dict[str, Any]) -> str:
    """The folder's README: what the model is, how it was trained, and its limits."""
    extra = settings.extra
    scores = _recorded_metrics(checkpoint)
    lines = [
        "# SeLIP image–text model (exported by selip)", "",
        "A 3D head-MRI image encoder and a report text encoder trained with SeLIP "
        "(similarity-enhanced contrastive language–image pretraining).", "",
        "## Use", "", "```python", "import selip", "model = selip.load(\"THIS_FOLDER\")",
        "images = model.encode_images([\"exam_flair.nii.gz\"])", "texts = model.encode_texts("
        "[\"left frontal lobe: hyperintense signal\"])", "```", "",
        "## Training", "",
        f"- optimiser steps: {extra.get('global_step')}, epochs: {extra.get('epoch')}",
        f"- training manifest sha256: {extra.get('manifest_sha256')}",
        f"- similarity: {settings.similarity} (table key {extra.get('similarity_key')})",
        f"- selip {extra.get('version')}, commit {extra.get('git_commit')}",
        f"- image encoder: {settings.image_encoder}",
        f"- text encoder: {settings.text_encoder.get('model') or 'the packaged MiniLM'} "
        f"({settings.text_encoder.get('pooling')} pooling), embedding size "
        f"{settings.embed_dim}",
        f"- preprocessing: {settings.preprocess}, text max length {settings.max_length}",
        "", "## Metrics recorded in the checkpoint", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in scores.items()] or ["- none recorded"]
    lines += ["", "## Intended use and limits", "",
              "A research model, **not for clinical use**: not validated for diagnosis or "
              "any decision about a patient. It saw only the training cohort above; scans "
              "from other scanners, protocols or populations, and reports in other styles or "
              "languages, may embed poorly. Retrieval and zero-shot scores depend on the "
              "report vocabulary it was trained with.", ""]
    return "\n".join(lines)


def _recorded_metrics(checkpoint: dict[str, Any]) -> dict[str, float]:
    """The monitored scores the checkpoint's ModelCheckpoint callbacks recorded."""
    found: dict[str, float] = {}
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, dict) and state.get("monitor") and \
                state.get("best_model_score") is not None:
            found[f"best {state['monitor']}"] = float(state["best_model_score"])
    return found
