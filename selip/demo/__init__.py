"""A synthetic demo cohort of head MRI exams on real anatomy (``selip demo-data``).

:func:`generate_demo_cohort` writes five sequences (T1, T2, FLAIR, DWI, ADC), a lesion
mask, a report and a diagnosis label per exam, plus ``manifest.csv`` and ``truth.jsonl``
(what each pair shows: :func:`load_truth`). The anatomy is the MNI152 2009a template that
nilearn ships as package data (read locally, never fetched). Reports are written as
radiologists write them (:mod:`selip.demo.writer`: a style per exam, synonyms, sizes,
hedges, pertinent negatives), in English free text or with ``language="zh"`` the authors'
Chinese JSON reports (:mod:`selip.demo.chinese`).
"""

from selip.demo.chinese import LANGUAGES, NORMAL_REPORT_TEXT_ZH
from selip.demo.cohort import MANIFEST_COLUMNS, generate_demo_cohort
from selip.demo.contrasts import SEQUENCE_NAMES, SEQUENCES
from selip.demo.lesions import LABELS, REGIONS
from selip.demo.truth import TRUTH_FILE, PairTruth, load_truth, same_findings

__all__ = ["LABELS", "LANGUAGES", "MANIFEST_COLUMNS", "NORMAL_REPORT_TEXT_ZH", "REGIONS",
           "SEQUENCES", "SEQUENCE_NAMES", "TRUTH_FILE", "PairTruth", "generate_demo_cohort",
           "load_truth", "same_findings"]
