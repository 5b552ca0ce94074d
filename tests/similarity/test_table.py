"""The on-disk similarity table: keyed build, reuse, integrity checks, lookup."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from selip.similarity import PRESETS, SimilarityEngine, report_similarity
from selip.similarity.table import load_or_build, open_table, table_key

CONFIG = PRESETS["english"]
TEXTS = [
    "left thalamus: hyperintense signal",
    "right thalamus: hyperintense signal",
    "No abnormality detected.",
    "FLAIR: left frontal lobe: hyperintense signal.\nT1: left frontal lobe: hypointense signal.",
    "在左侧基底节区表现为高信号",
    "在右侧基底节区表现为低信号；在脑桥表现为高信号。",
    "left thalamus: hypointense signal; pons: restricted diffusion",
]


def files(root: Path, key: str) -> tuple[Path, Path]:
    return root / "similarity" / f"{key}.f16", root / "similarity" / f"{key}.json"


def no_temp_files(root: Path) -> bool:
    return not [p for p in (root / "similarity").iterdir() if p.name.endswith(".tmp")]


def test_build_then_reuse(tmp_path, monkeypatch):
    table, built = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    assert built
    assert len(table) == len(TEXTS)
    matrix_path, sidecar_path = files(tmp_path, table.key)
    assert matrix_path.is_file() and sidecar_path.is_file()
    stamps = (matrix_path.stat().st_mtime_ns, sidecar_path.stat().st_mtime_ns)

    def no_compute(*args, **kwargs):
        raise AssertionError("a reused table must not be recomputed")

    monkeypatch.setattr(SimilarityEngine, "blocks", no_compute)
    again, built = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    assert not built
    assert again.key == table.key
    assert (matrix_path.stat().st_mtime_ns, sidecar_path.stat().st_mtime_ns) == stamps
    np.testing.assert_array_equal(np.asarray(again.matrix), np.asarray(table.matrix))


def test_stored_matrix_equals_report_similarity(tmp_path):
    table, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    assert table.matrix.dtype == np.float16
    assert table.matrix.shape == (len(TEXTS), len(TEXTS))
    expected = report_similarity(TEXTS, preset=CONFIG)
    np.testing.assert_allclose(np.asarray(table.matrix, np.float32), expected, atol=1e-3)
    # the bytes on disk are the raw (U, U) float16 matrix
    raw = np.fromfile(files(tmp_path, table.key)[0], np.float16).reshape(len(TEXTS), -1)
    np.testing.assert_allclose(raw.astype(np.float32), expected, atol=1e-3)


def test_sidecar_contents(tmp_path):
    table, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    sidecar = json.loads(files(tmp_path, table.key)[1].read_text())
    assert {"key", "size", "settings", "build_seconds", "digest"} <= sidecar.keys()
    assert sidecar["key"] == table.key
    assert sidecar["size"] == len(TEXTS)
    assert sidecar["settings"]["syntax"] == CONFIG.syntax
    assert sidecar["settings"]["alpha"] == CONFIG.alpha
    assert sidecar["build_seconds"] >= 0
    assert isinstance(sidecar["digest"], str) and sidecar["digest"]


@pytest.mark.parametrize("change", ["text", "order", "config"])
def test_any_change_gives_a_new_key_and_a_rebuild(tmp_path, change):
    first, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    texts, config = list(TEXTS), CONFIG
    if change == "text":
        texts[1] = "right thalamus: hypointense signal"
    elif change == "order":
        texts[0], texts[1] = texts[1], texts[0]
    else:
        config = replace(CONFIG, alpha=0.25)
    assert table_key(texts, config) != first.key
    second, built = load_or_build(tmp_path, texts, config, progress=False)
    assert built
    assert second.key != first.key
    np.testing.assert_allclose(np.asarray(second.matrix, np.float32),
                               report_similarity(texts, preset=config), atol=1e-3)
    # the first table is still there and valid
    assert open_table(tmp_path, first.key) is not None


def test_every_scoring_setting_is_in_the_key():
    base = table_key(TEXTS, CONFIG)
    for change in ({"syntax": "levenshtein"}, {"combine": "product"}, {"alpha": 0.1},
                   {"signal_tags": ("hyperintense",)}, {"normal_texts": ("Normal.",)},
                   {"normal_patterns": ("normal",)}):
        assert table_key(TEXTS, replace(CONFIG, **change)) != base, change
    # the batch size does not change S, so it does not change the key
    assert table_key(TEXTS, replace(CONFIG, embedding_batch_size=3)) == base


def test_truncated_matrix_is_rebuilt(tmp_path):
    table, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    expected = np.array(table.matrix)
    matrix_path = files(tmp_path, table.key)[0]
    matrix_path.write_bytes(matrix_path.read_bytes()[:-3])
    assert open_table(tmp_path, table.key) is None
    rebuilt, built = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    assert built
    assert matrix_path.stat().st_size == len(TEXTS) ** 2 * 2
    np.testing.assert_array_equal(np.asarray(rebuilt.matrix), expected)


def test_corrupted_matrix_is_detected_by_digest_and_rebuilt(tmp_path):
    table, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    expected = np.array(table.matrix)
    matrix_path = files(tmp_path, table.key)[0]
    data = bytearray(matrix_path.read_bytes())
    data[5] ^= 0xFF
    data[-1] ^= 0x01
    matrix_path.write_bytes(bytes(data))
    assert matrix_path.stat().st_size == len(TEXTS) ** 2 * 2
    assert open_table(tmp_path, table.key) is None
    rebuilt, built = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    assert built
    np.testing.assert_array_equal(np.asarray(rebuilt.matrix), expected)
    assert open_table(tmp_path, table.key) is not None


@pytest.mark.parametrize("garbage", ["not json {", "[1, 2, 3]", '"a string"', "{}",
                                     '{"key": "x"}'])
def test_garbage_sidecar_is_rebuilt(tmp_path, garbage):
    table, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    sidecar_path = files(tmp_path, table.key)[1]
    sidecar_path.write_text(garbage)
    assert open_table(tmp_path, table.key) is None
    rebuilt, built = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    assert built
    assert json.loads(sidecar_path.read_text())["key"] == table.key
    assert len(rebuilt) == len(TEXTS)


def test_sidecar_of_another_key_is_not_accepted(tmp_path):
    table, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    _, sidecar_path = files(tmp_path, table.key)
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["key"] = "0" * 64
    sidecar_path.write_text(json.dumps(sidecar))
    assert open_table(tmp_path, table.key) is None


def test_no_temporary_files_after_a_build(tmp_path):
    load_or_build(tmp_path, TEXTS, CONFIG, block_rows=2, progress=False)
    assert no_temp_files(tmp_path)
    names = sorted(p.suffix for p in (tmp_path / "similarity").iterdir())
    assert names == [".f16", ".json"]


def test_failed_build_leaves_nothing_and_keeps_other_tables(tmp_path, monkeypatch):
    other, _ = load_or_build(tmp_path, TEXTS[:3], CONFIG, progress=False)
    other_matrix, other_sidecar = files(tmp_path, other.key)
    before = (other_matrix.read_bytes(), other_sidecar.read_text(),
              other_matrix.stat().st_mtime_ns)

    original = SimilarityEngine.block
    calls = []

    def failing_block(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom in block 2")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SimilarityEngine, "block", failing_block)
    with pytest.raises(RuntimeError, match="boom"):
        load_or_build(tmp_path, TEXTS, CONFIG, block_rows=2, threads=1, progress=False)
    assert len(calls) >= 2

    key = table_key(TEXTS, CONFIG)
    assert not files(tmp_path, key)[0].exists()
    assert not files(tmp_path, key)[1].exists()
    assert open_table(tmp_path, key) is None
    assert no_temp_files(tmp_path)
    assert (other_matrix.read_bytes(), other_sidecar.read_text(),
            other_matrix.stat().st_mtime_ns) == before
    assert open_table(tmp_path, other.key) is not None


def test_block_wise_build_equals_single_block(tmp_path):
    blocked, _ = load_or_build(tmp_path / "a", TEXTS, CONFIG, block_rows=3, threads=2,
                               progress=False)
    whole, _ = load_or_build(tmp_path / "b", TEXTS, CONFIG, block_rows=1000, threads=1,
                             progress=False)
    assert blocked.key == whole.key
    np.testing.assert_array_equal(np.asarray(blocked.matrix), np.asarray(whole.matrix))
    assert blocked.info.digest == whole.info.digest


@pytest.fixture
def table(tmp_path):
    return load_or_build(tmp_path, TEXTS, CONFIG, progress=False)[0]


def expected_block(table, rows, cols):
    dense = np.asarray(table.matrix, np.float32)
    return torch.from_numpy(dense[np.asarray(rows)][:, np.asarray(cols)])


def test_lookup_square_and_duplicate_ids(table):
    ids = torch.tensor([3, 0, 6, 3], dtype=torch.long)
    got = table.lookup(ids)
    assert got.dtype == torch.float32
    assert got.shape == (4, 4)
    assert got.device == ids.device
    torch.testing.assert_close(got, expected_block(table, [3, 0, 6, 3], [3, 0, 6, 3]),
                               rtol=0, atol=0)
    # duplicate ids are the same report: S = 1 between them and on the diagonal
    assert got[0, 3] == 1.0
    torch.testing.assert_close(torch.diagonal(got), torch.ones(4))


def test_lookup_rectangular(table):
    rows = torch.tensor([1, 4], dtype=torch.long)
    columns = torch.tensor([0, 1, 2, 5, 6], dtype=torch.long)
    got = table.lookup(rows, columns)
    assert got.shape == (2, 5)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected_block(table, [1, 4], [0, 1, 2, 5, 6]),
                               rtol=0, atol=0)
    assert got[0, 1] == 1.0  # report 1 against itself


def test_place_within_and_over_budget(table):
    ids = torch.tensor([5, 2, 0], dtype=torch.long)
    from_map = table.lookup(ids)
    assert table.place("cpu", budget_bytes=1 << 40) is True
    torch.testing.assert_close(table.lookup(ids), from_map, rtol=0, atol=0)
    torch.testing.assert_close(table.lookup(ids, torch.arange(len(TEXTS))),
                               expected_block(table, [5, 2, 0], range(len(TEXTS))),
                               rtol=0, atol=0)
    assert table.place("cpu", budget_bytes=1) is False
    got = table.lookup(ids)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, from_map, rtol=0, atol=0)


@pytest.mark.gpu
def test_place_and_lookup_on_cuda(table):
    ids = torch.tensor([5, 2, 0, 2], dtype=torch.long)
    expected = table.lookup(ids)
    on_gpu = ids.cuda()
    from_map = table.lookup(on_gpu)  # not placed: memory map, moved to the ids' device
    assert from_map.device == on_gpu.device
    torch.testing.assert_close(from_map.cpu(), expected, rtol=0, atol=0)
    assert table.place("cuda", budget_bytes=1 << 40)
    placed = table.lookup(on_gpu)
    assert placed.device == on_gpu.device
    assert placed.dtype == torch.float32
    torch.testing.assert_close(placed.cpu(), expected, rtol=0, atol=0)


def test_empty_texts_give_an_empty_table(tmp_path):
    table, built = load_or_build(tmp_path, [], CONFIG, progress=False)
    assert built
    assert len(table) == 0
    assert table.matrix.shape == (0, 0)
    assert files(tmp_path, table.key)[0].stat().st_size == 0
    got = table.lookup(torch.zeros(0, dtype=torch.long))
    assert got.shape == (0, 0)
    again, built = load_or_build(tmp_path, [], CONFIG, progress=False)
    assert not built
    assert again.key == table.key
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("size", [None, "7", 7.0, -7])
def test_sidecar_with_a_bad_size_is_rebuilt(tmp_path, size):
    table, _ = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    sidecar_path = files(tmp_path, table.key)[1]
    sidecar = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(json.dumps({**sidecar, "size": size}))
    assert open_table(tmp_path, table.key) is None
    rebuilt, built = load_or_build(tmp_path, TEXTS, CONFIG, progress=False)
    assert built
    assert len(rebuilt) == len(TEXTS)


def test_key_separates_texts_unambiguously():
    # joined with a separator, ["a: b|", "c: d"] and ["a: b", "|c: d"] would collide
    assert table_key(["a: b|", "c: d"], CONFIG) != table_key(["a: b", "|c: d"], CONFIG)
    assert table_key(['a", "b'], CONFIG) != table_key(["a", "b"], CONFIG)
    # texts that differ only in surrounding whitespace have the same S, hence the same key
    assert table_key([" a: b\n", "c: d"], CONFIG) == table_key(["a: b", "c: d"], CONFIG)
