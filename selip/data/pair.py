"""One sample of the cohort: an exam's volume (or its stacked sequences) and its report
text's ids, with the cache keys its files are read under."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    """One sample; ``sample_id`` is its index in the datamodule's pair list.

    ``volumes`` holds one volume (a pretraining pair) or, with stacked sequences, every
    sequence of the exam in the datamodule's sequence order; ``sequence_index`` is the
    (first) volume's sequence and the report ids are that sequence's pair text.
    """

    sample_id: int
    exam_id: str
    split: str
    sequence_index: int
    volumes: tuple[Path, ...]
    volume_keys: tuple[str, ...]
    report_id: int
    mirrored_report_id: int
    label: int | None = None
    mask: Path | None = None
    mask_key: str | None = None

    @property
    def volume(self) -> Path:
        """The first (in pretraining, the only) volume; its grid is the sample's grid."""
        return self.volumes[0]
