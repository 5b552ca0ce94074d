"""How S is stored and built (:class:`TableSizing`): the ``data.similarity`` settings that
choose between the dense table, the sparse top-k table and ``per_batch``. Plain Python,
so that reading the settings (every ``selip`` command does) loads no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Neighbours per report kept when the dense table would exceed ``dense_max_mb`` in
#: ``table`` mode.
AUTO_TOP_K = 256
SimilarityMode = Literal["table", "per_batch", "auto"]
MODES = ("table", "per_batch", "auto")


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
        mode: ``table``, ``per_batch`` or ``auto`` (see :mod:`selip.similarity.lookup`).

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
