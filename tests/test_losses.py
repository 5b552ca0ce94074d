"""The SeLIP loss (docs/design.md §4) against values worked out by hand.

The 3×3 cases use one logits matrix Z and one similarity S throughout; their softmax rows,
targets and KL rows are written in the comments. The pure-Python helpers below (math only,
no torch losses) are the "by hand" arithmetic for the variants.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from selip.losses import (
    LossParts,
    clip_loss,
    hard_targets,
    positives_from_ids,
    selip_loss,
    selip_loss_local,
    soft_targets,
)

E = math.e
# Z (image→text rows) and its transpose:
#   Z  = [[1, 0, 0],     Zᵀ = [[1, 1, 0],
#         [1, 1, 0],           [0, 1, 0],
#         [0, 0, 0]]           [0, 0, 0]]
# softmax rows:  (1,0,0) → [e, 1, 1]/(e+2) = [.5761, .2119, .2119]
#                (1,1,0) → [e, e, 1]/(2e+1) = [.4223, .4223, .1554]
#                (0,1,0) → [1, e, 1]/(e+2) = [.2119, .5761, .2119]
#                (0,0,0) → [1/3, 1/3, 1/3]
Z = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
# S symmetric, diagonal 1:
#   S = [[1, .5, 0], [.5, 1, .25], [0, .25, 1]]
# linear Q = S / rowsum: [2/3, 1/3, 0], [2/7, 4/7, 1/7], [0, 1/5, 4/5]
S = [[1.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 1.0]]


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def transpose(rows: list[list[float]]) -> list[list[float]]:
    return [list(column) for column in zip(*rows, strict=True)]


def softmax_row(row: list[float]) -> list[float]:
    total = sum(math.exp(x) for x in row)
    return [math.exp(x) / total for x in row]


def kl_row(q: list[float], logits: list[float], eps: float, symmetric: bool = False) -> float:
    """KL(clamp q ‖ clamp softmax logits) of one row, by hand; ½[KL(q‖p)+KL(p‖q)] if symmetric."""
    qc = [min(max(a, eps), 1.0) for a in q]
    pc = [min(max(b, eps), 1.0) for b in softmax_row(logits)]
    forward = sum(a * (math.log(a) - math.log(b)) for a, b in zip(qc, pc, strict=True))
    if not symmetric:
        return forward
    reverse = sum(b * (math.log(b) - math.log(a)) for a, b in zip(qc, pc, strict=True))
    return 0.5 * (forward + reverse)


def kl_both(q: list[list[float]], logits: list[list[float]], eps: float = 1e-3,
            symmetric: bool = False, valid: list[bool] | None = None) -> float:
    """½[KL over Z rows + KL over Zᵀ rows], batchmean over all rows, invalid rows 0."""
    n = len(q)
    valid = valid or [True] * n
    rows = [kl_row(q[i], logits[i], eps, symmetric) * valid[i] for i in range(n)]
    rows_t = [kl_row(q[i], transpose(logits)[i], eps, symmetric) * valid[i] for i in range(n)]
    return 0.5 * (sum(rows) / n + sum(rows_t) / n)


# --------------------------------------------------------------------------------------
# targets


def test_positives_from_ids_marks_same_report():
    got = positives_from_ids(torch.tensor([7, 3]), torch.tensor([3, 7, 7, 5]))
    assert got.dtype == torch.bool
    assert got.tolist() == [[False, True, True, False], [True, False, False, False]]


def test_hard_targets_spread_over_duplicates():
    # ids [7, 7, 3]: rows 0 and 1 share a report → ½ on each other, row 2 alone → 1.
    ids = torch.tensor([7, 7, 3])
    got = hard_targets(positives_from_ids(ids, ids))
    assert torch.equal(got, torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))


def test_hard_targets_row_without_positive_is_an_error():
    positives = torch.tensor([[True, False], [False, False]])
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        hard_targets(positives)


def test_soft_targets_linear_hand_values():
    # Q = S / rowsum(S), rows as in the header comment.
    want = t([[2 / 3, 1 / 3, 0.0], [2 / 7, 4 / 7, 1 / 7], [0.0, 0.2, 0.8]])
    torch.testing.assert_close(soft_targets(t(S)), want)


def test_soft_targets_softmax_hand_values():
    # softmax(S / 0.1): row 0 = [e^10, e^5, e^0] / (e^10 + e^5 + 1), etc.
    want = [softmax_row([x / 0.1 for x in row]) for row in S]
    torch.testing.assert_close(soft_targets(t(S), norm="softmax", temperature=0.1), t(want))


def test_soft_targets_without_diagonal_hand_values():
    # Diagonal set to 0 then normalised: [0, .5, 0] → [0, 1, 0]; [.5, 0, .25] → [2/3, 0, 1/3];
    # [0, .25, 0] → [0, 1, 0].
    want = t([[0.0, 1.0, 0.0], [2 / 3, 0.0, 1 / 3], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(soft_targets(t(S), include_diagonal=False), want)
    # softmax: the diagonal is -inf, so row 0 = softmax over (.5, 0)/0.1 on columns 1, 2.
    got = soft_targets(t(S), norm="softmax", temperature=0.1, include_diagonal=False)
    row0 = softmax_row([5.0, 0.0])
    torch.testing.assert_close(got[0], t([[0.0, *row0]])[0])
    assert torch.all(got.diagonal() == 0)


def test_soft_targets_without_diagonal_uses_row_offset_and_positives():
    # Rows 2..3 of a 4-column batch: own pairs are columns 2 and 3. Row 0 (global 2) also has
    # a duplicate at column 0, excluded along with its own pair when positives are given.
    sim = t([[1.0, 0.2, 1.0, 0.6], [0.4, 0.2, 0.6, 1.0]])
    got = soft_targets(sim, include_diagonal=False, row_offset=2)
    torch.testing.assert_close(got, t([[1 / 1.8, 0.2 / 1.8, 0.0, 0.6 / 1.8],
                                       [0.4 / 1.2, 0.2 / 1.2, 0.6 / 1.2, 0.0]]))
    positives = positives_from_ids(torch.tensor([9, 4]), torch.tensor([9, 5, 9, 4]))
    got = soft_targets(sim, include_diagonal=False, row_offset=2, positives=positives)
    torch.testing.assert_close(got[0], t([[0.0, 0.25, 0.0, 0.75]])[0])


@pytest.mark.parametrize("norm", ["linear", "softmax"])
def test_soft_targets_zero_row_gets_zero_q(norm):
    # A normal report: S = 0 to every other report; without the diagonal nothing remains.
    sim = t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.5, 1.0]])
    got = soft_targets(sim, norm=norm, include_diagonal=False)
    assert torch.all(got[0] == 0)
    torch.testing.assert_close(got[1:].sum(dim=1), t([[1.0, 1.0]])[0])
    assert torch.isfinite(got).all()


# --------------------------------------------------------------------------------------
# CLIP part


def test_clip_loss_hand_value():
    # Identity targets. Z rows: -log softmax at the diagonal:
    #   (1,0,0)@0: log(e+2) - 1;  (1,1,0)@1: log(2e+1) - 1;  (0,0,0)@2: log 3
    # Zᵀ rows: (1,1,0)@0: log(2e+1) - 1;  (0,1,0)@1: log(e+2) - 1;  (0,0,0)@2: log 3
    # Both means are equal: [log(e+2) + log(2e+1) + log 3 - 2] / 3 = 0.837350602...
    want = (math.log(E + 2) + math.log(2 * E + 1) + math.log(3) - 2) / 3
    assert clip_loss(t(Z)).item() == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(0.8373506022194706, abs=1e-12)


def test_clip_loss_duplicates_hand_value():
    # ids [7, 7, 3] → P rows [½,½,0], [½,½,0], [0,0,1].
    # Z rows:  (1,0,0): -½(1 - l) - ½(0 - l) = l - ½ with l = log(e+2)
    #          (1,1,0): -½(1 - l) - ½(1 - l) = l - 1 with l = log(2e+1)
    #          (0,0,0): log 3
    # Zᵀ rows: (1,1,0): log(2e+1) - 1;  (0,1,0): -½(0 - l) - ½(1 - l) = log(e+2) - ½;  log 3
    # → [log(e+2) + log(2e+1) + log 3 - 3/2] / 3 = 1.004017268...
    ids = torch.tensor([7, 7, 3])
    want = (math.log(E + 2) + math.log(2 * E + 1) + math.log(3) - 1.5) / 3
    got = clip_loss(t(Z), positives_from_ids(ids, ids))
    assert got.item() == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(1.0040172688861373, abs=1e-12)


def test_kl_weight_zero_is_exactly_clip_and_textbook_clip():
    torch.manual_seed(0)
    logits = torch.randn(7, 7) * 3
    sim = torch.rand(7, 7)
    parts = selip_loss(logits, sim, kl_weight=0.0)
    assert torch.equal(parts.total, clip_loss(logits))
    assert torch.equal(parts.total, parts.ce)
    assert parts.kl.item() == 0.0 and parts.soft_target_entropy.item() == 0.0
    labels = torch.arange(7)
    textbook = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(parts.total, textbook)


# --------------------------------------------------------------------------------------
# KL part


def test_selip_loss_hand_value_default():
    # Linear Q (header). All softmax entries are ≥ .155 > ε, Q's zeros clamp to ε = 1e-3.
    # KL rows (Σ clamp(q)·(log clamp(q) − log p)):
    #   Z:  .24291, .04915, .59240   Zᵀ: .22043, .02432, .59240
    # kl = ½[(.24291 + .04915 + .59240)/3 + (.22043 + .02432 + .59240)/3] = 0.286935366...
    ce = (math.log(E + 2) + math.log(2 * E + 1) + math.log(3) - 2) / 3
    q = [[2 / 3, 1 / 3, 0.0], [2 / 7, 4 / 7, 1 / 7], [0.0, 0.2, 0.8]]
    kl = kl_both(q, Z)
    assert kl == pytest.approx(0.2869353658611761, abs=1e-12)
    parts = selip_loss(t(Z), t(S))
    assert isinstance(parts, LossParts)
    assert parts.ce.item() == pytest.approx(ce, abs=1e-12)
    assert parts.kl.item() == pytest.approx(kl, abs=1e-12)
    assert parts.total.item() == pytest.approx(ce + kl, abs=1e-12)
    # entropy of the Q rows: H(2/3,1/3), H(2/7,4/7,1/7), H(1/5,4/5), mean of the three.
    entropies = [-sum(x * math.log(x) for x in row if x > 0) for row in q]
    assert parts.soft_target_entropy.item() == pytest.approx(sum(entropies) / 3, abs=1e-12)


def test_selip_loss_matches_kl_div_formula_and_weight():
    # The spec's formula: F.kl_div(log(clamp(softmax Z)), clamp(Q), reduction='batchmean').
    torch.manual_seed(1)
    logits, sim = torch.randn(5, 5, dtype=torch.float64) * 4, torch.rand(5, 5).double()
    sim = (sim + sim.T) / 2
    sim.fill_diagonal_(1.0)
    q = (sim / sim.sum(1, keepdim=True)).clamp(1e-3, 1)
    want = 0.5 * sum(F.kl_div(torch.softmax(z, 1).clamp(1e-3, 1).log(), q, reduction="batchmean")
                     for z in (logits, logits.T))
    parts = selip_loss(logits, sim, kl_weight=0.3)
    torch.testing.assert_close(parts.kl, want)
    torch.testing.assert_close(parts.total, parts.ce + 0.3 * want)


def test_identity_similarity_with_peaked_logits_gives_zero_kl():
    # S = I → Q = I, clamped to [1, ε, ε] per row. Z = 50·I: softmax = [1 − 2δ, δ, δ] with
    # δ = e^-50, clamped to [1 − 2δ, ε, ε]. KL row = 1·(0 − log(1 − 2δ)) + 2·ε·(log ε − log ε)
    # ≈ 2δ ≈ 4e-22: the matching ε floors cancel, so the KL is 0 and gives no gradient to the
    # off-diagonal logits (their clamp is active).
    logits = (50 * torch.eye(3, dtype=torch.float64)).requires_grad_()
    parts = selip_loss(logits, torch.eye(3, dtype=torch.float64))
    assert abs(parts.kl.item()) < 1e-20
    parts.kl.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad.abs() < 1e-20)


def test_identity_similarity_kl_is_ce_plus_floor_terms():
    # S = I, softmax entries all ≥ ε: KL row i = −log p_ii + ε·Σ_{j≠i}(log ε − log p_ij);
    # for Z the diagonal sum is the CE row, so kl = ce + ε-terms (by hand below).
    eps = 1e-3
    extra = 0.0
    for logits in (Z, transpose(Z)):
        for i, row in enumerate(logits):
            p = softmax_row(row)
            extra += 0.5 / 3 * sum(eps * (math.log(eps) - math.log(p[j]))
                                   for j in range(3) if j != i)
    parts = selip_loss(t(Z), torch.eye(3, dtype=torch.float64), eps=eps)
    assert parts.kl.item() == pytest.approx(parts.ce.item() + extra, abs=1e-12)


def test_softmax_norm_hand_value():
    q = [softmax_row([x / 0.2 for x in row]) for row in S]
    parts = selip_loss(t(Z), t(S), norm="softmax", temperature=0.2)
    assert parts.kl.item() == pytest.approx(kl_both(q, Z), abs=1e-12)


def test_without_diagonal_hand_value():
    # Q rows [0, 1, 0], [2/3, 0, 1/3], [0, 1, 0] (see test_soft_targets_without_diagonal).
    q = [[0.0, 1.0, 0.0], [2 / 3, 0.0, 1 / 3], [0.0, 1.0, 0.0]]
    parts = selip_loss(t(Z), t(S), include_diagonal=False)
    assert parts.kl.item() == pytest.approx(kl_both(q, Z), abs=1e-12)


def test_symmetric_kl_hand_value():
    q = [[2 / 3, 1 / 3, 0.0], [2 / 7, 4 / 7, 1 / 7], [0.0, 0.2, 0.8]]
    parts = selip_loss(t(Z), t(S), symmetric_kl=True)
    assert parts.kl.item() == pytest.approx(kl_both(q, Z, symmetric=True), abs=1e-12)
    assert parts.kl.item() != pytest.approx(kl_both(q, Z), abs=1e-6)


def test_zero_similarity_row_is_excluded_from_kl():
    # Report 0 is normal: S = 0 to the others; without the diagonal its Q row is all zero and
    # its KL rows count 0 (but still 1/3 of the batchmean denominator).
    sim = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.5, 1.0]]
    q = [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    parts = selip_loss(t(Z), t(sim), include_diagonal=False)
    want = kl_both(q, Z, valid=[False, True, True])
    assert parts.kl.item() == pytest.approx(want, abs=1e-12)
    assert math.isfinite(parts.total.item())


def test_low_precision_logits_are_computed_in_float32():
    logits = torch.randn(4, 4).to(torch.bfloat16)
    parts = selip_loss(logits, torch.eye(4))
    assert parts.total.dtype == torch.float32


# --------------------------------------------------------------------------------------
# gradients


def _random_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, n) float64 logits, symmetric S in [0.1, 1] with diagonal 1, positives of ids."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, n, generator=generator, dtype=torch.float64)
    sim = 0.1 + 0.9 * torch.rand(n, n, generator=generator, dtype=torch.float64)
    sim = (sim + sim.T) / 2
    sim.fill_diagonal_(1.0)
    ids = torch.tensor([0, 1, 2, 1, 3, 0][:n])
    return logits, sim, positives_from_ids(ids, ids)


@pytest.mark.parametrize("norm", ["linear", "softmax"])
@pytest.mark.parametrize("symmetric_kl", [False, True])
def test_gradcheck(norm, symmetric_kl):
    # eps = 1e-8 keeps every clamp inactive: the smallest Q entry is ≥ 0.1/6 (linear) or
    # e^-9/6 (softmax, τ = 0.1), and softmax of N(0, 1) logits over 6 columns is ≫ 1e-8.
    logits, sim, positives = _random_problem(6, seed=2)
    logits.requires_grad_()

    def loss(z: torch.Tensor) -> torch.Tensor:
        return selip_loss(z, sim, eps=1e-8, norm=norm, symmetric_kl=symmetric_kl,
                          positives=positives).total

    assert torch.autograd.gradcheck(loss, (logits,))


# --------------------------------------------------------------------------------------
# the row-local (DDP) form


@pytest.mark.parametrize("blocks", [2, 3])
@pytest.mark.parametrize("options", [
    {},
    {"norm": "softmax", "include_diagonal": False, "symmetric_kl": True, "kl_weight": 0.5},
])
def test_local_blocks_average_to_global(blocks, options):
    # 6 samples, ids [0, 1, 2, 1, 3, 0]: duplicates span the blocks. Each block is one
    # "rank": its rows against all columns, offset = block · b.
    n, dim, scale = 6, 4, 5.0
    generator = torch.Generator().manual_seed(3)
    img = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    txt = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    img = F.normalize(img, dim=1).requires_grad_()
    txt = F.normalize(txt, dim=1).requires_grad_()
    _, sim, _ = _random_problem(n, seed=4)
    ids = torch.tensor([0, 1, 2, 1, 3, 0])

    full = selip_loss(scale * img @ txt.T, sim, positives=positives_from_ids(ids, ids),
                      **options)
    want_grads = torch.autograd.grad(full.total, (img, txt))

    b = n // blocks
    parts = []
    for block in range(blocks):
        rows = slice(block * b, (block + 1) * b)
        parts.append(selip_loss_local(
            scale * img[rows] @ txt.T, scale * txt[rows] @ img.T, sim[rows],
            positives_from_ids(ids[rows], ids), row_offset=block * b, **options))
    for name in ("total", "ce", "kl", "soft_target_entropy"):
        mean = torch.stack([getattr(p, name) for p in parts]).mean()
        torch.testing.assert_close(mean, getattr(full, name), atol=1e-12, rtol=0)
    got_grads = torch.autograd.grad(torch.stack([p.total for p in parts]).mean(), (img, txt))
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"norm": "cosine"}, "norm must be one of"),
    ({"eps": 0.0}, "eps must be in"),
    ({"eps": 1.0}, "eps must be in"),
    ({"kl_weight": -0.1}, "kl_weight must be >= 0"),
    ({"temperature": 0.0}, "temperature must be > 0"),
])
def test_selip_loss_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        selip_loss(torch.zeros(3, 3), torch.eye(3), **kwargs)


def test_shape_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        selip_loss(torch.zeros(3, 4), torch.eye(3))
    with pytest.raises(ValueError, match=r"similarity shape \(2, 2\)"):
        selip_loss(torch.zeros(3, 3), torch.eye(2))
    with pytest.raises(ValueError, match=r"positives shape \(2, 2\)"):
        clip_loss(torch.zeros(3, 3), torch.eye(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        clip_loss(torch.zeros(3, 3), torch.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        clip_loss(torch.zeros(2, 2), torch.tensor([[True, True], [False, True]]))
    with pytest.raises(ValueError, match="1-D"):
        positives_from_ids(torch.zeros(2, 2), torch.zeros(2))


def test_local_form_rejects_bad_shapes_and_offsets():
    z, s, p = torch.zeros(2, 4), torch.ones(2, 4), torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"text_logits shape \(2, 3\)"):
        selip_loss_local(z, torch.zeros(2, 3), s, p, 0)
    with pytest.raises(ValueError, match="row_offset 3 out of range"):
        selip_loss_local(z, z, s, p, 3)
    with pytest.raises(ValueError, match="row_offset -1 out of range"):
        selip_loss_local(z, z, s, p, -1)
