"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file under the final name, and a crash leaves the
previous version (if any) intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    ``durable`` fsyncs before the rename (caches, checkpoints); files that are cheap to
    regenerate can skip it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; cohorts and caches are shared
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write(path: str | Path, writer: Callable[[IO[Any]], None], mode: str = "wb") -> None:
    """Call ``writer(handle)`` on a temporary file and rename it to ``path``."""
    with atomic_open(path, mode) as handle:
        writer(handle)


def atomic_write_bytes(path: str | Path, payload: bytes, durable: bool = True) -> None:
    """Write ``payload`` to ``path`` atomically."""
    with atomic_open(path, "wb", durable=durable) as handle:
        handle.write(payload)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
