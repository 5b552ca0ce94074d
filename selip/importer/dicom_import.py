"""``selip import dicom``: a PACS export and a RIS report file in, a selip cohort out.

The steps, each in its own module: read the reports (:mod:`.reports`, encoding
detected) → read every file's header (:mod:`.headers`) → classify each series
(:mod:`.rules`) and check that it is a volume (:mod:`.geometry`) → choose one series per
sequence → join the study's report → convert the chosen series with dcm2niix
(:mod:`.convert`, in parallel) → write this shard's part and, when every part is there,
the manifest and the import log (:mod:`.outcome`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from selip.importer.convert import ConversionError, convert_series, dcm2niix_binary
from selip.importer.geometry import volume_problem
from selip.importer.headers import TreeScan, scan_tree
from selip.importer.identity import keyed_id, load_or_create_key
from selip.importer.options import NIFTI_FOLDER, ImportOptions
from selip.importer.outcome import (
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
from selip.importer.writing import VolumeJob, write_volumes


class ShardLayoutError(ValueError):
    """An export whose layout cannot be split into shards without splitting studies."""


def shard_units(source: Path) -> list[Path]:
    """The folders a shard takes whole: the sub-folders of ``source``, descending while
    there is a single one (``export/DICOM/…``), so one study is never split across shards
    in the usual patient/study/series layout. Loose files beside them (a DICOMDIR, a
    README) go to the first shard.

    Raises:
        ShardLayoutError: the folder holds its DICOM files directly (a flat export), which
            cannot be split by folder without splitting series.
    """
    folder = source
    while True:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        folders = [p for p in entries if p.is_dir()]
        if len(folders) == 1 and len(entries) <= 2:  # DICOM/ (+ a DICOMDIR)
            folder = folders[0]
            continue
        loose = [p for p in entries if not p.is_dir()]
        if len(loose) > 2 or not folders:
            raise ShardLayoutError(
                f"{folder}: {len(loose)} files lie directly in this folder; --shard splits "
                f"an export by its sub-folders (one per patient or study), so import a flat "
                f"export in one process (no --shard)")
        return folders + loose


def _plan_study(study_uid: str, series: list[Series], rules: SequenceRules,
                reports: ReportFile, key: bytes, options: ImportOptions, binary: str
                ) -> tuple[StudyOutcome, list[VolumeJob]]:
    """Classify, check and choose a study's series and join its report."""
    outcome = StudyOutcome(keyed_id(key, study_uid, "ex-"))
    claims: dict[str, list[tuple[Series, Claim]]] = {}
    for record in sorted(series, key=lambda s: (s.series_number or 0, s.series_uid)):
        claim = rules.classify(record)
        if claim.skip is not None:
            outcome.skipped.append({"series": record.label, "reason": claim.skip})
            continue
        if claim.sequence is None:
            outcome.unclassified.append(record.description or record.protocol
                                        or "(no description)")
            continue
        problem = volume_problem(record)
        if problem is not None:
            outcome.skipped.append({"series": record.label, "reason": problem})
            outcome.problems.append(f"{record.label} ({claim.sequence}): {problem}")
            continue
        claims.setdefault(claim.sequence, []).append((record, claim))
    chosen: dict[str, Series] = {}
    for sequence, claimed in claims.items():
        decision = choose(sequence, claimed, rules.prefer)
        if outcome.record_choice(sequence, decision.chosen.label if decision.chosen else None,
                                 decision.note):
            assert decision.chosen is not None
            chosen[sequence] = decision.chosen
    outcome.missing = [s for s in options.expected if s not in chosen]
    if reports.key_kind == "accession":
        numbers = sorted({s.accession_number.strip() for s in series} - {""})
        if len(numbers) > 1:
            outcome.problems.append(f"its series carry {len(numbers)} different accession "
                                    f"numbers; the first is used to join the report")
        report_key = numbers[0] if numbers else ""
    else:
        report_key = study_uid
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
    jobs = [VolumeJob(outcome, sequence,
                      partial(convert_series, record, sequence, folder / f"{sequence}.nii.gz",
                              keyed_id(key, record.series_uid, "se-"), binary),
                      partial(_explain, record))
            for sequence, record in sorted(chosen.items())]
    return outcome, jobs


def _explain(series: Series, err: Exception) -> str:
    """The log line of a series that failed to convert (its label; never a path)."""
    if isinstance(err, ConversionError):
        return str(err)
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return f"{series.label}: conversion failed ({type(err).__name__}: {reason[:160]})"


def _part_summary(source: Path, scan: TreeScan, reports: ReportFile, key: bytes,
                  run_id: str) -> PartSummary:
    return PartSummary(
        run_id=run_id, source=str(source), files=scan.files, not_dicom=scan.not_dicom,
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
    binary = dcm2niix_binary(options.dcm2niix)  # missing: said before any header is read
    options.out.mkdir(parents=True, exist_ok=True)
    key = load_or_create_key(options.out, options.key_file)
    roots = [source] if options.shard.whole or source.is_file() else \
        options.shard.take(shard_units(source))
    scan = scan_tree(roots, progress=options.progress,
                     relative_to=source if source.is_dir() else None)
    outcomes: list[StudyOutcome] = []
    jobs: list[VolumeJob] = []
    for study_uid in sorted(scan.studies):
        outcome, planned = _plan_study(study_uid, scan.studies[study_uid], rules, reports,
                                       key, options, binary)
        outcomes.append(outcome)
        jobs += planned
    write_volumes(jobs, options.out, options.workers, options.progress, "converting series")
    write_part(options.out, options.shard, outcomes,
               _part_summary(source, scan, reports, key, options.run_id))
    if not parts_complete(options.out, options.shard, options.run_id):
        return None
    return merge(options.out, options.shard.count)
