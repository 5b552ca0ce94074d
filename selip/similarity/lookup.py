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
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from selip.similarity.config import SimilarityConfig
from selip.similarity.per_batch import PerBatchSimilarity, load_or_build_parsed
from selip.similarity.sizing import AUTO_TOP_K, TableSizing, dense_megabytes
from selip.similarity.sparse import load_or_build_sparse
from selip.similarity.table import load_or_build


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
