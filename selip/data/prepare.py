"""Filling the preprocessing cache ahead of training, in parallel (``selip prepare``)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from selip.data.cache import Kind, VolumeCache
from selip.data.manifest import ExamRecord
from selip.data.pair import Pair
from selip.data.preprocess import PreprocessSettings, preprocess_mask, preprocess_volume
from selip.io.fingerprint import FileDigests


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


#: Seconds a pool of spawned workers takes to start (each imports torch and torchio): below
#: this much remaining work, preprocessing in this process finishes sooner.
POOL_START_SECONDS = 10.0
#: Volumes preprocessed here before the rate is judged.
RATE_SAMPLE = 2


def _fill_here_while_cheaper(cache: VolumeCache, missing: list[tuple[str, Kind, Path]],
                             workers: int, summary: PrepareSummary, bar: tqdm,
                             ) -> list[tuple[str, Kind, Path]]:
    """Build entries of ``missing`` in this process — all of them with ``workers`` ≤ 1,
    otherwise while the rest, at the rate measured so far, would take less than starting
    a pool. Returns the entries left for the pool. A small cohort (or a few new exams) is
    then done in the time the pool would have needed to start."""
    started = time.perf_counter()
    for done, job in enumerate(missing):
        if workers > 1 and done >= RATE_SAMPLE:
            rate = (time.perf_counter() - started) / done
            if rate * (len(missing) - done) > POOL_START_SECONDS:
                return missing[done:]
        _record(summary, bar, job[2], partial(_fill_one, cache.root, cache.settings, *job))
    return []


def _record(summary: PrepareSummary, bar: tqdm, path: Path, build: Callable[[], bool]) -> None:
    """Count one entry's outcome: ``build()`` (a call here, or a pool future's result) says
    whether it was built; a failure is reported with its file and the fill goes on."""
    try:
        summary.built += int(build())
    except Exception as err:  # report every failing file, keep going
        summary.failures.append(f"{path}: {err}")
    bar.update(1)


def exam_cache_jobs(exams: Iterable[ExamRecord], sequences: Iterable[str], cache: VolumeCache,
                    digests: FileDigests) -> list[tuple[str, Kind, Path]]:
    """Unique (key, kind, path) entries of the ``sequences`` volumes and the masks of
    ``exams`` — what :func:`cache_jobs` gives for their pairs, without building pairs (a
    shard of ``selip prepare`` reads only its own exams' files)."""
    jobs: dict[str, tuple[str, Kind, Path]] = {}
    wanted = list(sequences)
    for exam in exams:
        for sequence in wanted:
            if sequence in exam.volumes:
                path = exam.volumes[sequence]
                key = cache.key_of(path, "image", digests)
                jobs.setdefault(key, (key, "image", path))
        if exam.mask is not None:
            key = cache.key_of(exam.mask, "mask", digests)
            jobs.setdefault(key, (key, "mask", exam.mask))
    return list(jobs.values())


def fill_cache(cache: VolumeCache, pairs: list[Pair], workers: int = 2,
               progress: bool = True) -> PrepareSummary:
    """Make sure every volume and mask of ``pairs`` is in ``cache``."""
    return fill_cache_jobs(cache, cache_jobs(pairs), workers, progress)


def fill_cache_jobs(cache: VolumeCache, jobs: list[tuple[str, Kind, Path]], workers: int = 2,
                    progress: bool = True) -> PrepareSummary:
    """Make sure every (key, kind, path) entry of ``jobs`` is in ``cache``."""
    summary = PrepareSummary(entries=len(jobs))
    start = time.perf_counter()
    missing = [job for job in jobs if not cache.contains(job[0], job[1])]
    summary.hits = len(jobs) - len(missing)
    bar = tqdm(total=len(jobs), initial=summary.hits, desc="preprocessing", unit="volume",
               disable=not progress)
    missing = _fill_here_while_cheaper(cache, missing, workers, summary, bar)
    if missing:
        context = multiprocessing.get_context("spawn")  # fork after torch threads can deadlock
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context,
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(_fill_one, cache.root, cache.settings, *job): job
                       for job in missing}
            for future in as_completed(futures):
                _record(summary, bar, futures[future][2], future.result)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
