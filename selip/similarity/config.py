"""Settings of the report-similarity rule S (docs/design.md §3) and its presets.

Every field changes S, so every field is part of the similarity table's cache key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from selip.text.reports import NORMAL_REPORT_TEXT

SyntaxScorer = Literal["charset_dice", "indel", "levenshtein"]
SemanticScorer = Literal["fields", "embedding"]
Combine = Literal["product", "weighted"]

#: Signal tags of the authors' Chinese grammar, in the order they are searched.
CHINESE_SIGNAL_TAGS = ("高信号", "低信号", "长信号", "短信号", "等信号")
#: Signal tags of the English demo grammar; longer phrases first so they win.
ENGLISH_SIGNAL_TAGS = ("restricted diffusion", "hyperintense", "hypointense", "isointense",
                       "mixed signal", "enhancement", "haemorrhage", "calcification")
#: Tags with their synonyms (``name|synonym|…``: any of them in an appearance gives the
#: tag ``name``), English and Chinese, for reports written by people: ``high signal``,
#: ``FLAIR hyperintensity`` and ``T2-bright`` are one tag, as are 高信号 and 长T2信号.
#: Searched in this order: what a finding is (oedema around a mass, multiple foci,
#: restricted diffusion, mixed signal) before its plain signal.
SIGNAL_TAG_SYNONYMS = (
    "oedema|edema|水肿",
    "foci|plaques|multifocal|多发|散在",
    "restricted diffusion|diffusion restriction|reduced diffusivity|弥散受限|扩散受限",
    "mixed signal|heterogeneous|variable signal|混杂|信号不均",
    "hyperintense|hyperintens|high signal|high-signal|increased signal|bright|prolongation",
    "hypointense|hypointens|low signal|decreased signal|reduced signal|dark|low adc"
    "|reduced adc",
    "isointense|iso-intense|conspicuous",
    "高信号|长t2",
    "低信号|长t1|adc值减低",
    "等信号|等t1|信号未见明显异常",
    "enhancement|enhancing", "haemorrhage|hemorrhage", "calcification")
#: Region names and what they are called otherwise: a location holding the phrase (left)
#: reads as ``<side> <region>`` (right) for field agreement (first match wins).
LOCATION_SYNONYMS = (
    ("periventricular", "periventricular white matter"),
    ("lateral ventricle", "periventricular white matter"),
    ("basal ganglia", "basal ganglia"), ("lentiform", "basal ganglia"),
    ("putamen", "basal ganglia"), ("thalam", "thalamus"),
    ("cerebell", "cerebellar hemisphere"), ("frontal", "frontal lobe"),
    ("parietal", "parietal lobe"), ("temporal", "temporal lobe"),
    ("occipital", "occipital lobe"),
    ("侧脑室", "侧脑室旁白质"), ("脑室旁", "侧脑室旁白质"), ("脑室周围", "侧脑室旁白质"),
    ("基底节", "基底节区"), ("豆状核", "基底节区"), ("壳核", "基底节区"), ("丘脑", "丘脑"),
    ("小脑", "小脑半球"), ("额", "额叶"), ("顶", "顶叶"), ("颞", "颞叶"), ("枕", "枕叶"))
#: Pertinent negatives: a finding without a location that matches one (``no midline
#: shift``, ``ventricles normal in size``, 中线结构居中, 未见出血) states an absence.
NEGATIVE_PATTERNS = (r"^\s*(?:no|without)\b", r"\bnormal\b", r"\bunremarkable\b",
                     r"未见", r"居中", r"^\s*无")
#: Normal-report texts recognised without configuration (compared case- and
#: whitespace-insensitively, trailing full stop ignored); the demo writes each of them.
DEFAULT_NORMAL_TEXTS = (
    NORMAL_REPORT_TEXT, "未见明显异常", "未见异常", "Normal MRI of the brain.",
    "No acute intracranial abnormality.", "Unremarkable MRI of the brain.",
    "No focal lesion. Ventricles and sulci are normal for age.", "颅脑MRI平扫未见明显异常",
    "脑实质未见明确异常信号", "颅内未见明显异常信号影", "脑实质内未见异常信号，脑室系统未见扩张")

#: Bump when the scoring code changes its results: old tables go stale.
# 2: findings also split at the authors' full-width comma
# 3: tag synonyms (``name|synonym``), location synonyms, pertinent negatives
SIMILARITY_VERSION = 3


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
            else the whole appearance. An entry ``name|synonym|…`` is one tag, ``name``,
            found by any of its words (:data:`SIGNAL_TAG_SYNONYMS`).
        location_synonyms: ``(phrase, region)`` pairs; a location holding ``phrase`` is
            read as ``<side> <region>`` (side: left / right, 左侧 / 右侧, if it names one)
            by both scorers, e.g. ``lentiform nucleus on the left`` → ``left basal
            ganglia``. Empty: locations are compared as written (the authors' rule).
        negative_patterns: regular expressions (case-insensitive); a finding without a
            location that matches one is a pertinent negative (``no midline shift``)
            and is not scored. A report of negatives only is normal.
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
    location_synonyms: tuple[tuple[str, str], ...] = ()
    negative_patterns: tuple[str, ...] = ()
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
    # Written reports word one finding many ways: tags and locations read through their
    # synonyms, and pertinent negatives are not findings (benchmarks/demo_reports.py).
    "english": SimilarityConfig(syntax="indel", semantic="fields", combine="weighted",
                                alpha=0.7,
                                signal_tags=SIGNAL_TAG_SYNONYMS + CHINESE_SIGNAL_TAGS
                                + ENGLISH_SIGNAL_TAGS,
                                location_synonyms=LOCATION_SYNONYMS,
                                negative_patterns=NEGATIVE_PATTERNS),
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
