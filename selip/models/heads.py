"""Projection heads and the learnable logit scale."""

from __future__ import annotations

import math

import torch
from torch import nn


class Projection(nn.Module):
    """Linear projection to the shared embedding space, then L2 normalisation.

    (B, F) → (B, E) with unit-norm rows.
    """

    def __init__(self, in_features: int, embed_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, embed_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.linear(features), dim=-1)


class LogitScale(nn.Module):
    """s = exp(log_scale), initialised at 1/temperature and clamped so s ≤ max_scale.

    The authors' released code forgot to optimise s; here it learns by default
    (``learnable=False`` freezes it).
    """

    def __init__(self, temperature: float = 0.07, max_scale: float = 100.0,
                 learnable: bool = True) -> None:
        super().__init__()
        if temperature <= 0 or max_scale <= 0:
            raise ValueError(f"temperature and max_scale must be > 0, got {temperature}, "
                             f"{max_scale}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)),
                                      requires_grad=learnable)
        self.max_log_scale = math.log(max_scale)
        self.clamp_()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Put the parameter back under the cap; call after every optimiser step (as
        open_clip does). A cap applied only in the forward pass has zero gradient above
        it, so a scale that once overshot could never come back down."""
        self.log_scale.clamp_(max=self.max_log_scale)

    def forward(self) -> torch.Tensor:
        # The forward clamp only guards a parameter set above the cap by hand or an old
        # checkpoint; at the cap itself (after clamp_) the gradient still flows.
        return self.log_scale.clamp(max=self.max_log_scale).exp()
