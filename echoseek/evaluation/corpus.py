"""A labelled corpus under an embedder: its vectors streamed from the dataset, and the time of
one query end to end (embed the image, score every corpus vector, rank)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from echoseek.data.dataset import decode_png, iter_batches
from echoseek.embedding import Embedder


def embed_dataset(
    path: str | Path, embed: Embedder, batch_size: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, vectors (N, D), labels (N,) with -1 for unlabelled) of a dataset, streamed."""
    ids: list[str] = []
    chunks: list[np.ndarray] = []
    labels: list[int] = []
    for batch in iter_batches(path, batch_size, columns=["id", "image", "label"]):
        cols = batch.to_pydict()
        ids += cols["id"]
        chunks.append(embed([decode_png(b) for b in cols["image"]]))
        labels += [-1 if v is None else int(v) for v in cols["label"]]
    return ids, np.concatenate(chunks), np.asarray(labels, dtype=np.int64)


def measure_latency(
    image: np.ndarray, embed: Embedder, vectors: np.ndarray, repeats: int
) -> dict[str, float]:
    """Median and p95 milliseconds of embed + score + rank for one query image."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        q = embed([image])[0]
        np.argsort(-(vectors @ q), kind="stable")
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def first_image(path: str | Path) -> bytes:
    """The PNG bytes of the dataset's first row."""
    batch = next(iter_batches(path, 1, columns=["image"]))
    data: bytes = batch.column(0)[0].as_py()
    return data
