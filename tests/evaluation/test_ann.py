"""ANN evaluation: recall against brute force, QPS, the tuned nprobe; it reads only (the job
publishes: tests/jobs/test_index_eval.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echoseek.errors import InputError
from echoseek.evaluation.ann import evaluate_index, smallest_nprobe
from echoseek.index import list_versions
from echoseek.index.recall import default_nprobes, knn_recall


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


def test_bad_query_file(index_root: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "q.npy", np.zeros((5, 7), np.float32))
    with pytest.raises(InputError, match="dim 7"):
        evaluate_index(index_root, queries=tmp_path / "q.npy")


def test_evaluation_reports_the_tuned_nprobe_and_publishes_nothing(index_copy: Path) -> None:
    versions = list_versions(index_copy)
    result = evaluate_index(
        index_copy, n_queries=60, nprobes=[1, 16], target_recall=0.5, n_single=5
    )
    assert result["tuned_nprobe"] == smallest_nprobe(result["rows"], 0.5, 10, "cosine")
    assert result["rerank"] == "cosine" and "published_version" not in result
    assert list_versions(index_copy) == versions
