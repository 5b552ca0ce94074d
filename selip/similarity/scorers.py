"""Vectorised finding-level scorers: (Fa, Fb) matrices from lists of findings.

Pure numpy / rapidfuzz; no Python loop over pairs. Each has a per-pair twin in
:mod:`selip.similarity.reference` that the tests compare against.
"""

from __future__ import annotations

import numpy as np
from rapidfuzz import distance, process

from selip.similarity.config import SyntaxScorer


def _charset_incidence(texts: list[str], alphabet: dict[str, int]) -> np.ndarray:
    """(N, C) float32 0/1: which characters (whitespace excluded) each text contains."""
    rows, cols = [], []
    for row, text in enumerate(texts):
        chars = {alphabet[c] for c in set(text) if not c.isspace()}
        rows += [row] * len(chars)
        cols += list(chars)
    incidence = np.zeros((len(texts), max(1, len(alphabet))), np.float32)
    incidence[rows, cols] = 1.0
    return incidence


def charset_dice_matrix(texts_a: list[str], texts_b: list[str]) -> np.ndarray:
    """Character-set Dice 2|X∩Y|/(|X|+|Y|) for every pair; (Fa, Fb) float32.

    Two empty sets score 1 (identical), one empty set scores 0.
    """
    alphabet: dict[str, int] = {}
    for text in (*texts_a, *texts_b):
        for char in text:
            if not char.isspace():
                alphabet.setdefault(char, len(alphabet))
    a = _charset_incidence(texts_a, alphabet)
    b = _charset_incidence(texts_b, alphabet)
    intersection = a @ b.T  # exact: counts are small integers in float32
    sizes = a.sum(1)[:, None] + b.sum(1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(sizes > 0, 2.0 * intersection / sizes, 1.0)
    return dice.astype(np.float32)


def edit_matrix(texts_a: list[str], texts_b: list[str], scorer: SyntaxScorer,
                workers: int = -1) -> np.ndarray:
    """Normalised Indel or Levenshtein similarity for every pair (rapidfuzz, threaded)."""
    metric = {"indel": distance.Indel, "levenshtein": distance.Levenshtein}[scorer]
    return process.cdist(texts_a, texts_b, scorer=metric.normalized_similarity,
                         dtype=np.float32, workers=workers)


def syntax_matrix(texts_a: list[str], texts_b: list[str], scorer: SyntaxScorer,
                  workers: int = -1) -> np.ndarray:
    """The configured syntax scorer over every pair; (Fa, Fb) float32 in [0, 1]."""
    if scorer == "charset_dice":
        return charset_dice_matrix(texts_a, texts_b)
    return edit_matrix(texts_a, texts_b, scorer, workers)


def field_agreement_matrix(locations_a: np.ndarray, tags_a: np.ndarray,
                           locations_b: np.ndarray, tags_b: np.ndarray) -> np.ndarray:
    """0.5·[same location] + 0.5·[same signal tag]; inputs are integer codes.

    Args:
        locations_a, tags_a: (Fa,) int codes; locations_b, tags_b: (Fb,) int codes.

    Returns:
        (Fa, Fb) float32 in {0, 0.5, 1}.
    """
    same_location = locations_a[:, None] == locations_b[None, :]
    same_tag = tags_a[:, None] == tags_b[None, :]
    return (0.5 * same_location + 0.5 * same_tag).astype(np.float32)


def cosine_matrix(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of L2-normalised rows, clipped at 0; (Fa, Fb) float32."""
    return np.clip(embeddings_a @ embeddings_b.T, 0.0, 1.0).astype(np.float32)


def combine(syntax: np.ndarray, semantic: np.ndarray, how: str, alpha: float) -> np.ndarray:
    """``product`` or ``weighted`` (α·syn + (1−α)·sem), elementwise."""
    if how == "product":
        return syntax * semantic
    return alpha * syntax + (1.0 - alpha) * semantic
