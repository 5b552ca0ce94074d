"""Finding-level scorers and report → findings parsing (docs/design.md §3).

Every expected value is worked out by hand in the comment next to it.
"""

import numpy as np
import pytest

from selip.similarity import SimilarityConfig
from selip.similarity.config import CHINESE_SIGNAL_TAGS, ENGLISH_SIGNAL_TAGS
from selip.similarity.findings import (
    is_normal_text,
    report_findings,
    signal_tag,
    split_finding,
    split_findings,
    syntax_text,
)
from selip.similarity.reference import charset_dice
from selip.similarity.scorers import (
    charset_dice_matrix,
    combine,
    cosine_matrix,
    edit_matrix,
    field_agreement_matrix,
    syntax_matrix,
)
from selip.text.reports import Finding, ReportError

CONFIG = SimilarityConfig()

# --------------------------------------------------------------------------------------
# character-set Dice


def test_charset_dice_matrix_hand_values():
    a = ["abc", "a b  c", "", "aab"]
    b = ["abd", "abc", "", "   "]
    got = charset_dice_matrix(a, b)
    assert got.dtype == np.float32
    assert got.shape == (4, 4)
    expected = np.array([
        # "abc" vs "abd": {a,b,c}∩{a,b,d} = 2 → 2·2/(3+3) = 4/6; vs "abc" → 6/6;
        # vs "" (empty set): 0/(3+0) = 0; "   " has no non-space character → also 0.
        [4 / 6, 1.0, 0.0, 0.0],
        # "a b  c": whitespace ignored → {a,b,c}, same row as "abc".
        [4 / 6, 1.0, 0.0, 0.0],
        # "" vs a non-empty set → 0; "" vs "" and "" vs "   " → both empty → 1.
        [0.0, 0.0, 1.0, 1.0],
        # "aab" → set {a,b}: vs {a,b,d}: 2·2/(2+3) = 4/5; vs {a,b,c}: 4/5.
        [4 / 5, 4 / 5, 0.0, 0.0],
    ], np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_charset_dice_matrix_chinese_worked_example():
    # {左,侧,基,底,节,区,高,信,号} vs {右,侧,基,底,节,区,高,信,号}: 8 shared of 9 + 9
    # → 2·8/18 = 16/18.
    got = charset_dice_matrix(["左侧基底节区 高信号"], ["右侧基底节区 高信号"])
    np.testing.assert_allclose(got, [[16 / 18]], atol=1e-6)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("abc", "abd", 4 / 6),  # 2·2/(3+3)
    ("a b c", "cba", 1.0),  # whitespace ignored, sets equal
    ("", "", 1.0),  # both empty
    (" ", "\t\n", 1.0),  # whitespace only = empty
    ("", "abc", 0.0),  # one empty: 0/(0+3)
    ("aaaa", "ab", 2 / 3),  # {a} vs {a,b}: 2·1/(1+2)
])
def test_reference_charset_dice_hand_values(a, b, expected):
    assert charset_dice(a, b) == pytest.approx(expected, abs=1e-12)
    assert charset_dice(b, a) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------------------
# Indel / Levenshtein


def test_edit_matrix_indel_hand_values():
    # Indel normalised similarity = 1 - (|a|+|b|-2·LCS)/(|a|+|b|):
    #   "abc"/"abd":       LCS 2 ("ab")   → 1 - (6-4)/6   = 2/3
    #   "ab"/"ba":         LCS 1          → 1 - (4-2)/4   = 1/2
    #   "kitten"/"sitting": LCS 4 ("ittn") → 1 - (13-8)/13 = 8/13
    #   "abc"/"abc":       LCS 3          → 1
    got = edit_matrix(["abc", "ab", "kitten"], ["abd", "ba", "sitting", "abc"], "indel")
    assert got.dtype == np.float32
    assert got.shape == (3, 4)
    assert got[0, 0] == pytest.approx(2 / 3, abs=1e-6)
    assert got[1, 1] == pytest.approx(1 / 2, abs=1e-6)
    assert got[2, 2] == pytest.approx(8 / 13, abs=1e-6)
    assert got[0, 3] == pytest.approx(1.0, abs=1e-6)


def test_edit_matrix_levenshtein_hand_values():
    # Levenshtein normalised similarity = 1 - distance / max(|a|, |b|):
    #   "abc"/"abd":        1 substitution     → 1 - 1/3 = 2/3
    #   "ab"/"ba":          2 substitutions    → 1 - 2/2 = 0
    #   "kitten"/"sitting": 3 (k→s, e→i, +g)  → 1 - 3/7 = 4/7
    got = edit_matrix(["abc", "ab", "kitten"], ["abd", "ba", "sitting"], "levenshtein",
                      workers=1)
    assert got[0, 0] == pytest.approx(2 / 3, abs=1e-6)
    assert got[1, 1] == pytest.approx(0.0, abs=1e-6)
    assert got[2, 2] == pytest.approx(4 / 7, abs=1e-6)


def test_syntax_matrix_dispatches_to_the_configured_scorer():
    # "ab" vs "ba": char-set Dice 1 (same set), Indel 1/2, Levenshtein 0 (see above).
    assert syntax_matrix(["ab"], ["ba"], "charset_dice")[0, 0] == pytest.approx(1.0)
    assert syntax_matrix(["ab"], ["ba"], "indel")[0, 0] == pytest.approx(0.5)
    assert syntax_matrix(["ab"], ["ba"], "levenshtein")[0, 0] == pytest.approx(0.0)


# --------------------------------------------------------------------------------------
# field agreement, cosine, combine


def test_field_agreement_from_integer_codes():
    locations_a, tags_a = np.array([0, 0, 1]), np.array([5, 6, 5])
    locations_b, tags_b = np.array([0, 1]), np.array([5, 5])
    got = field_agreement_matrix(locations_a, tags_a, locations_b, tags_b)
    assert got.dtype == np.float32
    expected = [
        [1.0, 0.5],  # (0,5)·(0,5): both agree → 1; (0,5)·(1,5): tag only → 0.5
        [0.5, 0.0],  # (0,6)·(0,5): location only → 0.5; (0,6)·(1,5): neither → 0
        [0.5, 1.0],  # (1,5)·(0,5): tag only → 0.5; (1,5)·(1,5) → 1
    ]
    np.testing.assert_array_equal(got, np.asarray(expected, np.float32))


def test_cosine_matrix_clips_negative_similarity_at_zero():
    a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    b = np.array([[1.0, 0.0], [-1.0, 0.0], [0.6, 0.8], [-0.6, -0.8]], np.float32)
    got = cosine_matrix(a, b)
    assert got.dtype == np.float32
    expected = [
        [1.0, 0.0, 0.6, 0.0],  # dot products 1, -1 → 0, 0.6, -0.6 → 0
        [0.0, 0.0, 0.8, 0.0],  # 0, 0, 0.8, -0.8 → 0
    ]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_combine_product_and_weighted():
    syntax = np.array([[0.5, 1.0]], np.float32)
    semantic = np.array([[0.4, 0.0]], np.float32)
    # product: 0.5·0.4 = 0.2, 1·0 = 0
    np.testing.assert_allclose(combine(syntax, semantic, "product", 0.25), [[0.2, 0.0]],
                               atol=1e-6)
    # weighted α = 0.25: 0.25·0.5 + 0.75·0.4 = 0.425; 0.25·1 + 0.75·0 = 0.25
    np.testing.assert_allclose(combine(syntax, semantic, "weighted", 0.25), [[0.425, 0.25]],
                               atol=1e-6)
    # α = 1 is syntax only, α = 0 semantic only
    np.testing.assert_allclose(combine(syntax, semantic, "weighted", 1.0), syntax)
    np.testing.assert_allclose(combine(syntax, semantic, "weighted", 0.0), semantic)


# --------------------------------------------------------------------------------------
# findings parsing


def test_chinese_finding_grammar():
    assert split_finding("在左侧基底节区表现为高信号") == Finding("左侧基底节区", "高信号")
    # the leading 在 is optional; a trailing full stop is dropped
    assert split_finding("右侧额叶表现为低信号。") == Finding("右侧额叶", "低信号")


def test_english_finding_grammar():
    assert split_finding("left frontal lobe: hyperintense signal") == \
        Finding("left frontal lobe", "hyperintense signal")
    assert split_finding("left frontal lobe: hyperintense signal.") == \
        Finding("left frontal lobe", "hyperintense signal")
    # without a location the whole piece is the appearance
    assert split_finding("small cyst") == Finding("", "small cyst")


def test_syntax_text_is_location_then_appearance():
    assert syntax_text(Finding("left thalamus", "hyperintense signal")) == \
        "left thalamus hyperintense signal"
    assert syntax_text(Finding("", "small cyst")) == "small cyst"


def test_several_findings_split_at_semicolons_and_chinese_full_stops():
    text = "在左侧基底节区表现为高信号；在右侧额叶表现为低信号。在脑桥表现为等信号"
    assert split_findings(text) == (Finding("左侧基底节区", "高信号"),
                                    Finding("右侧额叶", "低信号"),
                                    Finding("脑桥", "等信号"))
    text = "left thalamus: hyperintense signal; right thalamus: hypointense signal"
    assert split_findings(text) == (Finding("left thalamus", "hyperintense signal"),
                                    Finding("right thalamus", "hypointense signal"))


def test_report_findings_free_text():
    scored = report_findings("在左侧基底节区表现为高信号；在右侧额叶表现为低信号。", CONFIG)
    assert not scored.normal
    assert scored.findings == (Finding("左侧基底节区", "高信号"), Finding("右侧额叶", "低信号"))


def test_sectioned_multi_sequence_report_pools_findings():
    report = ("FLAIR: left frontal lobe: hyperintense signal; right thalamus: hyperintense "
              "signal.\nT1: left frontal lobe: hypointense signal.")
    scored = report_findings(report, CONFIG)
    assert not scored.normal
    assert set(scored.findings) == {Finding("left frontal lobe", "hyperintense signal"),
                                    Finding("right thalamus", "hyperintense signal"),
                                    Finding("left frontal lobe", "hypointense signal")}
    assert len(scored.findings) == 3


def test_structured_report_findings():
    data = {"FLAIR": [{"location": "left parietal lobe", "appearance": "hyperintense signal"}],
            "DWI": [{"location": "left parietal lobe", "appearance": "restricted diffusion"}]}
    scored = report_findings(data, CONFIG)
    assert set(scored.findings) == {Finding("left parietal lobe", "hyperintense signal"),
                                    Finding("left parietal lobe", "restricted diffusion")}


@pytest.mark.parametrize("report", [
    {"normal": True},
    '{"normal": true}',
    "No abnormality detected.",
    "no abnormality detected",
    "  NO  Abnormality\tdetected.  ",
    "未见明显异常",
    "未见明显异常。",
    "未见异常。",
])
def test_normal_reports_are_recognised(report):
    scored = report_findings(report, CONFIG)
    assert scored.normal
    assert scored.findings == ()


def test_normal_patterns():
    config = SimilarityConfig(normal_patterns=(r"unremarkable",))
    assert is_normal_text("Brain MRI unremarkable.", config)
    assert report_findings("Brain MRI unremarkable.", config).normal
    # without the pattern it is an ordinary finding
    assert not is_normal_text("Brain MRI unremarkable.", CONFIG)
    assert report_findings("Brain MRI unremarkable.", CONFIG).findings == \
        (Finding("", "Brain MRI unremarkable"),)


def test_custom_normal_texts_replace_the_defaults():
    config = SimilarityConfig(normal_texts=("Normal study",))
    assert report_findings("normal study.", config).normal
    assert not report_findings("未见明显异常", config).normal


def test_signal_tag_first_of_vocabulary_else_whole_appearance():
    tags = CHINESE_SIGNAL_TAGS + ENGLISH_SIGNAL_TAGS
    # 低信号 comes first in the text but 高信号 first in the vocabulary
    assert signal_tag("低信号伴高信号", tags) == "高信号"
    # "restricted diffusion" precedes "hypointense" in the vocabulary
    assert signal_tag("hypointense rim with restricted diffusion", tags) == \
        "restricted diffusion"
    assert signal_tag("Hyperintense signal", tags) == "hyperintense"
    # no tag: the whole appearance, lower-cased and stripped
    assert signal_tag(" Small CYST ", tags) == "small cyst"
    assert signal_tag("长T2信号", tags) == "长t2信号"  # 长T2信号 does not contain 长信号


@pytest.mark.parametrize("report", ["", "   ", "\n", "；。"])
def test_empty_report_raises_report_error(report):
    with pytest.raises(ReportError):
        report_findings(report, CONFIG)


def test_structured_report_without_findings_raises():
    with pytest.raises(ReportError):
        report_findings({"FLAIR": []}, CONFIG)
