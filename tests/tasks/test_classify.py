"""ClassificationTask: from a real pretraining checkpoint, every mode, label fractions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from selip.cli import main
from selip.data.splits import labelled_subset
from selip.tasks.checkpointing import CheckpointError
from selip.tasks.classify import ClassificationTask
from selip.tasks.downstream import load_pretrained_encoder
from tests.tasks.conftest import TINY_IMAGE, tiny_data_overrides

ROOT = Path(__file__).parents[2]
CLASSIFY_CONFIGS = [c for c in sorted((ROOT / "configs").glob("*.yaml"))
                    if yaml.safe_load(c.read_text()).get("model", {}).get("class_path")
                    == "selip.tasks.ClassificationTask"]


def test_the_encoder_comes_from_the_pretraining_checkpoint(pretrained):
    _, checkpoint = pretrained
    encoder = load_pretrained_encoder(str(checkpoint))
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    torch.testing.assert_close(encoder.resnet.conv1.weight,
                               state["model.image_encoder.resnet.conv1.weight"])
    linear = ClassificationTask(mode="linear", encoder_ckpt=str(checkpoint), num_classes=2)
    assert not any(p.requires_grad for p in linear.encoder.parameters())
    assert linear.hparams["image_encoder"]["width"] == TINY_IMAGE["width"]


@pytest.mark.parametrize("config", CLASSIFY_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ["linear", "finetune", "scratch"])
def test_classify_config_runs_in_every_mode(config, mode, pretrained, tmp_path, capsys):
    manifest, checkpoint = pretrained
    extra = {"--model.init_args.mode": mode, "--data.label_fraction": 0.5,
             "--model.init_args.encoder_ckpt": "null" if mode == "scratch" else str(checkpoint),
             "--data.similarity": "null"}
    if mode == "scratch":
        extra["--model.init_args.image_encoder"] = '{"depth": 10, "width": 4}'
    args = tiny_data_overrides(manifest, tmp_path / mode, **extra)
    assert main(["fit", "--config", str(config), *args, "--trainer.fast_dev_run", "1"]) == 0
    assert "val/f1" in capsys.readouterr().out


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="encoder_ckpt"):
        ClassificationTask(mode="linear")
    torch.save({"state_dict": {}, "selip": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="no SeLIP image encoder"):
        ClassificationTask(mode="finetune", encoder_ckpt=str(tmp_path / "other.ckpt"))
    with pytest.raises(ValueError, match="mode"):
        ClassificationTask(mode="probe")  # type: ignore[arg-type]


def test_label_fraction_is_stratified_and_seeded():
    labels = {i: ("a" if i < 20 else "b") for i in range(30)}
    kept = labelled_subset(labels, 0.1, seed=0)
    assert sum(1 for i in kept if labels[i] == "a") == 2
    assert sum(1 for i in kept if labels[i] == "b") == 1
    assert kept == labelled_subset(labels, 0.1, seed=0) != labelled_subset(labels, 0.1, seed=1)
    assert labelled_subset(labels, 1.0, seed=0) == set(labels)
    with pytest.raises(ValueError, match="label_fraction"):
        labelled_subset(labels, 0.0, seed=0)


ZEROSHOT_CONFIGS = [c for c in sorted((ROOT / "configs").glob("*.yaml"))
                    if yaml.safe_load(c.read_text()).get("model", {}).get("class_path")
                    == "selip.tasks.ZeroShotTask"]


@pytest.mark.parametrize("config", ZEROSHOT_CONFIGS, ids=lambda p: p.name)
def test_zero_shot_config_scores_prompts_against_images(config, pretrained, tmp_path, capsys):
    manifest, checkpoint = pretrained
    prompts = '{"infarct": ["left frontal lobe: hyperintense signal"], "normal": ' \
              '["No abnormality detected.", "Normal study."]}'
    args = tiny_data_overrides(manifest, tmp_path, **{
        "--model.init_args.prompts": prompts, "--data.similarity": "null",
        "--data.test_fraction": 0.3})
    # The command: the pretraining checkpoint as --ckpt_path ...
    assert main(["test", "--config", str(config), *args, "--ckpt_path", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "zero-shot test metrics: accuracy" in out and "auroc" in out
    # ... or as the task's own argument, with the same metrics.
    assert main(["test", "--config", str(config), *args,
                 "--model.init_args.pretrain_ckpt", str(checkpoint)]) == 0
    again = capsys.readouterr().out
    assert again[again.index("zero-shot test metrics"):].splitlines()[0] == \
        out[out.index("zero-shot test metrics"):].splitlines()[0]
    missing = tiny_data_overrides(manifest, tmp_path, **{
        "--model.init_args.pretrain_ckpt": str(checkpoint),
        "--model.init_args.prompts": '{"infarct": ["x: y"]}', "--data.similarity": "null",
        "--data.test_fraction": 0.3})
    assert main(["test", "--config", str(config), *missing]) == 2
    assert "no prompts for class(es) normal" in capsys.readouterr().err


def test_stacked_sequences_inflate_the_pretrained_stem_and_reload_for_test(
        pretrained, tmp_path, capsys):
    manifest, checkpoint = pretrained
    [config] = [c for c in CLASSIFY_CONFIGS if c.name == "classify.yaml"]
    args = tiny_data_overrides(manifest, tmp_path, **{
        "--model.init_args.mode": "finetune", "--model.init_args.encoder_ckpt": str(checkpoint),
        "--data.similarity": "null", "--data.stack_sequences": "true",
        "--data.test_fraction": 0.2})
    assert main(["fit", "--config", str(config), *args, "--trainer.max_epochs", "1"]) == 0
    [last] = tmp_path.glob("runs/classify/version_*/checkpoints/last.ckpt")
    state = torch.load(last, weights_only=True)
    assert state["state_dict"]["encoder.resnet.conv1.weight"].shape[1] == 2  # t1 + flair
    assert state["hyper_parameters"]["image_encoder"]["in_channels"] == 2
    capsys.readouterr()
    assert main(["test", "--config", str(config), *args, "--ckpt_path", str(last)]) == 0
    assert "test/auroc" in capsys.readouterr().out


def test_pretraining_refuses_stacked_sequences(tiny_cohort, tmp_path, capsys):
    from tests.tasks.conftest import tiny_overrides

    args = tiny_overrides(tiny_cohort(n=8), tmp_path, **{"--data.stack_sequences": "true"})
    assert main(["fit", "--config", str(ROOT / "configs" / "demo.yaml"), *args,
                 "--trainer.fast_dev_run", "1"]) == 2
    assert "stack_sequences" in capsys.readouterr().err


def test_a_linear_probe_encoder_stays_frozen_batch_norm_statistics_included(
        frozen_encoder_states):
    pretrained, trained = frozen_encoder_states("classify.yaml", "linear")
    assert any(k.endswith("running_var") for k in trained)
    assert trained.keys() == pretrained.keys()
    for name, value in pretrained.items():
        torch.testing.assert_close(trained[name], value, rtol=0, atol=0, msg=name)


def test_train_mode_leaves_a_linear_probe_encoder_in_eval_mode(pretrained):
    _, checkpoint = pretrained
    task = ClassificationTask(mode="linear", encoder_ckpt=str(checkpoint), num_classes=2)
    assert not task.encoder.training
    task.train()
    assert task.training and task.head is not None and task.head.training
    assert not task.encoder.training
    finetune = ClassificationTask(mode="finetune", encoder_ckpt=str(checkpoint), num_classes=2)
    assert finetune.train().encoder.training
