"""Filling the preprocessing cache ahead of training, in parallel (``selip prepare``)."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from selip.data.cache import Kind, VolumeCache
from selip.data.dataset import Pair
from selip.data.preprocess import PreprocessSettings, preprocess_mask, preprocess_volume


@dataclass
class PrepareSummary:
    """What a cache fill did."""

    entries: int = 0
    hits: int = 0
    built: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


def cache_jobs(pairs: list[Pair]) -> list[tuple[str, Kind, Path]]:
    """Unique (key, kind, path) entries that the pairs need."""
    jobs: dict[str, tuple[str, Kind, Path]] = {}
    for pair in pairs:
        for key, path in zip(pair.volume_keys, pair.volumes, strict=True):
            jobs.setdefault(key, (key, "image", path))
        if pair.mask_key is not None and pair.mask is not None:
            jobs.setdefault(pair.mask_key, (pair.mask_key, "mask", pair.mask))
    return list(jobs.values())


def _worker_init() -> None:
    # One thread per process: the pool already uses every core.
    import torch

    torch.set_num_threads(1)


def _fill_one(root: Path, settings: PreprocessSettings, key: str, kind: Kind, path: Path) -> bool:
    """Build one entry if missing; True when it was built, False on a hit."""
    cache = VolumeCache(root, settings)
    if cache.contains(key, kind):
        return False
    build = preprocess_volume if kind == "image" else preprocess_mask
    cache.store(key, build(path, settings), kind)
    return True


def fill_cache(cache: VolumeCache, pairs: list[Pair], workers: int = 2,
               progress: bool = True) -> PrepareSummary:
    """Make sure every volume and mask of ``pairs`` is in ``cache``."""
    jobs = cache_jobs(pairs)
    summary = PrepareSummary(entries=len(jobs))
    start = time.perf_counter()
    missing = [job for job in jobs if not cache.contains(job[0], job[1])]
    summary.hits = len(jobs) - len(missing)
    bar = tqdm(total=len(jobs), initial=summary.hits, desc="preprocessing", unit="volume",
               disable=not progress)
    if missing:
        context = multiprocessing.get_context("spawn")  # fork after torch threads can deadlock
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context,
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(_fill_one, cache.root, cache.settings, *job): job
                       for job in missing}
            for future in as_completed(futures):
                path = futures[future][2]
                try:
                    summary.built += int(future.result())
                except Exception as err:  # report every failing file, keep going
                    summary.failures.append(f"{path}: {err}")
                bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
