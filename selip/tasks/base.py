"""``BaseTask``: what every selip LightningModule shares (after torchgeo's ``BaseTask``).

- The data: :attr:`BaseTask.data`, one :class:`~selip.data.description.DataDescription`
  (plain data) taken from the datamodule in :meth:`BaseTask.setup` — the only place a task
  touches the datamodule, besides a text encoder's added tokens (:func:`data_vocabulary`).
  Without one (a bare ``Trainer`` and dataloaders) it stays empty.
- The encoders' settings in the hyper-parameters, as plain dicts
  (:meth:`BaseTask.record_config`), so a checkpoint rebuilds its model without the code's
  dataclasses being pickled.
- The evaluation loop: ``validation_step`` / ``test_step`` call
  :meth:`BaseTask.evaluate_batch`, the epoch ends call :meth:`BaseTask.finish_evaluation`,
  with the stage (``val`` or ``test``) as an argument.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import torchmetrics

from selip.data.description import DataDescription, Vocabulary


def describe_data(trainer: pl.Trainer | None) -> DataDescription:
    """The trainer's datamodule's :meth:`describe`, or an empty description."""
    describe = getattr(getattr(trainer, "datamodule", None), "describe", None)
    return describe() if callable(describe) else DataDescription()


def data_vocabulary(trainer: pl.Trainer | None) -> Vocabulary | None:
    """The trainer's datamodule as the report tokens' owner, when it is one."""
    datamodule = getattr(trainer, "datamodule", None)
    return datamodule if isinstance(datamodule, Vocabulary) else None


class BaseTask(pl.LightningModule):
    """A selip task. Subclasses implement :meth:`evaluate_batch` and
    :meth:`finish_evaluation`, and :meth:`setup_for_data` when the data shapes the model."""

    def __init__(self) -> None:
        super().__init__()
        self.data = DataDescription()

    # -- the data ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Take the data's description, then let the task adapt to it."""
        self.data = describe_data(self._trainer)
        self.setup_for_data(stage)

    def setup_for_data(self, stage: str) -> None:
        """Adapt the model to :attr:`data` (channels, classes, vocabulary); default none."""

    def configure_callbacks(self) -> list[pl.Callback]:
        """:class:`~selip.training.precise_bn.PreciseBatchNorm` when an image encoder
        trains with batch norm (the user's trainer callbacks come on top)."""
        from selip.training.precise_bn import PreciseBatchNorm, trainable_batchnorm_encoders

        if not trainable_batchnorm_encoders(self):
            return []
        configured = getattr(self._trainer, "callbacks", [])
        if any(isinstance(c, PreciseBatchNorm) for c in configured):
            return []  # the user's own, with their settings (Lightning would replace it)
        return [PreciseBatchNorm()]

    # -- hyper-parameters ---------------------------------------------------------------------
    def record_config(self, name: str, config: Any) -> None:
        """Store an encoder's settings dataclass in the hyper-parameters as a plain dict."""
        self.hparams[name] = asdict(config)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate_batch(self, stage: str, batch: dict[str, Any], batch_idx: int) -> None:
        """Score one ``val`` or ``test`` batch (keep what :meth:`finish_evaluation` needs)."""
        raise NotImplementedError

    def finish_evaluation(self, stage: str) -> None:
        """Compute, log and reset the ``stage``'s epoch metrics."""
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluate_batch("val", batch, batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluate_batch("test", batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self.finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self.finish_evaluation("test")

    def log_metrics(self, metrics: torchmetrics.MetricCollection) -> dict[str, Any]:
        """Compute, log and reset an epoch's torchmetrics; returns the computed values."""
        values = metrics.compute()
        self.log_dict(values)
        metrics.reset()
        return values
