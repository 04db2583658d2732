"""The query's ranking as the team reports it: the top-K table and positives within the top K.

For one query ranked against N labelled items, with ``rel[r] = 1`` when the item at rank r
(0-based) is a positive and base rate ``b = positives / labelled``:

    positives@K = sum_{r < K} rel[r]        ratio@K = positives@K / K        lift@K = ratio@K / b

Lift 1 is what a random ranking gives; the team reads lift@10, @20 and @50.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def rank(query: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, scores): item indices by descending cosine score ``vectors @ query`` (ties by
    index, as :mod:`echoseek.evaluation.ranking` ranks them) and every item's score."""
    scores = vectors @ query
    return np.argsort(-scores, kind="stable"), scores


def positives_within(
    relevant_ranked: np.ndarray, ks: Sequence[int], base_rate: float
) -> dict[str, dict[str, float]]:
    """``{"K": {"positives", "ratio", "lift"}}`` for each K no larger than the ranking."""
    if base_rate <= 0:
        raise ValueError("base_rate must be positive (the query's class has no items)")
    hits = np.cumsum(relevant_ranked.astype(np.int64))
    out: dict[str, dict[str, float]] = {}
    for k in ks:
        if 0 < k <= hits.size:
            ratio = float(hits[k - 1]) / k
            out[str(k)] = {"positives": int(hits[k - 1]), "ratio": ratio, "lift": ratio / base_rate}
    return out


def topk_rows(
    order: np.ndarray,
    scores: np.ndarray,
    items: Mapping[str, Sequence[Any]],
    k: int,
    label_names: Mapping[str, str],
) -> list[dict[str, Any]]:
    """The first ``k`` ranked items: rank (1-based), id, frame index, source, score, label
    (and its display name from ``label_names``)."""
    rows = []
    for r, i in enumerate(order[:k].tolist(), start=1):
        label = items["label"][i]
        rows.append(
            {
                "rank": r,
                "id": items["id"][i],
                "frame_index": items["frame_index"][i],
                "source": items["source"][i],
                "score": float(scores[i]),
                "label": label,
                "label_name": label_names.get(str(label), "" if label is None else str(label)),
            }
        )
    return rows
