"""``selip fit | validate | test | predict``: LightningCLI with selip's defaults.

The datamodule is always :class:`SelipDataModule` (configs set ``data:`` directly); the
model is any LightningModule given by ``model.class_path`` (``PretrainTask``,
``ClassificationTask``, ``SegmentationTask``, ``ZeroShotTask``). Checkpoints are written
atomically and carry the resolved config.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.pytorch.cli import LightningCLI

from selip.data.datamodule import SelipDataModule
from selip.tasks.checkpointing import AtomicCheckpointIO


class SelipCLI(LightningCLI):
    """LightningCLI that records the resolved config in every checkpoint."""

    def _parse_ckpt_path(self) -> None:
        """Route ``--ckpt_path`` into the task's own argument for tasks that start from
        another task's checkpoint (``ckpt_path_argument``, e.g. zero-shot reads a
        pretraining checkpoint): LightningCLI would otherwise re-create the checkpoint's
        class from its hyper-parameters and resume it."""
        subcommand = self.config.get("subcommand")
        section: Any = self.config.get(subcommand) if subcommand else None
        model: Any = section.get("model") if section is not None else None
        class_path = model.get("class_path") if model is not None else None
        if class_path and section.get("ckpt_path"):
            module, _, name = str(class_path).rpartition(".")
            argument = getattr(getattr(import_module(module), name, None),
                               "ckpt_path_argument", None)
            if argument:
                model.init_args[argument] = section.ckpt_path
                section.ckpt_path = None
        super()._parse_ckpt_path()

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        self._dump_config()
        if hasattr(self.model, "run_config"):
            self.model.run_config = yaml.safe_dump(self.config_dump, sort_keys=False)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if not trainer_config.get("plugins"):
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        """Print the final validation metrics and where the logs are."""
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()
                   if k.startswith("val/")}
        if metrics:
            print("\nfinal validation metrics:")
            for key in sorted(metrics):
                print(f"  {key:28s} {metrics[key]:.4f}")
        logger = self.trainer.logger
        if logger is not None and getattr(logger, "log_dir", None):
            print(f"TensorBoard logs: {logger.log_dir}  (tensorboard --logdir {logger.save_dir})")
        best = getattr(self.trainer.checkpoint_callback, "best_model_path", "")
        if best:
            print(f"best checkpoint: {best}")


def training_cli(argv: list[str]) -> SelipCLI:
    """Run a LightningCLI subcommand and return the CLI (its trainer holds the metrics)."""
    program = sys.argv[:1]
    saved, sys.argv = sys.argv, program  # args are passed explicitly, not read from argv
    try:
        return SelipCLI(model_class=pl.LightningModule, datamodule_class=SelipDataModule,
                        subclass_mode_model=True, args=argv,
                        save_config_kwargs={"overwrite": True})
    finally:
        sys.argv = saved


def run_training_cli(argv: list[str]) -> int:
    """Run a LightningCLI subcommand; returns the exit code."""
    training_cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_training_cli(sys.argv[1:]))
