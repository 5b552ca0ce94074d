"""DataWaitMonitor: the perf/* figures and the one-time warning when the loader starves
the step."""

import time
import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from selip.training.callbacks import DataWaitMonitor


class _Images(Dataset):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        time.sleep(self.delay)  # a loader this slow starves any step
        return {"image": torch.rand(4)}


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch["image"]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, delay: float, monitor: DataWaitMonitor) -> list[str]:
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[monitor], default_root_dir=tmp_path, accelerator="cpu",
                         log_every_n_steps=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(_Tiny(), DataLoader(_Images(delay), batch_size=2))
    assert 0.0 <= float(trainer.callback_metrics["perf/data_fraction"]) <= 1.0
    return [str(w.message) for w in caught if "waits for data" in str(w.message)]


def test_a_starving_loader_is_reported_once_with_what_to_do(tmp_path):
    messages = _fit(tmp_path, delay=0.02, monitor=DataWaitMonitor(warn_window=3))
    assert len(messages) == 1
    assert "selip prepare" in messages[0] and "num_workers" in messages[0]


def test_a_fast_loader_or_a_disabled_warning_stays_quiet(tmp_path):
    assert _fit(tmp_path, delay=0.0, monitor=DataWaitMonitor(warn_data_fraction=0.99,
                                                               warn_window=3)) == []
    assert _fit(tmp_path, delay=0.02, monitor=DataWaitMonitor(warn_data_fraction=None,
                                                                warn_window=3)) == []


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="warn_data_fraction"):
        DataWaitMonitor(warn_data_fraction=1.5)
    with pytest.raises(ValueError, match="warn_window"):
        DataWaitMonitor(warn_window=0)
