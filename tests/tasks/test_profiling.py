"""SectionTimer, and the lookup/loss sections PretrainTask times when it is turned on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from selip.profiling import SectionTimer
from selip.tasks import PretrainTask
from selip.training.lightning_cli import training_cli
from tests.tasks.conftest import TINY_IMAGE, TINY_TEXT, tiny_overrides

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"


def _fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Pretend CUDA is in use; returns the list that counts synchronize calls."""
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: calls.append(1))
    return calls


def test_an_enabled_timer_accumulates_time_and_counts_per_section():
    timer = SectionTimer(enabled=True)
    for _ in range(2):
        with timer.section("lookup"):
            time.sleep(0.01)
    with timer.section("loss"):
        pass
    totals = timer.totals()
    assert set(totals) == {"lookup", "loss"}
    assert totals["lookup"] >= 0.02 and totals["loss"] >= 0.0
    assert timer.counts() == {"lookup": 2, "loss": 1}
    timer.reset()
    assert timer.totals() == {} and timer.counts() == {}


def test_a_block_that_raises_is_still_timed():
    timer = SectionTimer(enabled=True)
    with pytest.raises(RuntimeError), timer.section("loss"):
        raise RuntimeError("boom")
    assert timer.counts() == {"loss": 1}


def test_a_disabled_timer_records_nothing_and_never_synchronizes(monkeypatch):
    calls = _fake_cuda(monkeypatch)
    timer = SectionTimer()
    assert not timer.enabled
    with timer.section("lookup"):
        pass
    assert timer.totals() == {} and timer.counts() == {} and calls == []


def test_an_enabled_timer_synchronizes_cuda_around_the_block(monkeypatch):
    calls = _fake_cuda(monkeypatch)
    timer = SectionTimer(enabled=True)
    with timer.section("loss"):
        assert len(calls) == 1
    assert len(calls) == 2


def _batch() -> dict[str, torch.Tensor]:
    return {"image": torch.randn(4, 1, 16, 16, 16), "sequence": torch.zeros(4, dtype=torch.long),
            "input_ids": torch.randint(0, 100, (4, 6)),
            "attention_mask": torch.ones(4, 6, dtype=torch.long),
            "report_id": torch.tensor([0, 1, 1, 2])}


def test_the_task_timer_is_off_by_default_and_not_a_hyperparameter():
    task = PretrainTask(image_encoder=TINY_IMAGE, text_encoder=TINY_TEXT,  # type: ignore[arg-type]
                        embed_dim=8, kl_weight=0.0)
    task._trainer = type("T", (), {"datamodule": None})()
    assert not task.step_timer.enabled and "step_timer" not in task.hparams
    task._forward_loss(_batch())
    assert task.step_timer.totals() == {}
    task.step_timer.enabled = True
    task._forward_loss(_batch())
    assert set(task.step_timer.counts()) == {"loss"}  # CLIP: no similarity lookup


class SectionRecorder(pl.Callback):
    """Enables the task's step timer and keeps each training step's section counts."""

    def __init__(self) -> None:
        self.steps: list[tuple[dict[str, int], dict[str, float]]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        timer: Any = pl_module.step_timer
        timer.enabled = True

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        timer: Any = pl_module.step_timer
        timer.reset()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        timer: Any = pl_module.step_timer
        self.steps.append((timer.counts(), timer.totals()))


def test_a_training_step_with_the_timer_on_records_lookup_and_loss(tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=6)
    recorder = {"class_path": "tests.tasks.test_profiling.SectionRecorder"}
    cli = training_cli(["fit", "--config", str(DEMO), *tiny_overrides(manifest, tmp_path),
                        "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
                        f"--trainer.callbacks+={json.dumps(recorder)}"])
    [found] = [c for c in cli.trainer.callbacks  # type: ignore[attr-defined]
               if isinstance(c, SectionRecorder)]
    [(counts, totals)] = found.steps
    assert counts == {"lookup": 1, "loss": 1}
    assert all(seconds > 0 for seconds in totals.values())
