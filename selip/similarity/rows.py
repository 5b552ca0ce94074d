"""The one question a training step asks about report similarity: the S rows of its
batch. Every lookup answers it; the tables by looking the rows up, the per-batch mode by
taking what the loader workers computed (:class:`~selip.similarity.per_batch.
PerBatchSimilarity` overrides it), so the task never asks which one it holds."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


class LooksUpBatchRows:
    """``batch_rows`` for lookups that hold S (a dense or a top-k table)."""

    def lookup(self, report_ids: torch.Tensor, column_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        raise NotImplementedError

    def batch_rows(self, batch: Mapping[str, torch.Tensor], report_ids: torch.Tensor,
                   column_ids: torch.Tensor) -> torch.Tensor:
        """(b, N) float32 S between this rank's ``report_ids`` (b,) and the step's
        gathered ``column_ids`` (N,), on ``report_ids``' device."""
        return self.lookup(report_ids, column_ids)

    def keep_evaluation_table(self, report_ids: np.ndarray, max_mb: float) -> bool:
        """A table already holds every row: nothing to keep."""
        return False

    def start_fit(self) -> None:
        """A fit begins (nothing to reset for a table)."""
