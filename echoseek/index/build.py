"""Staged, sharded index build: sample → train once → fill shards on Ray → manifest → publish.

The stages follow autofaiss's distributed build (``indices/distributed.py``):

1. :func:`~echoseek.index.train.sample_rows` / ``gather_rows``: a seeded sample of
   ``params.train_size`` rows, streamed;
2. :func:`~echoseek.index.train.train_index`: train the empty index once (GPU when present);
3. :func:`fill_shards`: the serialised empty index goes into the Ray object store once; each
   of ``S`` Ray tasks deserialises it, streams its contiguous slice of input rows and calls
   ``add_with_ids`` with global row numbers (:func:`fill_shard`), writing its faiss file, its
   float16 re-rank vectors and its id→metadata Parquet into the staging directory;
4. :func:`build_index`: measures the version's operating point on the staged files
   (:func:`~echoseek.index.recall.calibrate_nprobe`: the smallest nprobe reaching
   recall@10 ≥ 0.9 with exact re-rank, on a seeded sample of a few hundred stored vectors;
   skipped for exact Flat indexes), writes it as the default nprobe into the manifest and
   publishes the version atomically (:mod:`echoseek.index.publish`). Any failure, in any
   stage or shard task, removes the staging directory and publishes nothing.

On a cluster the index root must be a filesystem every worker can write (shared mount).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echoseek.data.vectors import (
    METADATA_TYPES,
    VectorBatch,
    VectorSource,
    check_ids,
    iter_vector_batches,
    open_vectors,
)
from echoseek.errors import EchoseekError, InputError
from echoseek.index.manifest import (
    FORMAT,
    FORMAT_VERSION,
    TRAINED,
    shard_names,
    write_manifest,
)
from echoseek.index.params import IndexParams, choose_params
from echoseek.index.publish import DEFAULT_RETENTION, new_version_id, staged_version
from echoseek.index.reader import IndexReader
from echoseek.index.recall import CALIBRATION_QUERIES, CALIBRATION_TARGET, calibrate_nprobe
from echoseek.index.rerank import NATURAL_DISTANCE
from echoseek.index.train import (
    deserialize_index,
    gather_rows,
    normalize_rows,
    sample_rows,
    serialize_index,
    train_index,
)
from echoseek.ray_session import ensure_ray
from echoseek.storage import combined_sha256, sha256_file

ROWS_PER_SHARD = 1_000_000
BATCH_SIZE = 1 << 15
METADATA_SCHEMA = pa.schema(
    [("internal_id", pa.int64()), ("id", pa.string()), *METADATA_TYPES.items()]
)


@dataclass(frozen=True)
class ShardPlan:
    """Shard ``shard`` holds input rows ``[start, stop)`` as ids ``id_start + (row − start)``."""

    shard: int
    start: int
    stop: int
    id_start: int

    @property
    def count(self) -> int:
        return self.stop - self.start


def plan_shards(
    n: int, num_shards: int, first_shard: int = 0, id_start: int = 0
) -> list[ShardPlan]:
    """Split rows ``[0, n)`` into ``num_shards`` contiguous, balanced, non-empty slices."""
    if n <= 0:
        raise InputError("nothing to index: the input has no vectors")
    if num_shards <= 0:
        raise InputError(f"num_shards must be positive, got {num_shards}")
    s = min(num_shards, n)
    bounds = [n * i // s for i in range(s + 1)]
    return [
        ShardPlan(first_shard + i, bounds[i], bounds[i + 1], id_start + bounds[i]) for i in range(s)
    ]


def auto_num_shards(n: int, rows_per_shard: int = ROWS_PER_SHARD) -> int:
    """``ceil(n / rows_per_shard)``, at least 1."""
    return max(1, math.ceil(n / max(1, rows_per_shard)))


def train_stage(
    source: VectorSource,
    params: IndexParams,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    use_gpu: bool | None = None,
) -> np.ndarray:
    """Stages 1–2: sample ``params.train_size`` rows, train, return the serialised index."""
    rows = sample_rows(source.count, params.train_size, seed) if params.kind != "flat" else None
    sample = np.empty((0, source.dim), dtype=np.float32)
    if rows is not None and len(rows):
        sample = gather_rows(iter_vector_batches(source, batch_size), rows, source.dim)
        if params.normalize:
            sample = normalize_rows(sample)
    return serialize_index(train_index(params, sample, use_gpu))


def fill_shard(
    trained: np.ndarray,
    batches: Iterable[VectorBatch],
    plan: ShardPlan,
    out_dir: str | Path,
    normalize: bool,
    external_ids: bool = True,
) -> dict[str, Any]:
    """Stage 3 for one shard: add ``plan.count`` rows with global ids; write its three files.

    ``external_ids=False`` stores ``str(internal id)`` as the external id (inputs without ids).
    Returns the shard's manifest entry.
    """
    out = Path(out_dir)
    names = shard_names(plan.shard)
    index = deserialize_index(trained)
    vectors = np.lib.format.open_memmap(
        out / names["vectors"], mode="w+", dtype=np.float16, shape=(plan.count, index.d)
    )
    writer = pq.ParquetWriter(out / names["metadata"], METADATA_SCHEMA, compression="zstd")
    done = 0
    try:
        for batch in batches:
            n = len(batch.ids)
            if done + n > plan.count:
                raise InputError(f"shard {plan.shard}: input has more rows than planned")
            x = normalize_rows(batch.vectors) if normalize else batch.vectors
            ids = np.arange(plan.id_start + done, plan.id_start + done + n, dtype=np.int64)
            index.add_with_ids(x, ids)
            vectors[done : done + n] = x
            writer.write_table(_metadata_table(batch, ids, external_ids))
            done += n
    finally:
        writer.close()
    if done != plan.count:
        raise InputError(f"shard {plan.shard}: input ended after {done} of {plan.count} rows")
    vectors.flush()
    del vectors

    faiss.write_index(index, str(out / names["file"]))
    return _shard_entry(out, names, plan)


def fill_from_source(
    trained: np.ndarray,
    source: VectorSource,
    plan: ShardPlan,
    out_dir: str,
    normalize: bool,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """The body of one shard task: read input rows ``plan.start..stop`` and fill the shard."""
    batches = iter_vector_batches(source, batch_size, plan.start, plan.stop)
    return fill_shard(trained, batches, plan, out_dir, normalize, source.has_ids)


def fill_shards(
    trained: np.ndarray,
    source: VectorSource,
    plans: Sequence[ShardPlan],
    out_dir: str | Path,
    *,
    normalize: bool,
    batch_size: int = BATCH_SIZE,
    use_ray: bool = True,
    cpus_per_shard: float = 1.0,
) -> list[dict[str, Any]]:
    """Stage 3: fill every shard, as parallel Ray tasks or sequentially in this process."""
    args = (source, str(out_dir), normalize, batch_size)
    if not use_ray:
        return [fill_from_source(trained, args[0], p, *args[1:]) for p in plans]
    return _fill_on_ray(trained, plans, args, cpus_per_shard)


def build_index(
    input: str | Path | VectorSource,
    root: str | Path,
    params: IndexParams | None = None,
    *,
    num_shards: int = 0,
    rows_per_shard: int = ROWS_PER_SHARD,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    use_gpu: bool | None = None,
    use_ray: bool = True,
    cpus_per_shard: float = 1.0,
    retention: int = DEFAULT_RETENTION,
    model_uri: str = "",
    model_tracking_uri: str = "",
    target_recall: float | None = CALIBRATION_TARGET,
    calibration_queries: int = CALIBRATION_QUERIES,
) -> dict[str, Any]:
    """Build and publish a new index version of ``input`` under ``root``; return its manifest.

    The input's external ids must be non-null and unique (:func:`check_ids`); a failure
    publishes nothing and leaves no staging directory (nor a new, empty ``root``).

    ``params`` defaults to :func:`~echoseek.index.params.choose_params` for the input's size.
    The default nprobe is the smallest one reaching recall@10 ≥ ``target_recall`` on
    ``calibration_queries`` sampled stored vectors (``target_recall=None``: ``params.nprobe``).
    ``model_tracking_uri``: the MLflow store ``model_uri`` resolves in (default: the one the
    vectors artifact records), so a service finds the model without being told.
    """
    source = input if isinstance(input, VectorSource) else open_vectors(input)
    params = params or choose_params(source.count, source.dim)
    if params.dim != source.dim:
        raise InputError(f"{source.path}: vectors have dim {source.dim}, params say {params.dim}")
    plans = plan_shards(source.count, num_shards or auto_num_shards(source.count, rows_per_shard))
    check_ids(source, batch_size)
    version = new_version_id()
    timings: dict[str, float] = {}
    with staged_version(root, version, retention) as staging:
        t0 = time.perf_counter()
        trained = train_stage(source, params, seed, batch_size, use_gpu)
        (staging / TRAINED).write_bytes(trained.tobytes())
        timings["train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        shards = fill_shards(
            trained,
            source,
            plans,
            staging,
            normalize=params.normalize,
            batch_size=batch_size,
            use_ray=use_ray,
            cpus_per_shard=cpus_per_shard,
        )
        timings["fill_s"] = time.perf_counter() - t0
        manifest = new_manifest(
            version,
            params,
            shards,
            trained_sha256=sha256_file(staging / TRAINED),
            model_uri=model_uri or source.model_uri,
            model_tracking_uri=model_tracking_uri
            or str(source.descriptor.get("model_tracking_uri", "")),
            dataset_sha256=str(source.descriptor.get("dataset_sha256", "")),
            vectors_sha256=source.sha256 or _source_sha256(source),
            build={**timings, "seed": seed, "train_size": params.train_size},
        )
        if target_recall is not None and params.nlist > 1:
            calibrate(staging, manifest, target_recall, calibration_queries, seed)
        write_manifest(staging, manifest)
    return manifest


def calibrate(
    staging: Path, manifest: dict[str, Any], target: float, n_queries: int, seed: int
) -> None:
    """Set ``manifest``'s default nprobe to the measured one (files in ``staging``)."""
    with IndexReader(staging, manifest) as reader:
        point = calibrate_nprobe(reader, target=target, n_queries=n_queries, seed=seed)
    manifest["default_nprobe"] = point["nprobe"]
    manifest["build"]["calibrate_s"] = point["seconds"]
    manifest["build"]["calibration"] = point


def new_manifest(
    version: str,
    params: IndexParams,
    shards: list[dict[str, Any]],
    *,
    trained_sha256: str,
    model_uri: str = "",
    model_tracking_uri: str = "",
    dataset_sha256: str = "",
    vectors_sha256: str = "",
    tombstones: Sequence[int] = (),
    parent: str | None = None,
    default_nprobe: int | None = None,
    build: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest dict of a version (see :mod:`echoseek.index.manifest`)."""
    ntotal = sum(s["count"] for s in shards)
    next_id = max((s["id_start"] + s["count"] for s in shards), default=0)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": version,
        "parent": parent,
        "dim": params.dim,
        "metric": params.metric,
        "normalize": params.normalize,
        "factory": params.factory,
        "params": params.to_dict(),
        "default_nprobe": default_nprobe or params.nprobe,
        "default_rerank": False if params.exact else NATURAL_DISTANCE[params.metric],
        "default_rerank_depth": None,
        "ntotal": ntotal,
        "live": ntotal - len(tombstones),
        "next_id": next_id,
        "trained": {"file": TRAINED, "sha256": trained_sha256},
        "shards": sorted(shards, key=lambda s: s["id_start"]),
        "tombstones": sorted(int(t) for t in tombstones),
        "model_uri": model_uri,
        "model_tracking_uri": model_tracking_uri,  # where an MLflow model_uri resolves
        "dataset_sha256": dataset_sha256 or vectors_sha256,
        "vectors_sha256": vectors_sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build": build or {},
    }


def build_summary(manifest: dict[str, Any], params: IndexParams) -> dict[str, Any]:
    """What ``echoseek index build`` reports of a published version (its manifest's version,
    layout, defaults and build timings)."""
    keys = ("version", "factory", "ntotal", "dim", "metric", "default_nprobe", "default_rerank")
    return {
        **{key: manifest[key] for key in keys},
        "shards": len(manifest["shards"]),
        "bytes_per_vector": params.bytes_per_vector,
        **manifest["build"],
    }


def summary_text(s: dict[str, Any]) -> str:
    """The terminal line of ``echoseek index build``'s summary (``jobs.index_build.run``)."""
    line = (
        f"indexed {s['ntotal']} vectors (dim {s['dim']}, {s['factory']}, {s['shards']} shards) "
        f"as {s['output']}/{s['version']} in {s['seconds']:.1f} s"
    )
    point = s.get("calibration")
    if point:
        line += (
            f"; default nprobe {point['nprobe']} (recall@10 {point['recall@10']:.3f} on "
            f"{point['n_queries']} sampled vectors, rerank {point['rerank'] or 'off'})"
        )
    return line


def array_batches(
    vectors: np.ndarray,
    ids: Sequence[str] | None = None,
    metadata: dict[str, Sequence[Any]] | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[VectorBatch]:
    """In-memory vectors as :class:`VectorBatch` es (ids default to row numbers).

    ``ids`` must be non-null and unique.
    """
    n = len(vectors)
    if ids is not None:
        _check_id_list(ids)
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        batch_ids = [str(i) for i in (ids[s:e] if ids is not None else range(s, e))]
        meta = {k: list(v[s:e]) for k, v in (metadata or {}).items()}
        yield VectorBatch(batch_ids, np.ascontiguousarray(vectors[s:e], dtype=np.float32), meta)


def _check_id_list(ids: Sequence[Any]) -> None:
    seen: dict[str, int] = {}
    for row, item in enumerate(ids):
        if item is None:
            raise InputError(f"ids: row {row} has a null id")
        key = str(item)
        if key in seen:
            raise InputError(
                f"ids: duplicate vector id {key!r} (rows {seen[key]} and {row}); ids must be unique"
            )
        seen[key] = row


def _metadata_table(batch: VectorBatch, ids: np.ndarray, external_ids: bool) -> pa.Table:
    n = len(ids)
    columns: dict[str, Any] = {
        "internal_id": ids,
        "id": batch.ids if external_ids else [str(i) for i in ids],
    }
    for key in METADATA_TYPES:
        columns[key] = batch.metadata.get(key, [None] * n)
    return pa.table(columns, schema=METADATA_SCHEMA)


def _shard_entry(out: Path, names: dict[str, str], plan: ShardPlan) -> dict[str, Any]:
    return {
        "file": names["file"],
        "count": plan.count,
        "sha256": sha256_file(out / names["file"]),
        "id_start": plan.id_start,
        "vectors": {"file": names["vectors"], "sha256": sha256_file(out / names["vectors"])},
        "metadata": {"file": names["metadata"], "sha256": sha256_file(out / names["metadata"])},
    }


def _source_sha256(source: VectorSource) -> str:
    return combined_sha256([sha256_file(f.path) for f in source.files])


def _fill_on_ray(
    trained: np.ndarray,
    plans: Sequence[ShardPlan],
    args: tuple[Any, ...],
    cpus_per_shard: float,
) -> list[dict[str, Any]]:
    """Run :func:`fill_from_source` per plan as Ray tasks; on any failure cancel the rest."""
    import ray

    ensure_ray()
    trained_ref = ray.put(trained)
    task = ray.remote(num_cpus=cpus_per_shard, max_retries=0)(fill_from_source)
    pending = {task.remote(trained_ref, args[0], p, *args[1:]): p for p in plans}
    results: list[dict[str, Any]] = []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                results.append(ray.get(ref))
    except BaseException as exc:
        _cancel_all(list(pending))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, EchoseekError):
            raise cause from None
        raise
    return results


def _cancel_all(refs: list[Any]) -> None:
    """Cancel running shard tasks and wait for them to stop writing."""
    import ray

    for ref in refs:
        ray.cancel(ref, force=True)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=60)
