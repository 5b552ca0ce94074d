"""Volume cache: hit, miss, invalidation, truncation and atomic writes."""

import os

import numpy as np
import pytest

from selip.data.cache import VolumeCache
from selip.data.preprocess import PreprocessSettings, preprocess_volume
from selip.io.fingerprint import FileDigests
from tests.conftest import head_volume, write_nifti

SETTINGS = PreprocessSettings((2.0, 2.0, 2.0), (10, 14, 12))


def _builder(path, calls):
    def build():
        calls.append(path)
        return preprocess_volume(path, SETTINGS)
    return build


def test_miss_then_hit_reads_the_stored_array(tmp_path):
    volume = write_nifti(tmp_path / "v.nii.gz", head_volume())
    cache = VolumeCache(tmp_path / "cache", SETTINGS)
    key = cache.key(FileDigests().digest(volume), "image")
    calls: list = []
    assert not cache.contains(key, "image")
    first = cache.get_or_create(key, "image", _builder(volume, calls))
    second = cache.get_or_create(key, "image", _builder(volume, calls))
    assert len(calls) == 1 and cache.contains(key, "image")
    assert second.dtype == np.float16 and second.shape == SETTINGS.shape
    np.testing.assert_array_equal(first, second)
    assert not [p for p in cache.root.rglob("*") if p.name.endswith(".tmp")]


def test_reads_into_the_callers_buffer_on_a_hit_and_on_a_miss(tmp_path):
    volume = write_nifti(tmp_path / "v.nii.gz", head_volume())
    cache = VolumeCache(tmp_path / "cache", SETTINGS)
    key = cache.key("digest", "image")
    expected = preprocess_volume(volume, SETTINGS)
    sample = np.full((2, *SETTINGS.shape), -1, np.float16)  # two channels, one per sequence
    calls: list = []
    missed = cache.get_or_create(key, "image", _builder(volume, calls), out=sample[0])
    hit = cache.get_or_create(key, "image", _builder(volume, calls), out=sample[1])
    assert len(calls) == 1
    assert np.shares_memory(missed, sample[0]) and np.shares_memory(hit, sample[1])
    np.testing.assert_array_equal(sample[0], expected)
    np.testing.assert_array_equal(sample[1], expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        cache.load(key, "image", out=np.empty(SETTINGS.shape, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        cache.load(key, "image", out=np.empty((*SETTINGS.shape[:2], 24), np.float16)[..., ::2])


def test_keys_change_with_content_settings_and_kind(tmp_path):
    volume = write_nifti(tmp_path / "v.nii.gz", head_volume())
    digests = FileDigests(tmp_path / "memo.json")
    before = digests.digest(volume)
    cache = VolumeCache(tmp_path / "cache", SETTINGS)
    other = VolumeCache(tmp_path / "cache", PreprocessSettings((2.0, 2.0, 2.0), (10, 14, 14)))
    assert cache.key(before, "image") != other.key(before, "image")
    assert cache.key(before, "image") != cache.key(before, "mask")
    write_nifti(volume, head_volume(seed=5))
    os.utime(volume, ns=(1, 1))  # even a forged mtime changes the stamp, so it is re-hashed
    assert digests.digest(volume) != before


def test_truncated_or_foreign_entries_are_rebuilt_never_served(tmp_path):
    volume = write_nifti(tmp_path / "v.nii.gz", head_volume())
    cache = VolumeCache(tmp_path / "cache", SETTINGS)
    key = cache.key("digest", "image")
    calls: list = []
    good = np.array(cache.get_or_create(key, "image", _builder(volume, calls)))
    entry = cache.path(key)
    entry.write_bytes(entry.read_bytes()[:-100])  # truncated
    assert cache.load(key, "image") is None and not entry.exists()
    entry.write_bytes(b"")  # empty, as a crash before the first byte would leave it
    assert not cache.contains(key, "image") and not entry.exists()
    rebuilt = cache.get_or_create(key, "image", _builder(volume, calls))
    np.testing.assert_array_equal(rebuilt, good)
    np.save(entry, np.zeros((3, 3, 3), np.float16))  # wrong shape under the right name
    assert cache.load(key, "image") is None
    entry.write_bytes(b"garbage")
    assert cache.load(key, "image") is None
    assert len(calls) == 2


def test_a_failed_write_leaves_the_old_entry_and_no_temporary_file(tmp_path, monkeypatch):
    cache = VolumeCache(tmp_path / "cache", SETTINGS)
    key = cache.key("digest", "image")
    old = np.full(SETTINGS.shape, 0.5, np.float16)
    cache.store(key, old, "image")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", explode)
    with pytest.raises(OSError, match="disk full"):
        cache.store(key, np.zeros(SETTINGS.shape, np.float16), "image")
    np.testing.assert_array_equal(cache.load(key, "image"), old)
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.npy"]


def test_store_rejects_arrays_of_the_wrong_shape_or_dtype(tmp_path):
    cache = VolumeCache(tmp_path, SETTINGS)
    with pytest.raises(ValueError, match=r"\(10, 14, 12\) float16"):
        cache.store("k", np.zeros((2, 2, 2), np.float16), "image")
    with pytest.raises(ValueError, match="uint8"):
        cache.store("k", np.zeros(SETTINGS.shape, np.float32), "mask")


def test_a_full_disk_serves_the_volume_uncached_and_the_next_run_rebuilds_it(
        tmp_path, monkeypatch):
    import errno

    cache = VolumeCache(tmp_path / "cache", SETTINGS)
    key = cache.key("digest", "image")
    built = np.full(SETTINGS.shape, 0.25, np.float16)
    real_write = np.lib.format.write_array

    def disk_full(handle, array, **kwargs):
        handle.write(b"\x93NUMPY partial")  # some bytes land before the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.warns(RuntimeWarning, match=r"could not write cache entry .*No space left"):
        served = cache.get_or_create(key, "image", lambda: built)
    np.testing.assert_array_equal(served, built)
    assert not cache.path(key).parent.exists() or not list(cache.path(key).parent.iterdir())
    monkeypatch.setattr(np.lib.format, "write_array", real_write)
    calls = []
    again = VolumeCache(tmp_path / "cache", SETTINGS)  # the next run
    again.get_or_create(key, "image", lambda: calls.append(1) or built)
    assert calls == [1]  # rebuilt, then stored
    np.testing.assert_array_equal(again.load(key, "image"), built)
