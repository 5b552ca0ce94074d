"""Text files are read in the encoding they were saved in, or refused with the fix."""

import codecs
from pathlib import Path

import pytest

from selip.io.text_encoding import TextEncodingError, decode_bytes, read_text

#: U+4DAE, U+9FCF and U+20000 are in GB18030 but not in GBK.
CHINESE = "检查号,检查所见\n00123,左侧额叶见长T2信号，䶮鿏𠀀\n"


def test_utf8_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(CHINESE.encode("utf-8"))
    assert read_text(path) == (CHINESE, "utf-8")


def test_a_utf8_bom_is_stripped_and_named(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(codecs.BOM_UTF8 + CHINESE.encode("utf-8"))
    assert read_text(path) == (CHINESE, "utf-8 with BOM")


def test_gb18030_is_detected_including_characters_outside_gbk() -> None:
    assert decode_bytes(CHINESE.encode("gb18030"), "r.csv") == (CHINESE, "gb18030")


def test_utf16_with_bom_is_read() -> None:
    assert decode_bytes(CHINESE.encode("utf-16"), "r.txt") == (CHINESE, "utf-16 with BOM")


def test_line_endings_are_left_alone() -> None:
    assert decode_bytes(b"a\r\nb\r\n", "r.csv")[0] == "a\r\nb\r\n"


def test_text_in_neither_encoding_names_the_file_the_offset_and_the_fix() -> None:
    with pytest.raises(TextEncodingError) as caught:
        decode_bytes("café, naïve".encode("latin-1"), "exports/r.csv")
    message = str(caught.value)
    assert "exports/r.csv" in message and "byte 0xe9 at offset 3" in message
    assert "UTF-8" in message and "latin-1" in message and "\n" not in message


def test_the_offset_is_where_the_likelier_encoding_stopped() -> None:
    body = ("左侧额叶见长T2信号" * 20).encode("gb18030")
    with pytest.raises(TextEncodingError, match=f"offset {len(body)}\\)"):
        decode_bytes(body + b"\xff,x", "r.csv")


def test_a_named_encoding_is_used_and_labelled() -> None:
    assert decode_bytes("café".encode("latin-1"), "r.csv", "latin-1") == ("café", "latin-1")
    assert decode_bytes(codecs.BOM_UTF8 + b"a", "r.csv", "utf-8") == ("a", "utf-8 with BOM")
    assert decode_bytes(codecs.BOM_UTF8 + b"a", "r.csv", "utf-8-sig") == ("a", "utf-8-sig with BOM")


def test_a_named_encoding_that_does_not_fit_or_does_not_exist() -> None:
    with pytest.raises(TextEncodingError, match=r"r.csv: not utf-8 \(byte 0xe9 at offset 3"):
        decode_bytes("café".encode("latin-1"), "r.csv", "utf-8")
    with pytest.raises(TextEncodingError, match="unknown encoding 'klingon'"):
        decode_bytes(b"a", "r.csv", "klingon")


@pytest.mark.parametrize("magic", [b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"])
def test_a_workbook_saved_under_a_text_name_is_named(magic: bytes) -> None:
    with pytest.raises(TextEncodingError, match=r"r\.csv: this is a spreadsheet workbook"):
        decode_bytes(magic + bytes(range(256)), "r.csv")


def test_the_error_is_a_value_error() -> None:
    assert issubclass(TextEncodingError, ValueError)
