"""The one call into :mod:`selip.similarity`: S over a set of report texts, as a lookup.

:func:`open_similarity` returns a :class:`SimilarityLookup` over ``texts``, chosen by
:attr:`TableSizing.mode`:

- ``table``: the dense (U, U) table, loaded or built once into the cache, while it fits
  ``dense_max_mb``; else (or with ``top_k``) the sparse top-k table — approximate.
- ``per_batch``: no table; every text parsed once (O(U) on disk) and S computed exactly
  for each batch, in the loader workers during training
  (:class:`~selip.similarity.per_batch.PerBatchSimilarity`).
- ``auto`` (default): the dense table while it fits, ``per_batch`` beyond; ``top_k``
  given: the top-k table.

All implement the same protocol, so the tasks never ask which one they hold.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from selip.similarity.config import SimilarityConfig
from selip.similarity.per_batch import PerBatchSimilarity, load_or_build_parsed
from selip.similarity.sparse import load_or_build_sparse
from selip.similarity.table import load_or_build

#: Neighbours per report kept when the dense table would exceed ``dense_max_mb`` in
#: ``table`` mode.
AUTO_TOP_K = 256
SimilarityMode = Literal["table", "per_batch", "auto"]
MODES = ("table", "per_batch", "auto")


@runtime_checkable
class SimilarityLookup(Protocol):
    """S over a fixed list of report texts (ids = positions in that list)."""

    @property
    def key(self) -> str:
        """Content hash of the texts and the similarity settings (recorded in checkpoints)."""
        ...

    def __len__(self) -> int:
        """U, the number of report texts."""
        ...

    def lookup(self, report_ids: torch.Tensor, column_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """(b, N) float32 ``S[report_ids][:, column_ids]`` (``column_ids`` default: the rows'),
        on ``report_ids``' device."""
        ...

    def place(self, device: torch.device | str, budget_bytes: int) -> bool:
        """Move the table to ``device`` when it fits ``budget_bytes``; True when placed."""
        ...

    def batch_rows(self, batch: Mapping[str, torch.Tensor], report_ids: torch.Tensor,
                   column_ids: torch.Tensor) -> torch.Tensor:
        """(b, N) float32 S rows of a step's batch: the one question a task asks."""
        ...

    def start_fit(self) -> None:
        """A fit (or a resumed one) begins."""
        ...

    def keep_evaluation_table(self, report_ids: np.ndarray, max_mb: float) -> bool:
        """Validation and test will look up S among ``report_ids``: a lookup that computes
        S may keep that small table in memory (within ``max_mb``); True when it did."""
        ...


@dataclass(frozen=True)
class TableSizing:
    """How S is stored and built.

    Args:
        top_k: keep each report's top k neighbours (sparse); None: see ``mode``.
        dense_max_mb: the largest dense table (U² float16) before ``auto`` turns to
            ``per_batch`` (and ``table`` to top-k).
        block_rows: rows of S computed at a time while building the dense table.
        threads: CPU threads of the build.
        progress: show progress bars.
        mode: ``table``, ``per_batch`` or ``auto`` (see the module's docstring).

    Raises:
        ValueError: an unknown mode, or ``top_k`` with ``per_batch`` (exact needs no k).
    """

    top_k: int | None = None
    dense_max_mb: float = 8192.0
    block_rows: int = 512
    threads: int = 1
    progress: bool = True
    mode: SimilarityMode = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"data.similarity.mode must be one of {', '.join(MODES)}, got "
                             f"{self.mode!r}")
        if self.mode == "per_batch" and self.top_k is not None:
            raise ValueError("data.similarity.top_k is a table's setting; per_batch computes S "
                             "exactly and keeps no neighbours: set one of them")

    def fits_dense(self, unique_texts: int) -> bool:
        """Whether the dense table over ``unique_texts`` reports fits ``dense_max_mb``."""
        return dense_megabytes(unique_texts) <= self.dense_max_mb

    def choose(self, unique_texts: int) -> Literal["dense", "top_k", "per_batch"]:
        """What ``open_similarity`` builds for ``unique_texts`` reports."""
        if self.mode == "per_batch":
            return "per_batch"
        if self.top_k is not None:
            return "top_k"
        if self.fits_dense(unique_texts):
            return "dense"
        return "per_batch" if self.mode == "auto" else "top_k"

    def top_k_for(self, unique_texts: int) -> int | None:
        """The top k to keep for ``unique_texts`` reports; None: not a top-k table."""
        if self.choose(unique_texts) != "top_k":
            return None
        return self.top_k if self.top_k is not None else AUTO_TOP_K


def dense_megabytes(unique_texts: int) -> float:
    """Size of the dense float16 table over ``unique_texts`` reports, in MB."""
    return unique_texts**2 * 2 / 2**20


def open_similarity(cache_dir: str | Path, texts: list[str], config: SimilarityConfig,
                    sizing: TableSizing = TableSizing()) -> SimilarityLookup:
    """S over ``texts`` with ``config``: reused from ``cache_dir`` when its content hash
    matches and it verifies, else built there atomically (dense, sparse top-k or the
    parsed reports of ``per_batch``, as ``sizing`` chooses; a note on stderr when the size
    makes the choice)."""
    chosen = sizing.choose(len(texts))
    if chosen == "per_batch":
        if sizing.mode == "auto":
            print(f"selip: {len(texts)} unique report texts: a dense similarity table would "
                  f"take {dense_megabytes(len(texts)) / 1024:.1f} GB (data."
                  f"similarity.dense_max_mb is {sizing.dense_max_mb:.0f} MB); computing S "
                  "exactly per batch in the loader workers (data.similarity.mode per_batch)",
                  file=sys.stderr)
        parsed, key, _ = load_or_build_parsed(cache_dir, texts, config, sizing.progress)
        return PerBatchSimilarity(parsed, config, key)
    top_k = sizing.top_k_for(len(texts))
    if top_k is None:
        table, _ = load_or_build(cache_dir, texts, config, block_rows=sizing.block_rows,
                                 threads=sizing.threads, progress=sizing.progress)
        return table
    if sizing.top_k is None:
        print(f"selip: {len(texts)} unique report texts: a dense similarity table would take "
              f"{dense_megabytes(len(texts)) / 1024:.1f} GB (data.similarity.dense_max_mb is "
              f"{sizing.dense_max_mb:.0f} MB); using the top {AUTO_TOP_K} neighbours of each "
              "report (data.similarity.top_k)", file=sys.stderr)
    sparse, _ = load_or_build_sparse(cache_dir, texts, config, top_k, threads=sizing.threads,
                                     progress=sizing.progress)
    return sparse
