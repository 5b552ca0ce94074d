"""How much mass the ε clamp adds to the soft targets Q, and whether renormalising matters.

The SeLIP KL (docs/design.md §4, the authors' formula, kept by the ``paper``
setting) is Σ_j clamp(Q_ij, ε, 1) · (log clamp(Q_ij, ε, 1) − log clamp(P_ij, ε, 1)). Every
entry of Q below ε is raised to ε, so a row of Q sums to 1 + m with

    m = Σ_j max(0, ε − Q_ij)  ≈  ε · (number of zero entries)  — it grows with the batch.

The minimiser of that KL over the simplex is P* = clamp(Q, ε) / (1 + m): a share m / (1 + m)
of the target is spread evenly over the unrelated pairs. Renormalising after the clamp
(KL towards clamp(Q, ε) / (1 + m)) has the same minimiser; where no P entry is clamped its
gradient is the unrenormalised one divided by 1 + m — the same direction, a smaller step.

For batches drawn from the training pairs of a demo cohort, at the demo's batch (32) and
the paper's global batch (64 per GPU × 8 = 512), with ``english`` and ``paper`` S, this
prints: m, the floor's share of the target, the target mass on the row's own report before
and after the clamp, and — at the logits of an untrained model (scale 14, random unit
embeddings) — the cosine and the norm ratio of the KL's gradient with and without
renormalising.

    .venv/bin/python benchmarks/eps_clamp.py [--manifest runs/learning/cohort/manifest.csv]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from selip.data.augment import AugmentSettings
from selip.data.datamodule import SelipDataModule
from selip.demo import generate_demo_cohort
from selip.losses import positives_from_ids, soft_targets

EPS = 1e-3  # the authors' ε, the default soft_target_eps
LOGIT_SCALE = 14.0  # the scale every demo run sits at


def clamped_kl_rows(q: torch.Tensor, logits: torch.Tensor, eps: float, renormalise: bool
                    ) -> torch.Tensor:
    """(b,) KL(clamp(Q, ε) [/ (1 + m)] ‖ clamp(softmax logits, ε)) per row, as the loss."""
    target = q.clamp(min=eps, max=1.0)
    if renormalise:
        target = target / target.sum(dim=1, keepdim=True)
    log_p = F.log_softmax(logits, dim=1).clamp(min=math.log(eps), max=0.0)
    return (target * (target.log() - log_p)).sum(dim=1)


def measure(q: torch.Tensor, eps: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per valid row (Q row not all zero) of a (N, N) Q: the clamp's mass and its effect."""
    valid = q.sum(dim=1) > 0
    q = q[valid]
    n = q.shape[1]
    mass = (eps - q).clamp(min=0.0).sum(dim=1)
    rows = torch.arange(n)[valid]
    own_before = q[torch.arange(len(rows)), rows]
    own_after = q.clamp(min=eps)[torch.arange(len(rows)), rows] / (1.0 + mass)
    embeddings = F.normalize(torch.randn(n, 128, generator=generator), dim=1)
    logits = (LOGIT_SCALE * embeddings @ embeddings.T)[valid].requires_grad_(True)
    grads = []
    for renormalise in (False, True):
        (grad,) = torch.autograd.grad(clamped_kl_rows(q, logits, eps, renormalise).sum(),
                                      logits)
        grads.append(grad)
    return {"mass": mass, "floor_share": mass / (1.0 + mass), "own_before": own_before,
            "own_after": own_after,
            "grad_cosine": F.cosine_similarity(grads[0], grads[1], dim=1),
            "grad_ratio": grads[1].norm(dim=1) / grads[0].norm(dim=1).clamp_min(1e-12),
            "one_over_1_plus_m": 1.0 / (1.0 + mass)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="runs/learning/cohort/manifest.csv")
    parser.add_argument("--cache_dir", default="runs/learning/cache")
    parser.add_argument("--exams", type=int, default=600,
                        help="cohort size when the manifest must be generated (600)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--draws", type=int, default=20, help="batches drawn per size (20)")
    args = parser.parse_args(argv)
    if not Path(args.manifest).exists():
        generate_demo_cohort(Path(args.manifest).parent, num_exams=args.exams, seed=0)
    print(f"ε = {EPS}; linear Q = S / rowsum(S) (the authors'); rows with an all-zero Q "
          "(normal reports) carry no KL and are left out\n")
    print("| S | batch | valid rows | m (mean) | floor share m/(1+m) | own-report Q before → "
          "after | grad cosine (renormalised vs not) | grad norm ratio | 1/(1+m) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for preset in ("english", "paper"):
        datamodule = SelipDataModule(args.manifest, args.cache_dir, similarity=preset,
                                     augment=AugmentSettings(enabled=False), num_workers=2,
                                     max_length=64, progress=False)
        datamodule.prepare_data()
        datamodule.setup("fit")
        table = datamodule.similarity_table
        assert table is not None
        ids = torch.tensor([p.report_id for p in datamodule.datasets["train"].pairs])
        for size in args.batches:
            if size > len(ids):
                print(f"| {preset} | {size} | (only {len(ids)} training pairs) |")
                continue
            generator = torch.Generator().manual_seed(size)
            found: dict[str, list[torch.Tensor]] = {}
            valid_rows = 0
            for _ in range(args.draws):
                batch = ids[torch.randperm(len(ids), generator=generator)[:size]]
                q = soft_targets(table.lookup(batch, batch), norm="linear",
                                 positives=positives_from_ids(batch, batch))
                for key, value in measure(q, EPS, generator).items():
                    found.setdefault(key, []).append(value.detach())
                valid_rows += int((q.sum(dim=1) > 0).sum())
            mean = {key: float(torch.cat(values).mean()) for key, values in found.items()}
            print(f"| {preset} | {size} | {valid_rows / (args.draws * size):.0%} | "
                  f"{mean['mass']:.3f} | {mean['floor_share']:.3f} | "
                  f"{mean['own_before']:.3f} → {mean['own_after']:.3f} | "
                  f"{mean['grad_cosine']:.4f} | {mean['grad_ratio']:.3f} | "
                  f"{mean['one_over_1_plus_m']:.3f} |")


if __name__ == "__main__":
    main()
