"""One tiny pretraining run shared by the module's tests (training it per test costs
seconds each in CI): a manifest and a real checkpoint written by `selip fit`."""

from __future__ import annotations

from pathlib import Path

import pytest

from selip.cli import main
from tests.conftest import make_tiny_cohort
from tests.tasks.conftest import ROOT, tiny_overrides


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("trained")
    manifest = make_tiny_cohort(root / "cohort", n=10)
    run = root / "pretrain"
    code = main(["fit", "--config", str(ROOT / "configs" / "demo.yaml"),
                 *tiny_overrides(manifest, run), "--trainer.max_epochs", "1"])
    assert code == 0
    [checkpoint] = run.glob("runs/demo/version_*/checkpoints/last.ckpt")
    return manifest, checkpoint
