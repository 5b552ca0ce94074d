"""The demo's written reports (no volumes): determinism, realism (unique texts), grammar,
normal sentences, the truth of every pair, and how well the ``english`` preset reads them.

Measured on 200 planned exams of seed 0 (``benchmarks/demo_reports.py``): unique-text
ratio 0.97 (en) / 0.95 (zh), against 0.18 for the fixed vocabulary; finding AUROC of the
``english`` preset 0.966 (en) / 0.949 (zh), pair AUROC 0.952 / 0.931; ``paper`` 0.59 /
0.62; ``english`` before it read synonyms 0.79 / 0.81.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from selip.cli import main
from selip.demo import SEQUENCE_NAMES, SEQUENCES, TRUTH_FILE, load_truth, same_findings
from selip.demo.chinese import NORMAL_REPORT_TEXT_ZH
from selip.demo.exams import ExamPlan, plan_exam
from selip.demo.measure import measure_reports, truth_auroc
from selip.demo.truth import pair_truths, write_truth
from selip.demo.vocabulary import (
    APPEARANCE_PHRASES,
    HEDGES_AFTER,
    HEDGES_BEFORE,
    HYPER_NOUNS,
    NEGATIVES,
    NORMAL_TEXTS_EN,
    REGION_PHRASES,
    SEQUENCE_PHRASES,
)
from selip.demo.vocabulary_zh import NORMAL_TEXTS_ZH
from selip.similarity import PRESETS
from selip.similarity.config import DEFAULT_NORMAL_TEXTS, LOCATION_SYNONYMS
from selip.similarity.findings import (
    canonical_location,
    is_negative,
    report_findings,
    signal_tag,
    split_finding,
)
from selip.text.reports import parse_report, swap_laterality
from selip.text.tokenizer import load_tokenizer, unknown_tokens

NUM_PLANS = 200
#: Measured 0.966 (en) and 0.949 (zh) on these plans; a margin for vocabulary edits.
ENGLISH_AUROC_MIN = 0.9
UNIQUE_RATIO_MIN = 0.8


@pytest.fixture(scope="module")
def plans() -> list[ExamPlan]:
    return [plan_exam(0, i) for i in range(NUM_PLANS)]


def _pair_texts(plan: ExamPlan, language: str) -> dict[str, str]:
    normal = NORMAL_REPORT_TEXT_ZH if language == "zh" else NORMAL_TEXTS_EN[0]
    report = parse_report(plan.report(language), normal_text=normal)
    return {s: report.text_for(s, normal) for s in SEQUENCES}


# -- determinism --------------------------------------------------------------------------
@pytest.mark.parametrize("language", ["en", "zh"])
def test_reports_repeat_for_a_seed_and_differ_across_seeds(plans, language):
    again = [plan_exam(0, i).report(language) for i in (0, 7, 150)]
    assert again == [plans[i].report(language) for i in (0, 7, 150)]
    other = [plan_exam(1, i) for i in range(12)]
    assert [p.report(language) for p in other] != [p.report(language) for p in plans[:12]]


# -- realism ------------------------------------------------------------------------------
@pytest.mark.parametrize("language", ["en", "zh"])
def test_abnormal_pair_texts_are_nearly_all_unique(plans, language):
    measured = measure_reports(plans, language, presets=())
    assert measured.pairs > 500
    assert measured.unique_ratio >= UNIQUE_RATIO_MIN
    fixed = measure_reports(plans, language, presets=(), canonical=True)
    assert fixed.unique_ratio < 0.3  # the fixed vocabulary the demo used to write


def test_t2_and_flair_texts_of_an_exam_differ(plans):
    abnormal = [p for p in plans if p.lesions]
    same = sum(_pair_texts(p, "en")["t2"] == _pair_texts(p, "en")["flair"] for p in abnormal)
    assert same <= 0.1 * len(abnormal)


def test_several_normal_sentences_all_recognised_as_normal(plans):
    normals = [p for p in plans if not p.lesions]
    assert {p.report() for p in normals} == set(NORMAL_TEXTS_EN)
    assert {json.loads(p.report("zh"))["normal"] for p in normals} == set(NORMAL_TEXTS_ZH)
    assert set(NORMAL_TEXTS_EN) | set(NORMAL_TEXTS_ZH) <= set(DEFAULT_NORMAL_TEXTS)
    for plan in normals[:12]:
        for language in ("en", "zh"):
            texts = set(_pair_texts(plan, language).values())
            assert len(texts) == 1  # the one sentence, paired with every sequence
            for preset in PRESETS.values():
                assert report_findings(next(iter(texts)), preset).normal


# -- grammar ------------------------------------------------------------------------------
def test_phrase_banks_keep_the_grammar():
    banks = [*REGION_PHRASES.values(), *APPEARANCE_PHRASES.values(),
             *SEQUENCE_PHRASES.values(), *HEDGES_AFTER.values(), *HEDGES_BEFORE.values(),
             HYPER_NOUNS, NEGATIVES]
    for phrase in (p for bank in banks for p in bank):
        assert ";" not in phrase and ":" not in phrase, phrase
        assert not re.search(r"\b(left|right)\b", phrase), phrase  # only the side says it
    assert all(REGION_PHRASES[r][0] == r for r in REGION_PHRASES)


def test_every_english_report_parses_and_every_finding_has_location_and_appearance(plans):
    english = PRESETS["english"]
    for plan in (p for p in plans if p.lesions):
        report = parse_report(plan.report())
        assert report.free_text is None and set(report.findings) == set(SEQUENCES)
        written = plan.written()
        for sequence, text in _pair_texts(plan, "en").items():
            pieces = [split_finding(p) for p in re.split(r";", text)]
            located = [f for f in pieces if f.location]
            negatives = [f for f in pieces if not f.location]
            assert len(located) == len(plan.lesions)
            assert all(f.appearance for f in located)
            assert all(is_negative(f, english) for f in negatives)
            for finding, (index, _) in zip(located, written.findings[sequence], strict=True):
                lesion = plan.lesions[index]
                assert canonical_location(finding.location, LOCATION_SYNONYMS) == \
                    lesion.location
                canonical = lesion.finding(sequence).appearance
                assert signal_tag(finding.appearance, english.signal_tags) == \
                    signal_tag(canonical, english.signal_tags), finding
            scored = report_findings(text, english)
            assert len(scored.findings) == len(plan.lesions)  # negatives are not findings
            # the flip mirrors the side and nothing else
            assert swap_laterality(swap_laterality(text)) == text


def test_every_chinese_report_is_the_authors_json(plans):
    english = PRESETS["english"]
    for plan in plans[:60]:
        data = json.loads(plan.report("zh"))
        if not plan.lesions:
            assert list(data) == ["normal"]
            continue
        assert list(data) == [SEQUENCE_NAMES[s] for s in SEQUENCES]
        for text in data.values():
            scored = report_findings(text, english)
            assert len(scored.findings) == len(plan.lesions)
            assert all(f.location[:2] in ("左侧", "右侧") and f.appearance
                       for f in scored.findings)


def test_english_reports_have_no_unknown_tokens(plans):
    texts = [plan.report() for plan in plans[:60]]
    assert unknown_tokens(texts, load_tokenizer(None)).unknown == 0


# -- truth --------------------------------------------------------------------------------
def test_truth_round_trip_and_same_findings(plans, tmp_path):
    truths = [t for plan in plans[:30] for t in pair_truths(plan)]
    write_truth(truths, tmp_path / TRUTH_FILE)
    loaded = load_truth(tmp_path)
    assert list(loaded.values()) == truths
    assert len(loaded) == 30 * len(SEQUENCES)
    plan = next(p for p in plans if p.lesions)
    t1, flair = (loaded[(plan.exam_id, s)] for s in ("t1", "flair"))
    assert same_findings(t1, flair) and t1.findings[0].signal != flair.findings[0].signal
    normal = next(p for p in plans[:30] if not p.lesions)
    assert loaded[(normal.exam_id, "t1")].findings == ()
    assert not same_findings(t1, loaded[(normal.exam_id, "t1")])


def test_truth_loader_names_a_bad_line(tmp_path):
    path = tmp_path / TRUTH_FILE
    path.write_text('{"exam_id": "demo_0000", "sequence": "t1"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":1: not a truth line"):
        load_truth(path)
    line = json.dumps({"exam_id": "a", "sequence": "t1", "diagnosis": "normal",
                       "findings": []})
    path.write_text(f"{line}\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="listed twice"):
        load_truth(path)


# -- the similarity on written reports ------------------------------------------------------
@pytest.mark.parametrize("language", ["en", "zh"])
def test_english_preset_ranks_paraphrases_of_one_finding_first(plans, language):
    measured = measure_reports(plans, language)
    assert measured.finding_auroc["english"] >= ENGLISH_AUROC_MIN
    assert measured.pair_auroc["english"] >= ENGLISH_AUROC_MIN - 0.05
    # the literal rules cannot read the synonyms
    assert measured.finding_auroc["paper"] < measured.finding_auroc["english"] - 0.2


def test_truth_auroc_is_nan_with_one_class():
    assert math.isnan(truth_auroc(["a: b"], [1], "english"))
    assert math.isnan(truth_auroc(["a: b", "c: d"], [1, 1], "english"))
    assert truth_auroc(["left thalamus: high signal", "thalamus on the left: T2 prolongation",
                        "right frontal lobe: low signal"], [1, 1, 2], "english") == 1.0


def test_demo_data_prints_the_measurements(tmp_path, capsys):
    assert main(["demo-data", "--out", str(tmp_path), "--num-exams", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unique texts" in out and "AUROC" in out and "english" in out
    assert len(load_truth(tmp_path)) == 3 * len(SEQUENCES)
