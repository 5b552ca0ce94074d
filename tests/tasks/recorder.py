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
                 signal_name: str = "SIGUSR1", signal_group: bool = False) -> None:
        self.path = path
        self.signal_after_step = signal_after_step
        self.signal_name = signal_name
        self.signal_group = signal_group  # the whole process group, loader workers too

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": trainer.global_step, "rank": trainer.global_rank,
                                     "ids": batch["sample_id"].tolist()}) + "\n")
        if trainer.global_step == self.signal_after_step:
            signum = signal.Signals[self.signal_name]
            if self.signal_group:  # as scancel, a terminal or `timeout` deliver it
                os.killpg(os.getpgid(0), signum)
            else:
                os.kill(os.getpid(), signum)


def recorded(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path) as handle:
        return [json.loads(line) for line in handle]


class SimilarityChecker(Callback):
    """Under ``similarity_mode: per_batch``: compares every training batch's worker-made S
    rows with a dense S computed here over the datamodule's texts, against the ids this
    step gathered; appends ``{"step", "rank", "loss", "max_error", "columns"}`` per batch
    to ``path`` (``max_error`` null when the batch carries no rows: table mode)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dense: Any = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        import torch

        from selip.distributed import gather_no_grad
        from selip.similarity.engine import SimilarityEngine

        datamodule: Any = trainer.datamodule  # type: ignore[attr-defined]
        if self.dense is None:
            texts = datamodule.report_table.texts
            engine = SimilarityEngine(datamodule.similarity)
            self.dense = torch.from_numpy(engine.matrix(texts).astype("float16")).float()
        ids = batch["report_id"].cpu()
        gathered = gather_no_grad(batch["report_id"]).cpu()
        error = None
        if "similarity_bits" in batch:
            rows = batch["similarity_bits"].cpu().view(torch.float16).float()
            error = float((rows - self.dense[ids][:, gathered]).abs().max())
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": trainer.global_step, "rank": trainer.global_rank,
                                     "loss": float(outputs["loss"]), "max_error": error,
                                     "columns": len(gathered)}) + "\n")
