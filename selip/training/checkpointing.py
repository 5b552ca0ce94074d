"""The checkpoint writer: atomic saves, and a clear error for an unreadable file."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from selip.io.atomic import atomic_files
from selip.io.checkpoints import UNREADABLE_CHECKPOINT_ERRORS, CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary name in the same folder, then rename: a crash
    mid-save never leaves a truncated ``last.ckpt``."""

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Lightning's load, with a clear error naming a truncated or corrupt file."""
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except UNREADABLE_CHECKPOINT_ERRORS as err:
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
        with atomic_files(target) as (tmp,):
            torch.save(checkpoint, tmp)
