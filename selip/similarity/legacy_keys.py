"""Read command lines and config files written for an earlier release.

One translation step, run on the arguments of every ``selip`` command that parses the data
settings, before the parser sees them: the flat ``data.similarity_<field>`` keys (before
the ``data.similarity:`` block) move into the block, in ``--data.similarity_<field>``
options and in the files (or YAML strings) given to ``--config``. A run prints one warning
naming every key it moved; the launched ranks of a multi-process run stay quiet.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from selip.similarity.settings import FLAT_KEYS, flat_keys_message, nest_flat_keys

#: The sections of a top-level config file that hold a subcommand's settings.
_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class FlatSimilarityKeysWarning(FutureWarning):
    """A config or command line uses the flat ``data.similarity_<field>`` keys."""


def _translate_config(config: Any) -> tuple[Any, list[str]]:
    """A parsed config with its data section translated, at the top level and in each
    subcommand's section, and the keys moved."""
    if not isinstance(config, dict):
        return config, []
    config = dict(config)
    moved: list[str] = []
    if isinstance(config.get("data"), dict):
        config["data"], moved = nest_flat_keys(config["data"])
    for section in _SUBCOMMANDS:
        if isinstance(config.get(section), dict):
            config[section], found = _translate_config(config[section])
            moved += found
    return config, moved


def _translate_config_argument(value: str) -> tuple[str, list[str]]:
    """A ``--config`` value (a file or a YAML string): unchanged when it holds no flat
    keys, else the translated config as a YAML string."""
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else value
        parsed = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return value, []  # the parser reports an unreadable config in its own words
    translated, moved = _translate_config(parsed)
    if not moved:
        return value, []
    return yaml.safe_dump(translated, sort_keys=False, allow_unicode=True), moved


def translate_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` with the flat similarity keys moved into ``data.similarity``; warns once
    (on the first rank only) when any moved."""
    out: list[str] = []
    moved: list[str] = []
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        name, equals, inline = arg.partition("=")
        flat = name.removeprefix("--data.")
        if name.startswith("--data.") and flat in FLAT_KEYS:
            out.append(f"--data.similarity.{FLAT_KEYS[flat]}{equals}{inline}")
            moved.append(flat)
        elif name == "--config" and (equals or index + 1 < len(args)):
            value = inline if equals else args[index + 1]
            value, found = _translate_config_argument(value)
            moved += found
            out += [f"--config={value}"] if equals else ["--config", value]
            index += 0 if equals else 1
        else:
            out.append(arg)
        index += 1
    if moved and int(os.environ.get("LOCAL_RANK", 0) or 0) == 0 \
            and int(os.environ.get("NODE_RANK", 0) or 0) == 0:
        warnings.warn(flat_keys_message(list(dict.fromkeys(moved))),
                      FlatSimilarityKeysWarning, stacklevel=2)
    return out
