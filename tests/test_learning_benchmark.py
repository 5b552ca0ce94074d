"""benchmarks/learning.py: the probe and the targets on known inputs, and ``--quick`` end to
end (cohort, pretraining, test, probes, segmentation, the table), then its resumes and the
scripts that read its output, each run as its command line runs it (``main(argv)``) in
this process."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.benchmark_scripts import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "learning.py"


def _splits(learning: ModuleType, signal: float, seed: int = 0) -> dict:
    """Four classes of 40/20/20 exams each; the class shifts feature ``c`` by ``signal``."""
    generator = torch.Generator().manual_seed(seed)
    splits = {}
    for split, per_class in (("train", 40), ("val", 20), ("test", 20)):
        labels = torch.arange(4).repeat_interleave(per_class)
        features = torch.randn(len(labels), 16, generator=generator)
        features[torch.arange(len(labels)), labels] += signal
        splits[split] = learning.ExamFeatures(features, labels)
    return splits


def test_probe_finds_a_linear_signal_and_only_chance_without_one():
    learning = load_benchmark("learning")
    informative = learning.probe(_splits(learning, signal=3.0), 1.0, seed=0, num_classes=4)
    assert informative["auroc"] > 0.95 and informative["accuracy"] > 0.8
    few_labels = learning.probe(_splits(learning, signal=3.0), 0.1, seed=0, num_classes=4)
    assert few_labels["auroc"] > 0.85  # 4 exams per class still find a strong signal
    noise = learning.probe(_splits(learning, signal=0.0), 1.0, seed=0, num_classes=4)
    assert abs(noise["auroc"] - 0.5) < 0.15  # no signal: chance, not a hard-coded number


def test_targets_are_judged_from_the_means():
    learning = load_benchmark("learning")
    table = {"SeLIP": {"segment_scratch/dice": (0.6, 0.01),
                       "probe_selip_10%/auroc": (0.8, 0.0), "probe_random_10%/auroc": (0.6, 0.0),
                       "probe_selip_100%/auroc": (0.9, 0.0),
                       "probe_random_100%/auroc": (0.85, 0.0),
                       "i2t_clinical_R@5": (0.5, 0.0), "prior_i2t_clinical_R@5": (0.2, 0.0)}}
    met = {name: ok for _, name, _, _, ok in learning.targets(table)}
    assert met == {"segmentation Dice from scratch": True,
                   "probe AUROC gain over random (or AUROC ≥ 0.97), 10% labels": True,
                   "probe AUROC gain over random (or AUROC ≥ 0.97), 100% labels": False,
                   "clinical R@5 ÷ frequency prior": True}
    # a probe with no room left for a gain still meets its target
    table["SeLIP"]["probe_selip_100%/auroc"] = (0.98, 0.0)
    table["SeLIP"]["probe_random_100%/auroc"] = (0.95, 0.0)
    assert all(ok for _, name, _, _, ok in learning.targets(table) if "100%" in name)
    table["SeLIP"]["prior_i2t_clinical_R@5"] = (0.0, 0.0)
    ratio = next(r for r in learning.targets(table) if r[1].startswith("clinical"))
    assert ratio[2] == math.inf and ratio[4]  # any hit beats a prior that never hits
    del table["SeLIP"]["segment_scratch/dice"]  # not measured: reported as not met
    dice = next(r for r in learning.targets(table) if r[1].startswith("segmentation"))
    assert math.isnan(dice[2]) and not dice[4]


def test_a_stage_is_kept_only_on_resume_with_the_same_settings_and_its_checkpoint(
        tmp_path: Path):
    learning = load_benchmark("learning")
    calls: list[str] = []

    def pretrained() -> dict:
        calls.append("ran")
        (tmp_path / "last.ckpt").touch()
        return {"checkpoint": str(tmp_path / "last.ckpt"), "metrics": {"R@5": 0.5}}
    settings = learning.Settings(tmp_path)
    first = learning.Stages(settings, resume=False).run("pretrain_selip_seed0", pretrained)
    assert learning.Stages(settings, resume=True).run("pretrain_selip_seed0", pretrained) == first
    assert calls == ["ran"]
    learning.Stages(settings, resume=False).run("pretrain_selip_seed0", pretrained)
    assert calls == ["ran"] * 2  # without --resume every stage runs again
    other = learning.Settings(tmp_path, pretrain_steps=7)
    learning.Stages(other, resume=True).run("pretrain_selip_seed0", pretrained)
    assert calls == ["ran"] * 3  # another budget: the saved stage is not this run's
    (tmp_path / "last.ckpt").unlink()
    learning.Stages(other, resume=True).run("pretrain_selip_seed0", pretrained)
    assert calls == ["ran"] * 4  # its checkpoint is gone: pretrain again


def test_a_kept_record_without_its_checkpoint_pretrains_again_with_every_later_stage(
        tmp_path: Path, monkeypatch):
    """The record (``--record``) outlives ``--out`` (a fresh machine): an (arm, seed) whose
    pretraining checkpoint is gone is pretrained again, and its probes and fine-tuning with
    it; what does not depend on it (scratch, threshold) is kept."""
    learning = load_benchmark("learning")
    calls: list[str] = []
    checkpoint = tmp_path / "out" / "last.ckpt"

    def pretrain(arm: str, seed: int, settings, resume: bool = False) -> dict:
        calls.append("pretrain")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.touch()
        return {"checkpoint": str(checkpoint), "metrics": {"i2t_clinical_R@5": 0.5}}

    def segment(mode: str, *args) -> dict:
        calls.append(mode)
        return {f"segment_{mode}/dice": 0.8}
    monkeypatch.setattr(learning, "pretrain", pretrain)
    monkeypatch.setattr(learning, "segment", segment)
    monkeypatch.setattr(learning, "probes", lambda *a: calls.append("probes") or {"p": 1.0})
    monkeypatch.setattr(learning, "threshold_dice",
                        lambda s: calls.append("threshold") or {"segment_threshold/dice": 0.9})
    monkeypatch.setattr(learning.Baselines, "probe_data", lambda self: None)
    settings = learning.Settings(tmp_path / "out", record=tmp_path / "record")

    def run_selip_seed0() -> dict:
        stages = learning.Stages(settings, resume=True)
        return learning.run_one("SeLIP", 0, settings, stages, learning.Baselines(settings))
    first = run_selip_seed0()
    assert calls == ["pretrain", "probes", "scratch", "threshold", "finetune"]
    assert sorted(p.name for p in (tmp_path / "record" / "stages").iterdir()) == [
        "pretrain_selip_seed0.json", "probes_selip_seed0.json", "segment_scratch_seed0.json",
        "segment_selip_seed0.json", "segment_threshold.json"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["last.ckpt"]
    (tmp_path / "record" / "stages" / "segment_selip_seed0.json").unlink()  # stopped there
    calls.clear()
    assert run_selip_seed0() == first and calls == ["finetune"]
    checkpoint.unlink()  # the record kept, the checkpoints lost
    calls.clear()
    assert run_selip_seed0() == first and calls == ["pretrain", "probes", "finetune"]


def _run(arm: str, seed: int, **metrics: float) -> dict:
    return {"arm": arm, "seed": seed, "metrics": metrics}


def test_fine_tuning_must_beat_scratch_beyond_the_seed_spread_over_two_seeds():
    learning = load_benchmark("learning")

    def judged(*gains: float) -> bool:
        runs = [_run("SeLIP", seed, **{"segment_scratch/dice": 0.5,
                                       "segment_finetune/dice": 0.5 + gain})
                for seed, gain in enumerate(gains)]
        row = next(r for r in learning.targets(learning.summarise(runs), runs)
                   if r[1].startswith("fine-tuned"))
        return row[4]
    assert judged(0.05, 0.06, 0.04)
    assert not judged(0.05)  # one seed has no spread to beat
    assert not judged(0.10, -0.06, 0.02)  # mean 0.02 within a spread of 0.08
    assert not judged(-0.02, -0.03)


def test_paired_differences_match_seeds_and_skip_what_one_arm_lacks():
    learning = load_benchmark("learning")
    runs = [_run("SeLIP", 0, **{"i2t_clinical_R@5": 0.6, "i2t_median_rank": 8.0}),
            _run("CLIP", 0, **{"i2t_clinical_R@5": 0.5, "i2t_median_rank": 12.0}),
            _run("SeLIP", 1, **{"i2t_clinical_R@5": 0.55, "i2t_median_rank": 9.0}),
            _run("SeLIP", 2, **{"i2t_clinical_R@5": 0.7}),
            _run("CLIP", 1, **{"i2t_clinical_R@5": 0.6, "i2t_median_rank": 7.0})]
    gaps = learning.paired_differences(runs, ("SeLIP", "i2t_clinical_R@5"),
                                       ("CLIP", "i2t_clinical_R@5"))
    assert gaps == pytest.approx([0.1, -0.05])  # seed 2 has no CLIP run to pair with
    text = learning.paired_markdown(runs)
    assert "| SeLIP − CLIP (test) |" in text
    assert "| i2t_clinical_R@5 | +0.100, -0.050 | +0.025 ± 0.106 | 1 of 2 |" in text
    assert "| i2t_median_rank | -4.000, +2.000 | -1.000 ± 4.243 | 1 of 2 |" in text  # lower wins
    assert learning.paired_markdown(runs[:1]) == ""
    # a run kept only as first reported says so, and counts like the others
    runs[1]["source"] = "transcribed from RESULTS.md"
    text = learning.to_markdown(learning.summarise(runs), learning.seeds_per_arm(runs), runs)
    assert "- CLIP seed 0: transcribed from RESULTS.md" in text
    assert "| i2t_clinical_R@5 | +0.100, -0.050 | +0.025 ± 0.106 | 1 of 2 |" in text


def test_resume_keeps_runs_saved_before_the_loss_was_an_option_and_refuses_another_loss(
        tmp_path: Path):
    learning = load_benchmark("learning")
    settings = learning.Settings(tmp_path)
    older = {key: value for key, value in settings.key().items() if key != "segment_loss"}
    (tmp_path / "learning.json").write_text(json.dumps(
        {"settings": older, "runs": [{"arm": "SeLIP", "seed": 0, "metrics": {}}]}))
    runs, _ = learning.previous_runs(settings, resume=True)  # they used batch Dice
    assert runs == [{"arm": "SeLIP", "seed": 0, "metrics": {}}]
    with pytest.raises(SystemExit, match="use another --out or --record"):
        learning.previous_runs(learning.Settings(tmp_path, segment_loss="dice_fg_ce"), True)


def test_breakdown_groups_lesion_exams_by_kind_and_size_and_scores_normals_apart():
    breakdown = load_benchmark("segment_breakdown")
    score = breakdown.ExamScore
    nan = math.nan
    scores = [score("scratch_seed0", "test", "a", "tumour", 2000, 1800, 0.9, nan),
              score("scratch_seed1", "test", "a", "tumour", 2000, 1500, 0.7, nan),
              score("scratch_seed0", "test", "b", "demyelination", 60, 0, 0.0, nan),
              score("scratch_seed0", "test", "c", "normal", 0, 0, nan, 1.0),
              score("scratch_seed0", "test", "d", "normal", 0, 12, nan, 0.0),
              score("selip_seed0", "test", "b", "demyelination", 60, 50, 0.4, nan)]
    rows = {(r["family"], r["split"], r["group"]): r for r in breakdown.table(scores)}
    everything = rows["scratch", "test", "all lesion exams"]
    assert everything["exams"] == 2 and everything["mean"] == pytest.approx(1.6 / 3)
    assert rows["scratch", "test", "tumour"]["mean"] == pytest.approx(0.8)
    assert rows["scratch", "test", "lesion 1–4 ml"]["mean"] == 0.0
    assert rows["scratch", "test", "lesion-free: clean"]["mean"] == 0.5
    assert rows["scratch", "test", "lesion-free: voxels flagged (mean)"]["mean"] == 6.0
    assert rows["finetune", "test", "demyelination"]["mean"] == pytest.approx(0.4)
    assert rows["scratch", "val", "all lesion exams"]["exams"] == 0
    text = breakdown.markdown(breakdown.table(scores))
    assert "| tumour | – | 0.800 (1) | – | – |" in text


@pytest.mark.slow
@pytest.mark.longest
def test_quick_run_measures_every_row_and_resumes(tmp_path: Path, capsys, monkeypatch):
    def script(name: str, *argv: str) -> str:
        """``python benchmarks/<name>.py <argv>`` in this process; what it printed."""
        monkeypatch.chdir(SCRIPT.parents[1])
        capsys.readouterr()
        load_benchmark(name).main(list(argv))
        return capsys.readouterr().out

    quick = ["--quick", "--out", str(tmp_path / "quick")]
    first = script("learning", *quick)
    saved = json.loads((tmp_path / "quick" / "learning.json").read_text())
    (run,) = saved["runs"]
    metrics = run["metrics"]
    for key in ("i2t_clinical_R@5", "prior_i2t_clinical_R@5", "chance_i2t_clinical_R@5",
                "logit_scale", "soft_target_entropy", "probe_selip_10%/auroc",
                "probe_random_10%/auroc", "probe_selip_100%/auroc", "probe_random_100%/auroc",
                "probe_majority/accuracy", "segment_scratch/dice", "segment_finetune/dice",
                "segment_threshold/dice"):
        assert 0.0 <= metrics[key] < math.inf, key
    for key in ("i2t_clinical_R@5", "probe_selip_100%/auroc", "segment_scratch/dice"):
        assert metrics[key] <= 1.0, key
    assert "| SeLIP | segmentation Dice from scratch |" in first
    assert "clinical R@5 ÷ frequency prior" in (tmp_path / "quick" / "learning.md").read_text()
    # --resume keeps the finished (arm, seed) and runs nothing new
    again = script("learning", *quick, "--resume")
    assert "resuming: 1 run(s) kept" in again
    assert json.loads((tmp_path / "quick" / "learning.json").read_text())["runs"] == [run]
    # stopped before the (arm, seed) was saved: every stage it finished is kept, none rerun
    (tmp_path / "quick" / "learning.json").unlink()
    again = script("learning", *quick, "--resume")
    for stage in ("pretrain_selip_seed0", "probes_selip_seed0", "segment_scratch_seed0",
                  "segment_threshold", "segment_selip_seed0"):
        assert f"resuming: stage {stage} kept" in again, stage
    assert json.loads((tmp_path / "quick" / "learning.json").read_text())["runs"] == [run]
    # stopped inside pretraining: it continues from its last.ckpt (here already at
    # max_steps, so nothing is trained again) and tests the same weights
    (tmp_path / "quick" / "learning.json").unlink()
    (tmp_path / "quick" / "stages" / "pretrain_selip_seed0.json").unlink()
    again = script("learning", *quick, "--resume")
    assert "resuming: pretraining pretrain_selip_seed0 from" in again
    (resumed,) = json.loads((tmp_path / "quick" / "learning.json").read_text())["runs"]
    assert resumed["metrics"]["i2t_clinical_R@5"] == metrics["i2t_clinical_R@5"]
    assert resumed["metrics"]["segment_finetune/dice"] == metrics["segment_finetune/dice"]
    # the truth probes (side, region, diagnosis) read the same run's checkpoint
    probed = script("truth_probe", "--out", str(tmp_path / "quick"), "--arms", "SeLIP",
                    "--num_workers", "0")
    assert "| diagnosis (" in probed and "SeLIP" in probed
    found = json.loads((tmp_path / "quick" / "truth_probe.json").read_text())
    assert all(0.0 <= value <= 1.0 for value in found.values())
    assert "random/seed0/diagnosis/1.0" in found and "SeLIP/seed0/diagnosis/1.0" in found
    # --new_only probes nothing already on record and prints the table from the record
    again = script("truth_probe", "--out", str(tmp_path / "quick"), "--arms", "SeLIP",
                   "--num_workers", "0", "--new_only")
    assert "seed 0: already in" in again and "AUROC" not in again
    assert json.loads((tmp_path / "quick" / "truth_probe.json").read_text()) == found
    diagnosis_row = next(line for line in again.splitlines()
                         if line.startswith("| diagnosis | 100% |"))
    assert f"{found['SeLIP/seed0/diagnosis/1.0']:.3f} ± 0.000 (1)" in diagnosis_row
    # the segmentation breakdown re-scores the run's selected checkpoints exam by exam
    broken = script("segment_breakdown", "--out", str(tmp_path / "quick"), "--num_workers", "0")
    assert "| all lesion exams |" in broken
    saved_breakdown = json.loads((tmp_path / "quick" / "segment_breakdown.json").read_text())
    runs = {row["run"] for row in saved_breakdown["exams"]}
    assert runs == {"scratch_seed0", "selip_seed0"}
    overall = next(row for row in saved_breakdown["table"] if row["family"] == "scratch"
                   and row["split"] == "test" and row["group"] == "all lesion exams")
    # the same checkpoint and exams as selip test: its mean is the benchmark's test Dice
    assert overall["mean"] == pytest.approx(metrics["segment_scratch/dice"], abs=1e-4)
