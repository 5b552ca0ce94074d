"""Train/val/test assignment by exam (never splitting an exam's sequences)."""

from __future__ import annotations

import numpy as np

from selip.data.manifest import ExamRecord


def assign_splits(exams: list[ExamRecord], val_fraction: float, test_fraction: float,
                  seed: int) -> list[str]:
    """The split of every exam: the manifest's ``split`` column, else a seeded shuffle.

    With no ``split`` column, ``round(n·val_fraction)`` exams go to val and
    ``round(n·test_fraction)`` to test (at least one each when the fraction is > 0 and
    there are enough exams), the rest to train. The same seed and exam ids give the same
    split whatever the row order.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) "
                         "must be in [0, 1) and sum to less than 1")
    given = [e.split for e in exams]
    if all(s is not None for s in given) and exams:
        return [str(s) for s in given]
    if any(s is not None for s in given):
        raise ValueError("the split column is filled for some exams but not others; fill it "
                         "for every exam or remove it")
    count = len(exams)
    n_val = _share(count, val_fraction)
    n_test = max(0, min(_share(count, test_fraction), count - n_val - 1))
    order = sorted(range(count), key=lambda i: exams[i].exam_id)
    permuted = [order[i] for i in np.random.default_rng(seed).permutation(count)]
    splits = ["train"] * count
    for position, index in enumerate(permuted):
        if position < n_val:
            splits[index] = "val"
        elif position < n_val + n_test:
            splits[index] = "test"
    return splits


def _share(count: int, fraction: float) -> int:
    if fraction <= 0 or count < 3:
        return 0
    return min(max(1, round(count * fraction)), count - 1)


def labelled_subset(labels: dict[int, str | None], fraction: float, seed: int) -> set[int]:
    """Exam indices kept when only ``fraction`` of the training labels may be used.

    Stratified: each class keeps ``round(fraction · count)`` of its exams (at least one),
    chosen with ``seed``; exams without a label are dropped when ``fraction < 1``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return set(labels)
    rng = np.random.default_rng(seed)
    kept: set[int] = set()
    for label in sorted({v for v in labels.values() if v is not None}):
        members = sorted(i for i, v in labels.items() if v == label)
        count = max(1, round(fraction * len(members)))
        kept |= {members[j] for j in rng.permutation(len(members))[:count]}
    return kept
