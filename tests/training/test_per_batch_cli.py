"""``--data.similarity.mode per_batch`` as users start it: two DDP ranks through the
installed ``selip`` console script and Lightning's own launcher, with loader worker
processes. Every trained batch's S rows (made in the workers, with no communication) must
equal a dense S over the run's texts indexed by the ids that step gathered, and the losses
must equal a ``table`` run's step for step.

The two runs are also the launcher tests' successful runs of Lightning's launcher: the
``per_batch`` one from the console script, the ``table`` one entered from Python
(``training_cli`` in ``python -c``, as a notebook or a benchmark does, where the process's
own command line could start no rank). Both must end with status 0, every step trained on
both ranks, and the final metrics."""

from __future__ import annotations

import json
import sys

import pytest

from tests.tasks.conftest import tiny_overrides
from tests.tasks.recorder import recorded
from tests.training.test_launchers import ROOT, _callback, _finish, _launch, _start

pytestmark = [pytest.mark.slow, pytest.mark.longest]
STEPS = 4


def _run(manifest, root, mode: str, *extra: str, from_python: bool = False) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    overrides = tiny_overrides(manifest, root, **{
        "--trainer.devices": "2", "--trainer.strategy": "ddp",
        "--trainer.max_steps": str(STEPS), "--data.num_workers": "1",
        "--data.similarity.mode": mode})
    args = ["fit", "--config", str(ROOT / "configs" / "demo.yaml"), *overrides,
            "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1",
            _callback("tests.tasks.recorder.SimilarityChecker", path=str(root / "s.jsonl")),
            *extra]
    code = f"from selip.training.lightning_cli import training_cli; training_cli({args!r})"
    command = [sys.executable, "-c", code] if from_python else _launch("lightning", args)
    proc, log = _start(command, root)
    output = _finish(proc, log)
    assert proc.returncode == 0, output[-4000:]
    assert "final validation metrics" in output, output[-4000:]
    return recorded(root / "s.jsonl")


def test_per_batch_rows_equal_the_dense_table_and_the_losses_equal_a_table_run(tiny_cohort,
                                                                               tmp_path):
    """One ``table`` and one ``per_batch`` run of two ranks each, with the flips off (they
    would draw differently in the two runs; S depends on the texts only)."""
    manifest = tiny_cohort(n=16)
    no_flips = ("--data.augment", json.dumps({"flip_probability": 0.0}))
    table = _run(manifest, tmp_path / "table", "table", *no_flips, from_python=True)
    per_batch = _run(manifest, tmp_path / "per_batch", "per_batch", *no_flips)
    # every step on both ranks, in both runs; per_batch's on worker-made S rows equal to
    # the dense table's
    for run in (table, per_batch):
        assert sorted((s["rank"], s["step"]) for s in run) == \
            [(r, t) for r in (0, 1) for t in range(1, STEPS + 1)]
    assert all(s["columns"] == 8 for s in per_batch)  # 2 ranks × batch 4
    assert max(s["max_error"] for s in per_batch) == 0.0, json.dumps(per_batch)
    assert all(s["max_error"] is None for s in table)
    # and the same losses as the table run, step for step
    losses = [{(s["rank"], s["step"]): s["loss"] for s in run} for run in (table, per_batch)]
    assert losses[0].keys() == losses[1].keys() and len(losses[0]) == 2 * STEPS
    for key, value in losses[0].items():
        assert losses[1][key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
