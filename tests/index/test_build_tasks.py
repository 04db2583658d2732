"""The build's stages as tasks: sampled reads, the partitioned id check, the per-shard
calibration, idempotent shard files, placement and each task's record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from echoseek.data.vectors import find_duplicate, id_hashes, open_vectors, read_rows
from echoseek.errors import InputError
from echoseek.index import build_index, open_index, plan_shards, read_manifest
from echoseek.index.build import fill_shard, fill_shards, train_stage
from echoseek.index.calibrate import calibrate_on_shards, read_npy_rows
from echoseek.index.ids import check_unique_ids
from echoseek.index.publish import resolve_version_dir
from echoseek.index.recall import calibrate_nprobe, sample_live_ids
from echoseek.index.tasks import (
    Placement,
    check_fits,
    current_node_id,
    peak_rss_mib,
    reset_peak_rss,
)
from echoseek.object_store import temporary_path
from tests.index_fixtures import clustered, small_params


def grouped_parquet(path: Path, x: np.ndarray, ids: list[str], group_rows: int) -> Path:
    """A vector file with an ``id`` column in row groups of ``group_rows``."""
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    table = pa.table({"id": pa.array(ids, pa.string()), "vector": vectors})
    pq.write_table(table, path, row_group_size=group_rows)
    return path


def test_read_rows_reads_only_the_row_groups_holding_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = clustered(1_000, 8, 5, seed=1)
    path = grouped_parquet(tmp_path / "v.parquet", x, [f"i{j}" for j in range(1_000)], 100)
    groups: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counted(self: pq.ParquetFile, i: int, *args: Any, **kwargs: Any) -> pa.Table:
        groups.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    rows = np.array([5, 99, 100, 731, 999])
    np.testing.assert_array_equal(read_rows(open_vectors(path), rows), x[rows])
    assert groups == [0, 1, 7, 9]


def test_partitioned_id_check_finds_a_repeat_across_shards(tmp_path: Path) -> None:
    ids = [f"item-{j}" for j in range(900)]
    ids[850] = "item-12"  # shard 0 and shard 2 of 3
    path = grouped_parquet(tmp_path / "v.parquet", clustered(900, 8, 3, seed=2), ids, 128)
    source = open_vectors(path)
    with pytest.raises(InputError, match=r"duplicate vector id 'item-12' \(v.parquet row 12 and "):
        check_unique_ids(source, plan_shards(900, 3), batch_size=64, use_ray=False)
    check_unique_ids(source, plan_shards(850, 3), batch_size=64, use_ray=False)


def test_a_hash_collision_alone_is_not_a_duplicate(tmp_path: Path) -> None:
    ids = [f"u{j}" for j in range(50)]
    path = grouped_parquet(tmp_path / "v.parquet", clustered(50, 4, 2, seed=3), ids, 16)
    source = open_vectors(path)
    suspects = set(id_hashes(source, 0, 50)[:3].tolist())  # as if these hashes repeated
    find_duplicate(source, suspects, batch_size=8)  # each id is there once: no error


def test_sampled_query_ids_are_live_seeded_and_need_no_id_list() -> None:
    manifest = {
        "version": "v1",
        "shards": [{"id_start": 0, "count": 100}, {"id_start": 500, "count": 50}],
        "tombstones": [3, 510],
    }
    a = sample_live_ids(manifest, 60, seed=4)
    np.testing.assert_array_equal(a, sample_live_ids(manifest, 60, seed=4))
    assert len(np.unique(a)) == 60 and np.all(np.diff(a) > 0)
    inside = ((a >= 0) & (a < 100)) | ((a >= 500) & (a < 550))
    assert inside.all() and not np.isin(a, [3, 510]).any()
    assert len(sample_live_ids(manifest, 1_000)) == 148


def test_calibration_on_shards_measures_what_one_reader_measures(index_root: Path) -> None:
    """Per-shard parts merged equal the in-process sweep of the whole version (the fixture
    has 3 shards): same nprobe, same recall at every swept nprobe."""
    version = resolve_version_dir(index_root)
    manifest = read_manifest(version)
    split = calibrate_on_shards(version, manifest, target=0.95, n_queries=120, use_ray=False)
    with open_index(index_root) as reader:
        whole = calibrate_nprobe(reader, target=0.95, n_queries=120)
    assert split["rows"] == whole["rows"] and split["nprobe"] == whole["nprobe"]
    assert len(split["rows"]) > 1  # the sweep went past its first nprobe


def test_stored_rows_are_read_one_by_one_from_the_npy_file(tmp_path: Path) -> None:
    x = clustered(500, 6, 3, seed=5).astype(np.float16)
    np.save(tmp_path / "v.npy", x)
    rows = np.array([0, 17, 18, 499])
    np.testing.assert_array_equal(read_npy_rows(tmp_path / "v.npy", rows), x[rows])


def test_a_failed_fill_attempt_leaves_only_temporaries_which_the_stage_removes(
    tmp_path: Path, corpus_npy: Path
) -> None:
    source = open_vectors(corpus_npy)
    trained = train_stage(source, small_params())
    (plan,) = plan_shards(500, 1)
    x = np.load(corpus_npy)[:500]

    def batches_then_crash() -> Any:
        from echoseek.index.build import array_batches

        yield from array_batches(x[:256])
        raise RuntimeError("worker lost (test)")

    with pytest.raises(RuntimeError, match="worker lost"):
        fill_shard(trained, batches_then_crash(), plan, tmp_path, normalize=True)
    assert list(tmp_path.iterdir()) == []
    leftover = temporary_path(tmp_path / "shard-00000.faiss")  # a dead attempt's file
    leftover.write_bytes(b"partial")
    (entry,) = fill_shards(trained, source, [plan], tmp_path, normalize=True, use_ray=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shard-00000.faiss", "shard-00000.meta.parquet", "shard-00000.vectors.npy",
    ]  # fmt: skip
    assert entry["count"] == 500 and entry["task"]["node_id"] == current_node_id()


def test_a_task_reports_its_own_peak_not_an_earlier_tasks() -> None:
    """Ray reuses worker processes: a task starts the process's peak afresh."""
    big = np.ones(25_000_000)  # 200 MB, as an earlier task of the same worker might have
    del big
    before = peak_rss_mib()
    reset_peak_rss()
    assert peak_rss_mib() < before - 150


def test_a_task_no_node_can_hold_is_refused_up_front(ray_session: Any) -> None:
    with pytest.raises(InputError, match=r"needs \d+ MiB of memory but the largest node"):
        check_fits(Placement(memory=1 << 50))
    check_fits(Placement(memory=1 << 20))


@pytest.mark.slow
def test_ray_build_records_where_each_shard_was_filled(
    ray_session: Any, tmp_path: Path, corpus_npy: Path
) -> None:
    manifest = build_index(corpus_npy, tmp_path / "root", small_params(), num_shards=2)
    fills = manifest["build"]["shard_fills"]
    node = ray_session.get_runtime_context().get_node_id()
    assert [f["file"] for f in fills] == ["shard-00000.faiss", "shard-00001.faiss"]
    assert [f["rows"] for f in fills] == [10_000, 10_000]
    assert all(f["node_id"] == node and f["seconds"] > 0 for f in fills)
    assert all(100 < f["peak_rss_mib"] < 4_000 for f in fills)
    for stage in ("check_s", "sample_s", "train_s", "fill_s", "calibrate_s"):
        assert manifest["build"][stage] >= 0


def test_build_tasks_do_not_load_torch() -> None:
    """A fill, sample or calibration worker imports the build without torch (~450 MB of
    resident memory per task otherwise): only a re-rank by a torch distance loads it."""
    code = "import sys, echoseek.index.build; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
