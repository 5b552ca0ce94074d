"""From dcm2niix's output to the one 3D volume selip keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selip.importer.convert import _pick_file, anonymised, to_three_d
from selip.importer.series import Series


def test_a_4d_diffusion_image_keeps_its_highest_b_or_their_trace() -> None:
    volume = np.stack([np.full((2, 2, 2), v, np.float32) for v in (100.0, 10.0, 40.0)], -1)
    kept, how = to_three_d(volume, [0.0, 1000.0, 500.0], "dwi")
    assert (kept == 10.0).all() and "b=1000" in how
    three = np.stack([np.full((2, 2, 2), v, np.float32) for v in (100.0, 4.0, 16.0)], -1)
    trace, how = to_three_d(three, [0.0, 1000.0, 1000.0], "dwi")
    np.testing.assert_allclose(trace, 8.0, rtol=1e-5)  # the geometric mean of 4 and 16
    assert "geometric mean of the 2 volumes" in how


def test_a_4d_diffusion_image_without_b_values_is_refused_not_guessed() -> None:
    volume = np.zeros((2, 2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="without a b-value for each"):
        to_three_d(volume, None, "dwi")
    with pytest.raises(ValueError, match="without a b-value for each"):
        to_three_d(volume, [0.0, 1000.0], "dwi")


def test_another_4d_result_keeps_its_first_volume_and_says_so() -> None:
    volume = np.stack([np.full((2, 2, 2), v, np.float32) for v in (7.0, 9.0)], -1)
    kept, how = to_three_d(volume, None, "flair")
    assert (kept == 7.0).all() and how == "4D result with 2 volumes: kept the first"
    assert to_three_d(volume[..., :1], None, "t1")[1] == ""


def test_a_dual_echo_series_gives_its_later_echo_as_t2(tmp_path: Path) -> None:
    for name in ("series_e1.nii.gz", "series_e2.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    series = Series("s", "x", description="PD_T2_tse", series_number=4)
    chosen, note = _pick_file(tmp_path, "t2", series)
    assert chosen.name == "series_e2.nii.gz" and "kept e2" in note
    assert _pick_file(tmp_path, "pd", series)[0].name == "series_e1.nii.gz"


def test_the_sidecar_loses_every_identifying_field() -> None:
    sidecar = {"PatientName": "X", "PatientID": "1", "PatientBirthDate": "1970",
               "AccessionNumber": "A1", "StudyInstanceUID": "1.2", "InstitutionName": "H",
               "StationName": "MR1", "DeviceSerialNumber": "9", "AcquisitionDateTime": "t",
               "ReferringPhysicianName": "Dr", "EchoTime": 0.1, "SeriesDescription": "t2"}
    assert anonymised(sidecar) == {"EchoTime": 0.1, "SeriesDescription": "t2"}
