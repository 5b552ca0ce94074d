"""``selip import bids``: a BIDS dataset and a report file in, a selip cohort out.

The same ending as ``selip import dicom`` (:mod:`.outcome`): one exam per subject and
session (per subject when the dataset has none), keyed ids only, a part per shard. What
differs is the front: pybids indexes the raw data (never ``derivatives/``), file names say
which sequence a file is (:mod:`.bids_files`), and most images are linked rather than
converted (:mod:`.bids_volume`). Shards take whole subjects, and a shard indexes only its
own subjects' folders.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from selip.importer.bids_files import NIFTI_EXTENSIONS, BidsFile, choose_file, from_entities
from selip.importer.bids_volume import VolumeError, read_bvals, write_volume
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
from selip.importer.reports import DETECT_SESSION, ReportFile, participant_key, read_reports
from selip.importer.writing import VolumeJob, record_failure, write_volumes

#: What pybids skips by default besides ``derivatives/`` (kept here: a shard adds its own).
_NOT_RAW = re.compile(r"^/(code|models|sourcedata|stimuli)(/|$)")

Exam = tuple[str, str | None]  # (subject, session) labels


def _check_root(root: Path) -> list[str]:
    """The subject labels of the dataset at ``root``, sorted (the shard units)."""
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if not (root / "dataset_description.json").is_file():
        raise ValueError(f"{root}: not a BIDS dataset (no dataset_description.json)")
    subjects = sorted(p.name.removeprefix("sub-") for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise ValueError(f"{root}: a BIDS dataset without any sub-* folder")
    return subjects


def _layout(root: Path, only: list[str] | None) -> Any:
    """pybids' index of the raw data; of the subjects ``only`` when given."""
    try:
        import bids
        from bids.layout import BIDSLayoutIndexer
    except ImportError:
        raise ValueError("selip import bids needs pybids: pip install 'selip[bids]'") from None
    ignore: list[re.Pattern[str]] = [_NOT_RAW]
    if only is not None:
        mine = "|".join(re.escape(s) for s in only)
        ignore.append(re.compile(rf"^/sub-(?!(?:{mine})(?:/|$))"))
    return bids.BIDSLayout(root, validate=False,
                           indexer=BIDSLayoutIndexer(validate=False, ignore=ignore))


def _files(layout: Any) -> list[BidsFile]:
    root = Path(layout.root)  # absolute, whatever the command line said
    found = (from_entities(Path(f.path), root, f.get_entities())
             for f in layout.get(extension=list(NIFTI_EXTENSIONS)))
    return sorted((f for f in found if f is not None), key=lambda f: f.relpath)


def _join_report(outcome: StudyOutcome, exam: Exam, alone: bool, reports: ReportFile,
                 key: bytes) -> None:
    """The exam's report: by participant and session, or by participant alone when the
    subject has this one exam (a report file without sessions)."""
    subject, session = exam
    wanted = participant_key(subject, session)
    candidates = [wanted] + ([participant_key(subject)] if session and alone else [])
    found = next((c for c in candidates if c in reports.reports), None)
    outcome.report_ref = keyed_id(key, found or wanted)
    if found is not None:
        outcome.report = reports.reports[found]
        return
    outcome.report_status = ("empty report" if any(c in reports.empty for c in candidates)
                             else "no report")
    if session and not alone and participant_key(subject) in reports.reports:
        outcome.problems.append("the report file has a report for this participant without "
                                "a session, and the participant has several sessions; not "
                                "joined")


def _bvals(layout: Any, file: BidsFile) -> list[float] | None:
    if file.sequence != "dwi":
        return None
    try:
        found = layout.get_bval(str(file.path))
    except (IndexError, ValueError):
        return None
    return read_bvals(Path(found) if found else None)


def _plan_exam(exam: Exam, files: list[BidsFile], alone: bool, layout: Any,
               reports: ReportFile, key: bytes, options: ImportOptions
               ) -> tuple[StudyOutcome, list[VolumeJob]]:
    """Classify and choose an exam's files and join its report."""
    subject, session = exam
    outcome = StudyOutcome(keyed_id(key, participant_key(subject, session), "ex-"))
    claims: dict[str, list[BidsFile]] = {}
    for file in files:
        if file.sequence is None:
            outcome.unclassified.append(file.suffix or "(no suffix)")
        else:
            claims.setdefault(file.sequence, []).append(file)
    chosen: dict[str, BidsFile] = {}
    for sequence, claimed in sorted(claims.items()):
        choice = choose_file(sequence, claimed)
        if outcome.record_choice(sequence, choice.chosen.label if choice.chosen else None,
                                 choice.note):
            assert choice.chosen is not None
            chosen[sequence] = choice.chosen
    outcome.missing = [s for s in options.expected if s not in chosen]
    _join_report(outcome, exam, alone, reports, key)
    if outcome.report is None or not chosen:
        return outcome, []  # nothing to train on: write nothing
    folder = options.out / NIFTI_FOLDER / outcome.exam_id
    jobs = []
    for sequence, file in sorted(chosen.items()):
        try:
            bvals = _bvals(layout, file)
        except VolumeError as err:
            record_failure(outcome, sequence, _explain(file, sequence, err))
            continue
        write = partial(write_volume, file.path, folder / f"{sequence}.nii.gz", sequence,
                        keyed_id(key, file.relpath, "se-"), layout.get_metadata(str(file.path)),
                        bvals, _labels_in(file))
        jobs.append(VolumeJob(outcome, sequence, write, partial(_explain, file, sequence)))
    return outcome, jobs


def _explain(file: BidsFile, sequence: str, err: Exception) -> str:
    """The log line of a file that could not be written; the message is replaced by the
    error's type when it names the source's path (which holds the subject's label)."""
    reason = str(err)
    if file.subject in reason or (file.session and file.session in reason) or not reason:
        reason = type(err).__name__
    return f"{sequence}: {file.label}: {reason}"


def _labels_in(file: BidsFile) -> list[str]:
    """The strings that would identify the subject or session in a sidecar field."""
    labels = [file.subject, *([file.session] if file.session else [])]
    return [f"sub-{file.subject}", *([f"ses-{file.session}"] if file.session else []),
            *(label for label in labels if len(label) >= 4)]


def import_bids(root: Path, options: ImportOptions) -> ImportSummary | None:
    """Import this shard's subjects of the BIDS dataset at ``root``.

    Returns the merged summary when this process finished the last part (always, for a
    single process); ``None`` when other shards are still running.

    Raises:
        ValueError: not a BIDS dataset, pybids missing, an unusable report file or key.
    """
    subjects = _check_root(root)
    has_sessions = any(p.is_dir() for p in root.glob("sub-*/ses-*"))
    session = options.report_session or (DETECT_SESSION if has_sessions else None)
    reports = read_reports(options.reports, options.reports_encoding, options.report_key,
                           options.report_text, participants=True, session=session)
    options.out.mkdir(parents=True, exist_ok=True)
    key = load_or_create_key(options.out, options.key_file)
    mine = subjects if options.shard.whole else options.shard.take(subjects)
    layout = _layout(root, None if options.shard.whole else mine)
    taken = set(mine)
    files = [f for f in _files(layout) if f.subject in taken]
    exams: dict[Exam, list[BidsFile]] = {}
    for file in files:
        exams.setdefault((file.subject, file.session), []).append(file)
    per_subject = Counter(subject for subject, _ in exams)
    outcomes: list[StudyOutcome] = []
    jobs: list[VolumeJob] = []
    for exam in sorted(exams, key=lambda e: (e[0], e[1] or "")):
        outcome, planned = _plan_exam(exam, exams[exam], per_subject[exam[0]] == 1, layout,
                                      reports, key, options)
        outcomes.append(outcome)
        jobs += planned
    write_volumes(jobs, options.out, options.workers, options.progress, "writing volumes")
    summary = PartSummary(
        run_id=options.run_id, source=str(root), files=len(files), studies=len(outcomes),
        report_file=str(reports.path), report_encoding=reports.encoding,
        report_key=reports.key_field + (f" and {reports.session_field}"
                                        if reports.session_field else ""),
        report_refs=sorted(keyed_id(key, k) for k in (*reports.reports, *reports.empty)),
        report_problems=[str(p) for p in reports.problems], importer="bids")
    write_part(options.out, options.shard, outcomes, summary)
    if not parts_complete(options.out, options.shard, options.run_id):
        return None
    return merge(options.out, options.shard.count)
