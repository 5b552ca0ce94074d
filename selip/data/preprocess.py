"""Deterministic preprocessing (runs once per file and settings, then cached).

Canonical RAS orientation, resampling to a target spacing, per-volume intensity scaling
(:mod:`selip.data.intensity`: the median scale by default, the paper's percentile clip as an
option), then crop/pad to a fixed shape.

Axis convention: torchio holds RAS arrays as (X, Y, Z) = (left→right, posterior→anterior,
inferior→superior). selip tensors are (D, H, W) = (Z, Y, X), so D is the axial slice
axis (the one the paper's stem does not downsample) and W is the left–right axis (the
one the laterality flip mirrors). ``spacing`` and ``shape`` are given in (D, H, W) order.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchio as tio

from selip.data.intensity import (
    INTENSITY_SCHEMES,
    ConstantVolumeError,
    IntensityScheme,
    scale_intensity,
)
from selip.data.nifti import VolumeError, load_volume

#: Bump when the preprocessing code changes what it writes: old cache entries go stale.
#: 2: the intensity scheme (median scale by default); constant volumes refused.
PREPROCESS_VERSION = 2
#: The scheme of everything recorded before the setting existed (checkpoints, exports).
LEGACY_INTENSITY: IntensityScheme = "percentile"


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that changes a preprocessed array (part of every cache key).

    ``percentiles`` only matter to the ``percentile`` intensity scheme.
    """

    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0)
    shape: tuple[int, int, int] = (64, 64, 64)
    percentiles: tuple[float, float] = (0.1, 99.9)
    first_volume_of_4d: bool = False
    intensity: IntensityScheme = "median"

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive numbers (D, H, W) in mm, "
                             f"got {self.spacing}")
        if len(self.shape) != 3 or any(int(s) < 1 for s in self.shape):
            raise ValueError(f"shape must be three positive integers (D, H, W), got {self.shape}")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, "
                             f"got {self.percentiles}")
        if self.intensity not in INTENSITY_SCHEMES:
            raise ValueError(f"intensity must be one of {', '.join(INTENSITY_SCHEMES)}, "
                             f"got {self.intensity!r}")

    def fingerprint(self) -> dict[str, Any]:
        """The settings as JSON-able data, with the code version."""
        return {**asdict(self), "version": PREPROCESS_VERSION}


def _to_torchio_order(values: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    return values[2], values[1], values[0]


def _geometry(settings: PreprocessSettings) -> list[tio.Transform]:
    return [tio.ToCanonical(), tio.Resample(_to_torchio_order(settings.spacing))]


def _crop_or_pad(settings: PreprocessSettings) -> tio.Transform:
    shape = tuple(int(s) for s in _to_torchio_order(settings.shape))
    return tio.CropOrPad(shape, padding_mode=0)


def _keep_random_state() -> contextlib.AbstractContextManager[None]:
    """Every torchio transform draws from torch's global generator (its probability ``p``)
    even when deterministic: without this a cache miss would shift the training
    augmentation drawn after it, so a warm and a cold cache would augment differently."""
    return torch.random.fork_rng(devices=[])


def to_dhw(tensor: torch.Tensor) -> np.ndarray:
    """(1, X, Y, Z) torchio tensor → (D, H, W) = (Z, Y, X) contiguous array."""
    return np.ascontiguousarray(tensor[0].numpy().transpose(2, 1, 0))


def preprocess_volume(path: str | Path, settings: PreprocessSettings) -> np.ndarray:
    """Load and preprocess one image volume.

    Returns:
        (D, H, W) float16 array: [0, 1] under the ``percentile`` scheme, [0, 8] under
        ``median`` (normal tissue around 0.3-0.7).

    Raises:
        VolumeError: unreadable, not 3D, NaN voxels, or constant (naming ``path``).
    """
    return to_dhw(preprocess_image(path, settings).data).astype(np.float16)


def preprocess_image(path: str | Path, settings: PreprocessSettings) -> tio.ScalarImage:
    """Like :func:`preprocess_volume`, but the torchio image (1, X, Y, Z) with the affine of
    the preprocessed grid — what mapping a prediction back to the input needs."""
    data, affine = load_volume(path, settings.first_volume_of_4d)
    return preprocess_loaded(data, affine, settings, str(path))


def preprocess_loaded(data: np.ndarray, affine: np.ndarray, settings: PreprocessSettings,
                      name: str = "the volume") -> tio.ScalarImage:
    """:func:`preprocess_image` of a volume already loaded: (X, Y, Z) float32 ``data`` in
    the voxel order of its (4, 4) ``affine`` (as :func:`selip.data.nifti.load_volume`
    returns them); ``name`` goes into the errors."""
    image = tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)
    with _keep_random_state():
        for transform in _geometry(settings):
            image = transform(image)
    try:
        tensor = scale_intensity(image.data.float(), settings.intensity, settings.percentiles)
    except ConstantVolumeError as err:
        raise VolumeError(f"{err}: {name}") from None
    image = tio.ScalarImage(tensor=tensor, affine=image.affine)
    with _keep_random_state():
        return _crop_or_pad(settings)(image)


def preprocess_mask(path: str | Path, settings: PreprocessSettings) -> np.ndarray:
    """Load a label mask and bring it to the same grid as the images (nearest neighbour).

    Returns:
        (D, H, W) uint8 array of label values.
    """
    data, affine = load_volume(path, settings.first_volume_of_4d)
    if np.any(data < 0) or np.any(data > 255) or np.any(data != np.round(data)):
        raise ValueError(f"mask must hold integer labels 0..255: {path}")
    mask = tio.LabelMap(tensor=torch.from_numpy(data.astype(np.int16))[None], affine=affine)
    with _keep_random_state():
        for transform in _geometry(settings):
            mask = transform(mask)
        mask = _crop_or_pad(settings)(mask)
    return to_dhw(mask.data).astype(np.uint8)
