"""Ranking and representation metrics (numpy; torch tensors are accepted).

The one home of the metrics: pure numpy (torch only to reduce a tensor on its own device),
importing nothing from echoseek but :mod:`echoseek.errors`, so training, evaluation, the
sweeps and the report all score with the same code. ``echoseek.metrics`` re-exports the
public names.

Ranking metrics take ``scores``, a (Q, N) array of SIMILARITIES (higher = more relevant; a 1-D
(N,) array is one query), ``relevant``, a bool array of the same shape, and ``ignore``, an
optional bool mask of the same shape. Ignored items are removed from the ranking before
scoring: they take no rank and are never relevant. That is how the "junk" images of Revisited
Oxford/Paris (Radenović et al. 2018) are handled, and how the query itself is excluded in
leave-one-out evaluation (``ignore=np.eye(n, dtype=bool)``).

Each row is ranked by a stable sort on descending score, so tied items keep their column order
(the first column ranks first). Per-query metrics return float64 arrays of shape (Q,) with NaN
for a query that has no relevant item (where the metric is undefined); averages skip those.
Sorting dominates the cost: :func:`ranking_metrics` computes all of them from one sort.

Representation metrics (:func:`rankme`, :func:`collapse_std`, :func:`knn_accuracy`) take
embeddings of shape (N, D).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch

from echoseek.errors import EchoseekError, InputError

# Rows of a (Q, N) problem ranked at once: bounds the temporaries (~40 bytes per element).
_CHUNK_ELEMENTS = 1 << 22


class _Ranking(NamedTuple):
    """One block of queries after ranking; every array is (q, N) in rank order."""

    relevant: np.ndarray  # bool: item at this rank is relevant (never true for ignored items)
    rank: np.ndarray  # int: 1-based rank among non-ignored items (ignored items repeat it)
    hits: np.ndarray  # int: relevant items at or above this rank
    num_relevant: np.ndarray  # (q,) relevant, non-ignored items per query
    num_ranked: np.ndarray  # (q,) non-ignored items per query


def average_precision(scores: Any, relevant: Any, ignore: Any = None) -> np.ndarray:
    """Average precision per query, shape (Q,); NaN for a query with no relevant item.

    AP = (1/R) Σ_{i: rel(i)} P(i), where R is the number of relevant items and P(i) the
    precision over the top i ranked items (the uninterpolated AP of TREC and of
    ``sklearn.metrics.average_precision_score`` when scores have no ties).
    """
    return _per_query(_average_precision, scores, relevant, ignore)


def mean_average_precision(scores: Any, relevant: Any, ignore: Any = None) -> float:
    """mAP: mean of :func:`average_precision` over queries with at least one relevant item."""
    ap = average_precision(scores, relevant, ignore)
    defined = ap[~np.isnan(ap)]
    if defined.size == 0:
        raise EchoseekError("relevant: no query has a relevant (non-ignored) item; mAP undefined")
    return float(defined.mean())


def precision_at_k(scores: Any, relevant: Any, k: int, ignore: Any = None) -> np.ndarray:
    """P@K per query, shape (Q,): the fraction of relevant items among the top K.

    P@K = |relevant ∩ top K| / min(K, N'), N' = number of non-ignored items, so K larger than
    the ranking measures the whole ranking instead of counting missing items as misses.
    Defined (possibly 0) for every query with at least one ranked item.
    """
    _check_k(k)
    return _per_query(partial(_precision_at_k, k=k), scores, relevant, ignore)


def recall_at_k(scores: Any, relevant: Any, k: int, ignore: Any = None) -> np.ndarray:
    """Recall@K per query, shape (Q,): |relevant ∩ top K| / |relevant|; NaN without relevant.

    This is the information-retrieval recall. The "Recall@K" of metric-learning papers
    (1 if any of the top K is relevant) is ``precision_at_k(..., k) > 0``.
    """
    _check_k(k)
    return _per_query(partial(_recall_at_k, k=k), scores, relevant, ignore)


def lift_at_k(scores: Any, relevant: Any, k: int, ignore: Any = None) -> np.ndarray:
    """Positive-ratio lift per query, shape (Q,): P@K divided by the base rate.

    lift@K = P@K / (R / N'), with R relevant among N' non-ignored items: how many times more
    relevant the top K is than a random draw (1 = no better than chance). NaN when R = 0.
    """
    _check_k(k)
    return _per_query(partial(_lift_at_k, k=k), scores, relevant, ignore)


def r_precision(scores: Any, relevant: Any, ignore: Any = None) -> np.ndarray:
    """R-precision per query, shape (Q,): P@R with R = number of relevant items; NaN if R = 0.

    Musgrave, Belongie & Lim, "A Metric Learning Reality Check", ECCV 2020, §3.2.
    """
    return _per_query(_r_precision, scores, relevant, ignore)


def map_at_r(scores: Any, relevant: Any, ignore: Any = None) -> np.ndarray:
    """MAP@R per query, shape (Q,); NaN if the query has no relevant item.

    MAP@R = (1/R) Σ_{i=1..R} P(i)·rel(i), with R the number of relevant items (Musgrave et al.
    2020, §3.2): average precision truncated at rank R, which rewards ranking every relevant
    item first.
    """
    return _per_query(_map_at_r, scores, relevant, ignore)


def ranking_metrics(
    scores: Any, relevant: Any, ignore: Any = None, ks: Sequence[int] = (1, 10)
) -> dict[str, np.ndarray]:
    """Every per-query ranking metric from a single sort of each row, as (Q,) arrays.

    Keys: ``ap``, ``r_precision``, ``map_at_r`` and, for each k in ``ks``, ``precision@k``,
    ``recall@k`` and ``lift@k``; values equal the single-metric functions above. Use it when
    reporting several metrics: sorting dominates the cost.
    """
    stats: dict[str, Callable[[_Ranking], np.ndarray]] = {
        "ap": _average_precision,
        "r_precision": _r_precision,
        "map_at_r": _map_at_r,
    }
    for k in ks:
        _check_k(k)
        stats[f"precision@{k}"] = partial(_precision_at_k, k=k)
        stats[f"recall@{k}"] = partial(_recall_at_k, k=k)
        stats[f"lift@{k}"] = partial(_lift_at_k, k=k)
    return _per_query_stats(stats, scores, relevant, ignore)


def ap_at_k(ranked_relevant: Any, num_relevant: int, k: int) -> float:
    """Truncated average precision AP@k of ONE ranked list of hits; 0.0 when R = 0.

        AP@k = (1 / min(k, R)) · Σ_{i ≤ k} P@i · rel_i,   P@i = (1 / i) · Σ_{j ≤ i} rel_j

    ``ranked_relevant`` holds rel_i (1 relevant, 0 not) of the hits in rank order (only the
    first k count); R = ``num_relevant`` counts the relevant items of the whole collection, so
    relevant items the list did not return lower the score. Unlike :func:`average_precision`,
    which ranks a full row of scores, this scores a search's top-k as returned (the
    re-ranking sweep); with k = R over a full ranking it equals :func:`map_at_r`.
    """
    _check_k(k)
    if num_relevant == 0:
        return 0.0
    rel = np.asarray(ranked_relevant, dtype=np.float64)[:k]
    precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((precision * rel).sum() / min(k, num_relevant))


def leave_one_out_queries(labels: Any, positive_label: int | None = 1) -> np.ndarray:
    """Indices of the items that query in leave-one-out retrieval: those labelled
    ``positive_label``, or every labelled item (label ≥ 0) when it is None.

    Raises InputError when no item qualifies.
    """
    y = np.asarray(labels)
    queries = (
        np.flatnonzero(y >= 0) if positive_label is None else np.flatnonzero(y == positive_label)
    )
    if queries.size == 0:
        raise InputError("no items to use as leave-one-out queries (no positive labels)")
    return queries


def leave_one_out_from_scores(
    scores: Any, labels: Any, queries: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """``map``, ``num_queries`` and mean ``p@k``, ``lift@k`` of a leave-one-out ranking.

    ``scores[i]`` (Q, N) ranks every item for query item ``queries[i]``; relevant = same label
    (−1, unlabelled, is never relevant to a labelled query); the query itself is ignored.
    ``map`` is :func:`mean_average_precision`; p@k and lift@k are means over the queries
    where they are defined.
    """
    y = np.asarray(labels)
    relevant = y[None, :] == y[queries][:, None]
    ignore = np.zeros_like(relevant)
    ignore[np.arange(queries.size), queries] = True
    out = {
        "map": float(mean_average_precision(scores, relevant, ignore)),
        "num_queries": float(queries.size),
    }
    for k in ks:
        out[f"p@{k}"] = float(np.nanmean(precision_at_k(scores, relevant, k, ignore)))
        out[f"lift@{k}"] = float(np.nanmean(lift_at_k(scores, relevant, k, ignore)))
    return out


def rankme(embeddings: Any, eps: float = 1e-7) -> float:
    """RankMe effective rank of an (N, D) embedding matrix, computed in float32.

    Garrido et al., "RankMe: Assessing the Downstream Performance of Pretrained Self-Supervised
    Representations by Their Rank", ICML 2023: with σ the singular values,
    p_k = σ_k / ‖σ‖₁ + ε and RankMe = exp(−Σ_k p_k log p_k). Ranges from ~1 (collapsed) to
    min(N, D). Torch tensors are reduced on their own device.
    """
    sv = _singular_values_float32(embeddings)
    p = sv / max(float(sv.sum()), float(np.finfo(np.float32).tiny)) + np.float32(eps)
    return float(np.exp(-(p * np.log(p)).sum()))


def collapse_std(embeddings: Any) -> float:
    """Mean over dimensions of the std of the L2-normalised embeddings.

    SimSiam (Chen & He, CVPR 2021, §4.1) watches std(z/‖z‖₂) per channel: ≈ 1/√D when the
    outputs spread over the unit sphere, ≈ 0 when they collapse to a constant. Population std
    (ddof = 0) over the N rows; needs N ≥ 2.
    """
    x = _matrix(embeddings, "embeddings").astype(np.float64)
    if x.shape[0] < 2:
        raise EchoseekError(f"embeddings: need at least 2 rows for a std, got {x.shape[0]}")
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(z.std(axis=0).mean())


def knn_accuracy(
    train_embeddings: Any,
    train_labels: Any,
    test_embeddings: Any,
    test_labels: Any,
    k: int = 200,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> float:
    """Weighted k-nearest-neighbour classification accuracy of test rows against train rows.

    Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR
    2018, §3.4: with cosine similarity s_i to the k most similar train rows, class c scores
    Σ_i exp(s_i/τ)·1[y_i = c]; the prediction is the top-scoring class (lowest index on a tie).
    k is capped at the number of train rows; a tie for the k-th place is broken arbitrarily.
    Labels are integers in [0, num_classes) (default: 1 + the largest label). Test rows are
    processed ``chunk_size`` at a time, so memory is O(chunk_size x N_train).
    """
    train = _matrix(train_embeddings, "train_embeddings")
    test = _matrix(test_embeddings, "test_embeddings")
    if train.shape[1] != test.shape[1]:
        raise EchoseekError(
            f"test_embeddings: dimension {test.shape[1]} differs from train_embeddings "
            f"dimension {train.shape[1]}"
        )
    y_train = _labels(train_labels, "train_labels", train.shape[0])
    y_test = _labels(test_labels, "test_labels", test.shape[0])
    _check_k(k)
    if temperature <= 0:
        raise EchoseekError(f"temperature: must be > 0, got {temperature}")
    if chunk_size < 1:
        raise EchoseekError(f"chunk_size: must be >= 1, got {chunk_size}")
    largest = int(max(y_train.max(), y_test.max()))
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise EchoseekError(f"num_classes: label {largest} is out of range [0, {num_classes})")
    dtype = np.result_type(train.dtype, test.dtype, np.float32)
    train_n = _unit_rows(train.astype(dtype, copy=False))
    test_n = _unit_rows(test.astype(dtype, copy=False))
    kk = min(k, train.shape[0])
    correct = 0
    for start in range(0, test.shape[0], chunk_size):
        block = test_n[start : start + chunk_size]
        pred = _knn_predict(block @ train_n.T, y_train, kk, temperature, num_classes)
        correct += int((pred == y_test[start : start + chunk_size]).sum())
    return correct / test.shape[0]


def _knn_predict(
    sims: np.ndarray, y_train: np.ndarray, k: int, temperature: float, num_classes: int
) -> np.ndarray:
    """Weighted vote of the k most similar train rows for each row of ``sims`` (q, N_train)."""
    q, n = sims.shape
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (q, 1))
    top_sims = np.take_along_axis(sims, top, axis=1)  # q x k
    # Subtracting the row maximum rescales every weight of a row by one factor: same vote,
    # no overflow for small temperatures.
    weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / temperature)
    cells = np.arange(q)[:, None] * num_classes + y_train[top]  # q x k: (row, class) cell
    votes = np.bincount(cells.ravel(), weights=weights.ravel(), minlength=q * num_classes)
    return votes.reshape(q, num_classes).argmax(axis=1)


def _average_precision(r: _Ranking) -> np.ndarray:
    return _safe_divide(_precision_at_hits(r, r.relevant).sum(axis=1), r.num_relevant)


def _precision_at_k(r: _Ranking, k: int) -> np.ndarray:
    depth = np.minimum(k, r.num_ranked)
    return _safe_divide(_hits_within(r, depth), depth)


def _recall_at_k(r: _Ranking, k: int) -> np.ndarray:
    return _safe_divide(_hits_within(r, np.full(r.rank.shape[0], k)), r.num_relevant)


def _lift_at_k(r: _Ranking, k: int) -> np.ndarray:
    base_rate = _safe_divide(r.num_relevant, r.num_ranked)
    return _safe_divide(_precision_at_k(r, k), base_rate)


def _r_precision(r: _Ranking) -> np.ndarray:
    return _safe_divide(_hits_within(r, r.num_relevant), r.num_relevant)


def _map_at_r(r: _Ranking) -> np.ndarray:
    within = r.relevant & (r.rank <= r.num_relevant[:, None])
    return _safe_divide(_precision_at_hits(r, within).sum(axis=1), r.num_relevant)


def _precision_at_hits(r: _Ranking, where: np.ndarray) -> np.ndarray:
    """P(i) = hits(i) / i at the ranks selected by ``where`` (relevant ranks), 0 elsewhere."""
    return np.divide(r.hits, r.rank, out=np.zeros(r.rank.shape), where=where)


def _hits_within(r: _Ranking, depth: np.ndarray) -> np.ndarray:
    """Relevant items ranked at or above ``depth`` (q,), per query."""
    return (r.relevant & (r.rank <= depth[:, None])).sum(axis=1)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64 with NaN where den is 0 or NaN."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    ok = den > 0
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=ok)


def _rank(scores: np.ndarray, relevant: np.ndarray, ignore: np.ndarray | None) -> _Ranking:
    """Descending sort of each row; ranks and hit counts skip ignored items."""
    order = _descending_order(scores)
    rel = np.take_along_axis(relevant, order, axis=1)
    if ignore is None:
        kept = np.ones(scores.shape, dtype=bool)
    else:
        kept = ~np.take_along_axis(ignore, order, axis=1)
        rel = rel & kept
    rank = np.cumsum(kept, axis=1, dtype=np.int32)
    hits = np.cumsum(rel, axis=1, dtype=np.int32)
    return _Ranking(rel, rank, hits, hits[:, -1], rank[:, -1])


def _descending_order(scores: np.ndarray) -> np.ndarray:
    """Per-row argsort on descending score, ties in column order (as a stable sort).

    The fast unstable sort is exact for rows without tied scores; only rows with ties are
    sorted again with the (about 3x slower) stable sort.
    """
    negated = -scores
    order = np.argsort(negated, axis=1)
    ranked = np.take_along_axis(negated, order, axis=1)
    tied = (ranked[:, 1:] == ranked[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(negated[tied], axis=1, kind="stable")
    return order


def _per_query(
    stat: Callable[[_Ranking], np.ndarray], scores: Any, relevant: Any, ignore: Any
) -> np.ndarray:
    """Apply ``stat`` to the ranked queries; returns (Q,) float64."""
    return _per_query_stats({"stat": stat}, scores, relevant, ignore)["stat"]


def _per_query_stats(
    stats: dict[str, Callable[[_Ranking], np.ndarray]], scores: Any, relevant: Any, ignore: Any
) -> dict[str, np.ndarray]:
    """Rank blocks of queries once and apply every stat to each block; (Q,) float64 each."""
    s, rel, ign = _prepare(scores, relevant, ignore)
    rows = max(1, _CHUNK_ELEMENTS // s.shape[1])
    parts: dict[str, list[np.ndarray]] = {name: [] for name in stats}
    for i in range(0, s.shape[0], rows):
        block = _rank(
            s[i : i + rows], rel[i : i + rows], None if ign is None else ign[i : i + rows]
        )
        for name, stat in stats.items():
            parts[name].append(stat(block))
    return {name: np.concatenate(p).astype(np.float64, copy=False) for name, p in parts.items()}


def _prepare(
    scores: Any, relevant: Any, ignore: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate; return (Q, N) float32/64 scores, bool relevant and optional bool ignore."""
    s = _to_numpy(scores)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.shape[1] == 0:
        raise EchoseekError(f"scores: expected shape (N,) or (Q, N) with N > 0, got {s.shape}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise EchoseekError(f"scores: expected real numbers, got dtype {s.dtype}")
    s = s.astype(np.result_type(s.dtype, np.float32) if s.dtype.kind == "f" else np.float64)
    if np.isnan(s).any():
        raise EchoseekError("scores: contains NaN")
    rel = _mask(relevant, "relevant", s.shape)
    ign = None if ignore is None else _mask(ignore, "ignore", s.shape)
    return s, rel, ign


def _mask(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    m = _to_numpy(value)
    if m.ndim == 1 and len(shape) == 2 and shape[0] == 1:
        m = m[None, :]
    if m.shape != shape:
        raise EchoseekError(f"{name}: shape {m.shape} does not match scores shape {shape}")
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise EchoseekError(f"{name}: expected a boolean mask, got values other than 0/1")
        m = m.astype(bool)
    return m


def _matrix(value: Any, name: str) -> np.ndarray:
    x = _to_numpy(value)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise EchoseekError(f"{name}: expected a non-empty (N, D) matrix, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise EchoseekError(f"{name}: expected real numbers, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise EchoseekError(f"{name}: contains NaN or infinite values")
    return x


def _labels(value: Any, name: str, n: int) -> np.ndarray:
    y = _to_numpy(value)
    if y.shape != (n,):
        raise EchoseekError(f"{name}: expected shape ({n},), got {y.shape}")
    integral = np.issubdtype(y.dtype, np.floating) and bool(np.all(y == np.round(y)))
    if not (np.issubdtype(y.dtype, np.integer) or integral):
        raise EchoseekError(f"{name}: expected integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if (y < 0).any():
        raise EchoseekError(f"{name}: labels must be >= 0, got {int(y.min())}")
    return y


def _singular_values_float32(embeddings: Any) -> np.ndarray:
    """Singular values of an (N, D) matrix in float32; torch tensors stay on their device."""
    if not _is_torch(embeddings):
        x = _matrix(embeddings, "embeddings").astype(np.float32, copy=False)
        return np.linalg.svd(x, compute_uv=False)
    x = embeddings.detach().float()
    if x.ndim != 2 or min(x.shape) == 0 or not bool(torch.isfinite(x).all()):
        raise EchoseekError(
            f"embeddings: expected a non-empty finite (N, D) matrix, got shape {tuple(x.shape)}"
        )
    return torch.linalg.svdvals(x).cpu().numpy()


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(x.dtype).tiny)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise EchoseekError(f"k: must be a positive integer, got {k!r}")


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _to_numpy(value: Any) -> np.ndarray:
    """np.asarray, detaching and copying torch tensors to the CPU first."""
    if _is_torch(value):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
