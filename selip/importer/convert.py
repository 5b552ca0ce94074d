"""Converting one chosen DICOM series to the one 3D NIfTI volume selip trains on.

dcm2niix — the field's standard converter; its PyPI wheel ships the binary — does the
conversion (slice order, orientation, vendor quirks). Around it selip:

- hands it exactly the series' files (linked into a private folder), so other series of
  the same folder are never mixed in;
- turns a 4D result into the right 3D volume: for diffusion, the volume of the highest b
  (the geometric mean of the volumes at that b when there are several, which is the
  trace); otherwise the first volume, said in the log;
- writes the volume and an anonymised sidecar under their final names only when both are
  complete (temporary name, then rename). The sidecar is written last and records the
  series it came from (a keyed id), so a re-run skips what is done and redoes a sequence
  whose chosen series has changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selip.importer.series import Series
from selip.io.atomic import atomic_write_text

#: Sidecar keys that could identify a patient, a site or a date (dropped, whatever
#: dcm2niix's own anonymisation left).
IDENTIFYING_KEYS = re.compile(
    r"Patient|Physician|Operator|Institution|Station|DeviceSerial|Accession|Date|UID|"
    r"StudyID|Referring|Requesting|Performing|Address|Name$", re.IGNORECASE)
#: The sidecar field that records which series a volume came from (a keyed id).
SERIES_FIELD = "SelipSeries"
#: seconds one series may take
DEFAULT_TIMEOUT = 600
#: dcm2niix's name for the n-th echo of a multi-echo series (``series_e2.nii.gz``)
ECHO_SUFFIX = re.compile(r"_e(\d+)(?:_|\.)")
#: sequences whose image is the latest echo of a multi-echo series
LATE_ECHO_SEQUENCES = ("t2",)


class VolumeError(ValueError):
    """A chosen image that cannot become one 3D volume; the message names no patient."""


def read_bvals(path: Path | None) -> list[float] | None:
    """The b-values of a ``.bval`` file (``None`` when there is none)."""
    if path is None or not path.is_file():
        return None
    try:
        return [float(v) for v in path.read_text().split()]
    except ValueError:
        raise VolumeError("the .bval file holds something other than numbers") from None


class ConversionError(RuntimeError):
    """dcm2niix is missing, fails, or writes nothing usable; the message names the series."""


@dataclass
class Converted:
    """A finished sequence: its NIfTI and sidecar, and what was done to get it."""

    nifti: Path
    sidecar: Path
    note: str = ""
    skipped: bool = False  # already converted from the same series by an earlier run


def dcm2niix_binary(explicit: str | None = None) -> str:
    """The dcm2niix to run: ``explicit``, else the ``dcm2niix`` wheel's, else ``PATH``'s."""
    if explicit:
        if shutil.which(explicit) is None:
            raise ConversionError(f"dcm2niix not found at {explicit}")
        return explicit
    try:
        import dcm2niix

        if Path(dcm2niix.bin).is_file():
            return str(dcm2niix.bin)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found is None:
        raise ConversionError("dcm2niix is not installed: pip install dcm2niix (the wheel "
                              "ships the binary), or put dcm2niix on PATH")
    return found


def sidecar_path(nifti: Path) -> Path:
    return nifti.with_name(nifti.name.removesuffix(".gz").removesuffix(".nii") + ".json")


def already_converted(nifti: Path, series_id: str) -> bool:
    """Whether ``nifti`` and its sidecar exist and came from the series ``series_id``."""
    sidecar = sidecar_path(nifti)
    if not (nifti.is_file() and sidecar.is_file()):
        return False
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get(SERIES_FIELD) == series_id
    except (OSError, ValueError):
        return False


def anonymised(sidecar: dict[str, Any]) -> dict[str, Any]:
    """``sidecar`` without any key that could identify a patient, site or date."""
    return {k: v for k, v in sidecar.items() if not IDENTIFYING_KEYS.search(k)}


def _run_dcm2niix(binary: str, series: Series, work: Path, timeout: float) -> Path:
    """Convert ``series`` into ``work/out``; returns that folder."""
    source, out = work / "in", work / "out"
    source.mkdir()
    out.mkdir()
    for number, instance in enumerate(series.instances):
        os.symlink(instance.path.resolve(), source / f"{number:06d}.dcm")
    command = [binary, "-z", "y", "-b", "y", "-ba", "y", "-f", "series", "-o", str(out),
               str(source)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{series.label}: dcm2niix took longer than {timeout:.0f} s"
                              ) from None
    except OSError as err:
        raise ConversionError(f"{series.label}: dcm2niix could not run ({err})") from None
    if done.returncode != 0 or not any(out.glob("*.nii*")):
        said = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and ("error" in line.lower() or "warning" in line.lower())]
        reason = said[-1].strip() if said else "no volume written"
        raise ConversionError(f"{series.label}: dcm2niix failed (exit {done.returncode}): "
                              f"{reason[:200]}")
    return out


def _pick_file(out: Path, sequence: str, series: Series) -> tuple[Path, str]:
    """The one NIfTI of dcm2niix's output to keep, and a note when there was a choice."""
    files = sorted(out.glob("*.nii.gz"))
    if len(files) == 1:
        return files[0], ""
    with_b = [f for f in files if sidecar_path(f).with_suffix(".bval").is_file()]
    plain = [f for f in files if f.name == "series.nii.gz"]
    echoes = sorted((f for f in files if ECHO_SUFFIX.search(f.name)),
                    key=lambda f: int(ECHO_SUFFIX.search(f.name).group(1)))  # type: ignore[union-attr]
    if sequence == "dwi":
        chosen = (with_b or plain or files)[0]
    elif echoes and sequence in LATE_ECHO_SEQUENCES:
        chosen = echoes[-1]  # a dual-echo PD/T2 series: the T2 image is the later echo
    else:
        chosen = (plain or echoes or files)[0]
    return chosen, (f"dcm2niix wrote {len(files)} files for {series.label}; kept "
                    f"{chosen.name.removeprefix('series').removeprefix('_') or 'the first'}")


def to_three_d(volume: np.ndarray, bvals: list[float] | None, sequence: str
             ) -> tuple[np.ndarray, str]:
    """One 3D volume from a 3D or 4D array, and what was done."""
    if volume.ndim == 3:
        return volume, ""
    if volume.ndim != 4:
        raise ValueError(f"a {volume.ndim}D image, expected 3D or 4D")
    if volume.shape[3] == 1:
        return volume[..., 0], ""
    if sequence == "dwi" and (bvals is None or len(bvals) != volume.shape[3]):
        found = "no .bval file" if bvals is None else f"{len(bvals)} b-values"
        raise ValueError(f"{volume.shape[3]} volumes and {found}: cannot tell the diffusion-"
                         f"weighted one (a 4D diffusion image without a b-value for each)")
    if sequence == "dwi" and bvals is not None:
        top = max(bvals)
        picked = [i for i, b in enumerate(bvals) if b == top]
        if len(picked) == 1:
            return volume[..., picked[0]], f"kept the b={top:g} volume of {len(bvals)}"
        stack = np.clip(volume[..., picked].astype(np.float64), 1e-6, None)
        trace = np.exp(np.log(stack).mean(axis=3)).astype(np.float32)
        return trace, f"the geometric mean of the {len(picked)} volumes at b={top:g} (trace)"
    return volume[..., 0], f"4D result with {volume.shape[3]} volumes: kept the first"


def write_nifti(image: Any, target: Path) -> None:
    """Save ``image`` to ``target`` through a temporary name in the same folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".nii.gz", dir=target.parent)
    os.close(fd)
    try:
        image.to_filename(name)
        os.chmod(name, 0o644)
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def write_three_d(image: Any, bvals: list[float] | None, sequence: str, target: Path) -> str:
    """Write ``image``'s one 3D volume (:func:`to_three_d`) to ``target`` with its own
    affine and header, ``descrip`` and ``aux_file`` emptied (converters put acquisition
    details there); returns what was done to get one volume.

    Raises:
        ValueError: an image that is not one volume (see :func:`to_three_d`).
    """
    import nibabel as nib

    volume, how = to_three_d(np.asanyarray(image.dataobj), bvals, sequence)
    header = image.header.copy()
    header["descrip"] = b""
    header["aux_file"] = b""
    header.set_data_dtype(volume.dtype)
    write_nifti(nib.Nifti1Image(volume, image.affine, header), target)
    return how


def write_sidecar(nifti: Path, meta: dict[str, Any], series_id: str, sequence: str,
                  how: str) -> Path:
    """The JSON sidecar of ``nifti``: ``meta`` anonymised, plus the source's keyed id (so
    a re-run can skip it), the sequence and what made the volume 3D. Written last and
    atomically: its presence says the volume is complete."""
    sidecar = sidecar_path(nifti)
    record = {**anonymised(meta), SERIES_FIELD: series_id, "SelipSequence": sequence}
    if how:
        record["SelipVolume"] = how
    atomic_write_text(sidecar, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return sidecar


def convert_series(series: Series, sequence: str, target: Path, series_id: str,
                   binary: str, timeout: float = DEFAULT_TIMEOUT) -> Converted:
    """Convert ``series`` to ``target`` (``.nii.gz``) and its anonymised sidecar.

    Skipped when both already exist from the same ``series_id`` (a keyed id of the
    SeriesInstanceUID).

    Raises:
        ConversionError: dcm2niix missing or failing, or an output that is not a volume.
    """
    import nibabel as nib

    sidecar = sidecar_path(target)
    if already_converted(target, series_id):
        return Converted(target, sidecar, skipped=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dcm2niix-", dir=target.parent) as tmp:
        out = _run_dcm2niix(binary, series, Path(tmp), timeout)
        chosen, note = _pick_file(out, sequence, series)
        try:
            bvals = read_bvals(sidecar_path(chosen).with_suffix(".bval"))
            how = write_three_d(nib.load(chosen), bvals, sequence, target)
        except ValueError as err:
            raise ConversionError(f"{series.label}: dcm2niix wrote {err}") from None
        json_path = sidecar_path(chosen)
        meta = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    write_sidecar(target, meta, series_id, sequence, how)
    return Converted(target, sidecar, "; ".join(n for n in (note, how) if n))
