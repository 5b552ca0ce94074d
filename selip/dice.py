"""Dice for lesion segmentation: the training loss and the evaluation score (pure functions).

Demo lesions cover 0.02–0.2 % of a volume's voxels, so a Dice averaged over the classes
*including* the background is almost all background (near 1 for any prediction), and a
per-sample foreground Dice on an exam without a lesion is only low while the model
predicts exactly nothing. :func:`segmentation_loss` therefore offers (``LOSSES``):

- ``dice_ce``: soft Dice over every class, background included, per sample, plus
  cross-entropy — MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)``, selip's old loss;
- ``dice_fg_ce`` (the segmentation task's default): soft Dice over the foreground classes
  only, per sample, plus CE. Every lesion exam weighs the same in the loss, so a few small
  plaques count as much as a large tumour;
- ``batch_dice_fg_ce``: foreground soft Dice with the sums taken over the whole batch
  before the ratio (batch Dice), plus CE. An exam without a lesion then only adds its
  false positives to the denominator instead of being a Dice term of its own, but the
  largest lesion of the batch dominates the sums: on the demo cohort it never learnt to
  segment the small plaques (benchmarks/RESULTS.md, "Where the segmentation Dice is lost").

:func:`foreground_dice` and :func:`empty_clean` score hard (argmax) predictions: Dice per
sample and foreground class over the samples whose mask contains the class, and, for the
samples whose mask does not, whether the prediction is empty too. No Lightning here.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

SegmentationLoss = Literal["dice_ce", "dice_fg_ce", "batch_dice_fg_ce"]
LOSSES: tuple[str, ...] = ("dice_ce", "dice_fg_ce", "batch_dice_fg_ce")
#: (include_background, batch) of each loss's Dice term.
_DICE_SETTINGS = {"dice_ce": (True, False), "dice_fg_ce": (False, False),
                  "batch_dice_fg_ce": (False, True)}


def label_volume(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices (B, 1, D, H, W) or (B, D, H, W) → (B, D, H, W) int64.

    Raises:
        ValueError: a label outside [0, num_classes).
    """
    labels = target[:, 0] if target.dim() == 5 else target
    if labels.dim() != 4:
        raise ValueError(f"target must be (B, 1, D, H, W) or (B, D, H, W), got shape "
                         f"{tuple(target.shape)}")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"target labels must be in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, D, H, W) class indices → (B, C, D, H, W) float one-hot."""
    return F.one_hot(labels, num_classes).permute(0, 4, 1, 2, 3).float()


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor,
                   include_background: bool = True, batch: bool = False,
                   smooth: float = 1e-5) -> torch.Tensor:
    """1 − soft Dice, averaged over classes (and samples unless ``batch``).

    Args:
        probabilities: (B, C, D, H, W) softmax output.
        target: (B, C, D, H, W) one-hot.
        include_background: keep class 0 in the average.
        batch: sum intersection and sizes over the batch too (one Dice per class).
        smooth: added to numerator and denominator: (2·I + s) / (ΣP + ΣG + s).

    Returns:
        scalar tensor.
    """
    if probabilities.shape != target.shape:
        raise ValueError(f"probabilities {tuple(probabilities.shape)} and target "
                         f"{tuple(target.shape)} must have the same shape")
    if not include_background:
        if probabilities.shape[1] < 2:
            raise ValueError("a foreground-only Dice needs at least 2 classes, got "
                             f"{probabilities.shape[1]}")
        probabilities, target = probabilities[:, 1:], target[:, 1:]
    dims = [0, *range(2, target.dim())] if batch else list(range(2, target.dim()))
    intersection = (probabilities * target).sum(dims)
    sizes = probabilities.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * intersection + smooth) / (sizes + smooth)).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor,
                      kind: SegmentationLoss = "batch_dice_fg_ce",
                      smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice (as ``kind`` says, see the module docstring) + cross-entropy, weight 1 each.

    Args:
        logits: (B, C, D, H, W).
        target: (B, 1, D, H, W) or (B, D, H, W) class indices.
        kind: one of :data:`LOSSES`.
        smooth: the Dice smoothing term.

    Returns:
        scalar tensor.
    """
    if kind not in _DICE_SETTINGS:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    labels = label_volume(target, logits.shape[1])
    if labels.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} "
                         "differ in batch or spatial size")
    include_background, batch = _DICE_SETTINGS[kind]
    dice = soft_dice_loss(logits.softmax(1), one_hot(labels, logits.shape[1]),
                          include_background, batch, smooth)
    return dice + F.cross_entropy(logits, labels)


def _foreground_counts(predicted: torch.Tensor, target: torch.Tensor, num_classes: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, D, H, W) labels → per sample and foreground class (B, C − 1): |P ∩ G|, |P|, |G|."""
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target "
                         f"{tuple(target.shape)} must have the same shape")
    p = one_hot(label_volume(predicted, num_classes), num_classes)[:, 1:].flatten(2)
    g = one_hot(label_volume(target, num_classes), num_classes)[:, 1:].flatten(2)
    return (p * g).sum(-1), p.sum(-1), g.sum(-1)


def foreground_dice(predicted: torch.Tensor, target: torch.Tensor, num_classes: int
                    ) -> torch.Tensor:
    """Hard Dice 2|P ∩ G| / (|P| + |G|) per sample and foreground class.

    Args:
        predicted, target: (B, D, H, W) class indices.
        num_classes: classes including the background.

    Returns:
        (B, num_classes − 1) float; NaN where the target has no voxel of that class,
        whatever the prediction (such a sample has no lesion to overlap: it is scored by
        :func:`empty_clean` instead, so a model that predicts nothing scores Dice 0, not
        the share of lesion-free exams).
    """
    intersection, p, g = _foreground_counts(predicted, target, num_classes)
    dice = 2.0 * intersection / (p + g).clamp(min=1)
    return torch.where(g > 0, dice, torch.full_like(dice, float("nan")))


def empty_clean(predicted: torch.Tensor, target: torch.Tensor, num_classes: int
                ) -> torch.Tensor:
    """Per sample and foreground class: 1.0 when the target has no voxel of the class and
    neither has the prediction, 0.0 when the prediction has some (a false alarm), NaN when
    the target has the class (scored by :func:`foreground_dice`).

    Args:
        predicted, target: (B, D, H, W) class indices.

    Returns:
        (B, num_classes − 1) float.
    """
    _, p, g = _foreground_counts(predicted, target, num_classes)
    clean = (p == 0).float()
    return torch.where(g == 0, clean, torch.full_like(clean, float("nan")))
