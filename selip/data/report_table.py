"""The dataset's unique report texts; ``report_id`` indexes this table.

The similarity matrix S (DESIGN §2.3) is computed over exactly these texts. When the
laterality flip is on, the mirrored text of every report is in the table too, so the id
of a flipped pair still points at the text the model was shown.
"""

from __future__ import annotations

from collections.abc import Iterable

from selip.data.reports import swap_laterality


class ReportTable:
    """Sorted unique texts (sorted, so every rank builds the same ids)."""

    def __init__(self, texts: Iterable[str], with_mirrored: bool = False) -> None:
        unique = set(texts)
        if with_mirrored:
            unique |= {swap_laterality(t) for t in unique}
        self.texts: list[str] = sorted(unique)
        self._ids = {text: index for index, text in enumerate(self.texts)}

    def __len__(self) -> int:
        return len(self.texts)

    def id_of(self, text: str) -> int:
        """The id of ``text``; ``KeyError`` names the text if it is not in the table."""
        try:
            return self._ids[text]
        except KeyError:
            raise KeyError(f"report text not in the table: {text[:80]!r}") from None
