"""How well each similarity rule ranks related reports, on the demo cohort's reports.

For the abnormal pair texts of a demo cohort (its written reports: a style per exam,
synonyms, sizes, hedges; no volumes are synthesised), S should be higher between texts
that describe the same thing. Prints, side by side for each rule:

- AUROC of S for same-diagnosis vs different-diagnosis pair texts (texts that occur
  under exactly one diagnosis);
- AUROC of S for single findings with the same truth ``(kind, region, side)`` vs a
  different one, and for pair texts with the same truth set
  (:mod:`selip.demo.measure`);
- mean S over the pair texts (how soft the targets are).

    .venv/bin/python benchmarks/similarity_presets.py [--exams 120] [--embedding]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sklearn.metrics import roc_auc_score

from selip.demo import SEQUENCES
from selip.demo.exams import ExamPlan, plan_exam
from selip.demo.measure import measure_reports
from selip.similarity import PRESETS, SimilarityConfig, report_similarity
from selip.text.reports import parse_report


def labelled_texts(plans: Sequence[ExamPlan]) -> tuple[list[str], np.ndarray]:
    """Abnormal pair texts that occur under exactly one diagnosis, with that diagnosis."""
    by_text: dict[str, set[str]] = {}
    for plan in plans:
        if plan.label == "normal":
            continue
        report = parse_report(plan.report())
        for sequence in SEQUENCES:
            by_text.setdefault(report.text_for(sequence), set()).add(plan.label)
    texts = sorted(t for t, labels in by_text.items() if len(labels) == 1)
    return texts, np.asarray([next(iter(by_text[t])) for t in texts])


def candidates(with_embedding: bool) -> dict[str, SimilarityConfig]:
    """Both presets, then the syntax scorers and weights over the ``english`` fields."""
    rules = {f"preset {name}": config for name, config in PRESETS.items()}
    english = PRESETS["english"]
    for syntax in ("charset_dice", "indel", "levenshtein"):
        rules[f"{syntax} × fields"] = replace(english, syntax=syntax, combine="product")
        for alpha in (0.3, 0.5, 0.7):
            rules[f"{syntax} + fields, α={alpha}"] = replace(
                english, syntax=syntax, combine="weighted", alpha=alpha)
    rules["literal fields (english before)"] = SimilarityConfig(
        syntax="indel", combine="weighted", alpha=0.7)
    if with_embedding:
        rules["indel + embedding, α=0.5"] = SimilarityConfig(
            syntax="indel", semantic="embedding", combine="weighted", alpha=0.5)
    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exams", type=int, default=120)
    parser.add_argument("--embedding", action="store_true", help="include the MiniLM scorer")
    args = parser.parse_args()
    plans = [plan_exam(0, i) for i in range(args.exams)]
    texts, labels = labelled_texts(plans)
    upper = np.triu_indices(len(texts), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    rules = candidates(args.embedding)
    truth = measure_reports(plans, "en", rules)
    print(f"{len(texts)} abnormal demo texts, {same.sum()} same-diagnosis pairs of {same.size}; "
          f"truth AUROC over {truth.findings} single findings and {truth.pairs} pair texts")
    print(f"{'rule':34s} {'diagnosis':>9s} {'findings':>9s} {'pairs':>7s} {'mean S':>7s}")
    for name, config in rules.items():
        values = report_similarity(texts, preset=config)[upper]
        print(f"{name:34s} {roc_auc_score(same, values):9.3f} {truth.finding_auroc[name]:9.3f} "
              f"{truth.pair_auroc[name]:7.3f} {values.mean():7.3f}")


if __name__ == "__main__":
    main()
