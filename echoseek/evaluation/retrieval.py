"""Retrieval evaluation with the team's protocol, shared by ``evaluate`` and training jobs.

Given L2-normalised vectors of every corpus item, their labels and optionally the vector of an
external query image (the breath-hold reference, ``invivo.png``):

* **query**: AP, precision@K and positive-ratio lift@K of the query image against all items,
  where the relevant items are those labelled ``positive_label``;
* **leave-one-out**: every item labelled ``positive_label`` (or every labelled item when
  ``positive_label`` is None) queries the rest of the corpus with itself ignored; mAP and mean
  P@K / lift@K over those queries. Relevant = same label as the query.

Similarity is the inner product (cosine on normalised vectors); higher ranks first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from echoseek.distances import similarity_numpy
from echoseek.evaluation.ranking import (
    average_precision,
    leave_one_out_from_scores,
    leave_one_out_queries,
    lift_at_k,
    precision_at_k,
)


def query_metrics(
    query: np.ndarray, vectors: np.ndarray, relevant: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """AP, P@K and lift@K of one query vector (D,) against ``vectors`` (N, D)."""
    scores = (vectors @ query)[None, :]
    rel = relevant[None, :]
    out = {"ap": float(average_precision(scores, rel)[0])}
    for k in ks:
        out[f"p@{k}"] = float(precision_at_k(scores, rel, k)[0])
        out[f"lift@{k}"] = float(lift_at_k(scores, rel, k)[0])
    return out


def leave_one_out_metrics(
    vectors: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int],
    positive_label: int | None = 1,
    distance: str = "",
    distance_params: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """mAP, mean P@K and lift@K with each selected item as a query, itself ignored.

    Items are ranked by the inner product ``score = q·x`` (cosine for L2-normalised rows), or
    with ``distance`` (a name of :mod:`echoseek.distances`) by ``score = -d(q, x)``: an exact
    ranking of every item, as an exhaustive re-rank would give. ``labels`` uses -1 for
    unlabelled items: they are never relevant and never queries.
    """
    queries = leave_one_out_queries(labels, positive_label)
    scores = similarity_numpy(vectors[queries], vectors, distance, **(distance_params or {}))
    return leave_one_out_from_scores(scores, labels, queries, ks)


def label_summary(labels: np.ndarray, positive_label: int | None) -> dict[str, Any]:
    """Counts used in reports: items, labelled, positives and the positive ratio."""
    labelled = int((labels >= 0).sum())
    positives = int((labels == positive_label).sum()) if positive_label is not None else labelled
    return {
        "items": int(labels.size),
        "labelled": labelled,
        "positives": positives,
        "positive_ratio": positives / max(labelled, 1),
    }
