"""selip's 3D ResNet is MONAI's network: the same parameters from the same seed, state
dicts that load both ways, and the same forward. (That building and using an encoder
imports no MONAI is checked in a fresh process by tests/inference/test_load.py.)"""

from __future__ import annotations

import pytest
import torch

from selip.models.image_encoder import ImageEncoder, ImageEncoderConfig, use_norm

LAYERS = {10: [1, 1, 1, 1], 50: [3, 4, 6, 3]}


def monai_resnet(config: ImageEncoderConfig) -> torch.nn.Module:
    """MONAI's ResNet built as docs/using.md builds it for an exported image tower."""
    from monai.networks.nets import ResNet

    width, stride = config.width, (1, 2, 2) if config.anisotropic_stem else 2
    net = ResNet("bottleneck" if config.depth == 50 else "basic", LAYERS[config.depth],
                 [width, 2 * width, 4 * width, 8 * width], spatial_dims=3,
                 n_input_channels=config.in_channels, conv1_t_size=7, conv1_t_stride=stride,
                 feed_forward=False)
    if config.anisotropic_stem:
        net.maxpool = torch.nn.MaxPool3d(kernel_size=3, stride=(1, 2, 2), padding=1)
    use_norm(net, config.norm, width)
    return net


@pytest.mark.parametrize("depth, anisotropic_stem, norm", [
    (10, True, "batch"), (10, False, "group"), (50, True, "instance"), (50, False, "group"),
    (50, False, "batch")])
def test_the_same_weights_from_the_same_seed_and_the_same_forward(depth, anisotropic_stem,
                                                                    norm):
    config = ImageEncoderConfig(depth=depth, width=4, anisotropic_stem=anisotropic_stem,
                                in_channels=2, norm=norm)
    torch.manual_seed(3)
    ours = ImageEncoder(config).resnet
    torch.manual_seed(3)
    theirs = monai_resnet(config)
    mine, other = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(other)  # names, and the order they are saved in
    for name, value in mine.items():
        assert torch.equal(value, other[name]), name
    x = torch.randn(2, 2, 32, 32, 32)  # instance norm: more than 1 voxel in the last stage
    for train in (False, True):
        ours.train(train), theirs.train(train)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    # trained weights carry over both ways
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.add_(torch.randn_like(parameter))
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
