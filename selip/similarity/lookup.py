"""The one call into :mod:`selip.similarity`: S over a set of report texts, as a lookup.

:func:`open_similarity` loads (or builds, once, into the cache) the report-similarity
matrix over ``texts`` and returns a :class:`SimilarityLookup`: the dense (U, U) table while
it fits ``dense_max_mb``, else the sparse top-k table. Both implement the same protocol,
so the datamodule and the tasks never ask which one they hold.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from selip.similarity.config import SimilarityConfig
from selip.similarity.sparse import load_or_build_sparse
from selip.similarity.table import load_or_build

#: Neighbours per report kept when the dense table would exceed ``dense_max_mb``.
AUTO_TOP_K = 256


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
        """(b, N) float32 S[report_ids][:, column_ids] (``column_ids`` default: the rows'),
        on ``report_ids``' device."""
        ...

    def place(self, device: torch.device | str, budget_bytes: int) -> bool:
        """Move the table to ``device`` when it fits ``budget_bytes``; True when placed."""
        ...


@dataclass(frozen=True)
class TableSizing:
    """How S is stored and built.

    Args:
        top_k: keep each report's top k neighbours (sparse); None: dense while it fits.
        dense_max_mb: the largest dense table (U² float16) before switching to top-k.
        block_rows: rows of S computed at a time while building the dense table.
        threads: CPU threads of the build.
        progress: show progress bars.
    """

    top_k: int | None = None
    dense_max_mb: float = 8192.0
    block_rows: int = 512
    threads: int = 1
    progress: bool = True

    def top_k_for(self, unique_texts: int) -> int | None:
        """The top k to keep for ``unique_texts`` reports; None: the dense table."""
        if self.top_k is not None:
            return self.top_k
        return None if dense_megabytes(unique_texts) <= self.dense_max_mb else AUTO_TOP_K


def dense_megabytes(unique_texts: int) -> float:
    """Size of the dense float16 table over ``unique_texts`` reports, in MB."""
    return unique_texts**2 * 2 / 2**20


def open_similarity(cache_dir: str | Path, texts: list[str], config: SimilarityConfig,
                    sizing: TableSizing = TableSizing()) -> SimilarityLookup:
    """S over ``texts`` with ``config``: reused from ``cache_dir`` when its content hash
    matches and it verifies, else built there atomically (dense, or sparse top-k when
    ``sizing`` says so; a note on stderr when the size forces top-k)."""
    top_k = sizing.top_k_for(len(texts))
    if top_k is None:
        table, _ = load_or_build(cache_dir, texts, config, block_rows=sizing.block_rows,
                                 threads=sizing.threads, progress=sizing.progress)
        return table
    if sizing.top_k is None:
        print(f"selip: {len(texts)} unique report texts: a dense similarity table would take "
              f"{dense_megabytes(len(texts)) / 1024:.1f} GB (data.similarity_dense_max_mb is "
              f"{sizing.dense_max_mb:.0f} MB); using the top {AUTO_TOP_K} neighbours of each "
              "report (data.similarity_top_k)", file=sys.stderr)
    sparse, _ = load_or_build_sparse(cache_dir, texts, config, top_k, threads=sizing.threads,
                                     progress=sizing.progress)
    return sparse
