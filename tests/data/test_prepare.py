"""Filling the cache: in this process while that is cheaper than starting a pool of workers,
then in the pool; either way every entry, byte for byte the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from selip.data import prepare
from selip.data.cache import VolumeCache
from selip.data.preprocess import PreprocessSettings
from tests.conftest import head_volume, write_nifti

SETTINGS = PreprocessSettings(spacing=(2.0, 2.0, 2.0), shape=(8, 8, 8))


def _jobs(tmp_path: Path, n: int) -> list[tuple[str, prepare.Kind, Path]]:
    paths = [write_nifti(tmp_path / "in" / f"v{i}.nii.gz", head_volume(seed=i)) for i in range(n)]
    return [(f"key{i:02d}", "image", path) for i, path in enumerate(paths)]


def _entries(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes()
            for p in sorted((cache / "volumes").rglob("*")) if p.is_file()}


def test_a_small_fill_runs_here_without_starting_a_pool(tmp_path, monkeypatch):
    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pool was started for a few small volumes")

    monkeypatch.setattr(prepare, "ProcessPoolExecutor", no_pool)
    jobs = _jobs(tmp_path, 6)
    jobs.append(("broken", "image", tmp_path / "in" / "missing.nii.gz"))
    summary = prepare.fill_cache_jobs(VolumeCache(tmp_path / "cache", SETTINGS), jobs,
                                      workers=2, progress=False)
    assert (summary.entries, summary.built) == (7, 6)
    assert len(summary.failures) == 1 and "missing.nii.gz" in summary.failures[0]


@pytest.mark.slow
def test_work_that_outlasts_a_pool_start_goes_to_the_pool_with_the_same_entries(
        tmp_path, monkeypatch):
    jobs = _jobs(tmp_path, 6)
    here = prepare.fill_cache_jobs(VolumeCache(tmp_path / "here", SETTINGS), jobs,
                                   workers=1, progress=False)
    started: list[int] = []
    pool = prepare.ProcessPoolExecutor

    def counted_pool(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        started.append(1)
        return pool(*args, **kwargs)

    monkeypatch.setattr(prepare, "ProcessPoolExecutor", counted_pool)
    monkeypatch.setattr(prepare, "POOL_START_SECONDS", 0.0)  # any remaining work is worth it
    pooled = prepare.fill_cache_jobs(VolumeCache(tmp_path / "pooled", SETTINGS), jobs,
                                     workers=2, progress=False)
    assert started == [1]
    assert here.built == pooled.built == 6
    assert _entries(tmp_path / "pooled") == _entries(tmp_path / "here")
