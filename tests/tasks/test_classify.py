"""ClassificationTask: from a real pretraining checkpoint, every mode, label fractions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml

from selip.cli import main
from selip.data.splits import labelled_subset
from selip.io.checkpoints import CheckpointError
from selip.tasks.classify import ClassificationTask
from selip.tasks.downstream import final_step_unvalidated, load_pretrained_encoder
from selip.tasks.schedule import warmup_then_decay
from selip.training.lightning_cli import training_cli
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
@pytest.mark.parametrize("mode", ["linear", "finetune", "scratch", "random_linear"])
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


class StepCounter(pl.Callback):
    """Counts optimiser steps and validations; records each step's learning rate."""

    def __init__(self) -> None:
        self.steps = 0
        self.validations = 0
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        self.steps += 1
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations += 1


def test_the_budget_is_the_same_optimiser_steps_at_every_label_fraction(tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=10)
    [config] = [c for c in CLASSIFY_CONFIGS if c.name == "classify.yaml"]
    counted = {}
    for fraction in (0.3, 1.0):
        args = tiny_data_overrides(manifest, tmp_path / str(fraction), **{
            "--model.init_args.mode": "scratch", "--model.init_args.encoder_ckpt": "null",
            "--model.init_args.image_encoder": json.dumps(TINY_IMAGE),
            "--model.init_args.lr": 0.01, "--model.init_args.warmup_steps": 2,
            "--data.similarity": "null", "--data.label_fraction": fraction,
            "--trainer.max_steps": 6, "--trainer.val_check_interval": 3,
            "--trainer.callbacks+": json.dumps({"class_path":
                                                "tests.tasks.test_classify.StepCounter"})})
        cli = training_cli(["fit", "--config", str(config), *args])
        [counter] = [c for c in cli.trainer.callbacks if isinstance(c, StepCounter)]
        counted[fraction] = (counter, cli.trainer.current_epoch, len(cli.datamodule.datasets[
            "train"]))
    (few, few_epochs, few_pairs), (full, full_epochs, full_pairs) = counted[0.3], counted[1.0]
    assert few_pairs < full_pairs  # 30 % of the labels: fewer training pairs ...
    assert few_epochs > full_epochs  # ... so more passes over them ...
    assert few.steps == full.steps == 6  # ... for the same number of optimiser steps,
    assert few.validations == full.validations == 2  # validated after steps 3 and 6,
    assert few.lrs == pytest.approx(full.lrs)  # with the same schedule: 2 warmup steps
    factor = warmup_then_decay(6, 2, "cosine")
    assert few.lrs == pytest.approx([0.01 * factor(step) for step in range(6)])
    assert few.lrs[:3] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])


def test_a_budget_whose_last_step_is_not_validated_is_flagged():
    assert final_step_unvalidated(200, 50, None) is False
    assert final_step_unvalidated(210, 50, None) is True
    assert final_step_unvalidated(210, 50, 1) is False  # validation per epoch instead
    assert final_step_unvalidated(-1, 50, None) is False  # an epoch budget
    assert final_step_unvalidated(210, 0.5, None) is False  # a fraction of an epoch


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="encoder_ckpt"):
        ClassificationTask(mode="linear")
    torch.save({"state_dict": {}, "selip": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not of SeLIP pretraining"):
        ClassificationTask(mode="finetune", encoder_ckpt=str(tmp_path / "other.ckpt"))
    with pytest.raises(ValueError, match="mode"):
        ClassificationTask(mode="probe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"warmup_steps must be .* got -1"):
        ClassificationTask(mode="scratch", image_encoder=TINY_IMAGE,  # type: ignore[arg-type]
                           warmup_steps=-1)


def test_label_fraction_is_stratified_and_seeded():
    labels = {i: ("a" if i < 20 else "b") for i in range(30)}
    kept = labelled_subset(labels, 0.1, seed=0)
    assert sum(1 for i in kept if labels[i] == "a") == 2
    assert sum(1 for i in kept if labels[i] == "b") == 1
    assert kept == labelled_subset(labels, 0.1, seed=0) != labelled_subset(labels, 0.1, seed=1)
    assert labelled_subset(labels, 1.0, seed=0) == set(labels)
    with pytest.raises(ValueError, match="label_fraction"):
        labelled_subset(labels, 0.0, seed=0)


def test_label_seed_draws_another_labelled_subset_from_the_same_split(tiny_cohort, tmp_path):
    from selip.data.datamodule import SelipDataModule

    manifest = tiny_cohort(n=16)

    def exams(label_seed: int | None) -> dict[str, set[str]]:
        datamodule = SelipDataModule(str(manifest), cache_dir=str(tmp_path / "cache"),
                                     batch_size=2, num_workers=0, max_length=32,
                                     progress=False, similarity=None, require_label=True,
                                     val_fraction=0.25, test_fraction=0.25, label_fraction=0.4,
                                     label_seed=label_seed)
        datamodule.setup("fit")
        return {split: {p.exam_id for p in datamodule.pairs if p.split == split}
                for split in ("train", "val", "test")}

    default, zero, seeds = exams(None), exams(0), [exams(seed) for seed in range(1, 6)]
    assert default == zero  # the default is split_seed (0): earlier runs draw the same subset
    assert all(s["val"] == zero["val"] and s["test"] == zero["test"] for s in seeds)
    assert all(len(s["train"]) == len(zero["train"]) for s in seeds)
    assert any(s["train"] != zero["train"] for s in seeds)


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
    assert main(["fit", "--config", str(config), *args, "--trainer.max_steps", "2",
                 "--trainer.val_check_interval", "2"]) == 0
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


def test_random_linear_is_a_frozen_probe_on_random_weights_of_the_same_network(pretrained):
    """The linear probe's baseline: the checkpoint's architecture, random weights, frozen."""
    _, checkpoint = pretrained
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    torch.manual_seed(0)
    task = ClassificationTask(mode="random_linear", encoder_ckpt=str(checkpoint), num_classes=2)
    assert task.hparams["image_encoder"] == ClassificationTask(
        mode="linear", encoder_ckpt=str(checkpoint), num_classes=2).hparams["image_encoder"]
    assert not torch.equal(task.encoder.resnet.conv1.weight,
                           state["model.image_encoder.resnet.conv1.weight"])
    assert not any(p.requires_grad for p in task.encoder.parameters())
    assert not task.train().encoder.training  # batch-norm statistics stay the random ones


def test_train_mode_leaves_a_linear_probe_encoder_in_eval_mode(pretrained):
    _, checkpoint = pretrained
    task = ClassificationTask(mode="linear", encoder_ckpt=str(checkpoint), num_classes=2)
    assert not task.encoder.training
    task.train()
    assert task.training and task.head is not None and task.head.training
    assert not task.encoder.training
    finetune = ClassificationTask(mode="finetune", encoder_ckpt=str(checkpoint), num_classes=2)
    assert finetune.train().encoder.training


def test_a_probe_standardises_its_frozen_features_and_only_a_probe(pretrained):
    """Frozen features differ in scale between encoders; the head sees them standardised."""
    _, checkpoint = pretrained
    torch.manual_seed(0)
    task = ClassificationTask(mode="random_linear", encoder_ckpt=str(checkpoint),
                              num_classes=2).train()
    seen: list[torch.Tensor] = []
    assert task.head is not None
    task.head.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    image = torch.randn(6, 1, 16, 16, 16)
    task(image)
    torch.testing.assert_close(seen[0].mean(0), torch.zeros(seen[0].shape[1]),
                               atol=1e-5, rtol=0)
    with torch.no_grad():
        varying = task.encoder(image).var(0) > 1e-6  # well above the norm's eps (1e-8)
    assert varying.any()
    torch.testing.assert_close(seen[0].std(0, unbiased=False)[varying],
                               torch.ones(int(varying.sum())), atol=1e-2, rtol=0)
    assert not dict(task.feature_norm.named_parameters())  # nothing to learn in it
    finetune = ClassificationTask(mode="finetune", encoder_ckpt=str(checkpoint), num_classes=2)
    assert isinstance(finetune.feature_norm, torch.nn.Identity)


def test_a_random_encoder_probe_learns_at_the_configs_learning_rate_only_standardised(
        pretrained):
    """The data-efficiency bug, small: at lr 1e-3 for 100 steps a probe on a random frozen
    encoder separates two kinds of volume once its features are standardised; on the raw
    features (the old head) its loss stays near ln 2, the uniform guess."""
    _, checkpoint = pretrained
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(32, 1, 16, 16, 16, generator=generator)
    labels = torch.arange(32) % 2
    images[labels == 1] += 1.0  # the brighter kind
    losses = {}
    for standardised in (True, False):
        torch.manual_seed(0)
        task = ClassificationTask(mode="random_linear", encoder_ckpt=str(checkpoint),
                                  num_classes=2).train()
        if not standardised:
            task.feature_norm = torch.nn.Identity()
        assert task.head is not None
        optimiser = torch.optim.AdamW(task.head.parameters(), lr=1e-3)
        for _ in range(100):
            loss = torch.nn.functional.cross_entropy(task(images), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            losses[standardised] = float(torch.nn.functional.cross_entropy(
                task.eval()(images), labels))
    # seeded: 0.41 standardised vs 0.66 raw (ln 2 = 0.69)
    assert losses[True] < 0.7 * math.log(2) < 0.9 * math.log(2) < losses[False], losses


def test_fine_tuning_on_another_intensity_scale_than_pretraining_is_named(pretrained, tmp_path,
                                                                          recwarn):
    manifest, checkpoint = pretrained  # pretrained on the default median scale
    config = ROOT / "configs" / "classify.yaml"
    extra = {"--model.init_args.mode": "finetune", "--data.similarity": "null",
             "--model.init_args.encoder_ckpt": str(checkpoint)}
    args = tiny_data_overrides(manifest, tmp_path / "same", **extra)
    assert main(["fit", "--config", str(config), *args, "--trainer.fast_dev_run", "1"]) == 0
    assert not [w for w in recwarn if "data.intensity" in str(w.message)]
    args = tiny_data_overrides(manifest, tmp_path / "other",
                               **{**extra, "--data.intensity": "percentile"})
    with pytest.warns(UserWarning, match=r"scaled by data\.intensity 'median', but this run's "
                                         r"data uses 'percentile'.*--data\.intensity median"):
        assert main(["fit", "--config", str(config), *args, "--trainer.fast_dev_run", "1"]) == 0
