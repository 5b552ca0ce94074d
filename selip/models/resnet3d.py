"""A 3D ResNet laid out as MONAI's ``monai.networks.nets.ResNet`` (shortcut type B), written
here so that building an encoder does not import MONAI: MONAI's package imports all of its
submodules (scipy, pandas, scikit-learn, matplotlib, ...), several seconds at the start of
every ``selip fit``, ``embed`` and ``search`` process and of every DDP rank.

The parameter names, their shapes, the order modules are built in and the initialisation
are MONAI's, so a seeded encoder holds the same weights as MONAI's network built with the
same seed, its state dict loads into MONAI's ResNet and back, and the forward is the same
computation. ``tests/models/test_resnet3d.py`` checks all three against MONAI itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

#: One normalisation layer over the given number of channels.
NormFactory = Callable[[int], nn.Module]
BlockKind = Literal["basic", "bottleneck"]


def _relu() -> nn.ReLU:
    return nn.ReLU(inplace=True)


class BasicBlock(nn.Module):
    """Two 3×3×3 convolutions and a residual connection (ResNet-10/18/34)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, norm: NormFactory, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(planes)
        self.act = _relu()
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_planes, D, H, W) → (B, planes, D/stride, H/stride, W/stride)."""
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        out += residual
        return self.act(out)


class Bottleneck(nn.Module):
    """1×1×1 reduce, 3×3×3, 1×1×1 expand (×4) and a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, norm: NormFactory, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm(planes * self.expansion)
        self.act = _relu()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_planes, D, H, W) → (B, 4 · planes, D/stride, H/stride, W/stride)."""
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        out += residual
        return self.act(out)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock,
                                                            "bottleneck": Bottleneck}


class ResNet3d(nn.Module):
    """(B, in_channels, D, H, W) → (B, widths[3] · expansion) globally average-pooled
    features: a stem (7×7×7 convolution with ``stem_stride``, norm, ReLU, 3×3×3 max-pool
    with ``pool_stride``) and four stages of ``layers[i]`` blocks of ``widths[i]`` planes,
    the last three starting with stride 2. No classification head."""

    def __init__(self, block: BlockKind, layers: list[int], widths: list[int],
                 in_channels: int = 1, stem_stride: tuple[int, int, int] | int = 2,
                 pool_stride: tuple[int, int, int] | int = 2,
                 norm: NormFactory = nn.BatchNorm3d) -> None:
        super().__init__()
        block_type = _BLOCKS[block]
        self.expansion = block_type.expansion
        self.conv1 = nn.Conv3d(in_channels, widths[0], 7, stride=stem_stride, padding=3,
                               bias=False)
        self.bn1 = norm(widths[0])
        self.act = _relu()
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=pool_stride, padding=1)
        # each stage takes the previous one's output channels, planes × expansion
        out = [w * self.expansion for w in widths]
        self.layer1 = _stage(block_type, widths[0], widths[0], layers[0], norm, stride=1)
        self.layer2 = _stage(block_type, out[0], widths[1], layers[1], norm, stride=2)
        self.layer3 = _stage(block_type, out[1], widths[2], layers[2], norm, stride=2)
        self.layer4 = _stage(block_type, out[2], widths[3], layers[3], norm, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        # MONAI's initialisation, in module order (the same random draws): He-normal
        # convolutions; norm layers start at weight 1, bias 0 (PyTorch's default too).
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, D, H, W) → (B, features)."""
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def _stage(block: type[BasicBlock] | type[Bottleneck], in_planes: int, planes: int,
           count: int, norm: NormFactory, stride: int) -> nn.Sequential:
    """``count`` blocks of ``planes`` planes taking ``in_planes`` channels, the first with
    ``stride``."""
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or in_planes != out_planes:
        # a 1×1×1 projection (with a bias, as MONAI's) where the shape changes; built
        # before the blocks, as MONAI does, so the random draws come in the same order
        downsample = nn.Sequential(nn.Conv3d(in_planes, out_planes, 1, stride=stride),
                                   norm(out_planes))
    blocks = [block(in_planes, planes, norm, stride, downsample)]
    blocks += [block(out_planes, planes, norm) for _ in range(1, count)]
    return nn.Sequential(*blocks)
