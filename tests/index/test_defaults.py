"""A version searches at a measured operating point from its build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echoseek.index import build_index, open_index, read_latest, read_manifest
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
