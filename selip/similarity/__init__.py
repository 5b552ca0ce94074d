"""Report similarity S (DESIGN §2.3): scorers, the vectorised engine, the on-disk table."""

from selip.similarity.config import PRESETS, SimilarityConfig, resolve_config
from selip.similarity.engine import SimilarityEngine, report_similarity

__all__ = ["PRESETS", "SimilarityConfig", "SimilarityEngine", "report_similarity",
           "resolve_config"]
