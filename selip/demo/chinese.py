"""Report languages of the demo cohort, and its Chinese reports in the authors' grammar.

``en`` writes the English demo grammar (``FLAIR: left thalamus: hyperintense signal.``);
``zh`` writes what the SeLIP authors' data looks like (docs/design.md §1): a JSON object per
exam with one findings text per sequence that has findings, each finding
``在<location>表现为<appearance>`` and the findings of a sequence joined by ``，``::

    {"T1": "在左侧丘脑表现为等信号，在右侧额叶表现为等信号", "T2": ..., "ADC": ...}
    {"normal": "未见明显异常"}

This module holds the grammar and each finding's canonical wording (the truth's
vocabulary); the report writer (:mod:`selip.demo.writer`) words findings with the
synonyms of :mod:`selip.demo.vocabulary_zh`. Locations say the side as ``左侧`` /
``右侧`` (or ``左`` / ``右``), so the laterality flip, which swaps 左 and 右, mirrors them;
no other vocabulary holds 左 or 右.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from selip.text.reports import Finding

#: Report languages of ``selip demo-data --language``.
LANGUAGES = ("en", "zh")
#: The normal-report text of the Chinese demo reports (a default normal text of selip).
NORMAL_REPORT_TEXT_ZH = "未见明显异常"
#: Finding separator of the authors' Chinese reports (full-width comma).
FINDING_SEPARATOR_ZH = "，"

SIDES_ZH = {"left": "左侧", "right": "右侧"}
#: Region names of :data:`selip.demo.lesions.REGIONS` in Chinese.
REGIONS_ZH = {
    "frontal lobe": "额叶",
    "parietal lobe": "顶叶",
    "temporal lobe": "颞叶",
    "occipital lobe": "枕叶",
    "basal ganglia": "基底节区",
    "thalamus": "丘脑",
    "periventricular white matter": "侧脑室旁白质",
    "cerebellar hemisphere": "小脑半球",
}
#: Appearances of :data:`selip.demo.lesions.SIGNATURES` in Chinese; each holds the
#: signal tag of its English form (restricted diffusion is bright on DWI), except mixed
#: signal, whose tag is the whole appearance in both languages.
APPEARANCES_ZH = {
    "hyperintense signal": "高信号",
    "hypointense signal": "低信号",
    "isointense signal": "等信号",
    "restricted diffusion": "弥散受限高信号",
    "hyperintense signal with surrounding oedema": "高信号伴周围水肿",
    "mixed signal": "混杂信号",
    "multiple hyperintense foci": "多发斑点状高信号",
}


def check_language(language: str) -> str:
    """Return ``language`` if it is one of :data:`LANGUAGES`, else raise ``ValueError``."""
    if language not in LANGUAGES:
        raise ValueError(f"report language must be one of {', '.join(LANGUAGES)}, "
                         f"got {language!r}")
    return language


def chinese_finding(side: str, region: str, appearance: str) -> Finding:
    """A demo finding in Chinese: ``left``/``right`` + a region, an English appearance."""
    return Finding(SIDES_ZH[side] + REGIONS_ZH[region], APPEARANCES_ZH[appearance])


def render_finding_zh(finding: Finding) -> str:
    """One finding in the authors' grammar: ``在<location>表现为<appearance>``; a finding
    without a location (a pertinent negative such as ``中线结构居中``) is its appearance."""
    if not finding.location:
        return finding.appearance
    return f"在{finding.location}表现为{finding.appearance}"


def render_report_zh(findings: Mapping[str, Sequence[Finding]],
                     sequence_names: Mapping[str, str],
                     normal_text: str = NORMAL_REPORT_TEXT_ZH) -> str:
    """The authors' structured report: JSON, one findings text per sequence with findings
    (keys from ``sequence_names``, e.g. ``flair`` -> ``FLAIR``), or
    ``{"normal": normal_text}`` when no sequence has a finding."""
    texts = {sequence_names.get(s, s.upper()):
             FINDING_SEPARATOR_ZH.join(render_finding_zh(f) for f in items)
             for s, items in findings.items() if items}
    return json.dumps(texts or {"normal": normal_text}, ensure_ascii=False)
