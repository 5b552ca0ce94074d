"""How a trained SeLIP model scores an image against texts — the same arithmetic for
retrieval, search and zero-shot classification, kept in one place (pure functions; no
Lightning)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional


def scaled_similarity(images: torch.Tensor, texts: torch.Tensor,
                      logit_scale: torch.Tensor | float) -> torch.Tensor:
    """(N, M) logits ``s · cos(image_n, text_m)``, as in training.

    Args:
        images: (N, E) unit image embeddings.
        texts: (M, E) unit text embeddings.
        logit_scale: the model's learnt scale ``s`` (a scalar).
    """
    return logit_scale * images @ texts.T


def class_prototypes(prompt_embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """(C, E) one unit vector per class: the mean of the class's (P_c, E) prompt
    embeddings, re-normalised (several phrasings of one finding vote as one)."""
    return torch.stack([functional.normalize(embedded.mean(0), dim=-1)
                        for embedded in prompt_embeddings])
