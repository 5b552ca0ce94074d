"""Test callbacks for multi-process runs: record each rank's pid, fail one rank on purpose."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class RankPids(Callback):
    """Writes ``<folder>/rank<r>.pid`` when training starts on rank r."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        Path(self.folder, f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))


class RaiseOnRank(Callback):
    """Raises on rank ``rank`` only, after training step ``step``."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            raise RuntimeError(f"injected failure on rank {self.rank} at step {self.step}")
