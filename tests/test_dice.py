"""selip.dice: the segmentation losses and the hard Dice scores, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import DiceCELoss

from selip.dice import (
    LOSSES,
    empty_clean,
    foreground_dice,
    segmentation_loss,
    soft_dice_loss,
)

S = 1e-5  # the smoothing term


def _two_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits 0 everywhere (p = 0.5 for both classes) over 2 voxels; sample 0's mask is
    [1, 0] (one lesion voxel), sample 1's is empty. (B=2, C=2, 1, 1, 2) and (2, 1, 1, 1, 2)."""
    logits = torch.zeros(2, 2, 1, 1, 2)
    mask = torch.tensor([[1, 0], [0, 0]]).view(2, 1, 1, 1, 2)
    return logits, mask


def test_losses_match_hand_computed_values():
    logits, mask = _two_samples()
    ce = math.log(2)  # p = 0.5 for the true class at every voxel
    # Foreground only, per sample: sample 0 has I = 0.5, ΣP = 1, ΣG = 1; sample 1 has
    # I = 0, ΣP = 1, ΣG = 0, a Dice of ~0 (loss ~1) although nothing can overlap.
    fg = ((1 - (1 + S) / (2 + S)) + (1 - S / (1 + S))) / 2
    assert float(segmentation_loss(logits, mask, "dice_fg_ce")) == pytest.approx(fg + ce)
    assert fg == pytest.approx(0.75, abs=1e-4)
    # Batch Dice: one ratio over both samples, I = 0.5, ΣP = 2, ΣG = 1 → Dice 1/3.
    batch = 1 - (1 + S) / (3 + S)
    assert float(segmentation_loss(logits, mask, "batch_dice_fg_ce")) == pytest.approx(
        batch + ce)
    assert batch == pytest.approx(2 / 3, abs=1e-4)
    # Background included, per sample (MONAI's DiceCELoss): background of sample 0 is
    # like its foreground (0.5 loss); of sample 1: I = 1, ΣP = 1, ΣG = 2 → Dice 2/3.
    every = ((1 - (1 + S) / (2 + S)) * 2 + (1 - (2 + S) / (3 + S)) + (1 - S / (1 + S))) / 4
    assert float(segmentation_loss(logits, mask, "dice_ce")) == pytest.approx(every + ce)
    assert every == pytest.approx(7 / 12, abs=1e-4)


def test_dice_ce_is_monai_dice_ce_loss():
    torch.manual_seed(0)
    logits = torch.randn(3, 3, 4, 5, 6)
    mask = torch.randint(0, 3, (3, 1, 4, 5, 6))
    expected = DiceCELoss(to_onehot_y=True, softmax=True)(logits, mask)
    torch.testing.assert_close(segmentation_loss(logits, mask, "dice_ce"), expected)
    # the other losses differ from it on the same input
    for kind in ("dice_fg_ce", "batch_dice_fg_ce"):
        assert not torch.isclose(segmentation_loss(logits, mask, kind), expected)


def test_foreground_dice_ignores_the_background_channel():
    target = torch.zeros(1, 2, 1, 1, 4)
    target[0, 1, 0, 0, 0] = 1
    target[0, 0] = 1 - target[0, 1]
    probabilities = target.clone()
    probabilities[0, 0] = 0.0  # a nonsense background channel, a perfect foreground one
    assert float(soft_dice_loss(probabilities, target, include_background=False)) == \
        pytest.approx(0.0, abs=1e-6)
    # with the background: its Dice is (0 + s) / (0 + 3 + s) ≈ 0, so the mean loss is ~0.5
    assert float(soft_dice_loss(probabilities, target)) == pytest.approx(
        (1 - S / (3 + S)) / 2, abs=1e-6)


def test_batch_dice_lets_an_empty_mask_cost_only_its_false_positives():
    target = torch.zeros(2, 2, 1, 1, 4)
    target[0, 1, 0, 0, :2] = 1  # sample 0: 2 lesion voxels; sample 1: none
    target[:, 0] = 1 - target[:, 1]
    probabilities = target.clone()
    probabilities[1, 1], probabilities[1, 0] = 0.01, 0.99  # softmax is never exactly 0
    per_sample = soft_dice_loss(probabilities, target, include_background=False)
    batched = soft_dice_loss(probabilities, target, include_background=False, batch=True)
    # per sample, the lesion-free exam is a Dice of its own: s / (0.04 + s), a loss of ~1
    assert float(per_sample) == pytest.approx((0 + 1 - S / (0.04 + S)) / 2, abs=1e-6)
    assert float(per_sample) > 0.49
    # over the batch it only adds its 0.04 of predicted lesion to the denominator
    assert float(batched) == pytest.approx(1 - (4 + S) / (4.04 + S), abs=1e-6)
    assert float(batched) < 0.01


def test_loss_errors_name_the_problem():
    logits, mask = _two_samples()
    with pytest.raises(ValueError, match="loss must be one of dice_ce, dice_fg_ce"):
        segmentation_loss(logits, mask, "dice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 2\), got \[0, 2\]"):
        segmentation_loss(logits, mask * 2)
    with pytest.raises(ValueError, match="differ in batch or spatial size"):
        segmentation_loss(logits, mask[:1])
    with pytest.raises(ValueError, match="same shape"):
        soft_dice_loss(logits, logits[:1])
    assert LOSSES == ("dice_ce", "dice_fg_ce", "batch_dice_fg_ce")


def test_hard_dice_and_empty_masks():
    target = torch.zeros(3, 3, 3, 3, dtype=torch.long)
    target[0] = 1  # sample 0: 27 lesion voxels
    predicted = target.clone()
    predicted[0, :, :, 0] = 0  # misses 9 of them
    predicted[2, 0, 0, 0] = 1  # sample 2: empty mask, one false-positive voxel
    dice = foreground_dice(predicted, target, 2)
    assert dice.shape == (3, 1)
    assert float(dice[0, 0]) == pytest.approx(2 * 18 / (18 + 27))
    assert math.isnan(dice[1, 0]) and math.isnan(dice[2, 0])  # nothing to overlap
    clean = empty_clean(predicted, target, 2)
    assert math.isnan(clean[0, 0])
    assert clean[1:, 0].tolist() == [1.0, 0.0]  # empty on empty: clean; a false alarm: not
    with pytest.raises(ValueError, match="same shape"):
        foreground_dice(predicted, target[:2], 2)
