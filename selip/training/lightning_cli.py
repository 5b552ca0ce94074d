"""``selip fit | validate | test | predict``: LightningCLI with selip's defaults.

The datamodule is always :class:`SelipDataModule` (configs set ``data:`` directly); the
model is any LightningModule given by ``model.class_path`` (``PretrainTask``,
``ClassificationTask``, ``SegmentationTask``, ``ZeroShotTask``). Checkpoints are written
atomically and carry the resolved config.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from selip.data.datamodule import SelipDataModule
from selip.io.checkpoints import UNREADABLE_CHECKPOINT_ERRORS, CheckpointError
from selip.metrics import retrieval_summary
from selip.models.image_encoder import ImageEncoderConfig
from selip.similarity.legacy_keys import translate_arguments
from selip.training.checkpointing import AtomicCheckpointIO
from selip.training.last_checkpoint import LastCheckpoint
from selip.training.launch import lightning_launcher, watch_parent
from selip.training.lightning_compat import check_lightning
from selip.training.quiet import quiet_third_party
from selip.training.resume import find_last_checkpoint, slurm_version

check_lightning()  # selip replaces a private launcher function; fail here, not silently

#: ``--ckpt_path`` values that Lightning resolves itself (``last`` is selip's, see below).
_CKPT_KEYWORDS = ("best", "hpc", "registry")


@rank_zero_only
def _say(message: str) -> None:
    print(f"selip: {message}", flush=True)


def _require_readable_checkpoint(path: str) -> None:
    """Raise :class:`CheckpointError` when ``path`` is missing or not a readable checkpoint
    (reads the archive's index only: ``mmap`` loads no tensor data)."""
    import torch

    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except UNREADABLE_CHECKPOINT_ERRORS as err:
        raise CheckpointError(f"not a readable checkpoint: {path} ({err}); was it truncated "
                              "by a full disk or a copy that did not finish?") from None


class SelipCLI(LightningCLI):
    """LightningCLI that records the resolved config in every checkpoint.

    ``subcommand`` (``fit``, ``test``, ...) builds the parser of that subcommand only:
    LightningCLI otherwise builds all four from the trainer's, model's and datamodule's
    signatures, about three quarters of a second of every start spent on parsers that the
    run never uses. ``None`` builds all four (``selip --help``)."""

    def __init__(self, *args: Any, subcommand: str | None = None, **kwargs: Any) -> None:
        self._only_subcommand = subcommand
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        every = LightningCLI.subcommands()
        if self._only_subcommand in every:
            return {self._only_subcommand: every[self._only_subcommand]}
        return every

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # last.ckpt kept current, and save-and-stop on SIGUSR1/SIGTERM, in every run
        # (`last_checkpoint:` in a config, or --last_checkpoint.every_minutes ...).
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then settle ``--ckpt_path`` from selip's own arguments — before Lightning
        reads the checkpoint's hyper-parameters into the config: route it to tasks that
        start from another task's checkpoint, resolve ``last`` to the run's newest
        ``last.ckpt``, and refuse a path that is missing or unreadable with one line."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        section: Any = self.config.get(subcommand) if subcommand else None
        if section is None:
            return
        self._route_ckpt_path_to_task(section)
        if subcommand == "fit":
            self._continue_run(section)
        path = section.get("ckpt_path")
        if path and path not in _CKPT_KEYWORDS and path != "last":
            _require_readable_checkpoint(path)

    def before_instantiate_classes(self) -> None:
        """After Lightning has read the checkpoint's hyper-parameters over the config."""
        subcommand = self.config.get("subcommand")
        section: Any = self.config.get(subcommand) if subcommand else None
        path = section.get("ckpt_path") if section is not None else None
        if path and path not in _CKPT_KEYWORDS and Path(path).is_file():
            self._keep_recorded_norm(path)

    def _keep_recorded_norm(self, path: str) -> None:
        """Lightning re-parses a checkpoint's hyper-parameters over the config, and a record
        written before the image encoder's ``norm`` setting existed then takes the new
        default (group norm); such encoders used batch norm, so put that back. Tested by
        ``tests/inference/test_legacy_checkpoint.py``."""
        import torch

        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        record = (checkpoint.get("hyper_parameters") or {}).get("image_encoder")
        section: Any = self.config.get(self.config.get("subcommand"))  # hparams read in
        init_args: Any = getattr(section.get("model"), "init_args", None)
        encoder: Any = init_args.get("image_encoder") if init_args is not None else None
        if not isinstance(record, dict) or "norm" in record or encoder is None:
            return
        norm = ImageEncoderConfig.from_record(record).norm
        if isinstance(encoder, ImageEncoderConfig):
            init_args["image_encoder"] = replace(encoder, norm=norm)
        else:  # a parsed namespace or a plain dict
            encoder["norm"] = norm

    def _route_ckpt_path_to_task(self, section: Any) -> None:
        """Route ``--ckpt_path`` into the task's own argument for tasks that start from
        another task's checkpoint (``ckpt_path_argument``, e.g. zero-shot reads a
        pretraining checkpoint): LightningCLI would otherwise re-create the checkpoint's
        class from its hyper-parameters and resume it."""
        model: Any = section.get("model")
        class_path = model.get("class_path") if model is not None else None
        if class_path and section.get("ckpt_path"):
            module, _, name = str(class_path).rpartition(".")
            argument = getattr(getattr(import_module(module), name, None),
                               "ckpt_path_argument", None)
            if argument:
                model.init_args[argument] = section.ckpt_path
                section.ckpt_path = None

    def _continue_run(self, section: Any) -> None:
        """Under SLURM, name the run ``slurm-<job id>`` (stable across requeues); resolve
        ``--ckpt_path last`` to the run's newest ``last.ckpt`` and keep its folder
        (see :mod:`selip.training.resume`)."""
        logger: Any = section.get("trainer", {}).get("logger")
        init_args: Any = getattr(logger, "init_args", None)
        if init_args is None or "save_dir" not in init_args:
            return  # not a TensorBoard/CSV-style logger: Lightning's own `last` applies
        version = init_args.get("version")
        if version is None and slurm_version() is not None:
            version = init_args["version"] = slurm_version()
        if section.get("ckpt_path") != "last":
            return
        folder = f"version_{version}" if isinstance(version, int) else version
        root = Path(init_args["save_dir"]) / str(init_args.get("name") or "lightning_logs")
        found = find_last_checkpoint(root, folder)
        if found is None:
            where = root / (folder or "*") / "checkpoints" / "last.ckpt"
            _say(f"no {where} yet; starting a new run")
            section.ckpt_path = None
            return
        if version is None:
            init_args["version"] = found.parent.parent.name
        section.ckpt_path = str(found)
        _say(f"resuming from {found}")

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        self._dump_config()
        if hasattr(self.model, "run_config"):
            self.model.run_config = yaml.safe_dump(self.config_dump, sort_keys=False)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if not trainer_config.get("plugins"):
            plugins: list[Any] = [AtomicCheckpointIO()]
            if SLURMEnvironment.detect():
                # selip's LastCheckpoint callback requeues; Lightning's own handler would save
                # inside the signal handler, mid-step (see selip.training.last_checkpoint).
                plugins.append(SLURMEnvironment(auto_requeue=False))
            kwargs.setdefault("plugins", plugins)
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """Refuse training settings that cannot work, before any step runs."""
        if str(self.trainer.precision) in ("16-true", "16"):
            # AdamW's eps (1e-8) is 0 in float16: a weight whose gradient or its square
            # underflows becomes NaN at the first optimiser step.
            raise ValueError("trainer.precision 16-true cannot train (AdamW's state in "
                             "float16 underflows to NaN); use 16-mixed (float16 autocast "
                             "with float32 weights) or bf16-true")

    def after_test(self) -> None:
        """Print the test retrieval figures beside their baselines (pretraining)."""
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()
                   if k.startswith("test/")}
        if self.trainer.is_global_zero and any(k.startswith("test/chance_") for k in metrics):
            print("\ntest metrics:")
            print("\n".join(retrieval_summary(metrics, "test/")))

    def after_fit(self) -> None:
        """Print the final validation metrics and where the logs are."""
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()
                   if k.startswith("val/")}
        if metrics:
            print("\nfinal validation metrics:")
            print("\n".join(retrieval_summary(metrics, "val/")))
        logger = self.trainer.logger
        if logger is not None and getattr(logger, "log_dir", None):
            print(f"TensorBoard logs: {logger.log_dir}  (tensorboard --logdir {logger.save_dir})")
        best = getattr(self.trainer.checkpoint_callback, "best_model_path", "")
        if best:
            print(f"best checkpoint: {best}")


def training_cli(argv: list[str], callbacks: list[pl.Callback] | None = None) -> SelipCLI:
    """Run a LightningCLI subcommand and return the CLI (its trainer holds the metrics);
    ``callbacks`` are added to the config's (for benchmarks and experiments).

    The ranks that Lightning's launcher starts (``--trainer.devices N --trainer.strategy
    ddp``) run exactly ``python -m selip.cli <argv>``, whoever called this: for the run,
    the process looks to Lightning as if it had been started that way (see
    :mod:`selip.training.launch`), and LightningCLI reads ``argv`` from there."""
    watch_parent()
    quiet_third_party()
    argv = translate_arguments(argv)  # configs written before the data.similarity block
    with lightning_launcher(argv):  # sys.argv is ``selip.cli <argv>`` meanwhile
        return SelipCLI(model_class=pl.LightningModule, datamodule_class=SelipDataModule,
                        subclass_mode_model=True, args=None,
                        subcommand=argv[0] if argv else None,
                        trainer_defaults={"callbacks": callbacks} if callbacks else None,
                        save_config_kwargs={"overwrite": True})


def run_training_cli(argv: list[str]) -> int:
    """Run a LightningCLI subcommand; returns the exit code."""
    training_cli(argv)
    return 0

