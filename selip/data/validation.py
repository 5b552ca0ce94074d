"""Manifest validation: every problem at once, each with its row and column.

Two layers: :func:`check_structure` looks only at the table (cheap, runs on every
rank); :func:`check_files` opens every NIfTI it names (missing, a directory, unreadable,
corrupt, 4D, NaN/Inf, and an image volume whose voxels are all equal, which no intensity
scaling can scale). File checks are memoised by content digest in the cache folder, so a second
run over an unchanged archive costs a ``stat`` per file. :func:`check_manifest` runs both
in one go: a problem in the table never hides the files' problems.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from selip.data.intensity import ConstantVolumeError, require_contrast
from selip.data.manifest import KNOWN_SEQUENCES, SPLITS, ExamRecord, Manifest, Problem
from selip.data.nifti import VolumeError, load_volume, require_file
from selip.io.atomic import atomic_write_text
from selip.io.fingerprint import FileDigests
from selip.text.reports import ReportError, parse_report


@dataclass(frozen=True)
class Requirements:
    """What the task needs from each exam."""

    sequences: tuple[str, ...] | None = None  # None: every sequence column of the manifest
    require_label: bool = False
    require_mask: bool = False
    all_sequences: bool = False  # every exam must have every sequence (stacked channels)


def resolve_sequences(manifest: Manifest, requested: Iterable[str] | None) -> list[str]:
    """The sequence columns to use: the requested ones, or every known sequence column."""
    if requested is None:
        return [c for c in manifest.sequence_columns if c in KNOWN_SEQUENCES]
    return [s.lower() for s in requested]


def check_structure(manifest: Manifest, needs: Requirements,
                    skip_rows: Collection[int] = ()) -> list[Problem]:
    """Problems visible in the table itself (no file is opened).

    Args:
        skip_rows: rows already reported as unreadable (their cells are not checked).
    """
    source = str(manifest.path)
    problems: list[Problem] = []
    sequences = resolve_sequences(manifest, needs.sequences)
    declared = set(KNOWN_SEQUENCES) | set(sequences)
    for column in manifest.sequence_columns:
        if column not in declared:
            problems.append(Problem(source, f"unknown sequence column '{column}'; known: "
                                    f"{', '.join(KNOWN_SEQUENCES)} (list it in data.sequences "
                                    "if it is a sequence)", column=column))
    for sequence in sequences:
        if sequence not in manifest.columns:
            problems.append(Problem(source, f"sequence '{sequence}' was requested but the "
                                    "manifest has no such column", column=sequence))
    if not sequences:
        problems.append(Problem(source, "the manifest has no sequence columns "
                                f"(expected one or more of {', '.join(KNOWN_SEQUENCES)})"))
    counts = Counter(e.exam_id for e in manifest.exams if e.exam_id)
    with_split = [e.split is not None for e in manifest.exams]
    if any(with_split) and not all(with_split):
        problems.append(Problem(source, f"split is empty in {with_split.count(False)} of "
                                f"{len(with_split)} rows; fill it for every exam or remove the "
                                "column", column="split"))
    absent = {"exam_id", "report"} - set(manifest.columns)  # reported once by read_manifest
    for exam in manifest.exams:
        if exam.row not in skip_rows:
            problems += [p for p in _check_row(source, exam, sequences, needs, counts)
                         if p.column not in absent]
    return problems


def _check_row(source: str, exam: ExamRecord, sequences: list[str], needs: Requirements,
               counts: Counter[str]) -> list[Problem]:
    found: list[Problem] = []

    def problem(message: str, column: str | None) -> None:
        found.append(Problem(source, message, row=exam.row, column=column,
                             exam_id=exam.exam_id or None))

    if not exam.exam_id:
        problem("exam_id is empty", "exam_id")
    elif counts[exam.exam_id] > 1:
        problem(f"duplicate exam_id '{exam.exam_id}' ({counts[exam.exam_id]} rows)", "exam_id")
    if not exam.report.strip():
        problem("report is empty", "report")
    else:
        try:
            parse_report(exam.report, sequences=sequences)
        except ReportError as err:
            problem(str(err), "report")
    if sequences and not any(s in exam.volumes for s in sequences):
        problem(f"no volume for any of the sequences {', '.join(sequences)}", None)
    missing = [s for s in sequences if s not in exam.volumes]
    if needs.all_sequences and missing and len(missing) < len(sequences):
        problem(f"no volume for sequence(s) {', '.join(missing)}; data.stack_sequences "
                "needs every sequence of every exam", missing[0])
    if exam.split is not None and exam.split not in SPLITS:
        problem(f"split '{exam.split}' is not one of {', '.join(SPLITS)}", "split")
    if needs.require_label and exam.label is None:
        problem("label is missing (this task needs a label for every exam)", "label")
    if needs.require_mask and exam.mask is None:
        problem("mask is missing (this task needs a mask for every exam)", "mask")
    return found


#: 2: image volumes must not be constant.
_CHECKS_VERSION = 2


def _check_contrast(data: np.ndarray, path: Path) -> None:
    try:
        require_contrast(float(data.min()), float(data.max()))
    except ConstantVolumeError as err:
        raise VolumeError(f"{err}: {path} (was it exported empty?)") from None


def _file_jobs(manifest: Manifest, sequences: list[str]) -> list[tuple[int, str, Path]]:
    jobs = []
    for index, exam in enumerate(manifest.exams):
        jobs += [(index, s, exam.volumes[s]) for s in sequences if s in exam.volumes]
        if exam.mask is not None:
            jobs.append((index, "mask", exam.mask))
    return jobs


def check_files(manifest: Manifest, needs: Requirements, first_volume_of_4d: bool = False,
                digests: FileDigests | None = None, checked_dir: Path | None = None,
                num_threads: int = 4, progress: bool = True) -> list[Problem]:
    """Open every volume and mask the manifest names; return the problems found.

    Args:
        digests: content digests (memoised); with ``checked_dir``, files already found
            good under the same settings are not read again.
        checked_dir: folder holding one marker file per content digest that passed.
    """
    sequences = resolve_sequences(manifest, needs.sequences)
    jobs = _file_jobs(manifest, sequences)
    digests = digests or FileDigests()
    # The checks' version is in the marker: a file passed by older, laxer checks is read again.
    tag = json.dumps({"first_volume_of_4d": first_volume_of_4d, "checks": _CHECKS_VERSION})

    def check(job: tuple[int, str, Path]) -> Problem | None:
        index, column, path = job
        exam = manifest.exams[index]
        try:
            require_file(path)  # before the digest, which cannot read a directory
            marker = None
            if checked_dir is not None:
                digest = digests.digest(path)
                marker = checked_dir / digest[:2] / digest
                if marker.is_file() and marker.read_text() == tag:
                    return None
            data, _ = load_volume(path, first_volume_of_4d)
            if column != "mask":  # a lesion-free exam's mask is all zero, rightly
                _check_contrast(data, path)
            if marker is not None:
                atomic_write_text(marker, tag)
        except (VolumeError, OSError) as err:
            return Problem(str(manifest.path), str(err), row=exam.row, column=column,
                           exam_id=exam.exam_id or None)
        return None

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        results = list(tqdm(pool.map(check, jobs), total=len(jobs), desc="checking volumes",
                            unit="file", disable=not progress or not jobs, leave=False))
    digests.save()
    return [p for p in results if p is not None]


def check_manifest(manifest: Manifest, read_problems: list[Problem], needs: Requirements,
                   open_files: bool = True, first_volume_of_4d: bool = False,
                   digests: FileDigests | None = None, checked_dir: Path | None = None,
                   num_threads: int = 4, progress: bool = True) -> list[Problem]:
    """Every problem of the manifest and its files, in row order (table-wide ones first).

    The table and, with ``open_files``, the files of every column that exists are checked
    in the same run, so a missing column or an empty report does not hide a missing or
    corrupt file. Only a manifest that could not be read at all (no columns) stops early.

    Args:
        read_problems: the problems :func:`~selip.data.manifest.read_manifest` returned.
        open_files: also open every volume and mask (see :func:`check_files`).
    """
    problems = list(read_problems)
    if not manifest.columns:
        return problems
    unreadable = {p.row for p in read_problems if p.row is not None}
    problems += check_structure(manifest, needs, skip_rows=unreadable)
    if open_files:
        problems += check_files(manifest, needs, first_volume_of_4d, digests, checked_dir,
                                num_threads=num_threads, progress=progress)
    return sorted(problems, key=lambda p: -1 if p.row is None else p.row)
