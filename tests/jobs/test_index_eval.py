"""``echoseek index eval``'s tuning: the evaluation's tuned nprobe published as the default of
a new version derived from the evaluated one, which never changes; nothing published when the
target is out of reach."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from echoseek.evaluation.ann import smallest_nprobe
from echoseek.index import list_versions, open_index, read_latest, read_manifest
from echoseek.index.manifest import MANIFEST
from echoseek.index.recall import exact_knn, knn_recall
from echoseek.jobs.index_eval import evaluate_and_publish
from tests.index_fixtures import clustered


def test_tuning_sets_the_default_nprobe(index_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = evaluate_and_publish(
        index_copy, out, n_queries=150, nprobes=[1, 2, 4, 8, 16], target_recall=0.9, n_single=20
    )
    tuned = result["tuned_nprobe"]
    assert tuned is not None and tuned == smallest_nprobe(result["rows"], 0.9, 10, "cosine")
    assert {r["rerank"] for r in result["rows"]} == {None, "cosine"}
    assert all(r["qps_single"] > 0 and r["qps_batch"] > 0 for r in result["rows"])
    assert 8 < result["index_bytes_per_vector"] < 60
    assert result["rerank_bytes_per_vector"] >= 2 * 32
    assert {p.name for p in out.iterdir()} == {"eval.json", "eval.md", "recall_qps.png"}
    assert json.loads((out / "eval.json").read_text())["tuned_nprobe"] == tuned
    assert (
        "| nprobe | rerank | recall@1 | recall@10 | recall@100 |" in (out / "eval.md").read_text()
    )
    manifest = read_manifest(index_copy / read_latest(index_copy))
    assert manifest["default_nprobe"] == tuned and manifest["default_rerank"] == "cosine"
    queries = clustered(200, 32, 100, seed=0, points_seed=5)
    with open_index(index_copy) as reader:  # checksums still valid after the rewrite
        _, truth = exact_knn(reader, queries, 10)
        _, ids = reader.search(queries, 10)  # version defaults: tuned nprobe + re-rank
    assert knn_recall(ids, truth, 10) >= 0.9


def test_held_out_queries_and_unreachable_target(index_copy: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "q.npy", clustered(80, 32, 100, seed=0, points_seed=6))
    before = read_manifest(index_copy / read_latest(index_copy))["default_nprobe"]
    result = evaluate_and_publish(
        index_copy,
        tmp_path / "eval",
        queries=tmp_path / "q.npy",
        nprobes=[1],
        rerank=False,
        target_recall=1.0,
        n_single=5,
    )
    assert result["n_queries"] == 80 and result["tuned_nprobe"] is None
    assert [r["rerank"] for r in result["rows"]] == [None]
    assert read_manifest(index_copy / read_latest(index_copy))["default_nprobe"] == before


def test_eval_publishes_a_new_version_and_leaves_the_evaluated_one(
    index_copy: Path, tmp_path: Path
) -> None:
    version = read_latest(index_copy)
    before = (index_copy / version / MANIFEST).read_bytes()
    files = sorted(p.name for p in (index_copy / version).iterdir())
    result = evaluate_and_publish(
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
    again = evaluate_and_publish(
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
