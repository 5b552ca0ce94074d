"""`selip fit` end to end: every config smoke-run, TensorBoard tags, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from selip.cli import main
from selip.io.checkpoints import CheckpointError, load_checkpoint
from selip.io.fingerprint import sha256_file
from tests.tasks.conftest import tiny_overrides

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
TASKS = {c.name: yaml.safe_load(c.read_text()).get("model", {}).get("class_path") for c in CONFIGS}
FIT_CONFIGS = [c for c in CONFIGS if TASKS[c.name] == "selip.tasks.PretrainTask"]


def test_every_config_is_smoke_tested():
    # pretraining configs below; the downstream configs in test_classify.py, test_segment.py
    assert {c.name for c in FIT_CONFIGS} >= {"demo.yaml", "pretrain.yaml"}
    assert set(TASKS.values()) <= {"selip.tasks.PretrainTask", "selip.tasks.ClassificationTask",
                                   "selip.tasks.ZeroShotTask", "selip.tasks.SegmentationTask"}


@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: p.name)
def test_fast_dev_run_of_every_config(config, tiny_cohort, tmp_path, capsys):
    manifest = tiny_cohort(n=8)
    code = main(["fit", "--config", str(config), *tiny_overrides(manifest, tmp_path),
                 "--trainer.fast_dev_run", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "final validation metrics" in out
    # every retrieval figure beside its chance level and the frequency prior
    [row] = [line.split() for line in out.splitlines() if line.split()[:1] == ["i2t_R@1"]]
    assert len(row) == 4 and all(0.0 <= float(x) <= 1.0 for x in row[1:])


def test_bf16_mixed_precision_on_cpu(tiny_cohort, tmp_path):
    demo = Path(__file__).parents[2] / "configs" / "demo.yaml"
    # 32³ inputs: at 16³ the last stage is 1×1×1 and batch-norm gradients of a 4-sample batch
    # can overflow bfloat16, which is a property of the toy shape, not of the pipeline.
    overrides = tiny_overrides(tiny_cohort(n=8), tmp_path, **{"--trainer.precision": "bf16-mixed",
                                                              "--data.shape": "[32, 32, 32]"})
    assert main(["fit", "--config", str(demo), *overrides, "--trainer.fast_dev_run", "1"]) == 0


def _fit(manifest: Path, root: Path, **extra: object) -> Path:
    demo = Path(__file__).parents[2] / "configs" / "demo.yaml"
    code = main(["fit", "--config", str(demo), *tiny_overrides(manifest, root, **extra),
                 "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
                 "--model.init_args.figures_every_n_val_epochs", "1"])
    assert code == 0
    [version] = (root / "runs" / "demo").iterdir()
    return version


def test_tensorboard_holds_the_documented_tags_and_no_report_text(tiny_cohort, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    manifest = tiny_cohort(n=8)
    log_dir = _fit(manifest, tmp_path)
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {"train/loss", "train/loss_ce", "train/loss_kl", "train/logit_scale",
                "train/soft_target_entropy", "val/loss", "val/loss_ce", "val/loss_kl",
                "val/i2t_R@1", "val/i2t_R@5", "val/i2t_R@10", "val/i2t_median_rank",
                "val/t2i_R@5", "val/t2i_median_rank", "val/i2t_semantic_R@5",
                "val/t2i_semantic_R@5", "perf/samples_per_second", "perf/data_time",
                "perf/step_time", "perf/data_fraction"}
    assert expected <= scalars, expected - scalars
    assert any(t.startswith("lr-AdamW/image") for t in scalars)
    assert any(t.startswith("lr-AdamW/text") for t in scalars)
    assert any(t.startswith("lr-AdamW/head") for t in scalars)
    assert {"val/similarity_predicted_vs_target", "val/input_mid_slices"} <= set(
        events.Tags()["images"])
    assert (log_dir / "projector_config.pbtxt").is_file()
    # the logs never contain report text unless asked for (patient data)
    logged = b"".join(p.read_bytes() for p in log_dir.rglob("*") if p.is_file())
    assert b"frontal lobe" not in logged and b"thalamus" not in logged


def test_checkpoints_carry_a_reproducibility_record_and_load_weights_only(tiny_cohort,
                                                                          tmp_path):
    manifest = tiny_cohort(n=8)
    log_dir = _fit(manifest, tmp_path)
    last = log_dir / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    record = checkpoint["selip"]
    assert record["version"]
    assert record["manifest_sha256"] == sha256_file(manifest)
    assert len(record["similarity_key"]) == 64
    config = yaml.safe_load(record["config"])
    assert config["model"]["init_args"]["kl_weight"] == 1.0
    assert config["data"]["manifest"] == str(manifest)
    assert any(k.startswith("model.image_encoder") for k in checkpoint["state_dict"])
    assert list(log_dir.glob("checkpoints/best-*.ckpt"))
    assert not list(log_dir.rglob("*.tmp"))


def test_non_selip_and_corrupt_checkpoints_give_clear_errors(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="not a selip checkpoint"):
        load_checkpoint(tmp_path / "plain.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_clip_baseline_and_a_missing_similarity_table(tiny_cohort, tmp_path, capsys):
    manifest = tiny_cohort(n=8)
    demo = Path(__file__).parents[2] / "configs" / "demo.yaml"
    base = ["fit", "--config", str(demo), "--trainer.fast_dev_run", "1"]
    clip = tiny_overrides(manifest, tmp_path, **{"--model.init_args.kl_weight": 0,
                                                 "--data.similarity": "null"})
    assert main([*base, *clip]) == 0
    capsys.readouterr()
    broken = tiny_overrides(manifest, tmp_path, **{"--data.similarity": "null"})
    assert main([*base, *broken]) == 2
    err = capsys.readouterr().err
    assert "kl_weight > 0 needs the report-similarity table" in err and "Traceback" not in err


def test_a_bad_manifest_stops_fit_with_every_problem(tmp_path, capsys):
    bad = tmp_path / "m.csv"
    bad.write_text("exam_id,t1,report\na,missing.nii.gz,\n")
    demo = Path(__file__).parents[2] / "configs" / "demo.yaml"
    assert main(["fit", "--config", str(demo), *tiny_overrides(bad, tmp_path)]) == 2
    err = capsys.readouterr().err
    # the absent flair column, the empty report and the missing t1 file, in one run
    assert "3 problems in the data" in err and "Traceback" not in err
    assert "missing.nii.gz" in err


def test_selip_test_writes_retrieval_metrics_and_topk_ids(tiny_cohort, tmp_path, capsys):
    manifest = tiny_cohort(n=10)
    split = {"--data.val_fraction": 0.2, "--data.test_fraction": 0.3}
    log_dir = _fit(manifest, tmp_path, **split)
    capsys.readouterr()
    demo = Path(__file__).parents[2] / "configs" / "demo.yaml"
    code = main(["test", "--config", str(demo), *tiny_overrides(manifest, tmp_path, **split),
                 "--ckpt_path", str(log_dir / "checkpoints" / "last.ckpt")])
    assert code == 0
    assert "test retrieval written to" in capsys.readouterr().out
    [folder] = (tmp_path / "runs" / "demo").glob("version_*/test_retrieval")
    metrics = json.loads((folder / "retrieval_metrics.json").read_text())
    assert metrics["num_queries_i2t"] == 6  # 3 test exams x 2 sequences
    assert 0.0 <= metrics["i2t_R@5"] <= 1.0 and "t2i_semantic_R@5" in metrics
    header = (folder / "retrieval_i2t_topk.csv").read_text().splitlines()[0]
    assert header == "query_sample_id,position,report_id,score"
    assert not (folder / "report_texts.csv").exists()  # texts only when opted in
    written = b"".join(p.read_bytes() for p in folder.iterdir())
    assert b"frontal lobe" not in written
