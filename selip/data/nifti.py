"""Reading NIfTI volumes with clear errors.

nibabel reads lazily, so a truncated or corrupt file often only fails when the voxels
are read; every failure here becomes a :class:`VolumeError` whose message says what is
wrong in words a user can act on.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np


class VolumeError(ValueError):
    """A volume that cannot be used; the message says why."""


def require_file(path: Path) -> None:
    """Raise unless ``path`` is a file. A directory is named as one: a DICOM series
    folder put where its converted NIfTI belongs is a common slip, and "file not found"
    would send the user looking for something that is there.

    Raises:
        VolumeError: ``path`` is a directory, or does not exist.
    """
    if path.is_dir():
        raise VolumeError(f"is a directory, not a NIfTI file: {path}")
    if not path.is_file():
        raise VolumeError(f"file not found: {path}")


def load_volume(path: str | Path, first_volume_of_4d: bool = False,
                check_finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load a 3D volume as native-endian float32 with its affine.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        first_volume_of_4d: take the first volume of a 4D file instead of rejecting it.
        check_finite: reject volumes holding NaN or Inf voxels.

    Returns:
        ``(data, affine)``: data (X, Y, Z) float32 in the file's voxel order, affine (4, 4).

    Raises:
        VolumeError: missing, a directory, unreadable, corrupt, 4D (unless allowed), not
            3D, or NaN/Inf.
    """
    path = Path(path)
    require_file(path)
    try:
        image: nib.Nifti1Image = nib.load(path)  # type: ignore[assignment]
    except Exception as err:  # nibabel raises many types for a bad header
        raise VolumeError(f"not a readable NIfTI file: {path} ({err})") from None
    return volume_from_image(image, str(path), first_volume_of_4d, check_finite)


def volume_from_image(image: nib.Nifti1Image, name: str, first_volume_of_4d: bool = False,
                      check_finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_volume` for an image already open (``name`` goes into the errors)."""
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 4:
        if not first_volume_of_4d:
            raise VolumeError(f"4D volume of shape {tuple(image.shape)}: {name}; expected 3D "
                              "(set data.first_volume_of_4d to use the first volume)")
    elif len(shape) != 3:
        raise VolumeError(f"volume has {len(image.shape)} dimensions {tuple(image.shape)}, "
                          f"expected 3: {name}")
    try:
        proxy = image.dataobj
        data = np.asarray(proxy[..., 0] if len(image.shape) == 4 else proxy, dtype=np.float32)
    except (EOFError, OSError, zlib.error, ValueError) as err:
        raise VolumeError(f"corrupt or truncated NIfTI data: {name} ({err})") from None
    return checked_volume(data.reshape(shape[:3]), np.asarray(image.affine), name, check_finite)


def checked_volume(data: np.ndarray, affine: np.ndarray, name: str, check_finite: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) float32 contiguous data and its (4, 4) float64 affine, checked: 3D, finite
    voxels (``check_finite``), a finite non-singular affine; ``name`` goes into the errors."""
    if data.ndim != 3:
        raise VolumeError(f"volume has {data.ndim} dimensions {tuple(data.shape)}, expected 3: "
                          f"{name}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if check_finite and not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise VolumeError(f"{bad} NaN/Inf voxels: {name}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise VolumeError(f"affine of shape {tuple(affine.shape)}, expected (4, 4): {name}")
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"invalid (singular or non-finite) affine: {name}")
    return data, affine
