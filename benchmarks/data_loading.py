"""Data path benchmark: preprocessing from NIfTI vs a cache hit, side by side in one run.

Prints per-volume times for (a) the deterministic torchio preprocessing of a demo volume
and (b) loading the same array from the memory-mapped cache, and the ratio; then training
loader throughput (augmentation on) with 0 and 2 workers.

    .venv/bin/python benchmarks/data_loading.py [--exams 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import median_seconds

from selip.data.cache import VolumeCache
from selip.data.datamodule import SelipDataModule
from selip.data.demo import generate_demo_cohort
from selip.data.fingerprint import FileDigests
from selip.data.preprocess import PreprocessSettings, preprocess_volume


def bench_cache(manifest: Path, cache_dir: Path, repeats: int) -> tuple[float, float]:
    """Median per-volume seconds: preprocessing from NIfTI, and a cache hit."""
    volumes = sorted(manifest.parent.glob("exams/*/t*.nii.gz"))
    settings = PreprocessSettings()
    cache = VolumeCache(cache_dir, settings)
    digests = FileDigests()
    keys = [cache.key(digests.digest(v), "image") for v in volumes]

    def preprocess_all() -> None:
        for volume in volumes:
            preprocess_volume(volume, settings)

    def load_all() -> None:
        for key in keys:
            array = cache.load(key, "image")
            assert array is not None
            torch.from_numpy(np.asarray(array, dtype=np.float32))

    for volume, key in zip(volumes, keys, strict=True):
        cache.store(key, preprocess_volume(volume, settings), "image")
    fresh = median_seconds(preprocess_all, repeats) / len(volumes)
    cached = median_seconds(load_all, repeats) / len(volumes)
    return fresh, cached


def bench_loader(manifest: Path, cache_dir: Path, workers: int, batches: int) -> float:
    """Training-loader samples per second (augmentation on, warm cache)."""
    dm = SelipDataModule(str(manifest), cache_dir=str(cache_dir), batch_size=4,
                         num_workers=workers, val_fraction=0.0, test_fraction=0.0,
                         max_length=64, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # start-up (worker spawn, cache fill) is not throughput
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        count += len(batch["sample_id"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exams", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = generate_demo_cohort(root / "demo", num_exams=args.exams, progress=False)
        fresh, cached = bench_cache(manifest, root / "cache_a", args.repeats)
        print(f"per volume (64^3 at 3 mm, demo T1/T2): preprocess from NIfTI {fresh * 1e3:8.2f} ms"
              f" | cache hit {cached * 1e3:6.3f} ms | ratio {fresh / cached:7.1f}x")
        rates = {w: bench_loader(manifest, root / "cache_b", w, args.batches) for w in (0, 2)}
        print(f"train loader, batch 4, augmentation on: 0 workers {rates[0]:6.1f} samples/s | "
              f"2 workers {rates[2]:6.1f} samples/s | ratio {rates[2] / rates[0]:4.2f}x")


if __name__ == "__main__":
    main()
