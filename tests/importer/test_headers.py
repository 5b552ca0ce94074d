"""Header values as archives really hold them: multi-valued, empty, vendor bytes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pydicom.dataset import Dataset

from selip.importer.headers import _first_number, b_value, scan_tree, series_of


def test_numbers_in_every_form_an_archive_holds_them() -> None:
    assert _first_number(b"1000\\8\\0\\0") == 1000.0  # GE's IS read without its VR
    assert _first_number(struct.pack("<f", 800.0)) == 800.0  # Philips' FL, implicit VR
    assert _first_number(["12.5", "95"]) == 12.5
    assert _first_number("") is None and _first_number(None) is None
    assert _first_number("n/a") is None


def test_a_multi_echo_series_keeps_its_first_echo_time_and_an_empty_number_is_none() -> None:
    dataset = Dataset()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    dataset.EchoTime = [12.0, 95.0]
    dataset.SeriesNumber = ""
    record = series_of(dataset)
    assert record.echo_time == 12.0 and record.series_number is None


def test_vendor_b_values() -> None:
    ge = Dataset()
    ge.Manufacturer = "GE MEDICAL SYSTEMS"
    ge.add_new((0x0043, 0x1039), "IS", [1000001000, 8, 0, 0])
    assert b_value(ge) == 1000.0
    philips = Dataset()
    philips.Manufacturer = "Philips Medical Systems"
    philips.add_new((0x2001, 0x1003), "UN", struct.pack("<f", 1000.0))
    assert b_value(philips) == 1000.0


def test_a_folder_that_cannot_be_listed_is_named_and_the_walk_goes_on(tmp_path: Path,
                                                                      monkeypatch) -> None:
    locked = tmp_path / "export" / "locked"
    locked.mkdir(parents=True)
    (tmp_path / "export" / "README").write_text("not dicom")
    real_scandir = os.scandir

    def scandir(path):  # what a folder without read permission does (CI runs as root)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_tree([tmp_path / "export"], relative_to=tmp_path / "export")
    assert scan.not_dicom == 1
    assert scan.unreadable == ["locked: folder not readable (Permission denied)"]
