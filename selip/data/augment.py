"""Random augmentation, in two places.

In the loader workers only the paper's laterality-consistent flip: an image mirrored
left–right is paired with its report's mirrored text (left ↔ right), so the pair stays
true — it has to happen where the report id is chosen. Everything else (small affine,
gamma, intensity scaling) is applied to the whole batch on the training device after the
transfer (``SelipDataModule.on_after_batch_transfer``): one batched ``grid_sample``
instead of a per-sample resampling in every worker, so the workers only read the cache
and the accelerator never waits for augmentation.

Every draw takes a ``torch.Generator`` (None: the global one). LightningCLI seeds every
rank alike, so the global generator alone would give sample j the same flip, affine, gamma
and intensity draw on every rank. The device-side part draws from :func:`step_generator`
seeded from (run seed, rank, epoch, batch), so a resumed run draws again what the first
one drew; the workers draw from the global generator on rank 0 and, on the other ranks,
from one seeded per sample from it and the rank (``PairDataset.generator``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F


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


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from any integers (negative ones too), e.g. (seed, rank, epoch, batch):
    a hash rather than a sum, so that (seed, rank + 1) and (seed + 1, rank) differ."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def step_generator(parts: tuple[int, ...], device: torch.device | str = "cpu"
                   ) -> torch.Generator:
    """A generator on ``device`` seeded from ``parts`` (see :func:`mix_seed`)."""
    return torch.Generator(device=device).manual_seed(mix_seed(*parts))


def _chance(probability: float, generator: torch.Generator | None) -> bool:
    return probability > 0 and float(torch.rand((), generator=generator)) < probability


def draw_flip(settings: AugmentSettings, generator: torch.Generator | None = None) -> bool:
    """Whether this sample is mirrored left–right (one draw with ``flip_probability``
    from ``generator``; None: the global one).

    The dataset draws it before reading the volume so that the read itself can mirror
    (a reversed NumPy copy, about 3× faster than ``torch.flip`` on float16).
    """
    return settings.flips and _chance(settings.flip_probability, generator)


#: Mixed into :func:`position_flip`'s hash so it is not any other draw's seed.
_FLIP_STREAM = 0x5E11F


def position_flip(settings: AugmentSettings, seed: int, epoch: int, position: int) -> bool:
    """Whether the sample at ``position`` of ``epoch``'s global order is mirrored: a pure
    function of the seed, the epoch and the position (not of a generator's state), so a
    loader worker knows every rank's flips — and so every rank's report texts — of any
    step, and a resumed run repeats them."""
    if not settings.flips:
        return False
    return mix_seed(seed, epoch, position, _FLIP_STREAM) / 2**63 < settings.flip_probability


def flip_pair(image: torch.Tensor, mask: torch.Tensor | None, settings: AugmentSettings,
              generator: torch.Generator | None = None, flip: bool | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Mirror left–right with ``flip_probability`` (in the workers).

    Args:
        image: (C, D, H, W); W is the left–right axis (see selip.data.preprocess).
        mask: (1, D, H, W) labels, or None.
        generator: a CPU generator for the draw (None: the global one).
        flip: decided already (:func:`position_flip`); None: drawn here.

    Returns:
        ``(image, mask, flipped)``; when ``flipped`` the caller must pair the image with
        the mirrored report text.
    """
    if not (draw_flip(settings, generator) if flip is None else flip):
        return image, mask, False
    return image.flip(-1), mask.flip(-1) if mask is not None else None, True


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles in radians about x, y, z → (B, 3, 3) rotation matrices."""
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def matrix(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    rx = matrix([[one, zero, zero], [zero, cos[:, 0], -sin[:, 0]], [zero, sin[:, 0], cos[:, 0]]])
    ry = matrix([[cos[:, 1], zero, sin[:, 1]], [zero, one, zero], [-sin[:, 1], zero, cos[:, 1]]])
    rz = matrix([[cos[:, 2], -sin[:, 2], zero], [sin[:, 2], cos[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def random_affine_theta(count: int, shape: tuple[int, int, int],
                        spacing: tuple[float, float, float], settings: AugmentSettings,
                        device: torch.device, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """(count, 3, 4) ``affine_grid`` matrices of random rotations (±degrees about each axis),
    per-axis scalings (1 ± scales) and translations (± translation_mm), built in mm about the
    volume centre and expressed in the normalised coordinates of a (D, H, W) = ``shape``
    volume with voxel size ``spacing`` — so a rotation stays a rotation when the voxels or
    the field of view are anisotropic. ``generator``: on ``device`` (None: the global one)."""
    def uniform(bound: float, size: tuple[int, ...]) -> torch.Tensor:
        return (torch.rand(size, device=device, generator=generator) * 2 - 1) * bound

    # affine_grid's coordinates are (x, y, z) = (W, H, D); half extents in mm per axis.
    half = torch.tensor([shape[2] * spacing[2], shape[1] * spacing[1], shape[0] * spacing[0]],
                        device=device) / 2
    linear = _rotation(uniform(math.radians(settings.degrees), (count, 3)))
    linear = linear * (1 + uniform(settings.scales, (count, 1, 3)))  # scale the columns
    normalised = linear * half[None, None, :] / half[None, :, None]  # E⁻¹ A E
    shift = uniform(settings.translation_mm, (count, 3)) / half
    return torch.cat([normalised, shift[:, :, None]], dim=2)


def augment_batch(images: torch.Tensor, masks: torch.Tensor | None, settings: AugmentSettings,
                  spacing: tuple[float, float, float], generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Affine (trilinear for images, nearest for masks), gamma and intensity scaling of a
    batch, each drawn per sample, on whatever device the batch is on.

    Args:
        images: (B, C, D, H, W) float, as preprocessed (air at 0).
        masks: (B, 1, D, H, W) integer labels, or None.
        spacing: voxel size in mm, (D, H, W) order.
        generator: every draw's generator, on the batch's device (None: the global one).

    Returns:
        ``(images, masks)``: the images float32 (whatever came in), the masks as they came.
    """
    if not settings.enabled or images.shape[0] == 0:
        return images, masks
    count, device = images.shape[0], images.device

    def rand(size: int) -> torch.Tensor:
        return torch.rand(size, device=device, generator=generator)

    images = images.float()
    chosen = (rand(count) < settings.affine_probability).nonzero()[:, 0]
    if len(chosen):
        theta = random_affine_theta(len(chosen), tuple(images.shape[2:]),  # type: ignore[arg-type]
                                    spacing, settings, device, generator)
        grid = F.affine_grid(theta, [len(chosen), 1, *images.shape[2:]], align_corners=False)
        images = images.clone()
        images[chosen] = F.grid_sample(images[chosen], grid, mode="bilinear",
                                       padding_mode="zeros", align_corners=False)
        if masks is not None:
            moved = F.grid_sample(masks[chosen].float(), grid, mode="nearest",
                                  padding_mode="zeros", align_corners=False)
            masks = masks.clone()
            masks[chosen] = moved.round().to(masks.dtype)
    if settings.gamma_probability > 0 and settings.log_gamma > 0:
        gamma = ((rand(count) * 2 - 1) * settings.log_gamma).exp()
        apply = rand(count) < settings.gamma_probability
        gamma = torch.where(apply, gamma, torch.ones_like(gamma)).view(-1, 1, 1, 1, 1)
        images = images.clamp(min=0).pow(gamma)
    if settings.intensity_scale > 0:
        scale = 1 + (rand(count) * 2 - 1) * settings.intensity_scale
        images = images * scale.view(-1, 1, 1, 1, 1)
    return images, masks


def augment_pair(image: torch.Tensor, mask: torch.Tensor | None, settings: AugmentSettings,
                 spacing: tuple[float, float, float], generator: torch.Generator | None = None,
                 flip: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """The whole augmentation of one sample: the flip, then :func:`augment_batch` on a batch
    of one (the training path splits the two between workers and device).

    Args:
        image: (C, D, H, W) float32, as preprocessed (air at 0).
        mask: (1, D, H, W) integer labels, or None.
        spacing: voxel size in mm, (D, H, W) order.
        generator: every draw's generator, on the image's device (None: the global one).
        flip: the flip, decided already (:func:`position_flip`); None: drawn here.

    Returns:
        ``(image, mask, flipped)``; when ``flipped`` the caller must pair the image with
        the mirrored report text.
    """
    if not settings.enabled:
        return image, mask, False
    image, mask, flipped = flip_pair(image, mask, settings, generator, flip)
    images, masks = augment_batch(image[None], mask[None] if mask is not None else None,
                                  settings, spacing, generator)
    return images[0], masks[0] if masks is not None else None, flipped
