"""One version everywhere: pyproject.toml, ``selip.__version__`` (recorded in checkpoints
and similarity tables) and the installed metadata."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import selip
from selip._version import __version__


def test_the_version_is_the_same_in_every_place():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert selip.__version__ == __version__ == pyproject["project"]["version"]
    assert importlib.metadata.version("selip") == __version__
