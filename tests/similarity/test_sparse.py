"""The sparse top-k table: exact where kept, zero elsewhere, never U² in memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from selip.similarity import PRESETS
from selip.similarity.sparse import (
    build_sparse_table,
    load_or_build_sparse,
    open_sparse_table,
    sparse_key,
    top_k_rows,
)
from selip.similarity.table import load_or_build

CONFIG = PRESETS["english"]
SIDES = ("left", "right")
REGIONS = ("frontal lobe", "parietal lobe", "thalamus", "basal ganglia", "pons", "insula")
SIGNALS = ("hyperintense signal", "hypointense signal", "restricted diffusion", "mixed signal")


def reports(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = {"No abnormality detected."}
    while len(texts) < count:
        texts.add("; ".join(f"{rng.choice(SIDES)} {rng.choice(REGIONS)}: {rng.choice(SIGNALS)}"
                            for _ in range(int(rng.integers(1, 4)))))
    return sorted(texts)


def test_top_k_rows_keeps_the_largest_entries_sorted_by_column():
    block = np.array([[0.1, 0.9, 0.3, 0.7], [1.0, 0.0, 0.5, 0.2]], np.float32)
    columns, values = top_k_rows(block, 2)
    assert columns.tolist() == [[1, 3], [0, 2]]
    np.testing.assert_allclose(values, [[0.9, 0.7], [1.0, 0.5]], rtol=1e-3)
    columns, _ = top_k_rows(block, 10)  # k >= U keeps everything
    assert columns.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_with_k_equal_to_u_the_sparse_lookup_is_the_dense_table(tmp_path):
    texts = reports(40)
    dense, _ = load_or_build(tmp_path, texts, CONFIG, progress=False)
    sparse = build_sparse_table(tmp_path, texts, CONFIG, top_k=len(texts), progress=False)
    ids, columns = torch.tensor([3, 0, 17, 39, 3]), torch.arange(40)
    torch.testing.assert_close(sparse.lookup(ids, columns), dense.lookup(ids, columns))


def test_entries_are_exact_where_either_report_keeps_the_other_else_zero(tmp_path):
    texts = reports(60)
    dense_table, _ = load_or_build(tmp_path, texts, CONFIG, progress=False)
    dense = np.asarray(dense_table.matrix, np.float32)
    k = 5
    sparse = build_sparse_table(tmp_path, texts, CONFIG, top_k=k, progress=False)
    every = torch.arange(len(texts))
    looked_up = sparse.lookup(every, every).numpy()
    kept = np.zeros_like(dense, dtype=bool)
    np.put_along_axis(kept, np.asarray(sparse.neighbours, np.int64), True, axis=1)
    kept |= kept.T
    np.testing.assert_allclose(looked_up[kept], dense[kept], atol=1e-3)
    assert np.all(looked_up[~kept] == 0)
    np.testing.assert_array_equal(looked_up, looked_up.T)  # symmetrised
    # Each row keeps its k largest values (ties aside): the row maximum is never lost.
    np.testing.assert_allclose(looked_up.max(1), dense.max(1), atol=1e-3)


def test_placed_and_memory_mapped_lookups_agree(tmp_path):
    texts = reports(30)
    sparse = build_sparse_table(tmp_path, texts, CONFIG, top_k=4, progress=False)
    ids, columns = torch.tensor([1, 5, 9]), torch.tensor([0, 5, 7, 9, 29])
    from_disk = sparse.lookup(ids, columns)
    assert sparse.place("cpu", budget_bytes=1 << 20)
    torch.testing.assert_close(sparse.lookup(ids, columns), from_disk)
    assert not sparse.place("cpu", budget_bytes=10)  # over budget: reads the memory map
    torch.testing.assert_close(sparse.lookup(ids, columns), from_disk)


def test_a_placed_table_takes_no_more_than_its_budget(tmp_path):
    sparse = build_sparse_table(tmp_path, reports(30), CONFIG, top_k=4, progress=False)
    ids = torch.tensor([1, 5, 9])
    from_disk = sparse.lookup(ids)
    assert sparse.place("cpu", budget_bytes=sparse.nbytes)  # exactly its size fits
    assert sparse.placed_nbytes == sparse.nbytes  # int64 indices took 1.7x the budget
    torch.testing.assert_close(sparse.lookup(ids), from_disk)


def test_reuse_integrity_and_a_new_key_per_k(tmp_path):
    texts = reports(25)
    table, built = load_or_build_sparse(tmp_path, texts, CONFIG, top_k=3, progress=False)
    assert built
    again, built = load_or_build_sparse(tmp_path, texts, CONFIG, top_k=3, progress=False)
    assert not built and again.key == table.key
    assert sparse_key(texts, CONFIG, 3) != sparse_key(texts, CONFIG, 4)
    values = tmp_path / "similarity" / f"{table.key}.val"
    payload = bytearray(values.read_bytes())
    payload[0] ^= 0xFF
    values.write_bytes(bytes(payload))
    assert open_sparse_table(tmp_path, table.key) is None  # digest mismatch: rebuilt
    values.write_bytes(bytes(payload[:-2]))
    assert open_sparse_table(tmp_path, table.key) is None  # truncated
    assert not [p for p in (tmp_path / "similarity").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="top_k"):
        build_sparse_table(tmp_path, texts, CONFIG, top_k=0, progress=False)


def test_the_build_never_holds_u_squared_in_memory(tmp_path):
    texts = reports(3000, seed=1)
    u_squared_float32 = len(texts) ** 2 * 4
    tracemalloc.start()
    build_sparse_table(tmp_path, texts, CONFIG, top_k=8, threads=1, progress=False,
                       block_rows=100)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < u_squared_float32 / 2, (peak, u_squared_float32)
