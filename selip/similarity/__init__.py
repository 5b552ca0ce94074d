"""Report similarity S (docs/design.md §3): scorers, the vectorised engine, the on-disk table.

The names below are loaded on first use: ``selip.similarity.settings`` and
``legacy_keys``, which every ``selip`` command reads before it starts, need no torch, and
importing them (this package first) should not load it for ``selip import``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selip.similarity.config import PRESETS, SimilarityConfig, resolve_config
    from selip.similarity.engine import SimilarityEngine, report_similarity
    from selip.similarity.lookup import SimilarityLookup, open_similarity
    from selip.similarity.sizing import TableSizing

_WHERE = {"PRESETS": "config", "SimilarityConfig": "config", "resolve_config": "config",
          "SimilarityEngine": "engine", "report_similarity": "engine",
          "SimilarityLookup": "lookup", "TableSizing": "sizing", "open_similarity": "lookup"}

__all__ = ["PRESETS", "SimilarityConfig", "SimilarityEngine", "SimilarityLookup", "TableSizing",
           "open_similarity", "report_similarity", "resolve_config"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'selip.similarity' has no attribute {name!r}")
    return getattr(importlib.import_module(f"selip.similarity.{_WHERE[name]}"), name)
