"""Intensity scaling keeps a bright lesion brighter than any normal volume's tissue."""

import numpy as np
import pytest
import torch

from selip.data.intensity import MEDIAN_UPPER_BOUND, ConstantVolumeError, scale_intensity

SHAPE = (40, 48, 40)  # 76,800 voxels: the top 0.1 % is 77 voxels, a lesion is 125


def toy_head(seed: int, gain: float, lesion: bool) -> torch.Tensor:
    """(D, H, W): air, a head of grey (100) and white (70) matter with noise, in scanner
    units scaled by ``gain``; with ``lesion``, a 5x5x5 blob at 1.5x grey matter."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    volume = np.where(radius < 0.8, 100.0, 0.0) + np.where(radius < 0.6, -30.0, 0.0)
    volume += rng.normal(0, 4, SHAPE)
    if lesion:
        volume[10:15, 20:25, 12:17] = 150.0 + rng.normal(0, 4, (5, 5, 5))
    return torch.from_numpy((gain * volume).astype(np.float32))


def head_max(scaled: torch.Tensor, raw: torch.Tensor) -> float:
    return float(scaled[raw > raw.mean()].max())


def test_a_lesion_volume_is_brighter_than_every_normal_one():
    scheme = "median"
    normal = [toy_head(seed, gain, False) for seed, gain in enumerate((0.5, 1.0, 3.0, 40.0))]
    lesions = [toy_head(10 + seed, gain, True) for seed, gain in enumerate((0.7, 2.0, 25.0))]
    normal_max = max(head_max(scale_intensity(v, scheme), v) for v in normal)
    for volume in lesions:
        assert head_max(scale_intensity(volume, scheme), volume) > normal_max * 1.2


def test_the_percentile_scheme_makes_the_lesion_the_white_point():
    """Why the paper's scheme is not the default: lesion and normal volumes both end at
    exactly 1.0, and the lesion volume's tissue is dimmed instead."""
    normal, lesion = toy_head(0, 1.0, False), toy_head(1, 1.0, True)
    scaled_normal = scale_intensity(normal, "percentile")
    scaled_lesion = scale_intensity(lesion, "percentile")
    assert head_max(scaled_normal, normal) == head_max(scaled_lesion, lesion) == 1.0
    grey = (normal > 85) & (normal < 115)
    assert float(scaled_lesion[grey].median()) < float(scaled_normal[grey].median()) - 0.1


def test_the_median_scale_ignores_the_scanner_units():
    low, high = toy_head(0, 0.5, True), toy_head(0, 40.0, True)
    torch.testing.assert_close(scale_intensity(low, "median"), scale_intensity(high, "median"),
                               atol=1e-5, rtol=1e-5)
    scaled = scale_intensity(low, "median")
    assert 0.4 < float(scaled[low > low.mean()].median()) < 0.6
    assert float(scaled.min()) == 0.0 and float(scaled.max()) <= MEDIAN_UPPER_BOUND


@pytest.mark.parametrize("scheme", ["median", "percentile"])
def test_a_constant_volume_is_refused(scheme):
    with pytest.raises(ConstantVolumeError, match=r"every voxel is 0"):
        scale_intensity(torch.zeros(SHAPE), scheme)


def test_an_unknown_scheme_is_named():
    with pytest.raises(ValueError, match="'zscore'"):
        scale_intensity(toy_head(0, 1.0, False), "zscore")


@pytest.mark.parametrize("scheme, top", [("percentile", 1.0), ("median", 0.5)])
def test_a_nearly_empty_volume_is_scaled_not_refused(scheme, top):
    volume = torch.zeros(20, 20, 20)
    volume[0, 0, 0] = 5.0  # the percentile bounds meet; the head is one voxel
    scaled = scale_intensity(volume, scheme)
    assert float(scaled.max()) == top and float(scaled.min()) == 0.0
