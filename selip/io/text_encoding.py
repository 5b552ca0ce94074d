"""Reading text files whose encoding nobody wrote down.

Hospital exports and spreadsheets save CSV in UTF-8, UTF-8 with a byte-order mark, or —
in mainland China — GB18030 (a superset of GBK and GB2312). :func:`read_text` tries them
in that order, so a file is read without the user naming its encoding, and says which one
it used. A UTF-16 byte-order mark (Excel's "Unicode text" export) is honoured too. A file
none of them decodes is refused with the file, the byte offset and the fix, never read as
mojibake; so is a spreadsheet workbook saved under a text file's name.

GB18030 accepts many byte pairs, so a Latin-1 file whose accented letters happen to form
valid pairs (``M\\xfcller``) decodes as GB18030 without error; naming the encoding is the
only cure for that, which is why every reader built on this takes an ``encoding``.
"""

from __future__ import annotations

import codecs
from pathlib import Path

#: The encodings tried, in order. UTF-8 first: ASCII and valid UTF-8 are never GB18030's
#: business, while many GB18030 byte strings are invalid UTF-8 — so the order is safe.
DETECTED_ENCODINGS = ("utf-8", "gb18030")

#: Byte-order marks that name their encoding outright (checked before any guessing).
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

#: Magic numbers of spreadsheet workbooks: .xlsx (a ZIP archive) and .xls (OLE2).
_WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


class TextEncodingError(ValueError):
    """A text file in none of the detected encodings (or not in the one named)."""


def _label(encoding: str, bom: bool) -> str:
    return f"{encoding} with BOM" if bom else encoding


def _named(data: bytes, source: str, encoding: str) -> tuple[str, str]:
    """``data`` decoded as the encoding the user named (a BOM it yields is dropped)."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise TextEncodingError(f"{source}: unknown encoding '{encoding}'") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise TextEncodingError(
            f"{source}: not {encoding} (byte 0x{data[err.start]:02x} at offset "
            f"{err.start} cannot be decoded)") from None
    # Only a BOM the named codec decoded as U+FEFF is one (GB18030 reads those bytes
    # as other characters, and "utf-8-sig" drops it itself).
    bom = text.startswith("\ufeff") or (codec == "utf-8-sig" and data.startswith(codecs.BOM_UTF8))
    return text.removeprefix("\ufeff"), _label(encoding, bom)


def decode_bytes(data: bytes, source: str, encoding: str | None = None) -> tuple[str, str]:
    """``data`` decoded as ``encoding``, or as the first of :data:`DETECTED_ENCODINGS`
    that decodes it; returns ``(text, encoding used)``, e.g. ``"utf-8 with BOM"``.

    Raises:
        TextEncodingError: naming ``source``, the first undecodable byte and the fix.
    """
    if encoding is not None:
        return _named(data, source, encoding)
    if data.startswith(_WORKBOOK_MAGIC):
        raise TextEncodingError(
            f"{source}: this is a spreadsheet workbook (.xlsx/.xls), not a text file; "
            "save it as CSV UTF-8")
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16").removeprefix("\ufeff"), "utf-16 with BOM"
        except UnicodeDecodeError as err:
            raise TextEncodingError(
                f"{source}: starts with a UTF-16 byte-order mark but is not UTF-16 "
                f"(offset {err.start}); save it as UTF-8") from None
    bom = data.startswith(codecs.BOM_UTF8)
    skip = len(codecs.BOM_UTF8) if bom else 0
    furthest = 0
    for candidate in DETECTED_ENCODINGS:
        try:
            return data[skip:].decode(candidate), _label(candidate, bom)
        except UnicodeDecodeError as err:
            # The encoding that read furthest is the likelier one, so its stopping point
            # is where the user should look (a GB18030 file with one corrupt byte).
            furthest = max(furthest, err.start + skip)
    raise TextEncodingError(
        f"{source}: the text is neither UTF-8 nor GB18030 (byte 0x{data[furthest]:02x} at "
        f"offset {furthest}); save it as UTF-8, or name its encoding (e.g. latin-1, big5, "
        f"shift_jis)")


def read_text(path: str | Path, encoding: str | None = None) -> tuple[str, str]:
    """The text of ``path`` and the encoding it was read with (see :func:`decode_bytes`).
    Line endings are left as they are (the ``csv`` module handles them)."""
    path = Path(path)
    return decode_bytes(path.read_bytes(), str(path), encoding)
