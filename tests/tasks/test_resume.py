"""Preemption and resume: a run stopped by a signal, or killed, finishes from its last
checkpoint with the expected steps, the same sample order and each step logged once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from selip.cli import PREEMPTED_EXIT_CODE, main
from tests.conftest import make_tiny_cohort
from tests.tasks.conftest import ROOT, tiny_overrides
from tests.tasks.recorder import recorded

DEMO = str(ROOT / "configs" / "demo.yaml")
EPOCHS = 3


def _args(manifest: Path, root: Path, record: Path, signal_after_step: int = -1,
          signal_name: str = "SIGUSR1", signal_group: bool = False, **extra: object
          ) -> list[str]:
    recorder = {"class_path": "tests.tasks.recorder.SampleRecorder",
                "init_args": {"path": str(record), "signal_after_step": signal_after_step,
                              "signal_name": signal_name, "signal_group": signal_group}}
    return ["fit", "--config", DEMO, *tiny_overrides(manifest, root, **{
        "--trainer.max_epochs": EPOCHS, "--trainer.log_every_n_steps": 1,
        "--data.similarity": "paper", "--data.val_fraction": 0.2, **extra}),
        f"--trainer.callbacks+={json.dumps(recorder)}"]


def _logged_steps(run: Path, tag: str = "train/loss") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: list[int] = []
    for events in sorted(run.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            steps += [e.step for e in accumulator.Scalars(tag)]
    return steps


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, list[dict[str, Any]], int]:
    """An uninterrupted run, once for the tests that compare with it: its manifest,
    recorded batches and final step (each test writes its own runs and cache elsewhere)."""
    root = tmp_path_factory.mktemp("reference")
    manifest = make_tiny_cohort(root / "cohort", n=16)
    record = root / "reference.jsonl"
    assert main(_args(manifest, root / "reference", record)) == 0
    [last] = (root / "reference").glob("runs/demo/version_*/checkpoints/last.ckpt")
    return manifest, recorded(record), torch.load(last, weights_only=True)["global_step"]


@pytest.mark.parametrize("stop_after", ["mid_epoch", "mid_epoch_sigterm", "last_batch",
                                        "finished_epoch"])
def test_a_stopped_run_resumes_without_repeating_or_skipping_a_batch(
        reference, tmp_path, capsys, stop_after):
    manifest, batches, total_steps = reference
    steps_per_epoch = total_steps // EPOCHS
    assert len(batches) == total_steps
    root, record = tmp_path / "run", tmp_path / "run.jsonl"
    if stop_after == "finished_epoch":  # a run that ended: its epoch-end last.ckpt
        step = steps_per_epoch
        assert main(_args(manifest, root, record, **{"--trainer.max_epochs": 1})) == 0
    else:  # a signal after a step: saved, then stopped at the next step boundary
        step = steps_per_epoch if stop_after == "last_batch" else steps_per_epoch + 1
        name = "SIGTERM" if stop_after.endswith("sigterm") else "SIGUSR1"
        assert main(_args(manifest, root, record, signal_after_step=step,
                          signal_name=name)) == PREEMPTED_EXIT_CODE
        assert "resume with the same command and --ckpt_path last" in capsys.readouterr().err
    [run] = root.glob("runs/demo/version_*")
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == step
    assert main(_args(manifest, root, record, **{"--ckpt_path": "last"})) == 0
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    assert [p.name for p in root.glob("runs/demo/*")] == [run.name]  # the same run folder
    resumed = recorded(record)
    # Exactly the uninterrupted run's batches, in its order: none repeated or skipped.
    assert [b["ids"] for b in resumed] == [b["ids"] for b in batches]
    assert [b["step"] for b in resumed] == list(range(1, total_steps + 1))
    logged = _logged_steps(run)
    assert sorted(logged) == list(range(total_steps)), str(logged)  # each step logged once
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == total_steps


@pytest.mark.slow
def test_sigkill_at_any_moment_resumes_from_the_last_periodic_checkpoint(reference, tmp_path):
    manifest, batches, total_steps = reference
    root, record = tmp_path / "run", tmp_path / "run.jsonl"
    args = _args(manifest, root, record, **{"--last_checkpoint.every_n_steps": 2})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "selip.cli", *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        done = recorded(record) if record.exists() else []
        if len(done) >= total_steps // 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = len(recorded(record))
    [run] = root.glob("runs/demo/version_*")
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 2 <= saved <= killed_at and saved % 2 == 0
    # A kill that lands during a save leaves its temporary file (nothing can remove it in
    # a SIGKILLed process), never a half-written last.ckpt: the file read above is whole,
    # and the resumed run's first save removes the stale temporary file.
    assert main(_args(manifest, root, record, **{"--ckpt_path": "last"})) == 0
    assert not list(run.glob("checkpoints/.*.tmp"))
    resumed = recorded(record)[killed_at:]
    # The resumed run repeats only the steps after the last checkpoint, in the same order.
    assert [b["ids"] for b in resumed] == [b["ids"] for b in batches[saved:]]
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == total_steps


def test_last_with_nothing_to_resume_starts_a_new_run(tiny_cohort, tmp_path, capsys):
    manifest = tiny_cohort(n=8)
    args = _args(manifest, tmp_path, tmp_path / "r.jsonl", **{"--ckpt_path": "last",
                                                              "--trainer.max_epochs": 1})
    assert main(args) == 0
    assert "starting a new run" in capsys.readouterr().out


def test_a_truncated_checkpoint_is_named_in_a_clear_error(pretrained, tmp_path, capsys):
    manifest, checkpoint = pretrained
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    args = _args(manifest, tmp_path, tmp_path / "r.jsonl", **{"--ckpt_path": str(broken)})
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"not a readable checkpoint: {broken}" in err and "Traceback" not in err
    assert main(_args(manifest, tmp_path, tmp_path / "r.jsonl",
                      **{"--ckpt_path": str(tmp_path / "missing.ckpt")})) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1"])
def test_a_signal_to_the_whole_process_group_saves_and_stops_cleanly(tiny_cohort, tmp_path,
                                                                     name):
    """scancel, a preempting scheduler, `timeout` or `kill -- -PGID` signal every process
    of the job, the data loader's workers too: the run must still save last.ckpt at the
    step boundary and stop with the preemption exit code and its one-line message, not die
    with a worker-crash traceback."""
    manifest = tiny_cohort(n=16)
    root, record = tmp_path / "run", tmp_path / "run.jsonl"
    args = _args(manifest, root, record, signal_after_step=3, signal_name=name,
                 signal_group=True, **{"--data.num_workers": 2})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "selip.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300,
                          start_new_session=True)  # its own group: the signal spares pytest
    assert done.returncode == PREEMPTED_EXIT_CODE, done.stderr[-3000:]
    assert "resume with the same command and --ckpt_path last" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [run] = root.glob("runs/demo/version_*")
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3
