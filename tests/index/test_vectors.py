"""The vectors artifact and streaming reads of .npy files, folders and artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from echoseek.data.vectors import (
    ROWS_PER_GROUP,
    VectorBatch,
    iter_vector_batches,
    open_vectors,
    read_descriptor,
    write_vectors,
)
from echoseek.errors import InputError


def _batches(x: np.ndarray, size: int, with_meta: bool = True) -> list[VectorBatch]:
    out = []
    for s in range(0, len(x), size):
        rows = range(s, min(len(x), s + size))
        meta = {"label": [r % 3 for r in rows], "source": [f"src{r}" for r in rows]}
        out.append(
            VectorBatch([f"id{r}" for r in rows], x[s : s + size], meta if with_meta else {})
        )
    return out


def _collect(path: Path, **kw: int) -> tuple[list[str], np.ndarray, dict[str, list[object]]]:
    ids, parts, meta = [], [], {}
    for b in iter_vector_batches(path, **kw):
        ids += b.ids
        parts.append(b.vectors)
        for k, v in b.metadata.items():
            meta.setdefault(k, []).extend(v)
    return ids, np.concatenate(parts), meta


def test_artifact_round_trip_with_metadata(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
    desc = write_vectors(tmp_path / "v", _batches(x, 97), 8, "models:/m/1", rows_per_file=300)
    assert desc["count"] == 1000 and desc["dim"] == 8 and desc["model_uri"] == "models:/m/1"
    assert [f["rows"] for f in desc["files"]] == [300, 300, 300, 100]
    assert read_descriptor(tmp_path / "v")["sha256"] == desc["sha256"]
    ids, y, meta = _collect(tmp_path / "v", batch_size=128)
    np.testing.assert_array_equal(y, x)
    assert ids == [f"id{i}" for i in range(1000)]
    assert meta["label"] == [i % 3 for i in range(1000)]
    assert meta["source"][999] == "src999"
    src = open_vectors(tmp_path / "v")
    assert src.has_ids and src.model_uri == "models:/m/1" and src.sha256 == desc["sha256"]


@pytest.mark.parametrize(("start", "stop"), [(0, 1000), (250, 731), (299, 301), (900, 5000)])
def test_row_ranges_cross_files(tmp_path: Path, start: int, stop: int) -> None:
    x = np.arange(1000 * 4, dtype=np.float32).reshape(1000, 4)
    write_vectors(tmp_path / "v", _batches(x, 128, False), 4, "", rows_per_file=300)
    ids, y, _ = _collect(tmp_path / "v", batch_size=64, start=start, stop=stop)
    np.testing.assert_array_equal(y, x[start:stop])
    assert ids == [f"id{i}" for i in range(start, min(stop, 1000))]


def test_npy_file_ids_are_row_numbers(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(50, 6))  # float64 is converted
    np.save(tmp_path / "x.npy", x)
    ids, y, meta = _collect(tmp_path / "x.npy", batch_size=16)
    assert ids == [str(i) for i in range(50)] and meta == {}
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x, rtol=1e-6)


def test_folder_of_npy_and_parquet_uses_global_row_numbers(tmp_path: Path) -> None:
    a = np.ones((30, 4), dtype=np.float32)
    b = np.full((20, 4), 2.0, dtype=np.float32)
    np.save(tmp_path / "a.npy", a)
    table = pa.table({"vector": pa.array(list(b), type=pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "b.parquet")
    src = open_vectors(tmp_path)
    assert (src.count, src.dim, src.has_ids) == (50, 4, False)
    ids, y, _ = _collect(tmp_path, batch_size=7)
    assert ids == [str(i) for i in range(50)]
    np.testing.assert_array_equal(y, np.concatenate([a, b]))


def test_wrong_dim_across_files_names_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((5, 4), dtype=np.float32))
    np.save(tmp_path / "b.npy", np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(InputError, match=r"b\.npy.*dim 3"):
        open_vectors(tmp_path)


def test_nan_vector_names_file_and_row(tmp_path: Path) -> None:
    x = np.zeros((40, 4), dtype=np.float32)
    x[33, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(InputError, match=r"x\.npy: row 33 has a NaN"):
        list(iter_vector_batches(tmp_path / "x.npy", batch_size=8))


def test_empty_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(InputError, match="no vectors"):
        open_vectors(tmp_path / "e.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.npy or \.parquet"):
        open_vectors(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        open_vectors(tmp_path / "missing")


def test_ragged_parquet_lists_are_rejected(tmp_path: Path) -> None:
    table = pa.table({"vector": pa.array([[1.0, 2.0], [1.0, 2.0, 3.0]], pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "r.parquet")
    with pytest.raises(InputError, match=r"r\.parquet: row 1 has 3 values"):
        list(iter_vector_batches(tmp_path / "r.parquet"))


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    good = VectorBatch(["a"], np.zeros((1, 4), np.float32), {})
    bad = VectorBatch(["b"], np.full((1, 4), np.inf, np.float32), {})
    with pytest.raises(InputError, match="NaN or infinite"):
        write_vectors(tmp_path / "v", [good, bad], 4, "")
    assert not any(tmp_path.iterdir())
    with pytest.raises(InputError, match="no vectors to write"):
        write_vectors(tmp_path / "v", [], 4, "")
    with pytest.raises(InputError, match="unknown metadata column 'color'"):
        write_vectors(tmp_path / "v", [VectorBatch(["a"], good.vectors, {"color": ["r"]})], 4, "")
    assert not any(tmp_path.iterdir())


def test_metadata_columns_must_not_change(tmp_path: Path) -> None:
    x = np.zeros((1, 2), np.float32)
    batches = [VectorBatch(["a"], x, {"label": [1]}), VectorBatch(["b"], x, {})]
    with pytest.raises(InputError, match="metadata columns"):
        write_vectors(tmp_path / "v", batches, 2, "")


def test_row_groups_stay_small_whatever_the_batch_size(tmp_path: Path) -> None:
    """A reader (a fill or sample task) decodes one row group at a time: one large batch in
    is still written as groups of at most ROWS_PER_GROUP rows."""
    n = 2 * ROWS_PER_GROUP + 5
    x = np.zeros((n, 4), dtype=np.float32)
    desc = write_vectors(tmp_path / "v", [([str(i) for i in range(n)], x)], 4, "pixels")
    meta = pq.ParquetFile(tmp_path / "v" / desc["files"][0]["file"]).metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sizes == [ROWS_PER_GROUP, ROWS_PER_GROUP, 5]
