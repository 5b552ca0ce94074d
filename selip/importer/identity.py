"""Exam ids that carry no patient data, and a key that lets only the site map them back.

An imported exam's id is an HMAC-SHA256 of its StudyInstanceUID under a random key kept
beside the output (``import_key``, readable by its owner only). Without the key the id
says nothing about the study; with it, the site recomputes the id of any study in its
PACS and finds the exam. The key is created once, atomically, so shards of a SLURM array
that start together all end up with the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

KEY_FILE = "import_key"
#: Hex digits kept of the HMAC: 64 bits, no collision in any archive that exists.
ID_LENGTH = 16


class ImportKeyError(ValueError):
    """An unreadable or malformed key file."""


def load_or_create_key(folder: Path, path: Path | None = None) -> bytes:
    """The key at ``path`` (default ``folder/import_key``), created when absent.

    Creation writes a temporary file and hard-links it to the final name, which fails if
    another process got there first — then that process's key is read instead, so
    concurrent shards agree without a lock.
    """
    path = path or folder / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ImportKeyError(f"{path}: not a selip import key (64 hex digits expected)") from None
    if len(key) < 16:
        raise ImportKeyError(f"{path}: the key is too short ({len(key)} bytes; 32 expected)")
    return key


def keyed_id(key: bytes, value: str, prefix: str = "") -> str:
    """``prefix`` + the first :data:`ID_LENGTH` hex digits of HMAC-SHA256(key, value)."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[:ID_LENGTH]
