"""The vectorised report-similarity engine: S over many reports in row blocks.

S(a, b) = min(1, mean_{f∈F(a)} mean_{g∈F(b)} sim(f, g)) is a bilinear form: with an
averaging matrix A (reports × unique findings, A[r, f] = multiplicity/|F(r)|),
S = A_a · Sim · A_bᵀ. Findings repeat heavily across reports, so Sim is computed over
*unique* findings, block by block, and the report-level block is two sparse products.
Memory per block is O(block × U), never U².
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from selip.similarity.config import SimilarityConfig, resolve_config
from selip.similarity.embedding import embed_texts
from selip.similarity.findings import canonical_key, report_findings, signal_tag, syntax_text
from selip.similarity.scorers import (
    combine,
    cosine_matrix,
    field_agreement_matrix,
    syntax_matrix,
)

Report = str | Mapping[str, Any]


@dataclass
class PreparedReports:
    """Reports reduced to unique findings and an averaging matrix."""

    keys: np.ndarray  # (N,) int: equal codes ⇔ identical report texts
    normal: np.ndarray  # (N,) bool
    averaging: sp.csr_matrix  # (N, F) float32 rows summing to 1 (0 for normal reports)


@dataclass
class FindingTable:
    """Unique findings with what the scorers need."""

    texts: list[str]
    locations: np.ndarray  # (F,) int codes
    tags: np.ndarray  # (F,) int codes
    embeddings: np.ndarray | None = None  # (F, E) unit rows, for the embedding scorer


class SimilarityEngine:
    """Computes S for a config; holds no state besides the config."""

    def __init__(self, config: SimilarityConfig, threads: int = 2,
                 device: str | None = None) -> None:
        self.config = config
        self.threads = max(1, threads)
        self.device = device

    # -- preparation -------------------------------------------------------------------
    def prepare(self, groups: Sequence[Sequence[Report]], progress: bool = False
                ) -> tuple[FindingTable, list[PreparedReports]]:
        """Parse every report of every group against one shared finding table."""
        finding_ids: dict[tuple[str, str], int] = {}
        key_ids: dict[str, int] = {}
        prepared_rows = []
        for reports in groups:
            rows, cols, vals, keys, normal = [], [], [], [], []
            for row, report in enumerate(reports):
                keys.append(key_ids.setdefault(canonical_key(report), len(key_ids)))
                scored = report_findings(report, self.config)
                normal.append(scored.normal)
                for finding in scored.findings:
                    ident = (finding.location.strip(), finding.appearance.strip())
                    rows.append(row)
                    cols.append(finding_ids.setdefault(ident, len(finding_ids)))
                    vals.append(1.0 / len(scored.findings))
            prepared_rows.append((rows, cols, vals, keys, normal, len(reports)))
        table = self._finding_table(list(finding_ids), progress)
        prepared = []
        for rows, cols, vals, keys, normal, count in prepared_rows:
            averaging = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)),
                                      shape=(count, max(1, len(finding_ids))), dtype=np.float32)
            prepared.append(PreparedReports(np.asarray(keys, np.int64),
                                            np.asarray(normal, bool), averaging))
        return table, prepared

    def _finding_table(self, findings: list[tuple[str, str]], progress: bool) -> FindingTable:
        from selip.text.reports import Finding

        objects = [Finding(location, appearance) for location, appearance in findings]
        texts = [syntax_text(f) for f in objects]
        locations = _codes([f.location.strip().lower() for f in objects])
        tags = _codes([signal_tag(f.appearance, self.config.signal_tags) for f in objects])
        embeddings = None
        if self.config.semantic == "embedding" and texts:
            embeddings = embed_texts(texts, self.config.text_model,
                                     self.config.embedding_batch_size, self.device, progress)
        return FindingTable(texts, locations, tags, embeddings)

    # -- scoring -----------------------------------------------------------------------
    def finding_similarity(self, table: FindingTable, rows: np.ndarray, cols: np.ndarray,
                           workers: int = 1) -> np.ndarray:
        """sim(f, g) for findings ``rows`` × ``cols``; (len(rows), len(cols)) float32."""
        config = self.config
        syntax = syntax_matrix([table.texts[i] for i in rows], [table.texts[j] for j in cols],
                               config.syntax, workers)
        if config.semantic == "fields":
            semantic = field_agreement_matrix(table.locations[rows], table.tags[rows],
                                              table.locations[cols], table.tags[cols])
        else:
            assert table.embeddings is not None
            semantic = cosine_matrix(table.embeddings[rows], table.embeddings[cols])
        return combine(syntax, semantic, config.combine, config.alpha)

    def block(self, table: FindingTable, a: PreparedReports, b: PreparedReports,
              rows: slice, b_findings: np.ndarray, workers: int = 1) -> np.ndarray:
        """S for reports ``a[rows]`` × every report of ``b``; (rows, Nb) float32."""
        a_rows = a.averaging[rows]
        a_findings = np.unique(a_rows.indices)
        if a_findings.size == 0 or b_findings.size == 0:
            out = np.zeros((a_rows.shape[0], b.averaging.shape[0]), np.float32)
        else:
            sim = self.finding_similarity(table, a_findings, b_findings, workers)
            left = a_rows[:, a_findings] @ sim  # (rows, Fb) dense
            out = np.asarray((b.averaging[:, b_findings] @ left.T).T, dtype=np.float32)
        np.minimum(out, 1.0, out=out)
        out[a.normal[rows]] = 0.0
        out[:, b.normal] = 0.0
        out[a.keys[rows][:, None] == b.keys[None, :]] = 1.0
        return out

    def blocks(self, a: Sequence[Report], b: Sequence[Report] | None = None,
               block_rows: int = 1024, progress: bool = False
               ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(row slice, S block)`` over ``a`` × ``b`` (``b`` defaults to ``a``)."""
        groups = [a] if b is None else [a, b]
        table, prepared = self.prepare(groups, progress)
        left, right = prepared[0], prepared[-1]
        b_findings = np.unique(right.averaging.indices)
        slices = [slice(s, min(s + block_rows, len(a))) for s in range(0, len(a), block_rows)]

        def work(rows: slice) -> np.ndarray:
            return self.block(table, left, right, rows, b_findings)

        # In order, with at most 2 blocks per thread in flight: memory stays O(block × U).
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            pending: deque[tuple[slice, Future[np.ndarray]]] = deque()
            for rows in slices:
                pending.append((rows, pool.submit(work, rows)))
                if len(pending) >= 2 * self.threads:
                    done_rows, future = pending.popleft()
                    yield done_rows, future.result()
            while pending:
                done_rows, future = pending.popleft()
                yield done_rows, future.result()

    def matrix(self, a: Sequence[Report], b: Sequence[Report] | None = None,
               block_rows: int = 1024, on_block: Callable[[int], None] | None = None
               ) -> np.ndarray:
        """The whole S matrix in memory; (len(a), len(b)) float32."""
        out = np.zeros((len(a), len(a) if b is None else len(b)), np.float32)
        for rows, values in self.blocks(a, b, block_rows):
            out[rows] = values
            if on_block is not None:
                on_block(values.shape[0])
        return out


def _codes(values: list[str]) -> np.ndarray:
    index: dict[str, int] = {}
    return np.asarray([index.setdefault(v, len(index)) for v in values], np.int64)


def report_similarity(reports_a: Sequence[Report], reports_b: Sequence[Report] | None = None,
                      preset: str | SimilarityConfig = "paper") -> np.ndarray:
    """S between two lists of reports (strings or structured dicts), docs/design.md §3.

    Args:
        reports_a: N reports.
        reports_b: M reports (default: ``reports_a``).
        preset: ``"paper"`` (the authors' rule), ``"english"``, or a SimilarityConfig.

    Returns:
        (N, M) float32 in [0, 1].
    """
    engine = SimilarityEngine(resolve_config(preset))
    return engine.matrix(list(reports_a), None if reports_b is None else list(reports_b))
