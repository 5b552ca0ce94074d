"""The installed Lightning has the private hooks selip relies on; one without them is a
clear error naming them, not a silent no-op."""

from __future__ import annotations

import pytest
from lightning.pytorch.cli import LightningCLI

from selip.training.lightning_compat import (
    MIN_LIGHTNING,
    LightningVersionError,
    check_lightning,
    missing_hooks,
)


def test_the_installed_lightning_has_every_hook():
    assert missing_hooks() == []
    check_lightning()


def test_a_lightning_without_parse_ckpt_path_is_a_clear_error(monkeypatch):
    monkeypatch.delattr(LightningCLI, "_parse_ckpt_path")
    with pytest.raises(LightningVersionError) as error:
        check_lightning()
    message = str(error.value)
    assert "lightning.pytorch.cli.LightningCLI._parse_ckpt_path" in message
    assert f"lightning>={MIN_LIGHTNING}" in message


def test_a_lightning_without_the_launcher_hooks_is_a_clear_error(monkeypatch):
    from lightning.pytorch.strategies.launchers import subprocess_script

    monkeypatch.delattr(subprocess_script, "_launch_process_observer")
    assert missing_hooks() == [
        "lightning.pytorch.strategies.launchers.subprocess_script._launch_process_observer"]
