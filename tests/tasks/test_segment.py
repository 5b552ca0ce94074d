"""SegmentationTask: decoder shapes, Dice on known inputs, every config smoke-run."""

from __future__ import annotations

import pytest
import torch
import yaml

from selip.cli import main
from selip.models import ImageEncoder, ImageEncoderConfig
from selip.models.decoder import UNetDecoder
from selip.tasks import SegmentationTask
from tests.tasks.conftest import ROOT, tiny_data_overrides

SEGMENT_CONFIGS = [c for c in sorted((ROOT / "configs").glob("*.yaml"))
                   if yaml.safe_load(c.read_text()).get("model", {}).get("class_path")
                   == "selip.tasks.SegmentationTask"]


@pytest.mark.parametrize("anisotropic", [True, False])
def test_the_decoder_returns_logits_at_the_input_size(anisotropic):
    encoder = ImageEncoder(ImageEncoderConfig(depth=10, width=4, anisotropic_stem=anisotropic))
    decoder = UNetDecoder(encoder.stage_channels, num_classes=3, width=4)
    image = torch.randn(2, 1, 12, 32, 28)
    logits = decoder(encoder.stages(image), image.shape[2:])
    assert logits.shape == (2, 3, 12, 32, 28)
    with pytest.raises(ValueError, match="at least 2 classes"):
        UNetDecoder(encoder.stage_channels, num_classes=1)


def test_dice_is_one_for_a_perfect_prediction_and_lower_otherwise():
    task = SegmentationTask(mode="scratch", image_encoder={"depth": 10, "width": 4},  # type: ignore[arg-type]
                            decoder_width=4)
    mask = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    mask[..., 2:5, 2:5, 2:5] = 1
    perfect = torch.cat([(mask == 0).float(), (mask == 1).float()], dim=1) * 10
    task._infer = lambda image: perfect  # type: ignore[method-assign]
    logged: dict[str, float] = {}
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    task.log_dict = lambda values, **k: logged.update(  # type: ignore[method-assign]
        {key: float(v) for key, v in values.items()})
    task._evaluate({"image": torch.zeros(1, 1, 8, 8, 8), "mask": mask}, "val")
    task._log_dice("val")
    assert logged["val/dice"] == pytest.approx(1.0)
    half = perfect.clone()
    half[:, :, 2:5, 2:5, 2] = torch.tensor([10.0, 0.0])[None, :, None, None]  # miss 9 of 27
    task._infer = lambda image: half  # type: ignore[method-assign]
    task._evaluate({"image": torch.zeros(1, 1, 8, 8, 8), "mask": mask}, "val")
    task._log_dice("val")
    assert logged["val/dice"] == pytest.approx(2 * 18 / (18 + 27))


@pytest.mark.parametrize("config", SEGMENT_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ["finetune", "frozen", "scratch"])
def test_segment_config_runs_in_every_mode(config, mode, pretrained, tmp_path, capsys):
    manifest, checkpoint = pretrained
    extra = {"--model.init_args.mode": mode, "--model.init_args.decoder_width": 4,
             "--model.init_args.encoder_ckpt": "null" if mode == "scratch" else str(checkpoint),
             "--data.similarity": "null", "--model.init_args.roi_size": "[16, 16, 16]"}
    if mode == "scratch":
        extra["--model.init_args.image_encoder"] = '{"depth": 10, "width": 4}'
    args = tiny_data_overrides(manifest, tmp_path / mode, **extra)
    assert main(["fit", "--config", str(config), *args, "--trainer.fast_dev_run", "1"]) == 0
    assert "val/dice" in capsys.readouterr().out


def test_predict_writes_masks_in_each_inputs_own_shape_and_affine(tiny_cohort, tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    from tests.conftest import head_volume, write_nifti

    manifest = tiny_cohort(n=8)
    for exam in sorted((tmp_path / "exams").iterdir()):  # FLAIR stored LAS, 3 mm slices
        affine = np.diag([-2.0, 2.0, 3.0, 1.0])
        affine[:3, 3] = [22.0, -5.0, 7.0]
        write_nifti(exam / "flair.nii.gz", head_volume((12, 14, 7))[::-1].copy(), affine=affine)
    [config] = SEGMENT_CONFIGS
    args = tiny_data_overrides(manifest, tmp_path, **{
        "--model.init_args.mode": "scratch", "--model.init_args.encoder_ckpt": "null",
        "--model.init_args.image_encoder": '{"depth": 10, "width": 4}',
        "--model.init_args.decoder_width": 4, "--data.similarity": "null",
        "--data.test_fraction": 0.25, "--model.init_args.predict_dir": str(tmp_path / "pred")})
    assert main(["fit", "--config", str(config), *args, "--trainer.max_epochs", "1"]) == 0
    [checkpoint] = tmp_path.glob("runs/segment/version_*/checkpoints/last.ckpt")
    capsys.readouterr()
    assert main(["predict", "--config", str(config), *args, "--ckpt_path", str(checkpoint)]) == 0
    assert "predicted masks written to" in capsys.readouterr().out
    outputs = sorted((tmp_path / "pred").glob("*_mask.nii.gz"))
    assert len(outputs) == 4  # 2 test exams x (t1, flair)
    for output in outputs:
        exam_id, sequence, _ = output.name.split("_")
        source = nib.load(tmp_path / "exams" / exam_id / f"{sequence}.nii.gz")
        mask = nib.load(output)
        assert mask.shape == source.shape
        np.testing.assert_allclose(mask.affine, source.affine)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}

    # Sequences stacked as channels: one mask per exam, on its first sequence's grid.
    stacked = [*args, "--data.stack_sequences", "true",
               "--model.init_args.predict_dir", str(tmp_path / "stacked")]
    assert main(["fit", "--config", str(config), *stacked, "--trainer.max_epochs", "1"]) == 0
    checkpoint = max(tmp_path.glob("runs/segment/version_*/checkpoints/last.ckpt"),
                     key=lambda p: p.stat().st_mtime)
    assert main(["predict", "--config", str(config), *stacked, "--ckpt_path",
                 str(checkpoint)]) == 0
    outputs = sorted((tmp_path / "stacked").glob("*_mask.nii.gz"))
    assert [o.name.split("_", 1)[1] for o in outputs] == ["t1_flair_mask.nii.gz"] * 2
    source = nib.load(tmp_path / "exams" / outputs[0].name.split("_")[0] / "t1.nii.gz")
    assert nib.load(outputs[0]).shape == source.shape


def test_a_frozen_encoder_stays_frozen_batch_norm_statistics_included(frozen_encoder_states):
    pretrained, trained = frozen_encoder_states("segment.yaml", "frozen",
                                                **{"--model.init_args.decoder_width": 4})
    assert any(k.endswith("running_mean") for k in trained)
    assert any(k.endswith("num_batches_tracked") for k in trained)
    assert trained.keys() == pretrained.keys()
    for name, value in pretrained.items():
        torch.testing.assert_close(trained[name], value, rtol=0, atol=0, msg=name)


def test_train_mode_leaves_a_frozen_encoder_in_eval_mode(pretrained):
    _, checkpoint = pretrained
    task = SegmentationTask(mode="frozen", encoder_ckpt=str(checkpoint), decoder_width=4)
    assert not task.encoder.training
    task.train()
    assert task.training and task.decoder.training and not task.encoder.training
    finetune = SegmentationTask(mode="finetune", encoder_ckpt=str(checkpoint), decoder_width=4)
    assert finetune.train().encoder.training
