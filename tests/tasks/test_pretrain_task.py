"""PretrainTask pieces that need no trainer: optimiser groups, settings, the loss path."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from selip.data.description import DataDescription, train_report_counts
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
    assert task.hparams["image_encoder"] == {**TINY_IMAGE, "in_channels": 1,
                                             "gradient_checkpointing": False, "norm": "group"}
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


class _Table:
    """Similarity lookup over report ids: S = 1 on the diagonal, else 0."""

    def lookup(self, rows: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        cols = rows if cols is None else cols
        return (rows[:, None] == cols[None, :]).float()


def _datamodule(**described: object) -> SimpleNamespace:
    """A stand-in datamodule: only ``describe()``, as the tasks use it."""
    # Training pairs carry reports 0, 0, 0, 1, 2; report 3 is only in validation.
    splits = ["train"] * 5 + ["val"] * 3 + ["unused"]
    report_ids = [0, 0, 0, 1, 2, 0, 1, 3, 1]
    pairs = [SimpleNamespace(split=s, report_id=r) for s, r in zip(splits, report_ids, strict=True)]
    description = DataDescription(report_texts=["a", "b", "c", "d"], pairs=pairs,  # type: ignore[arg-type]
                                  train_report_counts=train_report_counts(pairs, 4),  # type: ignore[arg-type]
                                  similarity=_Table(), **described)  # type: ignore[arg-type]
    return SimpleNamespace(describe=lambda: description)


def _collapsed_outputs() -> list[dict[str, torch.Tensor]]:
    constant = torch.full((3, 8), 8 ** -0.5)  # a collapsed model: every embedding equal
    return [{"image_emb": constant, "text_emb": constant, "report_id": torch.tensor([0, 1, 3]),
             "sample_id": torch.tensor([5, 6, 7])}]


def test_training_report_counts_come_from_the_train_pairs_only():
    counts = _datamodule().describe().train_report_counts
    assert counts is not None and counts.tolist() == [3, 1, 1, 0]
    assert train_report_counts([], 4) is None


def test_retrieval_logs_the_frequency_prior_and_semantic_chance(monkeypatch, tmp_path):
    task = _task()
    trainer = SimpleNamespace(datamodule=_datamodule(), is_global_zero=True,
                              log_dir=str(tmp_path), default_root_dir=str(tmp_path))
    task._trainer = trainer  # type: ignore[assignment]
    logged: dict[str, float] = {}
    monkeypatch.setattr(task, "log_dict", lambda values, **kwargs: logged.update(values))
    task.setup("fit")
    task._val_outputs = _collapsed_outputs()
    task._retrieval("val")
    # the prior ranks reports 0 (3 pairs), 1 (1), 3 (unseen): the truths rank 1, 2, 3
    assert logged["val/prior_i2t_R@1"] == pytest.approx(1 / 3)
    assert logged["val/prior_i2t_median_rank"] == 2.0
    assert logged["val/prior_i2t_semantic_R@1"] == pytest.approx(1 / 3)
    assert logged["val/chance_i2t_semantic_R@1"] == pytest.approx(1 / 3)
    assert logged["val/chance_t2i_semantic_R@5"] == 1.0
    assert logged["val/i2t_R@1"] == 0.0 and logged["val/i2t_median_rank"] == 3.0  # collapsed
    task._val_outputs = _collapsed_outputs()
    task.finish_evaluation("test")
    written = json.loads((tmp_path / "test_retrieval" / "retrieval_metrics.json").read_text())
    assert written["prior_i2t_R@1"] == pytest.approx(1 / 3)
    assert {"prior_i2t_R@10", "chance_i2t_semantic_R@10", "chance_t2i_semantic_R@1"} <= set(
        written)
    assert not any("clinical" in key for key in [*logged, *written])  # no truth: none


def test_retrieval_logs_clinical_recall_when_the_datamodule_knows_the_truth(monkeypatch,
                                                                           tmp_path):
    from selip.metrics import clinical_truth

    # samples 5, 6, 7 (reports 0, 1, 3) show findings of classes 0, 1, 0; report 3 words
    # report 0's findings otherwise
    datamodule = _datamodule(clinical_truth=clinical_truth([-1] * 5 + [0, 1, 0, -1],
                                                           [[0], [1], [], [0]]))
    task = _task()
    task._trainer = SimpleNamespace(datamodule=datamodule, is_global_zero=True,  # type: ignore[assignment]
                                    log_dir=str(tmp_path), default_root_dir=str(tmp_path))
    logged: dict[str, float] = {}
    monkeypatch.setattr(task, "log_dict", lambda values, **kwargs: logged.update(values))
    task.setup("fit")
    for stage in ("val", "test"):
        logged.clear()
        task._val_outputs = _collapsed_outputs()
        if stage == "val":
            task._retrieval("val")
        else:
            task.finish_evaluation("test")
        # collapsed: each image's hits tie every other text (ranks 2, 3, 2 of 3)
        assert logged[f"{stage}/i2t_clinical_R@1"] == 0.0
        assert logged[f"{stage}/i2t_clinical_R@5"] == 1.0
        assert logged[f"{stage}/chance_i2t_clinical_R@1"] == pytest.approx((2 + 1 + 2) / 9)
        assert logged[f"{stage}/t2i_clinical_R@1"] == 0.0
        assert f"{stage}/chance_t2i_clinical_R@10" in logged
        # the prior ranks reports 0 (3 pairs), 1 (1), 3 (0): hits rank 1, 2, 1
        assert logged[f"{stage}/prior_i2t_clinical_R@1"] == pytest.approx(2 / 3)
    written = json.loads((tmp_path / "test_retrieval" / "retrieval_metrics.json").read_text())
    assert written["prior_i2t_clinical_R@1"] == pytest.approx(2 / 3)
    assert {f"{name}_R@{k}" for name in ("i2t_clinical", "t2i_clinical", "chance_i2t_clinical",
                                         "chance_t2i_clinical", "prior_i2t_clinical")
            for k in (1, 5, 10)} <= set(written)


def test_the_finiteness_check_costs_one_host_sync(monkeypatch):
    task = _task()
    monkeypatch.setattr(task, "log", lambda *args, **kwargs: None)
    for parameter in task.parameters():
        parameter.grad = torch.ones_like(parameter)
    syncs = []
    original = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: syncs.append(1) or original(t))
    task.on_before_optimizer_step(torch.optim.AdamW(task.parameters()))
    assert len(syncs) == 1  # was one per gradient tensor (269 for the paper model)


def test_under_a_gradient_scaler_selip_neither_skips_nor_counts(monkeypatch):
    task = _task()
    monkeypatch.setattr(task, "log", lambda *args, **kwargs: None)
    task._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()))
    weight = task.model.image_projection.linear.weight
    weight.grad = torch.full_like(weight, float("inf"))  # the scaler's own early overflow
    task.on_before_optimizer_step(torch.optim.AdamW(task.parameters()))
    assert weight.grad is not None and task._skipped_steps == 0  # the scaler skips it


def test_the_logit_scale_comes_back_down_from_its_cap():
    """The issue's demonstration: once the scale had overshot the cap, 200 AdamW steps that
    wanted a smaller scale left it there with gradient 0. Clamped after every step, it
    never exceeds the cap and follows the gradient back down."""
    import math

    task = _task(temperature=0.02)
    log_scale = task.model.logit_scale.log_scale
    cap = math.log(100.0)
    optimizer = torch.optim.AdamW([log_scale], lr=1e-2, weight_decay=0.0)

    def step(sign: float, index: int) -> None:
        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = sign * task.model.logit_scale()
            loss.backward()
            return loss

        task.optimizer_step(0, index, optimizer, closure)

    for index in range(100):  # wants a larger scale: pushes against the cap
        step(-1.0, index)
        assert float(log_scale) <= cap + 1e-6  # the cap in float32
    assert math.isclose(float(log_scale), cap, rel_tol=1e-6)  # held at the cap
    for index in range(200):  # now wants a smaller one
        step(1.0, index)
    assert float(log_scale) < cap - 0.1
    assert float(task.model.logit_scale()) < 100.0 * math.exp(-0.1)
