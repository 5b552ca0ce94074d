"""Writing the chosen volumes in parallel, whatever writes each one (dcm2niix for DICOM, a
link or a copy for BIDS): a failure is one line on its exam, which keeps its other
sequences, and never stops the import."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from selip.importer.outcome import StudyOutcome


class Written(Protocol):
    """What a writer returns: the volume written and what was done to get it."""

    nifti: Path
    note: str


@dataclass
class VolumeJob:
    """One sequence of one exam to write: ``write()`` does it; ``explain(err)`` turns a
    failure into the line logged on the exam (without identifiers)."""

    outcome: StudyOutcome
    sequence: str
    write: Callable[[], Written]
    explain: Callable[[Exception], str]


def record_failure(outcome: StudyOutcome, sequence: str, line: str) -> None:
    """A sequence that could not be written: logged, and counted as missing."""
    outcome.problems.append(line)
    outcome.chosen.pop(sequence, None)
    outcome.missing = sorted({*outcome.missing, sequence})


def write_volumes(jobs: list[VolumeJob], out: Path, workers: int, progress: bool,
                  description: str) -> None:
    """Run every job, ``workers`` at a time, with a progress bar; each volume written is
    recorded on its exam as a path relative to ``out``."""
    if not jobs:
        return
    from tqdm import tqdm

    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(
            total=len(jobs), desc=description, unit=" volumes", disable=not progress) as bar:
        running = {pool.submit(job.write): job for job in jobs}
        for future in as_completed(running):
            job = running[future]
            bar.update()
            try:
                written = future.result()
            except Exception as err:  # any failure of one volume: logged, the rest goes on
                record_failure(job.outcome, job.sequence, job.explain(err))
                continue
            job.outcome.volumes[job.sequence] = str(written.nifti.relative_to(out))
            if written.note:
                job.outcome.notes.append(f"{job.sequence}: {written.note}")
