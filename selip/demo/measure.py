"""How real the demo reports are, and how well S reads them: the figures
``selip demo-data`` prints and ``benchmarks/demo_reports.py`` sets side by side.

- **Unique-text ratio**: unique pair texts ÷ pairs, over the abnormal pairs (a normal
  exam's pairs share one sentence by design). Real reports are nearly all unique; a
  templated vocabulary repeats (the fixed demo vocabulary: 0.25).
- **Finding AUROC** per similarity preset: single findings (one lesion on one sequence,
  as written), every pair of them labelled 1 when their truth ``(kind, region, side)``
  matches; the AUROC of S for that split. S must rank paraphrases of one finding above
  other findings, or its soft targets pull the wrong reports together.
- **Pair AUROC**: the same over the abnormal pair texts, labelled by the truth set of the
  pair (what a "clinical" R@K counts as a hit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from selip.demo.chinese import NORMAL_REPORT_TEXT_ZH, render_finding_zh, render_report_zh
from selip.demo.contrasts import SEQUENCE_NAMES, SEQUENCES
from selip.demo.exams import ExamPlan
from selip.demo.truth import FindingKey, pair_truths
from selip.similarity import SimilarityConfig, report_similarity
from selip.text.reports import NORMAL_REPORT_TEXT, Finding, parse_report, render_report

#: The presets measured by default.
DEFAULT_PRESETS: tuple[str, ...] = ("paper", "english")


@dataclass(frozen=True)
class ReportMeasurements:
    """The measurements of one set of demo reports.

    Attributes:
        language: ``en`` or ``zh``.
        pairs: abnormal pairs (exam × sequence).
        unique_texts: unique texts among them.
        findings: single findings sampled for the finding AUROC.
        finding_auroc: preset -> AUROC of S, same vs different ``(kind, region, side)``
            (NaN when only one class is present).
        pair_auroc: preset -> AUROC of S over the pair texts, same vs different truth set.
    """

    language: str
    pairs: int
    unique_texts: int
    findings: int
    finding_auroc: dict[str, float] = field(default_factory=dict)
    pair_auroc: dict[str, float] = field(default_factory=dict)

    @property
    def unique_ratio(self) -> float:
        """Unique texts ÷ pairs over the abnormal pairs (NaN without abnormal pairs)."""
        return self.unique_texts / self.pairs if self.pairs else float("nan")

    def summary(self) -> str:
        """Two lines for a terminal: the unique-text ratio, then the AUROC per preset."""
        aurocs = ", ".join(f"{name} {value:.3f} (pairs {self.pair_auroc[name]:.3f})"
                           for name, value in self.finding_auroc.items())
        return (f"reports: {self.unique_texts} unique texts of {self.pairs} abnormal pairs "
                f"(ratio {self.unique_ratio:.2f})\n"
                f"AUROC of S, same vs different truth ({self.findings} single findings): "
                f"{aurocs or 'n/a'}")


def _render(findings: Mapping[str, Sequence[Finding]], language: str) -> str:
    if language == "zh":
        return render_report_zh(findings, SEQUENCE_NAMES)
    return render_report({s: list(f) for s, f in findings.items()}, SEQUENCE_NAMES)


def abnormal_pairs(plans: Sequence[ExamPlan], language: str = "en", canonical: bool = False
                   ) -> tuple[list[str], list[frozenset[FindingKey]]]:
    """The text of every abnormal pair, as the datamodule pairs it, and its truth set.

    ``canonical`` renders the fixed vocabulary (:meth:`ExamPlan.canonical_findings`)
    instead of the written reports: the demo's reports before they were written.
    """
    normal = NORMAL_REPORT_TEXT_ZH if language == "zh" else NORMAL_REPORT_TEXT
    texts, keys = [], []
    for plan in plans:
        if not plan.lesions:
            continue
        text = (_render(plan.canonical_findings(language), language) if canonical
                else plan.report(language))
        report = parse_report(text, normal_text=normal)
        for truth in pair_truths(plan):
            texts.append(report.text_for(truth.sequence, normal))
            keys.append(truth.key)
    return texts, keys


def single_findings(plans: Sequence[ExamPlan], language: str = "en", canonical: bool = False
                    ) -> tuple[list[str], list[FindingKey]]:
    """Every finding (one lesion on one sequence) as its own text, with its truth key."""
    render = render_finding_zh if language == "zh" else Finding.render
    texts, keys = [], []
    for plan in plans:
        if not plan.lesions:
            continue
        if canonical:
            written = {s: list(enumerate(plan.canonical_findings(language)[s]))
                       for s in SEQUENCES}
        else:
            written = {s: list(f) for s, f in plan.written(language).findings.items()}
        for sequence in SEQUENCES:
            for index, finding in written[sequence]:
                lesion = plan.lesions[index]
                texts.append(render(finding))
                keys.append((lesion.kind, lesion.region, lesion.side))
    return texts, keys


def truth_auroc(texts: Sequence[str], keys: Sequence[object],
                preset: str | SimilarityConfig) -> float:
    """AUROC of S(a, b) over all pairs a < b, label 1 when their truth keys are equal.

    Returns NaN when every pair has the same label (too few texts)."""
    if len(texts) < 2:
        return float("nan")
    upper = np.triu_indices(len(texts), 1)
    codes = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    labels = np.asarray([codes[k] for k in keys])
    same = (labels[:, None] == labels[None, :])[upper]
    if same.all() or not same.any():
        return float("nan")
    values = report_similarity(list(texts), preset=preset)[upper]
    return float(roc_auc_score(same, values))


def _sample(count: int, limit: int) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, size=limit, replace=False))


def measure_reports(plans: Sequence[ExamPlan], language: str = "en",
                    presets: Mapping[str, str | SimilarityConfig] | Sequence[str]
                    = DEFAULT_PRESETS, max_findings: int = 400, canonical: bool = False
                    ) -> ReportMeasurements:
    """Measure a cohort's reports (from its plans; no volumes needed).

    Args:
        plans: the exams (:func:`selip.demo.exams.plan_exam`).
        language: ``en`` or ``zh``.
        presets: preset names, or name -> preset name / :class:`SimilarityConfig`.
        max_findings: single findings sampled (deterministically) for the finding AUROC;
            all pairs among them are scored.
        canonical: measure the fixed vocabulary instead of the written reports.
    """
    rules = dict(presets) if isinstance(presets, Mapping) else {p: p for p in presets}
    pair_texts, pair_keys = abnormal_pairs(plans, language, canonical)
    texts, keys = single_findings(plans, language, canonical)
    chosen = _sample(len(texts), max_findings)
    texts, keys = [texts[i] for i in chosen], [keys[i] for i in chosen]
    return ReportMeasurements(
        language=language, pairs=len(pair_texts), unique_texts=len(set(pair_texts)),
        findings=len(texts),
        finding_auroc={name: truth_auroc(texts, keys, rule) for name, rule in rules.items()},
        pair_auroc={name: truth_auroc(pair_texts, pair_keys, rule)
                    for name, rule in rules.items()})
