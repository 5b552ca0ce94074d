"""Checkpoints: a reproducibility record, atomic writes, safe loading.

Every checkpoint carries ``checkpoint["selip"]``: selip version, git commit (when the
code runs from a git checkout), the full resolved config (YAML text), the
similarity-table key and a sha256 of the manifest. Only plain types are stored, so
``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from selip import __version__
from selip.data.fingerprint import sha256_file


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
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as err:
        raise CheckpointError(f"not a readable checkpoint: {path} ({err})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or \
            "selip" not in checkpoint:
        raise CheckpointError(f"not a selip checkpoint (no state_dict/selip record): {path}")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary name in the same folder, then rename: a crash
    mid-save never leaves a truncated ``last.ckpt``."""

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Lightning's load, with a clear error naming a truncated or corrupt file."""
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
            raise CheckpointError(f"not a readable checkpoint: {path} ({err})") from None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # One process writes a given checkpoint at a time, so temporaries of this name are
        # left over from a writer that was killed mid-save: reclaim their space.
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are shared with the team
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
