"""The private Lightning hooks selip relies on, checked once at import.

selip overrides ``LightningCLI._parse_ckpt_path`` (``--ckpt_path last``, checkpoint
routing for zero-shot) and replaces two functions of Lightning's subprocess launcher
(:mod:`selip.training.launch`). They are private: a Lightning release without them would make those
features silently do nothing, so their absence is an error that says what to install.
``pyproject.toml`` requires the first release that has all three (2.5.5).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: The oldest Lightning release with every hook below (``_parse_ckpt_path`` came in 2.5.5).
MIN_LIGHTNING = "2.5.5"

#: (module, attribute) pairs that must exist.
REQUIRED_HOOKS = (
    ("lightning.pytorch.cli", "LightningCLI._parse_ckpt_path"),
    ("lightning.pytorch.strategies.launchers.subprocess_script", "_basic_subprocess_cmd"),
    ("lightning.pytorch.strategies.launchers.subprocess_script", "_launch_process_observer"),
)


class LightningVersionError(ImportError):
    """The installed Lightning lacks a hook selip needs."""


def _installed() -> str:
    try:
        return version("lightning")
    except PackageNotFoundError:
        return "unknown"


def missing_hooks() -> list[str]:
    """The ``module.attribute`` names of :data:`REQUIRED_HOOKS` that do not exist."""
    from importlib import import_module

    missing = []
    for module_name, attribute in REQUIRED_HOOKS:
        target: object = import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part, None)
            if target is None:
                missing.append(f"{module_name}.{attribute}")
                break
    return missing


def check_lightning() -> None:
    """Raise :class:`LightningVersionError` naming the installed version, what is missing
    and what to install, when the installed Lightning lacks a hook."""
    missing = missing_hooks()
    if missing:
        raise LightningVersionError(
            f"selip needs lightning>={MIN_LIGHTNING}; the installed lightning "
            f"{_installed()} lacks {', '.join(missing)}. Install a supported release: "
            f"pip install 'lightning>={MIN_LIGHTNING}'")
