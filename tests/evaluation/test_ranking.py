"""Reference tests for evaluation.ranking: sklearn and naive float64 loops as the oracles."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from echoseek.errors import EchoseekError
from echoseek.evaluation import ranking
from echoseek.evaluation.ranking import ap_at_k

# ---------------------------------------------------------------- naive references (one query)


def naive_ranking(scores: np.ndarray, relevant: np.ndarray, ignore: np.ndarray) -> list[bool]:
    """Relevance of the non-ignored items in rank order (descending score, ties by column)."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return [bool(relevant[j]) for j in order if not ignore[j]]


def naive_precision_at(ranked: list[bool], i: int) -> float:
    return sum(ranked[:i]) / i


def naive_ap(ranked: list[bool]) -> float:
    hits = [naive_precision_at(ranked, i + 1) for i, rel in enumerate(ranked) if rel]
    return sum(hits) / len(hits) if hits else float("nan")


def naive_p_at_k(ranked: list[bool], k: int) -> float:
    return sum(ranked[:k]) / min(k, len(ranked))


def naive_recall_at_k(ranked: list[bool], k: int) -> float:
    return sum(ranked[:k]) / sum(ranked) if any(ranked) else float("nan")


def naive_lift_at_k(ranked: list[bool], k: int) -> float:
    if not any(ranked):
        return float("nan")
    return naive_p_at_k(ranked, k) / (sum(ranked) / len(ranked))


def naive_r_precision(ranked: list[bool]) -> float:
    r = sum(ranked)
    return sum(ranked[:r]) / r if r else float("nan")


def naive_map_at_r(ranked: list[bool]) -> float:
    r = sum(ranked)
    if r == 0:
        return float("nan")
    return sum(naive_precision_at(ranked, i + 1) for i in range(r) if ranked[i]) / r


def rows_of(
    reference: Callable[..., float],
    scores: np.ndarray,
    relevant: np.ndarray,
    ignore: np.ndarray,
    **kw: int,
) -> np.ndarray:
    """Apply a one-query reference to every row."""
    rows = zip(scores, relevant, ignore, strict=True)
    return np.array([reference(naive_ranking(s, r, g), **kw) for s, r, g in rows])


# ---------------------------------------------------------------- data


def random_problem(
    q: int, n: int, seed: int, rate: float = 0.3, ignore_rate: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((q, n))  # continuous: no ties
    relevant = rng.random((q, n)) < rate
    ignore = rng.random((q, n)) < ignore_rate
    return scores, relevant, ignore


# ---------------------------------------------------------------- average precision


@pytest.mark.parametrize(("q", "n", "seed"), [(1, 5, 0), (7, 40, 1), (20, 200, 2), (3, 1000, 3)])
def test_average_precision_matches_sklearn(q: int, n: int, seed: int) -> None:
    scores, relevant, _ = random_problem(q, n, seed)
    relevant[:, 0] = True  # sklearn needs one positive per row
    ap = ranking.average_precision(scores, relevant)
    expected = [average_precision_score(r, s) for s, r in zip(scores, relevant, strict=True)]
    assert ap.shape == (q,)
    np.testing.assert_allclose(ap, expected, rtol=1e-12)
    assert ranking.mean_average_precision(scores, relevant) == pytest.approx(np.mean(expected))


def test_map_skips_queries_without_relevant_items() -> None:
    scores, relevant, _ = random_problem(6, 30, seed=4)
    relevant[:, 0] = True
    relevant[2] = False
    ap = ranking.average_precision(scores, relevant)
    assert np.isnan(ap[2]) and not np.isnan(np.delete(ap, 2)).any()
    expected = np.mean([average_precision_score(relevant[i], scores[i]) for i in (0, 1, 3, 4, 5)])
    assert ranking.mean_average_precision(scores, relevant) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_ignored_items_are_as_if_deleted(seed: int) -> None:
    scores, relevant, ignore = random_problem(8, 60, seed, rate=0.25, ignore_rate=0.3)
    ap = ranking.average_precision(scores, relevant, ignore)
    for i in range(len(scores)):
        keep = ~ignore[i]
        if relevant[i][keep].any():
            expected = average_precision_score(relevant[i][keep], scores[i][keep])
            assert ap[i] == pytest.approx(expected, rel=1e-12)
        else:
            assert np.isnan(ap[i])


def test_ignore_excludes_self_match_in_leave_one_out() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((30, 8))
    labels = rng.integers(0, 3, 30)
    sims = x @ x.T  # the diagonal is each row's own match
    same = labels[:, None] == labels[None, :]
    eye = np.eye(30, dtype=bool)
    ap = ranking.average_precision(sims, same, ignore=eye)
    off = ~eye
    assert (same & off).any(axis=1).all()
    expected = [average_precision_score(same[i][off[i]], sims[i][off[i]]) for i in range(30)]
    np.testing.assert_allclose(ap, expected, rtol=1e-12)


def test_ties_keep_column_order() -> None:
    scores = np.zeros((2, 4))
    relevant = np.array([[True, False, False, False], [False, False, False, True]])
    ap = ranking.average_precision(scores, relevant)
    np.testing.assert_allclose(ap, [1.0, 0.25])  # rank 1 and rank 4 of 4


def test_tied_rows_and_tie_free_rows_mix() -> None:
    rng = np.random.default_rng(13)
    scores = rng.standard_normal((10, 40))
    scores[::2] = rng.integers(0, 4, (5, 40))  # even rows: many ties
    relevant = rng.random((10, 40)) < 0.3
    ignore = rng.random((10, 40)) < 0.1
    np.testing.assert_allclose(
        ranking.average_precision(scores, relevant, ignore),
        rows_of(naive_ap, scores, relevant, ignore),
        rtol=1e-12,
    )


def test_float32_scores_match_sklearn() -> None:
    scores, relevant, _ = random_problem(6, 300, seed=14)
    scores = scores.astype(np.float32)
    relevant[:, 0] = True
    expected = [average_precision_score(r, s) for s, r in zip(scores, relevant, strict=True)]
    np.testing.assert_allclose(ranking.average_precision(scores, relevant), expected, rtol=1e-12)


def test_ranking_metrics_equal_the_single_metric_functions() -> None:
    scores, relevant, ignore = random_problem(11, 90, seed=15, rate=0.2, ignore_rate=0.1)
    relevant[4] = False
    report = ranking.ranking_metrics(scores, relevant, ignore, ks=(1, 7))
    singles = {
        "ap": ranking.average_precision(scores, relevant, ignore),
        "r_precision": ranking.r_precision(scores, relevant, ignore),
        "map_at_r": ranking.map_at_r(scores, relevant, ignore),
    }
    for k in (1, 7):
        singles[f"precision@{k}"] = ranking.precision_at_k(scores, relevant, k, ignore)
        singles[f"recall@{k}"] = ranking.recall_at_k(scores, relevant, k, ignore)
        singles[f"lift@{k}"] = ranking.lift_at_k(scores, relevant, k, ignore)
    assert report.keys() == singles.keys()
    for name, values in singles.items():
        np.testing.assert_array_equal(report[name], values, err_msg=name)


def test_one_dimensional_scores_are_one_query_and_torch_is_accepted() -> None:
    scores, relevant, _ = random_problem(1, 50, seed=9)
    relevant[0, 0] = True
    ap_np = ranking.average_precision(scores[0], relevant[0])
    ap_torch = ranking.average_precision(torch.from_numpy(scores[0]), torch.from_numpy(relevant[0]))
    assert ap_np.shape == (1,)
    np.testing.assert_allclose(ap_np, ap_torch)
    assert ap_np[0] == pytest.approx(average_precision_score(relevant[0], scores[0]))


def test_chunked_ranking_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    scores, relevant, ignore = random_problem(13, 50, seed=10, ignore_rate=0.2)
    whole = ranking.average_precision(scores, relevant, ignore)
    monkeypatch.setattr(ranking, "_CHUNK_ELEMENTS", 120)  # 2 rows per block
    np.testing.assert_array_equal(ranking.average_precision(scores, relevant, ignore), whole)


# ---------------------------------------------------------------- cut-off metrics


@pytest.mark.parametrize("k", [1, 5, 17, 500])
@pytest.mark.parametrize("ignore_rate", [0.0, 0.25])
def test_cutoff_metrics_match_naive_loops(k: int, ignore_rate: float) -> None:
    scores, relevant, ignore = random_problem(12, 80, seed=k, rate=0.2, ignore_rate=ignore_rate)
    relevant[3] = False  # one query without relevant items
    args = (scores, relevant)
    cases = [
        (ranking.precision_at_k(*args, k, ignore), naive_p_at_k),
        (ranking.recall_at_k(*args, k, ignore), naive_recall_at_k),
        (ranking.lift_at_k(*args, k, ignore), naive_lift_at_k),
    ]
    for got, reference in cases:
        np.testing.assert_allclose(got, rows_of(reference, *args, ignore, k=k), rtol=1e-12)


@pytest.mark.parametrize("ignore_rate", [0.0, 0.25])
def test_r_precision_and_map_at_r_match_naive_loops(ignore_rate: float) -> None:
    scores, relevant, ignore = random_problem(15, 70, seed=11, rate=0.2, ignore_rate=ignore_rate)
    relevant[0] = False
    np.testing.assert_allclose(
        ranking.r_precision(scores, relevant, ignore),
        rows_of(naive_r_precision, scores, relevant, ignore),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        ranking.map_at_r(scores, relevant, ignore),
        rows_of(naive_map_at_r, scores, relevant, ignore),
        rtol=1e-12,
    )


def test_lift_is_precision_over_base_rate() -> None:
    scores, relevant, _ = random_problem(9, 100, seed=12, rate=0.2)
    relevant[:, 0] = True
    base_rate = relevant.mean(axis=1)
    np.testing.assert_allclose(
        ranking.lift_at_k(scores, relevant, 10),
        ranking.precision_at_k(scores, relevant, 10) / base_rate,
    )


def test_perfect_ranking_scores_one() -> None:
    relevant = np.array([[True, True, False, False, True, False]])
    scores = relevant.astype(float)
    assert ranking.average_precision(scores, relevant)[0] == 1.0
    assert ranking.map_at_r(scores, relevant)[0] == 1.0
    assert ranking.r_precision(scores, relevant)[0] == 1.0
    assert ranking.lift_at_k(scores, relevant, 3)[0] == pytest.approx(2.0)  # 1 / (3/6)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_is_rejected(k: object) -> None:
    scores, relevant, _ = random_problem(2, 10, seed=0)
    with pytest.raises(EchoseekError, match="k: must be a positive integer"):
        ranking.precision_at_k(scores, relevant, k)  # type: ignore[arg-type]


def test_bad_shapes_and_values_are_rejected() -> None:
    scores, relevant, _ = random_problem(2, 10, seed=0)
    with pytest.raises(EchoseekError, match="relevant: shape"):
        ranking.average_precision(scores, relevant[:, :5])
    with pytest.raises(EchoseekError, match="ignore: shape"):
        ranking.average_precision(scores, relevant, ignore=np.zeros((3, 10), bool))
    with pytest.raises(EchoseekError, match="scores: contains NaN"):
        ranking.average_precision(np.full((2, 10), np.nan), relevant)
    with pytest.raises(EchoseekError, match="scores: expected shape"):
        ranking.average_precision(np.zeros((2, 2, 2)), np.zeros((2, 2, 2), bool))
    with pytest.raises(EchoseekError, match="relevant: expected a boolean mask"):
        ranking.average_precision(scores, np.full((2, 10), 3))
    with pytest.raises(EchoseekError, match="relevant: no query has a relevant"):
        ranking.mean_average_precision(scores, np.zeros((2, 10), bool))


# ---------------------------------------------------------------- AP@k of a returned top-k


def naive_ap_at_k(hits: list[bool], num_relevant: int, k: int) -> float:
    """(1 / min(k, R)) Σ_{i ≤ k} P@i rel_i, one rank at a time in float64."""
    if num_relevant == 0:
        return 0.0
    total = 0.0
    for i in range(min(k, len(hits))):
        if hits[i]:
            total += sum(hits[: i + 1]) / (i + 1)
    return total / min(k, num_relevant)


def test_ap_at_k_by_hand() -> None:
    # hits: relevant, not, relevant, not; 3 relevant in the index; k = 4
    # AP@4 = (1/min(4, 3)) * (P@1 * 1 + P@3 * 1) = (1 + 2/3) / 3
    assert ap_at_k(np.array([1.0, 0, 1, 0]), 3, 4) == pytest.approx((1 + 2 / 3) / 3)
    assert ap_at_k(np.array([1.0, 1]), 10, 2) == pytest.approx(1.0)  # min(k, R) = 2
    assert ap_at_k(np.array([0.0, 0]), 0, 2) == 0.0


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_ap_at_k_matches_a_naive_loop(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(50):
        hits = list(rng.random(int(rng.integers(1, 30))) < 0.4)
        num_relevant = sum(hits[:k]) + int(rng.integers(0, 5))  # some relevant never returned
        got = ranking.ap_at_k(np.array(hits, dtype=np.float64), num_relevant, k)
        assert got == pytest.approx(naive_ap_at_k(hits, num_relevant, k), abs=1e-12)


def test_ap_at_k_at_r_over_a_full_ranking_is_map_at_r() -> None:
    rng = np.random.default_rng(3)
    scores, relevant = rng.normal(size=(20, 60)), rng.random((20, 60)) < 0.2
    relevant[:, 0] = True  # every query has R >= 1
    expected = ranking.map_at_r(scores, relevant)
    for q in range(20):
        hits = relevant[q][np.argsort(-scores[q], kind="stable")]
        r = int(relevant[q].sum())
        assert ranking.ap_at_k(hits, r, r) == pytest.approx(expected[q], abs=1e-12)


# ---------------------------------------------------------------- representation metrics


def reference_rankme(x: np.ndarray, eps: float = 1e-7) -> float:
    sv = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    p = sv / np.abs(sv).sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


@pytest.mark.parametrize(("n", "d", "seed"), [(50, 8, 0), (200, 32, 1), (16, 64, 2)])
def test_rankme_matches_float64_formula(n: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.random(d) ** 3  # anisotropic spectrum
    expected = reference_rankme(x)
    assert ranking.rankme(x) == pytest.approx(expected, rel=1e-4)
    assert ranking.rankme(torch.from_numpy(x)) == pytest.approx(expected, rel=1e-4)


def test_rankme_bounds() -> None:
    rng = np.random.default_rng(3)
    rank_one = np.outer(rng.standard_normal(100), rng.standard_normal(16))
    assert ranking.rankme(rank_one) == pytest.approx(1.0, abs=1e-2)
    assert ranking.rankme(np.eye(16)) == pytest.approx(16.0, rel=1e-4)


def test_collapse_std_healthy_and_collapsed() -> None:
    rng = np.random.default_rng(4)
    d = 64
    healthy = rng.standard_normal((4000, d))
    assert ranking.collapse_std(healthy) == pytest.approx(1 / np.sqrt(d), rel=0.1)
    collapsed = np.ones((4000, d)) + 1e-6 * rng.standard_normal((4000, d))
    assert ranking.collapse_std(collapsed) < 1e-5
    with pytest.raises(EchoseekError, match="embeddings: need at least 2 rows"):
        ranking.collapse_std(healthy[:1])


def naive_knn(
    train: np.ndarray, y_train: np.ndarray, test: np.ndarray, k: int, tau: float, classes: int
) -> list[int]:
    preds = []
    for x in test:
        sims = [float(x @ t / (np.linalg.norm(x) * np.linalg.norm(t))) for t in train]
        votes = [0.0] * classes
        for j in sorted(range(len(train)), key=lambda j: -sims[j])[:k]:
            votes[y_train[j]] += float(np.exp(sims[j] / tau))
        preds.append(int(np.argmax(votes)))
    return preds


@pytest.mark.parametrize(
    ("k", "tau", "chunk"), [(1, 0.07, 1024), (5, 0.07, 3), (10, 1.0, 4), (99, 0.5, 7)]
)
def test_knn_accuracy_matches_naive_loop(k: int, tau: float, chunk: int) -> None:
    rng = np.random.default_rng(k)
    centers = rng.standard_normal((3, 6)) * 1.5
    y_train = rng.integers(0, 3, 40)
    y_test = rng.integers(0, 3, 25)
    train = centers[y_train] + rng.standard_normal((40, 6))
    test = centers[y_test] + rng.standard_normal((25, 6))
    preds = naive_knn(train, y_train, test, k, tau, 3)
    expected = float(np.mean(np.array(preds) == y_test))
    got = ranking.knn_accuracy(train, y_train, test, y_test, k=k, temperature=tau, chunk_size=chunk)
    assert got == pytest.approx(expected)
    assert 0.0 < got <= 1.0


def test_knn_accuracy_validates_inputs() -> None:
    x = np.ones((4, 3))
    y = np.array([0, 1, 0, 1])
    with pytest.raises(EchoseekError, match="num_classes: label 1"):
        ranking.knn_accuracy(x, y, x, y, num_classes=1)
    with pytest.raises(EchoseekError, match="test_embeddings: dimension"):
        ranking.knn_accuracy(x, y, np.ones((4, 2)), y)
    with pytest.raises(EchoseekError, match="train_labels: expected shape"):
        ranking.knn_accuracy(x, y[:3], x, y)
    with pytest.raises(EchoseekError, match="temperature"):
        ranking.knn_accuracy(x, y, x, y, temperature=0.0)
