"""Report similarity S (docs/design.md §3): hand-computed values, the vectorised engine against
the per-pair reference, block-wise and threaded evaluation, the embedding scorer.

Notation in the comments: for a finding "<loc>: <app>" the syntax text is "<loc> <app>";
char-set Dice is 2|X∩Y|/(|X|+|Y|) over its non-space characters; Indel similarity is
1 - (|a|+|b|-2·LCS)/(|a|+|b|).
"""

import itertools
import json
import random

import numpy as np
import pytest

from selip.similarity import (
    PRESETS,
    SimilarityConfig,
    SimilarityEngine,
    reference,
    report_similarity,
)
from selip.text.reports import ReportError

LEFT_HYPER = "left thalamus: hyperintense signal"
RIGHT_HYPER = "right thalamus: hyperintense signal"
LEFT_HYPO = "left thalamus: hypointense signal"
# Character sets of the syntax texts (hand-enumerated):
#   "left thalamus hyperintense signal"  → {l,e,f,t,h,a,m,u,s,y,p,r,i,n,g}   15
#   "right thalamus hyperintense signal" → {r,i,g,h,t,a,l,m,u,s,y,p,e,n}     14 (no f)
#   "left thalamus hypointense signal"   → {l,e,f,t,h,a,m,u,s,y,p,o,i,n,g}   15 (o, no r)
# LEFT_HYPER·RIGHT_HYPER: ∩ = 14 → Dice 28/29; locations differ, tags equal → sem 0.5.
# LEFT_HYPER·LEFT_HYPO:   ∩ = 14 → Dice 28/30; same location, tags differ → sem 0.5.
# RIGHT_HYPER·LEFT_HYPO:  ∩ = 13 → Dice 26/29; nothing agrees → sem 0.
PAPER_LEFT_RIGHT = 28 / 29 * 0.5  # = 14/29
PAPER_HYPER_HYPO = 28 / 30 * 0.5  # = 7/15

# ---------------------------------------------------------------------------------------
# hand-computed values under the presets


def test_paper_worked_example_from_the_design():
    # docs/design.md §3: char-set Dice 16/18 × field agreement 0.5 = 0.444…
    s = report_similarity(["在左侧基底节区表现为高信号"], ["在右侧基底节区表现为高信号"],
                          preset="paper")
    assert s.shape == (1, 1)
    assert abs(float(s[0, 0]) - 16 / 18 * 0.5) < 1e-4
    assert abs(float(s[0, 0]) - 0.4444) < 1e-4


def test_paper_chinese_tag_differs():
    reports = ["在左侧基底节区表现为高信号",  # {左侧基底节区高信号} 9 chars
               "在左侧基底节区表现为低信号",  # {左侧基底节区低信号} 9 chars
               "在左侧基底节区表现为长T2信号",  # {左侧基底节区长T2信号} 11 chars; no tag
               "在右侧基底节区表现为低信号"]  # {右侧基底节区低信号} 9 chars
    s = report_similarity(reports, preset="paper")
    # 0·1: ∩ 8 → Dice 16/18; same location, 高信号 ≠ 低信号 → sem 0.5 → 4/9
    assert s[0, 1] == pytest.approx(16 / 18 * 0.5, abs=1e-5)
    # 0·2: ∩ {左侧基底节区信号} 8 → Dice 16/20; tag 高信号 vs whole "长t2信号" → sem 0.5 → 0.4
    assert s[0, 2] == pytest.approx(16 / 20 * 0.5, abs=1e-5)
    # 0·3: location and tag both differ → sem 0 → product 0 (Dice 14/18 does not matter)
    assert s[0, 3] == pytest.approx(0.0, abs=1e-7)
    # 1·3: only the side differs, tags equal → Dice 16/18 × 0.5
    assert s[1, 3] == pytest.approx(16 / 18 * 0.5, abs=1e-5)


def test_paper_english_hand_values():
    s = report_similarity([LEFT_HYPER], [RIGHT_HYPER, LEFT_HYPO], preset="paper")
    assert s[0, 0] == pytest.approx(PAPER_LEFT_RIGHT, abs=1e-5)  # 0.48276
    assert s[0, 1] == pytest.approx(PAPER_HYPER_HYPO, abs=1e-5)  # 0.46667


@pytest.mark.parametrize("config", [PRESETS["english"],
                                    SimilarityConfig(syntax="indel", combine="weighted",
                                                     alpha=0.5)],
                         ids=["english", "indel-alpha-0.5"])
def test_english_hand_values(config):
    # Indel, weighted α·syn + (1 − α)·sem, field agreement.
    # LEFT_HYPER·RIGHT_HYPER: |a| = 33, |b| = 34, common suffix " thalamus hyperintense
    #   signal" (29) + LCS("left", "right") = 1 ("t") → LCS 30 → 1 - (67-60)/67 = 60/67;
    #   sem 0.5 (tags equal, sides differ)
    # LEFT_HYPER·LEFT_HYPO: |a| = 33, |b| = 32, prefix "left thalamus hyp" (17) + suffix
    #   "intense signal" (14), "er" vs "o" share nothing → LCS 31 → 1 - (65-62)/65 = 62/65;
    #   sem 0.5 (same location, tags differ)
    # with α = 0.5: 0.5·60/67 + 0.25 = 0.69776 and 0.5·62/65 + 0.25 = 0.72692
    assert config.syntax == "indel"
    assert config.semantic == "fields"
    assert config.combine == "weighted"
    alpha = config.alpha
    s = report_similarity([LEFT_HYPER], [RIGHT_HYPER, LEFT_HYPO], preset=config)
    assert s[0, 0] == pytest.approx(alpha * 60 / 67 + (1 - alpha) * 0.5, abs=1e-5)
    assert s[0, 1] == pytest.approx(alpha * 62 / 65 + (1 - alpha) * 0.5, abs=1e-5)
    if alpha == 0.5:
        assert s[0, 0] == pytest.approx(0.69776, abs=1e-5)
        assert s[0, 1] == pytest.approx(0.72692, abs=1e-5)


def test_levenshtein_weighted_hand_value():
    # Levenshtein("left…", "right…") = 4 (l→r, e→i, f→g, insert h), max length 34
    # → 1 - 4/34 = 30/34; weighted α = 0.25 with sem 0.5: 0.25·30/34 + 0.75·0.5
    config = SimilarityConfig(syntax="levenshtein", combine="weighted", alpha=0.25)
    s = report_similarity([LEFT_HYPER], [RIGHT_HYPER], preset=config)
    assert s[0, 0] == pytest.approx(0.25 * 30 / 34 + 0.375, abs=1e-5)


def test_averaging_over_findings():
    two = f"{LEFT_HYPER}; {RIGHT_HYPER}"
    two_reversed = f"{RIGHT_HYPER}; {LEFT_HYPER}"
    s = report_similarity([two], [LEFT_HYPER, LEFT_HYPO, two_reversed], preset="paper")
    # two·LEFT_HYPER: mean(1, 14/29) = 43/58
    assert s[0, 0] == pytest.approx((1 + PAPER_LEFT_RIGHT) / 2, abs=1e-5)
    # two·LEFT_HYPO: mean(7/15, 0) = 7/30
    assert s[0, 1] == pytest.approx(PAPER_HYPER_HYPO / 2, abs=1e-5)
    # same findings, other text: mean over 2×2 pairs (1, 14/29, 14/29, 1) = 43/58 < 1
    assert s[0, 2] == pytest.approx((2 + 2 * PAPER_LEFT_RIGHT) / 4, abs=1e-5)


def test_result_dtype_shape_and_default_b():
    a = [LEFT_HYPER, RIGHT_HYPER, "在左侧基底节区表现为高信号"]
    b = [LEFT_HYPO, LEFT_HYPER]
    s = report_similarity(a, b)
    assert s.dtype == np.float32
    assert s.shape == (3, 2)
    square = report_similarity(a)
    assert square.shape == (3, 3)
    np.testing.assert_array_equal(square, report_similarity(a, a))


@pytest.mark.parametrize("preset", ["paper", "english"])
def test_symmetry_diagonal_and_duplicates(preset):
    two = f"{LEFT_HYPER}; {RIGHT_HYPER}"
    reports = [two, LEFT_HYPER, RIGHT_HYPER, two, LEFT_HYPO, "No abnormality detected."]
    s = report_similarity(reports, preset=preset)
    np.testing.assert_allclose(s, s.T, atol=1e-6)
    np.testing.assert_array_equal(np.diag(s), np.ones(len(reports), np.float32))
    # duplicates of a 2-finding report: the mean of its sims would be < 1, but they are
    # the same report → 1
    assert s[0, 3] == 1.0
    assert s[3, 0] == 1.0
    assert np.all(s >= 0.0)
    assert np.all(s <= 1.0)


def test_normal_reports_score_zero_except_identical_text():
    reports: list = ["No abnormality detected.", LEFT_HYPER, "No abnormality detected.",
                     "未见明显异常", {"normal": True}, {"normal": True}]
    s = report_similarity(reports, preset="paper")
    assert s[0, 2] == 1.0  # identical normal text
    assert s[4, 5] == 1.0  # identical structured normal report
    assert s[0, 1] == 0.0 and s[1, 0] == 0.0  # normal vs abnormal
    assert s[0, 3] == 0.0  # two different normal texts are different reports
    assert s[0, 4] == 0.0
    assert s[3, 4] == 0.0
    np.testing.assert_array_equal(np.diag(s), np.ones(6, np.float32))


def test_mean_is_capped_at_one():
    # three copies of the same finding: weights 1/3 each in float32 sum to ≥ 1, and
    # sim = 1 for each pair → S = min(1, mean) = 1 exactly, never above
    s = report_similarity([f"{LEFT_HYPER}; {LEFT_HYPER}; {LEFT_HYPER}"], [LEFT_HYPER],
                          preset="english")
    assert s[0, 0] <= 1.0
    assert s[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_structured_reports_equal_their_text_form():
    structured = {"FLAIR": [{"location": "left thalamus", "appearance": "hyperintense signal"},
                            {"location": "right thalamus",
                             "appearance": "hyperintense signal"}]}
    text = f"FLAIR: {LEFT_HYPER}; {RIGHT_HYPER}."
    others = [LEFT_HYPER, LEFT_HYPO, "在左侧基底节区表现为高信号", "No abnormality detected."]
    s = report_similarity([structured, json.dumps(structured), text], others, preset="english")
    np.testing.assert_allclose(s[0], s[2], atol=1e-6)
    np.testing.assert_allclose(s[1], s[2], atol=1e-6)
    # hand value: structured·LEFT_HYPER = mean(1, α·60/67 + (1 − α)·0.5), see above
    alpha = PRESETS["english"].alpha
    assert s[0, 0] == pytest.approx((1 + alpha * 60 / 67 + (1 - alpha) * 0.5) / 2, abs=1e-5)


def test_preset_accepts_a_config_object():
    english = PRESETS["english"]
    config = SimilarityConfig(syntax="indel", semantic="fields", combine="weighted",
                              alpha=english.alpha, signal_tags=english.signal_tags,
                              location_synonyms=english.location_synonyms,
                              negative_patterns=english.negative_patterns)
    reports = [LEFT_HYPER, RIGHT_HYPER, LEFT_HYPO]
    np.testing.assert_array_equal(report_similarity(reports, preset=config),
                                  report_similarity(reports, preset="english"))
    assert PRESETS["english"] == config


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="paper") as info:
        report_similarity([LEFT_HYPER], preset="papr")
    assert "english" in str(info.value)


@pytest.mark.parametrize("field", [
    {"syntax": "jaro"}, {"semantic": "bleu"}, {"combine": "max"}, {"alpha": 1.5},
    {"alpha": -0.1}, {"embedding_batch_size": 0},
])
def test_invalid_config_values_raise(field):
    with pytest.raises(ValueError):
        SimilarityConfig(**field)


def test_empty_report_raises():
    with pytest.raises(ReportError):
        report_similarity([LEFT_HYPER, "  "])


def test_empty_list_gives_empty_matrix():
    s = report_similarity([])
    assert s.shape == (0, 0)
    assert s.dtype == np.float32
    assert report_similarity([], [LEFT_HYPER]).shape == (0, 1)


# ---------------------------------------------------------------------------------------
# engine against the per-pair reference

EN_LOCATIONS = ["left thalamus", "right thalamus", "left frontal lobe", "pons",
                "cerebellar hemisphere"]
EN_APPEARANCES = ["hyperintense signal", "hypointense signal", "restricted diffusion",
                  "isointense signal with enhancement", "small cyst"]
ZH_LOCATIONS = ["左侧基底节区", "右侧基底节区", "脑桥", "左侧额叶"]
ZH_APPEARANCES = ["高信号", "低信号", "长T2信号", "斑片状稍长T1长T2信号"]
NORMALS = ["No abnormality detected.", "未见明显异常", {"normal": True}]


def random_reports(seed: int, count: int = 30):
    rng = random.Random(seed)
    reports: list = []
    while len(reports) < count - 4:
        kind = rng.randrange(5)
        n = rng.randint(1, 3)
        if kind == 3:
            pairs = [(rng.choice(ZH_LOCATIONS), rng.choice(ZH_APPEARANCES)) for _ in range(n)]
            reports.append("；".join(f"在{loc}表现为{app}" for loc, app in pairs) + "。")
            continue
        if kind == 4:
            reports.append(rng.choice(NORMALS))
            continue
        pairs = [(rng.choice(EN_LOCATIONS), rng.choice(EN_APPEARANCES)) for _ in range(n)]
        if kind == 0:
            reports.append("; ".join(f"{loc}: {app}" for loc, app in pairs))
        elif kind == 1:
            flair, t1 = pairs[:1], pairs[1:] or pairs[:1]
            reports.append("FLAIR: " + "; ".join(f"{loc}: {app}" for loc, app in flair)
                           + ".\nT1: " + "; ".join(f"{loc}: {app}" for loc, app in t1) + ".")
        else:
            reports.append({"FLAIR": [{"location": loc, "appearance": app}
                                      for loc, app in pairs]})
    reports += [reports[0], reports[3], reports[3], NORMALS[0]]  # duplicates
    rng.shuffle(reports)
    return reports


def reference_matrix(a, b, config):
    return np.array([[reference.pair_similarity(x, y, config) for y in b] for x in a])


COMBINATIONS = list(itertools.product(["charset_dice", "indel", "levenshtein"],
                                      ["product", "weighted"]))


@pytest.mark.parametrize(("syntax", "how"), COMBINATIONS)
def test_engine_equals_reference(syntax, how):
    config = SimilarityConfig(syntax=syntax, semantic="fields", combine=how, alpha=0.3)
    reports = random_reports(seed=1)
    got = SimilarityEngine(config).matrix(reports)
    assert got.shape == (30, 30)
    np.testing.assert_allclose(got, reference_matrix(reports, reports, config), atol=1e-5)


def test_random_reports_cover_the_cases():
    # guard the generator: normals, duplicates, Chinese, structured and several findings
    reports = random_reports(seed=1)
    keys = [json.dumps(r, sort_keys=True) for r in reports]
    assert len(set(keys)) < len(keys)
    assert any(isinstance(r, dict) and "FLAIR" in r for r in reports)
    assert any(isinstance(r, str) and "表现为" in r for r in reports)
    assert any(isinstance(r, str) and r.startswith("FLAIR:") for r in reports)
    assert any(r in NORMALS for r in reports)


@pytest.mark.parametrize("preset", ["paper", "english"])
def test_engine_rectangular_equals_reference(preset):
    config = PRESETS[preset]
    reports = random_reports(seed=2)
    a, b = reports[:11], [*reports[5:], LEFT_HYPER, "在右侧基底节区表现为高信号"]
    got = SimilarityEngine(config).matrix(a, b)
    assert got.shape == (11, len(b))
    np.testing.assert_allclose(got, reference_matrix(a, b, config), atol=1e-5)


@pytest.mark.parametrize("preset", ["paper", "english"])
def test_block_rows_and_threads_do_not_change_the_result(preset):
    config = PRESETS[preset]
    reports = random_reports(seed=3)
    direct = SimilarityEngine(config, threads=1).matrix(reports, block_rows=1000)
    for block_rows in (1, 7):
        np.testing.assert_array_equal(
            SimilarityEngine(config, threads=1).matrix(reports, block_rows=block_rows), direct)
    np.testing.assert_array_equal(
        SimilarityEngine(config, threads=3).matrix(reports, block_rows=4), direct)
    b = reports[:9]
    np.testing.assert_array_equal(SimilarityEngine(config, threads=3).matrix(reports, b, 2),
                                  SimilarityEngine(config, threads=1).matrix(reports, b, 1000))


def test_blocks_yield_every_row_once_in_order():
    reports = random_reports(seed=4)
    engine = SimilarityEngine(PRESETS["paper"], threads=2)
    slices = [rows for rows, _ in engine.blocks(reports, block_rows=7)]
    assert slices == [slice(0, 7), slice(7, 14), slice(14, 21), slice(21, 28),
                      slice(28, 30)]
    seen: list[int] = []
    engine.matrix(reports, block_rows=8, on_block=seen.append)
    assert seen == [8, 8, 8, 6]


def test_engine_keeps_location_case_in_syntax_text():
    # "Left thalamus hyperintense signal" → {L,e,f,t,h,a,l,m,u,s,y,p,r,i,n,g} 16 characters
    # "left thalamus hypointense signal"  → 15 characters (see above); ∩ 14 (no L, r / o)
    # Dice 28/31; locations equal case-insensitively, tags differ → sem 0.5 → S = 14/31
    reports = ["Left thalamus: hyperintense signal", LEFT_HYPO]
    config = PRESETS["paper"]
    by_reference = reference.pair_similarity(reports[0], reports[1], config)
    assert by_reference == pytest.approx(14 / 31, abs=1e-9)
    got = SimilarityEngine(config).matrix(reports)
    assert got[0, 1] == pytest.approx(14 / 31, abs=1e-5)


def test_engine_and_reference_agree_on_padded_copies():
    two = f"{LEFT_HYPER}; {RIGHT_HYPER}"
    config = PRESETS["paper"]
    got = SimilarityEngine(config).matrix([two], [f" {two}\n"])
    assert got[0, 0] == pytest.approx(reference.pair_similarity(two, f" {two}\n", config),
                                       abs=1e-5)


# ---------------------------------------------------------------------------------------
# embedding semantic scorer (loads the packaged MiniLM once)

EMBEDDING_CONFIG = SimilarityConfig(semantic="embedding", syntax="indel", combine="weighted")
EMBEDDING_REPORTS = [LEFT_HYPER, RIGHT_HYPER, "cerebellar hemisphere: restricted diffusion",
                     LEFT_HYPER]


@pytest.fixture(scope="module")
def embedding_matrix():
    return report_similarity(EMBEDDING_REPORTS, preset=EMBEDDING_CONFIG)


def test_embedding_scorer_properties(embedding_matrix):
    s = embedding_matrix
    assert s.dtype == np.float32
    assert s.shape == (4, 4)
    assert np.all(s >= 0.0)
    assert np.all(s <= 1.0)
    np.testing.assert_allclose(s, s.T, atol=1e-5)
    np.testing.assert_array_equal(np.diag(s), np.ones(4, np.float32))
    assert s[0, 3] == 1.0  # identical texts
    # sanity: the other side of the same lesion is closer than an unrelated finding
    assert s[0, 1] > s[0, 2]
    assert s[1, 0] > s[1, 2]


def test_embedding_engine_equals_reference(embedding_matrix):
    from selip.similarity.embedding import embed_texts
    from selip.similarity.findings import report_findings, syntax_text

    texts = sorted({syntax_text(f) for r in EMBEDDING_REPORTS
                    for f in report_findings(r, EMBEDDING_CONFIG).findings})
    vectors = dict(zip(texts, embed_texts(texts), strict=True))
    expected = np.array([[reference.pair_similarity(a, b, EMBEDDING_CONFIG, vectors.__getitem__)
                          for b in EMBEDDING_REPORTS] for a in EMBEDDING_REPORTS])
    np.testing.assert_allclose(embedding_matrix, expected, atol=1e-4)
