"""What ``selip similarity`` prints about a lookup: its key, storage, size, and the most
similar pairs of texts — each kind of lookup describes itself here, so the command never
asks which one it holds."""

from __future__ import annotations

from typing import Any

import numpy as np

from selip.similarity.per_batch import PerBatchSimilarity
from selip.similarity.table import SimilarityTable


def describe_lookup(table: Any, texts: list[str], show: int = 0) -> str:
    """The description of ``table`` over ``texts``, with the ``show`` most similar pairs
    of distinct texts."""
    if isinstance(table, SimilarityTable):
        return "\n".join(_describe_dense(table, texts, show))
    if isinstance(table, PerBatchSimilarity):
        return "\n".join(_describe_per_batch(table, texts, show))
    return "\n".join(_describe_sparse(table, texts, show))


def _describe_per_batch(table: Any, texts: list[str], show: int, sample: int = 1000
                        ) -> list[str]:
    """No table to read: S over (at most) ``sample`` texts drawn evenly, computed now."""
    picked = np.unique(np.linspace(0, len(table) - 1, min(sample, len(table))).astype(int)) \
        if len(table) else np.zeros(0, int)
    block = table.rows(picked, picked) if picked.size else np.zeros((0, 0), np.float32)
    off = block[~np.eye(len(picked), dtype=bool)]
    lines = [f"key      {table.key}",
             f"format   per_batch: no table; {len(table)} texts parsed into "
             f"{len(table.parsed.findings.texts)} unique findings, S computed per batch",
             f"reports  {len(table)} unique texts",
             f"S        off-diagonal mean {off.mean() if off.size else 0:.3f} over "
             f"{len(picked)} texts drawn evenly"]
    if show > 0 and len(picked) > 1:
        lines += _top_pairs(block, [texts[i] for i in picked], show)
    return lines


def _top_pairs(matrix: Any, texts: list[str], show: int) -> list[str]:
    """The ``show`` most similar pairs of distinct texts of a square S over ``texts``."""
    upper = np.triu(np.asarray(matrix, dtype=np.float32), k=1)
    lines = []
    for flat in np.argsort(upper, axis=None)[::-1][:show]:
        i, j = np.unravel_index(flat, upper.shape)
        lines.append(f"{upper[i, j]:.3f}  {texts[i]!r}  ~  {texts[j]!r}")
    return lines


def _describe_dense(table: Any, texts: list[str], show: int) -> list[str]:
    off_diagonal = np.asarray(table.matrix, dtype=np.float32)[~np.eye(len(table), dtype=bool)]
    lines = [f"key      {table.key}", f"path     {table.path}",
             f"reports  {len(table)} unique texts",
             f"seconds  {table.info.build_seconds} (build)",
             f"S        off-diagonal mean {off_diagonal.mean() if off_diagonal.size else 0:.3f}"
             f", zero {np.mean(off_diagonal == 0) if off_diagonal.size else 0:.1%}"]
    if show > 0 and len(table) > 1:
        lines += _top_pairs(table.matrix, texts, show)
    return lines


def _describe_sparse(table: Any, texts: list[str], show: int) -> list[str]:
    neighbours = np.asarray(table.neighbours, dtype=np.int64)
    values = np.asarray(table.values, dtype=np.float32)
    others = neighbours != np.arange(len(table))[:, None]
    kept = values[others]
    lines = [f"key      {table.key}",
             f"format   top-{table.top_k} neighbours per report ({table.nbytes / 2**20:.1f} MB)",
             f"reports  {len(table)} unique texts",
             f"seconds  {table.info.build_seconds} (build)",
             f"S        kept off-diagonal mean {kept.mean() if kept.size else 0:.3f}"]
    if show > 0 and kept.size:
        rows = np.nonzero(others)[0]
        pairs = sorted({(float(v), min(i, j), max(i, j)) for v, i, j in
                        zip(kept, rows, neighbours[others], strict=True)}, reverse=True)
        lines += [f"{value:.3f}  {texts[i]!r}  ~  {texts[j]!r}" for value, i, j in pairs[:show]]
    return lines


