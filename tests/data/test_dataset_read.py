"""VolumeCache reads (``contains``, ``load(out=...)``) and the dataset's flip-before-read."""

import os

import numpy as np
import pytest
import torch

from selip.data.augment import AugmentSettings
from selip.data.cache import VolumeCache
from selip.data.prepare import fill_cache
from selip.data.preprocess import PreprocessSettings
from tests.data.test_datamodule import _datamodule

SETTINGS = PreprocessSettings((2.0, 2.0, 2.0), (16, 32, 32))  # data > the reader's 8 KiB buffer
KEY = "ab" * 32


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_contains_rejects_and_deletes_foreign_entries_without_reading_them(tmp_path):
    cache = VolumeCache(tmp_path, SETTINGS)
    cache.store(KEY, np.ones(SETTINGS.shape, np.float16), "image")
    assert cache.contains(KEY, "image")
    assert not cache.contains(KEY, "mask")  # float16 entry where a uint8 mask is expected
    assert not cache.path(KEY).exists()
    np.save(cache.path(KEY), np.zeros(SETTINGS.shape, np.float32))
    assert not cache.contains(KEY, "image") and not cache.path(KEY).exists()
    np.save(cache.path(KEY), np.zeros(SETTINGS.shape, np.float16).T)  # Fortran order
    assert not cache.contains(KEY, "image") and not cache.path(KEY).exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_file_descriptor_is_left_open_on_any_path(tmp_path):
    cache = VolumeCache(tmp_path, SETTINGS)
    good = np.ones(SETTINGS.shape, np.float16)
    before = _open_fds()
    for payload in (None, b"", b"junk", b"\x93NUMPY\x01\x00"):
        cache.store(KEY, good, "image")
        if payload is not None:
            cache.path(KEY).write_bytes(payload)
        cache.contains(KEY, "image")
        cache.load(KEY, "image", out=np.empty(SETTINGS.shape, np.float16))
        cache.load(KEY, "image")
    assert _open_fds() == before


def test_a_read_cut_short_is_never_served_and_the_entry_is_rebuilt_into_out(
        tmp_path, monkeypatch):
    cache = VolumeCache(tmp_path, SETTINGS)
    cache.store(KEY, np.ones(SETTINGS.shape, np.float16), "image")
    layout = VolumeCache._valid_layout

    def truncated_after_the_check(self, handle, kind):
        checked = layout(self, handle, kind)
        os.truncate(self.path(KEY), 20_000)  # shrinks under the open handle
        return checked

    monkeypatch.setattr(VolumeCache, "_valid_layout", truncated_after_the_check)
    out = np.zeros(SETTINGS.shape, np.float16)
    assert cache.load(KEY, "image", out=out) is None and not cache.path(KEY).exists()
    cache.store(KEY, np.ones(SETTINGS.shape, np.float16), "image")
    built = np.full(SETTINGS.shape, 2, np.float16)
    served = cache.get_or_create(KEY, "image", lambda: built, out=out)
    assert served is out
    np.testing.assert_array_equal(out, built)  # nothing of the partial read is left


def test_an_atomic_replacement_during_a_read_serves_one_whole_version(tmp_path, monkeypatch):
    cache = VolumeCache(tmp_path, SETTINGS)
    old, new = np.ones(SETTINGS.shape, np.float16), np.full(SETTINGS.shape, 3, np.float16)
    cache.store(KEY, old, "image")
    layout = VolumeCache._valid_layout

    def replaced_after_the_check(self, handle, kind):
        checked = layout(self, handle, kind)
        self.store(KEY, new, kind)  # write to a temporary name, rename over the entry
        return checked

    monkeypatch.setattr(VolumeCache, "_valid_layout", replaced_after_the_check)
    np.testing.assert_array_equal(cache.load(KEY, "image"), old)
    monkeypatch.setattr(VolumeCache, "_valid_layout", layout)
    np.testing.assert_array_equal(cache.load(KEY, "image"), new)


def test_an_unusable_out_is_a_clear_error_and_keeps_the_entry(tmp_path):
    cache = VolumeCache(tmp_path, SETTINGS)
    cache.store(KEY, np.ones(SETTINGS.shape, np.float16), "image")
    frozen = np.empty(SETTINGS.shape, np.float16)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        cache.load(KEY, "image", out=frozen)
    strided = np.empty((*SETTINGS.shape[:2], 2 * SETTINGS.shape[2]), np.float16)[..., ::2]
    with pytest.raises(ValueError, match="not C-contiguous"):
        cache.get_or_create(KEY, "image", lambda: pytest.fail("built"), out=strided)
    with pytest.raises(ValueError, match="float32"):
        cache.load(KEY, "mask", out=np.empty(SETTINGS.shape, np.float32))
    assert cache.contains(KEY, "image")


def test_the_worker_flip_is_the_same_draw_as_before_the_read(tiny_cohort, tmp_path):
    """On a warm cache the flip is one ``torch.rand`` per sample, as ``flip_pair`` drew it;
    with ``augment_fully`` it is still the first draw of ``augment_pair``."""
    half = AugmentSettings(flip_probability=0.5)
    dm = _datamodule(tiny_cohort(n=8), tmp_path, augment=half, val_fraction=0.0,
                     test_fraction=0.0, require_mask=True)
    dataset = dm.datasets["train"]
    fill_cache(dm.cache, dataset.pairs, workers=1, progress=False)
    count = len(dataset)
    torch.manual_seed(0)
    expected = [float(torch.rand(())) < 0.5 for _ in range(count)]
    assert any(expected) and not all(expected)
    torch.manual_seed(0)
    samples = [dataset[i] for i in range(count)]
    flipped = [int(s["report_id"]) == p.mirrored_report_id != p.report_id
               for s, p in zip(samples, dataset.pairs, strict=True)]
    distinct = [p.mirrored_report_id != p.report_id for p in dataset.pairs]
    assert [f for f, d in zip(flipped, distinct, strict=True) if d] == \
        [e for e, d in zip(expected, distinct, strict=True) if d]
    for sample in samples:
        assert sample["image"].dtype == torch.float16 and sample["mask"].dtype == torch.int64
    dataset.augment_fully = True
    for index in range(count):
        torch.manual_seed(index)
        first = float(torch.rand(())) < 0.5
        torch.manual_seed(index)
        pair, sample = dataset.pairs[index], dataset[index]
        assert int(sample["report_id"]) == (pair.mirrored_report_id if first
                                             else pair.report_id)
