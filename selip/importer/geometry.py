"""Is a DICOM series a volume? Checks on its slice geometry, from the headers alone.

A converter handed a series with a missing slice, unevenly spaced slices or slices in two
orientations writes a volume whose geometry is wrong — silently. These checks find them
before conversion, so the series is skipped with a line that says why.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from selip.importer.series import Series

#: Positions closer than this (mm) along the slice normal are one slice position.
POSITION_TOLERANCE_MM = 0.01
#: A gap may differ from the typical slice spacing by this fraction before it counts.
SPACING_TOLERANCE = 0.1
#: Direction cosines are compared to this many decimals.
_ORIENTATION_DECIMALS = 3


def volume_problem(series: Series) -> str | None:
    """Why ``series`` is not one regular 3D (or 3D + b-value/echo) volume, or ``None``.

    Multi-frame files carry their geometry per frame (not read here): a series of them is
    accepted when it holds more than one image, and left to the converter.
    """
    if series.slice_count < 2:
        return "single slice, not a volume"
    if any(i.frames > 1 for i in series.instances):
        return None
    if any(i.position is None or i.orientation is None for i in series.instances):
        return "no slice geometry (ImagePositionPatient or ImageOrientationPatient missing)"
    orientations = Counter(tuple(round(v, _ORIENTATION_DECIMALS) for v in i.orientation or ())
                           for i in series.instances)
    if len(orientations) > 1:
        return f"mixed orientations within the series ({len(orientations)} different)"
    cosines = np.asarray(next(iter(orientations)), dtype=np.float64)
    normal = np.cross(cosines[:3], cosines[3:])
    along = np.array([np.dot(normal, i.position or (0.0, 0.0, 0.0))
                      for i in series.instances])
    positions = _distinct(along)
    if len(positions) < 2:
        return "single slice position, not a volume"
    per_position = Counter(int(np.argmin(np.abs(positions - a))) for a in along)
    if len(set(per_position.values())) > 1:
        low, high = min(per_position.values()), max(per_position.values())
        return (f"uneven number of images per slice position ({low} to {high}): a file of "
                f"the series is missing")
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    off = np.abs(gaps - spacing) > max(SPACING_TOLERANCE * spacing, POSITION_TOLERANCE_MM)
    if not off.any():
        return None
    multiples = gaps[off] / spacing
    if np.allclose(multiples, np.round(multiples), atol=SPACING_TOLERANCE) and (
            np.round(multiples) >= 2).all():
        missing = int(np.sum(np.round(multiples) - 1))
        return (f"missing slices: {missing} slice(s) absent from {len(positions)} positions "
                f"{spacing:.2f} mm apart")
    return (f"unevenly spaced slices ({float(gaps.min()):.2f} to {float(gaps.max()):.2f} mm "
            f"apart)")


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct ``values``, merging those within the position tolerance."""
    ordered = np.sort(values)
    keep = np.concatenate([[True], np.diff(ordered) > POSITION_TOLERANCE_MM])
    return ordered[keep]
