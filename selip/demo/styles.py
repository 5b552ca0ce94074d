"""A radiologist's reporting style: the habits that shape every report they write.

Each demo exam draws one style from its own random stream (so exam ``k`` keeps its style
whatever the cohort size), then words each finding from its truth with per-finding choices
(:mod:`selip.demo.writer`). The style fixes what a writer does the same way all
report long: where the side goes, how sizes are written and how often, whether the
impression is hedged, which pertinent negatives close the report, the order of findings.
Indices pick from the language's phrase banks (modulo their length), so one style serves
English and Chinese.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Sequence lines that may carry the pertinent negatives (structural ones, or the last).
NEGATIVE_LINES = ("t2", "flair", "adc")


@dataclass(frozen=True)
class ReportStyle:
    """The reporting habits of one exam's writer.

    Attributes:
        location_form: index of the side placement (``left X`` / ``X on the left`` ...).
        capitalise: start each finding with a capital letter (English).
        size_rate: chance that a visible finding states its size.
        size_form: index of the size clause (``14 mm`` / ``14 x 11 mm`` / ``1.4 cm`` ...).
        size_join: index of how the size joins the appearance.
        hedge_rate: chance that a visible finding carries a hedged impression.
        hedge_before: the impression goes before the appearance (English), else after.
        negatives: number of pertinent negatives that close the report (0-3).
        negative_line: the sequence line that carries them.
        reverse: list findings in reverse lesion order.
        normal: index of the normal sentence (normal exams).
    """

    location_form: int
    capitalise: bool
    size_rate: float
    size_form: int
    size_join: int
    hedge_rate: float
    hedge_before: bool
    negatives: int
    negative_line: str
    reverse: bool
    normal: int


def draw_style(rng: np.random.Generator) -> ReportStyle:
    """Draw a style; the draws come in a fixed order, so a seeded ``rng`` repeats it."""
    return ReportStyle(
        location_form=int(rng.choice(4, p=[0.55, 0.2, 0.1, 0.15])),
        capitalise=bool(rng.random() < 0.5),
        size_rate=float(rng.choice([0.3, 0.6, 0.9])),
        size_form=int(rng.integers(4)),
        size_join=int(rng.integers(3)),
        hedge_rate=float(rng.choice([0.0, 0.3, 0.6])),
        hedge_before=bool(rng.random() < 0.3),
        negatives=int(rng.choice(4, p=[0.3, 0.3, 0.25, 0.15])),
        negative_line=str(rng.choice(NEGATIVE_LINES)),
        reverse=bool(rng.random() < 0.5),
        normal=int(rng.integers(64)),
    )
