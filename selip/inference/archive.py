"""Embedding an archive and searching it: ``selip embed`` and ``selip search``.

:func:`embed_split` runs a loaded model over every (exam, sequence) pair of a manifest's
split, reading volumes from the preprocessing cache when its settings match the model's
(else preprocessing them once into it): the loader's workers read while the model
computes. The result is saved as ``.npz`` or, with pyarrow installed (``pip install
'selip[parquet]'``), ``.parquet`` (:func:`save_embeddings`): one row per pair, the
embeddings as fixed-size float32 lists, readable by pandas, polars or DuckDB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from selip.inference.model import PretrainedSelip
from selip.io.atomic import atomic_open
from selip.models.scoring import scaled_similarity


@dataclass
class Embeddings:
    """One row per pair: ``image`` / ``text`` (N, E) float32 unit vectors, and the pair's
    ``exam_id``, ``sequence``, ``report_id`` and ``report`` (its pair text)."""

    image: np.ndarray
    text: np.ndarray
    exam_id: np.ndarray
    sequence: np.ndarray
    report_id: np.ndarray
    report: np.ndarray

    def __len__(self) -> int:
        return len(self.exam_id)


def embed_split(model: PretrainedSelip, manifest: str | Path, split: str = "test",
                cache_dir: str | Path | None = None, batch_size: int = 8,
                num_workers: int = 2, val_fraction: float = 0.1, test_fraction: float = 0.1,
                split_seed: int = 0, progress: bool = True,
                timings: dict[str, float] | None = None) -> Embeddings:
    """Image and report embeddings of every pair of ``split`` (``train``, ``val``, ``test``
    as the datamodule splits the manifest, or ``all``); ``timings`` (when given) receives
    the seconds of ``setup`` (validation, splits), ``images`` and ``texts``."""
    clock = time.perf_counter()
    from torch.utils.data import DataLoader

    from selip.data.cohort import Cohort, CohortSettings, default_cache_dir
    from selip.data.dataset import PairDataset

    source = Cohort(CohortSettings(
        Path(manifest).expanduser(), Path(cache_dir).expanduser() if cache_dir
        else default_cache_dir(), model.preprocess_settings, val_fraction=val_fraction,
        test_fraction=test_fraction, split_seed=split_seed, mirrored_texts=False,
        progress=progress, threads=max(1, num_workers)))
    source.prepare()
    cohort = source.load()
    splits = ("train", "val", "test") if split == "all" else (split,)
    if any(s not in ("train", "val", "test") for s in splits):
        raise ValueError(f"split must be train, val, test or all, got {split!r}")
    images, sample_ids = [], []
    setup_done = time.perf_counter()
    total = sum(len(cohort.split(s)) for s in splits)
    with tqdm(total=total, unit="volume", desc="embedding", disable=not progress) as bar:
        for name in splits:  # no tokens: the model encodes the texts itself, below
            dataset = PairDataset(cohort.split(name), source.cache, with_mask=False)
            for batch in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
                sequences = [cohort.sequences[int(i)] for i in batch["sequence"]]
                images.append(model.encode_batch(batch["image"].float(), sequences))
                sample_ids += batch["sample_id"].tolist()
                bar.update(len(sample_ids) - bar.n)
    images_done = time.perf_counter()
    pairs = [cohort.pairs[i] for i in sample_ids]
    texts = cohort.report_table.texts
    unique = sorted({p.report_id for p in pairs})
    text_rows = dict(zip(unique, model.encode_texts([texts[i] for i in unique]) if unique
                         else [], strict=True))
    dim = model.embed_dim
    if timings is not None:
        timings.update(setup=setup_done - clock, images=images_done - setup_done,
                       texts=time.perf_counter() - images_done)
    return Embeddings(
        image=torch.cat(images).numpy() if images else np.zeros((0, dim), np.float32),
        text=torch.stack([text_rows[p.report_id] for p in pairs]).numpy() if pairs
        else np.zeros((0, dim), np.float32),
        exam_id=np.array([p.exam_id for p in pairs], dtype=str),
        sequence=np.array([cohort.sequences[p.sequence_index] for p in pairs], dtype=str),
        report_id=np.array([p.report_id for p in pairs], dtype=np.int64),
        report=np.array([texts[p.report_id] for p in pairs], dtype=str))


FORMATS = (".npz", ".parquet")
FIELDS = tuple(Embeddings.__dataclass_fields__)
VECTORS = ("image", "text")


def check_embeddings_path(path: str | Path) -> Path:
    """``path`` if embeddings can be written there (checked before the work, not after).

    Raises:
        ValueError: a suffix other than ``.npz``/``.parquet``, or ``.parquet`` without pyarrow.
    """
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"embeddings are written as .npz or .parquet, got {path.name}")
    if path.suffix == ".parquet":
        _pyarrow(path)
    return path


def save_embeddings(path: str | Path, embeddings: Embeddings) -> Path:
    """Write ``.npz`` or ``.parquet`` (chosen by the suffix) atomically.

    Raises:
        ValueError: another suffix, or ``.parquet`` without pyarrow installed.
    """
    path = check_embeddings_path(path)
    if path.suffix == ".parquet":
        pyarrow, parquet = _pyarrow(path)
        columns = {k: getattr(embeddings, k) for k in FIELDS if k not in VECTORS}
        table = pyarrow.table({
            **{k: v.tolist() if v.dtype.kind == "U" else v for k, v in columns.items()},
            **{k: _fixed_size_list(pyarrow, getattr(embeddings, k)) for k in VECTORS}})
        with atomic_open(path, "wb") as handle:
            parquet.write_table(table, handle)
        return path
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **{k: getattr(embeddings, k) for k in FIELDS})
    return path


def load_embeddings(path: str | Path) -> Embeddings:
    """Read what :func:`save_embeddings` wrote (``.npz`` or ``.parquet``).

    Raises:
        ValueError: missing, not a selip embeddings file (names the missing arrays or
            columns), or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"embeddings file not found: {path}")
    if path.suffix == ".parquet":
        return _load_parquet(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            missing = [k for k in FIELDS if k not in stored]
            if missing:
                raise ValueError(f"{path} is not a selip embeddings file (no "
                                 f"{', '.join(missing)})")
            return Embeddings(**{k: stored[k] for k in FIELDS})
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npz file ({err})") from None


def _load_parquet(path: Path) -> Embeddings:
    pyarrow, parquet = _pyarrow(path)
    try:
        table = parquet.read_table(path)
    except (OSError, pyarrow.ArrowException) as err:
        raise ValueError(f"{path} is not a readable .parquet file ({err})") from None
    missing = [k for k in FIELDS if k not in table.column_names]
    if missing:
        raise ValueError(f"{path} is not a selip embeddings file (no {', '.join(missing)})")
    found: dict[str, np.ndarray] = {}
    for name in VECTORS:
        column = table.column(name).combine_chunks()
        width = column.type.list_size if hasattr(column.type, "list_size") else -1
        found[name] = column.flatten().to_numpy(zero_copy_only=False) \
            .astype(np.float32).reshape(len(table), width)
    found["report_id"] = table.column("report_id").to_numpy().astype(np.int64)
    for name in ("exam_id", "sequence", "report"):
        found[name] = np.array(table.column(name).to_pylist(), dtype=str)
    return Embeddings(**found)


def _fixed_size_list(pyarrow: Any, vectors: np.ndarray) -> Any:
    """(N, E) float32 → a pyarrow ``fixed_size_list<float32>[E]`` column."""
    flat = pyarrow.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pyarrow.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def _pyarrow(path: Path) -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, or a one-line error naming the extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet as parquet
    except ImportError:
        raise ValueError(f"{path.name}: .parquet needs pyarrow (pip install 'selip[parquet]'"
                         "), or write .npz") from None
    return pyarrow, parquet


def search(model: PretrainedSelip, embeddings: Embeddings, text: str | None = None,
           image: str | Path | None = None, top: int = 10) -> list[tuple[float, int]]:
    """(score, row) of the ``top`` best matches, best first: a text query ranks the
    archive's images, an image query its reports (each report text once)."""
    if (text is None) == (image is None):
        raise ValueError("give exactly one of a text or an image to search with")
    if text is not None:
        query, candidates = model.encode_texts([text]), embeddings.image
        rows = np.arange(len(candidates))
    else:
        query = model.encode_images([image])  # type: ignore[list-item]
        _, first = np.unique(embeddings.report_id, return_index=True)
        rows = np.sort(first)
        candidates = embeddings.text[rows]
    scores = scaled_similarity(torch.from_numpy(np.asarray(candidates, np.float32)),
                               query.float().cpu(), model.logit_scale)[:, 0].numpy()
    order = np.argsort(-scores, kind="stable")[:top]
    return [(float(scores[i]), int(rows[i])) for i in order]
