"""The authors' Chinese reports under preset ``paper`` (docs/design.md §1, §3).

The findings of one sequence are joined by a full-width comma ``，``; each reads
``在<location>表现为<appearance>``. Random multi-finding reports are scored by selip
(directly and through the cached table) and by an independent reimplementation of the
authors' rule written here.
"""

import json
import random

import numpy as np
import pytest

from selip.similarity import report_similarity
from selip.similarity.config import PRESETS
from selip.similarity.table import load_or_build
from selip.text.reports import parse_report

TAGS = ("高信号", "低信号", "长信号", "短信号", "等信号")
REGIONS = ("基底节区", "额叶", "颞叶", "顶叶", "枕叶", "丘脑", "小脑半球", "侧脑室旁白质",
           "放射冠", "半卵圆中心", "海马")
MIDLINE = ("脑桥", "延髓", "胼胝体", "中脑")
LOCATIONS = tuple(f"{side}{r}" for r in REGIONS for side in ("左侧", "右侧", "双侧")) + MIDLINE
APPEARANCES = ("高信号", "低信号", "稍高信号", "稍低信号", "长T1信号", "长T2信号",
               "等信号", "混杂信号", "斑片状高信号", "点状低信号", "短T1信号", "长信号",
               "短信号", "结节状等信号")


# --------------------------------------------------------------------------------------
# the authors' rule, reimplemented independently of selip


def authors_findings(text: str) -> list[tuple[str, str]]:
    """(location, appearance) of each ``在<location>表现为<appearance>`` piece."""
    findings = []
    for piece in text.split("，"):
        location, appearance = piece.removeprefix("在").split("表现为")
        findings.append((location, appearance))
    return findings


def authors_tag(appearance: str) -> str:
    return next((tag for tag in TAGS if tag in appearance), appearance)


def authors_sim(f: tuple[str, str], g: tuple[str, str]) -> float:
    x, y = set(f[0] + f[1]), set(g[0] + g[1])
    syn = 2 * len(x & y) / (len(x) + len(y))
    sem = 0.5 * (f[0] == g[0]) + 0.5 * (authors_tag(f[1]) == authors_tag(g[1]))
    return syn * sem


def authors_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    fa, fb = authors_findings(a), authors_findings(b)
    total = sum(authors_sim(f, g) for f in fa for g in fb)
    return min(1.0, total / (len(fa) * len(fb)))


def random_report(rng: random.Random) -> str:
    """1–3 findings joined by ``，``."""
    return "，".join(f"在{rng.choice(LOCATIONS)}表现为{rng.choice(APPEARANCES)}"
                    for _ in range(rng.randint(1, 3)))


@pytest.fixture(scope="module")
def reports() -> list[str]:
    rng = random.Random(12)
    texts = [random_report(rng) for _ in range(200)]
    texts[1] = texts[0]  # a duplicate text: S = 1 between the two
    return texts


@pytest.fixture(scope="module")
def expected(reports: list[str]) -> np.ndarray:
    return np.array([[authors_similarity(a, b) for b in reports] for a in reports])


# --------------------------------------------------------------------------------------
# hand values


def test_a_two_finding_report_against_one_of_its_findings():
    # a match (1.0) and a non-match: different location, 高信号 vs 低信号 → sem 0
    s = report_similarity(["在左侧基底节区表现为高信号，在右侧额叶表现为低信号"],
                          ["在右侧额叶表现为低信号"], preset="paper")
    assert s[0, 0] == pytest.approx(0.5, abs=1e-6)


def test_design_worked_example():
    s = report_similarity(["在左侧基底节区表现为高信号"], ["在右侧基底节区表现为高信号"],
                          preset="paper")
    assert s[0, 0] == pytest.approx(16 / 18 * 0.5, abs=1e-6)  # 0.444…


def test_the_reference_gives_the_hand_values():
    assert authors_similarity("在左侧基底节区表现为高信号，在右侧额叶表现为低信号",
                              "在右侧额叶表现为低信号") == 0.5
    assert authors_similarity("在左侧基底节区表现为高信号",
                              "在右侧基底节区表现为高信号") == pytest.approx(4 / 9)


# --------------------------------------------------------------------------------------
# random reports: selip equals the authors' rule


def test_random_reports_match_the_authors_rule(reports, expected):
    assert max(len(authors_findings(t)) for t in reports) == 3
    s = report_similarity(reports, preset="paper")
    assert np.abs(s - expected).max() <= 1e-3
    assert (expected > 0).mean() > 0.1  # the comparison is not all zeros


def test_random_reports_through_the_cached_table(tmp_path, reports, expected):
    texts = sorted(set(reports))
    table, built = load_or_build(tmp_path, texts, PRESETS["paper"], progress=False)
    assert built
    want = np.array([[authors_similarity(a, b) for b in texts] for a in texts])
    assert np.abs(np.asarray(table.matrix, np.float32) - want).max() <= 1e-3


def test_random_reports_as_sections_and_structured_json(reports, expected):
    # the same findings, read from a sectioned text and from the authors' JSON
    sectioned = [f"FLAIR: {t}" for t in reports[:60]]
    structured = [json.dumps({"FLAIR": t}, ensure_ascii=False) for t in reports[:60]]
    for given in (sectioned, structured):
        pair_texts = [parse_report(r).text_for("flair") for r in given]
        assert pair_texts == reports[:60]  # the pair text keeps the authors' 「，」
        s = report_similarity(given, preset="paper")
        assert np.abs(s - expected[:60, :60]).max() <= 1e-3


def test_multi_sequence_json_pools_the_findings_of_every_sequence():
    report = {"T1": "在左侧基底节区表现为低信号",
              "FLAIR": "在左侧基底节区表现为高信号，在右侧额叶表现为低信号"}
    pooled = "，".join((report["T1"], report["FLAIR"]))
    others = ["在右侧额叶表现为低信号", "在左侧基底节区表现为高信号"]
    s = report_similarity([report, json.dumps(report, ensure_ascii=False)], others,
                          preset="paper")
    want = [authors_similarity(pooled, b) for b in others]
    np.testing.assert_allclose(s, [want, want], atol=1e-6)
    parsed = parse_report(report)
    assert parsed.text_for("t1") == "在左侧基底节区表现为低信号"
    assert parsed.text_for("flair") == report["FLAIR"]


def test_the_authors_normal_json_is_normal():
    report = parse_report('{"normal": "未见明显异常"}', normal_text="未见明显异常")
    assert report.normal and report.text_for("flair", "未见明显异常") == "未见明显异常"
    s = report_similarity(['{"normal": "未见明显异常"}', "在右侧额叶表现为低信号"], preset="paper")
    np.testing.assert_array_equal(s, np.eye(2, dtype=np.float32))


def test_english_commas_do_not_split_findings():
    report = "left frontal lobe: hyperintense, irregular signal"
    assert parse_report(f"FLAIR: {report}").text_for("flair") == report
    s = report_similarity([report], ["left frontal lobe: hyperintense signal"],
                          preset="paper")
    # one finding each: same location and tag → sem 1, so S is the char-set Dice alone
    x = set("left frontal lobe hyperintense, irregular signal") - {" "}
    y = set("left frontal lobe hyperintense signal") - {" "}
    assert s[0, 0] == pytest.approx(2 * len(x & y) / (len(x) + len(y)), abs=1e-6)
