"""benchmarks/detectability.py: ``--adc-percentile`` equals preprocessing at that percentile."""

from __future__ import annotations

import numpy as np
import torch

from tests.benchmark_scripts import load_benchmark


def test_clipping_a_cached_volume_equals_preprocessing_with_that_upper_percentile():
    detectability = load_benchmark("detectability")
    raw = np.random.default_rng(0).gamma(2.0, 400.0, size=(16, 16, 16))
    raw[:4] = 0.0  # background, as around a head

    def scaled(high_percentile: float) -> torch.Tensor:
        # what preprocessing does: clip at the (0.1, high) percentiles, rescale to [0, 1]
        low, high = np.percentile(raw, (0.1, high_percentile))
        return torch.from_numpy((np.clip(raw, low, high) - low) / (high - low)).float()

    cached = scaled(99.9)
    torch.testing.assert_close(detectability.clip_high(cached, 90.0), scaled(90.0),
                               atol=1e-5, rtol=0)
