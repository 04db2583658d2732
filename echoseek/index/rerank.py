"""Exact re-rank of approximate candidates with any distance of :mod:`echoseek.distances`.

IVF-PQ scores are computed on compressed codes; re-ranking the best ``R`` candidates of each
query with the exact distance on the stored (float16) vectors restores most of the lost recall
at the cost of ``R`` vector reads per query (Jégou et al., "Searching in one billion vectors:
re-rank with source coding", ICASSP 2011, refine candidates the same way). Distances are
dissimilarities; the returned score is higher-is-better everywhere, sorted: for the cosine
distance it is the cosine similarity itself, ``1 − distance`` (what an ``ip`` index scores
without re-rank), for every other distance ``−distance``
(:func:`score_from_distance`, and back: :func:`distance_from_score`).

Any name in :data:`echoseek.distances.NAMES` works, including the asymmetric SOART3 family
(``y`` = query, ``x`` = stored vector), through :func:`echoseek.distances.rowwise`. The two
distances of the index metrics are also computed directly in NumPy on the Q×R×d candidate
block, with the same formulas (tests check they agree with ``echoseek.distances``):

    cosine(y, x)      = 1 − y·x / (max(‖y‖, ε) max(‖x‖, ε)),  ε = 1e-12
    sqeuclidean(y, x) = ‖y − x‖²

so the serving hot path needs neither torch nor a second OpenMP runtime next to faiss's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from echoseek.index.merge import MISSING_ID, sort_results

# The exact distance that re-ranks an index's own metric ("rerank=True").
NATURAL_DISTANCE = {"ip": "cosine", "l2": "sqeuclidean"}
NORM_EPS = 1e-12


def rerank_candidates(
    queries: np.ndarray,
    candidates: np.ndarray,
    fetch: Callable[[np.ndarray], np.ndarray],
    name: str,
    k: int,
    **params: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score ``candidates`` (Q×R ids, −1 = none) exactly; return the best ``k`` (Q×k).

    ``fetch(ids)`` returns the stored vectors of a 1-D id array as an N×d float32 array.
    """
    r = candidates.shape[1]
    dist = exact_distances(queries, candidates, fetch, name, **params)
    take = min(k, r)
    if r > take:
        part = np.argpartition(dist, take - 1, axis=1)[:, :take]
    else:
        part = np.argsort(dist, axis=1)
    scores = score_from_distance(np.take_along_axis(dist, part, axis=1), name)
    ids = np.where(np.isfinite(scores), np.take_along_axis(candidates, part, axis=1), MISSING_ID)
    scores, ids = sort_results(scores, ids)
    if take < k:
        scores = np.pad(scores, ((0, 0), (0, k - take)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, k - take)), constant_values=MISSING_ID)
    return scores, ids


def exact_distances(
    queries: np.ndarray,
    candidates: np.ndarray,
    fetch: Callable[[np.ndarray], np.ndarray],
    name: str,
    **params: float,
) -> np.ndarray:
    """Q×R exact distances of ``candidates`` (Q×R ids) to their queries; +inf where none."""
    q_count, r = candidates.shape
    valid = candidates != MISSING_ID  # QxR
    dist = np.full((q_count, r), np.inf, dtype=np.float32)
    if valid.any():
        refs = np.zeros((q_count, r, queries.shape[1]), dtype=np.float32)  # QxRxd
        refs[valid] = fetch(candidates[valid])
        dist = np.where(valid, candidate_distances(queries, refs, name, **params), np.inf)
    return dist


def score_from_distance(distance: np.ndarray, name: str) -> np.ndarray:
    """Higher-is-better score of a distance: ``1 − d`` for cosine (the similarity), else
    ``−d``; float32, ``+inf`` (no candidate) becomes ``−inf``."""
    d = np.asarray(distance, dtype=np.float32)
    return (1.0 - d if name == "cosine" else -d).astype(np.float32)


def distance_from_score(score: np.ndarray | float, name: str) -> np.ndarray | float:
    """The distance a re-rank score came from (the inverse of :func:`score_from_distance`)."""
    return 1.0 - score if name == "cosine" else -score


def candidate_distances(
    queries: np.ndarray, refs: np.ndarray, name: str, **params: float
) -> np.ndarray:
    """``D(y=queries[q], x=refs[q, j])`` for a Q×d query block and Q×R×d candidates: Q×R."""
    if name == "cosine" and not params:
        qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), NORM_EPS)
        rn = np.maximum(np.linalg.norm(refs, axis=2), NORM_EPS)  # QxR
        return 1.0 - np.einsum("qrd,qd->qr", refs, qn) / rn
    if name == "sqeuclidean" and not params:
        diff = refs - queries[:, None, :]  # QxRxd
        return np.einsum("qrd,qrd->qr", diff, diff)
    q_count, r, d = refs.shape
    y = np.repeat(queries, r, axis=0)  # (Q·R)xd, row q·R + j is query q
    return pairwise_rows(y, refs.reshape(q_count * r, d), name, **params).reshape(q_count, r)


def pairwise_rows(y: np.ndarray, x: np.ndarray, name: str, **params: float) -> np.ndarray:
    """``D(y=y[i], x=x[i])`` for each row pair (N), via :func:`echoseek.distances.rowwise`.

    torch is imported here, not with the module: cosine and sqeuclidean re-rank in numpy, so
    a build task or a searcher that never re-ranks by another distance never loads it."""
    import torch

    from echoseek.distances import rowwise

    with torch.no_grad():
        a = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        b = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return rowwise(a, b, name, **params).numpy().astype(np.float32)
