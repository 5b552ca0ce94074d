"""The synthetic DICOM factory writes what it claims: headers, geometry, dcm2niix round trips."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from tests.importer.dicom_factory import (
    GE,
    GE_B_VALUE_BIAS,
    PHILIPS,
    SIEMENS,
    VENDOR_B_VALUE_TAGS,
    SeriesSpec,
    StudySpec,
    contrast_t1_series,
    demo_like_volume,
    series_dirname,
    standard_study,
    standard_study_spec,
    write_not_dicom,
    write_series,
    write_study,
    write_truncated_dicom,
)

LPS = np.diag([-1.0, -1.0, 1.0])


def _dcm2niix_binary() -> str | None:
    try:
        import dcm2niix
    except ImportError:
        return shutil.which("dcm2niix")
    return str(dcm2niix.bin)


DCM2NIIX = _dcm2niix_binary()
needs_dcm2niix = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix is not installed")


def dcm2niix(series_dir: Path, out: Path) -> tuple[int, str, list[Path]]:
    """Convert one folder the way the importer will: (exit code, log, NIfTI files written)."""
    assert DCM2NIIX is not None
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [DCM2NIIX, "-z", "y", "-b", "y", "-ba", "y", "-f", "%s", "-o", str(out), str(series_dir)],
        capture_output=True, text=True, timeout=60, check=False)
    return result.returncode, result.stdout + result.stderr, sorted(out.glob("*.nii.gz"))


def run_dcm2niix(series_dir: Path, out: Path) -> list[Path]:
    """:func:`dcm2niix` that must succeed; returns the NIfTI files written."""
    code, log, files = dcm2niix(series_dir, out)
    assert code == 0, log
    return files


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return np.asarray(image.dataobj), image.affine


def load_nifti(path: Path) -> nib.Nifti1Image:
    image = nib.load(path)
    assert isinstance(image, nib.Nifti1Image)
    return image


def assert_same_image(converted: Path, volume: np.ndarray, affine: np.ndarray,
                      frame: int | None = None) -> None:
    image = load_nifti(converted)
    data = np.asarray(image.dataobj)
    if frame is not None:
        assert data.ndim == 4
        data = data[..., frame]
    got, got_affine = canonical(data, image.affine)
    want, want_affine = canonical(volume, affine)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_affine, want_affine, atol=1e-3)


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def as_list(value: object) -> list[str]:
    """A DICOM multi-valued attribute as a list (pydicom gives one value as a plain str)."""
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def series_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


@pytest.fixture(scope="module")
def dwi_export(tmp_path_factory: pytest.TempPathFactory):
    """(vendor, b_value_tag) -> (study, DWI series, its folder, expected); each written once."""
    cache: dict[tuple[str, str], tuple[StudySpec, SeriesSpec, Path, tuple]] = {}

    def get(vendor: str, b_value_tag: str) -> tuple[StudySpec, SeriesSpec, Path, tuple]:
        if (vendor, b_value_tag) not in cache:
            study, expected = standard_study_spec("1.2.3", "A1", vendor=vendor,
                                                  b_value_tag=b_value_tag)
            dwi = next(s for s in study.series if s.b_values)
            folder = tmp_path_factory.mktemp("dwi") / "dicom"
            write_series(study, dwi, folder)
            cache[vendor, b_value_tag] = (study, dwi, folder, expected["dwi"])
        return cache[vendor, b_value_tag]

    return get


@pytest.fixture(scope="module")
def siemens_study(tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    root = tmp_path_factory.mktemp("siemens") / "dicom"
    expected = standard_study(root, "1.2.826.0.1.3680043.8.498.1", "ACC-0001", vendor=SIEMENS)
    return root, expected


# --- headers ----------------------------------------------------------------------------------


def test_standard_study_headers_read_back(siemens_study) -> None:
    root, expected = siemens_study
    folders = sorted(p.name for p in root.iterdir())
    assert folders == ["001_localizer", "002_t1_se_tra", "003_t2_tse_tra",
                       "004_t2_tirm_tra_dark_fluid", "005_ep2d_diff_3scan_trace",
                       "006_ep2d_diff_3scan_trace_ADC", "007_t1_mpr_sag",
                       "008_t2_tirm_tra_dark_fluid"]
    assert set(expected) == {"t1", "t2", "flair", "dwi", "adc"}

    series_uids, sop_uids = set(), set()
    for folder in sorted(root.iterdir()):
        for path in series_files(folder):
            raw = path.read_bytes()
            assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM"
            ds = read(path)
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == \
                "1.2.840.10008.5.1.4.1.1.4"
            assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
            assert (ds.Modality, ds.Manufacturer) == ("MR", SIEMENS)
            assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate) == \
                ("DOE^JANE", "PID-0001", "19700101")
            assert ds.AccessionNumber == "ACC-0001"
            assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.1"
            assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel) == \
                (16, 16, 15, 1)
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert ds.StudyDate and ds.SeriesTime and ds.AcquisitionTime
            series_uids.add((folder.name, ds.SeriesInstanceUID))
            sop_uids.add(ds.SOPInstanceUID)
    assert len({uid for _, uid in series_uids}) == len(folders)  # one UID per series
    assert len(sop_uids) == sum(len(series_files(f)) for f in root.iterdir())

    localizer = [read(p) for p in series_files(root / "001_localizer")]
    assert len(localizer) == 3
    assert all(as_list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"] for ds in localizer)
    assert len({tuple(float(v) for v in ds.ImageOrientationPatient) for ds in localizer}) == 3

    t1 = read(series_files(root / "002_t1_se_tra")[0])
    assert (float(t1.EchoTime), float(t1.RepetitionTime)) == (10.0, 500.0)
    assert "InversionTime" not in t1 and as_list(t1.ScanningSequence) == ["SE"]

    for flair_dir, number in (("004_t2_tirm_tra_dark_fluid", 4), ("008_t2_tirm_tra_dark_fluid", 8)):
        flair = read(series_files(root / flair_dir)[0])
        assert flair.SeriesDescription == "t2_tirm_tra_dark-fluid"
        assert flair.SeriesNumber == number
        assert float(flair.InversionTime) == 2500.0
        assert "IR" in as_list(flair.ScanningSequence)
        assert float(flair.EchoTime) == 120.0 and float(flair.RepetitionTime) == 9000.0

    dwi = [read(p) for p in series_files(root / "005_ep2d_diff_3scan_trace")]
    assert len(dwi) == 2 * expected["dwi"][0].shape[2]
    assert all(as_list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]
               for ds in dwi)
    assert {(float(ds.DiffusionBValue), ds.SequenceName) for ds in dwi} == \
        {(0.0, "*ep_b0"), (1000.0, "*ep_b1000t")}
    adc = read(series_files(root / "006_ep2d_diff_3scan_trace_ADC")[0])
    assert as_list(adc.ImageType) == ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
    mpr = read(series_files(root / "007_t1_mpr_sag")[0])
    assert as_list(mpr.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert [float(v) for v in mpr.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]  # sagittal


@pytest.mark.parametrize(("vendor", "descriptions"), [
    (GE, {"Ax T2 FLAIR", "Ax DWI", "ADC"}),
    (PHILIPS, {"T2W_FLAIR", "DWI", "dADC"}),
])
def test_vendor_description_conventions(vendor: str, descriptions: set[str]) -> None:
    study, _ = standard_study_spec("1.2.3", "A1", vendor=vendor)
    assert descriptions <= {s.description for s in study.series}
    assert {s.vendor for s in study.series} == {vendor}


@pytest.mark.parametrize("vendor", [SIEMENS, GE, PHILIPS])
def test_vendor_b_value_tags(dwi_export, vendor: str) -> None:
    _, dwi, folder, _ = dwi_export(vendor, "vendor")
    files = series_files(folder)
    n_slices = dwi.volume.shape[2]
    assert len(files) == 2 * n_slices
    creator, group, element, _ = VENDOR_B_VALUE_TAGS[vendor]
    seen: list[float] = []
    for path in files:
        ds = read(path)
        assert "DiffusionBValue" not in ds  # only the vendor tag carries it
        value = ds.private_block(group, creator)[element].value
        if vendor == GE:  # IS multi-value "1000001000\8\0\0"
            assert [int(v) for v in value[1:]] == [8, 0, 0]
            b = float(int(value[0]) - GE_B_VALUE_BIAS)
            assert ds[0x0019, 0x10E0].value == 0  # NumberOfDiffusionDirection: isotropic
        else:
            b = float(value)
        if vendor == SIEMENS:
            assert ds.SequenceName == ("*ep_b0" if b == 0 else f"*ep_b{b:g}t")
        seen.append(b)
    assert sorted(set(seen)) == [0, 1000]
    assert seen.count(0) == seen.count(1000) == n_slices


# --- geometry (pydicom only) ------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS"])
def test_geometry_reconstructs_the_affine(tmp_path: Path, orientation: str) -> None:
    volume, affine = demo_like_volume(shape=(12, 14, 6), orientation=orientation)
    study = StudySpec("1.2.3", "A1")
    files = write_series(study, SeriesSpec("t1", 2, volume, affine), tmp_path)
    assert len(files) == 6
    for k, path in enumerate(files):
        ds = read(path)
        row, column = np.reshape([float(v) for v in ds.ImageOrientationPatient], (2, 3))
        row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        # voxel (i, j, k) = column i, row j of slice k  ->  LPS, then to RAS
        assert (ds.Rows, ds.Columns) == (14, 12)
        np.testing.assert_allclose(LPS @ row * column_spacing, affine[:3, 0], atol=1e-5)
        np.testing.assert_allclose(LPS @ column * row_spacing, affine[:3, 1], atol=1e-5)
        np.testing.assert_allclose(LPS @ position, affine[:3, :] @ [0, 0, k, 1], atol=1e-5)
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 3.0
        np.testing.assert_array_equal(ds.pixel_array, volume[:, :, k].T)


def test_negative_values_are_written_as_int16(tmp_path: Path) -> None:
    volume, affine = demo_like_volume(shape=(8, 8, 2))
    volume = volume.astype(np.int16) - 100
    path = write_series(StudySpec("1.2.3", "A1"), SeriesSpec("x", 1, volume, affine),
                        tmp_path)[0]
    ds = read(path)
    assert ds.PixelRepresentation == 1
    np.testing.assert_array_equal(ds.pixel_array, volume[:, :, 0].T)


# --- dcm2niix round trips ---------------------------------------------------------------------


@needs_dcm2niix
@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS"])
def test_dcm2niix_round_trip_t1(tmp_path: Path, orientation: str) -> None:
    volume, affine = demo_like_volume(orientation=orientation, seed=3)
    series = SeriesSpec("t1_se_tra", 2, volume, affine, echo_time=10.0, repetition_time=500.0)
    write_series(StudySpec("1.2.3", "A1"), series, tmp_path / "dicom")
    (converted,) = run_dcm2niix(tmp_path / "dicom", tmp_path / "nii")
    assert converted.name == "2.nii.gz"
    assert_same_image(converted, volume, affine)


@needs_dcm2niix
@pytest.mark.parametrize(("vendor", "b_value_tag"), [
    (SIEMENS, "standard"), (SIEMENS, "vendor"), (GE, "vendor"), (GE, "standard"),
    (PHILIPS, "vendor"), (PHILIPS, "standard"),
])
def test_dcm2niix_round_trip_dwi(dwi_export, tmp_path: Path, vendor: str,
                                 b_value_tag: str) -> None:
    _, dwi, folder, (b1000, affine) = dwi_export(vendor, b_value_tag)
    (converted,) = run_dcm2niix(folder, tmp_path / "nii")
    assert converted.name == "5.nii.gz"
    bvals = [float(v) for v in converted.with_name("5.bval").read_text().split()]
    assert bvals == [0.0, 1000.0]  # read from the tag the factory chose
    assert load_nifti(converted).shape == (*dwi.volume.shape[:3], 2)
    assert_same_image(converted, b1000, affine, frame=int(np.argmax(bvals)))
    assert_same_image(converted, dwi.volume[..., 0], affine, frame=int(np.argmin(bvals)))


@needs_dcm2niix
def test_dcm2niix_converts_the_standard_study(siemens_study, tmp_path: Path) -> None:
    root, expected = siemens_study
    study, _ = standard_study_spec("1.2.826.0.1.3680043.8.498.1", "ACC-0001")
    by_number = {s.series_number: s for s in study.series}
    for name, number in (("t1", 2), ("t2", 3), ("flair", 8), ("adc", 6)):
        (converted,) = run_dcm2niix(root / series_dirname(by_number[number]),
                                    tmp_path / name)
        assert_same_image(converted, *expected[name])
        sidecar = json.loads(converted.with_name(f"{number}.json").read_text())
        assert sidecar["SeriesNumber"] == number
        assert sidecar["SeriesDescription"] == by_number[number].description
        # -ba y: the sidecar carries no patient identity
        for key in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                    "StudyInstanceUID", "SeriesInstanceUID"):
            assert key not in sidecar
    # the sagittal reformat holds the same voxels as the axial T1
    (mpr,) = run_dcm2niix(root / series_dirname(by_number[7]), tmp_path / "mpr")
    assert nib.aff2axcodes(load_nifti(mpr).affine)[2] in ("L", "R")
    assert_same_image(mpr, *expected["t1"])


# --- broken exports ---------------------------------------------------------------------------


def test_skip_slices_and_orientation_override(tmp_path: Path) -> None:
    volume, affine = demo_like_volume(shape=(10, 10, 8))
    study = StudySpec("1.2.3", "A1")
    full = write_series(study, SeriesSpec("t1", 2, volume, affine), tmp_path / "full")
    gaps = write_series(study, SeriesSpec("t1", 3, volume, affine, skip_slices=(3, 5)),
                        tmp_path / "gaps")
    assert len(full) - len(gaps) == 2
    numbers = sorted(read(p).InstanceNumber for p in gaps)
    assert numbers == [1, 2, 3, 5, 7, 8]  # the missing slices leave instance-number gaps

    tilted = (1.0, 0.0, 0.0, 0.0, 0.8660254, -0.5)
    mixed = write_series(study, SeriesSpec("t1", 4, volume, affine,
                                           orientation_override={6: tilted}), tmp_path / "mixed")
    orientations = [tuple(float(v) for v in read(p).ImageOrientationPatient) for p in mixed]
    assert orientations[6] == pytest.approx(tilted)
    assert len(set(orientations)) == 2 and orientations.count(orientations[0]) == 7


def test_dwi_skip_slices_apply_to_every_b_value(tmp_path: Path) -> None:
    volume, affine = demo_like_volume(shape=(6, 6, 5))
    dwi = SeriesSpec("dwi", 5, np.stack([volume, volume // 2], axis=-1), affine,
                     b_values=(0.0, 1000.0), skip_slices=(0,))
    files = write_series(StudySpec("1.2.3", "A1"), dwi, tmp_path)
    assert sorted(read(p).InstanceNumber for p in files) == [2, 3, 4, 5, 7, 8, 9, 10]


def test_truncated_header_reads_silently_without_pixels(siemens_study, tmp_path: Path) -> None:
    root, _ = siemens_study
    source = series_files(root / "002_t1_se_tra")[9]
    path = write_truncated_dicom(source, tmp_path / "IM00010")
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM" and 132 < len(raw) < source.stat().st_size // 2
    for stop_before_pixels, force in ((False, False), (True, False), (False, True)):
        # pydicom 3 does not raise ...
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=force)
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert "PatientID" in ds  # the early header survives
        for lost in ("SeriesInstanceUID", "ImagePositionPatient", "Rows", "PixelData"):
            assert lost not in ds  # ... but everything after the cut is gone
        with pytest.raises(AttributeError):
            _ = ds.pixel_array


def test_truncated_pixels_fail_on_pixel_access(siemens_study, tmp_path: Path) -> None:
    root, _ = siemens_study
    source = series_files(root / "002_t1_se_tra")[9]
    path = write_truncated_dicom(source, tmp_path / "IM00010", cut="pixels")
    assert path.stat().st_size == source.stat().st_size - 300
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert header.SeriesInstanceUID == read(source).SeriesInstanceUID  # header is complete
    ds = pydicom.dcmread(path)
    assert len(ds.PixelData) < ds.Rows * ds.Columns * 2
    with pytest.raises(ValueError, match="pixel data"):
        _ = ds.pixel_array


@needs_dcm2niix
def test_dcm2niix_flags_broken_series(tmp_path: Path) -> None:
    """What the importer sees from dcm2niix on a broken series: never a silent full volume."""
    volume, affine = demo_like_volume(shape=(8, 8, 6))
    study = StudySpec("1.2.3", "A1")
    files = write_series(study, SeriesSpec("t1", 2, volume, affine), tmp_path / "pixels")
    write_truncated_dicom(files[2], files[2], cut="pixels")
    code, log, converted = dcm2niix(tmp_path / "pixels", tmp_path / "out_pixels")
    assert code != 0 and "not large enough" in log and converted == []

    write_series(study, SeriesSpec("t1", 2, volume, affine, skip_slices=(2,)), tmp_path / "gap")
    code, log, converted = dcm2niix(tmp_path / "gap", tmp_path / "out_gap")
    assert code != 0 and "Interslice distance varies" in log
    assert [load_nifti(p).shape for p in converted] == [(8, 8, 5)]  # stacked across the gap


def test_contrast_t1_as_extra_series(tmp_path: Path) -> None:
    series, volume, _ = contrast_t1_series(GE, series_number=9)
    study, _ = standard_study_spec("1.2.3", "A1", vendor=GE, extra=[series])
    assert [s.series_number for s in study.series][-2:] == [8, 9]
    files = write_series(study, study.series[-1], tmp_path)
    ds = read(files[0])
    assert (ds.SeriesDescription, ds.ContrastBolusAgent) == ("Ax T1 +C", "GADOVIST")
    np.testing.assert_array_equal(ds.pixel_array, volume[:, :, 0].T)


def test_not_dicom_is_refused(tmp_path: Path) -> None:
    path = write_not_dicom(tmp_path / "README")
    assert path.suffix == "" and path.read_text().strip()
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(path)


def test_flat_layout_and_extension(tmp_path: Path) -> None:
    volume, affine = demo_like_volume(shape=(6, 6, 3))
    study = StudySpec("1.2.3", "A1", series=[SeriesSpec("a", 1, volume, affine),
                                              SeriesSpec("b", 2, volume, affine)])
    files = write_study(study, tmp_path, extension=".dcm", layout="flat")
    assert len(files) == len(set(files)) == 6
    assert {p.parent for p in files} == {tmp_path} and all(p.suffix == ".dcm" for p in files)
    assert {read(p).SeriesNumber for p in files} == {1, 2}
