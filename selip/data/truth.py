"""The structured truth of every pair: what each (exam, sequence) shows (``data.truth``).

``selip demo-data`` writes ``truth.jsonl`` beside the manifest (any cohort may carry
one), one line per pair::

    {"exam_id": "demo_0000", "sequence": "flair", "diagnosis": "infarct",
     "findings": [{"kind": "infarct", "region": "thalamus", "side": "right",
                   "size_mm": 21, "extent_mm": [21, 20], "foci": 1,
                   "signal": "hyperintense signal"}]}

A normal exam's lines have no findings. Reports word the same finding in many ways; the
truth says what was meant, so two pairs *describe the same findings* when their sets of
``(kind, region, side)`` are equal (:attr:`PairTruth.key`) — the hit rule of a
"clinical" R@K. ``signal`` is the finding's canonical appearance on that sequence
(``isointense signal`` = the lesion does not show there, yet the report mentions it).

:func:`truth_classes` numbers the keys for the retrieval metrics: a class per pair, and
the classes of the pairs carrying each report text — a flipped pair carries its mirrored
text, with the sides of its key swapped (:func:`mirrored_key`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selip.io.atomic import atomic_write_bytes

#: The truth file's name in the cohort folder.
TRUTH_FILE = "truth.jsonl"
#: What identifies a finding for matching: (kind, region, side).
FindingKey = tuple[str, str, str]
#: What identifies a pair's findings: the set of its findings' keys (empty when normal).
TruthKey = frozenset[FindingKey]
_OTHER_SIDE = {"left": "right", "right": "left"}


@dataclass(frozen=True)
class FindingTruth:
    """One lesion as seen on one sequence.

    Attributes:
        kind: ``infarct``, ``tumour`` or ``demyelination``.
        region: an anatomical region (the demo's: :data:`selip.demo.lesions.REGIONS`).
        side: ``left`` or ``right``.
        size_mm: the longest extent in mm (plaques: the largest focus).
        extent_mm: (longest, second-longest) extent in mm.
        foci: number of blobs (plaques: foci) the lesion is made of.
        signal: its canonical appearance on the sequence.
    """

    kind: str
    region: str
    side: str
    size_mm: int
    extent_mm: tuple[int, int]
    foci: int
    signal: str

    @property
    def key(self) -> FindingKey:
        """``(kind, region, side)``: what two findings must share to be the same."""
        return self.kind, self.region, self.side


@dataclass(frozen=True)
class PairTruth:
    """The truth of one pair: an exam's sequence and the findings it shows."""

    exam_id: str
    sequence: str
    diagnosis: str
    findings: tuple[FindingTruth, ...]

    @property
    def key(self) -> TruthKey:
        """The set of ``(kind, region, side)`` of its findings (empty when normal)."""
        return frozenset(f.key for f in self.findings)

    def to_json(self) -> str:
        """One line of ``truth.jsonl``."""
        return json.dumps(asdict(self), ensure_ascii=False)


def same_findings(a: PairTruth, b: PairTruth) -> bool:
    """Whether two pairs describe the same findings (equal :attr:`PairTruth.key`)."""
    return a.key == b.key


def mirrored_key(key: TruthKey) -> TruthKey:
    """The key of the pair flipped left–right: every ``left`` a ``right`` and back, as the
    flip's mirrored report text swaps them."""
    return frozenset((kind, region, _OTHER_SIDE.get(side, side)) for kind, region, side in key)


def truth_classes(pair_keys: Sequence[TruthKey | None], report_ids: Sequence[int],
                  mirrored_ids: Sequence[int] | None, num_reports: int
                  ) -> tuple[list[int], list[list[int]]]:
    """Number the truth keys and give each report id the classes of the pairs carrying it.

    Classes number the distinct keys (mirrored ones included) in sorted order, so every
    process builds the same numbers. A report text is carried by the pairs whose
    ``report_ids`` it is and, when the flip is on (``mirrored_ids`` given), as the
    mirrored text of the flipped pairs, with :func:`mirrored_key`. A text carried by pairs
    of different truths gets every one of their classes: it describes the findings of each
    (a clinical hit for any of them).

    Args:
        pair_keys: (P,) each pair's key; None where the truth file lacks the pair.
        report_ids: (P,) each pair's report id. mirrored_ids: (P,) its mirrored one, or
            None when the flip is off.
        num_reports: R, the size of the report table.

    Returns:
        ``(pair_classes, report_classes)``: (P,) a class per pair (-1 where unknown) and,
        for each of the R report ids, its sorted classes (empty when no known pair
        carries it).
    """
    carried: list[tuple[TruthKey, int]] = []
    for index, key in enumerate(pair_keys):
        if key is None:
            continue
        carried.append((key, report_ids[index]))
        if mirrored_ids is not None:
            carried.append((mirrored_key(key), mirrored_ids[index]))
    keys = sorted({key for key, _ in carried}, key=sorted)
    number = {key: index for index, key in enumerate(keys)}
    classes: list[set[int]] = [set() for _ in range(num_reports)]
    for key, report_id in carried:
        classes[report_id].add(number[key])
    return ([number[key] if key is not None else -1 for key in pair_keys],
            [sorted(c) for c in classes])


def write_truth(truths: Iterable[PairTruth], path: str | Path) -> None:
    """Write ``truth.jsonl`` atomically, one :class:`PairTruth` per line."""
    buffer = io.StringIO()
    for truth in truths:
        buffer.write(truth.to_json() + "\n")
    atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8"))


def _finding(data: dict[str, Any]) -> FindingTruth:
    return FindingTruth(kind=str(data["kind"]), region=str(data["region"]),
                        side=str(data["side"]), size_mm=int(data["size_mm"]),
                        extent_mm=(int(data["extent_mm"][0]), int(data["extent_mm"][1])),
                        foci=int(data["foci"]), signal=str(data["signal"]))


def load_truth(path: str | Path) -> dict[tuple[str, str], PairTruth]:
    """Read a cohort's ``truth.jsonl`` (a file, or the cohort folder holding it).

    Returns:
        ``(exam_id, sequence) -> PairTruth``; ``sequence`` is the manifest column
        (``t1``, ``flair`` ...), as in the datamodule's pairs. Two pairs describe the
        same findings when :func:`same_findings` holds (equal ``(kind, region, side)``
        sets), whatever words their reports use.

    Raises:
        ValueError: for a malformed line (the message names the line) or a pair listed
            twice.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TRUTH_FILE
    truths: dict[tuple[str, str], PairTruth] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            truth = PairTruth(str(data["exam_id"]), str(data["sequence"]),
                              str(data["diagnosis"]),
                              tuple(_finding(f) for f in data["findings"]))
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"{path}:{number}: not a truth line ({err})") from None
        ident = (truth.exam_id, truth.sequence)
        if ident in truths:
            raise ValueError(f"{path}:{number}: pair {ident} listed twice")
        truths[ident] = truth
    return truths
