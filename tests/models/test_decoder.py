"""UNetDecoder: logits at the input size; the full-resolution path refines them at stride 1."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from selip.models import ImageEncoder, ImageEncoderConfig
from selip.models.decoder import UNetDecoder


@pytest.fixture
def encoder() -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder(ImageEncoderConfig(depth=10, width=4)).eval()


def test_full_resolution_logits_have_the_input_size(encoder):
    decoder = UNetDecoder(encoder.stage_channels, num_classes=3, width=4).eval()
    image = torch.randn(2, 1, 12, 33, 28)  # odd sizes: every upsampling matches exactly
    with torch.no_grad():
        logits = decoder(encoder.stages(image), image.shape[2:], image)
    assert logits.shape == (2, 3, 12, 33, 28)
    # the finest skip is at stride (1, 2, 2) (the anisotropic stem), the logits at stride 1
    assert encoder.stages(image)[0].shape[2:] == (12, 17, 14)


def test_the_old_decoder_only_upsamples_a_stride_2_map(encoder):
    decoder = UNetDecoder(encoder.stage_channels, num_classes=2, width=4,
                          full_resolution=False).eval()
    image = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        stages = encoder.stages(image)
        logits = decoder(stages, image.shape[2:])
        # its logits are exactly a trilinear upsampling of logits computed at stride 2
        x = stages[-1]
        for block, skip in zip(decoder.blocks, reversed(stages[:-1]), strict=True):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[2:], mode="trilinear"),
                                 skip], dim=1))
        coarse = decoder.head(x)
    assert coarse.shape[2:] == (16, 8, 8)  # the stem's stride (1, 2, 2)
    torch.testing.assert_close(logits, F.interpolate(coarse, size=(16, 16, 16),
                                                     mode="trilinear"))


def test_the_full_resolution_path_sees_single_voxels_of_the_image(encoder):
    old = UNetDecoder(encoder.stage_channels, 2, width=4, full_resolution=False).eval()
    new = UNetDecoder(encoder.stage_channels, 2, width=4).eval()
    image = torch.randn(1, 1, 16, 16, 16)
    changed = image.clone()
    changed[0, 0, 8, 8, 8] += 5.0
    with torch.no_grad():
        stages = encoder.stages(image)  # the same encoder maps for both images
        old_a, old_b = old(stages, image.shape[2:]), old(stages, image.shape[2:])
        new_a, new_b = new(stages, image.shape[2:], image), new(stages, image.shape[2:], changed)
    torch.testing.assert_close(old_a, old_b)  # the stride-2 maps fix the old decoder's output
    diff = (new_a - new_b).abs().sum(1)[0]
    assert diff[8, 8, 8] > 0  # the new one responds at that very voxel ...
    # ... and, through a 3x3x3 image conv and a 3x3x3 class conv, nowhere beyond 2 voxels
    # (instance norm spreads a tiny global shift, far below the local change)
    far = diff.clone()
    far[6:11, 6:11, 6:11] = 0
    assert far.max() < 0.05 * diff[8, 8, 8]


def test_stacked_channels_and_errors(encoder):
    decoder = UNetDecoder(encoder.stage_channels, 2, width=4)
    assert decoder.in_channels == 1
    decoder.match_input_channels(3)  # stacked sequences: the image has 3 channels
    assert decoder.in_channels == 3
    image = torch.randn(1, 3, 8, 8, 8)
    stages = ImageEncoder(ImageEncoderConfig(depth=10, width=4, in_channels=3)).eval().stages(image)
    assert decoder(stages, image.shape[2:], image).shape == (1, 2, 8, 8, 8)
    with pytest.raises(ValueError, match="needs the input image"):
        decoder(stages, image.shape[2:])
    with pytest.raises(ValueError, match="at least 2 classes"):
        UNetDecoder(encoder.stage_channels, num_classes=1)
    assert UNetDecoder(encoder.stage_channels, 2, full_resolution=False).in_channels == 0
