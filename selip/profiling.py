"""Step profiling: wall time of named sections of a training step.

:class:`SectionTimer` is what ``PretrainTask`` wraps its similarity lookup and its loss in
(``benchmarks/step.py`` turns it on); it is disabled by default, and a disabled timer
neither reads the clock nor synchronises the accelerator, so normal runs pay nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class SectionTimer:
    """Accumulated wall time and call count per section name.

    On CUDA the device is synchronised before and after each timed block, so the time of
    the kernels the block queued is attributed to the block and not to whatever
    synchronises next. That synchronisation changes the overlap of a real run a little,
    which is why the timer is only turned on for profiling.

    Args:
        enabled: time the sections (False: ``section`` is a no-op).

    Example::

        timer = SectionTimer(enabled=True)
        with timer.section("loss"):
            loss = compute()
        timer.totals()  # {"loss": 0.0123}  (seconds)
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._totals: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    @staticmethod
    def _synchronize() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the ``with`` block under ``name`` (when enabled); nesting is allowed, and
        a nested section's time counts in both names."""
        if not self.enabled:
            yield
            return
        self._synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            elapsed = time.perf_counter() - start
            self._totals[name] = self._totals.get(name, 0.0) + elapsed
            self._counts[name] = self._counts.get(name, 0) + 1

    def reset(self) -> None:
        """Forget every recorded section."""
        self._totals.clear()
        self._counts.clear()

    def totals(self) -> dict[str, float]:
        """Seconds per section name since the last :meth:`reset` (a copy)."""
        return dict(self._totals)

    def counts(self) -> dict[str, int]:
        """Number of timed blocks per section name since the last :meth:`reset` (a copy)."""
        return dict(self._counts)
