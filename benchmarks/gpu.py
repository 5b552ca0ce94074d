"""GPU figures: the paper-scale pretraining config for a few hundred steps per variant.

One prepared run for a lent GPU machine (see benchmarks/RESULTS.md): generates a demo
cohort, fills the preprocessing cache at the paper's spacing and shape, then trains
``configs/pretrain.yaml`` (3D ResNet-50, MiniLM, batch 64, 32 × 224 × 224) on one GPU
with ``16-mixed`` and ``bf16-mixed``, optionally ``torch.compile`` of the image encoder and
channels-last 3D, and prints samples/s, peak GPU memory and the data-wait share per
variant, measured after warm-up steps.

    python benchmarks/gpu.py                       # on the GPU machine (about 8 minutes)
    python benchmarks/gpu.py --cpu_smoke           # the same code path on a CPU, tiny
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from selip.cli import main as selip_main
from selip.data.demo import generate_demo_cohort
from selip.lightning_cli import training_cli


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

    def summary(self) -> dict[str, float]:
        waits = [w for w, _, _ in self.steps]
        totals = [w + s for w, s, _ in self.steps]
        samples = sum(n for _, _, n in self.steps)
        memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0
        return {"steps": len(self.steps), "samples_per_s": samples / max(sum(totals), 1e-9),
                "step_ms": 1e3 * statistics.median(totals) if totals else 0.0,
                "data_wait": sum(waits) / max(sum(totals), 1e-9), "peak_gib": memory}


def run_variant(name: str, precision: str, args: argparse.Namespace, manifest: Path,
                cache: Path, root: Path, channels_last: bool = False,
                compile_encoder: bool = False) -> dict[str, Any]:
    recorder = StepRecorder(args.warmup, channels_last, compile_encoder)
    overrides = [*_common(args, manifest, cache, root),
                 "--trainer.precision", precision,
                 "--trainer.max_steps", str(args.steps + args.warmup),
                 "--trainer.logger.init_args.name", name]
    started = time.perf_counter()
    cli = training_cli(["fit", "--config", "configs/pretrain.yaml", *overrides],
                       callbacks=[recorder])
    del cli
    result = {"variant": name, **recorder.summary(),
              "seconds": round(time.perf_counter() - started, 1)}
    print(f"  {name}: {result}", flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _common(args: argparse.Namespace, manifest: Path, cache: Path, root: Path) -> list[str]:
    options = ["--data.manifest", str(manifest), "--data.cache_dir", str(cache),
               "--data.num_workers", str(args.workers), "--data.batch_size", str(args.batch),
               "--trainer.devices", "1", "--trainer.strategy", "auto",
               "--trainer.num_nodes", "1", "--trainer.limit_val_batches", "0",
               "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
               "--trainer.log_every_n_steps", "10",
               "--trainer.logger.init_args.save_dir", str(root / "runs")]
    if args.cpu_smoke:
        options += ["--trainer.accelerator", "cpu", "--data.shape", "[8, 32, 32]",
                    "--model.init_args.image_encoder",
                    '{"depth": 10, "width": 8, "anisotropic_stem": true}']
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=120)
    parser.add_argument("--steps", type=int, default=200, help="measured steps per variant")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--variants", nargs="+",
                        default=["16-mixed", "bf16-mixed", "16-mixed+channels_last",
                                 "16-mixed+compile"])
    parser.add_argument("--cpu_smoke", action="store_true")
    args = parser.parse_args()
    if args.cpu_smoke:
        args.exams, args.steps, args.warmup, args.batch, args.workers = 12, 3, 1, 4, 1
        args.variants = ["bf16-mixed", "bf16-mixed+channels_last"]
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device: run on the GPU machine, or use --cpu_smoke")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"device {device}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{args.workers} loader workers, batch {args.batch}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = generate_demo_cohort(root / "demo", num_exams=args.exams, progress=False)
        cache = root / "cache"
        started = time.perf_counter()
        prepare = ["prepare", "--config", "configs/pretrain.yaml", *_common(
            args, manifest, cache, root)[:8]]
        if args.cpu_smoke:
            prepare += ["--data.shape", "[8, 32, 32]"]
        if selip_main(prepare) != 0:
            sys.exit("selip prepare failed")
        print(f"cache filled in {time.perf_counter() - started:.0f} s", flush=True)
        results = []
        for variant in args.variants:
            precision, *flags = variant.split("+")
            results.append(run_variant(variant, precision, args, manifest, cache, root,
                                       channels_last="channels_last" in flags,
                                       compile_encoder="compile" in flags))
    print(f"\n{device}: configs/pretrain.yaml, batch {args.batch}, "
          f"{args.steps} measured steps after {args.warmup} warm-up steps\n")
    print("| variant | samples/s | median step | data wait share | peak GPU memory |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['variant']} | {r['samples_per_s']:.1f} | {r['step_ms']:.0f} ms | "
              f"{r['data_wait']:.1%} | {r['peak_gib']:.1f} GiB |")


if __name__ == "__main__":
    main()
