"""How the data's sequences reach a task's model: as image channels, and as indices.

With ``data.stack_sequences`` an exam's sequences arrive as channels of one image;
classification and segmentation inflate a pretrained 1-channel stem to match, while the
tasks that pair one sequence with text (pretraining, zero-shot) refuse stacked data.

A pretrained sequence embedding (``sequence_embedding``) is indexed in the pretraining
run's ``data.sequences`` order, which its checkpoint stores as a name → index map;
:class:`SequenceIndex` translates a later run's own sequence indices to it by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from selip.io.checkpoints import pretraining_sequences as pretraining_sequences  # re-export
from selip.models import ImageEncoder
from selip.models.image_encoder import match_input_channels

if TYPE_CHECKING:
    from selip.data.description import DataDescription
    from selip.tasks.base import BaseTask


def fit_encoder_to_data(task: BaseTask, encoder: ImageEncoder) -> None:
    """Inflate a 1-channel (pretrained) stem to the data's stacked sequences and record the
    encoder's settings in the hyper-parameters (call from ``setup_for_data``)."""
    match_input_channels(encoder, task.data.image_channels)
    task.record_config("image_encoder", encoder.config)


def require_single_channel(data: DataDescription, task: str) -> None:
    """Tasks that pair one sequence with text reject stacked sequences up front."""
    if data.image_channels != 1:
        raise ValueError(f"{task} pairs one sequence volume with its text; set "
                         "data.stack_sequences false (stacked channels are for the "
                         "classification and segmentation tasks)")




class SequenceIndex:
    """Translates the datamodule's ``sequence`` indices to the pretraining run's, by name.

    A run numbers the sequences of its own ``data.sequences``: zero-shot's ``[flair]``
    gives FLAIR index 0, which was T1's slot in a ``[t1, flair]`` pretraining.

    Args:
        known: the pretraining name → index map; None in the pretraining run itself
            (its datamodule's numbering is the map).
        enabled: the model has a sequence embedding; off, indices pass unchanged.
    """

    def __init__(self, known: Mapping[str, int] | None = None, enabled: bool = True) -> None:
        self.known = dict(known) if known is not None else None
        self.enabled = enabled
        self._table: tuple[tuple[str, ...], torch.Tensor] | None = None

    def mapping(self, names: Sequence[str] | None) -> dict[str, int] | None:
        """The name → index map of this model given the data's ``names`` (what a
        pretraining checkpoint stores); None when neither is known."""
        if self.known is not None:
            return dict(self.known)
        return {name: index for index, name in enumerate(names)} if names else None

    def table(self, names: Sequence[str]) -> torch.Tensor:
        """(len(names),) int64: the pretraining index of each data sequence.

        Raises:
            ValueError: a data sequence the pretraining never saw.
        """
        known = self.mapping(names) or {}
        unseen = [name for name in names if name not in known]
        if unseen:
            raise ValueError(f"data.sequences has {', '.join(unseen)}, which the pretrained "
                             "sequence embedding never saw; it knows "
                             f"{', '.join(known) or 'none'} (pretrain with them, or use "
                             "those sequences)")
        return torch.tensor([known[name] for name in names], dtype=torch.long)

    def check(self, names: Sequence[str] | None) -> None:
        """Raise :meth:`table`'s error up front (from ``setup``), where it applies."""
        if self.enabled and self.known is not None and names:
            self.table(names)

    def __call__(self, sequence: torch.Tensor, names: Sequence[str] | None) -> torch.Tensor:
        """The batch's (B,) data indices as the sequence embedding numbers them."""
        if not self.enabled or self.known is None or not names:
            return sequence
        key = tuple(names)
        if self._table is None or self._table[0] != key or \
                self._table[1].device != sequence.device:
            self._table = (key, self.table(names).to(sequence.device))
        return self._table[1][sequence]
