"""The one private Lightning function selip relies on, checked once at import.

selip replaces ``_launch_process_observer`` of Lightning's subprocess launcher
(:mod:`selip.training.launch`): Lightning's observer kills rank 0 without a word when
another rank dies, and no public hook lets a program watch the ranks Lightning starts. A
release without the function would make selip's observer silently do nothing, so its
absence is an error that says what to install; the launcher tests check the behaviour
itself. Everything else selip needs from Lightning is public: ``--ckpt_path`` is settled
in ``LightningCLI.parse_arguments``, and the ranks are started with the command Lightning
reads from ``sys.argv`` and ``__main__.__spec__``. ``pyproject.toml`` pins the tested
range of releases.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: The oldest Lightning release selip is tested with (it reads a checkpoint's
#: hyper-parameters into the config, which selip's old-checkpoint handling expects).
MIN_LIGHTNING = "2.5.5"

#: (module, attribute) pairs that must exist.
REQUIRED_HOOKS = (
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
