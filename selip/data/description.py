"""What a task may know about its data: one typed object the datamodule hands over.

:meth:`SelipDataModule.describe` builds it after ``setup``; :class:`selip.tasks.BaseTask`
takes it once in its own ``setup``. That is the whole contract between the tasks and the
data — a task never reads other attributes of the datamodule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from selip.data.dataset import Pair
    from selip.data.preprocess import PreprocessSettings
    from selip.metrics import ClinicalTruth
    from selip.similarity.lookup import SimilarityLookup


class Vocabulary(Protocol):
    """The report tokens of the data, which a text encoder with added tokens must share."""

    def training_unknown_characters(self) -> list[str]:
        """Characters of the training texts the tokenizer maps to [UNK]."""
        ...

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
        similarity: S over ``report_texts`` (dense or top-k), None without similarity.
        place_similarity: moves ``similarity`` to a device within the data's budget
            (True when placed).
        clinical_truth: what each pair shows (clinical R@K), None without a truth file.
        manifest: the manifest's path (its hash goes into checkpoints).
        pairs: every sample, ``sample_id`` indexes them (prediction reads their files).
        preprocess: the preprocessing settings (prediction reads files again).
        vocabulary: the data's tokens, for text encoders that add tokens.
    """

    sequences: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    image_channels: int = 1
    report_texts: list[str] = field(default_factory=list)
    train_report_counts: torch.Tensor | None = None
    similarity: SimilarityLookup | None = None
    place_similarity: Callable[[torch.device | str], bool] | None = None
    clinical_truth: ClinicalTruth | None = None
    manifest: Path | None = None
    pairs: Sequence[Pair] = ()
    preprocess: PreprocessSettings | None = None
    vocabulary: Vocabulary | None = None


def train_report_counts(pairs: Sequence[Pair], report_count: int) -> torch.Tensor | None:
    """(R,) int64 training pairs per ``report_id`` (R = ``report_count``, or more when an id
    exceeds it), the frequency prior of retrieval; None without training pairs."""
    ids = [p.report_id for p in pairs if p.split == "train"]
    if not ids:
        return None
    size = max(report_count, max(ids) + 1)
    return torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=size)
