"""Are the demo reports written like real ones, and does S still read them?

Side by side for the fixed vocabulary the demo wrote before (every finding in one
canonical wording) and the written reports (a style per exam, synonyms, sizes, hedges,
pertinent negatives), in English and in Chinese:

- the unique-text ratio over the abnormal pairs (real reports: nearly 1);
- per similarity rule, the AUROC of S for single findings with the same truth
  ``(kind, region, side)`` vs a different one, and for pair texts with the same truth set.

``english (before)`` is the ``english`` preset as it was before it read synonyms (Indel +
fields, α = 0.7, literal tags and locations). Reports only: no volumes are synthesised.

    .venv/bin/python benchmarks/demo_reports.py [--exams 200] [--embedding]
"""

from __future__ import annotations

import argparse
import time

from selip.demo.exams import plan_exam
from selip.demo.measure import measure_reports
from selip.similarity import PRESETS, SimilarityConfig

#: The ``english`` preset before it read synonyms.
ENGLISH_BEFORE = SimilarityConfig(syntax="indel", semantic="fields", combine="weighted",
                                  alpha=0.7)


def rules(with_embedding: bool) -> dict[str, str | SimilarityConfig]:
    """The rules compared: both presets, the old ``english``, optionally MiniLM."""
    chosen: dict[str, str | SimilarityConfig] = {
        "paper": "paper", "english (before)": ENGLISH_BEFORE, "english": PRESETS["english"]}
    if with_embedding:
        chosen["indel + embedding, α=0.5"] = SimilarityConfig(
            syntax="indel", semantic="embedding", combine="weighted", alpha=0.5)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exams", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--findings", type=int, default=400,
                        help="single findings sampled for the finding AUROC (400)")
    parser.add_argument("--embedding", action="store_true", help="include the MiniLM scorer")
    args = parser.parse_args()
    start = time.perf_counter()
    plans = [plan_exam(args.seed, i) for i in range(args.exams)]
    compared = rules(args.embedding)
    print(f"{args.exams} exams (seed {args.seed}); AUROC of S: single findings / pair texts, "
          "same vs different truth")
    header = f"{'reports':24s} {'lang':4s} {'unique':>13s}"
    print(header + "".join(f" {name:>22s}" for name in compared))
    for language in ("en", "zh"):
        for canonical in (True, False):
            m = measure_reports(plans, language, compared, args.findings, canonical)
            name = "fixed vocabulary" if canonical else "written (style/synonyms)"
            unique = f"{m.unique_texts}/{m.pairs} {m.unique_ratio:.2f}"
            cells = "".join(f" {m.finding_auroc[r]:>13.3f} / {m.pair_auroc[r]:.3f}"
                            for r in compared)
            print(f"{name:24s} {language:4s} {unique:>13s}{cells}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
