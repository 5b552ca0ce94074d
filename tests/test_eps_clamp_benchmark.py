"""benchmarks/eps_clamp.py: the clamp's mass and the renormalised gradient, on a known Q."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eps_clamp.py"


def test_mass_is_eps_per_zero_entry_and_renormalising_only_rescales_the_gradient():
    spec = importlib.util.spec_from_file_location("selip_eps_clamp_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    eps_clamp = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = eps_clamp
    spec.loader.exec_module(eps_clamp)
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
