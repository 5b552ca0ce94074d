"""Walking a DICOM tree: every file's header (never its pixels), grouped into series.

A PACS export is any folder layout, files often without an extension, mixed with
DICOMDIRs, reports and junk. :func:`scan_tree` reads each file's header with pydicom —
only the tags the rules and the geometry checks need, stopping before the pixel data —
and groups the MR images into studies (StudyInstanceUID) and series (SeriesInstanceUID).
A file that is not DICOM is counted and skipped; a DICOM file that cannot be read is
named in one line; neither stops the scan.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selip.importer.series import Instance, Series

#: Storage classes of images selip imports (MR Image, Enhanced MR Image).
MR_IMAGE_CLASSES = ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1")
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

# b-value tags: the standard one, then the vendors' private ones (how dcm2niix reads them)
_B_STANDARD = (0x0018, 0x9087)
_B_SIEMENS = (0x0019, 0x100C)
_B_GE = (0x0043, 0x1039)
_B_PHILIPS = (0x2001, 0x1003)
_GE_B_OFFSET = 1_000_000_000  # GE adds 1e9 to the b-value in some software versions

_TAGS: list[Any] = ["SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription",
         "ProtocolName", "SeriesNumber", "Modality", "Manufacturer", "ImageType",
         "ScanningSequence", "SequenceVariant", "SequenceName", "EchoTime", "RepetitionTime",
         "InversionTime", "ContrastBolusAgent", "SeriesTime", "AccessionNumber",
         "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames",
         "InstanceNumber", _B_STANDARD, _B_SIEMENS, _B_GE, _B_PHILIPS]


class DicomUnavailableError(RuntimeError):
    """pydicom is not installed."""


@dataclass
class TreeScan:
    """What a walk found: ``studies`` (StudyInstanceUID → its series), the number of files
    read, those that are not DICOM (skipped), non-image DICOM by SOP class or modality,
    and one line per file that could not be read."""

    studies: dict[str, list[Series]] = field(default_factory=dict)
    files: int = 0
    not_dicom: int = 0
    not_mr_image: Counter[str] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)


def _text(dataset: Any, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def _tokens(dataset: Any, keyword: str) -> tuple[str, ...]:
    value = dataset.get(keyword)
    if value is None:
        return ()
    values = [value] if isinstance(value, str | bytes | int | float) else list(value)
    return tuple(str(v).strip().upper() for v in values if str(v).strip())


def _number(dataset: Any, keyword: str) -> float | None:
    """A numeric field, or its first value when it holds several (a multi-echo series'
    EchoTime); ``None`` when absent, empty or not a number."""
    return _first_number(dataset.get(keyword))


def _floats(dataset: Any, keyword: str, count: int) -> tuple[float, ...] | None:
    value = dataset.get(keyword)
    try:
        numbers = tuple(float(v) for v in value) if value is not None else ()
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _first_number(value: Any) -> float | None:
    """The first number in a header value: a number, a string, a multi-value, or raw bytes
    of a private tag read without its VR (text such as b"1000\\8", or one binary float —
    how Philips stores its b-value in implicit-VR files)."""
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace").split("\\")[0].strip("\x00 ")
        try:
            return float(text)
        except ValueError:
            if len(value) == 4:
                return float(struct.unpack("<f", value)[0])
            return None
    if not isinstance(value, str | int | float) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else None
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def b_value(dataset: Any) -> float | None:
    """The file's diffusion b-value (s/mm²): the standard tag, else the vendor's own."""
    manufacturer = _text(dataset, "Manufacturer").upper()
    vendor_tag = (_B_SIEMENS if "SIEMENS" in manufacturer else _B_GE if "GE" in manufacturer
                  else _B_PHILIPS if "PHILIPS" in manufacturer else None)
    for tag in (_B_STANDARD, vendor_tag):
        if tag is None or tag not in dataset:
            continue
        value = _first_number(dataset[tag].value)
        if value is None:
            continue
        if tag == _B_GE and value >= _GE_B_OFFSET:
            value -= _GE_B_OFFSET * (value // _GE_B_OFFSET)
        return value
    return None


def read_header(path: Path) -> Any:
    """The header of ``path`` (pydicom ``Dataset``, no pixel data).

    Raises:
        pydicom.errors.InvalidDicomError: not a DICOM file.
        Exception: a DICOM file that cannot be parsed (truncated, corrupt).
    """
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except pydicom.errors.InvalidDicomError:
        # old exports write DICOM without the 128-byte preamble: a group-8 tag first
        with open(path, "rb") as handle:
            start = handle.read(4)
        if start[:2] in (b"\x08\x00", b"\x02\x00"):
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS,
                                   force=True)
        raise


def series_of(dataset: Any) -> Series:
    """A :class:`Series` record from one file's header (without its instances)."""
    return Series(
        study_uid=_text(dataset, "StudyInstanceUID"),
        series_uid=_text(dataset, "SeriesInstanceUID"),
        description=_text(dataset, "SeriesDescription"),
        protocol=_text(dataset, "ProtocolName"),
        series_number=None if _number(dataset, "SeriesNumber") is None
        else int(_number(dataset, "SeriesNumber") or 0),
        modality=_text(dataset, "Modality"),
        manufacturer=_text(dataset, "Manufacturer"),
        image_type=_tokens(dataset, "ImageType"),
        scanning_sequence=_tokens(dataset, "ScanningSequence"),
        sequence_variant=_tokens(dataset, "SequenceVariant"),
        sequence_name=_text(dataset, "SequenceName"),
        echo_time=_number(dataset, "EchoTime"),
        repetition_time=_number(dataset, "RepetitionTime"),
        inversion_time=_number(dataset, "InversionTime"),
        contrast_agent=_text(dataset, "ContrastBolusAgent"),
        series_time=_text(dataset, "SeriesTime"),
        accession_number=_text(dataset, "AccessionNumber"),
    )


def instance_of(dataset: Any, path: Path) -> Instance:
    """The file's place in its series: position, orientation, frames, b-value."""
    position = _floats(dataset, "ImagePositionPatient", 3)
    number = _number(dataset, "InstanceNumber")
    return Instance(
        path=path,
        position=None if position is None else (position[0], position[1], position[2]),
        orientation=_floats(dataset, "ImageOrientationPatient", 6),
        frames=int(_number(dataset, "NumberOfFrames") or 1),
        b_value=b_value(dataset),
        instance_number=None if number is None else int(number),
    )


def _shown(path: Path, relative_to: Path | None) -> Path:
    """How a file is named in a problem line: below ``relative_to`` (the export folder,
    whose own path may carry a patient's name) when it lies there."""
    if relative_to is not None and path.is_relative_to(relative_to):
        return path.relative_to(relative_to)
    return path


def walk_files(root: Path, unreadable: list[str] | None = None,
               relative_to: Path | None = None) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable order; hidden
    files and folders (``.DS_Store``, ``.git``) are skipped. A folder that cannot be
    listed is named in ``unreadable`` (relative to ``relative_to``) and the walk goes on."""
    if root.is_file():
        yield root
        return

    def failed(err: OSError) -> None:
        if unreadable is not None:
            where = Path(err.filename) if err.filename else root
            unreadable.append(f"{_shown(where, relative_to)}: folder not readable "
                              f"({err.strerror or err})")

    for folder, folders, files in os.walk(root, onerror=failed):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def scan_files(paths: Iterable[Path], progress: bool = False, relative_to: Path | None = None
               ) -> TreeScan:
    """Read the header of every file in ``paths`` and group the MR images into series;
    files that cannot be read are named relative to ``relative_to`` when given."""
    try:
        import pydicom.errors
    except ImportError:  # pragma: no cover - pydicom is a dependency
        raise DicomUnavailableError("reading DICOM needs pydicom: pip install pydicom") from None
    from tqdm import tqdm

    scan = TreeScan()
    by_uid: dict[tuple[str, str], Series] = {}
    for path in tqdm(paths, desc="DICOM headers", unit=" files", disable=not progress):
        scan.files += 1
        try:
            dataset = read_header(path)
        except pydicom.errors.InvalidDicomError:
            scan.not_dicom += 1
            continue
        except OSError as err:  # gone or not readable since the walk
            scan.unreadable.append(f"{_shown(path, relative_to)}: not readable "
                                   f"({err.strerror or type(err).__name__})")
            continue
        except Exception as err:  # pydicom raises many kinds on a damaged file
            shown = _shown(path, relative_to)
            scan.unreadable.append(f"{shown}: unreadable DICOM ({type(err).__name__}: "
                                   f"{str(err).replace(str(path), str(shown))[:120]})")
            continue
        sop_class = _text(dataset, "SOPClassUID") or _text(
            getattr(dataset, "file_meta", {}), "MediaStorageSOPClassUID")
        if sop_class == _DICOMDIR_CLASS:
            scan.not_mr_image["DICOMDIR"] += 1
            continue
        # the SOP class decides (an MR spectroscopy or a Siemens report is Modality MR too);
        # Modality only when a file has no class at all
        is_image = sop_class in MR_IMAGE_CLASSES if sop_class else \
            _text(dataset, "Modality") == "MR"
        if not is_image:
            scan.not_mr_image[_text(dataset, "Modality") or sop_class or "unknown"] += 1
            continue
        record = series_of(dataset)
        if not record.study_uid or not record.series_uid:
            scan.unreadable.append(f"{_shown(path, relative_to)}: no StudyInstanceUID or "
                                   f"SeriesInstanceUID")
            continue
        key = (record.study_uid, record.series_uid)
        if key not in by_uid:
            by_uid[key] = record
            scan.studies.setdefault(record.study_uid, []).append(record)
        by_uid[key].instances.append(instance_of(dataset, path))
    return scan


def scan_tree(roots: Iterable[Path], progress: bool = False, relative_to: Path | None = None
              ) -> TreeScan:
    """:func:`scan_files` over every file under each of ``roots``."""
    unreadable: list[str] = []
    files = (path for root in roots for path in walk_files(root, unreadable, relative_to))
    scan = scan_files(files, progress, relative_to)
    scan.unreadable[:0] = unreadable
    return scan
