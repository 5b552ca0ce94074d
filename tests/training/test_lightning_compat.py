"""The installed Lightning has the private function selip relies on; one without it is a
clear error naming it, not a silent no-op; the others are no longer touched."""

from __future__ import annotations

import pytest

from selip.training.lightning_compat import (
    MIN_LIGHTNING,
    LightningVersionError,
    check_lightning,
    missing_hooks,
)


def test_the_installed_lightning_has_every_hook():
    assert missing_hooks() == []
    check_lightning()


def test_a_lightning_without_the_launcher_hooks_is_a_clear_error(monkeypatch):
    from lightning.pytorch.strategies.launchers import subprocess_script

    monkeypatch.delattr(subprocess_script, "_launch_process_observer")
    assert missing_hooks() == [
        "lightning.pytorch.strategies.launchers.subprocess_script._launch_process_observer"]
    with pytest.raises(LightningVersionError) as error:
        check_lightning()
    assert f"lightning>={MIN_LIGHTNING}" in str(error.value)


def test_selip_no_longer_touches_the_other_private_functions():
    """``--ckpt_path`` is settled in the public ``parse_arguments``, and the ranks' command
    comes from ``sys.argv``/``__main__.__spec__``: undoing either brings back an override
    of a private function, which this names."""
    import inspect

    from lightning.pytorch.strategies.launchers import subprocess_script

    from selip.training import launch, lightning_cli

    assert "_parse_ckpt_path" not in vars(lightning_cli.SelipCLI)
    assert "_basic_subprocess_cmd" not in inspect.getsource(launch)
    with launch.lightning_launcher(["fit", "--config", "c.yaml"]):
        assert subprocess_script._basic_subprocess_cmd()[1:] == [
            "-m", "selip.cli", "fit", "--config", "c.yaml"]
