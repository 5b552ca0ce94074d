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

    def forward(self) -> torch.Tensor:
        # Clamping the log keeps the gradient at zero above the cap, as in open_clip.
        return self.log_scale.clamp(max=self.max_log_scale).exp()
