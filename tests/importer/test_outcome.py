"""Shard parts merge into one manifest; a study split across shards is reported; the
shard units descend through a single top folder."""

from __future__ import annotations

import csv
from pathlib import Path

from selip.importer.dicom_import import shard_units
from selip.importer.outcome import (
    PartSummary,
    StudyOutcome,
    merge,
    parts_complete,
    write_part,
)
from selip.importer.shard import Shard


def outcome(exam: str, **volumes: str) -> StudyOutcome:
    return StudyOutcome(exam, volumes=dict(volumes), report=f"report of {exam}",
                        report_ref=f"ref-{exam}")


def test_parts_merge_sorted_and_a_split_study_is_reported(tmp_path: Path) -> None:
    summary = PartSummary(source="export", report_refs=["ref-a", "ref-b", "ref-c", "ref-z"])
    write_part(tmp_path, Shard(1, 2), [outcome("b", t1="b/t1.nii.gz"),
                                       outcome("a", flair="a/flair.nii.gz")], summary)
    assert not parts_complete(tmp_path, Shard(1, 2))
    assert not (tmp_path / "manifest.csv").exists()  # nothing merged before every part
    write_part(tmp_path, Shard(0, 2), [outcome("a", t1="a/t1.nii.gz"),
                                       StudyOutcome("c", report=None,
                                                    report_status="no report")], summary)
    assert parts_complete(tmp_path, Shard(0, 2))
    merged = merge(tmp_path, 2)
    with open(tmp_path / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # exam a was seen in part by both shards: neither half can be trusted, so it is left
    # out and said
    assert [r["exam_id"] for r in rows] == ["b"]
    assert list(rows[0]) == ["exam_id", "t1", "report"]
    assert merged.duplicates == ["a"]
    assert merged.reports_without_study == 3  # ref-a (left out), ref-c and ref-z
    text = "\n".join(merged.lines())
    assert "exam a: found by several shards" in text and "without --shard" in text
    assert "studies without a report: 1 (1 no report" in text
    log = (tmp_path / "import_log.jsonl").read_text()
    assert "report of" not in log and "ref-" not in log  # no report text, no report keys


def test_shard_units_descend_through_a_single_top_folder(tmp_path: Path) -> None:
    for patient in ("p1", "p2", "p3"):
        (tmp_path / "export" / "DICOM" / patient).mkdir(parents=True)
    (tmp_path / "export" / ".DS_Store").write_text("")
    units = shard_units(tmp_path / "export")
    assert [u.name for u in units] == ["p1", "p2", "p3"]


def test_a_previous_array_jobs_parts_are_never_merged(tmp_path: Path) -> None:
    old = PartSummary(run_id="100")
    write_part(tmp_path, Shard(0, 2), [outcome("a", t1="a/t1.nii.gz")], old)
    write_part(tmp_path, Shard(1, 2), [outcome("b", t1="b/t1.nii.gz")], old)
    write_part(tmp_path, Shard(0, 2), [outcome("a", t1="a/t1.nii.gz")], PartSummary(run_id="200"))
    assert parts_complete(tmp_path, Shard(1, 2), "100") is False  # shard 0 is job 200's now
    assert parts_complete(tmp_path, Shard(0, 2), "200") is False  # shard 1 is still job 100's
    write_part(tmp_path, Shard(1, 2), [outcome("b", t1="b/t1.nii.gz")], PartSummary(run_id="200"))
    assert parts_complete(tmp_path, Shard(1, 2), "200")


def test_a_flat_export_is_refused_for_sharding(tmp_path: Path) -> None:
    import pytest

    from selip.importer.dicom_import import ShardLayoutError

    for number in range(5):
        (tmp_path / f"IM{number:04d}").write_bytes(b"")
    with pytest.raises(ShardLayoutError, match="5 files lie directly in this folder"):
        shard_units(tmp_path)
