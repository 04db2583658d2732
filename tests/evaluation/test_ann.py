"""Evaluation: recall against brute force, QPS, reports, and tuning the default nprobe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echoseek.errors import InputError
from echoseek.evaluation.ann import (
    default_nprobes,
    evaluate_index,
    exact_knn,
    knn_recall,
    smallest_nprobe,
)
from echoseek.index import open_index, read_manifest
from echoseek.index.publish import read_latest
from tests.index_fixtures import clustered


def test_recall_at_k_counts_the_overlap() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 9, 1, -1], [5, 6, 7, 8]])
    assert knn_recall(found, truth, 4) == pytest.approx((2 / 4 + 1) / 2)
    assert knn_recall(found, truth, 1) == pytest.approx(0.5)


def test_smallest_nprobe_and_sweep_grid() -> None:
    rows = [
        {"nprobe": 1, "rerank": None, "recall@10": 0.5},
        {"nprobe": 4, "rerank": None, "recall@10": 0.97},
        {"nprobe": 2, "rerank": "cosine", "recall@10": 0.96},
        {"nprobe": 1, "rerank": "cosine", "recall@10": 0.7},
    ]
    assert smallest_nprobe(rows, 0.95, rerank="cosine") == 2
    assert smallest_nprobe(rows, 0.95) == 4
    assert smallest_nprobe(rows, 0.99) is None
    assert default_nprobes(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert default_nprobes(0) == [1]


def test_tuning_sets_the_default_nprobe(index_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = evaluate_index(
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
    result = evaluate_index(
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


def test_bad_query_file(index_root: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "q.npy", np.zeros((5, 7), np.float32))
    with pytest.raises(InputError, match="dim 7"):
        evaluate_index(index_root, tmp_path / "e", queries=tmp_path / "q.npy")
