"""Retrieval metrics over a de-duplicated text pool (the paper's protocol, docs/design.md §6).

Inputs are one row per (image, report) pair: image and text embeddings (N, E), already
L2-normalised (scores are plain dot products), ``report_ids`` (N,) — equal id ⇔ identical
report text — and ``sample_ids`` (N,), unique per pair. Distributed samplers pad the last
batch with repeated samples, so rows are first de-duplicated by ``sample_id``.

- ties never help a query (docs/design.md §6): a rank is 1 + the number of wrong candidates
  scoring *at least as high* as the best-scoring correct one, so a tied wrong candidate
  ranks ahead of the correct one. A collapsed model (every embedding equal) therefore
  ranks every query last instead of first, and can never be chosen as the best checkpoint.
  Scores are compared exactly (no tolerance); correct candidates tying each other cost
  nothing.
- image→text: every image queries the pool of unique texts (one per report id, the
  embedding of the first pair carrying that id); the correct text is its own report's.
- text→image: every unique text queries all images; the correct images are those of that
  report, and the rank is that of the best-scoring one.
- semantic R@K: a hit is any candidate whose report has S ≥ τ with the true report (the
  exact match always counts). The rank of the best-scoring hit, so it is never below exact
  R@K.
- clinical R@K (where the truth of each pair is known: the demo, :class:`ClinicalTruth`):
  a hit describes the same findings, whatever its words — an image and a text match when
  the image's pair has a truth class that one of the pairs carrying the text has (a text
  carried by pairs of different truths is a hit for each of them). The exact match always
  counts, so a pair of unknown truth (class -1) scores as in exact R@K. SeLIP is then
  graded by what the images show, not by its own training targets S.
- median rank: the lower middle value for an even count (``torch.median`` semantics).

Baselines beside every figure:

- chance: the exact expected R@K of a uniformly random order of the candidates, 1 −
  C(M − h, K) / C(M, K) averaged over queries, where M is the candidate count and h the
  query's hits (1 for exact image→text, the report's images for text→image, the semantic
  or clinical hits for semantic or clinical R@K). A random order has no ties, so this is
  the level a model that has learnt nothing reaches on average; a collapsed one scores at
  or below it.
- frequency prior (image→text only, needs the training counts): every image ranks the
  pool texts by how many training pairs carry them (unseen reports count 0), no model;
  ties in the prior are counted pessimistically too, exact, semantic and clinical R@K and
  median rank. Text→image has no meaningful analogue: without a model nothing is known of an
  image but its report, which is the answer, and an order that ignores the images is no
  better than chance, so its baseline is ``chance_t2i_*``.

Scores are computed ``chunk_size`` queries at a time in float32 on the inputs' device; the
top-k lists come back on CPU. Pure torch: no Lightning here.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from selip.io.atomic import atomic_open

SimilarityFn = Callable[[Tensor, Tensor], Tensor]
"""``similarity(row_ids (n,), col_ids (m,)) -> (n, m)`` S between report ids."""
MaskFn = Callable[[slice], Tensor]
"""``mask(queries) -> (c, M)`` bool: the hits among the M candidates of a chunk of queries."""
#: The further hit rules beside the exact match, in the order their keys are built.
RELEVANCE_KINDS = ("semantic", "clinical")


@dataclass(frozen=True)
class ClinicalTruth:
    """What each pair shows, as integer classes: equal class ⇔ the same findings.

    Built by the datamodule from the demo's ``truth.jsonl`` (a class per distinct set of
    ``(kind, region, side)``); real archives have none.

    Attributes:
        pair_classes: (P,) int64 class of the pair whose ``sample_id`` is the index;
            -1 (or an id past the end) where unknown.
        report_classes: (R, W) int64 classes of the pairs carrying report id r (the
            index), padded with -1; ids past the end carry none. A text is a clinical
            hit for an image when any of its classes is the image's.
    """

    pair_classes: Tensor
    report_classes: Tensor


def clinical_truth(pair_classes: Sequence[int],
                   report_classes: Sequence[Collection[int]]) -> ClinicalTruth:
    """A :class:`ClinicalTruth` from plain lists: (P,) classes and R collections of classes
    (padded with -1 to the widest)."""
    width = max((len(c) for c in report_classes), default=0) or 1
    rows = [sorted(c) + [-1] * (width - len(c)) for c in report_classes]
    return ClinicalTruth(torch.tensor(list(pair_classes), dtype=torch.long).reshape(-1),
                         torch.tensor(rows, dtype=torch.long).reshape(len(rows), width))


@dataclass
class RetrievalResult:
    """Metrics plus per-query top-k lists (CPU tensors).

    ``N`` = images after de-duplication, ``T`` = unique texts. The top-k width is
    ``min(max(ks), T)`` for image→text and ``min(max(ks), N)`` for text→image; lists are in
    descending score order, ties broken by pool order (first appearance) — a display order
    only: the ranks count every tie against the query.
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


def _validate_counts(train_counts: Tensor) -> None:
    if train_counts.ndim != 1 or train_counts.is_complex():
        raise ValueError(f"train_counts must be (R,) counts per report id; got shape "
                         f"{tuple(train_counts.shape)} {train_counts.dtype}")
    if not bool(torch.isfinite(train_counts).all()) or bool((train_counts < 0).any()):
        raise ValueError(f"train_counts must be finite and ≥ 0; got {train_counts[:8].tolist()}"
                         f"{' …' if train_counts.numel() > 8 else ''}")


def _validate_truth(truth: ClinicalTruth) -> None:
    for name, tensor, ndim in (("pair_classes", truth.pair_classes, 1),
                               ("report_classes", truth.report_classes, 2)):
        if tensor.ndim != ndim or tensor.is_floating_point() or tensor.is_complex():
            raise ValueError(f"truth.{name} must be a {ndim}-D integer tensor; got shape "
                             f"{tuple(tensor.shape)} {tensor.dtype}")


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
    """Pessimistic rank of the best-scoring correct candidate of each query.

    Args:
        scores: (c, M) candidate scores. mask: (c, M) correct candidates, ≥ 1 per row.

    Returns:
        (c,) int64: 1 + the wrong candidates scoring ≥ the best correct one (ties lose).
    """
    best = scores.masked_fill(~mask, -math.inf).amax(dim=1, keepdim=True)
    return 1 + ((scores >= best) & ~mask).sum(dim=1)


def _lookup(similarity: SimilarityFn, rows: Tensor, cols: Tensor) -> Tensor:
    block = similarity(rows, cols)
    if block.shape != (rows.numel(), cols.numel()):
        raise ValueError(f"similarity returned shape {tuple(block.shape)}; expected "
                         f"{(rows.numel(), cols.numel())}")
    return block.to(device=rows.device, dtype=torch.float32)


def _rank_direction(queries: Tensor, candidates: Tensor, correct: MaskFn,
                    relevant: Mapping[str, MaskFn], k: int, chunk_size: int,
                    prior: Tensor | None = None) -> dict[str, Tensor]:
    """Rank ``candidates`` (M, E) for each query of ``queries`` (Q, E), chunk by chunk.

    ``correct(sl)`` and each ``relevant[kind](sl)`` (kind: ``semantic``, ``clinical``)
    give (c, M) bool masks for the queries in ``sl``; a kind's hits are its mask or the
    correct ones. ``prior`` (M,) is an optional fixed score per candidate (the same for
    every query), ranked against the same masks.

    Returns:
        ``ranks`` (Q,); per kind ``{kind}_ranks`` (Q,) and ``{kind}_hits`` (Q,), its hits
        per query; with ``prior`` also ``prior_ranks`` (and ``prior_{kind}_ranks``);
        ``topk`` (Q, k) candidate indices and ``scores`` (Q, k) float32, on CPU.
    """
    found: defaultdict[str, list[Tensor]] = defaultdict(list)
    for start in range(0, queries.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        scores = queries[sl] @ candidates.T  # (c, M)
        exact = correct(sl)
        masks = {"": exact} | {f"{kind}_": exact | mask(sl) for kind, mask in relevant.items()}
        rankings = {"": scores} if prior is None else {"": scores,
                                                       "prior_": prior.expand_as(scores)}
        for name, ranking in rankings.items():
            for kind, hit in masks.items():
                found[f"{name}{kind}ranks"].append(_best_rank(ranking, hit))
        for kind, hit in masks.items():
            if kind:
                found[f"{kind}hits"].append(hit.sum(dim=1))
        ordered, index = scores.sort(dim=1, descending=True, stable=True)
        found["topk"].append(index[:, :k].cpu())
        found["scores"].append(ordered[:, :k].cpu())
    return {name: torch.cat(parts) for name, parts in found.items()}


def _recall(ranks: Tensor, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    return {f"{prefix}R@{k}": (ranks <= k).double().mean().item() for k in ks}


def _chance(hits: Tensor, num_candidates: int, k: int) -> float:
    """Expected R@k of a uniformly random order of the candidates (hypergeometric).

    Args:
        hits: (Q,) correct candidates per query (≥ 1). num_candidates: M.

    Returns:
        The mean over queries of 1 − C(M − h, k) / C(M, k).
    """
    m = hits.double().cpu()
    n = float(num_candidates)
    if k >= num_candidates:
        return 1.0
    rest = n - m  # wrong candidates
    log_miss = (torch.lgamma(rest + 1) - torch.lgamma((rest - k).clamp(min=0) + 1)
                - math.lgamma(n + 1) + math.lgamma(n - k + 1))
    miss = torch.where(rest >= k, log_miss.exp(), torch.zeros_like(m))
    return (1 - miss).mean().item()


def _prior_scores(train_counts: Tensor, pool_ids: Tensor) -> Tensor:
    """(T,) float64 training count of each pool text; ids outside ``train_counts`` count 0.

    Args:
        train_counts: (R,) training pairs per report id. pool_ids: (T,) report ids.
    """
    counts = train_counts.to(device=pool_ids.device, dtype=torch.float64)
    if counts.numel() == 0:
        return torch.zeros(pool_ids.shape, dtype=torch.float64, device=pool_ids.device)
    seen = (pool_ids >= 0) & (pool_ids < counts.numel())
    return torch.where(seen, counts[pool_ids.clamp(0, counts.numel() - 1)], 0.0)


def _rank_metrics(found: dict[str, Tensor], ks: tuple[int, ...], prefix: str
                  ) -> dict[str, float]:
    """R@K and median rank of ``found["ranks"]``, semantic and clinical R@K where present."""
    metrics = _recall(found["ranks"], ks, prefix)
    metrics[f"{prefix}median_rank"] = float(found["ranks"].median().item())
    for kind in RELEVANCE_KINDS:
        if f"{kind}_ranks" in found:
            metrics |= _recall(found[f"{kind}_ranks"], ks, f"{prefix}{kind}_")
    return metrics


def _hit_chances(found: dict[str, Tensor], ks: tuple[int, ...], prefix: str,
                 num_candidates: int) -> dict[str, float]:
    """``chance_{prefix}{kind}_R@K`` of every kind whose hits ``found`` holds."""
    return {f"chance_{prefix}{kind}_R@{k}": _chance(found[f"{kind}_hits"], num_candidates, k)
            for kind in RELEVANCE_KINDS if f"{kind}_hits" in found for k in ks}


def _semantic_masks(similarity: SimilarityFn, threshold: float, report_ids: Tensor,
                    pool_ids: Tensor, pool_of: Tensor) -> tuple[MaskFn, MaskFn]:
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


def _rows_at(table: Tensor, ids: Tensor) -> Tensor:
    """``table[ids]`` on ``ids``' device, rows of -1 for ids outside ``table``.

    Args:
        table: (n,) or (n, W) integer classes. ids: (m,) integer ids.

    Returns:
        (m,) or (m, W) int64.
    """
    table = table.to(device=ids.device, dtype=torch.long)
    if table.shape[0] == 0:
        return torch.full((ids.numel(), *table.shape[1:]), -1, dtype=torch.long,
                          device=ids.device)
    inside = (ids >= 0) & (ids < table.shape[0])
    rows = table[ids.clamp(0, table.shape[0] - 1)]
    return torch.where(inside.view(-1, *[1] * (rows.ndim - 1)), rows, -1)


def _clinical_masks(truth: ClinicalTruth, sample_ids: Tensor, pool_ids: Tensor
                    ) -> tuple[MaskFn, MaskFn]:
    """Chunk → (c, T) and (c, N) masks of the texts and images that describe the same
    findings: the image's class is one of the text's classes (unknown classes match nothing).

    Args:
        sample_ids: (N,) sample id of each image. pool_ids: (T,) report id of each pool text.
    """
    image_class = _rows_at(truth.pair_classes, sample_ids)  # (N,)
    pool_classes = _rows_at(truth.report_classes, pool_ids)  # (T, W)
    known = image_class >= 0

    def image_to_text(sl: slice) -> Tensor:
        query = image_class[sl]
        same = (pool_classes[None, :, :] == query[:, None, None]).any(dim=2)
        return same & known[sl, None]

    def text_to_image(sl: slice) -> Tensor:
        same = (pool_classes[sl, :, None] == image_class[None, None, :]).any(dim=1)
        return same & known[None, :]

    return image_to_text, text_to_image


def retrieval_metrics(image_emb: Tensor, text_emb: Tensor, report_ids: Tensor,
                      sample_ids: Tensor, ks: tuple[int, ...] = (1, 5, 10),
                      similarity: SimilarityFn | None = None,
                      semantic_threshold: float = 0.5, chunk_size: int = 1024,
                      train_counts: Tensor | None = None,
                      truth: ClinicalTruth | None = None) -> RetrievalResult:
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
        train_counts: optional (R,) training pairs per report id (index = report id; ids
            outside it count 0); enables the frequency prior.
        truth: optional classes of what each pair shows (index = sample id) and each
            report id carries; enables clinical R@K.

    Returns:
        A :class:`RetrievalResult`. Metric keys: ``i2t_R@K``, ``i2t_median_rank``,
        ``t2i_R@K``, ``t2i_median_rank``, with ``similarity`` also ``i2t_semantic_R@K`` and
        ``t2i_semantic_R@K``; ``chance_i2t_R@K`` = min(1, K / T), ``chance_t2i_R@K`` (the
        exact expectation under a random image order), with ``similarity`` also
        ``chance_i2t_semantic_R@K`` and ``chance_t2i_semantic_R@K``; with ``train_counts``
        ``prior_i2t_R@K``, ``prior_i2t_median_rank`` (and, with ``similarity``,
        ``prior_i2t_semantic_R@K``); with ``truth`` ``i2t_clinical_R@K``,
        ``t2i_clinical_R@K``, ``chance_i2t_clinical_R@K``, ``chance_t2i_clinical_R@K`` and
        (with ``train_counts``) ``prior_i2t_clinical_R@K``; ``num_queries_i2t`` (N),
        ``num_queries_t2i`` and ``num_texts`` (T).
    """
    _validate(image_emb, text_emb, report_ids, sample_ids, ks, chunk_size)
    if train_counts is not None:
        _validate_counts(train_counts)
    if truth is not None:
        _validate_truth(truth)
    device = image_emb.device
    sample_ids, image, text, report_ids = deduplicate(
        sample_ids.to(device), image_emb.float(), text_emb.to(device).float(),
        report_ids.to(device))
    keep, pool_of = _first_occurrence(report_ids)  # pool_of: (N,) each image's pool slot
    pool_ids, pool_text = report_ids[keep], text[keep]
    n, t = image.shape[0], pool_text.shape[0]
    k_max = max(ks)
    slots = torch.arange(t, device=device)

    i2t_relevant: dict[str, MaskFn] = {}
    t2i_relevant: dict[str, MaskFn] = {}
    if similarity is not None:
        i2t_relevant["semantic"], t2i_relevant["semantic"] = _semantic_masks(
            similarity, semantic_threshold, report_ids, pool_ids, pool_of)
    if truth is not None:
        i2t_relevant["clinical"], t2i_relevant["clinical"] = _clinical_masks(
            truth, sample_ids, pool_ids)
    prior = _prior_scores(train_counts, pool_ids) if train_counts is not None else None
    i2t = _rank_direction(image, pool_text, lambda sl: pool_of[sl, None] == slots[None, :],
                          i2t_relevant, min(k_max, t), chunk_size, prior)
    t2i = _rank_direction(pool_text, image, lambda sl: slots[sl, None] == pool_of[None, :],
                          t2i_relevant, min(k_max, n), chunk_size)

    metrics = _rank_metrics(i2t, ks, "i2t_") | _rank_metrics(t2i, ks, "t2i_")
    group_sizes = torch.bincount(pool_of, minlength=t)
    metrics |= {f"chance_i2t_R@{k}": min(1.0, k / t) for k in ks}
    metrics |= {f"chance_t2i_R@{k}": _chance(group_sizes, n, k) for k in ks}
    metrics |= _hit_chances(i2t, ks, "i2t_", t) | _hit_chances(t2i, ks, "t2i_", n)
    if prior is not None:
        metrics |= _rank_metrics({k.removeprefix("prior_"): v for k, v in i2t.items()
                                  if k.startswith("prior_")}, ks, "prior_i2t_")
    metrics |= {"num_queries_i2t": float(n), "num_queries_t2i": float(t), "num_texts": float(t)}

    pool_ids_cpu, sample_ids_cpu = pool_ids.cpu(), sample_ids.cpu()
    return RetrievalResult(
        metrics=metrics,
        image_to_text_topk=pool_ids_cpu[i2t["topk"]], image_to_text_scores=i2t["scores"],
        text_to_image_topk=sample_ids_cpu[t2i["topk"]], text_to_image_scores=t2i["scores"],
        text_query_ids=pool_ids_cpu, image_query_ids=sample_ids_cpu,
        image_to_text_ranks=i2t["ranks"].cpu(), text_to_image_ranks=t2i["ranks"].cpu())


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


def retrieval_summary(metrics: Mapping[str, float], prefix: str = "val/") -> list[str]:
    """The end-of-run table: each retrieval figure beside its uniform chance and the
    frequency prior (no model), so a reader sees at once whether the model beats the
    trivial rankings; then every other ``prefix`` metric. ``-`` where a baseline does not
    apply (the prior ranks texts for images only)."""
    figures = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
    baselines = {k for k in figures if k.startswith(("chance_", "prior_"))}
    rows = sorted(k for k in figures if f"chance_{k}" in figures or f"prior_{k}" in figures)

    def cell(key: str) -> str:
        return f"{figures[key]:8.4f}" if key in figures else f"{'-':>8}"

    lines = [f"  {'retrieval':28s} {'model':>8} {'chance':>8} {'prior':>8}"]
    lines += [f"  {key:28s} {cell(key)} {cell('chance_' + key)} {cell('prior_' + key)}"
              for key in rows]
    rest = sorted(set(figures) - set(rows) - baselines)
    # The other metrics keep their full names, as TensorBoard shows them.
    lines += [f"  {prefix + key:28s} {figures[key]:8.4f}" for key in rest]
    return lines if rows else [f"  {prefix + key:28s} {figures[key]:8.4f}"
                               for key in sorted(figures)]
