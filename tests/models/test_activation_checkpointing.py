"""Activation checkpointing of the image encoder: same numbers, less saved for backward."""

import contextlib
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from selip.models import ImageEncoder, ImageEncoderConfig
from selip.models.image_encoder import batchnorm_stats_kept

# Not smaller: torch 2.13's CPU bf16 conv3d weight gradient is garbage (NaN, 1e35) for some
# small maps with batch >= 2 and >= 16 channels (a depth of 2; a 6×1×1 map at stride 2),
# in plain networks too, which would fail the autocast cases whatever checkpointing does.
SHAPE = (2, 1, 24, 24, 24)


def _pair(depth: int, norm: str = "batch") -> tuple[ImageEncoder, ImageEncoder]:
    """A plain and a checkpointed tiny encoder with the same weights, in training mode
    (batch norm by default: the norm whose running statistics checkpointing must keep)."""
    torch.manual_seed(0)
    plain = ImageEncoder(ImageEncoderConfig(depth=depth, width=4, norm=norm))  # type: ignore[arg-type]
    checkpointed = ImageEncoder(ImageEncoderConfig(depth=depth, width=4, norm=norm,  # type: ignore[arg-type]
                                                   gradient_checkpointing=True))
    checkpointed.load_state_dict(plain.state_dict())
    return plain.train(), checkpointed.train()


def _loss(encoder: ImageEncoder, x: torch.Tensor, path: str) -> torch.Tensor:
    """A scalar that reaches every parameter: the pooled features or every stage map."""
    if path == "forward":
        return encoder(x).float().square().mean()
    return sum((m.float().square().mean() for m in encoder.stages(x)), torch.zeros(()))


def _saved_bytes(encoder: ImageEncoder, run: Callable[[], object]) -> int:
    """Bytes of the tensors ``run`` saves for backward, each storage once, without the
    encoder's weights (a checkpointed piece saves its weights out of sight)."""
    weights = {p.untyped_storage().data_ptr() for p in encoder.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


@pytest.mark.parametrize("depth, norm", [(10, "batch"), (50, "batch"), (50, "group")])
@pytest.mark.parametrize("path", ["forward", "stages"])
@pytest.mark.parametrize("autocast", [False, True])
def test_checkpointing_keeps_outputs_gradients_and_running_stats(depth, norm, path, autocast):
    plain, checkpointed = _pair(depth, norm)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    checkpointed_opt = torch.optim.SGD(checkpointed.parameters(), lr=0.1)
    for step in range(2):  # the second step runs on weights both runs updated
        x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(step))
        context = (torch.autocast("cpu", dtype=torch.bfloat16) if autocast
                   else contextlib.nullcontext())
        with context:
            plain_loss = _loss(plain, x, path)
            checkpointed_loss = _loss(checkpointed, x, path)
        torch.testing.assert_close(checkpointed_loss, plain_loss)
        plain_loss.backward()
        checkpointed_loss.backward()
        for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters(),
                                strict=True):
            assert p.grad is not None and q.grad is not None, name
            torch.testing.assert_close(q.grad, p.grad, msg=lambda m, n=name: f"{n}: {m}")
        # the recomputation in backward must not update the running statistics again
        for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers(), strict=True):
            assert torch.equal(a, b), name
        plain_opt.step()
        checkpointed_opt.step()
        plain_opt.zero_grad()
        checkpointed_opt.zero_grad()
    if norm == "batch":
        assert int(checkpointed.resnet.bn1.num_batches_tracked) == 2


def test_plain_checkpointing_would_update_batchnorm_twice_per_step():
    """Why ``batchnorm_stats_kept`` exists: the recomputation runs in training mode."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.BatchNorm3d(2)).train()
    x = torch.randn(2, 1, 4, 6, 6, requires_grad=True)
    checkpoint(block, x, use_reentrant=False).sum().backward()
    assert int(block[1].num_batches_tracked) == 2  # once in forward, once in backward

    before = [b.clone() for b in block.buffers()]
    with batchnorm_stats_kept(block):
        block(x)
    assert all(torch.equal(a, b) for a, b in zip(before, block.buffers(), strict=True))


def test_checkpointing_saves_less_for_backward():
    plain, checkpointed = _pair(50)
    x = torch.randn(SHAPE)
    plain_bytes = _saved_bytes(plain, lambda: plain(x))
    checkpointed_bytes = _saved_bytes(checkpointed, lambda: checkpointed(x))
    # only the volume and the input of each of the 16 blocks stay: 3.5x less here, 4x for
    # the paper's encoder (benchmarks/memory.py)
    assert checkpointed_bytes < plain_bytes / 3


def test_no_checkpointing_in_eval_mode_or_without_gradients():
    plain, checkpointed = _pair(50)
    x = torch.randn(SHAPE)
    plain.eval()
    checkpointed.eval()
    assert (_saved_bytes(checkpointed, lambda: checkpointed(x))
            == _saved_bytes(plain, lambda: plain(x)))
    checkpointed.train()
    with torch.no_grad():
        out = checkpointed(x)
    assert not out.requires_grad
    assert int(checkpointed.resnet.bn1.num_batches_tracked) == 1


def test_checkpointing_with_a_frozen_stem():
    plain, checkpointed = _pair(10)
    for encoder in (plain, checkpointed):
        encoder.resnet.conv1.requires_grad_(False)
        encoder.resnet.bn1.requires_grad_(False)
    x = torch.randn(SHAPE)
    plain(x).square().mean().backward()
    checkpointed(x).square().mean().backward()
    assert checkpointed.resnet.conv1.weight.grad is None
    for p, q in zip(plain.parameters(), checkpointed.parameters(), strict=True):
        if p.requires_grad:
            torch.testing.assert_close(q.grad, p.grad)
