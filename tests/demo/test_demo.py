"""The synthetic demo cohort: layout, determinism, orientation, lesion signatures, reports."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from selip.demo import (
    LABELS,
    MANIFEST_COLUMNS,
    REGIONS,
    SEQUENCES,
    TRUTH_FILE,
    generate_demo_cohort,
    load_truth,
)
from selip.demo.anatomy import TISSUES
from selip.demo.exams import ExamPlan, plan_exam, synthesize_exam
from selip.demo.lesions import Lesion
from selip.demo.vocabulary import NORMAL_TEXTS_EN
from selip.demo.vocabulary_zh import NORMAL_TEXTS_ZH
from selip.similarity import PRESETS
from selip.similarity.config import LOCATION_SYNONYMS
from selip.similarity.findings import canonical_location, signal_tag
from selip.text.reports import parse_report

NUM_EXAMS = 6  # one label block: every label present, two normal exams


def _seed_with_las_exam() -> int:
    """The smallest seed whose first NUM_EXAMS exams include an LAS-stored exam."""
    for seed in range(50):
        if any(plan_exam(seed, i).orientation == "LAS" for i in range(NUM_EXAMS)):
            return seed
    raise AssertionError("no seed in 0..49 has an LAS exam among the first exams")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[dict[str, str]]]:
    seed = _seed_with_las_exam()
    out = tmp_path_factory.mktemp("demo") / "cohort"  # does not exist yet: must be created
    manifest = generate_demo_cohort(out, num_exams=NUM_EXAMS, seed=seed, progress=False)
    assert manifest == out / "manifest.csv"
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return out, seed, rows


def _plans(seed: int) -> list[ExamPlan]:
    return [plan_exam(seed, i) for i in range(NUM_EXAMS)]


def _load(out: Path, row: dict[str, str], column: str) -> nib.Nifti1Image:
    return nib.load(out / row[column])  # type: ignore[return-value]


def _row(rows: list[dict[str, str]], label: str) -> dict[str, str]:
    return next(r for r in rows if r["label"] == label)


def _mirrored_ratio(out: Path, row: dict[str, str], sequence: str) -> float:
    """Mean of ``sequence`` inside the mask over its mean in the mirror image (world x -> -x)."""
    mask_image = _load(out, row, "mask")
    mask = np.asarray(mask_image.dataobj) > 0
    data = np.asarray(_load(out, row, sequence).dataobj, dtype=np.float64)
    affine = mask_image.affine
    world = affine[:3, :3] @ np.argwhere(mask).T + affine[:3, 3:]
    world[0] *= -1.0
    inverse = np.linalg.inv(affine)
    mirror = np.rint(inverse[:3, :3] @ world + inverse[:3, 3:]).astype(int)
    return float(data[mask].mean() / data[tuple(mirror)].mean())


def test_manifest_columns_rows_and_labels(cohort):
    out, _, rows = cohort
    with open(out / "manifest.csv", newline="") as handle:
        assert next(csv.reader(handle)) == list(MANIFEST_COLUMNS)
    assert MANIFEST_COLUMNS == ("exam_id", "t1", "t2", "flair", "dwi", "adc", "report",
                                "label", "mask")
    assert [r["exam_id"] for r in rows] == [f"demo_{i:04d}" for i in range(NUM_EXAMS)]
    for row in rows:
        for column in (*SEQUENCES, "mask"):
            assert row[column] == f"exams/{row['exam_id']}/{column}.nii.gz"
            assert (out / row[column]).is_file()
    labels = [r["label"] for r in rows]
    assert set(labels) == set(LABELS) and labels.count("normal") == 2


def test_volumes_are_int16_on_one_grid_per_exam(cohort):
    out, _, rows = cohort
    for row in rows:
        mask = _load(out, row, "mask")
        assert mask.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
        for sequence in SEQUENCES:
            image = _load(out, row, sequence)
            assert image.get_data_dtype() == np.int16
            assert image.shape == mask.shape == (64, 76, 64)
            np.testing.assert_array_equal(image.affine, mask.affine)
            assert np.allclose(image.header.get_zooms(), 3.0)
            with gzip.open(out / row[sequence]) as raw:  # stored scaling, not nibabel's view
                header = nib.Nifti1Header.from_fileobj(raw)
            assert header["scl_slope"] == 1.0 and header["scl_inter"] == 0.0
            data = np.asarray(image.dataobj)
            assert data.min() >= 0 and 500 < data.max() < 32767


def test_same_seed_is_byte_identical_and_exam_k_ignores_cohort_size(cohort, tmp_path):
    out, seed, _ = cohort
    small = generate_demo_cohort(tmp_path / "small", num_exams=3, seed=seed, progress=False)
    full_manifest = (out / "manifest.csv").read_bytes()
    assert full_manifest.startswith(small.read_bytes())
    assert (out / TRUTH_FILE).read_bytes().startswith((small.parent / TRUTH_FILE).read_bytes())
    for path in sorted((tmp_path / "small" / "exams").rglob("*.nii.gz")):
        relative = path.relative_to(tmp_path / "small")
        assert path.read_bytes() == (out / relative).read_bytes(), relative
    assert len(list((tmp_path / "small" / "exams").rglob("*.nii.gz"))) == 3 * 6


def test_different_seed_gives_different_files(cohort, tmp_path, capsys):
    out, seed, _ = cohort
    generate_demo_cohort(tmp_path / "other", num_exams=1, seed=seed + 1, progress=True)
    assert "demo exams" in capsys.readouterr().err  # tqdm bar on stderr
    for name in ("t1", "flair", "adc"):
        other = (tmp_path / "other" / "exams" / "demo_0000" / f"{name}.nii.gz").read_bytes()
        assert other != (out / "exams" / "demo_0000" / f"{name}.nii.gz").read_bytes()


def test_las_exams_hold_the_same_world_anatomy(cohort):
    out, seed, rows = cohort
    plans = _plans(seed)
    las = [p for p in plans if p.orientation == "LAS"]
    assert las, "the fixture's seed was chosen to have an LAS exam"
    for plan, row in zip(plans, rows, strict=True):
        codes = nib.aff2axcodes(_load(out, row, "t1").affine)
        assert codes == (("L", "A", "S") if plan.orientation == "LAS" else ("R", "A", "S"))
    plan = las[0]
    ras = synthesize_exam(dataclasses.replace(plan, orientation="RAS"))
    for name in (*SEQUENCES, "mask"):
        stored = nib.as_closest_canonical(_load(out, rows[plan.index], name))
        expected = ras.mask if name == "mask" else ras.images[name]
        np.testing.assert_array_equal(np.asarray(stored.dataobj), expected)
        np.testing.assert_allclose(stored.affine, ras.affine)


def test_lesions_lie_on_the_reported_side(cohort):
    out, seed, rows = cohort
    for plan, row in zip(_plans(seed), rows, strict=True):
        mask_image = _load(out, row, "mask")
        mask = np.asarray(mask_image.dataobj) > 0
        if plan.label == "normal":
            continue
        assert mask.sum() >= 5, f"{plan.exam_id}: lesion mask nearly empty"
        sides = {lesion.side for lesion in plan.lesions}
        if len(sides) == 1:
            world = nib.affines.apply_affine(mask_image.affine, np.argwhere(mask))
            assert (world[:, 0].mean() < 0) == (sides.pop() == "left"), plan.exam_id


def test_infarct_restricts_diffusion(cohort):
    out, _, rows = cohort
    row = _row(rows, "infarct")
    assert _mirrored_ratio(out, row, "dwi") > 1.5
    assert _mirrored_ratio(out, row, "adc") < 0.75
    assert _mirrored_ratio(out, row, "flair") > 1.2


def test_tumour_is_flair_bright_and_t1_dark(cohort):
    out, _, rows = cohort
    row = _row(rows, "tumour")
    assert _mirrored_ratio(out, row, "flair") > 1.3
    assert _mirrored_ratio(out, row, "t1") < 0.8


def test_tumour_mask_covers_the_oedema_it_shows(cohort):
    """The tumour mask is the whole FLAIR abnormality (core + oedema, BraTS's "whole
    tumour"): a mask of the core alone left an equally bright rim labelled background."""
    _, seed, _ = cohort
    plan = next(p for p in _plans(seed) if p.label == "tumour")
    volumes = synthesize_exam(plan)
    mask = volumes.mask.astype(bool)
    lesion = plan.lesions[0]
    core_voxels = (4.0 / 3.0) * np.pi * lesion.blobs[0, 3] ** 3 / 3.0**3  # 3 mm grid
    assert mask.sum() > 1.5 * core_voxels  # the rim is in the mask
    flair = volumes.images["flair"].astype(np.float32)
    ring = _dilate(mask, 2) & ~mask  # just outside the mask
    assert flair[mask].mean() > 1.2 * flair[ring].mean()  # no bright rim left outside


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        for axis in range(3):
            grown |= np.roll(out, 1, axis) | np.roll(out, -1, axis)
        out = grown
    return out


def test_demyelination_is_flair_bright_and_diffusion_iso(cohort):
    out, _, rows = cohort
    row = _row(rows, "demyelination")
    assert _mirrored_ratio(out, row, "flair") > 1.2
    assert 0.8 < _mirrored_ratio(out, row, "dwi") < 1.25


def test_normal_exam_has_empty_mask_and_normal_report(cohort):
    out, _, rows = cohort
    for row in (r for r in rows if r["label"] == "normal"):
        assert row["report"] in NORMAL_TEXTS_EN  # one of a few normal phrasings
        assert not np.asarray(_load(out, row, "mask").dataobj).any()


def test_reports_parse_back_per_sequence(cohort):
    _, seed, rows = cohort
    tags = PRESETS["english"].signal_tags
    for plan, row in zip(_plans(seed), rows, strict=True):
        assert row["report"] == plan.report()
        report = parse_report(row["report"])
        written = plan.written()
        for sequence in SEQUENCES:
            text = report.text_for(sequence)
            if plan.label == "normal":  # the normal sentence, paired with every sequence
                assert text == row["report"] == written.normal_text
                continue
            findings = written.findings[sequence]
            assert len(findings) == len(plan.lesions)  # every lesion on every sequence
            assert text == "; ".join(f.render() for f in written.pieces(sequence))
            for index, finding in findings:
                lesion = plan.lesions[index]
                assert canonical_location(finding.location, LOCATION_SYNONYMS) == \
                    lesion.location
                assert signal_tag(finding.appearance, tags) == \
                    signal_tag(lesion.finding(sequence).appearance, tags)
    infarct = next(p for p in _plans(seed) if p.label == "infarct")
    assert infarct.canonical_findings()["dwi"][0].appearance == "restricted diffusion"
    assert signal_tag(infarct.findings()["dwi"][0].appearance, tags) == "restricted diffusion"


def test_truth_file_has_one_line_per_pair_matching_the_manifest(cohort):
    out, seed, rows = cohort
    truths = load_truth(out)
    assert truths == load_truth(out / TRUTH_FILE)
    assert list(truths) == [(r["exam_id"], s) for r in rows for s in SEQUENCES]
    for plan, row in zip(_plans(seed), rows, strict=True):
        for sequence in SEQUENCES:
            truth = truths[(row["exam_id"], sequence)]
            assert truth.diagnosis == row["label"]
            assert truth.key == {(lesion.kind, lesion.region, lesion.side)
                                 for lesion in plan.lesions}
            assert [f.size_mm for f in truth.findings] == [s[0] for s in plan.sizes_mm()]
            assert all(f.region in REGIONS and f.size_mm >= 1 for f in truth.findings)


def test_tissue_contrasts_follow_the_sequences(cohort):
    _, seed, _ = cohort
    plan = next(p for p in _plans(seed) if p.label == "normal")
    exam = synthesize_exam(plan)
    pure = {t: exam.tissues[i] > 0.9 for i, t in enumerate(TISSUES) if t in ("gm", "wm", "csf")}
    mean = {s: {t: float(exam.images[s][m].mean()) for t, m in pure.items()} for s in SEQUENCES}
    assert mean["t1"]["wm"] > mean["t1"]["gm"] > mean["t1"]["csf"]
    assert mean["t2"]["csf"] > mean["t2"]["gm"] > mean["t2"]["wm"]
    assert mean["flair"]["gm"] >= mean["flair"]["wm"] > 2 * mean["flair"]["csf"]
    assert mean["dwi"]["csf"] < 0.5 * mean["dwi"]["wm"]
    assert abs(mean["dwi"]["gm"] - mean["dwi"]["wm"]) < 0.3 * mean["dwi"]["wm"]
    assert mean["adc"]["csf"] > 2 * mean["adc"]["gm"]


def test_head_fits_the_default_64_cube_crop(cohort):
    out, _, rows = cohort
    for row in rows:
        t1 = np.asarray(nib.as_closest_canonical(_load(out, row, "t1")).dataobj)
        head = np.argwhere(t1 > 300)  # tissue and scalp; air noise stays far below
        low, high = head.min(axis=0), head.max(axis=0)
        assert (low >= 0).all() and high[0] < 64 and high[2] < 64
        assert low[1] >= 6 and high[1] < 70  # y: 76 voxels, a centred crop keeps 6..69


@pytest.mark.parametrize("num_exams", [0, -3])
def test_rejects_no_exams(tmp_path, num_exams):
    with pytest.raises(ValueError, match="num_exams"):
        generate_demo_cohort(tmp_path, num_exams=num_exams, progress=False)
    assert not (tmp_path / "manifest.csv").exists()


def test_rejects_negative_seed(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        generate_demo_cohort(tmp_path, num_exams=1, seed=-1, progress=False)


def test_reports_in_english_by_default_and_in_the_authors_chinese_grammar():
    blob = np.array([[0.0, 0.0, 0.0, 5.0]])
    lesions = (Lesion("infarct", "left", "thalamus", blob),
               Lesion("infarct", "right", "basal ganglia", blob))
    plan = ExamPlan(seed=0, index=0, label="infarct", orientation="RAS", lesions=lesions)
    english = plan.report()
    assert plan.report("en") == english
    assert [line.split(":")[0] for line in english.splitlines()] == \
        ["T1", "T2", "FLAIR", "DWI", "ADC"]
    # the truth's canonical wording is the fixed vocabulary the demo used to write
    canonical = plan.canonical_findings()
    assert [f.render() for f in canonical["dwi"]] == ["left thalamus: restricted diffusion",
                                                     "right basal ganglia: restricted diffusion"]
    chinese = json.loads(plan.report("zh"))
    assert list(chinese) == ["T1", "T2", "FLAIR", "DWI", "ADC"]
    assert all(text.startswith("在") and text.count("表现为") == 2 for text in chinese.values())
    assert [f.location for f in plan.canonical_findings("zh")["t1"]] == ["左侧丘脑", "右侧基底节区"]
    normal = ExamPlan(seed=0, index=1, label="normal", orientation="RAS", lesions=())
    assert normal.report() in NORMAL_TEXTS_EN
    assert json.loads(normal.report("zh"))["normal"] in NORMAL_TEXTS_ZH
    with pytest.raises(ValueError, match="report language"):
        plan.report("fr")


def test_rejects_an_unknown_language(tmp_path):
    with pytest.raises(ValueError, match="report language"):
        generate_demo_cohort(tmp_path, num_exams=1, language="fr", progress=False)
    assert not (tmp_path / "manifest.csv").exists()
