"""Training callbacks: how long the step waits for data (not Lightning's ThroughputMonitor,
which counts FLOPs and samples; this one splits wall time into loader wait and step)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn


class DataWaitMonitor(pl.Callback):
    """Logs ``perf/samples_per_second``, ``perf/data_time``, ``perf/step_time`` and
    ``perf/data_fraction`` (the share of wall time spent waiting for the loader; near 0
    means the accelerator never waits for data).

    Args:
        warn_data_fraction: warn once when the loader's share of the last
            ``warn_window`` steps exceeds this (None: never). The first step of every
            epoch is left out (it includes starting the workers).
        warn_window: steps the warning averages over.
    """

    def __init__(self, warn_data_fraction: float | None = 0.2, warn_window: int = 50) -> None:
        if warn_data_fraction is not None and not 0 < warn_data_fraction < 1:
            raise ValueError(f"warn_data_fraction must be in (0, 1) or None, got "
                             f"{warn_data_fraction}")
        if warn_window < 1:
            raise ValueError(f"warn_window must be >= 1, got {warn_window}")
        self.warn_data_fraction = warn_data_fraction
        self._recent: deque[tuple[float, float]] = deque(maxlen=warn_window)
        self._warned = False
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
        if batch_idx > 0:
            self._recent.append((self._data_time, total))
            self._warn_if_starving()

    def _warn_if_starving(self) -> None:
        if self._warned or self.warn_data_fraction is None \
                or len(self._recent) < (self._recent.maxlen or 0):
            return
        share = sum(d for d, _ in self._recent) / max(sum(t for _, t in self._recent), 1e-9)
        if share > self.warn_data_fraction:
            self._warned = True
            rank_zero_warn(
                f"the training step waits for data: {share:.0%} of the last "
                f"{len(self._recent)} steps went to waiting for the loader "
                "(perf/data_fraction in TensorBoard). Fill the cache first (selip prepare), "
                "raise data.num_workers, keep data.cache_dir on a local disk — see "
                "docs/performance.md.", category=UserWarning)
