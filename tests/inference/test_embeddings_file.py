"""The embeddings file of ``selip embed``: .npz and .parquet hold the same thing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from selip.cli import main
from selip.inference.archive import Embeddings, load_embeddings, save_embeddings


def _embeddings(rows: int = 5, dim: int = 4) -> Embeddings:
    generator = np.random.default_rng(0)
    image = generator.normal(size=(rows, dim)).astype(np.float32)
    return Embeddings(
        image=image, text=image[::-1].copy(),
        exam_id=np.array([f"exam{i // 2}" for i in range(rows)]),
        sequence=np.array(["t1", "flair"] * (rows // 2) + ["t1"] * (rows % 2)),
        report_id=np.arange(rows, dtype=np.int64) * 3,
        report=np.array([f"右侧基底节区见异常信号，大小约{i}mm" for i in range(rows)]))


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_round_trip_keeps_every_array_exactly(tmp_path, suffix):
    written = _embeddings()
    path = save_embeddings(tmp_path / f"archive{suffix}", written)
    read = load_embeddings(path)
    for name in Embeddings.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(read, name), getattr(written, name), err_msg=name)
    assert read.image.dtype == np.float32 and read.report_id.dtype == np.int64
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temporary name, then renamed


def test_parquet_is_one_row_per_pair_with_vector_columns(tmp_path):
    import pyarrow
    import pyarrow.parquet as parquet

    path = save_embeddings(tmp_path / "archive.parquet", _embeddings(rows=6, dim=3))
    table = parquet.read_table(path)
    assert table.num_rows == 6
    vector = table.schema.field("image").type
    assert pyarrow.types.is_fixed_size_list(vector) and vector.list_size == 3
    assert pyarrow.types.is_float32(vector.value_type)
    assert table.column("exam_id").to_pylist()[:2] == ["exam0", "exam0"]


def test_empty_archive_round_trips(tmp_path):
    empty = Embeddings(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32),
                       np.array([], str), np.array([], str), np.array([], np.int64),
                       np.array([], str))
    for suffix in (".npz", ".parquet"):
        read = load_embeddings(save_embeddings(tmp_path / f"e{suffix}", empty))
        assert len(read) == 0 and read.image.shape == (0, 4)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError, match=r"pip install 'selip\[parquet\]'"):
        save_embeddings(tmp_path / "archive.parquet", _embeddings())
    assert not (tmp_path / "archive.parquet").exists()


def test_bad_files_get_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz or \.parquet, got archive\.csv"):
        save_embeddings(tmp_path / "archive.csv", _embeddings())
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"broken\.parquet is not a readable \.parquet file"):
        load_embeddings(broken)
    import pyarrow
    import pyarrow.parquet as parquet

    other = tmp_path / "other.parquet"
    parquet.write_table(pyarrow.table({"exam_id": ["a"]}), other)
    with pytest.raises(ValueError, match=r"not a selip embeddings file \(no image"):
        load_embeddings(other)


def test_embed_refuses_a_wrong_suffix_before_loading_anything(tmp_path, capsys):
    code = main(["embed", "--ckpt", str(tmp_path / "missing.ckpt"), "--manifest",
                 str(tmp_path / "m.csv"), "--out", str(tmp_path / "out.csv")])
    assert code == 2
    assert ".npz or .parquet, got out.csv" in capsys.readouterr().err
