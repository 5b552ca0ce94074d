"""Report similarity S (docs/design.md §3): scorers, the vectorised engine, the on-disk table."""

from selip.similarity.config import PRESETS, SimilarityConfig, resolve_config
from selip.similarity.engine import SimilarityEngine, report_similarity
from selip.similarity.lookup import SimilarityLookup, TableSizing, open_similarity

__all__ = ["PRESETS", "SimilarityConfig", "SimilarityEngine", "SimilarityLookup", "TableSizing",
           "open_similarity", "report_similarity",
           "resolve_config"]
