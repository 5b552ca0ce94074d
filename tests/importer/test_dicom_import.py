"""``selip import dicom`` end to end: three vendors' exams, a GB18030 report file, bad
files beside good ones, no identifier in any output, resume, shards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from selip.importer.dicom_import import import_dicom
from selip.importer.options import ImportOptions
from selip.importer.outcome import ImportSummary
from selip.importer.shard import Shard
from tests.importer.dicom_factory import (
    GE,
    PHILIPS,
    SIEMENS,
    SeriesSpec,
    demo_like_volume,
    standard_study,
    write_not_dicom,
    write_truncated_dicom,
)

# (vendor, b-value tag, study uid, accession, patient id, patient name)
STUDIES = [
    (SIEMENS, "standard", "1.2.826.0.1.3680043.8.498.101", "ACC90001", "PID-77001",
     "ZHANG^WEI"),
    (GE, "vendor", "1.2.826.0.1.3680043.8.498.102", "ACC90002", "PID-77002", "SMITH^ANNA"),
    (PHILIPS, "vendor", "1.2.826.0.1.3680043.8.498.103", "ACC90003", "PID-77003",
     "MUELLER^KARL"),
]
# the authors' structured Chinese reports: one findings text per sequence
CHINESE_1 = {"FLAIR": "在左侧额叶表现为高信号", "DWI": "在左侧额叶表现为弥散受限"}
CHINESE_3 = {"T2": "在右侧颞叶表现为高信号", "FLAIR": "在左侧额叶表现为高信号"}
REPORTS = {"ACC90001": json.dumps(CHINESE_1, ensure_ascii=False),
           "ACC90002": "Small FLAIR hyperintensity in the left frontal white matter.",
           "ACC90003": json.dumps(CHINESE_3, ensure_ascii=False),
           "ACC99999": "A report whose study was not exported."}
EXPECTED_SERIES = {"t1": "#2 ", "t2": "#3 ", "flair": "#8 ", "dwi": "#5 ", "adc": "#6 "}


def write_archive(root: Path) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Three exams in patient/study folders, plus a README, a truncated copy of a file and
    pydicom's real single MR slice (a study with no report)."""
    expected = {}
    swi_volume, swi_affine = demo_like_volume(shape=(16, 16, 8), seed=5)
    swi = SeriesSpec("swi_3d_tra", 20, swi_volume, swi_affine, scanning_sequence=("GR",),
                     echo_time=20.0, repetition_time=28.0)  # a sequence no shipped rule claims
    for number, (vendor, tag, uid, accession, pid, name) in enumerate(STUDIES):
        expected[accession] = standard_study(root / f"patient{number}" / "study", uid,
                                             accession, vendor, b_value_tag=tag, seed=number,
                                             patient_id=pid, patient_name=name,
                                             extra=[swi] if number == 0 else [])
    write_not_dicom(root / "README")
    first = next(p for p in sorted((root / "patient0").rglob("*")) if p.is_file())
    write_truncated_dicom(first, root / "damaged" / "IM_cut")
    from pydicom.data import get_testdata_file

    (root / "other").mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), root / "other" / "MR_small")
    return expected


def write_reports(path: Path) -> Path:
    lines = ["AccessionNumber,report"] + [
        f'{key},"{text.replace(chr(34), chr(34) * 2)}"' for key, text in REPORTS.items()]
    path.write_bytes(("\n".join(lines) + "\n").encode("gb18030"))
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("pacs")
    expected = write_archive(root / "export")
    return root / "export", write_reports(root / "reports.csv"), expected


@pytest.fixture(scope="module")
def imported(archive, tmp_path_factory) -> tuple[Path, ImportSummary]:
    source, reports, _ = archive
    out = tmp_path_factory.mktemp("cohort")
    summary = import_dicom(source, ImportOptions(out=out, reports=reports, progress=False))
    assert summary is not None
    return out, summary


def manifest_rows(out: Path) -> list[dict[str, str]]:
    import csv

    with open(out / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "import_log.jsonl").read_text().splitlines()]


def test_every_exam_is_written_with_its_report(imported) -> None:
    out, summary = imported
    rows = manifest_rows(out)
    assert len(rows) == 3
    assert list(rows[0]) == ["exam_id", "t1", "t2", "flair", "dwi", "adc", "report"]
    assert sorted(r["report"] for r in rows) == sorted(
        REPORTS[a] for a in ("ACC90001", "ACC90002", "ACC90003"))
    assert all(r["exam_id"].startswith("ex-") for r in rows)
    assert summary.sequence_counts == {s: 3 for s in EXPECTED_SERIES}
    assert summary.reports_without_study == 1
    assert [o.report_status for o in summary.without_report] == ["no report"]  # MR_small


def test_every_series_is_classified_as_written(imported) -> None:
    out, _ = imported
    written = [line for line in log_lines(out) if line["written"]]
    assert len(written) == 3
    for line in written:
        for sequence, number in EXPECTED_SERIES.items():
            assert number in line["chosen"][sequence], (sequence, line["chosen"])
        reasons = {s["series"].split()[1]: s["reason"] for s in line["skipped"]}
        assert reasons["#1"] == "localiser" and reasons["#7"].startswith("reformat")
        assert any("flair: chose series #8" in n and "latest" in n for n in line["notes"])
        assert line["missing"] == []
    assert sorted(line["unclassified"] for line in written) == [[], [], ["swi_3d_tra"]]


def test_the_imported_volumes_match_the_source_voxels_and_affine(archive, imported) -> None:
    _, _, expected = archive
    out, _ = imported
    by_report = {r["report"]: r for r in manifest_rows(out)}
    for accession, volumes in expected.items():
        row = by_report[REPORTS[accession]]
        for sequence, (voxels, affine) in volumes.items():
            image = nib.as_closest_canonical(nib.load(out / row[sequence]))
            source = nib.as_closest_canonical(nib.Nifti1Image(voxels, affine))
            assert image.ndim == 3, (accession, sequence)
            np.testing.assert_array_equal(np.asanyarray(image.dataobj),
                                          np.asanyarray(source.dataobj),
                                          err_msg=f"{accession} {sequence}")
            np.testing.assert_allclose(image.affine, source.affine, atol=1e-3)


def test_bad_files_get_one_line_each_and_the_rest_imports(imported) -> None:
    _, summary = imported
    text = "\n".join(summary.lines())
    assert "(1 not DICOM, skipped)" in text
    assert "damaged/IM_cut: no StudyInstanceUID or SeriesInstanceUID" in text
    assert "/damaged/IM_cut" not in text  # named relative to the source folder
    assert "single slice, not a volume" in text  # pydicom's real MR slice
    assert "exams written: 3" in text and "reports without a study: 1" in text
    assert "unclassified series (no rule claims them; add one with --rules): " \
        "'swi_3d_tra' ×1" in text
    assert "gb18030" in text and "AccessionNumber" in text


def test_no_identifier_and_no_report_text_outside_the_manifest(archive, imported) -> None:
    out, summary = imported
    secrets = [s for _, _, uid, accession, pid, name in STUDIES
               for s in (uid, accession, pid, name, name.split("^")[0], "19700101")]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".gz":
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, (path, secret)
            if path.name != "manifest.csv" and "parts" not in path.parts:
                assert b"FLAIR hyperintensity" not in data, path
    for path in out.rglob("*.nii.gz"):
        header = nib.load(path).header
        for field in ("descrip", "aux_file", "db_name", "intent_name"):
            assert not any(s.encode() in bytes(header[field]) for s in secrets), path
    printed = "\n".join(summary.lines())
    assert not any(s in printed for s in secrets)
    assert not any(text in printed for text in REPORTS.values())
    assert "左侧额叶" not in (out / "import_log.jsonl").read_text()
    sidecar = json.loads(next(out.rglob("flair.json")).read_text())
    assert "SelipSeries" in sidecar
    assert not [k for k in sidecar if "Patient" in k or "Accession" in k or "UID" in k]


def test_a_rerun_converts_nothing_again(archive, imported) -> None:
    source, reports, _ = archive
    out, _ = imported
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    summary = import_dicom(source, ImportOptions(out=out, reports=reports, progress=False))
    assert summary is not None and len(summary.written) == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before


def test_four_shards_write_the_same_manifest_as_one_process(archive, imported,
                                                            tmp_path: Path) -> None:
    source, reports, _ = archive
    out, _ = imported
    shutil.copy(out / "import_key", tmp_path / "import_key")  # same key: same exam ids
    results = [import_dicom(source, ImportOptions(out=tmp_path, reports=reports,
                                                  shard=Shard(i, 4), progress=False))
               for i in range(4)]
    assert results[:3] == [None, None, None] and results[3] is not None
    assert (tmp_path / "manifest.csv").read_text() == (out / "manifest.csv").read_text()
    assert results[3].reports_without_study == 1


def test_dcm2niix_failing_on_one_series_loses_only_that_series(archive, tmp_path: Path
                                                               ) -> None:
    source, reports, _ = archive
    broken = tmp_path / "export"
    shutil.copytree(source / "patient1", broken / "patient1")
    t2 = sorted(p for p in (broken / "patient1").rglob("*") if p.is_file()
                and "003_" in str(p.parent))
    write_truncated_dicom(t2[0], t2[0].with_name("cut"), cut="pixels")
    os.replace(t2[0].with_name("cut"), t2[0])
    summary = import_dicom(broken, ImportOptions(out=tmp_path / "out", reports=reports,
                                                 progress=False))
    assert summary is not None and len(summary.written) == 1
    outcome = summary.written[0]
    assert "t2" not in outcome.volumes and set(outcome.volumes) == {"t1", "flair", "dwi",
                                                                    "adc"}
    assert any("#3" in p and "dcm2niix failed" in p for p in outcome.problems)
    assert outcome.missing == ["t2"]


def test_missing_dcm2niix_and_a_bad_report_file_fail_before_any_work(archive, tmp_path: Path
                                                                     ) -> None:
    source, reports, _ = archive
    with pytest.raises(Exception, match="dcm2niix not found at /nowhere/dcm2niix"):
        import_dicom(source, ImportOptions(out=tmp_path / "a", reports=reports,
                                           dcm2niix="/nowhere/dcm2niix", progress=False))
    latin = tmp_path / "reports.csv"
    latin.write_bytes("AccessionNumber,report\nACC90001,Läsion é \n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"reports\.csv"):
        import_dicom(source, ImportOptions(out=tmp_path / "b", reports=latin, progress=False))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_console_script_prints_the_summary(archive, tmp_path: Path) -> None:
    source, reports, _ = archive
    selip = Path(sys.executable).with_name("selip")
    done = subprocess.run([str(selip), "import", "dicom", str(source), "--reports",
                           str(reports), "--out", str(tmp_path / "cohort"), "--quiet"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "exams written: 3" in done.stdout and "sequences: t1 3, t2 3, flair 3, dwi 3, " \
        "adc 3" in done.stdout
    assert not any(text in done.stdout + done.stderr for text in REPORTS.values())
    bad = subprocess.run([str(selip), "import", "dicom", str(tmp_path / "nowhere"),
                          "--reports", str(reports), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "nowhere: no such file or folder" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_paper_preset_reads_the_chinese_reports(imported, tmp_path: Path, capsys) -> None:
    from selip.cli import main

    out, _ = imported
    code = main(["similarity", "--data.manifest", str(out / "manifest.csv"),
                 "--data.cache_dir", str(tmp_path / "cache"), "--data.similarity", "paper",
                 "--data.progress", "false", "--show", "20"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    # the preset parsed the Chinese findings: one location, two appearances share part
    # of their similarity; a Chinese and an English text share none
    def value(first: str, second: str) -> float:
        found = [line for line in printed.splitlines() if first in line and second in line]
        assert found, (first, second, printed)
        return float(found[0].split()[0])

    assert 0.0 < value("在左侧额叶表现为弥散受限", "在左侧额叶表现为高信号") < 1.0
    assert 0.0 < value("在右侧颞叶表现为高信号", "在左侧额叶表现为高信号") < 1.0
    assert value("在左侧额叶表现为高信号", "Small FLAIR") == 0.0


@pytest.mark.slow
def test_prepare_then_a_short_fit_run_on_the_imported_cohort(imported, tmp_path: Path,
                                                             capsys, monkeypatch) -> None:
    from selip.cli import main
    from tests.tasks.conftest import tiny_overrides

    out, _ = imported
    root = Path(__file__).parents[2]
    options = tiny_overrides(out / "manifest.csv", tmp_path, **{
        "--data.sequences": "[t1, t2, flair, dwi, adc]", "--data.val_fraction": "0.34",
        "--data.test_fraction": "0.0"})
    data = [o for i, o in enumerate(options) if options[i - (i % 2)].startswith("--data.")]
    # in this process: the console script's prepare and fit are tested elsewhere
    # (tests/test_quiet.py, the launcher tests); here, that the imported cohort trains
    assert main(["prepare", "--config", str(root / "configs" / "demo.yaml"), *data]) == 0
    assert "OK — 15 pairs" in capsys.readouterr().out
    monkeypatch.chdir(root)
    assert main(["fit", "--config", "configs/demo.yaml", *options, "--trainer.max_steps", "2",
                 "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]) == 0
    assert list(tmp_path.glob("runs/demo/version_*/checkpoints/last.ckpt"))


def test_broken_series_and_an_empty_report_are_named_and_the_rest_imports(tmp_path: Path
                                                                           ) -> None:
    volume, affine = demo_like_volume(shape=(16, 16, 10), seed=7)
    tilted = (1.0, 0.0, 0.0, 0.0, 0.9, 0.43589)
    broken = [SeriesSpec("t2_tse_tra_gap", 21, volume, affine, skip_slices=(4,)),
              SeriesSpec("t1_se_tra_tilt", 22, volume, affine, orientation_override={3: tilted}),
              SeriesSpec("t2_tse_tra_uneven", 23, volume, affine,
                         position_override={9: (0.0, 0.0, 100.0)})]
    standard_study(tmp_path / "export" / "a", "1.2.3.4.5.1", "ACC1", extra=broken)
    standard_study(tmp_path / "export" / "b", "1.2.3.4.5.2", "ACC2", seed=1)
    reports = tmp_path / "reports.csv"
    reports.write_text("AccessionNumber,report\nACC1,Normal study.\nACC2,  \n")
    summary = import_dicom(tmp_path / "export", ImportOptions(out=tmp_path / "out",
                                                              reports=reports, progress=False))
    assert summary is not None and len(summary.written) == 1
    [written] = summary.written
    assert set(written.volumes) == {"t1", "t2", "flair", "dwi", "adc"}  # the good series
    reasons = {s["series"]: s["reason"] for s in written.skipped}
    assert reasons["series #21 't2_tse_tra_gap'"].startswith("missing slices: 1 slice(s)")
    assert reasons["series #22 't1_se_tra_tilt'"] == "mixed orientations within the series " \
                                                      "(2 different)"
    assert reasons["series #23 't2_tse_tra_uneven'"].startswith("unevenly spaced slices")
    assert [o.report_status for o in summary.without_report] == ["empty report"]
    text = "\n".join(summary.lines())
    assert "studies without a report: 1 (1 empty report" in text
    assert text.count("series #2") >= 3  # one problem line per broken series
