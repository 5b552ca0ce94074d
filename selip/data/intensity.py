"""Per-volume intensity scaling: the one step of preprocessing that decides whether a
lesion stays brighter than the tissue around it.

Two schemes (``data.intensity``):

``median`` (the default)
    Divide the volume by twice the median of its foreground, the voxels brighter than the
    volume's mean (the head, not the air around it; the mean is taken with values capped at
    their 99.5th percentile, so a few hot voxels cannot raise it above the whole head),
    then bound the result to
    [0, :data:`MEDIAN_UPPER_BOUND`]. Normal tissue lands around 0.3–0.7 whatever the
    scanner's units, and a lesion brighter than the tissue stays brighter: nothing is
    clipped at a percentile of the volume itself. Air stays at 0, so zero padding, the
    affine augmentation's zero fill and the gamma augmentation keep their meaning.

``percentile`` (the paper's)
    Clip at the volume's own ``percentiles`` (0.1, 99.9) and min–max rescale to [0, 1],
    as the SeLIP authors do. At 3 mm the top 0.1 % of a head volume is about the size of
    one lesion, so a bright lesion becomes the white point and the rest of the brain is
    dimmed instead: lesion and normal volumes both end at exactly 1.0. Kept for
    reproducing the paper; the median scale is the default because of this.

A z-score over the foreground, the other usual choice for lesions, is not offered: it
makes air negative, which breaks zero padding and the gamma augmentation.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

IntensityScheme = Literal["median", "percentile"]
INTENSITY_SCHEMES: tuple[str, ...] = ("median", "percentile")
#: Values above this many foreground-median halves are bounded: a hot vessel or an artefact
#: 8x brighter than the tissue's median scale (16x its median) carries no more information,
#: and measured lesions of the demo cohort stay below 2.
MEDIAN_UPPER_BOUND = 8.0
#: The foreground threshold is the mean of the volume capped at this percentile.
FOREGROUND_CAP_PERCENTILE = 99.5


class ConstantVolumeError(ValueError):
    """A volume with no contrast: every voxel holds the same value."""


def scale_intensity(volume: torch.Tensor, scheme: str,
                    percentiles: tuple[float, float] = (0.1, 99.9)) -> torch.Tensor:
    """One volume scaled by ``scheme`` (see the module's docstring).

    Args:
        volume: (…) float tensor of raw intensities (any shape; one volume).
        scheme: ``median`` or ``percentile``.
        percentiles: the ``percentile`` scheme's clipping bounds, in percent.

    Returns:
        The same shape: [0, MEDIAN_UPPER_BOUND] for ``median``, [0, 1] for ``percentile``.

    Raises:
        ConstantVolumeError: every voxel is equal (nothing to scale by).
        ValueError: an unknown scheme.
    """
    require_contrast(float(volume.min()), float(volume.max()))
    if scheme == "median":
        return _median_scale(volume)
    if scheme == "percentile":
        return _percentile_scale(volume, percentiles)
    raise ValueError(f"intensity must be one of {', '.join(INTENSITY_SCHEMES)}, got {scheme!r}")


def require_contrast(low: float, high: float) -> None:
    """Raise :class:`ConstantVolumeError` unless a volume's ``high`` (its maximum) exceeds
    its ``low`` (its minimum)."""
    if not high > low:
        raise ConstantVolumeError(f"constant volume (every voxel is {low:g}): it has no "
                                  "contrast to scale")


def _median_scale(volume: torch.Tensor) -> torch.Tensor:
    values = volume.numpy()
    cap = np.percentile(values, FOREGROUND_CAP_PERCENTILE)
    threshold = float(np.minimum(values, cap).mean())
    foreground = values[values > threshold]
    if foreground.size == 0:  # all but a few voxels equal: take what is above the minimum
        foreground = values[values > values.min()]
    scale = 2 * float(np.median(foreground))
    if scale <= 0:  # a mostly negative volume: fall back to its spread above the threshold
        scale = float(foreground.max()) - threshold
    return (volume / scale).clamp(0.0, MEDIAN_UPPER_BOUND)


def _percentile_scale(volume: torch.Tensor, percentiles: tuple[float, float]) -> torch.Tensor:
    # numpy's percentile (torch.quantile refuses more than 16M values), in the volume's own
    # dtype: the arithmetic of every release before the median scale, to the bit.
    low, high = np.percentile(volume.numpy(), percentiles)
    if not high > low:  # a mostly-empty volume whose bounds meet: use its whole range
        low, high = float(volume.min()), float(volume.max())
    return (volume.clamp(float(low), float(high)) - low) / (high - low)
