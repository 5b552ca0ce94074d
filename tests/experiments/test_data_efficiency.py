"""The data-efficiency driver runs every setting and seed from a real checkpoint and saves
a table of mean ± std over the seeds."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from selip.experiments import data_efficiency
from selip.experiments.data_efficiency import mean_std, run, seed_overrides, summarize, to_markdown
from tests.tasks.conftest import ROOT, tiny_data_overrides


@pytest.mark.slow
def test_the_table_has_every_mode_fraction_and_seed(pretrained, tmp_path):
    manifest, checkpoint = pretrained
    extra = tiny_data_overrides(manifest, tmp_path, **{
        "--data.similarity": "null", "--data.test_fraction": 0.3,
        "--trainer.max_steps": 2, "--trainer.val_check_interval": 2,
        "--model.init_args.warmup_steps": 1})
    pairs = [(k, v) for k, v in zip(extra[::2], extra[1::2], strict=True)
             if not k.startswith("--trainer.logger")]  # the driver names each run's logs
    extra = [item for pair in pairs for item in pair]
    results = run(str(checkpoint), tmp_path / "table", extra, fractions=(0.5,), seeds=(0, 1),
                  classify_config=str(ROOT / "configs" / "classify.yaml"),
                  segment_config=str(ROOT / "configs" / "segment.yaml"))
    runs = [(r["mode"], r["label_fraction"], r["seed"]) for r in results["classification"]]
    assert runs == [("linear", 0.5, 0), ("linear", 0.5, 1), ("random_linear", 0.5, 0),
                    ("random_linear", 0.5, 1), ("finetune", 0.5, 0), ("finetune", 0.5, 1),
                    ("scratch", 0.5, 0), ("scratch", 0.5, 1)]
    assert all(0.0 <= r["test/auroc"] <= 1.0 for r in results["classification"])
    assert [(r["mode"], r["seed"]) for r in results["segmentation"]] == [
        ("finetune", 0), ("finetune", 1), ("scratch", 0), ("scratch", 1)]
    assert all("test/dice" in r and "test/empty_clean" in r for r in results["segmentation"])
    # every run trained the same number of optimiser steps, under its own seed
    for name, seed in (("classify_linear_0.5_seed0", 0), ("classify_scratch_0.5_seed1", 1),
                       ("segment_finetune_1.0_seed1", 1)):
        [ckpt] = (tmp_path / "table" / name).glob("version_*/checkpoints/last.ckpt")
        assert torch.load(ckpt, weights_only=True)["global_step"] == 2
        config = yaml.safe_load((ckpt.parents[1] / "config.yaml").read_text())
        assert (config["seed_everything"], config["data"]["label_seed"]) == (seed, seed)
    # scratch runs use the checkpoint's architecture (random weights), not the default ResNet-50
    [ckpt] = (tmp_path / "table" / "classify_scratch_0.5_seed0").glob(
        "version_*/checkpoints/last.ckpt")
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["image_encoder"]["width"] == 4
    # the summary is the mean ± std of the two seeds
    finetune = [r for r in results["classification"] if r["mode"] == "finetune"]
    [summary] = [s for s in results["summary"]["classification"] if s["mode"] == "finetune"]
    values = [r["test/auroc"] for r in finetune]
    assert summary["runs"] == 2
    assert summary["auroc_mean"] == pytest.approx(statistics.fmean(values))
    assert summary["auroc_std"] == pytest.approx(statistics.stdev(values))
    saved = json.loads((tmp_path / "table" / "data_efficiency.json").read_text(),
                       parse_constant=lambda c: float(c))
    assert saved.keys() == results.keys() and saved["seeds"] == [0, 1]
    table = (tmp_path / "table" / "data_efficiency.md").read_text()
    assert "| linear | 50% | 2 |" in table and "| scratch | 100% | 2 |" in table
    assert "mean ± std over 2 seed(s) (0, 1)" in table


def test_mean_and_std_over_seeds():
    rows = [{"mode": "linear", "label_fraction": 0.1, "seed": s, "test/f1": f, "test/auroc": a}
            for s, f, a in ((0, 0.2, 0.5), (1, 0.4, math.nan), (2, 0.6, 0.7))]
    rows.append({"mode": "linear", "label_fraction": 1.0, "seed": 0, "test/f1": 0.9})
    few, full = summarize(rows, ("f1", "auroc"))
    assert (few["runs"], few["f1_mean"], few["f1_std"]) == (3, pytest.approx(0.4),
                                                           pytest.approx(0.2))
    assert (few["auroc_mean"], few["auroc_std"]) == (pytest.approx(0.6),
                                                     pytest.approx(math.sqrt(0.02)))
    assert (full["runs"], full["f1_mean"], full["f1_std"]) == (1, 0.9, 0.0)  # one seed: std 0
    assert all(math.isnan(v) for v in (full["auroc_mean"], full["auroc_std"]))  # none finite
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    markdown = to_markdown({"seeds": [0, 1, 2], "summary": {
        "classification": [{**few, "accuracy_mean": 0.5, "accuracy_std": 0.1}],
        "segmentation": [{"mode": "scratch", "label_fraction": 1.0, "runs": 3,
                          "dice_mean": 0.25, "dice_std": 0.05, "empty_clean_mean": 1.0,
                          "empty_clean_std": 0.0}]}})
    assert "| linear | 10% | 3 | 0.500 ± 0.100 | 0.400 ± 0.200 | 0.600 ± 0.141 |" in markdown
    assert "| scratch | 100% | 3 | 0.250 ± 0.050 | 1.000 ± 0.000 |" in markdown


def test_seeds_set_initialisation_order_and_labelled_subset():
    assert seed_overrides(2) == ["--seed_everything", "2", "--data.label_seed", "2"]
    with pytest.raises(ValueError, match="seeds must be >= 0, got -1"):
        seed_overrides(-1)
    with pytest.raises(ValueError, match="at least one seed"):
        run("x.ckpt", Path("unused"), [], seeds=())


def test_command_line_seeds_and_quick(monkeypatch, tmp_path, capsys):
    calls: list[dict[str, Any]] = []

    def fake_run(encoder_ckpt: str, out: Path, extra: list[str],
                 fractions: tuple[float, ...], seeds: tuple[int, ...],
                 resume: bool) -> dict[str, Any]:
        calls.append({"extra": extra, "fractions": fractions, "seeds": seeds,
                      "resume": resume})
        return {"seeds": list(seeds), "summary": {"classification": [], "segmentation": []}}

    monkeypatch.setattr(data_efficiency, "run", fake_run)
    data_efficiency.main(["--encoder_ckpt", "c.ckpt", "--out", str(tmp_path)])
    data_efficiency.main(["--encoder_ckpt", "c.ckpt", "--out", str(tmp_path), "--quick",
                          "--trainer.max_steps", "40", "--resume"])
    default, quick = calls
    assert (default["resume"], quick["resume"]) == (False, True)
    assert default["seeds"] == (0, 1, 2) and default["fractions"] == (0.1, 0.25, 0.5, 1.0)
    assert default["extra"] == []
    assert quick["seeds"] == (0,) and quick["fractions"] == (0.1, 1.0)
    assert quick["extra"][:2] == ["--trainer.max_steps", "20"]
    assert quick["extra"][-2:] == ["--trainer.max_steps", "40"]  # the user's option wins
    with pytest.raises(SystemExit):
        data_efficiency.main(["--encoder_ckpt", "c.ckpt", "--seeds", "0"])
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err


def test_a_cut_short_table_keeps_its_runs_and_resume_runs_only_the_missing_ones(
        monkeypatch, tmp_path, capsys):
    calls: list[str] = []

    def fake_fit_then_test(config: str, out: Path, name: str, overrides: list[str]
                           ) -> dict[str, float]:
        if (len(calls) == 3 and not resuming) or name == stop_at:
            raise KeyboardInterrupt  # the job is stopped during this run
        calls.append(name)
        return {"test/accuracy": 0.5, "test/f1": 0.4, "test/auroc": 0.1 * len(calls),
                "test/dice": 0.3, "test/empty_clean": 1.0}

    monkeypatch.setattr(data_efficiency, "fit_then_test", fake_fit_then_test)
    out = tmp_path / "table"
    resuming, stop_at = False, ""
    with pytest.raises(KeyboardInterrupt):
        run("a.ckpt", out, ["--trainer.max_steps", "5"], fractions=(0.5,), seeds=(0,))
    saved = json.loads((out / "data_efficiency.json").read_text(), parse_constant=float)
    assert [r["mode"] for r in saved["classification"]] == ["linear", "random_linear",
                                                              "finetune"]
    assert "| finetune | 50% | 1 |" in (out / "data_efficiency.md").read_text()
    first_three = saved["classification"]
    # --resume: the three saved runs are kept, only the fourth and the segmentation run
    resuming, calls[:] = True, []
    results = run("a.ckpt", out, ["--trainer.max_steps", "5"], fractions=(0.5,), seeds=(0,),
                  resume=True)
    assert calls == ["classify_scratch_0.5_seed0", "segment_finetune_1.0_seed0",
                     "segment_scratch_1.0_seed0"]
    assert results["classification"][:3] == first_three
    assert [r["mode"] for r in results["classification"]] == list(data_efficiency.CLASSIFY_MODES)
    assert "kept from the saved table" in capsys.readouterr().out
    # nothing left to run: a second resume trains nothing and gives the same table
    calls[:] = []
    again = run("a.ckpt", out, ["--trainer.max_steps", "5"], fractions=(0.5,), seeds=(0,),
                resume=True)
    assert calls == [] and again["summary"] == results["summary"]
    # a resume with another seed adds its runs and drops none on record, even when it is
    # cut short before reaching the segmentation runs saved earlier
    calls[:] = []
    stop_at = "classify_finetune_0.5_seed1"
    with pytest.raises(KeyboardInterrupt):
        run("a.ckpt", out, ["--trainer.max_steps", "5"], fractions=(0.5,), seeds=(1,),
            resume=True)
    saved = json.loads((out / "data_efficiency.json").read_text(), parse_constant=float)
    assert [(r["mode"], r["seed"]) for r in saved["segmentation"]] == [("finetune", 0),
                                                                        ("scratch", 0)]
    assert len(saved["classification"]) == 4 + 2  # seed 0's four, seed 1's first two
    assert saved["seeds"] == [0, 1]  # every seed the saved rows hold
    stop_at = ""
    both = run("a.ckpt", out, ["--trainer.max_steps", "5"], fractions=(0.5,), seeds=(1,),
               resume=True)
    assert both["seeds"] == [0, 1]
    assert sorted((r["mode"], r["seed"]) for r in both["classification"]) == sorted(
        (mode, seed) for mode in data_efficiency.CLASSIFY_MODES for seed in (0, 1))
    assert {s["runs"] for s in both["summary"]["classification"]} == {2}
    assert "mean ± std over 2 seed(s) (0, 1)" in (out / "data_efficiency.md").read_text()
    # a table made from another checkpoint or with other options is not mixed in
    with pytest.raises(ValueError, match=r"other settings \(encoder_ckpt: saved 'a.ckpt', "
                                         r"now 'b.ckpt'\)"):
        run("b.ckpt", out, ["--trainer.max_steps", "5"], fractions=(0.5,), seeds=(0,),
            resume=True)
    with pytest.raises(ValueError, match="extra: saved"):
        run("a.ckpt", out, ["--trainer.max_steps", "9"], fractions=(0.5,), seeds=(0,),
            resume=True)
    (out / "data_efficiency.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a data-efficiency table"):
        run("a.ckpt", out, [], seeds=(0,), resume=True)
    # from the command line: the error, not a traceback
    with pytest.raises(SystemExit) as stopped:
        data_efficiency.main(["--encoder_ckpt", "a.ckpt", "--out", str(out), "--resume"])
    assert stopped.value.code == 2
    assert "is not a data-efficiency table" in capsys.readouterr().err
