"""Recall of an index version against exact search, and the nprobe a build starts with.

The ground truth is an exact brute-force search (``faiss.IndexFlatIP``/``IndexFlatL2``) over
the stored float16 vectors, streamed ``EXACT_CHUNK`` vectors at a time, tombstones excluded.
``recall@k = |A_k ∩ G_k| / k`` averaged over queries, where ``A_k`` is the index's top-k and
``G_k`` the exact top-k (the "k-recall@k" of the ANN benchmarks).

:func:`calibrate_nprobe` is the build-time operating point: on a seeded sample of the stored
vectors it finds the smallest power-of-two ``nprobe`` whose recall@10, searching with the
version's default re-rank, reaches a target (0.9). The queries are stored vectors, so each
query's own id is removed from both its exact and its approximate neighbours before they are
compared: every query is scored as if it were a held-out point of the same distribution.
:mod:`echoseek.evaluation.ann` builds the full report (QPS, recall@1/10/100) on the same
functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from echoseek.errors import InputError
from echoseek.index.merge import MISSING_ID, merge_topk
from echoseek.index.train import normalize_rows

if TYPE_CHECKING:
    from echoseek.index.reader import IndexReader

EXACT_CHUNK = 1 << 16
CALIBRATION_TARGET = 0.9
CALIBRATION_QUERIES = 300
CALIBRATION_K = 10


def sample_ids(reader: IndexReader, n: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``min(n, live)`` live internal ids of the reader's version, sorted."""
    return sample_live_ids(reader.manifest, n, seed)


def sample_live_ids(manifest: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``min(n, live)`` live internal ids of a version, sorted.

    Positions are drawn among the ``ntotal`` stored rows (numpy's sampling without
    replacement holds only the draw when it is small against ``ntotal``) and mapped to ids
    through the shards' id ranges; tombstoned ids are drawn past. No list of every id is made.
    """
    shards = manifest["shards"]
    starts = np.array([s["id_start"] for s in shards], dtype=np.int64)
    counts = np.array([s["count"] for s in shards], dtype=np.int64)
    dead = np.asarray(manifest.get("tombstones", []), dtype=np.int64)
    total = int(counts.sum())
    want = min(n, total - len(dead))
    if want <= 0:
        raise InputError(f"index version {manifest['version']}: no live vectors to sample")
    rng = np.random.default_rng(seed)
    pos = rng.choice(total, size=min(total, want + len(dead)), replace=False)
    first_row = np.cumsum(counts) - counts
    shard = np.searchsorted(first_row, pos, side="right") - 1
    ids = starts[shard] + pos - first_row[shard]
    return np.sort(ids[~np.isin(ids, dead)][:want])


def exact_knn(reader: IndexReader, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` over every live stored vector: ``(scores, ids)``, higher is better.

    The stored vectors are the float16 re-rank copies; for a normalised index they are
    re-normalised in float32 first, so the truth is the exact cosine ranking, the same
    ranking the exact re-rank produces (float16 rounding leaves norms 1 ± 1e-3, enough to
    swap near-ties at rank k otherwise).
    """
    q = reader.prepare_queries(queries)
    metric = faiss.METRIC_INNER_PRODUCT if reader.metric == "ip" else faiss.METRIC_L2
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), k), MISSING_ID, dtype=np.int64)
    for ids in _id_chunks(reader):
        ids = np.setdiff1d(ids, reader.tombstones, assume_unique=True)
        if ids.size == 0:
            continue
        flat = faiss.IndexFlat(reader.dim, metric)
        stored = reader.fetch_vectors(ids)
        flat.add(normalize_rows(stored) if reader.manifest.get("normalize") else stored)
        d, local = flat.search(q, min(k, ids.size))
        scores = d if reader.metric == "ip" else -d
        found = np.where(local >= 0, ids[np.maximum(local, 0)], MISSING_ID)
        best_s, best_i = merge_topk([best_s, scores], [best_i, found], k)
    return best_s, best_i


def knn_recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of ``|found[:, :k] ∩ truth[:, :k]| / k`` (missing ids never match)."""
    hits = [
        np.intersect1d(f[:k][f[:k] != MISSING_ID], t[:k][t[:k] != MISSING_ID]).size
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits) / k)


def without_self(ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Row ``i`` of ``ids`` (Q×(k+1)) without the query's own id ``own[i]``, cut to k columns."""
    order = np.argsort(ids == own[:, None], axis=1, kind="stable")  # own id moves last
    return np.take_along_axis(ids, order, axis=1)[:, :k]


def default_nprobes(nlist: int, most: int = 256) -> list[int]:
    """Powers of two from 1 to ``min(nlist, most)`` (``[1]`` for Flat indexes)."""
    if nlist <= 1:
        return [1]
    out, p = [], 1
    while p <= min(nlist, most):
        out.append(p)
        p *= 2
    return out


def calibrate_nprobe(
    reader: IndexReader,
    *,
    target: float = CALIBRATION_TARGET,
    n_queries: int = CALIBRATION_QUERIES,
    k: int = CALIBRATION_K,
    seed: int = 0,
) -> dict[str, Any]:
    """The smallest swept nprobe whose recall@k with the version's default re-rank ≥ target.

    Queries are a seeded sample of ``n_queries`` stored vectors, each scored without its own
    id. The sweep stops at the first nprobe reaching ``target``; when none does, the largest
    swept nprobe (the best recall) is chosen and ``reached`` is false. Returns a JSON-ready
    record: ``nprobe``, ``recall@k``, ``reached``, ``target_recall``, ``rerank``,
    ``n_queries``, ``seconds`` and the swept ``rows`` (nprobe, recall).
    """
    start = time.perf_counter()
    own = sample_ids(reader, n_queries, seed)
    queries = reader.fetch_vectors(own)
    truth = without_self(exact_knn(reader, queries, k + 1)[1], own, k)
    return calibration_record(
        default_nprobes(reader.nlist),
        lambda _, nprobe: without_self(reader.search(queries, k + 1, nprobe=nprobe)[1], own, k),
        truth, k=k, target=target, rerank=reader.default_rerank, start=start,
    )  # fmt: skip


def calibration_record(
    nprobes: list[int],
    found_at: Callable[[int, int], np.ndarray],
    truth: np.ndarray,
    *,
    k: int,
    target: float,
    rerank: str | None,
    start: float,
) -> dict[str, Any]:
    """Sweep ``nprobes`` until recall@k of ``found_at(j, nprobe)`` (Q×k ids, own ids removed)
    against ``truth`` reaches ``target``; the JSON-ready record of :func:`calibrate_nprobe`."""
    rows: list[dict[str, Any]] = []
    for j, nprobe in enumerate(nprobes):
        rows.append({"nprobe": nprobe, f"recall@{k}": knn_recall(found_at(j, nprobe), truth, k)})
        if rows[-1][f"recall@{k}"] >= target:
            break
    best = rows[-1]
    return {
        "nprobe": best["nprobe"],
        f"recall@{k}": best[f"recall@{k}"],
        "reached": best[f"recall@{k}"] >= target,
        "target_recall": target,
        "rerank": rerank,
        "n_queries": len(truth),
        "queries": "seeded sample of stored vectors, own id excluded",
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }


def _id_chunks(reader: IndexReader) -> list[np.ndarray]:
    chunks = []
    for s in (reader.manifest["shards"][i] for i in reader.shard_numbers):
        for lo in range(0, s["count"], EXACT_CHUNK):
            hi = min(s["count"], lo + EXACT_CHUNK)
            chunks.append(s["id_start"] + np.arange(lo, hi, dtype=np.int64))
    return chunks
