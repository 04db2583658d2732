"""Incremental updates: add without retraining, delete by tombstones; each a new version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echoseek.errors import InputError
from echoseek.index import add_vectors, delete_ids, list_versions, open_index, read_manifest
from echoseek.index.publish import read_latest
from tests.index_fixtures import clustered


def test_add_vectors_reuses_the_trained_index(index_copy: Path) -> None:
    base = read_manifest(index_copy / read_latest(index_copy))
    new = clustered(700, 32, 5, seed=11, spread=0.5)  # other clusters than the corpus
    manifest = add_vectors(index_copy, new, ids=[f"new-{i}" for i in range(700)])
    assert manifest["parent"] == base["version"]
    assert manifest["trained"]["sha256"] == base["trained"]["sha256"]  # no retraining
    assert manifest["shards"][:3] == base["shards"]  # old shards carried unchanged
    assert manifest["shards"][3]["id_start"] == 20_000 and manifest["ntotal"] == 20_700
    assert list_versions(index_copy) == [base["version"], manifest["version"]]
    with open_index(index_copy) as reader:
        _, ids = reader.search(new[:20], 1, nprobe=16, rerank=True)
        assert (ids[:, 0] == 20_000 + np.arange(20)).all()
        assert reader.lookup([20_005])[0]["id"] == "new-5"
    with open_index(index_copy / base["version"]) as old:  # the old version is intact
        assert old.ntotal == 20_000


def test_add_vectors_from_a_file_in_two_shards(index_copy: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "more.npy", clustered(300, 32, 3, seed=12))
    manifest = add_vectors(index_copy, tmp_path / "more.npy", num_shards=2)
    assert [s["file"] for s in manifest["shards"][3:]] == ["shard-00003.faiss", "shard-00004.faiss"]
    with open_index(index_copy) as reader:
        assert reader.lookup([20_299])[0]["id"] == "20299"  # no ids in .npy: internal ids


def test_add_rejects_wrong_dim_and_nan(index_copy: Path) -> None:
    with pytest.raises(InputError, match=r"shape \(N, 32\)"):
        add_vectors(index_copy, np.zeros((3, 16), np.float32))
    bad = np.zeros((3, 32), np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="row 1 has a NaN"):
        add_vectors(index_copy, bad)
    assert len(list_versions(index_copy)) == 1


def test_tombstoned_ids_never_come_back(index_copy: Path, corpus: np.ndarray) -> None:
    q = corpus[:40]
    with open_index(index_copy) as reader:
        _, before = reader.search(q, 10, nprobe=16, rerank=True)
    doomed = np.unique(before[:, :5])  # every query's five best, ~200 ids
    manifest = delete_ids(index_copy, doomed.tolist())
    assert manifest["tombstones"] == sorted(doomed.tolist())
    assert manifest["live"] == 20_000 - len(doomed)
    with open_index(index_copy) as reader:
        for k, rerank in [(1, False), (10, True), (10, False), (60, True)]:
            _, after = reader.search(q, k, nprobe=16, rerank=rerank)
            assert not np.isin(after, doomed).any()
            assert (after >= 0).all()  # over-fetching still fills k results
        with pytest.raises(InputError, match="was deleted"):
            reader.lookup([int(doomed[0])])


def test_delete_by_external_id_and_accumulate(index_copy: Path) -> None:
    delete_ids(index_copy, ["7", "8"])
    manifest = delete_ids(index_copy, [9, 7])
    assert manifest["tombstones"] == [7, 8, 9]
    with pytest.raises(InputError, match="id 99999"):
        delete_ids(index_copy, [99_999])
    with pytest.raises(InputError, match="no ids"):
        delete_ids(index_copy, [])


def test_deleting_a_whole_cluster_searches_deeper(tmp_path: Path) -> None:
    from echoseek.index import build_index

    x = np.concatenate([clustered(300, 8, 1, seed=1, spread=0.01), clustered(300, 8, 1, seed=2)])
    np.save(tmp_path / "x.npy", x)
    build_index(tmp_path / "x.npy", tmp_path / "r", use_ray=False)
    delete_ids(tmp_path / "r", list(range(290)))  # most of the query's own cluster
    with open_index(tmp_path / "r") as reader:
        _, ids = reader.search(x[0], 30)
    assert (ids >= 290).all()
    assert sorted(ids[0, :10]) == list(range(290, 300))
