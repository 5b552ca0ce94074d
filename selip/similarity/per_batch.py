"""Exact S computed per batch, for archives too large for a table.

A training step needs only the S entries of its own batch: (b, N) for b local rows
against the N gathered columns. Computing them per step costs O(U·N) per epoch where any
table costs O(U²). What is computed once and kept on disk is O(U): every report text
parsed into findings (the averaging matrix of :class:`~selip.similarity.engine.
PreparedReports`) and the unique findings with their location and tag codes and, for
``semantic: embedding``, their sentence embeddings (:class:`ParsedReports`).

Files under ``<cache_dir>/similarity/``: ``<key>-parsed.npz`` and its sidecar
``<key>-parsed.json`` (key, U, settings, build seconds, digest), written under temporary
names and renamed, the sidecar last; a file whose digest does not match is rebuilt.

:class:`PerBatchSimilarity` implements :class:`~selip.similarity.lookup.SimilarityLookup`
and returns exactly what the dense table returns: S rounded to float16 (the table's
storage), as float32.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from selip.io.atomic import atomic_files, atomic_write_text
from selip.similarity.config import SimilarityConfig
from selip.similarity.engine import FindingTable, PreparedReports, SimilarityEngine
from selip.similarity.table import TableInfo, array_digest, table_key

#: Arrays of the parsed-reports file, in digest order.
_ARRAYS = ("keys", "normal", "data", "indices", "indptr", "shape", "text_bytes",
           "text_offsets", "locations", "tags", "embeddings")


def parsed_key(texts: list[str], config: SimilarityConfig) -> str:
    """The dense table's key with a suffix: the same texts and settings, another file."""
    return f"{table_key(texts, config)}-parsed"


@dataclass
class ParsedReports:
    """Every report text reduced to findings: O(U + F) memory, no U² anywhere."""

    findings: FindingTable
    reports: PreparedReports  # (U, F) averaging matrix, keys, normal flags

    def __len__(self) -> int:
        return len(self.reports.keys)

    def subset(self, ids: np.ndarray) -> PreparedReports:
        """The reports ``ids`` (any order, repeats allowed) as their own PreparedReports."""
        return PreparedReports(self.reports.keys[ids], self.reports.normal[ids],
                               self.reports.averaging[ids])


def parse_reports(texts: list[str], config: SimilarityConfig, progress: bool = False
                  ) -> ParsedReports:
    """Parse ``texts`` (ids = positions) once: O(U) time and memory."""
    engine = SimilarityEngine(config, threads=1)
    # the engine iterates each group once and asks its length: a tqdm over the texts does
    bar = tqdm(texts, desc="parsing reports", unit="report", disable=not progress,
               mininterval=1.0)
    findings, (reports,) = engine.prepare([bar], progress)  # type: ignore[list-item]
    return ParsedReports(findings, reports)


def _paths(root: Path, key: str) -> tuple[Path, Path]:
    folder = root / "similarity"
    return folder / f"{key}.npz", folder / f"{key}.json"


def _to_arrays(parsed: ParsedReports) -> dict[str, np.ndarray]:
    averaging = parsed.reports.averaging
    encoded = [t.encode() for t in parsed.findings.texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    embeddings = parsed.findings.embeddings
    return {
        "keys": parsed.reports.keys, "normal": parsed.reports.normal,
        "data": averaging.data, "indices": averaging.indices, "indptr": averaging.indptr,
        "shape": np.asarray(averaging.shape, np.int64),
        "text_bytes": np.frombuffer(b"".join(encoded), np.uint8),
        "text_offsets": offsets, "locations": parsed.findings.locations,
        "tags": parsed.findings.tags,
        # float32, not float16: S must equal the dense table's (built from float32 ones)
        "embeddings": embeddings if embeddings is not None else np.zeros((0, 0), np.float32),
    }


def _from_arrays(arrays: dict[str, np.ndarray]) -> ParsedReports:
    offsets, raw = arrays["text_offsets"], arrays["text_bytes"].tobytes()
    texts = [raw[offsets[i]:offsets[i + 1]].decode() for i in range(len(offsets) - 1)]
    shape = tuple(int(x) for x in arrays["shape"])
    averaging = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]),
                              shape=shape)
    embeddings = arrays["embeddings"] if arrays["embeddings"].size else None
    return ParsedReports(FindingTable(texts, arrays["locations"], arrays["tags"], embeddings),
                         PreparedReports(arrays["keys"], arrays["normal"], averaging))


def open_parsed(root: str | Path, key: str) -> ParsedReports | None:
    """The parsed reports of ``key`` under ``root``; None if absent or corrupt."""
    path, sidecar = _paths(Path(root), key)
    try:
        info = TableInfo(**json.loads(sidecar.read_text()))
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in _ARRAYS}
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if info.key != key or array_digest(*(a.reshape(-1) for a in arrays.values())) != \
            info.digest:
        return None
    return _from_arrays(arrays)


def load_or_build_parsed(root: str | Path, texts: list[str], config: SimilarityConfig,
                         progress: bool = True) -> tuple[ParsedReports, str, bool]:
    """The parsed reports of ``texts``: reused when the key matches and the digest
    verifies, else parsed and written atomically. Returns ``(parsed, key, built)``."""
    key = parsed_key(texts, config)
    found = open_parsed(root, key)
    if found is not None:
        return found, key, False
    start = time.perf_counter()
    parsed = parse_reports(texts, config, progress)
    arrays = _to_arrays(parsed)
    path, sidecar = _paths(Path(root), key)
    with atomic_files(path) as (name,), open(name, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    info = TableInfo(key=key, size=len(texts), settings=config.fingerprint(),
                     build_seconds=round(time.perf_counter() - start, 3),
                     digest=array_digest(*(a.reshape(-1) for a in arrays.values())))
    atomic_write_text(sidecar, json.dumps(info.__dict__, indent=2))
    return parsed, key, True


def column_checksum(report_ids: torch.Tensor) -> torch.Tensor:
    """Σ_c (c + 1) · id_c over the gathered report ids (N,), an int64 scalar: equal sums
    catch a batch whose columns are not the ones the worker scored (a reordering or another
    step)."""
    weights = torch.arange(1, len(report_ids) + 1, device=report_ids.device)
    return (report_ids.long() * weights).sum()


class PerBatchSimilarity:
    """S between any report ids, computed when asked from the parsed reports.

    Args:
        parsed: every text of the table, parsed (:func:`load_or_build_parsed`).
        config: the similarity settings the texts were parsed with.
        key: the content hash recorded in checkpoints.
    """

    def __init__(self, parsed: ParsedReports, config: SimilarityConfig, key: str) -> None:
        self.parsed = parsed
        self.engine = SimilarityEngine(config, threads=1)
        self._key = key
        # a small dense table over the evaluation splits' ids (keep_evaluation_table)
        self._kept_ids: np.ndarray | None = None
        self._kept: np.ndarray | None = None
        self._columns_checked = False

    @property
    def key(self) -> str:
        return self._key

    def __len__(self) -> int:
        return len(self.parsed)

    def rows(self, row_ids: np.ndarray, column_ids: np.ndarray) -> np.ndarray:
        """S[row_ids][:, column_ids], (n, m) float32 holding float16 values (as the dense
        table stores them). Each distinct id is scored once, whatever the repeats."""
        rows, row_of = np.unique(np.asarray(row_ids, np.int64), return_inverse=True)
        cols, col_of = np.unique(np.asarray(column_ids, np.int64), return_inverse=True)
        a, b = self.parsed.subset(rows), self.parsed.subset(cols)
        block = self.engine.block(self.parsed.findings, a, b, slice(None),
                                  np.unique(b.averaging.indices))
        block = block.astype(np.float16).astype(np.float32)
        return block[row_of.reshape(-1)[:, None], col_of.reshape(-1)[None, :]]

    def keep_evaluation_table(self, ids: np.ndarray, max_mb: float) -> bool:
        """Keep S over ``ids`` (the evaluation splits' reports) in memory when it fits
        ``max_mb`` as float16, so validation reads a small table; True when kept."""
        ids = np.unique(np.asarray(ids, np.int64))
        if ids.size == 0 or ids.size**2 * 2 / 2**20 > max_mb:
            return False
        self._kept_ids, self._kept = ids, self.rows(ids, ids).astype(np.float16)
        return True

    def lookup(self, report_ids: torch.Tensor, column_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """(n, m) float32 S on ``report_ids``' device (see :meth:`rows`)."""
        columns = report_ids if column_ids is None else column_ids
        rows = report_ids.detach().cpu().numpy()
        cols = columns.detach().cpu().numpy()
        kept = self._kept_ids
        if kept is not None and self._kept is not None:
            row_at, col_at = np.searchsorted(kept, rows), np.searchsorted(kept, cols)
            if _all_found(kept, rows, row_at) and _all_found(kept, cols, col_at):
                block = self._kept[row_at[:, None], col_at[None, :]].astype(np.float32)
                return torch.from_numpy(block).to(report_ids.device)
        return torch.from_numpy(self.rows(rows, cols)).to(report_ids.device)

    def place(self, device: torch.device | str, budget_bytes: int) -> bool:
        """Nothing to place: S is computed per batch (in the loader workers for training)."""
        return False

    def batch_rows(self, batch: Mapping[str, torch.Tensor], report_ids: torch.Tensor,
                   column_ids: torch.Tensor) -> torch.Tensor:
        """(b, N) float32 S rows of a step: a training batch carries the rows its loader
        worker computed (``similarity_bits``) — checked once per fit against the columns
        the step gathered (one host sync) —, any other batch is looked up."""
        if "similarity_bits" not in batch:
            return self.lookup(report_ids, column_ids)
        if not self._columns_checked:
            self._columns_checked = True
            if int(batch["similarity_check"][0]) != int(column_checksum(column_ids)):
                raise RuntimeError(
                    "the loader workers computed S for other reports than this step "
                    "gathered (data.similarity.mode per_batch needs selip's training sampler and "
                    "whole batches in its order); use data.similarity.mode table")
        return batch["similarity_bits"].view(torch.float16).float()

    def start_fit(self) -> None:
        """A fit (or a resumed one) begins: its first training batch is checked again."""
        self._columns_checked = False


def _all_found(sorted_ids: np.ndarray, wanted: np.ndarray, at: np.ndarray) -> bool:
    inside = at < len(sorted_ids)
    return bool(inside.all() and (sorted_ids[at[inside]] == wanted).all())
