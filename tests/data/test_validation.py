"""Every bad input of the manifest gives its own error, with row and column."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from selip.data.datamodule import SelipDataModule
from selip.data.manifest import ManifestError, read_manifest
from selip.data.validation import Requirements, check_files, check_structure
from selip.io.fingerprint import FileDigests
from tests.conftest import head_volume, write_manifest, write_nifti


def _problems(manifest_path: Path, needs: Requirements | None = None, files: bool = True,
              first_volume_of_4d: bool = False) -> list[str]:
    needs = needs or Requirements()
    manifest, problems = read_manifest(manifest_path)
    problems += check_structure(manifest, needs)
    if files:
        problems += check_files(manifest, needs, first_volume_of_4d, progress=False)
    return [str(p) for p in problems]


def _row(exam_id: str, t1: str, report: str = "No abnormality detected.", **extra: str):
    return {"exam_id": exam_id, "t1": t1, "report": report, **extra}


@pytest.fixture
def good(tmp_path: Path) -> str:
    write_nifti(tmp_path / "good.nii.gz", head_volume())
    return "good.nii.gz"


def test_a_good_manifest_has_no_problems(tmp_path, good):
    path = write_manifest(tmp_path / "m.csv", [_row("a", good), _row("b", good)])
    assert _problems(path) == []


def test_missing_file(tmp_path, good):
    path = write_manifest(tmp_path / "m.csv", [_row("a", good), _row("b", "nope.nii.gz")])
    [problem] = _problems(path)
    assert "row 2 (exam b), column 't1': file not found" in problem
    assert str(tmp_path / "nope.nii.gz") in problem


def test_unreadable_and_truncated_nifti(tmp_path, good):
    (tmp_path / "garbage.nii").write_bytes(b"this is not a nifti file" * 20)
    whole = gzip.compress((tmp_path / good).read_bytes() and
                          gzip.decompress((tmp_path / good).read_bytes()))
    (tmp_path / "cut.nii.gz").write_bytes(whole[: len(whole) // 2])
    path = write_manifest(tmp_path / "m.csv", [_row("a", "garbage.nii"), _row("b", "cut.nii.gz")])
    problems = _problems(path)
    assert len(problems) == 2
    assert "row 1 (exam a), column 't1': not a readable NIfTI file" in problems[0]
    assert "row 2 (exam b), column 't1': corrupt or truncated" in problems[1]


def test_4d_volume_is_an_error_unless_first_volume_is_configured(tmp_path):
    write_nifti(tmp_path / "dwi4d.nii.gz", np.stack([head_volume()] * 3, axis=-1))
    path = write_manifest(tmp_path / "m.csv", [_row("a", "dwi4d.nii.gz")])
    [problem] = _problems(path)
    assert "4D volume of shape (12, 14, 10, 3)" in problem and "first_volume_of_4d" in problem
    assert _problems(path, first_volume_of_4d=True) == []


def test_nan_and_inf_voxels(tmp_path):
    bad = head_volume()
    bad[1, 2, 3] = np.nan
    bad[2, 2, 2] = np.inf
    write_nifti(tmp_path / "nan.nii.gz", bad)
    path = write_manifest(tmp_path / "m.csv", [_row("a", "nan.nii.gz")])
    [problem] = _problems(path)
    assert "2 NaN/Inf voxels" in problem and "column 't1'" in problem


def test_a_constant_volume_is_named_but_an_empty_mask_is_not(tmp_path, good):
    write_nifti(tmp_path / "zeros.nii.gz", np.zeros((12, 14, 10), np.float32))
    write_nifti(tmp_path / "flat.nii.gz", np.full((12, 14, 10), 3.5, np.float32))
    rows = [_row("a", "zeros.nii.gz", mask="zeros.nii.gz"), _row("b", good, mask="zeros.nii.gz"),
            _row("c", "flat.nii.gz")]
    path = write_manifest(tmp_path / "m.csv", rows, columns=["exam_id", "t1", "report", "mask"])
    problems = _problems(path)
    assert len(problems) == 2  # a lesion-free exam's all-zero mask is fine
    assert "row 1 (exam a), column 't1': constant volume (every voxel is 0)" in problems[0]
    assert "row 3 (exam c), column 't1': constant volume (every voxel is 3.5)" in problems[1]
    assert str(tmp_path / "flat.nii.gz") in problems[1]


def test_a_file_passed_by_older_checks_is_checked_again(tmp_path):
    """A marker written before constant volumes were refused does not let one through."""
    write_nifti(tmp_path / "zeros.nii.gz", np.zeros((12, 14, 10), np.float32))
    path = write_manifest(tmp_path / "m.csv", [_row("a", "zeros.nii.gz")])
    manifest, _ = read_manifest(path)
    digests = FileDigests(tmp_path / "digests.json")
    digest = digests.digest(tmp_path / "zeros.nii.gz")
    marker = tmp_path / "checked" / digest[:2] / digest
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"first_volume_of_4d": False}))  # the old checks' marker
    problems = check_files(manifest, Requirements(), digests=digests,
                           checked_dir=tmp_path / "checked", progress=False)
    assert len(problems) == 1 and "constant volume" in str(problems[0])


def test_empty_report_and_malformed_structured_report(tmp_path, good):
    rows = [_row("a", good, report="  "), _row("b", good, report='{"FLAIR": 3}')]
    problems = _problems(write_manifest(tmp_path / "m.csv", rows))
    assert problems[0].endswith("row 1 (exam a), column 'report': report is empty")
    assert "row 2 (exam b), column 'report'" in problems[1] and "must be a list" in problems[1]


def test_unknown_sequence_column(tmp_path, good):
    rows = [{**_row("a", good), "t1_weird": good}]
    [problem] = _problems(write_manifest(tmp_path / "m.csv", rows))
    assert "unknown sequence column 't1_weird'" in problem and "data.sequences" in problem
    # declaring it as a sequence makes it legal
    assert _problems(write_manifest(tmp_path / "m.csv", rows),
                     Requirements(sequences=("t1", "t1_weird"))) == []


def test_duplicate_exam_id(tmp_path, good):
    path = write_manifest(tmp_path / "m.csv", [_row("a", good), _row("a", good), _row("b", good)])
    problems = _problems(path)
    assert len(problems) == 2
    assert all("duplicate exam_id 'a' (2 rows)" in p for p in problems)


def test_label_and_mask_missing_where_the_task_needs_them(tmp_path, good):
    rows = [_row("a", good, label="x", mask=good), _row("b", good, label="", mask="")]
    path = write_manifest(tmp_path / "m.csv", rows)
    assert _problems(path) == []
    problems = _problems(path, Requirements(require_label=True, require_mask=True))
    assert any("row 2 (exam b), column 'label': label is missing" in p for p in problems)
    assert any("row 2 (exam b), column 'mask': mask is missing" in p for p in problems)


def test_missing_columns_bad_split_and_requested_sequence(tmp_path, good):
    path = write_manifest(tmp_path / "m.csv", [{"t1": good, "split": "holdout"}])
    _, problems = read_manifest(path)
    assert {"required column 'exam_id' is missing", "required column 'report' is missing"} <= {
        p.message.split(" (")[0] for p in problems}
    rows = [_row("a", good, split="holdout"), _row("b", good, split="")]
    problems2 = _problems(write_manifest(tmp_path / "m2.csv", rows),
                          Requirements(sequences=("t1", "flair")))
    assert any("sequence 'flair' was requested" in p for p in problems2)
    assert any("split 'holdout' is not one of train, val, test" in p for p in problems2)
    assert any("split is empty in 1 of 2 rows" in p for p in problems2)


def test_every_problem_is_reported_at_once(tmp_path, good):
    bad = head_volume()
    bad[0, 0, 0] = np.nan
    write_nifti(tmp_path / "nan.nii.gz", bad)
    rows = [_row("a", "missing.nii"), _row("a", good, report=""), _row("c", "nan.nii.gz")]
    path = write_manifest(tmp_path / "m.csv", rows)
    datamodule = SelipDataModule(str(path), cache_dir=str(tmp_path / "cache"), progress=False)
    # the table's problems (duplicate id twice, empty report) do not hide the files' ones
    with pytest.raises(ManifestError) as caught:
        datamodule.prepare_data()
    assert [(p.row, p.column) for p in caught.value.problems] == [
        (1, "exam_id"), (1, "t1"), (2, "exam_id"), (2, "report"), (3, "t1")]  # in row order
    rows[1]["exam_id"], rows[1]["report"] = "b", "ok text"
    write_manifest(path, rows)
    with pytest.raises(ManifestError) as caught:
        datamodule.prepare_data()
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 problems in the data:"
    assert "row 1 (exam a)" in lines[1] and "file not found" in lines[1]
    assert "row 3 (exam c)" in lines[2] and "NaN/Inf" in lines[2]


def test_jsonl_manifest_with_structured_report(tmp_path, good):
    report = {"FLAIR": [{"location": "left frontal lobe", "appearance": "hyperintense signal"}]}
    lines = [json.dumps(_row("a", good, report=report)), "{broken", json.dumps([1])]  # type: ignore[arg-type]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    manifest, problems = read_manifest(path)
    assert json.loads(manifest.exams[0].report) == report
    assert [p.row for p in problems] == [2, 3]
    assert "not valid JSON" in str(problems[0]) and "JSON object" in str(problems[1])


def test_file_checks_are_memoised_by_content(tmp_path, good):
    path = write_manifest(tmp_path / "m.csv", [_row("a", good)])
    manifest, _ = read_manifest(path)
    digests = FileDigests(tmp_path / "digests.json")
    checked = tmp_path / "checked"
    assert check_files(manifest, Requirements(), digests=digests, checked_dir=checked,
                       progress=False) == []
    assert len(list(checked.rglob("*"))) == 2  # one fan-out folder, one marker
    # the file changes: same path, new content, so it is read (and rejected) again
    bad = head_volume()
    bad[0, 0, 0] = np.inf
    write_nifti(tmp_path / good, bad)
    problems = check_files(manifest, Requirements(), digests=digests, checked_dir=checked,
                           progress=False)
    assert len(problems) == 1 and "NaN/Inf" in str(problems[0])


def _truncated_copy(source: Path, target: Path) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def _four_problem_manifest(tmp_path: Path, good: str) -> Path:
    """A missing sequence column (when flair is requested), an empty report (row 1), a
    missing file (row 2) and a truncated ``.nii.gz`` (row 3)."""
    _truncated_copy(tmp_path / good, tmp_path / "cut.nii.gz")
    rows = [_row("a", good, report=" "), _row("b", "missing.nii.gz"), _row("c", "cut.nii.gz")]
    return write_manifest(tmp_path / "m.csv", rows)


FOUR_PROBLEMS = ("column 'flair': sequence 'flair' was requested but the manifest has no such",
                 "row 1 (exam a), column 'report': report is empty",
                 "row 2 (exam b), column 't1': file not found",
                 "row 3 (exam c), column 't1': corrupt or truncated")


def test_table_problems_do_not_stop_the_file_checks(tmp_path, good):
    path = _four_problem_manifest(tmp_path, good)
    datamodule = SelipDataModule(str(path), cache_dir=str(tmp_path / "cache"),
                                 sequences=["t1", "flair"], progress=False)
    with pytest.raises(ManifestError) as caught:
        datamodule.prepare_data()
    lines = str(caught.value).splitlines()
    assert lines[0] == "4 problems in the data:"
    for expected, line in zip(FOUR_PROBLEMS, lines[1:], strict=True):
        assert expected in line


def test_unreadable_rows_and_absent_columns_add_no_noise(tmp_path, good):
    lines = [json.dumps({"exam_id": "a", "t1": good}), "{broken",
             json.dumps({"exam_id": "c", "t1": "missing.nii.gz"})]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    datamodule = SelipDataModule(str(path), cache_dir=str(tmp_path / "cache"), progress=False)
    with pytest.raises(ManifestError) as caught:
        datamodule.prepare_data()
    problems = caught.value.problems
    # the absent report column is named once (not once per row); the broken line once
    assert [(p.row, p.column) for p in problems] == [(None, None), (2, None), (3, "t1")]
    assert "required column 'report' is missing" in problems[0].message
    assert "not valid JSON" in problems[1].message and "file not found" in problems[2].message
