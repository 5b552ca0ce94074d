"""The checkpoint writer: atomic saves, and a clear error for an unreadable file."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from selip.io.checkpoints import (
    UNREADABLE_CHECKPOINT_ERRORS,
    CheckpointError,
    save_checkpoint,
)


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
        save_checkpoint(checkpoint, path)
