"""Data path benchmark: the training loader from the preprocessed cache vs on the fly.

Side by side in one run, on a demo cohort written to a temporary folder and preprocessed
as ``configs/demo.yaml`` says (its sequences, spacing and shape):

* training loader: steady-state samples/s of ``SelipDataModule.train_dataloader()`` (its
  sampler, batch size, augmentation and DataLoader settings) over (a) the warm
  preprocessed cache and (b) the same dataset with a cache that always misses, so that
  every sample loads its ``.nii.gz`` files and preprocesses them with torchio
  (``preprocess_volume``) — at 0 (main process), 1, 2 and N = ``os.cpu_count()``
  workers, then at N workers with augmentation off. Both arms draw the same
  augmentations (same seed, same order). Start-up is excluded: each run first takes one
  batch per worker, then times whole rounds of batches. The loader's augmentation is the
  left–right flip; affine, gamma and intensity run batched on the training device after
  the loader (the same for both arms), timed here separately on the CPU.
* one sample without the loader (``dataset[i]``, one torch thread as in a worker), and
  one image volume: preprocessing from NIfTI vs a cache hit.

    .venv/bin/python benchmarks/data.py [--exams N] [--batches 12] [--batch_size 32]
                                        [--workers 0 1 2 N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from timing import median_seconds
from torch.utils.data import DataLoader

from selip.data.augment import augment_batch
from selip.data.cache import Kind, VolumeCache
from selip.data.datamodule import SelipDataModule
from selip.data.dataset import PairDataset
from selip.data.prepare import fill_cache
from selip.data.preprocess import preprocess_volume
from selip.data.sampler import ResumableSampler, SampleKey
from selip.data.workers import ignore_stop_signals
from selip.demo import generate_demo_cohort

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
TARGET = 20.0  # the target: cache >= 20x faster per sample


class AlwaysMiss(VolumeCache):
    """A cache that never hits and never stores: every read builds from the source file."""

    def get_or_create(self, key: str, kind: Kind, build: Callable[[], np.ndarray],
                      out: np.ndarray | None = None) -> np.ndarray:
        """Build the array (load and preprocess the ``.nii.gz``), every time."""
        array = build()
        if out is None:
            return array
        np.copyto(out, array)
        return out


def demo_data_settings() -> dict[str, Any]:
    """Sequences, spacing, shape and text length of ``configs/demo.yaml``'s data section."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())["data"]
    return {"sequences": list(data["sequences"]), "spacing": tuple(data["spacing"]),
            "shape": tuple(data["shape"]), "max_length": int(data["max_length"])}


def samples_per_second(loader: DataLoader, batches: int) -> float:
    """Steady-state samples/s: one warm-up batch per worker, then whole rounds of batches."""
    workers = max(1, loader.num_workers)
    torch.manual_seed(0)  # the same augmentation draws in every arm
    iterator = iter(loader)
    for _ in range(workers):
        next(iterator)
    count = 0
    start = time.perf_counter()
    for _ in range(math.ceil(batches / workers) * workers):
        count += len(next(iterator)["sample_id"])
    return count / (time.perf_counter() - start)


class Ceiling(PairDataset):
    """Samples that cost nothing to make but a copy, shaped like ``template``'s: a loader
    over it measures only the DataLoader's own cost (collate, inter-process transfer)."""

    def __init__(self, template: dict[str, torch.Tensor], length: int) -> None:
        # Not PairDataset.__init__: no pairs, no cache; only what the loader touches.
        self.template, self.length, self.augment_fully = template, length, False
        self.batch_similarity = None  # no per-batch S: PairDataset.__getitems__ skips it

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int | SampleKey) -> dict[str, torch.Tensor]:
        return {key: value.clone() for key, value in self.template.items()}


def loader_rate(dm: SelipDataModule, dataset: PairDataset, workers: int, batches: int) -> float:
    """Samples/s of ``dm``'s training loader over ``dataset`` with ``workers`` workers, as
    on an accelerator run: the workers only flip, the rest is batched on the device."""
    dataset.augment_fully = False  # as on an accelerator: only the flip in the workers
    sampler = ResumableSampler(len(dataset), dm.batch_size, seed=0, positions=True)
    loader = DataLoader(dataset, batch_size=dm.batch_size, sampler=sampler, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0,
                        worker_init_fn=ignore_stop_signals if workers else None)
    return samples_per_second(loader, batches)


def per_sample_seconds(datasets: dict[str, PairDataset], samples: int,
                       repeats: int) -> dict[str, float]:
    """Median seconds of one ``dataset[i]`` (read, preprocess if uncached, augment), in the
    main process with one torch thread as in a loader worker, no DataLoader."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = {}
        for name, dataset in datasets.items():
            dataset[0]  # first-call imports and set-up

            def read_all(dataset: PairDataset = dataset) -> None:
                for index in range(samples):
                    dataset[index]

            torch.manual_seed(0)
            times[name] = median_seconds(read_all, repeats) / samples
        return times
    finally:
        torch.set_num_threads(threads)


def per_volume_seconds(dm: SelipDataModule, volumes: int, repeats: int) -> tuple[float, float]:
    """Median seconds per image volume: load + preprocess its ``.nii.gz``, and a cache hit
    (read -> float32 tensor); one torch thread."""
    pairs = dm.datasets["train"].pairs[:volumes]
    settings = dm.cache.settings
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def preprocess_all() -> None:
            for pair in pairs:
                preprocess_volume(pair.volume, settings)

        def cache_hit_all() -> None:
            for pair in pairs:
                array = dm.cache.load(pair.volume_keys[0], "image")
                assert array is not None
                torch.from_numpy(np.asarray(array, dtype=np.float32))

        return (median_seconds(preprocess_all, repeats) / len(pairs),
                median_seconds(cache_hit_all, repeats) / len(pairs))
    finally:
        torch.set_num_threads(threads)


def batch_augmentation_seconds(dm: SelipDataModule, batch_size: int, repeats: int) -> float:
    """Median seconds of the device-side batch augmentation of one training batch."""
    images = torch.rand(batch_size, 1, *dm.preprocess.shape)
    settings = dm.augment

    def augment() -> None:
        augment_batch(images, None, settings, dm.preprocess.spacing)

    augment()
    return median_seconds(augment, repeats=max(3, repeats))


def worker_counts(requested: list[int] | None) -> list[int]:
    """0, 1, 2 and the CPU count (or the requested counts), unique and sorted."""
    counts = requested if requested is not None else [0, 1, 2, os.cpu_count() or 1]
    if any(w < 0 for w in counts):
        raise SystemExit("--workers must be >= 0")
    return sorted(set(counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exams", type=int, default=None,
                        help="demo exams (default: enough for the timed batches, at least 24)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per run")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="default: configs/demo.yaml's batch size")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="loader worker counts (default: 0 1 2 and os.cpu_count())")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the per-sample times")
    args = parser.parse_args()
    if args.batch_size is None:
        args.batch_size = int(yaml.safe_load(DEMO_CONFIG.read_text())["data"]["batch_size"])
    if args.batches < 1 or args.batch_size < 1:
        raise SystemExit("--batches and --batch_size must be >= 1")
    workers = worker_counts(args.workers)
    headline = workers[-1]
    settings = demo_data_settings()
    per_exam = len(settings["sequences"])
    max_rounds = max(max(1, w) * (1 + math.ceil(args.batches / max(1, w))) for w in workers)
    needed = math.ceil(max_rounds * args.batch_size / per_exam)
    exams = args.exams if args.exams is not None else max(24, needed)
    if exams < needed:
        raise SystemExit(f"--exams {exams} is too few for {max_rounds} batches of "
                         f"{args.batch_size} in one epoch; use --exams {needed} or more")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = generate_demo_cohort(root / "demo", num_exams=exams, progress=False)
        dm = SelipDataModule(str(manifest), cache_dir=str(root / "cache"),
                             batch_size=args.batch_size, num_workers=max(1, headline),
                             val_fraction=0.0, test_fraction=0.0, similarity=None,
                             progress=False, **settings)
        dm.prepare_data()
        dm.setup("fit")
        cached = dm.datasets["train"]
        start = time.perf_counter()
        summary = fill_cache(dm.cache, cached.pairs, workers=os.cpu_count() or 1,
                             progress=False)
        fill_seconds = time.perf_counter() - start
        if summary.failures:
            raise SystemExit("cache fill failed:\n" + "\n".join(summary.failures))
        miss_root = root / "never_written"
        caches = {"cache": dm.cache, "fly": AlwaysMiss(miss_root, dm.cache.settings)}
        datasets = {(source, augmented): PairDataset(
            cached.pairs, cache, cached.input_ids, cached.attention_mask,
            cached.augment if augmented else None, with_mask=cached.with_mask)
            for source, cache in caches.items() for augmented in (True, False)}

        rows: list[tuple[int, bool, float, float]] = []
        for w, augmented in [*((w, True) for w in workers), (headline, False)]:
            rows.append((w, augmented,
                         loader_rate(dm, datasets["cache", augmented], w, args.batches),
                         loader_rate(dm, datasets["fly", augmented], w, args.batches)))
        ceiling = loader_rate(dm, Ceiling(datasets["cache", False][0], len(cached)), headline,
                              args.batches)
        in_process = per_sample_seconds({f"{s} {a}": d for (s, a), d in datasets.items()},
                                        min(len(cached), 2 * per_exam), args.repeats)
        preprocess, hit = per_volume_seconds(dm, min(len(cached), 2 * per_exam), args.repeats)
        device_side = batch_augmentation_seconds(dm, args.batch_size, args.repeats)
        assert not miss_root.exists(), "the on-the-fly arm must never read or write a cache"

    shape = "x".join(str(s) for s in settings["shape"])
    spacing = "x".join(f"{s:g}" for s in settings["spacing"])
    contents = "image + lesion mask" if cached.with_mask else "image"
    print(f"machine: {os.cpu_count()} CPUs (N), torch {torch.__version__} "
          f"({torch.get_num_threads()} intra-op threads in the main process, 1 per worker), "
          f"Python {platform.python_version()}")
    print(f"demo cohort: {exams} exams x {per_exam} sequences = {len(cached)} training pairs "
          f"({contents} per sample), {shape} voxels at {spacing} mm as configs/demo.yaml; "
          f"cache fill {summary.entries} entries in {fill_seconds:.1f} s")
    print(f"loader: batch {args.batch_size}, one warm-up batch per worker, then "
          f"{args.batches} timed batches (rounded up to whole rounds of the workers)")
    print()
    print("| training loader, workers | augmentation | cache (samples/s) "
          "| on the fly from .nii.gz (samples/s) | cache / on the fly |")
    print("| --- | --- | --- | --- | --- |")
    for w, augmented, cache_rate, fly_rate in rows:
        name = "0 (main process)" if w == 0 else str(w)
        if w == os.cpu_count():
            name += " (N)"
        print(f"| {name} | {'flip' if augmented else 'off'} | {cache_rate:.1f} | {fly_rate:.1f} "
              f"| {cache_rate / fly_rate:.1f}x |")
    print()
    print("| one sample without the loader (1 torch thread) | augmentation on | off |")
    print("| --- | --- | --- |")
    for source, label in (("cache", "cache"), ("fly", "on the fly from .nii.gz")):
        print(f"| {label} | {in_process[f'{source} True'] * 1e3:.2f} ms "
              f"| {in_process[f'{source} False'] * 1e3:.2f} ms |")
    print(f"| cache / on the fly | {in_process['fly True'] / in_process['cache True']:.1f}x "
          f"| {in_process['fly False'] / in_process['cache False']:.1f}x |")
    print()
    on = next(r for r in rows if r[0] == headline and r[1])
    off = rows[-1]
    ratio = on[2] / on[3]
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"cache / on-the-fly per sample: {ratio:.1f}x (target >= {TARGET:g}x: {verdict}) "
          f"[training loader, {headline} workers, augmentation on]")
    print(f"cache / on-the-fly per sample, augmentation off: {off[2] / off[3]:.1f}x "
          f"[training loader, {headline} workers]")
    print(f"the loader's own ceiling ({headline} workers, samples that cost only a copy): "
          f"{ceiling:.1f} samples/s; the cached loader reaches {on[2] / ceiling:.0%} of it")
    print(f"batched augmentation after the loader (affine, gamma, intensity; on this CPU, "
          f"{torch.get_num_threads()} threads): {device_side * 1e3:.1f} ms per batch of "
          f"{args.batch_size}")
    print(f"per image volume: load .nii.gz + preprocess {preprocess * 1e3:.2f} ms, cache hit "
          f"{hit * 1e3:.2f} ms: {preprocess / hit:.1f}x")
    base = rows[0]
    print(f"cached loader (augmentation on) vs {base[0]} workers: " + ", ".join(
        f"{w} workers {r / base[2]:.2f}x" for w, augmented, r, _ in rows[1:] if augmented))
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
