"""The dataset's unique report texts; ``report_id`` indexes this table.

The similarity matrix S (docs/design.md §3) is computed over exactly these texts. When the
laterality flip is on, the mirrored text of every report is in the table too, so the id
of a flipped pair still points at the text that describes it. A mirrored text with the
same findings as a report of the table (a bilateral ``left X: a; right X: a`` mirrors to
``right X: a; left X: a``) is that report: it gets its id, not a new text, so a flipped
pair stays a positive of the identical unflipped one and S between them is 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from selip.text.reports import finding_pieces, swap_laterality


def findings_key(text: str) -> tuple[tuple[str, int], ...]:
    """The multiset of a text's findings (split as the scorers split them), ignoring
    order: equal keys ⇔ the same findings, so the same S with every report."""
    pieces = Counter(p.strip(" .。") for p in finding_pieces(text))
    return tuple(sorted(pieces.items()))


class ReportTable:
    """Sorted unique texts (sorted, so every rank builds the same ids)."""

    def __init__(self, texts: Iterable[str], with_mirrored: bool = False) -> None:
        originals = sorted(set(texts))
        aliases, mirrors = _mirrors(originals) if with_mirrored else ({}, [])
        self.texts: list[str] = sorted(originals + mirrors)
        self._ids = {text: index for index, text in enumerate(self.texts)}
        self._ids.update({alias: self._ids[text] for alias, text in aliases.items()})

    def __len__(self) -> int:
        return len(self.texts)

    def id_of(self, text: str) -> int:
        """The id of ``text``; ``KeyError`` names the text if it is not in the table."""
        try:
            return self._ids[text]
        except KeyError:
            raise KeyError(f"report text not in the table: {text[:80]!r}") from None


def _mirrors(originals: list[str]) -> tuple[dict[str, str], list[str]]:
    """The mirrored texts of sorted ``originals``: ``(aliases, new texts)``.

    A mirrored text that occurs is itself; one with the findings of a text already
    there (an original first, else an earlier mirror) is an alias of that text;
    any other is a new text of the table.
    """
    known = set(originals)
    by_findings: dict[tuple[tuple[str, int], ...], str] = {}
    for text in originals:
        by_findings.setdefault(findings_key(text), text)
    aliases: dict[str, str] = {}
    mirrors: list[str] = []
    for text in originals:
        mirrored = swap_laterality(text)
        if mirrored in known or mirrored in aliases:
            continue
        same = by_findings.setdefault(findings_key(mirrored), mirrored)
        if same == mirrored:
            known.add(mirrored)
            mirrors.append(mirrored)
        else:
            aliases[mirrored] = same
    return aliases, mirrors
