"""The per-step timer of ``benchmarks/gpu.py``'s variants, apart from the script so that
only its variant children import Lightning (the parent starts no training)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning.pytorch as pl
import torch


class StepRecorder(pl.Callback):
    """Per-step wall time and data wait after ``warmup`` steps; peak GPU memory; optional
    channels-last 3D inputs and a compiled image encoder."""

    def __init__(self, warmup: int, channels_last: bool, compile_encoder: bool) -> None:
        self.warmup = warmup
        self.channels_last = channels_last
        self.compile_encoder = compile_encoder
        self.steps: list[tuple[float, float, int]] = []  # (data wait, step, samples)
        self._end: float | None = None
        self._start = 0.0
        self._wait = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        encoder: Any = pl_module.model.image_encoder  # type: ignore[union-attr]
        if self.channels_last:
            encoder.to(memory_format=torch.channels_last_3d)
        if self.compile_encoder:
            encoder.compile()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last_3d)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        self._wait = now - self._end if self._end is not None else 0.0
        self._start = now

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if trainer.global_step > self.warmup:
            self.steps.append((self._wait, now - self._start, len(batch["image"])))
        self._end = now

    def summary(self) -> dict[str, Any]:
        waits = [w for w, _, _ in self.steps]
        totals = [w + s for w, s, _ in self.steps]
        samples = sum(n for _, _, n in self.steps)
        cuda = torch.cuda.is_available()
        return {"steps": len(self.steps), "samples_per_s": samples / max(sum(totals), 1e-9),
                "step_ms": 1e3 * statistics.median(totals) if totals else 0.0,
                "data_wait": sum(waits) / max(sum(totals), 1e-9),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0,
                # what the Trainer actually set, so the cudnn variant is checked, not assumed
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "device": torch.cuda.get_device_name(0) if cuda else "CPU"}
