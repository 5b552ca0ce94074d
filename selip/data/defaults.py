"""The data settings a trained model depends on, when nothing sets them: the datamodule's
defaults, and what a checkpoint whose recorded config leaves one out was trained with
(one source for both; this module imports neither Lightning nor torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextInputDefaults:
    """How report text reaches the text encoder, and the similarity preset."""

    text_model: str | None = None  # None: the text encoder's own model
    max_length: int = 256
    similarity: str = "english"


TEXT_INPUT = TextInputDefaults()
