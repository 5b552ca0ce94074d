"""Synthetic but realistic classic MR DICOM for the ``selip import dicom`` tests.

Every file is a single-frame MR Image Storage instance (explicit VR little endian, 128-byte
preamble + ``DICM``), so ``pydicom`` reads it back and ``dcm2niix`` converts it like a scanner
export. Geometry is derived from a NIfTI (RAS+) voxel->world affine:

* volume axis 0 (X, index ``i``) runs along a DICOM row (increasing column index),
* volume axis 1 (Y, index ``j``) runs down a DICOM column (increasing row index),
* volume axis 2 (Z, index ``k``) is the slice axis.

So slice ``k`` is stored as ``volume[:, :, k].T`` (Rows = Y, Columns = X),
``ImageOrientationPatient`` = LPS unit vectors of the affine's first two columns,
``PixelSpacing`` = [row spacing = |column 1|, column spacing = |column 0|] and
``ImagePositionPatient`` = LPS of ``affine @ (0, 0, k, 1)``. LPS = diag(-1, -1, 1) @ RAS.

``dcm2niix`` then writes its own (row-flipped) orientation; bring both sides to the same frame
with ``nibabel.as_closest_canonical`` before comparing voxels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
SIEMENS = "SIEMENS"
GE = "GE MEDICAL SYSTEMS"
PHILIPS = "Philips Medical Systems"
VENDORS = (SIEMENS, GE, PHILIPS)

#: LPS <-> RAS (its own inverse).
_LPS = np.diag([-1.0, -1.0, 1.0])

#: Where each vendor keeps the b-value in classic DICOM (private creator, group, element, VR).
VENDOR_B_VALUE_TAGS: dict[str, tuple[str, int, int, str]] = {
    SIEMENS: ("SIEMENS MR HEADER", 0x0019, 0x0C, "IS"),  # (0019,100C) B_value
    GE: ("GEMS_PARM_01", 0x0043, 0x39, "IS"),  # (0043,1039) Slop_int_6..9
    PHILIPS: ("Philips Imaging DD 001", 0x2001, 0x03, "FL"),  # (2001,1003) Diffusion_B_Factor
}

#: GE adds this bias to the b-value in (0043,1039)'s first value (dcm2niix takes it modulo 1e9).
GE_B_VALUE_BIAS = 1_000_000_000

LOCALIZER_IMAGE_TYPE = ("ORIGINAL", "PRIMARY", "LOCALIZER")
#: ImageOrientationPatient (LPS cosines) of the usual scanner planes.
AXIAL_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL_IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL_IOP = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@dataclass
class SeriesSpec:
    """One series: its voxels (RAS affine) and the header fields that classify it.

    ``volume`` is (X, Y, Z), or (X, Y, Z, len(b_values)) for DWI. Values are written as 16-bit
    integers: non-integer floats are rounded (``np.rint``); negative values give int16
    (PixelRepresentation 1), otherwise uint16.
    """

    description: str
    series_number: int
    volume: np.ndarray
    affine: np.ndarray
    protocol: str = ""
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND")
    scanning_sequence: tuple[str, ...] = ("SE",)
    sequence_variant: tuple[str, ...] = ("NONE",)
    sequence_name: str = ""
    echo_time: float | None = None
    repetition_time: float | None = None
    inversion_time: float | None = None
    contrast_agent: str = ""
    b_values: tuple[float, ...] = ()
    vendor: str = SIEMENS
    b_value_tag: str = "standard"
    skip_slices: tuple[int, ...] = ()
    orientation_override: dict[int, tuple[float, ...]] = field(default_factory=dict)
    # --- extra keyword options -------------------------------------------------------------
    #: slice index -> different ImagePositionPatient (LPS, mm), e.g. for a 3-plane localiser.
    position_override: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    #: "" = deterministic UID from (study UID, series number, description).
    series_uid: str = ""
    #: "" = the study's frame of reference (the same for every series of a study).
    frame_of_reference_uid: str = ""
    mr_acquisition_type: str = "2D"
    #: Siemens DWI: SequenceName per b-value, "*ep_b1000t" / "*ep_b0" (unless sequence_name).
    siemens_b_sequence_names: bool = True
    series_time: str = ""  # "" = 08:00:00 + series number minutes


@dataclass
class StudySpec:
    """One exam (study) with its patient identity and series."""

    study_uid: str
    accession_number: str
    patient_name: str = "DOE^JANE"
    patient_id: str = "PID-0001"
    birth_date: str = "19700101"
    series: list[SeriesSpec] = field(default_factory=list)
    study_date: str = "20240115"
    study_time: str = "080000"
    study_description: str = "MRI HEAD"
    patient_sex: str = "F"


# --------------------------------------------------------------------------------------------
# Geometry


def _unit(vector: np.ndarray) -> tuple[np.ndarray, float]:
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise ValueError("affine has a zero-length axis")
    return vector / norm, norm


@dataclass(frozen=True)
class PlaneGeometry:
    """The DICOM plane geometry of a NIfTI (RAS) affine (all vectors LPS, mm)."""

    orientation: tuple[float, ...]  # ImageOrientationPatient: row cosines, column cosines
    pixel_spacing: tuple[float, float]  # PixelSpacing: [between rows, between columns]
    slice_step: np.ndarray  # from one slice's ImagePositionPatient to the next
    slice_thickness: float
    origin: np.ndarray  # ImagePositionPatient of slice 0 (the centre of voxel (0, 0, 0))

    def position(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient of slice ``k``."""
        x, y, z = (self.origin + k * self.slice_step).tolist()
        return (x, y, z)


def dicom_geometry(affine: np.ndarray) -> PlaneGeometry:
    """The plane geometry :func:`write_series` writes for ``affine``.

    Raises if the slice axis is not perpendicular to the image plane (DICOM slices cannot be
    sheared).
    """
    affine = np.asarray(affine, dtype=float)
    row_dir, column_spacing = _unit(_LPS @ affine[:3, 0])
    column_dir, row_spacing = _unit(_LPS @ affine[:3, 1])
    slice_dir, slice_spacing = _unit(_LPS @ affine[:3, 2])
    if abs(float(row_dir @ column_dir)) > 1e-4:
        raise ValueError("in-plane axes of the affine are not orthogonal")
    if abs(abs(float(np.cross(row_dir, column_dir) @ slice_dir)) - 1.0) > 1e-4:
        raise ValueError("slice axis of the affine is not perpendicular to the image plane")
    return PlaneGeometry(orientation=(*row_dir.tolist(), *column_dir.tolist()),
                         pixel_spacing=(row_spacing, column_spacing),
                         slice_step=_LPS @ affine[:3, 2], slice_thickness=slice_spacing,
                         origin=_LPS @ affine[:3, 3])


def axial_affine(spacing: Sequence[float] = (2.0, 2.0, 3.0),
                 shape: Sequence[int] = (24, 28, 20),
                 orientation: str = "RAS",
                 center: Sequence[float] = (3.5, -12.25, 20.0)) -> np.ndarray:
    """An axis-aligned affine whose axes point along ``orientation`` (e.g. "RAS", "LPS", "LAS").

    The origin is chosen so that the volume's centre lands on ``center`` (RAS, mm), which makes
    the origin non-trivial (neither 0 nor a corner at a round number).
    """
    axes = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0),
            "I": (2, -1.0)}
    affine = np.eye(4)
    for column, (code, step) in enumerate(zip(orientation.upper(), spacing, strict=True)):
        axis, sign = axes[code]
        affine[:3, column] = 0.0
        affine[axis, column] = sign * float(step)
    middle = (np.asarray(shape, dtype=float) - 1.0) / 2.0
    affine[:3, 3] = np.asarray(center, dtype=float) - affine[:3, :3] @ middle
    return affine


def reorient(volume: np.ndarray, affine: np.ndarray,
             axcodes: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray]:
    """``volume``/``affine`` with voxel axes permuted/flipped to ``axcodes`` (same world image)."""
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(axcodes))
    data = nib.orientations.apply_orientation(volume, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, volume.shape)
    return np.ascontiguousarray(data), new_affine


# --------------------------------------------------------------------------------------------
# Volumes

#: Label values of :func:`head_labels`.
BACKGROUND, SCALP, BRAIN, CSF, LESION = 0, 1, 2, 3, 4


def head_labels(shape: Sequence[int] = (24, 28, 20)) -> np.ndarray:
    """A toy head label map: scalp shell, brain, central "ventricles", a left frontal lesion."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1.0, 1.0, int(n)) for n in shape],
                                indexing="ij"))
    radius = (grid[0] / 0.85) ** 2 + (grid[1] / 0.9) ** 2 + (grid[2] / 0.85) ** 2
    labels = np.zeros(tuple(int(n) for n in shape), dtype=np.int16)
    labels[radius < 1.0] = SCALP
    labels[radius < 0.7] = BRAIN
    ventricles = (grid[0] / 0.15) ** 2 + (grid[1] / 0.35) ** 2 + (grid[2] / 0.3) ** 2 < 1.0
    labels[ventricles] = CSF
    # left (low x in RAS voxel order), anterior (high y), slightly superior
    lesion = ((grid[0] + 0.4) ** 2 + (grid[1] - 0.35) ** 2 + (grid[2] - 0.1) ** 2) < 0.18**2
    labels[lesion] = LESION
    return labels


def contrast_volume(labels: np.ndarray, intensities: Sequence[float], noise: float = 10.0,
                    seed: int = 0) -> np.ndarray:
    """int16 image of ``labels`` with one mean intensity per label plus Gaussian noise (>= 0)."""
    rng = np.random.default_rng(seed)
    means = np.asarray(intensities, dtype=float)[labels]
    noisy = means + rng.normal(0.0, noise, labels.shape) * (labels > 0)
    return np.clip(np.rint(noisy), 0, 4000).astype(np.int16)


def demo_like_volume(shape: Sequence[int] = (24, 28, 20),
                     spacing: Sequence[float] = (2.0, 2.0, 3.0),
                     seed: int = 0,
                     orientation: str = "RAS",
                     intensities: Sequence[float] = (0.0, 300.0, 600.0, 900.0, 1200.0),
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A small int16 head-like volume (an ellipsoid with a bright blob) and its RAS affine.

    Axial slices; ``orientation`` picks the direction of the voxel axes ("RAS": positive
    diagonal, "LPS": what a scanner's axial DICOM looks like in RAS terms, ...). The origin is
    non-trivial (see :func:`axial_affine`).
    """
    labels = head_labels(shape)
    return (contrast_volume(labels, intensities, seed=seed),
            axial_affine(spacing, shape, orientation))


# --------------------------------------------------------------------------------------------
# Writing


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def _fmt(value: float) -> str:
    """A DS string (at most 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text[:16]


def _pixels(volume: np.ndarray) -> tuple[np.ndarray, int]:
    """``volume`` as uint16 (all >= 0) or int16 (some negative), and its PixelRepresentation."""
    values = np.asarray(volume)
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values)
    low, high = float(values.min()), float(values.max())
    if low >= 0:
        if high > np.iinfo(np.uint16).max:
            raise ValueError(f"voxel value {high} does not fit uint16")
        return values.astype(np.uint16), 0
    if low < np.iinfo(np.int16).min or high > np.iinfo(np.int16).max:
        raise ValueError(f"voxel range [{low}, {high}] does not fit int16")
    return values.astype(np.int16), 1


def _add_b_value(ds: Dataset, series: SeriesSpec, b_value: float) -> None:
    """The b-value (where ``series.b_value_tag`` says) and the vendor's other diffusion tags."""
    if series.b_value_tag not in ("standard", "vendor"):
        raise ValueError(f"b_value_tag must be 'standard' or 'vendor', not {series.b_value_tag!r}")
    if series.b_value_tag == "standard":
        ds.DiffusionBValue = float(b_value)  # (0018,9087) FD
        ds.DiffusionDirectionality = "NONE" if b_value == 0 else "ISOTROPIC"
    else:
        creator, group, element, vr = VENDOR_B_VALUE_TAGS[series.vendor]
        block = ds.private_block(group, creator, create=True)
        if series.vendor == SIEMENS:  # (0019,100C) IS
            block.add_new(element, vr, str(round(b_value)))
        elif series.vendor == GE:  # (0043,1039) IS: b + 1e9 \ 8 \ 0 \ 0
            block.add_new(element, vr, [str(GE_B_VALUE_BIAS + round(b_value)), "8", "0", "0"])
        else:  # (2001,1003) FL
            block.add_new(element, vr, float(b_value))
    if series.vendor == GE:
        # GE writes these with every DWI image, whichever b-value tag it uses
        acquisition = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        for offset in (0xBB, 0xBC, 0xBD):  # (0019,10BB..BD) gradient direction: none (trace)
            acquisition.add_new(offset, "DS", "0")
        acquisition.add_new(0xDF, "DS", "1")  # (0019,10DF) NumberOfDiffusionT2
        # (0019,10E0) NumberOfDiffusionDirection: 0 = isotropic (trace) DWI. Without it dcm2niix
        # reads a b > 0 with a zero gradient vector as a b0 and writes bval 0.
        acquisition.add_new(0xE0, "DS", "0")
    elif series.vendor == PHILIPS:
        philips = ds.private_block(0x2001, VENDOR_B_VALUE_TAGS[PHILIPS][0], create=True)
        philips.add_new(0x04, "CS", "0" if b_value == 0 else "I")  # (2001,1004) direction


def _clock(seconds: float) -> str:
    """A DICOM TM "HHMMSS.ffffff" for ``seconds`` after midnight."""
    whole = int(seconds)
    return f"{whole // 3600:02d}{whole // 60 % 60:02d}{whole % 60:02d}" \
        f".{round((seconds - whole) * 1e6):06d}"


def _seconds(tm: str) -> float:
    return int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:] or 0)


def _series_dataset(study: StudySpec, series: SeriesSpec, pixels: np.ndarray,
                    pixel_representation: int, geometry: PlaneGeometry, series_uid: str,
                    frame_uid: str) -> Dataset:
    """The header fields shared by every file of ``series`` (see :func:`_set_slice`)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(series.image_type)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.AcquisitionDate = study.study_date
    ds.ContentDate = study.study_date
    series_time = series.series_time or _clock(8 * 3600 + 60 * series.series_number)
    ds.StudyTime = study.study_time
    ds.SeriesTime = series_time
    ds.ContentTime = series_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = "MR"
    ds.Manufacturer = series.vendor
    ds.InstitutionName = "SYNTHETIC HOSPITAL"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = {SIEMENS: "Skyra", GE: "DISCOVERY MR750", PHILIPS: "Ingenia"}.get(
        series.vendor, "UNKNOWN")
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.patient_sex
    ds.BodyPartExamined = "HEAD"
    ds.ScanningSequence = list(series.scanning_sequence)
    ds.SequenceVariant = list(series.sequence_variant)
    ds.ScanOptions = ""
    ds.MRAcquisitionType = series.mr_acquisition_type
    ds.InPlanePhaseEncodingDirection = "COL"
    if series.sequence_name:
        ds.SequenceName = series.sequence_name
    ds.SliceThickness = _fmt(geometry.slice_thickness)
    if series.repetition_time is not None:
        ds.RepetitionTime = _fmt(series.repetition_time)
    if series.echo_time is not None:
        ds.EchoTime = _fmt(series.echo_time)
    if series.inversion_time is not None:
        ds.InversionTime = _fmt(series.inversion_time)
    ds.MagneticFieldStrength = "3"
    ds.SpacingBetweenSlices = _fmt(geometry.slice_thickness)
    ds.EchoTrainLength = "1"
    ds.FlipAngle = "90"
    ds.PatientPosition = "HFS"
    if series.contrast_agent:
        ds.ContrastBolusAgent = series.contrast_agent
    ds.ProtocolName = series.protocol or series.description
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series.series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[0])  # slice k = pixels[..., k].T
    ds.PixelSpacing = [_fmt(v) for v in geometry.pixel_spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = pixel_representation
    ds.WindowCenter = _fmt(float(pixels.mean()))
    ds.WindowWidth = _fmt(max(1.0, float(pixels.max()) - float(pixels.min())))
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    return ds


def _set_slice(ds: Dataset, series: SeriesSpec, instance: int, slice_index: int,
               pixels: np.ndarray, geometry: PlaneGeometry, b_value: float | None,
               acquisition_offset: float) -> None:
    """Set the per-file fields of ``ds`` (from :func:`_series_dataset`) for one slice."""
    sop_uid = UID(_uid(ds.SeriesInstanceUID, instance))
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = instance
    ds.AcquisitionTime = _clock(_seconds(ds.SeriesTime) + acquisition_offset)
    if (series.vendor == SIEMENS and b_value is not None and series.siemens_b_sequence_names
            and not series.sequence_name):
        ds.SequenceName = f"*ep_b{round(b_value)}" + ("t" if b_value > 0 else "")
    orientation = series.orientation_override.get(slice_index, geometry.orientation)
    position = series.position_override.get(slice_index, geometry.position(slice_index))
    ds.ImagePositionPatient = [_fmt(float(v)) for v in position]
    ds.ImageOrientationPatient = [_fmt(float(v)) for v in orientation]
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float))
    ds.SliceLocation = _fmt(float(normal @ np.asarray(position, dtype=float)))
    if b_value is not None:
        _add_b_value(ds, series, b_value)
    ds.PixelData = np.ascontiguousarray(pixels).astype("<" + pixels.dtype.str[1:]).tobytes()


def series_uid_of(study: StudySpec, series: SeriesSpec) -> str:
    """The SeriesInstanceUID :func:`write_series` gives ``series``."""
    return series.series_uid or _uid(study.study_uid, series.series_number, series.description)


def frame_of_reference_uid_of(study: StudySpec, series: SeriesSpec) -> str:
    """The FrameOfReferenceUID :func:`write_series` gives ``series`` (shared by the study)."""
    return series.frame_of_reference_uid or _uid(study.study_uid, "frame-of-reference")


def write_series(study: StudySpec, series: SeriesSpec, folder: Path, extension: str = "",
                 name_prefix: str = "IM") -> list[Path]:
    """One classic single-frame MR Image Storage file per slice (per b-value for DWI).

    Files are ``folder / f"{name_prefix}{instance:05d}{extension}"``; instance numbers run
    1..N over b-values (outer) and slices (inner) as if every slice were written, so the slices
    of ``skip_slices`` (left out of every b-value) leave gaps in InstanceNumber, as in a
    broken export. One header is built per series and updated per file.
    """
    volume = np.asarray(series.volume)
    b_values: list[float | None] = [float(b) for b in series.b_values] or [None]
    if series.b_values and (volume.ndim != 4 or volume.shape[3] != len(series.b_values)):
        raise ValueError(f"DWI volume must be (X, Y, Z, {len(series.b_values)}), "
                         f"got {volume.shape}")
    if not series.b_values and volume.ndim != 3:
        raise ValueError(f"volume must be (X, Y, Z), got {volume.shape}")
    pixels, pixel_representation = _pixels(volume.reshape(*volume.shape[:3], -1))
    geometry = dicom_geometry(series.affine)
    series_uid = series_uid_of(study, series)
    frame_uid = frame_of_reference_uid_of(study, series)
    folder.mkdir(parents=True, exist_ok=True)
    ds = _series_dataset(study, series, pixels, pixel_representation, geometry, series_uid,
                         frame_uid)
    written: list[Path] = []
    instance = 0
    for n, b_value in enumerate(b_values):
        for k in range(pixels.shape[2]):
            instance += 1
            if k in series.skip_slices:
                continue
            # slices spread over one TR (sequential order), one TR per b-value
            offset = (n + k / pixels.shape[2]) * (series.repetition_time or 1000.0) / 1000.0
            _set_slice(ds, series, instance, k, pixels[:, :, k, n].T, geometry, b_value, offset)
            path = folder / f"{name_prefix}{instance:05d}{extension}"
            ds.save_as(path, enforce_file_format=True)
            written.append(path)
    return written


def series_dirname(series: SeriesSpec) -> str:
    """The sub-folder :func:`write_study` (layout "series") writes ``series`` into."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", series.description).strip("_") or "series"
    return f"{series.series_number:03d}_{name}"


def write_study(study: StudySpec, folder: Path, extension: str = "",
                layout: str = "series") -> list[Path]:
    """Write every series of ``study`` under ``folder``.

    ``layout="series"``: one sub-folder per series (:func:`series_dirname`);
    ``layout="flat"``: all files in ``folder`` itself, named ``S{series:03d}I{instance:05d}``.
    """
    if layout not in ("series", "flat"):
        raise ValueError(f"layout must be 'series' or 'flat', not {layout!r}")
    written: list[Path] = []
    for series in study.series:
        if layout == "series":
            written += write_series(study, series, folder / series_dirname(series), extension)
        else:
            written += write_series(study, series, folder, extension,
                                    name_prefix=f"S{series.series_number:03d}I")
    return written


def write_not_dicom(path: Path, content: str = "This folder was exported by PACS.\n"
                    "It is not a DICOM file.\n") -> Path:
    """A text file (e.g. ``README`` or ``DICOMDIR``-like junk, usually without extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def write_truncated_dicom(source: Path, path: Path, cut: str = "header",
                          keep: int | None = None) -> Path:
    """A copy of the DICOM file ``source`` cut short (an interrupted transfer/export).

    ``cut="header"`` (default): the file ends inside an element value about half-way through
    the main data set; the preamble, ``DICM``, the file meta and the first part of the header
    survive, the rest of the header and all pixel data are gone.
    ``cut="pixels"``: the whole header survives and the file ends 300 bytes early, inside the
    pixel data. ``keep`` (bytes) overrides either.

    What pydicom 3.0 does with them (checked by ``test_dicom_factory.py``) — it does **not**
    raise on reading; the damage only shows later:

    * header cut: ``dcmread(path)``, ``dcmread(path, stop_before_pixels=True)`` and
      ``dcmread(path, force=True)`` all return the partial data set silently (no warning):
      the elements before the cut (the last one with a short value), no geometry, no
      ``SeriesInstanceUID``, no ``PixelData``; ``.pixel_array`` raises ``AttributeError``.
    * pixel cut: ``dcmread(path)`` returns the full header and a short ``PixelData``;
      ``.pixel_array`` raises ``ValueError`` ("number of bytes of pixel data is less than
      expected"). With ``stop_before_pixels=True`` the header is complete and nothing hints at
      the damage: compare the file size with Rows x Columns x BitsAllocated / 8 to detect it.

    dcm2niix (v1.0.20260724) on a series folder holding one such file: a pixel cut makes it
    print "File not large enough to store image data" and exit 1 **without writing anything**
    for the whole run; a header cut makes it drop that file and write the series with a
    missing slice (exit 1, "Interslice distance varies").
    """
    data = Path(source).read_bytes()
    if keep is None:
        meta_end = _file_meta_end(data)
        pixel_tag = data.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010), little endian
        if pixel_tag < meta_end:
            raise ValueError(f"{source} has no PixelData element to cut before/inside")
        if cut == "header":
            keep = _inside_value(data, meta_end, (meta_end + pixel_tag) // 2)
        elif cut == "pixels":
            keep = max(pixel_tag + 13, len(data) - 300)
        else:
            raise ValueError(f"cut must be 'header' or 'pixels', not {cut!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:keep])
    return path


def _file_meta_end(data: bytes) -> int:
    """Offset of the first byte after the file meta group (explicit VR, group 0002)."""
    if data[128:132] != b"DICM":
        raise ValueError("not a DICOM Part 10 file (no DICM prefix)")
    # (0002,0000) FileMetaInformationGroupLength: tag(4) VR(2) len(2) value(4 bytes, UL)
    group_length = int.from_bytes(data[140:144], "little")
    return 144 + group_length


def _inside_value(data: bytes, start: int, target: int) -> int:
    """A cut position at or after ``target`` that falls strictly inside an element's value.

    Walks the explicit-VR-little-endian elements from ``start`` so the truncated file ends in
    the middle of a value (a declared length that runs past the end), never cleanly between
    two elements (which pydicom would accept as a shorter data set).
    """
    long_vrs = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                b"UT", b"UV"}
    position = start
    while position + 8 <= len(data):
        vr = data[position + 4:position + 6]
        if vr in long_vrs:
            length = int.from_bytes(data[position + 8:position + 12], "little")
            value_start = position + 12
        else:
            length = int.from_bytes(data[position + 6:position + 8], "little")
            value_start = position + 8
        value_end = value_start + length
        if value_end > target and length >= 2:
            return min(max(target, value_start + 1), value_end - 1)
        position = value_end
    return max(start + 1, len(data) - 1)


# --------------------------------------------------------------------------------------------
# A realistic exam

#: Per-vendor SeriesDescription conventions.
DESCRIPTIONS: dict[str, dict[str, str]] = {
    SIEMENS: {"localizer": "localizer", "t1": "t1_se_tra", "t2": "t2_tse_tra",
              "flair": "t2_tirm_tra_dark-fluid", "dwi": "ep2d_diff_3scan_trace",
              "adc": "ep2d_diff_3scan_trace_ADC", "mpr": "t1_mpr_sag", "t1c": "t1_se_tra_KM"},
    GE: {"localizer": "localizer", "t1": "Ax T1", "t2": "Ax T2 FSE", "flair": "Ax T2 FLAIR",
         "dwi": "Ax DWI", "adc": "ADC", "mpr": "t1_mpr_sag", "t1c": "Ax T1 +C"},
    PHILIPS: {"localizer": "localizer", "t1": "T1W_SE", "t2": "T2W_TSE", "flair": "T2W_FLAIR",
              "dwi": "DWI", "adc": "dADC", "mpr": "t1_mpr_sag", "t1c": "T1W_SE_GD"},
}

#: Mean intensity per label (background, scalp, brain, CSF, lesion) for each contrast.
INTENSITIES: dict[str, tuple[float, ...]] = {
    "localizer": (0.0, 300.0, 500.0, 200.0, 500.0),
    "t1": (0.0, 700.0, 500.0, 150.0, 300.0),
    "t2": (0.0, 350.0, 450.0, 1500.0, 1100.0),
    "flair": (0.0, 400.0, 500.0, 60.0, 1300.0),
    "flair_repeat": (0.0, 420.0, 520.0, 70.0, 1350.0),
    "dwi_b0": (0.0, 100.0, 600.0, 1200.0, 900.0),
    "dwi_b1000": (0.0, 20.0, 250.0, 60.0, 700.0),
    "adc": (0.0, 0.0, 800.0, 3000.0, 500.0),
}


def standard_study_spec(study_uid: str, accession: str, vendor: str = SIEMENS,
                        b_value_tag: str = "standard", extra: Sequence[SeriesSpec] = (),
                        seed: int = 0, patient_id: str = "PID-0001",
                        patient_name: str = "DOE^JANE",
                        ) -> tuple[StudySpec, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The :class:`StudySpec` of :func:`standard_study` and its expected imports (not written)."""
    if vendor not in DESCRIPTIONS:
        raise ValueError(f"vendor must be one of {VENDORS}, not {vendor!r}")
    names = DESCRIPTIONS[vendor]
    shape, spacing = (24, 28, 20), (2.0, 2.0, 3.0)
    labels = head_labels(shape)
    affine = axial_affine(spacing, shape, "RAS")

    def image(kind: str, offset: int, on: np.ndarray = labels) -> np.ndarray:
        return contrast_volume(on, INTENSITIES[kind], seed=seed * 100 + offset)

    t1, t2, flair, flair_repeat = (image("t1", 1), image("t2", 2), image("flair", 3),
                                   image("flair_repeat", 4))

    # 3-plane localiser: one axial, one sagittal, one coronal slice through the centre
    loc_shape, loc_spacing = (24, 24, 3), (10.0, 10.0, 10.0)
    loc_labels = head_labels((24, 24, 24))[:, :, 10:13]
    loc_affine = axial_affine(loc_spacing, loc_shape, "LPS", center=(0.0, 0.0, 0.0))
    half = (np.asarray(loc_shape[:2], dtype=float) - 1.0) / 2.0 * 10.0

    def plane_position(iop: tuple[float, ...]) -> tuple[float, float, float]:
        row, column = np.asarray(iop[:3]), np.asarray(iop[3:])
        corner = -(row * half[0] + column * half[1])
        return (float(corner[0]), float(corner[1]), float(corner[2]))

    localizer = SeriesSpec(
        names["localizer"], 1, image("localizer", 0, loc_labels), loc_affine,
        image_type=LOCALIZER_IMAGE_TYPE, scanning_sequence=("GR",),
        sequence_variant=("SP", "OSP"), sequence_name="*fl2d1" if vendor == SIEMENS else "",
        echo_time=5.0, repetition_time=8.6,
        orientation_override={1: SAGITTAL_IOP, 2: CORONAL_IOP},
        position_override={0: plane_position(AXIAL_IOP), 1: plane_position(SAGITTAL_IOP),
                           2: plane_position(CORONAL_IOP)})

    t1_series = SeriesSpec(names["t1"], 2, t1, affine, sequence_variant=("SP", "OSP"),
                           sequence_name="se2d1" if vendor == SIEMENS else "",
                           echo_time=10.0, repetition_time=500.0)
    t2_series = SeriesSpec(names["t2"], 3, t2, affine, sequence_variant=("SK", "SP", "OSP"),
                           sequence_name="*tse2d1_15" if vendor == SIEMENS else "",
                           echo_time=100.0, repetition_time=4000.0)
    flair_series = SeriesSpec(names["flair"], 4, flair, affine, scanning_sequence=("SE", "IR"),
                              sequence_variant=("SK", "SP", "MP", "OSP"),
                              sequence_name="*tir2d1_16" if vendor == SIEMENS else "",
                              echo_time=120.0, repetition_time=9000.0, inversion_time=2500.0)

    # DWI: coarser grid, b0 + b1000 in one series, same slice positions
    dwi_shape, dwi_spacing = (16, 16, 12), (3.0, 3.0, 5.0)
    dwi_labels = head_labels(dwi_shape)
    dwi_affine = axial_affine(dwi_spacing, dwi_shape, "RAS")
    b0, b1000 = image("dwi_b0", 5, dwi_labels), image("dwi_b1000", 6, dwi_labels)
    adc = image("adc", 7, dwi_labels)
    dwi_series = SeriesSpec(names["dwi"], 5, np.stack([b0, b1000], axis=-1), dwi_affine,
                            image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"),
                            scanning_sequence=("EP",), sequence_variant=("SK", "SP"),
                            echo_time=89.0, repetition_time=5800.0, b_values=(0.0, 1000.0))
    adc_series = replace(dwi_series, description=names["adc"], series_number=6, volume=adc,
                         image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), b_values=(),
                         sequence_name="*ep_b0_1000" if vendor == SIEMENS else "")

    mpr, mpr_affine = reorient(t1, affine, ("P", "I", "L"))
    mpr_type = "MPR" if vendor == SIEMENS else "REFORMATTED"
    mpr_series = SeriesSpec(names["mpr"], 7, mpr, mpr_affine,
                            image_type=("DERIVED", "SECONDARY", mpr_type),
                            sequence_variant=("SP", "OSP"), echo_time=10.0,
                            repetition_time=500.0)
    repeat = replace(flair_series, series_number=8, volume=flair_repeat,
                     orientation_override={}, position_override={})

    own = [localizer, t1_series, t2_series, flair_series, dwi_series, adc_series, mpr_series,
           repeat]
    study = StudySpec(study_uid, accession, patient_name=patient_name, patient_id=patient_id,
                      series=[*(replace(s, vendor=vendor, b_value_tag=b_value_tag) for s in own),
                              *extra])
    expected = {"t1": (t1, affine), "t2": (t2, affine), "flair": (flair_repeat, affine),
                "dwi": (b1000, dwi_affine), "adc": (adc, dwi_affine)}
    return study, expected


def contrast_t1_series(vendor: str = SIEMENS, series_number: int = 9, seed: int = 0,
                       agent: str = "GADOVIST") -> tuple[SeriesSpec, np.ndarray, np.ndarray]:
    """A post-contrast axial T1 (ContrastBolusAgent set) for ``standard_study(extra=...)``.

    Returns the series, its voxels and affine (the lesion enhances).
    """
    shape, spacing = (24, 28, 20), (2.0, 2.0, 3.0)
    affine = axial_affine(spacing, shape, "RAS")
    volume = contrast_volume(head_labels(shape), (0.0, 700.0, 500.0, 150.0, 1400.0),
                             seed=seed * 100 + 9)
    series = SeriesSpec(DESCRIPTIONS[vendor]["t1c"], series_number, volume, affine,
                        sequence_variant=("SP", "OSP"), echo_time=10.0, repetition_time=500.0,
                        contrast_agent=agent, vendor=vendor)
    return series, volume, affine


def standard_study(root: Path, study_uid: str, accession: str, vendor: str = SIEMENS,
                   extra: Sequence[SeriesSpec] = (), b_value_tag: str = "standard",
                   extension: str = "", layout: str = "series", seed: int = 0,
                   patient_id: str = "PID-0001", patient_name: str = "DOE^JANE",
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write a realistic head exam under ``root`` and return what should be imported.

    Series (number: content): 1 three-plane localiser, 2 axial T1 SE, 3 axial T2 TSE,
    4 axial FLAIR, 5 DWI trace b0 + b1000, 6 ADC, 7 sagittal T1 reformat (derived),
    8 repeat of the FLAIR (different voxels; the one to import), then ``extra`` as given.
    Descriptions follow ``vendor``'s conventions (:data:`DESCRIPTIONS`); with
    ``b_value_tag="vendor"`` the DWI b-values sit in that vendor's private tag.

    Returns ``{"t1", "t2", "flair", "dwi", "adc"} -> (voxels as written, RAS affine)``;
    "flair" is the repeat (series 8), "dwi" the b1000 volume.
    """
    study, expected = standard_study_spec(study_uid, accession, vendor, b_value_tag, extra,
                                          seed, patient_id, patient_name)
    write_study(study, Path(root), extension, layout)
    return expected
