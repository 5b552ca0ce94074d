"""Predicted label maps back in the input's own space, written as NIfTI.

A prediction lives on the preprocessed grid (RAS, target spacing, cropped/padded). It is
resampled with nearest neighbour onto the original file's grid (torchio ``Resample`` with
the input as target), so the written mask has the input's shape and affine and overlays
it in any viewer.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torchio as tio

from selip.io.atomic import atomic_write_bytes


def to_original_space(labels: torch.Tensor, preprocessed: tio.ScalarImage,
                      original: str | Path) -> nib.Nifti1Image:
    """(D, H, W) integer labels on ``preprocessed``'s grid → a NIfTI on ``original``'s grid."""
    label_map = tio.LabelMap(tensor=labels.permute(2, 1, 0)[None].to(torch.int16).cpu(),
                             affine=preprocessed.affine)
    resampled = tio.Resample(target=str(original))(label_map)
    reference = nib.load(original)
    data = resampled.data[0].numpy().astype(np.uint8)
    spatial = tuple(reference.shape[:3])  # type: ignore[attr-defined]
    if data.shape != spatial:
        raise RuntimeError(f"resampled mask {data.shape} does not match {original} {spatial}")
    image = nib.Nifti1Image(data, reference.affine)  # type: ignore[attr-defined]
    image.set_qform(reference.affine, code=1)  # type: ignore[attr-defined]
    image.set_sform(reference.affine, code=1)  # type: ignore[attr-defined]
    return image


def write_nifti(image: nib.Nifti1Image, path: Path) -> Path:
    """Write ``image`` as ``.nii.gz`` atomically."""
    atomic_write_bytes(path, gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))
    return path
