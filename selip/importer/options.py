"""What ``selip import dicom|bids`` was asked to do: one object both importers read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from selip.importer.outcome import DEFAULT_EXPECTED
from selip.importer.shard import Shard

#: The folder of the output where the volumes go, one sub-folder per exam.
NIFTI_FOLDER = "nifti"


def current_run_id() -> str:
    """The SLURM array's job id when this runs in one ('' otherwise): parts of one array
    are merged only with each other, never with a previous run's."""
    return os.environ.get("SLURM_ARRAY_JOB_ID", "")


@dataclass
class ImportOptions:
    """The command line, parsed."""

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
    run_id: str = field(default_factory=current_run_id)
