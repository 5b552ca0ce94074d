"""Putting one chosen BIDS image where selip reads it: ``nifti/<exam>/<sequence>.nii.gz``
and an anonymised sidecar.

A BIDS image is usually a 3D ``.nii.gz`` already, so it is hard-linked (no copy of a
dataset that may be terabytes; a copy where the link fails, e.g. across filesystems). A
``.nii`` is gzipped byte for byte, so its header and values are exactly the dataset's.
Only a 4D image is rewritten: a DWI becomes the volume of its highest b (the trace when
there are several), as for DICOM. Every output appears under its final name only when
complete (temporary name, then rename), and the sidecar is written last and records the
source (a keyed id of its path), so a re-run skips what is done.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from selip.importer.convert import (
    Converted,
    VolumeError,
    already_converted,
    read_bvals,
    sidecar_path,
    write_sidecar,
    write_three_d,
)

__all__ = ["VolumeError", "read_bvals", "write_volume"]


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def _place(target: Path, fill: Any) -> None:
    """Run ``fill(temporary)`` and rename the temporary to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(target)
    try:
        fill(temporary)
        os.replace(temporary, target)
    finally:
        # also after a rename onto a link of the same file, which leaves both names
        temporary.unlink(missing_ok=True)


def _link_or_copy(source: Path, temporary: Path) -> None:
    try:
        os.link(source, temporary)
    except OSError:  # another filesystem, or links to others' files not allowed
        shutil.copyfile(source, temporary)


def _gzip(source: Path, temporary: Path) -> None:
    with source.open("rb") as raw, gzip.open(temporary, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(raw, packed, 1 << 20)
    os.chmod(temporary, 0o644)


def _three_d(source: Path, target: Path, sequence: str, bvals: list[float] | None) -> str:
    """Write ``target`` from ``source``; returns what was done to get one 3D volume."""
    import nibabel as nib

    image: Any = nib.load(source)
    shape = image.shape
    if len(shape) == 3:
        _place(target, lambda t: _link_or_copy(source, t) if source.name.endswith(".gz")
               else _gzip(source, t))
        return ""
    try:
        return write_three_d(image, bvals, sequence, target)
    except ValueError as err:
        raise VolumeError(str(err)) from None


def _scrubbed(meta: dict[str, Any], needles: list[str]) -> dict[str, Any]:
    """``meta`` without the fields that mention a subject or session label (``IntendedFor``
    and similar hold paths such as ``ses-01/anat/sub-01_T1w.nii.gz``)."""
    return {k: v for k, v in meta.items()
            if not any(n in json.dumps(v, ensure_ascii=False) for n in needles)}


def write_volume(source: Path, target: Path, sequence: str, series_id: str,
                 metadata: dict[str, Any], bvals: list[float] | None, needles: list[str]
                 ) -> Converted:
    """``source`` as ``target`` (3D ``.nii.gz``) and its sidecar; skipped when both exist
    from the same ``series_id``.

    Args:
        metadata: the image's BIDS sidecar, inheritance resolved.
        needles: the subject/session labels as written (``sub-…``), which no sidecar field
            may contain.

    Raises:
        VolumeError: an image that is not one volume (see the message).
        OSError, EOFError, zlib.error, nibabel's ImageFileError: an unreadable source.
    """
    sidecar = sidecar_path(target)
    if already_converted(target, series_id):
        return Converted(target, sidecar, skipped=True)
    how = _three_d(source, target, sequence, bvals)
    write_sidecar(target, _scrubbed(metadata, needles), series_id, sequence, how)
    return Converted(target, sidecar, how)
