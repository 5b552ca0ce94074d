"""What the importer knows about one DICOM series: its header fields, read once.

Built by :mod:`selip.importer.headers` from the files' headers (never their pixels) and
read by the sequence rules (:mod:`selip.importer.rules`) and the geometry checks
(:mod:`selip.importer.geometry`). Identifying fields (patient, accession) are kept only
in memory, to join reports; nothing here is written out as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Instance:
    """One DICOM file of a series: where it is and where its slice lies.

    ``position`` is ImagePositionPatient (mm) and ``orientation`` ImageOrientationPatient
    (six direction cosines), both ``None`` when the file does not say; ``frames`` is
    NumberOfFrames (1 for a classic single-slice file); ``b_value`` the diffusion
    weighting of this file (s/mm², standard or vendor tag), ``None`` when absent.
    """

    path: Path
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    frames: int = 1
    b_value: float | None = None
    instance_number: int | None = None


@dataclass
class Series:
    """One DICOM series (SeriesInstanceUID) of one study (StudyInstanceUID).

    Text fields are the header's values ('' when absent); ``image_type``,
    ``scanning_sequence`` and ``sequence_variant`` are upper-case tokens; times in ms.
    """

    study_uid: str
    series_uid: str
    description: str = ""
    protocol: str = ""
    series_number: int | None = None
    modality: str = ""
    manufacturer: str = ""
    image_type: tuple[str, ...] = ()
    scanning_sequence: tuple[str, ...] = ()
    sequence_variant: tuple[str, ...] = ()
    sequence_name: str = ""
    echo_time: float | None = None
    repetition_time: float | None = None
    inversion_time: float | None = None
    contrast_agent: str = ""
    series_time: str = ""
    # identifying: used to join the reports, never written
    accession_number: str = ""
    instances: list[Instance] = field(default_factory=list)

    @property
    def b_values(self) -> tuple[float, ...]:
        """The distinct b-values of the series' files, ascending (empty when none says)."""
        return tuple(sorted({i.b_value for i in self.instances if i.b_value is not None}))

    @property
    def max_b_value(self) -> float | None:
        values = self.b_values
        return values[-1] if values else None

    @property
    def label(self) -> str:
        """How the series is named in logs: its number and description (no identifiers)."""
        number = f"#{self.series_number} " if self.series_number is not None else ""
        return f"series {number}'{self.description or self.protocol or '(no description)'}'"

    @property
    def plane(self) -> str | None:
        """``axial``, ``coronal`` or ``sagittal``: the patient axis closest to the slice
        normal of the first file with an orientation; ``None`` when no file has one."""
        for instance in self.instances:
            if instance.orientation is not None and len(instance.orientation) == 6:
                row, column = instance.orientation[:3], instance.orientation[3:]
                normal = (row[1] * column[2] - row[2] * column[1],
                          row[2] * column[0] - row[0] * column[2],
                          row[0] * column[1] - row[1] * column[0])
                axis = max(range(3), key=lambda k: abs(normal[k]))
                return ("sagittal", "coronal", "axial")[axis]
        return None

    @property
    def slice_count(self) -> int:
        """Files × frames: the number of 2D images the series holds."""
        return sum(max(1, i.frames) for i in self.instances)
