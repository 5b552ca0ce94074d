"""What a task may know about its data: one typed object the datamodule hands over.

:meth:`SelipDataModule.describe` builds it after ``setup``; :class:`selip.tasks.BaseTask`
takes it once in its own ``setup``. That is the whole contract between the tasks and the
data — plain data, no datamodule and no bound methods; a task never reads other attributes
of the datamodule (only a text encoder that adds tokens tells the datamodule, through
Lightning's ``trainer.datamodule``, as :class:`Vocabulary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from selip.data.pair import Pair
    from selip.data.preprocess import PreprocessSettings
    from selip.metrics import ClinicalTruth
    from selip.similarity.lookup import SimilarityLookup


@runtime_checkable
class Vocabulary(Protocol):
    """The report tokens of a datamodule, which a text encoder with added tokens must
    share (a task reaches them through ``trainer.datamodule``, not the description)."""

    def add_tokens(self, tokens: list[str]) -> None:
        """Re-tokenise the reports with ``tokens`` added to the tokenizer."""
        ...

    def warn_unknown_tokens(self) -> None:
        """Warn when many report tokens are still [UNK]."""
        ...


@dataclass
class DataDescription:
    """Everything about the data a task uses; empty (the defaults) without a datamodule.

    Attributes:
        sequences: sequence names in the order of the batches' ``sequence`` indices.
        classes: label names in the order of the batches' ``label`` values.
        image_channels: channels of ``batch["image"]`` (stacked sequences), else 1.
        report_texts: the unique pair texts; ``report_id`` indexes them.
        train_report_counts: (R,) int64 training pairs per report id — the frequency prior
            of retrieval; None without training pairs.
        similarity: S over ``report_texts`` (a table, or computed per batch), None
            without similarity.
        similarity_device_budget_mb: the largest table the task moves onto its device.
        clinical_truth: what each pair shows (clinical R@K), None without a truth file.
        manifest: the manifest's path (its hash goes into checkpoints).
        pairs: every sample, ``sample_id`` indexes them (prediction reads their files).
        preprocess: the preprocessing settings (prediction reads files again).
        unknown_characters: the training texts' characters the tokenizer maps to [UNK]
            (what a text encoder with ``add_unknown_tokens`` adds to its vocabulary).
    """

    sequences: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    image_channels: int = 1
    report_texts: list[str] = field(default_factory=list)
    train_report_counts: torch.Tensor | None = None
    similarity: SimilarityLookup | None = None
    similarity_device_budget_mb: float = 0.0
    clinical_truth: ClinicalTruth | None = None
    manifest: Path | None = None
    pairs: Sequence[Pair] = ()
    preprocess: PreprocessSettings | None = None
    unknown_characters: list[str] = field(default_factory=list)


def train_report_counts(pairs: Sequence[Pair], report_count: int) -> torch.Tensor | None:
    """(R,) int64 training pairs per ``report_id`` (R = ``report_count``, or more when an id
    exceeds it), the frequency prior of retrieval; None without training pairs."""
    ids = [p.report_id for p in pairs if p.split == "train"]
    if not ids:
        return None
    size = max(report_count, max(ids) + 1)
    return torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=size)
