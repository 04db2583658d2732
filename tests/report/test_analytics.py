"""Positives in the top K and the top-K table against the metrics module's own P@K and lift."""

from __future__ import annotations

import numpy as np
import pytest

from echoseek.evaluation.ranking import lift_at_k, precision_at_k
from echoseek.report.analytics import positives_within, rank, topk_rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_positives_within_matches_precision_and_lift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(60, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevant = rng.random(60) < 0.3
    order, scores = rank(vectors[0], vectors)
    got = positives_within(relevant[order], [1, 10, 20, 50, 61], relevant.mean())
    assert set(got) == {"1", "10", "20", "50"}  # K beyond the corpus is left out
    for k in (1, 10, 20, 50):
        p = precision_at_k(scores[None], relevant[None], k)[0]
        assert got[str(k)]["ratio"] == pytest.approx(p)
        assert got[str(k)]["positives"] == round(p * k)
        assert got[str(k)]["lift"] == pytest.approx(lift_at_k(scores[None], relevant[None], k)[0])


def test_rank_orders_by_score_and_the_table_names_each_hit() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    order, scores = rank(np.array([1.0, 0.0]), vectors)
    assert order.tolist() == [0, 3, 2, 1]
    items = {
        "id": ["a", "b", "c", "d"],
        "label": [1, 0, None, 1],
        "source": ["s"] * 4,
        "frame_index": [5, 6, 7, 8],
    }
    rows = topk_rows(order, scores, items, 3, {"1": "息止め"})
    assert [(r["rank"], r["id"], r["frame_index"]) for r in rows] == [
        (1, "a", 5),
        (2, "d", 8),
        (3, "c", 7),
    ]
    assert [r["label_name"] for r in rows] == ["息止め", "息止め", ""]
    assert rows[1]["score"] == pytest.approx(0.8)


def test_a_class_without_items_is_refused() -> None:
    with pytest.raises(ValueError, match="base_rate"):
        positives_within(np.zeros(5, dtype=bool), [1], 0.0)
