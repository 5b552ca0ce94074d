"""How well each similarity rule ranks related reports, on the demo cohort.

For the abnormal per-sequence texts of a demo cohort, S should be higher between texts
of the same diagnosis than between texts of different diagnoses. Prints, side by side,
the AUROC of S for that split and the mean S (how soft the targets are) for each rule.

    .venv/bin/python benchmarks/similarity_presets.py [--exams 120] [--embedding]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from selip.data.demo import SEQUENCES, generate_demo_cohort
from selip.data.reports import parse_report
from selip.similarity import PRESETS, SimilarityConfig, report_similarity


def labelled_texts(manifest: Path) -> tuple[list[str], np.ndarray]:
    """Abnormal pair texts that occur under exactly one diagnosis, with that diagnosis."""
    by_text: dict[str, set[str]] = {}
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label"] == "normal":
                continue
            report = parse_report(row["report"])
            for sequence in SEQUENCES:
                by_text.setdefault(report.text_for(sequence), set()).add(row["label"])
    texts = sorted(t for t, labels in by_text.items() if len(labels) == 1)
    return texts, np.asarray([next(iter(by_text[t])) for t in texts])


def candidates(with_embedding: bool) -> dict[str, SimilarityConfig]:
    rules = {f"preset {name}": config for name, config in PRESETS.items()}
    for syntax in ("charset_dice", "indel", "levenshtein"):
        rules[f"{syntax} × fields"] = SimilarityConfig(syntax=syntax, combine="product")
        for alpha in (0.3, 0.5, 0.7):
            rules[f"{syntax} + fields, α={alpha}"] = SimilarityConfig(
                syntax=syntax, combine="weighted", alpha=alpha)
    if with_embedding:
        rules["indel + embedding, α=0.5"] = SimilarityConfig(
            syntax="indel", semantic="embedding", combine="weighted", alpha=0.5)
    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exams", type=int, default=120)
    parser.add_argument("--embedding", action="store_true", help="include the MiniLM scorer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        texts, labels = labelled_texts(generate_demo_cohort(Path(tmp), args.exams,
                                                            progress=False))
    upper = np.triu_indices(len(texts), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    print(f"{len(texts)} abnormal demo texts, {same.sum()} same-diagnosis pairs of {same.size}")
    for name, config in candidates(args.embedding).items():
        values = report_similarity(texts, preset=config)[upper]
        print(f"{name:28s} AUROC {roc_auc_score(same, values):.3f}   mean S {values.mean():.3f}")


if __name__ == "__main__":
    main()
