"""A sparse top-k similarity table, for report sets too large for the dense U × U table.

Each report keeps its ``k`` most similar reports (column ids sorted ascending, as int32)
and their S values (float16); every other entry counts as 0. It is built from the same
block-wise engine as the dense table, one block of rows at a time, so memory stays
O(block × U + U × k) and U² is never held anywhere, on disk included (100k reports:
20 GB dense, 60 MB at k = 100).

A lookup is symmetrised, ``S'(i, j) = max(top_i(j), top_j(i))``, so a pair is exact as
soon as either report is among the other's top k (S is symmetric, top-k is not).

Files under ``<cache_dir>/similarity/``: ``<key>.idx`` (U × k int32), ``<key>.val``
(U × k float16) and the sidecar ``<key>.json``; both arrays are written under temporary
names and renamed before the sidecar, and verified against its digest when opened.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from selip.io.atomic import atomic_files, atomic_write_text
from selip.similarity.config import SimilarityConfig
from selip.similarity.engine import SimilarityEngine
from selip.similarity.rows import LooksUpBatchRows
from selip.similarity.table import TableInfo, array_digest, table_key

_INDEX = np.dtype(np.int32)
_VALUE = np.dtype(np.float16)
#: Rows per block while building: about 64 MB of float32 S per block whatever U is.
_BLOCK_ELEMENTS = 16 * 2**20


def sparse_key(texts: list[str], config: SimilarityConfig, top_k: int) -> str:
    """The dense table's key plus ``k``: a different k is a different table."""
    return f"{table_key(texts, config)}-top{top_k}"


def _paths(root: Path, key: str) -> tuple[Path, Path, Path]:
    folder = root / "similarity"
    return folder / f"{key}.idx", folder / f"{key}.val", folder / f"{key}.json"


def top_k_rows(block: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` largest entries of each row of ``block`` (r, U).

    Returns:
        (r, k) column ids sorted ascending (int32) and their values (float16).
    """
    k = min(top_k, block.shape[1])
    if k < block.shape[1]:
        columns = np.argpartition(-block, k - 1, axis=1)[:, :k]
    else:
        columns = np.broadcast_to(np.arange(k), block.shape).copy()
    columns.sort(axis=1)
    values = np.take_along_axis(block, columns, axis=1)
    return columns.astype(_INDEX), values.astype(_VALUE)


class SparseSimilarityTable(LooksUpBatchRows):
    """A built top-k table; ``lookup`` gives the (symmetrised) S submatrix of a batch."""

    def __init__(self, info: TableInfo, neighbours: np.ndarray, values: np.ndarray) -> None:
        self.info = info
        self.neighbours = neighbours  # (U, k) int32, ascending per row
        self.values = values  # (U, k) float16
        self._placed: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def key(self) -> str:
        return self.info.key

    @property
    def top_k(self) -> int:
        return int(self.neighbours.shape[1]) if self.neighbours.ndim == 2 else 0

    @property
    def nbytes(self) -> int:
        return int(self.neighbours.nbytes + self.values.nbytes)

    def __len__(self) -> int:
        return self.info.size

    def place(self, device: torch.device | str, budget_bytes: int) -> bool:
        """Keep both arrays on ``device`` when they fit ``budget_bytes``; True if placed.

        They stay int32 / float16 there, exactly the ``nbytes`` the budget is checked
        against (int64 indices would take 1.7x the budget); only a batch's gathered rows
        are widened."""
        if self.nbytes > budget_bytes:
            self._placed = None
            return False
        self._placed = (torch.from_numpy(np.array(self.neighbours)).to(device),
                        torch.from_numpy(np.array(self.values)).to(device))
        return True

    @property
    def placed_nbytes(self) -> int:
        """Bytes the placed arrays take on their device (0 when not placed)."""
        if self._placed is None:
            return 0
        return sum(t.numel() * t.element_size() for t in self._placed)

    def _rows(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        placed = self._placed
        if placed is not None and placed[0].device == ids.device:
            return placed[0][ids].long(), placed[1][ids].float()
        index = ids.detach().cpu().numpy()
        neighbours = torch.from_numpy(self.neighbours[index].astype(np.int64))
        values = torch.from_numpy(self.values[index].astype(np.float32))
        return neighbours.to(ids.device), values.to(ids.device)

    def _one_way(self, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """(n, m): S of (row, column) where the column is among the row's top k, else 0.

        O(n·k + U) per call: a U-long slot map from report id to its place among the
        batch's unique columns, read at every kept neighbour of every row.
        """
        neighbours, values = self._rows(rows)  # (n, k) each
        unique, inverse = torch.unique(columns, return_inverse=True)
        slot = torch.full((len(self),), -1, dtype=torch.long, device=rows.device)
        slot[unique] = torch.arange(len(unique), device=rows.device)
        where = slot[neighbours]  # (n, k): the neighbour's column among `unique`, or -1
        hit = where >= 0
        row_index = torch.arange(len(rows), device=rows.device)[:, None].expand_as(where)
        out = torch.zeros(len(rows), len(unique), device=rows.device)
        out[row_index[hit], where[hit]] = values[hit]  # a row's neighbours are distinct
        return out[:, inverse]

    def lookup(self, report_ids: torch.Tensor, column_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """S'[ids][:, column_ids] as float32 on ``report_ids``' device (same contract as
        :meth:`SimilarityTable.lookup`).

        Args:
            report_ids: (n,) int64 row ids.
            column_ids: (m,) int64 column ids (default: ``report_ids``).

        Returns:
            (n, m) float32; entries outside both reports' top k are 0.
        """
        columns = report_ids if column_ids is None else column_ids
        if len(report_ids) == 0 or len(columns) == 0 or self.top_k == 0:
            return torch.zeros(len(report_ids), len(columns), device=report_ids.device)
        return torch.maximum(self._one_way(report_ids, columns),
                             self._one_way(columns, report_ids).T)


def open_sparse_table(root: str | Path, key: str, verify: bool = True
                      ) -> SparseSimilarityTable | None:
    """The top-k table of ``key`` under ``root``; None if absent, truncated or corrupt."""
    index_path, value_path, sidecar_path = _paths(Path(root), key)
    try:
        info = TableInfo(**json.loads(sidecar_path.read_text()))
        top_k = int(info.settings["top_k"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if info.key != key or type(info.size) is not int or info.size < 0 or top_k < 0:
        return None
    width = min(top_k, info.size)
    if not index_path.is_file() or not value_path.is_file() or \
            index_path.stat().st_size != info.size * width * _INDEX.itemsize or \
            value_path.stat().st_size != info.size * width * _VALUE.itemsize:
        return None
    if info.size == 0 or width == 0:
        empty = np.zeros((info.size, 0))
        return SparseSimilarityTable(info, empty.astype(_INDEX), empty.astype(_VALUE))
    neighbours = np.memmap(index_path, dtype=_INDEX, mode="r", shape=(info.size, width))
    values = np.memmap(value_path, dtype=_VALUE, mode="r", shape=(info.size, width))
    if verify and array_digest(neighbours, values) != info.digest:
        return None
    return SparseSimilarityTable(info, neighbours, values)


def build_sparse_table(root: str | Path, texts: list[str], config: SimilarityConfig,
                       top_k: int, threads: int = 2, progress: bool = True,
                       device: str | None = None, block_rows: int | None = None
                       ) -> SparseSimilarityTable:
    """Compute each report's top ``top_k`` neighbours block by block, atomically
    (``block_rows`` rows of S at a time; default: about 64 MB of them)."""
    if top_k < 1:
        raise ValueError(f"similarity top_k must be >= 1, got {top_k}")
    key = sparse_key(texts, config, top_k)
    index_path, value_path, sidecar_path = _paths(Path(root), key)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    size, width = len(texts), min(top_k, len(texts))
    start = time.perf_counter()
    digest = array_digest(np.zeros((0, 0), _INDEX), np.zeros((0, 0), _VALUE))
    with atomic_files(index_path, value_path) as temporaries:
        if size and width:
            neighbours = np.memmap(temporaries[0], dtype=_INDEX, mode="w+", shape=(size, width))
            values = np.memmap(temporaries[1], dtype=_VALUE, mode="w+", shape=(size, width))
            block_rows = block_rows or max(1, _BLOCK_ELEMENTS // size)
            engine = SimilarityEngine(config, threads=threads, device=device)
            with tqdm(total=size, desc=f"similarity top-{top_k}", unit="row",
                      disable=not progress) as bar:
                for rows, block in engine.blocks(texts, None, block_rows, progress):
                    neighbours[rows], values[rows] = top_k_rows(block, top_k)
                    bar.update(block.shape[0])
            neighbours.flush()
            values.flush()
            digest = array_digest(neighbours, values)
            del neighbours, values
    info = TableInfo(key=key, size=size, settings={**config.fingerprint(), "top_k": top_k},
                     build_seconds=round(time.perf_counter() - start, 3), digest=digest)
    atomic_write_text(sidecar_path, json.dumps(info.__dict__, indent=2))
    table = open_sparse_table(root, key, verify=False)
    assert table is not None
    return table


def load_or_build_sparse(root: str | Path, texts: list[str], config: SimilarityConfig,
                         top_k: int, threads: int = 2, progress: bool = True,
                         device: str | None = None) -> tuple[SparseSimilarityTable, bool]:
    """The top-k table for ``texts``: reused when it verifies, else built."""
    table = open_sparse_table(root, sparse_key(texts, config, top_k))
    if table is not None:
        return table, False
    return build_sparse_table(root, texts, config, top_k, threads, progress, device), True
