"""Random augmentation after the cache, in the loader workers.

Small affine, gamma, intensity scaling, and the paper's laterality-consistent flip: an
image mirrored left–right is paired with its report's mirrored text (left ↔ right),
so the pair stays true. Randomness comes from torch's generator, which the DataLoader
seeds differently in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchio as tio


@dataclass(frozen=True)
class AugmentSettings:
    """Training-time augmentation; ``enabled=False`` turns all of it off."""

    enabled: bool = True
    flip_probability: float = 0.5
    affine_probability: float = 0.5
    degrees: float = 5.0
    scales: float = 0.05
    translation_mm: float = 3.0
    gamma_probability: float = 0.3
    log_gamma: float = 0.2
    intensity_scale: float = 0.1

    def __post_init__(self) -> None:
        for name in ("flip_probability", "affine_probability", "gamma_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {value}")
        for name in ("degrees", "scales", "translation_mm", "log_gamma", "intensity_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def flips(self) -> bool:
        """Whether flipped pairs (and so mirrored report texts) can occur."""
        return self.enabled and self.flip_probability > 0


def _chance(probability: float) -> bool:
    return probability > 0 and float(torch.rand(())) < probability


def _random_affine(image: torch.Tensor, mask: torch.Tensor | None, settings: AugmentSettings,
                   spacing: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor | None]:
    # torchio wants (C, X, Y, Z) with an affine in mm; ours is (C, D, H, W) = (C, Z, Y, X).
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    subject = tio.Subject(image=tio.ScalarImage(tensor=image.permute(0, 3, 2, 1), affine=affine))
    if mask is not None:
        subject["mask"] = tio.LabelMap(tensor=mask.permute(0, 3, 2, 1), affine=affine)
    transform = tio.RandomAffine(scales=settings.scales, degrees=settings.degrees,
                                 translation=settings.translation_mm, default_pad_value=0.0)
    out = transform(subject)
    assert isinstance(out, tio.Subject)
    new_image = out.get_image("image").data.permute(0, 3, 2, 1).contiguous()
    new_mask = None
    if mask is not None:
        new_mask = out.get_image("mask").data.permute(0, 3, 2, 1).contiguous()
    return new_image, new_mask


def augment_pair(image: torch.Tensor, mask: torch.Tensor | None, settings: AugmentSettings,
                 spacing: tuple[float, float, float]
                 ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Augment one image (and its mask) and say whether it was mirrored left–right.

    Args:
        image: (1, D, H, W) float32 in [0, 1].
        mask: (1, D, H, W) integer labels, or None.
        spacing: voxel size in mm, (D, H, W) order.

    Returns:
        ``(image, mask, flipped)``; when ``flipped`` the caller must pair the image with
        the mirrored report text.
    """
    if not settings.enabled:
        return image, mask, False
    if _chance(settings.affine_probability):
        image, mask = _random_affine(image, mask, settings, spacing)
    if _chance(settings.gamma_probability):
        gamma = float(torch.empty(()).uniform_(-settings.log_gamma, settings.log_gamma).exp())
        image = image.clamp(min=0).pow(gamma)
    if settings.intensity_scale > 0:
        scale = 1.0 + float(torch.empty(()).uniform_(-settings.intensity_scale,
                                                      settings.intensity_scale))
        image = image * scale
    flipped = _chance(settings.flip_probability)
    if flipped:  # W is the left–right axis (see selip.data.preprocess)
        image = image.flip(-1)
        mask = mask.flip(-1) if mask is not None else None
    return image, mask, flipped
