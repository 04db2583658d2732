"""Build stage 1: sample training vectors from the stream and train the empty index once.

The sample is a seeded uniform choice of ``n_train`` row numbers out of ``N`` (sorted), read
from the row groups that hold them (:func:`~echoseek.data.vectors.read_rows`), so only the
sample is ever in memory. Training
runs the k-means of the coarse quantizer (and the PQ/OPQ codebooks) on it, on the GPU when
faiss sees one (``faiss.get_num_gpus() > 0``: the k-means assignment step is moved to a GPU
flat index, as autofaiss does), else on the CPU. The trained empty index is serialised to a
uint8 array (:func:`serialize_index`) that Ray can broadcast through its object store.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from echoseek.errors import InputError
from echoseek.index.params import IndexParams
from echoseek.object_store import writing

SAMPLE_BLOCK = 1 << 20


def sample_rows(n_total: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """Sorted, distinct row numbers: a seeded uniform sample of ``min(n_samples, n_total)``.

    In memory bounded by the sample, whatever ``n_total``: the rows are cut into blocks of
    2^20, the sample's count in each block is drawn from the multivariate hypergeometric
    distribution (exactly how many of a uniform k-subset fall in each block), then each
    block's rows are drawn uniformly without replacement. The result is a uniform k-subset;
    ``rng.choice(n_total, k, replace=False)`` would permute all ``n_total`` rows whenever
    ``k > n_total/50`` (800 MB at 10^8).
    """
    if n_samples >= n_total:
        return np.arange(n_total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    starts = np.arange(0, n_total, SAMPLE_BLOCK, dtype=np.int64)
    sizes = np.minimum(SAMPLE_BLOCK, n_total - starts)
    counts = rng.multivariate_hypergeometric(sizes, n_samples)
    picks = [
        start + np.sort(rng.choice(size, c, replace=False))
        for start, size, c in zip(starts, sizes, counts, strict=True)
        if c
    ]
    return np.concatenate(picks).astype(np.int64)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """``x / ‖x‖₂`` row-wise (zero rows stay zero); float32, contiguous."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def faiss_metric(metric: str) -> int:
    """The faiss metric constant for ``"ip"`` or ``"l2"``."""
    return int(faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2)


def create_index(params: IndexParams) -> Any:
    """An untrained faiss index for ``params`` that accepts ``add_with_ids``."""
    index = faiss.index_factory(params.dim, params.factory, faiss_metric(params.metric))
    ivf: Any = _ivf_or_none(index)
    if ivf is None:
        is_idmap = isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2))
        return index if is_idmap else faiss.IndexIDMap(index)
    ivf = faiss.downcast_index(ivf)
    if hasattr(ivf, "do_polysemous_training"):
        # Polysemous codes only help Hamming-filtered search, which echoseek does not use;
        # their training is ~15x slower than the PQ k-means itself.
        ivf.do_polysemous_training = False
    return index


def train_index(params: IndexParams, sample: np.ndarray, use_gpu: bool | None = None) -> Any:
    """Create and train the empty index on ``sample`` (already normalised if needed)."""
    index = create_index(params)
    if index.is_trained:
        return index
    if len(sample) == 0:
        raise InputError("training sample is empty")
    gpu = faiss.get_num_gpus() > 0 if use_gpu is None else use_gpu
    if gpu:
        _train_on_gpu(index, sample)
    else:
        index.train(sample)
    return index


def train_to_file(
    params: IndexParams, out: str, use_gpu: bool | None, *parts: np.ndarray
) -> np.ndarray:
    """The train task: concatenate the sample's parts (one per shard's rows), normalise if
    the index does, train, write the serialised empty index to ``out`` (temporary name, then
    rename, or upload to an object store) and return it."""
    sample = np.concatenate(parts) if parts else np.empty((0, params.dim), dtype=np.float32)
    if params.normalize and len(sample):
        sample = normalize_rows(sample)
    trained = serialize_index(train_index(params, sample, use_gpu))
    with writing(out) as tmp:
        trained.tofile(tmp)
    return trained


def serialize_index(index: Any) -> np.ndarray:
    """The index as a uint8 array (``faiss.serialize_index``), e.g. for ``ray.put``."""
    return np.asarray(faiss.serialize_index(index), dtype=np.uint8)


def deserialize_index(data: np.ndarray) -> Any:
    """Inverse of :func:`serialize_index`."""
    return faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))


def _train_on_gpu(index: Any, sample: np.ndarray) -> None:
    """Train with the coarse k-means assignment on every GPU; the index itself stays on CPU."""
    if faiss.get_num_gpus() == 0:
        raise InputError("use_gpu=true but faiss sees no GPU (install faiss-gpu or unset it)")
    ivf: Any = faiss.extract_index_ivf(index)
    flat = faiss.IndexFlatL2(ivf.d)
    clustering = faiss.index_cpu_to_all_gpus(flat)
    ivf.clustering_index = clustering
    try:
        index.train(sample)
    finally:
        ivf.clustering_index = None


def _ivf_or_none(index: Any) -> Any:
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return None
