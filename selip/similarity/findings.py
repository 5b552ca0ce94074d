"""Reports → findings for scoring (DESIGN §2.3).

A report (structured dict, JSON string, sectioned free text, or one sequence's pair text)
becomes a tuple of findings, pooled over sequences, or is recognised as normal. Text is
split into findings as the authors do (``selip.data.reports.finding_pieces``): at the
full-width comma ``，``, ``;`` ``；`` ``。`` and line breaks, never at an ASCII comma; a
finding reads ``<location>: <appearance>`` (English grammar) or
``在<location>表现为<appearance>`` (the authors' Chinese grammar), else the whole piece is
its appearance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from selip.data.reports import (
    Finding,
    ReportError,
    finding_pieces,
    normalise_text,
    parse_report,
)
from selip.similarity.config import SimilarityConfig

_CHINESE = re.compile(r"^\s*在?(?P<location>.+?)表现为(?P<appearance>.+?)\s*$")


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
    return ScoredReport(findings)


def _located(finding: Finding) -> Finding:
    """A parsed finding without a location, read again in both grammars: the report
    parser splits ``<location>: <appearance>`` only, so a Chinese
    ``在<location>表现为<appearance>`` comes to here whole."""
    return finding if finding.location else split_finding(finding.appearance)


def signal_tag(appearance: str, tags: tuple[str, ...]) -> str:
    """The first tag of ``tags`` found in ``appearance``, else the whole appearance."""
    lowered = appearance.lower()
    for tag in tags:
        if tag.lower() in lowered:
            return tag.lower()
    return lowered.strip()


def syntax_text(finding: Finding) -> str:
    """The text the syntax scorers compare: location and appearance."""
    return f"{finding.location} {finding.appearance}".strip()
