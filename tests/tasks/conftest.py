"""Helpers for running `selip fit` in-process on the tiny cohort with tiny networks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from selip.cli import main
from tests.conftest import make_tiny_cohort

ROOT = Path(__file__).parents[2]

TINY_TEXT = {"pretrained": False, "pooling": "cls",
             "config_overrides": {"num_hidden_layers": 1, "hidden_size": 32,
                                  "num_attention_heads": 2, "intermediate_size": 64}}
TINY_IMAGE = {"depth": 10, "width": 4, "anisotropic_stem": True}


def tiny_overrides(manifest: Path, root: Path, **extra: object) -> list[str]:
    """Command-line overrides that make any pretraining config run on CPU in seconds.

    No validation figures (a second of matplotlib per run): the tests of the TensorBoard
    figures (tests/tasks/test_pretrain_cli.py, test_visuals.py) and the quiet-output test
    turn them on."""
    model = {"--model.init_args.image_encoder": json.dumps(TINY_IMAGE),
             "--model.init_args.text_encoder": json.dumps(TINY_TEXT),
             "--model.init_args.embed_dim": "16",
             "--model.init_args.figures_every_n_val_epochs": "0"}
    return tiny_data_overrides(manifest, root, **{**model, **extra})


def tiny_data_overrides(manifest: Path, root: Path, **extra: object) -> list[str]:
    """Trainer and data overrides for any selip config: CPU, tiny volumes, no workers."""
    args = {
        "--trainer.accelerator": "cpu", "--trainer.devices": "1", "--trainer.strategy": "auto",
        "--trainer.precision": "32", "--trainer.num_nodes": "1",
        "--trainer.default_root_dir": str(root),
        "--trainer.logger.init_args.save_dir": str(root / "runs"),
        "--data.manifest": str(manifest), "--data.cache_dir": str(root / "cache"),
        "--data.shape": "[16, 16, 16]", "--data.spacing": "[2, 2, 2]",
        "--data.sequences": "[t1, flair]", "--data.batch_size": "4",
        "--data.eval_batch_size": "4", "--data.num_workers": "0", "--data.max_length": "32",
        "--data.progress": "false", "--data.val_fraction": "0.25", "--data.test_fraction": "0.0",
    }
    args.update({k: str(v) for k, v in extra.items()})
    return [item for pair in args.items() for item in pair]


@pytest.fixture(scope="session")
def pretrained_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a 10-exam tiny cohort (``manifest.csv``, ``exams/``) and the run of a
    real one-epoch `selip fit` on it (``pretrain/``): trained once per test process."""
    root = tmp_path_factory.mktemp("pretrained")
    manifest = make_tiny_cohort(root, n=10)
    code = main(["fit", "--config", str(ROOT / "configs" / "demo.yaml"),
                 *tiny_overrides(manifest, root / "pretrain"), "--trainer.max_epochs", "1"])
    assert code == 0
    return root


@pytest.fixture
def pretrained(pretrained_once: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A manifest and a real pretraining checkpoint written by `selip fit`: this test's own
    copy (in ``tmp_path``, where ``tiny_cohort`` writes) of the session's one run."""
    shutil.copytree(pretrained_once, tmp_path, dirs_exist_ok=True)
    [checkpoint] = (tmp_path / "pretrain").glob("runs/demo/version_*/checkpoints/last.ckpt")
    return tmp_path / "manifest.csv", checkpoint


@pytest.fixture
def frozen_encoder_states(pretrained, tmp_path):  # type: ignore[no-untyped-def]
    """Runs a downstream config with a frozen encoder (4 steps, validated after steps 2
    and 4: training steps with a validation in between) and returns ``(pretrained,
    trained)`` encoder state dicts."""

    def run(config: str, mode: str, **extra: object) -> tuple[dict[str, Any], dict[str, Any]]:
        manifest, checkpoint = pretrained
        args = tiny_data_overrides(manifest, tmp_path / mode, **{
            "--model.init_args.mode": mode, "--model.init_args.encoder_ckpt": str(checkpoint),
            "--data.similarity": "null", "--trainer.max_steps": 4,
            "--trainer.val_check_interval": 2, "--trainer.num_sanity_val_steps": 1, **extra})
        assert main(["fit", "--config", str(ROOT / "configs" / config), *args]) == 0
        [last] = (tmp_path / mode).glob("runs/*/version_*/checkpoints/last.ckpt")
        before = torch.load(checkpoint, weights_only=True)["state_dict"]
        after = torch.load(last, weights_only=True)["state_dict"]
        return ({k.removeprefix("model.image_"): v for k, v in before.items()
                 if k.startswith("model.image_encoder.")},
                {k: v for k, v in after.items() if k.startswith("encoder.")})

    return run
