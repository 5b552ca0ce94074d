"""``selip import bids`` on a tiny BIDS dataset: sequences mapped from file names, runs and
ambiguity, the DWI trace, reports by participant and session, no label ever written,
re-runs that skip, shards that merge to the same manifest, and the console command."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from selip.importer.bids_import import _join_report, import_bids
from selip.importer.bids_volume import VolumeError, write_volume
from selip.importer.convert import SERIES_FIELD, sidecar_path
from selip.importer.identity import keyed_id, load_or_create_key
from selip.importer.options import ImportOptions
from selip.importer.outcome import IMPORT_LOG, MANIFEST, ImportSummary, StudyOutcome
from selip.importer.reports import ReportFile
from selip.importer.shard import Shard

REPO = Path(__file__).resolve().parents[2]
#: Distinctive labels: finding one in a written file means a label leaked.
LABELS = ("HOSP12345", "HOSP67890", "HOSP24680", "VISIT77", "VISIT88")
CHINESE = "左侧额叶见长T2信号，考虑胶质瘤"
SHAPE = (16, 16, 12)


@dataclass
class Dataset:
    root: Path
    reports: Path
    data: dict[str, np.ndarray]  # relative path -> the array written there


def _write(dataset: Dataset, relpath: str, array: np.ndarray,
           sidecar: dict[str, object] | None = None) -> None:
    path = dataset.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(array, np.diag([1.0, 1.0, 2.0, 1.0])).to_filename(path)
    dataset.data[relpath] = array
    if sidecar is not None:
        name = path.name.removesuffix(".gz").removesuffix(".nii") + ".json"
        path.with_name(name).write_text(json.dumps(sidecar))


def _make_dataset(base: Path) -> Dataset:
    rng = np.random.default_rng(7)

    def volume(*extra: int) -> np.ndarray:
        return rng.integers(1, 1000, (*SHAPE, *extra), dtype=np.int16)

    dataset = Dataset(base / "bids", base / "reports.csv", {})
    root = dataset.root
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.8.0"}))
    (root / "T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))  # inherited
    first = "sub-HOSP12345/ses-VISIT77"
    stem = f"{first}/anat/sub-HOSP12345_ses-VISIT77"
    _write(dataset, f"{stem}_T1w.nii.gz", volume(), {
        "EchoTime": 0.003, "PatientName": "Zhang^San", "InstitutionName": "Hospital",
        "AcquisitionDateTime": "2021-01-01T10:00:00",
        "Sources": ["bids::sub-HOSP12345/ses-VISIT77/anat/x.nii.gz"]})
    _write(dataset, f"{stem}_ce-gd_T1w.nii.gz", volume())
    _write(dataset, f"{stem}_T2w.nii.gz", volume())
    _write(dataset, f"{stem}_run-1_FLAIR.nii.gz", volume())
    _write(dataset, f"{stem}_run-2_FLAIR.nii.gz", volume())
    _write(dataset, f"{stem}_inplaneT2.nii.gz", volume())
    dwi = f"{first}/dwi/sub-HOSP12345_ses-VISIT77_dwi"
    _write(dataset, f"{dwi}.nii.gz", volume(3))
    (root / f"{dwi}.bval").write_text("0 1000 1000\n")
    (root / f"{dwi}.bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    second = "sub-HOSP12345/ses-VISIT88/anat/sub-HOSP12345_ses-VISIT88"
    _write(dataset, f"{second}_T1w.nii", volume())  # uncompressed: gzipped on import
    _write(dataset, f"{second}_acq-fast_T2w.nii.gz", volume())  # two acquisitions:
    _write(dataset, f"{second}_acq-slow_T2w.nii.gz", volume())  # ambiguous
    _write(dataset, "sub-HOSP67890/anat/sub-HOSP67890_T1w.nii.gz", volume())
    _write(dataset, "sub-HOSP67890/anat/sub-HOSP67890_angio.nii.gz", volume())
    _write(dataset, "sub-HOSP67890/dwi/sub-HOSP67890_ADC.nii.gz", volume())
    _write(dataset, "sub-HOSP24680/anat/sub-HOSP24680_T1w.nii.gz", volume())  # no report
    _write(dataset, "derivatives/x/sub-HOSP67890/anat/sub-HOSP67890_T2starw.nii.gz", volume())
    rows = [("participant_id", "session_id", "report"),
            ("sub-HOSP12345", "ses-VISIT77", "Normal brain MRI."),
            ("HOSP12345", "VISIT88", CHINESE),  # labels without their prefixes
            ("sub-HOSP67890", "", "Small vessel disease, Fazekas 1.")]
    with dataset.reports.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return dataset


def _options(out: Path, reports: Path, **changes: object) -> ImportOptions:
    options = ImportOptions(out=out, reports=reports, progress=False, workers=2)
    for name, value in changes.items():
        setattr(options, name, value)
    return options


@dataclass
class Imported:
    dataset: Dataset
    out: Path
    summary: ImportSummary
    key: bytes

    def exam(self, subject: str, session: str | None = None) -> str:
        name = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        return keyed_id(self.key, name, "ex-")

    def manifest(self) -> dict[str, dict[str, str]]:
        text = (self.out / MANIFEST).read_text(encoding="utf-8")
        return {row["exam_id"]: row for row in csv.DictReader(io.StringIO(text))}

    def log(self) -> dict[str, dict[str, Any]]:
        lines = (self.out / IMPORT_LOG).read_text(encoding="utf-8").splitlines()
        return {r["exam_id"]: r for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    base = tmp_path_factory.mktemp("tiny")
    dataset = _make_dataset(base)
    out = base / "cohort"
    summary = import_bids(dataset.root, _options(out, dataset.reports))
    assert summary is not None
    return Imported(dataset, out, summary, load_or_create_key(out))


def _volume(path: Path) -> np.ndarray:
    image: Any = nib.load(path)
    return np.asanyarray(image.dataobj)


def test_manifest_rows_columns_and_reports(imported: Imported) -> None:
    manifest = imported.manifest()
    first, second = imported.exam("HOSP12345", "VISIT77"), imported.exam("HOSP12345", "VISIT88")
    third = imported.exam("HOSP67890")
    header = (imported.out / MANIFEST).read_text(encoding="utf-8").splitlines()[0]
    assert header == "exam_id,t1,t1c,t2,flair,dwi,adc,report"
    assert set(manifest) == {first, second, third}
    assert {s: bool(v) for s, v in manifest[first].items() if s not in ("exam_id", "report")} \
        == {"t1": True, "t1c": True, "t2": True, "flair": True, "dwi": True, "adc": False}
    assert manifest[first]["t1c"] == f"nifti/{first}/t1c.nii.gz"
    assert manifest[second]["report"] == CHINESE
    assert [s for s, v in manifest[second].items() if v and s != "exam_id"] == ["t1", "report"]
    assert [s for s, v in manifest[third].items() if v and s != "exam_id"] == ["t1", "adc",
                                                                                 "report"]
    assert imported.summary.sequence_counts == Counter(
        {"t1": 3, "t1c": 1, "t2": 1, "flair": 1, "dwi": 1, "adc": 1})
    assert imported.summary.parts[0].files == 14  # raw NIfTI files only, no derivatives
    assert imported.summary.parts[0].report_key == "participant_id and session_id"
    assert imported.summary.reports_without_study == 0


def test_volumes_dwi_trace_latest_flair_link_and_gzip(imported: Imported) -> None:
    data, root = imported.dataset.data, imported.dataset.root
    folder = imported.out / "nifti" / imported.exam("HOSP12345", "VISIT77")
    stem = "sub-HOSP12345/ses-VISIT77"
    dwi = data[f"{stem}/dwi/sub-HOSP12345_ses-VISIT77_dwi.nii.gz"].astype(np.float64)
    trace = np.sqrt(dwi[..., 1] * dwi[..., 2])
    written = _volume(folder / "dwi.nii.gz")
    assert written.shape == SHAPE and np.allclose(written, trace, rtol=1e-5)
    flair = f"{stem}/anat/sub-HOSP12345_ses-VISIT77_run-2_FLAIR.nii.gz"
    assert np.array_equal(_volume(folder / "flair.nii.gz"), data[flair])
    t1 = f"{stem}/anat/sub-HOSP12345_ses-VISIT77_T1w.nii.gz"
    assert (folder / "t1.nii.gz").stat().st_ino == (root / t1).stat().st_ino  # linked
    plain = imported.out / "nifti" / imported.exam("HOSP12345", "VISIT88") / "t1.nii.gz"
    source = root / "sub-HOSP12345/ses-VISIT88/anat/sub-HOSP12345_ses-VISIT88_T1w.nii"
    assert gzip.decompress(plain.read_bytes()) == source.read_bytes()  # gzipped, byte for byte
    sidecar = json.loads((folder / "t1.json").read_text(encoding="utf-8"))
    assert sidecar["RepetitionTime"] == 2.3 and sidecar["EchoTime"] == 0.003
    assert not {"PatientName", "InstitutionName", "AcquisitionDateTime", "Sources"} & set(sidecar)
    assert sidecar[SERIES_FIELD] == keyed_id(imported.key, t1, "se-")
    dwi_sidecar = json.loads((folder / "dwi.json").read_text(encoding="utf-8"))
    assert "geometric mean" in dwi_sidecar["SelipVolume"]


def test_log_notes_problems_unclassified_and_missing_report(imported: Imported) -> None:
    log = imported.log()
    first = log[imported.exam("HOSP12345", "VISIT77")]
    assert "flair: chose anat/run-2_FLAIR.nii.gz over anat/run-1_FLAIR.nii.gz (by latest " \
           "run)" in first["notes"]
    assert first["chosen"]["t1c"] == "anat/ce-gd_T1w.nii.gz"
    assert first["missing"] == ["adc"] and first["unclassified"] == ["inplaneT2"]
    second = log[imported.exam("HOSP12345", "VISIT88")]
    assert second["problems"] == [
        "t2: 2 candidates and no rule to choose between them (anat/acq-fast_T2w.nii.gz, "
        "anat/acq-slow_T2w.nii.gz); the sequence is left out"]
    assert second["missing"] == ["t2", "flair", "dwi", "adc"]
    without = log[imported.exam("HOSP24680")]
    assert (without["report_status"], without["written"]) == ("no report", False)
    assert not (imported.out / "nifti" / imported.exam("HOSP24680")).exists()
    assert imported.summary.unclassified == Counter({"inplaneT2": 1, "angio": 1})
    lines = "\n".join(imported.summary.lines())
    assert "studies: 4; exams written: 3" in lines
    unclassified = next(line for line in imported.summary.lines()
                        if line.startswith("unclassified files (BIDS suffixes selip does not "
                                           "import): "))
    assert "'inplaneT2' ×1" in unclassified and "'angio' ×1" in unclassified
    assert "studies without a report: 1 (1 no report" in lines


def test_no_label_is_written_anywhere(imported: Imported) -> None:
    written = [p for p in imported.out.rglob("*") if p.is_file()]
    assert len(written) > 20
    for path in written:
        content = path.read_bytes()
        if path.name.endswith(".gz"):
            content = gzip.decompress(content)
        for label in LABELS:
            assert label.encode() not in content, (path.name, label)
            assert label not in str(path.relative_to(imported.out))


def test_second_run_skips_what_is_done(imported: Imported) -> None:
    nifti = imported.out / "nifti"
    before = {p: p.stat().st_mtime_ns for p in nifti.rglob("*") if p.is_file()}
    manifest = (imported.out / MANIFEST).read_text(encoding="utf-8")
    again = import_bids(imported.dataset.root,
                        _options(imported.out, imported.dataset.reports))
    assert again is not None
    assert {p: p.stat().st_mtime_ns for p in nifti.rglob("*") if p.is_file()} == before
    assert not [p for p in nifti.rglob(".*")]  # no temporary left behind
    assert (imported.out / MANIFEST).read_text(encoding="utf-8") == manifest


def test_shards_merge_into_the_same_manifest(imported: Imported, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    key_file = imported.out / "import_key"
    parts = [import_bids(imported.dataset.root,
                         _options(out, imported.dataset.reports, shard=Shard(i, 2),
                                  key_file=key_file))
             for i in range(2)]
    assert parts[0] is None and parts[1] is not None
    assert [p.files for p in parts[1].parts] == [13, 1]  # subjects 12345 + 67890 | 24680
    assert (out / MANIFEST).read_text(encoding="utf-8") == \
        (imported.out / MANIFEST).read_text(encoding="utf-8")


def test_not_a_bids_dataset_or_no_pybids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    reports = tmp_path / "r.csv"
    reports.write_text("participant_id,report\nsub-01,x\n")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ValueError, match=r"no dataset_description\.json") as caught:
        import_bids(root, _options(tmp_path / "out", reports))
    assert str(root) in str(caught.value) and "\n" not in str(caught.value)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    no_subject = f"{re.escape(str(root))}: a BIDS dataset without any sub-"
    with pytest.raises(ValueError, match=no_subject):
        import_bids(root, _options(tmp_path / "out", reports))
    (root / "sub-01").mkdir()
    monkeypatch.setitem(sys.modules, "bids", None)  # as if pybids were not installed
    with pytest.raises(ValueError, match=r"pip install 'selip\[bids\]'"):
        import_bids(root, _options(tmp_path / "out", reports))


def test_console_command(imported: Imported, tmp_path: Path) -> None:
    reports = tmp_path / "reports.csv"
    shutil.copy(imported.dataset.reports, reports)
    done = subprocess.run(
        [str(REPO / ".venv/bin/selip"), "import", "bids",
         os.path.relpath(imported.dataset.root, REPO),  # a relative root works too
         "--reports", str(reports), "--out", str(tmp_path / "out"), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "exams written: 3" in done.stdout
    assert not any(label in done.stdout + done.stderr for label in LABELS)


def test_a_report_without_session_joins_only_a_subject_with_one_exam() -> None:
    reports = ReportFile(Path("r.csv"), "utf-8", "participant_id", "participant",
                         reports={"sub-01": "one exam", "sub-02": "two exams"})
    key = b"k" * 32
    alone = StudyOutcome("ex-1")
    _join_report(alone, ("01", "A"), True, reports, key)
    assert (alone.report, alone.report_ref) == ("one exam", keyed_id(key, "sub-01"))
    several = StudyOutcome("ex-2")
    _join_report(several, ("02", "A"), False, reports, key)
    assert (several.report, several.report_status) == (None, "no report")
    assert "without a session, and the participant has several sessions" in \
        several.problems[0]


def test_volume_writer_copies_when_links_fail_and_refuses_a_dwi_without_bvals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "sub-X_T1w.nii.gz"
    nib.Nifti1Image(np.ones(SHAPE, np.int16), np.eye(4)).to_filename(source)

    def no_link(*_: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("os.link", no_link)
    target = tmp_path / "out" / "t1.nii.gz"
    write_volume(source, target, "t1", "se-1", {"IntendedFor": "sub-X/anat"}, None, ["sub-X"])
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_ino != source.stat().st_ino
    assert "IntendedFor" not in json.loads(sidecar_path(target).read_text())
    dwi = tmp_path / "sub-X_dwi.nii.gz"
    nib.Nifti1Image(np.ones((*SHAPE, 3), np.int16), np.eye(4)).to_filename(dwi)
    with pytest.raises(VolumeError, match=r"3 volumes and no \.bval file"):
        write_volume(dwi, tmp_path / "out" / "dwi.nii.gz", "dwi", "se-2", {}, None, [])
    with pytest.raises(VolumeError, match="3 volumes and 2 b-values"):
        write_volume(dwi, tmp_path / "out" / "dwi.nii.gz", "dwi", "se-2", {}, [0, 1000], [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t1.json", "t1.nii.gz"]
