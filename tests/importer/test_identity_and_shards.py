"""Keyed exam ids, one key for concurrent shards, and shards that cover the work once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from selip.importer.identity import ImportKeyError, keyed_id, load_or_create_key
from selip.importer.shard import Shard, ShardError, parse_shard


def test_the_id_depends_on_the_key_and_not_only_on_the_uid(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    other = load_or_create_key(tmp_path / "elsewhere")
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert keyed_id(key, uid) == keyed_id(key, uid)  # the site can map back
    assert keyed_id(key, uid) != keyed_id(other, uid)  # no one else can
    assert uid not in keyed_id(key, uid) and len(keyed_id(key, uid, "ex-")) == 19
    assert (tmp_path / "import_key").stat().st_mode & 0o077 == 0  # owner only


def test_concurrent_shards_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key(tmp_path)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["import_key"]  # no temporaries left


def test_a_damaged_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "import_key").write_text("not hex\n")
    with pytest.raises(ImportKeyError, match="import_key: not a selip import key"):
        load_or_create_key(tmp_path)


def test_shards_cover_every_unit_exactly_once() -> None:
    units = list(range(11))
    taken = [u for i in range(4) for u in Shard(i, 4).take(units)]
    assert sorted(taken) == units


def test_shard_from_the_option_and_from_the_slurm_array() -> None:
    assert parse_shard("2/4", {}) == Shard(2, 4)
    assert parse_shard(None, {}) == Shard(0, 1)
    array = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4",
             "SLURM_ARRAY_TASK_MIN": "1"}
    assert parse_shard(None, array) == Shard(2, 4)  # --array=1-4
    assert parse_shard("0/2", array) == Shard(0, 2)  # the option wins


@pytest.mark.parametrize("text", ["4/4", "2", "a/b", "-1/3"])
def test_a_bad_shard_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(ShardError, match=r"I/N|0 <= I < N"):
        parse_shard(text, {})
