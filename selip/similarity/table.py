"""The similarity table: S over a dataset's unique report texts, on disk, looked up by id.

Files under ``<cache_dir>/similarity/``: ``<key>.f16`` — a raw (U, U) float16 matrix that
loads as a memory map — and ``<key>.json``, the sidecar (key, settings, U, build seconds,
content digest). The key is a sha256 over the texts in id order, every setting that
changes S, and the text model's identity, so any change gives a new table. The matrix
is written under a temporary name and renamed before its sidecar is written; a table
without a valid sidecar, of the wrong size, or whose bytes do not match the recorded
digest is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from selip._version import __version__
from selip.io.atomic import atomic_files, atomic_write_text
from selip.io.fingerprint import settings_digest
from selip.similarity.config import SimilarityConfig
from selip.similarity.embedding import model_identity
from selip.similarity.engine import SimilarityEngine
from selip.similarity.rows import LooksUpBatchRows

_DTYPE = np.dtype(np.float16)
_DIGEST_CHUNK_ROWS = 4096


def table_key(texts: list[str], config: SimilarityConfig) -> str:
    """sha256 over the texts (in id order), the settings and the text-model identity."""
    encoded = json.dumps([t.strip() for t in texts], ensure_ascii=False)  # unambiguous
    texts_digest = hashlib.sha256(encoded.encode()).hexdigest()
    model = model_identity(config.text_model) if config.semantic == "embedding" else None
    return settings_digest({"texts": texts_digest, "count": len(texts),
                            "settings": config.fingerprint(), "model": model})


def array_digest(*arrays: np.ndarray) -> str:
    """blake2b over the arrays' bytes, in order, read a few thousand rows at a time (so a
    memory-mapped table is hashed without loading it whole)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        for start in range(0, array.shape[0], _DIGEST_CHUNK_ROWS):
            digest.update(np.ascontiguousarray(array[start:start + _DIGEST_CHUNK_ROWS]).data)
    return digest.hexdigest()


@dataclass
class TableInfo:
    """The sidecar of a table."""

    key: str
    size: int
    settings: dict[str, Any]
    build_seconds: float
    digest: str
    selip_version: str = __version__


class SimilarityTable(LooksUpBatchRows):
    """A built (U, U) table; ``lookup`` gives the S submatrix of a batch's report ids."""

    def __init__(self, path: Path, info: TableInfo, matrix: np.ndarray) -> None:
        self.path = path
        self.info = info
        self.matrix = matrix  # (U, U) float16 memory map
        self._placed: torch.Tensor | None = None  # on an accelerator
        self._in_memory: np.ndarray | None = None  # placed on the CPU

    @property
    def key(self) -> str:
        return self.info.key

    def __len__(self) -> int:
        return self.info.size

    def place(self, device: torch.device | str, budget_bytes: int) -> bool:
        """Keep the whole table on ``device`` when it fits ``budget_bytes``; True if placed.

        On the CPU the table is read into RAM and looked up with NumPy, which gathers a
        batch's block several times faster than torch's CPU advanced indexing.
        """
        self._placed = None
        self._in_memory = None
        if self.matrix.nbytes > budget_bytes:
            return False
        if torch.device(device).type == "cpu":
            self._in_memory = np.array(self.matrix)
        else:
            self._placed = torch.from_numpy(np.array(self.matrix)).to(device)
        return True

    def lookup(self, report_ids: torch.Tensor, column_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """S[ids][:, column_ids] as float32 on ``report_ids``' device.

        Args:
            report_ids: (n,) int64 row ids.
            column_ids: (m,) int64 column ids (default: ``report_ids``), e.g. the globally
                gathered ids under DDP.

        Returns:
            (n, m) float32.
        """
        columns = report_ids if column_ids is None else column_ids
        placed = self._placed
        if placed is not None and placed.device == report_ids.device:
            return placed[report_ids[:, None], columns[None, :]].float()
        rows = report_ids.detach().cpu().numpy()
        cols = columns.detach().cpu().numpy()
        source = self._in_memory if self._in_memory is not None else self.matrix
        block = source[rows[:, None], cols[None, :]]
        return torch.from_numpy(block.astype(np.float32)).to(report_ids.device)


def _paths(root: Path, key: str) -> tuple[Path, Path]:
    folder = root / "similarity"
    return folder / f"{key}.f16", folder / f"{key}.json"


def open_table(root: str | Path, key: str, verify: bool = True) -> SimilarityTable | None:
    """The table of ``key`` under ``root``, or None if absent, truncated or corrupt."""
    matrix_path, sidecar_path = _paths(Path(root), key)
    try:
        info = TableInfo(**json.loads(sidecar_path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not (type(info.size) is int and info.size >= 0 and isinstance(info.key, str)
            and isinstance(info.digest, str)):
        return None
    expected_bytes = info.size * info.size * _DTYPE.itemsize
    if info.key != key or not matrix_path.is_file() or \
            matrix_path.stat().st_size != expected_bytes:
        return None
    if info.size == 0:
        return SimilarityTable(matrix_path, info, np.zeros((0, 0), _DTYPE))
    matrix = np.memmap(matrix_path, dtype=_DTYPE, mode="r", shape=(info.size, info.size))
    if verify and array_digest(matrix) != info.digest:
        return None
    return SimilarityTable(matrix_path, info, matrix)


def build_table(root: str | Path, texts: list[str], config: SimilarityConfig,
                block_rows: int = 512, threads: int = 2, progress: bool = True,
                device: str | None = None) -> SimilarityTable:
    """Compute S over ``texts`` block by block into a memory-mapped file, atomically."""
    key = table_key(texts, config)
    matrix_path, sidecar_path = _paths(Path(root), key)
    matrix_path.parent.mkdir(parents=True, exist_ok=True)
    size = len(texts)
    start = time.perf_counter()
    with atomic_files(matrix_path) as (tmp_name,):
        if size:
            out = np.memmap(tmp_name, dtype=_DTYPE, mode="w+", shape=(size, size))
            engine = SimilarityEngine(config, threads=threads, device=device)
            with tqdm(total=size, desc="similarity table", unit="row",
                      disable=not progress) as bar:
                for rows, values in engine.blocks(texts, None, block_rows, progress):
                    out[rows] = values.astype(_DTYPE)
                    bar.update(values.shape[0])
            out.flush()
            hashed = array_digest(out)
            del out
        else:
            hashed = array_digest(np.zeros((0, 0), _DTYPE))
    info = TableInfo(key=key, size=size, settings=config.fingerprint(),
                     build_seconds=round(time.perf_counter() - start, 3), digest=hashed)
    atomic_write_text(sidecar_path, json.dumps(info.__dict__, indent=2))
    table = open_table(root, key, verify=False)
    assert table is not None
    return table


def load_or_build(root: str | Path, texts: list[str], config: SimilarityConfig,
                  block_rows: int = 512, threads: int = 2, progress: bool = True,
                  device: str | None = None) -> tuple[SimilarityTable, bool]:
    """The table for ``texts`` and ``config``: reused when its key matches and it
    verifies, else (re)built. Returns ``(table, built)``."""
    key = table_key(texts, config)
    table = open_table(root, key)
    if table is not None:
        return table, False
    return build_table(root, texts, config, block_rows, threads, progress, device), True
