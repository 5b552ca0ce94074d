"""Splitting an archive's work across the tasks of a SLURM job array.

``--shard I/N`` (0-based I) — or, when it is not given, ``SLURM_ARRAY_TASK_ID`` and
``SLURM_ARRAY_TASK_COUNT`` — makes a process take every N-th unit of work, counted in a
stable order, so the N tasks cover the archive exactly once without talking to each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class ShardError(ValueError):
    """A malformed ``--shard`` or SLURM array setting."""


@dataclass(frozen=True)
class Shard:
    """Task ``index`` of ``count`` (``Shard(0, 1)``: the whole job in one process)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count}: expected 0 <= I < N")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def take(self, units: Sequence[T]) -> list[T]:
        """This shard's units: those at positions ``index``, ``index + count``, …"""
        return list(units[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """``"I/N"``; when ``text`` is ``None``, the SLURM array's task (its id minus the
    array's minimum, so ``--array=1-4`` works), else the whole job."""
    environ = os.environ if environ is None else environ
    if text is not None:
        index_text, slash, count_text = text.partition("/")
        try:
            if not slash:
                raise ValueError
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise ShardError(f"--shard {text!r}: expected I/N, e.g. 0/4 (I counts from 0)"
                             ) from None
        if count < 1 or not 0 <= index < count:
            raise ShardError(f"--shard {text!r}: expected 0 <= I < N (I counts from 0: the "
                             f"shards of 4 are 0/4 to 3/4)")
        return Shard(index, count)
    if "SLURM_ARRAY_TASK_ID" in environ and "SLURM_ARRAY_TASK_COUNT" in environ:
        try:
            task = int(environ["SLURM_ARRAY_TASK_ID"])
            count = int(environ["SLURM_ARRAY_TASK_COUNT"])
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        except ValueError:
            raise ShardError("SLURM_ARRAY_TASK_ID/COUNT/MIN are not integers") from None
        try:
            return Shard(task - first, count)
        except ShardError:
            raise ShardError(f"SLURM array task {task} (min {first}) of {count}: use a "
                             f"contiguous array such as --array=0-{count - 1}") from None
    return Shard()
