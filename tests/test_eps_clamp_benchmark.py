"""benchmarks/eps_clamp.py: the clamp's mass and the renormalised gradient, on a known Q."""

from __future__ import annotations

import torch

from tests.benchmark_scripts import load_benchmark


def test_mass_is_eps_per_zero_entry_and_renormalising_only_rescales_the_gradient():
    eps_clamp = load_benchmark("eps_clamp")
    n, eps = 64, 1e-3
    q = torch.zeros(n, n)
    q[:, :4] = 0.25  # four related reports per row, the other 60 entries zero
    q[5] = 0.0  # an all-zero row (no similarity information) is left out
    found = eps_clamp.measure(q, eps, torch.Generator().manual_seed(0))
    assert found["mass"].shape == (n - 1,)
    torch.testing.assert_close(found["mass"], torch.full((n - 1,), 60 * eps))
    torch.testing.assert_close(found["floor_share"], found["mass"] / (1 + found["mass"]))
    # where no P entry is clamped the two gradients differ only by the factor 1 / (1 + m)
    torch.testing.assert_close(found["grad_cosine"], torch.ones(n - 1))
    torch.testing.assert_close(found["grad_ratio"], found["one_over_1_plus_m"])
