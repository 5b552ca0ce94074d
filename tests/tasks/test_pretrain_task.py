"""PretrainTask pieces that need no trainer: optimiser groups, settings, the loss path."""

from __future__ import annotations

import pytest
import torch

from selip.tasks import PretrainTask
from tests.tasks.conftest import TINY_IMAGE, TINY_TEXT


def _task(**kwargs: object) -> PretrainTask:
    return PretrainTask(image_encoder=TINY_IMAGE, text_encoder=TINY_TEXT,  # type: ignore[arg-type]
                        embed_dim=8, **kwargs)


class _Trainer:
    estimated_stepping_batches = 100


def test_parameter_groups_split_towers_heads_and_decay(monkeypatch):
    task = _task(lr_image=1e-3, lr_text=1e-5, lr_head=5e-3, weight_decay=0.1)
    monkeypatch.setattr(PretrainTask, "trainer", _Trainer(), raising=False)
    optimizer = task.configure_optimizers()["optimizer"]
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"image_decay", "image_no_decay", "text_decay", "text_no_decay",
                           "head_decay", "head_no_decay", "logit_scale"}
    peak = {name: g["initial_lr"] for name, g in groups.items()}  # before the warmup factor
    assert peak["image_decay"] == 1e-3 and peak["text_decay"] == 1e-5
    assert peak["head_decay"] == 5e-3 and peak["logit_scale"] == 5e-3
    assert groups["image_decay"]["lr"] == pytest.approx(1e-3 / 6)  # warmup 5 steps: 1/6
    assert groups["image_no_decay"]["weight_decay"] == 0.0
    assert groups["logit_scale"]["weight_decay"] == 0.0
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == len([p for p in task.parameters() if p.requires_grad])
    head_ids = {id(p) for p in groups["head_decay"]["params"]}
    assert id(task.model.text_projection.linear.weight) in head_ids
    assert id(task.model.image_projection.linear.weight) in head_ids


def test_a_frozen_scale_and_text_tower_are_left_out_of_the_optimiser(monkeypatch):
    task = PretrainTask(image_encoder=TINY_IMAGE,  # type: ignore[arg-type]
                        text_encoder={**TINY_TEXT, "freeze": True},  # type: ignore[arg-type]
                        embed_dim=8, learn_logit_scale=False)
    monkeypatch.setattr(PretrainTask, "trainer", _Trainer(), raising=False)
    names = {g["name"] for g in task.configure_optimizers()["optimizer"].param_groups}
    assert not any(n.startswith("text") for n in names) and "logit_scale" not in names


def test_hyperparameters_are_plain_data_and_rebuild_the_task():
    task = _task(kl_weight=0.5)
    assert task.hparams["image_encoder"] == {**TINY_IMAGE, "in_channels": 1}
    assert isinstance(task.hparams["text_encoder"], dict)
    again = PretrainTask(**task.hparams)
    assert again.hparams["kl_weight"] == 0.5
    with pytest.raises(ValueError, match="kl_weight"):
        _task(kl_weight=-1.0)


def test_the_loss_path_without_a_trainer_is_clip_when_kl_weight_is_zero():
    task = _task(kl_weight=0.0)
    batch = {"image": torch.randn(4, 1, 16, 16, 16), "sequence": torch.zeros(4, dtype=torch.long),
             "input_ids": torch.randint(0, 100, (4, 6)),
             "attention_mask": torch.ones(4, 6, dtype=torch.long),
             "report_id": torch.tensor([0, 1, 1, 2])}
    monkey_trainer = type("T", (), {"datamodule": None})()
    task._trainer = monkey_trainer  # type: ignore[assignment]
    parts, image, text, logits = task._forward_loss(batch)
    assert logits.shape == (4, 4) and image.shape == text.shape == (4, 8)
    assert float(parts.kl) == 0.0
    from selip.losses import clip_loss, positives_from_ids

    expected = clip_loss(logits, positives_from_ids(batch["report_id"], batch["report_id"]))
    torch.testing.assert_close(parts.total, expected)


def test_a_step_with_non_finite_gradients_is_skipped(monkeypatch):
    task = _task()
    monkeypatch.setattr(task, "log", lambda *args, **kwargs: None)
    weight = task.model.image_projection.linear.weight
    before = weight.detach().clone()
    optimizer = torch.optim.AdamW(task.parameters(), lr=0.1)
    for parameter in task.parameters():
        parameter.grad = torch.ones_like(parameter)
    weight.grad = torch.full_like(weight, float("nan"))
    task.on_before_optimizer_step(optimizer)
    optimizer.step()
    assert torch.equal(weight, before) and task._skipped_steps == 1
    for parameter in task.parameters():
        parameter.grad = torch.ones_like(parameter)
    task.on_before_optimizer_step(optimizer)
    optimizer.step()
    assert not torch.equal(weight, before) and task._skipped_steps == 1
