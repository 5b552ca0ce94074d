"""The manifest: one row per exam, read from CSV or JSONL.

Columns: ``exam_id``; one column per sequence (``t1``, ``t2``, ``flair``, ``dwi``,
``adc``, … any subset per exam, empty cell = sequence absent) holding a NIfTI path
relative to the manifest's folder or absolute; ``report`` (free text or structured JSON
findings); optional ``label``, ``mask`` (NIfTI path) and ``split`` (train/val/test).

Reading never raises on content: every problem is collected as a :class:`Problem`
naming the row and column, so a user sees all of them at once.

The file may be UTF-8 (with or without a BOM) or GB18030, as spreadsheets in China save
CSV; :func:`~selip.io.text_encoding.read_text` tells which, so nobody has to.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from selip.io.text_encoding import TextEncodingError, read_text
from selip.text.sequences import KNOWN_SEQUENCES as KNOWN_SEQUENCES  # re-exported

#: Non-sequence columns.
RESERVED_COLUMNS = ("exam_id", "report", "label", "mask", "split")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the manifest or a file it names."""

    source: str
    message: str
    row: int | None = None  # 1-based data row (the header is not counted)
    column: str | None = None
    exam_id: str | None = None

    def __str__(self) -> str:
        where = [self.source]
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (exam {self.exam_id})" if self.exam_id else ""))
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}"


class ManifestError(ValueError):
    """Raised with every problem found; ``str()`` gives one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"{count} problem{'s' if count != 1 else ''} in the data:"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


@dataclass
class ExamRecord:
    """One manifest row, with paths resolved against the manifest's folder."""

    row: int
    exam_id: str
    volumes: dict[str, Path]
    report: str
    label: str | None = None
    mask: Path | None = None
    split: str | None = None


@dataclass
class Manifest:
    """A parsed manifest (rows may still hold problems; see :mod:`selip.data.validation`)."""

    path: Path
    columns: list[str]
    exams: list[ExamRecord] = field(default_factory=list)

    @property
    def sequence_columns(self) -> list[str]:
        """Columns that are not reserved, in file order (candidates for sequences)."""
        return [c for c in self.columns if c not in RESERVED_COLUMNS]


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def _read_rows(path: Path, text: str, problems: list[Problem]
               ) -> tuple[list[str], list[dict[str, object]]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows: list[dict[str, object]] = []
        columns: list[str] = []
        # Split on "\n" only: str.splitlines would also split at U+2028 and other
        # separators that JSON strings (e.g. a pasted report) may hold unescaped.
        lines = text.split("\n")
        for number, line in enumerate((ln for ln in lines if ln.strip()), start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(Problem(str(path), f"not valid JSON ({err.msg})", row=number))
                row = {}
            if not isinstance(row, dict):
                problems.append(Problem(str(path), "each line must be a JSON object", row=number))
                row = {}
            rows.append(row)
            columns += [str(k) for k in row if k not in columns]
        return columns, rows
    # newline="": the csv module sees the line endings as written, so a quoted report
    # spanning several lines stays one cell.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    return columns, rows


def read_manifest(path: str | Path, encoding: str | None = None
                  ) -> tuple[Manifest, list[Problem]]:
    """Read a CSV (``.csv``/``.tsv`` not supported) or JSONL (``.jsonl``) manifest.

    Args:
        encoding: the file's encoding; detected (UTF-8, UTF-8 with BOM, GB18030) if None.

    Returns:
        The manifest and the problems found while reading (empty when the file is fine).
    """
    path = Path(path).expanduser().resolve()
    problems: list[Problem] = []
    if not path.is_file():
        what = "is a directory, not a manifest file" if path.is_dir() else "manifest file not found"
        return Manifest(path, []), [Problem(str(path), what)]
    try:
        text, _ = read_text(path, encoding)
        columns, rows = _read_rows(path, text, problems)
    except TextEncodingError as err:  # its message names the file, which Problem does too
        return Manifest(path, []), [Problem(str(path), str(err).removeprefix(f"{path}: "))]
    except (OSError, csv.Error) as err:
        return Manifest(path, []), [Problem(str(path), f"cannot read manifest: {err}")]
    columns = [c.lower() for c in columns]
    manifest = Manifest(path, columns)
    for name in ("exam_id", "report"):
        if name not in columns:
            problems.append(Problem(str(path), f"required column '{name}' is missing "
                                    f"(columns found: {', '.join(columns) or 'none'})"))
    base = path.parent
    for number, raw in enumerate(rows, start=1):
        row = {str(k).lower(): _cell(v) for k, v in raw.items()}
        volumes = {c: _resolve(base, row[c]) for c in manifest.sequence_columns if row.get(c)}
        manifest.exams.append(ExamRecord(
            row=number,
            exam_id=row.get("exam_id", ""),
            volumes=volumes,
            report=row.get("report", ""),
            label=row.get("label") or None,
            mask=_resolve(base, row["mask"]) if row.get("mask") else None,
            split=row.get("split", "").lower() or None,
        ))
    return manifest, problems
