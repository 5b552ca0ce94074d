"""Training callbacks: throughput and data-loading time vs step time."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


class ThroughputMonitor(pl.Callback):
    """Logs ``perf/samples_per_second``, ``perf/data_time``, ``perf/step_time`` and
    ``perf/data_fraction`` (the share of wall time spent waiting for the loader; near 0
    means the accelerator never waits for data)."""

    def __init__(self) -> None:
        self._batch_end: float | None = None
        self._batch_start = 0.0
        self._data_time = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batch_end = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        self._data_time = now - self._batch_end if self._batch_end is not None else 0.0
        self._batch_start = now

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        step_time = now - self._batch_start
        total = step_time + self._data_time
        size = len(batch["image"]) * trainer.world_size
        pl_module.log_dict({"perf/samples_per_second": size / max(total, 1e-9),
                            "perf/data_time": self._data_time, "perf/step_time": step_time,
                            "perf/data_fraction": self._data_time / max(total, 1e-9)},
                           on_step=True, on_epoch=False, batch_size=len(batch["image"]))
        self._batch_end = now
