"""Top-k merging against a naive sort of all candidates."""

from __future__ import annotations

import numpy as np
import pytest

from echoseek.index.merge import drop_ids, merge_topk


def _naive(scores: list[np.ndarray], ids: list[np.ndarray], k: int) -> np.ndarray:
    out = []
    for q in range(scores[0].shape[0]):
        pairs = [
            (float(s[q, j]), int(i[q, j]))
            for s, i in zip(scores, ids, strict=True)
            for j in range(s.shape[1])
        ]
        pairs = [p for p in pairs if p[1] != -1]
        pairs.sort(key=lambda p: (-p[0], p[1]))
        row = [p[1] for p in pairs[:k]]
        out.append(row + [-1] * (k - len(row)))
    return np.array(out)


@pytest.mark.parametrize("k", [1, 5, 17, 40])
@pytest.mark.parametrize("shards", [1, 3])
def test_merge_topk_matches_naive(k: int, shards: int) -> None:
    rng = np.random.default_rng(k * 10 + shards)
    scores = [rng.integers(0, 20, (4, 12)).astype(np.float32) for _ in range(shards)]  # ties
    ids = [np.arange(12 * s, 12 * s + 12)[None].repeat(4, 0) for s in range(shards)]
    ids[0][0, 3] = -1
    got_s, got_i = merge_topk(scores, ids, k)
    np.testing.assert_array_equal(got_i, _naive(scores, ids, k))
    assert got_s.shape == (4, k) and np.isneginf(got_s[got_i == -1]).all()


def test_drop_ids_keeps_order_and_flags_short_rows() -> None:
    s = np.array([[5.0, 4.0, 3.0, 2.0], [9.0, 8.0, -np.inf, -np.inf]], np.float32)
    i = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    got_s, got_i, short = drop_ids(s, i, np.array([2, 3]), 3)
    np.testing.assert_array_equal(got_i, [[1, 4, -1], [5, 6, -1]])
    np.testing.assert_array_equal(got_s[0, :2], [5.0, 2.0])
    np.testing.assert_array_equal(short, [True, False])  # row 1 simply ran out of vectors
