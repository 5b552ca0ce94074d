"""The image files of a BIDS dataset, as selip sequences: which suffix is which sequence,
and which file to take when an exam has several for one sequence.

BIDS names say what a file is (``_T1w``, ``ce-gd``, ``run-2``), so no rule file is
needed. Labels shown in the log drop the ``sub-``/``ses-`` entities: BIDS labels can be
hospital ids, and the log must not carry them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: BIDS suffix → selip sequence (``T1w`` with a ``ce-`` entity is ``t1c``; ``dwi`` only in
#: the ``dwi`` datatype). ``ADC`` is not in the specification but many pipelines write it.
SUFFIX_SEQUENCES = {"T1w": "t1", "T2w": "t2", "FLAIR": "flair", "dwi": "dwi", "ADC": "adc",
                    "T2starw": "t2star", "PDw": "pd"}
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
#: Entities that name the exam, not the acquisition, or only the file's format.
_NOT_VARIANT = frozenset({"subject", "session", "run", "extension"})


@dataclass(frozen=True)
class BidsFile:
    """One NIfTI image of the dataset and its BIDS entities."""

    path: Path
    relpath: str  # relative to the root, POSIX: what the keyed series id is made of
    subject: str
    session: str | None
    suffix: str
    datatype: str
    run: int | None
    entities: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        """The file as the log names it: datatype and name without ``sub-``/``ses-``."""
        parts = [p for p in self.path.name.split("_") if not p.startswith(("sub-", "ses-"))]
        return f"{self.datatype}/{'_'.join(parts)}" if self.datatype else "_".join(parts)

    @property
    def sequence(self) -> str | None:
        """The selip sequence of this file; ``None``: unclassified."""
        if self.suffix == "T1w" and self.entities.get("ceagent"):
            return "t1c"
        if self.suffix == "dwi" and self.datatype != "dwi":
            return None
        return SUFFIX_SEQUENCES.get(self.suffix)

    @property
    def variant(self) -> tuple[tuple[str, str], ...]:
        """The entities besides subject, session, run and extension: files of one exam
        that differ here are different acquisitions, not repeats."""
        return tuple(sorted((k, str(v)) for k, v in self.entities.items()
                            if k not in _NOT_VARIANT))


def from_entities(path: Path, root: Path, entities: dict[str, Any]) -> BidsFile | None:
    """The file's record; ``None`` for a file without a subject (not part of an exam)."""
    subject = entities.get("subject")
    if not subject:
        return None
    run = entities.get("run")
    session = entities.get("session")
    return BidsFile(path, path.relative_to(root).as_posix(), str(subject),
                    str(session) if session else None, str(entities.get("suffix") or ""),
                    str(entities.get("datatype") or ""),
                    int(run) if run is not None and str(run).isdigit() else None,
                    dict(entities))


@dataclass
class FileChoice:
    """The file taken for a sequence (``None``: ambiguous, left out) and what the log says."""

    chosen: BidsFile | None
    note: str = ""


def choose_file(sequence: str, files: list[BidsFile]) -> FileChoice:
    """The file of ``sequence`` among an exam's ``files``: the highest ``run-`` among
    repeats of one acquisition. Files that differ otherwise (two ``acq-`` labels, a
    ``.nii`` beside a ``.nii.gz``) are ambiguous and none is guessed."""
    ordered = sorted(files, key=lambda f: f.label)
    if len(ordered) == 1:
        return FileChoice(ordered[0])
    top = max(f.run or 0 for f in ordered)
    latest = [f for f in ordered if (f.run or 0) == top]
    if len({f.variant for f in ordered}) > 1 or len(latest) > 1:
        tied = ", ".join(f.label for f in ordered)
        return FileChoice(None, f"{sequence}: {len(ordered)} candidates and no rule to choose "
                                f"between them ({tied}); the sequence is left out")
    others = ", ".join(f.label for f in ordered if f is not latest[0])
    return FileChoice(latest[0], f"{sequence}: chose {latest[0].label} over {others} "
                                 f"(by latest run)")
