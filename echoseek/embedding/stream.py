"""Embedding a dataset on Ray Data: Parquet rows in, vector part files out, one model per actor.

The work list is the dataset's Parquet row groups; each actor of the pool (``map_batches`` with
:class:`EmbedBatch`, a GPU per actor when the cluster has GPUs) reads its row groups, decodes
the PNGs, runs the model and writes the vectors of each row group as one part file of the
output artifact (:func:`~echoseek.data.vectors.write_vector_part`), on whichever node it runs.
Only each part's ``{file, rows, sha256}`` reaches the driver, which lists the parts in row
order in the artifact's descriptor: no vector passes through it. No separate read task
competes for the actors' CPUs. A model
reaches the actors through the object store (its ``model.json`` fields and state dict, loaded
once on the driver), so actors on any node embed with the same weights and never resolve a
model URI themselves.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from echoseek.data.dataset import decode_png, shard_paths
from echoseek.data.vectors import VectorBatch, write_vector_part
from echoseek.embedding.embedder import Embedder, ModelEmbedder, PixelEmbedder
from echoseek.models.artifact import ModelMeta, build_model
from echoseek.object_store import parquet_file
from echoseek.progress import ProgressBar

META = ("id", "label", "source", "frame_index")
COLUMNS = ["image", *META]


CALLS_PER_ACTOR = 2  # concurrent calls per actor: one decodes while the other runs the model
MAX_CALLS_PER_GPU_ACTOR = 16


def calls_per_actor(cpus: float, gpus: float) -> int:
    """Concurrent calls per actor in a cluster of ``cpus`` and ``gpus``: with no GPU (an actor
    per CPU or so), :data:`CALLS_PER_ACTOR`; with a GPU per actor, the CPUs per GPU, at most
    :data:`MAX_CALLS_PER_GPU_ACTOR`. Each call reads and decodes its row group on its own
    thread and the model is fast: with two calls an H200 embedded 1,536 img/s at 224 px."""
    if gpus < 1:
        return CALLS_PER_ACTOR
    return max(CALLS_PER_ACTOR, min(MAX_CALLS_PER_GPU_ACTOR, int(cpus // gpus)))


class EmbedBatch:
    """Ray Data callable class: one embedder per actor, work items in, embedded rows out.

    ``model`` is ``(uri, meta_json, state_ref)`` for a saved model or None for raw pixels.
    Each actor runs several calls at once (Ray Data's multi-threaded actors;
    :func:`calls_per_actor`), and a lock lets only one of them run the model at a time. While
    the model embeds one row group, other calls read, decode and preprocess the next. PIL and
    zlib release the GIL while they decode, so that work fills the cores torch leaves idle
    between its parallel kernels, or all of them when the model runs on a GPU. A plain loop
    does the same steps one after another.
    """

    def __init__(
        self, model: tuple[str, dict[str, Any], Any] | None, pixel_size: int, amp: bool,
        threads: int = 0, out: str = "",
    ) -> None:  # fmt: skip
        self.out = out
        if threads:
            torch.set_num_threads(threads)
        self.embed: Embedder = PixelEmbedder(pixel_size)
        if model is not None:
            import ray

            uri, meta_json, state_ref = model
            meta = ModelMeta.from_json(meta_json)
            net = build_model(meta)
            net.load_state_dict(ray.get(state_ref))
            self.embed = ModelEmbedder(uri, amp=amp, loaded=(net, meta))
        self.model_lock = threading.Lock()

    def __call__(self, work: pa.Table) -> pa.Table:
        """Work items (``part``, ``file``, ``group``) -> with ``out``, the part files written
        (``file``, ``rows``, ``sha256``: one per item); else the rows embedded (the metadata
        columns as read and ``vector``)."""
        if not self.out:
            return self.embed_rows(work)
        entries = []
        for i in range(work.num_rows):
            item = work.slice(i, 1)
            rows = to_vector_batch(self.embed_rows(item))
            part = int(item.column("part")[0].as_py())
            name = f"part-{part:05d}.parquet"
            entry = write_vector_part(self.out, name, rows, rows.vectors.shape[1])
            entries.append({**entry, "part": part})
        return pa.Table.from_pylist(entries)

    def embed_rows(self, work: pa.Table) -> pa.Table:
        """The rows of the work items' Parquet row groups, embedded: the metadata columns as
        read (Arrow, no per-row Python objects) and ``vector``."""
        tables = [
            parquet_file(str(file)).read_row_group(int(group), columns=COLUMNS)
            for file, group in zip(
                work.column("file").to_pylist(), work.column("group").to_pylist(), strict=True
            )
        ]
        rows = pa.concat_tables(tables)
        images = [decode_png(data) for data in rows.column("image").to_pylist()]
        if isinstance(self.embed, ModelEmbedder):
            batch = self.embed.preprocess(images)
            with self.model_lock:
                vectors = self.embed.forward(batch)
        else:
            vectors = self.embed(images)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])  # NxD, unit rows
        return rows.select(list(META)).append_column("vector", column)


def embedded_parts(
    path: str,
    model: ModelEmbedder | None,
    out: str,
    *,
    pixel_size: int = 32,
    actors: int = 1,
    resources: dict[str, Any],
    amp: bool = True,
    threads: int = 0,
    calls: int = CALLS_PER_ACTOR,
) -> Iterator[dict[str, Any]]:
    """Embed the dataset at ``path`` through the actor pool into part files under ``out``
    (a folder every node can write), yielding each part's ``{file, rows, sha256, part}`` as
    it is written (``calls`` concurrent calls per actor: see :func:`calls_per_actor`)."""
    import ray

    shipped = None
    if model is not None:
        state = {k: v.cpu() for k, v in model.model.state_dict().items()}
        shipped = (model.uri, model.meta.to_json(), ray.put(state))
    work = [
        {"part": i, "file": str(f), "group": g}
        for i, (f, g) in enumerate(
            (f, g) for f in shard_paths(path) for g in range(parquet_file(f).num_row_groups)
        )
    ]
    # The actors read their row groups themselves: behind ray.data.read_parquet (which packs
    # small files into one block) the pool returned nothing until every row was embedded.
    items = ray.data.from_items(work, override_num_blocks=len(work))
    with warnings.catch_warnings():  # Ray 2.60 takes max_restarts only in ray_remote_args
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        embedded = items.map_batches(
            EmbedBatch,
            fn_constructor_kwargs={
                "model": shipped,
                "pixel_size": pixel_size,
                "amp": amp,
                "threads": threads,
                "out": out,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(
                size=actors,
                max_concurrent_calls_per_actor=calls,
                enable_true_multi_threading=True,
            ),
            **resources,
            **restart_policy(),
        )
    for row in embedded.iter_rows():
        yield {k: row[k] for k in ("file", "rows", "sha256", "part")}


def restart_policy() -> dict[str, Any]:
    """The actor pool's restarts: none on a one-node cluster, Ray Data's default elsewhere.

    Ray Data restarts a dead pool actor without limit. It passes the actor's constructor
    arguments through the object store, so when any actor with restarts is created, the
    driver's core worker prints a C++ warning to the terminal. On one node, a dead actor is
    a crash (out of memory, a bug) that a restart would only repeat: there the pool gets
    ``max_restarts=0``, no warning is printed, and the job fails with the actor's error. On a
    cluster, the actors of a lost node start again on the others.
    """
    import ray

    alive = [node for node in ray.nodes() if node.get("Alive")]
    return {"max_restarts": 0} if len(alive) <= 1 else {}


class StreamClock:
    """Times a stream of written parts: the fixed start cost (until the first part arrives:
    actor start, model load, first read) apart from the steady rate after it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.end = self.start
        self.rows = self.rows_after_first = 0

    def wrap(
        self, parts: Iterable[dict[str, Any]], bar: ProgressBar | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield ``parts`` (``{rows, ...}`` each) unchanged, timing them (and advancing ``bar``)."""
        for part in parts:
            now, rows = time.perf_counter(), int(part["rows"])
            if self.first is None:
                self.first = now
            else:
                self.rows_after_first += rows
            self.rows += rows
            self.end = now
            if bar is not None:
                bar.update(rows)
            yield part

    def summary(self) -> dict[str, float]:
        """``start_s`` (fixed cost) and ``steady_images_per_s`` (rate after the first batch)."""
        first = self.first if self.first is not None else self.end
        return {
            "start_s": first - self.start,
            "steady_images_per_s": self.rows_after_first / max(self.end - first, 1e-9),
        }


def to_vector_batch(batch: pa.Table) -> VectorBatch:
    """An embedded Arrow batch as the vectors artifact's :class:`VectorBatch`."""
    vectors = batch.column("vector").combine_chunks()
    dim = vectors.type.list_size
    flat = vectors.flatten().to_numpy(zero_copy_only=False)
    return VectorBatch(
        ids=[str(i) for i in batch.column("id").to_pylist()],
        vectors=np.asarray(flat, dtype=np.float32).reshape(len(batch), dim),
        metadata={
            "label": batch.column("label").to_pylist(),
            "source": [str(s) for s in batch.column("source").to_pylist()],
            "frame_index": batch.column("frame_index").to_pylist(),
        },
    )
