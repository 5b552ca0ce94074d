"""Rank-major all-gathers for the local SeLIP loss (docs/design.md §5). No Lightning here.

Gradient scaling — why none is needed. Each rank r computes the local loss L_r: the mean
over its b rows of the gathered batch of N = W·b rows. The global loss is
L = mean over N rows = (1/W) Σ_r L_r. On rank r:

* ``gather_with_grad`` uses ``torch.distributed.nn.functional.all_gather``, whose backward
  SUMS the incoming gradients of every rank's copy of slice r (a reduce-scatter). Together
  with the rank's direct use of its own embeddings (its rows), the gradient that reaches
  rank r's embeddings is therefore ∂(Σ_r' L_r')/∂x_r — every rank's loss, not just L_r.
* Backpropagated into the parameters, rank r holds the contribution of its own samples to
  ∂(Σ_r' L_r')/∂θ (plus ∂L_r/∂θ for parameters used directly in the loss, like the logit
  scale). DDP then AVERAGES parameter gradients over the W ranks:
  (1/W) Σ_r [...] = (1/W) ∂(Σ_r' L_r')/∂θ = ∂L/∂θ.

So the sum in the gather's backward and the mean in DDP cancel exactly against the
(1/W) Σ_r of the global mean: loss and gradients equal a one-process run on the
concatenated batch, with no rescaling. (Rescaling would be needed with a gather whose
backward only keeps the local slice — multiply by W — or with a loss over the full N×N
matrix on every rank — divide by W; neither is used.) tests/test_distributed.py proves it
on two gloo processes.

All ranks must pass tensors of the same shape (train loaders drop the last incomplete
batch): an all-gather of unequal shapes hangs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world_size) of the default process group; (0, 1) when not initialised."""
    if not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Rank-major concatenation over ranks, differentiable.

    Args:
        tensor: (b, ...) this rank's slice; the same shape on every rank.

    Returns:
        (world·b, ...), rank r's slice at rows r·b..(r+1)·b. Gradients flow back to every
        rank's slice (summed over ranks, see the module docstring). The input itself when
        not distributed.
    """
    _, world_size = world()
    if world_size == 1:
        return tensor
    _check_batched(tensor)
    # Imported here: torch.distributed.nn pulls in RPC bits that builds without distributed
    # support lack, and the one-process path never needs it.
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def gather_no_grad(tensor: Tensor) -> Tensor:
    """Rank-major concatenation over ranks without autograd (report ids, labels).

    Args:
        tensor: (b, ...) this rank's slice; the same shape on every rank.

    Returns:
        (world·b, ...), not requiring grad. The input itself when not distributed.
    """
    _, world_size = world()
    if world_size == 1:
        return tensor
    _check_batched(tensor)
    with torch.no_grad():
        source = tensor.detach().contiguous()
        slices = [torch.empty_like(source) for _ in range(world_size)]
        dist.all_gather(slices, source)
        return torch.cat(slices, dim=0)


def _check_batched(tensor: Tensor) -> None:
    if tensor.dim() == 0:
        raise ValueError("cannot gather a 0-dim tensor: give it a batch dimension (b, ...)")
