"""Anomaly scores on embeddings, and how well they separate anomalies from normal items.

The score of an item is the mean cosine distance to its ``k`` nearest neighbours among the
reference embeddings (the normal items), the kNN detector the team's reading note favours for
joint-embedding SSL features (Otero, Mateus and Balestriero, "Self-Supervised Anomaly
Detection in the Wild: Favor Joint Embeddings Methods", arXiv 2410.04289, 2024)::

    s(x) = 1/k · Σ_{j=1..k} (1 − cos(z_x, z_(j)))

with ``z_(j)`` the reference embedding ``j``-th most similar to ``z_x``; an item that is also
in the reference (same id) never counts itself. Higher is more anomalous; ``s ∈ [0, 2]``.

A score's **percentile** is its place among the reference's own leave-one-out scores,
``100 · |{r : s_r ≤ s}| / N``: 50 is a typical normal item, 100 beyond every normal one.

Detection metrics, anomalies as positives (as scikit-learn's ``roc_auc_score``,
``average_precision_score`` and ``roc_curve``, against which the tests check them):

* AUROC ``= P(s_anomaly > s_normal) + ½ P(s_anomaly = s_normal)`` (Mann–Whitney U / n_a n_n);
* AP ``= Σ_t (R_t − R_{t−1}) P_t`` over the distinct score thresholds, highest first;
* FPR at 95 % TPR: the false-positive rate at the highest threshold that finds ≥ 95 % of the
  anomalies.

Everything here is numpy on L2-normalised float32 rows; the reference is held in memory and
the queries are scored in chunks, so memory is the reference plus one chunk × N block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from echoseek.errors import InputError

BLOCK_FLOATS = 1 << 24  # similarities held at once: chunk rows × reference rows (64 MiB)
TPR_TARGET = 0.95


def knn_scores(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    query_ids: Sequence[str] | None = None,
    reference_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """(M,) mean cosine distance of each query row to its ``k`` nearest reference rows.

    Rows must be L2-normalised. With ids, a reference row with a query's own id is skipped
    (leave-one-out when the query is in the reference).
    """
    q, ref = _rows(queries, "queries"), _rows(reference, "reference")
    if q.shape[1] != ref.shape[1]:
        raise InputError(f"queries have dim {q.shape[1]}, the reference {ref.shape[1]}")
    self_col = _self_columns(query_ids, reference_ids, len(q), len(ref))
    available = len(ref) - int(self_col.max(initial=-1) >= 0)
    if not 1 <= k <= available:
        raise InputError(f"k={k}: the reference has {len(ref)} items; k must be 1..{available}")
    out = np.empty(len(q), dtype=np.float64)
    step = max(1, BLOCK_FLOATS // len(ref))
    for lo in range(0, len(q), step):
        sims = q[lo : lo + step] @ ref.T  # chunk × N cosine similarities
        rows = np.flatnonzero(self_col[lo : lo + step] >= 0)
        sims[rows, self_col[lo : lo + step][rows]] = -np.inf  # never itself
        top = -np.partition(-sims, k - 1, axis=1)[:, :k]  # the k largest, any order
        out[lo : lo + step] = (1.0 - top.astype(np.float64)).mean(axis=1)
    return out


def leave_one_out_scores(
    reference: np.ndarray, k: int, sample: int = 10_000, seed: int = 0
) -> np.ndarray:
    """Scores of (a seeded sample of at most ``sample``) reference rows against the others:
    the normal distribution :func:`percentiles` compares with."""
    ref = _rows(reference, "reference")
    chosen = np.arange(len(ref))
    if len(ref) > sample:
        chosen = np.sort(np.random.default_rng(seed).choice(len(ref), sample, replace=False))
    ids = [str(i) for i in range(len(ref))]
    return knn_scores(ref[chosen], ref, k, [ids[i] for i in chosen], ids)


def percentiles(scores: np.ndarray, normal_scores: np.ndarray) -> np.ndarray:
    """``100 · |{r : s_r ≤ s}| / N`` for each score among the normal scores ``s_r``."""
    normal = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if normal.size == 0:
        raise InputError("percentiles: no reference scores to compare with")
    at_or_below = np.searchsorted(normal, np.asarray(scores, dtype=np.float64), side="right")
    return 100.0 * at_or_below / normal.size


def auroc(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the ROC curve, anomalies as positives; ties count half (average ranks)."""
    s, pos = _scored(scores, anomalous)
    ranks = _average_ranks(s)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """``Σ_t (R_t − R_{t−1}) P_t`` over distinct thresholds, highest first (tied scores enter
    together), anomalies as positives."""
    tps, fps = _cumulative_counts(*_scored(scores, anomalous))
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def fpr_at_tpr(scores: np.ndarray, anomalous: np.ndarray, tpr: float = TPR_TARGET) -> float:
    """False-positive rate at the highest threshold whose true-positive rate is ≥ ``tpr``."""
    tps, fps = _cumulative_counts(*_scored(scores, anomalous))
    first = int(np.argmax(tps / tps[-1] >= tpr - 1e-12))
    n_neg = fps[-1]
    return float(fps[first] / n_neg)


def detection_metrics(scores: np.ndarray, anomalous: np.ndarray) -> dict[str, float]:
    """``auroc``, ``ap`` and ``fpr_at_95_tpr`` with the counts they were measured on."""
    _, pos = _scored(scores, anomalous)
    return {
        "auroc": auroc(scores, anomalous),
        "ap": average_precision(scores, anomalous),
        "fpr_at_95_tpr": fpr_at_tpr(scores, anomalous),
        "anomalies": int(pos.sum()),
        "normal": int((~pos).sum()),
    }


def leave_one_out_auroc(
    embeddings: np.ndarray, labels: np.ndarray, normal_labels: Sequence[int], k: int
) -> float:
    """AUROC of the score of every labelled row (label ≥ 0) against the normal rows (label in
    ``normal_labels``, never itself), anomalies the others: the held-out anomaly quality an
    embedding gives, as a sweep's ``val_auroc``. Rows are L2-normalised first."""
    x = _rows(embeddings, "embeddings")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = np.asarray(labels).reshape(-1)
    known = y >= 0
    normal = known & np.isin(y, list(normal_labels))
    rows, ref = np.flatnonzero(known), np.flatnonzero(normal)
    if ref.size == 0:
        raise InputError(f"no item has a normal label ({list(normal_labels)})")
    scores = knn_scores(x[rows], x[ref], k, rows.astype(str).tolist(), ref.astype(str).tolist())
    return auroc(scores, ~normal[rows])


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{name}: expected a non-empty (N, D) matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name}: holds NaN or infinite values")
    return a


def _self_columns(
    query_ids: Sequence[str] | None, reference_ids: Sequence[str] | None, m: int, n: int
) -> np.ndarray:
    """For each query, the reference column with its own id (-1 when none)."""
    out = np.full(m, -1, dtype=np.int64)
    if query_ids is None or reference_ids is None:
        return out
    if len(query_ids) != m or len(reference_ids) != n:
        raise InputError("ids: one per query row and one per reference row are needed")
    column = {str(r): j for j, r in enumerate(reference_ids)}
    for i, q in enumerate(query_ids):
        out[i] = column.get(str(q), -1)
    return out


def _scored(scores: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(anomalous, dtype=bool).reshape(-1)
    if s.shape != pos.shape:
        raise InputError(f"scores ({s.size}) and anomaly flags ({pos.size}) differ in length")
    if not np.isfinite(s).all():
        raise InputError("scores: hold NaN or infinite values")
    if pos.all() or not pos.any():
        raise InputError("detection metrics need both anomalies and normal items")
    return s, pos


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, ascending, tied values sharing their mean rank."""
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _cumulative_counts(s: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct threshold, highest score first."""
    order = np.argsort(-s, kind="stable")
    s_desc, pos_desc = s[order], pos[order]
    last_of_tie = np.r_[s_desc[1:] != s_desc[:-1], True]
    tps = np.cumsum(pos_desc)[last_of_tie].astype(np.float64)
    fps = np.cumsum(~pos_desc)[last_of_tie].astype(np.float64)
    return tps, fps
