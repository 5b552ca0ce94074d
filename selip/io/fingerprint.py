"""Content digests of input files and of settings, for cache keys.

Hashing every NIfTI of an archive on every run would cost as much as reading it, so a
small memo maps (path, size, mtime) to the file's sha256; a file that changes gets a new
size or mtime and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from selip.io.atomic import atomic_write_text

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def settings_digest(settings: Any) -> str:
    """A stable sha256 of JSON-serialisable settings (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class FileDigests:
    """Memoised content digests, persisted as JSON in ``memo_path`` (when given)."""

    def __init__(self, memo_path: str | Path | None = None) -> None:
        self.memo_path = Path(memo_path) if memo_path is not None else None
        self._memo: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._dirty = False
        if self.memo_path is not None and self.memo_path.is_file():
            try:
                loaded = json.loads(self.memo_path.read_text())
                if isinstance(loaded, dict):
                    self._memo = loaded
            except (OSError, ValueError):
                self._memo = {}  # a damaged memo only costs re-hashing

    def digest(self, path: str | Path) -> str:
        """The sha256 of ``path``'s content, from the memo when size and mtime match."""
        real = os.path.realpath(path)
        stat = os.stat(real)
        stamp = [stat.st_size, stat.st_mtime_ns]
        with self._lock:
            cached = self._memo.get(real)
        if cached is not None and cached[:2] == stamp:
            return str(cached[2])
        value = sha256_file(real)
        with self._lock:
            self._memo[real] = [*stamp, value]
            self._dirty = True
        return value

    def save(self) -> None:
        """Persist the memo atomically (no-op without a memo path or new entries)."""
        if self.memo_path is None or not self._dirty:
            return
        with self._lock:
            text = json.dumps(self._memo)
            self._dirty = False
        atomic_write_text(self.memo_path, text)
