"""A manifest saved in GB18030 is read; a directory where a NIfTI belongs is named."""

import codecs
import json
from pathlib import Path

import pytest

from selip.data.manifest import read_manifest
from selip.data.nifti import VolumeError, load_volume
from selip.data.validation import Requirements, check_manifest
from selip.io.fingerprint import FileDigests
from tests.conftest import head_volume, write_nifti

#: Chinese findings with characters GBK lacks (U+4DAE, U+9FCF, U+20000).
REPORT = "T1：左侧额叶低信号，䶮鿏𠀀\nFLAIR：左侧额叶高信号"


@pytest.fixture
def good(tmp_path: Path) -> str:
    write_nifti(tmp_path / "good.nii.gz", head_volume())
    return "good.nii.gz"


def _csv(path: Path, good: str, prefix: bytes = b"", encoding: str = "gb18030") -> Path:
    text = f'exam_id,t1,report\n检查1,{good},"{REPORT}"\n'
    path.write_bytes(prefix + text.encode(encoding))
    return path


def _check(path: Path, encoding: str | None = None, checked_dir: Path | None = None
           ) -> tuple[list[str], list[str]]:
    """The reports read and every problem line, as the datamodule would check them."""
    manifest, problems = read_manifest(path, encoding)
    problems = check_manifest(manifest, problems, Requirements(), digests=FileDigests(),
                              checked_dir=checked_dir, progress=False)
    return [e.report for e in manifest.exams], [str(p) for p in problems]


def test_a_gb18030_csv_with_a_quoted_multiline_report_is_read(tmp_path: Path, good: str) -> None:
    assert _check(_csv(tmp_path / "m.csv", good)) == ([REPORT], [])


def test_utf8_with_and_without_bom_is_still_read(tmp_path: Path, good: str) -> None:
    plain = _csv(tmp_path / "plain.csv", good, encoding="utf-8")
    bom = _csv(tmp_path / "bom.csv", good, codecs.BOM_UTF8, "utf-8")
    assert _check(plain) == _check(bom) == ([REPORT], [])


def test_a_gb18030_jsonl_manifest_is_read(tmp_path: Path, good: str) -> None:
    path = tmp_path / "m.jsonl"
    row = {"exam_id": "检查1", "t1": good, "report": {"T1": "左侧额叶低信号，䶮"}}
    path.write_bytes(json.dumps(row, ensure_ascii=False).encode("gb18030"))
    reports, problems = _check(path)
    assert problems == [] and json.loads(reports[0]) == row["report"]


def test_a_file_in_no_detected_encoding_is_one_problem_with_the_fix(tmp_path: Path,
                                                                       good: str) -> None:
    path = tmp_path / "m.csv"
    before_e = f"exam_id,t1,report\na,{good},caf"
    path.write_bytes(f"{before_e}é, naïve\n".encode("latin-1"))
    _, problems = _check(path)
    assert problems == [f"{path}: the text is neither UTF-8 nor GB18030 (byte 0xe9 at offset "
                        f"{len(before_e)}); save it as UTF-8, or name its encoding (e.g. "
                        "latin-1, big5, shift_jis)"]
    manifest, read_problems = read_manifest(path, encoding="latin-1")
    assert read_problems == [] and manifest.exams[0].exam_id == "a"


def test_a_named_encoding_that_does_not_fit_is_one_problem(tmp_path: Path, good: str) -> None:
    path = _csv(tmp_path / "m.csv", good)
    _, problems = _check(path, encoding="utf-8")
    assert len(problems) == 1 and problems[0].startswith(f"{path}: not utf-8 (byte 0x")


def test_a_directory_in_a_file_column_is_named(tmp_path: Path, good: str) -> None:
    (tmp_path / "series_t1").mkdir()
    (tmp_path / "mask_dir").mkdir()
    path = tmp_path / "m.csv"
    path.write_text(f"exam_id,t1,report,mask\na,{good},normal,mask_dir\nb,series_t1,normal,\n")
    for checked_dir in (None, tmp_path / "checked"):  # the memoised path too
        _, problems = _check(path, checked_dir=checked_dir)
        assert problems == [
            f"{path}, row 1 (exam a), column 'mask': is a directory, not a NIfTI file: "
            f"{tmp_path / 'mask_dir'}",
            f"{path}, row 2 (exam b), column 't1': is a directory, not a NIfTI file: "
            f"{tmp_path / 'series_t1'}",
        ]


def test_loading_a_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="is a directory, not a NIfTI file"):
        load_volume(tmp_path)
    with pytest.raises(VolumeError, match="file not found"):
        load_volume(tmp_path / "absent.nii.gz")


def test_a_directory_given_as_the_manifest_is_named(tmp_path: Path) -> None:
    _, problems = read_manifest(tmp_path)
    assert [p.message for p in problems] == ["is a directory, not a manifest file"]
