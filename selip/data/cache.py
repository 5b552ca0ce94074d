"""On-disk cache of preprocessed volumes as memory-mappable ``.npy`` files.

Key = sha256 over (file content digest, kind, preprocessing settings, code version), so
an edited file or a changed setting never hits an old entry. Entries are written under a
temporary name and renamed; on read the header and file size are checked against the
expected shape and dtype, so a truncated or foreign file is rebuilt, never served.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from selip.data.atomic import atomic_open
from selip.data.fingerprint import settings_digest
from selip.data.preprocess import PreprocessSettings

Kind = Literal["image", "mask"]
_DTYPES: dict[str, np.dtype] = {"image": np.dtype(np.float16), "mask": np.dtype(np.uint8)}


class VolumeCache:
    """Preprocessed arrays keyed by content and settings, under ``root/volumes``."""

    def __init__(self, root: str | Path, settings: PreprocessSettings) -> None:
        self.root = Path(root)
        self.settings = settings
        self._settings_fingerprint = settings.fingerprint()
        self._write_failure_reported = False

    def key(self, content_digest: str, kind: Kind) -> str:
        """The cache key of one file's preprocessed array."""
        return settings_digest({"content": content_digest, "kind": kind,
                                "settings": self._settings_fingerprint})

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives (two-level fan-out keeps folders small)."""
        return self.root / "volumes" / key[:2] / f"{key}.npy"

    def load(self, key: str, kind: Kind) -> np.ndarray | None:
        """The memory-mapped (D, H, W) array of ``key``, or None when absent or invalid.

        An invalid entry (truncated, wrong shape or dtype, unreadable header) is deleted
        so that the next store replaces it.
        """
        path = self.path(key)
        if not path.is_file():
            return None
        if not self._is_valid(path, kind):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        return np.load(path, mmap_mode="r")

    def store(self, key: str, array: np.ndarray, kind: Kind) -> None:
        """Write ``array`` atomically as the entry of ``key``."""
        expected = tuple(int(s) for s in self.settings.shape)
        if array.shape != expected or array.dtype != _DTYPES[kind]:
            raise ValueError(f"cache entry must be {expected} {_DTYPES[kind]}, "
                             f"got {array.shape} {array.dtype}")
        with atomic_open(self.path(key)) as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)

    def get_or_create(self, key: str, kind: Kind, build: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array of ``key``, building and storing it on a miss.

        A write that fails (a full disk, a read-only cache) leaves no entry behind and is
        reported once per process; the built array is still returned, so training goes on
        uncached and the next run builds the entry again.
        """
        cached = self.load(key, kind)
        if cached is not None:
            return cached
        array = build()
        try:
            self.store(key, array, kind)
        except OSError as err:
            if not self._write_failure_reported:
                self._write_failure_reported = True
                warnings.warn(f"could not write cache entry {self.path(key)} ({err}); "
                              "serving volumes uncached until the cache folder is writable "
                              "again", RuntimeWarning, stacklevel=2)
        return array

    def _is_valid(self, path: Path, kind: Kind) -> bool:
        expected_shape = tuple(int(s) for s in self.settings.shape)
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(handle)
                data_offset = handle.tell()
        except (OSError, ValueError, EOFError):
            return False
        if shape != expected_shape or fortran or dtype != _DTYPES[kind]:
            return False
        expected_size = data_offset + int(np.prod(shape)) * dtype.itemsize
        return path.stat().st_size == expected_size
