"""Precise batch norm: recompute running statistics from recent inputs, for the current
weights.

Batch norm's running mean and variance are a momentum-0.1 average over past batches, each
computed with the weights of its own step. While the weights move fast (AdamW, a high
learning rate), that average trails them, and eval mode then normalises with statistics
no recent network produced: measured on the demo's FLAIR check, eval mode predicted one
class on the training set itself while the same weights with recomputed statistics scored
0.98-1.0. Recomputing the statistics over a few training batches with the current weights
(Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021) fixes that. Pure torch: the
Lightning side is :class:`selip.training.precise_bn.PreciseBatchNorm`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(module: nn.Module) -> list[_BatchNorm]:
    """The batch norms of ``module`` that keep running statistics."""
    return [m for m in module.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm_statistics(module: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of ``module``'s batch norms by their exact average
    over ``batches``, computed with the current weights; the rest of the module is
    untouched. Under ``torch.distributed``, the statistics are then averaged over ranks
    (each rank must pass the same number of batches).

    Args:
        module: holds the batch norms (an image encoder).
        batches: inputs of ``module``, e.g. (B, C, D, H, W) volumes.

    Returns:
        The number of batches used (0: nothing changed).
    """
    norms = batch_norms(module)
    if not norms:
        return 0
    was_training = module.training
    momenta = [norm.momentum for norm in norms]
    kept = [[buffer.clone() for buffer in norm.buffers(recurse=False)] for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch weighs the same
    module.train()
    count = 0
    try:
        for batch in batches:
            module(batch)
            count += 1
    finally:
        module.train(was_training)
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
    if count == 0:  # nothing seen: keep the statistics there were
        for norm, buffers in zip(norms, kept, strict=True):
            for buffer, value in zip(norm.buffers(recurse=False), buffers, strict=True):
                buffer.copy_(value)
        return 0
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        _average_over_ranks(norms)
    return count


def _average_over_ranks(norms: list[_BatchNorm]) -> None:
    """Exact pooled mean and variance over equal-sized rank samples: E[x] and E[x²]."""
    world = dist.get_world_size()
    for norm in norms:
        mean, var = norm.running_mean, norm.running_var
        assert mean is not None and var is not None
        moments = torch.stack([mean, var + mean * mean])
        dist.all_reduce(moments)
        moments /= world
        mean.copy_(moments[0])
        var.copy_(moments[1] - moments[0] * moments[0])
