"""The demo's pairs' truth, from the exam plans (the file format: :mod:`selip.data.truth`)."""

from __future__ import annotations

from selip.data.truth import (
    TRUTH_FILE,
    FindingKey,
    FindingTruth,
    PairTruth,
    TruthKey,
    load_truth,
    mirrored_key,
    same_findings,
    truth_classes,
    write_truth,
)
from selip.demo.contrasts import SEQUENCES
from selip.demo.exams import ExamPlan
from selip.demo.lesions import SIGNATURES

__all__ = ["TRUTH_FILE", "FindingKey", "FindingTruth", "PairTruth", "TruthKey", "load_truth",
           "mirrored_key", "pair_truths", "same_findings", "truth_classes", "write_truth"]


def pair_truths(plan: ExamPlan) -> list[PairTruth]:
    """The truth of each of a planned exam's pairs, in :data:`SEQUENCES` order."""
    sizes = plan.sizes_mm()
    return [PairTruth(plan.exam_id, sequence, plan.label, tuple(
        FindingTruth(lesion.kind, lesion.region, lesion.side, size[0], size,
                     len(lesion.blobs), SIGNATURES[lesion.kind].appearance[sequence])
        for lesion, size in zip(plan.lesions, sizes, strict=True)))
        for sequence in SEQUENCES]
