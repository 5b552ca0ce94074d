"""PreciseBatchNorm: added by the tasks themselves when an encoder trains with batch norm,
and it leaves the statistics that the current weights give on the recent batches."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from selip.models import ImageEncoderConfig
from selip.models.precise_bn import recompute_batchnorm_statistics
from selip.tasks import ClassificationTask, PretrainTask
from selip.training.precise_bn import PreciseBatchNorm
from tests.tasks.conftest import TINY_IMAGE, TINY_TEXT


def _pretrain(norm: str) -> PretrainTask:
    return PretrainTask(image_encoder=ImageEncoderConfig(**{**TINY_IMAGE, "norm": norm}),
                        text_encoder=TINY_TEXT, embed_dim=8)  # type: ignore[arg-type]


def test_a_task_adds_it_only_for_a_trainable_batch_norm_encoder():
    [callback] = _pretrain("batch").configure_callbacks()
    assert isinstance(callback, PreciseBatchNorm)
    assert _pretrain("group").configure_callbacks() == []
    assert _pretrain("instance").configure_callbacks() == []
    scratch = ClassificationTask(mode="scratch", num_classes=2, image_encoder=ImageEncoderConfig(
        **{**TINY_IMAGE, "norm": "batch"}))
    assert len(scratch.configure_callbacks()) == 1
    # a frozen probe keeps the statistics its encoder was saved with
    probe = ClassificationTask(mode="random_linear", num_classes=2,
                               image_encoder=ImageEncoderConfig(**{**TINY_IMAGE, "norm": "batch"}))
    assert probe.configure_callbacks() == []


def test_the_users_own_callback_is_kept():
    task = _pretrain("batch")
    mine = PreciseBatchNorm(num_batches=3)
    task._trainer = SimpleNamespace(callbacks=[mine])  # type: ignore[assignment]
    assert task.configure_callbacks() == []


def test_before_validation_the_statistics_are_those_of_the_recent_batches():
    task = _pretrain("batch")
    encoder = task.model.image_encoder
    callback = PreciseBatchNorm(num_batches=2)
    batches = [torch.rand(4, 1, 16, 32, 32) * (i + 1) for i in range(3)]
    for index, images in enumerate(batches):
        callback.on_train_batch_end(None, task, None, {"image": images}, index)  # type: ignore[arg-type]
    callback.on_validation_start(SimpleNamespace(sanity_checking=True), task)  # type: ignore[arg-type]
    assert float(encoder.resnet.bn1.running_mean.abs().max()) == 0.0  # untouched in sanity
    callback.on_validation_start(SimpleNamespace(sanity_checking=False), task)  # type: ignore[arg-type]
    got = {k: v.clone() for k, v in encoder.state_dict().items() if "running" in k}
    # the same, recomputed by hand over the last two batches (float16 as kept)
    recompute_batchnorm_statistics(encoder, [b.half().float() for b in batches[1:]])
    for name, value in encoder.state_dict().items():
        if "running" in name:
            torch.testing.assert_close(got[name], value)
    assert float(encoder.resnet.bn1.running_mean.abs().max()) > 0


def test_num_batches_must_be_positive():
    with pytest.raises(ValueError, match="num_batches must be >= 1"):
        PreciseBatchNorm(num_batches=0)


def test_nothing_is_recomputed_again_without_a_training_step_between():
    task = _pretrain("batch")
    callback = PreciseBatchNorm(num_batches=2)
    callback.on_train_batch_end(None, task, None, {"image": torch.rand(4, 1, 16, 32, 32)}, 0)  # type: ignore[arg-type]
    assert callback.recompute(task) == 1
    assert callback.recompute(task) == 0  # e.g. the epoch's end right after its validation
