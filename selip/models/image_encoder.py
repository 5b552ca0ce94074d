"""3D ResNet image encoders (MONAI's ResNet) with the paper's anisotropic stem.

The paper's stem convolves with stride (1, 2, 2) and max-pools with stride (1, 2, 2) so
the slice axis D is not downsampled early (clinical volumes have few, thick slices).
Depth 10/18/34/50 and a width multiplier let tests and CPU demos use tiny networks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from monai.networks.nets import ResNet
from torch import nn

_LAYERS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}


@dataclass(frozen=True)
class ImageEncoderConfig:
    """A 3D ResNet.

    Args:
        depth: 10, 18, 34 (basic blocks) or 50 (bottlenecks).
        width: channels of the first stage (64 in the paper); later stages double it.
        anisotropic_stem: stem conv and max-pool stride (1, 2, 2) instead of 2.
        in_channels: input channels (one sequence per pair in pretraining).
    """

    depth: int = 50
    width: int = 64
    anisotropic_stem: bool = True
    in_channels: int = 1

    def __post_init__(self) -> None:
        if self.depth not in _LAYERS:
            raise ValueError(f"image encoder depth must be one of {sorted(_LAYERS)}, "
                             f"got {self.depth}")
        if self.width < 1 or self.in_channels < 1:
            raise ValueError(f"width and in_channels must be >= 1, got {self.width}, "
                             f"{self.in_channels}")


class ImageEncoder(nn.Module):
    """(B, C, D, H, W) volume → (B, F) pooled features; ``stages`` for decoders."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        block = "bottleneck" if config.depth == 50 else "basic"
        widths = [config.width * 2**i for i in range(4)]
        stride: tuple[int, int, int] | int = (1, 2, 2) if config.anisotropic_stem else 2
        self.resnet = ResNet(block, _LAYERS[config.depth], widths, spatial_dims=3,
                             n_input_channels=config.in_channels, conv1_t_size=7,
                             conv1_t_stride=stride, feed_forward=False)  # type: ignore[arg-type]
        if config.anisotropic_stem:
            self.resnet.maxpool = nn.MaxPool3d(kernel_size=3, stride=(1, 2, 2), padding=1)
        expansion = 4 if block == "bottleneck" else 1
        self.out_features = widths[-1] * expansion
        self.stage_channels = [config.width] + [w * expansion for w in widths]

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of the stem and the four stages, fine to coarse (for U-Net skips)."""
        net = self.resnet
        stem = net.act(net.bn1(net.conv1(x)))
        maps = [stem]
        h = net.maxpool(stem) if not getattr(net, "no_max_pool", False) else stem
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            h = layer(h)
            maps.append(h)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, out_features), global average pooled."""
        return self.resnet(x)


def match_input_channels(encoder: ImageEncoder, channels: int) -> None:
    """Make ``encoder`` take ``channels`` input channels, in place.

    A 1-channel stem (every pretraining checkpoint) is inflated: its kernel is repeated
    over the new channels and divided by their number, so a volume whose channels are all
    equal gives exactly the pretrained activations (the I3D inflation rule).

    Raises:
        ValueError: the encoder takes several channels already, and not ``channels``.
    """
    have = encoder.config.in_channels
    if have == channels:
        return
    if have != 1 or channels < 1:
        raise ValueError(f"the image encoder takes {have} input channels but the data gives "
                         f"{channels} (data.sequences with data.stack_sequences); only a "
                         "1-channel encoder can be inflated")
    conv = encoder.resnet.conv1
    assert isinstance(conv, nn.Conv3d)
    inflated = nn.Conv3d(channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
                         conv.stride, conv.padding, bias=conv.bias is not None,  # type: ignore[arg-type]
                         device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        inflated.weight.copy_(conv.weight.repeat(1, channels, 1, 1, 1) / channels)
        if conv.bias is not None and inflated.bias is not None:
            inflated.bias.copy_(conv.bias)
    inflated.requires_grad_(conv.weight.requires_grad)
    encoder.resnet.conv1 = inflated
    encoder.config = replace(encoder.config, in_channels=channels)
