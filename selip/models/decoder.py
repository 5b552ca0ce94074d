"""A U-Net style decoder over the image encoder's stages (for segmentation).

Each step upsamples the coarser map to the next skip's exact size (so the anisotropic
stem's strides need no special case), concatenates the skip, and applies two 3×3×3
conv–norm–ReLU layers; a last step returns to the input size and a 1×1×1 conv gives
class logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.InstanceNorm3d(out_channels, affine=True), nn.ReLU(inplace=True),
        nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.InstanceNorm3d(out_channels, affine=True), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    """Stage maps (fine → coarse) of an encoder → (B, classes, D, H, W) logits.

    Args:
        stage_channels: channels of each encoder stage, fine to coarse.
        num_classes: output classes (background included).
        width: channels of the finest decoder block; coarser blocks double it.
    """

    def __init__(self, stage_channels: list[int], num_classes: int, width: int = 16) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"segmentation needs at least 2 classes, got {num_classes}")
        levels = len(stage_channels) - 1
        widths = [width * 2**i for i in range(levels)]
        self.blocks = nn.ModuleList()
        coarse = stage_channels[-1]
        for level in reversed(range(levels)):
            self.blocks.append(_block(coarse + stage_channels[level], widths[level]))
            coarse = widths[level]
        self.head = nn.Conv3d(coarse, num_classes, kernel_size=1)

    def forward(self, stages: list[torch.Tensor], size: torch.Size) -> torch.Tensor:
        """``stages`` fine → coarse; ``size`` the input's (D, H, W)."""
        x = stages[-1]
        for block, skip in zip(self.blocks, reversed(stages[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        return self.head(x)
