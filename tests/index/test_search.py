"""The search library: recall, sharded == unsharded, re-rank, checksums, bad inputs, lookup."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from echoseek.distances import pairwise_numpy
from echoseek.errors import EchoseekError, InputError
from echoseek.index import build_index, open_index
from echoseek.index.merge import sort_results
from echoseek.index.publish import read_latest
from echoseek.index.recall import exact_knn, knn_recall
from echoseek.index.train import deserialize_index, normalize_rows
from tests.index_fixtures import clustered


@pytest.fixture(scope="module")
def reader(index_root: Path):  # type: ignore[no-untyped-def]
    with open_index(index_root) as r:
        yield r


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    """Held-out queries: new points around the corpus's cluster centres."""
    return clustered(300, 32, 100, seed=0, points_seed=99)


@pytest.fixture(scope="module")
def truth(reader, queries: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return exact_knn(reader, queries, 100)[1]


def test_recall_with_rerank_reaches_0_9(reader, queries, truth) -> None:  # type: ignore[no-untyped-def]
    _, ids = reader.search(queries, 10, nprobe=16, rerank=True)
    assert knn_recall(ids, truth, 10) >= 0.9
    _, plain = reader.search(queries, 10, nprobe=16, rerank=False)
    assert knn_recall(ids, truth, 10) > knn_recall(plain, truth, 10)


def test_recall_grows_with_nprobe(reader, queries, truth) -> None:  # type: ignore[no-untyped-def]
    recalls = [
        knn_recall(reader.search(queries, 10, nprobe=p, rerank=True)[1], truth, 10)
        for p in (1, 4, 32)
    ]
    assert recalls[0] < recalls[1] <= recalls[2] + 1e-9


def test_exact_knn_matches_numpy(reader, queries) -> None:  # type: ignore[no-untyped-def]
    stored = normalize_rows(reader.fetch_vectors(np.arange(reader.ntotal)))  # exact cosine
    sims = normalize_rows(queries[:20]) @ stored.T
    best = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    scores, ids = exact_knn(reader, queries[:20], 5)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, best, 1), rtol=1e-5, atol=1e-6)
    assert (ids == best).mean() > 0.99  # ties between float16 vectors may swap


def test_sharded_equals_unsharded(index_root: Path, corpus: np.ndarray, reader, queries) -> None:  # type: ignore[no-untyped-def]
    version_dir = index_root / read_latest(index_root)
    whole = deserialize_index(np.fromfile(version_dir / "trained.faiss", dtype=np.uint8))
    whole.add_with_ids(normalize_rows(corpus), np.arange(len(corpus), dtype=np.int64))
    params = faiss.SearchParametersIVF(nprobe=8)
    d, i = whole.search(normalize_rows(queries), 20, params=params)
    want_s, want_i = sort_results(d, i)
    got_s, got_i = reader.search(queries, 20, nprobe=8, rerank=False)
    np.testing.assert_array_equal(got_s, want_s)
    # equal scores: ids identical except where the 20th score is tied beyond the cut
    untied = want_s > want_s[:, -1:]
    np.testing.assert_array_equal(got_i[untied], want_i[untied])


@pytest.mark.parametrize("name", ["cosine", "sqeuclidean", "soart3_gamma"])
def test_rerank_scores_are_similarities_or_negative_exact_distances(
    reader, queries, name: str
) -> None:  # type: ignore[no-untyped-def]
    """Higher is better: the cosine similarity 1 − d for cosine, −d for any other distance."""
    scores, ids = reader.search(queries[:10], 5, nprobe=8, rerank=name, rerank_depth=40)
    q = normalize_rows(queries[:10])
    for row in range(10):
        stored = reader.fetch_vectors(ids[row])
        exact = pairwise_numpy(q[row : row + 1], stored, name)[0]
        want = 1.0 - exact if name == "cosine" else -exact
        np.testing.assert_allclose(scores[row], want, rtol=1e-4, atol=1e-5)
        if name == "cosine":  # the similarity itself, as the ip index scores without re-rank
            cos = stored @ q[row] / np.linalg.norm(stored, axis=1)
            np.testing.assert_allclose(scores[row], cos, rtol=1e-3, atol=1e-3)
        assert np.all(np.diff(scores[row]) <= 0)


def test_rerank_orders_candidates_by_the_distance(reader, queries) -> None:  # type: ignore[no-untyped-def]
    _, cand = reader.search(queries[:5], 50, nprobe=8, rerank=False)
    _, top = reader.search(queries[:5], 5, nprobe=8, rerank="sqeuclidean", rerank_depth=50)
    q = normalize_rows(queries[:5])
    for row in range(5):
        d = pairwise_numpy(q[row : row + 1], reader.fetch_vectors(cand[row]), "sqeuclidean")[0]
        assert set(top[row]) == set(cand[row][np.argsort(d)[:5]])


def test_flipped_byte_is_rejected_naming_the_shard(index_copy: Path) -> None:
    shard = index_copy / read_latest(index_copy) / "shard-00001.faiss"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"shard-00001\.faiss: checksum mismatch"):
        open_index(index_copy)


def test_missing_file_is_named(index_copy: Path) -> None:
    (index_copy / read_latest(index_copy) / "shard-00002.vectors.npy").unlink()
    with pytest.raises(InputError, match=r"shard-00002\.vectors\.npy.*missing"):
        open_index(index_copy)


def test_open_by_version_dir_and_bad_paths(index_root: Path, tmp_path: Path) -> None:
    with open_index(index_root / read_latest(index_root)) as r:
        assert r.ntotal == 20_000
    with pytest.raises(InputError, match="not found"):
        open_index(tmp_path / "nope")
    with pytest.raises(InputError, match="neither an index root"):
        open_index(tmp_path)


@pytest.mark.parametrize(
    ("queries", "k", "kwargs", "match"),
    [
        (np.zeros((2, 31), np.float32), 5, {}, r"queries: expected shape \(Q, 32\)"),
        (np.full((2, 32), np.nan, np.float32), 5, {}, "NaN"),
        (np.ones((2, 32), np.float32), 0, {}, "k: must be a positive integer"),
        (np.ones((2, 32), np.float32), -3, {}, "k: must be a positive integer"),
        (np.ones((2, 32), np.float32), 5, {"nprobe": 0}, "nprobe"),
        (np.ones((2, 32), np.float32), 5, {"rerank": "manhattan"}, "unknown name"),
        (np.ones((0, 32), np.float32), 5, {}, "no query vectors"),
    ],
)
def test_bad_queries(reader, queries, k, kwargs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EchoseekError, match=match):
        reader.search(queries, k, **kwargs)


def test_single_vector_query_and_k_beyond_ntotal(tmp_path: Path) -> None:
    x = clustered(40, 8, 3, seed=2)
    np.save(tmp_path / "x.npy", x)
    build_index(tmp_path / "x.npy", tmp_path / "r", use_ray=False)
    with open_index(tmp_path / "r") as r:
        scores, ids = r.search(x[0], 50)
    assert scores.shape == (1, 50) and ids[0, 0] == 0
    assert (ids[0, 40:] == -1).all() and np.isneginf(scores[0, 40:]).all()
    assert sorted(ids[0, :40]) == list(range(40))


def test_tiny_corpus_falls_back_to_exact_flat(tmp_path: Path) -> None:
    x = clustered(500, 16, 5, seed=3)
    np.save(tmp_path / "x.npy", x)
    manifest = build_index(tmp_path / "x.npy", tmp_path / "r", num_shards=2, use_ray=False)
    assert manifest["factory"] == "IDMap,Flat" and manifest["params"]["kind"] == "flat"
    with open_index(tmp_path / "r") as r:
        _, ids = r.search(x[:50], 10)
        _, truth = exact_knn(r, x[:50], 10)
    assert knn_recall(ids, truth, 10) >= 0.99


def test_l2_metric_scores_are_negated_squared_distances(tmp_path: Path) -> None:
    x = clustered(300, 8, 3, seed=4)
    np.save(tmp_path / "x.npy", x)
    from echoseek.index import choose_params

    build_index(
        tmp_path / "x.npy", tmp_path / "r", choose_params(300, 8, metric="l2"), use_ray=False
    )
    with open_index(tmp_path / "r") as r:
        scores, ids = r.search(x[:3], 4, rerank=False)
    expect = -((x[:3, None, :] - x[ids]) ** 2).sum(-1)  # flat index holds the float32 input
    np.testing.assert_allclose(scores, expect, rtol=1e-4, atol=1e-4)
    assert (ids[:, 0] == np.arange(3)).all() and (np.diff(scores, axis=1) <= 0).all()


def test_lookup_unknown_ids(reader) -> None:  # type: ignore[no-untyped-def]
    assert reader.lookup([3])[0] == {
        "internal_id": 3,
        "id": "3",
        "label": None,
        "source": None,
        "frame_index": None,
    }
    with pytest.raises(InputError, match="id 20000: not in index"):
        reader.lookup([20_000])
    with pytest.raises(InputError, match="'x-1': not in index"):
        reader.lookup(["x-1"])


def test_concurrent_searches_agree(reader, queries) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    want = [reader.search(queries[i : i + 1], 5, nprobe=p)[1] for i, p in enumerate([2, 8] * 8)]
    with ThreadPoolExecutor(4) as pool:
        got = list(
            pool.map(
                lambda a: reader.search(queries[a[0] : a[0] + 1], 5, nprobe=a[1])[1],
                enumerate([2, 8] * 8),
            )
        )
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def test_copy_of_index_is_searchable_elsewhere(index_root: Path, tmp_path: Path) -> None:
    dst = tmp_path / "moved"
    shutil.copytree(index_root, dst)
    with open_index(dst) as r:
        assert r.search(np.ones(32, np.float32), 3)[1].shape == (1, 3)


@pytest.mark.parametrize("name", ["cosine", "sqeuclidean"])
def test_numpy_rerank_kernels_match_echoseek_distances(name: str) -> None:
    from echoseek.index.rerank import candidate_distances, pairwise_rows

    rng = np.random.default_rng(5)
    q = rng.normal(size=(4, 16)).astype(np.float32)
    refs = rng.normal(size=(4, 7, 16)).astype(np.float32)
    refs[1, 2] = 0.0  # a zero vector: cosine distance 1, as in echoseek.distances
    got = candidate_distances(q, refs, name)
    want = pairwise_rows(np.repeat(q, 7, axis=0), refs.reshape(28, 16), name).reshape(4, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_shard_subsets_merge_to_the_whole_index(reader, index_root, queries) -> None:  # type: ignore[no-untyped-def]
    """Readers of disjoint shard subsets (a service's shard searchers) each re-rank their own
    best candidates: merged, they re-rank a superset of the full reader's candidates, so the
    exact score at every rank is at least the full reader's. Each holds only its own ids."""
    from echoseek.index.merge import merge_topk

    parts = [open_index(index_root, shards=s) for s in ([0, 2], [1])]
    try:
        assert [p.shard_numbers for p in parts] == [[0, 2], [1]]
        assert sum(p.ntotal for p in parts) == reader.ntotal
        found = [p.search(queries, 10, nprobe=16, rerank=True) for p in parts]
        scores, ids = merge_topk([f[0] for f in found], [f[1] for f in found], 10)
        want_scores, want = reader.search(queries, 10, nprobe=16, rerank=True)
        assert (scores >= want_scores - 1e-6).all()
        assert (ids == want).mean() > 0.9  # mostly the same hits; some better ones found
        plain = [p.search(queries, 10, nprobe=16, rerank=False) for p in parts]
        _, plain_ids = merge_topk([f[0] for f in plain], [f[1] for f in plain], 10)
        assert (plain_ids == reader.search(queries, 10, nprobe=16, rerank=False)[1]).all()
        start = reader.manifest["shards"][1]["id_start"]
        assert parts[1].lookup([start])[0]["internal_id"] == start
        with pytest.raises(InputError, match="not in index version"):
            parts[0].lookup([start])
    finally:
        for p in parts:
            p.close()
    with pytest.raises(InputError, match=r"shards: expected shard numbers in 0\.\.2"):
        open_index(index_root, shards=[3])
