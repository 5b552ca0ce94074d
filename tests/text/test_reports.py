import json

import pytest

from selip.data.report_table import ReportTable
from selip.text.reports import (
    NORMAL_REPORT_TEXT,
    Finding,
    ReportError,
    parse_report,
    render_report,
    swap_laterality,
)


def test_free_text_grammar_gives_findings_per_sequence():
    report = parse_report("T1: left frontal lobe: hypointense signal.\n"
                          "FLAIR: left frontal lobe: hyperintense signal; right thalamus: "
                          "hyperintense signal.")
    assert report.text_for("flair") == ("left frontal lobe: hyperintense signal; "
                                        "right thalamus: hyperintense signal")
    assert report.text_for("T1") == "left frontal lobe: hypointense signal"
    # a sequence without findings in an abnormal exam is paired with the normal text
    assert report.text_for("dwi") == NORMAL_REPORT_TEXT


def test_structured_report_and_json_string_agree():
    data = {"FLAIR": [{"location": "left frontal lobe", "appearance": "hyperintense signal"}]}
    assert parse_report(data) == parse_report(json.dumps(data))
    assert parse_report(data).text_for("flair") == "left frontal lobe: hyperintense signal"


def test_normal_reports_pair_every_sequence_with_the_normal_text():
    for given in ({"normal": True}, '{"normal": true}', NORMAL_REPORT_TEXT,
                  "  no abnormality   detected "):
        report = parse_report(given)
        assert report.normal
        assert report.text_for("t2") == NORMAL_REPORT_TEXT
    assert parse_report("Normal study", normal_text="Normal study.").normal


def test_prose_without_headers_is_paired_unchanged():
    text = "Large mass in the left temporal lobe, with oedema."
    report = parse_report(text)
    assert report.text_for("t1") == text == report.text_for("adc")


def test_chinese_headers_and_punctuation():
    report = parse_report("FLAIR：在左侧基底节区表现为高信号。")
    assert report.text_for("flair") == "在左侧基底节区表现为高信号"


def test_chinese_findings_split_at_the_full_width_comma():
    text = "在左侧基底节区表现为高信号，在右侧额叶表现为低信号"
    report = parse_report(f"FLAIR: {text}。\nT1: 在左侧基底节区表现为低信号")
    assert report.findings["flair"] == (Finding("", "在左侧基底节区表现为高信号"),
                                        Finding("", "在右侧额叶表现为低信号"))
    assert report.text_for("flair") == text  # joined again by the authors' 「，」
    # a 「；」 or 「。」 inside a section separates findings too
    assert parse_report("FLAIR: 在脑桥表现为等信号。在右侧额叶表现为低信号").text_for("flair") == \
        "在脑桥表现为等信号，在右侧额叶表现为低信号"


def test_ascii_commas_stay_inside_an_english_finding():
    report = parse_report("FLAIR: left frontal lobe: hyperintense, irregular signal; "
                          "pons: small cyst.")
    assert report.findings["flair"] == (Finding("left frontal lobe",
                                                "hyperintense, irregular signal"),
                                        Finding("pons", "small cyst"))
    assert report.text_for("flair") == ("left frontal lobe: hyperintense, irregular signal; "
                                        "pons: small cyst")


def test_the_authors_structured_json_of_texts():
    data = {"T1": "在左侧基底节区表现为低信号",
            "FLAIR": "在左侧基底节区表现为高信号，在右侧额叶表现为低信号"}
    report = parse_report(json.dumps(data, ensure_ascii=False))
    assert report == parse_report(data)
    assert report.text_for("T1") == data["T1"]
    assert report.text_for("flair") == data["FLAIR"]
    assert len(report.findings["flair"]) == 2
    assert report.text_for("dwi", "未见明显异常") == "未见明显异常"
    for normal in ({"normal": "未见明显异常"}, '{"normal": "未见明显异常"}'):
        assert parse_report(normal, normal_text="未见明显异常").normal


@pytest.mark.parametrize("bad, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("{not json", "does not parse"),
    ('{"FLAIR": 3}', "must be a list"),
    ('{"FLAIR": "No abnormality detected."}', "no findings"),
    ('{"FLAIR": [{"location": "x"}]}', "appearance"),
    ('{"FLAIR": []}', "no findings"),
    ("[1, 2]", None),
])
def test_bad_reports_raise_report_error(bad, message):
    if message is None:  # a JSON list is prose to the grammar, not structured findings
        assert parse_report(bad).free_text == "[1, 2]"
        return
    with pytest.raises(ReportError, match=message):
        parse_report(bad)


def test_render_then_parse_round_trips():
    findings = {"t1": [Finding("left frontal lobe", "hypointense signal")],
                "flair": [Finding("left frontal lobe", "hyperintense signal"),
                          Finding("right thalamus", "hyperintense signal")]}
    text = render_report(findings, {"t1": "T1", "flair": "FLAIR"})
    assert text.splitlines()[0] == "T1: left frontal lobe: hypointense signal."
    parsed = parse_report(text)
    assert parsed.text_for("flair") == "; ".join(f.render() for f in findings["flair"])
    assert render_report(None) == NORMAL_REPORT_TEXT
    assert render_report({"t1": []}) == NORMAL_REPORT_TEXT


def test_swap_laterality_keeps_case_and_handles_chinese():
    assert swap_laterality("Left frontal; right thalamus; LEFT") == \
        "Right frontal; left thalamus; RIGHT"
    assert swap_laterality("在左侧基底节区，右侧丘脑") == "在右侧基底节区，左侧丘脑"
    assert swap_laterality("leftover rightmost") == "leftover rightmost"  # whole words only
    assert swap_laterality(swap_laterality("left and right")) == "left and right"


def test_report_table_ids_are_sorted_and_include_mirrored_texts():
    table = ReportTable(["b left", "a", "b left"], with_mirrored=True)
    assert table.texts == ["a", "b left", "b right"]
    assert table.id_of("b right") == 2
    assert len(ReportTable(["b left", "a"])) == 2
    with pytest.raises(KeyError, match="not in the table"):
        table.id_of("zzz")


def test_only_sequence_names_are_section_headers():
    finding = "thalamus: hyperintense signal"
    assert parse_report(finding).free_text == finding
    custom = parse_report("MYSEQ: left frontal lobe: hyperintense signal.", sequences=["myseq"])
    assert custom.text_for("myseq") == "left frontal lobe: hyperintense signal"


def test_a_section_with_the_normal_text_has_no_findings():
    report = parse_report("FLAIR: No abnormality detected.\n"
                          "DWI: left thalamus: restricted diffusion.")
    assert report.text_for("flair") == NORMAL_REPORT_TEXT
    assert report.text_for("dwi") == "left thalamus: restricted diffusion"
    assert parse_report("FLAIR: No abnormality detected.\nT1: no abnormality detected").normal


def test_a_normal_report_with_its_own_sentence_pairs_every_sequence_with_it():
    report = parse_report('{"normal": "未见明显异常"}')
    assert report.normal and report.text_for("flair") == "未见明显异常"
    assert report.text_for("t1", normal_text="No abnormality detected.") == "未见明显异常"
    assert parse_report('{"normal": true}').text_for("t1") == "No abnormality detected."
