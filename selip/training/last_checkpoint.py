"""``last.ckpt``: always current, so a run can be resumed after preemption or a crash.

This callback is the one writer of ``<checkpoints>/last.ckpt``: at the end of every
training epoch, at the end of training, every few minutes, and on a signal — after
which it stops the run. (Lightning's ``ModelCheckpoint(save_last=True)`` only refreshes
``last.ckpt`` when a new best checkpoint is saved, so it goes stale; selip's configs leave
``save_last`` off.)

Clusters end jobs with a signal: SLURM sends ``SIGUSR1`` ahead of the time limit when
the job asks for it (``#SBATCH --signal=SIGUSR1@90``) and ``SIGTERM`` on preemption or
``scontrol requeue``. The signal handler only sets a flag; the checkpoint is written
after the step in progress (``on_train_batch_end``, where Lightning's loop restore expects
it), every rank agreeing through one all-reduce, and the run stops before the next step
(``on_train_batch_start``), once the saved step's metrics are logged — so a resumed run
logs every step exactly once. Saving inside the handler, as Lightning's built-in SLURM
handler does, can interleave a barrier with a DDP all-reduce and writes a half-finished
step. On SLURM the job then requeues itself and resumes with ``--ckpt_path last``.

The same boundary writes ``last.ckpt`` every ``every_minutes`` minutes (and/or
``every_n_steps`` steps), so a ``SIGKILL`` — a dead node, an out-of-memory kill — loses
at most that much work. Writes go through :class:`~selip.training.checkpointing.
AtomicCheckpointIO`: a kill during a save leaves the previous ``last.ckpt`` whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

LAST_CHECKPOINT = "last.ckpt"


class Preempted(BaseException):
    """Training stopped on a signal after saving ``checkpoint``; ``requeued`` when the
    SLURM job was put back in the queue. A BaseException so that no ``except Exception``
    in user code swallows it; selip's CLI turns it into a message and an exit code."""

    def __init__(self, signal_name: str, checkpoint: Path, requeued: bool) -> None:
        super().__init__(f"stopped on {signal_name}; checkpoint saved to {checkpoint}")
        self.signal_name = signal_name
        self.checkpoint = checkpoint
        self.requeued = requeued


def slurm_job_id() -> str | None:
    """The SLURM job id to requeue (``<array job>_<task>`` for array jobs), or None."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def checkpoint_dir(trainer: pl.Trainer) -> Path:
    """Where ``last.ckpt`` goes: the ModelCheckpoint's folder, else ``<log dir>/checkpoints``."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"


_NO_SIGNAL, _PERIODIC, _STOP = 0, 1, 2


class LastCheckpoint(Callback):
    """Keeps ``last.ckpt`` current and saves-and-stops on a signal (module docstring).

    Args:
        signals: signals that mean "save and stop" (names, e.g. ``SIGUSR1``).
        requeue_signal: after this one, requeue the SLURM job (``scontrol requeue``); after
            the others (``SIGTERM``: SLURM is already preempting or cancelling the job) only
            save and stop.
        every_minutes: write ``last.ckpt`` this often (0: never on a timer).
        every_n_steps: write ``last.ckpt`` every this many optimiser steps (0: never).
    """

    def __init__(self, signals: list[str] | None = None, requeue_signal: str = "SIGUSR1",
                 every_minutes: float = 30.0, every_n_steps: int = 0) -> None:
        names = signals if signals is not None else ["SIGUSR1", "SIGTERM"]
        self.signals = [_signal(name) for name in names]
        self.requeue_signal = _signal(requeue_signal)
        if every_minutes < 0 or every_n_steps < 0:
            raise ValueError("last_checkpoint.every_minutes and every_n_steps must be >= 0")
        self.every_minutes = every_minutes
        self.every_n_steps = every_n_steps
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._last_save = time.monotonic()
        self._last_saved_step = -1
        self._stop_after: Path | None = None  # saved; stop at the next boundary

    @property
    def state_key(self) -> str:
        return "selip.LastCheckpoint"

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                # Two writers of last.ckpt would race, and ModelCheckpoint's goes stale.
                rank_zero_warn("ModelCheckpoint(save_last=...) is ignored: selip's "
                               "LastCheckpoint keeps last.ckpt current")
                callback.save_last = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Installed here, after Lightning registers its own handlers (just before the fit
        # loop), so ours replace them: Lightning's SIGTERM handler would otherwise abort
        # the run without a checkpoint, and its SLURM SIGUSR1 handler saves mid-step.
        self.received = None
        self._stop_after = None
        self._last_save = time.monotonic()
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled in the main thread
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous = {}

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._restore_handlers()

    # -- the step boundary --------------------------------------------------------------
    def _local_decision(self, trainer: pl.Trainer) -> int:
        if self.received is not None:
            return _STOP
        step = trainer.global_step
        if (self.every_n_steps and step > 0 and step % self.every_n_steps == 0
                and step != self._last_saved_step):
            return _PERIODIC
        if self.every_minutes and time.monotonic() - self._last_save >= 60 * self.every_minutes:
            return _PERIODIC
        return _NO_SIGNAL

    # Saves happen where Lightning's loop restore expects them (after a step, at the end
    # of an epoch or of training); a requested stop happens at the next boundary, once
    # the saved step's metrics have been logged, so a resumed run logs each step once.
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # mid-accumulation: the accumulated gradients are not in a checkpoint
        self._at_step_boundary(trainer, pl_module, self._local_decision(trainer))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._stop_after is not None:
            self._stop(trainer, self._stop_after)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_after is None:
            self._at_step_boundary(trainer, pl_module,
                                   max(self._local_decision(trainer), _PERIODIC))
        if self._stop_after is not None:
            self._stop(trainer, self._stop_after)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()
        if trainer.global_step != self._last_saved_step:  # e.g. max_steps hit mid-epoch
            trainer.save_checkpoint(checkpoint_dir(trainer) / LAST_CHECKPOINT, weights_only=False)
            self._last_saved_step = trainer.global_step

    def _at_step_boundary(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                          decision: int) -> None:
        """Save (and plan the stop) when this or any other rank wants to: all ranks must
        call ``save_checkpoint`` at the same step."""
        if trainer.world_size > 1:
            flag = torch.tensor(decision, device=pl_module.device)
            decision = int(trainer.strategy.reduce(flag, reduce_op="max"))
        if decision == _NO_SIGNAL:
            return
        path = checkpoint_dir(trainer) / LAST_CHECKPOINT
        if trainer.global_step != self._last_saved_step:  # else it is on disk already
            trainer.save_checkpoint(path, weights_only=False)  # full state, and no log line
            self._last_saved_step = trainer.global_step
        self._last_save = time.monotonic()
        if decision == _STOP:
            self._stop_after = path

    def _stop(self, trainer: pl.Trainer, path: Path) -> None:
        for logger in trainer.loggers:  # the logged steps must survive the kill that follows
            logger.save()
        received = self.received or self.requeue_signal  # another rank got the signal
        requeued = False
        job = slurm_job_id()
        if received == self.requeue_signal and job is not None:
            requeued = True
            if trainer.is_global_zero:
                print(f"selip: saved {path} on {received.name}; requeueing SLURM job {job}",
                      flush=True)
                done = subprocess.run(["scontrol", "requeue", job], check=False)
                requeued = done.returncode == 0
        raise Preempted(received.name, path, requeued)


def _signal(name: str) -> signal.Signals:
    try:
        return signal.Signals[name.upper() if name.upper().startswith("SIG")
                              else f"SIG{name.upper()}"]
    except KeyError:
        raise ValueError(f"unknown signal {name!r} (e.g. SIGUSR1, SIGTERM)") from None
