"""The DDP form of the loss (docs/design.md §5) on two real gloo processes.

Each rank holds half of a batch of 8 and computes its rows of the loss against the gathered
batch; the test checks that (1) the mean of the local losses equals the one-process
``selip_loss`` on the concatenated batch and (2) DDP's averaged parameter gradients equal the
one-process gradients — i.e. that no rescaling of the gathered gradients is needed.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from selip.distributed import gather_no_grad, gather_with_grad, world
from selip.losses import positives_from_ids, selip_loss, selip_loss_local
from tests.spawn_ranks import run_ranks

WORLD_SIZE = 2
BATCH = 8  # global; 4 per rank
IN_FEATURES, EMBED = 5, 3
# Report 1 is held by sample 1 (rank 0) and sample 5 (rank 1): a duplicate across ranks.
# Report 0 is duplicated within rank 0.
IDS = [0, 1, 2, 0, 3, 1, 4, 5]
# Options beyond the defaults, to cover the row_offset-dependent paths under DDP too.
OPTIONS: list[dict[str, Any]] = [
    {},
    {"norm": "softmax", "include_diagonal": False, "symmetric_kl": True},
]


class TinyClip(nn.Module):
    """Two linear projections to unit vectors and a learnable log logit scale."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # identical init on every rank and in the reference
        self.image = nn.Linear(IN_FEATURES, EMBED).double()
        self.text = nn.Linear(IN_FEATURES, EMBED).double()
        self.log_scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))

    def forward(self, image: torch.Tensor, text: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (F.normalize(self.image(image), dim=1), F.normalize(self.text(text), dim=1),
                self.log_scale.exp())


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (8, 5) ×2, report ids (8,), and a symmetric S table (6, 6) with diagonal 1."""
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(BATCH, IN_FEATURES, generator=generator, dtype=torch.float64)
    text = torch.randn(BATCH, IN_FEATURES, generator=generator, dtype=torch.float64)
    table = torch.rand(6, 6, generator=generator, dtype=torch.float64)
    table = (table + table.T) / 2
    table.fill_diagonal_(1.0)
    table[5, :] = table[:, 5] = 0.0  # report 5 is "normal": S = 0 to every other report
    table[5, 5] = 1.0
    return image, text, torch.tensor(IDS), table


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(grad is not None for grad in grads.values()), "a parameter got no gradient"
    return {name: grad.clone() for name, grad in grads.items() if grad is not None}


def _reference(options: dict[str, Any]) -> tuple[float, dict[str, torch.Tensor]]:
    """One process, the whole batch: loss and parameter gradients."""
    image, text, ids, table = _data()
    model = TinyClip()
    img, txt, scale = model(image, text)
    loss = selip_loss(scale * img @ txt.T, table[ids][:, ids],
                      positives=positives_from_ids(ids, ids), **options).total
    loss.backward()
    return loss.item(), _grads(model)


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One DDP rank: local loss on its half, backward through DDP, save loss and grads."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        image, text, ids, table = _data()
        b = BATCH // WORLD_SIZE
        rows = slice(rank * b, (rank + 1) * b)
        results: dict[str, object] = {"world": world()}
        for index, options in enumerate(OPTIONS):
            model = nn.parallel.DistributedDataParallel(TinyClip())
            img, txt, scale = model(image[rows], text[rows])
            img_all, txt_all = gather_with_grad(img), gather_with_grad(txt)
            ids_all = gather_no_grad(ids[rows])
            parts = selip_loss_local(
                scale * img @ txt_all.T, scale * txt @ img_all.T, table[ids[rows]][:, ids_all],
                positives_from_ids(ids[rows], ids_all), row_offset=rank * b, **options)
            parts.total.backward()  # DDP all-reduces (means) the parameter gradients here
            results[f"loss{index}"] = parts.total.item()
            results[f"grads{index}"] = {name.removeprefix("module."): grad
                                        for name, grad in _grads(model).items()}
            results[f"ids{index}"] = ids_all
            results[f"gathered_requires_grad{index}"] = (img_all.requires_grad,
                                                         ids_all.requires_grad)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_rank_gloo_loss_and_gradients_match_one_process(tmp_path):
    run_ranks(_worker, WORLD_SIZE, str(tmp_path), timeout=90)

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    assert [r["world"] for r in ranks] == [(0, 2), (1, 2)]
    for index, options in enumerate(OPTIONS):
        want_loss, want_grads = _reference(options)
        # (1) mean of the local losses = the global loss
        mean_loss = sum(r[f"loss{index}"] for r in ranks) / WORLD_SIZE
        assert mean_loss == pytest.approx(want_loss, abs=1e-6, rel=0)
        assert ranks[0][f"loss{index}"] != pytest.approx(ranks[1][f"loss{index}"], abs=1e-6)
        for rank in ranks:
            # (2) after DDP's mean, every rank holds the one-process gradients
            assert rank[f"grads{index}"].keys() == want_grads.keys()
            for name, want in want_grads.items():
                torch.testing.assert_close(rank[f"grads{index}"][name], want,
                                           atol=1e-10, rtol=0, msg=name)
            assert rank[f"ids{index}"].tolist() == IDS  # rank-major order
            assert rank[f"gathered_requires_grad{index}"] == (True, False)


def test_gather_helpers_are_identity_without_process_group():
    assert world() == (0, 1)
    features = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(features) is features
    ids = torch.arange(4)
    assert gather_no_grad(ids) is ids
