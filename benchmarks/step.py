"""Step profile: where the time of a pretraining step goes, once the loader is warm.

Runs short real ``selip fit`` trainings in-process (``configs/demo.yaml`` and the model of
``configs/pretrain.yaml``, on a generated demo cohort whose preprocessing cache is filled
first, as ``selip prepare`` does) and splits each training step into

* data wait: from the end of the previous batch to the start of this one, as
  ``selip.training.callbacks.DataWaitMonitor`` measures it for ``perf/data_fraction``: the
  loader, Lightning's bookkeeping between steps, and the batch transfer, which includes
  the datamodule's batched on-device augmentation (``on_after_batch_transfer``; reported
  on its own as "of which transfer + augmentation"),
* lookup: the report-similarity lookup ``S[ids, all_ids]`` (``PretrainTask.step_timer``),
* loss: the forward loss computation (``selip_loss_local`` and the positives),
* forward/backward/optimiser: the rest of the step (both encoders forward, every backward,
  the optimiser step, Lightning's per-step logging).

Shares are of the whole iteration (data wait + step). The first ``--warmup`` steps are
left out (the first one waits for the loader's workers to start). Target: data wait +
lookup below 5 %.

    .venv/bin/python benchmarks/step.py                        # demo and paper-scale
    .venv/bin/python benchmarks/step.py --configs demo --steps 10
    .venv/bin/python benchmarks/step.py --configs paper --paper-shape 32 224 224  # full shape
    .venv/bin/python benchmarks/step.py --configs demo --similarity_modes table per_batch

With ``per_batch`` the loader workers compute each batch's S rows, so their cost
is inside the data wait and the lookup is zero: the target is the same sum.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from selip.cli import main as selip_main
from selip.data.datamodule import SelipDataModule
from selip.demo import generate_demo_cohort
from selip.profiling import SectionTimer
from selip.training.last_checkpoint import LastCheckpoint
from selip.training.lightning_cli import SelipCLI

ROOT = Path(__file__).resolve().parents[1]
SEQUENCES_PER_EXAM = 5  # the demo cohort: t1, t2, flair, dwi, adc; one pair per sequence
PAPER_SHAPE = (32, 224, 224)  # configs/pretrain.yaml, voxels (D, H, W)
PAPER_SPACING = (3.0, 1.0, 1.0)  # mm


@dataclass
class StepRecord:
    """Seconds spent in one training step's parts."""

    data_wait: float
    transfer: float  # part of data_wait: batch_to_device, with the batched augmentation
    step: float
    lookup: float
    loss: float


@dataclass
class Setting:
    """One profiled configuration."""

    name: str
    config: str
    batch: int
    steps: int
    overrides: list[str] = field(default_factory=list)
    note: str = ""


def _timer(pl_module: pl.LightningModule) -> SectionTimer:
    timer = getattr(pl_module, "step_timer", None)
    if not isinstance(timer, SectionTimer):
        raise TypeError(f"{type(pl_module).__name__} has no step_timer (PretrainTask has)")
    return timer


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepProfiler(pl.Callback):
    """Turns on ``pl_module.step_timer`` and records a :class:`StepRecord` per step.

    Also times the strategy's ``batch_to_device`` (which runs the datamodule's
    ``on_after_batch_transfer``: the batched augmentation) by wrapping it for the run.
    """

    def __init__(self) -> None:
        self.records: list[StepRecord] = []
        self._batch_end: float | None = None
        self._batch_start = 0.0
        self._data_wait = 0.0
        self._transfer = 0.0
        self._current_transfer = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _timer(pl_module).enabled = True
        strategy = trainer.strategy
        original = strategy.batch_to_device

        def timed(*args: Any, **kwargs: Any) -> Any:
            _synchronize()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _synchronize()
                self._transfer += time.perf_counter() - start

        strategy.batch_to_device = timed  # type: ignore[method-assign]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _synchronize()
        self._batch_end = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        _synchronize()
        now = time.perf_counter()
        self._data_wait = now - self._batch_end if self._batch_end is not None else 0.0
        self._current_transfer, self._transfer = self._transfer, 0.0
        self._batch_start = now
        _timer(pl_module).reset()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        _synchronize()
        now = time.perf_counter()
        sections = _timer(pl_module).totals()
        self.records.append(StepRecord(self._data_wait, self._current_transfer,
                                       now - self._batch_start, sections.get("lookup", 0.0),
                                       sections.get("loss", 0.0)))
        self._batch_end = now

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _timer(pl_module).enabled = False
        trainer.strategy.__dict__.pop("batch_to_device", None)  # the class's method again


def subset_manifest(manifest: Path, exams: int, name: str) -> Path:
    """The first ``exams`` rows of ``manifest``, written beside it (same relative paths)."""
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = [row for _, row in zip(range(exams), reader, strict=False)]
    path = manifest.parent / name
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def exams_needed(batch: int, steps: int) -> int:
    """Exams whose pairs fill ``steps`` full batches (all exams go to the train split)."""
    return math.ceil(batch * steps / SEQUENCES_PER_EXAM)


def profile(setting: Setting, manifest: Path, root: Path, warmup: int) -> list[StepRecord]:
    """Prepare the cache, train ``warmup + steps`` steps; returns the measured records."""
    total = warmup + setting.steps
    common = ["--config", str(ROOT / "configs" / setting.config),
              "--data.manifest", str(manifest), "--data.cache_dir", str(root / "cache"),
              "--data.batch_size", str(setting.batch), "--data.num_workers", "2",
              "--data.val_fraction", "0.0", "--data.test_fraction", "0.0",
              "--data.progress", "false", *setting.overrides]
    started = time.perf_counter()
    if selip_main(["prepare", *common]) != 0:
        raise RuntimeError(f"selip prepare failed for {setting.name}")
    print(f"[{setting.name}] cache prepared in {time.perf_counter() - started:.1f} s",
          flush=True)
    trainer_args = [
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
        "--trainer.precision", "32", "--trainer.num_nodes", "1",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(total),
        "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root / "runs"),
        "--trainer.logger.init_args.save_dir", str(root / "runs"),
        "--trainer.logger.init_args.name", setting.name]
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = SelipCLI(model_class=pl.LightningModule, datamodule_class=SelipDataModule,
                       subclass_mode_model=True, args=[*common, *trainer_args], run=False)
    finally:
        sys.argv = saved
    trainer = cli.trainer
    # last.ckpt at the end of the epoch happens after the measured steps: skipped to save
    # time (hundreds of MB at paper scale). Every callback that runs inside a step stays.
    trainer.callbacks = [c for c in trainer.callbacks  # type: ignore[attr-defined]
                         if not isinstance(c, LastCheckpoint)]
    profiler = StepProfiler()
    trainer.callbacks.append(profiler)  # type: ignore[attr-defined]
    started = time.perf_counter()
    trainer.fit(cli.model, datamodule=cli.datamodule)
    records = profiler.records
    print(f"[{setting.name}] {len(records)} steps in {time.perf_counter() - started:.1f} s; "
          "per step (ms, data wait [of which transfer+augment]/step/lookup/loss): " + ", ".join(
              f"{r.data_wait * 1e3:.0f} [{r.transfer * 1e3:.0f}]/{r.step * 1e3:.0f}/"
              f"{r.lookup * 1e3:.1f}/{r.loss * 1e3:.1f}" for r in records), flush=True)
    if len(records) < total:
        raise RuntimeError(f"{setting.name}: only {len(records)} of {total} steps ran; "
                           "use more --exams")
    return records[warmup:]


def table_row(setting: Setting, records: list[StepRecord]) -> str:
    """One Markdown row: mean iteration time and the share of each part."""
    data = statistics.mean(r.data_wait for r in records)
    transfer = statistics.mean(r.transfer for r in records)
    step = statistics.mean(r.step for r in records)
    lookup = statistics.mean(r.lookup for r in records)
    loss = statistics.mean(r.loss for r in records)
    whole = data + step
    rest = step - lookup - loss

    def share(x: float) -> str:
        return f"{100 * x / whole:.2f}"

    target = "met" if (data + lookup) / whole < 0.05 else "NOT met"
    return (f"| {setting.name} | {setting.batch} | {len(records)} | {whole * 1e3:.0f} | "
            f"{share(data)} | {share(transfer)} | {share(lookup)} | {share(rest)} | "
            f"{share(loss)} | {share(data + lookup)} ({target}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=("demo", "paper"),
                        default=["demo", "paper"])
    parser.add_argument("--steps", type=int, default=None,
                        help="measured steps per config, after the warm-up (default: 10 for "
                             "demo, 3 for paper-scale, whose steps take ~20 s on 2 CPU cores)")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out at the start")
    parser.add_argument("--paper-batch", type=int, default=4)
    parser.add_argument("--paper-shape", type=int, nargs=3, default=[16, 112, 112],
                        metavar=("D", "H", "W"),
                        help="paper-scale volume shape; the spacing is scaled to keep the "
                             "config's field of view (the config's own: 32 224 224)")
    parser.add_argument("--similarity_modes", nargs="+", default=["auto"],
                        choices=("auto", "table", "per_batch"),
                        help="data.similarity.mode of each run, side by side")
    parser.add_argument("--exams", type=int, default=None,
                        help="demo cohort size (default: just enough for the demo steps)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    settings: list[Setting] = []
    if "demo" in args.configs:
        settings.append(Setting("demo", "demo.yaml", 32, args.steps or 10,
                                note="configs/demo.yaml as is (ResNet-10 w16, 64³ at 3 mm)"))
    if "paper" in args.configs:
        shape = tuple(args.paper_shape)
        spacing = tuple(s * n / m for s, n, m in zip(PAPER_SPACING, PAPER_SHAPE, shape,
                                                     strict=True))
        note = (f"configs/pretrain.yaml's model (ResNet-50 w64, anisotropic stem, MiniLM "
                f"CLS, 512-d) on CPU, fp32, batch {args.paper_batch}")
        overrides = []
        if shape != PAPER_SHAPE:
            overrides = ["--data.shape", str(list(shape)), "--data.spacing", str(list(spacing))]
            note += (f"; volumes REDUCED to {list(shape)} at {[round(s, 2) for s in spacing]} mm "
                     f"(same field of view) from {list(PAPER_SHAPE)} at {list(PAPER_SPACING)} "
                     "mm, whose step is far above 20 s on this CPU")
        settings.append(Setting("paper-scale", "pretrain.yaml", args.paper_batch,
                                args.steps or 3, overrides, note))

    if args.similarity_modes != ["auto"]:
        settings = [Setting(f"{s.name}-{mode}", s.config, s.batch, s.steps,
                            [*s.overrides, "--data.similarity.mode", mode], s.note)
                    for s in settings for mode in args.similarity_modes]
    need = max(exams_needed(s.batch, args.warmup + s.steps) for s in settings)
    exams = args.exams if args.exams is not None else need
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="selip_step_") as tmp:
        root = Path(tmp)
        manifest = generate_demo_cohort(root / "demo", num_exams=exams, progress=False)
        print(f"demo cohort: {exams} exams in {time.perf_counter() - started:.1f} s",
              flush=True)
        for setting in settings:
            own = exams_needed(setting.batch, args.warmup + setting.steps)
            # the paper-scale run needs few pairs: the first exams of the same cohort
            used = manifest if own >= exams else subset_manifest(
                manifest, own, f"manifest_{setting.name}.csv")
            records = profile(setting, used, root, args.warmup)
            rows.append(table_row(setting, records))

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"\nmachine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {device}, "
          f"trainer on cpu, precision 32, data.num_workers 2")
    print(f"cohort: {exams} demo exams (all in the train split), cache filled before training; "
          f"first {args.warmup} steps of each run left out")
    for setting in settings:
        print(f"  {setting.name}: {setting.note}")
    print("\nShares are of the whole iteration (data wait + step); loss = forward loss only "
          "(its backward is in forward/backward); means over the measured steps.\n")
    print("| config | batch | measured steps | step ms (incl. data wait) | data wait % | "
          "of which transfer + augmentation % | lookup % | forward/backward/optimiser % | "
          "loss % | data wait + lookup % (target < 5 %) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ntotal runtime {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
