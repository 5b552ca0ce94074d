"""Retrieval metrics over a de-duplicated text pool (the paper's protocol, DESIGN §2.6).

Inputs are one row per (image, report) pair: image and text embeddings (N, E), already
L2-normalised (scores are plain dot products), ``report_ids`` (N,) — equal id ⇔ identical
report text — and ``sample_ids`` (N,), unique per pair. Distributed samplers pad the last
batch with repeated samples, so rows are first de-duplicated by ``sample_id``.

- image→text: every image queries the pool of unique texts (one per report id, the
  embedding of the first pair carrying that id). Its rank is 1 + the number of pool texts
  scoring strictly higher than its own report's text (ties count in the query's favour).
- text→image: every unique text queries all images; the correct images are those of that
  report, and the rank is that of the best-scoring one (again 1 + strictly higher).
- semantic R@K: a hit is any candidate whose report has S ≥ τ with the true report (the
  exact match always counts). Computed as the optimistic rank of the best-scoring relevant
  candidate, so it is never below exact R@K.
- median rank: the lower middle value for an even count (``torch.median`` semantics).

Scores are computed ``chunk_size`` queries at a time in float32 on the inputs' device; the
top-k lists come back on CPU. Pure torch: no Lightning here.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from selip.data.atomic import atomic_open

SimilarityFn = Callable[[Tensor, Tensor], Tensor]
"""``similarity(row_ids (n,), col_ids (m,)) -> (n, m)`` S between report ids."""


@dataclass
class RetrievalResult:
    """Metrics plus per-query top-k lists (CPU tensors).

    ``N`` = images after de-duplication, ``T`` = unique texts. The top-k width is
    ``min(max(ks), T)`` for image→text and ``min(max(ks), N)`` for text→image; lists are in
    descending score order, ties broken by pool order (first appearance).
    """

    metrics: dict[str, float]
    image_to_text_topk: Tensor  # (N, k) report ids of the top-k texts per image query
    image_to_text_scores: Tensor  # (N, k) float32
    text_to_image_topk: Tensor  # (T, k) sample ids of the top-k images per text query
    text_to_image_scores: Tensor  # (T, k) float32
    text_query_ids: Tensor  # (T,) report ids of the text queries (order of first appearance)
    image_query_ids: Tensor  # (N,) sample ids of the image queries
    image_to_text_ranks: Tensor  # (N,) int64 exact rank of each image query
    text_to_image_ranks: Tensor  # (T,) int64 exact rank of each text query


def _first_occurrence(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Positions of the first occurrence of each distinct id, and each row's group.

    Args:
        ids: (n,) integer ids.

    Returns:
        keep: (u,) int64 positions into ``ids``, ascending (order of first appearance).
        group: (n,) int64 index of each row's id within ``ids[keep]``.
    """
    values, inverse = torch.unique(ids, return_inverse=True)
    count = values.numel()
    positions = torch.arange(ids.numel(), device=ids.device)
    first = torch.full((count,), ids.numel(), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    keep, order = first.sort()
    slot = torch.empty_like(order)
    slot[order] = torch.arange(count, device=ids.device)
    return keep, slot[inverse]


def deduplicate(sample_ids: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Keep the first occurrence of each sample id, in order of first appearance.

    Args:
        sample_ids: (n,) integer ids.
        *tensors: each (n, ...), filtered along dim 0 alongside ``sample_ids``.

    Returns:
        ``(sample_ids[keep], *(t[keep] for t in tensors))`` with ``u`` ≤ ``n`` rows each.
    """
    if sample_ids.ndim != 1:
        raise ValueError(f"sample_ids must be 1-D, got shape {tuple(sample_ids.shape)}")
    for index, tensor in enumerate(tensors):
        if tensor.ndim == 0 or tensor.shape[0] != sample_ids.shape[0]:
            raise ValueError(f"tensor {index} has shape {tuple(tensor.shape)}; expected "
                             f"{sample_ids.shape[0]} rows like sample_ids")
    keep, _ = _first_occurrence(sample_ids)
    return (sample_ids[keep], *(t[keep.to(t.device)] for t in tensors))


def _validate(image_emb: Tensor, text_emb: Tensor, report_ids: Tensor, sample_ids: Tensor,
              ks: tuple[int, ...], chunk_size: int) -> None:
    if image_emb.ndim != 2 or text_emb.shape != image_emb.shape:
        raise ValueError(f"image_emb and text_emb must both be (N, E); got "
                         f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    n = image_emb.shape[0]
    if n == 0:
        raise ValueError("retrieval needs at least one pair; got N = 0")
    for name, ids in (("report_ids", report_ids), ("sample_ids", sample_ids)):
        if ids.shape != (n,) or ids.is_floating_point() or ids.is_complex():
            raise ValueError(f"{name} must be ({n},) integers; got {tuple(ids.shape)} "
                             f"{ids.dtype}")
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty tuple of positive ints; got {ks!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1; got {chunk_size}")
    if not (torch.isfinite(image_emb).all() and torch.isfinite(text_emb).all()):
        raise ValueError("image_emb and text_emb must be finite (found NaN or inf)")


def _best_rank(scores: Tensor, mask: Tensor) -> Tensor:
    """(c, M) scores and a (c, M) mask with ≥ 1 True per row → (c,) 1 + #(scores > best)."""
    best = scores.masked_fill(~mask, -math.inf).amax(dim=1, keepdim=True)
    return 1 + (scores > best).sum(dim=1)


def _lookup(similarity: SimilarityFn, rows: Tensor, cols: Tensor) -> Tensor:
    block = similarity(rows, cols)
    if block.shape != (rows.numel(), cols.numel()):
        raise ValueError(f"similarity returned shape {tuple(block.shape)}; expected "
                         f"{(rows.numel(), cols.numel())}")
    return block.to(device=rows.device, dtype=torch.float32)


@dataclass
class _Direction:
    ranks: Tensor  # (Q,) int64
    semantic_ranks: Tensor | None  # (Q,) int64
    topk: Tensor  # (Q, k) candidate indices, CPU
    scores: Tensor  # (Q, k) float32, CPU


def _rank_direction(queries: Tensor, candidates: Tensor, correct: Callable[[slice], Tensor],
                    relevant: Callable[[slice], Tensor] | None, k: int,
                    chunk_size: int) -> _Direction:
    """Rank ``candidates`` (M, E) for each query of ``queries`` (Q, E), chunk by chunk.

    ``correct(sl)`` / ``relevant(sl)`` give (c, M) bool masks for the queries in ``sl``.
    """
    ranks, semantic, top_index, top_score = [], [], [], []
    for start in range(0, queries.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        scores = queries[sl] @ candidates.T  # (c, M)
        exact = correct(sl)
        ranks.append(_best_rank(scores, exact))
        if relevant is not None:
            semantic.append(_best_rank(scores, exact | relevant(sl)))
        ordered, index = scores.sort(dim=1, descending=True, stable=True)
        top_index.append(index[:, :k].cpu())
        top_score.append(ordered[:, :k].cpu())
    return _Direction(torch.cat(ranks), torch.cat(semantic) if semantic else None,
                      torch.cat(top_index), torch.cat(top_score))


def _recall(ranks: Tensor, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    return {f"{prefix}R@{k}": (ranks <= k).double().mean().item() for k in ks}


def _chance_t2i(group_sizes: Tensor, num_images: int, k: int) -> float:
    """Mean over text queries of P(a random order puts one of its m images in the top k)."""
    m = group_sizes.double().cpu()
    n = float(num_images)
    if k >= num_images:
        return 1.0
    rest = n - m  # images of other reports
    log_miss = (torch.lgamma(rest + 1) - torch.lgamma((rest - k).clamp(min=0) + 1)
                - math.lgamma(n + 1) + math.lgamma(n - k + 1))
    miss = torch.where(rest >= k, log_miss.exp(), torch.zeros_like(m))
    return (1 - miss).mean().item()


def _semantic_masks(similarity: SimilarityFn, threshold: float, report_ids: Tensor,
                    pool_ids: Tensor, pool_of: Tensor
                    ) -> tuple[Callable[[slice], Tensor], Callable[[slice], Tensor]]:
    """Chunk → (c, T) and (c, N) masks of candidates with S(true report, theirs) ≥ τ.

    Args:
        report_ids: (N,) report id of each image. pool_ids: (T,) report id of each pool text.
        pool_of: (N,) pool slot of each image's report.
    """

    def image_to_text(sl: slice) -> Tensor:
        return _lookup(similarity, report_ids[sl], pool_ids) >= threshold

    def text_to_image(sl: slice) -> Tensor:
        return (_lookup(similarity, pool_ids[sl], pool_ids) >= threshold)[:, pool_of]

    return image_to_text, text_to_image


def retrieval_metrics(image_emb: Tensor, text_emb: Tensor, report_ids: Tensor,
                      sample_ids: Tensor, ks: tuple[int, ...] = (1, 5, 10),
                      similarity: SimilarityFn | None = None,
                      semantic_threshold: float = 0.5, chunk_size: int = 1024
                      ) -> RetrievalResult:
    """Image↔text retrieval over the de-duplicated text pool.

    Args:
        image_emb: (N, E) L2-normalised image embeddings.
        text_emb: (N, E) L2-normalised embeddings of each image's paired text.
        report_ids: (N,) int64; equal id ⇔ identical report text.
        sample_ids: (N,) int64; repeated ids (DDP padding) are counted once.
        ks: the K of R@K (positive).
        similarity: optional ``(row_ids (n,), col_ids (m,)) -> (n, m)`` S between report
            ids, e.g. ``SimilarityTable.lookup``; enables semantic R@K.
        semantic_threshold: τ; a candidate is a semantic hit when S(true, its report) ≥ τ.
        chunk_size: queries scored at once.

    Returns:
        A :class:`RetrievalResult`. Metric keys: ``i2t_R@K``, ``i2t_median_rank``,
        ``t2i_R@K``, ``t2i_median_rank``, with ``similarity`` also ``i2t_semantic_R@K`` and
        ``t2i_semantic_R@K``; ``chance_i2t_R@K`` = min(1, K / T), ``chance_t2i_R@K`` (the
        exact expectation under a random image order), ``num_queries_i2t`` (N),
        ``num_queries_t2i`` and ``num_texts`` (T).
    """
    _validate(image_emb, text_emb, report_ids, sample_ids, ks, chunk_size)
    device = image_emb.device
    sample_ids, image, text, report_ids = deduplicate(
        sample_ids.to(device), image_emb.float(), text_emb.to(device).float(),
        report_ids.to(device))
    keep, pool_of = _first_occurrence(report_ids)  # pool_of: (N,) each image's pool slot
    pool_ids, pool_text = report_ids[keep], text[keep]
    n, t = image.shape[0], pool_text.shape[0]
    k_max = max(ks)
    slots = torch.arange(t, device=device)

    i2t_relevant = t2i_relevant = None
    if similarity is not None:
        i2t_relevant, t2i_relevant = _semantic_masks(similarity, semantic_threshold,
                                                     report_ids, pool_ids, pool_of)
    i2t = _rank_direction(image, pool_text, lambda sl: pool_of[sl, None] == slots[None, :],
                          i2t_relevant, min(k_max, t), chunk_size)
    t2i = _rank_direction(pool_text, image, lambda sl: slots[sl, None] == pool_of[None, :],
                          t2i_relevant, min(k_max, n), chunk_size)

    metrics: dict[str, float] = {}
    for prefix, direction in (("i2t_", i2t), ("t2i_", t2i)):
        metrics |= _recall(direction.ranks, ks, prefix)
        metrics[f"{prefix}median_rank"] = float(direction.ranks.median().item())
    for prefix, direction in (("i2t_", i2t), ("t2i_", t2i)):
        if direction.semantic_ranks is not None:
            metrics |= _recall(direction.semantic_ranks, ks, f"{prefix}semantic_")
    group_sizes = torch.bincount(pool_of, minlength=t)
    metrics |= {f"chance_i2t_R@{k}": min(1.0, k / t) for k in ks}
    metrics |= {f"chance_t2i_R@{k}": _chance_t2i(group_sizes, n, k) for k in ks}
    metrics |= {"num_queries_i2t": float(n), "num_queries_t2i": float(t), "num_texts": float(t)}

    pool_ids_cpu, sample_ids_cpu = pool_ids.cpu(), sample_ids.cpu()
    return RetrievalResult(
        metrics=metrics,
        image_to_text_topk=pool_ids_cpu[i2t.topk], image_to_text_scores=i2t.scores,
        text_to_image_topk=sample_ids_cpu[t2i.topk], text_to_image_scores=t2i.scores,
        text_query_ids=pool_ids_cpu, image_query_ids=sample_ids_cpu,
        image_to_text_ranks=i2t.ranks.cpu(), text_to_image_ranks=t2i.ranks.cpu())


def _write_topk_csv(path: Path, header: list[str], query_ids: Tensor, topk: Tensor,
                    scores: Tensor) -> None:
    with atomic_open(path, "w", durable=False) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for query, ids, values in zip(query_ids.tolist(), topk.tolist(), scores.tolist(),
                                      strict=True):
            for position, (candidate, score) in enumerate(zip(ids, values, strict=True), 1):
                writer.writerow([query, position, candidate, repr(float(score))])


def write_retrieval_outputs(result: RetrievalResult, folder: Path,
                            prefix: str = "retrieval") -> list[Path]:
    """Write the metrics JSON and the per-query top-k CSVs (ids and scores only).

    Files: ``{prefix}_metrics.json``; ``{prefix}_i2t_topk.csv`` with columns
    ``query_sample_id, position, report_id, score``; ``{prefix}_t2i_topk.csv`` with columns
    ``query_report_id, position, sample_id, score``. Report text is never written (patient
    data). Each file is written under a temporary name in ``folder`` and renamed.

    Returns:
        The three paths, in that order.
    """
    folder = Path(folder)
    paths = [folder / f"{prefix}_metrics.json", folder / f"{prefix}_i2t_topk.csv",
             folder / f"{prefix}_t2i_topk.csv"]
    with atomic_open(paths[0], "w", durable=False) as handle:
        json.dump(result.metrics, handle, indent=2, allow_nan=False)
        handle.write("\n")
    _write_topk_csv(paths[1], ["query_sample_id", "position", "report_id", "score"],
                    result.image_query_ids, result.image_to_text_topk,
                    result.image_to_text_scores)
    _write_topk_csv(paths[2], ["query_report_id", "position", "sample_id", "score"],
                    result.text_query_ids, result.text_to_image_topk,
                    result.text_to_image_scores)
    return paths
