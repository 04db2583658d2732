"""Anomaly scores against the served index version, whose items are the normal ones.

A query's score is the mean cosine distance to its ``k`` nearest stored items (the score of
:mod:`echoseek.evaluation.anomaly`): the index's candidates re-ranked by exact cosine on the
stored vectors, the query's own item left out when it is a stored one. Its percentile is its
place among the leave-one-out scores of a seeded sample of the version's live items, computed
on the first request for a (version, k) and kept until a swap.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np

from echoseek.evaluation.anomaly import percentiles
from echoseek.service.images import QueryError
from echoseek.service.versions import Served

if TYPE_CHECKING:
    from echoseek.service.backend import Backend

SAMPLE = 256  # normal items whose leave-one-out scores rank a score's percentile
RERANK = "cosine"


async def knn_scores(
    backend: Backend, vectors: np.ndarray, k: int, own_ids: list[int | None]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Mean cosine distance of each query to its ``k`` nearest stored items (never its own
    item), and the search answer they came from."""
    found = await backend.search(vectors, k + 1, rerank=RERANK)
    scores = []
    for hits, own in zip(found["results"], own_ids, strict=True):
        distances = [h["distance"] for h in hits if h["id"] != own][:k]
        if len(distances) < k:
            raise QueryError(
                f"k: index version {found['index_version']} has fewer than {k} other items"
            )
        scores.append(float(np.mean(distances)))
    return np.asarray(scores), found


def sample_live_ids(served: Served, n: int, seed: int = 0) -> list[int]:
    """A seeded sample of at most ``n`` live internal ids of ``served``."""
    ranges = [
        np.arange(s["id_start"], s["id_start"] + s["count"]) for s in served.manifest["shards"]
    ]
    live = np.setdiff1d(np.concatenate(ranges), np.fromiter(served.tombstones, dtype=np.int64))
    if len(live) > n:
        live = np.sort(np.random.default_rng(seed).choice(live, n, replace=False))
    return [int(i) for i in live]


class NormalScores:
    """Leave-one-out scores of a sample of the served version's items, per (version, k)."""

    def __init__(self, sample: int = SAMPLE) -> None:
        self.sample = sample
        self._sorted: dict[tuple[str, int], np.ndarray] = {}
        self._lock = asyncio.Lock()

    async def get(self, backend: Backend, k: int) -> np.ndarray:
        """The normal scores for ``k`` on the version served now (computed once)."""
        served = backend.served
        key = (served.version, k)
        async with self._lock:
            if key not in self._sorted:
                ids = sample_live_ids(served, self.sample)
                vectors = await backend.stored_vectors(ids)
                scores, _ = await knn_scores(backend, vectors, k, list(ids))
                kept = {kk: v for kk, v in self._sorted.items() if kk[0] == served.version}
                self._sorted = {**kept, key: np.sort(scores)}
            return self._sorted[key]


async def anomaly_answer(
    backend: Backend,
    normals: NormalScores,
    vector: np.ndarray,
    k: int,
    own_id: int | None,
    model: str | None,
) -> dict[str, Any]:
    """The ``/v1/anomaly`` document: score, percentile, the neighbours it was measured on."""
    scores, found = await knn_scores(backend, vector.reshape(1, -1), k, [own_id])
    normal = await normals.get(backend, k)
    neighbours = [h for h in found["results"][0] if h["id"] != own_id][:k]
    return {
        "score": float(scores[0]),
        "percentile": float(percentiles(scores, normal)[0]),
        "k": k,
        "normal_sample": int(normal.size),
        "neighbours": neighbours,
        "index_version": found["index_version"],
        "model": model if model is not None else found["model"],
    }
