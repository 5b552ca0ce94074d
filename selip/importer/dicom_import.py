"""``selip import dicom``: a PACS export and a RIS report file in, a selip cohort out.

The steps, each in its own module: read the reports (:mod:`.reports`, encoding
detected) → read every file's header (:mod:`.headers`) → classify each series
(:mod:`.rules`) and check that it is a volume (:mod:`.geometry`) → choose one series per
sequence → join the study's report → convert the chosen series with dcm2niix
(:mod:`.convert`, in parallel) → write this shard's part and, when every part is there,
the manifest and the import log (:mod:`.outcome`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from selip.importer.convert import ConversionError, convert_series, dcm2niix_binary
from selip.importer.geometry import volume_problem
from selip.importer.headers import TreeScan, scan_tree
from selip.importer.identity import keyed_id, load_or_create_key
from selip.importer.outcome import (
    DEFAULT_EXPECTED,
    ImportSummary,
    PartSummary,
    StudyOutcome,
    merge,
    parts_complete,
    write_part,
)
from selip.importer.reports import ReportFile, read_reports
from selip.importer.rules import Claim, SequenceRules, choose, load_rules
from selip.importer.series import Series
from selip.importer.shard import Shard

NIFTI_FOLDER = "nifti"


@dataclass
class ImportOptions:
    """What ``selip import`` was asked to do (the command line, parsed)."""

    out: Path
    reports: Path
    reports_encoding: str | None = None
    report_key: str | None = None
    report_text: str | None = None
    report_session: str | None = None  # BIDS: the session field (default: detected)
    rules: Path | None = None
    expected: Sequence[str] = DEFAULT_EXPECTED
    shard: Shard = field(default_factory=Shard)
    workers: int = 2
    dcm2niix: str | None = None
    key_file: Path | None = None
    progress: bool = True


def shard_units(source: Path) -> list[Path]:
    """The folders (or files) a shard takes whole: the entries of ``source``, descending
    while there is a single folder (``export/DICOM/…``), so one study is never split
    across shards in the usual patient/study/series layout."""
    folder = source
    while True:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
            continue
        return entries


@dataclass
class _Task:
    outcome: StudyOutcome
    sequence: str
    series: Series
    target: Path
    series_id: str


def _plan_study(study_uid: str, series: list[Series], rules: SequenceRules,
                reports: ReportFile, key: bytes, options: ImportOptions
                ) -> tuple[StudyOutcome, list[_Task]]:
    """Classify, check and choose a study's series and join its report."""
    outcome = StudyOutcome(keyed_id(key, study_uid, "ex-"))
    claims: dict[str, list[tuple[Series, Claim]]] = {}
    for record in sorted(series, key=lambda s: (s.series_number or 0, s.series_uid)):
        claim = rules.classify(record)
        if claim.skip is not None:
            outcome.skipped.append({"series": record.label, "reason": claim.skip})
            continue
        problem = volume_problem(record)
        if problem is not None:  # said for unclaimed series too: no rule could fix it
            outcome.skipped.append({"series": record.label, "reason": problem})
            outcome.problems.append(f"{record.label}"
                                    + (f" ({claim.sequence})" if claim.sequence else "")
                                    + f": {problem}")
            continue
        if claim.unclaimed:
            outcome.unclassified.append(record.description or record.protocol
                                        or "(no description)")
            continue
        assert claim.sequence is not None
        claims.setdefault(claim.sequence, []).append((record, claim))
    chosen: dict[str, Series] = {}
    for sequence, claimed in claims.items():
        decision = choose(sequence, claimed, rules.prefer)
        if decision.chosen is None:
            outcome.problems.append(decision.note)
            continue
        if decision.note:
            outcome.notes.append(decision.note)
        chosen[sequence] = decision.chosen
        outcome.chosen[sequence] = decision.chosen.label
    outcome.missing = [s for s in options.expected if s not in chosen]
    report_key = (series[0].accession_number if reports.key_kind == "accession"
                  else study_uid).strip()
    if report_key:
        outcome.report_ref = keyed_id(key, report_key)
    if report_key in reports.reports:
        outcome.report = reports.reports[report_key]
    else:
        outcome.report_status = ("empty report" if report_key in reports.empty
                                 else "no report")
    if outcome.report is None or not chosen:
        return outcome, []  # nothing to train on: convert nothing
    folder = options.out / NIFTI_FOLDER / outcome.exam_id
    tasks = [_Task(outcome, sequence, record, folder / f"{sequence}.nii.gz",
                   keyed_id(key, record.series_uid, "se-"))
             for sequence, record in sorted(chosen.items())]
    return outcome, tasks


def _convert_all(tasks: list[_Task], options: ImportOptions) -> None:
    """Run dcm2niix on every task, ``options.workers`` at a time; failures are logged
    on their study, which keeps its other sequences."""
    if not tasks:
        return
    from tqdm import tqdm

    binary = dcm2niix_binary(options.dcm2niix)
    with ThreadPoolExecutor(max(1, options.workers)) as pool, tqdm(
            total=len(tasks), desc="converting series", unit=" series",
            disable=not options.progress) as bar:
        running = {pool.submit(convert_series, t.series, t.sequence, t.target, t.series_id,
                               binary): t for t in tasks}
        for future in as_completed(running):
            task = running[future]
            bar.update()
            try:
                converted = future.result()
            except ConversionError as err:
                task.outcome.problems.append(str(err))
                task.outcome.chosen.pop(task.sequence, None)
                task.outcome.missing = sorted({*task.outcome.missing, task.sequence})
                continue
            task.outcome.volumes[task.sequence] = str(
                converted.nifti.relative_to(options.out))
            if converted.note:
                task.outcome.notes.append(f"{task.sequence}: {converted.note}")


def _part_summary(source: Path, scan: TreeScan, reports: ReportFile, key: bytes
                  ) -> PartSummary:
    return PartSummary(
        source=str(source), files=scan.files, not_dicom=scan.not_dicom,
        not_images=dict(scan.not_mr_image), unreadable=scan.unreadable,
        studies=len(scan.studies), report_file=str(reports.path),
        report_encoding=reports.encoding, report_key=reports.key_field,
        report_refs=sorted(keyed_id(key, k) for k in (*reports.reports, *reports.empty)),
        report_problems=[str(p) for p in reports.problems])


def import_dicom(source: Path, options: ImportOptions) -> ImportSummary | None:
    """Import this shard's part of the DICOM tree at ``source``.

    Returns the merged summary when this process finished the last part (always, for a
    single process); ``None`` when other shards are still running.

    Raises:
        ValueError: an unusable report file, rules file or key (before any conversion).
        ConversionError: dcm2niix is not installed.
    """
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    reports = read_reports(options.reports, options.reports_encoding, options.report_key,
                           options.report_text)
    rules = load_rules(options.rules)
    dcm2niix_binary(options.dcm2niix)  # missing: say so before hours of header reading
    options.out.mkdir(parents=True, exist_ok=True)
    key = load_or_create_key(options.out, options.key_file)
    roots = [source] if options.shard.whole or source.is_file() else \
        options.shard.take(shard_units(source))
    scan = scan_tree(roots, progress=options.progress,
                     relative_to=source if source.is_dir() else None)
    outcomes: list[StudyOutcome] = []
    tasks: list[_Task] = []
    for study_uid in sorted(scan.studies):
        outcome, planned = _plan_study(study_uid, scan.studies[study_uid], rules, reports,
                                       key, options)
        outcomes.append(outcome)
        tasks += planned
    _convert_all(tasks, options)
    write_part(options.out, options.shard, outcomes, _part_summary(source, scan, reports, key))
    if not parts_complete(options.out, options.shard):
        return None
    return merge(options.out, options.shard.count)
