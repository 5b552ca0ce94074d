"""A test callback: records the sample ids of every trained batch, and can send the
process a signal after a given step (to exercise preemption in-process)."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class SampleRecorder(Callback):
    """Appends ``{"step": global step, "rank": r, "ids": [...]}`` per trained batch to
    ``path`` (one line per rank and batch)."""

    def __init__(self, path: str, signal_after_step: int = -1,
                 signal_name: str = "SIGUSR1") -> None:
        self.path = path
        self.signal_after_step = signal_after_step
        self.signal_name = signal_name

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": trainer.global_step, "rank": trainer.global_rank,
                                     "ids": batch["sample_id"].tolist()}) + "\n")
        if trainer.global_step == self.signal_after_step:
            os.kill(os.getpid(), signal.Signals[self.signal_name])


def recorded(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path) as handle:
        return [json.loads(line) for line in handle]
