"""Radiology reports: parsing, per-sequence findings text, laterality swap.

A report is given either as free text or as structured findings per sequence
(docs/design.md §1)::

    {"FLAIR": [{"location": "left frontal lobe", "appearance": "hyperintense signal"}]}
    {"normal": true}

The authors' structured form, one findings text per sequence, is read too::

    {"T1": "在左侧基底节区表现为低信号",
     "FLAIR": "在左侧基底节区表现为高信号，在右侧额叶表现为低信号"}
    {"normal": "未见明显异常"}

Free text follows a one-section-per-line grammar, a sequence name, a colon, and the
findings for that sequence::

    T1: left frontal lobe: hypointense signal.
    FLAIR: left frontal lobe: hyperintense signal; right thalamus: hyperintense signal.

Findings are separated as the authors do (``finding_pieces``): by the full-width comma
``，`` of their Chinese reports, and by ``;`` ``；`` ``。`` and line breaks; an ASCII comma
never separates findings (``hyperintense, irregular signal`` is one appearance).

Free text without sequence headers (any other prose) is paired unchanged with every
sequence. The text paired with a sequence is that sequence's findings joined by "; "
(by "，" when they are Chinese, so the authors' text comes back unchanged); a sequence
without findings, and every sequence of a normal report, is paired with the
normal-report text (the sequence shows nothing abnormal).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from selip.text.sequences import KNOWN_SEQUENCES

#: The normal-report text of the English demo grammar.
NORMAL_REPORT_TEXT = "No abnormality detected."

_SECTION = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_*+-]*)\s*[:：]\s*(.*?)\s*[.。]?\s*$")
_LATERALITY_EN = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_LATERALITY_ZH = str.maketrans({"左": "右", "右": "左"})
_FINDING_BREAKS = re.compile(r"[;；。，\n]+")
_CJK = re.compile(r"[\u3400-\u9fff]")


class ReportError(ValueError):
    """A report that cannot be read; the message says what was expected."""


@dataclass(frozen=True)
class Finding:
    """One finding: where it is and how it looks."""

    location: str
    appearance: str

    def render(self) -> str:
        """The finding in the English demo grammar: ``<location>: <appearance>``
        (just the appearance when the location is unknown)."""
        return f"{self.location}: {self.appearance}" if self.location else self.appearance


@dataclass(frozen=True)
class Report:
    """A parsed report: findings per (lower-case) sequence name, or normal.

    ``free_text`` holds prose that follows no sequence grammar; it is then paired
    unchanged with every sequence. ``normal_text`` is a normal report's own sentence
    (the authors' ``{"normal": "未见明显异常"}``), paired with every sequence instead of
    the configured normal text.
    """

    findings: Mapping[str, tuple[Finding, ...]]
    normal: bool = False
    free_text: str | None = None
    normal_text: str | None = None

    def text_for(self, sequence: str, normal_text: str = NORMAL_REPORT_TEXT) -> str:
        """The text paired with ``sequence`` (docs/design.md §1)."""
        if self.normal:
            return self.normal_text or normal_text
        if self.free_text is not None:
            return self.free_text
        found = self.findings.get(sequence.lower(), ())
        if not found:
            return normal_text
        return join_findings(found)


def finding_pieces(text: str) -> list[str]:
    """The findings of a free text, split as the authors do: at ``，`` (their Chinese
    reports join the findings of a sequence with it), ``;`` ``；`` ``。`` and line breaks.
    An ASCII comma does not split. Pieces are stripped; empty ones are dropped."""
    return [p.strip() for p in _FINDING_BREAKS.split(text) if p.strip(" .")]


def join_findings(findings: Iterable[Finding]) -> str:
    """Rendered findings joined by "; ", or by the authors' "，" when they are Chinese."""
    rendered = [f.render() for f in findings]
    separator = "，" if any(_CJK.search(r) for r in rendered) else "; "
    return separator.join(rendered)


def _text_findings(text: str, normal_text: str) -> tuple[Finding, ...]:
    """The findings of one sequence's text; none for the normal text."""
    if normalise_text(text) == normalise_text(normal_text):  # "FLAIR: No abnormality detected."
        return ()
    return tuple(_split_finding(p) for p in finding_pieces(text))


def _listed_findings(sequence: str, items: list[Any]) -> tuple[Finding, ...]:
    """Findings given as ``{"location", "appearance"}`` objects."""
    parsed = []
    for item in items:
        if not isinstance(item, Mapping) or not {"location", "appearance"} <= item.keys():
            raise ReportError(f"each finding for {sequence!r} needs 'location' and "
                              f"'appearance', got {item!r}")
        parsed.append(Finding(str(item["location"]).strip(), str(item["appearance"]).strip()))
    return tuple(parsed)


def _structured(data: Mapping[str, Any], normal_text: str) -> Report:
    """A structured report: per sequence a list of finding objects or a findings text
    (the authors' form); ``{"normal": true}`` or ``{"normal": "<text>"}`` is normal."""
    if data.get("normal") is True:
        return Report(findings={}, normal=True)
    if isinstance(data.get("normal"), str) and data["normal"].strip():
        return Report(findings={}, normal=True, normal_text=data["normal"].strip())
    findings: dict[str, tuple[Finding, ...]] = {}
    for sequence, items in data.items():
        if sequence == "normal":
            continue
        if isinstance(items, str):
            findings[sequence.lower()] = _text_findings(items, normal_text)
        elif isinstance(items, list):
            findings[sequence.lower()] = _listed_findings(sequence, items)
        else:
            raise ReportError(f"findings for {sequence!r} must be a list of "
                              f"{{'location', 'appearance'}} objects or a findings text, "
                              f"got {type(items).__name__}")
    if not any(findings.values()):
        raise ReportError("structured report has no findings; write {\"normal\": true} "
                          "for a normal exam")
    return Report(findings=findings)


def _split_finding(text: str) -> Finding:
    location, sep, appearance = text.partition(":")
    if not sep:
        location, sep, appearance = text.partition("：")
    if not sep:
        return Finding(location="", appearance=text.strip())
    return Finding(location.strip(), appearance.strip())


def _free_text(text: str, sequences: Iterable[str], normal_text: str) -> Report:
    headers = set(KNOWN_SEQUENCES) | {s.lower() for s in sequences}
    sections: dict[str, tuple[Finding, ...]] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        match = _SECTION.match(line)
        if match is None or match.group(1).lower() not in headers:
            return Report(findings={}, free_text=text.strip())
        sections[match.group(1).lower()] = _text_findings(match.group(2), normal_text)
    if not any(sections.values()):
        return Report(findings={}, normal=True)
    return Report(findings=sections)


def parse_report(report: str | Mapping[str, Any], normal_text: str = NORMAL_REPORT_TEXT,
                 sequences: Iterable[str] = ()) -> Report:
    """Parse a report given as a structured mapping, a JSON string or free text.

    A free-text line is a section only when its header is a known sequence name
    (``KNOWN_SEQUENCES``) or one of ``sequences``, so a finding such as
    ``thalamus: hyperintense signal`` is not mistaken for a header.

    Raises:
        ReportError: for an empty report or malformed structured findings.
    """
    if isinstance(report, Mapping):
        return _structured(report, normal_text)
    text = str(report).strip()
    if not text:
        raise ReportError("report is empty")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ReportError(f"report looks like JSON but does not parse: {err}") from None
        if not isinstance(data, dict):
            raise ReportError("a structured report must be a JSON object")
        return _structured(data, normal_text)
    if normalise_text(text) == normalise_text(normal_text):
        return Report(findings={}, normal=True)
    return _free_text(text, sequences, normal_text)


def render_report(findings: Mapping[str, list[Finding]] | None,
                  sequence_names: Mapping[str, str] | None = None,
                  normal_text: str = NORMAL_REPORT_TEXT) -> str:
    """Render findings per sequence as free text in the English demo grammar.

    ``None`` or empty findings render the normal-report text. ``sequence_names`` maps
    a column name (``flair``) to the header written in the report (``FLAIR``).
    """
    if not findings or not any(findings.values()):
        return normal_text
    names = sequence_names or {}
    lines = []
    for sequence, items in findings.items():
        if items:
            body = join_findings(items)
            lines.append(f"{names.get(sequence, sequence.upper())}: {body}.")
    return "\n".join(lines)


def swap_laterality(text: str) -> str:
    """Swap left and right in a report text (English words, case kept; Chinese 左/右).

    Used by the laterality-consistent flip: an image flipped left–right is paired
    with the text that describes it.
    """
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        if word[0].isupper():
            return other.capitalize()
        return other

    return _LATERALITY_EN.sub(swap, text).translate(_LATERALITY_ZH)


def normalise_text(text: str) -> str:
    """Lower case, single spaces, no trailing full stop: how report texts are compared."""
    return " ".join(text.lower().split()).rstrip(".。")
