"""Staged sharded build: each stage alone, atomic publication, failures, retention, Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from echoseek.data.vectors import iter_vector_batches, open_vectors, read_rows
from echoseek.errors import InputError
from echoseek.index import build_index, choose_params, list_versions, open_index, read_latest
from echoseek.index.build import fill_shard, plan_shards, train_stage
from echoseek.index.manifest import read_manifest
from echoseek.index.train import deserialize_index, sample_rows
from tests.index_fixtures import SHARDS, clustered, small_params


def test_plan_shards_is_contiguous_and_balanced() -> None:
    plans = plan_shards(10, 3, first_shard=2, id_start=100)
    assert [(p.shard, p.start, p.stop, p.id_start) for p in plans] == [
        (2, 0, 3, 100),
        (3, 3, 6, 103),
        (4, 6, 10, 106),
    ]
    assert len(plan_shards(2, 8)) == 2
    with pytest.raises(InputError, match="no vectors"):
        plan_shards(0, 2)


def test_sample_rows_is_seeded_sorted_and_distinct() -> None:
    a, b = sample_rows(1000, 100, seed=3), sample_rows(1000, 100, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(sample_rows(5, 10), np.arange(5))


def test_read_rows_reads_the_sample(corpus_npy: Path, corpus: np.ndarray) -> None:
    rows = sample_rows(len(corpus), 500, seed=1)
    np.testing.assert_array_equal(read_rows(open_vectors(corpus_npy), rows), corpus[rows])


@pytest.fixture(scope="module")
def trained(corpus_npy: Path) -> np.ndarray:
    params = choose_params(20_000, 32, nlist=64, train_size=3_000)
    return train_stage(open_vectors(corpus_npy), params)


def test_train_stage_gives_an_empty_trained_index(trained: np.ndarray) -> None:
    index = deserialize_index(trained)
    assert index.is_trained and index.ntotal == 0
    assert faiss.extract_index_ivf(index).nlist == 64


def test_fill_shard_alone(tmp_path: Path, corpus_npy: Path, trained: np.ndarray) -> None:
    source = open_vectors(corpus_npy)
    (plan,) = plan_shards(500, 1, first_shard=7, id_start=1000)
    batches = iter_vector_batches(source, 128, 0, 500)
    entry = fill_shard(trained, batches, plan, tmp_path, normalize=True, external_ids=False)
    assert entry["file"] == "shard-00007.faiss" and entry["count"] == 500
    shard = faiss.read_index(str(tmp_path / entry["file"]))
    assert shard.ntotal == 500
    stored = np.load(tmp_path / entry["vectors"]["file"])
    assert stored.dtype == np.float16 and stored.shape == (500, 32)
    np.testing.assert_allclose(np.linalg.norm(stored.astype(np.float32), axis=1), 1, atol=2e-3)


def test_published_layout(index_root: Path) -> None:
    version = read_latest(index_root)
    manifest = read_manifest(index_root / version)
    assert manifest["version"] == version and list_versions(index_root) == [version]
    assert manifest["ntotal"] == 20_000 and len(manifest["shards"]) == SHARDS
    assert [s["id_start"] for s in manifest["shards"]] == [0, 6666, 13333]
    assert manifest["factory"] == "IVF256,PQ8x8" and manifest["metric"] == "ip"
    assert manifest["vectors_sha256"] and manifest["dataset_sha256"]
    assert not [p for p in index_root.iterdir() if p.name.startswith(".")]


def _nan_outside_sample(x: np.ndarray, train_size: int, shard: int, shards: int) -> np.ndarray:
    """Put a NaN in shard ``shard``'s rows at a row the training sample does not read."""
    sample = set(sample_rows(len(x), train_size, seed=0).tolist())
    lo = len(x) * shard // shards
    row = next(r for r in range(lo, len(x)) if r not in sample)
    y = x.copy()
    y[row, 0] = np.nan
    return y


def _assert_nothing_new(root: Path, before: list[str]) -> None:
    assert list_versions(root) == before
    assert not root.exists() if not before else not list(root.glob(".*staging*"))


def test_interrupted_build_publishes_nothing(tmp_path: Path) -> None:
    x = clustered(12_000, 16, 20, seed=4)
    params = choose_params(12_000, 16, nlist=32, train_size=2_000)
    np.save(tmp_path / "bad.npy", _nan_outside_sample(x, 2_000, shard=2, shards=3))
    root = tmp_path / "root"
    with pytest.raises(InputError, match=r"bad\.npy: row \d+ has a NaN"):
        build_index(tmp_path / "bad.npy", root, params, num_shards=3, use_ray=False)
    _assert_nothing_new(root, [])  # not even an empty root


def test_failed_build_keeps_the_previous_version(tmp_path: Path) -> None:
    root = tmp_path / "root"
    np.save(tmp_path / "ok.npy", clustered(600, 8, 5, seed=5))
    first = build_index(tmp_path / "ok.npy", root, use_ray=False)
    bad = clustered(600, 8, 5, seed=6)
    bad[-1, 0] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(InputError, match="infinite"):
        build_index(tmp_path / "bad.npy", root, num_shards=2, use_ray=False)
    _assert_nothing_new(root, [first["version"]])
    assert read_latest(root) == first["version"]


def test_retention_removes_old_versions(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", clustered(300, 8, 4, seed=7))
    versions = [
        build_index(tmp_path / "x.npy", tmp_path / "r", use_ray=False, retention=2)["version"]
        for _ in range(4)
    ]
    assert list_versions(tmp_path / "r") == versions[-2:]
    assert read_latest(tmp_path / "r") == versions[-1]
    assert len({*versions}) == 4 and versions == sorted(versions)


def test_build_from_artifact_records_model_and_ids(tmp_path: Path) -> None:
    from echoseek.data.vectors import VectorBatch, write_vectors

    x = clustered(400, 8, 4, seed=8)
    batch = VectorBatch([f"img-{i}" for i in range(400)], x, {"label": list(range(400))})
    write_vectors(tmp_path / "vec", [batch], 8, "models:/enc/2", extra={"dataset_sha256": "abc"})
    manifest = build_index(tmp_path / "vec", tmp_path / "r", use_ray=False, num_shards=2)
    assert manifest["model_uri"] == "models:/enc/2" and manifest["dataset_sha256"] == "abc"
    with open_index(tmp_path / "r") as reader:
        rec = reader.lookup([399, "img-5"])
    assert rec[0]["id"] == "img-399" and rec[0]["label"] == 399
    assert rec[1]["internal_id"] == 5


@pytest.mark.slow
def test_ray_build_matches_the_plan(ray_session: Any, tmp_path: Path, corpus_npy: Path) -> None:
    root = tmp_path / "root"
    manifest = build_index(corpus_npy, root, small_params(), num_shards=4, use_ray=True)
    assert len(manifest["shards"]) == 4 and manifest["ntotal"] == 20_000
    with open_index(root) as reader:  # checksums of every file verified
        q = np.load(corpus_npy)[:50]
        _, ids = reader.search(q, 1, nprobe=16, rerank=True)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.95


@pytest.mark.slow
def test_ray_interrupted_build_publishes_nothing(ray_session: Any, tmp_path: Path) -> None:
    x = clustered(12_000, 16, 20, seed=9)
    params = choose_params(12_000, 16, nlist=32, train_size=2_000)
    np.save(tmp_path / "bad.npy", _nan_outside_sample(x, 2_000, shard=1, shards=2))
    np.save(tmp_path / "ok.npy", x[:500])
    root = tmp_path / "root"
    first = build_index(tmp_path / "ok.npy", root, use_ray=True)
    with pytest.raises(InputError, match=r"bad\.npy: row \d+ has a NaN"):
        build_index(tmp_path / "bad.npy", root, params, num_shards=2, use_ray=True)
    _assert_nothing_new(root, [first["version"]])
    assert json.loads((root / first["version"] / "manifest.json").read_text())["ntotal"] == 500
