"""Reading the radiology reports a hospital's RIS exported, to join them to DICOM studies.

Exports come as CSV (or TSV, or a ``.txt`` whose delimiter is sniffed), JSON (a list of
objects, or one object mapping key -> report) or JSONL, keyed by accession number or by
StudyInstanceUID, in UTF-8 or — from Chinese hospitals — GB18030. :func:`read_reports`
finds the key and report fields by their usual names (English or Chinese), so a user
names them only when the export is unusual. For a BIDS dataset the key is the participant
(``participant_id``), with the session when the dataset has sessions; both are written with
or without their ``sub-``/``ses-`` prefix, so keys are normalised by :func:`participant_key`.

Like the manifest reader, it never stops on a bad row: every empty report, duplicate key
or row without a key becomes a :class:`ReportProblem`, and the rest is read. Only a file
that cannot be read as a whole raises :class:`ReportFileError`. Reports are patient data:
no message ever quotes one, and none quotes a key either (an accession number identifies
a patient); a problem names the file and the row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from selip.io.text_encoding import TextEncodingError, read_text

ACCESSION_FIELDS = ("AccessionNumber", "accession", "accession_no", "acc_no",
                    "检查号", "影像号", "登记号")
STUDY_UID_FIELDS = ("StudyInstanceUID", "study_uid", "study_instance_uid")
PARTICIPANT_FIELDS = ("participant_id", "participant", "subject_id", "subject", "sub")
SESSION_FIELDS = ("session_id", "session", "ses")
TEXT_FIELDS = ("report", "report_text", "findings", "text",
               "检查所见", "报告", "影像所见", "描述")
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}  # None: sniffed
JSON_SUFFIXES = (".json",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUPPORTED_SUFFIXES = (*CSV_SUFFIXES, *JSON_SUFFIXES, *JSONL_SUFFIXES)
SNIFFED_DELIMITERS = ",;\t|"

#: ``key_field`` of a JSON object mapping key -> report: the keys are no field's values.
MAPPING_KEY = "(object key)"
_MAPPING_REPORT = "(object value)"
#: ``session=DETECT_SESSION``: find the session field among :data:`SESSION_FIELDS`.
DETECT_SESSION = "(detect)"
#: A DICOM UID: dot-separated digit groups (how a mapping's keys are told from accessions).
_UID = re.compile(r"^\d+(\.\d+){3,}$")

_KIND_NAMES = {"accession": "accession number", "study_uid": "StudyInstanceUID",
               "participant": "participant"}

Record = dict[str, object]
Rows = list[tuple[int, Record]]  # (1-based data row, fields)


class ReportFileError(ValueError):
    """A report file that cannot be read at all; the one-line message says why and how
    to fix it (never quoting a report)."""


@dataclass(frozen=True)
class ReportProblem:
    """One thing wrong in a report file: the file, the 1-based data row (a CSV's header
    is not counted; a JSONL row is its line), and what is wrong — never the report."""

    source: str
    message: str
    row: int | None = None

    def __str__(self) -> str:
        where = self.source if self.row is None else f"{self.source}, row {self.row}"
        return f"{where}: {self.message}"


@dataclass
class ReportFile:
    """The reports of one file, by key, and everything found wrong while reading it.

    ``empty`` holds the keys whose every row had an empty report: they are not in
    ``reports``, so the importer can tell "report empty" from "no report".
    """

    path: Path
    encoding: str
    key_field: str
    key_kind: str  # "accession", "study_uid" or "participant"
    reports: dict[str, str] = field(default_factory=dict)
    problems: list[ReportProblem] = field(default_factory=list)
    empty: set[str] = field(default_factory=set)
    session_field: str = ""  # participant keys only: "" when keys carry no session


def participant_key(subject: str, session: str | None = None) -> str:
    """``sub-<label>`` or ``sub-<label>_ses-<label>``, whether the labels were written with
    their prefixes or not — so a report file's ``01``/``sub-01`` and ``02``/``ses-02`` find
    the exam of subject ``01``, session ``02``. A subject written ``sub-01_ses-02`` carries
    its session."""
    subject = subject.strip().removeprefix("sub-")
    if session is None and "_ses-" in subject:
        subject, session = subject.split("_ses-", 1)
    label = (session or "").strip().removeprefix("ses-")
    return f"sub-{subject}_ses-{label}" if label else f"sub-{subject}"


def _normalised(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).casefold()


def _find(fields: Sequence[str], wanted: Iterable[str]) -> str | None:
    """The first field (as written in the file) matching a wanted name, in wanted order."""
    by_name: dict[str, str] = {}
    for name in fields:
        by_name.setdefault(_normalised(name), name)
    return next((by_name[n] for n in map(_normalised, wanted) if n in by_name), None)


def _kind(key_field: str) -> str:
    return "study_uid" if "uid" in _normalised(key_field) else "accession"


def _fields_found(fields: Sequence[str]) -> str:
    return ", ".join(fields) or "none"


def _named_field(path: Path, fields: Sequence[str], name: str) -> str:
    """The field the user named (as written in the file)."""
    found = name if name in fields else _find(fields, [name])
    if found is None:
        raise ReportFileError(f"{path}: no field '{name}' (fields found: "
                              f"{_fields_found(fields)})")
    return found


def _participant_field(path: Path, fields: Sequence[str], key: str | None) -> str:
    """The participant field of a BIDS report file, auto-detected or as the user named it."""
    if key is not None:
        return _named_field(path, fields, key)
    found = _find(fields, PARTICIPANT_FIELDS)
    if found is None:
        raise ReportFileError(
            f"{path}: no participant field (fields found: {_fields_found(fields)}; expected "
            f"one of {', '.join(PARTICIPANT_FIELDS)}); name it with --report-key")
    return found


def _key_field(path: Path, fields: Sequence[str], key: str | None) -> tuple[str, str]:
    """The key field (as written) and its kind, auto-detected or as the user named it."""
    if key is not None:
        named = _named_field(path, fields, key)
        return named, _kind(named)
    for kind, names in (("accession", ACCESSION_FIELDS), ("study_uid", STUDY_UID_FIELDS)):
        found = _find(fields, names)
        if found is not None:
            return found, kind
    raise ReportFileError(
        f"{path}: no accession number or StudyInstanceUID field (fields found: "
        f"{_fields_found(fields)}; expected one of {', '.join(ACCESSION_FIELDS)}, "
        f"{', '.join(STUDY_UID_FIELDS)}); name it with --report-key")


def _text_field(path: Path, fields: Sequence[str], text: str | None) -> str:
    """The report text field (as written), auto-detected or as the user named it."""
    if not text:
        found = _find(fields, TEXT_FIELDS)
    else:
        found = text if text in fields else _find(fields, [text])
    if found is not None:
        return found
    if text:
        raise ReportFileError(f"{path}: no field '{text}' (fields found: "
                              f"{_fields_found(fields)})")
    raise ReportFileError(
        f"{path}: no report text field (fields found: {_fields_found(fields)}; expected "
        f"one of {', '.join(TEXT_FIELDS)}); name it with --report-text")


def _key_value(value: object) -> str:
    """A key as a string: stripped, leading zeros kept, a JSON ``123.0`` read as ``123``."""
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().rstrip("\x00").strip()


def _report_value(value: object) -> str:
    """A report as text; structured findings (an object or a list) as compact JSON that
    keeps Chinese readable. An empty object or list, parsed or as a CSV cell's text, is
    an empty report (structured findings with nothing in them)."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False) if value else ""
    text = str(value).strip()
    return "" if text in ("{}", "[]") else text


def _delimiter(path: Path, text: str) -> str:
    """A ``.txt`` export's delimiter, sniffed from its header line (report text in the
    rows below holds commas and semicolons that would mislead the sniffer)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return csv.Sniffer().sniff(header, delimiters=SNIFFED_DELIMITERS).delimiter
    except csv.Error:
        raise ReportFileError(
            f"{path}: cannot tell the delimiter of the header line (expected one of comma, "
            "semicolon, tab or '|'); save it as .csv or .tsv") from None


def _csv_records(path: Path, text: str, delimiter: str,
                 problems: list[ReportProblem]) -> tuple[list[str], Rows]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, [])
        fields = [name.strip() for name in header]
        records: Rows = []
        for number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(fields):
                problems.append(ReportProblem(
                    str(path), f"{len(cells)} cells but the header has {len(fields)} (a "
                    "delimiter inside an unquoted report?); the row is skipped", number))
                continue
            record: Record = {}
            for name, cell in zip(fields, cells, strict=False):
                record.setdefault(name, cell)
            records.append((number, record))
    except csv.Error as err:
        raise ReportFileError(f"{path}: not valid CSV at line {reader.line_num} "
                              f"({err})") from None
    return fields, records


def _json_records(path: Path, text: str, text_field: str | None,
                  problems: list[ReportProblem]) -> tuple[list[str], Rows, bool]:
    """The fields and rows of a JSON file, and whether it is a mapping key -> report
    (whose rows hold the key under :data:`MAPPING_KEY`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportFileError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, "
                              f"column {err.colno})") from None
    if isinstance(data, list):
        return (*_object_rows(path, enumerate(data, start=1), problems), False)
    if not isinstance(data, dict):
        raise ReportFileError(f"{path}: expected a JSON list of objects or an object mapping "
                              f"key -> report, found a {type(data).__name__}")
    # A mapping: each value is the report (structured findings kept whole), unless the
    # user named the field of each value that holds it.
    if text_field is None:
        rows: Rows = [(n, {MAPPING_KEY: name, _MAPPING_REPORT: value})
                      for n, (name, value) in enumerate(data.items(), start=1)]
        return [MAPPING_KEY, _MAPPING_REPORT], rows, True
    names = list(data)
    fields, rows = _object_rows(path, enumerate(data.values(), start=1), problems)
    for number, record in rows:
        record[MAPPING_KEY] = names[number - 1]
    return fields, rows, True


def _object_rows(path: Path, rows: Iterable[tuple[int, object]], problems: list[ReportProblem]
                 ) -> tuple[list[str], Rows]:
    fields: list[str] = []
    records: Rows = []
    for number, row in rows:
        if not isinstance(row, dict):
            problems.append(ReportProblem(str(path), "not a JSON object; the row is skipped",
                                          number))
            continue
        fields += [str(name) for name in row if str(name) not in fields]
        records.append((number, {str(name): value for name, value in row.items()}))
    return fields, records


def _jsonl_rows(path: Path, text: str, problems: list[ReportProblem]
                ) -> Iterable[tuple[int, object]]:
    # "\n" only: str.splitlines also splits at U+2028, which JSON strings may hold as is.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(ReportProblem(str(path), f"not valid JSON ({err.msg} at column "
                                          f"{err.colno}); the line is skipped", number))


def _mapping_kind(keys: Iterable[str], key: str | None) -> tuple[str, str]:
    """A mapping's key field and kind: the user's name for its keys, else its keys' look."""
    if key is not None:
        return key, _kind(key)
    named = [k for k in keys if k]
    uids = bool(named) and all(_UID.match(k) for k in named)
    return MAPPING_KEY, "study_uid" if uids else "accession"


def _collect(result: ReportFile, records: Rows, key_name: str, text_field: str) -> None:
    """Fill ``result`` from the records: the first non-empty report of each key wins."""
    source, kind = str(result.path), _KIND_NAMES[result.key_kind]
    first_row: dict[str, int] = {}
    same = f"{kind} and session" if result.session_field else kind
    for number, record in records:
        key = _key_value(record.get(key_name))
        if not key:
            result.problems.append(ReportProblem(
                source, f"no {kind} ('{result.key_field}' is empty); the row is skipped",
                number))
            continue
        if result.key_kind == "participant":
            session = (_key_value(record.get(result.session_field))
                       if result.session_field else None)
            key = participant_key(key, session)
        report = _report_value(record.get(text_field))
        if not report:
            result.problems.append(ReportProblem(source, "empty report", number))
            if key not in result.reports:
                result.empty.add(key)
            continue
        result.empty.discard(key)
        if key not in result.reports:
            result.reports[key] = report
            first_row[key] = number
        elif result.reports[key] != report:
            result.problems.append(ReportProblem(
                source, f"the {same} of row {first_row[key]} again, with a different report; "
                f"row {first_row[key]}'s is kept", number))


def read_reports(path: str | Path, encoding: str | None = None, key: str | None = None,
                 text: str | None = None, *, participants: bool = False,
                 session: str | None = None) -> ReportFile:
    """Read an exported report file (format from its suffix; see the module docstring).

    Args:
        encoding: the file's encoding; detected (UTF-8, UTF-8 with BOM, GB18030) if None.
        key: the key field; auto-detected if None. Its kind is ``study_uid`` when its name
            holds "uid", else ``accession``. For a JSON object mapping key -> report, it
            names what the object's keys are.
        text: the report field; auto-detected if None. For a JSON object mapping key ->
            object, the field of each object holding the report.
        participants: keyed by BIDS participant: the key field is one of
            :data:`PARTICIPANT_FIELDS` (or ``key``), its kind ``participant``, and every key
            is a :func:`participant_key`.
        session: with ``participants``, the session field joined to each row's key
            (``sub-01_ses-02``; a row with an empty session keeps the participant alone);
            :data:`DETECT_SESSION` finds it among :data:`SESSION_FIELDS`, or uses none.

    Raises:
        ReportFileError: unsupported suffix, unreadable file or encoding, invalid JSON,
            no key field or no report field.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ReportFileError(f"{path}: unsupported report file type '{path.suffix}' "
                              f"(supported: {', '.join(SUPPORTED_SUFFIXES)})")
    if not path.is_file():
        what = "is a directory, not a report file" if path.is_dir() else "report file not found"
        raise ReportFileError(f"{path}: {what}")
    try:
        content, used = read_text(path, encoding)
    except TextEncodingError as err:
        raise ReportFileError(str(err)) from None
    except OSError as err:
        raise ReportFileError(f"{path}: cannot read the report file ({err.strerror})") from None
    problems: list[ReportProblem] = []
    mapping = False
    if suffix in JSON_SUFFIXES:
        fields, records, mapping = _json_records(path, content, text, problems)
    elif suffix in JSONL_SUFFIXES:
        fields, records = _object_rows(path, _jsonl_rows(path, content, problems), problems)
    else:
        delimiter = CSV_SUFFIXES[suffix] or _delimiter(path, content)
        fields, records = _csv_records(path, content, delimiter, problems)
    if not fields or (mapping and not records):
        raise ReportFileError(f"{path}: the file holds no reports (it is empty)")
    if mapping:
        key_field, kind = _mapping_kind((str(r[MAPPING_KEY]) for _, r in records), key)
        key_name = MAPPING_KEY
        text_field = _text_field(path, fields, text) if text else _MAPPING_REPORT
    elif participants:
        key_field = key_name = _participant_field(path, fields, key)
        text_field = _text_field(path, fields, text)
    else:
        key_field, kind = _key_field(path, fields, key)
        key_name = key_field
        text_field = _text_field(path, fields, text)
    session_field = ""
    if participants:
        kind = "participant"
        if session == DETECT_SESSION:
            session_field = _find(fields, SESSION_FIELDS) or ""
        elif session is not None:
            session_field = _named_field(path, fields, session)
    result = ReportFile(path, used, key_field, kind, problems=problems,
                        session_field=session_field)
    _collect(result, records, key_name, text_field)
    return result
