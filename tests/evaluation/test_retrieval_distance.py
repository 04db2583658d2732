"""Leave-one-out retrieval ranked by a distance of echoseek.distances (an exact re-rank)."""

from __future__ import annotations

import numpy as np
import pytest

from echoseek.distances import rowwise
from echoseek.evaluation.retrieval import leave_one_out_metrics
from echoseek.training.loop import retrieval_metrics


def brute_force_map(vectors: np.ndarray, labels: np.ndarray, name: str, **params: float) -> float:
    """Per query: every other item's distance one pair at a time, sorted ascending; AP = the
    mean over relevant items of the precision at their rank."""
    import torch

    aps = []
    for q in range(len(vectors)):
        others = [i for i in range(len(vectors)) if i != q]
        y = torch.from_numpy(np.repeat(vectors[q : q + 1], len(others), axis=0))
        d = rowwise(y, torch.from_numpy(vectors[others]), name, **params).numpy()
        order = [others[i] for i in np.argsort(d, kind="stable")]
        hits = np.array([labels[i] == labels[q] for i in order])
        ranks = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    return float(np.mean(aps))


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 6)
    centres = rng.normal(size=(4, 8))
    vectors = centres[labels] + 0.9 * rng.normal(size=(24, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


@pytest.mark.parametrize(("name", "params"), [("soart3_yita", {}), ("soart3_gamma", {"p": 2.0})])
def test_a_distance_ranks_as_the_per_pair_formula(
    data: tuple[np.ndarray, np.ndarray], name: str, params: dict[str, float]
) -> None:
    vectors, labels = data
    got = leave_one_out_metrics(vectors, labels, (10,), None, name, params)["map"]
    assert got == pytest.approx(brute_force_map(vectors, labels, name, **params), abs=1e-6)


def test_sqeuclidean_on_unit_rows_ranks_as_cosine(data: tuple[np.ndarray, np.ndarray]) -> None:
    """||a - b||^2 = 2 - 2 cos(a, b) for unit rows: the same ranking, the same mAP."""
    vectors, labels = data
    cosine = retrieval_metrics(vectors, labels, 10, None)
    sq = retrieval_metrics(vectors, labels, 10, None, "sqeuclidean")
    assert sq["map"] == pytest.approx(cosine["map"], abs=1e-6)
    yita = retrieval_metrics(vectors, labels, 10, None, "soart3_yita")
    assert yita["map"] != pytest.approx(cosine["map"], abs=1e-6)  # another ranking indeed
