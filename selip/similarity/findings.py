"""Reports → findings for scoring (docs/design.md §3).

A report (structured dict, JSON string, sectioned free text, or one sequence's pair text)
becomes a tuple of findings, pooled over sequences, or is recognised as normal. Text is
split into findings as the authors do (``selip.text.reports.finding_pieces``): at the
full-width comma ``，``, ``;`` ``；`` ``。`` and line breaks, never at an ASCII comma; a
finding reads ``<location>: <appearance>`` (English grammar) or
``在<location>表现为<appearance>`` (the authors' Chinese grammar), else the whole piece is
its appearance.

Reports written by people word one finding many ways. A config can read them through
synonyms (:data:`~selip.similarity.config.SIGNAL_TAG_SYNONYMS`,
:data:`~selip.similarity.config.LOCATION_SYNONYMS`): locations become ``<side> <region>``
before scoring, and pertinent negatives (``no midline shift``: no location, matching a
``negative_patterns`` entry) are dropped; a report of negatives only is normal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from selip.similarity.config import SimilarityConfig
from selip.text.reports import (
    Finding,
    ReportError,
    finding_pieces,
    normalise_text,
    parse_report,
)

_CHINESE = re.compile(r"^\s*在?(?P<location>.+?)表现为(?P<appearance>.+?)\s*$")
_CJK = re.compile(r"[\u3400-\u9fff]")
_SIDE_EN = re.compile(r"\b(left|right|bilateral)\b", re.IGNORECASE)
_SIDES_ZH = {"左": "左侧", "右": "右侧", "双": "双侧"}


@dataclass(frozen=True)
class ScoredReport:
    """A report as the scorers see it: its findings, or normal."""

    findings: tuple[Finding, ...]
    normal: bool = False


def canonical_key(report: str | Mapping[str, Any]) -> str:
    """Identity of a report: its stripped text, or sorted JSON for a mapping."""
    if isinstance(report, Mapping):
        return json.dumps(report, sort_keys=True, ensure_ascii=False)
    return str(report).strip()


def split_finding(piece: str) -> Finding:
    """One finding from its text in either grammar."""
    match = _CHINESE.match(piece)
    if match is not None:
        return Finding(match["location"].strip(), match["appearance"].strip(" .。"))
    for colon in (":", "："):
        location, sep, appearance = piece.partition(colon)
        if sep and appearance.strip():
            return Finding(location.strip(), appearance.strip(" .。"))
    return Finding("", piece.strip(" .。"))


def split_findings(text: str) -> tuple[Finding, ...]:
    """Findings of a free text (no sequence sections)."""
    return tuple(split_finding(p) for p in finding_pieces(text))


def is_normal_text(text: str, config: SimilarityConfig) -> bool:
    """Whether ``text`` is one of the configured normal texts or matches a pattern."""
    normalised = normalise_text(text)
    if any(normalised == normalise_text(t) for t in config.normal_texts):
        return True
    return any(re.search(p, text) for p in config.normal_patterns)


def report_findings(report: str | Mapping[str, Any], config: SimilarityConfig) -> ScoredReport:
    """The findings of one report, pooled over its sequences.

    Raises:
        ReportError: for an empty or malformed report.
    """
    if isinstance(report, str) and is_normal_text(report, config):
        return ScoredReport((), normal=True)
    parsed = parse_report(report, normal_text=config.normal_texts[0]
                          if config.normal_texts else "\0")
    if parsed.normal:
        return ScoredReport((), normal=True)
    if parsed.free_text is not None:
        findings = split_findings(parsed.free_text)
    else:
        findings = tuple(_located(f) for items in parsed.findings.values() for f in items)
    if not findings:
        raise ReportError(f"no findings in report {str(report)[:60]!r}")
    kept = tuple(f for f in findings if not is_negative(f, config))
    if not kept:  # pertinent negatives only: nothing abnormal
        return ScoredReport((), normal=True)
    if config.location_synonyms:
        kept = tuple(Finding(canonical_location(f.location, config.location_synonyms),
                             f.appearance) for f in kept)
    return ScoredReport(kept)


def is_negative(finding: Finding, config: SimilarityConfig) -> bool:
    """Whether ``finding`` is a pertinent negative: no location, and its text matches one
    of ``config.negative_patterns`` (case-insensitive)."""
    if finding.location.strip() or not config.negative_patterns:
        return False
    return any(re.search(p, finding.appearance, re.IGNORECASE)
               for p in config.negative_patterns)


def canonical_location(location: str, synonyms: tuple[tuple[str, str], ...]) -> str:
    """``<side> <region>`` for the first ``(phrase, region)`` whose phrase ``location``
    holds (``lentiform nucleus on the left`` → ``left basal ganglia``; Chinese
    ``左基底节`` → ``左侧基底节区``), else ``location`` unchanged. The side is the first
    of left / right / bilateral (左 / 右 / 双) in the location, if any."""
    lowered = location.lower()
    for phrase, region in synonyms:
        if phrase.lower() not in lowered:
            continue
        if _CJK.search(region):
            side = next((_SIDES_ZH[c] for c in location if c in _SIDES_ZH), "")
            return side + region
        match = _SIDE_EN.search(location)
        return f"{match.group(1).lower()} {region}" if match else region
    return location


def _located(finding: Finding) -> Finding:
    """A parsed finding without a location, read again in both grammars: the report
    parser splits ``<location>: <appearance>`` only, so a Chinese
    ``在<location>表现为<appearance>`` comes to here whole."""
    return finding if finding.location else split_finding(finding.appearance)


def signal_tag(appearance: str, tags: tuple[str, ...]) -> str:
    """The first tag of ``tags`` found in ``appearance``, else the whole appearance.

    A tag ``name|synonym|…`` is found by any of its words and answers ``name``
    (``high signal`` → ``hyperintense`` with ``hyperintense|high signal``)."""
    lowered = appearance.lower()
    for tag in tags:
        words = tag.lower().split("|")
        if any(word and word in lowered for word in words):
            return words[0]
    return lowered.strip()


def syntax_text(finding: Finding) -> str:
    """The text the syntax scorers compare: location and appearance."""
    return f"{finding.location} {finding.appearance}".strip()
