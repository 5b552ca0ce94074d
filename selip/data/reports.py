"""Radiology reports: parsing, per-sequence findings text, laterality swap.

A report is given either as free text or as structured findings per sequence
(DESIGN §2.1)::

    {"FLAIR": [{"location": "left frontal lobe", "appearance": "hyperintense signal"}]}
    {"normal": true}

Free text follows a one-section-per-line grammar, a sequence name, a colon, and the
findings for that sequence separated by semicolons::

    T1: left frontal lobe: hypointense signal.
    FLAIR: left frontal lobe: hyperintense signal; right thalamus: hyperintense signal.

Free text without sequence headers (any other prose) is paired unchanged with every
sequence. The text paired with a sequence is that sequence's findings joined by "; ";
a sequence without findings, and every sequence of a normal report, is paired with the
normal-report text (the sequence shows nothing abnormal).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from selip.data.manifest import KNOWN_SEQUENCES

#: The normal-report text of the English demo grammar.
NORMAL_REPORT_TEXT = "No abnormality detected."

_SECTION = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_*+-]*)\s*[:：]\s*(.*?)\s*[.。]?\s*$")
_LATERALITY_EN = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_LATERALITY_ZH = str.maketrans({"左": "右", "右": "左"})


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
    unchanged with every sequence.
    """

    findings: Mapping[str, tuple[Finding, ...]]
    normal: bool = False
    free_text: str | None = None

    def text_for(self, sequence: str, normal_text: str = NORMAL_REPORT_TEXT) -> str:
        """The text paired with ``sequence`` (DESIGN §2.1)."""
        if self.normal:
            return normal_text
        if self.free_text is not None:
            return self.free_text
        found = self.findings.get(sequence.lower(), ())
        if not found:
            return normal_text
        return "; ".join(f.render() for f in found)


def _structured(data: Mapping[str, Any]) -> Report:
    if data.get("normal") is True:
        return Report(findings={}, normal=True)
    findings: dict[str, tuple[Finding, ...]] = {}
    for sequence, items in data.items():
        if sequence == "normal":
            continue
        if not isinstance(items, list):
            raise ReportError(f"findings for {sequence!r} must be a list of "
                              f"{{'location', 'appearance'}} objects, got {type(items).__name__}")
        parsed = []
        for item in items:
            if not isinstance(item, Mapping) or not {"location", "appearance"} <= item.keys():
                raise ReportError(f"each finding for {sequence!r} needs 'location' and "
                                  f"'appearance', got {item!r}")
            parsed.append(Finding(str(item["location"]).strip(), str(item["appearance"]).strip()))
        findings[sequence.lower()] = tuple(parsed)
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
        body = match.group(2)
        if normalise_text(body) == normalise_text(normal_text):  # "FLAIR: No abnormality detected."
            sections[match.group(1).lower()] = ()
            continue
        parts = [p.strip() for p in re.split(r"[;；]", body) if p.strip()]
        sections[match.group(1).lower()] = tuple(_split_finding(p) for p in parts)
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
        return _structured(report)
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
        return _structured(data)
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
            body = "; ".join(f.render() for f in items)
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
