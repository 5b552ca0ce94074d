"""PerBatchSimilarity: S computed per batch from texts parsed once equals the dense table's
S (stored as float16) for every preset and both languages, and survives the disk."""

from __future__ import annotations

import numpy as np
import pytest

from selip.demo.exams import plan_exam
from selip.demo.measure import abnormal_pairs
from selip.similarity import PRESETS
from selip.similarity.config import SimilarityConfig
from selip.similarity.engine import SimilarityEngine
from selip.similarity.per_batch import (
    PerBatchSimilarity,
    load_or_build_parsed,
    parse_reports,
)

#: Half a float16 step at 1.0: a subset's matmul may round the last float32 bit apart.
HALF_ULP = 2.0**-11


def _written_texts(language: str, exams: int = 60) -> list[str]:
    plans = [plan_exam(0, i) for i in range(exams)]
    return sorted(set(abnormal_pairs(plans, language)[0]))


def _dense(texts: list[str], config: SimilarityConfig) -> np.ndarray:
    return SimilarityEngine(config).matrix(texts).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("preset", ["english", "paper"])
def test_rows_equal_the_dense_table_exactly(language, preset):
    texts = _written_texts(language)
    config = PRESETS[preset]
    dense = _dense(texts, config)
    similarity = PerBatchSimilarity(parse_reports(texts, config), config, "key")
    generator = np.random.default_rng(1)
    for _ in range(5):
        rows = generator.integers(0, len(texts), 8)
        cols = np.concatenate([rows, generator.integers(0, len(texts), 24)])  # repeats too
        np.testing.assert_array_equal(similarity.rows(rows, cols),
                                      dense[rows[:, None], cols[None, :]])


def test_the_embedding_scorer_round_trips_through_the_disk(tmp_path):
    texts = _written_texts("en", exams=20)
    config = SimilarityConfig(semantic="embedding", syntax="indel", combine="weighted")
    built, key, was_built = load_or_build_parsed(tmp_path, texts, config, progress=False)
    again, same_key, rebuilt = load_or_build_parsed(tmp_path, texts, config, progress=False)
    assert was_built and not rebuilt and key == same_key
    assert built.findings.embeddings is not None
    np.testing.assert_array_equal(again.findings.embeddings, built.findings.embeddings)
    assert again.findings.texts == built.findings.texts
    dense = _dense(texts, config)
    similarity = PerBatchSimilarity(again, config, key)
    everything = np.arange(len(texts))
    assert np.abs(similarity.rows(everything, everything) - dense).max() <= HALF_ULP


def test_a_new_setting_or_text_is_a_new_file(tmp_path):
    texts = _written_texts("en", exams=10)
    _, key, _ = load_or_build_parsed(tmp_path, texts, PRESETS["english"], progress=False)
    _, other_preset, _ = load_or_build_parsed(tmp_path, texts, PRESETS["paper"],
                                              progress=False)
    _, other_texts, _ = load_or_build_parsed(tmp_path, texts[1:], PRESETS["english"],
                                             progress=False)
    assert len({key, other_preset, other_texts}) == 3
    assert len(list((tmp_path / "similarity").glob("*-parsed.npz"))) == 3
