"""A straightforward per-pair Python implementation of S (docs/design.md §3).

The readable statement of the rule, used by the tests to check the vectorised engine
and by the benchmarks as the baseline it must beat. Never used in training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rapidfuzz import distance

from selip.similarity.config import SimilarityConfig
from selip.similarity.findings import (
    ScoredReport,
    canonical_key,
    report_findings,
    signal_tag,
    syntax_text,
)
from selip.text.reports import Finding


def charset_dice(a: str, b: str) -> float:
    """2|X∩Y|/(|X|+|Y|) over the sets of non-space characters."""
    x = {c for c in a if not c.isspace()}
    y = {c for c in b if not c.isspace()}
    if not x and not y:
        return 1.0
    return 2.0 * len(x & y) / (len(x) + len(y))


def finding_similarity(f: Finding, g: Finding, config: SimilarityConfig,
                       embed: Any = None) -> float:
    """sim(f, g) = combine(syn(f, g), sem(f, g)) for one pair of findings."""
    a, b = syntax_text(f), syntax_text(g)
    if config.syntax == "charset_dice":
        syn = charset_dice(a, b)
    elif config.syntax == "indel":
        syn = distance.Indel.normalized_similarity(a, b)
    else:
        syn = distance.Levenshtein.normalized_similarity(a, b)
    if config.semantic == "fields":
        same_location = f.location.strip().lower() == g.location.strip().lower()
        same_tag = (signal_tag(f.appearance, config.signal_tags)
                    == signal_tag(g.appearance, config.signal_tags))
        sem = 0.5 * same_location + 0.5 * same_tag
    else:
        sem = max(0.0, float(embed(a) @ embed(b)))
    if config.combine == "product":
        return syn * sem
    return config.alpha * syn + (1 - config.alpha) * sem


def parsed_similarity(a: ScoredReport, b: ScoredReport, config: SimilarityConfig,
                      embed: Any = None) -> float:
    """S(a, b) for two different, already parsed reports."""
    if a.normal or b.normal:
        return 0.0
    total = sum(finding_similarity(f, g, config, embed) for f in a.findings for g in b.findings)
    return min(1.0, total / (len(a.findings) * len(b.findings)))


def pair_similarity(report_a: str | Mapping[str, Any], report_b: str | Mapping[str, Any],
                    config: SimilarityConfig, embed: Any = None) -> float:
    """S(a, b) by the definition, one pair at a time."""
    if canonical_key(report_a) == canonical_key(report_b):
        return 1.0
    a, b = report_findings(report_a, config), report_findings(report_b, config)
    return parsed_similarity(a, b, config, embed)
