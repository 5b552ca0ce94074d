"""A U-Net style decoder over the image encoder's stages (for segmentation).

Each step upsamples the coarser map to the next skip's exact size (so the anisotropic
stem's strides need no special case), concatenates the skip, and applies two 3×3×3
conv–norm–ReLU layers. The encoder's finest map (its stem) is at stride 2 (in-plane only
with the anisotropic stem), so the last step returns to the input size:

- with ``full_resolution`` (the default), a light conv–norm–ReLU block reads the input
  image itself at stride 1; the decoder map, narrowed by a 1×1×1 conv to the same few
  channels before it is upsampled (cheaper than after, and the same function), is
  concatenated with those features, and a 3×3×3 conv over both gives the class logits at
  stride 1, so a lesion edge can sit on any voxel (lesions of a few voxels are smaller
  than one stride-2 cell). Kept light on purpose: full-resolution layers dominate a CPU
  step (at 64³ and batch 4, one 3×3×3 conv of 16 → 8 channels there took about 0.9 s of
  a 3.3 s forward + backward; this path adds about 0.5 s);
- without, the stride-2 map is upsampled trilinearly and classified (selip's first
  decoder: its logits are a smooth interpolation of a half-resolution map).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True), nn.ReLU(inplace=True)]


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(*_conv(in_channels, out_channels), *_conv(out_channels, out_channels))


class UNetDecoder(nn.Module):
    """Stage maps (fine → coarse) of an encoder (+ the input image) → (B, classes, D, H, W).

    Args:
        stage_channels: channels of each encoder stage, fine to coarse.
        num_classes: output classes (background included).
        width: channels of the finest decoder block; coarser blocks double it.
        in_channels: channels of the input image (read by the full-resolution path).
        full_resolution: add the stride-1 path on the input image (module docstring).
        full_resolution_width: channels of that path (default ``max(4, width // 4)``).
    """

    def __init__(self, stage_channels: list[int], num_classes: int, width: int = 16,
                 in_channels: int = 1, full_resolution: bool = True,
                 full_resolution_width: int | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"segmentation needs at least 2 classes, got {num_classes}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        levels = len(stage_channels) - 1
        widths = [width * 2**i for i in range(levels)]
        self.blocks = nn.ModuleList()
        coarse = stage_channels[-1]
        for level in reversed(range(levels)):
            self.blocks.append(_block(coarse + stage_channels[level], widths[level]))
            coarse = widths[level]
        self.full_resolution = full_resolution
        self.narrow: nn.Conv3d | None = None
        self.image_block: nn.Sequential | None = None
        if full_resolution:
            fine = full_resolution_width or max(4, width // 4)
            self.narrow = nn.Conv3d(coarse, fine, kernel_size=1)
            self.image_block = nn.Sequential(*_conv(in_channels, fine))
            self.head = nn.Conv3d(2 * fine, num_classes, kernel_size=3, padding=1)
        else:
            self.head = nn.Conv3d(coarse, num_classes, kernel_size=1)

    @property
    def in_channels(self) -> int:
        """Channels of the image the full-resolution path reads (0 without the path)."""
        if self.image_block is None:
            return 0
        conv = self.image_block[0]
        assert isinstance(conv, nn.Conv3d)
        return conv.in_channels

    def match_input_channels(self, channels: int) -> None:
        """Rebuild the full-resolution path's first conv for ``channels`` image channels
        (stacked sequences; the decoder is new, so there are no weights to keep)."""
        if self.image_block is None or self.in_channels == channels:
            return
        old = self.image_block[0]
        assert isinstance(old, nn.Conv3d)
        self.image_block[0] = nn.Conv3d(channels, old.out_channels, 3, padding=1, bias=False,
                                        device=old.weight.device, dtype=old.weight.dtype)

    def forward(self, stages: list[torch.Tensor], size: torch.Size | tuple[int, ...],
                image: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes, *size).

        Args:
            stages: the encoder's maps, fine → coarse, (B, stage_channels[i], D_i, H_i, W_i).
            size: the input's (D, H, W).
            image: the input (B, in_channels, D, H, W); required with ``full_resolution``.
        """
        x = stages[-1]
        for block, skip in zip(self.blocks, reversed(stages[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        if self.narrow is None or self.image_block is None:
            return self.head(F.interpolate(x, size=tuple(size), mode="trilinear",
                                           align_corners=False))
        if image is None or tuple(image.shape[2:]) != tuple(size):
            got = None if image is None else tuple(image.shape)
            raise ValueError(f"the full-resolution decoder needs the input image, of spatial "
                             f"size {tuple(size)}; got {got}")
        x = F.interpolate(self.narrow(x), size=tuple(size), mode="trilinear",
                          align_corners=False)
        return self.head(torch.cat([x, self.image_block(image)], dim=1))
