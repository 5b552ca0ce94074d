"""GPU figures: the paper-scale pretraining config for a few hundred steps per variant.

One prepared run for a lent GPU machine (see benchmarks/RESULTS.md): generates a demo
cohort, fills the preprocessing cache at the paper's spacing and shape, then trains
``configs/pretrain.yaml`` (3D ResNet-50, MiniLM, batch 64, 32 × 224 × 224) on one GPU
with ``16-mixed``, ``16-mixed`` + ``cudnn.benchmark`` (``--trainer.benchmark true``),
``bf16-mixed``, channels-last 3D and ``torch.compile`` of the image encoder, and prints
samples/s, peak GPU memory and the data-wait share per variant, measured after warm-up
steps. Each variant runs in its own process (this script with ``--variant``), so its peak
memory holds its own model and optimiser only; a time budget skips what would not fit.

    python benchmarks/gpu.py                       # on the GPU machine (about 8 minutes)
    python benchmarks/gpu.py --cpu_smoke           # the same code path on a CPU, tiny

It ends with ``benchmarks/embed.py`` on a checkpoint a variant left (``--embed_s``): the
rate of ``selip embed`` beside the bare image tower's (its target: ≥ 90 %).

Copy into benchmarks/RESULTS.md (GPU section): the ``device ...`` line, the heading line
under it and the Markdown table at the end, with the date and the selip commit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from smoke import small_tower_options

from selip.demo import generate_demo_cohort

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "SELIP_GPU_BENCHMARK_RESULT "
FLAGS = ("channels_last", "compile", "cudnn_benchmark")
PRECISIONS = ("16-mixed", "bf16-mixed", "32", "32-true", "16-true", "bf16-true")
# Most informative first: when the budget runs out, the later ones are skipped.
GPU_VARIANTS = ["16-mixed", "16-mixed+cudnn_benchmark", "bf16-mixed",
                "16-mixed+channels_last", "16-mixed+compile"]
# Two processes cover the subprocess path, two precisions and all cheap flags on a CPU
# (bf16 autocast is slow on a CPU: once is enough).
SMOKE_VARIANTS = ["bf16-mixed", "32+channels_last+cudnn_benchmark"]


def parse_variant(variant: str) -> tuple[str, set[str]]:
    """``"16-mixed+channels_last"`` → (precision, flags); a typo fails before any run."""
    precision, *flags = variant.split("+")
    unknown = [f for f in flags if f not in FLAGS]
    if precision not in PRECISIONS or unknown:
        raise ValueError(f"bad variant {variant!r}: precision one of {PRECISIONS}, "
                         f"flags from {FLAGS}")
    return precision, set(flags)


# -- one variant, in its own process ---------------------------------------------------------
def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant in this process and return its figures. Lightning is imported
    here, in the variant's child only: the parent starts no training and needs none."""
    from step_recorder import StepRecorder

    from selip.training.lightning_cli import training_cli

    precision, flags = parse_variant(name)
    recorder = StepRecorder(args.warmup, "channels_last" in flags, "compile" in flags)
    overrides = [*_data_options(args), *_trainer_options(args),
                 "--trainer.precision", precision,
                 "--trainer.max_steps", str(args.steps + args.warmup),
                 "--trainer.logger.init_args.name", name]
    if "cudnn_benchmark" in flags:
        overrides += ["--trainer.benchmark", "true"]  # Lightning sets cudnn.benchmark
    started = time.perf_counter()
    training_cli(["fit", "--config", "configs/pretrain.yaml", *overrides], callbacks=[recorder])
    return {"variant": name, **recorder.summary(),
            "seconds": round(time.perf_counter() - started, 1)}


def _data_options(args: argparse.Namespace) -> list[str]:
    options = ["--data.manifest", str(_manifest(args)),
               "--data.cache_dir", str(args.workdir / "cache"),
               "--data.num_workers", str(args.workers), "--data.batch_size", str(args.batch)]
    if args.cpu_smoke:
        # coarse voxels: the same preprocessing path, a fraction of the resampling work
        options += ["--data.shape", "[8, 32, 32]", "--data.spacing", "[12.0, 6.0, 6.0]"]
    return options


def _trainer_options(args: argparse.Namespace) -> list[str]:
    options = ["--trainer.devices", "1", "--trainer.strategy", "auto",
               "--trainer.num_nodes", "1", "--trainer.limit_val_batches", "0",
               "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
               "--trainer.log_every_n_steps", "10",
               "--trainer.logger.init_args.save_dir", str(args.workdir / "runs")]
    if args.cpu_smoke:
        # small towers: the variants' code paths, not MiniLM under bf16 on a CPU
        options += ["--trainer.accelerator", "cpu", *small_tower_options()]
    return options


# -- the parent: data once, then one child process per variant -------------------------------
def _manifest(args: argparse.Namespace) -> Path:
    return args.workdir / "demo" / "manifest.csv"  # where generate_demo_cohort writes it


def prepare(args: argparse.Namespace, timeout: float) -> None:
    """The demo cohort and the filled cache in ``args.workdir``, shared by every variant.
    ``selip prepare`` runs in a child too: it may embed report texts on the GPU, and the
    parent should hold no CUDA context while the variants run."""
    generate_demo_cohort(args.workdir / "demo", num_exams=args.exams, progress=False)
    code, output = _run_child([sys.executable, "-m", "selip.cli", "prepare", "--config",
                               "configs/pretrain.yaml", *_data_options(args)], timeout)
    if code != 0:
        print("\n".join(output.splitlines()[-30:]))
        sys.exit(f"selip prepare failed ({'timed out' if code is None else f'exit {code}'})")


def _child_argv(variant: str, args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--variant", variant,
            "--workdir", str(args.workdir), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--batch", str(args.batch),
            "--workers", str(args.workers)]
    return argv + (["--cpu_smoke"] if args.cpu_smoke else [])


def _run_child(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit code or None on timeout, combined output). A session of its own, so a timeout
    ends the loader workers too, not just the child."""
    child = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        output, _ = child.communicate(timeout=timeout)
        return child.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        return None, output


def measure(variant: str, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Run ``variant`` in a fresh process; its result, or why there is none."""
    started = time.perf_counter()
    code, output = _run_child(_child_argv(variant, args), timeout)
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if code == 0 and lines:
        # process_s: start-up included, what the variant costs of a lent machine's time
        return {**json.loads(lines[-1][len(RESULT_PREFIX):]),
                "process_s": round(time.perf_counter() - started, 1)}
    tail = "\n".join(output.splitlines()[-30:])
    print(f"  {variant}: failed ({'timed out' if code is None else f'exit {code}'})\n{tail}",
          flush=True)
    return {"variant": variant, "error": f"timed out after {timeout:.0f} s" if code is None
            else f"exit code {code}"}


def measure_all(args: argparse.Namespace, deadline: float) -> list[dict[str, Any]]:
    results = []
    for variant in args.variants:
        left = deadline - time.monotonic()
        if left < args.min_variant_s:
            results.append({"variant": variant, "error": "skipped: time budget spent"})
            continue
        result = measure(variant, args, min(left, args.variant_timeout))
        if "error" not in result:
            print(f"  {variant}: {json.dumps(result)}", flush=True)
        results.append(result)
    return results


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    device = next((r["device"] for r in results if "device" in r), "no variant ran")
    print(f"\n{device}: configs/pretrain.yaml, batch {args.batch}, "
          f"{args.steps} measured steps after {args.warmup} warm-up steps, "
          "one process per variant\n")
    print("| variant | samples/s | median step | data wait share | peak GPU memory |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        if "error" in r:
            print(f"| {r['variant']} | {r['error']} | | | |")
        else:
            print(f"| {r['variant']} | {r['samples_per_s']:.1f} | {r['step_ms']:.0f} ms | "
                  f"{r['data_wait']:.1%} | {r['peak_gib']:.1f} GiB |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--exams", type=int, default=120)
    parser.add_argument("--steps", type=int, default=100, help="measured steps per variant")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--variants", nargs="+", default=GPU_VARIANTS)
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for the whole run; variants that would start later "
                             "are skipped")
    parser.add_argument("--variant_timeout", type=float, default=180.0)
    parser.add_argument("--min_variant_s", type=float, default=90.0,
                        help="do not start a variant with less time than this left")
    parser.add_argument("--embed_s", type=float, default=90.0,
                        help="seconds kept at the end for the selip embed figure (0: off)")
    parser.add_argument("--cpu_smoke", action="store_true")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # set in a child process
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        # one warm-up and one measured step take every code path of a variant; the
        # smoke's time is its processes' starts, not its steps (0.1-0.3 s each)
        args.exams, args.steps, args.warmup, args.batch, args.workers = 8, 1, 1, 4, 1
        args.variants = SMOKE_VARIANTS
    for variant in args.variants:
        parse_variant(variant)
    return args


def main() -> None:
    args = parse_args()
    os.chdir(REPO)  # configs/pretrain.yaml is relative
    if args.variant:  # a child: one variant, one JSON line
        print(RESULT_PREFIX + json.dumps(run_variant(args.variant, args)), flush=True)
        return
    if not args.cpu_smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on the GPU machine, or use --cpu_smoke")
    # No CUDA call in the parent: a context here would hold GPU memory all run long.
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.workers} loader workers, "
          f"batch {args.batch}, variants {' '.join(args.variants)}", flush=True)
    deadline = time.monotonic() + args.budget
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = Path(tmp)
        started = time.perf_counter()
        prepare(args, deadline - time.monotonic())
        print(f"cache filled in {time.perf_counter() - started:.0f} s", flush=True)
        results = measure_all(args, deadline - args.embed_s)
        print_table(results, args)
        if args.embed_s > 0:
            embed_figure(args, max(30.0, deadline - time.monotonic()))


def embed_figure(args: argparse.Namespace, timeout: float) -> None:
    """The embedding speed figure: ``benchmarks/embed.py`` on the checkpoint the first
    variant left, over the whole cached cohort: ``selip embed``'s rate beside the bare
    image tower's at the same batch size, and cache vs ``.nii.gz`` equality."""
    found = sorted((args.workdir / "runs").rglob("last.ckpt"))
    if not found:
        print("\nselip embed: no variant left a checkpoint to embed with")
        return
    # the smoke: the test split once (the path, not a figure); on the GPU: every volume
    split, repeats = ("test", "1") if args.cpu_smoke else ("all", "2")
    argv = [sys.executable, str(REPO / "benchmarks" / "embed.py"), "--ckpt", str(found[0]),
            "--manifest", str(_manifest(args)), "--cache_dir", str(args.workdir / "cache"),
            "--split", split, "--batch_size", str(min(args.batch, 16)), "--num_workers",
            str(args.workers), "--repeats", repeats]
    argv += ["--device", "cpu"] if args.cpu_smoke else []
    code, output = _run_child(argv, timeout)
    status = "" if code == 0 else f" ({'timed out' if code is None else f'exit {code}'})"
    print(f"\nselip embed vs the bare image tower{status}:\n" + "\n".join(
        output.splitlines()[-8 if code else -4:]))


if __name__ == "__main__":
    main()
