"""Exported report files are read by key, every bad row named, no report ever quoted."""

import codecs
import json
from pathlib import Path

import pytest

from selip.importer.reports import (
    DETECT_SESSION,
    ReportFile,
    ReportFileError,
    participant_key,
    read_reports,
)

#: A report distinctive enough that finding it in a message means a message leaked it.
SECRET = "Secret-Findings-Q7Z: glioma in the left frontal lobe"
UID = "1.2.840.113619.2.55.3.604688119"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _messages(result: ReportFile) -> list[str]:
    return [str(p) for p in result.problems]


def _assert_nothing_leaks(messages: list[str]) -> None:
    assert messages and all(SECRET not in m and "glioma" not in m for m in messages)


def test_csv_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f'AccessionNumber,Report\nA1,"{SECRET}"\nA2,"line one\n'
                  'line two, with a comma"\n')
    result = read_reports(path)
    assert (result.encoding, result.key_field, result.key_kind) == ("utf-8", "AccessionNumber",
                                                                     "accession")
    assert result.reports == {"A1": SECRET, "A2": "line one\nline two, with a comma"}
    assert result.problems == [] and result.empty == set()


def test_csv_with_bom_and_a_study_uid_key(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(codecs.BOM_UTF8 + f"Study Instance UID,findings\n{UID},normal\n".encode())
    result = read_reports(path)
    assert result.encoding == "utf-8 with BOM"
    assert (result.key_field, result.key_kind) == ("Study Instance UID", "study_uid")
    assert result.reports == {UID: "normal"}


def test_gb18030_with_chinese_headers_and_findings(tmp_path: Path) -> None:
    findings = "左侧额叶见长T2信号，䶮鿏𠀀"  # the last three are outside GBK
    path = _write(tmp_path / "r.csv", f"患者,检查号,检查所见\n张三,00123,{findings}\n", "gb18030")
    result = read_reports(path)
    assert (result.encoding, result.key_field, result.key_kind) == ("gb18030", "检查号",
                                                                     "accession")
    assert result.reports == {"00123": findings}


def test_accession_wins_over_study_uid_and_key_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f"study_uid,ACC-NO,text\n{UID},7,normal\n")
    assert read_reports(path).reports == {"7": "normal"}
    by_uid = read_reports(path, key="Study-UID")  # matched ignoring case, "_" and "-"
    assert (by_uid.key_field, by_uid.key_kind, by_uid.reports) == ("study_uid", "study_uid",
                                                                    {UID: "normal"})


def test_text_override_and_tsv_and_sniffed_txt(tmp_path: Path) -> None:
    tsv = _write(tmp_path / "r.tsv", "acc_no\t描述\t报告\n1\tA, b; c\tsummary\n")
    assert read_reports(tsv).reports == {"1": "summary"}  # 报告 comes before 描述
    assert read_reports(tsv, text="描述").reports == {"1": "A, b; c"}
    txt = _write(tmp_path / "r.txt", "accession|report\n1|a, b; c\n2|d\n")
    assert read_reports(txt).reports == {"1": "a, b; c", "2": "d"}


def test_latin1_is_refused_naming_the_file_and_offset(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f"accession,report\n1,café, {SECRET}\n", "latin-1")
    with pytest.raises(ReportFileError) as caught:
        read_reports(path)
    message = str(caught.value)
    assert str(path) in message and "0xe9 at offset 22" in message and "\n" not in message
    _assert_nothing_leaks([message])
    assert read_reports(path, encoding="latin-1").encoding == "latin-1"


def test_json_list(tmp_path: Path) -> None:
    rows = [{"AccessionNumber": "A1", "report": SECRET}, {"AccessionNumber": 42, "report": "x"},
            {"AccessionNumber": 43.0, "report": "y"}]
    path = _write(tmp_path / "r.json", json.dumps(rows))
    assert read_reports(path).reports == {"A1": SECRET, "42": "x", "43": "y"}


def test_json_mapping_key_to_report_with_structured_findings(tmp_path: Path) -> None:
    findings = {"左侧额叶": "长T2信号", "FLAIR": ["高信号"]}
    path = _write(tmp_path / "r.json", json.dumps({UID: findings, "2.25.1234.5": "normal"}))
    result = read_reports(path)
    assert (result.key_field, result.key_kind) == ("(object key)", "study_uid")
    assert result.reports[UID] == json.dumps(findings, ensure_ascii=False)
    assert "左侧额叶" in result.reports[UID]
    accession = _write(tmp_path / "a.json", json.dumps({"00123": "x"}))
    assert read_reports(accession).key_kind == "accession"
    assert read_reports(accession, key="StudyInstanceUID").key_kind == "study_uid"


def test_json_mapping_to_records_with_a_named_text_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.json", json.dumps({"A1": {"date": "2020", "impression": "ok"},
                                                   "A2": "not an object"}))
    result = read_reports(path, text="impression")
    assert result.reports == {"A1": "ok"}
    assert _messages(result) == [f"{path}, row 2: not a JSON object; the row is skipped"]


def test_structured_findings_in_a_list_row_are_serialised(tmp_path: Path) -> None:
    findings = [{"location": "左侧基底节区", "appearance": "低信号"}]
    path = _write(tmp_path / "r.jsonl", json.dumps({"accession": "1", "findings": findings}))
    assert read_reports(path).reports == {"1": json.dumps(findings, ensure_ascii=False)}


def test_jsonl_with_a_bad_line_reads_the_rest(tmp_path: Path) -> None:
    lines = [json.dumps({"accession": "1", "report": SECRET}), '{"accession": "2", "report": ',
             "", json.dumps(["not", "an", "object"]), json.dumps({"accession": "3", "report": "z"})]
    path = _write(tmp_path / "r.ndjson", "\n".join(lines))
    result = read_reports(path)
    assert result.reports == {"1": SECRET, "3": "z"}
    messages = _messages(result)
    assert [p.row for p in result.problems] == [2, 4]
    assert messages[0].startswith(f"{path}, row 2: not valid JSON")
    _assert_nothing_leaks(messages)


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.json", f'[\n  {{"accession": "1", "report": "{SECRET}"}},\n]')
    with pytest.raises(ReportFileError, match=r"not valid JSON \(.* at line 3, column 1\)") as e:
        read_reports(path)
    _assert_nothing_leaks([str(e.value)])


def test_leading_zeros_are_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "accession,report\n00123, x \n 0007 ,y\n")
    assert read_reports(path).reports == {"00123": "x", "0007": "y"}


def test_empty_reports_and_rows_without_a_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f"accession,report\n1,  \n,{SECRET}\n2,{{}}\n3,\n3,late\n"
                  ",,\n")
    result = read_reports(path)
    assert result.reports == {"3": "late"}  # a later non-empty report fills the key
    assert result.empty == {"1", "2"}
    assert _messages(result) == [
        f"{path}, row 1: empty report",
        f"{path}, row 2: no accession number ('accession' is empty); the row is skipped",
        f"{path}, row 3: empty report",
        f"{path}, row 4: empty report",
    ]
    _assert_nothing_leaks(_messages(result))


def test_duplicate_keys(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f"accession,report\n1,{SECRET}\n1,{SECRET}\n2,a\n"
                  f"1,other\n2,b\n")
    result = read_reports(path)
    assert result.reports == {"1": SECRET, "2": "a"}
    assert _messages(result) == [
        f"{path}, row 4: the accession number of row 1 again, with a different report; "
        "row 1's is kept",
        f"{path}, row 5: the accession number of row 3 again, with a different report; "
        "row 3's is kept",
    ]
    _assert_nothing_leaks(_messages(result))


def test_a_row_with_too_many_cells_is_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f"accession,report\n1,{SECRET}, and more\n2,ok\n")
    result = read_reports(path)
    assert result.reports == {"2": "ok"}
    assert "row 1: 3 cells but the header has 2" in _messages(result)[0]
    _assert_nothing_leaks(_messages(result))


def test_missing_key_field_lists_the_fields_and_the_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f"patient,date,report\nx,2020,{SECRET}\n")
    with pytest.raises(ReportFileError) as caught:
        read_reports(path)
    message = str(caught.value)
    assert "fields found: patient, date, report" in message and "--report-key" in message
    _assert_nothing_leaks([message])
    with pytest.raises(ReportFileError, match="no field 'mrn' \\(fields found: patient, date"):
        read_reports(path, key="mrn")


def test_missing_text_field_lists_the_fields_and_the_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", json.dumps({"accession": "1", "body": SECRET}))
    with pytest.raises(ReportFileError) as caught:
        read_reports(path)
    message = str(caught.value)
    assert "fields found: accession, body" in message and "--report-text" in message
    _assert_nothing_leaks([message])
    assert read_reports(path, text="BODY").reports == {"1": SECRET}


def test_unsupported_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ReportFileError, match=r"r\.xlsx.*supported: \.csv, \.tsv, \.txt, \.json"):
        read_reports(tmp_path / "r.xlsx")
    with pytest.raises(ReportFileError, match="report file not found"):
        read_reports(tmp_path / "absent.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ReportFileError, match="is a directory, not a report file"):
        read_reports(tmp_path / "folder.csv")
    with pytest.raises(ReportFileError, match="holds no reports"):
        read_reports(_write(tmp_path / "empty.csv", ""))
    with pytest.raises(ReportFileError, match="holds no reports"):
        read_reports(_write(tmp_path / "empty.json", "{}"))
    with pytest.raises(ReportFileError, match="cannot tell the delimiter"):
        read_reports(_write(tmp_path / "one.txt", "accession\n1\n"))
    assert issubclass(ReportFileError, ValueError)


def test_participant_key_takes_labels_with_or_without_prefixes() -> None:
    assert participant_key("01", "02") == participant_key("sub-01", "ses-02") == "sub-01_ses-02"
    assert participant_key(" sub-01 ") == participant_key("01", "") == "sub-01"
    assert participant_key("sub-01_ses-02") == "sub-01_ses-02"


def test_participants_and_sessions(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", f"participant_id,Session ID,report\nsub-01,ses-02,"
                  f"{SECRET}\n03,1,b\n04,,c\n01,02,other\n")
    result = read_reports(path, participants=True, session=DETECT_SESSION)
    assert (result.key_field, result.session_field, result.key_kind) == (
        "participant_id", "Session ID", "participant")
    assert result.reports == {"sub-01_ses-02": SECRET, "sub-03_ses-1": "b", "sub-04": "c"}
    assert _messages(result) == [
        f"{path}, row 4: the participant and session of row 1 again, with a different "
        "report; row 1's is kept"]
    _assert_nothing_leaks(_messages(result))
    by_participant = read_reports(path, participants=True)  # a dataset without sessions
    assert by_participant.session_field == "" and "sub-01" in by_participant.reports
    named = read_reports(path, participants=True, session="session_id")
    assert named.session_field == "Session ID"
    with pytest.raises(ReportFileError, match="no field 'visit'"):
        read_reports(path, participants=True, session="visit")


def test_participant_fields_are_found_only_for_bids(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "Subject,findings\nsub-01,a\n01,a\n")
    result = read_reports(path, participants=True, session=DETECT_SESSION)
    assert (result.key_field, result.session_field) == ("Subject", "")
    assert result.reports == {"sub-01": "a"} and result.problems == []
    with pytest.raises(ReportFileError, match="no accession number or StudyInstanceUID"):
        read_reports(path)  # a DICOM import is never joined by participant
    assert read_reports(path, key="Subject").key_kind == "accession"
    mapping = _write(tmp_path / "r.json", json.dumps({"sub-01": "x", "02": "y"}))
    assert read_reports(mapping, participants=True).reports == {"sub-01": "x", "sub-02": "y"}
    other = _write(tmp_path / "o.csv", "AccessionNumber,report\n1,a\n")
    with pytest.raises(ReportFileError) as caught:
        read_reports(other, participants=True)
    message = str(caught.value)
    assert "no participant field (fields found: AccessionNumber, report" in message
    assert "participant_id" in message and "--report-key" in message
    assert read_reports(other, "utf-8", "AccessionNumber", participants=True).reports == {
        "sub-1": "a"}
