"""Settings of the report-similarity rule S (DESIGN §2.3) and its presets.

Every field changes S, so every field is part of the similarity table's cache key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from selip.data.reports import NORMAL_REPORT_TEXT

SyntaxScorer = Literal["charset_dice", "indel", "levenshtein"]
SemanticScorer = Literal["fields", "embedding"]
Combine = Literal["product", "weighted"]

#: Signal tags of the authors' Chinese grammar, in the order they are searched.
CHINESE_SIGNAL_TAGS = ("高信号", "低信号", "长信号", "短信号", "等信号")
#: Signal tags of the English demo grammar; longer phrases first so they win.
ENGLISH_SIGNAL_TAGS = ("restricted diffusion", "hyperintense", "hypointense", "isointense",
                       "mixed signal", "enhancement", "haemorrhage", "calcification")
#: Normal-report texts recognised without configuration (compared case- and
#: whitespace-insensitively, trailing full stop ignored).
DEFAULT_NORMAL_TEXTS = (NORMAL_REPORT_TEXT, "未见明显异常", "未见异常")

#: Bump when the scoring code changes its results: old tables go stale.
SIMILARITY_VERSION = 2  # 2: findings also split at the authors' full-width comma


@dataclass(frozen=True)
class SimilarityConfig:
    """How two reports are compared.

    Args:
        syntax: surface scorer over the text of location + appearance —
            ``charset_dice`` (2|X∩Y|/(|X|+|Y|) over character sets, the authors' choice),
            ``indel`` (normalised Indel similarity), ``levenshtein`` (normalised).
        semantic: ``fields`` — 0.5·[same location] + 0.5·[same signal tag] — or
            ``embedding`` — cosine of sentence embeddings (clipped at 0).
        combine: ``product`` (authors' code) or ``weighted``: α·syn + (1−α)·sem.
        alpha: weight of the syntax score in ``weighted``.
        signal_tags: tag vocabulary; an appearance's tag is the first tag it contains,
            else the whole appearance.
        normal_texts: texts of normal reports (besides ``{"normal": true}``).
        normal_patterns: regular expressions; a report matching one is normal.
        text_model: sentence-embedding model folder (``embedding`` only; default: the
            packaged MiniLM).
        embedding_batch_size: texts per forward pass of the embedding model.
    """

    syntax: SyntaxScorer = "charset_dice"
    semantic: SemanticScorer = "fields"
    combine: Combine = "product"
    alpha: float = 0.5
    signal_tags: tuple[str, ...] = CHINESE_SIGNAL_TAGS + ENGLISH_SIGNAL_TAGS
    normal_texts: tuple[str, ...] = DEFAULT_NORMAL_TEXTS
    normal_patterns: tuple[str, ...] = ()
    text_model: str | None = None
    embedding_batch_size: int = 256

    def __post_init__(self) -> None:
        choices = {"syntax": ("charset_dice", "indel", "levenshtein"),
                   "semantic": ("fields", "embedding"), "combine": ("product", "weighted")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"similarity.{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"similarity.alpha must be in [0, 1], got {self.alpha}")
        if self.embedding_batch_size < 1:
            raise ValueError("similarity.embedding_batch_size must be >= 1")

    def fingerprint(self) -> dict[str, Any]:
        """Every setting that changes S, with the code version (batch size excluded)."""
        data = asdict(self)
        data.pop("embedding_batch_size")
        if self.semantic != "embedding":
            data.pop("text_model")
        return {**data, "version": SIMILARITY_VERSION}


PRESETS: dict[str, SimilarityConfig] = {
    # The authors' released rule: char-set Dice × field agreement, normal → 0.
    "paper": SimilarityConfig(syntax="charset_dice", semantic="fields", combine="product"),
    # English demo grammar: over a 26-letter alphabet the character sets of any two
    # findings overlap heavily, so the order-aware Indel ratio carries the surface signal,
    # and a weighted sum keeps partial credit when only the side or only the signal
    # differs. Chosen by benchmarks/similarity_presets.py: best AUROC of S for
    # same-diagnosis vs different-diagnosis demo texts among the field-agreement rules.
    "english": SimilarityConfig(syntax="indel", semantic="fields", combine="weighted",
                                alpha=0.7),
}


def resolve_config(preset: str | SimilarityConfig, **overrides: Any) -> SimilarityConfig:
    """A preset by name (``paper``, ``english``) or a config, with field overrides."""
    if isinstance(preset, SimilarityConfig):
        config = preset
    elif preset in PRESETS:
        config = PRESETS[preset]
    else:
        raise ValueError(f"unknown similarity preset {preset!r}; choose one of "
                         f"{', '.join(PRESETS)} or pass a SimilarityConfig")
    return replace(config, **overrides) if overrides else config
