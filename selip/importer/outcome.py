"""What an import produced, study by study, and how it is written and summarised.

Both importers (DICOM, BIDS) end the same way: one :class:`StudyOutcome` per study, which
becomes a manifest row (when it has a report and at least one volume) and one line of the
import log. A shard writes its part under ``out/parts/``; the process that finds every
part of its array present merges them into ``manifest.csv`` and ``import_log.jsonl`` —
each merge reads only finished parts and writes through a temporary name, so shards that
finish together write the same files and never a mixed one.

Nothing here holds a patient identifier: exams are keyed ids, report keys are keyed ids,
report text goes to the manifest only (it is the training data), never to the log or the
terminal.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selip.importer.shard import Shard
from selip.io.atomic import atomic_write_text

MANIFEST = "manifest.csv"
IMPORT_LOG = "import_log.jsonl"
PARTS = "parts"
#: Column order of the sequences in a written manifest (others follow, sorted).
SEQUENCE_ORDER = ("t1", "t1c", "t2", "flair", "dwi", "adc")
DEFAULT_EXPECTED = ("t1", "t2", "flair", "dwi", "adc")
#: Problem lines printed in the summary (the rest are in the import log).
MAX_PROBLEM_LINES = 40


@dataclass
class StudyOutcome:
    """One study: its exam id, the volumes written (sequence → path relative to the
    output folder), its report (``None``: none joined) and its log record."""

    exam_id: str
    volumes: dict[str, str] = field(default_factory=dict)
    report: str | None = None
    report_status: str = "joined"  # joined | no report | empty report
    report_ref: str = ""  # keyed id of the report's key, to find reports without a study
    chosen: dict[str, str] = field(default_factory=dict)  # sequence → series label
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"series", "reason"}
    unclassified: list[str] = field(default_factory=list)  # series descriptions
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return self.report is not None and bool(self.volumes)

    def record_choice(self, sequence: str, chosen_label: str | None, note: str) -> bool:
        """Log how ``sequence`` was settled: a tie (``chosen_label`` None) is a problem,
        a choice among several a note; True when a source was chosen."""
        if chosen_label is None:
            self.problems.append(note)
            return False
        if note:
            self.notes.append(note)
        self.chosen[sequence] = chosen_label
        return True

    def log_record(self) -> dict[str, Any]:
        """The study's import-log line (no report text, no identifiers)."""
        record = asdict(self)
        record.pop("report")
        record.pop("report_ref")
        record["written"] = self.written
        return record


@dataclass
class PartSummary:
    """The counts of one shard (or the merge of all): what was read and what was not."""

    run_id: str = ""  # the SLURM array job that wrote it ('' outside an array)
    source: str = ""
    files: int = 0
    not_dicom: int = 0
    not_images: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    studies: int = 0
    report_file: str = ""
    report_encoding: str = ""
    report_key: str = ""
    report_refs: list[str] = field(default_factory=list)  # keyed ids of every report key
    report_problems: list[str] = field(default_factory=list)
    importer: str = "dicom"  # or "bids": what the printout suggests for unclassified files


def _part_name(kind: str, shard: Shard, suffix: str) -> str:
    return f"{kind}-{shard.index:05d}-of-{shard.count:05d}{suffix}"


def write_part(out: Path, shard: Shard, outcomes: list[StudyOutcome], summary: PartSummary
               ) -> None:
    """This shard's outcomes and counts under ``out/parts`` (atomically)."""
    lines = "".join(json.dumps({"outcome": asdict(o)}, ensure_ascii=False) + "\n"
                    for o in outcomes)
    atomic_write_text(out / PARTS / _part_name("outcomes", shard, ".jsonl"), lines)
    # the summary is written last: its presence says the part is complete
    atomic_write_text(out / PARTS / _part_name("summary", shard, ".json"),
                      json.dumps(asdict(summary), ensure_ascii=False, indent=1))


def parts_complete(out: Path, shard: Shard, run_id: str = "") -> bool:
    """Whether every shard of this array has written its part — in the same SLURM array
    job as this one (``run_id``), so a re-run never merges a previous run's parts."""
    for index in range(shard.count):
        path = out / PARTS / _part_name("summary", Shard(index, shard.count), ".json")
        try:
            written = json.loads(path.read_text(encoding="utf-8")).get("run_id", "")
        except (OSError, ValueError):
            return False
        if written != run_id:
            return False
    return True


def read_parts(out: Path, count: int) -> tuple[list[StudyOutcome], list[PartSummary]]:
    """Every part of an array of ``count`` shards, in shard order."""
    outcomes: list[StudyOutcome] = []
    summaries: list[PartSummary] = []
    for index in range(count):
        shard = Shard(index, count)
        text = (out / PARTS / _part_name("outcomes", shard, ".jsonl")).read_text(
            encoding="utf-8")
        outcomes += [StudyOutcome(**json.loads(line)["outcome"])
                     for line in text.splitlines() if line.strip()]
        summaries.append(PartSummary(**json.loads(
            (out / PARTS / _part_name("summary", shard, ".json")).read_text(encoding="utf-8"))))
    return outcomes, summaries


def manifest_text(outcomes: list[StudyOutcome]) -> str:
    """The manifest CSV of the written outcomes, sorted by exam id."""
    written = sorted((o for o in outcomes if o.written), key=lambda o: o.exam_id)
    present = {s for o in written for s in o.volumes}
    columns = [s for s in SEQUENCE_ORDER if s in present] + sorted(present
                                                                    - set(SEQUENCE_ORDER))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["exam_id", *columns, "report"])
    for outcome in written:
        writer.writerow([outcome.exam_id, *(outcome.volumes.get(s, "") for s in columns),
                         outcome.report])
    return buffer.getvalue()


@dataclass
class ImportSummary:
    """The merged result of an import: what the summary printout says."""

    out: Path
    parts: list[PartSummary]
    outcomes: list[StudyOutcome]
    duplicates: list[str] = field(default_factory=list)

    @property
    def written(self) -> list[StudyOutcome]:
        return [o for o in self.outcomes if o.written]

    @property
    def sequence_counts(self) -> Counter[str]:
        return Counter(s for o in self.written for s in o.volumes)

    @property
    def without_report(self) -> list[StudyOutcome]:
        return [o for o in self.outcomes if o.report_status != "joined"]

    @property
    def reports_without_study(self) -> int:
        matched = {o.report_ref for o in self.outcomes if o.report_ref}
        refs = set(self.parts[0].report_refs) if self.parts else set()
        return len(refs - matched)

    @property
    def unclassified(self) -> Counter[str]:
        return Counter(d for o in self.outcomes for d in o.unclassified)

    def lines(self) -> list[str]:
        """The summary printout, one line per fact (no identifiers, no report text)."""
        first = self.parts[0] if self.parts else PartSummary()
        files = sum(p.files for p in self.parts)
        not_dicom = sum(p.not_dicom for p in self.parts)
        unreadable = [u for p in self.parts for u in p.unreadable]
        not_images: Counter[str] = Counter()
        for part in self.parts:
            not_images.update(part.not_images)
        counts = self.sequence_counts
        lines = [f"read {files} files from {first.source}"
                 + (f" ({not_dicom} not DICOM, skipped)" if not_dicom else "")
                 + ("; not images: " + ", ".join(f"{k} {v}" for k, v in
                                                  sorted(not_images.items()))
                    if not_images else ""),
                 f"studies: {len(self.outcomes)}; exams written: {len(self.written)} → "
                 f"{self.out / MANIFEST}",
                 "sequences: " + (", ".join(f"{s} {counts[s]}" for s in
                                            [*SEQUENCE_ORDER, *sorted(set(counts)
                                                                       - set(SEQUENCE_ORDER))]
                                            if counts[s]) or "none"),
                 f"reports: {first.report_file} ({first.report_encoding}, joined by "
                 f"{first.report_key})"]
        missing_report = Counter(o.report_status for o in self.without_report)
        if self.without_report:
            lines.append(f"studies without a report: {len(self.without_report)} ("
                         + ", ".join(f"{v} {k}" for k, v in sorted(missing_report.items()))
                         + f"; exam ids in {IMPORT_LOG})")
        lines.append(f"reports without a study: {self.reports_without_study}")
        if self.unclassified:
            lines.append(("unclassified files (BIDS suffixes selip does not import): "
                          if first.importer == "bids" else
                          "unclassified series (no rule claims them; add one with --rules): ")
                         + ", ".join(f"'{d}' ×{n}" for d, n in self.unclassified.most_common()))
        problems = unreadable + [p for part in self.parts for p in part.report_problems] + [
            f"exam {o.exam_id}: {p}" for o in self.outcomes for p in o.problems]
        problems += [f"exam {d}: found by several shards (its series lie in different "
                     f"top-level folders), so each saw part of it; left out — import it "
                     f"without --shard" for d in self.duplicates]
        if problems:
            lines.append(f"problems ({len(problems)}):")
            lines += [f"  {p}" for p in problems[:MAX_PROBLEM_LINES]]
            if len(problems) > MAX_PROBLEM_LINES:
                lines.append(f"  … and {len(problems) - MAX_PROBLEM_LINES} more (every "
                             f"study's problems are in {IMPORT_LOG})")
        lines.append(f"log: {self.out / IMPORT_LOG} (one line per study)")
        if self.written:
            lines.append(f"next: selip prepare --config configs/pretrain.yaml "
                         f"--data.manifest {self.out / MANIFEST}")
        return lines


def merge(out: Path, count: int) -> ImportSummary:
    """Merge the ``count`` parts under ``out`` into ``manifest.csv`` and the import log."""
    outcomes, parts = read_parts(out, count)
    found = Counter(o.exam_id for o in outcomes)
    duplicates = sorted(exam for exam, times in found.items() if times > 1)
    # a study that two shards each saw in part cannot be trusted (either shard may have
    # written any of its volumes): left out, and said
    kept = sorted((o for o in outcomes if found[o.exam_id] == 1), key=lambda o: o.exam_id)
    atomic_write_text(out / MANIFEST, manifest_text(kept))
    atomic_write_text(out / IMPORT_LOG, "".join(
        json.dumps(o.log_record(), ensure_ascii=False) + "\n" for o in kept))
    return ImportSummary(out, parts, kept, duplicates)
