"""Learning-rate schedules: linear warmup, then cosine, polynomial or constant decay.

Not ``transformers.get_*_schedule_with_warmup``: their warmup starts at a factor of 0, so
the first optimiser step moves nothing, their polynomial decay ends at an absolute
learning rate rather than a ratio per parameter group, and only the cosine one has a
floor; these 20 lines keep selip's schedules as they were trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_then_decay(total_steps: int, warmup_steps: int, schedule: str = "cosine",
                      min_ratio: float = 0.0, power: float = 0.9) -> Callable[[int], float]:
    """A ``LambdaLR`` factor: 0→1 linearly over ``warmup_steps``, then decay to
    ``min_ratio`` at ``total_steps`` (``cosine``, ``poly`` with ``power``, or ``constant``)."""
    if schedule not in ("cosine", "poly", "constant"):
        raise ValueError(f"schedule must be cosine, poly or constant, got {schedule!r}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_ratio}")
    total = max(1, total_steps)
    warmup = max(0, min(warmup_steps, total - 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            decay = (1.0 - progress) ** power
        return min_ratio + (1.0 - min_ratio) * decay

    return factor


def resolve_warmup(warmup: float, total_steps: int) -> int:
    """``warmup`` as steps: a fraction of ``total_steps`` when below 1, else a count."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    return round(warmup * total_steps) if warmup < 1 else int(warmup)


def check_warmup_steps(warmup_steps: int) -> int:
    """``warmup_steps`` when it is a whole number >= 0; else a ValueError naming it."""
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a whole number of optimiser steps >= 0, "
                         f"got {warmup_steps!r}")
    return warmup_steps
