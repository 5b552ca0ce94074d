"""One reader of a trained model: the downstream tasks, zero-shot and ``selip.load`` read
a checkpoint or an export through ``read_trained_model``, with defaults taken from the
dataclasses training uses, and score with the same two functions."""

from __future__ import annotations

import inspect

import torch

from selip.data.defaults import TEXT_INPUT
from selip.inference import export_model, load
from selip.inference.loading import read_trained_model, settings_from_checkpoint
from selip.io.checkpoints import load_checkpoint
from selip.models.scoring import class_prototypes
from selip.models.selip_model import DUAL_ENCODER
from selip.tasks.downstream import load_pretrained_encoder
from selip.tasks.zeroshot import ZeroShotTask

PROMPTS = {"infarct": ["left frontal lobe: hyperintense signal"],
           "normal": ["No abnormality detected.", "Normal study."]}


def test_every_reader_takes_a_checkpoint_or_an_export_alike(pretrained, tmp_path):
    _, checkpoint = pretrained
    folder = export_model(checkpoint, tmp_path / "export")
    from_checkpoint = load_pretrained_encoder(str(checkpoint)).state_dict()
    from_export = load_pretrained_encoder(str(folder)).state_dict()  # downstream tasks
    assert from_checkpoint.keys() == from_export.keys()
    for name, value in from_checkpoint.items():
        torch.testing.assert_close(from_export[name], value, rtol=0, atol=0)
    task = ZeroShotTask(pretrain_ckpt=str(folder), prompts=PROMPTS)  # zero-shot
    for name, value in load(checkpoint, "cpu").model.state_dict().items():
        torch.testing.assert_close(task.model.state_dict()[name], value, rtol=0, atol=0)


def test_zero_shot_and_selip_load_build_the_same_class_vectors(pretrained):
    _, checkpoint = pretrained
    task = ZeroShotTask(pretrain_ckpt=str(checkpoint), prompts=PROMPTS)
    task.classes = list(PROMPTS)
    task.eval()
    task.on_test_epoch_start()
    model = load(checkpoint, "cpu")
    expected = class_prototypes([model.encode_texts(PROMPTS[name]) for name in PROMPTS])
    assert task.class_embeddings is not None
    torch.testing.assert_close(task.class_embeddings, expected, rtol=1e-5, atol=1e-6)


def test_a_record_without_a_setting_reads_the_training_default(pretrained):
    from selip.data.datamodule import SelipDataModule
    from selip.tasks.pretrain import PretrainTask

    _, checkpoint = pretrained
    stored = load_checkpoint(checkpoint)
    hp = stored["hyper_parameters"]
    for name in ("embed_dim", "temperature", "max_logit_scale", "learn_logit_scale",
                 "sequence_embedding", "max_sequences"):
        hp.pop(name, None)
    stored["selip"]["config"] = ""  # a run config that records no data settings
    settings = settings_from_checkpoint(stored, checkpoint)
    task = inspect.signature(PretrainTask).parameters
    data = inspect.signature(SelipDataModule).parameters
    assert settings.embed_dim == task["embed_dim"].default == DUAL_ENCODER.embed_dim
    assert settings.temperature == task["temperature"].default
    assert settings.max_logit_scale == task["max_logit_scale"].default
    assert settings.max_sequences == task["max_sequences"].default
    assert settings.max_length == data["max_length"].default == TEXT_INPUT.max_length
    assert settings.similarity == data["similarity"].default.preset == TEXT_INPUT.similarity
    assert read_trained_model(checkpoint).settings.max_length == 32  # what the run recorded
