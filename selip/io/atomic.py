"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file under the final name, and a crash leaves the
previous version (if any) intact. :func:`atomic_files` is the one place that does the
temporary name → fsync → rename sequence; everything else here is built on it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_files(*targets: str | Path, durable: bool = True) -> Iterator[list[str]]:
    """Yield a temporary sibling name per target; on success each is fsynced (``durable``)
    and renamed over its target, in order; on any error every temporary is removed and
    the targets are untouched.

    For writers that need a file name rather than a handle (``np.memmap``,
    ``torch.save``) and for several files that make one artefact (a sparse table's
    neighbours and values). ``durable`` fsyncs before the rename (caches, checkpoints);
    files that are cheap to regenerate can skip it.
    """
    paths = [Path(t) for t in targets]
    temporaries: list[str] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temporaries.append(name)
        yield temporaries
        for name, path in zip(temporaries, paths, strict=True):
            if durable:
                with open(name, "rb+") as handle:
                    os.fsync(handle.fileno())
            os.chmod(name, 0o644)  # mkstemp makes 0600; cohorts, caches, checkpoints are shared
            os.replace(name, path)
    except BaseException:
        for name in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    with atomic_files(path, durable=durable) as (name,), open(name, mode) as handle:
        yield handle


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
