"""Augmentation draws per rank, on two real gloo processes seeded alike (LightningCLI seeds
every rank with the same ``seed_everything``): the ranks must draw differently, and the same
(seed, rank, step) must draw the same again, whatever the global generator did in between —
which is what a resumed run needs.

Both places are checked: the batched augmentation after the transfer (accelerator runs) and
the workers' flip / whole augmentation (CPU runs, ``augment_fully``).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
from lightning.pytorch import seed_everything
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint

from selip.data.augment import AugmentSettings
from selip.data.datamodule import SelipDataModule
from tests.spawn_ranks import run_ranks

WORLD_SIZE = 2
SHAPE = (8, 12, 10)
# Every draw visible in the output: the affine and gamma always, the flip half the time.
ALWAYS = AugmentSettings(flip_probability=0.5, affine_probability=1.0, gamma_probability=1.0)


def _datamodule(manifest: str, cache_dir: str) -> SelipDataModule:
    return SelipDataModule(manifest, cache_dir=cache_dir, spacing=(2.0, 2.0, 2.0), shape=SHAPE,
                           batch_size=2, num_workers=0, max_length=32, progress=False,
                           val_fraction=0.25, test_fraction=0.0, similarity=None,
                           augment=ALWAYS)


def _trainer(rank: int, epoch: int, batch: int, accelerator: object = None) -> SimpleNamespace:
    """A stand-in trainer in training at ``batch`` of ``epoch`` (its loop counters are what
    a checkpoint restores); no accelerator: the batched augmentation runs after the
    transfer, as on a GPU."""
    processed = SimpleNamespace
    fit_loop = SimpleNamespace(
        epoch_progress=processed(current=processed(processed=epoch)),
        epoch_loop=processed(batch_progress=processed(current=processed(processed=batch))))
    return SimpleNamespace(training=True, accelerator=accelerator, global_rank=rank,
                           world_size=WORLD_SIZE, fit_loop=fit_loop)


def _batch() -> dict[str, torch.Tensor]:
    """The same (4, 1, D, H, W) float16 batch on every rank."""
    return {"image": torch.rand(4, 1, *SHAPE, generator=torch.Generator().manual_seed(1)).half()}


def _worker(rank: int, port: int, manifest: str, cache_dir: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        seed_everything(0, workers=True)  # as LightningCLI does, on every rank
        dm = _datamodule(manifest, cache_dir)
        results: dict[str, torch.Tensor] = {}
        # -- batched, after the transfer ---------------------------------------------------
        dm.trainer = _trainer(rank, epoch=1, batch=2)  # type: ignore[assignment]
        results["step"] = dm.on_after_batch_transfer(_batch(), 0)["image"]
        torch.rand(7)  # the global generator moves on (model init, dropout, ...)
        results["step_again"] = dm.on_after_batch_transfer(_batch(), 0)["image"]
        dm.trainer = _trainer(rank, epoch=1, batch=3)  # type: ignore[assignment]
        results["next_step"] = dm.on_after_batch_transfer(_batch(), 0)["image"]
        # -- in the workers (a CPU run; num_workers=0: the rank's own process) -------------
        dm.setup("fit")
        dm.trainer = _trainer(rank, epoch=0, batch=0,  # type: ignore[assignment]
                              accelerator=CPUAccelerator())
        dm.train_dataloader()  # switches the train set to the whole augmentation
        seed_everything(0, workers=True)
        results["worker"] = torch.stack([dm.datasets["train"][0]["image"] for _ in range(4)])
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ranks_draw_differently_and_a_step_draws_the_same_again(tiny_cohort, tmp_path):
    manifest, cache_dir = str(tiny_cohort(n=8)), str(tmp_path / "cache")
    _datamodule(manifest, cache_dir).prepare_data()  # fill the cache once, before the ranks
    run_ranks(_worker, WORLD_SIZE, manifest, cache_dir, str(tmp_path), timeout=150)

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    for rank in ranks:
        assert rank["step"].dtype == torch.float32
        torch.testing.assert_close(rank["step_again"], rank["step"], atol=0, rtol=0)
        assert not torch.equal(rank["next_step"], rank["step"])
        for j in range(len(rank["step"])):  # every sample draws anew at the next step
            assert not torch.equal(rank["next_step"][j], rank["step"][j])
    for j in range(len(ranks[0]["step"])):  # sample j of the batch, on each rank
        assert not torch.equal(ranks[0]["step"][j], ranks[1]["step"][j]), j
    for j in range(len(ranks[0]["worker"])):  # the same sample read on each rank
        assert not torch.equal(ranks[0]["worker"][j], ranks[1]["worker"][j]), j


class _Recorder(pl.LightningModule):
    """Records each training step's (B,) image sums, keyed by the step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, torch.Tensor] = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen[self.global_step] = batch["image"].double().flatten(1).sum(1)
        return self.weight * batch["image"].float().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(manifest: str, root: Path, ckpt_path: Path | None = None) -> dict[int, torch.Tensor]:
    seed_everything(0, workers=True)
    # No flip: it is drawn in the workers, whose draws a resume does not reproduce.
    dm = _datamodule(manifest, str(root / "cache"))
    dm.augment = AugmentSettings(flip_probability=0.0, affine_probability=1.0,
                                 gamma_probability=1.0)
    every_step = ModelCheckpoint(dirpath=root / "checkpoints", filename="{step}",
                                 every_n_train_steps=1, save_top_k=-1)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False,
                         callbacks=[every_step], limit_val_batches=0, num_sanity_val_steps=0,
                         enable_progress_bar=False, enable_model_summary=False)
    model = _Recorder()
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.timeout(120)
def test_a_run_resumed_mid_epoch_draws_what_the_first_run_drew(tiny_cohort, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # restored afterwards (seed_everything sets it)
    monkeypatch.setenv("PL_SEED_WORKERS", "1")
    # The batched augmentation after the transfer, as on a GPU, on this CPU run.
    monkeypatch.setattr("selip.data.datamodule.augment_on_device",
                        lambda trainer: trainer is not None)
    manifest = str(tiny_cohort(n=8))
    first = _fit(manifest, tmp_path / "first")
    steps_per_epoch = len(first) // 2
    resume_at = tmp_path / "first" / "checkpoints" / f"step={steps_per_epoch + 2}.ckpt"
    resumed = _fit(manifest, tmp_path / "resumed", ckpt_path=resume_at)
    assert sorted(resumed) == list(range(steps_per_epoch + 2, 2 * steps_per_epoch))
    for step, sums in resumed.items():
        torch.testing.assert_close(sums, first[step], atol=0, rtol=0, msg=f"step {step}")
    # and the draws are not simply the same at every step
    assert len({tuple(s.tolist()) for s in first.values()}) == len(first)


def test_the_workers_of_a_rank_draw_differently_and_follow_the_torch_seed(tiny_cohort,
                                                                            tmp_path):
    from torch.utils.data import DataLoader

    dm = _datamodule(str(tiny_cohort(n=8)), str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    dataset = dm.datasets["train"]
    dataset.augment_fully, dataset.rank = True, 1
    reads = []
    for _ in range(2):
        torch.manual_seed(0)
        reads.append([dataset[0]["image"] for _ in range(2)])
    assert torch.equal(reads[0][0], reads[1][0]) and torch.equal(reads[0][1], reads[1][1])
    assert not torch.equal(reads[0][0], reads[0][1])
    loader = DataLoader(dataset, batch_size=1, sampler=[0, 0], num_workers=2,
                        multiprocessing_context="fork")
    first, second = (batch["image"] for batch in loader)
    assert not torch.equal(first, second)  # each worker its own stream
