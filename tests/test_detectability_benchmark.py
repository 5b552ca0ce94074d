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


def test_batch_norm_predictions_use_statistics_of_the_current_weights():
    """As ``fit`` before a validation: eval mode after recomputing over the recent training
    batches normalises with their statistics under the current weights (the running
    averages would lag behind the weights)."""
    detectability = load_benchmark("detectability")
    from selip.models.image_encoder import ImageEncoder, ImageEncoderConfig
    from selip.models.precise_bn import batch_norms

    torch.manual_seed(0)
    encoder = ImageEncoder(ImageEncoderConfig(depth=10, width=4, anisotropic_stem=False,
                                              norm="batch"))
    head = detectability.Head(encoder.out_features, 1, per_sequence=False)
    images = torch.rand(8, 1, 32, 32, 32) * 3 + 1  # far from the initial statistics (0, 1)
    sequences = torch.zeros(8, dtype=torch.long)
    seen: dict[torch.nn.Module, torch.Tensor] = {}  # each norm's input mean per channel
    hooks = [norm.register_forward_hook(
        lambda module, inputs, output: seen.__setitem__(module, inputs[0].mean((0, 2, 3, 4))))
        for norm in batch_norms(encoder)]
    with torch.no_grad():
        encoder(images)  # training mode: what each norm receives from these weights
    for hook in hooks:
        hook.remove()
    predicted = detectability.predict(encoder, head, images, sequences, [images])
    assert encoder.training  # handed back in training mode
    for norm, mean in seen.items():
        torch.testing.assert_close(norm.running_mean, mean, atol=1e-5, rtol=1e-4)
    encoder.eval()
    with torch.no_grad():
        assert torch.equal(predicted, head(encoder(images), sequences).argmax(1))
