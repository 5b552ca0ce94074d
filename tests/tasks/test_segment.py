"""SegmentationTask: decoder shapes, Dice on known inputs, every config smoke-run."""

from __future__ import annotations

import math

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
    logits = decoder(encoder.stages(image), image.shape[2:], image)
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
    task.evaluate_batch("val", {"image": torch.zeros(1, 1, 8, 8, 8), "mask": mask}, 0)
    task.finish_evaluation("val")
    assert logged["val/dice"] == pytest.approx(1.0)
    half = perfect.clone()
    half[:, :, 2:5, 2:5, 2] = torch.tensor([10.0, 0.0])[None, :, None, None]  # miss 9 of 27
    task._infer = lambda image: half  # type: ignore[method-assign]
    task.evaluate_batch("val", {"image": torch.zeros(1, 1, 8, 8, 8), "mask": mask}, 0)
    task.finish_evaluation("val")
    assert logged["val/dice"] == pytest.approx(2 * 18 / (18 + 27))


def _logged_scores(task: SegmentationTask, predictions: torch.Tensor, masks: torch.Tensor
                   ) -> dict[str, float]:
    """Evaluate ``predictions`` (B, D, H, W) labels against ``masks`` one sample per batch
    through the task's validation path; returns what it logs at the epoch's end."""
    logged: dict[str, float] = {}
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    task.log_dict = lambda values, **k: logged.update(  # type: ignore[method-assign]
        {key: float(v) for key, v in values.items()})
    for predicted, mask in zip(predictions, masks, strict=True):
        logits = torch.stack([(predicted == 0).float(), (predicted == 1).float()])[None] * 10
        task._infer = lambda image, logits=logits: logits  # type: ignore[method-assign]
        task.evaluate_batch("val", {"image": torch.zeros(1, 1, *mask.shape),
                                    "mask": mask[None, None]}, 0)
    task.finish_evaluation("val")
    return logged


def test_dice_is_over_lesion_exams_and_empty_masks_are_scored_apart():
    task = SegmentationTask(mode="scratch", image_encoder={"depth": 10, "width": 4},  # type: ignore[arg-type]
                            decoder_width=4)
    masks = torch.zeros(3, 8, 8, 8, dtype=torch.long)
    masks[0, 2:5, 2:5, 2:5] = 1  # a lesion exam; exams 1 and 2 have no lesion
    nothing = torch.zeros_like(masks)
    logged = _logged_scores(task, nothing, masks)
    # predicting nothing: Dice 0 on the lesion exam, the empty exams left out of the Dice
    # (not 1, which would give 2/3) and counted clean
    assert logged["val/dice"] == logged["val/dice_class1"] == 0.0
    assert logged["val/empty_clean"] == 1.0
    perfect_plus_false_alarm = masks.clone()
    perfect_plus_false_alarm[2, 0, 0, 0] = 1
    logged = _logged_scores(task, perfect_plus_false_alarm, masks)
    assert logged["val/dice"] == pytest.approx(1.0)
    assert logged["val/empty_clean"] == pytest.approx(0.5)  # exam 2's false alarm
    only_empty = _logged_scores(task, nothing[1:], masks[1:])
    assert math.isnan(only_empty["val/dice"])  # no lesion in the split: nothing to overlap


def test_the_loss_is_configurable_and_defaults_to_foreground_batch_dice():
    from monai.losses import DiceCELoss

    from selip.dice import segmentation_loss

    torch.manual_seed(0)
    logits, mask = torch.randn(2, 2, 4, 4, 4), torch.randint(0, 2, (2, 1, 4, 4, 4))
    default = SegmentationTask(mode="scratch", image_encoder={"depth": 10, "width": 4},  # type: ignore[arg-type]
                               decoder_width=4)
    assert default.hparams["loss"] == "dice_fg_ce" and default.hparams["full_resolution"]
    torch.testing.assert_close(default.loss(logits, mask),
                               segmentation_loss(logits, mask, "dice_fg_ce"))
    old = SegmentationTask(mode="scratch", image_encoder={"depth": 10, "width": 4},  # type: ignore[arg-type]
                           decoder_width=4, loss="dice_ce", full_resolution=False)
    torch.testing.assert_close(old.loss(logits, mask),
                               DiceCELoss(to_onehot_y=True, softmax=True)(logits, mask))
    assert old.decoder.image_block is None


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
    assert main(["fit", "--config", str(config), *args, "--trainer.max_steps", "2",
                 "--trainer.val_check_interval", "2"]) == 0
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
    assert main(["fit", "--config", str(config), *stacked, "--trainer.max_steps", "2",
                 "--trainer.val_check_interval", "2"]) == 0
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
