"""Checkpoint files: a reproducibility record, and safe loading.

Every checkpoint carries ``checkpoint["selip"]``: selip version, git commit (when the
code runs from a git checkout), the full resolved config (YAML text), the
similarity-table key and a sha256 of the manifest. Only plain types are stored, so
``torch.load(..., weights_only=True)`` reads it. No Lightning here: the tasks, the CLI
and the checkpoint writer (:mod:`selip.training.checkpointing`) all read through it.
"""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from selip._version import __version__
from selip.io.atomic import atomic_files
from selip.io.fingerprint import sha256_file

#: What reading a truncated, corrupt or foreign file as a checkpoint raises.
UNREADABLE_CHECKPOINT_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError)


class CheckpointError(ValueError):
    """A file that is not a readable selip checkpoint."""


def git_commit() -> str | None:
    """The commit of the selip source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def add_reproducibility_record(checkpoint: dict[str, Any], run_config: str | None,
                               similarity_key: str | None, manifest: Path | None) -> None:
    """Store the record under ``checkpoint["selip"]``."""
    manifest_hash = None
    if manifest is not None and Path(manifest).is_file():
        manifest_hash = sha256_file(manifest)
    checkpoint["selip"] = {
        "version": __version__,
        "git_commit": git_commit(),
        "config": run_config,
        "similarity_key": similarity_key,
        "manifest": str(manifest) if manifest is not None else None,
        "manifest_sha256": manifest_hash,
    }


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename: a crash or a
    kill mid-save never leaves a truncated file at ``path``, which keeps the previous save
    or none. Temporaries left by a writer killed mid-save are reclaimed first (one process
    writes a given checkpoint at a time)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    with atomic_files(target) as (tmp,):
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a selip checkpoint safely (``weights_only=True``).

    Raises:
        CheckpointError: missing, corrupt, or not written by selip.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE_CHECKPOINT_ERRORS as err:
        raise CheckpointError(f"not a readable checkpoint: {path} ({err})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or \
            "selip" not in checkpoint:
        raise CheckpointError(f"not a selip checkpoint (no state_dict/selip record): {path}")
    return checkpoint


def pretraining_sequences(checkpoint: Mapping[str, Any], required: bool
                          ) -> dict[str, int] | None:
    """The sequence name → index map a pretraining checkpoint's sequence embedding uses.

    ``checkpoint["selip"]["sequences"]`` since selip stores it. Older checkpoints fall
    back to the run's recorded config (``checkpoint["selip"]["config"]``): its
    ``data.sequences`` list is the order the datamodule numbered the sequences in. Without
    that list (unset, the datamodule numbered the manifest's sequence columns, which the
    checkpoint does not record) or without a config, the order is unknown: None, or with
    ``required`` (the sequence embedding is on) a ValueError, since a guess would silently
    add another sequence's vector to every image.
    """
    record = checkpoint.get("selip") or {}
    stored = record.get("sequences")
    if isinstance(stored, Mapping) and stored:
        return {str(name): int(index) for name, index in stored.items()}
    config = record.get("config")
    data = (yaml.safe_load(config) or {}).get("data") if isinstance(config, str) else None
    listed = data.get("sequences") if isinstance(data, Mapping) else None
    if isinstance(listed, list) and listed:
        return {str(name).lower(): index for index, name in enumerate(listed)}
    if required:
        raise ValueError("the pretraining checkpoint records no sequence order (it predates "
                         "checkpoint['selip']['sequences'] and its config lists no "
                         "data.sequences), so its sequence embedding cannot be matched to "
                         "this run's sequences by name; store the pretraining run's order "
                         "there, e.g. {'t1': 0, 'flair': 1} for data.sequences [t1, flair]")
    return None
