"""The SeLIP loss (docs/design.md §4): CLIP cross-entropy plus a KL term towards report similarity.

For a batch of N pairs with logits Z (N, N) (row i: image i against every text) and the
report-similarity submatrix S (N, N):

    L = ½[CE(Z, P) + CE(Zᵀ, P)] + λ · ½[KL(Q ‖ softmax Z) + KL(Q ‖ softmax Zᵀ)]

P spreads each row uniformly over its positives (its own pair plus every sample with the
same report text), Q normalises the rows of S, and Q and both softmaxes are clamped to
[ε, 1] before the KL (the authors' numerics). λ = 0 is plain CLIP, computed by the very same
cross-entropy code, so the baseline and SeLIP differ only by the KL term.

Everything here is a pure function of tensors: no Lightning, no state. Every loss is written
in its row-local form (``selip_loss_local``): this rank's b rows against the N gathered
columns (docs/design.md §5); ``selip_loss`` is the one-process case b = N, offset 0. Each part is
a mean over rows, so the mean of the local losses over equal-sized ranks is the global loss.

S is assumed symmetric (a report similarity is) and so are the positives (a same-text
relation is): under DDP a rank only holds its rows of S and P, which then serve for the
rows of Z and of Zᵀ alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NORMS = ("linear", "softmax")


@dataclass
class LossParts:
    """The scalar parts of one loss evaluation (each a 0-dim tensor).

    Attributes:
        total: ``ce + kl_weight * kl`` (exactly ``ce`` when ``kl_weight == 0``).
        ce: ½[CE(Z, P) + CE(Zᵀ, P)].
        kl: ½[KL(Q ‖ softmax Z) + KL(Q ‖ softmax Zᵀ)]; 0 (not computed) when ``kl_weight == 0``.
        soft_target_entropy: mean entropy (nats) of the unclamped Q rows, for logging; 0 when
            ``kl_weight == 0``. Detached.
    """

    total: Tensor
    ce: Tensor
    kl: Tensor
    soft_target_entropy: Tensor


# --------------------------------------------------------------------------------------
# targets


def positives_from_ids(row_ids: Tensor, column_ids: Tensor) -> Tensor:
    """Same report text ⇒ positive.

    Args:
        row_ids: (b,) int64 report ids of the rows (this rank's samples).
        column_ids: (N,) int64 report ids of the columns (the gathered batch).

    Returns:
        (b, N) bool, ``row_ids[i] == column_ids[j]``.
    """
    if row_ids.dim() != 1 or column_ids.dim() != 1:
        raise ValueError(
            f"report ids must be 1-D, got shapes {tuple(row_ids.shape)} and "
            f"{tuple(column_ids.shape)}"
        )
    return row_ids[:, None] == column_ids[None, :]


def hard_targets(positives: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """P: each row spread uniformly over its positives.

    Args:
        positives: (b, N) bool.
        dtype: floating dtype of the result.

    Returns:
        (b, N) rows summing to 1, ``1 / count`` on each positive.
    """
    _check_positives(positives, positives.shape)
    counts = positives.sum(dim=1, keepdim=True)
    # A row without a positive has no CLIP target at all: that is a caller bug (a wrong
    # row_offset, ids from another batch), so say so instead of returning NaN rows.
    empty = (counts == 0).flatten().nonzero().flatten()
    if empty.numel() > 0:
        raise ValueError(f"positives rows {empty.tolist()} have no positive column")
    return positives.to(dtype) / counts.to(dtype)


def soft_targets(similarity: Tensor, norm: str = "linear", temperature: float = 0.1,
                 include_diagonal: bool = True, positives: Tensor | None = None,
                 row_offset: int = 0) -> Tensor:
    """Q from the rows of S.

    ``linear``: S / rowsum(S) (the authors); ``softmax``: softmax(S / temperature).
    ``include_diagonal=False`` excludes each row's own pair — column ``row_offset + i`` for row
    i — and, when ``positives`` is given, every positive of the row too (a duplicate of the
    report is the same text, i.e. the diagonal of the report-level S). Excluded entries are
    set to 0 before linear normalisation and to -inf before the softmax. A row whose remaining
    S sums to ≤ 0 (e.g. a normal report, S = 0 to every other report) gets an all-zero Q row,
    with either norm: it carries no similarity information, and contributes 0 KL.

    Args:
        similarity: (b, N) rows of S, expected in [0, 1].
        norm: "linear" or "softmax".
        temperature: softmax temperature τ (> 0), unused by "linear".
        include_diagonal: keep the own pair (and duplicates) in Q.
        positives: (b, N) bool, the positives excluded along with the own pair.
        row_offset: global index of row 0 (rank · b under DDP).

    Returns:
        (b, N) floating; each row sums to 1 or is all zero.
    """
    _check_norm(norm, temperature)
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be 2-D (b, N), got shape {tuple(similarity.shape)}")
    _check_offset(row_offset, similarity.shape)
    s = similarity if similarity.is_floating_point() else similarity.float()
    excluded = None
    if not include_diagonal:
        excluded = _own_pairs(s.shape, row_offset, s.device)
        if positives is not None:
            _check_positives(positives, s.shape)
            excluded = excluded | positives
        s_kept = s.masked_fill(excluded, 0.0)
    else:
        s_kept = s
    rowsum = s_kept.sum(dim=1, keepdim=True)
    valid = rowsum > 0
    if norm == "linear":
        # where() rather than dividing by 0 and patching NaNs: keeps gradients finite.
        q = s_kept / torch.where(valid, rowsum, torch.ones_like(rowsum))
    else:
        scaled = s / temperature
        if excluded is not None:
            scaled = scaled.masked_fill(excluded, -math.inf)
        # An invalid row may be all -inf (softmax → NaN); feed it zeros, it is dropped below.
        q = torch.softmax(torch.where(valid, scaled, torch.zeros_like(scaled)), dim=1)
    return torch.where(valid, q, torch.zeros_like(q))


# --------------------------------------------------------------------------------------
# losses


def clip_loss(logits: Tensor, positives: Tensor | None = None) -> Tensor:
    """Plain CLIP: ½[CE(Z, P) + CE(Zᵀ, P)].

    Args:
        logits: (B, B) image→text logits Z.
        positives: (B, B) bool, symmetric (samples sharing a report text are positives of
            each other); identity when None.

    Returns:
        0-dim loss, mean over rows.
    """
    positives = _square_positives(logits, positives)
    return _contrastive_ce(logits, logits.T, positives)


def selip_loss(logits: Tensor, similarity: Tensor, kl_weight: float = 1.0, eps: float = 1e-3,
               norm: str = "linear", temperature: float = 0.1, include_diagonal: bool = True,
               symmetric_kl: bool = False, positives: Tensor | None = None) -> LossParts:
    """The SeLIP loss on a whole (gathered) batch, docs/design.md §4.

    L = ½[CE(Z,P) + CE(Zᵀ,P)] + λ·½[KL(Q‖softmax Z) + KL(Q‖softmax Zᵀ)], with Q and both
    softmaxes clamped to [eps, 1] and KL ``batchmean`` (sum / number of rows), i.e.
    ``F.kl_div(log(clamp(softmax Z)), clamp(Q), reduction="batchmean")``. ``symmetric_kl``
    uses ½[KL(Q‖p) + KL(p‖Q)] per direction. ``kl_weight == 0`` gives exactly
    :func:`clip_loss` (the KL is not computed).

    Args:
        logits: (B, B) image→text logits Z.
        similarity: (B, B) submatrix of S for the batch's reports (symmetric).
        kl_weight: λ ≥ 0.
        eps: clamp floor, in (0, 1).
        norm: how S becomes Q (:func:`soft_targets`).
        temperature: τ of the ``softmax`` norm (:func:`soft_targets`).
        include_diagonal: keep each row's own S (:func:`soft_targets`).
        symmetric_kl: symmetrise each KL direction.
        positives: (B, B) bool, symmetric; identity when None. Pass
            ``positives_from_ids(ids, ids)`` to treat duplicate reports as positives.

    Returns:
        :class:`LossParts` of 0-dim tensors.
    """
    positives = _square_positives(logits, positives)
    return selip_loss_local(logits, logits.T, similarity, positives, 0, kl_weight=kl_weight,
                            eps=eps, norm=norm, temperature=temperature,
                            include_diagonal=include_diagonal, symmetric_kl=symmetric_kl)


def selip_loss_local(image_logits: Tensor, text_logits: Tensor, similarity: Tensor,
                     positives: Tensor, row_offset: int, kl_weight: float = 1.0,
                     eps: float = 1e-3, norm: str = "linear", temperature: float = 0.1,
                     include_diagonal: bool = True, symmetric_kl: bool = False) -> LossParts:
    """The DDP form (docs/design.md §5): this rank's b rows against the N gathered columns.

    Every part is a mean over this rank's b rows, so with equal b on every rank the mean of
    the local losses over ranks equals :func:`selip_loss` on the gathered batch.

    Args:
        image_logits: (b, N) = s · img_local @ txt_allᵀ, rows ``row_offset..row_offset+b``
            of Z.
        text_logits: (b, N) = s · txt_local @ img_allᵀ, the same rows of Zᵀ.
        similarity: (b, N) = S_g[rows] (S symmetric, so these rows serve Zᵀ as well).
        positives: (b, N) bool, e.g. ``positives_from_ids(ids_local, ids_all)``.
        row_offset: global index of this rank's first row (rank · b).
        kl_weight: λ ≥ 0 (:func:`selip_loss`).
        eps: clamp floor, in (0, 1).
        norm: how S becomes Q (:func:`soft_targets`).
        temperature: τ of the ``softmax`` norm.
        include_diagonal: keep each row's own S.
        symmetric_kl: symmetrise each KL direction.

    Returns:
        :class:`LossParts` of 0-dim tensors.
    """
    _check_local(image_logits, text_logits, similarity, positives, row_offset)
    _check_norm(norm, temperature)
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
    # Compute in at least float32: under autocast the logits may be half precision, and the
    # log-clamp at log(eps) and the KL sums want the extra mantissa.
    dtype = torch.promote_types(image_logits.dtype, torch.float32)
    image_logits, text_logits = image_logits.to(dtype), text_logits.to(dtype)
    ce = _contrastive_ce(image_logits, text_logits, positives)
    zero = ce.new_zeros(())
    if kl_weight == 0:
        return LossParts(total=ce, ce=ce, kl=zero, soft_target_entropy=zero)
    q = soft_targets(similarity.to(dtype), norm=norm, temperature=temperature,
                     include_diagonal=include_diagonal, positives=positives,
                     row_offset=row_offset)
    kl = 0.5 * (_clamped_kl(q, image_logits, eps, symmetric_kl)
                + _clamped_kl(q, text_logits, eps, symmetric_kl))
    entropy = torch.special.entr(q.detach()).sum(dim=1).mean()
    return LossParts(total=ce + kl_weight * kl, ce=ce, kl=kl, soft_target_entropy=entropy)


def _contrastive_ce(image_logits: Tensor, text_logits: Tensor, positives: Tensor) -> Tensor:
    """½[CE(image rows, P) + CE(text rows, P)], each a mean over the b rows; (b, N) inputs."""
    targets = hard_targets(positives, dtype=image_logits.dtype)
    # Probability targets: identical to class-index CE when P is the identity, and spread
    # over duplicates otherwise. P is symmetric, so the same rows serve Zᵀ.
    return 0.5 * (F.cross_entropy(image_logits, targets)
                  + F.cross_entropy(text_logits, targets))


def _clamped_kl(q: Tensor, logits: Tensor, eps: float, symmetric: bool) -> Tensor:
    """KL(clamp Q ‖ clamp softmax logits), ``batchmean`` over the b rows; (b, N) inputs.

    Rows of Q that are all zero (no similarity information) contribute 0 but still count in
    the denominator, so a rank's share of the global mean does not depend on other ranks.
    """
    log_eps = math.log(eps)
    # log(clamp(softmax z, eps, 1)) == clamp(log_softmax z, log eps, 0), without ever taking
    # the log of an underflowed probability; the clamp kills the gradient where it is active,
    # exactly as clamping the probabilities does.
    log_p = F.log_softmax(logits, dim=1).clamp(min=log_eps, max=0.0)
    q_clamped = q.clamp(min=eps, max=1.0)
    log_q = q_clamped.log()
    per_row = (q_clamped * (log_q - log_p)).sum(dim=1)
    if symmetric:
        per_row = 0.5 * (per_row + (log_p.exp() * (log_p - log_q)).sum(dim=1))
    valid = (q.sum(dim=1) > 0).to(per_row.dtype)
    return (per_row * valid).sum() / q.shape[0]


# --------------------------------------------------------------------------------------
# validation


def _own_pairs(shape: torch.Size, row_offset: int, device: torch.device) -> Tensor:
    """(b, N) bool, True at (i, row_offset + i): each row's own pair."""
    rows = torch.arange(shape[0], device=device)
    columns = torch.arange(shape[1], device=device)
    return columns[None, :] == rows[:, None] + row_offset


def _square_positives(logits: Tensor, positives: Tensor | None) -> Tensor:
    """Validate square logits (B, B); default positives = identity (B, B) bool."""
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be square (B, B), got shape {tuple(logits.shape)}")
    if positives is None:
        return torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    _check_positives(positives, logits.shape)
    # The Zᵀ direction reuses P's rows, which is only right for a symmetric relation.
    if not torch.equal(positives, positives.T):
        raise ValueError("positives must be symmetric (a same-report relation is)")
    return positives


def _check_positives(positives: Tensor, shape: torch.Size) -> None:
    if positives.dtype != torch.bool:
        raise ValueError(f"positives must be a bool tensor, got dtype {positives.dtype}")
    if positives.shape != shape:
        raise ValueError(
            f"positives shape {tuple(positives.shape)} does not match {tuple(shape)}"
        )


def _check_offset(row_offset: int, shape: torch.Size) -> None:
    if not 0 <= row_offset <= shape[1] - shape[0]:
        raise ValueError(
            f"row_offset {row_offset} out of range for {shape[0]} rows of {shape[1]} columns"
        )


def _check_norm(norm: str, temperature: float) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_local(image_logits: Tensor, text_logits: Tensor, similarity: Tensor,
                 positives: Tensor, row_offset: int) -> None:
    """All (b, N) with b ≤ N and ``0 ≤ row_offset ≤ N - b``."""
    if image_logits.dim() != 2:
        raise ValueError(f"image_logits must be 2-D (b, N), got {tuple(image_logits.shape)}")
    shape = image_logits.shape
    for name, tensor in (("text_logits", text_logits), ("similarity", similarity)):
        if tensor.shape != shape:
            raise ValueError(
                f"{name} shape {tuple(tensor.shape)} does not match image_logits "
                f"{tuple(shape)}"
            )
    _check_positives(positives, shape)
    _check_offset(row_offset, shape)
