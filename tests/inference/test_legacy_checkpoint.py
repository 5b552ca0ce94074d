"""A checkpoint from before the intensity and norm settings loads with its own scaling
(the percentile clip) and its own norm (batch norm), and embeds exactly as before."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn.modules.batchnorm import BatchNorm3d

import selip
from selip.cli import main
from selip.data.preprocess import preprocess_volume
from selip.inference.loading import read_trained_model
from selip.models import ImageEncoderConfig
from selip.similarity.settings import similarity_settings
from selip.tasks.compatibility import check_recorded_norm
from selip.tasks.downstream import load_pretrained_encoder
from tests.conftest import make_tiny_cohort
from tests.tasks.conftest import ROOT, TINY_IMAGE, tiny_overrides


def _strip_new_settings(checkpoint_path: Path, out: Path) -> Path:
    """The checkpoint as a release before the settings wrote it: no ``norm`` in the image
    encoder's record, no ``intensity`` in the run's recorded config and flat
    ``similarity_<field>`` keys there, no preprocessing record of the task's own."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["image_encoder"].pop("norm")
    assert checkpoint["selip"].pop("preprocess")["intensity"] == "percentile"
    config = yaml.safe_load(checkpoint["selip"]["config"])
    config["data"].pop("intensity")
    # the flat keys before the similarity block, every one recorded with its value
    block = asdict(similarity_settings(config["data"].pop("similarity")))
    config["data"]["similarity"] = block.pop("preset")
    config["data"].update({f"similarity_{key}": value for key, value in block.items()})
    config["model"]["init_args"]["image_encoder"].pop("norm")
    checkpoint["selip"]["config"] = yaml.safe_dump(config)
    torch.save(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny run trained the old way (batch norm, percentile clip) and its checkpoint
    with the settings stripped, as an older release wrote it."""
    root = tmp_path_factory.mktemp("legacy")
    manifest = make_tiny_cohort(root / "cohort", n=10)
    image = {**TINY_IMAGE, "norm": "batch"}
    code = main(["fit", "--config", str(ROOT / "configs" / "demo.yaml"),
                 *tiny_overrides(manifest, root / "run", **{
                     "--model.init_args.image_encoder": json.dumps(image),
                     "--data.intensity": "percentile"}),
                 "--trainer.max_epochs", "1"])
    assert code == 0
    [checkpoint] = (root / "run").glob("runs/demo/version_*/checkpoints/last.ckpt")
    return manifest, checkpoint, _strip_new_settings(checkpoint, root / "old.ckpt")


def _flair(manifest: Path) -> Path:
    lines = manifest.read_text().splitlines()
    return manifest.parent / lines[1].split(",")[lines[0].split(",").index("flair")]


@pytest.mark.slow
def test_an_old_checkpoint_loads_and_embeds_exactly_as_before(old_and_new):
    manifest, recorded, old = old_and_new
    volume = _flair(manifest)
    model, reference = selip.load(old, device="cpu"), selip.load(recorded, device="cpu")
    assert model.preprocess_settings.intensity == "percentile"
    assert model.preprocess_settings == reference.preprocess_settings
    assert isinstance(model.model.image_encoder.resnet.bn1, BatchNorm3d)
    # the paper's scaling, to the bit: [0, 1] with the white point at 1
    preprocessed = model.preprocess(volume)
    assert float(preprocessed.max()) == 1.0
    torch.testing.assert_close(preprocessed[0], torch.from_numpy(
        preprocess_volume(volume, model.preprocess_settings)).float(), rtol=0, atol=0)
    torch.testing.assert_close(model.encode_images([volume]), reference.encode_images([volume]),
                               rtol=0, atol=0)


@pytest.mark.slow
def test_every_reader_of_an_old_checkpoint_builds_batch_norm(old_and_new):
    _, recorded, old = old_and_new
    encoder = load_pretrained_encoder(str(old))  # downstream tasks
    assert encoder.config.norm == "batch"
    trained = read_trained_model(str(old))  # zero-shot and selip.load
    assert trained.model.image_encoder.config.norm == "batch"
    assert trained.intensity == "percentile"
    # the recorded run config, flat (old) and nested (this release), names the same rule
    assert trained.settings.similarity == "english"
    assert read_trained_model(str(recorded)).settings.similarity == "english"
    for name, value in load_pretrained_encoder(str(recorded)).state_dict().items():
        torch.testing.assert_close(encoder.state_dict()[name], value, rtol=0, atol=0)


def test_a_record_without_norm_is_batch_norm_and_a_new_one_keeps_its_own():
    old = {"depth": 10, "width": 4, "anisotropic_stem": True, "in_channels": 1,
           "gradient_checkpointing": False}
    assert ImageEncoderConfig.from_record(old).norm == "batch"
    assert ImageEncoderConfig.from_record({**old, "norm": "group"}).norm == "group"
    assert ImageEncoderConfig().norm == "group"  # what a new run gets
    assert ImageEncoderConfig.from_record({"depth": 10}).norm == "group"  # written by hand
    with pytest.raises(ValueError, match="unknown image encoder settings \\['depht'\\]"):
        ImageEncoderConfig.from_record({"depht": 10})


@pytest.mark.slow
def test_testing_an_old_checkpoint_builds_its_norm_and_names_the_scaling(old_and_new):
    """``selip test --ckpt_path`` re-reads the checkpoint's hyper-parameters over the config
    (Lightning does), so the old record must still mean batch norm there; the data's
    scaling is the config's, so a differing one is named with the option that fixes it."""
    manifest, _, old = old_and_new
    with pytest.warns(UserWarning, match="data.intensity 'percentile', but this run's data "
                                         "uses 'median'.*--data.intensity percentile"):
        code = main(["test", "--config", str(ROOT / "configs" / "demo.yaml"),
                     *tiny_overrides(manifest, old.parent / "tested",
                                     **{"--data.test_fraction": "0.25"}),
                     "--ckpt_path", str(old)])
    assert code == 0


def test_a_checkpoint_with_another_norm_is_refused_naming_the_option():
    checkpoint = {"hyper_parameters": {"image_encoder": {**TINY_IMAGE, "in_channels": 1,
                                                         "gradient_checkpointing": False}}}
    with pytest.raises(ValueError, match=r"uses batch norm but this run builds group norm.*"
                                         r"image_encoder\.norm batch"):
        check_recorded_norm(checkpoint, ImageEncoderConfig(**TINY_IMAGE))
    check_recorded_norm(checkpoint, ImageEncoderConfig(**TINY_IMAGE, norm="batch"))


def test_the_scheme_comes_from_the_tasks_record_then_the_run_config():
    from selip.tasks.compatibility import recorded_intensity

    config = yaml.safe_dump({"data": {"intensity": "median"}})
    assert recorded_intensity({"selip": {"preprocess": {"intensity": "percentile"},
                                         "config": config}}) == "percentile"
    assert recorded_intensity({"selip": {"config": config}}) == "median"
    assert recorded_intensity({"selip": {"config": yaml.safe_dump({"data": {}})}}) == "percentile"
    assert recorded_intensity({"selip": {}}) is None
