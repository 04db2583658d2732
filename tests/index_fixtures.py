"""Index fixtures: one clustered synthetic corpus and one 3-shard IVF-PQ index per session.

The corpus is a seeded Gaussian mixture (20 000 × 32, 100 clusters) so that nearest neighbours
are meaningful and IVF lists are uneven, as with real embeddings. Building takes a few seconds,
so the index is built once (without Ray; the Ray path has its own slow tests) and tests that
modify an index work on a copy. faiss runs single-threaded in tests (Ray workers already get
``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from echoseek.index import build_index, choose_params
from echoseek.index.params import IndexParams

N, DIM, CLUSTERS = 20_000, 32, 100
SHARDS = 3


def clustered(
    n: int,
    dim: int,
    clusters: int,
    seed: int,
    spread: float = 0.35,
    points_seed: int | None = None,
) -> np.ndarray:
    """``n`` points around ``clusters`` Gaussian centres drawn with ``seed`` (float32).

    ``points_seed`` draws other points around the same centres (held-out queries).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    if points_seed is not None:
        rng = np.random.default_rng(points_seed)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32)


def small_params(n: int = N, dim: int = DIM) -> IndexParams:
    """Rule-chosen params, with a smaller list count and training sample for test speed."""
    return choose_params(n, dim, nlist=256, train_size=6_000)


@pytest.fixture(scope="session", autouse=True)
def one_faiss_thread() -> None:
    """faiss's OpenMP threads spin badly on a shared 2-core box; one thread is 5-7x faster."""
    import faiss

    faiss.omp_set_num_threads(1)


@pytest.fixture(scope="session")
def corpus() -> np.ndarray:
    return clustered(N, DIM, CLUSTERS, seed=0)


@pytest.fixture(scope="session")
def corpus_npy(corpus: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vectors") / "corpus.npy"
    np.save(path, corpus)
    return path


@pytest.fixture(scope="session")
def index_root(corpus_npy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published 3-shard IVF-PQ index of the corpus (read-only for tests)."""
    root = tmp_path_factory.mktemp("index") / "root"
    build_index(corpus_npy, root, small_params(), num_shards=SHARDS, use_ray=False)
    return root


@pytest.fixture
def index_copy(index_root: Path, tmp_path: Path) -> Path:
    """A private copy of the session index for tests that publish versions or corrupt files."""
    dst = tmp_path / "root"
    shutil.copytree(index_root, dst)
    return dst
