"""A synthetic demo cohort of head MRI exams on real anatomy (``selip demo-data``).

:func:`generate_demo_cohort` writes five sequences (T1, T2, FLAIR, DWI, ADC), a lesion
mask, a report and a diagnosis label per exam, plus ``manifest.csv``. The anatomy is the
MNI152 2009a template that nilearn ships as package data (read locally, never fetched).
Reports are English free text, or with ``language="zh"`` the authors' Chinese JSON
reports (:mod:`selip.data.demo.chinese`).
"""

from selip.data.demo.chinese import LANGUAGES, NORMAL_REPORT_TEXT_ZH
from selip.data.demo.cohort import MANIFEST_COLUMNS, generate_demo_cohort
from selip.data.demo.contrasts import SEQUENCE_NAMES, SEQUENCES
from selip.data.demo.lesions import LABELS, REGIONS

__all__ = ["LABELS", "LANGUAGES", "MANIFEST_COLUMNS", "NORMAL_REPORT_TEXT_ZH", "REGIONS",
           "SEQUENCES", "SEQUENCE_NAMES", "generate_demo_cohort"]
