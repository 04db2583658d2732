"""Merging per-shard top-k lists into one global top-k.

Each shard returns its own best ``k`` (scores higher-is-better, id −1 for "no result"). The
global top-k of the union is the top-k of the concatenated candidates, because every global
top-k item is in its own shard's top-k. The ``S·k`` candidates of a query are sorted by
(score descending, id ascending) and cut at ``k``, so ties (frequent between PQ codes) are
broken the same way whatever the number of shards; ``S·k`` is small (hundreds), so the full
sort costs less than the shard scans.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MISSING_ID = -1
_LAST_ID = np.iinfo(np.int64).max


def merge_topk(
    scores: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Global top-``k`` of per-shard ``(Q, k_s)`` results: ``(Q, k)`` float32 scores, int64 ids.

    Missing entries (id −1) sort last with score −inf; rows with fewer than ``k`` candidates
    are padded with (−inf, −1).
    """
    s = np.concatenate([np.asarray(a, dtype=np.float32) for a in scores], axis=1)  # QxC
    i = np.concatenate([np.asarray(a, dtype=np.int64) for a in ids], axis=1)  # QxC
    s = np.where(i == MISSING_ID, -np.inf, s).astype(np.float32)
    if s.shape[1] < k:
        pad = k - s.shape[1]
        s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
        i = np.pad(i, ((0, 0), (0, pad)), constant_values=MISSING_ID)
    s, i = sort_results(s, i)
    return s[:, :k], i[:, :k]


def merge_topk_carrying(
    scores: Sequence[np.ndarray],
    ids: Sequence[np.ndarray],
    payload: Sequence[np.ndarray],
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`merge_topk` that carries a per-entry ``payload`` (Q×k_s each) along with the
    ids, in the same order (the calibration's exact re-rank scores of candidates)."""
    s = np.concatenate([np.asarray(a, dtype=np.float32) for a in scores], axis=1)  # QxC
    i = np.concatenate([np.asarray(a, dtype=np.int64) for a in ids], axis=1)  # QxC
    p = np.concatenate(list(payload), axis=1)  # QxC
    s = np.where(i == MISSING_ID, -np.inf, s).astype(np.float32)
    id_key = np.where(i == MISSING_ID, _LAST_ID, i)
    order = np.lexsort((id_key, -s), axis=1)[:, :k]
    take = [np.take_along_axis(a, order, axis=1) for a in (s, i, p)]
    return take[0], take[1], take[2]


def sort_results(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score descending, then id ascending; missing ids last."""
    id_key = np.where(ids == MISSING_ID, _LAST_ID, ids)
    order = np.lexsort((id_key, -scores), axis=1) if scores.size else np.zeros_like(ids)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def drop_ids(
    scores: np.ndarray, ids: np.ndarray, banned: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove ``banned`` ids (and missing ones) from each sorted row, keep the first ``k``.

    Returns ``(scores, ids, short)``; ``short[q]`` is True when row ``q`` had fewer than ``k``
    valid entries left although its candidate list was full (a deeper search may find more).
    """
    keep = ids != MISSING_ID
    if banned.size:
        keep &= ~np.isin(ids, banned)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # Qxk: kept entries first
    s = np.take_along_axis(scores, order, axis=1)
    i = np.take_along_axis(ids, order, axis=1)
    valid = np.take_along_axis(keep, order, axis=1)
    s = np.where(valid, s, -np.inf).astype(np.float32)
    i = np.where(valid, i, MISSING_ID)
    if s.shape[1] < k:
        pad = k - s.shape[1]
        s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
        i = np.pad(i, ((0, 0), (0, pad)), constant_values=MISSING_ID)
    full = (ids != MISSING_ID).all(axis=1)
    short = full & (keep.sum(axis=1) < k)
    return s, i, short
