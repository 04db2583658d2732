"""A version searches at a measured operating point from its build; tuning never rewrites it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echoseek.evaluation.ann import evaluate_index
from echoseek.index import build_index, list_versions, open_index, read_latest, read_manifest
from echoseek.index.manifest import MANIFEST
from echoseek.index.params import default_nprobe
from echoseek.index.reader import IndexReader
from echoseek.index.recall import exact_knn, knn_recall, without_self
from tests.index_fixtures import CLUSTERS, DIM, clustered


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    """Held-out queries: new points around the corpus's cluster centres."""
    return clustered(300, DIM, CLUSTERS, seed=0, points_seed=42)


def test_fresh_build_searches_at_recall_0_9(index_root: Path, queries: np.ndarray) -> None:
    """``search(q, 10)`` with the version's defaults, right after ``build_index``."""
    with open_index(index_root) as reader:
        _, truth = exact_knn(reader, queries, 10)
        _, ids = reader.search(queries, 10)
        rule = default_nprobe(reader.nlist)
        _, old = reader.search(queries, 10, nprobe=rule, rerank=False)  # before: the rule only
        manifest = reader.manifest
    assert knn_recall(ids, truth, 10) >= 0.9
    assert knn_recall(old, truth, 10) < 0.9
    point = manifest["build"]["calibration"]
    assert manifest["default_nprobe"] == point["nprobe"] and point["reached"]
    assert point["recall@10"] >= 0.9 and point["n_queries"] == 300
    assert [r["nprobe"] for r in point["rows"]] == [2**i for i in range(len(point["rows"]))]
    assert manifest["default_rerank"] == "cosine" and manifest["build"]["calibrate_s"] > 0


def test_flat_build_is_exact_without_calibration(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", clustered(500, 16, 5, seed=3))
    manifest = build_index(tmp_path / "x.npy", tmp_path / "r", use_ray=False)
    assert manifest["factory"] == "IDMap,Flat" and manifest["default_rerank"] is False
    assert "calibration" not in manifest["build"]
    with open_index(tmp_path / "r") as reader:
        assert reader.default_rerank is None


def test_legacy_null_rerank_default_reranks_approximate_versions(index_root: Path) -> None:
    version_dir = index_root / read_latest(index_root)
    manifest = {**read_manifest(version_dir), "default_rerank": None}
    with IndexReader(version_dir, manifest) as reader:
        assert reader.default_rerank == "cosine"
    with IndexReader(version_dir, {**manifest, "default_rerank": False}) as reader:
        assert reader.default_rerank is None


def test_without_self_drops_the_query_id() -> None:
    ids = np.array([[5, 1, 2], [3, 4, 6], [7, -1, -1]])
    got = without_self(ids, np.array([5, 4, 9]), 2)
    assert got.tolist() == [[1, 2], [3, 6], [7, -1]]


def test_eval_publishes_a_new_version_and_leaves_the_evaluated_one(
    index_copy: Path, tmp_path: Path
) -> None:
    version = read_latest(index_copy)
    before = (index_copy / version / MANIFEST).read_bytes()
    files = sorted(p.name for p in (index_copy / version).iterdir())
    result = evaluate_index(
        index_copy,
        tmp_path / "eval",
        n_queries=150,
        nprobes=[1, 2, 4, 8, 16, 32],
        target_recall=0.95,
        n_single=10,
    )
    assert (index_copy / version / MANIFEST).read_bytes() == before  # byte-identical
    assert sorted(p.name for p in (index_copy / version).iterdir()) == files
    tuned = result["published_version"]
    assert result["version"] == version and tuned == read_latest(index_copy) != version
    assert f"in new version {tuned}" in (tmp_path / "eval" / "eval.md").read_text()
    new = read_manifest(index_copy / tuned)
    assert new["parent"] == version and new["default_nprobe"] == result["tuned_nprobe"]
    assert new["default_rerank"] == "cosine" and new["evaluation"]["target_recall"] == 0.95
    assert new["shards"] == read_manifest(index_copy / version)["shards"]
    for shard in new["shards"]:  # files shared (hard links), not rewritten
        a, b = (index_copy / v / shard["file"] for v in (version, tuned))
        assert a.stat().st_ino == b.stat().st_ino
    with open_index(index_copy) as reader:
        assert reader.version == tuned and reader.default_nprobe == result["tuned_nprobe"]

    # tuning an older version publishes beside it without moving LATEST; retention applies
    again = evaluate_index(
        index_copy / version,
        tmp_path / "eval2",
        n_queries=50,
        nprobes=[16],
        target_recall=0.5,
        n_single=2,
        retention=2,
    )
    assert again["published_version"] not in (None, tuned)
    assert read_latest(index_copy) == tuned
    assert list_versions(index_copy) == [tuned, again["published_version"]]
