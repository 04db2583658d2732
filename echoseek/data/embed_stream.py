"""Embedding a dataset on Ray Data: Parquet rows in, vector batches out, one model per actor.

The dataset's shards are read lazily; PNG decoding and the model run in an actor pool
(``map_batches`` with :class:`EmbedBatch`, a GPU per actor when the cluster has GPUs). A model
reaches the actors through the object store (its ``model.json`` fields and state dict, loaded
once on the driver), so actors on any node embed with the same weights and never resolve a
model URI themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from echoseek.data.dataset import decode_png, read_dataset
from echoseek.data.vectors import VectorBatch
from echoseek.embedding import Embedder, ModelEmbedder, PixelEmbedder
from echoseek.errors import ConfigError
from echoseek.training.progress import ProgressBar


class EmbedBatch:
    """Ray Data callable class: one embedder per actor, numpy batches in and out.

    ``model`` is ``(uri, meta_json, state_ref)`` for a saved model or None for raw pixels.
    """

    def __init__(
        self, model: tuple[str, dict[str, Any], Any] | None, pixel_size: int, amp: bool,
        threads: int = 0,
    ) -> None:  # fmt: skip
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.embed: Embedder = PixelEmbedder(pixel_size)
        if model is not None:
            import ray

            from echoseek.models.artifact import ModelMeta, build_model

            uri, meta_json, state_ref = model
            meta = ModelMeta.from_json(meta_json)
            net = build_model(meta)
            net.load_state_dict(ray.get(state_ref))
            self.embed = ModelEmbedder(uri, amp=amp, loaded=(net, meta))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [decode_png(data) for data in batch["image"]]
        return {
            "id": batch["id"],
            "vector": self.embed(images),  # NxD float32, unit rows
            "label": batch["label"],
            "source": batch["source"],
            "frame_index": batch["frame_index"],
        }


def check_cpu_budget(actors: int, actor_cpus: float, cluster_cpus: float) -> None:
    """CPU actors must leave one CPU for Ray Data's Parquet read tasks, or nothing is read.

    Actors hold their CPUs for the whole job; a read task needs a whole CPU, so with
    ``actors · actor_cpus > cluster_cpus − 1`` the pipeline would wait forever.
    """
    if actors * actor_cpus > cluster_cpus - 1:
        raise ConfigError(
            f"actors={actors} x actor_cpus={actor_cpus:g} leaves less than 1 of the cluster's "
            f"{cluster_cpus:g} CPUs for reading the dataset; lower actor_cpus (threads per "
            "actor can still be raised with torch_threads)"
        )


def embedded_batches(
    path: str,
    model: ModelEmbedder | None,
    *,
    pixel_size: int = 32,
    batch_size: int = 64,
    actors: int = 1,
    resources: dict[str, Any],
    amp: bool = True,
    threads: int = 0,
) -> Iterator[VectorBatch]:
    """Stream the dataset at ``path`` through the actor pool as :class:`VectorBatch` es."""
    import ray

    shipped = None
    if model is not None:
        state = {k: v.cpu() for k, v in model.model.state_dict().items()}
        shipped = (model.uri, model.meta.to_json(), ray.put(state))
    embedded = read_dataset(path).map_batches(
        EmbedBatch,
        fn_constructor_kwargs={
            "model": shipped,
            "pixel_size": pixel_size,
            "amp": amp,
            "threads": threads,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **resources,
    )
    for batch in embedded.iter_batches(batch_size=batch_size, batch_format="numpy"):
        yield to_vector_batch(batch)


class StreamClock:
    """Times a batch stream: the fixed start cost (until the first batch arrives: actor start,
    model load, first read) apart from the steady rate after it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.end = self.start
        self.rows = self.rows_after_first = 0

    def wrap(
        self, batches: Iterable[VectorBatch], bar: ProgressBar | None = None
    ) -> Iterator[VectorBatch]:
        """Yield ``batches`` unchanged, timing them (and advancing ``bar``)."""
        for batch in batches:
            now = time.perf_counter()
            if self.first is None:
                self.first = now
            else:
                self.rows_after_first += len(batch.ids)
            self.rows += len(batch.ids)
            self.end = now
            if bar is not None:
                bar.update(len(batch.ids))
            yield batch

    def summary(self) -> dict[str, float]:
        """``start_s`` (fixed cost) and ``steady_images_per_s`` (rate after the first batch)."""
        first = self.first if self.first is not None else self.end
        return {
            "start_s": first - self.start,
            "steady_images_per_s": self.rows_after_first / max(self.end - first, 1e-9),
        }


def to_vector_batch(batch: dict[str, np.ndarray]) -> VectorBatch:
    """An embedded numpy batch as the vectors artifact's :class:`VectorBatch`."""
    return VectorBatch(
        ids=[str(i) for i in batch["id"]],
        vectors=np.asarray(batch["vector"], dtype=np.float32),
        metadata={
            "label": _nullable_ints(batch["label"]),
            "source": [str(s) for s in batch["source"]],
            "frame_index": _nullable_ints(batch["frame_index"]),
        },
    )


def _nullable_ints(values: np.ndarray) -> list[int | None]:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in values]
