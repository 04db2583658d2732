"""kNN anomaly scores against a brute-force loop; detection metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from echoseek.errors import InputError
from echoseek.evaluation import anomaly
from echoseek.evaluation.anomaly import (
    auroc,
    average_precision,
    detection_metrics,
    fpr_at_tpr,
    knn_scores,
    leave_one_out_auroc,
    leave_one_out_scores,
    percentiles,
)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(q: np.ndarray, ref: np.ndarray, k: int, skip: list[int | None]) -> np.ndarray:
    out = []
    for i, row in enumerate(q):
        dists = sorted(
            1.0 - float(np.dot(row.astype(np.float64), r.astype(np.float64)))
            for j, r in enumerate(ref)
            if j != skip[i]
        )
        out.append(sum(dists[:k]) / k)
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_scores_match_brute_force(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(k)
    ref, q = unit_rows(rng, 40, 8), unit_rows(rng, 25, 8)
    monkeypatch.setattr(anomaly, "BLOCK_FLOATS", 100)  # several query chunks
    np.testing.assert_allclose(
        knn_scores(q, ref, k), brute_force(q, ref, k, [None] * 25), atol=1e-5
    )


def test_an_item_in_the_reference_never_counts_itself() -> None:
    rng = np.random.default_rng(0)
    ref = unit_rows(rng, 30, 6)
    ids = [f"item-{j}" for j in range(30)]
    q, qids = ref[[4, 9]], ["item-4", "other"]
    scores = knn_scores(q, ref, 2, qids, ids)
    np.testing.assert_allclose(scores, brute_force(q, ref, 2, [4, None]), atol=1e-5)
    with_itself = knn_scores(q[:1], ref, 2)[0]  # no ids: its own row is the nearest, at 0
    assert with_itself == pytest.approx(brute_force(q[:1], ref, 2, [None])[0], abs=1e-5)
    assert with_itself < scores[0]


def test_leave_one_out_scores_and_percentiles() -> None:
    rng = np.random.default_rng(1)
    ref = unit_rows(rng, 50, 5)
    loo = leave_one_out_scores(ref, 3)
    np.testing.assert_allclose(loo, brute_force(ref, ref, 3, list(range(50))), atol=1e-5)
    sampled = leave_one_out_scores(ref, 3, sample=20, seed=2)
    assert len(sampled) == 20 and set(np.round(sampled, 6)) <= set(np.round(loo, 6))
    pct = percentiles(np.array([-1.0, np.median(loo), 3.0]), loo)
    assert pct[0] == 0.0 and pct[2] == 100.0 and 48.0 <= pct[1] <= 52.0


def test_detection_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(5, 200))
        labels = rng.random(n) < rng.uniform(0.05, 0.6)
        labels[0], labels[1] = True, False
        scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
        if trial % 2:
            scores = np.round(scores, 1)  # ties
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
        assert average_precision(scores, labels) == pytest.approx(
            average_precision_score(labels, scores)
        )
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
        assert fpr_at_tpr(scores, labels) == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    m = detection_metrics(scores, labels)
    assert m["anomalies"] == int(labels.sum()) and m["normal"] == int((~labels).sum())


def test_bad_input_names_the_problem() -> None:
    rng = np.random.default_rng(4)
    ref = unit_rows(rng, 5, 4)
    with pytest.raises(InputError, match=r"k=5: the reference has 5 items; k must be 1\.\.4"):
        knn_scores(ref[:1], ref, 5, ["0"], [str(i) for i in range(5)])
    with pytest.raises(InputError, match="dim 3, the reference 4"):
        knn_scores(unit_rows(rng, 2, 3), ref, 1)
    with pytest.raises(InputError, match="both anomalies and normal items"):
        auroc(np.arange(4.0), np.zeros(4, dtype=bool))
    with pytest.raises(InputError, match="NaN"):
        knn_scores(np.full((1, 4), np.nan), ref, 1)


def test_leave_one_out_auroc_scores_every_labelled_row_against_the_normal_ones() -> None:
    rng = np.random.default_rng(5)
    normal = unit_rows(rng, 30, 6) + np.float32(3.0)  # a tight cone
    odd = unit_rows(rng, 10, 6)
    x = np.concatenate([normal, odd, unit_rows(rng, 5, 6)])
    labels = np.array([0] * 15 + [2] * 15 + [1] * 10 + [-1] * 5)  # two normal classes
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = list(range(30))
    scores = brute_force(unit[:40], unit[ref], 3, [*range(30), *([None] * 10)])
    expected = roc_auc_score(labels[:40] == 1, scores)
    assert leave_one_out_auroc(x, labels, [0, 2], 3) == pytest.approx(expected)
    assert leave_one_out_auroc(x, labels, [0, 2], 3) > 0.9
    with pytest.raises(InputError, match="no item has a normal label"):
        leave_one_out_auroc(x, labels, [7], 3)
